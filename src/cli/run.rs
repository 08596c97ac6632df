//! `speck run`: the live pipeline (camera, pipe, file or folder in; detections out to the
//! terminal, HTTP, MQTT and a recording).

use super::tile_args::TileArgs;
use super::{model_path, EngineArgs};
use anyhow::{Context, Result};
use speck::io::pixfmt::PixelFormat;
use speck::io::sink::http::HttpSink;
use speck::io::sink::mqtt::{MqttSink, MqttTarget};
use speck::io::sink::record::RecordSink;
use speck::io::source::{parse_size, SourceDefaults, SourceSpec};
use speck::pipeline::{self, PipelineOptions, Sink};
use speck::Detector;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

/// Arguments of `speck run`.
#[derive(clap::Args, Debug)]
#[command(after_help = "Sources:
  /dev/video0                                  V4L2 webcam (MJPEG preferred, YUYV fallback)
  v4l:///dev/video0?fmt=mjpeg&size=1280x720&fps=30
  pipe: --pipe-format i420 --pipe-size 1280x720     raw frames on stdin
  'pipe:rpicam-vid -t 0 --codec yuv420 --width 1280 --height 720 -o -?fmt=i420&size=1280x720'
  clip.mp4 [--loop] [--realtime]               video file, decoded by ffmpeg
  frames/ [--loop]                             folder of JPEG/PNG images

Examples:
  speck run --source /dev/video0 --serve                       # http://127.0.0.1:8080/
  speck run --source examples/data/clip.mp4 --loop --serve 0.0.0.0:8080 --token s3cret
  speck run --source /dev/video0 --mqtt mqtt://broker:1883/speck --record out.mp4
  speck run --source examples/data/images --max-frames 10 --json")]
pub struct Args {
    /// Where frames come from (see Sources below).
    #[arg(long)]
    source: String,
    /// ONNX model (default: the shipped speck-tiny.onnx).
    #[arg(long)]
    model: Option<PathBuf>,
    /// Pixel format of a pipe source: i420, nv12, yuyv, rgb24, bgr24, mjpeg.
    #[arg(long, value_name = "FMT")]
    pipe_format: Option<PixelFormat>,
    /// Frame size of a raw pipe source, WxH.
    #[arg(long, value_name = "WxH")]
    pipe_size: Option<String>,
    /// Play a file or folder source again and again.
    #[arg(long = "loop")]
    looped: bool,
    /// Read a video file at its own frame rate, dropping frames the detector cannot keep
    /// up with (like a camera), instead of processing every frame.
    #[arg(long)]
    realtime: bool,
    /// Minimum confidence.
    #[arg(long, default_value_t = 0.3, value_parser = super::unit_interval)]
    conf: f32,
    /// IoU threshold of non-maximum suppression.
    #[arg(long, default_value_t = 0.5, value_parser = super::unit_interval)]
    iou: f32,
    /// Process at most N frames per second.
    #[arg(long, value_name = "N", value_parser = super::positive_number)]
    max_fps: Option<f64>,
    /// Stop after N frames.
    #[arg(long, value_name = "N")]
    max_frames: Option<u64>,
    /// Print a stats line every S seconds (0: never).
    #[arg(long, default_value_t = 5.0, value_name = "S")]
    stats_every: f64,
    /// Serve the live view and APIs over HTTP on ADDR (default 127.0.0.1:8080; a bare port
    /// means loopback; other interfaces only when named, e.g. 0.0.0.0:8080).
    #[arg(long, value_name = "ADDR", num_args = 0..=1, default_missing_value = "127.0.0.1:8080")]
    serve: Option<String>,
    /// Require this bearer token on HTTP requests (header, or ?token= for browsers).
    #[arg(long, value_name = "TOKEN")]
    token: Option<String>,
    /// Publish object events (new/update/end, Frigate-style JSON, see docs/mqtt-events.md)
    /// to mqtt://host[:port][/topic] (topic default speck/events).
    #[arg(long, value_name = "URL")]
    mqtt: Option<String>,
    /// Camera name in MQTT events.
    #[arg(long, default_value = "speck")]
    camera: String,
    /// Record the annotated video to FILE (through ffmpeg; codec from the extension).
    #[arg(long, value_name = "FILE")]
    record: Option<PathBuf>,
    /// Frame rate written into the recording.
    #[arg(long, default_value_t = 15.0, value_name = "N")]
    record_fps: f64,
    /// Print the end-of-run summary as JSON on stdout.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    tiles: TileArgs,
    #[command(flatten)]
    engine: EngineArgs,
}

/// `8080` or `:8080` mean loopback; anything else is taken as given.
fn serve_addr(a: &str) -> String {
    let port = a.strip_prefix(':').unwrap_or(a);
    if port.parse::<u16>().is_ok() {
        format!("127.0.0.1:{port}")
    } else {
        a.to_string()
    }
}

pub fn run(a: Args) -> Result<ExitCode> {
    a.tiles.options(None)?;
    let defaults = SourceDefaults {
        pipe_format: a.pipe_format,
        pipe_size: a.pipe_size.as_deref().map(parse_size).transpose()?,
        looped: a.looped,
        realtime: a.realtime,
    };
    let spec = SourceSpec::parse(&a.source, &defaults)?;
    let model = model_path::resolve(a.model.clone())?;
    let mut det = Detector::load(&model, &a.engine.options())?;
    det.options.conf = a.conf;
    det.options.iou = a.iou;
    let tiles = a.tiles.options(det.metadata().tile)?;

    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, stop.clone()).context("installing signal handlers")?;
    }
    let mut sinks: Vec<Box<dyn Sink>> = vec![];
    if let Some(addr) = &a.serve {
        let addr = serve_addr(addr);
        let http = HttpSink::start(&addr, a.token.clone())?;
        let bound = http.local_addr();
        if !bound.ip().is_loopback() && a.token.is_none() {
            log::warn!("serving on {bound} to the network without --token");
        }
        // The address goes to stderr at once so scripts and tests can find a port-0 server.
        eprintln!("serving on http://{bound}/");
        sinks.push(Box::new(http));
    }
    let opts = PipelineOptions {
        max_fps: a.max_fps,
        max_frames: a.max_frames,
        tiles,
        stats_every: (a.stats_every > 0.0).then(|| Duration::from_secs_f64(a.stats_every)),
    };
    if let Some(url) = &a.mqtt {
        let target = MqttTarget::parse(url)?;
        sinks.push(Box::new(MqttSink::start(&target, &a.camera)));
    }
    if let Some(path) = &a.record {
        if a.record_fps <= 0.0 {
            anyhow::bail!("--record-fps must be positive");
        }
        sinks.push(Box::new(RecordSink::start(
            path,
            a.record_fps,
            !spec.is_live(),
        )?));
    }
    let summary = pipeline::run(&spec, &mut det, &mut sinks, &opts, stop)?;
    if a.json {
        println!("{}", serde_json::to_string(&summary)?);
    } else {
        for l in summary.lines() {
            eprintln!("{l}");
        }
    }
    Ok(if summary.ended_by.starts_with("source failure") {
        eprintln!("error: {}", summary.ended_by);
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}
