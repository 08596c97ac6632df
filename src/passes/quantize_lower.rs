//! int8 lowering: QDQ patterns (the fake-quantized float graph that QuantizeLinear /
//! DequantizeLinear import to) become int8 ops on byte tensors (`crate::ops::QOp`).
//!
//! Every per-tensor 8-bit QuantizeLinear `Q` whose output is not a graph output makes its
//! output an int8 tensor. What produces it depends on the float subgraph in front of `Q`,
//! matched on inputs that are DequantizeLinear `DQ` of such int8 tensors:
//! - `DQ(x), DQ(int8 W per-channel or per-tensor, zero point 0), [bias] -> Conv ->
//!   [Relu | Clip] -> Q` becomes a [`QConv`] requantizing to `Q` (the Relu/Clip a clamp);
//!   a `Gemm` (alpha = beta = 1, no transA) on a 2-D `DQ(x)` becomes a 1x1 [`QConv`] too;
//! - `DQ -> unary activation (HardSwish, HardSigmoid, Sigmoid, ...) -> Q` and `DQ -> Q`
//!   become a 256-entry lookup table;
//! - `DQ, DQ -> Add | Mul -> Q` (same shapes, or `[N,C,1,1]` against `[N,C,H,W]` as in
//!   squeeze-excite) becomes a requantizing int8 Add / Mul;
//! - `DQ... -> Concat -> Q`, `DQ -> GlobalAveragePool -> Q`, `DQ -> MaxPool | Resize -> Q`
//!   become int8 Concat, pool, and requantizing data movement;
//! - anything else in front of `Q` stays float and `Q` becomes a Quantize conversion.
//!
//! Then a Conv or Gemm reading `DQ(x)` with int8 weights whose result goes to float readers becomes a
//! [`QConv`] with f32 output, and every remaining `DQ` of an int8 tensor becomes a
//! Dequantize conversion. Float nodes nobody reads any more are removed by `remove_dead`.
//! Last, a lookup table whose input is a stored conv output read by nothing else goes into
//! that conv's epilogue (`fuse_conv_lut`); [`fuse_conv_residual`], one of the graph passes
//! (`super::optimize`), does the same for a residual Add.
//! A float node that still has float readers stays (computed both ways), so the graph's
//! results are those of the QDQ model up to requantization rounding.

use crate::model::{Graph, Node, ValueId};
use crate::ops::{
    Activation, Int8Op, Op, PoolKind, QBinaryKind, QConv, QConvOut, QOp, QRound, QType, QWeights,
    UnaryOp,
};
use crate::tensor::Tensor;
use std::collections::HashMap;

/// Whether `SPECK_INT8` allows the lowering (`0`, `off`, `false` or `no` turn it off).
pub fn int8_enabled_by_env() -> bool {
    !matches!(
        std::env::var("SPECK_INT8")
            .unwrap_or_default()
            .trim()
            .to_ascii_lowercase()
            .as_str(),
        "0" | "off" | "false" | "no"
    )
}

struct Cx<'a> {
    g: &'a Graph,
    producers: Vec<Option<usize>>,
    /// int8 tensors: outputs of lowered QuantizeLinear nodes
    int8: HashMap<ValueId, QType>,
}

