//! `speck bundle`, `deploy` and `flash` as they appear in a device build (cargo feature
//! `host-tools` off): they say where to run them instead of vanishing from under scripts.

use anyhow::{bail, Result};
use std::process::ExitCode;

/// Any arguments; none are read.
#[derive(clap::Args, Debug)]
pub struct Args {
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, hide = true)]
    rest: Vec<String>,
}

/// Fail, naming the subcommand and where it runs.
pub fn run(command: &str, _a: Args) -> Result<ExitCode> {
    bail!(
        "`speck {command}` runs on the machine that installs onto boards, and this is a device \
         build without it (cargo feature `host-tools` off); run it from a full build, e.g. \
         `speck {command} --help` on your development machine"
    )
}
