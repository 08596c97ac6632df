//! Detect people in one image with the library and save an annotated copy.
//!
//! cargo run --release --example detect_image -- examples/data/images/synth_0000.jpg out.jpg

use anyhow::{Context, Result};
use speck::draw::{draw_detections, FrameCanvas};
use speck::{Detector, EngineOptions};

fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let input = args
        .next()
        .context("usage: detect_image INPUT.jpg [OUTPUT.jpg] [MODEL.onnx]")?;
    let output = args.next().unwrap_or_else(|| "detections.jpg".into());
    let model = args
        .next()
        .unwrap_or_else(|| concat!(env!("CARGO_MANIFEST_DIR"), "/models/speck-tiny.onnx").into());

    let mut detector = Detector::load(
        &model,
        &EngineOptions {
            threads: 2,
            ..Default::default()
        },
    )?;
    detector.options.conf = 0.3;
    let mut img = image::open(&input)
        .with_context(|| format!("reading {input}"))?
        .to_rgb8();
    let dets = detector.detect_image(&img)?;
    for d in &dets {
        println!(
            "{:>8} {:.2}  [{:.1}, {:.1}, {:.1}, {:.1}]",
            d.label, d.score, d.bbox[0], d.bbox[1], d.bbox[2], d.bbox[3]
        );
    }
    draw_detections(&mut FrameCanvas::from_image(&mut img), &dets);
    img.save(&output)?;
    println!(
        "{} detections, annotated image written to {output}",
        dets.len()
    );
    Ok(())
}
