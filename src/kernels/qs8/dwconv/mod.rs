//! `dwconv_qs8`: depthwise convolution on NHWC u8 activations, a band of output rows per call.
//!
//! # Microkernel contract
//! - **Rows**: a call computes output rows `oy..oy + rows`, stored one after another (row
//!   `oy + r` at `out + r * ow * C * elem`). A kernel that shares work between neighbouring
//!   rows (the row-interleaved `SDOT` and `vpdpbusd` kernels interleave input rows once for
//!   several output rows, [`row_group_band`]) asks for bands of [`DwKernel::band`] rows; every
//!   kernel takes any `rows`. Kernels written for one row are registered through `per_row!`.
//! - **Input**: one image `[H][W][C]` u8 with zero point `zx`; the kernel may read up to 15
//!   bytes past a pixel's last channel (the engine's arena keeps that slack). Where the
//!   kernel's [`DwKernel::input`] asks for it, it reads instead the copy [`frame_input`] makes
//!   (framed by `zx` so that no tap falls outside, for [`Input::FramedSigned`] every byte XOR
//!   0x80) with that copy's geometry (no padding).
//! - **Weights**: packed by the kernel's own `pack`. The shared layout ([`pack_weights`]) is
//!   `[kh * kw][c_pad]` i16 (`c_pad = ceil(C / 16) * 16`, zero-padded), tap-major so a vector
//!   of 16 channels of one tap is contiguous; values are int8 (-128..127). The AVX-512 kernel
//!   keeps its own byte layout in the same i16 buffer (see its module doc).
//! - **Accumulation**: `acc[c] = bias[c] + sum over in-bounds taps (x - zx) * w` in int32;
//!   out-of-bounds taps are skipped (they are `zx`, contributing 0). `(x - zx) * w` fits i16
//!   (|x - zx| <= 255, |w| <= 128), so SIMD kernels multiply in i16 and widen.
//! - **Epilogue**: the same as `gemm_qs8` ([`super::gemm::epilogue_one`]); bit-identical
//!   across ISAs.
//! - **Any kernel size, stride and dilation**; 3x3/5x5/7x7/11x11 at stride 1 and 2 all run
//!   through the same loop (taps outside the image are skipped per output pixel).
//!
//! Kernels: `dwconv_qs8_kxk_scalar` (reference), `dwconv_qs8_kxk_64c_rows4_avx512vnni` (column
//! stride 1: `vpdpbusd` on u8 input interleaved four kernel rows to a dword, zero point folded
//! into the bias), `dwconv_qs8_kxk_64c_avx512vnni` (any stride: `vpdpbusd` on u8 input, one
//! product per dword, zero point folded), `dwconv_qs8_kxk_16c_avx2`,
//! `dwconv_qs8_kxk_16c_rows4_neondot` (aarch64 with the dot product, column stride 1:
//! `SDOT` on the framed, signed copy interleaved four kernel rows to a lane),
//! `dwconv_qs8_kxk_16c_neonmull` (aarch64, `SMULL` + `SMLAL` of two taps in i16 on the
//! engine's framed, signed copy of the input ([`frame_input`]), assembly loops for 3x3 / 5x5; zero
//! points folded; weights in -127..=127, own packing) and `dwconv_qs8_kxk_16c_neon` (aarch64,
//! `SMLAL`/`SMLAL2` on inputs widened to i16; any weights); on 32-bit Arm
//! `dwconv_qs8_kxk_16c_armv7neon` (inline assembly, `VSUBL` + `VMLAL.S16`, any weights, own
//! packing).

#[cfg(target_arch = "arm")]
mod armv7neon;
#[cfg(target_arch = "x86_64")]
mod avx2;
#[cfg(target_arch = "x86_64")]
mod avx512vnni;
#[cfg(target_arch = "x86_64")]
mod avx512vnni_rows4;
#[cfg(target_arch = "aarch64")]
mod neon;
#[cfg(target_arch = "aarch64")]
mod neondot;
#[cfg(target_arch = "aarch64")]
mod neonmull;
mod scalar;

use super::gemm::EpiMode;
use super::Level;

/// Channels per vector block (weight padding unit).
pub const CB: usize = 16;

/// Geometry of one depthwise conv.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DwGeom {
    /// input height, width, channels
    pub h: usize,
    /// width
    pub w: usize,
    /// channels
    pub c: usize,
    /// output height
    pub oh: usize,
    /// output width
    pub ow: usize,
    /// kernel (kh, kw)
    pub k: [usize; 2],
    /// strides
    pub s: [usize; 2],
    /// pads (top, left)
    pub p: [usize; 2],
    /// dilations
    pub d: [usize; 2],
}

