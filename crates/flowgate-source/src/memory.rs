//! An in-memory [`ObjectStore`], for unit tests of the follower: objects written and
//! rewritten at will, every request counted, and reads that can be slowed down.

use crate::store::{version_of, DirFilter, Listing, ObjectInfo, ObjectStore, StoreError};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Clone, Default)]
pub struct MemoryStore {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    /// name → (content, writes so far: the version)
    objects: Mutex<BTreeMap<String, (Vec<u8>, u64)>>,
    reads: AtomicUsize,
    bytes_read: AtomicUsize,
    in_flight: AtomicUsize,
    /// The most reads that were in flight at once.
    peak_in_flight: AtomicUsize,
    read_delay_ms: AtomicUsize,
    /// Names in the order their reads started.
    read_log: Mutex<Vec<String>>,
}

impl MemoryStore {
    pub fn put(&self, name: &str, data: &[u8]) {
        let mut objects = self.inner.objects.lock().unwrap();
        let version = objects.get(name).map_or(1, |(_, v)| v + 1);
        objects.insert(name.to_owned(), (data.to_vec(), version));
    }

    pub fn remove(&self, name: &str) {
        self.inner.objects.lock().unwrap().remove(name);
    }

    /// Every read from now on takes this long.
    pub fn set_read_delay(&self, delay: Duration) {
        self.inner
            .read_delay_ms
            .store(delay.as_millis() as usize, Ordering::Relaxed);
    }

    pub fn reads(&self) -> usize {
        self.inner.reads.load(Ordering::Relaxed)
    }

    /// Bytes returned by reads so far.
    pub fn bytes_read(&self) -> usize {
        self.inner.bytes_read.load(Ordering::Relaxed)
    }

    pub fn peak_in_flight(&self) -> usize {
        self.inner.peak_in_flight.load(Ordering::Relaxed)
    }

    pub fn read_log(&self) -> Vec<String> {
        self.inner.read_log.lock().unwrap().clone()
    }
}

impl ObjectStore for MemoryStore {
    async fn list(&self, _wanted: DirFilter<'_>) -> Result<Listing, StoreError> {
        let objects = self.inner.objects.lock().unwrap();
        Ok(Listing {
            objects: objects
                .iter()
                .map(|(name, (data, version))| ObjectInfo {
                    name: name.clone(),
                    len: data.len() as u64,
                    version: version_of(version),
                })
                .collect(),
            complete: true,
            requests: 1,
        })
    }

    async fn read(&self, name: &str, offset: u64, len: usize) -> Result<Vec<u8>, StoreError> {
        let inner = &self.inner;
        inner.reads.fetch_add(1, Ordering::Relaxed);
        inner.read_log.lock().unwrap().push(name.to_owned());
        let now = inner.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        inner.peak_in_flight.fetch_max(now, Ordering::SeqCst);
        let delay = inner.read_delay_ms.load(Ordering::Relaxed);
        if delay > 0 {
            tokio::time::sleep(Duration::from_millis(delay as u64)).await;
        }
        inner.in_flight.fetch_sub(1, Ordering::SeqCst);
        let objects = inner.objects.lock().unwrap();
        let (data, _) = objects
            .get(name)
            .ok_or_else(|| StoreError::NotFound(name.to_owned()))?;
        let start = (offset as usize).min(data.len());
        let end = start.saturating_add(len).min(data.len());
        inner.bytes_read.fetch_add(end - start, Ordering::Relaxed);
        Ok(data[start..end].to_vec())
    }
}
