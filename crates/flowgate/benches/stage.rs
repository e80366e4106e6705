//! Parse + flatten + encode over a generated 64 MiB Version 2 blob (in memory).
//!
//! `cargo bench -p flowgate --bench stage`; `FLOWGATE_BENCH_MIB` changes the size.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use flowgate::generate::{document, Generator, Schema, Target};
use flowgate_core::{EventBatch, Origin};
use flowgate_sink::encode::{Encoder, Format, Framing};
use flowgate_source::extract::extract;
use flowgate_transform::Flattener;
use std::sync::Arc;

fn stage(c: &mut Criterion) {
    let mib: usize = std::env::var("FLOWGATE_BENCH_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(64);
    let mut generator = Generator::new(Schema::NsgV2, 1, Target::default());
    let (doc, tuples) = document(&mut generator, mib << 20, 1_709_546_400);
    let doc = doc.into_bytes();
    let origin = Arc::new(Origin {
        source: "bench".into(),
        path: "PT1H.json".into(),
    });

    let mut group = c.benchmark_group("stage");
    group.sample_size(10);
    group.throughput(Throughput::Elements(tuples as u64));
    for format in [Format::Cef, Format::Leef, Format::Json] {
        let mut encoder = Encoder::new(format, None, Framing::Newline);
        let mut out = Vec::with_capacity(doc.len() * 8);
        group.bench_function(
            format!("extract_flatten_encode_{format:?}").to_lowercase(),
            |b| {
                b.iter(|| {
                    let ex = extract(&doc, true);
                    let mut flattener = Flattener::new();
                    let mut events = 0;
                    // Batches of records as the pipeline sends them (about 1 MiB each).
                    for chunk in ex.records.chunks(24) {
                        let mut batch = EventBatch::new(origin.clone());
                        for span in chunk {
                            flattener.flatten_record(&doc[span.clone()], &mut batch, |_| {});
                        }
                        out.clear();
                        encoder.encode_batch(&batch, &mut out);
                        events += batch.events.len();
                    }
                    assert_eq!(events, tuples);
                    out.len()
                })
            },
        );
    }
    group.finish();
}

criterion_group!(benches, stage);
criterion_main!(benches);
