//! Subcommands that read ONNX models, as they appear in a build without the `onnx` feature:
//! they explain what is missing instead of vanishing from under scripts.

use anyhow::{bail, Result};
use std::process::ExitCode;

/// Any arguments; none are read.
#[derive(clap::Args, Debug)]
pub struct Args {
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, hide = true)]
    rest: Vec<String>,
}

/// Fail, naming the subcommand and how to get it.
pub fn run(command: &str, _a: Args) -> Result<ExitCode> {
    bail!(
        "`speck {command}` reads ONNX models, and this speck was built without the ONNX \
         importer (a device build: cargo feature `onnx` off); run it on a full build, e.g. \
         `speck compile MODEL.onnx --target TARGET -o MODEL.speck`, and copy the result here"
    )
}
