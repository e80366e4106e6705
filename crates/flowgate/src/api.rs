//! The operations endpoint: `GET /metrics` (Prometheus text format), `/healthz` and
//! `/readyz` on `[api] address`.
//!
//! A few lines of HTTP/1.1 (one request per connection, `Connection: close`) instead of a
//! web framework: three read-only routes need no more, and the build stays lean.

use anyhow::{Context, Result};
use flowgate_core::health;
use flowgate_core::metric_names::{self as m, Kind, CATALOGUE};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use std::sync::OnceLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tracing::{debug, info};

/// Poll durations, from a quiet container (milliseconds) to a large backlog (minutes).
const POLL_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0,
];

/// Installs the process-wide Prometheus recorder (once) and describes every metric.
pub fn metrics_handle() -> Result<PrometheusHandle> {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    if let Some(h) = HANDLE.get() {
        return Ok(h.clone());
    }
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(
            Matcher::Full(m::SOURCE_POLL_DURATION_SECONDS.into()),
            POLL_BUCKETS,
        )
        .context("histogram buckets")?
        .install_recorder()
        .context("installing the metrics recorder")?;
    for (name, kind, help) in CATALOGUE {
        match kind {
            Kind::Counter => metrics::describe_counter!(*name, *help),
            Kind::Gauge => metrics::describe_gauge!(*name, *help),
            Kind::Histogram => {
                metrics::describe_histogram!(*name, metrics::Unit::Seconds, *help)
            }
        }
    }
    metrics::gauge!(m::BUILD_INFO, "version" => env!("CARGO_PKG_VERSION")).set(1.0);
    // Upkeep drains histogram buffers; without it they grow until the next scrape.
    let upkeep = handle.clone();
    std::thread::Builder::new()
        .name("metrics-upkeep".into())
        .spawn(move || loop {
            std::thread::sleep(Duration::from_secs(5));
            upkeep.run_upkeep();
        })
        .context("starting the metrics upkeep thread")?;
    Ok(HANDLE.get_or_init(|| handle).clone())
}

/// Binds `address` (a start-up error if taken) and serves until the process ends.
pub async fn serve(address: &str, handle: PrometheusHandle) -> Result<()> {
    let listener = TcpListener::bind(address)
        .await
        .with_context(|| format!("api.address: cannot listen on {address}"))?;
    info!(address = %listener.local_addr()?, "serving /metrics, /healthz and /readyz");
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            };
            let handle = handle.clone();
            tokio::spawn(async move {
                if let Err(e) = respond(stream, &handle).await {
                    debug!(error = %e, "api request failed");
                }
            });
        }
    });
    Ok(())
}

async fn respond(mut stream: TcpStream, handle: &PrometheusHandle) -> std::io::Result<()> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    // The request head, within 5 s and 8 KiB: a client that sends less is dropped.
    let read = tokio::time::timeout(Duration::from_secs(5), async {
        while !buf.windows(4).any(|w| w == b"\r\n\r\n") && buf.len() < 8192 {
            let n = stream.read(&mut chunk).await?;
            if n == 0 {
                break;
            }
            buf.extend_from_slice(&chunk[..n]);
        }
        Ok::<_, std::io::Error>(())
    })
    .await;
    if !matches!(read, Ok(Ok(()))) {
        return Ok(());
    }
    let head = String::from_utf8_lossy(&buf);
    let mut parts = head.split_whitespace();
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let path = target.split('?').next().unwrap_or("");
    let (status, content_type, body) = match (method, path) {
        ("GET" | "HEAD", "/metrics") => (200, PROMETHEUS_TEXT, metrics_text(handle)),
        ("GET" | "HEAD", "/healthz") => {
            let (alive, problems) = health::liveness();
            match alive {
                true => (200, PLAIN, "ok\n".to_owned()),
                false => (503, PLAIN, problems.join("\n") + "\n"),
            }
        }
        ("GET" | "HEAD", "/readyz") => {
            let (ready, parts) = health::readiness();
            let mut body = String::from(if ready { "ready\n" } else { "not ready\n" });
            if health::is_draining() {
                body.push_str("draining: shutting down\n");
            }
            for (component, ok) in parts {
                body.push_str(&format!(
                    "{component}: {}\n",
                    if ok { "ok" } else { "not ready" }
                ));
            }
            (if ready { 200 } else { 503 }, PLAIN, body)
        }
        ("GET" | "HEAD", _) => (
            404,
            PLAIN,
            "not found: /metrics, /healthz, /readyz\n".into(),
        ),
        _ => (405, PLAIN, "only GET\n".into()),
    };
    let reason = match status {
        200 => "OK",
        404 => "Not Found",
        405 => "Method Not Allowed",
        _ => "Service Unavailable",
    };
    let mut response = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    if method != "HEAD" {
        response.extend_from_slice(body.as_bytes());
    }
    stream.write_all(&response).await?;
    stream.shutdown().await
}

const PLAIN: &str = "text/plain; charset=utf-8";
const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The exposition text, with the gauges that depend on the time of the scrape set first.
fn metrics_text(handle: &PrometheusHandle) -> String {
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    for (source, newest_ms) in health::delivered_times() {
        let lag = now_ms.saturating_sub(newest_ms) as f64 / 1000.0;
        metrics::gauge!(m::CHECKPOINT_LAG_SECONDS, "source" => source).set(lag);
    }
    let ready = health::readiness().0;
    metrics::gauge!(m::READY).set(if ready { 1.0 } else { 0.0 });
    handle.render()
}
