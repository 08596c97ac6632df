//! Reading COCO-style ground truth (with TinyPerson's `ignore` / `uncertain` flags) and COCO
//! results files, with errors that name the file and the offending entry.

use super::EvalError;
use serde_json::Value;
use std::collections::HashSet;
use std::path::Path;

/// One image of the ground truth.
#[derive(Clone, Debug, PartialEq)]
pub struct GtImage {
    /// `id`
    pub id: i64,
    /// `file_name`
    pub file_name: String,
    /// `width`, when given
    pub width: Option<u32>,
    /// `height`, when given
    pub height: Option<u32>,
}

/// One annotated box.
#[derive(Clone, Debug, PartialEq)]
pub struct GtBox {
    /// annotation `id`
    pub id: i64,
    /// `image_id`
    pub image_id: i64,
    /// `category_id`
    pub category_id: i64,
    /// `[x, y, w, h]`
    pub bbox: [f64; 4],
    /// `area` (COCO's area ranges use this field; `w * h` when absent)
    pub area: f64,
    /// `iscrowd`
    pub iscrowd: bool,
    /// TinyPerson's `ignore`
    pub ignore: bool,
    /// TinyPerson's `uncertain`
    pub uncertain: bool,
}

impl GtBox {
    /// Crowd-like: matched by intersection over the detection, never counted as a miss.
    /// `iscrowd`, `ignore` and `uncertain` boxes all are.
    pub fn is_crowd(&self) -> bool {
        self.iscrowd || self.ignore || self.uncertain
    }
}

/// A category of the ground truth.
#[derive(Clone, Debug, PartialEq)]
pub struct Category {
    /// `id`
    pub id: i64,
    /// `name`
    pub name: String,
}

/// A ground-truth file.
#[derive(Clone, Debug, Default)]
pub struct GroundTruth {
    /// Images, in file order.
    pub images: Vec<GtImage>,
    /// Boxes, in file order.
    pub annotations: Vec<GtBox>,
    /// Categories, in file order.
    pub categories: Vec<Category>,
}

/// One detection in COCO results format.
#[derive(Clone, Debug, PartialEq)]
pub struct DetBox {
    /// image id of the ground truth
    pub image_id: i64,
    /// category id of the ground truth
    pub category_id: i64,
    /// `[x, y, w, h]`
    pub bbox: [f64; 4],
    /// confidence
    pub score: f64,
}

fn read_json(path: &Path) -> Result<Value, EvalError> {
    let text = std::fs::read(path).map_err(|e| EvalError::Io {
        path: path.to_path_buf(),
        source: e,
    })?;
    serde_json::from_slice(&text).map_err(|e| EvalError::Json {
        path: path.to_path_buf(),
        source: e,
    })
}

struct Ctx<'a> {
    path: &'a Path,
}

impl Ctx<'_> {
    fn err(&self, entry: String, msg: impl Into<String>) -> EvalError {
        EvalError::Invalid {
            path: self.path.to_path_buf(),
            entry,
            msg: msg.into(),
        }
    }

    fn id(&self, v: &Value, key: &str, entry: &str) -> Result<i64, EvalError> {
        match v.get(key) {
            None => Err(self.err(entry.into(), format!("missing \"{key}\""))),
            Some(x) => x
                .as_i64()
                .or_else(|| {
                    x.as_f64()
                        .filter(|f| f.fract() == 0.0 && f.abs() < 9e15)
                        .map(|f| f as i64)
                })
                .ok_or_else(|| {
                    self.err(
                        entry.into(),
                        format!("\"{key}\" must be an integer, got {x}"),
                    )
                }),
        }
    }

    fn bbox(&self, v: &Value, entry: &str) -> Result<[f64; 4], EvalError> {
        let b = v
            .get("bbox")
            .ok_or_else(|| self.err(entry.into(), "missing \"bbox\""))?;
        let arr = b.as_array().filter(|a| a.len() == 4).ok_or_else(|| {
            self.err(
                entry.into(),
                format!("\"bbox\" must be [x, y, w, h], got {}", short(b)),
            )
        })?;
        let mut out = [0.0; 4];
        for (o, x) in out.iter_mut().zip(arr) {
            *o = x.as_f64().filter(|f| f.is_finite()).ok_or_else(|| {
                self.err(
                    entry.into(),
                    format!("\"bbox\" must hold 4 numbers, got {}", short(b)),
                )
            })?;
        }
        if out[2] < 0.0 || out[3] < 0.0 {
            return Err(self.err(
                entry.into(),
                format!("\"bbox\" has a negative size: {}", short(b)),
            ));
        }
        Ok(out)
    }

    fn flag(&self, v: &Value, key: &str, entry: &str) -> Result<bool, EvalError> {
        match v.get(key) {
            None | Some(Value::Null) => Ok(false),
            Some(Value::Bool(b)) => Ok(*b),
            Some(x) => x.as_f64().map(|f| f != 0.0).ok_or_else(|| {
                self.err(
                    entry.into(),
                    format!("\"{key}\" must be 0/1 or a boolean, got {x}"),
                )
            }),
        }
    }
}

