//! Coordinated instances against a real Azurite: several `flowgate run` processes share one
//! container through blob leases in a state container, while `flowgate simulate` writes
//! blobs the way Network Watcher does. Every tuple is counted across all instances' files.

use crate::azure::{azurite_bin, Azurite};
use crate::operations::http_get;
use crate::support::{
    bin, converted_as, files_under, free_port, in_ci, repo, wait_until, Instance,
};
use flowgate_source::cluster::assign::assign;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const PARTITIONS: u32 = 12;

/// One `flowgate run` of the cluster.
struct Member {
    fg: Instance,
    name: String,
    api: u16,
}

impl Member {
    fn new(name: &str, endpoint: &str) -> Member {
        let fg = Instance::new();
        let api = free_port();
        let config = format!(
            r#"
[sources.azure]
type = "azure_blob"
use_emulator = true
endpoint = "{endpoint}"
poll_interval_secs = 0.3
request_timeout_secs = 3
# The tests write blobs of past hours: list the whole container on every poll.
full_listing_interval_secs = 0.3

[sinks.file]
type = "file"
path = "{out}"

[checkpoints.cluster]
instance = "{name}"
partitions = {PARTITIONS}
lease_secs = 15
checkpoint_interval_secs = 0.5

[checkpoints.cluster.account]
use_emulator = true
endpoint = "{endpoint}"
request_timeout_secs = 3

[api]
address = "127.0.0.1:{api}"

[log]
format = "json"

[pipeline]
drain_timeout_secs = 10
"#,
            out = fg.path("out.cef").display(),
        );
        std::fs::write(fg.path("flowgate.toml"), config).unwrap();
        let mut member = Member {
            fg,
            name: name.into(),
            api,
        };
        member.fg.start();
        member
    }

    /// Partitions it owns, as its `/metrics` says (None while it does not answer).
    fn owned(&self) -> Option<u32> {
        let (_, body) = http_get(self.api, "/metrics")?;
        let series = "flowgate_cluster_partitions_owned{source=\"azure\"} ";
        body.lines()
            .find_map(|l| l.strip_prefix(series))
            .and_then(|v| v.trim().parse::<f64>().ok())
            .map(|v| v as u32)
    }

    fn metric(&self, series: &str) -> f64 {
        let body = http_get(self.api, "/metrics")
            .map(|(_, b)| b)
            .unwrap_or_default();
        body.lines()
            .filter_map(|l| l.strip_prefix(series))
            .filter_map(|v| v.trim().parse::<f64>().ok())
            .sum()
    }

    /// (time, partition, "acquired" | "dropped") from its JSON log, in order.
    fn ownership_log(&self) -> Vec<(String, u64, &'static str)> {
        self.fg
            .log()
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter_map(|v| {
                let message = v["fields"]["message"].as_str()?;
                let what = match message {
                    "cluster: partition acquired" => "acquired",
                    "cluster: partition dropped"
                    | "cluster: lease of partition not renewed in time; stopped reading it"
                    | "cluster: lease of partition lost; stopped reading it"
                    | "cluster: handing partition over" => "dropped",
                    _ => return None,
                };
                let partition = v["fields"]["partition"].as_u64()?;
                Some((v["timestamp"].as_str()?.to_owned(), partition, what))
            })
            .collect()
    }
}

/// Waits until the members own these numbers of partitions.
fn wait_for_shares(members: &[&Member], shares: &[u32], within: Duration) {
    let ok = wait_until(within, || {
        members.iter().map(|m| m.owned()).collect::<Vec<_>>()
            == shares.iter().map(|s| Some(*s)).collect::<Vec<_>>()
    });
    let now: Vec<_> = members
        .iter()
        .map(|m| (m.name.clone(), m.owned()))
        .collect();
    assert!(
        ok,
        "shares {now:?}, expected {shares:?}\n{}",
        members[0].fg.log()
    );
}

