//! 3x3 stride-1 convolution by Winograd's minimal filtering F(2x2, 3x3) (Lavin and Gray,
//! "Fast Algorithms for Convolutional Neural Networks", 2016; ncnn's `conv3x3s1_winograd23`).
//!
//! Each 2x2 block of outputs comes from a 4x4 input patch: the patch is transformed
//! (`V = Bt d B`, additions only), multiplied point by point with the transformed weights
//! (`U = G g Gt`, once at plan time) and summed over input channels, then transformed back
//! (`Y = At M A`, additions only). Per output pixel that is 4 multiply-adds per (input,
//! output) channel pair instead of 9: 2.25x fewer. The sums over channels are 16 matrix
//! products, one per transform point `xi`, which run on the tiled convs' microkernels
//! ([`super::tiled`]): the weights of point `xi` are a `[M][C]` matrix packed like a 1x1
//! conv's, and a job's 32 patches' transformed inputs are its `[C][NR]` panel.
//!
//! F(2x2, 3x3)'s transforms use only 0, +-1 and +-1/2, so results stay within a few float
//! roundings of the direct sum (tests compare with the reference convolution).
//!
//! Jobs are blocks of [`NR`] patches (2x2 output blocks, row-major over the image), in
//! parallel on rayon's current pool; a job's transformed inputs (16 x C x NR floats, 64 KB
//! at C = 32) stay in L2 while all output channels use them.

use super::epilogue::{bias_act, EpiHint};
use super::tiled::{pack_weights as pack_block, Microkernel, MR, NR};
use crate::kernels::{Isa, SharedOut};
use rayon::prelude::*;

/// Transform points per patch (4 x 4).
const XI: usize = 16;

/// Whether a conv takes F(2x2, 3x3): 3x3, stride 1, no dilation, one group, and enough
/// channels that the 16 point-wise products beat the im2col tiles (their transforms cost
/// about what 4-8 channels of multiply-adds do). `SPECK_WINOGRAD=0` turns it off. Not on
/// 32-bit Arm: LLVM leaves its f32 arithmetic scalar (VFP), where the transforms cost more
/// than the multiply-adds they save (the float detector under qemu: 337.6 -> 347.1 M
/// instructions with it).
pub(crate) fn applies(
    k: [usize; 2],
    strides: [usize; 2],
    dil: [usize; 2],
    group: usize,
    cg: usize,
    m: usize,
) -> bool {
    !cfg!(target_arch = "arm")
        && k == [3, 3]
        && strides == [1, 1]
        && dil == [1, 1]
        && group == 1
        && cg >= 16
        && m >= 8
        && std::env::var("SPECK_WINOGRAD").map_or(true, |v| v.trim() != "0")
}

/// `U = G g Gt` of one 3x3 kernel, row-major 4x4 (`G` = [[1, 0, 0], [1/2, 1/2, 1/2],
/// [1/2, -1/2, 1/2], [0, 0, 1]]).
fn transform_kernel(g: &[f32]) -> [f32; XI] {
    let rows = |v: [f32; 3]| {
        [
            v[0],
            (v[0] + v[1] + v[2]) * 0.5,
            (v[0] - v[1] + v[2]) * 0.5,
            v[2],
        ]
    };
    // G g: the three kernel columns each become four rows
    let cols: [[f32; 4]; 3] = std::array::from_fn(|x| rows([g[x], g[3 + x], g[6 + x]]));
    let mut u = [0.0; XI];
    for i in 0..4 {
        let r = rows([cols[0][i], cols[1][i], cols[2][i]]);
        u[i * 4..i * 4 + 4].copy_from_slice(&r);
    }
    u
}

/// The 16 matrices `U_xi [M][C]` of weights `[M][C][3][3]`, row-major.
fn transformed(w: &[f32], m: usize, c: usize) -> Vec<Vec<f32>> {
    let mut per_xi = vec![vec![0.0f32; m * c]; XI];
    for (mc, g) in w.chunks_exact(9).take(m * c).enumerate() {
        for (xi, &v) in transform_kernel(g).iter().enumerate() {
            per_xi[xi][mc] = v;
        }
    }
    per_xi
}

/// Weights `[M][C][3][3]` as 16 matrices `U_xi [M][C]`, each packed for the microkernel
/// (`[ceil(M/MR)][C][MR]`), one after another.
pub(crate) fn pack_weights(w: &[f32], m: usize, c: usize) -> Vec<f32> {
    transformed(w, m, c)
        .iter()
        .flat_map(|u| pack_block(u, m, c))
        .collect()
}

