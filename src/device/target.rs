//! Device targets: one TOML file per board in `targets/`, describing how to build speck for
//! it (Rust triple, CPU, features, linker, glibc), which kernels it can run, the defaults the
//! service starts with (model, input size, tiles, threads) and how the service is installed.
//!
//! The shipped files are compiled into the library, so `speck bundle --target rpi5` works from
//! any directory; a path to another `.toml` file describes a custom board.

use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::Path;

/// The board files shipped in `targets/`, by name.
pub const BUILTIN: &[(&str, &str)] = &[
    ("rpi4", include_str!("../../targets/rpi4.toml")),
    ("rpi5", include_str!("../../targets/rpi5.toml")),
    ("rpi-armv7", include_str!("../../targets/rpi-armv7.toml")),
    (
        "jetson-orin",
        include_str!("../../targets/jetson-orin.toml"),
    ),
    ("x86_64", include_str!("../../targets/x86_64.toml")),
];

/// Why a target could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    /// Neither a shipped board name nor a readable `.toml` file.
    #[error("unknown target '{name}' (known: {known}; or give a path to a .toml file)")]
    Unknown {
        /// what was asked for
        name: String,
        /// the shipped names, comma separated
        known: String,
    },
    /// The file could not be read.
    #[error("cannot read target file {path}: {source}")]
    Io {
        /// the file
        path: String,
        /// the OS error
        source: std::io::Error,
    },
    /// Not valid TOML, or fields missing / unknown / of the wrong type.
    #[error("bad target file {origin}: {message}")]
    Parse {
        /// file or board name
        origin: String,
        /// what the TOML parser said, with the line
        message: String,
    },
    /// Parsed, but a value is out of range.
    #[error("bad target file {origin}: {message}")]
    Invalid {
        /// file or board name
        origin: String,
        /// which value and why
        message: String,
    },
}

/// One board.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Target {
    /// Short name (`rpi5`), used on the command line and in bundle names.
    pub name: String,
    /// One line for humans.
    pub description: String,
    /// How to build the binary.
    pub build: Build,
    /// Kernels and backends the board runs.
    pub kernels: Kernels,
    /// What the service starts with.
    pub defaults: BoardDefaults,
    /// How the service is installed and restarted.
    pub service: Service,
}

/// Cross-build settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Build {
    /// Rust target triple, e.g. `aarch64-unknown-linux-gnu`.
    pub triple: String,
    /// `-C target-cpu`.
    pub cpu: String,
    /// `-C target-feature` entries (`+dotprod`).
    #[serde(default)]
    pub target_features: Vec<String>,
    /// Whether the crate's default features (the ONNX importer) are built in.
    pub default_features: bool,
    /// Extra cargo features.
    #[serde(default)]
    pub cargo_features: Vec<String>,
    /// C linker for the triple; absent for the host.
    #[serde(default)]
    pub linker: Option<String>,
    /// Debian architecture of the standard library package (`libstd-rust-web-dev:arm64`).
    #[serde(default)]
    pub debian_arch: Option<String>,
    /// Oldest glibc the board's OS ships; the binary must not need a newer one.
    pub glibc: String,
    /// qemu-user program that runs the binary here (`qemu-aarch64`).
    #[serde(default)]
    pub qemu: Option<String>,
    /// qemu `-cpu` model closest to the board.
    #[serde(default)]
    pub qemu_cpu: Option<String>,
    /// Root with the target's shared libraries, for qemu `-L`.
    #[serde(default)]
    pub sysroot: Option<String>,
}

/// Kernel and backend choice.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Kernels {
    /// Best kernel ISA level the board runs: `scalar`, `neon`, `neondot`, `avx2`, `avx512`.
    pub isa: String,
    /// Whether the CPU has the Armv8.2 dot product instructions.
    pub dotprod: bool,
    /// Compute backends speck uses on the board (`cpu`).
    pub backends: Vec<String>,
    /// Accelerators present on the board that speck does not drive (informational).
    #[serde(default)]
    pub accelerators: Vec<String>,
}

/// What the service runs with.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BoardDefaults {
    /// File name of the model shipped in the bundle.
    pub model: String,
    /// Model input, width x height.
    pub input: [u32; 2],
    /// Tile size for sliced inference, width x height; absent runs the whole frame.
    #[serde(default)]
    pub tile: Option<[u32; 2]>,
    /// Tile overlap fraction.
    pub overlap: f32,
    /// Worker threads.
    pub threads: usize,
    /// Float convolutions in fp16 arithmetic (`speck run --fp16`); for CPUs that have it.
    #[serde(default)]
    pub fp16: bool,
    /// Confidence threshold.
    pub conf: f32,
}

/// Service installation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Service {
    /// Address `speck run --serve` listens on (`/health` lives there).
    pub listen: String,
    /// Camera source given to `speck run --source`.
    pub source: String,
    /// Install prefix on the board; releases go to `<prefix>/releases/<version>`.
    pub prefix: String,
    /// Whether installing copies the systemd unit and enables it; off for a test prefix on a
    /// host without systemd.
    pub install_unit: bool,
    /// Shell command that restarts the service after `current` was switched.
    pub restart_command: String,
}