impl DwGeom {
    /// Channels padded to whole blocks.
    pub fn c_pad(&self) -> usize {
        self.c.div_ceil(CB) * CB
    }
}

/// A depthwise microkernel: `(geom, oy, rows, x, zx, w, bias, scale, mode, out_rows)`.
pub type DwUkernel = unsafe fn(
    &DwGeom,
    usize,
    usize,
    *const u8,
    i32,
    *const i16,
    *const i32,
    *const f32,
    EpiMode,
    *mut u8,
);

/// The contract's band of rows from a kernel that computes one output row per call
/// (`(geom, oy, x, zx, w, bias, scale, mode, out_row)`): row by row.
macro_rules! per_row {
    ($row:path) => {
        |g: &DwGeom,
         oy: usize,
         rows: usize,
         x: *const u8,
         zx: i32,
         w: *const i16,
         bias: *const i32,
         scale: *const f32,
         mode: EpiMode,
         out: *mut u8| {
            let row_bytes = g.ow * g.c * mode.elem_bytes();
            for r in 0..rows {
                // SAFETY: the contract's pointers; row `oy + r` is the band's `r`th.
                unsafe {
                    $row(
                        g,
                        oy + r,
                        x,
                        zx,
                        w,
                        bias,
                        scale,
                        mode,
                        out.add(r * row_bytes),
                    )
                }
            }
        }
    };
}

/// A registered depthwise kernel.
#[derive(Clone, Copy, Debug)]
pub struct DwKernel {
    /// name
    pub name: &'static str,
    /// instruction-set level
    pub level: Level,
    /// the microkernel
    pub run: DwUkernel,
    /// weight packing for `run`
    pub pack: fn(&[i8], &DwGeom) -> Vec<i16>,
    /// channels per vector step (a conv with far fewer wastes most of the vector)
    pub channels: usize,
    /// needs weights in -127..=127 (it adds two i8 x i8 products in i16)
    pub no_min_weight: bool,
    /// pixels side by side in one vector step for a conv of C channels (narrow convs)
    pub pixels_per_vector: fn(usize) -> usize,
    /// what the kernel reads for a conv of this geometry: the image, or a copy framed by
    /// [`frame_input`]
    pub input: fn(&DwGeom) -> Input,
    /// whether the kernel is the best choice for a conv of this geometry (every kernel
    /// computes every geometry; the tests run each on all of them)
    pub suits: fn(&DwGeom) -> bool,
    /// output rows per call that let the kernel share work between rows (1: none)
    pub band: fn(&DwGeom) -> usize,
}

/// What a depthwise kernel reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Input {
    /// the image itself; taps outside it are skipped
    Image,
    /// a copy framed by `zx` so that no tap falls outside, with a geometry without padding
    /// ([`frame_input`]): every output pixel takes the kernel's interior path
    Framed,
    /// as `Framed`, with every byte XOR 0x80 (`x - 128` as i8)
    FramedSigned,
}

/// Output rows that one interleave of input rows in groups of four serves (the row-interleaved
/// kernels' [`DwKernel::band`]): at row stride and dilation 1, output row `oy + r` reads the
/// band's input rows shifted by `r`, and the rows whose windows fit the `ceil(kh / 4)` groups
/// of one are `4 * ceil(kh / 4) - kh + 1` (2 for a 3x3, 4 for a 5x5, 2 for 7x7 and 11x11);
/// otherwise 1.
pub fn row_group_band(g: &DwGeom) -> usize {
    if g.s[0] == 1 && g.d[0] == 1 {
        4 * g.k[0].div_ceil(4) - g.k[0] + 1
    } else {
        1
    }
}

/// Every geometry ([`DwKernel::suits`]).
pub fn any_geometry(_: &DwGeom) -> bool {
    true
}

impl Input {
    /// The image for every geometry.
    pub fn image(_: &DwGeom) -> Input {
        Input::Image
    }
}

