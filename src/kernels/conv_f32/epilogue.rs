//! The float convs' epilogue, `dst = act(src + bias)`, with a vector form for the activations
//! that have one on ISAs where the compiler does not vectorise the closure.
//!
//! On x86-64 the closure loop is vectorised by LLVM. On armv7 LLVM leaves f32 arithmetic
//! scalar (VFP: NEON flushes subnormals, so it is not used for IEEE f32), so this is 12 or
//! more instructions per value for HardSwish; `bias_act_armv7neon` does 8 values in about 16
//! (inline assembly). On aarch64 LLVM vectorises it but divides by 6 (`FDIV`) and clamps by
//! compare and select; `bias_act_neon` multiplies and uses `FMAX` / `FMIN`. Both multiply
//! HardSwish's input by 1/6 where the closure divides by 6: at most an ulp apart.

use crate::ops::Activation;

/// What the epilogue closure computes, when the caller knows it (a conv's own fused
/// activation); `Closure` means only the closure itself says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum EpiHint {
    /// an arbitrary function
    Closure,
    /// `v`
    Identity,
    /// `max(v, 0)`
    Relu,
    /// `v * clamp(v / 6 + 0.5, 0, 1)`
    HardSwish,
    /// `tanh_f32(v)` (LDA-AQU's offset convs); a vector form on armv7 only
    Tanh,
}

impl EpiHint {
    /// The hint for a conv's own activation.
    pub(crate) fn of(a: Option<Activation>) -> EpiHint {
        match a {
            None => EpiHint::Identity,
            Some(Activation::Relu) => EpiHint::Relu,
            Some(Activation::HardSwish) => EpiHint::HardSwish,
            Some(Activation::Tanh) => EpiHint::Tanh,
            Some(_) => EpiHint::Closure,
        }
    }

    /// Whether the kernels with their own epilogue (x86-64: [`act_avx512`]; aarch64: the
    /// tiled microkernel's, [`act_fused`] on a partial block) compute it; for the others they
    /// store the sums and the closure runs after.
    #[cfg_attr(
        not(any(target_arch = "x86_64", target_arch = "aarch64")),
        allow(dead_code)
    )]
    pub(crate) fn has_vector_form(self) -> bool {
        matches!(self, EpiHint::Identity | EpiHint::Relu | EpiHint::HardSwish)
    }

    /// Whether [`bias_act_neon`] / [`bias_act_block_neon`] take this activation (aarch64):
    /// Relu and HardSwish, which LLVM's vectorised closure computes with compare-and-select
    /// clamps and an `FDIV`; Identity, Tanh and other closures keep the closure loop.
    #[cfg(target_arch = "aarch64")]
    pub(crate) fn has_neon_epilogue(self) -> bool {
        matches!(self, EpiHint::Relu | EpiHint::HardSwish)
    }
}

/// One value of the fused epilogues' arithmetic for a hint with a vector form: HardSwish as
/// `v * min(1, max(0, v * 1/6 + 0.5))` with a fused multiply-add (the vector kernels' form, an
/// ulp from the closure's `v / 6`); Relu as `max(v, 0)` keeping a NaN.
#[cfg(target_arch = "aarch64")]
#[inline]
pub(crate) fn act_fused(v: f32, hint: EpiHint) -> f32 {
    match hint {
        EpiHint::Relu => {
            if v < 0.0 {
                0.0
            } else {
                v
            }
        }
        EpiHint::HardSwish => v * v.mul_add(1.0 / 6.0, 0.5).max(0.0).min(1.0),
        EpiHint::Identity | EpiHint::Closure | EpiHint::Tanh => v,
    }
}

/// [`act_fused`] on 4 lanes (intrinsics; the tiled kernel's assembly has its own copy).
#[cfg(target_arch = "aarch64")]
#[inline(always)]
pub(crate) fn act_neon(
    v: std::arch::aarch64::float32x4_t,
    hint: EpiHint,
) -> std::arch::aarch64::float32x4_t {
    use std::arch::aarch64::*;
    // SAFETY: NEON is part of aarch64.
    unsafe {
        match hint {
            EpiHint::Relu => vmaxq_f32(v, vdupq_n_f32(0.0)),
            EpiHint::HardSwish => {
                let t = vfmaq_f32(vdupq_n_f32(0.5), v, vdupq_n_f32(1.0 / 6.0));
                vmulq_f32(
                    v,
                    vminq_f32(vmaxq_f32(t, vdupq_n_f32(0.0)), vdupq_n_f32(1.0)),
                )
            }
            EpiHint::Identity | EpiHint::Closure | EpiHint::Tanh => v,
        }
    }
}

