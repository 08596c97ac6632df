//! speck's typed graph: values with static shapes, constants, and nodes in topological order.

pub mod compiled;
mod graph;
mod metadata;

pub use compiled::{CompiledError, CompiledModel, Target};
pub use graph::{Graph, Node, Value, ValueId};
pub use metadata::{Metadata, OutputFormat, ResizeKind};
