#![cfg(feature = "onnx")] // needs the ONNX importer and the quantizer
//! Quantization glue: cross-layer equalization preserves the float function, QDQ models
//! import and run in speck's float engine, and the end-to-end pipeline on a real model.

use speck::quantize::{calibrate, compare, dequantized_aliases, engine_for, read_model};
use speck::{Engine, Tensor};
use speck_quantize::calib::Method;
use speck_quantize::pb::{self, tensor_proto::DataType};
use speck_quantize::proto::{f32_tensor, int_attr, node};
use speck_quantize::qdq::{default_float_nodes, quantize_model, QdqOptions};
use std::collections::{HashMap, HashSet};

fn vi(name: &str, shape: &[i64]) -> pb::ValueInfoProto {
    use pb::tensor_shape_proto::{dimension::Value, Dimension};
    pb::ValueInfoProto {
        name: name.into(),
        r#type: Some(pb::TypeProto {
            value: Some(pb::type_proto::Value::TensorType(pb::type_proto::Tensor {
                elem_type: DataType::Float as i32,
                shape: Some(pb::TensorShapeProto {
                    dim: shape
                        .iter()
                        .map(|&d| Dimension {
                            value: Some(Value::DimValue(d)),
                            ..Default::default()
                        })
                        .collect(),
                }),
            })),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Deterministic values in [-1, 1), channel c scaled by `spread^c` (uneven channel ranges, as
/// after BN folding).
fn weights(shape: &[usize], seed: u32, spread: f32) -> Vec<f32> {
    let n: usize = shape.iter().product();
    let per = n / shape[0];
    let mut s = seed;
    (0..n)
        .map(|i| {
            s = s.wrapping_mul(1664525).wrapping_add(1013904223);
            ((s >> 8) as f32 / (1u32 << 23) as f32 - 1.0) * spread.powi((i / per) as i32)
        })
        .collect()
}

/// x[1,3,12,12] -> Conv 3x3 (8) -> Relu -> depthwise 3x3 (8) -> Relu -> Conv 1x1 (4) -> y
fn mobile_block() -> pb::ModelProto {
    let g = pb::GraphProto {
        node: vec![
            node("Conv", "expand", &["x", "w1", "b1"], &["e"], vec![]),
            node("Relu", "relu1", &["e"], &["er"], vec![]),
            node(
                "Conv",
                "dw",
                &["er", "w2", "b2"],
                &["d"],
                vec![int_attr("group", 8)],
            ),
            node("Relu", "relu2", &["d"], &["dr"], vec![]),
            node("Conv", "project", &["dr", "w3", "b3"], &["y"], vec![]),
        ],
        initializer: vec![
            f32_tensor("w1", &[8, 3, 3, 3], &weights(&[8, 3, 3, 3], 1, 1.6)),
            f32_tensor("b1", &[8], &weights(&[8], 2, 1.0)),
            f32_tensor("w2", &[8, 1, 3, 3], &weights(&[8, 1, 3, 3], 3, 0.7)),
            f32_tensor("b2", &[8], &weights(&[8], 4, 1.0)),
            f32_tensor("w3", &[4, 8, 1, 1], &weights(&[4, 8, 1, 1], 5, 1.0)),
            f32_tensor("b3", &[4], &weights(&[4], 6, 1.0)),
        ],
        input: vec![vi("x", &[1, 3, 12, 12])],
        output: vec![vi("y", &[1, 4, 12, 12])],
        ..Default::default()
    };
    // 'same' padding for the 3x3 convs
    let mut m = pb::ModelProto {
        ir_version: 8,
        opset_import: vec![pb::OperatorSetIdProto {
            domain: String::new(),
            version: 17,
        }],
        graph: Some(g),
        ..Default::default()
    };
    for n in &mut m.graph.as_mut().unwrap().node {
        if n.name == "expand" || n.name == "dw" {
            n.attribute.push(pb::AttributeProto {
                name: "pads".into(),
                r#type: pb::attribute_proto::AttributeType::Ints as i32,
                ints: vec![1, 1, 1, 1],
                ..Default::default()
            });
        }
    }
    m
}

fn frames(shape: &[usize], n: usize) -> Vec<Tensor> {
    (0..n)
        .map(|i| Tensor::from_f32(shape, weights(shape, 100 + i as u32, 1.0)).unwrap())
        .collect()
}

fn run(e: &mut Engine, x: &Tensor) -> Vec<f32> {
    e.run(std::slice::from_ref(x)).unwrap()[0].to_f32_vec()
}

#[test]
fn cle_preserves_the_float_function() {
    let m = mobile_block();
    let mut eq = m.clone();
    let pairs = speck_quantize::cle::equalize(&mut eq, 4, &|_| false).unwrap();
    assert_eq!(pairs.len(), 2, "expand->dw and dw->project: {pairs:?}");
    assert!(pairs[0].max_ratio_before > 2.0);
    let (mut a, mut b) = (engine_for(&m, 1).unwrap(), engine_for(&eq, 1).unwrap());
    for x in frames(&[1, 3, 12, 12], 3) {
        let (ya, yb) = (run(&mut a, &x), run(&mut b, &x));
        let scale = ya.iter().fold(1.0f32, |m, v| m.max(v.abs()));
        let err = ya
            .iter()
            .zip(&yb)
            .map(|(p, q)| (p - q).abs())
            .fold(0.0f32, f32::max);
        assert!(
            err <= 1e-4 * scale,
            "CLE changed the output: max err {err} (scale {scale})"
        );
    }
    // Equalized ranges: per output channel of the expand conv, the weight ranges now match
    // the depthwise input-channel ranges more closely than before.
    let again = speck_quantize::cle::equalize(&mut eq.clone(), 1, &|_| false).unwrap();
    assert!(again[0].max_ratio_before < pairs[0].max_ratio_before);
}

fn quantize(m: &pb::ModelProto, per_channel: bool, xs: &[Tensor]) -> pb::ModelProto {
    let mut e = engine_for(m, 1).unwrap();
    let cal = calibrate(&mut e, xs, &HashSet::new(), &mut || {}).unwrap();
    let input = e.inputs().next().unwrap().0.to_string();
    assert!(
        cal.histograms.contains_key(&input),
        "graph input {input} is calibrated too"
    );
    let ranges: HashMap<String, (f32, f32)> = cal
        .histograms
        .iter()
        .map(|(k, h)| (k.clone(), Method::MinMax.range(h, false)))
        .collect();
    let opts = QdqOptions {
        per_channel,
        act_signed: false,
        keep_float: default_float_nodes(m),
        ..Default::default()
    };
    quantize_model(m, &ranges, &opts).unwrap().model
}

#[test]
fn qdq_model_runs_in_speck_close_to_float() {
    let m = mobile_block();
    let xs = frames(&[1, 3, 12, 12], 4);
    let q = quantize(&m, true, &xs);
    let bytes = prost::Message::encode_to_vec(&q);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("q.onnx");
    std::fs::write(&path, bytes).unwrap();
    // Through the file path and the public loader, with graph passes on: the QDQ pattern is
    // lowered to int8 ops (a Quantize at the float input's edge at least).
    let mut qe = Engine::load(&path, &Default::default()).unwrap();
    let names: Vec<String> = qe.graph().nodes.iter().map(|n| n.op.name()).collect();
    assert!(
        names
            .iter()
            .any(|n| n == "Quantize" || n == "QuantizeLinear"),
        "{names:?}"
    );
    let mut fe = engine_for(&m, 1).unwrap();
    let mut fq = engine_for(&q, 1).unwrap();
    let cmp = compare(&mut fe, &mut fq, &xs, &dequantized_aliases(&q), &mut || {}).unwrap();
    let out_db = cmp.outputs[0].1.db();
    assert!(out_db > 15.0 && out_db < 100.0, "output SQNR {out_db} dB");
    // Per-layer measurements of dequantized activations exist.
    assert!(cmp.tensors.keys().any(|k| k.ends_with("_dequantized")));
    // The optimized and unoptimized QDQ engines agree.
    for x in &xs {
        let (a, b) = (run(&mut qe, x), run(&mut fq, x));
        let err = a
            .iter()
            .zip(&b)
            .map(|(p, q)| (p - q).abs())
            .fold(0.0f32, f32::max);
        assert!(err < 1e-3, "optimized QDQ run differs by {err}");
    }
    // Per-tensor weights are worse than per-channel on these uneven channels.
    let qt = quantize(&m, false, &xs);
    let mut ft = engine_for(&qt, 1).unwrap();
    let pt = compare(&mut fe, &mut ft, &xs, &HashMap::new(), &mut || {})
        .unwrap()
        .outputs[0]
        .1
        .db();
    assert!(pt < out_db, "per-tensor {pt} dB vs per-channel {out_db} dB");
}

#[test]
fn reference_model_end_to_end() {
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("models/reference/mnv3s_224.onnx");
    if !path.is_file() {
        eprintln!("skipping: {} not present", path.display());
        return;
    }
    let mut m = read_model(&path).unwrap();
    speck_quantize::qdq::name_nodes(&mut m);
    let xs = frames(&[1, 3, 224, 224], 2);
    let q = quantize(&m, true, &xs);
    let g = q.graph.as_ref().unwrap();
    assert!(g.node.iter().any(|n| n.op_type == "QuantizeLinear"));
    let mut fe = engine_for(&m, 1).unwrap();
    let mut qe = engine_for(&q, 1).unwrap();
    let cmp = compare(&mut fe, &mut qe, &xs, &HashMap::new(), &mut || {}).unwrap();
    let db = cmp.outputs[0].1.db();
    assert!(db > 10.0, "MobileNetV3-Small int8 output SQNR {db} dB");
}
