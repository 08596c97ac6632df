//! `dwconv_qs8_kxk_16c_neonmull`: 16 channels per step with 8-bit multiplies, for every
//! aarch64 core. Inputs are flipped to i8 (`EOR 0x80`, `x - 128`); `SMULL`/`SMULL2` of a tap's
//! 16 input bytes by its 16 i8 weights give i16 products, a second tap is added in i16
//! (`SMLAL`/`SMLAL2`: `2 * 128 * 127` fits, so weights must not be -128), and `SADDW`/`SADDW2`
//! widen each pair into the four i32 accumulators: 32 MACs per 14 instructions, against 16
//! per 11 for widening every input to i16 first.
//!
//! The zero points fold into the bias: `sum (x - zx) w = sum (x - 128) w + (128 - zx) sum w`
//! over all taps, with taps outside the image reading a buffer of `zx` bytes (they then add
//! exactly 0, as the contract's skipped taps). Interior pixels address their taps by fixed
//! offsets; 3x3 and 5x5 are compiled with the tap count known, so the tap loop unrolls and a
//! 3x3 block's weights stay in registers across the row; at column stride 1 or 2 their
//! interior pixels go two at a time, sharing the loads of overlapping columns. Packing ([`pack`]): `[kh * kw][c_pad]` i8 weights, tap-major, then `c_pad` i32 sums of
//! each channel's taps, as opaque bytes in the engine's i16 weight buffer.

use super::{tap_range, DwGeom, CB};
use crate::kernels::qs8::gemm::neon::store16;
use crate::kernels::qs8::gemm::EpiMode;
use std::arch::aarch64::*;
use std::cell::RefCell;

/// Pack `[C][kh][kw]` int8 weights (see the module doc).
pub fn pack(w: &[i8], g: &DwGeom) -> Vec<i16> {
    let taps = g.k[0] * g.k[1];
    let cp = g.c_pad();
    let mut bytes = vec![0u8; taps * cp + 4 * cp];
    for c in 0..g.c {
        let mut sum = 0i32;
        for t in 0..taps {
            let v = w[c * taps + t];
            bytes[t * cp + c] = v as u8;
            sum += v as i32;
        }
        bytes[taps * cp + 4 * c..taps * cp + 4 * c + 4].copy_from_slice(&sum.to_ne_bytes());
    }
    bytes
        .chunks(2)
        .map(|p| i16::from_ne_bytes([p[0], p[1]]))
        .collect()
}

/// Output columns `[lo, hi)` whose taps all lie inside the image along x.
fn interior(g: &DwGeom) -> (usize, usize) {
    let full = |ox: usize| tap_range(ox, g.s[1], g.d[1], g.p[1], g.k[1], g.w) == (0, g.k[1]);
    let lo = (0..g.ow).find(|&ox| full(ox)).unwrap_or(g.ow);
    let hi = (lo..g.ow)
        .rev()
        .find(|&ox| full(ox))
        .map_or(lo, |ox| ox + 1);
    (lo, hi)
}

/// One output row; see the module doc of `dwconv` for the contract.
///
/// # Safety
/// Pointers as in the contract, weights packed by [`pack`] with no -128; the host must have
/// NEON (every aarch64 CPU).
#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "neon")]
pub unsafe fn dwconv_qs8_kxk_16c_neonmull(
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
    let r = Row {
        g,
        oy,
        x,
        zx,
        w: w as *const i8,
        bias,
        scale,
        mode,
        out,
    };
    // Square 3x3 / 5x5 at column stride 1 or 2 also get the two-pixel interior path.
    match (g.k, g.s[1], g.d[1]) {
        ([3, 3], 1, 1) => r.run::<9, 3, 1>(),
        ([3, 3], 2, 1) => r.run::<9, 3, 2>(),
        ([5, 5], 1, 1) => r.run::<25, 5, 1>(),
        ([5, 5], 2, 1) => r.run::<25, 5, 2>(),
        _ => match g.k[0] * g.k[1] {
            9 => r.run::<9, 0, 0>(),
            25 => r.run::<25, 0, 0>(),
            _ => r.run::<0, 0, 0>(),
        },
    }
}

/// One output row's arguments.
struct Row<'a> {
    g: &'a DwGeom,
    oy: usize,
    x: *const u8,
    zx: i32,
    w: *const i8,
    bias: *const i32,
    scale: *const f32,
    mode: EpiMode,
    out: *mut u8,
}

/// Buffers reused from row to row on each thread (the kernel runs once per output row, on the
/// per-frame path): the `zx` bytes outside taps read, the interior tap offsets, the border
/// pixels' tap addresses, and the weights of a kernel size not compiled in.
#[derive(Default)]
struct Scratch {
    outside: Vec<u8>,
    offs: Vec<usize>,
    ptrs: Vec<*const u8>,
    weights: Vec<int8x16_t>,
}

thread_local! {
    static SCRATCH: RefCell<Scratch> = RefCell::new(Scratch::default());
}

