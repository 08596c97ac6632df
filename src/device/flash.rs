//! Writing a bundle into an OS disk image without mounting it: the root partition is copied to
//! a scratch file, changed with `debugfs -w` (e2fsprogs), checked with `e2fsck -fn`, every file
//! read back and compared, and only then written back into the image. Any failure leaves the
//! image as it was.

use super::bundle::{sha256_hex, Bundle, UNIT_PATH};
use super::partition::{find_root, Partition, PartitionError};
use super::target::Target;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::process::Command;

/// Why flashing failed (the image is unchanged in every case).
#[derive(Debug, thiserror::Error)]
pub enum FlashError {
    /// File access.
    #[error("{0}: {1}")]
    Io(String, std::io::Error),
    /// No usable root partition.
    #[error(transparent)]
    Partition(#[from] PartitionError),
    /// An e2fsprogs tool is missing or failed to start.
    #[error("cannot run {0} (install e2fsprogs): {1}")]
    Tool(&'static str, std::io::Error),
    /// Not enough free space in the root filesystem.
    #[error("root filesystem full: the bundle needs about {need} KiB, {free} KiB are free")]
    Full {
        /// KiB needed
        need: u64,
        /// KiB free
        free: u64,
    },
    /// debugfs reported an error.
    #[error("debugfs failed: {0}")]
    Debugfs(String),
    /// The filesystem did not check clean afterwards, or a file read back differs.
    #[error("verification failed: {0}")]
    Verify(String),
    /// The bundle is for another board.
    #[error("bundle is for target '{bundle}', not '{target}'")]
    WrongTarget {
        /// the bundle's board
        bundle: String,
        /// the board asked for
        target: String,
    },
}

/// What to put into the image besides the bundle.
#[derive(Debug, Default, Clone)]
pub struct FlashOptions {
    /// Public key(s) appended to `/root/.ssh/authorized_keys`; also enables `ssh.service`.
    pub ssh_key: Option<String>,
    /// Written to `/etc/hostname`.
    pub hostname: Option<String>,
}

/// What was written.
#[derive(Debug, Clone)]
pub struct FlashReport {
    /// The partition changed.
    pub partition: Partition,
    /// Release directory inside the image.
    pub release_dir: String,
    /// Paths written (files and links), absolute inside the image.
    pub written: Vec<String>,
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> FlashError {
    let what = what.into();
    move |e| FlashError::Io(what, e)
}

fn run_tool(tool: &'static str, args: &[&str]) -> Result<std::process::Output, FlashError> {
    Command::new(tool)
        .args(args)
        .output()
        .map_err(|e| FlashError::Tool(tool, e))
}

/// Copy `len` bytes at `start` of `from` into a new file at `to`.
fn copy_range(from: &mut File, start: u64, len: u64, to: &mut File) -> std::io::Result<()> {
    from.seek(SeekFrom::Start(start))?;
    let n = std::io::copy(&mut from.take(len), to)?;
    if n != len {
        return Err(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            "image shorter than its partition table says",
        ));
    }
    to.flush()
}

/// Free space of an ext filesystem in KiB, from `dumpe2fs -h`.
fn free_kib(fs: &Path) -> Result<u64, FlashError> {
    let out = run_tool("dumpe2fs", &["-h", &fs.to_string_lossy()])?;
    let text = String::from_utf8_lossy(&out.stdout);
    let field = |name: &str| -> Option<u64> {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().parse().ok())
    };
    match (field("Free blocks:"), field("Block size:")) {
        (Some(b), Some(s)) => Ok(b * s / 1024),
        _ => Err(FlashError::Verify(format!(
            "dumpe2fs could not read the filesystem: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ))),
    }
}

/// An absolute path inside the image (debugfs treats paths literally; no quoting needed
/// unless they hold spaces, which speck's paths never do).
fn check_path(p: &str) -> Result<(), FlashError> {
    if p.chars().any(|c| c.is_whitespace() || c == '"') {
        return Err(FlashError::Debugfs(format!(
            "path with spaces or quotes: {p}"
        )));
    }
    Ok(())
}

struct Script {
    lines: Vec<String>,
    staged: PathBuf,
    /// The filesystem being changed (read to find which folders exist already).
    fs: PathBuf,
    /// Folders known to exist (found, or created earlier in the script).
    dirs: std::collections::HashSet<String>,
    n: usize,
    written: Vec<(String, Vec<u8>)>,
}

impl Script {
    /// Create folder `p` unless it exists. debugfs's `mkdir` of an existing name allocates the
    /// inode before it finds the clash and leaves it orphaned, so existence is checked first.
    fn mkdir(&mut self, p: &str, mode: u32) -> Result<(), FlashError> {
        check_path(p)?;
        if self.dirs.contains(p) {
            return Ok(());
        }
        if !exists(&self.fs, p)? {
            self.lines.push(format!("mkdir {p}"));
            self.lines
                .push(format!("sif {p} mode 0{:o}", 0o040000 | mode));
            self.lines.push(format!("sif {p} uid 0"));
            self.lines.push(format!("sif {p} gid 0"));
        }
        self.dirs.insert(p.to_string());
        Ok(())
    }

    /// `mkdir -p`: every missing folder on the way gets `mode`.
    fn mkdir_all(&mut self, p: &str, mode: u32) -> Result<(), FlashError> {
        let mut cur = String::new();
        for part in p.split('/').filter(|s| !s.is_empty()) {
            cur.push('/');
            cur.push_str(part);
            self.mkdir(&cur.clone(), mode)?;
        }
        Ok(())
    }

    fn write(&mut self, dest: &str, data: &[u8], mode: u32) -> Result<(), FlashError> {
        check_path(dest)?;
        let host = self.staged.join(format!("f{}", self.n));
        self.n += 1;
        std::fs::write(&host, data).map_err(io(host.display().to_string()))?;
        self.lines.push(format!("rm {dest}"));
        self.lines.push(format!("write {} {dest}", host.display()));
        self.lines
            .push(format!("sif {dest} mode 0{:o}", 0o100000 | mode));
        self.lines.push(format!("sif {dest} uid 0"));
        self.lines.push(format!("sif {dest} gid 0"));
        self.written.push((dest.to_string(), data.to_vec()));
        Ok(())
    }

    fn symlink(&mut self, link: &str, to: &str) {
        self.lines.push(format!("rm {link}"));
        self.lines.push(format!("symlink {link} {to}"));
    }
}

/// debugfs prints its banner, and an error for `rm` of a missing file, which the script does
/// on purpose (it runs the same on a fresh image and on a re-flash).
fn benign(line: &str) -> bool {
    line.starts_with("debugfs ")
        || line.trim().is_empty()
        || (line.starts_with("rm:") && line.contains("not found"))
}

/// What `debugfs -R 'stat PATH'` prints about `path` in the filesystem in `fs`.
fn stat(fs: &Path, path: &str) -> Result<String, FlashError> {
    let out = run_tool(
        "debugfs",
        &["-R", &format!("stat {path}"), &fs.to_string_lossy()],
    )?;
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Whether `path` exists in the filesystem in `fs`.
fn exists(fs: &Path, path: &str) -> Result<bool, FlashError> {
    Ok(stat(fs, path)?.contains("Inode:"))
}

/// Read one file of the filesystem in `fs` with `debugfs -R 'cat PATH'`.
pub fn read_file(fs: &Path, path: &str) -> Result<Vec<u8>, FlashError> {
    let out = run_tool(
        "debugfs",
        &["-R", &format!("cat {path}"), &fs.to_string_lossy()],
    )?;
    let err = String::from_utf8_lossy(&out.stderr);
    if let Some(l) = err.lines().find(|l| !benign(l)) {
        return Err(FlashError::Verify(format!("{path}: {l}")));
    }
    Ok(out.stdout)
}

/// Target of a symlink inside the filesystem.
pub fn read_link(fs: &Path, path: &str) -> Result<String, FlashError> {
    stat(fs, path)?
        .lines()
        .find_map(|l| l.trim().strip_prefix("Fast link dest: "))
        .map(|s| s.trim_matches('"').to_string())
        .ok_or_else(|| FlashError::Verify(format!("{path} is not a symlink")))
}

/// Copy partition `p` of `image` into a scratch file (for tests and inspection).
pub fn extract_partition(image: &Path, p: &Partition, to: &Path) -> Result<(), FlashError> {
    let mut img = File::open(image).map_err(io(image.display().to_string()))?;
    let mut out = File::create(to).map_err(io(to.display().to_string()))?;
    copy_range(&mut img, p.start, p.len, &mut out).map_err(io(image.display().to_string()))
}

/// Write `bundle` (installed and enabled as the service of `target`) into the root filesystem
/// of the disk image at `image`.
pub fn flash_image(
    image: &Path,
    target: &Target,
    bundle: &Bundle,
    opts: &FlashOptions,
) -> Result<FlashReport, FlashError> {
    if bundle.target != target.name {
        return Err(FlashError::WrongTarget {
            bundle: bundle.target.clone(),
            target: target.name.clone(),
        });
    }
    let mut img = File::open(image).map_err(io(image.display().to_string()))?;
    let part = find_root(&mut img)?;
    let scratch = tempfile::tempdir().map_err(io("creating a scratch folder"))?;
    let fs = scratch.path().join("root.ext4");
    {
        let mut out = File::create(&fs).map_err(io(fs.display().to_string()))?;
        copy_range(&mut img, part.start, part.len, &mut out)
            .map_err(io(image.display().to_string()))?;
    }
    drop(img);

    // Space: data rounded up to 4 KiB blocks, plus an inode table block per file.
    let need: u64 = bundle
        .files
        .iter()
        .map(|f| (f.data.len() as u64).div_ceil(4096) * 4 + 4)
        .sum::<u64>()
        + 64;
    let free = free_kib(&fs)?;
    if need > free {
        return Err(FlashError::Full { need, free });
    }

    let staged = scratch.path().join("staged");
    std::fs::create_dir(&staged).map_err(io(staged.display().to_string()))?;
    let mut s = Script {
        lines: vec![],
        staged,
        fs: fs.clone(),
        dirs: Default::default(),
        n: 0,
        written: vec![],
    };
    let prefix = target.service.prefix.trim_end_matches('/').to_string();
    let rel_dir = format!("{prefix}/releases/{}", bundle.release);
    s.mkdir_all(&format!("{prefix}/releases"), 0o755)?;
    s.mkdir(&rel_dir, 0o755)?;
    for d in bundle.dirs() {
        s.mkdir(&format!("{rel_dir}/{d}"), 0o755)?;
    }
    for f in &bundle.files {
        s.write(&format!("{rel_dir}/{}", f.path), &f.data, f.mode)?;
    }
    s.symlink(
        &format!("{prefix}/current"),
        &format!("releases/{}", bundle.release),
    );
    let mut links = vec![format!("{prefix}/current")];
    if target.service.install_unit {
        let unit = bundle
            .file(UNIT_PATH)
            .ok_or_else(|| FlashError::Verify("bundle has no systemd unit".into()))?;
        s.mkdir_all("/etc/systemd/system/multi-user.target.wants", 0o755)?;
        s.write("/etc/systemd/system/speck.service", &unit.data, 0o644)?;
        s.symlink(
            "/etc/systemd/system/multi-user.target.wants/speck.service",
            "/etc/systemd/system/speck.service",
        );
        links.push("/etc/systemd/system/multi-user.target.wants/speck.service".into());
    }
    if let Some(key) = &opts.ssh_key {
        let mut keys = read_file(&fs, "/root/.ssh/authorized_keys").unwrap_or_default();
        if !keys.is_empty() && !keys.ends_with(b"\n") {
            keys.push(b'\n');
        }
        keys.extend_from_slice(key.trim().as_bytes());
        keys.push(b'\n');
        s.mkdir("/root", 0o700)?;
        s.mkdir("/root/.ssh", 0o700)?;
        s.write("/root/.ssh/authorized_keys", &keys, 0o600)?;
        s.mkdir_all("/etc/systemd/system/multi-user.target.wants", 0o755)?;
        s.symlink(
            "/etc/systemd/system/multi-user.target.wants/ssh.service",
            "/lib/systemd/system/ssh.service",
        );
    }
    if let Some(h) = &opts.hostname {
        let ok = !h.is_empty()
            && h.len() <= 63
            && h.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
            && !h.starts_with('-');
        if !ok {
            return Err(FlashError::Verify(format!("'{h}' is not a valid hostname")));
        }
        s.write("/etc/hostname", format!("{h}\n").as_bytes(), 0o644)?;
    }

    let script_path = scratch.path().join("debugfs.cmds");
    std::fs::write(&script_path, s.lines.join("\n") + "\n")
        .map_err(io(script_path.display().to_string()))?;
    let out = run_tool(
        "debugfs",
        &[
            "-w",
            "-f",
            &script_path.to_string_lossy(),
            &fs.to_string_lossy(),
        ],
    )?;
    let err = String::from_utf8_lossy(&out.stderr);
    let errors: Vec<&str> = err.lines().filter(|l| !benign(l)).collect();
    if !out.status.success() || !errors.is_empty() {
        return Err(FlashError::Debugfs(errors.join("; ")));
    }
    let fsck = run_tool("e2fsck", &["-fn", &fs.to_string_lossy()])?;
    if !fsck.status.success() {
        return Err(FlashError::Verify(format!(
            "e2fsck -fn found problems: {}",
            String::from_utf8_lossy(&fsck.stdout)
                .lines()
                .filter(|l| !l.starts_with("Pass ") && !l.starts_with("e2fsck "))
                .take(5)
                .collect::<Vec<_>>()
                .join("; ")
        )));
    }
    for (path, data) in &s.written {
        let back = read_file(&fs, path)?;
        if sha256_hex(&back) != sha256_hex(data) {
            return Err(FlashError::Verify(format!(
                "{path} reads back differently (filesystem full?)"
            )));
        }
    }
    let want = format!("releases/{}", bundle.release);
    if read_link(&fs, &format!("{prefix}/current"))? != want {
        return Err(FlashError::Verify(format!(
            "{prefix}/current is not {want}"
        )));
    }

    // Everything checked: write the partition back.
    let mut img = std::fs::OpenOptions::new()
        .write(true)
        .open(image)
        .map_err(io(image.display().to_string()))?;
    let mut src = File::open(&fs).map_err(io(fs.display().to_string()))?;
    img.seek(SeekFrom::Start(part.start))
        .map_err(io(image.display().to_string()))?;
    std::io::copy(&mut src, &mut img).map_err(io(image.display().to_string()))?;
    img.sync_all().map_err(io(image.display().to_string()))?;
    let mut written: Vec<String> = s.written.into_iter().map(|(p, _)| p).collect();
    written.extend(links);
    Ok(FlashReport {
        partition: part,
        release_dir: rel_dir,
        written,
    })
}
