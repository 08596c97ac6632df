//! ONNX import: tract-onnx parses the protobuf, infers shapes and folds constants
//! (`InferenceModel::analyse`); speck then lowers every remaining ONNX node into its own
//! [`Graph`](crate::model::Graph) of [`Op`](crate::ops::Op)s.

mod attrs;
mod lower;
mod lower_nn;
mod lower_quant;
mod lower_tensor;

use crate::model::Graph;
use crate::tensor::Tensor;
use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use tract_onnx::pb;
use tract_onnx::prelude::*;
use tract_onnx::tract_hir::infer::{Factoid, InferenceModelExt};

/// Why a model could not be imported.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// file
        path: String,
        /// cause
        source: std::io::Error,
    },
    /// The bytes are not a valid ONNX protobuf.
    #[error("{path} is not a valid ONNX model (truncated or corrupt protobuf: {reason})")]
    NotOnnx {
        /// file
        path: String,
        /// decoder message
        reason: String,
    },
    /// tract rejected the graph during parsing or shape inference.
    #[error("cannot analyse the ONNX graph: {0}")]
    Analysis(String),
    /// An op speck does not implement.
    #[error("unsupported op {op_type} (node '{node}'){detail}")]
    Unsupported {
        /// ONNX op type (with its domain when not the default one)
        op_type: String,
        /// node name
        node: String,
        /// more context, starting with ": " when present
        detail: String,
    },
    /// A node whose inputs or attributes do not make sense.
    #[error("node '{node}' ({op_type}): {msg}")]
    Invalid {
        /// node name
        node: String,
        /// ONNX op type
        op_type: String,
        /// what is wrong
        msg: String,
    },
    /// A model input whose shape is not fully known.
    #[error("input '{name}' has a non-static shape {shape}; give a fixed input shape")]
    DynamicInput {
        /// input name
        name: String,
        /// shape as ONNX declares it
        shape: String,
    },
}

/// Options for [`load`].
#[derive(Clone, Debug, Default)]
pub struct ImportOptions {
    /// Input shapes to use instead of those declared in the model (one per input).
    pub input_shapes: Option<Vec<Vec<usize>>>,
}

/// Import an ONNX file into a speck graph.
pub fn load(path: impl AsRef<Path>, opts: &ImportOptions) -> Result<Graph, ImportError> {
    let path = path.as_ref();
    let bytes = std::fs::read(path).map_err(|source| ImportError::Io {
        path: path.display().to_string(),
        source,
    })?;
    let onnx = tract_onnx::onnx();
    let proto = onnx
        .proto_model_for_read(&mut &bytes[..])
        .map_err(|e| ImportError::NotOnnx {
            path: path.display().to_string(),
            reason: e.root_cause().to_string(),
        })?;
    // The decoded proto holds its own copy of every initializer.
    drop(bytes);
    let dir = path.parent().and_then(|p| p.to_str());
    import(&onnx, Cow::Owned(proto), dir, opts)
}

/// Import an already-decoded ONNX model.
pub fn import_proto(
    onnx: &tract_onnx::Onnx,
    proto: &pb::ModelProto,
    dir: Option<&str>,
    opts: &ImportOptions,
) -> Result<Graph, ImportError> {
    import(onnx, Cow::Borrowed(proto), dir, opts)
}

/// [`import_proto`]; an owned proto gives up its initializers' data once tract has parsed
/// them (tract and then speck's graph each hold their own copy).
fn import(
    onnx: &tract_onnx::Onnx,
    proto: Cow<pb::ModelProto>,
    dir: Option<&str>,
    opts: &ImportOptions,
) -> Result<Graph, ImportError> {
    let graph_proto = proto
        .graph
        .as_ref()
        .ok_or_else(|| ImportError::Analysis("the model has no graph".into()))?;
    check_ops_known(graph_proto)?;
    // tract asserts on some malformed graphs instead of returning errors: contain that here.
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        analyse(onnx, proto, dir, opts)
    }))
    .unwrap_or_else(|p| {
        Err(ImportError::Analysis(format!(
            "malformed graph ({})",
            crate::panic_message(&*p)
        )))
    })
}

fn analyse(
    onnx: &tract_onnx::Onnx,
    mut proto: Cow<pb::ModelProto>,
    dir: Option<&str>,
    opts: &ImportOptions,
) -> Result<Graph, ImportError> {
    let parsed = onnx
        .parse(&proto, dir)
        .map_err(|e| ImportError::Analysis(format!("{e:#}")))?;
    if let Cow::Owned(p) = &mut proto {
        release_initializer_data(p);
    }
    let graph_proto = proto
        .graph
        .as_ref()
        .ok_or_else(|| ImportError::Analysis("the model has no graph".into()))?;
    let mut model = parsed.model;
    let input_names = runtime_inputs(graph_proto);
    let mut input_shapes = vec![];
    for (ix, name) in input_names.iter().enumerate() {
        let fact = model
            .input_fact(ix)
            .map_err(|e| ImportError::Analysis(e.to_string()))?
            .clone();
        let shape = match opts.input_shapes.as_ref().and_then(|s| s.get(ix)) {
            Some(s) => s.clone(),
            None => static_input_shape(name, &fact)?,
        };
        let dt = fact.datum_type.concretize().unwrap_or(f32::datum_type());
        if dt != f32::datum_type() {
            return Err(ImportError::Unsupported {
                op_type: "input".into(),
                node: name.clone(),
                detail: format!(": input type {dt:?}; speck's float engine takes f32 inputs"),
            });
        }
        model
            .set_input_fact(ix, f32::fact(&shape).into())
            .map_err(|e| ImportError::Analysis(e.to_string()))?;
        input_shapes.push(shape);
    }
    model
        .analyse(false)
        .map_err(|e| ImportError::Analysis(format!("{e:#}")))?;

    let opset = proto
        .opset_import
        .iter()
        .find(|o| o.domain.is_empty() || o.domain == "ai.onnx")
        .map(|o| o.version)
        .unwrap_or(17);
    let mut cx = lower::Cx {
        g: Graph::default(),
        by_name: HashMap::new(),
        model: &model,
        outlets: &parsed.outlets_by_name,
        opset,
    };
    for (name, shape) in input_names.iter().zip(input_shapes) {
        let v = cx.g.add_value(name.clone(), shape);
        cx.g.inputs.push(v);
        cx.by_name.insert(name.clone(), v);
    }
    for node in &graph_proto.node {
        cx.lower_node(node)?;
    }
    for out in &graph_proto.output {
        let v = cx.value(&out.name).map_err(|_| {
            ImportError::Analysis(format!(
                "graph output '{}' is not produced by any node",
                out.name
            ))
        })?;
        cx.g.outputs.push(v);
        cx.g.output_names.push(out.name.clone());
    }
    let mut g = cx.g;
    g.metadata = proto
        .metadata_props
        .iter()
        .map(|p| (p.key.clone(), p.value.clone()))
        .collect::<BTreeMap<_, _>>();
    g.remove_dead();
    Ok(g)
}

