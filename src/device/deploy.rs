//! Deploying a bundle to a running board over ssh: check the board, upload, verify the
//! checksum, install into a versioned directory (the bundle's `install.sh` switches
//! `<prefix>/current` atomically and restarts the service), health-check `/health`, and roll
//! back to the previous release when the check fails.
//!
//! Uses the system OpenSSH client (`ssh`), so the user's keys, agent, `~/.ssh/config` and
//! known hosts apply as they do for a plain `ssh` to the board.

use super::bundle::{sha256_hex, Bundle};
use super::script::sh_quote;
use super::target::Target;
use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Why a deploy failed.
#[derive(Debug, thiserror::Error)]
pub enum DeployError {
    /// `ssh` is not installed or did not start.
    #[error("cannot run ssh (install openssh-client): {0}")]
    Tool(std::io::Error),
    /// The board could not be reached or refused the login.
    #[error("ssh to {host} failed: {message}")]
    Connect {
        /// user@host
        host: String,
        /// ssh's own message
        message: String,
    },
    /// A step on the board failed; what was installed before is still in place.
    #[error("{step} failed on the board: {message}")]
    Remote {
        /// which step
        step: &'static str,
        /// its stderr
        message: String,
    },
    /// The board is another machine than the bundle is built for.
    #[error("the board is {got}, target {target} needs {want}")]
    WrongMachine {
        /// target name
        target: String,
        /// what the target needs
        want: String,
        /// `uname -m` of the board
        got: String,
    },
    /// The bundle is for another board.
    #[error("bundle is for target '{bundle}', not '{target}'")]
    WrongTarget {
        /// the bundle's board
        bundle: String,
        /// the board asked for
        target: String,
    },
    /// The new release did not become healthy.
    #[error("{release} failed its health check ({reason}); {rollback}")]
    Unhealthy {
        /// the release that failed
        release: String,
        /// what the check saw last
        reason: String,
        /// what rollback did
        rollback: String,
    },
    /// Bad arguments.
    #[error("{0}")]
    Usage(String),
}

/// How to reach the board.
#[derive(Debug, Clone)]
pub struct SshHost {
    /// `user@host` or `host` (then ssh's configured user).
    pub destination: String,
    /// ssh port (default: ssh's own, usually 22).
    pub port: Option<u16>,
    /// Private key file (`ssh -i`).
    pub identity: Option<std::path::PathBuf>,
    /// Extra `-o Key=Value` options (tests pass a known-hosts file here).
    pub options: Vec<String>,
}

impl SshHost {
    /// The host part of the destination (for the health URL).
    pub fn hostname(&self) -> &str {
        let h = self.destination.rsplit('@').next().unwrap_or("");
        h.trim_start_matches('[').trim_end_matches(']')
    }

    fn command(&self, remote: &str) -> Command {
        let mut c = Command::new("ssh");
        c.args(["-o", "BatchMode=yes", "-o", "ConnectTimeout=10"]);
        if let Some(p) = self.port {
            c.arg("-p").arg(p.to_string());
        }
        if let Some(i) = &self.identity {
            c.arg("-i").arg(i).args(["-o", "IdentitiesOnly=yes"]);
        }
        for o in &self.options {
            c.arg("-o").arg(o);
        }
        c.arg("--").arg(&self.destination).arg(remote);
        c
    }

    /// Run `script` with `sh` on the board, feeding `stdin`; returns stdout.
    fn run(&self, step: &'static str, script: &str, stdin: &[u8]) -> Result<String, DeployError> {
        let mut child = self
            .command(&format!("sh -c {}", sh_quote(script)))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(DeployError::Tool)?;
        let mut input = child.stdin.take().expect("piped stdin");
        // Write on a thread so a board that stops reading cannot dead-lock us on a full pipe.
        let data = stdin.to_vec();
        let writer = std::thread::spawn(move || {
            let _ = input.write_all(&data);
        });
        let out = child.wait_with_output().map_err(DeployError::Tool)?;
        let _ = writer.join();
        let stderr = String::from_utf8_lossy(&out.stderr).trim().to_string();
        match out.status.code() {
            Some(0) => Ok(String::from_utf8_lossy(&out.stdout).into_owned()),
            // 255: ssh itself failed (unreachable, refused, wrong key, unknown host key).
            Some(255) | None => Err(DeployError::Connect {
                host: self.destination.clone(),
                message: last_line(&stderr),
            }),
            Some(_) => Err(DeployError::Remote {
                step,
                message: last_line(&stderr),
            }),
        }
    }
}

fn last_line(s: &str) -> String {
    s.lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("(no message)")
        .to_string()
}

/// Deploy settings.
#[derive(Debug, Clone)]
pub struct DeployOptions {
    /// Health URL (default `http://<host>:<service port>/health`).
    pub health_url: Option<String>,
    /// How long the new release gets to answer `/health` with `ok`.
    pub health_timeout: Duration,
    /// Check the board and print the plan; change nothing.
    pub dry_run: bool,
}

impl Default for DeployOptions {
    fn default() -> Self {
        DeployOptions {
            health_url: None,
            health_timeout: Duration::from_secs(30),
            dry_run: false,
        }
    }
}

