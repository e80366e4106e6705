//! flowgate sources: where flow log bytes come from, and where their checkpoints live.

pub mod anchor;
pub mod checkpoint;
pub mod extract;
pub mod local;
mod tracker;

pub use checkpoint::{Checkpoint, CheckpointError, CheckpointStore};
pub use local::{LocalSource, LocalSourceConfig, StartAt};
