//! A file that enrichment reloads when it changes (inventory, GeoIP databases): its
//! modification time is checked at most once per interval.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

pub struct WatchedFile {
    path: PathBuf,
    modified: Option<SystemTime>,
    checked: Instant,
    every: Duration,
}

impl WatchedFile {
    pub fn new(path: &Path, every: Duration) -> Self {
        WatchedFile {
            path: path.to_owned(),
            modified: modified(path),
            checked: Instant::now(),
            every,
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// True once per change of the modification time (checked at most every interval).
    /// The caller reloads; if that fails, the change is not seen again until the next one.
    pub fn changed(&mut self) -> bool {
        if self.checked.elapsed() < self.every {
            return false;
        }
        self.checked = Instant::now();
        let now = modified(&self.path);
        if now == self.modified {
            return false;
        }
        self.modified = now;
        true
    }
}

fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}
