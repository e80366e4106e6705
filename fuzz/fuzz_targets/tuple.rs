//! The flow tuple parser (`flowgate_transform::tuple::parse_tuple`, which is `pub(crate)`)
//! through the public `Flattener::flatten_record`: the input, as UTF-8, is the one tuple
//! string of an NSG Version 1, an NSG Version 2 and a VNet record. Each result is
//! compared with a plain reference parser written from the format's description (split
//! at commas, std's number and address parsers, numbers of at most 20 digits): the same
//! event, or the same error kind.
//! The events are then encoded every way, framing checked.
#![no_main]

use flowgate_core::{
    Action, Direction, Encryption, EventBatch, FlowEvent, FlowState, LogKind, Origin, Protocol,
};
use flowgate_fuzz::{check_batch, Encoders};
use flowgate_transform::{Flattener, ProblemKind, TupleErrorKind as E};
use libfuzzer_sys::{fuzz_target, Corpus};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

fuzz_target!(|data: &[u8]| -> Corpus {
    let Ok(tuple) = std::str::from_utf8(data) else {
        return Corpus::Reject;
    };
    let quoted = serde_json::to_string(tuple).expect("a string serialises");
    let records = [
        (
            LogKind::NsgV1,
            format!(r#"{{"time":"2018-05-01T00:00:00Z","resourceId":"/SUBSCRIPTIONS/S/RESOURCEGROUPS/RG/PROVIDERS/MICROSOFT.NETWORK/NETWORKSECURITYGROUPS/NSG","properties":{{"Version":1,"flows":[{{"rule":"UserRule_a","flows":[{{"mac":"000D3AF87856","flowTuples":[{quoted}]}}]}}]}}}}"#),
        ),
        (
            LogKind::NsgV2,
            format!(r#"{{"time":"2018-05-01T00:00:00Z","resourceId":"/SUBSCRIPTIONS/S/RESOURCEGROUPS/RG/PROVIDERS/MICROSOFT.NETWORK/NETWORKSECURITYGROUPS/NSG","properties":{{"Version":2,"flows":[{{"rule":"DefaultRule_DenyAllInBound","flows":[{{"mac":"000D3AF87856","flowTuples":[{quoted}]}}]}}]}}}}"#),
        ),
        (
            LogKind::VNet,
            format!(r#"{{"time":"2022-09-14T09:00:52Z","flowLogVersion":4,"targetResourceID":"/subscriptions/S/resourceGroups/RG/providers/Microsoft.Compute/virtualMachines/vm","macAddress":"112233445566","flowRecords":{{"flows":[{{"aclID":"00000000-1234-abcd-ef00-c1c2c3c4c5c6","flowGroups":[{{"rule":"DefaultRule_AllowInternetOutBound","flowTuples":[{quoted}]}}]}}]}}}}"#),
        ),
    ];
    let origin = Arc::new(Origin {
        source: "fuzz".into(),
        path: "PT1H.json".into(),
        subscription_tag: None,
    });
    let mut out = EventBatch::new(origin);
    let mut flattener = Flattener::new();
    for (kind, record) in &records {
        let before = out.events.len();
        let mut problems = Vec::new();
        flattener.flatten_record(record.as_bytes(), &mut out, |p| problems.push(p.clone()));
        let got = match problems.as_slice() {
            [] => {
                assert_eq!(out.events.len(), before + 1, "{kind:?}: no event and no problem");
                Ok(out.events.last().expect("one event").clone())
            }
            [p] => {
                assert_eq!(out.events.len(), before, "{kind:?}: an event and a problem");
                match p.kind {
                    ProblemKind::Tuple(k) => Err(k),
                    ProblemKind::Record(k) => panic!("{kind:?}: record rejected ({k:?}): {p}"),
                }
            }
            _ => panic!("{kind:?}: several problems for one tuple: {problems:?}"),
        };
        // The event of this tuple belongs to the last group (when the flattener made
        // one: if it rejected the tuple there may be none, and the comparison fails on
        // the Ok/Err difference, not here).
        let last_group = out.groups.len().checked_sub(1).map_or(u32::MAX, |g| g as u32);
        let want = reference(tuple, *kind).map(|e| FlowEvent {
            group: last_group,
            ..e
        });
        assert_eq!(got, want, "{kind:?} tuple {tuple:?}");
    }
    check_batch(&out);
    Encoders::new().check(&out);
    Corpus::Keep
});

/// The tuple formats as tuple.rs's header describes them, decoded the obvious way.
fn reference(s: &str, kind: LogKind) -> Result<FlowEvent, E> {
    if s.len() > 256 {
        return Err(E::TooLong);
    }
    let f: Vec<&str> = s.split(',').collect();
    let expected = if kind == LogKind::NsgV1 { 8 } else { 13 };
    if f.len() != expected {
        return Err(E::FieldCount);
    }
    let number = |t: &str| -> Option<u64> {
        // Digits only (std's parser would also take a leading `+`), and at most 20 of
        // them, as many as u64::MAX has: the format's numbers are never zero-padded, and
        // flowgate rejects a longer field whatever its value.
        (!t.is_empty() && t.len() <= 20 && t.bytes().all(|b| b.is_ascii_digit()))
            .then(|| t.parse().ok())
            .flatten()
    };
    let ip = |t: &str| -> Option<IpAddr> {
        t.parse::<Ipv4Addr>()
            .map(IpAddr::V4)
            .or_else(|_| t.parse::<Ipv6Addr>().map(IpAddr::V6))
            .ok()
    };
    let ts = number(f[0]).ok_or(E::Timestamp)?;
    let time_ms = if ts < 100_000_000_000 {
        ts.checked_mul(1000).ok_or(E::Timestamp)?
    } else {
        ts
    };
    let src_ip = ip(f[1]).ok_or(E::Address)?;
    let dst_ip = ip(f[2]).ok_or(E::Address)?;
    let port = |t: &str| number(t).and_then(|p| u16::try_from(p).ok()).ok_or(E::Port);
    let src_port = port(f[3])?;
    let dst_port = port(f[4])?;
    let direction = match f[6] {
        "I" => Direction::Inbound,
        "O" => Direction::Outbound,
        _ => return Err(E::Direction),
    };
    let (protocol, action, state, encryption) = match kind {
        LogKind::VNet => {
            let protocol = number(f[5])
                .and_then(|p| u8::try_from(p).ok())
                .ok_or(E::Protocol)?;
            let state = match f[7] {
                "B" => FlowState::Begin,
                "C" => FlowState::Continuing,
                "E" => FlowState::End,
                "D" => FlowState::Denied,
                _ => return Err(E::State),
            };
            let encryption = Encryption::from_code(f[8]).ok_or(E::Encryption)?;
            let action = if state == FlowState::Denied {
                Action::Deny
            } else {
                Action::Allow
            };
            (Protocol(protocol), action, Some(state), Some(encryption))
        }
        _ => {
            let protocol = match f[5] {
                "T" => Protocol::TCP,
                "U" => Protocol::UDP,
                _ => return Err(E::Protocol),
            };
            let action = match f[7] {
                "A" => Action::Allow,
                "D" => Action::Deny,
                _ => return Err(E::Action),
            };
            let state = match kind {
                LogKind::NsgV2 => Some(match f[8] {
                    "B" => FlowState::Begin,
                    "C" => FlowState::Continuing,
                    "E" => FlowState::End,
                    _ => return Err(E::State),
                }),
                _ => None,
            };
            (protocol, action, state, None)
        }
    };
    let counter = |i: usize| -> Result<Option<u64>, E> {
        match f.get(i) {
            None | Some(&"") => Ok(None),
            Some(t) => number(t).map(Some).ok_or(E::Counter),
        }
    };
    Ok(FlowEvent {
        group: 0,
        time_ms,
        src_ip,
        dst_ip,
        src_port,
        dst_port,
        protocol,
        direction,
        action,
        state,
        encryption,
        packets_src_to_dst: counter(9)?,
        bytes_src_to_dst: counter(10)?,
        packets_dst_to_src: counter(11)?,
        bytes_dst_to_src: counter(12)?,
    })
}
