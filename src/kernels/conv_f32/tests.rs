//! Every optimised path against `crate::ops::run_conv` on fixed-seed random data.

use super::*;
use crate::ops::run_conv_with;
use ndarray::{ArrayD, IxDyn};

/// xorshift32, uniform in [-1, 1).
struct Rng(u32);

impl Rng {
    fn next(&mut self) -> f32 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        self.0 = x;
        (x >> 8) as f32 / (1u32 << 23) as f32 - 1.0
    }

    fn array(&mut self, shape: &[usize]) -> ArrayD<f32> {
        let n = shape.iter().product();
        ArrayD::from_shape_vec(IxDyn(shape), (0..n).map(|_| self.next()).collect()).unwrap()
    }
}

const ISAS: [Isa; 4] = [Isa::Scalar, Isa::Avx2, Isa::Avx512, Isa::Neon];

/// ISAs this host runs; reports the others as skipped.
fn host_isas() -> Vec<Isa> {
    let mut v = vec![];
    for i in ISAS {
        if i.supported() {
            v.push(i);
        } else {
            eprintln!(
                "conv_f32 tests: ISA {} not supported on this host, path skipped",
                i.name()
            );
        }
    }
    v
}

/// The ISA whose float kernels `isa` runs, for kernels armv7 has no NEON version of (depthwise
/// other than 3x3 / 5x5 square): those take the portable paths there.
fn float_isa(isa: Isa) -> Isa {
    if isa == Isa::Neon && !cfg!(target_arch = "aarch64") {
        Isa::Scalar
    } else {
        isa
    }
}

/// The kernel a non-depthwise conv gets on `isa`: the tiled microkernel where the ISA has one,
/// else the `gemm` crate (`one_by_one`: a 1x1 stride-1 unpadded conv).
fn general_algo(isa: Isa, one_by_one: bool) -> &'static str {
    match isa {
        Isa::Avx512 => "conv_f32_tiled_8x32_avx512",
        Isa::Avx2 | Isa::Scalar if one_by_one => "conv1x1_f32_gemm",
        Isa::Avx2 => "conv_f32_tiled_8x32_avx2",
        Isa::Neon if cfg!(target_arch = "arm") => "conv_f32_tiled_8x32_armv7neon",
        Isa::Neon => "conv_f32_tiled_8x32_neon",
        Isa::Scalar => "conv_f32_im2col_gemm",
    }
}

/// The kernel a 3x3 stride-1 conv with enough channels ([`winograd::applies`]) gets on `isa`
/// for an `oh x ow` output: Winograd F(2x2, 3x3) or F(4x4, 3x3) on the tiled microkernel
/// where the ISA has one.
fn winograd_algo(isa: Isa, oh: usize, ow: usize) -> Option<&'static str> {
    let f43 = winograd::Tile::select(oh, ow) == winograd::Tile::F43;
    let pick = |a: &'static str, b: &'static str| Some(if f43 { b } else { a });
    match isa {
        Isa::Avx512 => pick(
            "conv3x3s1_f32_winograd23_8x32_avx512",
            "conv3x3s1_f32_winograd43_8x32_avx512",
        ),
        Isa::Avx2 => pick(
            "conv3x3s1_f32_winograd23_8x32_avx2",
            "conv3x3s1_f32_winograd43_8x32_avx2",
        ),
        Isa::Neon if cfg!(target_arch = "arm") => None,
        Isa::Neon => pick(
            "conv3x3s1_f32_winograd23_8x32_neon",
            "conv3x3s1_f32_winograd43_8x32_neon",
        ),
        Isa::Scalar => None,
    }
}

/// The kernel a non-depthwise conv with a 1x1 output gets on `isa`.
fn gemv_algo(isa: Isa) -> &'static str {
    match isa {
        Isa::Neon if cfg!(target_arch = "arm") => "conv_f32_gemv16_armv7neon",
        Isa::Avx512 => "conv_f32_gemv16_avx512",
        Isa::Avx2 => "conv_f32_gemv16_avx2",
        Isa::Neon => "conv_f32_gemv16_neon",
        Isa::Scalar => "conv_f32_gemv16_scalar",
    }
}

/// The kernel a depthwise conv with horizontal stride `sw` and without a dedicated row kernel
/// gets on `isa` (on AVX-512 the direct rows at stride 1 and 2, otherwise on x86 SIMD the flat
/// one).
fn depthwise_generic_algo(isa: Isa, sw: usize) -> &'static str {
    let isa = float_isa(isa);
    match isa {
        Isa::Avx2 => "dwconv_f32_flat32_avx2",
        Isa::Avx512 if sw <= 2 && cfg!(target_arch = "x86_64") => "dwconv_f32_rows16_avx512",
        Isa::Avx512 => "dwconv_f32_flat128_avx512",
        _ => "dwconv_f32_generic_scalar",
    }
}

struct Case {
    n: usize,
    c: usize,
    h: usize,
    w: usize,
    m: usize,
    k: [usize; 2],
    conv: Conv,
    bias: bool,
}

/// Plan and run `case` on `isa`; compare with the reference. Returns the algorithm name, or None
/// when the shapes are invalid (both sides must agree on that).
fn check(rng: &mut Rng, case: &Case, isa: Isa, relu: bool) -> Option<&'static str> {
    let Case {
        n,
        c,
        h,
        w,
        m,
        k,
        ref conv,
        bias,
    } = *case;
    let x = rng.array(&[n, c, h, w]);
    let wt = rng.array(&[m, c / conv.group.max(1), k[0], k[1]]);
    let b = rng.array(&[m]);
    let bv = if bias { Some(b.view()) } else { None };
    let plan = ConvF32::with_isa(conv, wt.view(), bv.clone(), x.shape(), isa);
    let mut inputs = vec![x.view(), wt.view()];
    if bias {
        inputs.push(b.view());
    }
    let shapes: Vec<&[usize]> = inputs.iter().map(|a| a.shape()).collect();
    let out = match conv_shape(conv, &shapes) {
        Ok(s) => s,
        Err(_) => {
            assert!(
                plan.is_err(),
                "plan accepted invalid conv {conv:?} x {:?} w {:?}",
                x.shape(),
                wt.shape()
            );
            return None;
        }
    };
    let plan = plan.expect("valid conv must plan");
    assert_eq!(plan.out_shape(n).to_vec(), out);
    let act = |v: f32| if relu { v.max(0.0) } else { v };
    let mut expect = ArrayD::zeros(IxDyn(&out));
    run_conv_with(conv, &inputs, &mut expect.view_mut(), act).unwrap();
    let mut got = ArrayD::from_elem(IxDyn(&out), f32::NAN);
    let mut scratch = vec![];
    plan.run_with(x.view(), got.view_mut(), &mut scratch, &act);
    assert!(scratch.len() >= plan.scratch_len());
    let mag = expect.iter().fold(1.0f32, |a, &v| a.max(v.abs()));
    let err = expect
        .iter()
        .zip(got.iter())
        .fold(0.0f32, |a, (e, g)| a.max((e - g).abs()));
    assert!(
        err <= 1e-4 * mag,
        "{} ({}) max err {err} (mag {mag}) for x {:?} w {:?} {conv:?} bias {bias}",
        plan.algorithm(),
        isa.name(),
        x.shape(),
        wt.shape()
    );
    Some(plan.algorithm())
}

fn conv(group: usize, s: usize, pads: [usize; 4], d: usize) -> Conv {
    Conv {
        group,
        strides: [s, s],
        pads,
        dilations: [d, d],
        activation: None,
        residual: false,
    }
}

/// Pad variants for a kernel: none, symmetric k/2, asymmetric (ONNX SAME_UPPER-like), one-sided.
fn pad_variants(k: usize) -> Vec<[usize; 4]> {
    let p = k / 2;
    let mut v = vec![[0; 4], [p, p, p, p]];
    if p > 0 {
        v.push([p - 1, p - 1, p, p]);
        v.push([p, 0, 0, p]);
        v.push([0, 1.min(p), p, 0]);
    }
    v
}

