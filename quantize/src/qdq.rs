//! The QDQ rewrite: a float `ModelProto` plus calibrated ranges in, a standard QDQ model out.
//!
//! - Every float activation that a quantized node reads gets one QuantizeLinear ->
//!   DequantizeLinear pair (per tensor, uint8 asymmetric or int8 asymmetric); quantized
//!   readers are rewired to the DequantizeLinear output, float readers keep the float tensor.
//! - Conv / Gemm / MatMul weights become int8 initializers with a DequantizeLinear, symmetric,
//!   per output channel (axis 0 for Conv, depthwise included) or per tensor.
//! - Conv / Gemm biases become int32 with scale `s_x * s_w[c]`.
//! - A Conv / Gemm read only by a Relu or Clip has no Q/DQ on its output (the activation is
//!   fused; one rounding, on the activation's range).
//! - Range rules: HardSigmoid and Sigmoid outputs use exactly [0, 1]; Concat inputs and output
//!   share one scale; pass-through ops (MaxPool, Reshape, Resize, ...) share their input's scale.
//!   Add and Mul inputs (residuals, squeeze-excite's feature x gate) keep their own scales.
//! - Nodes named in [`QdqOptions::keep_float`] stay float, as do ops without an int8 form.

use crate::calib::QParams;
use crate::error::QuantizeError;
use crate::pb;
use crate::proto::{self, attr_i, int_attr, node, to_f32};
use crate::weights::{quantize_bias, quantize_weight, QuantizedWeight};
use serde::Serialize;
use std::collections::{BTreeMap, HashMap, HashSet};

/// Ops that compute in int8 in a QDQ model.
pub const COMPUTE_OPS: &[&str] = &[
    "Conv",
    "Gemm",
    "MatMul",
    "Add",
    "Sub",
    "Mul",
    "Concat",
    "GlobalAveragePool",
    "AveragePool",
    "ReduceMean",
    "Relu",
    "LeakyRelu",
    "Clip",
    "HardSwish",
    "HardSigmoid",
    "Sigmoid",
];

/// Ops that move or select values: their output shares the input's scale.
pub const PASS_OPS: &[&str] = &[
    "MaxPool",
    "GlobalMaxPool",
    "Reshape",
    "Flatten",
    "Transpose",
    "Squeeze",
    "Unsqueeze",
    "Slice",
    "Split",
    "Identity",
    "Dropout",
    "Resize",
    "Upsample",
    "Pad",
];

/// Whether the rewrite can put an op in int8 (it computes in int8 or only moves values).
fn has_int8_form(op: &str) -> bool {
    COMPUTE_OPS.contains(&op) || PASS_OPS.contains(&op)
}

/// Ops kept float by default (precision-sensitive or coordinate math).
pub const DEFAULT_FLOAT_OPS: &[&str] = &["Softmax", "LayerNormalization", "Tanh", "GridSample"];

/// Settings of the rewrite.
#[derive(Clone, Debug, Default)]
pub struct QdqOptions {
    /// per output channel weights (else per tensor)
    pub per_channel: bool,
    /// int8 activations (else uint8)
    pub act_signed: bool,
    /// node name -> why it stays float
    pub keep_float: BTreeMap<String, String>,
    /// kept-float nodes whose outputs stay float too (their readers take float inputs);
    /// other kept-float nodes still have their outputs quantized for int8 readers
    pub float_outputs: HashSet<String>,
}

/// A node that stays float, and why.
#[derive(Clone, Debug, Serialize)]
pub struct KeptFloat {
    /// node name
    pub node: String,
    /// ONNX op type
    pub op_type: String,
    /// the reason
    pub reason: String,
}

/// What the rewrite produced.
#[derive(Clone, Debug)]
pub struct QdqResult {
    /// the QDQ model
    pub model: pb::ModelProto,
    /// nodes that compute in int8
    pub quantized: Vec<String>,
    /// nodes that stay float
    pub kept_float: Vec<KeptFloat>,
    /// parameters of each quantized activation
    pub activations: BTreeMap<String, QParams>,
    /// number of int8 weight tensors
    pub int8_weights: usize,
}

