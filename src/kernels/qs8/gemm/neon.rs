//! `gemm_qs8_4x16c4_neon`: 4 rows x 16 channels with baseline Advanced SIMD (Cortex-A72 and
//! every other aarch64 core). `LD4` de-interleaves one c4 group of weights into four vectors
//! (one per k, 16 channels each), `SXTL`/`SXTL2` widen them to i16, activations are
//! zero-extended to i16 (u8 fits), and `SMLAL`/`SMLAL2` by lane accumulate `w[k] * a[row][k]`
//! into i32: exact, 16 MACs per 4 multiply-accumulates. Also holds the NEON epilogue that the
//! `neondot` kernel shares.

use super::{EpiMode, NR};
use std::arch::aarch64::*;

/// Rows per tile.
const MR: usize = 4;

/// `acc[j] += w16[j half] * a[LANE]` for the 16 channels of one k (`w` = channels 0-7, 8-15).
#[inline(always)]
unsafe fn mlal_k<const LANE: i32>(acc: &mut [int32x4_t; 4], w: [int16x8_t; 2], a: int16x4_t) {
    acc[0] = vmlal_lane_s16::<LANE>(acc[0], vget_low_s16(w[0]), a);
    acc[1] = vmlal_high_lane_s16::<LANE>(acc[1], w[0], a);
    acc[2] = vmlal_lane_s16::<LANE>(acc[2], vget_low_s16(w[1]), a);
    acc[3] = vmlal_high_lane_s16::<LANE>(acc[3], w[1], a);
}

/// Both halves of one de-interleaved k vector, widened to i16.
#[inline(always)]
unsafe fn widen(w: int8x16_t) -> [int16x8_t; 2] {
    [vmovl_s8(vget_low_s8(w)), vmovl_high_s8(w)]
}

/// See the module doc of `gemm` for the contract.
///
/// # Safety
/// Pointers as in the contract (aarch64 always has Advanced SIMD).
#[allow(clippy::too_many_arguments)]
pub unsafe fn gemm_qs8_4x16c4_neon(
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
        // Rows past mr re-read row 0 (always readable); their results are not stored.
        let rows: [*const u8; MR] =
            std::array::from_fn(|i| a.add(if i < mr { i * lda } else { 0 }));
        let mut acc = [load_bias(bias); MR];
        for kk in 0..k4 {
            let w = vld4q_s8(b.add(kk * NR * 4));
            let w = [widen(w.0), widen(w.1), widen(w.2), widen(w.3)];
            for (r, acc) in rows.iter().zip(acc.iter_mut()) {
                let x4 = std::ptr::read_unaligned(r.add(kk * 4) as *const u32);
                // [a0 a1 a2 a3] as i16 lanes
                let x = vreinterpret_s16_u16(vget_low_u16(vmovl_u8(vreinterpret_u8_u32(
                    vdup_n_u32(x4),
                ))));
                mlal_k::<0>(acc, w[0], x);
                mlal_k::<1>(acc, w[1], x);
                mlal_k::<2>(acc, w[2], x);
                mlal_k::<3>(acc, w[3], x);
            }
        }
        let sc = load_scale(scale);
        for (i, acc) in acc.iter().enumerate().take(mr) {
            store_row(acc, nc, &sc, mode, c, ldc, i);
        }
    }
}

/// NEON epilogue for one row of 16 i32 sums that already include the bias: `SCVTF`
/// (nearest), one `FMUL` by the multipliers, then [`store16`]; bit-identical to
/// `epilogue_one`. Stores `nc` values into row `i` of C.
///
/// # Safety
/// As the kernels' contract.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
pub(super) unsafe fn store_row(
    acc: &[int32x4_t; 4],
    nc: usize,
    scale: &[float32x4_t; 4],
    mode: EpiMode,
    c: *mut u8,
    ldc: usize,
    i: usize,
) {
    let f: [float32x4_t; 4] = std::array::from_fn(|j| vmulq_f32(vcvtq_f32_s32(acc[j]), scale[j]));
    store16(&f, nc, mode, c, i * ldc);
}

/// The multipliers of 16 channels (one `LD1` of four registers), loaded once per block.
#[inline(always)]
pub(super) unsafe fn load_scale(scale: *const f32) -> [float32x4_t; 4] {
    let s = vld1q_f32_x4(scale);
    [s.0, s.1, s.2, s.3]
}

/// The bias of 16 channels as the accumulators' starting value.
#[inline(always)]
pub(super) unsafe fn load_bias(bias: *const i32) -> [int32x4_t; 4] {
    let b = vld1q_s32_x4(bias);
    [b.0, b.1, b.2, b.3]
}

/// The shared epilogue of the NEON qs8 kernels: the first `n` (at most 16) scaled values in
/// `f` go to element `at` of `out`, requantized to u8 (round to nearest even, zero point,
/// clamp) or as f32, by `mode`.
///
/// The u8 path narrows with saturation (`SQXTN`, `SQADD` of the zero point in i16, `SQXTUN`)
/// and clamps bytes (`UMAX`/`UMIN`): the same result as `clamp(v + zp, lo, hi)` in i32, since
/// a value saturated at either i16 end stays beyond `0..=255` after adding `zp <= 255`.
///
/// # Safety
/// `out` must hold `n` elements (bytes or f32 by `mode`) from element `at`.
#[inline(always)]
pub(in crate::kernels::qs8) unsafe fn store16(
    f: &[float32x4_t; 4],
    n: usize,
    mode: EpiMode,
    out: *mut u8,
    at: usize,
) {
    match mode {
        EpiMode::Quant { zp, lo, hi } => {
            let q: [int32x4_t; 4] = std::array::from_fn(|j| vcvtnq_s32_f32(f[j]));
            let z = vdupq_n_s16(zp as i16);
            let h0 = vqaddq_s16(vqmovn_high_s32(vqmovn_s32(q[0]), q[1]), z);
            let h1 = vqaddq_s16(vqmovn_high_s32(vqmovn_s32(q[2]), q[3]), z);
            let bytes = vqmovun_high_s16(vqmovun_s16(h0), h1);
            let bytes = vminq_u8(vmaxq_u8(bytes, vdupq_n_u8(lo as u8)), vdupq_n_u8(hi as u8));
            let dst = out.add(at);
            if n == NR {
                vst1q_u8(dst, bytes);
            } else {
                let mut t = [0u8; NR];
                vst1q_u8(t.as_mut_ptr(), bytes);
                std::ptr::copy_nonoverlapping(t.as_ptr(), dst, n);
            }
        }
        EpiMode::Float => {
            let dst = (out as *mut f32).add(at);
            if n == NR {
                for (j, v) in f.iter().enumerate() {
                    vst1q_f32(dst.add(4 * j), *v);
                }
            } else {
                let mut t = [0f32; NR];
                for (j, v) in f.iter().enumerate() {
                    vst1q_f32(t.as_mut_ptr().add(4 * j), *v);
                }
                std::ptr::copy_nonoverlapping(t.as_ptr(), dst, n);
            }
        }
    }
}
