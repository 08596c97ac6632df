//! Typed errors of the quantizer.

/// Why a model could not be quantized.
#[derive(Debug, thiserror::Error)]
pub enum QuantizeError {
    /// The input model already holds quantization nodes.
    #[error("the model is already quantized (node '{node}' is {op_type}); give a float model")]
    AlreadyQuantized {
        /// node name
        node: String,
        /// its op type
        op_type: String,
    },
    /// The model has no graph.
    #[error("the model has no graph")]
    NoGraph,
    /// The default-domain opset is too old for per-axis Q/DQ.
    #[error("the model uses opset {0}; per-axis QuantizeLinear/DequantizeLinear needs opset 13 or newer")]
    OldOpset(i64),
    /// An initializer that cannot be read.
    #[error("initializer '{name}': {msg}")]
    Initializer {
        /// tensor name
        name: String,
        /// what is wrong
        msg: String,
    },
    /// A node whose structure the quantizer cannot handle.
    #[error("node '{node}': {msg}")]
    Node {
        /// node name
        node: String,
        /// what is wrong
        msg: String,
    },
    /// A `--keep-float` name that matches no node.
    #[error("--keep-float {0}: no node has that name")]
    UnknownNode(String),
}
