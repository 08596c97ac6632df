//! 3x3 stride-1 convolution by Winograd's minimal filtering (Lavin and Gray, "Fast
//! Algorithms for Convolutional Neural Networks", 2016; ncnn's `conv3x3s1_winograd23` and
//! `conv3x3s1_winograd43`), in two sizes: F(2x2, 3x3) and F(4x4, 3x3).
//!
//! Each `T x T` block of outputs comes from a `(T + 2) x (T + 2)` input patch: the patch is
//! transformed (`V = Bt d B`, additions and small constants), multiplied point by point with
//! the transformed weights (`U = G g Gt`, once at plan time) and summed over input channels,
//! then transformed back (`Y = At M A`). Per output pixel that is `(T + 2)^2 / T^2`
//! multiply-adds per (input, output) channel pair instead of 9: 4 for F(2x2, 3x3) (2.25x
//! fewer), 2.25 for F(4x4, 3x3) (4x fewer). The sums over channels are `(T + 2)^2` matrix
//! products, one per transform point `xi`, which run on the tiled convs' microkernels
//! ([`super::tiled`]): the weights of point `xi` are a `[M][C]` matrix packed like a 1x1
//! conv's, and a job's 32 patches' transformed inputs are its `[C][NR]` panel.
//!
//! F(2x2, 3x3)'s transforms use only 0, +-1 and +-1/2, so its results stay within a few
//! float roundings of the direct sum; F(4x4, 3x3)'s use up to 8 and 1/24 and lose a few more
//! bits (both well within the tests' bound against the reference convolution). F(4x4, 3x3)
//! takes maps of at least 8 x 8, F(2x2, 3x3) smaller ones. Products in binary16 (`fp16`) only
//! with F(2x2, 3x3): binary16's 11 bits leave no room for F(4x4, 3x3)'s larger constants
//! (`scripts/winograd_fp16_error.py`: about 13x F(2x2, 3x3)'s error), and F(4x4, 3x3) in f32
//! costs about what F(2x2, 3x3) in fp16 does (the int8 detector with `--fp16` under qemu's
//! Cortex-A76: 156.1 M instructions per inference, against 158.7 M with F(2x2, 3x3) in fp16 on
//! this file's transforms, about 154.5 M on session 26's hand-written ones), and is exact, so a
//! map that takes F(4x4, 3x3) keeps f32 products even when fp16 is asked for.
//!
//! Jobs are blocks of [`NR`] patches (row-major over the image), in parallel on rayon's
//! current pool; a job's transformed inputs (`(T + 2)^2 x C x NR` floats: 64 KB for F(2x2,
//! 3x3) at C = 32, 144 KB for F(4x4, 3x3)) stay in L2 while all output channels use them.

use super::epilogue::{bias_act, EpiHint};
use super::tiled::{pack_weights as pack_block, Microkernel, MR, NR};
use crate::kernels::{Isa, SharedOut};

/// Which Winograd transform a conv runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Tile {
    /// F(2x2, 3x3): 2x2 outputs from 4x4 patches, 16 points
    F23,
    /// F(4x4, 3x3): 4x4 outputs from 6x6 patches, 36 points
    F43,
}

impl Tile {
    /// The transform for an `oh x ow` output: F(4x4, 3x3) from 8 x 8 up (smaller maps would
    /// mostly multiply padding).
    pub(crate) fn select(oh: usize, ow: usize) -> Tile {
        if oh >= 8 && ow >= 8 {
            Tile::F43
        } else {
            Tile::F23
        }
    }
}

/// Whether a conv takes Winograd: 3x3, stride 1, no dilation, one group, and enough
/// channels that the point-wise products beat the im2col tiles (their transforms cost about
/// what 4-8 channels of multiply-adds do). `SPECK_WINOGRAD=0` turns it off. Not on 32-bit
/// Arm: LLVM leaves its f32 arithmetic scalar (VFP), where the transforms cost more than the
/// multiply-adds they save (the float detector under qemu: 337.6 -> 347.1 M instructions
/// with F(2x2, 3x3)).
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

