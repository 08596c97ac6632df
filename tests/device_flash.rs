//! `speck::device::flash`: build small partitioned disk images (sfdisk + mke2fs on a file),
//! flash a bundle into them without mounting, read every file back with debugfs. Bad inputs:
//! no ext4 root, a full filesystem; the image must stay byte-for-byte unchanged.
//! Needs e2fsprogs and fdisk: skips with a reason when missing, fails when CI is set.

mod common;

use speck::device::bundle::{sha256_hex, Bundle, BundleInputs};
use speck::device::flash::{extract_partition, flash_image, read_file, read_link, FlashOptions};
use speck::device::partition::find_root;
use speck::device::Target;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

fn tools_present() -> bool {
    common::have_tools(
        &["sfdisk", "mke2fs", "debugfs", "e2fsck", "dumpe2fs"],
        "install e2fsprogs, fdisk",
    )
}

/// A disk image with a FAT-typed (unformatted) boot partition and a Linux root of `root_mib`.
fn make_image(dir: &Path, label: &str, root_mib: u64, format: bool) -> PathBuf {
    let img = dir.join(format!("{label}.img"));
    let size = (1 + 8 + root_mib + 1) * 1024 * 1024;
    std::fs::File::create(&img).unwrap().set_len(size).unwrap();
    let table = if label == "gpt" {
        "label: gpt\nstart=2048, size=16384, type=U\nstart=18432, type=L\n"
    } else {
        "label: dos\nstart=2048, size=16384, type=c\nstart=18432, type=83\n"
    };
    let mut child = Command::new("sfdisk")
        .args(["--no-reread", "--no-tell-kernel", "-q"])
        .arg(&img)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(table.as_bytes())
        .unwrap();
    assert!(child.wait().unwrap().success());
    if format {
        let st = Command::new("mke2fs")
            .args(["-F", "-q", "-t", "ext4", "-E"])
            .arg(format!("offset={}", 18432 * 512))
            .arg(&img)
            .arg(format!("{}k", root_mib * 1024))
            .status()
            .unwrap();
        assert!(st.success());
    }
    img
}

fn bundle(target: &Target, binary_len: usize) -> Bundle {
    let binary: Vec<u8> = b"#!/bin/sh\necho speck\n"
        .iter()
        .copied()
        .chain((0..binary_len).map(|i| (i * 7 % 251) as u8))
        .collect();
    Bundle::assemble(BundleInputs {
        target,
        binary,
        model: ("speck-tiny.onnx".into(), vec![3u8; 300_000]),
        version: "0.1.0".into(),
    })
    .unwrap()
}

fn flash_and_read_back(label: &str) {
    if !tools_present() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let img = make_image(dir.path(), label, 24, true);
    let target = Target::load("rpi5").unwrap();
    let b = bundle(&target, 2_000_000);
    let opts = FlashOptions {
        ssh_key: Some("ssh-ed25519 AAAATEST user@laptop".into()),
        hostname: Some("speck-cam1".into()),
    };
    let report = flash_image(&img, &target, &b, &opts).unwrap();
    assert_eq!(report.partition.number, 2);

    // Read the partition back with debugfs, independently of flash's own check.
    let part = find_root(&mut std::fs::File::open(&img).unwrap()).unwrap();
    let fs = dir.path().join("root.ext4");
    extract_partition(&img, &part, &fs).unwrap();
    let rel = format!("/opt/speck/releases/{}", b.release);
    for f in &b.files {
        let back = read_file(&fs, &format!("{rel}/{}", f.path)).unwrap();
        assert_eq!(sha256_hex(&back), sha256_hex(&f.data), "{}", f.path);
    }
    assert_eq!(
        read_link(&fs, "/opt/speck/current").unwrap(),
        format!("releases/{}", b.release)
    );
    assert_eq!(
        read_link(
            &fs,
            "/etc/systemd/system/multi-user.target.wants/speck.service"
        )
        .unwrap(),
        "/etc/systemd/system/speck.service"
    );
    let unit = read_file(&fs, "/etc/systemd/system/speck.service").unwrap();
    assert!(String::from_utf8(unit)
        .unwrap()
        .contains("ExecStart=/opt/speck/current/bin/speck run"));
    assert_eq!(
        read_file(&fs, "/root/.ssh/authorized_keys").unwrap(),
        b"ssh-ed25519 AAAATEST user@laptop\n"
    );
    assert_eq!(read_file(&fs, "/etc/hostname").unwrap(), b"speck-cam1\n");
    let stat = Command::new("debugfs")
        .args(["-R", &format!("stat {rel}/bin/speck")])
        .arg(&fs)
        .output()
        .unwrap();
    let stat = String::from_utf8_lossy(&stat.stdout);
    assert!(stat.contains("Mode:  0755"), "{stat}");

    // Flashing again (a newer release onto the same card) works and switches `current`.
    let b2 = bundle(&target, 1000);
    flash_image(&img, &target, &b2, &FlashOptions::default()).unwrap();
    extract_partition(&img, &part, &fs).unwrap();
    assert_eq!(
        read_link(&fs, "/opt/speck/current").unwrap(),
        format!("releases/{}", b2.release)
    );
}

