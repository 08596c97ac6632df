//! Reductions and softmax.

use super::{OpResult, ReduceKind};
use ndarray::{ArrayViewD, ArrayViewMutD};

/// Shape after reducing `axes`.
pub fn reduce_shape(axes: &[usize], keepdims: bool, x: &[usize]) -> OpResult<Vec<usize>> { todo!() }
/// Reference reduction.
pub fn run_reduce(kind: ReduceKind, axes: &[usize], keepdims: bool, x: &ArrayViewD<f32>, y: &mut ArrayViewMutD<f32>) -> OpResult<()> { todo!() }
/// Reference softmax (max-subtracted).
pub fn run_softmax(axis: usize, x: &ArrayViewD<f32>, y: &mut ArrayViewMutD<f32>) -> OpResult<()> { todo!() }
