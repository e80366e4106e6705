//! The address cache behind enrichment, seen through the metrics it publishes: one miss
//! per distinct address, hits for addresses seen before, evictions when `cache_size` is
//! smaller than the addresses in use. And a changed inventory reaches the very next batch
//! (the cache and the epoch start over).

use flowgate::generate::{document, Generator, Schema, Target};
use flowgate_core::{EventBatch, Origin};
use flowgate_source::extract::extract;
use flowgate_transform::{EnrichConfig, Enricher, Flattener};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusRecorder};
use std::collections::HashSet;
use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;

/// The events of a generated document of about 256 KiB.
fn events() -> EventBatch {
    let (doc, _) = document(
        &mut Generator::new(Schema::NsgV2, 7, Target::default()),
        256 << 10,
        1_709_546_400,
    );
    let doc = doc.into_bytes();
    let mut batch = EventBatch::new(Arc::new(Origin {
        source: "test".into(),
        path: "PT1H.json".into(),
        subscription_tag: None,
    }));
    let mut flattener = Flattener::new();
    for span in extract(&doc, true).records {
        flattener.flatten_record(&doc[span], &mut batch, |p| panic!("{p}"));
    }
    batch
}

fn distinct_addresses(batch: &EventBatch) -> usize {
    let ips: HashSet<IpAddr> = batch
        .events
        .iter()
        .flat_map(|e| [e.src_ip, e.dst_ip])
        .collect();
    ips.len()
}

fn config(inventory: &Path, cache_size: usize) -> EnrichConfig {
    EnrichConfig {
        address_classes: true,
        inventory: Some(inventory.to_owned()),
        inventory_reload_secs: 0.001,
        cache_size,
        ..EnrichConfig::default()
    }
}

/// The address cache's hits, misses, evictions and entries, as published.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Counts {
    hits: f64,
    misses: f64,
    evictions: f64,
    entries: f64,
}

/// Enriches `batch` with `recorder` as the metrics recorder; the counts published so far.
fn enrich(
    enricher: &mut Enricher,
    batch: &mut EventBatch,
    recorder: &PrometheusRecorder,
) -> Counts {
    metrics::with_local_recorder(recorder, || enricher.enrich(batch));
    let text = recorder.handle().render();
    let value = |name: &str| {
        let series = format!("{name}{{cache=\"address\"}} ");
        text.lines()
            .find_map(|l| l.strip_prefix(&series))
            .map(|v| v.parse::<f64>().unwrap())
            .unwrap_or_else(|| panic!("no {series} in\n{text}"))
    };
    Counts {
        hits: value("flowgate_enrich_cache_hits_total"),
        misses: value("flowgate_enrich_cache_misses_total"),
        evictions: value("flowgate_enrich_cache_evictions_total"),
        entries: value("flowgate_enrich_cache_entries"),
    }
}

fn inventory(dir: &Path, name: &str) -> std::path::PathBuf {
    let path = dir.join("assets.csv");
    std::fs::write(&path, format!("0.0.0.0/0,{name}\n::/0,{name}\n")).unwrap();
    path
}

#[test]
fn one_miss_per_distinct_address_then_hits() {
    let dir = tempfile::tempdir().unwrap();
    let mut enricher = config(&inventory(dir.path(), "a"), 65_536).build().unwrap();
    let recorder = PrometheusBuilder::new().build_recorder();
    let mut batch = events();
    let distinct = distinct_addresses(&batch) as f64;
    let lookups_at_most = 2.0 * batch.events.len() as f64;
    assert!(distinct > 100.0, "{distinct} addresses");

    let first = enrich(&mut enricher, &mut batch, &recorder);
    assert_eq!(first.misses, distinct);
    assert_eq!(first.entries, distinct);
    assert_eq!(first.evictions, 0.0);
    assert!(first.hits > 0.0 && first.hits + first.misses <= lookups_at_most);

    // The same addresses again: every one answered from memory, each at least once.
    let mut again = events();
    let second = enrich(&mut enricher, &mut again, &recorder);
    assert_eq!(second.misses, distinct, "no new misses");
    assert!(second.hits - first.hits >= distinct, "{first:?} {second:?}");
    assert_eq!(second.evictions, 0.0);
}

#[test]
fn a_cache_smaller_than_the_addresses_evicts_and_misses_again() {
    let dir = tempfile::tempdir().unwrap();
    let mut enricher = config(&inventory(dir.path(), "a"), 16).build().unwrap();
    let recorder = PrometheusBuilder::new().build_recorder();
    let mut batch = events();
    let distinct = distinct_addresses(&batch) as f64;

    // Every address misses at least once (more: a batch that overflows the epoch's table
    // is enriched again, and the cache no longer holds what the first pass looked up);
    // every miss past the 16th pushes an entry out.
    let first = enrich(&mut enricher, &mut batch, &recorder);
    assert!(first.misses >= distinct, "{first:?}");
    assert_eq!(first.entries, 16.0);
    assert_eq!(first.evictions, first.misses - 16.0);

    // Only 16 addresses can still be in memory: the rest miss again, and each evicts.
    let mut again = events();
    let second = enrich(&mut enricher, &mut again, &recorder);
    let new_misses = second.misses - first.misses;
    assert!(new_misses >= distinct - 16.0, "{first:?} {second:?}");
    assert_eq!(second.evictions - first.evictions, new_misses);
    assert_eq!(second.entries, 16.0);
    // And every address still got its inventory entry.
    let table = again.addresses.as_ref().unwrap();
    for e in &again.enrichment {
        for side in [e.src, e.dst] {
            let facts = table.get(side.expect("every address is in the inventory"));
            assert_eq!(&*facts.asset.as_ref().unwrap().name, "a");
        }
    }
}

#[test]
fn a_changed_inventory_reaches_the_next_batch() {
    let dir = tempfile::tempdir().unwrap();
    let path = inventory(dir.path(), "before");
    let mut enricher = config(&path, 65_536).build().unwrap();
    let names = |batch: &EventBatch| -> HashSet<String> {
        let table = batch.addresses.as_ref().unwrap();
        batch
            .enrichment
            .iter()
            .flat_map(|e| [e.src, e.dst])
            .map(|i| {
                table
                    .get(i.unwrap())
                    .asset
                    .as_ref()
                    .unwrap()
                    .name
                    .to_string()
            })
            .collect()
    };
    let mut batch = events();
    enricher.enrich(&mut batch);
    assert_eq!(names(&batch), HashSet::from(["before".to_owned()]));

    inventory(dir.path(), "after");
    std::thread::sleep(std::time::Duration::from_millis(5));
    let mut next = events();
    enricher.enrich(&mut next);
    assert_eq!(names(&next), HashSet::from(["after".to_owned()]));
    // The earlier batch keeps what it was enriched with (its table is its own).
    assert_eq!(names(&batch), HashSet::from(["before".to_owned()]));
}
