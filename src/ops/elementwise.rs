//! Element-wise unary and broadcasting binary ops.

use super::{BinaryOp, OpResult, UnaryOp};
use ndarray::{ArrayViewD, ArrayViewMutD};

/// Apply an activation to one value (shared by fused kernels).
pub fn apply_activation(a: super::Activation, x: f32) -> f32 {
    todo!()
}

/// Numpy broadcasting of several shapes.
pub fn broadcast_shape(shapes: &[&[usize]]) -> OpResult<Vec<usize>> {
    todo!()
}

/// Reference unary op.
pub fn run_unary(op: UnaryOp, x: &ArrayViewD<f32>, y: &mut ArrayViewMutD<f32>) -> OpResult<()> {
    todo!()
}

/// Reference binary op with broadcasting.
pub fn run_binary(op: BinaryOp, a: &ArrayViewD<f32>, b: &ArrayViewD<f32>, y: &mut ArrayViewMutD<f32>) -> OpResult<()> {
    todo!()
}

/// LGA rewrite: every channel of a head gets the sum over the head's channels (axis 2 of `[B,h,d,n]`).
pub fn run_head_channel_sum(x: &ArrayViewD<f32>, y: &mut ArrayViewMutD<f32>) -> OpResult<()> {
    todo!()
}
