//! LDA-AQU's deformable sampling and attention as one op (made by `passes::fuse_lda_aqu`).
//!
//! The exported upsampler samples keys and values at `n` offset taps around every output
//! pixel (two GridSamples whose outputs are `n` times the upsampled map), adds the relative
//! position bias, dots the keys with the query, softmaxes over the taps and sums the values
//! weighted by the attention. Here each output pixel's taps are computed once, shared by
//! keys and values, and nothing tap-sized is ever written to memory. The arithmetic is the
//! unfused graph's, in the same order (GridSample's bilinear terms, sequential channel and tap
//! sums, max-subtracted softmax), so the result matches it to rounding.

#[cfg(target_arch = "arm")]
mod armv7neon;
#[cfg(target_arch = "x86_64")]
mod avx512;
#[cfg(target_arch = "aarch64")]
mod neon;

use super::elementwise::exp_f32;
use super::{GridMode, GridPadding, GridSample, OpError, OpResult, QRound};
use crate::kernels::{Isa, SharedOut};
use ndarray::{ArrayViewD, ArrayViewMutD};
use rayon::prelude::*;

/// Attributes of the fused LDA-AQU attention.
///
/// Inputs: keys `k [B*G, ck, H, W]`, values `v [B*G, cv, H, W]`, the sampling grid
/// `[B*G, n*Ho, Wo, 2]` (tap-major rows, GridSample's (x, y) in [-1, 1]), the scaled query
/// (`B * G*ck * Ho * Wo` values, channel-major), and the bias (`G*ck * n` values, one per key
/// channel and tap). Key channel `g*ck + c` is channel `h*d + j` of head `h`; value channels
/// likewise. Output `[B, heads, G*cv/heads, Ho, Wo]`.
///
/// In a QDQ model the exported graph rounds some intermediate tensors to int8 and back; the
/// `round_*` fields apply the same roundings (in order) at the same points (sampled keys, keys
/// plus bias, query-key products, logits, attention, sampled values, weighted values), so the
/// fused op equals the fake-quantized graph. speck's quantizer rounds at four of them; ONNX
/// Runtime's `quantize_static` also quantizes the Muls and the first ReduceSum.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct LdaAqu {
    /// how keys and values are sampled (bilinear, zeros padding)
    pub sample: GridSample,
    /// taps per output pixel (`k_u^2`)
    pub taps: usize,
    /// attention heads
    pub heads: usize,
    /// offset groups (`G`)
    pub groups: usize,
    /// int8 roundings of the sampled keys
    pub round_keys: Vec<QRound>,
    /// int8 roundings of keys plus bias
    pub round_biased: Vec<QRound>,
    /// int8 roundings of the attention (softmax output)
    pub round_attn: Vec<QRound>,
    /// int8 roundings of the sampled values
    pub round_values: Vec<QRound>,
    /// int8 roundings of each query x key product (before the sum over channels)
    pub round_qk: Vec<QRound>,
    /// int8 roundings of the logits (the sum over channels, before the softmax)
    pub round_logits: Vec<QRound>,
    /// int8 roundings of each attention x value product (before the sum over taps)
    pub round_weighted: Vec<QRound>,
}

/// Apply roundings to a row, in order.
#[inline(always)]
fn round_row(rounds: &[QRound], row: &mut [f32]) {
    for r in rounds {
        row.iter_mut().for_each(|v| *v = r.apply(*v));
    }
}

/// A list of roundings held by value, so a loop over pixels keeps the constants of the usual
/// one or two in registers instead of reloading them from the op for every pixel.
#[derive(Clone, Copy)]
enum Chain<'a> {
    Empty,
    One(QRound),
    Two(QRound, QRound),
    Many(&'a [QRound]),
}

