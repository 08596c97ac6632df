//! speck's operator vocabulary: every op the float engine runs, with its attributes fully
//! resolved at import time (no shape or index arithmetic happens at run time).
//!
//! Each op family lives in its own file and provides two things:
//! - shape inference (`*_shape`): output shapes from input shapes;
//! - the portable reference implementation (`run_*`): plain Rust over ndarray views, obviously
//!   correct, used by the reference executor and as the oracle for optimised kernels in
//!   `crate::kernels`.

mod conv;
mod einsum;
mod elementwise;
mod grid_sample;
mod int8;
mod lda_aqu;
mod matmul;
mod norm;
mod pool;
mod quant;
mod reduce;
mod resize;
mod shape;
#[cfg(test)]
pub(crate) mod test_util;

pub use conv::*;
pub use einsum::*;
pub use elementwise::*;
pub use grid_sample::*;
pub use int8::*;
pub use lda_aqu::*;
pub use matmul::*;
pub use norm::*;
pub use pool::*;
pub use quant::*;
pub use reduce::*;
pub use resize::*;
pub use shape::*;

use ndarray::{ArrayViewD, ArrayViewMutD};

/// Error from shape inference or execution of one op.
#[derive(Debug, thiserror::Error)]
pub enum OpError {
    /// Inputs do not satisfy the op's shape rules.
    #[error("shape error: {0}")]
    Shape(String),
    /// Wrong number of inputs or outputs.
    #[error("expected {expected} inputs, got {got}")]
    Arity {
        /// Expected count.
        expected: usize,
        /// Actual count.
        got: usize,
    },
    /// An attribute value the op cannot handle.
    #[error("unsupported: {0}")]
    Unsupported(String),
    /// Parameters that break the op's invariants (a corrupt or crafted compiled file).
    #[error("invalid parameters: {0}")]
    Invalid(String),
}

/// Shorthand for op results.
pub type OpResult<T> = Result<T, OpError>;

/// Element-wise activation, also fused into convolutions.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum Activation {
    /// max(x, 0)
    Relu,
    /// x if x >= 0 else alpha * x
    LeakyRelu(f32),
    /// min(max(x, lo), hi)
    Clip(f32, f32),
    /// x * relu6(x + 3) / 6
    HardSwish,
    /// max(0, min(1, alpha * x + beta))
    HardSigmoid {
        /// slope
        alpha: f32,
        /// offset
        beta: f32,
    },
    /// 1 / (1 + exp(-x))
    Sigmoid,
    /// x * sigmoid(x)
    Silu,
    /// tanh(x)
    Tanh,
    /// x * 0.5 * (1 + erf(x / sqrt 2))
    Gelu,
}

impl Activation {
    /// The ONNX-style name.
    pub fn name(&self) -> &'static str {
        match self {
            Activation::Relu => "Relu",
            Activation::LeakyRelu(_) => "LeakyRelu",
            Activation::Clip(..) => "Clip",
            Activation::HardSwish => "HardSwish",
            Activation::HardSigmoid { .. } => "HardSigmoid",
            Activation::Sigmoid => "Sigmoid",
            Activation::Silu => "Silu",
            Activation::Tanh => "Tanh",
            Activation::Gelu => "Gelu",
        }
    }
}

/// One-input element-wise functions.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum UnaryOp {
    /// An activation.
    Act(Activation),
    /// erf(x)
    Erf,
    /// exp(x)
    Exp,
    /// ln(x)
    Log,
    /// sqrt(x)
    Sqrt,
    /// -x
    Neg,
    /// |x|
    Abs,
    /// 1/x
    Reciprocal,
    /// floor(x)
    Floor,
    /// ceil(x)
    Ceil,
    /// round half to even
    Round,
    /// x (Identity, Cast f32->f32, Dropout at inference)
    Identity,
}

/// Two-input element-wise functions with numpy (ONNX multidirectional) broadcasting.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum BinaryOp {
    /// a + b
    Add,
    /// a - b
    Sub,
    /// a * b
    Mul,
    /// a / b
    Div,
    /// a ^ b
    Pow,
    /// max(a, b)
    Max,
    /// min(a, b)
    Min,
}

