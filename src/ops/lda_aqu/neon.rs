//! LDA-AQU's sampling and attention on aarch64 NEON.
//!
//! The portable loops vectorise over the block's pixels, which suits 8- and 16-lane x86
//! vectors; on aarch64 LLVM left the corners scalar, kept rows of channels on the stack and
//! streamed every rounding through memory. Here the corners go four grid points at a time,
//! and keys and values go one pixel at a time with the pixel's channels in registers: sample,
//! round, bias or weight, round and sum without a tap-sized buffer (a value pixel's sum over
//! the taps never leaves registers). Every value goes through the same IEEE operations in the
//! same order as in the portable code, so the results are identical (the module's test runs
//! both and compares them with the unfused graph).

use super::{corners_from, taps_of, Dims, Inputs, LdaAqu, Scratch, BLOCK};
use crate::ops::QRound;
use core::arch::aarch64::*;

/// `QRound::apply` on four values, its constants in registers.
#[derive(Clone, Copy)]
struct RoundV {
    scale: float32x4_t,
    lo: float32x4_t,
    hi: float32x4_t,
    magic: float32x4_t,
    unmagic: float32x4_t,
    dscale: float32x4_t,
}

impl RoundV {
    fn new(r: &QRound) -> RoundV {
        let c = r.consts();
        // SAFETY: NEON is part of the aarch64 baseline.
        unsafe {
            RoundV {
                scale: vdupq_n_f32(c.scale),
                lo: vdupq_n_f32(c.lo),
                hi: vdupq_n_f32(c.hi),
                magic: vdupq_n_f32(QRound::MAGIC),
                unmagic: vdupq_n_f32(c.unmagic),
                dscale: vdupq_n_f32(c.dscale),
            }
        }
    }

    /// FMAXNM / FMINNM give the non-NaN operand as Rust's `max` / `min` do.
    #[inline(always)]
    unsafe fn apply(self, x: float32x4_t) -> float32x4_t {
        let y = vminnmq_f32(vmaxnmq_f32(vdivq_f32(x, self.scale), self.lo), self.hi);
        vmulq_f32(
            vsubq_f32(vaddq_f32(y, self.magic), self.unmagic),
            self.dscale,
        )
    }
}

/// No rounding or one (the fusing pass merges repeats; longer chains take the portable path,
/// so a second rounding's constants never compete for registers).
#[derive(Clone, Copy)]
struct ChainV(Option<RoundV>);

impl ChainV {
    fn of(rounds: &[QRound]) -> Option<ChainV> {
        match rounds {
            [] => Some(ChainV(None)),
            [r] => Some(ChainV(Some(RoundV::new(r)))),
            _ => None,
        }
    }

    #[inline(always)]
    unsafe fn apply(self, x: float32x4_t) -> float32x4_t {
        match self.0 {
            None => x,
            Some(r) => r.apply(x),
        }
    }
}

/// Four channels from offset `c` of the corners' rows, GridSample's bilinear terms in the
/// portable order: `dy2 * (dx2 * r0 + dx1 * r1) + dy1 * (dx2 * r2 + dx1 * r3)`.
#[inline(always)]
unsafe fn sample4(rows: [*const f32; 4], wts: [f32; 4], c: usize) -> float32x4_t {
    let [dx2, dx1, dy2, dy1] = wts;
    let ld = |k: usize| vld1q_f32(rows[k].add(c));
    let top = vaddq_f32(vmulq_n_f32(ld(0), dx2), vmulq_n_f32(ld(1), dx1));
    let bottom = vaddq_f32(vmulq_n_f32(ld(2), dx2), vmulq_n_f32(ld(3), dx1));
    vaddq_f32(vmulq_n_f32(top, dy2), vmulq_n_f32(bottom, dy1))
}

/// The corners' row pointers of `img` (rows of `width` floats).
#[inline(always)]
unsafe fn rows_of(img: *const f32, width: usize, idx: [u32; 4]) -> [*const f32; 4] {
    idx.map(|k| img.add(k as usize * width))
}

