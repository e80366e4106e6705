//! Every format parsed back by a parser that is not ours: each value must come back exactly as
//! the flattened event has it, whatever the rule name contains (`|`, `=`, `\`, newline).

use crate::support::{fixture, flowgate, python_with_cefp, repo};
use flowgate_core::{Direction, EventBatch, Origin};
use flowgate_source::extract::extract;
use flowgate_transform::Flattener;
use std::collections::BTreeMap;
use std::io::Write;
use std::process::{Command, Stdio};
use std::sync::Arc;

pub(crate) type Parsed = (BTreeMap<String, String>, BTreeMap<String, String>);

pub(crate) fn cef_parse(python: &std::path::Path, cef: &[u8]) -> Vec<Parsed> {
    let mut child = Command::new(python)
        .arg(repo().join("tests/tools/cef_parse.py"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(cef).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "cefp: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            let map = |v: &serde_json::Value| -> BTreeMap<String, String> {
                v.as_object()
                    .unwrap()
                    .iter()
                    .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_owned()))
                    .collect()
            };
            (map(&v["header"]), map(&v["extensions"]))
        })
        .collect()
}

fn events_of(name: &str) -> EventBatch {
    let doc = std::fs::read(fixture(name)).unwrap();
    let ex = extract(&doc, true);
    let mut batch = EventBatch::new(Arc::new(Origin {
        source: "t".into(),
        path: name.into(),
        subscription_tag: None,
    }));
    let mut f = Flattener::new();
    for r in ex.records {
        f.flatten_record(&doc[r], &mut batch, |_| {});
    }
    batch
}

#[test]
fn every_value_survives_a_real_cef_parser() {
    let Some(python) = python_with_cefp() else {
        return;
    };
    for name in ["nsg-v1", "nsg-v2", "vnet", "nsg-edge", "bad"] {
        let file = format!("{name}.PT1H.json");
        let path = fixture(&file);
        for syslog in ["none", "rfc5424", "rfc3164"] {
            let out = flowgate(
                &["convert", "--syslog", syslog, path.to_str().unwrap()],
                None,
            );
            let parsed = cef_parse(&python, &out.stdout);
            let batch = events_of(&file);
            assert_eq!(parsed.len(), batch.events.len(), "{name} {syslog}");
            for ((header, ext), e) in parsed.iter().zip(&batch.events) {
                let (g, r) = batch.context_of(e);
                assert_eq!(header["vendor"], "Microsoft.Network");
                assert_eq!(header["signature_id"], &*r.category);
                assert_eq!(ext["cs1"], &*g.rule, "{name}: rule name round trip");
                assert_eq!(ext["cs1Label"], "NSGRuleName");
                assert_eq!(
                    ext["deviceExternalId"],
                    format!(
                        "{}/{}/{}",
                        r.subscription_id, r.resource_group, r.resource_name
                    )
                );
                assert_eq!(ext["rt"], e.time_ms.to_string());
                let (src_key, dst_key) = if e.src_ip.is_ipv4() {
                    ("src", "dst")
                } else {
                    ("c6a2", "c6a3")
                };
                assert_eq!(ext[src_key], e.src_ip.to_string());
                assert_eq!(ext[dst_key], e.dst_ip.to_string());
                assert_eq!(ext["spt"], e.src_port.to_string());
                assert_eq!(ext["dpt"], e.dst_port.to_string());
                assert_eq!(ext["act"], e.action.code());
                let inbound = e.direction == Direction::Inbound;
                assert_eq!(ext["deviceDirection"], if inbound { "0" } else { "1" });
                if let Some(mac) = g.mac {
                    assert_eq!(ext[if inbound { "dmac" } else { "smac" }], mac.to_string());
                }
                assert_eq!(
                    ext.get("cs2").map(String::as_str),
                    e.state.map(|s| s.code())
                );
                let bytes_in = if inbound {
                    e.bytes_src_to_dst
                } else {
                    e.bytes_dst_to_src
                };
                assert_eq!(ext.get("bytesIn").cloned(), bytes_in.map(|b| b.to_string()));
                assert_eq!(
                    ext.get("cn1").cloned(),
                    e.packets_src_to_dst.map(|b| b.to_string())
                );
            }
        }
    }
}

