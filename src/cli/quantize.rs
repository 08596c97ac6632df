//! `speck quantize`: float ONNX model + calibration frames -> int8 QDQ ONNX model.

use anyhow::{Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use speck::quantize as glue;
use speck_quantize::calib::{Method, QParams};
use speck_quantize::pb;
use speck_quantize::qdq::{self, QdqOptions, QdqResult};
use speck_quantize::report::{Accuracy, AccuracyMetrics, LayerSqnr, Report, Sqnr};
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Arguments of `speck quantize`.
#[derive(clap::Args, Debug)]
#[command(after_help = "Examples:
  speck quantize models/speck-tiny.onnx --calib examples/data/images -o speck-tiny-int8.onnx
  speck quantize m.onnx --calib frames/ -o m-int8.onnx --method entropy --cle --bias-correction --report r.json
  speck quantize models/speck-tiny.onnx --calib frames/ -o int8.onnx --val val/annotations.json --images val/images
  speck quantize models/speck-tiny.onnx --calib camera.mp4 -o int8.onnx --max-frames 120

Calibration images and video frames are cut into the model's tiles (metadata `tile`) as at inference, unless
--no-tile. With --val, the float and the int8 model are both run over the labelled images (tiled
as `speck eval` does) and their AP is reported.")]
pub struct Args {
    /// Float ONNX model.
    model: PathBuf,
    /// Calibration frames, preprocessed as at inference: a folder of images (JPEG, PNG, BMP)
    /// and/or videos (MP4, MKV, AVI, MOV, WebM, ..., decoded with ffmpeg), or one image or
    /// video file.
    #[arg(long, value_name = "PATH")]
    calib: PathBuf,
    /// Output QDQ ONNX model.
    #[arg(short, long)]
    output: PathBuf,
    /// How activation ranges are chosen.
    #[arg(long, default_value = "percentile", value_parser = ["minmax", "percentile", "entropy", "mse"])]
    method: String,
    /// Percentile for --method percentile.
    #[arg(long, default_value_t = 99.99)]
    percentile: f64,
    /// One weight scale per tensor instead of per output channel.
    #[arg(long)]
    per_tensor: bool,
    /// int8 activations instead of uint8.
    #[arg(long)]
    int8_activations: bool,
    /// Cross-layer equalization of conv -> relu -> conv pairs before calibration.
    #[arg(long)]
    cle: bool,
    /// Correct conv biases for the mean shift caused by weight quantization.
    #[arg(long)]
    bias_correction: bool,
    /// Quantize the head branches of a multi-output model (a detector's heatmap and box heads)
    /// too: faster, at some AP (on the default model about 0.4 AP50, see quantize/README.md).
    /// The predictor (each output's last conv) and the box decoding stay float either way.
    #[arg(long)]
    int8_heads: bool,
    /// Quantize LDA-AQU's attention over the sampled points too (Q/DQ on the sampled keys and
    /// values, the biased keys and the attention, as ONNX Runtime's quantize_static does). By
    /// default it stays float: speck runs it as one fused float op either way, so the roundings
    /// would only cost accuracy and time.
    #[arg(long)]
    int8_attention: bool,
    /// Nodes (by ONNX node name) to keep in float.
    #[arg(long, num_args = 1..)]
    keep_float: Vec<String>,
    /// Sensitivity pass: keep a node (and its output) float when int8 costs more than this
    /// many dB of SQNR across it and leaves it below 30 dB, measured on the calibration set
    /// (0 turns the pass off).
    #[arg(long, default_value_t = 6.0)]
    sensitivity_db: f64,
    /// Rounds of the sensitivity pass (each one measures the whole calibration set again).
    #[arg(long, default_value_t = 2)]
    sensitivity_rounds: usize,
    /// Use at most the first this many calibration images or video frames.
    #[arg(long)]
    max_images: Option<usize>,
    /// Calibrate on whole frames even when the model runs on tiles (by default calibration
    /// frames are cut into the model's tiles, as inference sees them).
    #[arg(long)]
    no_tile: bool,
    /// At most this many model inputs (tiles) for calibration; images and video frames are
    /// sampled evenly to fit.
    #[arg(long, default_value_t = 256)]
    max_frames: usize,
    /// Labelled validation set (COCO JSON): report float versus int8 AP on it (needs --images).
    #[arg(long, value_name = "GT.json", requires = "images")]
    val: Option<PathBuf>,
    /// Folder of the --val images.
    #[arg(long, value_name = "DIR", requires = "val")]
    images: Option<PathBuf>,
    /// Write a JSON report here.
    #[arg(long)]
    report: Option<PathBuf>,
    /// Worker threads for the float engine.
    #[arg(long, default_value_t = 1)]
    threads: usize,
}

fn bar(n: usize, what: &str) -> ProgressBar {
    let pb = ProgressBar::new(n as u64);
    pb.set_style(
        ProgressStyle::with_template("{msg:>12} [{bar:30}] {pos}/{len} frames {elapsed}")
            .expect("valid template")
            .progress_chars("=> "),
    );
    pb.set_message(what.to_string());
    pb
}

/// Write `bytes` next to `path` under a temporary name, then rename into place.
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .context("output path has no file name")?
        .to_string_lossy();
    let tmp = dir.join(format!(".{name}.tmp{}", std::process::id()));
    let res = (|| -> std::io::Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if res.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    res.with_context(|| format!("writing {}", path.display()))
}

struct Measured {
    layers: Vec<LayerSqnr>,
    outputs: Vec<LayerSqnr>,
}

/// SQNR per node output (the dequantized tensor where the output is quantized).
fn measure(
    float_model: &pb::ModelProto,
    res: &QdqResult,
    frames: &[speck::Tensor],
    threads: usize,
) -> Result<(Measured, HashMap<String, Sqnr>)> {
    let mut fe = glue::engine_for(float_model, threads)?;
    let mut qe = glue::engine_for(&res.model, threads).context("running the QDQ model in speck")?;
    let alias = glue::dequantized_aliases(&res.model);
    let by_src: HashMap<&str, &str> = alias
        .iter()
        .map(|(dq, src)| (src.as_str(), dq.as_str()))
        .collect();
    let pb = bar(frames.len(), "measuring");
    let cmp = glue::compare(&mut fe, &mut qe, frames, &alias, &mut || pb.inc(1))?;
    pb.finish_and_clear();
    // Key every measurement by the float tensor name, preferring the dequantized version.
    let mut per_tensor: HashMap<String, Sqnr> = HashMap::new();
    for (name, s) in &cmp.tensors {
        if !alias.contains_key(name) && !by_src.contains_key(name.as_str()) {
            per_tensor.insert(name.clone(), *s);
        }
    }
    for (dq, src) in &alias {
        if let Some(s) = cmp.tensors.get(dq) {
            per_tensor.insert(src.clone(), *s);
        }
    }
    let quantized: HashSet<&str> = res.quantized.iter().map(String::as_str).collect();
    let g = float_model.graph.as_ref().expect("checked");
    let mut layers = vec![];
    for n in &g.node {
        if let Some((t, s)) = n
            .output
            .iter()
            .find_map(|o| per_tensor.get(o).map(|s| (o, s)))
        {
            layers.push(LayerSqnr {
                node: n.name.clone(),
                op_type: n.op_type.clone(),
                tensor: t.clone(),
                sqnr_db: s.db(),
                quantized: quantized.contains(n.name.as_str()),
            });
        }
    }
    let outputs = cmp
        .outputs
        .iter()
        .map(|(name, s)| LayerSqnr {
            node: String::new(),
            op_type: "output".into(),
            tensor: name.clone(),
            sqnr_db: s.db(),
            quantized: true,
        })
        .collect();
    Ok((Measured { layers, outputs }, per_tensor))
}

/// A node is only kept float by the sensitivity pass when its int8 output is also below this
/// SQNR: a node reading exact (float) inputs always "loses" its own quantization noise, which is
/// harmless at 8-bit levels (~40 dB).
const SENSITIVE_BELOW_DB: f64 = 30.0;

/// What the sensitivity pass keeps float.
#[derive(Default)]
struct Sensitive {
    /// nodes computed in float, with the reason
    nodes: BTreeMap<String, String>,
    /// nodes whose outputs stay float (the noise amplifiers' producers, and the nodes above)
    float_outputs: BTreeSet<String>,
}

/// Quantized nodes that lose more than `limit` dB between their noisiest input and their
/// output, and whose output ends below [`SENSITIVE_BELOW_DB`]. Such a node either quantizes its
/// weights badly or amplifies the quantization noise of its input (a depthwise filter whose taps
/// nearly cancel, as in the first blocks of the default model): in both cases it is computed in
/// float, and its inputs stay float too (their producers still compute in int8 but do not
/// requantize their outputs), since keeping only the node float would leave the noise in.
fn sensitive_nodes(
    model: &pb::ModelProto,
    res: &QdqResult,
    per_tensor: &HashMap<String, Sqnr>,
    limit: f64,
) -> Sensitive {
    let mut out = Sensitive::default();
    let g = model.graph.as_ref().expect("checked");
    let quantized: HashSet<&str> = res.quantized.iter().map(String::as_str).collect();
    let producer: HashMap<&str, &str> = g
        .node
        .iter()
        .flat_map(|n| n.output.iter().map(move |o| (o.as_str(), n.name.as_str())))
        .collect();
    // The model's inputs count as exact: a first layer that turns the input's 8-bit rounding
    // into 20 dB of noise (a stem whose filters amplify it) is the worst amplifier of all.
    let initializers = speck_quantize::proto::initializer_index(g);
    let graph_inputs: HashSet<&str> = g
        .input
        .iter()
        .map(|i| i.name.as_str())
        .filter(|n| !initializers.contains_key(*n))
        .collect();
    for n in g
        .node
        .iter()
        .filter(|n| quantized.contains(n.name.as_str()))
    {
        let ins: Vec<f64> = n
            .input
            .iter()
            .filter_map(|t| match per_tensor.get(t) {
                Some(s) => Some(s.db()),
                None if graph_inputs.contains(t.as_str()) => Some(f64::INFINITY),
                None => None,
            })
            .collect();
        let out_db = n
            .output
            .iter()
            .filter_map(|t| per_tensor.get(t))
            .map(Sqnr::db)
            .next();
        if let (Some(o), Some(i)) = (out_db, ins.iter().copied().reduce(f64::min)) {
            if i - o > limit && o < SENSITIVE_BELOW_DB {
                let why = if i.is_finite() {
                    format!(
                        "sensitivity: int8 costs {:.1} dB across it ({i:.1} dB in, {o:.1} dB out); its inputs stay float",
                        i - o
                    )
                } else {
                    format!("sensitivity: reads the model input and its int8 output is at {o:.1} dB; its inputs stay float")
                };
                out.nodes.insert(n.name.clone(), why);
                out.float_outputs.insert(n.name.clone());
                for t in &n.input {
                    if let Some(p) = producer.get(t.as_str()) {
                        out.float_outputs.insert(p.to_string());
                    }
                }
            }
        }
    }
    out
}

pub fn run(a: Args) -> Result<ExitCode> {
    let threads = a.threads.max(1);
    let mut model = glue::read_model(&a.model)?;
    speck_quantize::proto::check_float_model(&model)?;
    let mut items = glue::calibration_items(&a.calib)?;
    if let Some(m) = a.max_images {
        items.truncate(m.max(1));
    }
    let val = match (&a.val, &a.images) {
        (Some(gt_path), Some(dir)) => {
            let gt = speck::eval::GroundTruth::load(gt_path)?;
            super::eval::check_images(gt_path, &gt, dir)?;
            Some((gt_path.clone(), gt, dir.clone()))
        }
        _ => None,
    };
    qdq::name_nodes(&mut model);
    let float_model = model.clone();
    let mut fe = glue::engine_for(&model, threads)?;
    let (meta, _) = glue::input_metadata(&fe)?;
    let cut = match meta.tile {
        Some(t) if !a.no_tile => glue::FrameCut::Tiles(t, 0.2),
        _ => glue::FrameCut::Whole,
    };
    let per_item = glue::inputs_per_item(&items, cut)?;
    let n = items.len();
    items = glue::sample_to_budget(items, &per_item, a.max_frames.max(1));
    if items.len() < n {
        log::info!(
            "calibrating on {} of {n} images or video frames (--max-frames {} model inputs)",
            items.len(),
            a.max_frames
        );
    }
    let pb = bar(items.len(), "loading");
    let frames = glue::load_frames(&fe, &items, cut, &mut || pb.inc(1))?;
    pb.finish_and_clear();
    let signed = a.int8_activations;
    let per_channel = !a.per_tensor;
    let method = match a.method.as_str() {
        "percentile" => Method::Percentile(a.percentile),
        m => m.parse::<Method>().map_err(anyhow::Error::msg)?,
    };

    let mut keep = qdq::float_nodes_by_default_rules(&model, !a.int8_attention);
    let heads = if a.int8_heads {
        qdq::OutputHeads::Int8
    } else {
        qdq::OutputHeads::Float
    };
    for (n, why) in qdq::output_float_nodes(&model, heads) {
        keep.entry(n).or_insert(why);
    }
    let mut float_outputs = HashSet::new();
    for n in &a.keep_float {
        keep.insert(n.clone(), "user: --keep-float".into());
        float_outputs.insert(n.clone());
    }
    let kept: HashSet<String> = keep.keys().cloned().collect();
    let skip = |n: &pb::NodeProto| kept.contains(&n.name);

    let cle = if a.cle {
        let pairs = speck_quantize::cle::equalize(&mut model, 4, &skip)?;
        fe = glue::engine_for(&model, threads)?;
        pairs
    } else {
        vec![]
    };

    let g = model.graph.as_ref().context("the model has no graph")?;
    let conv_inputs: HashSet<String> = g
        .node
        .iter()
        .filter(|n| n.op_type == "Conv")
        .filter_map(|n| n.input.first().cloned())
        .collect();
    let pb = bar(frames.len(), "calibrating");
    let cal = glue::calibrate(&mut fe, &frames, &conv_inputs, &mut || pb.inc(1))?;
    pb.finish_and_clear();
    let ranges: HashMap<String, (f32, f32)> = cal
        .histograms
        .iter()
        .map(|(k, h)| (k.clone(), method.range(h, signed)))
        .collect();

    let bias_corrected = if a.bias_correction {
        speck_quantize::bias::correct_biases(&mut model, &cal.channel_means, per_channel, &skip)?
            .into_iter()
            .map(|(n, _)| n)
            .collect()
    } else {
        vec![]
    };

    let mut opts = QdqOptions {
        per_channel,
        act_signed: signed,
        keep_float: keep,
        float_outputs,
    };
    let mut res = qdq::quantize_model(&model, &ranges, &opts)?;
    let (mut measured, mut per_tensor) = measure(&float_model, &res, &frames, threads)?;
    // Each round keeps the worst offenders float and measures again: once the first noise
    // amplifiers read float inputs, the next ones downstream show up.
    for _ in 0..if a.sensitivity_db > 0.0 {
        a.sensitivity_rounds
    } else {
        0
    } {
        let extra = sensitive_nodes(&model, &res, &per_tensor, a.sensitivity_db);
        let before = (opts.keep_float.len(), opts.float_outputs.len());
        opts.float_outputs.extend(extra.float_outputs);
        for (k, v) in extra.nodes {
            opts.keep_float.entry(k).or_insert(v);
        }
        if (opts.keep_float.len(), opts.float_outputs.len()) == before {
            break;
        }
        res = qdq::quantize_model(&model, &ranges, &opts)?;
        (measured, per_tensor) = measure(&float_model, &res, &frames, threads)?;
    }

    let bytes = prost::Message::encode_to_vec(&res.model);
    write_atomic(&a.output, &bytes)?;
    let report = Report {
        model: a.model.display().to_string(),
        output: a.output.display().to_string(),
        method: method.name().into(),
        per_channel,
        activation_type: if signed { "int8" } else { "uint8" }.into(),
        cle,
        bias_corrected,
        calibration_frames: cal.frames,
        float_bytes: speck_quantize::proto::encoded_len(&float_model),
        quantized_bytes: bytes.len(),
        quantized_nodes: res.quantized.len(),
        int8_weights: res.int8_weights,
        kept_float: res.kept_float.clone(),
        layers: measured.layers,
        outputs: measured.outputs,
        calibration_tiled: matches!(cut, glue::FrameCut::Tiles(..)),
        accuracy: match &val {
            Some((gt_path, gt, dir)) => Some(accuracy(&a, gt_path, gt, dir)?),
            None => None,
        },
    };
    if let Some(p) = &a.report {
        write_atomic(p, serde_json::to_string_pretty(&report)?.as_bytes())?;
    }
    print_summary(&report, &res.activations);
    Ok(ExitCode::SUCCESS)
}

/// Float versus int8 detection metrics on the labelled set, both run by speck as `speck eval`
/// runs them (tiled; the QDQ model on the int8 kernels).
fn accuracy(
    a: &Args,
    gt_path: &Path,
    gt: &speck::eval::GroundTruth,
    dir: &Path,
) -> Result<Accuracy> {
    let mut metrics = vec![];
    for (what, path) in [("float", &a.model), ("int8", &a.output)] {
        let opts = speck::EngineOptions {
            threads: a.threads.max(1),
            ..Default::default()
        };
        let mut det = speck::Detector::load(path, &opts)
            .with_context(|| format!("loading the {what} model for --val"))?;
        det.options.conf = 0.05;
        let tiles = det.metadata().tile.map(|t| speck::detect::TileOptions {
            tile: t,
            ..Default::default()
        });
        let pb = bar(gt.images.len(), &format!("val {what}"));
        let (dets, _) = super::eval::detect_all(&mut det, gt, dir, tiles.as_ref(), &pb)?;
        let r = speck::eval::evaluate(gt, &dets);
        let tiny = r
            .tiny
            .ranges
            .iter()
            .find(|(n, _)| n == "tiny")
            .map(|(_, m)| m);
        metrics.push(AccuracyMetrics {
            coco_ap50: r.coco.ap50,
            coco_ap: r.coco.ap,
            tiny_ap50: tiny.and_then(|m| m.ap50),
            tiny_mr50: tiny.and_then(|m| m.mr50),
        });
    }
    let int8 = metrics.pop().expect("two runs");
    let float = metrics.pop().expect("two runs");
    Ok(Accuracy {
        gt: gt_path.display().to_string(),
        images: gt.images.len(),
        float,
        int8,
    })
}

fn pct(x: Option<f64>) -> String {
    x.map_or("-".into(), |v| format!("{:.1}", v * 100.0))
}

fn print_summary(r: &Report, _acts: &BTreeMap<String, QParams>) {
    println!(
        "quantized {} -> {} ({} method, {} weights, {} activations, {} calibration frames)",
        r.model,
        r.output,
        r.method,
        if r.per_channel {
            "per-channel"
        } else {
            "per-tensor"
        },
        r.activation_type,
        r.calibration_frames
    );
    println!(
        "size: {:.2} MB float -> {:.2} MB int8 ({} int8 weight tensors, {} int8 nodes)",
        r.float_bytes as f64 / 1e6,
        r.quantized_bytes as f64 / 1e6,
        r.int8_weights,
        r.quantized_nodes
    );
    if !r.cle.is_empty() {
        println!("cross-layer equalization: {} conv pairs", r.cle.len());
    }
    if !r.bias_corrected.is_empty() {
        println!("bias correction: {} convs", r.bias_corrected.len());
    }
    for o in &r.outputs {
        println!("output {}: SQNR {:.1} dB", o.tensor, o.sqnr_db);
    }
    let mut worst: Vec<&LayerSqnr> = r.layers.iter().filter(|l| l.quantized).collect();
    worst.sort_by(|a, b| a.sqnr_db.total_cmp(&b.sqnr_db));
    if !worst.is_empty() {
        let w: Vec<String> = worst
            .iter()
            .take(5)
            .map(|l| format!("{} ({}) {:.1} dB", l.node, l.op_type, l.sqnr_db))
            .collect();
        println!("lowest layer SQNR: {}", w.join(", "));
    }
    if let Some(acc) = &r.accuracy {
        println!(
            "accuracy on {} ({} images): AP50 {} float -> {} int8; AP50-tiny {} -> {}; MR50-tiny {} -> {}",
            acc.gt,
            acc.images,
            pct(acc.float.coco_ap50),
            pct(acc.int8.coco_ap50),
            pct(acc.float.tiny_ap50),
            pct(acc.int8.tiny_ap50),
            pct(acc.float.tiny_mr50),
            pct(acc.int8.tiny_mr50),
        );
    }
    if r.kept_float.is_empty() {
        println!("kept float: none");
    } else {
        println!("kept float ({}):", r.kept_float.len());
        for k in &r.kept_float {
            println!("  {} ({}): {}", k.node, k.op_type, k.reason);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use speck_quantize::proto::node;

    /// x -> conv (weights w) -> y0 -> relu -> y1, with the given SQNR (dB) of y0 and y1.
    fn sensitive(y0_db: f64, y1_db: f64) -> Sensitive {
        let graph = pb::GraphProto {
            node: vec![
                node("Conv", "conv", &["x", "w"], &["y0"], vec![]),
                node("Relu", "relu", &["y0"], &["y1"], vec![]),
            ],
            input: vec![
                pb::ValueInfoProto {
                    name: "x".into(),
                    ..Default::default()
                },
                pb::ValueInfoProto {
                    name: "w".into(),
                    ..Default::default()
                },
            ],
            initializer: vec![pb::TensorProto {
                name: "w".into(),
                ..Default::default()
            }],
            ..Default::default()
        };
        let model = pb::ModelProto {
            graph: Some(graph),
            ..Default::default()
        };
        let res = QdqResult {
            model: model.clone(),
            quantized: vec!["conv".into(), "relu".into()],
            kept_float: vec![],
            activations: BTreeMap::new(),
            int8_weights: 1,
        };
        let at = |db: f64| Sqnr {
            signal: 10f64.powf(db / 10.0),
            noise: 1.0,
        };
        let per_tensor =
            HashMap::from([("y0".to_string(), at(y0_db)), ("y1".to_string(), at(y1_db))]);
        sensitive_nodes(&model, &res, &per_tensor, 6.0)
    }

    #[test]
    fn a_first_layer_that_turns_the_input_rounding_into_noise_stays_float() {
        let s = sensitive(20.6, 20.5);
        assert!(
            s.nodes["conv"].contains("reads the model input"),
            "{:?}",
            s.nodes
        );
        assert!(s.float_outputs.contains("conv"));
        assert!(
            !s.nodes.contains_key("relu"),
            "the relu loses nothing across it"
        );
        // The weights (an initializer, also listed as a graph input) do not count as an input.
        assert!(!s.float_outputs.contains("w"));
    }

    #[test]
    fn a_first_layer_at_8_bit_quality_stays_int8() {
        assert!(sensitive(38.0, 37.5).nodes.is_empty());
    }

    #[test]
    fn a_noise_amplifier_further_down_stays_float_with_its_producer() {
        let s = sensitive(35.0, 20.0);
        assert!(
            s.nodes["relu"].contains("costs 15.0 dB across it"),
            "{:?}",
            s.nodes
        );
        assert!(
            s.float_outputs.contains("conv"),
            "its input's producer stops requantizing"
        );
        assert!(!s.nodes.contains_key("conv"));
    }
}
