//! Record → context, groups and one event per tuple.

use crate::problem::{shorten, Problem, ProblemKind, RecordErrorKind, TupleErrorKind};
use crate::raw::{for_each_tuple, RawRecord};
use crate::resource_id::ResourceIdParts;
use crate::tuple::parse_tuple;
use flowgate_core::{
    metric_names as m, EventBatch, Finalizer, FlowGroup, LogKind, Mac, RecordBatch, RecordContext,
};
use serde_json::value::RawValue;

/// Context strings (rule names, resource ids, ...) longer than this reject their record:
/// Azure's are far shorter, and a SIEM would truncate them anyway.
pub const MAX_FIELD_BYTES: usize = 4096;

/// VNet flow log versions whose tuple layout flowgate knows.
const VNET_VERSIONS: &[u32] = &[4];

/// Counts kept by a [`Flattener`] since it was created.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct FlattenStats {
    pub records: u64,
    pub tuples: u64,
    pub records_failed: [u64; RecordErrorKind::ALL.len()],
    pub tuples_failed: [u64; TupleErrorKind::ALL.len()],
}

impl FlattenStats {
    pub fn records_failed_total(&self) -> u64 {
        self.records_failed.iter().sum()
    }
    pub fn tuples_failed_total(&self) -> u64 {
        self.tuples_failed.iter().sum()
    }
    pub fn record_failures(&self, kind: RecordErrorKind) -> u64 {
        self.records_failed[kind as usize]
    }
    pub fn tuple_failures(&self, kind: TupleErrorKind) -> u64 {
        self.tuples_failed[kind as usize]
    }

    fn count(&mut self, kind: ProblemKind) {
        match kind {
            ProblemKind::Record(k) => self.records_failed[k as usize] += 1,
            ProblemKind::Tuple(k) => self.tuples_failed[k as usize] += 1,
        }
    }

    /// Adds the difference `self - before` to the process metrics.
    fn publish_since(&self, before: &FlattenStats) {
        metrics::counter!(m::RECORDS_TOTAL).increment(self.records - before.records);
        metrics::counter!(m::TUPLES_TOTAL).increment(self.tuples - before.tuples);
        for k in RecordErrorKind::ALL {
            let d = self.record_failures(k) - before.record_failures(k);
            if d > 0 {
                metrics::counter!(m::RECORDS_FAILED_TOTAL, "reason" => k.reason()).increment(d);
            }
        }
        for k in TupleErrorKind::ALL {
            let d = self.tuple_failures(k) - before.tuple_failures(k);
            if d > 0 {
                metrics::counter!(m::TUPLES_FAILED_TOTAL, "reason" => k.reason()).increment(d);
            }
        }
    }
}

/// Turns records into events and counts what it skipped.
#[derive(Debug, Default)]
pub struct Flattener {
    pub stats: FlattenStats,
}

impl Flattener {
    pub fn new() -> Self {
        Self::default()
    }

    /// Flattens every record of a batch. Problems go to `on_problem` with the absolute
    /// byte offset of their record; they are also counted in [`Self::stats`] and metrics.
    pub fn flatten_batch(
        &mut self,
        batch: RecordBatch,
        on_problem: impl FnMut(u64, &Problem),
    ) -> (EventBatch, Finalizer) {
        self.flatten_batch_in_parts(batch, usize::MAX, on_problem, |_, _| {
            unreachable!("no limit")
        })
    }

    /// [`Self::flatten_batch`] in parts of at most `max_events` events: each full part
    /// goes to `on_part` with the batch's finalizer (to clone: the parts share the
    /// batch's acknowledgement), and the last one is returned. A record of millions of
    /// tuples then costs a part's memory at a time, not its whole event list.
    pub fn flatten_batch_in_parts(
        &mut self,
        batch: RecordBatch,
        max_events: usize,
        mut on_problem: impl FnMut(u64, &Problem),
        mut on_part: impl FnMut(EventBatch, &Finalizer),
    ) -> (EventBatch, Finalizer) {
        let before = self.stats.clone();
        let mut out = EventBatch::new(batch.origin);
        out.replay = batch.replay;
        out.events
            .reserve((batch.data.len() / 64).min(max_events.max(1)));
        let finalizer = batch.finalizer;
        for span in &batch.records {
            let offset = batch.start + span.start as u64;
            self.flatten_record_in_parts(
                &batch.data[span.clone()],
                &mut out,
                max_events,
                &mut |part| on_part(part, &finalizer),
                |p| on_problem(offset, p),
            );
        }
        self.stats.publish_since(&before);
        (out, finalizer)
    }

