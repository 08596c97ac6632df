//! Reductions and softmax.

use super::{OpError, OpResult, ReduceKind};
use ndarray::{ArrayViewD, ArrayViewMutD, Axis, Zip};
use std::borrow::Cow;

/// Validated, sorted, deduplicated axes.
fn checked_axes(axes: &[usize], x: &[usize]) -> OpResult<Vec<usize>> {
    let mut a = axes.to_vec();
    a.sort_unstable();
    let n = a.len();
    a.dedup();
    if a.len() != n || a.last().is_some_and(|&l| l >= x.len()) {
        return Err(OpError::Shape(format!(
            "reduce axes {axes:?} invalid for shape {x:?}"
        )));
    }
    Ok(a)
}

/// Shape after reducing `axes`.
///
/// An empty `axes` reduces nothing (the importer resolves ONNX's empty-axes conventions).
pub fn reduce_shape(axes: &[usize], keepdims: bool, x: &[usize]) -> OpResult<Vec<usize>> {
    let axes = checked_axes(axes, x)?;
    Ok(x.iter()
        .enumerate()
        .filter_map(|(i, &d)| match (axes.contains(&i), keepdims) {
            (false, _) => Some(d),
            (true, true) => Some(1),
            (true, false) => None,
        })
        .collect())
}

/// Sum of a slice with several accumulators (vectorises, and loses less precision).
#[inline]
fn lane_sum(xs: &[f32], f: impl Fn(f32) -> f32) -> f32 {
    let mut acc = [0.0f32; 8];
    let mut chunks = xs.chunks_exact(8);
    for c in &mut chunks {
        for (a, &v) in acc.iter_mut().zip(c) {
            *a += f(v);
        }
    }
    let mut s: f32 = chunks.remainder().iter().map(|&v| f(v)).sum();
    s += ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
    s
}

/// Reduce `x` viewed as `[outer, r, inner]` (row-major `xs`) over `r` into `acc[outer*inner]`.
fn reduce_block(
    kind: ReduceKind,
    xs: &[f32],
    outer: usize,
    r: usize,
    inner: usize,
    acc: &mut [f32],
) {
    // One monomorphised loop per kind: a function pointer in the inner loop costs a call per
    // element and blocks vectorisation (LDA-AQU's 9-neighbour ReduceSum is a hot op).
    match kind {
        ReduceKind::Mean | ReduceKind::Sum => fold_block(
            xs,
            outer,
            r,
            inner,
            acc,
            0.0,
            |a, v| a + v,
            |xo| lane_sum(xo, |v| v),
        ),
        ReduceKind::SumSquare | ReduceKind::L2 => fold_block(
            xs,
            outer,
            r,
            inner,
            acc,
            0.0,
            |a, v| a + v * v,
            |xo| lane_sum(xo, |v| v * v),
        ),
        ReduceKind::Max => {
            let step = |a: f32, v: f32| if v > a || v.is_nan() { v } else { a };
            let init = f32::NEG_INFINITY;
            fold_block(xs, outer, r, inner, acc, init, step, |xo| {
                xo.iter().fold(init, |a, &v| step(a, v))
            })
        }
        ReduceKind::Min => {
            let step = |a: f32, v: f32| if v < a || v.is_nan() { v } else { a };
            let init = f32::INFINITY;
            fold_block(xs, outer, r, inner, acc, init, step, |xo| {
                xo.iter().fold(init, |a, &v| step(a, v))
            })
        }
        ReduceKind::Prod => fold_block(
            xs,
            outer,
            r,
            inner,
            acc,
            1.0,
            |a, v| a * v,
            |xo| xo.iter().product(),
        ),
    }
    match kind {
        ReduceKind::Mean => {
            let n = r as f32;
            acc.iter_mut().for_each(|a| *a /= n);
        }
        ReduceKind::L2 => acc.iter_mut().for_each(|a| *a = a.sqrt()),
        _ => {}
    }
}

