//! `gemm_qs8_4x16c4_neondot`: 4 rows x 16 channels with the Armv8.2 dot product (`SDOT`,
//! Cortex-A55/A76/A78 and later). The c4 weight group is exactly `SDOT`'s operand: one vector
//! holds 4 channels x 4 k, and `SDOT v.4s, w.16b, a.4b[lane]` adds `sum_k w[ch][k] * a[k]`
//! into each channel lane. Each row's activations are loaded 16 bytes (four c4 groups, SDOT
//! lanes 0..3) at a time and each group's 64 weight bytes in one four-register `LD1`, so a
//! step is 4 loads and 4 `EOR`s of A, 4 loads of B, 64 `SDOT`s and the loop's 2 for 1024
//! MACs (13.1 MACs per instruction); a K that is not a multiple of 16 ends with single
//! groups (4 bytes of each row, lane 0).
//!
//! `SDOT` is signed x signed while A is u8, so A is flipped to i8 with `EOR 0x80` (`a - 128`)
//! and `128 * sum_k w[n, k]` (from the packed block's sums) starts the accumulators with the
//! bias. Everything is exact in i32.
//!
//! The loops and the requantizing store of a full tile (4 rows, 16 channels, u8 output) are
//! inline assembly with the 16 accumulators pinned to `v16`-`v31`: written with intrinsics,
//! LLVM split the weight loads into pairs and spilled the epilogue's constants per row
//! (89 instructions per step, ~34 per stored row; now 78 and 24). `vdotq_laneq_s32` is not
//! stable in Rust 1.85 either. Partial tiles and f32 outputs take the shared intrinsics
//! epilogue.

use super::neon::{load_bias, load_scale, store_row};
use super::{EpiMode, NR};
use std::arch::aarch64::*;
use std::arch::asm;

/// Rows per call.
const MR: usize = 4;

/// The 16 `SDOT`s of one c4 group (weights in `v4`-`v7`) for lane `$l` of the four rows'
/// activations (`{a0}`-`{a3}`), into the accumulators `v16`-`v31` (row-major, 4 per row).
macro_rules! sdot_group {
    ($l:literal) => {
        concat!(
            "sdot v16.4s, v4.16b, {a0:v}.4b[",
            $l,
            "]\n",
            "sdot v17.4s, v5.16b, {a0:v}.4b[",
            $l,
            "]\n",
            "sdot v18.4s, v6.16b, {a0:v}.4b[",
            $l,
            "]\n",
            "sdot v19.4s, v7.16b, {a0:v}.4b[",
            $l,
            "]\n",
            "sdot v20.4s, v4.16b, {a1:v}.4b[",
            $l,
            "]\n",
            "sdot v21.4s, v5.16b, {a1:v}.4b[",
            $l,
            "]\n",
            "sdot v22.4s, v6.16b, {a1:v}.4b[",
            $l,
            "]\n",
            "sdot v23.4s, v7.16b, {a1:v}.4b[",
            $l,
            "]\n",
            "sdot v24.4s, v4.16b, {a2:v}.4b[",
            $l,
            "]\n",
            "sdot v25.4s, v5.16b, {a2:v}.4b[",
            $l,
            "]\n",
            "sdot v26.4s, v6.16b, {a2:v}.4b[",
            $l,
            "]\n",
            "sdot v27.4s, v7.16b, {a2:v}.4b[",
            $l,
            "]\n",
            "sdot v28.4s, v4.16b, {a3:v}.4b[",
            $l,
            "]\n",
            "sdot v29.4s, v5.16b, {a3:v}.4b[",
            $l,
            "]\n",
            "sdot v30.4s, v6.16b, {a3:v}.4b[",
            $l,
            "]\n",
            "sdot v31.4s, v7.16b, {a3:v}.4b[",
            $l,
            "]\n",
        )
    };
}

