//! Every metric flowgate emits, in one place (`<namespace>_<name>_<unit>_total`).
//! `docs/METRICS.md` explains each one. They are recorded through the `metrics` facade;
//! the Prometheus exporter (`/metrics`) is wired by the operations issue.

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