/// The portable `corners`, four grid points per step (the same operations: `/ 2` is the
/// exact `* 0.5`, the floor is FCVTZS then minus one where that rounded up). Also writes
/// them pixel-major for the float paths: `quad_idx[i][k]` the corner rows and `quad_wts[i][k]`
/// their bilinear products (dy2*dx2, dy2*dx1, dy1*dx2, dy1*dx1), one 16-byte row per pixel.
pub(super) fn corners(
    align_corners: bool,
    h: usize,
    w: usize,
    gxy: &[f32],
    idx: &mut [u32],
    wts: &mut [f32],
    (quad_idx, quad_wts): (&mut [u32], &mut [f32]),
) {
    let len = (gxy.len() / 2).min(BLOCK);
    let quads = len / 4 * 4;
    assert!(idx.len() >= 4 * BLOCK && wts.len() >= 4 * BLOCK);
    assert!(quad_idx.len() >= 4 * BLOCK && quad_wts.len() >= 4 * BLOCK);
    // SAFETY: NEON is baseline; loads stay within `gxy[..2 * quads]`, stores within the
    // first `4 * BLOCK` entries of `idx` and `wts` (checked above).
    unsafe {
        let (fw, fh) = (w as f32, h as f32);
        let (one, half, zero) = (vdupq_n_f32(1.0), vdupq_n_f32(0.5), vdupq_n_f32(0.0));
        let (lo, hx, hy) = (
            vdupq_n_f32(-4.0),
            vdupq_n_f32(fw + 4.0),
            vdupq_n_f32(fh + 4.0),
        );
        let inf = vdupq_n_f32(f32::INFINITY);
        let (hu, wu, wi) = (
            vdupq_n_u32(h as u32),
            vdupq_n_u32(w as u32),
            vdupq_n_s32(w as i32),
        );
        let zero_row = vdupq_n_u32((h * w) as u32);
        let denorm = |n: float32x4_t, len: f32| {
            if align_corners {
                vmulq_f32(vmulq_f32(vaddq_f32(n, one), half), vdupq_n_f32(len - 1.0))
            } else {
                vmulq_f32(
                    vsubq_f32(vmulq_f32(vaddq_f32(n, one), vdupq_n_f32(len)), one),
                    half,
                )
            }
        };
        let floor = |v: float32x4_t| {
            let t = vcvtq_s32_f32(v);
            vaddq_s32(t, vreinterpretq_s32_u32(vcgtq_f32(vcvtq_f32_s32(t), v)))
        };
        let (ip, wp) = (idx.as_mut_ptr(), wts.as_mut_ptr());
        let (qip, qwp) = (quad_idx.as_mut_ptr(), quad_wts.as_mut_ptr());
        for i in (0..quads).step_by(4) {
            let g = vld2q_f32(gxy.as_ptr().add(2 * i));
            let (sx, sy) = (denorm(g.0, fw), denorm(g.1, fh));
            let finite = vandq_u32(vcltq_f32(vabsq_f32(sx), inf), vcltq_f32(vabsq_f32(sy), inf));
            let sx = vminnmq_f32(vmaxnmq_f32(sx, lo), hx);
            let sy = vminnmq_f32(vmaxnmq_f32(sy, lo), hy);
            let (x1, y1) = (floor(sx), floor(sy));
            let (x2, y2) = (vaddq_s32(x1, vdupq_n_s32(1)), vaddq_s32(y1, vdupq_n_s32(1)));
            let keep = |v: float32x4_t| vbslq_f32(finite, v, zero);
            let dx2 = keep(vsubq_f32(vcvtq_f32_s32(x2), sx));
            let dx1 = keep(vsubq_f32(sx, vcvtq_f32_s32(x1)));
            let dy2 = keep(vsubq_f32(vcvtq_f32_s32(y2), sy));
            let dy1 = keep(vsubq_f32(sy, vcvtq_f32_s32(y1)));
            vst1q_f32(wp.add(i), dx2);
            vst1q_f32(wp.add(BLOCK + i), dx1);
            vst1q_f32(wp.add(2 * BLOCK + i), dy2);
            vst1q_f32(wp.add(3 * BLOCK + i), dy1);
            // ST4 interleaves the four products into one row per pixel.
            let products = float32x4x4_t(
                vmulq_f32(dy2, dx2),
                vmulq_f32(dy2, dx1),
                vmulq_f32(dy1, dx2),
                vmulq_f32(dy1, dx1),
            );
            vst4q_f32(qwp.add(4 * i), products);
            // In range is one unsigned compare (a negative index wraps to a large one); the
            // corners' rows are y1 * w + x1 plus 1 (right), w (below) or both.
            let within = |v: int32x4_t, n: uint32x4_t| vcltq_u32(vreinterpretq_u32_s32(v), n);
            let (top, bottom) = (
                vandq_u32(finite, within(y1, hu)),
                vandq_u32(finite, within(y2, hu)),
            );
            let (left, right) = (within(x1, wu), within(x2, wu));
            let tl = vreinterpretq_u32_s32(vmlaq_s32(x1, y1, wi));
            let bl = vaddq_u32(tl, wu);
            let one = vdupq_n_u32(1);
            let at = |inside: uint32x4_t, row: uint32x4_t| vbslq_u32(inside, row, zero_row);
            let rows = uint32x4x4_t(
                at(vandq_u32(top, left), tl),
                at(vandq_u32(top, right), vaddq_u32(tl, one)),
                at(vandq_u32(bottom, left), bl),
                at(vandq_u32(bottom, right), vaddq_u32(bl, one)),
            );
            vst1q_u32(ip.add(i), rows.0);
            vst1q_u32(ip.add(BLOCK + i), rows.1);
            vst1q_u32(ip.add(2 * BLOCK + i), rows.2);
            vst1q_u32(ip.add(3 * BLOCK + i), rows.3);
            vst4q_u32(qip.add(4 * i), rows);
        }
    }
    corners_from(align_corners, h, w, gxy, idx, wts, quads);
    for i in quads..len {
        // SAFETY: i < BLOCK, and both arrays hold `4 * BLOCK` entries (asserted above).
        let (ix, [dx2, dx1, dy2, dy1]) = unsafe { taps_of(idx, wts, 0, i) };
        quad_idx[4 * i..4 * i + 4].copy_from_slice(&ix);
        quad_wts[4 * i..4 * i + 4].copy_from_slice(&[dy2 * dx2, dy2 * dx1, dy1 * dx2, dy1 * dx1]);
    }
}

