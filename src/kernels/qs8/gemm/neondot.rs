//! `gemm_qs8_4x16c4_neondot`: 4 rows x 16 channels with the Armv8.2 dot product (`SDOT`,
//! Cortex-A55/A76/A78 and later). The c4 weight group is exactly `SDOT`'s operand: one vector
//! holds 4 channels x 4 k, and `SDOT v.4s, w.16b, a.4b[row]` adds `sum_k w[ch][k] * a[row][k]`
//! into each channel lane. The 4 rows' 4 activation bytes share one vector (one lane each).
//!
//! `SDOT` is signed x signed while A is u8, so A is flipped to i8 with `EOR 0x80` (`a - 128`)
//! and `128 * sum_k w[n, k]` is added back per channel. That sum comes from one more `SDOT` per
//! weight vector against a vector of ones (4 extra per 16, computed in the kernel so the
//! packed layout stays the one every ISA shares). Everything is exact in i32.
//!
//! `vdotq_laneq_s32` is not stable in Rust 1.85, so `SDOT` is inline assembly in a
//! `dotprod` function.

use super::neon::store_row;
use super::{EpiMode, NR};
use std::arch::aarch64::*;
use std::arch::asm;

/// Rows per call.
const MR: usize = 4;

/// `acc += sum over 4 bytes of w * a.4b[LANE]` per i32 lane.
#[inline(always)]
unsafe fn sdot_lane<const LANE: i32>(acc: int32x4_t, w: int8x16_t, a: int8x16_t) -> int32x4_t {
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
unsafe fn row<const LANE: i32>(acc: &mut [int32x4_t; 4], w: &[int8x16_t; 4], a: int8x16_t) {
    for j in 0..4 {
        acc[j] = sdot_lane::<LANE>(acc[j], w[j], a);
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
    nc: usize,
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
    // Rows past mr re-read row 0 (always readable); their results are not stored.
    let rows: [*const u8; MR] = std::array::from_fn(|i| a.add(if i < mr { i * lda } else { 0 }));
    let flip = vdupq_n_u8(0x80);
    let ones = vdupq_n_s8(1);
    let mut acc = [[vdupq_n_s32(0); 4]; MR];
    let mut wsum = [vdupq_n_s32(0); 4];
    for kk in 0..k4 {
        let wp = b.add(kk * NR * 4);
        let w: [int8x16_t; 4] = std::array::from_fn(|j| vld1q_s8(wp.add(16 * j)));
        let x: [u32; MR] =
            std::array::from_fn(|i| std::ptr::read_unaligned(rows[i].add(kk * 4) as *const u32));
        let x = vreinterpretq_s8_u8(veorq_u8(vreinterpretq_u8_u32(vld1q_u32(x.as_ptr())), flip));
        row::<0>(&mut acc[0], &w, x);
        row::<1>(&mut acc[1], &w, x);
        row::<2>(&mut acc[2], &w, x);
        row::<3>(&mut acc[3], &w, x);
        for j in 0..4 {
            wsum[j] = sdot_lane::<0>(wsum[j], w[j], ones);
        }
    }
    let fix: [int32x4_t; 4] = std::array::from_fn(|j| vshlq_n_s32::<7>(wsum[j]));
    for (i, acc) in acc.iter().enumerate().take(mr) {
        let acc: [int32x4_t; 4] = std::array::from_fn(|j| vaddq_s32(acc[j], fix[j]));
        store_row(&acc, nc, bias, scale, mode, c, ldc, i);
    }
}
