//! Frames out of a byte stream: fixed-size raw frames, or JPEGs split where their marker
//! walk ends (`pixfmt::jpeg_markers`). A frame cut short by the end of the stream is an error, never garbage.

use super::{Frame, SourceError};
use crate::io::pixfmt::jpeg_markers::{jpeg_end, JpegEnd};
use crate::io::pixfmt::{self, ConvertError, PixelFormat};
use std::io::Read;

/// JPEGs larger than this are taken as a corrupt stream.
const MAX_JPEG: usize = 32 << 20;

/// Reads frames of one format from a byte stream.
pub struct StreamReader<R> {
    reader: R,
    format: PixelFormat,
    size: (usize, usize),
    raw: Vec<u8>,
    /// MJPEG: bytes read but not yet consumed.
    pending: Vec<u8>,
    name: String,
}

impl<R: Read> StreamReader<R> {
    /// `size` is needed for raw formats, ignored for MJPEG.
    pub fn new(reader: R, format: PixelFormat, size: (usize, usize), name: String) -> Self {
        StreamReader {
            reader,
            format,
            size,
            raw: vec![],
            pending: vec![],
            name,
        }
    }

    fn read_err(&self, e: std::io::Error) -> SourceError {
        SourceError::Read {
            what: self.name.clone(),
            why: e.to_string(),
        }
    }

    /// The next frame, `Ok(None)` at a clean end of stream.
    pub fn next_frame(&mut self) -> Result<Option<Frame>, SourceError> {
        if self.format == PixelFormat::Mjpeg {
            return self.next_jpeg();
        }
        let (w, h) = self.size;
        let n = self.format.frame_len(w, h).unwrap_or(0);
        self.raw.resize(n, 0);
        let mut got = 0;
        while got < n {
            match self.reader.read(&mut self.raw[got..]) {
                Ok(0) => break,
                Ok(k) => got += k,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(self.read_err(e)),
            }
        }
        if got == 0 {
            return Ok(None);
        }
        if got < n {
            return Err(ConvertError::Truncated {
                format: self.format,
                width: w,
                height: h,
                expected: n,
                got,
            }
            .into());
        }
        let mut rgb = vec![];
        pixfmt::to_rgb(self.format, &self.raw, w, h, &mut rgb)?;
        Ok(Some(Frame::new(rgb, w, h)))
    }

    fn next_jpeg(&mut self) -> Result<Option<Frame>, SourceError> {
        let mut scan = 0;
        loop {
            // Drop anything before the start-of-image marker.
            if let Some(s) = find(&self.pending, &[0xFF, 0xD8]) {
                if s > 0 {
                    self.pending.drain(..s);
                    scan = 0;
                }
                // An end-of-image marker in the new bytes may end the frame; the marker walk
                // decides (one inside an EXIF thumbnail does not).
                if find(&self.pending[scan.max(2)..], &[0xFF, 0xD9]).is_some() {
                    match jpeg_end(&self.pending) {
                        JpegEnd::Complete(end) => {
                            let mut rgb = vec![];
                            let res = pixfmt::decode_complete_jpeg(&self.pending[..end], &mut rgb);
                            self.pending.drain(..end);
                            let (w, h) = res?;
                            return Ok(Some(Frame::new(rgb, w, h)));
                        }
                        JpegEnd::Incomplete => {}
                        JpegEnd::Invalid(why) => {
                            // skip this SOI; the next search finds the following one
                            self.pending.drain(..2);
                            return Err(ConvertError::Jpeg(why.into()).into());
                        }
                    }
                }
                scan = self.pending.len().saturating_sub(1);
            } else {
                let keep = self.pending.last() == Some(&0xFF);
                self.pending.clear();
                if keep {
                    self.pending.push(0xFF);
                }
                scan = 0;
            }
            if self.pending.len() > MAX_JPEG {
                self.pending.clear();
                return Err(
                    ConvertError::Jpeg(format!("no end marker within {MAX_JPEG} bytes")).into(),
                );
            }
            let mut chunk = [0u8; 64 * 1024];
            let k = loop {
                match self.reader.read(&mut chunk) {
                    Ok(k) => break k,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(self.read_err(e)),
                }
            };
            if k == 0 {
                let partial = find(&self.pending, &[0xFF, 0xD8]).is_some();
                let len = self.pending.len();
                self.pending.clear();
                return if partial {
                    Err(
                        ConvertError::Jpeg(format!("stream ended inside a JPEG ({len} bytes)"))
                            .into(),
                    )
                } else {
                    Ok(None)
                };
            }
            self.pending.extend_from_slice(&chunk[..k]);
        }
    }
}

