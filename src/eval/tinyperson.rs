//! TinyPerson's protocol (ucas-vg/TinyBenchmark): AP at IoU 0.25 / 0.5 / 0.75 and the
//! log-average miss rate, per size range, with maxDets 200.
//!
//! * Area ranges on the box's `w * h`, both ends included: tiny [1, 20^2], tiny1 [1, 8^2],
//!   tiny2 [8^2, 12^2], tiny3 [12^2, 20^2], small [20^2, 32^2], reasonable [32^2, inf),
//!   all [1, inf).
//! * `ignore`, `uncertain` and `iscrowd` boxes are ignore regions (matched like COCO crowds).
//! * A detection left unmatched at IoU threshold `t` is absorbed (neither true nor false
//!   positive) when its intersection over its own area with any ignored box reaches `t`.
//!   That is TinyBenchmark's IoD = iou/(1+iou)*(1+A_ign/A_det), which equals
//!   intersection / A_det. Boxes outside the area range count as ignored there, so they
//!   absorb too.
//! * Miss rate: see [`super::mr`].

use super::coco::{evaluate, linspace, AreaSource, Params};
use super::data::{DetBox, GroundTruth};
use super::mr::log_average_miss_rate;
use serde::Serialize;

/// The size ranges, in report order.
pub const AREA_RANGES: [(&str, [f64; 2]); 7] = [
    ("tiny", [1.0, 400.0]),
    ("tiny1", [1.0, 64.0]),
    ("tiny2", [64.0, 144.0]),
    ("tiny3", [144.0, 400.0]),
    ("small", [400.0, 1024.0]),
    ("reasonable", [1024.0, 1e10]),
    ("all", [1.0, 1e10]),
];

/// IoU thresholds of the protocol.
pub const IOU_THRESHOLDS: [f64; 3] = [0.25, 0.5, 0.75];

/// Detections kept per image.
pub const MAX_DETS: usize = 200;

/// The protocol's parameters.
pub fn params() -> Params {
    Params {
        iou_thrs: IOU_THRESHOLDS.to_vec(),
        rec_thrs: linspace(0.0, 1.0, 101),
        area_rngs: AREA_RANGES
            .iter()
            .map(|(n, r)| (n.to_string(), *r))
            .collect(),
        max_dets: MAX_DETS,
        area_source: AreaSource::BoxWh,
        iod_absorb: true,
    }
}

/// Metrics of one size range; `None` where the range holds no counted ground truth.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RangeMetrics {
    /// AP at IoU 0.25
    pub ap25: Option<f64>,
    /// AP at IoU 0.5
    pub ap50: Option<f64>,
    /// AP at IoU 0.75
    pub ap75: Option<f64>,
    /// log-average miss rate at IoU 0.25
    pub mr25: Option<f64>,
    /// log-average miss rate at IoU 0.5
    pub mr50: Option<f64>,
    /// log-average miss rate at IoU 0.75
    pub mr75: Option<f64>,
}

/// A precision-recall curve for plotting: interpolated precision at recall 0, 0.01, .., 1,
/// averaged over categories.
#[derive(Clone, Debug)]
pub struct PrCurve {
    /// e.g. "tiny IoU 0.50"
    pub name: String,
    /// `(recall, precision)`
    pub points: Vec<(f64, f64)>,
}

/// Results of the protocol.
#[derive(Clone, Debug)]
pub struct TinyReport {
    /// One entry per range of [`AREA_RANGES`], same order.
    pub ranges: Vec<(String, RangeMetrics)>,
    /// PR curves of the `tiny` and `all` ranges at each IoU threshold.
    pub curves: Vec<PrCurve>,
}

