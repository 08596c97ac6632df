//! aarch64 NEON depthwise planes, `dwconv_f32_<K>x<K>s<S>_neon` (K = 3, 5, 7, 11; S = 1, 2):
//! every output row of one plane whose windows all lie inside it (a padded conv's planes are
//! copied into a zero-bordered buffer first, see `dwconv_f32_plane`).
//!
//! - The K*K taps are loaded into the lanes of ceil(K*K / 4) vectors once per plane and used
//!   by lane (`FMLA` by element). A kernel per row had reloaded them for every row: 7- and
//!   14-wide rows are most of MobileNetV3's depthwise work.
//! - 3x3, 5x5 and 7x7 stride 1, two output rows share one pass over their K + S input rows,
//!   so each input vector is loaded once for both (3x3 stride 1: 4 row loads for 6 tap rows).
//!   7x7 stride 2 and 11x11 run one row at a time: LLVM leaves larger tap loops rolled, a lane
//!   picked at run time, which it still does for 11x11 (31 tap vectors).
//! - Stride 1 computes 8 outputs of a row per step at 3x3 and 4 otherwise, from unaligned
//!   loads; stride 2 computes 4 from `LD2` de-interleaved pairs (even and odd taps of a row in
//!   one load). A ragged row end recomputes the row's last 4 outputs, an odd last row the pair
//!   ending at it, storing the same values again.
//! - The bias starts the accumulators, and Relu or HardSwish run on the registers before the
//!   store (the arithmetic of [`act_fused`]), so each output is written once; each kernel is
//!   compiled once per activation, so the stores do not branch on it.
//! - Scalar ([`dw_kxk_scalar`] with [`act_fused`]): rows of fewer than 4 outputs, a one-row
//!   plane where two rows are computed at a time, and stride-2 steps whose last `LD2` would
//!   read past the end of `x`.

use super::super::epilogue::{act_fused, act_neon, EpiHint};
use super::{dw_kxk_scalar, DwRow};
use std::arch::aarch64::*;

/// A plane kernel: `(x, w, oh, ow, taps, bias, hint, y)`; `hint` must have a vector form
/// ([`EpiHint::has_vector_form`]): the caller applies any other activation afterwards.
pub(super) type PlaneFn = unsafe fn(&[f32], usize, usize, usize, &[f32], f32, EpiHint, &mut [f32]);

/// The plane kernel of a NEON row kernel choice.
pub(super) fn plane_kernel(row: DwRow) -> Option<PlaneFn> {
    Some(match row {
        DwRow::K3S1Neon => dw_plane_neon::<3, 1, 2> as PlaneFn,
        DwRow::K3S2Neon => dw_plane_neon::<3, 2, 2>,
        DwRow::K5S1Neon => dw_plane_neon::<5, 1, 2>,
        DwRow::K5S2Neon => dw_plane_neon::<5, 2, 2>,
        DwRow::K7S1Neon => dw_plane_neon::<7, 1, 2>,
        DwRow::K7S2Neon => dw_plane_neon::<7, 2, 1>,
        DwRow::K11S1Neon => dw_plane_neon::<11, 1, 1>,
        DwRow::K11S2Neon => dw_plane_neon::<11, 2, 1>,
        _ => return None,
    })
}

/// The activations with a vector form, as a const parameter: each plane kernel is compiled
/// once per activation, so the stores branch on nothing (a run-time hint cost 4 to 5
/// compares and branches per stored vector).
const IDENTITY: u8 = 0;
const RELU: u8 = 1;
const HARD_SWISH: u8 = 2;

/// The hint of an activation constant.
const fn hint_of(a: u8) -> EpiHint {
    match a {
        RELU => EpiHint::Relu,
        HARD_SWISH => EpiHint::HardSwish,
        _ => EpiHint::Identity,
    }
}

/// The taps in vector lanes and the bias.
struct Taps {
    /// tap `t` is lane `t % 4` of `v[t / 4]`; up to 11x11 in 31 vectors
    v: [float32x4_t; 31],
    bias: float32x4_t,
}

