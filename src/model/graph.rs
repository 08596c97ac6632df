//! The graph IR every pass and the planner work on.

use crate::ops::Op;
use crate::tensor::Tensor;
use std::collections::BTreeMap;
use std::sync::Arc;

/// Index of a value in [`Graph::values`].
pub type ValueId = usize;

/// A tensor flowing through the graph: a runtime activation or a constant.
#[derive(Clone, Debug)]
pub struct Value {
    /// Name (the ONNX tensor name where there is one).
    pub name: String,
    /// Static shape.
    pub shape: Vec<usize>,
    /// Constant data, for weights and folded values.
    pub constant: Option<Arc<Tensor>>,
    /// For a constant folded from a DequantizeLinear (int8 weights, int32 biases): the
    /// integers and their parameters, so that the int8 lowering can use them directly.
    pub dequantized: Option<Arc<QuantizedConst>>,
}

/// The integer form of a constant that was folded from a DequantizeLinear.
#[derive(Clone, Debug)]
pub struct QuantizedConst {
    /// the integers as imported (`I8`, `U8` or `I32`, same shape as the folded constant),
    /// shared with the importer's constant rather than widened: a QDQ model's weights are
    /// resident twice until the int8 lowering has run (these and the folded floats)
    pub values: Arc<Tensor>,
    /// scales and zero points (per tensor or along `params.axis`)
    pub params: crate::ops::QuantParams,
}

impl Value {
    /// Number of elements.
    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }

    /// True when the value has no element.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// One operation.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct Node {
    /// Name (the ONNX node name, or a generated one).
    pub name: String,
    /// What it computes.
    pub op: Op,
    /// Input values, in the op's order.
    pub inputs: Vec<ValueId>,
    /// Output values.
    pub outputs: Vec<ValueId>,
}

/// A model graph with static shapes. Nodes are kept in topological order.
#[derive(Clone, Debug, Default)]
pub struct Graph {
    /// All values.
    pub values: Vec<Value>,
    /// Nodes in execution order.
    pub nodes: Vec<Node>,
    /// Graph inputs (runtime values fed by the caller).
    pub inputs: Vec<ValueId>,
    /// Graph outputs.
    pub outputs: Vec<ValueId>,
    /// Declared output names (an output may be an alias of a value with another name).
    pub output_names: Vec<String>,
    /// Model metadata (ONNX `metadata_props`).
    pub metadata: BTreeMap<String, String>,
}

impl Graph {
    /// Add a runtime value.
    pub fn add_value(&mut self, name: impl Into<String>, shape: Vec<usize>) -> ValueId {
        self.values.push(Value {
            name: name.into(),
            shape,
            constant: None,
            dequantized: None,
        });
        self.values.len() - 1
    }

    /// Add a constant value.
    pub fn add_const(&mut self, name: impl Into<String>, t: Tensor) -> ValueId {
        let shape = t.shape().to_vec();
        self.values.push(Value {
            name: name.into(),
            shape,
            constant: Some(Arc::new(t)),
            dequantized: None,
        });
        self.values.len() - 1
    }

    /// The constant behind a value, if it is one.
    pub fn constant(&self, v: ValueId) -> Option<&Tensor> {
        self.values[v].constant.as_deref()
    }

    /// For each value, the nodes that read it.
    pub fn consumers(&self) -> Vec<Vec<usize>> {
        let mut c = vec![vec![]; self.values.len()];
        for (i, n) in self.nodes.iter().enumerate() {
            for &v in &n.inputs {
                if !c[v].contains(&i) {
                    c[v].push(i);
                }
            }
        }
        c
    }

    /// For each value, the node that writes it (None for inputs and constants).
    pub fn producers(&self) -> Vec<Option<usize>> {
        let mut p = vec![None; self.values.len()];
        for (i, n) in self.nodes.iter().enumerate() {
            for &v in &n.outputs {
                p[v] = Some(i);
            }
        }
        p
    }

