//! pycocotools' `COCOeval` for boxes, step for step: per-image greedy matching by score,
//! crowd boxes matched by intersection over the detection, area ranges that turn boxes
//! outside them into "ignore", and 101-point interpolated precision. The TinyPerson protocol
//! reuses it with its own thresholds, area ranges, maxDets and ignore absorption.

use super::data::{DetBox, GroundTruth, GtBox};
use std::collections::HashMap;

/// `np.linspace(start, stop, num)`, bit for bit.
pub fn linspace(start: f64, stop: f64, num: usize) -> Vec<f64> {
    if num == 1 {
        return vec![start];
    }
    let step = (stop - start) / (num - 1) as f64;
    let mut v: Vec<f64> = (0..num).map(|i| i as f64 * step + start).collect();
    v[num - 1] = stop;
    v
}

/// How a ground-truth box's area is measured for the area ranges.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AreaSource {
    /// The annotation's `area` field (COCO).
    Field,
    /// `w * h` of the box (TinyPerson).
    BoxWh,
}

/// Evaluation parameters.
#[derive(Clone, Debug)]
pub struct Params {
    /// IoU thresholds.
    pub iou_thrs: Vec<f64>,
    /// Recall thresholds of the interpolated precision.
    pub rec_thrs: Vec<f64>,
    /// Named area ranges `[lo, hi]`, both ends included.
    pub area_rngs: Vec<(String, [f64; 2])>,
    /// Detections kept per image (highest scores).
    pub max_dets: usize,
    /// Ground-truth area for the ranges.
    pub area_source: AreaSource,
    /// TinyPerson: an unmatched detection whose intersection over its own area with an
    /// ignored box reaches the IoU threshold is ignored rather than a false positive.
    pub iod_absorb: bool,
}

impl Params {
    /// COCO's defaults for boxes (maxDets 100).
    pub fn coco() -> Params {
        Params {
            iou_thrs: linspace(0.5, 0.95, 10),
            rec_thrs: linspace(0.0, 1.0, 101),
            area_rngs: vec![
                ("all".into(), [0.0, 1e10]),
                ("small".into(), [0.0, 32.0 * 32.0]),
                ("medium".into(), [32.0 * 32.0, 96.0 * 96.0]),
                ("large".into(), [96.0 * 96.0, 1e10]),
            ],
            max_dets: 100,
            area_source: AreaSource::Field,
            iod_absorb: false,
        }
    }
}

/// Precision/recall for one (category, area range, IoU threshold).
#[derive(Clone, Debug)]
pub struct Curve {
    /// Interpolated precision at each recall threshold.
    pub precision: Vec<f64>,
    /// Recall after each detection (score order), ignored ones included.
    pub recall: Vec<f64>,
    /// False positives so far after each detection.
    pub fp: Vec<f64>,
    /// Ground-truth boxes that count (not ignored).
    pub npig: usize,
}

/// Accumulated results: `curves[k][a][t]`, `None` where the category has no counted GT in
/// that area range (pycocotools' -1).
#[derive(Clone, Debug)]
pub struct Accumulated {
    /// Category ids, sorted.
    pub cat_ids: Vec<i64>,
    /// Number of images evaluated.
    pub num_images: usize,
    /// Curves per category, area range and IoU threshold.
    pub curves: Vec<Vec<Vec<Option<Curve>>>>,
    /// The parameters.
    pub params: Params,
}

impl Accumulated {
    /// Mean interpolated precision over categories, recall thresholds and the IoU thresholds
    /// selected by `iou` (all when `None`) in area range `area`; `None` without ground truth.
    pub fn ap(&self, area: usize, iou: Option<usize>) -> Option<f64> {
        let (mut sum, mut n) = (0.0, 0usize);
        for cat in &self.curves {
            for (t, c) in cat[area].iter().enumerate() {
                if iou.is_some_and(|i| i != t) {
                    continue;
                }
                if let Some(c) = c {
                    sum += c.precision.iter().sum::<f64>();
                    n += c.precision.len();
                }
            }
        }
        (n > 0).then(|| sum / n as f64)
    }
}

struct ImgEval {
    scores: Vec<f64>,
    /// `[t][d]`
    matched: Vec<Vec<bool>>,
    /// `[t][d]`
    ignored: Vec<Vec<bool>>,
    gt_ignored: Vec<bool>,
}

