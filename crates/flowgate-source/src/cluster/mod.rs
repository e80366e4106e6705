//! Coordinated instances: several flowgate processes share one source, each reading the
//! objects of the partitions whose blob leases it holds, with their checkpoints in the
//! storage account instead of a local file.
//!
//! - Objects are divided into `partitions` by their NSG or flow log ([`assign`]).
//! - Each partition is a blob in the state container. Holding its lease is owning the
//!   partition; its content is the partition's checkpoints. Each instance also holds a
//!   lease on a blob of its own name: the live instances are those whose lease is held.
//! - Every instance computes the same assignment of partitions to live instances (even
//!   shares, stable under change) and acquires its own partitions, releasing the others
//!   after a grace period in which the batches it still has in flight are acknowledged.
//!   A killed instance's leases expire and the others take its partitions over.
//! - Fencing: an instance stops reading a partition as soon as its lease may have expired
//!   (the last successful renewal plus the lease minus a margin, on the local clock, which
//!   is earlier than the service's expiry). Checkpoint writes carry the lease id and the
//!   blob's ETag, so a late write of an instance that lost the lease is refused.
//!
//! [`LeasedCheckpoints`] is what the follower sees; [`Coordinator`] is the task that keeps
//! the leases, balances and writes the checkpoint blobs.

pub mod assign;
mod state;

use crate::blob::StorageAccount;
use crate::checkpoint::{Checkpoint, CheckpointError, Checkpoints, Update};
use crate::follow::unix_now;
use assign::{assign, partition_of, partition_of_dir};
use azure_core::prelude::LeaseId;
use flowgate_core::{health, metric_names as m};
use futures::future::join_all;
use serde::{Deserialize, Serialize};
use state::{StateContainer, StateError};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot, watch};
use tracing::{error, info, warn};

/// `[checkpoints.cluster]`: checkpoints and ownership in a storage account's container.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterConfig {
    /// The container of flowgate's state (created if missing).
    #[serde(default = "default_container")]
    pub container: String,
    /// This instance's name, unique in the cluster. Default: `FLOWGATE_INSTANCE`, else the
    /// host name (a Kubernetes pod's name).
    #[serde(default)]
    pub instance: Option<String>,
    /// Partitions per source. Every instance of a cluster must use the same number.
    #[serde(default = "default_partitions")]
    pub partitions: u32,
    /// Lease duration, 15 to 60 s: a killed instance's partitions are taken over after
    /// about this long. Leases are renewed every third of it.
    #[serde(default = "default_lease")]
    pub lease_secs: u64,
    /// Each owned partition's checkpoints are written at most this often (and at every
    /// release and stop); a crash repeats what was acknowledged since.
    #[serde(default = "default_checkpoint_interval")]
    pub checkpoint_interval_secs: f64,
    /// The storage account of the state container: any of the credentials a source takes.
    pub account: StorageAccount,
}

fn default_container() -> String {
    "flowgate-state".into()
}
fn default_partitions() -> u32 {
    32
}
fn default_lease() -> u64 {
    30
}
fn default_checkpoint_interval() -> f64 {
    1.0
}

impl ClusterConfig {
    /// Checks the settings without I/O; errors name the key under `prefix`.
    pub fn validate(&self, prefix: &str) -> Result<(), String> {
        self.account.validate(&format!("{prefix}.account"))?;
        let c = &self.container;
        let valid_container = (3..=63).contains(&c.len())
            && c.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !c.starts_with('-')
            && !c.contains("--");
        if !valid_container {
            return Err(format!(
                "{prefix}.container: 3 to 63 lowercase letters, digits and single hyphens"
            ));
        }
        if !(1..=1024).contains(&self.partitions) {
            return Err(format!("{prefix}.partitions must be in [1, 1024]"));
        }
        if !(15..=60).contains(&self.lease_secs) {
            return Err(format!(
                "{prefix}.lease_secs must be in [15, 60] (Azure's lease durations)"
            ));
        }
        let third = self.lease_secs as f64 / 3.0;
        if !(self.checkpoint_interval_secs > 0.0 && self.checkpoint_interval_secs <= third) {
            return Err(format!(
                "{prefix}.checkpoint_interval_secs must be in (0, lease_secs / 3]"
            ));
        }
        if let Some(name) = &self.instance {
            check_instance_name(name).map_err(|e| format!("{prefix}.instance: {e}"))?;
        }
        Ok(())
    }