/// Every depthwise kernel in this build, best first.
#[allow(clippy::vec_init_then_push)] // pushes are per-architecture
pub fn registry() -> Vec<DwKernel> {
    #[allow(unused_mut)]
    let mut v = vec![];
    #[cfg(target_arch = "x86_64")]
    v.push(DwKernel {
        name: "dwconv_qs8_kxk_64c_rows4_avx512vnni",
        level: Level::Avx512Vnni,
        run: avx512vnni_rows4::dwconv_qs8_kxk_64c_rows4_avx512vnni,
        pack: avx512vnni_rows4::pack,
        channels: 64,
        no_min_weight: false,
        pixels_per_vector: avx512vnni_rows4::pixels_per_vector,
        input: Input::image,
        suits: avx512vnni_rows4::suits,
        band: row_group_band,
    });
    #[cfg(target_arch = "x86_64")]
    v.push(DwKernel {
        name: "dwconv_qs8_kxk_64c_avx512vnni",
        level: Level::Avx512Vnni,
        run: per_row!(avx512vnni::dwconv_qs8_kxk_64c_avx512vnni),
        pack: avx512vnni::pack,
        channels: 64,
        no_min_weight: false,
        pixels_per_vector: avx512vnni::pixels_per_vector,
        input: avx512vnni::input,
        suits: any_geometry,
        band: |_| 1,
    });
    #[cfg(target_arch = "x86_64")]
    v.push(DwKernel {
        name: "dwconv_qs8_kxk_16c_avx2",
        level: Level::Avx2,
        run: per_row!(avx2::dwconv_qs8_kxk_16c_avx2),
        pack: pack_weights,
        channels: 16,
        no_min_weight: false,
        pixels_per_vector: |_| 1,
        input: Input::image,
        suits: any_geometry,
        band: |_| 1,
    });
    #[cfg(target_arch = "aarch64")]
    v.push(DwKernel {
        name: "dwconv_qs8_kxk_16c_rows4_neondot",
        level: Level::NeonDot,
        run: neondot::dwconv_qs8_kxk_16c_rows4_neondot,
        pack: neondot::pack,
        channels: 16,
        no_min_weight: false,
        pixels_per_vector: |_| 1,
        input: |_| Input::FramedSigned,
        suits: neondot::suits,
        band: row_group_band,
    });
    #[cfg(target_arch = "aarch64")]
    v.push(DwKernel {
        name: "dwconv_qs8_kxk_16c_neonmull",
        level: Level::Neon,
        run: per_row!(neonmull::dwconv_qs8_kxk_16c_neonmull),
        pack: neonmull::pack,
        channels: 16,
        no_min_weight: true,
        pixels_per_vector: |_| 1,
        input: |_| Input::FramedSigned,
        suits: any_geometry,
        band: |_| 1,
    });
    #[cfg(target_arch = "aarch64")]
    v.push(DwKernel {
        name: "dwconv_qs8_kxk_16c_neon",
        level: Level::Neon,
        run: per_row!(neon::dwconv_qs8_kxk_16c_neon),
        pack: pack_weights,
        channels: 16,
        no_min_weight: false,
        pixels_per_vector: |_| 1,
        input: Input::image,
        suits: any_geometry,
        band: |_| 1,
    });
    #[cfg(target_arch = "arm")]
    v.push(DwKernel {
        name: "dwconv_qs8_kxk_16c_armv7neon",
        level: Level::Neon,
        run: per_row!(armv7neon::dwconv_qs8_kxk_16c_armv7neon),
        pack: armv7neon::pack,
        channels: 16,
        no_min_weight: false,
        pixels_per_vector: |_| 1,
        input: Input::image,
        suits: any_geometry,
        band: |_| 1,
    });
    v.push(DwKernel {
        name: "dwconv_qs8_kxk_scalar",
        level: Level::Scalar,
        run: per_row!(scalar::dwconv_qs8_kxk_scalar),
        pack: pack_weights,
        channels: 16,
        no_min_weight: false,
        pixels_per_vector: |_| 1,
        input: Input::image,
        suits: any_geometry,
        band: |_| 1,
    });
    v
}

/// The best kernel at or below `level` that the host runs for a conv of geometry `g`:
/// skipping kernels that do not suit `g`, those whose vector step would leave more than half
/// of its lanes idle (64-wide on 24 channels; a kernel that packs narrow convs' pixels side by
/// side fills them), and those that cannot take a -128 weight when `has_min`.
pub fn select_for(level: Level, g: &DwGeom, has_min: bool) -> DwKernel {
    registry()
        .into_iter()
        .find(|k| {
            let lanes = g.c * (k.pixels_per_vector)(g.c);
            let used = lanes as f64 / (lanes.div_ceil(k.channels) * k.channels) as f64;
            k.level <= level
                && k.level.supported()
                && (k.suits)(g)
                && (k.channels <= 16 || used >= 0.5)
                && !(has_min && k.no_min_weight)
        })
        .expect("the scalar kernel is always there")
}

