//! Pooling: MaxPool, AveragePool, GlobalAveragePool, GlobalMaxPool (NCHW).

use super::{OpError, OpResult};
use ndarray::{ArrayViewD, ArrayViewMutD, Ix4};

/// Pooling kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum PoolKind {
    /// maximum
    Max,
    /// average
    Average,
}

/// Attributes of MaxPool / AveragePool over the two spatial axes.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Pool {
    /// max or average
    pub kind: PoolKind,
    /// (kh, kw)
    pub kernel: [usize; 2],
    /// (sh, sw)
    pub strides: [usize; 2],
    /// (top, left, bottom, right), auto_pad resolved at import
    pub pads: [usize; 4],
    /// (dh, dw)
    pub dilations: [usize; 2],
    /// ceil_mode
    pub ceil_mode: bool,
    /// AveragePool: padded cells count in the divisor
    pub count_include_pad: bool,
}

/// `[N,C,H,W] -> [N,C,1,1]`.
pub fn global_pool_shape(x: &[usize]) -> OpResult<Vec<usize>> {
    if x.len() < 3 {
        return Err(OpError::Shape(format!(
            "global pool expects [N,C,spatial...], got {x:?}"
        )));
    }
    let mut out = x.to_vec();
    for d in &mut out[2..] {
        *d = 1;
    }
    Ok(out)
}

/// Sum in 16 interleaved lanes, then the lanes pairwise: vectorises (a single running sum is
/// one dependent add per value) and is more accurate than it.
fn sum_lanes(x: &[f32]) -> f32 {
    let mut lanes = [0.0f32; 16];
    let chunks = x.chunks_exact(16);
    let tail: f32 = chunks.remainder().iter().sum();
    for c in chunks {
        for (l, &v) in lanes.iter_mut().zip(c) {
            *l += v;
        }
    }
    let mut w = 16;
    while w > 1 {
        w /= 2;
        for i in 0..w {
            lanes[i] += lanes[i + w];
        }
    }
    lanes[0] + tail
}

/// Reference global average (`max == false`) or max pool.
pub fn run_global_pool(max: bool, x: &ArrayViewD<f32>, y: &mut ArrayViewMutD<f32>) -> OpResult<()> {
    let out = global_pool_shape(x.shape())?;
    if y.shape() != out.as_slice() {
        return Err(OpError::Shape(format!(
            "global pool output is {:?}, expected {out:?} for x {:?}",
            y.shape(),
            x.shape()
        )));
    }
    let (n, c) = (x.shape()[0], x.shape()[1]);
    let spatial: usize = x.shape()[2..].iter().product();
    // Contiguous planes (always, inside a plan): one pass over the slice, without a view per
    // channel (which cost more than a 7x7 plane's sum: 26 us for 960 channels).
    if let (Some(xs), Some(ys), false, true) = (x.as_slice(), y.as_slice_mut(), max, spatial > 0) {
        for (yv, plane) in ys.iter_mut().zip(xs.chunks_exact(spatial)) {
            *yv = sum_lanes(plane) / spatial as f32;
        }
        return Ok(());
    }
    let x3 = x
        .to_shape((n, c, spatial))
        .map_err(|e| OpError::Shape(e.to_string()))?;
    let mut yv = y
        .view_mut()
        .into_shape_with_order((n, c))
        .map_err(|e| OpError::Shape(e.to_string()))?;
    for ni in 0..n {
        for ci in 0..c {
            let plane = x3.slice(ndarray::s![ni, ci, ..]);
            yv[[ni, ci]] = if max {
                plane.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b))
            } else if spatial == 0 {
                0.0
            } else {
                match plane.as_slice() {
                    Some(p) => sum_lanes(p) / spatial as f32,
                    None => plane.iter().sum::<f32>() / spatial as f32,
                }
            };
        }
    }
    Ok(())
}

