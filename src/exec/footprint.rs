//! The process's resident memory, for `speck bench`'s footprint line and debug logs: Linux's
//! `/proc/self/status` (VmRSS now, VmHWM the peak). Elsewhere nothing is reported.

/// Resident set size now and at its peak, in bytes (`None` where the OS does not say).
pub fn rss_bytes() -> Option<(u64, u64)> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let field = |name: &str| -> Option<u64> {
        let line = status.lines().find(|l| l.starts_with(name))?;
        let kb: u64 = line[name.len()..]
            .trim()
            .trim_end_matches("kB")
            .trim()
            .parse()
            .ok()?;
        Some(kb * 1024)
    };
    Some((field("VmRSS:")?, field("VmHWM:")?))
}

/// Hand the heap's free pages back to the OS (glibc `malloc_trim`). Loading a model frees far
/// more than it keeps (the ONNX importer's protobuf and tract model, the float copies of
/// weights that planning packs), and glibc keeps freed small blocks resident: without this the
/// activation arena and the worker threads' memory came on top of them, and the importer's
/// leftovers stayed resident for the life of the process. A no-op off glibc.
pub fn return_free_heap() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only walks and releases the allocator's own free lists.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Log the resident memory at a named point (debug level: `-vv`).
pub fn log_rss(at: &str) {
    if log::log_enabled!(log::Level::Debug) {
        if let Some((now, peak)) = rss_bytes() {
            log::debug!(
                "memory {at}: resident {:.1} MiB, peak {:.1} MiB",
                now as f64 / (1 << 20) as f64,
                peak as f64 / (1 << 20) as f64
            );
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn rss_is_read_on_linux() {
        if cfg!(target_os = "linux") {
            let (now, peak) = super::rss_bytes().expect("/proc/self/status");
            assert!(now > 0 && peak >= now);
        }
    }
}
