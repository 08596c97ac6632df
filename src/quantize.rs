//! The glue between speck's float engine and the `speck-quantize` algorithms: calibration
//! frames preprocessed exactly as at inference, activation statistics gathered with
//! [`Engine::run_observed`], and SQNR of a QDQ model (run in float, fake-quantized) against
//! the float model.

use crate::detect::{preprocess_region, tile_grid, RgbFrame};
use crate::model::Metadata;
use crate::{Engine, EngineOptions, Tensor};
use anyhow::{bail, Context, Result};
use speck_quantize::calib::Histogram;
use speck_quantize::pb;
use speck_quantize::report::Sqnr;
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

/// Decode an ONNX file into its protobuf.
pub fn read_model(path: &Path) -> Result<pb::ModelProto> {
    use tract_onnx::prelude::Framework;
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    tract_onnx::onnx()
        .proto_model_for_read(&mut &bytes[..])
        .map_err(|e| {
            anyhow::anyhow!(
                "{} is not a valid ONNX model ({})",
                path.display(),
                e.root_cause()
            )
        })
}

/// Plan a protobuf model on the float engine with every graph pass off, so that every
/// intermediate tensor is observed under its ONNX name.
pub fn engine_for(model: &pb::ModelProto, threads: usize) -> Result<Engine> {
    let g = crate::onnx::import_proto(&tract_onnx::onnx(), model, None, &Default::default())?;
    Ok(Engine::new(
        g,
        &EngineOptions {
            threads,
            optimize: false,
            reference_only: false,
            int8: false,
            fp16: false,
        },
    )?)
}

/// Image file extensions calibration reads.
const IMAGE_EXTS: &[&str] = &["jpg", "jpeg", "png", "bmp"];
/// Video file extensions calibration decodes (through ffmpeg, as `speck run` does).
const VIDEO_EXTS: &[&str] = &[
    "mp4", "mkv", "avi", "mov", "webm", "m4v", "mpg", "mpeg", "ts", "mjpeg", "mjpg", "h264",
    "h265", "hevc",
];

fn has_ext(p: &Path, exts: &[&str]) -> bool {
    p.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| exts.contains(&e.to_ascii_lowercase().as_str()))
}

/// One calibration frame: an image file, or one frame of a video file.
#[derive(Clone, Debug, PartialEq)]
pub enum CalibItem {
    /// an image file
    Image(PathBuf),
    /// frame `index` (from 0, in decoding order) of a video file
    VideoFrame {
        /// the video
        path: PathBuf,
        /// which frame
        index: usize,
        /// the video's frame size
        size: (usize, usize),
    },
}

/// Every calibration frame `path` holds: a folder's images and videos (directly in it, sorted
/// by name, each video's frames in order), or one image or video file. An error when there are
/// none, or when a video cannot be read.
pub fn calibration_items(path: &Path) -> Result<Vec<CalibItem>> {
    let files: Vec<PathBuf> = if path.is_dir() {
        let rd = std::fs::read_dir(path)
            .with_context(|| format!("cannot read calibration folder {}", path.display()))?;
        let mut v: Vec<PathBuf> = rd
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_file() && (has_ext(p, IMAGE_EXTS) || has_ext(p, VIDEO_EXTS)))
            .collect();
        v.sort();
        v
    } else if path.is_file() {
        vec![path.to_path_buf()]
    } else {
        bail!("calibration set {}: no such file or folder", path.display());
    };
    let mut items = vec![];
    for f in files {
        if has_ext(&f, IMAGE_EXTS) {
            items.push(CalibItem::Image(f));
            continue;
        }
        // a video (a single file of another extension is tried as one too)
        let (n, size) = crate::io::source::count_video_frames(&f)
            .with_context(|| format!("calibration video {}", f.display()))?;
        if n == 0 {
            log::warn!("calibration video {} has no frames", f.display());
        }
        items.extend((0..n).map(|index| CalibItem::VideoFrame {
            path: f.clone(),
            index,
            size,
        }));
    }
    if items.is_empty() {
        bail!(
            "no calibration images ({}) or videos ({}) in {}",
            IMAGE_EXTS.join(", "),
            VIDEO_EXTS.join(", "),
            path.display()
        );
    }
    Ok(items)
}

/// How calibration images become model inputs.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum FrameCut {
    /// The whole image, letterboxed to the input (as `speck detect --no-tile`).
    Whole,
    /// Tiles of this many frame pixels with this overlap, each letterboxed to the input, as
    /// tiled inference sees them.
    Tiles((usize, usize), f32),
}