impl Target {
    /// Load a shipped board by name, or a board file by path (anything ending in `.toml` or
    /// containing a `/`).
    pub fn load(name_or_path: &str) -> Result<Target, TargetError> {
        if name_or_path.ends_with(".toml") || name_or_path.contains('/') {
            let text = std::fs::read_to_string(name_or_path).map_err(|e| TargetError::Io {
                path: name_or_path.to_string(),
                source: e,
            })?;
            return Target::parse(&text, name_or_path);
        }
        match BUILTIN.iter().find(|(n, _)| *n == name_or_path) {
            Some((n, text)) => Target::parse(text, &format!("targets/{n}.toml")),
            None => Err(TargetError::Unknown {
                name: name_or_path.to_string(),
                known: names().join(", "),
            }),
        }
    }

    /// Parse and check a board file; `origin` names it in errors.
    pub fn parse(text: &str, origin: &str) -> Result<Target, TargetError> {
        let t: Target = toml::from_str(text).map_err(|e| TargetError::Parse {
            origin: origin.to_string(),
            message: e.to_string().trim().replace('\n', " "),
        })?;
        t.validate().map_err(|message| TargetError::Invalid {
            origin: origin.to_string(),
            message,
        })?;
        Ok(t)
    }

    fn validate(&self) -> Result<(), String> {
        let ok_name = !self.name.is_empty()
            && self
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        if !ok_name {
            return Err(format!(
                "name '{}' must be letters, digits, '-' or '_'",
                self.name
            ));
        }
        if self.build.triple.split('-').count() < 3 {
            return Err(format!(
                "build.triple '{}' is not a target triple",
                self.build.triple
            ));
        }
        if !matches!(
            self.kernels.isa.as_str(),
            "scalar" | "neon" | "neondot" | "avx2" | "avx512"
        ) {
            return Err(format!(
                "kernels.isa '{}' is not one of scalar, neon, neondot, avx2, avx512",
                self.kernels.isa
            ));
        }
        let d = &self.defaults;
        if d.input.contains(&0) || d.tile.is_some_and(|t| t.contains(&0)) {
            return Err("defaults.input and defaults.tile must be positive".into());
        }
        if d.threads == 0 {
            return Err("defaults.threads must be at least 1".into());
        }
        if !(0.0..1.0).contains(&d.overlap) {
            return Err(format!("defaults.overlap {} is not in [0, 1)", d.overlap));
        }
        if !(0.0..=1.0).contains(&d.conf) {
            return Err(format!("defaults.conf {} is not in [0, 1]", d.conf));
        }
        if d.model.is_empty() || d.model.contains('/') {
            return Err("defaults.model must be a file name".into());
        }
        if self.service.listen.parse::<SocketAddr>().is_err() {
            return Err(format!(
                "service.listen '{}' is not an address like 0.0.0.0:8080",
                self.service.listen
            ));
        }
        if !Path::new(&self.service.prefix).is_absolute() || self.service.prefix.contains('\'') {
            return Err(format!(
                "service.prefix '{}' must be an absolute path without quotes",
                self.service.prefix
            ));
        }
        if self.service.restart_command.trim().is_empty() {
            return Err("service.restart_command must not be empty".into());
        }
        Ok(())
    }

    /// Port of `service.listen`.
    pub fn port(&self) -> u16 {
        self.service
            .listen
            .parse::<SocketAddr>()
            .map(|a| a.port())
            .unwrap_or(8080)
    }
}

/// Names of the shipped boards.
pub fn names() -> Vec<&'static str> {
    BUILTIN.iter().map(|(n, _)| *n).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_shipped_target_parses_and_is_named_after_its_file() {
        for (name, _) in BUILTIN {
            let t = Target::load(name).unwrap();
            assert_eq!(t.name, *name);
        }
        let rpi5 = Target::load("rpi5").unwrap();
        assert_eq!(rpi5.build.triple, "aarch64-unknown-linux-gnu");
        assert!(rpi5.kernels.dotprod);
        assert!(!Target::load("rpi4").unwrap().kernels.dotprod);
        // fp16 arithmetic where the cores have it (A76, A78AE), off where they do not
        assert!(rpi5.defaults.fp16 && Target::load("jetson-orin").unwrap().defaults.fp16);
        assert!(!Target::load("rpi4").unwrap().defaults.fp16);
        assert!(!Target::load("rpi-armv7").unwrap().defaults.fp16);
        assert_eq!(
            Target::load("rpi-armv7").unwrap().build.triple,
            "armv7-unknown-linux-gnueabihf"
        );
    }

    #[test]
    fn unknown_target_names_the_known_ones() {
        let e = Target::load("rpi9").unwrap_err().to_string();
        assert!(e.contains("unknown target 'rpi9'"), "{e}");
        assert!(e.contains("rpi5") && e.contains("jetson-orin"), "{e}");
    }

    #[test]
    fn bad_toml_and_bad_values_are_clear_errors() {
        let good = BUILTIN[0].1;
        let e = Target::parse("name = ", "x.toml").unwrap_err().to_string();
        assert!(e.starts_with("bad target file x.toml"), "{e}");
        let typo = good.replace("threads = 4", "thread = 4");
        let e = Target::parse(&typo, "t.toml").unwrap_err().to_string();
        assert!(e.contains("thread"), "{e}");
        let zero = good.replace("threads = 4", "threads = 0");
        let e = Target::parse(&zero, "t.toml").unwrap_err().to_string();
        assert!(e.contains("defaults.threads"), "{e}");
        let addr = good.replace("0.0.0.0:8080", "nowhere");
        let e = Target::parse(&addr, "t.toml").unwrap_err().to_string();
        assert!(e.contains("service.listen"), "{e}");
        let e = Target::load("/nonexistent/board.toml")
            .unwrap_err()
            .to_string();
        assert!(e.contains("cannot read target file"), "{e}");
    }
}
