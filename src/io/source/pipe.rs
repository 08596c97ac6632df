//! `pipe:` sources: raw or MJPEG frames on stdin, or on the stdout of a shell command
//! (`pipe:rpicam-vid --codec yuv420 -o -`, a GStreamer `fdsink` pipeline, ...).

use super::child::ProducerProcess;
use super::{Frame, FrameSource, SourceError, StreamReader};
use crate::io::pixfmt::PixelFormat;
use std::io::Read;
use std::process::Command;

/// Frames from stdin or a command.
pub struct PipeSource {
    // Declared first so the command is stopped before its pipe closes.
    process: Option<ProducerProcess>,
    reader: StreamReader<Box<dyn Read + Send>>,
    name: String,
}

impl PipeSource {
    /// Spawn `command` (through `sh -c`), or read stdin when `None`.
    pub fn open(
        command: Option<&str>,
        format: PixelFormat,
        size: Option<(usize, usize)>,
    ) -> Result<PipeSource, SourceError> {
        let size = size.unwrap_or((0, 0));
        let (name, input, process): (String, Box<dyn Read + Send>, _) = match command {
            None => ("stdin".into(), Box::new(std::io::stdin()), None),
            Some(c) => {
                let mut cmd = Command::new("sh");
                cmd.arg("-c").arg(format!("exec {c}"));
                let name = format!("command '{c}'");
                let (p, out) = ProducerProcess::spawn(cmd, &name)?;
                (name, Box::new(out), Some(p))
            }
        };
        log::info!("reading {format} frames from {name}");
        Ok(PipeSource {
            reader: StreamReader::new(input, format, size, name.clone()),
            process,
            name,
        })
    }
}

impl FrameSource for PipeSource {
    fn read_frame(&mut self) -> Result<Option<Frame>, SourceError> {
        let r = self.reader.next_frame();
        if let (Ok(None), Some(p)) = (&r, &mut self.process) {
            log::warn!("{}", p.exit_note());
        }
        r
    }

    fn describe(&self) -> String {
        self.name.clone()
    }
}
