//! `gemm_qs8_4x16c4_neondot`: 4 rows x 16 channels with the Armv8.2 dot product (`SDOT`,
//! Cortex-A55/A76/A78 and later). The c4 weight group is exactly `SDOT`'s operand: one vector
//! holds 4 channels x 4 k, and `SDOT v.4s, w.16b, a.4b[lane]` adds `sum_k w[ch][k] * a[k]`
//! into each channel lane. Each row's activations are loaded 16 bytes (four c4 groups, SDOT
//! lanes 0..3) at a time and each group's 64 weight bytes in one four-register `LD1`, so a
//! step is 4 loads and 4 `EOR`s of A, 4 loads of B, 64 `SDOT`s and the loop's 2 for 1024
//! MACs (13.1 MACs per instruction); a K that is not a multiple of 16 ends with one step of
//! two groups (8 bytes of each row) and/or one of a single group (4 bytes).
//!
//! `SDOT` is signed x signed while A is u8, so A is flipped to i8 with `EOR 0x80` (`a - 128`)
//! and `128 * sum_k w[n, k]` (from the packed block's sums) starts the accumulators with the
//! bias. Everything is exact in i32.
//!
//! Full tiles with u8 output (4 rows, 16 channels) run in one assembly loop over all the
//! row's blocks ([`full_blocks`]): the accumulators (pinned to `v16`-`v31`) start from
//! `bias + 128 * sum` computed once per call for every block, the zero point and clamp
//! bounds stay in registers across blocks, and a block costs its dot-product loop, 4 loads
//! of the start, one of the multipliers and 4 requantizing stores of 24 instructions (the
//! per-block set-up in Rust took about 40 more). Partial tiles and f32 outputs run the same
//! loop per block and the shared intrinsics epilogue. Written with intrinsics, LLVM split
//! the weight loads into pairs and spilled the epilogue's constants per row (89
//! instructions per step, ~34 per stored row; now 78 and 24); `vdotq_laneq_s32` is not
//! stable in Rust 1.85 either.

use super::neon::{load_bias, load_scale, store_row};
use super::{EpiMode, PackedB, NR};
use std::arch::aarch64::*;
use std::arch::asm;

/// Rows per tile.
const MR: usize = 4;

/// Blocks whose start values one call keeps on the stack at a time (512 channels, 2 KB).
const CHUNK: usize = 32;

/// The 16 `SDOT`s of one c4 group (weights in `v4`-`v7`) for lane `$l` of the four rows'
/// activations (`v0`-`v3`), into the accumulators `v16`-`v31` (row-major, 4 per row).
macro_rules! sdot_group {
    ($l:literal) => {
        concat!(
            "sdot v16.4s, v4.16b, v0.4b[",
            $l,
            "]\n",
            "sdot v17.4s, v5.16b, v0.4b[",
            $l,
            "]\n",
            "sdot v18.4s, v6.16b, v0.4b[",
            $l,
            "]\n",
            "sdot v19.4s, v7.16b, v0.4b[",
            $l,
            "]\n",
            "sdot v20.4s, v4.16b, v1.4b[",
            $l,
            "]\n",
            "sdot v21.4s, v5.16b, v1.4b[",
            $l,
            "]\n",
            "sdot v22.4s, v6.16b, v1.4b[",
            $l,
            "]\n",
            "sdot v23.4s, v7.16b, v1.4b[",
            $l,
            "]\n",
            "sdot v24.4s, v4.16b, v2.4b[",
            $l,
            "]\n",
            "sdot v25.4s, v5.16b, v2.4b[",
            $l,
            "]\n",
            "sdot v26.4s, v6.16b, v2.4b[",
            $l,
            "]\n",
            "sdot v27.4s, v7.16b, v2.4b[",
            $l,
            "]\n",
            "sdot v28.4s, v4.16b, v3.4b[",
            $l,
            "]\n",
            "sdot v29.4s, v5.16b, v3.4b[",
            $l,
            "]\n",
            "sdot v30.4s, v6.16b, v3.4b[",
            $l,
            "]\n",
            "sdot v31.4s, v7.16b, v3.4b[",
            $l,
            "]\n",
        )
    };
}

