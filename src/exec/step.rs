//! One executable step: the kernel chosen for a node at plan time, and where its inputs and
//! outputs live.

use crate::model::{Graph, Node};
use crate::ops::{Op, OpResult};
use crate::tensor::Tensor;
use ndarray::{ArrayViewD, ArrayViewMutD};
use std::sync::Arc;

/// Where a step reads or writes a tensor.
#[derive(Clone, Debug)]
pub enum Slot {
    /// In the arena at this offset (f32 elements).
    Arena {
        /// offset in f32
        offset: usize,
        /// shape
        shape: Vec<usize>,
    },
    /// A constant.
    Const(Arc<Tensor>),
}

impl Slot {
    /// Shape of the tensor in the slot.
    pub fn shape(&self) -> &[usize] {
        match self {
            Slot::Arena { shape, .. } => shape,
            Slot::Const(t) => t.shape(),
        }
    }
}

/// The implementation chosen for a node.
pub enum Kernel {
    /// Output aliases the input: nothing to do.
    View,
    /// The portable reference implementation.
    Reference(Op),
    /// Prepacked optimised convolution.
    Conv(Box<crate::kernels::conv_f32::ConvF32>),
    /// A Gemm with constant weights, planned as a 1x1 convolution of `[M, K, 1, 1]`.
    Linear(Box<crate::kernels::conv_f32::ConvF32>),
    /// An int8 op on byte tensors.
    Int8(Box<crate::kernels::qs8::Int8Kernel>),
}

/// A planned node.
pub struct Step {
    /// Node name.
    pub name: String,
    /// Op name for profiles.
    pub op_name: String,
    /// Kernel.
    pub kernel: Kernel,
    /// Inputs.
    pub inputs: Vec<Slot>,
    /// Outputs.
    pub outputs: Vec<Slot>,
}

impl Step {
    /// Choose a kernel for a node.
    pub fn new(
        g: &Graph,
        node: &Node,
        slot: &dyn Fn(usize) -> Slot,
        reference_only: bool,
        fp16: bool,
    ) -> OpResult<Step> {
        let inputs: Vec<Slot> = node.inputs.iter().map(|v| slot(*v)).collect();
        let outputs: Vec<Slot> = node.outputs.iter().map(|v| slot(*v)).collect();
        let kernel = match &node.op {
            Op::Int8(q) => {
                if inputs.iter().any(|s| matches!(s, Slot::Const(_))) {
                    return Err(crate::ops::OpError::Unsupported(
                        "int8 op with a constant input".into(),
                    ));
                }
                let shapes: Vec<&[usize]> = inputs.iter().map(Slot::shape).collect();
                let level = crate::kernels::qs8::Level::from_isa(if reference_only {
                    crate::kernels::Isa::Scalar
                } else {
                    crate::kernels::isa()
                });
                Kernel::Int8(Box::new(crate::kernels::qs8::Int8Kernel::new(
                    q, &shapes, level,
                )?))
            }
            op if op.is_view() => Kernel::View,
            Op::Conv(c) if !reference_only => {
                let w = g.constant(node.inputs[1]).and_then(Tensor::as_f32);
                let b = c
                    .bias_input(node.inputs.len())
                    .and_then(|i| g.constant(node.inputs[i]))
                    .and_then(Tensor::as_f32);
                match w {
                    Some(w) => {
                        Kernel::Conv(Box::new(crate::kernels::conv_f32::ConvF32::with_options(
                            c,
                            w.view(),
                            b.map(|b| b.view()),
                            inputs[0].shape(),
                            crate::kernels::isa(),
                            fp16,
                        )?))
                    }
                    None => Kernel::Reference(node.op.clone()),
                }
            }
            Op::Gemm(gm) if !reference_only => match plan_linear(g, node, gm, &inputs)? {
                Some(k) => Kernel::Linear(Box::new(k)),
                None => Kernel::Reference(node.op.clone()),
            },
            op => Kernel::Reference(op.clone()),
        };
        let op_name = match &kernel {
            Kernel::Conv(k) | Kernel::Linear(k) => {
                format!("{} [{}]", node.op.name(), k.algorithm())
            }
            Kernel::Int8(k) => k.name(),
            _ => node.op.name(),
        };
        Ok(Step {
            name: node.name.clone(),
            op_name,
            kernel,
            inputs,
            outputs,
        })
    }

    /// Drop the constant inputs of a kernel that packed them at plan time (it reads only its
    /// first input, and a fused residual Add's last, when it runs), so their data can be freed.
    pub fn release_packed_inputs(&mut self) {
        match &self.kernel {
            // x, and a fused residual Add's input (the last), are read at run time
            Kernel::Conv(k) if k.residual() => {
                let skip = self.inputs.pop();
                self.inputs.truncate(1);
                self.inputs.extend(skip);
            }
            Kernel::Conv(_) | Kernel::Linear(_) => self.inputs.truncate(1),
            _ => {}
        }
    }

