//! im2col for the general convolution path.

use rayon::prelude::*;

/// Geometry of an im2col over one group of `cg` channels.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ColGeom {
    pub cg: usize,
    pub h: usize,
    pub w: usize,
    pub kh: usize,
    pub kw: usize,
    pub sh: usize,
    pub sw: usize,
    pub pt: usize,
    pub pl: usize,
    pub dh: usize,
    pub dw: usize,
    pub oh: usize,
    pub ow: usize,
}

/// Outputs `ox` in `[lo, hi)` with `0 <= ox*s + off - pad < in_len`.
pub(crate) fn valid_range(
    out_len: usize,
    in_len: usize,
    off: usize,
    s: usize,
    pad: usize,
) -> (usize, usize) {
    let lo = if off >= pad {
        0
    } else {
        (pad - off).div_ceil(s)
    }
    .min(out_len);
    let hi = if in_len + pad > off {
        ((in_len - 1 + pad - off) / s + 1).min(out_len)
    } else {
        0
    };
    (lo, hi.max(lo))
}

/// `dst[j] = src[s0 + j * s]`: one copy for stride 1; for stride 2 (stems) pairs, which the
/// compiler turns into shuffles (the stem's packing took 2x less time); else a gather.
#[inline]
pub(crate) fn copy_strided(src: &[f32], s0: usize, s: usize, dst: &mut [f32]) {
    let n = dst.len();
    if n == 0 {
        return;
    }
    match s {
        1 => dst.copy_from_slice(&src[s0..s0 + n]),
        2 => {
            for (v, p) in dst.iter_mut().zip(src[s0..s0 + 2 * n - 1].chunks_exact(2)) {
                *v = p[0];
            }
            dst[n - 1] = src[s0 + 2 * (n - 1)];
        }
        _ => {
            for (j, v) in dst.iter_mut().enumerate() {
                *v = src[s0 + j * s];
            }
        }
    }
}

/// `col[(ci*kh + ky)*kw + kx][oy*ow + ox] = x[ci][oy*sh + ky*dh - pt][ox*sw + kx*dw - pl]`, 0 in
/// the padding. `x` holds the group's `cg` planes; rows are filled in parallel.
pub(crate) fn im2col_f32(x: &[f32], g: &ColGeom, col: &mut [f32]) {
    let ohw = g.oh * g.ow;
    let rows = g.cg * g.kh * g.kw;
    if ohw == 0 || rows == 0 {
        return;
    }
    let min_rows = (8192 / ohw).max(1);
    col[..rows * ohw]
        .par_chunks_mut(ohw)
        .with_min_len(min_rows)
        .enumerate()
        .for_each(|(r, dst)| {
            let ci = r / (g.kh * g.kw);
            let ky = (r / g.kw) % g.kh;
            let kx = r % g.kw;
            let plane = &x[ci * g.h * g.w..(ci + 1) * g.h * g.w];
            let (ox0, ox1) = valid_range(g.ow, g.w, kx * g.dw, g.sw, g.pl);
            for (oy, d) in dst.chunks_exact_mut(g.ow).enumerate() {
                let iy = (oy * g.sh + ky * g.dh) as isize - g.pt as isize;
                if iy < 0 || iy >= g.h as isize || ox1 == ox0 {
                    d.fill(0.0);
                    continue;
                }
                let src = &plane[iy as usize * g.w..(iy as usize + 1) * g.w];
                d[..ox0].fill(0.0);
                d[ox1..].fill(0.0);
                let s0 = ox0 * g.sw + kx * g.dw - g.pl;
                copy_strided(src, s0, g.sw, &mut d[ox0..ox1]);
            }
        });
}
