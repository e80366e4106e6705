//! What the stages tell `/healthz`, `/readyz` and the lag gauge: one registry per process.
//!
//! - **Ready**: every component (`source.NAME`, `sink.NAME`) says it can work (a source
//!   listed its store, a sink has a connection), and the service is not draining.
//! - **Alive**: no pipeline task ended unexpectedly, and every task that registered a
//!   heartbeat beat within its allowance, unless it is waiting for downstream
//!   (backpressure from a slow SIEM is no reason to restart).
//! - **Lag**: per source, the time of the newest tuple whose batch was delivered.

use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

#[derive(Default)]
struct State {
    ready: BTreeMap<String, bool>,
    draining: bool,
    beats: BTreeMap<String, Beat>,
    failed: Vec<String>,
    delivered_ms: BTreeMap<String, u64>,
}

struct Beat {
    last: Instant,
    allowance: Duration,
    waiting: bool,
}

fn state() -> MutexGuard<'static, State> {
    static STATE: OnceLock<Mutex<State>> = OnceLock::new();
    STATE
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Whether `component` can do its work now.
pub fn set_ready(component: &str, ready: bool) {
    state().ready.insert(component.to_owned(), ready);
}

/// Shutdown has begun: not ready any more.
pub fn set_draining() {
    state().draining = true;
}

/// `task` is alive if it beats at least every `allowance`.
pub fn register_heartbeat(task: &str, allowance: Duration) {
    state().beats.insert(
        task.to_owned(),
        Beat {
            last: Instant::now(),
            allowance,
            waiting: false,
        },
    );
}

pub fn beat(task: &str) {
    if let Some(b) = state().beats.get_mut(task) {
        b.last = Instant::now();
        b.waiting = false;
    }
}

/// `task` is blocked on a full channel (a slow sink): alive, not stuck.
pub fn waiting_for_downstream(task: &str) {
    if let Some(b) = state().beats.get_mut(task) {
        b.last = Instant::now();
        b.waiting = true;
    }
}

/// A pipeline task stopped before shutdown: the process is no longer healthy.
pub fn task_failed(task: &str) {
    state().failed.push(task.to_owned());
}

/// Marks `task` failed if dropped while its thread panics: a stage that died must make
/// `/healthz` fail, or the sources would keep polling with nowhere to send.
pub struct FailedIfPanicking(pub &'static str);

impl Drop for FailedIfPanicking {
    fn drop(&mut self) {
        if std::thread::panicking() {
            task_failed(self.0);
        }
    }
}

/// A batch of `source` whose newest tuple is `newest_ms` was delivered.
pub fn delivered(source: &str, newest_ms: u64) {
    let mut s = state();
    let entry = s.delivered_ms.entry(source.to_owned()).or_insert(0);
    *entry = (*entry).max(newest_ms);
}

/// Newest delivered tuple time per source (epoch ms).
pub fn delivered_times() -> Vec<(String, u64)> {
    state()
        .delivered_ms
        .iter()
        .map(|(k, v)| (k.clone(), *v))
        .collect()
}

/// Ready, and each component's state (for the response body).
pub fn readiness() -> (bool, Vec<(String, bool)>) {
    let s = state();
    let parts: Vec<(String, bool)> = s.ready.iter().map(|(k, v)| (k.clone(), *v)).collect();
    let ready = !s.draining && !parts.is_empty() && parts.iter().all(|(_, r)| *r);
    (ready, parts)
}

pub fn is_draining() -> bool {
    state().draining
}

/// Alive, and what is wrong if not.
pub fn liveness() -> (bool, Vec<String>) {
    let s = state();
    let mut problems: Vec<String> = s.failed.iter().map(|t| format!("{t} stopped")).collect();
    for (task, b) in &s.beats {
        if !b.waiting && b.last.elapsed() > b.allowance {
            problems.push(format!(
                "{task} made no progress for {}s",
                b.last.elapsed().as_secs()
            ));
        }
    }
    (problems.is_empty(), problems)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panicking_stage_makes_the_process_unhealthy() {
        let quiet = std::thread::spawn(|| {
            let _guard = FailedIfPanicking("test.quiet");
        });
        quiet.join().unwrap();
        assert!(!liveness().1.iter().any(|p| p.contains("test.quiet")));
        let dies = std::thread::spawn(|| {
            let _guard = FailedIfPanicking("test.dies");
            panic!("on purpose");
        });
        assert!(dies.join().is_err());
        let (alive, problems) = liveness();
        assert!(
            !alive && problems.contains(&"test.dies stopped".to_owned()),
            "{problems:?}"
        );
    }
}
