//! Decoder for speck's CenterNet-style head (see `docs/model-contract.md`).

use ndarray::ArrayViewD;

/// A raw detection in model-input pixels: (box, score, class).
pub type RawDet = ([f32; 4], f32, usize);

/// Peaks of `heatmap [1,nc,H,W]` that reach `conf` and are the maximum of their 3x3
/// neighbourhood, turned into boxes with `boxes [1,4,H,W]` = (dx, dy, w, h).
pub fn decode_centernet(
    heatmap: ArrayViewD<f32>,
    boxes: ArrayViewD<f32>,
    stride: f32,
    conf: f32,
) -> Result<Vec<RawDet>, String> {
    let hs = heatmap.shape();
    let bs = boxes.shape();
    if hs.len() != 4
        || bs.len() != 4
        || bs[1] != 4
        || hs[0] != 1
        || bs[0] != 1
        || hs[2..] != bs[2..]
    {
        return Err(format!("speck_centernet outputs must be heatmap [1,nc,H,W] and box [1,4,H,W], got {hs:?} and {bs:?}"));
    }
    let (nc, h, w) = (hs[1], hs[2], hs[3]);
    let mut out = vec![];
    for c in 0..nc {
        for y in 0..h {
            for x in 0..w {
                let s = heatmap[[0, c, y, x]];
                // `!(s >= conf)` also rejects NaN.
                if matches!(s.partial_cmp(&conf), None | Some(std::cmp::Ordering::Less)) {
                    continue;
                }
                let is_peak = (y.saturating_sub(1)..(y + 2).min(h)).all(|yy| {
                    (x.saturating_sub(1)..(x + 2).min(w)).all(|xx| heatmap[[0, c, yy, xx]] <= s)
                });
                if !is_peak {
                    continue;
                }
                let (dx, dy) = (boxes[[0, 0, y, x]], boxes[[0, 1, y, x]]);
                let (bw, bh) = (boxes[[0, 2, y, x]].max(0.0), boxes[[0, 3, y, x]].max(0.0));
                let cx = (x as f32 + dx) * stride;
                let cy = (y as f32 + dy) * stride;
                if !(cx.is_finite() && cy.is_finite() && bw.is_finite() && bh.is_finite()) {
                    continue;
                }
                out.push((
                    [cx - bw / 2.0, cy - bh / 2.0, cx + bw / 2.0, cy + bh / 2.0],
                    s,
                    c,
                ));
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::{ArrayD, IxDyn};

    #[test]
    fn finds_one_peak_per_object() {
        let mut hm = ArrayD::<f32>::zeros(IxDyn(&[1, 1, 8, 8]));
        hm[[0, 0, 2, 3]] = 0.9;
        hm[[0, 0, 2, 4]] = 0.6; // neighbour of the peak, suppressed
        hm[[0, 0, 6, 6]] = 0.5;
        let mut bx = ArrayD::<f32>::zeros(IxDyn(&[1, 4, 8, 8]));
        bx[[0, 0, 2, 3]] = 0.5;
        bx[[0, 1, 2, 3]] = 0.5;
        bx[[0, 2, 2, 3]] = 8.0;
        bx[[0, 3, 2, 3]] = 12.0;
        let d = decode_centernet(hm.view(), bx.view(), 4.0, 0.3).unwrap();
        assert_eq!(d.len(), 2);
        assert_eq!(d[0].0, [14.0 - 4.0, 10.0 - 6.0, 14.0 + 4.0, 10.0 + 6.0]);
        assert!(decode_centernet(hm.view(), hm.view(), 4.0, 0.3).is_err());
    }
}
