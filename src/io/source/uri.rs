//! `--source` URIs: `/dev/video0`, `v4l:///dev/video0?fmt=mjpeg&size=1280x720&fps=30`,
//! `pipe:` (stdin) or `pipe:CMD` with `fmt=`/`size=` (or `--pipe-format`/`--pipe-size`),
//! a video file, or a folder of images.

use super::SourceError;
use crate::io::pixfmt::PixelFormat;
use std::path::PathBuf;

/// Where frames come from.
#[derive(Clone, Debug, PartialEq)]
pub enum SourceSpec {
    /// A V4L2 capture device.
    V4l {
        /// device node
        device: PathBuf,
        /// wanted format (MJPEG, else YUYV when not given)
        format: Option<PixelFormat>,
        /// wanted size
        size: Option<(usize, usize)>,
        /// wanted frame rate
        fps: Option<u32>,
    },
    /// Raw frames on stdin (`command: None`) or on the stdout of a shell command.
    Pipe {
        /// shell command to spawn
        command: Option<String>,
        /// frame layout
        format: PixelFormat,
        /// frame size (not needed for MJPEG)
        size: Option<(usize, usize)>,
    },
    /// A video file, decoded by an `ffmpeg` subprocess.
    VideoFile {
        /// the file
        path: PathBuf,
        /// start again at the end
        looped: bool,
        /// read at the file's frame rate, like a camera, instead of as fast as consumed
        realtime: bool,
    },
    /// A folder of JPEG/PNG images, in name order.
    ImageFolder {
        /// the folder
        path: PathBuf,
        /// start again at the end
        looped: bool,
    },
}

/// Defaults from command-line flags, overridden by URI query parameters.
#[derive(Clone, Debug, Default)]
pub struct SourceDefaults {
    /// `--pipe-format`
    pub pipe_format: Option<PixelFormat>,
    /// `--pipe-size`
    pub pipe_size: Option<(usize, usize)>,
    /// `--loop`
    pub looped: bool,
    /// `--realtime`
    pub realtime: bool,
}

/// Parse `WxH`.
pub fn parse_size(s: &str) -> Result<(usize, usize), SourceError> {
    let bad = || SourceError::BadUri(format!("size must be WxH, e.g. 1280x720; got '{s}'"));
    let (w, h) = s.split_once(['x', 'X']).ok_or_else(bad)?;
    let (w, h): (usize, usize) = (
        w.trim().parse().map_err(|_| bad())?,
        h.trim().parse().map_err(|_| bad())?,
    );
    if w == 0 || h == 0 || w > 16384 || h > 16384 {
        return Err(bad());
    }
    Ok((w, h))
}

fn split_query(s: &str) -> (&str, Vec<(&str, &str)>) {
    match s.split_once('?') {
        Some((base, q)) => (
            base,
            q.split('&')
                .filter(|p| !p.is_empty())
                .map(|p| p.split_once('=').unwrap_or((p, "")))
                .collect(),
        ),
        None => (s, vec![]),
    }
}

impl SourceSpec {
    /// Parse a `--source` argument.
    pub fn parse(uri: &str, d: &SourceDefaults) -> Result<SourceSpec, SourceError> {
        if let Some(rest) = uri.strip_prefix("pipe:") {
            // A command may contain '?' itself, so only a trailing `?fmt=..` block that
            // parses as our parameters is taken as a query.
            let (cmd, params) = match rest.rsplit_once('?') {
                Some((c, q))
                    if q.split('&')
                        .all(|p| p.starts_with("fmt=") || p.starts_with("size=")) =>
                {
                    (
                        c,
                        split_query(&format!("?{q}"))
                            .1
                            .iter()
                            .map(|(k, v)| (k.to_string(), v.to_string()))
                            .collect::<Vec<_>>(),
                    )
                }
                _ => (rest, vec![]),
            };
            let mut format = d.pipe_format;
            let mut size = d.pipe_size;
            for (k, v) in &params {
                match k.as_str() {
                    "fmt" => {
                        format =
                            Some(v.parse().map_err(|e: crate::io::pixfmt::UnknownFormat| {
                                SourceError::BadUri(e.to_string())
                            })?)
                    }
                    "size" => size = Some(parse_size(v)?),
                    _ => {}
                }
            }
            let format = format.ok_or_else(|| {
                SourceError::BadUri(
                    "a pipe source needs its pixel format: --pipe-format i420|nv12|yuyv|rgb24|bgr24|mjpeg (or pipe:CMD?fmt=...)".into(),
                )
            })?;
            if format != PixelFormat::Mjpeg && size.is_none() {
                return Err(SourceError::BadUri(format!(
                    "a raw {format} pipe needs the frame size: --pipe-size WxH (or ?size=WxH)"
                )));
            }
            let command = Some(cmd.trim())
                .filter(|c| !c.is_empty() && *c != "-")
                .map(String::from);
            return Ok(SourceSpec::Pipe {
                command,
                format,
                size,
            });
        }
        if let Some(rest) = uri.strip_prefix("v4l://") {
            let (dev, params) = split_query(rest);
            let mut spec = SourceSpec::V4l {
                device: PathBuf::from(dev),
                format: None,
                size: None,
                fps: None,
            };
            if let SourceSpec::V4l {
                format, size, fps, ..
            } = &mut spec
            {
                for (k, v) in params {
                    match k {
                        "fmt" => {
                            let f: PixelFormat =
                                v.parse().map_err(|e: crate::io::pixfmt::UnknownFormat| {
                                    SourceError::BadUri(e.to_string())
                                })?;
                            if !matches!(
                                f,
                                PixelFormat::Mjpeg
                                    | PixelFormat::Yuyv
                                    | PixelFormat::Nv12
                                    | PixelFormat::I420
                                    | PixelFormat::Rgb24
                                    | PixelFormat::Bgr24
                            ) {
                                return Err(SourceError::BadUri(format!("v4l cannot capture {f}")));
                            }
                            *format = Some(f);
                        }
                        "size" => *size = Some(parse_size(v)?),
                        "fps" => {
                            *fps =
                                Some(v.parse().ok().filter(|&f: &u32| f > 0).ok_or_else(|| {
                                    SourceError::BadUri(format!(
                                        "fps must be a positive integer, got '{v}'"
                                    ))
                                })?)
                        }
                        other => {
                            return Err(SourceError::BadUri(format!(
                                "unknown v4l parameter '{other}' (fmt, size, fps)"
                            )))
                        }
                    }
                }
            }
            return Ok(spec);
        }
        if uri.starts_with("/dev/video") {
            return Ok(SourceSpec::V4l {
                device: uri.into(),
                format: None,
                size: None,
                fps: None,
            });
        }
        let path = PathBuf::from(uri.strip_prefix("file://").unwrap_or(uri));
        if path.is_dir() {
            return Ok(SourceSpec::ImageFolder {
                path,
                looped: d.looped,
            });
        }
        if path.is_file() {
            return Ok(SourceSpec::VideoFile {
                path,
                looped: d.looped,
                realtime: d.realtime,
            });
        }
        Err(SourceError::BadUri(format!(
            "'{uri}' is no file, folder, /dev/videoN, v4l://... or pipe:..."
        )))
    }

