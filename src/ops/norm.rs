//! LayerNormalization and BatchNormalization (inference).

use super::OpResult;
use ndarray::{ArrayViewD, ArrayViewMutD};

/// Shape check for LayerNorm: x, scale (broadcastable to x[axis..]), optional bias.
pub fn layer_norm_shape(axis: usize, inputs: &[&[usize]]) -> OpResult<Vec<usize>> { todo!() }
/// Reference LayerNorm over axes `axis..rank`.
pub fn run_layer_norm(axis: usize, epsilon: f32, inputs: &[ArrayViewD<f32>], y: &mut ArrayViewMutD<f32>) -> OpResult<()> { todo!() }
/// Shape check for BatchNorm: x `[N,C,...]`, scale, bias, mean, var `[C]`.
pub fn batch_norm_shape(inputs: &[&[usize]]) -> OpResult<Vec<usize>> { todo!() }
/// Reference BatchNorm.
pub fn run_batch_norm(epsilon: f32, inputs: &[ArrayViewD<f32>], y: &mut ArrayViewMutD<f32>) -> OpResult<()> { todo!() }
