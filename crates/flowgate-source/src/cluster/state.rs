//! The cluster's state container: one blob per partition (its lease is the ownership, its
//! content the partition's checkpoints) and one per instance (its lease says it is alive).
//! The only part of the cluster that talks to the Azure SDK.
//!
//! ```text
//! {container}/{source}/partitions/0007.json   leased by the owner; {"owner", "released", "objects"}
//! {container}/{source}/instances/{instance}   leased by the instance while it runs
//! ```
//! Every checkpoint write sends the lease id and `If-Match` the ETag of the owner's last
//! read or write, so that an instance whose lease was lost or taken over can never move a
//! checkpoint: the service refuses with 409 or 412 (checked against Azurite, see
//! docs/AZURITE-LEASES.md).

use azure_core::error::ErrorKind;
use azure_core::prelude::{IfMatchCondition, LeaseDuration, LeaseId};
use azure_core::LeaseState;
use azure_storage_blobs::prelude::ContainerClient;
use futures::StreamExt;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// Refused by a lease or an ETag condition (HTTP 409 or 412): someone else holds it.
    #[error("refused: {0}")]
    Refused(String),
    /// The blob does not exist.
    #[error("not found: {0}")]
    NotFound(String),
    /// Anything else (network, 5xx, permissions): might work next time.
    #[error("{0}")]
    Other(String),
}

/// The blobs of one source's cluster state.
#[derive(Clone)]
pub struct StateContainer {
    client: ContainerClient,
    /// `{source}/`
    root: String,
    lease: Duration,
}

/// A partition blob as read: its content and ETag.
pub struct Snapshot {
    pub data: Vec<u8>,
    pub etag: String,
}

impl StateContainer {
    pub fn new(client: ContainerClient, source: &str, lease: Duration) -> Self {
        StateContainer {
            client,
            root: format!("{source}/"),
            lease,
        }
    }

    pub fn partition_blob(&self, partition: u32) -> String {
        format!("{}partitions/{partition:04}.json", self.root)
    }

    fn instance_blob(&self, instance: &str) -> String {
        format!("{}instances/{instance}", self.root)
    }

    /// Creates the container; one that exists already is fine.
    pub async fn create_container(&self) -> Result<(), StateError> {
        match self.client.create().await {
            Ok(_) => Ok(()),
            Err(e) if status_of(&e) == Some(409) => Ok(()),
            Err(e) => Err(other(self.client.container_name(), e)),
        }
    }

    /// Acquires the blob's lease, creating the blob first if it does not exist.
    /// `Refused` if another holds it.
    pub async fn acquire(&self, blob: &str, initial: &[u8]) -> Result<LeaseId, StateError> {
        for _ in 0..2 {
            let client = self.client.blob_client(blob);
            match client.acquire_lease(self.lease_duration()).await {
                Ok(r) => return Ok(r.lease_id),
                Err(e) if status_of(&e) == Some(404) => {
                    // Only if still absent: never overwrite what another just wrote.
                    let created = client
                        .put_block_blob(initial.to_vec())
                        .if_match(IfMatchCondition::NotMatch("*".into()))
                        .await;
                    match created {
                        Ok(_) => {}
                        Err(e) if matches!(status_of(&e), Some(409 | 412)) => {}
                        Err(e) => return Err(other(blob, e)),
                    }
                }
                Err(e) => return Err(classify(blob, e)),
            }
        }
        Err(StateError::Other(format!(
            "{blob}: created but still not found"
        )))
    }

    pub async fn renew(&self, blob: &str, lease: LeaseId) -> Result<(), StateError> {
        self.client
            .blob_client(blob)
            .blob_lease_client(lease)
            .renew()
            .await
            .map(|_| ())
            .map_err(|e| classify(blob, e))
    }

    pub async fn release(&self, blob: &str, lease: LeaseId) -> Result<(), StateError> {
        self.client
            .blob_client(blob)
            .blob_lease_client(lease)
            .release()
            .await
            .map(|_| ())
            .map_err(|e| classify(blob, e))
    }

    /// The blob's content and ETag.
    pub async fn read(&self, blob: &str) -> Result<Snapshot, StateError> {
        let mut pages = self.client.blob_client(blob).get().into_stream();
        let mut data = Vec::new();
        let mut etag = String::new();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| classify(blob, e))?;
            if etag.is_empty() {
                etag = page.blob.properties.etag.to_string();
            }
            let bytes = page.data.collect().await.map_err(|e| other(blob, e))?;
            data.extend_from_slice(&bytes);
        }
        Ok(Snapshot { data, etag })
    }

    /// Writes the blob under its lease, if it is still the version of `etag`; returns the
    /// new ETag.
    pub async fn write(
        &self,
        blob: &str,
        lease: LeaseId,
        etag: &str,
        data: Vec<u8>,
    ) -> Result<String, StateError> {
        self.client
            .blob_client(blob)
            .put_block_blob(data)
            .lease_id(lease)
            .if_match(IfMatchCondition::Match(etag.to_owned()))
            .await
            .map(|r| r.etag)
            .map_err(|e| classify(blob, e))
    }

    /// Takes (or renews) this instance's presence lease.
    pub async fn announce(
        &self,
        instance: &str,
        held: Option<LeaseId>,
    ) -> Result<LeaseId, StateError> {
        let blob = self.instance_blob(instance);
        if let Some(lease) = held {
            match self.renew(&blob, lease).await {
                Ok(()) => return Ok(lease),
                Err(StateError::Refused(_)) => {} // expired and taken: take it again
                Err(e) => return Err(e),
            }
        }
        self.acquire(&blob, b"").await
    }

    /// Gives up the presence lease (a clean stop), so that the others rebalance at once.
    pub async fn withdraw(&self, instance: &str, lease: LeaseId) -> Result<(), StateError> {
        self.release(&self.instance_blob(instance), lease).await
    }

    /// The instances holding their presence lease, sorted.
    pub async fn live_instances(&self) -> Result<Vec<String>, StateError> {
        let prefix = format!("{}instances/", self.root);
        let mut pages = self
            .client
            .list_blobs()
            .prefix(prefix.clone())
            .into_stream();
        let mut live = Vec::new();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| other(self.client.container_name(), e))?;
            for blob in page.blobs.blobs() {
                if blob.properties.lease_state == Some(LeaseState::Leased) {
                    if let Some(name) = blob.name.strip_prefix(&prefix) {
                        live.push(name.to_owned());
                    }
                }
            }
        }
        live.sort();
        live.dedup();
        Ok(live)
    }

    fn lease_duration(&self) -> LeaseDuration {
        LeaseDuration::Seconds(self.lease.as_secs().clamp(15, 60) as u8)
    }
}

fn status_of(e: &azure_core::Error) -> Option<u16> {
    match e.kind() {
        ErrorKind::HttpResponse { status, .. } => Some(u16::from(*status)),
        _ => None,
    }
}

fn classify(what: &str, e: azure_core::Error) -> StateError {
    match status_of(&e) {
        Some(409 | 412) => StateError::Refused(format!("{what}: {}", code_of(&e))),
        Some(404) => StateError::NotFound(what.to_owned()),
        _ => other(what, e),
    }
}

fn other(what: &str, e: azure_core::Error) -> StateError {
    StateError::Other(format!("{what}: {}", crate::blob::error_text(&e)))
}

fn code_of(e: &azure_core::Error) -> String {
    match e.kind() {
        ErrorKind::HttpResponse { status, error_code } => {
            format!(
                "HTTP {} {}",
                u16::from(*status),
                error_code.as_deref().unwrap_or("")
            )
        }
        _ => String::new(),
    }
}
