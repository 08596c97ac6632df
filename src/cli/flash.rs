//! `speck flash`: write a bundle into a board's OS disk image (before it goes onto the SD card
//! or eMMC), installed and enabled as a service, without mounting anything.

use anyhow::{Context, Result};
use speck::device::bundle::Bundle;
use speck::device::flash::{flash_image, FlashOptions};
use speck::device::Target;
use std::path::PathBuf;
use std::process::ExitCode;

/// Arguments of `speck flash`.
#[derive(clap::Args, Debug)]
#[command(after_help = "Examples:
  speck flash --target rpi5 --bundle speck-rpi5.tar.gz --image raspios-lite.img
  speck flash --target rpi4 --bundle b.tar.gz --image os.img --ssh-key ~/.ssh/id_ed25519.pub --hostname cam1
  then write the image to the card: dd if=os.img of=/dev/sdX bs=4M conv=fsync

The image is changed only when every file was written, the filesystem checked clean with
e2fsck and every file read back; on any error it is left as it was. Needs e2fsprogs.")]
pub struct Args {
    /// Board name (rpi4, rpi5, rpi-armv7, jetson-orin, x86_64) or a board .toml file.
    #[arg(long)]
    target: String,
    /// Bundle made by `speck bundle` for the same board.
    #[arg(long)]
    bundle: PathBuf,
    /// Raw disk image (MBR or GPT) with an ext4 root partition, changed in place.
    #[arg(long)]
    image: PathBuf,
    /// Public key file appended to root's authorized_keys (also enables sshd).
    #[arg(long)]
    ssh_key: Option<PathBuf>,
    /// Host name written to /etc/hostname.
    #[arg(long)]
    hostname: Option<String>,
    /// Print a JSON summary.
    #[arg(long)]
    json: bool,
}

pub fn run(a: Args) -> Result<ExitCode> {
    let target = Target::load(&a.target)?;
    let bundle = Bundle::open(&a.bundle).with_context(|| a.bundle.display().to_string())?;
    let ssh_key = match &a.ssh_key {
        Some(p) => {
            Some(std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?)
        }
        None => None,
    };
    let opts = FlashOptions {
        ssh_key,
        hostname: a.hostname.clone(),
    };
    let report = flash_image(&a.image, &target, &bundle, &opts)
        .with_context(|| format!("flashing {}", a.image.display()))?;
    if a.json {
        println!(
            "{}",
            serde_json::json!({
                "image": a.image, "target": target.name, "release": bundle.release,
                "partition_start": report.partition.start, "partition_len": report.partition.len,
                "release_dir": report.release_dir, "written": report.written,
            })
        );
    } else {
        println!(
            "{}: {} release {} installed in {} ({} paths written, read back and checked)",
            a.image.display(),
            target.name,
            bundle.release,
            report.release_dir,
            report.written.len()
        );
    }
    Ok(ExitCode::SUCCESS)
}
