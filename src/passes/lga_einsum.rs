//! LGA's released attention computes `einsum('bhqk,bhvd->bhqd', softmax(qk), v)`: both `k`
//! and `v` are summed out, and softmax rows sum to one, so the result is the sum of the head's
//! value channels broadcast to every channel. Q, K, the first einsum and the softmax are then
//! dead and disappear.

use crate::model::Graph;
use crate::ops::Op;

/// Parse `A,B->O` with three rank-4 terms of single letters.
fn terms(eq: &str) -> Option<([char; 4], [char; 4], [char; 4])> {
    let (lhs, o) = eq.split_once("->")?;
    let (a, b) = lhs.split_once(',')?;
    let arr = |s: &str| -> Option<[char; 4]> { s.chars().collect::<Vec<_>>().try_into().ok() };
    Some((arr(a)?, arr(b)?, arr(o)?))
}

/// True for `bhqk,bhvd->bhqd` with `k` and `v` distinct letters summed out.
fn is_degenerate_pair(eq: &str) -> bool {
    let Some((a, b, o)) = terms(eq) else {
        return false;
    };
    let distinct = |t: &[char; 4]| (0..4).all(|i| (i + 1..4).all(|j| t[i] != t[j]));
    distinct(&a)
        && distinct(&b)
        && a[0] == b[0]
        && a[1] == b[1]
        && o == [a[0], a[1], a[2], b[3]]
        && !b.contains(&a[3])
        && !a.contains(&b[2])
        && a[2] != b[3]
}

/// Rewrite every degenerate einsum whose first operand is a last-axis softmax.
pub fn rewrite_lga_einsum(g: &mut Graph) -> usize {
    let producers = g.producers();
    let mut n = 0;
    for i in 0..g.nodes.len() {
        let Op::Einsum { equation } = &g.nodes[i].op else {
            continue;
        };
        if g.nodes[i].inputs.len() != 2 || !is_degenerate_pair(equation) {
            continue;
        }
        let (attn, v) = (g.nodes[i].inputs[0], g.nodes[i].inputs[1]);
        let softmax_last = producers[attn].is_some_and(|p| {
            matches!(g.nodes[p].op, Op::Softmax { axis } if axis + 1 == g.values[attn].shape.len())
        });
        // HeadChannelSum keeps v's shape, so q and v must have the same extent.
        let same_shape = g.values[v].shape == g.values[g.nodes[i].outputs[0]].shape;
        if softmax_last && same_shape {
            g.nodes[i].op = Op::HeadChannelSum;
            g.nodes[i].inputs = vec![v];
            n += 1;
        }
    }
    n
}

#[cfg(test)]
mod tests {
    use super::is_degenerate_pair;

    #[test]
    fn recognises_only_the_degenerate_form() {
        assert!(is_degenerate_pair("bhqk,bhvd->bhqd"));
        assert!(!is_degenerate_pair("bhqk,bhkd->bhqd"));
        assert!(!is_degenerate_pair("bhqd,bhkd->bhqk"));
    }
}
