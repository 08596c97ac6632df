//! Planned quantized convolutions (every algorithm, every level the host runs) against the
//! direct reference loop, and the element-wise kernels against their definitions.

use super::conv::{self, conv_direct, ConvQs8};
use super::gemm::EpiMode;
use super::*;
use crate::ops::{apply_activation, Activation, Conv, QConv, QConvOut, QResidual, QType, QWeights};

/// xorshift, fixed seeds.
pub struct Rng(pub u32);

impl Rng {
    /// next value
    pub fn next(&mut self) -> u32 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 17;
        self.0 ^= self.0 << 5;
        self.0
    }
    /// random bytes
    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

#[allow(clippy::too_many_arguments)]
fn qconv(
    rng: &mut Rng,
    m: usize,
    c: usize,
    group: usize,
    k: usize,
    s: usize,
    pad: usize,
    out: QConvOut,
    zx: i32,
) -> QConv {
    let cg = c / group;
    QConv {
        conv: Conv {
            group,
            strides: [s, s],
            pads: [pad; 4],
            dilations: [1, 1],
            activation: None,
            residual: false,
        },
        weights: QWeights::Onnx(
            rng.bytes(m * cg * k * k)
                .into_iter()
                .map(|v| v as i8)
                .collect(),
        ),
        w_shape: [m, cg, k, k],
        w_scale: (0..m).map(|i| 0.001 + i as f32 * 1e-4).collect(),
        bias: (0..m).map(|_| rng.next() as i32 % 4000).collect(),
        input: QType {
            scale: 0.02,
            zero_point: zx,
            signed: false,
        },
        out,
        lut: None,
        residual: None,
    }
}

