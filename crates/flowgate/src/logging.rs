//! Logging: `tracing` to stderr (stdout may be a sink), text or JSON, the level from
//! `[log] level` or `FLOWGATE_LOG`, and repeated warnings and errors rate-limited so that
//! a receiver down for an hour does not fill the disk with the same line.

use crate::config::{LogConfig, LogFormat};
use flowgate_core::metric_names as m;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tracing::callsite::Identifier;
use tracing::{Event, Level, Metadata};
use tracing_subscriber::layer::{Context, Filter, SubscriberExt};
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::Layer;

const WINDOW: Duration = Duration::from_secs(60);

pub fn init(config: &LogConfig) {
    let levels = tracing_subscriber::EnvFilter::try_from_env("FLOWGATE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(&config.level));
    let fmt = tracing_subscriber::fmt::layer()
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    let fmt = match config.format {
        LogFormat::Text => fmt.boxed(),
        LogFormat::Json => fmt.json().boxed(),
    };
    let limit = RepeatLimit::new(config.repeat_limit_per_minute);
    let suppressed = limit.suppressed.clone();
    tracing_subscriber::registry()
        .with(
            fmt.with_filter(levels)
                .with_filter(limit)
                .with_filter(tracing_subscriber::filter::filter_fn(not_leaky)),
        )
        .init();
    if config.repeat_limit_per_minute > 0 {
        let _ = std::thread::Builder::new()
            .name("log-summary".into())
            .spawn(move || loop {
                std::thread::sleep(WINDOW);
                let n = suppressed.swap(0, Ordering::Relaxed);
                if n > 0 {
                    tracing::warn!(
                        suppressed = n,
                        "repeated warnings and errors were not logged in the last minute (see flowgate_log_messages_suppressed_total)"
                    );
                }
            });
    }
}

/// Libraries whose debug output prints whole requests, SAS token (`sig=`) included in
/// the URL: never below info, whatever the level asked for (tested).
const LEAKY_TARGETS: &[&str] = &[
    "azure_core",
    "azure_storage",
    "azure_storage_blobs",
    "reqwest",
    "hyper",
    "hyper_util",
];

fn not_leaky(meta: &Metadata<'_>) -> bool {
    *meta.level() <= Level::INFO
        || !LEAKY_TARGETS.iter().any(|t| {
            meta.target()
                .strip_prefix(t)
                .is_some_and(|rest| rest.is_empty() || rest.starts_with("::"))
        })
}

/// At most `per_window` warnings or errors per minute from one place in the code; the
/// rest are counted (`flowgate_log_messages_suppressed_total`) and summarised once a
/// minute. 0 turns the limit off.
pub struct RepeatLimit {
    allowance: Allowance<Identifier>,
    suppressed: Arc<AtomicU64>,
}

impl RepeatLimit {
    pub fn new(per_window: u32) -> Self {
        RepeatLimit {
            allowance: Allowance::new(per_window),
            suppressed: Arc::new(AtomicU64::new(0)),
        }
    }
}

impl<S> Filter<S> for RepeatLimit {
    fn enabled(&self, _meta: &Metadata<'_>, _cx: &Context<'_, S>) -> bool {
        true
    }

    fn event_enabled(&self, event: &Event<'_>, _cx: &Context<'_, S>) -> bool {
        let level = *event.metadata().level();
        if self.allowance.per_window == 0 || level > Level::WARN {
            return true;
        }
        if self
            .allowance
            .admit(event.metadata().callsite(), Instant::now())
        {
            return true;
        }
        self.suppressed.fetch_add(1, Ordering::Relaxed);
        metrics::counter!(m::LOG_MESSAGES_SUPPRESSED_TOTAL, "level" => level.as_str()).increment(1);
        false
    }
}

/// Occurrences per key per minute.
struct Allowance<K> {
    per_window: u32,
    seen: Mutex<HashMap<K, (Instant, u32)>>,
}

impl<K: std::hash::Hash + Eq> Allowance<K> {
    fn new(per_window: u32) -> Self {
        Allowance {
            per_window,
            seen: Mutex::new(HashMap::new()),
        }
    }

    /// True if this occurrence of `key` may be logged now.
    fn admit(&self, key: K, now: Instant) -> bool {
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        let (start, count) = seen.entry(key).or_insert((now, 0));
        if now.duration_since(*start) >= WINDOW {
            *start = now;
            *count = 0;
        }
        *count += 1;
        *count <= self.per_window
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admits_a_few_per_minute_per_place() {
        let limit = Allowance::new(3);
        let t0 = Instant::now();
        let admitted: Vec<bool> = (0..5).map(|_| limit.admit("a", t0)).collect();
        assert_eq!(admitted, [true, true, true, false, false]);
        assert!(limit.admit("b", t0), "another place has its own allowance");
        assert!(limit.admit("a", t0 + WINDOW), "a new minute starts again");
    }
}