    /// Live sources (cameras, spawned commands) are reopened with backoff when they fail
    /// or end; files, folders and stdin are not.
    pub fn reconnects(&self) -> bool {
        match self {
            SourceSpec::V4l { .. } => true,
            SourceSpec::Pipe { command, .. } => command.is_some(),
            _ => false,
        }
    }

    /// Live sources drop stale frames; files and folders are read no faster than
    /// frames are processed, so every frame is seen (unless `realtime`).
    pub fn is_live(&self) -> bool {
        match self {
            SourceSpec::V4l { .. } | SourceSpec::Pipe { .. } => true,
            SourceSpec::VideoFile { realtime, .. } => *realtime,
            SourceSpec::ImageFolder { .. } => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_each_kind() {
        let d = SourceDefaults::default();
        assert_eq!(
            SourceSpec::parse("v4l:///dev/video2?fmt=mjpeg&size=1280x720&fps=30", &d).unwrap(),
            SourceSpec::V4l {
                device: "/dev/video2".into(),
                format: Some(PixelFormat::Mjpeg),
                size: Some((1280, 720)),
                fps: Some(30)
            }
        );
        assert!(matches!(
            SourceSpec::parse("/dev/video0", &d).unwrap(),
            SourceSpec::V4l { format: None, .. }
        ));
        assert_eq!(
            SourceSpec::parse("pipe:rpicam-vid -o - ?fmt=i420&size=640x480", &d).unwrap(),
            SourceSpec::Pipe {
                command: Some("rpicam-vid -o -".into()),
                format: PixelFormat::I420,
                size: Some((640, 480))
            }
        );
        let d2 = SourceDefaults {
            pipe_format: Some(PixelFormat::Mjpeg),
            ..Default::default()
        };
        assert_eq!(
            SourceSpec::parse("pipe:", &d2).unwrap(),
            SourceSpec::Pipe {
                command: None,
                format: PixelFormat::Mjpeg,
                size: None
            }
        );
        assert!(matches!(
            SourceSpec::parse("src", &d).unwrap(),
            SourceSpec::ImageFolder { .. }
        ));
        assert!(matches!(
            SourceSpec::parse("Cargo.toml", &d).unwrap(),
            SourceSpec::VideoFile { .. }
        ));
    }

    #[test]
    fn rejects_bad_uris() {
        let d = SourceDefaults::default();
        for bad in [
            "pipe:cat",
            "v4l:///dev/video0?fmt=h265",
            "v4l:///dev/video0?size=12",
            "v4l:///dev/video0?fps=0",
            "v4l:///dev/video0?gain=3",
            "/no/such/file.mp4",
        ] {
            assert!(SourceSpec::parse(bad, &d).is_err(), "{bad}");
        }
        let d = SourceDefaults {
            pipe_format: Some(PixelFormat::I420),
            ..Default::default()
        };
        let e = SourceSpec::parse("pipe:", &d).unwrap_err().to_string();
        assert!(e.contains("--pipe-size"), "{e}");
    }
}
