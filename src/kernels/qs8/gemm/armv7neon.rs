//! `gemm_qs8_4x16c4_armv7neon`: 32-bit Arm NEON (Raspberry Pi OS armhf on Cortex-A7/A53/A72),
//! written as inline assembly because Rust's 32-bit Arm NEON intrinsics are not stable.
//!
//! The register tile is one row x 16 channels; a call takes up to 4 rows, block after block,
//! so each block's weights are read from L1 by all of them. On the c4 layout one weight vector
//! holds 4 channels x 4 k; the row's activations (flipped to i8 with `VEOR 0x80`) are repeated
//! across a D register per c4 group, so `VMULL.S8` gives 8 products `w[ch][k] * a[k]` in i16,
//! `VMLAL.S8` adds the next group's, and `VPADAL.S16` folds neighbouring pairs into i32 lanes:
//! 16 MACs per 3 instructions, as the aarch64 `neonmull` kernel. Two products fit i16 only
//! when no weight is -128, so the kernel is registered with `no_min_weight` (other weights run
//! the scalar kernel). The 8 accumulators hold two partial sums per channel, folded by
//! `VPADD.I32`; `128 * sum_k w` from the block's sums and the bias are added after the loop.
//!
//! Also holds the armv7 epilogue ([`store16`]) the depthwise kernel shares.
//!
//! Every armv7 assembly block names its clobbered NEON registers as D registers: the build does
//! not enable the `neon` target feature at compile time (it is detected at run time), and
//! rustc then silently drops `q` register clobbers, so the compiler would keep floats in them
//! across the block (and D8-D15 are callee-saved).

use super::{EpiMode, NR};
use std::arch::asm;

/// Rows per tile.(the register tile is one row).
const MR: usize = 4;

