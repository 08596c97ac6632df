//! Activations that ONNX exports spell as several element-wise nodes become one
//! [`Activation`] node:
//!
//! - PyTorch's exact GELU before opset 20, `x -> Div(sqrt 2) -> Erf -> Add(1) -> Mul(x) ->
//!   Mul(0.5)`. The detector's LDA-AQU offset branches run one each (three per inference):
//!   five passes over the tensor and four intermediate buffers become one pass.
//! - SiLU / swish, `x * Sigmoid(x)` (YOLOv5 and YOLOv8, EfficientNet): two passes become one.
//!
//! A conv in front keeps its own output: neither has a monomorphic conv epilogue (see
//! `has_monomorphic_epilogue`), and the separate vectorised pass is the faster.

use super::sole_consumer;
use crate::model::Graph;
use crate::ops::{Activation, BinaryOp, Op, UnaryOp};
use crate::tensor::Tensor;

/// The value of a constant that holds one f32 (any shape of one element).
fn scalar(g: &Graph, v: usize) -> Option<f32> {
    match g.constant(v) {
        Some(Tensor::F32(a)) if a.len() == 1 => a.iter().next().copied(),
        _ => None,
    }
}

/// The operand of binary node `n` other than `v`, when `v` is one of its two inputs.
fn other_input(g: &Graph, n: usize, v: usize) -> Option<usize> {
    match g.nodes[n].inputs.as_slice() {
        [a, b] if *a == v => Some(*b),
        [a, b] if *b == v => Some(*a),
        _ => None,
    }
}

fn is_binary(g: &Graph, n: usize, op: BinaryOp) -> bool {
    matches!(g.nodes[n].op, Op::Binary(b) if b == op)
}

/// Within float rounding of `want` (exporters write sqrt 2 and 0.5 as f32 literals).
fn near(v: Option<f32>, want: f32) -> bool {
    v.is_some_and(|v| (v - want).abs() <= 1e-6 * want.abs())
}

/// The match at node `d`: (the GELU's input x, the four nodes it bypasses, the final Mul
/// writing its output).
fn find(g: &Graph, consumers: &[Vec<usize>], d: usize) -> Option<(usize, [usize; 4], usize)> {
    // x / sqrt 2, or x * (1 / sqrt 2) with the factor on either side
    let [mut x, mut c] = g.nodes[d].inputs[..] else {
        return None;
    };
    if is_binary(g, d, BinaryOp::Mul) && g.constant(x).is_some() {
        (x, c) = (c, x);
    }
    let scaled = match g.nodes[d].op {
        Op::Binary(BinaryOp::Div) => near(scalar(g, c), std::f32::consts::SQRT_2),
        Op::Binary(BinaryOp::Mul) => near(scalar(g, c), std::f32::consts::FRAC_1_SQRT_2),
        _ => false,
    };
    if !scaled || g.constant(x).is_some() {
        return None;
    }
    let e = sole_consumer(g, consumers, g.nodes[d].outputs[0])?;
    if !matches!(g.nodes[e].op, Op::Unary(UnaryOp::Erf)) {
        return None;
    }
    let erf = g.nodes[e].outputs[0];
    let a = sole_consumer(g, consumers, erf)?;
    if !is_binary(g, a, BinaryOp::Add) || !near(scalar(g, other_input(g, a, erf)?), 1.0) {
        return None;
    }
    let one_plus = g.nodes[a].outputs[0];
    let m1 = sole_consumer(g, consumers, one_plus)?;
    if !is_binary(g, m1, BinaryOp::Mul) || other_input(g, m1, one_plus)? != x {
        return None;
    }
    let prod = g.nodes[m1].outputs[0];
    let m2 = sole_consumer(g, consumers, prod)?;
    if !is_binary(g, m2, BinaryOp::Mul) || !near(scalar(g, other_input(g, m2, prod)?), 0.5) {
        return None;
    }
    // a broadcast against a larger constant would change the shape
    (g.values[g.nodes[m2].outputs[0]].shape == g.values[x].shape).then_some((x, [d, e, a, m1], m2))
}