    /// Appends one record's context, groups and events to `out`. Returns the number of
    /// events added; every skipped tuple, or the whole record, is reported to `on_problem`.
    pub fn flatten_record(
        &mut self,
        json: &[u8],
        out: &mut EventBatch,
        on_problem: impl FnMut(&Problem),
    ) -> usize {
        self.flatten_record_in_parts(
            json,
            out,
            usize::MAX,
            &mut |_| unreachable!("no limit"),
            on_problem,
        )
    }

    /// [`Self::flatten_record`], handing `out` to `on_part` (and going on in a new batch
    /// with a copy of the record's context) whenever it holds `max_events` events.
    pub fn flatten_record_in_parts(
        &mut self,
        json: &[u8],
        out: &mut EventBatch,
        max_events: usize,
        on_part: &mut dyn FnMut(EventBatch),
        mut on_problem: impl FnMut(&Problem),
    ) -> usize {
        let raw: RawRecord = match serde_json::from_slice(json) {
            Ok(r) => r,
            Err(e) => {
                let p = record_problem(RecordErrorKind::InvalidJson, e.to_string());
                self.stats.count(p.kind);
                on_problem(&p);
                return 0;
            }
        };
        let context = match record_context(&raw) {
            Ok(c) => c,
            Err(p) => {
                self.stats.count(p.kind);
                on_problem(&p);
                return 0;
            }
        };
        let mut record = RecordFlattener {
            kind: context.kind,
            record_index: out.records.len() as u32,
            record_mac: context.mac,
            tuple_index: 0,
            added: 0,
            max_events: max_events.max(1),
            out,
            on_part,
            stats: &mut self.stats,
            on_problem,
        };
        record.out.records.push(context);
        if let Some(props) = raw
            .properties
            .as_ref()
            .filter(|_| record.kind != LogKind::VNet)
        {
            for rule in props.flows.iter() {
                for mac_flow in rule.flows.iter() {
                    let mac = mac_flow.mac.as_deref().and_then(Mac::parse);
                    record.group(rule.rule.as_deref(), mac, None, mac_flow.flow_tuples);
                }
            }
        } else if let Some(records) = &raw.flow_records {
            for acl in records.flows.iter() {
                for group in acl.flow_groups.iter() {
                    record.group(
                        group.rule.as_deref(),
                        None,
                        acl.acl_id.as_deref(),
                        group.flow_tuples,
                    );
                }
            }
        }
        let added = record.added;
        self.stats.records += 1;
        self.stats.tuples += added as u64;
        added
    }
}

/// The state of flattening one record into a batch.
struct RecordFlattener<'a, P> {
    kind: LogKind,
    record_index: u32,
    record_mac: Option<Mac>,
    /// Position of the next tuple in the record, for problem reports.
    tuple_index: usize,
    /// Events of this record so far, in every part.
    added: usize,
    max_events: usize,
    out: &'a mut EventBatch,
    on_part: &'a mut dyn FnMut(EventBatch),
    stats: &'a mut FlattenStats,
    on_problem: P,
}

impl<P: FnMut(&Problem)> RecordFlattener<'_, P> {
    fn report(&mut self, p: Problem) {
        self.stats.count(p.kind);
        (self.on_problem)(&p);
    }

    /// One rule × MAC (NSG) or rule × ACL (VNet) and its tuples; the group is created
    /// with its first event, so tuples that are all empty or bad leave no trace.
    fn group(
        &mut self,
        rule: Option<&str>,
        mac: Option<Mac>,
        acl_id: Option<&str>,
        tuples: Option<&RawValue>,
    ) {
        let mut group: Option<u32> = None;
        let walked = for_each_tuple(tuples, |tuple| {
            if self.out.events.len() >= self.max_events {
                self.next_part();
                group = None;
            }
            // The index the group gets if this tuple is its first event.
            let g = group.unwrap_or(self.out.groups.len() as u32);
            let result = match &tuple {
                Some(s) => parse_tuple(s, self.kind, g).map_err(|k| (k, shorten(s))),
                None => Err((TupleErrorKind::NotAString, "not a string".to_owned())),
            };
            match result {
                Ok(event) => {
                    if group.is_none() {
                        self.out.groups.push(FlowGroup {
                            record: self.record_index,
                            rule: rule.map(Box::from).unwrap_or_default(),
                            mac: mac.or(self.record_mac),
                            acl_id: acl_id.map(Box::from),
                        });
                        group = Some(g);
                    }
                    self.out.events.push(event);
                    self.added += 1;
                }
                Err((kind, detail)) => self.report(Problem {
                    kind: ProblemKind::Tuple(kind),
                    tuple: Some(self.tuple_index),
                    detail,
                    raw: tuple.as_deref().map(|s| Box::from(first_mib(s))),
                }),
            }
            self.tuple_index += 1;
        });
        if let Err(e) = walked {
            self.report(Problem {
                kind: ProblemKind::Tuple(TupleErrorKind::NotAString),
                tuple: Some(self.tuple_index),
                detail: format!("flowTuples: {e}"),
                raw: None,
            });
        }
    }

    /// Hands the full batch on and goes on in a new one that starts with this record's
    /// context.
    fn next_part(&mut self) {
        let context = self.out.records[self.record_index as usize].clone();
        let mut part = EventBatch::new(self.out.origin.clone());
        part.replay = self.out.replay;
        part.records.push(context);
        part.events.reserve(self.max_events.min(1 << 16));
        (self.on_part)(std::mem::replace(self.out, part));
        self.record_index = 0;
    }
}

