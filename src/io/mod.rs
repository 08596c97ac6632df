//! Frames in and results out: camera/pipe/file sources, pixel formats, and the sinks of
//! `speck run` (HTTP, MQTT, recording).

pub mod pixfmt;
pub mod sink;
pub mod source;

use crate::detect::RgbFrame;
use std::path::Path;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// Decode an image file, its format told by its bytes. Every still image speck reads goes
/// through `image::load_from_memory` (here, or from a buffer): the `image` crate compiles its
/// decoders once per reader type, so a second reader (a buffered file) would carry a second
/// copy of the JPEG and PNG decoders in the device binary.
///
/// A file cut short is a decoding error: the JPEG decoder alone would fill the missing rows
/// with grey and succeed, and the PNG decoder's end-of-file is not a failure to open the file.
pub fn read_image(path: &Path) -> image::ImageResult<image::DynamicImage> {
    use image::error::{DecodingError, ImageFormatHint};
    use image::{ImageError, ImageFormat};
    let bytes = std::fs::read(path).map_err(ImageError::IoError)?;
    let truncated = |format: ImageFormatHint, why: &str| {
        ImageError::Decoding(DecodingError::new(format, why.to_string()))
    };
    if bytes.starts_with(&[0xFF, 0xD8])
        && pixfmt::jpeg_markers::jpeg_end(&bytes) == pixfmt::jpeg_markers::JpegEnd::Incomplete
    {
        return Err(truncated(ImageFormat::Jpeg.into(), pixfmt::TRUNCATED_JPEG));
    }
    image::load_from_memory(&bytes).map_err(|e| match e {
        ImageError::IoError(io) if io.kind() == std::io::ErrorKind::UnexpectedEof => truncated(
            image::guess_format(&bytes).map_or(ImageFormatHint::Unknown, Into::into),
            "truncated: the data ends early",
        ),
        e => e,
    })
}

/// One captured frame, already converted to RGB8.
#[derive(Clone, Debug)]
pub struct Frame {
    /// `width * height * 3` bytes, RGB, rows packed.
    pub rgb: Vec<u8>,
    /// width in pixels
    pub width: usize,
    /// height in pixels
    pub height: usize,
    /// Capture counter (set by the pipeline; gaps are dropped frames).
    pub seq: u64,
    /// When the frame was read from the source (monotonic, for latency).
    pub captured: Instant,
    /// When the frame was read, seconds since the Unix epoch (for events).
    pub unix_time: f64,
}

impl Frame {
    /// Wrap an RGB buffer captured now.
    pub fn new(rgb: Vec<u8>, width: usize, height: usize) -> Frame {
        Frame {
            rgb,
            width,
            height,
            seq: 0,
            captured: Instant::now(),
            unix_time: unix_now(),
        }
    }

    /// Borrow as the detector's frame type.
    pub fn view(&self) -> RgbFrame<'_> {
        RgbFrame {
            data: &self.rgb,
            width: self.width,
            height: self.height,
        }
    }
}

/// Seconds since the Unix epoch.
pub fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}