/// Output length of one pooled axis (ONNX / ONNX Runtime rules).
fn pool_len(
    input: usize,
    k: usize,
    s: usize,
    d: usize,
    head: usize,
    tail: usize,
    ceil: bool,
) -> Option<usize> {
    let dk = (k - 1) * d + 1;
    let padded = input + head + tail;
    if dk > padded {
        return None;
    }
    let num = padded - dk;
    let mut out = if ceil {
        num.div_ceil(s) + 1
    } else {
        num / s + 1
    };
    // a window must start inside the image or the left padding
    if ceil && (out - 1) * s >= input + head {
        out -= 1;
    }
    Some(out)
}

/// Output shape of a windowed pool (ONNX rules, ceil_mode included).
pub fn pool_shape(p: &Pool, x: &[usize]) -> OpResult<Vec<usize>> {
    if x.len() != 4 {
        return Err(OpError::Shape(format!(
            "pool expects x [N,C,H,W], got {x:?}"
        )));
    }
    if p.kernel.contains(&0) || p.strides.contains(&0) || p.dilations.contains(&0) {
        return Err(OpError::Shape(format!(
            "pool kernel {:?}, strides {:?}, dilations {:?} must be positive (x {x:?})",
            p.kernel, p.strides, p.dilations
        )));
    }
    let mut out = x.to_vec();
    for i in 0..2 {
        out[2 + i] = pool_len(
            x[2 + i],
            p.kernel[i],
            p.strides[i],
            p.dilations[i],
            p.pads[i],
            p.pads[i + 2],
            p.ceil_mode,
        )
        .ok_or_else(|| {
            OpError::Shape(format!(
                "pool kernel {:?} (dilations {:?}) exceeds padded input {x:?} with pads {:?}",
                p.kernel, p.dilations, p.pads
            ))
        })?;
    }
    Ok(out)
}