const HW: [(usize, usize); 9] = [
    (1, 1),
    (2, 5),
    (5, 5),
    (7, 7),
    (9, 13),
    (13, 9),
    (33, 33),
    (1, 33),
    (33, 2),
];
const CH: [usize; 5] = [1, 3, 13, 16, 17];

#[test]
fn depthwise_all_paths() {
    let mut rng = Rng(0x9e37_79b9);
    let mut seen = std::collections::BTreeSet::new();
    let mut runs = 0;
    for isa in host_isas() {
        for (i, &(h, w)) in HW.iter().enumerate() {
            for k in [1, 3, 5, 7, 11] {
                for s in [1, 2] {
                    for (j, pads) in pad_variants(k).into_iter().enumerate() {
                        let c = CH[(i + j + k) % CH.len()];
                        let case = Case {
                            n: 1 + (j % 2),
                            c,
                            h,
                            w,
                            m: c,
                            k: [k, k],
                            conv: conv(c, s, pads, 1),
                            bias: j % 3 != 2,
                        };
                        if let Some(a) = check(&mut rng, &case, isa, false) {
                            seen.insert(a);
                            runs += 1;
                        }
                    }
                }
            }
        }
    }
    // non-square kernels, mixed strides and stride 3 go to the generic row kernel, or the flat
    // one on x86
    for isa in host_isas() {
        for (k, strides, pads, (h, w)) in [
            ([3, 5], [2, 1], [1, 0, 1, 2], (9, 13)),
            ([5, 3], [1, 2], [2, 1, 0, 1], (13, 9)),
            ([1, 7], [3, 3], [0, 3, 0, 3], (10, 31)),
            ([4, 4], [3, 2], [1, 2, 2, 1], (17, 8)),
        ] {
            let mut c = conv(3, 1, pads, 1);
            c.strides = strides;
            let case = Case {
                n: 1,
                c: 3,
                h,
                w,
                m: 3,
                k,
                conv: c,
                bias: true,
            };
            let expect = depthwise_generic_algo(isa, strides[1]);
            assert_eq!(check(&mut rng, &case, isa, false), Some(expect));
            seen.insert(expect);
        }
    }
    eprintln!("depthwise: {runs} runs, kernels {seen:?}");
    for name in [
        "dwconv_f32_generic_scalar",
        "dwconv_f32_3x3s1_scalar",
        "dwconv_f32_3x3s2_scalar",
        "dwconv_f32_5x5s1_scalar",
        "dwconv_f32_5x5s2_scalar",
    ] {
        assert!(seen.contains(name), "{name} never exercised");
    }
    for (isa, name) in [
        (Isa::Avx2, "dwconv_f32_flat32_avx2"),
        (Isa::Avx512, "dwconv_f32_flat128_avx512"),
        (Isa::Avx512, "dwconv_f32_rows16_avx512"),
        (Isa::Avx512, "dwconv_f32_16c_avx512"),
    ] {
        let x86_64_only = name.contains("rows16") || name.contains("16c");
        if isa.supported() && (cfg!(target_arch = "x86_64") || !x86_64_only) {
            assert!(seen.contains(name), "{name} never exercised");
        }
    }
    if Isa::Neon.supported() {
        let names: [&str; 4] = if cfg!(target_arch = "arm") {
            [
                "dwconv_f32_3x3s1_armv7neon",
                "dwconv_f32_3x3s2_armv7neon",
                "dwconv_f32_5x5s1_armv7neon",
                "dwconv_f32_5x5s2_armv7neon",
            ]
        } else {
            [
                "dwconv_f32_3x3s1_neon",
                "dwconv_f32_3x3s2_neon",
                "dwconv_f32_5x5s1_neon",
                "dwconv_f32_5x5s2_neon",
            ]
        };
        for name in names {
            assert!(seen.contains(name), "{name} never exercised");
        }
        if cfg!(target_arch = "aarch64") {
            for name in [
                "dwconv_f32_7x7s1_neon",
                "dwconv_f32_7x7s2_neon",
                "dwconv_f32_11x11s1_neon",
                "dwconv_f32_11x11s2_neon",
            ] {
                assert!(seen.contains(name), "{name} never exercised");
            }
        }
    }
}

/// Maps wide and tall enough for the direct AVX-512 rows' bigger tiles (up to 4 column vectors
/// by 2 rows, 8 rows of one vector, flat streams of 8 vectors), odd widths, every padding
/// variant, strides 1 and 2, on every ISA the host runs.
#[test]
fn depthwise_wide_maps() {
    let mut rng = Rng(0x5eed_d3ad);
    let mut runs = 0;
    for isa in host_isas() {
        for (i, &(h, w)) in [
            (20, 71),
            (9, 112),
            (6, 64),
            (31, 17),
            (3, 130),
            (70, 70),
            (14, 14),
        ]
        .iter()
        .enumerate()
        {
            for k in [3, 5, 7] {
                for s in [1, 2] {
                    for (j, pads) in pad_variants(k).into_iter().enumerate() {
                        let c = [1, 3, 5][(i + j) % 3];
                        let case = Case {
                            n: 1,
                            c,
                            h,
                            w,
                            m: c,
                            k: [k, k],
                            conv: conv(c, s, pads, 1),
                            bias: j % 2 == 0,
                        };
                        if let Some(a) = check(&mut rng, &case, isa, j % 3 == 1) {
                            assert!(a.starts_with("dwconv"), "{a}");
                            runs += 1;
                        }
                    }
                }
            }
        }
    }
    assert!(runs > 100, "only {runs} runs");
}

/// Depthwise convs with their own activation (`ConvF32::run`: HardSwish and Relu have vector
/// forms the NEON plane kernels apply in registers, Sigmoid runs over the plane afterwards), on
/// maps with one or two rows, odd row counts (the recomputed last pair), widths either side of
/// 4 and 8 (the recomputed last 4 outputs) and padded or not, against the reference.
#[test]
fn depthwise_fused_activations() {
    let mut rng = Rng(0xd3c0_7e11);
    let maps = [
        (1, 9),
        (2, 4),
        (3, 3),
        (5, 7),
        (4, 12),
        (7, 14),
        (9, 19),
        (6, 5),
        (11, 8),
    ];
    let acts = [
        Activation::HardSwish,
        Activation::Relu,
        Activation::Sigmoid,
        Activation::Gelu,
    ];
    let mut runs = 0;
    for isa in host_isas() {
        for (i, &(h, w)) in maps.iter().enumerate() {
            for k in [3, 5, 7, 11] {
                for s in [1, 2] {
                    for pads in [[0; 4], [k / 2; 4]] {
                        let mut c = conv(3, s, pads, 1);
                        c.activation = Some(acts[(i + k + s) % acts.len()]);
                        let (x, wt, b) = (
                            rng.array(&[2, 3, h, w]),
                            rng.array(&[3, 1, k, k]),
                            rng.array(&[3]),
                        );
                        let ins = [x.view(), wt.view(), b.view()];
                        let shapes: Vec<&[usize]> = ins.iter().map(|a| a.shape()).collect();
                        let Ok(out) = conv_shape(&c, &shapes) else {
                            continue;
                        };
                        let plan = ConvF32::with_isa(&c, wt.view(), Some(b.view()), x.shape(), isa)
                            .unwrap();
                        let mut got = ArrayD::from_elem(IxDyn(&out), f32::NAN);
                        plan.run(x.view(), got.view_mut(), &mut vec![]);
                        let mut expect = ArrayD::zeros(IxDyn(&out));
                        let act = c.activation.unwrap();
                        let f = |v: f32| crate::ops::apply_activation(act, v);
                        run_conv_with(&c, &ins, &mut expect.view_mut(), f).unwrap();
                        for (a, e) in got.iter().zip(expect.iter()) {
                            assert!(
                                (a - e).abs() <= 1e-4 * e.abs().max(1.0),
                                "{act:?} {} ({}) {h}x{w} k{k} s{s} {pads:?}: {a} vs {e}",
                                plan.algorithm(),
                                isa.name()
                            );
                        }
                        runs += 1;
                    }
                }
            }
        }
    }
    assert!(runs > 100, "only {runs} runs");
}

