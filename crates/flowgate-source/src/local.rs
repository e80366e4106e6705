//! The local directory source: a directory laid out like the storage container, followed
//! as its `PT1H.json` files grow.
//!
//! Every poll lists the `*.json` files under the root (the current `resourceId=/.../y=/m=/
//! d=/h=/m=00/macAddress=/PT1H.json` layout, the legacy `{nsg}/{y}/{m}/{d}/PT1H.json`
//! one, or any other), reads each file from its read position to its end, extracts the
//! complete records and sends them on. Per file, a [`RangeTracker`] turns acknowledgements
//! into a checkpoint that only covers delivered bytes.

use crate::anchor::Anchor;
use crate::checkpoint::{Checkpoint, CheckpointStore};
use crate::extract::{extract, BraceScanner};
use crate::tracker::{AckEffect, RangeTracker};
use bytes::Bytes;
use flowgate_core::{metric_names as m, Ack, Finalizer, Origin, RecordBatch};
use serde::Deserialize;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::{mpsc, watch};
use tracing::{debug, info, warn};

/// Where to begin in files that have no checkpoint when flowgate starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum StartAt {
    /// Forward everything already there.
    #[default]
    Beginning,
    /// Skip what is there at start-up; forward only what is appended later.
    End,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LocalSourceConfig {
    /// The directory to follow.
    pub path: PathBuf,
    /// Seconds between two scans of the directory.
    #[serde(default = "default_poll_interval")]
    pub poll_interval_secs: f64,
    #[serde(default)]
    pub start_at: StartAt,
    /// Bytes read per batch; bounds memory together with the channel capacity.
    #[serde(default = "default_read_chunk")]
    pub read_chunk_bytes: usize,
    /// A record longer than this is reported and skipped instead of read into memory.
    #[serde(default = "default_max_record")]
    pub max_record_bytes: usize,
}

fn default_poll_interval() -> f64 {
    5.0
}
fn default_read_chunk() -> usize {
    1 << 20
}
fn default_max_record() -> usize {
    64 << 20
}

impl LocalSourceConfig {
    /// Checks the config without I/O; errors name the key under `prefix`.
    pub fn validate(&self, prefix: &str) -> Result<(), String> {
        if self.path.as_os_str().is_empty() {
            return Err(format!("{prefix}.path must not be empty"));
        }
        if !(self.poll_interval_secs > 0.0 && self.poll_interval_secs <= 86_400.0) {
            return Err(format!("{prefix}.poll_interval_secs must be in (0, 86400]"));
        }
        if self.read_chunk_bytes < 4096 {
            return Err(format!("{prefix}.read_chunk_bytes must be at least 4096"));
        }
        if self.max_record_bytes < self.read_chunk_bytes {
            return Err(format!(
                "{prefix}.max_record_bytes must be at least read_chunk_bytes ({})",
                self.read_chunk_bytes
            ));
        }
        Ok(())
    }
}

/// One followed file.
struct FileState {
    key: String,
    path: PathBuf,
    origin: Arc<Origin>,
    /// Next byte to read: just after the last record sent (or skipped).
    read_pos: u64,
    /// The bytes just before `read_pos`, checked on every read.
    read_anchor: Anchor,
    tracker: RangeTracker,
    /// The checkpoint last written to the store.
    stored: Option<u64>,
}

impl FileState {
    /// Starts over at 0 (the file was rewritten or truncated).
    fn restart(&mut self, reason: &'static str) {
        metrics::counter!(m::SOURCE_RESETS_TOTAL, "reason" => reason).increment(1);
        self.read_pos = 0;
        self.read_anchor = Anchor::START;
        self.tracker.reset();
    }

    /// Moves the read position past bytes that need no delivery.
    fn skip_to(&mut self, end: u64, anchor: Anchor) {
        self.tracker.push_skip(end, anchor);
        self.read_pos = end;
        self.read_anchor = anchor;
    }
}

pub struct LocalSource {
    name: Arc<str>,
    config: LocalSourceConfig,
    store: CheckpointStore,
    files: BTreeMap<PathBuf, FileState>,
    /// Which file each batch in flight belongs to.
    in_flight: HashMap<u64, PathBuf>,
    next_batch: u64,
    ack_tx: mpsc::UnboundedSender<Ack>,
    ack_rx: mpsc::UnboundedReceiver<Ack>,
    first_scan: bool,
}

