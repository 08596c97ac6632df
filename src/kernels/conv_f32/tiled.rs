//! Convolution as tiles of a packed im2col (ncnn's "im2col + packed sgemm", without the
//! whole-image column buffer).
//!
//! For each tile of [`NR`] output pixels, the `K = C/group * kh * kw` input taps are packed into
//! a `[K][NR]` panel (small enough for L1/L2), then a microkernel multiplies the weights, packed
//! `[M/MR][K][MR]`, by it and the epilogue adds bias and the activation on the way out. A 1x1
//! stride-1 conv reads its panel straight from the input (rows `H*W` apart) instead.
//!
//! Why not im2col + the `gemm` crate: the detector's 3x3 convs on 96x96 maps need 10 MB of
//! columns, which made the GEMM memory-bound (9 GMAC/s, against 27 for a 1x1 of the same size),
//! and small `M`/`K` (the stem: 16 x 27; LDA-AQU's offset conv: 18 x 36) ran at 2-4 GMAC/s.
//!
//! Microkernels, `gemm_f32_<MR>x<NR>_<isa>`: `gemm_f32_8x32_avx2`, `gemm_f32_8x32_avx512`,
//! `gemm_f32_8x32_neon`, `gemm_f32_8x32_armv7neon`, each tested against the portable
//! `gemm_f32_8x32_scalar`. These write the `MR x NR` accumulators to a buffer and the epilogue
//! closure stores them. `gemm_f32_8x32_epi_avx512` applies bias and a known activation in
//! registers and stores straight into the output (masked for a partial tile): on the small-`K`
//! 1x1 convs of MobileNetV3's early stages (`K` = 16 to 40) the buffer round trip and eight
//! calls per block cost as much as the multiply-adds.

use super::epilogue::EpiHint;
use super::im2col::{copy_strided, valid_range, ColGeom};
use crate::kernels::{Isa, SharedOut};

/// Output channels per microkernel call (weights are packed in blocks of `MR` rows).
pub(crate) const MR: usize = 8;
/// Output pixels per tile.
pub(crate) const NR: usize = 32;

/// `acc[r][j] = sum_k w[k][r] * panel[k * stride + j]`, `r < MR`, `j < NR`.
pub(crate) type Microkernel = unsafe fn(usize, &[f32], *const f32, usize, &mut [[f32; NR]; MR]);

/// The microkernel for `isa` and the conv kernel's name; `None` for the portable level, where
/// the `gemm` crate's own kernels beat a portable microkernel.
pub(crate) fn microkernel(isa: Isa) -> Option<(Microkernel, &'static str)> {
    match isa {
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 if Isa::Avx512.supported() => Some((
            gemm_f32_8x32_avx512 as Microkernel,
            "conv_f32_tiled_8x32_avx512",
        )),
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 | Isa::Avx2 if Isa::Avx2.supported() => Some((
            gemm_f32_8x32_avx2 as Microkernel,
            "conv_f32_tiled_8x32_avx2",
        )),
        #[cfg(target_arch = "aarch64")]
        Isa::Neon if Isa::Neon.supported() => Some((
            gemm_f32_8x32_neon as Microkernel,
            "conv_f32_tiled_8x32_neon",
        )),
        #[cfg(target_arch = "arm")]
        Isa::Neon if Isa::Neon.supported() => Some((
            gemm_f32_8x32_armv7neon as Microkernel,
            "conv_f32_tiled_8x32_armv7neon",
        )),
        _ => None,
    }
}

/// Where a microkernel with its own epilogue ([`FusedMicrokernel`]) stores a block.
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
pub(crate) struct TileDst {
    /// row 0 of the block at the tile's first pixel
    pub dst: *mut f32,
    /// floats between output rows
    pub rs: usize,
    /// the block's first bias; `rows` are read
    pub bias: *const f32,
    /// output channels to store, `<= MR`
    pub rows: usize,
    /// pixels to store, `<= NR`
    pub nr: usize,
    /// a fused residual Add's input at the block's first value, laid out as `dst` (rows `rs`
    /// apart), or null
    pub skip: *const f32,
}

/// `dst[r][j] = act(sum_k w[k][r] * panel[k * stride + j] + bias[r]) (+ skip[r][j])` for
/// `r < rows`, `j < nr`, `act` by the hint (one with [`EpiHint::has_vector_form`]); nothing
/// else in `dst` is written.
pub(crate) type FusedMicrokernel = unsafe fn(usize, &[f32], *const f32, usize, &TileDst, EpiHint);

/// The microkernel with its own epilogue for `isa` and `hint`, where there is one.
pub(crate) fn fused_microkernel(isa: Isa, hint: EpiHint) -> Option<FusedMicrokernel> {
    match isa {
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 if Isa::Avx512.supported() && hint.has_vector_form() => {
            Some(gemm_f32_8x32_epi_avx512 as FusedMicrokernel)
        }
        #[cfg(target_arch = "aarch64")]
        Isa::Neon if hint.has_vector_form() => Some(gemm_f32_8x32_epi_neon as FusedMicrokernel),
        _ => {
            let _ = hint; // x86-64 and aarch64 have kernels with their own epilogue
            None
        }
    }
}

/// Weights `[m][k]` (row-major) packed as `[ceil(m/MR)][k][MR]`, rows past `m` zero.
pub(crate) fn pack_weights(w: &[f32], m: usize, k: usize) -> Vec<f32> {
    pack_weights_blocked(w, m, k, MR)
}

/// Weights `[m][k]` (row-major) packed as `[ceil(m/block)][k][block]`, rows past `m` zero:
/// each block of output channels is one stream over `k` (shared with [`super::gemv`]).
pub(crate) fn pack_weights_blocked(w: &[f32], m: usize, k: usize, block: usize) -> Vec<f32> {
    let blocks = m.div_ceil(block);
    let mut p = vec![0.0; blocks * k * block];
    for (row, wr) in w.chunks_exact(k.max(1)).take(m).enumerate() {
        let (b, r) = (row / block, row % block);
        for (kk, &v) in wr.iter().enumerate() {
            p[(b * k + kk) * block + r] = v;
        }
    }
    p
}

/// Packs output pixels `p0 .. p0 + nr` (`nr <= NR`, flattened `oy * ow + ox`) of one group's
/// convolution into `panel[K][NR]`: row `(ci * kh + ky) * kw + kx`, 0 in the padding and in
/// lanes `nr..NR`. The pixels are walked as runs within one output row, so a stride-1 tap row
/// is one copy.
pub(crate) fn pack_tile(x: &[f32], g: &ColGeom, p0: usize, nr: usize, panel: &mut [f32]) {
    let (kh, kw) = (g.kh, g.kw);
    let rows = g.cg * kh * kw;
    debug_assert!(nr <= NR && panel.len() >= rows * NR);
    if nr < NR {
        for row in panel[..rows * NR].chunks_exact_mut(NR) {
            row[nr..].fill(0.0);
        }
    }
    let mut p = p0;
    while p < p0 + nr {
        let (oy, ox0) = (p / g.ow, p % g.ow);
        let len = (g.ow - ox0).min(p0 + nr - p);
        let j0 = p - p0;
        for ky in 0..kh {
            let iy = (oy * g.sh + ky * g.dh) as isize - g.pt as isize;
            let inside = iy >= 0 && (iy as usize) < g.h;
            for kx in 0..kw {
                // output columns whose tap falls inside the image, clipped to this run
                let (lo, hi) = valid_range(g.ow, g.w, kx * g.dw, g.sw, g.pl);
                let (lo, hi) = (lo.clamp(ox0, ox0 + len), hi.clamp(ox0, ox0 + len));
                let s0 = (lo * g.sw + kx * g.dw).wrapping_sub(g.pl);
                // A whole tile row from one input row: a fixed-size copy, which is inlined
                // (the general path's `memcpy`/`memset` calls per row cost the detector's 3x3
                // convs as much as the copies).
                let whole = inside && g.sw == 1 && len == NR && lo == ox0 && hi == ox0 + NR;
                for ci in 0..g.cg {
                    let r = (ci * kh + ky) * kw + kx;
                    let dst = &mut panel[r * NR + j0..r * NR + j0 + len];
                    if whole {
                        let src = &x[(ci * g.h + iy as usize) * g.w + s0..][..NR];
                        let d: &mut [f32; NR] = dst.try_into().expect("len == NR");
                        d.copy_from_slice(src);
                        continue;
                    }
                    if !inside || lo >= hi {
                        dst.fill(0.0);
                        continue;
                    }
                    let src = &x[(ci * g.h + iy as usize) * g.w..][..g.w];
                    if lo > ox0 {
                        dst[..lo - ox0].fill(0.0);
                    }
                    if hi < ox0 + len {
                        dst[hi - ox0..].fill(0.0);
                    }
                    copy_strided(src, s0, g.sw, &mut dst[lo - ox0..hi - ox0]);
                }
            }
        }
        p += len;
    }
}

