//! speck: a small-footprint runtime that finds tiny objects in camera frames.
#![deny(missing_docs)]

pub mod kernels;
pub mod ops;
pub mod tensor;

pub use tensor::{DType, Tensor};
pub mod exec;
pub mod model;
#[cfg(feature = "onnx")]
pub mod onnx;
pub mod passes;

pub use exec::{Engine, EngineOptions};
pub mod detect;

pub use detect::{Detection, Detector, DetectorOptions};
pub mod device;
pub mod draw;
pub mod eval;
pub mod io;
pub mod pipeline;
#[cfg(feature = "onnx")]
pub mod quantize;
