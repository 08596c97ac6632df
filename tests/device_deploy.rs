//! `speck deploy` against a real OpenSSH server started on loopback. The "board" is this
//! machine with its install prefix in a temporary folder; the service is `speck run` serving
//! `/health`, started by the board's restart command. Covers a first install, a broken
//! release rolled back automatically, a dry run, and bad inputs (wrong key, unreachable host,
//! wrong board). Needs openssh-server and openssh-client: skips with a reason when missing,
//! fails when CI is set.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

fn tools_present() -> bool {
    common::have_tools(
        &["sshd", "ssh", "ssh-keygen", "setsid"],
        "install openssh-server, openssh-client",
    )
}

fn keygen(path: &Path) {
    let st = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(path)
        .status()
        .unwrap();
    assert!(st.success());
}

/// sshd and the service it starts; both are stopped when the test ends, pass or fail.
struct Board {
    dir: tempfile::TempDir,
    sshd: Child,
    ssh_port: u16,
    http_port: u16,
}

impl Drop for Board {
    fn drop(&mut self) {
        let _ = self.sshd.kill();
        let _ = self.sshd.wait();
        if let Ok(pid) = std::fs::read_to_string(self.prefix().join("pid")) {
            let _ = Command::new("kill").arg(pid.trim()).status();
        }
    }
}