/// A group's input as [`pack_tile_staged`] reads it: zero-padded and split by column phase,
/// a band of rows at a time. Plane `(ci, p)` (`p < sw`) holds `rows` padded rows of `cols`
/// values, value `q` of a row being padded column `q * sw + p`; so a tap's values for
/// consecutive output columns are consecutive at any stride, and the padding is already in
/// place. A band is `band` tiles of output pixels; its rows start at the padded row of its
/// first pixel.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Staging {
    pub rows: usize,
    pub cols: usize,
    pub band: usize,
}

/// Floats of staged input a band aims at (all channels): small enough to stay in L2, and to
/// keep a stem's staging from growing the plan's scratch by a copy of its whole input.
const BAND_FLOATS: usize = 1 << 16;

impl Staging {
    /// The staging for `g` over `c` channels, bands of about [`BAND_FLOATS`].
    pub(crate) fn new(g: &ColGeom, c: usize) -> Staging {
        Self::with_budget(g, c, BAND_FLOATS)
    }

    /// [`Staging::new`] with bands of about `floats` (at least one output row's reach).
    pub(crate) fn with_budget(g: &ColGeom, c: usize, floats: usize) -> Staging {
        let reach = |out: usize, s: usize, k: usize, d: usize| (out - 1) * s + (k - 1) * d + 1;
        let (oh, ow) = (g.oh.max(1), g.ow.max(1));
        let cols = reach(ow, g.sw, g.kw.max(1), g.dw).div_ceil(g.sw);
        let full = reach(oh, g.sh, g.kh.max(1), g.dh);
        let tiles = (oh * ow).div_ceil(NR);
        // output rows whose taps fit the budget, then whole tiles of them
        let budget_rows = floats / (c * g.sw * cols).max(1);
        let out_rows = budget_rows.saturating_sub(reach(1, g.sh, g.kh.max(1), g.dh)) / g.sh + 1;
        let band = (out_rows.saturating_mul(ow) / NR).clamp(1, tiles);
        // a band's pixels span at most this many output rows, wherever it starts
        let span = ((band * NR).div_ceil(ow) + 1).min(oh);
        Staging {
            rows: if band == tiles {
                full
            } else {
                reach(span, g.sh, g.kh.max(1), g.dh).min(full)
            },
            cols,
            band,
        }
    }

    /// Floats for `c` channels, plus a tile's slack: [`pack_tile_staged`] copies whole tile
    /// rows, which may run past a plane's end.
    pub(crate) fn len(&self, g: &ColGeom, c: usize) -> usize {
        c * g.sw * self.rows * self.cols + NR
    }

    /// The first padded row of the band that starts at tile `t0`.
    pub(crate) fn first_row(&self, g: &ColGeom, t0: usize) -> usize {
        (t0 * NR / g.ow.max(1)) * g.sh
    }
}

/// Stages padded rows `r0..r0 + st.rows` of `c` input planes `x` (`[c][h][w]`) into `dst` as
/// [`Staging`] lays them out, planes in parallel.
pub(crate) fn stage_input(
    x: &[f32],
    g: &ColGeom,
    c: usize,
    st: &Staging,
    r0: usize,
    dst: &mut [f32],
) {
    let plane = st.rows * st.cols;
    let planes = c * g.sw;
    assert!(x.len() >= c * g.h * g.w && dst.len() >= st.len(g, c));
    dst[planes * plane..planes * plane + NR].fill(0.0);
    let out = SharedOut(dst.as_mut_ptr());
    crate::kernels::par::for_each(planes, (16384 / plane.max(1)).max(1), &|i| {
        let (ci, phase) = (i / g.sw, i % g.sw);
        // SAFETY: plane i of `dst`, inside it (asserted above): this job's alone.
        let d = unsafe { std::slice::from_raw_parts_mut(out.at(i * plane), plane) };
        let src = &x[ci * g.h * g.w..(ci + 1) * g.h * g.w];
        // values q of a row with 0 <= q * sw + phase - pl < w
        let (lo, hi) = valid_range(st.cols, g.w, phase, g.sw, g.pl);
        for (r, row) in d.chunks_exact_mut(st.cols).enumerate() {
            let iy = (r0 + r) as isize - g.pt as isize;
            if iy < 0 || iy >= g.h as isize || lo >= hi {
                row.fill(0.0);
                continue;
            }
            row[..lo].fill(0.0);
            row[hi..].fill(0.0);
            let s0 = lo * g.sw + phase - g.pl;
            copy_strided(&src[iy as usize * g.w..][..g.w], s0, g.sw, &mut row[lo..hi]);
        }
    });
}

impl Staging {
    /// Each panel row's `(ci, ky, kx)` tap as an offset into the group's staged planes, from
    /// an output pixel's own offset ([`Staging::pixel`]).
    pub(crate) fn taps(&self, g: &ColGeom) -> Vec<usize> {
        let plane = self.rows * self.cols;
        let mut taps = Vec::with_capacity(g.cg * g.kh * g.kw);
        for ci in 0..g.cg {
            for ky in 0..g.kh {
                for kx in 0..g.kw {
                    let (phase, col) = ((kx * g.dw) % g.sw, (kx * g.dw) / g.sw);
                    taps.push((ci * g.sw + phase) * plane + ky * g.dh * self.cols + col);
                }
            }
        }
        taps
    }

    /// Output pixel `p`'s offset in planes staged from padded row `r0`: its taps are at this
    /// plus [`Staging::taps`].
    pub(crate) fn pixel(&self, g: &ColGeom, r0: usize, p: usize) -> usize {
        ((p / g.ow) * g.sh - r0) * self.cols + p % g.ow
    }
}

/// One group's staged band: its planes as [`stage_input`] wrote them from padded row `r0`,
/// read through `taps` ([`Staging::taps`]).
pub(crate) struct StagedBand<'a> {
    pub data: &'a [f32],
    pub taps: &'a [usize],
    pub layout: &'a Staging,
    pub r0: usize,
}

/// [`pack_tile`] from a staged band: every tap row is a run of consecutive values, copied
/// [`NR`] at a time, so the copies have a fixed size and are inlined. `panel` holds
/// `K * NR + NR` floats: a run's copy spills past its end into the next row (written after it)
/// or the slack. Lanes `nr..NR` are zero.
pub(crate) fn pack_tile_staged(
    band: &StagedBand,
    g: &ColGeom,
    p0: usize,
    nr: usize,
    panel: &mut [f32],
) {
    let StagedBand {
        data: st,
        taps,
        layout: s,
        r0,
    } = *band;
    debug_assert!(nr <= NR && panel.len() >= (taps.len() + 1) * NR);
    // the tile's runs within one output row: (offset of the run's first pixel, first lane)
    let mut runs = [(0usize, 0usize); NR];
    let mut count = 0;
    let mut p = p0;
    while p < p0 + nr {
        runs[count] = (s.pixel(g, r0, p), p - p0);
        count += 1;
        p += (g.ow - p % g.ow).min(p0 + nr - p);
    }
    for (r, &tap) in taps.iter().enumerate() {
        for &(off, j0) in &runs[..count] {
            let d: &mut [f32; NR] = (&mut panel[r * NR + j0..][..NR])
                .try_into()
                .expect("NR floats");
            d.copy_from_slice(&st[tap + off..][..NR]);
        }
        if nr < NR {
            panel[r * NR + nr..(r + 1) * NR].fill(0.0);
        }
    }
}

