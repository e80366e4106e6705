//! Where each file or blob was read up to, in a crash-safe embedded store.
//!
//! redb commits are atomic and durable (copy-on-write pages, fsync on commit), so a
//! kill -9 in the middle of a write leaves either the old or the new checkpoints, never a
//! torn mix. Keys are `source/path`; a checkpoint only ever names a byte offset just after
//! a record that a sink has delivered.

use redb::{Database, TableDefinition};
use serde::{Deserialize, Serialize};
use std::path::Path;
use std::sync::Arc;

const TABLE: TableDefinition<&str, &[u8]> = TableDefinition::new("checkpoints");
const CACHE_BYTES: usize = 16 << 20;

#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("checkpoint store {path}: {message}")]
    Store { path: String, message: String },
}

/// One file's or blob's position.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// Bytes delivered: the next read starts here.
    pub offset: u64,
    /// [`crate::anchor::Anchor`] of the bytes just before `offset`: if they differ when
    /// resuming, the object was rewritten and reading restarts at 0.
    pub anchor: String,
    /// Unix seconds of the last update.
    pub updated: u64,
    /// Set when everything the object held was read and delivered: its size and version
    /// then. While a listing shows the same, a restart or a takeover neither reads the
    /// object nor checks its anchor (a restart costs no request per retained blob).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub complete: Option<Complete>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Complete {
    pub size: u64,
    pub version: u64,
}

/// A checkpoint to store, for an object of the partition claimed in `epoch`.
#[derive(Debug, Clone)]
pub struct Update {
    pub name: Arc<str>,
    pub epoch: u64,
    pub checkpoint: Checkpoint,
}

/// Where a follower keeps its checkpoints, and which objects it may follow: all of them
/// ([`LocalCheckpoints`], one instance), or those of the partitions whose blob leases this
/// instance holds ([`crate::cluster::LeasedCheckpoints`]).
pub trait Checkpoints: Send + Sync + 'static {
    /// `Some(epoch)` while this instance may follow `name`; the epoch changes whenever its
    /// partition is claimed again, so that state from an earlier ownership is never reused.
    fn claim(&self, name: &str) -> Option<u64>;

    /// False as soon as `name` must not be read any more (its partition's lease could not
    /// be renewed, or it is being handed over), even while its checkpoints still count.
    fn readable(&self, name: &str) -> bool {
        self.claim(name).is_some()
    }

    /// Whether a listing should look into this NSG's or flow log's directory.
    fn wants_dir(&self, _dir: &str) -> bool {
        true
    }

    /// Changes whenever the set of claimed objects may have changed.
    fn generation(&self) -> u64 {
        0
    }

    /// The stored checkpoint of `name` (from memory or a local store: no network request).
    fn get(&self, name: &str) -> Result<Option<Checkpoint>, CheckpointError>;

    /// Stores `updates` and removes `removals` (name, epoch). Updates of a partition no
    /// longer held, or claimed again since `epoch`, are refused (never written).
    fn write(
        &self,
        updates: Vec<Update>,
        removals: Vec<(Arc<str>, u64)>,
    ) -> impl std::future::Future<Output = Result<(), CheckpointError>> + Send;

    /// Makes everything written so far durable (at shutdown).
    fn flush(&self) -> impl std::future::Future<Output = Result<(), CheckpointError>> + Send {
        async { Ok(()) }
    }
}

/// One instance's checkpoints in the local redb store, under `source/`.
#[derive(Clone, Debug)]
pub struct LocalCheckpoints {
    store: CheckpointStore,
    source: Arc<str>,
}

impl LocalCheckpoints {
    pub fn new(store: CheckpointStore, source: &str) -> Self {
        LocalCheckpoints {
            store,
            source: source.into(),
        }
    }

    fn key(&self, name: &str) -> String {
        format!("{}/{}", self.source, name)
    }
}

impl Checkpoints for LocalCheckpoints {
    fn claim(&self, _name: &str) -> Option<u64> {
        Some(0)
    }

    fn get(&self, name: &str) -> Result<Option<Checkpoint>, CheckpointError> {
        self.store.get(&self.key(name))
    }

    async fn write(
        &self,
        updates: Vec<Update>,
        removals: Vec<(Arc<str>, u64)>,
    ) -> Result<(), CheckpointError> {
        if updates.is_empty() && removals.is_empty() {
            return Ok(());
        }
        let updates: Vec<(String, Checkpoint)> = updates
            .into_iter()
            .map(|u| (self.key(&u.name), u.checkpoint))
            .collect();
        let removals: Vec<String> = removals.iter().map(|(n, _)| self.key(n)).collect();
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || {
            let updates: Vec<(&str, &Checkpoint)> =
                updates.iter().map(|(k, c)| (k.as_str(), c)).collect();
            let removals: Vec<&str> = removals.iter().map(String::as_str).collect();
            store.write(&updates, &removals)
        })
        .await
        .expect("checkpoint writer panicked")
    }
}