/// Give every unnamed node a unique name (`{op_type}_{index}`), so that nodes can be named in
/// `--keep-float` and in reports.
pub fn name_nodes(model: &mut pb::ModelProto) {
    if let Some(g) = model.graph.as_mut() {
        let mut used: HashSet<String> = g.node.iter().map(|n| n.name.clone()).collect();
        for (i, n) in g.node.iter_mut().enumerate() {
            if n.name.is_empty() {
                let mut name = format!("{}_{i}", n.op_type);
                while used.contains(&name) {
                    name.push('_');
                }
                used.insert(name.clone());
                n.name = name;
            }
        }
    }
}

/// The nodes that stay float by default: [`DEFAULT_FLOAT_OPS`], the branch that computes
/// each GridSample's grid (LDA-AQU's offsets and sampling coordinates), traced back from the
/// grid to where it joins tensors that other nodes also read, and the attention over the
/// sampled points ([`sampled_attention_nodes`]).
pub fn default_float_nodes(model: &pb::ModelProto) -> BTreeMap<String, String> {
    float_nodes_by_default_rules(model, true)
}

/// [`default_float_nodes`], with LDA-AQU's attention float (`attention_float`) or left to the
/// quantizer like any other nodes (what ONNX Runtime's `quantize_static` does).
pub fn float_nodes_by_default_rules(
    model: &pb::ModelProto,
    attention_float: bool,
) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let Some(g) = model.graph.as_ref() else {
        return out;
    };
    let cons = proto::consumers(g);
    for n in &g.node {
        if DEFAULT_FLOAT_OPS.contains(&n.op_type.as_str()) {
            out.insert(
                n.name.clone(),
                format!("default: {} stays float", n.op_type),
            );
        }
    }
    // Backward closure from the grids: a node belongs to the grid branch when everything it
    // writes is read only by branch nodes or as a GridSample's grid (input 1).
    let outputs: HashSet<&str> = g.output.iter().map(|o| o.name.as_str()).collect();
    let mut branch: HashSet<usize> = HashSet::new();
    let mut serves: HashMap<usize, String> = HashMap::new();
    loop {
        let mut changed = false;
        for (p, n) in g.node.iter().enumerate() {
            if branch.contains(&p) || n.op_type == "GridSample" {
                continue;
            }
            let mut readers = 0;
            let mut gs_name = None;
            let only_grid = n.output.iter().filter(|t| !t.is_empty()).all(|t| {
                !outputs.contains(t.as_str())
                    && cons.get(t).is_none_or(|rs| {
                        rs.iter().all(|(r, j)| {
                            readers += 1;
                            let is_grid = g.node[*r].op_type == "GridSample" && *j == 1;
                            if is_grid {
                                gs_name = Some(g.node[*r].name.clone());
                            } else if let Some(s) = serves.get(r) {
                                gs_name = Some(s.clone());
                            }
                            is_grid || branch.contains(r)
                        })
                    })
            });
            if only_grid && readers > 0 {
                branch.insert(p);
                serves.insert(p, gs_name.unwrap_or_default());
                changed = true;
            }
        }
        if !changed {
            break;
        }
    }
    for p in branch {
        let reason = format!(
            "LDA-AQU offsets/coordinates: computes the grid of GridSample '{}'",
            serves[&p]
        );
        out.entry(g.node[p].name.clone()).or_insert(reason);
    }
    let attention = if attention_float {
        sampled_attention_nodes(g)
    } else {
        vec![]
    };
    for (p, gs) in attention {
        let reason = format!(
            "LDA-AQU attention: runs float inside the fused sampler (reads GridSample '{gs}')"
        );
        out.entry(g.node[p].name.clone()).or_insert(reason);
    }
    out
}

/// Ops an LDA-AQU attention is built from between its GridSamples and its tap sum.
const ATTENTION_OPS: &[&str] = &[
    "Reshape",
    "Transpose",
    "Unsqueeze",
    "Squeeze",
    "Add",
    "Mul",
    "ReduceSum",
    "Softmax",
];

