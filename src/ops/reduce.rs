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
    let init = match kind {
        ReduceKind::Max => f32::NEG_INFINITY,
        ReduceKind::Min => f32::INFINITY,
        ReduceKind::Prod => 1.0,
        _ => 0.0,
    };
    acc.iter_mut().for_each(|a| *a = init);
    let step: fn(f32, f32) -> f32 = match kind {
        ReduceKind::Mean | ReduceKind::Sum => |a, v| a + v,
        ReduceKind::SumSquare | ReduceKind::L2 => |a, v| a + v * v,
        ReduceKind::Max => |a, v| if v > a || v.is_nan() { v } else { a },
        ReduceKind::Min => |a, v| if v < a || v.is_nan() { v } else { a },
        ReduceKind::Prod => |a, v| a * v,
    };
    if acc.is_empty() {
        return;
    }
    let plane = r * inner;
    for o in 0..outer {
        let xo = &xs[o * plane..(o + 1) * plane];
        let ao = &mut acc[o * inner..(o + 1) * inner];
        if inner == 1 {
            ao[0] = match kind {
                ReduceKind::Mean | ReduceKind::Sum => lane_sum(xo, |v| v),
                ReduceKind::SumSquare | ReduceKind::L2 => lane_sum(xo, |v| v * v),
                _ => xo.iter().fold(init, |a, &v| step(a, v)),
            };
        } else {
            for row in xo.chunks_exact(inner) {
                for (a, &v) in ao.iter_mut().zip(row) {
                    *a = step(*a, v);
                }
            }
        }
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