impl Row<'_> {
    /// The row with `T` taps known at compile time (`T = 0`: any count, from the geometry);
    /// `K != 0`: a `K x K` kernel at column stride `S`, dilation 1, whose interior pixels go
    /// two at a time ([`pixel_pair`]).
    #[inline(always)]
    unsafe fn run<const T: usize, const K: usize, const S: usize>(&self) {
        SCRATCH.with_borrow_mut(|s| self.run_in::<T, K, S>(s))
    }

    #[inline(always)]
    unsafe fn run_in<const T: usize, const K: usize, const S: usize>(&self, s: &mut Scratch) {
        let g = self.g;
        let taps = if T == 0 { g.k[0] * g.k[1] } else { T };
        let cp = g.c_pad();
        let sums = self.w.add(taps * cp) as *const i32;
        let (ky0, ky1) = tap_range(self.oy, g.s[0], g.d[0], g.p[0], g.k[0], g.h);
        let (lo, hi) = if (ky0, ky1) == (0, g.k[0]) {
            interior(g)
        } else {
            (0, 0)
        };
        let Scratch {
            outside,
            offs,
            ptrs,
            weights,
        } = s;
        // Taps outside the image read zx (a block reads up to 16 bytes from its channel).
        outside.clear();
        outside.resize(cp + CB, self.zx as u8);
        offs.clear();
        offs.extend(
            (0..g.k[0])
                .flat_map(|ky| (0..g.k[1]).map(move |kx| (ky * g.d[0] * g.w + kx * g.d[1]) * g.c)),
        );
        // Border pixels' tap addresses (block 0), computed once for every channel block.
        ptrs.clear();
        ptrs.resize(taps * g.ow, outside.as_ptr());
        for ox in (0..g.ow).filter(|&ox| ox < lo || ox >= hi) {
            self.border_taps(ox, outside, &mut ptrs[ox * taps..(ox + 1) * taps]);
        }
        let flip = vdupq_n_u8(0x80);
        let fold = vdupq_n_s32(128 - self.zx);
        let mut c0 = 0;
        while c0 < g.c {
            let start: [int32x4_t; 4] = std::array::from_fn(|j| {
                let b = vld1q_s32(self.bias.add(c0 + 4 * j));
                vmlaq_s32(b, vld1q_s32(sums.add(c0 + 4 * j)), fold)
            });
            let scl: [float32x4_t; 4] =
                std::array::from_fn(|j| vld1q_f32(self.scale.add(c0 + 4 * j)));
            let wb = self.w.add(c0);
            // With T known the weights sit in a local array (registers for 3x3), else in the
            // scratch.
            let mut wa = [vdupq_n_s8(0); 25];
            let wv: &[int8x16_t] = if T != 0 {
                for (t, v) in wa.iter_mut().enumerate().take(T) {
                    *v = vld1q_s8(wb.add(t * cp));
                }
                &wa[..T]
            } else {
                weights.clear();
                weights.extend((0..taps).map(|t| vld1q_s8(wb.add(t * cp))));
                weights
            };
            let n = CB.min(g.c - c0);
            // an interior pixel's window (block c0), and one pixel's requantized store
            let window = |ox: usize| {
                self.x
                    .add(((self.oy * g.s[0] - g.p[0]) * g.w + ox * g.s[1] - g.p[1]) * g.c + c0)
            };
            let store = |acc: &[int32x4_t; 4], ox: usize| {
                let f: [float32x4_t; 4] =
                    std::array::from_fn(|j| vmulq_f32(vcvtq_f32_s32(acc[j]), scl[j]));
                store16(&f, n, self.mode, self.out, ox * g.c + c0);
            };
            let mut ox = 0;
            while ox < g.ow {
                if K != 0 && ox >= lo && ox + 1 < hi {
                    let rs = g.d[0] * g.w * g.c;
                    let accs = pixel_pair::<K, S>(window(ox), g.c, rs, wv, start, flip);
                    store(&accs[0], ox);
                    store(&accs[1], ox + 1);
                    ox += 2;
                    continue;
                }
                let acc = if ox >= lo && ox < hi {
                    let win = window(ox);
                    pixel::<T>(taps, |t| win.add(*offs.get_unchecked(t)), wv, start, flip)
                } else {
                    let px = ptrs.as_ptr().add(ox * taps);
                    pixel::<T>(taps, |t| (*px.add(t)).add(c0), wv, start, flip)
                };
                store(&acc, ox);
                ox += 1;
            }
            c0 += CB;
        }
    }

    /// Tap addresses of a border pixel for channel 0: inside taps point into the image,
    /// outside ones at the `zx` buffer.
    #[inline(always)]
    unsafe fn border_taps(&self, ox: usize, outside: &[u8], ptrs: &mut [*const u8]) {
        let g = self.g;
        let mut t = 0;
        for ky in 0..g.k[0] {
            let iy = (self.oy * g.s[0] + ky * g.d[0]) as isize - g.p[0] as isize;
            for kx in 0..g.k[1] {
                let ix = (ox * g.s[1] + kx * g.d[1]) as isize - g.p[1] as isize;
                ptrs[t] = if iy < 0 || ix < 0 || iy >= g.h as isize || ix >= g.w as isize {
                    outside.as_ptr()
                } else {
                    self.x.add((iy as usize * g.w + ix as usize) * g.c)
                };
                t += 1;
            }
        }
    }
}