/// The nodes of each deformable attention over sampled points (LDA-AQU): everything on a path
/// from a GridSample's output to a tap sum (a ReduceSum of a Mul that reads a Softmax) made of
/// [`ATTENTION_OPS`] only, with the GridSample each one reads. speck's engine fuses exactly
/// these into one float op (`passes::fuse_lda_aqu`), so Q/DQ pairs inside would only round
/// its float intermediates (sampled keys and values, biased keys, attention): they cost
/// accuracy and time and save nothing. The query's scaling and the tap sum's readers are
/// outside and stay quantizable.
fn sampled_attention_nodes(g: &pb::GraphProto) -> Vec<(usize, String)> {
    let prod = proto::producers(g);
    let cons = proto::consumers(g);
    let op = |i: usize| g.node[i].op_type.as_str();
    let produced_by = |t: &str, want: &str| prod.get(t).is_some_and(|&i| op(i) == want);
    let mut found: BTreeMap<usize, String> = BTreeMap::new();
    for (end, n) in g.node.iter().enumerate() {
        if n.op_type != "ReduceSum" {
            continue;
        }
        let Some(&mul) = n.input.first().and_then(|t| prod.get(t)) else {
            continue;
        };
        if op(mul) != "Mul" || !g.node[mul].input.iter().any(|t| produced_by(t, "Softmax")) {
            continue;
        }
        // Backward from the tap sum through attention ops; GridSamples are where it stops.
        let mut back: HashSet<usize> = HashSet::from([end]);
        let mut samplers: Vec<usize> = vec![];
        let mut stack = vec![end];
        while let Some(i) = stack.pop() {
            for t in &g.node[i].input {
                let Some(&p) = prod.get(t) else { continue };
                if op(p) == "GridSample" {
                    if !samplers.contains(&p) {
                        samplers.push(p);
                    }
                } else if ATTENTION_OPS.contains(&op(p)) && back.insert(p) {
                    stack.push(p);
                }
            }
        }
        // Forward from the GridSamples, staying inside that set: the paths between them.
        let mut on_path: HashMap<usize, usize> = HashMap::new();
        let mut stack: Vec<(usize, usize)> = samplers.iter().map(|&s| (s, s)).collect();
        while let Some((i, gs)) = stack.pop() {
            for t in g.node[i].output.iter().filter(|t| !t.is_empty()) {
                for &(r, _) in cons.get(t).map(Vec::as_slice).unwrap_or_default() {
                    if back.contains(&r) && !on_path.contains_key(&r) {
                        on_path.insert(r, gs);
                        stack.push((r, gs));
                    }
                }
            }
        }
        let softmax_on_path = g.node[mul]
            .input
            .iter()
            .filter_map(|t| prod.get(t))
            .any(|s| op(*s) == "Softmax" && on_path.contains_key(s));
        if !on_path.contains_key(&end) || !softmax_on_path {
            continue;
        }
        for (i, gs) in on_path {
            found.entry(i).or_insert_with(|| g.node[gs].name.clone());
        }
    }
    found.into_iter().collect()
}

/// Ops that carry a model's multiply-accumulates: where an output's predictor starts.
const MAC_OPS: &[&str] = &["Conv", "ConvTranspose", "Gemm", "MatMul"];

/// How much of what serves the model's outputs stays float (see [`output_float_nodes`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OutputHeads {
    /// each output's own head branch stays float (the default)
    Float,
    /// only the predictor (last conv) and the decoding after it stay float
    Int8,
}

