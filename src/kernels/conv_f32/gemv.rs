//! Convolutions with a 1x1 output, as matrix-vector products: squeeze-excite's two FCs and
//! classifier Gemms (planned as 1x1 convs, see [`super::ConvF32::linear`]).
//!
//! These read each weight once per inference for one multiply-add, so they are bound by how
//! fast the weights stream in (MobileNetV3-L's classifier is 10 MB). Weights are packed
//! `[ceil(M/NB)][K][NB]`, so one block of [`NB`] output channels is one contiguous stream
//! that a microkernel walks once, and the whole matrix is one stream on one thread.
//!
//! Microkernels, `gemv_f32_16_<isa>`: `gemv_f32_16_avx2`, `gemv_f32_16_avx512`,
//! `gemv_f32_16_neon`, `gemv_f32_16_armv7neon`, each tested against the portable
//! `gemv_f32_16_scalar`.

use super::im2col::ColGeom;
use super::tiled::{pack_tile, pack_weights_blocked, NR};
use crate::kernels::{Isa, SharedOut};

/// Output channels per block.
pub(crate) const NB: usize = 16;

/// `acc[r] = sum_k w[k * NB + r] * x[k]`, `r < NB`, `k < kc`.
pub(crate) type GemvKernel = unsafe fn(usize, *const f32, *const f32, &mut [f32; NB]);

/// The microkernel for `isa` and the conv kernel's name.
pub(crate) fn microkernel(isa: Isa) -> (GemvKernel, &'static str) {
    match isa {
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 if Isa::Avx512.supported() => {
            (gemv_f32_16_avx512 as GemvKernel, "conv_f32_gemv16_avx512")
        }
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 | Isa::Avx2 if Isa::Avx2.supported() => {
            (gemv_f32_16_avx2 as GemvKernel, "conv_f32_gemv16_avx2")
        }
        #[cfg(target_arch = "aarch64")]
        Isa::Neon if Isa::Neon.supported() => {
            (gemv_f32_16_neon as GemvKernel, "conv_f32_gemv16_neon")
        }
        #[cfg(target_arch = "arm")]
        Isa::Neon if Isa::Neon.supported() => (
            gemv_f32_16_armv7neon as GemvKernel,
            "conv_f32_gemv16_armv7neon",
        ),
        _ => (gemv_f32_16_scalar as GemvKernel, "conv_f32_gemv16_scalar"),
    }
}

/// Weights `[m][k]` (row-major) packed as `[ceil(m/NB)][k][NB]`, rows past `m` zero.
pub(crate) fn pack_weights(w: &[f32], m: usize, k: usize) -> Vec<f32> {
    pack_weights_blocked(w, m, k, NB)
}

/// Portable microkernel (the `SPECK_ISA=scalar` path; the compiler vectorises its 16 lanes,
/// except on armv7, where LLVM keeps f32 scalar).
///
/// # Safety
/// `w` must be readable for `kc * NB` floats and `x` for `kc`.
pub(crate) unsafe fn gemv_f32_16_scalar(
    kc: usize,
    w: *const f32,
    x: *const f32,
    acc: &mut [f32; NB],
) {
    // SAFETY: lengths by the caller's contract.
    let (w, x) = unsafe {
        (
            std::slice::from_raw_parts(w, kc * NB),
            std::slice::from_raw_parts(x, kc),
        )
    };
    let mut a = [0.0f32; NB];
    for (wk, &xk) in w.chunks_exact(NB).zip(x) {
        for (v, &wr) in a.iter_mut().zip(wk) {
            *v += wr * xk;
        }
    }
    *acc = a;
}

