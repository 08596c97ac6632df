//! `dwconv_qs8_kxk_64c_avx512vnni`: 64 channels per step on `vpdpbusd`, u8 activations
//! straight from memory (no widening).
//!
//! A zmm of 64 input bytes holds channels `c0..c0+64`; `vpdpbusd` sums the 4 bytes of each
//! dword lane, so it would mix 4 channels. Instead each tap has 4 weight vectors `W_r`
//! (r = 0..3) in which only byte `4j + r` of lane j is non-zero (`w[c0 + 4j + r]`): 4
//! `vpdpbusd` per tap give 4 accumulators with `acc_r[j]` = channel `4j + r`, exact (one
//! non-zero product per lane). After requantization `v0 | v1 << 8 | v2 << 16 | v3 << 24` puts
//! the bytes back in channel order for one 64-byte store.
//!
//! The zero point is folded: `sum (x - zx) w = sum x w - zx sum w` over all taps, with
//! out-of-image taps reading `zx` (they then contribute 0, as the contract requires).
//!
//! Packing ([`pack`]): per block of 64 channels, per tap, the 4 `W_r` (256 bytes), then the
//! block's `sum w` per (r, j) as 64 i32; stored in the `i16` buffer the engine keeps for
//! depthwise weights (opaque bytes here).
//!
//! Narrow convs (C = 4, 8, 16 or 32, see [`pixels_per_vector`]) pack `64 / C` neighbouring
//! pixels into one vector instead of leaving most lanes idle: lane byte `b` is channel `b % C`
//! of pixel `b / C`, the weights and sums repeat every C bytes, and a group of pixels is one
//! 64-byte load at stride 1 (at other strides C-byte pieces inserted, or gathered for C = 4
//! and 8) and one 64-byte store. (LDA-AQU's offset branch has a 3x3 depthwise conv of 4
//! channels: one pixel per vector left 60 of 64 lanes idle.)

// x86-only module: AVX-512 intrinsics are stable since 1.89, above the crate's Arm MSRV.
#![allow(clippy::incompatible_msrv)]

use super::{DwGeom, Input};
use crate::kernels::qs8::gemm::EpiMode;
use std::arch::x86_64::*;

/// Channels per block.
const CB: usize = 64;

/// Interior vectors (pixels, or groups of packed pixels) computed together.
const PX: usize = 4;

/// Bytes per block: `taps * 4 * 64` weight bytes + 64 i32 weight sums.
fn block_bytes(taps: usize) -> usize {
    taps * 4 * CB + CB * 4
}

/// Pixels per vector: `64 / C` for the narrow convs packed across pixels, else 1.
pub fn pixels_per_vector(c: usize) -> usize {
    match c {
        4 | 8 | 16 | 32 => CB / c,
        _ => 1,
    }
}

/// Output pixels with a tap outside the image take a path a pixel at a time with bounds
/// checks; past this share of them a framed copy of the input (one pass over it) is cheaper.
/// Measured (`cargo bench --bench qs8_kernels`): MobileNetV3-Large's 7 x 7 x 960 5 x 5 conv
/// (84% border) 55 -> 47 us framed, its 14 x 14 x 672 5 x 5 stride-2 conv (49%) 35 -> 38 us,
/// 14 x 14 x 480 3 x 3 (27%) 38.6 -> 38.0 us.
const FRAME_ABOVE_BORDER_SHARE: f64 = 0.6;

/// What the kernel reads for `g`: a framed copy where the border is a large share.
pub fn input(g: &DwGeom) -> Input {
    if super::border_share(g) > FRAME_ABOVE_BORDER_SHARE {
        Input::Framed
    } else {
        Input::Image
    }
}

/// Pack `[C][kh][kw]` int8 weights (see the module doc).
pub fn pack(w: &[i8], g: &DwGeom) -> Vec<i16> {
    let taps = g.k[0] * g.k[1];
    let pp = pixels_per_vector(g.c);
    // lanes: every channel once, or (packed pixels) channel `lane % C` in each of 64 lanes
    let lanes = if pp > 1 { CB } else { g.c };
    let blocks = lanes.div_ceil(CB);
    let bb = block_bytes(taps);
    let mut bytes = vec![0u8; blocks * bb];
    for lane in 0..lanes {
        let c = lane % g.c;
        let (b, cc) = (lane / CB, lane % CB);
        let (j, r) = (cc / 4, cc % 4);
        let blk = &mut bytes[b * bb..(b + 1) * bb];
        let mut sum = 0i32;
        for t in 0..taps {
            let v = w[c * taps + t];
            blk[(t * 4 + r) * CB + cc] = v as u8;
            sum += v as i32;
        }
        let at = taps * 4 * CB + (r * 16 + j) * 4;
        blk[at..at + 4].copy_from_slice(&sum.to_le_bytes());
    }
    bytes
        .chunks(2)
        .map(|p| i16::from_le_bytes([p[0], *p.get(1).unwrap_or(&0)]))
        .collect()
}