fn short(v: &Value) -> String {
    let s = v.to_string();
    if s.len() > 60 {
        format!(
            "{}...",
            &s[..s.char_indices().nth(57).map_or(s.len(), |(i, _)| i)]
        )
    } else {
        s
    }
}

fn entry_name(section: &str, i: usize, v: &Value) -> String {
    match v.get("id") {
        Some(id) if !id.is_null() => format!("{section}[{i}] (id {id})"),
        _ => format!("{section}[{i}]"),
    }
}

impl GroundTruth {
    /// Read and check a COCO ground-truth file: unique image, annotation and category ids;
    /// every annotation names a listed image and category; boxes are 4 finite numbers.
    pub fn load(path: &Path) -> Result<GroundTruth, EvalError> {
        let v = read_json(path)?;
        Self::from_json(&v, path)
    }

    /// As [`GroundTruth::load`], from parsed JSON (`path` is used in messages).
    pub fn from_json(v: &Value, path: &Path) -> Result<GroundTruth, EvalError> {
        let cx = Ctx { path };
        let obj = v
            .as_object()
            .ok_or_else(|| cx.err("top level".into(), "must be a JSON object"))?;
        fn section<'v>(
            obj: &'v serde_json::Map<String, Value>,
            cx: &Ctx,
            name: &str,
        ) -> Result<&'v Vec<Value>, EvalError> {
            obj.get(name)
                .ok_or_else(|| cx.err("top level".into(), format!("missing \"{name}\"")))?
                .as_array()
                .ok_or_else(|| cx.err(name.into(), "must be a list"))
        }
        let section = |name: &str| section(obj, &cx, name);
        let mut gt = GroundTruth::default();
        let mut image_ids = HashSet::new();
        for (i, im) in section("images")?.iter().enumerate() {
            let entry = entry_name("images", i, im);
            let id = cx.id(im, "id", &entry)?;
            if !image_ids.insert(id) {
                return Err(cx.err(entry, format!("duplicate image id {id}")));
            }
            let file_name = im
                .get("file_name")
                .and_then(Value::as_str)
                .ok_or_else(|| cx.err(entry.clone(), "missing \"file_name\" (a string)"))?
                .to_string();
            let dim = |k: &str| im.get(k).and_then(Value::as_u64).map(|x| x as u32);
            gt.images.push(GtImage {
                id,
                file_name,
                width: dim("width"),
                height: dim("height"),
            });
        }
        let mut cat_ids = HashSet::new();
        for (i, c) in section("categories")?.iter().enumerate() {
            let entry = entry_name("categories", i, c);
            let id = cx.id(c, "id", &entry)?;
            if !cat_ids.insert(id) {
                return Err(cx.err(entry, format!("duplicate category id {id}")));
            }
            let name = c
                .get("name")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string();
            gt.categories.push(Category { id, name });
        }
        let mut ann_ids = HashSet::new();
        for (i, a) in section("annotations")?.iter().enumerate() {
            let entry = entry_name("annotations", i, a);
            let id = cx.id(a, "id", &entry)?;
            if !ann_ids.insert(id) {
                return Err(cx.err(entry, format!("duplicate annotation id {id}")));
            }
            let image_id = cx.id(a, "image_id", &entry)?;
            if !image_ids.contains(&image_id) {
                return Err(cx.err(entry, format!("image_id {image_id} is not in \"images\"")));
            }
            let category_id = cx.id(a, "category_id", &entry)?;
            if !cat_ids.contains(&category_id) {
                return Err(cx.err(
                    entry,
                    format!("category_id {category_id} is not in \"categories\""),
                ));
            }
            let bbox = cx.bbox(a, &entry)?;
            let area = match a.get("area") {
                None | Some(Value::Null) => bbox[2] * bbox[3],
                Some(x) => x.as_f64().filter(|f| f.is_finite()).ok_or_else(|| {
                    cx.err(entry.clone(), format!("\"area\" must be a number, got {x}"))
                })?,
            };
            gt.annotations.push(GtBox {
                id,
                image_id,
                category_id,
                bbox,
                area,
                iscrowd: cx.flag(a, "iscrowd", &entry)?,
                ignore: cx.flag(a, "ignore", &entry)?,
                uncertain: cx.flag(a, "uncertain", &entry)?,
            });
        }
        Ok(gt)
    }

    /// Image ids, sorted (the order COCO accumulates in).
    pub fn sorted_image_ids(&self) -> Vec<i64> {
        let mut v: Vec<i64> = self.images.iter().map(|i| i.id).collect();
        v.sort_unstable();
        v
    }
}

