//! aarch64 NEON builds of the element-wise row kernels, 16 values per step and bit-identical
//! to the portable ones: the same IEEE operations in the same order (`(q - zp) as f32 *
//! scale`, the `+`/`*`, `/ scale`), with the rounding done by `FCVTNS` (nearest, ties to
//! even: the portable add-and-subtract of 1.5 * 2^23 gives the same integer within the
//! +-512 clamp), the lower clamp by `FMAXNM` (a NaN becomes the bound, as Rust's `max`),
//! and the upper one, `+ zp` and the final clamp to 0..255 in saturating integer steps.
//! LLVM vectorised the portable loops only 4 wide, with the 256-entry widening on every
//! value (about 13 instructions per element for Add; now under 4).

use super::QType;
use std::arch::aarch64::*;

/// Values per step.
const W: usize = 16;

/// Dequantize 16 stored bytes: `(v - zp) as f32 * scale`, four vectors. `v - zp` is one
/// widening `USUBL`/`USUBL2` per 8 bytes (the u16 difference modulo 2^16 is the signed one),
/// so `zp` must be a byte ([`byte_zp`]). (In `asm!`: from `vsubl_high_u8` of a splat LLVM
/// made an `EXT` and a `USUBL`.)
#[inline(always)]
unsafe fn dq16(v: uint8x16_t, zp: uint8x16_t, scale: float32x4_t) -> [float32x4_t; 4] {
    let (lo, hi): (int16x8_t, int16x8_t);
    std::arch::asm!(
        "usubl {lo:v}.8h, {v:v}.8b, {z:v}.8b",
        "usubl2 {hi:v}.8h, {v:v}.16b, {z:v}.16b",
        v = in(vreg) v,
        z = in(vreg) zp,
        lo = out(vreg) lo,
        hi = out(vreg) hi,
        options(pure, nomem, nostack, preserves_flags),
    );
    let f = |x: int32x4_t| vmulq_f32(vcvtq_f32_s32(x), scale);
    [
        f(vmovl_s16(vget_low_s16(lo))),
        f(vmovl_high_s16(lo)),
        f(vmovl_s16(vget_low_s16(hi))),
        f(vmovl_high_s16(hi)),
    ]
}

/// Quantize 16 values: `clamp(round_half_even(clamp(x / scale, +-512)) + zp, 0, 255)`.
/// Only the lower bound is applied in f32 (`FMAXNM`, which also sends NaN to -512 as the
/// portable `max` does): above 512 the saturating steps (`FCVTNS`, `SQXTN`, `SQADD` of the
/// zero point, `SQXTUN`) reach 255 as the clamp would, 4 instructions fewer per 16 values.
/// Below -512 they reach 0 too, so `NAN = false` (no value can be NaN: see [`nan_free`])
/// leaves out the `FMAXNM`s as well.
#[inline(always)]
unsafe fn q16<const NAN: bool>(
    f: [float32x4_t; 4],
    scale: float32x4_t,
    zp: int16x8_t,
) -> uint8x16_t {
    let lo = vdupq_n_f32(-512.0);
    let r = f.map(|v| {
        let v = vdivq_f32(v, scale);
        vcvtnq_s32_f32(if NAN { vmaxnmq_f32(v, lo) } else { v })
    });
    let a = vqaddq_s16(vqmovn_high_s32(vqmovn_s32(r[0]), r[1]), zp);
    let b = vqaddq_s16(vqmovn_high_s32(vqmovn_s32(r[2]), r[3]), zp);
    vqmovun_high_s16(vqmovun_s16(a), b)
}

/// Whether `DQ(a) op b` is never NaN for any byte `a` of `qa` and any `|b| <= b_max`: the
/// largest magnitudes (`255 * scale`, `b_max`) and their sum or product are finite, so every
/// operand and result is (and `x / scale` of a finite `x` is at worst infinite, which the
/// saturating steps clamp as the portable code does).
#[inline(always)]
fn nan_free(mul: bool, qa: QType, b_max: f32) -> bool {
    let a_max = 255.0 * qa.scale;
    let r = if mul { a_max * b_max } else { a_max + b_max };
    a_max.is_finite() && b_max.is_finite() && r.is_finite()
}

/// A quantization's vector constants: zero point (i16 lanes) and scale.
#[inline(always)]
unsafe fn consts(q: QType) -> (int16x8_t, float32x4_t) {
    (vdupq_n_s16(q.zero_point as i16), vdupq_n_f32(q.scale))
}

