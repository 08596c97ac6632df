//! Install bundles: one `.tar.gz` per board and release with the binary, the model, the board
//! config, a systemd unit, install/uninstall scripts and a `MANIFEST` of sha256 sums.
//!
//! Bundles are byte-for-byte reproducible: entries are sorted, every header has mtime 0,
//! uid/gid 0 and a fixed mode, and the gzip header carries no time or file name. The release
//! id is `<version>-<first 12 hex of the payload's manifest hash>`, so the same inputs give the
//! same release and any change gives a new one.

use super::script;
use super::target::Target;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::io::{Read, Write};

/// Why a bundle could not be made or read.
#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    /// Reading or writing the archive failed.
    #[error("bundle I/O: {0}")]
    Io(#[from] std::io::Error),
    /// The archive is not a speck bundle.
    #[error("not a speck bundle: {0}")]
    Malformed(String),
    /// The binary cannot run on the board.
    #[error("{0}")]
    Binary(String),
    /// A file's sha256 differs from its `MANIFEST` line.
    #[error("bundle checksum mismatch for {0}")]
    Checksum(String),
}

/// A file in a bundle, by path relative to the release directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BundleFile {
    /// e.g. `bin/speck`
    pub path: String,
    /// Unix permission bits (0o755 for programs, 0o644 otherwise).
    pub mode: u32,
    /// Contents.
    pub data: Vec<u8>,
}

/// A complete bundle in memory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bundle {
    /// Board name.
    pub target: String,
    /// `<version>-<hash12>`, the directory name under `<prefix>/releases/`.
    pub release: String,
    /// All files, `MANIFEST` included, sorted by path.
    pub files: Vec<BundleFile>,
}

/// What goes into a bundle.
pub struct BundleInputs<'a> {
    /// The board.
    pub target: &'a Target,
    /// The speck binary built for it.
    pub binary: Vec<u8>,
    /// Model file name (`speck-tiny.onnx`) and contents.
    pub model: (String, Vec<u8>),
    /// speck version (`0.1.0`).
    pub version: String,
}

/// Path of the binary inside a release.
pub const BINARY_PATH: &str = "bin/speck";
/// Path of the board config inside a release.
pub const CONFIG_PATH: &str = "etc/speck.toml";
/// Path of the systemd unit inside a release.
pub const UNIT_PATH: &str = "systemd/speck.service";

