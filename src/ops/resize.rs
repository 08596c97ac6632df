//! Resize (ONNX opset 11-19 semantics) on `[N,C,H,W]` or any rank with resized trailing axes.

use super::{OpError, OpResult};
use ndarray::{ArrayViewD, ArrayViewMutD, Dimension};

/// How output coordinates map to input coordinates.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum CoordTransform {
    /// (x + 0.5) / scale - 0.5
    HalfPixel,
    /// like half_pixel, but 0 when the output length is 1
    PytorchHalfPixel,
    /// x * (in - 1) / (out - 1)
    AlignCorners,
    /// x / scale
    Asymmetric,
}

/// Nearest-mode rounding.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum NearestRounding {
    /// round half down
    RoundPreferFloor,
    /// round half up
    RoundPreferCeil,
    /// floor
    Floor,
    /// ceil
    Ceil,
}

/// Interpolation mode.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum ResizeMode {
    /// nearest neighbour with a rounding rule
    Nearest(NearestRounding),
    /// (bi)linear
    Linear,
    /// bicubic with coefficient a (-0.75 default)
    Cubic(f32),
}

/// Attributes of a resize, with the output shape resolved at import.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Resize {
    /// interpolation
    pub mode: ResizeMode,
    /// coordinate transform
    pub transform: CoordTransform,
    /// output shape (same rank as the input)
    pub out_shape: Vec<usize>,
    /// per-axis scale used by the coordinate transform (out/in unless given explicitly)
    pub scales: Vec<f32>,
}

/// Output shape (checks the rank).
pub fn resize_shape(r: &Resize, x: &[usize]) -> OpResult<Vec<usize>> {
    if r.out_shape.len() != x.len() || r.scales.len() != x.len() {
        return Err(OpError::Shape(format!(
            "Resize of x {x:?}: out_shape {:?} and scales {:?} must have the input's rank",
            r.out_shape, r.scales
        )));
    }
    for (i, (&o, &s)) in r.out_shape.iter().zip(&r.scales).enumerate() {
        if o != x[i] && !(s.is_finite() && s > 0.0) {
            return Err(OpError::Shape(format!(
                "Resize of x {x:?} to {:?}: scale {s} on axis {i} must be positive",
                r.out_shape
            )));
        }
        if o > 0 && x[i] == 0 {
            return Err(OpError::Shape(format!(
                "Resize of empty axis {i} of x {x:?} to {:?}",
                r.out_shape
            )));
        }
    }
    Ok(r.out_shape.clone())
}

/// Source coordinate of output index `o` on one axis (ONNX Runtime's float arithmetic).
fn original_coordinate(
    t: CoordTransform,
    o: usize,
    scale: f32,
    out_len: usize,
    in_len: usize,
) -> f32 {
    let xo = o as f32;
    match t {
        CoordTransform::HalfPixel => (xo + 0.5) / scale - 0.5,
        CoordTransform::PytorchHalfPixel => {
            if out_len > 1 {
                (xo + 0.5) / scale - 0.5
            } else {
                0.0
            }
        }
        CoordTransform::AlignCorners => {
            if out_len == 1 {
                0.0
            } else {
                xo * (in_len as f32 - 1.0) / (out_len as f32 - 1.0)
            }
        }
        CoordTransform::Asymmetric => xo / scale,
    }
}

/// Nearest source index for a source coordinate (before clamping).
fn nearest_index(rule: NearestRounding, x: f32) -> i64 {
    match rule {
        NearestRounding::RoundPreferFloor => {
            if x == (x as i64) as f32 + 0.5 {
                x as i64
            } else {
                x.round() as i64
            }
        }
        NearestRounding::RoundPreferCeil => x.round() as i64,
        NearestRounding::Floor => x.floor() as i64,
        NearestRounding::Ceil => x.ceil() as i64,
    }
}

/// Cubic convolution coefficients for fractional offset `s` (Keys, as ONNX Runtime).
fn cubic_coeffs(s: f32, a: f32) -> [f32; 4] {
    let s = s.abs();
    let (s1, s2, s3) = (s + 1.0, 1.0 - s, 2.0 - s);
    [
        ((a * s1 - 5.0 * a) * s1 + 8.0 * a) * s1 - 4.0 * a,
        ((a + 2.0) * s - (a + 3.0)) * s * s + 1.0,
        ((a + 2.0) * s2 - (a + 3.0)) * s2 * s2 + 1.0,
        ((a * s3 - 5.0 * a) * s3 + 8.0 * a) * s3 - 4.0 * a,
    ]
}

