//! `speck deploy`: install a bundle on a running board over ssh, health-check it, roll back
//! when the check fails.

use anyhow::{Context, Result};
use speck::device::deploy::{deploy, DeployOptions, SshHost};
use speck::device::Target;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

/// Arguments of `speck deploy`.
#[derive(clap::Args, Debug)]
#[command(after_help = "Examples:
  speck deploy --target rpi5 --host pi@cam1.local                 # build, bundle, install, check
  speck deploy --target rpi5 --host pi@cam1.local --dry-run       # check the board, print the plan
  speck deploy --target jetson-orin --host nvidia@10.0.0.7 --identity ~/.ssh/jetson --bundle b.tar.gz

Steps: check the board (machine, tools, current release), upload, verify sha256, unpack,
check MANIFEST, install into PREFIX/releases/RELEASE, switch PREFIX/current atomically,
restart the service, then GET /health until it answers ok. When it does not, current is
switched back to the previous release and the service restarted. A non-root user needs
password-less sudo on the board.")]
pub struct Args {
    /// Board name (rpi4, rpi5, rpi-armv7, jetson-orin, x86_64) or a board .toml file.
    #[arg(long)]
    target: String,
    /// Board to install on: USER@HOST or HOST.
    #[arg(long)]
    host: String,
    /// ssh port.
    #[arg(long)]
    port: Option<u16>,
    /// ssh private key file.
    #[arg(long)]
    identity: Option<PathBuf>,
    /// Extra ssh option (-o), repeatable, e.g. `--ssh-option StrictHostKeyChecking=accept-new`.
    #[arg(long = "ssh-option")]
    ssh_options: Vec<String>,
    #[command(flatten)]
    source: super::bundle::BundleSource,
    /// Health URL (default http://HOST:PORT/health with the board's service port).
    #[arg(long)]
    health_url: Option<String>,
    /// Seconds the new release gets to become healthy.
    #[arg(long, default_value_t = 30)]
    health_timeout: u64,
    /// Check the board and print the plan; change nothing.
    #[arg(long)]
    dry_run: bool,
    /// Print a JSON summary.
    #[arg(long)]
    json: bool,
}

pub fn run(a: Args) -> Result<ExitCode> {
    let target = Target::load(&a.target)?;
    let (bundle, archive) = a.source.load(&target)?;
    let host = SshHost {
        destination: a.host.clone(),
        port: a.port,
        identity: a.identity,
        options: a.ssh_options,
    };
    let opts = DeployOptions {
        health_url: a.health_url,
        health_timeout: Duration::from_secs(a.health_timeout),
        dry_run: a.dry_run,
    };
    let r = deploy(&host, &target, &bundle, &archive, &opts)
        .with_context(|| format!("deploying to {}", a.host))?;
    if a.json {
        println!(
            "{}",
            serde_json::json!({
                "host": a.host, "target": target.name, "release": r.release,
                "previous": r.previous, "machine": r.machine, "health_url": r.health_url,
                "dry_run": a.dry_run, "steps": r.steps,
            })
        );
    } else if a.dry_run {
        println!("{} ({}): would deploy {}", a.host, r.machine, r.release);
        for s in &r.steps {
            println!("  {s}");
        }
    } else {
        println!(
            "{}: {} is running and healthy ({}; previous: {})",
            a.host,
            r.release,
            r.health_url,
            r.previous.as_deref().unwrap_or("none")
        );
    }
    Ok(ExitCode::SUCCESS)
}
