//! Round trip, corruption and schema-stability tests of the compiled format (no ONNX needed;
//! the ONNX round trips on real models are in `tests/compiled.rs`).

use super::*;
use crate::model::Node;
use crate::ops::*;
use crate::tensor::Tensor;
use crate::{Engine, EngineOptions};

/// A small graph touching several dtypes: conv (f32 weights, fused relu), add of a shared
/// constant, reshape.
fn sample_graph() -> Graph {
    let mut g = Graph::default();
    let x = g.add_value("x", vec![1, 3, 5, 7]);
    g.inputs.push(x);
    let w: Vec<f32> = (0..4 * 3 * 9)
        .map(|i| ((i * 37 % 19) as f32 - 9.0) / 7.0)
        .collect();
    let w = g.add_const("w", Tensor::from_f32(&[4, 3, 3, 3], w).unwrap());
    let b = g.add_const(
        "b",
        Tensor::from_f32(&[4], vec![0.5, -0.25, 0.0, 1.0]).unwrap(),
    );
    let y = g.add_value("y", vec![1, 4, 5, 7]);
    g.nodes.push(Node {
        name: "conv".into(),
        op: Op::Conv(Conv {
            group: 1,
            strides: [1, 1],
            pads: [1, 1, 1, 1],
            dilations: [1, 1],
            activation: Some(Activation::Relu),
            residual: false,
        }),
        inputs: vec![x, w, b],
        outputs: vec![y],
    });
    let shared = std::sync::Arc::new(Tensor::from_f32(&[1], vec![0.125]).unwrap());
    let mut prev = y;
    for i in 0..2 {
        let c = g.values.len();
        g.values.push(crate::model::Value {
            name: format!("k{i}"),
            shape: vec![1],
            constant: Some(shared.clone()),
            dequantized: None,
        });
        let z = g.add_value(format!("z{i}"), vec![1, 4, 5, 7]);
        g.nodes.push(Node {
            name: format!("add{i}"),
            op: Op::Binary(BinaryOp::Add),
            inputs: vec![prev, c],
            outputs: vec![z],
        });
        prev = z;
    }
    let _unused_int = g.add_const(
        "idx",
        Tensor::I64(
            ndarray::ArrayD::from_shape_vec(ndarray::IxDyn(&[2]), vec![-3, 1 << 40]).unwrap(),
        ),
    );
    let out = g.add_value("out", vec![1, 140]);
    g.nodes.push(Node {
        name: "flatten".into(),
        op: Op::Reshape {
            shape: vec![1, 140],
        },
        inputs: vec![prev],
        outputs: vec![out],
    });
    g.outputs.push(out);
    g.output_names.push("out".into());
    g.metadata
        .insert("class_names".into(), "[\"person\"]".into());
    g
}

fn sample_bytes() -> Vec<u8> {
    to_bytes(
        &sample_graph(),
        Target::generic(),
        false,
        &["none".into()],
        "sample.onnx",
    )
}

fn input() -> Tensor {
    let d: Vec<f32> = (0..105).map(|i| (i as f32 * 0.37).sin()).collect();
    Tensor::from_f32(&[1, 3, 5, 7], d).unwrap()
}

fn run(g: Graph) -> Vec<Tensor> {
    let opts = EngineOptions {
        optimize: false,
        ..Default::default()
    };
    Engine::new(g, &opts).unwrap().run(&[input()]).unwrap()
}

#[test]
fn round_trip_is_exact() {
    let g = sample_graph();
    let bytes = sample_bytes();
    assert!(has_magic(&bytes));
    let m = from_bytes(&bytes).unwrap();
    assert_eq!(m.pass_log, vec!["none".to_string()]);
    assert_eq!(m.source, "sample.onnx");
    assert!(!m.passes_applied);
    assert_eq!(m.graph.metadata, g.metadata);
    for (a, b) in g.values.iter().zip(&m.graph.values) {
        assert_eq!((&a.name, &a.shape), (&b.name, &b.shape));
        assert_eq!(a.constant.as_deref(), b.constant.as_deref());
    }
    // the shared constant is stored once and loaded once
    let k0 = m.graph.values.iter().position(|v| v.name == "k0").unwrap();
    let k1 = m.graph.values.iter().position(|v| v.name == "k1").unwrap();
    let (c0, c1) = (&m.graph.values[k0].constant, &m.graph.values[k1].constant);
    assert!(std::sync::Arc::ptr_eq(
        c0.as_ref().unwrap(),
        c1.as_ref().unwrap()
    ));
    assert_eq!(run(g), run(m.graph));
}