/// [`pack_weights`] rounded to binary16, for the fp16 microkernel
/// ([`super::tiled_fp16::pack_weights_f16`]).
pub(crate) fn pack_weights_f16(w: &[f32], m: usize, c: usize) -> Vec<u16> {
    transformed(w, m, c)
        .iter()
        .flat_map(|u| super::tiled_fp16::pack_weights_f16(u, m, c))
        .collect()
}

/// The transformed weights and the arithmetic of the point-wise products.
pub(crate) enum WinoWeights<'a> {
    /// [`pack_weights`], multiplied by an f32 microkernel
    F32 {
        packed: &'a [f32],
        kernel: Microkernel,
    },
    /// [`pack_weights_f16`]: the transformed patches are rounded to binary16 and multiplied in
    /// fp16 arithmetic ([`super::tiled_fp16`]); transforms, bias and activation stay f32
    F16(&'a [u16]),
}

/// Everything [`run_winograd`] needs besides the data.
pub(crate) struct WinogradConv<'a> {
    /// input channels, height, width
    pub chw: [usize; 3],
    /// output height and width
    pub out_hw: [usize; 2],
    /// top and left padding
    pub pads: [usize; 2],
    /// output channels
    pub m: usize,
    pub weights: WinoWeights<'a>,
    pub bias: &'a [f32],
    pub hint: EpiHint,
}

/// The runs of patches `t0 .. t0 + nt` (row-major over a grid `tw` wide) within one patch
/// row: `(patch row, first patch column, count, index of the first within the job)`.
fn runs(t0: usize, nt: usize, tw: usize) -> impl Iterator<Item = (usize, usize, usize, usize)> {
    let mut t = t0;
    std::iter::from_fn(move || {
        (t < t0 + nt).then(|| {
            let (ty, tx) = (t / tw, t % tw);
            let len = (tw - tx).min(t0 + nt - t);
            let run = (ty, tx, len, t - t0);
            t += len;
            run
        })
    })
}

/// A worker's buffers, reused across its jobs (nothing is zeroed per job).
struct Scratch {
    /// transformed inputs `[XI][C][NR]`: the 16 panels
    v: Vec<f32>,
    /// the panels in binary16 (fp16 arithmetic only)
    half: Vec<u16>,
    /// the microkernel's sums for one block of MR output channels, per point
    acc: Box<[[[f32; NR]; MR]; XI]>,
    /// a run's 4 input rows (`2 * NR + 2` columns), and their column transforms `[r][k][j]`
    d: [[f32; 2 * NR + 2]; 4],
    s: [[[f32; NR]; 4]; 4],
}

/// `v[xi][ci][j0 + j] = (Bt d B)[xi]` for the patches of one run of one channel (`img` its
/// `h x w` plane), `Bt` = [[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]].
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn transform_run(
    img: &[f32],
    [h, w]: [usize; 2],
    [pt, pl]: [usize; 2],
    (ty, tx, len, j0): (usize, usize, usize, usize),
    c: usize,
    ci: usize,
    sc: &mut Scratch,
) {
    let Scratch { v, d, s, .. } = sc;
    // the run's 4 input rows, columns 2 * tx - pl .. + 2 * len + 2, zero outside the image
    let x0 = (2 * tx) as isize - pl as isize;
    let cols = 2 * len + 2;
    let lo = (-x0).clamp(0, cols as isize) as usize;
    let hi = (w as isize - x0).clamp(lo as isize, cols as isize) as usize;
    for (r, dr) in d.iter_mut().enumerate() {
        let iy = (2 * ty + r) as isize - pt as isize;
        if iy < 0 || iy as usize >= h {
            dr[..cols].fill(0.0);
            continue;
        }
        let row = &img[iy as usize * w..][..w];
        dr[..lo].fill(0.0);
        dr[lo..hi].copy_from_slice(&row[(x0 + lo as isize) as usize..][..hi - lo]);
        dr[hi..cols].fill(0.0);
    }
    // d B for each row: s[r][k][j] from the even and odd columns (e0 e1 e2 e3 of patch j are
    // ev[j] od[j] ev[j + 1] od[j + 1]); zipped slices, so every loop vectorises
    let (mut ev, mut od) = ([0.0f32; NR + 1], [0.0f32; NR + 1]);
    for (sr, dr) in s.iter_mut().zip(d.iter()) {
        let pairs = dr[..cols].chunks_exact(2);
        for ((e, o), p) in ev.iter_mut().zip(od.iter_mut()).zip(pairs) {
            *e = p[0];
            *o = p[1];
        }
        let (e0, e2, o1, o3) = (&ev[..len], &ev[1..=len], &od[..len], &od[1..=len]);
        let [s0, s1, s2, s3] = sr;
        for ((o, &a), &b) in s0.iter_mut().zip(e0).zip(e2) {
            *o = a - b;
        }
        for ((o, &a), &b) in s1.iter_mut().zip(o1).zip(e2) {
            *o = a + b;
        }
        for ((o, &a), &b) in s2.iter_mut().zip(e2).zip(o1) {
            *o = a - b;
        }
        for ((o, &a), &b) in s3.iter_mut().zip(o1).zip(o3) {
            *o = a - b;
        }
    }
    // Bt (d B): rows (k picks the column transform in each row's s[r])
    #[allow(clippy::needless_range_loop)]
    for k in 0..4 {
        let at = |i: usize| ((i * 4 + k) * c + ci) * NR + j0;
        let (s0, s1, s2, s3) = (
            &s[0][k][..len],
            &s[1][k][..len],
            &s[2][k][..len],
            &s[3][k][..len],
        );
        let rows: [(usize, &[f32], &[f32], bool); 4] = [
            (0, s0, s2, false),
            (1, s1, s2, true),
            (2, s2, s1, false),
            (3, s1, s3, false),
        ];
        for (i, a, b, add) in rows {
            let o = &mut v[at(i)..at(i) + len];
            if add {
                for ((o, &a), &b) in o.iter_mut().zip(a).zip(b) {
                    *o = a + b;
                }
            } else {
                for ((o, &a), &b) in o.iter_mut().zip(a).zip(b) {
                    *o = a - b;
                }
            }
        }
    }
}

