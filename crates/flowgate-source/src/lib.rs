//! flowgate sources: where flow log bytes come from, and where their checkpoints live.
//!
//! A [`Follower`] reads growing objects from any [`ObjectStore`]: a local directory
//! ([`LocalDir`]) or an Azure blob container ([`AzureContainer`]).

pub mod aad;
pub mod anchor;
pub mod blob;
pub mod checkpoint;
pub mod extract;
mod follow;
pub mod local;
pub mod path;
pub mod store;
mod tracker;

pub use blob::{AzureContainer, BlobSourceConfig};
pub use checkpoint::{Checkpoint, CheckpointError, CheckpointStore};
pub use follow::{FollowOptions, Follower, RunSummary, StartAt};
pub use local::{LocalDir, LocalSourceConfig};
pub use path::{PathFilter, ScopeNames};
pub use store::{Listing, ObjectInfo, ObjectStore, StoreError};
