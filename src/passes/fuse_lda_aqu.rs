//! LDA-AQU's exported tail becomes one [`LdaAqu`] op. The pattern, as `torch.onnx` writes
//! `speck_models.lda_aqu` (and the official module's equivalent):
//!
//! ```text
//! ks = view(GridSample(k, grid)) [+ bias]      [B, nh, d, n, Ho, Wo]
//! vs = view(GridSample(v, grid))               [B, nh, cv, n, Ho, Wo]
//! attn = Softmax_3(ReduceSum_2,keep(q * ks))   q: [B, nh, d, 1, Ho, Wo]
//! out = ReduceSum_3(attn * vs)                 [B, nh, cv, Ho, Wo]
//! ```
//!
//! Both GridSamples must read the same grid with bilinear sampling and zeros padding, and the
//! bias must be a constant that varies only over heads, channels and taps. Anything else is
//! left alone. In a QDQ model, int8 round trips (`FakeQuant`, from Q -> DQ) on the sampled
//! keys, keys plus bias, query-key products, logits, attention, sampled values and weighted
//! values are folded into the op (speck's quantizer puts them on four of these, ONNX Runtime's
//! on all seven); a quantized op anywhere else in the pattern (an int8 Mul, say) stops the
//! match.

use crate::model::{Graph, ValueId};
use crate::ops::{
    lda_aqu_shape, BinaryOp, GridMode, GridPadding, GridSample, LdaAqu, Op, QOp, QRound,
    ReduceKind, UnaryOp,
};
use crate::tensor::Tensor;

struct Cx<'a> {
    g: &'a Graph,
    producers: Vec<Option<usize>>,
}