/// `flowgate simulate` into the container, `intervals` records per blob one second apart,
/// starting in the hour `hours_ago`; the blobs are mirrored into `mirror`.
fn simulate(config: &str, mirror: &Path, hours_ago: u64, seed: u64, intervals: usize) -> Child {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let start = (now / 3600 - hours_ago) * 3600 + 60;
    Command::new(bin())
        .args(["simulate", "--config", config, "--source", "azure"])
        .args(["--nsgs", "8", "--macs", "2", "--interval-secs", "1"])
        .args([
            "--intervals",
            &intervals.to_string(),
            "--seed",
            &seed.to_string(),
        ])
        .args(["--start", &start.to_string(), "--mirror"])
        .arg(mirror)
        .stdout(Stdio::null())
        .spawn()
        .unwrap()
}

fn finish(mut child: Child) {
    let status = child.wait().unwrap();
    assert!(status.success(), "simulate failed");
}

/// Every mirrored blob converted: the lines that must arrive.
fn expected(mirror: &Path) -> Vec<String> {
    files_under(mirror)
        .iter()
        .flat_map(|path| converted_as(path, "azure"))
        .collect()
}

/// How often each line arrived, over every member's file.
fn arrived(members: &[&Member]) -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    for m in members {
        for line in m.fg.output() {
            *counts.entry(line).or_default() += 1;
        }
    }
    counts
}

/// (lost, duplicates) of `expected` in what arrived.
fn tally(expected: &[String], arrived: &HashMap<String, usize>) -> (usize, usize) {
    let mut want: HashMap<&str, usize> = HashMap::new();
    for l in expected {
        *want.entry(l).or_default() += 1;
    }
    let lost = want
        .iter()
        .map(|(l, n)| n.saturating_sub(arrived.get(*l).copied().unwrap_or(0)))
        .sum();
    let extra = arrived
        .iter()
        .map(|(l, n)| n.saturating_sub(want.get(l.as_str()).copied().unwrap_or(0)))
        .sum();
    (lost, extra)
}

fn wait_for_all(expected: &[String], members: &[&Member], within: Duration) {
    let ok = wait_until(within, || tally(expected, &arrived(members)).0 == 0);
    let (lost, dups) = tally(expected, &arrived(members));
    assert!(
        ok,
        "{lost} of {} lines missing ({dups} duplicates)",
        expected.len()
    );
}

#[test]
fn instances_share_the_partitions_evenly_rebalance_when_one_joins_and_deliver_every_tuple_once() {
    let Some(azurite_bin) = azurite_bin() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let azurite = Azurite::start(azurite_bin, dir.path().join("azurite"));
    let endpoint = azurite.endpoint();
    let a = Member::new("fg-a", &endpoint);
    let b = Member::new("fg-b", &endpoint);
    let c = Member::new("fg-c", &endpoint);
    wait_for_shares(&[&a, &b, &c], &[4, 4, 4], Duration::from_secs(60));

    let first = dir.path().join("first");
    finish(simulate(&a.fg.config(), &first, 3, 1, 6));
    let first = expected(&first);
    wait_for_all(&first, &[&a, &b, &c], Duration::from_secs(60));
    assert_eq!(
        tally(&first, &arrived(&[&a, &b, &c])),
        (0, 0),
        "exactly once"
    );
    for m in [&a, &b, &c] {
        assert!(!m.fg.output().is_empty(), "{} delivered nothing", m.name);
    }

    // A fourth joins while blobs are written: 3 each, every tuple still exactly once
    // (a partition handed over is no longer read, its batches in flight are acknowledged
    // and checkpointed, then its lease is released for the newcomer).
    let acquired = |members: &[&Member]| -> f64 {
        let series =
            "flowgate_cluster_partitions_acquired_total{source=\"azure\",reason=\"free\"} ";
        members.iter().map(|m| m.metric(series)).sum()
    };
    let before = acquired(&[&a, &b, &c]);
    let second = dir.path().join("second");
    let writer = simulate(&a.fg.config(), &second, 5, 2, 12);
    let d = Member::new("fg-d", &endpoint);
    wait_for_shares(&[&a, &b, &c, &d], &[3, 3, 3, 3], Duration::from_secs(90));
    finish(writer);
    let mut all = first.clone();
    all.extend(expected(&second));
    let members = [&a, &b, &c, &d];
    wait_for_all(&all, &members, Duration::from_secs(60));
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(tally(&all, &arrived(&members)), (0, 0), "exactly once");
    // Only the partitions whose assigned owner changed moved: the newcomer's 3, and
    // whatever else the even split shifted.
    let names = |n: &[&str]| n.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let three = assign(&names(&["fg-a", "fg-b", "fg-c"]), PARTITIONS);
    let four = assign(&names(&["fg-a", "fg-b", "fg-c", "fg-d"]), PARTITIONS);
    let moves = (0..PARTITIONS as usize)
        .filter(|&p| {
            ["fg-a", "fg-b", "fg-c"][three[p]] != ["fg-a", "fg-b", "fg-c", "fg-d"][four[p]]
        })
        .count();
    assert!(moves >= 3);
    assert_eq!(
        acquired(&members) - before,
        moves as f64,
        "partitions moved"
    );
    drop(azurite);
}