#[test]
fn planned_convs_match_the_direct_reference() {
    let mut rng = Rng(4242);
    // (every ISA's planned conv: on aarch64 the NEON and dot-product GEMM and depthwise paths)
    let levels = [
        Level::Scalar,
        Level::Avx2,
        Level::Avx512Vnni,
        Level::Neon,
        Level::NeonDot,
    ];
    // (m, c, group, k, stride, pad, h, w, dilation)
    let cases = [
        (17, 13, 1, 1, 1, 0, 5, 7, 1),     // 1x1 gemm
        (16, 63, 1, 1, 1, 0, 3, 3, 1),     // 1x1, K 63
        (5, 3, 1, 3, 2, 1, 9, 11, 1),      // im2col (first conv)
        (8, 6, 1, 3, 1, 1, 4, 5, 1),       // im2col padded
        (20, 20, 20, 3, 1, 1, 7, 9, 1),    // depthwise 3x3
        (17, 17, 17, 5, 2, 2, 9, 8, 1),    // depthwise 5x5 s2
        (12, 12, 4, 3, 1, 1, 5, 5, 1),     // grouped: im2col per group
        (7, 2, 1, 3, 1, 1, 6, 7, 1),       // im2col, 6-byte tap rows
        (9, 32, 1, 3, 1, 1, 6, 7, 1),      // im2col, 96-byte tap rows (16-byte words)
        (5, 31, 1, 3, 2, 1, 7, 6, 1),      // im2col, 93-byte tap rows (last word overlaps)
        (5, 90, 1, 3, 2, 1, 5, 6, 1),      // im2col, 270-byte tap rows (a memcpy)
        (9, 8, 1, 3, 1, 1, 13, 12, 1),     // 156 pixels: float outputs in several blocks
        (131, 131, 131, 3, 1, 1, 6, 9, 1), // depthwise wide enough for 64-lane kernels
        (16, 3, 1, 3, 1, 1, 31, 30, 1),    // im2col in two chunks, the boundary mid-row
        (6, 3, 1, 3, 2, 0, 47, 52, 1),     // im2col, no padding: every column interior
        (5, 4, 1, 2, 1, 0, 33, 25, 1),     // im2col, even kernel (K 16, no k4 padding)
        (7, 5, 1, 3, 1, 2, 17, 13, 2),     // im2col, dilation 2
        (24, 24, 24, 3, 1, 2, 9, 11, 2),   // depthwise, dilation 2
        // enough work to split over threads (gemm::PAR_MIN_MACS_PER_TASK), at 2 threads
        (40, 40, 40, 3, 1, 1, 70, 50, 1), // depthwise, rows in parallel
        (64, 72, 1, 1, 1, 0, 16, 15, 1),  // 1x1 gemm, rows in parallel
    ];
    for &(m, c, group, k, s, pad, h, w, dil) in &cases {
        for &zx in &[0, 128, 255] {
            let outs = [
                QConvOut::Quant {
                    q: QType {
                        scale: 0.05,
                        zero_point: 3,
                        signed: false,
                    },
                    lo: 0,
                    hi: 255,
                },
                QConvOut::Quant {
                    q: QType {
                        scale: 0.1,
                        zero_point: 128,
                        signed: true,
                    },
                    lo: 128,
                    hi: 255,
                },
                QConvOut::Float { activation: None },
                QConvOut::Float {
                    activation: Some(Activation::HardSwish),
                },
            ];
            for out in outs {
                let mut q = qconv(&mut rng, m, c, group, k, s, pad, out, zx);
                q.conv.dilations = [dil, dil];
                let x = rng.bytes(h * w * c + 64);
                let span = dil * (k - 1) + 1;
                let oh = (h + 2 * pad - span) / s + 1;
                let ow = (w + 2 * pad - span) / s + 1;
                let float = matches!(out, QConvOut::Float { .. });
                let (mode, scale): (EpiMode, Vec<f32>) = match out {
                    QConvOut::Quant { q: o, lo, hi } => (
                        EpiMode::Quant {
                            zp: o.zero_point,
                            lo: lo as i32,
                            hi: hi as i32,
                        },
                        q.w_scale
                            .iter()
                            .map(|&sw| q.input.scale * sw / o.scale)
                            .collect(),
                    ),
                    QConvOut::Float { .. } => (
                        EpiMode::Float,
                        q.w_scale.iter().map(|&sw| q.input.scale * sw).collect(),
                    ),
                };
                let elem = if float { 4 } else { 1 };
                let mut want = vec![0u8; oh * ow * m * elem];
                conv_direct(&q, &q.bias, &scale, mode, [h, w, c], &x, &mut want);
                if float {
                    // the planned conv writes NCHW f32
                    let nhwc: Vec<f32> = want
                        .chunks(4)
                        .map(|b| f32::from_ne_bytes(b.try_into().unwrap()))
                        .collect();
                    let mut nchw = vec![0f32; nhwc.len()];
                    let act = match out {
                        QConvOut::Float { activation } => activation,
                        _ => None,
                    };
                    for p in 0..oh * ow {
                        for mm in 0..m {
                            let v = nhwc[p * m + mm];
                            nchw[mm * oh * ow + p] = act.map_or(v, |a| apply_activation(a, v));
                        }
                    }
                    want = nchw.iter().flat_map(|v| v.to_ne_bytes()).collect();
                } else if zx == 128 {
                    // a lookup table fused into the epilogue: the same bytes mapped through it
                    let table = rng.bytes(256);
                    want.iter_mut().for_each(|v| *v = table[*v as usize]);
                    q.lut = Some(table);
                }
                // and once more with a residual Add fused after it (zx 128: after the table)
                let mut runs = vec![(q.clone(), vec![], want.clone())];
                if let (QConvOut::Quant { q: qc, .. }, true) = (out, zx != 0) {
                    let skip = rng.bytes(want.len());
                    let r = QResidual {
                        skip: QType {
                            scale: 0.07,
                            zero_point: 100,
                            signed: false,
                        },
                        out: QType {
                            scale: 0.09,
                            zero_point: 60,
                            signed: false,
                        },
                    };
                    let sum: Vec<u8> = want
                        .iter()
                        .zip(&skip)
                        .map(|(&v, &k)| {
                            onnx_quantize(r.out, qc.dequantize(v) + r.skip.dequantize(k))
                        })
                        .collect();
                    let mut qr = q.clone();
                    qr.residual = Some(r);
                    runs.push((qr, skip, sum));
                }
                for (q, skip, want) in &runs {
                    // GEMM convs also from the packed form a compiled model loads (checked by
                    // `PackedB::from_packed`), on every other level
                    let packed = match &q.weights {
                        QWeights::Onnx(wt) if !conv::is_depthwise(q.w_shape, group) => {
                            let groups: Vec<_> = conv::pack_gemm_groups(wt, q.w_shape, group)
                                .into_iter()
                                .map(|p| gemm::PackedB::from_packed(p.data, p.n, p.k).unwrap())
                                .collect();
                            Some(QConv {
                                weights: QWeights::GemmPacked(groups.into()),
                                ..q.clone()
                            })
                        }
                        _ => None,
                    };
                    for (li, &level) in levels.iter().enumerate() {
                        if !level.supported() {
                            eprintln!("skipped level {level:?}");
                            continue;
                        }
                        let q = packed.as_ref().filter(|_| li % 2 == 1).unwrap_or(q);
                        let plan = ConvQs8::new(q, &[1, c, h, w], level).unwrap();
                        let mut scratch = vec![0f32; plan.scratch_len()];
                        let mut got = vec![0u8; want.len()];
                        // rayon over output tiles: 1, 2 and 4 threads give the same bytes
                        let threads = [1, 2, 4][(m + zx as usize + skip.len() % 2) % 3];
                        let pool = rayon::ThreadPoolBuilder::new()
                            .num_threads(threads)
                            .build()
                            .unwrap();
                        let fused = !skip.is_empty();
                        // (an address: raw pointers do not cross into the pool)
                        let skip_at = if fused { skip.as_ptr() as usize } else { 0 };
                        pool.install(|| unsafe {
                            let skip = skip_at as *const u8;
                            plan.run(x.as_ptr(), skip, got.as_mut_ptr(), &mut scratch)
                        });
                        assert_eq!(
                            &got,
                            want,
                            "{} {:?} case {:?} zx {zx} residual {}",
                            plan.algorithm(),
                            level,
                            (m, c, group, k, s, pad, h, w, dil),
                            fused
                        );
                    }
                }
            }
        }
    }
}

