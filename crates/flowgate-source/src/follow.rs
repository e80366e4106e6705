//! Following growing flow log objects: the engine shared by every source.
//!
//! Every poll lists the store's objects, reads each one from its read position to its
//! end, extracts the complete records and sends them on. Per object, a [`RangeTracker`]
//! turns acknowledgements into a checkpoint that only covers delivered bytes, and an
//! [`Anchor`] proves with every read that the bytes behind the offset are still the ones
//! the checkpoint was taken on.
//!
//! Reads run concurrently (`max_concurrent_reads`) across *streams*: the hours of one NSG
//! and MAC, read one request at a time and in time order. Memory stays at most
//! `max_concurrent_reads` reads of `read_chunk_bytes` (more only while one record is
//! longer than a chunk) plus the channels.

use crate::anchor::{Anchor, ANCHOR_BYTES};
use crate::checkpoint::{Checkpoint, CheckpointError, Checkpoints, Complete, Update};
use crate::extract::{extract, BraceScanner};
use crate::path::{hour_start, stream_of, PathFilter};
use crate::store::{ObjectInfo, ObjectStore, StoreError};
use crate::tracker::{AckEffect, RangeTracker};
use bytes::Bytes;
use flowgate_core::dead_letter::{self, Entry};
use flowgate_core::time::UtcTime;
use flowgate_core::{health, metric_names as m, Ack, BatchStatus, Finalizer, Origin, RecordBatch};
use serde::Deserialize;
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
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
    /// Range reads in flight at once, over different streams (NSG and MAC).
    pub max_concurrent_reads: usize,
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
/// Against Blob Storage a range read takes 10–50 ms: eight in flight keep one core busy
/// parsing, with 8 MiB of reads in memory.
pub(crate) fn default_concurrent_reads() -> usize {
    8
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
            max_concurrent_reads: default_concurrent_reads(),
            subscription_tag: None,
            filter: PathFilter::default(),
        }
    }

    pub fn with_filter(mut self, filter: PathFilter) -> Self {
        self.filter = filter;
        self
    }

    pub fn with_concurrent_reads(mut self, reads: usize) -> Self {
        self.max_concurrent_reads = reads;
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
        max_concurrent_reads: usize,
    ) -> Result<(), String> {
        if !(1..=256).contains(&max_concurrent_reads) {
            return Err(format!("{prefix}.max_concurrent_reads must be in [1, 256]"));
        }
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
    origin: Arc<Origin>,
    /// The claim (partition ownership) this state was built under.
    epoch: u64,
    /// Next byte to read: just after the last record sent (or skipped).
    read_pos: u64,
    /// The bytes just before `read_pos`, checked on every read.
    read_anchor: Anchor,
    /// The object changed since its checkpoint was taken: its anchor must be checked even
    /// when there is nothing new to read (a rewrite to the same length).
    verify: bool,
    /// Bytes before this were sent once and are being read again: a delivery failed, or
    /// the object was rewritten while some were not yet delivered.
    replay_until: u64,
    /// How many times that happened: copies read in different rounds are told apart.
    replay_round: u32,
    /// The size and version at which the object was read to its closing `]}`: nothing to
    /// read until either changes (the closing bytes stay unread, so a size above the read
    /// position alone says nothing).
    complete_at: Option<Complete>,
    /// A record still open where the object ended when last read: it is not read again
    /// until the object changes.
    stuck: Option<Stuck>,
    tracker: RangeTracker,
    /// The checkpoint last stored: offset, and whether it said complete.
    stored: Option<(u64, bool)>,
    /// Older than `start_at`: listed but never read.
    before_start: bool,
}

/// A record that starts at `offset` and was still open at the end of the object as it
/// was listed (`at`): a stray `"` or a writer that stopped mid-record. Reading it again
/// finds nothing new until the size or version changes.
#[derive(Debug, Clone, Copy)]
struct Stuck {
    offset: u64,
    at: Complete,
    /// Warned about and counted: once per record start.
    reported: bool,
}

