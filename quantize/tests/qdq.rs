//! The QDQ rewrite on small hand-built graphs.

use speck_quantize::calib::QParams;
use speck_quantize::pb::{self, tensor_proto::DataType};
use speck_quantize::proto::{f32_tensor, node};
use speck_quantize::qdq::{
    default_float_nodes, output_float_nodes, quantize_model, OutputHeads, QdqOptions,
};
use speck_quantize::QuantizeError;
use std::collections::{BTreeMap, HashMap};

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

/// A model of graph `g` at opset 17.
fn opset17(g: pb::GraphProto) -> pb::ModelProto {
    pb::ModelProto {
        ir_version: 8,
        opset_import: vec![pb::OperatorSetIdProto {
            domain: String::new(),
            version: 17,
        }],
        graph: Some(g),
        ..Default::default()
    }
}

/// Calibration ranges by tensor name.
fn range_map(r: &[(&str, (f32, f32))]) -> HashMap<String, (f32, f32)> {
    r.iter().map(|(k, v)| (k.to_string(), *v)).collect()
}

fn seq(n: usize, k: f32) -> Vec<f32> {
    (0..n).map(|i| ((i as f32 * 0.37).sin()) * k).collect()
}

/// x -> Conv(w1,b1) -> HardSigmoid -> Mul(with conv out) -> Concat(with x) -> MaxPool -> GridSample(grid from Conv->Tanh)
fn model() -> pb::ModelProto {
    let g = pb::GraphProto {
        node: vec![
            node("Conv", "conv1", &["x", "w1", "b1"], &["c1"], vec![]),
            node("HardSigmoid", "hsig", &["c1"], &["gate"], vec![]),
            node("Mul", "se_mul", &["c1", "gate"], &["m"], vec![]),
            node(
                "Concat",
                "cat",
                &["m", "x"],
                &["cat_out"],
                vec![speck_quantize::proto::int_attr("axis", 1)],
            ),
            node("MaxPool", "pool", &["cat_out"], &["p"], vec![]),
            node("Conv", "offset_conv", &["p", "w2"], &["off"], vec![]),
            node("Tanh", "tanh", &["off"], &["grid"], vec![]),
            node("GridSample", "gs", &["p", "grid"], &["y"], vec![]),
        ],
        initializer: vec![
            f32_tensor("w1", &[4, 2, 1, 1], &seq(8, 1.0)),
            f32_tensor("b1", &[4], &[0.1, -0.2, 0.3, 0.0]),
            f32_tensor("w2", &[2, 6, 1, 1], &seq(12, 0.5)),
        ],
        input: vec![vi("x", &[1, 2, 4, 4])],
        output: vec![vi("y", &[1, 6, 4, 4])],
        ..Default::default()
    };
    opset17(g)
}

fn ranges() -> HashMap<String, (f32, f32)> {
    range_map(&[
        ("x", (-1.0, 1.0)),
        ("c1", (-2.0, 3.0)),
        ("gate", (0.2, 0.9)),
        ("m", (-1.5, 2.5)),
        ("cat_out", (-1.5, 2.5)),
        ("p", (-1.0, 2.5)),
        ("off", (-0.5, 0.5)),
        ("grid", (-0.4, 0.4)),
        ("y", (-1.0, 2.0)),
    ])
}

fn producer<'a>(g: &'a pb::GraphProto, t: &str) -> Option<&'a pb::NodeProto> {
    g.node.iter().find(|n| n.output.iter().any(|o| o == t))
}

fn scale_of(g: &pb::GraphProto, name: &str) -> f32 {
    let t = g.initializer.iter().find(|t| t.name == name).unwrap();
    f32::from_le_bytes(t.raw_data[..4].try_into().unwrap())
}