/// `dst[i] = act(src[i] + bias)` for `i < dst.len()` (`src` at least as long), with the
/// vector form of `hint` where this build has one.
#[inline]
pub(crate) fn bias_act<F: Fn(f32) -> f32>(
    dst: &mut [f32],
    src: &[f32],
    bias: f32,
    act: &F,
    hint: EpiHint,
) {
    let n = dst.len();
    assert!(
        src.len() >= n,
        "epilogue source shorter than its destination"
    );
    #[allow(unused_mut)]
    let mut done = 0;
    #[cfg(target_arch = "arm")]
    if hint != EpiHint::Closure && n >= 8 && crate::kernels::Isa::Neon.supported() {
        done = n / 8 * 8;
        // SAFETY: both slices hold `done` floats; NEON checked above.
        unsafe { bias_act_armv7neon(dst.as_mut_ptr(), src.as_ptr(), done, bias, hint) };
    }
    #[cfg(target_arch = "aarch64")]
    if hint.has_neon_epilogue() {
        // SAFETY: both slices hold `n` floats.
        unsafe { bias_act_neon(dst.as_mut_ptr(), src.as_ptr(), n, bias, hint) };
        return;
    }
    let _ = hint;
    for (d, &v) in dst[done..].iter_mut().zip(&src[done..n]) {
        *d = act(v + bias);
    }
}

/// [`bias_act`] in place (`y[i] = act(y[i])`).
#[inline]
pub(crate) fn act_in_place<F: Fn(f32) -> f32>(y: &mut [f32], act: &F, hint: EpiHint) {
    if hint == EpiHint::Identity {
        return;
    }
    #[cfg(target_arch = "arm")]
    if hint != EpiHint::Closure && y.len() >= 8 && crate::kernels::Isa::Neon.supported() {
        let done = y.len() / 8 * 8;
        // SAFETY: `y` holds `done` floats; NEON checked above; in place is allowed (each
        // step loads its 8 values before storing them).
        unsafe { bias_act_armv7neon(y.as_mut_ptr(), y.as_ptr(), done, 0.0, hint) };
        for v in &mut y[done..] {
            *v = act(*v);
        }
        return;
    }
    #[cfg(target_arch = "aarch64")]
    if hint.has_neon_epilogue() {
        // SAFETY: `y` holds its floats; in place is allowed (each step loads its values
        // before storing them). Adding -0.0 leaves every value as it is (-0.0 included).
        unsafe { bias_act_neon(y.as_mut_ptr(), y.as_ptr(), y.len(), -0.0, hint) };
        return;
    }
    for v in y.iter_mut() {
        *v = act(*v);
    }
}

/// `dst[i] = act(src[i] + bias)` for `i < n` with [`act_neon`] (the last `n % 4` with
/// [`act_fused`]). LLVM vectorises the closure too, but HardSwish's `v / 6` becomes `FDIV`
/// (many cycles on every Cortex-A; an ulp from the multiply by 1/6 used here, as in the tiled
/// kernel's assembly) and Relu's and the clamp's compares a compare-and-select pair each
/// where `FMAX` / `FMIN` do. Inlined where `hint` is a constant.
///
/// # Safety
/// `src` readable and `dst` writable for `n` floats (they may be the same).
#[cfg(target_arch = "aarch64")]
#[inline(always)]
unsafe fn bias_act_row_neon(dst: *mut f32, src: *const f32, n: usize, bias: f32, hint: EpiHint) {
    use std::arch::aarch64::*;
    let b = vdupq_n_f32(bias);
    let (mut s, mut d) = (src, dst);
    // 16 values a step (4 vectors: the loop's pointer steps and branch spread over more)
    for _ in 0..n / 16 {
        let v = vld1q_f32_x4(s);
        let v = float32x4x4_t(
            act_neon(vaddq_f32(v.0, b), hint),
            act_neon(vaddq_f32(v.1, b), hint),
            act_neon(vaddq_f32(v.2, b), hint),
            act_neon(vaddq_f32(v.3, b), hint),
        );
        vst1q_f32_x4(d, v);
        s = s.add(16);
        d = d.add(16);
    }
    for _ in 0..n % 16 / 4 {
        vst1q_f32(d, act_neon(vaddq_f32(vld1q_f32(s), b), hint));
        s = s.add(4);
        d = d.add(4);
    }
    for i in 0..n % 4 {
        *d.add(i) = act_fused(*s.add(i) + bias, hint);
    }
}

