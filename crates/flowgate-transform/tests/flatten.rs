//! The flattener against the seed examples, the field-notes shapes and bad input.

use flowgate_core::{
    Action, Direction, Encryption, EventBatch, FlowState, LogKind, Mac, Origin, Protocol,
};
use flowgate_transform::{Flattener, Problem, ProblemKind, RecordErrorKind, TupleErrorKind};
use std::sync::Arc;

fn fixture(name: &str) -> Vec<Vec<u8>> {
    let path = format!("{}/../../tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    let doc: serde_json::Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    doc["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| serde_json::to_vec(r).unwrap())
        .collect()
}

fn flatten(records: &[Vec<u8>]) -> (EventBatch, Vec<Problem>, Flattener) {
    let origin = Arc::new(Origin {
        source: "test".into(),
        path: "x".into(),
        subscription_tag: None,
    });
    let mut batch = EventBatch::new(origin);
    let mut problems = Vec::new();
    let mut f = Flattener::new();
    for r in records {
        f.flatten_record(r, &mut batch, |p| problems.push(p.clone()));
    }
    (batch, problems, f)
}

#[test]
fn nsg_version_1_seed() {
    let (b, problems, f) = flatten(&fixture("nsg-v1.PT1H.json"));
    assert!(problems.is_empty());
    assert_eq!((f.stats.records, f.stats.tuples), (1, 1));
    let rec = &b.records[0];
    assert_eq!((rec.kind, rec.version), (LogKind::NsgV1, 1));
    assert_eq!(&*rec.resource_group, "MYRESOURCEGROUP");
    assert_eq!(&*rec.resource_name, "MYVM-NSG");
    assert_eq!(&*rec.subscription_id, "<Id>");
    let e = &b.events[0];
    let (g, _) = b.context_of(e);
    assert_eq!(&*g.rule, "UserRule_default-allow-rdp");
    assert_eq!(g.mac.unwrap().to_string(), "00:0D:3A:17:0C:69");
    assert_eq!(e.state, None);
    assert_eq!(e.bytes_src_to_dst, None);
}

#[test]
fn nsg_version_2_seed() {
    let (b, problems, _) = flatten(&fixture("nsg-v2.PT1H.json"));
    assert!(problems.is_empty());
    assert_eq!(b.events.len(), 7);
    assert_eq!(b.groups.len(), 2);
    let rec = &b.records[0];
    assert_eq!(
        &*rec.subscription_id,
        "00000000-0000-0000-0000-000000000000"
    );
    assert_eq!(&*rec.resource_group, "FABRIKAMRG");
    assert_eq!(&*rec.resource_name, "FABRIAKMVM1-NSG");
    assert_eq!(
        rec.system_id.as_deref(),
        Some("a0fca5ce-022c-47b1-9735-89943b42f2fa")
    );
    let denied: Vec<_> = b
        .events
        .iter()
        .filter(|e| e.action == Action::Deny)
        .collect();
    assert_eq!(denied.len(), 3);
    assert!(denied
        .iter()
        .all(|e| e.state == Some(FlowState::Begin) && e.packets_src_to_dst.is_none()));
    let c = &b.events[5];
    assert_eq!(c.state, Some(FlowState::Continuing));
    assert_eq!(
        [
            c.packets_src_to_dst,
            c.bytes_src_to_dst,
            c.packets_dst_to_src,
            c.bytes_dst_to_src
        ],
        [Some(30), Some(16978), Some(24), Some(14008)]
    );
    assert_eq!(c.protocol, Protocol::TCP);
    assert_eq!(b.events[0].protocol, Protocol::UDP);
    assert_eq!(c.direction, Direction::Outbound);
}