/// Reductions.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum ReduceKind {
    /// mean
    Mean,
    /// sum
    Sum,
    /// max
    Max,
    /// min
    Min,
    /// product
    Prod,
    /// sum of squares
    SumSquare,
    /// sqrt of sum of squares
    L2,
}

/// An operator with all attributes resolved. Input order follows ONNX unless noted.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum Op {
    /// 2-D convolution: inputs `x [N,C,H,W]`, `w [M, C/group, kh, kw]`, optional `b [M]`.
    Conv(Conv),
    /// Element-wise unary function.
    Unary(UnaryOp),
    /// Element-wise binary function with broadcasting.
    Binary(BinaryOp),
    /// Concatenate all inputs along `axis`.
    Concat {
        /// non-negative axis
        axis: usize,
    },
    /// Strided slice; one entry per sliced axis.
    Slice(Slice),
    /// Split along `axis` into pieces of `sizes`.
    Split {
        /// non-negative axis
        axis: usize,
        /// size of each output along the axis
        sizes: Vec<usize>,
    },
    /// Permute axes.
    Transpose {
        /// output axis i is input axis perm[i]
        perm: Vec<usize>,
    },
    /// Same data, new shape (Reshape, Flatten, Squeeze, Unsqueeze, Identity on shapes).
    Reshape {
        /// output shape, fully resolved
        shape: Vec<usize>,
    },
    /// Broadcast the input to `shape` (ONNX Expand, resolved).
    Expand {
        /// output shape
        shape: Vec<usize>,
    },
    /// Gather along `axis` with constant indices (negative indices already resolved).
    Gather {
        /// non-negative axis
        axis: usize,
        /// indices into the axis
        indices: Vec<usize>,
        /// shape of the indices tensor (empty for a scalar index)
        indices_shape: Vec<usize>,
    },
    /// Constant padding of a tensor: `pads[i] = (before, after)` for each axis.
    Pad {
        /// per-axis (before, after)
        pads: Vec<(usize, usize)>,
        /// fill value (mode constant), or how edges are treated
        mode: PadMode,
    },
    /// Reduction over `axes`.
    Reduce {
        /// reduction kind
        kind: ReduceKind,
        /// non-negative axes, sorted
        axes: Vec<usize>,
        /// keep reduced axes as size 1
        keepdims: bool,
    },
    /// Global average pool over H, W: `[N,C,H,W] -> [N,C,1,1]`.
    GlobalAveragePool,
    /// Global max pool over H, W.
    GlobalMaxPool,
    /// MaxPool / AveragePool over H, W.
    Pool(Pool),
    /// Resize of the two spatial axes of `[N,C,H,W]` (or any axes with scale 1 elsewhere).
    Resize(Resize),
    /// Softmax along `axis`.
    Softmax {
        /// non-negative axis
        axis: usize,
    },
    /// LayerNormalization over axes `axis..rank`: inputs x, scale, optional bias.
    LayerNorm {
        /// first normalised axis (non-negative)
        axis: usize,
        /// epsilon
        epsilon: f32,
    },
    /// BatchNormalization in inference mode: inputs x, scale, bias, mean, var (usually folded).
    BatchNorm {
        /// epsilon
        epsilon: f32,
    },
    /// numpy matmul with batch broadcasting.
    MatMul,
    /// Gemm: `alpha * A' B' + beta * C`.
    Gemm(Gemm),
    /// Einsum with an explicit equation (`ij,jk->ik`).
    Einsum {
        /// equation with explicit output
        equation: String,
    },
    /// GridSample on `[N,C,H,W]` with a grid `[N,Ho,Wo,2]` of (x, y) in [-1, 1].
    GridSample(GridSample),
    /// LGA's degenerate einsum pair rewritten: input `[B, h, d, n]`, output `[B, h, d, n]`
    /// where every channel of a head holds the sum of that head's `d` channels.
    HeadChannelSum,
    /// ONNX QuantizeLinear: the integers, held as f32 (see `quant.rs`).
    QuantizeLinear(QuantParams),
    /// ONNX DequantizeLinear of a runtime tensor (constant weights are folded at import).
    DequantizeLinear(QuantParams),
    /// An int8 op on byte tensors (made by the int8 lowering; runs on `kernels::qs8` only).
    Int8(Box<Int8Op>),
    /// LDA-AQU's sampling, attention and weighted sum in one op (see [`LdaAqu`]).
    LdaAqu(Box<LdaAqu>),
    /// LayerNormalization over the channels (axis 1) of each pixel of `[N,C,...]`: inputs x,
    /// scale `[C]`, optional bias `[C]`. What Transpose to channels-last, LayerNormalization
    /// over the last axis and Transpose back compute (the LDA-AQU blocks' LayerNorms), without
    /// the transposes.
    ChannelLayerNorm {
        /// epsilon
        epsilon: f32,
    },
}

