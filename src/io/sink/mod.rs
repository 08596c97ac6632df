//! Where results go: an HTTP server (page, MJPEG, JSON, SSE, metrics), MQTT events and an
//! ffmpeg recording. Each does its slow work on its own threads, so the pipeline never
//! waits for a network or a disk.

pub mod broadcast;
pub mod http;
pub mod mqtt;
pub mod record;
