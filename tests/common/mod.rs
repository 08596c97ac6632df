//! Helpers shared by the integration tests (each test file includes this with `mod common;`).

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The repository root (tests run the binary from there, as the README's commands do).
#[allow(dead_code)] // not every test file that includes this module needs each helper
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Run a `speck` binary with `args` from the repository root.
#[allow(dead_code)]
pub fn speck_at(bin: &Path, args: &[&str]) -> Output {
    Command::new(bin)
        .args(args)
        .current_dir(root())
        .output()
        .expect("run speck")
}

/// Run the `speck` built for these tests.
#[allow(dead_code)]
pub fn speck(args: &[&str]) -> Output {
    speck_at(Path::new(env!("CARGO_BIN_EXE_speck")), args)
}

/// A run's stderr as text.
#[allow(dead_code)]
pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A clean failure: non-zero exit, one line starting with "error:" naming the problem
/// (`needle`), no panic.
#[allow(dead_code)]
pub fn assert_clean_failure(o: &Output, needle: &str) {
    let e = stderr(o);
    assert!(!o.status.success(), "expected failure, stderr: {e}");
    assert_ne!(o.status.code(), Some(101), "panicked: {e}");
    assert!(!e.contains("panicked"), "panicked: {e}");
    assert!(e.starts_with("error:"), "no error line: {e}");
    assert!(e.contains(needle), "'{needle}' not in: {e}");
}

/// Whether every program in `tools` is installed (found by `command -v`, so `/usr/sbin` ones
/// count too). Missing tools skip the test with a printed reason, except when `CI` is set:
/// then they fail it, naming the packages to install (`hint`).
#[allow(dead_code)]
pub fn have_tools(tools: &[&str], hint: &str) -> bool {
    let missing: Vec<&str> = tools
        .iter()
        .copied()
        .filter(|t| {
            Command::new("sh")
                .arg("-c")
                .arg(format!("command -v {t} || test -x /usr/sbin/{t}"))
                .output()
                .map(|o| !o.status.success())
                .unwrap_or(true)
        })
        .collect();
    if missing.is_empty() {
        return true;
    }
    if std::env::var_os("CI").is_some() {
        panic!("CI must install {missing:?} ({hint})");
    }
    eprintln!("skipped: {missing:?} not installed ({hint})");
    false
}

/// A loopback TCP port that was free a moment ago.
#[allow(dead_code)] // not every test file that includes this module needs it
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}
