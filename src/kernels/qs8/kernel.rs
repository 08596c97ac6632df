//! [`Int8Kernel`]: an int8 op planned for its input shapes, run on raw arena bytes.

use super::conv::ConvQs8;
use super::elementwise as ew;
use super::Level;
use crate::ops::{Int8Op, OpError, OpResult, QOp};
use ndarray::{ArrayViewD, ArrayViewMutD, IxDyn};

/// A planned int8 step.
#[derive(Clone, Debug)]
pub struct Int8Kernel {
    op: Int8Op,
    in_shapes: Vec<Vec<usize>>,
    conv: Option<Box<ConvQs8>>,
    /// an int8 Resize's H and W taps (planned once; it runs in the stored NHWC layout)
    resize_taps: Option<Box<ResizeTaps>>,
    level: Level,
}

/// Source indices and weights per output row and per output column.
type ResizeTaps = (Vec<Vec<(usize, f32)>>, Vec<Vec<(usize, f32)>>);

impl Int8Kernel {
    /// Plan `op` for inputs of `in_shapes` at `level`.
    pub fn new(op: &Int8Op, in_shapes: &[&[usize]], level: Level) -> OpResult<Int8Kernel> {
        op.check().map_err(OpError::Invalid)?;
        let need = match &op.op {
            QOp::Binary { .. } => 2,
            QOp::Conv(c) if c.residual.is_some() => 2,
            QOp::Concat { inputs, .. } => inputs.len(),
            _ => 1,
        };
        if in_shapes.len() != need {
            return Err(OpError::Arity {
                expected: need,
                got: in_shapes.len(),
            });
        }
        let conv = match &op.op {
            // A Gemm lowered to a 1x1 conv: `[rows, K]` is NHWC `[rows, 1, 1, K]`.
            QOp::Conv(c) if in_shapes[0].len() == 2 => {
                let s = [in_shapes[0][0], in_shapes[0][1], 1, 1];
                Some(Box::new(ConvQs8::new(c, &s, level)?))
            }
            QOp::Conv(c) => Some(Box::new(ConvQs8::new(c, in_shapes[0], level)?)),
            _ => None,
        };
        if let QOp::Conv(c) = &op.op {
            if c.residual.is_some() && in_shapes[1] != op.out_shape.as_slice() {
                return Err(OpError::Shape(format!(
                    "quantized conv: the residual input {:?} is not the output's shape {:?}",
                    in_shapes[1], op.out_shape
                )));
            }
        }
        if let QOp::GlobalAveragePool { .. } = op.op {
            if in_shapes[0].len() != 4 {
                return Err(OpError::Shape("int8 global pool needs rank 4".into()));
            }
        }
        let resize_taps = match &op.op {
            QOp::Float { op: f, .. } => match &**f {
                crate::ops::Op::Resize(r) => crate::ops::hw_taps(r, in_shapes[0]).map(Box::new),
                _ => None,
            },
            _ => None,
        };
        Ok(Int8Kernel {
            op: op.clone(),
            in_shapes: in_shapes.iter().map(|s| s.to_vec()).collect(),
            conv,
            resize_taps,
            level,
        })
    }

    /// Op and algorithm name.
    pub fn name(&self) -> String {
        match &self.conv {
            Some(c) if self.in_shapes[0].len() == 2 => format!("QGemm [{}]", c.algorithm()),
            Some(c) => format!("{} [{}]", self.op.name(), c.algorithm()),
            None => self.op.name(),
        }
    }

    /// Scratch in f32 units.
    pub fn scratch_len(&self) -> usize {
        match (&self.conv, &self.op.op) {
            (Some(c), _) => c.scratch_len(),
            (None, QOp::Float { .. }) => {
                self.in_shapes[0].iter().product::<usize>()
                    + self.op.out_shape.iter().product::<usize>()
            }
            _ => 0,
        }
    }