/// How a `run` ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunSummary {
    /// Batches still unacknowledged when the drain timeout expired.
    pub abandoned: usize,
}

impl LocalSource {
    pub fn new(name: &str, config: LocalSourceConfig, store: CheckpointStore) -> Self {
        let (ack_tx, ack_rx) = mpsc::unbounded_channel();
        LocalSource {
            name: name.into(),
            config,
            store,
            files: BTreeMap::new(),
            in_flight: HashMap::new(),
            next_batch: 1,
            ack_tx,
            ack_rx,
            first_scan: true,
        }
    }

    /// Follows the directory until `shutdown` turns true, then waits up to `drain_timeout`
    /// for the batches in flight to be acknowledged and stores the final checkpoints.
    pub async fn run(
        mut self,
        out: mpsc::Sender<RecordBatch>,
        mut shutdown: watch::Receiver<bool>,
        drain_timeout: Duration,
    ) -> Result<RunSummary, crate::CheckpointError> {
        let mut poll =
            tokio::time::interval(Duration::from_secs_f64(self.config.poll_interval_secs));
        poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        info!(source = %self.name, path = %self.config.path.display(), "local source started");
        while !*shutdown.borrow() {
            tokio::select! {
                biased;
                _ = shutdown.changed() => break,
                Some(ack) = self.ack_rx.recv() => {
                    self.on_ack(ack);
                    // Take every ack already waiting, then store them in one commit: a
                    // crash replays at most the batches that were not yet acknowledged.
                    while let Ok(ack) = self.ack_rx.try_recv() {
                        self.on_ack(ack);
                    }
                    self.store_checkpoints().await?;
                }
                _ = poll.tick() => self.poll(&out, &mut shutdown).await,
            }
        }
        drop(out);
        let deadline = tokio::time::Instant::now() + drain_timeout;
        while !self.in_flight.is_empty() {
            tokio::select! {
                Some(ack) = self.ack_rx.recv() => self.on_ack(ack),
                _ = tokio::time::sleep_until(deadline) => break,
            }
        }
        self.store_checkpoints().await?;
        let abandoned = self.in_flight.len();
        if abandoned > 0 {
            warn!(source = %self.name, batches = abandoned, "drain timeout: unacknowledged batches will be read again on restart");
        }
        info!(source = %self.name, "local source stopped");
        Ok(RunSummary { abandoned })
    }

    /// Sends a batch, handling acknowledgements while the channel is full (so that
    /// checkpoints keep moving during a long backlog). False if the pipeline is stopping.
    async fn send(
        &mut self,
        out: &mpsc::Sender<RecordBatch>,
        batch: RecordBatch,
        shutdown: &mut watch::Receiver<bool>,
    ) -> bool {
        loop {
            tokio::select! {
                biased;
                _ = shutdown.changed() => return false,
                permit = out.reserve() => match permit {
                    Ok(permit) => {
                        permit.send(batch);
                        return true;
                    }
                    Err(_) => return false,
                },
                Some(ack) = self.ack_rx.recv() => {
                    self.on_ack(ack);
                    while let Ok(ack) = self.ack_rx.try_recv() {
                        self.on_ack(ack);
                    }
                    if let Err(e) = self.store_checkpoints().await {
                        warn!(source = %self.name, error = %e, "cannot store checkpoints; will retry");
                    }
                }
            }
        }
    }

    fn on_ack(&mut self, ack: Ack) {
        metrics::counter!(m::BATCHES_ACKNOWLEDGED_TOTAL, "status" => status_label(ack.status))
            .increment(1);
        let Some(path) = self.in_flight.remove(&ack.batch_id) else {
            return;
        };
        let Some(file) = self.files.get_mut(&path) else {
            return;
        };
        match file.tracker.ack(ack.batch_id, ack.status) {
            AckEffect::Failed => {
                warn!(source = %self.name, file = %file.origin.path, offset = file.tracker.committed(), "delivery failed; reading again from the checkpoint");
                file.read_pos = file.tracker.committed();
                file.read_anchor = file.tracker.committed_anchor();
                let abandoned: Vec<u64> = self
                    .in_flight
                    .iter()
                    .filter(|(_, p)| **p == path)
                    .map(|(id, _)| *id)
                    .collect();
                for id in abandoned {
                    self.in_flight.remove(&id);
                }
            }
            AckEffect::Advanced(_) | AckEffect::Waiting | AckEffect::Unknown => {}
        }
    }