    /// The instance name: the setting, else `FLOWGATE_INSTANCE`, else the host name.
    pub fn instance_name(&self) -> Result<String, String> {
        let name = match &self.instance {
            Some(name) => name.clone(),
            None => match std::env::var("FLOWGATE_INSTANCE") {
                Ok(name) if !name.is_empty() => name,
                _ => std::fs::read_to_string("/proc/sys/kernel/hostname")
                    .map(|h| h.trim().to_owned())
                    .map_err(|e| format!("no instance name and no host name: {e}"))?,
            },
        };
        check_instance_name(&name).map_err(|e| format!("instance name {name:?}: {e}"))?;
        Ok(name)
    }

    /// Every stored checkpoint of `source`: (partition, its last owner, object, checkpoint),
    /// read from the partition blobs (for `flowgate checkpoints`; the service may run).
    pub async fn list_checkpoints(
        &self,
        source: &str,
    ) -> Result<Vec<(u32, String, String, Checkpoint)>, String> {
        let client = self.account.container_client(&self.container)?;
        let state = StateContainer::new(client, source, Duration::from_secs(self.lease_secs));
        let mut out = Vec::new();
        for p in 0..self.partitions {
            let snapshot = match state.read(&state.partition_blob(p)).await {
                Ok(s) => s,
                Err(StateError::NotFound(_)) => continue,
                Err(e) => return Err(e.to_string()),
            };
            let doc = parse_doc(&snapshot.data).map_err(|e| format!("partition {p}: {e}"))?;
            for (name, cp) in doc.objects {
                out.push((p, doc.owner.clone(), name, cp));
            }
        }
        Ok(out)
    }

    /// The follower's checkpoints and the coordinator task that keeps them (no I/O yet).
    pub fn build(&self, source: &str) -> Result<(LeasedCheckpoints, Coordinator), String> {
        let instance = self.instance_name()?;
        let client = self.account.container_client(&self.container)?;
        let lease = Duration::from_secs(self.lease_secs);
        let shared = Arc::new(Shared {
            source: source.into(),
            table: Mutex::new(Table {
                partitions: self.partitions,
                slots: (0..self.partitions).map(|_| None).collect(),
                generation: 0,
            }),
        });
        let (flush_tx, flush_rx) = mpsc::channel(4);
        let coordinator = Coordinator {
            state: StateContainer::new(client, source, lease),
            shared: shared.clone(),
            instance,
            lease,
            checkpoint_every: Duration::from_secs_f64(self.checkpoint_interval_secs),
            held: (0..self.partitions).map(|_| None).collect(),
            presence: None,
            container_exists: false,
            live: Vec::new(),
            next_epoch: 1,
            flush_rx,
        };
        Ok((LeasedCheckpoints { shared, flush_tx }, coordinator))
    }
}

/// Names appear in blob names and logs: keep them plain.
fn check_instance_name(name: &str) -> Result<(), String> {
    let plain = name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if name.is_empty() || name.len() > 200 || !plain {
        return Err("1 to 200 letters, digits, '-', '_' or '.'".into());
    }
    Ok(())
}

/// What the follower and the coordinator share: which partitions are claimed, and their
/// checkpoints.
struct Shared {
    source: Arc<str>,
    table: Mutex<Table>,
}

struct Table {
    partitions: u32,
    slots: Vec<Option<Claim>>,
    /// Bumped whenever a claim comes or goes.
    generation: u64,
}

/// A partition this instance holds the lease of.
struct Claim {
    epoch: u64,
    /// False while the partition is being handed over: acknowledgements still count.
    readable: bool,
    /// When the lease may have expired: nothing is read or written after this.
    valid_until: Instant,
    objects: HashMap<Arc<str>, Checkpoint>,
    dirty: bool,
}

impl Table {
    fn valid(&self, partition: u32) -> Option<&Claim> {
        self.slots[partition as usize]
            .as_ref()
            .filter(|c| Instant::now() < c.valid_until)
    }

    fn bump(&mut self) {
        self.generation += 1;
    }
}

/// The follower's view of the cluster: the objects of the partitions this instance holds,
/// and their checkpoints (in memory; the coordinator writes them to the partition blobs).
#[derive(Clone)]
pub struct LeasedCheckpoints {
    shared: Arc<Shared>,
    flush_tx: mpsc::Sender<oneshot::Sender<()>>,
}