/// One job: patches `bi * NR ..` of image `ni` (transforms, the 16 products per block of
/// output channels, the output transform and epilogue).
///
/// # Safety
/// `out` must be `y` of [`run_winograd`]; no other job writes these patches' outputs.
#[inline(always)]
unsafe fn job<F: Fn(f32) -> f32>(
    t: &WinogradConv,
    x: &[f32],
    out: SharedOut,
    ni: usize,
    bi: usize,
    sc: &mut Scratch,
    act: &F,
) {
    let [c, h, w] = t.chw;
    let [oh, ow] = t.out_hw;
    let tw = ow.div_ceil(2);
    let patches = oh.div_ceil(2) * tw;
    let wlen = t.m.div_ceil(MR) * c * MR;
    let t0 = bi * NR;
    let nt = NR.min(patches - t0);
    let xi = &x[ni * c * h * w..(ni + 1) * c * h * w];
    for ci in 0..c {
        let img = &xi[ci * h * w..(ci + 1) * h * w];
        for run in runs(t0, nt, tw) {
            transform_run(img, [h, w], t.pads, run, c, ci, sc);
        }
    }
    if let WinoWeights::F16(_) = t.weights {
        for (v, half) in
            sc.v.chunks_exact(c * NR)
                .zip(sc.half.chunks_exact_mut(c * NR))
        {
            super::tiled_fp16::to_f16(v, NR, c, half);
        }
    }
    for b in 0..t.m.div_ceil(MR) {
        for (p, a) in sc.acc.iter_mut().enumerate() {
            // SAFETY: the panel holds c rows of NR values for point p; the packed block holds
            // c * MR weights; fp16 weights are only planned where the CPU has fp16.
            match t.weights {
                WinoWeights::F32 { packed, kernel } => {
                    let wp = &packed[p * wlen + b * c * MR..];
                    kernel(c, wp, sc.v[p * c * NR..].as_ptr(), NR, a)
                }
                WinoWeights::F16(packed) => {
                    let wp = &packed[p * wlen + b * c * MR..];
                    super::tiled_fp16::microkernel(c, wp, &sc.half[p * c * NR..], a)
                }
            }
        }
        for r in 0..MR.min(t.m - b * MR) {
            let ch = b * MR + r;
            let plane = out.at((ni * t.m + ch) * oh * ow);
            for run in runs(t0, nt, tw) {
                store_run(&sc.acc, r, run, [oh, ow], plane, t.bias[ch], act, t.hint);
            }
        }
    }
}

/// [`job`] compiled with `$features` enabled, so that LLVM vectorises its transforms that wide.
macro_rules! job_for {
    ($name:ident, $features:literal) => {
        #[cfg(target_arch = "x86_64")]
        #[target_feature(enable = $features)]
        #[allow(clippy::incompatible_msrv)]
        unsafe fn $name<F: Fn(f32) -> f32>(
            t: &WinogradConv,
            x: &[f32],
            out: SharedOut,
            ni: usize,
            bi: usize,
            sc: &mut Scratch,
            act: &F,
        ) {
            job(t, x, out, ni, bi, sc, act)
        }
    };
}
job_for!(job_avx512, "avx512f,avx2,fma");
job_for!(job_avx2, "avx2,fma");

