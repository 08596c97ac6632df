//! Pooling: MaxPool, AveragePool, GlobalAveragePool, GlobalMaxPool (NCHW).

use super::OpResult;
use ndarray::{ArrayViewD, ArrayViewMutD};

/// Pooling kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PoolKind {
    /// maximum
    Max,
    /// average
    Average,
}

/// Attributes of MaxPool / AveragePool over the two spatial axes.
#[derive(Clone, Debug, PartialEq)]
pub struct Pool {
    /// max or average
    pub kind: PoolKind,
    /// (kh, kw)
    pub kernel: [usize; 2],
    /// (sh, sw)
    pub strides: [usize; 2],
    /// (top, left, bottom, right), auto_pad resolved at import
    pub pads: [usize; 4],
    /// (dh, dw)
    pub dilations: [usize; 2],
    /// ceil_mode
    pub ceil_mode: bool,
    /// AveragePool: padded cells count in the divisor
    pub count_include_pad: bool,
}

/// `[N,C,H,W] -> [N,C,1,1]`.
pub fn global_pool_shape(x: &[usize]) -> OpResult<Vec<usize>> {
    todo!()
}

/// Reference global average (`max == false`) or max pool.
pub fn run_global_pool(max: bool, x: &ArrayViewD<f32>, y: &mut ArrayViewMutD<f32>) -> OpResult<()> {
    todo!()
}

/// Output shape of a windowed pool (ONNX rules, ceil_mode included).
pub fn pool_shape(p: &Pool, x: &[usize]) -> OpResult<Vec<usize>> {
    todo!()
}

/// Reference windowed pool.
pub fn run_pool(p: &Pool, x: &ArrayViewD<f32>, y: &mut ArrayViewMutD<f32>) -> OpResult<()> {
    todo!()
}