#[test]
fn rewrite_structure_and_rules() {
    let m = model();
    let keep = default_float_nodes(&m);
    assert!(keep.contains_key("gs") && keep.contains_key("tanh"));
    assert!(
        keep.contains_key("offset_conv"),
        "the grid branch stays float: {keep:?}"
    );
    assert!(
        !keep.contains_key("pool"),
        "the trunk feeding GridSample's data input is not part of the grid branch"
    );
    let res = quantize_model(
        &m,
        &ranges(),
        &QdqOptions {
            per_channel: true,
            act_signed: false,
            keep_float: keep,
            ..Default::default()
        },
    )
    .unwrap();
    let g = res.model.graph.as_ref().unwrap();

    // Conv weight: int8 initializer + DequantizeLinear with axis 0 and 4 scales.
    let conv = g.node.iter().find(|n| n.name == "conv1").unwrap();
    let wdq = producer(g, &conv.input[1]).unwrap();
    assert_eq!(wdq.op_type, "DequantizeLinear");
    assert_eq!(
        wdq.attribute.iter().find(|a| a.name == "axis").unwrap().i,
        0
    );
    let wq = g
        .initializer
        .iter()
        .find(|t| t.name == wdq.input[0])
        .unwrap();
    assert_eq!(wq.data_type, DataType::Int8 as i32);
    let ws = g
        .initializer
        .iter()
        .find(|t| t.name == wdq.input[1])
        .unwrap();
    assert_eq!(ws.dims, vec![4]);
    // Bias: int32 with scale s_x * s_w.
    let bdq = producer(g, &conv.input[2]).unwrap();
    let bq = g
        .initializer
        .iter()
        .find(|t| t.name == bdq.input[0])
        .unwrap();
    assert_eq!(bq.data_type, DataType::Int32 as i32);
    let x_scale = res.activations["x"].scale;
    let bs = g
        .initializer
        .iter()
        .find(|t| t.name == bdq.input[1])
        .unwrap();
    let w_s0 = f32::from_le_bytes(ws.raw_data[..4].try_into().unwrap());
    let b_s0 = f32::from_le_bytes(bs.raw_data[..4].try_into().unwrap());
    assert!((b_s0 - x_scale * w_s0).abs() <= 1e-9);
    // Float weights that nothing reads are gone; the offset conv (float) keeps its float w2.
    assert!(!g.initializer.iter().any(|t| t.name == "w1"));
    assert!(g
        .initializer
        .iter()
        .any(|t| t.name == "w2" && t.data_type == DataType::Float as i32));
    // The conv reads x through a Q/DQ pair.
    let xdq = producer(g, &conv.input[0]).unwrap();
    assert_eq!(xdq.op_type, "DequantizeLinear");
    assert_eq!(
        producer(g, &xdq.input[0]).unwrap().op_type,
        "QuantizeLinear"
    );

    // Hard-sigmoid output spans exactly [0, 1].
    assert_eq!(
        res.activations["gate"],
        QParams::from_range(0.0, 1.0, false)
    );
    assert_eq!(res.activations["gate"].zero_point, 0);
    // SE Mul: both activation inputs quantized, each with its own scale.
    let mul = g.node.iter().find(|n| n.name == "se_mul").unwrap();
    assert!(mul
        .input
        .iter()
        .all(|i| producer(g, i).unwrap().op_type == "DequantizeLinear"));
    // Concat inputs share one scale (the union of ranges), and MaxPool passes it through.
    let (sm, sx, sc) = (
        res.activations["m"],
        res.activations["x"],
        res.activations["cat_out"],
    );
    assert_eq!(sm, sx);
    assert_eq!(sm, sc);
    assert_eq!(sc, QParams::from_range(-1.5, 2.5, false));
    // GridSample stays float: it reads the float p and grid, not dequantized ones.
    let gs = g.node.iter().find(|n| n.name == "gs").unwrap();
    assert_eq!(gs.input, vec!["p".to_string(), "grid".to_string()]);
    assert!(res.kept_float.iter().any(|k| k.node == "gs"));
    assert!(res
        .kept_float
        .iter()
        .any(|k| k.node == "offset_conv" && k.reason.contains("GridSample")));
    // Scales are stored as scalars for activations.
    let qx = producer(g, &xdq.input[0]).unwrap();
    assert!(scale_of(g, &qx.input[1]) > 0.0);
    // Topological order: every node input exists before it is read.
    let mut known: std::collections::HashSet<String> = g
        .initializer
        .iter()
        .map(|t| t.name.clone())
        .chain(g.input.iter().map(|i| i.name.clone()))
        .collect();
    for n in &g.node {
        for i in n.input.iter().filter(|i| !i.is_empty()) {
            assert!(
                known.contains(i),
                "node {} reads {i} before it is written",
                n.name
            );
        }
        known.extend(n.output.iter().cloned());
    }
}

