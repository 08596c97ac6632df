//! MatMul (numpy semantics) and Gemm.

use super::OpResult;
use ndarray::{ArrayViewD, ArrayViewMutD};

/// Attributes of Gemm.
#[derive(Clone, Debug, PartialEq)]
pub struct Gemm {
    /// alpha
    pub alpha: f32,
    /// beta
    pub beta: f32,
    /// transpose A
    pub trans_a: bool,
    /// transpose B
    pub trans_b: bool,
}

/// numpy matmul shape (1-D operands promoted and demoted, batch dims broadcast).
pub fn matmul_shape(a: &[usize], b: &[usize]) -> OpResult<Vec<usize>> { todo!() }
/// Reference matmul.
pub fn run_matmul(a: &ArrayViewD<f32>, b: &ArrayViewD<f32>, y: &mut ArrayViewMutD<f32>) -> OpResult<()> { todo!() }
/// Gemm shape: A, B, optional C (unidirectionally broadcast to the output).
pub fn gemm_shape(g: &Gemm, inputs: &[&[usize]]) -> OpResult<Vec<usize>> { todo!() }
/// Reference Gemm.
pub fn run_gemm(g: &Gemm, inputs: &[ArrayViewD<f32>], y: &mut ArrayViewMutD<f32>) -> OpResult<()> { todo!() }