#[test]
fn gemm_1x1_paths() {
    let mut rng = Rng(12345);
    for isa in host_isas() {
        for (i, &(h, w)) in HW.iter().enumerate() {
            for (j, &c) in CH.iter().enumerate() {
                let m = CH[(i + j + 1) % CH.len()];
                let case = Case {
                    n: 1 + i % 2,
                    c,
                    h,
                    w,
                    m,
                    k: [1, 1],
                    conv: conv(1, 1, [0; 4], 1),
                    bias: j % 2 == 0,
                };
                let a = check(&mut rng, &case, isa, false).unwrap();
                // C == M == 1 is also depthwise
                let dw = c == 1 && m == 1;
                assert_eq!(
                    a,
                    if dw {
                        depthwise_generic_algo(isa, 1)
                    } else if h * w == 1 {
                        gemv_algo(isa)
                    } else {
                        general_algo(isa, true)
                    }
                );
            }
            // grouped 1x1 (shuffle-style)
            let case = Case {
                n: 1,
                c: 16,
                h,
                w,
                m: 8,
                k: [1, 1],
                conv: conv(4, 1, [0; 4], 1),
                bias: true,
            };
            assert_eq!(
                check(&mut rng, &case, isa, false),
                Some(if h * w == 1 {
                    gemv_algo(isa)
                } else {
                    general_algo(isa, true)
                })
            );
        }
    }
}

/// 1x1 convs on maps of up to two tiles with 64+ input channels: pixels as the microkernel's
/// rows where the ISA has that path and it computes less (`pixel_rows::suits`); ragged
/// pixel blocks (3 x 5, 1 x 2, 2 x 2 in blocks of 5 pixels), blocks of 5 to 8 pixels,
/// ragged channel blocks (37, 70), batches, with and without bias, a closure epilogue and the
/// conv's own activations through `run`.
#[test]
fn pixel_rows_paths() {
    let mut rng = Rng(2468);
    let maps = [
        (7, 7),
        (3, 5),
        (1, 2),
        (8, 8),
        (5, 9),
        (2, 2),
        (6, 6),
        (4, 7),
        (3, 7),
    ];
    let shapes = [(64, 32), (67, 37), (100, 70), (64, 96)];
    for isa in host_isas() {
        let mut used = 0;
        for (i, &(h, w)) in maps.iter().enumerate() {
            for (j, &(c, m)) in shapes.iter().enumerate() {
                let case = Case {
                    n: 1 + (i + j) % 2,
                    c,
                    h,
                    w,
                    m,
                    k: [1, 1],
                    conv: conv(1, 1, [0; 4], 1),
                    bias: j % 2 == 0,
                };
                let a = check(&mut rng, &case, isa, (i + j) % 3 == 0).unwrap();
                let rows = pixel_rows_algo(isa, true, [h * w, m, c]).map(|a| {
                    assert_eq!(isa, Isa::Avx512);
                    match a {
                        #[cfg(target_arch = "x86_64")]
                        Algo::PixelRows(r) => pixel_rows::name(r),
                        a => panic!("pixel rows planned as {a:?}"),
                    }
                });
                assert_eq!(
                    a,
                    rows.unwrap_or(general_algo(isa, true)),
                    "{h}x{w} {c}->{m}"
                );
                used += usize::from(rows.is_some());
            }
        }
        if isa == Isa::Avx512 {
            assert!(
                used >= 12,
                "{}: pixel rows planned {used} times",
                isa.name()
            );
        }
        for act in [
            Activation::HardSwish,
            Activation::Relu,
            Activation::Sigmoid,
            Activation::Gelu,
        ] {
            let mut c = conv(1, 1, [0; 4], 1);
            c.activation = Some(act);
            let (x, w, b) = (
                rng.array(&[2, 72, 7, 7]),
                rng.array(&[40, 72, 1, 1]),
                rng.array(&[40]),
            );
            let plan = ConvF32::with_isa(&c, w.view(), Some(b.view()), x.shape(), isa).unwrap();
            let mut got = ArrayD::zeros(IxDyn(&[2, 40, 7, 7]));
            plan.run(x.view(), got.view_mut(), &mut vec![]);
            let mut expect = ArrayD::zeros(IxDyn(&[2, 40, 7, 7]));
            let ins = [x.view(), w.view(), b.view()];
            let f = |v: f32| crate::ops::apply_activation(act, v);
            run_conv_with(&c, &ins, &mut expect.view_mut(), f).unwrap();
            for (a, e) in got.iter().zip(expect.iter()) {
                assert!(
                    (a - e).abs() < 1e-4 * e.abs().max(1.0),
                    "{act:?} {}: {a} vs {e}",
                    plan.algorithm()
                );
            }
        }
    }
}

#[test]
fn im2col_gemm_paths() {
    let mut rng = Rng(777);
    let mut runs = 0;
    for isa in host_isas() {
        for (i, &(h, w)) in HW.iter().enumerate() {
            for k in [1, 3, 5, 7, 11] {
                for s in [1, 2] {
                    for d in [1, 2] {
                        for (j, pads) in pad_variants(k).into_iter().enumerate() {
                            if k == 1 && s == 1 && pads == [0; 4] {
                                continue; // the 1x1 GEMM path
                            }
                            let c = CH[(i + j + k + s) % CH.len()];
                            // groups: 1, or a divisor giving grouped non-depthwise / channel multiplier
                            let (group, m) = match (i + j + d) % 3 {
                                0 => (1, CH[(i + k) % CH.len()]),
                                1 if c % 2 == 0 => (2, 6),
                                _ => (c, 2 * c), // depthwise multiplier 2: not depthwise path
                            };
                            let case = Case {
                                n: 1,
                                c,
                                h,
                                w,
                                m,
                                k: [k, k],
                                conv: conv(group, s, pads, d),
                                bias: j % 2 == 0,
                            };
                            if let Some(a) = check(&mut rng, &case, isa, false) {
                                let dw = group == c && m == c && d == 1;
                                assert_eq!(a.starts_with("dwconv"), dw, "{a}");
                                let one = a == gemv_algo(isa);
                                let wino = winograd::applies([k, k], [s, s], [d, d], group, c, m)
                                    && a.starts_with("conv3x3s1_f32_winograd");
                                assert!(dw || one || wino || a == general_algo(isa, false), "{a}");
                                runs += 1;
                            }
                        }
                    }
                }
            }
        }
    }
    // dilated depthwise goes through im2col too; rectangular kernel with mixed strides
    for isa in host_isas() {
        let case = Case {
            n: 1,
            c: 13,
            h: 9,
            w: 9,
            m: 13,
            k: [3, 3],
            conv: conv(13, 1, [2; 4], 2),
            bias: true,
        };
        assert_eq!(
            check(&mut rng, &case, isa, false),
            Some(general_algo(isa, false))
        );
        let mut c = conv(1, 1, [1, 2, 0, 1], 1);
        c.strides = [1, 2];
        c.dilations = [2, 1];
        let case = Case {
            n: 2,
            c: 3,
            h: 13,
            w: 9,
            m: 5,
            k: [3, 5],
            conv: c,
            bias: false,
        };
        assert_eq!(
            check(&mut rng, &case, isa, false),
            Some(general_algo(isa, false))
        );
    }
    eprintln!("im2col: {runs} runs");
    assert!(runs > 100);
}

