//! LDA-AQU's deformable sampling and attention as one op (made by `passes::fuse_lda_aqu`).
//!
//! The exported upsampler samples keys and values at `n` offset taps around every output
//! pixel (two GridSamples whose outputs are `n` times the upsampled map), adds the relative
//! position bias, dots the keys with the query, softmaxes over the taps and sums the values
//! weighted by the attention. Here each output pixel's taps are computed once, shared by
//! keys and values, and nothing tap-sized is ever written to memory. The arithmetic is the
//! unfused graph's, in the same order (GridSample's bilinear terms, sequential channel and tap
//! sums, max-subtracted softmax), so the result matches it to rounding.

use super::grid_sample::{bilinear_taps, Taps};
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
/// `round_*` fields apply the same roundings (in order) at the same points (sampled keys, keys plus bias,
/// attention, sampled values), so the fused op equals the fake-quantized graph.
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
}

/// Apply roundings to a row, in order.
#[inline(always)]
fn round_row(rounds: &[QRound], row: &mut [f32]) {
    for r in rounds {
        row.iter_mut().for_each(|v| *v = r.apply(*v));
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
        bias,
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

/// `[N][C][HW]` -> `[N][HW][C]`.
fn channels_last(x: &[f32], c: usize, hw: usize) -> Vec<f32> {
    let mut t = vec![0.0; x.len()];
    for (src, dst) in x.chunks_exact(c * hw).zip(t.chunks_exact_mut(c * hw)) {
        for (ch, plane) in src.chunks_exact(hw).enumerate() {
            for (px, &v) in plane.iter().enumerate() {
                dst[px * c + ch] = v;
            }
        }
    }
    t
}

struct Inputs<'a> {
    /// keys, channels last
    kt: &'a [f32],
    /// values, channels last
    vt: &'a [f32],
    grid: &'a [f32],
    q: &'a [f32],
    bias: &'a [f32],
}

/// Per-thread buffers.
struct Scratch {
    /// one pixel's taps, `[g][t]`
    taps: Vec<Taps>,
    /// one pixel's logits, then attention, `[head][t]`
    attn: Vec<f32>,
    /// one tap's sampled channels
    sampled: Vec<f32>,
    /// one pixel's output channels
    acc: Vec<f32>,
    /// the block's output, `[channel][BLOCK]`
    out: Vec<f32>,
    /// a row of zeros standing in for taps outside the image
    zeros: Vec<f32>,
}

impl Scratch {
    fn new(a: &LdaAqu, d: &Dims) -> Scratch {
        let widest = d.ck.max(d.cv);
        Scratch {
            taps: vec![Taps::default(); d.g * a.taps],
            attn: vec![0.0; a.heads * a.taps],
            sampled: vec![0.0; widest],
            acc: vec![0.0; d.g * d.cv],
            out: vec![0.0; d.g * d.cv * BLOCK],
            zeros: vec![0.0; widest],
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
        /// [`block`] compiled with `$features` enabled.
        macro_rules! build {
            ($name:ident, $features:literal) => {
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
                    block(a, d, sc, ins, bi, p0, len, out)
                }
            };
        }
        build!(avx2, "avx2,fma");
        build!(avx512, "avx512f,avx2,fma");
        match isa {
            Isa::Avx512 => return avx512(a, d, sc, ins, bi, p0, len, out),
            Isa::Avx2 => return avx2(a, d, sc, ins, bi, p0, len, out),
            _ => {}
        }
    }
    let _ = isa;
    block(a, d, sc, ins, bi, p0, len, out)
}

/// `dst[c] = dy2 * (dx2 * r0[c] + dx1 * r1[c]) + dy1 * (dx2 * r2[c] + dx1 * r3[c])`, the
/// corners' channel rows (GridSample's bilinear terms, vectorised over channels). Corners
/// outside the image read `zeros`.
///
/// # Safety
/// Every index of `t` must be a pixel of `img` (`img.len() / c` pixels), `zeros.len() >= c`.
#[inline(always)]
unsafe fn sample_row(img: &[f32], c: usize, t: &Taps, zeros: &[f32], dst: &mut [f32]) {
    let row = |k: usize| {
        if t.valid & (1 << k) != 0 {
            img.get_unchecked(t.idx[k] as usize * c..(t.idx[k] as usize + 1) * c)
        } else {
            &zeros[..c]
        }
    };
    let (r0, r1, r2, r3) = (row(0), row(1), row(2), row(3));
    let [dx2, dx1, dy2, dy1] = t.w;
    let dst = &mut dst[..c];
    for i in 0..c {
        dst[i] = dy2 * (dx2 * r0[i] + dx1 * r1[i]) + dy1 * (dx2 * r2[i] + dx1 * r3[i]);
    }
}

/// One block of `len` output pixels from `p0` of image `bi`.
///
/// # Safety
/// `out` must point to the whole output, and no other thread may write this block.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
unsafe fn block(
    a: &LdaAqu,
    d: &Dims,
    sc: &mut Scratch,
    ins: &Inputs,
    bi: usize,
    p0: usize,
    len: usize,
    out: SharedOut,
) {
    let (n, nh, g) = (a.taps, a.heads, d.g);
    let plane_out = d.ho * d.wo;
    let (kc, vc) = (g * d.ck, g * d.cv);
    let (dh, vh) = (kc / nh, vc / nh);
    for i in 0..len {
        let p = p0 + i;
        for gi in 0..g {
            let gimg = &ins.grid[(bi * g + gi) * n * plane_out * 2..];
            for t in 0..n {
                let at = (t * plane_out + p) * 2;
                // A non-finite coordinate samples zeros padding: all four corners outside.
                let tp = bilinear_taps(&a.sample, d.h, d.w, gimg[at], gimg[at + 1]);
                sc.taps[gi * n + t] = tp.unwrap_or_default();
            }
        }
        // Logits per head and tap: query . (sampled key + bias), channels in order.
        sc.attn.fill(0.0);
        for gi in 0..g {
            let img = &ins.kt[(bi * g + gi) * d.hw * d.ck..][..d.hw * d.ck];
            for t in 0..n {
                sample_row(img, d.ck, &sc.taps[gi * n + t], &sc.zeros, &mut sc.sampled);
                let keys = &mut sc.sampled[..d.ck];
                round_row(&a.round_keys, keys);
                for (c, k) in keys.iter_mut().enumerate() {
                    *k += ins.bias[(gi * d.ck + c) * n + t];
                }
                round_row(&a.round_biased, keys);
                for (c, &k) in keys.iter().enumerate() {
                    let ch = gi * d.ck + c;
                    let qv = ins.q[(bi * kc + ch) * plane_out + p];
                    sc.attn[(ch / dh) * n + t] += qv * k;
                }
            }
        }
        // Softmax over the taps (as `run_softmax`: max-subtracted, times the reciprocal sum).
        for at in sc.attn.chunks_exact_mut(n) {
            let m = at.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v));
            let mut s = 0.0f32;
            for v in at.iter_mut() {
                *v = (*v - m).exp();
                s += *v;
            }
            let inv = 1.0 / s;
            at.iter_mut().for_each(|v| *v *= inv);
            round_row(&a.round_attn, at);
        }
        // Values: the attention-weighted sum of the sampled taps, taps in order.
        sc.acc.fill(0.0);
        for gi in 0..g {
            let img = &ins.vt[(bi * g + gi) * d.hw * d.cv..][..d.hw * d.cv];
            let acc = &mut sc.acc[gi * d.cv..(gi + 1) * d.cv];
            for t in 0..n {
                sample_row(img, d.cv, &sc.taps[gi * n + t], &sc.zeros, &mut sc.sampled);
                round_row(&a.round_values, &mut sc.sampled[..d.cv]);
                // Runs of channels that share a head share the attention weight.
                let mut c0 = 0;
                while c0 < d.cv {
                    let head = (gi * d.cv + c0) / vh;
                    let c1 = ((head + 1) * vh - gi * d.cv).min(d.cv);
                    let w = sc.attn[head * n + t];
                    for (o, &v) in acc[c0..c1].iter_mut().zip(&sc.sampled[c0..c1]) {
                        *o += w * v;
                    }
                    c0 = c1;
                }
            }
        }
        for (ch, &v) in sc.acc.iter().enumerate() {
            sc.out[ch * BLOCK + i] = v;
        }
    }
    for ch in 0..vc {
        let dst = std::slice::from_raw_parts_mut(out.at((bi * vc + ch) * plane_out + p0), len);
        dst.copy_from_slice(&sc.out[ch * BLOCK..ch * BLOCK + len]);
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
        let logits = (round(&ks + &ba, &a.round_biased) * &qa)
            .sum_axis(Axis(2))
            .insert_axis(Axis(2));
        let mut attn = ArrayD::zeros(logits.raw_dim());
        run_softmax(3, &logits.view().into_dyn(), &mut attn.view_mut()).unwrap();
        let attn = round(attn, &a.round_attn);
        (&attn * &vs).sum_axis(Axis(3))
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
            // A requantization after the first rounding, as a QDQ chain through reshapes has.
            vec![
                QRound {
                    quant: q,
                    dequant: q,
                },
                QRound {
                    quant: wide,
                    dequant: wide,
                },
            ]
        };
        let rounded = [false, true];
        for ((b, g, ck, cv, h, w, n, nh, ho, wo, ac), int8) in
            cases.into_iter().flat_map(|c| rounded.map(|r| (c, r)))
        {
            let r = |scale, zp| if int8 { q8(scale, zp) } else { vec![] };
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
            };
            let k = rng.arr(&[b * g, ck, h, w]);
            let v = rng.arr(&[b * g, cv, h, w]);
            // Coordinates a little beyond [-1, 1] so the zeros padding is exercised.
            let grid = rng.arr(&[b * g, n * ho, wo, 2]).mapv(|x| x * 1.2);
            let q: Vec<f32> = rng.arr(&[b * g * ck * ho * wo]).iter().copied().collect();
            let bias: Vec<f32> = rng.arr(&[g * ck * n]).iter().copied().collect();
            let want = unfused(&a, &k, &v, &grid, &q, &bias);
            let qv = ArrayD::from_shape_vec(IxDyn(&[q.len()]), q.clone()).unwrap();
            let bv = ArrayD::from_shape_vec(IxDyn(&[bias.len()]), bias.clone()).unwrap();
            let ins = [k.view(), v.view(), grid.view(), qv.view(), bv.view()];
            let shapes: Vec<&[usize]> = ins.iter().map(|x| x.shape()).collect();
            let out_shape = lda_aqu_shape(&a, &shapes).unwrap();
            assert_eq!(out_shape, [b, nh, g * cv / nh, ho, wo]);
            for isa in [Isa::Scalar, Isa::Avx2, Isa::Avx512, Isa::Neon] {
                if !isa.supported() {
                    continue;
                }
                let mut got = ArrayD::zeros(IxDyn(&out_shape));
                run_lda_aqu_isa(isa, &a, &ins, &mut got.view_mut()).unwrap();
                for (i, (x, y)) in got.iter().zip(want.iter()).enumerate() {
                    let case = (b, g, ck, cv, h, w, n, nh);
                    assert!(
                        (x - y).abs() <= 1e-5 * (1.0 + y.abs()),
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
