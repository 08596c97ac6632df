//! Activation memory planning: every runtime value gets an offset in one arena. Values whose
//! lifetimes do not overlap share memory (greedy by size, as TFLite's planner does); a
//! reshape-like view shares its input's storage.

use crate::model::Graph;

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
}

/// Plan the arena. `is_view[node]` marks nodes whose output aliases input 0.
pub fn plan(g: &Graph, is_view: &[bool]) -> MemoryPlan {
    let nv = g.values.len();
    // Storage root of each value (views point at their input's root).
    let mut root: Vec<usize> = (0..nv).collect();
    for (i, n) in g.nodes.iter().enumerate() {
        if is_view[i] {
            root[n.outputs[0]] = root[n.inputs[0]];
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
    // int8 tensors are bytes: a quarter of the f32 units.
    let producers = g.producers();
    let int8: Vec<bool> = (0..nv)
        .map(|v| crate::passes::is_int8_value(g, &producers, v))
        .collect();
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
            offsets[v] = offsets[root[v]];
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
    }
}
