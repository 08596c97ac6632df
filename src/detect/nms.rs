//! Suppression of overlapping boxes: class-aware NMS on IoU, or greedy non-maximum merging
//! on intersection-over-smaller (SAHI's default for tiled inference).

use super::{area, intersection, iou, Detection};

/// How overlapping detections are resolved.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MergeKind {
    /// Keep the best, drop boxes with IoU above the threshold.
    NmsIou,
    /// Keep the best, merge (union box) boxes whose intersection over the smaller box is
    /// above the threshold.
    NmmIos,
}

/// Class-aware suppression; returns the kept detections sorted by score (highest first).
pub fn nms(mut dets: Vec<Detection>, threshold: f32, kind: MergeKind) -> Vec<Detection> {
    dets.sort_by(|a, b| b.score.total_cmp(&a.score));
    let mut keep: Vec<Detection> = Vec::with_capacity(dets.len());
    'next: for d in dets {
        for k in keep.iter_mut() {
            if k.class_id != d.class_id {
                continue;
            }
            match kind {
                MergeKind::NmsIou => {
                    if iou(&k.bbox, &d.bbox) > threshold {
                        continue 'next;
                    }
                }
                MergeKind::NmmIos => {
                    let smaller = area(&k.bbox).min(area(&d.bbox));
                    if smaller > 0.0 && intersection(&k.bbox, &d.bbox) / smaller > threshold {
                        k.bbox = [
                            k.bbox[0].min(d.bbox[0]),
                            k.bbox[1].min(d.bbox[1]),
                            k.bbox[2].max(d.bbox[2]),
                            k.bbox[3].max(d.bbox[3]),
                        ];
                        continue 'next;
                    }
                }
            }
        }
        keep.push(d);
    }
    keep
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(b: [f32; 4], s: f32, c: usize) -> Detection {
        Detection {
            bbox: b,
            score: s,
            label: String::new(),
            class_id: c,
        }
    }

    #[test]
    fn suppresses_same_class_only() {
        let v = vec![
            d([0., 0., 10., 10.], 0.9, 0),
            d([1., 1., 11., 11.], 0.8, 0),
            d([1., 1., 11., 11.], 0.7, 1),
            d([20., 20., 30., 30.], 0.6, 0),
        ];
        let k = nms(v, 0.5, MergeKind::NmsIou);
        assert_eq!(k.len(), 3);
        assert_eq!(k[0].score, 0.9);
        assert_eq!(k[1].class_id, 1);
    }

    #[test]
    fn nmm_merges_contained_boxes() {
        // intersection over the smaller box: 30 / 50 = 0.6 > 0.5
        let v = vec![d([0., 0., 10., 10.], 0.9, 0), d([7., 0., 12., 10.], 0.5, 0)];
        let k = nms(v, 0.5, MergeKind::NmmIos);
        assert_eq!(k.len(), 1);
        assert_eq!(k[0].bbox, [0., 0., 12., 10.]);
    }
}