/// One pixel's 16 channels: `start + sum_t (x_t - 128) * w_t`, two taps per i16 step.
#[inline(always)]
unsafe fn pixel<const T: usize>(
    taps: usize,
    tap: impl Fn(usize) -> *const u8,
    wv: &[int8x16_t],
    start: [int32x4_t; 4],
    flip: uint8x16_t,
) -> [int32x4_t; 4] {
    let taps = if T == 0 { taps } else { T };
    let xs = |t: usize| vreinterpretq_s8_u8(veorq_u8(vld1q_u8(tap(t)), flip));
    let mut acc = start;
    let mut t = 0;
    while t + 2 <= taps {
        let (w0, w1) = (*wv.get_unchecked(t), *wv.get_unchecked(t + 1));
        mac2(&mut acc, xs(t), w0, xs(t + 1), w1);
        t += 2;
    }
    if t < taps {
        mac1(&mut acc, xs(t), *wv.get_unchecked(t));
    }
    acc
}

/// Two neighbouring interior pixels of a `K x K` kernel (odd `K`) at column stride `S`,
/// dilation 1 along x: `win` is the first pixel's window (row `ky` at `win + ky * rs`,
/// column `j` at `+ j * c`); the second's column `j` is the first's `j + S`, so the `K + S`
/// input vectors of a window row are loaded and flipped once for both pixels (12 instead of
/// 18 for 3x3 stride 1) and each weight is read once per pair. Taps pair up in i16 within a
/// row, and a row's last column with the next row's.
#[inline(always)]
unsafe fn pixel_pair<const K: usize, const S: usize>(
    win: *const u8,
    c: usize,
    rs: usize,
    wv: &[int8x16_t],
    start: [int32x4_t; 4],
    flip: uint8x16_t,
) -> [[int32x4_t; 4]; 2] {
    let col = |ky: usize, j: usize| {
        vreinterpretq_s8_u8(veorq_u8(vld1q_u8(win.add(ky * rs + j * c)), flip))
    };
    let w = |ky: usize, kx: usize| *wv.get_unchecked(ky * K + kx);
    let mut acc = [start; 2];
    // two taps (ky0, kx0) and (ky1, kx1) for both pixels
    let two = |acc: &mut [[int32x4_t; 4]; 2], ky0: usize, kx0: usize, ky1: usize, kx1: usize| {
        let (w0, w1) = (w(ky0, kx0), w(ky1, kx1));
        for (p, acc) in acc.iter_mut().enumerate() {
            mac2(acc, col(ky0, kx0 + S * p), w0, col(ky1, kx1 + S * p), w1);
        }
    };
    let mut ky = 0;
    while ky < K {
        let mut kx = 0;
        while kx + 1 < K {
            two(&mut acc, ky, kx, ky, kx + 1);
            kx += 2;
        }
        if ky + 1 < K {
            let mut kx = 0;
            while kx + 1 < K {
                two(&mut acc, ky + 1, kx, ky + 1, kx + 1);
                kx += 2;
            }
            // the two rows' last columns
            two(&mut acc, ky, kx, ky + 1, kx);
            ky += 2;
        } else {
            let w0 = w(ky, kx);
            for (p, acc) in acc.iter_mut().enumerate() {
                mac1(acc, col(ky, kx + S * p), w0);
            }
            ky += 1;
        }
    }
    acc
}

/// `acc += x0 * w0 + x1 * w1` per channel: both products summed in i16 (`SMULL` + `SMLAL`,
/// low and high halves), then widened into the i32 accumulators.
#[inline(always)]
unsafe fn mac2(
    acc: &mut [int32x4_t; 4],
    x0: int8x16_t,
    w0: int8x16_t,
    x1: int8x16_t,
    w1: int8x16_t,
) {
    let l = vmlal_s8(
        vmull_s8(vget_low_s8(x0), vget_low_s8(w0)),
        vget_low_s8(x1),
        vget_low_s8(w1),
    );
    add_products(acc, l, vmlal_high_s8(vmull_high_s8(x0, w0), x1, w1));
}

/// `acc += x0 * w0` per channel (an odd last tap).
#[inline(always)]
unsafe fn mac1(acc: &mut [int32x4_t; 4], x0: int8x16_t, w0: int8x16_t) {
    add_products(
        acc,
        vmull_s8(vget_low_s8(x0), vget_low_s8(w0)),
        vmull_high_s8(x0, w0),
    );
}

/// `acc += widen(l), widen(h)`: i16 products of channels 0-7 and 8-15 into i32.
#[inline(always)]
unsafe fn add_products(acc: &mut [int32x4_t; 4], l: int16x8_t, h: int16x8_t) {
    acc[0] = vaddw_s16(acc[0], vget_low_s16(l));
    acc[1] = vaddw_high_s16(acc[1], l);
    acc[2] = vaddw_s16(acc[2], vget_low_s16(h));
    acc[3] = vaddw_high_s16(acc[3], h);
}