impl Op {
    /// Short name (the ONNX op type where there is one), for messages and profiles.
    pub fn name(&self) -> String {
        match self {
            Op::Conv(c) => {
                let act = c
                    .activation
                    .map_or(String::new(), |a| format!("+{}", a.name()));
                format!("Conv{act}{}", if c.residual { "+Add" } else { "" })
            }
            Op::Unary(UnaryOp::Act(a)) => a.name().into(),
            Op::Unary(u) => format!("{u:?}"),
            Op::Binary(b) => format!("{b:?}"),
            Op::Concat { .. } => "Concat".into(),
            Op::Slice(_) => "Slice".into(),
            Op::Split { .. } => "Split".into(),
            Op::Transpose { .. } => "Transpose".into(),
            Op::Reshape { .. } => "Reshape".into(),
            Op::Expand { .. } => "Expand".into(),
            Op::Gather { .. } => "Gather".into(),
            Op::Pad { .. } => "Pad".into(),
            Op::Reduce { kind, .. } => format!("Reduce{kind:?}"),
            Op::GlobalAveragePool => "GlobalAveragePool".into(),
            Op::GlobalMaxPool => "GlobalMaxPool".into(),
            Op::Pool(p) => format!("{:?}Pool", p.kind),
            Op::Resize(_) => "Resize".into(),
            Op::Softmax { .. } => "Softmax".into(),
            Op::LayerNorm { .. } => "LayerNormalization".into(),
            Op::BatchNorm { .. } => "BatchNormalization".into(),
            Op::MatMul => "MatMul".into(),
            Op::Gemm(_) => "Gemm".into(),
            Op::Einsum { .. } => "Einsum".into(),
            Op::GridSample(_) => "GridSample".into(),
            Op::HeadChannelSum => "HeadChannelSum".into(),
            Op::ChannelLayerNorm { .. } => "ChannelLayerNorm".into(),
            Op::QuantizeLinear(_) => "QuantizeLinear".into(),
            Op::DequantizeLinear(_) => "DequantizeLinear".into(),
            Op::Int8(q) => q.name(),
            Op::LdaAqu(_) => "LdaAqu".into(),
        }
    }

    /// True when the output is the input's data under another shape (no copy needed).
    pub fn is_view(&self) -> bool {
        matches!(self, Op::Reshape { .. } | Op::Unary(UnaryOp::Identity))
    }

    /// The fewest inputs the op reads.
    pub fn min_inputs(&self) -> usize {
        match self {
            Op::BatchNorm { .. } => 5,
            Op::Conv(c) if c.residual => 3,
            Op::Conv(_)
            | Op::Binary(_)
            | Op::MatMul
            | Op::Gemm(_)
            | Op::GridSample(_)
            | Op::LayerNorm { .. }
            | Op::ChannelLayerNorm { .. } => 2,
            Op::LdaAqu(_) => 5,
            _ => 1,
        }
    }