fn record_problem(kind: RecordErrorKind, detail: String) -> Problem {
    Problem {
        kind: ProblemKind::Record(kind),
        tuple: None,
        detail,
        raw: None,
    }
}

/// At most the first MiB of `s`, cut on a character boundary.
fn first_mib(s: &str) -> &str {
    let mut end = s.len().min(1 << 20);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// Decides the schema and builds the context shared by every tuple of the record.
fn record_context(raw: &RawRecord) -> Result<RecordContext, Problem> {
    let (kind, version, default_category, default_operation) =
        if raw.flow_records.is_some() || raw.flow_log_version.is_some() {
            let v = raw.flow_log_version.unwrap_or(0);
            if !VNET_VERSIONS.contains(&v) {
                return Err(record_problem(
                    RecordErrorKind::UnknownVersion,
                    format!(
                        "VNet flowLogVersion {}",
                        display_version(raw.flow_log_version)
                    ),
                ));
            }
            (LogKind::VNet, v, "FlowLogFlowEvent", "FlowLogFlowEvent")
        } else if let Some(props) = &raw.properties {
            let kind = match props.version {
                Some(1) => LogKind::NsgV1,
                Some(2) => LogKind::NsgV2,
                other => {
                    return Err(record_problem(
                        RecordErrorKind::UnknownVersion,
                        format!("NSG properties.Version {}", display_version(other)),
                    ))
                }
            };
            let v = props.version.unwrap_or_default();
            (
                kind,
                v,
                "NetworkSecurityGroupFlowEvent",
                "NetworkSecurityGroupFlowEvents",
            )
        } else {
            return Err(record_problem(
                RecordErrorKind::UnknownSchema,
                "neither properties.flows (NSG) nor flowRecords (VNet)".to_owned(),
            ));
        };

    let resource_id = match kind {
        LogKind::VNet => raw
            .target_resource_id
            .as_deref()
            .or(raw.flow_log_resource_id.as_deref()),
        _ => raw.resource_id.as_deref(),
    }
    .unwrap_or("");
    let rules = raw
        .properties
        .iter()
        .flat_map(|p| p.flows.iter().filter_map(|f| f.rule.as_deref()));
    let vnet_strings = raw.flow_records.iter().flat_map(|r| {
        r.flows.iter().flat_map(|a| {
            a.acl_id
                .as_deref()
                .into_iter()
                .chain(a.flow_groups.iter().filter_map(|g| g.rule.as_deref()))
        })
    });
    let strings = [
        raw.time.as_deref(),
        raw.category.as_deref(),
        raw.operation_name.as_deref(),
        raw.system_id.as_deref(),
        raw.flow_log_guid.as_deref(),
        raw.flow_log_resource_id.as_deref(),
        Some(resource_id),
    ];
    if let Some(long) = strings
        .into_iter()
        .flatten()
        .chain(rules)
        .chain(vnet_strings)
        .find(|s| s.len() > MAX_FIELD_BYTES)
    {
        return Err(record_problem(
            RecordErrorKind::FieldTooLong,
            format!("a field of {} bytes: {}", long.len(), shorten(long)),
        ));
    }

    let parts = ResourceIdParts::parse(resource_id);
    let boxed = |s: Option<&str>, default: &str| Box::from(s.unwrap_or(default));
    Ok(RecordContext {
        kind,
        version,
        time: boxed(raw.time.as_deref(), ""),
        category: boxed(raw.category.as_deref(), default_category),
        operation_name: boxed(raw.operation_name.as_deref(), default_operation),
        system_id: raw.system_id.as_deref().map(Box::from),
        resource_id: Box::from(resource_id),
        subscription_id: Box::from(parts.subscription_id),
        resource_group: Box::from(parts.resource_group),
        resource_name: Box::from(parts.name),
        mac: raw.mac_address.as_deref().and_then(Mac::parse),
        flow_log_guid: raw.flow_log_guid.as_deref().map(Box::from),
        flow_log_resource_id: raw.flow_log_resource_id.as_deref().map(Box::from),
    })
}

fn display_version(v: Option<u32>) -> String {
    v.map_or_else(|| "missing".to_owned(), |v| v.to_string())
}
