//! Depthwise f32 convolution (group == C == M, dilation 1), plane by plane.
//!
//! Four schemes:
//! - AVX-512, 7x7 and 11x11 kernels, and 5x5 on maps up to 28 wide: `dwconv_f32_16c_avx512`
//!   ([`c16_avx512`]) transposes 16 planes at a time into pixel vectors of 16 channels, so
//!   every tap is an aligned, unmasked load with all lanes useful;
//! - other AVX-512 geometries, horizontal stride 1 or 2: `dwconv_f32_rows16_avx512`
//!   ([`rows_avx512`]) reads the planes in place with masked loads, a tile of output rows by
//!   16-wide column vectors at a time (3x3: bands of rows with the taps shifted in registers),
//!   and writes `y` directly (no padded copy);
//! - other x86 SIMD: `dwconv_f32_flat<outputs>_<isa>` (module `flat`) splits the padded plane into its
//!   stride phases and runs every output row back to back as one flat vector stream, any
//!   kernel size and stride: 7- and 14-wide maps (most of MobileNetV3's depthwise work) fill
//!   the vectors instead of leaving a scalar tail per row.
//! - otherwise padded planes are copied into a zero-bordered buffer first (its border zeroed
//!   once per layout), so every window is in bounds and no kernel branches on the border:
//!   - aarch64 NEON, 3x3, 5x5, 7x7 and 11x11 at stride 1 and 2: `dwconv_f32_<k>x<k>s<s>_neon`
//!     ([`plane_neon`]), a whole plane per call, taps in registers, two output rows per pass,
//!     Relu / HardSwish before the store;
//!   - row kernels, one output row per call: `dwconv_f32_<k>x<k>s<s>_<isa>` (scalar for 3x3 /
//!     5x5 at stride 1 and 2, the portable path; armv7 NEON assembly for the same sizes as
//!     aarch64) and `dwconv_f32_generic_scalar`.

use super::epilogue::EpiHint;

#[cfg(target_arch = "x86_64")]
// AVX-512 intrinsics are stable since 1.89, above the crate's MSRV (the Arm toolchain's 1.85)
#[allow(clippy::incompatible_msrv)]
mod rows_avx512;

#[cfg(target_arch = "x86_64")]
#[allow(clippy::incompatible_msrv)]
mod c16_avx512;

#[cfg(target_arch = "aarch64")]
mod plane_neon;

/// Geometry of one depthwise plane.
#[derive(Clone, Copy, Debug)]
pub(crate) struct DwGeom {
    pub h: usize,
    pub w: usize,
    pub oh: usize,
    pub ow: usize,
    pub kh: usize,
    pub kw: usize,
    pub sh: usize,
    pub sw: usize,
    pub pt: usize,
    pub pl: usize,
}

/// Interior row kernel chosen at plan time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum DwRow {
    Generic,
    K3S1,
    K3S2,
    K5S1,
    K5S2,
    /// the flat phase-plane kernel ([`flat`]), AVX2+FMA
    FlatAvx2,
    /// the flat phase-plane kernel, AVX-512
    FlatAvx512,
    /// straight from the planes, masked loads ([`rows_avx512`]), AVX-512
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    RowsAvx512,
    /// small maps 16 planes at a time, a pixel's 16 channels per vector ([`c16_avx512`]),
    /// AVX-512
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    C16Avx512,
    K3S1Neon,
    K3S2Neon,
    K5S1Neon,
    K5S2Neon,
    /// 7x7 and 11x11 (LGA's local and global convs)
    K7S1Neon,
    K7S2Neon,
    K11S1Neon,
    K11S2Neon,
}

impl DwRow {
    /// Pick the row kernel for a geometry and instruction set.
    pub fn select(g: &DwGeom, isa: super::super::Isa) -> DwRow {
        use super::super::Isa;
        let x86 = cfg!(any(target_arch = "x86", target_arch = "x86_64"));
        match isa {
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 if c16_avx512::suits(g) => return DwRow::C16Avx512,
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 if rows_avx512::handles(g) => return DwRow::RowsAvx512,
            Isa::Avx512 if x86 => return DwRow::FlatAvx512,
            Isa::Avx2 if x86 => return DwRow::FlatAvx2,
            _ => {}
        }
        // aarch64 plane kernels ([`plane_neon`]), or armv7 assembly rows ([`dw_kxk_armv7neon`])
        let neon = isa == Isa::Neon && cfg!(any(target_arch = "aarch64", target_arch = "arm"));
        if g.kh != g.kw || g.sh != g.sw {
            return DwRow::Generic;
        }
        if neon {
            match (g.kh, g.sh) {
                (3, 1) => return DwRow::K3S1Neon,
                (3, 2) => return DwRow::K3S2Neon,
                (5, 1) => return DwRow::K5S1Neon,
                (5, 2) => return DwRow::K5S2Neon,
                (7, 1) => return DwRow::K7S1Neon,
                (7, 2) => return DwRow::K7S2Neon,
                (11, 1) => return DwRow::K11S1Neon,
                (11, 2) => return DwRow::K11S2Neon,
                _ => {}
            }
        }
        match (g.kh, g.sh) {
            (3, 1) => DwRow::K3S1,
            (5, 1) => DwRow::K5S1,
            (3, 2) => DwRow::K3S2,
            (5, 2) => DwRow::K5S2,
            _ => DwRow::Generic,
        }
    }

