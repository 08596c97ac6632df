//! `--record FILE`: annotated frames piped as raw RGB into an `ffmpeg` subprocess, which
//! picks the codec from the file name (H.264 for .mp4/.mkv where ffmpeg has it). Drawing
//! and writing happen on the recorder's thread behind a short queue: when ffmpeg falls
//! behind, frames are left out of the recording (counted), never the pipeline slowed.

use crate::pipeline::{FrameResult, Sink, Summary};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{sync_channel, SyncSender, TrySendError};
use std::sync::Arc;
use std::thread::JoinHandle;

/// Errors of `--record`.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    /// ffmpeg missing or the file not writable.
    #[error("cannot record to {path}: {why}")]
    Start {
        /// the file
        path: String,
        /// reason
        why: String,
    },
}

/// The recording sink.
pub struct RecordSink {
    path: PathBuf,
    queue: Option<SyncSender<Arc<FrameResult>>>,
    worker: Option<JoinHandle<Result<u64, String>>>,
    skipped: u64,
    every_frame: bool,
}

impl RecordSink {
    /// Check that ffmpeg runs and the file can be created; recording starts with the first
    /// frame (its size fixes the video size) at `fps` frames per second. With
    /// `every_frame` (file sources, which are not real time) the pipeline waits for the
    /// recorder instead of leaving frames out.
    pub fn start(path: &Path, fps: f64, every_frame: bool) -> Result<RecordSink, RecordError> {
        let fail = |why: String| RecordError::Start {
            path: path.display().to_string(),
            why,
        };
        Command::new("ffmpeg")
            .arg("-version")
            .stdout(Stdio::null())
            .status()
            .map_err(|e| fail(format!("ffmpeg not found ({e})")))?;
        std::fs::File::create(path).map_err(|e| fail(e.to_string()))?;
        let (tx, rx) = sync_channel::<Arc<FrameResult>>(4);
        let p = path.to_path_buf();
        let worker = std::thread::Builder::new()
            .name("record".into())
            .spawn(move || {
                let mut child: Option<(Child, (usize, usize))> = None;
                let mut written = 0u64;
                for r in rx {
                    if child.is_none() {
                        child = Some((
                            spawn_ffmpeg(&p, r.width, r.height, fps)?,
                            (r.width, r.height),
                        ));
                    }
                    let (c, size) = child.as_mut().expect("started");
                    if *size != (r.width, r.height) {
                        log::warn!(
                            "record: frame size changed to {}x{}; frame left out",
                            r.width,
                            r.height
                        );
                        continue;
                    }
                    let stdin = c.stdin.as_mut().expect("piped");
                    stdin
                        .write_all(&r.annotated())
                        .map_err(|e| format!("ffmpeg stopped taking frames: {e}"))?;
                    written += 1;
                }
                if let Some((mut c, _)) = child {
                    drop(c.stdin.take());
                    let st = c.wait().map_err(|e| e.to_string())?;
                    if !st.success() {
                        return Err(format!("ffmpeg failed ({st})"));
                    }
                }
                Ok(written)
            })
            .map_err(|e| fail(e.to_string()))?;
        Ok(RecordSink {
            path: path.to_path_buf(),
            queue: Some(tx),
            worker: Some(worker),
            skipped: 0,
            every_frame,
        })
    }
}

fn spawn_ffmpeg(path: &Path, w: usize, h: usize, fps: f64) -> Result<Child, String> {
    Command::new("ffmpeg")
        .args(["-nostdin", "-hide_banner", "-loglevel", "error", "-y"])
        .args([
            "-f",
            "rawvideo",
            "-pix_fmt",
            "rgb24",
            "-s",
            &format!("{w}x{h}"),
        ])
        .args(["-framerate", &format!("{fps}"), "-i", "-"])
        .args(["-pix_fmt", "yuv420p"])
        .arg(path)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot start ffmpeg: {e}"))
}

impl Sink for RecordSink {
    fn name(&self) -> String {
        format!("recording {}", self.path.display())
    }

    fn publish(&mut self, r: &Arc<FrameResult>) {
        if let Some(q) = &self.queue {
            let sent = if self.every_frame {
                q.send(r.clone())
                    .map_err(|e| TrySendError::Disconnected(e.0))
            } else {
                q.try_send(r.clone())
            };
            match sent {
                Ok(()) => {}
                Err(TrySendError::Full(_)) => self.skipped += 1,
                Err(TrySendError::Disconnected(_)) => {
                    // The worker stopped; its error is reported in `finish`.
                    self.queue = None;
                }
            }
        }
    }

    fn finish(&mut self, _summary: &Summary) {
        self.queue = None;
        let result = self.worker.take().map(|w| w.join());
        match result {
            Some(Ok(Ok(n))) => eprintln!(
                "recorded {n} frames to {}{}",
                self.path.display(),
                if self.skipped > 0 {
                    format!(" ({} left out: ffmpeg was behind)", self.skipped)
                } else {
                    String::new()
                }
            ),
            Some(Ok(Err(e))) => eprintln!("error: recording {}: {e}", self.path.display()),
            _ => eprintln!(
                "error: recording {}: recorder thread failed",
                self.path.display()
            ),
        }
    }
}
