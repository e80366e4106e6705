//! The transform stage: record batches in, event batches out to every sink.
//!
//! flatten → filter → duplicate suppression → aggregation (held up to an interval) →
//! enrichment → each sink's channel. It runs on a blocking thread (it is CPU work) and
//! waits on its channel, the aggregation deadline and shutdown through the runtime.

use flowgate_core::dead_letter::{self, Entry, What};
use flowgate_core::{
    metric_names as m, BatchStatus, Delivery, EventBatch, Finalizer, Origin, RecordBatch,
};
use flowgate_transform::{Aggregator, Dedup, Enricher, Filter, Flattener};
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::{mpsc, watch};
use tracing::warn;

/// Problems are logged once per file and reason, not once per occurrence.
const MAX_REMEMBERED_PROBLEMS: usize = 10_000;

pub struct Transform {
    pub filter: Filter,
    pub dedup: Option<Dedup>,
    pub aggregator: Option<Aggregator>,
    pub enricher: Enricher,
    /// Each sink's name (for its channel-depth gauge) and channel.
    pub sinks: Vec<(String, mpsc::Sender<Delivery>)>,
    /// Events per batch at most (`pipeline.max_batch_events`): bounds a huge record.
    pub max_batch_events: usize,
}

enum Next {
    Batch(Option<RecordBatch>),
    Deadline,
    Draining,
}

impl Transform {
    /// Runs until the input closes. Once `shutdown` turns true, aggregation stops
    /// holding events back, so that everything read can be delivered before the drain
    /// timeout.
    pub fn run(
        mut self,
        mut input: mpsc::Receiver<RecordBatch>,
        mut shutdown: watch::Receiver<bool>,
        runtime: tokio::runtime::Handle,
    ) {
        let _alive = flowgate_core::health::FailedIfPanicking("transform");
        let mut flattener = Flattener::new();
        let mut reported: HashSet<(Arc<str>, &'static str)> = HashSet::new();
        let mut draining = false;
        loop {
            let deadline = self.aggregator.as_ref().and_then(Aggregator::deadline);
            let next = runtime.block_on(async {
                tokio::select! {
                    batch = input.recv() => Next::Batch(batch),
                    _ = tokio::time::sleep_until(deadline.unwrap_or_else(Instant::now).into()), if deadline.is_some() => Next::Deadline,
                    _ = shutdown.wait_for(|s| *s), if !draining => Next::Draining,
                }
            });
            metrics::gauge!(m::CHANNEL_DEPTH_BATCHES, "channel" => "records")
                .set((input.max_capacity() - input.capacity()) as f64);
            let batch = match next {
                Next::Batch(Some(batch)) => batch,
                Next::Batch(None) => break,
                Next::Deadline => {
                    self.flush();
                    continue;
                }
                Next::Draining => {
                    draining = true;
                    self.flush();
                    continue;
                }
            };
            let origin = batch.origin.clone();
            // For the dead-letter file: a record problem's bytes are its record's (the
            // spans are copied only when there is a file to write them to).
            let (data, start) = (batch.data.clone(), batch.start);
            let spans = match dead_letter::enabled() {
                true => batch.records.clone(),
                false => Vec::new(),
            };
            let on_problem = |offset: u64, problem: &flowgate_transform::Problem| {
                if reported.len() >= MAX_REMEMBERED_PROBLEMS {
                    reported.clear();
                }
                if reported.insert((origin.path.clone(), problem.kind.reason())) {
                    warn!(source = %origin.source, file = %origin.path, offset, "{problem} (further problems of this kind in this file are only counted)");
                }
                if dead_letter::enabled() {
                    let record = (|| {
                        let at = offset.checked_sub(start)? as usize;
                        let i = spans.binary_search_by_key(&at, |s| s.start).ok()?;
                        data.get(spans[i].clone())
                    })();
                    let record = record.unwrap_or_default();
                    dead_letter::write(problem_entry(&origin, offset, problem, record));
                }
            };
            // A record of millions of tuples goes on in parts while it is flattened, so
            // that it holds a part's memory at a time (the sinks' channels hold back).
            let max_events = self.max_batch_events;
            let (events, finalizer) =
                flattener.flatten_batch_in_parts(batch, max_events, on_problem, |part, f| {
                    self.process(part, f.clone(), draining)
                });
            self.process(events, finalizer, draining);
        }
        self.flush();
    }

    /// Filters, suppresses duplicates and aggregates one batch of events, and delivers
    /// what is due.
    fn process(&mut self, mut events: EventBatch, finalizer: Finalizer, draining: bool) {
        if let Some(newest) = events.events.iter().map(|e| e.time_ms).max() {
            finalizer.note_time(newest);
        }
        self.filter.apply(&mut events);
        // A replay's first copies may never have been delivered: suppressing them
        // as duplicates would lose them (at least once means a replay may repeat).
        if let (Some(dedup), None) = (&mut self.dedup, events.replay) {
            dedup.apply(&mut events);
        }
        match &mut self.aggregator {
            Some(aggregator) => {
                aggregator.add(events, finalizer);
                if draining || aggregator.is_due(Instant::now()) {
                    self.flush();
                }
            }
            None => self.deliver(events, finalizer),
        }
    }

    /// Sends the aggregation summaries held so far.
    fn flush(&mut self) {
        let Some(aggregator) = &mut self.aggregator else {
            return;
        };
        for (events, finalizer) in aggregator.flush() {
            self.deliver(events, finalizer);
        }
    }

    /// Enriches a batch and hands it to every sink.
    fn deliver(&mut self, mut events: EventBatch, finalizer: Finalizer) {
        if events.events.is_empty() {
            // Nothing to deliver: the records are done with.
            finalizer.update(BatchStatus::Delivered);
            return;
        }
        self.enricher.enrich(&mut events);
        let batch = Arc::new(events);
        // Every sink gets a clone of the finalizer; the last sink takes the original.
        let mut finalizer = Some(finalizer);
        let count = self.sinks.len();
        for (i, (name, sink)) in self.sinks.iter().enumerate() {
            let handle = if i + 1 == count {
                finalizer.take().expect("original finalizer")
            } else {
                finalizer.as_ref().expect("original finalizer").clone()
            };
            let delivery = Delivery {
                batch: batch.clone(),
                finalizer: handle,
            };
            if sink.blocking_send(delivery).is_err() {
                // The sink is gone; the dropped finalizer reports the batch failed.
                warn!(sink = %name, "a sink stopped early; its batches will be read again on restart");
                flowgate_core::health::task_failed(&format!("sink.{name}"));
            }
            metrics::gauge!(m::CHANNEL_DEPTH_BATCHES, "channel" => format!("sink.{name}"))
                .set((sink.max_capacity() - sink.capacity()) as f64);
        }
    }
}

/// The dead-letter entry of a record or tuple the flattener skipped, in the record
/// `record` (at `offset`): the tuple's text, or the whole record.
pub fn problem_entry<'a>(
    origin: &'a Origin,
    offset: u64,
    problem: &'a flowgate_transform::Problem,
    record: &'a [u8],
) -> Entry<'a> {
    let data = match (&problem.raw, problem.tuple) {
        (Some(tuple), _) => tuple.as_bytes(),
        (None, None) => record,
        (None, Some(_)) => &[], // a tuple that is not a string: nothing to copy
    };
    Entry {
        source: &origin.source,
        object: &origin.path,
        offset,
        what: match problem.tuple {
            Some(_) => What::Tuple,
            None => What::Record,
        },
        tuple: problem.tuple,
        reason: problem.kind.reason(),
        detail: &problem.detail,
        data,
    }
}
