//! Element-wise unary and broadcasting binary ops.

use super::{Activation, BinaryOp, OpError, OpResult, UnaryOp};
use crate::kernels::binary_f32::{binary_f32_vs, binary_f32_vv, RowOp};
use crate::kernels::{par, Isa};
use ndarray::{ArrayViewD, ArrayViewMutD, Axis, Zip};
use std::borrow::Cow;

/// Logistic function, branch-free on [`exp_f32`] so loops over it vectorise (`f32::exp` is a
/// libm call per value). Stable at both ends: `exp_f32` clamps its argument, so a large `-x`
/// gives `1 / (1 + 3.3e38)` (about 3e-39, against a true value below that) and never inf.
#[inline(always)]
fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + exp_f32(-x))
}

/// `e^x` to within 2 ulp, branch-free so loops over it vectorise (`f32::exp` is a libm call
/// per value). NaN stays NaN; the argument is clamped to [-87.3, 89]: a normal f32 at the
/// low end, and from 88.73 up infinity, as `e^x` overflows.
#[inline(always)]
pub fn exp_f32(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    // ln 2 split so n * LN2_HI is exact for |n| < 2^8
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    // rounds ties to even for |v| < 2^22 (`round_ties_even` is a libm call on baseline x86-64)
    const MAGIC: f32 = 12_582_912.0;
    let x = x.clamp(-87.3, 89.0);
    let t = x * LOG2E + MAGIC;
    let n = t - MAGIC;
    // n as an integer from the bits of t (its low mantissa bits): `n as i32` saturates and
    // maps NaN to 0, which LLVM does a lane at a time
    let ni = (t.to_bits() as i32).wrapping_sub(MAGIC.to_bits() as i32);
    let r = (x - n * LN2_HI) - n * LN2_LO;
    // Cephes' expf polynomial on [-ln2/2, ln2/2]
    let p = ((((1.987_569_1e-4 * r + 1.398_199_9e-3) * r + 8.333_452e-3) * r + 4.166_579_6e-2) * r
        + 1.666_666_5e-1)
        * r
        + 0.5;
    let e = r * r * p + r + 1.0;
    // 2^n as two normal factors: 2^128 (e^x from 88.03 on) is not one, and its products
    // overflow only where e^x does
    let n1 = ni >> 1;
    let n2 = ni.wrapping_sub(n1);
    let pow2 = |k: i32| f32::from_bits((k.wrapping_add(127) as u32) << 23);
    e * pow2(n1) * pow2(n2)
}

/// The Exp op: [`exp_f32`] (vectorised; `f32::exp` is a libm call per value), with results
/// below the smallest normal f32 (x < -87.3, e^x < 1.2e-38) flushed to 0 so that
/// `exp(-inf)` is exactly 0, as masks written with Exp expect.
#[inline(always)]
fn exp_op(x: f32) -> f32 {
    let e = exp_f32(x);
    if x < -87.3 {
        0.0
    } else {
        e
    }
}

/// erf within 4e-7 of the exact value (7 ulp), branch-free so loops over it vectorise (libm's
/// `erff` is a call per value; the GELUs of LDA-AQU's offset branch use this):
/// `x * P(x^2) / Q(x^2)` on `|x| <= 4`, P and Q of degree 5, fitted for relative error
/// (2.5e-8 before f32 rounding) with `P(0)` = 2/sqrt(pi), so tiny `x` keep their relative
/// accuracy; beyond 4, erf rounds to +-1 in f32. One division and ten multiplies and adds per
/// value, a fifth of the work of the Taylor series plus `exp`-based erfc it replaced. NaN
/// stays NaN, erf(+-inf) = +-1, erf(-0) = -0.
#[inline(always)]
pub fn erf_f32(x: f32) -> f32 {
    const P: [f32; 6] = [
        std::f32::consts::FRAC_2_SQRT_PI,
        0.193_543_55,
        5.310_149_5e-2,
        3.883_264_3e-3,
        2.845_618e-4,
        1.986_765e-6,
    ];
    const Q: [f32; 6] = [
        1.0,
        0.504_856_05,
        0.115_349_33,
        1.520_709_4e-2,
        1.185_547_3e-3,
        3.741_977_7e-5,
    ];
    let xc = x.clamp(-4.0, 4.0);
    let x2 = xc * xc;
    let p = ((((P[5] * x2 + P[4]) * x2 + P[3]) * x2 + P[2]) * x2 + P[1]) * x2 + P[0];
    let q = ((((Q[5] * x2 + Q[4]) * x2 + Q[3]) * x2 + Q[2]) * x2 + Q[1]) * x2 + Q[0];
    let r = xc * p / q;
    // the fit reaches 1 + 1e-8 near 4; clamp keeps NaN
    r.clamp(-1.0, 1.0)
}

