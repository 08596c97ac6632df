//! The quantization report (`--report` JSON) and SQNR accumulation.

use crate::cle::ClePair;
use crate::qdq::KeptFloat;
use serde::Serialize;

/// Signal-to-quantization-noise ratio, accumulated over many tensors.
#[derive(Clone, Copy, Debug, Default)]
pub struct Sqnr {
    /// sum of squared reference values
    pub signal: f64,
    /// sum of squared differences
    pub noise: f64,
}

impl Sqnr {
    /// Add one pair of tensors (reference, test), element by element.
    pub fn add(
        &mut self,
        reference: impl IntoIterator<Item = f32>,
        test: impl IntoIterator<Item = f32>,
    ) {
        for (r, t) in reference.into_iter().zip(test) {
            let (r, t) = (r as f64, t as f64);
            self.signal += r * r;
            self.noise += (r - t) * (r - t);
        }
    }

    /// `10 log10(signal / noise)` in dB (capped at 200 dB for exact matches).
    pub fn db(&self) -> f64 {
        if self.noise <= 0.0 {
            return 200.0;
        }
        if self.signal <= 0.0 {
            return f64::NEG_INFINITY;
        }
        (10.0 * (self.signal / self.noise).log10()).min(200.0)
    }
}

/// One node's output, int8 model against float model, over the calibration set.
#[derive(Clone, Debug, Serialize)]
pub struct LayerSqnr {
    /// node name
    pub node: String,
    /// ONNX op type
    pub op_type: String,
    /// output tensor
    pub tensor: String,
    /// SQNR in dB (higher is better)
    pub sqnr_db: f64,
    /// whether the node computes in int8
    pub quantized: bool,
}

/// The whole report.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// input model
    pub model: String,
    /// output model
    pub output: String,
    /// calibration method
    pub method: String,
    /// per-channel weights
    pub per_channel: bool,
    /// activation type ("uint8" or "int8")
    pub activation_type: String,
    /// cross-layer equalization pairs (empty when off)
    pub cle: Vec<ClePair>,
    /// convs whose bias was corrected (empty when off)
    pub bias_corrected: Vec<String>,
    /// calibration frames
    pub calibration_frames: usize,
    /// encoded size of the float model
    pub float_bytes: usize,
    /// encoded size of the QDQ model
    pub quantized_bytes: usize,
    /// nodes computing in int8
    pub quantized_nodes: usize,
    /// int8 weight tensors
    pub int8_weights: usize,
    /// nodes kept float, with reasons
    pub kept_float: Vec<KeptFloat>,
    /// per-layer SQNR, in graph order
    pub layers: Vec<LayerSqnr>,
    /// SQNR of each model output
    pub outputs: Vec<LayerSqnr>,
    /// calibration inputs were cut into the model's tiles, as at inference
    pub calibration_tiled: bool,
    /// float versus int8 accuracy on a labelled set (`--val`), when given
    #[serde(skip_serializing_if = "Option::is_none")]
    pub accuracy: Option<Accuracy>,
}

/// Detection accuracy of the float and the int8 model on the same labelled images.
#[derive(Clone, Debug, Serialize)]
pub struct Accuracy {
    /// ground-truth file
    pub gt: String,
    /// images scored
    pub images: usize,
    /// the float model's metrics
    pub float: AccuracyMetrics,
    /// the int8 (QDQ) model's metrics, run fake-quantized in speck's float engine
    pub int8: AccuracyMetrics,
}

/// The metrics the accuracy comparison reports (fractions in [0, 1]; None where the range has
/// no ground truth).
#[derive(Clone, Debug, Serialize)]
pub struct AccuracyMetrics {
    /// COCO AP at IoU 0.5
    pub coco_ap50: Option<f64>,
    /// COCO AP at IoU 0.5:0.95
    pub coco_ap: Option<f64>,
    /// TinyPerson AP50 on the tiny range (1-20 px)
    pub tiny_ap50: Option<f64>,
    /// TinyPerson log-average miss rate at IoU 0.5, tiny range
    pub tiny_mr50: Option<f64>,
}