impl ObjectState {
    /// Remembers that the record at `offset` is open at the end of the object as listed.
    fn stuck_at(&mut self, offset: u64, at: Complete) {
        let reported = self.stuck.is_some_and(|s| s.offset == offset && s.reported);
        self.stuck = Some(Stuck {
            offset,
            at,
            reported,
        });
    }

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
        self.verify = false;
        self.complete_at = None;
        self.stuck = None;
        self.tracker.reset();
    }

    /// Reads again from the checkpoint (a delivery failed).
    fn rewind_to_checkpoint(&mut self) {
        self.read_again_before(self.read_pos);
        self.read_pos = self.tracker.committed();
        self.read_anchor = self.tracker.committed_anchor();
        self.complete_at = None;
        self.stuck = None;
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

    /// The checkpoint's offset now, and whether it is complete: only once everything read
    /// is delivered.
    fn position(&self) -> (u64, Option<Complete>) {
        let delivered_all = self.tracker.committed() == self.read_pos;
        (
            self.tracker.committed(),
            self.complete_at.filter(|_| delivered_all),
        )
    }

    fn checkpoint(&self, now: u64) -> Checkpoint {
        let (offset, complete) = self.position();
        Checkpoint {
            offset,
            anchor: self.tracker.committed_anchor().to_string(),
            updated: now,
            complete,
        }
    }
}

/// What scanning past an oversized record found.
enum Skip {
    /// It ends here; the anchor is the bytes before.
    Ended(u64, Anchor),
    /// It goes on to the end of the object.
    Open,
    /// A read failed.
    Failed,
}

/// One object to read in this poll, as listed.
struct Work {
    name: Arc<str>,
    len: u64,
    version: u64,
    /// Bytes to ask for next (doubled while one record goes on past them).
    want: usize,
}

/// The objects of one NSG and MAC (or flow log) to read, in name (time) order: read one
/// after another, one request at a time, so that each stream's events stay in order.
type Stream = VecDeque<Work>;

/// A range read in flight; its stream travels with it and comes back with the bytes.
struct Read {
    stream: Stream,
    pos: u64,
    /// Anchor bytes read before `pos`.
    back: usize,
    /// Bytes asked for after `pos`.
    n: usize,
    result: Result<Vec<u8>, StoreError>,
}

/// Follows the objects of one store; see the module docs.
pub struct Follower<S, C> {
    name: Arc<str>,
    store: Arc<S>,
    options: FollowOptions,
    checkpoints: C,
    objects: BTreeMap<Arc<str>, ObjectState>,
    /// Which object each batch in flight belongs to.
    in_flight: HashMap<u64, Arc<str>>,
    /// Checkpoints of deleted objects, removed at the next store.
    removals: Vec<(Arc<str>, u64)>,
    /// Objects whose checkpoint may have moved since the last store: a store looks at these
    /// only, not at every object followed (100,000 of them in a month of retention).
    touched: HashSet<Arc<str>>,
    next_batch: u64,
    ack_tx: mpsc::UnboundedSender<Ack>,
    ack_rx: mpsc::UnboundedReceiver<Ack>,
    first_scan: bool,
    /// Objects of the first scan that could not be set up yet: they still start as the
    /// first scan says (`start_at = "end"`), whenever that succeeds.
    first_scan_retry: HashSet<String>,
    /// The checkpoints' generation the objects were last checked against.
    generation: u64,
    /// Listings failed in a row, and when to try again.
    failures: u32,
    retry_at: Option<tokio::time::Instant>,
}

/// The longest wait between two attempts while the store keeps failing.
const MAX_BACKOFF: Duration = Duration::from_secs(300);

