//! The detector: engine + metadata + decoding, the main entry point for library users.

use super::decode_centernet::RawDet;
use super::{
    decode_centernet, decode_yolov8, nms, preprocess, Detection, Letterbox, MergeKind, RgbFrame,
};
use crate::exec::Engine;
use crate::model::{Metadata, OutputFormat};
use crate::tensor::Tensor;
use anyhow::{anyhow, bail, Context, Result};

/// Post-processing settings.
#[derive(Clone, Debug)]
pub struct DetectorOptions {
    /// Minimum score.
    pub conf: f32,
    /// Overlap threshold for suppression.
    pub iou: f32,
    /// Suppression kind.
    pub merge: MergeKind,
    /// At most this many detections per frame (highest scores).
    pub max_detections: usize,
}

impl Default for DetectorOptions {
    fn default() -> Self {
        DetectorOptions {
            conf: 0.3,
            iou: 0.5,
            merge: MergeKind::NmsIou,
            max_detections: 300,
        }
    }
}

/// Finds objects in RGB frames.
///
/// ```no_run
/// use speck::{Detector, EngineOptions};
/// let mut det = Detector::load("models/speck-tiny.onnx", &EngineOptions::default())?;
/// let img = image::open("examples/data/images/synth_0000.jpg")?.to_rgb8();
/// for d in det.detect_image(&img)? {
///     println!("{} {:.2} {:?}", d.label, d.score, d.bbox);
/// }
/// # Ok::<(), anyhow::Error>(())
/// ```
pub struct Detector {
    engine: Engine,
    meta: Metadata,
    /// Post-processing settings, changeable between frames.
    pub options: DetectorOptions,
    input: Vec<f32>,
    /// One input buffer per tile, reused across frames (see `tiling.rs`).
    pub(super) tile_inputs: Vec<Vec<f32>>,
    pub(super) times: StageTimes,
}

/// Time spent per stage since the last [`Detector::take_stage_times`] (for live stats).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct StageTimes {
    /// Letterbox, normalisation, layout (all tiles).
    pub preprocess: std::time::Duration,
    /// Engine runs (all tiles).
    pub engine: std::time::Duration,
}

impl Detector {
    /// Wrap a planned engine; metadata comes from the model unless given.
    pub fn new(engine: Engine, meta: Option<Metadata>) -> Result<Detector> {
        let (name, shape) = engine
            .inputs()
            .next()
            .ok_or_else(|| anyhow!("the model has no input"))?;
        let shape = shape.to_vec();
        if engine.inputs().count() != 1 || shape.len() != 4 || shape[0] != 1 || shape[1] != 3 {
            bail!("a detector takes one input of shape [1,3,H,W]; input '{name}' is {shape:?}");
        }
        let meta = match meta {
            Some(m) => m,
            None => {
                Metadata::from_props(&engine.graph().metadata, &shape).map_err(|e| anyhow!(e))?
            }
        };
        let (w, h) = meta.input_size;
        if (h, w) != (shape[2], shape[3]) {
            bail!("metadata input size {w}x{h} disagrees with the model input {shape:?}");
        }
        Ok(Detector {
            input: vec![0.0; 3 * w * h],
            engine,
            meta,
            options: DetectorOptions::default(),
            tile_inputs: vec![],
            times: StageTimes::default(),
        })
    }

    /// Load and plan a model file: a compiled `.speck` model or (with the `onnx` feature)
    /// an ONNX model; see [`Engine::load`].
    pub fn load(
        path: impl AsRef<std::path::Path>,
        opts: &crate::EngineOptions,
    ) -> Result<Detector> {
        let path = path.as_ref();
        let engine = Engine::load(path, opts)?;
        Detector::new(engine, None).with_context(|| format!("model {}", path.display()))
    }

    /// Stage times accumulated since the last call, then reset.
    pub fn take_stage_times(&mut self) -> StageTimes {
        std::mem::take(&mut self.times)
    }

    /// The model's metadata.
    pub fn metadata(&self) -> &Metadata {
        &self.meta
    }

    /// The engine (for profiling and introspection).
    pub fn engine_mut(&mut self) -> &mut Engine {
        &mut self.engine
    }

    /// Detect objects in an RGB frame.
    pub fn detect(&mut self, frame: RgbFrame) -> Result<Vec<Detection>> {
        check_frame(&frame)?;
        let mut input = std::mem::take(&mut self.input);
        let t0 = std::time::Instant::now();
        let lb = preprocess(frame, &self.meta, &mut input);
        self.times.preprocess += t0.elapsed();
        let raw = self.infer_raw(&mut input);
        self.input = input;
        let dets = self.to_detections(raw?, &lb, [0, 0, frame.width, frame.height]);
        let mut kept = nms(dets, self.options.iou, self.options.merge);
        kept.truncate(self.options.max_detections);
        Ok(kept)
    }