#[test]
fn per_tensor_weights_and_keep_float() {
    let m = model();
    let mut keep: BTreeMap<String, String> = default_float_nodes(&m);
    keep.insert("se_mul".into(), "user".into());
    let res = quantize_model(
        &m,
        &ranges(),
        &QdqOptions {
            per_channel: false,
            act_signed: true,
            keep_float: keep,
            ..Default::default()
        },
    )
    .unwrap();
    let g = res.model.graph.as_ref().unwrap();
    let conv = g.node.iter().find(|n| n.name == "conv1").unwrap();
    let wdq = producer(g, &conv.input[1]).unwrap();
    assert!(wdq.attribute.iter().all(|a| a.name != "axis"));
    let ws = g
        .initializer
        .iter()
        .find(|t| t.name == wdq.input[1])
        .unwrap();
    assert!(ws.dims.is_empty());
    // The kept Mul reads float tensors; the gate (only read by the Mul) gets no Q/DQ.
    let mul = g.node.iter().find(|n| n.name == "se_mul").unwrap();
    assert_eq!(mul.input, vec!["c1".to_string(), "gate".to_string()]);
    assert!(!res.activations.contains_key("gate"));
    assert!(res.activations.values().all(|q| q.signed));
}

#[test]
fn errors() {
    let m = model();
    let res = quantize_model(&m, &ranges(), &QdqOptions::default()).unwrap();
    match quantize_model(&res.model, &ranges(), &QdqOptions::default()) {
        Err(QuantizeError::AlreadyQuantized { op_type, .. }) => assert!(op_type.contains("Linear")),
        other => panic!("expected AlreadyQuantized, got {other:?}"),
    }
    let mut keep = BTreeMap::new();
    keep.insert("nope".to_string(), "user".to_string());
    assert!(matches!(
        quantize_model(
            &m,
            &ranges(),
            &QdqOptions {
                keep_float: keep,
                ..Default::default()
            }
        ),
        Err(QuantizeError::UnknownNode(_))
    ));
    let mut old = model();
    old.opset_import[0].version = 11;
    assert!(matches!(
        quantize_model(&old, &ranges(), &QdqOptions::default()),
        Err(QuantizeError::OldOpset(11))
    ));
}

/// x -> Conv a -> Relu -> Conv b -> Relu -> y, where Conv b's output is also a graph output:
/// the first Conv + Relu is fused (no Q/DQ between them), the second is not (its output is
/// read outside the pair).
#[test]
fn conv_relu_pairs_are_fused() {
    let g = pb::GraphProto {
        node: vec![
            node("Conv", "ca", &["x", "wa"], &["a"], vec![]),
            node("Relu", "ra", &["a"], &["ar"], vec![]),
            node("Conv", "cb", &["ar", "wb"], &["b"], vec![]),
            node("Relu", "rb", &["b"], &["y"], vec![]),
        ],
        initializer: vec![
            f32_tensor("wa", &[3, 2, 1, 1], &seq(6, 1.0)),
            f32_tensor("wb", &[3, 3, 1, 1], &seq(9, 0.7)),
        ],
        input: vec![vi("x", &[1, 2, 4, 4])],
        output: vec![vi("y", &[1, 3, 4, 4]), vi("b", &[1, 3, 4, 4])],
        ..Default::default()
    };
    let m = opset17(g);
    let ranges = range_map(&[
        ("x", (-1.0, 1.0)),
        ("a", (-2.0, 3.0)),
        ("ar", (0.0, 3.0)),
        ("b", (-1.0, 2.0)),
        ("y", (0.0, 2.0)),
    ]);
    let res = quantize_model(&m, &ranges, &QdqOptions::default()).unwrap();
    let g = res.model.graph.as_ref().unwrap();
    let ra = g.node.iter().find(|n| n.name == "ra").unwrap();
    assert_eq!(
        ra.input,
        vec!["a".to_string()],
        "Relu reads the conv directly"
    );
    assert!(!res.activations.contains_key("a"));
    // The fused pair's output is quantized on the Relu's range for the next conv.
    assert_eq!(res.activations["ar"], QParams::from_range(0.0, 3.0, false));
    let cb = g.node.iter().find(|n| n.name == "cb").unwrap();
    assert_eq!(
        producer(g, &cb.input[0]).unwrap().op_type,
        "DequantizeLinear"
    );
    // Conv b's output is a graph output: the Relu after it reads a Q/DQ pair.
    let rb = g.node.iter().find(|n| n.name == "rb").unwrap();
    assert_eq!(
        producer(g, &rb.input[0]).unwrap().op_type,
        "DequantizeLinear"
    );
    assert!(res.quantized.iter().any(|n| n == "ra"));
}