#[test]
fn weights_are_aligned_for_mapping() {
    let bytes = sample_bytes();
    let (h, _) = Header::decode(&bytes).unwrap();
    let w = h.section(SectionKind::Weights).unwrap();
    assert_eq!(w.offset % ALIGN as u64, 0);
    let plan: Plan = postcard::from_bytes(
        &bytes[h.section(SectionKind::Plan).unwrap().offset as usize..w.offset as usize],
    )
    .unwrap();
    for v in plan.values.iter().filter_map(|v| v.constant) {
        assert_eq!((w.offset + v.offset) % ALIGN as u64, 0);
    }
}

#[test]
fn same_graph_gives_same_bytes() {
    assert_eq!(sample_bytes(), sample_bytes());
}

#[test]
fn wrong_magic() {
    let mut b = sample_bytes();
    b[1] = b'X';
    assert!(matches!(from_bytes(&b), Err(CompiledError::WrongMagic)));
    assert!(matches!(
        from_bytes(b"\x08\x07"),
        Err(CompiledError::WrongMagic)
    ));
}

#[test]
fn unsupported_version() {
    let mut b = sample_bytes();
    b[8..12].copy_from_slice(&(FORMAT_VERSION + 1).to_le_bytes());
    let e = from_bytes(&b).unwrap_err();
    assert!(
        matches!(e, CompiledError::UnsupportedVersion { found, .. } if found == FORMAT_VERSION + 1)
    );
    assert!(e.to_string().contains("recompile"), "{e}");
}

#[test]
fn truncated_anywhere() {
    let b = sample_bytes();
    for cut in [9, 63, 64, 100, b.len() / 2, b.len() - 1] {
        match from_bytes(&b[..cut]) {
            Err(CompiledError::Truncated { got, .. }) => assert_eq!(got, cut as u64),
            other => panic!("cut at {cut}: {other:?}"),
        }
    }
}

#[test]
fn payload_flip_is_a_checksum_mismatch() {
    let b = sample_bytes();
    let (_, hlen) = Header::decode(&b).unwrap();
    for at in [hlen, hlen + 5, b.len() - 1] {
        let mut f = b.clone();
        f[at] ^= 1;
        assert!(
            matches!(
                from_bytes(&f),
                Err(CompiledError::ChecksumMismatch { part: "payload" })
            ),
            "flip at {at}"
        );
    }
}

#[test]
fn foreign_target_is_refused() {
    let foreign = if cfg!(target_arch = "aarch64") {
        "x86_64"
    } else {
        "aarch64-dotprod"
    };
    let b = to_bytes(
        &sample_graph(),
        Target::parse(foreign).unwrap(),
        false,
        &[],
        "s",
    );
    let e = from_bytes(&b).unwrap_err();
    assert!(matches!(e, CompiledError::TargetMismatch { .. }), "{e}");
    assert!(e.to_string().contains(foreign), "{e}");
    let host = to_bytes(&sample_graph(), Target::host(), false, &[], "s");
    assert_eq!(from_bytes(&host).unwrap().target, Target::host());
}

/// Rewrite the plan section and fix both checksums, as a buggy writer (or a crafted file)
/// would: the decoder and validator, not the checksum, must then refuse it.
fn with_plan(b: &[u8], edit: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
    let (mut h, hlen) = Header::decode(b).unwrap();
    let p = h.section(SectionKind::Plan).unwrap();
    let w = h.section(SectionKind::Weights).unwrap();
    let mut plan = b[p.offset as usize..(p.offset + p.len) as usize].to_vec();
    edit(&mut plan);
    let weights = &b[w.offset as usize..];
    let w_off = header::align_up(hlen + plan.len());
    let mut out = vec![0u8; w_off + weights.len()];
    out[hlen..hlen + plan.len()].copy_from_slice(&plan);
    out[w_off..].copy_from_slice(weights);
    h.file_len = out.len() as u64;
    h.sections = vec![
        Section {
            kind: SectionKind::Plan,
            offset: hlen as u64,
            len: plan.len() as u64,
        },
        Section {
            kind: SectionKind::Weights,
            offset: w_off as u64,
            len: weights.len() as u64,
        },
    ];
    h.payload_crc = crc32fast::hash(&out[hlen..]);
    out[..hlen].copy_from_slice(&h.encode());
    out
}