/// One stored row of a full tile: accumulators `$a`-`$d` requantized (`requant16_asm!`:
/// multipliers `v4`-`v7`, zero point `v1`, bounds `v2`/`v3`) as 16 bytes at `{c}`, then
/// `{c} += {ldc}`.
macro_rules! store_q16 {
    ($a:literal, $b:literal, $c:literal, $d:literal) => {
        concat!(
            requant16_asm!($a, $b, $c, $d; 4, 5, 6, 7; 1, 2, 3; 0, 8),
            "str q0, [{c}]\n",
            "add {c}, {c}, {ldc}\n",
        )
    };
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
    // Rows past mr re-read row 0 (always readable); their results are not stored.
    let rows: [*const u8; MR] = std::array::from_fn(|i| a.add(if i < mr { i * lda } else { 0 }));
    let (steps, rest) = (k4 / 4, k4 % 4);
    for blk in 0..n.div_ceil(NR) {
        let nc = NR.min(n - blk * NR);
        let (b, bias, scale, c) = super::block_args(blk, k4, b, bias, scale, mode, c);
        // bias + 128 * sum_k w, the accumulators' start for every row
        let sums = b.add(k4 * NR * 4) as *const i32;
        let bias = load_bias(bias);
        let mut start = [0i32; NR];
        for (j, bj) in bias.iter().enumerate() {
            let s = vshlq_n_s32::<7>(vld1q_s32(sums.add(4 * j)));
            vst1q_s32(start.as_mut_ptr().add(4 * j), vaddq_s32(*bj, s));
        }
        let mut acc = [[vdupq_n_s32(0); 4]; MR];
        // SAFETY: reads 4 * k4 bytes of each row and k4 groups of 64 weight bytes (the
        // contract); writes only the named registers.
        asm!(
            "ld1 {{v16.4s, v17.4s, v18.4s, v19.4s}}, [{start}]",
            "ld1 {{v20.4s, v21.4s, v22.4s, v23.4s}}, [{start}]",
            "ld1 {{v24.4s, v25.4s, v26.4s, v27.4s}}, [{start}]",
            "ld1 {{v28.4s, v29.4s, v30.4s, v31.4s}}, [{start}]",
            "movi v8.16b, #0x80",
            "cbz {steps}, 3f",
            // four c4 groups: 16 bytes of each row, flipped to i8
            "2:",
            "ldr {a0:q}, [{r0}], #16",
            "ldr {a1:q}, [{r1}], #16",
            "ldr {a2:q}, [{r2}], #16",
            "ldr {a3:q}, [{r3}], #16",
            "ld1 {{v4.16b, v5.16b, v6.16b, v7.16b}}, [{w}], #64",
            "eor {a0:v}.16b, {a0:v}.16b, v8.16b",
            "eor {a1:v}.16b, {a1:v}.16b, v8.16b",
            "eor {a2:v}.16b, {a2:v}.16b, v8.16b",
            "eor {a3:v}.16b, {a3:v}.16b, v8.16b",
            sdot_group!(0),
            "ld1 {{v4.16b, v5.16b, v6.16b, v7.16b}}, [{w}], #64",
            sdot_group!(1),
            "ld1 {{v4.16b, v5.16b, v6.16b, v7.16b}}, [{w}], #64",
            sdot_group!(2),
            "ld1 {{v4.16b, v5.16b, v6.16b, v7.16b}}, [{w}], #64",
            sdot_group!(3),
            "subs {steps}, {steps}, #1",
            "b.ne 2b",
            // single groups: 4 bytes of each row
            "3:",
            "cbz {rest}, 5f",
            "4:",
            "ldr {a0:s}, [{r0}], #4",
            "ldr {a1:s}, [{r1}], #4",
            "ldr {a2:s}, [{r2}], #4",
            "ldr {a3:s}, [{r3}], #4",
            "ld1 {{v4.16b, v5.16b, v6.16b, v7.16b}}, [{w}], #64",
            "eor {a0:v}.8b, {a0:v}.8b, v8.8b",
            "eor {a1:v}.8b, {a1:v}.8b, v8.8b",
            "eor {a2:v}.8b, {a2:v}.8b, v8.8b",
            "eor {a3:v}.8b, {a3:v}.8b, v8.8b",
            sdot_group!(0),
            "subs {rest}, {rest}, #1",
            "b.ne 4b",
            "5:",
            start = in(reg) start.as_ptr(),
            steps = inout(reg) steps => _,
            rest = inout(reg) rest => _,
            r0 = inout(reg) rows[0] => _,
            r1 = inout(reg) rows[1] => _,
            r2 = inout(reg) rows[2] => _,
            r3 = inout(reg) rows[3] => _,
            w = inout(reg) b => _,
            a0 = out(vreg) _,
            a1 = out(vreg) _,
            a2 = out(vreg) _,
            a3 = out(vreg) _,
            out("v4") _, out("v5") _, out("v6") _, out("v7") _, out("v8") _,
            out("v16") acc[0][0], out("v17") acc[0][1], out("v18") acc[0][2], out("v19") acc[0][3],
            out("v20") acc[1][0], out("v21") acc[1][1], out("v22") acc[1][2], out("v23") acc[1][3],
            out("v24") acc[2][0], out("v25") acc[2][1], out("v26") acc[2][2], out("v27") acc[2][3],
            out("v28") acc[3][0], out("v29") acc[3][1], out("v30") acc[3][2], out("v31") acc[3][3],
            options(nostack, readonly),
        );
        match mode {
            EpiMode::Quant { zp, lo, hi } if mr == MR && nc == NR => {
                // SAFETY: four rows of 16 bytes at c, ldc apart (the contract).
                asm!(
                    "ld1 {{v4.4s, v5.4s, v6.4s, v7.4s}}, [{scale}]",
                    "dup v1.8h, {zp:w}",
                    "dup v2.16b, {lo:w}",
                    "dup v3.16b, {hi:w}",
                    store_q16!(16, 17, 18, 19),
                    store_q16!(20, 21, 22, 23),
                    store_q16!(24, 25, 26, 27),
                    store_q16!(28, 29, 30, 31),
                    scale = in(reg) scale,
                    zp = in(reg) zp,
                    lo = in(reg) lo,
                    hi = in(reg) hi,
                    c = inout(reg) c => _,
                    ldc = in(reg) ldc,
                    out("v0") _, out("v1") _, out("v2") _, out("v3") _,
                    out("v4") _, out("v5") _, out("v6") _, out("v7") _, out("v8") _,
                    inout("v16") acc[0][0] => _, inout("v17") acc[0][1] => _,
                    inout("v18") acc[0][2] => _, inout("v19") acc[0][3] => _,
                    inout("v20") acc[1][0] => _, inout("v21") acc[1][1] => _,
                    inout("v22") acc[1][2] => _, inout("v23") acc[1][3] => _,
                    inout("v24") acc[2][0] => _, inout("v25") acc[2][1] => _,
                    inout("v26") acc[2][2] => _, inout("v27") acc[2][3] => _,
                    inout("v28") acc[3][0] => _, inout("v29") acc[3][1] => _,
                    inout("v30") acc[3][2] => _, inout("v31") acc[3][3] => _,
                    options(nostack),
                );
            }
            _ => {
                let sc = load_scale(scale);
                for (i, acc) in acc.iter().enumerate().take(mr) {
                    store_row(acc, nc, &sc, mode, c, ldc, i);
                }
            }
        }
    }
}