    /// Run. Inputs and output are byte pointers into the arena (f32 tensors are f32-aligned).
    ///
    /// # Safety
    /// Pointers must hold tensors of the planned shapes and types and must not overlap.
    pub unsafe fn run(&self, ins: &[*const u8], out: *mut u8, scratch: &mut [f32]) -> OpResult<()> {
        let len = |s: &[usize]| s.iter().product::<usize>();
        let in0 = || std::slice::from_raw_parts(ins[0], len(&self.in_shapes[0]));
        let out_len = len(&self.op.out_shape);
        let out_u8 = || std::slice::from_raw_parts_mut(out, out_len);
        match &self.op.op {
            QOp::Quantize { out: q } => {
                let x = std::slice::from_raw_parts(ins[0] as *const f32, out_len);
                ew::quantize(self.level, *q, &self.op.out_shape, x, out_u8());
            }
            QOp::Dequantize { input } => {
                let y = std::slice::from_raw_parts_mut(out as *mut f32, out_len);
                ew::dequantize(self.level, *input, &self.op.out_shape, in0(), y);
            }
            QOp::FakeQuant(r) => {
                let x = std::slice::from_raw_parts(ins[0] as *const f32, out_len);
                let y = std::slice::from_raw_parts_mut(out as *mut f32, out_len);
                let level = self.level;
                crate::kernels::par::rows_mut(y, 1, |i, y| {
                    ew::fake_quantize_row(level, *r, &x[i], y)
                });
            }
            QOp::Conv(_) => {
                self.conv.as_ref().expect("planned").run(
                    ins[0],
                    ins.get(1).copied().unwrap_or(std::ptr::null()),
                    out,
                    scratch,
                );
            }
            QOp::Lut { table } => ew::lut(table, in0(), out_u8()),
            QOp::Binary {
                kind,
                a,
                b,
                out: qo,
                b_per_channel,
            } => {
                let bl = len(&self.in_shapes[1]);
                let c = if self.in_shapes[0].len() == 4 {
                    self.in_shapes[0][1]
                } else {
                    1
                };
                ew::binary(
                    self.level,
                    *kind,
                    *a,
                    *b,
                    *qo,
                    c,
                    *b_per_channel,
                    in0(),
                    std::slice::from_raw_parts(ins[1], bl),
                    out_u8(),
                );
            }
            QOp::Concat {
                axis,
                inputs,
                out: qo,
            } => {
                let xs: Vec<&[u8]> = ins
                    .iter()
                    .zip(&self.in_shapes)
                    .map(|(p, s)| std::slice::from_raw_parts(*p, len(s)))
                    .collect();
                ew::concat(*axis, &self.in_shapes, inputs, *qo, &xs, out_u8());
            }
            QOp::GlobalAveragePool { input, out: qo } => {
                let s = &self.in_shapes[0];
                ew::global_average_pool(
                    self.level,
                    *input,
                    *qo,
                    s[0],
                    s[2] * s[3],
                    s[1],
                    in0(),
                    out_u8(),
                );
            }
            QOp::Float { op, input, out: qo } => {
                let n_in = len(&self.in_shapes[0]);
                if let (crate::ops::Op::Resize(r), Some(taps)) = (&**op, &self.resize_taps) {
                    // An upsampling runs in the stored NHWC layout: no transposes.
                    let (th, tw) = &**taps;
                    let (xs, y) = (in0(), out_u8());
                    if matches!(r.mode, crate::ops::ResizeMode::Nearest(_)) {
                        ew::resize_nearest_nhwc(*input, *qo, &self.in_shapes[0], th, tw, xs, y);
                    } else {
                        let (xf, yf) = scratch.split_at_mut(n_in);
                        ew::dequantize_row(*input, xs, xf);
                        let yf = &mut yf[..out_len];
                        crate::ops::resize_nhwc(th, tw, &self.in_shapes[0], xf, yf);
                        ew::quantize_row(self.level, *qo, yf, y);
                    }
                    return Ok(());
                }
                let (xf, yf) = scratch.split_at_mut(n_in);
                ew::dequantize(self.level, *input, &self.in_shapes[0], in0(), xf);
                let yf = &mut yf[..out_len];
                {
                    let xv = ArrayViewD::from_shape(IxDyn(&self.in_shapes[0]), &*xf)
                        .map_err(|e| OpError::Shape(e.to_string()))?;
                    let yv = ArrayViewMutD::from_shape(IxDyn(&self.op.out_shape), &mut *yf)
                        .map_err(|e| OpError::Shape(e.to_string()))?;
                    op.run_reference(&[xv], &mut [yv])?;
                }
                ew::quantize(self.level, *qo, &self.op.out_shape, yf, out_u8());
            }
        }
        Ok(())
    }
}