/// Drop the initializers' data, keeping their names (which tell graph inputs from weights).
fn release_initializer_data(p: &mut pb::ModelProto) {
    for t in p.graph.iter_mut().flat_map(|g| g.initializer.iter_mut()) {
        *t = pb::TensorProto {
            name: std::mem::take(&mut t.name),
            ..Default::default()
        };
    }
}

/// Graph inputs that are not initializers.
fn runtime_inputs(g: &pb::GraphProto) -> Vec<String> {
    let inits: std::collections::HashSet<&str> =
        g.initializer.iter().map(|t| t.name.as_str()).collect();
    g.input
        .iter()
        .filter(|i| !inits.contains(i.name.as_str()))
        .map(|i| i.name.clone())
        .collect()
}

/// Ranks above this are not real models; axis attributes beyond it are corruption (tract's
/// LayerNormalization rule would loop over a corrupted axis for a very long time).
const MAX_RANK: i64 = 16;

/// Fail early, naming the node, on ops speck cannot run and on absurd axis attributes
/// (before tract sees them).
fn check_ops_known(g: &pb::GraphProto) -> Result<(), ImportError> {
    for n in &g.node {
        for a in &n.attribute {
            let bad = match a.name.as_str() {
                "axis" => a.i.abs() > MAX_RANK,
                "axes" | "perm" => a.ints.iter().any(|v| v.abs() > MAX_RANK),
                _ => false,
            };
            if bad {
                return Err(ImportError::Invalid {
                    node: n.name.clone(),
                    op_type: n.op_type.clone(),
                    msg: format!("attribute {} out of range", a.name),
                });
            }
        }
        let default_domain = n.domain.is_empty() || n.domain == "ai.onnx";
        if !default_domain || !lower::is_known(&n.op_type) {
            let op_type = if default_domain {
                n.op_type.clone()
            } else {
                format!("{}::{}", n.domain, n.op_type)
            };
            return Err(ImportError::Unsupported {
                op_type,
                node: n.name.clone(),
                detail: String::new(),
            });
        }
    }
    Ok(())
}

/// The declared input shape, with a symbolic batch dimension taken as 1.
fn static_input_shape(name: &str, fact: &InferenceFact) -> Result<Vec<usize>, ImportError> {
    let dims: Vec<_> = fact.shape.dims().cloned().collect();
    let err = || ImportError::DynamicInput {
        name: name.to_string(),
        shape: format!("{:?}", fact.shape),
    };
    if fact.shape.is_open() {
        return Err(err());
    }
    dims.iter()
        .enumerate()
        .map(|(i, d)| {
            match d
                .concretize()
                .and_then(|d| d.to_i64().ok())
                .map(|d| d as usize)
            {
                Some(v) => Ok(v),
                None if i == 0 => Ok(1),
                None => Err(err()),
            }
        })
        .collect()
}

/// Convert one of tract's tensors into a speck tensor.
pub(crate) fn from_tract(t: &tract_onnx::prelude::Tensor) -> Option<Tensor> {
    fn arr<T: Datum + Clone>(t: &tract_onnx::prelude::Tensor) -> Option<ndarray::ArrayD<T>> {
        t.to_plain_array_view::<T>().ok().map(|a| a.to_owned())
    }
    let dt = t.datum_type();
    Some(if dt == f32::datum_type() {
        Tensor::F32(arr::<f32>(t)?)
    } else if dt == f64::datum_type() || dt == f16::datum_type() {
        Tensor::F32(arr::<f32>(&*t.cast_to::<f32>().ok()?)?)
    } else if dt == i64::datum_type() {
        Tensor::I64(arr::<i64>(t)?)
    } else if dt == i32::datum_type() {
        Tensor::I32(arr::<i32>(t)?)
    } else if dt == i8::datum_type() {
        Tensor::I8(arr::<i8>(t)?)
    } else if dt == u8::datum_type() {
        Tensor::U8(arr::<u8>(t)?)
    } else if dt == bool::datum_type() {
        Tensor::Bool(arr::<bool>(t)?)
    } else if dt.is_integer() || dt == TDim::datum_type() {
        Tensor::I64(arr::<i64>(&*t.cast_to::<i64>().ok()?)?)
    } else {
        return None;
    })
}
