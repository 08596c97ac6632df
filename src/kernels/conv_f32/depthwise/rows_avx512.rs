//! `dwconv_f32_rows16_avx512`: depthwise convolution straight from the NCHW planes, 16 output
//! columns per vector, any kernel size, horizontal stride 1 or 2, any vertical stride.
//!
//! Why not the flat phase planes ([`super::flat`]): those copy every plane into a padded
//! buffer, compute into a second one and copy the rows out, three passes that cost MobileNetV3
//! more than the arithmetic (its 112x112 and 56x56 depthwise convs ran at 14 GMAC/s, ONNX
//! Runtime's at 37). Here the padding is never materialised: a tap's input vector is a masked
//! load (lanes whose input column falls outside `0..w` read nothing and count zero), a tap row
//! outside `0..h` reads a zero row, and results go straight to `y`.
//!
//! A tile is `R` output rows by `NV` column vectors (at most 8 accumulators), so narrow maps
//! (7 and 14 wide, one vector per row) still have several independent FMA chains: on a 7x7
//! map with a 5x5 kernel one tile holds the whole plane. At stride 2 a 32-float window is
//! loaded and its even lanes feed tap `kx`, its odd lanes tap `kx + 1` (one load pair, two
//! permutes for two taps).

use super::DwGeom;
use crate::kernels::conv_f32::epilogue::{act_avx512, act_in_place, EpiHint};
use std::arch::x86_64::*;

/// Output lanes per vector.
const L: usize = 16;

/// Whether this kernel takes the geometry: horizontal stride 1 or 2 (vertical stride and kernel
/// size are free).
pub(crate) fn handles(g: &DwGeom) -> bool {
    matches!(g.sw, 1 | 2) && g.sh >= 1 && g.kh >= 1 && g.kw >= 1
}

/// Lanes `l < 16` whose input column `ix0 + l` lies in `0..w`.
fn lane_mask(ix0: isize, w: usize) -> u16 {
    let lo = (-ix0).clamp(0, L as isize) as u32;
    let hi = (w as isize - ix0).clamp(0, L as isize) as u32;
    if hi <= lo {
        return 0;
    }
    let below_hi = if hi == 16 { u16::MAX } else { (1u16 << hi) - 1 };
    below_hi & !((1u16 << lo) - 1)
}

/// Per-thread buffers: the zero row and the load masks.
#[derive(Default)]
struct Bufs {
    zero: Vec<f32>,
    masks: Vec<u16>,
    /// the geometry `masks` were computed for (a flat plane's masks are per lane: computing
    /// them per call would cost as much as a small plane's arithmetic)
    key: Option<[usize; 10]>,
}

/// Whether the plane runs as one flat stream: stride 1 with the output as wide as the input,
/// so output `j = oy * ow + ox` reads tap `(ky, kx)` at `j + (ky - pt) * w + kx - pl` and 16
/// consecutive outputs are one load whatever rows they span. Taken where rows do not fill
/// whole vectors (7, 14, 28 wide in MobileNetV3: a 7x7 plane is 4 vectors instead of 7) and
/// the per-lane masks stay small.
fn flat_stream(g: &DwGeom) -> bool {
    g.sh == 1
        && g.sw == 1
        && g.ow == g.w
        && g.ow % L != 0
        && (g.oh * g.ow).div_ceil(L) * g.kh * g.kw <= 4096
}

/// Masks of the flat stream, `[vector][ky][kx]`: lanes whose output exists and whose tap
/// lies inside the plane.
fn flat_masks(g: &DwGeom, masks: &mut Vec<u16>) {
    let ohw = g.oh * g.ow;
    for j in 0..ohw.div_ceil(L) {
        for ky in 0..g.kh {
            for kx in 0..g.kw {
                let mut m = 0u16;
                for l in 0..L {
                    let jj = j * L + l;
                    let (oy, ox) = (jj / g.ow, jj % g.ow);
                    let iy = (oy + ky).wrapping_sub(g.pt);
                    let ix = (ox + kx).wrapping_sub(g.pl);
                    if jj < ohw && iy < g.h && ix < g.w {
                        m |= 1 << l;
                    }
                }
                masks.push(m);
            }
        }
    }
}

