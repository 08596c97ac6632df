//! `dwconv_qs8_kxk_16c_neonmull`: 16 channels per step with 8-bit multiplies, for every
//! aarch64 core. `SMULL`/`SMULL2` of a tap's 16 input bytes by its 16 i8 weights give i16
//! products, a second tap is added in i16 (`SMLAL`/`SMLAL2`: `2 * 128 * 127` fits, so weights
//! must not be -128), and `SADDW`/`SADDW2` widen each pair into the four i32 accumulators:
//! 32 MACs per 8 arithmetic instructions, against 16 per 4 for widening every input to i16.
//!
//! The kernel reads the engine's prepared copy of the input (`Input::FramedSigned`, see
//! [`super::frame_input`]): framed so that every pixel is interior, each byte already
//! `x - 128` as i8, so no tap is flipped or bounds-checked here. The zero points fold into
//! the bias: `sum (x - zx) w = sum (x - 128) w + (128 - zx) sum w` over all taps (the frame's
//! bytes add exactly 0).
//!
//! 3x3 and 5x5 kernels at dilation 1 (any stride) with u8 output in blocks of 16 or 8
//! channels run an assembly loop over the row's pixels: a 3x3 block's 9 weight vectors,
//! start values, multipliers and clamp bounds stay in registers for the whole row (74
//! instructions per pixel and block: 9 loads, 38 multiply-adds, the 22-instruction requantizing
//! store of `gemm::neon::store16` and the pointer steps); a 5x5 block re-reads its weights in
//! pairs (`LDP`) per pixel (170 instructions for 400 MACs). LLVM's version of the same loop
//! spilled the weights and split `SMULL2` into `EXT` + `SMULL`. Other sizes, dilations, f32
//! outputs and ragged last blocks take the intrinsics loop.
//!
//! Packing ([`pack`]): per block of 16 channels, the `kh * kw` taps' 16 i8 weights in tap
//! order (one contiguous run a block's loop walks), then `c_pad` i32 sums of each channel's
//! taps, as opaque bytes in the engine's i16 weight buffer.

use super::{DwGeom, CB};
use crate::kernels::qs8::gemm::neon::store16;
use crate::kernels::qs8::gemm::EpiMode;
use std::arch::aarch64::*;
use std::arch::asm;

/// Pack `[C][kh][kw]` int8 weights (see the module doc).
pub fn pack(w: &[i8], g: &DwGeom) -> Vec<i16> {
    let taps = g.k[0] * g.k[1];
    let cp = g.c_pad();
    let mut bytes = vec![0u8; taps * cp + 4 * cp];
    for c in 0..g.c {
        let (blk, lane) = (c / CB, c % CB);
        let mut sum = 0i32;
        for t in 0..taps {
            let v = w[c * taps + t];
            bytes[(blk * taps + t) * CB + lane] = v as u8;
            sum += v as i32;
        }
        bytes[taps * cp + 4 * c..taps * cp + 4 * c + 4].copy_from_slice(&sum.to_ne_bytes());
    }
    bytes
        .chunks(2)
        .map(|p| i16::from_ne_bytes([p[0], p[1]]))
        .collect()
}