/// AVX2+FMA microkernel: two 8-lane halves, k in pairs (4 accumulator chains).
///
/// # Safety
/// As [`gemv_f32_16_scalar`]; the CPU must support AVX2 and FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
pub(crate) unsafe fn gemv_f32_16_avx2(
    kc: usize,
    w: *const f32,
    x: *const f32,
    acc: &mut [f32; NB],
) {
    use std::arch::x86_64::*;
    let mut c = [_mm256_setzero_ps(); 4];
    let mut k = 0;
    while k + 2 <= kc {
        let (x0, x1) = (
            _mm256_broadcast_ss(&*x.add(k)),
            _mm256_broadcast_ss(&*x.add(k + 1)),
        );
        let wk = w.add(k * NB);
        c[0] = _mm256_fmadd_ps(_mm256_loadu_ps(wk), x0, c[0]);
        c[1] = _mm256_fmadd_ps(_mm256_loadu_ps(wk.add(8)), x0, c[1]);
        c[2] = _mm256_fmadd_ps(_mm256_loadu_ps(wk.add(16)), x1, c[2]);
        c[3] = _mm256_fmadd_ps(_mm256_loadu_ps(wk.add(24)), x1, c[3]);
        k += 2;
    }
    if k < kc {
        let x0 = _mm256_broadcast_ss(&*x.add(k));
        let wk = w.add(k * NB);
        c[0] = _mm256_fmadd_ps(_mm256_loadu_ps(wk), x0, c[0]);
        c[1] = _mm256_fmadd_ps(_mm256_loadu_ps(wk.add(8)), x0, c[1]);
    }
    _mm256_storeu_ps(acc.as_mut_ptr(), _mm256_add_ps(c[0], c[2]));
    _mm256_storeu_ps(acc.as_mut_ptr().add(8), _mm256_add_ps(c[1], c[3]));
}

/// AVX-512 microkernel: one 16-lane vector per k, k in fours (4 accumulator chains).
///
/// # Safety
/// As [`gemv_f32_16_scalar`]; the CPU must support AVX-512F.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
// AVX-512 intrinsics are stable since 1.89, above the crate's MSRV (the Arm toolchain's 1.85).
#[allow(clippy::incompatible_msrv)]
pub(crate) unsafe fn gemv_f32_16_avx512(
    kc: usize,
    w: *const f32,
    x: *const f32,
    acc: &mut [f32; NB],
) {
    use std::arch::x86_64::*;
    let mut c = [_mm512_setzero_ps(); 4];
    let mut k = 0;
    while k + 4 <= kc {
        let wk = w.add(k * NB);
        for (j, cj) in c.iter_mut().enumerate() {
            let xj = _mm512_set1_ps(*x.add(k + j));
            *cj = _mm512_fmadd_ps(_mm512_loadu_ps(wk.add(j * NB)), xj, *cj);
        }
        k += 4;
    }
    while k < kc {
        let xk = _mm512_set1_ps(*x.add(k));
        c[0] = _mm512_fmadd_ps(_mm512_loadu_ps(w.add(k * NB)), xk, c[0]);
        k += 1;
    }
    let s = _mm512_add_ps(_mm512_add_ps(c[0], c[1]), _mm512_add_ps(c[2], c[3]));
    _mm512_storeu_ps(acc.as_mut_ptr(), s);
}

