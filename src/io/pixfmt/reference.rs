//! Per-pixel floating-point conversions: slow and obviously correct, the yardstick for
//! [`super::rows`].

/// BT.601 limited-range YUV to RGB, rounded and clamped.
pub fn yuv_to_rgb(y: u8, u: u8, v: u8) -> [u8; 3] {
    let c = 1.164_383 * (y as f32 - 16.0);
    let d = u as f32 - 128.0;
    let e = v as f32 - 128.0;
    let q = |x: f32| x.round().clamp(0.0, 255.0) as u8;
    [
        q(c + 1.596_027 * e),
        q(c - 0.391_762 * d - 0.812_968 * e),
        q(c + 2.017_232 * d),
    ]
}

/// Planar I420 to RGB.
pub fn i420(src: &[u8], w: usize, h: usize, out: &mut [u8]) {
    let cw = w.div_ceil(2);
    let ch = h.div_ceil(2);
    let (yp, rest) = src.split_at(w * h);
    let (up, vp) = rest.split_at(cw * ch);
    for y in 0..h {
        for x in 0..w {
            let c = (y / 2) * cw + x / 2;
            let px = yuv_to_rgb(yp[y * w + x], up[c], vp[c]);
            out[(y * w + x) * 3..][..3].copy_from_slice(&px);
        }
    }
}

/// NV12 to RGB.
pub fn nv12(src: &[u8], w: usize, h: usize, out: &mut [u8]) {
    let cw = w.div_ceil(2);
    let (yp, uv) = src.split_at(w * h);
    for y in 0..h {
        for x in 0..w {
            let c = 2 * ((y / 2) * cw + x / 2);
            let px = yuv_to_rgb(yp[y * w + x], uv[c], uv[c + 1]);
            out[(y * w + x) * 3..][..3].copy_from_slice(&px);
        }
    }
}

/// YUYV to RGB (rows of `2 * ceil(w / 2)` pixel pairs).
pub fn yuyv(src: &[u8], w: usize, h: usize, out: &mut [u8]) {
    let stride = 4 * w.div_ceil(2);
    for y in 0..h {
        for x in 0..w {
            let p = &src[y * stride + (x / 2) * 4..][..4];
            let luma = if x % 2 == 0 { p[0] } else { p[2] };
            let px = yuv_to_rgb(luma, p[1], p[3]);
            out[(y * w + x) * 3..][..3].copy_from_slice(&px);
        }
    }
}

/// BGR to RGB.
pub fn bgr(src: &[u8], w: usize, h: usize, out: &mut [u8]) {
    for i in 0..w * h {
        out[3 * i] = src[3 * i + 2];
        out[3 * i + 1] = src[3 * i + 1];
        out[3 * i + 2] = src[3 * i];
    }
}