#[test]
fn elementwise_kernels_follow_their_definitions() {
    use super::elementwise::*;
    let qa = QType {
        scale: 0.03,
        zero_point: 10,
        signed: false,
    };
    let qb = QType {
        scale: 0.07,
        zero_point: 128,
        signed: true,
    };
    let qo = QType {
        scale: 0.05,
        zero_point: 100,
        signed: false,
    };
    let mut rng = Rng(5);
    // [1, 3, 2, 2] NCHW -> NHWC round trip
    let x: Vec<f32> = (0..12).map(|i| i as f32 * 0.1 - 0.5).collect();
    let mut q = vec![0u8; 12];
    quantize(Level::Scalar, qo, &[1, 3, 2, 2], &x, &mut q);
    assert_eq!(q[1], qo.quantize(x[4])); // pixel 0, channel 1
    let mut back = vec![0f32; 12];
    dequantize(Level::Scalar, qo, &[1, 3, 2, 2], &q, &mut back);
    for (a, b) in x.iter().zip(&back) {
        assert!((a - b).abs() <= qo.scale / 2.0 + 1e-6);
    }
    // per-channel Mul: a [1,3,2,2] NHWC, b [1,3,1,1]
    let a = rng.bytes(12);
    let b = rng.bytes(3);
    let mut y = vec![0u8; 12];
    binary(
        Level::Scalar,
        crate::ops::QBinaryKind::Mul,
        qa,
        qb,
        qo,
        3,
        true,
        &a,
        &b,
        &mut y,
    );
    for i in 0..12 {
        assert_eq!(
            y[i],
            qo.quantize(qa.dequantize(a[i]) * qb.dequantize(b[i % 3]))
        );
    }
    // global average pool
    let mut g = vec![0u8; 3];
    global_average_pool(Level::Scalar, qa, qo, 1, 4, 3, &a, &mut g);
    for ch in 0..3 {
        let mean: f32 = (0..4).map(|p| qa.dequantize(a[p * 3 + ch])).sum::<f32>() / 4.0;
        assert!((qo.dequantize(g[ch]) - mean).abs() <= qo.scale * 0.51);
    }
    // every level: the integer sum's mean, on odd sizes and batches
    // (past 256 pixels: the NEON kernel's u16 sums are widened in runs; it sums four pixels a
    // step, so pixel counts with every remainder mod 4)
    for (n, hw, c) in [
        (2, 37, 19),
        (1, 49, 960),
        (1, 1, 5),
        (3, 200, 72),
        (1, 700, 40),
        (1, 259, 33),
        (2, 6, 16),
    ] {
        let x = rng.bytes(n * hw * c);
        let want: Vec<u8> = (0..n * c)
            .map(|i| {
                let (b, ch) = (i / c, i % c);
                let s: i64 = (0..hw).map(|p| x[(b * hw + p) * c + ch] as i64).sum();
                let mean =
                    (s - qa.zero_point as i64 * hw as i64) as f64 * qa.scale as f64 / hw as f64;
                qo.quantize(mean as f32)
            })
            .collect();
        for level in [
            Level::Scalar,
            Level::Avx2,
            Level::Avx512Vnni,
            Level::Neon,
            Level::NeonDot,
        ] {
            if !level.supported() {
                continue;
            }
            let mut got = vec![0u8; n * c];
            global_average_pool(level, qa, qo, n, hw, c, &x, &mut got);
            assert_eq!(got, want, "{level:?} {n} {hw} {c}");
        }
    }
    // concat on channels: [1,2,1,2] + [1,1,1,2] -> [1,3,1,2]
    let x1 = rng.bytes(4);
    let x2 = rng.bytes(2);
    let mut y = vec![0u8; 6];
    concat(
        1,
        &[vec![1, 2, 1, 2], vec![1, 1, 1, 2]],
        &[qo, qa],
        qo,
        &[&x1, &x2],
        &mut y,
    );
    assert_eq!(&y[0..2], &x1[0..2]);
    assert_eq!(y[2], qo.quantize(qa.dequantize(x2[0])));
    assert_eq!(&y[3..5], &x1[2..4]);
}