/// Run the protocol.
pub fn evaluate_tinyperson(gt: &GroundTruth, dets: &[DetBox]) -> TinyReport {
    let acc = evaluate(gt, dets, &params());
    let mr = |a: usize, t: usize| {
        let curves: Vec<_> = acc.curves.iter().filter_map(|k| k[a][t].as_ref()).collect();
        (!curves.is_empty()).then(|| log_average_miss_rate(&curves, acc.num_images))
    };
    let ranges = AREA_RANGES
        .iter()
        .enumerate()
        .map(|(a, (name, _))| {
            let m = RangeMetrics {
                ap25: acc.ap(a, Some(0)),
                ap50: acc.ap(a, Some(1)),
                ap75: acc.ap(a, Some(2)),
                mr25: mr(a, 0),
                mr50: mr(a, 1),
                mr75: mr(a, 2),
            };
            (name.to_string(), m)
        })
        .collect();
    let mut curves = vec![];
    for (a, (name, _)) in AREA_RANGES
        .iter()
        .enumerate()
        .filter(|(_, (n, _))| *n == "tiny" || *n == "all")
    {
        for (t, thr) in IOU_THRESHOLDS.iter().enumerate() {
            let cs: Vec<_> = acc.curves.iter().filter_map(|k| k[a][t].as_ref()).collect();
            if cs.is_empty() {
                continue;
            }
            let points = acc
                .params
                .rec_thrs
                .iter()
                .enumerate()
                .map(|(r, &rc)| {
                    (
                        rc,
                        cs.iter().map(|c| c.precision[r]).sum::<f64>() / cs.len() as f64,
                    )
                })
                .collect();
            curves.push(PrCurve {
                name: format!("{name} IoU {thr:.2}"),
                points,
            });
        }
    }
    TinyReport { ranges, curves }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::eval::data::{Category, GtBox, GtImage};

    /// (bbox, ignore, uncertain)
    fn gt(boxes: &[([f64; 4], bool, bool)]) -> GroundTruth {
        GroundTruth {
            images: vec![GtImage {
                id: 1,
                file_name: "a.jpg".into(),
                width: None,
                height: None,
            }],
            annotations: boxes
                .iter()
                .enumerate()
                .map(|(i, &(b, ignore, uncertain))| GtBox {
                    id: i as i64 + 1,
                    image_id: 1,
                    category_id: 1,
                    bbox: b,
                    area: 12345.0, // ignored by the protocol: it measures w * h
                    iscrowd: false,
                    ignore,
                    uncertain,
                })
                .collect(),
            categories: vec![Category {
                id: 1,
                name: "person".into(),
            }],
        }
    }

    fn det(b: [f64; 4], s: f64) -> DetBox {
        DetBox {
            image_id: 1,
            category_id: 1,
            bbox: b,
            score: s,
        }
    }

    /// pycocotools' precision is tp / (tp + fp + eps): a perfect AP is 1 - 2e-16.
    fn one(x: Option<f64>) -> bool {
        x.is_some_and(|v| (v - 1.0).abs() < 1e-12)
    }

    fn range<'a>(r: &'a TinyReport, name: &str) -> &'a RangeMetrics {
        &r.ranges.iter().find(|(n, _)| n == name).unwrap().1
    }

    #[test]
    fn each_range_sees_its_own_boxes() {
        // 4x4 (16 px, tiny1), 10x10 (100, tiny2), 15x15 (225, tiny3), 25x25 (625, small),
        // 40x40 (1600, reasonable). Each detected exactly.
        let sizes = [4.0, 10.0, 15.0, 25.0, 40.0];
        let boxes: Vec<_> = sizes
            .iter()
            .enumerate()
            .map(|(i, &s)| ([i as f64 * 100.0, 0.0, s, s], false, false))
            .collect();
        let g = gt(&boxes);
        let d: Vec<_> = boxes
            .iter()
            .enumerate()
            .map(|(i, b)| det(b.0, 0.9 - i as f64 * 0.1))
            .collect();
        let r = evaluate_tinyperson(&g, &d);
        for name in [
            "tiny",
            "tiny1",
            "tiny2",
            "tiny3",
            "small",
            "reasonable",
            "all",
        ] {
            let m = range(&r, name);
            assert!(one(m.ap50), "{name}");
            assert!(one(m.ap25), "{name}");
            assert!(m.mr50.unwrap() < 1e-9, "{name}: {:?}", m.mr50);
        }
        // Only the tiny2 box is found: tiny1 has AP 0, tiny2 AP 1; the misses elsewhere are
        // outside tiny2's range, so they are ignored there.
        let r = evaluate_tinyperson(&g, &[det(boxes[1].0, 0.9)]);
        assert!(one(range(&r, "tiny2").ap50));
        assert_eq!(range(&r, "tiny1").ap50, Some(0.0));
        assert!(one(range(&r, "tiny1").mr50));
        // "tiny" holds 3 boxes, 1 found: precision 1 up to recall 1/3 -> 34 of 101 points.
        assert!((range(&r, "tiny").ap50.unwrap() - 34.0 / 101.0).abs() < 1e-12);
        // A range with no GT is undefined, not zero.
        let r = evaluate_tinyperson(&gt(&[([0.0, 0.0, 5.0, 5.0], false, false)]), &[]);
        assert_eq!(range(&r, "small").ap50, None);
        assert_eq!(range(&r, "small").mr50, None);
    }

    #[test]
    fn ignore_region_absorbs_by_intersection_over_detection() {
        // One 10x10 person; one 40x40 ignore region. A high-scoring 8x8 detection inside the
        // ignore region (IoD 1, IoU 0.04) is absorbed, so AP50 stays 1.
        let g = gt(&[
            ([0.0, 0.0, 10.0, 10.0], false, false),
            ([100.0, 100.0, 40.0, 40.0], true, false),
        ]);
        let inside = det([110.0, 110.0, 8.0, 8.0], 0.95);
        let r = evaluate_tinyperson(&g, &[inside.clone(), det([0.0, 0.0, 10.0, 10.0], 0.5)]);
        assert!(one(range(&r, "all").ap50));
        // Half inside (IoD 0.5): absorbed at IoU thresholds 0.25 and 0.5, a false positive at 0.75.
        let half = det([136.0, 110.0, 8.0, 8.0], 0.95);
        let r = evaluate_tinyperson(&g, &[half, det([0.0, 0.0, 10.0, 10.0], 0.5)]);
        let all = range(&r, "all");
        assert!(one(all.ap25) && one(all.ap50));
        assert!((all.ap75.unwrap() - 0.5).abs() < 1e-12, "{:?}", all.ap75);
        // Outside (IoD 0.25 < 0.5): a false positive ranked first -> precision 1/2 at recall 1.
        let out = det([138.0, 110.0, 8.0, 8.0], 0.95);
        let r = evaluate_tinyperson(&g, &[out, det([0.0, 0.0, 10.0, 10.0], 0.5)]);
        assert!((range(&r, "all").ap50.unwrap() - 0.5).abs() < 1e-12);
        assert!(one(range(&r, "all").ap25), "IoD 0.25 >= 0.25");
    }

    #[test]
    fn uncertain_counts_as_ignore() {
        // Two 6x6 people, one uncertain. Only the certain one is counted: finding it gives AP 1,
        // detecting the uncertain one is neither a hit nor a false positive.
        let b = [
            ([0.0, 0.0, 6.0, 6.0], false, false),
            ([50.0, 0.0, 6.0, 6.0], false, true),
        ];
        let g = gt(&b);
        let r = evaluate_tinyperson(&g, &[det(b[1].0, 0.9), det(b[0].0, 0.8)]);
        assert!(one(range(&r, "tiny1").ap50));
        // Were it a normal box, it would be a miss: precision 1 up to recall 1/2.
        let g2 = gt(&[b[0], ([50.0, 0.0, 6.0, 6.0], false, false)]);
        let r = evaluate_tinyperson(&g2, &[det(b[0].0, 0.8)]);
        assert!((range(&r, "tiny1").ap50.unwrap() - 51.0 / 101.0).abs() < 1e-12);
        // A false positive ranked ahead of the hit: precision 1/2 at every recall.
        let r = evaluate_tinyperson(&g, &[det([200.0, 0.0, 6.0, 6.0], 0.9), det(b[0].0, 0.8)]);
        assert!((range(&r, "tiny1").ap50.unwrap() - 0.5).abs() < 1e-12);
    }

    #[test]
    fn box_area_decides_the_range_not_the_area_field() {
        // area field 12345 but the box is 5x5: tiny1.
        let g = gt(&[([0.0, 0.0, 5.0, 5.0], false, false)]);
        let r = evaluate_tinyperson(&g, &[det([0.0, 0.0, 5.0, 5.0], 0.9)]);
        assert!(one(range(&r, "tiny1").ap50));
        assert_eq!(range(&r, "reasonable").ap50, None);
    }
}
