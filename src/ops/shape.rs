//! Data movement: Concat, Slice, Split, Transpose, Reshape, Expand, Gather, Pad.

use super::OpResult;
use ndarray::{ArrayViewD, ArrayViewMutD};

/// One sliced axis: `start..end` by `step` (step may be negative), already clamped to the axis.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SliceAxis {
    /// non-negative axis
    pub axis: usize,
    /// first index taken
    pub start: i64,
    /// exclusive end (may be -1 for negative steps reaching index 0)
    pub end: i64,
    /// non-zero step
    pub step: i64,
}

/// Attributes of a slice.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Slice {
    /// sliced axes
    pub axes: Vec<SliceAxis>,
}

/// Pad mode.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum PadMode {
    /// fill with a value
    Constant(f32),
    /// mirror without repeating the edge
    Reflect,
    /// repeat the edge
    Edge,
}

/// Shape of a concatenation.
pub fn concat_shape(axis: usize, inputs: &[&[usize]]) -> OpResult<Vec<usize>> { todo!() }
/// Reference concat.
pub fn run_concat(axis: usize, inputs: &[ArrayViewD<f32>], y: &mut ArrayViewMutD<f32>) -> OpResult<()> { todo!() }
/// Shape of a slice.
pub fn slice_shape(s: &Slice, x: &[usize]) -> OpResult<Vec<usize>> { todo!() }
/// Reference slice.
pub fn run_slice(s: &Slice, x: &ArrayViewD<f32>, y: &mut ArrayViewMutD<f32>) -> OpResult<()> { todo!() }
/// Shapes of a split.
pub fn split_shapes(axis: usize, sizes: &[usize], x: &[usize]) -> OpResult<Vec<Vec<usize>>> { todo!() }
/// Reference split.
pub fn run_split(axis: usize, x: &ArrayViewD<f32>, ys: &mut [ArrayViewMutD<f32>]) -> OpResult<()> { todo!() }
/// Shape of a transpose.
pub fn transpose_shape(perm: &[usize], x: &[usize]) -> OpResult<Vec<usize>> { todo!() }
/// Reference transpose.
pub fn run_transpose(perm: &[usize], x: &ArrayViewD<f32>, y: &mut ArrayViewMutD<f32>) -> OpResult<()> { todo!() }
/// Check a reshape keeps the element count.
pub fn reshape_shape(shape: &[usize], x: &[usize]) -> OpResult<Vec<usize>> { todo!() }
/// Copy `x` into `y` in row-major order (shapes may differ, counts equal).
pub fn run_copy(x: &ArrayViewD<f32>, y: &mut ArrayViewMutD<f32>) -> OpResult<()> { todo!() }
/// Reference expand (broadcast `x` to `y`'s shape).
pub fn run_expand(x: &ArrayViewD<f32>, y: &mut ArrayViewMutD<f32>) -> OpResult<()> { todo!() }
/// Shape of a gather.
pub fn gather_shape(axis: usize, indices_shape: &[usize], x: &[usize]) -> OpResult<Vec<usize>> { todo!() }
/// Reference gather.
pub fn run_gather(axis: usize, indices: &[usize], x: &ArrayViewD<f32>, y: &mut ArrayViewMutD<f32>) -> OpResult<()> { todo!() }
/// Shape of a pad.
pub fn pad_shape(pads: &[(usize, usize)], x: &[usize]) -> OpResult<Vec<usize>> { todo!() }
/// Reference pad.
pub fn run_pad(pads: &[(usize, usize)], mode: PadMode, x: &ArrayViewD<f32>, y: &mut ArrayViewMutD<f32>) -> OpResult<()> { todo!() }