/// Portable microkernel, the reference the SIMD ones are tested against.
///
/// # Safety
/// `panel` must be readable at `k * stride + j` for `k < kc`, `j < NR`; `w.len() >= kc * MR`.
#[cfg(test)]
pub(crate) unsafe fn gemm_f32_8x32_scalar(
    kc: usize,
    w: &[f32],
    panel: *const f32,
    stride: usize,
    acc: &mut [[f32; NR]; MR],
) {
    assert!(w.len() >= kc * MR, "packed weights too short");
    for jc in 0..NR / 8 {
        let mut a = [[0.0f32; 8]; MR];
        for (kk, wk) in w.chunks_exact(MR).take(kc).enumerate() {
            // SAFETY: in bounds by the caller's contract.
            let c: &[f32; 8] = &*(panel.add(kk * stride + jc * 8) as *const [f32; 8]);
            for (ar, &wr) in a.iter_mut().zip(wk) {
                for (v, &cj) in ar.iter_mut().zip(c) {
                    *v += wr * cj;
                }
            }
        }
        for (dst, ar) in acc.iter_mut().zip(&a) {
            dst[jc * 8..jc * 8 + 8].copy_from_slice(ar);
        }
    }
}

/// AVX2+FMA microkernel: four 4-row x 16-pixel passes (8 accumulators each).
///
/// # Safety
/// As [`gemm_f32_8x32_scalar`]; the CPU must support AVX2 and FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
pub(crate) unsafe fn gemm_f32_8x32_avx2(
    kc: usize,
    w: &[f32],
    panel: *const f32,
    stride: usize,
    acc: &mut [[f32; NR]; MR],
) {
    use std::arch::x86_64::*;
    assert!(w.len() >= kc * MR, "packed weights too short");
    let wp = w.as_ptr();
    for r0 in [0, 4] {
        for j0 in [0, 16] {
            let mut c = [[_mm256_setzero_ps(); 2]; 4];
            for kk in 0..kc {
                let p = panel.add(kk * stride + j0);
                let b0 = _mm256_loadu_ps(p);
                let b1 = _mm256_loadu_ps(p.add(8));
                let wk = wp.add(kk * MR + r0);
                for (r, cr) in c.iter_mut().enumerate() {
                    let a = _mm256_broadcast_ss(&*wk.add(r));
                    cr[0] = _mm256_fmadd_ps(a, b0, cr[0]);
                    cr[1] = _mm256_fmadd_ps(a, b1, cr[1]);
                }
            }
            for (r, cr) in c.iter().enumerate() {
                let d = acc[r0 + r].as_mut_ptr().add(j0);
                _mm256_storeu_ps(d, cr[0]);
                _mm256_storeu_ps(d.add(8), cr[1]);
            }
        }
    }
}

/// AVX-512 microkernel: 8 rows x 32 pixels in 16 accumulators.
///
/// # Safety
/// As [`gemm_f32_8x32_scalar`]; the CPU must support AVX-512F.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
// AVX-512 intrinsics are stable since 1.89, above the crate's MSRV (the Arm toolchain's 1.85).
#[allow(clippy::incompatible_msrv)]
pub(crate) unsafe fn gemm_f32_8x32_avx512(
    kc: usize,
    w: &[f32],
    panel: *const f32,
    stride: usize,
    acc: &mut [[f32; NR]; MR],
) {
    gemm_f32_rx32_avx512::<MR>(kc, w, panel, stride, acc)
}

/// [`gemm_f32_8x32_avx512`] for `R` rows (`w` packed `[kc][R]`): the first `R` rows of `acc`
/// are written, the rest left as they are.
///
/// # Safety
/// As [`gemm_f32_8x32_scalar`] with `R` rows; the CPU must support AVX-512F.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[allow(clippy::incompatible_msrv)]
pub(crate) unsafe fn gemm_f32_rx32_avx512<const R: usize>(
    kc: usize,
    w: &[f32],
    panel: *const f32,
    stride: usize,
    acc: &mut [[f32; NR]; MR],
) {
    use std::arch::x86_64::*;
    assert!(R <= MR && w.len() >= kc * R, "packed weights too short");
    let c = accumulate_avx512::<R, 2>(kc, w, panel, stride);
    for (r, cr) in c.iter().enumerate() {
        let d = acc[r].as_mut_ptr();
        _mm512_storeu_ps(d, cr[0]);
        _mm512_storeu_ps(d.add(16), cr[1]);
    }
}

/// The AVX-512 microkernels' loop: `R` rows (weights `[kc][R]`) x `16 V` pixels in `R V`
/// accumulators, left in registers (inlined into the callers).
///
/// # Safety
/// As [`gemm_f32_8x32_scalar`] with `16 V` pixels per panel row; the CPU must support
/// AVX-512F.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[inline]
#[allow(clippy::incompatible_msrv)]
unsafe fn accumulate_avx512<const R: usize, const V: usize>(
    kc: usize,
    w: &[f32],
    panel: *const f32,
    stride: usize,
) -> [[std::arch::x86_64::__m512; V]; R] {
    use std::arch::x86_64::*;
    let wp = w.as_ptr();
    let mut c = [[_mm512_setzero_ps(); V]; R];
    for kk in 0..kc {
        let p = panel.add(kk * stride);
        let mut b = [_mm512_setzero_ps(); V];
        for (h, bh) in b.iter_mut().enumerate() {
            *bh = _mm512_loadu_ps(p.add(16 * h));
        }
        let wk = wp.add(kk * R);
        for (r, cr) in c.iter_mut().enumerate() {
            let a = _mm512_set1_ps(*wk.add(r));
            for (ch, &bh) in cr.iter_mut().zip(&b) {
                *ch = _mm512_fmadd_ps(a, bh, *ch);
            }
        }
    }
    c
}

/// AVX-512 microkernel with its own epilogue ([`FusedMicrokernel`]): the loop of
/// [`gemm_f32_8x32_avx512`], then bias, activation ([`super::epilogue::act_avx512`]) and masked
/// stores from the registers.
///
/// # Safety
/// As [`gemm_f32_8x32_scalar`]; `d` writable at `r * d.rs + j` for `r < d.rows`, `j < d.nr`,
/// `d.bias` readable for `d.rows` floats, `d.rows <= MR`, `d.nr <= NR`; the CPU must support
/// AVX-512F.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[allow(clippy::incompatible_msrv)]
pub(crate) unsafe fn gemm_f32_8x32_epi_avx512(
    kc: usize,
    w: &[f32],
    panel: *const f32,
    stride: usize,
    d: &TileDst,
    hint: EpiHint,
) {
    assert!(w.len() >= kc * MR, "packed weights too short");
    debug_assert!(d.rows <= MR && d.nr <= NR && hint.has_vector_form());
    // a tile of at most 16 pixels (the last of a map) multiplies one vector per row, not two
    if d.nr <= 16 {
        store_epi_avx512(accumulate_avx512::<MR, 1>(kc, w, panel, stride), d, hint);
    } else {
        store_epi_avx512(accumulate_avx512::<MR, 2>(kc, w, panel, stride), d, hint);
    }
}

