//! The transform stage on arbitrary bytes, as the pipeline runs it: the whole input as
//! one record, and the records `extract` finds in it (as a replay, so that the
//! aggregator keeps a second window), through `Flattener::flatten_batch_in_parts` in
//! parts of at most `MAX_EVENTS` events, duplicate suppression, enrichment (service
//! names, address classes, rule kinds and the fixture asset inventory, with a tiny
//! address cache so that epochs overflow) and aggregation; every part is encoded in CEF,
//! LEEF and JSON, bare and behind RFC 5424 and RFC 3164 headers, newline-framed and
//! octet-counted, and the framing must hold: one line per event, no raw newline inside a
//! message.
#![no_main]

use bytes::Bytes;
use flowgate_core::{BatchStatus, EventBatch, Finalizer, Origin, RecordBatch};
use flowgate_fuzz::{check_batch, Encoders};
use flowgate_source::extract::extract;
use flowgate_transform::{Aggregator, Dedup, EnrichConfig, Enricher, Flattener};
use libfuzzer_sys::fuzz_target;
use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

/// The asset inventory of the fixtures, when the tree is there (it is read per input, as
/// the enricher is built per input: nothing carries over from one input to the next).
const INVENTORY: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/fixtures/assets.csv");

/// Events per part: small, so that records of a few tuples are split across parts.
const MAX_EVENTS: usize = 7;

/// What each part goes through after flattening, in the pipeline's order.
struct Stages {
    encoders: Encoders,
    dedup: Dedup,
    enricher: Enricher,
    aggregator: Aggregator,
}

impl Stages {
    /// Checks and encodes a part, then suppresses duplicates, enriches (a copy of what is
    /// delivered unaggregated) and aggregates it.
    fn process(&mut self, mut events: EventBatch, finalizer: Finalizer, replay: Option<u32>) {
        assert_eq!(events.replay, replay, "a part keeps its batch's replay flag");
        check_batch(&events);
        self.encoders.check(&events);
        self.dedup.apply(&mut events);
        check_batch(&events);
        self.enricher.enrich(&mut events);
        check_batch(&events);
        assert_eq!(events.enrichment.len(), events.events.len(), "one enrichment per event");
        self.encoders.check(&events);
        events.enrichment.clear();
        events.addresses = None;
        self.aggregator.add(events, finalizer);
    }
}

fuzz_target!(|data: &[u8]| {
    let data = Bytes::copy_from_slice(data);
    let origin = Arc::new(Origin {
        source: "fuzz".into(),
        path: "resourceId=/SUBSCRIPTIONS/S/y=2024/PT1H.json".into(),
        subscription_tag: Some("prod".into()),
    });
    let found = extract(&data, true).records;
    let batches: [(u64, Vec<Range<usize>>, Option<u32>); 2] =
        [(0, vec![0..data.len()], None), (0, found, Some(1))];

    let inventory = std::path::Path::new(INVENTORY);
    let enricher = EnrichConfig {
        service_names: true,
        address_classes: true,
        rule_kinds: true,
        inventory: inventory.exists().then(|| inventory.to_path_buf()),
        cache_size: 8,
        ..EnrichConfig::default()
    }
    .build()
    .expect("enricher");
    let mut stages = Stages {
        encoders: Encoders::new(),
        dedup: Dedup::new(64),
        enricher,
        aggregator: Aggregator::new(Duration::from_secs(3600), 1 << 20),
    };

    for (start, records, replay) in batches {
        let n_records = records.len();
        let batch = RecordBatch {
            origin: origin.clone(),
            data: data.clone(),
            start,
            records,
            finalizer: Finalizer::detached(),
            replay,
        };
        let mut flattener = Flattener::new();
        let mut problems = 0u64;
        let mut parts = 0usize;
        let mut produced = 0u64;
        let (last, finalizer) = flattener.flatten_batch_in_parts(
            batch,
            MAX_EVENTS,
            |offset, p| {
                assert!(offset <= data.len() as u64, "problem offset {offset} past the input");
                let _ = p.to_string();
                problems += 1;
            },
            |part, finalizer| {
                assert_eq!(
                    part.events.len(),
                    MAX_EVENTS,
                    "a part handed on before the last is full"
                );
                parts += 1;
                produced += part.events.len() as u64;
                stages.process(part, finalizer.clone(), replay);
            },
        );
        assert!(
            last.events.len() <= MAX_EVENTS,
            "the last part holds {} events, more than {MAX_EVENTS}",
            last.events.len()
        );
        produced += last.events.len() as u64;
        let stats = &flattener.stats;
        assert_eq!(
            stats.tuples, produced,
            "tuples counted vs events produced in {} parts",
            parts + 1
        );
        assert_eq!(
            stats.records + stats.records_failed_total(),
            n_records as u64,
            "every record is flattened or counted as failed"
        );
        assert_eq!(
            problems,
            stats.records_failed_total() + stats.tuples_failed_total(),
            "every failure is reported once"
        );
        stages.process(last, finalizer, replay);
    }
    for (mut summaries, finalizer) in stages.aggregator.flush() {
        check_batch(&summaries);
        stages.encoders.check(&summaries);
        stages.enricher.enrich(&mut summaries);
        check_batch(&summaries);
        stages.encoders.check(&summaries);
        finalizer.update(BatchStatus::Delivered);
    }
});
