//! Symmetric int8 weights (per output channel or per tensor) and int32 biases.

use crate::round_half_even;
use ndarray::{ArrayD, ArrayViewD, Axis};

/// Weight integers are kept in [-127, 127] so that the grid is symmetric around 0.
pub const WMAX: f32 = 127.0;

/// A weight tensor quantized to int8.
#[derive(Clone, Debug)]
pub struct QuantizedWeight {
    /// the integers, same shape as the float weights
    pub q: ArrayD<i8>,
    /// one scale per slice along `axis`, or one scale
    pub scales: Vec<f32>,
    /// the channel axis (None: per tensor)
    pub axis: Option<usize>,
}

fn scale_of(absmax: f32) -> f32 {
    if absmax > 0.0 && absmax.is_finite() {
        absmax / WMAX
    } else {
        1.0 / WMAX
    }
}

/// Quantize `w` symmetrically: one scale per slice along `axis` (`Some(0)` for Conv's output
/// channels, depthwise included), or one scale for the tensor.
pub fn quantize_weight(w: ArrayViewD<f32>, axis: Option<usize>) -> QuantizedWeight {
    let scales: Vec<f32> = match axis {
        Some(ax) => w
            .axis_iter(Axis(ax))
            .map(|s| scale_of(s.iter().fold(0.0f32, |m, v| m.max(v.abs()))))
            .collect(),
        None => vec![scale_of(w.iter().fold(0.0f32, |m, v| m.max(v.abs())))],
    };
    let mut q = ArrayD::<i8>::zeros(w.raw_dim());
    match axis {
        Some(ax) => {
            for ((mut qs, ws), &s) in q
                .axis_iter_mut(Axis(ax))
                .zip(w.axis_iter(Axis(ax)))
                .zip(&scales)
            {
                qs.zip_mut_with(&ws, |o, &v| {
                    *o = round_half_even(v / s).clamp(-WMAX, WMAX) as i8
                });
            }
        }
        None => q.zip_mut_with(&w, |o, &v| {
            *o = round_half_even(v / scales[0]).clamp(-WMAX, WMAX) as i8
        }),
    }
    QuantizedWeight { q, scales, axis }
}

impl QuantizedWeight {
    /// The float weights the integers stand for.
    pub fn dequantize(&self) -> ArrayD<f32> {
        let mut out = self.q.mapv(|v| v as f32);
        match self.axis {
            Some(ax) => {
                for (mut s, &sc) in out.axis_iter_mut(Axis(ax)).zip(&self.scales) {
                    s.mapv_inplace(|v| v * sc);
                }
            }
            None => out.mapv_inplace(|v| v * self.scales[0]),
        }
        out
    }

    /// The scale of output channel `c`.
    pub fn scale(&self, c: usize) -> f32 {
        if self.scales.len() == 1 {
            self.scales[0]
        } else {
            self.scales[c]
        }
    }
}

/// Quantize a bias to int32 with scale `x_scale * w_scale[c]` per channel; returns the
/// integers and the scales. Values beyond the int32 range saturate.
pub fn quantize_bias(b: &[f32], x_scale: f32, w: &QuantizedWeight) -> (Vec<i32>, Vec<f32>) {
    let scales: Vec<f32> = (0..b.len()).map(|c| x_scale * w.scale(c)).collect();
    let q = b
        .iter()
        .zip(&scales)
        .map(|(&v, &s)| round_half_even(v / s).clamp(i32::MIN as f32, i32::MAX as f32) as i32)
        .collect();
    (q, scales)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::IxDyn;

    fn weights(shape: &[usize], seed: u32) -> ArrayD<f32> {
        let n: usize = shape.iter().product();
        let mut s = seed;
        let data: Vec<f32> = (0..n)
            .map(|i| {
                s = s.wrapping_mul(1664525).wrapping_add(1013904223);
                // Channels with very different ranges, as in depthwise convs after BN folding.
                let ch = i / (n / shape[0]);
                ((s >> 8) as f32 / (1u32 << 24) as f32 - 0.5) * (1.0 + 10.0 * ch as f32)
            })
            .collect();
        ArrayD::from_shape_vec(IxDyn(shape), data).unwrap()
    }

    #[test]
    fn per_channel_roundtrip_within_half_step() {
        for shape in [vec![8, 4, 3, 3], vec![16, 1, 3, 3], vec![5, 7]] {
            let w = weights(&shape, 7);
            let q = quantize_weight(w.view(), Some(0));
            assert_eq!(q.scales.len(), shape[0]);
            let d = q.dequantize();
            for (c, (wc, dc)) in w.axis_iter(Axis(0)).zip(d.axis_iter(Axis(0))).enumerate() {
                let s = q.scales[c];
                let err = wc
                    .iter()
                    .zip(dc.iter())
                    .map(|(a, b)| (a - b).abs())
                    .fold(0.0f32, f32::max);
                assert!(
                    err <= s / 2.0 + 1e-6,
                    "channel {c}: err {err} > half step {}",
                    s / 2.0
                );
                // The largest magnitude maps to +-127 exactly.
                let absmax = wc.iter().fold(0.0f32, |m, v| m.max(v.abs()));
                assert!((absmax / s - 127.0).abs() < 1e-3);
            }
        }
    }

    #[test]
    fn per_channel_beats_per_tensor_on_uneven_channels() {
        let w = weights(&[16, 1, 3, 3], 11);
        let e = |q: &QuantizedWeight| {
            let d = q.dequantize();
            // error of the smallest channel relative to its range
            let (w0, d0) = (w.index_axis(Axis(0), 0), d.index_axis(Axis(0), 0));
            w0.iter()
                .zip(d0.iter())
                .map(|(a, b)| (a - b).powi(2))
                .sum::<f32>()
        };
        let pc = e(&quantize_weight(w.view(), Some(0)));
        let pt = e(&quantize_weight(w.view(), None));
        assert!(pc * 10.0 < pt, "per-channel {pc} per-tensor {pt}");
    }

    #[test]
    fn zero_channel_and_bias() {
        let mut w = weights(&[3, 2], 5);
        w.index_axis_mut(Axis(0), 1).fill(0.0);
        let q = quantize_weight(w.view(), Some(0));
        assert!(q.scales.iter().all(|s| *s > 0.0));
        assert!(q
            .dequantize()
            .index_axis(Axis(0), 1)
            .iter()
            .all(|v| *v == 0.0));
        let (bq, bs) = quantize_bias(&[0.5, -1.0, 2.0], 0.1, &q);
        for ((&b, &qv), &s) in [0.5f32, -1.0, 2.0].iter().zip(&bq).zip(&bs) {
            assert!((qv as f32 * s - b).abs() <= s / 2.0 + 1e-6);
        }
    }
}
