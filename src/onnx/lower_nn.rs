//! Lowering of the neural-network ops: convolution, normalisation, pooling, resizing,
//! sampling, attention arithmetic.

use super::attrs::Attrs;
use super::lower::{axis, Cx, LowerError, Lowered};
use crate::ops::*;
use tract_onnx::pb::NodeProto;

type R = Result<Option<Lowered>, LowerError>;

/// Explicit (top, left, bottom, right) pads from `auto_pad` / `pads`.
fn resolve_pads(
    a: &Attrs,
    input_hw: [usize; 2],
    kernel: [usize; 2],
    strides: [usize; 2],
    dilations: [usize; 2],
) -> Result<[usize; 4], LowerError> {
    let auto = a.string("auto_pad", "NOTSET");
    match auto.as_str() {
        "NOTSET" => {
            let p = a.ints("pads").unwrap_or_else(|| vec![0; 4]);
            if p.len() != 4 || p.iter().any(|v| *v < 0) {
                return Err(LowerError::Invalid(format!(
                    "pads {p:?}: expected 4 non-negative values"
                )));
            }
            Ok([p[0] as usize, p[1] as usize, p[2] as usize, p[3] as usize])
        }
        "VALID" => Ok([0; 4]),
        "SAME_UPPER" | "SAME_LOWER" => {
            let mut out = [0; 4];
            for i in 0..2 {
                let o = input_hw[i].div_ceil(strides[i]);
                let need = (o - 1) * strides[i] + (kernel[i] - 1) * dilations[i] + 1;
                let total = need.saturating_sub(input_hw[i]);
                let small = total / 2;
                let (begin, end) = if auto == "SAME_UPPER" {
                    (small, total - small)
                } else {
                    (total - small, small)
                };
                out[i] = begin;
                out[i + 2] = end;
            }
            Ok(out)
        }
        o => Err(LowerError::Invalid(format!("unknown auto_pad {o}"))),
    }
}

fn pair(a: &Attrs, name: &str, default: usize) -> Result<[usize; 2], LowerError> {
    match a.ints(name) {
        None => Ok([default; 2]),
        Some(v) if v.len() == 2 && v.iter().all(|x| *x >= 1) => Ok([v[0] as usize, v[1] as usize]),
        Some(v) => Err(LowerError::Unsupported(format!(
            "{name} {v:?}: only 2-D (NCHW) is supported"
        ))),
    }
}

fn spatial(shape: &[usize], what: &str) -> Result<[usize; 2], LowerError> {
    if shape.len() != 4 {
        return Err(LowerError::Unsupported(format!(
            "{what} on a rank-{} tensor; only 2-D NCHW",
            shape.len()
        )));
    }
    Ok([shape[2], shape[3]])
}