    /// Remove nodes whose outputs nobody reads, then values nothing refers to.
    pub fn remove_dead(&mut self) {
        loop {
            let consumers = self.consumers();
            let before = self.nodes.len();
            let outputs = self.outputs.clone();
            self.nodes.retain(|n| {
                n.outputs
                    .iter()
                    .any(|v| !consumers[*v].is_empty() || outputs.contains(v))
            });
            if self.nodes.len() == before {
                break;
            }
        }
        self.compact_values();
    }

    /// Drop values no node, input or output refers to, renumbering the rest.
    fn compact_values(&mut self) {
        let mut used = vec![false; self.values.len()];
        for n in &self.nodes {
            for &v in n.inputs.iter().chain(&n.outputs) {
                used[v] = true;
            }
        }
        for &v in self.inputs.iter().chain(&self.outputs) {
            used[v] = true;
        }
        let mut remap = vec![usize::MAX; self.values.len()];
        let mut values = Vec::with_capacity(self.values.len());
        for (i, v) in std::mem::take(&mut self.values).into_iter().enumerate() {
            if used[i] {
                remap[i] = values.len();
                values.push(v);
            }
        }
        self.values = values;
        for n in &mut self.nodes {
            n.inputs.iter_mut().for_each(|v| *v = remap[*v]);
            n.outputs.iter_mut().for_each(|v| *v = remap[*v]);
        }
        self.inputs.iter_mut().for_each(|v| *v = remap[*v]);
        self.outputs.iter_mut().for_each(|v| *v = remap[*v]);
    }

    /// Replace every read of `from` by `to` (nodes and graph outputs).
    pub fn replace_uses(&mut self, from: ValueId, to: ValueId) {
        for n in &mut self.nodes {
            n.inputs
                .iter_mut()
                .filter(|v| **v == from)
                .for_each(|v| *v = to);
        }
        self.outputs
            .iter_mut()
            .filter(|v| **v == from)
            .for_each(|v| *v = to);
    }

    /// Parameter count: elements of all constants read by nodes, and the weights and biases
    /// held by int8 convs.
    pub fn parameter_count(&self) -> usize {
        self.parameters().0
    }

    /// Bytes of the model's parameters as stored (f32 constants 4 bytes each, int8 weights 1,
    /// their int32 biases and f32 scales 4): the "weights" of a memory footprint.
    pub fn weight_bytes(&self) -> usize {
        self.parameters().1
    }

    /// (elements, bytes) of the parameters.
    fn parameters(&self) -> (usize, usize) {
        let mut seen = vec![false; self.values.len()];
        let (mut n, mut bytes) = (0, 0);
        for node in &self.nodes {
            for &v in &node.inputs {
                if !seen[v] {
                    seen[v] = true;
                    if let Some(c) = &self.values[v].constant {
                        n += c.len();
                        bytes += c.byte_len();
                    }
                }
            }
            if let crate::ops::Op::Int8(q) = &node.op {
                if let crate::ops::QOp::Conv(c) = &q.op {
                    let w: usize = c.w_shape.iter().product();
                    n += w + c.bias.len();
                    bytes += c.weights.byte_len() + 4 * (c.bias.len() + c.w_scale.len());
                }
            }
        }
        (n, bytes)
    }

    /// Multiply-accumulates of one inference (conv, matmul, gemm, einsum, grid sampling).
    pub fn macs(&self) -> u64 {
        self.nodes.iter().map(|n| node_macs(self, n)).sum()
    }

    /// MACs per kind of work ([`mac_kind`]), for judging kernels against an instruction set's
    /// peak: a 1x1 convolution can use a dot-product instruction, a depthwise one cannot.
    pub fn macs_by_kind(&self) -> BTreeMap<String, u64> {
        let mut h = BTreeMap::new();
        for n in &self.nodes {
            let m = node_macs(self, n);
            if m > 0 {
                *h.entry(mac_kind(self, n)).or_insert(0) += m;
            }
        }
        h
    }