/// `reduce_block` for one kind: `step` folds one value into an accumulator, `lane` reduces a
/// whole contiguous lane (used when `inner == 1`).
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn fold_block(
    xs: &[f32],
    outer: usize,
    r: usize,
    inner: usize,
    acc: &mut [f32],
    init: f32,
    step: impl Fn(f32, f32) -> f32,
    lane: impl Fn(&[f32]) -> f32,
) {
    acc.iter_mut().for_each(|a| *a = init);
    if acc.is_empty() {
        return;
    }
    let plane = r * inner;
    for (xo, ao) in xs
        .chunks_exact(plane.max(1))
        .zip(acc.chunks_exact_mut(inner))
        .take(outer)
    {
        if inner == 1 {
            ao[0] = lane(xo);
        } else {
            for row in xo.chunks_exact(inner) {
                for (a, &v) in ao.iter_mut().zip(row) {
                    *a = step(*a, v);
                }
            }
        }
    }
}

/// Reference reduction.
pub fn run_reduce(
    kind: ReduceKind,
    axes: &[usize],
    keepdims: bool,
    x: &ArrayViewD<f32>,
    y: &mut ArrayViewMutD<f32>,
) -> OpResult<()> {
    let out = reduce_shape(axes, keepdims, x.shape())?;
    if out.as_slice() != y.shape() {
        return Err(OpError::Shape(format!(
            "Reduce{kind:?} over {axes:?} of {:?}: expected output {out:?}, got {:?}",
            x.shape(),
            y.shape()
        )));
    }
    let axes = checked_axes(axes, x.shape())?;
    let shape = x.shape();
    let contiguous_block = axes.windows(2).all(|w| w[1] == w[0] + 1);
    // Bring the data to row-major order with the reduced axes forming one block.
    let (data, outer, r, inner): (Cow<[f32]>, usize, usize, usize) =
        match (x.as_slice(), axes.first(), axes.last()) {
            (Some(xs), Some(&lo), Some(&hi)) if contiguous_block => (
                Cow::Borrowed(xs),
                shape[..lo].iter().product(),
                shape[lo..=hi].iter().product(),
                shape[hi + 1..].iter().product(),
            ),
            _ => {
                let mut perm: Vec<usize> = (0..shape.len()).filter(|i| !axes.contains(i)).collect();
                let outer = perm.iter().map(|&i| shape[i]).product();
                perm.extend_from_slice(&axes);
                let v = x.view().permuted_axes(perm);
                (
                    Cow::Owned(v.iter().copied().collect()),
                    outer,
                    axes.iter().map(|&i| shape[i]).product(),
                    1,
                )
            }
        };
    let mut acc = vec![0.0f32; outer * inner];
    reduce_block(kind, &data, outer, r, inner, &mut acc);
    if let Some(ys) = y.as_slice_mut() {
        ys.copy_from_slice(&acc);
    } else {
        for (o, &v) in y.iter_mut().zip(&acc) {
            *o = v;
        }
    }
    Ok(())
}

/// Softmax of one contiguous lane, in place from `x` to `y`.
#[inline]
fn softmax_lane(x: &[f32], y: &mut [f32]) {
    let m = x.iter().fold(f32::NEG_INFINITY, |a, &v| a.max(v));
    let mut s = 0.0f32;
    for (o, &v) in y.iter_mut().zip(x) {
        let e = (v - m).exp();
        *o = e;
        s += e;
    }
    let inv = 1.0 / s;
    y.iter_mut().for_each(|o| *o *= inv);
}

