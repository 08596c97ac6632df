//! Activation memory planning: every runtime value gets an offset in one arena. Values whose
//! lifetimes do not overlap share memory (greedy by size, as TFLite's planner does); a
//! reshape-like view shares its input's storage, and so does each output of a Split whose
//! pieces are contiguous runs of its input (nothing is copied).

use crate::model::{Graph, Node};
use crate::ops::Op;

/// Offsets are multiples of this many f32 (64 bytes, one cache line).
const ALIGN: usize = 16;

/// Where each value lives.
#[derive(Clone, Debug)]
pub struct MemoryPlan {
    /// Arena offset (in f32) per value; `usize::MAX` for constants.
    pub offsets: Vec<usize>,
    /// Arena length in f32.
    pub arena_len: usize,
    /// Sum of all runtime value sizes (what no reuse would cost), in f32.
    pub unshared_len: usize,
    /// Per node: its outputs live inside its first input's storage, so running it does nothing.
    pub aliased: Vec<bool>,
}

/// Where a node's outputs sit inside its first input's storage (f32 offsets), when they can
/// share it: a reshape-like op (the whole input), or a float Split along an axis with only
/// size-1 axes before it, whose pieces are then contiguous runs (the detector's stacked head
/// convs, split by channel). Pieces start on the arena's alignment, as every value does.
fn view_offsets(g: &Graph, node: &Node, int8: &[bool]) -> Option<Vec<usize>> {
    let x = *node.inputs.first()?;
    if g.values[x].constant.is_some() {
        return None;
    }
    if node.op.is_view() {
        return Some(vec![0]);
    }
    let Op::Split { axis, sizes } = &node.op else {
        return None;
    };
    let shape = &g.values[x].shape;
    if int8[x] || *axis >= shape.len() || shape[..*axis].iter().product::<usize>() != 1 {
        return None;
    }
    let inner: usize = shape[axis + 1..].iter().product();
    let mut at = 0;
    let mut offsets = Vec::with_capacity(sizes.len());
    for &n in sizes {
        if at % ALIGN != 0 {
            return None;
        }
        offsets.push(at);
        at += n * inner;
    }
    (offsets.len() == node.outputs.len()).then_some(offsets)
}

