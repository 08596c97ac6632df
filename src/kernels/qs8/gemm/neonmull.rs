//! `gemm_qs8_2x16c4_neonmull`: 2 rows x 16 channels with baseline Advanced SIMD and 8-bit
//! multiplies, for cores without the dot product (Cortex-A72, A53). On the c4 layout, one
//! weight vector holds 4 channels x 4 k; the row's 4 activation bytes (flipped to i8 with
//! `EOR 0x80`) are repeated across the vector, so `SMULL`/`SMULL2` give the 16 products
//! `w[ch][k] * a[k]` as i16. Two c4 groups are added in i16 (`SMLAL`/`SMLAL2`) before
//! `SADALP` folds neighbouring pairs into i32 lanes: 16 MACs per 3 instructions instead of
//! 4 per `SMLAL` by lane.
//!
//! Two products fit i16 only when no weight is -128 (`|(a - 128) * w| <= 128 * 127`, twice is
//! 32512): the kernel is registered with `no_min_weight` and the engine picks the `SMLAL`
//! kernel for weights that use -128. Accumulators hold two partial sums per channel
//! (`[c0 k01, c0 k23, c1 k01, c1 k23]`), folded by `ADDP` before the shared epilogue;
//! `128 * sum_k w` from the packed block's sums and the bias start them.

use super::neon::{load_bias, load_scale, store_row};
use super::{EpiMode, NR};
use std::arch::aarch64::*;

/// Rows per call.
const MR: usize = 2;

/// `acc[2q], acc[2q + 1] += pairwise sums of w0 * x0 + w1 * x1` for weight vector `q` of a
/// block (4 channels) over two c4 groups.
#[inline(always)]
unsafe fn pair(
    acc: &mut [int32x4_t; 8],
    q: usize,
    w0: int8x16_t,
    w1: int8x16_t,
    x0: int8x16_t,
    x1: int8x16_t,
) {
    let lo = vmlal_s8(
        vmull_s8(vget_low_s8(w0), vget_low_s8(x0)),
        vget_low_s8(w1),
        vget_low_s8(x1),
    );
    let hi = vmlal_high_s8(vmull_high_s8(w0, x0), w1, x1);
    acc[2 * q] = vpadalq_s16(acc[2 * q], lo);
    acc[2 * q + 1] = vpadalq_s16(acc[2 * q + 1], hi);
}

/// One c4 group alone (the odd last one).
#[inline(always)]
unsafe fn one_group(acc: &mut [int32x4_t; 8], w0: &[int8x16_t; 4], x0: int8x16_t) {
    for q in 0..4 {
        acc[2 * q] = vpadalq_s16(acc[2 * q], vmull_s8(vget_low_s8(w0[q]), vget_low_s8(x0)));
        acc[2 * q + 1] = vpadalq_s16(acc[2 * q + 1], vmull_high_s8(w0[q], x0));
    }
}

#[inline(always)]
unsafe fn load4(w: *const i8) -> [int8x16_t; 4] {
    let w = vld1q_s8_x4(w);
    [w.0, w.1, w.2, w.3]
}

/// See the module doc of `gemm` for the contract.
///
/// # Safety
/// Pointers as in the contract; no packed weight may be -128.
#[allow(clippy::too_many_arguments)]
pub unsafe fn gemm_qs8_2x16c4_neonmull(
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
        let flip = vdup_n_u8(0x80);
        let mut acc = [[vdupq_n_s32(0); 8]; MR];
        let mut kk = 0;
        while kk + 2 <= k4 {
            // Both rows' activations, both groups' weights (one four-register `LD1` each),
            // then the products: 16 accumulators + 4 activation + 8 weight registers.
            let xs: [[int8x16_t; 2]; MR] = std::array::from_fn(|i| {
                let x = vreinterpret_s32_u8(veor_u8(vld1_u8(rows[i].add(kk * 4)), flip));
                [
                    vreinterpretq_s8_s32(vdupq_lane_s32::<0>(x)),
                    vreinterpretq_s8_s32(vdupq_lane_s32::<1>(x)),
                ]
            });
            let (w0, w1) = (load4(b.add(kk * NR * 4)), load4(b.add((kk + 1) * NR * 4)));
            for q in 0..4 {
                for (x, acc) in xs.iter().zip(acc.iter_mut()) {
                    pair(acc, q, w0[q], w1[q], x[0], x[1]);
                }
            }
            kk += 2;
        }
        if kk < k4 {
            let w0 = load4(b.add(kk * NR * 4));
            for (r, acc) in rows.iter().zip(acc.iter_mut()) {
                let x4 = std::ptr::read_unaligned(r.add(kk * 4) as *const u32);
                let x = veorq_u8(vreinterpretq_u8_u32(vdupq_n_u32(x4)), vdupq_n_u8(0x80));
                one_group(acc, &w0, vreinterpretq_s8_u8(x));
            }
        }
        let sums = b.add(k4 * NR * 4) as *const i32;
        let bias = load_bias(bias);
        let start: [int32x4_t; 4] = std::array::from_fn(|j| {
            vaddq_s32(bias[j], vshlq_n_s32::<7>(vld1q_s32(sums.add(4 * j))))
        });
        let sc = load_scale(scale);
        for (i, acc) in acc.iter().enumerate().take(mr) {
            let sum: [int32x4_t; 4] = std::array::from_fn(|j| {
                vaddq_s32(start[j], vpaddq_s32(acc[2 * j], acc[2 * j + 1]))
            });
            store_row(&sum, nc, &sc, mode, c, ldc, i);
        }
    }
}