impl<'a> Chain<'a> {
    fn of(rounds: &'a [QRound]) -> Chain<'a> {
        match rounds {
            [] => Chain::Empty,
            [r] => Chain::One(*r),
            [r, s] => Chain::Two(*r, *s),
            _ => Chain::Many(rounds),
        }
    }

    /// One value rounded by every rounding in order.
    #[inline(always)]
    fn apply(self, v: f32) -> f32 {
        match self {
            Chain::Empty => v,
            Chain::One(r) => r.apply(v),
            Chain::Two(r, s) => s.apply(r.apply(v)),
            Chain::Many(rounds) => rounds.iter().fold(v, |v, r| r.apply(v)),
        }
    }

    /// [`round_row`]: each value rounded by every rounding in order.
    #[inline(always)]
    fn row(self, row: &mut [f32]) {
        match self {
            Chain::Empty => {}
            Chain::One(r) => row.iter_mut().for_each(|v| *v = r.apply(*v)),
            Chain::Two(r, s) => row.iter_mut().for_each(|v| *v = s.apply(r.apply(*v))),
            Chain::Many(rounds) => round_row(rounds, row),
        }
    }
}

/// Sizes of one call, checked.
struct Dims {
    b: usize,
    g: usize,
    ck: usize,
    cv: usize,
    hw: usize,
    ho: usize,
    wo: usize,
    h: usize,
    w: usize,
}

fn dims(a: &LdaAqu, inputs: &[&[usize]]) -> OpResult<Dims> {
    let [k, v, grid, q, bias] = inputs else {
        return Err(OpError::Arity {
            expected: 5,
            got: inputs.len(),
        });
    };
    let bad = |why: &str| {
        Err(OpError::Shape(format!(
            "LdaAqu: {why} (k {k:?}, v {v:?}, grid {grid:?}, q {q:?}, bias {bias:?}, \
             taps {}, heads {}, groups {})",
            a.taps, a.heads, a.groups
        )))
    };
    if a.sample.mode != GridMode::Bilinear || a.sample.padding != GridPadding::Zeros {
        return Err(OpError::Unsupported(
            "LdaAqu samples bilinearly with zeros padding only".into(),
        ));
    }
    if k.len() != 4 || v.len() != 4 || grid.len() != 4 || grid[3] != 2 {
        return bad("k and v must be rank 4 and the grid [N, Ho, Wo, 2]");
    }
    if k[0] != v[0] || k[0] != grid[0] || k[2..] != v[2..] {
        return bad("k, v and grid disagree on batch or size");
    }
    if a.groups == 0 || a.taps == 0 || a.heads == 0 || k[0] % a.groups != 0 {
        return bad("batch is not a multiple of the groups");
    }
    if grid[1] % a.taps != 0 {
        return bad("grid rows are not a multiple of the taps");
    }
    let (g, ck, cv) = (a.groups, k[1], v[1]);
    if (g * ck) % a.heads != 0 || (g * cv) % a.heads != 0 {
        return bad("channels do not split into the heads");
    }
    let d = Dims {
        b: k[0] / g,
        g,
        ck,
        cv,
        hw: k[2] * k[3],
        ho: grid[1] / a.taps,
        wo: grid[2],
        h: k[2],
        w: k[3],
    };
    let numel = |s: &[usize]| s.iter().product::<usize>();
    if numel(q) != d.b * g * ck * d.ho * d.wo {
        return bad("the query does not hold one value per key channel and output pixel");
    }
    if numel(bias) != g * ck * a.taps {
        return bad("the bias does not hold one value per key channel and tap");
    }
    Ok(d)
}

impl Dims {
    /// `[B, heads, G*cv/heads, Ho, Wo]`.
    fn out_shape(&self, a: &LdaAqu) -> Vec<usize> {
        vec![
            self.b,
            a.heads,
            self.g * self.cv / a.heads,
            self.ho,
            self.wo,
        ]
    }
}

/// Output shape `[B, heads, G*cv/heads, Ho, Wo]`.
pub fn lda_aqu_shape(a: &LdaAqu, inputs: &[&[usize]]) -> OpResult<Vec<usize>> {
    Ok(dims(a, inputs)?.out_shape(a))
}

/// Output pixels per job (the job's output block, `G*cv * BLOCK` floats, stays in L1/L2).
const BLOCK: usize = 64;

/// Run the fused op (blocks of output pixels in parallel) with the kernels' instruction set.
pub fn run_lda_aqu(
    a: &LdaAqu,
    inputs: &[ArrayViewD<f32>],
    y: &mut ArrayViewMutD<f32>,
) -> OpResult<()> {
    run_lda_aqu_isa(crate::kernels::isa(), a, inputs, y)
}

/// [`run_lda_aqu`] on a given instruction set (tests run every one the host has).
pub(crate) fn run_lda_aqu_isa(
    isa: Isa,
    a: &LdaAqu,
    inputs: &[ArrayViewD<f32>],
    y: &mut ArrayViewMutD<f32>,
) -> OpResult<()> {
    let shapes: Vec<&[usize]> = inputs.iter().map(|x| x.shape()).collect();
    let d = dims(a, &shapes)?;
    let out_shape = d.out_shape(a);
    if y.shape() != out_shape.as_slice() {
        return Err(OpError::Shape(format!(
            "LdaAqu output {:?}, expected {out_shape:?}",
            y.shape()
        )));
    }
    let owned: Vec<_> = inputs.iter().map(|x| x.as_standard_layout()).collect();
    let s = |i: usize| owned[i].as_slice().expect("standard layout");
    let (grid, q, bias) = (s(2), s(3), s(4));
    // [g*ck][taps] -> [g][taps][ck]: one contiguous row of biases per group and tap
    let mut bias_t = vec![0.0; bias.len()];
    for (ch, row) in bias.chunks_exact(a.taps).enumerate() {
        let (gi, c) = (ch / d.ck, ch % d.ck);
        for (t, &b) in row.iter().enumerate() {
            bias_t[(gi * a.taps + t) * d.ck + c] = b;
        }
    }
    let Some(out) = y.as_slice_mut() else {
        return Err(OpError::Shape("LdaAqu output is not contiguous".into()));
    };
    let plane_out = d.ho * d.wo;
    if plane_out == 0 || d.b == 0 {
        return Ok(());
    }
    if d.hw == 0 {
        // Nothing to sample: every tap reads zeros padding.
        out.fill(0.0);
        return Ok(());
    }
    // Channels last, so a tap's corner is one contiguous row of channels: [N][H*W][C].
    let kt = channels_last(s(0), d.ck, d.hw);
    let vt = channels_last(s(1), d.cv, d.hw);
    let blocks = plane_out.div_ceil(BLOCK);
    let shared = SharedOut(out.as_mut_ptr());
    let ins = Inputs {
        kt: &kt,
        vt: &vt,
        grid,
        q,
        bias_t: &bias_t,
    };
    (0..d.b * blocks).into_par_iter().for_each_init(
        || Scratch::new(a, &d),
        |sc, job| {
            let (bi, blk) = (job / blocks, job % blocks);
            let p0 = blk * BLOCK;
            let len = BLOCK.min(plane_out - p0);
            // SAFETY: this job alone writes pixels p0..p0+len of image bi's planes; the ISA
            // is one the host runs (`kernels::isa` caps it, tests check `supported`).
            unsafe { block_isa(isa, a, &d, sc, &ins, bi, p0, len, shared) };
        },
    );
    Ok(())
}

/// `[N][C][HW]` -> `[N][HW + 1][C]`: channels last, and after each image's pixels one row of
/// zeros that corners outside the image read (zeros padding without a branch per corner).
fn channels_last(x: &[f32], c: usize, hw: usize) -> Vec<f32> {
    let n = x.len() / (c * hw).max(1);
    let mut t = vec![0.0; n * (hw + 1) * c];
    for (src, dst) in x.chunks_exact(c * hw).zip(t.chunks_exact_mut((hw + 1) * c)) {
        for (ch, plane) in src.chunks_exact(hw).enumerate() {
            for (px, &v) in plane.iter().enumerate() {
                dst[px * c + ch] = v;
            }
        }
    }
    t
}

struct Inputs<'a> {
    /// keys, channels last, a zero row after each image
    kt: &'a [f32],
    /// values, channels last, a zero row after each image
    vt: &'a [f32],
    grid: &'a [f32],
    q: &'a [f32],
    /// the bias as `[g][tap][ck]` (one contiguous row per group and tap)
    bias_t: &'a [f32],
}

