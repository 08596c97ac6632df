//! Activation statistics and calibrators.
//!
//! [`Histogram`] streams values into `BINS` bins over a symmetric range `[-R, R]` that doubles
//! (merging bin pairs exactly) when a value falls outside, and tracks the exact min and max.
//! [`Method::range`] turns a histogram into a clipping range; [`QParams::from_range`] turns the
//! range into a scale and zero point.

use crate::round_half_even;
use serde::Serialize;

/// Bins per histogram (a multiple of 4, so that doubling the range merges bin pairs exactly).
pub const BINS: usize = 2048;

/// A streaming histogram of one tensor's values over the calibration set.
#[derive(Clone, Debug)]
pub struct Histogram {
    /// smallest value seen
    pub min: f32,
    /// largest value seen
    pub max: f32,
    /// the bins cover `[-half_range, half_range]`
    pub half_range: f32,
    /// counts per bin
    pub counts: Vec<u64>,
    /// values seen (NaN excluded)
    pub total: u64,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            min: f32::INFINITY,
            max: f32::NEG_INFINITY,
            half_range: 0.0,
            counts: vec![0; BINS],
            total: 0,
        }
    }
}

impl Histogram {
    /// An empty histogram.
    pub fn new() -> Histogram {
        Histogram::default()
    }

    /// Width of one bin.
    pub fn bin_width(&self) -> f32 {
        2.0 * self.half_range / BINS as f32
    }

    /// Centre of bin `i`.
    pub fn center(&self, i: usize) -> f32 {
        -self.half_range + (i as f32 + 0.5) * self.bin_width()
    }

    fn grow_to(&mut self, absmax: f32) {
        if self.half_range == 0.0 {
            // A little headroom, so that the extreme value does not sit on the upper edge.
            self.half_range = if absmax > 0.0 {
                absmax * (1.0 + 1.0 / 1024.0)
            } else {
                1e-6
            };
        }
        while self.half_range <= absmax {
            let mut merged = vec![0u64; BINS];
            for (i, c) in self.counts.iter().enumerate() {
                merged[BINS / 4 + i / 2] += c;
            }
            self.counts = merged;
            self.half_range *= 2.0;
        }
    }

    /// Add values (NaN and infinities are skipped).
    pub fn add<'a>(&mut self, values: impl IntoIterator<Item = &'a f32> + Clone) {
        let (mut lo, mut hi) = (f32::INFINITY, f32::NEG_INFINITY);
        for &v in values.clone() {
            if v.is_finite() {
                lo = lo.min(v);
                hi = hi.max(v);
            }
        }
        if lo > hi {
            return;
        }
        self.min = self.min.min(lo);
        self.max = self.max.max(hi);
        self.grow_to(lo.abs().max(hi.abs()));
        let r = self.half_range;
        let k = BINS as f32 / (2.0 * r);
        for &v in values {
            if v.is_finite() {
                let b = ((v + r) * k) as isize;
                self.counts[b.clamp(0, BINS as isize - 1) as usize] += 1;
                self.total += 1;
            }
        }
    }
}

/// How a clipping range is chosen from a histogram.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub enum Method {
    /// The exact min and max.
    MinMax,
    /// The given percentile of the values at each end (e.g. 99.99).
    Percentile(f64),
    /// The symmetric threshold minimising the KL divergence between the float and the
    /// quantized distribution (TensorRT's entropy calibration).
    Entropy,
    /// The range (min, max scaled by a common factor) minimising the expected squared
    /// quantization error.
    Mse,
}

impl std::str::FromStr for Method {
    type Err = String;
    fn from_str(s: &str) -> Result<Method, String> {
        match s {
            "minmax" => Ok(Method::MinMax),
            "percentile" => Ok(Method::Percentile(99.99)),
            "entropy" | "kl" => Ok(Method::Entropy),
            "mse" => Ok(Method::Mse),
            _ => Err(format!(
                "unknown calibration method '{s}' (minmax, percentile, entropy, mse)"
            )),
        }
    }
}