    /// Planes the kernel computes together (a call's planes are best a multiple of it).
    pub fn planes_per_group(self) -> usize {
        match self {
            DwRow::C16Avx512 => 16,
            _ => 1,
        }
    }

    /// Kernel name (ncnn / XNNPACK style).
    pub fn name(self) -> &'static str {
        match self {
            DwRow::Generic => "dwconv_f32_generic_scalar",
            DwRow::K3S1 => "dwconv_f32_3x3s1_scalar",
            DwRow::K3S2 => "dwconv_f32_3x3s2_scalar",
            DwRow::K5S1 => "dwconv_f32_5x5s1_scalar",
            DwRow::K5S2 => "dwconv_f32_5x5s2_scalar",
            DwRow::FlatAvx2 => "dwconv_f32_flat32_avx2",
            DwRow::FlatAvx512 => "dwconv_f32_flat128_avx512",
            DwRow::RowsAvx512 => "dwconv_f32_rows16_avx512",
            DwRow::C16Avx512 => "dwconv_f32_16c_avx512",
            DwRow::K3S1Neon if cfg!(target_arch = "arm") => "dwconv_f32_3x3s1_armv7neon",
            DwRow::K3S2Neon if cfg!(target_arch = "arm") => "dwconv_f32_3x3s2_armv7neon",
            DwRow::K5S1Neon if cfg!(target_arch = "arm") => "dwconv_f32_5x5s1_armv7neon",
            DwRow::K5S2Neon if cfg!(target_arch = "arm") => "dwconv_f32_5x5s2_armv7neon",
            DwRow::K7S1Neon if cfg!(target_arch = "arm") => "dwconv_f32_7x7s1_armv7neon",
            DwRow::K7S2Neon if cfg!(target_arch = "arm") => "dwconv_f32_7x7s2_armv7neon",
            DwRow::K11S1Neon if cfg!(target_arch = "arm") => "dwconv_f32_11x11s1_armv7neon",
            DwRow::K11S2Neon if cfg!(target_arch = "arm") => "dwconv_f32_11x11s2_armv7neon",
            DwRow::K3S1Neon => "dwconv_f32_3x3s1_neon",
            DwRow::K3S2Neon => "dwconv_f32_3x3s2_neon",
            DwRow::K5S1Neon => "dwconv_f32_5x5s1_neon",
            DwRow::K5S2Neon => "dwconv_f32_5x5s2_neon",
            DwRow::K7S1Neon => "dwconv_f32_7x7s1_neon",
            DwRow::K7S2Neon => "dwconv_f32_7x7s2_neon",
            DwRow::K11S1Neon => "dwconv_f32_11x11s1_neon",
            DwRow::K11S2Neon => "dwconv_f32_11x11s2_neon",
        }
    }

    /// Run on one interior row segment. `x` is the input plane, `iy0`/`ix0` the top-left input
    /// of the first output's window.
    #[allow(clippy::too_many_arguments)]
    #[inline]
    fn run(
        self,
        x: &[f32],
        g: &DwGeom,
        iy0: usize,
        ix0: usize,
        wts: &[f32],
        bias: f32,
        out: &mut [f32],
    ) {
        let w = g.w;
        match self {
            DwRow::Generic => {
                dwconv_f32_generic_scalar(x, w, iy0, ix0, g.kh, g.kw, g.sw, wts, bias, out)
            }
            DwRow::K3S1 => dwconv_f32_3x3s1_scalar(x, w, iy0, ix0, wts, bias, out),
            DwRow::K3S2 => dwconv_f32_3x3s2_scalar(x, w, iy0, ix0, wts, bias, out),
            DwRow::K5S1 => dwconv_f32_5x5s1_scalar(x, w, iy0, ix0, wts, bias, out),
            DwRow::K5S2 => dwconv_f32_5x5s2_scalar(x, w, iy0, ix0, wts, bias, out),
            #[cfg(target_arch = "arm")]
            // SAFETY (these eight): selected only when the CPU has NEON (`Isa::Neon`).
            DwRow::K3S1Neon => unsafe { dw_kxk_armv7neon::<3, 1>(x, w, iy0, ix0, wts, bias, out) },
            #[cfg(target_arch = "arm")]
            DwRow::K3S2Neon => unsafe { dw_kxk_armv7neon::<3, 2>(x, w, iy0, ix0, wts, bias, out) },
            #[cfg(target_arch = "arm")]
            DwRow::K5S1Neon => unsafe { dw_kxk_armv7neon::<5, 1>(x, w, iy0, ix0, wts, bias, out) },
            #[cfg(target_arch = "arm")]
            DwRow::K5S2Neon => unsafe { dw_kxk_armv7neon::<5, 2>(x, w, iy0, ix0, wts, bias, out) },
            #[cfg(target_arch = "arm")]
            DwRow::K7S1Neon => unsafe { dw_kxk_armv7neon::<7, 1>(x, w, iy0, ix0, wts, bias, out) },
            #[cfg(target_arch = "arm")]
            DwRow::K7S2Neon => unsafe { dw_kxk_armv7neon::<7, 2>(x, w, iy0, ix0, wts, bias, out) },
            #[cfg(target_arch = "arm")]
            DwRow::K11S1Neon => unsafe {
                dw_kxk_armv7neon::<11, 1>(x, w, iy0, ix0, wts, bias, out)
            },
            #[cfg(target_arch = "arm")]
            DwRow::K11S2Neon => unsafe {
                dw_kxk_armv7neon::<11, 2>(x, w, iy0, ix0, wts, bias, out)
            },
            // Selected only for their own architecture.
            #[allow(unreachable_patterns)]
            _ => dwconv_f32_generic_scalar(x, w, iy0, ix0, g.kh, g.kw, g.sw, wts, bias, out),
        }
    }
}

