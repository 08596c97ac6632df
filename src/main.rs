//! The `speck` binary: see `speck --help`.

mod cli;

fn main() -> std::process::ExitCode {
    cli::main()
}
