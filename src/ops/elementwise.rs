//! Element-wise unary and broadcasting binary ops.

use super::{Activation, BinaryOp, OpError, OpResult, UnaryOp};
use ndarray::{ArrayViewD, ArrayViewMutD, Axis, Zip};
use std::borrow::Cow;

/// Numerically stable logistic function.
#[inline(always)]
fn sigmoid(x: f32) -> f32 {
    if x >= 0.0 {
        1.0 / (1.0 + (-x).exp())
    } else {
        let e = x.exp();
        e / (1.0 + e)
    }
}

/// Apply an activation to one value (shared by fused kernels).
#[inline(always)]
pub fn apply_activation(a: super::Activation, x: f32) -> f32 {
    match a {
        // Written with comparisons so that NaN propagates.
        Activation::Relu => {
            if x < 0.0 {
                0.0
            } else {
                x
            }
        }
        Activation::LeakyRelu(alpha) => {
            if x >= 0.0 {
                x
            } else {
                alpha * x
            }
        }
        Activation::Clip(lo, hi) => {
            if x < lo {
                lo
            } else if x > hi {
                hi
            } else {
                x
            }
        }
        Activation::HardSwish => x * (x / 6.0 + 0.5).clamp(0.0, 1.0),
        Activation::HardSigmoid { alpha, beta } => (alpha * x + beta).clamp(0.0, 1.0),
        Activation::Sigmoid => sigmoid(x),
        Activation::Silu => x * sigmoid(x),
        Activation::Tanh => x.tanh(),
        Activation::Gelu => 0.5 * x * (1.0 + libm::erff(x * std::f32::consts::FRAC_1_SQRT_2)),
    }
}

/// Numpy broadcasting of several shapes.
pub fn broadcast_shape(shapes: &[&[usize]]) -> OpResult<Vec<usize>> {
    let rank = shapes.iter().map(|s| s.len()).max().unwrap_or(0);
    let mut out = vec![1usize; rank];
    for s in shapes {
        let off = rank - s.len();
        for (i, &d) in s.iter().enumerate() {
            let o = &mut out[off + i];
            if d == 1 || d == *o {
                continue;
            }
            if *o == 1 {
                *o = d;
            } else {
                return Err(OpError::Shape(format!(
                    "cannot broadcast shapes {shapes:?}"
                )));
            }
        }
    }
    Ok(out)
}

/// Map `f` over `x` into `y` (same shape, checked by the caller).
#[inline(always)]
fn map_unary<F: Fn(f32) -> f32>(x: &ArrayViewD<f32>, y: &mut ArrayViewMutD<f32>, f: F) {
    if x.strides() == y.strides() {
        if let (Some(xs), Some(ys)) = (x.as_slice_memory_order(), y.as_slice_memory_order_mut()) {
            for (o, &v) in ys.iter_mut().zip(xs) {
                *o = f(v);
            }
            return;
        }
    }
    Zip::from(y).and(x).for_each(|o, &v| *o = f(v));
}

/// Reference unary op.
pub fn run_unary(op: UnaryOp, x: &ArrayViewD<f32>, y: &mut ArrayViewMutD<f32>) -> OpResult<()> {
    if x.shape() != y.shape() {
        return Err(OpError::Shape(format!(
            "unary {op:?}: input shape {:?} differs from output shape {:?}",
            x.shape(),
            y.shape()
        )));
    }
    match op {
        UnaryOp::Act(a) => match a {
            Activation::Relu => map_unary(x, y, |v| apply_activation(Activation::Relu, v)),
            Activation::LeakyRelu(al) => {
                map_unary(x, y, |v| apply_activation(Activation::LeakyRelu(al), v))
            }
            Activation::Clip(lo, hi) => {
                map_unary(x, y, |v| apply_activation(Activation::Clip(lo, hi), v))
            }
            Activation::HardSwish => {
                map_unary(x, y, |v| apply_activation(Activation::HardSwish, v))
            }
            Activation::HardSigmoid { alpha, beta } => map_unary(x, y, |v| {
                apply_activation(Activation::HardSigmoid { alpha, beta }, v)
            }),
            Activation::Sigmoid => map_unary(x, y, sigmoid),
            Activation::Silu => map_unary(x, y, |v| v * sigmoid(v)),
            Activation::Tanh => map_unary(x, y, f32::tanh),
            Activation::Gelu => map_unary(x, y, |v| apply_activation(Activation::Gelu, v)),
        },
        UnaryOp::Erf => map_unary(x, y, libm::erff),
        UnaryOp::Exp => map_unary(x, y, f32::exp),
        UnaryOp::Log => map_unary(x, y, f32::ln),
        UnaryOp::Sqrt => map_unary(x, y, f32::sqrt),
        UnaryOp::Neg => map_unary(x, y, |v| -v),
        UnaryOp::Abs => map_unary(x, y, f32::abs),
        UnaryOp::Reciprocal => map_unary(x, y, |v| 1.0 / v),
        UnaryOp::Floor => map_unary(x, y, f32::floor),
        UnaryOp::Ceil => map_unary(x, y, f32::ceil),
        UnaryOp::Round => map_unary(x, y, f32::round_ties_even),
        UnaryOp::Identity => map_unary(x, y, |v| v),
    }
    Ok(())
}