/// A 64-byte block's bias and scales as 4 x 16 lanes in byte order (lane l: channel
/// `c0 + l`, or channel `l % c` when `pp` pixels are packed; lanes past the block's `n`
/// channels 0), for the kernels to permute into their accumulators' order.
///
/// # Safety
/// `bias` and `scale` must hold the block's channels; the host must have AVX-512 F.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
pub(super) unsafe fn block_params(
    bias: *const i32,
    scale: *const f32,
    c0: usize,
    n: usize,
    c: usize,
    pp: usize,
) -> ([__m512i; 4], [__m512; 4]) {
    if pp > 1 && c < 16 {
        // every part is the C values repeated: lane i takes channel i % C
        let m = (1u16 << c) - 1;
        let idx = _mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0);
        let idx = _mm512_and_si512(idx, _mm512_set1_epi32(c as i32 - 1));
        let b = _mm512_permutexvar_epi32(idx, _mm512_maskz_loadu_epi32(m, bias));
        let s = _mm512_permutexvar_ps(idx, _mm512_maskz_loadu_ps(m, scale));
        return ([b; 4], [s; 4]);
    }
    let part = |l: usize| -> (usize, __mmask16) {
        let first = if pp > 1 { (16 * l) % c } else { 16 * l };
        let left = n.saturating_sub(first);
        (first, if left >= 16 { !0 } else { (1u16 << left) - 1 })
    };
    let bv = std::array::from_fn(|l| {
        let (first, m) = part(l);
        _mm512_maskz_loadu_epi32(m, bias.add(c0 + first))
    });
    let sv = std::array::from_fn(|l| {
        let (first, m) = part(l);
        _mm512_maskz_loadu_ps(m, scale.add(c0 + first))
    });
    (bv, sv)
}

