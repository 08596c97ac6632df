//! The lowering context: ONNX names to speck values, tract's facts, and the per-node driver.

use super::attrs::Attrs;
use super::{from_tract, ImportError};
use crate::model::{Graph, ValueId};
use crate::ops::{Op, UnaryOp};
use crate::tensor::Tensor;
use ndarray::{ArrayViewD, ArrayViewMutD, IxDyn};
use std::collections::HashMap;
use tract_onnx::pb::NodeProto;
use tract_onnx::prelude::*;
use tract_onnx::tract_hir::infer::Factoid;

/// ONNX op types the importer lowers (others are rejected up front, naming the node).
const KNOWN: &[&str] = &[
    "Conv",
    "BatchNormalization",
    "Relu",
    "LeakyRelu",
    "Clip",
    "HardSwish",
    "HardSigmoid",
    "Sigmoid",
    "Tanh",
    "Erf",
    "Gelu",
    "Exp",
    "Log",
    "Sqrt",
    "Neg",
    "Abs",
    "Reciprocal",
    "Floor",
    "Ceil",
    "Round",
    "Identity",
    "Dropout",
    "Cast",
    "Add",
    "Sub",
    "Mul",
    "Div",
    "Pow",
    "Max",
    "Min",
    "Concat",
    "Slice",
    "Split",
    "Transpose",
    "Reshape",
    "Flatten",
    "Squeeze",
    "Unsqueeze",
    "Expand",
    "Gather",
    "Pad",
    "ReduceMean",
    "ReduceSum",
    "ReduceMax",
    "ReduceMin",
    "ReduceProd",
    "ReduceSumSquare",
    "ReduceL2",
    "GlobalAveragePool",
    "GlobalMaxPool",
    "MaxPool",
    "AveragePool",
    "Resize",
    "Upsample",
    "Softmax",
    "LayerNormalization",
    "MatMul",
    "Gemm",
    "Einsum",
    "GridSample",
    // Shape arithmetic: fine as long as tract folds it to constants.
    "Shape",
    "Size",
    "Constant",
    "ConstantOfShape",
    "Range",
    "Equal",
    "Where",
    "Not",
    "Less",
    "Greater",
    "And",
    "Or",
    "ReduceL1",
    "ArgMax",
    "ArgMin",
    "Sign",
    "Mod",
    "Tile",
    "CumSum",
    "ScatterND",
    "NonZero",
    "TopK",
    "Trilu",
    // QDQ models run in float (fake quantization).
    "QuantizeLinear",
    "DequantizeLinear",
];

/// True when the importer knows the op type (it may still need constant inputs).
pub fn is_known(op_type: &str) -> bool {
    KNOWN.contains(&op_type)
}

/// What a node lowers to.
pub(super) enum Lowered {
    /// A speck op over these inputs.
    Op(Op, Vec<ValueId>),
    /// The output is the input itself (Identity, Dropout, no-op Cast).
    Alias(ValueId),
}

pub(super) struct Cx<'a> {
    pub g: Graph,
    pub by_name: HashMap<String, ValueId>,
    pub model: &'a InferenceModel,
    pub outlets: &'a HashMap<String, OutletId>,
    pub opset: i64,
}

