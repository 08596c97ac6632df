//! Load time of compiled (`.speck`) models against ONNX import, as a table:
//! `cargo run --release --example compiled_load [MODEL.onnx ...] [--runs N]`.
//!
//! Columns: ONNX import + passes + plan (what `Engine::load` does for an ONNX file); the
//! compiled file's read (map, checksums, plan decode, weights copied once out of the map, int8
//! GEMM weights checked in their stored packing); planning it (kernel choice, fp32 conv weight
//! packing and int8 depthwise tap layout in `Engine::new`); and the sum.

#[cfg(feature = "onnx")]
fn main() -> anyhow::Result<()> {
    use speck::model::compiled;
    use speck::{Engine, EngineOptions};
    use std::time::{Duration, Instant};

    let mut models = vec![];
    let mut runs = 10;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--runs" => runs = args.next().and_then(|v| v.parse().ok()).unwrap_or(runs),
            _ => models.push(a),
        }
    }
    if models.is_empty() {
        models = vec![
            "models/speck-tiny.onnx".into(),
            "models/reference/mnv3s_224.onnx".into(),
            "models/reference/mnv3l_224.onnx".into(),
        ];
    }
    let median = |mut v: Vec<Duration>| {
        v.sort();
        v[v.len() / 2].as_secs_f64() * 1e3
    };
    let dir = tempfile::tempdir()?;
    println!(
        "{:<34} {:>9} {:>12} {:>12} {:>12} {:>12}",
        "model", "file MiB", "onnx ms", "read ms", "plan ms", "speck ms"
    );
    for m in &models {
        let opts = EngineOptions::default();
        let out = dir.path().join("m.speck");
        let mut g = speck::onnx::load(m, &Default::default())?;
        // (int8 lowering included, as `speck compile` does)
        let log = speck::passes::prepare(&mut g, true);
        let size = compiled::write(&out, &g, compiled::Target::generic(), true, &log, m)?;
        let (mut onnx, mut read, mut plan) = (vec![], vec![], vec![]);
        for _ in 0..runs.max(1) {
            let t = Instant::now();
            drop(Engine::load(m, &opts)?);
            onnx.push(t.elapsed());
            let t = Instant::now();
            let c = compiled::load(&out)?;
            read.push(t.elapsed());
            let t = Instant::now();
            drop(Engine::from_compiled(c, &opts)?);
            plan.push(t.elapsed());
        }
        let (r, p) = (median(read), median(plan));
        println!(
            "{:<34} {:>9.2} {:>12.2} {:>12.2} {:>12.2} {:>12.2}",
            m,
            size as f64 / 1048576.0,
            median(onnx),
            r,
            p,
            r + p
        );
    }
    Ok(())
}

#[cfg(not(feature = "onnx"))]
fn main() {
    eprintln!("this example compiles ONNX models: build it with the `onnx` feature");
    std::process::exit(1);
}
