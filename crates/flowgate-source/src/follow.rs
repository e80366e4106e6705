//! Following growing flow log objects: the engine shared by every source.
//!
//! Every poll lists the store's objects, reads each one from its read position to its
//! end, extracts the complete records and sends them on. Per object, a [`RangeTracker`]
//! turns acknowledgements into a checkpoint that only covers delivered bytes, and an
//! [`Anchor`] proves before every read that the bytes behind the offset are still the ones
//! the checkpoint was taken on.

use crate::anchor::{Anchor, ANCHOR_BYTES};
use crate::checkpoint::{Checkpoint, CheckpointError, CheckpointStore};
use crate::extract::{extract, BraceScanner};
use crate::path::{hour_start, PathFilter};
use crate::store::{ObjectStore, StoreError};
use crate::tracker::{AckEffect, RangeTracker};
use bytes::Bytes;
use flowgate_core::time::UtcTime;
use flowgate_core::{health, metric_names as m, Ack, BatchStatus, Finalizer, Origin, RecordBatch};
use serde::Deserialize;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::{mpsc, watch};
use tracing::{debug, error, info, warn};

/// Where to begin in objects that have no checkpoint: `"beginning"`, `"end"` or an RFC
/// 3339 timestamp.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum StartAt {
    /// Forward everything already there.
    #[default]
    Beginning,
    /// Skip what is there at start-up; forward only what is appended later.
    End,
    /// Skip the objects whose hour partition ended before this time (seconds since the
    /// epoch); read the others from their beginning. The hour the time falls in is read
    /// whole: up to 59 minutes earlier, never later. Objects without an hour partition in
    /// their name are read whole.
    Since(i64),
}

impl<'de> Deserialize<'de> for StartAt {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        match s.as_str() {
            "beginning" => Ok(StartAt::Beginning),
            "end" => Ok(StartAt::End),
            _ => UtcTime::parse_rfc3339(&s).map(StartAt::Since).ok_or_else(|| {
                serde::de::Error::custom(format!(
                    "expected \"beginning\", \"end\" or an RFC 3339 time such as \"2024-03-04T10:00:00Z\", got {s:?}"
                ))
            }),
        }
    }
}

/// How a follower reads; part of every source's configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct FollowOptions {
    pub poll_interval: Duration,
    pub start_at: StartAt,
    /// Bytes read per batch; bounds memory together with the channel capacity.
    pub read_chunk_bytes: usize,
    /// A record longer than this is reported and skipped instead of read into memory.
    pub max_record_bytes: usize,
    /// Carried into every event, beside the source's name.
    pub subscription_tag: Option<Arc<str>>,
    /// Which objects to follow, by the subscription, resource group and NSG in their names.
    pub filter: PathFilter,
}

pub(crate) fn default_poll_interval() -> f64 {
    5.0
}
pub(crate) fn default_read_chunk() -> usize {
    1 << 20
}
pub(crate) fn default_max_record() -> usize {
    64 << 20
}

impl FollowOptions {
    pub fn new(
        poll_interval_secs: f64,
        start_at: StartAt,
        read_chunk_bytes: usize,
        max_record_bytes: usize,
    ) -> Self {
        FollowOptions {
            poll_interval: Duration::from_secs_f64(poll_interval_secs),
            start_at,
            read_chunk_bytes,
            max_record_bytes,
            subscription_tag: None,
            filter: PathFilter::default(),
        }
    }

    pub fn with_filter(mut self, filter: PathFilter) -> Self {
        self.filter = filter;
        self
    }

    pub fn with_subscription_tag(mut self, tag: Option<&str>) -> Self {
        self.subscription_tag = tag.filter(|t| !t.is_empty()).map(Arc::from);
        self
    }

    /// The checks every source's follower settings need (before `new`, which cannot take
    /// a negative interval); errors name the key under `prefix`.
    pub fn check(
        prefix: &str,
        poll_interval_secs: f64,
        read_chunk_bytes: usize,
        max_record_bytes: usize,
    ) -> Result<(), String> {
        if !(poll_interval_secs > 0.0 && poll_interval_secs <= 86_400.0) {
            return Err(format!("{prefix}.poll_interval_secs must be in (0, 86400]"));
        }
        if read_chunk_bytes < 4096 {
            return Err(format!("{prefix}.read_chunk_bytes must be at least 4096"));
        }
        if max_record_bytes < read_chunk_bytes {
            return Err(format!(
                "{prefix}.max_record_bytes must be at least read_chunk_bytes ({read_chunk_bytes})"
            ));
        }
        Ok(())
    }
}

