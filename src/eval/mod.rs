//! Detection metrics: COCO AP computed exactly as pycocotools does ([`coco`]) and the
//! TinyPerson protocol ([`tinyperson`], [`mr`]), over COCO-style ground truth and COCO
//! results files ([`data`]); a precision-recall plot ([`plot`]).
//!
//! `ignore` and `uncertain` ground-truth boxes are treated like `iscrowd` ones in both
//! protocols (pycocotools itself only reads `iscrowd`).

pub mod coco;
pub mod data;
pub mod mr;
pub mod plot;
pub mod tinyperson;

pub use coco::{coco_summary, CocoSummary};
pub use data::{load_detections, Category, DetBox, GroundTruth, GtBox, GtImage};
pub use tinyperson::{evaluate_tinyperson, RangeMetrics, TinyReport};

use serde_json::{Map, Value};
use std::path::PathBuf;

/// Errors of the evaluation.
#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    /// A file could not be read.
    #[error("{}: {source}", path.display())]
    Io {
        /// the file
        path: PathBuf,
        /// the cause
        source: std::io::Error,
    },
    /// A file is not valid JSON.
    #[error("{}: not valid JSON: {source}", path.display())]
    Json {
        /// the file
        path: PathBuf,
        /// the cause
        source: serde_json::Error,
    },
    /// A file is JSON but an entry is wrong.
    #[error("{}: {entry}: {msg}", path.display())]
    Invalid {
        /// the file
        path: PathBuf,
        /// the entry, e.g. `annotations[3] (id 17)`
        entry: String,
        /// what is wrong
        msg: String,
    },
    /// Writing the plot failed.
    #[error("plot {}: {msg}", path.display())]
    Plot {
        /// the file
        path: PathBuf,
        /// what went wrong
        msg: String,
    },
}

/// Both protocols' results.
#[derive(Clone, Debug)]
pub struct EvalReport {
    /// COCO's numbers.
    pub coco: CocoSummary,
    /// TinyPerson's numbers.
    pub tiny: TinyReport,
    /// Images in the ground truth.
    pub images: usize,
    /// Ground-truth boxes (ignored ones included).
    pub annotations: usize,
    /// Detections evaluated.
    pub detections: usize,
}

/// Evaluate `dets` against `gt` with both protocols.
pub fn evaluate(gt: &GroundTruth, dets: &[DetBox]) -> EvalReport {
    let (coco, _) = coco_summary(gt, dets);
    let tiny = evaluate_tinyperson(gt, dets);
    EvalReport {
        coco,
        tiny,
        images: gt.images.len(),
        annotations: gt.annotations.len(),
        detections: dets.len(),
    }
}

fn num(x: Option<f64>) -> Value {
    x.and_then(serde_json::Number::from_f64)
        .map_or(Value::Null, Value::Number)
}

impl EvalReport {
    /// The JSON object `speck eval --json` prints (schema in `docs/eval.md`): `coco_ap`,
    /// `coco_ap50`, `coco_ap75`, `coco_ap_small`, `coco_ap_medium`, `coco_ap_large`, one object
    /// per TinyPerson range (`tiny`, `tiny1`, `tiny2`, `tiny3`, `small`, `reasonable`, `all`)
    /// with `ap25`, `ap50`, `ap75`, `mr25`, `mr50`, `mr75`, and the counts `images`,
    /// `annotations`, `detections`. Undefined metrics (no ground truth) are `null`.
    pub fn to_json(&self) -> Value {
        let mut m = Map::new();
        let c = &self.coco;
        for (k, v) in [
            ("coco_ap", c.ap),
            ("coco_ap50", c.ap50),
            ("coco_ap75", c.ap75),
            ("coco_ap_small", c.ap_small),
            ("coco_ap_medium", c.ap_medium),
            ("coco_ap_large", c.ap_large),
        ] {
            m.insert(k.into(), num(v));
        }
        for (name, r) in &self.tiny.ranges {
            m.insert(name.clone(), serde_json::to_value(r).unwrap_or(Value::Null));
        }
        m.insert("images".into(), self.images.into());
        m.insert("annotations".into(), self.annotations.into());
        m.insert("detections".into(), self.detections.into());
        Value::Object(m)
    }

    /// A plain-text table (percentages; `-` where undefined).
    pub fn table(&self) -> String {
        let pct =
            |x: Option<f64>| x.map_or_else(|| "-".to_string(), |v| format!("{:.2}", v * 100.0));
        let c = &self.coco;
        let mut s = format!(
            "{} images, {} ground-truth boxes, {} detections\n\nCOCO (IoU .50:.95, maxDets 100): AP {}  AP50 {}  AP75 {}  APs {}  APm {}  APl {}\n\n",
            self.images,
            self.annotations,
            self.detections,
            pct(c.ap),
            pct(c.ap50),
            pct(c.ap75),
            pct(c.ap_small),
            pct(c.ap_medium),
            pct(c.ap_large)
        );
        s += "TinyPerson (maxDets 200)  AP25    AP50    AP75    MR25    MR50    MR75\n";
        for (name, r) in &self.tiny.ranges {
            s += &format!(
                "{:<25} {:>6}  {:>6}  {:>6}  {:>6}  {:>6}  {:>6}\n",
                name,
                pct(r.ap25),
                pct(r.ap50),
                pct(r.ap75),
                pct(r.mr25),
                pct(r.mr50),
                pct(r.mr75)
            );
        }
        s
    }
}
