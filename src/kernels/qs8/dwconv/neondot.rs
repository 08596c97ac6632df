//! `dwconv_qs8_kxk_16c_rows4_neondot`: depthwise with the Armv8.2 dot product (`SDOT`,
//! Cortex-A76 / A78AE), four kernel rows per multiply. `SDOT v.4s, x.16b, w.16b` (the
//! vector form) adds four byte products per i32 lane, so with a channel's taps from four
//! kernel rows side by side in a lane's bytes one instruction does 4 channels x 4 taps.
//!
//! Per band of output rows ([`row_group_band`]) and block of 16 channels, the input columns the
//! band reads are first interleaved into a per-thread scratch ([`interleave`]): for each group
//! of four input rows, column `x` becomes 64 bytes, vector `v` holding channels `4v..4v+3`
//! with their four rows (`ZIP1`/`ZIP2` of bytes, then of halfwords). Rows past what the band
//! reads repeat the group's first row, where the packed weights are zero. At row stride and
//! dilation 1 one interleave serves every row of the band: output row `oy + r` reads the same
//! groups with the kernel's rows shifted down by `r` lanes, so the packing holds one copy of
//! the weights per shift (a 3x3 band is two rows over four input rows, a 5x5 band four rows
//! over eight), and the interleave's cost per output row halves (3x3) or quarters (5x5).
//! Each output pixel then needs, per group and kernel column, one four-register load and 4
//! `SDOT`s: a 3x3 pixel is 3 loads and 12 `SDOT`s against the weights held in registers (40
//! instructions with the requantizing store, against 75 for `dwconv_qs8_kxk_16c_neonmull`), a
//! 5x5 pixel 40 `SDOT`s with its input and weight loads, which a pair of pixels shares (about
//! 80 instructions per pixel in pairs, against 170); the interleave adds about 17 per input
//! column and group, shared by the band's rows.
//! At a column stride of 2 it runs for two columns per pixel, which is why the kernel
//! `suits` column stride 1 only (and dilation 1 across columns).
//!
//! The kernel reads the engine's framed, signed copy of the input (`Input::FramedSigned`, as
//! `neonmull`): every tap is inside it, every byte is `x - 128` as i8, and the zero points
//! fold into the start values, `bias + (128 - zx) * sum w`.
//!
//! Packing ([`pack`]): per block of 16 channels, per shift `r` of the band, per row group,
//! per kernel column, 64 bytes in the interleaved order (byte `16v + 4i + j` is channel
//! `4v + i`, kernel row `4 * group + j - r`, zero outside the kernel's rows), then `c_pad` i32
//! sums of each channel's taps, as opaque bytes in the engine's i16 weight buffer.
//!
//! 3x3 and 5x5 blocks of 16 or 8 channels with u8 output at column stride and dilation 1
//! run an assembly loop over the row's pixels; everything else (f32 outputs, ragged blocks,
//! other sizes, strides, dilations) the same arithmetic through intrinsics.

use super::{row_group_band, DwGeom, CB};
use crate::kernels::qs8::gemm::neon::store16;
use crate::kernels::qs8::gemm::EpiMode;
use std::arch::aarch64::*;
use std::arch::asm;
use std::cell::RefCell;

/// Kernel rows per `SDOT` lane.
const RG: usize = 4;

/// Bytes of one group's kernel column of one block: 16 channels x 4 rows.
const COL: usize = CB * RG;

/// Column stride and dilation 1: one interleaved column per output pixel.
pub fn suits(g: &DwGeom) -> bool {
    g.s[1] == 1 && g.d[1] == 1
}

/// Packed bytes of one shift's weights of a block of 16 channels.
fn shift_bytes(g: &DwGeom) -> usize {
    g.k[0].div_ceil(RG) * g.k[1] * COL
}

/// Packed bytes per block of 16 channels: one set of weights per shift.
fn block_bytes(g: &DwGeom) -> usize {
    row_group_band(g) * shift_bytes(g)
}

