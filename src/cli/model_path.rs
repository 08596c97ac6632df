//! Where the default model is found when `--model` is not given.

use anyhow::{bail, Result};
use std::path::PathBuf;

/// File name of the shipped default model (a build without the ONNX importer looks for the
/// compiled one).
#[cfg(feature = "onnx")]
pub const DEFAULT_MODEL: &str = "speck-tiny.onnx";
/// File name of the shipped default model (a build without the ONNX importer looks for the
/// compiled one).
#[cfg(not(feature = "onnx"))]
pub const DEFAULT_MODEL: &str = "speck-tiny.speck";

/// `--model` if given, else `$SPECK_MODEL`, else the first shipped copy found.
pub fn resolve(model: Option<PathBuf>) -> Result<PathBuf> {
    resolve_named(model, DEFAULT_MODEL)
}

/// [`resolve`] with another shipped model file as the default (a board's own default).
pub fn resolve_named(model: Option<PathBuf>, default: &str) -> Result<PathBuf> {
    if let Some(m) = model {
        return Ok(m);
    }
    if let Some(m) = std::env::var_os("SPECK_MODEL") {
        return Ok(PathBuf::from(m));
    }
    let mut candidates = vec![PathBuf::from("models").join(default)];
    if let Some(dir) = std::env::current_exe()
        .ok()
        .and_then(|e| e.parent().map(|p| p.to_path_buf()))
    {
        candidates.push(dir.join(default));
        candidates.push(dir.join("../share/speck").join(default));
    }
    candidates.push(
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("models")
            .join(default),
    );
    for c in &candidates {
        if c.is_file() {
            return Ok(c.clone());
        }
    }
    let tried: Vec<String> = candidates.iter().map(|c| c.display().to_string()).collect();
    bail!(
        "no --model given and no default model found (tried $SPECK_MODEL, {})",
        tried.join(", ")
    )
}