/// Step 2 (`super::logits`) one pixel at a time, the pixel's key channels in registers.
/// Returns false, having done nothing, where the key width is not 4, 8, 12 or 16 or a
/// rounding chain is longer than one. Without roundings (a float model, or an int8 one that
/// keeps the attention float) it takes [`logits_float`].
///
/// # Safety
/// As `super::logits`.
#[allow(clippy::too_many_arguments)]
pub(super) unsafe fn logits(
    a: &LdaAqu,
    d: &Dims,
    sc: &mut Scratch,
    ins: &Inputs,
    bi: usize,
    p0: usize,
    len: usize,
) -> bool {
    if a.round_keys.is_empty() && a.round_biased.is_empty() && a.round_qk.is_empty() {
        match d.ck {
            4 => logits_float::<1>(a, d, sc, ins, bi, p0, len),
            8 => logits_float::<2>(a, d, sc, ins, bi, p0, len),
            12 => logits_float::<3>(a, d, sc, ins, bi, p0, len),
            16 => logits_float::<4>(a, d, sc, ins, bi, p0, len),
            _ => return false,
        }
        return true;
    }
    let chains = (
        ChainV::of(&a.round_keys),
        ChainV::of(&a.round_biased),
        ChainV::of(&a.round_qk),
    );
    let (Some(keys), Some(biased), Some(qk)) = chains else {
        return false;
    };
    let r = [keys, biased, qk];
    match d.ck {
        4 => logits_v::<1>(a, d, sc, ins, bi, p0, len, r),
        8 => logits_v::<2>(a, d, sc, ins, bi, p0, len, r),
        12 => logits_v::<3>(a, d, sc, ins, bi, p0, len, r),
        16 => logits_v::<4>(a, d, sc, ins, bi, p0, len, r),
        _ => return false,
    }
    true
}

