//! Integration tests that run the built `speck` binary, as a user would.

use std::path::{Path, PathBuf};

mod common;
use common::{assert_clean_failure, root, speck, stderr};

const MNV3S: &str = "models/reference/mnv3s_224.onnx";
const DEFAULT_MODEL: &str = "models/speck-tiny.onnx";

#[test]
fn help_has_examples() {
    let o = speck(&["--help"]);
    assert!(o.status.success());
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("Examples:") && out.contains("speck detect"));
}

#[test]
fn info_reports_size_and_memory() {
    let o = speck(&["info", MNV3S, "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    // torchvision MobileNetV3-Small: 2.54 M parameters, ~56 M MACs.
    let params = v["parameters"].as_u64().unwrap();
    assert!((2_500_000..2_600_000).contains(&params), "{params}");
    let macs = v["macs"].as_u64().unwrap();
    assert!((50_000_000..65_000_000).contains(&macs), "{macs}");
    let peak = v["peak_activation_bytes"].as_u64().unwrap();
    let unshared = v["unshared_activation_bytes"].as_u64().unwrap();
    assert!(
        peak > 0 && peak * 2 < unshared,
        "buffer reuse: {peak} vs {unshared}"
    );
    assert_eq!(v["inputs"][0]["shape"], serde_json::json!([1, 3, 224, 224]));
}

#[test]
fn bench_json_has_the_contract_keys() {
    let o = speck(&["bench", MNV3S, "--runs", "2", "--warmup", "0", "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    for k in ["median_ms", "min_ms", "max_ms"] {
        assert!(v[k].as_f64().unwrap() > 0.0, "{k}");
    }
    assert_eq!(v["threads"], 1);
}

#[test]
fn detect_json_on_the_shipped_sample() {
    let o = speck(&["detect", "examples/data/images", "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(!lines.is_empty());
    let mut total = 0;
    for v in &lines {
        let (w, h) = (v["width"].as_f64().unwrap(), v["height"].as_f64().unwrap());
        for d in v["detections"].as_array().unwrap() {
            let b: Vec<f64> = d["bbox"]
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_f64().unwrap())
                .collect();
            assert!(
                b[0] >= 0.0 && b[1] >= 0.0 && b[2] <= w && b[3] <= h && b[0] < b[2] && b[1] < b[3]
            );
            assert_eq!(d["label"], "person");
            assert_eq!(d["class_id"], 0);
            let s = d["score"].as_f64().unwrap();
            assert!((0.3..=1.0).contains(&s));
            total += 1;
        }
    }
    assert!(total > 0, "the default model finds people in the sample");
}

/// Every image's boxes from `speck detect --json` (in the order of the images).
fn detections(args: &[&str]) -> Vec<Vec<[f64; 4]>> {
    let o = speck(args);
    assert!(o.status.success(), "{}", stderr(&o));
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            v["detections"]
                .as_array()
                .unwrap()
                .iter()
                .map(|d| {
                    let b = d["bbox"].as_array().unwrap();
                    std::array::from_fn(|i| b[i].as_f64().unwrap())
                })
                .collect()
        })
        .collect()
}

fn iou(a: &[f64; 4], b: &[f64; 4]) -> f64 {
    let iw = (a[2].min(b[2]) - a[0].max(b[0])).max(0.0);
    let ih = (a[3].min(b[3]) - a[1].max(b[1])).max(0.0);
    let inter = iw * ih;
    let union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter;
    if union > 0.0 {
        inter / union
    } else {
        0.0
    }
}

/// The shipped int8 detector (what the aarch64 boards' bundles carry) finds the people the
/// float one finds: most boxes of each are matched one-to-one (IoU >= 0.5) by the other.
#[test]
fn shipped_int8_model_finds_what_the_float_one_finds() {
    let int8 = "models/speck-tiny-int8.onnx";
    let f = detections(&["detect", "examples/data/images", "--json"]);
    let q = detections(&["detect", "examples/data/images", "--json", "--model", int8]);
    assert_eq!(f.len(), q.len());
    let (mut nf, mut nq, mut matched) = (0, 0, 0);
    for (a, b) in f.iter().zip(&q) {
        nf += a.len();
        nq += b.len();
        let mut used = vec![false; b.len()];
        for x in a {
            let best = (0..b.len())
                .filter(|&j| !used[j])
                .map(|j| (iou(x, &b[j]), j))
                .max_by(|p, r| p.0.total_cmp(&r.0));
            if let Some((_, j)) = best.filter(|(v, _)| *v >= 0.5) {
                used[j] = true;
                matched += 1;
            }
        }
    }
    assert!(nf > 0 && nq > 0, "float {nf}, int8 {nq} detections");
    assert!(
        matched * 10 >= nf * 8 && matched * 10 >= nq * 8,
        "int8 and float disagree: {matched} matched of float {nf} / int8 {nq}"
    );
}

#[test]
fn detect_writes_annotated_images() {
    let dir = tempfile::tempdir().unwrap();
    let img = first_sample_image();
    let o = speck(&[
        "detect",
        img.to_str().unwrap(),
        "--out",
        dir.path().to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let written = dir.path().join(img.file_name().unwrap());
    let a = image::open(&img).unwrap().to_rgb8();
    let b = image::open(&written).unwrap().to_rgb8();
    assert_eq!(a.dimensions(), b.dimensions());
    assert_ne!(a.as_raw(), b.as_raw(), "boxes were drawn");
}

fn first_sample_image() -> PathBuf {
    let mut v: Vec<PathBuf> = std::fs::read_dir(root().join("examples/data/images"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    v.sort();
    v.remove(0)
}

#[test]
fn missing_and_corrupt_models_fail_cleanly() {
    let o = speck(&["info", "no/such/model.onnx"]);
    assert_clean_failure(&o, "no/such/model.onnx");
    // the OS error is said once, not once by the typed error and again by its source
    assert_eq!(stderr(&o).matches("os error").count(), 1, "{}", stderr(&o));
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.onnx");
    std::fs::write(&bad, b"this is not a protobuf at all").unwrap();
    assert_clean_failure(
        &speck(&["info", bad.to_str().unwrap()]),
        "not a valid ONNX model",
    );
    let bytes = std::fs::read(root().join(MNV3S)).unwrap();
    let cut = dir.path().join("cut.onnx");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    let o = speck(&["info", cut.to_str().unwrap()]);
    assert_clean_failure(&o, "error:");
}

#[test]
fn detect_rejects_bad_images_and_keeps_going() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("broken.jpg");
    std::fs::write(&bad, b"\xff\xd8\xff not really a jpeg").unwrap();
    let good = first_sample_image();
    let o = speck(&[
        "detect",
        bad.to_str().unwrap(),
        good.to_str().unwrap(),
        "--json",
    ]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("broken.jpg"), "{}", stderr(&o));
    assert_eq!(
        String::from_utf8_lossy(&o.stdout).lines().count(),
        1,
        "the good image still ran"
    );
    assert_clean_failure(&speck(&["detect", "no_such.jpg"]), "no_such.jpg");
}

#[test]
fn infer_checks_input_shapes() {
    let dir = tempfile::tempdir().unwrap();
    let x = ndarray::ArrayD::<f32>::zeros(ndarray::IxDyn(&[1, 3, 100, 100]));
    let p = dir.path().join("x.npy");
    ndarray_npy::write_npy(&p, &x).unwrap();
    let o = speck(&[
        "infer",
        MNV3S,
        p.to_str().unwrap(),
        "--out",
        dir.path().to_str().unwrap(),
    ]);
    assert_clean_failure(&o, "[1, 3, 224, 224]");
}

/// The model `speck quantize` tests run on: the shipped default when present.
fn quantize_source() -> &'static str {
    if Path::new(env!("CARGO_MANIFEST_DIR"))
        .join(DEFAULT_MODEL)
        .is_file()
    {
        DEFAULT_MODEL
    } else {
        MNV3S
    }
}

#[test]
fn quantize_writes_qdq_model_and_report() {
    let dir = tempfile::tempdir().unwrap();
    let (out, rep) = (dir.path().join("q.onnx"), dir.path().join("r.json"));
    // A one-image labelled set for --val: the first image of the shipped annotations.
    let mut gt: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string("examples/data/annotations.json").unwrap())
            .unwrap();
    let first = gt["images"][0].clone();
    gt["images"] = serde_json::json!([first]);
    let anns: Vec<serde_json::Value> = gt["annotations"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["image_id"] == first["id"])
        .cloned()
        .collect();
    gt["annotations"] = serde_json::Value::Array(anns);
    let gt_path = dir.path().join("gt.json");
    std::fs::write(&gt_path, gt.to_string()).unwrap();
    let gt = gt_path;
    let o = speck(&[
        "quantize",
        quantize_source(),
        "--calib",
        "examples/data/images",
        "-o",
        out.to_str().unwrap(),
        "--report",
        rep.to_str().unwrap(),
        "--max-images",
        "3",
        "--max-frames",
        "24",
        "--val",
        gt.to_str().unwrap(),
        "--images",
        "examples/data/images",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(
        stdout.contains("SQNR") && stdout.contains("kept float") && stdout.contains("accuracy on"),
        "{stdout}"
    );
    let r: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&rep).unwrap()).unwrap();
    if quantize_source() == DEFAULT_MODEL {
        // Tiled like inference: 12 tiles of 384 per 1280x720 image, two images fit 24 frames.
        assert_eq!(r["calibration_tiled"], true);
        assert_eq!(r["calibration_frames"], 24);
    } else {
        assert_eq!(r["calibration_frames"], 3);
    }
    let acc = &r["accuracy"];
    assert_eq!(acc["images"], 1);
    for m in ["float", "int8"] {
        let ap = acc[m]["coco_ap50"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&ap), "{m} AP50 {ap}");
    }
    assert!(r["quantized_bytes"].as_u64().unwrap() < r["float_bytes"].as_u64().unwrap());
    // The QDQ model runs through `speck infer` (fake quantization in the float engine).
    let x = dir.path().join("x.npy");
    ndarray_npy::write_npy(
        &x,
        &ndarray::ArrayD::<f32>::zeros(ndarray::IxDyn(&[1, 3, 224, 224])),
    )
    .unwrap();
    if quantize_source() == MNV3S {
        let o = speck(&[
            "infer",
            out.to_str().unwrap(),
            x.to_str().unwrap(),
            "--out",
            dir.path().to_str().unwrap(),
        ]);
        assert!(o.status.success(), "{}", stderr(&o));
    }
    // Quantizing the output again is refused, and nothing is written.
    let again = dir.path().join("again.onnx");
    let o = speck(&[
        "quantize",
        out.to_str().unwrap(),
        "--calib",
        "examples/data/images",
        "-o",
        again.to_str().unwrap(),
    ]);
    assert_clean_failure(&o, "already quantized");
    assert!(!again.exists());
}

#[test]
fn quantize_bad_calibration_sets() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("q.onnx");
    let empty = dir.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let o = speck(&[
        "quantize",
        MNV3S,
        "--calib",
        empty.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
    ]);
    assert_clean_failure(&o, "no calibration images");
    let bad = dir.path().join("bad");
    std::fs::create_dir(&bad).unwrap();
    std::fs::write(bad.join("frame.png"), b"not a png").unwrap();
    let o = speck(&[
        "quantize",
        MNV3S,
        "--calib",
        bad.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
    ]);
    assert_clean_failure(&o, "frame.png");
    assert!(!out.exists());
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        2,
        "no temporary files left behind"
    );
}