/// NEON microkernel: four 4-lane quarters, even and odd k in two sets of accumulators (8
/// chains); four k a step with their inputs in one vector, used by lane (a scalar load and
/// its pointer step per k had made 19 instructions of every 8 `FMLA`s), then pairs and a
/// last single k.
///
/// # Safety
/// As [`gemv_f32_16_scalar`]; NEON is part of aarch64.
#[cfg(target_arch = "aarch64")]
pub(crate) unsafe fn gemv_f32_16_neon(
    kc: usize,
    w: *const f32,
    x: *const f32,
    acc: &mut [f32; NB],
) {
    use std::arch::aarch64::*;
    /// `c += wk * lane L of xv`, per quarter
    #[inline(always)]
    unsafe fn fma_lane<const L: i32>(c: &mut [float32x4_t; 4], wk: float32x4x4_t, xv: float32x4_t) {
        c[0] = vfmaq_laneq_f32::<L>(c[0], wk.0, xv);
        c[1] = vfmaq_laneq_f32::<L>(c[1], wk.1, xv);
        c[2] = vfmaq_laneq_f32::<L>(c[2], wk.2, xv);
        c[3] = vfmaq_laneq_f32::<L>(c[3], wk.3, xv);
    }
    let mut c = [[vdupq_n_f32(0.0); 4]; 2];
    let mut k = 0;
    while k + 4 <= kc {
        let xv = vld1q_f32(x.add(k));
        let [c0, c1] = &mut c;
        fma_lane::<0>(c0, vld1q_f32_x4(w.add(k * NB)), xv);
        fma_lane::<1>(c1, vld1q_f32_x4(w.add((k + 1) * NB)), xv);
        fma_lane::<2>(c0, vld1q_f32_x4(w.add((k + 2) * NB)), xv);
        fma_lane::<3>(c1, vld1q_f32_x4(w.add((k + 3) * NB)), xv);
        k += 4;
    }
    while k + 2 <= kc {
        for (j, cj) in c.iter_mut().enumerate() {
            let wk = vld1q_f32_x4(w.add((k + j) * NB));
            let xk = *x.add(k + j);
            cj[0] = vfmaq_n_f32(cj[0], wk.0, xk);
            cj[1] = vfmaq_n_f32(cj[1], wk.1, xk);
            cj[2] = vfmaq_n_f32(cj[2], wk.2, xk);
            cj[3] = vfmaq_n_f32(cj[3], wk.3, xk);
        }
        k += 2;
    }
    if k < kc {
        let wk = vld1q_f32_x4(w.add(k * NB));
        let xk = *x.add(k);
        c[0][0] = vfmaq_n_f32(c[0][0], wk.0, xk);
        c[0][1] = vfmaq_n_f32(c[0][1], wk.1, xk);
        c[0][2] = vfmaq_n_f32(c[0][2], wk.2, xk);
        c[0][3] = vfmaq_n_f32(c[0][3], wk.3, xk);
    }
    let p = acc.as_mut_ptr();
    vst1q_f32(p, vaddq_f32(c[0][0], c[1][0]));
    vst1q_f32(p.add(4), vaddq_f32(c[0][1], c[1][1]));
    vst1q_f32(p.add(8), vaddq_f32(c[0][2], c[1][2]));
    vst1q_f32(p.add(12), vaddq_f32(c[0][3], c[1][3]));
}

/// 32-bit Arm NEON microkernel, inline assembly (see `tiled::gemm_f32_8x32_armv7neon` for
/// why): per k two `VLD1`s of 8 weights, the input value into a lane, four `VMLA.F32` by
/// scalar.
///
/// # Safety
/// As [`gemv_f32_16_scalar`]; the CPU has NEON.
#[cfg(target_arch = "arm")]
pub(crate) unsafe fn gemv_f32_16_armv7neon(
    kc: usize,
    w: *const f32,
    x: *const f32,
    acc: &mut [f32; NB],
) {
    use std::arch::asm;
    asm!(
        ".fpu neon",
        "vmov.i32 q8, #0",
        "vmov.i32 q9, #0",
        "vmov.i32 q10, #0",
        "vmov.i32 q11, #0",
        "cmp {k}, #0",
        "beq 3f",
        "2:",
        "vld1.32 {{d0-d3}}, [{w}]!",
        "vld1.32 {{d4-d7}}, [{w}]!",
        "vld1.32 {{d8[0]}}, [{x}]!",
        "vmla.f32 q8, q0, d8[0]",
        "vmla.f32 q9, q1, d8[0]",
        "vmla.f32 q10, q2, d8[0]",
        "vmla.f32 q11, q3, d8[0]",
        "subs {k}, {k}, #1",
        "bne 2b",
        "3:",
        "vst1.32 {{d16-d19}}, [{a}]!",
        "vst1.32 {{d20-d23}}, [{a}]",
        k = inout(reg) kc => _,
        w = inout(reg) w => _,
        x = inout(reg) x => _,
        a = inout(reg) acc.as_mut_ptr() => _,
        out("d0") _, out("d1") _, out("d2") _, out("d3") _, out("d4") _, out("d5") _,
        out("d6") _, out("d7") _, out("d8") _, out("d16") _, out("d17") _, out("d18") _,
        out("d19") _, out("d20") _, out("d21") _, out("d22") _, out("d23") _,
        options(nostack),
    );
}