/// Lowercase hex sha256.
pub fn sha256_hex(data: &[u8]) -> String {
    Sha256::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// `sha256sum`-format lines (`<hex>  <path>`) for `files`, sorted by path.
fn manifest_text(files: &[BundleFile]) -> String {
    let mut lines: Vec<String> = files
        .iter()
        .map(|f| format!("{}  {}\n", sha256_hex(&f.data), f.path))
        .collect();
    lines.sort();
    lines.concat()
}

/// Check that `binary` can run on `target`: an ELF file for the triple's machine, or a script.
pub fn check_binary(target: &Target, binary: &[u8]) -> Result<(), BundleError> {
    if binary.starts_with(b"#!") {
        return Ok(());
    }
    if binary.len() < 20 || &binary[..4] != b"\x7fELF" {
        return Err(BundleError::Binary(
            "the binary is neither an ELF executable nor a script".into(),
        ));
    }
    let machine = u16::from_le_bytes([binary[18], binary[19]]);
    let (want, name) = match target.build.triple.split('-').next().unwrap_or("") {
        "aarch64" => (183, "aarch64"),
        a if a.starts_with("arm") => (40, "32-bit Arm"),
        "x86_64" => (62, "x86-64"),
        _ => return Ok(()),
    };
    if machine != want {
        let got = match machine {
            183 => "aarch64",
            40 => "32-bit Arm",
            62 => "x86-64",
            _ => "another machine",
        };
        return Err(BundleError::Binary(format!(
            "the binary is built for {got}, target {} needs {name}",
            target.name
        )));
    }
    Ok(())
}

impl Bundle {
    /// Assemble a bundle from its inputs.
    pub fn assemble(inp: BundleInputs<'_>) -> Result<Bundle, BundleError> {
        let t = inp.target;
        let (model_name, model_bytes) = inp.model;
        if model_name.is_empty() || model_name.contains('/') {
            return Err(BundleError::Malformed(format!(
                "model name '{model_name}' must be a plain file name"
            )));
        }
        let mut config = t.clone();
        config.defaults.model = model_name.clone();
        let config_text = format!(
            "# speck board config, written by `speck bundle`; the systemd unit passes these\n\
             # values to `speck run`.\n{}",
            toml::to_string(&config).map_err(|e| BundleError::Malformed(e.to_string()))?
        );
        let mut files = vec![
            BundleFile {
                path: BINARY_PATH.into(),
                mode: 0o755,
                data: inp.binary,
            },
            BundleFile {
                path: format!("share/speck/{model_name}"),
                mode: 0o644,
                data: model_bytes,
            },
            BundleFile {
                path: CONFIG_PATH.into(),
                mode: 0o644,
                data: config_text.into_bytes(),
            },
            BundleFile {
                path: UNIT_PATH.into(),
                mode: 0o644,
                data: script::systemd_unit(&config).into_bytes(),
            },
            BundleFile {
                path: "install.sh".into(),
                mode: 0o755,
                data: script::install_sh(t).into_bytes(),
            },
            BundleFile {
                path: "uninstall.sh".into(),
                mode: 0o755,
                data: script::uninstall_sh(t).into_bytes(),
            },
        ];
        let payload_hash = sha256_hex(manifest_text(&files).as_bytes());
        let release = format!("{}-{}", inp.version, &payload_hash[..12]);
        files.push(BundleFile {
            path: "RELEASE".into(),
            mode: 0o644,
            data: format!("{release}\n").into_bytes(),
        });
        let manifest = manifest_text(&files);
        files.push(BundleFile {
            path: "MANIFEST".into(),
            mode: 0o644,
            data: manifest.into_bytes(),
        });
        files.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(Bundle {
            target: t.name.clone(),
            release,
            files,
        })
    }

    /// Top-level directory inside the archive: `speck-<target>-<release>`.
    pub fn root_dir(&self) -> String {
        format!("speck-{}-{}", self.target, self.release)
    }

    /// A file by path.
    pub fn file(&self, path: &str) -> Option<&BundleFile> {
        self.files.iter().find(|f| f.path == path)
    }

    /// Directories the files need, parents first, sorted.
    pub fn dirs(&self) -> Vec<String> {
        let mut dirs = std::collections::BTreeSet::new();
        for f in &self.files {
            let mut p = f.path.as_str();
            while let Some(i) = p.rfind('/') {
                p = &p[..i];
                dirs.insert(p.to_string());
            }
        }
        dirs.into_iter().collect()
    }

    /// Write the reproducible `.tar.gz`.
    pub fn write_tar_gz<W: Write>(&self, out: W) -> Result<(), BundleError> {
        let gz = flate2::GzBuilder::new()
            .mtime(0)
            .operating_system(3) // Unix, fixed so the bytes do not depend on the build host
            .write(out, flate2::Compression::best());
        let mut tar = tar::Builder::new(gz);
        tar.mode(tar::HeaderMode::Deterministic);
        let root = self.root_dir();
        let mut entries: Vec<(String, Option<&BundleFile>)> = vec![(root.clone(), None)];
        entries.extend(
            self.dirs()
                .into_iter()
                .map(|d| (format!("{root}/{d}"), None)),
        );
        entries.extend(
            self.files
                .iter()
                .map(|f| (format!("{root}/{}", f.path), Some(f))),
        );
        entries.sort_by(|a, b| a.0.cmp(&b.0));
        for (path, file) in entries {
            let mut h = tar::Header::new_ustar();
            h.set_mtime(0);
            h.set_uid(0);
            h.set_gid(0);
            h.set_username("root")?;
            h.set_groupname("root")?;
            match file {
                None => {
                    h.set_entry_type(tar::EntryType::Directory);
                    h.set_mode(0o755);
                    h.set_size(0);
                    tar.append_data(&mut h, format!("{path}/"), std::io::empty())?;
                }
                Some(f) => {
                    h.set_entry_type(tar::EntryType::Regular);
                    h.set_mode(f.mode);
                    h.set_size(f.data.len() as u64);
                    tar.append_data(&mut h, &path, f.data.as_slice())?;
                }
            }
        }
        tar.into_inner()?.finish()?.flush()?;
        Ok(())
    }

    /// Read a bundle back and check every file against `MANIFEST`.
    pub fn read_tar_gz<R: Read>(input: R) -> Result<Bundle, BundleError> {
        let mut tar = tar::Archive::new(flate2::read::GzDecoder::new(input));
        let mut root: Option<String> = None;
        let mut files = BTreeMap::new();
        for entry in tar.entries()? {
            let mut entry = entry?;
            let path = entry
                .path()?
                .to_string_lossy()
                .trim_end_matches('/')
                .to_string();
            let (top, rest) = match path.split_once('/') {
                Some((a, b)) => (a.to_string(), Some(b.to_string())),
                None => (path.clone(), None),
            };
            match &root {
                None => root = Some(top.clone()),
                Some(r) if *r != top => {
                    return Err(BundleError::Malformed(format!(
                        "entries under two top directories ({r}, {top})"
                    )))
                }
                _ => {}
            }
            if entry.header().entry_type().is_file() {
                let Some(rel) = rest else {
                    return Err(BundleError::Malformed(format!(
                        "file {path} outside a folder"
                    )));
                };
                if rel.split('/').any(|c| c == ".." || c.is_empty()) {
                    return Err(BundleError::Malformed(format!("unsafe path {path}")));
                }
                let mode = entry.header().mode()? & 0o7777;
                let mut data = Vec::new();
                entry.read_to_end(&mut data)?;
                files.insert(
                    rel.clone(),
                    BundleFile {
                        path: rel,
                        mode,
                        data,
                    },
                );
            }
        }
        let root = root.ok_or_else(|| BundleError::Malformed("empty archive".into()))?;
        let text = |p: &str| -> Result<String, BundleError> {
            let f = files
                .get(p)
                .ok_or_else(|| BundleError::Malformed(format!("no {p} in {root}")))?;
            String::from_utf8(f.data.clone())
                .map_err(|_| BundleError::Malformed(format!("{p} is not text")))
        };
        let manifest = text("MANIFEST")?;
        let release = text("RELEASE")?.trim().to_string();
        let mut listed = 0;
        for line in manifest.lines() {
            let (sum, path) = line
                .split_once("  ")
                .ok_or_else(|| BundleError::Malformed(format!("bad MANIFEST line '{line}'")))?;
            let f = files
                .get(path)
                .ok_or_else(|| BundleError::Malformed(format!("MANIFEST lists missing {path}")))?;
            if sha256_hex(&f.data) != sum {
                return Err(BundleError::Checksum(path.to_string()));
            }
            listed += 1;
        }
        if listed + 1 != files.len() {
            return Err(BundleError::Malformed(
                "files present that MANIFEST does not list".into(),
            ));
        }
        let target = root
            .strip_prefix("speck-")
            .and_then(|r| r.strip_suffix(&format!("-{release}")))
            .ok_or_else(|| {
                BundleError::Malformed(format!("top folder {root} is not speck-<target>-{release}"))
            })?
            .to_string();
        Ok(Bundle {
            target,
            release,
            files: files.into_values().collect(),
        })
    }

    /// Read a `.tar.gz` bundle file.
    pub fn open(path: &std::path::Path) -> Result<Bundle, BundleError> {
        let f = std::fs::File::open(path).map_err(|e| {
            BundleError::Io(std::io::Error::new(
                e.kind(),
                format!("{}: {e}", path.display()),
            ))
        })?;
        Bundle::read_tar_gz(std::io::BufReader::new(f))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inputs<'a>(target: &'a Target, binary: &[u8]) -> BundleInputs<'a> {
        BundleInputs {
            target,
            binary: binary.to_vec(),
            model: ("speck-tiny.onnx".into(), vec![7u8; 1000]),
            version: "0.1.0".into(),
        }
    }

    fn bytes(b: &Bundle) -> Vec<u8> {
        let mut v = Vec::new();
        b.write_tar_gz(&mut v).unwrap();
        v
    }

    #[test]
    fn bundling_twice_gives_identical_bytes_and_new_inputs_a_new_release() {
        let t = Target::load("rpi5").unwrap();
        let a = Bundle::assemble(inputs(&t, b"\x7fELF binary")).unwrap();
        let b = Bundle::assemble(inputs(&t, b"\x7fELF binary")).unwrap();
        assert_eq!(bytes(&a), bytes(&b));
        let c = Bundle::assemble(inputs(&t, b"\x7fELF other")).unwrap();
        assert_ne!(a.release, c.release);
        assert!(a.release.starts_with("0.1.0-") && a.release.len() == 18);
    }

    #[test]
    fn round_trip_lists_every_file_with_its_checksum() {
        let t = Target::load("rpi4").unwrap();
        let b = Bundle::assemble(inputs(&t, b"bin")).unwrap();
        let back = Bundle::read_tar_gz(bytes(&b).as_slice()).unwrap();
        assert_eq!(back, b);
        let paths: Vec<&str> = b.files.iter().map(|f| f.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "MANIFEST",
                "RELEASE",
                "bin/speck",
                "etc/speck.toml",
                "install.sh",
                "share/speck/speck-tiny.onnx",
                "systemd/speck.service",
                "uninstall.sh"
            ]
        );
        let manifest = String::from_utf8(b.file("MANIFEST").unwrap().data.clone()).unwrap();
        assert_eq!(manifest.lines().count(), 7);
        assert!(manifest.contains(&format!("{}  bin/speck", sha256_hex(b"bin"))));
        assert_eq!(b.file("bin/speck").unwrap().mode, 0o755);
        let cfg = String::from_utf8(b.file(CONFIG_PATH).unwrap().data.clone()).unwrap();
        assert_eq!(Target::parse(&cfg, "cfg").unwrap().name, "rpi4");
    }

    #[test]
    fn tampered_bundle_is_rejected() {
        let t = Target::load("rpi4").unwrap();
        let mut b = Bundle::assemble(inputs(&t, b"bin")).unwrap();
        let i = b.files.iter().position(|f| f.path == "bin/speck").unwrap();
        b.files[i].data = b"evil".to_vec();
        let e = Bundle::read_tar_gz(bytes(&b).as_slice()).unwrap_err();
        assert!(
            matches!(e, BundleError::Checksum(ref p) if p == "bin/speck"),
            "{e}"
        );
        let e = Bundle::read_tar_gz(&b"not a gzip"[..]).unwrap_err();
        assert!(e.to_string().contains("bundle"), "{e}");
    }
}
