//! `dwconv_qs8_kxk_scalar`: the portable reference for the depthwise contract.

use super::{tap_range, DwGeom};
use crate::kernels::qs8::gemm::{epilogue_one, EpiMode};

/// One output row; see the module doc of `dwconv` for the contract.
///
/// # Safety
/// Pointers as in the contract.
#[allow(clippy::too_many_arguments)]
#[inline(never)] // its own symbol in profiles, not folded into `per_row!`'s closure
pub unsafe fn dwconv_qs8_kxk_scalar(
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
    let (ky0, ky1) = tap_range(oy, g.s[0], g.d[0], g.p[0], g.k[0], g.h);
    for ox in 0..g.ow {
        let (kx0, kx1) = tap_range(ox, g.s[1], g.d[1], g.p[1], g.k[1], g.w);
        for c in 0..g.c {
            let mut acc = *bias.add(c);
            for ky in ky0..ky1 {
                let iy = oy * g.s[0] + ky * g.d[0] - g.p[0];
                for kx in kx0..kx1 {
                    let ix = ox * g.s[1] + kx * g.d[1] - g.p[1];
                    let v = *x.add((iy * g.w + ix) * g.c + c) as i32 - zx;
                    acc += v * *w.add((ky * g.k[1] + kx) * cp + c) as i32;
                }
            }
            match epilogue_one(acc, *scale.add(c), mode) {
                Ok(q) => *out.add(ox * g.c + c) = q,
                Err(f) => *(out as *mut f32).add(ox * g.c + c) = f,
            }
        }
    }
}