impl Cx<'_> {
    /// `v = DQ(xq)` with `xq` an int8 tensor: `(xq, interpretation)`.
    fn dq(&self, v: ValueId) -> Option<(ValueId, QType)> {
        let p = self.producers[v]?;
        let n = &self.g.nodes[p];
        let Op::DequantizeLinear(params) = &n.op else {
            return None;
        };
        let src = *self.int8.get(&n.inputs[0])?;
        let q = QType::from_params(params)?;
        (q.signed == src.signed).then_some((n.inputs[0], q))
    }

    fn node(&self, v: ValueId) -> Option<&Node> {
        self.producers[v].map(|p| &self.g.nodes[p])
    }

    /// `v = Conv(DQ(x), int8 W, [b])`, or `v = Gemm(DQ(x), int8 W, [b])` on a 2-D `x` (as a
    /// 1x1 conv over `[rows, K, 1, 1]`: a row-major `[rows, K]` int8 tensor has the same bytes
    /// as that NHWC tensor): the int8 conv with output `out`.
    fn conv(&self, v: ValueId, out: QConvOut) -> Option<(QConv, ValueId)> {
        let n = self.node(v)?;
        let (conv, transposed) = match &n.op {
            Op::Conv(c) if c.activation.is_none() => (c.clone(), false),
            Op::Gemm(gm) if gm.alpha == 1.0 && gm.beta == 1.0 && !gm.trans_a => {
                if self.g.values[n.inputs[0]].shape.len() != 2 {
                    return None;
                }
                let conv = crate::ops::Conv {
                    group: 1,
                    strides: [1, 1],
                    pads: [0; 4],
                    dilations: [1, 1],
                    activation: None,
                    residual: false,
                };
                (conv, !gm.trans_b)
            }
            _ => return None,
        };
        let (xq, qx) = self.dq(n.inputs[0])?;
        let wv = &self.g.values[n.inputs[1]];
        let wq = wv.dequantized.as_ref()?;
        let rank = if matches!(n.op, Op::Conv(_)) { 4 } else { 2 };
        if wv.shape.len() != rank || wq.params.zero_point.iter().any(|&z| z != 0.0) {
            return None;
        }
        if wq.params.qmin != -128.0 || wq.params.qmax != 127.0 {
            return None;
        }
        // Output channels are axis 0 of a Conv's or a transB Gemm's weights, axis 1 of a plain
        // Gemm's `[K, N]` (transposed here to `[N, K]`).
        let (m, out_axis) = if transposed {
            (wv.shape[1], 1)
        } else {
            (wv.shape[0], 0)
        };
        let w_scale = match wq.params.scale.len() {
            1 => vec![wq.params.scale[0]; m],
            l if l == m && wq.params.axis == out_axis => wq.params.scale.clone(),
            _ => return None,
        };
        let Tensor::I8(wi) = wq.values.as_ref() else {
            return None;
        };
        let mut weights: Vec<i8> = wi.iter().copied().collect();
        let w_shape = if rank == 4 {
            [wv.shape[0], wv.shape[1], wv.shape[2], wv.shape[3]]
        } else {
            let k = wv.shape[1 - out_axis];
            if transposed {
                weights = (0..m * k).map(|i| weights[(i % k) * m + i / k]).collect();
            }
            [m, k, 1, 1]
        };
        // Bias as int32 at scale s_x * s_w: exact for a DequantizeLinear'd int32 bias with
        // that scale (what quantizers write), rounded for a float bias.
        let bias = match n.inputs.get(2) {
            None => vec![0; m],
            Some(&b) => {
                let bf = self.g.constant(b).and_then(Tensor::as_f32)?;
                if bf.len() != m {
                    return None;
                }
                bf.iter()
                    .zip(&w_scale)
                    .map(|(&b, &sw)| {
                        let q = (b as f64 / (qx.scale as f64 * sw as f64)).round_ties_even();
                        q.clamp(i32::MIN as f64 / 2.0, i32::MAX as f64 / 2.0) as i32
                    })
                    .collect()
            }
        };
        Some((
            QConv {
                conv,
                weights: QWeights::Onnx(weights),
                w_shape,
                w_scale,
                bias,
                input: qx,
                out,
                lut: None,
                residual: None,
            },
            xq,
        ))
    }

    /// The int8 op producing `Q(y)` with output quantization `qo`, and its inputs.
    fn pattern(&self, y: ValueId, qo: QType) -> Option<(QOp, Vec<ValueId>)> {
        if let Some((xq, qi)) = self.dq(y) {
            let table = super::super::kernels::qs8::elementwise::lut_table(qi, qo, |v| v);
            return Some((QOp::Lut { table }, vec![xq]));
        }
        let n = self.node(y)?;
        let quant = |lo: u8, hi: u8| QConvOut::Quant { q: qo, lo, hi };
        match &n.op {
            Op::Conv(_) | Op::Gemm(_) => {
                let (c, xq) = self.conv(y, quant(0, 255))?;
                Some((QOp::Conv(Box::new(c)), vec![xq]))
            }
            Op::Unary(UnaryOp::Act(a)) => {
                let clamp = match *a {
                    Activation::Relu => Some((qo.quantize(0.0), 255)),
                    Activation::Clip(lo, hi) => Some((qo.quantize(lo), qo.quantize(hi))),
                    _ => None,
                };
                if let Some((lo, hi)) = clamp {
                    if let Some((c, xq)) = self.conv(n.inputs[0], quant(lo, hi)) {
                        return Some((QOp::Conv(Box::new(c)), vec![xq]));
                    }
                }
                let (xq, qi) = self.dq(n.inputs[0])?;
                let a = *a;
                let table = crate::kernels::qs8::elementwise::lut_table(qi, qo, |v| {
                    crate::ops::apply_activation(a, v)
                });
                Some((QOp::Lut { table }, vec![xq]))
            }
            Op::Binary(b @ (crate::ops::BinaryOp::Add | crate::ops::BinaryOp::Mul)) => {
                let kind = if *b == crate::ops::BinaryOp::Add {
                    QBinaryKind::Add
                } else {
                    QBinaryKind::Mul
                };
                let (mut a, mut qa) = self.dq(n.inputs[0])?;
                let (mut bq, mut qb) = self.dq(n.inputs[1])?;
                let out_shape = &self.g.values[y].shape;
                let mut sa = self.g.values[a].shape.clone();
                let mut sb = self.g.values[bq].shape.clone();
                if sa != *out_shape {
                    std::mem::swap(&mut a, &mut bq);
                    std::mem::swap(&mut qa, &mut qb);
                    std::mem::swap(&mut sa, &mut sb);
                }
                if sa != *out_shape {
                    return None;
                }
                let per_channel = if sb == sa {
                    false
                } else if sa.len() == 4 && sb == [sa[0], sa[1], 1, 1] {
                    true
                } else {
                    return None;
                };
                Some((
                    QOp::Binary {
                        kind,
                        a: qa,
                        b: qb,
                        out: qo,
                        b_per_channel: per_channel,
                    },
                    vec![a, bq],
                ))
            }
            Op::Concat { axis } => {
                let mut ins = vec![];
                let mut qs = vec![];
                for &v in &n.inputs {
                    let (xq, q) = self.dq(v)?;
                    ins.push(xq);
                    qs.push(q);
                }
                Some((
                    QOp::Concat {
                        axis: *axis,
                        inputs: qs,
                        out: qo,
                    },
                    ins,
                ))
            }
            // `x.mean((2, 3), keepdim=True)`, as PyTorch exports squeeze-excite's pooling
            Op::GlobalAveragePool
            | Op::Reduce {
                kind: crate::ops::ReduceKind::Mean,
                keepdims: true,
                ..
            } if self.g.values[y].shape.len() == 4 && is_spatial_mean(&n.op) => {
                let (xq, qi) = self.dq(n.inputs[0])?;
                Some((QOp::GlobalAveragePool { input: qi, out: qo }, vec![xq]))
            }
            Op::Pool(p) if p.kind == PoolKind::Max && self.g.values[y].shape.len() == 4 => {
                let (xq, qi) = self.dq(n.inputs[0])?;
                let op = Box::new(n.op.clone());
                Some((
                    QOp::Float {
                        op,
                        input: qi,
                        out: qo,
                    },
                    vec![xq],
                ))
            }
            Op::Resize(_) if self.g.values[y].shape.len() == 4 => {
                let (xq, qi) = self.dq(n.inputs[0])?;
                let op = Box::new(n.op.clone());
                Some((
                    QOp::Float {
                        op,
                        input: qi,
                        out: qo,
                    },
                    vec![xq],
                ))
            }
            _ => None,
        }
    }
}

