//! Camera pixel formats to packed RGB8.
//!
//! YUV formats use BT.601 limited range (what USB webcams, `rpicam-vid --codec yuv420` and
//! GStreamer's default caps carry). Each conversion has a per-pixel floating-point
//! reference ([`reference`]) and the fixed-point row loops used at run time ([`rows`]);
//! the tests compare them on odd sizes.

pub mod jpeg_markers;
pub mod reference;
pub mod rows;

use std::fmt;

/// Why a JPEG without its end-of-image marker is refused.
pub const TRUNCATED_JPEG: &str = "truncated: the data ends before the end-of-image marker";

/// A frame layout that sources deliver.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PixelFormat {
    /// Planar Y, then U and V at half width and height (`yuv420p`, rpicam-vid `yuv420`).
    I420,
    /// Planar Y, then interleaved UV at half width and height.
    Nv12,
    /// Packed Y0 U Y1 V (`YUY2`), the usual uncompressed webcam format.
    Yuyv,
    /// Packed R G B.
    Rgb24,
    /// Packed B G R (OpenCV, GStreamer `BGR`).
    Bgr24,
    /// A stream of JPEG images.
    Mjpeg,
}

/// A pixel format name that is not known.
#[derive(Debug, thiserror::Error)]
#[error("unknown pixel format '{0}' (use i420, nv12, yuyv, rgb24, bgr24 or mjpeg)")]
pub struct UnknownFormat(pub String);

impl std::str::FromStr for PixelFormat {
    type Err = UnknownFormat;
    fn from_str(s: &str) -> Result<Self, UnknownFormat> {
        Ok(match s.to_ascii_lowercase().as_str() {
            "i420" | "yuv420" | "yuv420p" | "yu12" => PixelFormat::I420,
            "nv12" => PixelFormat::Nv12,
            "yuyv" | "yuy2" | "yuyv422" => PixelFormat::Yuyv,
            "rgb24" | "rgb" | "rgb3" => PixelFormat::Rgb24,
            "bgr24" | "bgr" | "bgr3" => PixelFormat::Bgr24,
            "mjpeg" | "mjpg" | "jpeg" => PixelFormat::Mjpeg,
            _ => return Err(UnknownFormat(s.into())),
        })
    }
}

impl fmt::Display for PixelFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PixelFormat::I420 => "i420",
            PixelFormat::Nv12 => "nv12",
            PixelFormat::Yuyv => "yuyv",
            PixelFormat::Rgb24 => "rgb24",
            PixelFormat::Bgr24 => "bgr24",
            PixelFormat::Mjpeg => "mjpeg",
        })
    }
}

/// Errors converting a frame.
#[derive(Debug, thiserror::Error)]
pub enum ConvertError {
    /// The buffer is shorter than the format needs at this size.
    #[error("truncated {format} frame: {width}x{height} needs {expected} bytes, got {got}")]
    Truncated {
        /// format
        format: PixelFormat,
        /// width
        width: usize,
        /// height
        height: usize,
        /// bytes needed
        expected: usize,
        /// bytes given
        got: usize,
    },
    /// A size the format cannot hold (zero, or odd where chroma is subsampled).
    #[error("{format} cannot hold a {width}x{height} frame")]
    BadSize {
        /// format
        format: PixelFormat,
        /// width
        width: usize,
        /// height
        height: usize,
    },
    /// A JPEG that does not decode.
    #[error("corrupt JPEG frame: {0}")]
    Jpeg(String),
}

impl PixelFormat {
    /// Bytes of one `width x height` frame; `None` for MJPEG (variable size).
    /// Subsampled chroma rounds up, so odd sizes are allowed for I420 and NV12.
    pub fn frame_len(self, width: usize, height: usize) -> Option<usize> {
        let (cw, ch) = (width.div_ceil(2), height.div_ceil(2));
        match self {
            PixelFormat::I420 => Some(width * height + 2 * cw * ch),
            PixelFormat::Nv12 => Some(width * height + 2 * cw * ch),
            PixelFormat::Yuyv => Some(2 * cw * 2 * height),
            PixelFormat::Rgb24 | PixelFormat::Bgr24 => Some(width * height * 3),
            PixelFormat::Mjpeg => None,
        }
    }
}

/// Convert one raw frame into `out` (resized to `width * height * 3`, RGB), with the fast
/// row loops. MJPEG ignores `width`/`height` and returns the decoded size.
pub fn to_rgb(
    format: PixelFormat,
    src: &[u8],
    width: usize,
    height: usize,
    out: &mut Vec<u8>,
) -> Result<(usize, usize), ConvertError> {
    if format == PixelFormat::Mjpeg {
        return decode_jpeg(src, out);
    }
    if width == 0 || height == 0 {
        return Err(ConvertError::BadSize {
            format,
            width,
            height,
        });
    }
    let expected = format.frame_len(width, height).unwrap_or(0);
    if src.len() < expected {
        return Err(ConvertError::Truncated {
            format,
            width,
            height,
            expected,
            got: src.len(),
        });
    }
    out.resize(width * height * 3, 0);
    match format {
        PixelFormat::I420 => rows::i420(src, width, height, out),
        PixelFormat::Nv12 => rows::nv12(src, width, height, out),
        PixelFormat::Yuyv => rows::yuyv(src, width, height, out),
        PixelFormat::Rgb24 => out.copy_from_slice(&src[..expected]),
        PixelFormat::Bgr24 => rows::bgr(src, out),
        PixelFormat::Mjpeg => unreachable!(),
    }
    Ok((width, height))
}

/// Decode one JPEG into RGB8; a JPEG cut short is an error (the decoder alone would fill the
/// missing part with grey).
pub fn decode_jpeg(src: &[u8], out: &mut Vec<u8>) -> Result<(usize, usize), ConvertError> {
    let end = match jpeg_markers::jpeg_end(src) {
        jpeg_markers::JpegEnd::Complete(n) => n,
        jpeg_markers::JpegEnd::Incomplete => return Err(ConvertError::Jpeg(TRUNCATED_JPEG.into())),
        jpeg_markers::JpegEnd::Invalid(why) => return Err(ConvertError::Jpeg(why.into())),
    };
    decode_complete_jpeg(&src[..end], out)
}

/// [`decode_jpeg`] for a JPEG whose marker walk already ended at its end-of-image marker
/// (a stream reader's frame), so it is not walked again.
pub fn decode_complete_jpeg(src: &[u8], out: &mut Vec<u8>) -> Result<(usize, usize), ConvertError> {
    let img = image::load_from_memory_with_format(src, image::ImageFormat::Jpeg)
        .map_err(|e| ConvertError::Jpeg(e.to_string()))?
        .into_rgb8();
    let (w, h) = (img.width() as usize, img.height() as usize);
    *out = img.into_raw();
    Ok((w, h))
}