#[test]
fn layout_conversions_match_the_per_element_definition_on_odd_shapes() {
    use super::elementwise::{dequantize, quantize};
    let q = QType {
        scale: 0.07,
        zero_point: 121,
        signed: true,
    };
    let mut rng = Rng(17);
    // Pixel counts below, at and across the 64-pixel block; 1 and many channels; batches.
    for shape in [
        [1, 1, 5, 7],
        [2, 3, 1, 1],
        [1, 5, 8, 8],
        [2, 7, 9, 13],
        [1, 33, 11, 17],
        [1, 3, 9, 10],
        [2, 3, 13, 11],
        [2, 4, 7, 11],
        [1, 3, 12, 12], // two blocks of 64 pixels and a ragged one, 16-pixel steps
        [2, 48, 5, 7],  // whole 16 x 16 tiles and ragged pixels
        [1, 16, 4, 4],
        [1, 32, 9, 9],  // two tile columns, a ragged pixel block
        [2, 19, 8, 10], // a tile column and 3 ragged channels
        [2, 8, 7, 11],  // 8 channels (their own paths): 32-pixel steps and ragged pixels
        [1, 8, 12, 12], // 8 channels, a last block of 16 pixels
        [1, 4, 9, 9],   // 4 channels, 16-pixel steps and ragged pixels
    ] {
        let (n, c, hw) = (shape[0], shape[1], shape[2] * shape[3]);
        let len = n * c * hw;
        let x: Vec<f32> = (0..len)
            .map(|_| (rng.next() as f32 / u32::MAX as f32 - 0.5) * 300.0 * q.scale)
            .collect();
        for level in [Level::Scalar, Level::Neon, Level::Avx2, Level::Avx512Vnni] {
            if !level.supported() {
                continue;
            }
            let mut y = vec![0u8; len];
            quantize(level, q, &shape, &x, &mut y);
            for b in 0..n {
                for ch in 0..c {
                    for p in 0..hw {
                        let (i, o) = ((b * c + ch) * hw + p, (b * hw + p) * c + ch);
                        assert_eq!(y[o], onnx_quantize(q, x[i]), "{shape:?} {level:?} {i}");
                    }
                }
            }
        }
        let bytes = rng.bytes(len);
        for level in [Level::Scalar, Level::Neon, Level::Avx2, Level::Avx512Vnni] {
            if !level.supported() {
                continue;
            }
            let mut back = vec![0f32; len];
            dequantize(level, q, &shape, &bytes, &mut back);
            for b in 0..n {
                for ch in 0..c {
                    for p in 0..hw {
                        let (i, o) = ((b * c + ch) * hw + p, (b * hw + p) * c + ch);
                        assert_eq!(back[i], q.dequantize(bytes[o]), "{shape:?} {level:?} {i}");
                    }
                }
            }
        }
    }
}

