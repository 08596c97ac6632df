//! Detection metadata read from ONNX `metadata_props` (see `docs/model-contract.md`), with
//! fallbacks for Ultralytics exports and overrides from the command line.

use std::collections::BTreeMap;

/// How raw model outputs become boxes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OutputFormat {
    /// speck's CenterNet-style head: `heatmap` + `box` per stride.
    SpeckCenternet,
    /// Ultralytics YOLOv8 `[1, 4 + nc, N]`.
    Yolov8,
}

impl std::str::FromStr for OutputFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "speck_centernet" => Ok(OutputFormat::SpeckCenternet),
            "yolov8" | "yolo" => Ok(OutputFormat::Yolov8),
            _ => Err(format!(
                "unknown output format '{s}' (expected speck_centernet or yolov8)"
            )),
        }
    }
}

/// How frames are fitted to the model input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResizeKind {
    /// Keep aspect ratio, pad with grey.
    Letterbox,
    /// Stretch to the input size.
    Stretch,
}

/// What the detector needs to know about a model.
#[derive(Clone, Debug, PartialEq)]
pub struct Metadata {
    /// Input width and height.
    pub input_size: (usize, usize),
    /// Per-channel mean (0..1 scale).
    pub mean: [f32; 3],
    /// Per-channel std (0..1 scale).
    pub std: [f32; 3],
    /// Resize mode.
    pub resize: ResizeKind,
    /// Class names, by class id.
    pub class_names: Vec<String>,
    /// Output format.
    pub output_format: OutputFormat,
    /// Output strides (speck format).
    pub strides: Vec<usize>,
    /// Tile size (W, H) in frame pixels the model expects frames to be cut into (`tile`
    /// key, e.g. `384x384`): set for models trained on native-scale crops.
    pub tile: Option<(usize, usize)>,
}

fn floats3(s: &str, key: &str) -> Result<[f32; 3], String> {
    let v: Vec<f32> = s
        .trim_matches(|c| c == '[' || c == ']')
        .split(',')
        .map(|x| x.trim().parse::<f32>())
        .collect::<Result<_, _>>()
        .map_err(|e| format!("metadata '{key}' = '{s}': {e}"))?;
    v.try_into()
        .map_err(|_| format!("metadata '{key}' = '{s}': expected 3 numbers"))
}

/// Parse Ultralytics' `names` (a Python dict literal such as `{0: 'person', 1: 'car'}`).
fn parse_ultralytics_names(s: &str) -> Vec<String> {
    let mut out: Vec<(usize, String)> = vec![];
    let body = s.trim().trim_start_matches('{').trim_end_matches('}');
    for item in body.split(", ") {
        if let Some((k, v)) = item.split_once(':') {
            if let Ok(k) = k.trim().parse::<usize>() {
                let v = v.trim().trim_matches(|c| c == '\'' || c == '"').to_string();
                out.push((k, v));
            }
        }
    }
    out.sort();
    out.into_iter().map(|(_, v)| v).collect()
}

impl Metadata {
    /// Read metadata, using the model input shape `[1,3,H,W]` where the metadata is silent.
    pub fn from_props(
        props: &BTreeMap<String, String>,
        input_shape: &[usize],
    ) -> Result<Metadata, String> {
        let (h, w) = match input_shape {
            [_, _, h, w] => (*h, *w),
            _ => {
                return Err(format!(
                    "model input must be [N,3,H,W], got {input_shape:?}"
                ))
            }
        };
        let yolo = props.contains_key("names") && props.contains_key("stride");
        let output_format = match props.get("output_format") {
            Some(s) => s.parse()?,
            None if yolo => OutputFormat::Yolov8,
            None => OutputFormat::SpeckCenternet,
        };
        let mut input_size = (w, h);
        if let Some(s) = props.get("input_size") {
            let v: Vec<usize> = s.split(',').filter_map(|x| x.trim().parse().ok()).collect();
            if v.len() == 2 {
                input_size = (v[0], v[1]);
            }
        }
        if input_size != (w, h) {
            return Err(format!(
                "metadata input_size {}x{} disagrees with the model input {}x{}",
                input_size.0, input_size.1, w, h
            ));
        }
        let (mean, std) = match (props.get("mean"), props.get("std")) {
            (Some(m), Some(s)) => (floats3(m, "mean")?, floats3(s, "std")?),
            // Ultralytics models take plain [0,1] input.
            _ => ([0.0; 3], [1.0; 3]),
        };
        let resize = match props.get("resize").map(String::as_str) {
            Some("stretch") => ResizeKind::Stretch,
            Some("letterbox") | None => ResizeKind::Letterbox,
            Some(o) => return Err(format!("unknown resize mode '{o}'")),
        };
        let class_names = if let Some(s) = props.get("class_names") {
            serde_json::from_str::<Vec<String>>(s)
                .map_err(|e| format!("metadata class_names: {e}"))?
        } else if let Some(s) = props.get("names") {
            parse_ultralytics_names(s)
        } else {
            vec![]
        };
        let strides = props
            .get("strides")
            .or_else(|| props.get("stride"))
            .map(|s| {
                s.trim_matches(|c| c == '[' || c == ']')
                    .split(',')
                    .filter_map(|x| x.trim().parse().ok())
                    .collect()
            })
            .unwrap_or_else(|| vec![4]);
        let tile = match props.get("tile") {
            None => None,
            Some(t) => Some(
                t.split_once(['x', 'X'])
                    .and_then(|(w, h)| Some((w.trim().parse().ok()?, h.trim().parse().ok()?)))
                    .filter(|&(w, h): &(usize, usize)| w > 0 && h > 0)
                    .ok_or_else(|| format!("metadata tile = '{t}': expected WxH"))?,
            ),
        };
        Ok(Metadata {
            input_size,
            mean,
            std,
            resize,
            class_names,
            output_format,
            strides,
            tile,
        })
    }

    /// The name of a class id (the id itself when the model has no names).
    pub fn class_name(&self, id: usize) -> String {
        self.class_names
            .get(id)
            .cloned()
            .unwrap_or_else(|| format!("class{id}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_speck_metadata() {
        let mut p = BTreeMap::new();
        p.insert("input_size".into(), "512,384".into());
        p.insert("mean".into(), "0.485,0.456,0.406".into());
        p.insert("std".into(), "0.229,0.224,0.225".into());
        p.insert("class_names".into(), "[\"person\"]".into());
        p.insert("output_format".into(), "speck_centernet".into());
        p.insert("strides".into(), "4".into());
        let m = Metadata::from_props(&p, &[1, 3, 384, 512]).unwrap();
        assert_eq!(m.input_size, (512, 384));
        assert_eq!(m.class_names, vec!["person"]);
        assert_eq!(m.strides, vec![4]);
        assert!(Metadata::from_props(&p, &[1, 3, 512, 512]).is_err());
    }

    #[test]
    fn reads_ultralytics_metadata() {
        let mut p = BTreeMap::new();
        p.insert("names".into(), "{0: 'person', 1: 'bicycle'}".into());
        p.insert("stride".into(), "32".into());
        p.insert("imgsz".into(), "[640, 640]".into());
        let m = Metadata::from_props(&p, &[1, 3, 640, 640]).unwrap();
        assert_eq!(m.output_format, OutputFormat::Yolov8);
        assert_eq!(m.class_names, vec!["person", "bicycle"]);
        assert_eq!(m.std, [1.0; 3]);
    }
}
