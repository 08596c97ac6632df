//! The real `src/kernels/qs8/gemm` module (kernels, packing, epilogue) under a minimal shim of
//! `kernels::qs8`: the `Level` probe as in `src/kernels/qs8/mod.rs` and the tests' `Rng`.
#![allow(missing_docs, dead_code)]

/// Same order and probe as `speck::kernels::qs8::Level`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Level {
    Scalar,
    Neon,
    NeonDot,
    Avx2,
    Avx512Vnni,
}

impl Level {
    pub fn supported(self) -> bool {
        match self {
            Level::Scalar => true,
            #[cfg(target_arch = "aarch64")]
            Level::Neon => std::arch::is_aarch64_feature_detected!("neon"),
            #[cfg(target_arch = "aarch64")]
            Level::NeonDot => std::arch::is_aarch64_feature_detected!("dotprod"),
            #[allow(unreachable_patterns)]
            _ => false,
        }
    }
}

#[path = "../../../src/kernels/qs8/gemm/mod.rs"]
pub mod gemm;

/// xorshift32, as `speck::kernels::qs8::tests::Rng`.
pub struct Rng(pub u32);

impl Rng {
    pub fn next(&mut self) -> u32 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 17;
        self.0 ^= self.0 << 5;
        self.0
    }
    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}
