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
//! (`[c0 k01, c0 k23, c1 k01, c1 k23]`), folded by `ADDP` before the shared epilogue; they
//! start as `[s0, 0, s1, 0]` with `s = bias + 128 * sum_k w` (the packed block's sums), so
//! the fold adds the start once.
//!
//! The loops and the requantizing store of a full tile (2 rows, 16 channels, u8 output) are
//! inline assembly with the 16 accumulators pinned to `v16`-`v31`: a step of two c4 groups
//! is 60 instructions for 256 MACs (LLVM's intrinsics version: 64, plus 16 to zero the
//! accumulators and about 57 per stored row against 28 here). Partial tiles and f32
//! outputs take the shared intrinsics epilogue.

use super::neon::{load_bias, load_scale, store_row};
use super::{EpiMode, NR};
use std::arch::aarch64::*;
use std::arch::asm;

/// Rows per call.
const MR: usize = 2;

/// One row's products of a step of two c4 groups (weights `v8`-`v11` and `v12`-`v15`,
/// activations repeated in `$x0`/`$x1`) into the row's accumulators `$a0`..`$a7`.
macro_rules! row_step {
    ($x0:literal, $x1:literal, $a0:literal, $a1:literal, $a2:literal, $a3:literal,
     $a4:literal, $a5:literal, $a6:literal, $a7:literal) => {
        concat!(
            row_step!(@q 8, 12, $x0, $x1, $a0, $a1),
            row_step!(@q 9, 13, $x0, $x1, $a2, $a3),
            row_step!(@q 10, 14, $x0, $x1, $a4, $a5),
            row_step!(@q 11, 15, $x0, $x1, $a6, $a7),
        )
    };
    (@q $w0:literal, $w1:literal, $x0:literal, $x1:literal, $lo:literal, $hi:literal) => {
        concat!(
            "smull v6.8h, v", $w0, ".8b, v", $x0, ".8b\n",
            "smlal v6.8h, v", $w1, ".8b, v", $x1, ".8b\n",
            "sadalp v", $lo, ".4s, v6.8h\n",
            "smull2 v7.8h, v", $w0, ".16b, v", $x0, ".16b\n",
            "smlal2 v7.8h, v", $w1, ".16b, v", $x1, ".16b\n",
            "sadalp v", $hi, ".4s, v7.8h\n",
        )
    };
}

/// One row's products of a single c4 group (weights `v8`-`v11`, activations in `$x0`).
macro_rules! row_group {
    ($x0:literal, $a0:literal, $a1:literal, $a2:literal, $a3:literal,
     $a4:literal, $a5:literal, $a6:literal, $a7:literal) => {
        concat!(
            row_group!(@q 8, $x0, $a0, $a1),
            row_group!(@q 9, $x0, $a2, $a3),
            row_group!(@q 10, $x0, $a4, $a5),
            row_group!(@q 11, $x0, $a6, $a7),
        )
    };
    (@q $w0:literal, $x0:literal, $lo:literal, $hi:literal) => {
        concat!(
            "smull v6.8h, v", $w0, ".8b, v", $x0, ".8b\n",
            "sadalp v", $lo, ".4s, v6.8h\n",
            "smull2 v7.8h, v", $w0, ".16b, v", $x0, ".16b\n",
            "sadalp v", $hi, ".4s, v7.8h\n",
        )
    };
}

