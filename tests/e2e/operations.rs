//! Operations end to end: the HTTP endpoint (`/metrics`, `/healthz`, `/readyz`), checked
//! by Prometheus's own tools, and secrets kept out of logs and metrics at debug level.

use crate::support::{fixture, free_port, peer, wait_until, Instance};
use std::io::{Read, Write};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// `GET path` on 127.0.0.1:port: (status, body).
pub fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut response = String::new();
    s.read_to_string(&mut response).ok()?;
    let status = response.split_whitespace().nth(1)?.parse().ok()?;
    let body = response.split_once("\r\n\r\n")?.1.to_owned();
    Some((status, body))
}

/// The value of an unlabelled (or exactly labelled) sample in exposition text.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
}

fn file_sink_config(fg: &Instance, api: u16, extra: &str) {
    fg.write_local_config(&format!(
        "[sinks.file]\ntype = \"file\"\npath = \"{}\"\n\n[api]\naddress = \"127.0.0.1:{api}\"\n{extra}",
        fg.path("out.cef").display()
    ));
}

#[test]
fn a_finished_blob_is_not_read_again_at_every_poll() {
    let mut fg = Instance::new();
    let expected = fg.add_input(0, &fixture("nsg-v2.PT1H.json"));
    let api = free_port();
    file_sink_config(&fg, api, "");
    fg.start();
    fg.wait_for_lines(expected.len());
    let reads = || {
        let (_, text) = http_get(api, "/metrics").unwrap();
        sample(&text, "flowgate_source_reads_total").unwrap()
    };
    std::thread::sleep(Duration::from_millis(500));
    let before = reads();
    // Five polls list the blob again; its closing `]}` is all that is left unread.
    std::thread::sleep(Duration::from_secs(1));
    let after = reads();
    fg.stop();
    assert!(before >= 1.0);
    assert_eq!(after, before, "a finished blob costs no reads");
}

#[test]
fn endpoints_report_progress_ready_and_lag() {
    let mut fg = Instance::new();
    let expected = fg.add_input(0, &fixture("nsg-v2.PT1H.json"));
    let api = free_port();
    file_sink_config(&fg, api, "");
    fg.start();
    fg.wait_for_lines(expected.len());
    assert!(wait_until(Duration::from_secs(10), || {
        http_get(api, "/readyz").is_some_and(|(s, _)| s == 200)
    }));
    let (status, body) = http_get(api, "/readyz").unwrap();
    assert_eq!(status, 200, "{body}");
    assert!(
        body.contains("source.local: ok") && body.contains("sink.file: ok"),
        "{body}"
    );
    assert_eq!(http_get(api, "/healthz").unwrap(), (200, "ok\n".into()));
    assert_eq!(http_get(api, "/nope").unwrap().0, 404);
    let (status, text) = http_get(api, "/metrics").unwrap();
    assert_eq!(status, 200);
    let n = expected.len() as f64;
    assert_eq!(sample(&text, "flowgate_tuples_total"), Some(n), "{text}");
    assert_eq!(
        sample(&text, "flowgate_sink_events_sent_total{sink=\"file\"}"),
        Some(n)
    );
    assert_eq!(sample(&text, "flowgate_ready"), Some(1.0));
    // The fixture's newest tuple is from 2018: the lag is years, in seconds.
    let lag = sample(&text, "flowgate_checkpoint_lag_seconds{source=\"local\"}").unwrap();
    assert!(lag > 5.0 * 365.0 * 86400.0, "{lag}");
    assert!(text.contains("# TYPE flowgate_source_poll_duration_seconds histogram"));
    fg.stop();
}

#[test]
fn the_api_refuses_connections_past_its_limit_and_closes_stalled_ones() {
    let mut fg = Instance::new();
    let expected = fg.add_input(0, &fixture("nsg-v2.PT1H.json"));
    let api = free_port();
    file_sink_config(&fg, api, "max_connections = 4\ntimeout_secs = 2\n");
    fg.start();
    fg.wait_for_lines(expected.len());
    // Four clients start a request and stall: they hold every slot.
    let stalled: Vec<std::net::TcpStream> = (0..4)
        .map(|_| {
            let mut s = std::net::TcpStream::connect(("127.0.0.1", api)).unwrap();
            s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")
                .unwrap();
            s
        })
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    let started = std::time::Instant::now();
    assert_eq!(
        http_get(api, "/healthz"),
        None,
        "a fifth connection is served"
    );
    // The server closes the stalled ones after timeout_secs, without a response.
    for mut s in stalled {
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut got = Vec::new();
        let closed = s.read_to_end(&mut got);
        assert!(
            closed.is_ok() && !String::from_utf8_lossy(&got).contains("200 OK"),
            "{closed:?} {got:?}"
        );
    }
    let waited = started.elapsed();
    assert!(
        waited < Duration::from_secs(6),
        "stalled connections held for {waited:?}"
    );
    // Slots are back: a normal request is served, and the refusal was counted.
    assert_eq!(http_get(api, "/healthz").unwrap(), (200, "ok\n".into()));
    let (_, text) = http_get(api, "/metrics").unwrap();
    assert!(
        sample(&text, "flowgate_api_connections_rejected_total").unwrap() >= 1.0,
        "{text}"
    );
    fg.stop();
}