/// One output row; see the module doc of `dwconv` for the contract, with the input the
/// prepared copy (`g` without padding).
///
/// # Safety
/// Pointers as in the contract, weights packed by [`pack`] with no -128, `x` the prepared
/// copy; the host must have NEON (every aarch64 CPU).
#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "neon")]
#[inline(never)] // its own symbol in profiles, not folded into `per_row!`'s closure
pub unsafe fn dwconv_qs8_kxk_16c_neonmull(
    g: &DwGeom,
    oy: usize,
    x: *const u8,
    zx: i32,
    w: *const i16,
    bias: *const i32,
    scale: *const f32,
    mode: EpiMode,
    out: *mut u8,
) {
    debug_assert_eq!(g.p, [0, 0], "the prepared copy has no padding");
    let taps = g.k[0] * g.k[1];
    let cp = g.c_pad();
    let w = w as *const i8;
    let sums = w.add(taps * cp) as *const i32;
    let fold = vdupq_n_s32(128 - zx);
    // the window of output pixel 0 (row stride rs, column stride c)
    let x = x.add(oy * g.s[0] * g.w * g.c);
    let rs = g.d[0] * g.w * g.c;
    let mut c0 = 0;
    while c0 < g.c {
        let n = CB.min(g.c - c0);
        let start: [int32x4_t; 4] = std::array::from_fn(|j| {
            let b = vld1q_s32(bias.add(c0 + 4 * j));
            vmlaq_s32(b, vld1q_s32(sums.add(c0 + 4 * j)), fold)
        });
        let wb = w.add(c0 * taps);
        let block = Block {
            x: x.add(c0),
            rs,
            cs: g.d[1] * g.c,
            step: g.s[1] * g.c,
            pixels: g.ow,
            w: wb,
            start,
            scale: scale.add(c0),
            out: out.add(c0 * mode.elem_bytes()),
            oc: g.c,
        };
        match (mode, g.k, g.d[1], n) {
            (EpiMode::Quant { zp, lo, hi }, [3, 3], 1, 16) => block.k3::<16>(zp, lo, hi),
            (EpiMode::Quant { zp, lo, hi }, [3, 3], 1, 8) => block.k3::<8>(zp, lo, hi),
            (EpiMode::Quant { zp, lo, hi }, [5, 5], 1, 16) => block.k5::<16>(zp, lo, hi),
            (EpiMode::Quant { zp, lo, hi }, [5, 5], 1, 8) => block.k5::<8>(zp, lo, hi),
            _ => block.any(g, taps, n, mode),
        }
        c0 += CB;
    }
}

/// One channel block of one output row.
struct Block {
    /// the first pixel's window (tap `ky, kx` at `x + ky * rs + kx * cs`)
    x: *const u8,
    rs: usize,
    cs: usize,
    /// bytes from one pixel's window to the next's
    step: usize,
    pixels: usize,
    /// the block's packed weights (taps x 16)
    w: *const i8,
    start: [int32x4_t; 4],
    scale: *const f32,
    /// the first pixel's first output element of the block
    out: *mut u8,
    /// output elements from one pixel to the next
    oc: usize,
}

/// `v20`-`v23 (+)= widen(v24 * w$a + v25 * w$b)`: two taps added in i16, then widened into
/// the four accumulators; `$from` is `20`..`23` to accumulate or `9`..`12` (the start
/// values) for a pixel's first pair.
macro_rules! pair {
    ($a:literal, $b:literal, $f0:literal, $f1:literal, $f2:literal, $f3:literal) => {
        concat!(
            "smull v26.8h, v24.8b, v",
            $a,
            ".8b\n",
            "smlal v26.8h, v25.8b, v",
            $b,
            ".8b\n",
            "smull2 v27.8h, v24.16b, v",
            $a,
            ".16b\n",
            "smlal2 v27.8h, v25.16b, v",
            $b,
            ".16b\n",
            "saddw v20.4s, v",
            $f0,
            ".4s, v26.4h\n",
            "saddw2 v21.4s, v",
            $f1,
            ".4s, v26.8h\n",
            "saddw v22.4s, v",
            $f2,
            ".4s, v27.4h\n",
            "saddw2 v23.4s, v",
            $f3,
            ".4s, v27.8h\n",
        )
    };
    ($a:literal, $b:literal) => {
        pair!($a, $b, 20, 21, 22, 23)
    };
}

/// `v20`-`v23 += widen(v24 * w$a)`: an odd last tap.
macro_rules! single {
    ($a:literal) => {
        concat!(
            "smull v26.8h, v24.8b, v",
            $a,
            ".8b\n",
            "smull2 v27.8h, v24.16b, v",
            $a,
            ".16b\n",
            "saddw v20.4s, v20.4s, v26.4h\n",
            "saddw2 v21.4s, v21.4s, v26.8h\n",
            "saddw v22.4s, v22.4s, v27.4h\n",
            "saddw2 v23.4s, v23.4s, v27.8h\n",
        )
    };
}