/// One Winograd transform: its sizes and its three transforms.
trait Variant {
    /// outputs per patch side
    const T: usize;
    /// transform points per patch, `(T + 2)^2`
    const XI: usize;
    /// `U = G g Gt` of one 3x3 kernel `g`, row-major `(T + 2) x (T + 2)` in `u`
    fn transform_kernel(g: &[f32], u: &mut [f32]);
    /// `Bt x` for the `T + 2` inputs `x[i][j]` of patches `j`, into `y[k][j]` (`len` patches)
    fn bt<Y: AsMut<[f32]>>(x: &[&[f32]], y: &mut [Y], len: usize);
    /// `At x` for the `T + 2` inputs `x[i][j]`, into `y[k][j]` (`len` patches)
    fn at(x: &[&[f32]], y: &mut [[f32; NR]], len: usize);
}

/// F(2x2, 3x3): `G` = [[1, 0, 0], [1/2, 1/2, 1/2], [1/2, -1/2, 1/2], [0, 0, 1]], `Bt` =
/// [[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]], `At` = [[1, 1, 1, 0], [0, 1,
/// -1, -1]].
struct F23;

/// F(4x4, 3x3) on the points 0, +-1, +-2: `G` = [[1/4, 0, 0], [-1/6, -1/6, -1/6], [-1/6,
/// 1/6, -1/6], [1/24, 1/12, 1/6], [1/24, -1/12, 1/6], [0, 0, 1]], `Bt` = [[4, 0, -5, 0, 1,
/// 0], [0, -4, -4, 1, 1, 0], [0, 4, -4, -1, 1, 0], [0, -2, -1, 2, 1, 0], [0, 2, -1, -2, 1, 0],
/// [0, 4, 0, -5, 0, 1]], `At` = [[1, 1, 1, 1, 1, 0], [0, 1, -1, 2, -2, 0], [0, 1, 1, 4, 4,
/// 0], [0, 1, -1, 8, -8, 1]].
struct F43;

/// `G g Gt` of a 3x3 kernel for a `p x 3` matrix `G` (in f64, rounded once).
fn g_g_gt(gm: &[[f64; 3]], g: &[f32], u: &mut [f32]) {
    let p = gm.len();
    for i in 0..p {
        for k in 0..p {
            let mut v = 0.0f64;
            for y in 0..3 {
                for x in 0..3 {
                    v += gm[i][y] * g[y * 3 + x] as f64 * gm[k][x];
                }
            }
            u[i * p + k] = v as f32;
        }
    }
}

/// `out[j] = f(ins..)[j]` over `len` patches (zipped slices, so it vectorises).
macro_rules! lanes {
    ($out:expr, $len:expr, [$($v:ident = $s:expr),+] => $e:expr) => {{
        let out = &mut $out.as_mut()[..$len];
        $(let $v = &$s[..$len];)+
        for j in 0..$len {
            $(let $v = $v[j];)+
            out[j] = $e;
        }
    }};
}

impl Variant for F23 {
    const T: usize = 2;
    const XI: usize = 16;

    fn transform_kernel(g: &[f32], u: &mut [f32]) {
        let gm = [
            [1.0, 0.0, 0.0],
            [0.5, 0.5, 0.5],
            [0.5, -0.5, 0.5],
            [0.0, 0.0, 1.0],
        ];
        g_g_gt(&gm, g, u);
    }

    #[inline(always)]
    fn bt<Y: AsMut<[f32]>>(x: &[&[f32]], y: &mut [Y], len: usize) {
        let [x0, x1, x2, x3] = [x[0], x[1], x[2], x[3]];
        lanes!(y[0], len, [a = x0, b = x2] => a - b);
        lanes!(y[1], len, [a = x1, b = x2] => a + b);
        lanes!(y[2], len, [a = x2, b = x1] => a - b);
        lanes!(y[3], len, [a = x1, b = x3] => a - b);
    }

