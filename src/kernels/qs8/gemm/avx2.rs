//! `gemm_qs8_2x16c4_avx2`: 2 rows x 16 channels. Weights are sign-extended to i16 and
//! activations zero-extended, then `vpmaddwd` sums pairs exactly into i32 lanes (each lane pair
//! belongs to one channel; the pairs are reduced with `vphaddd` once, after the k loop).

use super::{EpiMode, NR};
use std::arch::x86_64::*;

/// See the module doc of `gemm` for the contract.
///
/// # Safety
/// Pointers as in the contract; the host must have AVX2.
#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "avx2,fma")]
pub unsafe fn gemm_qs8_2x16c4_avx2(
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
    row_tiles!(2, one_tile(m, n, k4, a, lda, b, bias, scale, mode, c, ldc))
}

/// One tile: up to 2 rows.
///
/// # Safety
/// As the kernel's, with `mr` at most 2.
#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "avx2,fma")]
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
    for blk in 0..n.div_ceil(NR) {
        let nc = NR.min(n - blk * NR);
        let (b, bias, scale, c) = super::block_args(blk, k4, b, bias, scale, mode, c);
        let rows = [a, a.add(if mr > 1 { lda } else { 0 })];
        let mut acc = [[_mm256_setzero_si256(); 4]; 2];
        for kk in 0..k4 {
            let wp = b.add(kk * NR * 4);
            let w = [
                _mm256_cvtepi8_epi16(_mm_loadu_si128(wp as *const __m128i)),
                _mm256_cvtepi8_epi16(_mm_loadu_si128(wp.add(16) as *const __m128i)),
                _mm256_cvtepi8_epi16(_mm_loadu_si128(wp.add(32) as *const __m128i)),
                _mm256_cvtepi8_epi16(_mm_loadu_si128(wp.add(48) as *const __m128i)),
            ];
            for (r, acc) in rows.iter().zip(acc.iter_mut()) {
                let x4 = std::ptr::read_unaligned(r.add(kk * 4) as *const i32);
                let x = _mm256_broadcastq_epi64(_mm_cvtepu8_epi16(_mm_cvtsi32_si128(x4)));
                for j in 0..4 {
                    acc[j] = _mm256_add_epi32(acc[j], _mm256_madd_epi16(x, w[j]));
                }
            }
        }
        for (i, acc) in acc.iter().enumerate().take(mr) {
            let lo = _mm256_permute4x64_epi64(_mm256_hadd_epi32(acc[0], acc[1]), 0b11_01_10_00);
            let hi = _mm256_permute4x64_epi64(_mm256_hadd_epi32(acc[2], acc[3]), 0b11_01_10_00);
            let mut f = [0f32; NR];
            for (h, v) in [lo, hi].into_iter().enumerate() {
                let v = _mm256_add_epi32(v, _mm256_loadu_si256(bias.add(h * 8) as *const __m256i));
                let v = _mm256_mul_ps(_mm256_cvtepi32_ps(v), _mm256_loadu_ps(scale.add(h * 8)));
                _mm256_storeu_ps(f.as_mut_ptr().add(h * 8), v);
            }
            match mode {
                EpiMode::Quant { zp, lo, hi } => {
                    let mut q = [0i32; NR];
                    for h in 0..2 {
                        let v = _mm256_cvtps_epi32(_mm256_loadu_ps(f.as_ptr().add(h * 8)));
                        let v = _mm256_add_epi32(v, _mm256_set1_epi32(zp));
                        let v = _mm256_min_epi32(
                            _mm256_max_epi32(v, _mm256_set1_epi32(lo)),
                            _mm256_set1_epi32(hi),
                        );
                        _mm256_storeu_si256(q.as_mut_ptr().add(h * 8) as *mut __m256i, v);
                    }
                    let dst = c.add(i * ldc);
                    for (j, &q) in q.iter().enumerate().take(nc) {
                        *dst.add(j) = q as u8;
                    }
                }
                EpiMode::Float => {
                    let dst = (c as *mut f32).add(i * ldc);
                    std::ptr::copy_nonoverlapping(f.as_ptr(), dst, nc);
                }
            }
        }
    }
}