#[test]
fn flash_into_mbr_image_and_read_back() {
    flash_and_read_back("dos");
}

#[test]
fn flash_into_gpt_image_and_read_back() {
    flash_and_read_back("gpt");
}

#[test]
fn image_without_ext4_root_is_left_unchanged() {
    if !tools_present() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let img = make_image(dir.path(), "dos", 8, false);
    let before = sha256_hex(&std::fs::read(&img).unwrap());
    let target = Target::load("rpi4").unwrap();
    let e = flash_image(
        &img,
        &target,
        &bundle(&target, 10),
        &FlashOptions::default(),
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("no ext4 root filesystem"), "{e}");
    assert_eq!(sha256_hex(&std::fs::read(&img).unwrap()), before);

    let not_disk = dir.path().join("zero.img");
    std::fs::write(&not_disk, vec![0u8; 65536]).unwrap();
    let e = flash_image(
        &not_disk,
        &target,
        &bundle(&target, 10),
        &FlashOptions::default(),
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("no partition table"), "{e}");
}

#[test]
fn full_filesystem_is_a_clear_error_and_the_image_is_unchanged() {
    if !tools_present() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let img = make_image(dir.path(), "dos", 4, true);
    let before = sha256_hex(&std::fs::read(&img).unwrap());
    let target = Target::load("rpi4").unwrap();
    let e = flash_image(
        &img,
        &target,
        &bundle(&target, 8_000_000),
        &FlashOptions::default(),
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("root filesystem full"), "{e}");
    assert_eq!(sha256_hex(&std::fs::read(&img).unwrap()), before);
}

#[test]
fn bundle_for_another_board_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("x.img");
    std::fs::write(&img, vec![0u8; 4096]).unwrap();
    let rpi4 = Target::load("rpi4").unwrap();
    let rpi5 = Target::load("rpi5").unwrap();
    let e = flash_image(&img, &rpi5, &bundle(&rpi4, 10), &FlashOptions::default())
        .unwrap_err()
        .to_string();
    assert!(e.contains("bundle is for target 'rpi4', not 'rpi5'"), "{e}");
}

/// The CLI: `speck flash` installs a bundle file, prints JSON, and a bad image is one clear
/// error line with a non-zero exit.
#[test]
fn flash_command_installs_a_bundle_file() {
    if !tools_present() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let img = make_image(dir.path(), "gpt", 16, true);
    let target = Target::load("rpi4").unwrap();
    let b = bundle(&target, 100_000);
    let tgz = dir.path().join("b.tar.gz");
    b.write_tar_gz(std::fs::File::create(&tgz).unwrap())
        .unwrap();
    let key = dir.path().join("id.pub");
    std::fs::write(&key, "ssh-ed25519 AAAACLI cli@test\n").unwrap();
    let speck = |img: &Path, target: &str| {
        Command::new(env!("CARGO_BIN_EXE_speck"))
            .args(["flash", "--json", "--target", target, "--bundle"])
            .arg(&tgz)
            .arg("--image")
            .arg(img)
            .arg("--ssh-key")
            .arg(&key)
            .output()
            .unwrap()
    };
    let out = speck(&img, "rpi4");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["release"], b.release.as_str());
    assert_eq!(v["target"], "rpi4");
    let part = find_root(&mut std::fs::File::open(&img).unwrap()).unwrap();
    let fs = dir.path().join("root.ext4");
    extract_partition(&img, &part, &fs).unwrap();
    assert_eq!(
        read_file(&fs, "/root/.ssh/authorized_keys").unwrap(),
        b"ssh-ed25519 AAAACLI cli@test\n"
    );

    // Wrong board and a non-disk file: one error line each, non-zero exit, no panic.
    let out = speck(&img, "rpi5");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("bundle is for target 'rpi4', not 'rpi5'"),
        "{err}"
    );
    let junk = dir.path().join("junk.img");
    std::fs::write(&junk, b"not a disk").unwrap();
    let out = speck(&junk, "rpi4");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.starts_with("error: ") && !err.contains("panicked"),
        "{err}"
    );
}