impl Method {
    /// The name used on the command line.
    pub fn name(&self) -> &'static str {
        match self {
            Method::MinMax => "minmax",
            Method::Percentile(_) => "percentile",
            Method::Entropy => "entropy",
            Method::Mse => "mse",
        }
    }

    /// The clipping range `(lo, hi)` for the histogram, for a quantizer with `signed` output.
    /// Always inside `[min, max]`; `(0, 0)` for an empty histogram.
    pub fn range(&self, h: &Histogram, signed: bool) -> (f32, f32) {
        if h.total == 0 {
            return (0.0, 0.0);
        }
        let (lo, hi) = match self {
            Method::MinMax => (h.min, h.max),
            Method::Percentile(p) => percentile_range(h, *p),
            Method::Entropy => {
                let levels = if h.min >= 0.0 && !signed { 256 } else { 128 };
                let t = entropy_threshold(h, levels);
                (h.min.max(-t), h.max.min(t))
            }
            Method::Mse => mse_range(h, signed),
        };
        (lo.max(h.min), hi.min(h.max))
    }
}

fn percentile_range(h: &Histogram, p: f64) -> (f32, f32) {
    let tail = ((1.0 - p / 100.0) * h.total as f64).max(0.0);
    let w = h.bin_width();
    let mut acc = 0u64;
    let mut lo = h.min;
    for (i, &c) in h.counts.iter().enumerate() {
        acc += c;
        if acc as f64 > tail {
            lo = -h.half_range + i as f32 * w;
            break;
        }
    }
    acc = 0;
    let mut hi = h.max;
    for (i, &c) in h.counts.iter().enumerate().rev() {
        acc += c;
        if acc as f64 > tail {
            hi = -h.half_range + (i + 1) as f32 * w;
            break;
        }
    }
    (lo, hi)
}

/// The threshold `T` (on |x|) minimising KL(P || Q), with `levels` quantization levels in [0, T].
pub fn entropy_threshold(h: &Histogram, levels: usize) -> f32 {
    let half = BINS / 2;
    // Histogram of |x| over [0, R].
    let abs: Vec<f64> = (0..half)
        .map(|j| (h.counts[half + j] + h.counts[half - 1 - j]) as f64)
        .collect();
    let w = h.bin_width();
    let last = abs
        .iter()
        .rposition(|&c| c > 0.0)
        .map(|i| i + 1)
        .unwrap_or(half);
    if last <= levels {
        return last as f32 * w;
    }
    let mut best = (f64::INFINITY, last);
    for i in levels..=last {
        // Reference distribution: the first i bins, outliers folded into the last one.
        let mut p: Vec<f64> = abs[..i].to_vec();
        p[i - 1] += abs[i..].iter().sum::<f64>();
        // Candidate: the i bins merged into `levels` groups, spread back over non-empty bins.
        let mut q = vec![0.0f64; i];
        for l in 0..levels {
            let (a, b) = (
                l * i / levels,
                ((l + 1) * i / levels).max(l * i / levels + 1).min(i),
            );
            let sum: f64 = abs[a..b].iter().sum();
            let nonzero = abs[a..b].iter().filter(|&&c| c > 0.0).count();
            if nonzero > 0 {
                for k in a..b {
                    if abs[k] > 0.0 {
                        q[k] = sum / nonzero as f64;
                    }
                }
            }
        }
        let (ps, qs): (f64, f64) = (p.iter().sum(), q.iter().sum());
        if ps == 0.0 || qs == 0.0 {
            continue;
        }
        let mut kl = 0.0;
        for k in 0..i {
            if p[k] > 0.0 {
                let pk = p[k] / ps;
                let qk = if q[k] > 0.0 { q[k] / qs } else { 1e-12 };
                kl += pk * (pk / qk).ln();
            }
        }
        if kl < best.0 {
            best = (kl, i);
        }
    }
    best.1 as f32 * w
}

