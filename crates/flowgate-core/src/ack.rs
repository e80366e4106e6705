//! Batch acknowledgements, after Vector's `BatchNotifier`.
//!
//! A source creates one [`Finalizer`] per batch it sends. Every stage that splits or
//! copies a batch clones the finalizer; the sink calls [`Finalizer::update`] once it has
//! written and flushed its part. When the last clone is gone, one [`Ack`] carrying the
//! worst status reported by any clone goes back to the source. A clone dropped without
//! an update (a stage that failed or was cancelled) counts as [`BatchStatus::Failed`],
//! so an unfinished batch can never advance a checkpoint.

use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;
use tokio::sync::mpsc;

/// Outcome of a batch; ordered from best to worst so the worst one wins.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
#[repr(u8)]
pub enum BatchStatus {
    /// Every event was written and flushed (or acknowledged by the broker).
    Delivered = 0,
    /// Some events were deliberately dropped by a configured policy and counted.
    Dropped = 1,
    /// Delivery failed or was abandoned; the checkpoint must not move past this batch.
    Failed = 2,
}

impl BatchStatus {
    fn from_u8(v: u8) -> Self {
        match v {
            0 => BatchStatus::Delivered,
            1 => BatchStatus::Dropped,
            _ => BatchStatus::Failed,
        }
    }

    /// True if the source may advance its checkpoint over this batch.
    pub fn is_final(self) -> bool {
        self != BatchStatus::Failed
    }
}

/// What the source receives when a batch is finished.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ack {
    pub batch_id: u64,
    pub status: BatchStatus,
    /// Epoch ms of the newest flow tuple in the batch (0: none), for the lag metric.
    pub newest_ms: u64,
}

/// The sending side of a source's acknowledgement channel.
pub type AckSender = mpsc::UnboundedSender<Ack>;

struct Shared {
    batch_id: u64,
    status: AtomicU8,
    newest_ms: AtomicU64,
    tx: Option<AckSender>,
    /// The batches merged into this one ([`Finalizer::merged`]): each gets its status.
    parents: Vec<Finalizer>,
}

impl Drop for Shared {
    fn drop(&mut self) {
        let status = BatchStatus::from_u8(self.status.load(Ordering::Acquire));
        for parent in std::mem::take(&mut self.parents) {
            parent.update(status);
        }
        if let Some(tx) = &self.tx {
            // The source may already be gone (shutdown): nothing left to tell.
            let _ = tx.send(Ack {
                batch_id: self.batch_id,
                status,
                newest_ms: self.newest_ms.load(Ordering::Acquire),
            });
        }
    }
}

/// One handle on a batch's acknowledgement; see the module docs.
pub struct Finalizer {
    shared: Arc<Shared>,
    reported: bool,
}

impl Finalizer {
    /// A finalizer whose [`Ack`] is sent on `tx` with `batch_id`.
    pub fn new(batch_id: u64, tx: AckSender) -> Self {
        Self::with_sender(batch_id, Some(tx))
    }

    /// A finalizer nobody listens to (tests, `flowgate convert`).
    pub fn detached() -> Self {
        Self::with_sender(0, None)
    }

    /// One finalizer for a batch made of several (aggregation): its outcome becomes
    /// each parent's.
    pub fn merged(parents: Vec<Finalizer>) -> Self {
        let mut f = Self::with_sender(0, None);
        Arc::get_mut(&mut f.shared).expect("new").parents = parents;
        f
    }

    fn with_sender(batch_id: u64, tx: Option<AckSender>) -> Self {
        Finalizer {
            shared: Arc::new(Shared {
                batch_id,
                status: AtomicU8::new(BatchStatus::Delivered as u8),
                newest_ms: AtomicU64::new(0),
                tx,
                parents: Vec::new(),
            }),
            reported: false,
        }
    }

    pub fn batch_id(&self) -> u64 {
        self.shared.batch_id
    }

    /// Notes the time of a tuple in the batch; the ack carries the newest.
    pub fn note_time(&self, epoch_ms: u64) {
        self.shared.newest_ms.fetch_max(epoch_ms, Ordering::AcqRel);
    }

    /// Report this handle's outcome; the batch's status becomes the worst of all reports.
    pub fn update(mut self, status: BatchStatus) {
        self.record(status);
    }

    fn record(&mut self, status: BatchStatus) {
        self.shared.status.fetch_max(status as u8, Ordering::AcqRel);
        self.reported = true;
    }
}

impl Clone for Finalizer {
    fn clone(&self) -> Self {
        Finalizer {
            shared: Arc::clone(&self.shared),
            reported: false,
        }
    }
}

impl Drop for Finalizer {
    fn drop(&mut self) {
        if !self.reported {
            self.record(BatchStatus::Failed);
        }
    }
}

impl std::fmt::Debug for Finalizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Finalizer")
            .field("batch_id", &self.shared.batch_id)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn channel() -> (AckSender, mpsc::UnboundedReceiver<Ack>) {
        mpsc::unbounded_channel()
    }

    #[test]
    fn delivered_when_every_clone_reports_delivered() {
        let (tx, mut rx) = channel();
        let f = Finalizer::new(7, tx);
        let g = f.clone();
        f.update(BatchStatus::Delivered);
        assert!(rx.try_recv().is_err(), "ack must wait for the last clone");
        g.update(BatchStatus::Delivered);
        assert_eq!(
            rx.try_recv().unwrap(),
            Ack {
                batch_id: 7,
                status: BatchStatus::Delivered,
                newest_ms: 0,
            }
        );
    }

    #[test]
    fn worst_status_wins() {
        let (tx, mut rx) = channel();
        let f = Finalizer::new(1, tx);
        let g = f.clone();
        g.update(BatchStatus::Failed);
        f.update(BatchStatus::Delivered);
        assert_eq!(rx.try_recv().unwrap().status, BatchStatus::Failed);
    }

    #[test]
    fn merged_reports_to_every_parent() {
        let (tx, mut rx) = channel();
        let merged = Finalizer::merged(vec![
            Finalizer::new(1, tx.clone()),
            Finalizer::new(2, tx.clone()),
        ]);
        let copy = merged.clone();
        merged.update(BatchStatus::Delivered);
        assert!(rx.try_recv().is_err());
        copy.update(BatchStatus::Dropped);
        let mut acks = vec![rx.try_recv().unwrap(), rx.try_recv().unwrap()];
        acks.sort_by_key(|a| a.batch_id);
        assert_eq!(
            acks,
            [1, 2].map(|batch_id| Ack {
                batch_id,
                status: BatchStatus::Dropped,
                newest_ms: 0,
            })
        );
        drop(Finalizer::merged(vec![Finalizer::new(3, tx)]));
        assert_eq!(rx.try_recv().unwrap().status, BatchStatus::Failed);
    }

    #[test]
    fn dropped_without_report_is_failed() {
        let (tx, mut rx) = channel();
        let f = Finalizer::new(3, tx);
        drop(f);
        assert_eq!(rx.try_recv().unwrap().status, BatchStatus::Failed);
    }
}
