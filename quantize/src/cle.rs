//! Cross-layer equalization (Nagel et al., "Data-Free Quantization", 2019).
//!
//! For a pair `Conv A -> [Relu] -> Conv B` where A's output feeds only B (through a
//! positively homogeneous activation: Relu, LeakyRelu, or none), output channel `c` of A is
//! divided by `s_c` and input channel `c` of B multiplied by `s_c`, with
//! `s_c = sqrt(r1_c / r2_c)` (r1: range of A's channel, r2: range of B's input channel). The
//! float function is unchanged (relu(x / s) = relu(x) / s for s > 0) and the per-channel
//! ranges become equal, which helps per-tensor weight quantization of depthwise convs most.

use crate::error::QuantizeError;
use crate::pb;
use crate::proto::{attr_i, consumers, initializer_index, set_f32, to_f32};
use ndarray::{ArrayD, Axis};
use serde::Serialize;

/// One equalized pair.
#[derive(Clone, Debug, Serialize)]
pub struct ClePair {
    /// first conv
    pub first: String,
    /// second conv
    pub second: String,
    /// activation between them ("" when none)
    pub activation: String,
    /// max over channels of r1/r2 before equalization
    pub max_ratio_before: f32,
}

struct Pair {
    a: usize,
    b: usize,
    act: String,
}

fn find_pairs(g: &pb::GraphProto, skip: &dyn Fn(&pb::NodeProto) -> bool) -> Vec<Pair> {
    let inits = initializer_index(g);
    let cons = consumers(g);
    let outputs: std::collections::HashSet<&str> =
        g.output.iter().map(|o| o.name.as_str()).collect();
    let only = |t: &str| -> Option<usize> {
        if outputs.contains(t) {
            return None;
        }
        match cons.get(t).map(Vec::as_slice) {
            Some([(n, 0)]) => Some(*n),
            _ => None,
        }
    };
    let conv_ok = |n: &pb::NodeProto| {
        n.op_type == "Conv"
            && !skip(n)
            && n.input.get(1).is_some_and(|w| inits.contains_key(w))
            && n.input
                .get(2)
                .is_none_or(|b| b.is_empty() || inits.contains_key(b))
    };
    let mut pairs = vec![];
    for (i, a) in g.node.iter().enumerate() {
        if !conv_ok(a) || a.output.len() != 1 {
            continue;
        }
        let Some(mut next) = only(&a.output[0]) else {
            continue;
        };
        let mut act = String::new();
        let n = &g.node[next];
        if n.op_type == "Relu" || n.op_type == "LeakyRelu" {
            act = n.op_type.clone();
            let Some(after) = only(&n.output[0]) else {
                continue;
            };
            next = after;
        }
        if conv_ok(&g.node[next]) {
            pairs.push(Pair { a: i, b: next, act });
        }
    }
    pairs
}

/// Equalize every eligible pair, `iterations` sweeps (chains such as expand -> depthwise ->
/// project converge over sweeps). Nodes for which `skip` is true are left alone.
pub fn equalize(
    model: &mut pb::ModelProto,
    iterations: usize,
    skip: &dyn Fn(&pb::NodeProto) -> bool,
) -> Result<Vec<ClePair>, QuantizeError> {
    let g = model.graph.as_mut().ok_or(QuantizeError::NoGraph)?;
    let pairs = find_pairs(g, skip);
    // Weights shared by several nodes cannot be rescaled for one of them.
    let cons = consumers(g);
    let shared = |t: &str| cons.get(t).is_some_and(|c| c.len() > 1);
    let pairs: Vec<Pair> = pairs
        .into_iter()
        .filter(|p| {
            let (a, b) = (&g.node[p.a], &g.node[p.b]);
            !a.input[1..]
                .iter()
                .chain(&b.input[1..2])
                .any(|t| !t.is_empty() && shared(t))
        })
        .collect();
    let mut report: Vec<ClePair> = vec![];
    for it in 0..iterations {
        for p in &pairs {
            let (a, b) = (g.node[p.a].clone(), g.node[p.b].clone());
            let inits = initializer_index(g);
            let w1 = to_f32(&g.initializer[inits[&a.input[1]]])?;
            let mut w1 = w1;
            let mut b1: Option<ArrayD<f32>> = match a.input.get(2).filter(|s| !s.is_empty()) {
                Some(name) => Some(to_f32(&g.initializer[inits[name]])?),
                None => None,
            };
            let mut w2 = to_f32(&g.initializer[inits[&b.input[1]]])?;
            let c = w1.shape()[0];
            let groups = attr_i(&b, "group").unwrap_or(1).max(1) as usize;
            let (m, cpg) = (w2.shape()[0], w2.shape().get(1).copied().unwrap_or(0));
            if w2.ndim() < 2 || cpg * groups != c || m % groups != 0 {
                return Err(QuantizeError::Node {
                    node: b.name.clone(),
                    msg: format!(
                        "weights {:?} with group {groups} do not match {c} input channels",
                        w2.shape()
                    ),
                });
            }
            let mpg = m / groups;
            let r1: Vec<f32> = w1
                .axis_iter(Axis(0))
                .map(|s| s.iter().fold(0.0f32, |acc, v| acc.max(v.abs())))
                .collect();
            let mut r2 = vec![0.0f32; c];
            for (mo, wm) in w2.axis_iter(Axis(0)).enumerate() {
                let g0 = mo / mpg;
                for (j, wj) in wm.axis_iter(Axis(0)).enumerate() {
                    let ch = g0 * cpg + j;
                    r2[ch] = wj.iter().fold(r2[ch], |acc, v| acc.max(v.abs()));
                }
            }
            let s: Vec<f32> = r1
                .iter()
                .zip(&r2)
                .map(|(&x, &y)| {
                    if x > 0.0 && y > 0.0 {
                        (x / y).sqrt().clamp(1e-4, 1e4)
                    } else {
                        1.0
                    }
                })
                .collect();
            if it == 0 {
                let max_ratio = r1
                    .iter()
                    .zip(&r2)
                    .filter(|(x, y)| **x > 0.0 && **y > 0.0)
                    .map(|(x, y)| (x / y).max(y / x))
                    .fold(1.0f32, f32::max);
                report.push(ClePair {
                    first: a.name.clone(),
                    second: b.name.clone(),
                    activation: p.act.clone(),
                    max_ratio_before: max_ratio,
                });
            }
            for (mut w, &sc) in w1.axis_iter_mut(Axis(0)).zip(&s) {
                w.mapv_inplace(|v| v / sc);
            }
            if let Some(b1) = b1.as_mut() {
                for (v, &sc) in b1.iter_mut().zip(&s) {
                    *v /= sc;
                }
            }
            for (mo, mut wm) in w2.axis_iter_mut(Axis(0)).enumerate() {
                let g0 = mo / mpg;
                for (j, mut wj) in wm.axis_iter_mut(Axis(0)).enumerate() {
                    let sc = s[g0 * cpg + j];
                    wj.mapv_inplace(|v| v * sc);
                }
            }
            set_f32(g, &a.input[1], &w1);
            if let Some(b1) = b1 {
                set_f32(g, &a.input[2], &b1);
            }
            set_f32(g, &b.input[1], &w2);
        }
    }
    Ok(report)
}