/// A run of one group's channels `c0..c1` that belong to one head.
#[derive(Clone, Copy)]
struct Segment {
    c0: usize,
    c1: usize,
    head: usize,
}

/// Each group's channels split at head boundaries (`width` channels per group, `per_head`
/// channels per head), groups in order.
fn segments(groups: usize, width: usize, per_head: usize) -> Vec<Vec<Segment>> {
    (0..groups)
        .map(|gi| {
            let mut s = vec![];
            let mut c0 = 0;
            while c0 < width {
                let head = (gi * width + c0) / per_head;
                let c1 = ((head + 1) * per_head - gi * width).min(width);
                s.push(Segment { c0, c1, head });
                c0 = c1;
            }
            s
        })
        .collect()
}

/// Per-thread buffers, structure of arrays over the block's pixels.
struct Scratch {
    /// corner pixel indices `[g*taps][4][BLOCK]` (`hw`, the zero row, for corners outside)
    idx: Vec<u32>,
    /// bilinear weights `[g*taps][4][BLOCK]`: dx2, dx1, dy2, dy1
    wts: Vec<f32>,
    /// logits, then attention, `[head][tap][BLOCK]`
    attn: Vec<f32>,
    /// softmax running max and sum, `[BLOCK]` each
    mx: Vec<f32>,
    sum: Vec<f32>,
    /// one pixel's sampled key or value channels
    row: Vec<f32>,
    /// the block's query, pixel-major `[BLOCK][G*ck]` (the NEON logits read it per pixel)
    #[cfg(target_arch = "aarch64")]
    qt: Vec<f32>,
    /// the corners again, pixel-major `[g*taps][BLOCK][4]`, for the NEON float paths
    #[cfg(target_arch = "aarch64")]
    quad_idx: Vec<u32>,
    /// the corners' bilinear products `[g*taps][BLOCK][4]` (dy2*dx2, dy2*dx1, dy1*dx2,
    /// dy1*dx1), for the NEON float paths
    #[cfg(target_arch = "aarch64")]
    quad_wts: Vec<f32>,
    /// one tap's sampled keys `[channel][BLOCK]` ([`logits`]), or values `[BLOCK][channel]`
    /// ([`values`])
    planar: Vec<f32>,
    /// the block's weighted value sum `[BLOCK][channel]` (one group at a time)
    acc: Vec<f32>,
    /// the block's output, `[channel][BLOCK]`
    out: Vec<f32>,
    /// key channels per group, split by head
    key_segs: Vec<Vec<Segment>>,
    /// value channels per group, split by head
    val_segs: Vec<Vec<Segment>>,
}

impl Scratch {
    fn new(a: &LdaAqu, d: &Dims) -> Scratch {
        let gn = d.g * a.taps;
        Scratch {
            idx: vec![0; gn * 4 * BLOCK],
            wts: vec![0.0; gn * 4 * BLOCK],
            attn: vec![0.0; a.heads * a.taps * BLOCK],
            mx: vec![0.0; BLOCK],
            sum: vec![0.0; BLOCK],
            row: vec![0.0; d.ck.max(d.cv)],
            #[cfg(target_arch = "aarch64")]
            qt: vec![0.0; d.g * d.ck * BLOCK],
            #[cfg(target_arch = "aarch64")]
            quad_idx: vec![0; gn * 4 * BLOCK],
            #[cfg(target_arch = "aarch64")]
            quad_wts: vec![0.0; gn * 4 * BLOCK],
            planar: vec![0.0; d.ck.max(d.cv) * BLOCK],
            acc: vec![0.0; d.cv * BLOCK],
            out: vec![0.0; d.g * d.cv * BLOCK],
            key_segs: segments(d.g, d.ck, d.g * d.ck / a.heads),
            val_segs: segments(d.g, d.cv, d.g * d.cv / a.heads),
        }
    }
}

/// [`block`] compiled for `isa` (same arithmetic, wider vectors).
///
/// # Safety
/// As [`block`], and the host must run `isa`.
#[allow(clippy::too_many_arguments)]
unsafe fn block_isa(
    isa: Isa,
    a: &LdaAqu,
    d: &Dims,
    sc: &mut Scratch,
    ins: &Inputs,
    bi: usize,
    p0: usize,
    len: usize,
    out: SharedOut,
) {
    #[cfg(target_arch = "x86_64")]
    {
        /// [`block`] compiled with `$features` enabled (`$simd`: with the hand-written paths).
        macro_rules! build {
            ($name:ident, $features:literal, $simd:literal) => {
                #[target_feature(enable = $features)]
                #[allow(clippy::too_many_arguments, clippy::incompatible_msrv)]
                unsafe fn $name(
                    a: &LdaAqu,
                    d: &Dims,
                    sc: &mut Scratch,
                    ins: &Inputs,
                    bi: usize,
                    p0: usize,
                    len: usize,
                    out: SharedOut,
                ) {
                    block::<$simd>(a, d, sc, ins, bi, p0, len, out)
                }
            };
        }
        build!(avx2, "avx2,fma", false);
        build!(avx512, "avx512f,avx2,fma", true);
        match isa {
            Isa::Avx512 => return avx512(a, d, sc, ins, bi, p0, len, out),
            Isa::Avx2 => return avx2(a, d, sc, ins, bi, p0, len, out),
            _ => {}
        }
    }
    #[cfg(any(target_arch = "aarch64", target_arch = "arm"))]
    if isa == Isa::Neon {
        return block::<true>(a, d, sc, ins, bi, p0, len, out);
    }
    let _ = isa;
    block::<false>(a, d, sc, ins, bi, p0, len, out)
}

/// `floor(v)` as an integer, branch-free (vectorises; baseline x86-64 has no `roundps`). NaN
/// gives 0; callers zero the weights of non-finite points.
#[inline(always)]
fn floor_i32(v: f32) -> i32 {
    let t = v as i32;
    t - ((t as f32) > v) as i32
}

