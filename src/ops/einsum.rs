//! Einsum with explicit or implicit output, any number of operands, no ellipsis needed by
//! this model family (ellipsis supported where cheap).

use super::OpResult;
use ndarray::{ArrayViewD, ArrayViewMutD};

/// Output shape of an einsum.
pub fn einsum_shape(equation: &str, inputs: &[&[usize]]) -> OpResult<Vec<usize>> { todo!() }
/// Reference einsum (loops over the full index space).
pub fn run_einsum(equation: &str, inputs: &[ArrayViewD<f32>], y: &mut ArrayViewMutD<f32>) -> OpResult<()> { todo!() }
