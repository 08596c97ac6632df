//! Conv -> Add (a residual connection) becomes one Conv that adds the other input as it stores
//! its output, so the conv's output does not go out to memory and come back for the Add.

use super::sole_consumer;
use crate::model::Graph;
use crate::ops::{BinaryOp, Op};

/// A float Add of two same-shape tensors, one of them a conv's output read by nothing else,
/// goes into that conv: the Add node becomes the conv, with the Add's other input appended as
/// its last ([`crate::ops::Conv::residual`], added after the conv's activation), and the conv
/// node is left dead (for `remove_dead`). Returns how many were fused.
pub fn fuse_conv_add(g: &mut Graph) -> usize {
    let producers = g.producers();
    let consumers = g.consumers();
    let mut fused = 0;
    for i in 0..g.nodes.len() {
        let Op::Binary(BinaryOp::Add) = g.nodes[i].op else {
            continue;
        };
        let ins = g.nodes[i].inputs.clone();
        if ins.len() != 2 || ins[0] == ins[1] {
            continue; // x + x: the conv's output would be its own skip
        }
        let shape = &g.values[g.nodes[i].outputs[0]].shape;
        // the first input that is a fusable conv's output; the other is the skip
        let pick = [0, 1].into_iter().find_map(|side| {
            let v = ins[side];
            let p = producers[v]?;
            let Op::Conv(c) = &g.nodes[p].op else {
                return None;
            };
            let fusable = !c.residual
                && sole_consumer(g, &consumers, v) == Some(i)
                && g.values[v].shape == *shape
                && g.values[ins[1 - side]].shape == *shape;
            fusable.then(|| (p, c.clone(), ins[1 - side]))
        });
        let Some((p, mut conv, skip)) = pick else {
            continue;
        };
        conv.residual = true;
        let mut inputs = g.nodes[p].inputs.clone();
        inputs.push(skip);
        g.nodes[i].op = Op::Conv(conv);
        g.nodes[i].inputs = inputs;
        fused += 1;
    }
    fused
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Node;
    use crate::ops::{Activation, Conv};
    use crate::tensor::Tensor;

    /// A residual block (3x3 conv + Relu, 1x1 conv, Add of the block's input) fuses, with the
    /// skip on either side of the Add; an Add whose conv output is also a graph output, and
    /// one that broadcasts, stay; every output is what it was.
    #[test]
    fn residual_adds_fuse_and_outputs_stay_the_same() {
        let mut rng = crate::ops::test_util::Rng(11);
        let mut g = Graph::default();
        let x = g.add_value("x", vec![1, 4, 6, 7]);
        g.inputs.push(x);
        let mut conv = |g: &mut Graph, name: &str, input, k: usize, act, bias: bool| {
            let w = g.add_const(format!("{name}.w"), Tensor::F32(rng.arr(&[4, 4, k, k])));
            let mut inputs = vec![input, w];
            if bias {
                inputs.push(g.add_const(format!("{name}.b"), Tensor::F32(rng.arr(&[4]))));
            }
            let y = g.add_value(format!("{name}.y"), vec![1, 4, 6, 7]);
            g.nodes.push(Node {
                name: name.into(),
                op: Op::Conv(Conv {
                    group: 1,
                    strides: [1, 1],
                    pads: [k / 2; 4],
                    dilations: [1, 1],
                    activation: act,
                    residual: false,
                }),
                inputs,
                outputs: vec![y],
            });
            y
        };
        let add = |g: &mut Graph, name: &str, a, b, shape: Vec<usize>| {
            let y = g.add_value(format!("{name}.y"), shape);
            g.nodes.push(Node {
                name: name.into(),
                op: Op::Binary(BinaryOp::Add),
                inputs: vec![a, b],
                outputs: vec![y],
            });
            y
        };
        let h = conv(&mut g, "expand", x, 3, Some(Activation::Relu), true);
        let p = conv(&mut g, "project", h, 1, None, false);
        let r1 = add(&mut g, "add1", x, p, vec![1, 4, 6, 7]); // skip first
        let q = conv(&mut g, "second", r1, 1, Some(Activation::Relu), true);
        let r2 = add(&mut g, "add2", q, r1, vec![1, 4, 6, 7]); // conv first
        let o = conv(&mut g, "observed", r2, 1, None, true);
        let r3 = add(&mut g, "add3", o, r2, vec![1, 4, 6, 7]);
        let s = conv(&mut g, "bcast", r3, 1, None, true);
        let row = crate::ops::test_util::Rng(12).arr(&[1, 4, 1, 1]);
        let bias = g.add_const("row", Tensor::F32(row));
        let r4 = add(&mut g, "add4", s, bias, vec![1, 4, 6, 7]);
        g.outputs = vec![o, r3, r4];
        let input = crate::ops::test_util::Rng(13).arr(&[1, 4, 6, 7]);
        let before = crate::passes::run_as_is(&g, &input);
        assert_eq!(fuse_conv_add(&mut g), 2);
        g.remove_dead();
        let kinds: Vec<String> = g.nodes.iter().map(|n| n.op.name()).collect();
        assert_eq!(
            kinds,
            [
                "Conv+Relu",
                "Conv+Add",
                "Conv+Relu+Add",
                "Conv",
                "Add",
                "Conv",
                "Add"
            ]
        );
        let after = crate::passes::run_as_is(&g, &input);
        crate::passes::assert_outputs_close(&before, &after);
    }
}