    /// Output shapes for the given input shapes.
    pub fn output_shapes(&self, inputs: &[&[usize]]) -> OpResult<Vec<Vec<usize>>> {
        let one = |s: Vec<usize>| Ok(vec![s]);
        match self {
            Op::Conv(c) => one(conv_shape(c, inputs)?),
            Op::Unary(_) => one(arity(inputs, 1)?[0].to_vec()),
            Op::Binary(_) => one(broadcast_shape(&[arity(inputs, 2)?[0], inputs[1]])?),
            Op::Concat { axis } => one(concat_shape(*axis, inputs)?),
            Op::Slice(s) => one(slice_shape(s, arity(inputs, 1)?[0])?),
            Op::Split { axis, sizes } => split_shapes(*axis, sizes, arity(inputs, 1)?[0]),
            Op::Transpose { perm } => one(transpose_shape(perm, arity(inputs, 1)?[0])?),
            Op::Reshape { shape } => one(reshape_shape(shape, arity(inputs, 1)?[0])?),
            Op::Expand { shape } => one(broadcast_shape(&[arity(inputs, 1)?[0], shape])?),
            Op::Gather {
                axis,
                indices_shape,
                ..
            } => one(gather_shape(*axis, indices_shape, arity(inputs, 1)?[0])?),
            Op::Pad { pads, .. } => one(pad_shape(pads, arity(inputs, 1)?[0])?),
            Op::Reduce { axes, keepdims, .. } => {
                one(reduce_shape(axes, *keepdims, arity(inputs, 1)?[0])?)
            }
            Op::GlobalAveragePool | Op::GlobalMaxPool => {
                one(global_pool_shape(arity(inputs, 1)?[0])?)
            }
            Op::Pool(p) => one(pool_shape(p, arity(inputs, 1)?[0])?),
            Op::Resize(r) => one(resize_shape(r, arity(inputs, 1)?[0])?),
            Op::Softmax { axis } => {
                let s = arity(inputs, 1)?[0];
                check_axis(*axis, s)?;
                one(s.to_vec())
            }
            Op::LayerNorm { axis, .. } => one(layer_norm_shape(*axis, inputs)?),
            Op::ChannelLayerNorm { .. } => one(channel_layer_norm_shape(inputs)?),
            Op::BatchNorm { .. } => one(batch_norm_shape(inputs)?),
            Op::MatMul => one(matmul_shape(arity(inputs, 2)?[0], inputs[1])?),
            Op::Gemm(g) => one(gemm_shape(g, inputs)?),
            Op::Einsum { equation } => one(einsum_shape(equation, inputs)?),
            Op::GridSample(_) => one(grid_sample_shape(arity(inputs, 2)?[0], inputs[1])?),
            Op::QuantizeLinear(_) | Op::DequantizeLinear(_) => one(arity(inputs, 1)?[0].to_vec()),
            Op::Int8(q) => {
                let s = q.infer_shape(inputs)?;
                if s != q.out_shape {
                    return Err(OpError::Shape(format!(
                        "{}: stored output shape {:?}, its inputs give {s:?}",
                        q.name(),
                        q.out_shape
                    )));
                }
                one(s)
            }
            Op::LdaAqu(a) => one(lda_aqu_shape(a, inputs)?),
            Op::HeadChannelSum => {
                let s = arity(inputs, 1)?[0];
                if s.len() != 4 {
                    return Err(OpError::Shape(format!(
                        "HeadChannelSum expects rank 4, got {s:?}"
                    )));
                }
                one(s.to_vec())
            }
        }
    }