/// Per-axis sampling taps: for each output index, (source index, weight) pairs.
fn axis_taps(r: &Resize, axis: usize, in_len: usize) -> Vec<Vec<(usize, f32)>> {
    let out_len = r.out_shape[axis];
    let scale = r.scales[axis];
    let last = in_len as i64 - 1;
    let clampi = |i: i64| i.clamp(0, last) as usize;
    (0..out_len)
        .map(|o| {
            if scale == 1.0 && out_len == in_len {
                return vec![(o, 1.0)];
            }
            let xf = original_coordinate(r.transform, o, scale, out_len, in_len);
            match r.mode {
                ResizeMode::Nearest(rule) => vec![(clampi(nearest_index(rule, xf)), 1.0)],
                ResizeMode::Linear => {
                    let xc = if xf.is_nan() {
                        0.0
                    } else {
                        xf.clamp(0.0, last as f32)
                    };
                    let i1 = (xc as i64).min(last);
                    let i2 = (i1 + 1).min(last);
                    if i1 == i2 {
                        vec![(i1 as usize, 1.0)]
                    } else {
                        let d1 = (xc - i1 as f32).abs();
                        let d2 = (xc - i2 as f32).abs();
                        vec![(i1 as usize, d2), (i2 as usize, d1)]
                    }
                }
                ResizeMode::Cubic(a) => {
                    let xf = if xf.is_finite() { xf } else { 0.0 };
                    let fl = xf.floor();
                    let c = cubic_coeffs(xf - fl, a);
                    let base = fl as i64;
                    (0..4)
                        .map(|j| (clampi(base - 1 + j as i64), c[j]))
                        .collect()
                }
            }
        })
        .collect()
}

/// Reference resize.
/// Highest rank of the allocation-free path.
const MAX_RANK: usize = 8;

/// [`run_resize`] on contiguous tensors without per-element allocation: the same sums in the
/// same order (taps odometer with the last axis fastest, weights multiplied in axis order),
/// so the results are identical.
fn resize_contiguous(
    taps: &[Vec<Vec<(usize, f32)>>],
    in_shape: &[usize],
    x: &[f32],
    out_shape: &[usize],
    y: &mut [f32],
) {
    let rank = in_shape.len();
    let mut stride = [0usize; MAX_RANK];
    let mut st = 1;
    for a in (0..rank).rev() {
        stride[a] = st;
        st *= in_shape[a];
    }
    let mut oi = [0usize; MAX_RANK];
    for v in y.iter_mut() {
        let tl: [&[(usize, f32)]; MAX_RANK] =
            std::array::from_fn(|a| if a < rank { &taps[a][oi[a]][..] } else { &[] });
        let mut k = [0usize; MAX_RANK];
        let mut acc = 0.0f32;
        'outer: loop {
            let mut wgt = 1.0f32;
            let mut off = 0;
            for a in 0..rank {
                let (i, w) = tl[a][k[a]];
                off += i * stride[a];
                wgt *= w;
            }
            acc += wgt * x[off];
            let mut a = rank;
            loop {
                if a == 0 {
                    break 'outer;
                }
                a -= 1;
                k[a] += 1;
                if k[a] < tl[a].len() {
                    break;
                }
                k[a] = 0;
            }
        }
        *v = acc;
        // next output index (row-major)
        for a in (0..rank).rev() {
            oi[a] += 1;
            if oi[a] < out_shape[a] {
                break;
            }
            oi[a] = 0;
        }
    }
}

/// Whether an axis's taps map each of its `len` indices to itself.
fn is_identity(taps: &[Vec<(usize, f32)>], len: usize) -> bool {
    taps.len() == len
        && taps
            .iter()
            .enumerate()
            .all(|(o, t)| t.len() == 1 && t[0] == (o, 1.0))
}

/// A resize whose only resampled axes are two adjacent ones (H and W, as in NCHW or NHWC
/// upsampling): the tensor seen as `[outer, H, W, inner]`.
struct Planar {
    ah: usize,
    aw: usize,
    h: usize,
    w: usize,
    inner: usize,
}