/// The model inputs `speck detect` would run for `frame`: one per tile, or one for the whole
/// frame.
pub fn frame_inputs(
    frame: RgbFrame,
    meta: &Metadata,
    shape: &[usize],
    cut: FrameCut,
) -> Result<Vec<Tensor>> {
    let (w, h) = (frame.width, frame.height);
    let regions: Vec<[usize; 4]> = match cut {
        FrameCut::Whole => vec![[0, 0, w, h]],
        FrameCut::Tiles(tile, overlap) => tile_grid(w, h, tile, overlap)?
            .into_iter()
            .map(|t| [t.x, t.y, t.w, t.h])
            .collect(),
    };
    regions
        .into_iter()
        .map(|r| {
            let mut data = vec![0.0f32; shape.iter().product()];
            preprocess_region(frame, r, meta, &mut data);
            Ok(Tensor::from_f32(shape, data)?)
        })
        .collect()
}

/// The model inputs for the image at `path` ([`frame_inputs`]).
pub fn load_frame(
    path: &Path,
    meta: &Metadata,
    shape: &[usize],
    cut: FrameCut,
) -> Result<Vec<Tensor>> {
    let img = crate::io::read_image(path)
        .with_context(|| format!("cannot read image {}", path.display()))?
        .to_rgb8();
    let frame = RgbFrame {
        data: img.as_raw(),
        width: img.width() as usize,
        height: img.height() as usize,
    };
    frame_inputs(frame, meta, shape, cut)
}

/// Decode the video at `path` once and preprocess the frames `wanted` (ascending indices).
/// A video that ends before the last wanted frame gives the frames it has, with a warning.
fn load_video_frames(
    path: &Path,
    wanted: &[usize],
    meta: &Metadata,
    shape: &[usize],
    cut: FrameCut,
    out: &mut Vec<Tensor>,
) -> Result<()> {
    let spec = crate::io::source::SourceSpec::VideoFile {
        path: path.to_path_buf(),
        looped: false,
        realtime: false,
    };
    let mut src = spec
        .open()
        .with_context(|| format!("calibration video {}", path.display()))?;
    let mut next = wanted.iter().peekable();
    let mut index = 0;
    while let Some(&&want) = next.peek() {
        let frame = src
            .read_frame()
            .with_context(|| format!("calibration video {} frame {index}", path.display()))?;
        let Some(frame) = frame else {
            log::warn!(
                "calibration video {} ended after {index} frames; {} wanted frames are missing",
                path.display(),
                next.len()
            );
            break;
        };
        if index == want {
            out.extend(frame_inputs(frame.view(), meta, shape, cut)?);
            next.next();
        }
        index += 1;
    }
    Ok(())
}

/// Load and preprocess every calibration frame for `engine`'s input, cut as `cut` says.
/// `tick` is called after each item.
pub fn load_frames(
    engine: &Engine,
    items: &[CalibItem],
    cut: FrameCut,
    tick: &mut dyn FnMut(),
) -> Result<Vec<Tensor>> {
    let (meta, shape) = input_metadata(engine)?;
    let mut out = vec![];
    let mut i = 0;
    while i < items.len() {
        match &items[i] {
            CalibItem::Image(p) => {
                out.extend(load_frame(p, &meta, &shape, cut)?);
                tick();
                i += 1;
            }
            CalibItem::VideoFrame { path, .. } => {
                // this video's run of frames, decoded in one pass
                let run: Vec<usize> = items[i..]
                    .iter()
                    .map_while(|it| match it {
                        CalibItem::VideoFrame { path: p, index, .. } if p == path => Some(*index),
                        _ => None,
                    })
                    .collect();
                load_video_frames(path, &run, &meta, &shape, cut, &mut out)?;
                (0..run.len()).for_each(|_| tick());
                i += run.len();
            }
        }
    }
    Ok(out)
}

/// How many model inputs each item gives when cut as `cut` says (image headers and video
/// sizes only, nothing decoded).
pub fn inputs_per_item(items: &[CalibItem], cut: FrameCut) -> Result<Vec<usize>> {
    let FrameCut::Tiles(tile, overlap) = cut else {
        return Ok(vec![1; items.len()]);
    };
    items
        .iter()
        .map(|it| {
            let (w, h) = match it {
                CalibItem::Image(p) => {
                    let (w, h) = image::image_dimensions(p)
                        .with_context(|| format!("cannot read image {}", p.display()))?;
                    (w as usize, h as usize)
                }
                CalibItem::VideoFrame { size, .. } => *size,
            };
            Ok(tile_grid(w, h, tile, overlap)?.len())
        })
        .collect()
}

