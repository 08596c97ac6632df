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
//! A tile's first block also stores its flipped, repeated activations to a per-thread
//! packing, so every later block of the tile loads a step's four vectors with one `LD1`
//! (loading, flipping and repeating them per block cost 7 instructions more). The loops and
//! the requantizing store of a full tile (2 rows, 16 channels, u8 output) are inline
//! assembly with the 16 accumulators pinned to `v16`-`v31`: a step of two c4 groups is 52
//! instructions for 256 MACs, the loop's 2 shared by two steps (LLVM's intrinsics version
//! of the unpacked loop: 64, plus 16 to zero the accumulators and about 57 per stored row
//! against 28 here). All the full
//! tiles of a call with u8 output run in one assembly loop (`full_tiles`, called by the
//! driver shared with `neondot`, [`drive`]), each tile's full blocks and then its last
//! `n % 16` channels, from start values computed once per call; the last partial tile (a
//! lone row: a one-row loop) and f32 outputs run the same loops block by block with the
//! shared intrinsics epilogue.

use super::neon::{load_bias, load_scale, store_row};
use super::neon_tiles::{drive, AsmTiles, TileArgs, MAX_MR};
use super::{EpiMode, NR};
use std::arch::aarch64::*;
use std::arch::asm;

/// Rows per tile.
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

/// A block's products, `{steps}` steps of two c4 groups and `{rest}` (0 or 1) single group,
/// weights from `{w}` (advanced past the groups, not past the sums), into the accumulators
/// `v16`-`v31`; `{cnt}` is scratch. `(pack)`, a tile's first block: the rows at
/// `{p0}`/`{p1}` (advanced) are loaded, flipped (`v5` = 0x80) and each group repeated across
/// a vector, and these four vectors per step are also stored at `{pa}` (advanced), so that
/// `(packed)`, every later block of the tile, loads them with one `LD1` instead of two
/// loads, two `EOR`s and four `DUP`s.
macro_rules! mull_loops {
    (pack) => {
        concat!(
            "mov {cnt}, {steps}\n",
            "cbz {cnt}, 3f\n",
            "2:\n",
            "ldr d0, [{p0}], #8\n",
            "ldr d3, [{p1}], #8\n",
            "ld1 {{v8.16b, v9.16b, v10.16b, v11.16b}}, [{w}], #64\n",
            "ld1 {{v12.16b, v13.16b, v14.16b, v15.16b}}, [{w}], #64\n",
            "eor v0.8b, v0.8b, v5.8b\n",
            "eor v3.8b, v3.8b, v5.8b\n",
            "dup v1.4s, v0.s[0]\n",
            "dup v2.4s, v0.s[1]\n",
            "dup v4.4s, v3.s[1]\n",
            "dup v3.4s, v3.s[0]\n",
            "st1 {{v1.16b, v2.16b, v3.16b, v4.16b}}, [{pa}], #64\n",
            mull_step!(),
            "subs {cnt}, {cnt}, #1\n",
            "b.ne 2b\n",
            // an odd last group
            "3:\n",
            "cbz {rest}, 4f\n",
            "ldr s0, [{p0}]\n",
            "ldr s3, [{p1}]\n",
            "eor v0.8b, v0.8b, v5.8b\n",
            "eor v3.8b, v3.8b, v5.8b\n",
            "dup v1.4s, v0.s[0]\n",
            "dup v2.4s, v3.s[0]\n",
            "st1 {{v1.16b, v2.16b}}, [{pa}]\n",
            mull_rest!(),
            "4:\n",
        )
    };
    // (two steps per loop iteration, then an odd one: the loop's `SUBS`/`B.NE` were 2 of a
    // step's 53 instructions)
    (packed) => {
        concat!(
            "lsr {cnt}, {steps}, #1\n",
            "cbz {cnt}, 5f\n",
            "2:\n",
            mull_loops!(@packed_step),
            mull_loops!(@packed_step),
            "subs {cnt}, {cnt}, #1\n",
            "b.ne 2b\n",
            "5:\n",
            "tbz {steps}, #0, 3f\n",
            mull_loops!(@packed_step),
            "3:\n",
            "cbz {rest}, 4f\n",
            "ld1 {{v1.16b, v2.16b}}, [{pa}]\n",
            mull_rest!(),
            "4:\n",
        )
    };
    (@packed_step) => {
        concat!(
            "ld1 {{v1.16b, v2.16b, v3.16b, v4.16b}}, [{pa}], #64\n",
            "ld1 {{v8.16b, v9.16b, v10.16b, v11.16b}}, [{w}], #64\n",
            "ld1 {{v12.16b, v13.16b, v14.16b, v15.16b}}, [{w}], #64\n",
            mull_step!(),
        )
    };
}

