//! `speck eval`: COCO AP and the TinyPerson protocol, on a model's detections or on an
//! existing COCO results file.

use super::detect::{detect_maybe_tiled, load_rgb};
use super::tile_args::TileArgs;
use super::{model_path, EngineArgs};
use anyhow::{bail, Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use speck::eval::{self, data::detections_to_json, DetBox, GroundTruth};
use speck::Detector;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

/// Arguments of `speck eval`.
#[derive(clap::Args, Debug)]
#[command(after_help = "Examples:
  speck eval --gt examples/data/annotations.json --images examples/data/images
  speck eval --gt GT.json --images DIR --tile 512x512 --overlap 0.2 --json --plot pr.png
  speck eval --gt GT.json --detections DETS.json           # score an existing COCO results file

--json prints one object: coco_ap, coco_ap50, coco_ap75, coco_ap_small/_medium/_large, one object
per TinyPerson range (tiny, tiny1, tiny2, tiny3, small, reasonable, all) with ap25, ap50, ap75,
mr25, mr50, mr75, the counts images/annotations/detections, and, when a model ran, fps.
Fractions in [0, 1]; null where a range has no ground truth. See docs/eval.md.")]
pub struct Args {
    /// Ground truth, COCO JSON (TinyPerson's ignore/uncertain flags are honoured).
    #[arg(long, value_name = "GT.json")]
    gt: PathBuf,
    /// Score this COCO results file instead of running a model.
    #[arg(long, value_name = "DETS.json", conflicts_with_all = ["images", "model", "detections_out"])]
    detections: Option<PathBuf>,
    /// Folder of the GT's images (file_name is relative to it).
    #[arg(long, value_name = "DIR")]
    images: Option<PathBuf>,
    /// ONNX or compiled .speck model (default: the shipped speck-tiny).
    #[arg(long)]
    model: Option<PathBuf>,
    /// Minimum confidence of the detections scored (low, so the PR curve is complete).
    #[arg(long, default_value_t = 0.05, value_parser = super::unit_interval)]
    conf: f32,
    /// IoU threshold of the detector's own non-maximum suppression.
    #[arg(long, default_value_t = 0.5, value_parser = super::unit_interval)]
    iou: f32,
    /// Print one JSON object instead of the table.
    #[arg(long)]
    json: bool,
    /// Write the model's detections as a COCO results file.
    #[arg(long, value_name = "DETS.json")]
    detections_out: Option<PathBuf>,
    /// Write a precision-recall plot (PNG) of the TinyPerson `tiny` and `all` ranges.
    #[arg(long, value_name = "PR.png")]
    plot: Option<PathBuf>,
    #[command(flatten)]
    tiles: TileArgs,
    #[command(flatten)]
    engine: EngineArgs,
}

pub fn run(a: Args) -> Result<ExitCode> {
    a.tiles.options(None)?; // flag errors before anything loads
    let gt = GroundTruth::load(&a.gt)?;
    let (dets, fps) = match &a.detections {
        Some(p) => {
            if a.tiles.explicit() {
                bail!("--tile applies when a model runs; it cannot be used with --detections");
            }
            (eval::load_detections(p, &gt)?, None)
        }
        None => {
            let Some(dir) = &a.images else {
                bail!("give --images DIR (to run a model) or --detections DETS.json");
            };
            let (dets, fps) = run_model(&a, &gt, dir)?;
            if let Some(out) = &a.detections_out {
                let text = serde_json::to_string(&detections_to_json(&dets))?;
                std::fs::write(out, text).with_context(|| format!("writing {}", out.display()))?;
            }
            (dets, Some(fps))
        }
    };
    let report = eval::evaluate(&gt, &dets);
    if let Some(p) = &a.plot {
        eval::plot::write_pr_png(&report.tiny.curves, p)?;
    }
    if a.json {
        let mut v = report.to_json();
        if let (Some(fps), Some(m)) = (fps, v.as_object_mut()) {
            m.insert(
                "fps".into(),
                serde_json::Number::from_f64(fps).map_or(serde_json::Value::Null, Into::into),
            );
        }
        println!("{v}");
    } else {
        print!("{}", report.table());
        if let Some(fps) = fps {
            println!("\n{fps:.2} frames per second (detection only, image decoding excluded)");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// GT category for each model class: by name (case-insensitive) when the names match,
/// else the i-th category in id order.
fn category_map(det: &Detector, gt: &GroundTruth) -> Vec<Option<i64>> {
    let mut cats = gt.categories.clone();
    cats.sort_by_key(|c| c.id);
    let names = &det.metadata().class_names;
    let n = names.len().max(1);
    (0..n)
        .map(|i| {
            let name = names.get(i).map(|s| s.to_lowercase());
            cats.iter()
                .find(|c| name.as_deref() == Some(c.name.to_lowercase().as_str()))
                .or_else(|| cats.get(i))
                .map(|c| c.id)
        })
        .collect()
}

fn run_model(a: &Args, gt: &GroundTruth, dir: &Path) -> Result<(Vec<DetBox>, f64)> {
    check_images(&a.gt, gt, dir)?;
    let model = model_path::resolve(a.model.clone())?;
    let mut det = Detector::load(&model, &a.engine.options())?;
    let tiles = a.tiles.options(det.metadata().tile)?;
    det.options.conf = a.conf;
    det.options.iou = a.iou;
    let bar = if a.json {
        ProgressBar::hidden()
    } else {
        ProgressBar::new(gt.images.len() as u64)
    };
    detect_all(&mut det, gt, dir, tiles.as_ref(), &bar)
}

/// Every GT image must be in `dir` before a model runs.
pub(super) fn check_images(gt_path: &Path, gt: &GroundTruth, dir: &Path) -> Result<()> {
    if !dir.is_dir() {
        bail!("--images {}: no such folder", dir.display());
    }
    for (i, im) in gt.images.iter().enumerate() {
        if !dir.join(&im.file_name).is_file() {
            bail!(
                "{}: images[{i}] (id {}): file '{}' not found in {}",
                gt_path.display(),
                im.id,
                im.file_name,
                dir.display()
            );
        }
    }
    Ok(())
}

/// Run `det` over every GT image in `dir` (tiled when `tiles` is given); returns the
/// detections as COCO boxes and the detection-only frame rate.
pub(super) fn detect_all(
    det: &mut Detector,
    gt: &GroundTruth,
    dir: &Path,
    tiles: Option<&speck::detect::TileOptions>,
    bar: &ProgressBar,
) -> Result<(Vec<DetBox>, f64)> {
    let cats = category_map(det, gt);
    let mut images = gt.images.clone();
    images.sort_by_key(|i| i.id);
    bar.set_length(images.len() as u64);
    bar.set_style(
        ProgressStyle::with_template("{bar:30} {pos}/{len} {msg}").expect("valid template"),
    );
    let mut out = vec![];
    let mut busy = 0.0f64;
    for im in &images {
        let path = dir.join(&im.file_name);
        bar.set_message(im.file_name.clone());
        let img = load_rgb(&path)?;
        if let (Some(w), Some(h)) = (im.width, im.height) {
            if (w, h) != img.dimensions() {
                bar.suspend(|| {
                    log::warn!(
                        "{}: {}x{} in the GT, {}x{} on disk",
                        path.display(),
                        w,
                        h,
                        img.width(),
                        img.height()
                    )
                });
            }
        }
        let t0 = Instant::now();
        let dets =
            detect_maybe_tiled(det, &img, tiles).with_context(|| path.display().to_string())?;
        busy += t0.elapsed().as_secs_f64();
        for d in dets {
            let Some(Some(category_id)) = cats.get(d.class_id) else {
                continue;
            };
            let [x1, y1, x2, y2] = d.bbox.map(f64::from);
            out.push(DetBox {
                image_id: im.id,
                category_id: *category_id,
                bbox: [x1, y1, x2 - x1, y2 - y1],
                score: d.score as f64,
            });
        }
        bar.inc(1);
    }
    bar.finish_and_clear();
    let fps = if busy > 0.0 {
        images.len() as f64 / busy
    } else {
        0.0
    };
    Ok((out, fps))
}
