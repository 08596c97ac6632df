//! `speck bundle`: a reproducible install bundle for one board.

use super::model_path;
use anyhow::{bail, Context, Result};
use speck::device::bundle::{check_binary, Bundle, BundleInputs};
use speck::device::Target;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Arguments of `speck bundle`.
#[derive(clap::Args, Debug)]
#[command(after_help = "Examples:
  speck bundle --target rpi5 -o speck-rpi5.tar.gz            # builds with targets/build.sh
  speck bundle --target rpi4 -o b.tar.gz --binary target/aarch64-unknown-linux-gnu/device/speck
  speck bundle --target my-board.toml -o b.tar.gz --binary ./speck --model m.onnx")]
pub struct Args {
    /// Board name (rpi4, rpi5, rpi-armv7, jetson-orin, x86_64) or a board .toml file.
    #[arg(long)]
    target: String,
    /// Output file (.tar.gz).
    #[arg(short, long)]
    out: PathBuf,
    /// speck binary for the board (default: the host binary for x86_64, else the output of
    /// `targets/build.sh NAME`).
    #[arg(long)]
    binary: Option<PathBuf>,
    /// Model to ship (default: the board's `defaults.model` from models/: the int8 detector
    /// on the aarch64 boards, the float one elsewhere).
    #[arg(long)]
    model: Option<PathBuf>,
    /// Print a JSON summary.
    #[arg(long)]
    json: bool,
}

