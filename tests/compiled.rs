#![cfg(feature = "onnx")] // compiles models from ONNX
//! Compiled models (`speck compile`, `.speck` files): outputs equal to the ONNX-loaded model's
//! bit for bit, loading by magic bytes, and clean errors on corrupt or mismatched files.

use speck::model::compiled;
use speck::{Engine, EngineOptions, Tensor};
use std::path::{Path, PathBuf};

mod common;
use common::{assert_clean_failure, root, speck, speck_at, stderr};

const DEFAULT_MODEL: &str = "models/speck-tiny.onnx";
const IMAGE: &str = "examples/data/images/0003_000000.jpg";

fn compile(model: &str, out: &Path, extra: &[&str]) {
    let mut args = vec!["compile", model, "-o", out.to_str().unwrap()];
    args.extend(extra);
    let o = speck(&args);
    assert!(o.status.success(), "{}", stderr(&o));
}

fn input_for(e: &Engine) -> Vec<Tensor> {
    let mut s = 0x1234_5678u32;
    e.inputs()
        .map(|(_, shape)| {
            let v = (0..shape.iter().product())
                .map(|_| {
                    s ^= s << 13;
                    s ^= s >> 17;
                    s ^= s << 5;
                    (s as f32 / u32::MAX as f32) * 4.0 - 2.0
                })
                .collect();
            Tensor::from_f32(shape, v).unwrap()
        })
        .collect()
}

fn bits(t: &Tensor) -> Vec<u32> {
    t.as_f32().unwrap().iter().map(|v| v.to_bits()).collect()
}

/// The compiled file runs the same kernels on the same weights (int8 ones from their stored
/// packing): identical bits.
#[test]
fn compiled_output_equals_onnx_bit_for_bit() {
    let dir = tempfile::tempdir().unwrap();
    for (model, threads) in [
        (DEFAULT_MODEL, 1),
        ("models/reference/mnv3s_224.onnx", 1),
        ("models/reference/mnv3l_224.onnx", 2),
        // int8: GEMM weights stored packed, depthwise in ONNX order
        ("models/speck-tiny-int8.onnx", 2),
    ] {
        let out = dir.path().join("m.speck");
        compile(model, &out, &[]);
        let opts = EngineOptions {
            threads,
            ..Default::default()
        };
        let mut onnx = Engine::load(root().join(model), &opts).unwrap();
        let mut comp = Engine::load(&out, &opts).unwrap();
        assert_eq!(onnx.pass_log, comp.pass_log, "{model}");
        assert_eq!(onnx.graph().nodes.len(), comp.graph().nodes.len());
        let x = input_for(&onnx);
        let (a, b) = (onnx.run(&x).unwrap(), comp.run(&x).unwrap());
        assert_eq!(a.len(), b.len());
        for (i, (a, b)) in a.iter().zip(&b).enumerate() {
            assert_eq!(a.shape(), b.shape());
            assert!(bits(a) == bits(b), "{model}: output {i} differs");
        }
    }
}

#[test]
fn detect_on_compiled_model_matches_onnx_and_extension_does_not_matter() {
    let dir = tempfile::tempdir().unwrap();
    // named .onnx on purpose: loading goes by the magic bytes
    let out = dir.path().join("tiny-compiled.onnx");
    compile(DEFAULT_MODEL, &out, &["--target", "host"]);
    let a = speck(&["detect", IMAGE, "--json", "--model", out.to_str().unwrap()]);
    let b = speck(&["detect", IMAGE, "--json", "--model", DEFAULT_MODEL]);
    assert!(a.status.success(), "{}", stderr(&a));
    assert_eq!(a.stdout, b.stdout);
    assert!(!a.stdout.is_empty());
    // and an ONNX file named .speck still loads as ONNX
    let renamed = dir.path().join("really-onnx.speck");
    std::fs::copy(root().join(DEFAULT_MODEL), &renamed).unwrap();
    let c = speck(&[
        "detect",
        IMAGE,
        "--json",
        "--model",
        renamed.to_str().unwrap(),
    ]);
    assert_eq!(c.stdout, b.stdout, "{}", stderr(&c));
}

#[test]
fn info_bench_and_infer_take_compiled_models() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("tiny.speck");
    compile(DEFAULT_MODEL, &out, &[]);
    let p = out.to_str().unwrap();
    let info = speck(&["info", p, "--json"]);
    assert!(info.status.success(), "{}", stderr(&info));
    let v: serde_json::Value = serde_json::from_slice(&info.stdout).unwrap();
    let reference: serde_json::Value =
        serde_json::from_slice(&speck(&["info", DEFAULT_MODEL, "--json"]).stdout).unwrap();
    for key in [
        "nodes",
        "parameters",
        "macs",
        "metadata",
        "passes",
        "outputs",
    ] {
        assert_eq!(v[key], reference[key], "{key}");
    }
    let bench = speck(&["bench", p, "--runs", "2", "--warmup", "0", "--json"]);
    assert!(bench.status.success(), "{}", stderr(&bench));
    let x = dir.path().join("x.npy");
    let e = Engine::load(&out, &Default::default()).unwrap();
    ndarray_npy::write_npy(&x, input_for(&e)[0].as_f32().unwrap()).unwrap();
    let outs = dir.path().join("outs");
    let infer = speck(&[
        "infer",
        p,
        x.to_str().unwrap(),
        "--out",
        outs.to_str().unwrap(),
    ]);
    assert!(infer.status.success(), "{}", stderr(&infer));
    assert!(outs.join("heatmap.npy").is_file());
}