#[test]
fn winograd_paths() {
    let mut rng = Rng(2323);
    let mut runs = 0;
    for isa in host_isas() {
        for (i, &(h, w)) in HW.iter().chain(&[(48, 48), (35, 70)]).enumerate() {
            for (j, pads) in pad_variants(3).into_iter().enumerate() {
                let c = [16, 17, 32, 33][(i + j) % 4];
                let m = [8, 13, 64, 9][(i + 2 * j) % 4];
                let case = Case {
                    n: 1 + (i + j) % 2,
                    c,
                    h,
                    w,
                    m,
                    k: [3, 3],
                    conv: conv(1, 1, pads, 1),
                    bias: j % 2 == 0,
                };
                if let Some(a) = check(&mut rng, &case, isa, (i + j) % 3 == 0) {
                    let (oh, ow) = (h + pads[0] + pads[2] - 2, w + pads[1] + pads[3] - 2);
                    let want = winograd_algo(isa, oh, ow).unwrap_or(general_algo(isa, false));
                    assert!(a == want || a == gemv_algo(isa), "{a} for {h}x{w} {pads:?}");
                    runs += 1;
                }
            }
        }
    }
    eprintln!("winograd: {runs} runs");
    assert!(runs > 30);
}

#[test]
fn winograd_kernel_transform_matches_g_g_gt() {
    // U = G g Gt with G = [[1, 0, 0], [1/2, 1/2, 1/2], [1/2, -1/2, 1/2], [0, 0, 1]]
    let gm = [
        [1.0, 0.0, 0.0],
        [0.5, 0.5, 0.5],
        [0.5, -0.5, 0.5],
        [0.0, 0.0, 1.0],
    ];
    let mut rng = Rng(5);
    let g: Vec<f32> = (0..9).map(|_| rng.next()).collect();
    let packed = winograd::pack_weights(winograd::Tile::F23, &g, 1, 1);
    for i in 0..4 {
        for k in 0..4 {
            let mut u = 0.0f64;
            for y in 0..3 {
                for x in 0..3 {
                    u += gm[i][y] * g[y * 3 + x] as f64 * gm[k][x];
                }
            }
            // point i * 4 + k: one packed block of MR rows (row 0 is the kernel's)
            let got = packed[(i * 4 + k) * tiled::MR];
            assert!((got as f64 - u).abs() < 1e-6, "U[{i}][{k}] {got} vs {u}");
        }
    }
}

#[test]
fn activation_epilogue_every_algorithm() {
    let mut rng = Rng(4242);
    for isa in host_isas() {
        let cases = [
            Case {
                n: 1,
                c: 16,
                h: 7,
                w: 9,
                m: 16,
                k: [3, 3],
                conv: conv(16, 1, [1; 4], 1),
                bias: true,
            },
            Case {
                n: 1,
                c: 16,
                h: 13,
                w: 13,
                m: 16,
                k: [5, 5],
                conv: conv(16, 2, [2; 4], 1),
                bias: true,
            },
            Case {
                n: 1,
                c: 17,
                h: 5,
                w: 7,
                m: 3,
                k: [1, 1],
                conv: conv(1, 1, [0; 4], 1),
                bias: true,
            },
            Case {
                n: 2,
                c: 3,
                h: 9,
                w: 9,
                m: 16,
                k: [3, 3],
                conv: conv(1, 2, [1; 4], 1),
                bias: true,
            },
        ];
        for case in &cases {
            check(&mut rng, case, isa, true).unwrap();
        }
    }
    // built-in epilogues through `run` (the conv's own activation: the hinted vector forms
    // where an ISA has them, armv7), on a depthwise and a tiled (full and partial tiles) conv
    // (9x9 maps: AVX-512 depthwise as a flat stream; 16 wide: row tiles; stride 2: the
    // even/odd window tiles)
    let wd = rng.array(&[4, 1, 3, 3]);
    let wt = rng.array(&[9, 4, 3, 3]);
    for (h, w_in, s) in [(9, 9, 1), (5, 16, 1), (11, 21, 2)] {
        let x = rng.array(&[1, 4, h, w_in]);
        for (act, f) in [
            (Activation::Relu, (|v: f32| v.max(0.0)) as fn(f32) -> f32),
            (Activation::Clip(-0.1, 0.2), |v: f32| v.clamp(-0.1, 0.2)),
            (Activation::LeakyRelu(0.1), |v: f32| {
                if v >= 0.0 {
                    v
                } else {
                    0.1 * v
                }
            }),
            (Activation::HardSwish, |v: f32| {
                crate::ops::apply_activation(Activation::HardSwish, v)
            }),
        ] {
            for (group, w) in [(4, &wd), (1, &wt)] {
                let mut c = conv(group, s, [1; 4], 1);
                c.activation = Some(act);
                let b = rng.array(&[w.shape()[0]]);
                let plan = ConvF32::new(&c, w.view(), Some(b.view()), x.shape()).unwrap();
                let out = [1, w.shape()[0], (h - 1) / s + 1, (w_in - 1) / s + 1];
                let mut got = ArrayD::zeros(IxDyn(&out));
                plan.run(x.view(), got.view_mut(), &mut vec![]);
                let mut expect = ArrayD::zeros(IxDyn(&out));
                let ins = [x.view(), w.view(), b.view()];
                run_conv_with(&c, &ins, &mut expect.view_mut(), f).unwrap();
                for (a, e) in got.iter().zip(expect.iter()) {
                    assert!(
                        (a - e).abs() < 1e-5,
                        "{act:?} {}: {a} vs {e}",
                        plan.algorithm()
                    );
                }
            }
        }
    }
}

/// 1x1 convs read straight from `x` with their own activation (the fused microkernels), on
/// every ISA the host runs: few input channels (a job's weight blocks outermost over 16 tiles,
/// `run_direct_few_k`) and more, output channels filling and not filling the last 8-row block,
/// maps of one partial tile, of several jobs with a partial last job and tile, two images.
#[test]
fn direct_1x1_built_in_epilogues() {
    let mut rng = Rng(0x001d_1ec7);
    let mut runs = 0;
    for isa in host_isas() {
        for (c, m, h, w) in [
            (16, 64, 40, 41),
            (3, 9, 5, 5),
            (24, 72, 23, 24),
            (32, 17, 33, 31),
            (40, 24, 19, 20),
            (1, 8, 9, 70),
        ] {
            let mut cv = conv(1, 1, [0; 4], 1);
            cv.activation = Some([Activation::Relu, Activation::HardSwish][runs % 2]);
            let (x, wt, b) = (
                rng.array(&[2, c, h, w]),
                rng.array(&[m, c, 1, 1]),
                rng.array(&[m]),
            );
            let plan = ConvF32::with_isa(&cv, wt.view(), Some(b.view()), x.shape(), isa).unwrap();
            let out = [2, m, h, w];
            let mut got = ArrayD::from_elem(IxDyn(&out), f32::NAN);
            plan.run(x.view(), got.view_mut(), &mut vec![]);
            let mut expect = ArrayD::zeros(IxDyn(&out));
            let act = cv.activation.unwrap();
            let f = |v: f32| crate::ops::apply_activation(act, v);
            let ins = [x.view(), wt.view(), b.view()];
            run_conv_with(&cv, &ins, &mut expect.view_mut(), f).unwrap();
            let mag = expect.iter().fold(1.0f32, |a, &v| a.max(v.abs()));
            for (a, e) in got.iter().zip(expect.iter()) {
                assert!(
                    (a - e).abs() <= 1e-4 * mag,
                    "{act:?} {} ({}) c {c} m {m} {h}x{w}: {a} vs {e}",
                    plan.algorithm(),
                    isa.name()
                );
            }
            runs += 1;
        }
    }
    assert!(runs >= 6);
}