/// GlobalAveragePool, or a mean over exactly the spatial axes of an NCHW tensor.
fn is_spatial_mean(op: &Op) -> bool {
    match op {
        Op::Reduce { axes, .. } => axes == &[2, 3],
        _ => true,
    }
}

fn int8(op: QOp, out_shape: Vec<usize>) -> Op {
    Op::Int8(Box::new(Int8Op { op, out_shape }))
}

/// Lower QDQ patterns to int8 ops; returns how many nodes became int8 ops.
pub fn lower_int8(g: &mut Graph) -> usize {
    let mut int8_vals = HashMap::new();
    for n in &g.nodes {
        if let Op::QuantizeLinear(p) = &n.op {
            let x = n.inputs[0];
            let y = n.outputs[0];
            if let Some(q) = QType::from_params(p) {
                if g.constant(x).is_none() && !g.outputs.contains(&y) {
                    int8_vals.insert(y, q);
                }
            }
        }
    }
    if int8_vals.is_empty() {
        return 0;
    }
    let cx = Cx {
        g,
        producers: g.producers(),
        int8: int8_vals,
    };
    let mut replaced: Vec<(usize, Op, Vec<ValueId>)> = vec![];
    for (i, n) in g.nodes.iter().enumerate() {
        let shape = || g.values[n.outputs[0]].shape.clone();
        match &n.op {
            Op::QuantizeLinear(_) => {
                let Some(&qo) = cx.int8.get(&n.outputs[0]) else {
                    continue;
                };
                let (op, ins) = cx
                    .pattern(n.inputs[0], qo)
                    .unwrap_or((QOp::Quantize { out: qo }, vec![n.inputs[0]]));
                replaced.push((i, int8(op, shape()), ins));
            }
            Op::DequantizeLinear(p) => {
                if let (Some(src), Some(q)) = (cx.int8.get(&n.inputs[0]), QType::from_params(p)) {
                    if src.signed == q.signed {
                        replaced.push((
                            i,
                            int8(QOp::Dequantize { input: q }, shape()),
                            n.inputs.clone(),
                        ));
                    }
                }
            }
            Op::Conv(_) | Op::Gemm(_) => {
                let out = QConvOut::Float { activation: None };
                if let Some((c, xq)) = cx.conv(n.outputs[0], out) {
                    replaced.push((i, int8(QOp::Conv(Box::new(c)), shape()), vec![xq]));
                }
            }
            _ => {}
        }
    }
    let count = replaced.len();
    for (i, op, ins) in replaced {
        g.nodes[i].op = op;
        g.nodes[i].inputs = ins;
    }
    fuse_fake_quant(g);
    // (the Dequantizes the int8 ops replaced still read the conv outputs until removed)
    g.remove_dead();
    fuse_conv_lut(g);
    g.remove_dead();
    count
}

