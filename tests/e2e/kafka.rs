//! The Kafka sink against librdkafka's mock cluster (in this process, on a real socket)
//! and a real broker (tansu, from `scripts/kafka-deps.sh`): every event arrives, in order
//! per key; a broker that goes down mid-stream loses nothing.

use crate::operations::http_get;
use crate::support::{fixture, flowgate, free_port, peer, wait_until, Instance};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::mocking::MockCluster;
use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};
use rdkafka::{Message, Offset, TopicPartitionList};
use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

const TOPIC: &str = "nsg-flows";
const PARTITIONS: i32 = 3;

/// flowgate with a local source over `files` and a Kafka sink; the expected CEF lines.
fn setup(files: &[&Path], bootstrap: &str, extra: &str) -> (Instance, Vec<String>) {
    let fg = Instance::new();
    let expected = files
        .iter()
        .enumerate()
        .flat_map(|(i, file)| fg.add_input(i, file))
        .collect();
    fg.write_local_config(&format!(
        r#"[sinks.kafka]
type = "kafka"
bootstrap_servers = "{bootstrap}"
topic = "{TOPIC}"
key = "nsg"
{extra}

[pipeline]
drain_timeout_secs = 20"#
    ));
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

/// `/readyz` says `sink.kafka` is (or is not) ready within `timeout`.
fn kafka_ready_becomes(api: u16, ready: bool, timeout: Duration) -> bool {
    let want = if ready {
        "sink.kafka: ok"
    } else {
        "sink.kafka: not ready"
    };
    wait_until(timeout, || {
        http_get(api, "/readyz").is_some_and(|(_, body)| body.contains(want))
    })
}

#[test]
fn mock_broker_down_mid_stream_then_up_loses_nothing() {
    let mock = MockCluster::new(1).unwrap();
    mock.create_topic(TOPIC, PARTITIONS, 1).unwrap();
    let bootstrap = mock.bootstrap_servers();
    let v2 = fixture("nsg-v2.PT1H.json");
    let api = free_port();
    let (mut fg, mut expected) = setup(
        &[&v2],
        &bootstrap,
        &format!("compression = \"lz4\"\n\n[api]\naddress = \"127.0.0.1:{api}\""),
    );
    fg.start();
    let first = consume(&bootstrap, expected.len(), Duration::from_secs(30));
    assert_eq!(first.len(), expected.len());
    assert!(kafka_ready_becomes(api, true, Duration::from_secs(10)));
    // The broker goes away with nothing left to send: the sink is not ready until the
    // broker is back, then it is without a delivery to prove it.
    mock.broker_down(-1).unwrap();
    assert!(
        kafka_ready_becomes(api, false, Duration::from_secs(15)),
        "{}",
        fg.log()
    );
    mock.broker_up(-1).unwrap();
    assert!(
        kafka_ready_becomes(api, true, Duration::from_secs(20)),
        "{}",
        fg.log()
    );
    // Down again while flowgate is connected, and more flows arrive meanwhile.
    mock.broker_down(-1).unwrap();
    expected.extend(fg.add_input(1, &generated(2, 3)));
    std::thread::sleep(Duration::from_secs(3));
    mock.broker_up(-1).unwrap();
    let got = consume(&bootstrap, expected.len(), Duration::from_secs(60));
    fg.stop();
    assert_eq!(got.len(), expected.len(), "{}", fg.log());
    // librdkafka's idempotent producer retries without duplicates or reordering.
    assert_in_order_per_key(&got, &expected);
}

#[test]
fn batches_refused_and_read_again_are_not_suppressed_as_duplicates() {
    let mock = MockCluster::new(1).unwrap();
    mock.create_topic(TOPIC, PARTITIONS, 1).unwrap();
    // The first produce requests are refused for good: their batches fail, and the
    // source reads them again from the checkpoint. Duplicate suppression has seen those
    // events; it must not drop them the second time. (That aggregation keeps a replay's
    // summaries apart is checked in flowgate-transform's volume tests.)
    mock.request_errors(
        RDKafkaApiKey::Produce,
        &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED; 4],
    );
    let bootstrap = mock.bootstrap_servers();
    let v2 = fixture("nsg-v2.PT1H.json");
    let (mut fg, expected) = setup(
        &[&v2],
        &bootstrap,
        "idempotence = false\n\n[volume]\ndedup = true",
    );
    fg.start();
    let mut got = Vec::new();
    let all_there = wait_until(Duration::from_secs(30), || {
        got = consume(&bootstrap, usize::MAX, Duration::from_millis(500));
        expected
            .iter()
            .all(|line| got.iter().any(|(_, message)| message == line))
    });
    fg.stop();
    let log = fg.log();
    assert!(log.contains("reading again from the checkpoint"), "{log}");
    assert!(
        all_there,
        "{} of {} events arrived\n{log}",
        got.len(),
        expected.len()
    );
}

