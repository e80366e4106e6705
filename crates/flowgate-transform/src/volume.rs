//! `[volume]`: sending less without losing what happened.
//!
//! - **Duplicate suppression** drops an event identical, field for field, to one among
//!   the last `dedup_window` events (a blob rewritten by Azure, a replayed hour).
//! - **Aggregation** merges the updates of a flow (`B`, `C`, `E` tuples with the same
//!   5-tuple, direction, action, rule and NIC) arriving within one interval into one
//!   summary: counters summed, first and last time seen, how many tuples it stands for.
//!   The batches merged into a summary are acknowledged when the summary is delivered,
//!   so aggregation holds checkpoints back by up to one interval, never loses them.
//!
//! A batch read again (`RecordBatch::replay`: after a failed delivery, or a rewrite
//! before one succeeded) is neither suppressed nor merged into the summaries of an
//! earlier reading, which may still be held: each round of replays gets summaries of its
//! own. Delivery is at least once, so a replay may repeat events, but never drops them or
//! counts their bytes twice in one summary.

use flowgate_core::{
    metric_names as m, EventBatch, Finalizer, FlowEvent, FlowState, Origin, Summary,
};
use lru::LruCache;
use serde::Deserialize;
use std::collections::HashMap;
use std::hash::{BuildHasher, Hash, Hasher};
use std::net::IpAddr;
use std::num::NonZeroUsize;
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct VolumeConfig {
    pub dedup: bool,
    /// Events remembered for duplicate suppression (16 bytes each).
    pub dedup_window: usize,
    pub aggregate: bool,
    /// Summaries are sent at the end of each interval.
    pub aggregate_interval_secs: f64,
    /// Flows held at most; more send the summaries early (bounds memory).
    pub aggregate_max_flows: usize,
}

impl Default for VolumeConfig {
    fn default() -> Self {
        VolumeConfig {
            dedup: false,
            dedup_window: 1_000_000,
            aggregate: false,
            aggregate_interval_secs: 60.0,
            aggregate_max_flows: 200_000,
        }
    }
}

impl VolumeConfig {
    pub fn validate(&self) -> Result<(), String> {
        if !(1..=100_000_000).contains(&self.dedup_window) {
            return Err("volume.dedup_window must be in 1..=100000000".into());
        }
        if !(self.aggregate_interval_secs >= 1.0 && self.aggregate_interval_secs <= 3600.0) {
            return Err("volume.aggregate_interval_secs must be in [1, 3600]".into());
        }
        if !(1..=10_000_000).contains(&self.aggregate_max_flows) {
            return Err("volume.aggregate_max_flows must be in 1..=10000000".into());
        }
        Ok(())
    }

    pub fn dedup(&self) -> Option<Dedup> {
        self.dedup.then(|| Dedup::new(self.dedup_window))
    }

    pub fn aggregator(&self) -> Option<Aggregator> {
        self.aggregate.then(|| {
            Aggregator::new(
                Duration::from_secs_f64(self.aggregate_interval_secs),
                self.aggregate_max_flows,
            )
        })
    }
}

/// Exact-duplicate suppression over a window of recent events.
pub struct Dedup {
    seen: LruCache<u128, ()>,
    hasher: [std::collections::hash_map::RandomState; 2],
}

impl Dedup {
    pub fn new(window: usize) -> Self {
        Dedup {
            seen: LruCache::new(NonZeroUsize::new(window.max(1)).expect("at least 1")),
            hasher: Default::default(),
        }
    }

    /// Removes events seen before; returns how many.
    pub fn apply(&mut self, batch: &mut EventBatch) -> usize {
        let before = batch.events.len();
        let mut keep = Vec::with_capacity(before);
        for e in &batch.events {
            // 128 bits from two keyed hashes: a false match among a million events is
            // about 1 in 10^26.
            let [a, b] = self.hasher.each_ref().map(|h| {
                let mut hasher = h.build_hasher();
                hash_event(batch, e, &mut hasher);
                hasher.finish()
            });
            let key = (u128::from(a) << 64) | u128::from(b);
            keep.push(self.seen.put(key, ()).is_none());
        }
        retain_events(batch, &keep);
        let suppressed = before - batch.events.len();
        metrics::counter!(m::EVENTS_SUPPRESSED_TOTAL, "reason" => "duplicate")
            .increment(suppressed as u64);
        suppressed
    }
}

/// Everything that makes an event what it is, its context included.
fn hash_event(batch: &EventBatch, e: &FlowEvent, h: &mut impl Hasher) {
    let (g, r) = batch.context_of(e);
    (
        &r.resource_id,
        r.kind.as_str(),
        r.mac,
        &g.rule,
        g.mac,
        &g.acl_id,
    )
        .hash(h);
    (
        e.time_ms, e.src_ip, e.dst_ip, e.src_port, e.dst_port, e.protocol,
    )
        .hash(h);
    (e.direction, e.action, e.state, e.encryption).hash(h);
    (e.packets_src_to_dst, e.bytes_src_to_dst).hash(h);
    (e.packets_dst_to_src, e.bytes_dst_to_src).hash(h);
}