#[test]
fn bad_plan_with_valid_checksums_is_corrupt_plan() {
    let b = sample_bytes();
    let cut = with_plan(&b, |p| p.truncate(p.len() / 2));
    assert!(matches!(
        from_bytes(&cut),
        Err(CompiledError::CorruptPlan(_))
    ));
    // a node reading a value that does not exist
    let mut g = sample_graph();
    g.nodes[0].inputs[0] = 999;
    let e = from_bytes(&to_bytes(&g, Target::generic(), false, &[], "s")).unwrap_err();
    assert!(matches!(e, CompiledError::CorruptPlan(_)), "{e}");
    // a stored shape disagreeing with shape inference
    let mut g = sample_graph();
    g.values[g.nodes[0].outputs[0]].shape = vec![1, 4, 5, 8];
    let e = from_bytes(&to_bytes(&g, Target::generic(), false, &[], "s")).unwrap_err();
    assert!(
        e.to_string().contains("shape") || e.to_string().contains("stored"),
        "{e}"
    );
}

/// Quantize -> int8 3x3 conv (two groups, GEMMs) -> int8 depthwise 3x3 (float output): one
/// conv whose weights the file stores packed, one it keeps in ONNX order.
fn int8_graph() -> Graph {
    let mut g = Graph::default();
    let x = g.add_value("x", vec![1, 3, 5, 7]);
    g.inputs.push(x);
    let q8 = |scale, zero_point| QType {
        scale,
        zero_point,
        signed: false,
    };
    let conv = |group, w_shape: [usize; 4], out| {
        let n: usize = w_shape.iter().product();
        let m = w_shape[0];
        Op::Int8(Box::new(Int8Op {
            op: QOp::Conv(Box::new(QConv {
                conv: Conv {
                    group,
                    strides: [1, 1],
                    pads: [1, 1, 1, 1],
                    dilations: [1, 1],
                    activation: None,
                    residual: false,
                },
                weights: QWeights::Onnx((0..n).map(|i| (i * 53 % 255) as i8).collect()),
                w_shape,
                w_scale: (0..m).map(|i| 0.01 + i as f32 * 1e-3).collect(),
                bias: (0..m).map(|i| i as i32 * 37 - 50).collect(),
                input: q8(0.02, 128),
                out,
                lut: None,
                residual: None,
            })),
            out_shape: vec![1, m, 5, 7],
        }))
    };
    let xq = g.add_value("xq", vec![1, 3, 5, 7]);
    g.nodes.push(Node {
        name: "quantize".into(),
        op: Op::Int8(Box::new(Int8Op {
            op: QOp::Quantize { out: q8(0.02, 128) },
            out_shape: vec![1, 3, 5, 7],
        })),
        inputs: vec![x],
        outputs: vec![xq],
    });
    let a = g.add_value("a", vec![1, 6, 5, 7]);
    g.nodes.push(Node {
        name: "conv".into(),
        op: conv(
            1,
            [6, 3, 3, 3],
            QConvOut::Quant {
                q: q8(0.02, 128),
                lo: 0,
                hi: 255,
            },
        ),
        inputs: vec![xq],
        outputs: vec![a],
    });
    let y = g.add_value("y", vec![1, 6, 5, 7]);
    g.nodes.push(Node {
        name: "dw".into(),
        op: conv(6, [6, 1, 3, 3], QConvOut::Float { activation: None }),
        inputs: vec![a],
        outputs: vec![y],
    });
    g.outputs.push(y);
    g.output_names.push("y".into());
    g
}

fn int8_conv_weights(g: &Graph) -> Vec<&QWeights> {
    g.nodes
        .iter()
        .filter_map(|n| match &n.op {
            Op::Int8(q) => match &q.op {
                QOp::Conv(c) => Some(&c.weights),
                _ => None,
            },
            _ => None,
        })
        .collect()
}

