//! speck: a small-footprint runtime that finds tiny objects in camera frames.
#![deny(missing_docs)]

pub mod kernels;
pub mod ops;
pub mod tensor;

pub use tensor::{DType, Tensor};
