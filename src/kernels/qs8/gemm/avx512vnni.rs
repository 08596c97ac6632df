//! `gemm_qs8_8x16c4_avx512vnni`: 8 rows x 16 channels, one `vpdpbusd` per row per 4 k: the
//! packed weight block (16 channels x 4 k, 64 bytes) is one zmm, the row's 4 activation bytes
//! are broadcast to every lane.

// x86-only module: AVX-512 intrinsics are stable since 1.89, above the crate's Arm MSRV.
#![allow(clippy::incompatible_msrv)]

use super::{EpiMode, NR};
use std::arch::x86_64::*;

/// See the module doc of `gemm` for the contract.
///
/// # Safety
/// Pointers as in the contract; the host must have AVX-512 F/BW/VL and VNNI.
#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
pub unsafe fn gemm_qs8_8x16c4_avx512vnni(
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
    for blk in 0..n.div_ceil(NR) {
        let nc = NR.min(n - blk * NR);
        let (b, bias, scale, c) = super::block_args(blk, k4, b, bias, scale, mode, c);
        const MR: usize = 8;
        // Rows past mr repeat the last one (computed, never stored), so the loop stays static.
        let mut rows = [a; MR];
        for (i, r) in rows.iter_mut().enumerate() {
            *r = a.add(i.min(mr - 1) * lda);
        }
        let mut acc = [_mm512_setzero_si512(); MR];
        for kk in 0..k4 {
            let w = _mm512_loadu_si512(b.add(kk * NR * 4) as *const _);
            for i in 0..MR {
                let x =
                    _mm512_set1_epi32(std::ptr::read_unaligned(rows[i].add(kk * 4) as *const i32));
                acc[i] = _mm512_dpbusd_epi32(acc[i], x, w);
            }
        }
        let mask: __mmask16 = if nc >= 16 { 0xffff } else { (1u16 << nc) - 1 };
        let vb = _mm512_loadu_si512(bias as *const _);
        let vs = _mm512_loadu_ps(scale);
        for (i, acc) in acc.iter().enumerate().take(mr) {
            let f = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_add_epi32(*acc, vb)), vs);
            match mode {
                EpiMode::Quant { zp, lo, hi } => {
                    let v = _mm512_add_epi32(_mm512_cvtps_epi32(f), _mm512_set1_epi32(zp));
                    let v = _mm512_min_epi32(
                        _mm512_max_epi32(v, _mm512_set1_epi32(lo)),
                        _mm512_set1_epi32(hi),
                    );
                    _mm_mask_storeu_epi8(c.add(i * ldc) as *mut i8, mask, _mm512_cvtepi32_epi8(v));
                }
                EpiMode::Float => {
                    _mm512_mask_storeu_ps((c as *mut f32).add(i * ldc), mask, f);
                }
            }
        }
    }
}