/// At most `budget` model inputs: the items sampled evenly (in order) so that their inputs
/// (`per_item`) fit; all of them when they fit already. At least one item is kept.
pub fn sample_to_budget(
    items: Vec<CalibItem>,
    per_item: &[usize],
    budget: usize,
) -> Vec<CalibItem> {
    let total: usize = per_item.iter().sum();
    let n = items.len();
    if total <= budget || n == 0 {
        return items;
    }
    let pick = |keep: usize| (0..keep).map(move |i| i * n / keep);
    let mut keep = (n * budget / total.max(1)).clamp(1, n);
    while keep > 1 && pick(keep).map(|i| per_item[i]).sum::<usize>() > budget {
        keep -= 1;
    }
    pick(keep).map(|i| items[i].clone()).collect()
}

/// The model's metadata (input size, normalisation, preferred tile) for its single input.
pub fn input_metadata(engine: &Engine) -> Result<(Metadata, Vec<usize>)> {
    let inputs: Vec<(String, Vec<usize>)> = engine
        .inputs()
        .map(|(n, s)| (n.to_string(), s.to_vec()))
        .collect();
    if inputs.len() != 1 {
        bail!(
            "calibration from images needs a model with one image input; this one has {}",
            inputs.len()
        );
    }
    let shape = inputs[0].1.clone();
    let meta =
        Metadata::from_props(&engine.graph().metadata, &shape).map_err(anyhow::Error::msg)?;
    Ok((meta, shape))
}

/// Statistics gathered over the calibration frames.
#[derive(Default)]
pub struct Calibration {
    /// one histogram per float runtime tensor (graph inputs included)
    pub histograms: HashMap<String, Histogram>,
    /// per-channel (axis 1) means of the requested tensors
    pub channel_means: HashMap<String, Vec<f32>>,
    /// frames seen
    pub frames: usize,
}

/// Run the float model over `frames`, collecting a histogram of every tensor and the
/// per-channel means of the tensors in `means_of`. `tick` is called after each frame.
pub fn calibrate(
    engine: &mut Engine,
    frames: &[Tensor],
    means_of: &HashSet<String>,
    tick: &mut dyn FnMut(),
) -> Result<Calibration> {
    let input_names: Vec<String> = engine.inputs().map(|(n, _)| n.to_string()).collect();
    let mut hist: HashMap<String, Histogram> = HashMap::new();
    let mut sums: HashMap<String, (Vec<f64>, u64)> = HashMap::new();
    let mut observe = |name: &str, v: ndarray::ArrayViewD<f32>| {
        let h = hist.entry(name.to_string()).or_default();
        match v.as_slice() {
            Some(s) => h.add(s),
            None => h.add(&v.iter().copied().collect::<Vec<f32>>()),
        }
        if means_of.contains(name) && v.ndim() >= 2 {
            let c = v.shape()[1];
            let e = sums
                .entry(name.to_string())
                .or_insert_with(|| (vec![0.0; c], 0));
            for (ci, ch) in v.axis_iter(ndarray::Axis(1)).enumerate() {
                e.0[ci] += ch.iter().map(|&x| x as f64).sum::<f64>();
            }
            e.1 += (v.len() / c) as u64;
        }
    };
    for f in frames {
        for (name, t) in input_names.iter().zip(std::slice::from_ref(f)) {
            if let Some(a) = t.as_f32() {
                observe(name, a.view());
            }
        }
        engine.run_observed(std::slice::from_ref(f), Some(&mut observe))?;
        tick();
    }
    let channel_means = sums
        .into_iter()
        .map(|(k, (s, n))| (k, s.iter().map(|v| (v / n.max(1) as f64) as f32).collect()))
        .collect();
    Ok(Calibration {
        histograms: hist,
        channel_means,
        frames: frames.len(),
    })
}

/// SQNR of every tensor `test` shares (by name) with `reference`, and of the outputs.
pub struct Comparison {
    /// per tensor name
    pub tensors: HashMap<String, Sqnr>,
    /// per model output, in order: (name, SQNR)
    pub outputs: Vec<(String, Sqnr)>,
}