#[test]
fn non_contiguous_views_and_bad_plans() {
    let mut rng = Rng(99);
    let x = rng.array(&[1, 3, 8, 8]);
    let w = rng.array(&[4, 3, 3, 3]);
    let c = conv(1, 1, [1; 4], 1);
    let plan = ConvF32::new(&c, w.view(), None, &[1, 3, 8, 8]).unwrap();
    assert!(plan.isa().supported());
    let xt = x.clone().reversed_axes(); // [8, 8, 3, 1], strided
    let xt = xt.view().reversed_axes(); // back to [1, 3, 8, 8] via a non-standard view
    let mut y = ArrayD::zeros(IxDyn(&[1, 4, 8, 8]));
    let mut yt = ArrayD::zeros(IxDyn(&[8, 8, 4, 1]));
    plan.run(xt, yt.view_mut().reversed_axes(), &mut vec![]);
    let mut expect = ArrayD::zeros(IxDyn(&[1, 4, 8, 8]));
    run_conv_with(&c, &[x.view(), w.view()], &mut expect.view_mut(), |v| v).unwrap();
    plan.run(x.view(), y.view_mut(), &mut vec![]);
    let yt = yt.reversed_axes();
    for ((a, b), e) in y.iter().zip(yt.iter()).zip(expect.iter()) {
        assert!((a - e).abs() < 1e-4 && (b - e).abs() < 1e-4);
    }
    // invalid plans are errors, not panics
    assert!(ConvF32::new(&conv(2, 1, [0; 4], 1), w.view(), None, &[1, 3, 8, 8]).is_err());
    assert!(ConvF32::new(&conv(1, 1, [0; 4], 1), w.view(), None, &[1, 3, 2, 2]).is_err());
    assert!(ConvF32::new(&c, w.view(), Some(rng.array(&[3]).view()), &[1, 3, 8, 8]).is_err());
    assert!(ConvF32::new(&c, w.view(), None, &[3, 8, 8]).is_err());
}

/// Each host microkernel equals the portable one on random panels: every `kc` from 1 to 40
/// plus 288 (a 3x3 conv of 32 channels), panels `NR` wide and strided (a 1x1 read from `x`).
#[test]
fn tiled_microkernels_match_scalar() {
    use super::tiled::{gemm_f32_8x32_scalar, microkernel, MR, NR};
    let mut rng = Rng(31337);
    let kcs: Vec<usize> = (1..=40).chain([288]).collect();
    for isa in host_isas() {
        let Some((kern, name)) = microkernel(isa) else {
            continue;
        };
        for &kc in &kcs {
            for stride in [NR, NR + 13] {
                let w: Vec<f32> = (0..kc * MR).map(|_| rng.next()).collect();
                let panel: Vec<f32> = (0..kc * stride).map(|_| rng.next()).collect();
                let mut want = [[0.0f32; NR]; MR];
                let mut got = [[f32::NAN; NR]; MR];
                // SAFETY: panel holds kc rows of `stride >= NR` floats; w holds kc * MR.
                unsafe {
                    gemm_f32_8x32_scalar(kc, &w, panel.as_ptr(), stride, &mut want);
                    kern(kc, &w, panel.as_ptr(), stride, &mut got);
                }
                for (r, (gr, wr)) in got.iter().zip(&want).enumerate() {
                    for (j, (g, e)) in gr.iter().zip(wr).enumerate() {
                        assert!(
                            (g - e).abs() <= 1e-5 * (1.0 + kc as f32),
                            "{name} kc {kc} stride {stride} [{r}][{j}]: {g} vs {e}"
                        );
                    }
                }
            }
        }
    }
}

/// The AVX-512 microkernel on fewer rows (the pixel-row convs' blocks of 5 to 7 pixels) equals
/// the portable one on the same rows zero-padded to `MR`, and leaves the rows past `R` alone.
#[cfg(target_arch = "x86_64")]
#[test]
fn avx512_row_microkernels_match_scalar() {
    use super::tiled::{gemm_f32_8x32_scalar, gemm_f32_rx32_avx512, MR, NR};
    if !Isa::Avx512.supported() {
        eprintln!("avx512_row_microkernels_match_scalar: host has no AVX-512, not run");
        return;
    }
    fn check<const R: usize>(rng: &mut Rng, kc: usize) {
        let w: Vec<f32> = (0..kc * R).map(|_| rng.next()).collect();
        let mut w8 = vec![0.0f32; kc * MR];
        for (d, s) in w8.chunks_exact_mut(MR).zip(w.chunks_exact(R)) {
            d[..R].copy_from_slice(s);
        }
        let panel: Vec<f32> = (0..kc * NR).map(|_| rng.next()).collect();
        let mut want = [[0.0f32; NR]; MR];
        let mut got = [[f32::NAN; NR]; MR];
        // SAFETY: the panel holds kc rows of NR floats, w kc * R, w8 kc * MR; AVX-512 checked.
        unsafe {
            gemm_f32_8x32_scalar(kc, &w8, panel.as_ptr(), NR, &mut want);
            gemm_f32_rx32_avx512::<R>(kc, &w, panel.as_ptr(), NR, &mut got);
        }
        for (r, (gr, wr)) in got.iter().zip(&want).enumerate() {
            for (j, (g, e)) in gr.iter().zip(wr).enumerate() {
                let ok = if r < R {
                    (g - e).abs() <= 1e-5 * (1.0 + kc as f32)
                } else {
                    g.is_nan()
                };
                assert!(ok, "{R} rows kc {kc} [{r}][{j}]: {g} vs {e}");
            }
        }
    }
    let mut rng = Rng(4242);
    for kc in [1, 2, 7, 64, 97] {
        check::<5>(&mut rng, kc);
        check::<6>(&mut rng, kc);
        check::<7>(&mut rng, kc);
        check::<8>(&mut rng, kc);
    }
}

/// Each host microkernel with its own epilogue equals the portable microkernel followed by
/// bias, the activation and (every other case) a residual input, on every hint it has,
/// partial blocks (rows < MR) and partial tiles (nr < NR: masked stores on x86, only the
/// passes holding pixels on aarch64), and writes nothing outside its `rows x nr` block.
#[test]
fn fused_tiled_microkernels_match_scalar() {
    use super::tiled::{fused_microkernel, gemm_f32_8x32_scalar, TileDst, MR, NR};
    let mut rng = Rng(8081);
    let mut ran = 0;
    for isa in host_isas() {
        for (hint, a) in [
            (EpiHint::Identity, None),
            (EpiHint::Relu, Some(Activation::Relu)),
            (EpiHint::HardSwish, Some(Activation::HardSwish)),
        ] {
            let Some(kern) = fused_microkernel(isa, hint) else {
                continue;
            };
            ran += 1;
            for kc in (1..=40).chain([288]) {
                // every count of 8-pixel passes a partial tile runs (aarch64), either side of
                // each pass boundary
                for (rows, nr) in [
                    (MR, NR),
                    (3, NR),
                    (MR, 17),
                    (5, 1),
                    (1, 16),
                    (7, 31),
                    (MR, 8),
                    (2, 9),
                    (MR, 24),
                    (6, 25),
                ] {
                    let w: Vec<f32> = (0..kc * MR).map(|_| rng.next()).collect();
                    let stride = NR + 5;
                    let panel: Vec<f32> = (0..kc * stride).map(|_| rng.next()).collect();
                    let bias: Vec<f32> = (0..rows).map(|_| rng.next()).collect();
                    let mut acc = [[0.0f32; NR]; MR];
                    let rs = NR + 3;
                    let mut out = vec![f32::NAN; MR * rs];
                    let with_skip = (kc + nr) % 2 == 0;
                    let skip: Vec<f32> = (0..MR * rs).map(|_| rng.next()).collect();
                    // SAFETY: panel holds kc rows of `stride` floats, w kc * MR; `out` and
                    // `skip` hold MR rows of `rs >= nr` floats and `bias` `rows`.
                    unsafe {
                        gemm_f32_8x32_scalar(kc, &w, panel.as_ptr(), stride, &mut acc);
                        let d = TileDst {
                            dst: out.as_mut_ptr(),
                            rs,
                            bias: bias.as_ptr(),
                            rows,
                            nr,
                            skip: if with_skip {
                                skip.as_ptr()
                            } else {
                                std::ptr::null()
                            },
                        };
                        kern(kc, &w, panel.as_ptr(), stride, &d, hint);
                    }
                    for r in 0..MR {
                        for j in 0..rs {
                            let got = out[r * rs + j];
                            if r >= rows || j >= nr {
                                assert!(got.is_nan(), "{isa:?} {hint:?} wrote [{r}][{j}]");
                                continue;
                            }
                            let v = acc[r][j] + bias[r];
                            let mut want = a.map_or(v, |a| apply_activation(a, v));
                            if with_skip {
                                want += skip[r * rs + j];
                            }
                            assert!(
                                (got - want).abs() <= 1e-5 * (1.0 + kc as f32),
                                "{isa:?} {hint:?} kc {kc} skip {with_skip} [{r}][{j}]: {got} vs {want}"
                            );
                        }
                    }
                }
            }
        }
    }
    eprintln!("fused tiled microkernels checked: {ran} (ISA, activation) pairs");
}