    /// Writes every checkpoint that moved since the last write, in one transaction.
    async fn store_checkpoints(&mut self) -> Result<(), crate::CheckpointError> {
        let now = unix_now();
        let changed: Vec<(String, Checkpoint)> = self
            .files
            .values()
            .filter(|f| Some(f.tracker.committed()) != f.stored)
            .map(|f| {
                (
                    f.key.clone(),
                    Checkpoint {
                        offset: f.tracker.committed(),
                        anchor: f.tracker.committed_anchor().to_string(),
                        updated: now,
                    },
                )
            })
            .collect();
        if changed.is_empty() {
            return Ok(());
        }
        let store = self.store.clone();
        let written = changed.clone();
        tokio::task::spawn_blocking(move || {
            let updates: Vec<(&str, &Checkpoint)> =
                written.iter().map(|(k, c)| (k.as_str(), c)).collect();
            store.write(&updates, &[])
        })
        .await
        .expect("checkpoint writer panicked")?;
        for (key, cp) in changed {
            if let Some(f) = self.files.values_mut().find(|f| f.key == key) {
                f.stored = Some(cp.offset);
            }
        }
        Ok(())
    }

    async fn poll(
        &mut self,
        out: &mpsc::Sender<RecordBatch>,
        shutdown: &mut watch::Receiver<bool>,
    ) {
        let root = self.config.path.clone();
        let found = match tokio::task::spawn_blocking(move || list_json_files(&root)).await {
            Ok(Ok(found)) => found,
            Ok(Err(e)) => {
                warn!(source = %self.name, path = %self.config.path.display(), error = %e, "cannot list the directory");
                return;
            }
            Err(e) => {
                warn!(source = %self.name, error = %e, "directory listing failed");
                return;
            }
        };
        let first_scan = std::mem::take(&mut self.first_scan);
        let present: HashSet<&PathBuf> = found.iter().map(|(p, _)| p).collect();
        let gone: Vec<PathBuf> = self
            .files
            .keys()
            .filter(|p| !present.contains(p))
            .cloned()
            .collect();
        for path in gone {
            if let Some(f) = self.files.get(&path).filter(|f| f.tracker.is_idle()) {
                info!(source = %self.name, file = %f.origin.path, "file removed; forgetting its checkpoint");
                let _ = self.store.write(&[], &[&f.key]);
                self.files.remove(&path);
            }
        }
        for (path, len) in found {
            if *shutdown.borrow() {
                return;
            }
            if !self.files.contains_key(&path) {
                let state = self.discover(&path, len, first_scan).await;
                self.files.insert(path.clone(), state);
            }
            let file = self.files.get_mut(&path).expect("just inserted");
            if len < file.read_pos {
                warn!(source = %self.name, file = %file.origin.path, size = len, offset = file.read_pos, "file shrank; reading it from the start");
                file.restart("truncated");
            }
            if len > file.read_pos {
                self.read_new(&path, len, out, shutdown).await;
            }
        }
    }