/// Read a COCO results file (a list of `{image_id, category_id, bbox, score}`) and check it
/// against the ground truth: every `image_id` must be a GT image, as pycocotools requires.
/// Detections of categories the GT does not list are kept; the evaluation skips them.
pub fn load_detections(path: &Path, gt: &GroundTruth) -> Result<Vec<DetBox>, EvalError> {
    let v = read_json(path)?;
    detections_from_json(&v, path, gt)
}

/// As [`load_detections`], from parsed JSON.
pub fn detections_from_json(
    v: &Value,
    path: &Path,
    gt: &GroundTruth,
) -> Result<Vec<DetBox>, EvalError> {
    let cx = Ctx { path };
    let list = v
        .as_array()
        .ok_or_else(|| cx.err("top level".into(), "must be a list of detections"))?;
    let images: HashSet<i64> = gt.images.iter().map(|i| i.id).collect();
    let mut out = Vec::with_capacity(list.len());
    for (i, d) in list.iter().enumerate() {
        let entry = format!("[{i}]");
        let image_id = cx.id(d, "image_id", &entry)?;
        if !images.contains(&image_id) {
            return Err(cx.err(
                entry,
                format!("image_id {image_id} is not an image of the ground truth"),
            ));
        }
        let category_id = cx.id(d, "category_id", &entry)?;
        let bbox = cx.bbox(d, &entry)?;
        let score = d
            .get("score")
            .and_then(Value::as_f64)
            .filter(|s| s.is_finite())
            .ok_or_else(|| cx.err(entry.clone(), "missing or non-finite \"score\""))?;
        out.push(DetBox {
            image_id,
            category_id,
            bbox,
            score,
        });
    }
    Ok(out)
}

/// COCO results JSON for `dets`.
pub fn detections_to_json(dets: &[DetBox]) -> Value {
    Value::Array(
        dets.iter()
            .map(|d| {
                serde_json::json!({
                    "image_id": d.image_id,
                    "category_id": d.category_id,
                    "bbox": d.bbox,
                    "score": d.score,
                })
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn p() -> &'static Path {
        Path::new("gt.json")
    }

    #[test]
    fn names_the_bad_entry() {
        let v = json!({"images": [{"id": 1, "file_name": "a.jpg"}], "categories": [{"id": 1, "name": "person"}],
            "annotations": [{"id": 5, "image_id": 2, "category_id": 1, "bbox": [0, 0, 1, 1]}]});
        let e = GroundTruth::from_json(&v, p()).unwrap_err().to_string();
        assert!(
            e.contains("gt.json")
                && e.contains("annotations[0] (id 5)")
                && e.contains("image_id 2"),
            "{e}"
        );
        let v = json!({"images": [], "categories": []});
        assert!(GroundTruth::from_json(&v, p())
            .unwrap_err()
            .to_string()
            .contains("missing \"annotations\""));
        let v = json!({"images": [{"id": 1, "file_name": "a.jpg"}], "categories": [{"id": 1}],
            "annotations": [{"id": 5, "image_id": 1, "category_id": 1, "bbox": [0, 0, "x", 1]}]});
        assert!(GroundTruth::from_json(&v, p())
            .unwrap_err()
            .to_string()
            .contains("bbox"));
    }

    #[test]
    fn reads_flags_and_area() {
        let v = json!({"images": [{"id": 1, "file_name": "a.jpg", "width": 10, "height": 8}],
            "categories": [{"id": 1, "name": "person"}],
            "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [0, 0, 2, 3], "uncertain": 1}]});
        let gt = GroundTruth::from_json(&v, p()).unwrap();
        assert_eq!(gt.annotations[0].area, 6.0);
        assert!(gt.annotations[0].is_crowd());
        let d = detections_from_json(
            &json!([{"image_id": 3, "category_id": 1, "bbox": [0, 0, 1, 1], "score": 0.5}]),
            Path::new("d.json"),
            &gt,
        );
        assert!(d.unwrap_err().to_string().contains("image_id 3"));
    }
}
