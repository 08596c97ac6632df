//! Precision-recall plot as a PNG: curves and grid drawn by plotters' bitmap backend (no
//! fonts needed), tick labels and legend by embedded-graphics' built-in mono font.

use super::tinyperson::PrCurve;
use super::EvalError;
use crate::draw::FrameCanvas;
use embedded_graphics::geometry::Point;
use embedded_graphics::mono_font::{ascii::FONT_6X10, MonoTextStyle};
use embedded_graphics::pixelcolor::{Rgb888, RgbColor};
use embedded_graphics::text::{Baseline, Text};
use embedded_graphics::Drawable;
use plotters::prelude::{
    BitMapBackend, ChartBuilder, Color, IntoDrawingArea, LineSeries, RGBColor, BLACK, WHITE,
};
use std::path::Path;

const W: u32 = 640;
const H: u32 = 480;
const COLORS: [(u8, u8, u8); 6] = [
    (31, 119, 180),
    (255, 127, 14),
    (44, 160, 44),
    (214, 39, 40),
    (148, 103, 189),
    (140, 86, 75),
];

/// Draw `curves` (recall on x, precision on y, both [0, 1]) into an RGB image.
pub fn render_pr(curves: &[PrCurve]) -> Result<image::RgbImage, String> {
    let mut buf = vec![255u8; (W * H * 3) as usize];
    let mut labels: Vec<(i32, i32, String, Rgb888)> = vec![];
    {
        let root = BitMapBackend::with_buffer(&mut buf, (W, H)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| e.to_string())?;
        let mut chart = ChartBuilder::on(&root)
            .margin_left(50)
            .margin_bottom(40)
            .margin_top(20)
            .margin_right(20)
            .build_cartesian_2d(0f64..1f64, 0f64..1f64)
            .map_err(|e| e.to_string())?;
        let grid = RGBColor(225, 225, 225);
        for i in 0..=10 {
            let v = i as f64 / 10.0;
            let style = if i == 0 {
                BLACK.stroke_width(1)
            } else {
                grid.stroke_width(1)
            };
            chart
                .draw_series(LineSeries::new([(v, 0.0), (v, 1.0)], style))
                .map_err(|e| e.to_string())?;
            chart
                .draw_series(LineSeries::new([(0.0, v), (1.0, v)], style))
                .map_err(|e| e.to_string())?;
            if i % 2 == 0 {
                let (x, y) = chart.backend_coord(&(v, 0.0));
                labels.push((x - 9, y + 6, format!("{v:.1}"), Rgb888::BLACK));
                let (x, y) = chart.backend_coord(&(0.0, v));
                labels.push((x - 24, y - 5, format!("{v:.1}"), Rgb888::BLACK));
            }
        }
        let (x, y) = chart.backend_coord(&(0.5, 0.0));
        labels.push((x - 18, y + 22, "recall".into(), Rgb888::BLACK));
        let (x, y) = chart.backend_coord(&(0.0, 1.0));
        labels.push((x - 45, y - 16, "precision".into(), Rgb888::BLACK));
        for (i, c) in curves.iter().enumerate() {
            let (r, g, b) = COLORS[i % COLORS.len()];
            chart
                .draw_series(LineSeries::new(
                    c.points.iter().copied(),
                    RGBColor(r, g, b).stroke_width(2),
                ))
                .map_err(|e| e.to_string())?;
            let (x, y) = chart.backend_coord(&(0.62, 0.97 - 0.05 * i as f64));
            chart
                .draw_series(LineSeries::new(
                    [
                        (0.56, 0.955 - 0.05 * i as f64),
                        (0.6, 0.955 - 0.05 * i as f64),
                    ],
                    RGBColor(r, g, b).stroke_width(2),
                ))
                .map_err(|e| e.to_string())?;
            labels.push((x, y, c.name.clone(), Rgb888::new(r, g, b)));
        }
        root.present().map_err(|e| e.to_string())?;
    }
    let mut img = image::RgbImage::from_raw(W, H, buf).ok_or("plot buffer size")?;
    let mut canvas = FrameCanvas::from_image(&mut img);
    for (x, y, text, color) in labels {
        let style = MonoTextStyle::new(&FONT_6X10, color);
        // Drawing on a frame buffer cannot fail.
        let _ =
            Text::with_baseline(&text, Point::new(x, y), style, Baseline::Top).draw(&mut canvas);
    }
    Ok(img)
}

/// Write the PR plot of `curves` to `path` (PNG).
pub fn write_pr_png(curves: &[PrCurve], path: &Path) -> Result<(), EvalError> {
    let err = |msg: String| EvalError::Plot {
        path: path.to_path_buf(),
        msg,
    };
    let img = render_pr(curves).map_err(err)?;
    img.save_with_format(path, image::ImageFormat::Png)
        .map_err(|e| err(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_curves() {
        let c = PrCurve {
            name: "tiny IoU 0.50".into(),
            points: (0..=100)
                .map(|i| (i as f64 / 100.0, 1.0 - i as f64 / 200.0))
                .collect(),
        };
        let img = render_pr(&[c]).unwrap();
        let blue = img.pixels().filter(|p| p.0 == [31, 119, 180]).count();
        assert!(blue > 300, "curve drawn: {blue} pixels");
    }
}
