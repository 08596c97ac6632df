//! Per-kernel timings of the f32 convolutions on the shipped detector's shapes and
//! MobileNetV3-Large's depthwise ones, every ISA the host runs, side by side: `cargo bench
//! --bench conv_f32`. Prints GMAC/s (best of 15, one thread: the hosts here lend their cores to
//! others, and the best run is the one nobody else interrupted).

use ndarray::{ArrayD, IxDyn};
use speck::kernels::conv_f32::ConvF32;
use speck::kernels::Isa;
use speck::ops::{Activation, Conv};
use std::time::Instant;

/// (name, x `[n, c, h, w]`, w `[m, c/group, k, k]`, group, stride, activation)
type Shape = (
    &'static str,
    [usize; 4],
    [usize; 4],
    usize,
    usize,
    Option<Activation>,
);

/// A depthwise conv of `c` channels on a `hw x hw` map.
fn dw(name: &'static str, c: usize, hw: usize, k: usize, s: usize, act: Activation) -> Shape {
    (name, [1, c, hw, hw], [c, 1, k, k], c, s, Some(act))
}

/// A 1x1 conv from `c` to `m` channels on a `hw x hw` map.
fn pw(name: &'static str, c: usize, m: usize, hw: usize, act: Activation) -> Shape {
    (name, [1, c, hw, hw], [m, c, 1, 1], 1, 1, Some(act))
}

fn best(v: Vec<f64>) -> f64 {
    v.into_iter().fold(f64::INFINITY, f64::min)
}

fn main() {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .unwrap();
    // from speck-tiny.onnx
    let shapes: [Shape; 17] = [
        (
            "stem 3x3 s2",
            [1, 3, 384, 384],
            [16, 3, 3, 3],
            1,
            2,
            Some(Activation::HardSwish),
        ),
        (
            "neck smooth 3x3",
            [1, 32, 96, 96],
            [32, 32, 3, 3],
            1,
            1,
            Some(Activation::Relu),
        ),
        (
            "lda-aqu offset 3x3",
            [2, 4, 96, 96],
            [18, 4, 3, 3],
            1,
            1,
            Some(Activation::Tanh),
        ),
        (
            "lda-aqu offset 3x3 (24px)",
            [2, 4, 24, 24],
            [18, 4, 3, 3],
            1,
            1,
            Some(Activation::Tanh),
        ),
        (
            "1x1 96px 32->32",
            [1, 32, 96, 96],
            [32, 32, 1, 1],
            1,
            1,
            None,
        ),
        (
            "1x1 12px 96->576",
            [1, 96, 12, 12],
            [576, 96, 1, 1],
            1,
            1,
            Some(Activation::HardSwish),
        ),
        // MobileNetV3-Large's depthwise convs
        dw("mnv3l dw 3x3 s2 112px", 64, 112, 3, 2, Activation::Relu),
        dw("mnv3l dw 3x3 s1 56px", 72, 56, 3, 1, Activation::Relu),
        dw("mnv3l dw 5x5 s1 28px", 120, 28, 5, 1, Activation::Relu),
        dw("mnv3l dw 3x3 s1 14px", 480, 14, 3, 1, Activation::HardSwish),
        dw("mnv3l dw 5x5 s1 7px", 960, 7, 5, 1, Activation::HardSwish),
        // and its 1x1s: expansions, projections, a squeeze-excite FC, the classifier
        pw("mnv3l 1x1 112px 16->64", 16, 64, 112, Activation::Relu),
        pw("mnv3l 1x1 28px 40->120", 40, 120, 28, Activation::Relu),
        pw(
            "mnv3l 1x1 14px 112->672",
            112,
            672,
            14,
            Activation::HardSwish,
        ),
        pw("mnv3l 1x1 7px 960->160", 960, 160, 7, Activation::Relu),
        pw("mnv3l se fc 960->240", 960, 240, 1, Activation::Relu),
        pw(
            "mnv3l classifier 960->1280",
            960,
            1280,
            1,
            Activation::HardSwish,
        ),
    ];
    println!("| conv | x | kernel | isa | us | GMAC/s |");
    println!("|---|---|---|---|---:|---:|");
    // `SPECK_BENCH_ONLY=7px`: only the shapes whose name contains it
    let only = std::env::var("SPECK_BENCH_ONLY").unwrap_or_default();
    for (name, xs, ws, group, s, act) in shapes {
        if !name.contains(only.as_str()) {
            continue;
        }
        let k = ws[2];
        let c = Conv {
            group,
            strides: [s, s],
            pads: [k / 2; 4],
            dilations: [1, 1],
            activation: act,
            residual: false,
        };
        let x = ArrayD::from_shape_fn(IxDyn(&xs), |i| {
            ((i[1] * 7 + i[2] * 3 + i[3]) % 17) as f32 / 17.0 - 0.5
        });
        let w = ArrayD::from_shape_fn(IxDyn(&ws), |i| {
            ((i[0] * 5 + i[1] + i[2] * 3 + i[3]) % 13) as f32 / 26.0 - 0.25
        });
        let b = ArrayD::from_elem(IxDyn(&[ws[0]]), 0.1f32);
        for isa in [Isa::Scalar, Isa::Avx2, Isa::Avx512, Isa::Neon] {
            if !isa.supported() {
                continue;
            }
            let conv = ConvF32::with_isa(&c, w.view(), Some(b.view()), &xs, isa).unwrap();
            let out = conv.out_shape(xs[0]);
            let mut y = ArrayD::zeros(IxDyn(&out));
            let mut scratch = vec![];
            let macs = (out.iter().product::<usize>() * ws[1] * k * k) as f64;
            let mut times = vec![];
            pool.install(|| {
                for _ in 0..15 {
                    let t = Instant::now();
                    conv.run(x.view(), y.view_mut(), &mut scratch);
                    times.push(t.elapsed().as_secs_f64());
                }
            });
            let t = best(times);
            println!(
                "| {name} | {xs:?} | {} | {} | {:.1} | {:.2} |",
                conv.algorithm(),
                isa.name(),
                t * 1e6,
                macs / t / 1e9
            );
        }
    }
}