/// A block's dot products: the rows at `{p0}`-`{p3}` (advanced) against the c4 groups at
/// `{w}` (advanced past them, not past the sums), `{steps}` steps of four groups, then
/// `{pair}` (0 or 1) step of two and `{single}` (0 or 1) of one. Activations in `v0`-`v3`
/// (flipped with `v8` = 0x80), weights in `v4`-`v7`, `{cnt}` is scratch.
macro_rules! dot_loops {
    () => {
        concat!(
            "mov {cnt}, {steps}\n",
            "cbz {cnt}, 3f\n",
            // four c4 groups: 16 bytes of each row, flipped to i8
            "2:\n",
            "ldr q0, [{p0}], #16\n",
            "ldr q1, [{p1}], #16\n",
            "ldr q2, [{p2}], #16\n",
            "ldr q3, [{p3}], #16\n",
            "ld1 {{v4.16b, v5.16b, v6.16b, v7.16b}}, [{w}], #64\n",
            "eor v0.16b, v0.16b, v8.16b\n",
            "eor v1.16b, v1.16b, v8.16b\n",
            "eor v2.16b, v2.16b, v8.16b\n",
            "eor v3.16b, v3.16b, v8.16b\n",
            sdot_group!(0),
            "ld1 {{v4.16b, v5.16b, v6.16b, v7.16b}}, [{w}], #64\n",
            sdot_group!(1),
            "ld1 {{v4.16b, v5.16b, v6.16b, v7.16b}}, [{w}], #64\n",
            sdot_group!(2),
            "ld1 {{v4.16b, v5.16b, v6.16b, v7.16b}}, [{w}], #64\n",
            sdot_group!(3),
            "subs {cnt}, {cnt}, #1\n",
            "b.ne 2b\n",
            // two c4 groups: 8 bytes of each row
            "3:\n",
            "cbz {pair}, 4f\n",
            "ldr d0, [{p0}], #8\n",
            "ldr d1, [{p1}], #8\n",
            "ldr d2, [{p2}], #8\n",
            "ldr d3, [{p3}], #8\n",
            "ld1 {{v4.16b, v5.16b, v6.16b, v7.16b}}, [{w}], #64\n",
            "eor v0.8b, v0.8b, v8.8b\n",
            "eor v1.8b, v1.8b, v8.8b\n",
            "eor v2.8b, v2.8b, v8.8b\n",
            "eor v3.8b, v3.8b, v8.8b\n",
            sdot_group!(0),
            "ld1 {{v4.16b, v5.16b, v6.16b, v7.16b}}, [{w}], #64\n",
            sdot_group!(1),
            // one c4 group: 4 bytes of each row
            "4:\n",
            "cbz {single}, 5f\n",
            "ldr s0, [{p0}], #4\n",
            "ldr s1, [{p1}], #4\n",
            "ldr s2, [{p2}], #4\n",
            "ldr s3, [{p3}], #4\n",
            "ld1 {{v4.16b, v5.16b, v6.16b, v7.16b}}, [{w}], #64\n",
            "eor v0.8b, v0.8b, v8.8b\n",
            "eor v1.8b, v1.8b, v8.8b\n",
            "eor v2.8b, v2.8b, v8.8b\n",
            "eor v3.8b, v3.8b, v8.8b\n",
            sdot_group!(0),
            "5:\n",
        )
    };
}

/// One stored row of a full tile: accumulators `$a`-`$d` requantized (`requant16_asm!`:
/// multipliers `v12`-`v15`, zero point `v9`, bounds `v10`/`v11`) as 16 bytes at `{cp}`,
/// then `{cp} += {ldc}`.
macro_rules! store_q16 {
    ($a:literal, $b:literal, $c:literal, $d:literal) => {
        concat!(
            requant16_asm!($a, $b, $c, $d; 12, 13, 14, 15; 9, 10, 11; 0, 1),
            "str q0, [{cp}]\n",
            "add {cp}, {cp}, {ldc}\n",
        )
    };
}

/// The loop counts of a K of `k4` groups: steps of four, then 0/1 step of two and of one.
fn loop_counts(k4: usize) -> (usize, usize, usize) {
    (k4 / 4, (k4 % 4) / 2, k4 % 2)
}