/// What a deploy did (or, with `dry_run`, would do).
#[derive(Debug, Clone)]
pub struct DeployReport {
    /// The release now running (the new one).
    pub release: String,
    /// What `<prefix>/current` pointed at before, if anything.
    pub previous: Option<String>,
    /// The URL checked.
    pub health_url: String,
    /// `uname -m` of the board.
    pub machine: String,
    /// The steps, in order, as one line each.
    pub steps: Vec<String>,
}

/// What the board said about itself.
struct Probe {
    machine: String,
    root: bool,
    previous: Option<String>,
}

/// `uname -m` values a target's triple runs on (32-bit Arm userlands often run on 64-bit
/// kernels, which report aarch64).
fn machines_for(triple: &str) -> &'static [&'static str] {
    match triple.split('-').next().unwrap_or("") {
        "aarch64" => &["aarch64", "arm64"],
        a if a.starts_with("arm") => &["armv7l", "armv8l", "aarch64"],
        "x86_64" => &["x86_64"],
        _ => &[],
    }
}

fn probe(host: &SshHost, target: &Target) -> Result<Probe, DeployError> {
    let prefix = sh_quote(&target.service.prefix);
    let script = format!(
        "uname -m; id -u; readlink {prefix}/current || echo; \
         for t in sha256sum tar mktemp; do command -v $t >/dev/null || echo missing:$t; done"
    );
    let out = host.run("checking the board", &script, b"")?;
    let mut lines = out.lines();
    let machine = lines.next().unwrap_or("").trim().to_string();
    let uid = lines.next().unwrap_or("").trim().to_string();
    let previous = lines
        .next()
        .map(|l| l.trim().to_string())
        .filter(|l| !l.is_empty());
    let missing: Vec<&str> = lines.filter_map(|l| l.strip_prefix("missing:")).collect();
    if !missing.is_empty() {
        return Err(DeployError::Remote {
            step: "checking the board",
            message: format!("the board lacks {}", missing.join(", ")),
        });
    }
    let ok = machines_for(&target.build.triple);
    if !ok.is_empty() && !ok.contains(&machine.as_str()) {
        return Err(DeployError::WrongMachine {
            target: target.name.clone(),
            want: ok.join(" or "),
            got: machine,
        });
    }
    Ok(Probe {
        machine,
        root: uid == "0",
        previous,
    })
}

/// Put `bundle` (whose `.tar.gz` bytes are `archive`) on the board and make it the running
/// release; see the module docs for the steps.
pub fn deploy(
    host: &SshHost,
    target: &Target,
    bundle: &Bundle,
    archive: &[u8],
    opts: &DeployOptions,
) -> Result<DeployReport, DeployError> {
    if bundle.target != target.name {
        return Err(DeployError::WrongTarget {
            bundle: bundle.target.clone(),
            target: target.name.clone(),
        });
    }
    let health_url = match &opts.health_url {
        Some(u) => u.clone(),
        None => {
            let h = host.hostname();
            let h = if h.contains(':') {
                format!("[{h}]")
            } else {
                h.to_string()
            };
            format!("http://{h}:{}/health", target.port())
        }
    };
    parse_http_url(&health_url)?;
    let p = probe(host, target)?;
    let sudo = if p.root { "" } else { "sudo -n " };
    let sha = sha256_hex(archive);
    let mut report = DeployReport {
        release: bundle.release.clone(),
        previous: p.previous.clone(),
        health_url: health_url.clone(),
        machine: p.machine.clone(),
        steps: vec![
            format!(
                "upload {} ({} bytes, sha256 {sha})",
                bundle.root_dir(),
                archive.len()
            ),
            "verify the upload's sha256, unpack, check MANIFEST".into(),
            format!(
                "{sudo}install.sh: copy to {}/releases/{}, switch {}/current, restart ({})",
                target.service.prefix,
                bundle.release,
                target.service.prefix,
                target.service.restart_command
            ),
            format!(
                "GET {health_url} until it says ok (up to {} s)",
                opts.health_timeout.as_secs()
            ),
            match &p.previous {
                Some(prev) => format!("on failure: switch current back to {prev} and restart"),
                None => "on failure: nothing to roll back to (first install)".into(),
            },
        ],
    };
    if opts.dry_run {
        return Ok(report);
    }

    // Upload and install in one session: a temporary folder that is removed whatever happens.
    let script = format!(
        "set -eu\n\
         tmp=$(mktemp -d /tmp/speck-deploy.XXXXXX)\n\
         trap 'rm -rf \"$tmp\"' EXIT\n\
         cat > \"$tmp/bundle.tar.gz\"\n\
         echo {sha}'  '\"$tmp/bundle.tar.gz\" | sha256sum -c --quiet --strict - >&2 \
           || {{ echo 'upload corrupted: sha256 mismatch' >&2; exit 3; }}\n\
         tar -xzf \"$tmp/bundle.tar.gz\" -C \"$tmp\"\n\
         {sudo}sh \"$tmp\"/{root}/install.sh\n",
        root = sh_quote(&bundle.root_dir()),
    );
    host.run("installing", &script, archive)?;

    let health = wait_healthy(&health_url, opts.health_timeout);
    let Err(reason) = health else {
        return Ok(report);
    };
    let rollback = match &p.previous {
        None => "no previous release to roll back to".to_string(),
        Some(prev) if prev.ends_with(&bundle.release) => {
            "the failing release was already the current one; nothing to roll back to".to_string()
        }
        Some(prev) => {
            let prefix = sh_quote(&target.service.prefix);
            let script = format!(
                "set -eu\n\
                 {sudo}ln -sfn {prev} {prefix}/current.new\n\
                 {sudo}mv -T {prefix}/current.new {prefix}/current\n\
                 {sudo}sh -c {restart}\n",
                prev = sh_quote(prev),
                restart = sh_quote(&target.service.restart_command),
            );
            match host.run("rolling back", &script, b"") {
                Err(e) => format!("rollback to {prev} FAILED: {e}"),
                Ok(_) => match wait_healthy(&health_url, opts.health_timeout) {
                    Ok(()) => format!("rolled back to {prev}, which is healthy"),
                    Err(r) => format!("rolled back to {prev}, which is not healthy either ({r})"),
                },
            }
        }
    };
    report.steps.push(rollback.clone());
    Err(DeployError::Unhealthy {
        release: bundle.release.clone(),
        reason,
        rollback,
    })
}