/// ONNX QuantizeLinear written the slow, obvious way (libm rounding, NaN -> 0 as `as u8` does).
fn onnx_quantize(q: QType, x: f32) -> u8 {
    ((x / q.scale).round_ties_even() + q.zero_point as f32).clamp(0.0, 255.0) as u8
}

#[test]
fn elementwise_rows_match_the_onnx_definition_on_every_level() {
    use super::elementwise::*;
    let qs = [
        QType {
            scale: 0.03,
            zero_point: 10,
            signed: false,
        },
        QType {
            scale: 0.5,
            zero_point: 128,
            signed: true,
        },
        QType {
            scale: 1.0 / 255.0,
            zero_point: 0,
            signed: false,
        },
    ];
    let mut rng = Rng(11);
    for level in [Level::Scalar, Level::Neon, Level::Avx2, Level::Avx512Vnni] {
        if !level.supported() {
            eprintln!("skipping {level:?}: the host does not run it");
            continue;
        }
        for len in [1usize, 7, 16, 33, 257] {
            for (i, &qo) in qs.iter().enumerate() {
                let (qa, qb) = (qs[(i + 1) % 3], qs[(i + 2) % 3]);
                // Exact ties (k + 0.5 steps), out-of-range values, infinities and NaN.
                let x: Vec<f32> = (0..len)
                    .map(|j| match rng.next() % 8 {
                        0 => ((rng.next() % 600) as f32 - 300.0 + 0.5) * qo.scale,
                        1 => f32::NAN,
                        2 => f32::INFINITY * if j % 2 == 0 { 1.0 } else { -1.0 },
                        3 => (rng.next() as f32 / u32::MAX as f32 - 0.5) * 1e9,
                        _ => (rng.next() as f32 / u32::MAX as f32 - 0.5) * 300.0 * qo.scale,
                    })
                    .collect();
                let mut y = vec![0u8; len];
                quantize_row(level, qo, &x, &mut y);
                for (j, (&v, &o)) in x.iter().zip(&y).enumerate() {
                    assert_eq!(o, onnx_quantize(qo, v), "{level:?} quantize x[{j}] = {v}");
                }
                let (a, b) = (rng.bytes(len), rng.bytes(len));
                add_row(level, qa, qb, qo, &a, &b, &mut y);
                let mut in_place = a.clone();
                add_row_in_place(level, qa, qb, qo, &b, &mut in_place);
                for j in 0..len {
                    let want = onnx_quantize(qo, qa.dequantize(a[j]) + qb.dequantize(b[j]));
                    assert_eq!(y[j], want, "{level:?} add at {j}, len {len}");
                    assert_eq!(
                        in_place[j], want,
                        "{level:?} in-place add at {j}, len {len}"
                    );
                }
                mul_row(level, qa, qb, qo, &a, &b, &mut y);
                for j in 0..len {
                    let want = onnx_quantize(qo, qa.dequantize(a[j]) * qb.dequantize(b[j]));
                    assert_eq!(y[j], want, "{level:?} mul at {j}, len {len}");
                }
                // Per-channel: len pixels of 5 and 21 channels (vector steps and a ragged rest).
                for ch in [5, 21] {
                    let bt: Vec<f32> = rng.bytes(ch).iter().map(|&v| qb.dequantize(v)).collect();
                    let a = rng.bytes(len * ch);
                    let mut y = vec![0u8; len * ch];
                    for mul in [false, true] {
                        binary_channels_rows(level, mul, qa, qo, &bt, &a, &mut y);
                        for j in 0..len * ch {
                            let (x, z) = (qa.dequantize(a[j]), bt[j % ch]);
                            let want = onnx_quantize(qo, if mul { x * z } else { x + z });
                            assert_eq!(y[j], want, "{level:?} channels {ch} mul={mul} at {j}");
                        }
                    }
                }
            }
        }
    }
}

