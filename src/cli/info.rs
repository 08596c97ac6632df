//! `speck info`: what is in a model and what it costs.

use super::{model_path, EngineArgs};
use anyhow::Result;
use serde_json::json;
use std::path::PathBuf;
use std::process::ExitCode;

/// Arguments of `speck info`.
#[derive(clap::Args, Debug)]
#[command(after_help = "Examples:\n  speck info\n  speck info model.onnx --json")]
pub struct Args {
    /// ONNX or compiled .speck model (default: the shipped speck-tiny).
    model: Option<PathBuf>,
    /// Print JSON.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    engine: EngineArgs,
}

fn mib(b: usize) -> String {
    format!("{:.2} MiB", b as f64 / (1024.0 * 1024.0))
}

pub fn run(a: Args) -> Result<ExitCode> {
    let path = model_path::resolve(a.model)?;
    let engine = speck::Engine::load(&path, &a.engine.options())?;
    let g = engine.graph();
    let params = engine.parameter_count();
    let macs = g.macs();
    let macs_by_kind = g.macs_by_kind();
    let ops = g.op_histogram();
    let inputs: Vec<_> = engine
        .inputs()
        .map(|(n, s)| json!({"name": n, "shape": s}))
        .collect();
    let outputs: Vec<_> = engine
        .outputs()
        .map(|(n, s)| json!({"name": n, "shape": s}))
        .collect();
    if a.json {
        let v = json!({
            "model": path.display().to_string(),
            "nodes": g.nodes.len(),
            "ops": ops,
            "parameters": params,
            "weight_bytes": engine.weight_bytes(),
            "macs": macs,
            "macs_by_kind": macs_by_kind,
            "peak_activation_bytes": engine.activation_bytes(),
            "unshared_activation_bytes": engine.unshared_activation_bytes(),
            "inputs": inputs,
            "outputs": outputs,
            "metadata": g.metadata,
            "passes": engine.pass_log,
        });
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!("model        {}", path.display());
    for (n, s) in engine.inputs() {
        println!("input        {n} {s:?}");
    }
    for (n, s) in engine.outputs() {
        println!("output       {n} {s:?}");
    }
    println!(
        "parameters   {params} ({} as stored)",
        mib(engine.weight_bytes())
    );
    println!("MACs         {:.3} G", macs as f64 / 1e9);
    let mut kinds: Vec<_> = macs_by_kind.iter().collect();
    kinds.sort_by_key(|&(k, m)| (std::cmp::Reverse(*m), k.clone()));
    for (k, m) in kinds {
        println!("  {:7.2} M  {k}", *m as f64 / 1e6);
    }
    println!(
        "activations  {} peak with buffer reuse ({} without)",
        mib(engine.activation_bytes()),
        mib(engine.unshared_activation_bytes())
    );
    println!("nodes        {}", g.nodes.len());
    for (op, n) in &ops {
        println!("  {n:4} {op}");
    }
    for p in &engine.pass_log {
        println!("pass         {p}");
    }
    for (k, v) in &g.metadata {
        println!("metadata     {k} = {v}");
    }
    Ok(ExitCode::SUCCESS)
}