/// A handle on the store; cheap to clone, shared by every source.
#[derive(Clone)]
pub struct CheckpointStore {
    db: Arc<Database>,
    path: Arc<str>,
}

impl std::fmt::Debug for CheckpointStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CheckpointStore")
            .field("path", &self.path)
            .finish()
    }
}

impl CheckpointStore {
    /// Opens (or creates) the store; its directory must exist.
    pub fn open(path: &Path) -> Result<Self, CheckpointError> {
        let shown: Arc<str> = path.display().to_string().into();
        // redb caches up to 1 GiB of pages by default: with 100,000 objects that is most
        // of the process's memory for lookups done once per object.
        let db = Database::builder()
            .set_cache_size(CACHE_BYTES)
            .create(path)
            .map_err(|e| CheckpointError::Store {
                path: shown.to_string(),
                message: e.to_string(),
            })?;
        let store = CheckpointStore {
            db: Arc::new(db),
            path: shown,
        };
        // Create the table up front so that readers never see it missing.
        store.write(&[], &[])?;
        Ok(store)
    }

    fn err(&self, e: impl std::fmt::Display) -> CheckpointError {
        CheckpointError::Store {
            path: self.path.to_string(),
            message: e.to_string(),
        }
    }

    pub fn get(&self, key: &str) -> Result<Option<Checkpoint>, CheckpointError> {
        let tx = self.db.begin_read().map_err(|e| self.err(e))?;
        let table = tx.open_table(TABLE).map_err(|e| self.err(e))?;
        let value = table.get(key).map_err(|e| self.err(e))?;
        Ok(value.and_then(|v| serde_json::from_slice(v.value()).ok()))
    }

    /// Every checkpoint whose key starts with `prefix`, in key order.
    pub fn list(&self, prefix: &str) -> Result<Vec<(String, Checkpoint)>, CheckpointError> {
        let tx = self.db.begin_read().map_err(|e| self.err(e))?;
        let table = tx.open_table(TABLE).map_err(|e| self.err(e))?;
        let mut out = Vec::new();
        for entry in table.range(prefix..).map_err(|e| self.err(e))? {
            let (k, v) = entry.map_err(|e| self.err(e))?;
            if !k.value().starts_with(prefix) {
                break;
            }
            if let Ok(cp) = serde_json::from_slice(v.value()) {
                out.push((k.value().to_owned(), cp));
            }
        }
        Ok(out)
    }

    /// Stores `updates` and removes `removals` in one atomic, durable transaction.
    pub fn write(
        &self,
        updates: &[(&str, &Checkpoint)],
        removals: &[&str],
    ) -> Result<(), CheckpointError> {
        let tx = self.db.begin_write().map_err(|e| self.err(e))?;
        {
            let mut table = tx.open_table(TABLE).map_err(|e| self.err(e))?;
            for (key, cp) in updates {
                let bytes = serde_json::to_vec(cp).map_err(|e| self.err(e))?;
                table
                    .insert(*key, bytes.as_slice())
                    .map_err(|e| self.err(e))?;
            }
            for key in removals {
                table.remove(*key).map_err(|e| self.err(e))?;
            }
        }
        tx.commit().map_err(|e| self.err(e))?;
        metrics::counter!(flowgate_core::metric_names::CHECKPOINT_WRITES_TOTAL).increment(1);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn survives_reopen_and_lists_by_prefix() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cp.redb");
        let a = Checkpoint {
            offset: 10,
            anchor: "1:00".into(),
            updated: 5,
            complete: Some(Complete {
                size: 12,
                version: 7,
            }),
        };
        {
            let s = CheckpointStore::open(&path).unwrap();
            s.write(&[("src/a", &a), ("src/b", &a), ("other/c", &a)], &[])
                .unwrap();
            s.write(&[], &["src/b"]).unwrap();
        }
        let s = CheckpointStore::open(&path).unwrap();
        assert_eq!(s.get("src/a").unwrap(), Some(a.clone()));
        assert_eq!(s.get("src/b").unwrap(), None);
        let keys: Vec<_> = s
            .list("src/")
            .unwrap()
            .into_iter()
            .map(|(k, _)| k)
            .collect();
        assert_eq!(keys, ["src/a"]);
        assert_eq!(s.list("").unwrap().len(), 2);
    }

    #[test]
    fn checkpoints_of_earlier_releases_still_read() {
        let old: Checkpoint =
            serde_json::from_str(r#"{"offset":3,"anchor":"0:cbf29ce484222325","updated":1}"#)
                .unwrap();
        assert_eq!(old.offset, 3);
        assert_eq!(old.complete, None);
    }
}