/// The nodes that serve the model's outputs and stay float by default, each with its reason.
///
/// - The *predictor* of each output: the last Conv / Gemm / MatMul on its way to the output and
///   everything after it (sigmoid, exp, slices, concat: the box decoding). Its output is read
///   as the detection itself, so rounding it to 8 bits moves scores and box edges directly;
///   and it costs almost nothing (a few output channels).
/// - With [`OutputHeads::Float`] and two or more outputs (a detector's heatmap and box heads),
///   each output's own *head branch*: the nodes whose results reach that output only, back to
///   where the heads split from the shared trunk. On speck's tiny-person detector this is where
///   int8 costs the most AP (`quantize/README.md`); the trunk stays int8.
///
/// Only nodes that would otherwise compute in int8 are listed.
pub fn output_float_nodes(model: &pb::ModelProto, heads: OutputHeads) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let Some(g) = model.graph.as_ref() else {
        return out;
    };
    let cons = proto::consumers(g);
    let graph_outputs: Vec<&str> = g.output.iter().map(|o| o.name.as_str()).collect();
    for &o in &graph_outputs {
        // One reverse pass over the (topologically sorted) nodes: a node joins a set when it
        // writes the output, or when everything it writes is read only by members (readers come
        // later in the order, so they have been decided).
        let closure = |predictor_only: bool| {
            let mut set = vec![false; g.node.len()];
            for p in (0..g.node.len()).rev() {
                let n = &g.node[p];
                let writes_o = n.output.iter().any(|t| t == o);
                let mut readers = 0;
                let joins = n.output.iter().filter(|t| !t.is_empty()).all(|t| {
                    (t == o || !graph_outputs.contains(&t.as_str()))
                        && cons.get(t).is_none_or(|rs| {
                            rs.iter().all(|&(r, _)| {
                                readers += 1;
                                set[r]
                                    && !(predictor_only
                                        && MAC_OPS.contains(&g.node[r].op_type.as_str()))
                            })
                        })
                });
                set[p] = writes_o || (joins && readers > 0);
            }
            set
        };
        let predictor = closure(true);
        let branch = if heads == OutputHeads::Float && graph_outputs.len() >= 2 {
            closure(false)
        } else {
            vec![false; g.node.len()]
        };
        for (p, n) in g.node.iter().enumerate() {
            if !has_int8_form(&n.op_type) {
                continue;
            }
            let reason = if predictor[p] {
                format!(
                    "output '{o}': the predictor (last conv) and the decoding after it stay float"
                )
            } else if branch[p] {
                format!("output '{o}': its own head branch stays float (--int8-heads quantizes it)")
            } else {
                continue;
            };
            out.entry(n.name.clone()).or_insert(reason);
        }
    }
    out
}

struct UnionFind(HashMap<String, String>);

impl UnionFind {
    fn find(&mut self, x: &str) -> String {
        let p = self.0.get(x).cloned().unwrap_or_else(|| x.to_string());
        if p == x {
            return p;
        }
        let r = self.find(&p);
        self.0.insert(x.to_string(), r.clone());
        r
    }
    fn union(&mut self, a: &str, b: &str) {
        let (ra, rb) = (self.find(a), self.find(b));
        if ra != rb {
            self.0.insert(ra, rb);
        }
    }
}

/// Input positions of a node that carry activations (not shapes, indices or weights).
fn data_inputs(n: &pb::NodeProto, is_init: &dyn Fn(&str) -> bool) -> Vec<usize> {
    let all = || {
        (0..n.input.len())
            .filter(|&i| !n.input[i].is_empty() && !is_init(&n.input[i]))
            .collect()
    };
    match n.op_type.as_str() {
        "Add" | "Sub" | "Mul" | "Concat" => all(),
        "Gemm" | "MatMul" => {
            let mut v = vec![0];
            if n.input.len() > 1 && !is_init(&n.input[1]) {
                v.push(1);
            }
            v
        }
        _ => vec![0],
    }
}