#[test]
fn vnet_record() {
    let (b, problems, _) = flatten(&fixture("vnet.PT1H.json"));
    assert!(problems.is_empty(), "{problems:?}");
    assert_eq!(b.events.len(), 8);
    let rec = &b.records[0];
    assert_eq!((rec.kind, rec.version), (LogKind::VNet, 4));
    assert_eq!(&*rec.resource_group, "myResourceGroup");
    assert_eq!(&*rec.resource_name, "myVNet");
    assert_eq!(rec.mac, Mac::parse("112233445566"));
    assert_eq!(
        rec.flow_log_guid.as_deref(),
        Some("66aa66aa-bb77-cc88-dd99-00ee00ee00ee")
    );
    // The repeated aclID gives separate groups; each carries its own ACL and rule.
    let acls: Vec<_> = b
        .groups
        .iter()
        .map(|g| (g.acl_id.as_deref().unwrap(), &*g.rule))
        .collect();
    assert_eq!(
        acls,
        [
            (
                "00000000-1234-abcd-ef00-c1c2c3c4c5c6",
                "DefaultRule_AllowInternetOutBound"
            ),
            (
                "00000000-1234-abcd-ef00-c1c2c3c4c5c6",
                "DefaultRule_DenyAllInBound"
            ),
            ("00000000-0000-0000-0000-000000000000", "PlatformRule"),
            (
                "00000000-1234-abcd-ef00-c1c2c3c4c5c6",
                "UserRule_allow-https"
            ),
        ]
    );
    assert_eq!(b.events[0].time_ms, 1_663_146_003_599, "milliseconds kept");
    let deny = &b.events[4];
    assert_eq!(
        (deny.action, deny.state),
        (Action::Deny, Some(FlowState::Denied))
    );
    assert_eq!(deny.bytes_src_to_dst, None);
    assert_eq!(b.events[5].encryption, Some(Encryption::LocalDestination));
    assert_eq!(b.events[5].protocol, Protocol::UDP);
    assert_eq!(b.events[6].protocol, Protocol::ICMPV6);
    assert!(b.events.iter().all(|e| b.context_of(e).0.mac == rec.mac));
}

#[test]
fn field_notes_shapes() {
    let (b, problems, f) = flatten(&fixture("nsg-edge.PT1H.json"));
    assert!(problems.is_empty(), "{problems:?}");
    assert_eq!(f.stats.records, 2);
    // Exact duplicates are forwarded as they are.
    assert_eq!(b.events[0], b.events[1]);
    // Inner flow without `mac` falls back to the record's macAddress; a rule with
    // `"flows": []` yields nothing; an inner `mac` wins over the record's.
    assert_eq!(b.context_of(&b.events[0]).0.mac, Mac::parse("000D3A8F7856"));
    assert_eq!(b.context_of(&b.events[3]).0.mac, Mac::parse("000D3A8F7857"));
    assert_eq!(
        b.events[2].bytes_src_to_dst,
        Some(0),
        "E tuples may carry zeros"
    );
    assert!(b.events[3].src_ip.is_ipv6() && b.events[3].dst_ip.is_ipv6());
    assert_eq!(
        &*b.context_of(&b.events[0]).0.rule,
        "UserRule_aede8e1fd185211eaae4f962e72ea7eb-TCP-443-Internet-allow-from-anywhere"
    );
    // Second record: other key order, no record-level MAC, older time.
    let last = b.events.last().unwrap();
    let (g, r) = b.context_of(last);
    assert_eq!(&*r.time, "2024-03-04T10:01:00.0000000Z");
    assert_eq!(
        (&*g.rule, g.mac),
        ("UserRule_deny-ssh-east-west", Mac::parse("000D3A8F7856"))
    );
}

