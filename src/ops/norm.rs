//! LayerNormalization and BatchNormalization (inference).

use super::{OpError, OpResult};
use crate::kernels::{par, SharedOut};
use ndarray::{ArrayViewD, ArrayViewMutD, Axis, Zip};
use std::ops::Range;

/// `$body` (a call of `#[inline(always)]` functions) compiled for the host's widest vectors:
/// the crate's x86-64 baseline is SSE2, two f64 lanes and a scalar square root. The same
/// operations either way, so the same results. (A closure run inside a `#[target_feature]`
/// function stayed a baseline function of its own.)
macro_rules! on_widest {
    ($($arg:ident: $ty:ty),* => $body:expr) => {{
        #[cfg(target_arch = "x86_64")]
        #[target_feature(enable = "avx512f,avx2,fma")]
        #[allow(clippy::too_many_arguments)] // the body's arguments, by name
        unsafe fn wide($($arg: $ty),*) {
            $body
        }
        #[cfg(target_arch = "x86_64")]
        let wide_done = crate::kernels::isa() == crate::kernels::Isa::Avx512 && {
            // SAFETY: `kernels::isa` only reports ISAs the host runs.
            unsafe { wide($($arg),*) };
            true
        };
        #[cfg(not(target_arch = "x86_64"))]
        let wide_done = false;
        if !wide_done {
            $body
        }
    }};
}

/// True when `p` broadcasts unidirectionally to `target`.
fn broadcasts_to(p: &[usize], target: &[usize]) -> bool {
    p.len() <= target.len()
        && p.iter()
            .rev()
            .zip(target.iter().rev())
            .all(|(&a, &b)| a == b || a == 1)
}

/// Shape check for LayerNorm: x, scale (broadcastable to x[axis..]), optional bias.
pub fn layer_norm_shape(axis: usize, inputs: &[&[usize]]) -> OpResult<Vec<usize>> {
    if !(2..=3).contains(&inputs.len()) {
        return Err(OpError::Arity {
            expected: 3,
            got: inputs.len(),
        });
    }
    let x = inputs[0];
    if axis >= x.len() {
        return Err(OpError::Shape(format!(
            "LayerNorm axis {axis} out of range for shape {x:?}"
        )));
    }
    let norm = &x[axis..];
    for p in &inputs[1..] {
        if !broadcasts_to(p, norm) {
            return Err(OpError::Shape(format!(
                "LayerNorm: parameter shape {p:?} does not broadcast to {norm:?} (x {x:?}, axis {axis})"
            )));
        }
    }
    Ok(x.to_vec())
}

/// Mean of a slice, accumulated in f64.
fn mean(xs: &[f32]) -> f64 {
    xs.iter().map(|&v| v as f64).sum::<f64>() / xs.len() as f64
}

