//! Every metric flowgate emits, in one place (`<namespace>_<name>_<unit>_total`).
//! `docs/METRICS.md` explains each one. They are recorded through the `metrics` facade;
//! [`CATALOGUE`] gives each its type and help text for the Prometheus exporter.

pub const RECORDS_TOTAL: &str = "flowgate_records_total";
/// Label `reason`: `RecordErrorKind::reason()` in flowgate-transform.
pub const RECORDS_FAILED_TOTAL: &str = "flowgate_records_failed_total";
pub const TUPLES_TOTAL: &str = "flowgate_tuples_total";
/// Label `reason`: `TupleErrorKind::reason()` in flowgate-transform.
pub const TUPLES_FAILED_TOTAL: &str = "flowgate_tuples_failed_total";
/// Label `reason`: the `[filter]` check that removed the event (`action`, `direction`,
/// `protocol`, `begin`, `address`, `port`, `rule`, `nsg`).
pub const EVENTS_FILTERED_TOTAL: &str = "flowgate_events_filtered_total";
/// Label `cache`: `inventory`, `geoip`, `rdns`.
pub const ENRICH_CACHE_HITS_TOTAL: &str = "flowgate_enrich_cache_hits_total";
/// Label `cache`.
pub const ENRICH_CACHE_MISSES_TOTAL: &str = "flowgate_enrich_cache_misses_total";
/// Label `cache`: entries pushed out of a full cache (a cache too small thrashes).
pub const ENRICH_CACHE_EVICTIONS_TOTAL: &str = "flowgate_enrich_cache_evictions_total";
/// Gauge, label `cache`: entries held.
pub const ENRICH_CACHE_ENTRIES: &str = "flowgate_enrich_cache_entries";
/// Label `result`: `found`, `not_found` (NXDOMAIN or no PTR), `timeout`, `error`.
pub const ENRICH_RDNS_LOOKUPS_TOTAL: &str = "flowgate_enrich_rdns_lookups_total";
/// Label `reason`: `duplicate` (exact repeats suppressed).
pub const EVENTS_SUPPRESSED_TOTAL: &str = "flowgate_events_suppressed_total";
/// Events merged into an aggregation summary (events in minus summaries out).
pub const EVENTS_AGGREGATED_TOTAL: &str = "flowgate_events_aggregated_total";
pub const SOURCE_BYTES_READ_TOTAL: &str = "flowgate_source_read_bytes_total";
/// Range reads of files or blobs (each read fetches what is new in one object).
pub const SOURCE_READS_TOTAL: &str = "flowgate_source_reads_total";
/// Histogram, label `source`: one poll (a listing, then reading what is new).
pub const SOURCE_POLL_DURATION_SECONDS: &str = "flowgate_source_poll_duration_seconds";
/// Gauge, label `source`: now minus the time of the newest tuple delivered (set when
/// `/metrics` is read).
pub const CHECKPOINT_LAG_SECONDS: &str = "flowgate_checkpoint_lag_seconds";
/// Gauge: 1 when `/readyz` says ready.
pub const READY: &str = "flowgate_ready";
pub const DEAD_LETTERS_TOTAL: &str = "flowgate_dead_letters_total";
pub const API_CONNECTIONS_REJECTED_TOTAL: &str = "flowgate_api_connections_rejected_total";
/// Gauge, label `version`: always 1.
pub const BUILD_INFO: &str = "flowgate_build_info";
/// Label `level`: repeated warnings and errors not logged (see `[log]`).
pub const LOG_MESSAGES_SUPPRESSED_TOTAL: &str = "flowgate_log_messages_suppressed_total";
pub const SOURCE_FILES_DISCOVERED_TOTAL: &str = "flowgate_source_files_discovered_total";
/// Label `reason`: structural errors between records (offset logged).
pub const SOURCE_EXTRACT_ERRORS_TOTAL: &str = "flowgate_source_extract_errors_total";
/// Label `reason`: `not_found` (container), `denied` (401/403), `other` (network,
/// throttling, 5xx after the SDK's own retries).
pub const SOURCE_LIST_ERRORS_TOTAL: &str = "flowgate_source_list_errors_total";
/// Label `kind`: `full` (the whole container or directory) or `partial` (the current and
/// previous hour of each NSG). Blob storage requests: one per page of results.
pub const SOURCE_LIST_REQUESTS_TOTAL: &str = "flowgate_source_list_requests_total";
/// Label `reason`: `truncated`, `rewritten`, `deleted`.
pub const SOURCE_RESETS_TOTAL: &str = "flowgate_source_resets_total";
/// Label `sink`.
pub const SINK_EVENTS_SENT_TOTAL: &str = "flowgate_sink_events_sent_total";
/// Label `sink`.
pub const SINK_BYTES_SENT_TOTAL: &str = "flowgate_sink_sent_bytes_total";
/// Label `sink`: batches written again (a failed write, or a connection that broke
/// before the receiver acknowledged them).
pub const SINK_RETRIES_TOTAL: &str = "flowgate_sink_retries_total";
/// Labels `sink`, `reason`: `udp` (oversize with `oversize = "drop"`, or a failed send),
/// `unreachable` (`when_unreachable = "drop"`), `kafka` (a message Kafka refused for good).
pub const SINK_EVENTS_DROPPED_TOTAL: &str = "flowgate_sink_events_dropped_total";
/// Label `sink`: UDP messages cut to `max_message_bytes` (`oversize = "truncate"`).
pub const SINK_EVENTS_TRUNCATED_TOTAL: &str = "flowgate_sink_events_truncated_total";
/// Label `sink`: failed connection attempts.
pub const SINK_CONNECT_ERRORS_TOTAL: &str = "flowgate_sink_connect_errors_total";
/// Label `status`: `delivered`, `dropped`, `failed`.
pub const BATCHES_ACKNOWLEDGED_TOTAL: &str = "flowgate_batches_acknowledged_total";
pub const CHECKPOINT_WRITES_TOTAL: &str = "flowgate_checkpoint_writes_total";
/// Gauge, label `channel`: `records` (sources → transform) or `sink.<name>` (transform →
/// that sink): batches waiting. A full sink channel means that sink is the bottleneck.
pub const CHANNEL_DEPTH_BATCHES: &str = "flowgate_channel_depth_batches";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
}