/// Decompose the broadcast of `small` against a full shape as `[outer, mid, inner]` where
/// `small` covers exactly the `mid` block (its dims equal the full dims there and are 1
/// elsewhere). Returns `(outer, mid, inner)` or `None` when `small` has another pattern.
fn block_pattern(small: &[usize], full: &[usize]) -> Option<(usize, usize, usize)> {
    if small.len() > full.len() {
        return None;
    }
    let off = full.len() - small.len();
    let sd = |i: usize| if i < off { 1 } else { small[i - off] };
    let non1: Vec<usize> = (0..full.len()).filter(|&i| sd(i) != 1).collect();
    let (lo, hi) = match (non1.first(), non1.last()) {
        (Some(&lo), Some(&hi)) => (lo, hi),
        _ => return Some((1, 1, full.iter().product())),
    };
    for i in lo..=hi {
        if sd(i) != full[i] {
            return None;
        }
    }
    let outer = full[..lo].iter().product();
    let mid = full[lo..=hi].iter().product();
    let inner = full[hi + 1..].iter().product();
    Some((outer, mid, inner))
}

/// Elements of a view in row-major order, borrowed when contiguous.
fn row_major<'a>(x: &'a ArrayViewD<f32>) -> Cow<'a, [f32]> {
    match x.as_slice() {
        Some(s) => Cow::Borrowed(s),
        None => Cow::Owned(x.iter().copied().collect()),
    }
}

/// Apply `f` with `b` a block-broadcast operand (see [`block_pattern`]); `swap` means the
/// small operand is the left one.
#[inline(always)]
fn block_kernel<F: Fn(f32, f32) -> f32>(
    full: &[f32],
    small: &[f32],
    y: &mut [f32],
    (outer, mid, inner): (usize, usize, usize),
    swap: bool,
    f: &F,
) {
    let plane = mid * inner;
    for o in 0..outer {
        let fo = &full[o * plane..(o + 1) * plane];
        let yo = &mut y[o * plane..(o + 1) * plane];
        if inner == 1 {
            if swap {
                for ((yv, &av), &bv) in yo.iter_mut().zip(small).zip(fo) {
                    *yv = f(av, bv);
                }
            } else {
                for ((yv, &av), &bv) in yo.iter_mut().zip(fo).zip(small) {
                    *yv = f(av, bv);
                }
            }
        } else {
            for (m, &s) in small.iter().enumerate().take(mid) {
                let fr = &fo[m * inner..(m + 1) * inner];
                let yr = &mut yo[m * inner..(m + 1) * inner];
                if swap {
                    for (yv, &bv) in yr.iter_mut().zip(fr) {
                        *yv = f(s, bv);
                    }
                } else {
                    for (yv, &av) in yr.iter_mut().zip(fr) {
                        *yv = f(av, s);
                    }
                }
            }
        }
    }
}