/// Reference LayerNorm over axes `axis..rank`.
pub fn run_layer_norm(
    axis: usize,
    epsilon: f32,
    inputs: &[ArrayViewD<f32>],
    y: &mut ArrayViewMutD<f32>,
) -> OpResult<()> {
    let shapes: Vec<&[usize]> = inputs.iter().map(|v| v.shape()).collect();
    let out = layer_norm_shape(axis, &shapes)?;
    if out.as_slice() != y.shape() {
        return Err(OpError::Shape(format!(
            "LayerNorm: input {out:?}, output {:?}",
            y.shape()
        )));
    }
    let x = &inputs[0];
    let norm_shape = &x.shape()[axis..];
    let n: usize = norm_shape.iter().product();
    if n == 0 || x.is_empty() {
        return Ok(());
    }
    let param = |p: &ArrayViewD<f32>| -> OpResult<Vec<f32>> {
        let b = p.broadcast(norm_shape).ok_or_else(|| {
            OpError::Shape(format!(
                "LayerNorm: cannot broadcast {:?} to {norm_shape:?}",
                p.shape()
            ))
        })?;
        Ok(b.iter().copied().collect())
    };
    let scale = param(&inputs[1])?;
    let bias = match inputs.get(2) {
        Some(b) => param(b)?,
        None => vec![0.0; n],
    };
    let xc = x.as_standard_layout();
    let xs = xc
        .as_slice()
        .ok_or_else(|| OpError::Shape("LayerNorm: input not contiguous".into()))?;
    let run_rows = |xs: &[f32], ys: &mut [f32]| {
        if n <= SHORT_ROW {
            // short rows (LayerNorm over a channels-last map's few channels): blocks of rows
            // transposed so the arithmetic runs across rows, as ChannelLayerNorm's
            let (scale, bias) = (&scale[..], &bias[..]);
            on_widest!(xs: &[f32], ys: &mut [f32], n: usize, epsilon: f32, scale: &[f32], bias: &[f32]
                => short_rows(xs, ys, n, epsilon, scale, bias));
            return;
        }
        for (xr, yr) in xs.chunks_exact(n).zip(ys.chunks_exact_mut(n)) {
            let m = mean(xr);
            let var = xr.iter().map(|&v| (v as f64 - m).powi(2)).sum::<f64>() / n as f64;
            let inv = (1.0 / (var + epsilon as f64).sqrt()) as f32;
            let m = m as f32;
            for (((o, &v), &s), &b) in yr.iter_mut().zip(xr).zip(&scale).zip(&bias) {
                *o = (v - m) * inv * s + b;
            }
        }
    };
    // rows in parallel on rayon's current pool when large
    let run = |ys: &mut [f32]| {
        par::rows_mut(ys, n, |rows, ys| {
            run_rows(&xs[rows.start * n..rows.end * n], ys)
        })
    };
    if let Some(ys) = y.as_slice_mut() {
        run(ys);
    } else {
        let mut buf = vec![0.0f32; xs.len()];
        run(&mut buf);
        for (o, &v) in y.iter_mut().zip(&buf) {
            *o = v;
        }
    }
    Ok(())
}

/// Shape check for ChannelLayerNorm: x `[N,C,...]`, scale and optional bias broadcastable to
/// `[C]`.
pub fn channel_layer_norm_shape(inputs: &[&[usize]]) -> OpResult<Vec<usize>> {
    if !(2..=3).contains(&inputs.len()) {
        return Err(OpError::Arity {
            expected: 3,
            got: inputs.len(),
        });
    }
    let x = inputs[0];
    if x.len() < 2 {
        return Err(OpError::Shape(format!(
            "ChannelLayerNorm expects x of rank >= 2, got {x:?}"
        )));
    }
    for p in &inputs[1..] {
        if !broadcasts_to(p, &x[1..2]) {
            return Err(OpError::Shape(format!(
                "ChannelLayerNorm: parameter shape {p:?} does not broadcast to [{}] (x {x:?})",
                x[1]
            )));
        }
    }
    Ok(x.to_vec())
}

/// Pixels per block of [`run_channel_layer_norm`]: a channel's run of a block is contiguous,
/// so the per-pixel sums vectorise across pixels.
const CHANNEL_BLOCK: usize = 64;

/// Longest last-axis row that [`run_layer_norm`] normalises across rows (as
/// [`norm_across`]) instead of one row at a time; one row's f64 sums, square root and
/// division took 2 ns at 4 values (the ONNX Runtime-quantized detector's LayerNorms over
/// LDA-AQU's 4 offset channels).
const SHORT_ROW: usize = 64;

/// [`run_channel_layer_norm`]'s pixels `px` of one image `img` (`c` planes of `hw`) into the
/// output's planes at `dst`.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn channel_piece(
    img: &[f32],
    dst: SharedOut,
    hw: usize,
    c: usize,
    px: Range<usize>,
    epsilon: f32,
    scale: &[f32],
    bias: &[f32],
) {
    for p0 in px.clone().step_by(CHANNEL_BLOCK) {
        let pn = CHANNEL_BLOCK.min(px.end - p0);
        norm_across(
            |ch| &img[ch * hw + p0..ch * hw + p0 + pn],
            // SAFETY: plane `ch`, pixels p0..p0 + pn of this image: inside the output, and
            // written by this piece only.
            |ch| unsafe { std::slice::from_raw_parts_mut(dst.at(ch * hw + p0), pn) },
            (c, pn, epsilon),
            scale,
            bias,
        );
    }
}