impl LeasedCheckpoints {
    fn table(&self) -> std::sync::MutexGuard<'_, Table> {
        self.shared.table.lock().expect("cluster table lock")
    }
}

impl Checkpoints for LeasedCheckpoints {
    fn claim(&self, name: &str) -> Option<u64> {
        let t = self.table();
        t.valid(partition_of(name, t.partitions)).map(|c| c.epoch)
    }

    fn readable(&self, name: &str) -> bool {
        let t = self.table();
        t.valid(partition_of(name, t.partitions))
            .is_some_and(|c| c.readable)
    }

    fn wants_dir(&self, dir: &str) -> bool {
        let t = self.table();
        t.valid(partition_of_dir(dir, t.partitions))
            .is_some_and(|c| c.readable)
    }

    fn generation(&self) -> u64 {
        self.table().generation
    }

    fn get(&self, name: &str) -> Result<Option<Checkpoint>, CheckpointError> {
        let t = self.table();
        Ok(t.valid(partition_of(name, t.partitions))
            .and_then(|c| c.objects.get(name).cloned()))
    }

    async fn write(
        &self,
        updates: Vec<Update>,
        removals: Vec<(Arc<str>, u64)>,
    ) -> Result<(), CheckpointError> {
        let mut t = self.table();
        let now = Instant::now();
        let mut refused = 0u64;
        fn claim_of<'t>(
            t: &'t mut Table,
            name: &str,
            epoch: u64,
            now: Instant,
        ) -> Option<&'t mut Claim> {
            let p = partition_of(name, t.partitions) as usize;
            t.slots[p]
                .as_mut()
                .filter(|c| c.epoch == epoch && now < c.valid_until)
        }
        for u in updates {
            match claim_of(&mut t, &u.name, u.epoch, now) {
                Some(c) => {
                    c.objects.insert(u.name, u.checkpoint);
                    c.dirty = true;
                }
                None => refused += 1,
            }
        }
        for (name, epoch) in removals {
            if let Some(c) = claim_of(&mut t, &name, epoch, now) {
                c.objects.remove(&name);
                c.dirty = true;
            }
        }
        if refused > 0 {
            metrics::counter!(m::CLUSTER_WRITES_REFUSED_TOTAL, "source" => self.shared.source.to_string(), "reason" => "epoch")
                .increment(refused);
        }
        Ok(())
    }

    /// Asks the coordinator to write every changed partition now, and waits for it.
    async fn flush(&self) -> Result<(), CheckpointError> {
        let (tx, rx) = oneshot::channel();
        if self.flush_tx.send(tx).await.is_ok() {
            let _ = rx.await;
        }
        Ok(())
    }
}

/// A partition blob's content.
#[derive(Debug, Default, Serialize, Deserialize)]
struct PartitionDoc {
    /// The instance that wrote it last.
    #[serde(default)]
    owner: String,
    /// Set by an owner that gave the partition up cleanly (not a takeover).
    #[serde(default)]
    released: bool,
    /// Unix seconds of the write.
    #[serde(default)]
    updated: u64,
    #[serde(default)]
    objects: BTreeMap<String, Checkpoint>,
}

/// A partition blob's content; an empty blob is a partition never written.
fn parse_doc(data: &[u8]) -> Result<PartitionDoc, serde_json::Error> {
    if data.iter().all(u8::is_ascii_whitespace) {
        return Ok(PartitionDoc::default());
    }
    serde_json::from_slice(data)
}

/// A lease this instance holds on a partition blob.
struct Held {
    lease: LeaseId,
    etag: String,
    written: Instant,
    /// Being handed over since then.
    releasing: Option<Instant>,
}

/// Keeps this instance's leases and writes its partitions' checkpoints; see the module
/// docs. Runs until every [`LeasedCheckpoints`] is dropped (the follower has stopped and
/// flushed), then releases everything so that the others take over at once.
pub struct Coordinator {
    state: StateContainer,
    shared: Arc<Shared>,
    instance: String,
    lease: Duration,
    checkpoint_every: Duration,
    held: Vec<Option<Held>>,
    presence: Option<LeaseId>,
    container_exists: bool,
    /// The live instances at the last listing.
    live: Vec<String>,
    next_epoch: u64,
    flush_rx: mpsc::Receiver<oneshot::Sender<()>>,
}

