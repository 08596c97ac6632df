//! The compiled model file (`.speck`): speck's graph after import and graph passes, the
//! model's metadata and its weights, in one versioned, checksummed, memory-mappable file.
//! Loading it needs no ONNX parser, so a device build can leave the importer out.
//!
//! Layout (all integers little-endian; `docs/compiled-format.md` has every field):
//! - a fixed 64-byte header: magic [`MAGIC`], [`FORMAT_VERSION`], header length, file length,
//!   flags, crc32 of the payload, target name (the CPU the data is laid out for), section
//!   count, crc32 of the header; then the section table (kind, offset, length per entry);
//! - the **plan** section: a [`Plan`] (values, nodes with their [`Op`](crate::ops::Op)s,
//!   inputs, outputs, metadata, pass log) serialized with `postcard`;
//! - the **weights** section: each constant's elements, raw little-endian, row-major, at a
//!   multiple of 64 bytes, so the file can be memory-mapped and the weights copied once.
//!
//! The fp32 convolution kernels' packed layout (`[M, C/group * kh * kw]` row-major) is the
//! stored layout itself, so "packing" at load is the one copy out of the map. int8 convs that
//! run as GEMMs are stored prepacked in the weights section (the c4 layout every int8 GEMM
//! kernel reads, on every ISA) and checked, not repacked, at load; int8 depthwise weights stay
//! in the plan in ONNX order (see `docs/compiled-format.md`).
//!
//! # Rule for new ops and attribute types
//! Every type reachable from [`Op`](crate::ops::Op) derives `serde::Serialize` and
//! `serde::Deserialize`; that derive is all a new op needs to be compiled. postcard encodes
//! enum variants by position, so **append new `Op` variants at the end**, add a sample of the
//! new variant to the golden test in `tests.rs`, and bump [`FORMAT_VERSION`] whenever an
//! existing variant or attribute type changes shape (the golden test fails until you do).
//! A file of another version is refused with [`CompiledError::UnsupportedVersion`]:
//! compiled files are build outputs, recompiled from the ONNX model, never migrated.

mod header;
mod plan;
mod target;
mod validate;

#[cfg(test)]
mod tests;

pub use header::{Header, Section, SectionKind, ALIGN, FLAG_PASSES_APPLIED, FORMAT_VERSION, MAGIC};
pub use plan::{Plan, PlanValue, WeightRef, WeightType};
pub use target::{Arch, Target};

use crate::model::Graph;
use std::path::Path;

/// Why a compiled model could not be read.
#[derive(Debug, thiserror::Error)]
pub enum CompiledError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// file
        path: String,
        /// cause
        source: std::io::Error,
    },
    /// Not a compiled speck model.
    #[error("not a compiled speck model (wrong magic bytes)")]
    WrongMagic,
    /// Written by a speck with another format version.
    #[error(
        "compiled model format version {found} is not supported by this speck (it reads \
         version {supported}); recompile the model with `speck compile` from this release"
    )]
    UnsupportedVersion {
        /// version in the file
        found: u32,
        /// the version this build reads
        supported: u32,
    },
    /// The file ends early.
    #[error("truncated compiled model: {got} bytes, the header says {expected}")]
    Truncated {
        /// bytes the header declares
        expected: u64,
        /// bytes present
        got: u64,
    },
    /// A checksum does not match: the bytes changed after writing.
    #[error("compiled model {part} checksum mismatch: the file is corrupt")]
    ChecksumMismatch {
        /// `header` or `payload`
        part: &'static str,
    },
    /// Compiled for a CPU this one is not.
    #[error("model compiled for target '{target}', which this CPU cannot run: {reason}; recompile with `speck compile --target host`")]
    TargetMismatch {
        /// target in the file
        target: String,
        /// what is missing
        reason: String,
    },
    /// The header is inconsistent.
    #[error("corrupt compiled model header: {0}")]
    Corrupt(String),
    /// The plan or weights do not decode or do not make a valid graph.
    #[error("corrupt compiled model plan: {0}")]
    CorruptPlan(String),
}