    /// Scratch memory (f32) the step needs.
    pub fn scratch_len(&self) -> usize {
        match &self.kernel {
            Kernel::Conv(k) | Kernel::Linear(k) => k.scratch_len(),
            Kernel::Int8(k) => k.scratch_len(),
            _ => 0,
        }
    }

    /// Run the step. `arena` must be the base of an arena laid out by the memory plan.
    ///
    /// # Safety
    /// Output slots must not overlap input slots or each other (the memory planner
    /// guarantees it), and the arena must be long enough for every slot.
    pub unsafe fn run(&self, arena: *mut f32, scratch: &mut Vec<f32>) -> OpResult<()> {
        if let Kernel::Int8(k) = &self.kernel {
            let ptr = |s: &Slot| match s {
                Slot::Arena { offset, .. } => unsafe { arena.add(*offset) as *mut u8 },
                Slot::Const(_) => unreachable!("checked at plan time"),
            };
            let ins: Vec<*const u8> = self.inputs.iter().map(|s| ptr(s) as *const u8).collect();
            return k.run(&ins, ptr(&self.outputs[0]), scratch);
        }
        fn view<'a>(arena: *mut f32, s: &'a Slot) -> ArrayViewD<'a, f32> {
            match s {
                Slot::Arena { offset, shape } => unsafe {
                    ArrayViewD::from_shape_ptr(ndarray::IxDyn(shape), arena.add(*offset))
                },
                Slot::Const(t) => match t.as_ref() {
                    Tensor::F32(a) => a.view(),
                    _ => unreachable!("plan checks constants are f32"),
                },
            }
        }
        let ins: Vec<ArrayViewD<f32>> = self.inputs.iter().map(|s| view(arena, s)).collect();
        let mut outs: Vec<ArrayViewMutD<f32>> = self
            .outputs
            .iter()
            .map(|s| match s {
                Slot::Arena { offset, shape } => unsafe {
                    ArrayViewMutD::from_shape_ptr(ndarray::IxDyn(shape), arena.add(*offset))
                },
                Slot::Const(_) => unreachable!("outputs are never constants"),
            })
            .collect();
        match &self.kernel {
            Kernel::View => Ok(()),
            Kernel::Reference(op) => op.run_reference(&ins, &mut outs),
            Kernel::Conv(k) => {
                // a fused residual Add's input is the node's last
                let skip = ins.last().filter(|_| k.residual()).map(|s| s.view());
                k.run_add(ins[0].view(), skip, outs[0].view_mut(), scratch);
                Ok(())
            }
            Kernel::Linear(k) => {
                k.run_linear(ins[0].view(), outs[0].view_mut(), scratch);
                Ok(())
            }
            Kernel::Int8(_) => unreachable!("handled above"),
        }
    }
}

/// A Gemm `A * B` (`A` not transposed, 2-D, computed; `B` and any `C` constant, `C` one value per
/// output column) planned as a fully connected layer: alpha folded into the weights, beta into
/// the bias. `None` for every other Gemm (the reference runs those, and reports bad shapes).
fn plan_linear(
    g: &Graph,
    node: &Node,
    gm: &crate::ops::Gemm,
    inputs: &[Slot],
) -> OpResult<Option<crate::kernels::conv_f32::ConvF32>> {
    let a = inputs[0].shape();
    let b = match g.constant(node.inputs[1]).and_then(Tensor::as_f32) {
        Some(b) if b.ndim() == 2 && a.len() == 2 && !gm.trans_a => b,
        _ => return Ok(None),
    };
    if !matches!(inputs[0], Slot::Arena { .. }) {
        return Ok(None);
    }
    let (rows, k) = (a[0], a[1]);
    // weights as [n][k]
    let w = if gm.trans_b {
        b.view()
    } else {
        b.t().into_dyn()
    };
    if w.shape()[1] != k {
        return Ok(None);
    }
    let n = w.shape()[0];
    // `[n][k]` rows as stored (transB, alpha 1: the usual Linear export) are used in place.
    let scaled: Vec<f32>;
    let weights: &[f32] = match w.as_slice() {
        Some(rows) if gm.alpha == 1.0 => rows,
        _ => {
            scaled = w.iter().map(|v| v * gm.alpha).collect();
            &scaled
        }
    };
    let bias = match node.inputs.get(2) {
        None => vec![0.0; n],
        Some(_) if gm.beta == 0.0 => vec![0.0; n],
        Some(&ci) => match g.constant(ci).and_then(Tensor::as_f32) {
            Some(c) if c.len() == 1 && c.ndim() <= 2 => vec![c.iter().next().unwrap() * gm.beta; n],
            Some(c) if c.len() == n && (c.shape() == [n] || c.shape() == [1, n]) => {
                c.iter().map(|v| v * gm.beta).collect()
            }
            _ => return Ok(None),
        },
    };
    crate::kernels::conv_f32::ConvF32::linear(weights, n, k, &bias, rows).map(Some)
}
