//! `lut_u8_64_avx512vbmi`: 64 bytes per step. `vpermi2b` indexes 128 table bytes by the low
//! 7 bits of each index, so two of them cover the lower and upper halves of the table and
//! the index's top bit picks between the two results.

// x86-only module: AVX-512 intrinsics are stable since 1.89, above the crate's Arm MSRV.
#![allow(clippy::incompatible_msrv)]

use std::arch::x86_64::*;

/// See [`super::LutUkernel`].
///
/// # Safety
/// `row` must be valid for `len` bytes; the host must have AVX-512 F/BW and VBMI.
#[target_feature(enable = "avx512f,avx512bw,avx512vbmi")]
pub unsafe fn lut_u8_64_avx512vbmi(table: &[u8; 256], row: *mut u8, len: usize) {
    let t = |i: usize| _mm512_loadu_si512(table.as_ptr().add(64 * i) as *const _);
    let (t0, t1, t2, t3) = (t(0), t(1), t(2), t(3));
    let look = |v: __m512i| {
        let lo = _mm512_permutex2var_epi8(t0, v, t1);
        let hi = _mm512_permutex2var_epi8(t2, v, t3);
        _mm512_mask_blend_epi8(_mm512_movepi8_mask(v), lo, hi)
    };
    let mut i = 0;
    while i + 64 <= len {
        let p = row.add(i) as *mut __m512i;
        _mm512_storeu_si512(p as *mut _, look(_mm512_loadu_si512(p as *const _)));
        i += 64;
    }
    if i < len {
        // the tail under a byte mask (no access past `len`)
        let m: __mmask64 = (1u64 << (len - i)) - 1;
        let p = row.add(i) as *mut i8;
        let v = _mm512_maskz_loadu_epi8(m, p);
        _mm512_mask_storeu_epi8(p, m, look(v));
    }
}