/// A delaying and blackholing TCP proxy (`tests/tools/tcp_proxy.py`) in front of a port.
struct Proxy {
    child: Child,
    port: u16,
    control: PathBuf,
}

impl Proxy {
    fn start(target: u16, control: PathBuf) -> Option<Proxy> {
        let python = std::env::var_os("FLOWGATE_PYTHON")
            .map(PathBuf::from)
            .unwrap_or_else(|| "python3".into());
        let port = free_port();
        let mut child = Command::new(&python)
            .arg(repo().join("tests/tools/tcp_proxy.py"))
            .args(["--listen-port", &port.to_string()])
            .args(["--target-port", &target.to_string()])
            .arg("--control-file")
            .arg(&control)
            .stdout(Stdio::piped())
            .spawn()
            .ok()?;
        let mut line = String::new();
        use std::io::BufRead;
        std::io::BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .ok()?;
        line.starts_with("listening").then_some(Proxy {
            child,
            port,
            control,
        })
    }

    fn set(&self, mode: &str) {
        std::fs::write(&self.control, mode).unwrap();
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Now, as the JSON log writes its timestamps (microseconds, UTC).
fn log_time_now() -> String {
    let ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let t = flowgate_core::time::UtcTime::from_epoch_ms(ms);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}000Z",
        t.year, t.month, t.day, t.hour, t.minute, t.second, t.millis
    )
}

/// For each partition, the intervals each member held it; an interval still open ends
/// at `ends[member]` (its kill) or never.
fn holdings(members: &[(&Member, Option<String>)]) -> BTreeMap<u64, Vec<(String, String, String)>> {
    let mut out: BTreeMap<u64, Vec<(String, String, String)>> = BTreeMap::new();
    for (m, end) in members {
        let mut open: HashMap<u64, String> = HashMap::new();
        for (time, p, what) in m.ownership_log() {
            match what {
                "acquired" => {
                    open.insert(p, time);
                }
                _ => {
                    if let Some(from) = open.remove(&p) {
                        out.entry(p).or_default().push((m.name.clone(), from, time));
                    }
                }
            }
        }
        for (p, from) in open {
            let to = end.clone().unwrap_or_else(|| "9999".into());
            out.entry(p).or_default().push((m.name.clone(), from, to));
        }
    }
    out
}