impl Taps {
    /// `acc + x * tap t` (the match folds away once the tap loops are unrolled).
    #[inline(always)]
    unsafe fn fma(&self, acc: float32x4_t, x: float32x4_t, t: usize) -> float32x4_t {
        let v = self.v[t / 4];
        match t % 4 {
            0 => vfmaq_laneq_f32::<0>(acc, x, v),
            1 => vfmaq_laneq_f32::<1>(acc, x, v),
            2 => vfmaq_laneq_f32::<2>(acc, x, v),
            _ => vfmaq_laneq_f32::<3>(acc, x, v),
        }
    }
}

/// Activation `A` on 4 sums ([`act_neon`]).
#[inline(always)]
fn act<const A: u8>(v: float32x4_t) -> float32x4_t {
    act_neon(v, hint_of(A))
}

/// Stride 1: outputs `[i, i + 4 * NV)` of `RR` consecutive rows, from input row `p` (the first
/// row's window at column `i`), rows `w` apart. Input row `r` feeds output row `rr` through
/// tap row `r - rr`.
#[inline(always)]
unsafe fn block_s1<const K: usize, const RR: usize, const NV: usize>(
    t: &Taps,
    p: *const f32,
    w: usize,
) -> [[float32x4_t; NV]; RR] {
    let mut acc = [[t.bias; NV]; RR];
    for r in 0..K + RR - 1 {
        let rp = p.add(r * w);
        for kx in 0..K {
            #[allow(clippy::needless_range_loop)] // `v` indexes every row's accumulators
            for v in 0..NV {
                let xv = vld1q_f32(rp.add(kx + 4 * v));
                for (rr, a) in acc.iter_mut().enumerate() {
                    if r >= rr && r - rr < K {
                        a[v] = t.fma(a[v], xv, (r - rr) * K + kx);
                    }
                }
            }
        }
    }
    acc
}

/// Stride 2: 4 outputs of `RR` rows two input rows apart, from `LD2` pairs at input row `p`
/// (the window of the first output).
#[inline(always)]
unsafe fn block_s2<const K: usize, const RR: usize>(
    t: &Taps,
    p: *const f32,
    w: usize,
) -> [float32x4_t; RR] {
    let mut acc = [t.bias; RR];
    for r in 0..K + 2 * (RR - 1) {
        let rp = p.add(r * w);
        let mut kx = 0;
        while kx < K {
            let pair = vld2q_f32(rp.add(kx));
            for (rr, a) in acc.iter_mut().enumerate() {
                if r >= 2 * rr && r - 2 * rr < K {
                    let ky = r - 2 * rr;
                    *a = t.fma(*a, pair.0, ky * K + kx);
                    if kx + 1 < K {
                        *a = t.fma(*a, pair.1, ky * K + kx + 1);
                    }
                }
            }
            kx += 2;
        }
    }
    acc
}

/// Every output row of one plane. `x` holds rows `w` floats apart with every window inside;
/// `y` is `[oh][ow]`.
///
/// # Safety
/// NEON (every aarch64 CPU); the bounds are checked.
#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "neon")]
unsafe fn dw_plane_neon<const K: usize, const S: usize, const R: usize>(
    x: &[f32],
    w: usize,
    oh: usize,
    ow: usize,
    wts: &[f32],
    bias: f32,
    hint: EpiHint,
    y: &mut [f32],
) {
    debug_assert!(hint.has_vector_form());
    match hint {
        EpiHint::Relu => plane::<K, S, R, RELU>(x, w, oh, ow, wts, bias, y),
        EpiHint::HardSwish => plane::<K, S, R, HARD_SWISH>(x, w, oh, ow, wts, bias, y),
        _ => plane::<K, S, R, IDENTITY>(x, w, oh, ow, wts, bias, y),
    }
}

