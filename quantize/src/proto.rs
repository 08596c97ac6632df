//! Small helpers over the prost-generated ONNX structs.

use crate::error::QuantizeError;
use crate::pb::{self, attribute_proto::AttributeType, tensor_proto::DataType};
use ndarray::{ArrayD, IxDyn};
use std::collections::HashMap;

/// Read a float initializer (float_data or raw little-endian data).
pub fn to_f32(t: &pb::TensorProto) -> Result<ArrayD<f32>, QuantizeError> {
    let err = |msg: &str| QuantizeError::Initializer {
        name: t.name.clone(),
        msg: msg.to_string(),
    };
    if t.data_type != DataType::Float as i32 {
        return Err(err("not a float tensor"));
    }
    if t.data_location == Some(1) || !t.external_data.is_empty() {
        return Err(err("external data is not supported"));
    }
    let shape: Vec<usize> = t.dims.iter().map(|&d| d.max(0) as usize).collect();
    let data: Vec<f32> = if !t.raw_data.is_empty() {
        t.raw_data
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect()
    } else {
        t.float_data.clone()
    };
    ArrayD::from_shape_vec(IxDyn(&shape), data)
        .map_err(|e| err(&format!("data does not match dims: {e}")))
}

fn base(name: &str, shape: &[usize], dt: DataType, raw: Vec<u8>) -> pb::TensorProto {
    pb::TensorProto {
        name: name.to_string(),
        dims: shape.iter().map(|&d| d as i64).collect(),
        data_type: dt as i32,
        raw_data: raw,
        ..Default::default()
    }
}

/// A float initializer.
pub fn f32_tensor(name: &str, shape: &[usize], data: &[f32]) -> pb::TensorProto {
    base(
        name,
        shape,
        DataType::Float,
        data.iter().flat_map(|v| v.to_le_bytes()).collect(),
    )
}

/// An int8 initializer.
pub fn i8_tensor(name: &str, shape: &[usize], data: &[i8]) -> pb::TensorProto {
    base(
        name,
        shape,
        DataType::Int8,
        data.iter().map(|&v| v as u8).collect(),
    )
}

/// A uint8 initializer.
pub fn u8_tensor(name: &str, shape: &[usize], data: &[u8]) -> pb::TensorProto {
    base(name, shape, DataType::Uint8, data.to_vec())
}

/// An int32 initializer.
pub fn i32_tensor(name: &str, shape: &[usize], data: &[i32]) -> pb::TensorProto {
    base(
        name,
        shape,
        DataType::Int32,
        data.iter().flat_map(|v| v.to_le_bytes()).collect(),
    )
}

/// An integer attribute, if present.
pub fn attr_i(n: &pb::NodeProto, name: &str) -> Option<i64> {
    n.attribute.iter().find(|a| a.name == name).map(|a| a.i)
}

/// A float attribute, if present.
pub fn attr_f(n: &pb::NodeProto, name: &str) -> Option<f32> {
    n.attribute.iter().find(|a| a.name == name).map(|a| a.f)
}

/// An integer attribute.
pub fn int_attr(name: &str, v: i64) -> pb::AttributeProto {
    pb::AttributeProto {
        name: name.into(),
        r#type: AttributeType::Int as i32,
        i: v,
        ..Default::default()
    }
}

/// A node.
pub fn node(
    op: &str,
    name: &str,
    inputs: &[&str],
    outputs: &[&str],
    attrs: Vec<pb::AttributeProto>,
) -> pb::NodeProto {
    pb::NodeProto {
        op_type: op.into(),
        name: name.into(),
        input: inputs.iter().map(|s| s.to_string()).collect(),
        output: outputs.iter().map(|s| s.to_string()).collect(),
        attribute: attrs,
        ..Default::default()
    }
}

/// Name -> index of the graph's initializers.
pub fn initializer_index(g: &pb::GraphProto) -> HashMap<String, usize> {
    g.initializer
        .iter()
        .enumerate()
        .map(|(i, t)| (t.name.clone(), i))
        .collect()
}

/// Tensor name -> (node index, input position) of every reader.
pub fn consumers(g: &pb::GraphProto) -> HashMap<String, Vec<(usize, usize)>> {
    let mut m: HashMap<String, Vec<(usize, usize)>> = HashMap::new();
    for (i, n) in g.node.iter().enumerate() {
        for (j, t) in n.input.iter().enumerate() {
            if !t.is_empty() {
                m.entry(t.clone()).or_default().push((i, j));
            }
        }
    }
    m
}

/// Tensor name -> index of the node that writes it.
pub fn producers(g: &pb::GraphProto) -> HashMap<String, usize> {
    let mut m = HashMap::new();
    for (i, n) in g.node.iter().enumerate() {
        for t in &n.output {
            if !t.is_empty() {
                m.insert(t.clone(), i);
            }
        }
    }
    m
}

/// The default-domain opset of a model.
pub fn opset(m: &pb::ModelProto) -> i64 {
    m.opset_import
        .iter()
        .find(|o| o.domain.is_empty() || o.domain == "ai.onnx")
        .map(|o| o.version)
        .unwrap_or(1)
}

/// Node types that mark an already-quantized model.
pub fn is_quant_op(op_type: &str) -> bool {
    matches!(
        op_type,
        "QuantizeLinear"
            | "DequantizeLinear"
            | "DynamicQuantizeLinear"
            | "ConvInteger"
            | "MatMulInteger"
    ) || op_type.starts_with("QLinear")
}

/// Fail with [`QuantizeError::AlreadyQuantized`] when the model holds quantization nodes.
pub fn check_float_model(m: &pb::ModelProto) -> Result<(), QuantizeError> {
    let g = m.graph.as_ref().ok_or(QuantizeError::NoGraph)?;
    if let Some(n) = g.node.iter().find(|n| is_quant_op(&n.op_type)) {
        return Err(QuantizeError::AlreadyQuantized {
            node: n.name.clone(),
            op_type: n.op_type.clone(),
        });
    }
    Ok(())
}

/// Replace (or add) a float initializer.
pub fn set_f32(g: &mut pb::GraphProto, name: &str, a: &ArrayD<f32>) {
    let data: Vec<f32> = a.iter().copied().collect();
    let t = f32_tensor(name, a.shape(), &data);
    match g.initializer.iter_mut().find(|t| t.name == name) {
        Some(slot) => *slot = t,
        None => g.initializer.push(t),
    }
}

/// Number of bytes a model takes when encoded.
pub fn encoded_len(m: &pb::ModelProto) -> usize {
    prost::Message::encoded_len(m)
}
