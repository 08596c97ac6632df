//! `x = table[x]` over bytes, in place: fused activations (hard-swish, sigmoid) applied to a
//! conv's stored output while it is in L1, LUT ops, requantizing copies.
//!
//! `lut_u8_scalar` is the reference (one load per byte). `lut_u8_64_avx512vbmi` looks up 64
//! bytes with two `vpermi2b` (each a 128-byte table) and a blend on the index's top bit;
//! `lut_u8_16_neon` looks up 16 with one `TBL` and three `TBX` over the four 64-byte quarters.

use super::Level;

#[cfg(target_arch = "x86_64")]
mod avx512vbmi;
#[cfg(target_arch = "aarch64")]
mod neon;
mod scalar;
#[cfg(test)]
mod tests;

pub use scalar::lut_u8_scalar;

/// `row[i] = table[row[i]]` for `len` bytes.
///
/// # Safety
/// `row` must be valid for `len` bytes; the host must run the kernel's instruction set.
pub type LutUkernel = unsafe fn(table: &[u8; 256], row: *mut u8, len: usize);

/// A table-lookup kernel.
#[derive(Clone, Copy, Debug)]
pub struct LutKernel {
    /// `lut_u8_<bytes per step>_<isa>`
    pub name: &'static str,
    /// instruction-set level
    pub level: Level,
    /// whether the host has every extension it needs (beyond `level`)
    pub host: fn() -> bool,
    /// the kernel
    pub run: LutUkernel,
}

impl LutKernel {
    /// `row = table[row]` (a 256-entry table).
    ///
    /// # Safety
    /// `row` must be valid for `len` bytes.
    #[inline]
    pub unsafe fn apply(&self, table: &[u8], row: *mut u8, len: usize) {
        let table: &[u8; 256] = table.try_into().expect("256-entry table");
        (self.run)(table, row, len)
    }

    /// Whether the host runs it.
    pub fn supported(&self) -> bool {
        self.level.supported() && (self.host)()
    }
}

/// Every LUT kernel this build has, best first (the host may not run all of them).
#[allow(clippy::vec_init_then_push)] // pushes are per-architecture
pub fn registry() -> Vec<LutKernel> {
    #[allow(unused_mut)]
    let mut v = vec![];
    #[cfg(target_arch = "x86_64")]
    v.push(LutKernel {
        name: "lut_u8_64_avx512vbmi",
        level: Level::Avx512Vnni,
        host: || is_x86_feature_detected!("avx512vbmi"),
        run: avx512vbmi::lut_u8_64_avx512vbmi,
    });
    #[cfg(target_arch = "aarch64")]
    v.push(LutKernel {
        name: "lut_u8_16_neon",
        level: Level::Neon,
        host: || true,
        run: neon::lut_u8_16_neon,
    });
    v.push(LutKernel {
        name: "lut_u8_scalar",
        level: Level::Scalar,
        host: || true,
        run: lut_u8_scalar,
    });
    v
}

/// The best kernel at most `level` that the host runs.
pub fn select(level: Level) -> LutKernel {
    registry()
        .into_iter()
        .find(|k| k.level <= level && k.supported())
        .expect("the scalar kernel runs everywhere")
}
