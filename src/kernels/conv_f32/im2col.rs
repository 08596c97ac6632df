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

/// `dst[j] = src[s0 + j * s]`: one copy for stride 1; for stride 2 (stems) groups of eight
/// (`LD2` on aarch64, shuffles on x86-64); else a gather.
#[inline]
pub(crate) fn copy_strided(src: &[f32], s0: usize, s: usize, dst: &mut [f32]) {
    let n = dst.len();
    if n == 0 {
        return;
    }
    match s {
        1 => dst.copy_from_slice(&src[s0..s0 + n]),
        2 => {
            // Four values from each whole group of eight (one LD2 on aarch64), then the rest:
            // a group may read past the last value used while it stays inside `src`.
            let src = &src[s0..];
            assert!(
                src.len() > 2 * (n - 1),
                "stride-2 copy past the end of its row"
            );
            let groups = (n / 4).min(src.len() / 8);
            // x86-64: SSE2 is the baseline, but LLVM leaves this loop scalar there
            #[cfg(target_arch = "x86_64")]
            {
                use std::arch::x86_64::*;
                for (d, p) in dst
                    .chunks_exact_mut(4)
                    .zip(src.chunks_exact(8))
                    .take(groups)
                {
                    // SAFETY: `p` holds 8 floats and `d` 4; SSE2 is part of x86-64.
                    unsafe {
                        let (a, b) = (_mm_loadu_ps(p.as_ptr()), _mm_loadu_ps(p.as_ptr().add(4)));
                        _mm_storeu_ps(d.as_mut_ptr(), _mm_shuffle_ps::<0b10_00_10_00>(a, b));
                    }
                }
            }
            // aarch64: LLVM leaves it scalar too (9 instructions per 4 values); one LD2 a group
            #[cfg(target_arch = "aarch64")]
            {
                use std::arch::aarch64::*;
                for (d, p) in dst
                    .chunks_exact_mut(4)
                    .zip(src.chunks_exact(8))
                    .take(groups)
                {
                    // SAFETY: `p` holds 8 floats and `d` 4; NEON is part of aarch64.
                    unsafe { vst1q_f32(d.as_mut_ptr(), vld2q_f32(p.as_ptr()).0) };
                }
            }
            #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
            for (d, p) in dst
                .chunks_exact_mut(4)
                .zip(src.chunks_exact(8))
                .take(groups)
            {
                d.copy_from_slice(&[p[0], p[2], p[4], p[6]]);
            }
            for (j, v) in dst.iter_mut().enumerate().skip(4 * groups) {
                *v = src[2 * j];
            }
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

#[cfg(test)]
mod tests {
    use super::copy_strided;

    #[test]
    fn strided_copies_equal_the_gather() {
        let row: Vec<f32> = (0..97).map(|v| v as f32 * 0.5 - 7.0).collect();
        for s in 1..=3 {
            for s0 in [0, 1, 2, 5] {
                // every length that fits, up to the row's end (the last value read is the
                // row's last value for some, so a group of eight must not run past it)
                for n in 1..=(row.len() - 1 - s0) / s + 1 {
                    for len in [s0 + (n - 1) * s + 1, row.len()] {
                        let src = &row[..len];
                        let mut got = vec![f32::NAN; n];
                        copy_strided(src, s0, s, &mut got);
                        let want: Vec<f32> = (0..n).map(|j| src[s0 + j * s]).collect();
                        assert_eq!(got, want, "stride {s}, from {s0}, {n} values of {len}");
                    }
                }
            }
        }
    }
}