impl Cx<'_> {
    fn fact(&self, name: &str) -> Option<&InferenceFact> {
        self.outlets
            .get(name)
            .and_then(|o| self.model.outlet_fact(*o).ok())
    }

    /// The value of a tensor that tract determined to be constant.
    pub fn fact_const(&self, name: &str) -> Option<Tensor> {
        let t = self.fact(name)?.value.concretize()?;
        from_tract(&t)
    }

    /// The speck value for an ONNX tensor name, materialising folded constants.
    pub fn value(&mut self, name: &str) -> Result<ValueId, String> {
        if let Some(v) = self.by_name.get(name) {
            return Ok(*v);
        }
        let t = self
            .fact_const(name)
            .ok_or_else(|| format!("tensor '{name}' is not available"))?;
        let v = self.g.add_const(name, t);
        self.by_name.insert(name.to_string(), v);
        Ok(v)
    }

    fn tract_shape(&self, name: &str) -> Option<Vec<usize>> {
        self.fact(name)?
            .shape
            .as_concrete_finite()
            .ok()
            .flatten()
            .map(|s| s.to_vec())
    }

    /// The constant data of input `i` of a node, if present and constant.
    pub fn const_input(&mut self, node: &NodeProto, i: usize) -> Option<Tensor> {
        let name = node.input.get(i).filter(|n| !n.is_empty())?;
        let v = self.value(name).ok()?;
        self.g.constant(v).cloned()
    }

    /// True when input `i` is present (ONNX marks omitted optional inputs with "").
    pub fn has_input(&self, node: &NodeProto, i: usize) -> bool {
        node.input.get(i).is_some_and(|n| !n.is_empty())
    }

    pub fn lower_node(&mut self, node: &NodeProto) -> Result<(), ImportError> {
        let outs: Vec<&String> = node.output.iter().filter(|o| !o.is_empty()).collect();
        // Nodes tract folded to constants need no lowering; their outputs materialise on use.
        // (A DequantizeLinear of constant integers is still lowered: it folds itself and keeps
        // the integers for the int8 lowering.)
        if !outs.is_empty()
            && node.op_type != "DequantizeLinear"
            && outs.iter().all(|o| self.fact_const(o).is_some())
        {
            return Ok(());
        }
        let invalid = |msg: String| ImportError::Invalid {
            node: node.name.clone(),
            op_type: node.op_type.clone(),
            msg,
        };
        let lowered = match self.lower(node, &Attrs::of(node)) {
            Ok(l) => l,
            Err(LowerError::Unsupported(detail)) => {
                return Err(ImportError::Unsupported {
                    op_type: node.op_type.clone(),
                    node: node.name.clone(),
                    detail: format!(": {detail}"),
                })
            }
            Err(LowerError::Invalid(m)) => return Err(invalid(m)),
        };
        let (op, inputs) = match lowered {
            Lowered::Alias(v) => {
                self.by_name.insert(outs[0].clone(), v);
                return Ok(());
            }
            Lowered::Op(op, inputs) => (op, inputs),
        };
        let in_shapes: Vec<&[usize]> = inputs
            .iter()
            .map(|v| self.g.values[*v].shape.as_slice())
            .collect();
        let out_shapes = op
            .output_shapes(&in_shapes)
            .map_err(|e| invalid(e.to_string()))?;
        if out_shapes.len() > node.output.len() {
            return Err(invalid(format!("expected {} outputs", out_shapes.len())));
        }
        for (name, shape) in node.output.iter().zip(&out_shapes) {
            if let Some(t) = self.tract_shape(name) {
                if &t != shape && !name.is_empty() {
                    return Err(invalid(format!(
                        "output '{name}': speck infers shape {shape:?}, tract infers {t:?}"
                    )));
                }
            }
            if let Some(dt) = self.fact(name).and_then(|f| f.datum_type.concretize()) {
                // QuantizeLinear's integers are held as f32 (see ops/quant.rs).
                if dt != f32::datum_type() && !name.is_empty() && node.op_type != "QuantizeLinear" {
                    return Err(ImportError::Unsupported {
                        op_type: node.op_type.clone(),
                        node: node.name.clone(),
                        detail: format!(
                            ": output '{name}' is {dt:?} at run time; only f32 tensors run"
                        ),
                    });
                }
            }
        }
        // Inputs that are all constant: fold now with the reference implementation.
        let all_const = inputs
            .iter()
            .all(|v| matches!(self.g.constant(*v), Some(Tensor::F32(_))));
        if all_const {
            let outputs =
                fold(&self.g, &op, &inputs, &out_shapes).map_err(|e| invalid(e.to_string()))?;
            for (name, t) in node.output.iter().zip(outputs) {
                let v = self.g.add_const(name.clone(), t);
                self.by_name.insert(name.clone(), v);
            }
            return Ok(());
        }
        let outputs: Vec<ValueId> = node
            .output
            .iter()
            .zip(out_shapes)
            .map(|(name, shape)| {
                let v = self.g.add_value(name.clone(), shape);
                if !name.is_empty() {
                    self.by_name.insert(name.clone(), v);
                }
                v
            })
            .collect();
        let name = if node.name.is_empty() {
            format!("{}_{}", node.op_type, self.g.nodes.len())
        } else {
            node.name.clone()
        };
        self.g.nodes.push(crate::model::Node {
            name,
            op,
            inputs,
            outputs,
        });
        Ok(())
    }

    fn lower(&mut self, node: &NodeProto, a: &Attrs) -> Result<Lowered, LowerError> {
        let op = node.op_type.as_str();
        if let Some(l) = self.lower_nn(op, node, a)? {
            return Ok(l);
        }
        if let Some(l) = self.lower_tensor(op, node, a)? {
            return Ok(l);
        }
        Err(LowerError::Unsupported(
            "only supported when its result is constant (shape arithmetic); here it depends on the input".into(),
        ))
    }

    /// Input `i` as a runtime or constant value.
    pub fn input(&mut self, node: &NodeProto, i: usize) -> Result<ValueId, LowerError> {
        let name = node
            .input
            .get(i)
            .filter(|n| !n.is_empty())
            .ok_or_else(|| LowerError::Invalid(format!("missing input {i}")))?;
        self.value(name).map_err(LowerError::Invalid)
    }

    /// Input `i`, which must be constant.
    pub fn required_const(
        &mut self,
        node: &NodeProto,
        i: usize,
        what: &str,
    ) -> Result<Tensor, LowerError> {
        self.const_input(node, i)
            .ok_or_else(|| LowerError::Unsupported(format!("{what} (input {i}) must be constant")))
    }

    /// A unary op over input 0.
    pub fn unary(&mut self, node: &NodeProto, u: UnaryOp) -> Result<Lowered, LowerError> {
        Ok(Lowered::Op(Op::Unary(u), vec![self.input(node, 0)?]))
    }
}

