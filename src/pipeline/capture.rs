//! The capture thread: reads frames from the source into the slot, reopening live
//! sources with backoff when they fail or end.

use super::slot::LatestSlot;
use crate::io::source::{FrameSource, SourceSpec};
use crate::io::Frame;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// First and largest wait before reopening a source.
const BACKOFF_MIN: Duration = Duration::from_millis(250);
const BACKOFF_MAX: Duration = Duration::from_secs(8);
/// A non-reconnecting source failing this many frames in a row is given up.
const MAX_CONSECUTIVE_ERRORS: u32 = 50;

/// Counters and outcome shared with the pipeline thread.
#[derive(Default)]
pub struct CaptureState {
    /// frames lost to errors
    pub errors: AtomicU64,
    /// reopenings
    pub reconnects: AtomicU64,
    /// set when the source ended for good; the message says why when it failed
    pub failure: Mutex<Option<String>>,
}

/// Run until the source ends, fails for good, or `stop` is set; closes the slot.
pub fn capture_loop(
    spec: SourceSpec,
    mut source: Option<Box<dyn FrameSource>>,
    slot: Arc<LatestSlot<Frame>>,
    state: Arc<CaptureState>,
    stop: Arc<AtomicBool>,
) {
    let live = spec.is_live();
    let mut backoff = BACKOFF_MIN;
    let mut consecutive = 0u32;
    let mut seq = 0u64;
    let sleep = |d: Duration| {
        let end = std::time::Instant::now() + d;
        while std::time::Instant::now() < end && !stop.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    while !stop.load(Ordering::Relaxed) && !slot.is_closed() {
        let src = match source.as_mut() {
            Some(s) => s,
            None => match spec.open() {
                Ok(s) => {
                    log::warn!("source reopened: {}", s.describe());
                    state.reconnects.fetch_add(1, Ordering::Relaxed);
                    source.insert(s)
                }
                Err(e) => {
                    log::warn!("{e}; retrying in {:.1} s", backoff.as_secs_f32());
                    sleep(backoff);
                    backoff = (backoff * 2).min(BACKOFF_MAX);
                    continue;
                }
            },
        };
        if !live {
            // Read on demand, so a frame's latency starts when it can be processed.
            slot.wait_empty();
        }
        match src.read_frame() {
            Ok(Some(mut f)) => {
                backoff = BACKOFF_MIN;
                consecutive = 0;
                f.seq = seq;
                seq += 1;
                if live {
                    slot.put(f);
                } else {
                    slot.put_wait(f);
                }
            }
            Ok(None) if spec.reconnects() => {
                log::warn!(
                    "{} ended; reopening in {:.1} s",
                    src.describe(),
                    backoff.as_secs_f32()
                );
                source = None;
                sleep(backoff);
                backoff = (backoff * 2).min(BACKOFF_MAX);
            }
            Ok(None) => break,
            Err(e) => {
                state.errors.fetch_add(1, Ordering::Relaxed);
                consecutive += 1;
                if spec.reconnects() {
                    // The stream may be out of step (a truncated frame) or gone: start over.
                    log::warn!("{e}; reopening in {:.1} s", backoff.as_secs_f32());
                    source = None;
                    sleep(backoff);
                    backoff = (backoff * 2).min(BACKOFF_MAX);
                } else if consecutive >= MAX_CONSECUTIVE_ERRORS {
                    *state.failure.lock().unwrap_or_else(|p| p.into_inner()) = Some(format!(
                        "giving up after {consecutive} failed frames in a row: {e}"
                    ));
                    break;
                } else {
                    log::warn!("{e}");
                }
            }
        }
    }
    slot.close();
}
