//! Per-kernel timings of the int8 depthwise kernels on MobileNetV3 shapes, every ISA the host
//! runs, side by side: `cargo bench --bench qs8_kernels`. Prints GMAC/s (median of 15).

use speck::kernels::qs8::dwconv::{self, DwGeom};
use speck::kernels::qs8::gemm::EpiMode;
use std::time::Instant;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn main() {
    // (h, w, c, k, stride) of MobileNetV3-Large's depthwise convs (input sizes).
    let shapes = [
        (112, 112, 16, 3, 1),
        (112, 112, 16, 3, 2),
        (112, 112, 64, 3, 2),
        (56, 56, 72, 3, 1),
        (56, 56, 72, 5, 2),
        (28, 28, 240, 3, 2),
        (14, 14, 480, 3, 1),
        (14, 14, 672, 5, 2),
        (7, 7, 960, 5, 1),
    ];
    println!("| shape (HxWxC, k, s) | kernel | us | GMAC/s |");
    println!("|---|---|---:|---:|");
    for &(h, w, c, k, s) in &shapes {
        let p = k / 2;
        let (oh, ow) = ((h + 2 * p - k) / s + 1, (w + 2 * p - k) / s + 1);
        let g = DwGeom {
            h,
            w,
            c,
            oh,
            ow,
            k: [k, k],
            s: [s, s],
            p: [p, p],
            d: [1, 1],
        };
        let x: Vec<u8> = (0..h * w * c + 64).map(|i| (i * 31 % 251) as u8).collect();
        let wt: Vec<i8> = (0..c * k * k).map(|i| (i * 17 % 255) as i8).collect();
        let cp = g.c_pad().max(c.div_ceil(64) * 64);
        let bias = vec![100i32; cp];
        let scale = vec![1e-3f32; cp];
        let mut y = vec![0u8; oh * ow * c];
        let macs = (oh * ow * c * k * k) as f64;
        for kern in dwconv::registry() {
            if !kern.level.supported() {
                continue;
            }
            let packed = (kern.pack)(&wt, &g);
            let mode = EpiMode::Quant {
                zp: 3,
                lo: 0,
                hi: 255,
            };
            let mut times = vec![];
            for _ in 0..15 {
                let t = Instant::now();
                for oy in 0..oh {
                    unsafe {
                        (kern.run)(
                            &g,
                            oy,
                            x.as_ptr(),
                            128,
                            packed.as_ptr(),
                            bias.as_ptr(),
                            scale.as_ptr(),
                            mode,
                            y.as_mut_ptr().add(oy * ow * c),
                        )
                    };
                }
                times.push(t.elapsed().as_secs_f64());
            }
            let t = median(times);
            println!(
                "| {h}x{w}x{c}, {k}x{k}, s{s} | {} | {:.1} | {:.1} |",
                kern.name,
                t * 1e6,
                macs / t / 1e9
            );
        }
    }
}