/// Lowering failure, turned into an [`ImportError`] naming the node.
pub(super) enum LowerError {
    Unsupported(String),
    Invalid(String),
}

/// Evaluate an op on constant f32 inputs.
fn fold(
    g: &Graph,
    op: &Op,
    inputs: &[ValueId],
    out_shapes: &[Vec<usize>],
) -> Result<Vec<Tensor>, crate::ops::OpError> {
    let ins: Vec<ArrayViewD<f32>> = inputs
        .iter()
        .map(|v| match g.constant(*v) {
            Some(Tensor::F32(a)) => a.view(),
            _ => unreachable!("fold is only called on f32 constants"),
        })
        .collect();
    let mut outs: Vec<ndarray::ArrayD<f32>> = out_shapes
        .iter()
        .map(|s| ndarray::ArrayD::zeros(IxDyn(s)))
        .collect();
    {
        let mut views: Vec<ArrayViewMutD<f32>> = outs.iter_mut().map(|o| o.view_mut()).collect();
        op.run_reference(&ins, &mut views)?;
    }
    Ok(outs.into_iter().map(Tensor::F32).collect())
}

/// Normalise a possibly negative axis.
pub(super) fn axis(a: i64, rank: usize) -> Result<usize, LowerError> {
    let r = rank as i64;
    let v = if a < 0 { a + r } else { a };
    if v < 0 || v >= r.max(1) {
        return Err(LowerError::Invalid(format!(
            "axis {a} out of range for rank {rank}"
        )));
    }
    Ok(v as usize)
}