/// Fuse every exported GELU; returns how many.
pub fn fuse_gelu(g: &mut Graph) -> usize {
    let mut fused = 0;
    let mut d = 0;
    let mut consumers = g.consumers();
    while d < g.nodes.len() {
        let Some((x, mut bypassed, m2)) = find(g, &consumers, d) else {
            d += 1;
            continue;
        };
        g.nodes[m2].op = Op::Unary(UnaryOp::Act(Activation::Gelu));
        g.nodes[m2].inputs = vec![x];
        // each read only by the next, so nothing else needs them
        bypassed.sort_unstable();
        for &n in bypassed.iter().rev() {
            g.nodes.remove(n);
        }
        consumers = g.consumers();
        fused += 1;
    }
    fused
}

/// The match at node `s`, a Sigmoid: (its input x, the Mul of x by it).
fn find_silu(g: &Graph, consumers: &[Vec<usize>], s: usize) -> Option<(usize, usize)> {
    if !matches!(g.nodes[s].op, Op::Unary(UnaryOp::Act(Activation::Sigmoid))) {
        return None;
    }
    let x = g.nodes[s].inputs[0];
    let sig = g.nodes[s].outputs[0];
    let m = sole_consumer(g, consumers, sig)?;
    let same_shape = g.values[g.nodes[m].outputs[0]].shape == g.values[x].shape;
    (is_binary(g, m, BinaryOp::Mul) && other_input(g, m, sig)? == x && same_shape).then_some((x, m))
}

