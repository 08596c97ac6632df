//! `dwconv_f32_16c_avx512`: depthwise convolution 16 channels at a time, each vector holding
//! one pixel of 16 planes (XNNPACK's "16c" layout, ONNX Runtime's NCHWc), for 5x5 kernels on
//! small maps and 7x7 / 11x11 kernels (LGA's local and global convs) on any.
//!
//! Why: the plane kernels ([`super::rows_avx512`]) load every tap of every output vector
//! unaligned (a split cache line, at half the load rate) and, on maps narrower than a vector
//! (MobileNetV3's 14- and 7-wide 5x5 layers), as one flat stream per plane with a mask per tap
//! and vector, a 7 x 7 plane filling 49 of its 64 lanes. Here a group of 16 planes is
//! transposed into a zero-bordered `[row][column][16]` buffer, so each tap is one aligned load
//! into an FMA with all 16 lanes useful and no mask, against the tap's 16 weights held as one
//! vector (and, along a row, each kernel row's inputs are loaded once into registers for all
//! the taps and pixels that read them); the outputs are transposed back into the planes. The two transposes (16 x 16
//! blocks, 64 shuffles per 256 values) cost more than 9 taps save, so 3x3 stays with the plane
//! kernels ([`suits`]).
//!
//! A call's planes should come in whole groups ([`super::DwRow::planes_per_group`]): a group
//! of 5 planes runs as fast as one of 16.

use super::DwGeom;
use crate::kernels::conv_f32::epilogue::{act_avx512, act_in_place, EpiHint};
use std::arch::x86_64::*;

/// Channels per group (lanes per vector).
const C: usize = 16;

/// Output pixels per step: independent accumulators sharing each tap's weight vector.
const NB: usize = 8;

/// Whether the geometry runs here: square kernels at the same stride (1 or 2) both ways, 7x7
/// and 11x11 on any map, 5x5 on maps at most 28 wide. Measured against the plane kernels
/// (`speck bench --profile` on single-conv models, BENCHMARKS.md session 41): 1.3-2x faster
/// there, slower at 3x3 (the two transposes outweigh 9 taps) and at 5x5 on 56-wide maps, which
/// still held with the register-shared rows (session 43: 3x3 1.2-2.5x, 5x5 on 56 wide 1.2x).
pub(crate) fn suits(g: &DwGeom) -> bool {
    let square = g.kh == g.kw && g.sh == g.sw && g.sh <= 2;
    square && (matches!(g.kh, 7 | 11) || (g.kh == 5 && g.w <= 28))
}

/// Per-thread buffers, 64-byte aligned (one vector per pixel).
#[derive(Default)]
struct Bufs {
    /// the zero-bordered input group `[ih][iw]`
    padded: Vec<__m512>,
    /// the output group `[oh * ow]`
    out: Vec<__m512>,
    /// the group's weights `[kh * kw]`
    wts: Vec<__m512>,
    /// the padded layout whose border `padded` holds zeroed
    key: Option<[usize; 4]>,
}

thread_local! {
    static BUFS: std::cell::RefCell<Bufs> = std::cell::RefCell::new(Bufs::default());
}

/// Depthwise conv of consecutive planes `x [p][h*w] -> y [p][oh*ow]` (plane `i` with weights
/// `wts[i * kh * kw..]`, bias `bias[i]`), then `act` over each plane.
///
/// # Safety
/// The CPU must support AVX-512F; [`suits`] must accept `g`.
pub(crate) unsafe fn dwconv_f32_16c_avx512<F: Fn(f32) -> f32>(
    x: &[f32],
    y: &mut [f32],
    wts: &[f32],
    bias: &[f32],
    g: &DwGeom,
    act: &F,
    hint: EpiHint,
) {
    debug_assert!(suits(g));
    let planes = bias.len();
    let (hw, ohw, kk) = super::check_planes(x, y, wts, planes, g);
    if ohw == 0 {
        return;
    }
    // the padded buffer holds every input the windows reach (rows and columns past the
    // bottom / right padding included, as zeros)
    let ih = ((g.oh - 1) * g.sh + g.kh).max(g.pt + g.h);
    let iw = ((g.ow - 1) * g.sw + g.kw).max(g.pl + g.w);
    BUFS.with(|b| {
        let b = &mut *b.borrow_mut();
        let key = [ih, iw, g.pt, g.pl];
        if b.key != Some(key) {
            b.padded.clear();
            b.padded.resize(ih * iw, _mm512_setzero_ps());
            b.key = Some(key);
        }
        if b.out.len() < ohw {
            b.out.resize(ohw, _mm512_setzero_ps());
        }
        if b.wts.len() < kk {
            b.wts.resize(kk, _mm512_setzero_ps());
        }
        for c0 in (0..planes).step_by(C) {
            let nc = C.min(planes - c0);
            pack_group(&x[c0 * hw..], hw, nc, g, iw, &mut b.padded);
            pack_weights(&wts[c0 * kk..], kk, nc, &mut b.wts);
            let grp = Group {
                padded: &b.padded,
                wts: &b.wts[..kk],
                bias: _mm512_maskz_loadu_ps(lanes(nc), bias[c0..].as_ptr()),
                g,
                iw,
                hint,
            };
            conv_group(&grp, &mut b.out[..ohw]);
            unpack_group(&b.out[..ohw], nc, &mut y[c0 * ohw..]);
        }
    });
    // a hint with a vector form was applied before the stores
    if !hint.has_vector_form() {
        act_in_place(&mut y[..planes * ohw], act, hint);
    }
}

