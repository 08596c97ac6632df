//! `dwconv_qs8_kxk_16c_neon`: 16 channels per step: `(x - zx)` widened to i16 (`USHLL`, `SUB`),
//! multiplied by the i16 weights and accumulated into four i32x4 (`SMLAL`, `SMLAL2`), which is
//! exact for the contract's ranges. The epilogue is the NEON `gemm_qs8` one (`store16`).

use super::{tap_range, DwGeom, CB};
use crate::kernels::qs8::gemm::neon::store16;
use crate::kernels::qs8::gemm::EpiMode;
use std::arch::aarch64::*;

/// One output row; see the module doc of `dwconv` for the contract.
///
/// # Safety
/// Pointers as in the contract; the host must have NEON (every aarch64 CPU).
#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "neon")]
#[inline(never)] // its own symbol in profiles, not folded into `per_row!`'s closure
pub unsafe fn dwconv_qs8_kxk_16c_neon(
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
    let cp = g.c_pad();
    let vzx = vdupq_n_s16(zx as i16);
    let (ky0, ky1) = tap_range(oy, g.s[0], g.d[0], g.p[0], g.k[0], g.h);
    for ox in 0..g.ow {
        let (kx0, kx1) = tap_range(ox, g.s[1], g.d[1], g.p[1], g.k[1], g.w);
        let mut c0 = 0;
        while c0 < g.c {
            let mut acc = [
                vld1q_s32(bias.add(c0)),
                vld1q_s32(bias.add(c0 + 4)),
                vld1q_s32(bias.add(c0 + 8)),
                vld1q_s32(bias.add(c0 + 12)),
            ];
            for ky in ky0..ky1 {
                let iy = oy * g.s[0] + ky * g.d[0] - g.p[0];
                let row = x.add(iy * g.w * g.c + c0);
                let wrow = w.add(ky * g.k[1] * cp + c0);
                for kx in kx0..kx1 {
                    let ix = ox * g.s[1] + kx * g.d[1] - g.p[1];
                    let xb = vld1q_u8(row.add(ix * g.c));
                    let xl = vsubq_s16(vreinterpretq_s16_u16(vmovl_u8(vget_low_u8(xb))), vzx);
                    let xh = vsubq_s16(vreinterpretq_s16_u16(vmovl_high_u8(xb)), vzx);
                    let wp = wrow.add(kx * cp);
                    let wl = vld1q_s16(wp);
                    let wh = vld1q_s16(wp.add(8));
                    acc[0] = vmlal_s16(acc[0], vget_low_s16(xl), vget_low_s16(wl));
                    acc[1] = vmlal_high_s16(acc[1], xl, wl);
                    acc[2] = vmlal_s16(acc[2], vget_low_s16(xh), vget_low_s16(wh));
                    acc[3] = vmlal_high_s16(acc[3], xh, wh);
                }
            }
            let f: [float32x4_t; 4] = std::array::from_fn(|j| {
                vmulq_f32(vcvtq_f32_s32(acc[j]), vld1q_f32(scale.add(c0 + 4 * j)))
            });
            store16(&f, CB.min(g.c - c0), mode, out, ox * g.c + c0);
            c0 += CB;
        }
    }
}