/// A two-output detector: trunk conv -> relu, then a heatmap head (conv -> relu -> conv ->
/// sigmoid) and a box head (conv -> relu -> conv -> slice -> exp, concat with a slice).
fn two_head_detector() -> pb::ModelProto {
    let axis = |a| speck_quantize::proto::int_attr("axis", a);
    let g = pb::GraphProto {
        node: vec![
            node("Conv", "trunk", &["x", "wt"], &["t"], vec![]),
            node("Relu", "trunk_relu", &["t"], &["tr"], vec![]),
            node("Conv", "hm0", &["tr", "w3"], &["h0"], vec![]),
            node("Relu", "hm1", &["h0"], &["h1"], vec![]),
            node("Conv", "hm2", &["h1", "w1"], &["h2"], vec![]),
            node("Sigmoid", "hm_sig", &["h2"], &["heatmap"], vec![]),
            node("Conv", "reg0", &["tr", "w3"], &["r0"], vec![]),
            node("Relu", "reg1", &["r0"], &["r1"], vec![]),
            node("Conv", "reg2", &["r1", "w2"], &["r2"], vec![]),
            node(
                "Slice",
                "off_slice",
                &["r2", "s0", "s1", "ax"],
                &["o"],
                vec![],
            ),
            node("Sigmoid", "off_sig", &["o"], &["os"], vec![]),
            node(
                "Slice",
                "size_slice",
                &["r2", "s1", "s2", "ax"],
                &["sz"],
                vec![],
            ),
            node("Exp", "size_exp", &["sz"], &["se"], vec![]),
            node("Concat", "box_cat", &["os", "se"], &["box"], vec![axis(1)]),
        ],
        initializer: vec![
            f32_tensor("wt", &[3, 2, 1, 1], &seq(6, 1.0)),
            f32_tensor("w3", &[3, 3, 1, 1], &seq(9, 0.7)),
            f32_tensor("w1", &[1, 3, 1, 1], &seq(3, 0.5)),
            f32_tensor("w2", &[4, 3, 1, 1], &seq(12, 0.5)),
            speck_quantize::proto::i32_tensor("s0", &[1], &[0]),
            speck_quantize::proto::i32_tensor("s1", &[1], &[2]),
            speck_quantize::proto::i32_tensor("s2", &[1], &[4]),
            speck_quantize::proto::i32_tensor("ax", &[1], &[1]),
        ],
        input: vec![vi("x", &[1, 2, 4, 4])],
        output: vec![vi("heatmap", &[1, 1, 4, 4]), vi("box", &[1, 4, 4, 4])],
        ..Default::default()
    };
    opset17(g)
}