/// The first `n` of 16 lanes.
fn lanes(n: usize) -> __mmask16 {
    if n >= C {
        u16::MAX
    } else {
        (1u16 << n) - 1
    }
}

/// Transposes 16 vectors in place: `r[i]` lane `j` becomes `r[j]` lane `i`.
#[target_feature(enable = "avx512f")]
#[inline]
unsafe fn transpose16(r: &mut [__m512; C]) {
    // interleave pairs of rows (values, then pairs of values: each 128-bit quarter of r[4i + c]
    // then holds column c of that quarter for rows 4i..4i + 4), then gather quarters
    let mut t = [_mm512_setzero_ps(); C];
    for i in 0..8 {
        t[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
        t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
    }
    for i in 0..4 {
        for h in 0..2 {
            let (a, b) = (t[4 * i + h], t[4 * i + 2 + h]);
            r[4 * i + 2 * h] = _mm512_shuffle_ps::<0x44>(a, b);
            r[4 * i + 2 * h + 1] = _mm512_shuffle_ps::<0xee>(a, b);
        }
    }
    for i in 0..2 {
        for h in 0..4 {
            let (a, b) = (r[8 * i + h], r[8 * i + 4 + h]);
            t[8 * i + h] = _mm512_shuffle_f32x4::<0x88>(a, b);
            t[8 * i + 4 + h] = _mm512_shuffle_f32x4::<0xdd>(a, b);
        }
    }
    for h in 0..8 {
        let (a, b) = (t[h], t[8 + h]);
        r[h] = _mm512_shuffle_f32x4::<0x88>(a, b);
        r[8 + h] = _mm512_shuffle_f32x4::<0xdd>(a, b);
    }
}

/// Copies `nc` planes (`hw` floats apart from `x`) into the padded group: pixel `(iy, ix)` to
/// `padded[(iy + pt) * iw + ix + pl]` lane `c`; lanes past `nc` zero.
#[target_feature(enable = "avx512f")]
unsafe fn pack_group(
    x: &[f32],
    hw: usize,
    nc: usize,
    g: &DwGeom,
    iw: usize,
    padded: &mut [__m512],
) {
    let base = padded.as_mut_ptr().add(g.pt * iw + g.pl);
    let (mut iy, mut ix) = (0, 0);
    for p0 in (0..hw).step_by(C) {
        let n = C.min(hw - p0);
        let mut r = [_mm512_setzero_ps(); C];
        for (c, v) in r.iter_mut().enumerate().take(nc) {
            *v = _mm512_maskz_loadu_ps(lanes(n), x.as_ptr().add(c * hw + p0));
        }
        transpose16(&mut r);
        for v in r.iter().take(n) {
            base.add(iy * iw + ix).write(*v);
            ix += 1;
            if ix == g.w {
                ix = 0;
                iy += 1;
            }
        }
    }
}

/// The group's weights `[tap][16 channels]` from `nc` planes' `kk` taps each.
#[target_feature(enable = "avx512f")]
unsafe fn pack_weights(wts: &[f32], kk: usize, nc: usize, out: &mut [__m512]) {
    for t0 in (0..kk).step_by(C) {
        let n = C.min(kk - t0);
        let mut r = [_mm512_setzero_ps(); C];
        for (c, v) in r.iter_mut().enumerate().take(nc) {
            *v = _mm512_maskz_loadu_ps(lanes(n), wts.as_ptr().add(c * kk + t0));
        }
        transpose16(&mut r);
        out[t0..t0 + n].copy_from_slice(&r[..n]);
    }
}

/// One group's packed operands.
#[derive(Clone, Copy)]
struct Group<'a> {
    /// the zero-bordered input, `[ih][iw]` pixels of 16 channels
    padded: &'a [__m512],
    /// `[kh * kw]` taps of 16 channels
    wts: &'a [__m512],
    bias: __m512,
    g: &'a DwGeom,
    iw: usize,
    hint: EpiHint,
}