/// Runs the convolution of `n` images: `x` `[n][C][h][w]` into `y` `[n][m][oh][ow]`, with
/// `act(sum + bias)` on the way out. The transforms are compiled for the ISA of the
/// microkernel (LLVM vectorises them 16 wide with AVX-512, 8 with AVX2).
pub(crate) fn run_winograd<F: Fn(f32) -> f32 + Sync>(
    t: &WinogradConv,
    isa: Isa,
    n: usize,
    x: &[f32],
    y: &mut [f32],
    act: &F,
) {
    let [c, h, w] = t.chw;
    let [oh, ow] = t.out_hw;
    let blocks = (oh.div_ceil(2) * ow.div_ceil(2)).div_ceil(NR);
    let wlen = t.m.div_ceil(MR) * c * MR;
    assert!(x.len() >= n * c * h * w && y.len() >= n * t.m * oh * ow);
    let (packed_len, f16) = match t.weights {
        WinoWeights::F32 { packed, .. } => (packed.len(), false),
        WinoWeights::F16(packed) => (packed.len(), true),
    };
    assert!(packed_len >= XI * wlen && t.bias.len() >= t.m);
    assert!(
        !f16 || super::tiled_fp16::supported(),
        "fp16 convolution planned on a CPU without fp16 arithmetic"
    );
    let out = SharedOut(y.as_mut_ptr());
    // multiply-adds of one job: 16 points x M x C x NR
    let per_job = (XI * t.m * c * NR).max(1);
    (0..n * blocks)
        .into_par_iter()
        .with_min_len((1 << 18) / per_job + 1)
        .for_each_init(
            || Scratch {
                v: vec![0.0; XI * c * NR],
                half: vec![0; if f16 { XI * c * NR } else { 0 }],
                acc: Box::new([[[0.0; NR]; MR]; XI]),
                d: [[0.0; 2 * NR + 2]; 4],
                s: [[[0.0; NR]; 4]; 4],
            },
            |sc, j| {
                let (ni, bi) = (j / blocks, j % blocks);
                // SAFETY: job j alone writes its patches' outputs; the ISA's features are
                // there (the microkernel was chosen for it).
                unsafe {
                    match isa {
                        #[cfg(target_arch = "x86_64")]
                        Isa::Avx512 if Isa::Avx512.supported() => {
                            job_avx512(t, x, out, ni, bi, sc, act)
                        }
                        #[cfg(target_arch = "x86_64")]
                        Isa::Avx512 | Isa::Avx2 if Isa::Avx2.supported() => {
                            job_avx2(t, x, out, ni, bi, sc, act)
                        }
                        _ => job(t, x, out, ni, bi, sc, act),
                    }
                }
            },
        );
}

/// `Y = At M A` (`At` = [[1, 1, 1, 0], [0, 1, -1, -1]]) of one output channel's patches in a
/// run, `act(Y + bias)` into its output rows (clipped at odd edges).
///
/// # Safety
/// `plane` must be the channel's `oh x ow` output, writable.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
unsafe fn store_run<F: Fn(f32) -> f32>(
    acc: &[[[f32; NR]; MR]; XI],
    r: usize,
    (ty, tx, len, j0): (usize, usize, usize, usize),
    [oh, ow]: [usize; 2],
    plane: *mut f32,
    bias: f32,
    act: &F,
    hint: EpiHint,
) {
    // At M: two rows of four, over the run's patches (zipped slices: vectorises over j)
    let mut a = [[[0.0f32; NR]; 4]; 2];
    for k in 0..4 {
        let [m0, m1, m2, m3] = [0, 1, 2, 3].map(|i| &acc[i * 4 + k][r][j0..j0 + len]);
        let ms = m0.iter().zip(m1).zip(m2.iter().zip(m3));
        let [a0, a1] = &mut a;
        for ((o0, o1), ((&v0, &v1), (&v2, &v3))) in a0[k].iter_mut().zip(a1[k].iter_mut()).zip(ms) {
            *o0 = v0 + v1 + v2;
            *o1 = v1 - v2 - v3;
        }
    }
    // (At M) A: the two output rows of the run, columns interleaved
    let mut rows = [[0.0f32; 2 * NR]; 2];
    for (row, [a0, a1, a2, a3]) in rows.iter_mut().zip(&a) {
        let px = row[..2 * len].chunks_exact_mut(2);
        for (p, ((&v0, &v1), (&v2, &v3))) in px.zip(a0.iter().zip(a1).zip(a2.iter().zip(a3))) {
            p[0] = v0 + v1 + v2;
            p[1] = v1 - v2 - v3;
        }
    }
    let (x0, cols) = (2 * tx, (2 * len).min(ow - 2 * tx));
    for (dy, row) in rows.iter().enumerate() {
        let oy = 2 * ty + dy;
        if oy >= oh {
            break;
        }
        let dst = std::slice::from_raw_parts_mut(plane.add(oy * ow + x0), cols);
        bias_act(dst, row, bias, act, hint);
    }
}