/// [`logits`] for `4 * V` key channels.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
unsafe fn logits_v<const V: usize>(
    a: &LdaAqu,
    d: &Dims,
    sc: &mut Scratch,
    ins: &Inputs,
    bi: usize,
    p0: usize,
    len: usize,
    [keys, biased, qk]: [ChainV; 3],
) {
    let (n, g, ck) = (a.taps, d.g, 4 * V);
    let plane_out = d.ho * d.wo;
    let kc = g * ck;
    let rows = (d.hw + 1) * ck;
    let Scratch {
        idx,
        wts,
        attn,
        qt,
        key_segs,
        ..
    } = sc;
    query_pixel_major(ins, qt, bi, kc, plane_out, p0, len);
    attn.fill(0.0);
    let mut lanes = [0.0f32; 16];
    for (gi, segs) in key_segs.iter().enumerate() {
        let img = ins.kt[(bi * g + gi) * rows..][..rows].as_ptr();
        for t in 0..n {
            let gt = gi * n + t;
            let bias: [float32x4_t; V] =
                std::array::from_fn(|j| vld1q_f32(ins.bias_t[gt * ck + 4 * j..][..4].as_ptr()));
            for i in 0..len {
                let (ix, ws) = taps_of(idx, wts, gt, i);
                let corner = rows_of(img, ck, ix);
                let q = qt.as_ptr().add(i * kc + gi * ck);
                for (j, &b) in bias.iter().enumerate() {
                    let v = keys.apply(sample4(corner, ws, 4 * j));
                    let v = biased.apply(vaddq_f32(v, b));
                    let v = qk.apply(vmulq_f32(v, vld1q_f32(q.add(4 * j))));
                    vst1q_f32(lanes.as_mut_ptr().add(4 * j), v);
                }
                // Each head's channels added in order, as the portable sum.
                for sg in segs {
                    let dst = attn.get_unchecked_mut((sg.head * n + t) * BLOCK + i);
                    let mut s = *dst;
                    for &v in lanes.get_unchecked(sg.c0..sg.c1) {
                        s += v;
                    }
                    *dst = s;
                }
            }
        }
    }
}

/// The block's query pixel-major into `qt` (`[pixel][kc]`: each pixel's channels one
/// contiguous row), from image `bi`'s channel-major query.
///
/// # Safety
/// `qt` holds `len * kc` values; the query holds the block's pixels of every channel.
#[inline(always)]
unsafe fn query_pixel_major(
    ins: &Inputs,
    qt: &mut [f32],
    bi: usize,
    kc: usize,
    plane_out: usize,
    p0: usize,
    len: usize,
) {
    for ch in 0..kc {
        let q = &ins.q[(bi * kc + ch) * plane_out + p0..][..len];
        for (i, &v) in q.iter().enumerate() {
            *qt.get_unchecked_mut(i * kc + ch) = v;
        }
    }
}