/// The fused epilogue of [`gemm_f32_8x32_epi_avx512`]: bias, activation and masked stores of
/// `c`'s first `d.rows` rows, `d.nr` pixels each.
///
/// # Safety
/// As [`gemm_f32_8x32_epi_avx512`], with `d.nr <= 16 V`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[inline]
#[allow(clippy::incompatible_msrv)]
unsafe fn store_epi_avx512<const V: usize>(
    c: [[std::arch::x86_64::__m512; V]; MR],
    d: &TileDst,
    hint: EpiHint,
) {
    use std::arch::x86_64::*;
    let lanes = |n: usize| -> __mmask16 { ((1u32 << n.min(16)) - 1) as __mmask16 };
    for (r, cr) in c.iter().enumerate().take(d.rows) {
        let bias = _mm512_set1_ps(*d.bias.add(r));
        let row = d.dst.add(r * d.rs);
        for (h, &acc) in cr.iter().enumerate() {
            let mask = lanes(d.nr.saturating_sub(16 * h));
            let mut v = super::epilogue::act_avx512(_mm512_add_ps(acc, bias), hint);
            if !d.skip.is_null() {
                let s = _mm512_maskz_loadu_ps(mask, d.skip.add(r * d.rs + h * 16));
                v = _mm512_add_ps(v, s);
            }
            _mm512_mask_storeu_ps(row.add(h * 16), mask, v);
        }
    }
}

// The NEON kernels' assembly runs four 8-pixel passes per tile.
#[cfg(target_arch = "aarch64")]
const _: () = assert!(NR == 32, "gemm_f32_8x32_neon runs NR / 8 = 4 passes");

/// The 16 FMAs of one k for an 8-row x 8-pixel pass: panel values in `$b0`/`$b1` (pixels
/// 0-3, 4-7), weights of rows 0-3 in `$w0` and 4-7 in `$w1`; row r's accumulators are
/// v(16 + 2r), v(17 + 2r).
#[cfg(target_arch = "aarch64")]
macro_rules! fma_k_f32 {
    ($b0:literal, $b1:literal, $w0:literal, $w1:literal) => {
        concat!(
            fma_k_f32!(@row 16, 17, $b0, $b1, $w0, 0),
            fma_k_f32!(@row 18, 19, $b0, $b1, $w0, 1),
            fma_k_f32!(@row 20, 21, $b0, $b1, $w0, 2),
            fma_k_f32!(@row 22, 23, $b0, $b1, $w0, 3),
            fma_k_f32!(@row 24, 25, $b0, $b1, $w1, 0),
            fma_k_f32!(@row 26, 27, $b0, $b1, $w1, 1),
            fma_k_f32!(@row 28, 29, $b0, $b1, $w1, 2),
            fma_k_f32!(@row 30, 31, $b0, $b1, $w1, 3),
        )
    };
    (@row $a:literal, $c:literal, $b0:literal, $b1:literal, $w:literal, $l:literal) => {
        concat!(
            "fmla v", $a, ".4s, v", $b0, ".4s, v", $w, ".s[", $l, "]\n",
            "fmla v", $c, ".4s, v", $b1, ".4s, v", $w, ".s[", $l, "]\n",
        )
    };
}

/// A pass's dot products over `{kc}` k (panel rows `{sb}` bytes apart from `{p}`, weights
/// from `{w}`, both advanced; `{cnt}` scratch, `v0`-`v7` clobbered) into `v16`-`v31`: two
/// k at a time, each panel row's 8 values in one `LD1` and both k's 8 weights in one, four k
/// per loop iteration, then a pair and a single k by the bits of `{kc}`.
#[cfg(target_arch = "aarch64")]
macro_rules! dot_pass_f32 {
    () => {
        concat!(
            "lsr {cnt}, {kc}, #2\n",
            "cbz {cnt}, 3f\n",
            "2:\n",
            dot_pass_f32!(@pair),
            dot_pass_f32!(@pair),
            "subs {cnt}, {cnt}, #1\n",
            "b.ne 2b\n",
            "3:\n",
            "tbz {kc}, #1, 4f\n",
            dot_pass_f32!(@pair),
            "4:\n",
            "tbz {kc}, #0, 5f\n",
            "ld1 {{v0.4s, v1.4s}}, [{p}]\n",
            "ld1 {{v4.4s, v5.4s}}, [{w}]\n",
            fma_k_f32!(0, 1, 4, 5),
            "5:\n",
        )
    };
    (@pair) => {
        concat!(
            "ld1 {{v0.4s, v1.4s}}, [{p}], {sb}\n",
            "ld1 {{v2.4s, v3.4s}}, [{p}], {sb}\n",
            "ld1 {{v4.4s, v5.4s, v6.4s, v7.4s}}, [{w}], #64\n",
            fma_k_f32!(0, 1, 4, 5),
            fma_k_f32!(2, 3, 6, 7),
        )
    };
}

/// A fused residual Add on the 8 rows of a pass (`v16`-`v31`): each row's 8 values from `{s}`
/// (advanced `{ab}` bytes a row) added in (`v4`, `v5` scratch).
#[cfg(target_arch = "aarch64")]
macro_rules! add_skip_pass_f32 {
    () => {
        concat!(
            add_skip_pass_f32!(@row "16", "17"), add_skip_pass_f32!(@row "18", "19"),
            add_skip_pass_f32!(@row "20", "21"), add_skip_pass_f32!(@row "22", "23"),
            add_skip_pass_f32!(@row "24", "25"), add_skip_pass_f32!(@row "26", "27"),
            add_skip_pass_f32!(@row "28", "29"), add_skip_pass_f32!(@row "30", "31"),
        )
    };
    (@row $a:literal, $b:literal) => {
        concat!(
            "ld1 {{v4.4s, v5.4s}}, [{s}], {ab}\n",
            "fadd v", $a, ".4s, v", $a, ".4s, v4.4s\n",
            "fadd v", $b, ".4s, v", $b, ".4s, v5.4s\n",
        )
    };
}

/// The 8 rows of a pass (`v16`-`v31`) stored at `{a}`, `{ab}` bytes apart.
#[cfg(target_arch = "aarch64")]
macro_rules! store_pass_f32 {
    () => {
        concat!(
            "st1 {{v16.4s, v17.4s}}, [{a}], {ab}\n",
            "st1 {{v18.4s, v19.4s}}, [{a}], {ab}\n",
            "st1 {{v20.4s, v21.4s}}, [{a}], {ab}\n",
            "st1 {{v22.4s, v23.4s}}, [{a}], {ab}\n",
            "st1 {{v24.4s, v25.4s}}, [{a}], {ab}\n",
            "st1 {{v26.4s, v27.4s}}, [{a}], {ab}\n",
            "st1 {{v28.4s, v29.4s}}, [{a}], {ab}\n",
            "st1 {{v30.4s, v31.4s}}, [{a}]\n",
        )
    };
}

/// An activation on the 16 accumulators of a pass, `v16`-`v31`, with the constants 0, 1, 0.5
/// and 1/6 in `v0`-`v3` (`v4` scratch): `relu` is `FMAX` with 0; `hardswish` is `v *
/// min(1, max(0, v * 1/6 + 0.5))` with one fused multiply-add, as the AVX-512 epilogue.
#[cfg(target_arch = "aarch64")]
macro_rules! act_f32 {
    ($op:ident) => {
        concat!(
            act_f32!(@$op "16"), act_f32!(@$op "17"), act_f32!(@$op "18"), act_f32!(@$op "19"),
            act_f32!(@$op "20"), act_f32!(@$op "21"), act_f32!(@$op "22"), act_f32!(@$op "23"),
            act_f32!(@$op "24"), act_f32!(@$op "25"), act_f32!(@$op "26"), act_f32!(@$op "27"),
            act_f32!(@$op "28"), act_f32!(@$op "29"), act_f32!(@$op "30"), act_f32!(@$op "31"),
        )
    };
    (@relu $v:literal) => {
        concat!("fmax v", $v, ".4s, v", $v, ".4s, v0.4s\n")
    };
    (@hardswish $v:literal) => {
        concat!(
            "mov v4.16b, v2.16b\n",
            "fmla v4.4s, v", $v, ".4s, v3.4s\n",
            "fmax v4.4s, v4.4s, v0.4s\n",
            "fmin v4.4s, v4.4s, v1.4s\n",
            "fmul v", $v, ".4s, v", $v, ".4s, v4.4s\n",
        )
    };
}