/// [`Planar`] dimensions when every axis but `ah` and `ah + 1` maps each index to itself.
fn planar_dims(taps: &[Vec<Vec<(usize, f32)>>], in_shape: &[usize]) -> Option<Planar> {
    let identity = |a: usize| is_identity(&taps[a], in_shape[a]);
    let rank = in_shape.len();
    let resized: Vec<usize> = (0..rank).filter(|&a| !identity(a)).collect();
    let ah = match resized[..] {
        [a, b] if b == a + 1 => a,
        [a] if a + 1 < rank => a,
        [a] if a > 0 => a - 1,
        _ => return None,
    };
    let aw = ah + 1;
    Some(Planar {
        ah,
        aw,
        h: in_shape[ah],
        w: in_shape[aw],
        inner: in_shape[aw + 1..].iter().product(),
    })
}

/// An axis's taps as two columns per output index, when no output index has more than two
/// (linear and nearest modes) and every index is below `len`. A lone tap's second index
/// repeats the first with weight 0 and a zero mask: its value is read as +0, so its term
/// `(wh * 0) * 0` adds +0, which leaves any sum as it was (a sum that starts at +0 is never
/// -0), whatever the value (an infinity times 0 would be NaN).
struct Pairs {
    idx: Vec<[u32; 2]>,
    w0: Vec<f32>,
    w1: Vec<f32>,
    /// all ones where the second tap is real, 0 for a lone tap
    mask1: Vec<u32>,
}

fn pairs(taps: &[Vec<(usize, f32)>], len: usize) -> Option<Pairs> {
    let fits = |i: usize| i < len && u32::try_from(i).is_ok();
    let mut p = Pairs {
        idx: Vec::with_capacity(taps.len()),
        w0: Vec::with_capacity(taps.len()),
        w1: Vec::with_capacity(taps.len()),
        mask1: Vec::with_capacity(taps.len()),
    };
    for t in taps {
        let ((i0, w0), (i1, w1), m) = match t[..] {
            [a] if fits(a.0) => (a, (a.0, 0.0), 0),
            [a, b] if fits(a.0) && fits(b.0) => (a, b, u32::MAX),
            _ => return None,
        };
        p.idx.push([i0 as u32, i1 as u32]);
        p.w0.push(w0);
        p.w1.push(w1);
        p.mask1.push(m);
    }
    Some(p)
}

/// Output pixels per block of [`pairs_row`].
const PAIR_BLOCK: usize = 16;

/// One output row of an NCHW resize from its H taps' input rows and weights `rows` and the W
/// taps `pw` ([`pairs`]): per pixel the planar path's sum, in its order (H taps outer, W taps
/// inner, weight `wh * ww`, from 0). Per block of pixels the taps' values are gathered first
/// (the only scalar part), then the weights and sums run as vectors.
#[inline(always)]
fn pairs_row<const H: usize>(rows: [(&[f32], f32); H], pw: &Pairs, out: &mut [f32]) {
    const B: usize = PAIR_BLOCK;
    let blocks = out
        .chunks_mut(B)
        .zip(pw.idx.chunks(B))
        .zip(pw.w0.chunks(B).zip(pw.w1.chunks(B)))
        .zip(pw.mask1.chunks(B));
    for (((dst, idx), (w0, w1)), m1) in blocks {
        let n = dst.len();
        // g[h][k][j]: row h's value at pixel j's tap k (bits, the second masked below)
        let mut g = [[[0u32; B]; 2]; H];
        for (j, &[i0, i1]) in idx.iter().enumerate() {
            for (gh, &(row, _)) in g.iter_mut().zip(&rows) {
                // SAFETY: `pairs` checked every index against the row length.
                unsafe {
                    gh[0][j] = row.get_unchecked(i0 as usize).to_bits();
                    gh[1][j] = row.get_unchecked(i1 as usize).to_bits();
                }
            }
        }
        let (w0b, w1b, mb) = (block(w0), block(w1), block(m1));
        let mut acc = [0.0f32; B];
        for (gh, &(_, wh)) in g.iter().zip(&rows) {
            for j in 0..B {
                let v0 = f32::from_bits(gh[0][j]);
                let v1 = f32::from_bits(gh[1][j] & mb[j]);
                acc[j] += (wh * w0b[j]) * v0;
                acc[j] += (wh * w1b[j]) * v1;
            }
        }
        // a whole block as one fixed-size store (a slice copy of runtime length is a call)
        match <&mut [f32; B]>::try_from(&mut *dst) {
            Ok(d) => *d = acc,
            Err(_) => dst.copy_from_slice(&acc[..n]),
        }
    }
}