#[test]
fn int8_gemm_weights_are_stored_packed_and_run_the_same() {
    let g = int8_graph();
    let b = to_bytes(&g, Target::generic(), false, &[], "q.onnx");
    let m = from_bytes(&b).unwrap();
    let w = int8_conv_weights(&m.graph);
    assert!(matches!(w[0], QWeights::GemmPacked(p) if p.len() == 1 && p[0].n == 6 && p[0].k == 27));
    assert!(matches!(w[1], QWeights::Onnx(v) if v.len() == 54));
    // the packed bytes are aligned in the weights section, in the plan only by reference
    let (h, _) = Header::decode(&b).unwrap();
    let plan: Plan =
        postcard::from_bytes(&b[h.section(SectionKind::Plan).unwrap().offset as usize..]).unwrap();
    let Op::Int8(q) = &plan.nodes[1].op else {
        panic!("node 1 is the conv")
    };
    let QOp::Conv(c) = &q.op else { panic!() };
    let QWeights::Stored(s) = &c.weights else {
        panic!("{:?}", c.weights)
    };
    assert!(s.iter().all(|s| s.offset % ALIGN as u64 == 0));
    assert_eq!(run(g), run(m.graph));
}

/// An edit of a conv's stored packed-weight references.
type StoredEdit<'a> = &'a dyn Fn(&mut Vec<StoredPacked>);

#[test]
fn inconsistent_packed_weights_are_corrupt_plan() {
    let b = to_bytes(&int8_graph(), Target::generic(), false, &[], "q.onnx");
    let (h, _) = Header::decode(&b).unwrap();
    let plan_at = h.section(SectionKind::Plan).unwrap();
    let plan: Plan =
        postcard::from_bytes(&b[plan_at.offset as usize..(plan_at.offset + plan_at.len) as usize])
            .unwrap();
    let edit = |f: StoredEdit| {
        let mut plan = plan.clone();
        let Op::Int8(q) = &mut plan.nodes[1].op else {
            unreachable!()
        };
        let QOp::Conv(c) = &mut q.op else {
            unreachable!()
        };
        let QWeights::Stored(s) = &mut c.weights else {
            unreachable!()
        };
        f(s);
        let bytes = postcard::to_stdvec(&plan).unwrap();
        from_bytes(&with_plan(&b, |p| *p = bytes)).unwrap_err()
    };
    let cases: [(&str, StoredEdit); 4] = [
        ("past the section", &|s| s[0].offset += 1 << 20),
        ("unaligned", &|s| s[0].offset += 1),
        ("shorter", &|s| s[0].len -= 64),
        ("another group count", &|s| s.push(s[0])),
    ];
    for (what, f) in cases {
        let e = edit(f);
        assert!(matches!(e, CompiledError::CorruptPlan(_)), "{what}: {e}");
    }
    // a weight changed under valid checksums: its channel's stored sum no longer matches
    let Op::Int8(q) = &plan.nodes[1].op else {
        unreachable!()
    };
    let QOp::Conv(c) = &q.op else { unreachable!() };
    let QWeights::Stored(s) = &c.weights else {
        unreachable!()
    };
    let mut flipped = b.clone();
    flipped[(h.section(SectionKind::Weights).unwrap().offset + s[0].offset) as usize] ^= 1;
    let e = from_bytes(&with_plan(&flipped, |_| {})).unwrap_err();
    assert!(matches!(e, CompiledError::CorruptPlan(_)), "{e}");
    assert!(e.to_string().contains("sums to"), "{e}");
}

/// xorshift, so the fuzz cases are the same on every run.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// Random byte flips anywhere, and random flips in the plan with the checksums fixed up:
/// never a panic; whatever loads also plans and runs without one. On the float sample and
/// on the int8 one (packed and ONNX-order conv weights).
#[test]
fn random_flips_never_panic() {
    random_flips_never_panic_on(sample_bytes());
    random_flips_never_panic_on(to_bytes(&int8_graph(), Target::generic(), false, &[], "q"));
}

fn random_flips_never_panic_on(b: Vec<u8>) {
    let (h, _) = Header::decode(&b).unwrap();
    let p = h.section(SectionKind::Plan).unwrap();
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut loaded = 0;
    for case in 0..3000 {
        let f = if case % 2 == 0 {
            let mut f = b.clone();
            for _ in 0..1 + rng.next() % 3 {
                let at = (rng.next() % f.len() as u64) as usize;
                f[at] ^= 1 << (rng.next() % 8);
            }
            f
        } else {
            let flips: Vec<(usize, u8)> = (0..1 + rng.next() % 3)
                .map(|_| ((rng.next() % p.len) as usize, 1u8 << (rng.next() % 8)))
                .collect();
            with_plan(&b, |plan| flips.iter().for_each(|&(at, m)| plan[at] ^= m))
        };
        let r = std::panic::catch_unwind(|| {
            if let Ok(m) = from_bytes(&f) {
                let opts = EngineOptions {
                    optimize: false,
                    ..Default::default()
                };
                if let Ok(mut e) = Engine::new(m.graph, &opts) {
                    let _ = e.run(&[input()]);
                }
                return true;
            }
            false
        });
        match r {
            Ok(ok) => loaded += ok as usize,
            Err(_) => panic!("case {case} panicked"),
        }
    }
    // flips in names and metadata still load; most others must not
    assert!(loaded < 3000, "{loaded}");
}

