//! Frame sources for `speck run`: V4L2 cameras, raw pipes (stdin or a spawned command),
//! video files (through `ffmpeg`) and image folders. Each yields RGB [`Frame`]s.

mod child;
mod image_folder;
mod pipe;
mod stream_reader;
mod uri;
#[cfg(feature = "v4l2")]
mod v4l;
mod video_file;

pub use stream_reader::StreamReader;
pub use uri::{parse_size, SourceDefaults, SourceSpec};
pub use video_file::count_frames as count_video_frames;

use super::pixfmt::ConvertError;
use super::Frame;

/// Errors of sources.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// A `--source` that cannot be understood.
    #[error("bad source: {0}")]
    BadUri(String),
    /// The source cannot be opened (missing device, command that cannot start, ...).
    #[error("cannot open {what}: {why}")]
    Open {
        /// the source
        what: String,
        /// the reason
        why: String,
    },
    /// A frame that is short or does not decode; never passed on as garbage.
    #[error(transparent)]
    Frame(#[from] ConvertError),
    /// Reading failed (device unplugged, pipe broken, ...).
    #[error("{what}: {why}")]
    Read {
        /// the source
        what: String,
        /// the reason
        why: String,
    },
}

/// Something that yields frames.
pub trait FrameSource: Send {
    /// The next frame; `Ok(None)` when the source has ended (end of file, command exited).
    fn read_frame(&mut self) -> Result<Option<Frame>, SourceError>;
    /// A short name for logs.
    fn describe(&self) -> String;
}

#[cfg(feature = "v4l2")]
fn open_v4l(
    device: &std::path::Path,
    format: Option<crate::io::pixfmt::PixelFormat>,
    size: Option<(usize, usize)>,
    fps: Option<u32>,
) -> Result<Box<dyn FrameSource>, SourceError> {
    Ok(Box::new(v4l::V4lSource::open(device, format, size, fps)?))
}

#[cfg(not(feature = "v4l2"))]
fn open_v4l(
    device: &std::path::Path,
    _format: Option<crate::io::pixfmt::PixelFormat>,
    _size: Option<(usize, usize)>,
    _fps: Option<u32>,
) -> Result<Box<dyn FrameSource>, SourceError> {
    Err(SourceError::Open {
        what: device.display().to_string(),
        why: format!(
            "this speck was built without V4L2 capture (cargo feature v4l2); read the camera \
             through ffmpeg instead: --source 'pipe:ffmpeg -loglevel error -f v4l2 -i {} \
             -f rawvideo -pix_fmt rgb24 -' --pipe-format rgb24 --pipe-size WxH",
            device.display()
        ),
    })
}

impl SourceSpec {
    /// Open the source.
    pub fn open(&self) -> Result<Box<dyn FrameSource>, SourceError> {
        Ok(match self {
            SourceSpec::V4l {
                device,
                format,
                size,
                fps,
            } => open_v4l(device, *format, *size, *fps)?,
            SourceSpec::Pipe {
                command,
                format,
                size,
            } => Box::new(pipe::PipeSource::open(command.as_deref(), *format, *size)?),
            SourceSpec::VideoFile {
                path,
                looped,
                realtime,
            } => Box::new(video_file::VideoFileSource::open(path, *looped, *realtime)?),
            SourceSpec::ImageFolder { path, looped } => {
                Box::new(image_folder::ImageFolderSource::open(path, *looped)?)
            }
        })
    }
}
