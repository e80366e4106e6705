//! The Azure Blob source against a real Azurite, started here on a free port, while
//! `flowgate simulate` writes blobs the way Network Watcher does.

use crate::support::{files_under, flowgate, free_port, peer, repo, wait_until, Instance};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// `azurite-blob` from `scripts/azurite-deps.sh` (or `FLOWGATE_AZURITE`).
pub(crate) fn azurite_bin() -> Option<PathBuf> {
    peer(
        "FLOWGATE_AZURITE",
        repo().join(".peers/azurite/node_modules/.bin/azurite-blob"),
        "Azurite",
        "scripts/azurite-deps.sh",
    )
}

pub(crate) struct Azurite {
    pub(crate) port: u16,
    bin: PathBuf,
    data: PathBuf,
    /// HTTPS and OAuth options.
    extra: Vec<String>,
    child: Option<Child>,
}

impl Azurite {
    pub(crate) fn start(bin: PathBuf, data: PathBuf) -> Azurite {
        Azurite::start_with(bin, data, Vec::new())
    }

    fn start_with(bin: PathBuf, data: PathBuf, extra: Vec<String>) -> Azurite {
        let mut a = Azurite {
            bin,
            port: free_port(),
            data,
            extra,
            child: None,
        };
        a.restart();
        a
    }

    /// (Re)starts on the same port and data directory; returns when it listens.
    fn restart(&mut self) {
        let mut child = Command::new(&self.bin)
            .args([
                "--blobHost",
                "127.0.0.1",
                "--blobPort",
                &self.port.to_string(),
            ])
            .arg("--location")
            .arg(&self.data)
            // --loose: ranges under 4 MiB ask for a CRC64 Azurite does not compute;
            // --disableTelemetry: nothing leaves the machine.
            .args(["--skipApiVersionCheck", "--loose", "--disableTelemetry"])
            .args(&self.extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("azurite starts");
        let stdout = child.stdout.take().unwrap();
        let mut reader = BufReader::new(stdout);
        let mut line = String::new();
        loop {
            line.clear();
            if reader.read_line(&mut line).unwrap() == 0 {
                panic!("azurite exited before listening");
            }
            if line.contains("successfully listens") {
                break;
            }
        }
        // Keep draining its output so that it never blocks on a full pipe.
        std::thread::spawn(move || for _ in reader.lines() {});
        self.child = Some(child);
    }

    /// SIGTERM and wait: Azurite saves its metadata every few seconds, and SIGKILL would
    /// lose the latest writes (a test of flowgate, not of Azurite's durability).
    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &c.id().to_string()])
                .status();
            if !wait_until(Duration::from_secs(10), || c.try_wait().unwrap().is_some()) {
                let _ = c.kill();
            }
            let _ = c.wait();
        }
    }

    pub(crate) fn endpoint(&self) -> String {
        let scheme = if self.extra.iter().any(|a| a == "--cert") {
            "https"
        } else {
            "http"
        };
        format!("{scheme}://127.0.0.1:{}/devstoreaccount1", self.port)
    }
}

impl Drop for Azurite {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Azurite, and flowgate following its container into a file.
struct Service {
    // Declared first, so dropped first: flowgate stops before Azurite does.
    fg: Instance,
    azurite: Azurite,
}

impl std::ops::Deref for Service {
    type Target = Instance;
    fn deref(&self) -> &Instance {
        &self.fg
    }
}

impl std::ops::DerefMut for Service {
    fn deref_mut(&mut self) -> &mut Instance {
        &mut self.fg
    }
}

impl Service {
    /// Azurite plus a flowgate config with an `azure_blob` source and a file sink.
    fn new() -> Option<Service> {
        let bin = azurite_bin()?;
        let fg = Instance::new();
        let azurite = Azurite::start(bin, fg.path("azurite"));
        let config = format!(
            r#"
[sources.azure]
type = "azure_blob"
use_emulator = true
endpoint = "{endpoint}"
poll_interval_secs = 0.2
request_timeout_secs = 5
# These tests write blobs dated 2024: list the whole container on every poll.
full_listing_interval_secs = 0.2

[sinks.file]
type = "file"
path = "{out}"

[checkpoints]
path = "{cp}"

[pipeline]
drain_timeout_secs = 10
"#,
            endpoint = azurite.endpoint(),
            out = fg.path("out.cef").display(),
            cp = fg.path("cp.redb").display(),
        );
        std::fs::write(fg.path("flowgate.toml"), config).unwrap();
        Some(Service { fg, azurite })
    }

