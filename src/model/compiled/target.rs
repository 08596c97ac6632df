//! Compile targets: the CPU a compiled model's prepacked data is laid out for, and the check
//! that this CPU can run it.

/// CPU architecture of a target.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Arch {
    /// x86-64
    X86_64,
    /// 64-bit Arm
    Aarch64,
    /// 32-bit Arm (armv7 hard-float)
    Arm,
}

impl Arch {
    /// The name `std::env::consts::ARCH` uses.
    pub fn name(self) -> &'static str {
        match self {
            Arch::X86_64 => "x86_64",
            Arch::Aarch64 => "aarch64",
            Arch::Arm => "arm",
        }
    }
}

/// A compile target: an architecture plus the CPU features the file's kernels need.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Target {
    /// canonical name, as stored in the file header
    pub name: &'static str,
    /// required architecture (None: any)
    pub arch: Option<Arch>,
    /// required CPU features, as `is_*_feature_detected!` names them
    pub features: &'static [&'static str],
}

/// Every target, canonical names first.
const TARGETS: &[Target] = &[
    Target {
        name: "generic",
        arch: None,
        features: &[],
    },
    Target {
        name: "x86_64",
        arch: Some(Arch::X86_64),
        features: &[],
    },
    Target {
        name: "x86_64-avx2",
        arch: Some(Arch::X86_64),
        features: &["avx2", "fma"],
    },
    Target {
        name: "x86_64-avx512",
        arch: Some(Arch::X86_64),
        features: &["avx2", "fma", "avx512f"],
    },
    Target {
        name: "x86_64-avx512vnni",
        arch: Some(Arch::X86_64),
        features: &["avx2", "fma", "avx512f", "avx512vnni"],
    },
    Target {
        name: "aarch64",
        arch: Some(Arch::Aarch64),
        features: &["neon"],
    },
    Target {
        name: "aarch64-dotprod",
        arch: Some(Arch::Aarch64),
        features: &["neon", "dotprod"],
    },
    Target {
        name: "armv7-neon",
        arch: Some(Arch::Arm),
        features: &["neon"],
    },
];

/// Board names (the `targets/` files) and the CPU target each one means.
const BOARDS: &[(&str, &str)] = &[
    ("rpi4", "aarch64"),
    ("rpi5", "aarch64-dotprod"),
    ("jetson-orin", "aarch64-dotprod"),
    ("rpi-armv7", "armv7-neon"),
];

impl Target {
    /// Look up a target by canonical name, board name, or `host` (this CPU's best target).
    pub fn parse(s: &str) -> Option<Target> {
        let s = s.trim().to_ascii_lowercase();
        if s == "host" {
            return Some(Target::host());
        }
        let name = BOARDS
            .iter()
            .find(|(b, _)| *b == s)
            .map(|(_, t)| *t)
            .unwrap_or(s.as_str());
        TARGETS.iter().find(|t| t.name == name).copied()
    }

    /// The portable target: no architecture or feature requirement.
    pub fn generic() -> Target {
        TARGETS[0]
    }

    /// Names accepted by [`Target::parse`], for help and error messages.
    pub fn names() -> Vec<&'static str> {
        let mut v: Vec<&str> = TARGETS.iter().map(|t| t.name).collect();
        v.extend(BOARDS.iter().map(|(b, _)| *b));
        v.push("host");
        v
    }

    /// The most specific target this CPU runs.
    pub fn host() -> Target {
        TARGETS
            .iter()
            .rev()
            .find(|t| t.arch.is_some() && t.missing_on_host().is_none())
            .copied()
            .unwrap_or_else(Target::generic)
    }

    /// Why this CPU cannot run files for the target (None when it can).
    pub fn missing_on_host(&self) -> Option<String> {
        if let Some(arch) = self.arch {
            if arch.name() != std::env::consts::ARCH {
                return Some(format!(
                    "it needs an {} CPU and this is {}",
                    arch.name(),
                    std::env::consts::ARCH
                ));
            }
        }
        let missing: Vec<&str> = self
            .features
            .iter()
            .copied()
            .filter(|f| !host_has(f))
            .collect();
        if missing.is_empty() {
            None
        } else {
            Some(format!("this CPU lacks {}", missing.join(", ")))
        }
    }
}

/// Runtime detection of one feature name on this CPU.
fn host_has(feature: &str) -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        match feature {
            "avx2" => is_x86_feature_detected!("avx2"),
            "fma" => is_x86_feature_detected!("fma"),
            "avx512f" => is_x86_feature_detected!("avx512f"),
            "avx512vnni" => is_x86_feature_detected!("avx512vnni"),
            _ => false,
        }
    }
    #[cfg(target_arch = "aarch64")]
    {
        match feature {
            "neon" => std::arch::is_aarch64_feature_detected!("neon"),
            "dotprod" => std::arch::is_aarch64_feature_detected!("dotprod"),
            _ => false,
        }
    }
    #[cfg(target_arch = "arm")]
    {
        feature == "neon" && crate::kernels::armv7_has_neon()
    }
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64", target_arch = "arm")))]
    {
        let _ = feature;
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_and_boards_alias() {
        for n in Target::names() {
            assert!(Target::parse(n).is_some(), "{n}");
        }
        assert_eq!(Target::parse("rpi5").unwrap().name, "aarch64-dotprod");
        assert_eq!(Target::parse("RPI4").unwrap().name, "aarch64");
        assert!(Target::parse("riscv").is_none());
    }

    #[test]
    fn host_runs_its_own_target_and_generic() {
        assert_eq!(Target::host().missing_on_host(), None);
        assert_eq!(Target::generic().missing_on_host(), None);
        assert_eq!(Target::parse("host").unwrap(), Target::host());
    }

    #[test]
    fn foreign_arch_is_reported() {
        let foreign = if cfg!(target_arch = "aarch64") {
            "x86_64"
        } else {
            "aarch64"
        };
        let why = Target::parse(foreign).unwrap().missing_on_host().unwrap();
        assert!(why.contains(foreign), "{why}");
    }
}
