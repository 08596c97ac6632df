//! `--serve`: the live view and APIs over HTTP.
//!
//! | path | what |
//! |---|---|
//! | `/` | page: live annotated view, detection list, stats |
//! | `/stream.mjpg` | annotated frames, `multipart/x-mixed-replace` JPEG |
//! | `/api/detections` | latest frame's detections, JSON |
//! | `/events` | Server-Sent Events, one per frame |
//! | `/health` | `ok` (no token needed) |
//! | `/metrics` | Prometheus text |
//!
//! Built on `tiny_http` (small, synchronous, no async runtime): every request gets its own
//! thread, and streaming clients read from per-client cursors into [`Broadcast`] rings,
//! so a slow or stalled client only ever blocks its own thread. One encoder thread draws
//! and JPEG-encodes the newest frame, and only while someone watches the stream.

mod metrics;
mod server;

use super::broadcast::Broadcast;
use crate::pipeline::slot::{LatestSlot, Taken};
use crate::pipeline::{FrameResult, Sink, StatsSnapshot, Summary};
use serde_json::json;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Errors starting the server.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    /// Cannot listen.
    #[error("cannot serve on {addr}: {why}")]
    Bind {
        /// address
        addr: String,
        /// reason
        why: String,
    },
}

/// State shared by the sink, the encoder and the request threads.
pub(crate) struct Shared {
    token: Option<String>,
    latest: Mutex<Option<Arc<FrameResult>>>,
    stats: Mutex<StatsSnapshot>,
    jpeg: Broadcast<Arc<Vec<u8>>>,
    events: Broadcast<Arc<String>>,
    stream_clients: AtomicUsize,
    event_clients: AtomicUsize,
    missed_events: AtomicU64,
    stopping: AtomicBool,
}

/// The HTTP sink.
pub struct HttpSink {
    shared: Arc<Shared>,
    to_encoder: Arc<LatestSlot<Arc<FrameResult>>>,
    addr: SocketAddr,
}

/// JPEG quality of the stream.
const JPEG_QUALITY: u8 = 75;

impl HttpSink {
    /// Listen on `addr` (requests need `token` when given) and start serving.
    pub fn start(addr: &str, token: Option<String>) -> Result<HttpSink, HttpError> {
        let server = tiny_http::Server::http(addr).map_err(|e| HttpError::Bind {
            addr: addr.into(),
            why: e.to_string(),
        })?;
        let bound = server
            .server_addr()
            .to_ip()
            .ok_or_else(|| HttpError::Bind {
                addr: addr.into(),
                why: "not an IP address".into(),
            })?;
        let shared = Arc::new(Shared {
            token,
            latest: Mutex::new(None),
            stats: Mutex::new(StatsSnapshot::default()),
            jpeg: Broadcast::new(1),
            events: Broadcast::new(256),
            stream_clients: AtomicUsize::new(0),
            event_clients: AtomicUsize::new(0),
            missed_events: AtomicU64::new(0),
            stopping: AtomicBool::new(false),
        });
        let to_encoder = Arc::new(LatestSlot::default());
        {
            let (shared, slot) = (shared.clone(), to_encoder.clone());
            std::thread::Builder::new()
                .name("http-encoder".into())
                .spawn(move || encoder_loop(&shared, &slot))
                .map_err(|e| HttpError::Bind {
                    addr: addr.into(),
                    why: e.to_string(),
                })?;
        }
        {
            let shared = shared.clone();
            std::thread::Builder::new()
                .name("http".into())
                .spawn(move || server::serve(server, shared))
                .map_err(|e| HttpError::Bind {
                    addr: addr.into(),
                    why: e.to_string(),
                })?;
        }
        Ok(HttpSink {
            shared,
            to_encoder,
            addr: bound,
        })
    }

    /// The bound address (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }
}

fn encoder_loop(shared: &Shared, slot: &LatestSlot<Arc<FrameResult>>) {
    loop {
        let r = match slot.take(Duration::from_millis(500)) {
            Taken::Item(r) => r,
            Taken::Empty => continue,
            Taken::Closed => return,
        };
        if shared.stream_clients.load(Ordering::Relaxed) == 0 {
            continue;
        }
        let rgb = r.annotated();
        let mut jpg = Vec::with_capacity(rgb.len() / 8);
        let mut enc = image::codecs::jpeg::JpegEncoder::new_with_quality(&mut jpg, JPEG_QUALITY);
        match enc.encode(
            &rgb,
            r.width as u32,
            r.height as u32,
            image::ExtendedColorType::Rgb8,
        ) {
            Ok(()) => shared.jpeg.push(Arc::new(jpg)),
            Err(e) => log::warn!("JPEG encoding failed: {e}"),
        }
    }
}

/// The SSE/JSON form of one frame.
pub(crate) fn event_json(r: &FrameResult) -> String {
    json!({
        "seq": r.seq,
        "frame_time": r.frame_time,
        "width": r.width,
        "height": r.height,
        "detections": r.detections,
        "times": r.times,
        "stats": r.stats,
    })
    .to_string()
}

impl Sink for HttpSink {
    fn name(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn publish(&mut self, r: &Arc<FrameResult>) {
        *self.shared.latest.lock().unwrap_or_else(|p| p.into_inner()) = Some(r.clone());
        *self.shared.stats.lock().unwrap_or_else(|p| p.into_inner()) = r.stats.clone();
        if self.shared.event_clients.load(Ordering::Relaxed) > 0 {
            self.shared.events.push(Arc::new(event_json(r)));
        }
        self.to_encoder.put(r.clone());
    }

    fn finish(&mut self, _summary: &Summary) {
        self.shared.stopping.store(true, Ordering::Relaxed);
        self.to_encoder.close();
        self.shared.jpeg.close();
        self.shared.events.close();
    }
}
