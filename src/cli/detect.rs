//! `speck detect`: boxes on images.

use super::tile_args::TileArgs;
use super::{model_path, EngineArgs};
use anyhow::{Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;
use speck::detect::{RgbFrame, TileOptions};
use speck::draw::{draw_detections, FrameCanvas};
use speck::{Detection, Detector};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Arguments of `speck detect`.
#[derive(clap::Args, Debug)]
#[command(after_help = "Examples:
  speck detect examples/data/images --out out/
  speck detect a.jpg b.png --json --conf 0.4 --model my.onnx")]
pub struct Args {
    /// Images (JPEG, PNG) or folders of images.
    #[arg(required = true)]
    inputs: Vec<PathBuf>,
    /// ONNX or compiled .speck model (default: the shipped speck-tiny).
    #[arg(long)]
    model: Option<PathBuf>,
    /// Minimum confidence.
    #[arg(long, default_value_t = 0.3, value_parser = super::unit_interval)]
    conf: f32,
    /// IoU threshold of non-maximum suppression.
    #[arg(long, default_value_t = 0.5, value_parser = super::unit_interval)]
    iou: f32,
    /// Write annotated images into this folder.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Print one JSON object per image on stdout.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    tiles: TileArgs,
    #[command(flatten)]
    engine: EngineArgs,
}

#[derive(Serialize)]
struct ImageResult<'a> {
    image: String,
    width: u32,
    height: u32,
    detections: &'a [Detection],
}

const IMAGE_EXTS: &[&str] = &["jpg", "jpeg", "png", "bmp"];

/// Expand folders into their image files (sorted); files are taken as given.
pub(super) fn collect_images(inputs: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let mut out = vec![];
    for p in inputs {
        if p.is_dir() {
            let mut v: Vec<PathBuf> = std::fs::read_dir(p)
                .with_context(|| format!("reading folder {}", p.display()))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|f| {
                    f.extension()
                        .and_then(|e| e.to_str())
                        .is_some_and(|e| IMAGE_EXTS.contains(&e.to_ascii_lowercase().as_str()))
                })
                .collect();
            v.sort();
            if v.is_empty() {
                anyhow::bail!(
                    "folder {} holds no images ({})",
                    p.display(),
                    IMAGE_EXTS.join(", ")
                );
            }
            out.extend(v);
        } else if p.exists() {
            out.push(p.clone());
        } else {
            anyhow::bail!("{}: no such file or folder", p.display());
        }
    }
    Ok(out)
}

pub(super) fn load_rgb(path: &Path) -> Result<image::RgbImage> {
    let img = speck::io::read_image(path).map_err(|e| match e {
        image::ImageError::IoError(e) => {
            anyhow::Error::new(e).context(format!("{}: cannot open", path.display()))
        }
        e => anyhow::Error::new(e).context(format!("{}: not a readable image", path.display())),
    })?;
    Ok(img.to_rgb8())
}

pub fn run(a: Args) -> Result<ExitCode> {
    a.tiles.options(None)?; // flag errors before the model loads
    let images = collect_images(&a.inputs)?;
    let model = model_path::resolve(a.model.clone())?;
    let mut det = Detector::load(&model, &a.engine.options())?;
    let tiles = a.tiles.options(det.metadata().tile)?;
    det.options.conf = a.conf;
    det.options.iou = a.iou;
    if let Some(o) = &a.out {
        std::fs::create_dir_all(o).with_context(|| format!("creating {}", o.display()))?;
    }
    let bar = if a.json || images.len() < 2 {
        ProgressBar::hidden()
    } else {
        ProgressBar::new(images.len() as u64)
    };
    bar.set_style(
        ProgressStyle::with_template("{bar:30} {pos}/{len} {msg}").expect("valid template"),
    );
    let mut failures = 0;
    for path in &images {
        bar.set_message(path.display().to_string());
        match detect_one(&mut det, path, &a, tiles.as_ref()) {
            Ok(()) => {}
            Err(e) => {
                failures += 1;
                bar.suspend(|| eprintln!("error: {}", super::one_line(&e)));
            }
        }
        bar.inc(1);
    }
    bar.finish_and_clear();
    Ok(if failures > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

fn detect_one(
    det: &mut Detector,
    path: &Path,
    a: &Args,
    tiles: Option<&TileOptions>,
) -> Result<()> {
    let mut img = load_rgb(path)?;
    let dets = detect_maybe_tiled(det, &img, tiles).with_context(|| path.display().to_string())?;
    if a.json {
        let r = ImageResult {
            image: path.display().to_string(),
            width: img.width(),
            height: img.height(),
            detections: &dets,
        };
        println!("{}", serde_json::to_string(&r)?);
    } else {
        let mut counts = std::collections::BTreeMap::new();
        for d in &dets {
            *counts.entry(d.label.as_str()).or_insert(0) += 1;
        }
        let summary: Vec<String> = counts.iter().map(|(l, n)| format!("{n} {l}")).collect();
        println!(
            "{}: {}",
            path.display(),
            if summary.is_empty() {
                "nothing found".into()
            } else {
                summary.join(", ")
            }
        );
    }
    if let Some(dir) = &a.out {
        draw_detections(&mut FrameCanvas::from_image(&mut img), &dets);
        let name = path
            .file_name()
            .map(|n| n.to_owned())
            .unwrap_or_else(|| "image.jpg".into());
        let dst = dir.join(name);
        img.save(&dst)
            .with_context(|| format!("writing {}", dst.display()))?;
    }
    Ok(())
}

/// Whole-frame detection, or tiled with `tiles`.
pub(super) fn detect_maybe_tiled(
    det: &mut Detector,
    img: &image::RgbImage,
    tiles: Option<&TileOptions>,
) -> Result<Vec<Detection>> {
    match tiles {
        None => det.detect_image(img),
        Some(t) => {
            let frame = RgbFrame {
                data: img.as_raw(),
                width: img.width() as usize,
                height: img.height() as usize,
            };
            det.detect_tiled(frame, t)
        }
    }
}