/// Rewrite `model` into a QDQ model. `ranges` holds the calibrated `(lo, hi)` of every
/// runtime float tensor (tensors without a range are never quantized).
pub fn quantize_model(
    model: &pb::ModelProto,
    ranges: &HashMap<String, (f32, f32)>,
    opts: &QdqOptions,
) -> Result<QdqResult, QuantizeError> {
    proto::check_float_model(model)?;
    let opset = proto::opset(model);
    if opset < 13 {
        return Err(QuantizeError::OldOpset(opset));
    }
    let mut model = model.clone();
    name_nodes(&mut model);
    let g = model.graph.as_ref().ok_or(QuantizeError::NoGraph)?;
    for name in opts.keep_float.keys() {
        if !g.node.iter().any(|n| &n.name == name) {
            return Err(QuantizeError::UnknownNode(name.clone()));
        }
    }
    let inits = proto::initializer_index(g);
    let is_init = |t: &str| inits.contains_key(t);
    let is_float_init = |t: &str| {
        inits.get(t).is_some_and(|&i| {
            g.initializer[i].data_type == pb::tensor_proto::DataType::Float as i32
        })
    };

    // Which nodes compute in int8.
    let mut kept_float = vec![];
    let mut quantized_nodes: Vec<bool> = vec![false; g.node.len()];
    for (i, n) in g.node.iter().enumerate() {
        let op = n.op_type.as_str();
        let known = has_int8_form(op);
        let reads_activation = n.input.iter().any(|t| ranges.contains_key(t));
        if let Some(reason) = opts.keep_float.get(&n.name) {
            kept_float.push(KeptFloat {
                node: n.name.clone(),
                op_type: n.op_type.clone(),
                reason: reason.clone(),
            });
        } else if known && reads_activation {
            quantized_nodes[i] = true;
        } else if !known && n.output.iter().any(|t| ranges.contains_key(t)) {
            kept_float.push(KeptFloat {
                node: n.name.clone(),
                op_type: n.op_type.clone(),
                reason: format!("no int8 form for {} in this quantizer", n.op_type),
            });
        }
    }

    // Tensors that get a Q/DQ pair (not the outputs of nodes kept float with their outputs).
    let float_tensors: HashSet<&str> = g
        .node
        .iter()
        .filter(|n| opts.float_outputs.contains(&n.name))
        .flat_map(|n| n.output.iter().map(String::as_str))
        .collect();
    let mut qdq_tensors: HashSet<String> = HashSet::new();
    for (i, n) in g.node.iter().enumerate() {
        if quantized_nodes[i] {
            for j in data_inputs(n, &is_init) {
                let t = &n.input[j];
                if ranges.contains_key(t) && !is_init(t) && !float_tensors.contains(t.as_str()) {
                    qdq_tensors.insert(t.clone());
                }
            }
        }
    }

    // A Conv / Gemm whose output only a Relu or Clip reads computes with the activation
    // fused (as ONNX Runtime's QDQ fusion and speck's int8 lowering do): no Q/DQ between
    // them, so the output is rounded once, on the activation's range, instead of first on
    // the pre-activation range (whose negative half the Relu then throws away).
    let prod = proto::producers(g);
    let cons = proto::consumers(g);
    let graph_outputs: HashSet<&str> = g.output.iter().map(|o| o.name.as_str()).collect();
    qdq_tensors.retain(|t| {
        let fused = prod.get(t.as_str()).is_some_and(|&p| {
            quantized_nodes[p] && matches!(g.node[p].op_type.as_str(), "Conv" | "Gemm")
        }) && !graph_outputs.contains(t.as_str())
            && cons.get(t.as_str()).is_some_and(|c| {
                c.len() == 1
                    && quantized_nodes[c[0].0]
                    && matches!(g.node[c[0].0].op_type.as_str(), "Relu" | "Clip")
            });
        !fused
    });

    // Shared scales.
    let mut uf = UnionFind(HashMap::new());
    for (i, n) in g.node.iter().enumerate() {
        if !quantized_nodes[i] {
            continue;
        }
        let op = n.op_type.as_str();
        if PASS_OPS.contains(&op) {
            let x = &n.input[0];
            for o in &n.output {
                if ranges.contains_key(x) && ranges.contains_key(o) {
                    uf.union(x, o);
                }
            }
        } else if op == "Concat" {
            for t in n.input.iter().chain(&n.output) {
                if ranges.contains_key(t) {
                    uf.union(t, &n.output[0]);
                }
            }
        }
    }
    let fixed_unit = |t: &str| {
        prod.get(t)
            .is_some_and(|&p| matches!(g.node[p].op_type.as_str(), "HardSigmoid" | "Sigmoid"))
    };
    let mut group_range: HashMap<String, (f32, f32)> = HashMap::new();
    for (t, &(lo, hi)) in ranges {
        let r = if fixed_unit(t) { (0.0, 1.0) } else { (lo, hi) };
        let root = uf.find(t);
        let e = group_range.entry(root).or_insert(r);
        *e = (e.0.min(r.0), e.1.max(r.1));
    }
    let mut activations: BTreeMap<String, QParams> = BTreeMap::new();
    for t in &qdq_tensors {
        let (lo, hi) = group_range[&uf.find(t)];
        activations.insert(t.clone(), QParams::from_range(lo, hi, opts.act_signed));
    }

    // Emit the new graph.
    let mut used: HashSet<String> = g
        .node
        .iter()
        .flat_map(|n| n.input.iter().chain(&n.output))
        .cloned()
        .collect();
    used.extend(g.initializer.iter().map(|t| t.name.clone()));
    used.extend(g.input.iter().map(|t| t.name.clone()));
    let mut fresh = |base: String| {
        let mut s = base;
        while used.contains(&s) {
            s.push('_');
        }
        used.insert(s.clone());
        s
    };
    let mut new_nodes: Vec<pb::NodeProto> = vec![];
    let mut new_inits: Vec<pb::TensorProto> = vec![];
    let mut dq_name: HashMap<String, String> = HashMap::new();
    let emit_act = |t: &str,
                    new_nodes: &mut Vec<pb::NodeProto>,
                    new_inits: &mut Vec<pb::TensorProto>,
                    dq_name: &mut HashMap<String, String>,
                    fresh: &mut dyn FnMut(String) -> String| {
        let q = activations[t];
        let (s, z, qo, dqo) = (
            fresh(format!("{t}_scale")),
            fresh(format!("{t}_zero_point")),
            fresh(format!("{t}_quantized")),
            fresh(format!("{t}_dequantized")),
        );
        new_inits.push(proto::f32_tensor(&s, &[], &[q.scale]));
        new_inits.push(if q.signed {
            proto::i8_tensor(&z, &[], &[q.zero_point as i8])
        } else {
            proto::u8_tensor(&z, &[], &[q.zero_point as u8])
        });
        let qn = fresh(format!("{t}_QuantizeLinear"));
        let dqn = fresh(format!("{t}_DequantizeLinear"));
        new_nodes.push(node("QuantizeLinear", &qn, &[t, &s, &z], &[&qo], vec![]));
        new_nodes.push(node(
            "DequantizeLinear",
            &dqn,
            &[&qo, &s, &z],
            &[&dqo],
            vec![],
        ));
        dq_name.insert(t.to_string(), dqo);
    };
    for inp in &g.input {
        if qdq_tensors.contains(&inp.name) {
            emit_act(
                &inp.name,
                &mut new_nodes,
                &mut new_inits,
                &mut dq_name,
                &mut fresh,
            );
        }
    }
    let mut weight_cache: HashMap<String, (String, QuantizedWeight)> = HashMap::new();
    let mut int8_weights = 0;
    let mut quantized = vec![];
    for (i, n) in g.node.iter().enumerate() {
        let mut n2 = n.clone();
        if quantized_nodes[i] {
            quantized.push(n.name.clone());
            for j in data_inputs(n, &is_init) {
                if let Some(d) = dq_name.get(&n.input[j]) {
                    n2.input[j] = d.clone();
                }
            }
            let op = n.op_type.as_str();
            let weight_axis = match op {
                "Conv" => Some(0),
                "Gemm" => Some(if attr_i(n, "transB").unwrap_or(0) != 0 {
                    0
                } else {
                    1
                }),
                "MatMul" => Some(1),
                _ => None,
            };
            if let Some(axis) = weight_axis {
                let wname = n.input.get(1).cloned().unwrap_or_default();
                let w_ok = is_float_init(&wname)
                    && (op != "MatMul" || g.initializer[inits[&wname]].dims.len() == 2);
                if w_ok {
                    if !weight_cache.contains_key(&wname) {
                        let w = to_f32(&g.initializer[inits[&wname]])?;
                        let axis = (opts.per_channel && w.ndim() > axis).then_some(axis);
                        let qw = quantize_weight(w.view(), axis);
                        let (qn, s, z, dqo) = (
                            fresh(format!("{wname}_quantized")),
                            fresh(format!("{wname}_scale")),
                            fresh(format!("{wname}_zero_point")),
                            fresh(format!("{wname}_dequantized")),
                        );
                        let sshape: Vec<usize> = if axis.is_some() {
                            vec![qw.scales.len()]
                        } else {
                            vec![]
                        };
                        let qdata: Vec<i8> = qw.q.iter().copied().collect();
                        new_inits.push(proto::i8_tensor(&qn, qw.q.shape(), &qdata));
                        new_inits.push(proto::f32_tensor(&s, &sshape, &qw.scales));
                        new_inits.push(proto::i8_tensor(&z, &sshape, &vec![0i8; qw.scales.len()]));
                        let attrs = axis
                            .map(|a| vec![int_attr("axis", a as i64)])
                            .unwrap_or_default();
                        let dqn = fresh(format!("{wname}_DequantizeLinear"));
                        new_nodes.push(node(
                            "DequantizeLinear",
                            &dqn,
                            &[&qn, &s, &z],
                            &[&dqo],
                            attrs,
                        ));
                        weight_cache.insert(wname.clone(), (dqo, qw));
                        int8_weights += 1;
                    }
                    let (dqo, qw) = weight_cache[&wname].clone();
                    n2.input[1] = dqo;
                    // Bias: int32 with scale s_x * s_w.
                    let bname = n.input.get(2).cloned().unwrap_or_default();
                    let x_q = activations.get(&n.input[0]).copied();
                    if let (true, Some(xq), false) = (is_float_init(&bname), x_q, op == "MatMul") {
                        let b = to_f32(&g.initializer[inits[&bname]])?;
                        let per_axis = qw.scales.len() > 1;
                        if b.ndim() == 1 && (!per_axis || b.len() == qw.scales.len()) {
                            let bdata: Vec<f32> = b.iter().copied().collect();
                            let (bq, mut bs) = quantize_bias(&bdata, xq.scale, &qw);
                            let sshape: Vec<usize> = if per_axis { vec![bs.len()] } else { vec![] };
                            if !per_axis {
                                bs.truncate(1);
                            }
                            let (qn, s, z, dqo) = (
                                fresh(format!("{bname}_quantized")),
                                fresh(format!("{bname}_scale")),
                                fresh(format!("{bname}_zero_point")),
                                fresh(format!("{bname}_dequantized")),
                            );
                            new_inits.push(proto::i32_tensor(&qn, b.shape(), &bq));
                            new_inits.push(proto::f32_tensor(&s, &sshape, &bs));
                            new_inits.push(proto::i32_tensor(&z, &sshape, &vec![0; bs.len()]));
                            let attrs = if per_axis {
                                vec![int_attr("axis", 0)]
                            } else {
                                vec![]
                            };
                            let dqn = fresh(format!("{bname}_DequantizeLinear"));
                            new_nodes.push(node(
                                "DequantizeLinear",
                                &dqn,
                                &[&qn, &s, &z],
                                &[&dqo],
                                attrs,
                            ));
                            n2.input[2] = dqo;
                        }
                    }
                }
            }
        }
        new_nodes.push(n2);
        for o in &n.output {
            if qdq_tensors.contains(o) {
                emit_act(o, &mut new_nodes, &mut new_inits, &mut dq_name, &mut fresh);
            }
        }
    }

    // Assemble; drop float initializers nothing reads any more.
    let g = model.graph.as_mut().expect("checked above");
    g.node = new_nodes;
    let mut read: HashSet<&str> = g
        .node
        .iter()
        .flat_map(|n| n.input.iter().map(String::as_str))
        .collect();
    read.extend(g.output.iter().map(|o| o.name.as_str()));
    let keep: HashSet<String> = g
        .initializer
        .iter()
        .filter(|t| read.contains(t.name.as_str()))
        .map(|t| t.name.clone())
        .collect();
    g.initializer.retain(|t| keep.contains(&t.name));
    let inits_now: HashSet<String> = proto::initializer_index(g).into_keys().collect();
    let removed: HashSet<String> = inits
        .keys()
        .filter(|k| !inits_now.contains(*k))
        .cloned()
        .collect();
    g.input.retain(|i| !removed.contains(&i.name));
    g.initializer.extend(new_inits);
    model.ir_version = model.ir_version.max(7);
    Ok(QdqResult {
        model,
        quantized,
        kept_float,
        activations,
        int8_weights,
    })
}
