//! The live pipeline behind `speck run`:
//!
//! ```text
//! capture thread: source -> RGB frame -> latest-frame-wins slot (stale frames dropped)
//! pipeline thread: slot -> preprocess -> engine -> decode/NMS -> sinks (non-blocking)
//! sink threads:   draw + JPEG (HTTP), MQTT client, ffmpeg recorder
//! ```

mod capture;
pub mod sink;
pub mod slot;
pub mod stats;

pub use sink::{FrameResult, Sink};
pub use stats::{FrameTimes, Percentiles, Stats, StatsSnapshot, Summary};

use crate::detect::{Detector, TileOptions};
use crate::io::source::SourceSpec;
use anyhow::{bail, Result};
use capture::CaptureState;
use slot::{LatestSlot, Taken};
use stats::ms;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How the pipeline runs.
#[derive(Clone, Debug, Default)]
pub struct PipelineOptions {
    /// Process at most this many frames per second (frames in between are dropped).
    pub max_fps: Option<f64>,
    /// Stop after this many frames.
    pub max_frames: Option<u64>,
    /// Sliced inference, as `speck detect` uses it.
    pub tiles: Option<TileOptions>,
    /// Print a stats line this often (`None`: never).
    pub stats_every: Option<Duration>,
}

/// Run until the source ends, `max_frames` are done, or `stop` is set (SIGINT/SIGTERM).
/// Opening the source fails early with its error; later failures of live sources are
/// retried with backoff.
pub fn run(
    spec: &SourceSpec,
    det: &mut Detector,
    sinks: &mut [Box<dyn Sink>],
    opts: &PipelineOptions,
    stop: Arc<AtomicBool>,
) -> Result<Summary> {
    let source = spec.open()?;
    let mut stats = Stats::new(source.describe());
    log::info!("source: {}", source.describe());
    let slot = Arc::new(LatestSlot::default());
    let state = Arc::new(CaptureState::default());
    let capture = {
        let (spec, slot, state, stop) = (spec.clone(), slot.clone(), state.clone(), stop.clone());
        std::thread::Builder::new()
            .name("capture".into())
            .spawn(move || capture::capture_loop(spec, Some(source), slot, state, stop))?
    };
    let min_interval = opts
        .max_fps
        .filter(|f| *f > 0.0)
        .map(|f| Duration::from_secs_f64(1.0 / f));
    let mut last_start: Option<Instant> = None;
    let mut last_log = Instant::now();
    let mut detect_errors = 0u32;
    let ended_by;
    loop {
        if stop.load(Ordering::Relaxed) {
            ended_by = "signal".to_string();
            break;
        }
        if opts
            .max_frames
            .is_some_and(|n| stats.snapshot().frames >= n)
        {
            ended_by = "max-frames".to_string();
            break;
        }
        if let (Some(iv), Some(t)) = (min_interval, last_start) {
            let wait = iv.saturating_sub(t.elapsed());
            if !wait.is_zero() {
                std::thread::sleep(wait.min(Duration::from_millis(50)));
                continue;
            }
        }
        let frame = match slot.take(Duration::from_millis(100)) {
            Taken::Item(f) => f,
            Taken::Empty => continue,
            Taken::Closed => {
                ended_by = match state
                    .failure
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .take()
                {
                    Some(why) => format!("source failure: {why}"),
                    None => "end of source".to_string(),
                };
                break;
            }
        };
        last_start = Some(Instant::now());
        let t0 = Instant::now();
        let dets = match &opts.tiles {
            Some(t) => det.detect_tiled(frame.view(), t),
            None => det.detect(frame.view()),
        };
        let detect_time = t0.elapsed();
        let st = det.take_stage_times();
        let dets = match dets {
            Ok(d) => {
                detect_errors = 0;
                d
            }
            Err(e) => {
                detect_errors += 1;
                log::warn!("frame {}: {e:#}", frame.seq);
                if detect_errors >= 20 {
                    slot.close();
                    bail!("detection failed on 20 frames in a row: {e:#}");
                }
                continue;
            }
        };
        stats.set_counters(
            slot.dropped(),
            state.errors.load(Ordering::Relaxed),
            state.reconnects.load(Ordering::Relaxed),
        );
        let mut times = FrameTimes {
            preprocess_ms: ms(st.preprocess),
            engine_ms: ms(st.engine),
            post_ms: ms(detect_time.saturating_sub(st.preprocess + st.engine)),
            sinks_ms: 0.0,
            latency_ms: 0.0,
        };
        let t_sinks = Instant::now();
        let frame = Arc::new(frame);
        let mut result = FrameResult {
            seq: frame.seq,
            frame_time: frame.unix_time,
            width: frame.width,
            height: frame.height,
            frame: frame.clone(),
            detections: dets,
            times,
            stats: stats.snapshot().clone(),
        };
        result.times.latency_ms = ms(frame.captured.elapsed());
        let result = Arc::new(result);
        for s in sinks.iter_mut() {
            s.publish(&result);
        }
        times.sinks_ms = ms(t_sinks.elapsed());
        times.latency_ms = ms(frame.captured.elapsed());
        stats.record(times, result.detections.len());
        if let Some(every) = opts.stats_every {
            if last_log.elapsed() >= every {
                last_log = Instant::now();
                eprintln!("{}", stats.line());
            }
        }
    }
    slot.close();
    stats.set_counters(
        slot.dropped(),
        state.errors.load(Ordering::Relaxed),
        state.reconnects.load(Ordering::Relaxed),
    );
    // Give the capture thread a moment to stop its source (spawned commands are ended
    // cleanly); one blocked in a read that never returns (stdin) is not waited for.
    let deadline = Instant::now() + Duration::from_secs(2);
    while !capture.is_finished() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    if capture.is_finished() {
        let _ = capture.join();
    }
    let summary = stats.summary(&ended_by);
    for s in sinks.iter_mut() {
        s.finish(&summary);
    }
    Ok(summary)
}