/// How a `run` ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunSummary {
    /// Batches still unacknowledged when the drain timeout expired.
    pub abandoned: usize,
}

/// One followed object.
struct ObjectState {
    key: String,
    origin: Arc<Origin>,
    /// Next byte to read: just after the last record sent (or skipped).
    read_pos: u64,
    /// The bytes just before `read_pos`, checked on every read.
    read_anchor: Anchor,
    /// Bytes before this were sent once and are being read again: a delivery failed, or
    /// the object was rewritten while some were not yet delivered.
    replay_until: u64,
    /// How many times that happened: copies read in different rounds are told apart.
    replay_round: u32,
    /// The size and version at which the object was read to its closing `]}`: nothing to
    /// read until either changes (the closing bytes stay unread, so a size above the read
    /// position alone says nothing).
    complete_at: Option<(u64, u64)>,
    tracker: RangeTracker,
    /// The checkpoint last written to the store.
    stored: Option<u64>,
    /// Older than `start_at`: listed but never read.
    before_start: bool,
}

impl ObjectState {
    /// Starts over at 0 (the object was rewritten or truncated). Bytes sent but not yet
    /// delivered may still fail, so what is read in their place is a replay: the volume
    /// controls must not take it for a duplicate of them.
    fn restart(&mut self, reason: &'static str) {
        metrics::counter!(m::SOURCE_RESETS_TOTAL, "reason" => reason).increment(1);
        if self.tracker.committed() < self.read_pos {
            self.read_again_before(self.read_pos);
        }
        self.read_pos = 0;
        self.read_anchor = Anchor::START;
        self.complete_at = None;
        self.tracker.reset();
    }

    /// Reads again from the checkpoint (a delivery failed).
    fn rewind_to_checkpoint(&mut self) {
        self.read_again_before(self.read_pos);
        self.read_pos = self.tracker.committed();
        self.read_anchor = self.tracker.committed_anchor();
        self.complete_at = None;
    }

    /// Marks the bytes before `end` as read again, in a new round.
    fn read_again_before(&mut self, end: u64) {
        self.replay_until = self.replay_until.max(end);
        self.replay_round += 1;
    }

    /// Moves the read position past bytes that need no delivery.
    fn skip_to(&mut self, end: u64, anchor: Anchor) {
        self.tracker.push_skip(end, anchor);
        self.read_pos = end;
        self.read_anchor = anchor;
    }
}

/// Follows the objects of one store; see the module docs.
pub struct Follower<S> {
    name: Arc<str>,
    store: S,
    options: FollowOptions,
    checkpoints: CheckpointStore,
    objects: BTreeMap<String, ObjectState>,
    /// Which object each batch in flight belongs to.
    in_flight: HashMap<u64, String>,
    next_batch: u64,
    ack_tx: mpsc::UnboundedSender<Ack>,
    ack_rx: mpsc::UnboundedReceiver<Ack>,
    first_scan: bool,
    /// Objects of the first scan that could not be set up yet: they still start as the
    /// first scan says (`start_at = "end"`), whenever that succeeds.
    first_scan_retry: HashSet<String>,
    /// Listings failed in a row, and when to try again.
    failures: u32,
    retry_at: Option<tokio::time::Instant>,
}

/// The longest wait between two attempts while the store keeps failing.
const MAX_BACKOFF: Duration = Duration::from_secs(300);

impl<S: ObjectStore> Follower<S> {
    pub fn new(name: &str, store: S, options: FollowOptions, checkpoints: CheckpointStore) -> Self {
        let (ack_tx, ack_rx) = mpsc::unbounded_channel();
        Follower {
            name: name.into(),
            store,
            options,
            checkpoints,
            objects: BTreeMap::new(),
            in_flight: HashMap::new(),
            next_batch: 1,
            ack_tx,
            ack_rx,
            first_scan: true,
            first_scan_retry: HashSet::new(),
            failures: 0,
            retry_at: None,
        }
    }

