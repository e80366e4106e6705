//! flowgate sources: where flow log bytes come from, and where their checkpoints live.
//!
//! A [`Follower`] reads growing objects from any [`ObjectStore`]: a local directory
//! ([`LocalDir`]) or an Azure blob container ([`AzureContainer`]).

pub mod aad;
pub mod anchor;
pub mod blob;
pub mod checkpoint;
pub mod cluster;
pub mod extract;
mod follow;
pub mod local;
pub mod memory;
pub mod path;
pub mod plain_http;
mod spawn;
pub mod store;
mod tracker;

pub use blob::{AzureContainer, BlobSourceConfig, StorageAccount};
pub use checkpoint::{
    Checkpoint, CheckpointError, CheckpointStore, Checkpoints, Complete, LocalCheckpoints, Update,
};
pub use cluster::{ClusterConfig, Coordinator, LeasedCheckpoints};
pub use follow::{FollowOptions, Follower, RunSummary, StartAt};
pub use local::{LocalDir, LocalSourceConfig};
pub use path::{PathFilter, ScopeNames};
pub use spawn::{Checkpointing, SourceTask};
pub use store::{Listing, ObjectInfo, ObjectStore, StoreError};
