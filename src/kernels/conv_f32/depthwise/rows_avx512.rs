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
//! 3x3 kernels at stride 1 and 2 on rows wider than one vector run in bands of output rows
//! swept left to right ([`band_3x3`]): every input row is loaded once per output vector and
//! its taps are lane shifts in registers, where a [`tile`] makes one unaligned (cache-line
//! splitting) load per tap and output row. MobileNetV3-Large's 112- and 56-wide 3x3 layers
//! ran 1.6-2x faster (BENCHMARKS.md, session 41).
//!
//! Other geometries: a tile is `R` output rows by `NV` column vectors (at most 8
//! accumulators), so narrow maps (7 and 14 wide, one vector per row) still have several
//! independent FMA chains: on a 7x7 map with a 5x5 kernel one tile holds the whole plane. At
//! stride 2 a 32-float window is loaded and its even lanes feed tap `kx`, its odd lanes tap
//! `kx + 1` (one load pair, two permutes for two taps).

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
    let planes = bias.len();
    let (hw, ohw, kk) = super::check_planes(x, y, wts, planes, g);
    if ohw == 0 {
        return;
    }
    BUFS.with(|b| {
        let b = &mut *b.borrow_mut();
        if b.zero.len() < g.w {
            b.zero.resize(g.w, 0.0);
        }
        let flat = flat_stream(g) && !sweeps(g);
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
    if sweeps(&geo.g) {
        // bands of 4 output rows, the last rows in bands of 2 and 1
        let mut oy = 0;
        while oy < oh {
            let r = [4, 2, 1].into_iter().find(|&r| r <= oh - oy).unwrap_or(1);
            match (geo.g.sh, r) {
                (1, 4) => band_3x3::<1, 4>(geo, x, wts, bias, y, oy),
                (1, 2) => band_3x3::<1, 2>(geo, x, wts, bias, y, oy),
                (1, _) => band_3x3::<1, 1>(geo, x, wts, bias, y, oy),
                (_, 4) => band_3x3::<2, 4>(geo, x, wts, bias, y, oy),
                (_, 2) => band_3x3::<2, 2>(geo, x, wts, bias, y, oy),
                (_, _) => band_3x3::<2, 1>(geo, x, wts, bias, y, oy),
            }
            oy += r;
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

/// Whether [`band_3x3`] runs the geometry: 3x3 at stride 1 or 2 both ways with one column of
/// left padding (what "same" padding gives), on output rows of two vectors and more (narrower
/// maps run faster as one flat stream). A 5x5 band was tried and measured no faster than the
/// flat stream; larger kernels and small-map 5x5 go to `dwconv_f32_16c_avx512`.
fn sweeps(g: &DwGeom) -> bool {
    g.kh == 3 && g.kw == 3 && g.sh == g.sw && matches!(g.sw, 1 | 2) && g.pl == 1 && g.ow > L
}

/// How far ahead of its loads a band prefetches each input row, in vectors (512 bytes): the
/// 112-wide stride-2 layer of MobileNetV3 reads its 3.2 MB input from L3, and the prefetch
/// took 5% off it.
const PREFETCH: usize = 8;

/// Lanes `l < 16` with `col + l < n`.
#[inline(always)]
fn below(col: usize, n: usize) -> u16 {
    match n.saturating_sub(col) {
        0 => 0,
        k if k >= L => u16::MAX,
        k => (1u16 << k) - 1,
    }
}

/// Expands `$body` once per index `0..16` with `const $i: usize` set to it (a band's rows, a
/// kernel's tap columns and a band's output rows; the callers skip indices past their bounds,
/// constant conditions that compile away), so that every array index in the body is a
/// constant and the arrays live in registers.
macro_rules! unroll16 {
    (|$i:ident| $body:block) => {
        unroll16!(@ $i, $body, 0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15)
    };
    (@ $i:ident, $body:block, $($n:literal)*) => {
        $({
            const $i: usize = $n;
            $body
        })*
    };
}

/// Output rows `oy .. oy + R` of a 3x3 kernel at stride `S`, swept left to right one output
/// vector at a time. Each of the band's `S * (R - 1) + 3` input rows is loaded once per output
/// vector, and its three tap columns come from registers, not three unaligned loads (each of
/// which splits a cache line, halving the load rate):
/// - stride 1: the row's vector `j + 1` is loaded, `j - 1` and `j` are kept from the steps
///   before, and the taps are `cur` and two `valignd`s;
/// - stride 2: the row's 32 columns from `32 j` are loaded, split into even and odd lanes
///   (taps 1 and 2), and tap 0 is the odd lanes shifted by one with the last odd lane of the
///   step before.
///
/// Each tap vector feeds every output row of the band the input row lies under. Rows outside
/// the plane and columns past its edge load as zero (masked loads); the left padding column is
/// the zero vector of step `-1`.
#[target_feature(enable = "avx512f")]
#[inline]
unsafe fn band_3x3<const S: usize, const R: usize>(
    geo: &Geo,
    x: *const f32,
    wts: &[f32],
    bias: f32,
    y: *mut f32,
    oy: usize,
) {
    let g = &geo.g;
    let rows = S * (R - 1) + 3;
    debug_assert!(g.kh == 3 && g.kw == 3 && g.sh == S && g.sw == S && g.pl == 1 && rows <= 16);
    let even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    let odd = _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
    // the band's input rows (any readable row with a zero mask where outside the plane)
    let mut row = [x; 16];
    let mut live = [0u16; 16];
    let zero = _mm512_setzero_si512();
    // stride 1: the row's vectors j - 1, j, j + 1; stride 2: `prev` holds the odd lanes of the
    // step before
    let (mut prev, mut cur, mut next) = ([zero; 16], [zero; 16], [zero; 16]);
    unroll16!(|I| {
        if I < rows {
            let iy = (S * oy + I).wrapping_sub(g.pt);
            if iy < g.h {
                row[I] = x.add(iy * g.w);
                live[I] = u16::MAX;
            }
        }
    });
    let load = |i: usize, col: usize| {
        _mm512_maskz_loadu_epi32(
            live[i] & below(col, g.w),
            row[i].wrapping_add(col) as *const i32,
        )
    };
    if S == 1 {
        unroll16!(|I| {
            if I < rows {
                cur[I] = load(I, 0);
            }
        });
    }
    let wp = wts.as_ptr();
    for j in 0..geo.nvec {
        let mut taps = [[_mm512_setzero_ps(); 3]; 16];
        unroll16!(|I| {
            if I < rows {
                if S == 1 {
                    next[I] = load(I, (j + 1) * L);
                    let ahead = row[I].wrapping_add((j + PREFETCH) * L);
                    _mm_prefetch::<_MM_HINT_T0>(ahead as *const i8);
                    taps[I] = [
                        _mm512_castsi512_ps(_mm512_alignr_epi32::<15>(cur[I], prev[I])),
                        _mm512_castsi512_ps(cur[I]),
                        _mm512_castsi512_ps(_mm512_alignr_epi32::<1>(next[I], cur[I])),
                    ];
                } else {
                    let (lo, hi) = (load(I, 2 * j * L), load(I, (2 * j + 1) * L));
                    let ahead = row[I].wrapping_add((2 * j + PREFETCH) * L) as *const i8;
                    _mm_prefetch::<_MM_HINT_T0>(ahead);
                    _mm_prefetch::<_MM_HINT_T0>(ahead.wrapping_add(64));
                    let o = _mm512_permutex2var_epi32(lo, odd, hi);
                    taps[I] = [
                        _mm512_castsi512_ps(_mm512_alignr_epi32::<15>(o, prev[I])),
                        _mm512_castsi512_ps(_mm512_permutex2var_epi32(lo, even, hi)),
                        _mm512_castsi512_ps(o),
                    ];
                    prev[I] = o;
                }
            }
        });
        let mut acc = [_mm512_set1_ps(bias); R];
        unroll16!(|I| {
            unroll16!(|RR| {
                // input row I is tap row ky = I - S * RR of output row RR (wrapping past 3
                // where I is above the row's taps)
                let ky = I.wrapping_sub(S * RR);
                if I < rows && RR < R && ky < 3 {
                    let wk = wp.add(ky * 3);
                    for (kx, &t) in taps[I].iter().enumerate() {
                        acc[RR] = _mm512_fmadd_ps(t, _mm512_set1_ps(*wk.add(kx)), acc[RR]);
                    }
                }
            });
        });
        for (r, &a) in acc.iter().enumerate() {
            let v = act_avx512(a, geo.hint);
            _mm512_mask_storeu_ps(y.add((oy + r) * g.ow + j * L), below(j * L, g.ow), v);
        }
        if S == 1 {
            prev = cur;
            cur = next;
        }
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