    /// After `failures` failed listings in a row: the poll interval doubled per failure, up
    /// to [`MAX_BACKOFF`], with up to a quarter of random jitter so that many instances do
    /// not retry a throttling account in step.
    fn backoff(&self) -> Duration {
        let base =
            self.options.poll_interval.as_secs_f64() * 2f64.powi(self.failures.min(16) as i32);
        let capped = base.min(MAX_BACKOFF.as_secs_f64());
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let jitter = 1.0 - 0.25 * (nanos % 1000) as f64 / 1000.0;
        Duration::from_secs_f64(capped * jitter)
    }

    /// Follows the store until `shutdown` turns true, then waits up to `drain_timeout` for
    /// the batches in flight to be acknowledged and stores the final checkpoints.
    pub async fn run(
        mut self,
        out: mpsc::Sender<RecordBatch>,
        mut shutdown: watch::Receiver<bool>,
        drain_timeout: Duration,
    ) -> Result<RunSummary, CheckpointError> {
        let mut poll = tokio::time::interval(self.options.poll_interval);
        poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // A poll beats at its start, at every batch sent and every object read; a store
        // call that hangs longer than this makes the process unhealthy.
        let allowance = (self.options.poll_interval * 10).max(Duration::from_secs(300));
        health::register_heartbeat(&self.task_name(), allowance);
        // Not ready until the first listing works.
        health::set_ready(&self.task_name(), false);
        info!(source = %self.name, "source started");
        while !*shutdown.borrow() {
            tokio::select! {
                biased;
                _ = shutdown.changed() => break,
                Some(ack) = self.ack_rx.recv() => {
                    self.on_acks(ack);
                    self.store_checkpoints().await?;
                }
                _ = poll.tick() => {
                    self.poll(&out, &mut shutdown).await;
                    // Positions that moved without a delivery (`start_at = "end"`, skipped
                    // bytes) are stored too: a restart must not start over from them.
                    if let Err(e) = self.store_checkpoints().await {
                        warn!(source = %self.name, error = %e, "cannot store checkpoints; will retry");
                    }
                }
            }
        }
        drop(out);
        let deadline = tokio::time::Instant::now() + drain_timeout;
        while !self.in_flight.is_empty() {
            tokio::select! {
                Some(ack) = self.ack_rx.recv() => self.on_acks(ack),
                _ = tokio::time::sleep_until(deadline) => break,
            }
        }
        self.store_checkpoints().await?;
        let abandoned = self.in_flight.len();
        if abandoned > 0 {
            warn!(source = %self.name, batches = abandoned, "drain timeout: unacknowledged batches will be read again on restart");
        }
        info!(source = %self.name, "source stopped");
        Ok(RunSummary { abandoned })
    }

    /// Handles `first` and every ack already waiting, so that one commit stores them all:
    /// a crash then replays at most the batches that were not yet acknowledged.
    fn on_acks(&mut self, first: Ack) {
        self.on_ack(first);
        while let Ok(ack) = self.ack_rx.try_recv() {
            self.on_ack(ack);
        }
    }

    fn task_name(&self) -> String {
        format!("source.{}", self.name)
    }

    fn on_ack(&mut self, ack: Ack) {
        metrics::counter!(m::BATCHES_ACKNOWLEDGED_TOTAL, "status" => status_label(ack.status))
            .increment(1);
        if ack.status.is_final() && ack.newest_ms > 0 {
            health::delivered(&self.name, ack.newest_ms);
        }
        let Some(name) = self.in_flight.remove(&ack.batch_id) else {
            return;
        };
        let Some(object) = self.objects.get_mut(&name) else {
            return;
        };
        if object.tracker.ack(ack.batch_id, ack.status) == AckEffect::Failed {
            warn!(source = %self.name, object = %object.origin.path, offset = object.tracker.committed(), "delivery failed; reading again from the checkpoint");
            object.rewind_to_checkpoint();
            self.in_flight.retain(|_, n| *n != name);
        }
    }