/// Checks that `planes` planes of `g` fit `x`, `y` and `wts`; returns their sizes `(h * w,
/// oh * ow, kh * kw)`.
pub(crate) fn check_planes(
    x: &[f32],
    y: &[f32],
    wts: &[f32],
    planes: usize,
    g: &DwGeom,
) -> (usize, usize, usize) {
    let (hw, ohw, kk) = (g.h * g.w, g.oh * g.ow, g.kh * g.kw);
    assert!(
        x.len() >= planes * hw && y.len() >= planes * ohw && wts.len() >= planes * kk,
        "depthwise planes out of bounds"
    );
    (hw, ohw, kk)
}

/// Depthwise convolution of consecutive planes `x [p][h*w] -> y [p][oh*ow]` (plane `i` with
/// weights `wts[i * kh * kw..]` and bias `bias[i]`), bias and activation fused.
#[allow(clippy::too_many_arguments)]
pub(crate) fn dwconv_f32_planes<F: Fn(f32) -> f32>(
    x: &[f32],
    y: &mut [f32],
    wts: &[f32],
    bias: &[f32],
    g: &DwGeom,
    row: DwRow,
    act: &F,
    hint: EpiHint,
) {
    let planes = bias.len();
    let (hw, ohw, kk) = check_planes(x, y, wts, planes, g);
    #[cfg(target_arch = "x86_64")]
    if row == DwRow::RowsAvx512 {
        // SAFETY: selected only when the plan's ISA (checked against the host) is AVX-512 and
        // `handles` accepted the geometry.
        unsafe { rows_avx512::dwconv_f32_rows16_avx512(x, y, wts, bias, g, act, hint) };
        return;
    }
    #[cfg(target_arch = "x86_64")]
    if row == DwRow::C16Avx512 {
        // SAFETY: as above, with `c16_avx512::suits`.
        unsafe { c16_avx512::dwconv_f32_16c_avx512(x, y, wts, bias, g, act, hint) };
        return;
    }
    #[cfg(any(target_arch = "x86", target_arch = "x86_64"))]
    if matches!(row, DwRow::FlatAvx2 | DwRow::FlatAvx512) {
        flat::dw_flat_planes(x, y, wts, bias, g, row);
        activate_plane(&mut y[..planes * ohw], act, hint);
        return;
    }
    for (i, &b) in bias.iter().enumerate() {
        let (xp, yp) = (&x[i * hw..(i + 1) * hw], &mut y[i * ohw..(i + 1) * ohw]);
        dwconv_f32_plane(xp, yp, &wts[i * kk..(i + 1) * kk], b, g, row, act, hint);
    }
}

/// Depthwise convolution of one plane `x [h*w] -> y [oh*ow]`, bias and activation fused.
///
/// A padded conv first copies the plane into a zero-bordered buffer (as ncnn does), so every
/// output row runs the branch-free interior kernel: on small maps (7x7 with a 5x5 kernel)
/// most outputs are border outputs, and a per-tap bounds check there would dominate.
#[allow(clippy::too_many_arguments)]
fn dwconv_f32_plane<F: Fn(f32) -> f32>(
    x: &[f32],
    y: &mut [f32],
    wts: &[f32],
    bias: f32,
    g: &DwGeom,
    row: DwRow,
    act: &F,
    hint: EpiHint,
) {
    let (hp, wp) = ((g.oh - 1) * g.sh + g.kh, (g.ow - 1) * g.sw + g.kw);
    let padded = g.pt > 0 || g.pl > 0 || hp > g.h || wp > g.w;
    if !padded {
        dw_rows(x, y, wts, bias, g, row, act, hint);
        return;
    }
    // Input rows/columns past the last window are never read: copy only what fits.
    let (rows, cols) = (
        g.h.min(hp.saturating_sub(g.pt)),
        g.w.min(wp.saturating_sub(g.pl)),
    );
    PAD.with(|pad| {
        let mut pad = pad.borrow_mut();
        // The border is zeroed when the layout changes only: the planes of one conv (and of
        // the next with the same geometry) overwrite the same interior and leave it zero.
        let layout = [hp, wp, g.pt, g.pl, rows, cols];
        if pad.layout != layout {
            pad.buf.clear();
            // slack for the stride-2 NEON kernel's `LD2`, which reads a float past the last window
            pad.buf.resize(hp * wp + 8, 0.0);
            pad.layout = layout;
        }
        let buf = &mut pad.buf;
        #[cfg(target_arch = "aarch64")]
        plane_neon::copy_rows(&mut buf[g.pt * wp + g.pl..], wp, x, g.w, rows, cols);
        #[cfg(not(target_arch = "aarch64"))]
        for iy in 0..rows {
            let dst = (iy + g.pt) * wp + g.pl;
            buf[dst..dst + cols].copy_from_slice(&x[iy * g.w..iy * g.w + cols]);
        }
        let gp = DwGeom {
            h: hp,
            w: wp,
            pt: 0,
            pl: 0,
            ..*g
        };
        dw_rows(buf, y, wts, bias, &gp, row, act, hint);
    });
}