/// One row of A against one packed block: the 16 channels' `acc + bias` (with the flip's
/// `128 * sum_k w` added back) into `out`.
///
/// # Safety
/// `x` readable for `4 * k4` bytes, `w` one packed block of `k4` groups plus its sums, `bias`
/// 16 i32, `out` 16 i32; NEON present.
#[inline(always)]
unsafe fn dot_block(x: *const u8, w: *const i8, k4: usize, bias: *const i32, out: *mut i32) {
    let pairs = k4 / 2;
    let odd = k4 % 2;
    asm!(
        ".fpu neon",
        "vmov.i32 q0, #0",
        "vmov.i32 q1, #0",
        "vmov.i32 q2, #0",
        "vmov.i32 q3, #0",
        "vmov.i32 q4, #0",
        "vmov.i32 q5, #0",
        "vmov.i32 q6, #0",
        "vmov.i32 q7, #0",
        "vmov.i8 d30, #0x80",
        "cmp {pairs}, #0",
        "beq 3f",
        // Two c4 groups (8 k) per iteration: weights g0 q0-1 @0, g1 q0-1 @64, g0 q2-3 @32,
        // g1 q2-3 @96 (post-increments +64, -32, +64, +32).
        "2:",
        "vld1.8 {{d28}}, [{x}]!",
        "vld1.8 {{d16-d19}}, [{w}], {s64}",
        "vld1.8 {{d20-d23}}, [{w}], {sm32}",
        "veor d28, d28, d30",
        "vdup.32 d29, d28[1]",
        "vdup.32 d28, d28[0]",
        "vmull.s8 q12, d16, d28",
        "vmlal.s8 q12, d20, d29",
        "vmull.s8 q13, d17, d28",
        "vmlal.s8 q13, d21, d29",
        "vpadal.s16 q0, q12",
        "vpadal.s16 q1, q13",
        "vmull.s8 q12, d18, d28",
        "vmlal.s8 q12, d22, d29",
        "vmull.s8 q13, d19, d28",
        "vmlal.s8 q13, d23, d29",
        "vpadal.s16 q2, q12",
        "vpadal.s16 q3, q13",
        "vld1.8 {{d16-d19}}, [{w}], {s64}",
        "vld1.8 {{d20-d23}}, [{w}]!",
        "vmull.s8 q12, d16, d28",
        "vmlal.s8 q12, d20, d29",
        "vmull.s8 q13, d17, d28",
        "vmlal.s8 q13, d21, d29",
        "vpadal.s16 q4, q12",
        "vpadal.s16 q5, q13",
        "vmull.s8 q12, d18, d28",
        "vmlal.s8 q12, d22, d29",
        "vmull.s8 q13, d19, d28",
        "vmlal.s8 q13, d23, d29",
        "vpadal.s16 q6, q12",
        "vpadal.s16 q7, q13",
        "subs {pairs}, {pairs}, #1",
        "bne 2b",
        "3:",
        // The odd last group: its 4 activation bytes alone (an unaligned LDR; the row may
        // end right after them).
        "cmp {odd}, #0",
        "beq 4f",
        "ldr {odd}, [{x}]",
        "vld1.8 {{d16-d19}}, [{w}]!",
        "vld1.8 {{d20-d23}}, [{w}]!",
        "vdup.32 d28, {odd}",
        "veor d28, d28, d30",
        "vmull.s8 q12, d16, d28",
        "vmull.s8 q13, d17, d28",
        "vpadal.s16 q0, q12",
        "vpadal.s16 q1, q13",
        "vmull.s8 q12, d18, d28",
        "vmull.s8 q13, d19, d28",
        "vpadal.s16 q2, q12",
        "vpadal.s16 q3, q13",
        "vmull.s8 q12, d20, d28",
        "vmull.s8 q13, d21, d28",
        "vpadal.s16 q4, q12",
        "vpadal.s16 q5, q13",
        "vmull.s8 q12, d22, d28",
        "vmull.s8 q13, d23, d28",
        "vpadal.s16 q6, q12",
        "vpadal.s16 q7, q13",
        "4:",
        // [c0 k01, c0 k23, c1 k01, c1 k23] pairs -> one sum per channel, q8-q11 = ch 0-15.
        "vpadd.i32 d16, d0, d1",
        "vpadd.i32 d17, d2, d3",
        "vpadd.i32 d18, d4, d5",
        "vpadd.i32 d19, d6, d7",
        "vpadd.i32 d20, d8, d9",
        "vpadd.i32 d21, d10, d11",
        "vpadd.i32 d22, d12, d13",
        "vpadd.i32 d23, d14, d15",
        // w is at the block's weight sums now.
        "vld1.32 {{d0-d3}}, [{w}]!",
        "vld1.32 {{d4-d7}}, [{w}]",
        "vld1.32 {{d24-d27}}, [{bias}]!",
        "vld1.32 {{d28-d31}}, [{bias}]",
        "vshl.i32 q0, q0, #7",
        "vshl.i32 q1, q1, #7",
        "vshl.i32 q2, q2, #7",
        "vshl.i32 q3, q3, #7",
        "vadd.i32 q8, q8, q0",
        "vadd.i32 q9, q9, q1",
        "vadd.i32 q10, q10, q2",
        "vadd.i32 q11, q11, q3",
        "vadd.i32 q8, q8, q12",
        "vadd.i32 q9, q9, q13",
        "vadd.i32 q10, q10, q14",
        "vadd.i32 q11, q11, q15",
        "vst1.32 {{d16-d19}}, [{out}]!",
        "vst1.32 {{d20-d23}}, [{out}]",
        x = inout(reg) x => _,
        w = inout(reg) w => _,
        pairs = inout(reg) pairs => _,
        odd = inout(reg) odd => _,
        s64 = in(reg) 64usize,
        sm32 = in(reg) -32isize,
        bias = inout(reg) bias => _,
        out = inout(reg) out => _,
        out("d0") _, out("d1") _, out("d2") _, out("d3") _, out("d4") _, out("d5") _,
        out("d6") _, out("d7") _, out("d8") _, out("d9") _, out("d10") _, out("d11") _,
        out("d12") _, out("d13") _, out("d14") _, out("d15") _, out("d16") _, out("d17") _,
        out("d18") _, out("d19") _, out("d20") _, out("d21") _, out("d22") _, out("d23") _,
        out("d24") _, out("d25") _, out("d26") _, out("d27") _, out("d28") _, out("d29") _,
        out("d30") _, out("d31") _,
        options(nostack),
    );
}

/// See the module doc of `gemm` for the contract.
///
/// # Safety
/// Pointers as in the contract; no packed weight may be -128; the CPU has NEON.
#[allow(clippy::too_many_arguments)]
pub unsafe fn gemm_qs8_4x16c4_armv7neon(
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
    debug_assert!(mr <= MR);
    let mut acc = Acc([0; NR]);
    for blk in 0..n.div_ceil(NR) {
        let nc = NR.min(n - blk * NR);
        let (b, bias, scale, c) = super::block_args(blk, k4, b, bias, scale, mode, c);
        for i in 0..mr {
            dot_block(a.add(i * lda), b, k4, bias, acc.0.as_mut_ptr());
            store16(&acc, scale, nc, mode, c, i * ldc);
        }
    }
}

/// 16 i32 sums, 16-byte aligned for `VLD1`/`VST1` of whole registers.
#[repr(C, align(16))]
pub(in crate::kernels::qs8) struct Acc(pub [i32; NR]);

