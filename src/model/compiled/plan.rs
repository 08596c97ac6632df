//! The plan section (the graph with constants replaced by references into the weights
//! section) and the weights section's tensor encoding.

use super::header::{align_up, ALIGN};
use super::CompiledError;
use crate::kernels::qs8::conv;
use crate::kernels::qs8::gemm::PackedB;
use crate::model::{Graph, Node, Value, ValueId};
use crate::ops::{Int8Op, Op, QOp, QWeights, StoredPacked};
use crate::tensor::{DType, Tensor};
use ndarray::{ArrayD, IxDyn};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

/// Element type of a stored tensor.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum WeightType {
    /// f32
    F32,
    /// i64
    I64,
    /// i32
    I32,
    /// i8
    I8,
    /// u8
    U8,
    /// bool, one byte (0 or 1)
    Bool,
}

impl WeightType {
    fn of(d: DType) -> WeightType {
        match d {
            DType::F32 => WeightType::F32,
            DType::I64 => WeightType::I64,
            DType::I32 => WeightType::I32,
            DType::I8 => WeightType::I8,
            DType::U8 => WeightType::U8,
            DType::Bool => WeightType::Bool,
        }
    }

    fn size(self) -> usize {
        match self {
            WeightType::F32 | WeightType::I32 => 4,
            WeightType::I64 => 8,
            WeightType::I8 | WeightType::U8 | WeightType::Bool => 1,
        }
    }
}

/// Where a constant's data lies in the weights section.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WeightRef {
    /// element type
    pub dtype: WeightType,
    /// byte offset from the start of the weights section (a multiple of 64)
    pub offset: u64,
    /// byte length
    pub len: u64,
}

/// A value of the stored graph.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PlanValue {
    /// name
    pub name: String,
    /// static shape
    pub shape: Vec<usize>,
    /// the constant's data, for weights
    pub constant: Option<WeightRef>,
}

/// Everything of a compiled model except the weights' bytes.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Plan {
    /// speck version that wrote the file
    pub speck_version: String,
    /// file name of the model it was compiled from
    pub source: String,
    /// values; constants point into the weights section
    pub values: Vec<PlanValue>,
    /// nodes in execution order
    pub nodes: Vec<Node>,
    /// graph inputs
    pub inputs: Vec<ValueId>,
    /// graph outputs
    pub outputs: Vec<ValueId>,
    /// declared output names
    pub output_names: Vec<String>,
    /// model metadata (ONNX `metadata_props`: input size, mean/std, class names, ...)
    pub metadata: BTreeMap<String, String>,
    /// what the graph passes changed at compile time
    pub pass_log: Vec<String>,
}

/// Split a graph into its plan and the weights section's bytes. Values sharing one
/// constant (the same `Arc`) share its bytes.
pub fn from_graph(g: &Graph, source: &str, pass_log: &[String]) -> (Plan, Vec<u8>) {
    let mut weights: Vec<u8> = vec![];
    let mut seen: HashMap<*const Tensor, WeightRef> = HashMap::new();
    let values = g
        .values
        .iter()
        .map(|v| {
            let constant = v.constant.as_ref().map(|c| {
                *seen.entry(Arc::as_ptr(c)).or_insert_with(|| {
                    weights.resize(align_up(weights.len()), 0);
                    let offset = weights.len() as u64;
                    write_le(c, &mut weights);
                    WeightRef {
                        dtype: WeightType::of(c.dtype()),
                        offset,
                        len: weights.len() as u64 - offset,
                    }
                })
            });
            PlanValue {
                name: v.name.clone(),
                shape: v.shape.clone(),
                constant,
            }
        })
        .collect();
    let nodes = g
        .nodes
        .iter()
        .map(|n| store_packed_conv(n, &mut weights))
        .collect();
    let plan = Plan {
        speck_version: env!("CARGO_PKG_VERSION").to_string(),
        source: source.to_string(),
        values,
        nodes,
        inputs: g.inputs.clone(),
        outputs: g.outputs.clone(),
        output_names: g.output_names.clone(),
        metadata: g.metadata.clone(),
        pass_log: pass_log.to_vec(),
    };
    (plan, weights)
}

