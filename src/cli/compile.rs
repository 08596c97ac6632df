//! `speck compile`: an ONNX model to a compiled `.speck` file that loads without the importer.

use anyhow::{anyhow, Context, Result};
use serde_json::json;
use speck::model::compiled;
use speck::model::Target;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

/// Arguments of `speck compile`.
#[derive(clap::Args, Debug)]
#[command(after_help = "Examples:
  speck compile models/speck-tiny.onnx -o speck-tiny.speck
  speck compile models/speck-tiny.onnx --target rpi5 -o speck-tiny-rpi5.speck
  speck detect examples/data/images --model speck-tiny.speck

Targets: generic (any CPU, the default), host (this CPU), x86_64, x86_64-avx2, x86_64-avx512,
x86_64-avx512vnni, aarch64, aarch64-dotprod, armv7-neon, and the boards rpi4, rpi5,
jetson-orin, rpi-armv7. A file compiled for a target loads only on CPUs that have its
features.")]
pub struct Args {
    /// ONNX model to compile.
    model: PathBuf,
    /// Output file (default: the model's path with the extension .speck).
    #[arg(short, long)]
    output: Option<PathBuf>,
    /// CPU the compiled data is laid out for (see below).
    #[arg(long, default_value = "generic")]
    target: String,
    /// Store the graph without speck's passes (BN folding, activation fusion, LGA rewrite).
    #[arg(long)]
    no_optimize: bool,
    /// Print a JSON summary.
    #[arg(long)]
    json: bool,
}

pub fn run(a: Args) -> Result<ExitCode> {
    let target = Target::parse(&a.target).ok_or_else(|| {
        anyhow!(
            "unknown target '{}' (one of: {})",
            a.target,
            Target::names().join(", ")
        )
    })?;
    let out = a
        .output
        .clone()
        .unwrap_or_else(|| a.model.with_extension("speck"));
    if out == a.model {
        anyhow::bail!("the output {} would overwrite the model", out.display());
    }
    let t0 = Instant::now();
    let Compiled {
        graph: g,
        pass_log,
        bytes,
    } = compile(&a.model, target, !a.no_optimize)?;
    std::fs::write(&out, &bytes).with_context(|| format!("writing {}", out.display()))?;
    let bytes = bytes.len();
    let weights: usize = {
        let mut seen = std::collections::HashSet::new();
        g.values
            .iter()
            .filter_map(|v| v.constant.as_ref())
            .filter(|c| seen.insert(std::sync::Arc::as_ptr(c)))
            .map(|c| c.byte_len())
            .sum()
    };
    let secs = t0.elapsed().as_secs_f64();
    if a.json {
        let v = json!({
            "model": a.model.display().to_string(),
            "output": out.display().to_string(),
            "target": target.name,
            "format_version": compiled::FORMAT_VERSION,
            "nodes": g.nodes.len(),
            "weight_bytes": weights,
            "file_bytes": bytes,
            "passes": pass_log,
            "seconds": secs,
        });
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!("model     {}", a.model.display());
    println!("output    {}", out.display());
    println!("target    {}", target.name);
    println!("nodes     {}", g.nodes.len());
    println!(
        "size      {:.2} MiB ({:.2} MiB of weights)",
        bytes as f64 / 1048576.0,
        weights as f64 / 1048576.0
    );
    for p in &pass_log {
        println!("pass      {p}");
    }
    println!("took      {secs:.2} s");
    Ok(ExitCode::SUCCESS)
}

/// A model compiled in memory.
pub struct Compiled {
    /// The graph as stored.
    pub graph: speck::model::Graph,
    /// What the passes did.
    pub pass_log: Vec<String>,
    /// The `.speck` file.
    pub bytes: Vec<u8>,
}

/// Import, optimise (unless `optimize` is false), check that the engine can plan it, and
/// encode as a `.speck` file for `target`.
pub fn compile(model: &Path, target: Target, optimize: bool) -> Result<Compiled> {
    let mut g = speck::onnx::load(model, &Default::default())?;
    // As Engine::new does (the file does not keep the integer constants the lowering needs)
    let pass_log = if optimize {
        speck::passes::prepare(&mut g, true)
    } else {
        vec![]
    };
    compiled::check_graph(&g).context("the optimised graph is not valid")?;
    // Plan it once, so a graph the engine cannot run fails here and not on the device.
    let opts = speck::EngineOptions {
        optimize: false,
        ..Default::default()
    };
    speck::Engine::new(g.clone(), &opts).context("planning the graph")?;
    let source = model
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let bytes = compiled::to_bytes(&g, target, optimize, &pass_log, &source);
    Ok(Compiled {
        graph: g,
        pass_log,
        bytes,
    })
}