/// Tiles that span several output rows, partial last tiles, batch > 1 and groups on the
/// tiled path, at sizes where a 32-pixel tile covers rows of 1 to 40 pixels.
#[test]
fn tiled_tiles_across_rows_and_batches() {
    let mut rng = Rng(2718);
    for isa in host_isas() {
        for (h, w) in [(3, 1), (4, 7), (6, 31), (2, 32), (5, 33), (3, 40), (17, 19)] {
            for (k, s, group, c, m) in [
                (3, 1, 1, 5, 9),
                (3, 2, 1, 4, 18),
                (1, 1, 1, 7, 17),
                (1, 2, 1, 6, 8),
                (3, 1, 2, 6, 10),
            ] {
                let case = Case {
                    n: 2,
                    c,
                    h,
                    w,
                    m,
                    k: [k, k],
                    conv: conv(group, s, [k / 2; 4], 1),
                    bias: true,
                };
                check(&mut rng, &case, isa, true).unwrap();
            }
        }
        // big enough to be staged in several bands, which start mid-row (75 % 32 != 0)
        let case = Case {
            n: 2,
            c: 12,
            h: 150,
            w: 149,
            m: 5,
            k: [3, 3],
            conv: conv(1, 2, [1, 1, 0, 1], 1),
            bias: true,
        };
        check(&mut rng, &case, isa, true).unwrap();
    }
}

/// Each host matrix-vector microkernel equals the portable one: every `kc` from 0 to 40 plus
/// 960 (MobileNetV3-L's classifier input).
#[test]
fn gemv_microkernels_match_scalar() {
    use super::gemv::{gemv_f32_16_scalar, microkernel, NB};
    let mut rng = Rng(4711);
    for isa in host_isas() {
        let (kern, name) = microkernel(isa);
        assert_eq!(name, gemv_algo(isa));
        for kc in (0..=40).chain([960]) {
            let w: Vec<f32> = (0..kc * NB).map(|_| rng.next()).collect();
            let x: Vec<f32> = (0..kc).map(|_| rng.next()).collect();
            let (mut want, mut got) = ([0.0f32; NB], [f32::NAN; NB]);
            // SAFETY: w holds kc * NB floats and x kc.
            unsafe {
                gemv_f32_16_scalar(kc, w.as_ptr(), x.as_ptr(), &mut want);
                kern(kc, w.as_ptr(), x.as_ptr(), &mut got);
            }
            for (r, (g, e)) in got.iter().zip(&want).enumerate() {
                assert!(
                    (g - e).abs() <= 1e-5 * (1.0 + kc as f32),
                    "{name} kc {kc} [{r}]: {g} vs {e}"
                );
            }
        }
    }
}

/// Convs with a 1x1 output on every path: a 1x1 map (squeeze-excite), a padded 3x3 on a 1x1
/// map, a 2x2 map reduced by a 2x2 kernel, groups, batches, channel counts around the
/// 16-channel block; and fully connected layers planned by [`ConvF32::linear`].
#[test]
fn gemv_paths_and_linear() {
    let mut rng = Rng(99);
    for isa in host_isas() {
        for (n, c, hw, m, k, group, pad) in [
            (1, 960, 1, 240, 1, 1, 0),
            (2, 17, 1, 15, 1, 1, 0),
            (1, 5, 1, 33, 3, 1, 1),
            (3, 8, 2, 16, 2, 1, 0),
            (2, 12, 1, 18, 1, 3, 0),
            (1, 1, 1, 1, 1, 1, 0),
        ] {
            let case = Case {
                n,
                c,
                h: hw,
                w: hw,
                m,
                k: [k, k],
                conv: conv(group, 1, [pad; 4], 1),
                bias: m % 2 == 1,
            };
            let a = check(&mut rng, &case, isa, true).unwrap();
            let dw = group == c && m == c;
            assert_eq!(
                a,
                if dw {
                    depthwise_generic_algo(isa, 1)
                } else {
                    gemv_algo(isa)
                }
            );
        }
    }
    for (rows, k, n) in [(1, 960, 1280), (3, 37, 21), (2, 1, 17), (5, 16, 16)] {
        let w: Vec<f32> = (0..n * k).map(|_| rng.next()).collect();
        let b: Vec<f32> = (0..n).map(|_| rng.next()).collect();
        let x = rng.array(&[rows, k]);
        let plan = ConvF32::linear(&w, n, k, &b, rows).unwrap();
        assert_eq!(plan.algorithm(), gemv_algo(crate::kernels::isa()));
        let mut y = ArrayD::from_elem(IxDyn(&[rows, n]), f32::NAN);
        plan.run_linear(x.view(), y.view_mut(), &mut vec![]);
        for r in 0..rows {
            for j in 0..n {
                let e: f32 = b[j] + (0..k).map(|i| x[[r, i]] * w[j * k + i]).sum::<f32>();
                let g = y[[r, j]];
                assert!(
                    (g - e).abs() <= 1e-4 * (1.0 + e.abs()),
                    "linear {rows}x{k}x{n} [{r}][{j}]: {g} vs {e}"
                );
            }
        }
    }
    assert!(ConvF32::linear(&[0.0; 5], 2, 3, &[0.0; 2], 1).is_err());
}

/// A host with fp16 arithmetic, or a note that the fp16 paths are skipped.
/// `SPECK_EXPECT_FP16=1` / `0` (scripts/test_arm.sh, per qemu CPU model) makes a detection
/// that disagrees a failure, so the NEON fp16 kernels cannot be skipped unnoticed.
fn fp16_host() -> bool {
    let ok = super::tiled_fp16::supported();
    match std::env::var("SPECK_EXPECT_FP16").as_deref() {
        Ok("1") => assert!(
            ok,
            "SPECK_EXPECT_FP16=1 but this CPU shows no fp16 arithmetic"
        ),
        Ok("0") => assert!(
            !ok,
            "SPECK_EXPECT_FP16=0 but this CPU shows fp16 arithmetic"
        ),
        _ => {}
    }
    if !ok {
        eprintln!("conv_f32 tests: no fp16 arithmetic on this host, NEON fp16 path skipped");
    }
    ok
}

/// Random binary16 values (bits) of magnitude below `scale`.
fn f16_bits(rng: &mut Rng, n: usize, scale: f32) -> Vec<u16> {
    (0..n)
        .map(|_| half::f16::from_f32(rng.next() * scale).to_bits())
        .collect()
}