/// Pack `[C][kh][kw]` int8 weights (see the module doc).
pub fn pack(w: &[i8], g: &DwGeom) -> Vec<i16> {
    let (kh, kw) = (g.k[0], g.k[1]);
    let cp = g.c_pad();
    let (bb, sb, band) = (block_bytes(g), shift_bytes(g), row_group_band(g));
    let wbytes = cp / CB * bb;
    let mut bytes = vec![0u8; wbytes + 4 * cp];
    for c in 0..g.c {
        let (blk, lane) = (c / CB, c % CB);
        let (v, i) = (lane / 4, lane % 4);
        let mut sum = 0i32;
        for ky in 0..kh {
            for kx in 0..kw {
                let val = w[(c * kh + ky) * kw + kx];
                for r in 0..band {
                    // output row `oy + r` reads kernel row `ky` from input row `oy + r + ky`
                    let (grp, j) = ((ky + r) / RG, (ky + r) % RG);
                    bytes[blk * bb + r * sb + (grp * kw + kx) * COL + 16 * v + 4 * i + j] =
                        val as u8;
                }
                sum += val as i32;
            }
        }
        bytes[wbytes + 4 * c..wbytes + 4 * c + 4].copy_from_slice(&sum.to_ne_bytes());
    }
    if bytes.len() % 2 == 1 {
        bytes.push(0);
    }
    bytes
        .chunks(2)
        .map(|p| i16::from_ne_bytes([p[0], p[1]]))
        .collect()
}

thread_local! {
    /// The row-interleaved input columns of the current output row and block.
    static SCRATCH: RefCell<Vec<int8x16_t>> = const { RefCell::new(Vec::new()) };
}

/// `acc += sdot(x, w)` lane by lane: four byte products per i32 lane.
macro_rules! sdot {
    ($acc:expr, $x:expr, $w:expr) => {
        // SAFETY: register-only arithmetic; the kernel enables `dotprod`.
        asm!(
            "sdot {a:v}.4s, {x:v}.16b, {w:v}.16b",
            a = inout(vreg) $acc,
            x = in(vreg) $x,
            w = in(vreg) $w,
            options(pure, nomem, nostack),
        )
    };
}

/// Output rows `oy..oy + rows`; see the module doc of `dwconv` for the contract, with the
/// input the prepared copy (`g` without padding). Runs band by band ([`row_group_band`]).
///
/// # Safety
/// Pointers as in the contract, weights packed by [`pack`], `x` the prepared signed copy;
/// the host must have the dot product extension.
#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "dotprod")]
pub unsafe fn dwconv_qs8_kxk_16c_rows4_neondot(
    g: &DwGeom,
    oy: usize,
    rows: usize,
    x: *const u8,
    zx: i32,
    w: *const i16,
    bias: *const i32,
    scale: *const f32,
    mode: EpiMode,
    out: *mut u8,
) {
    debug_assert_eq!(g.p, [0, 0], "the prepared copy has no padding");
    if g.ow == 0 {
        return;
    }
    let band = row_group_band(g);
    let row_bytes = g.ow * g.c * mode.elem_bytes();
    let (x, w) = (x as *const i8, w as *const i8);
    for r in (0..rows).step_by(band) {
        let n = band.min(rows - r);
        one_band(
            g,
            oy + r,
            n,
            x,
            zx,
            w,
            bias,
            scale,
            mode,
            out.add(r * row_bytes),
        );
    }
}

