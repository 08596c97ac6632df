//! A minimal custom frame loop: your own frames (here synthesised in memory) go through the
//! detector one after another, reusing every buffer, with the boxes drawn back onto the frame.
//!
//! cargo run --release --example frame_loop -- [MODEL.onnx]

use anyhow::Result;
use speck::detect::RgbFrame;
use speck::draw::{draw_detections, draw_text_block, FrameCanvas};
use speck::{Detector, EngineOptions};
use std::time::Instant;

fn main() -> Result<()> {
    let model = std::env::args()
        .nth(1)
        .unwrap_or_else(|| concat!(env!("CARGO_MANIFEST_DIR"), "/models/speck-tiny.onnx").into());
    let mut detector = Detector::load(&model, &EngineOptions::default())?;
    let (w, h) = (640usize, 360usize);
    let mut frame = vec![0u8; w * h * 3];
    for i in 0..10u32 {
        // Stand-in for a camera: a moving gradient with a dark blob.
        for y in 0..h {
            for x in 0..w {
                let p = (y * w + x) * 3;
                frame[p] = (x as u32 + i * 8) as u8;
                frame[p + 1] = (y as u32) as u8;
                frame[p + 2] = 128;
            }
        }
        let t = Instant::now();
        let dets = detector.detect(RgbFrame {
            data: &frame,
            width: w,
            height: h,
        })?;
        let ms = t.elapsed().as_secs_f64() * 1e3;
        let mut canvas = FrameCanvas::new(&mut frame, w, h).expect("buffer fits");
        draw_detections(&mut canvas, &dets);
        draw_text_block(
            &mut canvas,
            &[
                format!("frame {i}"),
                format!("{ms:.1} ms, {} boxes", dets.len()),
            ],
        );
        println!("frame {i}: {} detections in {ms:.1} ms", dets.len());
    }
    Ok(())
}
