//! Execution: a plan of steps over one activation arena, run on a rayon pool.

mod engine;
pub mod footprint;
mod memory;
mod step;

pub use engine::{Engine, EngineOptions, RunError, StepProfile};
pub use memory::MemoryPlan;
