//! Decoder for Ultralytics YOLOv8 exports: `[1, 4 + nc, N]`, rows cx, cy, w, h, then scores.

use super::decode_centernet::RawDet;
use ndarray::ArrayViewD;

/// Candidates whose best class score reaches `conf`.
pub fn decode_yolov8(out: ArrayViewD<f32>, conf: f32) -> Result<Vec<RawDet>, String> {
    let s = out.shape();
    if s.len() != 3 || s[0] != 1 || s[1] < 5 {
        return Err(format!("yolov8 output must be [1, 4+nc, N], got {s:?}"));
    }
    let (nc, n) = (s[1] - 4, s[2]);
    let mut dets = vec![];
    for i in 0..n {
        let (mut best, mut cls) = (f32::NEG_INFINITY, 0);
        for c in 0..nc {
            let v = out[[0, 4 + c, i]];
            if v > best {
                best = v;
                cls = c;
            }
        }
        if matches!(
            best.partial_cmp(&conf),
            None | Some(std::cmp::Ordering::Less)
        ) {
            continue;
        }
        let (cx, cy, w, h) = (
            out[[0, 0, i]],
            out[[0, 1, i]],
            out[[0, 2, i]],
            out[[0, 3, i]],
        );
        if !(cx.is_finite() && cy.is_finite() && w.is_finite() && h.is_finite()) {
            continue;
        }
        dets.push((
            [cx - w / 2.0, cy - h / 2.0, cx + w / 2.0, cy + h / 2.0],
            best,
            cls,
        ));
    }
    Ok(dets)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::{ArrayD, IxDyn};

    #[test]
    fn picks_best_class() {
        let mut o = ArrayD::<f32>::zeros(IxDyn(&[1, 6, 2]));
        for (r, v) in [10.0, 20.0, 4.0, 6.0, 0.2, 0.7].iter().enumerate() {
            o[[0, r, 0]] = *v;
        }
        o[[0, 4, 1]] = 0.1;
        let d = decode_yolov8(o.view(), 0.25).unwrap();
        assert_eq!(d, vec![([8.0, 17.0, 12.0, 23.0], 0.7, 1)]);
    }
}