/// `DequantizeLinear` output -> the float tensor its `QuantizeLinear` reads, for every
/// activation Q/DQ pair of a QDQ model.
pub fn dequantized_aliases(model: &pb::ModelProto) -> HashMap<String, String> {
    let mut out = HashMap::new();
    let Some(g) = model.graph.as_ref() else {
        return out;
    };
    let q_in: HashMap<&str, &str> = g
        .node
        .iter()
        .filter(|n| n.op_type == "QuantizeLinear" && !n.input.is_empty() && !n.output.is_empty())
        .map(|n| (n.output[0].as_str(), n.input[0].as_str()))
        .collect();
    for n in g.node.iter().filter(|n| n.op_type == "DequantizeLinear") {
        if let (Some(i), Some(o)) = (n.input.first(), n.output.first()) {
            if let Some(src) = q_in.get(i.as_str()) {
                out.insert(o.clone(), src.to_string());
            }
        }
    }
    out
}

/// Run both engines on every frame and accumulate SQNR per tensor name of `test`: tensors
/// `reference` has under the same name, and tensors named in `alias` (test name -> reference
/// name, such as a DequantizeLinear output and the float tensor it stands for).
pub fn compare(
    reference: &mut Engine,
    test: &mut Engine,
    frames: &[Tensor],
    alias: &HashMap<String, String>,
    tick: &mut dyn FnMut(),
) -> Result<Comparison> {
    let out_names: Vec<String> = reference.outputs().map(|(n, _)| n.to_string()).collect();
    let mut tensors: HashMap<String, Sqnr> = HashMap::new();
    let mut outputs: Vec<Sqnr> = vec![Sqnr::default(); out_names.len()];
    for f in frames {
        let mut seen: HashMap<String, Vec<f32>> = HashMap::new();
        let mut keep = |name: &str, v: ndarray::ArrayViewD<f32>| {
            seen.insert(name.to_string(), v.iter().copied().collect());
        };
        let r = reference.run_observed(std::slice::from_ref(f), Some(&mut keep))?;
        let mut cmp = |name: &str, v: ndarray::ArrayViewD<f32>| {
            let rname = alias.get(name).map(String::as_str).unwrap_or(name);
            if let Some(rv) = seen.get(rname) {
                if rv.len() == v.len() {
                    tensors
                        .entry(name.to_string())
                        .or_default()
                        .add(rv.iter().copied(), v.iter().copied());
                }
            }
        };
        let t = test.run_observed(std::slice::from_ref(f), Some(&mut cmp))?;
        for ((acc, a), b) in outputs.iter_mut().zip(&r).zip(&t) {
            acc.add(a.to_f32_vec(), b.to_f32_vec());
        }
        tick();
    }
    Ok(Comparison {
        tensors,
        outputs: out_names.into_iter().zip(outputs).collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn describe(item: &CalibItem) -> String {
        match item {
            CalibItem::Image(p) => p.display().to_string(),
            CalibItem::VideoFrame { path, index, .. } => {
                format!("{} frame {index}", path.display())
            }
        }
    }

    fn images(n: usize) -> Vec<CalibItem> {
        (0..n)
            .map(|i| CalibItem::Image(PathBuf::from(format!("{i}.jpg"))))
            .collect()
    }

    #[test]
    fn sampling_fits_the_budget_evenly() {
        // fits already: unchanged
        assert_eq!(sample_to_budget(images(4), &[2; 4], 8), images(4));
        // 10 items of 3 inputs into 12: 4 items spread over the list
        let kept = sample_to_budget(images(10), &[3; 10], 12);
        let names: Vec<String> = kept.iter().map(describe).collect();
        assert_eq!(names, ["0.jpg", "2.jpg", "5.jpg", "7.jpg"]);
        // mixed sizes (12-tile images, 2-tile video frames): the sum never exceeds the budget
        let per: Vec<usize> = (0..85).map(|i| if i < 10 { 12 } else { 2 }).collect();
        for budget in [1, 5, 24, 48, 100, 299] {
            let kept = sample_to_budget(images(85), &per, budget);
            let sum: usize = kept
                .iter()
                .map(|k| {
                    per[describe(k)
                        .trim_end_matches(".jpg")
                        .parse::<usize>()
                        .unwrap()]
                })
                .sum();
            assert!(!kept.is_empty());
            assert!(sum <= budget.max(12), "budget {budget}: {sum}");
        }
    }
}