#[test]
fn a_killed_instance_is_taken_over_and_one_cut_off_from_storage_stops_reading() {
    let Some(azurite_bin) = azurite_bin() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let azurite = Azurite::start(azurite_bin, dir.path().join("azurite"));
    let Some(proxy) = Proxy::start(azurite.port, dir.path().join("proxy-control")) else {
        assert!(!in_ci(), "tests/tools/tcp_proxy.py did not start");
        return;
    };
    let endpoint = azurite.endpoint();
    let mut a = Member::new("fg-a", &endpoint);
    let b = Member::new("fg-b", &endpoint);
    // c reaches storage only through the proxy: listing, reads, leases, checkpoints.
    let c = Member::new(
        "fg-c",
        &endpoint.replace(&azurite.port.to_string(), &proxy.port.to_string()),
    );
    wait_for_shares(&[&a, &b, &c], &[4, 4, 4], Duration::from_secs(60));

    let intervals = 24;
    let mirror = dir.path().join("mirror");
    let writer = simulate(&a.fg.config(), &mirror, 3, 3, intervals);
    std::thread::sleep(Duration::from_secs(6));
    a.fg.kill9();
    let killed_at = log_time_now();
    std::thread::sleep(Duration::from_secs(5));
    proxy.set("blackhole");
    let cut_at = log_time_now();
    // c stops reading within the lease (15 s), b takes over everything.
    wait_for_shares(&[&b], &[PARTITIONS], Duration::from_secs(60));
    let ready = http_get(c.api, "/readyz").map(|(s, _)| s);
    assert_eq!(
        ready,
        Some(503),
        "a member cut off from storage is not ready"
    );
    finish(writer);
    let expected = expected(&mirror);
    let members = [&a, &b, &c];
    wait_for_all(&expected, &members, Duration::from_secs(90));
    let (lost, duplicates) = tally(&expected, &arrived(&members));
    assert_eq!(lost, 0);
    // What a killed or cut-off member delivered after its last checkpoint write is
    // repeated: at most the checkpoint interval plus the batches in flight, here well
    // under three intervals' records of every blob.
    let per_interval = expected.len() / intervals;
    assert!(
        duplicates <= 3 * per_interval,
        "{duplicates} duplicates, more than 3 intervals ({per_interval} each)"
    );
    let takeovers = b.metric(
        "flowgate_cluster_partitions_acquired_total{source=\"azure\",reason=\"takeover\"} ",
    );
    assert_eq!(takeovers, 8.0, "b took a's 4 and c's 4 over");

    // No partition was ever held by two members at once: each one's intervals, from the
    // logs (a's last interval ends when it was killed), never overlap.
    let held = holdings(&[(&a, Some(killed_at)), (&b, None), (&c, Some("9999".into()))]);
    for (p, intervals) in &held {
        for (i, x) in intervals.iter().enumerate() {
            for y in &intervals[i + 1..] {
                if x.0 != y.0 {
                    assert!(
                        x.2 <= y.1 || y.2 <= x.1,
                        "partition {p} held by {x:?} and {y:?} at once"
                    );
                }
            }
        }
    }
    // c stopped reading its partitions after it was cut off, before b took them.
    let c_stops: std::collections::BTreeSet<u64> = c
        .ownership_log()
        .into_iter()
        .filter(|(t, _, what)| *what == "dropped" && *t >= cut_at)
        .map(|(_, p, _)| p)
        .collect();
    assert_eq!(c_stops.len(), 4, "c dropped its 4 partitions: {c_stops:?}");

    // Back in touch, c rejoins and gets half.
    proxy.set("normal");
    wait_for_shares(&[&b, &c], &[6, 6], Duration::from_secs(90));
    drop(azurite);
}