/// A decoded compiled model.
#[derive(Debug)]
pub struct CompiledModel {
    /// the graph, ready for [`Engine::new`](crate::Engine::new) without passes
    pub graph: Graph,
    /// target the file was compiled for
    pub target: Target,
    /// whether graph passes were applied at compile time
    pub passes_applied: bool,
    /// what the passes changed
    pub pass_log: Vec<String>,
    /// speck version that wrote it
    pub speck_version: String,
    /// file name of the source model
    pub source: String,
}

/// Check that a graph is one the engine can plan from a file: ids in range, topological
/// order, stored shapes equal to shape inference (run on every decoded plan).
pub fn check_graph(g: &Graph) -> Result<(), CompiledError> {
    validate::check(g)
}

/// Whether `bytes` (the start of a file) begin with the compiled model magic.
pub fn has_magic(bytes: &[u8]) -> bool {
    bytes.starts_with(&MAGIC)
}

/// Whether the file at `path` is a compiled model (by its magic bytes, not its name).
pub fn is_compiled_file(path: &Path) -> Result<bool, CompiledError> {
    use std::io::Read;
    let io = |source| CompiledError::Io {
        path: path.display().to_string(),
        source,
    };
    let mut f = std::fs::File::open(path).map_err(io)?;
    let mut head = [0u8; MAGIC.len()];
    let mut got = 0;
    while got < head.len() {
        match f.read(&mut head[got..]).map_err(io)? {
            0 => break,
            n => got += n,
        }
    }
    Ok(has_magic(&head[..got]))
}

/// Encode a graph (already through the passes when `passes_applied`) as a compiled model.
pub fn to_bytes(
    g: &Graph,
    target: Target,
    passes_applied: bool,
    pass_log: &[String],
    source: &str,
) -> Vec<u8> {
    let (plan, weights) = plan::from_graph(g, source, pass_log);
    let plan_bytes = postcard::to_stdvec(&plan).expect("the plan serializes to memory");
    let hlen = header::header_len(2);
    let plan_off = hlen;
    let weights_off = header::align_up(plan_off + plan_bytes.len());
    let file_len = weights_off + weights.len();
    let mut file = vec![0u8; file_len];
    file[plan_off..plan_off + plan_bytes.len()].copy_from_slice(&plan_bytes);
    file[weights_off..].copy_from_slice(&weights);
    let h = Header {
        file_len: file_len as u64,
        flags: if passes_applied {
            FLAG_PASSES_APPLIED
        } else {
            0
        },
        payload_crc: crc32fast::hash(&file[hlen..]),
        target: target.name.to_string(),
        sections: vec![
            Section {
                kind: SectionKind::Plan,
                offset: plan_off as u64,
                len: plan_bytes.len() as u64,
            },
            Section {
                kind: SectionKind::Weights,
                offset: weights_off as u64,
                len: weights.len() as u64,
            },
        ],
    };
    file[..hlen].copy_from_slice(&h.encode());
    file
}

/// Decode a compiled model from its bytes, checking header, target, checksum and plan.
pub fn from_bytes(file: &[u8]) -> Result<CompiledModel, CompiledError> {
    from_bytes_releasing(file, &|_| {})
}