/// The node as the plan stores it: an int8 conv that runs as GEMMs gets its weights packed
/// (if they are not yet) and moved to the weights section, one aligned run per group.
fn store_packed_conv(n: &Node, weights: &mut Vec<u8>) -> Node {
    let Op::Int8(q) = &n.op else {
        return n.clone();
    };
    let QOp::Conv(c) = &q.op else {
        return n.clone();
    };
    let packed: Arc<[PackedB]> = match &c.weights {
        QWeights::GemmPacked(p) => p.clone(),
        QWeights::Onnx(w) if !conv::is_depthwise(c.w_shape, c.conv.group) => {
            conv::pack_gemm_groups(w, c.w_shape, c.conv.group).into()
        }
        _ => return n.clone(),
    };
    let stored = packed
        .iter()
        .map(|p| {
            weights.resize(align_up(weights.len()), 0);
            let offset = weights.len() as u64;
            // (the sums are native-endian i32: every speck target is little-endian)
            weights.extend(p.data.iter().map(|&b| b as u8));
            StoredPacked {
                offset,
                len: p.data.len() as u64,
            }
        })
        .collect();
    let mut c = c.clone();
    c.weights = QWeights::Stored(stored);
    Node {
        op: Op::Int8(Box::new(Int8Op {
            op: QOp::Conv(c),
            out_shape: q.out_shape.clone(),
        })),
        ..n.clone()
    }
}

/// Resolve a stored conv's packed weights (see [`store_packed_conv`]), checking that each
/// group's bytes fit the section and are a consistent packing of the conv's shape.
fn load_packed_conv(
    n: &mut Node,
    weights: &[u8],
    release: &dyn Fn(&[u8]),
) -> Result<(), CompiledError> {
    let Op::Int8(q) = &mut n.op else {
        return Ok(());
    };
    let QOp::Conv(c) = &mut q.op else {
        return Ok(());
    };
    let QWeights::Stored(stored) = &c.weights else {
        return Ok(());
    };
    let name = &n.name;
    let [m, cg, kh, kw] = c.w_shape;
    let group = c.conv.group;
    let k = kh.checked_mul(kw).and_then(|v| v.checked_mul(cg));
    let (Some(k), true) = (k, group > 0 && m % group == 0 && stored.len() == group) else {
        return Err(corrupt(format!(
            "int8 conv '{name}': {} packed groups for weights {:?} in {group} groups",
            stored.len(),
            c.w_shape
        )));
    };
    let mut groups = Vec::with_capacity(group);
    for s in stored {
        let end = s.offset.checked_add(s.len);
        if s.offset % ALIGN as u64 != 0 || end.is_none_or(|e| e > weights.len() as u64) {
            return Err(corrupt(format!(
                "int8 conv '{name}': packed weights at {}+{} do not fit the {}-byte weights \
                 section",
                s.offset,
                s.len,
                weights.len()
            )));
        }
        let bytes = &weights[s.offset as usize..(s.offset + s.len) as usize];
        let data = bytes.iter().map(|&b| b as i8).collect();
        release(bytes);
        groups.push(
            PackedB::from_packed(data, m / group, k)
                .map_err(|e| corrupt(format!("int8 conv '{name}': {e}")))?,
        );
    }
    c.weights = QWeights::GemmPacked(groups.into());
    Ok(())
}

/// Append a tensor's elements, little-endian, in row-major order.
fn write_le(t: &Tensor, out: &mut Vec<u8>) {
    match t {
        Tensor::F32(a) => a.iter().for_each(|v| out.extend(v.to_le_bytes())),
        Tensor::I64(a) => a.iter().for_each(|v| out.extend(v.to_le_bytes())),
        Tensor::I32(a) => a.iter().for_each(|v| out.extend(v.to_le_bytes())),
        Tensor::I8(a) => a.iter().for_each(|v| out.extend(v.to_le_bytes())),
        Tensor::U8(a) => out.extend(a.iter()),
        Tensor::Bool(a) => out.extend(a.iter().map(|&v| v as u8)),
    }
}