/// NEON microkernel: four 8-row x 8-pixel passes (16 accumulators, `v16`-`v31`); each weight
/// is used by lane (`fmla v.4s, v.4s, v.s[i]`). Two k at a time: the two panel rows' 8 values
/// come in one two-register `LD1` each and both k's 8 weights in one four-register `LD1`, for
/// 32 FMAs (35 instructions; [`dot_pass_f32`]). Inline assembly: LLVM's loop from intrinsics
/// took 45 instructions per two k (a pointer copy, separate adds and compares beside the
/// loads).
///
/// # Safety
/// As [`gemm_f32_8x32_scalar`]; NEON is part of aarch64.
#[cfg(target_arch = "aarch64")]
pub(crate) unsafe fn gemm_f32_8x32_neon(
    kc: usize,
    w: &[f32],
    panel: *const f32,
    stride: usize,
    acc: &mut [[f32; NR]; MR],
) {
    assert!(w.len() >= kc * MR, "packed weights too short");
    sums_neon(kc, w, panel, stride, acc, NR / 8);
}

/// The sums of the first `passes` 8-pixel passes into `acc` (accumulators from zero, no
/// activation, rows NR floats apart).
///
/// # Safety
/// As [`passes_neon`].
#[cfg(target_arch = "aarch64")]
unsafe fn sums_neon(
    kc: usize,
    w: &[f32],
    panel: *const f32,
    stride: usize,
    acc: &mut [[f32; NR]; MR],
    passes: usize,
) {
    let zeros = [0.0f32; MR];
    let dst = acc.as_mut_ptr() as *mut f32;
    let no_skip = std::ptr::null();
    passes_neon(
        kc,
        w,
        panel,
        stride,
        zeros.as_ptr(),
        0,
        dst,
        no_skip,
        NR,
        passes,
    );
}

/// [`gemm_f32_8x32_neon`] with the epilogue in registers ([`FusedMicrokernel`]): a full block
/// (8 rows, 32 pixels) starts its accumulators at the bias (`DUP` by lane instead of zeroing
/// them), applies Relu (`FMAX` with 0) or HardSwish (`v * clamp(v * 1/6 + 0.5, 0, 1)`, one
/// fused multiply-add, as the AVX-512 epilogue) to the registers and stores them into the
/// output rows: the sums no longer go through a buffer and back through the closure's loop
/// (7.4 M instructions of the 71 M in MobileNetV3-Large's float tiled convs on the
/// Cortex-A72). A partial block runs the passes that hold its pixels into a buffer and the
/// same arithmetic on it.
///
/// # Safety
/// As [`gemm_f32_8x32_neon`]; `d.dst + r * d.rs` writable for `d.nr` floats for `r <
/// d.rows`, `d.bias` readable for `d.rows` floats, `d.rows <= MR`, `d.nr <= NR`.
#[cfg(target_arch = "aarch64")]
pub(crate) unsafe fn gemm_f32_8x32_epi_neon(
    kc: usize,
    w: &[f32],
    panel: *const f32,
    stride: usize,
    d: &TileDst,
    hint: EpiHint,
) {
    assert!(w.len() >= kc * MR, "packed weights too short");
    debug_assert!(d.rows <= MR && d.nr <= NR && hint.has_vector_form());
    if d.rows < MR || d.nr < NR {
        let mut acc = [[0.0f32; NR]; MR];
        // only the 8-pixel passes that hold pixels: the last tile of a 14 x 14 map has 4 of
        // its 32, of a 7 x 7 map 17
        sums_neon(kc, w, panel, stride, &mut acc, d.nr.div_ceil(8));
        for (r, ar) in acc.iter().enumerate().take(d.rows) {
            let b = *d.bias.add(r);
            let row = std::slice::from_raw_parts_mut(d.dst.add(r * d.rs), d.nr);
            for (o, &v) in row.iter_mut().zip(ar) {
                *o = super::epilogue::act_fused(v + b, hint);
            }
        }
        if !d.skip.is_null() {
            add_skip_rows(d.dst, d.skip, d.rs, d.rows, d.nr);
        }
        return;
    }
    let mode = match hint {
        EpiHint::Relu => 1,
        EpiHint::HardSwish => 2,
        _ => 0,
    };
    passes_neon(
        kc,
        w,
        panel,
        stride,
        d.bias,
        mode,
        d.dst,
        d.skip,
        d.rs,
        NR / 8,
    );
}

/// The first `passes` (1 to 4) 8-pixel passes of the NEON kernels, one assembly block for
/// every activation and pass (`{jc}` counts them; unrolled by LLVM per pass and hint, the fused
/// kernel took 13 KB of the board binary): accumulators start at `bias[r]` (row r's pair from
/// lane r of `v0`/`v1`), then [`dot_pass_f32`], then `mode` 0 identity, 1 Relu, 2 HardSwish
/// (constants 0, 1, 0.5, 1/6 in `v0`-`v3`), plus the rows of `skip` unless it is null (a fused
/// residual Add, laid out as `dst`), stored as 8 rows of `8 * passes` floats `rs` apart from
/// `dst`.
///
/// # Safety
/// Reads as [`gemm_f32_8x32_neon`] (the first `8 * passes` pixels of each panel row) and 8
/// floats at `bias`; `dst + r * rs` writable and, unless null, `skip + r * rs` readable for
/// `8 * passes` floats for `r < MR`.
#[cfg(target_arch = "aarch64")]
#[allow(clippy::too_many_arguments)]
#[inline(never)] // one copy of the assembly for its three callers (the board binary's size)
unsafe fn passes_neon(
    kc: usize,
    w: &[f32],
    panel: *const f32,
    stride: usize,
    bias: *const f32,
    mode: usize,
    dst: *mut f32,
    skip: *const f32,
    rs: usize,
    passes: usize,
) {
    use std::arch::asm;
    assert!((1..=NR / 8).contains(&passes), "1 to 4 passes");
    // SAFETY: per pass, per k, reads 8 floats of the panel row at `panel + k * stride + 8 *
    // pass` and the k's 8 weights, and the 8 biases; writes 8 floats of each of the 8 rows
    // from column 8 * pass, and reads those of `skip` if not null (the contract); only named
    // registers.
    asm!(
        "1:",
        "mov {p}, {pb}",
        "mov {w}, {wb}",
        "mov {a}, {db}",
        // the accumulators start at the bias: row r's pair from lane r of `v0`/`v1`
        "ld1 {{v0.4s, v1.4s}}, [{bias}]",
        "dup v16.4s, v0.s[0]", "dup v17.4s, v0.s[0]",
        "dup v18.4s, v0.s[1]", "dup v19.4s, v0.s[1]",
        "dup v20.4s, v0.s[2]", "dup v21.4s, v0.s[2]",
        "dup v22.4s, v0.s[3]", "dup v23.4s, v0.s[3]",
        "dup v24.4s, v1.s[0]", "dup v25.4s, v1.s[0]",
        "dup v26.4s, v1.s[1]", "dup v27.4s, v1.s[1]",
        "dup v28.4s, v1.s[2]", "dup v29.4s, v1.s[2]",
        "dup v30.4s, v1.s[3]", "dup v31.4s, v1.s[3]",
        dot_pass_f32!(),
        // {mode}: 0 identity, 1 Relu, 2 HardSwish; constants 0, 1, 0.5, 1/6 in v0-v3
        "cbz {mode}, 8f",
        "movi v0.16b, #0",
        "cmp {mode}, #1",
        "b.eq 7f",
        "fmov v1.4s, #1.0",
        "fmov v2.4s, #0.5",
        "dup v3.4s, {sixth:w}",
        act_f32!(hardswish),
        "b 8f",
        "7:",
        act_f32!(relu),
        "8:",
        // the residual Add: each row's 8 skip values added before the store
        "cbz {skb}, 9f",
        "mov {s}, {skb}",
        "add {skb}, {skb}, #32",
        add_skip_pass_f32!(),
        "9:",
        store_pass_f32!(),
        "add {pb}, {pb}, #32",
        "add {db}, {db}, #32",
        "subs {jc}, {jc}, #1",
        "b.ne 1b",
        bias = in(reg) bias,
        sixth = in(reg) (1.0f32 / 6.0).to_bits(),
        mode = in(reg) mode,
        kc = in(reg) kc,
        sb = in(reg) stride * 4,
        ab = in(reg) rs * 4,
        wb = in(reg) w.as_ptr(),
        pb = inout(reg) panel => _,
        db = inout(reg) dst => _,
        skb = inout(reg) skip => _,
        jc = inout(reg) passes => _,
        s = out(reg) _,
        cnt = out(reg) _,
        p = out(reg) _,
        w = out(reg) _,
        a = out(reg) _,
        out("v0") _, out("v1") _, out("v2") _, out("v3") _,
        out("v4") _, out("v5") _, out("v6") _, out("v7") _,
        out("v16") _, out("v17") _, out("v18") _, out("v19") _,
        out("v20") _, out("v21") _, out("v22") _, out("v23") _,
        out("v24") _, out("v25") _, out("v26") _, out("v27") _,
        out("v28") _, out("v29") _, out("v30") _, out("v31") _,
        options(nostack),
    );
}