/// [`run_layer_norm`]'s rows of `n` (at most [`SHORT_ROW`]) values, `xs` into `ys`, a block
/// of [`CHANNEL_BLOCK`] rows at a time transposed to planes for [`norm_across`] and back.
#[inline(always)]
fn short_rows(xs: &[f32], ys: &mut [f32], n: usize, epsilon: f32, scale: &[f32], bias: &[f32]) {
    // the usual widths known at compile time, so the transposes unroll and vectorise (x86-64
    // only: the boards' models have ChannelLayerNorm, and each copy costs device-binary bytes)
    #[cfg(not(target_arch = "x86_64"))]
    return short_rows_n::<0>(xs, ys, n, epsilon, scale, bias);
    #[cfg(target_arch = "x86_64")]
    match n {
        4 => short_rows_n::<4>(xs, ys, n, epsilon, scale, bias),
        8 => short_rows_n::<8>(xs, ys, n, epsilon, scale, bias),
        16 => short_rows_n::<16>(xs, ys, n, epsilon, scale, bias),
        32 => short_rows_n::<32>(xs, ys, n, epsilon, scale, bias),
        _ => short_rows_n::<0>(xs, ys, n, epsilon, scale, bias),
    }
}

/// [`short_rows`] for rows of `N` values, or of `n` when `N` is 0.
#[inline(always)]
fn short_rows_n<const N: usize>(
    xs: &[f32],
    ys: &mut [f32],
    n: usize,
    epsilon: f32,
    scale: &[f32],
    bias: &[f32],
) {
    let n = if N > 0 { N } else { n };
    const LEN: usize = SHORT_ROW * CHANNEL_BLOCK;
    let (mut xt, mut yt) = ([0f32; LEN], [0f32; LEN]);
    for (xb, yb) in xs
        .chunks(n * CHANNEL_BLOCK)
        .zip(ys.chunks_mut(n * CHANNEL_BLOCK))
    {
        let pn = xb.len() / n;
        for (i, row) in xb.chunks_exact(n).enumerate() {
            for (ch, &v) in row.iter().enumerate() {
                xt[ch * CHANNEL_BLOCK + i] = v;
            }
        }
        let yp = yt.as_mut_ptr();
        norm_across(
            |ch| &xt[ch * CHANNEL_BLOCK..ch * CHANNEL_BLOCK + pn],
            // SAFETY: plane `ch` of `yt` (ch < n <= SHORT_ROW), each asked for once
            |ch| unsafe { std::slice::from_raw_parts_mut(yp.add(ch * CHANNEL_BLOCK), pn) },
            (n, pn, epsilon),
            scale,
            bias,
        );
        for (i, row) in yb.chunks_exact_mut(n).enumerate() {
            for (ch, o) in row.iter_mut().enumerate() {
                *o = yt[ch * CHANNEL_BLOCK + i];
            }
        }
    }
}