/// A zero-bordered plane and the layout its zeros are for.
struct PadBuf {
    buf: Vec<f32>,
    /// padded height and width, top and left padding, rows and columns copied in
    layout: [usize; 6],
}

thread_local! {
    /// Per-thread padded-plane buffer, reused across planes and runs.
    static PAD: std::cell::RefCell<PadBuf> = const {
        std::cell::RefCell::new(PadBuf { buf: Vec::new(), layout: [0; 6] })
    };
}

/// All output rows of an unpadded plane whose windows all lie inside `x`.
#[allow(clippy::too_many_arguments)]
fn dw_rows<F: Fn(f32) -> f32>(
    x: &[f32],
    y: &mut [f32],
    wts: &[f32],
    bias: f32,
    g: &DwGeom,
    row: DwRow,
    act: &F,
    hint: EpiHint,
) {
    #[cfg(target_arch = "aarch64")]
    if let Some(plane) = plane_neon::plane_kernel(row) {
        // Relu and HardSwish in the kernel's registers; others over the plane afterwards
        let fused = hint.has_vector_form();
        let h = if fused { hint } else { EpiHint::Identity };
        // SAFETY: NEON is part of aarch64; the kernel checks its bounds.
        unsafe { plane(x, g.w, g.oh, g.ow, wts, bias, h, y) };
        if !fused {
            activate_plane(&mut y[..g.oh * g.ow], act, hint);
        }
        return;
    }
    for (oy, yr) in y.chunks_exact_mut(g.ow).enumerate().take(g.oh) {
        row.run(x, g, oy * g.sh, 0, wts, bias, yr);
    }
    activate_plane(&mut y[..g.oh * g.ow], act, hint);
}

/// The activation over a whole plane at once: one vectorised loop instead of a short one per
/// row with a scalar remainder each (7- and 14-wide rows in MobileNetV3). Its own small
/// function so that `act` is inlined into the loop (inside `dw_rows` it was a call per value).
#[inline(never)]
fn activate_plane<F: Fn(f32) -> f32>(y: &mut [f32], act: &F, hint: EpiHint) {
    super::epilogue::act_in_place(y, act, hint);
}

/// Any kernel size and stride, interior only: accumulates tap by tap over the row (vectorises
/// at stride 1).
#[allow(clippy::too_many_arguments)]
pub fn dwconv_f32_generic_scalar(
    x: &[f32],
    w: usize,
    iy0: usize,
    ix0: usize,
    kh: usize,
    kw: usize,
    s: usize,
    wts: &[f32],
    bias: f32,
    out: &mut [f32],
) {
    out.fill(bias);
    let n = out.len();
    if n == 0 {
        return;
    }
    for ky in 0..kh {
        let start = (iy0 + ky) * w + ix0;
        let row = &x[start..start + (n - 1) * s + kw];
        for kx in 0..kw {
            let wv = wts[ky * kw + kx];
            if s == 1 {
                for (o, &v) in out.iter_mut().zip(&row[kx..kx + n]) {
                    *o += wv * v;
                }
            } else {
                for (i, o) in out.iter_mut().enumerate() {
                    *o += wv * row[kx + i * s];
                }
            }
        }
    }
}

/// KxK stride S interior row with the taps held in registers.
#[inline(always)]
fn dw_kxk_scalar<const K: usize, const S: usize>(
    x: &[f32],
    w: usize,
    iy0: usize,
    ix0: usize,
    wts: &[f32],
    bias: f32,
    out: &mut [f32],
) {
    let n = out.len();
    if n == 0 {
        return;
    }
    let need = (n - 1) * S + K;
    let rows: [&[f32]; K] = std::array::from_fn(|ky| {
        let s = (iy0 + ky) * w + ix0;
        &x[s..s + need]
    });
    let wk: [[f32; K]; K] = std::array::from_fn(|ky| std::array::from_fn(|kx| wts[ky * K + kx]));
    for (i, o) in out.iter_mut().enumerate() {
        let mut acc = bias;
        for ky in 0..K {
            let r = &rows[ky][i * S..i * S + K];
            for kx in 0..K {
                acc += wk[ky][kx] * r[kx];
            }
        }
        *o = acc;
    }
}

/// 3x3 stride 1 interior row, scalar.
pub fn dwconv_f32_3x3s1_scalar(
    x: &[f32],
    w: usize,
    iy0: usize,
    ix0: usize,
    wts: &[f32],
    bias: f32,
    out: &mut [f32],
) {
    dw_kxk_scalar::<3, 1>(x, w, iy0, ix0, wts, bias, out)
}

/// 3x3 stride 2 interior row, scalar.
pub fn dwconv_f32_3x3s2_scalar(
    x: &[f32],
    w: usize,
    iy0: usize,
    ix0: usize,
    wts: &[f32],
    bias: f32,
    out: &mut [f32],
) {
    dw_kxk_scalar::<3, 2>(x, w, iy0, ix0, wts, bias, out)
}

/// 5x5 stride 1 interior row, scalar.
pub fn dwconv_f32_5x5s1_scalar(
    x: &[f32],
    w: usize,
    iy0: usize,
    ix0: usize,
    wts: &[f32],
    bias: f32,
    out: &mut [f32],
) {
    dw_kxk_scalar::<5, 1>(x, w, iy0, ix0, wts, bias, out)
}