/// 32-bit Arm NEON microkernel, inline assembly (Rust's 32-bit Arm NEON intrinsics are not
/// stable, and LLVM does not vectorise f32 arithmetic for armv7 NEON by itself, since NEON
/// flushes subnormals): eight 8-row x 4-pixel passes, each 8 accumulators, one `VLD1` of 4
/// pixels and one of 8 weights per k feeding 8 `VMLA.F32` by scalar; two k per loop step.
///
/// # Safety
/// As [`gemm_f32_8x32_scalar`]; the CPU has NEON.
#[cfg(target_arch = "arm")]
pub(crate) unsafe fn gemm_f32_8x32_armv7neon(
    kc: usize,
    w: &[f32],
    panel: *const f32,
    stride: usize,
    acc: &mut [[f32; NR]; MR],
) {
    use std::arch::asm;
    assert!(w.len() >= kc * MR, "packed weights too short");
    for jc in 0..NR / 4 {
        asm!(
            ".fpu neon",
            "vmov.i32 q8, #0",
            "vmov.i32 q9, #0",
            "vmov.i32 q10, #0",
            "vmov.i32 q11, #0",
            "vmov.i32 q12, #0",
            "vmov.i32 q13, #0",
            "vmov.i32 q14, #0",
            "vmov.i32 q15, #0",
            "cmp {pairs}, #0",
            "beq 3f",
            "2:",
            "vld1.32 {{d0, d1}}, [{p}], {sb}",
            "vld1.32 {{d2-d5}}, [{w}]!",
            "vld1.32 {{d6, d7}}, [{p}], {sb}",
            "vld1.32 {{d8-d11}}, [{w}]!",
            "vmla.f32 q8, q0, d2[0]",
            "vmla.f32 q9, q0, d2[1]",
            "vmla.f32 q10, q0, d3[0]",
            "vmla.f32 q11, q0, d3[1]",
            "vmla.f32 q12, q0, d4[0]",
            "vmla.f32 q13, q0, d4[1]",
            "vmla.f32 q14, q0, d5[0]",
            "vmla.f32 q15, q0, d5[1]",
            "vmla.f32 q8, q3, d8[0]",
            "vmla.f32 q9, q3, d8[1]",
            "vmla.f32 q10, q3, d9[0]",
            "vmla.f32 q11, q3, d9[1]",
            "vmla.f32 q12, q3, d10[0]",
            "vmla.f32 q13, q3, d10[1]",
            "vmla.f32 q14, q3, d11[0]",
            "vmla.f32 q15, q3, d11[1]",
            "subs {pairs}, {pairs}, #1",
            "bne 2b",
            "3:",
            "cmp {odd}, #0",
            "beq 4f",
            "vld1.32 {{d0, d1}}, [{p}]",
            "vld1.32 {{d2-d5}}, [{w}]",
            "vmla.f32 q8, q0, d2[0]",
            "vmla.f32 q9, q0, d2[1]",
            "vmla.f32 q10, q0, d3[0]",
            "vmla.f32 q11, q0, d3[1]",
            "vmla.f32 q12, q0, d4[0]",
            "vmla.f32 q13, q0, d4[1]",
            "vmla.f32 q14, q0, d5[0]",
            "vmla.f32 q15, q0, d5[1]",
            "4:",
            "vst1.32 {{d16, d17}}, [{a}], {ab}",
            "vst1.32 {{d18, d19}}, [{a}], {ab}",
            "vst1.32 {{d20, d21}}, [{a}], {ab}",
            "vst1.32 {{d22, d23}}, [{a}], {ab}",
            "vst1.32 {{d24, d25}}, [{a}], {ab}",
            "vst1.32 {{d26, d27}}, [{a}], {ab}",
            "vst1.32 {{d28, d29}}, [{a}], {ab}",
            "vst1.32 {{d30, d31}}, [{a}]",
            p = inout(reg) panel.add(jc * 4) => _,
            w = inout(reg) w.as_ptr() => _,
            pairs = inout(reg) kc / 2 => _,
            odd = in(reg) kc % 2,
            sb = in(reg) stride * 4,
            a = inout(reg) (acc.as_mut_ptr() as *mut f32).add(jc * 4) => _,
            ab = in(reg) NR * 4,
            out("d0") _, out("d1") _, out("d2") _, out("d3") _, out("d4") _, out("d5") _,
            out("d6") _, out("d7") _, out("d8") _, out("d9") _, out("d10") _, out("d11") _,
            out("d16") _, out("d17") _, out("d18") _, out("d19") _, out("d20") _, out("d21") _,
            out("d22") _, out("d23") _, out("d24") _, out("d25") _, out("d26") _, out("d27") _,
            out("d28") _, out("d29") _, out("d30") _, out("d31") _,
            options(nostack),
        );
    }
}

/// A tiled conv's packed weights and the arithmetic that multiplies them.
pub(crate) enum TiledWeights<'a> {
    /// per group, [`pack_weights`] of its `m / group` rows; `fused` is the microkernel with the
    /// epilogue inside, where the ISA has one for the hint
    F32 {
        packed: &'a [f32],
        kernel: Microkernel,
        fused: Option<FusedMicrokernel>,
    },
    /// per group, [`super::tiled_fp16::pack_weights_f16`] of its rows: fp16 arithmetic
    F16(&'a [u16]),
}

/// Everything [`run_tiled`] needs besides the data.
pub(crate) struct TiledConv<'a> {
    pub geom: ColGeom,
    pub group: usize,
    /// output channels in total
    pub m: usize,
    pub weights: TiledWeights<'a>,
    pub bias: &'a [f32],
    /// 1x1, stride 1, no padding: panels are read straight from `x`
    pub direct: bool,
    /// what the epilogue's activation computes, where known
    pub hint: EpiHint,
    /// the ISA the kernels were chosen for (x86 picks the epilogue's build by it)
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    pub isa: Isa,
    /// a fused residual Add's input, shaped as the output: added to each block as it is stored
    pub skip: Option<&'a [f32]>,
}

/// `dst[r][j] += skip[r][j]` for `r < rows`, `j < nr`, both with rows `rs` apart: a fused
/// residual Add on a block just stored, where the kernel's epilogue does not add it.
///
/// # Safety
/// `dst` writable and `skip` readable at `r * rs + j` for those `r` and `j`, not overlapping.
unsafe fn add_skip_rows(dst: *mut f32, skip: *const f32, rs: usize, rows: usize, nr: usize) {
    for r in 0..rows {
        let row = std::slice::from_raw_parts_mut(dst.add(r * rs), nr);
        super::epilogue::add_rows(row, std::slice::from_raw_parts(skip.add(r * rs), nr));
    }
}