/// Everything [`run_gemv`] needs besides the data.
pub(crate) struct GemvConv<'a> {
    pub geom: ColGeom,
    pub group: usize,
    /// output channels in total
    pub m: usize,
    /// per group, [`pack_weights`] of its `m / group` rows
    pub packed: &'a [f32],
    pub bias: &'a [f32],
    pub kernel: GemvKernel,
}

/// Runs a conv with a 1x1 output on `n` images: `x` `[n][group * cg][h][w]` into `y`
/// `[n][m]`, blocks of [`NB`] channels in parallel on rayon's current pool.
pub(crate) fn run_gemv<F: Fn(f32) -> f32 + Sync>(
    t: &GemvConv,
    n: usize,
    x: &[f32],
    y: &mut [f32],
    act: &F,
) {
    let g = &t.geom;
    debug_assert_eq!(g.oh * g.ow, 1);
    let kc = g.cg * g.kh * g.kw;
    let mg = t.m / t.group;
    let blocks = mg.div_ceil(NB);
    let (hw, c) = (g.h * g.w, g.cg * t.group);
    assert!(
        x.len() >= n * c * hw && y.len() >= n * t.m && t.packed.len() >= t.group * blocks * kc * NB
    );
    // A 1x1 conv of a 1x1 map reads its column straight from `x`; anything else (padding,
    // larger kernels) packs each image and group's column (its im2col) once.
    let direct = hw == 1 && g.kh * g.kw == 1;
    let cols = if direct {
        vec![]
    } else {
        let mut cols = vec![0.0f32; n * t.group * kc];
        let mut panel = vec![0.0f32; kc * NR];
        for (j, col) in cols.chunks_exact_mut(kc.max(1)).enumerate() {
            let (ni, gi) = (j / t.group, j % t.group);
            let xg = &x[(ni * c + gi * g.cg) * hw..(ni * c + (gi + 1) * g.cg) * hw];
            pack_tile(xg, g, 0, 1, &mut panel);
            for (v, row) in col.iter_mut().zip(panel.chunks_exact(NR)) {
                *v = row[0];
            }
        }
        cols
    };
    let src = if direct { x } else { &cols[..] };
    let out = SharedOut(y.as_mut_ptr());
    let jobs = n * t.group * blocks;
    // ~64 K multiply-adds (256 KB of weights) per rayon task
    crate::kernels::par::for_each(jobs, (1 << 16) / (kc * NB).max(1) + 1, &|job| {
        let (ni, rest) = (job / (t.group * blocks), job % (t.group * blocks));
        let (gi, b) = (rest / blocks, rest % blocks);
        let col = &src[(ni * t.group + gi) * kc..][..kc];
        let wb = &t.packed[(gi * blocks + b) * kc * NB..][..kc * NB];
        let mut acc = [0.0f32; NB];
        // SAFETY: `wb` holds kc * NB floats and `col` kc.
        unsafe { (t.kernel)(kc, wb.as_ptr(), col.as_ptr(), &mut acc) };
        for (r, &v) in acc.iter().enumerate().take(NB.min(mg - b * NB)) {
            let ch = gi * mg + b * NB + r;
            // SAFETY: channel `ch` of image `ni` (one value): this job's alone.
            unsafe { *out.at(ni * t.m + ch) = act(v + t.bias[ch]) };
        }
    });
}