    /// Sends a batch, handling acknowledgements while the channel is full (so that
    /// checkpoints keep moving during a long backlog). False if the pipeline is stopping.
    async fn send(
        &mut self,
        out: &mpsc::Sender<RecordBatch>,
        batch: RecordBatch,
        shutdown: &mut watch::Receiver<bool>,
    ) -> bool {
        let task = self.task_name();
        if out.capacity() == 0 {
            health::waiting_for_downstream(&task);
        }
        loop {
            tokio::select! {
                biased;
                _ = shutdown.changed() => return false,
                permit = out.reserve() => match permit {
                    Ok(permit) => {
                        permit.send(batch);
                        health::beat(&task);
                        return true;
                    }
                    Err(_) => return false,
                },
                Some(ack) = self.ack_rx.recv() => {
                    self.on_acks(ack);
                    if let Err(e) = self.store_checkpoints().await {
                        warn!(source = %self.name, error = %e, "cannot store checkpoints; will retry");
                    }
                }
            }
        }
    }

    /// Writes every checkpoint that moved since the last write, in one transaction.
    async fn store_checkpoints(&mut self) -> Result<(), CheckpointError> {
        let now = unix_now();
        // (object name, checkpoint key, checkpoint)
        let changed: Vec<(String, String, Checkpoint)> = self
            .objects
            .iter()
            // An object older than `start_at` keeps no checkpoint: one would make it look
            // followed after a restart, and it would be read.
            .filter(|(_, o)| !o.before_start && Some(o.tracker.committed()) != o.stored)
            .map(|(name, o)| {
                let cp = Checkpoint {
                    offset: o.tracker.committed(),
                    anchor: o.tracker.committed_anchor().to_string(),
                    updated: now,
                };
                (name.clone(), o.key.clone(), cp)
            })
            .collect();
        if changed.is_empty() {
            return Ok(());
        }
        let checkpoints = self.checkpoints.clone();
        let written: Vec<(String, Checkpoint)> = changed
            .iter()
            .map(|(_, key, cp)| (key.clone(), cp.clone()))
            .collect();
        tokio::task::spawn_blocking(move || {
            let updates: Vec<(&str, &Checkpoint)> =
                written.iter().map(|(k, c)| (k.as_str(), c)).collect();
            checkpoints.write(&updates, &[])
        })
        .await
        .expect("checkpoint writer panicked")?;
        for (name, _, cp) in changed {
            if let Some(o) = self.objects.get_mut(&name) {
                o.stored = Some(cp.offset);
            }
        }
        Ok(())
    }

    /// One poll: list, then read what is new; timed for the poll duration histogram.
    async fn poll(
        &mut self,
        out: &mpsc::Sender<RecordBatch>,
        shutdown: &mut watch::Receiver<bool>,
    ) {
        let started = std::time::Instant::now();
        health::beat(&self.task_name());
        self.poll_once(out, shutdown).await;
        metrics::histogram!(m::SOURCE_POLL_DURATION_SECONDS, "source" => self.name.to_string())
            .record(started.elapsed().as_secs_f64());
    }

