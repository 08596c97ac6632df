//! `speck bench`: latency of one model on this machine.

use super::{model_path, EngineArgs};
use anyhow::Result;
use serde_json::json;
use speck::exec::footprint;
use speck::Tensor;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

/// Arguments of `speck bench`.
#[derive(clap::Args, Debug)]
#[command(
    after_help = "Examples:\n  speck bench --threads 2\n  speck bench model.onnx --runs 100 --profile\n  speck bench --json"
)]
pub struct Args {
    /// ONNX or compiled .speck model (default: the shipped speck-tiny).
    model: Option<PathBuf>,
    /// Timed runs.
    #[arg(long, default_value_t = 30)]
    runs: usize,
    /// Untimed warm-up runs.
    #[arg(long, default_value_t = 3)]
    warmup: usize,
    /// Add per-op times.
    #[arg(long)]
    profile: bool,
    /// Print JSON.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    engine: EngineArgs,
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1u64 << 20) as f64
}

pub fn run(a: Args) -> Result<ExitCode> {
    // What the process holds before any model (binary, libraries, runtime): the footprint
    // line reports the model's share on top of it.
    let startup = footprint::rss_bytes();
    let path = model_path::resolve(a.model)?;
    let mut engine = speck::Engine::load(&path, &a.engine.options())?;
    // Deterministic pseudo-random input in [-1, 1].
    let mut seed = 0x2545_f491_u32;
    let inputs: Vec<Tensor> = engine
        .inputs()
        .map(|(_, s)| {
            let n = s.iter().product();
            let data = (0..n)
                .map(|_| {
                    seed ^= seed << 13;
                    seed ^= seed >> 17;
                    seed ^= seed << 5;
                    (seed as f32 / u32::MAX as f32) * 2.0 - 1.0
                })
                .collect();
            Tensor::from_f32(s, data).expect("shape")
        })
        .collect();
    for _ in 0..a.warmup {
        engine.run(&inputs)?;
    }
    if a.profile {
        engine.enable_profiling();
    }
    let mut times = Vec::with_capacity(a.runs);
    for _ in 0..a.runs.max(1) {
        let t = Instant::now();
        engine.run(&inputs)?;
        times.push(t.elapsed());
    }
    times.sort();
    let (median, min, max) = (times[times.len() / 2], times[0], times[times.len() - 1]);
    let profile = engine.profile();
    // Achieved rate over the planned graph's MACs (int8 convs included).
    let gmacs = engine.graph().macs() as f64 / median.as_secs_f64() / 1e9;
    let (weights, acts) = (
        engine.weight_bytes() as u64,
        engine.activation_bytes() as u64,
    );
    let peak = footprint::rss_bytes().map(|(_, peak)| peak);
    let start = startup.map(|(now, _)| now);
    if a.json {
        let mut v = json!({
            "model": path.display().to_string(),
            "median_ms": ms(median), "min_ms": ms(min), "max_ms": ms(max),
            "threads": engine.threads(), "runs": times.len(), "gmac_per_s": gmacs,
            "weight_bytes": weights, "activation_bytes": acts,
            "peak_rss_bytes": peak, "startup_rss_bytes": start,
        });
        if let Some(p) = &profile {
            v["profile"] = p
                .iter()
                .map(
                    |s| json!({"node": s.node, "op": s.op, "ms": ms(s.total) / times.len() as f64}),
                )
                .collect();
        }
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!("model    {}", path.display());
    println!("threads  {}", engine.threads());
    println!("runs     {}", times.len());
    println!("median   {:.3} ms", ms(median));
    println!("min      {:.3} ms", ms(min));
    println!("max      {:.3} ms", ms(max));
    println!("GMAC/s   {gmacs:.1}");
    println!(
        "memory   weights {:.1} MiB, activations {:.1} MiB",
        mib(weights),
        mib(acts)
    );
    if let (Some(peak), Some(start)) = (peak, start) {
        let model = peak.saturating_sub(start);
        println!(
            "         peak RSS {:.1} MiB: {:.1} MiB at start-up + {:.1} MiB for the model \
             ({:.2}x weights + activations)",
            mib(peak),
            mib(start),
            mib(model),
            model as f64 / (weights + acts).max(1) as f64
        );
    }
    if let Some(p) = profile {
        let runs = times.len() as f64;
        let total: f64 = p.iter().map(|s| ms(s.total)).sum::<f64>() / runs;
        let mut by_op: std::collections::BTreeMap<&str, (f64, usize)> = Default::default();
        for s in &p {
            let e = by_op.entry(s.op.as_str()).or_default();
            e.0 += ms(s.total) / runs;
            e.1 += 1;
        }
        let mut rows: Vec<_> = by_op.into_iter().collect();
        rows.sort_by(|a, b| b.1 .0.total_cmp(&a.1 .0));
        println!("\n{:>9}  {:>6}  {:>5}  op", "ms/run", "share", "nodes");
        for (op, (t, n)) in rows {
            println!("{t:9.3}  {:5.1}%  {n:5}  {op}", 100.0 * t / total.max(1e-9));
        }
        let mut nodes: Vec<_> = p.iter().collect();
        nodes.sort_by_key(|n| std::cmp::Reverse(n.total));
        println!("\nslowest nodes");
        for s in nodes.iter().take(10) {
            println!("{:9.3}  {}  {}", ms(s.total) / runs, s.op, s.node);
        }
    }
    Ok(ExitCode::SUCCESS)
}
