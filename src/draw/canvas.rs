//! `DrawTarget` over a packed RGB8 buffer.

use embedded_graphics::pixelcolor::{Rgb888, RgbColor};
use embedded_graphics::prelude::*;
use std::convert::Infallible;

/// A mutable RGB8 frame that embedded-graphics can draw on. Pixels outside are clipped.
pub struct FrameCanvas<'a> {
    data: &'a mut [u8],
    width: usize,
    height: usize,
}

impl<'a> FrameCanvas<'a> {
    /// Wrap `width * height * 3` bytes of RGB.
    pub fn new(data: &'a mut [u8], width: usize, height: usize) -> Option<Self> {
        (data.len() >= width * height * 3).then_some(FrameCanvas {
            data,
            width,
            height,
        })
    }

    /// Wrap an `image` RGB buffer.
    pub fn from_image(img: &'a mut image::RgbImage) -> Self {
        let (w, h) = (img.width() as usize, img.height() as usize);
        FrameCanvas {
            data: &mut *img,
            width: w,
            height: h,
        }
    }
}

impl OriginDimensions for FrameCanvas<'_> {
    fn size(&self) -> Size {
        Size::new(self.width as u32, self.height as u32)
    }
}

impl DrawTarget for FrameCanvas<'_> {
    type Color = Rgb888;
    type Error = Infallible;

    fn draw_iter<I: IntoIterator<Item = Pixel<Rgb888>>>(
        &mut self,
        pixels: I,
    ) -> Result<(), Infallible> {
        for Pixel(p, c) in pixels {
            if p.x >= 0 && p.y >= 0 && (p.x as usize) < self.width && (p.y as usize) < self.height {
                let i = (p.y as usize * self.width + p.x as usize) * 3;
                self.data[i] = c.r();
                self.data[i + 1] = c.g();
                self.data[i + 2] = c.b();
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::Detection;

    #[test]
    fn draws_inside_and_clips_outside() {
        let mut buf = vec![0u8; 32 * 16 * 3];
        let mut c = FrameCanvas::new(&mut buf, 32, 16).unwrap();
        let d = Detection {
            bbox: [4.0, 4.0, 8.0, 8.0],
            score: 0.9,
            label: "person".into(),
            class_id: 0,
        };
        let far = Detection {
            bbox: [100.0, 100.0, 120.0, 130.0],
            score: 0.9,
            label: "x".into(),
            class_id: 0,
        };
        crate::draw::draw_detections(&mut c, &[d, far]);
        let red = buf.chunks(3).filter(|p| p == &[255, 56, 56]).count();
        assert!(red > 10, "box pixels drawn");
    }
}
