//! What the pipeline hands its sinks, and the sink interface.

use super::stats::{FrameTimes, StatsSnapshot, Summary};
use crate::detect::Detection;
use crate::draw::{draw_detections, draw_text_block, FrameCanvas};
use crate::io::Frame;
use serde::Serialize;
use std::sync::Arc;

/// One processed frame.
#[derive(Debug, Serialize)]
pub struct FrameResult {
    /// The captured frame (not annotated; sinks draw on their own copy, on their own thread).
    #[serde(skip)]
    pub frame: Arc<Frame>,
    /// capture counter
    pub seq: u64,
    /// capture time, seconds since the Unix epoch
    pub frame_time: f64,
    /// frame width
    pub width: usize,
    /// frame height
    pub height: usize,
    /// What was found.
    pub detections: Vec<Detection>,
    /// This frame's stage times.
    pub times: FrameTimes,
    /// Live numbers at this frame.
    #[serde(skip)]
    pub stats: StatsSnapshot,
}

impl FrameResult {
    /// The frame with boxes and the stats overlay drawn on a copy.
    pub fn annotated(&self) -> Vec<u8> {
        let f = &self.frame;
        let mut rgb = f.rgb.clone();
        if let Some(mut c) = FrameCanvas::new(&mut rgb, f.width, f.height) {
            draw_detections(&mut c, &self.detections);
            let s = &self.stats;
            draw_text_block(
                &mut c,
                &[
                    format!("speck {:.1} fps  {} found", s.fps, self.detections.len()),
                    format!(
                        "latency {:.0} ms  engine {:.0} ms",
                        self.times.latency_ms, self.times.engine_ms
                    ),
                    format!("dropped {}  frame {}", s.dropped, self.seq),
                ],
            );
        }
        rgb
    }
}

/// A consumer of results. `publish` runs on the pipeline thread and must not block:
/// slow work (encoding, network) belongs on the sink's own threads.
pub trait Sink: Send {
    /// Name for logs.
    fn name(&self) -> String;
    /// Take one result.
    fn publish(&mut self, result: &Arc<FrameResult>);
    /// The run ended; flush and close.
    fn finish(&mut self, _summary: &Summary) {}
}