/// Output rows `oy..oy + n`, `n <= row_group_band(g)`: each block's input columns interleaved
/// once, then every row over them with its shift's weights.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
unsafe fn one_band(
    g: &DwGeom,
    oy: usize,
    n: usize,
    x: *const i8,
    zx: i32,
    w: *const i8,
    bias: *const i32,
    scale: *const f32,
    mode: EpiMode,
    out: *mut u8,
) {
    let (kh, kw) = (g.k[0], g.k[1]);
    let groups = kh.div_ceil(RG);
    let ncols = (g.ow - 1) * g.s[1] + (kw - 1) * g.d[1] + 1;
    let cp = g.c_pad();
    let (bb, sb) = (block_bytes(g), shift_bytes(g));
    let sums = w.add(cp / CB * bb) as *const i32;
    let fold = vdupq_n_s32(128 - zx);
    let row_bytes = g.ow * g.c * mode.elem_bytes();
    // input rows the band reads, from its first: `n - 1 + kh` (row stride and dilation 1
    // whenever n > 1)
    let x = x.add(oy * g.s[0] * g.w * g.c);
    let span = n - 1 + kh;
    let need = groups * ncols * RG;
    let sc = SCRATCH.with_borrow_mut(|buf| {
        if buf.len() < need {
            buf.resize(need, vdupq_n_s8(0));
        }
        buf.as_mut_ptr() as *mut i8
    });
    let mut c0 = 0;
    while c0 < g.c {
        let nc = CB.min(g.c - c0);
        for grp in 0..groups {
            // rows past the band's repeat the group's first (the weights there are zero)
            let rows: [*const i8; RG] = std::array::from_fn(|j| {
                let t = if RG * grp + j < span {
                    RG * grp + j
                } else {
                    RG * grp
                };
                x.add(t * g.d[0] * g.w * g.c + c0)
            });
            interleave(rows, g.c, ncols, sc.add(grp * ncols * COL));
        }
        let start: [int32x4_t; 4] = std::array::from_fn(|j| {
            vmlaq_s32(
                vld1q_s32(bias.add(c0 + 4 * j)),
                vld1q_s32(sums.add(c0 + 4 * j)),
                fold,
            )
        });
        for r in 0..n {
            let block = Block {
                cols: sc,
                ncols,
                w: w.add(c0 / CB * bb + r * sb),
                start,
                scale: scale.add(c0),
                out: out.add(r * row_bytes + c0 * mode.elem_bytes()),
                oc: g.c,
                pixels: g.ow,
            };
            match (mode, g.k, suits(g), nc) {
                (EpiMode::Quant { zp, lo, hi }, [3, 3], true, 16) => block.k3::<16>(zp, lo, hi),
                (EpiMode::Quant { zp, lo, hi }, [3, 3], true, 8) => block.k3::<8>(zp, lo, hi),
                (EpiMode::Quant { zp, lo, hi }, [_, 5], true, 16) => {
                    block.k5::<16>(groups, zp, lo, hi)
                }
                (EpiMode::Quant { zp, lo, hi }, [_, 5], true, 8) => {
                    block.k5::<8>(groups, zp, lo, hi)
                }
                _ => block.any(g, groups, nc, mode),
            }
        }
        c0 += CB;
    }
}

/// Interleave `ncols` input columns (pixels `c` bytes apart) of four rows into `dst`, 64
/// bytes a column (see the module doc).
#[inline(always)]
unsafe fn interleave(rows: [*const i8; RG], c: usize, ncols: usize, dst: *mut i8) {
    for col in 0..ncols {
        let r: [int8x16_t; RG] = std::array::from_fn(|j| vld1q_s8(rows[j].add(col * c)));
        let lo01 = vreinterpretq_s16_s8(vzip1q_s8(r[0], r[1]));
        let hi01 = vreinterpretq_s16_s8(vzip2q_s8(r[0], r[1]));
        let lo23 = vreinterpretq_s16_s8(vzip1q_s8(r[2], r[3]));
        let hi23 = vreinterpretq_s16_s8(vzip2q_s8(r[2], r[3]));
        vst1q_s8_x4(
            dst.add(col * COL),
            int8x16x4_t(
                vreinterpretq_s8_s16(vzip1q_s16(lo01, lo23)),
                vreinterpretq_s8_s16(vzip2q_s16(lo01, lo23)),
                vreinterpretq_s8_s16(vzip1q_s16(hi01, hi23)),
                vreinterpretq_s8_s16(vzip2q_s16(hi01, hi23)),
            ),
        );
    }
}

/// One channel block of one output row, its columns interleaved.
struct Block {
    /// the interleaved columns, group after group (`ncols` columns each)
    cols: *const i8,
    ncols: usize,
    /// the block's packed weights
    w: *const i8,
    start: [int32x4_t; 4],
    scale: *const f32,
    /// the first pixel's first output element of the block
    out: *mut u8,
    /// output elements from one pixel to the next
    oc: usize,
    pixels: usize,
}