#[test]
fn quantize_calibrates_on_video_files() {
    if !common::have_tools(&["ffmpeg", "ffprobe"], "see .ci/run's apt block") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (out, rep) = (dir.path().join("q.onnx"), dir.path().join("r.json"));
    let frames = |rep: &Path| {
        let r: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(rep).unwrap()).unwrap();
        r["calibration_frames"].as_u64().unwrap()
    };
    // One video file (75 frames), sampled evenly down to the 5 model inputs asked for.
    let o = speck(&[
        "quantize",
        MNV3S,
        "--calib",
        "examples/data/clip.mp4",
        "-o",
        out.to_str().unwrap(),
        "--report",
        rep.to_str().unwrap(),
        "--max-frames",
        "5",
        "--sensitivity-db",
        "0",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(frames(&rep), 5);
    // A folder with an image and a video: both are read (1 + 75 frames, none dropped).
    let mixed = dir.path().join("mixed");
    std::fs::create_dir(&mixed).unwrap();
    std::fs::copy(first_sample_image(), mixed.join("a.jpg")).unwrap();
    std::fs::copy("examples/data/clip.mp4", mixed.join("b.mp4")).unwrap();
    let o = speck(&[
        "quantize",
        MNV3S,
        "--calib",
        mixed.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
        "--report",
        rep.to_str().unwrap(),
        "--sensitivity-db",
        "0",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(frames(&rep), 76);
    // A file that is no video: a clear error naming it, nothing written.
    std::fs::remove_file(&out).unwrap();
    let junk = dir.path().join("junk.mp4");
    std::fs::write(&junk, b"not a video").unwrap();
    let o = speck(&[
        "quantize",
        MNV3S,
        "--calib",
        junk.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
    ]);
    assert_clean_failure(&o, "junk.mp4");
    assert!(!out.exists());
}