    async fn poll_once(
        &mut self,
        out: &mpsc::Sender<RecordBatch>,
        shutdown: &mut watch::Receiver<bool>,
    ) {
        if self
            .retry_at
            .is_some_and(|at| tokio::time::Instant::now() < at)
        {
            return;
        }
        let listing = match self.store.list().await {
            Ok(listing) => {
                if self.failures > 0 {
                    info!(source = %self.name, failures = self.failures, "listing works again");
                }
                self.failures = 0;
                self.retry_at = None;
                health::set_ready(&self.task_name(), true);
                listing
            }
            Err(e) => {
                self.failures += 1;
                let wait = self.backoff();
                self.retry_at = Some(tokio::time::Instant::now() + wait);
                metrics::counter!(m::SOURCE_LIST_ERRORS_TOTAL, "reason" => error_reason(&e))
                    .increment(1);
                if matches!(e, StoreError::Denied(_) | StoreError::NotFound(_)) {
                    health::set_ready(&self.task_name(), false);
                }
                match &e {
                    // Not fixed by waiting: say what to check (and keep trying, so that a
                    // fixed permission or a created container needs no restart).
                    StoreError::Denied(_) => {
                        error!(source = %self.name, error = %e, retry_in_secs = wait.as_secs(), "cannot list objects: the credential is refused or lacks read and list permission")
                    }
                    StoreError::NotFound(_) => {
                        error!(source = %self.name, error = %e, retry_in_secs = wait.as_secs(), "cannot list objects: the container does not exist")
                    }
                    StoreError::Other(_) => {
                        warn!(source = %self.name, error = %e, retry_in_secs = wait.as_secs(), "cannot list objects; will retry")
                    }
                }
                return;
            }
        };
        let kind = if listing.complete { "full" } else { "partial" };
        metrics::counter!(m::SOURCE_LIST_REQUESTS_TOTAL, "kind" => kind)
            .increment(listing.requests as u64);
        let first_scan = std::mem::take(&mut self.first_scan);
        if listing.complete {
            let present: HashSet<&str> = listing.objects.iter().map(|o| o.name.as_str()).collect();
            let gone: Vec<String> = self
                .objects
                .iter()
                .filter(|(name, o)| !present.contains(name.as_str()) && o.tracker.is_idle())
                .map(|(name, _)| name.clone())
                .collect();
            for name in gone {
                self.forget(&name, "removed");
            }
        }
        for info in listing.objects {
            if *shutdown.borrow() {
                return;
            }
            if !self.objects.contains_key(&info.name) {
                if !self.options.filter.accepts(&info.name) {
                    continue;
                }
                let first = first_scan || self.first_scan_retry.remove(&info.name);
                let Some(state) = self.discover(&info.name, info.len, first).await else {
                    if first {
                        self.first_scan_retry.insert(info.name.clone());
                    }
                    continue;
                };
                self.objects.insert(info.name.clone(), state);
            }
            let object = self.objects.get_mut(&info.name).expect("just inserted");
            if object.before_start {
                continue;
            }
            if info.len < object.read_pos {
                warn!(source = %self.name, object = %object.origin.path, size = info.len, offset = object.read_pos, "object shrank; reading it from the start");
                object.restart("truncated");
            }
            if info.len > object.read_pos && object.complete_at != Some((info.len, info.version)) {
                self.read_new(&info.name, info.len, info.version, out, shutdown)
                    .await;
            }
        }
    }

    /// Drops an object that no longer exists, and its checkpoint.
    fn forget(&mut self, name: &str, why: &str) {
        if let Some(object) = self.objects.remove(name) {
            info!(source = %self.name, object = %object.origin.path, "object {why}; forgetting its checkpoint");
            if let Err(e) = self.checkpoints.write(&[], &[&object.key]) {
                warn!(source = %self.name, error = %e, "cannot remove a checkpoint");
            }
            self.in_flight.retain(|_, n| n != name);
        }
    }

    /// The state to follow a newly listed object with, from its checkpoint. `None` when
    /// that cannot be known now (the checkpoint or the object could not be read): the
    /// next poll tries again, rather than guess and skip or repeat data.
    async fn discover(&mut self, name: &str, len: u64, first_scan: bool) -> Option<ObjectState> {
        let key = format!("{}/{}", self.name, name);
        let checkpoint = match self.checkpoints.get(&key) {
            Ok(c) => c,
            Err(e) => {
                warn!(source = %self.name, object = %name, error = %e, "cannot read the checkpoint; will retry");
                return None;
            }
        };
        let before_start = match self.options.start_at {
            StartAt::Since(t) => {
                checkpoint.is_none() && hour_start(name).is_some_and(|h| h + 3600 <= t)
            }
            _ => false,
        };
        if before_start {
            debug!(source = %self.name, object = %name, "object older than start_at; not read");
        }
        let holds = match &checkpoint {
            Some(cp) => match Anchor::parse(&cp.anchor) {
                Some(anchor) if cp.offset <= len => {
                    match self.anchor_holds(name, cp.offset, anchor).await {
                        Ok(holds) => holds.then_some((cp.offset, anchor)),
                        Err(e) => {
                            warn!(source = %self.name, object = %name, error = %e, "cannot check the object against its checkpoint; will retry");
                            return None;
                        }
                    }
                }
                _ => None,
            },
            None => None,
        };
        // Where to start, and whether the store already says so.
        let (resume, stored) = match (&checkpoint, holds) {
            (Some(cp), Some(at)) => (Some(at), Some(cp.offset)),
            (Some(cp), None) => {
                warn!(source = %self.name, object = %name, offset = cp.offset, "object rewritten since its checkpoint; reading it from the start");
                metrics::counter!(m::SOURCE_RESETS_TOTAL, "reason" => "rewritten").increment(1);
                (None, Some(cp.offset))
            }
            // Not stored yet: written at the next store, so that a restart resumes here.
            (None, _) if first_scan && self.options.start_at == StartAt::End => {
                (self.end_of_records(name, len).await, None)
            }
            (None, _) => (None, None),
        };
        metrics::counter!(m::SOURCE_FILES_DISCOVERED_TOTAL).increment(1);
        let (start, anchor) = resume.unwrap_or((0, Anchor::START));
        debug!(source = %self.name, object = %name, offset = start, "following object");
        Some(ObjectState {
            key,
            origin: Arc::new(Origin {
                source: self.name.clone(),
                path: name.into(),
                subscription_tag: self.options.subscription_tag.clone(),
            }),
            read_pos: start,
            read_anchor: anchor,
            replay_until: 0,
            replay_round: 0,
            complete_at: None,
            tracker: RangeTracker::new(start, anchor),
            stored,
            before_start,
        })
    }

