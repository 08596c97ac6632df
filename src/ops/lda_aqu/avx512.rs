//! LDA-AQU's corners and key sampling on x86-64 AVX-512.
//!
//! The portable code compiled for AVX-512 left two loops scalar: the corners (LLVM kept the
//! interleaved (x, y) points one at a time) and the key sampling, whose rows of four
//! channels were scattered into the planar buffer a float at a time. Here the corners go
//! sixteen grid points per step, and keys four pixels per 16-lane vector, transposed to
//! channel rows in registers. Every value goes through the same IEEE operations in the same
//! order as in the portable code, so the results are identical (the module's tests compare
//! this path with the portable one bit for bit).

// x86-only: AVX-512 intrinsics are stable since 1.89, above the crate's Arm MSRV.
#![allow(clippy::incompatible_msrv)]

use super::{corners_from, sample_row, taps_of, BLOCK};
use core::arch::x86_64::*;

/// The portable `corners` sixteen grid points per step (the same operations: `/ 2` is the
/// exact `* 0.5`, the floor is a truncation minus one where that rounded up; MAXPS gives its
/// second operand for a NaN as Rust's `max` gives the non-NaN one), the tail portable.
///
/// # Safety
/// The host must run AVX-512F.
#[target_feature(enable = "avx512f,avx2,fma")]
#[inline]
pub(super) unsafe fn corners(
    align_corners: bool,
    h: usize,
    w: usize,
    gxy: &[f32],
    idx: &mut [u32],
    wts: &mut [f32],
) {
    let len = (gxy.len() / 2).min(BLOCK);
    let full = len / 16 * 16;
    assert!(idx.len() >= 4 * BLOCK && wts.len() >= 4 * BLOCK);
    let (fw, fh) = (w as f32, h as f32);
    let (one, half) = (_mm512_set1_ps(1.0), _mm512_set1_ps(0.5));
    let (lo, hx, hy) = (
        _mm512_set1_ps(-4.0),
        _mm512_set1_ps(fw + 4.0),
        _mm512_set1_ps(fh + 4.0),
    );
    let inf = _mm512_set1_ps(f32::INFINITY);
    let (hu, wu) = (_mm512_set1_epi32(h as i32), _mm512_set1_epi32(w as i32));
    let (ones, zero_row) = (_mm512_set1_epi32(1), _mm512_set1_epi32((h * w) as i32));
    let even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    let odd = _mm512_add_epi32(even, ones);
    let denorm = |n: __m512, len: f32| {
        if align_corners {
            _mm512_mul_ps(
                _mm512_mul_ps(_mm512_add_ps(n, one), half),
                _mm512_set1_ps(len - 1.0),
            )
        } else {
            _mm512_mul_ps(
                _mm512_sub_ps(
                    _mm512_mul_ps(_mm512_add_ps(n, one), _mm512_set1_ps(len)),
                    one,
                ),
                half,
            )
        }
    };
    let floor = |v: __m512| {
        let t = _mm512_cvttps_epi32(v);
        let up = _mm512_cmp_ps_mask::<_CMP_GT_OQ>(_mm512_cvtepi32_ps(t), v);
        _mm512_mask_sub_epi32(t, up, t, ones)
    };
    let abs = |v: __m512| {
        _mm512_castsi512_ps(_mm512_and_si512(
            _mm512_castps_si512(v),
            _mm512_set1_epi32(i32::MAX),
        ))
    };
    let (ip, wp) = (idx.as_mut_ptr(), wts.as_mut_ptr());
    for i in (0..full).step_by(16) {
        let a = _mm512_loadu_ps(gxy.as_ptr().add(2 * i));
        let b = _mm512_loadu_ps(gxy.as_ptr().add(2 * i + 16));
        let (gx, gy) = (
            _mm512_permutex2var_ps(a, even, b),
            _mm512_permutex2var_ps(a, odd, b),
        );
        let (sx, sy) = (denorm(gx, fw), denorm(gy, fh));
        let finite = _mm512_cmp_ps_mask::<_CMP_LT_OQ>(abs(sx), inf)
            & _mm512_cmp_ps_mask::<_CMP_LT_OQ>(abs(sy), inf);
        let sx = _mm512_min_ps(_mm512_max_ps(sx, lo), hx);
        let sy = _mm512_min_ps(_mm512_max_ps(sy, lo), hy);
        let (x1, y1) = (floor(sx), floor(sy));
        let (x2, y2) = (_mm512_add_epi32(x1, ones), _mm512_add_epi32(y1, ones));
        let dx2 = _mm512_maskz_sub_ps(finite, _mm512_cvtepi32_ps(x2), sx);
        let dx1 = _mm512_maskz_sub_ps(finite, sx, _mm512_cvtepi32_ps(x1));
        let dy2 = _mm512_maskz_sub_ps(finite, _mm512_cvtepi32_ps(y2), sy);
        let dy1 = _mm512_maskz_sub_ps(finite, sy, _mm512_cvtepi32_ps(y1));
        _mm512_storeu_ps(wp.add(i), dx2);
        _mm512_storeu_ps(wp.add(BLOCK + i), dx1);
        _mm512_storeu_ps(wp.add(2 * BLOCK + i), dy2);
        _mm512_storeu_ps(wp.add(3 * BLOCK + i), dy1);
        // In range is one unsigned compare (a negative index wraps to a large one); the
        // corners' rows are y1 * w + x1 plus 1 (right), w (below) or both.
        let within = |v: __m512i, n: __m512i| _mm512_cmplt_epu32_mask(v, n);
        let (top, bottom) = (finite & within(y1, hu), finite & within(y2, hu));
        let (left, right) = (within(x1, wu), within(x2, wu));
        let tl = _mm512_add_epi32(_mm512_mullo_epi32(y1, wu), x1);
        let bl = _mm512_add_epi32(tl, wu);
        let at = |inside: __mmask16, row: __m512i| _mm512_mask_blend_epi32(inside, zero_row, row);
        let store = |k: usize, v: __m512i| _mm512_storeu_si512(ip.add(k * BLOCK + i).cast(), v);
        store(0, at(top & left, tl));
        store(1, at(top & right, _mm512_add_epi32(tl, ones)));
        store(2, at(bottom & left, bl));
        store(3, at(bottom & right, _mm512_add_epi32(bl, ones)));
    }
    corners_from(align_corners, h, w, gxy, idx, wts, full);
}

