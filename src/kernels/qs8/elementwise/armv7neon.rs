//! 32-bit Arm NEON builds of the element-wise row kernels (Quantize, Add, Mul and the
//! per-channel rows), inline assembly (Rust's 32-bit Arm NEON intrinsics are not stable), 8
//! values per step and bit-identical to the portable ones.
//!
//! NEON on armv7 has no division, and `Q(x) = round(x / scale)` needs the true quotient to
//! round ties as the portable code does. The quotient comes from VFP's `VDIV.F32` on the
//! single-precision views (`s0-s7`) of the NEON registers holding the 8 values, so nothing is
//! moved between the register files; everything else is NEON: dequantization (`VSUBL.U8` of
//! the zero point, widen, convert, times the scale), the `+`/`*`, the clamp to +-512 (a
//! `VCGE` + `VBSL` select, so a NaN lands on the low bound as with Rust's `max`), the rounding
//! (adding 1.5 * 2^23 leaves the rounded integer in the low mantissa bits: subtracting the
//! constant's bit pattern as integers gives it, ties to even), then narrowing, `+ zp` and the
//! saturating narrow to 0..255.
//!
//! NEON flushes subnormal operands and results to zero where VFP and the portable code keep
//! them. Dequantized operands are whole multiples of a normal scale, so that only matters for
//! a Mul whose product falls below 2^-126, which takes scales below about 1e-19 (no
//! calibrated model has them).

use super::QType;
use std::arch::asm;

/// Values per step.
const W: usize = 8;

/// The zero point as the byte `VSUBL.U8` subtracts, when it is one (a stored-domain zero point
/// always is; anything else takes the portable path).
fn zp_byte(q: QType) -> Option<u32> {
    u8::try_from(q.zero_point).ok().map(u32::from)
}

/// The shared tail: `q0:q1` (8 f32, `s0-s7`) divided by `s28`, clamped, rounded, `+ q12`
/// (the output zero point, i16), saturated to bytes and stored to `{y}` (post-incremented).
/// Constants: `q8` = -512, `q9` = 512, `q10` = 1.5 * 2^23, `q11` = its bit pattern.
macro_rules! quantize8_and_store {
    () => {
        concat!(
            "vdiv.f32 s0, s0, s28\n",
            "vdiv.f32 s1, s1, s28\n",
            "vdiv.f32 s2, s2, s28\n",
            "vdiv.f32 s3, s3, s28\n",
            "vdiv.f32 s4, s4, s28\n",
            "vdiv.f32 s5, s5, s28\n",
            "vdiv.f32 s6, s6, s28\n",
            "vdiv.f32 s7, s7, s28\n",
            // max(v, -512) that maps NaN to -512: keep v only where v >= -512
            "vcge.f32 q2, q0, q8\n",
            "vcge.f32 q3, q1, q8\n",
            "vbsl q2, q0, q8\n",
            "vbsl q3, q1, q8\n",
            "vmin.f32 q2, q2, q9\n",
            "vmin.f32 q3, q3, q9\n",
            "vadd.f32 q2, q2, q10\n",
            "vadd.f32 q3, q3, q10\n",
            "vsub.i32 q2, q2, q11\n",
            "vsub.i32 q3, q3, q11\n",
            "vmovn.i32 d0, q2\n",
            "vmovn.i32 d1, q3\n",
            "vadd.i16 q0, q0, q12\n",
            "vqmovun.s16 d2, q0\n",
            "vst1.8 {{d2}}, [{y}]!\n",
        )
    };
}

/// Loads the tail's constants (`q8-q12`) from general registers.
macro_rules! tail_constants {
    () => {
        concat!(
            "vdup.32 q8, {lo}\n",
            "vdup.32 q9, {hi}\n",
            "vdup.32 q10, {magic}\n",
            "vdup.16 q12, {zo}\n",
            "vmov q11, q10\n",
        )
    };
}

/// The bit patterns of the tail's constants.
struct TailConsts {
    lo: u32,
    hi: u32,
    magic: u32,
}

const TAIL: TailConsts = TailConsts {
    lo: (-512.0f32).to_bits(),
    hi: 512.0f32.to_bits(),
    magic: 12_582_912.0f32.to_bits(),
};

