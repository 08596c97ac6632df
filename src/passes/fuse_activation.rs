//! Conv -> activation becomes a Conv with the activation in its epilogue, for the activations
//! the conv kernels have a fast epilogue for.

use super::sole_consumer;
use crate::kernels::conv_f32::has_monomorphic_epilogue;
use crate::model::Graph;
use crate::ops::{Op, UnaryOp};

/// Fuse activations into the convolutions feeding them; returns how many were fused.
pub fn fuse_conv_activation(g: &mut Graph) -> usize {
    let mut fused = 0;
    let mut i = 0;
    while i < g.nodes.len() {
        let consumers = g.consumers();
        let node = &g.nodes[i];
        if let Op::Conv(c) = &node.op {
            // (after a fused residual Add the activation would apply before the Add)
            if c.activation.is_none() && !c.residual {
                if let Some(j) = sole_consumer(g, &consumers, node.outputs[0]) {
                    let act = match g.nodes[j].op {
                        Op::Unary(UnaryOp::Act(a)) if has_monomorphic_epilogue(a) => Some(a),
                        _ => None,
                    };
                    if let Some(a) = act {
                        let out = g.nodes[j].outputs[0];
                        if let Op::Conv(c) = &mut g.nodes[i].op {
                            c.activation = Some(a);
                        }
                        g.nodes[i].outputs[0] = out;
                        g.nodes.remove(j);
                        fused += 1;
                    }
                }
            }
        }
        i += 1;
    }
    fused
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Node;
    use crate::ops::{Activation, Conv};
    use crate::tensor::Tensor;

    /// x -> 3x3 conv -> `act`.
    fn graph(act: Activation) -> Graph {
        let mut g = Graph::default();
        let x = g.add_value("x", vec![1, 3, 5, 6]);
        g.inputs.push(x);
        let w = g.add_const(
            "w",
            Tensor::F32(crate::ops::test_util::Rng(2).arr(&[4, 3, 3, 3])),
        );
        let y = g.add_value("y", vec![1, 4, 5, 6]);
        let conv = Conv {
            group: 1,
            strides: [1, 1],
            pads: [1; 4],
            dilations: [1, 1],
            activation: None,
            residual: false,
        };
        let out = g.add_value("out", vec![1, 4, 5, 6]);
        for (op, inputs, output) in [
            (Op::Conv(conv), vec![x, w], y),
            (Op::Unary(UnaryOp::Act(act)), vec![y], out),
        ] {
            g.nodes.push(Node {
                name: format!("n{}", g.nodes.len()),
                op,
                inputs,
                outputs: vec![output],
            });
        }
        g.outputs.push(out);
        g
    }

    /// Activations with a monomorphic epilogue fuse; the others (slower fused) stay apart.
    #[test]
    fn fuses_only_activations_with_a_fast_epilogue() {
        for (act, fuses) in [
            (Activation::Relu, true),
            (Activation::HardSwish, true),
            (Activation::Sigmoid, true),
            (Activation::Tanh, true),
            (Activation::LeakyRelu(0.1), false),
            (Activation::Clip(0.0, 6.0), false),
            (Activation::Gelu, false),
            (Activation::Silu, false),
        ] {
            let mut g = graph(act);
            assert_eq!(fuse_conv_activation(&mut g), fuses as usize, "{act:?}");
            assert_eq!(g.nodes.len(), if fuses { 1 } else { 2 }, "{act:?}");
        }
    }
}
