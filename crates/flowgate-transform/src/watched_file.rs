//! A file that enrichment reloads when it changes (inventory, GeoIP databases): its
//! modification time, size and inode are checked at most once per interval, so that a
//! file replaced by a rename or copied with its old time (`cp -p`) is noticed too.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

/// What tells one version of a file from another.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    modified: Option<SystemTime>,
    len: u64,
    inode: u64,
}

pub struct WatchedFile {
    path: PathBuf,
    stamp: Option<Stamp>,
    checked: Instant,
    every: Duration,
}

impl WatchedFile {
    pub fn new(path: &Path, every: Duration) -> Self {
        WatchedFile {
            path: path.to_owned(),
            stamp: stamp(path),
            checked: Instant::now(),
            every,
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// True once per change of the file (checked at most every interval). The caller
    /// reloads; if that fails, the change is not seen again until the next one.
    pub fn changed(&mut self) -> bool {
        if self.checked.elapsed() < self.every {
            return false;
        }
        self.checked = Instant::now();
        let now = stamp(&self.path);
        if now == self.stamp {
            return false;
        }
        self.stamp = now;
        true
    }
}

fn stamp(path: &Path) -> Option<Stamp> {
    let m = std::fs::metadata(path).ok()?;
    Some(Stamp {
        modified: m.modified().ok(),
        len: m.len(),
        inode: m.ino(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Writes `text` to `path` and sets its modification time back to `time`.
    fn write_at_time(path: &Path, text: &str, time: SystemTime) {
        std::fs::write(path, text).unwrap();
        let file = std::fs::File::options().write(true).open(path).unwrap();
        file.set_modified(time).unwrap();
    }

    #[test]
    fn a_change_of_content_size_or_inode_is_seen_even_at_the_same_time() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("assets.csv");
        std::fs::write(&path, "a").unwrap();
        let time = std::fs::metadata(&path).unwrap().modified().unwrap();
        let mut watched = WatchedFile::new(&path, Duration::ZERO);
        assert!(!watched.changed());
        // Same modification time, other size (`cp -p` of another version).
        write_at_time(&path, "ab", time);
        assert!(watched.changed());
        assert!(!watched.changed(), "once per change");
        // Same time and size, other file (replaced by a rename).
        let next = dir.path().join("next.csv");
        write_at_time(&next, "cd", time);
        std::fs::rename(&next, &path).unwrap();
        assert!(watched.changed());
        std::fs::remove_file(&path).unwrap();
        assert!(watched.changed(), "gone is a change too");
    }
}