/// Both rows' products of a step (row 0's groups in `v1`/`v2`, row 1's in `v3`/`v4`).
macro_rules! mull_step {
    () => {
        concat!(
            row_step!(1, 2, 16, 17, 18, 19, 20, 21, 22, 23),
            row_step!(3, 4, 24, 25, 26, 27, 28, 29, 30, 31),
        )
    };
}

/// Both rows' products of an odd last group (row 0's in `v1`, row 1's in `v2`).
macro_rules! mull_rest {
    () => {
        concat!(
            "ld1 {{v8.16b, v9.16b, v10.16b, v11.16b}}, [{w}], #64\n",
            row_group!(1, 16, 17, 18, 19, 20, 21, 22, 23),
            row_group!(2, 24, 25, 26, 27, 28, 29, 30, 31),
        )
    };
}

/// Load a block's start values (32 lanes at `{st}`, advanced past them) into both rows'
/// accumulators.
macro_rules! load_start {
    () => {
        concat!(
            "ld1 {{v16.4s, v17.4s, v18.4s, v19.4s}}, [{st}], #64\n",
            "ld1 {{v20.4s, v21.4s, v22.4s, v23.4s}}, [{st}]\n",
            "sub {st}, {st}, #64\n",
            "ld1 {{v24.4s, v25.4s, v26.4s, v27.4s}}, [{st}], #64\n",
            "ld1 {{v28.4s, v29.4s, v30.4s, v31.4s}}, [{st}], #64\n",
        )
    };
}

/// One stored row of a full tile: fold the accumulator pairs `$a0`..`$a7` (`ADDP`), then
/// requantize (`requant16_asm!`: multipliers `v8`-`v11`, zero point `v12`, bounds
/// `v13`/`v14`) as 16 bytes at `{cp}`, then `{cp} += {ldc}`.
macro_rules! store_q16 {
    ($a0:literal, $a1:literal, $a2:literal, $a3:literal,
     $a4:literal, $a5:literal, $a6:literal, $a7:literal) => {
        concat!(
            fold_pairs!($a0, $a1, $a2, $a3, $a4, $a5, $a6, $a7),
            requant16_asm!(0, 1, 2, 3; 8, 9, 10, 11; 12, 13, 14; 4, 5),
            "str q4, [{cp}]\n",
            "add {cp}, {cp}, {ldc}\n",
        )
    };
    // bounds 0..=255: no clamp
    (free $a0:literal, $a1:literal, $a2:literal, $a3:literal,
     $a4:literal, $a5:literal, $a6:literal, $a7:literal) => {
        concat!(
            fold_pairs!($a0, $a1, $a2, $a3, $a4, $a5, $a6, $a7),
            requant16_asm!(0, 1, 2, 3; 8, 9, 10, 11; 12; 4, 5),
            "str q4, [{cp}]\n",
            "add {cp}, {cp}, {ldc}\n",
        )
    };
}

/// A row's accumulator pairs `$a0`..`$a7` folded (`ADDP`) into `v0`-`v3`.
macro_rules! fold_pairs {
    ($a0:literal, $a1:literal, $a2:literal, $a3:literal,
     $a4:literal, $a5:literal, $a6:literal, $a7:literal) => {
        concat!(
            "addp v0.4s, v",
            $a0,
            ".4s, v",
            $a1,
            ".4s\n",
            "addp v1.4s, v",
            $a2,
            ".4s, v",
            $a3,
            ".4s\n",
            "addp v2.4s, v",
            $a4,
            ".4s, v",
            $a5,
            ".4s\n",
            "addp v3.4s, v",
            $a6,
            ".4s, v",
            $a7,
            ".4s\n",
        )
    };
}