    /// Reads `name` from its read position up to `len`, sending batches of records.
    async fn read_new(
        &mut self,
        name: &str,
        len: u64,
        version: u64,
        out: &mpsc::Sender<RecordBatch>,
        shutdown: &mut watch::Receiver<bool>,
    ) {
        let chunk = self.options.read_chunk_bytes;
        let mut want = chunk;
        loop {
            let Some(object) = self.objects.get(name) else {
                return;
            };
            let pos = object.read_pos;
            let available = len.saturating_sub(pos);
            if available == 0 || *shutdown.borrow() {
                return;
            }
            let n = (available as usize).min(want);
            // Read the anchor's bytes too, to notice a rewrite before trusting the offset.
            let anchor = object.read_anchor;
            let back = anchor.len as usize;
            let mut data = match self.store.read(name, pos - back as u64, back + n).await {
                Ok(d) => d,
                Err(StoreError::NotFound(_)) => {
                    warn!(source = %self.name, object = %name, offset = pos, "object deleted while being read");
                    metrics::counter!(m::SOURCE_RESETS_TOTAL, "reason" => "deleted").increment(1);
                    self.forget(name, "deleted");
                    return;
                }
                Err(e) => {
                    warn!(source = %self.name, object = %name, offset = pos, error = %e, "read failed; will retry");
                    return;
                }
            };
            let object = self.objects.get_mut(name).expect("known object");
            if data.len() < back || !anchor.matches(&data[..back]) {
                warn!(source = %self.name, object = %object.origin.path, offset = pos, "object rewritten under us; reading it from the start");
                object.restart("rewritten");
                want = chunk;
                continue;
            }
            data.drain(..back);
            metrics::counter!(m::SOURCE_BYTES_READ_TOTAL).increment(data.len() as u64);
            metrics::counter!(m::SOURCE_READS_TOTAL).increment(1);
            health::beat(&format!("source.{}", self.name));
            let ex = extract(&data, pos == 0);
            for e in &ex.errors {
                warn!(source = %self.name, object = %object.origin.path, offset = pos + e.at as u64, error = %e.kind, "malformed data between records skipped");
                metrics::counter!(m::SOURCE_EXTRACT_ERRORS_TOTAL, "reason" => e.kind.reason())
                    .increment(1);
            }
            let end = pos + ex.consumed as u64;
            let end_anchor = Anchor::of(&data[..ex.consumed]);
            if !ex.records.is_empty() {
                let batch_id = self.next_batch;
                self.next_batch += 1;
                object.tracker.push_batch(batch_id, end, end_anchor);
                object.read_pos = end;
                object.read_anchor = end_anchor;
                let batch = RecordBatch {
                    origin: object.origin.clone(),
                    data: Bytes::from(data),
                    start: pos,
                    records: ex.records,
                    finalizer: Finalizer::new(batch_id, self.ack_tx.clone()),
                    replay: (pos < object.replay_until).then_some(object.replay_round),
                };
                self.in_flight.insert(batch_id, name.to_owned());
                if !self.send(out, batch, shutdown).await {
                    return;
                }
            } else if ex.consumed > 0 {
                object.skip_to(end, end_anchor);
            }
            if ex.complete {
                // Unless a failed delivery rewound it while the last batch was being sent.
                if let Some(object) = self.objects.get_mut(name).filter(|o| o.read_pos == end) {
                    object.complete_at = Some((len, version));
                }
                return;
            }
            match ex.partial {
                // The record goes on past what was read: read more at once, up to the limit.
                Some(start) if ex.consumed == 0 && (n as u64) < available => {
                    if want < self.options.max_record_bytes {
                        want = (want * 2).min(self.options.max_record_bytes);
                        continue;
                    }
                    let rec_start = pos + start as u64;
                    let Some((rec_end, rec_anchor)) = self.skip_record(name, rec_start, len).await
                    else {
                        return; // not complete yet
                    };
                    warn!(source = %self.name, object = %name, offset = rec_start, bytes = rec_end - rec_start, limit = self.options.max_record_bytes, "record larger than max_record_bytes skipped");
                    metrics::counter!(m::SOURCE_EXTRACT_ERRORS_TOTAL, "reason" => "record_too_large").increment(1);
                    if let Some(object) = self.objects.get_mut(name) {
                        object.skip_to(rec_end, rec_anchor);
                    }
                    want = chunk;
                }
                Some(_) if (n as u64) >= available => return, // wait for the writer
                _ if ex.consumed == 0 => return,              // only whitespace so far
                _ => want = chunk,
            }
        }
    }