/// The golden samples' int8 1x1 conv with a fused residual Add, with `weights`.
fn residual_conv_sample(weights: crate::ops::QWeights) -> Op {
    Op::Int8(Box::new(crate::ops::Int8Op {
        op: crate::ops::QOp::Conv(Box::new(crate::ops::QConv {
            conv: Conv {
                group: 1,
                strides: [1, 1],
                pads: [0; 4],
                dilations: [1, 1],
                activation: None,
                residual: false,
            },
            weights,
            w_shape: [1, 2, 1, 1],
            w_scale: vec![0.5],
            bias: vec![-3],
            input: crate::ops::QType {
                scale: 0.25,
                zero_point: 3,
                signed: false,
            },
            out: crate::ops::QConvOut::Quant {
                q: crate::ops::QType {
                    scale: 0.5,
                    zero_point: 128,
                    signed: true,
                },
                lo: 0,
                hi: 255,
            },
            lut: None,
            residual: Some(crate::ops::QResidual {
                skip: crate::ops::QType {
                    scale: 0.25,
                    zero_point: 1,
                    signed: false,
                },
                out: crate::ops::QType {
                    scale: 1.0,
                    zero_point: 2,
                    signed: false,
                },
            }),
        })),
        out_shape: vec![1, 1, 1, 1],
    }))
}

