//! Which byte ranges of one file or blob are delivered, and how far the checkpoint may go.
//!
//! Batches are acknowledged out of order (sinks run concurrently), but the checkpoint
//! only moves over a contiguous run of delivered ranges from its current position: an
//! acknowledged later range never skips an unacknowledged earlier one.

use crate::anchor::Anchor;
use flowgate_core::BatchStatus;
use std::collections::VecDeque;

#[derive(Debug)]
struct Range {
    /// `None` for bytes skipped without a batch (the head, garbage): done at once.
    batch_id: Option<u64>,
    end: u64,
    anchor: Anchor,
    status: Option<BatchStatus>,
}

#[derive(Debug)]
pub(crate) struct RangeTracker {
    committed: u64,
    committed_anchor: Anchor,
    pending: VecDeque<Range>,
}

/// What an acknowledgement did.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum AckEffect {
    /// The checkpoint moved to this offset.
    Advanced(u64),
    /// Recorded; an earlier range is still outstanding.
    Waiting,
    /// The batch failed: everything after the checkpoint must be read again.
    Failed,
    /// Not a batch of this tracker (already abandoned by a rewind).
    Unknown,
}

impl RangeTracker {
    pub fn new(committed: u64, anchor: Anchor) -> Self {
        RangeTracker {
            committed,
            committed_anchor: anchor,
            pending: VecDeque::new(),
        }
    }

    pub fn committed(&self) -> u64 {
        self.committed
    }

    /// The anchor of the committed offset, for the checkpoint.
    pub fn committed_anchor(&self) -> Anchor {
        self.committed_anchor
    }

    pub fn is_idle(&self) -> bool {
        self.pending.is_empty()
    }

    pub fn push_batch(&mut self, batch_id: u64, end: u64, anchor: Anchor) {
        self.pending.push_back(Range {
            batch_id: Some(batch_id),
            end,
            anchor,
            status: None,
        });
    }

    /// Bytes up to `end` need no delivery; they count as delivered once reached.
    pub fn push_skip(&mut self, end: u64, anchor: Anchor) {
        self.pending.push_back(Range {
            batch_id: None,
            end,
            anchor,
            status: Some(BatchStatus::Delivered),
        });
        self.advance();
    }

    pub fn ack(&mut self, batch_id: u64, status: BatchStatus) -> AckEffect {
        let Some(range) = self
            .pending
            .iter_mut()
            .find(|r| r.batch_id == Some(batch_id))
        else {
            return AckEffect::Unknown;
        };
        if !status.is_final() {
            // Forget everything in flight; the caller rewinds to `committed`.
            self.pending.clear();
            return AckEffect::Failed;
        }
        range.status = Some(status);
        let before = self.committed;
        self.advance();
        if self.committed != before {
            AckEffect::Advanced(self.committed)
        } else {
            AckEffect::Waiting
        }
    }

    fn advance(&mut self) {
        while let Some(front) = self.pending.front() {
            if front.status.is_none() {
                break;
            }
            self.committed = front.end;
            self.committed_anchor = front.anchor;
            self.pending.pop_front();
        }
    }

    /// Start over at the beginning (object rewritten); acks in flight become unknown.
    pub fn reset(&mut self) {
        self.pending.clear();
        self.committed = 0;
        self.committed_anchor = Anchor::START;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use BatchStatus::*;

    #[test]
    fn later_ack_never_skips_an_earlier_range() {
        let mut t = RangeTracker::new(0, Anchor::START);
        t.push_skip(12, Anchor::of(b"{\"records\":["));
        assert_eq!(t.committed_anchor().len, 12);
        assert_eq!(t.committed(), 12);
        t.push_batch(1, 100, Anchor::START);
        t.push_batch(2, 200, Anchor::START);
        t.push_batch(3, 300, Anchor::START);
        assert_eq!(t.ack(2, Delivered), AckEffect::Waiting);
        assert_eq!(t.ack(3, Delivered), AckEffect::Waiting);
        assert_eq!(t.committed(), 12);
        assert_eq!(t.ack(1, Delivered), AckEffect::Advanced(300));
        assert!(t.is_idle());
        assert_eq!(t.ack(1, Delivered), AckEffect::Unknown);
    }

    #[test]
    fn failure_holds_the_checkpoint_and_drops_what_is_in_flight() {
        let mut t = RangeTracker::new(50, Anchor::START);
        t.push_batch(1, 100, Anchor::START);
        t.push_batch(2, 200, Anchor::START);
        assert_eq!(t.ack(1, Delivered), AckEffect::Advanced(100));
        assert_eq!(t.ack(2, Failed), AckEffect::Failed);
        assert_eq!(t.committed(), 100);
        assert!(t.is_idle());
        assert_eq!(t.ack(2, Delivered), AckEffect::Unknown);
    }

    #[test]
    fn dropped_counts_as_final() {
        let mut t = RangeTracker::new(0, Anchor::START);
        t.push_batch(9, 10, Anchor::START);
        assert_eq!(t.ack(9, Dropped), AckEffect::Advanced(10));
    }
}
