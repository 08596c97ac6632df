//! `speck infer`: raw tensors in, raw tensors out.

use super::EngineArgs;
use anyhow::{bail, Context, Result};
use ndarray::ArrayD;
use std::path::PathBuf;
use std::process::ExitCode;

/// Arguments of `speck infer`.
#[derive(clap::Args, Debug)]
#[command(
    after_help = "Example:\n  speck infer model.onnx input.npy --out outs/   # writes outs/<output>.npy"
)]
pub struct Args {
    /// ONNX or compiled .speck model.
    model: PathBuf,
    /// One float32 .npy per model input, in the model's input order.
    #[arg(required = true)]
    inputs: Vec<PathBuf>,
    /// Output directory (one .npy per model output, named after it).
    #[arg(long)]
    out: PathBuf,
    #[command(flatten)]
    engine: EngineArgs,
}

/// File-system-safe version of an output name.
fn file_name(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._-".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect()
}

pub fn run(a: Args) -> Result<ExitCode> {
    let mut engine = speck::Engine::load(&a.model, &a.engine.options())?;
    let mut tensors = vec![];
    for p in &a.inputs {
        let arr: ArrayD<f32> = ndarray_npy::read_npy(p)
            .with_context(|| format!("reading {} (expected a float32 .npy)", p.display()))?;
        tensors.push(speck::Tensor::F32(arr));
    }
    let n = engine.inputs().count();
    if tensors.len() != n {
        let names: Vec<&str> = engine.inputs().map(|(n, _)| n).collect();
        bail!(
            "the model takes {n} input(s) ({}), got {} file(s)",
            names.join(", "),
            tensors.len()
        );
    }
    let names: Vec<String> = engine.outputs().map(|(n, _)| n.to_string()).collect();
    let outs = engine.run(&tensors)?;
    std::fs::create_dir_all(&a.out).with_context(|| format!("creating {}", a.out.display()))?;
    for (name, t) in names.iter().zip(outs) {
        let path = a.out.join(format!("{}.npy", file_name(name)));
        let arr = t.as_f32().context("non-f32 output")?;
        ndarray_npy::write_npy(&path, arr)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(ExitCode::SUCCESS)
}