/// `(host:port, path)` of an `http://` URL.
fn parse_http_url(url: &str) -> Result<(String, String), DeployError> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| DeployError::Usage(format!("health URL '{url}' must start with http://")))?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    if authority.is_empty() {
        return Err(DeployError::Usage(format!(
            "health URL '{url}' has no host"
        )));
    }
    let authority = if authority.rsplit(':').next().is_some_and(|p| {
        !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) && !authority.ends_with(']')
    }) {
        authority.to_string()
    } else {
        format!("{authority}:80")
    };
    Ok((authority, path.to_string()))
}

/// One `GET`: Ok when the status is 200 and the body says `ok`.
fn health_once(url: &str) -> Result<(), String> {
    let (authority, path) = parse_http_url(url).map_err(|e| e.to_string())?;
    let addr = authority
        .to_socket_addrs()
        .map_err(|e| format!("{authority}: {e}"))?
        .next()
        .ok_or_else(|| format!("{authority}: no address"))?;
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(3))
        .map_err(|e| format!("{authority}: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(3))).ok();
    s.set_write_timeout(Some(Duration::from_secs(3))).ok();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n\r\n"
    )
    .map_err(|e| e.to_string())?;
    let mut buf = Vec::new();
    s.take(64 * 1024)
        .read_to_end(&mut buf)
        .map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&buf);
    let status = text.lines().next().unwrap_or("").to_string();
    let body = text.split("\r\n\r\n").nth(1).unwrap_or("").trim();
    if status.split_whitespace().nth(1) == Some("200") && body.starts_with("ok") {
        Ok(())
    } else {
        Err(format!("{status} {body}").trim().to_string())
    }
}

/// Poll `url` until it is healthy or `timeout` passes; the error is the last failure.
pub fn wait_healthy(url: &str, timeout: Duration) -> Result<(), String> {
    let start = Instant::now();
    loop {
        match health_once(url) {
            Ok(()) => return Ok(()),
            Err(e) if start.elapsed() >= timeout => return Err(e),
            Err(_) => std::thread::sleep(Duration::from_millis(300)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn health_urls_parse() {
        assert_eq!(
            parse_http_url("http://cam1:8080/health").unwrap(),
            ("cam1:8080".into(), "/health".into())
        );
        assert_eq!(
            parse_http_url("http://cam1").unwrap(),
            ("cam1:80".into(), "/".into())
        );
        assert_eq!(
            parse_http_url("http://[::1]:9/health").unwrap().0,
            "[::1]:9"
        );
        assert!(parse_http_url("https://cam1/health").is_err());
        assert!(parse_http_url("http:///health").is_err());
    }

    #[test]
    fn armv7_userland_runs_on_64_bit_kernels() {
        assert!(machines_for("armv7-unknown-linux-gnueabihf").contains(&"aarch64"));
        assert!(!machines_for("aarch64-unknown-linux-gnu").contains(&"x86_64"));
    }

    #[test]
    fn hostname_strips_user_and_brackets() {
        let h = |d: &str| SshHost {
            destination: d.into(),
            port: None,
            identity: None,
            options: vec![],
        };
        assert_eq!(h("pi@cam1.local").hostname(), "cam1.local");
        assert_eq!(h("cam1").hostname(), "cam1");
        assert_eq!(h("root@[::1]").hostname(), "::1");
    }

    #[test]
    fn unhealthy_url_reports_why() {
        // Port 9 (discard) on loopback is closed here; the error names the address.
        let e = wait_healthy("http://127.0.0.1:9/health", Duration::from_millis(10)).unwrap_err();
        assert!(e.contains("127.0.0.1:9"), "{e}");
    }
}
