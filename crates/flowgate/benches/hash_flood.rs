//! Hash flooding: addresses crafted so that every one lands in the same bucket of the
//! unseeded multiply-rotate hash flowgate used before issue 15, against as many random
//! addresses of the same IPv6 /64. An attacker who sends traffic chooses its source
//! addresses, and a /64 offers 2^64 of them.
//!
//! - `old_hash_*`: a table with that old hash. The crafted set costs O(n) per lookup:
//!   this proves the set really collides, so the other numbers mean something.
//! - `seeded_*`: the same table with flowgate's hasher (`flowgate_core::hash`).
//! - `enrich_*`: the real path: a blob of tuples from those addresses, flattened and
//!   enriched (epoch and LRU cache), as the transform thread runs it.
//!
//! `cargo bench -p flowgate --bench hash_flood`; `FLOWGATE_BENCH_ADDRESSES` sets n.

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use flowgate_core::hash::SeededState;
use flowgate_core::{Finalizer, Origin, RecordBatch};
use flowgate_source::extract::extract;
use flowgate_transform::{EnrichConfig, Flattener};
use std::collections::HashMap;
use std::hash::{BuildHasher, BuildHasherDefault, Hasher};
use std::net::Ipv6Addr;
use std::sync::Arc;

/// The hash before issue 15 (rustc's FxHash with a final rotation), kept to craft keys.
#[derive(Default)]
struct OldHasher(u64);

const K: u64 = 0x51_7c_c1_b7_27_22_0a_95;

impl Hasher for OldHasher {
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.write_u64(u64::from_le_bytes(word));
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0.rotate_left(5) ^ n).wrapping_mul(K);
    }
    fn write_usize(&mut self, n: usize) {
        self.write_u64(n as u64);
    }
    fn finish(&self) -> u64 {
        self.0.rotate_left(26)
    }
}

type Old = BuildHasherDefault<OldHasher>;

/// The inverse of the odd multiplier modulo 2^64 (Newton's iteration).
fn inverse(k: u64) -> u64 {
    let mut x = k;
    for _ in 0..6 {
        x = x.wrapping_mul(2u64.wrapping_sub(k.wrapping_mul(x)));
    }
    x
}

/// `n` addresses of 2001:db8:1:2::/64 whose old hash is `rotl(d, 26)` for d < n: the
/// low bits (the bucket) and the top 7 bits (hashbrown's tag) are the same for all.
fn crafted(n: usize) -> Vec<Ipv6Addr> {
    let prefix: [u8; 8] = [0x20, 0x01, 0x0d, 0xb8, 0, 1, 0, 2];
    // The state before the last word: hash the address with a zero last word and undo
    // the last multiply and rotation.
    let mut zero = [0u8; 16];
    zero[..8].copy_from_slice(&prefix);
    let before_last = (Old::default()
        .hash_one(Ipv6Addr::from(zero))
        .rotate_right(26))
    .wrapping_mul(inverse(K));
    let addresses: Vec<Ipv6Addr> = (0..n as u64)
        .map(|d| {
            let last = before_last ^ d.wrapping_mul(inverse(K));
            let mut octets = zero;
            octets[8..].copy_from_slice(&last.to_le_bytes());
            Ipv6Addr::from(octets)
        })
        .collect();
    let bucket = |a: &Ipv6Addr| {
        let h = Old::default().hash_one(a);
        (h & 0xffff, h >> 57)
    };
    assert!(
        addresses.iter().all(|a| bucket(a) == bucket(&addresses[0])),
        "the crafted addresses must collide under the old hash"
    );
    addresses
}

/// `n` addresses of the same /64, spread by a fixed-seed generator.
fn random(n: usize) -> Vec<Ipv6Addr> {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let mut octets = [0x20, 0x01, 0x0d, 0xb8, 0, 1, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0];
            octets[8..].copy_from_slice(&x.to_le_bytes());
            Ipv6Addr::from(octets)
        })
        .collect()
}

/// Inserts every address, then looks each up once, as the epoch does per batch.
fn fill_and_probe<S: BuildHasher + Default>(addresses: &[Ipv6Addr]) -> usize {
    let mut table: HashMap<Ipv6Addr, u32, S> = HashMap::default();
    for (i, a) in addresses.iter().enumerate() {
        table.insert(*a, i as u32);
    }
    addresses.iter().filter(|a| table.contains_key(a)).count()
}

/// One NSG Version 2 blob: a record per 1,000 tuples, each from one of `sources`.
fn blob(sources: &[Ipv6Addr]) -> Bytes {
    let records: Vec<String> = sources
        .chunks(1000)
        .map(|chunk| {
            let tuples: Vec<String> = chunk
                .iter()
                .map(|s| format!("\"1709546400,{s},2001:db8:ffff::4,40000,443,T,I,A,B,,,,\""))
                .collect();
            format!(
                r#"{{"time":"2024-03-04T10:00:00.0000000Z","systemId":"x","category":"NetworkSecurityGroupFlowEvent","resourceId":"/SUBSCRIPTIONS/S/RESOURCEGROUPS/RG/PROVIDERS/MICROSOFT.NETWORK/NETWORKSECURITYGROUPS/NSG","operationName":"NetworkSecurityGroupFlowEvents","properties":{{"Version":2,"flows":[{{"rule":"R","flows":[{{"mac":"000D3AF87856","flowTuples":[{}]}}]}}]}}}}"#,
                tuples.join(",")
            )
        })
        .collect();
    Bytes::from(format!("{{\"records\":[{}]}}", records.join(",")))
}

fn flatten_and_enrich(doc: &Bytes, config: &EnrichConfig) -> usize {
    let mut enricher = config.build().expect("enrichment");
    let origin = Arc::new(Origin {
        source: "bench".into(),
        path: "PT1H.json".into(),
        subscription_tag: None,
    });
    let records = extract(doc, true).records;
    let start = records[0].start;
    let batch = RecordBatch {
        origin,
        data: doc.slice(start..records.last().expect("records").end),
        start: start as u64,
        records: records
            .iter()
            .map(|r| r.start - start..r.end - start)
            .collect(),
        finalizer: Finalizer::detached(),
        replay: None,
    };
    let (mut events, finalizer) = Flattener::new().flatten_batch(batch, |_, _| {});
    enricher.enrich(&mut events);
    finalizer.update(flowgate_core::BatchStatus::Delivered);
    events.events.len()
}

fn hash_flood(c: &mut Criterion) {
    let n: usize = std::env::var("FLOWGATE_BENCH_ADDRESSES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000);
    let sets = [("random", random(n)), ("crafted", crafted(n))];
    let mut group = c.benchmark_group("hash_flood");
    group.sample_size(10);
    group.throughput(Throughput::Elements(n as u64));
    for (name, addresses) in &sets {
        group.bench_with_input(BenchmarkId::new("old_hash", name), addresses, |b, a| {
            b.iter(|| assert_eq!(fill_and_probe::<Old>(a), n))
        });
        group.bench_with_input(BenchmarkId::new("seeded", name), addresses, |b, a| {
            b.iter(|| assert_eq!(fill_and_probe::<SeededState>(a), n))
        });
    }
    let config = EnrichConfig {
        address_classes: true,
        service_names: true,
        cache_size: 65_536,
        ..EnrichConfig::default()
    };
    for (name, addresses) in &sets {
        let doc = blob(addresses);
        group.bench_with_input(BenchmarkId::new("enrich", name), &doc, |b, doc| {
            b.iter(|| assert_eq!(flatten_and_enrich(doc, &config), n))
        });
    }
    group.finish();
}

criterion_group!(benches, hash_flood);
criterion_main!(benches);