/// A block of [`pairs_row`]'s columns as an array: whole blocks by a fixed-size copy (inlined;
/// a runtime-length copy is a call), the last zero-padded.
#[inline(always)]
fn block<T: Copy + Default>(s: &[T]) -> [T; PAIR_BLOCK] {
    match <[T; PAIR_BLOCK]>::try_from(s) {
        Ok(a) => a,
        Err(_) => {
            let mut a = [T::default(); PAIR_BLOCK];
            a[..s.len()].copy_from_slice(s);
            a
        }
    }
}

/// [`resize_contiguous`] for [`Planar`] resizes: per output pixel the same sums in the same
/// order (H taps outer, W taps inner, weight `wh * ww`; identity axes weigh exactly 1), over
/// `inner` contiguous values at once, output rows in parallel.
fn resize_planar(
    taps_h: &[Vec<(usize, f32)>],
    taps_w: &[Vec<(usize, f32)>],
    d: &Planar,
    x: &[f32],
    y: &mut [f32],
) {
    use rayon::prelude::*;
    let (oh, ow, inner) = (taps_h.len(), taps_w.len(), d.inner);
    let row = ow * inner;
    if row == 0 {
        return;
    }
    let pairs_w = pairs(taps_w, d.w);
    // nearest modes: every tap one input index at weight 1, so each output value is a copy
    let single = |t: &[Vec<(usize, f32)>]| t.iter().all(|t| matches!(t[..], [(_, 1.0)]));
    let gather_w: Option<Vec<usize>> = (inner == 1 && single(taps_h) && single(taps_w))
        .then(|| taps_w.iter().map(|t| t[0].0).collect());
    y.par_chunks_mut(row)
        .with_min_len((1 << 14) / row + 1)
        .enumerate()
        .for_each(|(r, out)| {
            let (o, yh) = (r / oh, r % oh);
            let plane = &x[o * d.h * d.w * inner..(o + 1) * d.h * d.w * inner];
            if let Some(gw) = &gather_w {
                // NCHW nearest: the value itself, where the sums below would give
                // `0 + 1 * v` (the same value; +0 for a -0)
                let src = &plane[taps_h[yh][0].0 * d.w..][..d.w];
                for (dst, &iw) in out.iter_mut().zip(gw) {
                    *dst = src[iw];
                }
                return;
            }
            if inner == 1 {
                // NCHW, at most two taps per axis (linear, nearest): flat W pairs, no
                // per-pixel Vec of taps, no bounds check per tap.
                if let Some(pw) = &pairs_w {
                    let row = |&(ih, wh): &(usize, f32)| (&plane[ih * d.w..][..d.w], wh);
                    match &taps_h[yh][..] {
                        [a] => return pairs_row([row(a)], pw, out),
                        [a, b] => return pairs_row([row(a), row(b)], pw, out),
                        _ => {}
                    }
                }
                // NCHW: one value per pixel, summed in a register (not through `out`)
                for (xw, dst) in out.iter_mut().enumerate() {
                    let mut acc = 0.0f32;
                    for &(ih, wh) in &taps_h[yh] {
                        for &(iw, ww) in &taps_w[xw] {
                            acc += (wh * ww) * plane[ih * d.w + iw];
                        }
                    }
                    *dst = acc;
                }
                return;
            }
            for (xw, dst) in out.chunks_exact_mut(inner).enumerate() {
                let taps = |c0| {
                    taps_h[yh].iter().flat_map(move |&(ih, wh)| {
                        taps_w[xw]
                            .iter()
                            .map(move |&(iw, ww)| (wh * ww, (ih * d.w + iw) * inner + c0))
                    })
                };
                for (b, dst) in dst.chunks_mut(INNER_BLOCK).enumerate() {
                    inner_block(taps(b * INNER_BLOCK), plane, dst);
                }
            }
        });
}

/// Channels per block of [`inner_block`]: two SSE or NEON registers.
const INNER_BLOCK: usize = 8;

/// Up to [`INNER_BLOCK`] consecutive channels of one output pixel of a [`Planar`] resize with
/// `inner` above 1: the sum over `taps` (weight, offset of the block's first channel in
/// `plane`), from +0 in the taps' order, kept in registers rather than summed through `dst`.
#[inline(always)]
fn inner_block(taps: impl Iterator<Item = (f32, usize)>, plane: &[f32], dst: &mut [f32]) {
    const B: usize = INNER_BLOCK;
    if let Ok(d) = <&mut [f32; B]>::try_from(&mut *dst) {
        let mut acc = [0.0f32; B];
        for (wgt, at) in taps {
            let src: &[f32; B] = plane[at..at + B].try_into().expect("B values");
            for j in 0..B {
                acc[j] += wgt * src[j];
            }
        }
        *d = acc;
    } else {
        dst.fill(0.0);
        for (wgt, at) in taps {
            for (v, &s) in dst.iter_mut().zip(&plane[at..]) {
                *v += wgt * s;
            }
        }
    }
}

