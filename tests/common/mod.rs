//! Helpers shared by the integration tests (each test file includes this with `mod common;`).

use std::net::TcpListener;
use std::process::Command;

/// Whether every program in `tools` is installed (found by `command -v`, so `/usr/sbin` ones
/// count too). Missing tools skip the test with a printed reason, except when `CI` is set:
/// then they fail it, naming the packages to install (`hint`).
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
