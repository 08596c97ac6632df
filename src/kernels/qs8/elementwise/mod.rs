//! int8 data-movement and element-wise kernels (memory-bound; scalar Rust that the compiler
//! vectorises). Every function computes exactly what the fake-quantized float graph computes
//! (`Q(op(DQ(a), ...))`) on the same f32 arithmetic, so results match it bit for bit.
//!
//! The hot row loops (Quantize, Add, Mul) are written once and compiled three times on
//! x86-64: portable (SSE2 baseline), with AVX2 (`*_avx2`) and with AVX-512 (`*_avx512`), where
//! LLVM vectorises them 8 or 16 wide with `vroundps`-free rounding and `vcvttps2dq`. Both run the same IEEE operations in
//! the same order, so they are bit-identical; `tests.rs` checks it on random rows. On aarch64
//! Quantize, Add, Mul and the per-channel rows have NEON builds ([`neon`]; LLVM vectorised
//! the portable loops only 4 wide there), checked the same way; so do they on 32-bit Arm
//! ([`armv7neon`], inline assembly with VFP division).

use super::Level;
use crate::kernels::{par, SharedOut};
use crate::ops::{QBinaryKind, QRound, QType};

#[cfg(target_arch = "arm")]
mod armv7neon;
#[cfg(target_arch = "aarch64")]
mod neon;

