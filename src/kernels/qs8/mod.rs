//! int8 kernels ("qs8": signed int8 weights, u8-stored activations with a zero point; see
//! `crate::ops::QOp` for the storage rules: bytes, NHWC for rank-4 tensors).
//!
//! Layout, one directory per kernel family, one file per ISA beside its scalar reference:
//! - [`gemm`]: `gemm_qs8_<MR>x16c4_<isa>` on prepacked c4 weights (1x1 and im2col convs);
//! - [`dwconv`]: `dwconv_qs8_kxk_<isa>`, any kernel size / stride / dilation;
//! - [`conv`]: per-conv planning (algorithm, packing, folded bias, multipliers);
//! - [`lut`]: `lut_u8_<bytes>_<isa>`, byte table lookups (fused activations);
//! - [`elementwise`]: Quantize / Dequantize, LUT activations, Add / Mul, Concat, global pool.
//!
//! **Requantization** is the float-multiplier form everywhere: `multiplier = s_x * s_w[c] /
//! s_y` in f32, `round_half_even(f32(acc) * multiplier) + zp`, clamped. It is ONNX Runtime's
//! `MlasRequantizeOutput` rounding; SIMD paths use `cvtps2dq` under the default round-to-
//! nearest-even mode, so every ISA gives the scalar result bit for bit. (Arm NEON has
//! `FCVTNS`, also nearest-even.)
//!
//! **ISA selection**: [`Level`] from [`crate::kernels::isa`] (so `SPECK_ISA=scalar|avx2|avx512`
//! caps it); `avx512` means the VNNI kernels when the host has VNNI. Each family's
//! `registry()` lists all its kernels; tests run every one the host supports against the
//! scalar reference and name the ones it cannot run.

#[cfg(target_arch = "aarch64")]
#[macro_use]
mod neon_asm;
pub mod conv;
pub mod dwconv;
pub mod elementwise;
pub mod gemm;
mod kernel;
pub mod lut;

pub use kernel::Int8Kernel;

/// Instruction-set level of an int8 kernel (ordered: a kernel runs when its level is at most
/// the selected one and the host supports it).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Level {
    /// portable Rust
    Scalar,
    /// Arm Advanced SIMD (SMLAL): aarch64, and armv7 NEON
    Neon,
    /// aarch64 dot product (SDOT)
    NeonDot,
    /// x86-64 AVX2
    Avx2,
    /// x86-64 AVX-512 F/BW/VL + VNNI
    Avx512Vnni,
}

impl Level {
    /// Whether the host runs this level.
    pub fn supported(self) -> bool {
        match self {
            Level::Scalar => true,
            #[cfg(target_arch = "x86_64")]
            Level::Avx2 => is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma"),
            #[cfg(target_arch = "x86_64")]
            Level::Avx512Vnni => {
                Level::Avx2.supported()
                    && is_x86_feature_detected!("avx512f")
                    && is_x86_feature_detected!("avx512bw")
                    && is_x86_feature_detected!("avx512vl")
                    && is_x86_feature_detected!("avx512vnni")
            }
            #[cfg(target_arch = "aarch64")]
            Level::Neon => std::arch::is_aarch64_feature_detected!("neon"),
            #[cfg(target_arch = "aarch64")]
            Level::NeonDot => std::arch::is_aarch64_feature_detected!("dotprod"),
            #[cfg(target_arch = "arm")]
            Level::Neon => super::armv7_has_neon(),
            #[allow(unreachable_patterns)]
            _ => false,
        }
    }

    /// The level for an ISA choice ([`crate::kernels::isa`] or an explicit one).
    pub fn from_isa(isa: super::Isa) -> Level {
        match isa {
            super::Isa::Scalar => Level::Scalar,
            super::Isa::Avx2 => Level::Avx2,
            super::Isa::Avx512 => Level::Avx512Vnni,
            super::Isa::Neon => Level::NeonDot,
        }
    }
}

#[cfg(test)]
mod tests;
