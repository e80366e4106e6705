//! The Kafka sink against librdkafka's mock cluster (in this process, on a real socket)
//! and a real broker (tansu, from `scripts/kafka-deps.sh`): every event arrives, in order
//! per key; a broker that goes down mid-stream loses nothing.

use crate::support::{fixture, flowgate, Instance};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::mocking::MockCluster;
use rdkafka::{Message, Offset, TopicPartitionList};
use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

const TOPIC: &str = "nsg-flows";
const PARTITIONS: i32 = 3;

/// flowgate with a local source over `files` and a Kafka sink; the expected CEF lines.
fn setup(files: &[&Path], bootstrap: &str, extra: &str) -> (Instance, Vec<String>) {
    let fg = Instance::new();
    let mut expected = Vec::new();
    for (i, file) in files.iter().enumerate() {
        let dir = fg.path(&format!("in/{i:02}"));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::copy(file, dir.join("PT1H.json")).unwrap();
        let out = flowgate(
            &["convert", "--source", "local", file.to_str().unwrap()],
            None,
        );
        expected.extend(
            String::from_utf8(out.stdout)
                .unwrap()
                .lines()
                .map(str::to_owned),
        );
    }
    let config = format!(
        r#"[sources.local]
type = "local"
path = "{input}"
poll_interval_secs = 0.2

[sinks.kafka]
type = "kafka"
bootstrap_servers = "{bootstrap}"
topic = "{TOPIC}"
key = "nsg"
{extra}

[checkpoints]
path = "{cp}"

[pipeline]
drain_timeout_secs = 20
"#,
        input = fg.path("in").display(),
        cp = fg.path("cp.redb").display(),
    );
    std::fs::write(fg.path("flowgate.toml"), config).unwrap();
    (fg, expected)
}

/// Reads every partition of the topic from the start until `n` messages or `timeout`.
fn consume(bootstrap: &str, n: usize, timeout: Duration) -> Vec<(Vec<u8>, String)> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "flowgate-test")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let mut assignment = TopicPartitionList::new();
    for p in 0..PARTITIONS {
        assignment
            .add_partition_offset(TOPIC, p, Offset::Beginning)
            .unwrap();
    }
    consumer.assign(&assignment).unwrap();
    let mut out = Vec::new();
    let deadline = Instant::now() + timeout;
    while out.len() < n && Instant::now() < deadline {
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(200)) {
            out.push((
                m.key().unwrap_or_default().to_vec(),
                String::from_utf8(m.payload().unwrap_or_default().to_vec()).unwrap(),
            ));
        }
    }
    // Anything beyond `n` would be a duplicate: look a little longer.
    let settle = Instant::now() + Duration::from_millis(500);
    while Instant::now() < settle {
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(100)) {
            out.push((
                m.key().unwrap_or_default().to_vec(),
                String::from_utf8(m.payload().unwrap_or_default().to_vec()).unwrap(),
            ));
        }
    }
    out
}

/// The NSG of a CEF line.
fn nsg_of(cef: &str) -> &str {
    let at = cef.find("deviceExternalId=").expect("deviceExternalId") + 17;
    cef[at..].split(' ').next().unwrap()
}

/// Messages grouped by key, against the expected lines grouped by NSG: the same
/// sequences, each in order.
fn assert_in_order_per_key(got: &[(Vec<u8>, String)], expected: &[String]) {
    let mut by_key: BTreeMap<&[u8], Vec<&str>> = BTreeMap::new();
    for (k, v) in got {
        by_key.entry(k).or_default().push(v);
    }
    let mut by_nsg: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for line in expected {
        by_nsg.entry(nsg_of(line)).or_default().push(line);
    }
    let mut got_seqs: Vec<Vec<&str>> = by_key.into_values().collect();
    let mut want_seqs: Vec<Vec<&str>> = by_nsg.into_values().collect();
    got_seqs.sort();
    want_seqs.sort();
    assert_eq!(got_seqs.len(), want_seqs.len(), "one key per NSG");
    assert!(got_seqs == want_seqs, "every event once, in order per key");
}

#[test]
fn mock_cluster_gets_every_event_in_order_per_key() {
    let mock = MockCluster::new(3).unwrap();
    mock.create_topic(TOPIC, PARTITIONS, 3).unwrap();
    let bootstrap = mock.bootstrap_servers();
    let files = [
        fixture("nsg-v1.PT1H.json"),
        fixture("nsg-v2.PT1H.json"),
        fixture("nsg-edge.PT1H.json"),
        fixture("vnet.PT1H.json"),
    ];
    let files: Vec<&Path> = files.iter().map(|p| p.as_path()).collect();
    let (mut fg, expected) = setup(&files, &bootstrap, "compression = \"lz4\"");
    fg.start();
    let got = consume(&bootstrap, expected.len(), Duration::from_secs(30));
    fg.stop();
    assert_eq!(got.len(), expected.len(), "{}", fg.log());
    assert_in_order_per_key(&got, &expected);
}

#[test]
fn mock_broker_down_mid_stream_then_up_loses_nothing() {
    let mock = MockCluster::new(1).unwrap();
    mock.create_topic(TOPIC, PARTITIONS, 1).unwrap();
    let bootstrap = mock.bootstrap_servers();
    let gen = Instance::new();
    let big = gen.path("big.json");
    let out = flowgate(
        &[
            "generate",
            "--mib",
            "8",
            "--seed",
            "3",
            "--out",
            big.to_str().unwrap(),
        ],
        None,
    );
    assert!(out.status.success());
    let (mut fg, expected) = setup(&[&big], &bootstrap, "");
    fg.start();
    // Down as soon as the first messages are there.
    let first = consume(&bootstrap, 1, Duration::from_secs(30));
    mock.broker_down(-1).unwrap();
    assert!(
        !first.is_empty() && first.len() < expected.len(),
        "{}",
        first.len()
    );
    std::thread::sleep(Duration::from_secs(3));
    mock.broker_up(-1).unwrap();
    let got = consume(&bootstrap, expected.len(), Duration::from_secs(60));
    fg.stop();
    assert_eq!(got.len(), expected.len(), "{}", fg.log());
    // librdkafka's idempotent producer retries without duplicates or reordering.
    assert_in_order_per_key(&got, &expected);
}