/// See the module doc of `gemm` for the contract.
///
/// # Safety
/// Pointers as in the contract; the host must have the dot product extension (`dotprod`).
#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "dotprod")]
pub unsafe fn gemm_qs8_4x16c4_neondot(
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
    let blocks = n.div_ceil(NR);
    let block_len = PackedB::block_len(k4);
    // Full tiles of u8 output, block chunk by block chunk: the start values of a chunk's
    // blocks once, then each tile's blocks in one assembly loop.
    let (full_tiles, full, quant) = match mode {
        EpiMode::Quant { zp, lo, hi } => (m / MR, n / NR, [zp, lo, hi]),
        EpiMode::Float => (0, 0, [0; 3]),
    };
    if full_tiles > 0 {
        let mut start = [0i32; CHUNK * NR];
        for b0 in (0..full).step_by(CHUNK) {
            let nb = CHUNK.min(full - b0);
            for j in 0..nb {
                let blk = b0 + j;
                let sums = b.add(blk * block_len + k4 * NR * 4) as *const i32;
                block_start(bias.add(blk * NR), sums, start.as_mut_ptr().add(j * NR));
            }
            for t in 0..full_tiles {
                full_blocks(
                    nb,
                    k4,
                    a.add(t * MR * lda),
                    lda,
                    b.add(b0 * block_len),
                    start.as_ptr(),
                    scale.add(b0 * NR),
                    quant,
                    c.add(t * MR * ldc + b0 * NR),
                    ldc,
                );
            }
        }
    }
    // Everything else block by block: the last partial block of the full tiles, and every
    // block of the last partial tile (of every tile for f32 outputs).
    let c_row = ldc * mode.elem_bytes();
    let mut t = 0;
    while t < m {
        let mr = MR.min(m - t);
        let first = if mr == MR { full } else { 0 };
        for blk in first..blocks {
            any_block(
                mr,
                n,
                k4,
                a.add(t * lda),
                lda,
                blk,
                b,
                bias,
                scale,
                mode,
                c.add(t * c_row),
                ldc,
            );
        }
        t += mr;
    }
}

/// `bias + 128 * sum_k w` of one block (the accumulators' start for every row) at `out`.
#[inline(always)]
unsafe fn block_start(bias: *const i32, sums: *const i32, out: *mut i32) {
    let bias = load_bias(bias);
    for (j, bj) in bias.iter().enumerate() {
        let s = vshlq_n_s32::<7>(vld1q_s32(sums.add(4 * j)));
        vst1q_s32(out.add(4 * j), vaddq_s32(*bj, s));
    }
}

/// `nb` full blocks of one full tile (4 rows of `a`, `lda` apart) with u8 output (zero
/// point and bounds): weights from `b` (the first block's packing), starts from `start` (16
/// per block), multipliers from `scale`, rows of C from `c`.
#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "dotprod")]
unsafe fn full_blocks(
    nb: usize,
    k4: usize,
    a: *const u8,
    lda: usize,
    b: *const i8,
    start: *const i32,
    scale: *const f32,
    [zp, lo, hi]: [i32; 3],
    c: *mut u8,
    ldc: usize,
) {
    let (steps, pair, single) = loop_counts(k4);
    // SAFETY: per block, reads 4 * k4 bytes of each row, the block's packing and 16 starts
    // and multipliers; writes 16 bytes of 4 rows of C (the contract); only named registers.
    asm!(
        "movi v8.16b, #0x80",
        "dup v9.8h, {zp:w}",
        "dup v10.16b, {lo:w}",
        "dup v11.16b, {hi:w}",
        "6:",
        "mov {p0}, {r0}",
        "add {p1}, {r0}, {lda}",
        "add {p2}, {p1}, {lda}",
        "add {p3}, {p2}, {lda}",
        "ld1 {{v16.4s, v17.4s, v18.4s, v19.4s}}, [{st}]",
        "ld1 {{v20.4s, v21.4s, v22.4s, v23.4s}}, [{st}]",
        "ld1 {{v24.4s, v25.4s, v26.4s, v27.4s}}, [{st}]",
        "ld1 {{v28.4s, v29.4s, v30.4s, v31.4s}}, [{st}], #64",
        dot_loops!(),
        // past the block's sums to the next block's groups
        "add {w}, {w}, #64",
        "ld1 {{v12.4s, v13.4s, v14.4s, v15.4s}}, [{sc}], #64",
        "mov {cp}, {c}",
        store_q16!(16, 17, 18, 19),
        store_q16!(20, 21, 22, 23),
        store_q16!(24, 25, 26, 27),
        store_q16!(28, 29, 30, 31),
        "add {c}, {c}, #16",
        "subs {nb}, {nb}, #1",
        "b.ne 6b",
        zp = in(reg) zp,
        lo = in(reg) lo,
        hi = in(reg) hi,
        r0 = in(reg) a,
        lda = in(reg) lda,
        steps = in(reg) steps,
        pair = in(reg) pair,
        single = in(reg) single,
        ldc = in(reg) ldc,
        nb = inout(reg) nb => _,
        w = inout(reg) b => _,
        st = inout(reg) start => _,
        sc = inout(reg) scale => _,
        c = inout(reg) c => _,
        p0 = out(reg) _,
        p1 = out(reg) _,
        p2 = out(reg) _,
        p3 = out(reg) _,
        cnt = out(reg) _,
        cp = out(reg) _,
        out("v0") _, out("v1") _, out("v2") _, out("v3") _,
        out("v4") _, out("v5") _, out("v6") _, out("v7") _,
        out("v8") _, out("v9") _, out("v10") _, out("v11") _,
        out("v12") _, out("v13") _, out("v14") _, out("v15") _,
        out("v16") _, out("v17") _, out("v18") _, out("v19") _,
        out("v20") _, out("v21") _, out("v22") _, out("v23") _,
        out("v24") _, out("v25") _, out("v26") _, out("v27") _,
        out("v28") _, out("v29") _, out("v30") _, out("v31") _,
        options(nostack),
    );
}

