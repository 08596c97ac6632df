//! Video files, decoded to RGB24 by an `ffmpeg` subprocess (any format ffmpeg reads;
//! no codec code linked into speck). `ffprobe` gives the frame size first.

use super::child::ProducerProcess;
use super::{Frame, FrameSource, SourceError, StreamReader};
use crate::io::pixfmt::PixelFormat;
use std::path::Path;
use std::process::{ChildStdout, Command};

/// Frames of a video file.
pub struct VideoFileSource {
    // Declared first so ffmpeg is stopped before its pipe closes (no "Broken pipe" noise).
    _process: ProducerProcess,
    reader: StreamReader<ChildStdout>,
    name: String,
}

fn probe_size(path: &Path) -> Result<(usize, usize), SourceError> {
    let fail = |why: String| SourceError::Open {
        what: path.display().to_string(),
        why,
    };
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-select_streams", "v:0"])
        .args(["-show_entries", "stream=width,height", "-of", "csv=p=0"])
        .arg(path)
        .output()
        .map_err(|e| fail(format!("cannot run ffprobe (install ffmpeg): {e}")))?;
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .next()
        .unwrap_or("")
        .trim()
        .trim_end_matches(',');
    let parsed = line
        .split_once(',')
        .and_then(|(w, h)| Some((w.parse().ok()?, h.parse().ok()?)))
        .filter(|&(w, h): &(usize, usize)| w > 0 && h > 0);
    parsed.ok_or_else(|| {
        let err = String::from_utf8_lossy(&out.stderr);
        fail(format!(
            "not a readable video ({})",
            err.lines().last().unwrap_or("no video stream").trim()
        ))
    })
}

/// How many video frames `path` holds, from its container's packets (`ffprobe
/// -count_packets`: reads the file without decoding it), and their size.
pub fn count_frames(path: &Path) -> Result<(usize, (usize, usize)), SourceError> {
    let size = probe_size(path)?;
    let fail = |why: String| SourceError::Open {
        what: path.display().to_string(),
        why,
    };
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-select_streams", "v:0", "-count_packets"])
        .args(["-show_entries", "stream=nb_read_packets", "-of", "csv=p=0"])
        .arg(path)
        .output()
        .map_err(|e| fail(format!("cannot run ffprobe (install ffmpeg): {e}")))?;
    let text = String::from_utf8_lossy(&out.stdout);
    let frames = text
        .lines()
        .next()
        .and_then(|l| l.trim().trim_end_matches(',').parse().ok())
        .ok_or_else(|| {
            fail(format!(
                "ffprobe could not count its frames ('{}')",
                text.trim()
            ))
        })?;
    Ok((frames, size))
}

impl VideoFileSource {
    /// Start decoding; `looped` repeats the file, `realtime` paces at its frame rate.
    pub fn open(path: &Path, looped: bool, realtime: bool) -> Result<VideoFileSource, SourceError> {
        let (w, h) = probe_size(path)?;
        let mut cmd = Command::new("ffmpeg");
        cmd.args(["-nostdin", "-hide_banner", "-loglevel", "error"]);
        if realtime {
            cmd.arg("-re");
        }
        if looped {
            cmd.args(["-stream_loop", "-1"]);
        }
        cmd.arg("-i").arg(path);
        cmd.args(["-an", "-f", "rawvideo", "-pix_fmt", "rgb24", "-"]);
        let name = path.display().to_string();
        let (process, out) = ProducerProcess::spawn(cmd, &format!("ffmpeg decoding {name}"))?;
        log::info!("decoding {name} ({w}x{h}) with ffmpeg");
        Ok(VideoFileSource {
            reader: StreamReader::new(out, PixelFormat::Rgb24, (w, h), name.clone()),
            _process: process,
            name,
        })
    }
}

impl FrameSource for VideoFileSource {
    fn read_frame(&mut self) -> Result<Option<Frame>, SourceError> {
        self.reader.next_frame()
    }

    fn describe(&self) -> String {
        self.name.clone()
    }
}
