//! Fixed-point (14-bit) conversions, one row at a time: chroma is first widened to one
//! sample per pixel, then a single branch-free kernel ([`yuv444_row`]) that LLVM
//! vectorises turns Y, U, V rows into RGB. Within 1 of [`super::reference`].

const CY: i32 = 19077; // 1.164383 * 2^14
const CRV: i32 = 26149; // 1.596027
const CGU: i32 = 6419; // 0.391762
const CGV: i32 = 13320; // 0.812968
const CBU: i32 = 33050; // 2.017232

#[inline(always)]
fn clamp8(x: i32) -> u8 {
    x.clamp(0, 255) as u8
}

/// One row of full-resolution Y, U, V to packed RGB.
#[inline]
pub fn yuv444_row(y: &[u8], u: &[u8], v: &[u8], out: &mut [u8]) {
    let n = y.len().min(u.len()).min(v.len()).min(out.len() / 3);
    let (y, u, v, out) = (&y[..n], &u[..n], &v[..n], &mut out[..3 * n]);
    for (((o, &y), &u), &v) in out.chunks_exact_mut(3).zip(y).zip(u).zip(v) {
        let c = (y as i32 - 16) * CY + (1 << 13);
        let d = u as i32 - 128;
        let e = v as i32 - 128;
        o[0] = clamp8((c + CRV * e) >> 14);
        o[1] = clamp8((c - CGU * d - CGV * e) >> 14);
        o[2] = clamp8((c + CBU * d) >> 14);
    }
}

/// Repeat each half-resolution chroma sample for two pixels.
#[inline]
fn widen(src: &[u8], out: &mut [u8]) {
    for (pair, &s) in out.chunks_mut(2).zip(src) {
        pair.fill(s);
    }
}

/// Planar I420 to RGB.
pub fn i420(src: &[u8], w: usize, h: usize, out: &mut [u8]) {
    let (cw, ch) = (w.div_ceil(2), h.div_ceil(2));
    let (yp, rest) = src.split_at(w * h);
    let (up, vp) = rest.split_at(cw * ch);
    let (mut ur, mut vr) = (vec![0u8; w], vec![0u8; w]);
    for y in 0..h {
        if y % 2 == 0 {
            let c = (y / 2) * cw;
            widen(&up[c..c + cw], &mut ur);
            widen(&vp[c..c + cw], &mut vr);
        }
        yuv444_row(&yp[y * w..][..w], &ur, &vr, &mut out[y * w * 3..][..w * 3]);
    }
}

/// NV12 to RGB.
pub fn nv12(src: &[u8], w: usize, h: usize, out: &mut [u8]) {
    let cw = w.div_ceil(2);
    let (yp, uv) = src.split_at(w * h);
    let (mut ur, mut vr) = (vec![0u8; w], vec![0u8; w]);
    for y in 0..h {
        if y % 2 == 0 {
            let row = &uv[(y / 2) * 2 * cw..][..2 * cw];
            for (i, p) in row.chunks_exact(2).enumerate() {
                let x = 2 * i;
                ur[x] = p[0];
                vr[x] = p[1];
                if x + 1 < w {
                    ur[x + 1] = p[0];
                    vr[x + 1] = p[1];
                }
            }
        }
        yuv444_row(&yp[y * w..][..w], &ur, &vr, &mut out[y * w * 3..][..w * 3]);
    }
}

/// YUYV to RGB.
pub fn yuyv(src: &[u8], w: usize, h: usize, out: &mut [u8]) {
    let pairs = w.div_ceil(2);
    let stride = 4 * pairs;
    let (mut yr, mut ur, mut vr) = (
        vec![0u8; 2 * pairs],
        vec![0u8; 2 * pairs],
        vec![0u8; 2 * pairs],
    );
    for y in 0..h {
        let row = &src[y * stride..][..stride];
        for (i, p) in row.chunks_exact(4).enumerate() {
            yr[2 * i] = p[0];
            yr[2 * i + 1] = p[2];
            ur[2 * i] = p[1];
            ur[2 * i + 1] = p[1];
            vr[2 * i] = p[3];
            vr[2 * i + 1] = p[3];
        }
        yuv444_row(&yr[..w], &ur[..w], &vr[..w], &mut out[y * w * 3..][..w * 3]);
    }
}