    async fn discover(&mut self, path: &Path, len: u64, first_scan: bool) -> FileState {
        let rel = path
            .strip_prefix(&self.config.path)
            .unwrap_or(path)
            .display()
            .to_string();
        let key = format!("{}/{}", self.name, rel);
        metrics::counter!(m::SOURCE_FILES_DISCOVERED_TOTAL).increment(1);
        let resume = match self.store.get(&key).ok().flatten() {
            Some(cp) => match Anchor::parse(&cp.anchor) {
                Some(anchor) if cp.offset <= len && anchor_holds(path, cp.offset, anchor).await => {
                    Some((cp.offset, anchor))
                }
                _ => {
                    warn!(source = %self.name, file = %rel, offset = cp.offset, "file rewritten since its checkpoint; reading it from the start");
                    metrics::counter!(m::SOURCE_RESETS_TOTAL, "reason" => "rewritten").increment(1);
                    None
                }
            },
            None if first_scan && self.config.start_at == StartAt::End => {
                let p = path.to_owned();
                tokio::task::spawn_blocking(move || end_of_records(&p))
                    .await
                    .ok()
            }
            None => None,
        };
        let (start, anchor) = resume.unwrap_or((0, Anchor::START));
        debug!(source = %self.name, file = %rel, offset = start, "following file");
        FileState {
            key,
            path: path.to_owned(),
            origin: Arc::new(Origin {
                source: self.name.clone(),
                path: rel.into(),
            }),
            read_pos: start,
            read_anchor: anchor,
            tracker: RangeTracker::new(start, anchor),
            stored: resume.map(|(offset, _)| offset),
        }
    }

    /// Reads `path` from its read position up to `len`, sending batches of records.
    async fn read_new(
        &mut self,
        path: &PathBuf,
        len: u64,
        out: &mpsc::Sender<RecordBatch>,
        shutdown: &mut watch::Receiver<bool>,
    ) {
        let chunk = self.config.read_chunk_bytes;
        let mut want = chunk;
        loop {
            let file = self.files.get_mut(path).expect("known file");
            let pos = file.read_pos;
            let available = len.saturating_sub(pos);
            if available == 0 || *shutdown.borrow() {
                return;
            }
            let n = (available as usize).min(want);
            // Read the anchor's bytes too, to notice a rewrite before trusting the offset.
            let anchor = file.read_anchor;
            let back = anchor.len as usize;
            let mut data = match read_at(&file.path, pos - back as u64, back + n).await {
                Ok(d) => d,
                Err(e) => {
                    warn!(source = %self.name, file = %file.origin.path, offset = pos, error = %e, "read failed; will retry");
                    return;
                }
            };
            if data.len() < back || !anchor.matches(&data[..back]) {
                warn!(source = %self.name, file = %file.origin.path, offset = pos, "file rewritten under us; reading it from the start");
                file.restart("rewritten");
                want = chunk;
                continue;
            }
            data.drain(..back);
            metrics::counter!(m::SOURCE_BYTES_READ_TOTAL).increment(data.len() as u64);
            let ex = extract(&data, pos == 0);
            for e in &ex.errors {
                warn!(source = %self.name, file = %file.origin.path, offset = pos + e.at as u64, error = %e.kind, "malformed data between records skipped");
                metrics::counter!(m::SOURCE_EXTRACT_ERRORS_TOTAL, "reason" => e.kind.reason())
                    .increment(1);
            }
            let end = pos + ex.consumed as u64;
            let end_anchor = Anchor::of(&data[..ex.consumed]);
            if !ex.records.is_empty() {
                let batch_id = self.next_batch;
                self.next_batch += 1;
                file.tracker.push_batch(batch_id, end, end_anchor);
                file.read_pos = end;
                file.read_anchor = end_anchor;
                self.in_flight.insert(batch_id, path.clone());
                let batch = RecordBatch {
                    origin: file.origin.clone(),
                    data: Bytes::from(data),
                    start: pos,
                    records: ex.records,
                    finalizer: Finalizer::new(batch_id, self.ack_tx.clone()),
                };
                if !self.send(out, batch, shutdown).await {
                    return;
                }
            } else if ex.consumed > 0 {
                file.skip_to(end, end_anchor);
            }
            let file = self.files.get_mut(path).expect("known file");
            if ex.complete {
                return;
            }
            match ex.partial {
                // The record goes on past what was read: read more at once, up to the limit.
                Some(start) if ex.consumed == 0 && (n as u64) < available => {
                    if want >= self.config.max_record_bytes {
                        let rec_start = pos + start as u64;
                        match skip_record(&file.path, rec_start, len).await {
                            Some((rec_end, rec_anchor)) => {
                                warn!(source = %self.name, file = %file.origin.path, offset = rec_start, bytes = rec_end - rec_start, limit = self.config.max_record_bytes, "record larger than max_record_bytes skipped");
                                metrics::counter!(m::SOURCE_EXTRACT_ERRORS_TOTAL, "reason" => "record_too_large").increment(1);
                                file.skip_to(rec_end, rec_anchor);
                                want = chunk;
                            }
                            None => return, // not complete yet
                        }
                    } else {
                        want = (want * 2).min(self.config.max_record_bytes);
                    }
                }
                Some(_) if (n as u64) >= available => return, // wait for the writer
                _ if ex.consumed == 0 => return,              // only whitespace so far
                _ => want = chunk,
            }
        }
    }
}