#[test]
fn json_lines_parse_and_match_the_events() {
    for name in ["nsg-v1", "nsg-v2", "vnet", "nsg-edge", "bad"] {
        let file = format!("{name}.PT1H.json");
        let out = flowgate(
            &[
                "convert",
                "--format",
                "json",
                fixture(&file).to_str().unwrap(),
            ],
            None,
        );
        let batch = events_of(&file);
        let lines: Vec<_> = String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .map(str::to_owned)
            .collect();
        assert_eq!(lines.len(), batch.events.len());
        for (line, e) in lines.iter().zip(&batch.events) {
            let v: serde_json::Value = serde_json::from_str(line).expect("valid JSON");
            let (g, r) = batch.context_of(e);
            assert_eq!(v["rule"], &*g.rule);
            assert_eq!(v["time_ms"], e.time_ms);
            assert_eq!(v["src_ip"], e.src_ip.to_string());
            assert_eq!(v["dst_port"], e.dst_port);
            assert_eq!(v["action"], e.action.as_str());
            assert_eq!(v["resource_group"], &*r.resource_group);
            assert_eq!(
                v.get("bytes_src_to_dst").and_then(|b| b.as_u64()),
                e.bytes_src_to_dst
            );
            assert_eq!(
                v.get("flow_state").and_then(|s| s.as_str()),
                e.state.map(|s| s.as_str())
            );
        }
    }
}

/// A LEEF 2.0 reader written from IBM's description, independent of the encoder.
fn parse_leef(line: &str) -> (Vec<String>, BTreeMap<String, String>) {
    let mut header = Vec::new();
    let mut field = String::new();
    let mut chars = line.chars();
    while header.len() < 6 {
        match chars.next().expect("complete header") {
            '\\' => field.push(chars.next().expect("escaped char")),
            '|' => header.push(std::mem::take(&mut field)),
            c => field.push(c),
        }
    }
    assert_eq!(header[5], "x09", "tab delimiter declared");
    let rest: String = chars.collect();
    let attrs = rest
        .split('\t')
        .map(|pair| {
            let (k, v) = pair.split_once('=').expect("key=value");
            let mut value = String::new();
            let mut it = v.chars();
            while let Some(c) = it.next() {
                if c == '\\' {
                    match it.next() {
                        Some('t') => value.push('\t'),
                        Some('n') => value.push('\n'),
                        Some('r') => value.push('\r'),
                        Some(other) => value.push(other),
                        None => panic!("dangling backslash in {pair:?}"),
                    }
                } else {
                    value.push(c);
                }
            }
            (k.to_owned(), value)
        })
        .collect();
    (header, attrs)
}

#[test]
fn leef_attributes_parse_and_match_the_events() {
    for name in ["nsg-v1", "nsg-v2", "vnet", "nsg-edge", "bad"] {
        let file = format!("{name}.PT1H.json");
        let out = flowgate(
            &[
                "convert",
                "--format",
                "leef",
                fixture(&file).to_str().unwrap(),
            ],
            None,
        );
        let batch = events_of(&file);
        let text = String::from_utf8(out.stdout).unwrap();
        let lines: Vec<_> = text.lines().collect();
        assert_eq!(lines.len(), batch.events.len());
        for (line, e) in lines.iter().zip(&batch.events) {
            let (header, a) = parse_leef(line);
            let (g, r) = batch.context_of(e);
            assert_eq!(header[0], "LEEF:2.0");
            assert_eq!(
                header[4],
                if e.action.code() == "D" {
                    "FlowDenied"
                } else {
                    "FlowAllowed"
                }
            );
            assert_eq!(a["ruleName"], &*g.rule, "{name}: rule name round trip");
            assert_eq!(a["src"], e.src_ip.to_string());
            assert_eq!(a["dstPort"], e.dst_port.to_string());
            assert_eq!(a["resourceId"], &*r.resource_id);
            assert_eq!(
                a.get("srcBytes").cloned(),
                e.bytes_src_to_dst.map(|b| b.to_string())
            );
        }
    }
}