impl Cx<'_> {
    fn op(&self, v: ValueId) -> Option<&Op> {
        self.producers[v].map(|p| &self.g.nodes[p].op)
    }

    fn inputs(&self, v: ValueId) -> &[ValueId] {
        self.producers[v].map_or(&[], |p| &self.g.nodes[p].inputs)
    }

    fn shape(&self, v: ValueId) -> &[usize] {
        &self.g.values[v].shape
    }

    /// `v` with reshapes and identities in front of it skipped.
    fn through_views(&self, mut v: ValueId) -> ValueId {
        while matches!(
            self.op(v),
            Some(Op::Reshape { .. } | Op::Unary(UnaryOp::Identity))
        ) {
            v = self.inputs(v)[0];
        }
        v
    }

    /// `v` behind views and int8 round trips (`FakeQuant`, the lowering's Q -> DQ): the value
    /// they start from and the roundings in the order they apply.
    fn rounded(&self, v: ValueId) -> (ValueId, Vec<QRound>) {
        let mut rounds = vec![];
        let mut v = self.through_views(v);
        while let Some(Op::Int8(q)) = self.op(v) {
            let QOp::FakeQuant(r) = q.op else {
                break;
            };
            rounds.push(r);
            v = self.through_views(self.inputs(v)[0]);
        }
        rounds.reverse();
        // A round trip repeated with the same parameters (Q/DQ around a reshape) is exact
        // idempotence: the integers read back are the ones written.
        rounds.dedup_by(|b, a| b == a && a.quant == a.dequant);
        (v, rounds)
    }

    /// `v = views and roundings of GridSample(x, grid)`: `(x, grid, attributes, roundings)`.
    fn sampled(&self, v: ValueId) -> Option<(ValueId, ValueId, &GridSample, Vec<QRound>)> {
        let (s, rounds) = self.rounded(v);
        match self.op(s)? {
            Op::GridSample(gs) => Some((self.inputs(s)[0], self.inputs(s)[1], gs, rounds)),
            _ => None,
        }
    }

    /// The two inputs of a binary `op` producing `v`.
    fn binary(&self, v: ValueId, op: BinaryOp) -> Option<[ValueId; 2]> {
        match self.op(v)? {
            Op::Binary(b) if *b == op => Some([self.inputs(v)[0], self.inputs(v)[1]]),
            _ => None,
        }
    }

    /// Input of a `ReduceSum` over exactly `axis` with `keep` producing `v`.
    fn reduce_sum(&self, v: ValueId, axis: usize, keep: bool) -> Option<ValueId> {
        match self.op(v)? {
            Op::Reduce {
                kind: ReduceKind::Sum,
                axes,
                keepdims,
            } if axes == &[axis] && *keepdims == keep => Some(self.inputs(v)[0]),
            _ => None,
        }
    }

    /// `ks = round(sampled key + bias)` as `(sampled key, bias per (head channel, tap),
    /// rounding after the bias)`, `shape6 = [B, nh, d, n, Ho, Wo]`.
    fn keys(&self, ks: ValueId, shape6: &[usize]) -> Option<(ValueId, Vec<f32>, Vec<QRound>)> {
        let [nh, d, n] = [shape6[1], shape6[2], shape6[3]];
        if self.sampled(ks).is_some() {
            return Some((ks, vec![0.0; nh * d * n], vec![]));
        }
        let (ks, round) = self.rounded(ks);
        let [a, b] = self.binary(ks, BinaryOp::Add)?;
        let (s, c) = if self.g.constant(b).is_some() {
            (a, b)
        } else {
            (b, a)
        };
        self.sampled(s)?;
        let t = self.g.constant(c)?.as_f32()?;
        if t.ndim() > 6 {
            return None;
        }
        let mut cs = vec![1; 6 - t.ndim()];
        cs.extend_from_slice(t.shape());
        let fits = cs[0] == 1
            && cs[4] == 1
            && cs[5] == 1
            && [1, nh].contains(&cs[1])
            && [1, d].contains(&cs[2])
            && [1, n].contains(&cs[3]);
        if !fits {
            return None;
        }
        let t6 = t.view().into_shape_with_order(cs).ok()?;
        let full = t6.broadcast(vec![1, nh, d, n, 1, 1])?;
        Some((s, full.iter().copied().collect(), round))
    }

    /// The fused op replacing the ReduceSum producing `out`, with its inputs and bias.
    fn matches(&self, out: ValueId) -> Option<(LdaAqu, [ValueId; 4], Vec<f32>)> {
        let (weighted, round_weighted) = self.rounded(self.reduce_sum(out, 3, false)?);
        let s6 = self.shape(weighted).to_vec();
        if s6.len() != 6 {
            return None;
        }
        let [x, y] = self.binary(weighted, BinaryOp::Mul)?;
        let is_attn = |v: ValueId| {
            let (s, _) = self.rounded(v);
            matches!(self.op(s), Some(Op::Softmax { axis: 3 })) && self.shape(s).len() == 6
        };
        let (attn, vs) = if is_attn(x) { (x, y) } else { (y, x) };
        if !is_attn(attn) {
            return None;
        }
        let (attn, round_attn) = self.rounded(attn);
        let (logits, round_logits) = self.rounded(self.inputs(attn)[0]);
        let (qk, round_qk) = self.rounded(self.reduce_sum(logits, 2, true)?);
        let k6 = self.shape(qk).to_vec();
        let [a, b] = self.binary(qk, BinaryOp::Mul)?;
        let q6 = |v: ValueId| {
            let s = self.shape(v);
            s.len() == 6 && s[3] == 1 && s[..3] == k6[..3] && s[4..] == k6[4..]
        };
        let (q, ks) = if q6(a) { (a, b) } else { (b, a) };
        if !q6(q) || self.shape(ks) != k6.as_slice() {
            return None;
        }
        let (ks, bias, round_biased) = self.keys(ks, &k6)?;
        let (k, grid, gk, round_keys) = self.sampled(ks)?;
        let (v, grid_v, gv, round_values) = self.sampled(vs)?;
        let bilinear_zeros =
            |s: &GridSample| s.mode == GridMode::Bilinear && s.padding == GridPadding::Zeros;
        if grid != grid_v || gk != gv || !bilinear_zeros(gk) || s6[3] != k6[3] {
            return None;
        }
        // Sampled rows are tap-major: [.., n*Ho, Wo] viewed as [.., n, Ho, Wo].
        let gshape = self.shape(grid);
        let (batch, taps, heads) = (k6[0], k6[3], k6[1]);
        if gshape.len() != 4 || gshape[1] != taps * k6[4] || gshape[2] != k6[5] {
            return None;
        }
        if batch == 0 || gshape[0] % batch != 0 {
            return None;
        }
        let op = LdaAqu {
            sample: gk.clone(),
            taps,
            heads,
            groups: gshape[0] / batch,
            round_keys,
            round_biased,
            round_attn,
            round_values,
            round_qk,
            round_logits,
            round_weighted,
        };
        let bias_shape = [bias.len()];
        let shapes: [&[usize]; 5] = [
            self.shape(k),
            self.shape(v),
            gshape,
            self.shape(q),
            &bias_shape,
        ];
        // The fused output must be exactly the ReduceSum's, channel for channel.
        let fused = lda_aqu_shape(&op, &shapes).ok()?;
        let keys_match = self.shape(k)[1] * op.groups == heads * k6[2];
        (fused == self.shape(out) && keys_match).then_some((op, [k, v, grid, q], bias))
    }
}

/// Fuse every LDA-AQU tail; returns how many were fused.
pub fn fuse_lda_aqu(g: &mut Graph) -> usize {
    let cx = Cx {
        g,
        producers: g.producers(),
    };
    let found: Vec<(usize, LdaAqu, [ValueId; 4], Vec<f32>)> = (0..g.nodes.len())
        .filter_map(|i| {
            let out = *g.nodes[i].outputs.first()?;
            let (op, ins, bias) = cx.matches(out)?;
            Some((i, op, ins, bias))
        })
        .collect();
    let n = found.len();
    for (i, op, [k, v, grid, q], bias) in found {
        let name = format!("{}.lda_aqu_bias", g.nodes[i].name);
        let len = bias.len();
        let t = Tensor::from_f32(&[len], bias).expect("1-D shape of its own length");
        let bias = g.add_const(name, t);
        g.nodes[i].op = Op::LdaAqu(Box::new(op));
        g.nodes[i].inputs = vec![k, v, grid, q, bias];
    }
    n
}
