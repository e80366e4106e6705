//! What moves through the channels.

use crate::ack::Finalizer;
use crate::enrichment::{AddressTable, Enrichment};
use crate::event::{FlowEvent, FlowGroup, RecordContext};
use bytes::Bytes;
use std::ops::Range;
use std::sync::Arc;

/// Where a batch came from: shown in every log line about its data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    /// The configured source name (a friendly name, e.g. `prod-storage`).
    pub source: Arc<str>,
    /// File path or blob name.
    pub path: Arc<str>,
    /// The source's optional `subscription_tag`, carried into every event.
    pub subscription_tag: Option<Arc<str>>,
}

/// Source → transform: complete records as raw bytes, not copied out of the read buffer.
#[derive(Debug)]
pub struct RecordBatch {
    pub origin: Arc<Origin>,
    /// The bytes read, starting at absolute byte offset `start` of the file or blob.
    pub data: Bytes,
    pub start: u64,
    /// Each record's span inside `data`.
    pub records: Vec<Range<usize>>,
    pub finalizer: Finalizer,
    /// Set when these bytes were sent before and are read again (a delivery failed, or the
    /// object was rewritten before one succeeded): the volume controls may hold or
    /// remember their first copies, and must not take them for duplicates. The number
    /// tells the copies read in different rounds apart.
    pub replay: Option<u32>,
}

/// Flat events with their shared record and group context.
#[derive(Debug)]
pub struct EventBatch {
    pub origin: Arc<Origin>,
    pub records: Vec<RecordContext>,
    pub groups: Vec<FlowGroup>,
    pub events: Vec<FlowEvent>,
    /// One per event when `[enrich]` is on, else empty.
    pub enrichment: Vec<Enrichment>,
    /// The addresses the enrichment says something about (`Enrichment::src`/`dst`
    /// index it), shared with other batches.
    pub addresses: Option<Arc<AddressTable>>,
    /// One per event when the events are aggregation summaries, else empty.
    pub summaries: Vec<Summary>,
    /// Copied from the [`RecordBatch`] these events came from.
    pub replay: Option<u32>,
}

/// What an aggregated event stands for: the updates of one flow merged in an interval.
/// The event's own `time_ms` is the first one seen; counters are the sums.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Summary {
    pub last_ms: u64,
    /// Flow tuples merged into this event.
    pub count: u32,
}

/// Transform → sink: a batch shared by every sink, and this sink's acknowledgement handle.
#[derive(Debug)]
pub struct Delivery {
    pub batch: Arc<EventBatch>,
    pub finalizer: Finalizer,
}

impl EventBatch {
    pub fn new(origin: Arc<Origin>) -> Self {
        EventBatch {
            origin,
            records: Vec::new(),
            groups: Vec::new(),
            events: Vec::new(),
            enrichment: Vec::new(),
            addresses: None,
            summaries: Vec::new(),
            replay: None,
        }
    }

    /// The group and record of event `event`.
    pub fn context_of(&self, event: &FlowEvent) -> (&FlowGroup, &RecordContext) {
        let group = &self.groups[event.group as usize];
        (group, &self.records[group.record as usize])
    }
}