/// Load tap `(row, col)` of the current window into `v$v`: `{r<row>}` the window row's
/// pointer, `{c<col>}` the column's byte offset (column 0: none).
macro_rules! tap {
    ($v:literal, $row:literal, 0) => {
        concat!("ldr q", $v, ", [{r", $row, "}]\n")
    };
    ($v:literal, $row:literal, $col:literal) => {
        concat!("ldr q", $v, ", [{r", $row, "}, {c", $col, "}]\n")
    };
}

/// Requantize `v20`-`v23` (`requant16_asm!`: multipliers `v13`-`v16`, zero point `v17`,
/// bounds `v18`/`v19`) and store `$st` (`v24.16b` or `v24.8b`) at `{out}`, then
/// `{out} += {oc}`.
macro_rules! requant_store {
    ($st:literal) => {
        concat!(
            requant16_asm!(20, 21, 22, 23; 13, 14, 15, 16; 17, 18, 19; 24, 25),
            "st1 {{", $st, "}}, [{out}], {oc}\n",
        )
    };
}

/// The store of a block of `N` (16 or 8) channels.
macro_rules! store_n {
    (16) => {
        requant_store!("v24.16b")
    };
    (8) => {
        requant_store!("v24.8b")
    };
}

impl Block {
    /// A 3x3 window at dilation 1, `N` (16 or 8) u8 outputs per pixel.
    #[inline(always)]
    unsafe fn k3<const N: usize>(&self, zp: i32, lo: i32, hi: i32) {
        macro_rules! body {
            ($n:tt) => {
                // SAFETY: reads the 9 taps of `pixels` windows (inside the prepared copy, plus
                // the kernel's 15 bytes of slack) and 9 x 16 weight bytes; writes `$n` bytes per
                // pixel, `oc` apart (the contract's output row).
                asm!(
                    "ld1 {{v0.16b, v1.16b, v2.16b, v3.16b}}, [{w}], #64",
                    "ld1 {{v4.16b, v5.16b, v6.16b, v7.16b}}, [{w}], #64",
                    "ldr q8, [{w}]",
                    "ld1 {{v13.4s, v14.4s, v15.4s, v16.4s}}, [{scale}]",
                    "dup v17.8h, {zp:w}",
                    "dup v18.16b, {lo:w}",
                    "dup v19.16b, {hi:w}",
                    "2:",
                    tap!(24, 0, 0), tap!(25, 0, 1),
                    pair!(0, 1, 9, 10, 11, 12),
                    tap!(24, 0, 2), tap!(25, 1, 0),
                    pair!(2, 3),
                    tap!(24, 1, 1), tap!(25, 1, 2),
                    pair!(4, 5),
                    tap!(24, 2, 0), tap!(25, 2, 1),
                    pair!(6, 7),
                    tap!(24, 2, 2),
                    single!(8),
                    "add {r0}, {r0}, {step}",
                    "add {r1}, {r1}, {step}",
                    "add {r2}, {r2}, {step}",
                    store_n!($n),
                    "subs {count}, {count}, #1",
                    "b.ne 2b",
                    w = inout(reg) self.w => _,
                    scale = in(reg) self.scale,
                    zp = in(reg) zp,
                    lo = in(reg) lo,
                    hi = in(reg) hi,
                    r0 = inout(reg) self.x => _,
                    r1 = inout(reg) self.x.add(self.rs) => _,
                    r2 = inout(reg) self.x.add(2 * self.rs) => _,
                    c1 = in(reg) self.cs,
                    c2 = in(reg) 2 * self.cs,
                    step = in(reg) self.step,
                    out = inout(reg) self.out => _,
                    oc = in(reg) self.oc,
                    count = inout(reg) self.pixels => _,
                    in("v9") self.start[0], in("v10") self.start[1],
                    in("v11") self.start[2], in("v12") self.start[3],
                    out("v0") _, out("v1") _, out("v2") _, out("v3") _,
                    out("v4") _, out("v5") _, out("v6") _, out("v7") _, out("v8") _,
                    out("v13") _, out("v14") _, out("v15") _, out("v16") _,
                    out("v17") _, out("v18") _, out("v19") _,
                    out("v20") _, out("v21") _, out("v22") _, out("v23") _,
                    out("v24") _, out("v25") _, out("v26") _, out("v27") _,
                    options(nostack),
                )
            };
        }
        if self.pixels == 0 {
            return;
        }
        if N == 16 {
            body!(16)
        } else {
            body!(8)
        }
    }

