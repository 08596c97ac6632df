//! f32 Add / Sub / Mul rows: `binary_f32_<form>_<isa>`, forms `vv` (two rows) and `vs` (a row
//! and a broadcast scalar, either side). The portable loops are the reference (they are what
//! `ops::elementwise` runs everywhere else: x86-64 and aarch64 compilers vectorise them); on
//! 32-bit Arm, where LLVM leaves f32 arithmetic scalar (NEON is not IEEE there: it flushes
//! subnormals), the rows run NEON assembly ([`armv7neon`]), equal to the portable ones except
//! where a subnormal is flushed to zero.

#[cfg(target_arch = "arm")]
mod armv7neon;

use super::Isa;

/// The operation of a row kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RowOp {
    /// `p + q`
    Add,
    /// `p - q`
    Sub,
    /// `p * q`
    Mul,
}

impl RowOp {
    /// `p op q` (the tests' reference).
    #[cfg(test)]
    fn apply(self, p: f32, q: f32) -> f32 {
        match self {
            RowOp::Add => p + q,
            RowOp::Sub => p - q,
            RowOp::Mul => p * q,
        }
    }
}

/// Elements per NEON step on 32-bit Arm.
#[cfg(target_arch = "arm")]
const STEP: usize = 8;

/// `y[i] = a[i] op b[i]` over the shortest of the three.
pub fn binary_f32_vv(isa: Isa, op: RowOp, a: &[f32], b: &[f32], y: &mut [f32]) {
    let n = a.len().min(b.len()).min(y.len());
    #[allow(unused_mut)]
    let mut done = 0;
    #[cfg(target_arch = "arm")]
    if isa == Isa::Neon && n >= STEP && Isa::Neon.supported() {
        done = n / STEP * STEP;
        // SAFETY: each slice holds `done` floats; NEON checked above.
        unsafe { armv7neon::binary_f32_vv(op, a.as_ptr(), b.as_ptr(), y.as_mut_ptr(), done) };
    }
    let _ = isa;
    let (a, b, y) = (&a[done..n], &b[done..n], &mut y[done..n]);
    // one loop per op (the op is matched outside it, so each one vectorises)
    match op {
        RowOp::Add => vv_portable(a, b, y, |p, q| p + q),
        RowOp::Sub => vv_portable(a, b, y, |p, q| p - q),
        RowOp::Mul => vv_portable(a, b, y, |p, q| p * q),
    }
}

#[inline(always)]
fn vv_portable(a: &[f32], b: &[f32], y: &mut [f32], f: impl Fn(f32, f32) -> f32) {
    for ((o, &p), &q) in y.iter_mut().zip(a).zip(b) {
        *o = f(p, q);
    }
}

/// `y[i] = a[i] op s`, or `s op a[i]` when `swap`, over the shorter of `a` and `y`.
pub fn binary_f32_vs(isa: Isa, op: RowOp, a: &[f32], s: f32, swap: bool, y: &mut [f32]) {
    let n = a.len().min(y.len());
    #[allow(unused_mut)]
    let mut done = 0;
    #[cfg(target_arch = "arm")]
    if isa == Isa::Neon && n >= STEP && Isa::Neon.supported() {
        done = n / STEP * STEP;
        // SAFETY: both slices hold `done` floats; NEON checked above.
        unsafe { armv7neon::binary_f32_vs(op, a.as_ptr(), s, swap, y.as_mut_ptr(), done) };
    }
    let _ = isa;
    let (a, y) = (&a[done..n], &mut y[done..n]);
    match (op, swap) {
        (RowOp::Add, _) => vs_portable(a, y, |p| p + s),
        (RowOp::Mul, _) => vs_portable(a, y, |p| p * s),
        (RowOp::Sub, false) => vs_portable(a, y, |p| p - s),
        (RowOp::Sub, true) => vs_portable(a, y, |p| s - p),
    }
}

#[inline(always)]
fn vs_portable(a: &[f32], y: &mut [f32], f: impl Fn(f32) -> f32) {
    for (o, &p) in y.iter_mut().zip(a) {
        *o = f(p);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every ISA the host runs against the portable loop, every op, odd lengths, both sides.
    #[test]
    fn rows_match_the_portable_loops() {
        let mut seed = 12345u32;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 17;
            seed ^= seed << 5;
            (seed as f32 / u32::MAX as f32 - 0.5) * 20.0
        };
        for n in [0usize, 1, 7, 8, 9, 16, 31, 100, 257] {
            let a: Vec<f32> = (0..n).map(|_| next()).collect();
            let b: Vec<f32> = (0..n).map(|_| next()).collect();
            let s = next();
            for op in [RowOp::Add, RowOp::Sub, RowOp::Mul] {
                for isa in [Isa::Scalar, Isa::Avx2, Isa::Avx512, Isa::Neon] {
                    if !isa.supported() {
                        continue;
                    }
                    let mut y = vec![f32::NAN; n];
                    binary_f32_vv(isa, op, &a, &b, &mut y);
                    for i in 0..n {
                        assert_eq!(y[i], op.apply(a[i], b[i]), "{isa:?} {op:?} vv n={n} [{i}]");
                    }
                    for swap in [false, true] {
                        binary_f32_vs(isa, op, &a, s, swap, &mut y);
                        for i in 0..n {
                            let want = if swap {
                                op.apply(s, a[i])
                            } else {
                                op.apply(a[i], s)
                            };
                            assert_eq!(y[i], want, "{isa:?} {op:?} vs swap={swap} n={n} [{i}]");
                        }
                    }
                }
            }
        }
    }
}