/// [`dw_plane_neon`] with activation `A`, in blocks of `R` output rows.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
unsafe fn plane<const K: usize, const S: usize, const R: usize, const A: u8>(
    x: &[f32],
    w: usize,
    oh: usize,
    ow: usize,
    wts: &[f32],
    bias: f32,
    y: &mut [f32],
) {
    if oh == 0 || ow == 0 {
        return;
    }
    // one check for the plane: the last window ends inside `x`; every `ld` below reads inside
    // some output's window, except stride 2's, which are checked per step
    assert!(
        (ow - 1) * S + K <= w
            && ((oh - 1) * S + K - 1) * w + (ow - 1) * S + K <= x.len()
            && y.len() >= oh * ow
            && wts.len() >= K * K,
        "dwconv neon plane out of bounds"
    );
    // the unrolled tap loops read only the first ceil(K*K / 4) vectors, so the rest fold away
    let t = Taps {
        v: std::array::from_fn(|j| {
            if 4 * j + 4 <= K * K {
                vld1q_f32(wts.as_ptr().add(4 * j))
            } else if 4 * j < K * K {
                let mut tail = [0f32; 4];
                tail[..K * K - 4 * j].copy_from_slice(&wts[4 * j..K * K]);
                vld1q_f32(tail.as_ptr())
            } else {
                vdupq_n_f32(0.0)
            }
        }),
        bias: vdupq_n_f32(bias),
    };
    let mut oy = 0;
    if ow >= 4 && oh >= R {
        while oy + R <= oh {
            rows::<K, S, R, A>(&t, x, w, oy, ow, wts, bias, y);
            oy += R;
        }
        if oy < oh {
            // an odd last row: the block ending at it (its first row's values again)
            rows::<K, S, R, A>(&t, x, w, oh - R, ow, wts, bias, y);
            oy = oh;
        }
    }
    // what the vector loop left: rows under 4 outputs, or a single row at R = 2
    for r in oy..oh {
        scalar_row::<K, S>(x, w, r, 0, wts, bias, hint_of(A), y, ow);
    }
}

/// Output rows `[oy0, oy0 + RR)` of the plane (`ow >= 4`).
#[allow(clippy::too_many_arguments)]
#[inline(always)]
unsafe fn rows<const K: usize, const S: usize, const RR: usize, const A: u8>(
    t: &Taps,
    x: &[f32],
    w: usize,
    oy0: usize,
    ow: usize,
    wts: &[f32],
    bias: f32,
    y: &mut [f32],
) {
    let p = x.as_ptr().add(oy0 * S * w);
    let out = y.as_mut_ptr().add(oy0 * ow);
    let mut i = 0;
    if S == 1 {
        // 8 outputs a step at 3x3 only: LLVM leaves the larger kernels' 8-wide tap loops
        // rolled (a lane chosen at run time), and 4 wide loads as little per multiply-add
        while K == 3 && i + 8 <= ow {
            let acc = block_s1::<K, RR, 2>(t, p.add(i), w);
            for (rr, a) in acc.iter().enumerate() {
                vst1q_f32(out.add(rr * ow + i), act::<A>(a[0]));
                vst1q_f32(out.add(rr * ow + i + 4), act::<A>(a[1]));
            }
            i += 8;
        }
        while i < ow {
            // the last 4 again where fewer are left (the same values)
            let i4 = if i + 4 > ow { ow - 4 } else { i };
            let acc = block_s1::<K, RR, 1>(t, p.add(i4), w);
            for (rr, a) in acc.iter().enumerate() {
                vst1q_f32(out.add(rr * ow + i4), act::<A>(a[0]));
            }
            i = i4 + 4;
        }
    } else {
        // `LD2` at the last tap column reads 8 floats from `2 * i + K - 1`: one past the
        // 4th output's window when K is odd
        let last_row = (oy0 * S + K - 1 + S * (RR - 1)) * w;
        let fits = |i: usize| last_row + S * i + K + 6 < x.len();
        while i < ow {
            let i4 = if i + 4 > ow { ow - 4 } else { i };
            if !fits(i4) {
                break;
            }
            let acc = block_s2::<K, RR>(t, p.add(S * i4), w);
            for (rr, a) in acc.iter().enumerate() {
                vst1q_f32(out.add(rr * ow + i4), act::<A>(*a));
            }
            i = i4 + 4;
        }
        for rr in 0..RR {
            scalar_row::<K, S>(x, w, oy0 + rr, i, wts, bias, hint_of(A), y, ow);
        }
    }
}