/// The H and W taps of a resize of an `[N,C,H,W]` tensor that maps every N and C index to
/// itself (an upsampling), for kernels that run it on other layouts; `None` otherwise.
#[allow(clippy::type_complexity)]
pub fn hw_taps(
    r: &Resize,
    in_shape: &[usize],
) -> Option<(Vec<Vec<(usize, f32)>>, Vec<Vec<(usize, f32)>>)> {
    if in_shape.len() != 4 || resize_shape(r, in_shape).is_err() {
        return None;
    }
    let mut taps: Vec<_> = (0..4).map(|a| axis_taps(r, a, in_shape[a])).collect();
    if !(is_identity(&taps[0], in_shape[0]) && is_identity(&taps[1], in_shape[1])) {
        return None;
    }
    let w = taps.pop()?;
    let h = taps.pop()?;
    Some((h, w))
}

/// The resize of [`hw_taps`] on an NHWC tensor (`x` is `[N,H,W,C]` for the NCHW `in_shape`,
/// `y` likewise): per output value the same sums in the same order as [`run_resize`].
pub fn resize_nhwc(
    taps_h: &[Vec<(usize, f32)>],
    taps_w: &[Vec<(usize, f32)>],
    in_shape: &[usize],
    x: &[f32],
    y: &mut [f32],
) {
    let d = Planar {
        ah: 1,
        aw: 2,
        h: in_shape[2],
        w: in_shape[3],
        inner: in_shape[1],
    };
    resize_planar(taps_h, taps_w, &d, x, y);
}

