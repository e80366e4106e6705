//! Parse + flatten + encode over a generated 64 MiB Version 2 blob, in memory, on one
//! core: the same calls the pipeline makes per batch (`Flattener::flatten_batch`,
//! `Encoder::encode_batch`), on batches of about 1 MiB of records as the source reads them.
//!
//! `cargo bench -p flowgate --bench stage`; `FLOWGATE_BENCH_MIB` changes the size.
//! The `enrich_*` benchmarks add every `[enrich]` lookup but reverse DNS (network-bound):
//! service names, address classes, rule kinds, the asset inventory
//! (`FLOWGATE_BENCH_INVENTORY`, default tests/fixtures/assets.csv) and GeoIP/ASN from
//! `FLOWGATE_BENCH_GEOIP_CITY` / `FLOWGATE_BENCH_GEOIP_ASN` (scripts/geoip-data.sh
//! fetches real ones; without them GeoIP is left out and the run says so).

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use flowgate::generate::{document, Generator, Schema, Target};
use flowgate_core::{Finalizer, Origin, RecordBatch};
use flowgate_sink::encode::{Encoder, Format, Framing};
use flowgate_source::extract::extract;
use flowgate_transform::{EnrichConfig, Flattener};
use std::ops::Range;
use std::sync::Arc;

const BATCH_BYTES: usize = 1 << 20;

/// The document cut into batches of whole records, as the source would send them.
fn batches(doc: &Bytes) -> Vec<(Bytes, u64, Vec<Range<usize>>)> {
    let ex = extract(doc, true);
    let mut out = Vec::new();
    let mut current: Vec<Range<usize>> = Vec::new();
    let mut start = 0;
    for r in ex.records {
        if current.is_empty() {
            start = r.start;
        }
        current.push(r.start - start..r.end - start);
        if r.end - start >= BATCH_BYTES {
            let end = r.end;
            out.push((
                doc.slice(start..end),
                start as u64,
                std::mem::take(&mut current),
            ));
        }
    }
    if let Some(last) = current.last() {
        let end = start + last.end;
        out.push((doc.slice(start..end), start as u64, current));
    }
    out
}

fn run(
    flattener: &mut Flattener,
    batches: &[(Bytes, u64, Vec<Range<usize>>)],
    mut encode: impl FnMut(&mut flowgate_core::EventBatch),
) -> usize {
    let origin = Arc::new(Origin {
        source: "bench".into(),
        path: "PT1H.json".into(),
        subscription_tag: None,
    });
    let mut events = 0;
    for (data, start, records) in batches {
        let batch = RecordBatch {
            origin: origin.clone(),
            data: data.clone(),
            start: *start,
            records: records.clone(),
            finalizer: Finalizer::detached(),
            replay: None,
        };
        let (mut events_batch, finalizer) = flattener.flatten_batch(batch, |_, _| {});
        encode(&mut events_batch);
        events += events_batch.events.len();
        finalizer.update(flowgate_core::BatchStatus::Delivered);
    }
    events
}

fn stage(c: &mut Criterion) {
    let mib: usize = std::env::var("FLOWGATE_BENCH_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(64);
    let mut generator = Generator::new(Schema::NsgV2, 1, Target::default());
    let (doc, tuples) = document(&mut generator, mib << 20, 1_709_546_400);
    let doc = Bytes::from(doc.into_bytes());

    let mut group = c.benchmark_group("stage");
    group.sample_size(10);
    group.throughput(Throughput::Elements(tuples as u64));
    group.bench_function("extract_flatten", |b| {
        b.iter(|| {
            let batches = batches(&doc);
            let n = run(&mut Flattener::new(), &batches, |_| {});
            assert_eq!(n, tuples);
        })
    });
    for format in [Format::Cef, Format::Leef, Format::Json] {
        let mut encoder = Encoder::new(format, None, Framing::Newline);
        let mut out = Vec::new();
        group.bench_function(
            format!("extract_flatten_encode_{format:?}").to_lowercase(),
            |b| {
                b.iter(|| {
                    let batches = batches(&doc);
                    let n = run(&mut Flattener::new(), &batches, |events| {
                        out.clear();
                        encoder.encode_batch(events, &mut out);
                    });
                    assert_eq!(n, tuples);
                    out.len()
                })
            },
        );
    }
    for (name, cache_size) in [
        ("enrich_all_cef", 65_536),
        ("enrich_all_cef_cache_1k", 1_024),
    ] {
        let mut enricher = enrich_config(cache_size).build().expect("enrichment");
        let mut encoder = Encoder::new(Format::Cef, None, Framing::Newline);
        let mut out = Vec::new();
        group.bench_function(name, |b| {
            b.iter(|| {
                let batches = batches(&doc);
                let n = run(&mut Flattener::new(), &batches, |events| {
                    enricher.enrich(events);
                    out.clear();
                    encoder.encode_batch(events, &mut out);
                });
                assert_eq!(n, tuples);
                out.len()
            })
        });
    }
    group.finish();
}

/// Every enrichment but reverse DNS.
fn enrich_config(cache_size: usize) -> EnrichConfig {
    let env_path = |var: &str| std::env::var_os(var).map(std::path::PathBuf::from);
    let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let config = EnrichConfig {
        service_names: true,
        address_classes: true,
        rule_kinds: true,
        inventory: Some(
            env_path("FLOWGATE_BENCH_INVENTORY")
                .unwrap_or_else(|| repo.join("tests/fixtures/assets.csv")),
        ),
        geoip_city: env_path("FLOWGATE_BENCH_GEOIP_CITY"),
        geoip_asn: env_path("FLOWGATE_BENCH_GEOIP_ASN"),
        cache_size,
        ..EnrichConfig::default()
    };
    if config.geoip_city.is_none() {
        eprintln!("FLOWGATE_BENCH_GEOIP_CITY not set: GeoIP left out of enrich_*");
    }
    config
}

criterion_group!(benches, stage);
criterion_main!(benches);
