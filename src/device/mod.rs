//! Putting speck on a board: device targets (`targets/*.toml`), reproducible install bundles,
//! writing a bundle into an OS image, and deploying over ssh.

pub mod bundle;
pub mod deploy;
pub mod flash;
pub mod partition;
pub mod script;
pub mod target;

pub use target::{Target, TargetError};