/// [`from_bytes`], calling `release` with each part of `file` once it has been read for the
/// last time (a memory-mapped file drops those pages, so the map and the decoded weights are
/// never resident together).
fn from_bytes_releasing(
    file: &[u8],
    release: &dyn Fn(&[u8]),
) -> Result<CompiledModel, CompiledError> {
    let (h, hlen) = Header::decode(file)?;
    let target = Target::parse(&h.target).ok_or_else(|| {
        CompiledError::Corrupt(format!("unknown target '{}'", h.target.escape_default()))
    })?;
    if let Some(reason) = target.missing_on_host() {
        return Err(CompiledError::TargetMismatch {
            target: target.name.to_string(),
            reason,
        });
    }
    let mut crc = crc32fast::Hasher::new();
    for part in file[hlen..].chunks(1 << 20) {
        crc.update(part);
        release(part);
    }
    if crc.finalize() != h.payload_crc {
        return Err(CompiledError::ChecksumMismatch { part: "payload" });
    }
    let range = |s: Section| &file[s.offset as usize..(s.offset + s.len) as usize];
    let plan_bytes = range(h.section(SectionKind::Plan)?);
    let weights = range(h.section(SectionKind::Weights)?);
    let plan: Plan = postcard::from_bytes(plan_bytes)
        .map_err(|e| CompiledError::CorruptPlan(format!("cannot decode: {e}")))?;
    release(plan_bytes); // (int8 depthwise weights live in the plan section)
    let pass_log = plan.pass_log.clone();
    let speck_version = plan.speck_version.clone();
    let source = plan.source.clone();
    let graph = plan::to_graph(plan, weights, release)?;
    validate::check(&graph)?;
    Ok(CompiledModel {
        graph,
        target,
        passes_applied: h.flags & FLAG_PASSES_APPLIED != 0,
        pass_log,
        speck_version,
        source,
    })
}

/// Read a compiled model file through a read-only memory map (weights are copied once, out
/// of the map, into the graph's tensors; the pages of the map are released as soon as they
/// have been read, and the map is dropped before returning).
pub fn load(path: &Path) -> Result<CompiledModel, CompiledError> {
    let io = |source| CompiledError::Io {
        path: path.display().to_string(),
        source,
    };
    let file = std::fs::File::open(path).map_err(io)?;
    // SAFETY: the map is read-only and private to this call; a file changed underneath by
    // another process may give wrong bytes, which the checksums then reject.
    match unsafe { memmap2::Mmap::map(&file) } {
        Ok(map) => from_bytes_releasing(&map, &|part| release_pages(&map, part)),
        // Files that cannot be mapped (pipes, some special file systems) are read instead.
        Err(_) => from_bytes(&std::fs::read(path).map_err(io)?),
    }
}

/// Drop the whole pages of `part` (a slice of `map`) from the resident set: without it a
/// model's weights would be resident twice at the end of loading, once in the map and once
/// in the graph.
fn release_pages(map: &memmap2::Mmap, part: &[u8]) {
    #[cfg(unix)]
    {
        // whole pages inside `part` only (16 KiB on a Raspberry Pi 5 kernel, 4 KiB elsewhere)
        // SAFETY: sysconf has no preconditions.
        let page = match unsafe { libc::sysconf(libc::_SC_PAGESIZE) } {
            p if p > 0 => p as usize,
            _ => return,
        };
        let start = part.as_ptr() as usize - map.as_ptr() as usize;
        let (first, end) = (
            start.div_ceil(page) * page,
            (start + part.len()) / page * page,
        );
        if end > first {
            // SAFETY: a private, read-only file map that is never written: pages dropped
            // here are read again from the file if touched, with the same bytes (the
            // file changing underneath is the caveat of any map, see `load`).
            let _ = unsafe {
                map.unchecked_advise_range(memmap2::UncheckedAdvice::DontNeed, first, end - first)
            };
        }
    }
    #[cfg(not(unix))]
    let _ = (map, part);
}

/// Write a compiled model file; returns its size in bytes.
pub fn write(
    path: &Path,
    g: &Graph,
    target: Target,
    passes_applied: bool,
    pass_log: &[String],
    source: &str,
) -> Result<usize, CompiledError> {
    let bytes = to_bytes(g, target, passes_applied, pass_log, source);
    std::fs::write(path, &bytes).map_err(|source| CompiledError::Io {
        path: path.display().to_string(),
        source,
    })?;
    Ok(bytes.len())
}