    /// A 5x5 window at dilation 1, `N` (16 or 8) u8 outputs per pixel; the weights are
    /// re-read per pixel, two taps per `LDP`.
    #[inline(always)]
    unsafe fn k5<const N: usize>(&self, zp: i32, lo: i32, hi: i32) {
        macro_rules! body {
            ($n:tt) => {
                // SAFETY: as in `k3`, for 25 taps.
                asm!(
                    "ld1 {{v13.4s, v14.4s, v15.4s, v16.4s}}, [{scale}]",
                    "dup v17.8h, {zp:w}",
                    "dup v18.16b, {lo:w}",
                    "dup v19.16b, {hi:w}",
                    "2:",
                    "mov {wp}, {w}",
                    // taps in order, two per pair: (row, col) of tap t is (t / 5, t % 5)
                    "ldp q0, q1, [{wp}], #32", tap!(24, 0, 0), tap!(25, 0, 1),
                    pair!(0, 1, 9, 10, 11, 12),
                    "ldp q0, q1, [{wp}], #32", tap!(24, 0, 2), tap!(25, 0, 3), pair!(0, 1),
                    "ldp q0, q1, [{wp}], #32", tap!(24, 0, 4), tap!(25, 1, 0), pair!(0, 1),
                    "ldp q0, q1, [{wp}], #32", tap!(24, 1, 1), tap!(25, 1, 2), pair!(0, 1),
                    "ldp q0, q1, [{wp}], #32", tap!(24, 1, 3), tap!(25, 1, 4), pair!(0, 1),
                    "ldp q0, q1, [{wp}], #32", tap!(24, 2, 0), tap!(25, 2, 1), pair!(0, 1),
                    "ldp q0, q1, [{wp}], #32", tap!(24, 2, 2), tap!(25, 2, 3), pair!(0, 1),
                    "ldp q0, q1, [{wp}], #32", tap!(24, 2, 4), tap!(25, 3, 0), pair!(0, 1),
                    "ldp q0, q1, [{wp}], #32", tap!(24, 3, 1), tap!(25, 3, 2), pair!(0, 1),
                    "ldp q0, q1, [{wp}], #32", tap!(24, 3, 3), tap!(25, 3, 4), pair!(0, 1),
                    "ldp q0, q1, [{wp}], #32", tap!(24, 4, 0), tap!(25, 4, 1), pair!(0, 1),
                    "ldp q0, q1, [{wp}], #32", tap!(24, 4, 2), tap!(25, 4, 3), pair!(0, 1),
                    "ldr q0, [{wp}]", tap!(24, 4, 4), single!(0),
                    "add {r0}, {r0}, {step}",
                    "add {r1}, {r1}, {step}",
                    "add {r2}, {r2}, {step}",
                    "add {r3}, {r3}, {step}",
                    "add {r4}, {r4}, {step}",
                    store_n!($n),
                    "subs {count}, {count}, #1",
                    "b.ne 2b",
                    w = in(reg) self.w,
                    wp = out(reg) _,
                    scale = in(reg) self.scale,
                    zp = in(reg) zp,
                    lo = in(reg) lo,
                    hi = in(reg) hi,
                    r0 = inout(reg) self.x => _,
                    r1 = inout(reg) self.x.add(self.rs) => _,
                    r2 = inout(reg) self.x.add(2 * self.rs) => _,
                    r3 = inout(reg) self.x.add(3 * self.rs) => _,
                    r4 = inout(reg) self.x.add(4 * self.rs) => _,
                    c1 = in(reg) self.cs,
                    c2 = in(reg) 2 * self.cs,
                    c3 = in(reg) 3 * self.cs,
                    c4 = in(reg) 4 * self.cs,
                    step = in(reg) self.step,
                    out = inout(reg) self.out => _,
                    oc = in(reg) self.oc,
                    count = inout(reg) self.pixels => _,
                    in("v9") self.start[0], in("v10") self.start[1],
                    in("v11") self.start[2], in("v12") self.start[3],
                    out("v0") _, out("v1") _,
                    out("v13") _, out("v14") _, out("v15") _, out("v16") _,
                    out("v17") _, out("v18") _, out("v19") _,
                    out("v20") _, out("v21") _, out("v22") _, out("v23") _,
                    out("v24") _, out("v25") _, out("v26") _, out("v27") _,
                    options(nostack),
                )
            };
        }
        if self.pixels == 0 {
            return;
        }
        if N == 16 {
            body!(16)
        } else {
            body!(8)
        }
    }