/// tanh as the [13/6] rational minimax approximation Eigen and ONNX Runtime (MLAS) use: within
/// a few ulp of the exact value, and branch-free so loops over it vectorise (libm's `tanhf` is
/// a call per element, most of the time of LDA-AQU's offset conv).
#[inline(always)]
pub fn tanh_f32(x: f32) -> f32 {
    const LIMIT: f32 = TANH_LIMIT;
    const A: [f32; 7] = TANH_P;
    const B: [f32; 4] = TANH_Q;
    let xc = x.clamp(-LIMIT, LIMIT);
    let x2 = xc * xc;
    let p = (((((A[6] * x2 + A[5]) * x2 + A[4]) * x2 + A[3]) * x2 + A[2]) * x2 + A[1]) * x2 + A[0];
    let q = ((B[3] * x2 + B[2]) * x2 + B[1]) * x2 + B[0];
    let r = xc * p / q;
    // tanh(x) rounds to x for tiny |x|; keeps -0.0 and subnormals exact
    if x.abs() < 4e-4 {
        x
    } else {
        r
    }
}

/// [`tanh_f32`]'s clamp: beyond it, tanh rounds to +-1 in f32.
pub const TANH_LIMIT: f32 = 7.905_311;

/// [`tanh_f32`]'s numerator coefficients (of `x * p(x^2)`), lowest power first.
pub const TANH_P: [f32; 7] = [
    4.893_524_6e-3,
    6.372_619_3e-4,
    1.485_722_4e-5,
    5.122_297e-8,
    -8.604_672e-11,
    2.000_188e-13,
    -2.760_768_5e-16,
];

/// [`tanh_f32`]'s denominator coefficients (of `q(x^2)`), lowest power first.
pub const TANH_Q: [f32; 4] = [4.893_525e-3, 2.268_434_7e-3, 1.185_347_1e-4, 1.198_258_4e-6];

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
        Activation::Tanh => tanh_f32(x),
        Activation::Gelu => 0.5 * x * (1.0 + erf_f32(x * std::f32::consts::FRAC_1_SQRT_2)),
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
fn map_unary<F: Fn(f32) -> f32 + Sync>(x: &ArrayViewD<f32>, y: &mut ArrayViewMutD<f32>, f: F) {
    let rows = |xs: &[f32], ys: &mut [f32]| {
        for (o, &v) in ys.iter_mut().zip(xs) {
            *o = f(v);
        }
    };
    if !map_rows(x, y, rows) {
        Zip::from(y).and(x).for_each(|o, &v| *o = f(v));
    }
}

/// `rows(x piece, y piece)` over the pool when `x` and `y` are laid out alike and contiguous;
/// false (nothing done) otherwise.
#[inline(always)]
fn map_rows<R: Fn(&[f32], &mut [f32]) + Sync>(
    x: &ArrayViewD<f32>,
    y: &mut ArrayViewMutD<f32>,
    rows: R,
) -> bool {
    if x.strides() != y.strides() {
        return false;
    }
    let (Some(xs), Some(ys)) = (x.as_slice_memory_order(), y.as_slice_memory_order_mut()) else {
        return false;
    };
    par::rows_mut(ys, 1, |r, ys| rows(&xs[r], ys));
    true
}