/// One sample of every [`Op`] variant and its postcard encoding. Changing an existing variant
/// or attribute type changes these bytes: bump [`FORMAT_VERSION`] and update the goldens.
/// A new variant goes at the end of `Op` with a new line here.
fn op_samples() -> Vec<(Op, &'static str)> {
    let q = QuantParams {
        scale: vec![0.5],
        zero_point: vec![-1.0],
        axis: 1,
        qmin: -128.0,
        qmax: 127.0,
    };
    vec![
        (
            Op::Conv(Conv {
                group: 2,
                strides: [1, 2],
                pads: [0, 1, 2, 3],
                dilations: [1, 1],
                activation: Some(Activation::HardSigmoid {
                    alpha: 0.2,
                    beta: 0.5,
                }),
                residual: false,
            }),
            "000201020001020301010104cdcc4c3e0000003f00",
        ),
        (
            // a float conv with a fused residual Add (FORMAT_VERSION 5)
            Op::Conv(Conv {
                group: 1,
                strides: [1, 1],
                pads: [0; 4],
                dilations: [1, 1],
                activation: None,
                residual: true,
            }),
            "000101010000000001010001",
        ),
        (
            Op::Unary(UnaryOp::Act(Activation::LeakyRelu(0.1))),
            "010001cdcccc3d",
        ),
        (Op::Unary(UnaryOp::Round), "010a"),
        (Op::Binary(BinaryOp::Min), "0206"),
        (Op::Concat { axis: 1 }, "0301"),
        (
            Op::Slice(Slice {
                axes: vec![SliceAxis {
                    axis: 2,
                    start: -1,
                    end: -5,
                    step: -2,
                }],
            }),
            "040102010903",
        ),
        (
            Op::Split {
                axis: 1,
                sizes: vec![2, 3],
            },
            "0501020203",
        ),
        (
            Op::Transpose {
                perm: vec![0, 2, 1],
            },
            "0603000201",
        ),
        (Op::Reshape { shape: vec![1, 6] }, "07020106"),
        (Op::Expand { shape: vec![2, 3] }, "08020203"),
        (
            Op::Gather {
                axis: 0,
                indices: vec![1, 0],
                indices_shape: vec![2],
            },
            "09000201000102",
        ),
        (
            Op::Pad {
                pads: vec![(0, 1), (2, 3)],
                mode: PadMode::Constant(1.5),
            },
            "0a0200010203000000c03f",
        ),
        (
            Op::Reduce {
                kind: ReduceKind::L2,
                axes: vec![1],
                keepdims: true,
            },
            "0b06010101",
        ),
        (Op::GlobalAveragePool, "0c"),
        (Op::GlobalMaxPool, "0d"),
        (
            Op::Pool(Pool {
                kind: PoolKind::Average,
                kernel: [3, 3],
                strides: [2, 2],
                pads: [1, 1, 1, 1],
                dilations: [1, 1],
                ceil_mode: true,
                count_include_pad: false,
            }),
            "0e01030302020101010101010100",
        ),
        (
            Op::Resize(Resize {
                mode: ResizeMode::Nearest(NearestRounding::Floor),
                transform: CoordTransform::Asymmetric,
                out_shape: vec![1, 2, 8, 8],
                scales: vec![1.0, 1.0, 2.0, 2.0],
            }),
            "0f0002030401020808040000803f0000803f0000004000000040",
        ),
        (Op::Softmax { axis: 1 }, "1001"),
        (
            Op::LayerNorm {
                axis: 2,
                epsilon: 1e-5,
            },
            "1102acc52737",
        ),
        (Op::BatchNorm { epsilon: 1e-3 }, "126f12833a"),
        (Op::MatMul, "13"),
        (
            Op::Gemm(Gemm {
                alpha: 1.0,
                beta: 0.5,
                trans_a: false,
                trans_b: true,
            }),
            "140000803f0000003f0001",
        ),
        (
            Op::Einsum {
                equation: "ij,jk->ik".into(),
            },
            "1509696a2c6a6b2d3e696b",
        ),
        (
            Op::GridSample(GridSample {
                mode: GridMode::Bilinear,
                padding: GridPadding::Border,
                align_corners: true,
            }),
            "16000101",
        ),
        (Op::HeadChannelSum, "17"),
        (
            Op::QuantizeLinear(q.clone()),
            "18010000003f01000080bf01000000c30000fe42",
        ),
        (
            Op::DequantizeLinear(q),
            "19010000003f01000080bf01000000c30000fe42",
        ),
        (
            Op::Int8(Box::new(crate::ops::Int8Op {
                op: crate::ops::QOp::Quantize {
                    out: crate::ops::QType {
                        scale: 0.5,
                        zero_point: 3,
                        signed: true,
                    },
                },
                out_shape: vec![1, 2],
            })),
            "1a000000003f0601020102",
        ),
        (
            Op::Int8(Box::new(crate::ops::Int8Op {
                op: crate::ops::QOp::FakeQuant(crate::ops::QRound {
                    quant: crate::ops::QType {
                        scale: 0.5,
                        zero_point: 3,
                        signed: true,
                    },
                    dequant: crate::ops::QType {
                        scale: 0.25,
                        zero_point: 3,
                        signed: true,
                    },
                }),
                out_shape: vec![1, 2],
            })),
            "1a080000003f06010000803e0601020102",
        ),
        (
            // a 1x1 conv with a fused residual Add (FORMAT_VERSION 3)
            residual_conv_sample(crate::ops::QWeights::Onnx(vec![1, -2])),
            "1a020101010000000001010000000201fe01020101010000003f01050000803e0600000000003f80020100ff00010000803e02000000803f04000401010101",
        ),
        (
            // its weights packed in a compiled file's weights section (FORMAT_VERSION 4)
            residual_conv_sample(crate::ops::QWeights::Stored(vec![
                crate::ops::StoredPacked {
                    offset: 64,
                    len: 128,
                },
            ])),
            "1a020101010000000001010000010140800101020101010000003f01050000803e0600000000003f80020100ff00010000803e02000000803f04000401010101",
        ),
        (
            Op::LdaAqu(Box::new(crate::ops::LdaAqu {
                sample: GridSample {
                    mode: GridMode::Bilinear,
                    padding: GridPadding::Zeros,
                    align_corners: true,
                },
                taps: 9,
                heads: 1,
                groups: 2,
                round_keys: vec![],
                round_biased: vec![],
                round_attn: vec![crate::ops::QRound {
                    quant: crate::ops::QType {
                        scale: 0.5,
                        zero_point: 0,
                        signed: false,
                    },
                    dequant: crate::ops::QType {
                        scale: 0.5,
                        zero_point: 0,
                        signed: false,
                    },
                }],
                round_values: vec![],
                round_qk: vec![],
                round_logits: vec![],
                round_weighted: vec![],
            })),
            "1b0000010901020000010000003f00000000003f000000000000",
        ),
        (Op::ChannelLayerNorm { epsilon: 1e-5 }, "1cacc52737"),
    ]
}