/// maskUtils' `bbIou` on `[x, y, w, h]` boxes, in the same floating-point order.
fn bb_iou(d: &[f64; 4], g: &[f64; 4], crowd: bool) -> f64 {
    let w = (d[2] + d[0]).min(g[2] + g[0]) - d[0].max(g[0]);
    if w <= 0.0 {
        return 0.0;
    }
    let h = (d[3] + d[1]).min(g[3] + g[1]) - d[1].max(g[1]);
    if h <= 0.0 {
        return 0.0;
    }
    let (da, ga) = (d[2] * d[3], g[2] * g[3]);
    let i = w * h;
    let u = if crowd { da } else { da + ga - i };
    i / u
}

/// Intersection over the detection's area.
fn iod(d: &[f64; 4], g: &[f64; 4]) -> f64 {
    bb_iou(d, g, true)
}

fn evaluate_img(gts: &[&GtBox], dts: &[&DetBox], rng: [f64; 2], p: &Params) -> Option<ImgEval> {
    if gts.is_empty() && dts.is_empty() {
        return None;
    }
    let area = |g: &GtBox| match p.area_source {
        AreaSource::Field => g.area,
        AreaSource::BoxWh => g.bbox[2] * g.bbox[3],
    };
    let ig_raw: Vec<bool> = gts
        .iter()
        .map(|g| g.is_crowd() || area(g) < rng[0] || area(g) > rng[1])
        .collect();
    let mut gind: Vec<usize> = (0..gts.len()).collect();
    gind.sort_by_key(|&i| ig_raw[i]); // stable: ignored last
    let gt: Vec<&GtBox> = gind.iter().map(|&i| gts[i]).collect();
    let gt_ig: Vec<bool> = gind.iter().map(|&i| ig_raw[i]).collect();
    let mut dind: Vec<usize> = (0..dts.len()).collect();
    dind.sort_by(|&a, &b| dts[b].score.total_cmp(&dts[a].score)); // stable
    dind.truncate(p.max_dets);
    let dt: Vec<&DetBox> = dind.iter().map(|&i| dts[i]).collect();
    let ious: Vec<Vec<f64>> = dt
        .iter()
        .map(|d| {
            gt.iter()
                .map(|g| bb_iou(&d.bbox, &g.bbox, g.is_crowd()))
                .collect()
        })
        .collect();
    let (nt, nd, ng) = (p.iou_thrs.len(), dt.len(), gt.len());
    let mut gtm = vec![vec![false; ng]; nt];
    let mut dtm = vec![vec![false; nd]; nt];
    let mut dt_ig = vec![vec![false; nd]; nt];
    for (ti, &t) in p.iou_thrs.iter().enumerate() {
        for di in 0..nd {
            let mut best = t.min(1.0 - 1e-10);
            let mut m: Option<usize> = None;
            for gi in 0..ng {
                if gtm[ti][gi] && !gt[gi].is_crowd() {
                    continue;
                }
                if m.is_some_and(|m| !gt_ig[m]) && gt_ig[gi] {
                    break;
                }
                if ious[di][gi] < best {
                    continue;
                }
                best = ious[di][gi];
                m = Some(gi);
            }
            match m {
                Some(m) => {
                    dt_ig[ti][di] = gt_ig[m];
                    dtm[ti][di] = true;
                    gtm[ti][m] = true;
                }
                None => {
                    if p.iod_absorb {
                        let thr = t.min(1.0 - 1e-10);
                        let absorbed =
                            (0..ng).any(|gi| gt_ig[gi] && iod(&dt[di].bbox, &gt[gi].bbox) >= thr);
                        dt_ig[ti][di] = absorbed;
                    }
                }
            }
        }
    }
    for (di, d) in dt.iter().enumerate() {
        let a = d.bbox[2] * d.bbox[3];
        if a < rng[0] || a > rng[1] {
            for ti in 0..nt {
                if !dtm[ti][di] {
                    dt_ig[ti][di] = true;
                }
            }
        }
    }
    Some(ImgEval {
        scores: dt.iter().map(|d| d.score).collect(),
        matched: dtm,
        ignored: dt_ig,
        gt_ignored: gt_ig,
    })
}

