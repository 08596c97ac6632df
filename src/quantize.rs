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

/// Image files directly in `dir`, sorted; an error when there are none.
pub fn calibration_images(dir: &Path) -> Result<Vec<PathBuf>> {
    const EXTS: &[&str] = &["jpg", "jpeg", "png", "bmp"];
    let rd = std::fs::read_dir(dir)
        .with_context(|| format!("cannot read calibration folder {}", dir.display()))?;
    let mut v: Vec<PathBuf> = rd
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.is_file()
                && p.extension()
                    .and_then(|e| e.to_str())
                    .is_some_and(|e| EXTS.contains(&e.to_ascii_lowercase().as_str()))
        })
        .collect();
    v.sort();
    if v.is_empty() {
        bail!(
            "no calibration images (jpg, jpeg, png, bmp) in {}",
            dir.display()
        );
    }
    Ok(v)
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

/// The model inputs `speck detect` would run for the image at `path`: one per tile, or one for
/// the whole frame.
pub fn load_frame(
    path: &Path,
    meta: &Metadata,
    shape: &[usize],
    cut: FrameCut,
) -> Result<Vec<Tensor>> {
    let img = image::open(path)
        .with_context(|| format!("cannot read image {}", path.display()))?
        .to_rgb8();
    let (w, h) = (img.width() as usize, img.height() as usize);
    let frame = RgbFrame {
        data: img.as_raw(),
        width: w,
        height: h,
    };
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

/// Load and preprocess every calibration image for `engine`'s input, cut as `cut` says.
pub fn load_frames(engine: &Engine, paths: &[PathBuf], cut: FrameCut) -> Result<Vec<Tensor>> {
    let (meta, shape) = input_metadata(engine)?;
    let mut out = vec![];
    for p in paths {
        out.extend(load_frame(p, &meta, &shape, cut)?);
    }
    Ok(out)
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
