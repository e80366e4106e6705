//! `[volume]` end to end: aggregation summaries checked against the raw tuples, and
//! duplicate suppression against the converted events with repeats removed.

use crate::support::{flowgate, Instance};
use serde_json::Value;
use std::collections::{BTreeMap, HashSet};

const START: u64 = 1_700_000_000;

/// An NSG Version 2 document: one record per minute, each with the tuples given for it.
pub(crate) fn document(minutes: &[Vec<String>]) -> String {
    let records: Vec<String> = minutes
        .iter()
        .enumerate()
        .map(|(i, tuples)| {
            let tuples: Vec<String> = tuples.iter().map(|t| format!("\"{t}\"")).collect();
            format!(
                r#"{{"time":"2023-11-14T22:{:02}:00.0000000Z","systemId":"s","category":"NetworkSecurityGroupFlowEvent","resourceId":"/SUBSCRIPTIONS/S1/RESOURCEGROUPS/RG/PROVIDERS/MICROSOFT.NETWORK/NETWORKSECURITYGROUPS/NSG1","operationName":"NetworkSecurityGroupFlowEvents","properties":{{"Version":2,"flows":[{{"rule":"UserRule_allow-web","flows":[{{"mac":"000D3AF87856","flowTuples":[{}]}}]}}]}}}}"#,
                13 + i,
                tuples.join(",")
            )
        })
        .collect();
    format!("{{\"records\":[{}]}}", records.join(","))
}

/// Four minutes of updates: a flow that begins, continues twice and ends; one that
/// begins and ends; a scanner denied every minute (begin tuples, no counters); and the
/// same 5-tuple seen inbound as well (a different flow).
fn flows() -> Vec<Vec<String>> {
    let t = |m: u64, s: u64| START + m * 60 + s;
    let web = "10.0.0.4,13.67.143.118,50000,443,T,O,A";
    let api = "10.0.0.5,20.1.1.1,40000,80,T,O,A";
    let scan = "203.0.113.9,10.0.0.4,4444,22,T,I,D";
    let back = "13.67.143.118,10.0.0.4,50000,443,T,I,A";
    vec![
        vec![
            format!("{},{web},B,,,,", t(0, 1)),
            format!("{},{api},B,,,,", t(0, 2)),
            format!("{},{scan},B,,,,", t(0, 3)),
        ],
        vec![
            format!("{},{web},C,5,500,4,400", t(1, 1)),
            format!("{},{api},E,7,700,6,600", t(1, 2)),
            format!("{},{scan},B,,,,", t(1, 3)),
            format!("{},{back},B,,,,", t(1, 4)),
        ],
        vec![
            format!("{},{web},C,3,300,2,200", t(2, 1)),
            format!("{},{scan},B,,,,", t(2, 3)),
            format!("{},{back},E,1,10,1,10", t(2, 4)),
        ],
        vec![
            format!("{},{web},E,1,100,1,100", t(3, 1)),
            format!("{},{scan},B,,,,", t(3, 3)),
        ],
    ]
}