    /// Runs `flowgate simulate`, mirroring what it commits into `mirror`.
    fn simulate(&self, extra: &[&str], mirror: &Path) -> serde_json::Value {
        let config = self.config();
        let mut args = vec![
            "simulate", "--config", &config, "--source", "azure", "--mirror",
        ];
        let mirror = mirror.display().to_string();
        args.push(&mirror);
        args.extend_from_slice(extra);
        let out = flowgate(&args, None);
        assert!(
            out.status.success(),
            "simulate: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    }

    /// The source's container, for what the tests do behind flowgate's back.
    fn container(&self) -> (flowgate_source::AzureContainer, tokio::runtime::Runtime) {
        let config = flowgate::config::Config::load(&self.path("flowgate.toml")).unwrap();
        let flowgate::config::SourceConfig::AzureBlob(blob) = &config.sources["azure"] else {
            panic!("the azure source")
        };
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        (blob.build().unwrap(), runtime)
    }
}

/// Each mirrored blob converted, keyed by NSG (`deviceExternalId`): what must arrive, in
/// this order per blob.
fn expected_per_blob(mirror: &Path) -> BTreeMap<String, Vec<String>> {
    // Name order is time order (`h=10` before `h=11`): the order blobs are read in.
    let files = files_under(mirror);
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for path in files {
        let conv = flowgate(
            &["convert", "--source", "azure", path.to_str().unwrap()],
            None,
        );
        assert!(conv.status.success());
        for line in String::from_utf8(conv.stdout).unwrap().lines() {
            out.entry(blob_key(line)).or_default().push(line.to_owned());
        }
    }
    out
}

/// The NSG and NIC of a CEF line: its blob (one per hour).
fn blob_key(line: &str) -> String {
    let field = |k: &str| {
        line.find(k)
            .map(|at| line[at + k.len()..].split(' ').next().unwrap_or_default())
            .unwrap_or_default()
            .to_owned()
    };
    format!(
        "{}|{}{}",
        field("deviceExternalId="),
        field(" smac="),
        field(" dmac=")
    )
}

fn per_blob(lines: &[String]) -> BTreeMap<String, Vec<String>> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for l in lines {
        out.entry(blob_key(l)).or_default().push(l.clone());
    }
    out
}

#[test]
fn blobs_written_while_running_arrive_exactly_once_in_order() {
    let Some(mut s) = Service::new() else { return };
    s.start();
    let mirror = s.path("mirror");
    let summary = s.simulate(
        &[
            "--nsgs",
            "2",
            "--macs",
            "2",
            "--intervals",
            "6",
            "--interval-secs",
            "0.3",
            "--start",
            "1709546400",
        ],
        &mirror,
    );
    let tuples = summary["tuples"].as_u64().unwrap() as usize;
    s.wait_for_lines(tuples);
    std::thread::sleep(Duration::from_millis(500));
    s.stop();
    let got = s.output();
    assert_eq!(got.len(), tuples, "exactly once");
    assert_eq!(
        per_blob(&got).len(),
        4,
        "2 NSGs x 2 NICs: four blobs told apart"
    );
    assert_eq!(
        per_blob(&got),
        expected_per_blob(&mirror),
        "in order per blob"
    );
}

#[test]
fn a_restart_in_the_middle_loses_nothing_and_repeats_nothing() {
    let Some(mut s) = Service::new() else { return };
    let mirror = s.path("mirror");
    s.start();
    s.simulate(
        &[
            "--nsgs",
            "2",
            "--intervals",
            "3",
            "--interval-secs",
            "0.2",
            "--start",
            "1709546400",
        ],
        &mirror,
    );
    assert!(wait_until(Duration::from_secs(30), || !s
        .output()
        .is_empty()));
    s.stop();
    // Written while flowgate is down, and the hour rolls over into new blobs.
    s.simulate(
        &[
            "--nsgs",
            "2",
            "--intervals",
            "2",
            "--interval-secs",
            "0.2",
            "--start",
            "1709549940",
            "--seed",
            "2",
        ],
        &mirror,
    );
    s.start();
    let expected = expected_per_blob(&mirror);
    let total: usize = expected.values().map(Vec::len).sum();
    s.wait_for_lines(total);
    std::thread::sleep(Duration::from_millis(500));
    s.stop();
    assert_eq!(per_blob(&s.output()), expected);
}

#[test]
fn azurite_down_for_a_while_then_back_recovers_by_itself() {
    let Some(mut s) = Service::new() else { return };
    let mirror = s.path("mirror");
    s.simulate(
        &[
            "--nsgs",
            "1",
            "--intervals",
            "2",
            "--interval-secs",
            "0.1",
            "--start",
            "1709546400",
        ],
        &mirror,
    );
    s.start();
    let first: usize = expected_per_blob(&mirror).values().map(Vec::len).sum();
    s.wait_for_lines(first);
    s.azurite.stop();
    let down = std::time::Instant::now();
    let reported = wait_until(Duration::from_secs(30), || {
        s.log().contains("cannot list objects")
    });
    assert!(reported, "the outage is reported: {}", s.log());
    std::thread::sleep(Duration::from_secs(10).saturating_sub(down.elapsed()));
    s.azurite.restart();
    s.simulate(
        &[
            "--nsgs",
            "1",
            "--intervals",
            "4",
            "--interval-secs",
            "0.1",
            "--start",
            "1709546400",
        ],
        &mirror,
    );
    let expected = expected_per_blob(&mirror);
    let total: usize = expected.values().map(Vec::len).sum();
    s.wait_for_lines(total);
    std::thread::sleep(Duration::from_millis(500));
    s.stop();
    assert_eq!(
        per_blob(&s.output()),
        expected,
        "nothing lost, nothing repeated"
    );
}

#[test]
fn a_blob_deleted_by_retention_is_forgotten_and_the_rest_still_flows() {
    let Some(mut s) = Service::new() else { return };
    let mirror = s.path("mirror");
    s.simulate(
        &[
            "--nsgs",
            "2",
            "--intervals",
            "2",
            "--interval-secs",
            "0.1",
            "--start",
            "1709546400",
        ],
        &mirror,
    );
    s.start();
    let first: usize = expected_per_blob(&mirror).values().map(Vec::len).sum();
    s.wait_for_lines(first);

    // Retention deletes NSG-00's blob; NSG-01's keeps growing.
    let (container, runtime) = s.container();
    let doomed = flowgate::simulate::blob_name(
        flowgate::generate::Schema::NsgV2,
        &flowgate::generate::Target {
            name: "NSG-00".into(),
            ..Default::default()
        },
        "000D3A000001",
        1_709_546_400,
    );
    runtime.block_on(container.delete(&doomed)).unwrap();
    assert!(
        wait_until(Duration::from_secs(20), || s
            .log()
            .contains("object removed")),
        "{}",
        s.log()
    );

    let more = s.path("more");
    s.simulate(
        &[
            "--nsgs",
            "2",
            "--intervals",
            "4",
            "--interval-secs",
            "0.1",
            "--start",
            "1709546400",
        ],
        &more,
    );
    // NSG-00's blob was written anew from its first record: delivered again from its start.
    let expected = expected_per_blob(&more);
    let total: usize = first + expected.values().map(Vec::len).sum::<usize>()
        - expected_per_blob(&mirror)
            .iter()
            .filter(|(k, _)| k.contains("NSG-01"))
            .map(|(_, v)| v.len())
            .sum::<usize>();
    let arrived = wait_until(Duration::from_secs(60), || s.output().len() >= total);
    let counts = |m: &BTreeMap<String, Vec<String>>| {
        m.iter()
            .map(|(k, v)| (k.clone(), v.len()))
            .collect::<Vec<_>>()
    };
    assert!(
        arrived,
        "got {:?}\nfirst {:?}\nmore {:?}",
        counts(&per_blob(&s.output())),
        counts(&expected_per_blob(&mirror)),
        counts(&expected)
    );
    std::thread::sleep(Duration::from_millis(500));
    s.stop();
    let got = per_blob(&s.output());
    let nsg01 = |m: &BTreeMap<String, Vec<String>>| {
        m.iter()
            .filter(|(k, _)| k.contains("NSG-01"))
            .flat_map(|(_, v)| v.clone())
            .collect::<Vec<_>>()
    };
    assert_eq!(
        nsg01(&got),
        nsg01(&expected),
        "the other blob: every tuple once, in order"
    );
    assert!(
        s.log().contains("NSG-00"),
        "the deletion names the blob: {}",
        s.log()
    );
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn set_config(s: &Service, from: &str, to: &str) {
    let config = std::fs::read_to_string(s.path("flowgate.toml")).unwrap();
    assert!(config.contains(from), "{from}");
    std::fs::write(s.path("flowgate.toml"), config.replacen(from, to, 1)).unwrap();
}

/// Fills the container with a month of old hourly blobs for `nsgs` NSGs of two NICs each,
/// plus this hour's blobs; returns how many blobs there are.
fn fill_history(
    container: &flowgate_source::AzureContainer,
    runtime: &tokio::runtime::Runtime,
    nsgs: usize,
    old_hours: u64,
) -> usize {
    let now = unix_now();
    let mut names = Vec::new();
    for n in 0..nsgs {
        let target = flowgate::generate::Target {
            name: format!("NSG-{n:02}"),
            ..Default::default()
        };
        for mac in ["000D3A000001", "000D3A000002"] {
            for h in 0..=old_hours {
                let t = now - h * 3600;
                names.push(flowgate::simulate::blob_name(
                    flowgate::generate::Schema::NsgV2,
                    &target,
                    mac,
                    t,
                ));
            }
        }
    }
    runtime.block_on(async {
        container.create_if_missing().await.unwrap();
        for chunk in names.chunks(32) {
            let puts = chunk
                .iter()
                .map(|name| container.put_blob(name, b"{\"records\":[]}".to_vec()));
            for result in futures::future::join_all(puts).await {
                result.unwrap();
            }
        }
    });
    names.len()
}

#[test]
fn after_a_full_listing_a_poll_costs_two_requests_per_nsg_whatever_the_history() {
    use flowgate_source::ObjectStore;
    let Some(s) = Service::new() else { return };
    set_config(
        &s,
        "full_listing_interval_secs = 0.2",
        "full_listing_interval_secs = 3600",
    );
    let (container, runtime) = s.container();
    // 3 NSGs x 2 NICs x 721 hours (a month of retention): 4,326 blobs.
    let total = fill_history(&container, &runtime, 3, 720);
    assert_eq!(total, 4326);

    let full = runtime.block_on(container.list(&|_| true)).unwrap();
    assert!(full.complete);
    assert_eq!(full.objects.len(), total);
    assert_eq!(full.requests, 1, "one page holds up to 5,000 names");

    let hour = flowgate_core::time::UtcTime::from_epoch_ms(unix_now() * 1000).hour_partition();
    for _ in 0..3 {
        let recent = runtime.block_on(container.list(&|_| true)).unwrap();
        assert!(
            !recent.complete,
            "a partial listing never makes blobs look deleted"
        );
        assert_eq!(
            recent.requests, 6,
            "this hour and the previous one of each of the 3 NSGs"
        );
        // The previous hour's blobs are listed too: they may still get their last records.
        assert_eq!(recent.objects.len(), 12, "{:?}", recent.objects);
        assert_eq!(
            recent
                .objects
                .iter()
                .filter(|o| o.name.contains(&hour))
                .count(),
            6
        );
    }

    // Filters apply to the listings themselves: excluded NSGs cost no requests.
    set_config(
        &s,
        "[sinks.file]",
        "[sources.azure.include]\nnsgs = [\"nsg-01\"]\n\n[sinks.file]",
    );
    let (container, runtime) = s.container();
    let full = runtime.block_on(container.list(&|_| true)).unwrap();
    assert_eq!(full.objects.len(), total / 3);
    assert!(full.objects.iter().all(|o| o.name.contains("/NSG-01/")));
    let recent = runtime.block_on(container.list(&|_| true)).unwrap();
    assert_eq!((recent.requests, recent.objects.len()), (2, 4));
}

#[test]
fn start_at_a_time_and_exclude_leave_older_hours_and_other_nsgs_unread() {
    let Some(mut s) = Service::new() else { return };
    let now = unix_now();
    let hour = now - now % 3600;
    let mirror = s.path("mirror");
    let old = s.path("old");
    // Two NSGs, one interval each five hours ago and in the previous hour.
    s.simulate(
        &[
            "--nsgs",
            "2",
            "--intervals",
            "1",
            "--start",
            &(hour - 5 * 3600).to_string(),
        ],
        &old,
    );
    s.simulate(
        &[
            "--nsgs",
            "2",
            "--intervals",
            "1",
            "--start",
            &(hour - 3600 + 60).to_string(),
        ],
        &mirror,
    );
    let t = flowgate_core::time::UtcTime::from_epoch_ms((hour - 3600 + 1800) * 1000);
    let since = format!(
        "{}-{:02}-{:02}T{:02}:{:02}:00Z",
        t.year, t.month, t.day, t.hour, t.minute
    );
    set_config(
        &s,
        "[sinks.file]",
        &format!("start_at = \"{since}\"\n\n[sources.azure.exclude]\nnsgs = [\"NSG-01\"]\n\n[sinks.file]"),
    );
    // The start time is inside the previous hour: that hour is read whole.
    let expected: Vec<String> = expected_per_blob(&mirror)
        .into_iter()
        .filter(|(k, _)| k.contains("NSG-00"))
        .flat_map(|(_, v)| v)
        .collect();
    assert!(!expected.is_empty());
    s.start();
    assert!(
        wait_until(Duration::from_secs(30), || s.output().len()
            >= expected.len()),
        "{}",
        s.log()
    );
    std::thread::sleep(Duration::from_millis(800));
    s.stop();
    assert_eq!(s.output(), expected);
}

#[test]
fn permanent_errors_are_reported_clearly_and_secrets_stay_out() {
    let Some(mut s) = Service::new() else { return };
    let base = std::fs::read_to_string(s.path("flowgate.toml")).unwrap();
    // A key that is valid base64 but not the account's: Azurite answers 403.
    let wrong_key = "V1JPTkdLRVlXUk9OR0tFWVdST05HS0VZV1JPTkdLRVk=";
    let cases = [
        (
            base.replace(
                "use_emulator = true",
                &format!("account = \"devstoreaccount1\"\naccess_key = \"{wrong_key}\""),
            ),
            "the credential is refused or lacks read and list permission",
        ),
        (
            base.replace(
                "use_emulator = true",
                "use_emulator = true\ncontainer = \"no-such-container\"",
            ),
            "the container does not exist",
        ),
    ];
    for (config, message) in cases {
        std::fs::write(s.path("flowgate.toml"), config).unwrap();
        let _ = std::fs::remove_file(s.path("stderr.log"));
        s.start();
        let reported = wait_until(Duration::from_secs(20), || s.log().contains(message));
        s.stop();
        let log = s.log();
        assert!(reported, "{message}: {log}");
        assert!(log.contains("ERROR"), "reported as an error: {log}");
        assert!(
            !log.contains(wrong_key),
            "the key leaked into the log: {log}"
        );
    }
}

#[test]
fn entra_id_workload_identity_reads_the_rotated_token_file_and_secrets_stay_out() {
    use crate::identity::IdentityProvider;
    let Some(bin) = azurite_bin() else { return };
    let mut fg = Instance::new();
    let certs = crate::support::make_certs(&fg.path("tls"));
    // Azurite checks bearer tokens (issuer, audience, lifetime) only over HTTPS.
    let azurite = Azurite::start_with(
        bin,
        fg.path("azurite"),
        vec![
            "--oauth".into(),
            "basic".into(),
            "--cert".into(),
            certs.server_cert.display().to_string(),
            "--key".into(),
            certs.server_key.display().to_string(),
        ],
    );
    // Tokens that must be renewed at once (they expire within the 5 minute margin).
    let idp = IdentityProvider::start("tenant-1", 301, "expired-assertion");
    let token_file = fg.path("azure-identity-token");
    std::fs::write(&token_file, "expired-assertion\n").unwrap();
    let common = format!(
        r#"endpoint = "{endpoint}"
ca_file = "{ca}"
poll_interval_secs = 0.2
request_timeout_secs = 5
full_listing_interval_secs = 0.2
"#,
        endpoint = azurite.endpoint(),
        ca = certs.ca.display(),
    );
    std::fs::write(
        fg.path("writer.toml"),
        format!(
            "[sources.writer]\ntype = \"azure_blob\"\nuse_emulator = true\n{common}\n[sinks.out]\ntype = \"stdout\"\n"
        ),
    )
    .unwrap();
    std::fs::write(
        fg.path("flowgate.toml"),
        format!(
            r#"[sources.azure]
type = "azure_blob"
account = "devstoreaccount1"
{common}
[sources.azure.azure_ad]
method = "workload_identity"
tenant_id = "tenant-1"
client_id = "client-1"
federated_token_file = "{token}"
authority_host = "{authority}"

[sinks.file]
type = "file"
path = "{out}"

[checkpoints]
path = "{cp}"
"#,
            token = token_file.display(),
            authority = idp.authority(),
            out = fg.path("out.cef").display(),
            cp = fg.path("cp.redb").display(),
        ),
    )
    .unwrap();
    let writer = fg.path("writer.toml").display().to_string();
    let simulate = |intervals: &str, mirror: &Path| {
        let mirror = mirror.display().to_string();
        let out = flowgate(
            &[
                "simulate",
                "--config",
                &writer,
                "--source",
                "writer",
                "--mirror",
                &mirror,
                "--nsgs",
                "2",
                "--intervals",
                intervals,
                "--interval-secs",
                "0.1",
                "--start",
                "1709546400",
            ],
            None,
        );
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    simulate("2", &fg.path("mirror"));

    fg.start();
    // The identity provider refuses the first assertion: the reason is logged.
    assert!(
        wait_until(Duration::from_secs(20), || fg
            .log()
            .contains("AADSTS700024")),
        "{}",
        fg.log()
    );
    assert!(fg.output().is_empty());
    std::fs::write(&token_file, "sa-token-1\n").unwrap();
    let first: usize = expected_per_blob(&fg.path("mirror"))
        .values()
        .map(Vec::len)
        .sum();
    fg.wait_for_lines(first);

    // Kubernetes rotates the projected token: the next renewal must use the new one.
    std::fs::write(&token_file, "sa-token-2\n").unwrap();
    simulate("4", &fg.path("more"));
    let expected = expected_per_blob(&fg.path("more"));
    let total: usize = expected.values().map(Vec::len).sum();
    fg.wait_for_lines(total);
    std::thread::sleep(Duration::from_millis(500));
    fg.stop();
    assert_eq!(per_blob(&fg.output()), expected);

    let forms = idp.forms();
    let assertions: Vec<&str> = forms
        .iter()
        .map(|(_, f)| f["client_assertion"].as_str())
        .collect();
    let first_use = |a: &str| assertions.iter().position(|x| *x == a).unwrap();
    assert!(first_use("expired-assertion") < first_use("sa-token-1"));
    assert!(first_use("sa-token-1") < first_use("sa-token-2"));
    for (path, form) in &forms {
        assert_eq!(path, "/tenant-1/oauth2/v2.0/token");
        assert_eq!(form["client_id"], "client-1");
        assert_eq!(form["grant_type"], "client_credentials");
        assert_eq!(form["scope"], "https://storage.azure.com/.default");
        assert_eq!(
            form["client_assertion_type"],
            "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
        );
    }
    let log = fg.log();
    for secret in ["sa-token-1", "sa-token-2", "c2lnbmF0dXJl"] {
        assert!(!log.contains(secret), "{secret} in the log:\n{log}");
    }
}