/// One stored row of a full tile's last, partial block: as [`store_q16`] but only the
/// first `{nc}` (1-15) bytes, in pieces of 8, 4, 2 and 1 by the bits of `{nc}`
/// (`{pa}` is scratch).
macro_rules! store_part {
    ($a0:literal, $a1:literal, $a2:literal, $a3:literal,
     $a4:literal, $a5:literal, $a6:literal, $a7:literal) => {
        concat!(
            fold_pairs!($a0, $a1, $a2, $a3, $a4, $a5, $a6, $a7),
            requant16_asm!(0, 1, 2, 3; 8, 9, 10, 11; 12, 13, 14; 4, 5),
            "mov {pa}, {cp}\n",
            "tbz {nc}, #3, 1f\n",
            "str d4, [{pa}], #8\n",
            "ext v4.16b, v4.16b, v4.16b, #8\n",
            "1:\n",
            "tbz {nc}, #2, 1f\n",
            "str s4, [{pa}], #4\n",
            "ext v4.16b, v4.16b, v4.16b, #4\n",
            "1:\n",
            "tbz {nc}, #1, 1f\n",
            "str h4, [{pa}], #2\n",
            "ext v4.16b, v4.16b, v4.16b, #2\n",
            "1:\n",
            "tbz {nc}, #0, 1f\n",
            "str b4, [{pa}]\n",
            "1:\n",
            "add {cp}, {cp}, {ldc}\n",
        )
    };
}

/// A lone row's products (a squeeze-excite FC, a pooled head): row `{p0}` (advanced)
/// against the block's groups into `v16`-`v23` only, 32 instructions per step of two groups
/// instead of the 2-row loops' 53 for half the work.
macro_rules! mull_row1 {
    () => {
        concat!(
            "mov {cnt}, {steps}\n",
            "cbz {cnt}, 3f\n",
            "2:\n",
            "ldr d0, [{p0}], #8\n",
            "ld1 {{v8.16b, v9.16b, v10.16b, v11.16b}}, [{w}], #64\n",
            "ld1 {{v12.16b, v13.16b, v14.16b, v15.16b}}, [{w}], #64\n",
            "eor v0.8b, v0.8b, v5.8b\n",
            "dup v1.4s, v0.s[0]\n",
            "dup v2.4s, v0.s[1]\n",
            row_step!(1, 2, 16, 17, 18, 19, 20, 21, 22, 23),
            "subs {cnt}, {cnt}, #1\n",
            "b.ne 2b\n",
            "3:\n",
            "cbz {rest}, 4f\n",
            "ldr s0, [{p0}]\n",
            "ld1 {{v8.16b, v9.16b, v10.16b, v11.16b}}, [{w}], #64\n",
            "eor v0.8b, v0.8b, v5.8b\n",
            "dup v1.4s, v0.s[0]\n",
            row_group!(1, 16, 17, 18, 19, 20, 21, 22, 23),
            "4:\n",
        )
    };
}

/// Lanes of start values per block: each channel's `bias + 128 * sum` in the first of its two
/// lanes (accumulator vector j / 2, lanes 2 * (j % 2) and + 1).
const START: usize = 2 * NR;

/// This kernel's side of [`drive`].
struct Mull;

impl AsmTiles for Mull {
    const MR: usize = MR;
    const START: usize = START;

    /// 64 bytes per step of two c4 groups, 32 for an odd last group.
    fn pack_len(k4: usize) -> usize {
        k4.div_ceil(2) * 64
    }

    /// The [`START`] start lanes of one block at `out`: channels 4j..4j+3 of `bias + 128 * sum`
    /// as `[s0, 0, s1, 0]`, `[s2, 0, s3, 0]`.
    #[inline(always)]
    unsafe fn block_start(bias: *const i32, sums: *const i32, out: *mut i32) {
        let (bias, zero) = (load_bias(bias), vdupq_n_s32(0));
        for (j, bj) in bias.iter().enumerate() {
            let s = vaddq_s32(*bj, vshlq_n_s32::<7>(vld1q_s32(sums.add(4 * j))));
            vst1q_s32(out.add(8 * j), vzip1q_s32(s, zero));
            vst1q_s32(out.add(8 * j + 4), vzip2q_s32(s, zero));
        }
    }