/// The armv7 epilogue: the first `n` (at most 16) of `acc` (sums with the bias) times
/// `scale[0..16]` go to element `at` of `out`, requantized to u8 or as f32 by `mode`;
/// bit-identical to `epilogue_one`.
///
/// ARMv7 NEON has no round-to-nearest conversion (`VCVT` truncates), so the products are
/// rounded half to even by adding and subtracting 1.5 * 2^23 (NEON arithmetic always rounds
/// to nearest even; exact for |v| < 2^22, and larger values saturate the same either way),
/// then converted exactly. The u8 path narrows with saturation as the aarch64 one (`VQMOVN`,
/// `VQADD` of the zero point in i16, `VQMOVUN`, then `VMAX`/`VMIN` by the clamp bounds).
///
/// # Safety
/// `scale` 16 f32; `out` holds `n` elements (bytes or f32 by `mode`) from element `at`; NEON.
#[inline(always)]
pub(in crate::kernels::qs8) unsafe fn store16(
    acc: &Acc,
    scale: *const f32,
    n: usize,
    mode: EpiMode,
    out: *mut u8,
    at: usize,
) {
    // Whole blocks go straight to `out`; a partial one through `tmp`, then its `n` values.
    let elem = mode.elem_bytes();
    let mut tmp = Acc([0; NR]);
    let dst = if n == NR {
        out.add(at * elem)
    } else {
        tmp.0.as_mut_ptr() as *mut u8
    };
    // `q0-q3 = f32(acc) * scale`, then the mode's own lines.
    macro_rules! scaled16 {
        ([$($tail:literal),*], ($($ops:tt)*)) => {
            asm!(
                ".fpu neon",
                "vld1.32 {{d0-d3}}, [{acc}]!",
                "vld1.32 {{d4-d7}}, [{acc}]",
                "vld1.32 {{d8-d11}}, [{sc}]!",
                "vld1.32 {{d12-d15}}, [{sc}]",
                "vcvt.f32.s32 q0, q0",
                "vcvt.f32.s32 q1, q1",
                "vcvt.f32.s32 q2, q2",
                "vcvt.f32.s32 q3, q3",
                "vmul.f32 q0, q0, q4",
                "vmul.f32 q1, q1, q5",
                "vmul.f32 q2, q2, q6",
                "vmul.f32 q3, q3, q7",
                $($tail,)*
                acc = inout(reg) acc.0.as_ptr() => _,
                sc = inout(reg) scale => _,
                $($ops)*
                out("d0") _, out("d1") _, out("d2") _, out("d3") _, out("d4") _, out("d5") _,
                out("d6") _, out("d7") _, out("d8") _, out("d9") _, out("d10") _,
                out("d11") _, out("d12") _, out("d13") _, out("d14") _, out("d15") _,
                out("d16") _, out("d17") _, out("d18") _, out("d19") _,
                options(nostack),
            )
        };
    }
    match mode {
        EpiMode::Quant { zp, lo, hi } => scaled16!(
            [
                "vdup.32 q8, {magic}",
                "vadd.f32 q0, q0, q8",
                "vadd.f32 q1, q1, q8",
                "vadd.f32 q2, q2, q8",
                "vadd.f32 q3, q3, q8",
                "vsub.f32 q0, q0, q8",
                "vsub.f32 q1, q1, q8",
                "vsub.f32 q2, q2, q8",
                "vsub.f32 q3, q3, q8",
                "vcvt.s32.f32 q0, q0",
                "vcvt.s32.f32 q1, q1",
                "vcvt.s32.f32 q2, q2",
                "vcvt.s32.f32 q3, q3",
                "vqmovn.s32 d0, q0",
                "vqmovn.s32 d1, q1",
                "vqmovn.s32 d2, q2",
                "vqmovn.s32 d3, q3",
                "vdup.16 q8, {zp}",
                "vqadd.s16 q0, q0, q8",
                "vqadd.s16 q1, q1, q8",
                "vqmovun.s16 d0, q0",
                "vqmovun.s16 d1, q1",
                "vdup.8 q8, {lo}",
                "vdup.8 q9, {hi}",
                "vmax.u8 q0, q0, q8",
                "vmin.u8 q0, q0, q9",
                "vst1.8 {{d0, d1}}, [{dst}]"
            ],
            (
                magic = in(reg) 0x4B40_0000u32,
                zp = in(reg) zp,
                lo = in(reg) lo,
                hi = in(reg) hi,
                dst = in(reg) dst,
            )
        ),
        EpiMode::Float => scaled16!(
            ["vst1.32 {{d0-d3}}, [{dst}]!", "vst1.32 {{d4-d7}}, [{dst}]"],
            (dst = inout(reg) dst => _,)
        ),
    }
    if n < NR {
        std::ptr::copy_nonoverlapping(tmp.0.as_ptr() as *const u8, out.add(at * elem), n * elem);
    }
}