/// `rows` rows of `cols` floats from `src` (rows `ss` apart) to `dst` (rows `ds` apart): a
/// plane into its zero-bordered copy. `copy_from_slice` calls `memcpy`, whose call and size
/// dispatch cost more than the copy on the 7- to 56-float rows of most planes (MobileNetV3-Large
/// copies about 77 K rows a run); rows of 4 to 64 floats go in vector registers here, the last
/// 4 floats again where fewer than 4 are left (the same values), with the bounds checked once.
pub(super) fn copy_rows(
    dst: &mut [f32],
    ds: usize,
    src: &[f32],
    ss: usize,
    rows: usize,
    cols: usize,
) {
    if rows == 0 || cols == 0 {
        return;
    }
    if !(4..=64).contains(&cols) {
        for r in 0..rows {
            dst[r * ds..][..cols].copy_from_slice(&src[r * ss..][..cols]);
        }
        return;
    }
    assert!(
        (rows - 1) * ds + cols <= dst.len() && (rows - 1) * ss + cols <= src.len(),
        "plane row copy out of bounds"
    );
    let (mut d, mut s) = (dst.as_mut_ptr(), src.as_ptr());
    // the same steps for every row: `eights` of 8 floats, a 4 if `four`, the last 4 again if
    // `ragged` (pointers stepped, not indexed: post-indexed loads and stores)
    let (eights, four, ragged) = (cols / 8, cols % 8 >= 4, cols % 4 != 0);
    // SAFETY: row `r`'s loads and stores cover floats `[r * ss, r * ss + cols)` of `src` and
    // `[r * ds, r * ds + cols)` of `dst`, inside both (asserted).
    unsafe {
        for _ in 0..rows {
            let (mut dp, mut sp) = (d, s);
            for _ in 0..eights {
                vst1q_f32_x2(dp, vld1q_f32_x2(sp));
                dp = dp.add(8);
                sp = sp.add(8);
            }
            if four {
                vst1q_f32(dp, vld1q_f32(sp));
            }
            if ragged {
                vst1q_f32(d.add(cols - 4), vld1q_f32(s.add(cols - 4)));
            }
            d = d.add(ds);
            s = s.add(ss);
        }
    }
}

/// Outputs `i0..ow` of output row `oy`, scalar, with the same activation.
#[allow(clippy::too_many_arguments)]
#[inline(never)]
fn scalar_row<const K: usize, const S: usize>(
    x: &[f32],
    w: usize,
    oy: usize,
    i0: usize,
    wts: &[f32],
    bias: f32,
    hint: EpiHint,
    y: &mut [f32],
    ow: usize,
) {
    if i0 >= ow {
        return;
    }
    let row = &mut y[oy * ow + i0..(oy + 1) * ow];
    dw_kxk_scalar::<K, S>(x, w, oy * S, i0 * S, wts, bias, row);
    for v in row {
        *v = act_fused(*v, hint);
    }
}

#[cfg(test)]
mod tests {
    /// Every row length (the vector path's 4 to 64 and `memcpy`'s either side) copies its
    /// floats and nothing beyond them, rows apart in both buffers.
    #[test]
    fn copy_rows_copies_exactly_the_rows() {
        for cols in 0..=70 {
            for rows in [1, 3] {
                let (ss, ds) = (cols + 2, cols + 5);
                let src: Vec<f32> = (0..rows * ss).map(|i| i as f32 + 0.5).collect();
                let mut buf = vec![-1.0f32; 3 + rows * ds];
                super::copy_rows(&mut buf[3..], ds, &src, ss, rows, cols);
                let mut want = vec![-1.0f32; buf.len()];
                for r in 0..rows {
                    for c in 0..cols {
                        want[3 + r * ds + c] = src[r * ss + c];
                    }
                }
                assert_eq!(buf, want, "cols {cols} rows {rows}");
            }
        }
    }
}