/// One group and tap's bilinear corners for `len` pixels: grid points `gxy` (x, y pairs) into
/// corner indices `idx[k][i]` and weights `wts[k][i]` (`k` = top-left, top-right,
/// bottom-left, bottom-right; weights dx2, dx1, dy2, dy1). Corners outside the `h` x `w` image
/// index the zero row `h*w`; a non-finite point gets zero weights (it samples zeros padding).
/// GridSample's arithmetic (`grid_sample::bilinear_taps`), written so the loop vectorises.
#[inline(always)]
fn corners(align_corners: bool, h: usize, w: usize, gxy: &[f32], idx: &mut [u32], wts: &mut [f32]) {
    corners_from(align_corners, h, w, gxy, idx, wts, 0)
}

/// [`corners`] for the pixels from `from` on (a vector version's tail).
#[inline(always)]
fn corners_from(
    align_corners: bool,
    h: usize,
    w: usize,
    gxy: &[f32],
    idx: &mut [u32],
    wts: &mut [f32],
    from: usize,
) {
    let len = gxy.len() / 2;
    let (idx, wts) = (&mut idx[..4 * BLOCK], &mut wts[..4 * BLOCK]);
    let (i0, rest) = idx.split_at_mut(BLOCK);
    let (i1, rest) = rest.split_at_mut(BLOCK);
    let (i2, i3) = rest.split_at_mut(BLOCK);
    let (w0, rest) = wts.split_at_mut(BLOCK);
    let (w1, rest) = rest.split_at_mut(BLOCK);
    let (w2, w3) = rest.split_at_mut(BLOCK);
    let (hi, wi) = (h as i32, w as i32);
    let zero_row = (h * w) as u32;
    let (fh, fw) = (h as f32, w as f32);
    // Selects and min/max only, no branch, so the loop vectorises on every ISA (`clamp` and
    // an `if` on the weights had become branches on aarch64). A NaN coordinate lands on the
    // low bound here; its weights are zeroed and its corners read the zero row, as before.
    let (lo, hx, hy) = (-4.0f32, fw + 4.0, fh + 4.0);
    for (i, p) in gxy
        .chunks_exact(2)
        .enumerate()
        .take(len.min(BLOCK))
        .skip(from)
    {
        let sx = super::grid_sample::denormalize(p[0], w, align_corners);
        let sy = super::grid_sample::denormalize(p[1], h, align_corners);
        let finite = sx.is_finite() & sy.is_finite();
        // Far outside every corner is invalid whatever the weights: keep the integers small.
        let sx = sx.max(lo).min(hx);
        let sy = sy.max(lo).min(hy);
        let (x1, y1) = (floor_i32(sx), floor_i32(sy));
        let (x2, y2) = (x1 + 1, y1 + 1);
        let keep = |v: f32| if finite { v } else { 0.0 };
        w0[i] = keep(x2 as f32 - sx);
        w1[i] = keep(sx - x1 as f32);
        w2[i] = keep(y2 as f32 - sy);
        w3[i] = keep(sy - y1 as f32);
        let (row_in, col_in) = (
            [(y1 >= 0) & (y1 < hi), (y2 >= 0) & (y2 < hi)],
            [(x1 >= 0) & (x1 < wi), (x2 >= 0) & (x2 < wi)],
        );
        let at = |r: usize, c: usize, rv: i32, cv: i32| {
            if finite & row_in[r] & col_in[c] {
                (rv * wi + cv) as u32
            } else {
                zero_row
            }
        };
        i0[i] = at(0, 0, y1, x1);
        i1[i] = at(0, 1, y1, x2);
        i2[i] = at(1, 0, y2, x1);
        i3[i] = at(1, 1, y2, x2);
    }
}

/// `dst[c] = dy2 * (dx2 * r0[c] + dx1 * r1[c]) + dy1 * (dx2 * r2[c] + dx1 * r3[c])` for the
/// `width` channels of the corners' rows (`dst.len() == width`): GridSample's bilinear terms,
/// vectorised over channels.
///
/// # Safety
/// Every corner index must be a row of `img` (`img.len() / width` rows).
#[inline(always)]
unsafe fn sample_row(img: &[f32], width: usize, idx: [u32; 4], wts: [f32; 4], dst: &mut [f32]) {
    let c = dst.len();
    let row = |k: usize| {
        let at = idx[k] as usize * width;
        img.get_unchecked(at..at + c)
    };
    let (r0, r1, r2, r3) = (row(0), row(1), row(2), row(3));
    let [dx2, dx1, dy2, dy1] = wts;
    for i in 0..c {
        dst[i] = dy2 * (dx2 * r0[i] + dx1 * r1[i]) + dy1 * (dx2 * r2[i] + dx1 * r3[i]);
    }
}

