//! `dwconv_qs8_kxk_16c_avx2`: 16 channels per step: `(x - zx)` and the weights as i16,
//! `vpmullw` (exact, see the contract), widened to two i32 accumulators.

use super::{tap_range, DwGeom, CB};
use crate::kernels::qs8::gemm::EpiMode;
use std::arch::x86_64::*;

/// One output row; see the module doc of `dwconv` for the contract.
///
/// # Safety
/// Pointers as in the contract; the host must have AVX2.
#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "avx2,fma")]
#[inline(never)] // its own symbol in profiles, not folded into `per_row!`'s closure
pub unsafe fn dwconv_qs8_kxk_16c_avx2(
    g: &DwGeom,
    oy: usize,
    x: *const u8,
    zx: i32,
    w: *const i16,
    bias: *const i32,
    scale: *const f32,
    mode: EpiMode,
    out: *mut u8,
) {
    let cp = g.c_pad();
    let vzx = _mm256_set1_epi16(zx as i16);
    let (ky0, ky1) = tap_range(oy, g.s[0], g.d[0], g.p[0], g.k[0], g.h);
    for ox in 0..g.ow {
        let (kx0, kx1) = tap_range(ox, g.s[1], g.d[1], g.p[1], g.k[1], g.w);
        let mut c0 = 0;
        while c0 < g.c {
            let mut lo = _mm256_loadu_si256(bias.add(c0) as *const __m256i);
            let mut hi = _mm256_loadu_si256(bias.add(c0 + 8) as *const __m256i);
            for ky in ky0..ky1 {
                let iy = oy * g.s[0] + ky * g.d[0] - g.p[0];
                let row = x.add(iy * g.w * g.c + c0);
                let wrow = w.add(ky * g.k[1] * cp + c0);
                for kx in kx0..kx1 {
                    let ix = ox * g.s[1] + kx * g.d[1] - g.p[1];
                    let xv =
                        _mm256_cvtepu8_epi16(_mm_loadu_si128(row.add(ix * g.c) as *const __m128i));
                    let wv = _mm256_loadu_si256(wrow.add(kx * cp) as *const __m256i);
                    let p = _mm256_mullo_epi16(_mm256_sub_epi16(xv, vzx), wv);
                    lo = _mm256_add_epi32(lo, _mm256_cvtepi16_epi32(_mm256_castsi256_si128(p)));
                    hi =
                        _mm256_add_epi32(hi, _mm256_cvtepi16_epi32(_mm256_extracti128_si256(p, 1)));
                }
            }
            let n = CB.min(g.c - c0);
            let f_lo = _mm256_mul_ps(_mm256_cvtepi32_ps(lo), _mm256_loadu_ps(scale.add(c0)));
            let f_hi = _mm256_mul_ps(_mm256_cvtepi32_ps(hi), _mm256_loadu_ps(scale.add(c0 + 8)));
            match mode {
                EpiMode::Quant {
                    zp,
                    lo: qlo,
                    hi: qhi,
                } => {
                    let clamp = |f: __m256| {
                        let v = _mm256_add_epi32(_mm256_cvtps_epi32(f), _mm256_set1_epi32(zp));
                        _mm256_min_epi32(
                            _mm256_max_epi32(v, _mm256_set1_epi32(qlo)),
                            _mm256_set1_epi32(qhi),
                        )
                    };
                    let t = _mm256_packs_epi32(clamp(f_lo), clamp(f_hi));
                    let t = _mm256_permute4x64_epi64(t, 0b11_01_10_00);
                    let b =
                        _mm_packus_epi16(_mm256_castsi256_si128(t), _mm256_extracti128_si256(t, 1));
                    let dst = out.add(ox * g.c + c0);
                    if n == CB {
                        _mm_storeu_si128(dst as *mut __m128i, b);
                    } else {
                        let mut tmp = [0u8; CB];
                        _mm_storeu_si128(tmp.as_mut_ptr() as *mut __m128i, b);
                        std::ptr::copy_nonoverlapping(tmp.as_ptr(), dst, n);
                    }
                }
                EpiMode::Float => {
                    let mut tmp = [0f32; CB];
                    _mm256_storeu_ps(tmp.as_mut_ptr(), f_lo);
                    _mm256_storeu_ps(tmp.as_mut_ptr().add(8), f_hi);
                    std::ptr::copy_nonoverlapping(
                        tmp.as_ptr(),
                        (out as *mut f32).add(ox * g.c + c0),
                        n,
                    );
                }
            }
            c0 += CB;
        }
    }
}