fn mse_range(h: &Histogram, signed: bool) -> (f32, f32) {
    let (lo0, hi0) = (h.min.min(0.0), h.max.max(0.0));
    let mut best = (f64::INFINITY, (h.min, h.max));
    for step in 1..=100 {
        let a = step as f32 / 100.0;
        let (lo, hi) = (lo0 * a, hi0 * a);
        let q = QParams::from_range(lo, hi, signed);
        let mut err = 0.0f64;
        for (i, &c) in h.counts.iter().enumerate() {
            if c > 0 {
                let x = h.center(i);
                let d = (x - q.fake(x)) as f64;
                err += c as f64 * d * d;
            }
        }
        if err < best.0 {
            best = (err, (lo, hi));
        }
    }
    best.1
}

/// Per-tensor affine quantization parameters of an activation.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct QParams {
    /// real value of one step
    pub scale: f32,
    /// integer that represents 0.0
    pub zero_point: i32,
    /// int8 (true) or uint8 (false)
    pub signed: bool,
}

impl QParams {
    /// Asymmetric parameters covering `[lo, hi]` (widened to include 0, as zero must be exact).
    pub fn from_range(lo: f32, hi: f32, signed: bool) -> QParams {
        let (lo, hi) = (lo.min(0.0), hi.max(0.0));
        let mut scale = (hi - lo) / 255.0;
        if !(scale.is_finite() && scale > 0.0) {
            scale = 1.0;
        }
        let qmin = if signed { -128.0 } else { 0.0 };
        let zero_point = round_half_even(qmin - lo / scale).clamp(qmin, qmin + 255.0) as i32;
        QParams {
            scale,
            zero_point,
            signed,
        }
    }

    /// Smallest integer.
    pub fn qmin(&self) -> i32 {
        if self.signed {
            -128
        } else {
            0
        }
    }

    /// Largest integer.
    pub fn qmax(&self) -> i32 {
        self.qmin() + 255
    }

    /// ONNX QuantizeLinear of one value.
    pub fn quantize(&self, x: f32) -> i32 {
        let q = round_half_even(x / self.scale) + self.zero_point as f32;
        q.clamp(self.qmin() as f32, self.qmax() as f32) as i32
    }