/// Reference windowed pool.
pub fn run_pool(p: &Pool, x: &ArrayViewD<f32>, y: &mut ArrayViewMutD<f32>) -> OpResult<()> {
    let out = pool_shape(p, x.shape())?;
    if y.shape() != out.as_slice() {
        return Err(OpError::Shape(format!(
            "pool output is {:?}, expected {out:?} for x {:?}",
            y.shape(),
            x.shape()
        )));
    }
    let x = x
        .view()
        .into_dimensionality::<Ix4>()
        .map_err(|e| OpError::Shape(e.to_string()))?;
    let mut y = y
        .view_mut()
        .into_dimensionality::<Ix4>()
        .map_err(|e| OpError::Shape(e.to_string()))?;
    let (n, c, h, w) = x.dim();
    let (oh, ow) = (out[2], out[3]);
    let (h, w) = (h as isize, w as isize);
    let [kh, kw] = p.kernel;
    let [sh, sw] = p.strides;
    let [dh, dw] = p.dilations;
    let (pt, pl) = (p.pads[0] as isize, p.pads[1] as isize);
    // padded extent: cells in [-head, in + tail) count when count_include_pad is set
    let (hend, wend) = (h + p.pads[2] as isize, w + p.pads[3] as isize);
    for ni in 0..n {
        for ci in 0..c {
            for oy in 0..oh {
                for ox in 0..ow {
                    let y0 = (oy * sh) as isize - pt;
                    let x0 = (ox * sw) as isize - pl;
                    let mut mx = f32::NEG_INFINITY;
                    let mut sum = 0.0f32;
                    let mut valid = 0usize;
                    let mut padded = 0usize;
                    for ky in 0..kh {
                        let iy = y0 + (ky * dh) as isize;
                        if iy >= hend {
                            break;
                        }
                        for kx in 0..kw {
                            let ix = x0 + (kx * dw) as isize;
                            if ix >= wend {
                                break;
                            }
                            padded += 1;
                            if iy < 0 || iy >= h || ix < 0 || ix >= w {
                                continue;
                            }
                            let v = x[[ni, ci, iy as usize, ix as usize]];
                            mx = mx.max(v);
                            sum += v;
                            valid += 1;
                        }
                    }
                    y[[ni, ci, oy, ox]] = match p.kind {
                        PoolKind::Max => mx,
                        PoolKind::Average => {
                            let div = if p.count_include_pad { padded } else { valid };
                            if div == 0 {
                                0.0
                            } else {
                                sum / div as f32
                            }
                        }
                    };
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::{ArrayD, IxDyn};

    fn pool(kind: PoolKind, k: usize, s: usize, pads: [usize; 4], ceil: bool, cip: bool) -> Pool {
        Pool {
            kind,
            kernel: [k, k],
            strides: [s, s],
            pads,
            dilations: [1, 1],
            ceil_mode: ceil,
            count_include_pad: cip,
        }
    }

    fn arr(shape: &[usize], f: impl Fn(usize) -> f32) -> ArrayD<f32> {
        let n: usize = shape.iter().product();
        ArrayD::from_shape_vec(IxDyn(shape), (0..n).map(f).collect()).unwrap()
    }

    fn run(p: &Pool, x: &ArrayD<f32>) -> ArrayD<f32> {
        let s = pool_shape(p, x.shape()).unwrap();
        let mut y = ArrayD::zeros(IxDyn(&s));
        run_pool(p, &x.view(), &mut y.view_mut()).unwrap();
        y
    }

    #[test]
    fn global() {
        let x = arr(&[1, 2, 2, 3], |i| i as f32);
        let mut y = ArrayD::zeros(IxDyn(&[1, 2, 1, 1]));
        run_global_pool(false, &x.view(), &mut y.view_mut()).unwrap();
        assert_eq!(y.iter().copied().collect::<Vec<_>>(), vec![2.5, 8.5]);
        run_global_pool(true, &x.view(), &mut y.view_mut()).unwrap();
        assert_eq!(y.iter().copied().collect::<Vec<_>>(), vec![5.0, 11.0]);
        assert!(global_pool_shape(&[3]).is_err());
        let mut bad = ArrayD::zeros(IxDyn(&[1, 2, 1]));
        assert!(run_global_pool(true, &x.view(), &mut bad.view_mut()).is_err());
    }

    #[test]
    fn lane_sums_match_a_wide_sum_on_odd_lengths() {
        for len in [0, 1, 7, 16, 17, 33, 250, 3137] {
            let x: Vec<f32> = (0..len)
                .map(|i| ((i * 37 % 101) as f32 - 50.0) * 0.013)
                .collect();
            let exact: f64 = x.iter().map(|&v| v as f64).sum();
            let got = sum_lanes(&x) as f64;
            assert!(
                (got - exact).abs() <= 1e-5 * (1.0 + exact.abs()),
                "{len}: {got} vs {exact}"
            );
        }
    }

    #[test]
    fn shapes_ceil_mode() {
        // ONNX test maxpool_2d_ceil: 4x4, k3 s2 -> 2x2 with ceil, 1x1 floor
        let p = pool(PoolKind::Max, 3, 2, [0; 4], true, false);
        assert_eq!(pool_shape(&p, &[1, 1, 4, 4]).unwrap(), vec![1, 1, 2, 2]);
        let p = pool(PoolKind::Max, 3, 2, [0; 4], false, false);
        assert_eq!(pool_shape(&p, &[1, 1, 4, 4]).unwrap(), vec![1, 1, 1, 1]);
        // a window that would start in the right padding is dropped: in 5, k2 s2 pad (0,1) ceil
        // numerator = 5+1-2 = 4 -> ceil(4/2)+1 = 3; last start 4 < 5 -> kept
        let p = pool(PoolKind::Max, 2, 2, [0, 0, 1, 1], true, false);
        assert_eq!(pool_shape(&p, &[1, 1, 5, 5]).unwrap(), vec![1, 1, 3, 3]);
        // in 4, k1 s2 pad (0,1), ceil: numerator 4 -> 3 outputs; last starts at 4 (in padding) -> 2
        let p = pool(PoolKind::Max, 1, 2, [0, 0, 1, 1], true, false);
        assert_eq!(pool_shape(&p, &[1, 1, 4, 4]).unwrap(), vec![1, 1, 2, 2]);
        assert!(pool_shape(
            &pool(PoolKind::Max, 5, 1, [0; 4], false, false),
            &[1, 1, 4, 4]
        )
        .is_err());
        assert!(pool_shape(
            &pool(PoolKind::Max, 0, 1, [0; 4], false, false),
            &[1, 1, 4, 4]
        )
        .is_err());
        assert!(pool_shape(
            &pool(PoolKind::Max, 1, 0, [0; 4], false, false),
            &[1, 1, 4, 4]
        )
        .is_err());
        assert!(pool_shape(&pool(PoolKind::Max, 1, 1, [0; 4], false, false), &[1, 4, 4]).is_err());
    }

    #[test]
    fn maxpool_ceil_values() {
        // ONNX backend test maxpool_2d_ceil
        let x = arr(&[1, 1, 4, 4], |i| (i + 1) as f32);
        let y = run(&pool(PoolKind::Max, 3, 2, [0; 4], true, false), &x);
        assert_eq!(
            y.iter().copied().collect::<Vec<_>>(),
            vec![11.0, 12.0, 15.0, 16.0]
        );
    }

    #[test]
    fn maxpool_pads_dilation() {
        // ONNX maxpool_2d_pads: 5x5, k5 pad 2 -> max over clipped windows
        let x = arr(&[1, 1, 5, 5], |i| (i + 1) as f32);
        let y = run(&pool(PoolKind::Max, 5, 1, [2; 4], false, false), &x);
        assert_eq!(y[[0, 0, 0, 0]], 13.0);
        assert_eq!(y[[0, 0, 4, 4]], 25.0);
        assert_eq!(y[[0, 0, 2, 0]], 23.0);
        // ONNX maxpool_2d_dilations: 4x4, k2 d2 -> [[11,12],[15,16]]
        let mut p = pool(PoolKind::Max, 2, 1, [0; 4], false, false);
        p.dilations = [2, 2];
        let y = run(
            &p,
            &x.slice(ndarray::s![.., .., 0..4, 0..4])
                .to_owned()
                .into_dyn(),
        );
        // 4x4 block of the 5x5 ramp: rows start at 1, 6, 11, 16
        assert_eq!(
            y.iter().copied().collect::<Vec<_>>(),
            vec![13.0, 14.0, 18.0, 19.0]
        );
    }

    #[test]
    fn avgpool_pads() {
        // ONNX averagepool_2d_pads (count_include_pad=0) and _count_include_pad
        let x = arr(&[1, 1, 5, 5], |i| (i + 1) as f32);
        let y = run(&pool(PoolKind::Average, 5, 1, [2; 4], false, false), &x);
        assert_eq!(y[[0, 0, 0, 0]], 7.0);
        assert_eq!(y[[0, 0, 2, 2]], 13.0);
        let y = run(&pool(PoolKind::Average, 5, 1, [2; 4], false, true), &x);
        assert!((y[[0, 0, 0, 0]] - 63.0 / 25.0).abs() < 1e-6);
        assert_eq!(y[[0, 0, 2, 2]], 13.0);
        // ceil mode: the partial window past the padded extent counts only padded-extent cells
        let x = arr(&[1, 1, 1, 4], |i| (i + 1) as f32);
        let mut p = pool(PoolKind::Average, 1, 1, [0; 4], true, true);
        p.kernel = [1, 3];
        p.strides = [1, 2];
        let y = run(&p, &x);
        assert_eq!(y.shape(), &[1, 1, 1, 2]);
        assert_eq!(y.iter().copied().collect::<Vec<_>>(), vec![2.0, 3.5]);
        // with right pad 1 and count_include_pad, the last window [2,5) has 3 cells in the padded extent
        p.pads = [0, 0, 0, 1];
        let y = run(&p, &x);
        assert_eq!(y.shape(), &[1, 1, 1, 2]);
        assert_eq!(y[[0, 0, 0, 1]], 7.0 / 3.0);
    }
}
