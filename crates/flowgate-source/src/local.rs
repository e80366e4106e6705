//! The local directory source: a directory laid out like the storage container.
//!
//! Every `*.json` file below the root is followed: the current `resourceId=/.../y=/m=/d=/
//! h=/m=00/macAddress=/PT1H.json` layout, the legacy `{nsg}/{y}/{m}/{d}/PT1H.json` one, or
//! any other. The reading itself is the [`crate::Follower`]'s.

use crate::follow::{
    default_max_record, default_poll_interval, default_read_chunk, FollowOptions, StartAt,
};
use crate::path::{PathFilter, ScopeNames};
use crate::store::{DirFilter, Listing, ObjectInfo, ObjectStore, StoreError};
use serde::Deserialize;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LocalSourceConfig {
    /// The directory to follow.
    pub path: PathBuf,
    /// Seconds between two scans of the directory.
    #[serde(default = "default_poll_interval")]
    pub poll_interval_secs: f64,
    /// A label carried into every event (e.g. the subscription's friendly name).
    #[serde(default)]
    pub subscription_tag: Option<String>,
    #[serde(default)]
    pub start_at: StartAt,
    /// Follow only the objects of these subscriptions, resource groups and NSGs.
    #[serde(default)]
    pub include: ScopeNames,
    /// Never follow the objects of these.
    #[serde(default)]
    pub exclude: ScopeNames,
    /// Bytes read per batch; bounds memory together with the channel capacity.
    #[serde(default = "default_read_chunk")]
    pub read_chunk_bytes: usize,
    /// A record longer than this is reported and skipped instead of read into memory.
    #[serde(default = "default_max_record")]
    pub max_record_bytes: usize,
    /// Reads in flight at once, over different NSGs and MACs (each one's hours are read one
    /// after another, in order). A local disk answers in microseconds, so the default is
    /// one: files are then read in listing order, as before concurrent reads.
    #[serde(default = "one")]
    pub max_concurrent_reads: usize,
}

fn one() -> usize {
    1
}

impl LocalSourceConfig {
    /// Checks the config without I/O; errors name the key under `prefix`.
    pub fn validate(&self, prefix: &str) -> Result<(), String> {
        if self.path.as_os_str().is_empty() {
            return Err(format!("{prefix}.path must not be empty"));
        }
        self.filter().validate(prefix)?;
        FollowOptions::check(
            prefix,
            self.poll_interval_secs,
            self.read_chunk_bytes,
            self.max_record_bytes,
            self.max_concurrent_reads,
        )
    }

    pub fn follow_options(&self) -> FollowOptions {
        FollowOptions::new(
            self.poll_interval_secs,
            self.start_at,
            self.read_chunk_bytes,
            self.max_record_bytes,
        )
        .with_concurrent_reads(self.max_concurrent_reads)
        .with_subscription_tag(self.subscription_tag.as_deref())
        .with_filter(self.filter())
    }

    fn filter(&self) -> PathFilter {
        PathFilter {
            include: self.include.clone(),
            exclude: self.exclude.clone(),
        }
    }
}

/// A directory as an [`ObjectStore`]: object names are paths relative to the root.
pub struct LocalDir {
    root: PathBuf,
}

impl LocalDir {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        LocalDir { root: root.into() }
    }
}

impl ObjectStore for LocalDir {
    async fn list(&self, _wanted: DirFilter<'_>) -> Result<Listing, StoreError> {
        let root = self.root.clone();
        let objects = tokio::task::spawn_blocking(move || list_json_files(&root))
            .await
            .map_err(|e| StoreError::Other(e.to_string()))?
            .map_err(|e| StoreError::Other(format!("{}: {e}", self.root.display())))?;
        Ok(Listing {
            objects,
            complete: true,
            requests: 0,
        })
    }

    async fn read(&self, name: &str, offset: u64, len: usize) -> Result<Vec<u8>, StoreError> {
        let path = self.root.join(name);
        let shown = name.to_owned();
        tokio::task::spawn_blocking(move || {
            let file = std::fs::File::open(&path)?;
            let mut buf = vec![0u8; len];
            let mut filled = 0;
            while filled < len {
                match file.read_at(&mut buf[filled..], offset + filled as u64)? {
                    0 => break,
                    n => filled += n,
                }
            }
            buf.truncate(filled);
            Ok(buf)
        })
        .await
        .map_err(|e| StoreError::Other(e.to_string()))?
        .map_err(|e: std::io::Error| match e.kind() {
            std::io::ErrorKind::NotFound => StoreError::NotFound(shown),
            _ => StoreError::Other(format!("{shown}: {e}")),
        })
    }
}

/// Every `*.json` file under `root` with its length, sorted by path (hourly paths sort by
/// time).
fn list_json_files(root: &Path) -> std::io::Result<Vec<ObjectInfo>> {
    let mut out = Vec::new();
    let mut dirs = vec![root.to_owned()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir)? {
            let entry = entry?;
            let ty = entry.file_type()?;
            let path = entry.path();
            if ty.is_dir() {
                dirs.push(path);
            } else if ty.is_file()
                && path
                    .extension()
                    .is_some_and(|e| e.eq_ignore_ascii_case("json"))
            {
                // The file may vanish between listing and stat (retention): skip it.
                if let Ok(meta) = entry.metadata() {
                    let name = path.strip_prefix(root).unwrap_or(&path);
                    out.push(ObjectInfo {
                        name: name.display().to_string(),
                        len: meta.len(),
                        version: crate::store::version_of((meta.modified().ok(), meta.ino())),
                    });
                }
            }
        }
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}
