//! The operations endpoint: `GET /metrics` (Prometheus text format), `/healthz` and
//! `/readyz` on `[api] address`.
//!
//! hyper's HTTP/1.1 server (keep-alive included) behind two limits of our own: at most
//! `max_connections` at once, and each one closed after `timeout_secs`, so that clients
//! that connect and stall, or ask and never read, cannot hold sockets and tasks for good.

use crate::config::ApiConfig;
use anyhow::{Context, Result};
use bytes::Bytes;
use flowgate_core::health;
use flowgate_core::metric_names::{self as m, Kind, CATALOGUE};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use std::convert::Infallible;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tracing::{debug, info};

/// Poll durations, from a quiet container (milliseconds) to a large backlog (minutes).
const POLL_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0,
];

/// A request head must arrive within this (or `timeout_secs`, if less).
const HEADER_TIMEOUT: Duration = Duration::from_secs(5);

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

/// Binds `[api] address` (a start-up error if taken) and serves until the process ends.
pub async fn serve(config: &ApiConfig, handle: PrometheusHandle) -> Result<()> {
    let Some(address) = &config.address else {
        return Ok(());
    };
    let listener = TcpListener::bind(address)
        .await
        .with_context(|| format!("api.address: cannot listen on {address}"))?;
    info!(address = %listener.local_addr()?, max_connections = config.max_connections, "serving /metrics, /healthz and /readyz");
    let slots = Arc::new(Semaphore::new(config.max_connections));
    let timeout = Duration::from_secs_f64(config.timeout_secs);
    tokio::spawn(async move {
        loop {
            let Ok((stream, peer)) = listener.accept().await else {
                // Out of file descriptors, most likely: wait rather than spin.
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            };
            // Full: close at once, so that slow or idle clients cannot queue up more.
            let Ok(slot) = slots.clone().try_acquire_owned() else {
                metrics::counter!(m::API_CONNECTIONS_REJECTED_TOTAL).increment(1);
                debug!(%peer, "api connection refused: max_connections reached");
                continue;
            };
            let handle = handle.clone();
            tokio::spawn(async move {
                let _slot = slot;
                let service = service_fn(move |request| {
                    let response = respond(&request, &handle);
                    async move { Ok::<_, Infallible>(response) }
                });
                let connection = http1::Builder::new()
                    .timer(TokioTimer::new())
                    .header_read_timeout(timeout.min(HEADER_TIMEOUT))
                    .max_buf_size(16 * 1024)
                    .serve_connection(TokioIo::new(stream), service);
                match tokio::time::timeout(timeout, connection).await {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => debug!(%peer, error = %e, "api connection failed"),
                    Err(_) => debug!(%peer, "api connection closed: timeout_secs reached"),
                }
            });
        }
    });
    Ok(())
}

fn respond(request: &Request<Incoming>, handle: &PrometheusHandle) -> Response<Full<Bytes>> {
    let (status, content_type, body) = match (request.method(), request.uri().path()) {
        (&Method::GET | &Method::HEAD, path) => route(path, handle),
        _ => (StatusCode::METHOD_NOT_ALLOWED, PLAIN, "only GET\n".into()),
    };
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

fn route(path: &str, handle: &PrometheusHandle) -> (StatusCode, &'static str, String) {
    match path {
        "/metrics" => (StatusCode::OK, PROMETHEUS_TEXT, metrics_text(handle)),
        "/healthz" => {
            let (alive, problems) = health::liveness();
            match alive {
                true => (StatusCode::OK, PLAIN, "ok\n".to_owned()),
                false => (
                    StatusCode::SERVICE_UNAVAILABLE,
                    PLAIN,
                    problems.join("\n") + "\n",
                ),
            }
        }
        "/readyz" => {
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
            let status = match ready {
                true => StatusCode::OK,
                false => StatusCode::SERVICE_UNAVAILABLE,
            };
            (status, PLAIN, body)
        }
        _ => (
            StatusCode::NOT_FOUND,
            PLAIN,
            "not found: /metrics, /healthz, /readyz\n".into(),
        ),
    }
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