/// `y[i] = Q(x[i])`; `false` (nothing written) when `q` needs the portable path.
///
/// # Safety
/// The CPU has NEON.
pub unsafe fn quantize_row(q: QType, x: &[f32], y: &mut [u8]) -> bool {
    let Some(zo) = zp_byte(q) else {
        return false;
    };
    let n = x.len().min(y.len());
    let steps = n / W;
    if steps > 0 {
        asm!(
            ".fpu neon",
            tail_constants!(),
            "1:",
            "vld1.32 {{d0-d3}}, [{x}]!",
            quantize8_and_store!(),
            "subs {cnt}, {cnt}, #1",
            "bne 1b",
            x = inout(reg) x.as_ptr() => _,
            y = inout(reg) y.as_mut_ptr() => _,
            cnt = inout(reg) steps => _,
            lo = in(reg) TAIL.lo,
            hi = in(reg) TAIL.hi,
            magic = in(reg) TAIL.magic,
            zo = in(reg) zo,
            in("s28") q.scale,
            out("d0") _, out("d1") _, out("d2") _, out("d3") _, out("d4") _, out("d5") _,
            out("d6") _, out("d7") _, out("d16") _, out("d17") _, out("d18") _, out("d19") _,
            out("d20") _, out("d21") _, out("d22") _, out("d23") _, out("d24") _, out("d25") _,
            options(nostack),
        );
    }
    for i in steps * W..n {
        y[i] = q.quantize(x[i]);
    }
    true
}

/// `y[i] = Q(DQ(a[i]) op DQ(b[i]))`, `op` `+` or (`mul`) `*`; `false` (nothing written) when a
/// quantization needs the portable path.
///
/// # Safety
/// The CPU has NEON.
pub unsafe fn binary_row(
    mul: bool,
    qa: QType,
    qb: QType,
    qo: QType,
    a: &[u8],
    b: &[u8],
    y: &mut [u8],
) -> bool {
    let n = a.len().min(b.len()).min(y.len());
    binary_ptr(mul, qa, qb, qo, a.as_ptr(), b.as_ptr(), y.as_mut_ptr(), n)
}

/// [`binary_row`] in place: `y[i] = Q(DQ_a(y[i]) op DQ_b(b[i]))` (a residual Add fused into a
/// conv); `false` (nothing written) when a quantization needs the portable path.
///
/// # Safety
/// The CPU has NEON.
pub unsafe fn binary_row_in_place(
    mul: bool,
    qa: QType,
    qb: QType,
    qo: QType,
    b: &[u8],
    y: &mut [u8],
) -> bool {
    let n = b.len().min(y.len());
    let y = y.as_mut_ptr();
    binary_ptr(mul, qa, qb, qo, y, b.as_ptr(), y, n)
}

/// [`binary_row`] on `n` values at raw pointers; `a` may be `y` (each step loads its 8 values
/// before it stores them).
#[allow(clippy::too_many_arguments)]
unsafe fn binary_ptr(
    mul: bool,
    qa: QType,
    qb: QType,
    qo: QType,
    a: *const u8,
    b: *const u8,
    y: *mut u8,
    n: usize,
) -> bool {
    let (Some(za), Some(zb), Some(zo)) = (zp_byte(qa), zp_byte(qb), zp_byte(qo)) else {
        return false;
    };
    let steps = n / W;
    macro_rules! run {
        ($op:literal) => {
            asm!(
                ".fpu neon",
                tail_constants!(),
                "vdup.8 d30, {za}",
                "vdup.8 d31, {zb}",
                "vdup.32 q13, {sa}",
                "vdup.32 q14, {sb}",
                "1:",
                "vld1.8 {{d8}}, [{a}]!",
                "vld1.8 {{d9}}, [{b}]!",
                "vsubl.u8 q5, d8, d30",
                "vsubl.u8 q6, d9, d31",
                "vmovl.s16 q0, d10",
                "vmovl.s16 q1, d11",
                "vmovl.s16 q2, d12",
                "vmovl.s16 q3, d13",
                "vcvt.f32.s32 q0, q0",
                "vcvt.f32.s32 q1, q1",
                "vcvt.f32.s32 q2, q2",
                "vcvt.f32.s32 q3, q3",
                "vmul.f32 q0, q0, q13",
                "vmul.f32 q1, q1, q13",
                "vmul.f32 q2, q2, q14",
                "vmul.f32 q3, q3, q14",
                $op,
                quantize8_and_store!(),
                "subs {cnt}, {cnt}, #1",
                "bne 1b",
                a = inout(reg) a => _,
                b = inout(reg) b => _,
                y = inout(reg) y => _,
                cnt = inout(reg) steps => _,
                lo = in(reg) TAIL.lo,
                hi = in(reg) TAIL.hi,
                magic = in(reg) TAIL.magic,
                zo = in(reg) zo,
                za = in(reg) za,
                zb = in(reg) zb,
                sa = in(reg) qa.scale.to_bits(),
                sb = in(reg) qb.scale.to_bits(),
                in("s28") qo.scale,
                out("d0") _, out("d1") _, out("d2") _, out("d3") _, out("d4") _, out("d5") _,
                out("d6") _, out("d7") _, out("d8") _, out("d9") _, out("d10") _,
                out("d11") _, out("d12") _, out("d13") _, out("d16") _, out("d17") _,
                out("d18") _, out("d19") _, out("d20") _, out("d21") _, out("d22") _,
                out("d23") _, out("d24") _, out("d25") _, out("d26") _, out("d27") _,
                out("d28") _, out("d29") _, out("d30") _, out("d31") _,
                options(nostack),
            )
        };
    }
    if steps > 0 {
        if mul {
            run!("vmul.f32 q0, q0, q2\nvmul.f32 q1, q1, q3");
        } else {
            run!("vadd.f32 q0, q0, q2\nvadd.f32 q1, q1, q3");
        }
    }
    for j in steps * W..n {
        let (x, z) = (qa.dequantize(*a.add(j)), qb.dequantize(*b.add(j)));
        *y.add(j) = qo.quantize(if mul { x * z } else { x + z });
    }
    true
}

