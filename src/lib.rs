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
#[cfg(feature = "host-tools")]
pub mod device;
pub mod draw;
pub mod eval;
pub mod io;
pub mod pipeline;
#[cfg(feature = "onnx")]
pub mod quantize;

/// The text of a caught panic (`std::panic::catch_unwind`'s payload): speck contains panics
/// from third-party code on malformed input and reports them as errors.
pub fn panic_message(p: &(dyn std::any::Any + Send)) -> String {
    p.downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into())
}
