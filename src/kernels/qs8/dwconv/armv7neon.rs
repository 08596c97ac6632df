//! `dwconv_qs8_kxk_16c_armv7neon`: 32-bit Arm NEON depthwise, inline assembly (Rust's 32-bit
//! Arm NEON intrinsics are not stable). 16 channels per step: `VSUBL.U8` widens `x - zx` to
//! i16 (the wrapped u16 difference is the right i16 for |x - zx| <= 255), and `VMLAL.S16`
//! accumulates it times the i16 weights into four i32x4: 16 MACs per 10 instructions, exact
//! for any weights. The whole tap window of one output pixel (rows `ky0..ky1`, columns
//! `kx0..kx1`) is one assembly loop nest, so the accumulators stay in registers.
//!
//! Weights use the kernel's own packing ([`pack`]): per block of 16 channels, the taps in
//! row-major order, 16 i16 each, so consecutive taps of a row are one post-incremented `VLD1`
//! apart. The epilogue is the armv7 `gemm_qs8` one.

use super::{tap_range, DwGeom, CB};
use crate::kernels::qs8::gemm::armv7neon::{store16, Acc};
use crate::kernels::qs8::gemm::EpiMode;
use std::arch::asm;

/// `[C][kh][kw]` int8 weights as `[ceil(C/16)][kh * kw][16]` i16 (channels past C zero).
pub fn pack(w: &[i8], g: &DwGeom) -> Vec<i16> {
    let taps = g.k[0] * g.k[1];
    let mut out = vec![0i16; taps * g.c_pad()];
    for c in 0..g.c {
        for t in 0..taps {
            out[((c / CB) * taps + t) * CB + c % CB] = w[c * taps + t] as i16;
        }
    }
    out
}

/// One output row; see the module doc of `dwconv` for the contract (weights from [`pack`]).
///
/// # Safety
/// Pointers as in the contract; the CPU has NEON.
#[allow(clippy::too_many_arguments)]
#[inline(never)] // its own symbol in profiles, not folded into `per_row!`'s closure
pub unsafe fn dwconv_qs8_kxk_16c_armv7neon(
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
    let taps = g.k[0] * g.k[1];
    let (ky0, ky1) = tap_range(oy, g.s[0], g.d[0], g.p[0], g.k[0], g.h);
    let row_bytes = g.w * g.c;
    let mut acc = Acc([0; CB]);
    for ox in 0..g.ow {
        let (kx0, kx1) = tap_range(ox, g.s[1], g.d[1], g.p[1], g.k[1], g.w);
        let (nky, nkx) = (ky1 - ky0, kx1 - kx0);
        // Byte steps: next tap in a row, and from a row's end to the next row's first tap.
        let xcs = g.d[1] * g.c;
        let xrs = (g.d[0] * row_bytes) as isize - (nkx * xcs) as isize;
        let wrs = ((g.k[1] - nkx) * CB * 2) as isize;
        let (iy0, ix0) = (oy * g.s[0] + ky0 * g.d[0], ox * g.s[1] + kx0 * g.d[1]);
        let mut c0 = 0;
        while c0 < g.c {
            if nky == 0 || nkx == 0 {
                // No tap inside the image: the bias alone.
                std::ptr::copy_nonoverlapping(bias.add(c0), acc.0.as_mut_ptr(), CB);
            } else {
                let xp = x.add((iy0 - g.p[0]) * row_bytes + (ix0 - g.p[1]) * g.c + c0);
                let wp = w.add(((c0 / CB) * taps + ky0 * g.k[1] + kx0) * CB);
                asm!(
                    ".fpu neon",
                    "vdup.8 d24, {cnt}",
                    "vld1.32 {{d16-d19}}, [{bias}]!",
                    "vld1.32 {{d20-d23}}, [{bias}]",
                    "2:",
                    "mov {cnt}, {nkx}",
                    "3:",
                    "vld1.8 {{d0, d1}}, [{xp}], {xcs}",
                    "vld1.16 {{d4-d7}}, [{wp}]!",
                    "vsubl.u8 q14, d0, d24",
                    "vsubl.u8 q15, d1, d24",
                    "vmlal.s16 q8, d28, d4",
                    "vmlal.s16 q9, d29, d5",
                    "vmlal.s16 q10, d30, d6",
                    "vmlal.s16 q11, d31, d7",
                    "subs {cnt}, {cnt}, #1",
                    "bne 3b",
                    "add {xp}, {xp}, {xrs}",
                    "add {wp}, {wp}, {wrs}",
                    "subs {nky}, {nky}, #1",
                    "bne 2b",
                    "vst1.32 {{d16-d19}}, [{acc}]!",
                    "vst1.32 {{d20-d23}}, [{acc}]",
                    cnt = inout(reg) zx => _,
                    bias = inout(reg) bias.add(c0) => _,
                    nkx = in(reg) nkx,
                    nky = inout(reg) nky => _,
                    xp = inout(reg) xp => _,
                    xcs = in(reg) xcs,
                    xrs = in(reg) xrs,
                    wp = inout(reg) wp => _,
                    wrs = in(reg) wrs,
                    acc = inout(reg) acc.0.as_mut_ptr() => _,
                    out("d0") _, out("d1") _, out("d4") _, out("d5") _, out("d6") _, out("d7") _,
                    out("d16") _, out("d17") _, out("d18") _, out("d19") _, out("d20") _, out("d21") _,
                    out("d22") _, out("d23") _, out("d24") _, out("d28") _, out("d29") _, out("d30") _,
                    out("d31") _,
                    options(nostack),
                );
            }
            store16(
                &acc,
                scale.add(c0),
                CB.min(g.c - c0),
                mode,
                out,
                ox * g.c + c0,
            );
            c0 += CB;
        }
    }
}
