//! `gemm_qs8_4x16c4_neondot`: 4 rows x 16 channels with the Armv8.2 dot product (`SDOT`,
//! Cortex-A55/A76/A78 and later). The c4 weight group is exactly `SDOT`'s operand: one vector
//! holds 4 channels x 4 k, and `SDOT v.4s, w.16b, a.4b[lane]` adds `sum_k w[ch][k] * a[k]`
//! into each channel lane. Each row's activations are loaded 8 bytes (two c4 groups) at a time
//! into one register, so a step is 4 loads of A, 8 of B and 32 `SDOT`s for 512 MACs.
//!
//! `SDOT` is signed x signed while A is u8, so A is flipped to i8 with `EOR 0x80` (`a - 128`)
//! and `128 * sum_k w[n, k]` (from the packed block's sums) starts the accumulators with the
//! bias. Everything is exact in i32.
//!
//! `vdotq_laneq_s32` is not stable in Rust 1.85, so `SDOT` is inline assembly in a
//! `dotprod` function.

use super::neon::{load_bias, store_row};
use super::{EpiMode, NR};
use std::arch::aarch64::*;
use std::arch::asm;

/// Rows per call.
const MR: usize = 4;

/// `acc += sum over 4 bytes of w * a.4b[LANE]` per i32 lane (`a`: 8 bytes, lanes 0 and 1).
#[inline(always)]
unsafe fn sdot_lane<const LANE: i32>(acc: int32x4_t, w: int8x16_t, a: int8x8_t) -> int32x4_t {
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

/// `acc[..] += w * a.4b[LANE]` for the 4 weight vectors (16 channels) of one c4 group.
#[inline(always)]
unsafe fn group<const LANE: i32>(acc: &mut [int32x4_t; 4], w: *const i8, a: int8x8_t) {
    for (j, acc) in acc.iter_mut().enumerate() {
        *acc = sdot_lane::<LANE>(*acc, vld1q_s8(w.add(16 * j)), a);
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
        let signed = |p: *const u8| vreinterpret_s8_u8(veor_u8(vld1_u8(p), flip));
        let mut kk = 0;
        while kk + 2 <= k4 {
            let w = b.add(kk * NR * 4);
            for (r, acc) in rows.iter().zip(acc.iter_mut()) {
                let x = signed(r.add(kk * 4));
                group::<0>(acc, w, x);
                group::<1>(acc, w.add(NR * 4), x);
            }
            kk += 2;
        }
        if kk < k4 {
            // one c4 group left: 4 bytes per row
            let w = b.add(kk * NR * 4);
            for (r, acc) in rows.iter().zip(acc.iter_mut()) {
                let x4 = std::ptr::read_unaligned(r.add(kk * 4) as *const u32);
                let x = vreinterpret_s8_u8(veor_u8(vreinterpret_u8_u32(vdup_n_u32(x4)), flip));
                group::<0>(acc, w, x);
            }
        }
        for (i, acc) in acc.iter().enumerate().take(mr) {
            store_row(acc, nc, scale, mode, c, ldc, i);
        }
    }
}
