//! Conv -> activation becomes a Conv with the activation in its epilogue.

use super::sole_consumer;
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
                    if let Op::Unary(UnaryOp::Act(a)) = g.nodes[j].op {
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