/// 5x5 stride 2 interior row, scalar.
pub fn dwconv_f32_5x5s2_scalar(
    x: &[f32],
    w: usize,
    iy0: usize,
    ix0: usize,
    wts: &[f32],
    bias: f32,
    out: &mut [f32],
) {
    dw_kxk_scalar::<5, 2>(x, w, iy0, ix0, wts, bias, out)
}

/// KxK stride S interior row on 32-bit Arm NEON, inline assembly (no stable intrinsics there,
/// and LLVM leaves armv7 f32 loops scalar): 8 outputs per step in two accumulators, the tap
/// loops in assembly with each weight loaded and broadcast by `VLD1.32 {d[], d[]}`; stride 2
/// de-interleaves with `VLD2.32` (even lanes used). Steps whose loads would pass the end of
/// `x` (stride 2 reads one float beyond the last tap) and the last `n % 8` outputs take the
/// scalar row.
///
/// # Safety
/// The CPU has NEON.
#[cfg(target_arch = "arm")]
unsafe fn dw_kxk_armv7neon<const K: usize, const S: usize>(
    x: &[f32],
    w: usize,
    iy0: usize,
    ix0: usize,
    wts: &[f32],
    bias: f32,
    out: &mut [f32],
) {
    use std::arch::asm;
    let n = out.len();
    assert!(wts.len() >= K * K, "dwconv weights too short");
    let row0 = iy0 * w + ix0;
    let mut i = 0;
    // The step's loads end at float `row0 + (K-1)*w + (i+8)*S + K - 1` (+1 for stride 2).
    while i + 8 <= n && row0 + (K - 1) * w + (i + 8) * S + K + (S - 1) <= x.len() {
        let xp = x.as_ptr().add(row0 + i * S);
        let op = out.as_mut_ptr().add(i);
        // One template for both strides; only the tap's input loads (and so the register of
        // outputs 4-7) differ.
        macro_rules! row_step {
            ($($load:literal),+; $mla_hi:literal) => {
                asm!(
                    ".fpu neon",
                    "vdup.32 q8, {b}",
                    "vmov q9, q8",
                    "2:",
                    "mov {kx}, {k}",
                    "mov {p}, {row}",
                    "3:",
                    $($load,)+
                    "vld1.32 {{d4[], d5[]}}, [{wp}]!",
                    "sub {p}, {p}, #28",
                    "vmla.f32 q8, q0, q2",
                    $mla_hi,
                    "subs {kx}, {kx}, #1",
                    "bne 3b",
                    "add {row}, {row}, {pitch}",
                    "subs {ky}, {ky}, #1",
                    "bne 2b",
                    "vst1.32 {{d16-d19}}, [{o}]",
                    b = in(reg) bias.to_bits(),
                    k = in(reg) K,
                    ky = inout(reg) K => _,
                    kx = out(reg) _,
                    p = out(reg) _,
                    row = inout(reg) xp => _,
                    wp = inout(reg) wts.as_ptr() => _,
                    pitch = in(reg) w * 4,
                    o = in(reg) op,
                    out("d0") _, out("d1") _, out("d2") _, out("d3") _, out("d4") _,
                    out("d5") _, out("d6") _, out("d7") _, out("d8") _, out("d9") _,
                    out("d16") _, out("d17") _, out("d18") _, out("d19") _,
                    options(nostack),
                )
            };
        }
        if S == 1 {
            // 8 consecutive inputs: outputs 0-3 in q0, 4-7 in q1
            row_step!("vld1.32 {{d0-d3}}, [{p}]!"; "vmla.f32 q9, q1, q2");
        } else {
            // even lanes of 16 inputs: outputs 0-3 in q0, 4-7 in q3
            row_step!("vld2.32 {{d0-d3}}, [{p}]!", "vld2.32 {{d6-d9}}, [{p}]"; "vmla.f32 q9, q3, q2");
        }
        i += 8;
    }
    if i < n {
        dw_kxk_scalar::<K, S>(x, w, iy0, ix0 + i * S, wts, bias, &mut out[i..]);
    }
}

/// The flat phase-plane kernels (x86 SIMD).
#[cfg(any(target_arch = "x86", target_arch = "x86_64"))]
// AVX-512 intrinsics are stable since 1.89, above the crate's MSRV (the Arm toolchain's 1.85)
#[allow(clippy::incompatible_msrv)]
mod flat {
    use super::{DwGeom, DwRow};
    #[cfg(target_arch = "x86")]
    use std::arch::x86::*;
    #[cfg(target_arch = "x86_64")]
    use std::arch::x86_64::*;

    /// Per-thread buffers, reused across planes and runs.
    #[derive(Default)]
    struct FlatBufs {
        /// the padded plane's `sh * sw` stride phases, `[phase][hq][wq]`, then zero slack
        phases: Vec<f32>,
        /// the flat outputs, `[oh][wq]` (columns past `ow` dropped), rounded up to a chunk
        out: Vec<f32>,
        /// each tap's offset into `phases`, row-major over the kernel
        offs: Vec<usize>,
        /// the geometry `offs` is for: kh, kw, sh, sw, wq, hq * wq
        offs_key: [usize; 6],
    }

    thread_local! {
        static FLAT: std::cell::RefCell<FlatBufs> = std::cell::RefCell::new(FlatBufs::default());
    }