/// Per-channel broadcast over NHWC pixels of `bt.len()` channels:
/// `y[p, c] = Q(DQ(a[p, c]) op bt[c])`; a pixel's first `C / 8 * 8` channels in NEON, the
/// rest portable. `false` (nothing written) when a quantization needs the portable path.
///
/// # Safety
/// The CPU has NEON.
pub unsafe fn channels_rows(
    mul: bool,
    qa: QType,
    qo: QType,
    bt: &[f32],
    a: &[u8],
    y: &mut [u8],
) -> bool {
    let (Some(za), Some(zo)) = (zp_byte(qa), zp_byte(qo)) else {
        return false;
    };
    let c = bt.len();
    if c == 0 {
        return true;
    }
    let steps = c / W;
    macro_rules! run {
        ($op:literal, $ap:expr, $yp:expr) => {
            asm!(
                ".fpu neon",
                tail_constants!(),
                "vdup.8 d30, {za}",
                "vdup.32 q13, {sa}",
                "1:",
                "vld1.8 {{d8}}, [{a}]!",
                "vld1.32 {{d4-d7}}, [{b}]!",
                "vsubl.u8 q5, d8, d30",
                "vmovl.s16 q0, d10",
                "vmovl.s16 q1, d11",
                "vcvt.f32.s32 q0, q0",
                "vcvt.f32.s32 q1, q1",
                "vmul.f32 q0, q0, q13",
                "vmul.f32 q1, q1, q13",
                $op,
                quantize8_and_store!(),
                "subs {cnt}, {cnt}, #1",
                "bne 1b",
                a = inout(reg) $ap => _,
                b = inout(reg) bt.as_ptr() => _,
                y = inout(reg) $yp => _,
                cnt = inout(reg) steps => _,
                lo = in(reg) TAIL.lo,
                hi = in(reg) TAIL.hi,
                magic = in(reg) TAIL.magic,
                zo = in(reg) zo,
                za = in(reg) za,
                sa = in(reg) qa.scale.to_bits(),
                in("s28") qo.scale,
                out("d0") _, out("d1") _, out("d2") _, out("d3") _, out("d4") _, out("d5") _,
                out("d6") _, out("d7") _, out("d8") _, out("d10") _, out("d11") _,
                out("d16") _, out("d17") _, out("d18") _, out("d19") _, out("d20") _,
                out("d21") _, out("d22") _, out("d23") _, out("d24") _, out("d25") _,
                out("d26") _, out("d27") _, out("d30") _,
                options(nostack),
            )
        };
    }
    for (yp, ap) in y.chunks_exact_mut(c).zip(a.chunks_exact(c)) {
        if steps > 0 {
            if mul {
                run!(
                    "vmul.f32 q0, q0, q2\nvmul.f32 q1, q1, q3",
                    ap.as_ptr(),
                    yp.as_mut_ptr()
                );
            } else {
                run!(
                    "vadd.f32 q0, q0, q2\nvadd.f32 q1, q1, q3",
                    ap.as_ptr(),
                    yp.as_mut_ptr()
                );
            }
        }
        for j in steps * W..c {
            let (x, z) = (qa.dequantize(ap[j]), bt[j]);
            yp[j] = qo.quantize(if mul { x * z } else { x + z });
        }
    }
    true
}