/// Defines a `store_block` function with the given attributes (the portable build, and one
/// compiled for AVX-512 where LLVM vectorises the closure 16 wide).
macro_rules! store_block_for {
    ($(#[$attr:meta])* $name:ident) => {
        $(#[$attr])*
        pub(crate) unsafe fn $name<F: Fn(f32) -> f32>(
            dst: *mut f32,
            rs: usize,
            nr: usize,
            acc: &[[f32; NR]; MR],
            bias: &[f32],
            act: &F,
            hint: EpiHint,
        ) {
            #[cfg(target_arch = "aarch64")]
            if hint.has_neon_epilogue() {
                return super::epilogue::bias_act_block_neon(dst, rs, nr, acc, bias, hint);
            }
            for (r, (ar, &b)) in acc.iter().zip(bias).enumerate() {
                let row = std::slice::from_raw_parts_mut(dst.add(r * rs), nr);
                super::epilogue::bias_act(row, ar, b, act, hint);
            }
        }
    };
}

store_block_for! {
    /// `act(acc[r] + bias[r])` for a block's rows `r < bias.len()` into output rows `dst + r *
    /// rs`, `nr` pixels each. Its own function so that `act` is inlined and the loop vectorised
    /// (inlined into the tile job, `act` stayed a call per value), and for the whole block so
    /// that the activation's constants are set up once per block, not once per row (tanh's 12
    /// constants had cost its offset convs more than an instruction per value).
    ///
    /// # Safety
    /// `dst + r * rs` must be writable for `nr` floats for each row, and no other thread write
    /// them; `nr <= NR`, `bias.len() <= MR`.
    #[inline(never)]
    store_block
}

store_block_for! {
    /// [`store_block`] compiled for AVX-512, where LLVM vectorises the closure 16 wide (the
    /// baseline build is SSE2, 4 wide): the activations without a vector form in the fused
    /// kernel, such as the Tanh of LDA-AQU's offset convs.
    ///
    /// # Safety
    /// As [`store_block`]; the host must have AVX-512F.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f,avx2,fma")]
    #[allow(clippy::incompatible_msrv)]
    store_block_avx512
}

/// Input channels up to which a direct conv's job runs weight blocks outermost
/// ([`run_direct_few_k`]).
#[cfg(target_arch = "x86_64")]
const FEW_K: usize = 32;

/// Tiles per job of [`run_direct_few_k`]: 512 pixels, 2 KB of each output row.
#[cfg(target_arch = "x86_64")]
const FEW_K_TILES: usize = 16;

/// A direct conv's packed weights with their fused microkernel.
#[cfg(target_arch = "x86_64")]
struct DirectWeights<'a> {
    packed: &'a [f32],
    fused: FusedMicrokernel,
    /// floats of packed weights per group
    wlen: usize,
    /// output channels per group
    mg: usize,
}

/// A direct conv's tile at pixel `p0` (`nr` pixels) of one group's input `xg`: a full tile
/// straight from `xg` (its `kc` rows `h * w` apart), the last, partial one packed into
/// `panel` (rows [`NR`] apart); `(rows, stride)`.
fn direct_tile<'a>(
    xg: &'a [f32],
    g: &ColGeom,
    p0: usize,
    nr: usize,
    panel: &'a mut [f32],
) -> (&'a [f32], usize) {
    if nr == NR {
        (&xg[p0..], g.h * g.w)
    } else {
        pack_tile(xg, g, p0, nr, panel);
        (&panel[..], NR)
    }
}

/// One weight block `wb` of a fused microkernel over a tile (`kc` rows of [`NR`] floats at
/// `src`, `stride` apart), into output channels `ch..ch + rows` of image `ni` at pixels
/// `p0..p0 + nr`, with the bias and the built-in epilogue.
///
/// # Safety
/// `src` must hold the tile's rows; no other thread may write those outputs meanwhile.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
unsafe fn fused_block(
    t: &TiledConv,
    fused: FusedMicrokernel,
    wb: &[f32],
    (src, stride): (&[f32], usize),
    out: SharedOut,
    (ni, ch, rows): (usize, usize, usize),
    p0: usize,
    nr: usize,
) {
    let ohw = t.geom.oh * t.geom.ow;
    let kc = t.geom.cg * t.geom.kh * t.geom.kw;
    let at = (ni * t.m + ch) * ohw + p0;
    let d = TileDst {
        dst: out.at(at),
        rs: ohw,
        bias: t.bias[ch..ch + rows].as_ptr(),
        rows,
        nr,
        skip: t.skip.map_or(std::ptr::null(), |s| s[at..].as_ptr()),
    };
    fused(kc, wb, src.as_ptr(), stride, &d, t.hint)
}

/// [`run_tiled`] for a direct (1x1) conv with few input channels, such as MobileNetV3's
/// 16 -> 64 expansion on 112 x 112: each job takes [`FEW_K_TILES`] tiles and runs every weight
/// block over all of them before the next block, so that a block's 8 output rows are written
/// 2 KB at a time instead of 128 bytes at a time 64 rows apart (the tile order's 3.2 MB of
/// output was written at store bandwidth; 0.18 -> 0.14 ms). With more input channels the
/// tile's panel, re-read for every block, no longer stays in L1 and the tile order is faster.
#[cfg(target_arch = "x86_64")]
fn run_direct_few_k(t: &TiledConv, n: usize, x: &[f32], out: SharedOut, w: &DirectWeights) {
    let g = &t.geom;
    let (hw, ohw) = (g.h * g.w, g.oh * g.ow);
    let kc = g.cg;
    let c = g.cg * t.group;
    let tiles = ohw.div_ceil(NR);
    let groups = tiles.div_ceil(FEW_K_TILES);
    crate::kernels::par::for_each_init(
        n * t.group * groups,
        1,
        &|| vec![0.0f32; kc.max(1) * NR],
        &|panel, job| {
            let (ni, rest) = (job / (t.group * groups), job % (t.group * groups));
            let (gi, tg) = (rest / groups, rest % groups);
            let xg = &x[(ni * c + gi * g.cg) * hw..(ni * c + (gi + 1) * g.cg) * hw];
            let wg = &w.packed[gi * w.wlen..(gi + 1) * w.wlen];
            for (b, wb) in wg.chunks_exact(kc.max(1) * MR).enumerate() {
                let ch = gi * w.mg + b * MR;
                for ti in tg * FEW_K_TILES..tiles.min((tg + 1) * FEW_K_TILES) {
                    let p0 = ti * NR;
                    let nr = NR.min(ohw - p0);
                    let (src, stride) = direct_tile(xg, g, p0, nr, panel);
                    let rows = MR.min(w.mg - b * MR);
                    // SAFETY: rows ch.. of this job's tiles, theirs alone
                    unsafe {
                        fused_block(t, w.fused, wb, (src, stride), out, (ni, ch, rows), p0, nr)
                    };
                }
            }
        },
    );
}

/// Floats of scratch [`run_tiled`] needs: a band of staged input, unless the panels are read
/// straight from `x`.
pub(crate) fn scratch_len(g: &ColGeom, group: usize, direct: bool) -> usize {
    if direct {
        0
    } else {
        Staging::new(g, g.cg * group).len(g, g.cg * group)
    }
}