/// One output row; see the module doc of `dwconv` for the contract (weights packed by
/// [`pack`]).
///
/// # Safety
/// Pointers as in the contract; the host must have AVX-512 F/BW and VNNI.
#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
#[inline(never)] // its own symbol in profiles, not folded into `per_row!`'s closure
pub unsafe fn dwconv_qs8_kxk_64c_avx512vnni(
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
    let taps = g.k[0] * g.k[1];
    let bb = block_bytes(taps);
    let w = w as *const u8;
    let vzx = _mm512_set1_epi8(zx as u8 as i8);
    let vzx32 = _mm512_set1_epi32(zx);
    let float_out = matches!(mode, EpiMode::Float);
    let (zp, lo, hi) = match mode {
        EpiMode::Quant { zp, lo, hi } => (zp, lo, hi),
        EpiMode::Float => (0, 0, 0),
    };
    let (vzp, vlo, vhi) = (
        _mm512_set1_epi32(zp),
        _mm512_set1_epi32(lo),
        _mm512_set1_epi32(hi),
    );
    let mask_of = |n: usize| -> __mmask64 {
        if n >= CB {
            !0
        } else {
            (1u64 << n) - 1
        }
    };
    let pp = pixels_per_vector(g.c);
    let blocks = if pp > 1 { 1 } else { g.c.div_ceil(CB) };
    for b in 0..blocks {
        let c0 = b * CB;
        // channels of one pixel in this block
        let n = CB.min(g.c - c0);
        let in_mask = mask_of(n);
        let wb = w.add(b * bb);
        // Bias minus zx * sum(w) and the scales, in the accumulators' (r, j) order.
        let sums = wb.add(taps * 4 * CB) as *const i32;
        // Lane j of accumulator r is channel 4j + r (modulo C when pixels are packed). The
        // block's bias and scales are loaded as 64 lanes in channel order (lane l: channel
        // l % C when pixels are packed; lanes past the channels 0), then put in the
        // accumulators' order by two-source permutes (no gathers: this runs every row).
        let (bv, sv) = block_params(bias, scale, c0, n, g.c, pp);
        let lane = _mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0);
        let mut init = [_mm512_setzero_si512(); 4];
        let mut vs = [_mm512_setzero_ps(); 4];
        for r in 0..4 {
            // 4j + r: lanes j < 8 read parts 0 and 1, lanes j >= 8 parts 2 and 3 (the
            // permutes use the index's low 5 bits)
            let idx = _mm512_add_epi32(_mm512_slli_epi32(lane, 2), _mm512_set1_epi32(r as i32));
            let bi = _mm512_mask_blend_epi32(
                0xff00,
                _mm512_permutex2var_epi32(bv[0], idx, bv[1]),
                _mm512_permutex2var_epi32(bv[2], idx, bv[3]),
            );
            vs[r] = _mm512_mask_blend_ps(
                0xff00,
                _mm512_permutex2var_ps(sv[0], idx, sv[1]),
                _mm512_permutex2var_ps(sv[2], idx, sv[3]),
            );
            let s = _mm512_loadu_si512(sums.add(r * 16) as *const _);
            init[r] = _mm512_sub_epi32(bi, _mm512_mullo_epi32(s, vzx32));
        }
        // Output columns whose taps all lie inside the image (no bounds checks there).
        let (ky0, ky1) = super::tap_range(oy, g.s[0], g.d[0], g.p[0], g.k[0], g.h);
        let rows_full = ky0 == 0 && ky1 == g.k[0];
        // `lanes` output values from pixel `ox` on (one pixel's block, or a packed group).
        let store = |ox: usize, acc: &[__m512i; 4], lanes: usize| {
            let f: [__m512; 4] =
                std::array::from_fn(|r| _mm512_mul_ps(_mm512_cvtepi32_ps(acc[r]), vs[r]));
            if float_out {
                let mut tmp = [[0f32; 16]; 4];
                for r in 0..4 {
                    _mm512_storeu_ps(tmp[r].as_mut_ptr(), f[r]);
                }
                let dst = (out as *mut f32).add(ox * g.c + c0);
                for c in 0..lanes {
                    *dst.add(c) = tmp[c % 4][c / 4];
                }
            } else {
                let q = |f: __m512| {
                    let v = _mm512_add_epi32(_mm512_cvtps_epi32(f), vzp);
                    _mm512_min_epi32(_mm512_max_epi32(v, vlo), vhi)
                };
                let v = _mm512_or_si512(
                    _mm512_or_si512(q(f[0]), _mm512_slli_epi32(q(f[1]), 8)),
                    _mm512_or_si512(
                        _mm512_slli_epi32(q(f[2]), 16),
                        _mm512_slli_epi32(q(f[3]), 24),
                    ),
                );
                _mm512_mask_storeu_epi8(out.add(ox * g.c + c0) as *mut i8, mask_of(lanes), v);
            }
        };
        let full = |ox: usize| {
            let (kx0, kx1) = super::tap_range(ox, g.s[1], g.d[1], g.p[1], g.k[1], g.w);
            rows_full && kx0 == 0 && kx1 == g.k[1]
        };
        let xstep = g.s[1] * g.c;
        // byte offsets of the pixels of a group at a stride (C = 8: 8 qwords, C = 4: 16 dwords)
        let step = |i: i64| i * xstep as i64;
        let gather8 = _mm512_set_epi64(
            step(7),
            step(6),
            step(5),
            step(4),
            step(3),
            step(2),
            step(1),
            0,
        );
        let gather16 = _mm512_mullo_epi32(lane, _mm512_set1_epi32(xstep as i32));
        // The input vector of vector-group `v`'s first pixel at `p`: one pixel's channels, or
        // `pp` pixels `xstep` bytes apart.
        let load = |p: *const u8| -> __m512i {
            if pp == 1 {
                _mm512_maskz_loadu_epi8(in_mask, p as *const i8)
            } else if g.s[1] == 1 {
                _mm512_loadu_si512(p as *const _)
            } else if pp == 4 {
                let v = _mm512_castsi128_si512(_mm_loadu_si128(p as *const _));
                let v = _mm512_inserti32x4::<1>(v, _mm_loadu_si128(p.add(xstep) as *const _));
                let v = _mm512_inserti32x4::<2>(v, _mm_loadu_si128(p.add(2 * xstep) as *const _));
                _mm512_inserti32x4::<3>(v, _mm_loadu_si128(p.add(3 * xstep) as *const _))
            } else if pp == 2 {
                let v = _mm512_castsi256_si512(_mm256_loadu_si256(p as *const _));
                _mm512_inserti64x4::<1>(v, _mm256_loadu_si256(p.add(xstep) as *const _))
            } else if pp == 8 {
                _mm512_i64gather_epi64::<1>(gather8, p as *const _)
            } else {
                _mm512_i32gather_epi32::<1>(gather16, p as *const _)
            }
        };
        // The first `px` (2..pp) pixels of a group, the rest of the vector zero: one masked
        // load at stride 1, else a masked load per pixel.
        let load_part = |p: *const u8, px: usize| -> __m512i {
            if g.s[1] == 1 {
                _mm512_maskz_loadu_epi8(mask_of(px * g.c), p as *const i8)
            } else {
                let mut v = _mm512_setzero_si512();
                for j in 0..px {
                    let piece = (((1u128 << g.c) - 1) as u64) << (j * g.c);
                    let at = p.add(j * xstep).wrapping_sub(j * g.c);
                    v = _mm512_mask_loadu_epi8(v, piece, at as *const i8);
                }
                v
            }
        };
        // `G` vector groups of `pp` interior pixels from `ox` on: each weight vector is
        // loaded once for all of them, and 4 * G independent accumulator chains hide
        // vpdpbusd's latency.
        macro_rules! interior {
            ($G:expr, $ox:expr) => {
                interior!($G, $ox, |p| load(p), if pp > 1 { CB } else { n })
            };
            // `$load` reads a vector of pixels from `p`; `$bytes` of each vector are stored
            ($G:expr, $ox:expr, |$p:ident| $load:expr, $bytes:expr) => {{
                let ox: usize = $ox;
                let mut acc = [init; $G];
                let base = x.add(((oy * g.s[0] - g.p[0]) * g.w + ox * g.s[1] - g.p[1]) * g.c + c0);
                let mut wt = wb;
                for ky in 0..g.k[0] {
                    let row = base.add(ky * g.d[0] * g.w * g.c);
                    for kx in 0..g.k[1] {
                        let tap = row.add(kx * g.d[1] * g.c);
                        let wr: [__m512i; 4] =
                            std::array::from_fn(|r| _mm512_loadu_si512(wt.add(r * CB) as *const _));
                        for (v, a) in acc.iter_mut().enumerate() {
                            let xv = {
                                let $p = tap.add(v * pp * xstep);
                                $load
                            };
                            for r in 0..4 {
                                a[r] = _mm512_dpbusd_epi32(a[r], xv, wr[r]);
                            }
                        }
                        wt = wt.add(4 * CB);
                    }
                }
                for (v, a) in acc.iter().enumerate() {
                    store(ox + v * pp, a, $bytes);
                }
            }};
        }
        // the pixels with every tap inside are one run, ending here
        let full_end = if pp > 1 {
            (0..g.ow).rev().find(|&o| full(o)).map_or(0, |o| o + 1)
        } else {
            0
        };
        let mut ox = 0;
        while ox < g.ow {
            let span = PX * pp;
            if ox + span <= g.ow && full(ox) && full(ox + span - 1) {
                interior!(PX, ox);
                ox += span;
                continue;
            }
            if pp > 1 && ox + pp <= g.ow && full(ox) && full(ox + pp - 1) {
                interior!(1, ox);
                ox += pp;
                continue;
            }
            if ox + 1 < full_end && full(ox) {
                // the run's last 2..pp pixels as one partial group (fewer than pp)
                let px = full_end - ox;
                interior!(1, ox, |p| load_part(p, px), px * g.c);
                ox += px;
                continue;
            }
            // One pixel: lanes 0..n of the block are its channels (with packed pixels too).
            let mut acc = init;
            let (kx0, kx1) = super::tap_range(ox, g.s[1], g.d[1], g.p[1], g.k[1], g.w);
            if rows_full && kx0 == 0 && kx1 == g.k[1] {
                let base = x.add(((oy * g.s[0] - g.p[0]) * g.w + ox * g.s[1] - g.p[1]) * g.c + c0);
                let mut wt = wb;
                for ky in 0..g.k[0] {
                    let row = base.add(ky * g.d[0] * g.w * g.c);
                    for kx in 0..g.k[1] {
                        let p = row.add(kx * g.d[1] * g.c);
                        let xv = _mm512_maskz_loadu_epi8(in_mask, p as *const i8);
                        for (r, a) in acc.iter_mut().enumerate() {
                            let wr = _mm512_loadu_si512(wt.add(r * CB) as *const _);
                            *a = _mm512_dpbusd_epi32(*a, xv, wr);
                        }
                        wt = wt.add(4 * CB);
                    }
                }
            } else {
                for ky in 0..g.k[0] {
                    let iy = (oy * g.s[0] + ky * g.d[0]) as isize - g.p[0] as isize;
                    let row_ok = iy >= 0 && (iy as usize) < g.h;
                    for kx in 0..g.k[1] {
                        let ix = (ox * g.s[1] + kx * g.d[1]) as isize - g.p[1] as isize;
                        let xv = if row_ok && ix >= 0 && (ix as usize) < g.w {
                            let p = x.add((iy as usize * g.w + ix as usize) * g.c + c0);
                            _mm512_maskz_loadu_epi8(in_mask, p as *const i8)
                        } else {
                            vzx
                        };
                        let wt = wb.add((ky * g.k[1] + kx) * 4 * CB);
                        for (r, a) in acc.iter_mut().enumerate() {
                            let wr = _mm512_loadu_si512(wt.add(r * CB) as *const _);
                            *a = _mm512_dpbusd_epi32(*a, xv, wr);
                        }
                    }
                }
            }
            store(ox, &acc, n);
            ox += 1;
        }
    }
}