/// Fuse every `x * Sigmoid(x)` into one SiLU; returns how many. Same arithmetic per value
/// as the two nodes (`v * sigmoid(v)`), so the same bits.
pub fn fuse_silu(g: &mut Graph) -> usize {
    let mut fused = 0;
    let mut s = 0;
    let mut consumers = g.consumers();
    while s < g.nodes.len() {
        let Some((x, m)) = find_silu(g, &consumers, s) else {
            s += 1;
            continue;
        };
        g.nodes[m].op = Op::Unary(UnaryOp::Act(Activation::Silu));
        g.nodes[m].inputs = vec![x];
        g.nodes.remove(s);
        consumers = g.consumers();
        fused += 1;
    }
    fused
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Node;
    use crate::passes::{assert_outputs_close, run_as_is};

    fn node(g: &mut Graph, op: Op, inputs: Vec<usize>, shape: &[usize]) -> usize {
        let out = g.add_value(format!("v{}", g.values.len()), shape.to_vec());
        g.nodes.push(Node {
            name: format!("n{}", g.nodes.len()),
            op,
            inputs,
            outputs: vec![out],
        });
        out
    }

    /// A graph whose input goes through a Relu (so the pattern's x is a node's output).
    fn relu_of_input(shape: &[usize]) -> (Graph, usize) {
        let mut g = Graph::default();
        let x0 = g.add_value("x", shape.to_vec());
        g.inputs.push(x0);
        let relu = Op::Unary(UnaryOp::Act(Activation::Relu));
        let x = node(&mut g, relu, vec![x0], shape);
        (g, x)
    }

    /// x -> Relu -> GELU as PyTorch exports it -> output; `div` is the first constant,
    /// `swap` puts each binary op's operands the other way round (and multiplies by the
    /// reciprocal of `div` in place of the division).
    fn graph(div: f32, swap: bool, tap: bool) -> Graph {
        let shape = [2, 3, 5, 7];
        let (mut g, x) = relu_of_input(&shape);
        let pair = |a: usize, b: usize| if swap { vec![b, a] } else { vec![a, b] };
        // x / div, or (1 / div) * x when `swap`
        let d = if swap {
            let r = g.add_const("r", Tensor::F32(ndarray::arr0(1.0 / div).into_dyn()));
            node(&mut g, Op::Binary(BinaryOp::Mul), vec![r, x], &shape)
        } else {
            let c = g.add_const("c", Tensor::F32(ndarray::arr0(div).into_dyn()));
            node(&mut g, Op::Binary(BinaryOp::Div), vec![x, c], &shape)
        };
        let e = node(&mut g, Op::Unary(UnaryOp::Erf), vec![d], &shape);
        let one = g.add_const("one", Tensor::F32(ndarray::arr1(&[1.0f32]).into_dyn()));
        let a = node(&mut g, Op::Binary(BinaryOp::Add), pair(e, one), &shape);
        let m1 = node(&mut g, Op::Binary(BinaryOp::Mul), pair(x, a), &shape);
        let half = g.add_const("half", Tensor::F32(ndarray::arr0(0.5f32).into_dyn()));
        let m2 = node(&mut g, Op::Binary(BinaryOp::Mul), pair(m1, half), &shape);
        g.outputs.push(m2);
        if tap {
            // a second reader of erf(x / sqrt 2)
            g.outputs.push(e);
        }
        g
    }

    fn input() -> ndarray::ArrayD<f32> {
        crate::ops::test_util::Rng(3).arr_affine(&[2, 3, 5, 7], 6.0, -1.0)
    }

    #[test]
    fn fuses_the_exported_gelu_and_keeps_its_results() {
        for swap in [false, true] {
            let before = graph(std::f32::consts::SQRT_2, swap, false);
            let mut g = before.clone();
            assert_eq!(fuse_gelu(&mut g), 1, "swap {swap}");
            let ops: Vec<String> = g.nodes.iter().map(|n| n.op.name()).collect();
            assert_eq!(ops, ["Relu", "Gelu"]);
            // the bypassed nodes are gone: the GELU is its input's one reader
            assert_eq!(g.consumers()[g.nodes[0].outputs[0]], [1]);
            assert_outputs_close(&run_as_is(&before, &input()), &run_as_is(&g, &input()));
        }
    }

    #[test]
    fn leaves_lookalikes() {
        // another divisor is not a GELU
        let mut g = graph(2.0, false, false);
        assert_eq!(fuse_gelu(&mut g), 0);
        // an intermediate read elsewhere must stay
        let mut g = graph(std::f32::consts::SQRT_2, false, true);
        assert_eq!(fuse_gelu(&mut g), 0);
    }

    /// x -> Relu -> x * Sigmoid(x) (either operand order), the sigmoid also read elsewhere
    /// when `tap`.
    fn silu_graph(swap: bool, tap: bool) -> Graph {
        let shape = [1, 4, 6, 9];
        let (mut g, x) = relu_of_input(&shape);
        let s = node(
            &mut g,
            Op::Unary(UnaryOp::Act(Activation::Sigmoid)),
            vec![x],
            &shape,
        );
        let ins = if swap { vec![s, x] } else { vec![x, s] };
        let m = node(&mut g, Op::Binary(BinaryOp::Mul), ins, &shape);
        g.outputs.push(m);
        if tap {
            g.outputs.push(s);
        }
        g
    }

    #[test]
    fn fuses_silu_bit_for_bit() {
        let x = crate::ops::test_util::Rng(4).arr_affine(&[1, 4, 6, 9], 8.0, -1.0);
        for swap in [false, true] {
            let before = silu_graph(swap, false);
            let mut g = before.clone();
            assert_eq!(fuse_silu(&mut g), 1, "swap {swap}");
            let ops: Vec<String> = g.nodes.iter().map(|n| n.op.name()).collect();
            assert_eq!(ops, ["Relu", "Silu"]);
            assert_eq!(run_as_is(&before, &x), run_as_is(&g, &x));
        }
        let mut g = silu_graph(false, true);
        assert_eq!(fuse_silu(&mut g), 0, "the sigmoid is read elsewhere");
    }
}
