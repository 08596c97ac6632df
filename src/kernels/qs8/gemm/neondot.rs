//! `gemm_qs8_4x16c4_neondot`: 4 rows x 16 channels with the Armv8.2 dot product (`SDOT`,
//! Cortex-A55/A76/A78 and later). The c4 weight group is exactly `SDOT`'s operand: one vector
//! holds 4 channels x 4 k, and `SDOT v.4s, w.16b, a.4b[lane]` adds `sum_k w[ch][k] * a[k]`
//! into each channel lane. A tile's first block loads each row's activations 16 bytes (four
//! c4 groups, SDOT lanes 0..3) at a time, flips them (below) and also stores them to a
//! per-thread packing, the four rows' 16 bytes one after the other; every later block of
//! the tile loads a step's activations from there with one 64-byte `LD1`. Each group's 64
//! weight bytes come in one four-register `LD1`, so a step is 1 load of A, 4 of B and 64
//! `SDOT`s for 1024 MACs, with the loop's 2 once per two steps (14.6 MACs per instruction;
//! 13.1 with the rows loaded and flipped per block); a K that is not a multiple of 16 ends
//! with a chunk of 1-3 groups.
//!
//! `SDOT` is signed x signed while A is u8, so A is flipped to i8 with `EOR 0x80` (`a - 128`)
//! and `128 * sum_k w[n, k]` (from the packed block's sums) starts the accumulators with the
//! bias. Everything is exact in i32.
//!
//! All the full tiles (4 rows) of a call with u8 output run in one assembly loop
//! (`full_tiles`, called by the driver shared with `neonmull`, [`drive`]): per tile its full
//! blocks of 16 channels, then the last `n % 16` channels stored in pieces of 8/4/2/1
//! bytes. The accumulators (pinned to `v16`-`v31`)
//! start from `bias + 128 * sum` computed once per call for every block, the zero point
//! and clamp bounds stay in registers, and a block costs its dot-product loop, 4 loads of
//! the start, one of the multipliers and 4 requantizing stores of 24 instructions (a tile's
//! set-up in Rust took about 60 more, a block's about 40). The last partial tile runs the
//! same loops block by block with the shared intrinsics epilogue, a lone row (squeeze-excite
//! FCs) a one-row loop; so do f32 outputs. Written with intrinsics, LLVM split the weight
//! loads into pairs and spilled the epilogue's constants per row (89 instructions per step,
//! ~34 per stored row; now 71 and 24); `vdotq_laneq_s32` is not stable in Rust 1.85 either.

use super::neon::{load_bias, load_scale, store_row};
use super::neon_tiles::{drive, AsmTiles, TileArgs, MAX_MR};
use super::{EpiMode, NR};
use std::arch::aarch64::*;
use std::arch::asm;

/// Rows per tile.
const MR: usize = 4;

/// The 16 `SDOT`s of one c4 group (weights in `v4`-`v7`) for lane `$l` of the four rows'
/// activations (`v0`-`v3`), into the accumulators `v16`-`v31` (row-major, 4 per row).
macro_rules! sdot_group {
    ($l:literal) => {
        concat!(
            sdot_row!($l; 0; 16, 17, 18, 19),
            sdot_row!($l; 1; 20, 21, 22, 23),
            sdot_row!($l; 2; 24, 25, 26, 27),
            sdot_row!($l; 3; 28, 29, 30, 31),
        )
    };
}

/// The 4 `SDOT`s of one c4 group (weights in `v4`-`v7`) for lane `$l` of one row's
/// activations (`v$x`), into that row's accumulators `v$a`-`v$d`.
#[rustfmt::skip]
macro_rules! sdot_row {
    ($l:literal; $x:literal; $a:literal, $b:literal, $c:literal, $d:literal) => {
        concat!(
            "sdot v", $a, ".4s, v4.16b, v", $x, ".4b[", $l, "]\n",
            "sdot v", $b, ".4s, v5.16b, v", $x, ".4b[", $l, "]\n",
            "sdot v", $c, ".4s, v6.16b, v", $x, ".4b[", $l, "]\n",
            "sdot v", $d, ".4s, v7.16b, v", $x, ".4b[", $l, "]\n",
        )
    };
}

