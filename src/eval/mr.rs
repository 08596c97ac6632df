//! Log-average miss rate (Dollár et al.; TinyBenchmark's `eval_MR`): the miss rate read off
//! the miss-rate / false-positives-per-image curve at 9 FPPI values spaced evenly in log
//! space over [0.01, 1], combined by the geometric mean.
//!
//! At each reference FPPI `f` the curve's point is the last detection (score order) with
//! FPPI <= f; with no such point the miss rate is 1. Miss rates are floored at 1e-10 before
//! the logarithm. With several categories the geometric mean runs over all of their points.

use super::coco::Curve;

/// The 9 reference FPPI values: 10^-2, 10^-1.75, .., 10^0.
pub fn fppi_points() -> [f64; 9] {
    std::array::from_fn(|i| 10f64.powf(-2.0 + 0.25 * i as f64))
}

/// Miss rate at each reference FPPI of one curve.
pub fn miss_rates(c: &Curve, num_images: usize) -> [f64; 9] {
    let n = num_images.max(1) as f64;
    fppi_points().map(|f| {
        // Last index with fp / n <= f (FPPI is non-decreasing along the curve).
        let k = c.fp.partition_point(|&fp| fp / n <= f);
        if k == 0 {
            1.0
        } else {
            1.0 - c.recall[k - 1]
        }
    })
}

/// The log-average miss rate over the curves (one per category).
pub fn log_average_miss_rate(curves: &[&Curve], num_images: usize) -> f64 {
    let logs: Vec<f64> = curves
        .iter()
        .flat_map(|c| miss_rates(c, num_images))
        .map(|m| m.max(1e-10).ln())
        .collect();
    (logs.iter().sum::<f64>() / logs.len().max(1) as f64).exp()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn curve(fp: &[f64], recall: &[f64]) -> Curve {
        Curve {
            precision: vec![],
            recall: recall.to_vec(),
            fp: fp.to_vec(),
            npig: 4,
        }
    }

    #[test]
    fn reference_points() {
        let p = fppi_points();
        assert!(
            (p[0] - 0.01).abs() < 1e-15 && (p[4] - 0.1).abs() < 1e-15 && (p[8] - 1.0).abs() < 1e-15
        );
    }

    #[test]
    fn hand_computed() {
        // 10 images, 4 GT. Detections: hit, hit, fp (FPPI 0.1), hit, fp (0.2), fp (0.3).
        // FPPI 0.01..0.0562 (4 points): recall 2/4 -> miss 0.5; 0.1, 0.1778: recall 3/4 ->
        // 0.25; 0.3162..1 (3 points): 0.25 (no further hits).
        let c = curve(
            &[0., 0., 1., 1., 2., 3.],
            &[0.25, 0.5, 0.5, 0.75, 0.75, 0.75],
        );
        let m = miss_rates(&c, 10);
        assert_eq!(m, [0.5, 0.5, 0.5, 0.5, 0.25, 0.25, 0.25, 0.25, 0.25]);
        let want = (4.0 * 0.5f64.ln() + 5.0 * 0.25f64.ln()) / 9.0;
        assert!((log_average_miss_rate(&[&c], 10) - want.exp()).abs() < 1e-12);
        // A false positive first on 1 image: FPPI 1 at once -> miss 1 below FPPI 1.
        let c = curve(&[1., 1.], &[0.0, 0.25]);
        assert_eq!(miss_rates(&c, 1), [1., 1., 1., 1., 1., 1., 1., 1., 0.75]);
        // No detections at all.
        assert_eq!(log_average_miss_rate(&[&curve(&[], &[])], 5), 1.0);
    }
}