fn find(hay: &[u8], needle: &[u8; 2]) -> Option<usize> {
    hay.windows(2).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jpeg(w: u32, h: u32) -> Vec<u8> {
        let img = image::RgbImage::from_pixel(w, h, image::Rgb([10, 200, 30]));
        let mut out = vec![];
        image::codecs::jpeg::JpegEncoder::new(&mut out)
            .encode_image(&img)
            .unwrap();
        out
    }

    #[test]
    fn raw_frames_then_truncated_one() {
        let (w, h) = (5, 3);
        let n = PixelFormat::I420.frame_len(w, h).unwrap();
        let mut data = vec![128u8; 2 * n];
        data.extend(vec![128u8; n / 2]);
        let mut r = StreamReader::new(&data[..], PixelFormat::I420, (w, h), "t".into());
        assert_eq!(r.next_frame().unwrap().unwrap().width, 5);
        assert!(r.next_frame().unwrap().is_some());
        let e = r.next_frame().unwrap_err().to_string();
        assert!(e.contains("truncated"), "{e}");
        assert!(r.next_frame().unwrap().is_none());
    }

    #[test]
    fn mjpeg_stream_split_at_markers() {
        let mut data = b"junk".to_vec();
        data.extend(jpeg(16, 8));
        data.extend(jpeg(7, 9));
        let mut r = StreamReader::new(&data[..], PixelFormat::Mjpeg, (0, 0), "t".into());
        let a = r.next_frame().unwrap().unwrap();
        let b = r.next_frame().unwrap().unwrap();
        assert_eq!((a.width, a.height, b.width, b.height), (16, 8, 7, 9));
        assert!(r.next_frame().unwrap().is_none());
        let cut = jpeg(16, 8);
        let mut r = StreamReader::new(
            &cut[..cut.len() - 10],
            PixelFormat::Mjpeg,
            (0, 0),
            "t".into(),
        );
        assert!(r.next_frame().is_err(), "a cut JPEG is an error");
    }

    #[test]
    fn a_cut_frame_mid_stream_is_an_error_and_the_next_frames_decode() {
        // a textured frame: most of its bytes are scan data
        let img = image::RgbImage::from_fn(48, 32, |x, y| {
            image::Rgb([(x * 37 + y * 11) as u8, (x * y) as u8, (x ^ y) as u8])
        });
        let mut cut = vec![];
        image::codecs::jpeg::JpegEncoder::new(&mut cut)
            .encode_image(&img)
            .unwrap();
        let stream = |keep: usize| {
            let mut data = cut[..keep].to_vec();
            data.extend(jpeg(7, 9));
            data.extend(jpeg(3, 5));
            data
        };
        // cut in the scan data: the next frame's start ends it
        let data = stream(cut.len() - 10);
        let mut r = StreamReader::new(&data[..], PixelFormat::Mjpeg, (0, 0), "t".into());
        let e = r.next_frame().unwrap_err().to_string();
        assert!(e.contains("truncated"), "{e}");
        let a = r.next_frame().unwrap().unwrap();
        let b = r.next_frame().unwrap().unwrap();
        assert_eq!((a.width, a.height, b.width, b.height), (7, 9, 3, 5));
        assert!(r.next_frame().unwrap().is_none());
        // cut in the headers: a segment's length may reach into the next frame, which is then
        // lost with it, but the stream goes on
        let data = stream(cut.len() / 3);
        let mut r = StreamReader::new(&data[..], PixelFormat::Mjpeg, (0, 0), "t".into());
        let (mut errors, mut last) = (0, None);
        for _ in 0..10 {
            match r.next_frame() {
                Ok(Some(f)) => last = Some((f.width, f.height)),
                Ok(None) => break,
                Err(_) => errors += 1,
            }
        }
        assert!(errors >= 1 && last == Some((3, 5)), "{errors} {last:?}");
    }

    #[test]
    fn mjpeg_frame_with_a_thumbnail_is_not_split_at_the_thumbnails_end() {
        // an APP1 segment holding a whole JPEG (EXIF thumbnails do): its end-of-image marker
        // is inside the frame, not the frame's end
        let mut data = crate::io::pixfmt::jpeg_markers::with_thumbnail(&jpeg(11, 6), &jpeg(4, 4));
        data.extend(jpeg(5, 3));
        // one byte at a time, so every partial state is seen
        struct Trickle<'a>(&'a [u8]);
        impl Read for Trickle<'_> {
            fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
                let n = self.0.len().min(1).min(buf.len());
                buf[..n].copy_from_slice(&self.0[..n]);
                self.0 = &self.0[n..];
                Ok(n)
            }
        }
        for whole in [true, false] {
            let mut r = if whole {
                StreamReader::new(
                    Box::new(&data[..]) as Box<dyn Read>,
                    PixelFormat::Mjpeg,
                    (0, 0),
                    "t".into(),
                )
            } else {
                StreamReader::new(
                    Box::new(Trickle(&data)) as Box<dyn Read>,
                    PixelFormat::Mjpeg,
                    (0, 0),
                    "t".into(),
                )
            };
            let a = r.next_frame().unwrap().unwrap();
            let b = r.next_frame().unwrap().unwrap();
            assert_eq!((a.width, a.height, b.width, b.height), (11, 6, 5, 3));
            assert!(r.next_frame().unwrap().is_none());
        }
    }
}