/// Keeps the events (and their enrichment, if any) whose flag is set.
fn retain_events(batch: &mut EventBatch, keep: &[bool]) {
    let mut flags = keep.iter();
    batch
        .events
        .retain(|_| *flags.next().expect("one flag per event"));
    if !batch.enrichment.is_empty() {
        let mut flags = keep.iter();
        batch
            .enrichment
            .retain(|_| *flags.next().expect("one flag per event"));
    }
}

/// Flow updates merged per interval; see the module docs.
pub struct Aggregator {
    interval: Duration,
    max_flows: usize,
    /// One window per source (events of different sources carry different labels), and
    /// one more per round of replays.
    windows: HashMap<WindowKey, Window>,
    opened: Option<Instant>,
    flows: usize,
}

/// Source name, subscription tag, replay round.
type WindowKey = (Arc<str>, Option<Arc<str>>, Option<u32>);

/// A flow: the group (rule, NIC, NSG) it was decided by and its 5-tuple and decision.
#[derive(Hash, PartialEq, Eq)]
struct FlowKey {
    group: u32,
    src_ip: IpAddr,
    dst_ip: IpAddr,
    src_port: u16,
    dst_port: u16,
    protocol: u8,
    direction: flowgate_core::Direction,
    action: flowgate_core::Action,
}

/// Groups are shared by value across the batches of a window.
#[derive(Hash, PartialEq, Eq)]
struct GroupKey {
    resource_id: Box<str>,
    kind: &'static str,
    rule: Box<str>,
    mac: Option<flowgate_core::Mac>,
    acl_id: Option<Box<str>>,
}

struct Window {
    out: EventBatch,
    groups: HashMap<GroupKey, u32>,
    flows: HashMap<FlowKey, usize>,
    finalizers: Vec<Finalizer>,
    merged: u64,
}

impl Aggregator {
    pub fn new(interval: Duration, max_flows: usize) -> Self {
        Aggregator {
            interval,
            max_flows,
            windows: HashMap::new(),
            opened: None,
            flows: 0,
        }
    }

    /// When the open interval ends (`None`: nothing held).
    pub fn deadline(&self) -> Option<Instant> {
        self.opened.map(|t| t + self.interval)
    }

    /// True when the summaries should go now: the interval is over, or too many flows.
    pub fn is_due(&self, now: Instant) -> bool {
        self.flows >= self.max_flows || self.deadline().is_some_and(|d| now >= d)
    }

    /// Merges a batch's events; the batch is acknowledged with its summaries.
    pub fn add(&mut self, batch: EventBatch, finalizer: Finalizer) {
        self.opened.get_or_insert_with(Instant::now);
        let key = (
            batch.origin.source.clone(),
            batch.origin.subscription_tag.clone(),
            batch.replay,
        );
        let window = self.windows.entry(key).or_insert_with(|| Window {
            out: EventBatch::new(Arc::new(Origin {
                source: batch.origin.source.clone(),
                path: "(aggregated)".into(),
                subscription_tag: batch.origin.subscription_tag.clone(),
            })),
            groups: HashMap::new(),
            flows: HashMap::new(),
            finalizers: Vec::new(),
            merged: 0,
        });
        window.finalizers.push(finalizer);
        // Incoming group index → the window's.
        let mut group_map: Vec<Option<u32>> = vec![None; batch.groups.len()];
        for e in &batch.events {
            let group =
                *group_map[e.group as usize].get_or_insert_with(|| window.intern_group(&batch, e));
            let key = FlowKey {
                group,
                src_ip: e.src_ip,
                dst_ip: e.dst_ip,
                src_port: e.src_port,
                dst_port: e.dst_port,
                protocol: e.protocol.0,
                direction: e.direction,
                action: e.action,
            };
            match window.flows.get(&key) {
                Some(&i) => {
                    merge(&mut window.out.events[i], &mut window.out.summaries[i], e);
                    window.merged += 1;
                }
                None => {
                    window.flows.insert(key, window.out.events.len());
                    window.out.events.push(FlowEvent { group, ..e.clone() });
                    window.out.summaries.push(Summary {
                        last_ms: e.time_ms,
                        count: 1,
                    });
                    self.flows += 1;
                }
            }
        }
    }

    /// The summaries held, one batch per source, each with the merged finalizer of the
    /// batches it stands for.
    pub fn flush(&mut self) -> Vec<(EventBatch, Finalizer)> {
        self.opened = None;
        self.flows = 0;
        self.windows
            .drain()
            .map(|(_, w)| {
                metrics::counter!(m::EVENTS_AGGREGATED_TOTAL).increment(w.merged);
                (w.out, Finalizer::merged(w.finalizers))
            })
            .collect()
    }
}

