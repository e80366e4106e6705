//! "Reopen your output files": what SIGHUP means to flowgate (logrotate's `postrotate`),
//! never a reason to stop. A counter that sinks compare with the one they opened under.

use std::sync::atomic::{AtomicU64, Ordering};

static GENERATION: AtomicU64 = AtomicU64::new(0);

/// Asks every file sink to reopen its path before its next write.
pub fn request() {
    GENERATION.fetch_add(1, Ordering::Relaxed);
}

/// Changes at every [`request`].
pub fn generation() -> u64 {
    GENERATION.load(Ordering::Relaxed)
}
