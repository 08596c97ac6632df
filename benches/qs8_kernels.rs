//! Per-kernel timings of the int8 GEMM (1x1 conv) and depthwise kernels on MobileNetV3-Large's
//! shapes, every ISA the host runs, side by side: `cargo bench --bench qs8_kernels`. Prints
//! GMAC/s (median of 15 runs, env `SPECK_BENCH_REPS` for more); `int8_peak` gives the host's ceiling to read them against.

use speck::kernels::qs8::dwconv::{self, DwGeom};
use speck::kernels::qs8::gemm::{self, EpiMode, Epilogue, PackedB};
use std::time::Instant;

/// Timed repetitions per kernel and shape (env `SPECK_BENCH_REPS`, default 15; more for a
/// profiler).
fn reps() -> usize {
    std::env::var("SPECK_BENCH_REPS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(15)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn main() {
    // `cargo bench --bench qs8_kernels -- avx512` runs only the rows whose kernel name or
    // shape has "avx512" (`-- 7x7x960` one shape)
    let only = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    let run = |name: &str| only.as_deref().is_none_or(|o| name.contains(o));
    bench_gemm(&run);
    bench_dwconv(&run);
}

/// MobileNetV3-Large's 1x1 convs (output side, K, N), one per distinct shape, on one thread.
fn bench_gemm(run: &dyn Fn(&str) -> bool) {
    let shapes = [
        (112, 16, 16),
        (112, 16, 64),
        (56, 64, 24),
        (56, 24, 72),
        (28, 72, 40),
        (28, 40, 120),
        (28, 40, 240),
        (14, 240, 80),
        (14, 80, 200),
        (14, 80, 480),
        (14, 480, 112),
        (14, 112, 672),
        (14, 672, 112),
        (7, 672, 160),
        (7, 160, 960),
        (7, 960, 160),
    ];
    let reps = reps();
    println!("| 1x1 conv (side, K -> N) | kernel | us | GMAC/s |");
    println!("|---|---|---:|---:|");
    let mode = EpiMode::Quant {
        zp: 3,
        lo: 0,
        hi: 255,
    };
    let mut total = std::collections::BTreeMap::<&str, (f64, f64)>::new();
    for &(side, k, n) in &shapes {
        let m = side * side;
        let a: Vec<u8> = (0..m * k + 64).map(|i| (i * 31 % 251) as u8).collect();
        let w: Vec<i8> = (0..n * k).map(|i| (i * 17 % 255) as i8 ^ 1).collect();
        let b = PackedB::new(&w, n, k);
        let np = n.div_ceil(gemm::NR) * gemm::NR;
        let (bias, scale) = (vec![100i32; np], vec![1e-3f32; np]);
        let epi = Epilogue {
            bias: &bias,
            scale: &scale,
            mode,
            lut: None,
            residual: None,
        };
        let mut c = vec![0u8; m * n];
        let macs = (m * k * n) as f64;
        for kern in gemm::registry() {
            if !kern.level.supported() || !run(&format!("{side}x{side}, {k} -> {n} {}", kern.name))
            {
                continue;
            }
            let mut times = vec![];
            for _ in 0..reps {
                let t = Instant::now();
                unsafe { gemm::gemm_serial(&kern, m, a.as_ptr(), k, &b, &epi, c.as_mut_ptr(), n) };
                times.push(t.elapsed().as_secs_f64());
            }
            let t = median(times);
            let e = total.entry(kern.name).or_default();
            e.0 += t;
            e.1 += macs;
            println!(
                "| {side}x{side}, {k} -> {n} | {} | {:.1} | {:.1} |",
                kern.name,
                t * 1e6,
                macs / t / 1e9
            );
        }
    }
    for (name, (t, macs)) in total {
        println!(
            "| all of the above | {name} | {:.1} | {:.1} |",
            t * 1e6,
            macs / t / 1e9
        );
    }
    println!();
}

fn bench_dwconv(run: &dyn Fn(&str) -> bool) {
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
    let reps = reps();
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
            let label = format!("{h}x{w}x{c}, {k}x{k}, s{s} {}", kern.name);
            if !kern.level.supported() || !(kern.suits)(&g) || !run(&label) {
                continue;
            }
            let packed = (kern.pack)(&wt, &g);
            // the engine's framed copy where the kernel asks for one (its cost included)
            let input = (kern.input)(&g);
            let mut copy = vec![0u8; dwconv::framed_len(&g)];
            let mode = EpiMode::Quant {
                zp: 3,
                lo: 0,
                hi: 255,
            };
            let mut times = vec![];
            for _ in 0..reps {
                let t = Instant::now();
                let (gk, xk) = match input {
                    dwconv::Input::Image => (g, x.as_ptr()),
                    _ => {
                        let signed = input == dwconv::Input::FramedSigned;
                        let gk = dwconv::frame_input(&g, &x, 128, signed, &mut copy);
                        (gk, copy.as_ptr())
                    }
                };
                let band = (kern.band)(&gk);
                for oy in (0..oh).step_by(band) {
                    unsafe {
                        (kern.run)(
                            &gk,
                            oy,
                            band.min(oh - oy),
                            xk,
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
