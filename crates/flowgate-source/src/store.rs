//! Where followed objects live: a local directory or a blob container.
//!
//! A [`crate::Follower`] needs only two things of a store: which objects exist (and how
//! long they are), and a byte range of one of them. Everything else — extracting records,
//! acknowledgements, checkpoints, anchors — is the same for every store.

use std::future::Future;

/// An object (file or blob) and its current length.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectInfo {
    /// Path relative to the store's root, or blob name: part of the checkpoint key.
    pub name: String,
    pub len: u64,
    /// Changes whenever the object is written, even to the same length (a hash of the
    /// blob's ETag; a file's modification time and inode).
    pub version: u64,
}

/// A `version` from whatever identifies one version of an object. Stored in checkpoints
/// and compared by other instances, so it is the same in every process and release
/// (FNV-1a, not the standard library's hasher).
pub fn version_of(identity: impl std::hash::Hash) -> u64 {
    use std::hash::{BuildHasher, BuildHasherDefault};
    BuildHasherDefault::<Fnv>::default().hash_one(identity)
}

/// FNV-1a: fixed, unseeded. Keyed only by names the storage account gives, never by flow
/// data, so a crafted input cannot use it.
pub(crate) struct Fnv(u64);

impl Default for Fnv {
    fn default() -> Self {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
}

impl std::hash::Hasher for Fnv {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0 ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
}

/// The result of one listing.
#[derive(Debug, Default)]
pub struct Listing {
    pub objects: Vec<ObjectInfo>,
    /// True if every existing object is listed, so that one missing from the listing is
    /// gone; false for a partial listing (only the objects that can still change).
    pub complete: bool,
    /// Requests the listing took (0 for a local directory).
    pub requests: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The object (or the container) does not exist (any more).
    #[error("not found: {0}")]
    NotFound(String),
    /// The credential is refused or lacks a permission (HTTP 401/403).
    #[error("access denied: {0}")]
    Denied(String),
    /// Anything else; the follower retries at its next poll.
    #[error("{0}")]
    Other(String),
}

/// Which NSG or flow log directories (the blob name up to its hour partition) a listing
/// should look into: the ones this instance follows.
pub type DirFilter<'a> = &'a (dyn Fn(&str) -> bool + Sync);

pub trait ObjectStore: Send + Sync + 'static {
    /// Lists the objects worth looking at now. A store that lists by directory may skip
    /// the directories `wanted` refuses; the caller filters the objects anyway.
    fn list(
        &self,
        wanted: DirFilter<'_>,
    ) -> impl Future<Output = Result<Listing, StoreError>> + Send;

    /// Reads `len` bytes from `offset` (fewer at the end of the object).
    fn read(
        &self,
        name: &str,
        offset: u64,
        len: usize,
    ) -> impl Future<Output = Result<Vec<u8>, StoreError>> + Send;
}
