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
        let db = Database::create(path).map_err(|e| CheckpointError::Store {
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
}