/// The portable fp16 microkernel stays within binary16 rounding of the exact sum, and the
/// NEON one equals it bit for bit: every `kc` from 1 to 70 (across the 64-step chunk into
/// f32) plus 288 and 300, with large values (chunk sums near 1000).
#[test]
fn fp16_microkernel_matches_scalar() {
    use super::tiled::{MR, NR};
    use super::tiled_fp16::gemm_f16_8x32_scalar;
    let mut rng = Rng(16016);
    let run_neon = fp16_host();
    for kc in (1..=70).chain([288, 300]) {
        for scale in [1.0f32, 8.0] {
            let w = f16_bits(&mut rng, kc * MR, scale);
            let panel = f16_bits(&mut rng, kc * NR, scale);
            let mut want = [[f32::NAN; NR]; MR];
            gemm_f16_8x32_scalar(kc, &w, &panel, &mut want);
            let h = |b: u16| half::f16::from_bits(b).to_f64();
            for r in 0..MR {
                for j in 0..NR {
                    let (exact, mag) = (0..kc).fold((0.0f64, 0.0f64), |(s, m), k| {
                        let p = h(w[k * MR + r]) * h(panel[k * NR + j]);
                        (s + p, m + p.abs())
                    });
                    // each step rounds once to binary16 (half an ulp, 2^-11 relative) of a
                    // partial sum no larger than `mag`
                    let bound = kc.min(64) as f64 * mag * 2f64.powi(-11) + 1e-6;
                    let e = (want[r][j] as f64 - exact).abs();
                    assert!(e <= bound, "scalar kc {kc} [{r}][{j}]: err {e} > {bound}");
                }
            }
            if !run_neon {
                continue;
            }
            #[cfg(target_arch = "aarch64")]
            {
                let mut got = [[f32::NAN; NR]; MR];
                // SAFETY: fp16 present (checked); panel holds kc * NR, w kc * MR values.
                unsafe {
                    super::tiled_fp16::gemm_f16_8x32_neonfp16(kc, &w, panel.as_ptr(), &mut got)
                };
                for r in 0..MR {
                    for j in 0..NR {
                        assert!(
                            got[r][j].to_bits() == want[r][j].to_bits() || got[r][j] == want[r][j],
                            "gemm_f16_8x32_neonfp16 kc {kc} scale {scale} [{r}][{j}]: {} vs {}",
                            got[r][j],
                            want[r][j]
                        );
                    }
                }
            }
        }
    }
}

/// The NEON panel conversion rounds as `half` does (nearest even), special values included,
/// from panels `NR` wide and strided.
#[test]
fn fp16_panel_conversion_matches_half() {
    use super::tiled::NR;
    use super::tiled_fp16::panel_to_f16;
    let mut rng = Rng(65504);
    let specials = [
        0.0f32,
        -0.0,
        f32::INFINITY,
        f32::NEG_INFINITY,
        f32::NAN,
        65504.0,
        65520.0, // rounds to infinity
        1e9,
        6.0e-8,               // binary16 subnormal
        1e-10,                // below it: zero
        1.0 + 2f32.powi(-11), // a tie, to even
        1.0 + 3.0 * 2f32.powi(-11),
    ];
    for rows in [1, 2, 9, 27, 288] {
        for stride in [NR, NR + 7, 3 * NR, 0] {
            let mut src: Vec<f32> = (0..rows * stride.max(NR) + 5 * NR)
                .map(|_| rng.next() * 300.0)
                .collect();
            let len = src.len();
            for (i, &s) in specials.iter().enumerate() {
                src[(i * 5) % len] = s;
            }
            // rows `stride` apart, or (0) anywhere: overlapping, out of order, unaligned
            let offs: Vec<usize> = (0..rows)
                .map(|r| match stride {
                    0 => (r * 37 + 11) % (len - NR),
                    s => r * s,
                })
                .collect();
            let mut want = vec![0u16; rows * NR];
            panel_to_f16(&src, &offs, &mut want);
            for (r, row) in want.chunks_exact(NR).enumerate() {
                for (j, &b) in row.iter().enumerate() {
                    let v = src[offs[r] + j];
                    let back = half::f16::from_bits(b).to_f32();
                    assert!(
                        back.to_bits() == half::f16::from_f32(v).to_f32().to_bits(),
                        "portable conversion of {v}"
                    );
                }
            }
            #[cfg(target_arch = "aarch64")]
            {
                let mut got = vec![0xdeadu16 as u16; rows * NR];
                // SAFETY: src holds NR floats from each offset; got rows * NR.
                unsafe { super::tiled_fp16::panel_to_f16_neon(src.as_ptr(), &offs, &mut got) };
                for (i, (g, w)) in got.iter().zip(&want).enumerate() {
                    let nan = |b: u16| half::f16::from_bits(b).is_nan();
                    assert!(
                        g == w || (nan(*g) && nan(*w)),
                        "panel_to_f16_neon rows {rows} stride {stride} at {i}: {g:#06x} vs {w:#06x}"
                    );
                }
            }
        }
    }
}

/// Convs planned with `fp16`: on an fp16 host they take the fp16 kernel and stay within
/// binary16 rounding of the reference (3x3, strided, grouped, 1x1 direct and partial tiles,
/// batch 2); elsewhere `fp16` changes nothing (same kernel, same bits as without it).
#[test]
fn fp16_conv_paths() {
    let mut rng = Rng(0xf16);
    let fp16 = fp16_host();
    for isa in host_isas() {
        for (case, (h, w, k, s, group, c, m)) in [
            (13, 11, 3, 1, 1, 32, 32),
            (20, 33, 3, 1, 1, 17, 64),
            (9, 40, 3, 2, 1, 5, 18),
            (8, 8, 1, 1, 1, 17, 9),
            (3, 5, 1, 1, 1, 40, 8),
            (7, 9, 3, 1, 2, 6, 10),
            (12, 12, 3, 1, 1, 100, 3),
            (6, 7, 3, 1, 1, 24, 16), // below 8 x 8: F(2x2, 3x3) with fp16 products
        ]
        .into_iter()
        .enumerate()
        {
            // both activations the fp16 stores apply in NEON registers
            let act = [Activation::Relu, Activation::HardSwish][case % 2];
            let cv = Conv {
                activation: Some(act),
                ..conv(group, s, [k / 2; 4], 1)
            };
            let x = rng.array(&[2, c, h, w]);
            let wt = rng.array(&[m, c / group, k, k]);
            let b = rng.array(&[m]);
            let plan = |f16: bool| {
                ConvF32::with_options(&cv, wt.view(), Some(b.view()), x.shape(), isa, f16).unwrap()
            };
            let (p32, p16) = (plan(false), plan(true));
            let out = p32.out_shape(2).to_vec();
            let run = |p: &ConvF32| {
                let mut y = ArrayD::from_elem(IxDyn(&out), f32::NAN);
                p.run(x.view(), y.view_mut(), &mut vec![]);
                y
            };
            let (y32, y16) = (run(&p32), run(&p16));
            let fp16_path = fp16 && isa == Isa::Neon && cfg!(target_arch = "aarch64");
            let wino = winograd::applies([k, k], [s, s], [1, 1], group, c / group, m);
            // F(4x4, 3x3) keeps f32 products when fp16 is asked for: the same plan
            let f43 = p32.algorithm().starts_with("conv3x3s1_f32_winograd43");
            if !fp16_path || f43 {
                assert_eq!(p16.algorithm(), p32.algorithm(), "{isa:?}");
                assert!(
                    y16.iter()
                        .zip(&y32)
                        .all(|(a, b)| a.to_bits() == b.to_bits()),
                    "{isa:?}: fp16 plan without fp16 arithmetic changed the output"
                );
                continue;
            }
            // inputs rounded to binary16 (2^-11 relative each) and one rounding per step of
            // a sum of at most 64 products of magnitude below 1
            let kc = (c / group * k * k) as f32;
            let mut tol = kc * 2f32.powi(-10) + kc.min(64.0) * kc.sqrt() * 2f32.powi(-11);
            if act == Activation::HardSwish {
                // its slope reaches 1.5 (at 3)
                tol *= 1.5;
            }
            if wino {
                assert_eq!(p16.algorithm(), "conv3x3s1_f16_winograd23_8x32_neonfp16");
                // transformed patches up to 4x the inputs and weights up to 9/4x, rounded
                // in binary16, and the output transform summing nine sums
                tol *= 16.0;
            } else {
                assert_eq!(p16.algorithm(), "conv_f32_tiled_8x32_neonfp16");
            }
            let err = y16
                .iter()
                .zip(&y32)
                .fold(0.0f32, |a, (g, e)| a.max((g - e).abs()));
            assert!(
                err <= tol,
                "fp16 conv {act:?} x {:?} w {:?}: max err {err} > {tol}",
                x.shape(),
                wt.shape()
            );
            assert!(
                err > 0.0,
                "fp16 path gave f32-exact results: not running in fp16?"
            );
        }
    }
}