#[test]
fn odd_zero_points_and_huge_scales_keep_the_row_definitions() {
    // (no model's 8-bit parameters make one, but QType allows it: the vector kernels that
    // subtract zero points as bytes must not run on it)
    use super::elementwise::*;
    let odd = QType {
        scale: 0.04,
        zero_point: -7,
        signed: false,
    };
    let qo = QType {
        scale: 0.06,
        zero_point: 140,
        signed: false,
    };
    let mut rng = Rng(5);
    let (a, b) = (rng.bytes(37), rng.bytes(37));
    let bt: Vec<f32> = (0..37).map(|i| i as f32 * 0.1 - 1.5).collect();
    for level in [Level::Scalar, Level::Neon, Level::Avx2, Level::Avx512Vnni] {
        if !level.supported() {
            continue;
        }
        let mut y = vec![0u8; 37];
        // (and scales so large that sums and products overflow to infinities and NaN: the
        // NEON rows then keep their NaN clamp)
        let huge = QType {
            scale: 3e37,
            zero_point: 128,
            signed: false,
        };
        for (qa, qb) in [(odd, qo), (huge, huge), (huge, qo)] {
            add_row(level, qa, qb, qo, &a, &b, &mut y);
            for j in 0..37 {
                let want = onnx_quantize(qo, qa.dequantize(a[j]) + qb.dequantize(b[j]));
                assert_eq!(y[j], want, "{level:?} add at {j}");
            }
            mul_row(level, qa, qb, qo, &a, &b, &mut y);
            for j in 0..37 {
                let want = onnx_quantize(qo, qa.dequantize(a[j]) * qb.dequantize(b[j]));
                assert_eq!(y[j], want, "{level:?} mul at {j}");
            }
        }
        binary_channels_rows(level, true, huge, qo, &bt, &a, &mut y);
        for j in 0..37 {
            assert_eq!(
                y[j],
                onnx_quantize(qo, huge.dequantize(a[j]) * bt[j]),
                "{level:?}"
            );
        }
        binary_channels_rows(level, true, odd, qo, &bt, &a, &mut y);
        for j in 0..37 {
            assert_eq!(
                y[j],
                onnx_quantize(qo, odd.dequantize(a[j]) * bt[j]),
                "{level:?}"
            );
        }
        // 17 NHWC pixels of 16 channels: a whole register tile and a ragged pixel
        let x = rng.bytes(16 * 17);
        let mut f = vec![0f32; 16 * 17];
        dequantize(level, odd, &[1, 16, 17, 1], &x, &mut f);
        for (j, &v) in x.iter().enumerate() {
            let (p, ch) = (j / 16, j % 16);
            assert_eq!(
                f[ch * 17 + p],
                odd.dequantize(v),
                "{level:?} dequantize at {j}"
            );
        }
    }
}

#[test]
fn a_fused_table_must_have_256_entries_and_a_stored_output() {
    let mut rng = Rng(7);
    let quant = QConvOut::Quant {
        q: QType {
            scale: 0.05,
            zero_point: 3,
            signed: false,
        },
        lo: 0,
        hi: 255,
    };
    let mut q = qconv(&mut rng, 4, 4, 1, 1, 1, 0, quant, 0);
    q.lut = Some(vec![0; 255]);
    assert!(ConvQs8::new(&q, &[1, 4, 3, 3], Level::Scalar).is_err());
    q.lut = Some(vec![0; 256]);
    assert!(ConvQs8::new(&q, &[1, 4, 3, 3], Level::Scalar).is_ok());
    q.out = QConvOut::Float { activation: None };
    assert!(ConvQs8::new(&q, &[1, 4, 3, 3], Level::Scalar).is_err());
}

/// NCHW index -> stored NHWC index.
fn nhwc_index(shape: &[usize], i: usize) -> usize {
    let (c, hw) = (shape[1], shape[2] * shape[3]);
    let (b, ch, p) = (i / (c * hw), i / hw % c, i % hw);
    (b * hw + p) * c + ch
}

