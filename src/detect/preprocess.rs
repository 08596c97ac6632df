//! Frame -> model input: letterbox (or stretch) with bilinear sampling, normalisation and
//! HWC -> CHW in one pass.

use crate::model::{Metadata, ResizeKind};

/// A borrowed RGB8 frame, rows packed.
#[derive(Clone, Copy, Debug)]
pub struct RgbFrame<'a> {
    /// `width * height * 3` bytes, RGB.
    pub data: &'a [u8],
    /// width in pixels
    pub width: usize,
    /// height in pixels
    pub height: usize,
}

/// The mapping between frame and model-input coordinates.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Letterbox {
    /// input pixels per frame pixel, x
    pub scale_x: f32,
    /// input pixels per frame pixel, y
    pub scale_y: f32,
    /// left padding in input pixels
    pub pad_x: f32,
    /// top padding in input pixels
    pub pad_y: f32,
}

impl Letterbox {
    /// Map a box from model-input pixels back to frame pixels, clipped to the frame.
    pub fn to_frame(&self, b: [f32; 4], width: usize, height: usize) -> [f32; 4] {
        let (w, h) = (width as f32, height as f32);
        [
            ((b[0] - self.pad_x) / self.scale_x).clamp(0.0, w),
            ((b[1] - self.pad_y) / self.scale_y).clamp(0.0, h),
            ((b[2] - self.pad_x) / self.scale_x).clamp(0.0, w),
            ((b[3] - self.pad_y) / self.scale_y).clamp(0.0, h),
        ]
    }
}

/// Fill `out` (`3 * in_h * in_w`, CHW) from the frame; returns the coordinate mapping.
pub fn preprocess(frame: RgbFrame, meta: &Metadata, out: &mut [f32]) -> Letterbox {
    preprocess_region(frame, [0, 0, frame.width, frame.height], meta, out)
}

/// As [`preprocess`], for the region `[x, y, w, h]` of the frame (a tile), read in place.
/// The returned mapping is relative to the region's top-left corner.
pub fn preprocess_region(
    frame: RgbFrame,
    region: [usize; 4],
    meta: &Metadata,
    out: &mut [f32],
) -> Letterbox {
    let (iw, ih) = meta.input_size;
    debug_assert_eq!(out.len(), 3 * iw * ih);
    let [rx, ry, rw, rh] = region;
    debug_assert!(rx + rw <= frame.width && ry + rh <= frame.height);
    let (fw, fh) = (rw.max(1) as f32, rh.max(1) as f32);
    let (sx, sy) = match meta.resize {
        ResizeKind::Stretch => (iw as f32 / fw, ih as f32 / fh),
        ResizeKind::Letterbox => {
            let s = (iw as f32 / fw).min(ih as f32 / fh);
            (s, s)
        }
    };
    let (nw, nh) = ((fw * sx).round() as usize, (fh * sy).round() as usize);
    let pad_x = ((iw - nw.min(iw)) / 2) as f32;
    let pad_y = ((ih - nh.min(ih)) / 2) as f32;
    let lb = Letterbox {
        scale_x: sx,
        scale_y: sy,
        pad_x,
        pad_y,
    };
    let mul: [f32; 3] = std::array::from_fn(|c| 1.0 / (255.0 * meta.std[c]));
    let add: [f32; 3] = std::array::from_fn(|c| -meta.mean[c] / meta.std[c]);
    let pad: [f32; 3] = std::array::from_fn(|c| 114.0 * mul[c] + add[c]);
    let plane = iw * ih;
    // Precompute horizontal source positions once per frame, not per row.
    let xs: Vec<(usize, usize, f32)> = (0..iw)
        .map(|x| {
            let src = ((x as f32 - pad_x + 0.5) / sx - 0.5).clamp(0.0, fw - 1.0);
            let x0 = src.floor() as usize;
            (rx + x0, rx + (x0 + 1).min(rw - 1), src - x0 as f32)
        })
        .collect();
    let (x_lo, x_hi) = (pad_x as usize, pad_x as usize + nw.min(iw));
    let (y_lo, y_hi) = (pad_y as usize, pad_y as usize + nh.min(ih));
    let stride = frame.width * 3;
    for y in 0..ih {
        let row = y * iw;
        if y < y_lo || y >= y_hi {
            for c in 0..3 {
                out[c * plane + row..c * plane + row + iw].fill(pad[c]);
            }
            continue;
        }
        let src = ((y as f32 - pad_y + 0.5) / sy - 0.5).clamp(0.0, fh - 1.0);
        let y0 = src.floor() as usize;
        let y1 = ry + (y0 + 1).min(rh - 1);
        let fy = src - y0 as f32;
        let y0 = ry + y0;
        let (r0, r1) = (&frame.data[y0 * stride..], &frame.data[y1 * stride..]);
        for x in 0..iw {
            if x < x_lo || x >= x_hi {
                for c in 0..3 {
                    out[c * plane + row + x] = pad[c];
                }
                continue;
            }
            let (x0, x1, fx) = xs[x];
            for c in 0..3 {
                let a = r0[x0 * 3 + c] as f32 * (1.0 - fx) + r0[x1 * 3 + c] as f32 * fx;
                let b = r1[x0 * 3 + c] as f32 * (1.0 - fx) + r1[x1 * 3 + c] as f32 * fx;
                out[c * plane + row + x] = (a * (1.0 - fy) + b * fy) * mul[c] + add[c];
            }
        }
    }
    lb
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::OutputFormat;

    fn meta(w: usize, h: usize) -> Metadata {
        Metadata {
            input_size: (w, h),
            mean: [0.0; 3],
            std: [1.0; 3],
            resize: ResizeKind::Letterbox,
            class_names: vec![],
            output_format: OutputFormat::SpeckCenternet,
            strides: vec![4],
            tile: None,
        }
    }

    #[test]
    fn letterbox_pads_and_maps_back() {
        let data = vec![255u8; 200 * 100 * 3];
        let frame = RgbFrame {
            data: &data,
            width: 200,
            height: 100,
        };
        let mut out = vec![0.0; 3 * 64 * 64];
        let lb = preprocess(frame, &meta(64, 64), &mut out);
        assert_eq!(lb.scale_x, 0.32);
        assert_eq!(lb.pad_y, 16.0);
        assert!(
            (out[0] - 114.0 / 255.0).abs() < 1e-6,
            "top rows are padding"
        );
        assert!(
            (out[32 * 64 + 32] - 1.0).abs() < 1e-6,
            "middle is the white frame"
        );
        let b = lb.to_frame([0.0, 16.0, 64.0, 48.0], 200, 100);
        assert_eq!(b, [0.0, 0.0, 200.0, 100.0]);
    }

    #[test]
    fn identity_size_copies_pixels() {
        let data: Vec<u8> = (0..4 * 4 * 3).map(|i| i as u8).collect();
        let frame = RgbFrame {
            data: &data,
            width: 4,
            height: 4,
        };
        let mut out = vec![0.0; 3 * 16];
        preprocess(frame, &meta(4, 4), &mut out);
        for y in 0..4 {
            for x in 0..4 {
                for c in 0..3 {
                    let want = data[(y * 4 + x) * 3 + c] as f32 / 255.0;
                    assert!((out[c * 16 + y * 4 + x] - want).abs() < 1e-6);
                }
            }
        }
    }
}