thread_local! {
    static BUFS: std::cell::RefCell<Bufs> = std::cell::RefCell::new(Bufs::default());
}

/// Depthwise conv of consecutive planes `x [p][h*w] -> y [p][oh*ow]` (plane `i` with weights
/// `wts[i * kh * kw..]`, bias `bias[i]`), then `act` over each plane.
///
/// # Safety
/// The CPU must support AVX-512F; [`handles`] must accept `g`.
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn dwconv_f32_rows16_avx512<F: Fn(f32) -> f32>(
    x: &[f32],
    y: &mut [f32],
    wts: &[f32],
    bias: &[f32],
    g: &DwGeom,
    act: &F,
    hint: EpiHint,
) {
    debug_assert!(handles(g));
    let (hw, ohw, kk) = (g.h * g.w, g.oh * g.ow, g.kh * g.kw);
    let planes = bias.len();
    assert!(
        x.len() >= planes * hw && y.len() >= planes * ohw && wts.len() >= planes * kk,
        "depthwise planes out of bounds"
    );
    if ohw == 0 {
        return;
    }
    BUFS.with(|b| {
        let b = &mut *b.borrow_mut();
        if b.zero.len() < g.w {
            b.zero.resize(g.w, 0.0);
        }
        let flat = flat_stream(g);
        let key = [g.h, g.w, g.oh, g.ow, g.kh, g.kw, g.sh, g.sw, g.pt, g.pl];
        if b.key != Some(key) {
            b.masks.clear();
            if flat {
                flat_masks(g, &mut b.masks);
            } else {
                // [(j * kw + kx) * 2 + half]: column vector j, tap column kx, half of the
                // window (stride 2 loads 32 floats; stride 1 uses half 0 only)
                for j in 0..g.ow.div_ceil(L) {
                    for kx in 0..g.kw {
                        let ix0 = (j * L * g.sw + kx) as isize - g.pl as isize;
                        b.masks.push(lane_mask(ix0, g.w));
                        b.masks.push(lane_mask(ix0 + L as isize, g.w));
                    }
                }
            }
            b.key = Some(key);
        }
        let nvec = if flat { ohw } else { g.ow }.div_ceil(L);
        let geo = Geo {
            g: *g,
            zero: b.zero.as_ptr(),
            masks: &b.masks,
            nvec,
            tail: lane_mask(0, if flat { ohw } else { g.ow } - (nvec - 1) * L),
            flat,
            hint,
        };
        for p in 0..planes {
            let yp = &mut y[p * ohw..(p + 1) * ohw];
            plane(
                &geo,
                x[p * hw..].as_ptr(),
                &wts[p * kk..(p + 1) * kk],
                bias[p],
                yp.as_mut_ptr(),
            );
            // a hint with a vector form was applied before the stores
            if !hint.has_vector_form() {
                act_in_place(yp, act, hint);
            }
        }
    })
}

/// What every tile of a call shares.
struct Geo<'a> {
    g: DwGeom,
    /// `w` zeros, read for tap rows outside the plane
    zero: *const f32,
    masks: &'a [u16],
    /// column vectors per output row (per plane in a flat stream)
    nvec: usize,
    /// store mask of the last column vector
    tail: u16,
    /// the plane is one flat stream ([`flat_stream`])
    flat: bool,
    /// the activation applied before each store (`Closure`: none, the caller applies it)
    hint: EpiHint,
}