impl Window {
    fn intern_group(&mut self, batch: &EventBatch, e: &FlowEvent) -> u32 {
        let (g, r) = batch.context_of(e);
        let key = GroupKey {
            resource_id: r.resource_id.clone(),
            kind: r.kind.as_str(),
            rule: g.rule.clone(),
            mac: g.mac,
            acl_id: g.acl_id.clone(),
        };
        let out = &mut self.out;
        *self.groups.entry(key).or_insert_with(|| {
            out.records.push(r.clone());
            let mut group = g.clone();
            group.record = (out.records.len() - 1) as u32;
            out.groups.push(group);
            (out.groups.len() - 1) as u32
        })
    }
}

/// Adds an update to a flow's summary: counters summed, times widened, the latest state.
fn merge(into: &mut FlowEvent, summary: &mut Summary, e: &FlowEvent) {
    let add = |a: Option<u64>, b: Option<u64>| match (a, b) {
        (Some(a), Some(b)) => Some(a.saturating_add(b)),
        (a, b) => a.or(b),
    };
    into.packets_src_to_dst = add(into.packets_src_to_dst, e.packets_src_to_dst);
    into.bytes_src_to_dst = add(into.bytes_src_to_dst, e.bytes_src_to_dst);
    into.packets_dst_to_src = add(into.packets_dst_to_src, e.packets_dst_to_src);
    into.bytes_dst_to_src = add(into.bytes_dst_to_src, e.bytes_dst_to_src);
    // The latest update's state; at equal times an end stays an end.
    let newer = e.time_ms > summary.last_ms;
    if newer || (e.time_ms == summary.last_ms && into.state != Some(FlowState::End)) {
        summary.last_ms = e.time_ms;
        into.state = e.state.or(into.state);
        into.encryption = e.encryption.or(into.encryption);
    }
    into.time_ms = into.time_ms.min(e.time_ms);
    summary.count += 1;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Flattener;

    /// One flow's begin, continue and end updates.
    const RECORD: &str = r#"{"time":"2024-03-04T10:03:00.0000000Z","systemId":"s","macAddress":"000D3A8F7856","category":"NetworkSecurityGroupFlowEvent","resourceId":"/SUBSCRIPTIONS/S/RESOURCEGROUPS/RG/PROVIDERS/MICROSOFT.NETWORK/NETWORKSECURITYGROUPS/NSG","operationName":"NetworkSecurityGroupFlowEvents","properties":{"Version":2,"flows":[{"rule":"UserRule_a","flows":[{"mac":"000D3A8F7856","flowTuples":["1709546520,10.0.0.4,13.67.143.118,50000,443,T,O,A,B,,,,","1709546580,10.0.0.4,13.67.143.118,50000,443,T,O,A,C,10,1000,5,500","1709546640,10.0.0.4,13.67.143.118,50000,443,T,O,A,E,20,2000,10,1000"]}]}]}}"#;

    fn batch() -> EventBatch {
        let mut out = EventBatch::new(Arc::new(Origin {
            source: "s".into(),
            path: "p".into(),
            subscription_tag: None,
        }));
        let added = Flattener::new().flatten_record(RECORD.as_bytes(), &mut out, |p| panic!("{p}"));
        assert_eq!(added, 3);
        out
    }

    #[test]
    fn a_flow_becomes_one_summary_and_a_replay_one_of_its_own() {
        let mut aggregator = Aggregator::new(Duration::from_secs(60), 1000);
        let replayed = |round| EventBatch {
            replay: Some(round),
            ..batch()
        };
        aggregator.add(batch(), Finalizer::detached());
        aggregator.add(replayed(1), Finalizer::detached());
        aggregator.add(replayed(2), Finalizer::detached());
        let out = aggregator.flush();
        assert_eq!(
            out.len(),
            3,
            "the first reading and each round of replays apart"
        );
        for (summaries, _) in &out {
            assert_eq!(summaries.events.len(), 1);
            let e = &summaries.events[0];
            assert_eq!(
                (e.packets_src_to_dst, e.bytes_src_to_dst),
                (Some(30), Some(3000))
            );
            assert_eq!(
                (e.packets_dst_to_src, e.bytes_dst_to_src),
                (Some(15), Some(1500))
            );
            assert_eq!(e.time_ms, 1_709_546_520_000);
            assert_eq!(e.state, Some(FlowState::End));
            assert_eq!(summaries.summaries[0].last_ms, 1_709_546_640_000);
            assert_eq!(summaries.summaries[0].count, 3);
        }
        assert!(aggregator.deadline().is_none());
    }

    #[test]
    fn dedup_drops_repeated_events_only() {
        let mut dedup = Dedup::new(100);
        let mut first = batch();
        assert_eq!(dedup.apply(&mut first), 0);
        assert_eq!(first.events.len(), 3);
        let mut again = batch();
        assert_eq!(dedup.apply(&mut again), 3);
        assert!(again.events.is_empty());
    }
}