/// [`bias_act_row_neon`] with its loop compiled once per activation. Its own function so that
/// the closure loops of the callers compile as they would without it (inlined, it had LLVM
/// rebuild Tanh's constants inside the tiled store's loop).
///
/// # Safety
/// As [`bias_act_row_neon`]; `hint.has_neon_epilogue()`.
#[cfg(target_arch = "aarch64")]
#[inline(never)]
unsafe fn bias_act_neon(dst: *mut f32, src: *const f32, n: usize, bias: f32, hint: EpiHint) {
    match hint {
        EpiHint::Relu => bias_act_row_neon(dst, src, n, bias, EpiHint::Relu),
        _ => bias_act_row_neon(dst, src, n, bias, EpiHint::HardSwish),
    }
}

/// The rows of a tiled conv's block: `dst + r * rs` gets `act(acc[r][j] + bias[r])` for
/// `r < bias.len()`, `j < nr`, one call per block.
///
/// # Safety
/// `dst + r * rs` writable for `nr` floats for each row; `nr <= N`, `bias.len() <= acc.len()`;
/// `hint.has_neon_epilogue()`.
#[cfg(target_arch = "aarch64")]
#[inline(never)]
pub(crate) unsafe fn bias_act_block_neon<const N: usize>(
    dst: *mut f32,
    rs: usize,
    nr: usize,
    acc: &[[f32; N]],
    bias: &[f32],
    hint: EpiHint,
) {
    assert!(nr <= N && bias.len() <= acc.len());
    macro_rules! rows {
        ($hint:expr) => {
            for (r, (ar, &b)) in acc.iter().zip(bias).enumerate() {
                bias_act_row_neon(dst.add(r * rs), ar.as_ptr(), nr, b, $hint);
            }
        };
    }
    match hint {
        EpiHint::Relu => rows!(EpiHint::Relu),
        _ => rows!(EpiHint::HardSwish),
    }
}

/// `dst[i] += skip[i]` over the shorter of the two: a fused residual Add on rows of a block
/// just stored (still in L1).
#[inline]
pub(crate) fn add_rows(dst: &mut [f32], skip: &[f32]) {
    for (d, &s) in dst.iter_mut().zip(skip) {
        *d += s;
    }
}

/// `y += skip` (as long as `y`) in parallel jobs of 16K floats: the residual Add of the
/// algorithms that do not add it in their own epilogue.
pub(crate) fn add_skip(y: &mut [f32], skip: &[f32]) {
    const JOB: usize = 1 << 14;
    assert!(
        skip.len() >= y.len(),
        "residual input shorter than the output"
    );
    let n = y.len();
    let out = crate::kernels::SharedOut(y.as_mut_ptr());
    crate::kernels::par::for_each(n.div_ceil(JOB), 1, &|j| {
        let (a, b) = (j * JOB, n.min((j + 1) * JOB));
        // SAFETY: floats a..b of `y`: this job's alone.
        let dst = unsafe { std::slice::from_raw_parts_mut(out.at(a), b - a) };
        add_rows(dst, &skip[a..b]);
    });
}

/// `act(v)` on 16 lanes for a hint with a vector form (`Closure` returns `v` unchanged: the
/// caller applies the closure itself). HardSwish multiplies by 1/6 where the closure divides
/// by 6 (an ulp apart); Relu is `max(0, v)` with `v` second, so a NaN passes through as in the
/// closure.
///
/// # Safety
/// The CPU must support AVX-512F.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[inline]
#[allow(clippy::incompatible_msrv)]
pub(crate) unsafe fn act_avx512(
    v: std::arch::x86_64::__m512,
    hint: EpiHint,
) -> std::arch::x86_64::__m512 {
    use std::arch::x86_64::*;
    match hint {
        EpiHint::Relu => _mm512_max_ps(_mm512_setzero_ps(), v),
        EpiHint::HardSwish => {
            let t = _mm512_fmadd_ps(v, _mm512_set1_ps(1.0 / 6.0), _mm512_set1_ps(0.5));
            let t = _mm512_min_ps(_mm512_set1_ps(1.0), _mm512_max_ps(_mm512_setzero_ps(), t));
            _mm512_mul_ps(v, t)
        }
        EpiHint::Identity | EpiHint::Closure | EpiHint::Tanh => v,
    }
}