/// Forces `op_samples` to be extended when `Op` grows (this match must be exhaustive).
fn variant_index(op: &Op) -> u8 {
    match op {
        Op::Conv(_) => 0,
        Op::Unary(_) => 1,
        Op::Binary(_) => 2,
        Op::Concat { .. } => 3,
        Op::Slice(_) => 4,
        Op::Split { .. } => 5,
        Op::Transpose { .. } => 6,
        Op::Reshape { .. } => 7,
        Op::Expand { .. } => 8,
        Op::Gather { .. } => 9,
        Op::Pad { .. } => 10,
        Op::Reduce { .. } => 11,
        Op::GlobalAveragePool => 12,
        Op::GlobalMaxPool => 13,
        Op::Pool(_) => 14,
        Op::Resize(_) => 15,
        Op::Softmax { .. } => 16,
        Op::LayerNorm { .. } => 17,
        Op::BatchNorm { .. } => 18,
        Op::MatMul => 19,
        Op::Gemm(_) => 20,
        Op::Einsum { .. } => 21,
        Op::GridSample(_) => 22,
        Op::HeadChannelSum => 23,
        Op::QuantizeLinear(_) => 24,
        Op::DequantizeLinear(_) => 25,
        Op::Int8(_) => 26,
        Op::LdaAqu(_) => 27,
        Op::ChannelLayerNorm { .. } => 28,
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[test]
fn op_encoding_is_stable() {
    let samples = op_samples();
    let mut failures = vec![];
    let mut listed: Vec<u8> = samples.iter().map(|(op, _)| variant_index(op)).collect();
    listed.dedup();
    assert_eq!(
        listed,
        (0..listed.len() as u8).collect::<Vec<_>>(),
        "one sample per variant, in order"
    );
    for (op, golden) in &samples {
        let bytes = postcard::to_stdvec(op).unwrap();
        assert_eq!(bytes[0], variant_index(op), "{op:?}: variant moved");
        if hex(&bytes) != *golden {
            failures.push(format!("{}: \"{}\"", op.name(), hex(&bytes)));
        }
        let back: Op = postcard::from_bytes(&bytes).unwrap();
        assert_eq!(&back, op);
    }
    assert!(
        failures.is_empty(),
        "serialized ops changed; bump FORMAT_VERSION and update the goldens:\n{}",
        failures.join("\n")
    );
}

/// Random flips in the plan of the compiled int8 detector, checksums fixed: whatever loads
/// plans and runs once without a panic (a flipped pad of an int8 conv overflowed its output
/// buffer before stored int8 output shapes were re-inferred).
#[cfg(feature = "onnx")]
#[test]
fn random_plan_flips_in_the_int8_detector_never_panic() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/models/speck-tiny-int8.onnx");
    let mut g = crate::onnx::load(path, &Default::default()).unwrap();
    crate::passes::prepare(&mut g, true);
    let b = to_bytes(&g, Target::generic(), true, &[], "d");
    let (h, _) = Header::decode(&b).unwrap();
    let p = h.section(SectionKind::Plan).unwrap();
    let mut rng = Rng(0x1234_5678_9abc_def1);
    let x = Tensor::from_f32(&[1, 3, 384, 384], vec![0.3; 3 * 384 * 384]).unwrap();
    let cases = 200;
    let mut loaded = 0;
    for case in 0..cases {
        let flips: Vec<(usize, u8)> = (0..1 + rng.next() % 2)
            .map(|_| ((rng.next() % p.len) as usize, 1u8 << (rng.next() % 8)))
            .collect();
        let f = with_plan(&b, |plan| flips.iter().for_each(|&(at, m)| plan[at] ^= m));
        let r = std::panic::catch_unwind(|| {
            let m = from_bytes(&f).ok()?;
            let opts = EngineOptions {
                optimize: false,
                ..Default::default()
            };
            let mut e = Engine::new(m.graph, &opts).ok()?;
            let _ = e.run(std::slice::from_ref(&x));
            Some(())
        });
        match r {
            Ok(ok) => loaded += ok.is_some() as usize,
            Err(_) => panic!("case {case} ({flips:?}) panicked"),
        }
    }
    // most flips land in weights and scales, which load; the checks refuse the rest
    assert!(loaded < cases, "{loaded}");
}
