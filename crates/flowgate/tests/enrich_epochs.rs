//! The enricher keeps the addresses of recent batches in epochs (a map and a table of facts
//! shared by batches) and the encoders keep each address's fields per table. What comes
//! out must not depend on where epochs start: the same stream enriched with epochs that
//! last the whole run, epochs that turn over every batch (and batches that overflow a
//! table and are redone), and a fresh enricher and encoder for every batch, encodes to the
//! same bytes in every format.

use bytes::Bytes;
use flowgate::generate::{document, Generator, Schema, Target};
use flowgate_core::{BatchStatus, Finalizer, Origin, RecordBatch};
use flowgate_sink::encode::{Encoder, Format, Framing};
use flowgate_source::extract::extract;
use flowgate_transform::{EnrichConfig, Enricher, Flattener};
use std::sync::Arc;

const FORMATS: [Format; 3] = [Format::Cef, Format::Leef, Format::Json];

/// A generated document cut into batches of whole records of about 64 KiB.
fn batches(schema: Schema) -> Vec<RecordBatch> {
    let (doc, _) = document(
        &mut Generator::new(schema, 5, Target::default()),
        3 << 20,
        1_709_546_400,
    );
    let doc = Bytes::from(doc.into_bytes());
    let origin = Arc::new(Origin {
        source: "test".into(),
        path: "PT1H.json".into(),
        subscription_tag: None,
    });
    let mut out = Vec::new();
    let mut records = Vec::new();
    let mut start = 0;
    let records_all = extract(&doc, true).records;
    let last = records_all.len() - 1;
    for (i, r) in records_all.into_iter().enumerate() {
        if records.is_empty() {
            start = r.start;
        }
        records.push(r.start - start..r.end - start);
        if r.end - start >= 64 << 10 || i == last {
            out.push(RecordBatch {
                origin: origin.clone(),
                data: doc.slice(start..r.end),
                start: start as u64,
                records: std::mem::take(&mut records),
                finalizer: Finalizer::detached(),
                replay: None,
            });
        }
    }
    out
}

fn config(cache_size: usize) -> EnrichConfig {
    EnrichConfig {
        service_names: true,
        address_classes: true,
        rule_kinds: true,
        inventory: Some(
            concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../../tests/fixtures/assets.csv"
            )
            .into(),
        ),
        cache_size,
        ..EnrichConfig::default()
    }
}

struct Run {
    /// Per format, every batch's messages.
    output: Vec<Vec<u8>>,
    /// Per batch: its address table's id, capacity and event count.
    tables: Vec<(u64, usize, usize)>,
}

/// Enriches and encodes `batches`; `fresh` makes a new enricher and encoders per batch.
fn run(schema: Schema, cache_size: usize, fresh: bool) -> Run {
    let mut flattener = Flattener::new();
    let make = || {
        let enricher = config(cache_size).build().expect("enricher");
        let encoders: Vec<Encoder> = FORMATS
            .iter()
            .map(|f| Encoder::new(*f, None, Framing::Newline))
            .collect();
        (enricher, encoders)
    };
    let (mut enricher, mut encoders): (Enricher, Vec<Encoder>) = make();
    let mut output = vec![Vec::new(); FORMATS.len()];
    let mut tables = Vec::new();
    for batch in batches(schema) {
        if fresh {
            (enricher, encoders) = make();
        }
        let (mut events, finalizer) = flattener.flatten_batch(batch, |_, p| panic!("{p:?}"));
        enricher.enrich(&mut events);
        let table = events.addresses.as_ref().expect("lookups give a table");
        tables.push((table.id(), table.capacity(), events.events.len()));
        for (encoder, out) in encoders.iter_mut().zip(&mut output) {
            encoder.encode_batch(&events, out);
        }
        finalizer.update(BatchStatus::Delivered);
    }
    Run { output, tables }
}

#[test]
fn output_does_not_depend_on_epochs() {
    for schema in [Schema::NsgV2, Schema::VNet] {
        let long = run(schema, 65_536, false);
        let short = run(schema, 16, false);
        let fresh = run(schema, 65_536, true);
        assert!(long.tables.len() > 10, "{} batches", long.tables.len());

        // One epoch for the whole run: a few thousand addresses fit.
        assert!(long.tables.iter().all(|t| t.0 == long.tables[0].0));
        // 16 addresses per epoch: new tables all the time, and batches with more
        // addresses than a table holds were redone in a table sized for them.
        let ids: std::collections::BTreeSet<u64> = short.tables.iter().map(|t| t.0).collect();
        assert!(ids.len() > short.tables.len() / 2, "{} epochs", ids.len());
        assert!(
            short
                .tables
                .iter()
                .any(|&(_, capacity, events)| capacity >= 2 * events && events > 16),
            "no batch overflowed a table"
        );

        for (i, format) in FORMATS.iter().enumerate() {
            let text = String::from_utf8_lossy(&long.output[i]);
            // The inventory names the private addresses (10.0.0.0/8 is corp-network).
            assert!(
                text.contains("corp-network"),
                "{format:?}: no inventory fields"
            );
            assert!(
                long.output[i] == short.output[i],
                "{schema:?} {format:?}: short epochs changed the output"
            );
            assert!(
                long.output[i] == fresh.output[i],
                "{schema:?} {format:?}: a fresh enricher per batch changed the output"
            );
        }
    }
}
