//! Lowering of element-wise and data-movement ops.

use super::attrs::Attrs;
use super::lower::{axis, Cx, LowerError, Lowered};
use crate::ops::*;
use tract_onnx::pb::NodeProto;

type R = Result<Option<Lowered>, LowerError>;

impl Cx<'_> {
    /// Output shape `i` of a node as tract inferred it (used for reshape-like ops).
    fn inferred_shape(&self, node: &NodeProto, i: usize) -> Result<Vec<usize>, LowerError> {
        let name = &node.output[i];
        self.outlets
            .get(name)
            .and_then(|o| self.model.outlet_fact(*o).ok())
            .and_then(|f| f.shape.as_concrete_finite().ok().flatten())
            .map(|s| s.to_vec())
            .ok_or_else(|| LowerError::Invalid(format!("shape of '{name}' is not static")))
    }

    /// Constant input `i` as i64 values, or the attribute of the same name for old opsets.
    fn ints_input_or_attr(
        &mut self,
        node: &NodeProto,
        a: &Attrs,
        i: usize,
        name: &str,
    ) -> Result<Option<Vec<i64>>, LowerError> {
        if self.has_input(node, i) {
            return Ok(Some(self.required_const(node, i, name)?.to_i64_vec()));
        }
        Ok(a.ints(name))
    }

    pub(super) fn lower_tensor(&mut self, op: &str, node: &NodeProto, a: &Attrs) -> R {
        use Activation as Act;
        Ok(Some(match op {
            "Relu" => self.unary(node, UnaryOp::Act(Act::Relu))?,
            "LeakyRelu" => {
                self.unary(node, UnaryOp::Act(Act::LeakyRelu(a.float("alpha", 0.01))))?
            }
            "HardSwish" => self.unary(node, UnaryOp::Act(Act::HardSwish))?,
            "HardSigmoid" => self.unary(
                node,
                UnaryOp::Act(Act::HardSigmoid {
                    alpha: a.float("alpha", 0.2),
                    beta: a.float("beta", 0.5),
                }),
            )?,
            "Sigmoid" => self.unary(node, UnaryOp::Act(Act::Sigmoid))?,
            "Tanh" => self.unary(node, UnaryOp::Act(Act::Tanh))?,
            "Gelu" => {
                if a.string("approximate", "none") != "none" {
                    return Err(LowerError::Unsupported("tanh-approximated Gelu".into()));
                }
                self.unary(node, UnaryOp::Act(Act::Gelu))?
            }
            "Clip" => {
                let (lo, hi) = if self.opset >= 11 {
                    let lo = if self.has_input(node, 1) {
                        self.required_const(node, 1, "min")?.to_f32_vec()
                    } else {
                        vec![]
                    };
                    let hi = if self.has_input(node, 2) {
                        self.required_const(node, 2, "max")?.to_f32_vec()
                    } else {
                        vec![]
                    };
                    (
                        lo.first().copied().unwrap_or(f32::NEG_INFINITY),
                        hi.first().copied().unwrap_or(f32::INFINITY),
                    )
                } else {
                    (
                        a.float("min", f32::NEG_INFINITY),
                        a.float("max", f32::INFINITY),
                    )
                };
                let act = if lo == 0.0 && hi == f32::INFINITY {
                    Act::Relu
                } else {
                    Act::Clip(lo, hi)
                };
                self.unary(node, UnaryOp::Act(act))?
            }
            "Erf" => self.unary(node, UnaryOp::Erf)?,
            "Exp" => self.unary(node, UnaryOp::Exp)?,
            "Log" => self.unary(node, UnaryOp::Log)?,
            "Sqrt" => self.unary(node, UnaryOp::Sqrt)?,
            "Neg" => self.unary(node, UnaryOp::Neg)?,
            "Abs" => self.unary(node, UnaryOp::Abs)?,
            "Reciprocal" => self.unary(node, UnaryOp::Reciprocal)?,
            "Floor" => self.unary(node, UnaryOp::Floor)?,
            "Ceil" => self.unary(node, UnaryOp::Ceil)?,
            "Round" => self.unary(node, UnaryOp::Round)?,
            "Identity" | "Dropout" => {
                if op == "Dropout" && node.output.get(1).is_some_and(|m| !m.is_empty()) {
                    return Err(LowerError::Unsupported("Dropout mask output".into()));
                }
                Lowered::Alias(self.input(node, 0)?)
            }
            "Cast" => {
                if a.int("to", 1) != 1 {
                    return Err(LowerError::Unsupported(
                        "cast to a non-float type at run time".into(),
                    ));
                }
                Lowered::Alias(self.input(node, 0)?)
            }
            "Add" | "Sub" | "Mul" | "Div" | "Pow" | "Max" | "Min" => {
                if node.input.len() != 2 {
                    return Err(LowerError::Unsupported(format!(
                        "{} inputs (only 2)",
                        node.input.len()
                    )));
                }
                let b = match op {
                    "Add" => BinaryOp::Add,
                    "Sub" => BinaryOp::Sub,
                    "Mul" => BinaryOp::Mul,
                    "Div" => BinaryOp::Div,
                    "Pow" => BinaryOp::Pow,
                    "Max" => BinaryOp::Max,
                    _ => BinaryOp::Min,
                };
                Lowered::Op(
                    Op::Binary(b),
                    vec![self.input(node, 0)?, self.input(node, 1)?],
                )
            }
            "Concat" => {
                let inputs = (0..node.input.len())
                    .map(|i| self.input(node, i))
                    .collect::<Result<Vec<_>, _>>()?;
                let rank = self.g.values[inputs[0]].shape.len();
                // Zero-sized inputs add nothing; ONNX allows them.
                let inputs: Vec<_> = inputs
                    .into_iter()
                    .filter(|v| !self.g.values[*v].is_empty())
                    .collect();
                Lowered::Op(
                    Op::Concat {
                        axis: axis(a.int("axis", 0), rank)?,
                    },
                    inputs,
                )
            }
            "Slice" => {
                let x = self.input(node, 0)?;
                let shape = self.g.values[x].shape.clone();
                let (starts, ends, axes, steps) = if self.opset >= 10 {
                    let starts = self.required_const(node, 1, "starts")?.to_i64_vec();
                    let ends = self.required_const(node, 2, "ends")?.to_i64_vec();
                    let axes = self.ints_input_or_attr(node, a, 3, "axes")?;
                    let steps = self.ints_input_or_attr(node, a, 4, "steps")?;
                    (starts, ends, axes, steps)
                } else {
                    (
                        a.ints("starts").unwrap_or_default(),
                        a.ints("ends").unwrap_or_default(),
                        a.ints("axes"),
                        None,
                    )
                };
                let axes = axes.unwrap_or_else(|| (0..starts.len() as i64).collect());
                let steps = steps.unwrap_or_else(|| vec![1; starts.len()]);
                if ends.len() != starts.len()
                    || axes.len() != starts.len()
                    || steps.len() != starts.len()
                {
                    return Err(LowerError::Invalid(
                        "starts/ends/axes/steps lengths differ".into(),
                    ));
                }
                let mut sl = vec![];
                for i in 0..starts.len() {
                    let ax = axis(axes[i], shape.len())?;
                    let d = shape[ax] as i64;
                    let step = steps[i];
                    if step == 0 {
                        return Err(LowerError::Invalid("slice step 0".into()));
                    }
                    let norm = |v: i64| if v < 0 { v + d } else { v };
                    let (start, end) = if step > 0 {
                        (norm(starts[i]).clamp(0, d), norm(ends[i]).clamp(0, d))
                    } else {
                        (
                            norm(starts[i]).clamp(0, d - 1),
                            norm(ends[i]).clamp(-1, d - 1),
                        )
                    };
                    sl.push(SliceAxis {
                        axis: ax,
                        start,
                        end,
                        step,
                    });
                }
                Lowered::Op(Op::Slice(Slice { axes: sl }), vec![x])
            }
            "Split" => {
                let x = self.input(node, 0)?;
                let shape = self.g.values[x].shape.clone();
                let ax = axis(a.int("axis", 0), shape.len())?;
                let given = if self.opset >= 13 {
                    if self.has_input(node, 1) {
                        Some(self.required_const(node, 1, "split")?.to_i64_vec())
                    } else {
                        None
                    }
                } else {
                    a.ints("split")
                };
                let n = node.output.len();
                let sizes: Vec<usize> = match given {
                    Some(s) => s.into_iter().map(|v| v.max(0) as usize).collect(),
                    None => {
                        let d = shape[ax];
                        let chunk = d.div_ceil(n.max(1));
                        (0..n)
                            .map(|i| chunk.min(d.saturating_sub(i * chunk)))
                            .collect()
                    }
                };
                Lowered::Op(Op::Split { axis: ax, sizes }, vec![x])
            }
            "Transpose" => {
                let x = self.input(node, 0)?;
                let rank = self.g.values[x].shape.len();
                let perm = match a.ints("perm") {
                    Some(p) => p
                        .into_iter()
                        .map(|v| axis(v, rank))
                        .collect::<Result<Vec<_>, _>>()?,
                    None => (0..rank).rev().collect(),
                };
                Lowered::Op(Op::Transpose { perm }, vec![x])
            }
            "Reshape" | "Flatten" | "Squeeze" | "Unsqueeze" => {
                let x = self.input(node, 0)?;
                Lowered::Op(
                    Op::Reshape {
                        shape: self.inferred_shape(node, 0)?,
                    },
                    vec![x],
                )
            }
            "Expand" => {
                let x = self.input(node, 0)?;
                Lowered::Op(
                    Op::Expand {
                        shape: self.inferred_shape(node, 0)?,
                    },
                    vec![x],
                )
            }
            "Gather" => {
                let x = self.input(node, 0)?;
                let shape = self.g.values[x].shape.clone();
                let ax = axis(a.int("axis", 0), shape.len())?;
                let idx = self.required_const(node, 1, "indices")?;
                let d = shape[ax] as i64;
                let indices = idx
                    .to_i64_vec()
                    .into_iter()
                    .map(|i| {
                        let j = if i < 0 { i + d } else { i };
                        if j < 0 || j >= d {
                            Err(LowerError::Invalid(format!(
                                "gather index {i} out of range for axis of size {d}"
                            )))
                        } else {
                            Ok(j as usize)
                        }
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                Lowered::Op(
                    Op::Gather {
                        axis: ax,
                        indices,
                        indices_shape: idx.shape().to_vec(),
                    },
                    vec![x],
                )
            }
            "Pad" => {
                let x = self.input(node, 0)?;
                let rank = self.g.values[x].shape.len();
                let (p, value) = if self.opset >= 11 {
                    let p = self.required_const(node, 1, "pads")?.to_i64_vec();
                    let v = if self.has_input(node, 2) {
                        self.required_const(node, 2, "constant_value")?
                            .to_f32_vec()
                            .first()
                            .copied()
                            .unwrap_or(0.0)
                    } else {
                        0.0
                    };
                    if self.has_input(node, 3) {
                        return Err(LowerError::Unsupported("Pad with axes".into()));
                    }
                    (p, v)
                } else {
                    (a.ints("pads").unwrap_or_default(), a.float("value", 0.0))
                };
                if p.len() != 2 * rank || p.iter().any(|v| *v < 0) {
                    return Err(LowerError::Unsupported(format!(
                        "pads {p:?} (negative pads or wrong length)"
                    )));
                }
                let pads = (0..rank)
                    .map(|i| (p[i] as usize, p[i + rank] as usize))
                    .collect();
                let mode = match a.string("mode", "constant").as_str() {
                    "constant" => PadMode::Constant(value),
                    "reflect" => PadMode::Reflect,
                    "edge" => PadMode::Edge,
                    m => return Err(LowerError::Unsupported(format!("mode {m}"))),
                };
                Lowered::Op(Op::Pad { pads, mode }, vec![x])
            }
            "ReduceMean" | "ReduceSum" | "ReduceMax" | "ReduceMin" | "ReduceProd"
            | "ReduceSumSquare" | "ReduceL2" => {
                let kind = match op {
                    "ReduceMean" => ReduceKind::Mean,
                    "ReduceSum" => ReduceKind::Sum,
                    "ReduceMax" => ReduceKind::Max,
                    "ReduceMin" => ReduceKind::Min,
                    "ReduceProd" => ReduceKind::Prod,
                    "ReduceSumSquare" => ReduceKind::SumSquare,
                    _ => ReduceKind::L2,
                };
                let x = self.input(node, 0)?;
                let rank = self.g.values[x].shape.len();
                let axes_in = self
                    .ints_input_or_attr(node, a, 1, "axes")?
                    .unwrap_or_default();
                let mut axes = if axes_in.is_empty() {
                    if a.int("noop_with_empty_axes", 0) != 0 {
                        return Ok(Some(Lowered::Alias(x)));
                    }
                    (0..rank).collect()
                } else {
                    axes_in
                        .into_iter()
                        .map(|v| axis(v, rank))
                        .collect::<Result<Vec<_>, _>>()?
                };
                axes.sort_unstable();
                axes.dedup();
                Lowered::Op(
                    Op::Reduce {
                        kind,
                        axes,
                        keepdims: a.int("keepdims", 1) != 0,
                    },
                    vec![x],
                )
            }
            _ => return Ok(None),
        }))
    }
}