fn status_label(s: flowgate_core::BatchStatus) -> &'static str {
    match s {
        flowgate_core::BatchStatus::Delivered => "delivered",
        flowgate_core::BatchStatus::Dropped => "dropped",
        flowgate_core::BatchStatus::Failed => "failed",
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

async fn read_at(path: &Path, offset: u64, len: usize) -> std::io::Result<Vec<u8>> {
    let path = path.to_owned();
    tokio::task::spawn_blocking(move || {
        let file = std::fs::File::open(&path)?;
        let mut buf = vec![0u8; len];
        let mut filled = 0;
        while filled < len {
            match file.read_at(&mut buf[filled..], offset + filled as u64)? {
                0 => break,
                n => filled += n,
            }
        }
        buf.truncate(filled);
        Ok(buf)
    })
    .await
    .map_err(std::io::Error::other)?
}

/// Streams over an oversized record starting at `start`; returns the offset just after
/// it and that offset's anchor.
async fn skip_record(path: &Path, start: u64, len: u64) -> Option<(u64, Anchor)> {
    let path = path.to_owned();
    tokio::task::spawn_blocking(move || {
        let file = std::fs::File::open(&path).ok()?;
        let mut scanner = BraceScanner::default();
        let mut buf = vec![0u8; 1 << 20];
        let mut pos = start;
        while pos < len {
            let n = file.read_at(&mut buf, pos).ok()?;
            if n == 0 {
                return None;
            }
            if let Some(end) = scanner.scan(&buf[..n]) {
                let end_abs = pos + end as u64;
                let from = end_abs
                    .saturating_sub(crate::anchor::ANCHOR_BYTES as u64)
                    .max(start);
                let mut tail = vec![0u8; (end_abs - from) as usize];
                file.read_exact_at(&mut tail, from).ok()?;
                return Some((end_abs, Anchor::of(&tail)));
            }
            pos += n as u64;
        }
        None
    })
    .await
    .ok()
    .flatten()
}

/// True if the `anchor.len` bytes before `offset` still hash to the anchor.
async fn anchor_holds(path: &Path, offset: u64, anchor: Anchor) -> bool {
    let back = anchor.len as u64;
    match read_at(path, offset - back.min(offset), back as usize).await {
        Ok(bytes) => anchor.matches(&bytes),
        Err(_) => false,
    }
}

/// The offset just after the last complete record of a file, and its anchor
/// (for `start_at = "end"`).
fn end_of_records(path: &Path) -> (u64, Anchor) {
    let Ok(data) = std::fs::read(path) else {
        return (0, Anchor::START);
    };
    let consumed = extract(&data, true).consumed;
    (consumed as u64, Anchor::of(&data[..consumed]))
}

/// Every `*.json` file under `root` with its length, sorted by path (hourly paths sort by time).
fn list_json_files(root: &Path) -> std::io::Result<Vec<(PathBuf, u64)>> {
    let mut out = Vec::new();
    let mut dirs = vec![root.to_owned()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir)? {
            let entry = entry?;
            let ty = entry.file_type()?;
            let path = entry.path();
            if ty.is_dir() {
                dirs.push(path);
            } else if ty.is_file()
                && path
                    .extension()
                    .is_some_and(|e| e.eq_ignore_ascii_case("json"))
            {
                // The file may vanish between listing and stat (retention): skip it.
                if let Ok(meta) = entry.metadata() {
                    out.push((path, meta.len()));
                }
            }
        }
    }
    out.sort();
    Ok(out)
}