/// LayerNorm of `pn` (at most [`CHANNEL_BLOCK`]) vectors of `c` values held planar (value
/// `ch` of every vector in `x(ch)`, out to `y(ch)`), vectorised across the vectors: per vector
/// the mean and variance in f64 over its values in order, then
/// `(v - mean) * (1 / sqrt(var + eps)) * scale + bias` in f32, a row of [`run_layer_norm`]'s
/// arithmetic exactly.
#[inline(always)]
fn norm_across<'a, 'b>(
    x: impl Fn(usize) -> &'a [f32],
    mut y: impl FnMut(usize) -> &'b mut [f32],
    (c, pn, epsilon): (usize, usize, f32),
    scale: &[f32],
    bias: &[f32],
) {
    let cf = c as f64;
    let mut acc = [0f64; CHANNEL_BLOCK];
    let mut mean = [0f64; CHANNEL_BLOCK];
    let (mut m32, mut inv) = ([0f32; CHANNEL_BLOCK], [0f32; CHANNEL_BLOCK]);
    for ch in 0..c {
        for (a, &v) in acc.iter_mut().zip(x(ch)) {
            *a += v as f64;
        }
    }
    for (m, &a) in mean.iter_mut().zip(&acc[..pn]) {
        *m = a / cf;
    }
    acc[..pn].fill(0.0);
    for ch in 0..c {
        for ((a, &m), &v) in acc.iter_mut().zip(&mean).zip(x(ch)) {
            let d = v as f64 - m;
            *a += d * d;
        }
    }
    for i in 0..pn {
        inv[i] = (1.0 / (acc[i] / cf + epsilon as f64).sqrt()) as f32;
        m32[i] = mean[i] as f32;
    }
    for ch in 0..c {
        let (s, bi) = (scale[ch], bias[ch]);
        for (((o, &v), &m), &k) in y(ch).iter_mut().zip(x(ch)).zip(&m32).zip(&inv) {
            *o = (v - m) * k * s + bi;
        }
    }
}

/// ChannelLayerNorm: LayerNorm over axis 1 of `[N,C,...]` for every pixel. Each pixel gets
/// exactly the arithmetic of [`run_layer_norm`] over its channels (f64 sums in channel order,
/// the same f32 expression), so it equals Transpose, LayerNorm over the last axis and
/// Transpose back bit for bit; pixel ranges run in parallel on rayon's current pool when large.
pub fn run_channel_layer_norm(
    epsilon: f32,
    inputs: &[ArrayViewD<f32>],
    y: &mut ArrayViewMutD<f32>,
) -> OpResult<()> {
    let shapes: Vec<&[usize]> = inputs.iter().map(|v| v.shape()).collect();
    let out = channel_layer_norm_shape(&shapes)?;
    if out.as_slice() != y.shape() {
        return Err(OpError::Shape(format!(
            "ChannelLayerNorm: input {out:?}, output {:?}",
            y.shape()
        )));
    }
    let (n, c) = (out[0], out[1]);
    let hw: usize = out[2..].iter().product();
    if n * c * hw == 0 {
        return Ok(());
    }
    let param = |p: &ArrayViewD<f32>| -> Vec<f32> {
        let b = p.broadcast(c).expect("checked by the shape");
        b.iter().copied().collect()
    };
    let scale = param(&inputs[1]);
    let bias = inputs.get(2).map(param).unwrap_or_else(|| vec![0.0; c]);
    let xc = inputs[0].as_standard_layout();
    let xs = xc
        .as_slice()
        .ok_or_else(|| OpError::Shape("ChannelLayerNorm: input not contiguous".into()))?;
    let mut buf = vec![];
    let ys = match y.as_slice_mut() {
        Some(ys) => ys,
        None => {
            buf = vec![0.0f32; xs.len()];
            &mut buf[..]
        }
    };
    for b in 0..n {
        let img = &xs[b * c * hw..(b + 1) * c * hw];
        let dst = SharedOut(ys[b * c * hw..].as_mut_ptr());
        // Pieces are pixel ranges; each writes its range of every channel's plane.
        par::ranges(hw, c, |px| {
            let (scale, bias) = (&scale[..], &bias[..]);
            let (p0, p1) = (px.start, px.end);
            on_widest!(img: &[f32], dst: SharedOut, hw: usize, c: usize, p0: usize, p1: usize,
                epsilon: f32, scale: &[f32], bias: &[f32]
                => channel_piece(img, dst, hw, c, p0..p1, epsilon, scale, bias))
        });
    }
    if !buf.is_empty() {
        for (o, &v) in y.iter_mut().zip(&buf) {
            *o = v;
        }
    }
    Ok(())
}

