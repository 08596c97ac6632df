//! `gemm_qs8_4x16c4_neondot`: 4 rows x 16 channels with the Armv8.2 dot product (`SDOT`,
//! Cortex-A55/A76/A78 and later). The c4 weight group is exactly `SDOT`'s operand: one vector
//! holds 4 channels x 4 k, and `SDOT v.4s, w.16b, a.4b[lane]` adds `sum_k w[ch][k] * a[k]`
//! into each channel lane. Each row's activations are loaded 16 bytes (four c4 groups, SDOT
//! lanes 0..3) at a time and each group's 64 weight bytes in one four-register `LD1`, so a
//! step is 4 loads and 4 `EOR`s of A, 4 loads of B and 64 `SDOT`s for 1024 MACs.
//!
//! `SDOT` is signed x signed while A is u8, so A is flipped to i8 with `EOR 0x80` (`a - 128`)
//! and `128 * sum_k w[n, k]` (from the packed block's sums) starts the accumulators with the
//! bias. Everything is exact in i32.
//!
//! `vdotq_laneq_s32` is not stable in Rust 1.85, so `SDOT` is inline assembly in a
//! `dotprod` function.

use super::neon::{load_bias, load_scale, store_row};
use super::{EpiMode, NR};
use std::arch::aarch64::*;
use std::arch::asm;

/// Rows per call.
const MR: usize = 4;

/// `acc[..] += w * a.4b[LANE]` for the 4 weight vectors (16 channels) of one c4 group, one row.
#[inline(always)]
unsafe fn group<const LANE: i32>(acc: &mut [int32x4_t; 4], w: int8x16x4_t, a: int8x16_t) {
    let w = [w.0, w.1, w.2, w.3];
    for (acc, w) in acc.iter_mut().zip(w) {
        *acc = sdot_laneq::<LANE>(*acc, w, a);
    }
}

/// `acc += w * a.4b[LANE]` (`a`: 16 bytes, lanes 0..3).
#[inline(always)]
unsafe fn sdot_laneq<const LANE: i32>(acc: int32x4_t, w: int8x16_t, a: int8x16_t) -> int32x4_t {
    let mut acc = acc;
    asm!(
        "sdot {acc:v}.4s, {w:v}.16b, {a:v}.4b[{lane}]",
        acc = inout(vreg) acc,
        w = in(vreg) w,
        a = in(vreg) a,
        lane = const LANE,
        options(pure, nomem, nostack, preserves_flags),
    );
    acc
}

/// One c4 group (weights `w`, activations lane `LANE` of each row's 16 bytes) for all rows.
#[inline(always)]
unsafe fn group4<const LANE: i32>(
    acc: &mut [[int32x4_t; 4]; MR],
    w: int8x16x4_t,
    xs: &[int8x16_t; MR],
) {
    for (acc, x) in acc.iter_mut().zip(xs) {
        group::<LANE>(acc, w, *x);
    }
}

/// See the module doc of `gemm` for the contract.
///
/// # Safety
/// Pointers as in the contract; the host must have the dot product extension (`dotprod`).
#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "dotprod")]
pub unsafe fn gemm_qs8_4x16c4_neondot(
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
        let sums = b.add(k4 * NR * 4) as *const i32;
        let start: [int32x4_t; 4] = {
            let bias = load_bias(bias);
            std::array::from_fn(|j| {
                vaddq_s32(bias[j], vshlq_n_s32::<7>(vld1q_s32(sums.add(4 * j))))
            })
        };
        let mut acc = [start; MR];
        let flip16 = vdupq_n_u8(0x80);
        let mut kk = 0;
        // Four c4 groups per step: 16 bytes of A per row (SDOT lanes 0..3) and each group's
        // 64 weight bytes in one `LD1` of four registers.
        while kk + 4 <= k4 {
            let xs: [int8x16_t; MR] = std::array::from_fn(|i| {
                vreinterpretq_s8_u8(veorq_u8(vld1q_u8(rows[i].add(kk * 4)), flip16))
            });
            let w = b.add(kk * NR * 4);
            group4::<0>(&mut acc, vld1q_s8_x4(w), &xs);
            group4::<1>(&mut acc, vld1q_s8_x4(w.add(NR * 4)), &xs);
            group4::<2>(&mut acc, vld1q_s8_x4(w.add(2 * NR * 4)), &xs);
            group4::<3>(&mut acc, vld1q_s8_x4(w.add(3 * NR * 4)), &xs);
            kk += 4;
        }
        // Tails: 8 or 4 bytes of a row (lanes 0..1 or 0) in the low half of a vector.
        let signed = |x: uint8x8_t| {
            let x = vreinterpret_s8_u8(veor_u8(x, flip));
            vcombine_s8(x, x)
        };
        if kk + 2 <= k4 {
            let w = b.add(kk * NR * 4);
            let (w0, w1) = (vld1q_s8_x4(w), vld1q_s8_x4(w.add(NR * 4)));
            for (r, acc) in rows.iter().zip(acc.iter_mut()) {
                let x = signed(vld1_u8(r.add(kk * 4)));
                group::<0>(acc, w0, x);
                group::<1>(acc, w1, x);
            }
            kk += 2;
        }
        if kk < k4 {
            // one c4 group left: 4 bytes per row
            let w0 = vld1q_s8_x4(b.add(kk * NR * 4));
            for (r, acc) in rows.iter().zip(acc.iter_mut()) {
                let x4 = std::ptr::read_unaligned(r.add(kk * 4) as *const u32);
                let x = signed(vreinterpret_u8_u32(vdup_n_u32(x4)));
                group::<0>(acc, w0, x);
            }
        }
        let sc = load_scale(scale);
        for (i, acc) in acc.iter().enumerate().take(mr) {
            store_row(acc, nc, &sc, mode, c, ldc, i);
        }
    }
}