/// Defines `$name(level, args)` dispatching to an AVX-512 or AVX2 build of `$body` when
/// `level` allows it and the host has it, else to the portable build; `neon:` names the
/// aarch64 kernel and `armv7:` (optional) the 32-bit Arm one (which returns `false` to
/// decline).
macro_rules! row_kernel {
    ($(#[$doc:meta])* fn $name:ident($($arg:ident: $ty:ty),*)
     $(neon: $neon:expr; $(armv7: $armv7:expr;)?)? $body:block) => {
        $(#[$doc])*
        pub fn $name(level: Level, $($arg: $ty),*) {
            $(
                #[cfg(target_arch = "aarch64")]
                if level >= Level::Neon {
                    // SAFETY: every aarch64 CPU has NEON.
                    return unsafe { $neon };
                }
                $(
                    #[cfg(target_arch = "arm")]
                    // SAFETY: the CPU has NEON (checked first).
                    if level >= Level::Neon && Level::Neon.supported() && unsafe { $armv7 } {
                        return;
                    }
                )?
            )?
            #[inline(always)]
            fn body($($arg: $ty),*) $body
            #[cfg(target_arch = "x86_64")]
            #[target_feature(enable = "avx2,fma")]
            unsafe fn avx2($($arg: $ty),*) {
                body($($arg),*)
            }
            #[cfg(target_arch = "x86_64")]
            #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2,fma")]
            #[allow(clippy::incompatible_msrv)]
            unsafe fn avx512($($arg: $ty),*) {
                body($($arg),*)
            }
            #[cfg(target_arch = "x86_64")]
            if level >= Level::Avx512Vnni && Level::Avx512Vnni.supported() {
                // SAFETY: the host has AVX-512 F/BW/VL (checked above).
                return unsafe { avx512($($arg),*) };
            }
            #[cfg(target_arch = "x86_64")]
            if level >= Level::Avx2 && Level::Avx2.supported() {
                // SAFETY: the host has AVX2 and FMA (checked above).
                return unsafe { avx2($($arg),*) };
            }
            let _ = level;
            body($($arg),*)
        }
    };
}

row_kernel! {
    /// `y[i] = Q(x[i])`.
    fn quantize_row(q: QType, x: &[f32], y: &mut [u8])
    neon: neon::quantize_row(q, x, y);
    armv7: armv7neon::quantize_row(q, x, y);
    {
        for (o, &v) in y.iter_mut().zip(x) {
            *o = q.quantize(v);
        }
    }
}

row_kernel! {
    /// `y[i] = DQ(Q(x[i]))`.
    fn fake_quantize_row(r: QRound, x: &[f32], y: &mut [f32]) {
        for (o, &v) in y.iter_mut().zip(x) {
            *o = r.apply(v);
        }
    }
}

row_kernel! {
    /// `y[i] = Q(DQ(a[i]) + DQ(b[i]))`.
    fn add_row(qa: QType, qb: QType, qo: QType, a: &[u8], b: &[u8], y: &mut [u8])
    neon: neon::binary_row(false, qa, qb, qo, a, b, y);
    armv7: armv7neon::binary_row(false, qa, qb, qo, a, b, y);
    {
        for ((o, &va), &vb) in y.iter_mut().zip(a).zip(b) {
            *o = qo.quantize(qa.dequantize(va) + qb.dequantize(vb));
        }
    }
}

row_kernel! {
    /// `y[i] = Q(DQ_a(y[i]) + DQ_b(b[i]))` in place: [`add_row`] with `a` the rows a conv
    /// just wrote (a fused residual Add, [`ResidualAdd`]).
    fn add_row_in_place(qa: QType, qb: QType, qo: QType, b: &[u8], y: &mut [u8])
    neon: neon::binary_row_in_place(false, qa, qb, qo, b, y);
    armv7: armv7neon::binary_row_in_place(false, qa, qb, qo, b, y);
    {
        for (o, &vb) in y.iter_mut().zip(b) {
            *o = qo.quantize(qa.dequantize(*o) + qb.dequantize(vb));
        }
    }
}

/// A residual Add fused into a conv ([`crate::ops::QResidual`]), applied to the rows the conv
/// has just written while they are in cache: `y = Q_out(DQ_conv(y) + DQ_skip(skip))`, the
/// int8 Add's arithmetic ([`add_row`]) bit for bit.
#[derive(Clone, Copy, Debug)]
pub struct ResidualAdd {
    /// the conv's stored output
    conv: QType,
    /// the skip input's and the sum's quantizations
    r: crate::ops::QResidual,
    /// the skip tensor's element matching the conv output's first element in this call
    skip_at: *const u8,
    level: Level,
}

// SAFETY: the skip tensor is only read, and lives through the op's run (see `new`).
unsafe impl Send for ResidualAdd {}
unsafe impl Sync for ResidualAdd {}

impl ResidualAdd {
    /// # Safety
    /// `skip_at` must point at the skip tensor's element matching the first output element
    /// of the calls this is handed to, and stay readable while they run.
    pub unsafe fn new(
        level: Level,
        conv: QType,
        r: crate::ops::QResidual,
        skip_at: *const u8,
    ) -> Self {
        ResidualAdd {
            conv,
            r,
            skip_at,
            level,
        }
    }

    /// The same add for a call whose output starts `elems` elements later.
    pub fn advanced(self, elems: usize) -> Self {
        ResidualAdd {
            skip_at: self.skip_at.wrapping_add(elems),
            ..self
        }
    }

    /// Add the skip in place to the `len` output bytes at `y`, which lie `at` elements after
    /// this call's first one.
    ///
    /// # Safety
    /// `y` must hold `len` writable bytes, and the skip tensor `at + len` from `skip_at`.
    pub unsafe fn apply(&self, at: usize, y: *mut u8, len: usize) {
        let b = std::slice::from_raw_parts(self.skip_at.add(at), len);
        let y = std::slice::from_raw_parts_mut(y, len);
        add_row_in_place(self.level, self.conv, self.r.skip, self.r.out, b, y);
    }
}

row_kernel! {
    /// `y[i] = Q(DQ(a[i]) * DQ(b[i]))`.
    fn mul_row(qa: QType, qb: QType, qo: QType, a: &[u8], b: &[u8], y: &mut [u8])
    neon: neon::binary_row(true, qa, qb, qo, a, b, y);
    armv7: armv7neon::binary_row(true, qa, qb, qo, a, b, y);
    {
        for ((o, &va), &vb) in y.iter_mut().zip(a).zip(b) {
            *o = qo.quantize(qa.dequantize(va) * qb.dequantize(vb));
        }
    }
}

row_kernel! {
    /// Per-channel broadcast over NHWC pixels of `bt.len()` channels:
    /// `y[p, c] = Q(DQ(a[p, c]) op bt[c])` (`mul` picks `*`, else `+`).
    fn binary_channels_rows(mul: bool, qa: QType, qo: QType, bt: &[f32], a: &[u8], y: &mut [u8])
    neon: neon::channels_rows(mul, qa, qo, bt, a, y);
    armv7: armv7neon::channels_rows(mul, qa, qo, bt, a, y);
    { channels_rows_portable(mul, qa, qo, bt, a, y) }
}

/// [`binary_channels_rows`]' portable loop (also the NEON kernel's for a zero point outside a
/// byte).
#[inline(always)]
fn channels_rows_portable(mul: bool, qa: QType, qo: QType, bt: &[f32], a: &[u8], y: &mut [u8]) {
    let c = bt.len();
    for (yp, ap) in y.chunks_exact_mut(c).zip(a.chunks_exact(c)) {
        if mul {
            for ((o, &va), &vb) in yp.iter_mut().zip(ap).zip(bt) {
                *o = qo.quantize(qa.dequantize(va) * vb);
            }
        } else {
            for ((o, &va), &vb) in yp.iter_mut().zip(ap).zip(bt) {
                *o = qo.quantize(qa.dequantize(va) + vb);
            }
        }
    }
}

row_kernel! {
    /// `sum[c] += x[p * C + c]` over the pixels of `x` (`C = sum.len()` channels).
    fn sum_pixels(x: &[u8], sum: &mut [u32])
    neon: neon::sum_pixels(x, sum);
    { sum_pixels_portable(x, sum) }
}

/// [`sum_pixels`]' portable loop (also the NEON kernel's for fewer than 16 channels).
#[inline(always)]
fn sum_pixels_portable(x: &[u8], sum: &mut [u32]) {
    let c = sum.len();
    if c == 0 {
        return;
    }
    for px in x.chunks_exact(c) {
        for (s, &v) in sum.iter_mut().zip(px) {
            *s += v as u32;
        }
    }
}

/// `[N,C,H,W]` -> `(N, C, H*W)` for a rank-4 shape, else `(1, 1, len)` (no layout change).
pub fn nchw(shape: &[usize]) -> (usize, usize, usize) {
    if shape.len() == 4 {
        (shape[0], shape[1], shape[2] * shape[3])
    } else {
        (1, 1, shape.iter().product())
    }
}

/// Pixels per block in the NCHW <-> NHWC conversions: a block's bytes and floats for every
/// channel (`BLOCK * c * 5` bytes, 40 KB at 128 channels) stay in L1/L2 while it is
/// transposed, instead of streaming the whole tensor once per channel.
const BLOCK: usize = 64;

/// QuantizeLinear of an f32 NCHW tensor into stored NHWC bytes (pixel ranges in parallel on
/// rayon's current pool when large).
pub fn quantize(level: Level, q: QType, shape: &[usize], x: &[f32], y: &mut [u8]) {
    let (n, c, hw) = nchw(shape);
    if c == 1 {
        par::rows_mut(y, 1, |r, y| quantize_row(level, q, &x[r], y));
        return;
    }
    for b in 0..n {
        let src = &x[b * c * hw..(b + 1) * c * hw];
        let img = &mut y[b * hw * c..(b + 1) * hw * c];
        par::rows_mut(img, c, |px, out| {
            quantize_pixels(level, q, c, hw, src, px, out)
        });
    }
}

/// [`quantize`] of pixels `px` of one image (`src` its `c` planes of `hw` floats) into their
/// NHWC bytes `out`.
fn quantize_pixels(
    level: Level,
    q: QType,
    c: usize,
    hw: usize,
    src: &[f32],
    px: std::ops::Range<usize>,
    out: &mut [u8],
) {
    // Quantize each channel's run of a pixel block contiguously (vectorises) into `planes`
    // ([c][BLOCK]), then interleave the block into NHWC.
    let mut planes = vec![0u8; c * BLOCK];
    for p0 in px.clone().step_by(BLOCK) {
        let pn = BLOCK.min(px.end - p0);
        for (ch, plane) in planes.chunks_exact_mut(BLOCK).enumerate() {
            let row = &src[ch * hw + p0..ch * hw + p0 + pn];
            quantize_row(level, q, row, &mut plane[..pn]);
        }
        let out = &mut out[(p0 - px.start) * c..(p0 - px.start + pn) * c];
        match c {
            // an image's channels: known widths, so the interleave has no inner loop
            #[cfg(target_arch = "x86_64")]
            3 if level >= Level::Avx512Vnni && x86::has_vbmi() => {
                // SAFETY: the host has AVX-512 VBMI (checked).
                unsafe { x86::interleave3_avx512vbmi(&planes, out) }
            }
            #[cfg(target_arch = "aarch64")]
            // SAFETY: every aarch64 CPU has NEON.
            3 if level >= Level::Neon => unsafe { neon::interleave3(&planes, BLOCK, out) },
            3 => interleave::<3>(&planes, out),
            4 => interleave::<4>(&planes, out),
            _ => {
                // whole 16 x 16 tiles transposed in registers, the rest a byte at a time
                #[cfg(target_arch = "x86_64")]
                let done = if level >= Level::Avx2 {
                    x86::interleave_tiles(&planes, c, pn, out)
                } else {
                    (0, 0)
                };
                #[cfg(target_arch = "aarch64")]
                // SAFETY: every aarch64 CPU has NEON.
                let done = if level >= Level::Neon {
                    unsafe { neon::interleave_tiles(&planes, BLOCK, c, pn, out) }
                } else {
                    (0, 0)
                };
                #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
                let done = (0, 0);
                interleave_rest(&planes, c, pn, out, done);
            }
        }
    }
}

/// `out[i][ch] = planes[ch][i]` for `pn` pixels of `c` planes of [`BLOCK`] bytes, except the
/// `(pixels, channels)` tiles already done (channels `..done.1` of pixels `..done.0`).
fn interleave_rest(planes: &[u8], c: usize, pn: usize, out: &mut [u8], done: (usize, usize)) {
    for (i, px) in out[..pn * c].chunks_exact_mut(c).enumerate() {
        let from = if i < done.0 { done.1 } else { 0 };
        for (ch, o) in px.iter_mut().enumerate().skip(from) {
            *o = planes[ch * BLOCK + i];
        }
    }
}

/// `out[i][c] = planes[c][i]` for `C` planes of [`BLOCK`] bytes.
#[inline(always)]
fn interleave<const C: usize>(planes: &[u8], out: &mut [u8]) {
    let planes: [&[u8]; C] = std::array::from_fn(|c| &planes[c * BLOCK..(c + 1) * BLOCK]);
    for (i, px) in out.chunks_exact_mut(C).enumerate() {
        for c in 0..C {
            px[c] = planes[c][i];
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    // x86-only: AVX-512 intrinsics are stable since 1.89, above the crate's Arm MSRV.
    #![allow(clippy::incompatible_msrv)]
    use super::BLOCK;
    use std::arch::x86_64::*;

    pub fn has_vbmi() -> bool {
        super::Level::Avx512Vnni.supported() && is_x86_feature_detected!("avx512vbmi")
    }

    /// [`super::interleave`] for 3 planes: 16 pixels per step, the planes' 16 bytes side by
    /// side in one vector and one `vpermb` into 48 interleaved bytes.
    ///
    /// # Safety
    /// The host must have AVX-512 F/BW and VBMI.
    #[target_feature(enable = "avx512f,avx512bw,avx512vbmi")]
    pub unsafe fn interleave3_avx512vbmi(planes: &[u8], out: &mut [u8]) {
        assert!(planes.len() >= 3 * BLOCK && out.len() <= 3 * BLOCK && out.len() % 3 == 0);
        let idx: [u8; 64] = std::array::from_fn(|o| {
            if o < 48 {
                (o % 3 * 16 + o / 3) as u8
            } else {
                0
            }
        });
        let idx = _mm512_loadu_si512(idx.as_ptr() as *const _);
        let pix = out.len() / 3;
        let p = planes.as_ptr();
        let mut i = 0;
        while i < pix {
            let n = 16.min(pix - i);
            let v = _mm512_castsi128_si512(_mm_loadu_si128(p.add(i) as *const _));
            let v = _mm512_inserti32x4::<1>(v, _mm_loadu_si128(p.add(BLOCK + i) as *const _));
            let v = _mm512_inserti32x4::<2>(v, _mm_loadu_si128(p.add(2 * BLOCK + i) as *const _));
            let mask: __mmask64 = (1u64 << (3 * n)) - 1;
            let dst = out.as_mut_ptr().add(3 * i) as *mut i8;
            _mm512_mask_storeu_epi8(dst, mask, _mm512_permutexvar_epi8(idx, v));
            i += 16;
        }
    }

    /// `r[i][j] <-> r[j][i]`: a 16 x 16 byte transpose in four unpack rounds (SSE2: bytes of
    /// row pairs, then halfwords of 2-row, words of 4-row and quadwords of 8-row groups).
    #[inline(always)]
    unsafe fn transpose16(r: &mut [__m128i; 16]) {
        let z = _mm_setzero_si128();
        // s[8h + i]: rows 2i, 2i + 1, columns 8h .. 8h + 8 (one 16-bit unit per column)
        let mut s = [z; 16];
        for i in 0..8 {
            s[i] = _mm_unpacklo_epi8(r[2 * i], r[2 * i + 1]);
            s[8 + i] = _mm_unpackhi_epi8(r[2 * i], r[2 * i + 1]);
        }
        // t[8h + 2j + q]: rows 4j .. 4j + 4, columns 8h + 4q .. + 4 (a 32-bit unit each)
        let mut t = [z; 16];
        for h in 0..2 {
            for j in 0..4 {
                let (a, b) = (s[8 * h + 2 * j], s[8 * h + 2 * j + 1]);
                t[8 * h + 2 * j] = _mm_unpacklo_epi16(a, b);
                t[8 * h + 2 * j + 1] = _mm_unpackhi_epi16(a, b);
            }
        }
        // u[8k + cp]: rows 8k .. 8k + 8 of columns 2cp, 2cp + 1 (a 64-bit unit each)
        let mut u = [z; 16];
        for h in 0..2 {
            for q in 0..2 {
                for k in 0..2 {
                    let (a, b) = (t[8 * h + 4 * k + q], t[8 * h + 4 * k + 2 + q]);
                    let cp = 4 * h + 2 * q;
                    u[8 * k + cp] = _mm_unpacklo_epi32(a, b);
                    u[8 * k + cp + 1] = _mm_unpackhi_epi32(a, b);
                }
            }
        }
        for cp in 0..8 {
            r[2 * cp] = _mm_unpacklo_epi64(u[cp], u[8 + cp]);
            r[2 * cp + 1] = _mm_unpackhi_epi64(u[cp], u[8 + cp]);
        }
    }

    /// [`super::interleave`] of the whole 16 x 16 tiles of `c` planes of [`BLOCK`] bytes into
    /// `pn` NHWC pixels (`out`), transposed in registers; returns the pixels and channels done
    /// (`pn` and `c` rounded down to 16).
    pub fn interleave_tiles(planes: &[u8], c: usize, pn: usize, out: &mut [u8]) -> (usize, usize) {
        let (p16, c16) = (pn / 16 * 16, c / 16 * 16);
        assert!(pn <= BLOCK && planes.len() >= c * BLOCK && out.len() >= pn * c);
        // SAFETY: SSE2 is baseline x86-64; loads stay within the first c16 planes' first p16
        // bytes, stores within out's first p16 pixels (asserted above).
        unsafe {
            for p in (0..p16).step_by(16) {
                for ch in (0..c16).step_by(16) {
                    let at = |i: usize| planes.as_ptr().add((ch + i) * BLOCK + p).cast();
                    let mut r: [__m128i; 16] = std::array::from_fn(|i| _mm_loadu_si128(at(i)));
                    transpose16(&mut r);
                    for (j, v) in r.iter().enumerate() {
                        _mm_storeu_si128(out.as_mut_ptr().add((p + j) * c + ch).cast(), *v);
                    }
                }
            }
        }
        (p16, c16)
    }

    /// Dequantize the whole 16 x 16 tiles of `pn` NHWC pixels of `c` channels (`src`) into
    /// NCHW planes `hw` floats apart from `dst` (the block's first pixel in plane 0):
    /// transposed in registers, then `(v - zero_point) as f32 * scale`, exactly
    /// `q.dequantize`. Returns the pixels and channels done (rounded down to 16; with 8
    /// channels, the pixels rounded down to 32 and all channels).
    ///
    /// # Safety
    /// `dst` must hold `c` planes of `hw` floats from the block's first pixel, `pn` of them
    /// writable in each.
    pub unsafe fn dequantize_tiles(
        q: crate::ops::QType,
        src: &[u8],
        c: usize,
        pn: usize,
        dst: *mut f32,
        hw: usize,
    ) -> (usize, usize) {
        assert!(src.len() >= pn * c);
        let (zp, scale) = (_mm_set1_epi16(q.zero_point as i16), _mm_set1_ps(q.scale));
        // 16 dequantized bytes to `o`
        let store = |v: __m128i, o: *mut f32| {
            // bytes to i16 minus the zero point, then sign-extended to i32
            let z = _mm_setzero_si128();
            let lo = _mm_sub_epi16(_mm_unpacklo_epi8(v, z), zp);
            let hi = _mm_sub_epi16(_mm_unpackhi_epi8(v, z), zp);
            let words = [
                _mm_unpacklo_epi16(lo, lo),
                _mm_unpackhi_epi16(lo, lo),
                _mm_unpacklo_epi16(hi, hi),
                _mm_unpackhi_epi16(hi, hi),
            ];
            for (k, w) in words.into_iter().enumerate() {
                let f = _mm_cvtepi32_ps(_mm_srai_epi32::<16>(w));
                _mm_storeu_ps(o.add(4 * k), _mm_mul_ps(f, scale));
            }
        };
        if c == 8 {
            // (the LDA-AQU query's 8 channels) rows of two pixels: after the transpose row j
            // holds channel j of the even pixels and row 8 + j of the odd ones
            let p32 = pn / 32 * 32;
            for p in (0..p32).step_by(32) {
                let at = |i: usize| src.as_ptr().add((p + 2 * i) * 8).cast();
                let mut r: [__m128i; 16] = std::array::from_fn(|i| _mm_loadu_si128(at(i)));
                transpose16(&mut r);
                for j in 0..8 {
                    let o = dst.add(j * hw + p);
                    store(_mm_unpacklo_epi8(r[j], r[8 + j]), o);
                    store(_mm_unpackhi_epi8(r[j], r[8 + j]), o.add(16));
                }
            }
            return (p32, 8);
        }
        let (p16, c16) = (pn / 16 * 16, c / 16 * 16);
        for p in (0..p16).step_by(16) {
            for ch in (0..c16).step_by(16) {
                let at = |i: usize| src.as_ptr().add((p + i) * c + ch).cast();
                let mut r: [__m128i; 16] = std::array::from_fn(|i| _mm_loadu_si128(at(i)));
                transpose16(&mut r);
                for (j, v) in r.iter().enumerate() {
                    store(*v, dst.add((ch + j) * hw + p));
                }
            }
        }
        (p16, c16)
    }
}

/// DequantizeLinear of stored NHWC bytes into f32 NCHW, through a 256-entry table (exactly
/// `q.dequantize(v)` for every byte); pixel ranges in parallel on rayon's current pool when
/// large.
pub fn dequantize(level: Level, q: QType, shape: &[usize], x: &[u8], y: &mut [f32]) {
    let (n, c, hw) = nchw(shape);
    if c == 1 {
        dequantize_row(q, x, y);
        return;
    }
    let table: [f32; 256] = std::array::from_fn(|v| q.dequantize(v as u8));
    for b in 0..n {
        let src = &x[b * hw * c..(b + 1) * hw * c];
        let dst = SharedOut(y[b * c * hw..(b + 1) * c * hw].as_mut_ptr());
        // Pieces are pixel ranges: each writes its range of every channel's plane.
        par::ranges(hw, c, |px| {
            for p0 in px.clone().step_by(BLOCK) {
                let pn = BLOCK.min(px.end - p0);
                let block = &src[p0 * c..(p0 + pn) * c];
                #[cfg(target_arch = "aarch64")]
                if level >= Level::Neon {
                    // SAFETY: every aarch64 CPU has NEON; `dst` holds c planes of hw floats
                    // and this piece alone writes pixels `px` of them.
                    unsafe { neon::dequantize_block(q, &table, block, c, pn, dst.at(p0), hw) };
                    continue;
                }
                // whole 16 x 16 tiles transposed in registers, the rest through the table
                #[cfg(target_arch = "x86_64")]
                let (p16, c16) = if level >= Level::Avx2 {
                    // SAFETY: `dst` holds c planes of hw floats and this piece alone writes
                    // pixels `px` of them.
                    unsafe { x86::dequantize_tiles(q, block, c, pn, dst.at(p0), hw) }
                } else {
                    (0, 0)
                };
                #[cfg(not(target_arch = "x86_64"))]
                let (p16, c16) = (0, 0);
                let _ = level;
                for ch in 0..c {
                    // SAFETY: as above; plane `ch`, pixels p0..p0 + pn.
                    let plane = unsafe { std::slice::from_raw_parts_mut(dst.at(ch * hw + p0), pn) };
                    let from = if ch < c16 { p16 } else { 0 };
                    for (i, o) in plane.iter_mut().enumerate().skip(from) {
                        *o = table[block[i * c + ch] as usize];
                    }
                }
            }
        });
    }
}

/// DequantizeLinear of bytes into f32 in the same layout, through a 256-entry table.
pub fn dequantize_row(q: QType, x: &[u8], y: &mut [f32]) {
    let table: [f32; 256] = std::array::from_fn(|v| q.dequantize(v as u8));
    par::rows_mut(y, 1, |r, y| {
        for (o, &v) in y.iter_mut().zip(&x[r]) {
            *o = table[v as usize];
        }
    });
}

/// Nearest-neighbour resize of NHWC bytes (`in_shape` NCHW; one tap per output row and
/// column, from `resize::hw_taps`): each output pixel copies its source pixel's channels,
/// requantized by table when the output's quantization differs (`Q_out(DQ_in(v))`, what
/// dequantize, resize, quantize gives, since a nearest tap weighs exactly 1).
#[allow(clippy::type_complexity)]
pub fn resize_nearest_nhwc(
    qi: QType,
    qo: QType,
    in_shape: &[usize],
    taps_h: &[Vec<(usize, f32)>],
    taps_w: &[Vec<(usize, f32)>],
    x: &[u8],
    y: &mut [u8],
) {
    let (c, h, w) = (in_shape[1], in_shape[2], in_shape[3]);
    let (oh, ow) = (taps_h.len(), taps_w.len());
    if c == 0 || oh * ow == 0 {
        return;
    }
    let table = lut_table(qi, qo, |v| v);
    let identity = table.iter().enumerate().all(|(i, &v)| i == v as usize);
    for (img, out) in x
        .chunks_exact(h * w * c)
        .zip(y.chunks_exact_mut(oh * ow * c))
    {
        for (row, th) in out.chunks_exact_mut(ow * c).zip(taps_h) {
            let src = &img[th[0].0 * w * c..][..w * c];
            for (px, tw) in row.chunks_exact_mut(c).zip(taps_w) {
                let s = &src[tw[0].0 * c..][..c];
                if identity {
                    px.copy_from_slice(s);
                } else {
                    lut(&table, s, px);
                }
            }
        }
    }
}

/// A 256-entry table `Q_out(f(DQ_in(v)))`.
pub fn lut_table(input: QType, out: QType, f: impl Fn(f32) -> f32) -> Vec<u8> {
    (0..=255u8)
        .map(|v| out.quantize(f(input.dequantize(v))))
        .collect()
}

/// `y = table[x]`.
pub fn lut(table: &[u8], x: &[u8], y: &mut [u8]) {
    par::rows_mut(y, 1, |r, y| {
        for (o, &v) in y.iter_mut().zip(&x[r]) {
            *o = table[v as usize];
        }
    });
}

/// `Q(DQ(a) op DQ(b))`; `b` is a's shape or (`per_channel`) one value per channel of an NHWC
/// tensor with `c` channels.
#[allow(clippy::too_many_arguments)]
pub fn binary(
    level: Level,
    kind: QBinaryKind,
    qa: QType,
    qb: QType,
    qo: QType,
    c: usize,
    per_channel: bool,
    a: &[u8],
    b: &[u8],
    y: &mut [u8],
) {
    if per_channel {
        // a is NHWC with c channels per pixel; b holds one value per (image, channel).
        let c = c.max(1);
        let per_image = a.len() / (b.len() / c).max(1);
        for (img, (ya, aa)) in y.chunks_mut(per_image).zip(a.chunks(per_image)).enumerate() {
            let bt: Vec<f32> = b[img * c..(img + 1) * c]
                .iter()
                .map(|&v| qb.dequantize(v))
                .collect();
            let mul = kind == QBinaryKind::Mul;
            par::rows_mut(ya, c, |px, ya| {
                let aa = &aa[px.start * c..px.end * c];
                binary_channels_rows(level, mul, qa, qo, &bt, aa, ya)
            });
        }
    } else {
        par::rows_mut(y, 1, |r, y| {
            let (a, b) = (&a[r.clone()], &b[r]);
            match kind {
                QBinaryKind::Add => add_row(level, qa, qb, qo, a, b, y),
                QBinaryKind::Mul => mul_row(level, qa, qb, qo, a, b, y),
            }
        });
    }
}

/// Where ONNX axis `axis` of a tensor lands in speck's storage order (NHWC for rank 4).
pub fn stored_axis(rank: usize, axis: usize) -> usize {
    if rank == 4 {
        [0, 3, 1, 2][axis]
    } else {
        axis
    }
}

/// Stored shape (NHWC for rank 4).
pub fn stored_shape(shape: &[usize]) -> Vec<usize> {
    if shape.len() == 4 {
        vec![shape[0], shape[2], shape[3], shape[1]]
    } else {
        shape.to_vec()
    }
}

/// Concatenate stored tensors along ONNX `axis`, requantizing each input to `qo`.
pub fn concat(
    axis: usize,
    shapes: &[Vec<usize>],
    qs: &[QType],
    qo: QType,
    xs: &[&[u8]],
    y: &mut [u8],
) {
    let rank = shapes[0].len();
    let ax = stored_axis(rank, axis);
    let st: Vec<Vec<usize>> = shapes.iter().map(|s| stored_shape(s)).collect();
    let outer: usize = st[0][..ax].iter().product();
    let chunks: Vec<usize> = st.iter().map(|s| s[ax..].iter().product()).collect();
    let total: usize = chunks.iter().sum();
    if let ([1, 1], [a, b], [qa, qb]) = (&chunks[..], xs, qs) {
        // two planes interleaved (a stack of x and y coordinates)
        let (ta, tb) = (lut_table(*qa, qo, |v| v), lut_table(*qb, qo, |v| v));
        for ((d, &a), &b) in y.chunks_exact_mut(2).zip(a.iter()).zip(b.iter()) {
            d[0] = ta[a as usize];
            d[1] = tb[b as usize];
        }
        return;
    }
    for (i, (x, q)) in xs.iter().zip(qs).enumerate() {
        let off: usize = chunks[..i].iter().sum();
        let table = (*q != qo).then(|| lut_table(*q, qo, |v| v));
        let rows = y
            .chunks_exact_mut(total)
            .zip(x.chunks_exact(chunks[i].max(1)));
        match (&table, chunks[i]) {
            (_, 0) => {}
            // a few bytes per row (the last axis of a stack of coordinates): a byte loop, not
            // a memcpy call per row
            (None, 1..=16) => {
                for (dst, src) in rows.take(outer) {
                    for (d, &s) in dst[off..off + src.len()].iter_mut().zip(src) {
                        *d = s;
                    }
                }
            }
            (None, _) => {
                for (dst, src) in rows.take(outer) {
                    dst[off..off + src.len()].copy_from_slice(src);
                }
            }
            (Some(t), _) => {
                for (dst, src) in rows.take(outer) {
                    lut(t, src, &mut dst[off..off + src.len()]);
                }
            }
        }
    }
}

/// Global average pool of an NHWC tensor: the f32 mean of the dequantized values, quantized.
#[allow(clippy::too_many_arguments)]
pub fn global_average_pool(
    level: Level,
    qi: QType,
    qo: QType,
    n: usize,
    hw: usize,
    c: usize,
    x: &[u8],
    y: &mut [u8],
) {
    let mut sum = vec![0i64; c];
    let mut part = vec![0u32; c];
    // u32 partial sums vectorise; 2^24 pixels of 255 still fit
    const RUN: usize = 1 << 24;
    for b in 0..n {
        sum.iter_mut().for_each(|s| *s = 0);
        let img = &x[b * hw * c..(b + 1) * hw * c];
        for run in img.chunks(RUN.saturating_mul(c.max(1))) {
            part.iter_mut().for_each(|s| *s = 0);
            sum_pixels(level, run, &mut part);
            for (s, &p) in sum.iter_mut().zip(&part) {
                *s += p as i64;
            }
        }
        for ch in 0..c {
            let mean =
                (sum[ch] - qi.zero_point as i64 * hw as i64) as f64 * qi.scale as f64 / hw as f64;
            y[b * c + ch] = qo.quantize(mean as f32);
        }
    }
}