    /// Depthwise conv of consecutive planes by flat phase planes, any kernel size and stride
    /// (bias fused, activation left to the caller).
    ///
    /// The zero-padded plane is split into its `sh * sw` stride phases (phase `(py, px)` holds
    /// padded rows `py, py + sh, ..` and columns `px, px + sw, ..`), each `hq x wq`. Output
    /// `(oy, ox)` reads tap `(ky, kx)` at phase `(ky % sh, kx % sw)`, row `oy + ky / sh`,
    /// column `ox + kx / sw`: laid out flat with row pitch `wq`, output `j = oy * wq + ox`
    /// reads `j + offset(tap)` for every tap. So all output rows run as one stream of chunks
    /// with the accumulators in registers; the `wq - ow` columns past each row's end are
    /// computed and dropped (a 7x7 map with a 5x5 kernel: 77 flat outputs for 49 real ones,
    /// instead of 7 scalar rows of 7).
    pub(super) fn dw_flat_planes(
        x: &[f32],
        y: &mut [f32],
        wts: &[f32],
        bias: &[f32],
        g: &DwGeom,
        row: DwRow,
    ) {
        FLAT.with(|b| {
            let b = &mut *b.borrow_mut();
            // SAFETY: these variants are selected only when the plan's ISA (checked against
            // the host) has the features.
            unsafe {
                match row {
                    DwRow::FlatAvx512 => flat_avx512(x, y, wts, bias, g, b),
                    _ => flat_avx2(x, y, wts, bias, g, b),
                }
            }
        })
    }

    #[target_feature(enable = "avx512f,avx2,fma")]
    unsafe fn flat_avx512(
        x: &[f32],
        y: &mut [f32],
        wts: &[f32],
        bias: &[f32],
        g: &DwGeom,
        b: &mut FlatBufs,
    ) {
        flat_planes::<Avx512>(x, y, wts, bias, g, b)
    }

    #[target_feature(enable = "avx2,fma")]
    unsafe fn flat_avx2(
        x: &[f32],
        y: &mut [f32],
        wts: &[f32],
        bias: &[f32],
        g: &DwGeom,
        b: &mut FlatBufs,
    ) {
        flat_planes::<Avx2>(x, y, wts, bias, g, b)
    }

    /// One ISA's vector operations, and the copies of the flat kernel. Safety (all): the
    /// pointers must have the lengths in bounds, and the host must run the ISA.
    trait FlatIsa {
        type V: Copy;
        /// f32 lanes per vector
        const LANES: usize;
        /// vectors per chunk in the body of a plane (accumulators: twice that, see [`chunk`])
        const MAX_N: usize;
        unsafe fn splat(v: f32) -> Self::V;
        unsafe fn load(p: *const f32) -> Self::V;
        unsafe fn store(p: *mut f32, v: Self::V);
        /// `a * b + c`
        unsafe fn fma(a: Self::V, b: Self::V, c: Self::V) -> Self::V;
        unsafe fn add(a: Self::V, b: Self::V) -> Self::V;
        /// Copy `n` floats (inline: the rows of small maps are 7 or 14 wide, and a `memcpy`
        /// call per row cost more than the copy).
        unsafe fn copy(src: *const f32, dst: *mut f32, n: usize);
        /// Zero `n` floats (inline, as `copy`).
        unsafe fn zero(dst: *mut f32, n: usize);
        /// `dst[i] = src[2 * i]` for `i < n`, reading no further than `src + avail`.
        unsafe fn copy_even(src: *const f32, avail: usize, dst: *mut f32, n: usize);
    }

    /// `N` vectors of flat outputs from `src` into `dst`: `bias + sum over taps t of wts[t] *
    /// src[offs[t] + l]`. Even and odd taps go to two sets of accumulators (added at the end),
    /// so even a one-vector chunk has two independent FMA chains.
    #[inline(always)]
    unsafe fn chunk<I: FlatIsa, const N: usize>(
        src: *const f32,
        offs: &[usize],
        wts: &[f32],
        bias: f32,
        dst: *mut f32,
    ) {
        let l = I::LANES;
        let mut a = [I::splat(bias); N];
        let mut b = [I::splat(0.0); N];
        let taps = offs.len().min(wts.len());
        let (offs, wts) = (offs.as_ptr(), wts.as_ptr());
        let mut t = 0;
        while t + 2 <= taps {
            let (p, w) = (src.add(*offs.add(t)), I::splat(*wts.add(t)));
            let (q, v) = (src.add(*offs.add(t + 1)), I::splat(*wts.add(t + 1)));
            for (i, (a, b)) in a.iter_mut().zip(b.iter_mut()).enumerate() {
                *a = I::fma(I::load(p.add(i * l)), w, *a);
                *b = I::fma(I::load(q.add(i * l)), v, *b);
            }
            t += 2;
        }
        if t < taps {
            let (p, w) = (src.add(*offs.add(t)), I::splat(*wts.add(t)));
            for (i, a) in a.iter_mut().enumerate() {
                *a = I::fma(I::load(p.add(i * l)), w, *a);
            }
        }
        for (i, (a, b)) in a.iter().zip(&b).enumerate() {
            I::store(dst.add(i * l), I::add(*a, *b));
        }
    }

