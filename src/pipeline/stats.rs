//! Live counters and timings of the pipeline: a snapshot per frame for the sinks (overlay,
//! `/metrics`, SSE) and a summary at the end.

use serde::Serialize;
use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// Percentiles are computed over at most this many recent frames (bounded memory for runs
/// that last days).
const WINDOW: usize = 100_000;
/// The live FPS and stage means cover this many recent frames.
const RECENT: usize = 60;

/// Per-frame stage times in milliseconds.
#[derive(Clone, Copy, Debug, Default, Serialize, PartialEq)]
pub struct FrameTimes {
    /// letterbox and normalisation
    pub preprocess_ms: f64,
    /// engine runs
    pub engine_ms: f64,
    /// decoding and NMS
    pub post_ms: f64,
    /// handing the result to the sinks (drawing/encoding happen on sink threads)
    pub sinks_ms: f64,
    /// capture to results published
    pub latency_ms: f64,
}

/// Live numbers, updated every frame.
#[derive(Clone, Debug, Default, Serialize)]
pub struct StatsSnapshot {
    /// frames processed
    pub frames: u64,
    /// frames dropped because a newer one arrived first
    pub dropped: u64,
    /// frames lost to source errors (truncated, corrupt, read failures)
    pub source_errors: u64,
    /// times the source was reopened
    pub reconnects: u64,
    /// frames per second over recent frames
    pub fps: f64,
    /// detections in the latest frame
    pub detections: usize,
    /// the latest frame's times
    pub last: FrameTimes,
    /// mean times over recent frames
    pub mean: FrameTimes,
    /// seconds since start
    pub uptime_s: f64,
    /// source description
    pub source: String,
}

/// A percentile summary in milliseconds.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct Percentiles {
    /// median
    pub p50: f64,
    /// 90th percentile
    pub p90: f64,
    /// 99th percentile
    pub p99: f64,
    /// largest
    pub max: f64,
}

impl Percentiles {
    fn of(v: &VecDeque<f64>) -> Percentiles {
        if v.is_empty() {
            return Percentiles::default();
        }
        let mut s: Vec<f64> = v.iter().copied().collect();
        s.sort_by(f64::total_cmp);
        let at = |q: f64| s[((s.len() - 1) as f64 * q).round() as usize];
        Percentiles {
            p50: at(0.5),
            p90: at(0.9),
            p99: at(0.99),
            max: *s.last().unwrap_or(&0.0),
        }
    }
}

/// The end-of-run report.
#[derive(Clone, Debug, Serialize)]
pub struct Summary {
    /// source description
    pub source: String,
    /// frames processed
    pub frames: u64,
    /// frames dropped (latest-frame-wins)
    pub dropped: u64,
    /// frames lost to source errors
    pub source_errors: u64,
    /// source reopenings
    pub reconnects: u64,
    /// wall time of the run
    pub seconds: f64,
    /// frames / seconds
    pub fps: f64,
    /// capture-to-published latency
    pub latency_ms: Percentiles,
    /// mean stage times
    pub mean: FrameTimes,
    /// share of the pipeline thread's per-frame time spent outside the engine
    pub overhead_share: f64,
    /// detections over all frames
    pub detections: u64,
    /// why the run ended
    pub ended_by: String,
}

/// Accumulates frame times.
pub struct Stats {
    start: Instant,
    snapshot: StatsSnapshot,
    recent: VecDeque<(Instant, FrameTimes)>,
    latencies: VecDeque<f64>,
    sum: FrameTimes,
    detections: u64,
}

impl Stats {
    /// Start counting now.
    pub fn new(source: String) -> Stats {
        Stats {
            start: Instant::now(),
            snapshot: StatsSnapshot {
                source,
                ..Default::default()
            },
            recent: VecDeque::new(),
            latencies: VecDeque::new(),
            sum: FrameTimes::default(),
            detections: 0,
        }
    }