/// A block's dot products, `{steps}` steps of four c4 groups and a last chunk of `{rem}` (0
/// to 3) groups, weights from `{w}` (advanced past the groups, not past the sums) in
/// `v4`-`v7`, activations in `v0`-`v3`, `{cnt}` scratch. `(pack)`, a tile's first block:
/// the rows at `{p0}`-`{p3}` (advanced) are loaded and flipped (`v8` = 0x80) and also
/// stored at `{pa}` (advanced), 64 bytes per step, the four rows' next 16 bytes one after
/// the other, so that `(packed)`, every later block of the tile, loads a step's
/// activations with one `LD1` from `{pa}` instead of four loads and four `EOR`s.
macro_rules! dot_loops {
    (pack) => {
        concat!(
            "mov {cnt}, {steps}\n",
            "cbz {cnt}, 3f\n",
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
            "st1 {{v0.16b, v1.16b, v2.16b, v3.16b}}, [{pa}], #64\n",
            dot_step!(),
            "subs {cnt}, {cnt}, #1\n",
            "b.ne 2b\n",
            // the last 1-3 groups into lanes 0.. (4, 8 or 8 + 4 bytes of each row)
            "3:\n",
            "cbz {rem}, 5f\n",
            "cmp {rem}, #2\n",
            "b.hs 7f\n",
            "ldr s0, [{p0}]\n",
            "ldr s1, [{p1}]\n",
            "ldr s2, [{p2}]\n",
            "ldr s3, [{p3}]\n",
            "b 8f\n",
            "7:\n",
            "ldr d0, [{p0}], #8\n",
            "ldr d1, [{p1}], #8\n",
            "ldr d2, [{p2}], #8\n",
            "ldr d3, [{p3}], #8\n",
            "b.eq 8f\n",
            "ld1 {{v0.s}}[2], [{p0}]\n",
            "ld1 {{v1.s}}[2], [{p1}]\n",
            "ld1 {{v2.s}}[2], [{p2}]\n",
            "ld1 {{v3.s}}[2], [{p3}]\n",
            "8:\n",
            "eor v0.16b, v0.16b, v8.16b\n",
            "eor v1.16b, v1.16b, v8.16b\n",
            "eor v2.16b, v2.16b, v8.16b\n",
            "eor v3.16b, v3.16b, v8.16b\n",
            "st1 {{v0.16b, v1.16b, v2.16b, v3.16b}}, [{pa}]\n",
            dot_rem!(),
            "5:\n",
        )
    };
    // (two steps per loop iteration, then an odd one: the loop's `SUBS`/`B.NE` were 2 of a
    // step's 71 instructions)
    (packed) => {
        concat!(
            "lsr {cnt}, {steps}, #1\n",
            "cbz {cnt}, 4f\n",
            "2:\n",
            dot_loops!(@packed_step),
            dot_loops!(@packed_step),
            "subs {cnt}, {cnt}, #1\n",
            "b.ne 2b\n",
            "4:\n",
            "tbz {steps}, #0, 3f\n",
            dot_loops!(@packed_step),
            "3:\n",
            "cbz {rem}, 5f\n",
            "ld1 {{v0.16b, v1.16b, v2.16b, v3.16b}}, [{pa}]\n",
            dot_rem!(),
            "5:\n",
        )
    };
    (@packed_step) => {
        concat!(
            "ld1 {{v0.16b, v1.16b, v2.16b, v3.16b}}, [{pa}], #64\n",
            "ld1 {{v4.16b, v5.16b, v6.16b, v7.16b}}, [{w}], #64\n",
            dot_step!(),
        )
    };
}

/// The dot products of a one-row tile (a lone row: a squeeze-excite FC, a pooled head):
/// row `{p0}` (advanced) against the block's groups into `v16`-`v19` only, 21 instructions
/// per step of four groups instead of the 4-row loops' 71 for a quarter of the work.
macro_rules! dot_row1 {
    () => {
        concat!(
            "mov {cnt}, {steps}\n",
            "cbz {cnt}, 3f\n",
            "2:\n",
            "ldr q0, [{p0}], #16\n",
            "ld1 {{v4.16b, v5.16b, v6.16b, v7.16b}}, [{w}], #64\n",
            "eor v0.16b, v0.16b, v8.16b\n",
            sdot_row!(0; 0; 16, 17, 18, 19),
            "ld1 {{v4.16b, v5.16b, v6.16b, v7.16b}}, [{w}], #64\n",
            sdot_row!(1; 0; 16, 17, 18, 19),
            "ld1 {{v4.16b, v5.16b, v6.16b, v7.16b}}, [{w}], #64\n",
            sdot_row!(2; 0; 16, 17, 18, 19),
            "ld1 {{v4.16b, v5.16b, v6.16b, v7.16b}}, [{w}], #64\n",
            sdot_row!(3; 0; 16, 17, 18, 19),
            "subs {cnt}, {cnt}, #1\n",
            "b.ne 2b\n",
            "3:\n",
            "cbz {rem}, 5f\n",
            "cmp {rem}, #2\n",
            "b.hs 7f\n",
            "ldr s0, [{p0}]\n",
            "b 8f\n",
            "7:\n",
            "ldr d0, [{p0}], #8\n",
            "b.eq 8f\n",
            "ld1 {{v0.s}}[2], [{p0}]\n",
            "8:\n",
            "eor v0.16b, v0.16b, v8.16b\n",
            "ld1 {{v4.16b, v5.16b, v6.16b, v7.16b}}, [{w}], #64\n",
            sdot_row!(0; 0; 16, 17, 18, 19),
            "cmp {rem}, #2\n",
            "b.lo 5f\n",
            "ld1 {{v4.16b, v5.16b, v6.16b, v7.16b}}, [{w}], #64\n",
            sdot_row!(1; 0; 16, 17, 18, 19),
            "b.eq 5f\n",
            "ld1 {{v4.16b, v5.16b, v6.16b, v7.16b}}, [{w}], #64\n",
            sdot_row!(2; 0; 16, 17, 18, 19),
            "5:\n",
        )
    };
}