impl Board {
    fn start() -> Board {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        keygen(&d.join("host_key"));
        keygen(&d.join("client"));
        keygen(&d.join("stranger"));
        std::fs::copy(d.join("client.pub"), d.join("authorized_keys")).unwrap();
        let ssh_port = common::free_port();
        let http_port = common::free_port();
        std::fs::write(
            d.join("sshd_config"),
            format!(
                "Port {ssh_port}\nListenAddress 127.0.0.1\nHostKey {d}/host_key\n\
                 AuthorizedKeysFile {d}/authorized_keys\nPasswordAuthentication no\n\
                 KbdInteractiveAuthentication no\nUsePAM no\nStrictModes no\n\
                 PermitRootLogin prohibit-password\nPidFile {d}/sshd.pid\n",
                d = d.display()
            ),
        )
        .unwrap();
        // sshd's privilege-separation folder (present on machines where sshd ever ran).
        let _ = std::fs::create_dir_all("/run/sshd");
        let sshd = Command::new("/usr/sbin/sshd")
            .args(["-D", "-e", "-f"])
            .arg(d.join("sshd_config"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(d.join("sshd.log")).unwrap())
            .spawn()
            .unwrap();
        let board = Board {
            dir,
            sshd,
            ssh_port,
            http_port,
        };
        let start = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", ssh_port)).is_err() {
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "sshd did not start: {}",
                std::fs::read_to_string(board.dir.path().join("sshd.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        board.write_target();
        board
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn prefix(&self) -> PathBuf {
        self.path("opt/speck")
    }

    /// A board file for this machine: no systemd; the restart command stops the old service
    /// (pid file) and starts `current/bin/speck run` detached, serving /health.
    fn write_target(&self) {
        let p = self.prefix();
        let p = p.display();
        let images = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/data/images");
        let restart = format!(
            "if [ -f {p}/pid ]; then old=$(cat {p}/pid); kill $old 2>/dev/null; \
             while kill -0 $old 2>/dev/null; do sleep 0.1; done; fi; \
             cd {p}/current && setsid -f sh -c 'echo $$ > {p}/pid; exec {p}/current/bin/speck run \
             --model share/speck/speck-tiny.onnx --source {images} --loop --no-tile \
             --serve 127.0.0.1:{port}' </dev/null >{p}/service.log 2>&1",
            images = images.display(),
            port = self.http_port,
        );
        let toml = format!(
            r#"name = "loopback"
description = "this machine over ssh (test)"

[build]
triple = "x86_64-unknown-linux-gnu"
cpu = "x86-64"
target_features = []
default_features = true
cargo_features = []
glibc = "2.36"

[kernels]
isa = "avx2"
dotprod = false
backends = ["cpu"]
accelerators = []

[defaults]
model = "speck-tiny.onnx"
input = [384, 384]
overlap = 0.2
threads = 1
conf = 0.35

[service]
listen = "127.0.0.1:{port}"
source = "v4l2:/dev/video0"
prefix = "{p}"
install_unit = false
restart_command = '''{restart}'''
"#,
            port = self.http_port,
        );
        std::fs::write(self.path("loopback.toml"), toml).unwrap();
    }

    fn deploy(&self, key: &str, binary: &Path, extra: &[&str]) -> Output {
        let user = String::from_utf8(Command::new("id").arg("-un").output().unwrap().stdout)
            .unwrap()
            .trim()
            .to_string();
        Command::new(env!("CARGO_BIN_EXE_speck"))
            .arg("deploy")
            .arg("--target")
            .arg(self.path("loopback.toml"))
            .args(["--host", &format!("{user}@127.0.0.1")])
            .args(["--port", &self.ssh_port.to_string()])
            .arg("--identity")
            .arg(self.path(key))
            .args(["--ssh-option", "StrictHostKeyChecking=no"])
            .args(["--ssh-option", "UserKnownHostsFile=/dev/null"])
            .args(["--ssh-option", "LogLevel=ERROR"])
            .arg("--binary")
            .arg(binary)
            .arg("--model")
            .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("models/speck-tiny.onnx"))
            .arg("--json")
            .args(extra)
            .output()
            .unwrap()
    }

    /// The speck under test without debug info (the debug build is hundreds of MB, which
    /// would make every bundle slow to compress).
    fn stripped_speck(&self) -> PathBuf {
        let out = self.path("speck");
        let st = Command::new("strip")
            .arg("--strip-debug")
            .arg("-o")
            .arg(&out)
            .arg(env!("CARGO_BIN_EXE_speck"))
            .status();
        if !st.map(|s| s.success()).unwrap_or(false) {
            std::fs::copy(env!("CARGO_BIN_EXE_speck"), &out).unwrap();
        }
        out
    }

    fn current(&self) -> Option<String> {
        std::fs::read_link(self.prefix().join("current"))
            .ok()
            .map(|p| p.display().to_string())
    }

    fn healthy(&self) -> bool {
        Command::new("curl")
            .args([
                "-sf",
                &format!("http://127.0.0.1:{}/health", self.http_port),
            ])
            .output()
            .map(|o| o.status.success() && String::from_utf8_lossy(&o.stdout).starts_with("ok"))
            .unwrap_or_else(|_| std::net::TcpStream::connect(("127.0.0.1", self.http_port)).is_ok())
    }
}

fn json(out: &Output) -> serde_json::Value {
    assert!(
        out.status.success(),
        "deploy failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn deploy_installs_checks_health_and_rolls_back_a_broken_release() {
    if !tools_present() {
        return;
    }
    let board = Board::start();
    let speck = board.stripped_speck();

    // Dry run on an empty board: the plan, and nothing changed.
    let v = json(&board.deploy("client", &speck, &["--dry-run"]));
    assert_eq!(v["dry_run"], true);
    assert!(v["previous"].is_null());
    assert_eq!(v["machine"], std::env::consts::ARCH);
    assert!(board.current().is_none());
    assert!(!board.prefix().exists());

    // First install: the release is current and /health answers.
    let v = json(&board.deploy("client", &speck, &["--health-timeout", "60"]));
    let good = v["release"].as_str().unwrap().to_string();
    assert!(v["previous"].is_null());
    assert_eq!(board.current().unwrap(), format!("releases/{good}"));
    assert!(board.healthy());

    // A release whose binary exits at once: health check fails, current goes back to the
    // good release, which is restarted and healthy again.
    let broken = board.path("broken-speck");
    std::fs::write(&broken, "#!/bin/sh\necho 'broken build' >&2\nexit 1\n").unwrap();
    let out = board.deploy("client", &broken, &["--health-timeout", "5"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("failed its health check"), "{err}");
    assert!(
        err.contains(&format!("rolled back to releases/{good}, which is healthy")),
        "{err}"
    );
    assert_eq!(board.current().unwrap(), format!("releases/{good}"));
    assert!(board.healthy());
    let releases = std::fs::read_dir(board.prefix().join("releases"))
        .unwrap()
        .count();
    assert_eq!(
        releases, 2,
        "the broken release stays on disk for inspection"
    );

    // Re-deploying the good release is a no-op install that stays healthy.
    let v = json(&board.deploy("client", &speck, &["--health-timeout", "60"]));
    assert_eq!(v["release"], good.as_str());
    assert_eq!(v["previous"], format!("releases/{good}").as_str());
}

#[test]
fn deploy_bad_inputs_are_clear_errors_and_change_nothing() {
    if !tools_present() {
        return;
    }
    let board = Board::start();
    let speck = board.path("tiny-speck");
    std::fs::write(&speck, "#!/bin/sh\nexit 0\n").unwrap();

    // A key the board does not accept.
    let out = board.deploy("stranger", &speck, &[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("ssh to") && err.contains("Permission denied"),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
    assert!(board.current().is_none());

    // Nobody listening.
    let closed = common::free_port();
    let out = Command::new(env!("CARGO_BIN_EXE_speck"))
        .args(["deploy", "--target"])
        .arg(board.path("loopback.toml"))
        .args(["--host", "root@127.0.0.1", "--port", &closed.to_string()])
        .arg("--binary")
        .arg(&speck)
        .arg("--dry-run")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("Connection refused"), "{err}");

    // A board file for aarch64 pointed at this x86-64 machine: refused before any upload.
    let arm = board.path("arm.toml");
    let text = std::fs::read_to_string(board.path("loopback.toml"))
        .unwrap()
        .replace("x86_64-unknown-linux-gnu", "aarch64-unknown-linux-gnu");
    std::fs::write(&arm, text).unwrap();
    let script = board.path("script-speck");
    std::fs::write(&script, "#!/bin/sh\nexit 0\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_speck"))
        .args(["deploy", "--target"])
        .arg(&arm)
        .args(["--host", "127.0.0.1", "--port", &board.ssh_port.to_string()])
        .arg("--identity")
        .arg(board.path("client"))
        .args(["--ssh-option", "StrictHostKeyChecking=no"])
        .args(["--ssh-option", "UserKnownHostsFile=/dev/null"])
        .arg("--binary")
        .arg(&script)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("the board is x86_64"), "{err}");
    assert!(board.current().is_none());

    // An unknown board name.
    let out = Command::new(env!("CARGO_BIN_EXE_speck"))
        .args(["deploy", "--target", "nosuchboard", "--host", "h"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("nosuchboard"), "{err}");
}