    /// Streams over an oversized record starting at `start`; returns the offset just after
    /// it and that offset's anchor.
    async fn skip_record(&self, name: &str, start: u64, len: u64) -> Option<(u64, Anchor)> {
        let mut scanner = BraceScanner::default();
        let mut pos = start;
        while pos < len {
            let buf = self.store.read(name, pos, 1 << 20).await.ok()?;
            if buf.is_empty() {
                return None;
            }
            if let Some(end) = scanner.scan(&buf) {
                let end_abs = pos + end as u64;
                let from = end_abs.saturating_sub(ANCHOR_BYTES as u64).max(start);
                let tail = self
                    .store
                    .read(name, from, (end_abs - from) as usize)
                    .await
                    .ok()?;
                return Some((end_abs, Anchor::of(&tail)));
            }
            pos += buf.len() as u64;
        }
        None
    }

    /// Whether the `anchor.len` bytes before `offset` still hash to the anchor.
    async fn anchor_holds(
        &self,
        name: &str,
        offset: u64,
        anchor: Anchor,
    ) -> Result<bool, StoreError> {
        let back = (anchor.len as u64).min(offset);
        let bytes = self.store.read(name, offset - back, back as usize).await?;
        Ok(anchor.matches(&bytes))
    }

    /// Where to start in an object for `start_at = "end"`: just before its closing `]`,
    /// found in its last bytes (a record boundary: the next record goes there). An object
    /// without a closing `]` yet is read through once to find its last complete record.
    async fn end_of_records(&self, name: &str, len: u64) -> Option<(u64, Anchor)> {
        let tail_len = len.min(4096);
        let tail = self
            .store
            .read(name, len - tail_len, tail_len as usize)
            .await
            .ok()?;
        let trim = |mut end: usize| {
            while end > 0 && tail[end - 1].is_ascii_whitespace() {
                end -= 1;
            }
            end
        };
        let mut end = trim(tail.len());
        if end > 0 && tail[end - 1] == b'}' {
            end = trim(end - 1);
        }
        if end > 0 && tail[end - 1] == b']' {
            let at = len - tail_len + end as u64 - 1;
            let from = at.saturating_sub(ANCHOR_BYTES as u64);
            let before = self
                .store
                .read(name, from, (at - from) as usize)
                .await
                .ok()?;
            return Some((at, Anchor::of(&before)));
        }
        let all = self.store.read(name, 0, len as usize).await.ok()?;
        let consumed = extract(&all, true).consumed;
        Some((consumed as u64, Anchor::of(&all[..consumed])))
    }
}

fn error_reason(e: &StoreError) -> &'static str {
    match e {
        StoreError::NotFound(_) => "not_found",
        StoreError::Denied(_) => "denied",
        StoreError::Other(_) => "other",
    }
}

fn status_label(s: BatchStatus) -> &'static str {
    match s {
        BatchStatus::Delivered => "delivered",
        BatchStatus::Dropped => "dropped",
        BatchStatus::Failed => "failed",
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