/// Whether [`dq16`] can read `q` (its zero point is a byte: every QType made from a model's
/// 8-bit parameters; the callers fall back to the portable loop otherwise).
#[inline(always)]
fn byte_zp(q: QType) -> bool {
    (0..=255).contains(&q.zero_point)
}

/// An input quantization's vector constants for [`dq16`]: zero point (bytes) and scale.
#[inline(always)]
unsafe fn in_consts(q: QType) -> (uint8x16_t, float32x4_t) {
    (vdupq_n_u8(q.zero_point as u8), vdupq_n_f32(q.scale))
}

/// `sum[c] += x[p * C + c]` over the pixels of `x` (`C = sum.len()`): per block of 16
/// channels, two u16 accumulators in registers (`UADDW`/`UADDW2`: one load and two adds per
/// pixel and block; 256 pixels of 255 still fit u16) widened into u32 every 256 pixels.
/// LLVM's vectorised portable loop widened every byte to u32 and loaded and stored the sums
/// per pixel (about 2 instructions per byte).
///
/// # Safety
/// The host must have NEON (every aarch64 CPU).
pub unsafe fn sum_pixels(x: &[u8], sum: &mut [u32]) {
    let c = sum.len();
    if c < W {
        super::sum_pixels_portable(x, sum);
        return;
    }
    let px = x.len() / c;
    let mut c0 = 0;
    while c0 < c {
        // the last block ends at c, overlapping the previous one; only its new channels count
        let at = c0.min(c - W);
        let s = sum_block16(x.as_ptr().add(at), c, px);
        for (ch, v) in s.iter().enumerate().skip(c0 - at) {
            sum[at + ch] += v;
        }
        c0 += W;
    }
}

/// The sums over `px` pixels (`c` bytes apart) of the 16 channels at `x`: four pixels a step
/// into two pairs of u16 accumulators (15 instructions for four pixels, against 7 a pixel
/// one at a time), added together and widened every 256 pixels (at most 65280 a lane).
#[inline(always)]
unsafe fn sum_block16(x: *const u8, c: usize, px: usize) -> [u32; W] {
    let mut acc = [vdupq_n_u32(0); 4];
    let add = |lo: &mut uint16x8_t, hi: &mut uint16x8_t, v: uint8x16_t| {
        *lo = vaddw_u8(*lo, vget_low_u8(v));
        *hi = vaddw_high_u8(*hi, v);
    };
    let mut p0 = 0;
    while p0 < px {
        let p1 = (p0 + 256).min(px);
        let [mut lo, mut hi, mut lo2, mut hi2] = [vdupq_n_u16(0); 4];
        let mut at = x.add(p0 * c);
        let mut left = p1 - p0;
        while left >= 4 {
            add(&mut lo, &mut hi, vld1q_u8(at));
            add(&mut lo2, &mut hi2, vld1q_u8(at.add(c)));
            add(&mut lo, &mut hi, vld1q_u8(at.add(2 * c)));
            add(&mut lo2, &mut hi2, vld1q_u8(at.add(3 * c)));
            at = at.add(4 * c);
            left -= 4;
        }
        for _ in 0..left {
            add(&mut lo, &mut hi, vld1q_u8(at));
            at = at.add(c);
        }
        let (lo, hi) = (vaddq_u16(lo, lo2), vaddq_u16(hi, hi2));
        acc[0] = vaddw_u16(acc[0], vget_low_u16(lo));
        acc[1] = vaddw_high_u16(acc[1], lo);
        acc[2] = vaddw_u16(acc[2], vget_low_u16(hi));
        acc[3] = vaddw_high_u16(acc[3], hi);
        p0 = p1;
    }
    let mut out = [0u32; W];
    for (j, a) in acc.iter().enumerate() {
        vst1q_u32(out.as_mut_ptr().add(4 * j), *a);
    }
    out
}

/// `y[i] = Q(x[i])`.
///
/// # Safety
/// The host must have NEON (every aarch64 CPU).
pub unsafe fn quantize_row(q: QType, x: &[f32], y: &mut [u8]) {
    let n = x.len().min(y.len());
    let (zp, s) = consts(q);
    let mut i = 0;
    while i + W <= n {
        let v = vld1q_f32_x4(x.as_ptr().add(i));
        vst1q_u8(
            y.as_mut_ptr().add(i),
            q16::<true>([v.0, v.1, v.2, v.3], s, zp),
        );
        i += W;
    }
    for (o, &v) in y[i..n].iter_mut().zip(&x[i..n]) {
        *o = q.quantize(v);
    }
}