    #[inline(always)]
    fn at(x: &[&[f32]], y: &mut [[f32; NR]], len: usize) {
        let [x0, x1, x2, x3] = [x[0], x[1], x[2], x[3]];
        lanes!(y[0], len, [a = x0, b = x1, c = x2] => a + b + c);
        lanes!(y[1], len, [b = x1, c = x2, d = x3] => b - c - d);
    }
}

impl Variant for F43 {
    const T: usize = 4;
    const XI: usize = 36;

    fn transform_kernel(g: &[f32], u: &mut [f32]) {
        let gm = [
            [0.25, 0.0, 0.0],
            [-1.0 / 6.0, -1.0 / 6.0, -1.0 / 6.0],
            [-1.0 / 6.0, 1.0 / 6.0, -1.0 / 6.0],
            [1.0 / 24.0, 1.0 / 12.0, 1.0 / 6.0],
            [1.0 / 24.0, -1.0 / 12.0, 1.0 / 6.0],
            [0.0, 0.0, 1.0],
        ];
        g_g_gt(&gm, g, u);
    }

    #[inline(always)]
    fn bt<Y: AsMut<[f32]>>(x: &[&[f32]], y: &mut [Y], len: usize) {
        let [x0, x1, x2, x3, x4, x5] = [x[0], x[1], x[2], x[3], x[4], x[5]];
        lanes!(y[0], len, [a = x0, c = x2, e = x4] => 4.0 * a - 5.0 * c + e);
        lanes!(y[1], len, [b = x1, c = x2, d = x3, e = x4] => (d + e) - 4.0 * (b + c));
        lanes!(y[2], len, [b = x1, c = x2, d = x3, e = x4] => (e - d) + 4.0 * (b - c));
        lanes!(y[3], len, [b = x1, c = x2, d = x3, e = x4] => (e - c) + 2.0 * (d - b));
        lanes!(y[4], len, [b = x1, c = x2, d = x3, e = x4] => (e - c) - 2.0 * (d - b));
        lanes!(y[5], len, [b = x1, d = x3, f = x5] => 4.0 * b - 5.0 * d + f);
    }

    #[inline(always)]
    fn at(x: &[&[f32]], y: &mut [[f32; NR]], len: usize) {
        let [x0, x1, x2, x3, x4, x5] = [x[0], x[1], x[2], x[3], x[4], x[5]];
        lanes!(y[0], len, [a = x0, b = x1, c = x2, d = x3, e = x4] => a + (b + c) + (d + e));
        lanes!(y[1], len, [b = x1, c = x2, d = x3, e = x4] => (b - c) + 2.0 * (d - e));
        lanes!(y[2], len, [b = x1, c = x2, d = x3, e = x4] => (b + c) + 4.0 * (d + e));
        lanes!(y[3], len, [b = x1, c = x2, d = x3, e = x4, f = x5] => (b - c) + 8.0 * (d - e) + f);
    }
}

/// The `XI` matrices `U_xi [M][C]` of weights `[M][C][3][3]`, row-major.
fn transformed<V: Variant>(w: &[f32], m: usize, c: usize) -> Vec<Vec<f32>> {
    let mut per_xi = vec![vec![0.0f32; m * c]; V::XI];
    let mut u = vec![0.0f32; V::XI];
    for (mc, g) in w.chunks_exact(9).take(m * c).enumerate() {
        V::transform_kernel(g, &mut u);
        for (xi, &v) in u.iter().enumerate() {
            per_xi[xi][mc] = v;
        }
    }
    per_xi
}

/// [`transformed`] for `tile`.
fn transformed_for(tile: Tile, w: &[f32], m: usize, c: usize) -> Vec<Vec<f32>> {
    match tile {
        Tile::F23 => transformed::<F23>(w, m, c),
        Tile::F43 => transformed::<F43>(w, m, c),
    }
}