    /// [`chunk`] for `n` (1..=8) vectors.
    #[inline(always)]
    unsafe fn chunk_n<I: FlatIsa>(
        n: usize,
        src: *const f32,
        offs: &[usize],
        wts: &[f32],
        bias: f32,
        dst: *mut f32,
    ) {
        match n {
            1 => chunk::<I, 1>(src, offs, wts, bias, dst),
            2 => chunk::<I, 2>(src, offs, wts, bias, dst),
            3 => chunk::<I, 3>(src, offs, wts, bias, dst),
            4 => chunk::<I, 4>(src, offs, wts, bias, dst),
            5 => chunk::<I, 5>(src, offs, wts, bias, dst),
            6 => chunk::<I, 6>(src, offs, wts, bias, dst),
            7 => chunk::<I, 7>(src, offs, wts, bias, dst),
            _ => chunk::<I, 8>(src, offs, wts, bias, dst),
        }
    }

    struct Avx512;
    struct Avx2;

    impl FlatIsa for Avx512 {
        type V = __m512;
        const LANES: usize = 16;
        const MAX_N: usize = 8;
        #[inline(always)]
        unsafe fn splat(v: f32) -> __m512 {
            _mm512_set1_ps(v)
        }
        #[inline(always)]
        unsafe fn load(p: *const f32) -> __m512 {
            _mm512_loadu_ps(p)
        }
        #[inline(always)]
        unsafe fn store(p: *mut f32, v: __m512) {
            _mm512_storeu_ps(p, v)
        }
        #[inline(always)]
        unsafe fn fma(a: __m512, b: __m512, c: __m512) -> __m512 {
            _mm512_fmadd_ps(a, b, c)
        }
        #[inline(always)]
        unsafe fn add(a: __m512, b: __m512) -> __m512 {
            _mm512_add_ps(a, b)
        }

        #[inline(always)]
        unsafe fn copy(src: *const f32, dst: *mut f32, n: usize) {
            let mut i = 0;
            while i + 16 <= n {
                _mm512_storeu_ps(dst.add(i), _mm512_loadu_ps(src.add(i)));
                i += 16;
            }
            if i < n {
                let m: __mmask16 = (1 << (n - i)) - 1;
                _mm512_mask_storeu_ps(dst.add(i), m, _mm512_maskz_loadu_ps(m, src.add(i)));
            }
        }

        #[inline(always)]
        unsafe fn zero(dst: *mut f32, n: usize) {
            let mut i = 0;
            while i + 16 <= n {
                _mm512_storeu_ps(dst.add(i), _mm512_setzero_ps());
                i += 16;
            }
            if i < n {
                let m: __mmask16 = (1 << (n - i)) - 1;
                _mm512_mask_storeu_ps(dst.add(i), m, _mm512_setzero_ps());
            }
        }

        #[inline(always)]
        unsafe fn copy_even(src: *const f32, avail: usize, dst: *mut f32, n: usize) {
            let even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
            let mut i = 0;
            while i + 16 <= n && 2 * i + 32 <= avail {
                let (lo, hi) = (
                    _mm512_loadu_ps(src.add(2 * i)),
                    _mm512_loadu_ps(src.add(2 * i + 16)),
                );
                _mm512_storeu_ps(dst.add(i), _mm512_permutex2var_ps(lo, even, hi));
                i += 16;
            }
            for i in i..n {
                *dst.add(i) = *src.add(2 * i);
            }
        }
    }