/// Every metric with its type and `# HELP` text (docs/METRICS.md says more).
/// Gauge, label `source`: partitions whose blob lease this instance holds (cluster mode).
pub const CLUSTER_PARTITIONS_OWNED: &str = "flowgate_cluster_partitions_owned";
/// Gauge, label `source`: live instances (holding their presence lease) this one sees.
pub const CLUSTER_INSTANCES: &str = "flowgate_cluster_instances";
/// Labels `source`, `result`: `ok`, `failed` (presence and partition leases).
pub const CLUSTER_LEASE_RENEWALS_TOTAL: &str = "flowgate_cluster_lease_renewals_total";
/// Labels `source`, `reason`: `free` (never owned or released), `takeover` (its owner's
/// lease expired without a release).
pub const CLUSTER_PARTITIONS_ACQUIRED_TOTAL: &str = "flowgate_cluster_partitions_acquired_total";
/// Labels `source`, `reason`: `released` (rebalancing), `lost` (renewal refused or not
/// possible in time), `refused` (a checkpoint write refused by its condition).
pub const CLUSTER_PARTITIONS_DROPPED_TOTAL: &str = "flowgate_cluster_partitions_dropped_total";
/// Label `source`: checkpoint blobs written (each holds one partition's checkpoints).
pub const CLUSTER_CHECKPOINT_WRITES_TOTAL: &str = "flowgate_cluster_checkpoint_writes_total";
/// Labels `source`, `reason`: `lease` (the lease is another's or gone), `etag` (written by
/// someone else since), `epoch` (acknowledged after its partition was lost).
pub const CLUSTER_WRITES_REFUSED_TOTAL: &str = "flowgate_cluster_checkpoint_writes_refused_total";