/// Resize (the reference: any rank, mode and coordinate transformation).
pub fn run_resize(r: &Resize, x: &ArrayViewD<f32>, y: &mut ArrayViewMutD<f32>) -> OpResult<()> {
    let out = resize_shape(r, x.shape())?;
    if y.shape() != out.as_slice() {
        return Err(OpError::Shape(format!(
            "Resize output is {:?}, expected {out:?} for x {:?}",
            y.shape(),
            x.shape()
        )));
    }
    if y.is_empty() {
        return Ok(());
    }
    let rank = x.ndim();
    let taps: Vec<Vec<Vec<(usize, f32)>>> =
        (0..rank).map(|a| axis_taps(r, a, x.shape()[a])).collect();
    if rank <= MAX_RANK {
        if let (Some(xs), Some(ys)) = (x.as_slice(), y.as_slice_mut()) {
            // every index maps to itself (a resize to the input's own size, as exported
            // models resize a scale-1 branch): a copy, where the per-value tap walk below
            // took 11 ns a value (the LGA's first Resize, 0.16 ms of the float detector)
            if (0..rank).all(|a| is_identity(&taps[a], x.shape()[a])) {
                ys.copy_from_slice(xs);
            } else if let Some(dims) = planar_dims(&taps, x.shape()) {
                resize_planar(&taps[dims.ah], &taps[dims.aw], &dims, xs, ys);
            } else {
                resize_contiguous(&taps, x.shape(), xs, &out, ys);
            }
            return Ok(());
        }
    }
    let mut src = vec![0usize; rank];
    for (idx, v) in y.indexed_iter_mut() {
        let oi = idx.slice();
        // sum over the cartesian product of the taps of every axis (odometer)
        let tl: Vec<&Vec<(usize, f32)>> = (0..rank).map(|a| &taps[a][oi[a]]).collect();
        let mut k = vec![0usize; rank];
        let mut acc = 0.0f32;
        'outer: loop {
            let mut wgt = 1.0f32;
            for a in 0..rank {
                let (i, w) = tl[a][k[a]];
                src[a] = i;
                wgt *= w;
            }
            acc += wgt * x[src.as_slice()];
            let mut a = rank;
            loop {
                if a == 0 {
                    break 'outer;
                }
                a -= 1;
                k[a] += 1;
                if k[a] < tl[a].len() {
                    break;
                }
                k[a] = 0;
            }
        }
        *v = acc;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::{ArrayD, IxDyn};

    fn arr(shape: &[usize], v: &[f32]) -> ArrayD<f32> {
        ArrayD::from_shape_vec(IxDyn(shape), v.to_vec()).unwrap()
    }

    fn resize(
        mode: ResizeMode,
        t: CoordTransform,
        x: &ArrayD<f32>,
        out: &[usize],
        scales: &[f32],
    ) -> Vec<f32> {
        let r = Resize {
            mode,
            transform: t,
            out_shape: out.to_vec(),
            scales: scales.to_vec(),
        };
        let mut y = ArrayD::zeros(IxDyn(&resize_shape(&r, x.shape()).unwrap()));
        run_resize(&r, &x.view(), &mut y.view_mut()).unwrap();
        y.iter().copied().collect()
    }

    fn close(a: &[f32], b: &[f32]) {
        assert_eq!(a.len(), b.len());
        for (i, (x, y)) in a.iter().zip(b).enumerate() {
            assert!((x - y).abs() < 1e-4, "at {i}: {x} vs {y}\n{a:?}\n{b:?}");
        }
    }

    fn x4() -> ArrayD<f32> {
        arr(
            &[1, 1, 4, 4],
            &(1..=16).map(|v| v as f32).collect::<Vec<_>>(),
        )
    }

    /// A resize to the input's own size is the input, bit for bit (-0 and NaN included), in
    /// every mode.
    #[test]
    fn same_size_resize_is_a_copy() {
        let mut x = x4();
        x[[0, 0, 1, 2]] = -0.0;
        x[[0, 0, 3, 0]] = f32::NAN;
        for mode in [
            ResizeMode::Nearest(NearestRounding::Floor),
            ResizeMode::Linear,
            ResizeMode::Cubic(-0.75),
        ] {
            for t in [CoordTransform::Asymmetric, CoordTransform::AlignCorners] {
                let y = resize(mode, t, &x, &[1, 1, 4, 4], &[1.0; 4]);
                let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
                assert_eq!(bits(&y), bits(x.as_slice().unwrap()), "{mode:?} {t:?}");
            }
        }
    }

    #[test]
    fn nearest_onnx_cases() {
        // resize_upsample_scales_nearest (asymmetric default for that test uses half_pixel + round_prefer_floor)
        let x = arr(&[1, 1, 2, 2], &[1., 2., 3., 4.]);
        let y = resize(
            ResizeMode::Nearest(NearestRounding::RoundPreferFloor),
            CoordTransform::HalfPixel,
            &x,
            &[1, 1, 4, 6],
            &[1., 1., 2., 3.],
        );
        close(
            &y,
            &[
                1., 1., 1., 2., 2., 2., 1., 1., 1., 2., 2., 2., 3., 3., 3., 4., 4., 4., 3., 3., 3.,
                4., 4., 4.,
            ],
        );
        // resize_downsample_scales_nearest: scales 0.6 -> [1, 3]
        let x = arr(&[1, 1, 2, 4], &[1., 2., 3., 4., 5., 6., 7., 8.]);
        let y = resize(
            ResizeMode::Nearest(NearestRounding::RoundPreferFloor),
            CoordTransform::HalfPixel,
            &x,
            &[1, 1, 1, 2],
            &[1., 1., 0.6, 0.6],
        );
        close(&y, &[1., 3.]);
        // resize_upsample_sizes_nearest_ceil_half_pixel first row (4x4 -> 8x8)
        let y = resize(
            ResizeMode::Nearest(NearestRounding::Ceil),
            CoordTransform::HalfPixel,
            &x4(),
            &[1, 1, 8, 8],
            &[1., 1., 2., 2.],
        );
        close(&y[..8], &[1., 2., 2., 3., 3., 4., 4., 4.]);
        // resize_upsample_sizes_nearest_floor_align_corners first row
        let y = resize(
            ResizeMode::Nearest(NearestRounding::Floor),
            CoordTransform::AlignCorners,
            &x4(),
            &[1, 1, 8, 8],
            &[1., 1., 2., 2.],
        );
        close(&y[..8], &[1., 1., 1., 2., 2., 3., 3., 4.]);
        close(&y[8..16], &[1., 1., 1., 2., 2., 3., 3., 4.]);
        close(&y[16..24], &[1., 1., 1., 2., 2., 3., 3., 4.]);
        close(&y[24..32], &[5., 5., 5., 6., 6., 7., 7., 8.]);
        // resize_upsample_sizes_nearest_round_prefer_ceil_asymmetric first row
        let y = resize(
            ResizeMode::Nearest(NearestRounding::RoundPreferCeil),
            CoordTransform::Asymmetric,
            &x4(),
            &[1, 1, 8, 8],
            &[1., 1., 2., 2.],
        );
        close(&y[..8], &[1., 2., 2., 3., 3., 4., 4., 4.]);
        close(&y[8..16], &[5., 6., 6., 7., 7., 8., 8., 8.]);
    }

    #[test]
    fn linear_onnx_cases() {
        // resize_upsample_scales_linear (half_pixel)
        let x = arr(&[1, 1, 2, 2], &[1., 2., 3., 4.]);
        let y = resize(
            ResizeMode::Linear,
            CoordTransform::HalfPixel,
            &x,
            &[1, 1, 4, 4],
            &[1., 1., 2., 2.],
        );
        close(
            &y,
            &[
                1., 1.25, 1.75, 2., 1.5, 1.75, 2.25, 2.5, 2.5, 2.75, 3.25, 3.5, 3., 3.25, 3.75, 4.,
            ],
        );
        // resize_upsample_scales_linear_align_corners
        let y = resize(
            ResizeMode::Linear,
            CoordTransform::AlignCorners,
            &x,
            &[1, 1, 4, 4],
            &[1., 1., 2., 2.],
        );
        close(
            &y,
            &[
                1., 1.333333, 1.666667, 2., 1.666667, 2., 2.333333, 2.666667, 2.333333, 2.666667,
                3., 3.333333, 3., 3.333333, 3.666667, 4.,
            ],
        );
        // resize_downsample_scales_linear: 2x4 * 0.6 -> 1x2 = [2.6666667, 4.3333335]
        let x = arr(&[1, 1, 2, 4], &[1., 2., 3., 4., 5., 6., 7., 8.]);
        let y = resize(
            ResizeMode::Linear,
            CoordTransform::HalfPixel,
            &x,
            &[1, 1, 1, 2],
            &[1., 1., 0.6, 0.6],
        );
        close(&y, &[2.6666667, 4.3333335]);
        // downsample align_corners: ONNX Runtime uses the integer output length (-> [1, 4]);
        // the ONNX reference's 3.142857 comes from the unrounded length 2.4
        let y = resize(
            ResizeMode::Linear,
            CoordTransform::AlignCorners,
            &x,
            &[1, 1, 1, 2],
            &[1., 1., 0.6, 0.6],
        );
        close(&y, &[1., 4.]);
        // pytorch_half_pixel with an output length of 1 samples index 0
        let y = resize(
            ResizeMode::Linear,
            CoordTransform::PytorchHalfPixel,
            &x,
            &[1, 1, 1, 1],
            &[1., 1., 0.5, 0.25],
        );
        close(&y, &[1.]);
        // 1-D (rank 1) linear asymmetric
        let x = arr(&[3], &[0., 10., 20.]);
        let y = resize(
            ResizeMode::Linear,
            CoordTransform::Asymmetric,
            &x,
            &[6],
            &[2.],
        );
        close(&y, &[0., 5., 10., 15., 20., 20.]);
        // a non-trailing axis (channels) resized too
        let x = arr(&[1, 2, 1, 1], &[0., 4.]);
        let y = resize(
            ResizeMode::Linear,
            CoordTransform::AlignCorners,
            &x,
            &[1, 3, 1, 1],
            &[1., 1.5, 1., 1.],
        );
        close(&y, &[0., 2., 4.]);
    }

    #[test]
    #[allow(clippy::excessive_precision)]
    fn cubic_onnx_cases() {
        // resize_upsample_scales_cubic (a = -0.75, half_pixel), first row
        let y = resize(
            ResizeMode::Cubic(-0.75),
            CoordTransform::HalfPixel,
            &x4(),
            &[1, 1, 8, 8],
            &[1., 1., 2., 2.],
        );
        close(
            &y[..8],
            &[
                0.47265625, 0.76953125, 1.24609375, 1.875, 2.28125, 2.91015625, 3.38671875,
                3.68359375,
            ],
        );
        // resize_upsample_scales_cubic_asymmetric, first row
        let y = resize(
            ResizeMode::Cubic(-0.75),
            CoordTransform::Asymmetric,
            &x4(),
            &[1, 1, 8, 8],
            &[1., 1., 2., 2.],
        );
        close(&y[..8], &[1., 1.40625, 2., 2.5, 3., 3.59375, 4., 4.09375]);
        // resize_downsample_scales_cubic: scale 0.8 -> 3x3, first row
        let y = resize(
            ResizeMode::Cubic(-0.75),
            CoordTransform::HalfPixel,
            &x4(),
            &[1, 1, 3, 3],
            &[1., 1., 0.8, 0.8],
        );
        close(&y[..3], &[1.47119141, 2.78125, 4.08251953]);
        // resize_upsample_scales_cubic_A_n0p5_exclude_outside uses exclude_outside; check a = -0.5 plain instead:
        // constant input stays constant for any a
        let c = arr(&[1, 1, 3, 3], &[2.0; 9]);
        let y = resize(
            ResizeMode::Cubic(-0.5),
            CoordTransform::AlignCorners,
            &c,
            &[1, 1, 5, 7],
            &[1., 1., 1.6, 2.3],
        );
        close(&y, &[2.0; 35]);
    }

    #[test]
    fn errors() {
        let x = x4();
        let r = Resize {
            mode: ResizeMode::Linear,
            transform: CoordTransform::HalfPixel,
            out_shape: vec![1, 1, 8],
            scales: vec![1., 1., 2.],
        };
        assert!(resize_shape(&r, x.shape()).is_err());
        let mut y = ArrayD::zeros(IxDyn(&[1, 1, 8, 8]));
        assert!(run_resize(&r, &x.view(), &mut y.view_mut()).is_err());
        let r = Resize {
            mode: ResizeMode::Linear,
            transform: CoordTransform::HalfPixel,
            out_shape: vec![1, 1, 8, 8],
            scales: vec![1., 1., 0., 2.],
        };
        assert!(resize_shape(&r, x.shape()).is_err());
        let r = Resize {
            scales: vec![1., 1., 2., 2.],
            ..r
        };
        let mut bad = ArrayD::zeros(IxDyn(&[1, 1, 8, 7]));
        assert!(run_resize(&r, &x.view(), &mut bad.view_mut()).is_err());
    }

    #[test]
    fn contiguous_paths_equal_the_strided_reference() {
        use ndarray::s;
        // (input shape, output shape): NCHW and NHWC upsampling and downsampling (the planar
        // path, with fewer channels than one block, whole blocks, and blocks plus a tail), one
        // resized axis, three resized axes (the general contiguous path).
        let cases: [([usize; 4], [usize; 4]); 8] = [
            ([1, 3, 5, 7], [1, 3, 9, 13]),
            ([2, 5, 7, 3], [2, 9, 13, 3]),
            ([1, 4, 5, 16], [1, 7, 9, 16]),
            ([1, 3, 4, 19], [1, 6, 7, 19]),
            ([1, 3, 5, 7], [1, 3, 5, 13]),
            ([1, 3, 5, 7], [1, 3, 9, 7]),
            ([1, 2, 9, 8], [1, 2, 4, 3]),
            ([1, 3, 5, 7], [1, 6, 9, 13]),
        ];
        for (ins, outs) in cases {
            // Every other element of the last axis of a wider tensor: not contiguous, so
            // `run_resize` takes the general path there and a contiguous one on the copy.
            let mut wide = ins;
            wide[3] *= 2;
            let big = ArrayD::from_shape_fn(IxDyn(&wide), |i| {
                ((i[0] * 1000 + i[1] * 100 + i[2] * 10 + i[3]) as f32 * 0.37).sin()
            });
            let strided = big.slice(s![.., .., .., ..;2]).into_dyn();
            assert!(strided.as_slice().is_none());
            let contiguous = strided.to_owned();
            for mode in [
                ResizeMode::Nearest(NearestRounding::Floor),
                ResizeMode::Linear,
                ResizeMode::Cubic(-0.75),
            ] {
                for transform in [CoordTransform::AlignCorners, CoordTransform::HalfPixel] {
                    let r = Resize {
                        mode,
                        transform,
                        out_shape: outs.to_vec(),
                        scales: (0..4).map(|a| outs[a] as f32 / ins[a] as f32).collect(),
                    };
                    let mut a = ArrayD::zeros(IxDyn(&outs));
                    let mut b = a.clone();
                    run_resize(&r, &strided.view(), &mut a.view_mut()).unwrap();
                    run_resize(&r, &contiguous.view(), &mut b.view_mut()).unwrap();
                    assert_eq!(a, b, "{ins:?} -> {outs:?} {mode:?} {transform:?}");
                }
            }
        }
    }
}