    /// Run the engine on a preprocessed input (`3 * H * W`, CHW) and decode the outputs;
    /// the buffer is moved into the input tensor and handed back, never copied.
    pub(super) fn infer_raw(&mut self, input: &mut Vec<f32>) -> Result<Vec<RawDet>> {
        let mut raws = self.infer_raw_batch(std::slice::from_mut(input))?;
        Ok(raws.pop().expect("one result per input"))
    }

    /// Run the engine on many preprocessed inputs at once ([`Engine::run_batch`]; one input
    /// is a plain run) and decode each; the buffers are moved into tensors and handed back.
    pub(super) fn infer_raw_batch(&mut self, inputs: &mut [Vec<f32>]) -> Result<Vec<Vec<RawDet>>> {
        let (w, h) = self.meta.input_size;
        let batch = inputs
            .iter_mut()
            .map(|b| Ok(vec![Tensor::from_f32(&[1, 3, h, w], std::mem::take(b))?]))
            .collect::<Result<Vec<_>>>()?;
        let t0 = std::time::Instant::now();
        let result = self.engine.run_batch(&batch);
        self.times.engine += t0.elapsed();
        for (b, mut x) in inputs.iter_mut().zip(batch) {
            *b = match x.pop() {
                Some(Tensor::F32(a)) => a.into_raw_vec_and_offset().0,
                _ => unreachable!(),
            };
        }
        result?.iter().map(|outputs| self.decode(outputs)).collect()
    }

    /// Map raw detections of the region `[x, y, w, h]` (preprocessed with `lb`) to frame
    /// coordinates; empty boxes are dropped.
    pub(super) fn to_detections(
        &self,
        raw: Vec<RawDet>,
        lb: &Letterbox,
        region: [usize; 4],
    ) -> Vec<Detection> {
        let [rx, ry, rw, rh] = region;
        let (ox, oy) = (rx as f32, ry as f32);
        raw.into_iter()
            .map(|(b, score, class_id)| {
                let t = lb.to_frame(b, rw, rh);
                Detection {
                    bbox: [t[0] + ox, t[1] + oy, t[2] + ox, t[3] + oy],
                    score,
                    label: self.meta.class_name(class_id),
                    class_id,
                }
            })
            .filter(|d| d.area() > 0.0)
            .collect()
    }

    /// Detect objects in an `image` RGB buffer.
    pub fn detect_image(&mut self, img: &image::RgbImage) -> Result<Vec<Detection>> {
        let frame = RgbFrame {
            data: img.as_raw(),
            width: img.width() as usize,
            height: img.height() as usize,
        };
        self.detect(frame)
    }

    fn decode(&self, outputs: &[Tensor]) -> Result<Vec<RawDet>> {
        let conf = self.options.conf;
        let f32_out = |i: usize| -> Result<ndarray::ArrayViewD<f32>> {
            outputs
                .get(i)
                .and_then(Tensor::as_f32)
                .map(|a| a.view())
                .ok_or_else(|| anyhow!("missing output {i}"))
        };
        match self.meta.output_format {
            OutputFormat::Yolov8 => decode_yolov8(f32_out(0)?, conf).map_err(|e| anyhow!(e)),
            OutputFormat::SpeckCenternet => {
                let names: Vec<&str> = self.engine.outputs().map(|(n, _)| n).collect();
                let mut all = vec![];
                for (k, &stride) in self.meta.strides.iter().enumerate() {
                    let find = |base: &str| -> Option<usize> {
                        let multi = format!("{base}_s{stride}");
                        names.iter().position(|n| *n == multi).or_else(|| {
                            (self.meta.strides.len() == 1)
                                .then(|| names.iter().position(|n| *n == base))
                                .flatten()
                        })
                    };
                    let hi = find("heatmap").unwrap_or(2 * k);
                    let bi = find("box").unwrap_or(2 * k + 1);
                    all.extend(
                        decode_centernet(f32_out(hi)?, f32_out(bi)?, stride as f32, conf)
                            .map_err(|e| anyhow!(e))?,
                    );
                }
                Ok(all)
            }
        }
    }
}

/// A frame must hold `width * height * 3` bytes and be non-empty.
pub(super) fn check_frame(frame: &RgbFrame) -> Result<()> {
    if frame.width == 0 || frame.height == 0 || frame.data.len() < frame.width * frame.height * 3 {
        bail!(
            "frame of {}x{} needs {} bytes, got {}",
            frame.width,
            frame.height,
            frame.width * frame.height * 3,
            frame.data.len()
        );
    }
    Ok(())
}