/// A generated flow log of about `mib` MiB (kept alive by a leaked temp dir).
fn generated(mib: u32, seed: u32) -> std::path::PathBuf {
    let dir = Box::leak(Box::new(tempfile::tempdir().unwrap()));
    let path = dir.path().join("PT1H.json");
    let out = flowgate(
        &[
            "generate",
            "--mib",
            &mib.to_string(),
            "--seed",
            &seed.to_string(),
            "--out",
            path.to_str().unwrap(),
        ],
        None,
    );
    assert!(out.status.success());
    path
}

/// tansu (a real Kafka broker, from `scripts/kafka-deps.sh`), in memory, behind a tansu
/// proxy: stopping the proxy is the outage clients see, while the data stays.
struct Tansu {
    bin: std::path::PathBuf,
    broker: std::process::Child,
    proxy: Option<std::process::Child>,
    broker_port: u16,
    proxy_port: u16,
}

fn tansu_bin() -> Option<std::path::PathBuf> {
    peer(
        "FLOWGATE_TANSU",
        crate::support::repo().join(".peers/tansu/bin/tansu"),
        "tansu",
        "scripts/kafka-deps.sh",
    )
}

impl Tansu {
    fn start() -> Option<Tansu> {
        let bin = tansu_bin()?;
        let broker_port = free_port();
        let url = format!("tcp://127.0.0.1:{broker_port}");
        let broker = Self::spawn(
            &bin,
            &[
                "broker",
                "--listener-url",
                &url,
                "--advertised-listener-url",
                &url,
                "--storage-engine",
                "memory://tansu/",
            ],
            broker_port,
        );
        let mut t = Tansu {
            bin,
            broker,
            proxy: None,
            broker_port,
            proxy_port: free_port(),
        };
        t.start_proxy();
        let created = std::process::Command::new("timeout")
            .arg("30")
            .arg(&t.bin)
            .args(["topic", "create", "--broker", &url, "--partitions"])
            .arg(PARTITIONS.to_string())
            .arg(TOPIC)
            .output()
            .unwrap();
        assert!(
            created.status.success(),
            "topic create: {}",
            String::from_utf8_lossy(&created.stderr)
        );
        Some(t)
    }

    /// Starts `tansu ARGS` and waits for its port: tansu exits 0 on a port collision, so
    /// a process that is gone is a failure.
    fn spawn(bin: &Path, args: &[&str], port: u16) -> std::process::Child {
        let mut child = std::process::Command::new(bin)
            .args(args)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("tansu starts");
        let ready = wait_until(Duration::from_secs(15), || {
            assert!(child.try_wait().unwrap().is_none(), "tansu {args:?} exited");
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        assert!(ready, "tansu {args:?} not listening");
        child
    }

    fn start_proxy(&mut self) {
        let url = format!("tcp://127.0.0.1:{}", self.proxy_port);
        let origin = format!("tcp://127.0.0.1:{}", self.broker_port);
        self.proxy = Some(Self::spawn(
            &self.bin,
            &[
                "proxy",
                "--listener-url",
                &url,
                "--advertised-listener-url",
                &url,
                "--origin-url",
                &origin,
            ],
            self.proxy_port,
        ));
    }

    fn kill_proxy(&mut self) {
        if let Some(mut p) = self.proxy.take() {
            let _ = p.kill();
            let _ = p.wait();
        }
    }

    /// Where clients connect (through the proxy).
    fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.proxy_port)
    }

    /// The broker itself, for the test's consumer.
    fn broker(&self) -> String {
        format!("127.0.0.1:{}", self.broker_port)
    }
}

impl Drop for Tansu {
    fn drop(&mut self) {
        self.kill_proxy();
        let _ = self.broker.kill();
        let _ = self.broker.wait();
    }
}

#[test]
fn tansu_gets_every_event_in_order_per_key_across_an_outage() {
    let Some(mut tansu) = Tansu::start() else {
        return;
    };
    let v1 = fixture("nsg-v1.PT1H.json");
    let vnet = fixture("vnet.PT1H.json");
    let big = generated(2, 5);
    let (mut fg, mut expected) = setup(&[&big, &v1, &vnet], &tansu.bootstrap(), "");
    fg.start();
    let first = consume(&tansu.broker(), expected.len(), Duration::from_secs(60));
    assert_eq!(first.len(), expected.len(), "{}", fg.log());
    // The broker disappears for 5 s while flowgate is connected and more flows arrive,
    // then comes back on the same port.
    tansu.kill_proxy();
    expected.extend(fg.add_input(3, &generated(2, 6)));
    std::thread::sleep(Duration::from_secs(5));
    tansu.start_proxy();
    let got = consume(&tansu.broker(), expected.len(), Duration::from_secs(90));
    fg.stop();
    assert_eq!(got.len(), expected.len(), "{}", fg.log());
    assert_in_order_per_key(&got, &expected);
}
