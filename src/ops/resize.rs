//! Resize (ONNX opset 11-19 semantics) on `[N,C,H,W]` or any rank with resized trailing axes.

use super::OpResult;
use ndarray::{ArrayViewD, ArrayViewMutD};

/// How output coordinates map to input coordinates.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CoordTransform {
    /// (x + 0.5) / scale - 0.5
    HalfPixel,
    /// like half_pixel, but 0 when the output length is 1
    PytorchHalfPixel,
    /// x * (in - 1) / (out - 1)
    AlignCorners,
    /// x / scale
    Asymmetric,
}

/// Nearest-mode rounding.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NearestRounding {
    /// round half down
    RoundPreferFloor,
    /// round half up
    RoundPreferCeil,
    /// floor
    Floor,
    /// ceil
    Ceil,
}

/// Interpolation mode.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum ResizeMode {
    /// nearest neighbour with a rounding rule
    Nearest(NearestRounding),
    /// (bi)linear
    Linear,
    /// bicubic with coefficient a (-0.75 default)
    Cubic(f32),
}


/// Attributes of a resize, with the output shape resolved at import.
#[derive(Clone, Debug, PartialEq)]
pub struct Resize {
    /// interpolation
    pub mode: ResizeMode,
    /// coordinate transform
    pub transform: CoordTransform,
    /// output shape (same rank as the input)
    pub out_shape: Vec<usize>,
    /// per-axis scale used by the coordinate transform (out/in unless given explicitly)
    pub scales: Vec<f32>,
}

/// Output shape (checks the rank).
pub fn resize_shape(r: &Resize, x: &[usize]) -> OpResult<Vec<usize>> {
    todo!()
}

/// Reference resize.
pub fn run_resize(r: &Resize, x: &ArrayViewD<f32>, y: &mut ArrayViewMutD<f32>) -> OpResult<()> {
    todo!()
}
