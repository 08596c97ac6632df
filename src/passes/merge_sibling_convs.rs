//! Convolutions that read the same input with the same geometry become one convolution with
//! their output channels stacked, then a Split into the original outputs.
//!
//! A detector's head runs several 3x3 convs on one feature map (heatmap and box branches);
//! each packed the same im2col tiles of that map. Stacked, the tiles are packed once for all
//! of them, and the Split is one copy of the outputs. Each output channel's sum is the same
//! as before (same weights, same order over `k`).

use crate::model::Graph;
use crate::ops::{Conv, Op};
use crate::tensor::Tensor;
use ndarray::{ArrayD, IxDyn};

/// A float conv's weights `[M, C, kh, kw]` and its bias (`None` where it has none), when they
/// are constants.
fn weights_and_bias(g: &Graph, node: usize) -> Option<(&ArrayD<f32>, Option<&ArrayD<f32>>)> {
    let n = &g.nodes[node];
    let Some(Tensor::F32(w)) = g.constant(n.inputs[1]) else {
        return None;
    };
    if w.ndim() != 4 {
        return None;
    }
    let bias = match n.inputs.get(2) {
        None => None,
        Some(&b) => match g.constant(b) {
            Some(Tensor::F32(b)) if b.len() == w.shape()[0] => Some(b),
            _ => return None,
        },
    };
    Some((w, bias))
}

/// Whether stacking saves work: a conv that reads its input in place (1x1, stride 1, no
/// padding) packs nothing, so stacking would only add the Split's copy.
fn packs_its_input(c: &Conv, w: &ArrayD<f32>) -> bool {
    let (kh, kw) = (w.shape()[2], w.shape()[3]);
    kh * kw > 1 || c.strides != [1, 1] || c.pads != [0; 4]
}

/// Merge every set of sibling convs; returns how many convs were folded into another.
pub fn merge_sibling_convs(g: &mut Graph) -> usize {
    let mut merged = 0;
    let mut i = 0;
    while i < g.nodes.len() {
        let Op::Conv(c) = &g.nodes[i].op else {
            i += 1;
            continue;
        };
        let c = c.clone();
        let x = g.nodes[i].inputs[0];
        let Some(shape0) = weights_and_bias(g, i)
            .filter(|(w, _)| c.group == 1 && !c.residual && packs_its_input(&c, w))
            .map(|(w, _)| w.shape().to_vec())
        else {
            i += 1;
            continue;
        };
        // Later convs on the same input with the same attributes and kernel.
        let siblings: Vec<usize> = (i + 1..g.nodes.len())
            .filter(|&j| {
                let n = &g.nodes[j];
                matches!(&n.op, Op::Conv(cj) if *cj == c)
                    && n.inputs[0] == x
                    && weights_and_bias(g, j).is_some_and(|(w, _)| w.shape()[1..] == shape0[1..])
            })
            .collect();
        if siblings.is_empty() {
            i += 1;
            continue;
        }
        let members: Vec<usize> = std::iter::once(i).chain(siblings.iter().copied()).collect();
        let (mut data, mut bias, mut sizes) = (vec![], vec![], vec![]);
        for &j in &members {
            let (w, b) = weights_and_bias(g, j).expect("checked above");
            let mj = w.shape()[0];
            data.extend(w.iter());
            match b {
                Some(b) => bias.extend(b.iter()),
                None => bias.resize(bias.len() + mj, 0.0),
            }
            sizes.push(mj);
        }
        let m: usize = sizes.iter().sum();
        let mut shape = shape0;
        shape[0] = m;
        let name = format!("{}+{}", g.nodes[i].name, siblings.len());
        let w = g.add_const(
            format!("{name}.weight"),
            Tensor::F32(ArrayD::from_shape_vec(IxDyn(&shape), data).expect("stacked weights")),
        );
        let b = g.add_const(
            format!("{name}.bias"),
            Tensor::F32(ArrayD::from_shape_vec(IxDyn(&[m]), bias).expect("stacked bias")),
        );
        let outputs: Vec<usize> = members.iter().map(|&j| g.nodes[j].outputs[0]).collect();
        let mut out_shape = g.values[outputs[0]].shape.clone();
        out_shape[1] = m;
        let y = g.add_value(format!("{name}.output"), out_shape);
        // The stacked conv and its Split take the first member's place (its input is ready
        // there); the other members go.
        for &j in siblings.iter().rev() {
            g.nodes.remove(j);
        }
        g.nodes[i] = crate::model::Node {
            name: name.clone(),
            op: Op::Conv(c),
            inputs: vec![x, w, b],
            outputs: vec![y],
        };
        g.nodes.insert(
            i + 1,
            crate::model::Node {
                name: format!("{name}.split"),
                op: Op::Split { axis: 1, sizes },
                inputs: vec![y],
                outputs,
            },
        );
        merged += siblings.len();
        i += 2;
    }
    merged
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::Activation;

    /// Two 3x3 convs and a 1x1 on one input, and a 3x3 with another activation: the two
    /// alike merge, the others stay; every output is what it was.
    #[test]
    fn siblings_merge_and_outputs_stay_the_same() {
        let mut rng = crate::ops::test_util::Rng(7);
        let mut g = Graph::default();
        let x = g.add_value("x", vec![1, 5, 9, 11]);
        g.inputs.push(x);
        let conv = |act| Conv {
            group: 1,
            strides: [1, 1],
            pads: [1, 1, 1, 1],
            dilations: [1, 1],
            activation: act,
            residual: false,
        };
        let mut add_conv = |g: &mut Graph, name: &str, m: usize, k: usize, c: Conv, bias: bool| {
            let w = g.add_const(format!("{name}.w"), Tensor::F32(rng.arr(&[m, 5, k, k])));
            let mut inputs = vec![x, w];
            if bias {
                inputs.push(g.add_const(format!("{name}.b"), Tensor::F32(rng.arr(&[m]))));
            }
            let pad = k / 2;
            let c = Conv {
                pads: [pad; 4],
                ..c
            };
            let y = g.add_value(format!("{name}.y"), vec![1, m, 9, 11]);
            g.nodes.push(crate::model::Node {
                name: name.into(),
                op: Op::Conv(c),
                inputs,
                outputs: vec![y],
            });
            g.outputs.push(y);
        };
        let relu = Some(Activation::Relu);
        add_conv(&mut g, "hm", 3, 3, conv(relu), true);
        add_conv(&mut g, "one", 2, 1, conv(relu), true);
        add_conv(&mut g, "reg", 4, 3, conv(relu), false);
        add_conv(&mut g, "other", 2, 3, conv(None), true);
        let input = rng.arr(&[1, 5, 9, 11]);
        let before = crate::passes::run_as_is(&g, &input);
        assert_eq!(merge_sibling_convs(&mut g), 1);
        g.remove_dead();
        let kinds: Vec<String> = g.nodes.iter().map(|n| n.op.name()).collect();
        assert_eq!(kinds, ["Conv+Relu", "Split", "Conv+Relu", "Conv"]);
        let after = crate::passes::run_as_is(&g, &input);
        crate::passes::assert_outputs_close(&before, &after);
    }
}