#[test]
fn bad_input_is_counted_and_skipped_alone() {
    let (b, problems, f) = flatten(&fixture("bad.PT1H.json"));
    let kinds: Vec<_> = problems.iter().map(|p| (p.kind, p.tuple)).collect();
    assert_eq!(
        kinds,
        [
            (ProblemKind::Tuple(TupleErrorKind::FieldCount), Some(1)),
            (ProblemKind::Tuple(TupleErrorKind::Port), Some(2)),
            (ProblemKind::Tuple(TupleErrorKind::NotAString), Some(3)),
            (ProblemKind::Record(RecordErrorKind::UnknownVersion), None),
            (ProblemKind::Record(RecordErrorKind::InvalidJson), None),
            (ProblemKind::Record(RecordErrorKind::UnknownSchema), None),
        ]
    );
    assert!(
        problems[3].detail.contains("Version 3"),
        "{}",
        problems[3].detail
    );
    // The good neighbours of bad tuples, and the record after bad records, survive.
    assert_eq!(b.events.len(), 3);
    assert_eq!(f.stats.records, 2);
    assert_eq!(f.stats.record_failures(RecordErrorKind::UnknownVersion), 1);
    assert_eq!(f.stats.tuples_failed_total(), 3);
    assert_eq!(&*b.groups[0].rule, "UserRule_a|b=c\\d\nnewline");
}

#[test]
fn garbage_never_panics() {
    let inputs: Vec<&[u8]> = vec![
        b"",
        b"{",
        b"{\"properties\":{\"Version\":2,\"flows\":[{\"rule\":1}]}}",
        b"{\"properties\":{\"Version\":\"2\"}}",
        b"{\"properties\":{\"Version\":2,\"flows\":{}}}",
        b"{\"flowRecords\":{\"flows\":[]},\"flowLogVersion\":99}",
        b"{\"flowRecords\":{\"flows\":[]}}",
        b"{\"time\":\"\xff\xfe\",\"properties\":{\"Version\":1,\"flows\":[]}}",
        b"[1,2,3]",
        b"null",
    ];
    for input in inputs {
        let (b, problems, f) = flatten(&[input.to_vec()]);
        assert!(b.events.is_empty());
        assert_eq!(problems.len(), 1, "{:?}", String::from_utf8_lossy(input));
        assert_eq!(f.stats.records_failed_total(), 1);
    }
}

#[test]
fn oversized_fields_reject_only_their_record() {
    let long_rule = "R".repeat(5000);
    let rec = format!(
        r#"{{"properties":{{"Version":1,"flows":[{{"rule":"{long_rule}","flows":[{{"mac":"000D3AF87856","flowTuples":["1542110402,10.0.0.1,10.0.0.2,1,2,T,I,A"]}}]}}]}}}}"#
    );
    let ok = fixture("nsg-v1.PT1H.json").remove(0);
    let (b, problems, _) = flatten(&[rec.into_bytes(), ok]);
    assert_eq!(problems.len(), 1);
    assert_eq!(
        problems[0].kind,
        ProblemKind::Record(RecordErrorKind::FieldTooLong)
    );
    assert!(problems[0].detail.len() < 200, "detail is shortened");
    assert_eq!(b.events.len(), 1);
}

/// A Version 2 record of one rule and MAC holding `tuples`.
fn record_of(tuples: &[String]) -> Vec<u8> {
    let list: Vec<String> = tuples
        .iter()
        .map(|t| serde_json::to_string(t).unwrap())
        .collect();
    format!(
        r#"{{"time":"2024-03-04T10:00:00.0000000Z","systemId":"x","resourceId":"/SUBSCRIPTIONS/S/RESOURCEGROUPS/RG/PROVIDERS/MICROSOFT.NETWORK/NETWORKSECURITYGROUPS/NSG","properties":{{"Version":2,"flows":[{{"rule":"R1","flows":[{{"mac":"000D3AF87856","flowTuples":[{}]}}]}}]}}}}"#,
        list.join(",")
    )
    .into_bytes()
}

fn tuple(i: usize) -> String {
    format!(
        "{},10.0.0.4,10.0.0.5,{},443,T,I,A,B,,,,",
        1709546400 + i,
        1000 + i
    )
}