/// `dst[i] = act(src[i] + bias)` for `n` (a multiple of 8) values, `act` by `hint`.
///
/// # Safety
/// `src` readable and `dst` writable for `n` floats (they may be the same); `n % 8 == 0`,
/// `n > 0`; `hint` is not `Closure`; the CPU has NEON. Clobbers are named as D registers (see
/// `kernels::qs8::gemm::armv7neon`).
#[cfg(target_arch = "arm")]
unsafe fn bias_act_armv7neon(dst: *mut f32, src: *const f32, n: usize, bias: f32, hint: EpiHint) {
    use std::arch::asm;
    debug_assert!(n > 0 && n % 8 == 0);
    let steps = n / 8;
    // One loop for every activation: `q0, q1 = src + bias`, then the activation's own lines
    // (constants set up once before the loop), then the store.
    macro_rules! bias_act_loop {
        ([$($setup:literal),*], [$($act:literal),*] $(, ($($ops:tt)*))?) => {
            asm!(
                ".fpu neon",
                "vdup.32 q8, {b}",
                $($setup,)*
                "2:",
                "vld1.32 {{d0-d3}}, [{s}]!",
                "vadd.f32 q0, q0, q8",
                "vadd.f32 q1, q1, q8",
                $($act,)*
                "vst1.32 {{d0-d3}}, [{d}]!",
                "subs {k}, {k}, #1",
                "bne 2b",
                b = in(reg) bias.to_bits(),
                s = inout(reg) src => _,
                d = inout(reg) dst => _,
                k = inout(reg) steps => _,
                $($($ops)*)?
                out("d0") _, out("d1") _, out("d2") _, out("d3") _, out("d4") _, out("d5") _,
                out("d6") _, out("d7") _, out("d16") _, out("d17") _, out("d18") _,
                out("d19") _, out("d20") _, out("d21") _, out("d22") _, out("d23") _,
                out("d24") _, out("d25") _,
                options(nostack),
            )
        };
    }
    match hint {
        EpiHint::Identity => bias_act_loop!([], []),
        EpiHint::Relu => bias_act_loop!(
            ["vmov.i32 q9, #0"],
            ["vmax.f32 q0, q0, q9", "vmax.f32 q1, q1, q9"]
        ),
        EpiHint::HardSwish => bias_act_loop!(
            [
                "vdup.32 q9, {sixth}",
                "vmov.f32 q10, #0.5",
                "vmov.f32 q11, #1.0",
                "vmov.i32 q12, #0"
            ],
            [
                "vmov q2, q10",
                "vmov q3, q10",
                "vmla.f32 q2, q0, q9",
                "vmla.f32 q3, q1, q9",
                "vmax.f32 q2, q2, q12",
                "vmax.f32 q3, q3, q12",
                "vmin.f32 q2, q2, q11",
                "vmin.f32 q3, q3, q11",
                "vmul.f32 q0, q0, q2",
                "vmul.f32 q1, q1, q3"
            ],
            (sixth = in(reg) (1.0f32 / 6.0).to_bits(),)
        ),
        EpiHint::Tanh => tanh_armv7neon(dst, src, n, bias),
        EpiHint::Closure => unreachable!("no vector form for an arbitrary closure"),
    }
}