/// One stored row of a full tile: fold the accumulator pairs `$a0`..`$a7` (`ADDP`), then
/// requantize (`requant16_asm!`: multipliers `v8`-`v11`, zero point `v12`, bounds
/// `v13`/`v14`) as 16 bytes at `{c}`, then `{c} += {ldc}`.
macro_rules! store_q16 {
    ($a0:literal, $a1:literal, $a2:literal, $a3:literal,
     $a4:literal, $a5:literal, $a6:literal, $a7:literal) => {
        concat!(
            "addp v0.4s, v", $a0, ".4s, v", $a1, ".4s\n",
            "addp v1.4s, v", $a2, ".4s, v", $a3, ".4s\n",
            "addp v2.4s, v", $a4, ".4s, v", $a5, ".4s\n",
            "addp v3.4s, v", $a6, ".4s, v", $a7, ".4s\n",
            requant16_asm!(0, 1, 2, 3; 8, 9, 10, 11; 12, 13, 14; 4, 5),
            "str q4, [{c}]\n",
            "add {c}, {c}, {ldc}\n",
        )
    };
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
    // Rows past mr re-read row 0 (always readable); their results are not stored.
    let rows: [*const u8; MR] = std::array::from_fn(|i| a.add(if i < mr { i * lda } else { 0 }));
    let (steps, rest) = (k4 / 2, k4 % 2);
    for blk in 0..n.div_ceil(NR) {
        let nc = NR.min(n - blk * NR);
        let (b, bias, scale, c) = super::block_args(blk, k4, b, bias, scale, mode, c);
        // The accumulators' start: channel j's `bias + 128 * sum` in the first of its two
        // lanes (accumulator vector j / 2, lanes 2 * (j % 2) and + 1).
        let sums = b.add(k4 * NR * 4) as *const i32;
        let mut start = [0i32; 2 * NR];
        let (bias, zero) = (load_bias(bias), vdupq_n_s32(0));
        for (j, bj) in bias.iter().enumerate() {
            // channels 4j..4j+3 -> [s0, 0, s1, 0], [s2, 0, s3, 0]
            let s = vaddq_s32(*bj, vshlq_n_s32::<7>(vld1q_s32(sums.add(4 * j))));
            vst1q_s32(start.as_mut_ptr().add(8 * j), vzip1q_s32(s, zero));
            vst1q_s32(start.as_mut_ptr().add(8 * j + 4), vzip2q_s32(s, zero));
        }
        let mut acc = [[vdupq_n_s32(0); 8]; MR];
        // SAFETY: reads 4 * k4 bytes of each row and k4 groups of 64 weight bytes (the
        // contract); writes only the named registers.
        asm!(
            "ld1 {{v16.4s, v17.4s, v18.4s, v19.4s}}, [{start}], #64",
            "ld1 {{v20.4s, v21.4s, v22.4s, v23.4s}}, [{start}]",
            "sub {start}, {start}, #64",
            "ld1 {{v24.4s, v25.4s, v26.4s, v27.4s}}, [{start}], #64",
            "ld1 {{v28.4s, v29.4s, v30.4s, v31.4s}}, [{start}]",
            "movi v5.8b, #0x80",
            "cbz {steps}, 3f",
            // two c4 groups: 8 bytes of each row, flipped, each group repeated across a vector
            "2:",
            "ldr d0, [{r0}], #8",
            "ldr d3, [{r1}], #8",
            "ld1 {{v8.16b, v9.16b, v10.16b, v11.16b}}, [{w}], #64",
            "ld1 {{v12.16b, v13.16b, v14.16b, v15.16b}}, [{w}], #64",
            "eor v0.8b, v0.8b, v5.8b",
            "eor v3.8b, v3.8b, v5.8b",
            "dup v1.4s, v0.s[0]",
            "dup v2.4s, v0.s[1]",
            "dup v4.4s, v3.s[1]",
            "dup v3.4s, v3.s[0]",
            row_step!(1, 2, 16, 17, 18, 19, 20, 21, 22, 23),
            row_step!(3, 4, 24, 25, 26, 27, 28, 29, 30, 31),
            "subs {steps}, {steps}, #1",
            "b.ne 2b",
            // an odd last group: 4 bytes of each row
            "3:",
            "cbz {rest}, 4f",
            "ldr s0, [{r0}]",
            "ldr s3, [{r1}]",
            "ld1 {{v8.16b, v9.16b, v10.16b, v11.16b}}, [{w}]",
            "eor v0.8b, v0.8b, v5.8b",
            "eor v3.8b, v3.8b, v5.8b",
            "dup v1.4s, v0.s[0]",
            "dup v3.4s, v3.s[0]",
            row_group!(1, 16, 17, 18, 19, 20, 21, 22, 23),
            row_group!(3, 24, 25, 26, 27, 28, 29, 30, 31),
            "4:",
            start = inout(reg) start.as_ptr() => _,
            steps = inout(reg) steps => _,
            rest = in(reg) rest,
            r0 = inout(reg) rows[0] => _,
            r1 = inout(reg) rows[1] => _,
            w = inout(reg) b => _,
            out("v0") _, out("v1") _, out("v2") _, out("v3") _,
            out("v4") _, out("v5") _, out("v6") _, out("v7") _,
            out("v8") _, out("v9") _, out("v10") _, out("v11") _,
            out("v12") _, out("v13") _, out("v14") _, out("v15") _,
            out("v16") acc[0][0], out("v17") acc[0][1], out("v18") acc[0][2], out("v19") acc[0][3],
            out("v20") acc[0][4], out("v21") acc[0][5], out("v22") acc[0][6], out("v23") acc[0][7],
            out("v24") acc[1][0], out("v25") acc[1][1], out("v26") acc[1][2], out("v27") acc[1][3],
            out("v28") acc[1][4], out("v29") acc[1][5], out("v30") acc[1][6], out("v31") acc[1][7],
            options(nostack, readonly),
        );
        match mode {
            EpiMode::Quant { zp, lo, hi } if mr == MR && nc == NR => {
                // SAFETY: two rows of 16 bytes at c, ldc apart (the contract).
                asm!(
                    "ld1 {{v8.4s, v9.4s, v10.4s, v11.4s}}, [{scale}]",
                    "dup v12.8h, {zp:w}",
                    "dup v13.16b, {lo:w}",
                    "dup v14.16b, {hi:w}",
                    store_q16!(16, 17, 18, 19, 20, 21, 22, 23),
                    store_q16!(24, 25, 26, 27, 28, 29, 30, 31),
                    scale = in(reg) scale,
                    zp = in(reg) zp,
                    lo = in(reg) lo,
                    hi = in(reg) hi,
                    c = inout(reg) c => _,
                    ldc = in(reg) ldc,
                    out("v0") _, out("v1") _, out("v2") _, out("v3") _, out("v4") _, out("v5") _,
                    out("v8") _, out("v9") _, out("v10") _, out("v11") _,
                    out("v12") _, out("v13") _, out("v14") _,
                    inout("v16") acc[0][0] => _, inout("v17") acc[0][1] => _,
                    inout("v18") acc[0][2] => _, inout("v19") acc[0][3] => _,
                    inout("v20") acc[0][4] => _, inout("v21") acc[0][5] => _,
                    inout("v22") acc[0][6] => _, inout("v23") acc[0][7] => _,
                    inout("v24") acc[1][0] => _, inout("v25") acc[1][1] => _,
                    inout("v26") acc[1][2] => _, inout("v27") acc[1][3] => _,
                    inout("v28") acc[1][4] => _, inout("v29") acc[1][5] => _,
                    inout("v30") acc[1][6] => _, inout("v31") acc[1][7] => _,
                    options(nostack),
                );
            }
            _ => {
                let sc = load_scale(scale);
                for (i, acc) in acc.iter().enumerate().take(mr) {
                    let sum: [int32x4_t; 4] =
                        std::array::from_fn(|j| vpaddq_s32(acc[2 * j], acc[2 * j + 1]));
                    store_row(&sum, nc, &sc, mode, c, ldc, i);
                }
            }
        }
    }
}