/// One plane, tile by tile.
#[target_feature(enable = "avx512f")]
unsafe fn plane(geo: &Geo, x: *const f32, wts: &[f32], bias: f32, y: *mut f32) {
    let (oh, nvec) = (geo.g.oh, geo.nvec);
    if geo.flat {
        let mut j = 0;
        while j < nvec {
            let nv = 8.min(nvec - j);
            macro_rules! go {
                ($($nv:literal),*) => {
                    match nv {
                        $($nv => flat_tile::<$nv>(geo, x, wts, bias, y, j),)*
                        _ => unreachable!("flat tile of {nv}"),
                    }
                };
            }
            go!(1, 2, 3, 4, 5, 6, 7, 8);
            j += nv;
        }
        return;
    }
    // up to 4 vectors across, then as many rows as keep 8 accumulators
    let nv_max = nvec.min(4);
    let r_max = 8 / nv_max;
    let mut oy = 0;
    while oy < oh {
        let r = r_max.min(oh - oy);
        let mut j = 0;
        while j < nvec {
            let nv = nv_max.min(nvec - j);
            tile_dispatch(geo, x, wts, bias, y, oy, j, nv, r);
            j += nv;
        }
        oy += r;
    }
}

/// [`tile`] for runtime `nv` (1..=4) and `r` (1..=8 / nv).
#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "avx512f")]
#[inline]
unsafe fn tile_dispatch(
    geo: &Geo,
    x: *const f32,
    wts: &[f32],
    bias: f32,
    y: *mut f32,
    oy: usize,
    j: usize,
    nv: usize,
    r: usize,
) {
    macro_rules! go {
        ($(($nv:literal, $r:literal)),*) => {
            match (nv, r, geo.g.sw) {
                $(
                    ($nv, $r, 1) => tile::<1, $nv, $r>(geo, x, wts, bias, y, oy, j),
                    ($nv, $r, _) => tile::<2, $nv, $r>(geo, x, wts, bias, y, oy, j),
                )*
                _ => unreachable!("tile shape {nv} x {r}"),
            }
        };
    }
    go!(
        (1, 1),
        (1, 2),
        (1, 3),
        (1, 4),
        (1, 5),
        (1, 6),
        (1, 7),
        (1, 8),
        (2, 1),
        (2, 2),
        (2, 3),
        (2, 4),
        (3, 1),
        (3, 2),
        (4, 1),
        (4, 2)
    )
}