impl Cx<'_> {
    pub(super) fn lower_nn(&mut self, op: &str, node: &NodeProto, a: &Attrs) -> R {
        Ok(Some(match op {
            "QuantizeLinear" | "DequantizeLinear" => {
                return self.lower_quant(op, node, a).map(Some)
            }
            "Conv" => {
                let x = self.input(node, 0)?;
                let xs = self.g.values[x].shape.clone();
                let hw = spatial(&xs, "Conv")?;
                let w = self.input(node, 1)?;
                if self.g.constant(w).is_none() {
                    return Err(LowerError::Unsupported("weights must be constant".into()));
                }
                let ws = self.g.values[w].shape.clone();
                if ws.len() != 4 {
                    return Err(LowerError::Invalid(format!("weights of shape {ws:?}")));
                }
                let strides = pair(a, "strides", 1)?;
                let dilations = pair(a, "dilations", 1)?;
                let pads = resolve_pads(a, hw, [ws[2], ws[3]], strides, dilations)?;
                let group = a.int("group", 1);
                if group < 1 {
                    return Err(LowerError::Invalid(format!("group {group}")));
                }
                let mut inputs = vec![x, w];
                if self.has_input(node, 2) {
                    let b = self.input(node, 2)?;
                    if self.g.constant(b).is_none() {
                        return Err(LowerError::Unsupported("bias must be constant".into()));
                    }
                    inputs.push(b);
                }
                let c = Conv {
                    group: group as usize,
                    strides,
                    pads,
                    dilations,
                    activation: None,
                    residual: false,
                };
                Lowered::Op(Op::Conv(c), inputs)
            }
            "BatchNormalization" => {
                if a.int("training_mode", 0) != 0 {
                    return Err(LowerError::Unsupported("training_mode=1".into()));
                }
                let inputs = (0..5)
                    .map(|i| self.input(node, i))
                    .collect::<Result<Vec<_>, _>>()?;
                Lowered::Op(
                    Op::BatchNorm {
                        epsilon: a.float("epsilon", 1e-5),
                    },
                    inputs,
                )
            }
            "GlobalAveragePool" => Lowered::Op(Op::GlobalAveragePool, vec![self.input(node, 0)?]),
            "GlobalMaxPool" => Lowered::Op(Op::GlobalMaxPool, vec![self.input(node, 0)?]),
            "MaxPool" | "AveragePool" => {
                if node.output.len() > 1 && !node.output[1].is_empty() {
                    return Err(LowerError::Unsupported("MaxPool indices output".into()));
                }
                let x = self.input(node, 0)?;
                let hw = spatial(&self.g.values[x].shape, op)?;
                let kernel = pair(a, "kernel_shape", 1)?;
                let strides = pair(a, "strides", 1)?;
                let dilations = pair(a, "dilations", 1)?;
                let pads = resolve_pads(a, hw, kernel, strides, dilations)?;
                let kind = if op == "MaxPool" {
                    PoolKind::Max
                } else {
                    PoolKind::Average
                };
                let p = Pool {
                    kind,
                    kernel,
                    strides,
                    pads,
                    dilations,
                    ceil_mode: a.int("ceil_mode", 0) != 0,
                    count_include_pad: a.int("count_include_pad", 0) != 0,
                };
                Lowered::Op(Op::Pool(p), vec![x])
            }
            "Resize" | "Upsample" => self.lower_resize(op, node, a)?,
            "GridSample" => {
                let mode = match a.string("mode", "bilinear").as_str() {
                    "bilinear" | "linear" => GridMode::Bilinear,
                    "nearest" => GridMode::Nearest,
                    m => return Err(LowerError::Unsupported(format!("mode {m}"))),
                };
                let padding = match a.string("padding_mode", "zeros").as_str() {
                    "zeros" => GridPadding::Zeros,
                    "border" => GridPadding::Border,
                    "reflection" => GridPadding::Reflection,
                    m => return Err(LowerError::Unsupported(format!("padding_mode {m}"))),
                };
                let g = GridSample {
                    mode,
                    padding,
                    align_corners: a.int("align_corners", 0) != 0,
                };
                Lowered::Op(
                    Op::GridSample(g),
                    vec![self.input(node, 0)?, self.input(node, 1)?],
                )
            }
            "LayerNormalization" => {
                for extra in node.output.iter().skip(1) {
                    if !extra.is_empty() {
                        return Err(LowerError::Unsupported("Mean / InvStdDev outputs".into()));
                    }
                }
                let x = self.input(node, 0)?;
                let rank = self.g.values[x].shape.len();
                let mut inputs = vec![x, self.input(node, 1)?];
                if self.has_input(node, 2) {
                    inputs.push(self.input(node, 2)?);
                }
                let ax = axis(a.int("axis", -1), rank)?;
                Lowered::Op(
                    Op::LayerNorm {
                        axis: ax,
                        epsilon: a.float("epsilon", 1e-5),
                    },
                    inputs,
                )
            }
            "Softmax" => {
                let x = self.input(node, 0)?;
                let rank = self.g.values[x].shape.len();
                let default = if self.opset >= 13 { -1 } else { 1 };
                let ax = axis(a.int("axis", default), rank)?;
                if self.opset < 13 && ax != rank - 1 {
                    return Err(LowerError::Unsupported(
                        "opset < 13 Softmax over a non-last axis".into(),
                    ));
                }
                Lowered::Op(Op::Softmax { axis: ax }, vec![x])
            }
            "MatMul" => Lowered::Op(Op::MatMul, vec![self.input(node, 0)?, self.input(node, 1)?]),
            "Gemm" => {
                let mut inputs = vec![self.input(node, 0)?, self.input(node, 1)?];
                if self.has_input(node, 2) {
                    inputs.push(self.input(node, 2)?);
                }
                let g = Gemm {
                    alpha: a.float("alpha", 1.0),
                    beta: a.float("beta", 1.0),
                    trans_a: a.int("transA", 0) != 0,
                    trans_b: a.int("transB", 0) != 0,
                };
                Lowered::Op(Op::Gemm(g), inputs)
            }
            "Einsum" => {
                let equation: String = a
                    .string("equation", "")
                    .chars()
                    .filter(|c| !c.is_whitespace())
                    .collect();
                let inputs = (0..node.input.len())
                    .map(|i| self.input(node, i))
                    .collect::<Result<Vec<_>, _>>()?;
                Lowered::Op(Op::Einsum { equation }, inputs)
            }
            _ => return Ok(None),
        }))
    }

    fn lower_resize(
        &mut self,
        op: &str,
        node: &NodeProto,
        a: &Attrs,
    ) -> Result<Lowered, LowerError> {
        let x = self.input(node, 0)?;
        let in_shape = self.g.values[x].shape.clone();
        let rank = in_shape.len();
        let old = op == "Upsample" || self.opset < 11;
        let (scales_ix, sizes_ix) = if old { (1, usize::MAX) } else { (2, 3) };
        let scales_t = if old && a.has("scales") {
            Some(a.floats("scales"))
        } else if self.has_input(node, scales_ix) {
            Some(self.required_const(node, scales_ix, "scales")?.to_f32_vec())
                .filter(|v| !v.is_empty())
        } else {
            None
        };
        let sizes_t = if sizes_ix != usize::MAX && self.has_input(node, sizes_ix) {
            Some(self.required_const(node, sizes_ix, "sizes")?.to_i64_vec())
                .filter(|v| !v.is_empty())
        } else {
            None
        };
        if a.has("axes") {
            return Err(LowerError::Unsupported("Resize with axes".into()));
        }
        if a.string("keep_aspect_ratio_policy", "stretch") != "stretch" {
            return Err(LowerError::Unsupported("keep_aspect_ratio_policy".into()));
        }
        let (out_shape, scales) = match (sizes_t, scales_t) {
            (Some(sz), _) => {
                if sz.len() != rank || sz.iter().any(|v| *v <= 0) {
                    return Err(LowerError::Invalid(format!(
                        "sizes {sz:?} for input {in_shape:?}"
                    )));
                }
                let out: Vec<usize> = sz.iter().map(|v| *v as usize).collect();
                let sc = out
                    .iter()
                    .zip(&in_shape)
                    .map(|(o, i)| *o as f32 / *i as f32)
                    .collect();
                (out, sc)
            }
            (None, Some(sc)) => {
                if sc.len() != rank
                    || sc
                        .iter()
                        .any(|v| v.partial_cmp(&0.0) != Some(std::cmp::Ordering::Greater))
                {
                    return Err(LowerError::Invalid(format!(
                        "scales {sc:?} for input {in_shape:?}"
                    )));
                }
                let out = in_shape
                    .iter()
                    .zip(&sc)
                    .map(|(i, s)| (*i as f32 * s).floor() as usize)
                    .collect();
                (out, sc)
            }
            (None, None) => {
                return Err(LowerError::Invalid("neither scales nor sizes given".into()))
            }
        };
        let transform = if old {
            CoordTransform::Asymmetric
        } else {
            match a
                .string("coordinate_transformation_mode", "half_pixel")
                .as_str()
            {
                "half_pixel" => CoordTransform::HalfPixel,
                "pytorch_half_pixel" => CoordTransform::PytorchHalfPixel,
                "align_corners" => CoordTransform::AlignCorners,
                "asymmetric" => CoordTransform::Asymmetric,
                m => {
                    return Err(LowerError::Unsupported(format!(
                        "coordinate_transformation_mode {m}"
                    )))
                }
            }
        };
        let mode = match a.string("mode", "nearest").as_str() {
            "nearest" => ResizeMode::Nearest(if old {
                NearestRounding::Floor
            } else {
                match a.string("nearest_mode", "round_prefer_floor").as_str() {
                    "round_prefer_floor" => NearestRounding::RoundPreferFloor,
                    "round_prefer_ceil" => NearestRounding::RoundPreferCeil,
                    "floor" => NearestRounding::Floor,
                    "ceil" => NearestRounding::Ceil,
                    m => return Err(LowerError::Unsupported(format!("nearest_mode {m}"))),
                }
            }),
            "linear" | "bilinear" => ResizeMode::Linear,
            "cubic" => {
                if a.int("exclude_outside", 0) != 0 {
                    return Err(LowerError::Unsupported("cubic with exclude_outside".into()));
                }
                ResizeMode::Cubic(a.float("cubic_coeff_a", -0.75))
            }
            m => return Err(LowerError::Unsupported(format!("mode {m}"))),
        };
        Ok(Lowered::Op(
            Op::Resize(Resize {
                mode,
                transform,
                out_shape,
                scales,
            }),
            vec![x],
        ))
    }
}