/// Step 4 (`super::values`) one pixel at a time: the pixel's value channels and their sum
/// over the taps stay in registers. Returns false, having done nothing, where the value
/// width is not 4, 8, 12, 16, 24 or 32, a group's channels span more than one head, or a
/// rounding chain is longer than one. Without roundings it takes [`values_float`].
///
/// # Safety
/// As `super::values`.
pub(super) unsafe fn values(
    a: &LdaAqu,
    d: &Dims,
    sc: &mut Scratch,
    ins: &Inputs,
    bi: usize,
    len: usize,
) -> bool {
    let (Some(sampled), Some(weighted)) =
        (ChainV::of(&a.round_values), ChainV::of(&a.round_weighted))
    else {
        return false;
    };
    if sc.val_segs.iter().any(|s| s.len() != 1) {
        return false;
    }
    if a.round_values.is_empty() && a.round_weighted.is_empty() {
        match d.cv {
            4 => values_float::<1>(a, d, sc, ins, bi, len),
            8 => values_float::<2>(a, d, sc, ins, bi, len),
            12 => values_float::<3>(a, d, sc, ins, bi, len),
            16 => values_float::<4>(a, d, sc, ins, bi, len),
            24 => values_float::<6>(a, d, sc, ins, bi, len),
            32 => values_float::<8>(a, d, sc, ins, bi, len),
            _ => return false,
        }
        return true;
    }
    let r = [sampled, weighted];
    match d.cv {
        4 => values_v::<1>(a, d, sc, ins, bi, len, r),
        8 => values_v::<2>(a, d, sc, ins, bi, len, r),
        12 => values_v::<3>(a, d, sc, ins, bi, len, r),
        16 => values_v::<4>(a, d, sc, ins, bi, len, r),
        24 => values_v::<6>(a, d, sc, ins, bi, len, r),
        32 => values_v::<8>(a, d, sc, ins, bi, len, r),
        _ => return false,
    }
    true
}

/// [`values`] for `4 * V` value channels.
#[inline(always)]
unsafe fn values_v<const V: usize>(
    a: &LdaAqu,
    d: &Dims,
    sc: &mut Scratch,
    ins: &Inputs,
    bi: usize,
    len: usize,
    [sampled, weighted]: [ChainV; 2],
) {
    let (n, g, cv) = (a.taps, d.g, 4 * V);
    let rows = (d.hw + 1) * cv;
    let Scratch {
        idx,
        wts,
        attn,
        out,
        val_segs,
        ..
    } = sc;
    let mut lanes = [0.0f32; 32];
    for (gi, segs) in val_segs.iter().enumerate() {
        let img = ins.vt[(bi * g + gi) * rows..][..rows].as_ptr();
        let head = segs[0].head;
        for i in 0..len {
            let mut acc = [vdupq_n_f32(0.0); V];
            for t in 0..n {
                let (ix, ws) = taps_of(idx, wts, gi * n + t, i);
                let corner = rows_of(img, cv, ix);
                let w = *attn.get_unchecked((head * n + t) * BLOCK + i);
                for (j, s) in acc.iter_mut().enumerate() {
                    let v = sampled.apply(sample4(corner, ws, 4 * j));
                    let v = weighted.apply(vmulq_n_f32(v, w));
                    *s = vaddq_f32(*s, v);
                }
            }
            for (j, s) in acc.iter().enumerate() {
                vst1q_f32(lanes.as_mut_ptr().add(4 * j), *s);
            }
            for (c, &v) in lanes[..cv].iter().enumerate() {
                *out.get_unchecked_mut((gi * cv + c) * BLOCK + i) = v;
            }
        }
    }
}

/// Pixel `i`'s corner rows of `img` (rows of `width` floats) and their bilinear products, for
/// group-and-tap `gt`, from the pixel-major copies [`corners`] writes.
///
/// # Safety
/// `gt` and `i` must be within the scratch's `[g*taps][BLOCK][4]` arrays, every index a row.
#[inline(always)]
unsafe fn quad_of(
    sc_idx: *const u32,
    sc_wts: *const f32,
    img: *const f32,
    width: usize,
    gt: usize,
    i: usize,
) -> ([*const f32; 4], float32x4_t) {
    let at = (gt * BLOCK + i) * 4;
    let ix = sc_idx.add(at).cast::<[u32; 4]>().read();
    (rows_of(img, width, ix), vld1q_f32(sc_wts.add(at)))
}

/// `acc + sum_k w[k] * rows[k][c..c + 4]`: four channels bilinearly sampled and added, one
/// FMLA per corner with the product from the weights' lane.
#[inline(always)]
unsafe fn fma_corners(
    acc: float32x4_t,
    rows: [*const f32; 4],
    w: float32x4_t,
    c: usize,
) -> float32x4_t {
    let acc = vfmaq_laneq_f32::<0>(acc, vld1q_f32(rows[0].add(c)), w);
    let acc = vfmaq_laneq_f32::<1>(acc, vld1q_f32(rows[1].add(c)), w);
    let acc = vfmaq_laneq_f32::<2>(acc, vld1q_f32(rows[2].add(c)), w);
    vfmaq_laneq_f32::<3>(acc, vld1q_f32(rows[3].add(c)), w)
}

