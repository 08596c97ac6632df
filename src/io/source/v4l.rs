//! V4L2 cameras through `linuxvideo` (pure Rust ioctls; the `v4l` crate generates its
//! bindings with bindgen at build time, which needs libclang on every build host and a
//! target sysroot for cross builds). MJPEG is preferred (least USB bandwidth), YUYV is the
//! fallback; the driver's two mmap buffers keep at most one frame queued behind the one
//! being read.

use super::{Frame, FrameSource, SourceError};
use crate::io::pixfmt::{self, ConvertError, PixelFormat};
use linuxvideo::format::{PixFormat, PixelFormat as V4lFormat};
use linuxvideo::stream::ReadStream;
use linuxvideo::{BufType, Device, Fract};
use std::path::Path;

/// Frames from a V4L2 capture device.
pub struct V4lSource {
    stream: ReadStream,
    format: PixelFormat,
    size: (usize, usize),
    name: String,
}

fn to_v4l(f: PixelFormat) -> V4lFormat {
    match f {
        PixelFormat::Mjpeg => V4lFormat::MJPG,
        PixelFormat::Yuyv => V4lFormat::YUYV,
        PixelFormat::Nv12 => V4lFormat::from_fourcc(*b"NV12"),
        PixelFormat::I420 => V4lFormat::from_fourcc(*b"YU12"),
        PixelFormat::Rgb24 => V4lFormat::RGB3,
        PixelFormat::Bgr24 => V4lFormat::BGR3,
    }
}

impl V4lSource {
    /// Open and configure the device: format (`want` or MJPEG, else YUYV), size (default
    /// 1280x720, the driver picks the nearest) and frame rate.
    pub fn open(
        device: &Path,
        want: Option<PixelFormat>,
        size: Option<(usize, usize)>,
        fps: Option<u32>,
    ) -> Result<V4lSource, SourceError> {
        let name = device.display().to_string();
        let fail = |why: String| SourceError::Open {
            what: name.clone(),
            why,
        };
        let dev = Device::open(device).map_err(|e| fail(e.to_string()))?;
        let offered: Vec<V4lFormat> = dev
            .formats(BufType::VIDEO_CAPTURE)
            .filter_map(|f| f.ok().map(|f| f.pixel_format()))
            .collect();
        let candidates = match want {
            Some(f) => vec![f],
            None => vec![PixelFormat::Mjpeg, PixelFormat::Yuyv],
        };
        let format = candidates
            .into_iter()
            .find(|f| {
                offered.contains(&to_v4l(*f))
                    || (*f == PixelFormat::Mjpeg && offered.contains(&V4lFormat::JPEG))
            })
            .ok_or_else(|| fail(format!("no usable pixel format among {offered:?} (speck reads MJPEG, YUYV, NV12, YU12, RGB3, BGR3)")))?;
        let fourcc = if format == PixelFormat::Mjpeg && !offered.contains(&V4lFormat::MJPG) {
            V4lFormat::JPEG
        } else {
            to_v4l(format)
        };
        let (w, h) = size.unwrap_or((1280, 720));
        let capture = dev
            .video_capture(PixFormat::new(w as u32, h as u32, fourcc))
            .map_err(|e| fail(format!("setting {format} {w}x{h}: {e}")))?;
        let got = capture.format();
        let (got_fmt, got_w, got_h) = (got.pixel_format(), got.width(), got.height());
        if got_fmt != fourcc {
            return Err(fail(format!("driver switched to {got_fmt:?}")));
        }
        if let Some(fps) = fps {
            match capture.set_frame_interval(Fract::new(1, fps)) {
                Ok(f) => log::info!("{name}: frame interval {f}"),
                Err(e) => log::warn!("{name}: cannot set {fps} fps: {e}"),
            }
        }
        let size = (got_w as usize, got_h as usize);
        log::info!("{name}: capturing {format} {}x{}", size.0, size.1);
        let stream = capture
            .into_stream()
            .map_err(|e| fail(format!("starting the stream: {e}")))?;
        Ok(V4lSource {
            stream,
            format,
            size,
            name,
        })
    }
}

impl FrameSource for V4lSource {
    fn read_frame(&mut self) -> Result<Option<Frame>, SourceError> {
        let (format, (w, h)) = (self.format, self.size);
        let mut rgb = vec![];
        let res = self.stream.dequeue(|buf| {
            if buf.is_error() {
                return Ok(Err(ConvertError::Jpeg(
                    "driver flagged the buffer as corrupt".into(),
                )));
            }
            Ok(pixfmt::to_rgb(format, &buf, w, h, &mut rgb))
        });
        match res {
            Ok(Ok((w, h))) => Ok(Some(Frame::new(rgb, w, h))),
            Ok(Err(e)) => Err(e.into()),
            Err(e) => Err(SourceError::Read {
                what: self.name.clone(),
                why: e.to_string(),
            }),
        }
    }

    fn describe(&self) -> String {
        format!(
            "{} ({} {}x{})",
            self.name, self.format, self.size.0, self.size.1
        )
    }
}