pub const CATALOGUE: &[(&str, Kind, &str)] = &[
    (
        CLUSTER_PARTITIONS_OWNED,
        Kind::Gauge,
        "Partitions whose blob lease this instance holds.",
    ),
    (
        CLUSTER_INSTANCES,
        Kind::Gauge,
        "Live instances of the cluster this instance sees.",
    ),
    (
        CLUSTER_LEASE_RENEWALS_TOTAL,
        Kind::Counter,
        "Lease renewals (presence and partitions), by result.",
    ),
    (
        CLUSTER_PARTITIONS_ACQUIRED_TOTAL,
        Kind::Counter,
        "Partitions acquired, free or taken over from an instance whose lease expired.",
    ),
    (
        CLUSTER_PARTITIONS_DROPPED_TOTAL,
        Kind::Counter,
        "Partitions given up: released for balance, lost, or refused a checkpoint write.",
    ),
    (
        CLUSTER_CHECKPOINT_WRITES_TOTAL,
        Kind::Counter,
        "Partition checkpoint blobs written.",
    ),
    (
        CLUSTER_WRITES_REFUSED_TOTAL,
        Kind::Counter,
        "Checkpoint writes refused by their lease or ETag condition, or after the partition was lost.",
    ),
    (RECORDS_TOTAL, Kind::Counter, "Flow log records parsed."),
    (
        RECORDS_FAILED_TOTAL,
        Kind::Counter,
        "Records skipped as malformed, by reason.",
    ),
    (
        TUPLES_TOTAL,
        Kind::Counter,
        "Flow tuples flattened into events.",
    ),
    (
        TUPLES_FAILED_TOTAL,
        Kind::Counter,
        "Flow tuples skipped as malformed, by reason.",
    ),
    (
        EVENTS_FILTERED_TOTAL,
        Kind::Counter,
        "Events removed by [filter], by reason.",
    ),
    (
        EVENTS_SUPPRESSED_TOTAL,
        Kind::Counter,
        "Exact duplicate events not sent.",
    ),
    (
        EVENTS_AGGREGATED_TOTAL,
        Kind::Counter,
        "Events merged into aggregation summaries (events saved).",
    ),
    (
        ENRICH_CACHE_HITS_TOTAL,
        Kind::Counter,
        "Enrichment lookups answered by the cache, by cache.",
    ),
    (
        ENRICH_CACHE_MISSES_TOTAL,
        Kind::Counter,
        "Enrichment lookups not in the cache, by cache.",
    ),
    (
        ENRICH_CACHE_EVICTIONS_TOTAL,
        Kind::Counter,
        "Entries pushed out of a full enrichment cache, by cache.",
    ),
    (
        ENRICH_CACHE_ENTRIES,
        Kind::Gauge,
        "Entries held by each enrichment cache.",
    ),
    (
        ENRICH_RDNS_LOOKUPS_TOTAL,
        Kind::Counter,
        "Reverse DNS lookups, by result.",
    ),
    (
        SOURCE_FILES_DISCOVERED_TOTAL,
        Kind::Counter,
        "Files or blobs found for the first time.",
    ),
    (
        SOURCE_READS_TOTAL,
        Kind::Counter,
        "Range reads of files or blobs.",
    ),
    (
        SOURCE_BYTES_READ_TOTAL,
        Kind::Counter,
        "Bytes read from files or blobs.",
    ),
    (
        SOURCE_EXTRACT_ERRORS_TOTAL,
        Kind::Counter,
        "Structural errors between records, by reason.",
    ),
    (
        SOURCE_LIST_ERRORS_TOTAL,
        Kind::Counter,
        "Failed listings, by reason.",
    ),
    (
        SOURCE_LIST_REQUESTS_TOTAL,
        Kind::Counter,
        "Listing requests (pages), by kind.",
    ),
    (
        SOURCE_RESETS_TOTAL,
        Kind::Counter,
        "Objects read again or forgotten, by reason.",
    ),
    (
        SOURCE_POLL_DURATION_SECONDS,
        Kind::Histogram,
        "Duration of one poll (list, then read what is new), by source.",
    ),
    (
        CHECKPOINT_LAG_SECONDS,
        Kind::Gauge,
        "Now minus the time of the newest delivered tuple, by source.",
    ),
    (
        CHECKPOINT_WRITES_TOTAL,
        Kind::Counter,
        "Checkpoint store transactions.",
    ),
    (
        BATCHES_ACKNOWLEDGED_TOTAL,
        Kind::Counter,
        "Batches acknowledged to their source, by status.",
    ),
    (
        CHANNEL_DEPTH_BATCHES,
        Kind::Gauge,
        "Batches waiting in each channel.",
    ),
    (
        SINK_EVENTS_SENT_TOTAL,
        Kind::Counter,
        "Events delivered, by sink.",
    ),
    (
        SINK_BYTES_SENT_TOTAL,
        Kind::Counter,
        "Bytes delivered, by sink.",
    ),
    (
        SINK_RETRIES_TOTAL,
        Kind::Counter,
        "Batches written again, by sink.",
    ),
    (
        SINK_EVENTS_DROPPED_TOTAL,
        Kind::Counter,
        "Events dropped by a configured policy, by sink and reason.",
    ),
    (
        SINK_EVENTS_TRUNCATED_TOTAL,
        Kind::Counter,
        "UDP messages cut to the maximum size, by sink.",
    ),
    (
        SINK_CONNECT_ERRORS_TOTAL,
        Kind::Counter,
        "Failed connection attempts, by sink.",
    ),
    (
        READY,
        Kind::Gauge,
        "1 when the service is ready (see /readyz).",
    ),
    (
        DEAD_LETTERS_TOTAL,
        Kind::Counter,
        "Malformed records, tuples and bytes copied to the dead-letter file, by what and outcome.",
    ),
    (
        API_CONNECTIONS_REJECTED_TOTAL,
        Kind::Counter,
        "HTTP API connections closed on accept: api.max_connections were open.",
    ),
    (BUILD_INFO, Kind::Gauge, "Always 1; the version is a label."),
    (
        LOG_MESSAGES_SUPPRESSED_TOTAL,
        Kind::Counter,
        "Repeated warnings and errors not logged, by level.",
    ),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_metric_is_catalogued_and_documented_once() {
        let source = include_str!("metric_names.rs");
        let docs = include_str!("../../../docs/METRICS.md");
        let declared: Vec<&str> = source
            .lines()
            .filter(|l| l.starts_with("pub const ") && l.contains(": &str = \""))
            .map(|l| l.split('"').nth(1).unwrap())
            .collect();
        let catalogued: Vec<&str> = CATALOGUE.iter().map(|(n, _, _)| *n).collect();
        let mut sorted = catalogued.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), catalogued.len(), "listed twice");
        for name in &declared {
            assert!(catalogued.contains(name), "{name} is not in CATALOGUE");
            assert!(
                docs.contains(&format!("`{name}`")),
                "{name} is not in docs/METRICS.md"
            );
        }
        assert_eq!(declared.len(), catalogued.len());
        for (name, kind, _) in CATALOGUE {
            assert_eq!(name.ends_with("_total"), *kind == Kind::Counter, "{name}");
        }
    }
}