impl Coordinator {
    fn task_name(&self) -> String {
        format!("cluster.{}", self.shared.source)
    }

    fn source(&self) -> String {
        self.shared.source.to_string()
    }

    fn table(&self) -> std::sync::MutexGuard<'_, Table> {
        self.shared.table.lock().expect("cluster table lock")
    }

    /// The lease may have expired this long after a renewal was sent: a sixth of the lease
    /// early, for clock rates and requests still under way.
    fn validity(&self) -> Duration {
        self.lease - self.lease / 6
    }

    pub async fn run(mut self, shutdown: watch::Receiver<bool>) {
        let task = self.task_name();
        health::register_heartbeat(&task, self.lease * 3);
        health::set_ready(&task, false);
        info!(source = %self.shared.source, instance = %self.instance, "cluster member starting");
        let mut tick = tokio::time::interval(self.lease / 3);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut flush = tokio::time::interval(self.checkpoint_every);
        flush.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // Stops the partitions whose lease may have expired at that moment, even while a
        // round waits on a storage service that does not answer.
        let expiry = tokio::spawn(watch_expiry(self.shared.clone()));
        loop {
            tokio::select! {
                _ = tick.tick() => {
                    let stopping = *shutdown.borrow();
                    self.round(stopping).await;
                    health::beat(&task);
                }
                _ = flush.tick() => self.write_checkpoints(false).await,
                request = self.flush_rx.recv() => match request {
                    Some(reply) => {
                        self.write_checkpoints(true).await;
                        let _ = reply.send(());
                    }
                    None => break,
                },
            }
        }
        expiry.abort();
        self.leave().await;
    }

    /// One round: renew, look at who is alive, release and acquire to match the
    /// assignment.
    async fn round(&mut self, stopping: bool) {
        let started = Instant::now();
        let source = self.source();
        if !self.container_exists {
            match timeout(self.lease / 3, self.state.create_container()).await {
                Ok(()) => self.container_exists = true,
                Err(e) => {
                    warn!(source = %source, error = %e, "cluster: cannot create the state container; will retry");
                    health::set_ready(&self.task_name(), false);
                    return;
                }
            }
        }
        let renewed = timeout(
            self.lease / 3,
            self.state.announce(&self.instance, self.presence),
        )
        .await;
        match renewed {
            Ok(lease) => {
                self.presence = Some(lease);
                metrics::counter!(m::CLUSTER_LEASE_RENEWALS_TOTAL, "source" => source.clone(), "result" => "ok").increment(1);
            }
            Err(e) => {
                if matches!(e, StateError::Refused(_)) {
                    self.presence = None;
                }
                health::set_ready(&self.task_name(), false);
                metrics::counter!(m::CLUSTER_LEASE_RENEWALS_TOTAL, "source" => source.clone(), "result" => "failed").increment(1);
                warn!(source = %source, instance = %self.instance, error = %e, "cluster: cannot renew this instance's presence lease");
            }
        }
        self.renew_partitions().await;
        self.drop_expired();
        let live = match timeout(self.lease / 3, self.state.live_instances()).await {
            Ok(live) => live,
            Err(e) => {
                warn!(source = %source, error = %e, "cluster: cannot list the live instances; ownership unchanged");
                health::set_ready(&self.task_name(), false);
                return;
            }
        };
        if live != self.live {
            info!(source = %source, instances = ?live, "cluster membership");
            self.live = live;
        }
        metrics::gauge!(m::CLUSTER_INSTANCES, "source" => source.clone())
            .set(self.live.len() as f64);
        let me = self.live.iter().position(|i| *i == self.instance);
        health::set_ready(&self.task_name(), me.is_some());
        let Some(me) = me else {
            return; // not announced yet: own nothing new
        };
        let owners = assign(&self.live, self.held.len() as u32);
        let mine: Vec<bool> = owners.iter().map(|o| *o == me).collect();
        self.hand_over(&mine, started).await;
        if !stopping {
            self.acquire(&mine).await;
        }
        let owned = self.held.iter().filter(|h| h.is_some()).count();
        metrics::gauge!(m::CLUSTER_PARTITIONS_OWNED, "source" => source).set(owned as f64);
    }

    async fn renew_partitions(&mut self) {
        let source = self.source();
        let sent = Instant::now();
        let requests = self.held.iter().enumerate().filter_map(|(p, h)| {
            let h = h.as_ref()?;
            let blob = self.state.partition_blob(p as u32);
            let state = self.state.clone();
            let lease = h.lease;
            let limit = self.lease / 3;
            Some(async move {
                (
                    p,
                    timeout(limit, async move { state.renew(&blob, lease).await }).await,
                )
            })
        });
        let results = join_all(requests.collect::<Vec<_>>()).await;
        for (p, result) in results {
            match result {
                Ok(()) => {
                    metrics::counter!(m::CLUSTER_LEASE_RENEWALS_TOTAL, "source" => source.clone(), "result" => "ok").increment(1);
                    let valid_until = sent + self.validity();
                    if let Some(c) = self.table().slots[p].as_mut() {
                        c.valid_until = valid_until;
                    }
                }
                Err(e) => {
                    metrics::counter!(m::CLUSTER_LEASE_RENEWALS_TOTAL, "source" => source.clone(), "result" => "failed").increment(1);
                    if matches!(e, StateError::Refused(_)) {
                        warn!(source = %source, partition = p, error = %e, "cluster: lease of partition lost; stopped reading it");
                        self.drop_partition(p, "lost");
                    } else {
                        warn!(source = %source, partition = p, error = %e, "cluster: cannot renew the lease of partition; will stop reading it if this goes on");
                    }
                }
            }
        }
    }

    /// Forgets the leases of partitions [`watch_expiry`] has given up.
    fn drop_expired(&mut self) {
        let t = self.shared.table.lock().expect("cluster table lock");
        for (p, held) in self.held.iter_mut().enumerate() {
            if t.slots[p].is_none() {
                *held = None;
            }
        }
    }

    fn drop_partition(&mut self, p: usize, reason: &'static str) {
        if self.held[p].take().is_some() {
            let mut t = self.table();
            t.slots[p] = None;
            t.bump();
            drop(t);
            metrics::counter!(m::CLUSTER_PARTITIONS_DROPPED_TOTAL, "source" => self.source(), "reason" => reason).increment(1);
            info!(source = %self.shared.source, partition = p, reason, "cluster: partition dropped");
        }
    }

    /// Partitions now assigned to another instance: no more reads at once, then after a
    /// grace period (a round, for the batches in flight to be acknowledged) their final
    /// checkpoints are written and their leases released.
    async fn hand_over(&mut self, mine: &[bool], now: Instant) {
        let grace = self.lease / 3;
        for (p, &assigned) in mine.iter().enumerate() {
            let Some(h) = self.held[p].as_mut() else {
                continue;
            };
            match (assigned, h.releasing) {
                (true, Some(_)) => {
                    h.releasing = None;
                    set_readable(&self.shared, p, true);
                }
                (false, None) => {
                    h.releasing = Some(now);
                    set_readable(&self.shared, p, false);
                    info!(source = %self.shared.source, partition = p, "cluster: handing partition over");
                }
                (false, Some(since))
                    if now.duration_since(since) + Duration::from_millis(50) >= grace =>
                {
                    self.release(p).await;
                }
                _ => {}
            }
        }
    }

    /// Writes the partition's checkpoints one last time, marked released, and releases
    /// its lease.
    async fn release(&mut self, p: usize) {
        if self.write_partition(p, true).await {
            if let Some(h) = self.held[p].as_ref() {
                let blob = self.state.partition_blob(p as u32);
                if let Err(e) = self.state.release(&blob, h.lease).await {
                    warn!(source = %self.shared.source, partition = p, error = %e, "cluster: cannot release the lease (it expires by itself)");
                }
            }
        }
        self.drop_partition(p, "released");
    }

    /// Acquires the assigned partitions not held yet (those another instance still holds
    /// are refused until it releases them or its lease expires).
    async fn acquire(&mut self, mine: &[bool]) {
        let wanted: Vec<usize> = (0..self.held.len())
            .filter(|&p| mine[p] && self.held[p].is_none())
            .collect();
        let limit = self.lease / 3;
        let requests = wanted.iter().map(|&p| {
            let state = self.state.clone();
            let blob = state.partition_blob(p as u32);
            async move {
                let sent = Instant::now();
                let result = timeout(limit, async {
                    let lease = state.acquire(&blob, b"{}").await?;
                    Ok((lease, state.read(&blob).await?))
                })
                .await;
                (p, sent, result)
            }
        });
        for (p, sent, result) in join_all(requests.collect::<Vec<_>>()).await {
            let (lease, snapshot) = match result {
                Ok(got) => got,
                Err(StateError::Refused(_)) => continue, // still another's
                Err(e) => {
                    warn!(source = %self.shared.source, partition = p, error = %e, "cluster: cannot acquire partition; will retry");
                    continue;
                }
            };
            let doc = parse_doc(&snapshot.data).unwrap_or_else(|e| {
                error!(source = %self.shared.source, partition = p, error = %e, "cluster: unreadable partition checkpoints; reading its objects from their start");
                PartitionDoc::default()
            });
            let takeover = !doc.owner.is_empty() && doc.owner != self.instance && !doc.released;
            let reason = if takeover { "takeover" } else { "free" };
            metrics::counter!(m::CLUSTER_PARTITIONS_ACQUIRED_TOTAL, "source" => self.source(), "reason" => reason).increment(1);
            info!(source = %self.shared.source, partition = p, previous_owner = %doc.owner, reason, objects = doc.objects.len(), "cluster: partition acquired");
            let epoch = self.next_epoch;
            self.next_epoch += 1;
            self.held[p] = Some(Held {
                lease,
                etag: snapshot.etag,
                written: Instant::now(),
                releasing: None,
            });
            let mut t = self.table();
            t.slots[p] = Some(Claim {
                epoch,
                readable: true,
                valid_until: sent + self.validity(),
                objects: doc
                    .objects
                    .into_iter()
                    .map(|(k, v)| (Arc::from(k), v))
                    .collect(),
                // Written at once: the blob then names its new owner.
                dirty: true,
            });
            t.bump();
        }
    }

    /// Writes the partitions whose checkpoints changed (`all`: now; else those not
    /// written for `checkpoint_interval_secs`).
    async fn write_checkpoints(&mut self, all: bool) {
        let due: Vec<usize> = {
            let t = self.table();
            (0..self.held.len())
                .filter(|&p| {
                    let dirty = t.slots[p].as_ref().is_some_and(|c| c.dirty);
                    let h = self.held[p].as_ref();
                    dirty && h.is_some_and(|h| all || h.written.elapsed() >= self.checkpoint_every)
                })
                .collect()
        };
        // One at a time keeps the code simple; each is one small PUT.
        for p in due {
            self.write_partition(p, false).await;
        }
    }

    /// Writes one partition blob under its lease and ETag; false if that failed. A refusal
    /// means the lease is gone: the partition is dropped.
    async fn write_partition(&mut self, p: usize, released: bool) -> bool {
        let Some(h) = self.held[p].as_ref() else {
            return false;
        };
        let (lease, etag) = (h.lease, h.etag.clone());
        let body = {
            let mut t = self.table();
            let Some(c) = t.slots[p]
                .as_mut()
                .filter(|c| Instant::now() < c.valid_until)
            else {
                return false;
            };
            c.dirty = false;
            let doc = PartitionDoc {
                owner: self.instance.clone(),
                released,
                updated: unix_now(),
                objects: c
                    .objects
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.clone()))
                    .collect(),
            };
            serde_json::to_vec(&doc).expect("checkpoints serialize")
        };
        let blob = self.state.partition_blob(p as u32);
        let source = self.source();
        match timeout(self.lease / 3, self.state.write(&blob, lease, &etag, body)).await {
            Ok(etag) => {
                metrics::counter!(m::CLUSTER_CHECKPOINT_WRITES_TOTAL, "source" => source)
                    .increment(1);
                if let Some(h) = self.held[p].as_mut() {
                    h.etag = etag;
                    h.written = Instant::now();
                }
                true
            }
            Err(StateError::Refused(code)) => {
                let reason = if code.contains("ConditionNotMet") {
                    "etag"
                } else {
                    "lease"
                };
                metrics::counter!(m::CLUSTER_WRITES_REFUSED_TOTAL, "source" => source.clone(), "reason" => reason).increment(1);
                warn!(source = %source, partition = p, refused = %code, "cluster: checkpoint write refused: the partition is another instance's now");
                self.drop_partition(p, "refused");
                false
            }
            Err(e) => {
                warn!(source = %source, partition = p, error = %e, "cluster: cannot write checkpoints; will retry");
                if let Some(c) = self.table().slots[p].as_mut() {
                    c.dirty = true;
                }
                false
            }
        }
    }

    /// A clean stop: final checkpoints written, leases released, presence withdrawn, so
    /// that the other instances take over at their next round instead of a lease later.
    async fn leave(&mut self) {
        for p in 0..self.held.len() {
            if self.held[p].is_some() {
                self.release(p).await;
            }
        }
        if let Some(lease) = self.presence.take() {
            if let Err(e) = self.state.withdraw(&self.instance, lease).await {
                warn!(source = %self.shared.source, error = %e, "cluster: cannot withdraw the presence lease (it expires by itself)");
            }
        }
        metrics::gauge!(m::CLUSTER_PARTITIONS_OWNED, "source" => self.source()).set(0.0);
        info!(source = %self.shared.source, instance = %self.instance, "cluster member left");
    }
}