/// `v$a.. += sdot(v$x.., v$w..)`, four registers each: one kernel column of one group for
/// one pixel (accumulators, interleaved input column, weights).
macro_rules! col4 {
    ($a0:literal, $a1:literal, $a2:literal, $a3:literal;
     $x0:literal, $x1:literal, $x2:literal, $x3:literal;
     $w0:literal, $w1:literal, $w2:literal, $w3:literal) => {
        concat!(
            "sdot v", $a0, ".4s, v", $x0, ".16b, v", $w0, ".16b\n", "sdot v", $a1, ".4s, v", $x1,
            ".16b, v", $w1, ".16b\n", "sdot v", $a2, ".4s, v", $x2, ".16b, v", $w2, ".16b\n",
            "sdot v", $a3, ".4s, v", $x3, ".16b, v", $w3, ".16b\n",
        )
    };
}

/// Requantize accumulators `$a`-`$d` (`requant16_asm!`: multipliers `v24`-`v27`, zero point
/// `v28`, bounds `v29`/`v30`) and store `$st` (`v0.16b` or `v0.8b`) at `{out}`, then
/// `{out} += {oc}`.
macro_rules! requant_store {
    ($a:literal, $b:literal, $c:literal, $d:literal; $st:literal) => {
        concat!(
            requant16_asm!($a, $b, $c, $d; 24, 25, 26, 27; 28, 29, 30; 0, 1),
            "st1 {{", $st, "}}, [{out}], {oc}\n",
        )
    };
}

/// The store of one pixel's accumulators `$a`-`$d` for a block of `N` (16 or 8) channels.
macro_rules! store_n {
    (16; $a:literal, $b:literal, $c:literal, $d:literal) => {
        requant_store!($a, $b, $c, $d; "v0.16b")
    };
    (8; $a:literal, $b:literal, $c:literal, $d:literal) => {
        requant_store!($a, $b, $c, $d; "v0.8b")
    };
}

impl Block {
    /// A 3x3 window (one row group) at column stride 1, `N` (16 or 8) u8 outputs per pixel:
    /// the 12 weight vectors stay in `v4`-`v15`; each pixel's accumulators start with one
    /// load of the start values.
    #[inline(always)]
    unsafe fn k3<const N: usize>(&self, zp: i32, lo: i32, hi: i32) {
        macro_rules! body {
            ($n:tt) => {
                // SAFETY: reads 3 interleaved columns per pixel (inside the scratch row),
                // 3 x 64 weight bytes and the 64 bytes of start values; writes `$n` bytes per
                // pixel, `oc` apart (the contract's output row).
                asm!(
                    "ld1 {{v4.16b, v5.16b, v6.16b, v7.16b}}, [{w}], #64",
                    "ld1 {{v8.16b, v9.16b, v10.16b, v11.16b}}, [{w}], #64",
                    "ld1 {{v12.16b, v13.16b, v14.16b, v15.16b}}, [{w}]",
                    "ld1 {{v24.4s, v25.4s, v26.4s, v27.4s}}, [{scale}]",
                    "dup v28.8h, {zp:w}",
                    "dup v29.16b, {lo:w}",
                    "dup v30.16b, {hi:w}",
                    "2:",
                    "ld1 {{v16.4s, v17.4s, v18.4s, v19.4s}}, [{start}]",
                    // columns x, x + 1, x + 2; the next pixel starts at x + 1
                    "ld1 {{v0.16b, v1.16b, v2.16b, v3.16b}}, [{p}], #64",
                    col4!(16, 17, 18, 19; 0, 1, 2, 3; 4, 5, 6, 7),
                    "ld1 {{v0.16b, v1.16b, v2.16b, v3.16b}}, [{p}], #64",
                    col4!(16, 17, 18, 19; 0, 1, 2, 3; 8, 9, 10, 11),
                    "ld1 {{v0.16b, v1.16b, v2.16b, v3.16b}}, [{p}]",
                    col4!(16, 17, 18, 19; 0, 1, 2, 3; 12, 13, 14, 15),
                    "sub {p}, {p}, #64",
                    store_n!($n; 16, 17, 18, 19),
                    "subs {count}, {count}, #1",
                    "b.ne 2b",
                    w = inout(reg) self.w => _,
                    scale = in(reg) self.scale,
                    start = in(reg) self.start.as_ptr(),
                    zp = in(reg) zp,
                    lo = in(reg) lo,
                    hi = in(reg) hi,
                    p = inout(reg) self.cols => _,
                    out = inout(reg) self.out => _,
                    oc = in(reg) self.oc,
                    count = inout(reg) self.pixels => _,
                    out("v0") _, out("v1") _, out("v2") _, out("v3") _,
                    out("v4") _, out("v5") _, out("v6") _, out("v7") _,
                    out("v8") _, out("v9") _, out("v10") _, out("v11") _,
                    out("v12") _, out("v13") _, out("v14") _, out("v15") _,
                    out("v16") _, out("v17") _, out("v18") _, out("v19") _,
                    out("v24") _, out("v25") _, out("v26") _, out("v27") _,
                    out("v28") _, out("v29") _, out("v30") _,
                    options(nostack),
                )
            };
        }
        if N == 16 {
            body!(16)
        } else {
            body!(8)
        }
    }