/// Reference softmax (max-subtracted).
pub fn run_softmax(axis: usize, x: &ArrayViewD<f32>, y: &mut ArrayViewMutD<f32>) -> OpResult<()> {
    if axis >= x.ndim() || x.shape() != y.shape() {
        return Err(OpError::Shape(format!(
            "Softmax axis {axis}: input {:?}, output {:?}",
            x.shape(),
            y.shape()
        )));
    }
    let shape = x.shape().to_vec();
    let r = shape[axis];
    let inner: usize = shape[axis + 1..].iter().product();
    if r == 0 || inner == 0 {
        return Ok(());
    }
    if let (Some(xs), Some(ys)) = (x.as_slice(), y.as_slice_mut()) {
        if inner == 1 {
            for (xl, yl) in xs.chunks_exact(r).zip(ys.chunks_exact_mut(r)) {
                softmax_lane(xl, yl);
            }
        } else {
            let plane = r * inner;
            let mut mx = vec![0.0f32; inner];
            let mut sum = vec![0.0f32; inner];
            for (xo, yo) in xs.chunks_exact(plane).zip(ys.chunks_exact_mut(plane)) {
                mx.iter_mut().for_each(|m| *m = f32::NEG_INFINITY);
                for row in xo.chunks_exact(inner) {
                    for (m, &v) in mx.iter_mut().zip(row) {
                        *m = m.max(v);
                    }
                }
                sum.iter_mut().for_each(|s| *s = 0.0);
                for (xr, yr) in xo.chunks_exact(inner).zip(yo.chunks_exact_mut(inner)) {
                    for (((o, &v), &m), s) in yr.iter_mut().zip(xr).zip(&mx).zip(sum.iter_mut()) {
                        let e = (v - m).exp();
                        *o = e;
                        *s += e;
                    }
                }
                sum.iter_mut().for_each(|s| *s = 1.0 / *s);
                for yr in yo.chunks_exact_mut(inner) {
                    for (o, &s) in yr.iter_mut().zip(&sum) {
                        *o *= s;
                    }
                }
            }
        }
        return Ok(());
    }
    let mut xbuf = vec![0.0f32; r];
    let mut ybuf = vec![0.0f32; r];
    Zip::from(x.lanes(Axis(axis)))
        .and(y.lanes_mut(Axis(axis)))
        .for_each(|xl, mut yl| {
            for (b, &v) in xbuf.iter_mut().zip(xl.iter()) {
                *b = v;
            }
            softmax_lane(&xbuf, &mut ybuf);
            for (o, &v) in yl.iter_mut().zip(&ybuf) {
                *o = v;
            }
        });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::test_util::*;
    use ndarray::{ArrayD, Dimension, IxDyn};

    fn reduce(kind: ReduceKind, axes: &[usize], keep: bool, x: &ArrayViewD<f32>) -> ArrayD<f32> {
        let s = reduce_shape(axes, keep, x.shape()).unwrap();
        let mut y = ArrayD::from_elem(IxDyn(&s), f32::NAN);
        run_reduce(kind, axes, keep, x, &mut y.view_mut()).unwrap();
        y
    }

    #[test]
    fn reduce_by_hand() {
        let x =
            ArrayD::from_shape_vec(IxDyn(&[2, 3]), vec![1.0, -2.0, 3.0, 4.0, 5.0, -6.0]).unwrap();
        let v = |a: ArrayD<f32>| a.iter().copied().collect::<Vec<_>>();
        use ReduceKind::*;
        assert_eq!(v(reduce(Sum, &[1], false, &x.view())), vec![2.0, 3.0]);
        assert_eq!(
            v(reduce(Mean, &[0], false, &x.view())),
            vec![2.5, 1.5, -1.5]
        );
        assert_eq!(v(reduce(Max, &[0, 1], false, &x.view())), vec![5.0]);
        assert_eq!(v(reduce(Min, &[1], true, &x.view())), vec![-2.0, -6.0]);
        assert_eq!(v(reduce(Prod, &[1], false, &x.view())), vec![-6.0, -120.0]);
        assert_eq!(
            v(reduce(SumSquare, &[1], false, &x.view())),
            vec![14.0, 77.0]
        );
        assert_eq!(
            v(reduce(L2, &[0], false, &x.view())),
            vec![17f32.sqrt(), 29f32.sqrt(), 45f32.sqrt()]
        );
        assert_eq!(reduce_shape(&[1], true, &[2, 3, 4]).unwrap(), vec![2, 1, 4]);
        assert_eq!(reduce_shape(&[0, 2], false, &[2, 3, 4]).unwrap(), vec![3]);
        assert_eq!(
            reduce_shape(&[0, 1, 2], false, &[2, 3, 4]).unwrap(),
            Vec::<usize>::new()
        );
        // all axes without keepdims gives a scalar
        let s = reduce(Sum, &[0, 1], false, &x.view());
        assert_eq!(s.shape(), &[] as &[usize]);
        assert_eq!(v(s), vec![5.0]);
        // NaN propagates through Max
        let n = ArrayD::from_shape_vec(IxDyn(&[3]), vec![1.0, f32::NAN, 2.0]).unwrap();
        assert!(reduce(Max, &[0], false, &n.view())[[]].is_nan());
    }

    fn naive_reduce(kind: ReduceKind, axes: &[usize], keep: bool, x: &ArrayD<f32>) -> ArrayD<f32> {
        let out = reduce_shape(axes, keep, x.shape()).unwrap();
        let kshape: Vec<usize> = x
            .shape()
            .iter()
            .enumerate()
            .map(|(i, &d)| if axes.contains(&i) { 1 } else { d })
            .collect();
        let mut vals: Vec<Vec<f64>> = vec![Vec::new(); kshape.iter().product()];
        for (idx, &v) in x.indexed_iter() {
            let flat = idx.slice().iter().enumerate().fold(0, |f, (i, &k)| {
                f * kshape[i] + if axes.contains(&i) { 0 } else { k }
            });
            vals[flat].push(v as f64);
        }
        let r: Vec<f32> = vals
            .iter()
            .map(|v| {
                let n = v.len() as f64;
                (match kind {
                    ReduceKind::Mean => v.iter().sum::<f64>() / n,
                    ReduceKind::Sum => v.iter().sum::<f64>(),
                    ReduceKind::Max => v.iter().copied().fold(f64::NEG_INFINITY, f64::max),
                    ReduceKind::Min => v.iter().copied().fold(f64::INFINITY, f64::min),
                    ReduceKind::Prod => v.iter().product::<f64>(),
                    ReduceKind::SumSquare => v.iter().map(|a| a * a).sum::<f64>(),
                    ReduceKind::L2 => v.iter().map(|a| a * a).sum::<f64>().sqrt(),
                }) as f32
            })
            .collect();
        ArrayD::from_shape_vec(IxDyn(&out), r).unwrap()
    }

    #[test]
    fn reduce_random() {
        use ReduceKind::*;
        let mut rng = Rng(11);
        const SIZES: [usize; 5] = [1, 3, 7, 13, 17];
        for _ in 0..120 {
            let rank = 1 + rng.below(4);
            let shape: Vec<usize> = (0..rank).map(|_| SIZES[rng.below(5)]).collect();
            let axes: Vec<usize> = (0..rank).filter(|_| rng.below(2) == 0).collect();
            if axes.is_empty() {
                continue;
            }
            let keep = rng.below(2) == 0;
            let x = rng.arr_affine(&shape, 1.5, 0.0);
            for kind in [Mean, Sum, Max, Min, Prod, SumSquare, L2] {
                let want = naive_reduce(kind, &axes, keep, &x);
                assert_close(&reduce(kind, &axes, keep, &x.view()), &want, 1e-4);
                assert_close(&reduce(kind, &axes, keep, &fortran(&x).view()), &want, 1e-4);
                let xt = x.t();
                let tax: Vec<usize> = axes.iter().map(|&a| rank - 1 - a).rev().collect();
                let want_t = naive_reduce(kind, &tax, keep, &xt.to_owned());
                assert_close(&reduce(kind, &tax, keep, &xt), &want_t, 1e-4);
            }
        }
    }

    #[test]
    fn reduce_errors() {
        let x = ArrayD::<f32>::zeros(IxDyn(&[2, 3]));
        assert!(reduce_shape(&[2], false, &[2, 3]).is_err());
        assert!(reduce_shape(&[1, 1], false, &[2, 3]).is_err());
        let mut y = ArrayD::<f32>::zeros(IxDyn(&[3]));
        let e = run_reduce(ReduceKind::Sum, &[1], false, &x.view(), &mut y.view_mut()).unwrap_err();
        assert!(e.to_string().contains("[2, 3]"), "{e}");
        let mut y = ArrayD::<f32>::zeros(IxDyn(&[2, 1]));
        assert!(run_reduce(ReduceKind::Sum, &[1], false, &x.view(), &mut y.view_mut()).is_err());
        assert!(run_reduce(ReduceKind::Sum, &[1], true, &x.view(), &mut y.view_mut()).is_ok());
    }

    fn naive_softmax(axis: usize, x: &ArrayD<f32>) -> ArrayD<f32> {
        let mut y = x.clone();
        for mut lane in y.lanes_mut(Axis(axis)) {
            let m = lane.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
            let s: f64 = lane.iter().map(|&v| (v as f64 - m).exp()).sum();
            lane.mapv_inplace(|v| ((v as f64 - m).exp() / s) as f32);
        }
        y
    }

    #[test]
    fn softmax_by_hand() {
        let x = ArrayD::from_shape_vec(IxDyn(&[2, 2]), vec![0.0, 0.0, 1000.0, 0.0]).unwrap();
        let mut y = ArrayD::zeros(IxDyn(&[2, 2]));
        run_softmax(1, &x.view(), &mut y.view_mut()).unwrap();
        assert_eq!(
            y.iter().copied().collect::<Vec<_>>(),
            vec![0.5, 0.5, 1.0, 0.0]
        );
        run_softmax(0, &x.view(), &mut y.view_mut()).unwrap();
        assert_eq!(
            y.iter().copied().collect::<Vec<_>>(),
            vec![0.0, 0.5, 1.0, 0.5]
        );
        let x = ArrayD::from_shape_vec(IxDyn(&[3]), vec![1.0, 2.0, 3.0]).unwrap();
        let mut y = ArrayD::zeros(IxDyn(&[3]));
        run_softmax(0, &x.view(), &mut y.view_mut()).unwrap();
        let e: Vec<f32> = [-2.0f32, -1.0, 0.0]
            .iter()
            .map(|v| v.exp() / (1.0 + (-1f32).exp() + (-2f32).exp()))
            .collect();
        for (g, w) in y.iter().zip(&e) {
            assert!((g - w).abs() < 1e-6);
        }
    }

    #[test]
    fn softmax_random() {
        let mut rng = Rng(12);
        const SIZES: [usize; 5] = [1, 3, 7, 13, 17];
        for _ in 0..60 {
            let rank = 1 + rng.below(4);
            let shape: Vec<usize> = (0..rank).map(|_| SIZES[rng.below(5)]).collect();
            let axis = rng.below(rank);
            let x = rng.arr_affine(&shape, 20.0, 0.0);
            let want = naive_softmax(axis, &x);
            for xv in [x.clone(), fortran(&x)] {
                let mut y = ArrayD::from_elem(IxDyn(&shape), f32::NAN);
                run_softmax(axis, &xv.view(), &mut y.view_mut()).unwrap();
                assert_close(&y, &want, 1e-5);
                let mut yf = fortran(&ArrayD::zeros(IxDyn(&shape)));
                run_softmax(axis, &xv.view(), &mut yf.view_mut()).unwrap();
                assert_close(&yf, &want, 1e-5);
            }
        }
        let x = ArrayD::<f32>::zeros(IxDyn(&[2, 3]));
        let mut y = ArrayD::<f32>::zeros(IxDyn(&[2, 3]));
        assert!(run_softmax(2, &x.view(), &mut y.view_mut()).is_err());
        let mut y = ArrayD::<f32>::zeros(IxDyn(&[3, 2]));
        assert!(run_softmax(1, &x.view(), &mut y.view_mut()).is_err());
    }
}
