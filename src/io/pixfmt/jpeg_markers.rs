//! Where a JPEG ends, found by walking its marker segments.
//!
//! The `image` crate's JPEG decoder fills whatever a cut-short file lacks with grey and
//! reports success, so a truncated photo or a camera frame cut in half would be detected on
//! as if it were whole. Walking the markers tells a complete JPEG from a truncated one before
//! it is decoded, and finds a stream's frame boundaries without being fooled by the
//! end-of-image marker of an EXIF thumbnail (inside an APP1 segment, skipped by its length).

/// What [`jpeg_end`] found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JpegEnd {
    /// The JPEG ends with its end-of-image marker at `buf[..n]`.
    Complete(usize),
    /// The bytes stop before the end-of-image marker (a truncated file, or a frame of which
    /// more is still to come).
    Incomplete,
    /// Not a JPEG's structure (no start-of-image marker, or a segment where a marker belongs).
    Invalid(&'static str),
}

/// Walk the JPEG starting at `buf[0]` to its end-of-image marker.
///
/// Marker segments are skipped by their lengths; after each start-of-scan the entropy-coded
/// data runs to the next marker that is neither a stuffed `FF 00` nor a restart (`FF D0`-`D7`),
/// so progressive JPEGs (several scans) are walked too. Bytes after the end-of-image marker
/// (padding, a motion photo's video) are not looked at.
pub fn jpeg_end(buf: &[u8]) -> JpegEnd {
    if buf.len() < 2 {
        return JpegEnd::Incomplete;
    }
    if buf[..2] != [0xFF, 0xD8] {
        return JpegEnd::Invalid("no start-of-image marker");
    }
    let mut pos = 2;
    loop {
        let Some(&b) = buf.get(pos) else {
            return JpegEnd::Incomplete;
        };
        if b != 0xFF {
            return JpegEnd::Invalid("data where a marker belongs");
        }
        // Any number of FF fill bytes may precede a marker.
        while buf.get(pos) == Some(&0xFF) {
            pos += 1;
        }
        let Some(&m) = buf.get(pos) else {
            return JpegEnd::Incomplete;
        };
        pos += 1;
        match m {
            0xD9 => return JpegEnd::Complete(pos),
            0xD8 => {
                return JpegEnd::Invalid(
                    "truncated: another JPEG starts before its end-of-image marker",
                )
            }
            0x00 => return JpegEnd::Invalid("a stuffed byte outside scan data"),
            // standalone markers: restarts, TEM
            0xD0..=0xD7 | 0x01 => continue,
            _ => {}
        }
        let Some(len) = buf.get(pos..pos + 2) else {
            return JpegEnd::Incomplete;
        };
        let len = u16::from_be_bytes([len[0], len[1]]) as usize;
        if len < 2 {
            return JpegEnd::Invalid("a segment shorter than its length field");
        }
        pos += len;
        if pos > buf.len() {
            return JpegEnd::Incomplete;
        }
        if m == 0xDA {
            match scan_end(&buf[pos..]) {
                Some(n) => pos += n,
                None => return JpegEnd::Incomplete,
            }
        }
    }
}

/// Length of the entropy-coded data at the start of `data`: the offset of the first `FF` that
/// begins a marker other than a restart. `None` if the data runs to the end.
fn scan_end(data: &[u8]) -> Option<usize> {
    let mut i = 0;
    while let Some(k) = data[i..].iter().position(|&b| b == 0xFF) {
        let at = i + k;
        // skip fill bytes to the code after them
        let mut j = at + 1;
        while data.get(j) == Some(&0xFF) {
            j += 1;
        }
        match data.get(j) {
            None => return None,
            Some(0x00) | Some(0xD0..=0xD7) => i = j + 1,
            Some(_) => return Some(at),
        }
    }
    None
}

/// `j` with an APP1 segment right after its start-of-image marker holding the whole JPEG
/// `thumb`, as EXIF thumbnails are stored: an end-of-image marker inside the image.
#[cfg(test)]
pub(crate) fn with_thumbnail(j: &[u8], thumb: &[u8]) -> Vec<u8> {
    let mut with = j[..2].to_vec();
    with.extend([0xFF, 0xE1]);
    with.extend(((thumb.len() + 2) as u16).to_be_bytes());
    with.extend(thumb);
    with.extend(&j[2..]);
    with
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jpeg(w: u32, h: u32) -> Vec<u8> {
        let img = image::RgbImage::from_fn(w, h, |x, y| {
            image::Rgb([(x * 37 + y) as u8, (y * 11) as u8, (x ^ y) as u8])
        });
        let mut out = vec![];
        image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 90)
            .encode_image(&img)
            .unwrap();
        out
    }

    #[test]
    fn a_whole_jpeg_ends_at_its_eoi_and_every_cut_is_incomplete() {
        let j = jpeg(37, 21);
        assert_eq!(jpeg_end(&j), JpegEnd::Complete(j.len()));
        for cut in 0..j.len() {
            assert_eq!(jpeg_end(&j[..cut]), JpegEnd::Incomplete, "cut at {cut}");
        }
    }

    #[test]
    fn padding_and_trailers_after_the_eoi_are_ignored() {
        let j = jpeg(8, 8);
        let mut padded = j.clone();
        padded.extend([0u8; 100]);
        padded.extend(&j);
        assert_eq!(jpeg_end(&padded), JpegEnd::Complete(j.len()));
    }

    #[test]
    fn an_eoi_inside_a_segment_does_not_end_the_image() {
        let with = with_thumbnail(&jpeg(9, 5), &jpeg(4, 4));
        assert_eq!(jpeg_end(&with), JpegEnd::Complete(with.len()));
        let cut = &with[..with.len() - 40];
        assert_eq!(jpeg_end(cut), JpegEnd::Incomplete);
    }

    #[test]
    fn restarts_and_stuffed_bytes_stay_inside_the_scan() {
        // SOI, SOS with a 2-byte header, data with FF00 / FFD3 / fill, then EOI
        let data = [
            0xFF, 0xD8, 0xFF, 0xDA, 0x00, 0x02, 1, 2, 0xFF, 0x00, 3, 0xFF, 0xD3, 4, 0xFF, 0xFF,
            0xD9,
        ];
        assert_eq!(jpeg_end(&data), JpegEnd::Complete(data.len()));
        assert_eq!(jpeg_end(&data[..14]), JpegEnd::Incomplete);
    }

    #[test]
    fn not_a_jpeg_is_invalid() {
        assert!(matches!(jpeg_end(b"\x89PNG\r\n"), JpegEnd::Invalid(_)));
        assert!(matches!(
            jpeg_end(&[0xFF, 0xD8, 0x12, 0x34]),
            JpegEnd::Invalid(_)
        ));
        assert!(matches!(
            jpeg_end(&[0xFF, 0xD8, 0xFF, 0xE0, 0x00, 0x01]),
            JpegEnd::Invalid(_)
        ));
        assert!(matches!(
            jpeg_end(&[0xFF, 0xD8, 0xFF, 0xD8]),
            JpegEnd::Invalid(_)
        ));
    }
}