#[test]
fn output_heads_stay_float_down_to_where_they_split_from_the_trunk() {
    let m = two_head_detector();
    let names = |h| {
        output_float_nodes(&m, h)
            .into_keys()
            .collect::<Vec<String>>()
            .join(" ")
    };
    // The predictors (last convs) and the box decoding, whatever --int8-heads says.
    assert_eq!(
        names(OutputHeads::Int8),
        "box_cat hm2 hm_sig off_sig off_slice reg2 size_slice"
    );
    // Plus each head's own branch; the trunk both heads read stays int8 (and Exp, having no
    // int8 form, is not listed).
    assert_eq!(
        names(OutputHeads::Float),
        "box_cat hm0 hm1 hm2 hm_sig off_sig off_slice reg0 reg1 reg2 size_slice"
    );

    // In the rewrite, the trunk computes in int8 and hands the heads a float tensor: no Q/DQ
    // on the trunk's output (only float readers), one on the input.
    let mut r = range_map(&[("x", (-1.0, 1.0)), ("t", (-2.0, 2.0)), ("tr", (0.0, 2.0))]);
    for t in ["h0", "h1", "h2", "r0", "r1", "r2", "o", "os", "sz", "se"] {
        r.insert(t.into(), (-1.0, 1.0));
    }
    r.insert("heatmap".into(), (0.0, 1.0));
    r.insert("box".into(), (-1.0, 3.0));
    let res = quantize_model(
        &m,
        &r,
        &QdqOptions {
            per_channel: true,
            keep_float: output_float_nodes(&m, OutputHeads::Float),
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(res.quantized, vec!["trunk", "trunk_relu"]);
    assert_eq!(
        res.activations.keys().collect::<Vec<_>>(),
        vec!["x"],
        "only the trunk's input is quantized"
    );

    // A single-output model keeps only its last layer float: here the conv whose result
    // reaches the output only through Tanh and GridSample's grid (the pooled trunk, read by
    // GridSample's data input as well, stays int8).
    let c = model();
    assert_eq!(
        output_float_nodes(&c, OutputHeads::Float)
            .into_keys()
            .collect::<Vec<_>>(),
        vec!["offset_conv"]
    );
}

/// LDA-AQU's attention as exported: keys and values sampled at the same grid, keys plus a
/// bias, times the scaled query, summed over channels, softmaxed over the taps, times the
/// values, summed over the taps, then a conv. Only the attention between the samplers and the
/// tap sum stays float by default; the query's scaling and the conv after stay quantizable.
#[test]
fn lda_aqu_attention_stays_float_by_default() {
    let g = pb::GraphProto {
        node: vec![
            node("Conv", "kconv", &["x", "wk"], &["k"], vec![]),
            node("Conv", "vconv", &["x", "wv"], &["v"], vec![]),
            node("Tanh", "offsets", &["x"], &["grid"], vec![]),
            node("GridSample", "gs_k", &["k", "grid"], &["ks"], vec![]),
            node("GridSample", "gs_v", &["v", "grid"], &["vs"], vec![]),
            node("Reshape", "k_reshape", &["ks", "shape"], &["kr"], vec![]),
            node("Add", "k_bias", &["kr", "bias"], &["kb"], vec![]),
            node("Mul", "q_scale", &["x", "scale"], &["qs"], vec![]),
            node("Mul", "qk", &["qs", "kb"], &["qk"], vec![]),
            node("ReduceSum", "logits", &["qk", "axes"], &["lg"], vec![]),
            node("Softmax", "softmax", &["lg"], &["attn"], vec![]),
            node("Reshape", "v_reshape", &["vs", "shape"], &["vr"], vec![]),
            node("Mul", "weighted", &["attn", "vr"], &["wv_"], vec![]),
            node("ReduceSum", "tap_sum", &["wv_", "axes"], &["up"], vec![]),
            node("Conv", "after", &["up", "wo"], &["y"], vec![]),
        ],
        input: vec![vi("x", &[1, 2, 4, 4])],
        output: vec![vi("y", &[1, 2, 4, 4])],
        ..Default::default()
    };
    let m = opset17(g);
    let keep = default_float_nodes(&m);
    for n in [
        "k_reshape",
        "k_bias",
        "qk",
        "logits",
        "softmax",
        "v_reshape",
        "weighted",
        "tap_sum",
    ] {
        assert!(keep.contains_key(n), "{n} should stay float: {keep:?}");
    }
    for n in ["kconv", "vconv", "q_scale", "after"] {
        assert!(
            !keep.contains_key(n),
            "{n} is outside the attention: {keep:?}"
        );
    }
    assert!(keep["k_bias"].contains("LDA-AQU attention"), "{keep:?}");
    let int8 = speck_quantize::qdq::float_nodes_by_default_rules(&m, false);
    for n in ["k_bias", "qk", "weighted", "tap_sum"] {
        assert!(
            !int8.contains_key(n),
            "--int8-attention quantizes {n}: {int8:?}"
        );
    }
    assert!(int8.contains_key("softmax") && int8.contains_key("gs_k"));
}