fn corrupt(msg: String) -> CompiledError {
    CompiledError::CorruptPlan(msg)
}

/// Rebuild the graph, copying each constant once out of `weights` (the weights section).
/// `release` is called with each constant's bytes once they are copied out.
pub fn to_graph(
    plan: Plan,
    weights: &[u8],
    release: &dyn Fn(&[u8]),
) -> Result<Graph, CompiledError> {
    let mut loaded: HashMap<u64, Arc<Tensor>> = HashMap::new();
    let mut values = Vec::with_capacity(plan.values.len());
    for v in plan.values {
        let constant = match v.constant {
            None => None,
            Some(r) => Some(match loaded.get(&r.offset) {
                Some(t)
                    if t.shape() == v.shape.as_slice() && WeightType::of(t.dtype()) == r.dtype =>
                {
                    t.clone()
                }
                _ => {
                    let t = Arc::new(read_tensor(&v.name, &v.shape, r, weights)?);
                    release(&weights[r.offset as usize..(r.offset + r.len) as usize]);
                    loaded.insert(r.offset, t.clone());
                    t
                }
            }),
        };
        values.push(Value {
            name: v.name,
            shape: v.shape,
            constant,
            dequantized: None,
        });
    }
    let mut nodes = plan.nodes;
    for n in &mut nodes {
        load_packed_conv(n, weights, release)?;
    }
    Ok(Graph {
        values,
        nodes,
        inputs: plan.inputs,
        outputs: plan.outputs,
        output_names: plan.output_names,
        metadata: plan.metadata,
    })
}

/// Decode one stored tensor, checking its extent against the section and its shape.
fn read_tensor(
    name: &str,
    shape: &[usize],
    r: WeightRef,
    weights: &[u8],
) -> Result<Tensor, CompiledError> {
    let numel = shape
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .ok_or_else(|| corrupt(format!("constant '{name}': shape {shape:?} overflows")))?;
    let expected = numel.checked_mul(r.dtype.size());
    let end = r.offset.checked_add(r.len);
    let fits = expected == Some(r.len as usize)
        && r.offset % ALIGN as u64 == 0
        && end.is_some_and(|e| e <= weights.len() as u64);
    if !fits {
        return Err(corrupt(format!(
            "constant '{name}' ({:?} {shape:?}) at {}+{} does not fit the {}-byte weights section",
            r.dtype,
            r.offset,
            r.len,
            weights.len()
        )));
    }
    let bytes = &weights[r.offset as usize..(r.offset + r.len) as usize];
    let dim = IxDyn(shape);
    let t = match r.dtype {
        WeightType::F32 => {
            ArrayD::from_shape_vec(dim, le(bytes, f32::from_le_bytes)).map(Tensor::F32)
        }
        WeightType::I64 => {
            ArrayD::from_shape_vec(dim, le(bytes, i64::from_le_bytes)).map(Tensor::I64)
        }
        WeightType::I32 => {
            ArrayD::from_shape_vec(dim, le(bytes, i32::from_le_bytes)).map(Tensor::I32)
        }
        WeightType::I8 => ArrayD::from_shape_vec(dim, le(bytes, i8::from_le_bytes)).map(Tensor::I8),
        WeightType::U8 => ArrayD::from_shape_vec(dim, bytes.to_vec()).map(Tensor::U8),
        WeightType::Bool => {
            if let Some(b) = bytes.iter().find(|&&b| b > 1) {
                return Err(corrupt(format!("constant '{name}': bool byte {b}")));
            }
            ArrayD::from_shape_vec(dim, bytes.iter().map(|&b| b == 1).collect()).map(Tensor::Bool)
        }
    };
    t.map_err(|e| corrupt(format!("constant '{name}': {e}")))
}

/// Decode little-endian elements of `N` bytes each.
fn le<T, const N: usize>(bytes: &[u8], from_le: fn([u8; N]) -> T) -> Vec<T> {
    bytes
        .chunks_exact(N)
        .map(|c| from_le(c.try_into().expect("chunk of N bytes")))
        .collect()
}