    /// `tiles` full tiles (2 rows of A each, `lda` apart, from `a`) with u8 output (zero point
    /// and bounds): per tile its `full` blocks in one loop (the first packs the rows into
    /// `pack`), then the last `nc` (0-15) channels; rows of C from `c`, `ldc` apart. The tile
    /// loop is in the assembly too: in Rust, with every register taken by the loops, a tile's
    /// set-up cost dozens of instructions and a partial block's intrinsics epilogue spilled.
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
        let (steps, rest) = (k4 / 2, k4 % 2);
        // the zero point in bits 0-15 (i16 lanes), bit 32 set when the bounds clamp
        let zp = (zp as u16 as u64) | (((lo, hi) != (0, 255)) as u64) << 32;
        // SAFETY: per tile, reads 4 * k4 bytes of each row, then per block the packing, the
        // block's weights, start lanes and 16 multipliers (padded to whole blocks); writes the
        // packing (pack_len(k4) bytes) and, per block, 16 bytes (nc for the last) of 2 rows of
        // C (the contract); only named registers.
        asm!(
            "10:",
            // the flip constant (the stores use v5 as scratch)
            "movi v5.8b, #0x80",
            "ldp {w}, {st}, [{args}]",
            "ldp {sc}, {nb}, [{args}, #16]",
            "mov {p0}, {a}",
            "add {p1}, {a}, {lda}",
            "mov {cb}, {c}",
            "mov {pa}, {pk}",
            load_start!(),
            mull_loops!(pack),
            "b 9f",
            "6:",
            "mov {pa}, {pk}",
            load_start!(),
            mull_loops!(packed),
            "9:",
            // past the block's sums to the next block's groups
            "add {w}, {w}, #64",
            "ld1 {{v8.4s, v9.4s, v10.4s, v11.4s}}, [{sc}], #64",
            "dup v12.8h, {zp:w}",
            "dup v13.16b, {lo:w}",
            "dup v14.16b, {hi:w}",
            "mov {cp}, {cb}",
            // bit 32 of {zp}: the bounds clamp (else they are 0..=255)
            "tbz {zp}, #32, 13f",
            store_q16!(16, 17, 18, 19, 20, 21, 22, 23),
            store_q16!(24, 25, 26, 27, 28, 29, 30, 31),
            "b 14f",
            "13:",
            store_q16!(free 16, 17, 18, 19, 20, 21, 22, 23),
            store_q16!(free 24, 25, 26, 27, 28, 29, 30, 31),
            "14:",
            "add {cb}, {cb}, #16",
            "subs {nb}, {nb}, #1",
            "b.ne 6b",
            // the last nc channels
            "cbz {nc}, 12f",
            "mov {pa}, {pk}",
            load_start!(),
            mull_loops!(packed),
            "ld1 {{v8.4s, v9.4s, v10.4s, v11.4s}}, [{sc}]",
            "dup v12.8h, {zp:w}",
            "dup v13.16b, {lo:w}",
            "dup v14.16b, {hi:w}",
            "mov {cp}, {cb}",
            store_part!(16, 17, 18, 19, 20, 21, 22, 23),
            store_part!(24, 25, 26, 27, 28, 29, 30, 31),
            "12:",
            "add {a}, {a}, {lda}, lsl #1",
            "add {c}, {c}, {ldc}, lsl #1",
            "subs {tiles}, {tiles}, #1",
            "b.ne 10b",
            zp = in(reg) zp,
            lo = in(reg) lo,
            hi = in(reg) hi,
            args = in(reg) args as *const TileArgs,
            lda = in(reg) lda,
            ldc = in(reg) ldc,
            nc = in(reg) nc,
            pk = in(reg) pack,
            steps = in(reg) steps,
            rest = in(reg) rest,
            tiles = inout(reg) tiles => _,
            a = inout(reg) a => _,
            c = inout(reg) c => _,
            p0 = out(reg) _,
            p1 = out(reg) _,
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
        let (b, _, scale, c) = super::block_args(blk, k4, b, start, scale, mode, c);
        let start = start.add(blk * START);
        let (steps, rest) = (k4 / 2, k4 % 2);
        let mut acc = [[vdupq_n_s32(0); 8]; MR];
        macro_rules! block {
            ($how:tt $($rows:tt)*) => {
                // SAFETY: reads 4 * k4 bytes of each row or the tile's packing, and k4 groups of
                // 64 weight bytes (the contract); writes the packing when packing, and only the
                // named registers.
                asm!(
                    "movi v5.8b, #0x80",
                    load_start!(),
                    mull_loops!($how),
                    st = inout(reg) start => _,
                    steps = in(reg) steps,
                    rest = in(reg) rest,
                    cnt = out(reg) _,
                    pa = inout(reg) pack => _,
                    w = inout(reg) b => _,
                    $($rows)*
                    out("v0") _, out("v1") _, out("v2") _, out("v3") _,
                    out("v4") _, out("v5") _, out("v6") _, out("v7") _,
                    out("v8") _, out("v9") _, out("v10") _, out("v11") _,
                    out("v12") _, out("v13") _, out("v14") _, out("v15") _,
                    out("v16") acc[0][0], out("v17") acc[0][1], out("v18") acc[0][2],
                    out("v19") acc[0][3], out("v20") acc[0][4], out("v21") acc[0][5],
                    out("v22") acc[0][6], out("v23") acc[0][7], out("v24") acc[1][0],
                    out("v25") acc[1][1], out("v26") acc[1][2], out("v27") acc[1][3],
                    out("v28") acc[1][4], out("v29") acc[1][5], out("v30") acc[1][6],
                    out("v31") acc[1][7],
                    options(nostack),
                )
            };
        }
        if mr == 1 {
            // SAFETY: reads 4 * k4 bytes of the row and k4 groups of 64 weight bytes (the
            // contract); writes only the named registers.
            asm!(
                "movi v5.8b, #0x80",
                "ld1 {{v16.4s, v17.4s, v18.4s, v19.4s}}, [{st}], #64",
                "ld1 {{v20.4s, v21.4s, v22.4s, v23.4s}}, [{st}]",
                mull_row1!(),
                st = inout(reg) start => _,
                steps = in(reg) steps,
                rest = in(reg) rest,
                cnt = out(reg) _,
                p0 = inout(reg) rows[0] => _,
                w = inout(reg) b => _,
                out("v0") _, out("v1") _, out("v2") _, out("v5") _, out("v6") _, out("v7") _,
                out("v8") _, out("v9") _, out("v10") _, out("v11") _,
                out("v12") _, out("v13") _, out("v14") _, out("v15") _,
                out("v16") acc[0][0], out("v17") acc[0][1], out("v18") acc[0][2],
                out("v19") acc[0][3], out("v20") acc[0][4], out("v21") acc[0][5],
                out("v22") acc[0][6], out("v23") acc[0][7],
                options(nostack, readonly),
            );
        } else if packed {
            block!(packed);
        } else {
            block!(pack
                p0 = inout(reg) rows[0] => _,
                p1 = inout(reg) rows[1] => _,
            );
        }
        let sc = load_scale(scale);
        for (i, acc) in acc.iter().enumerate().take(mr) {
            let sum: [int32x4_t; 4] =
                std::array::from_fn(|j| vpaddq_s32(acc[2 * j], acc[2 * j + 1]));
            store_row(&sum, nc, &sc, mode, c, ldc, i);
        }
    }
}

/// See the module doc of `gemm` for the contract.
///
/// # Safety
/// Pointers as in the contract; no packed weight may be -128.
#[allow(clippy::too_many_arguments)]
pub unsafe fn gemm_qs8_2x16c4_neonmull(
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
    drive::<Mull>(m, n, k4, a, lda, b, bias, scale, mode, c, ldc)
}