/// `y[i] = Q(DQ(a[i]) op DQ(b[i]))`, `op` `+` or (`mul`) `*`.
///
/// # Safety
/// The host must have NEON (every aarch64 CPU).
pub unsafe fn binary_row(
    mul: bool,
    qa: QType,
    qb: QType,
    qo: QType,
    a: &[u8],
    b: &[u8],
    y: &mut [u8],
) {
    let n = a.len().min(b.len()).min(y.len());
    binary_ptr(mul, qa, qb, qo, a.as_ptr(), b.as_ptr(), y.as_mut_ptr(), n);
}

/// [`binary_row`] in place: `y[i] = Q(DQ_a(y[i]) op DQ_b(b[i]))` (a residual Add fused into a
/// conv, on the rows it just wrote).
///
/// # Safety
/// The host must have NEON (every aarch64 CPU).
pub unsafe fn binary_row_in_place(
    mul: bool,
    qa: QType,
    qb: QType,
    qo: QType,
    b: &[u8],
    y: &mut [u8],
) {
    let n = b.len().min(y.len());
    let y = y.as_mut_ptr();
    binary_ptr(mul, qa, qb, qo, y, b.as_ptr(), y, n);
}

/// [`binary_ptr`]'s whole steps of 16 values (`NAN` as in [`q16`]); returns how many values
/// were done.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
unsafe fn binary_steps<const NAN: bool>(
    mul: bool,
    qa: QType,
    qb: QType,
    qo: QType,
    a: *const u8,
    b: *const u8,
    y: *mut u8,
    n: usize,
) -> usize {
    let ((za, sa), (zb, sb), (zo, so)) = (in_consts(qa), in_consts(qb), consts(qo));
    for s in 0..n / W {
        let i = s * W;
        let fa = dq16(vld1q_u8(a.add(i)), za, sa);
        let fb = dq16(vld1q_u8(b.add(i)), zb, sb);
        let f: [float32x4_t; 4] = if mul {
            std::array::from_fn(|j| vmulq_f32(fa[j], fb[j]))
        } else {
            std::array::from_fn(|j| vaddq_f32(fa[j], fb[j]))
        };
        vst1q_u8(y.add(i), q16::<NAN>(f, so, zo));
    }
    n / W * W
}

/// [`binary_row`] on `n` values at raw pointers; `a` may be `y` (each step loads its 16
/// values before it stores them).
#[allow(clippy::too_many_arguments)]
#[inline(always)]
unsafe fn binary_ptr(
    mul: bool,
    qa: QType,
    qb: QType,
    qo: QType,
    a: *const u8,
    b: *const u8,
    y: *mut u8,
    n: usize,
) {
    let i = match (
        byte_zp(qa) && byte_zp(qb),
        nan_free(mul, qa, 255.0 * qb.scale),
    ) {
        (false, _) => 0,
        (true, true) => binary_steps::<false>(mul, qa, qb, qo, a, b, y, n),
        (true, false) => binary_steps::<true>(mul, qa, qb, qo, a, b, y, n),
    };
    for j in i..n {
        let (x, z) = (qa.dequantize(*a.add(j)), qb.dequantize(*b.add(j)));
        *y.add(j) = qo.quantize(if mul { x * z } else { x + z });
    }
}

/// Per-channel broadcast over NHWC pixels of `bt.len()` channels:
/// `y[p, c] = Q(DQ(a[p, c]) op bt[c])`; a pixel's last `C % 16` channels are the last 16
/// channels computed again (fewer than 16 channels: through a 16-lane buffer; its `memcpy`
/// calls per pixel had cost more than the arithmetic).
///
/// # Safety
/// The host must have NEON (every aarch64 CPU).
pub unsafe fn channels_rows(mul: bool, qa: QType, qo: QType, bt: &[f32], a: &[u8], y: &mut [u8]) {
    let c = bt.len();
    if c == 0 {
        return;
    }
    if !byte_zp(qa) {
        super::channels_rows_portable(mul, qa, qo, bt, a, y);
        return;
    }
    let b_max = bt
        .iter()
        .try_fold(0f32, |m, v| v.is_finite().then(|| m.max(v.abs())));
    // (`*` or `+` and the NaN clamp fixed per loop: LLVM had tested `mul` every 16 values)
    match (mul, b_max.is_some_and(|b| nan_free(mul, qa, b))) {
        (true, true) => channels_steps::<true, false>(qa, qo, bt, a, y),
        (true, false) => channels_steps::<true, true>(qa, qo, bt, a, y),
        (false, true) => channels_steps::<false, false>(qa, qo, bt, a, y),
        (false, false) => channels_steps::<false, true>(qa, qo, bt, a, y),
    }
}