    /// The first `n` (< 8) lanes on, for `maskload` / `maskstore`.
    #[inline(always)]
    unsafe fn lanes_avx2(n: usize) -> __m256i {
        _mm256_cmpgt_epi32(
            _mm256_set1_epi32(n as i32),
            _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7),
        )
    }

    impl FlatIsa for Avx2 {
        type V = __m256;
        const LANES: usize = 8;
        const MAX_N: usize = 4;
        #[inline(always)]
        unsafe fn splat(v: f32) -> __m256 {
            _mm256_set1_ps(v)
        }
        #[inline(always)]
        unsafe fn load(p: *const f32) -> __m256 {
            _mm256_loadu_ps(p)
        }
        #[inline(always)]
        unsafe fn store(p: *mut f32, v: __m256) {
            _mm256_storeu_ps(p, v)
        }
        #[inline(always)]
        unsafe fn fma(a: __m256, b: __m256, c: __m256) -> __m256 {
            _mm256_fmadd_ps(a, b, c)
        }
        #[inline(always)]
        unsafe fn add(a: __m256, b: __m256) -> __m256 {
            _mm256_add_ps(a, b)
        }

        #[inline(always)]
        unsafe fn copy(src: *const f32, dst: *mut f32, n: usize) {
            let mut i = 0;
            while i + 8 <= n {
                _mm256_storeu_ps(dst.add(i), _mm256_loadu_ps(src.add(i)));
                i += 8;
            }
            if i < n {
                let m = lanes_avx2(n - i);
                _mm256_maskstore_ps(dst.add(i), m, _mm256_maskload_ps(src.add(i), m));
            }
        }

        #[inline(always)]
        unsafe fn zero(dst: *mut f32, n: usize) {
            let mut i = 0;
            while i + 8 <= n {
                _mm256_storeu_ps(dst.add(i), _mm256_setzero_ps());
                i += 8;
            }
            if i < n {
                _mm256_maskstore_ps(dst.add(i), lanes_avx2(n - i), _mm256_setzero_ps());
            }
        }

        #[inline(always)]
        unsafe fn copy_even(src: *const f32, avail: usize, dst: *mut f32, n: usize) {
            let mut i = 0;
            while i + 8 <= n && 2 * i + 16 <= avail {
                let (a, b) = (
                    _mm256_loadu_ps(src.add(2 * i)),
                    _mm256_loadu_ps(src.add(2 * i + 8)),
                );
                // [a0 a2 b0 b2 | a4 a6 b4 b6], then the 64-bit pairs in order
                let s = _mm256_castps_pd(_mm256_shuffle_ps::<0x88>(a, b));
                _mm256_storeu_ps(
                    dst.add(i),
                    _mm256_castpd_ps(_mm256_permute4x64_pd::<0xd8>(s)),
                );
                i += 8;
            }
            for i in i..n {
                *dst.add(i) = *src.add(2 * i);
            }
        }
    }

    /// [`dw_flat_planes`]' body with the ISA's pieces.
    #[inline(always)]
    unsafe fn flat_planes<I: FlatIsa>(
        x: &[f32],
        y: &mut [f32],
        wts: &[f32],
        bias: &[f32],
        g: &DwGeom,
        b: &mut FlatBufs,
    ) {
        let (sh, sw) = (g.sh, g.sw);
        let (hp, wp) = ((g.oh - 1) * sh + g.kh, (g.ow - 1) * sw + g.kw);
        let (hq, wq) = (hp.div_ceil(sh), wp.div_ceil(sw));
        let plane = hq * wq;
        let l = I::LANES;
        let flat_r = (g.oh * wq).div_ceil(l) * l;
        let (hw, ohw, kk) = (g.h * g.w, g.oh * g.ow, g.kh * g.kw);
        // offsets once per geometry (four divisions a tap cost more than a 7x7 plane's
        // arithmetic)
        let key = [g.kh, g.kw, sh, sw, wq, plane];
        if b.offs_key != key {
            b.offs.clear();
            for ky in 0..g.kh {
                for kx in 0..g.kw {
                    let phase = (ky % sh) * sw + kx % sw;
                    b.offs.push(phase * plane + (ky / sh) * wq + kx / sw);
                }
            }
            b.offs_key = key;
        }
        let planes = bias.len();
        assert!(
            x.len() >= planes * hw && y.len() >= planes * ohw && wts.len() >= planes * kk,
            "depthwise planes out of bounds"
        );
        // every read, of a real output or a dropped column, stays inside `phases`
        let max_off = b.offs.iter().copied().max().unwrap_or(0);
        let len = (sh * sw * plane).max(max_off + flat_r);
        if b.phases.len() < len {
            b.phases.resize(len, 0.0);
        }
        if b.out.len() < flat_r {
            b.out.resize(flat_r, 0.0);
        }
        let ph = b.phases.as_mut_ptr();
        // the slack past the phases is never written by `fill_phases`
        I::zero(ph.add(sh * sw * plane), len - sh * sw * plane);
        let (src, dst) = (b.phases.as_ptr(), b.out.as_mut_ptr());
        let offs = &b.offs[..];
        let big = I::MAX_N * l;
        for (p, &bias) in bias.iter().enumerate() {
            fill_phases::<I>(&x[p * hw..(p + 1) * hw], g, hq, wq, ph);
            let wts = &wts[p * kk..(p + 1) * kk];
            let mut j = 0;
            // SAFETY: `j + off + L <= flat_r + max_off <= phases.len()`, `j + L <= out.len()`.
            while j + big <= flat_r {
                chunk_n::<I>(I::MAX_N, src.add(j), offs, wts, bias, dst.add(j));
                j += big;
            }
            if j < flat_r {
                chunk_n::<I>((flat_r - j) / l, src.add(j), offs, wts, bias, dst.add(j));
            }
            let yp = y.as_mut_ptr().add(p * ohw);
            for oy in 0..g.oh {
                I::copy(dst.add(oy * wq), yp.add(oy * g.ow), g.ow);
            }
        }
    }

    /// Write the zero-padded plane's stride phases at `ph` (`sh * sw * hq * wq` floats): phase
    /// `(py, px)` row `r`, column `c` holds padded `(r * sh + py, c * sw + px)`, i.e. input
    /// `(r * sh + py - pt, c * sw + px - pl)` or 0.
    #[inline(always)]
    unsafe fn fill_phases<I: FlatIsa>(x: &[f32], g: &DwGeom, hq: usize, wq: usize, ph: *mut f32) {
        let (sh, sw) = (g.sh, g.sw);
        assert!(x.len() >= g.h * g.w, "depthwise input too short");
        for py in 0..sh {
            for px in 0..sw {
                let base = ph.add((py * sw + px) * hq * wq);
                // columns c whose input column c * sw + px - pl lies in 0..w
                let c0 = g.pl.saturating_sub(px).div_ceil(sw).min(wq);
                let c1 = (g.w + g.pl).saturating_sub(px).div_ceil(sw).clamp(c0, wq);
                for r in 0..hq {
                    let dst = base.add(r * wq);
                    let iy = (r * sh + py).wrapping_sub(g.pt);
                    if iy >= g.h || c1 == c0 {
                        I::zero(dst, wq);
                        continue;
                    }
                    I::zero(dst, c0);
                    I::zero(dst.add(c1), wq - c1);
                    let at = iy * g.w + c0 * sw + px - g.pl;
                    let (src, n) = (x.as_ptr().add(at), c1 - c0);
                    match sw {
                        1 => I::copy(src, dst.add(c0), n),
                        2 => I::copy_even(src, x.len() - at, dst.add(c0), n),
                        _ => {
                            for c in 0..n {
                                *dst.add(c0 + c) = *src.add(c * sw);
                            }
                        }
                    }
                }
            }
        }
    }
}