/// Shape check for BatchNorm: x `[N,C,...]`, scale, bias, mean, var `[C]`.
pub fn batch_norm_shape(inputs: &[&[usize]]) -> OpResult<Vec<usize>> {
    if inputs.len() != 5 {
        return Err(OpError::Arity {
            expected: 5,
            got: inputs.len(),
        });
    }
    let x = inputs[0];
    if x.len() < 2 {
        return Err(OpError::Shape(format!(
            "BatchNorm expects x of rank >= 2, got {x:?}"
        )));
    }
    let c = x[1];
    for p in &inputs[1..] {
        if *p != [c] {
            return Err(OpError::Shape(format!(
                "BatchNorm: parameter shape {p:?} is not [{c}] for x {x:?}"
            )));
        }
    }
    Ok(x.to_vec())
}

/// Reference BatchNorm.
pub fn run_batch_norm(
    epsilon: f32,
    inputs: &[ArrayViewD<f32>],
    y: &mut ArrayViewMutD<f32>,
) -> OpResult<()> {
    let shapes: Vec<&[usize]> = inputs.iter().map(|v| v.shape()).collect();
    let out = batch_norm_shape(&shapes)?;
    if out.as_slice() != y.shape() {
        return Err(OpError::Shape(format!(
            "BatchNorm: input {out:?}, output {:?}",
            y.shape()
        )));
    }
    let x = &inputs[0];
    let (scale, bias, mean, var) = (&inputs[1], &inputs[2], &inputs[3], &inputs[4]);
    let params = Zip::from(scale)
        .and(bias)
        .and(mean)
        .and(var)
        .map_collect(|&s, &b, &m, &v| {
            let inv = 1.0 / (v + epsilon).sqrt();
            (m, inv, s, b)
        });
    for (c, &(m, inv, s, b)) in params.iter().enumerate() {
        Zip::from(y.index_axis_mut(Axis(1), c))
            .and(x.index_axis(Axis(1), c))
            .for_each(|o, &v| *o = (v - m) * inv * s + b);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::test_util::*;
    use ndarray::{ArrayD, Dimension, IxDyn};

    #[test]
    fn layer_norm_by_hand() {
        // rows (1,2,3) and (2,2,2): mean 2 / var 2/3, mean 2 / var 0
        let x = arr(&[2, 3], &[1.0, 2.0, 3.0, 2.0, 2.0, 2.0]);
        let scale = arr(&[3], &[1.0, 2.0, 3.0]);
        let bias = arr(&[3], &[0.5, 0.0, -0.5]);
        let mut y = ArrayD::from_elem(IxDyn(&[2, 3]), f32::NAN);
        run_layer_norm(
            1,
            1e-9,
            &[x.view(), scale.view(), bias.view()],
            &mut y.view_mut(),
        )
        .unwrap();
        let k = 1.0 / (2.0f32 / 3.0).sqrt();
        assert_close(
            &y,
            &arr(&[2, 3], &[-k + 0.5, 0.0, 3.0 * k - 0.5, 0.5, 0.0, -0.5]),
            1e-6,
        );
        // epsilon matters for a constant row; no bias input
        let mut y = ArrayD::from_elem(IxDyn(&[2, 3]), f32::NAN);
        run_layer_norm(
            0,
            1.0,
            &[x.view(), arr(&[1], &[2.0]).view()],
            &mut y.view_mut(),
        )
        .unwrap();
        let m = 2.0f32;
        let var = (1.0 + 0.0 + 1.0 + 0.0 + 0.0 + 0.0) / 6.0;
        let want = x.mapv(|v| (v - m) / (var + 1.0f32).sqrt() * 2.0);
        assert_close(&y, &want, 1e-6);
    }

    fn naive_layer_norm(
        axis: usize,
        eps: f32,
        x: &ArrayD<f32>,
        s: &ArrayD<f32>,
        b: &ArrayD<f32>,
    ) -> ArrayD<f32> {
        let n: usize = x.shape()[axis..].iter().product();
        let outer: usize = x.shape()[..axis].iter().product();
        let flat: Vec<f64> = x.iter().map(|&v| v as f64).collect();
        let sb = s.broadcast(&x.shape()[axis..]).unwrap();
        let bb = b.broadcast(&x.shape()[axis..]).unwrap();
        let sv: Vec<f64> = sb.iter().map(|&v| v as f64).collect();
        let bv: Vec<f64> = bb.iter().map(|&v| v as f64).collect();
        let mut out = Vec::new();
        for o in 0..outer {
            let row = &flat[o * n..(o + 1) * n];
            let mean = row.iter().sum::<f64>() / n as f64;
            let var = row.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / n as f64;
            for j in 0..n {
                out.push(((row[j] - mean) / (var + eps as f64).sqrt() * sv[j] + bv[j]) as f32);
            }
        }
        ArrayD::from_shape_vec(IxDyn(x.shape()), out).unwrap()
    }

    #[test]
    fn layer_norm_random() {
        let mut rng = Rng(21);
        const SIZES: [usize; 5] = [1, 3, 7, 13, 17];
        for _ in 0..60 {
            let rank = 1 + rng.below(4);
            let shape: Vec<usize> = (0..rank).map(|_| SIZES[rng.below(5)]).collect();
            let axis = rng.below(rank);
            let x = rng.arr_affine(&shape, 2.0, 5.0);
            // parameters of full shape, or with leading dims dropped / set to 1
            let mut pshape = shape[axis..].to_vec();
            match rng.below(3) {
                0 => {}
                1 => {
                    pshape.remove(0);
                }
                _ => pshape[0] = 1,
            }
            let s = rng.arr(&pshape);
            let b = rng.arr(&pshape);
            let want = naive_layer_norm(axis, 1e-5, &x, &s, &b);
            for xv in [x.clone(), fortran(&x)] {
                let mut y = ArrayD::from_elem(IxDyn(&shape), f32::NAN);
                run_layer_norm(
                    axis,
                    1e-5,
                    &[xv.view(), s.view(), fortran(&b).view()],
                    &mut y.view_mut(),
                )
                .unwrap();
                assert_close(&y, &want, 1e-4);
                let mut yf = fortran(&ArrayD::zeros(IxDyn(&shape)));
                run_layer_norm(
                    axis,
                    1e-5,
                    &[xv.view(), s.view(), b.view()],
                    &mut yf.view_mut(),
                )
                .unwrap();
                assert_close(&yf, &want, 1e-4);
            }
            // reversed strides
            let xr = x.slice_each_axis(|_| ndarray::Slice::new(0, None, -1));
            let want_r = naive_layer_norm(axis, 1e-5, &xr.to_owned(), &s, &b);
            let mut y = ArrayD::from_elem(IxDyn(&shape), f32::NAN);
            run_layer_norm(axis, 1e-5, &[xr, s.view(), b.view()], &mut y.view_mut()).unwrap();
            assert_close(&y, &want_r, 1e-4);
        }
    }

    #[test]
    fn short_rows_normalise_as_one_row_at_a_time() {
        // the blocked path for rows of at most SHORT_ROW values against the per-row
        // arithmetic, bit for bit: row counts around the block, widths with and without a
        // compile-time version, on both sides of SHORT_ROW (64)
        let mut rng = Rng(5);
        for n in [1, 2, 4, 5, 8, 15, 16, 17, 32, 64, 65] {
            for rows in [1, 63, 64, 65, 130, 1000] {
                let x = rng.arr_affine(&[rows, n], 3.0, -1.0);
                let (s, b) = (rng.arr(&[n]), rng.arr(&[n]));
                let mut y = ArrayD::from_elem(IxDyn(&[rows, n]), f32::NAN);
                run_layer_norm(1, 1e-5, &[x.view(), s.view(), b.view()], &mut y.view_mut())
                    .unwrap();
                let (xs, sv, bv) = (
                    x.as_slice().unwrap(),
                    s.as_slice().unwrap(),
                    b.as_slice().unwrap(),
                );
                for (r, (xr, yr)) in xs
                    .chunks(n)
                    .zip(y.as_slice().unwrap().chunks(n))
                    .enumerate()
                {
                    let m = xr.iter().map(|&v| v as f64).sum::<f64>() / n as f64;
                    let var = xr
                        .iter()
                        .map(|&v| (v as f64 - m) * (v as f64 - m))
                        .sum::<f64>()
                        / n as f64;
                    let inv = (1.0 / (var + 1e-5f32 as f64).sqrt()) as f32;
                    for j in 0..n {
                        let want = (xr[j] - m as f32) * inv * sv[j] + bv[j];
                        assert_eq!(
                            yr[j].to_bits(),
                            want.to_bits(),
                            "n {n} rows {rows}: row {r} [{j}]"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn channel_layer_norm_equals_the_transposed_layer_norm() {
        let mut rng = Rng(23);
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(3)
            .build()
            .unwrap();
        // odd pixel counts, blocks with tails, one tensor large enough to split over the pool
        for shape in [
            vec![1, 1, 1, 1],
            vec![2, 5, 3, 7],
            vec![1, 16, 9, 11],
            vec![3, 7, 13],
            vec![1, 24, 70, 67],
        ] {
            let c = shape[1];
            let x = rng.arr_affine(&shape, 2.0, 5.0);
            let s = rng.arr(&[c]);
            let b = rng.arr(&[c]);
            // channels last, LayerNorm over the last axis, channels back to axis 1
            let rank = shape.len();
            let to_last: Vec<usize> = (0..rank).filter(|&a| a != 1).chain([1]).collect();
            let xt = x.view().permuted_axes(to_last.clone()).to_owned();
            let mut yt = ArrayD::from_elem(IxDyn(xt.shape()), f32::NAN);
            run_layer_norm(
                rank - 1,
                1e-5,
                &[xt.view(), s.view(), b.view()],
                &mut yt.view_mut(),
            )
            .unwrap();
            let mut back: Vec<usize> = vec![0; rank];
            for (i, &a) in to_last.iter().enumerate() {
                back[a] = i;
            }
            let want = yt.view().permuted_axes(back).to_owned();
            for params in [vec![s.view(), b.view()], vec![s.view()]] {
                let want = if params.len() == 2 {
                    want.clone()
                } else {
                    let mut yt = ArrayD::from_elem(IxDyn(xt.shape()), f32::NAN);
                    run_layer_norm(rank - 1, 1e-5, &[xt.view(), s.view()], &mut yt.view_mut())
                        .unwrap();
                    let mut back: Vec<usize> = vec![0; rank];
                    for (i, &a) in to_last.iter().enumerate() {
                        back[a] = i;
                    }
                    yt.view().permuted_axes(back).to_owned()
                };
                let mut inputs = vec![x.view()];
                inputs.extend(params);
                let mut y = ArrayD::from_elem(IxDyn(&shape), f32::NAN);
                pool.install(|| run_channel_layer_norm(1e-5, &inputs, &mut y.view_mut()))
                    .unwrap();
                assert_eq!(y, want, "{shape:?}: bit for bit");
                let mut yf = fortran(&ArrayD::zeros(IxDyn(&shape)));
                run_channel_layer_norm(1e-5, &inputs, &mut yf.view_mut()).unwrap();
                assert_eq!(yf, want, "{shape:?}, column-major output");
            }
        }
        let x = ArrayD::<f32>::zeros(IxDyn(&[1, 4, 2, 2]));
        let bad = ArrayD::<f32>::zeros(IxDyn(&[3]));
        let mut y = ArrayD::<f32>::zeros(IxDyn(&[1, 4, 2, 2]));
        let err = run_channel_layer_norm(1e-5, &[x.view(), bad.view()], &mut y.view_mut());
        assert!(err.unwrap_err().to_string().contains("does not broadcast"));
        let x1 = ArrayD::<f32>::zeros(IxDyn(&[4]));
        let mut y1 = ArrayD::<f32>::zeros(IxDyn(&[4]));
        let err = run_channel_layer_norm(1e-5, &[x1.view(), bad.view()], &mut y1.view_mut());
        assert!(err.unwrap_err().to_string().contains("rank >= 2"));
    }

    #[test]
    fn layer_norm_errors() {
        let x = ArrayD::<f32>::zeros(IxDyn(&[2, 3]));
        let mut y = ArrayD::<f32>::zeros(IxDyn(&[2, 3]));
        let s4 = ArrayD::<f32>::zeros(IxDyn(&[4]));
        let e = run_layer_norm(1, 1e-5, &[x.view(), s4.view()], &mut y.view_mut()).unwrap_err();
        assert!(e.to_string().contains("[4]"), "{e}");
        let s3 = ArrayD::<f32>::zeros(IxDyn(&[3]));
        assert!(run_layer_norm(2, 1e-5, &[x.view(), s3.view()], &mut y.view_mut()).is_err());
        assert!(run_layer_norm(1, 1e-5, &[x.view()], &mut y.view_mut()).is_err());
        assert!(layer_norm_shape(1, &[&[2, 3], &[2, 3]]).is_err());
        let mut y2 = ArrayD::<f32>::zeros(IxDyn(&[3, 2]));
        assert!(run_layer_norm(1, 1e-5, &[x.view(), s3.view()], &mut y2.view_mut()).is_err());
    }

    #[test]
    fn batch_norm() {
        let x = arr(&[1, 2, 2], &[1.0, 2.0, 3.0, 4.0]);
        let p = |v: [f32; 2]| arr(&[2], &v);
        let (s, b, m, v) = (p([2.0, 1.0]), p([0.0, 1.0]), p([1.0, 3.0]), p([4.0, 0.25]));
        let mut y = ArrayD::from_elem(IxDyn(&[1, 2, 2]), f32::NAN);
        run_batch_norm(
            0.0,
            &[x.view(), s.view(), b.view(), m.view(), v.view()],
            &mut y.view_mut(),
        )
        .unwrap();
        assert_close(&y, &arr(&[1, 2, 2], &[0.0, 1.0, 1.0, 3.0]), 1e-6);

        let mut rng = Rng(22);
        for shape in [
            vec![1, 1],
            vec![2, 3, 7, 13],
            vec![3, 17, 5],
            vec![1, 7, 3, 3, 2],
        ] {
            let c = shape[1];
            let x = rng.arr_affine(&shape, 3.0, 1.0);
            let s = rng.arr(&[c]);
            let b = rng.arr(&[c]);
            let m = rng.arr(&[c]);
            let v = rng.arr_affine(&[c], 0.5, 1.0);
            let want = ArrayD::from_shape_fn(IxDyn(&shape), |idx| {
                let ch = idx[1];
                let xv = x[idx.slice()] as f64;
                ((xv - m[[ch]] as f64) / (v[[ch]] as f64 + 1e-3).sqrt() * s[[ch]] as f64
                    + b[[ch]] as f64) as f32
            });
            for xv in [x.clone(), fortran(&x)] {
                let mut y = fortran(&ArrayD::zeros(IxDyn(&shape)));
                run_batch_norm(
                    1e-3,
                    &[xv.view(), s.view(), b.view(), m.view(), v.view()],
                    &mut y.view_mut(),
                )
                .unwrap();
                assert_close(&y, &want, 1e-5);
            }
        }
        let x = ArrayD::<f32>::zeros(IxDyn(&[1, 3, 2]));
        let mut y = ArrayD::<f32>::zeros(IxDyn(&[1, 3, 2]));
        let c2 = ArrayD::<f32>::zeros(IxDyn(&[2]));
        let e = run_batch_norm(
            1e-5,
            &[x.view(), c2.view(), c2.view(), c2.view(), c2.view()],
            &mut y.view_mut(),
        )
        .unwrap_err();
        assert!(e.to_string().contains("[2]"), "{e}");
        assert!(run_batch_norm(1e-5, &[x.view()], &mut y.view_mut()).is_err());
        assert!(batch_norm_shape(&[&[3], &[3], &[3], &[3], &[3]]).is_err());
    }
}