/// [`logits`] where nothing is rounded (`4 * V` key channels): each corner's row is added
/// with its bilinear product by FMLA onto the bias, times the query, and a head's channels
/// are summed across the vector. Fused multiply-adds and this order of the sums round
/// differently from the graph's separate operations (within a few ulps; the module's test
/// compares with the unfused graph).
///
/// # Safety
/// As `super::logits`.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
unsafe fn logits_float<const V: usize>(
    a: &LdaAqu,
    d: &Dims,
    sc: &mut Scratch,
    ins: &Inputs,
    bi: usize,
    p0: usize,
    len: usize,
) {
    let (n, g, ck) = (a.taps, d.g, 4 * V);
    let plane_out = d.ho * d.wo;
    let kc = g * ck;
    let rows = (d.hw + 1) * ck;
    let Scratch {
        quad_idx,
        quad_wts,
        attn,
        qt,
        key_segs,
        ..
    } = sc;
    query_pixel_major(ins, qt, bi, kc, plane_out, p0, len);
    attn.fill(0.0);
    let (qi, qw) = (quad_idx.as_ptr(), quad_wts.as_ptr());
    let mut lanes = [0.0f32; 16];
    for (gi, segs) in key_segs.iter().enumerate() {
        let img = ins.kt[(bi * g + gi) * rows..][..rows].as_ptr();
        // One head for the group's channels: the sum is across the vectors, then the lanes.
        let one_head = match segs[..] {
            [sg] => Some(sg.head),
            _ => None,
        };
        for t in 0..n {
            let gt = gi * n + t;
            let bias: [float32x4_t; V] =
                std::array::from_fn(|j| vld1q_f32(ins.bias_t[gt * ck + 4 * j..][..4].as_ptr()));
            // pixel i's query . (sampled key + bias), still across the vector's lanes
            let qk_of = |i: usize| -> [float32x4_t; V] {
                let (corner, w) = quad_of(qi, qw, img, ck, gt, i);
                let q = qt.as_ptr().add(i * kc + gi * ck);
                std::array::from_fn(|j| {
                    let k = fma_corners(bias[j], corner, w, 4 * j);
                    vmulq_f32(k, vld1q_f32(q.add(4 * j)))
                })
            };
            let mut first = 0;
            if let Some(head) = one_head {
                // Four pixels at a time: three pairwise adds give their four lane sums (each
                // pixel's `(l0 + l1) + (l2 + l3)`, as `vaddvq_f32`), added to the logits as
                // one vector.
                let dst = attn.as_mut_ptr().add((head * n + t) * BLOCK);
                first = len / 4 * 4;
                for i in (0..first).step_by(4) {
                    let s: [float32x4_t; 4] = std::array::from_fn(|p| {
                        let qk = qk_of(i + p);
                        qk[1..].iter().fold(qk[0], |s, &v| vaddq_f32(s, v))
                    });
                    let sums = vpaddq_f32(vpaddq_f32(s[0], s[1]), vpaddq_f32(s[2], s[3]));
                    vst1q_f32(dst.add(i), vaddq_f32(vld1q_f32(dst.add(i)), sums));
                }
            }
            for i in first..len {
                let qk = qk_of(i);
                if let Some(head) = one_head {
                    let s = qk[1..].iter().fold(qk[0], |s, &v| vaddq_f32(s, v));
                    *attn.get_unchecked_mut((head * n + t) * BLOCK + i) += vaddvq_f32(s);
                    continue;
                }
                for (j, &v) in qk.iter().enumerate() {
                    vst1q_f32(lanes.as_mut_ptr().add(4 * j), v);
                }
                for sg in segs {
                    let dst = attn.get_unchecked_mut((sg.head * n + t) * BLOCK + i);
                    *dst += lanes.get_unchecked(sg.c0..sg.c1).iter().sum::<f32>();
                }
            }
        }
    }
}

