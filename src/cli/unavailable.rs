//! Subcommands as they appear in a device build that leaves them out (cargo features `onnx`,
//! `npy`, `host-tools` off): they explain what is missing instead of vanishing from under
//! scripts.

use anyhow::{bail, Result};
use std::process::ExitCode;

/// Any arguments; none are read.
#[derive(clap::Args, Debug)]
pub struct Args {
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, hide = true)]
    rest: Vec<String>,
}

/// What a device build leaves out, and so why a subcommand is unavailable.
#[allow(dead_code)] // which variants are used depends on the cargo features
pub enum Missing {
    /// the ONNX importer (`compile`, `quantize`)
    Onnx,
    /// `.npy` reading and writing (`infer`)
    Npy,
    /// the tools that install onto boards (`bundle`, `deploy`, `flash`)
    HostTools,
}

/// Fail, naming the subcommand, what the build lacks and where to run it instead.
pub fn run(command: &str, missing: Missing, _a: Args) -> Result<ExitCode> {
    match missing {
        Missing::Onnx => bail!(
            "`speck {command}` reads ONNX models, and this speck was built without the ONNX \
             importer (a device build: cargo feature `onnx` off); run it on a full build, e.g. \
             `speck compile MODEL.onnx --target TARGET -o MODEL.speck`, and copy the result here"
        ),
        Missing::Npy => bail!(
            "this speck was built without .npy support (a device build: cargo feature `npy` \
             off); run `speck {command}` on a full build"
        ),
        Missing::HostTools => bail!(
            "`speck {command}` runs on the machine that installs onto boards, and this is a \
             device build without it (cargo feature `host-tools` off); run it from a full \
             build, e.g. `speck {command} --help` on your development machine"
        ),
    }
}
