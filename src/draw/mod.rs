//! Overlays drawn with embedded-graphics straight onto RGB8 frame buffers.

mod canvas;

pub use canvas::FrameCanvas;

use crate::detect::Detection;
use embedded_graphics::mono_font::{ascii::FONT_6X10, MonoTextStyle};
use embedded_graphics::pixelcolor::Rgb888;
use embedded_graphics::prelude::*;
use embedded_graphics::primitives::{PrimitiveStyle, Rectangle};
use embedded_graphics::text::{Baseline, Text};

/// A distinct colour per class.
pub fn class_color(class_id: usize) -> Rgb888 {
    const P: [(u8, u8, u8); 8] = [
        (255, 56, 56),
        (72, 249, 10),
        (0, 194, 255),
        (255, 157, 151),
        (255, 178, 29),
        (207, 210, 49),
        (146, 204, 23),
        (132, 56, 255),
    ];
    let (r, g, b) = P[class_id % P.len()];
    Rgb888::new(r, g, b)
}

/// Draw a box and a "label score" tag for each detection. Tiny boxes get a margin so they
/// stay visible.
pub fn draw_detections(canvas: &mut FrameCanvas, dets: &[Detection]) {
    let font = MonoTextStyle::new(&FONT_6X10, Rgb888::BLACK);
    for d in dets {
        let color = class_color(d.class_id);
        let [x1, y1, x2, y2] = d.bbox;
        let margin = 2;
        let (x, y) = (x1.floor() as i32 - margin, y1.floor() as i32 - margin);
        let w = ((x2 - x1).ceil() as i32 + 2 * margin).max(1) as u32;
        let h = ((y2 - y1).ceil() as i32 + 2 * margin).max(1) as u32;
        let _ = Rectangle::new(Point::new(x, y), Size::new(w, h))
            .into_styled(PrimitiveStyle::with_stroke(color, 2))
            .draw(canvas);
        let tag = format!("{} {:.0}%", d.label, d.score * 100.0);
        let tw = tag.len() as u32 * 6 + 2;
        let ty = if y >= 11 { y - 11 } else { y + h as i32 + 1 };
        let _ = Rectangle::new(Point::new(x, ty), Size::new(tw, 11))
            .into_styled(PrimitiveStyle::with_fill(color))
            .draw(canvas);
        let _ =
            Text::with_baseline(&tag, Point::new(x + 1, ty + 1), font, Baseline::Top).draw(canvas);
    }
}

/// Draw lines of text in a dark box at the top-left corner (stats overlay).
pub fn draw_text_block(canvas: &mut FrameCanvas, lines: &[String]) {
    let font = MonoTextStyle::new(&FONT_6X10, Rgb888::WHITE);
    let w = lines.iter().map(|l| l.len()).max().unwrap_or(0) as u32 * 6 + 6;
    let h = lines.len() as u32 * 11 + 4;
    let _ = Rectangle::new(Point::new(0, 0), Size::new(w, h))
        .into_styled(PrimitiveStyle::with_fill(Rgb888::new(20, 20, 20)))
        .draw(canvas);
    for (i, l) in lines.iter().enumerate() {
        let _ = Text::with_baseline(l, Point::new(3, 2 + 11 * i as i32), font, Baseline::Top)
            .draw(canvas);
    }
}