/// [`channels_rows`] with byte zero points (`NAN` as in [`q16`]).
#[inline(always)]
unsafe fn channels_steps<const MUL: bool, const NAN: bool>(
    qa: QType,
    qo: QType,
    bt: &[f32],
    a: &[u8],
    y: &mut [u8],
) {
    let c = bt.len();
    let ((za, sa), (zo, so)) = (in_consts(qa), consts(qo));
    let op = |va: uint8x16_t, b: *const f32| {
        let fa = dq16(va, za, sa);
        let fb = vld1q_f32_x4(b);
        let fb = [fb.0, fb.1, fb.2, fb.3];
        let f: [float32x4_t; 4] = if MUL {
            std::array::from_fn(|j| vmulq_f32(fa[j], fb[j]))
        } else {
            std::array::from_fn(|j| vaddq_f32(fa[j], fb[j]))
        };
        q16::<NAN>(f, so, zo)
    };
    let full = c / W * W;
    let mut bt_tail = [0f32; W];
    bt_tail[..c - full].copy_from_slice(&bt[full..]);
    for (yp, ap) in y.chunks_exact_mut(c).zip(a.chunks_exact(c)) {
        let mut j = 0;
        while j < full {
            let v = op(vld1q_u8(ap.as_ptr().add(j)), bt.as_ptr().add(j));
            vst1q_u8(yp.as_mut_ptr().add(j), v);
            j += W;
        }
        if full < c && c >= W {
            // the last 16 channels again, ending at c (same inputs, same bytes)
            let v = op(vld1q_u8(ap.as_ptr().add(c - W)), bt.as_ptr().add(c - W));
            vst1q_u8(yp.as_mut_ptr().add(c - W), v);
        } else if full < c {
            let mut t = [0u8; W];
            t[..c - full].copy_from_slice(&ap[full..]);
            let v = op(vld1q_u8(t.as_ptr()), bt_tail.as_ptr());
            vst1q_u8(t.as_mut_ptr(), v);
            yp[full..].copy_from_slice(&t[..c - full]);
        }
    }
}

/// `out[i] = [planes[0][i], planes[1][i], planes[2][i]]` for 3 planes of `block` bytes
/// (`VST3`, 16 pixels per step).
///
/// # Safety
/// The host must have NEON (every aarch64 CPU); `planes` holds 3 planes of `block` bytes
/// and `out` at most `block` pixels.
pub unsafe fn interleave3(planes: &[u8], block: usize, out: &mut [u8]) {
    let px = (out.len() / 3).min(block);
    let p = planes.as_ptr();
    let mut i = 0;
    while i + W <= px {
        let v = uint8x16x3_t(
            vld1q_u8(p.add(i)),
            vld1q_u8(p.add(block + i)),
            vld1q_u8(p.add(2 * block + i)),
        );
        vst3q_u8(out.as_mut_ptr().add(3 * i), v);
        i += W;
    }
    for j in i..px {
        for ch in 0..3 {
            out[3 * j + ch] = planes[ch * block + j];
        }
    }
}

/// `out[i][ch] = planes[ch][i]` for the whole 16 x 16 tiles of `c` planes of `block` bytes
/// and `pn` NHWC pixels, transposed in registers; returns the pixels and channels done (`pn`
/// and `c` rounded down to 16).
///
/// # Safety
/// The host must have NEON (every aarch64 CPU).
pub unsafe fn interleave_tiles(
    planes: &[u8],
    block: usize,
    c: usize,
    pn: usize,
    out: &mut [u8],
) -> (usize, usize) {
    let (p16, c16) = (pn / W * W, c / W * W);
    assert!(pn <= block && planes.len() >= c * block && out.len() >= pn * c);
    for p in (0..p16).step_by(W) {
        for ch in (0..c16).step_by(W) {
            let mut r: [uint8x16_t; 16] =
                std::array::from_fn(|i| vld1q_u8(planes.as_ptr().add((ch + i) * block + p)));
            transpose16(&mut r);
            for (j, v) in r.iter().enumerate() {
                vst1q_u8(out.as_mut_ptr().add((p + j) * c + ch), *v);
            }
        }
    }
    (p16, c16)
}