/// The staged packer's panels equal [`tiled::pack_tile`]'s (which reads the unpadded input),
/// lanes past a partial tile zero: strides 1 to 3, dilations, uneven padding, tiles across
/// rows, groups.
#[test]
fn staged_panels_equal_pack_tile() {
    use super::im2col::ColGeom;
    use super::tiled::{pack_tile, pack_tile_staged, stage_input, StagedBand, Staging, NR};
    let mut rng = Rng(4242);
    let mut tiles = 0;
    for (h, w) in [(1, 1), (5, 7), (9, 31), (4, 33), (13, 40), (2, 97)] {
        for (kh, kw) in [(1, 1), (3, 3), (1, 5), (5, 3)] {
            for (sh, sw) in [(1, 1), (2, 2), (1, 3), (3, 2)] {
                for (dh, dw) in [(1, 1), (2, 1)] {
                    for pads in [[0, 0, 0, 0], [1, 1, 1, 1], [2, 0, 1, 3]] {
                        let (cg, group) = (3, 2);
                        let ext = |n: usize, p: usize, k: usize, d: usize, s: usize| {
                            (n + p).checked_sub((k - 1) * d + 1).map(|v| v / s + 1)
                        };
                        let (Some(oh), Some(ow)) = (
                            ext(h, pads[0] + pads[2], kh, dh, sh),
                            ext(w, pads[1] + pads[3], kw, dw, sw),
                        ) else {
                            continue;
                        };
                        let g = ColGeom {
                            cg,
                            h,
                            w,
                            kh,
                            kw,
                            sh,
                            sw,
                            pt: pads[0],
                            pl: pads[1],
                            dh,
                            dw,
                            oh,
                            ow,
                        };
                        let x: Vec<f32> = (0..cg * group * h * w).map(|_| rng.next()).collect();
                        let c = cg * group;
                        // bands of one output row's reach up to the whole image
                        for budget in [1, 300, usize::MAX / 4] {
                            let st = Staging::with_budget(&g, c, budget);
                            let rows = cg * kh * kw;
                            let plane = g.sw * st.rows * st.cols;
                            let taps = st.taps(&g);
                            let mut staged = vec![f32::NAN; st.len(&g, c)];
                            for t0 in (0..(oh * ow).div_ceil(NR)).step_by(st.band) {
                                let r0 = st.first_row(&g, t0);
                                stage_input(&x, &g, c, &st, r0, &mut staged);
                                let band_end = ((t0 + st.band) * NR).min(oh * ow);
                                for gi in 0..group {
                                    let xg = &x[gi * cg * h * w..(gi + 1) * cg * h * w];
                                    for p0 in (t0 * NR..band_end).step_by(NR) {
                                        let nr = NR.min(oh * ow - p0);
                                        let mut want = vec![f32::NAN; rows * NR];
                                        pack_tile(xg, &g, p0, nr, &mut want);
                                        let mut got = vec![f32::NAN; (rows + 1) * NR];
                                        let band = StagedBand {
                                            data: &staged[gi * cg * plane..],
                                            taps: &taps,
                                            layout: &st,
                                            r0,
                                        };
                                        pack_tile_staged(&band, &g, p0, nr, &mut got);
                                        assert_eq!(
                                            &got[..rows * NR],
                                            &want[..],
                                            "{g:?} {st:?} tile {p0}"
                                        );
                                        tiles += 1;
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
    assert!(tiles > 1000, "{tiles} tiles");
}

/// A fused residual Add (`run_add`) equals the reference conv plus its skip input, after the
/// conv's own activation, on every algorithm the host's ISAs plan: depthwise, matrix-vector,
/// tiled (staged, direct, few input channels, partial tiles of up to 16 and of 17+ pixels),
/// pixel rows, Winograd, and the `gemm` crate's; with and without bias. A plan with a residual
/// Add refuses to run without its input, and one without refuses one.
#[test]
fn residual_add_every_algorithm() {
    let mut rng = Rng(9090);
    // (n, c, h, w, m, k, group, stride, pad, activation, bias)
    type Shape = (
        usize,
        usize,
        usize,
        usize,
        usize,
        usize,
        usize,
        usize,
        usize,
    );
    let cases: [(Shape, Option<Activation>, bool); 11] = [
        ((1, 8, 9, 9, 8, 3, 8, 1, 1), Some(Activation::Relu), true), // depthwise
        ((2, 40, 1, 1, 24, 1, 1, 1, 0), None, true),                 // 1x1 output
        ((1, 16, 28, 28, 24, 1, 1, 1, 0), None, false),              // direct, few k, 16-pixel tail
        (
            (1, 72, 14, 14, 40, 1, 1, 1, 0),
            Some(Activation::HardSwish),
            true,
        ), // direct, 4-pixel tail
        ((1, 96, 7, 7, 64, 1, 1, 1, 0), None, true),                 // pixel rows (AVX-512)
        (
            (1, 24, 12, 12, 16, 3, 1, 1, 1),
            Some(Activation::Relu),
            true,
        ), // Winograd
        (
            (2, 5, 11, 13, 9, 3, 1, 2, 1),
            Some(Activation::Sigmoid),
            false,
        ), // staged tiles
        (
            (1, 64, 5, 5, 70, 1, 1, 1, 0),
            Some(Activation::HardSwish),
            true,
        ), // 17+ pixel tile
        ((1, 6, 8, 8, 4, 3, 2, 1, 0), None, true),                   // grouped
        ((1, 4, 6, 7, 4, 1, 1, 1, 0), None, false),
        ((1, 4, 6, 7, 4, 1, 1, 1, 0), Some(Activation::Relu), true),
    ];
    let mut algos = std::collections::BTreeSet::new();
    for isa in host_isas() {
        for &((n, c, h, w, m, k, group, s, p), activation, bias) in &cases {
            let mut cv = conv(group, s, [p; 4], 1);
            cv.activation = activation;
            cv.residual = true;
            let x = rng.array(&[n, c, h, w]);
            let wt = rng.array(&[m, c / group, k, k]);
            let b = rng.array(&[m]);
            let bv = bias.then(|| b.view());
            let plan = ConvF32::with_isa(&cv, wt.view(), bv, x.shape(), isa).unwrap();
            let out = plan.out_shape(n);
            // the conv's own input as its skip where the shapes allow (a residual block)
            let skip = if x.shape() == out {
                x.clone()
            } else {
                rng.array(&out)
            };
            let mut inputs = vec![x.view(), wt.view()];
            if bias {
                inputs.push(b.view());
            }
            inputs.push(skip.view());
            let mut expect = ArrayD::zeros(IxDyn(&out));
            crate::ops::run_conv(&cv, &inputs, &mut expect.view_mut()).unwrap();
            let mut got = ArrayD::from_elem(IxDyn(&out), f32::NAN);
            plan.run_add(x.view(), Some(skip.view()), got.view_mut(), &mut vec![]);
            let err = expect
                .iter()
                .zip(got.iter())
                .fold(0.0f32, |a, (e, g)| a.max((e - g).abs()));
            let name = plan.algorithm();
            assert!(
                err <= 1e-4 * (1.0 + c as f32),
                "{name} ({}) max err {err}",
                isa.name()
            );
            algos.insert(name);
            let without = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                plan.run(x.view(), got.view_mut(), &mut vec![])
            }));
            assert!(without.is_err(), "{name} ran without its residual input");
        }
    }
    eprintln!("residual Add checked on: {algos:?}");
    let families = ["dwconv", "gemv", "tiled", "gemm"];
    for f in families {
        assert!(
            algos.iter().any(|a| a.contains(f)),
            "no {f} plan in {algos:?}"
        );
    }
    if Isa::Avx512.supported() || cfg!(target_arch = "aarch64") {
        assert!(algos.iter().any(|a| a.contains("winograd")), "{algos:?}");
    }
    if Isa::Avx512.supported() {
        assert!(algos.iter().any(|a| a.contains("pixelrows")), "{algos:?}");
    }
}