#[test]
fn int8_resize_in_the_stored_layout_matches_dequantize_resize_quantize() {
    use crate::ops::{CoordTransform, Int8Op, NearestRounding, Op, QOp, Resize, ResizeMode};
    use ndarray::{ArrayD, IxDyn};
    let qi = QType {
        scale: 0.05,
        zero_point: 120,
        signed: false,
    };
    let qo = QType {
        scale: 0.07,
        zero_point: 131,
        signed: false,
    };
    let nearest = ResizeMode::Nearest(NearestRounding::Floor);
    let mut rng = Rng(23);
    // (mode, transform, input NCHW, output H, W)
    let cases = [
        (nearest, CoordTransform::Asymmetric, [2, 3, 5, 7], 10, 14),
        (nearest, CoordTransform::Asymmetric, [1, 9, 3, 3], 12, 12),
        (nearest, CoordTransform::Asymmetric, [1, 4, 6, 6], 6, 6),
        (
            ResizeMode::Linear,
            CoordTransform::AlignCorners,
            [1, 5, 4, 5],
            8,
            10,
        ),
        (
            ResizeMode::Linear,
            CoordTransform::HalfPixel,
            [2, 8, 3, 6],
            6,
            12,
        ),
    ];
    for (mode, transform, shape, oh, ow) in cases {
        let out_shape = vec![shape[0], shape[1], oh, ow];
        let r = Resize {
            mode,
            transform,
            scales: vec![
                1.0,
                1.0,
                oh as f32 / shape[2] as f32,
                ow as f32 / shape[3] as f32,
            ],
            out_shape: out_shape.clone(),
        };
        let (n_in, n_out) = (shape.iter().product::<usize>(), out_shape.iter().product());
        let nchw = rng.bytes(n_in);
        // the definition, in NCHW floats
        let xf = ArrayD::from_shape_vec(
            IxDyn(&shape),
            nchw.iter().map(|&v| qi.dequantize(v)).collect(),
        )
        .unwrap();
        let mut yf = ArrayD::zeros(IxDyn(&out_shape));
        Op::Resize(r.clone())
            .run_reference(&[xf.view()], &mut [yf.view_mut()])
            .unwrap();
        let mut want = vec![0u8; n_out];
        for (i, &v) in yf.iter().enumerate() {
            want[nhwc_index(&out_shape, i)] = qo.quantize(v);
        }
        let mut stored = vec![0u8; n_in];
        for (i, &v) in nchw.iter().enumerate() {
            stored[nhwc_index(&shape, i)] = v;
        }
        for (q_out, level) in [
            (qo, Level::Scalar),
            (qo, Level::Avx512Vnni),
            (qi, Level::Scalar),
        ] {
            if !level.supported() {
                continue;
            }
            let op = Int8Op {
                op: QOp::Float {
                    op: Box::new(Op::Resize(r.clone())),
                    input: qi,
                    out: q_out,
                },
                out_shape: out_shape.clone(),
            };
            let k = Int8Kernel::new(&op, &[&shape], level).unwrap();
            let mut scratch = vec![0f32; k.scratch_len()];
            let mut got = vec![0u8; n_out];
            unsafe { k.run(&[stored.as_ptr()], got.as_mut_ptr(), &mut scratch) }.unwrap();
            if q_out == qo {
                assert_eq!(got, want, "{mode:?} {transform:?} {shape:?} {level:?}");
            } else if matches!(mode, ResizeMode::Nearest(_)) {
                // same quantization: a nearest resize copies bytes
                for (i, &v) in yf.iter().enumerate() {
                    assert_eq!(got[nhwc_index(&out_shape, i)], qi.quantize(v));
                }
            }
        }
    }
}

#[test]
fn two_plane_concat_interleaves_and_requantizes() {
    use super::elementwise::concat;
    let (qa, qb) = (
        QType {
            scale: 0.1,
            zero_point: 3,
            signed: false,
        },
        QType {
            scale: 0.03,
            zero_point: 200,
            signed: false,
        },
    );
    let mut rng = Rng(29);
    // the stack of x and y offsets: [2, 3, 5, 7, 1] twice -> [2, 3, 5, 7, 2]
    let s = vec![2, 3, 5, 7, 1];
    let (a, b) = (rng.bytes(210), rng.bytes(210));
    for qo in [qa, qb] {
        let mut y = vec![0u8; 420];
        concat(4, &[s.clone(), s.clone()], &[qa, qb], qo, &[&a, &b], &mut y);
        for i in 0..210 {
            assert_eq!(y[2 * i], qo.quantize(qa.dequantize(a[i])));
            assert_eq!(y[2 * i + 1], qo.quantize(qb.dequantize(b[i])));
        }
    }
}