    /// Run the portable reference implementation. `outputs` are preallocated with the shapes
    /// from [`Op::output_shapes`]; their previous contents are undefined.
    pub fn run_reference(
        &self,
        inputs: &[ArrayViewD<f32>],
        outputs: &mut [ArrayViewMutD<f32>],
    ) -> OpResult<()> {
        let out = |outputs: &mut [ArrayViewMutD<f32>]| -> OpResult<()> {
            if outputs.len() != 1 {
                return Err(OpError::Arity {
                    expected: 1,
                    got: outputs.len(),
                });
            }
            Ok(())
        };
        if inputs.len() < self.min_inputs() {
            return Err(OpError::Arity {
                expected: self.min_inputs(),
                got: inputs.len(),
            });
        }
        if !matches!(self, Op::Split { .. }) {
            out(outputs)?;
        }
        match self {
            Op::Conv(c) => run_conv(c, inputs, &mut outputs[0]),
            Op::Unary(u) => run_unary(*u, &inputs[0], &mut outputs[0]),
            Op::Binary(b) => run_binary(*b, &inputs[0], &inputs[1], &mut outputs[0]),
            Op::Concat { axis } => run_concat(*axis, inputs, &mut outputs[0]),
            Op::Slice(s) => run_slice(s, &inputs[0], &mut outputs[0]),
            Op::Split { axis, .. } => run_split(*axis, &inputs[0], outputs),
            Op::Transpose { perm } => run_transpose(perm, &inputs[0], &mut outputs[0]),
            Op::Reshape { .. } => run_copy(&inputs[0], &mut outputs[0]),
            Op::Expand { .. } => run_expand(&inputs[0], &mut outputs[0]),
            Op::Gather { axis, indices, .. } => {
                run_gather(*axis, indices, &inputs[0], &mut outputs[0])
            }
            Op::Pad { pads, mode } => run_pad(pads, *mode, &inputs[0], &mut outputs[0]),
            Op::Reduce {
                kind,
                axes,
                keepdims,
            } => run_reduce(*kind, axes, *keepdims, &inputs[0], &mut outputs[0]),
            Op::GlobalAveragePool => run_global_pool(false, &inputs[0], &mut outputs[0]),
            Op::GlobalMaxPool => run_global_pool(true, &inputs[0], &mut outputs[0]),
            Op::Pool(p) => run_pool(p, &inputs[0], &mut outputs[0]),
            Op::Resize(r) => run_resize(r, &inputs[0], &mut outputs[0]),
            Op::Softmax { axis } => run_softmax(*axis, &inputs[0], &mut outputs[0]),
            Op::LayerNorm { axis, epsilon } => {
                run_layer_norm(*axis, *epsilon, inputs, &mut outputs[0])
            }
            Op::BatchNorm { epsilon } => run_batch_norm(*epsilon, inputs, &mut outputs[0]),
            Op::MatMul => run_matmul(&inputs[0], &inputs[1], &mut outputs[0]),
            Op::Gemm(g) => run_gemm(g, inputs, &mut outputs[0]),
            Op::Einsum { equation } => run_einsum(equation, inputs, &mut outputs[0]),
            Op::GridSample(g) => run_grid_sample(g, &inputs[0], &inputs[1], &mut outputs[0]),
            Op::HeadChannelSum => run_head_channel_sum(&inputs[0], &mut outputs[0]),
            Op::ChannelLayerNorm { epsilon } => {
                run_channel_layer_norm(*epsilon, inputs, &mut outputs[0])
            }
            Op::QuantizeLinear(p) => run_quantize(p, &inputs[0], &mut outputs[0]),
            Op::DequantizeLinear(p) => run_dequantize(p, &inputs[0], &mut outputs[0]),
            Op::LdaAqu(a) => run_lda_aqu(a, inputs, &mut outputs[0]),
            Op::Int8(q) => Err(OpError::Unsupported(format!(
                "{} runs on int8 byte tensors, not through the f32 reference",
                q.name()
            ))),
        }
    }
}

/// Check the input count and return the shapes.
pub fn arity<'a, 'b>(inputs: &'a [&'b [usize]], n: usize) -> OpResult<&'a [&'b [usize]]> {
    if inputs.len() < n {
        return Err(OpError::Arity {
            expected: n,
            got: inputs.len(),
        });
    }
    Ok(inputs)
}

/// Check that `axis` is inside `shape`'s rank.
pub fn check_axis(axis: usize, shape: &[usize]) -> OpResult<()> {
    if axis >= shape.len() {
        return Err(OpError::Shape(format!(
            "axis {axis} out of range for shape {shape:?}"
        )));
    }
    Ok(())
}