/// Output rows `oy .. oy + R`, column vectors `j .. j + NV`, horizontal stride `S`.
// `acc[r][v]` is walked vector-major (one mask per column vector, reused by every row)
#[allow(clippy::needless_range_loop)]
#[target_feature(enable = "avx512f")]
#[inline]
unsafe fn tile<const S: usize, const NV: usize, const R: usize>(
    geo: &Geo,
    x: *const f32,
    wts: &[f32],
    bias: f32,
    y: *mut f32,
    oy: usize,
    j: usize,
) {
    let g = &geo.g;
    let even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    let odd = _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
    let mut acc = [[_mm512_set1_ps(bias); NV]; R];
    for ky in 0..g.kh {
        let mut rows = [geo.zero; R];
        for (r, row) in rows.iter_mut().enumerate() {
            let iy = ((oy + r) * g.sh + ky).wrapping_sub(g.pt);
            if iy < g.h {
                *row = x.add(iy * g.w);
            }
        }
        let wk = wts.as_ptr().add(ky * g.kw);
        let mut kx = 0;
        while kx < g.kw {
            let w0 = _mm512_set1_ps(*wk.add(kx));
            if S == 1 {
                for v in 0..NV {
                    let m = *geo.masks.get_unchecked(((j + v) * g.kw + kx) * 2);
                    let off = ((j + v) * L + kx) as isize - g.pl as isize;
                    for r in 0..R {
                        let a = _mm512_maskz_loadu_ps(m, rows[r].wrapping_offset(off));
                        acc[r][v] = _mm512_fmadd_ps(a, w0, acc[r][v]);
                    }
                }
                kx += 1;
            } else {
                // one 32-float window: even lanes are tap kx, odd lanes tap kx + 1
                let pair = kx + 1 < g.kw;
                let w1 = _mm512_set1_ps(if pair { *wk.add(kx + 1) } else { 0.0 });
                for v in 0..NV {
                    let mi = ((j + v) * g.kw + kx) * 2;
                    let (m0, m1) = (
                        *geo.masks.get_unchecked(mi),
                        *geo.masks.get_unchecked(mi + 1),
                    );
                    let off = ((j + v) * L * 2 + kx) as isize - g.pl as isize;
                    for r in 0..R {
                        let p = rows[r].wrapping_offset(off);
                        let lo = _mm512_maskz_loadu_ps(m0, p);
                        let hi = _mm512_maskz_loadu_ps(m1, p.wrapping_add(L));
                        let e = _mm512_permutex2var_ps(lo, even, hi);
                        acc[r][v] = _mm512_fmadd_ps(e, w0, acc[r][v]);
                        if pair {
                            let o = _mm512_permutex2var_ps(lo, odd, hi);
                            acc[r][v] = _mm512_fmadd_ps(o, w1, acc[r][v]);
                        }
                    }
                }
                kx += 2;
            }
        }
    }
    for (r, ar) in acc.iter().enumerate() {
        let yr = y.add((oy + r) * g.ow);
        for (v, &a) in ar.iter().enumerate() {
            let a = act_avx512(a, geo.hint);
            let col = (j + v) * L;
            if j + v + 1 == geo.nvec {
                _mm512_mask_storeu_ps(yr.add(col), geo.tail, a);
            } else {
                _mm512_storeu_ps(yr.add(col), a);
            }
        }
    }
}

/// Flat-stream vectors `j .. j + NV` of one plane ([`flat_stream`]).
#[target_feature(enable = "avx512f")]
#[inline]
unsafe fn flat_tile<const NV: usize>(
    geo: &Geo,
    x: *const f32,
    wts: &[f32],
    bias: f32,
    y: *mut f32,
    j: usize,
) {
    let g = &geo.g;
    let kk = g.kh * g.kw;
    let mut acc = [_mm512_set1_ps(bias); NV];
    let masks = geo.masks.as_ptr().add(j * kk);
    for ky in 0..g.kh {
        for kx in 0..g.kw {
            let t = ky * g.kw + kx;
            let w0 = _mm512_set1_ps(*wts.get_unchecked(t));
            let off = (j * L + ky * g.w + kx) as isize - (g.pt * g.w + g.pl) as isize;
            let p = x.wrapping_offset(off);
            for (v, a) in acc.iter_mut().enumerate() {
                let m = *masks.add(v * kk + t);
                let i = _mm512_maskz_loadu_ps(m, p.wrapping_add(v * L));
                *a = _mm512_fmadd_ps(i, w0, *a);
            }
        }
    }
    for (v, &a) in acc.iter().enumerate() {
        let a = act_avx512(a, geo.hint);
        if j + v + 1 == geo.nvec {
            _mm512_mask_storeu_ps(y.add((j + v) * L), geo.tail, a);
        } else {
            _mm512_storeu_ps(y.add((j + v) * L), a);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::lane_mask;

    #[test]
    fn lane_masks_cover_the_columns_inside_the_row() {
        assert_eq!(lane_mask(0, 16), u16::MAX);
        assert_eq!(lane_mask(0, 7), 0x7f);
        assert_eq!(lane_mask(-1, 100), 0xfffe);
        assert_eq!(lane_mask(-2, 5), 0b111_1100);
        assert_eq!(lane_mask(10, 5), 0);
        assert_eq!(lane_mask(-20, 5), 0);
        assert_eq!(lane_mask(3, 20), u16::MAX);
        assert_eq!(lane_mask(3, 12), 0x1ff);
    }
}
