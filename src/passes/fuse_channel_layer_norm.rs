//! Transpose to channels-last -> LayerNormalization over the last axis -> Transpose back
//! becomes one [`Op::ChannelLayerNorm`] on the channels-first tensor.
//!
//! PyTorch's channels-first LayerNorm is exported this way (the LDA-AQU blocks' input norm and
//! their offset branch's norm: six per detector). The two transposes were a full copy each
//! way and the LayerNorm read channel runs one pixel at a time; the fused op normalises each
//! pixel's channels in place of the three, with the same arithmetic per pixel. Per-tensor
//! fake quantization between the LayerNorm and the back-transpose (a QDQ pair the int8
//! lowering kept in float) acts value by value, so it moves to the channels-first side too.

use super::sole_consumer;
use crate::model::Graph;
use crate::ops::{Op, QOp};

/// `[0, 2, .., rank - 1, 1]`: channels to the last axis.
fn to_channels_last(rank: usize) -> Vec<usize> {
    (0..rank).filter(|&a| a != 1).chain([1]).collect()
}

/// `[0, rank - 1, 1, .., rank - 2]`: channels back to axis 1.
fn to_channels_first(rank: usize) -> Vec<usize> {
    [0, rank - 1].into_iter().chain(1..rank - 1).collect()
}

/// The match at node `t0`: (LayerNorm node, fake-quantize nodes after it, back-transpose).
fn find(g: &Graph, consumers: &[Vec<usize>], t0: usize) -> Option<(usize, Vec<usize>, usize)> {
    let Op::Transpose { perm } = &g.nodes[t0].op else {
        return None;
    };
    let rank = g.values[g.nodes[t0].inputs[0]].shape.len();
    if rank < 3 || *perm != to_channels_last(rank) {
        return None;
    }
    let xt = g.nodes[t0].outputs[0];
    let ln = sole_consumer(g, consumers, xt)?;
    match &g.nodes[ln].op {
        Op::LayerNorm { axis, .. } if *axis == rank - 1 && g.nodes[ln].inputs[0] == xt => {}
        _ => return None,
    }
    let mut chain = vec![];
    let mut cur = ln;
    loop {
        let next = sole_consumer(g, consumers, g.nodes[cur].outputs[0])?;
        match &g.nodes[next].op {
            Op::Transpose { perm } if *perm == to_channels_first(rank) => {
                return Some((ln, chain, next))
            }
            Op::Int8(q) if matches!(q.op, QOp::FakeQuant(_)) => chain.push(next),
            _ => return None,
        }
        cur = next;
    }
}

