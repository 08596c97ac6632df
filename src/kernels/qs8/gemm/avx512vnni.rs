//! `gemm_qs8_8x32c4_avx512vnni`: 8 rows x 32 channels (two packed blocks of 16), one
//! `vpdpbusd` per row, block and 4 k: each block's 16 channels x 4 k (64 bytes) are one zmm,
//! the row's 4 activation bytes are broadcast to every lane. A last odd block runs 8 x 16.
//!
//! Why 32 channels: a `vpdpbusd` wants its two operands loaded, and with one weight vector per
//! 8 broadcasts the loads (9 per 8 `vpdpbusd`) outnumber what two load ports feed two
//! multiply ports; two blocks share each broadcast (10 loads per 16), and their 16
//! accumulators cover the instruction's latency at two per cycle.
//!
//! The accumulators start from the bias. The requantizing store of `Quant` outputs narrows four
//! rows at a time with saturating packs (i32 -> i16, add the zero point, i16 -> u8): for
//! zero points and bounds in 0..=255 that is the contract's `clamp(round(f) + zp, lo, hi)`
//! exactly (a value the i16 pack saturates is beyond the bounds either way), then one dword
//! permute puts each row's 16 bytes together.

// x86-only module: AVX-512 intrinsics are stable since 1.89, above the crate's Arm MSRV.
#![allow(clippy::incompatible_msrv)]

use super::{EpiMode, NR};
use std::arch::x86_64::*;

/// Rows per tile.
const MR: usize = 8;

/// See the module doc of `gemm` for the contract.
///
/// # Safety
/// Pointers as in the contract; the host must have AVX-512 F/BW/VL and VNNI.
#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
pub unsafe fn gemm_qs8_8x32c4_avx512vnni(
    m: usize,
    n: usize,
    k4: usize,
    a: *const u8,
    lda: usize,
    b: *const i8,
    bias: *const i32,
    scale: *const f32,
    mode: EpiMode,
    c: *mut u8,
    ldc: usize,
) {
    row_tiles!(MR, one_tile(m, n, k4, a, lda, b, bias, scale, mode, c, ldc))
}

/// One tile: up to MR rows.
///
/// # Safety
/// As the kernel's, with `mr` at most MR.
#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
unsafe fn one_tile(
    mr: usize,
    n: usize,
    k4: usize,
    a: *const u8,
    lda: usize,
    b: *const i8,
    bias: *const i32,
    scale: *const f32,
    mode: EpiMode,
    c: *mut u8,
    ldc: usize,
) {
    // Rows past mr repeat the last one (computed, never stored), so the loop stays static.
    let mut rows = [a; MR];
    for (i, r) in rows.iter_mut().enumerate() {
        *r = a.add(i.min(mr - 1) * lda);
    }
    let blocks = n.div_ceil(NR);
    let mut blk = 0;
    while blk + 2 <= blocks {
        tile::<2>(&rows, mr, n, k4, blk, b, bias, scale, mode, c, ldc);
        blk += 2;
    }
    if blk < blocks {
        tile::<1>(&rows, mr, n, k4, blk, b, bias, scale, mode, c, ldc);
    }
}

/// `NB` blocks of 16 channels from block `blk` on, for the 8 rows.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
unsafe fn tile<const NB: usize>(
    rows: &[*const u8; MR],
    mr: usize,
    n: usize,
    k4: usize,
    blk: usize,
    b: *const i8,
    bias: *const i32,
    scale: *const f32,
    mode: EpiMode,
    c: *mut u8,
    ldc: usize,
) {
    let mut w = [b; NB];
    let mut vb = [_mm512_setzero_si512(); NB];
    let mut vs = [_mm512_setzero_ps(); NB];
    let mut cb = [c; NB];
    let mut mask = [0 as __mmask16; NB];
    for j in 0..NB {
        let (bj, biasj, scalej, cj) = super::block_args(blk + j, k4, b, bias, scale, mode, c);
        w[j] = bj;
        vb[j] = _mm512_loadu_si512(biasj as *const _);
        vs[j] = _mm512_loadu_ps(scalej);
        cb[j] = cj;
        let nc = NR.min(n - (blk + j) * NR);
        mask[j] = if nc >= NR { 0xffff } else { (1u16 << nc) - 1 };
    }
    let mut acc = [vb; MR];
    for kk in 0..k4 {
        let mut wv = [_mm512_setzero_si512(); NB];
        for j in 0..NB {
            wv[j] = _mm512_loadu_si512(w[j].add(kk * NR * 4) as *const _);
        }
        for i in 0..MR {
            let x = _mm512_set1_epi32(std::ptr::read_unaligned(rows[i].add(kk * 4) as *const i32));
            for j in 0..NB {
                acc[i][j] = _mm512_dpbusd_epi32(acc[i][j], x, wv[j]);
            }
        }
    }
    for j in 0..NB {
        match mode {
            EpiMode::Quant { zp, lo, hi } => {
                debug_assert!((0..=255).contains(&zp) && 0 <= lo && lo <= hi && hi <= 255);
                let q = |acc: __m512i| {
                    _mm512_cvtps_epi32(_mm512_mul_ps(_mm512_cvtepi32_ps(acc), vs[j]))
                };
                let vzp = _mm512_set1_epi16(zp as i16);
                let (vlo, vhi) = (_mm512_set1_epi8(lo as i8), _mm512_set1_epi8(hi as i8));
                // After the packs, 128-bit lane l holds channels 4l..4l+4 of rows r..r+4 as
                // four dwords; this gathers each row's four dwords.
                let rows_together =
                    _mm512_set_epi32(15, 11, 7, 3, 14, 10, 6, 2, 13, 9, 5, 1, 12, 8, 4, 0);
                for r in (0..MR).step_by(4) {
                    if r >= mr {
                        break;
                    }
                    let p01 = _mm512_packs_epi32(q(acc[r][j]), q(acc[r + 1][j]));
                    let p23 = _mm512_packs_epi32(q(acc[r + 2][j]), q(acc[r + 3][j]));
                    let u = _mm512_packus_epi16(
                        _mm512_adds_epi16(p01, vzp),
                        _mm512_adds_epi16(p23, vzp),
                    );
                    let u = _mm512_min_epu8(_mm512_max_epu8(u, vlo), vhi);
                    let u = _mm512_permutexvar_epi32(rows_together, u);
                    let at = cb[j].add(r * ldc) as *mut i8;
                    _mm_mask_storeu_epi8(at, mask[j], _mm512_castsi512_si128(u));
                    if r + 1 < mr {
                        let v = _mm512_extracti32x4_epi32::<1>(u);
                        _mm_mask_storeu_epi8(at.add(ldc), mask[j], v);
                    }
                    if r + 2 < mr {
                        let v = _mm512_extracti32x4_epi32::<2>(u);
                        _mm_mask_storeu_epi8(at.add(2 * ldc), mask[j], v);
                    }
                    if r + 3 < mr {
                        let v = _mm512_extracti32x4_epi32::<3>(u);
                        _mm_mask_storeu_epi8(at.add(3 * ldc), mask[j], v);
                    }
                }
            }
            EpiMode::Float => {
                for (i, acc) in acc.iter().enumerate().take(mr) {
                    let f = _mm512_mul_ps(_mm512_cvtepi32_ps(acc[j]), vs[j]);
                    _mm512_mask_storeu_ps((cb[j] as *mut f32).add(i * ldc), mask[j], f);
                }
            }
        }
    }
}
