//! Optimised kernels (placeholder module; replaced by the kernels branch).
pub mod conv_f32;