#[test]
fn a_big_record_goes_on_in_parts_that_each_carry_its_context() {
    let tuples: Vec<String> = (0..10).map(tuple).collect();
    let origin = Arc::new(Origin {
        source: "test".into(),
        path: "x".into(),
        subscription_tag: None,
    });
    let mut parts: Vec<EventBatch> = Vec::new();
    let mut out = EventBatch::new(origin);
    let mut f = Flattener::new();
    // A small record first: the big one starts in a batch that already holds events.
    f.flatten_record(&record_of(&tuples[..2]), &mut out, |p| panic!("{p}"));
    let added = f.flatten_record_in_parts(
        &record_of(&tuples),
        &mut out,
        3,
        &mut |part| parts.push(part),
        |p| panic!("{p}"),
    );
    assert_eq!(added, 10);
    parts.push(out);
    let sizes: Vec<usize> = parts.iter().map(|p| p.events.len()).collect();
    assert_eq!(sizes, [3, 3, 3, 3], "2 + 10 events in parts of 3");
    let mut ports = Vec::new();
    for part in &parts {
        for e in &part.events {
            let (g, r) = part.context_of(e);
            assert_eq!((&*g.rule, &*r.resource_name), ("R1", "NSG"));
            assert_eq!(g.mac.unwrap().to_string(), "00:0D:3A:F8:78:56");
            ports.push(e.src_port);
        }
        assert!(part.records.len() <= 2 && part.groups.len() <= 2);
    }
    let expected: Vec<u16> = (0..2).chain(0..10).map(|i| 1000 + i as u16).collect();
    assert_eq!(ports, expected, "every tuple once, in order");
}

#[test]
fn tuples_with_escapes_go_through_serde_one_by_one() {
    // An escape anywhere sends the whole array through serde's path.
    let mut tuples: Vec<String> = (0..5).map(tuple).collect();
    tuples[2] = "1709546400,10.0.0.4,10.0.0.5,1002,443,T,I,A,B,,,,\u{1}".into();
    let (b, problems, _) = flatten(&[record_of(&tuples)]);
    assert_eq!(b.events.len(), 4);
    assert_eq!(problems.len(), 1);
    assert_eq!(problems[0].tuple, Some(2));
    let not_strings = br#"{"time":"t","resourceId":"/SUBSCRIPTIONS/S/RESOURCEGROUPS/RG/PROVIDERS/MICROSOFT.NETWORK/NETWORKSECURITYGROUPS/NSG","properties":{"Version":2,"flows":[{"rule":"R","flows":[{"mac":"000D3AF87856","flowTuples":["1709546400,10.0.0.4,10.0.0.5,1,443,T,I,A,B,,,,",7,{"a":1},"1709546400,10.0.0.4,10.0.0.5,2,443,T,I,A,B,,,,"]}]}]}}"#;
    let (b, problems, _) = flatten(&[not_strings.to_vec()]);
    assert_eq!(b.events.len(), 2);
    let at: Vec<Option<usize>> = problems.iter().map(|p| p.tuple).collect();
    assert_eq!(at, [Some(1), Some(2)]);
}

#[test]
fn empty_flow_elements_cost_nothing_and_change_nothing() {
    let empties = vec!["{}"; 1000].join(",");
    let with_empties = format!(
        r#"{{"time":"t","resourceId":"/SUBSCRIPTIONS/S/RESOURCEGROUPS/RG/PROVIDERS/MICROSOFT.NETWORK/NETWORKSECURITYGROUPS/NSG","properties":{{"Version":2,"flows":[{empties},{{"rule":"R","flows":[{empties},{{"flowTuples":[]}},{{"mac":"000D3AF87856","flowTuples":[{:?}]}}]}}]}}}}"#,
        tuple(0)
    );
    let (b, problems, f) = flatten(&[with_empties.into_bytes()]);
    assert!(problems.is_empty(), "{problems:?}");
    assert_eq!((b.events.len(), b.groups.len(), f.stats.records), (1, 1, 1));
    // Bad tuples alone make no group.
    let (b, problems, _) = flatten(&[record_of(&["".into(), "x".into()])]);
    assert_eq!((b.events.len(), b.groups.len(), problems.len()), (0, 0, 2));
}