#[test]
fn compile_json_summary_and_no_optimize() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("raw.speck");
    let o = speck(&[
        "compile",
        DEFAULT_MODEL,
        "-o",
        out.to_str().unwrap(),
        "--no-optimize",
        "--json",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["target"], "generic");
    assert_eq!(v["passes"], serde_json::json!([]));
    assert_eq!(
        v["file_bytes"].as_u64().unwrap(),
        std::fs::metadata(&out).unwrap().len()
    );
    let m = compiled::load(&out).unwrap();
    assert!(!m.passes_applied);
    // unoptimised graph: more nodes than the optimised one
    let opt = Engine::load(root().join(DEFAULT_MODEL), &Default::default()).unwrap();
    assert!(m.graph.nodes.len() > opt.graph().nodes.len());
}

#[test]
fn compile_rejects_bad_arguments() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("x.speck");
    let o = speck(&[
        "compile",
        DEFAULT_MODEL,
        "--target",
        "pdp11",
        "-o",
        out.to_str().unwrap(),
    ]);
    assert_clean_failure(&o, "unknown target 'pdp11'");
    assert_clean_failure(
        &speck(&["compile", "no/such.onnx", "-o", out.to_str().unwrap()]),
        "cannot read",
    );
    assert!(!out.exists());
}

/// A compiled file with a corruption applied, and the error `speck detect` must give.
fn corrupt_cases(good: &[u8]) -> Vec<(&'static str, Vec<u8>, &'static str)> {
    let mut flipped = good.to_vec();
    let at = good.len() - 1000;
    flipped[at] ^= 0x10;
    let mut version = good.to_vec();
    version[8] = 99;
    let mut magic = good.to_vec();
    magic[0] = b'S';
    let mut header = good.to_vec();
    header[20] ^= 1; // file length field
    vec![
        ("flipped weight byte", flipped, "checksum mismatch"),
        (
            "truncated",
            good[..good.len() / 3].to_vec(),
            "truncated compiled model",
        ),
        ("cut in the header", good[..40].to_vec(), "truncated"),
        (
            "future version",
            version,
            "format version 99 is not supported",
        ),
        ("header flip", header, "header checksum mismatch"),
        // no longer a compiled model: goes to the ONNX importer, which refuses it
        ("wrong magic", magic, "not a valid ONNX model"),
    ]
}

#[test]
fn corrupt_files_fail_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let good_path = dir.path().join("good.speck");
    compile("models/reference/mnv3s_224.onnx", &good_path, &[]);
    let good = std::fs::read(&good_path).unwrap();
    for (what, bytes, needle) in corrupt_cases(&good) {
        eprintln!("case: {what}");
        let p = dir.path().join("bad.speck");
        std::fs::write(&p, bytes).unwrap();
        let o = speck(&["info", p.to_str().unwrap()]);
        assert_clean_failure(&o, needle);
    }
}

#[test]
fn foreign_target_fails_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let foreign = if cfg!(target_arch = "aarch64") {
        "x86_64"
    } else {
        "rpi5"
    };
    let out = dir.path().join("foreign.speck");
    compile(DEFAULT_MODEL, &out, &["--target", foreign]);
    let o = speck(&["detect", IMAGE, "--model", out.to_str().unwrap()]);
    assert_clean_failure(&o, "which this CPU cannot run");
}

/// The device build (no ONNX importer) detects exactly what the full build does, from a
/// compiled model. CI builds it and names it in `SPECK_NO_ONNX_BIN` (see `.ci/run`).
#[test]
fn device_build_runs_compiled_model() {
    let Some(bin) = std::env::var_os("SPECK_NO_ONNX_BIN") else {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must set SPECK_NO_ONNX_BIN to the binary built with --no-default-features"
        );
        eprintln!(
            "skipped: SPECK_NO_ONNX_BIN is not set (a speck built with --no-default-features)"
        );
        return;
    };
    let bin = PathBuf::from(bin);
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("tiny.speck");
    compile(DEFAULT_MODEL, &out, &[]);
    let p = out.to_str().unwrap();
    let a = speck_at(&bin, &["detect", IMAGE, "--json", "--model", p]);
    assert!(a.status.success(), "{}", stderr(&a));
    let b = speck(&["detect", IMAGE, "--json", "--model", DEFAULT_MODEL]);
    assert_eq!(a.stdout, b.stdout);
    // ONNX files and ONNX-only subcommands explain what is missing
    let o = speck_at(&bin, &["info", DEFAULT_MODEL]);
    assert_clean_failure(&o, "built without the ONNX importer");
    let o = speck_at(&bin, &["compile", DEFAULT_MODEL, "-o", p]);
    assert_clean_failure(&o, "`speck compile` reads ONNX models");
    let o = speck_at(&bin, &["quantize", DEFAULT_MODEL]);
    assert_clean_failure(&o, "`speck quantize` reads ONNX models");
    // Built without the v4l2 feature too (as the 32-bit Arm build is): cameras point to ffmpeg.
    let o = speck_at(
        &bin,
        &[
            "run",
            "--source",
            "/dev/video0",
            "--model",
            p,
            "--max-frames",
            "1",
        ],
    );
    assert_clean_failure(&o, "built without V4L2 capture");
}