    /// A kernel 5 columns wide (`groups` row groups) at column stride 1, `N` (16 or 8) u8
    /// outputs per pixel. The weights are re-read per pixel, so pixels go in pairs: per
    /// kernel column one weight load serves both, and the pair's six input columns are
    /// loaded once (pixel `x + 1`'s column `k` is pixel `x`'s column `k + 1`): per group 6
    /// column and 5 weight loads for 40 `SDOT`s, against 10 and 10 for two single pixels.
    /// An odd last pixel runs alone.
    #[inline(always)]
    unsafe fn k5<const N: usize>(&self, groups: usize, zp: i32, lo: i32, hi: i32) {
        // Step `k` of a pair (accumulators v16-v19 and v12-v15): load column `k + 1` into the
        // register set `$next` and weight column `k`, then pixel x takes column `k` (`$cur`)
        // and pixel x + 1 column `k + 1`.
        macro_rules! pair_col {
            ($n0:literal, $n1:literal, $n2:literal, $n3:literal;
             $c0:literal, $c1:literal, $c2:literal, $c3:literal) => {
                concat!(
                    "ld1 {{v", $n0, ".16b, v", $n1, ".16b, v", $n2, ".16b, v", $n3,
                    ".16b}}, [{q}], #64\n",
                    "ld1 {{v4.16b, v5.16b, v6.16b, v7.16b}}, [{wp}], #64\n",
                    col4!(16, 17, 18, 19; $c0, $c1, $c2, $c3; 4, 5, 6, 7),
                    col4!(12, 13, 14, 15; $n0, $n1, $n2, $n3; 4, 5, 6, 7),
                )
            };
        }
        // One pixel: load column `k` and weight column `k`.
        macro_rules! col {
            () => {
                concat!(
                    "ld1 {{v0.16b, v1.16b, v2.16b, v3.16b}}, [{q}], #64\n",
                    "ld1 {{v4.16b, v5.16b, v6.16b, v7.16b}}, [{wp}], #64\n",
                    col4!(16, 17, 18, 19; 0, 1, 2, 3; 4, 5, 6, 7),
                )
            };
        }
        macro_rules! body {
            ($n:tt) => {
                // SAFETY: reads 5 (a pair: 6) interleaved columns of each group per pixel
                // (inside the scratch), the block's weights and the 64 bytes of start
                // values; writes `$n` bytes per pixel, `oc` apart.
                asm!(
                    "ld1 {{v24.4s, v25.4s, v26.4s, v27.4s}}, [{scale}]",
                    "dup v28.8h, {zp:w}",
                    "dup v29.16b, {lo:w}",
                    "dup v30.16b, {hi:w}",
                    "cmp {count}, #2",
                    "b.lo 5f",
                    // pairs of pixels
                    "4:",
                    "ld1 {{v16.4s, v17.4s, v18.4s, v19.4s}}, [{start}]",
                    "ld1 {{v12.4s, v13.4s, v14.4s, v15.4s}}, [{start}]",
                    "mov {wp}, {w}",
                    "mov {q}, {p}",
                    "mov {g}, {groups}",
                    "6:",
                    "ld1 {{v0.16b, v1.16b, v2.16b, v3.16b}}, [{q}], #64",
                    pair_col!(8, 9, 10, 11; 0, 1, 2, 3),
                    pair_col!(0, 1, 2, 3; 8, 9, 10, 11),
                    pair_col!(8, 9, 10, 11; 0, 1, 2, 3),
                    pair_col!(0, 1, 2, 3; 8, 9, 10, 11),
                    pair_col!(8, 9, 10, 11; 0, 1, 2, 3),
                    // from past the pair's 6 columns to the next group's first
                    "add {q}, {q}, {gstep2}",
                    "subs {g}, {g}, #1",
                    "b.ne 6b",
                    "add {p}, {p}, #128",
                    store_n!($n; 16, 17, 18, 19),
                    store_n!($n; 12, 13, 14, 15),
                    "sub {count}, {count}, #2",
                    "cmp {count}, #2",
                    "b.hs 4b",
                    "5:",
                    "cbz {count}, 7f",
                    // the last pixel alone
                    "ld1 {{v16.4s, v17.4s, v18.4s, v19.4s}}, [{start}]",
                    "mov {wp}, {w}",
                    "mov {q}, {p}",
                    "mov {g}, {groups}",
                    "3:",
                    col!(), col!(), col!(), col!(), col!(),
                    "add {q}, {q}, {gstep1}",
                    "subs {g}, {g}, #1",
                    "b.ne 3b",
                    store_n!($n; 16, 17, 18, 19),
                    "7:",
                    w = in(reg) self.w,
                    wp = out(reg) _,
                    q = out(reg) _,
                    g = out(reg) _,
                    groups = in(reg) groups,
                    // from past a group's 5 (a pair's 6) columns to the next group's first
                    gstep1 = in(reg) (self.ncols - 5) * COL,
                    // (used only with two pixels or more, when ncols >= 6)
                    gstep2 = in(reg) (self.ncols.max(6) - 6) * COL,
                    scale = in(reg) self.scale,
                    start = in(reg) self.start.as_ptr(),
                    zp = in(reg) zp,
                    lo = in(reg) lo,
                    hi = in(reg) hi,
                    p = inout(reg) self.cols => _,
                    out = inout(reg) self.out => _,
                    oc = in(reg) self.oc,
                    count = inout(reg) self.pixels => _,
                    out("v0") _, out("v1") _, out("v2") _, out("v3") _,
                    out("v4") _, out("v5") _, out("v6") _, out("v7") _,
                    out("v8") _, out("v9") _, out("v10") _, out("v11") _,
                    out("v12") _, out("v13") _, out("v14") _, out("v15") _,
                    out("v16") _, out("v17") _, out("v18") _, out("v19") _,
                    out("v24") _, out("v25") _, out("v26") _, out("v27") _,
                    out("v28") _, out("v29") _, out("v30") _,
                    options(nostack),
                )
            };
        }
        if N == 16 {
            body!(16)
        } else {
            body!(8)
        }
    }

    /// Any geometry, output form and block width `n`, through intrinsics.
    #[inline(always)]
    unsafe fn any(&self, g: &DwGeom, groups: usize, n: usize, mode: EpiMode) {
        let kw = g.k[1];
        let sc: [float32x4_t; 4] = std::array::from_fn(|j| vld1q_f32(self.scale.add(4 * j)));
        for ox in 0..self.pixels {
            let mut acc = self.start;
            for grp in 0..groups {
                for kx in 0..kw {
                    let col = self
                        .cols
                        .add((grp * self.ncols + ox * g.s[1] + kx * g.d[1]) * COL);
                    let wt = self.w.add((grp * kw + kx) * COL);
                    for (j, a) in acc.iter_mut().enumerate() {
                        sdot!(*a, vld1q_s8(col.add(16 * j)), vld1q_s8(wt.add(16 * j)));
                    }
                }
            }
            let f: [float32x4_t; 4] =
                std::array::from_fn(|j| vmulq_f32(vcvtq_f32_s32(acc[j]), sc[j]));
            store16(&f, n, mode, self.out, ox * self.oc);
        }
    }
}