/// Fuse every such LayerNorm; returns how many.
pub fn fuse_channel_layer_norm(g: &mut Graph) -> usize {
    let mut fused = 0;
    let mut i = 0;
    while i < g.nodes.len() {
        let consumers = g.consumers();
        let Some((ln, chain, t1)) = find(g, &consumers, i) else {
            i += 1;
            continue;
        };
        let x = g.nodes[i].inputs[0];
        let shape = g.values[x].shape.clone();
        let Op::LayerNorm { epsilon, .. } = g.nodes[ln].op else {
            unreachable!("matched a LayerNorm")
        };
        g.nodes[ln].op = Op::ChannelLayerNorm { epsilon };
        g.nodes[ln].inputs[0] = x;
        // every value between the transposes takes the channels-first shape
        for &k in std::iter::once(&ln).chain(&chain) {
            let v = g.nodes[k].outputs[0];
            g.values[v].shape = shape.clone();
            if let Op::Int8(q) = &mut g.nodes[k].op {
                q.out_shape = shape.clone();
            }
        }
        // the last of them writes what the back-transpose wrote
        let last = *chain.last().unwrap_or(&ln);
        g.nodes[last].outputs[0] = g.nodes[t1].outputs[0];
        g.nodes.remove(t1);
        g.nodes.remove(i);
        fused += 1;
    }
    fused
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Node;
    use crate::ops::{Activation, Int8Op, QRound, QType, UnaryOp};
    use crate::tensor::Tensor;

    fn node(g: &mut Graph, name: &str, op: Op, inputs: Vec<usize>, outputs: Vec<usize>) {
        g.nodes.push(Node {
            name: name.into(),
            op,
            inputs,
            outputs,
        });
    }

    /// x `[1, C, H, W]` -> Transpose -> LayerNorm -> (fake quant) -> Transpose `back` -> Relu.
    fn graph(fake_quant: bool, back: Vec<usize>) -> Graph {
        let (c, h, w) = (6, 5, 7);
        let mut rng = crate::ops::test_util::Rng(5);
        let mut g = Graph::default();
        let x = g.add_value("x", vec![1, c, h, w]);
        g.inputs.push(x);
        let xt = g.add_value("xt", vec![1, h, w, c]);
        node(
            &mut g,
            "t0",
            Op::Transpose {
                perm: vec![0, 2, 3, 1],
            },
            vec![x],
            vec![xt],
        );
        let s = g.add_const("s", Tensor::F32(rng.arr(&[c])));
        let b = g.add_const("b", Tensor::F32(rng.arr(&[c])));
        let mut y = g.add_value("y", vec![1, h, w, c]);
        let ln = Op::LayerNorm {
            axis: 3,
            epsilon: 1e-5,
        };
        node(&mut g, "ln", ln, vec![xt, s, b], vec![y]);
        if fake_quant {
            let q = QType {
                scale: 0.05,
                zero_point: 128,
                signed: false,
            };
            let fq = g.add_value("fq", vec![1, h, w, c]);
            let op = Int8Op {
                op: QOp::FakeQuant(QRound {
                    quant: q,
                    dequant: q,
                }),
                out_shape: vec![1, h, w, c],
            };
            node(&mut g, "fq", Op::Int8(Box::new(op)), vec![y], vec![fq]);
            y = fq;
        }
        let shape = crate::ops::transpose_shape(&back, &[1, h, w, c]).unwrap();
        let yt = g.add_value("yt", shape.clone());
        node(
            &mut g,
            "t1",
            Op::Transpose { perm: back },
            vec![y],
            vec![yt],
        );
        let out = g.add_value("out", shape);
        let relu = Op::Unary(UnaryOp::Act(Activation::Relu));
        node(&mut g, "relu", relu, vec![yt], vec![out]);
        g.outputs.push(out);
        g
    }

    fn run(g: &Graph) -> Vec<f32> {
        let opts = crate::exec::EngineOptions {
            optimize: false,
            threads: 1,
            ..Default::default()
        };
        let mut e = crate::exec::Engine::new(g.clone(), &opts).unwrap();
        let x = crate::ops::test_util::Rng(9).arr_affine(&[1, 6, 5, 7], 2.0, 1.0);
        let out = e.run(&[Tensor::F32(x)]).unwrap();
        out[0].as_f32().unwrap().iter().copied().collect()
    }

    #[test]
    fn fuses_the_transposed_layer_norm_and_keeps_its_results() {
        for fake_quant in [false, true] {
            let before = graph(fake_quant, vec![0, 3, 1, 2]);
            let mut g = before.clone();
            assert_eq!(fuse_channel_layer_norm(&mut g), 1);
            g.remove_dead();
            let ops: Vec<String> = g.nodes.iter().map(|n| n.op.name()).collect();
            let want: &[&str] = if fake_quant {
                &["ChannelLayerNorm", "FakeQuant", "Relu"]
            } else {
                &["ChannelLayerNorm", "Relu"]
            };
            assert_eq!(ops, want);
            assert_eq!(
                run(&g),
                run(&before),
                "bit for bit (fake quant: {fake_quant})"
            );
        }
    }

    #[test]
    fn leaves_other_permutations() {
        let mut g = graph(true, vec![0, 3, 2, 1]);
        assert_eq!(fuse_channel_layer_norm(&mut g), 0);
        assert_eq!(g.nodes.len(), 5);
    }
}
