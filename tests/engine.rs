//! Engine-level checks on real models: optimised kernels and graph passes against the plain
//! reference path, and thread counts against each other.

use speck::{Engine, EngineOptions, Tensor};

const MODELS: &[&str] = &["models/reference/mnv3s_224.onnx", "models/speck-tiny.onnx"];

fn path(p: &str) -> String {
    format!("{}/{p}", env!("CARGO_MANIFEST_DIR"))
}

fn random_input(e: &Engine, seed: u32) -> Vec<Tensor> {
    let mut s = seed.max(1);
    e.inputs()
        .map(|(_, shape)| {
            let n = shape.iter().product();
            let v = (0..n)
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

fn max_rel_err(a: &Tensor, b: &Tensor) -> f32 {
    let (a, b) = (a.as_f32().unwrap(), b.as_f32().unwrap());
    assert_eq!(a.shape(), b.shape());
    let range = a.iter().fold(f32::NEG_INFINITY, |m, v| m.max(*v))
        - a.iter().fold(f32::INFINITY, |m, v| m.min(*v));
    let err = a
        .iter()
        .zip(b.iter())
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max);
    err / range.max(1.0)
}

fn run(model: &str, opts: EngineOptions) -> Vec<Tensor> {
    let mut e = Engine::load(path(model), &opts).unwrap();
    let x = random_input(&e, 7);
    e.run(&x).unwrap()
}

#[test]
fn optimised_engine_matches_reference_path() {
    for m in MODELS {
        let reference = run(
            m,
            EngineOptions {
                optimize: false,
                reference_only: true,
                threads: 1,
                int8: false,
                fp16: false,
            },
        );
        let fast = run(m, EngineOptions::default());
        for (r, f) in reference.iter().zip(&fast) {
            let e = max_rel_err(r, f);
            assert!(e <= 1e-4, "{m}: relative error {e}");
        }
    }
}

#[test]
fn thread_counts_agree() {
    for m in MODELS {
        let one = run(
            m,
            EngineOptions {
                threads: 1,
                ..Default::default()
            },
        );
        let two = run(
            m,
            EngineOptions {
                threads: 2,
                ..Default::default()
            },
        );
        for (a, b) in one.iter().zip(&two) {
            assert!(max_rel_err(a, b) <= 1e-5, "{m}");
        }
    }
}

#[test]
fn batch_runs_equal_single_runs() {
    let m = "models/speck-tiny.onnx";
    let mut single = Engine::load(path(m), &EngineOptions::default()).unwrap();
    let inputs: Vec<Vec<Tensor>> = (1..=5).map(|s| random_input(&single, s)).collect();
    let expected: Vec<Vec<Tensor>> = inputs.iter().map(|x| single.run(x).unwrap()).collect();
    for threads in [1, 2, 3] {
        let mut e = Engine::load(
            path(m),
            &EngineOptions {
                threads,
                ..Default::default()
            },
        )
        .unwrap();
        e.enable_profiling();
        // Batches smaller and larger than the worker count, twice (workspaces are reused).
        for n in [1, 2, 5, 5] {
            let got = e.run_batch(&inputs[..n]).unwrap();
            assert_eq!(got.len(), n);
            for (i, (g, x)) in got.iter().zip(&expected).enumerate() {
                for (a, b) in g.iter().zip(x) {
                    assert!(max_rel_err(b, a) <= 1e-5, "{threads} threads, input {i}");
                }
            }
        }
        assert!(e
            .profile()
            .unwrap()
            .iter()
            .any(|p| p.total > std::time::Duration::ZERO));
        // The single-run workspace is intact after batches.
        let again = e.run(&inputs[4]).unwrap();
        assert!(max_rel_err(&expected[4][0], &again[0]) <= 1e-5);
    }
}

#[test]
fn a_bad_input_anywhere_in_a_batch_is_an_error() {
    let mut e = Engine::load(
        path(MODELS[0]),
        &EngineOptions {
            threads: 2,
            ..Default::default()
        },
    )
    .unwrap();
    let good = random_input(&e, 3);
    let bad = vec![Tensor::zeros_f32(&[1, 3, 32, 32])];
    let err = e
        .run_batch(&[good.clone(), bad, good])
        .unwrap_err()
        .to_string();
    assert!(err.contains("[1, 3, 224, 224]"), "{err}");
    assert!(e.run_batch(&[]).unwrap().is_empty());
}

#[test]
fn default_model_uses_the_lga_rewrite_and_fusions() {
    let e = Engine::load(path("models/speck-tiny.onnx"), &EngineOptions::default()).unwrap();
    let ops = e.graph().op_histogram();
    assert!(
        ops.contains_key("HeadChannelSum"),
        "LGA rewrite applied: {ops:?}"
    );
    assert!(
        !ops.contains_key("BatchNormalization"),
        "BN folded: {ops:?}"
    );
    // The three LDA-AQU upsamplers: sampling and attention fused, no GridSample left.
    assert_eq!(ops.get("LdaAqu"), Some(&3), "LDA-AQU fused: {ops:?}");
    assert!(!ops.contains_key("GridSample"), "{ops:?}");
    assert!(e.pass_log.iter().any(|l| l.contains("activation fused")));
    assert!(e.pass_log.iter().any(|l| l.contains("LDA-AQU")));
}

#[test]
fn wrong_input_shape_is_an_error() {
    let mut e = Engine::load(path(MODELS[0]), &EngineOptions::default()).unwrap();
    let x = Tensor::zeros_f32(&[1, 3, 32, 32]);
    let err = e.run(&[x]).unwrap_err().to_string();
    assert!(err.contains("[1, 3, 224, 224]"), "{err}");
}

#[test]
fn nan_input_gives_nan_output_not_a_crash() {
    let mut e = Engine::load(path(MODELS[0]), &EngineOptions::default()).unwrap();
    let x = Tensor::from_f32(&[1, 3, 224, 224], vec![f32::NAN; 3 * 224 * 224]).unwrap();
    let out = e.run(&[x]).unwrap();
    assert!(out[0].as_f32().unwrap().iter().any(|v| v.is_nan()));
}

#[test]
fn kernels_run_on_exactly_the_requested_threads() {
    // Outside the engine's own pool, rayon loops would use every core whatever `--threads`.
    for threads in [1, 2] {
        let opts = EngineOptions {
            threads,
            ..EngineOptions::default()
        };
        let mut e = Engine::load(path(MODELS[0]), &opts).unwrap();
        let x = Tensor::zeros_f32(&[1, 3, 224, 224]);
        let mut seen = vec![];
        let mut obs =
            |_: &str, _: ndarray::ArrayViewD<f32>| seen.push(rayon::current_num_threads());
        e.run_observed(&[x], Some(&mut obs)).unwrap();
        assert!(
            !seen.is_empty() && seen.iter().all(|&n| n == threads),
            "{threads} threads: {seen:?}"
        );
    }
}

#[test]
fn tiled_detection_is_the_same_on_any_thread_count() {
    use speck::detect::{RgbFrame, TileOptions};
    use speck::Detector;
    let img = image::open(path("examples/data/images/0003_000000.jpg"))
        .unwrap()
        .to_rgb8();
    let frame = RgbFrame {
        data: img.as_raw(),
        width: img.width() as usize,
        height: img.height() as usize,
    };
    let opts = TileOptions {
        tile: (384, 384),
        ..Default::default()
    };
    let detect = |threads| {
        let mut d = Detector::load(
            path("models/speck-tiny.onnx"),
            &EngineOptions {
                threads,
                ..Default::default()
            },
        )
        .unwrap();
        // Twice: the second frame reuses the tile buffers and workspaces.
        d.detect_tiled(frame, &opts).unwrap();
        d.detect_tiled(frame, &opts).unwrap()
    };
    let one = detect(1);
    assert!(!one.is_empty(), "the sample frame has people");
    for threads in [2, 3] {
        let many = detect(threads);
        assert_eq!(one.len(), many.len(), "{threads} threads");
        for (a, b) in one.iter().zip(&many) {
            assert_eq!(a.class_id, b.class_id);
            assert!((a.score - b.score).abs() < 1e-4, "{a:?} vs {b:?}");
            for k in 0..4 {
                assert!((a.bbox[k] - b.bbox[k]).abs() < 1e-2, "{a:?} vs {b:?}");
            }
        }
    }
}

#[test]
fn macs_by_kind_split_mobilenet_v3_small_as_its_onnx_file_does() {
    // Per-kind MACs of the torchvision export, counted from the ONNX file's Conv and Gemm
    // shapes (onnx + shape inference): 1x1 41.56 M, depthwise 5x5 5.88 M, 3x3 5.42 M (stem),
    // depthwise 3x3 1.58 M, fully connected 1.61 M (classifier) + 0.46 M (squeeze-excite).
    let e = Engine::load(
        path("models/reference/mnv3s_224.onnx"),
        &EngineOptions::default(),
    )
    .unwrap();
    let k = e.graph().macs_by_kind();
    let m = |name: &str| k.get(name).copied().unwrap_or(0) as f64 / 1e6;
    let near = |got: f64, want: f64| (got - want).abs() < 0.01;
    assert!(near(m("conv 1x1"), 41.56), "{k:?}");
    assert!(near(m("conv depthwise 5x5"), 5.88), "{k:?}");
    assert!(near(m("conv depthwise 3x3"), 1.58), "{k:?}");
    assert!(near(m("conv 3x3"), 5.42), "{k:?}");
    assert!(near(m("fully connected"), 1.61 + 0.46), "{k:?}");
    assert_eq!(k.values().sum::<u64>(), e.graph().macs());
}

#[cfg(feature = "onnx")] // imports the graph itself, to count before planning
#[test]
fn planned_engine_keeps_one_copy_of_the_weights() {
    for (model, int8) in [
        ("models/speck-tiny.onnx", false),
        ("models/speck-tiny-int8.onnx", true),
    ] {
        let g = speck::onnx::load(path(model), &Default::default()).unwrap();
        let opts = EngineOptions {
            threads: 1,
            ..Default::default()
        };
        let mut e = Engine::new(g.clone(), &opts).unwrap();
        // Counted before planning released anything: the same as the unplanned graph's
        // (after the same passes, which fold and fuse constants).
        let mut passed = g;
        if int8 {
            speck::passes::lower_int8(&mut passed);
        }
        speck::passes::optimize(&mut passed);
        assert_eq!(e.parameter_count(), passed.parameter_count(), "{model}");
        assert_eq!(e.weight_bytes(), passed.weight_bytes(), "{model}");
        // Conv weights live only in the packed kernels now.
        let held: usize = e
            .graph()
            .values
            .iter()
            .filter_map(|v| v.constant.as_ref().map(|c| c.byte_len()))
            .sum();
        assert!(
            held * 10 < e.weight_bytes(),
            "{model}: the graph still holds {held} of {} weight bytes",
            e.weight_bytes()
        );
        // and the plan still runs as before (the reference path reads its own constants)
        let x = random_input(&e, 7); // the seed `run` uses
        let got = e.run(&x).unwrap();
        let want = run(
            model,
            EngineOptions {
                reference_only: true,
                ..opts.clone()
            },
        );
        for (a, b) in want.iter().zip(&got) {
            assert!(max_rel_err(a, b) < 1e-3, "{model}");
        }
    }
}