fn json_lines(lines: &[String]) -> Vec<Value> {
    lines
        .iter()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

fn key(v: &Value) -> String {
    [
        "src_ip",
        "dst_ip",
        "src_port",
        "dst_port",
        "protocol",
        "direction",
        "action",
        "rule",
        "mac",
    ]
    .iter()
    .map(|k| v[k].to_string())
    .collect::<Vec<_>>()
    .join("|")
}

fn convert_json(path: &std::path::Path) -> Vec<String> {
    let out = flowgate(
        &[
            "convert",
            "--format",
            "json",
            "--source",
            "local",
            path.to_str().unwrap(),
        ],
        None,
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

#[derive(Debug, Default, PartialEq)]
struct Sums {
    count: u64,
    first: u64,
    last: u64,
    counters: [Option<u64>; 4],
    last_state: String,
}

const COUNTERS: [&str; 4] = [
    "packets_src_to_dst",
    "bytes_src_to_dst",
    "packets_dst_to_src",
    "bytes_dst_to_src",
];

#[test]
fn aggregation_sums_match_the_raw_tuples() {
    let mut fg = Instance::new();
    let doc = fg.path("flows.json");
    std::fs::write(&doc, document(&flows())).unwrap();
    let raw = json_lines(&convert_json(&doc));
    assert_eq!(raw.len(), 12);
    fg.add_input(0, &doc);

    // Expected, from the raw tuples alone.
    let mut want: BTreeMap<String, Sums> = BTreeMap::new();
    for v in &raw {
        let s = want.entry(key(v)).or_default();
        let time = v["time_ms"].as_u64().unwrap();
        if s.count == 0 || time < s.first {
            s.first = time;
        }
        if time >= s.last {
            s.last = time;
            s.last_state = v["flow_state"].as_str().unwrap().to_owned();
        }
        s.count += 1;
        for (sum, k) in s.counters.iter_mut().zip(COUNTERS) {
            if let Some(n) = v[k].as_u64() {
                *sum = Some(sum.unwrap_or(0) + n);
            }
        }
    }
    assert_eq!(want.len(), 4);

    fg.write_local_config(&format!(
        r#"[sinks.file]
type = "file"
path = "{out}"
[sinks.file.encoding]
format = "json"

[volume]
aggregate = true
aggregate_interval_secs = 1"#,
        out = fg.path("out.cef").display(),
    ));
    fg.start();
    fg.wait_for_lines(want.len());
    std::thread::sleep(std::time::Duration::from_millis(1500));
    fg.stop();
    let got_lines = fg.output();
    let mut got: BTreeMap<String, Sums> = BTreeMap::new();
    for v in json_lines(&got_lines) {
        let sums = Sums {
            count: v["count"].as_u64().expect("count"),
            first: v["time_ms"].as_u64().unwrap(),
            last: v["last_seen_ms"].as_u64().expect("last_seen_ms"),
            counters: COUNTERS.map(|k| v[k].as_u64()),
            last_state: v["flow_state"].as_str().unwrap().to_owned(),
        };
        assert!(got.insert(key(&v), sums).is_none(), "one summary per flow");
    }
    assert_eq!(got, want);
    // The web flow: 4 updates, counters 9/900/7/700, from its begin to its end.
    let web = got
        .values()
        .find(|s| s.count == 4 && s.counters[0].is_some())
        .unwrap();
    assert_eq!(web.counters, [Some(9), Some(900), Some(7), Some(700)]);
    assert_eq!(web.last_state, "end");
    // Summaries are delivered, so the checkpoint covers every record (all but the
    // document's closing `]}`).
    let size = std::fs::metadata(&doc).unwrap().len();
    assert_eq!(
        crate::support::checkpoint_offsets(&fg.config()),
        vec![size - 2]
    );
}

#[test]
fn exact_duplicates_are_suppressed_and_nothing_else() {
    let mut fg = Instance::new();
    let mut minutes = flows();
    // Azure rewrote a minute (the same record twice) and a tuple repeats in a record.
    minutes.insert(2, minutes[1].clone());
    let repeated = minutes[0][0].clone();
    minutes[0].push(repeated);
    let doc = fg.path("flows.json");
    std::fs::write(&doc, document(&minutes)).unwrap();
    let all = convert_json(&doc);
    // Duplicates after the first are exactly the lines seen before, except for the
    // record time of the repeated minute, which differs (it is a later record).
    let mut seen = HashSet::new();
    let want: Vec<String> = all
        .iter()
        .filter(|l| {
            let mut v: Value = serde_json::from_str(l).unwrap();
            v.as_object_mut().unwrap().remove("record_time");
            seen.insert(v.to_string())
        })
        .cloned()
        .collect();
    assert_eq!(
        all.len() - want.len(),
        5,
        "4 from the repeated minute, 1 repeated tuple"
    );
    fg.add_input(0, &doc);
    fg.write_local_config(&format!(
        r#"[sinks.file]
type = "file"
path = "{out}"
[sinks.file.encoding]
format = "json"

[volume]
dedup = true"#,
        out = fg.path("out.cef").display(),
    ));
    fg.start();
    fg.wait_for_lines(want.len());
    std::thread::sleep(std::time::Duration::from_millis(500));
    fg.stop();
    assert_eq!(fg.output(), want);
}

#[test]
fn summaries_held_for_the_interval_are_delivered_on_shutdown() {
    let mut fg = Instance::new();
    let doc = fg.path("flows.json");
    std::fs::write(&doc, document(&flows())).unwrap();
    fg.add_input(0, &doc);
    fg.write_local_config(&format!(
        r#"[sinks.file]
type = "file"
path = "{out}"
[sinks.file.encoding]
format = "json"

[volume]
aggregate = true
aggregate_interval_secs = 3600"#,
        out = fg.path("out.cef").display(),
    ));
    fg.start();
    std::thread::sleep(std::time::Duration::from_millis(1500));
    assert!(fg.output().is_empty(), "held until the interval ends");
    fg.stop();
    let got = json_lines(&fg.output());
    assert_eq!(got.len(), 4);
    assert_eq!(
        got.iter()
            .map(|v| v["count"].as_u64().unwrap())
            .sum::<u64>(),
        12
    );
    let size = std::fs::metadata(&doc).unwrap().len();
    assert_eq!(
        crate::support::checkpoint_offsets(&fg.config()),
        vec![size - 2]
    );
}