/// A residual Add (`QOp::Binary` Add of two same-shape int8 tensors) one of whose inputs is a
/// stored int8 conv output read by nothing else goes into that conv: the conv node is left
/// dead and the Add node becomes the conv with the other input as its `skip`
/// ([`crate::ops::QResidual`]), applied tile by tile while the conv's rows are in cache, so
/// the conv's own output never goes out to memory and back. Returns how many were fused
/// (the conv nodes are left for `remove_dead`).
pub fn fuse_conv_residual(g: &mut Graph) -> usize {
    let producers = g.producers();
    let consumers = g.consumers();
    let mut fused = 0;
    for i in 0..g.nodes.len() {
        let Op::Int8(add) = &g.nodes[i].op else {
            continue;
        };
        let QOp::Binary {
            kind: QBinaryKind::Add,
            a,
            b,
            out,
            b_per_channel: false,
        } = add.op
        else {
            continue;
        };
        let ins = &g.nodes[i].inputs;
        let shape = &add.out_shape;
        if ins[0] == ins[1] {
            continue; // x + x: the conv's output would be its own skip
        }
        // the first input that is a fusable conv's output; the other is the skip
        let pick = [(0, b), (1, a)].into_iter().find_map(|(side, skip_q)| {
            let v = ins[side];
            let p = producers[v]?;
            let Op::Int8(c) = &g.nodes[p].op else {
                return None;
            };
            let QOp::Conv(conv) = &c.op else {
                return None;
            };
            let fusable = matches!(conv.out, QConvOut::Quant { .. })
                && conv.residual.is_none()
                && super::sole_consumer(g, &consumers, v) == Some(i)
                && c.out_shape == *shape
                && g.values[ins[1 - side]].shape == *shape;
            fusable.then_some((p, conv.clone(), ins[1 - side], skip_q))
        });
        let Some((p, mut conv, skip, skip_q)) = pick else {
            continue;
        };
        conv.residual = Some(crate::ops::QResidual { skip: skip_q, out });
        let shape = shape.clone();
        g.nodes[i].op = int8(QOp::Conv(conv), shape);
        g.nodes[i].inputs = vec![g.nodes[p].inputs[0], skip];
        fused += 1;
    }
    fused
}