/// The group's outputs, row by row, up to `NB` pixels of a row at a time, each kernel row's
/// inputs loaded once into registers and shared by the taps and pixels that read them
/// ([`row_pixels`]: 12 loads for a 5x5 row of 8 pixels instead of 40); a 7-wide row is one
/// step of 7.
#[target_feature(enable = "avx512f")]
unsafe fn conv_group(grp: &Group, out: &mut [__m512]) {
    match (grp.g.kh, grp.g.sw) {
        (5, 1) => rows::<5, 1>(grp, out),
        (5, 2) => rows::<5, 2>(grp, out),
        (7, 1) => rows::<7, 1>(grp, out),
        (7, 2) => rows::<7, 2>(grp, out),
        (11, 1) => rows::<11, 1>(grp, out),
        (11, 2) => rows::<11, 2>(grp, out),
        _ => unreachable!("`suits` takes 5x5, 7x7 and 11x11 at stride 1 or 2"),
    }
}

/// [`conv_group`] row by row for a `K x K` kernel at stride `S`.
#[target_feature(enable = "avx512f")]
unsafe fn rows<const K: usize, const S: usize>(grp: &Group, out: &mut [__m512]) {
    let (g, iw) = (grp.g, grp.iw);
    debug_assert!(g.kh == K && g.kw == K && g.sh == S && g.sw == S);
    let w = &grp.wts[..K * K];
    for oy in 0..g.oh {
        let mut ox = 0;
        while ox < g.ow {
            let n = (g.ow - ox).min(NB);
            let src = grp.padded.as_ptr().add(oy * S * iw + ox * S);
            let dst = &mut out[oy * g.ow + ox..];
            macro_rules! widths {
                ($($n:literal)*) => {
                    match n {
                        $($n => row_pixels::<$n, K, S>(src, iw, w, grp.bias, grp.hint, dst),)*
                        _ => unreachable!("1 to NB pixels"),
                    }
                };
            }
            widths!(1 2 3 4 5 6 7 8);
            ox += n;
        }
    }
}

/// `N` consecutive output pixels of one row, windows starting at `src`: per kernel row, the
/// `(N - 1) * S + K` inputs the pixels read are loaded once and every tap's FMAs take them
/// from registers.
#[target_feature(enable = "avx512f")]
#[inline]
unsafe fn row_pixels<const N: usize, const K: usize, const S: usize>(
    src: *const __m512,
    iw: usize,
    w: &[__m512],
    bias: __m512,
    hint: EpiHint,
    out: &mut [__m512],
) {
    debug_assert!(out.len() >= N && w.len() >= K * K && (N - 1) * S + K <= 32);
    let mut acc = [bias; N];
    for ky in 0..K {
        let row = src.add(ky * iw);
        let mut inp = [_mm512_setzero_ps(); 32];
        for (i, v) in inp.iter_mut().enumerate().take((N - 1) * S + K) {
            *v = *row.add(i);
        }
        for kx in 0..K {
            let wk = *w.get_unchecked(ky * K + kx);
            for (b, a) in acc.iter_mut().enumerate() {
                *a = _mm512_fmadd_ps(inp[b * S + kx], wk, *a);
            }
        }
    }
    for (o, a) in out.iter_mut().zip(&acc) {
        *o = act_avx512(*a, hint);
    }
}

/// Transposes the group's outputs back into `nc` planes of `out.len()` pixels.
#[target_feature(enable = "avx512f")]
unsafe fn unpack_group(out: &[__m512], nc: usize, y: &mut [f32]) {
    let ohw = out.len();
    assert!(y.len() >= nc * ohw, "depthwise planes out of bounds");
    for q0 in (0..ohw).step_by(C) {
        let n = C.min(ohw - q0);
        let mut r = [_mm512_setzero_ps(); C];
        r[..n].copy_from_slice(&out[q0..q0 + n]);
        transpose16(&mut r);
        for (c, v) in r.iter().enumerate().take(nc) {
            _mm512_mask_storeu_ps(y.as_mut_ptr().add(c * ohw + q0), lanes(n), *v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transpose16_transposes() {
        if !std::is_x86_feature_detected!("avx512f") {
            return;
        }
        let m: Vec<f32> = (0..256).map(|v| v as f32).collect();
        // SAFETY: AVX-512F checked above.
        unsafe {
            let mut r = [_mm512_setzero_ps(); C];
            for (i, v) in r.iter_mut().enumerate() {
                *v = _mm512_loadu_ps(m[i * C..].as_ptr());
            }
            transpose16(&mut r);
            let mut got = [0f32; 256];
            for (i, v) in r.iter().enumerate() {
                _mm512_storeu_ps(got[i * C..].as_mut_ptr(), *v);
            }
            for i in 0..C {
                for j in 0..C {
                    assert_eq!(got[i * C + j], m[j * C + i], "row {i} lane {j}");
                }
            }
        }
    }
}
