//! `speck flash`: write a bundle into a board's OS disk image (before it goes onto the SD card
//! or eMMC), installed and enabled as a service, without mounting anything.

use anyhow::bail;
use anyhow::{Context, Result};
use speck::device::flash::{flash_image, FlashOptions};
use speck::device::Target;
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
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
    #[command(flatten)]
    source: super::bundle::BundleSource,
    /// Raw disk image (MBR or GPT) with an ext4 root partition, changed in place.
    #[arg(long)]
    image: PathBuf,
    /// Public key file appended to root's authorized_keys (also enables sshd).
    #[arg(long)]
    ssh_key: Option<PathBuf>,
    /// Host name written to /etc/hostname.
    #[arg(long)]
    hostname: Option<String>,
    /// After flashing, write the image to this card / disk (a block device, e.g. /dev/sdX);
    /// asks for confirmation unless --yes.
    #[arg(long)]
    device: Option<PathBuf>,
    /// Do not ask before writing --device.
    #[arg(long, requires = "device")]
    yes: bool,
    /// Print a JSON summary.
    #[arg(long)]
    json: bool,
}

pub fn run(a: Args) -> Result<ExitCode> {
    let target = Target::load(&a.target)?;
    if let Some(d) = &a.device {
        check_block_device(d)?;
    }
    let (bundle, _) = a.source.load(&target)?;
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
    if let Some(d) = &a.device {
        write_to_device(&a.image, d, a.yes)?;
    }
    if a.json {
        println!(
            "{}",
            serde_json::json!({
                "image": a.image, "target": target.name, "release": bundle.release,
                "partition_start": report.partition.start, "partition_len": report.partition.len,
                "release_dir": report.release_dir, "written": report.written,
                "device": a.device,
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

/// Refuse anything but a block device (a typo must not overwrite a regular file), and a
/// device that is mounted.
fn check_block_device(dev: &Path) -> Result<()> {
    use std::os::unix::fs::FileTypeExt;
    let meta = std::fs::metadata(dev).with_context(|| format!("{}", dev.display()))?;
    if !meta.file_type().is_block_device() {
        bail!(
            "{} is not a block device (expected a card or disk such as /dev/sdX)",
            dev.display()
        );
    }
    let name = dev.to_string_lossy();
    let mounts = std::fs::read_to_string("/proc/mounts").unwrap_or_default();
    if let Some(m) = mounts.lines().find(|l| l.starts_with(name.as_ref())) {
        bail!("{} is mounted ({}); unmount it first", dev.display(), m);
    }
    Ok(())
}

/// Copy the flashed image onto the device after the user typed the device path back.
fn write_to_device(image: &Path, dev: &Path, yes: bool) -> Result<()> {
    if !yes {
        eprint!(
            "This ERASES everything on {}. Type its path to continue: ",
            dev.display()
        );
        std::io::stderr().flush().ok();
        let mut answer = String::new();
        std::io::stdin().lock().read_line(&mut answer)?;
        if answer.trim() != dev.to_string_lossy() {
            bail!("not confirmed; {} left as it was", dev.display());
        }
    }
    let mut src = std::fs::File::open(image).with_context(|| image.display().to_string())?;
    let mut dst = std::fs::OpenOptions::new()
        .write(true)
        .open(dev)
        .with_context(|| format!("opening {} for writing", dev.display()))?;
    let len = src.metadata()?.len();
    let bar = indicatif::ProgressBar::new(len);
    std::io::copy(&mut src, &mut bar.wrap_write(&mut dst))
        .with_context(|| format!("writing {}", dev.display()))?;
    dst.sync_all()
        .with_context(|| format!("syncing {}", dev.display()))?;
    bar.finish_and_clear();
    log::info!("wrote {} bytes to {}", len, dev.display());
    Ok(())
}