    /// Any window, dilation and output form, `n` channels stored: intrinsics, taps paired
    /// in order as in the assembly loops.
    #[inline(always)]
    unsafe fn any(&self, g: &DwGeom, taps: usize, n: usize, mode: EpiMode) {
        let scl: [float32x4_t; 4] = std::array::from_fn(|j| vld1q_f32(self.scale.add(4 * j)));
        let offs: Vec<usize> = (0..g.k[0])
            .flat_map(|ky| (0..g.k[1]).map(move |kx| ky * self.rs + kx * self.cs))
            .collect();
        let wv: Vec<int8x16_t> = (0..taps).map(|t| vld1q_s8(self.w.add(t * CB))).collect();
        for px in 0..self.pixels {
            let win = self.x.add(px * self.step);
            let xs = |t: usize| vld1q_s8(win.add(offs[t]) as *const i8);
            let mut acc = self.start;
            let mut t = 0;
            while t + 2 <= taps {
                mac2(&mut acc, xs(t), wv[t], xs(t + 1), wv[t + 1]);
                t += 2;
            }
            if t < taps {
                mac1(&mut acc, xs(t), wv[t]);
            }
            let f: [float32x4_t; 4] =
                std::array::from_fn(|j| vmulq_f32(vcvtq_f32_s32(acc[j]), scl[j]));
            store16(&f, n, mode, self.out, px * self.oc);
        }
    }
}

/// `acc += x0 * w0 + x1 * w1` per channel: both products summed in i16 (`SMULL` + `SMLAL`,
/// low and high halves), then widened into the i32 accumulators.
#[inline(always)]
unsafe fn mac2(
    acc: &mut [int32x4_t; 4],
    x0: int8x16_t,
    w0: int8x16_t,
    x1: int8x16_t,
    w1: int8x16_t,
) {
    let l = vmlal_s8(
        vmull_s8(vget_low_s8(x0), vget_low_s8(w0)),
        vget_low_s8(x1),
        vget_low_s8(w1),
    );
    add_products(acc, l, vmlal_high_s8(vmull_high_s8(x0, w0), x1, w1));
}

/// `acc += x0 * w0` per channel (an odd last tap).
#[inline(always)]
unsafe fn mac1(acc: &mut [int32x4_t; 4], x0: int8x16_t, w0: int8x16_t) {
    add_products(
        acc,
        vmull_s8(vget_low_s8(x0), vget_low_s8(w0)),
        vmull_high_s8(x0, w0),
    );
}

/// `acc += widen(l), widen(h)`: i16 products of channels 0-7 and 8-15 into i32.
#[inline(always)]
unsafe fn add_products(acc: &mut [int32x4_t; 4], l: int16x8_t, h: int16x8_t) {
    acc[0] = vaddw_s16(acc[0], vget_low_s16(l));
    acc[1] = vaddw_high_s16(acc[1], l);
    acc[2] = vaddw_s16(acc[2], vget_low_s16(h));
    acc[3] = vaddw_high_s16(acc[3], h);
}