/// Evaluate `dets` against `gt` (pycocotools' `evaluate()` + `accumulate()`).
pub fn evaluate(gt: &GroundTruth, dets: &[DetBox], p: &Params) -> Accumulated {
    let img_ids = gt.sorted_image_ids();
    let mut cat_ids: Vec<i64> = gt.categories.iter().map(|c| c.id).collect();
    cat_ids.sort_unstable();
    let mut gts: HashMap<(i64, i64), Vec<&GtBox>> = HashMap::new();
    for g in &gt.annotations {
        gts.entry((g.image_id, g.category_id)).or_default().push(g);
    }
    let mut dts: HashMap<(i64, i64), Vec<&DetBox>> = HashMap::new();
    for d in dets {
        dts.entry((d.image_id, d.category_id)).or_default().push(d);
    }
    let empty_g: Vec<&GtBox> = vec![];
    let empty_d: Vec<&DetBox> = vec![];
    let eps = f64::EPSILON; // np.spacing(1)
    let mut curves = Vec::with_capacity(cat_ids.len());
    for &k in &cat_ids {
        let mut per_area = Vec::with_capacity(p.area_rngs.len());
        for (_, rng) in &p.area_rngs {
            let evals: Vec<ImgEval> = img_ids
                .iter()
                .filter_map(|&i| {
                    let g = gts.get(&(i, k)).unwrap_or(&empty_g);
                    let d = dts.get(&(i, k)).unwrap_or(&empty_d);
                    evaluate_img(g, d, *rng, p)
                })
                .collect();
            let mut per_t: Vec<Option<Curve>> = vec![None; p.iou_thrs.len()];
            let npig = evals
                .iter()
                .flat_map(|e| &e.gt_ignored)
                .filter(|&&ig| !ig)
                .count();
            if evals.is_empty() || npig == 0 {
                per_area.push(per_t);
                continue;
            }
            let scores: Vec<f64> = evals
                .iter()
                .flat_map(|e| e.scores.iter().copied())
                .collect();
            let mut order: Vec<usize> = (0..scores.len()).collect();
            order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a])); // stable, like mergesort
            for (ti, slot) in per_t.iter_mut().enumerate() {
                let matched: Vec<bool> = evals
                    .iter()
                    .flat_map(|e| e.matched[ti].iter().copied())
                    .collect();
                let ignored: Vec<bool> = evals
                    .iter()
                    .flat_map(|e| e.ignored[ti].iter().copied())
                    .collect();
                let (mut tp, mut fp) = (0.0f64, 0.0f64);
                let mut rc = Vec::with_capacity(order.len());
                let mut pr = Vec::with_capacity(order.len());
                let mut fps = Vec::with_capacity(order.len());
                for &i in &order {
                    if !ignored[i] {
                        if matched[i] {
                            tp += 1.0;
                        } else {
                            fp += 1.0;
                        }
                    }
                    rc.push(tp / npig as f64);
                    pr.push(tp / (fp + tp + eps));
                    fps.push(fp);
                }
                for i in (1..pr.len()).rev() {
                    if pr[i] > pr[i - 1] {
                        pr[i - 1] = pr[i];
                    }
                }
                let precision = p
                    .rec_thrs
                    .iter()
                    .map(|&r| {
                        let pi = rc.partition_point(|&x| x < r);
                        pr.get(pi).copied().unwrap_or(0.0)
                    })
                    .collect();
                // pycocotools stops filling at the first threshold past the curve; later ones
                // are past it too (rc is sorted), so the zeros above are the same.
                *slot = Some(Curve {
                    precision,
                    recall: rc,
                    fp: fps,
                    npig,
                });
            }
            per_area.push(per_t);
        }
        curves.push(per_area);
    }
    Accumulated {
        cat_ids,
        num_images: img_ids.len(),
        curves,
        params: p.clone(),
    }
}

/// COCO's headline numbers (maxDets 100).
#[derive(Clone, Debug, PartialEq)]
pub struct CocoSummary {
    /// AP at IoU .50:.95, all areas (pycocotools `stats[0]`)
    pub ap: Option<f64>,
    /// AP at IoU .50 (`stats[1]`)
    pub ap50: Option<f64>,
    /// AP at IoU .75 (`stats[2]`)
    pub ap75: Option<f64>,
    /// AP for small boxes (area < 32^2)
    pub ap_small: Option<f64>,
    /// AP for medium boxes
    pub ap_medium: Option<f64>,
    /// AP for large boxes (area > 96^2)
    pub ap_large: Option<f64>,
}