    /// Op type counts, sorted by name.
    pub fn op_histogram(&self) -> BTreeMap<String, usize> {
        let mut h = BTreeMap::new();
        for n in &self.nodes {
            *h.entry(n.op.name()).or_insert(0) += 1;
        }
        h
    }
}

/// What kind of multiply-accumulates a node does: `conv 1x1`, `conv depthwise 3x3`,
/// `conv 3x3` (dense or grouped), `fully connected` (a conv on a 1x1 map, Gemm), `matmul`,
/// or the op's name. Float and int8 convs count alike.
pub fn mac_kind(g: &Graph, n: &Node) -> String {
    let conv = |w: &[usize], group: usize| {
        let out = &g.values[n.outputs[0]].shape;
        let (kh, kw) = (w[2], w[3]);
        if out.len() == 4 && out[2] * out[3] == 1 && kh * kw == 1 {
            "fully connected".to_string()
        } else if group > 1 && w[1] == 1 {
            format!("conv depthwise {kh}x{kw}")
        } else {
            format!("conv {kh}x{kw}")
        }
    };
    match &n.op {
        Op::Conv(c) => conv(&g.values[n.inputs[1]].shape, c.group),
        Op::Int8(q) => match &q.op {
            crate::ops::QOp::Conv(c) => conv(&c.w_shape, c.conv.group),
            _ => n.op.name(),
        },
        Op::Gemm(_) => "fully connected".to_string(),
        Op::MatMul | Op::Einsum { .. } => "matmul".to_string(),
        _ => n.op.name(),
    }
}

/// MACs of one node (0 for data movement and element-wise ops).
pub fn node_macs(g: &Graph, n: &Node) -> u64 {
    let shape = |i: usize| -> &[usize] { &g.values[i].shape };
    let numel = |s: &[usize]| s.iter().product::<usize>() as u64;
    match &n.op {
        Op::Conv(c) => {
            let w = shape(n.inputs[1]);
            let per_out: u64 = w[1..].iter().product::<usize>() as u64;
            let _ = c;
            numel(shape(n.outputs[0])) * per_out
        }
        Op::MatMul => {
            let a = shape(n.inputs[0]);
            let k = *a.last().unwrap_or(&1) as u64;
            numel(shape(n.outputs[0])) * k
        }
        Op::Gemm(gm) => {
            let a = shape(n.inputs[0]);
            let k = if gm.trans_a { a[0] } else { a[a.len() - 1] } as u64;
            numel(shape(n.outputs[0])) * k
        }
        Op::Einsum { equation } => {
            // Product of every distinct index size.
            let mut sizes = std::collections::HashMap::new();
            let lhs = equation.split("->").next().unwrap_or("");
            for (term, &v) in lhs.split(',').zip(&n.inputs) {
                for (ch, &d) in term.trim().chars().zip(shape(v)) {
                    sizes.insert(ch, d as u64);
                }
            }
            sizes.values().product()
        }
        Op::GridSample(_) => numel(shape(n.outputs[0])) * 4,
        Op::Int8(q) => match &q.op {
            crate::ops::QOp::Conv(c) => {
                numel(shape(n.outputs[0])) * c.w_shape[1..].iter().product::<usize>() as u64
            }
            _ => 0,
        },
        Op::HeadChannelSum => numel(shape(n.inputs[0])),
        // Per output pixel and tap: a bilinear sample (4) of every key and value channel.
        Op::LdaAqu(a) => {
            let (k, v) = (shape(n.inputs[0]), shape(n.inputs[1]));
            let pixels = numel(shape(n.outputs[0])) / (v[1] * a.groups) as u64;
            pixels * a.groups as u64 * (k[1] + v[1]) as u64 * a.taps as u64 * 4
        }
        _ => 0,
    }
}