/// Block `blk` of a tile of `mr` rows (any output form, a partial block too), through the
/// shared intrinsics epilogue.
#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "dotprod")]
unsafe fn any_block(
    mr: usize,
    n: usize,
    k4: usize,
    a: *const u8,
    lda: usize,
    blk: usize,
    b: *const i8,
    bias: *const i32,
    scale: *const f32,
    mode: EpiMode,
    c: *mut u8,
    ldc: usize,
) {
    // Rows past mr re-read row 0 (always readable); their results are not stored.
    let rows: [*const u8; MR] = std::array::from_fn(|i| a.add(if i < mr { i * lda } else { 0 }));
    let nc = NR.min(n - blk * NR);
    let (b, bias, scale, c) = super::block_args(blk, k4, b, bias, scale, mode, c);
    let mut start = [0i32; NR];
    block_start(bias, b.add(k4 * NR * 4) as *const i32, start.as_mut_ptr());
    let (steps, pair, single) = loop_counts(k4);
    let mut acc = [[vdupq_n_s32(0); 4]; MR];
    // SAFETY: reads 4 * k4 bytes of each row and k4 groups of 64 weight bytes (the
    // contract); writes only the named registers.
    asm!(
        "ld1 {{v16.4s, v17.4s, v18.4s, v19.4s}}, [{start}]",
        "ld1 {{v20.4s, v21.4s, v22.4s, v23.4s}}, [{start}]",
        "ld1 {{v24.4s, v25.4s, v26.4s, v27.4s}}, [{start}]",
        "ld1 {{v28.4s, v29.4s, v30.4s, v31.4s}}, [{start}]",
        "movi v8.16b, #0x80",
        dot_loops!(),
        start = in(reg) start.as_ptr(),
        steps = in(reg) steps,
        pair = in(reg) pair,
        single = in(reg) single,
        cnt = out(reg) _,
        p0 = inout(reg) rows[0] => _,
        p1 = inout(reg) rows[1] => _,
        p2 = inout(reg) rows[2] => _,
        p3 = inout(reg) rows[3] => _,
        w = inout(reg) b => _,
        out("v0") _, out("v1") _, out("v2") _, out("v3") _,
        out("v4") _, out("v5") _, out("v6") _, out("v7") _, out("v8") _,
        out("v16") acc[0][0], out("v17") acc[0][1], out("v18") acc[0][2], out("v19") acc[0][3],
        out("v20") acc[1][0], out("v21") acc[1][1], out("v22") acc[1][2], out("v23") acc[1][3],
        out("v24") acc[2][0], out("v25") acc[2][1], out("v26") acc[2][2], out("v27") acc[2][3],
        out("v28") acc[3][0], out("v29") acc[3][1], out("v30") acc[3][2], out("v31") acc[3][3],
        options(nostack, readonly),
    );
    let sc = load_scale(scale);
    for (i, acc) in acc.iter().enumerate().take(mr) {
        store_row(acc, nc, &sc, mode, c, ldc, i);
    }
}