/// `dst = tanh_f32(src + bias)` for `n` (a multiple of 4) values, four per step: the same
/// operations as `ops::tanh_f32` in its order (`VMLA.F32` rounds the product before adding,
/// as the portable `a * b + c`; the division is VFP `VDIV.F32` on the lanes, NEON having
/// none), so equal but for subnormals, which NEON flushes.
///
/// # Safety
/// As [`bias_act_armv7neon`].
#[cfg(target_arch = "arm")]
unsafe fn tanh_armv7neon(dst: *mut f32, src: *const f32, n: usize, bias: f32) {
    use std::arch::asm;
    const LIMIT: f32 = crate::ops::TANH_LIMIT;
    let [a0, a1, a2, a3, a4, a5, a6] = crate::ops::TANH_P;
    let [b0, b1, b2, b3] = crate::ops::TANH_Q;
    // d16..d22: the scalars the loop duplicates, in its order
    let k: [f32; 14] = [
        a6, a5, a4, a3, a2, a1, a0, b3, b2, b1, b0, 4e-4, LIMIT, -LIMIT,
    ];
    asm!(
        ".fpu neon",
        "vld1.32 {{d16-d19}}, [{k}]!",
        "vld1.32 {{d20-d22}}, [{k}]",
        "vdup.32 q15, {b}",
        "vdup.32 q12, d21[1]",
        "vdup.32 q14, d22[0]",
        "vdup.32 q13, d22[1]",
        "3:",
        "vld1.32 {{d0-d1}}, [{s}]!",
        "vadd.f32 q0, q0, q15",
        // xc = clamp(x), x2 = xc * xc
        "vmax.f32 q1, q0, q13",
        "vmin.f32 q1, q1, q14",
        "vmul.f32 q2, q1, q1",
        // p = ((((((a6 x2 + a5) x2 + a4) x2 + a3) x2 + a2) x2 + a1) x2 + a0
        "vdup.32 q3, d16[0]",
        "vdup.32 q4, d16[1]",
        "vmla.f32 q4, q3, q2",
        "vdup.32 q3, d17[0]",
        "vmla.f32 q3, q4, q2",
        "vdup.32 q4, d17[1]",
        "vmla.f32 q4, q3, q2",
        "vdup.32 q3, d18[0]",
        "vmla.f32 q3, q4, q2",
        "vdup.32 q4, d18[1]",
        "vmla.f32 q4, q3, q2",
        "vdup.32 q3, d19[0]",
        "vmla.f32 q3, q4, q2",
        // q = ((b3 x2 + b2) x2 + b1) x2 + b0
        "vdup.32 q4, d19[1]",
        "vdup.32 q5, d20[0]",
        "vmla.f32 q5, q4, q2",
        "vdup.32 q4, d20[1]",
        "vmla.f32 q4, q5, q2",
        "vdup.32 q5, d21[0]",
        "vmla.f32 q5, q4, q2",
        // r = xc * p / q
        "vmul.f32 q3, q1, q3",
        "vdiv.f32 s12, s12, s20",
        "vdiv.f32 s13, s13, s21",
        "vdiv.f32 s14, s14, s22",
        "vdiv.f32 s15, s15, s23",
        // x itself where |x| < 4e-4
        "vabs.f32 q4, q0",
        "vcgt.f32 q4, q12, q4",
        "vbsl q4, q0, q3",
        "vst1.32 {{d8-d9}}, [{d}]!",
        "subs {c}, {c}, #1",
        "bne 3b",
        k = inout(reg) k.as_ptr() => _,
        b = in(reg) bias.to_bits(),
        s = inout(reg) src => _,
        d = inout(reg) dst => _,
        c = inout(reg) n / 4 => _,
        out("d0") _, out("d1") _, out("d2") _, out("d3") _, out("d4") _, out("d5") _,
        out("d6") _, out("d7") _, out("d8") _, out("d9") _, out("d10") _, out("d11") _,
        out("d16") _, out("d17") _, out("d18") _, out("d19") _, out("d20") _,
        out("d21") _, out("d22") _, out("d24") _, out("d25") _, out("d26") _,
        out("d27") _, out("d28") _, out("d29") _, out("d30") _, out("d31") _,
        options(nostack),
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::apply_activation;

    /// Every hint's path (the armv7 assembly where the host runs it) against the closure, on
    /// lengths around the 8-value step, with values across the activations' kinks.
    #[test]
    fn bias_act_matches_the_closure() {
        for (hint, a) in [
            (EpiHint::Identity, None),
            (EpiHint::Relu, Some(Activation::Relu)),
            (EpiHint::HardSwish, Some(Activation::HardSwish)),
            (EpiHint::Tanh, Some(Activation::Tanh)),
        ] {
            assert_eq!(EpiHint::of(a), hint);
            let act = |v: f32| match a {
                Some(a) => apply_activation(a, v),
                None => v,
            };
            for n in [0, 1, 7, 8, 9, 16, 31, 32, 45] {
                let src: Vec<f32> = (0..n).map(|i| (i as f32 - 20.0) * 0.37).collect();
                for bias in [0.0, -1.25, 2.5] {
                    let mut got = vec![f32::NAN; n];
                    bias_act(&mut got, &src, bias, &act, hint);
                    let mut inplace: Vec<f32> = src.iter().map(|v| v + bias).collect();
                    act_in_place(&mut inplace, &act, hint);
                    for i in 0..n {
                        let want = act(src[i] + bias);
                        let tol = 1e-6 * (1.0 + want.abs());
                        assert!((got[i] - want).abs() <= tol, "{hint:?} n {n} [{i}]");
                        assert!(
                            (inplace[i] - want).abs() <= tol,
                            "{hint:?} in place n {n} [{i}]"
                        );
                    }
                }
            }
        }
        assert_eq!(EpiHint::of(Some(Activation::Sigmoid)), EpiHint::Closure);
    }
}