    /// Record one processed frame.
    pub fn record(&mut self, t: FrameTimes, detections: usize) {
        let now = Instant::now();
        let s = &mut self.snapshot;
        s.frames += 1;
        s.detections = detections;
        s.last = t;
        s.uptime_s = self.start.elapsed().as_secs_f64();
        self.detections += detections as u64;
        add(&mut self.sum, &t, 1.0);
        self.recent.push_back((now, t));
        if self.recent.len() > RECENT {
            self.recent.pop_front();
        }
        self.latencies.push_back(t.latency_ms);
        if self.latencies.len() > WINDOW {
            self.latencies.pop_front();
        }
        let n = self.recent.len();
        let mut mean = FrameTimes::default();
        for (_, r) in &self.recent {
            add(&mut mean, r, 1.0 / n as f64);
        }
        s.mean = mean;
        let span = now.duration_since(self.recent[0].0).as_secs_f64();
        s.fps = if n > 1 && span > 0.0 {
            (n - 1) as f64 / span
        } else {
            0.0
        };
    }

    /// Update the counters kept elsewhere (slot drops, capture thread).
    pub fn set_counters(&mut self, dropped: u64, source_errors: u64, reconnects: u64) {
        self.snapshot.dropped = dropped;
        self.snapshot.source_errors = source_errors;
        self.snapshot.reconnects = reconnects;
        self.snapshot.uptime_s = self.start.elapsed().as_secs_f64();
    }

    /// The current numbers.
    pub fn snapshot(&self) -> &StatsSnapshot {
        &self.snapshot
    }

    /// One log line.
    pub fn line(&self) -> String {
        let s = &self.snapshot;
        let p = Percentiles::of(&self.latencies);
        format!(
            "{} frames, {:.1} fps, latency {:.0} ms (p99 {:.0}), pre {:.1} / engine {:.1} / post {:.1} ms, {} dropped, {} source errors, {} reconnects",
            s.frames, s.fps, s.mean.latency_ms, p.p99, s.mean.preprocess_ms, s.mean.engine_ms, s.mean.post_ms, s.dropped, s.source_errors, s.reconnects
        )
    }

    /// The end-of-run summary.
    pub fn summary(&self, ended_by: &str) -> Summary {
        let s = &self.snapshot;
        let secs = self.start.elapsed().as_secs_f64();
        let mut mean = FrameTimes::default();
        if s.frames > 0 {
            add(&mut mean, &self.sum, 1.0 / s.frames as f64);
        }
        let frame_time = mean.preprocess_ms + mean.engine_ms + mean.post_ms + mean.sinks_ms;
        Summary {
            source: s.source.clone(),
            frames: s.frames,
            dropped: s.dropped,
            source_errors: s.source_errors,
            reconnects: s.reconnects,
            seconds: secs,
            fps: if secs > 0.0 {
                s.frames as f64 / secs
            } else {
                0.0
            },
            latency_ms: Percentiles::of(&self.latencies),
            mean,
            overhead_share: if frame_time > 0.0 {
                1.0 - mean.engine_ms / frame_time
            } else {
                0.0
            },
            detections: self.detections,
            ended_by: ended_by.into(),
        }
    }
}

fn add(acc: &mut FrameTimes, t: &FrameTimes, w: f64) {
    acc.preprocess_ms += t.preprocess_ms * w;
    acc.engine_ms += t.engine_ms * w;
    acc.post_ms += t.post_ms * w;
    acc.sinks_ms += t.sinks_ms * w;
    acc.latency_ms += t.latency_ms * w;
}

/// Milliseconds of a duration.
pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

impl Summary {
    /// Human-readable lines.
    pub fn lines(&self) -> Vec<String> {
        vec![
            format!(
                "{} frames in {:.1} s ({:.2} fps) from {}, ended by {}",
                self.frames, self.seconds, self.fps, self.source, self.ended_by
            ),
            format!(
                "latency p50 {:.1} ms, p90 {:.1}, p99 {:.1}, max {:.1}",
                self.latency_ms.p50, self.latency_ms.p90, self.latency_ms.p99, self.latency_ms.max
            ),
            format!(
                "mean per frame: preprocess {:.2} ms, engine {:.2}, decode/NMS {:.2}, sinks {:.2}; outside the engine {:.1}%",
                self.mean.preprocess_ms,
                self.mean.engine_ms,
                self.mean.post_ms,
                self.mean.sinks_ms,
                100.0 * self.overhead_share
            ),
            format!(
                "{} dropped, {} source errors, {} reconnects, {} detections",
                self.dropped, self.source_errors, self.reconnects, self.detections
            ),
        ]
    }
}
