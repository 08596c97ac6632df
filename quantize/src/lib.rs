//! speck-quantize: post-training int8 quantization of float ONNX models.
//!
//! The algorithms only; the `speck` crate runs the float engine over calibration frames and
//! feeds the statistics in.
//! - [`calib`]: streaming histograms and the calibrators (min-max, percentile, entropy/KL, MSE),
//!   and activation quantization parameters.
//! - [`weights`]: symmetric int8 weights, per output channel or per tensor; int32 biases.
//! - [`cle`]: cross-layer equalization (Nagel et al. 2019) on the ONNX graph.
//! - [`bias`]: analytical bias correction of the weight quantization error.
//! - [`qdq`]: the rewrite of a float `ModelProto` into a standard QDQ model.
//! - [`report`]: what is written to `--report`, plus SQNR accumulation.
#![deny(missing_docs)]

pub mod bias;
pub mod calib;
pub mod cle;
pub mod error;
pub mod proto;
pub mod qdq;
pub mod report;
pub mod weights;

pub use error::QuantizeError;
pub use tract_onnx::pb;

/// Round half to even, as ONNX QuantizeLinear specifies.
#[inline]
pub fn round_half_even(x: f32) -> f32 {
    x.round_ties_even()
}