/// BGR to RGB (channel swap).
pub fn bgr(src: &[u8], out: &mut [u8]) {
    for (o, s) in out.chunks_exact_mut(3).zip(src.chunks_exact(3)) {
        o[0] = s[2];
        o[1] = s[1];
        o[2] = s[0];
    }
}

#[cfg(test)]
mod tests {
    use super::super::{reference, to_rgb, PixelFormat};

    fn noise(n: usize, seed: u64) -> Vec<u8> {
        let mut s = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (0..n)
            .map(|_| {
                s = s
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                (s >> 56) as u8
            })
            .collect()
    }

    const SIZES: &[(usize, usize)] = &[(1, 1), (2, 2), (3, 5), (7, 3), (17, 9), (64, 48), (33, 31)];

    fn check(format: PixelFormat, reference: fn(&[u8], usize, usize, &mut [u8])) {
        for (k, &(w, h)) in SIZES.iter().enumerate() {
            let src = noise(format.frame_len(w, h).unwrap(), k as u64);
            let mut want = vec![0u8; w * h * 3];
            reference(&src, w, h, &mut want);
            let mut got = vec![];
            assert_eq!(to_rgb(format, &src, w, h, &mut got).unwrap(), (w, h));
            let worst = want
                .iter()
                .zip(&got)
                .map(|(a, b)| a.abs_diff(*b))
                .max()
                .unwrap();
            assert!(worst <= 1, "{format} {w}x{h}: off by {worst}");
        }
    }

    #[test]
    fn i420_matches_reference() {
        check(PixelFormat::I420, reference::i420);
    }

    #[test]
    fn nv12_matches_reference() {
        check(PixelFormat::Nv12, reference::nv12);
    }

    #[test]
    fn yuyv_matches_reference() {
        check(PixelFormat::Yuyv, reference::yuyv);
    }

    #[test]
    fn bgr_matches_reference() {
        check(PixelFormat::Bgr24, reference::bgr);
    }

    #[test]
    fn rgb_is_copied() {
        check(PixelFormat::Rgb24, |s, w, h, o| {
            o.copy_from_slice(&s[..w * h * 3])
        });
    }

    #[test]
    fn known_colours() {
        // Limited-range white, black and pure red.
        assert_eq!(reference::yuv_to_rgb(235, 128, 128), [255, 255, 255]);
        assert_eq!(reference::yuv_to_rgb(16, 128, 128), [0, 0, 0]);
        let red = reference::yuv_to_rgb(81, 90, 240);
        assert!(red[0] > 250 && red[1] < 5 && red[2] < 5, "{red:?}");
    }

    #[test]
    fn truncated_frames_are_errors() {
        for f in [
            PixelFormat::I420,
            PixelFormat::Nv12,
            PixelFormat::Yuyv,
            PixelFormat::Bgr24,
        ] {
            let n = f.frame_len(9, 7).unwrap();
            let err = to_rgb(f, &vec![0; n - 1], 9, 7, &mut vec![]).unwrap_err();
            assert!(err.to_string().contains("truncated"), "{err}");
        }
        assert!(to_rgb(PixelFormat::Mjpeg, &[0xff, 0xd8, 0xff], 0, 0, &mut vec![]).is_err());
    }

    #[test]
    fn mjpeg_round_trip() {
        let img = image::RgbImage::from_pixel(13, 7, image::Rgb([200, 30, 40]));
        let mut jpg = vec![];
        image::codecs::jpeg::JpegEncoder::new_with_quality(&mut jpg, 95)
            .encode_image(&img)
            .unwrap();
        let mut out = vec![];
        assert_eq!(
            to_rgb(PixelFormat::Mjpeg, &jpg, 0, 0, &mut out).unwrap(),
            (13, 7)
        );
        assert!(out[0].abs_diff(200) < 8 && out[1].abs_diff(30) < 8);
    }
}
