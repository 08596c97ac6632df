//! Convolution (2-D, NCHW): general, grouped, depthwise, 1x1, any stride/pad/dilation.

use super::{Activation, OpResult};
use ndarray::{ArrayViewD, ArrayViewMutD};

/// Attributes of a 2-D convolution. Kernel size comes from the weight tensor.
#[derive(Clone, Debug, PartialEq)]
pub struct Conv {
    /// number of groups (C for depthwise)
    pub group: usize,
    /// (stride_h, stride_w)
    pub strides: [usize; 2],
    /// (top, left, bottom, right), explicit (auto_pad resolved at import)
    pub pads: [usize; 4],
    /// (dilation_h, dilation_w)
    pub dilations: [usize; 2],
    /// activation fused after bias (set by the fusion pass)
    pub activation: Option<Activation>,
}

/// Output shape: inputs are x `[N,C,H,W]`, w `[M,C/group,kh,kw]`, optional b `[M]`.
pub fn conv_shape(c: &Conv, inputs: &[&[usize]]) -> OpResult<Vec<usize>> {
    todo!()
}

/// Reference convolution: direct loops, bias, then the fused activation.
pub fn run_conv(c: &Conv, inputs: &[ArrayViewD<f32>], y: &mut ArrayViewMutD<f32>) -> OpResult<()> {
    todo!()
}
