//! Depthwise f32 convolution (group == C == M, dilation 1), one channel plane at a time.
//!
//! Padded planes are copied into a zero-bordered buffer first, so every output row runs a
//! branch-free row kernel with every tap in bounds.
//! Interior row kernels: `dwconv_f32_<k>x<k>s<s>_<isa>` (scalar for every 3x3 / 5x5 at stride
//! 1 and 2; AVX2 at stride 1; NEON at both) and `dwconv_f32_generic_scalar`.

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
    K3S1Avx2,
    K5S1Avx2,
    K3S1Neon,
    K3S2Neon,
    K5S1Neon,
    K5S2Neon,
}

impl DwRow {
    /// Pick the row kernel for a geometry and instruction set.
    pub fn select(g: &DwGeom, isa: super::super::Isa) -> DwRow {
        use super::super::Isa;
        let simd = matches!(isa, Isa::Avx2 | Isa::Avx512)
            && cfg!(any(target_arch = "x86", target_arch = "x86_64"));
        let neon = isa == Isa::Neon && cfg!(target_arch = "aarch64");
        if g.kh != g.kw || g.sh != g.sw {
            return DwRow::Generic;
        }
        if neon {
            match (g.kh, g.sh) {
                (3, 1) => return DwRow::K3S1Neon,
                (3, 2) => return DwRow::K3S2Neon,
                (5, 1) => return DwRow::K5S1Neon,
                (5, 2) => return DwRow::K5S2Neon,
                _ => {}
            }
        }
        match (g.kh, g.sh, simd) {
            (3, 1, true) => DwRow::K3S1Avx2,
            (5, 1, true) => DwRow::K5S1Avx2,
            (3, 1, false) => DwRow::K3S1,
            (5, 1, false) => DwRow::K5S1,
            (3, 2, _) => DwRow::K3S2,
            (5, 2, _) => DwRow::K5S2,
            _ => DwRow::Generic,
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
            DwRow::K3S1Avx2 => "dwconv_f32_3x3s1_avx2",
            DwRow::K5S1Avx2 => "dwconv_f32_5x5s1_avx2",
            DwRow::K3S1Neon => "dwconv_f32_3x3s1_neon",
            DwRow::K3S2Neon => "dwconv_f32_3x3s2_neon",
            DwRow::K5S1Neon => "dwconv_f32_5x5s1_neon",
            DwRow::K5S2Neon => "dwconv_f32_5x5s2_neon",
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
            #[cfg(any(target_arch = "x86", target_arch = "x86_64"))]
            // SAFETY: selected only when the plan's ISA (checked against the host) has AVX2+FMA.
            DwRow::K3S1Avx2 => unsafe { dwconv_f32_3x3s1_avx2(x, w, iy0, ix0, wts, bias, out) },
            #[cfg(any(target_arch = "x86", target_arch = "x86_64"))]
            // SAFETY: as above.
            DwRow::K5S1Avx2 => unsafe { dwconv_f32_5x5s1_avx2(x, w, iy0, ix0, wts, bias, out) },
            #[cfg(target_arch = "aarch64")]
            // SAFETY (these four): NEON is part of aarch64.
            DwRow::K3S1Neon => unsafe { dw_kxk_neon::<3, 1>(x, w, iy0, ix0, wts, bias, out) },
            #[cfg(target_arch = "aarch64")]
            DwRow::K3S2Neon => unsafe { dw_kxk_neon::<3, 2>(x, w, iy0, ix0, wts, bias, out) },
            #[cfg(target_arch = "aarch64")]
            DwRow::K5S1Neon => unsafe { dw_kxk_neon::<5, 1>(x, w, iy0, ix0, wts, bias, out) },
            #[cfg(target_arch = "aarch64")]
            DwRow::K5S2Neon => unsafe { dw_kxk_neon::<5, 2>(x, w, iy0, ix0, wts, bias, out) },
            // Selected only for their own architecture.
            #[allow(unreachable_patterns)]
            _ => dwconv_f32_generic_scalar(x, w, iy0, ix0, g.kh, g.kw, g.sw, wts, bias, out),
        }
    }
}

/// Depthwise convolution of one plane `x [h*w] -> y [oh*ow]`, bias and activation fused.
///
/// A padded conv first copies the plane into a zero-bordered buffer (as ncnn does), so every
/// output row runs the branch-free interior kernel: on small maps (7x7 with a 5x5 kernel)
/// most outputs are border outputs, and a per-tap bounds check there would dominate.
pub(crate) fn dwconv_f32_plane<F: Fn(f32) -> f32>(
    x: &[f32],
    y: &mut [f32],
    wts: &[f32],
    bias: f32,
    g: &DwGeom,
    row: DwRow,
    act: &F,
) {
    let (hp, wp) = ((g.oh - 1) * g.sh + g.kh, (g.ow - 1) * g.sw + g.kw);
    let padded = g.pt > 0 || g.pl > 0 || hp > g.h || wp > g.w;
    if !padded {
        dw_rows(x, y, wts, bias, g, row, act);
        return;
    }
    PAD.with(|buf| {
        let mut buf = buf.borrow_mut();
        buf.clear();
        buf.resize(hp * wp, 0.0);
        // Input rows/columns past the last window are never read: copy only what fits.
        for iy in 0..g.h.min(hp.saturating_sub(g.pt)) {
            let n = g.w.min(wp.saturating_sub(g.pl));
            let dst = (iy + g.pt) * wp + g.pl;
            buf[dst..dst + n].copy_from_slice(&x[iy * g.w..iy * g.w + n]);
        }
        let gp = DwGeom {
            h: hp,
            w: wp,
            pt: 0,
            pl: 0,
            ..*g
        };
        dw_rows(&buf, y, wts, bias, &gp, row, act);
    });
}