/// The 64 `SDOT`s of a step (the first group's weights already in `v4`-`v7`).
macro_rules! dot_step {
    () => {
        concat!(
            sdot_group!(0),
            "ld1 {{v4.16b, v5.16b, v6.16b, v7.16b}}, [{w}], #64\n",
            sdot_group!(1),
            "ld1 {{v4.16b, v5.16b, v6.16b, v7.16b}}, [{w}], #64\n",
            sdot_group!(2),
            "ld1 {{v4.16b, v5.16b, v6.16b, v7.16b}}, [{w}], #64\n",
            sdot_group!(3),
        )
    };
}

/// The `SDOT`s of the last `{rem}` (1-3) groups, lanes 0.. of `v0`-`v3`; branches to `5f`.
macro_rules! dot_rem {
    () => {
        concat!(
            "ld1 {{v4.16b, v5.16b, v6.16b, v7.16b}}, [{w}], #64\n",
            sdot_group!(0),
            "cmp {rem}, #2\n",
            "b.lo 5f\n",
            "ld1 {{v4.16b, v5.16b, v6.16b, v7.16b}}, [{w}], #64\n",
            sdot_group!(1),
            "b.eq 5f\n",
            "ld1 {{v4.16b, v5.16b, v6.16b, v7.16b}}, [{w}], #64\n",
            sdot_group!(2),
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
    // bounds 0..=255: no clamp
    (free $a:literal, $b:literal, $c:literal, $d:literal) => {
        concat!(
            requant16_asm!($a, $b, $c, $d; 12, 13, 14, 15; 9; 0, 1),
            "str q0, [{cp}]\n",
            "add {cp}, {cp}, {ldc}\n",
        )
    };
}

/// One stored row of a full tile's last, partial block: as [`store_q16`] but only the
/// first `{nc}` (1-15) bytes, in pieces of 8, 4, 2 and 1 by the bits of `{nc}`
/// (`{pa}` is scratch).
macro_rules! store_part {
    ($a:literal, $b:literal, $c:literal, $d:literal) => {
        concat!(
            requant16_asm!($a, $b, $c, $d; 12, 13, 14, 15; 9, 10, 11; 0, 1),
            "mov {pa}, {cp}\n",
            "tbz {nc}, #3, 1f\n",
            "str d0, [{pa}], #8\n",
            "ext v0.16b, v0.16b, v0.16b, #8\n",
            "1:\n",
            "tbz {nc}, #2, 1f\n",
            "str s0, [{pa}], #4\n",
            "ext v0.16b, v0.16b, v0.16b, #4\n",
            "1:\n",
            "tbz {nc}, #1, 1f\n",
            "str h0, [{pa}], #2\n",
            "ext v0.16b, v0.16b, v0.16b, #2\n",
            "1:\n",
            "tbz {nc}, #0, 1f\n",
            "str b0, [{pa}]\n",
            "1:\n",
            "add {cp}, {cp}, {ldc}\n",
        )
    };
}

/// The accumulators' start for all four rows: the block's 16 values at `{st}` (advanced).
macro_rules! load_start {
    () => {
        concat!(
            "ld1 {{v16.4s, v17.4s, v18.4s, v19.4s}}, [{st}]\n",
            "ld1 {{v20.4s, v21.4s, v22.4s, v23.4s}}, [{st}]\n",
            "ld1 {{v24.4s, v25.4s, v26.4s, v27.4s}}, [{st}]\n",
            "ld1 {{v28.4s, v29.4s, v30.4s, v31.4s}}, [{st}], #64\n",
        )
    };
}

/// This kernel's side of [`drive`].
struct Dot;

impl AsmTiles for Dot {
    const MR: usize = MR;
    const START: usize = NR;

    /// 64 bytes per step of four c4 groups and per last chunk.
    fn pack_len(k4: usize) -> usize {
        k4.div_ceil(4) * 64
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

    /// `tiles` full tiles (4 rows of A each, `lda` apart, from `a`) with u8 output (zero point
    /// and bounds): per tile its `full` blocks in one loop (the first packs the rows into
    /// `pack`), then the last `nc` (0-15) channels; rows of C from `c`, `ldc` apart. The tile
    /// loop is in the assembly too: in Rust, with every register taken by the loops, the set-up
    /// of a tile cost about 60 instructions (now 11), and a partial block's intrinsics
    /// epilogue spilled.
    #[target_feature(enable = "dotprod")]
    unsafe fn full_tiles(
        tiles: usize,
        k4: usize,
        a: *const u8,
        lda: usize,
        args: &TileArgs,
        nc: usize,
        pack: *mut u8,
        [zp, lo, hi]: [i32; 3],
        c: *mut u8,
        ldc: usize,
    ) {
        let (steps, rem) = (k4 / 4, k4 % 4);
        // zero point in bits 0-15 (i16 lanes), bounds in bits 16-23 and 24-31, bit 32 set when
        // the bounds clamp
        let clamp = (lo, hi) != (0, 255);
        let quant = (zp as u16 as u64)
            | (lo as u8 as u64) << 16
            | (hi as u8 as u64) << 24
            | (clamp as u64) << 32;
        // SAFETY: per tile, reads 4 * k4 bytes of each row, then per block the packing, the
        // block's weights, 16 starts and multipliers (padded to whole blocks); writes the
        // packing (`pack_len(k4)` bytes) and, per block, 16 bytes (nc for the last) of 4 rows of
        // C (the contract); only named registers.
        asm!(
            "movi v8.16b, #0x80",
            "dup v9.8h, {q:w}",
            "lsr {cnt}, {q}, #16",
            "dup v10.16b, {cnt:w}",
            "lsr {cnt}, {q}, #24",
            "dup v11.16b, {cnt:w}",
            "10:",
            "ldp {w}, {st}, [{args}]",
            "ldp {sc}, {nb}, [{args}, #16]",
            "mov {p0}, {a}",
            "add {p1}, {a}, {lda}",
            "add {p2}, {p1}, {lda}",
            "add {p3}, {p2}, {lda}",
            "mov {cb}, {c}",
            "mov {pa}, {pk}",
            load_start!(),
            dot_loops!(pack),
            "b 9f",
            "6:",
            "mov {pa}, {pk}",
            load_start!(),
            dot_loops!(packed),
            "9:",
            // past the block's sums to the next block's groups
            "add {w}, {w}, #64",
            "ld1 {{v12.4s, v13.4s, v14.4s, v15.4s}}, [{sc}], #64",
            "mov {cp}, {cb}",
            // bit 32 of {q}: the bounds clamp (else they are 0..=255)
            "tbz {q}, #32, 13f",
            store_q16!(16, 17, 18, 19),
            store_q16!(20, 21, 22, 23),
            store_q16!(24, 25, 26, 27),
            store_q16!(28, 29, 30, 31),
            "b 14f",
            "13:",
            store_q16!(free 16, 17, 18, 19),
            store_q16!(free 20, 21, 22, 23),
            store_q16!(free 24, 25, 26, 27),
            store_q16!(free 28, 29, 30, 31),
            "14:",
            "add {cb}, {cb}, #16",
            "subs {nb}, {nb}, #1",
            "b.ne 6b",
            // the last nc channels
            "cbz {nc}, 12f",
            "mov {pa}, {pk}",
            load_start!(),
            dot_loops!(packed),
            "ld1 {{v12.4s, v13.4s, v14.4s, v15.4s}}, [{sc}]",
            "mov {cp}, {cb}",
            store_part!(16, 17, 18, 19),
            store_part!(20, 21, 22, 23),
            store_part!(24, 25, 26, 27),
            store_part!(28, 29, 30, 31),
            "12:",
            "add {a}, {a}, {lda}, lsl #2",
            "add {c}, {c}, {ldc}, lsl #2",
            "subs {tiles}, {tiles}, #1",
            "b.ne 10b",
            q = in(reg) quant,
            args = in(reg) args as *const TileArgs,
            lda = in(reg) lda,
            ldc = in(reg) ldc,
            nc = in(reg) nc,
            pk = in(reg) pack,
            steps = in(reg) steps,
            rem = in(reg) rem,
            tiles = inout(reg) tiles => _,
            a = inout(reg) a => _,
            c = inout(reg) c => _,
            p0 = out(reg) _,
            p1 = out(reg) _,
            p2 = out(reg) _,
            p3 = out(reg) _,
            pa = out(reg) _,
            w = out(reg) _,
            st = out(reg) _,
            sc = out(reg) _,
            nb = out(reg) _,
            cb = out(reg) _,
            cp = out(reg) _,
            cnt = out(reg) _,
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
    /// shared intrinsics epilogue: from the tile's packing when an earlier block `packed` it,
    /// else from `rows`, packing them.
    #[target_feature(enable = "dotprod")]
    unsafe fn any_block(
        mr: usize,
        n: usize,
        k4: usize,
        rows: [*const u8; MAX_MR],
        pack: *mut u8,
        packed: bool,
        blk: usize,
        b: *const i8,
        start: *const i32,
        scale: *const f32,
        mode: EpiMode,
        c: *mut u8,
        ldc: usize,
    ) {
        let nc = NR.min(n - blk * NR);
        // the starts are laid out per block like the bias
        let (b, start, scale, c) = super::block_args(blk, k4, b, start, scale, mode, c);
        let (steps, rem) = (k4 / 4, k4 % 4);
        let mut acc = [[vdupq_n_s32(0); 4]; MR];
        macro_rules! block {
            ($how:tt $($rows:tt)*) => {
                // SAFETY: reads 4 * k4 bytes of each row or the tile's packing, and k4 groups of
                // 64 weight bytes (the contract); writes the packing when packing, and only the
                // named registers.
                asm!(
                    "movi v8.16b, #0x80",
                    "mov {st}, {start}",
                    load_start!(),
                    dot_loops!($how),
                    start = in(reg) start,
                    steps = in(reg) steps,
                    rem = in(reg) rem,
                    st = out(reg) _,
                    cnt = out(reg) _,
                    pa = inout(reg) pack => _,
                    w = inout(reg) b => _,
                    $($rows)*
                    out("v0") _, out("v1") _, out("v2") _, out("v3") _,
                    out("v4") _, out("v5") _, out("v6") _, out("v7") _, out("v8") _,
                    out("v16") acc[0][0], out("v17") acc[0][1], out("v18") acc[0][2],
                    out("v19") acc[0][3], out("v20") acc[1][0], out("v21") acc[1][1],
                    out("v22") acc[1][2], out("v23") acc[1][3], out("v24") acc[2][0],
                    out("v25") acc[2][1], out("v26") acc[2][2], out("v27") acc[2][3],
                    out("v28") acc[3][0], out("v29") acc[3][1], out("v30") acc[3][2],
                    out("v31") acc[3][3],
                    options(nostack),
                )
            };
        }
        if mr == 1 {
            // SAFETY: reads 4 * k4 bytes of the row and k4 groups of 64 weight bytes (the
            // contract); writes only the named registers.
            asm!(
                "movi v8.16b, #0x80",
                "ld1 {{v16.4s, v17.4s, v18.4s, v19.4s}}, [{start}]",
                dot_row1!(),
                start = in(reg) start,
                steps = in(reg) steps,
                rem = in(reg) rem,
                cnt = out(reg) _,
                p0 = inout(reg) rows[0] => _,
                w = inout(reg) b => _,
                out("v0") _, out("v4") _, out("v5") _, out("v6") _, out("v7") _, out("v8") _,
                out("v16") acc[0][0], out("v17") acc[0][1], out("v18") acc[0][2],
                out("v19") acc[0][3],
                options(nostack, readonly),
            );
        } else if packed {
            block!(packed);
        } else {
            block!(pack
                p0 = inout(reg) rows[0] => _,
                p1 = inout(reg) rows[1] => _,
                p2 = inout(reg) rows[2] => _,
                p3 = inout(reg) rows[3] => _,
            );
        }
        let sc = load_scale(scale);
        for (i, acc) in acc.iter().enumerate().take(mr) {
            store_row(acc, nc, &sc, mode, c, ldc, i);
        }
    }
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
    drive::<Dot>(m, n, k4, a, lda, b, bias, scale, mode, c, ldc)
}