impl<S: ObjectStore, C: Checkpoints> Follower<S, C> {
    pub fn new(name: &str, store: S, options: FollowOptions, checkpoints: C) -> Self {
        let (ack_tx, ack_rx) = mpsc::unbounded_channel();
        Follower {
            name: name.into(),
            store: Arc::new(store),
            options,
            generation: checkpoints.generation(),
            checkpoints,
            objects: BTreeMap::new(),
            in_flight: HashMap::new(),
            removals: Vec::new(),
            touched: HashSet::new(),
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
        info!(source = %self.name, concurrent_reads = self.options.max_concurrent_reads, "source started");
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
        self.checkpoints.flush().await?;
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
        self.touched.insert(name.clone());
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

    /// Drops the objects this instance may no longer follow (a partition lost or handed
    /// over, or claimed again since): their acknowledgements can move nothing any more.
    fn check_claims(&mut self) {
        let generation = self.checkpoints.generation();
        if generation == self.generation {
            return;
        }
        self.generation = generation;
        let before = self.objects.len();
        let checkpoints = &self.checkpoints;
        self.objects
            .retain(|name, o| checkpoints.claim(name) == Some(o.epoch));
        let objects = &self.objects;
        self.in_flight.retain(|_, name| objects.contains_key(name));
        if self.objects.len() != before {
            info!(source = %self.name, dropped = before - self.objects.len(), following = self.objects.len(), "objects of partitions no longer held dropped");
        }
    }

    /// Hands every checkpoint that moved since the last store to the checkpoint store.
    async fn store_checkpoints(&mut self) -> Result<(), CheckpointError> {
        self.check_claims();
        let now = unix_now();
        let touched = std::mem::take(&mut self.touched);
        let updates: Vec<Update> = touched
            .into_iter()
            .filter_map(|name| {
                let o = self.objects.get(&name)?;
                // An object older than `start_at` keeps no checkpoint: one would make it
                // look followed after a restart, and it would be read.
                let (offset, complete) = o.position();
                (!o.before_start && Some((offset, complete.is_some())) != o.stored).then(|| {
                    Update {
                        name,
                        epoch: o.epoch,
                        checkpoint: o.checkpoint(now),
                    }
                })
            })
            .collect();
        if updates.is_empty() && self.removals.is_empty() {
            return Ok(());
        }
        let stored: Vec<(Arc<str>, (u64, bool))> = updates
            .iter()
            .map(|u| {
                let state = (u.checkpoint.offset, u.checkpoint.complete.is_some());
                (u.name.clone(), state)
            })
            .collect();
        let removals = std::mem::take(&mut self.removals);
        if let Err(e) = self.checkpoints.write(updates, removals.clone()).await {
            self.removals.extend(removals);
            self.touched
                .extend(stored.into_iter().map(|(name, _)| name));
            return Err(e);
        }
        for (name, state) in stored {
            if let Some(o) = self.objects.get_mut(&name) {
                o.stored = Some(state);
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
        if let Some(streams) = self.list_work(shutdown).await {
            self.read_streams(streams, out, shutdown).await;
        }
        metrics::histogram!(m::SOURCE_POLL_DURATION_SECONDS, "source" => self.name.to_string())
            .record(started.elapsed().as_secs_f64());
    }

    /// Lists the store and sets up new objects; returns what to read, stream by stream,
    /// interleaved so that every NSG's newest hour is reached early whatever the backlog
    /// of another.
    async fn list_work(&mut self, shutdown: &watch::Receiver<bool>) -> Option<VecDeque<Stream>> {
        if self
            .retry_at
            .is_some_and(|at| tokio::time::Instant::now() < at)
        {
            return None;
        }
        self.check_claims();
        let checkpoints = &self.checkpoints;
        let listing = match self.store.list(&|dir| checkpoints.wants_dir(dir)).await {
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
                self.listing_failed(e);
                return None;
            }
        };
        let kind = if listing.complete { "full" } else { "partial" };
        metrics::counter!(m::SOURCE_LIST_REQUESTS_TOTAL, "kind" => kind)
            .increment(listing.requests as u64);
        let first_scan = std::mem::take(&mut self.first_scan);
        if listing.complete {
            let present: HashSet<&str> = listing.objects.iter().map(|o| o.name.as_str()).collect();
            let gone: Vec<Arc<str>> = self
                .objects
                .iter()
                .filter(|(name, o)| !present.contains(&***name) && o.tracker.is_idle())
                .map(|(name, _)| name.clone())
                .collect();
            for name in gone {
                self.forget(&name, "removed");
            }
        }
        let mut streams: BTreeMap<(&str, &str), Stream> = BTreeMap::new();
        for info in &listing.objects {
            if *shutdown.borrow() {
                return None;
            }
            if !self.objects.contains_key(info.name.as_str()) {
                if !self.options.filter.accepts(&info.name) {
                    continue;
                }
                let Some(epoch) = self.checkpoints.claim(&info.name) else {
                    continue; // another instance's
                };
                let first = first_scan || self.first_scan_retry.remove(&info.name);
                let Some(state) = self.discover(info, epoch, first).await else {
                    if first {
                        self.first_scan_retry.insert(info.name.clone());
                    }
                    continue;
                };
                let name: Arc<str> = info.name.as_str().into();
                self.touched.insert(name.clone());
                self.objects.insert(name, state);
            }
            if !self.checkpoints.readable(&info.name) {
                continue;
            }
            let name = self
                .objects
                .get_key_value(info.name.as_str())
                .map(|(name, _)| name.clone())
                .expect("just inserted");
            let object = self.objects.get_mut(&name).expect("just inserted");
            if object.before_start {
                continue;
            }
            if info.len < object.read_pos {
                warn!(source = %self.name, object = %object.origin.path, size = info.len, offset = object.read_pos, "object shrank; reading it from the start");
                object.restart("truncated");
                self.touched.insert(name.clone());
            }
            let complete = Complete {
                size: info.len,
                version: info.version,
            };
            let mut want = self.options.read_chunk_bytes;
            if object.stuck.is_some_and(|s| s.offset < object.read_pos) {
                object.stuck = None; // that record ended after all
            }
            if let Some(stuck) = &mut object.stuck {
                if stuck.at == complete {
                    if !stuck.reported {
                        stuck.reported = true;
                        warn!(source = %self.name, object = %object.origin.path, offset = stuck.offset, size = complete.size, "a record starts here and does not end before the end of the object (malformed, or its writer stopped); not read again until the object changes");
                        metrics::counter!(m::SOURCE_EXTRACT_ERRORS_TOTAL, "reason" => "record_unterminated")
                            .increment(1);
                        let detail = format!(
                            "a record open to the end of the object ({} bytes): read it there",
                            complete.size
                        );
                        dead_letter::write(Entry::skipped(
                            &object.origin,
                            stuck.offset,
                            "record_unterminated",
                            &detail,
                            &[],
                        ));
                    }
                    continue;
                }
                // Changed: ask at once for the bytes already seen and as many again,
                // rather than double up to them one read at a time.
                let seen = stuck.at.size.saturating_sub(object.read_pos) as usize;
                want = want
                    .max(seen.saturating_mul(2))
                    .min(self.options.max_record_bytes);
            }
            let news = info.len > object.read_pos && object.complete_at != Some(complete);
            if news || object.verify {
                streams
                    .entry(stream_of(&info.name))
                    .or_default()
                    .push_back(Work {
                        name,
                        len: info.len,
                        version: info.version,
                        want,
                    });
            }
        }
        Some(streams.into_values().collect())
    }

    fn listing_failed(&mut self, e: StoreError) {
        self.failures += 1;
        let wait = self.backoff();
        self.retry_at = Some(tokio::time::Instant::now() + wait);
        metrics::counter!(m::SOURCE_LIST_ERRORS_TOTAL, "reason" => error_reason(&e)).increment(1);
        if matches!(e, StoreError::Denied(_) | StoreError::NotFound(_)) {
            health::set_ready(&self.task_name(), false);
        }
        match &e {
            // Not fixed by waiting: say what to check (and keep trying, so that a fixed
            // permission or a created container needs no restart).
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
    }

    /// Reads the streams, up to `max_concurrent_reads` requests at once over different
    /// streams, one at a time within a stream. Streams take turns request by request, so
    /// one NSG's deep backlog holds up no other NSG.
    async fn read_streams(
        &mut self,
        mut ready: VecDeque<Stream>,
        out: &mpsc::Sender<RecordBatch>,
        shutdown: &mut watch::Receiver<bool>,
    ) {
        let mut reads: JoinSet<Read> = JoinSet::new();
        loop {
            while reads.len() < self.options.max_concurrent_reads && !*shutdown.borrow() {
                let Some(mut stream) = ready.pop_front() else {
                    break;
                };
                if let Some((from, back, n)) = self.next_read(&mut stream) {
                    let store = self.store.clone();
                    let name = stream.front().expect("a read's object").name.clone();
                    reads.spawn(async move {
                        let result = store.read(&name, from - back as u64, back + n).await;
                        Read {
                            stream,
                            pos: from,
                            back,
                            n,
                            result,
                        }
                    });
                }
            }
            if reads.is_empty() || *shutdown.borrow() {
                return;
            }
            tokio::select! {
                biased;
                _ = shutdown.changed() => return,
                Some(ack) = self.ack_rx.recv() => {
                    self.on_acks(ack);
                    if let Err(e) = self.store_checkpoints().await {
                        warn!(source = %self.name, error = %e, "cannot store checkpoints; will retry");
                    }
                }
                Some(done) = reads.join_next() => {
                    // A read task cannot panic short of a bug in the store; its stream is
                    // read again at the next poll.
                    let Ok(read) = done else { continue };
                    if let Some(stream) = self.on_read(read, out, shutdown).await {
                        ready.push_back(stream);
                    }
                }
            }
        }
    }

    /// The next read of a stream: (position, anchor bytes before it, bytes after it).
    /// Drops the objects in front that have nothing to read (any more).
    fn next_read(&mut self, stream: &mut Stream) -> Option<(u64, usize, usize)> {
        while let Some(work) = stream.front_mut() {
            let object = self
                .objects
                .get_mut(&work.name)
                .filter(|_| self.checkpoints.readable(&work.name));
            if let Some(object) = object {
                let available = work.len.saturating_sub(object.read_pos);
                let back = object.read_anchor.len as usize;
                if object.verify && back == 0 {
                    object.verify = false;
                }
                if available > 0 || object.verify {
                    let n = (available as usize).min(work.want);
                    return Some((object.read_pos, back, n));
                }
            }
            stream.pop_front();
        }
        None
    }

    /// Handles one read's bytes: checks the anchor, extracts the records, sends them.
    /// Returns the stream if it has more to read in this poll.
    async fn on_read(
        &mut self,
        read: Read,
        out: &mpsc::Sender<RecordBatch>,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Option<Stream> {
        let Read {
            mut stream,
            pos,
            back,
            n,
            result,
        } = read;
        let work = stream.front_mut().expect("a read's object");
        let name = work.name.clone();
        // Whatever this read does to the object (a rewrite found, bytes skipped, the end
        // reached) may move its checkpoint.
        self.touched.insert(name.clone());
        let (len, version) = (work.len, work.version);
        let chunk = self.options.read_chunk_bytes;
        let readable = self.checkpoints.readable(&name);
        let Some(object) = self
            .objects
            .get_mut(&name)
            .filter(|o| o.read_pos == pos && readable)
        else {
            // Forgotten, rewound or no longer ours while the read was in flight.
            return Some(stream);
        };
        let mut data = match result {
            Ok(d) => d,
            Err(StoreError::NotFound(_)) => {
                warn!(source = %self.name, object = %name, offset = pos, "object deleted while being read");
                metrics::counter!(m::SOURCE_RESETS_TOTAL, "reason" => "deleted").increment(1);
                self.forget(&name, "deleted");
                stream.pop_front();
                return Some(stream);
            }
            Err(e) => {
                // The rest of the stream waits for the next poll, to stay in order.
                warn!(source = %self.name, object = %name, offset = pos, error = %e, "read failed; will retry");
                return None;
            }
        };
        if data.len() < back || !object.read_anchor.matches(&data[..back]) {
            warn!(source = %self.name, object = %object.origin.path, offset = pos, "object rewritten since it was last read; reading it from the start");
            object.restart("rewritten");
            work.want = chunk;
            return Some(stream);
        }
        object.verify = false;
        if n == 0 {
            stream.pop_front();
            return Some(stream);
        }
        data.drain(..back);
        let available = len.saturating_sub(pos);
        metrics::counter!(m::SOURCE_BYTES_READ_TOTAL).increment(data.len() as u64);
        metrics::counter!(m::SOURCE_READS_TOTAL).increment(1);
        health::beat(&format!("source.{}", self.name));
        let ex = extract(&data, pos == 0);
        for e in &ex.errors {
            warn!(source = %self.name, object = %object.origin.path, offset = pos + e.at as u64, error = %e.kind, "malformed data between records skipped");
            metrics::counter!(m::SOURCE_EXTRACT_ERRORS_TOTAL, "reason" => e.kind.reason())
                .increment(1);
            dead_letter::write(Entry::skipped(
                &object.origin,
                pos + e.at as u64,
                e.kind.reason(),
                &e.kind.to_string(),
                &data[ex.skipped(e.at)],
            ));
        }
        let end = pos + ex.consumed as u64;
        let end_anchor = Anchor::of(&data[..ex.consumed]);
        let data = Bytes::from(data);
        if !ex.records.is_empty() {
            let batch_id = self.next_batch;
            self.next_batch += 1;
            object.tracker.push_batch(batch_id, end, end_anchor);
            object.read_pos = end;
            object.read_anchor = end_anchor;
            let batch = RecordBatch {
                origin: object.origin.clone(),
                data: data.clone(),
                start: pos,
                records: ex.records,
                finalizer: Finalizer::new(batch_id, self.ack_tx.clone()),
                replay: (pos < object.replay_until).then_some(object.replay_round),
            };
            self.in_flight.insert(batch_id, name.clone());
            if !self.send(out, batch, shutdown).await {
                return None;
            }
        } else if ex.consumed > 0 {
            object.skip_to(end, end_anchor);
        }
        let work = stream.front_mut().expect("a read's object");
        if ex.complete {
            // Unless a failed delivery rewound it while the last batch was being sent.
            if let Some(object) = self.objects.get_mut(&name).filter(|o| o.read_pos == end) {
                object.complete_at = Some(Complete { size: len, version });
            }
            stream.pop_front();
            return Some(stream);
        }
        match ex.partial {
            // The record goes on past what was read: read more at once, up to the limit.
            Some(start) if ex.consumed == 0 && (n as u64) < available => {
                if work.want < self.options.max_record_bytes {
                    work.want = (work.want * 2).min(self.options.max_record_bytes);
                    return Some(stream);
                }
                work.want = chunk;
                let rec_start = pos + start as u64;
                let (rec_end, rec_anchor) = match self.skip_record(&name, rec_start, len).await {
                    Skip::Ended(end, anchor) => (end, anchor),
                    Skip::Open => {
                        if let Some(object) = self.objects.get_mut(&name) {
                            object.stuck_at(rec_start, Complete { size: len, version });
                        }
                        stream.pop_front();
                        return Some(stream);
                    }
                    Skip::Failed => {
                        stream.pop_front(); // read again at the next poll
                        return Some(stream);
                    }
                };
                warn!(source = %self.name, object = %name, offset = rec_start, bytes = rec_end - rec_start, limit = self.options.max_record_bytes, "record larger than max_record_bytes skipped");
                metrics::counter!(m::SOURCE_EXTRACT_ERRORS_TOTAL, "reason" => "record_too_large")
                    .increment(1);
                if let Some(object) = self.objects.get_mut(&name) {
                    let detail =
                        format!("a record of {} bytes: its first bytes", rec_end - rec_start);
                    dead_letter::write(Entry::skipped(
                        &object.origin,
                        rec_start,
                        "record_too_large",
                        &detail,
                        &data[start..],
                    ));
                    object.skip_to(rec_end, rec_anchor);
                }
            }
            // Wait for the writer (or the record never ends).
            Some(start) if (n as u64) >= available => {
                if let Some(object) = self.objects.get_mut(&name) {
                    object.stuck_at(pos + start as u64, Complete { size: len, version });
                }
                stream.pop_front();
            }
            _ if ex.consumed == 0 => {
                stream.pop_front();
            }
            _ => work.want = chunk,
        }
        Some(stream)
    }

    /// Drops an object that no longer exists; its checkpoint goes at the next store.
    fn forget(&mut self, name: &Arc<str>, why: &str) {
        if let Some(object) = self.objects.remove(name) {
            info!(source = %self.name, object = %object.origin.path, "object {why}; forgetting its checkpoint");
            self.removals.push((name.clone(), object.epoch));
            self.in_flight.retain(|_, n| n != name);
        }
    }

    /// The state to follow a newly listed object with, from its checkpoint. `None` when
    /// that cannot be known now (the checkpoint or the object could not be read): the
    /// next poll tries again, rather than guess and skip or repeat data.
    ///
    /// An object whose size and version are those its checkpoint recorded as complete is
    /// neither read nor checked; any other is checked against the checkpoint's anchor by
    /// its first read, which asks for the anchor's bytes too.
    async fn discover(
        &mut self,
        info: &ObjectInfo,
        epoch: u64,
        first_scan: bool,
    ) -> Option<ObjectState> {
        let name = info.name.as_str();
        let checkpoint = match self.checkpoints.get(name) {
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
        let listed = Complete {
            size: info.len,
            version: info.version,
        };
        let mut complete_at = None;
        let mut verify = false;
        // Where to start, and what the store already says.
        let (resume, stored) = match &checkpoint {
            Some(cp) => match Anchor::parse(&cp.anchor) {
                Some(anchor) => {
                    complete_at = cp.complete.filter(|c| *c == listed);
                    verify = complete_at.is_none();
                    (
                        Some((cp.offset, anchor)),
                        Some((cp.offset, cp.complete.is_some())),
                    )
                }
                None => {
                    warn!(source = %self.name, object = %name, offset = cp.offset, "unreadable checkpoint anchor; reading the object from the start");
                    metrics::counter!(m::SOURCE_RESETS_TOTAL, "reason" => "rewritten").increment(1);
                    (None, Some((cp.offset, false)))
                }
            },
            // Not stored yet: written at the next store, so that a restart resumes here.
            None if first_scan && self.options.start_at == StartAt::End => {
                (self.end_of_records(name, info.len).await, None)
            }
            None => (None, None),
        };
        metrics::counter!(m::SOURCE_FILES_DISCOVERED_TOTAL).increment(1);
        let (start, anchor) = resume.unwrap_or((0, Anchor::START));
        debug!(source = %self.name, object = %name, offset = start, "following object");
        Some(ObjectState {
            origin: Arc::new(Origin {
                source: self.name.clone(),
                path: name.into(),
                subscription_tag: self.options.subscription_tag.clone(),
            }),
            epoch,
            read_pos: start,
            read_anchor: anchor,
            verify,
            replay_until: 0,
            replay_round: 0,
            complete_at,
            stuck: None,
            tracker: RangeTracker::new(start, anchor),
            stored,
            before_start,
        })
    }

    /// Streams over an oversized record starting at `start`; returns the offset just after
    /// it and that offset's anchor.
    async fn skip_record(&self, name: &str, start: u64, len: u64) -> Skip {
        let mut scanner = BraceScanner::default();
        let mut pos = start;
        while pos < len {
            let Ok(buf) = self.store.read(name, pos, 1 << 20).await else {
                return Skip::Failed;
            };
            if buf.is_empty() {
                break;
            }
            if let Some(end) = scanner.scan(&buf) {
                let end_abs = pos + end as u64;
                let from = end_abs.saturating_sub(ANCHOR_BYTES as u64).max(start);
                let Ok(tail) = self.store.read(name, from, (end_abs - from) as usize).await else {
                    return Skip::Failed;
                };
                return Skip::Ended(end_abs, Anchor::of(&tail));
            }
            pos += buf.len() as u64;
        }
        Skip::Open
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

pub(crate) fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkpoint::{CheckpointStore, LocalCheckpoints};
    use crate::memory::MemoryStore;

    /// A blob of `hour` for NIC `mac` of `nsg`, named as Network Watcher does.
    fn blob(nsg: &str, hour: u32, mac: &str) -> String {
        format!("resourceId=/SUBSCRIPTIONS/S/RESOURCEGROUPS/RG/PROVIDERS/MICROSOFT.NETWORK/NETWORKSECURITYGROUPS/{nsg}/y=2024/m=03/d=04/h={hour:02}/m=00/macAddress={mac}/PT1H.json")
    }

    fn document(records: usize) -> Vec<u8> {
        let body: Vec<String> = (0..records).map(|i| format!("{{\"n\":{i}}}")).collect();
        format!("{{\"records\":[{}]}}", body.join(",")).into_bytes()
    }

    /// What a run delivered: (object, records) per batch, in arrival order.
    type Delivered = Arc<std::sync::Mutex<Vec<(String, usize)>>>;

    struct Harness {
        store: MemoryStore,
        dir: tempfile::TempDir,
    }

    impl Harness {
        fn new() -> Harness {
            Harness {
                store: MemoryStore::default(),
                dir: tempfile::tempdir().unwrap(),
            }
        }

        /// Runs a follower until `until` says the deliveries are complete (or 10 s; 1 s when
        /// nothing is expected).
        async fn run(
            &self,
            reads: usize,
            until: impl Fn(&[(String, usize)]) -> bool,
        ) -> Vec<(String, usize)> {
            let patience = if until(&[]) { 1 } else { 10 };
            let checkpoints = LocalCheckpoints::new(
                CheckpointStore::open(&self.dir.path().join("cp.redb")).unwrap(),
                "t",
            );
            let options = FollowOptions::new(0.05, StartAt::Beginning, 4096, 1 << 20)
                .with_concurrent_reads(reads);
            let follower = Follower::new("t", self.store.clone(), options, checkpoints);
            let (tx, mut rx) = mpsc::channel::<RecordBatch>(4);
            let (stop_tx, stop) = watch::channel(false);
            let delivered: Delivered = Default::default();
            let seen = delivered.clone();
            let consumer = tokio::spawn(async move {
                while let Some(batch) = rx.recv().await {
                    seen.lock()
                        .unwrap()
                        .push((batch.origin.path.to_string(), batch.records.len()));
                    batch.finalizer.update(BatchStatus::Delivered);
                }
            });
            let run = tokio::spawn(follower.run(tx, stop, Duration::from_secs(5)));
            let deadline = tokio::time::Instant::now() + Duration::from_secs(patience);
            while (patience == 1 || !until(&delivered.lock().unwrap()))
                && tokio::time::Instant::now() < deadline
            {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            // A few more polls: nothing more may arrive.
            tokio::time::sleep(Duration::from_millis(200)).await;
            stop_tx.send(true).unwrap();
            run.await.unwrap().unwrap();
            consumer.await.unwrap();
            let out = delivered.lock().unwrap().clone();
            out
        }
    }

    fn records_of(delivered: &[(String, usize)]) -> usize {
        delivered.iter().map(|(_, n)| n).sum()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn reads_run_concurrently_across_streams_and_in_order_within_one() {
        let h = Harness::new();
        // 6 NICs with 3 hours each; every read takes 30 ms.
        for mac in 0..6 {
            for hour in 10..13 {
                h.store
                    .put(&blob("A", hour, &format!("M{mac}")), &document(50));
            }
        }
        h.store.set_read_delay(Duration::from_millis(30));
        let delivered = h.run(4, |d| records_of(d) == 18 * 50).await;
        assert_eq!(records_of(&delivered), 18 * 50, "every record once");
        assert_eq!(
            h.store.peak_in_flight(),
            4,
            "four reads in flight at once, never more"
        );
        // Within one NIC, the hours arrive in order.
        for mac in 0..6 {
            let hours: Vec<&str> = delivered
                .iter()
                .filter(|(name, _)| name.contains(&format!("macAddress=M{mac}/")))
                .map(|(name, _)| &name[name.find("h=").unwrap()..][..4])
                .collect();
            let mut sorted = hours.clone();
            sorted.sort();
            sorted.dedup();
            let mut seen = hours.clone();
            seen.dedup();
            assert_eq!(seen, sorted, "NIC {mac}: hours out of order");
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn one_nsgs_backlog_does_not_hold_up_another_nsgs_current_hour() {
        let h = Harness::new();
        for hour in 0..20 {
            h.store.put(&blob("DEEP", hour, "AA"), &document(20));
        }
        let current = blob("SMALL", 20, "BB");
        h.store.put(&current, &document(1));
        // One read at a time: only the order of turns decides.
        let delivered = h.run(1, |d| records_of(d) == 401).await;
        let at = delivered.iter().position(|(n, _)| *n == current).unwrap();
        assert!(
            at <= 1,
            "the other NSG's hour came in turn {at}, after the backlog"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_record_that_never_ends_is_not_read_again_until_the_object_changes() {
        let h = Harness::new();
        let name = blob("Q", 1, "AA");
        // Two good records, then one with a stray quote: it runs to the end of the object.
        let mut doc = document(2);
        doc.truncate(doc.len() - 2);
        doc.extend_from_slice(b",{\"n\":\"2}");
        doc.extend(std::iter::repeat_n(b' ', 300_000));
        doc.extend_from_slice(b"]}");
        h.store.put(&name, &doc);
        let first = h.run(1, |d| records_of(d) == 2).await;
        assert_eq!(records_of(&first), 2, "the records before the open one");
        let (reads, bytes) = (h.store.reads(), h.store.bytes_read());
        assert!(
            bytes < 3 * doc.len(),
            "reading to the end took {bytes} bytes for a {} byte object",
            doc.len()
        );

        // A second run (new state, so the open record is found once more) polls 20 times
        // over the unchanged object.
        let second = h.run(1, |d| d.is_empty()).await;
        assert!(second.is_empty());
        let again = h.store.bytes_read() - bytes;
        assert!(
            again < 3 * doc.len(),
            "20 polls over the unchanged object read {again} bytes ({} reads)",
            h.store.reads() - reads
        );

        // The writer finishes the record: it arrives, and the object is read once more.
        let mut fixed = doc.clone();
        let quote = fixed.windows(3).position(|w| w == b"\"2}").unwrap();
        fixed[quote + 2] = b'"';
        fixed.insert(quote + 3, b'}');
        h.store.put(&name, &fixed);
        let third = h.run(1, |d| records_of(d) == 1).await;
        assert_eq!(records_of(&third), 1, "the record, once it ends");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_restart_reads_only_the_objects_that_changed() {
        let h = Harness::new();
        let names: Vec<String> = (0..50)
            .map(|i| blob("N", i % 24, &format!("M{}", i / 24)))
            .collect();
        for name in &names {
            h.store.put(name, &document(3));
        }
        let first = h.run(8, |d| records_of(d) == 150).await;
        assert_eq!(records_of(&first), 150);
        let reads = h.store.reads();
        assert!(reads >= 50, "each object read at least once: {reads}");

        // Unchanged: a restart reads nothing, not even an anchor.
        let again = h.run(8, |d| d.is_empty()).await;
        assert!(again.is_empty(), "re-sent: {again:?}");
        assert_eq!(
            h.store.reads(),
            reads,
            "a restart over unchanged objects made reads"
        );

        // One grows, one is rewritten with other content at the same length.
        let mut grown = document(3);
        grown.truncate(grown.len() - 2);
        grown.extend_from_slice(b",{\"n\":3}]}");
        h.store.put(&names[7], &grown);
        let mut other = document(3);
        other[17] = b'7'; // {"n":0} becomes {"n":7}
        h.store.put(&names[9], &other);
        let third = h.run(8, |d| records_of(d) == 4).await;
        let mut got: Vec<(String, usize)> = third.clone();
        got.sort();
        let mut want = vec![(names[7].clone(), 1), (names[9].clone(), 3)];
        want.sort();
        assert_eq!(got, want, "only the new record and the rewritten object");
        assert!(
            h.store.reads() - reads <= 4,
            "reads for two changed objects: {}",
            h.store.reads() - reads
        );
    }
}
