//! Optimised compute kernels, selected at plan time. Each kernel family keeps its portable scalar
//! version beside the SIMD ones; the scalar reference for every family is in [`crate::ops`].
//!
//! Kernel names follow ncnn / XNNPACK: `<op>_<dtype>_<tile>_<isa>`, e.g. `dwconv_f32_3x3s1_neon`.

pub mod binary_f32;
pub mod conv_f32;
pub mod par;
pub mod qs8;
pub mod transpose;

/// A raw output pointer shared by parallel jobs that each write their own disjoint part of
/// one buffer (conv tiles, GridSample pixel blocks).
#[derive(Clone, Copy)]
pub(crate) struct SharedOut(pub *mut f32);
// SAFETY: users write only disjoint ranges through it (see each caller).
unsafe impl Send for SharedOut {}
unsafe impl Sync for SharedOut {}

impl SharedOut {
    /// The pointer `i` floats in (a method, so closures capture the Sync wrapper, not the field).
    pub fn at(self, i: usize) -> *mut f32 {
        self.0.wrapping_add(i)
    }
}

/// Instruction-set level a kernel is written for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Isa {
    /// portable Rust, no explicit SIMD
    Scalar,
    /// x86-64 AVX2 + FMA
    Avx2,
    /// x86-64 AVX-512F (implies AVX2 + FMA here)
    Avx512,
    /// Arm Advanced SIMD: aarch64, or armv7 NEON (whose kernels are inline assembly; kernels
    /// without an armv7 version take the portable paths there)
    Neon,
}

impl Isa {
    /// Lower-case name, as accepted by `SPECK_ISA`.
    pub fn name(self) -> &'static str {
        match self {
            Isa::Scalar => "scalar",
            Isa::Avx2 => "avx2",
            Isa::Avx512 => "avx512",
            Isa::Neon => "neon",
        }
    }

    /// Parse a `SPECK_ISA` value.
    pub fn parse(s: &str) -> Option<Isa> {
        match s.trim().to_ascii_lowercase().as_str() {
            "scalar" => Some(Isa::Scalar),
            "avx2" => Some(Isa::Avx2),
            "avx512" | "avx512f" => Some(Isa::Avx512),
            "neon" => Some(Isa::Neon),
            _ => None,
        }
    }

    /// Whether this host can execute code written for `self`.
    pub fn supported(self) -> bool {
        match self {
            Isa::Scalar => true,
            #[cfg(any(target_arch = "x86", target_arch = "x86_64"))]
            Isa::Avx2 => is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma"),
            #[cfg(any(target_arch = "x86", target_arch = "x86_64"))]
            Isa::Avx512 => Isa::Avx2.supported() && is_x86_feature_detected!("avx512f"),
            #[cfg(target_arch = "aarch64")]
            Isa::Neon => std::arch::is_aarch64_feature_detected!("neon"),
            #[cfg(target_arch = "arm")]
            Isa::Neon => armv7_has_neon(),
            #[allow(unreachable_patterns)]
            _ => false,
        }
    }

    /// `self` if the host supports it, else the best supported level below it.
    pub fn capped(self) -> Isa {
        match self {
            Isa::Avx512 if !Isa::Avx512.supported() => Isa::Avx2.capped(),
            Isa::Avx2 | Isa::Neon if !self.supported() => Isa::Scalar,
            other => other,
        }
    }
}

/// Whether this 32-bit Arm CPU has NEON, from the kernel's `AT_HWCAP` (`is_arm_feature_detected!`
/// is not stable Rust, and the armv7 build does not assume NEON at compile time: its kernels
/// are inline assembly behind this check).
/// Read once and cached, as `is_aarch64_feature_detected!` is: kernels ask per tile row.
#[cfg(target_arch = "arm")]
pub fn armv7_has_neon() -> bool {
    /// `HWCAP_NEON` in Linux's arch/arm/include/uapi/asm/hwcap.h
    const HWCAP_NEON: libc::c_ulong = 1 << 12;
    static NEON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    // SAFETY: getauxval only reads the process's auxiliary vector.
    *NEON.get_or_init(|| unsafe { libc::getauxval(libc::AT_HWCAP) & HWCAP_NEON != 0 })
}

/// Best instruction set of this host.
pub fn detected_isa() -> Isa {
    for isa in [Isa::Avx512, Isa::Avx2, Isa::Neon] {
        if isa.supported() {
            return isa;
        }
    }
    Isa::Scalar
}

/// Instruction set the kernels use: the host's best, capped by `SPECK_ISA=scalar|avx2|avx512|neon`
/// when set (a level the host lacks falls back to the best one below it; an unknown value is
/// ignored).
pub fn isa() -> Isa {
    let best = detected_isa();
    match std::env::var("SPECK_ISA")
        .ok()
        .as_deref()
        .and_then(Isa::parse)
    {
        None => best,
        Some(Isa::Scalar) => Isa::Scalar,
        // cap: never go above what the host has
        Some(Isa::Avx2) if best == Isa::Avx512 => Isa::Avx2,
        Some(req) => req.capped(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn isa_parse_and_cap() {
        for i in [Isa::Scalar, Isa::Avx2, Isa::Avx512, Isa::Neon] {
            assert_eq!(Isa::parse(i.name()), Some(i));
            assert!(i.capped().supported());
        }
        assert_eq!(Isa::parse("sse"), None);
        assert!(detected_isa().supported());
        assert!(isa().supported());
        assert_eq!(Isa::Scalar.capped(), Isa::Scalar);
    }
}