fn set_readable(shared: &Shared, p: usize, readable: bool) {
    let mut t = shared.table.lock().expect("cluster table lock");
    if let Some(c) = t.slots[p].as_mut() {
        c.readable = readable;
    }
    t.bump();
}

async fn timeout<T>(
    limit: Duration,
    f: impl std::future::Future<Output = Result<T, StateError>>,
) -> Result<T, StateError> {
    tokio::time::timeout(limit, f)
        .await
        .unwrap_or_else(|_| Err(StateError::Other(format!("no answer within {limit:?}"))))
}

/// Every 100 ms, drops the claims whose lease may have expired: from then on the follower
/// neither reads nor sends nor checkpoints their objects ([`Table::valid`] already says so;
/// this makes the generation change so that the follower drops their state).
async fn watch_expiry(shared: Arc<Shared>) {
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    loop {
        tick.tick().await;
        let now = Instant::now();
        let mut expired = Vec::new();
        {
            let mut t = shared.table.lock().expect("cluster table lock");
            for (p, slot) in t.slots.iter_mut().enumerate() {
                if slot.as_ref().is_some_and(|c| now >= c.valid_until) {
                    *slot = None;
                    expired.push(p);
                }
            }
            if !expired.is_empty() {
                t.bump();
            }
        }
        for p in expired {
            warn!(source = %shared.source, partition = p, "cluster: lease of partition not renewed in time; stopped reading it");
            metrics::counter!(m::CLUSTER_PARTITIONS_DROPPED_TOTAL, "source" => shared.source.to_string(), "reason" => "lost").increment(1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(extra: &str) -> Result<ClusterConfig, String> {
        let text = format!("{extra}\n[account]\nuse_emulator = true\n");
        toml::from_str::<ClusterConfig>(&text).map_err(|e| e.to_string())
    }

    #[test]
    fn settings_are_checked_and_name_their_key() {
        let ok = config("").unwrap();
        assert_eq!(ok.validate("checkpoints.cluster"), Ok(()));
        assert_eq!((ok.partitions, ok.lease_secs), (32, 30));
        let refused = |extra: &str, key: &str| {
            let e = config(extra)
                .unwrap()
                .validate("checkpoints.cluster")
                .unwrap_err();
            assert!(e.contains(key), "{extra}: {e}");
        };
        refused("lease_secs = 10", "lease_secs");
        refused("lease_secs = 61", "lease_secs");
        refused("partitions = 0", "partitions");
        refused("container = \"Flowgate_State\"", "container");
        refused(
            "checkpoint_interval_secs = 20.0",
            "checkpoint_interval_secs",
        );
        refused("instance = \"a b\"", "instance");
        assert!(config("unknown = 1").is_err());
        let e = toml::from_str::<ClusterConfig>("[account]\n")
            .unwrap()
            .validate("checkpoints.cluster")
            .unwrap_err();
        assert!(e.starts_with("checkpoints.cluster.account"), "{e}");
    }

    #[test]
    fn the_instance_name_comes_from_the_setting_first() {
        let named = config("instance = \"fg-1\"").unwrap();
        assert_eq!(named.instance_name().unwrap(), "fg-1");
        // Without a setting: FLOWGATE_INSTANCE, else the host name; either way a plain name.
        let name = config("").unwrap().instance_name().unwrap();
        assert!(check_instance_name(&name).is_ok(), "{name}");
    }
}