thread_local! {
    /// Per-thread padded-plane buffer, reused across planes and runs.
    static PAD: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// All output rows of an unpadded plane whose windows all lie inside `x`.
fn dw_rows<F: Fn(f32) -> f32>(
    x: &[f32],
    y: &mut [f32],
    wts: &[f32],
    bias: f32,
    g: &DwGeom,
    row: DwRow,
    act: &F,
) {
    for (oy, yr) in y.chunks_exact_mut(g.ow).enumerate().take(g.oh) {
        row.run(x, g, oy * g.sh, 0, wts, bias, yr);
    }
    activate_plane(&mut y[..g.oh * g.ow], act);
}

/// The activation over a whole plane at once: one vectorised loop instead of a short one per
/// row with a scalar remainder each (7- and 14-wide rows in MobileNetV3). Its own small
/// function so that `act` is inlined into the loop (inside `dw_rows` it was a call per value).
#[inline(never)]
fn activate_plane<F: Fn(f32) -> f32>(y: &mut [f32], act: &F) {
    for v in y.iter_mut() {
        *v = act(*v);
    }
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

/// KxK stride 1 interior row, AVX2+FMA: 16 then 8 outputs per step, scalar tail.
///
/// # Safety
/// The CPU must support AVX2 and FMA.
#[cfg(any(target_arch = "x86", target_arch = "x86_64"))]
#[target_feature(enable = "avx2,fma")]
unsafe fn dw_kxk_s1_avx2<const K: usize>(
    x: &[f32],
    w: usize,
    iy0: usize,
    ix0: usize,
    wts: &[f32],
    bias: f32,
    out: &mut [f32],
) {
    #[cfg(target_arch = "x86")]
    use std::arch::x86::*;
    #[cfg(target_arch = "x86_64")]
    use std::arch::x86_64::*;
    let n = out.len();
    if n == 0 {
        return;
    }
    // one bounds check for the whole row: the last tap of the last output is in `x`
    let last = (iy0 + K - 1) * w + ix0 + (n - 1) + K;
    assert!(
        last <= x.len() && wts.len() >= K * K,
        "dwconv avx2 row out of bounds"
    );
    let base = x.as_ptr().add(iy0 * w + ix0);
    let op = out.as_mut_ptr();
    let wv: [[__m256; K]; K] =
        std::array::from_fn(|ky| std::array::from_fn(|kx| _mm256_set1_ps(wts[ky * K + kx])));
    let vb = _mm256_set1_ps(bias);
    let mut i = 0;
    while i + 16 <= n {
        let mut a0 = vb;
        let mut a1 = vb;
        for (ky, wrow) in wv.iter().enumerate() {
            let rp = base.add(ky * w + i);
            for (kx, &wk) in wrow.iter().enumerate() {
                a0 = _mm256_fmadd_ps(_mm256_loadu_ps(rp.add(kx)), wk, a0);
                a1 = _mm256_fmadd_ps(_mm256_loadu_ps(rp.add(kx + 8)), wk, a1);
            }
        }
        _mm256_storeu_ps(op.add(i), a0);
        _mm256_storeu_ps(op.add(i + 8), a1);
        i += 16;
    }
    while i + 8 <= n {
        let mut a0 = vb;
        for (ky, wrow) in wv.iter().enumerate() {
            let rp = base.add(ky * w + i);
            for (kx, &wk) in wrow.iter().enumerate() {
                a0 = _mm256_fmadd_ps(_mm256_loadu_ps(rp.add(kx)), wk, a0);
            }
        }
        _mm256_storeu_ps(op.add(i), a0);
        i += 8;
    }
    while i < n {
        let mut acc = bias;
        for ky in 0..K {
            let rp = base.add(ky * w + i);
            for kx in 0..K {
                acc = (*rp.add(kx)).mul_add(wts[ky * K + kx], acc);
            }
        }
        *op.add(i) = acc;
        i += 1;
    }
}

/// 3x3 stride 1 interior row, AVX2+FMA.
///
/// # Safety
/// The CPU must support AVX2 and FMA.
#[cfg(any(target_arch = "x86", target_arch = "x86_64"))]
#[target_feature(enable = "avx2,fma")]
pub unsafe fn dwconv_f32_3x3s1_avx2(
    x: &[f32],
    w: usize,
    iy0: usize,
    ix0: usize,
    wts: &[f32],
    bias: f32,
    out: &mut [f32],
) {
    dw_kxk_s1_avx2::<3>(x, w, iy0, ix0, wts, bias, out)
}

/// 5x5 stride 1 interior row, AVX2+FMA.
///
/// # Safety
/// The CPU must support AVX2 and FMA.
#[cfg(any(target_arch = "x86", target_arch = "x86_64"))]
#[target_feature(enable = "avx2,fma")]
pub unsafe fn dwconv_f32_5x5s1_avx2(
    x: &[f32],
    w: usize,
    iy0: usize,
    ix0: usize,
    wts: &[f32],
    bias: f32,
    out: &mut [f32],
) {
    dw_kxk_s1_avx2::<5>(x, w, iy0, ix0, wts, bias, out)
}

/// KxK stride S interior row, NEON (kernels `dwconv_f32_<K>x<K>s<S>_neon`): the K*K taps sit
/// in the lanes of a few vectors (`FMLA` by element), stride 1 computes 8 outputs per step
/// from unaligned loads, stride 2 computes 4 from `LD2` de-interleaved pairs (even and odd
/// taps of a row in one load). A ragged end recomputes the row's last 4 outputs (7- and
/// 14-wide rows are common); rows under 4 outputs are scalar.
///
/// # Safety
/// NEON (every aarch64 CPU).
#[cfg(target_arch = "aarch64")]
#[target_feature(enable = "neon")]
unsafe fn dw_kxk_neon<const K: usize, const S: usize>(
    x: &[f32],
    w: usize,
    iy0: usize,
    ix0: usize,
    wts: &[f32],
    bias: f32,
    out: &mut [f32],
) {
    use std::arch::aarch64::*;
    let n = out.len();
    if n == 0 {
        return;
    }
    // one bounds check for the whole row: the last tap of the last output is in `x`
    let row0 = iy0 * w + ix0;
    let last = row0 + (K - 1) * w + (n - 1) * S + K;
    assert!(
        last <= x.len() && wts.len() >= K * K,
        "dwconv neon row out of bounds"
    );
    let base = x.as_ptr().add(row0);
    let op = out.as_mut_ptr();
    let mut wbuf = [0f32; 28];
    wbuf[..K * K].copy_from_slice(&wts[..K * K]);
    let wv: [float32x4_t; 7] = std::array::from_fn(|j| vld1q_f32(wbuf.as_ptr().add(4 * j)));
    // `acc + x * tap t` by lane (the match folds away once the tap loops are unrolled)
    let fma = |acc: float32x4_t, x: float32x4_t, t: usize| -> float32x4_t {
        let v = wv[t / 4];
        match t % 4 {
            0 => vfmaq_laneq_f32::<0>(acc, x, v),
            1 => vfmaq_laneq_f32::<1>(acc, x, v),
            2 => vfmaq_laneq_f32::<2>(acc, x, v),
            _ => vfmaq_laneq_f32::<3>(acc, x, v),
        }
    };
    let vb = vdupq_n_f32(bias);
    let mut i = 0;
    if S == 1 {
        while i + 8 <= n {
            let (mut a0, mut a1) = (vb, vb);
            for ky in 0..K {
                let rp = base.add(ky * w + i);
                for kx in 0..K {
                    a0 = fma(a0, vld1q_f32(rp.add(kx)), ky * K + kx);
                    a1 = fma(a1, vld1q_f32(rp.add(kx + 4)), ky * K + kx);
                }
            }
            vst1q_f32(op.add(i), a0);
            vst1q_f32(op.add(i + 4), a1);
            i += 8;
        }
        let four = |i: usize| {
            let mut a0 = vb;
            for ky in 0..K {
                let rp = base.add(ky * w + i);
                for kx in 0..K {
                    a0 = fma(a0, vld1q_f32(rp.add(kx)), ky * K + kx);
                }
            }
            a0
        };
        while i + 4 <= n {
            vst1q_f32(op.add(i), four(i));
            i += 4;
        }
        if i < n && n >= 4 {
            // ragged end: the last 4 outputs again (those before `i` get the same values)
            vst1q_f32(op.add(n - 4), four(n - 4));
            i = n;
        }
    } else {
        // `LD2` at tap kx reads 8 values, one past the window of the 4th output when kx is
        // the last (odd K): run while that stays inside `x`.
        let fits = |i: usize| row0 + (K - 1) * w + S * i + K + 6 < x.len();
        loop {
            if i + 4 > n {
                // ragged end: the last 4 outputs again (earlier ones get the same values)
                if i == n || n < 4 || !fits(n - 4) {
                    break;
                }
                i = n - 4;
            } else if !fits(i) {
                break;
            }
            let mut a0 = vb;
            for ky in 0..K {
                let rp = base.add(ky * w + S * i);
                let mut kx = 0;
                while kx < K {
                    let p = vld2q_f32(rp.add(kx));
                    a0 = fma(a0, p.0, ky * K + kx);
                    if kx + 1 < K {
                        a0 = fma(a0, p.1, ky * K + kx + 1);
                    }
                    kx += 2;
                }
            }
            vst1q_f32(op.add(i), a0);
            i += 4;
        }
    }
    dw_kxk_scalar::<K, S>(x, w, iy0, ix0 + i * S, wts, bias, &mut out[i..]);
}