/// Runs the convolution of `n` images: `x` `[n][group * cg][h][w]` into `y`
/// `[n][m][oh * ow]`, tiles in parallel on rayon's current pool. Unless `t.direct`, the input
/// is staged into `scratch` (grown to [`scratch_len`]) a band of tiles at a time ([`Staging`])
/// and tiles are packed from there.
///
/// # Panics
/// With [`TiledWeights::F16`] on a host without fp16 arithmetic (the planner only picks it
/// where there is).
pub(crate) fn run_tiled<F: Fn(f32) -> f32 + Sync>(
    t: &TiledConv,
    n: usize,
    x: &[f32],
    y: &mut [f32],
    scratch: &mut Vec<f32>,
    act: &F,
) {
    let g = &t.geom;
    let (hw, ohw) = (g.h * g.w, g.oh * g.ow);
    let kc = g.cg * g.kh * g.kw;
    let mg = t.m / t.group;
    let wlen = mg.div_ceil(MR) * kc * MR;
    let c = g.cg * t.group;
    let tiles = ohw.div_ceil(NR);
    let jobs = n * t.group * tiles;
    let (packed_len, f16) = match t.weights {
        TiledWeights::F32 { packed, .. } => (packed.len(), false),
        TiledWeights::F16(packed) => (packed.len(), true),
    };
    assert!(x.len() >= n * c * hw && y.len() >= n * t.m * ohw && packed_len >= t.group * wlen);
    assert!(
        !f16 || super::tiled_fp16::supported(),
        "fp16 convolution planned on a CPU without fp16 arithmetic"
    );
    let out = SharedOut(y.as_mut_ptr());
    // the epilogue's closure compiled for AVX-512 where the microkernel is the AVX-512 one
    #[cfg(target_arch = "x86_64")]
    let avx512 = t.isa == Isa::Avx512 && Isa::Avx512.supported();
    // enough multiply-adds per rayon task to pay for the split
    let per_tile = (mg * kc * NR).max(1);
    // x86-64 only: measured there; on the boards only instruction counts can be measured
    // here, which this order would not lower
    #[cfg(target_arch = "x86_64")]
    if let (
        true,
        TiledWeights::F32 {
            packed,
            fused: Some(fused),
            ..
        },
    ) = (t.direct, &t.weights)
    {
        if kc <= FEW_K {
            let wts = DirectWeights {
                packed,
                fused: *fused,
                wlen,
                mg,
            };
            run_direct_few_k(t, n, x, out, &wts);
            return;
        }
    }
    let staging = Staging::new(g, c);
    let taps = staging.taps(g);
    // rows of a packed panel and of a direct tile, read only by the fp16 conversion
    let rows_at = |step: usize| -> Vec<usize> {
        if f16 {
            (0..kc).map(|k| k * step).collect()
        } else {
            Vec::new()
        }
    };
    let (panel_rows, direct_rows) = (rows_at(NR), rows_at(hw));
    let staged_len = scratch_len(g, t.group, t.direct);
    if scratch.len() < staged_len {
        scratch.resize(staged_len, 0.0);
    }
    let buf = &mut scratch[..staged_len];
    let staged_group = g.cg * g.sw * staging.rows * staging.cols;
    // passes: all tiles of all images (direct), or per image one band of tiles after staging
    // it; a pass's jobs are its groups times its tiles
    let bands = if t.direct {
        1
    } else {
        tiles.div_ceil(staging.band)
    };
    let passes = if t.direct { 1 } else { n * bands };
    for pass in 0..passes {
        let (ni0, t0, band_tiles) = if t.direct {
            (0, 0, tiles)
        } else {
            let (ni, b) = (pass / bands, pass % bands);
            let t0 = b * staging.band;
            (ni, t0, staging.band.min(tiles - t0))
        };
        let r0 = staging.first_row(g, t0);
        if !t.direct {
            let xi = &x[ni0 * c * hw..(ni0 + 1) * c * hw];
            stage_input(xi, g, c, &staging, r0, buf);
        }
        let staged: &[f32] = buf;
        let pass_jobs = if t.direct { jobs } else { t.group * band_tiles };
        crate::kernels::par::for_each_init(
            pass_jobs,
            (1 << 17) / per_tile + 1,
            // the f32 panel (and a tile row of slack for the staged packer), and its binary16
            // copy for fp16 arithmetic
            &|| {
                (
                    vec![0.0f32; (kc + 1) * NR],
                    vec![0u16; if f16 { kc * NR } else { 0 }],
                )
            },
            &|(panel, half_panel), job| {
                let (ni, gi, ti) = if t.direct {
                    let rest = job % (t.group * tiles);
                    (job / (t.group * tiles), rest / tiles, rest % tiles)
                } else {
                    (ni0, job / band_tiles, t0 + job % band_tiles)
                };
                let p0 = ti * NR;
                let nr = NR.min(ohw - p0);
                let xg = &x[(ni * c + gi * g.cg) * hw..(ni * c + (gi + 1) * g.cg) * hw];
                // the tile's K rows: `src` at `stride` apart (f32 microkernels) or at `rows`
                let (src, stride, rows) = if t.direct {
                    let (src, stride) = direct_tile(xg, g, p0, nr, panel);
                    (
                        src,
                        stride,
                        if stride == NR {
                            &panel_rows[..]
                        } else {
                            &direct_rows[..]
                        },
                    )
                } else {
                    let sg = &staged[gi * staged_group..];
                    if f16 && p0 % g.ow + nr <= g.ow {
                        // one run: the fp16 conversion reads the staged rows, no f32 panel
                        (&sg[staging.pixel(g, r0, p0)..], 0, &taps[..])
                    } else {
                        let band = StagedBand {
                            data: sg,
                            taps: &taps,
                            layout: &staging,
                            r0,
                        };
                        pack_tile_staged(&band, g, p0, nr, panel);
                        (&panel[..], NR, &panel_rows[..])
                    }
                };
                match t.weights {
                    TiledWeights::F32 {
                        packed,
                        fused: Some(fused),
                        ..
                    } => {
                        let wg = &packed[gi * wlen..(gi + 1) * wlen];
                        for (b, wb) in wg.chunks_exact(kc.max(1) * MR).enumerate() {
                            let (ch, rows) = (gi * mg + b * MR, MR.min(mg - b * MR));
                            // SAFETY: rows ch.. of this tile's columns, its alone; `src` as
                            // below
                            unsafe {
                                fused_block(
                                    t,
                                    fused,
                                    wb,
                                    (src, stride),
                                    out,
                                    (ni, ch, rows),
                                    p0,
                                    nr,
                                )
                            };
                        }
                        return;
                    }
                    TiledWeights::F16(_) => super::tiled_fp16::to_f16(src, rows, half_panel),
                    TiledWeights::F32 { .. } => {}
                }
                // SAFETY (every microkernel call below): `src` rows hold NR readable floats
                // for each of the kc rows: a full tile of `x` (p0 + NR <= ohw = hw in the
                // direct case) or the packed panel; the half panel holds kc rows of NR.
                let block = |b: usize, acc: &mut [[f32; NR]; MR]| match t.weights {
                    TiledWeights::F32 { packed, kernel, .. } => unsafe {
                        kernel(
                            kc,
                            &packed[gi * wlen + b * kc * MR..],
                            src.as_ptr(),
                            stride,
                            acc,
                        )
                    },
                    TiledWeights::F16(packed) => unsafe {
                        super::tiled_fp16::microkernel(
                            kc,
                            &packed[gi * wlen + b * kc * MR..],
                            &half_panel[..],
                            acc,
                        )
                    },
                };
                let mut acc = [[0.0f32; NR]; MR];
                for b in 0..mg.div_ceil(MR) {
                    block(b, &mut acc);
                    let ch = gi * mg + b * MR;
                    let bias = &t.bias[ch..ch + MR.min(mg - b * MR)];
                    let at = (ni * t.m + ch) * ohw + p0;
                    // SAFETY: rows ch.. of image `ni`, columns p0..p0+nr: this tile's alone;
                    // the skip is shaped as the output.
                    unsafe {
                        let dst = out.at(at);
                        #[cfg(target_arch = "x86_64")]
                        if avx512 {
                            store_block_avx512(dst, ohw, nr, &acc, bias, act, t.hint);
                        } else {
                            store_block(dst, ohw, nr, &acc, bias, act, t.hint);
                        }
                        #[cfg(not(target_arch = "x86_64"))]
                        store_block(dst, ohw, nr, &acc, bias, act, t.hint);
                        if let Some(skip) = t.skip {
                            add_skip_rows(dst, skip[at..].as_ptr(), ohw, bias.len(), nr);
                        }
                    }
                }
            },
        );
    }
}
