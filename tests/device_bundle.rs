//! `speck bundle` from the command line: a board whose speck has no ONNX importer gets the
//! model compiled for its CPU; bundles are byte-for-byte reproducible; bad inputs are errors.

use speck::device::bundle::Bundle;
use std::path::Path;
use std::process::{Command, Output};

fn speck(args: &[&str], dir: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_speck"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("TMPDIR", dir)
        .output()
        .unwrap()
}

fn ok(out: &Output) {
    assert!(
        out.status.success(),
        "speck failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn bundle_for_a_board_ships_a_model_compiled_for_it_reproducibly() {
    let dir = tempfile::tempdir().unwrap();
    // Stands in for the aarch64 build (a script passes the binary check for any board).
    let bin = dir.path().join("speck-aarch64");
    std::fs::write(&bin, "#!/bin/sh\nexec echo speck\n").unwrap();
    let bin = bin.to_str().unwrap();
    let a = dir.path().join("a.tar.gz");
    let b = dir.path().join("b.tar.gz");
    for out in [&a, &b] {
        ok(&speck(
            &[
                "bundle",
                "--target",
                "rpi5",
                "--binary",
                bin,
                "-o",
                out.to_str().unwrap(),
            ],
            dir.path(),
        ));
    }
    let (ab, bb) = (std::fs::read(&a).unwrap(), std::fs::read(&b).unwrap());
    assert!(ab == bb, "two bundles of the same inputs differ");

    let bundle = Bundle::open(&a).unwrap();
    // rpi5's default model is the int8 detector, compiled for its CPU.
    let model = bundle
        .file("share/speck/speck-tiny-int8.speck")
        .expect("the rpi5 bundle ships its compiled int8 model");
    // A compiled model whose header names rpi5's CPU target (loading it here is refused:
    // it needs Arm dotprod).
    assert!(speck::model::compiled::has_magic(&model.data));
    let head = &model.data[..256.min(model.data.len())];
    assert!(
        head.windows(15).any(|w| w == b"aarch64-dotprod"),
        "header does not name aarch64-dotprod"
    );
    let unit =
        String::from_utf8(bundle.file("systemd/speck.service").unwrap().data.clone()).unwrap();
    assert!(
        unit.contains("--model /opt/speck/current/share/speck/speck-tiny-int8.speck"),
        "{unit}"
    );
    assert!(bundle.file("share/speck/speck-tiny-int8.onnx").is_none());

    // The host board keeps the ONNX model (its speck has the importer).
    let host = dir.path().join("host.tar.gz");
    ok(&speck(
        &[
            "bundle",
            "--target",
            "x86_64",
            "--binary",
            bin,
            "-o",
            host.to_str().unwrap(),
        ],
        dir.path(),
    ));
    assert!(Bundle::open(&host)
        .unwrap()
        .file("share/speck/speck-tiny.onnx")
        .is_some());
}

#[test]
fn bundle_bad_inputs_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let out_path = dir.path().join("x.tar.gz");
    let out_s = out_path.to_str().unwrap();
    let x86 = env!("CARGO_BIN_EXE_speck");
    let folder = dir.path().to_str().unwrap();
    let cases: [(&[&str], &str); 4] = [
        (&["bundle", "--target", "rpi9", "-o", out_s], "rpi9"),
        // refused before any cross build starts
        (&["bundle", "--target", "rpi5", "-o", folder], "is a folder"),
        (
            &["bundle", "--target", "rpi5", "--binary", x86, "-o", out_s],
            "built for x86-64, target rpi5 needs aarch64",
        ),
        (
            &[
                "bundle",
                "--target",
                "x86_64",
                "--binary",
                x86,
                "--model",
                "nope.onnx",
                "-o",
                out_s,
            ],
            "nope.onnx",
        ),
    ];
    for (args, want) in cases {
        let out = speck(args, dir.path());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?}");
        assert!(
            err.contains(want) && !err.contains("panicked"),
            "{args:?}: {err}"
        );
        assert!(!out_path.exists(), "a failed bundle left {out_s}");
    }
}