pub fn run(a: Args) -> Result<ExitCode> {
    let target = Target::load(&a.target)?;
    // An output that cannot be written fails now, not after a cross build of several minutes.
    check_writable(&a.out)?;
    let (bundle, bytes) = build(&target, a.binary, a.model)?;
    write_atomically(&a.out, &bytes)?;
    let sha = speck::device::bundle::sha256_hex(&bytes);
    if a.json {
        let files: Vec<_> = bundle
            .files
            .iter()
            .map(|f| serde_json::json!({"path": f.path, "mode": format!("{:o}", f.mode), "size": f.data.len()}))
            .collect();
        println!(
            "{}",
            serde_json::json!({"bundle": a.out, "target": target.name, "release": bundle.release,
                "sha256": sha, "size": bytes.len(), "files": files})
        );
    } else {
        println!(
            "{}: {} release {} ({:.1} MiB, sha256 {sha})",
            a.out.display(),
            target.name,
            bundle.release,
            bytes.len() as f64 / (1024.0 * 1024.0)
        );
        for f in &bundle.files {
            println!("  {:o} {:>10}  {}", f.mode, f.data.len(), f.path);
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Where `deploy` and `flash` get their bundle: a file, or built as `speck bundle` does.
#[derive(clap::Args, Debug)]
pub struct BundleSource {
    /// Bundle made by `speck bundle` for the same board (default: build one, as `speck bundle`
    /// does).
    #[arg(long)]
    bundle: Option<PathBuf>,
    /// speck binary for the board when building the bundle.
    #[arg(long, conflicts_with = "bundle")]
    binary: Option<PathBuf>,
    /// Model to ship when building the bundle.
    #[arg(long, conflicts_with = "bundle")]
    model: Option<PathBuf>,
}

impl BundleSource {
    /// The bundle and its `.tar.gz` bytes.
    pub fn load(&self, target: &Target) -> Result<(Bundle, Vec<u8>)> {
        match &self.bundle {
            Some(p) => {
                let bytes = std::fs::read(p).with_context(|| format!("reading {}", p.display()))?;
                let b = Bundle::read_tar_gz(&bytes[..]).with_context(|| p.display().to_string())?;
                Ok((b, bytes))
            }
            None => build(target, self.binary.clone(), self.model.clone()),
        }
    }
}

/// Assemble the bundle for `target` from a binary (default: built for it) and a model
/// (default: the board's `defaults.model` from `models/`); returns it with its `.tar.gz` bytes.
pub fn build(
    target: &Target,
    binary: Option<PathBuf>,
    model: Option<PathBuf>,
) -> Result<(Bundle, Vec<u8>)> {
    let binary_path = match binary {
        Some(b) => b,
        None => default_binary(target)?,
    };
    let binary = std::fs::read(&binary_path)
        .with_context(|| format!("reading {}", binary_path.display()))?;
    check_binary(target, &binary).with_context(|| binary_path.display().to_string())?;
    // No --model: the board's own default (`defaults.model`, the int8 detector on the
    // aarch64 boards), looked up where the shipped models are.
    let model_path = model_path::resolve_named(model, &target.defaults.model)?;
    let (model_name, model) = board_model(target, &model_path)?;
    let bundle = Bundle::assemble(BundleInputs {
        target,
        binary,
        model: (model_name, model),
        version: env!("CARGO_PKG_VERSION").to_string(),
    })?;
    let mut bytes = Vec::new();
    bundle.write_tar_gz(&mut bytes)?;
    Ok((bundle, bytes))
}

/// The model file for the board: as given, except an ONNX model for a board whose speck has
/// no ONNX importer, which is compiled here for the board's CPU (`<stem>.speck`).
fn board_model(target: &Target, path: &Path) -> Result<(String, Vec<u8>)> {
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .context("model path has no file name")?
        .to_string();
    let bytes = std::fs::read(path).with_context(|| format!("reading model {}", path.display()))?;
    if target.build.default_features || speck::model::compiled::has_magic(&bytes) {
        return Ok((name, bytes));
    }
    compile_for_board(target, path)
}

#[cfg(feature = "onnx")]
fn compile_for_board(target: &Target, path: &Path) -> Result<(String, Vec<u8>)> {
    let cpu = speck::model::Target::parse(&target.name)
        .or_else(|| speck::model::Target::parse(&target.kernels.isa))
        .unwrap_or_else(speck::model::Target::generic);
    log::info!(
        "compiling {} for {} ({}): the board's speck loads compiled models only",
        path.display(),
        target.name,
        cpu.name
    );
    let c = super::compile::compile(path, cpu, true)
        .with_context(|| format!("compiling {} for {}", path.display(), target.name))?;
    let stem = path
        .file_stem()
        .and_then(|n| n.to_str())
        .context("model path has no file name")?;
    Ok((format!("{stem}.speck"), c.bytes))
}

#[cfg(not(feature = "onnx"))]
fn compile_for_board(target: &Target, path: &Path) -> Result<(String, Vec<u8>)> {
    bail!(
        "{} is an ONNX model and speck for {} loads compiled models only; this speck cannot \
         compile (built without the ONNX importer): pass --model FILE.speck made by \
         `speck compile {} --target {}`",
        path.display(),
        target.name,
        path.display(),
        target.name
    )
}

/// The host binary when the board is the host; otherwise what `targets/build.sh` builds.
fn default_binary(target: &Target) -> Result<PathBuf> {
    let host = format!("{}-unknown-linux-gnu", std::env::consts::ARCH);
    if target.build.triple == host {
        return std::env::current_exe().context("locating the running speck binary");
    }
    let script = [
        PathBuf::from("targets/build.sh"),
        Path::new(env!("CARGO_MANIFEST_DIR")).join("targets/build.sh"),
    ]
    .into_iter()
    .find(|p| p.is_file());
    let Some(script) = script else {
        bail!(
            "no --binary given and targets/build.sh not found: build speck for {} and pass --binary",
            target.name
        );
    };
    log::info!(
        "building speck for {} with {}",
        target.name,
        script.display()
    );
    let out = std::process::Command::new("bash")
        .arg(&script)
        .arg(&target.name)
        .stderr(std::process::Stdio::inherit())
        .output()
        .with_context(|| format!("running {}", script.display()))?;
    if !out.status.success() {
        bail!("{} {} failed", script.display(), target.name);
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let path = text.lines().last().unwrap_or("").trim();
    if path.is_empty() {
        bail!("{} printed no binary path", script.display());
    }
    Ok(PathBuf::from(path))
}

/// Write via a temporary file beside `path`, so a failed run leaves no half bundle.
/// Create `path`'s folder and check a file can be written next to it (removed again).
fn check_writable(path: &Path) -> Result<()> {
    if path.is_dir() {
        anyhow::bail!(
            "{} is a folder; give the bundle's file name",
            path.display()
        );
    }
    if let Some(d) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
    }
    let probe = path.with_extension("tmp-speck");
    std::fs::write(&probe, b"").with_context(|| format!("cannot write {}", path.display()))?;
    std::fs::remove_file(&probe).ok();
    Ok(())
}

fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty());
    let tmp = path.with_extension("tmp-speck");
    if let Some(d) = dir {
        std::fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
    }
    std::fs::write(&tmp, bytes).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}
