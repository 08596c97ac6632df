//! Lowering of QuantizeLinear / DequantizeLinear: QDQ models run in speck's float engine as
//! fake quantization (see `ops/quant.rs`).

use super::attrs::Attrs;
use super::lower::{axis, Cx, LowerError, Lowered};
use crate::ops::*;
use tract_onnx::pb::NodeProto;

impl Cx<'_> {
    /// QuantizeLinear / DequantizeLinear (opset 10-21 forms, per tensor or per axis). A
    /// DequantizeLinear of a constant (int8 weights, int32 biases) folds into an f32 constant;
    /// at run time both become float ops that hold the integers as f32.
    pub(super) fn lower_quant(
        &mut self,
        op: &str,
        node: &NodeProto,
        a: &Attrs,
    ) -> Result<Lowered, LowerError> {
        use crate::tensor::Tensor;
        if a.int("block_size", 0) != 0 {
            return Err(LowerError::Unsupported("blocked quantization".into()));
        }
        let x = self.input(node, 0)?;
        let rank = self.g.values[x].shape.len();
        let scale = self.required_const(node, 1, "scale")?.to_f32_vec();
        let zp = if self.has_input(node, 2) {
            Some(self.required_const(node, 2, "zero point")?)
        } else {
            None
        };
        let zero_point = match &zp {
            Some(z) => z.to_i64_vec(),
            None => vec![0; scale.len()],
        };
        if zero_point.len() != scale.len() {
            return Err(LowerError::Invalid(format!(
                "{} scales, {} zero points",
                scale.len(),
                zero_point.len()
            )));
        }
        let (qmin, qmax) = match zp.as_ref().map(Tensor::dtype) {
            None | Some(crate::DType::U8) => (0.0, 255.0),
            Some(crate::DType::I8) => (-128.0, 127.0),
            Some(crate::DType::I32) if op == "DequantizeLinear" => {
                (i32::MIN as f32, i32::MAX as f32)
            }
            Some(dt) => {
                return Err(LowerError::Unsupported(format!(
                    "{op} with {dt} zero point"
                )))
            }
        };
        let ax = if scale.len() > 1 {
            axis(a.int("axis", 1), rank)?
        } else {
            0
        };
        if scale.len() > 1 && self.g.values[x].shape[ax] != scale.len() {
            return Err(LowerError::Invalid(format!(
                "{} scales along axis {ax} of shape {:?}",
                scale.len(),
                self.g.values[x].shape
            )));
        }
        if op == "DequantizeLinear" {
            if let Some(c) = self.g.values[x].constant.clone() {
                let shape = c.shape().to_vec();
                let inner: usize = shape[ax.min(shape.len())..].iter().skip(1).product();
                let dequantize = |i: usize, v: i64| {
                    let k = if scale.len() > 1 {
                        (i / inner.max(1)) % scale.len()
                    } else {
                        0
                    };
                    (v - zero_point[k]) as f32 * scale[k]
                };
                // Straight from the typed integers: widening them all to i64 first cost eight
                // bytes per weight at the import's peak.
                let data: Vec<f32> = match c.as_ref() {
                    Tensor::I8(a) => dequantize_all(a, dequantize),
                    Tensor::U8(a) => dequantize_all(a, dequantize),
                    Tensor::I32(a) => dequantize_all(a, dequantize),
                    other => other
                        .to_i64_vec()
                        .into_iter()
                        .enumerate()
                        .map(|(i, v)| dequantize(i, v))
                        .collect(),
                };
                let t = Tensor::from_f32(&shape, data)
                    .map_err(|e| LowerError::Invalid(e.to_string()))?;
                let name = node.output.first().cloned().unwrap_or_default();
                let v = self.g.add_const(name, t);
                self.g.values[v].dequantized =
                    Some(std::sync::Arc::new(crate::model::QuantizedConst {
                        values: c,
                        params: QuantParams {
                            scale: scale.clone(),
                            zero_point: zero_point.iter().map(|&z| z as f32).collect(),
                            axis: ax,
                            qmin,
                            qmax,
                        },
                    }));
                return Ok(Lowered::Alias(v));
            }
        }
        let p = QuantParams {
            scale,
            zero_point: zero_point.iter().map(|&z| z as f32).collect(),
            axis: ax,
            qmin,
            qmax,
        };
        Ok(Lowered::Op(
            if op == "QuantizeLinear" {
                Op::QuantizeLinear(p)
            } else {
                Op::DequantizeLinear(p)
            },
            vec![x],
        ))
    }
}

/// `f(index, integer)` over a constant's integers in order.
fn dequantize_all<T: Copy + Into<i64>>(
    a: &ndarray::ArrayD<T>,
    f: impl Fn(usize, i64) -> f32,
) -> Vec<f32> {
    a.iter().enumerate().map(|(i, &v)| f(i, v.into())).collect()
}