#[test]
fn not_ready_while_a_sink_fails_and_while_draining() {
    let mut fg = Instance::new();
    fg.add_input(0, &fixture("nsg-v2.PT1H.json"));
    let api = free_port();
    fg.write_local_config(&format!(
        "[sinks.full]\ntype = \"file\"\npath = \"/dev/full\"\n\n[api]\naddress = \"127.0.0.1:{api}\"\n\n[pipeline]\ndrain_timeout_secs = 4"
    ));
    fg.start();
    assert!(wait_until(Duration::from_secs(10), || {
        http_get(api, "/readyz").is_some_and(|(_, b)| b.contains("sink.full: not ready"))
    }));
    assert_eq!(http_get(api, "/readyz").unwrap().0, 503);
    // Retrying a full disk is no stall: still alive.
    assert_eq!(http_get(api, "/healthz").unwrap().0, 200);
    let pid = fg.pid().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    assert!(wait_until(Duration::from_secs(3), || {
        http_get(api, "/readyz").is_some_and(|(s, b)| s == 503 && b.contains("draining"))
    }));
    fg.wait_exit();
}

#[test]
fn secrets_stay_out_of_debug_logs_and_metrics() {
    let mut fg = Instance::new();
    let api = free_port();
    // Every kind of secret, against endpoints that refuse connections, so that errors
    // (which are where secrets leak) are logged over and over.
    let dead = free_port();
    fg.write_local_config(&format!(
        r#"[sources.sas]
type = "azure_blob"
account = "acct"
endpoint = "http://127.0.0.1:{dead}/acct"
sas_token = "sv=2022-11-02&ss=b&srt=co&sp=rl&sig=SECRETSASSIG%3D"
poll_interval_secs = 0.3

[sources.key]
type = "azure_blob"
connection_string = "DefaultEndpointsProtocol=http;AccountName=acct;AccountKey=U0VDUkVUS0VZU0VDUkVUS0VZ;BlobEndpoint=http://127.0.0.1:{dead}/acct;"
poll_interval_secs = 0.3

[sinks.hub]
type = "kafka"
bootstrap_servers = "127.0.0.1:{dead}"
topic = "flows"
[sinks.hub.librdkafka]
"security.protocol" = "SASL_PLAINTEXT"
"sasl.mechanism" = "PLAIN"
"sasl.username" = "$ConnectionString"
"sasl.password" = "Endpoint=sb://x/;SharedAccessKey=SECRETKAFKAPASSWORD"

[api]
address = "127.0.0.1:{api}"

[log]
level = "debug"
repeat_limit_per_minute = 0"#
    ));
    fg.start();
    std::thread::sleep(Duration::from_secs(4));
    let (_, metrics) = http_get(api, "/metrics").unwrap();
    let (_, ready) = http_get(api, "/readyz").unwrap();
    fg.stop();
    let log = fg.log();
    assert!(
        log.contains("cannot list objects"),
        "errors were logged: {log}"
    );
    for secret in [
        "SECRETSASSIG",
        "U0VDUkVUS0VZU0VDUkVUS0VZ",
        "SECRETKAFKAPASSWORD",
    ] {
        for (what, text) in [("log", &log), ("metrics", &metrics), ("readyz", &ready)] {
            assert!(!text.contains(secret), "{secret} in the {what}:\n{text}");
        }
    }
}

/// Debian's `prometheus` package: (prometheus, promtool).
pub(crate) fn prometheus_bins() -> Option<(std::path::PathBuf, std::path::PathBuf)> {
    let prometheus = peer(
        "FLOWGATE_PROMETHEUS",
        "/usr/bin/prometheus".into(),
        "Prometheus",
        "scripts/prometheus-deps.sh",
    )?;
    let promtool = prometheus.with_file_name("promtool");
    Some((prometheus, promtool))
}

struct Prometheus(Child);

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn promtool_accepts_the_live_endpoint_and_prometheus_scrapes_the_delivered_count() {
    let Some((prometheus, promtool)) = prometheus_bins() else {
        return;
    };
    let mut fg = Instance::new();
    let expected = fg.add_input(0, &fixture("vnet.PT1H.json"));
    let api = free_port();
    file_sink_config(&fg, api, "");
    fg.start();
    fg.wait_for_lines(expected.len());
    let (_, text) = http_get(api, "/metrics").unwrap();

    let mut check = Command::new(&promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    check
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = check.wait_with_output().unwrap();
    assert!(
        out.status.success() && out.stdout.is_empty() && out.stderr.is_empty(),
        "promtool check metrics:\n{}{}\n{text}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    // A real Prometheus scrapes flowgate; a query returns the delivered count.
    let web = free_port();
    let dir = fg.path("prometheus");
    std::fs::create_dir_all(dir.join("data")).unwrap();
    std::fs::write(
        dir.join("prometheus.yml"),
        format!(
            "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: flowgate\n    static_configs:\n      - targets: ['127.0.0.1:{api}']\n"
        ),
    )
    .unwrap();
    let log = std::fs::File::create(dir.join("prometheus.log")).unwrap();
    let _server = Prometheus(
        Command::new(&prometheus)
            .arg(format!(
                "--config.file={}",
                dir.join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{web}"))
            .current_dir(&dir)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap(),
    );
    let query = "/api/v1/query?query=sum(flowgate_sink_events_sent_total)";
    let mut last = String::new();
    let found = wait_until(Duration::from_secs(60), || {
        if let Some((200, body)) = http_get(web, query) {
            last = body;
            return last.contains(&format!("\"{}\"]", expected.len()));
        }
        false
    });
    fg.stop();
    assert!(
        found,
        "Prometheus never returned {}: {last}\n{}",
        expected.len(),
        std::fs::read_to_string(dir.join("prometheus.log")).unwrap_or_default()
    );
}
