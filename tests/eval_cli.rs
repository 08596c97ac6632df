//! `speck eval` on the shipped sample ground truth, without a model.

mod common;
use common::{root, speck};

const GT: &str = "examples/data/annotations.json";

fn gt() -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(root().join(GT)).unwrap()).unwrap()
}

#[test]
fn ground_truth_as_detections_scores_one() {
    let g = gt();
    let dets: Vec<serde_json::Value> = g["annotations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| serde_json::json!({"image_id": a["image_id"], "category_id": a["category_id"], "bbox": a["bbox"], "score": 0.9}))
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("dets.json");
    std::fs::write(&p, serde_json::to_string(&dets).unwrap()).unwrap();
    let plot = dir.path().join("pr.png");
    let o = speck(&[
        "eval",
        "--gt",
        GT,
        "--detections",
        p.to_str().unwrap(),
        "--json",
        "--plot",
        plot.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["coco_ap"], 1.0);
    assert_eq!(v["coco_ap50"], 1.0);
    assert_eq!(v["tiny"]["ap50"], 1.0);
    assert!(v["tiny"]["mr50"].as_f64().unwrap() < 1e-6);
    assert_eq!(v["images"], 10);
    let img = image::open(&plot).unwrap();
    assert_eq!((img.width(), img.height()), (640, 480));
    // The table form.
    let o = speck(&["eval", "--gt", GT, "--detections", p.to_str().unwrap()]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains("AP50") && out.contains("tiny1") && out.contains("reasonable"),
        "{out}"
    );
}

#[test]
fn bad_ground_truth_is_one_clean_line() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("gt.json");
    let mut g = gt();
    g["annotations"][2]["image_id"] = serde_json::json!(999);
    std::fs::write(&p, g.to_string()).unwrap();
    let o = speck(&[
        "eval",
        "--gt",
        p.to_str().unwrap(),
        "--images",
        "examples/data/images",
    ]);
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && o.status.code() != Some(101), "{e}");
    assert_eq!(e.lines().count(), 1, "{e}");
    assert!(
        e.starts_with("error:")
            && e.contains("gt.json")
            && e.contains("annotations[2] (id 3)")
            && e.contains("999"),
        "{e}"
    );
    // An image the GT lists but the folder lacks.
    let mut g = gt();
    g["images"][1]["file_name"] = serde_json::json!("missing.jpg");
    std::fs::write(&p, g.to_string()).unwrap();
    let o = speck(&[
        "eval",
        "--gt",
        p.to_str().unwrap(),
        "--images",
        "examples/data/images",
    ]);
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && e.contains("images[1] (id 2)") && e.contains("missing.jpg"),
        "{e}"
    );
    assert_eq!(e.lines().count(), 1, "{e}");
}

#[test]
fn tiling_flags_are_checked() {
    for (args, needle) in [
        (vec!["--tile", "512"], "--tile must be WxH"),
        (vec!["--tile", "0x4"], "--tile must be WxH"),
        (vec!["--tile", "64x64", "--overlap", "1.0"], "--overlap"),
        (vec!["--full-frame"], "--full-frame needs --tile"),
    ] {
        let mut a = vec!["detect", "examples/data/images"];
        a.extend(args);
        let o = speck(&a);
        let e = String::from_utf8_lossy(&o.stderr);
        assert!(
            !o.status.success() && e.starts_with("error:") && e.contains(needle),
            "{e}"
        );
    }
}
