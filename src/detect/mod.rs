//! From frames to boxes: preprocessing, head decoding, NMS, and the [`Detector`] API.

mod decode_centernet;
mod decode_yolov8;
mod detector;
mod nms;
mod preprocess;
mod tiling;

pub use decode_centernet::decode_centernet;
pub use decode_yolov8::decode_yolov8;
pub use detector::{Detector, DetectorOptions, StageTimes};
pub use nms::{nms, MergeKind};
pub use preprocess::{preprocess, preprocess_region, Letterbox, RgbFrame};
pub use tiling::{tile_grid, Tile, TileOptions, TilingError};

use serde::Serialize;

/// One detected object, in frame pixel coordinates.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Detection {
    /// `[x1, y1, x2, y2]`
    pub bbox: [f32; 4],
    /// Confidence in [0, 1].
    pub score: f32,
    /// Class name.
    pub label: String,
    /// Class index.
    pub class_id: usize,
}

impl Detection {
    /// Area of the box.
    pub fn area(&self) -> f32 {
        (self.bbox[2] - self.bbox[0]).max(0.0) * (self.bbox[3] - self.bbox[1]).max(0.0)
    }
}

/// Intersection over union of two `[x1,y1,x2,y2]` boxes.
pub fn iou(a: &[f32; 4], b: &[f32; 4]) -> f32 {
    let inter = intersection(a, b);
    let union = area(a) + area(b) - inter;
    if union <= 0.0 {
        0.0
    } else {
        inter / union
    }
}

/// Area of an `[x1,y1,x2,y2]` box.
pub fn area(a: &[f32; 4]) -> f32 {
    (a[2] - a[0]).max(0.0) * (a[3] - a[1]).max(0.0)
}

/// Intersection area of two boxes.
pub fn intersection(a: &[f32; 4], b: &[f32; 4]) -> f32 {
    let w = (a[2].min(b[2]) - a[0].max(b[0])).max(0.0);
    let h = (a[3].min(b[3]) - a[1].max(b[1])).max(0.0);
    w * h
}