#[test]
fn a_restart_over_20000_blobs_reads_only_the_blobs_that_changed() {
    let Some(azurite_bin) = azurite_bin() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let azurite = Azurite::start(azurite_bin, dir.path().join("azurite"));
    let mut fg = Instance::new();
    let api = free_port();
    std::fs::write(
        fg.path("flowgate.toml"),
        format!(
            r#"
[sources.azure]
type = "azure_blob"
use_emulator = true
endpoint = "{endpoint}"
poll_interval_secs = 0.5
full_listing_interval_secs = 0.5

[sinks.file]
type = "file"
path = "{out}"
fsync = false

[checkpoints]
path = "{cp}"

[api]
address = "127.0.0.1:{api}"
"#,
            endpoint = azurite.endpoint(),
            out = fg.path("out.cef").display(),
            cp = fg.path("cp.redb").display(),
        ),
    )
    .unwrap();
    let config = flowgate::config::Config::load(&fg.path("flowgate.toml")).unwrap();
    let flowgate::config::SourceConfig::AzureBlob(source) = &config.sources["azure"] else {
        panic!("the azure source")
    };
    let container = source.build().unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    // 50 NSGs x 400 hours, one record of one tuple each.
    let record = |n: usize| {
        format!(
            r#"{{"time":"2024-03-04T10:00:00.0000000Z","systemId":"s","macAddress":"000D3A000001","category":"NetworkSecurityGroupFlowEvent","resourceId":"/SUBSCRIPTIONS/S/RESOURCEGROUPS/RG/PROVIDERS/MICROSOFT.NETWORK/NETWORKSECURITYGROUPS/NSG","operationName":"NetworkSecurityGroupFlowEvents","properties":{{"Version":2,"flows":[{{"rule":"R","flows":[{{"mac":"000D3A000001","flowTuples":["1709546400,10.0.0.{a},10.1.0.{b},{port},443,T,I,A,B,,,,"]}}]}}]}}}}"#,
            a = n % 250,
            b = n / 250 % 250,
            port = 1024 + n / 62500
        )
    };
    let names: Vec<String> = (0..20_000)
        .map(|i| {
            let (nsg, hour) = (i / 400, i % 400);
            let (day, h) = (1 + hour / 24, hour % 24);
            format!("resourceId=/SUBSCRIPTIONS/S/RESOURCEGROUPS/RG/PROVIDERS/MICROSOFT.NETWORK/NETWORKSECURITYGROUPS/NSG-{nsg:02}/y=2024/m=03/d={day:02}/h={h:02}/m=00/macAddress=000D3A000001/PT1H.json")
        })
        .collect();
    runtime.block_on(async {
        container.create_if_missing().await.unwrap();
        for (c, chunk) in names.chunks(64).enumerate() {
            let puts = chunk.iter().enumerate().map(|(i, name)| {
                let doc = format!("{{\"records\":[{}]}}", record(c * 64 + i));
                container.put_blob(name, doc.into_bytes())
            });
            for result in futures::future::join_all(puts).await {
                result.unwrap();
            }
        }
    });
    fg.start();
    let ok = wait_until(Duration::from_secs(240), || fg.output().len() >= 20_000);
    assert!(ok, "{} of 20000 delivered\n{}", fg.output().len(), fg.log());
    std::thread::sleep(Duration::from_secs(2));
    fg.stop();
    assert_eq!(fg.output().len(), 20_000);

    // Three blobs get a second record; then a restart.
    let changed = [17, 9_000, 19_999];
    runtime.block_on(async {
        for n in changed {
            let doc = format!("{{\"records\":[{},{}]}}", record(n), record(n + 20_000));
            container
                .put_blob(&names[n], doc.into_bytes())
                .await
                .unwrap();
        }
    });
    fg.start();
    let ok = wait_until(Duration::from_secs(60), || fg.output().len() >= 20_003);
    assert!(ok, "{} lines\n{}", fg.output().len(), fg.log());
    std::thread::sleep(Duration::from_secs(2));
    let (_, metrics) = http_get(api, "/metrics").unwrap();
    let value = |series: &str| -> f64 {
        metrics
            .lines()
            .filter_map(|l| l.strip_prefix(series))
            .filter_map(|v| v.trim().parse::<f64>().ok())
            .sum()
    };
    let reads = value("flowgate_source_reads_total ");
    assert_eq!(fg.output().len(), 20_003, "only the three new records");
    assert!(
        (3.0..=6.0).contains(&reads),
        "{reads} range reads after a restart over 20,000 blobs, 3 of them changed"
    );
    fg.stop();
    drop(azurite);
}