/// One block of `len` output pixels from `p0` of image `bi`. `SIMD` takes the architecture's
/// hand-written paths (NEON on Arm, AVX-512 on x86-64) where they apply.
///
/// # Safety
/// `out` must point to the whole output, and no other thread may write this block; with
/// `SIMD` on x86-64 the host must run AVX-512F.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
unsafe fn block<const SIMD: bool>(
    a: &LdaAqu,
    d: &Dims,
    sc: &mut Scratch,
    ins: &Inputs,
    bi: usize,
    p0: usize,
    len: usize,
    out: SharedOut,
) {
    let (n, g) = (a.taps, d.g);
    let plane_out = d.ho * d.wo;
    let vc = g * d.cv;
    let ac = a.sample.align_corners;
    // 1. Every group and tap's corners for the block's pixels.
    for gi in 0..g {
        let gimg = &ins.grid[(bi * g + gi) * n * plane_out * 2..];
        for t in 0..n {
            let at = (t * plane_out + p0) * 2;
            let gt = (gi * n + t) * 4 * BLOCK;
            let (gxy, idx, wts) = (
                &gimg[at..at + 2 * len],
                &mut sc.idx[gt..],
                &mut sc.wts[gt..],
            );
            #[cfg(target_arch = "aarch64")]
            if SIMD {
                let quads = (&mut sc.quad_idx[gt..], &mut sc.quad_wts[gt..]);
                neon::corners(ac, d.h, d.w, gxy, idx, wts, quads);
                continue;
            }
            #[cfg(target_arch = "arm")]
            if SIMD {
                armv7neon::corners(ac, d.h, d.w, gxy, idx, wts);
                continue;
            }
            #[cfg(target_arch = "x86_64")]
            if SIMD {
                avx512::corners(ac, d.h, d.w, gxy, idx, wts);
                continue;
            }
            corners(ac, d.h, d.w, gxy, idx, wts);
        }
    }
    // 2. Logits per head and tap, with the key width known at compile time where common.
    #[cfg(target_arch = "aarch64")]
    let keys_done = SIMD && neon::logits(a, d, sc, ins, bi, p0, len);
    #[cfg(target_arch = "arm")]
    let keys_done = SIMD && armv7neon::logits(a, d, sc, ins, bi, p0, len);
    #[cfg(not(any(target_arch = "aarch64", target_arch = "arm")))]
    let keys_done = false;
    if !keys_done {
        match d.ck {
            4 => logits::<4, SIMD>(a, d, sc, ins, bi, p0, len),
            8 => logits::<8, false>(a, d, sc, ins, bi, p0, len),
            16 => logits::<16, false>(a, d, sc, ins, bi, p0, len),
            _ => logits::<0, false>(a, d, sc, ins, bi, p0, len),
        }
    }
    // 3. Softmax over the taps (as `run_softmax`: max-subtracted, times the reciprocal sum),
    //    vectorised over the block's pixels.
    for at in sc.attn.chunks_exact_mut(n * BLOCK) {
        let (mx, sum) = (&mut sc.mx[..len], &mut sc.sum[..len]);
        if !a.round_logits.is_empty() {
            for row in at.chunks_exact_mut(BLOCK) {
                round_row(&a.round_logits, &mut row[..len]);
            }
        }
        mx.fill(f32::NEG_INFINITY);
        for row in at.chunks_exact(BLOCK) {
            for (m, &v) in mx.iter_mut().zip(&row[..len]) {
                *m = m.max(v);
            }
        }
        sum.fill(0.0);
        for row in at.chunks_exact_mut(BLOCK) {
            for ((v, &m), s) in row[..len].iter_mut().zip(mx.iter()).zip(sum.iter_mut()) {
                *v = exp_f32(*v - m);
                *s += *v;
            }
        }
        for s in sum.iter_mut() {
            *s = 1.0 / *s;
        }
        for row in at.chunks_exact_mut(BLOCK) {
            for (v, &inv) in row[..len].iter_mut().zip(sum.iter()) {
                *v *= inv;
            }
            round_row(&a.round_attn, &mut row[..len]);
        }
    }
    // 4. Values, likewise specialised by width.
    #[cfg(target_arch = "aarch64")]
    let values_done = SIMD && neon::values(a, d, sc, ins, bi, len);
    #[cfg(target_arch = "arm")]
    let values_done = SIMD && armv7neon::values(a, d, sc, ins, bi, len);
    #[cfg(not(any(target_arch = "aarch64", target_arch = "arm")))]
    let values_done = false;
    if !values_done {
        match d.cv {
            8 => values::<8>(a, d, sc, ins, bi, len),
            16 => values::<16>(a, d, sc, ins, bi, len),
            32 => values::<32>(a, d, sc, ins, bi, len),
            _ => values::<0>(a, d, sc, ins, bi, len),
        }
    }
    for ch in 0..vc {
        let dst = std::slice::from_raw_parts_mut(out.at((bi * vc + ch) * plane_out + p0), len);
        dst.copy_from_slice(&sc.out[ch * BLOCK..ch * BLOCK + len]);
    }
}

/// Pixel `i`'s corners for group-and-tap `gt`.
///
/// # Safety
/// `gt` and `i` must be within the scratch's `[g*taps][4][BLOCK]` arrays.
#[inline(always)]
unsafe fn taps_of(idx: &[u32], wts: &[f32], gt: usize, i: usize) -> ([u32; 4], [f32; 4]) {
    let at = |k: usize| (gt * 4 + k) * BLOCK + i;
    (
        [0, 1, 2, 3].map(|k| *idx.get_unchecked(at(k))),
        [0, 1, 2, 3].map(|k| *wts.get_unchecked(at(k))),
    )
}