/// COCO AP, AP50, AP75 and AP per area, as pycocotools computes them.
pub fn coco_summary(gt: &GroundTruth, dets: &[DetBox]) -> (CocoSummary, Accumulated) {
    let acc = evaluate(gt, dets, &Params::coco());
    let t50 = acc.params.iou_thrs.iter().position(|&t| t == 0.5);
    let t75 = acc.params.iou_thrs.iter().position(|&t| t == 0.75);
    let s = CocoSummary {
        ap: acc.ap(0, None),
        ap50: t50.and_then(|t| acc.ap(0, Some(t))),
        ap75: t75.and_then(|t| acc.ap(0, Some(t))),
        ap_small: acc.ap(1, None),
        ap_medium: acc.ap(2, None),
        ap_large: acc.ap(3, None),
    };
    (s, acc)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::eval::data::{Category, GtImage};

    pub(crate) fn gt_of(boxes: &[(i64, [f64; 4], bool)], n_images: i64) -> GroundTruth {
        GroundTruth {
            images: (1..=n_images)
                .map(|id| GtImage {
                    id,
                    file_name: format!("{id}.jpg"),
                    width: None,
                    height: None,
                })
                .collect(),
            annotations: boxes
                .iter()
                .enumerate()
                .map(|(i, &(img, b, crowd))| GtBox {
                    id: i as i64 + 1,
                    image_id: img,
                    category_id: 1,
                    bbox: b,
                    area: b[2] * b[3],
                    iscrowd: crowd,
                    ignore: false,
                    uncertain: false,
                })
                .collect(),
            categories: vec![Category {
                id: 1,
                name: "person".into(),
            }],
        }
    }

    fn det(img: i64, b: [f64; 4], s: f64) -> DetBox {
        DetBox {
            image_id: img,
            category_id: 1,
            bbox: b,
            score: s,
        }
    }

    #[test]
    fn linspace_matches_numpy() {
        let t = linspace(0.5, 0.95, 10);
        assert_eq!(t[0], 0.5);
        assert_eq!(t[5], 0.75);
        assert_eq!(t[9], 0.95);
        assert_eq!(linspace(0.0, 1.0, 101)[7], 7.0 * 0.01);
    }

    #[test]
    fn perfect_and_empty() {
        let gt = gt_of(
            &[
                (1, [10., 10., 20., 20.], false),
                (2, [0., 0., 50., 50.], false),
            ],
            2,
        );
        let d = vec![
            det(1, [10., 10., 20., 20.], 0.9),
            det(2, [0., 0., 50., 50.], 0.8),
        ];
        let (s, _) = coco_summary(&gt, &d);
        assert!((s.ap.unwrap() - 1.0).abs() < 1e-12);
        let (s, _) = coco_summary(&gt, &[]);
        assert_eq!(s.ap, Some(0.0));
        assert_eq!(s.ap_large, None, "no large GT");
    }

    #[test]
    fn half_recall_and_false_positive_first() {
        // Two GT, one found, after a higher-scoring false positive: precision 0.5 up to
        // recall 0.5, then 0: AP50 = 0.5 * 51 / 101.
        let gt = gt_of(
            &[
                (1, [0., 0., 10., 10.], false),
                (1, [50., 50., 10., 10.], false),
            ],
            1,
        );
        let d = vec![
            det(1, [100., 100., 10., 10.], 0.9),
            det(1, [0., 0., 10., 10.], 0.5),
        ];
        let (s, _) = coco_summary(&gt, &d);
        assert!((s.ap50.unwrap() - 0.5 * 51.0 / 101.0).abs() < 1e-12);
    }

    #[test]
    fn crowd_absorbs_many_detections() {
        let gt = gt_of(
            &[
                (1, [0., 0., 10., 10.], false),
                (1, [100., 100., 100., 100.], true),
            ],
            1,
        );
        let d = vec![
            det(1, [110., 110., 10., 10.], 0.95),
            det(1, [150., 150., 10., 10.], 0.94),
            det(1, [0., 0., 10., 10.], 0.5),
        ];
        let (s, _) = coco_summary(&gt, &d);
        assert!((s.ap.unwrap() - 1.0).abs() < 1e-12);
    }
}