/// `r[i][j] <-> r[j][i]`: a 16 x 16 byte transpose in four `TRN1`/`TRN2` rounds (bytes,
/// halfwords, words, doublewords between rows 1, 2, 4 and 8 apart).
#[inline(always)]
unsafe fn transpose16(r: &mut [uint8x16_t; 16]) {
    macro_rules! round {
        ($d:literal, $to:ident, $from:ident, $t1:ident, $t2:ident) => {
            for i in (0..16).filter(|i| i & $d == 0) {
                let (a, b) = ($to(r[i]), $to(r[i + $d]));
                r[i] = $from($t1(a, b));
                r[i + $d] = $from($t2(a, b));
            }
        };
    }
    let id = |v: uint8x16_t| v;
    round!(1, id, id, vtrn1q_u8, vtrn2q_u8);
    round!(
        2,
        vreinterpretq_u16_u8,
        vreinterpretq_u8_u16,
        vtrn1q_u16,
        vtrn2q_u16
    );
    round!(
        4,
        vreinterpretq_u32_u8,
        vreinterpretq_u8_u32,
        vtrn1q_u32,
        vtrn2q_u32
    );
    round!(
        8,
        vreinterpretq_u64_u8,
        vreinterpretq_u8_u64,
        vtrn1q_u64,
        vtrn2q_u64
    );
}

/// DequantizeLinear of `pn` NHWC pixels of `c` channels (`src`) into NCHW planes `hw` floats
/// apart from `dst` (the block's first pixel in plane 0): 16 pixels x 16 channels at a time,
/// transposed in registers and converted 16 values per step; the ragged rest through
/// `table` (`q.dequantize` of every byte, the same values).
///
/// # Safety
/// The host must have NEON; `src` holds `pn * c` bytes and `dst` `c` planes of `hw` floats
/// from the block's pixel on.
pub unsafe fn dequantize_block(
    q: QType,
    table: &[f32; 256],
    src: &[u8],
    c: usize,
    pn: usize,
    dst: *mut f32,
    hw: usize,
) {
    let (zp, s) = in_consts(q);
    let (p16, c16) = (pn / W * W, c / W * W);
    let rest = |p0: usize, p1: usize, c0: usize| {
        for ch in c0..c {
            for p in p0..p1 {
                *dst.add(ch * hw + p) = table[src[p * c + ch] as usize];
            }
        }
    };
    if !byte_zp(q) {
        rest(0, pn, 0);
        return;
    }
    let store = |v: uint8x16_t, o: *mut f32| {
        let f = dq16(v, zp, s);
        vst1q_f32_x4(o, float32x4x4_t(f[0], f[1], f[2], f[3]));
    };
    if c == 4 || c == 8 {
        // Fewer channels than a tile (the LDA-AQU query's 8): split by LD4. With 8 channels,
        // register k of 8 pixels holds channel k in its even lanes and k + 4 in its odd ones.
        assert!(src.len() >= p16 * c);
        for p in (0..p16).step_by(W) {
            let at = src.as_ptr().add(p * c);
            let a = vld4q_u8(at);
            let a = [a.0, a.1, a.2, a.3];
            if c == 4 {
                for (k, v) in a.into_iter().enumerate() {
                    store(v, dst.add(k * hw + p));
                }
                continue;
            }
            let b = vld4q_u8(at.add(64));
            let b = [b.0, b.1, b.2, b.3];
            for k in 0..4 {
                store(vuzp1q_u8(a[k], b[k]), dst.add(k * hw + p));
                store(vuzp2q_u8(a[k], b[k]), dst.add((k + 4) * hw + p));
            }
        }
        rest(p16, pn, 0);
        return;
    }
    for p in (0..p16).step_by(W) {
        for ch in (0..c16).step_by(W) {
            let mut r: [uint8x16_t; 16] =
                std::array::from_fn(|i| vld1q_u8(src.as_ptr().add((p + i) * c + ch)));
            transpose16(&mut r);
            for (j, v) in r.iter().enumerate() {
                store(*v, dst.add((ch + j) * hw + p));
            }
        }
        rest(p, p + W, c16);
    }
    rest(p16, pn, 0);
}
