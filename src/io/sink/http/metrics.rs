//! `/metrics` in the Prometheus text exposition format.

use super::Shared;
use crate::pipeline::StatsSnapshot;
use std::fmt::Write;
use std::sync::atomic::Ordering;

pub(super) fn render(s: &StatsSnapshot, shared: &Shared) -> String {
    let mut out = String::new();
    let mut metric = |name: &str, kind: &str, help: &str, samples: &[(&str, f64)]| {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for (labels, v) in samples {
            let _ = writeln!(out, "{name}{labels} {v}");
        }
    };
    metric(
        "speck_frames_total",
        "counter",
        "Frames processed.",
        &[("", s.frames as f64)],
    );
    metric(
        "speck_dropped_frames_total",
        "counter",
        "Frames dropped because a newer one arrived first.",
        &[("", s.dropped as f64)],
    );
    metric(
        "speck_source_errors_total",
        "counter",
        "Frames lost to source errors.",
        &[("", s.source_errors as f64)],
    );
    metric(
        "speck_source_reconnects_total",
        "counter",
        "Times the source was reopened.",
        &[("", s.reconnects as f64)],
    );
    metric(
        "speck_fps",
        "gauge",
        "Frames per second over recent frames.",
        &[("", s.fps)],
    );
    metric(
        "speck_detections",
        "gauge",
        "Detections in the latest frame.",
        &[("", s.detections as f64)],
    );
    metric(
        "speck_stage_seconds",
        "gauge",
        "Mean time per frame of each stage over recent frames.",
        &[
            ("{stage=\"preprocess\"}", s.mean.preprocess_ms / 1e3),
            ("{stage=\"engine\"}", s.mean.engine_ms / 1e3),
            ("{stage=\"post\"}", s.mean.post_ms / 1e3),
            ("{stage=\"sinks\"}", s.mean.sinks_ms / 1e3),
        ],
    );
    metric(
        "speck_latency_seconds",
        "gauge",
        "Mean capture-to-result latency over recent frames.",
        &[("", s.mean.latency_ms / 1e3)],
    );
    metric(
        "speck_uptime_seconds",
        "gauge",
        "Seconds since the pipeline started.",
        &[("", s.uptime_s)],
    );
    metric(
        "speck_http_clients",
        "gauge",
        "Connected streaming clients.",
        &[
            (
                "{endpoint=\"stream\"}",
                shared.stream_clients.load(Ordering::Relaxed) as f64,
            ),
            (
                "{endpoint=\"events\"}",
                shared.event_clients.load(Ordering::Relaxed) as f64,
            ),
        ],
    );
    metric(
        "speck_http_missed_events_total",
        "counter",
        "Events slow SSE clients skipped.",
        &[("", shared.missed_events.load(Ordering::Relaxed) as f64)],
    );
    out
}