/// Group-and-tap `gt`'s sampled keys of width 4 for the block's `len` pixels, channel-major
/// into `planar[c * BLOCK + i]`: the portable loop's `sample_row` and scatter, four pixels
/// per vector (lane `4 * pixel + channel`), each corner's weight broadcast to its pixel's
/// four lanes, then one permute to channel rows.
///
/// # Safety
/// The host must run AVX-512F; every corner index of the first `len` pixels of `gt` must
/// be a row of `img` (rows of four floats).
#[target_feature(enable = "avx512f,avx2,fma")]
#[inline]
pub(super) unsafe fn sample_keys4(
    img: &[f32],
    idx: &[u32],
    wts: &[f32],
    gt: usize,
    len: usize,
    planar: &mut [f32],
) {
    assert!(len <= BLOCK && planar.len() >= 4 * BLOCK);
    assert!(idx.len() >= (gt + 1) * 4 * BLOCK && wts.len() >= (gt + 1) * 4 * BLOCK);
    let quads = len / 4 * 4;
    let spread = _mm512_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3);
    let to_rows = _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
    let (ip, wp, dst) = (
        idx.as_ptr().add(gt * 4 * BLOCK),
        wts.as_ptr().add(gt * 4 * BLOCK),
        planar.as_mut_ptr(),
    );
    for i in (0..quads).step_by(4) {
        // corner k's rows of the four pixels
        let rows = |k: usize| {
            let row =
                |j: usize| _mm_loadu_ps(img.as_ptr().add(*ip.add(k * BLOCK + i + j) as usize * 4));
            let v = _mm512_castps128_ps512(row(0));
            let v = _mm512_insertf32x4::<1>(v, row(1));
            let v = _mm512_insertf32x4::<2>(v, row(2));
            _mm512_insertf32x4::<3>(v, row(3))
        };
        let weight = |k: usize| {
            _mm512_permutexvar_ps(
                spread,
                _mm512_castps128_ps512(_mm_loadu_ps(wp.add(k * BLOCK + i))),
            )
        };
        let (dx2, dx1, dy2, dy1) = (weight(0), weight(1), weight(2), weight(3));
        let top = _mm512_add_ps(_mm512_mul_ps(dx2, rows(0)), _mm512_mul_ps(dx1, rows(1)));
        let bottom = _mm512_add_ps(_mm512_mul_ps(dx2, rows(2)), _mm512_mul_ps(dx1, rows(3)));
        let v = _mm512_add_ps(_mm512_mul_ps(dy2, top), _mm512_mul_ps(dy1, bottom));
        let t = _mm512_permutexvar_ps(to_rows, v);
        _mm_storeu_ps(dst.add(i), _mm512_castps512_ps128(t));
        _mm_storeu_ps(dst.add(BLOCK + i), _mm512_extractf32x4_ps::<1>(t));
        _mm_storeu_ps(dst.add(2 * BLOCK + i), _mm512_extractf32x4_ps::<2>(t));
        _mm_storeu_ps(dst.add(3 * BLOCK + i), _mm512_extractf32x4_ps::<3>(t));
    }
    let mut row = [0.0f32; 4];
    for i in quads..len {
        let (ix, ws) = taps_of(idx, wts, gt, i);
        sample_row(img, 4, ix, ws, &mut row);
        for (c, &v) in row.iter().enumerate() {
            *planar.get_unchecked_mut(c * BLOCK + i) = v;
        }
    }
}
