//! Starting a follower with its checkpoints: the one place that chooses between one
//! instance's local store and a cluster's leased partitions.

use crate::checkpoint::{CheckpointError, CheckpointStore, LocalCheckpoints};
use crate::cluster::ClusterConfig;
use crate::follow::{FollowOptions, Follower, RunSummary};
use crate::store::ObjectStore;
use flowgate_core::RecordBatch;
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

/// Where the sources' checkpoints live.
#[derive(Clone, Debug)]
pub enum Checkpointing {
    /// This process's redb file: one instance follows every object.
    Local(CheckpointStore),
    /// The cluster's state container: this instance follows its partitions' objects.
    Cluster(Box<ClusterConfig>),
}

/// A running source: its follower and, in a cluster, its coordinator, which releases the
/// leases once the follower has stored its final checkpoints.
pub type SourceTask = JoinHandle<Result<RunSummary, CheckpointError>>;

impl Checkpointing {
    pub fn spawn<S: ObjectStore>(
        &self,
        name: &str,
        store: S,
        options: FollowOptions,
        out: mpsc::Sender<RecordBatch>,
        shutdown: watch::Receiver<bool>,
        drain: Duration,
    ) -> Result<SourceTask, String> {
        match self {
            Checkpointing::Local(db) => {
                let checkpoints = LocalCheckpoints::new(db.clone(), name);
                let follower = Follower::new(name, store, options, checkpoints);
                Ok(tokio::spawn(follower.run(out, shutdown, drain)))
            }
            Checkpointing::Cluster(cluster) => {
                let (checkpoints, coordinator) = cluster.build(name)?;
                let member = tokio::spawn(coordinator.run(shutdown.clone()));
                let follower = Follower::new(name, store, options, checkpoints);
                Ok(tokio::spawn(async move {
                    let summary = follower.run(out, shutdown, drain).await;
                    // The follower is gone, so is the coordinator's last handle on the
                    // checkpoints: it releases the leases and stops.
                    let _ = member.await;
                    summary
                }))
            }
        }
    }
}
