//! `binary_f32_{vv,vs}_armv7neon`: 8 floats per step, inline assembly (Rust's 32-bit Arm NEON
//! intrinsics are not stable).

use super::RowOp;
use std::arch::asm;

/// `y[i] = a[i] op b[i]` for `n` floats, `n` a multiple of 8.
///
/// # Safety
/// `a`, `b` and `y` hold `n` floats (`y` may be `a` or `b`: each step loads before it
/// stores); the CPU has NEON.
pub unsafe fn binary_f32_vv(op: RowOp, a: *const f32, b: *const f32, y: *mut f32, n: usize) {
    debug_assert!(n % 8 == 0);
    macro_rules! run {
        ($ins:literal) => {
            asm!(
                ".fpu neon",
                "1:",
                "vld1.32 {{d0-d3}}, [{a}]!",
                "vld1.32 {{d4-d7}}, [{b}]!",
                concat!($ins, " q0, q0, q2"),
                concat!($ins, " q1, q1, q3"),
                "vst1.32 {{d0-d3}}, [{y}]!",
                "subs {cnt}, {cnt}, #1",
                "bne 1b",
                a = inout(reg) a => _,
                b = inout(reg) b => _,
                y = inout(reg) y => _,
                cnt = inout(reg) n / 8 => _,
                out("d0") _, out("d1") _, out("d2") _, out("d3") _,
                out("d4") _, out("d5") _, out("d6") _, out("d7") _,
                options(nostack),
            )
        };
    }
    if n == 0 {
        return;
    }
    match op {
        RowOp::Add => run!("vadd.f32"),
        RowOp::Sub => run!("vsub.f32"),
        RowOp::Mul => run!("vmul.f32"),
    }
}

/// `y[i] = a[i] op s`, or `s op a[i]` when `swap`, for `n` floats, `n` a multiple of 8.
///
/// # Safety
/// `a` and `y` hold `n` floats (`y` may be `a`); the CPU has NEON.
pub unsafe fn binary_f32_vs(op: RowOp, a: *const f32, s: f32, swap: bool, y: *mut f32, n: usize) {
    debug_assert!(n % 8 == 0);
    macro_rules! run {
        ($lo:literal, $hi:literal) => {
            asm!(
                ".fpu neon",
                "vdup.32 q2, {s}",
                "1:",
                "vld1.32 {{d0-d3}}, [{a}]!",
                $lo,
                $hi,
                "vst1.32 {{d0-d3}}, [{y}]!",
                "subs {cnt}, {cnt}, #1",
                "bne 1b",
                a = inout(reg) a => _,
                y = inout(reg) y => _,
                s = in(reg) s.to_bits(),
                cnt = inout(reg) n / 8 => _,
                out("d0") _, out("d1") _, out("d2") _, out("d3") _, out("d4") _, out("d5") _,
                options(nostack),
            )
        };
    }
    if n == 0 {
        return;
    }
    match (op, swap) {
        (RowOp::Add, _) => run!("vadd.f32 q0, q0, q2", "vadd.f32 q1, q1, q2"),
        (RowOp::Mul, _) => run!("vmul.f32 q0, q0, q2", "vmul.f32 q1, q1, q2"),
        (RowOp::Sub, false) => run!("vsub.f32 q0, q0, q2", "vsub.f32 q1, q1, q2"),
        (RowOp::Sub, true) => run!("vsub.f32 q0, q2, q0", "vsub.f32 q1, q2, q1"),
    }
}