/// A lookup table (`QOp::Lut`: hard-swish, sigmoid...) whose input is a stored int8 conv
/// output read by nothing else goes into the conv's epilogue: the conv node is left dead and
/// the table node becomes the conv, writing the table's output. Tables already fused compose.
fn fuse_conv_lut(g: &mut Graph) {
    let producers = g.producers();
    let consumers = g.consumers();
    for i in 0..g.nodes.len() {
        let Op::Int8(l) = &g.nodes[i].op else {
            continue;
        };
        let QOp::Lut { table } = &l.op else {
            continue;
        };
        let v = g.nodes[i].inputs[0];
        let Some(p) = producers[v] else {
            continue;
        };
        if consumers[v].len() != 1 || g.outputs.contains(&v) {
            continue;
        }
        let Op::Int8(c) = &g.nodes[p].op else {
            continue;
        };
        let QOp::Conv(conv) = &c.op else {
            continue;
        };
        if !matches!(conv.out, QConvOut::Quant { .. }) || table.len() != 256 {
            continue;
        }
        let mut conv = conv.clone();
        conv.lut = Some(match &conv.lut {
            Some(first) => first.iter().map(|&x| table[x as usize]).collect(),
            None => table.clone(),
        });
        let shape = l.out_shape.clone();
        g.nodes[i].op = int8(QOp::Conv(conv), shape);
        g.nodes[i].inputs = g.nodes[p].inputs.clone();
    }
}

/// `Dequantize(Quantize(x))` with float `x` becomes one f32 -> f32 [`QOp::FakeQuant`] on `x`:
/// the same numbers without converting to the stored int8 layout and back. A Quantize left
/// with no int8 readers is then dead.
fn fuse_fake_quant(g: &mut Graph) {
    let producers = g.producers();
    for i in 0..g.nodes.len() {
        let Op::Int8(dq) = &g.nodes[i].op else {
            continue;
        };
        let QOp::Dequantize { input: dequant } = dq.op else {
            continue;
        };
        let Some(p) = producers[g.nodes[i].inputs[0]] else {
            continue;
        };
        let Op::Int8(q) = &g.nodes[p].op else {
            continue;
        };
        let QOp::Quantize { out: quant } = q.op else {
            continue;
        };
        let x = g.nodes[p].inputs[0];
        let shape = dq.out_shape.clone();
        g.nodes[i].op = int8(QOp::FakeQuant(QRound { quant, dequant }), shape);
        g.nodes[i].inputs = vec![x];
    }
}

/// Whether value `v` holds an int8 (byte) tensor: the output of an int8 op that writes one.
pub fn is_int8_value(g: &Graph, producers: &[Option<usize>], v: ValueId) -> bool {
    match producers[v].map(|p| &g.nodes[p].op) {
        Some(Op::Int8(q)) => q.output_is_int8(),
        _ => false,
    }
}

#[cfg(all(test, feature = "onnx"))]
mod tests {
    use super::*;
    use crate::exec::{Engine, EngineOptions};

    fn residual_convs(g: &Graph) -> usize {
        let fused = |n: &Node| match &n.op {
            Op::Int8(q) => matches!(&q.op, QOp::Conv(c) if c.residual.is_some()),
            _ => false,
        };
        g.nodes.iter().filter(|n| fused(n)).count()
    }

    #[test]
    fn fused_residual_adds_give_the_unfused_bytes() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/models/speck-tiny-int8.onnx");
        let g = crate::onnx::load(path, &Default::default()).unwrap();
        let mut plain = g;
        lower_int8(&mut plain);
        let mut fused = plain.clone();
        fuse_conv_residual(&mut fused);
        fused.remove_dead();
        // the MobileNetV3 backbone's residual blocks, one node fewer each
        let n = residual_convs(&fused);
        assert!(n >= 5, "{n} residual Adds fused");
        assert_eq!(residual_convs(&plain), 0);
        assert_eq!(plain.nodes.len(), fused.nodes.len() + n);
        let opts = EngineOptions {
            threads: 2,
            int8: false, // (lowered above)
            optimize: false,
            ..Default::default()
        };
        let mut ef = Engine::new(fused, &opts).unwrap();
        let mut ep = Engine::new(plain, &opts).unwrap();
        let mut rng = crate::ops::test_util::Rng(99);
        let x: Vec<_> = ef
            .inputs()
            .map(|(_, shape)| {
                let v = (0..shape.iter().product()).map(|_| 2.0 * rng.f()).collect();
                crate::tensor::Tensor::from_f32(shape, v).unwrap()
            })
            .collect();
        let (a, b) = (ef.run(&x).unwrap(), ep.run(&x).unwrap());
        assert_eq!(a, b, "fused and unfused residual Adds differ");
    }
}