/// [`values`] where nothing is rounded (`4 * V` value channels, one head per group): the
/// attention weight times the bilinear products gives each corner's weight, and the corner
/// rows are added into the pixel's sum by FMLA, taps in order, the sum in registers. The
/// sums go to the block's pixel-major buffer and are transposed four pixels at a time.
///
/// # Safety
/// As `super::values`.
#[inline(always)]
unsafe fn values_float<const V: usize>(
    a: &LdaAqu,
    d: &Dims,
    sc: &mut Scratch,
    ins: &Inputs,
    bi: usize,
    len: usize,
) {
    let (n, g, cv) = (a.taps, d.g, 4 * V);
    let rows = (d.hw + 1) * cv;
    let Scratch {
        quad_idx,
        quad_wts,
        attn,
        acc,
        out,
        val_segs,
        ..
    } = sc;
    let (qi, qw) = (quad_idx.as_ptr(), quad_wts.as_ptr());
    for (gi, segs) in val_segs.iter().enumerate() {
        let img = ins.vt[(bi * g + gi) * rows..][..rows].as_ptr();
        let head = segs[0].head;
        let attn = attn.as_ptr().add(head * n * BLOCK);
        for i in 0..len {
            let mut sum = [vdupq_n_f32(0.0); V];
            for t in 0..n {
                let (corner, w) = quad_of(qi, qw, img, cv, gi * n + t, i);
                let w = vmulq_n_f32(w, *attn.add(t * BLOCK + i));
                for (j, s) in sum.iter_mut().enumerate() {
                    *s = fma_corners(*s, corner, w, 4 * j);
                }
            }
            for (j, s) in sum.iter().enumerate() {
                vst1q_f32(acc.as_mut_ptr().add(i * cv + 4 * j), *s);
            }
        }
        transpose_block(&acc[..len * cv], out, gi, cv);
    }
}

/// The block's sums `acc [pixel][cv]` of group `gi` into `out [channel][BLOCK]`: 4x4
/// transposes (TRN1/TRN2 on lanes, then on pairs), the last pixels one by one.
#[inline(always)]
fn transpose_block(acc: &[f32], out: &mut [f32], gi: usize, cv: usize) {
    let len = acc.len() / cv;
    let quads = len / 4 * 4;
    assert!(cv % 4 == 0 && out.len() >= (gi + 1) * cv * BLOCK && len <= BLOCK);
    // SAFETY: NEON is baseline; reads stay within `acc[..len * cv]` (i + 3 < len, c + 3 < cv),
    // writes within `out[(gi * cv + cv) * BLOCK]` (asserted).
    unsafe {
        let (src, dst) = (acc.as_ptr(), out.as_mut_ptr().add(gi * cv * BLOCK));
        for i in (0..quads).step_by(4) {
            for c in (0..cv).step_by(4) {
                let r: [float32x4_t; 4] =
                    std::array::from_fn(|p| vld1q_f32(src.add((i + p) * cv + c)));
                let t0 = vtrn1q_f32(r[0], r[1]);
                let t1 = vtrn2q_f32(r[0], r[1]);
                let t2 = vtrn1q_f32(r[2], r[3]);
                let t3 = vtrn2q_f32(r[2], r[3]);
                let pairs = vreinterpretq_f64_f32;
                let cols = [
                    vtrn1q_f64(pairs(t0), pairs(t2)),
                    vtrn1q_f64(pairs(t1), pairs(t3)),
                    vtrn2q_f64(pairs(t0), pairs(t2)),
                    vtrn2q_f64(pairs(t1), pairs(t3)),
                ];
                for (k, col) in cols.into_iter().enumerate() {
                    vst1q_f32(dst.add((c + k) * BLOCK + i), vreinterpretq_f32_f64(col));
                }
            }
        }
    }
    for i in quads..len {
        for c in 0..cv {
            out[(gi * cv + c) * BLOCK + i] = acc[i * cv + c];
        }
    }
}