/// Pack `[C][kh][kw]` int8 weights into the tap-major i16 layout.
pub fn pack_weights(w: &[i8], g: &DwGeom) -> Vec<i16> {
    let taps = g.k[0] * g.k[1];
    let cp = g.c_pad();
    let mut out = vec![0i16; taps * cp];
    for c in 0..g.c {
        for t in 0..taps {
            out[t * cp + c] = w[c * taps + t] as i16;
        }
    }
    out
}

/// The input extent a framed copy needs (rows, columns): every tap of every output pixel.
pub fn framed_extent(g: &DwGeom) -> (usize, usize) {
    let span = |o: usize, s: usize, k: usize, d: usize| o.saturating_sub(1) * s + (k - 1) * d + 1;
    (
        span(g.oh, g.s[0], g.k[0], g.d[0]),
        span(g.ow, g.s[1], g.k[1], g.d[1]),
    )
}

/// Bytes of a framed copy of `g`'s input (see [`frame_input`]), read slack included.
pub fn framed_len(g: &DwGeom) -> usize {
    let (h, w) = framed_extent(g);
    h * w * g.c + CB
}

/// Share of the output pixels with a tap outside the image (the ones a kernel reading the
/// image takes its bounds-checked path for).
pub fn border_share(g: &DwGeom) -> f64 {
    let inside = |o: usize, s: usize, d: usize, p: usize, k: usize, n: usize| {
        (0..o)
            .filter(|&i| tap_range(i, s, d, p, k, n) == (0, k))
            .count()
    };
    let rows = inside(g.oh, g.s[0], g.d[0], g.p[0], g.k[0], g.h);
    let cols = inside(g.ow, g.s[1], g.d[1], g.p[1], g.k[1], g.w);
    1.0 - (rows * cols) as f64 / (g.oh * g.ow).max(1) as f64
}

/// Copy the input `x` (`g.h x g.w x g.c` u8) into `dst` framed by `zx` bytes so that every
/// tap of every output pixel lies inside it, and return the geometry of the copy (no
/// padding). A kernel then sees only interior pixels, with the same results: the frame's
/// `zx` bytes add `(zx - zx) * w = 0`, exactly what skipping an outside tap adds. With
/// `signed`, every byte of the copy (frame included) is XOR 0x80, `x - 128` as i8, the
/// operand of signed 8-bit multiplies, flipped once here instead of at each of a byte's
/// `kh * kw` reads.
///
/// # Panics
/// If `dst` is shorter than [`framed_len`] or `x` shorter than the input.
pub fn frame_input(g: &DwGeom, x: &[u8], zx: u8, signed: bool, dst: &mut [u8]) -> DwGeom {
    let (fh, fw) = framed_extent(g);
    let c = g.c;
    let flip = if signed { 0x80 } else { 0 };
    let zf = zx ^ flip;
    let (dst, slack) = dst[..framed_len(g)].split_at_mut(fh * fw * c);
    slack.fill(zf);
    for (fy, row) in dst.chunks_exact_mut(fw * c).enumerate() {
        let iy = fy as isize - g.p[0] as isize;
        if iy < 0 || iy >= g.h as isize {
            row.fill(zf);
            continue;
        }
        // columns [p_left, p_left + w) hold the image row (clipped to the copy's width)
        let left = g.p[1].min(fw);
        let inside = g.w.min(fw - left);
        row[..left * c].fill(zf);
        let src = &x[iy as usize * g.w * c..][..inside * c];
        for (d, &v) in row[left * c..(left + inside) * c].iter_mut().zip(src) {
            *d = v ^ flip;
        }
        row[(left + inside) * c..].fill(zf);
    }
    DwGeom {
        h: fh,
        w: fw,
        p: [0, 0],
        ..*g
    }
}

/// Range of kernel taps `t` along one axis with `0 <= o*s + t*d - p < n`.
#[inline]
pub fn tap_range(o: usize, s: usize, d: usize, p: usize, k: usize, n: usize) -> (usize, usize) {
    let base = (o * s) as isize - p as isize;
    let mut t0 = 0;
    while t0 < k && base + ((t0 * d) as isize) < 0 {
        t0 += 1;
    }
    let mut t1 = k;
    while t1 > t0 && base + (((t1 - 1) * d) as isize) >= n as isize {
        t1 -= 1;
    }
    (t0, t1)
}

#[cfg(test)]
mod tests;