/// Step 2: the logits, query . (sampled key + bias) summed over each head's channels in
/// order, into `sc.attn[head][tap][pixel]`. `C` is the key width, or 0 for any width; with
/// `SIMD` on x86-64 (the AVX-512 build) width 4 is sampled by [`avx512::sample_keys4`].
///
/// Keys are sampled pixel by pixel but stored planar (`[channel][pixel]`), so the roundings,
/// the bias, the query product and the channel sum each run over the block's pixels as one
/// vector stream (a row of four key channels would leave a wide vector mostly empty).
///
/// # Safety
/// Every corner index in `sc` must be a row of its key image.
// x86-64 builds `block` per target feature, so this must inline into it; elsewhere one copy
// serves both of `block_isa`'s builds (`block::<true>` and `block::<false>`): inlined into
// each, `block_isa` was 199 KB of the board binary, 82 KB more than now
#[cfg_attr(target_arch = "x86_64", inline(always))]
#[cfg_attr(not(target_arch = "x86_64"), inline(never))]
#[allow(clippy::too_many_arguments)]
unsafe fn logits<const C: usize, const SIMD: bool>(
    a: &LdaAqu,
    d: &Dims,
    sc: &mut Scratch,
    ins: &Inputs,
    bi: usize,
    p0: usize,
    len: usize,
) {
    let (n, g) = (a.taps, d.g);
    let ck = if C > 0 { C } else { d.ck };
    let plane_out = d.ho * d.wo;
    let kc = g * ck;
    let rows = (d.hw + 1) * ck;
    let Scratch {
        idx,
        wts,
        attn,
        row,
        planar,
        key_segs,
        ..
    } = sc;
    let (keys, biased, qk) = (
        Chain::of(&a.round_keys),
        Chain::of(&a.round_biased),
        Chain::of(&a.round_qk),
    );
    attn.fill(0.0);
    let row = &mut row[..ck];
    for (gi, segs) in key_segs.iter().enumerate() {
        let img = &ins.kt[(bi * g + gi) * rows..][..rows];
        for t in 0..n {
            let gt = gi * n + t;
            #[cfg(target_arch = "x86_64")]
            let sampled = SIMD && C == 4 && {
                avx512::sample_keys4(img, idx, wts, gt, len, planar);
                true
            };
            #[cfg(not(target_arch = "x86_64"))]
            let sampled = false;
            if !sampled {
                for i in 0..len {
                    let (ix, ws) = taps_of(idx, wts, gt, i);
                    sample_row(img, ck, ix, ws, row);
                    for (c, &v) in row.iter().enumerate() {
                        *planar.get_unchecked_mut(c * BLOCK + i) = v;
                    }
                }
            }
            for sg in segs {
                let dst = &mut attn[(sg.head * n + t) * BLOCK..][..len];
                for c in sg.c0..sg.c1 {
                    let k = &mut planar[c * BLOCK..][..len];
                    keys.row(k);
                    let b = ins.bias_t[gt * ck + c];
                    k.iter_mut().for_each(|v| *v += b);
                    biased.row(k);
                    let q = &ins.q[(bi * kc + gi * ck + c) * plane_out + p0..][..len];
                    k.iter_mut().zip(q).for_each(|(v, &q)| *v *= q);
                    qk.row(k);
                    dst.iter_mut().zip(k.iter()).for_each(|(s, &v)| *s += v);
                }
            }
        }
    }
}

/// Step 4: each pixel's output channels, the attention-weighted sum of the sampled values,
/// taps in order, into `sc.out[channel][pixel]`. `C` is the value width, or 0 for any width.
///
/// Each tap's values for the whole block (`[pixel][channel]`) are sampled, then rounded,
/// weighted and rounded as one stream each, then added to the block's sum; the sum is
/// transposed once.
///
/// # Safety
/// Every corner index in `sc` must be a row of its value image.
// inlined on x86-64 only, as `logits`
#[cfg_attr(target_arch = "x86_64", inline(always))]
#[cfg_attr(not(target_arch = "x86_64"), inline(never))]
unsafe fn values<const C: usize>(
    a: &LdaAqu,
    d: &Dims,
    sc: &mut Scratch,
    ins: &Inputs,
    bi: usize,
    len: usize,
) {
    let (n, g) = (a.taps, d.g);
    let cv = if C > 0 { C } else { d.cv };
    let rows = (d.hw + 1) * cv;
    let Scratch {
        idx,
        wts,
        attn,
        planar,
        acc,
        out,
        val_segs,
        row,
        ..
    } = sc;
    let (vals, acc, row) = (
        &mut planar[..len * cv],
        &mut acc[..len * cv],
        &mut row[..cv],
    );
    let (sampled, weighted) = (Chain::of(&a.round_values), Chain::of(&a.round_weighted));
    let float = a.round_values.is_empty() && a.round_weighted.is_empty();
    for (gi, segs) in val_segs.iter().enumerate() {
        let img = &ins.vt[(bi * g + gi) * rows..][..rows];
        if let ([sg], true) = (&segs[..], C > 0) {
            // One head and a known width: each pixel's sum over the taps in registers
            // (`[f32; C]`), each value sampled, rounded, weighted, rounded and added as below,
            // taps in order, so the same values; four pixels at a time, so their sums'
            // chains of adds overlap.
            let quads = acc.len() / (4 * C);
            macro_rules! sums {
                ($s:expr, $w:expr) => {{
                    let (s, w) = ($s, $w);
                    for (q, px) in acc.chunks_exact_mut(4 * C).enumerate() {
                        let at = (gi * n, sg.head * n, 4 * q);
                        value_sums::<C, 4>(img, idx, wts, attn, at, n, px, s, w);
                    }
                    for (i, px) in acc.chunks_exact_mut(C).enumerate().skip(4 * quads) {
                        value_sums::<C, 1>(
                            img,
                            idx,
                            wts,
                            attn,
                            (gi * n, sg.head * n, i),
                            n,
                            px,
                            s,
                            w,
                        );
                    }
                }};
            }
            // the common chains as their own loops (constants in registers, no match per value)
            match (sampled, weighted) {
                (Chain::Empty, Chain::Empty) => sums!(|v: f32| v, |v: f32| v),
                (Chain::One(r), Chain::One(t)) => sums!(|v| r.apply(v), |v| t.apply(v)),
                (Chain::One(r), Chain::Empty) => sums!(|v| r.apply(v), |v: f32| v),
                _ => sums!(|v| sampled.apply(v), |v| weighted.apply(v)),
            }
            transpose_block(acc, out, gi, cv);
            continue;
        }
        acc.fill(0.0);
        for t in 0..n {
            let gt = gi * n + t;
            if let ([sg], true) = (&segs[..], float) {
                // Nothing to round: sample, weight and add in one pass, no tap-sized buffer.
                let w = &attn[(sg.head * n + t) * BLOCK..][..len];
                for (i, (s, &w)) in acc.chunks_exact_mut(cv).zip(w).enumerate() {
                    let (ix, ws) = taps_of(idx, wts, gt, i);
                    sample_row(img, cv, ix, ws, row);
                    for (s, &v) in s.iter_mut().zip(row.iter()) {
                        *s += v * w;
                    }
                }
                continue;
            }
            for (i, v) in vals.chunks_exact_mut(cv).enumerate() {
                let (ix, ws) = taps_of(idx, wts, gt, i);
                sample_row(img, cv, ix, ws, v);
            }
            sampled.row(vals);
            // Channels of one head share its attention weight (a broadcast per pixel).
            for sg in segs.iter() {
                let w = &attn[(sg.head * n + t) * BLOCK..][..len];
                for (v, &w) in vals.chunks_exact_mut(cv).zip(w) {
                    v[sg.c0..sg.c1].iter_mut().for_each(|v| *v *= w);
                }
            }
            weighted.row(vals);
            for (s, &v) in acc.iter_mut().zip(vals.iter()) {
                *s += v;
            }
        }
        transpose_block(acc, out, gi, cv);
    }
}