    /// QuantizeLinear then DequantizeLinear.
    pub fn fake(&self, x: f32) -> f32 {
        (self.quantize(x) - self.zero_point) as f32 * self.scale
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Deterministic pseudo-random numbers (xorshift), uniform in [0, 1).
    fn uniform(n: usize, seed: u64) -> Vec<f32> {
        let mut s = seed;
        (0..n)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                (s >> 40) as f32 / (1u64 << 24) as f32
            })
            .collect()
    }

    /// Standard normal samples (Box-Muller).
    fn normal(n: usize, seed: u64) -> Vec<f32> {
        let u = uniform(2 * n, seed);
        (0..n)
            .map(|i| {
                let (a, b) = (u[2 * i].max(1e-7), u[2 * i + 1]);
                (-2.0 * a.ln()).sqrt() * (2.0 * std::f32::consts::PI * b).cos()
            })
            .collect()
    }

    #[test]
    fn histogram_growth_keeps_counts_and_extremes() {
        let mut h = Histogram::new();
        h.add(&[0.5f32, -0.25]);
        h.add(&[3.0f32, f32::NAN, -7.5]);
        assert_eq!(h.total, 4);
        assert_eq!((h.min, h.max), (-7.5, 3.0));
        assert!(h.half_range >= 7.5);
        assert_eq!(h.counts.iter().sum::<u64>(), 4);
        // Each value sits in the bin that covers it.
        for v in [0.5f32, -0.25, 3.0, -7.5] {
            let b = (((v + h.half_range) / h.bin_width()) as usize).min(BINS - 1);
            assert!(h.counts[b] > 0, "value {v} not in its bin");
        }
    }

    #[test]
    fn minmax_is_exact() {
        let mut h = Histogram::new();
        let x: Vec<f32> = uniform(10_000, 1).iter().map(|v| v * 4.0 - 1.0).collect();
        h.add(&x);
        let (lo, hi) = Method::MinMax.range(&h, false);
        let (mn, mx) = x
            .iter()
            .fold((f32::MAX, f32::MIN), |(a, b), &v| (a.min(v), b.max(v)));
        assert_eq!((lo, hi), (mn, mx));
    }

    #[test]
    fn percentile_of_uniform() {
        let mut h = Histogram::new();
        let x: Vec<f32> = uniform(200_000, 2).iter().map(|v| v * 2.0 - 1.0).collect();
        h.add(&x);
        let (lo, hi) = Method::Percentile(99.0).range(&h, true);
        // 1% tails of U(-1, 1) end at -0.98 and 0.98; bins are 2/2048 wide.
        assert!((lo + 0.98).abs() < 0.01, "lo {lo}");
        assert!((hi - 0.98).abs() < 0.01, "hi {hi}");
    }

    #[test]
    fn entropy_clips_gaussian_outliers() {
        let mut h = Histogram::new();
        let mut x = normal(200_000, 3);
        x.push(40.0); // one far outlier
        h.add(&x);
        let (lo, hi) = Method::Entropy.range(&h, true);
        // KL calibration of N(0,1) with 128 levels clips around 3-5 sigma, far from the outlier.
        assert!(hi > 2.5 && hi < 8.0, "hi {hi}");
        assert!(lo < -2.5 && lo > -8.0, "lo {lo}");
        let (_, mx) = Method::MinMax.range(&h, true);
        assert_eq!(mx, 40.0);
    }

    #[test]
    fn mse_never_loses_to_minmax_and_wins_on_heavy_tails() {
        let err = |x: &[f32], (lo, hi): (f32, f32)| {
            let q = QParams::from_range(lo, hi, false);
            x.iter()
                .map(|&v| ((v - q.fake(v)) as f64).powi(2))
                .sum::<f64>()
        };
        // Gaussian with two far outliers: clipping them costs more than it gains here.
        let mut x = normal(100_000, 4);
        x.extend([30.0, -25.0]);
        // Cubed Gaussian: a heavy tail, where clipping pays.
        let y: Vec<f32> = normal(100_000, 5).iter().map(|v| v * v * v).collect();
        for (data, must_win) in [(&x, false), (&y, true)] {
            let mut h = Histogram::new();
            h.add(data);
            let mse = err(data, Method::Mse.range(&h, false));
            let mm = err(data, Method::MinMax.range(&h, false));
            assert!(mse <= mm * 1.01, "mse {mse} minmax {mm}");
            if must_win {
                assert!(mse < 0.95 * mm, "mse {mse} minmax {mm}");
            }
        }
    }

    #[test]
    fn qparams_uint8_and_int8() {
        let q = QParams::from_range(0.0, 1.0, false);
        assert_eq!(q.zero_point, 0);
        assert!((q.scale - 1.0 / 255.0).abs() < 1e-9);
        assert_eq!(q.quantize(1.0), 255);
        assert_eq!(q.quantize(2.0), 255);
        assert_eq!(q.fake(0.0), 0.0);
        let q = QParams::from_range(-1.0, 3.0, true);
        assert_eq!(q.fake(0.0), 0.0);
        assert!((q.fake(2.0) - 2.0).abs() <= q.scale / 2.0 + 1e-6);
        // Round half to even: 2.5 steps -> 2, 3.5 -> 4.
        let q = QParams {
            scale: 1.0,
            zero_point: 0,
            signed: true,
        };
        assert_eq!(q.quantize(2.5), 2);
        assert_eq!(q.quantize(3.5), 4);
        assert_eq!(q.quantize(-2.5), -2);
        // Degenerate ranges give a usable scale.
        let q = QParams::from_range(0.0, 0.0, false);
        assert_eq!(q.scale, 1.0);
    }

    #[test]
    fn method_parses() {
        assert_eq!("entropy".parse::<Method>().unwrap(), Method::Entropy);
        assert!("foo".parse::<Method>().is_err());
    }
}