#[inline(always)]
fn binary_kernel<F: Fn(f32, f32) -> f32>(
    a: &ArrayViewD<f32>,
    b: &ArrayViewD<f32>,
    y: &mut ArrayViewMutD<f32>,
    f: F,
) -> OpResult<()> {
    let shape = y.shape().to_vec();
    // Same shape, same memory order: one pass over the slices.
    if a.shape() == b.shape() && a.strides() == b.strides() && a.strides() == y.strides() {
        if let (Some(av), Some(bv), Some(yv)) = (
            a.as_slice_memory_order(),
            b.as_slice_memory_order(),
            y.as_slice_memory_order_mut(),
        ) {
            for ((o, &p), &q) in yv.iter_mut().zip(av).zip(bv) {
                *o = f(p, q);
            }
            return Ok(());
        }
    }
    // One side full (same shape as the output, contiguous), the other a scalar or a
    // block such as [1,C,1,1] against [N,C,H,W].
    if let Some(ys) = y.as_slice_mut() {
        for (full, small, swap) in [(a, b, false), (b, a, true)] {
            if full.shape() != shape.as_slice() {
                continue;
            }
            let Some(fs) = full.as_slice() else { continue };
            if let Some(pat) = block_pattern(small.shape(), &shape) {
                let ss = row_major(small);
                block_kernel(fs, &ss, ys, pat, swap, &f);
                return Ok(());
            }
        }
    }
    let err = || {
        OpError::Shape(format!(
            "binary op: cannot broadcast {:?} and {:?} to output {:?}",
            a.shape(),
            b.shape(),
            shape
        ))
    };
    let ab = a.broadcast(shape.as_slice()).ok_or_else(err)?;
    let bb = b.broadcast(shape.as_slice()).ok_or_else(err)?;
    Zip::from(y)
        .and(&ab)
        .and(&bb)
        .for_each(|o, &p, &q| *o = f(p, q));
    Ok(())
}

/// Reference binary op with broadcasting.
pub fn run_binary(
    op: BinaryOp,
    a: &ArrayViewD<f32>,
    b: &ArrayViewD<f32>,
    y: &mut ArrayViewMutD<f32>,
) -> OpResult<()> {
    let out = broadcast_shape(&[a.shape(), b.shape()])?;
    if out.as_slice() != y.shape() {
        return Err(OpError::Shape(format!(
            "{op:?}: inputs {:?} and {:?} broadcast to {out:?}, output is {:?}",
            a.shape(),
            b.shape(),
            y.shape()
        )));
    }
    match op {
        BinaryOp::Add => binary_kernel(a, b, y, |p, q| p + q),
        BinaryOp::Sub => binary_kernel(a, b, y, |p, q| p - q),
        BinaryOp::Mul => binary_kernel(a, b, y, |p, q| p * q),
        BinaryOp::Div => binary_kernel(a, b, y, |p, q| p / q),
        BinaryOp::Pow => binary_kernel(a, b, y, f32::powf),
        BinaryOp::Max => binary_kernel(a, b, y, f32::max),
        BinaryOp::Min => binary_kernel(a, b, y, f32::min),
    }
}

/// LGA rewrite: every channel of a head gets the sum over the head's channels (axis 2 of `[B,h,d,n]`).
pub fn run_head_channel_sum(x: &ArrayViewD<f32>, y: &mut ArrayViewMutD<f32>) -> OpResult<()> {
    if x.ndim() != 4 || x.shape() != y.shape() {
        return Err(OpError::Shape(format!(
            "HeadChannelSum expects equal rank-4 input and output, got {:?} and {:?}",
            x.shape(),
            y.shape()
        )));
    }
    let n = x.shape()[3];
    let mut sum = vec![0.0f32; n];
    for (xb, mut yb) in x.outer_iter().zip(y.outer_iter_mut()) {
        for (xh, mut yh) in xb.outer_iter().zip(yb.outer_iter_mut()) {
            sum.iter_mut().for_each(|s| *s = 0.0);
            for row in xh.outer_iter() {
                if let Some(r) = row.as_slice() {
                    for (s, &v) in sum.iter_mut().zip(r) {
                        *s += v;
                    }
                } else {
                    for (s, &v) in sum.iter_mut().zip(row.iter()) {
                        *s += v;
                    }
                }
            }
            for mut row in yh.axis_iter_mut(Axis(0)) {
                if let Some(r) = row.as_slice_mut() {
                    r.copy_from_slice(&sum);
                } else {
                    for (o, &s) in row.iter_mut().zip(&sum) {
                        *o = s;
                    }
                }
            }
        }
    }
    Ok(())
}