/// Pixels `i0..i0 + P`'s attention-weighted value sums over the `n` taps (group-and-tap rows
/// from `gt0`, attention rows from `at0`; `(gt0, at0, i0)`), taps in order, into
/// `px [pixel][C]`: each sampled value rounded by `sampled`, times the attention, rounded by
/// `weighted`, then added.
///
/// # Safety
/// Every corner index of those pixels must be a row of `img` (rows of `C` floats), and
/// `i0 + P <= BLOCK`.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
unsafe fn value_sums<const C: usize, const P: usize>(
    img: &[f32],
    idx: &[u32],
    wts: &[f32],
    attn: &[f32],
    (gt0, at0, i0): (usize, usize, usize),
    n: usize,
    px: &mut [f32],
    sampled: impl Fn(f32) -> f32,
    weighted: impl Fn(f32) -> f32,
) {
    let mut sum = [[0.0f32; C]; P];
    for t in 0..n {
        for (p, sum) in sum.iter_mut().enumerate() {
            let i = i0 + p;
            let (ix, [dx2, dx1, dy2, dy1]) = taps_of(idx, wts, gt0 + t, i);
            let w = *attn.get_unchecked((at0 + t) * BLOCK + i);
            let row = |k: usize| img.as_ptr().add(ix[k] as usize * C);
            let (r0, r1, r2, r3) = (row(0), row(1), row(2), row(3));
            for (c, s) in sum.iter_mut().enumerate() {
                let v = dy2 * (dx2 * *r0.add(c) + dx1 * *r1.add(c))
                    + dy1 * (dx2 * *r2.add(c) + dx1 * *r3.add(c));
                *s += weighted(sampled(v) * w);
            }
        }
    }
    px.copy_from_slice(sum.as_flattened());
}