/// Plan the arena.
pub fn plan(g: &Graph) -> MemoryPlan {
    let nv = g.values.len();
    // int8 tensors are bytes: a quarter of the f32 units.
    let producers = g.producers();
    let int8: Vec<bool> = (0..nv)
        .map(|v| crate::passes::is_int8_value(g, &producers, v))
        .collect();
    // Storage root of each value (views point at their input's root) and the view's offset
    // in it.
    let mut root: Vec<usize> = (0..nv).collect();
    let mut within = vec![0usize; nv];
    let mut aliased = vec![false; g.nodes.len()];
    for (i, n) in g.nodes.iter().enumerate() {
        if let Some(offsets) = view_offsets(g, n, &int8) {
            let x = n.inputs[0];
            for (&v, off) in n.outputs.iter().zip(offsets) {
                root[v] = root[x];
                within[v] = within[x] + off;
            }
            aliased[i] = true;
        }
    }
    let end = g.nodes.len() + 1;
    let mut first = vec![usize::MAX; nv];
    let mut last = vec![0usize; nv];
    let touch = |v: usize, t: usize, first: &mut Vec<usize>, last: &mut Vec<usize>| {
        let r = root[v];
        first[r] = first[r].min(t);
        last[r] = last[r].max(t);
    };
    for &v in &g.inputs {
        touch(v, 0, &mut first, &mut last);
    }
    for (i, n) in g.nodes.iter().enumerate() {
        for &v in n.inputs.iter().chain(&n.outputs) {
            if g.values[v].constant.is_none() {
                touch(v, i + 1, &mut first, &mut last);
            }
        }
    }
    for &v in &g.outputs {
        if g.values[v].constant.is_none() {
            touch(v, end, &mut first, &mut last);
        }
    }
    let size = |v: usize| {
        let units = if int8[v] {
            g.values[v].len().div_ceil(4)
        } else {
            g.values[v].len()
        };
        units.div_ceil(ALIGN) * ALIGN
    };
    let mut roots: Vec<usize> = (0..nv)
        .filter(|&v| root[v] == v && first[v] != usize::MAX)
        .collect();
    roots.sort_by_key(|&v| (std::cmp::Reverse(size(v)), first[v]));
    let mut placed: Vec<(usize, usize, usize, usize)> = vec![]; // (offset, len, first, last)
    let mut offsets = vec![usize::MAX; nv];
    let mut arena_len = 0;
    let mut unshared_len = 0;
    for v in roots {
        let len = size(v);
        unshared_len += len;
        let mut busy: Vec<(usize, usize)> = placed
            .iter()
            .filter(|p| p.2 <= last[v] && first[v] <= p.3)
            .map(|p| (p.0, p.0 + p.1))
            .collect();
        busy.sort_unstable();
        let mut off = 0;
        for (s, e) in busy {
            if off + len <= s {
                break;
            }
            off = off.max(e);
        }
        placed.push((off, len, first[v], last[v]));
        offsets[v] = off;
        arena_len = arena_len.max(off + len);
    }
    for v in 0..nv {
        if root[v] != v {
            offsets[v] = offsets[root[v]] + within[v];
        }
    }
    // int8 kernels may read up to 16 bytes past a tensor (see kernels::qs8): keep slack.
    if int8.iter().any(|&b| b) {
        arena_len += ALIGN;
    }
    MemoryPlan {
        offsets,
        arena_len,
        unshared_len,
        aliased,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::{BinaryOp, UnaryOp};
    use crate::tensor::Tensor;

    /// `y = -x; (a, b) = Split(y, axis 1, [3, 3]); out = (-a) - b`, and the Split's index.
    /// `-a` must not land on `b` while `b` (a view into `y`) is still to be read.
    fn split_graph(shape: &[usize]) -> (Graph, usize) {
        let mut g = Graph::default();
        let half: Vec<usize> = [&shape[..1], &[3], &shape[2..]].concat();
        let x = g.add_value("x", shape.to_vec());
        g.inputs.push(x);
        let [y, a, b, na, out] = ["y", "a", "b", "na", "out"].map(|n| {
            g.add_value(
                n,
                if n == "y" {
                    shape.to_vec()
                } else {
                    half.clone()
                },
            )
        });
        let node = |name: &str, op: Op, inputs: Vec<usize>, outputs: Vec<usize>| Node {
            name: name.into(),
            op,
            inputs,
            outputs,
        };
        g.nodes = vec![
            node("neg_x", Op::Unary(UnaryOp::Neg), vec![x], vec![y]),
            node(
                "split",
                Op::Split {
                    axis: 1,
                    sizes: vec![3, 3],
                },
                vec![y],
                vec![a, b],
            ),
            node("neg_a", Op::Unary(UnaryOp::Neg), vec![a], vec![na]),
            node("sub", Op::Binary(BinaryOp::Sub), vec![na, b], vec![out]),
        ];
        g.outputs.push(out);
        (g, 1)
    }

    fn check(shape: &[usize], aliased: bool) {
        let (g, split) = split_graph(shape);
        let m = plan(&g);
        assert_eq!(m.aliased[split], aliased, "shape {shape:?}");
        let (y, a, b) = (
            g.nodes[split].inputs[0],
            g.nodes[split].outputs[0],
            g.nodes[split].outputs[1],
        );
        if aliased {
            let inner: usize = shape[2..].iter().product();
            assert_eq!(m.offsets[a], m.offsets[y]);
            assert_eq!(m.offsets[b], m.offsets[y] + 3 * inner);
        }
        let mut rng = crate::ops::test_util::Rng(5);
        let x = rng.arr(shape);
        let opts = crate::exec::EngineOptions {
            optimize: false,
            threads: 1,
            ..Default::default()
        };
        let mut e = crate::exec::Engine::new(g, &opts).unwrap();
        let out = e.run(&[Tensor::F32(x.clone())]).unwrap();
        let got = out[0].as_f32().unwrap();
        // -(-x[c]) - (-x[c + 3]) = x[c] + x[c + 3]
        let want = &x.slice_axis(ndarray::Axis(1), (0..3).into())
            + &x.slice_axis(ndarray::Axis(1), (3..6).into());
        assert_eq!(got, &want, "shape {shape:?}");
    }

    #[test]
    fn split_by_channel_is_a_view_of_its_input() {
        check(&[1, 6, 4, 4], true);
        check(&[1, 6, 16], true);
    }

    #[test]
    fn split_that_is_not_contiguous_or_aligned_copies() {
        check(&[2, 6, 4, 4], false); // batch 2: each piece is two runs
        check(&[1, 6, 2, 3], false); // the second piece would start 18 floats in
    }
}