/// Weights `[M][C][3][3]` as the tile's matrices `U_xi [M][C]`, each packed for the
/// microkernel (`[ceil(M/MR)][C][MR]`), one after another.
pub(crate) fn pack_weights(tile: Tile, w: &[f32], m: usize, c: usize) -> Vec<f32> {
    transformed_for(tile, w, m, c)
        .iter()
        .flat_map(|u| pack_block(u, m, c))
        .collect()
}

/// [`pack_weights`] rounded to binary16, for the fp16 microkernel
/// ([`super::tiled_fp16::pack_weights_f16`]).
pub(crate) fn pack_weights_f16(tile: Tile, w: &[f32], m: usize, c: usize) -> Vec<u16> {
    transformed_for(tile, w, m, c)
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
    /// the transform the weights were packed for
    pub tile: Tile,
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
    /// transformed inputs `[XI][C][NR]`: the panels
    v: Vec<f32>,
    /// the panels in binary16 (fp16 arithmetic only)
    half: Vec<u16>,
    /// the microkernel's sums for one block of MR output channels, per point `[XI]`
    acc: Vec<[[f32; NR]; MR]>,
    /// a run's `T + 2` input rows (`T * NR + 2` columns, then zeros to a whole patch)
    d: Vec<[f32; 4 * (NR + 1)]>,
    /// the rows' columns split by phase: `q[i][j]` is column `T * j + i`
    q: [[f32; NR + 1]; 4],
    /// the row transforms `[r][k][j]`, then (output side) the column transforms
    s: Vec<[[f32; NR]; 6]>,
}

impl Scratch {
    fn new<V: Variant>(c: usize, f16: bool) -> Scratch {
        Scratch {
            v: vec![0.0; V::XI * c * NR],
            half: vec![0; if f16 { V::XI * c * NR } else { 0 }],
            acc: vec![[[0.0; NR]; MR]; V::XI],
            d: vec![[0.0; 4 * (NR + 1)]; V::T + 2],
            q: [[0.0; NR + 1]; 4],
            s: vec![[[0.0; NR]; 6]; V::T + 2],
        }
    }
}

/// `v[xi][ci][j0 + j] = (Bt d B)[xi]` for the patches of one run of one channel (`img` its
/// `h x w` plane). On x86 it is inlined into the job compiled for the microkernel's ISA (so
/// it vectorises that wide); elsewhere one copy per transform serves every activation's job
/// (a call per run and channel; the board binary stays under its size limit).
#[allow(clippy::too_many_arguments)]
#[cfg_attr(target_arch = "x86_64", inline(always))]
#[cfg_attr(not(target_arch = "x86_64"), inline(never))]
fn transform_run<V: Variant>(
    img: &[f32],
    [h, w]: [usize; 2],
    [pt, pl]: [usize; 2],
    (ty, tx, len, j0): (usize, usize, usize, usize),
    c: usize,
    ci: usize,
    sc: &mut Scratch,
) {
    let (t, p) = (V::T, V::T + 2);
    let Scratch { v, d, q, s, .. } = sc;
    // the run's input rows, columns t * tx - pl .. + t * len + 2, zero outside the image
    let x0 = (t * tx) as isize - pl as isize;
    let cols = t * len + 2;
    let lo = (-x0).clamp(0, cols as isize) as usize;
    let hi = (w as isize - x0).clamp(lo as isize, cols as isize) as usize;
    for (r, dr) in d.iter_mut().enumerate() {
        let iy = (t * ty + r) as isize - pt as isize;
        if iy < 0 || iy as usize >= h {
            dr[..cols].fill(0.0);
            continue;
        }
        let row = &img[iy as usize * w..][..w];
        dr[..lo].fill(0.0);
        dr[lo..hi].copy_from_slice(&row[(x0 + lo as isize) as usize..][..hi - lo]);
        dr[hi..cols].fill(0.0);
    }
    // d B for each row: patch j's inputs are columns t * j .. t * j + t + 2, that is
    // q[0..t][j] then q[0][j + 1], q[1][j + 1]
    for (sr, dr) in s.iter_mut().zip(d.iter_mut()) {
        // the row's columns split by phase (a run's last patch reads two past t * len)
        dr[cols..t * (len + 1)].fill(0.0);
        for (j, ph) in dr[..t * (len + 1)].chunks_exact(t).enumerate() {
            for (i, &x) in ph.iter().enumerate() {
                q[i][j] = x;
            }
        }
        let mut ins: [&[f32]; 6] = [&[]; 6];
        for (i, x) in ins.iter_mut().enumerate().take(p) {
            *x = if i < t {
                &q[i][..len]
            } else {
                &q[i - t][1..=len]
            };
        }
        V::bt(&ins[..p], sr, len);
    }
    // Bt (d B): for each column transform k, the rows' values are its inputs; its outputs go
    // straight to their panels, point (i, k) at v[(i * p + k) * c + ci][j0..]
    let stride = p * c * NR;
    #[allow(clippy::needless_range_loop)]
    for k in 0..p {
        let mut ins: [&[f32]; 6] = [&[]; 6];
        for (r, x) in ins.iter_mut().enumerate().take(p) {
            *x = &s[r][k][..len];
        }
        let first = (k * c + ci) * NR + j0;
        let mut outs: [&mut [f32]; 6] = Default::default();
        let mut rest = &mut v[first..];
        for (i, o) in outs.iter_mut().enumerate().take(p) {
            let (run, tail) =
                std::mem::take(&mut rest).split_at_mut(if i + 1 < p { stride } else { len });
            *o = &mut run[..len];
            rest = tail;
        }
        V::bt(&ins[..p], &mut outs[..p], len);
    }
}