/// `f` over a tensor, on x86-64 compiled for AVX-512 or AVX2 where the host has them: the
/// branch-free approximations (exp, sigmoid, tanh, erf, GELU) then run 16 or 8 wide, where the
/// baseline build has SSE2 only. aarch64 NEON is 4 wide in every build.
///
/// Measured on the detector's three GELUs (BENCHMARKS.md, session 47): this `erf_f32` and
/// the fused op took aarch64 from 2.4 M instructions per inference (the erf of the Taylor
/// series and erfc, alone) to 1.0 M (all of each GELU); on x86 from 0.13 ms (Erf) to 0.05 ms
/// (GELU) with AVX-512, and from 1.1 ms (libm's `erff`) to 0.12 ms with `SPECK_ISA=scalar`.
fn map_wide<F: Fn(f32) -> f32 + Copy + Sync>(
    x: &ArrayViewD<f32>,
    y: &mut ArrayViewMutD<f32>,
    f: F,
) {
    #[cfg(target_arch = "x86_64")]
    {
        /// `f` over a row, compiled with `$features`
        macro_rules! wide_row {
            ($name:ident, $features:literal) => {
                #[target_feature(enable = $features)]
                unsafe fn $name<F: Fn(f32) -> f32>(x: &[f32], y: &mut [f32], f: F) {
                    for (o, &v) in y.iter_mut().zip(x) {
                        *o = f(v);
                    }
                }
            };
        }
        wide_row!(row_avx512, "avx512f,avx2,fma");
        wide_row!(row_avx2, "avx2,fma");
        // SAFETY: `kernels::isa` only reports ISAs the host runs.
        let wide = match crate::kernels::isa() {
            Isa::Avx512 => map_rows(x, y, |xs, ys| unsafe { row_avx512(xs, ys, f) }),
            Isa::Avx2 => map_rows(x, y, |xs, ys| unsafe { row_avx2(xs, ys, f) }),
            _ => false,
        };
        if wide {
            return;
        }
    }
    map_unary(x, y, f)
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
            Activation::Sigmoid => map_wide(x, y, sigmoid),
            Activation::Silu => map_wide(x, y, |v| v * sigmoid(v)),
            Activation::Tanh => map_wide(x, y, tanh_f32),
            Activation::Gelu => map_wide(x, y, |v| apply_activation(Activation::Gelu, v)),
        },
        UnaryOp::Erf => map_wide(x, y, erf_f32),
        UnaryOp::Exp => map_wide(x, y, exp_op),
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
    if (lo..=hi).any(|i| sd(i) != full[i]) {
        return None;
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
/// small operand is the left one. `row`, when set, is `f` as a row kernel
/// ([`crate::kernels::binary_f32`]), which runs the contiguous runs.
#[inline(always)]
fn block_kernel<F: Fn(f32, f32) -> f32 + Sync>(
    full: &[f32],
    small: &[f32],
    y: &mut [f32],
    (_outer, mid, inner): (usize, usize, usize),
    swap: bool,
    f: &F,
    row: Option<(Isa, RowOp)>,
) {
    if inner == 1 {
        // rows are the outer planes; `small` runs along each
        par::rows_mut(y, mid, |rows, yr| {
            let fr = &full[rows.start * mid..rows.end * mid];
            for (fo, yo) in fr.chunks_exact(mid).zip(yr.chunks_exact_mut(mid)) {
                let (a, b) = if swap { (small, fo) } else { (fo, small) };
                if let Some((isa, op)) = row {
                    binary_f32_vv(isa, op, a, b, yo);
                    continue;
                }
                for ((yv, &av), &bv) in yo.iter_mut().zip(a).zip(b) {
                    *yv = f(av, bv);
                }
            }
        });
        return;
    }
    // rows of `inner` values that share one value of `small`
    par::rows_mut(y, inner, |rows, yr| {
        let fr = &full[rows.start * inner..rows.end * inner];
        let rs = fr.chunks_exact(inner).zip(yr.chunks_exact_mut(inner));
        for (i, (fr, yr)) in rs.enumerate() {
            let s = small[(rows.start + i) % mid];
            if let Some((isa, op)) = row {
                binary_f32_vs(isa, op, fr, s, swap, yr);
            } else if swap {
                for (yv, &bv) in yr.iter_mut().zip(fr) {
                    *yv = f(s, bv);
                }
            } else {
                for (yv, &av) in yr.iter_mut().zip(fr) {
                    *yv = f(av, s);
                }
            }
        }
    });
}

/// `y = f(a, b)` with broadcasting; `row`, when set, is `f` as a row kernel for the
/// contiguous cases.
#[inline(always)]
fn binary_kernel<F: Fn(f32, f32) -> f32 + Sync>(
    a: &ArrayViewD<f32>,
    b: &ArrayViewD<f32>,
    y: &mut ArrayViewMutD<f32>,
    f: F,
    row: Option<RowOp>,
) -> OpResult<()> {
    let row = row.map(|op| (crate::kernels::isa(), op));
    let shape = y.shape().to_vec();
    // Same shape, same memory order: one pass over the slices.
    if a.shape() == b.shape() && a.strides() == b.strides() && a.strides() == y.strides() {
        if let (Some(av), Some(bv), Some(yv)) = (
            a.as_slice_memory_order(),
            b.as_slice_memory_order(),
            y.as_slice_memory_order_mut(),
        ) {
            par::rows_mut(yv, 1, |r, yv| {
                let (av, bv) = (&av[r.clone()], &bv[r]);
                if let Some((isa, op)) = row {
                    binary_f32_vv(isa, op, av, bv, yv);
                    return;
                }
                for ((o, &p), &q) in yv.iter_mut().zip(av).zip(bv) {
                    *o = f(p, q);
                }
            });
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
                block_kernel(fs, &ss, ys, pat, swap, &f, row);
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
        BinaryOp::Add => binary_kernel(a, b, y, |p, q| p + q, Some(RowOp::Add)),
        BinaryOp::Sub => binary_kernel(a, b, y, |p, q| p - q, Some(RowOp::Sub)),
        BinaryOp::Mul => binary_kernel(a, b, y, |p, q| p * q, Some(RowOp::Mul)),
        BinaryOp::Div => binary_kernel(a, b, y, |p, q| p / q, None),
        BinaryOp::Pow => binary_kernel(a, b, y, f32::powf, None),
        BinaryOp::Max => binary_kernel(a, b, y, f32::max, None),
        BinaryOp::Min => binary_kernel(a, b, y, f32::min, None),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::test_util::*;
    use ndarray::{ArrayD, Dimension, IxDyn};

    fn unary(op: UnaryOp, x: &ArrayD<f32>) -> ArrayD<f32> {
        let mut y = ArrayD::from_elem(x.shape(), f32::NAN);
        run_unary(op, &x.view(), &mut y.view_mut()).unwrap();
        y
    }

    fn binary(op: BinaryOp, a: &ArrayViewD<f32>, b: &ArrayViewD<f32>) -> ArrayD<f32> {
        let s = broadcast_shape(&[a.shape(), b.shape()]).unwrap();
        let mut y = ArrayD::from_elem(IxDyn(&s), f32::NAN);
        run_binary(op, a, b, &mut y.view_mut()).unwrap();
        y
    }

    /// The Exp op: exp_f32's accuracy, exact 0 where e^x is below the normal range, the
    /// specials.
    #[test]
    fn exp_op_flushes_below_normal_range() {
        let x = ArrayD::from_shape_vec(
            IxDyn(&[8]),
            vec![
                1.0,
                -1.5,
                -87.0,
                -87.4,
                -1e30,
                f32::NEG_INFINITY,
                f32::INFINITY,
                f32::NAN,
            ],
        )
        .unwrap();
        let y = unary(UnaryOp::Exp, &x);
        let want = [std::f32::consts::E, (-1.5f32).exp(), (-87.0f32).exp()];
        for (g, w) in y.iter().zip(want) {
            assert!((g - w).abs() <= 2.0 * f32::EPSILON * w, "{g} vs {w}");
        }
        assert_eq!(
            &y.as_slice().unwrap()[3..7],
            &[0.0, 0.0, 0.0, f32::INFINITY]
        );
        assert!(y[7].is_nan());
    }

    /// exp_f32 against f64 exp on a dense sweep of its finite range, the clamps and NaN.
    #[test]
    fn exp_f32_is_within_2_ulp() {
        let mut worst = 0.0f64;
        let mut x = -87.0f32;
        while x <= 88.7 {
            let want = (x as f64).exp();
            let got = exp_f32(x) as f64;
            worst = worst.max((got - want).abs() / (want * f32::EPSILON as f64));
            x += 1.0 / 512.0;
        }
        assert!(worst <= 2.0, "exp_f32 worst error {worst} ulp");
        assert_eq!(exp_f32(0.0), 1.0);
        assert!(exp_f32(f32::NAN).is_nan());
        // overflow where e^x does; the low end clamped to a normal f32
        assert_eq!(exp_f32(88.8), f32::INFINITY);
        assert_eq!(exp_f32(f32::INFINITY), f32::INFINITY);
        assert!(exp_f32(f32::NEG_INFINITY) > 0.0 && exp_f32(-1e30) < 1e-37);
    }

    /// The rational tanh against f64 tanh on a dense sweep, the limits and specials.
    #[test]
    fn tanh_f32_is_within_a_few_ulp() {
        let mut worst = 0.0f64;
        let mut x = -12.0f32;
        while x <= 12.0 {
            let want = (x as f64).tanh();
            let err = (tanh_f32(x) as f64 - want).abs()
                / f64::EPSILON.max(want.abs() * f32::EPSILON as f64);
            worst = worst.max(err);
            x += 1.0 / 4096.0;
        }
        assert!(worst <= 4.0, "tanh_f32 worst error {worst} ulp");
        for (x, want) in [
            (0.0f32, 0.0f32),
            (1e-30, 1e-30),
            (f32::INFINITY, 1.0),
            (f32::NEG_INFINITY, -1.0),
        ] {
            assert!((tanh_f32(x) - want).abs() <= f32::EPSILON, "tanh({x})");
        }
        assert!(tanh_f32(-0.0).is_sign_negative());
        assert!(tanh_f32(f32::NAN).is_nan());
    }

    #[test]
    fn activations_by_hand() {
        use Activation::*;
        let cases: &[(Activation, f32, f32)] = &[
            (Relu, -1.0, 0.0),
            (Relu, 2.5, 2.5),
            (LeakyRelu(0.1), -2.0, -0.2),
            (LeakyRelu(0.1), 3.0, 3.0),
            (Clip(0.0, 6.0), 7.0, 6.0),
            (Clip(0.0, 6.0), -1.0, 0.0),
            (Clip(0.0, 6.0), 2.0, 2.0),
            (HardSwish, -3.0, 0.0),
            (HardSwish, 3.0, 3.0),
            (HardSwish, 1.0, 1.0 * (1.0 / 6.0 + 0.5)),
            (
                HardSigmoid {
                    alpha: 0.2,
                    beta: 0.5,
                },
                1.0,
                0.7,
            ),
            (
                HardSigmoid {
                    alpha: 0.2,
                    beta: 0.5,
                },
                10.0,
                1.0,
            ),
            (
                HardSigmoid {
                    alpha: 0.2,
                    beta: 0.5,
                },
                -10.0,
                0.0,
            ),
            (Sigmoid, 0.0, 0.5),
            (Sigmoid, 100.0, 1.0),
            (Sigmoid, -2.0, 0.119_202_92),
            (Silu, 2.0, 1.761_594_2),
            (Tanh, 0.5, 0.462_117_16),
            (Gelu, 1.0, 0.841_344_7),
            (Gelu, -1.0, -0.158_655_26),
            (Gelu, 0.0, 0.0),
        ];
        for &(a, x, want) in cases {
            let got = apply_activation(a, x);
            assert!(close(got, want, 1e-6), "{a:?}({x}) = {got}, want {want}");
        }
        // Large magnitudes stay finite and exact at the limits.
        let s = apply_activation(Sigmoid, -100.0);
        assert!((0.0..1e-40).contains(&s));
        assert_eq!(apply_activation(Sigmoid, -1000.0), 0.0);
        assert_eq!(apply_activation(Sigmoid, 1000.0), 1.0);
        assert_eq!(apply_activation(Silu, -1000.0), -0.0);
        assert!(apply_activation(Relu, f32::NAN).is_nan());
    }

    #[test]
    fn erf_accuracy() {
        let mut worst = 0.0f64;
        for i in -60_000..=60_000 {
            let x = i as f32 * 1e-4;
            let e = (erf_f32(x) as f64 - libm::erf(x as f64)).abs();
            worst = worst.max(e);
        }
        // tiny arguments keep their relative accuracy (erf(x) ~ 1.128 x)
        let mut x = 1e-38f32;
        while x < 0.1 {
            let want = libm::erf(x as f64);
            let rel = (erf_f32(x) as f64 - want).abs() / want;
            assert!(rel < 1e-6, "erf({x}) relative error {rel}");
            assert_eq!(erf_f32(-x), -erf_f32(x));
            x *= 1.37;
        }
        // beyond the sweep, and the edges
        for x in [
            9.0f32,
            -30.0,
            1e30,
            f32::INFINITY,
            f32::NEG_INFINITY,
            1.0,
            -1.0,
            0.999_999_9,
            3.99,
            4.0,
            4.01,
        ] {
            let e = (erf_f32(x) as f64 - libm::erf(x as f64)).abs();
            worst = worst.max(e);
            assert!(erf_f32(x).abs() <= 1.0, "erf({x}) = {}", erf_f32(x));
        }
        assert_eq!(erf_f32(f32::INFINITY), 1.0);
        assert_eq!(erf_f32(f32::NEG_INFINITY), -1.0);
        assert!(erf_f32(f32::NAN).is_nan());
        assert_eq!(erf_f32(-0.0).to_bits(), (-0.0f32).to_bits());
        assert!(worst < 4e-7, "erf max error {worst}");
        let x = ArrayD::from_shape_vec(IxDyn(&[3]), vec![0.0, 1.0, -0.5]).unwrap();
        assert_close(
            &unary(UnaryOp::Erf, &x),
            &ArrayD::from_shape_vec(IxDyn(&[3]), vec![0.0, 0.842_700_8, -0.520_499_9]).unwrap(),
            1e-6,
        );
    }

    #[test]
    fn unary_by_hand() {
        let x =
            ArrayD::from_shape_vec(IxDyn(&[2, 3]), vec![0.5, 1.5, 2.5, -0.5, -1.5, -2.6]).unwrap();
        let r = unary(UnaryOp::Round, &x);
        assert_eq!(
            r.iter().copied().collect::<Vec<_>>(),
            vec![0.0, 2.0, 2.0, -0.0, -2.0, -3.0]
        );
        let f = unary(UnaryOp::Floor, &x);
        assert_eq!(
            f.iter().copied().collect::<Vec<_>>(),
            vec![0.0, 1.0, 2.0, -1.0, -2.0, -3.0]
        );
        let c = unary(UnaryOp::Ceil, &x);
        assert_eq!(
            c.iter().copied().collect::<Vec<_>>(),
            vec![1.0, 2.0, 3.0, -0.0, -1.0, -2.0]
        );
        let z = ArrayD::from_shape_vec(IxDyn(&[2]), vec![0.0, -0.0]).unwrap();
        let rz = unary(UnaryOp::Reciprocal, &z);
        assert_eq!(
            rz.iter().copied().collect::<Vec<_>>(),
            vec![f32::INFINITY, f32::NEG_INFINITY]
        );
        assert!(unary(UnaryOp::Log, &z)[[0]] == f32::NEG_INFINITY);
    }

    fn scalar_unary(op: UnaryOp, v: f32) -> f32 {
        match op {
            UnaryOp::Act(a) => apply_activation(a, v),
            UnaryOp::Erf => libm::erf(v as f64) as f32,
            UnaryOp::Exp => v.exp(),
            UnaryOp::Log => v.ln(),
            UnaryOp::Sqrt => v.sqrt(),
            UnaryOp::Neg => -v,
            UnaryOp::Abs => v.abs(),
            UnaryOp::Reciprocal => 1.0 / v,
            UnaryOp::Floor => v.floor(),
            UnaryOp::Ceil => v.ceil(),
            UnaryOp::Round => v.round_ties_even(),
            UnaryOp::Identity => v,
        }
    }

    #[test]
    fn unary_random_layouts() {
        use Activation::*;
        let ops = [
            UnaryOp::Act(Relu),
            UnaryOp::Act(LeakyRelu(0.01)),
            UnaryOp::Act(Clip(-0.5, 0.5)),
            UnaryOp::Act(HardSwish),
            UnaryOp::Act(HardSigmoid {
                alpha: 0.2,
                beta: 0.5,
            }),
            UnaryOp::Act(Sigmoid),
            UnaryOp::Act(Silu),
            UnaryOp::Act(Tanh),
            UnaryOp::Act(Gelu),
            UnaryOp::Erf,
            UnaryOp::Exp,
            UnaryOp::Log,
            UnaryOp::Sqrt,
            UnaryOp::Neg,
            UnaryOp::Abs,
            UnaryOp::Reciprocal,
            UnaryOp::Floor,
            UnaryOp::Ceil,
            UnaryOp::Round,
            UnaryOp::Identity,
        ];
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        for shape in [&[1usize][..], &[7], &[3, 13], &[1, 3, 7, 17], &[2, 1, 5]] {
            let x = rng.arr_affine(shape, 8.0, 0.0);
            let want = |op| x.mapv(|v| scalar_unary(op, v));
            for op in ops {
                let w = want(op);
                assert_close(&unary(op, &x), &w, 1e-6);
                assert_close(&unary(op, &fortran(&x)), &w, 1e-6);
                // transposed input and transposed output
                let xt = x.t();
                let mut yt = ArrayD::zeros(xt.shape());
                run_unary(op, &xt, &mut yt.view_mut()).unwrap();
                assert_close(&yt, &w.t().to_owned(), 1e-6);
                let mut yf = fortran(&ArrayD::zeros(x.shape()));
                run_unary(op, &x.view(), &mut yf.view_mut()).unwrap();
                assert_close(&yf, &w, 1e-6);
            }
        }
    }

    #[test]
    fn broadcast_shapes() {
        assert_eq!(
            broadcast_shape(&[&[2, 3, 4], &[3, 1]]).unwrap(),
            vec![2, 3, 4]
        );
        assert_eq!(broadcast_shape(&[&[1], &[]]).unwrap(), vec![1]);
        assert_eq!(broadcast_shape(&[&[], &[]]).unwrap(), Vec::<usize>::new());
        assert_eq!(broadcast_shape(&[&[0], &[1]]).unwrap(), vec![0]);
        assert_eq!(
            broadcast_shape(&[&[1, 5], &[4, 1], &[3, 1, 1]]).unwrap(),
            vec![3, 4, 5]
        );
        assert!(broadcast_shape(&[&[2], &[3]]).is_err());
        assert!(broadcast_shape(&[&[0], &[2]]).is_err());
        let e = broadcast_shape(&[&[2, 3], &[4, 3]])
            .unwrap_err()
            .to_string();
        assert!(e.contains("[2, 3]") && e.contains("[4, 3]"), "{e}");
    }

    #[test]
    fn binary_by_hand() {
        let a = ArrayD::from_shape_vec(IxDyn(&[2, 2]), vec![1.0, 2.0, 3.0, 4.0]).unwrap();
        let b = ArrayD::from_shape_vec(IxDyn(&[2]), vec![10.0, 0.0]).unwrap();
        let v = |x: ArrayD<f32>| x.iter().copied().collect::<Vec<_>>();
        assert_eq!(
            v(binary(BinaryOp::Add, &a.view(), &b.view())),
            vec![11.0, 2.0, 13.0, 4.0]
        );
        assert_eq!(
            v(binary(BinaryOp::Sub, &b.view(), &a.view())),
            vec![9.0, -2.0, 7.0, -4.0]
        );
        assert_eq!(
            v(binary(BinaryOp::Div, &a.view(), &b.view())),
            vec![0.1, f32::INFINITY, 0.3, f32::INFINITY]
        );
        assert_eq!(
            v(binary(BinaryOp::Pow, &a.view(), &b.view())),
            vec![1.0, 1.0, 59049.0, 1.0]
        );
        assert_eq!(
            v(binary(BinaryOp::Max, &a.view(), &b.view())),
            vec![10.0, 2.0, 10.0, 4.0]
        );
        assert_eq!(
            v(binary(BinaryOp::Min, &a.view(), &b.view())),
            vec![1.0, 0.0, 3.0, 0.0]
        );
        let col = ArrayD::from_shape_vec(IxDyn(&[2, 1]), vec![2.0, 3.0]).unwrap();
        assert_eq!(
            v(binary(BinaryOp::Mul, &col.view(), &b.view())),
            vec![20.0, 0.0, 30.0, 0.0]
        );
        let s = ArrayD::from_elem(IxDyn(&[]), 2.0f32);
        assert_eq!(
            v(binary(BinaryOp::Sub, &s.view(), &a.view())),
            vec![1.0, 0.0, -1.0, -2.0]
        );
        assert_eq!(
            v(binary(BinaryOp::Div, &a.view(), &s.view())),
            vec![0.5, 1.0, 1.5, 2.0]
        );
    }

    fn naive_binary(op: BinaryOp, a: &ArrayViewD<f32>, b: &ArrayViewD<f32>) -> ArrayD<f32> {
        let s = broadcast_shape(&[a.shape(), b.shape()]).unwrap();
        let f = |p: f32, q: f32| match op {
            BinaryOp::Add => p + q,
            BinaryOp::Sub => p - q,
            BinaryOp::Mul => p * q,
            BinaryOp::Div => p / q,
            BinaryOp::Pow => p.powf(q),
            BinaryOp::Max => p.max(q),
            BinaryOp::Min => p.min(q),
        };
        let pick = |x: &ArrayViewD<f32>, idx: &[usize]| {
            let off = idx.len() - x.ndim();
            let i: Vec<usize> = (0..x.ndim())
                .map(|k| if x.shape()[k] == 1 { 0 } else { idx[off + k] })
                .collect();
            x[IxDyn(&i)]
        };
        ArrayD::from_shape_fn(IxDyn(&s), |idx| {
            let idx = idx.slice().to_vec();
            f(pick(a, &idx), pick(b, &idx))
        })
    }

    #[test]
    fn binary_random_broadcasts_and_layouts() {
        let pairs: &[(&[usize], &[usize])] = &[
            (&[3, 7, 13], &[3, 7, 13]),
            (&[1], &[1]),
            (&[2, 3, 7, 5], &[1, 3, 1, 1]),
            (&[1, 13, 1, 1], &[3, 13, 7, 1]),
            (&[2, 17, 13], &[13]),
            (&[17], &[3, 7, 17]),
            (&[3, 1, 7, 1], &[1, 13, 1, 5]),
            (&[2, 3, 7], &[]),
            (&[], &[7, 3]),
            (&[1, 1, 1], &[3, 5, 7]),
            (&[3, 7, 1], &[1, 5]),
            (&[2, 3, 5, 7], &[3, 5, 1]),
            (&[2, 3, 5, 7], &[2, 3, 1, 1]),
            (&[4, 1, 6], &[4, 1, 6]),
        ];
        let ops = [
            BinaryOp::Add,
            BinaryOp::Sub,
            BinaryOp::Mul,
            BinaryOp::Div,
            BinaryOp::Pow,
            BinaryOp::Max,
            BinaryOp::Min,
        ];
        let mut rng = Rng(12345);
        for &(sa, sb) in pairs {
            let a = rng.arr_affine(sa, 3.0, 0.0).mapv(|v| v.abs() + 0.1);
            let b = rng.arr_affine(sb, 3.0, 0.0);
            for op in ops {
                let want = naive_binary(op, &a.view(), &b.view());
                let (af, bf) = (fortran(&a), fortran(&b));
                for (x, z) in [
                    (a.view(), b.view()),
                    (af.view(), b.view()),
                    (a.view(), bf.view()),
                    (af.view(), bf.view()),
                ] {
                    assert_close(&binary(op, &x, &z), &want, 1e-6);
                    // output in column-major memory
                    let mut yf = fortran(&ArrayD::zeros(want.shape()));
                    run_binary(op, &x, &z, &mut yf.view_mut()).unwrap();
                    assert_close(&yf, &want, 1e-6);
                }
                // reversed-stride views
                let ar = a.slice_each_axis(|_| ndarray::Slice::new(0, None, -1));
                let br = b.slice_each_axis(|_| ndarray::Slice::new(0, None, -1));
                assert_close(&binary(op, &ar, &br), &naive_binary(op, &ar, &br), 1e-6);
                // swapped operands
                let want2 = naive_binary(op, &b.view(), &a.view());
                assert_close(&binary(op, &b.view(), &a.view()), &want2, 1e-6);
            }
        }
    }

    #[test]
    fn block_patterns() {
        assert_eq!(
            block_pattern(&[1, 3, 1, 1], &[2, 3, 5, 7]),
            Some((2, 3, 35))
        );
        assert_eq!(block_pattern(&[13], &[2, 17, 13]), Some((34, 13, 1)));
        assert_eq!(block_pattern(&[], &[2, 3]), Some((1, 1, 6)));
        assert_eq!(block_pattern(&[3, 5, 1], &[2, 3, 5, 7]), Some((2, 15, 7)));
        assert_eq!(block_pattern(&[2, 1, 5], &[2, 3, 5]), None);
    }

    #[test]
    fn shape_errors() {
        let a = ArrayD::<f32>::zeros(IxDyn(&[2, 3]));
        let b = ArrayD::<f32>::zeros(IxDyn(&[4, 3]));
        let mut y = ArrayD::<f32>::zeros(IxDyn(&[2, 3]));
        let e = run_binary(BinaryOp::Add, &a.view(), &b.view(), &mut y.view_mut()).unwrap_err();
        assert!(matches!(e, OpError::Shape(_)));
        assert!(e.to_string().contains("[4, 3]"), "{e}");
        let mut wrong = ArrayD::<f32>::zeros(IxDyn(&[3, 2]));
        assert!(run_binary(BinaryOp::Mul, &a.view(), &a.view(), &mut wrong.view_mut()).is_err());
        assert!(run_unary(UnaryOp::Exp, &a.view(), &mut wrong.view_mut()).is_err());
        let x3 = ArrayD::<f32>::zeros(IxDyn(&[2, 3, 4]));
        let mut y3 = ArrayD::<f32>::zeros(IxDyn(&[2, 3, 4]));
        assert!(run_head_channel_sum(&x3.view(), &mut y3.view_mut()).is_err());
        let x4 = ArrayD::<f32>::zeros(IxDyn(&[1, 2, 3, 4]));
        let mut y4 = ArrayD::<f32>::zeros(IxDyn(&[1, 2, 4, 3]));
        assert!(run_head_channel_sum(&x4.view(), &mut y4.view_mut()).is_err());
    }

    #[test]
    fn head_channel_sum() {
        // [1, 2, 2, 3]: head 0 rows (1,2,3),(4,5,6); head 1 rows (1,1,1),(0,2,-1)
        let x = ArrayD::from_shape_vec(
            IxDyn(&[1, 2, 2, 3]),
            vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 1.0, 1.0, 1.0, 0.0, 2.0, -1.0],
        )
        .unwrap();
        let mut y = ArrayD::from_elem(IxDyn(&[1, 2, 2, 3]), f32::NAN);
        run_head_channel_sum(&x.view(), &mut y.view_mut()).unwrap();
        assert_eq!(
            y.iter().copied().collect::<Vec<_>>(),
            vec![5.0, 7.0, 9.0, 5.0, 7.0, 9.0, 1.0, 3.0, 0.0, 1.0, 3.0, 0.0]
        );
        let mut rng = Rng(777);
        for shape in [
            [1usize, 1, 1, 1],
            [2, 3, 7, 13],
            [3, 1, 17, 5],
            [1, 4, 3, 1],
        ] {
            let x = rng.arr(&shape);
            let want = ArrayD::from_shape_fn(IxDyn(&shape), |idx| {
                (0..shape[2])
                    .map(|j| x[[idx[0], idx[1], j, idx[3]]])
                    .sum::<f32>()
            });
            for xv in [x.clone(), fortran(&x)] {
                let mut y = ArrayD::zeros(IxDyn(&shape));
                run_head_channel_sum(&xv.view(), &mut y.view_mut()).unwrap();
                assert_close(&y, &want, 1e-5);
                let mut yf = fortran(&ArrayD::zeros(IxDyn(&shape)));
                run_head_channel_sum(&xv.view(), &mut yf.view_mut()).unwrap();
                assert_close(&yf, &want, 1e-5);
            }
        }
    }
}
