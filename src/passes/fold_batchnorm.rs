//! Conv -> BatchNormalization becomes one Conv with scaled weights and shifted bias.

use super::sole_consumer;
use crate::model::Graph;
use crate::ops::{Conv, Op};
use crate::tensor::Tensor;

fn f32s(g: &Graph, v: usize) -> Option<Vec<f32>> {
    match g.constant(v) {
        Some(Tensor::F32(a)) => Some(a.iter().copied().collect()),
        _ => None,
    }
}

/// Fold every foldable BatchNorm; returns how many were folded.
pub fn fold_batchnorm(g: &mut Graph) -> usize {
    let mut folded = 0;
    let mut i = 0;
    while i < g.nodes.len() {
        let consumers = g.consumers();
        // (a conv with a fused residual Add reads its skip input last, not a bias)
        let (
            Op::Conv(Conv {
                residual: false, ..
            }),
            out,
        ) = (&g.nodes[i].op, g.nodes[i].outputs[0])
        else {
            i += 1;
            continue;
        };
        let Some(j) = sole_consumer(g, &consumers, out) else {
            i += 1;
            continue;
        };
        let Op::BatchNorm { epsilon } = g.nodes[j].op else {
            i += 1;
            continue;
        };
        let bn = g.nodes[j].clone();
        let params: Option<Vec<Vec<f32>>> = bn.inputs[1..].iter().map(|v| f32s(g, *v)).collect();
        let conv = &g.nodes[i];
        let w = match g.constant(conv.inputs[1]) {
            Some(Tensor::F32(w)) => w.clone(),
            _ => {
                i += 1;
                continue;
            }
        };
        let m = w.shape()[0];
        let Some(p) = params.filter(|p| p.iter().all(|v| v.len() == m)) else {
            i += 1;
            continue;
        };
        let (scale, shift, mean, var) = (&p[0], &p[1], &p[2], &p[3]);
        let bias = match conv.inputs.get(2) {
            Some(b) => f32s(g, *b).unwrap_or_else(|| vec![0.0; m]),
            None => vec![0.0; m],
        };
        let per = w.len() / m.max(1);
        let mut wd: Vec<f32> = w.iter().copied().collect();
        let mut bd = vec![0.0; m];
        for o in 0..m {
            let k = scale[o] / (var[o] + epsilon).sqrt();
            wd[o * per..(o + 1) * per].iter_mut().for_each(|x| *x *= k);
            bd[o] = (bias[o] - mean[o]) * k + shift[o];
        }
        let name = conv.name.clone();
        let wv = g.add_const(
            format!("{name}.w_bn"),
            Tensor::from_f32(w.shape(), wd).expect("same shape"),
        );
        let bv = g.add_const(
            format!("{name}.b_bn"),
            Tensor::from_f32(&[m], bd).expect("len m"),
        );
        let conv = &mut g.nodes[i];
        conv.inputs.truncate(1);
        conv.inputs.extend([wv, bv]);
        conv.outputs[0] = bn.outputs[0];
        g.nodes.remove(j);
        folded += 1;
        i += 1;
    }
    folded
}
