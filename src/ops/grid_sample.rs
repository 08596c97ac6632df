//! GridSample (ONNX opset 16+, 4-D): bilinear / nearest, zeros / border / reflection padding.

use super::OpResult;
use ndarray::{ArrayViewD, ArrayViewMutD};

/// Interpolation of GridSample.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GridMode {
    /// bilinear
    Bilinear,
    /// nearest (round half to even, as ONNX Runtime)
    Nearest,
}

/// Out-of-range handling of GridSample.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GridPadding {
    /// zeros outside
    Zeros,
    /// clamp to the border
    Border,
    /// reflect at the border
    Reflection,
}

/// Attributes of GridSample.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GridSample {
    /// interpolation
    pub mode: GridMode,
    /// padding
    pub padding: GridPadding,
    /// align_corners
    pub align_corners: bool,
}

/// x `[N,C,H,W]`, grid `[N,Ho,Wo,2]` -> `[N,C,Ho,Wo]`.
pub fn grid_sample_shape(x: &[usize], grid: &[usize]) -> OpResult<Vec<usize>> {
    todo!()
}

/// Reference GridSample.
pub fn run_grid_sample(
    g: &GridSample,
    x: &ArrayViewD<f32>,
    grid: &ArrayViewD<f32>,
    y: &mut ArrayViewMutD<f32>,
) -> OpResult<()> {
    todo!()
}