/// The block's sums `acc [pixel][cv]` of group `gi` into `out [channel][BLOCK]`.
#[inline(always)]
fn transpose_block(acc: &[f32], out: &mut [f32], gi: usize, cv: usize) {
    for (i, px) in acc.chunks_exact(cv).enumerate() {
        for (c, &v) in px.iter().enumerate() {
            out[(gi * cv + c) * BLOCK + i] = v;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::test_util::Rng;
    use crate::ops::{run_grid_sample_reference, run_softmax};
    use ndarray::{ArrayD, Axis, IxDyn};

    /// The unfused graph, op by op with the reference ops: GridSample k and v, reshape to
    /// heads, add bias, times q, sum over the head's channels, softmax over taps, weight the
    /// values, sum over taps.
    fn unfused(
        a: &LdaAqu,
        k: &ArrayD<f32>,
        v: &ArrayD<f32>,
        grid: &ArrayD<f32>,
        q: &[f32],
        bias: &[f32],
    ) -> ArrayD<f32> {
        let (bg, ck, cv) = (k.shape()[0], k.shape()[1], v.shape()[1]);
        let (n, nh, g) = (a.taps, a.heads, a.groups);
        let (ho, wo) = (grid.shape()[1] / n, grid.shape()[2]);
        let b = bg / g;
        let sample = |x: &ArrayD<f32>| {
            let c = x.shape()[1];
            let mut y = ArrayD::zeros(IxDyn(&[bg, c, n * ho, wo]));
            run_grid_sample_reference(&a.sample, &x.view(), &grid.view(), &mut y.view_mut())
                .unwrap();
            y
        };
        let (dh, vh) = (g * ck / nh, g * cv / nh);
        let round = |x: ArrayD<f32>, rounds: &[QRound]| {
            rounds.iter().fold(x, |x, r| x.mapv(|v| r.apply(v)))
        };
        let ks = round(sample(k), &a.round_keys);
        let vs = round(sample(v), &a.round_values);
        let ks = ks
            .into_shape_with_order(IxDyn(&[b, nh, dh, n, ho, wo]))
            .unwrap();
        let vs = vs
            .into_shape_with_order(IxDyn(&[b, nh, vh, n, ho, wo]))
            .unwrap();
        let qa = ArrayD::from_shape_vec(IxDyn(&[b, nh, dh, 1, ho, wo]), q.to_vec()).unwrap();
        let ba = ArrayD::from_shape_vec(IxDyn(&[1, nh, dh, n, 1, 1]), bias.to_vec()).unwrap();
        let qk = round(round(&ks + &ba, &a.round_biased) * &qa, &a.round_qk);
        let logits = round(qk.sum_axis(Axis(2)).insert_axis(Axis(2)), &a.round_logits);
        let mut attn = ArrayD::zeros(logits.raw_dim());
        run_softmax(3, &logits.view().into_dyn(), &mut attn.view_mut()).unwrap();
        let attn = round(attn, &a.round_attn);
        round(&attn * &vs, &a.round_weighted).sum_axis(Axis(3))
    }

    #[test]
    fn fused_matches_the_unfused_ops() {
        let mut rng = Rng(3);
        // (B, G, ck, cv, H, W, taps, heads, Ho, Wo, align_corners)
        let cases = [
            (1, 2, 4, 16, 6, 6, 9, 1, 12, 12, true),
            (2, 2, 3, 5, 5, 7, 9, 1, 10, 14, true),
            (1, 1, 4, 6, 7, 5, 4, 2, 9, 11, false),
            (1, 3, 2, 2, 1, 1, 1, 3, 3, 2, true),
            (1, 2, 2, 4, 9, 9, 9, 1, 17, 19, true), // more than one pixel block
            (1, 1, 35, 40, 5, 6, 4, 5, 7, 9, false), // channel chunks, heads across chunks
            (1, 2, 8, 32, 4, 4, 9, 2, 8, 8, true),  // the other specialised widths
            (1, 1, 16, 8, 3, 5, 9, 1, 6, 10, true),
            (2, 2, 4, 16, 5, 7, 9, 2, 10, 13, false), // the shipped widths, a head per group
        ];
        let q8 = |scale: f32, zero_point: i32| {
            let q = crate::ops::QType {
                scale,
                zero_point,
                signed: false,
            };
            let wide = crate::ops::QType {
                scale: scale * 1.5,
                ..q
            };
            // A requantization after the first rounding, as a QDQ chain through reshapes has;
            // the first reads its integers back with other parameters (shifted zero point).
            let other = crate::ops::QType {
                scale: scale * 1.25,
                zero_point: zero_point - 3,
                ..q
            };
            vec![
                QRound {
                    quant: q,
                    dequant: other,
                },
                QRound {
                    quant: wide,
                    dequant: wide,
                },
            ]
        };
        // no rounding (float), one per point (what the NEON path runs), two (a chain)
        let rounded = [0, 1, 2];
        for ((b, g, ck, cv, h, w, n, nh, ho, wo, ac), int8) in
            cases.into_iter().flat_map(|c| rounded.map(|r| (c, r)))
        {
            let r = |scale, zp| q8(scale, zp)[..int8].to_vec();
            let a = LdaAqu {
                sample: GridSample {
                    mode: GridMode::Bilinear,
                    padding: GridPadding::Zeros,
                    align_corners: ac,
                },
                taps: n,
                heads: nh,
                groups: g,
                round_keys: r(0.02, 128),
                round_biased: r(0.025, 120),
                round_attn: r(1.0 / 255.0, 0),
                round_values: r(0.03, 130),
                round_qk: r(0.01, 128),
                round_logits: r(0.05, 128),
                round_weighted: r(0.01, 128),
            };
            let k = rng.arr(&[b * g, ck, h, w]);
            let v = rng.arr(&[b * g, cv, h, w]);
            // Coordinates a little beyond [-1, 1] so the zeros padding is exercised.
            let mut grid = rng.arr(&[b * g, n * ho, wo, 2]).mapv(|x| x * 1.2);
            // and points that are not finite or far away (every corner outside)
            let odd = [f32::NAN, f32::INFINITY, f32::NEG_INFINITY, 1e9, -3.0];
            for (i, x) in grid.iter_mut().enumerate().filter(|(i, _)| i % 7 == 3) {
                *x = odd[i % odd.len()];
            }
            let q: Vec<f32> = rng.arr(&[b * g * ck * ho * wo]).iter().copied().collect();
            let bias: Vec<f32> = rng.arr(&[g * ck * n]).iter().copied().collect();
            let want = unfused(&a, &k, &v, &grid, &q, &bias);
            let qv = ArrayD::from_shape_vec(IxDyn(&[q.len()]), q.clone()).unwrap();
            let bv = ArrayD::from_shape_vec(IxDyn(&[bias.len()]), bias.clone()).unwrap();
            let ins = [k.view(), v.view(), grid.view(), qv.view(), bv.view()];
            let shapes: Vec<&[usize]> = ins.iter().map(|x| x.shape()).collect();
            let out_shape = lda_aqu_shape(&a, &shapes).unwrap();
            assert_eq!(out_shape, [b, nh, g * cv / nh, ho, wo]);
            let mut portable = ArrayD::zeros(IxDyn(&out_shape));
            run_lda_aqu_isa(Isa::Scalar, &a, &ins, &mut portable.view_mut()).unwrap();
            for isa in [Isa::Scalar, Isa::Avx2, Isa::Avx512, Isa::Neon] {
                if !isa.supported() {
                    continue;
                }
                let mut got = ArrayD::zeros(IxDyn(&out_shape));
                run_lda_aqu_isa(isa, &a, &ins, &mut got.view_mut()).unwrap();
                let case = (b, g, ck, cv, h, w, n, nh);
                for (i, (x, y)) in got.iter().zip(want.iter()).enumerate() {
                    assert!(
                        (x - y).abs() <= 1e-5 * (1.0 + y.abs()),
                        "{isa:?} {case:?} [{i}]: {x} vs {y}"
                    );
                }
                // Every vector path does the portable operations in the portable order, but
                // the NEON float paths (nothing to round) fuse multiply-adds.
                if isa == Isa::Neon && int8 == 0 {
                    continue;
                }
                for (i, (x, y)) in got.iter().zip(portable.iter()).enumerate() {
                    assert_eq!(
                        x.to_bits(),
                        y.to_bits(),
                        "{isa:?} {case:?} [{i}]: {x} vs {y}"
                    );
                }
            }
        }
    }

    #[test]
    fn bad_shapes_are_errors() {
        let a = LdaAqu {
            sample: GridSample {
                mode: GridMode::Bilinear,
                padding: GridPadding::Zeros,
                align_corners: true,
            },
            taps: 9,
            heads: 1,
            groups: 2,
            round_keys: vec![],
            round_biased: vec![],
            round_attn: vec![],
            round_values: vec![],
            round_qk: vec![],
            round_logits: vec![],
            round_weighted: vec![],
        };
        let ok: [&[usize]; 5] = [
            &[2, 4, 6, 6],
            &[2, 16, 6, 6],
            &[2, 108, 12, 2],
            &[1152],
            &[72],
        ];
        assert!(lda_aqu_shape(&a, &ok).is_ok());
        let mut bad = ok;
        bad[2] = &[2, 100, 12, 2];
        assert!(lda_aqu_shape(&a, &bad).is_err());
        let mut bad = ok;
        bad[4] = &[71];
        assert!(lda_aqu_shape(&a, &bad).is_err());
        let mut bad = ok;
        bad[1] = &[2, 16, 6, 5];
        assert!(lda_aqu_shape(&a, &bad).is_err());
        let nearest = LdaAqu {
            sample: GridSample {
                mode: GridMode::Nearest,
                ..a.sample.clone()
            },
            ..a.clone()
        };
        assert!(lda_aqu_shape(&nearest, &ok).is_err());
    }
}