/// One job: patches `bi * NR ..` of image `ni` (transforms, the point-wise products per
/// block of output channels, the output transform and epilogue).
///
/// # Safety
/// `out` must be `y` of [`run_winograd`]; no other job writes these patches' outputs.
#[inline(always)]
unsafe fn job<V: Variant, F: Fn(f32) -> f32>(
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
    let tw = ow.div_ceil(V::T);
    let patches = oh.div_ceil(V::T) * tw;
    let wlen = t.m.div_ceil(MR) * c * MR;
    let t0 = bi * NR;
    let nt = NR.min(patches - t0);
    let xi = &x[ni * c * h * w..(ni + 1) * c * h * w];
    for ci in 0..c {
        let img = &xi[ci * h * w..(ci + 1) * h * w];
        for run in runs(t0, nt, tw) {
            transform_run::<V>(img, [h, w], t.pads, run, c, ci, sc);
        }
    }
    if let WinoWeights::F16(_) = t.weights {
        // every point's panel: rows of NR, one after the other
        let rows: Vec<usize> = (0..sc.v.len() / NR).map(|k| k * NR).collect();
        super::tiled_fp16::to_f16(&sc.v, &rows, &mut sc.half);
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
                store_run::<V, F>(sc, r, run, [oh, ow], plane, t.bias[ch], act, t.hint);
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
        unsafe fn $name<V: Variant, F: Fn(f32) -> f32>(
            t: &WinogradConv,
            x: &[f32],
            out: SharedOut,
            ni: usize,
            bi: usize,
            sc: &mut Scratch,
            act: &F,
        ) {
            job::<V, F>(t, x, out, ni, bi, sc, act)
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
    match t.tile {
        Tile::F23 => run::<F23, F>(t, isa, n, x, y, act),
        Tile::F43 => run::<F43, F>(t, isa, n, x, y, act),
    }
}

fn run<V: Variant, F: Fn(f32) -> f32 + Sync>(
    t: &WinogradConv,
    isa: Isa,
    n: usize,
    x: &[f32],
    y: &mut [f32],
    act: &F,
) {
    let [c, h, w] = t.chw;
    let [oh, ow] = t.out_hw;
    let blocks = (oh.div_ceil(V::T) * ow.div_ceil(V::T)).div_ceil(NR);
    let wlen = t.m.div_ceil(MR) * c * MR;
    assert!(x.len() >= n * c * h * w && y.len() >= n * t.m * oh * ow);
    let (packed_len, f16) = match t.weights {
        WinoWeights::F32 { packed, .. } => (packed.len(), false),
        WinoWeights::F16(packed) => (packed.len(), true),
    };
    assert!(packed_len >= V::XI * wlen && t.bias.len() >= t.m);
    assert!(
        !f16 || super::tiled_fp16::supported(),
        "fp16 convolution planned on a CPU without fp16 arithmetic"
    );
    let out = SharedOut(y.as_mut_ptr());
    // multiply-adds of one job: XI points x M x C x NR
    let per_job = (V::XI * t.m * c * NR).max(1);
    crate::kernels::par::for_each_init(
        n * blocks,
        (1 << 18) / per_job + 1,
        &|| Scratch::new::<V>(c, f16),
        &|sc, j| {
            let (ni, bi) = (j / blocks, j % blocks);
            // SAFETY: job j alone writes its patches' outputs; the ISA's features are
            // there (the microkernel was chosen for it).
            unsafe {
                match isa {
                    #[cfg(target_arch = "x86_64")]
                    Isa::Avx512 if Isa::Avx512.supported() => {
                        job_avx512::<V, F>(t, x, out, ni, bi, sc, act)
                    }
                    #[cfg(target_arch = "x86_64")]
                    Isa::Avx512 | Isa::Avx2 if Isa::Avx2.supported() => {
                        job_avx2::<V, F>(t, x, out, ni, bi, sc, act)
                    }
                    _ => job::<V, F>(t, x, out, ni, bi, sc, act),
                }
            }
        },
    );
}

/// `Y = At M A` of one output channel's patches in a run, `act(Y + bias)` into its output
/// rows (clipped at odd edges).
///
/// # Safety
/// `plane` must be the channel's `oh x ow` output, writable.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
unsafe fn store_run<V: Variant, F: Fn(f32) -> f32>(
    sc: &mut Scratch,
    r: usize,
    (ty, tx, len, j0): (usize, usize, usize, usize),
    [oh, ow]: [usize; 2],
    plane: *mut f32,
    bias: f32,
    act: &F,
    hint: EpiHint,
) {
    let (t, p) = (V::T, V::T + 2);
    let Scratch { acc, s, .. } = sc;
    // At M: for each column k, the T output rows from the points' rows (s[k][o][j])
    for (k, sk) in s.iter_mut().enumerate().take(p) {
        let mut ins: [&[f32]; 6] = [&[]; 6];
        for (i, x) in ins.iter_mut().enumerate().take(p) {
            *x = &acc[i * p + k][r][j0..j0 + len];
        }
        V::at(&ins[..p], sk, len);
    }
    // (At M) A: each output row's T columns per patch, interleaved into the row
    let mut cols = [[0.0f32; NR]; 6];
    let mut row = [0.0f32; 4 * NR];
    let (x0, width) = (t * tx, (t * len).min(ow - t * tx));
    #[allow(clippy::needless_range_loop)]
    for dy in 0..t {
        let oy = t * ty + dy;
        if oy >= oh {
            break;
        }
        let mut ins: [&[f32]; 6] = [&[]; 6];
        for (k, x) in ins.iter_mut().enumerate().take(p) {
            *x = &s[k][dy][..len];
        }
        V::at(&ins[..p], &mut cols, len);
        for (j, px) in row[..t * len].chunks_exact_mut(t).enumerate() {
            for (o, v) in px.iter_mut().enumerate() {
                *v = cols[o][j];
            }
        }
        let dst = std::slice::from_raw_parts_mut(plane.add(oy * ow + x0), width);
        bias_act(dst, &row[..t * len], bias, act, hint);
    }
}
