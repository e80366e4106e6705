//! Azure Blob Storage as an [`ObjectStore`]: the only module that talks to the Azure SDK.
//!
//! Built on `azure_storage_blobs` 0.21 (the design card's crate). The newer official
//! `azure_storage_blob` has neither shared-key authentication nor delimiter listing yet;
//! keeping every SDK call here means moving to it later touches this file only.
//!
//! Two traps of the 0.21 crates are avoided here: its default HTTP client does not reuse
//! connections and has no timeouts (flowgate passes its own pooled `reqwest` client), and
//! its default retry policy can spend about 80 s on a dead endpoint (bounded here, because
//! the follower retries at its next poll anyway).

use crate::aad::AzureAdConfig;
use crate::follow::{
    default_concurrent_reads, default_max_record, default_poll_interval, default_read_chunk,
    FollowOptions, StartAt,
};
use crate::path::{hour_dir, PathFilter, ScopeNames};
use crate::plain_http;
use crate::store::{DirFilter, Listing, ObjectInfo, ObjectStore, StoreError};
use azure_core::error::ErrorKind;
use azure_core::{ExponentialRetryOptions, RetryOptions, TransportOptions};
use azure_storage::{CloudLocation, ConnectionString, StorageCredentials};
use azure_storage_blobs::prelude::{
    BlobBlockType, BlockId, BlockList, ClientBuilder, ContainerClient,
};
use flowgate_core::time::UtcTime;
use flowgate_core::Secret;
use futures::StreamExt;
use serde::Deserialize;
use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The container Network Watcher writes NSG flow logs to.
pub const NSG_CONTAINER: &str = "insights-logs-networksecuritygroupflowevent";
/// The container Network Watcher writes VNet flow logs to.
pub const VNET_CONTAINER: &str = "insights-logs-flowlogflowevent";

/// `[sources.NAME]` with `type = "azure_blob"`. Exactly one credential is set.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BlobSourceConfig {
    /// Storage account name (not needed with a connection string or the emulator).
    #[serde(default)]
    pub account: Option<String>,
    #[serde(default = "default_container")]
    pub container: String,
    /// Only blobs whose names start with this (e.g. one subscription's `resourceId=/...`).
    #[serde(default)]
    pub prefix: String,
    /// A full connection string (`AccountName=...;AccountKey=...` or
    /// `UseDevelopmentStorage=true`).
    #[serde(default)]
    pub connection_string: Option<Secret>,
    /// Account key, with `account`.
    #[serde(default)]
    pub access_key: Option<Secret>,
    /// SAS token (`sv=...&sig=...`), with `account`.
    #[serde(default)]
    pub sas_token: Option<Secret>,
    /// The Azurite emulator's well-known account and key.
    #[serde(default)]
    pub use_emulator: bool,
    /// Microsoft Entra ID (Azure AD): a service principal, workload or managed identity,
    /// with `account`. The identity needs the "Storage Blob Data Reader" role.
    #[serde(default)]
    pub azure_ad: Option<AzureAdConfig>,
    /// A PEM file of CA certificates to trust besides the system's (a private endpoint
    /// behind a TLS-inspecting proxy; Azurite over HTTPS in tests).
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Blob service URL when it is not `https://{account}.blob.core.windows.net`
    /// (Azurite: `http://127.0.0.1:10000/devstoreaccount1`, private endpoints).
    #[serde(default)]
    pub endpoint: Option<String>,
    /// Accept plain-HTTP URLs to other machines (`endpoint`, the connection string's,
    /// `azure_ad.authority_host`) although they carry the credential in clear. Off: such
    /// URLs are refused, unless to this machine.
    #[serde(default)]
    pub allow_plain_http: bool,
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
    #[serde(default = "default_read_chunk")]
    pub read_chunk_bytes: usize,
    #[serde(default = "default_max_record")]
    pub max_record_bytes: usize,
    /// Range reads in flight at once, over different NSGs and MACs (each one's hours are
    /// read one after another, in order).
    #[serde(default = "default_concurrent_reads")]
    pub max_concurrent_reads: usize,
    /// Timeout of one request to the storage service.
    #[serde(default = "default_request_timeout")]
    pub request_timeout_secs: f64,
    /// Seconds between two listings of the whole container. In between, a poll lists only
    /// the current and previous hour of each NSG and NIC seen so far: the only blobs that
    /// can still grow. New NSGs are found at the next full listing.
    #[serde(default = "default_full_listing_interval")]
    pub full_listing_interval_secs: f64,
}

fn default_container() -> String {
    NSG_CONTAINER.to_owned()
}
fn default_request_timeout() -> f64 {
    30.0
}
fn default_full_listing_interval() -> f64 {
    600.0
}

impl BlobSourceConfig {
    /// Checks the config without I/O; errors name the key and never show a secret.
    pub fn validate(&self, prefix: &str) -> Result<(), String> {
        self.account().validate(prefix)?;
        if self.container.is_empty() {
            return Err(format!("{prefix}.container must not be empty"));
        }
        if !(self.full_listing_interval_secs >= self.poll_interval_secs
            && self.full_listing_interval_secs <= 86_400.0)
        {
            return Err(format!(
                "{prefix}.full_listing_interval_secs must be in [poll_interval_secs, 86400]"
            ));
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

    /// The account part of this source's settings.
    pub fn account(&self) -> StorageAccount {
        StorageAccount {
            account: self.account.clone(),
            connection_string: self.connection_string.clone(),
            access_key: self.access_key.clone(),
            sas_token: self.sas_token.clone(),
            use_emulator: self.use_emulator,
            azure_ad: self.azure_ad.clone(),
            ca_file: self.ca_file.clone(),
            endpoint: self.endpoint.clone(),
            allow_plain_http: self.allow_plain_http,
            request_timeout_secs: self.request_timeout_secs,
        }
    }

    /// The container client, on a pooled HTTP client with timeouts.
    pub fn build(&self) -> Result<AzureContainer, String> {
        let client = self.account().container_client(&self.container)?;
        Ok(AzureContainer {
            client,
            prefix: self.prefix.clone(),
            filter: self.filter(),
            full_listing_every: Duration::from_secs_f64(self.full_listing_interval_secs),
            discovery: Arc::new(Mutex::new(Discovery::default())),
        })
    }
}

/// Whether the connection string sends its credential to a plain-HTTP blob endpoint on
/// another machine (its own `BlobEndpoint`, or `endpoint`, or its default protocol).
fn connection_string_in_clear(cs: &ConnectionString, endpoint: &Option<String>) -> bool {
    if cs.use_development_storage == Some(true) {
        return false; // the emulator's well-known key, on this machine
    }
    match cs.blob_endpoint.or(endpoint.as_deref()) {
        Some(url) => plain_http::crosses_network_in_clear(url, false),
        None => matches!(
            cs.default_endpoints_protocol,
            Some(azure_storage::EndpointProtocol::Http)
        ),
    }
}

/// A storage account and how to reach and sign in to it: the credential settings every
/// Azure Blob table of the config shares (a source, and the cluster's state container).
/// Exactly one credential is set.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StorageAccount {
    #[serde(default)]
    pub account: Option<String>,
    #[serde(default)]
    pub connection_string: Option<Secret>,
    #[serde(default)]
    pub access_key: Option<Secret>,
    #[serde(default)]
    pub sas_token: Option<Secret>,
    #[serde(default)]
    pub use_emulator: bool,
    #[serde(default)]
    pub azure_ad: Option<AzureAdConfig>,
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    #[serde(default)]
    pub endpoint: Option<String>,
    #[serde(default)]
    pub allow_plain_http: bool,
    #[serde(default = "default_request_timeout")]
    pub request_timeout_secs: f64,
}

impl StorageAccount {
    /// Checks the settings without I/O; errors name the key and never show a secret.
    pub fn validate(&self, prefix: &str) -> Result<(), String> {
        let credentials = [
            self.connection_string.is_some(),
            self.access_key.is_some(),
            self.sas_token.is_some(),
            self.use_emulator,
            self.azure_ad.is_some(),
        ];
        match credentials.iter().filter(|c| **c).count() {
            1 => {}
            0 => {
                return Err(format!(
                    "{prefix}: set one of connection_string, access_key, sas_token, azure_ad, use_emulator"
                ))
            }
            _ => {
                return Err(format!(
                "{prefix}: set only one of connection_string, access_key, sas_token, azure_ad, use_emulator"
            ))
            }
        }
        if (self.access_key.is_some() || self.sas_token.is_some() || self.azure_ad.is_some())
            && self.account.is_none()
        {
            return Err(format!(
                "{prefix}.account is required with access_key, sas_token or azure_ad"
            ));
        }
        let allow = format!("{prefix}.allow_plain_http");
        if let Some(aad) = &self.azure_ad {
            aad.validate(&format!("{prefix}.azure_ad"), self.allow_plain_http)?;
        }
        if let Some(endpoint) = &self.endpoint {
            if !(endpoint.starts_with("https://") || endpoint.starts_with("http://")) {
                return Err(format!("{prefix}.endpoint must be an http(s) URL"));
            }
        }
        if let Some(cs) = &self.connection_string {
            // The parser's message can quote the string: say only which key is wrong.
            let parsed = ConnectionString::new(cs.expose()).map_err(|_| {
                format!("{prefix}.connection_string is not a valid connection string")
            })?;
            if !self.allow_plain_http && connection_string_in_clear(&parsed, &self.endpoint) {
                return Err(plain_http::refused(
                    &format!("{prefix}.connection_string's blob endpoint"),
                    "its key or SAS token",
                    &allow,
                ));
            }
        }
        let signs_in = !self.use_emulator && self.connection_string.is_none();
        if let Some(endpoint) = self.endpoint.as_deref().filter(|_| signs_in) {
            if !self.allow_plain_http && plain_http::crosses_network_in_clear(endpoint, false) {
                return Err(plain_http::refused(
                    &format!("{prefix}.endpoint"),
                    "the access key's signatures, the SAS token or the bearer token",
                    &allow,
                ));
            }
        }
        if !(self.request_timeout_secs > 0.0 && self.request_timeout_secs <= 600.0) {
            return Err(format!("{prefix}.request_timeout_secs must be in (0, 600]"));
        }
        Ok(())
    }

    /// Where the account is and how to sign requests (no I/O yet).
    fn location_and_credentials(
        &self,
        http: &reqwest::Client,
    ) -> Result<(CloudLocation, StorageCredentials), String> {
        let location_for = |account: &str| match &self.endpoint {
            Some(uri) => CloudLocation::Custom {
                account: account.to_owned(),
                uri: uri.trim_end_matches('/').to_owned(),
            },
            None => CloudLocation::Public {
                account: account.to_owned(),
            },
        };
        let account = self.account.as_deref().unwrap_or_default();
        if self.use_emulator {
            let location = match &self.endpoint {
                Some(_) => location_for("devstoreaccount1"),
                None => CloudLocation::Emulator {
                    address: "127.0.0.1".into(),
                    port: 10000,
                },
            };
            return Ok((location, StorageCredentials::emulator()));
        }
        if let Some(key) = &self.access_key {
            return Ok((
                location_for(account),
                StorageCredentials::access_key(account, key.expose().to_owned()),
            ));
        }
        if let Some(aad) = &self.azure_ad {
            let token = aad.build(http.clone())?;
            return Ok((
                location_for(account),
                StorageCredentials::token_credential(Arc::new(token)),
            ));
        }
        if let Some(token) = &self.sas_token {
            let credentials = StorageCredentials::sas_token(token.expose())
                .map_err(|_| "sas_token is not a valid SAS token".to_owned())?;
            return Ok((location_for(account), credentials));
        }
        let cs = self
            .connection_string
            .as_ref()
            .expect("validated: one credential");
        let parsed = ConnectionString::new(cs.expose())
            .map_err(|_| "connection_string is not a valid connection string".to_owned())?;
        if parsed.use_development_storage == Some(true) {
            // Parses, but carries no credentials in the SDK: map it to the emulator.
            return Ok((
                CloudLocation::Emulator {
                    address: "127.0.0.1".into(),
                    port: 10000,
                },
                StorageCredentials::emulator(),
            ));
        }
        let credentials = parsed
            .storage_credentials()
            .map_err(|_| "connection_string has no usable credentials".to_owned())?;
        let account = parsed
            .account_name
            .or(self.account.as_deref())
            .unwrap_or_default();
        let location = match parsed.blob_endpoint.or(self.endpoint.as_deref()) {
            Some(uri) => CloudLocation::Custom {
                account: account.to_owned(),
                uri: uri.trim_end_matches('/').to_owned(),
            },
            None => CloudLocation::Public {
                account: account.to_owned(),
            },
        };
        Ok((location, credentials))
    }

    /// A client of `container`, on a pooled HTTP client with timeouts and bounded retries.
    pub fn container_client(&self, container: &str) -> Result<ContainerClient, String> {
        let mut http = reqwest::Client::builder()
            .pool_max_idle_per_host(8)
            .pool_idle_timeout(Duration::from_secs(90))
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs_f64(self.request_timeout_secs));
        if let Some(path) = &self.ca_file {
            let pem =
                std::fs::read(path).map_err(|e| format!("ca_file {}: {e}", path.display()))?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem)
                .map_err(|e| format!("ca_file {}: {e}", path.display()))?;
            if certs.is_empty() {
                return Err(format!(
                    "ca_file {}: no PEM certificate in it",
                    path.display()
                ));
            }
            for cert in certs {
                http = http.add_root_certificate(cert);
            }
        }
        let http = http.build().map_err(|e| format!("HTTP client: {e}"))?;
        if self.allow_plain_http {
            tracing::warn!(
                container,
                "allow_plain_http: requests to a plain-HTTP endpoint carry the credential in clear"
            );
        }
        let (location, credentials) = self.location_and_credentials(&http)?;
        let retry = RetryOptions::exponential(ExponentialRetryOptions {
            initial_delay: Duration::from_millis(200),
            max_retries: 3,
            max_total_elapsed: Duration::from_secs(30),
            max_delay: Duration::from_secs(5),
        });
        Ok(ClientBuilder::with_location(location, credentials)
            .transport(TransportOptions::new(Arc::new(http)))
            .retry(retry)
            .container_client(container))
    }
}

/// One blob container.
#[derive(Clone)]
pub struct AzureContainer {
    client: ContainerClient,
    prefix: String,
    filter: PathFilter,
    full_listing_every: Duration,
    discovery: Arc<Mutex<Discovery>>,
}

/// What the last full listing taught about the container's layout.
#[derive(Debug, Default)]
struct Discovery {
    last_full: Option<Instant>,
    /// Every blob's name up to its hour partition (`.../macAddress=.../` comes after it):
    /// one entry per NSG or flow log.
    hour_dirs: BTreeSet<String>,
    /// False if some blob has no `y=/m=/d=/h=` partition (the legacy layout): then every
    /// poll lists the whole container.
    partitioned: bool,
    /// Requests the last full listing took.
    full_pages: usize,
}

/// A page of a full listing carries up to 5,000 names (about 2 MB of XML); a listing of one
/// hour of one NSG, a few. Weighed this much more, a full page is compared with the
/// requests of a partial listing.
const FULL_PAGE_WEIGHT: usize = 10;

/// True if listing the current and previous hour of `dirs` NSGs (two requests each) costs
/// less than listing everything again.
fn partial_is_cheaper(dirs: usize, full_pages: usize) -> bool {
    2 * dirs <= FULL_PAGE_WEIGHT * full_pages.max(1)
}

/// Writing, as Network Watcher does (for `flowgate simulate`, tests and demos).
impl AzureContainer {
    /// Creates the container; one that already exists is fine.
    pub async fn create_if_missing(&self) -> Result<(), StoreError> {
        match self.client.create().await {
            Ok(_) => Ok(()),
            Err(e) if status_of(&e) == Some(409) => Ok(()),
            Err(e) => Err(store_error(self.client.container_name(), e)),
        }
    }

    /// Writes a whole block blob in one request (tests: filling a container).
    pub async fn put_blob(&self, name: &str, data: Vec<u8>) -> Result<(), StoreError> {
        self.client
            .blob_client(name)
            .put_block_blob(data)
            .await
            .map(|_| ())
            .map_err(|e| store_error(name, e))
    }

    /// Stages one block of a block blob (`id`s of a blob must all have the same length).
    pub async fn put_block(&self, name: &str, id: &str, data: Vec<u8>) -> Result<(), StoreError> {
        self.client
            .blob_client(name)
            .put_block(BlockId::new(id.as_bytes().to_vec()), data)
            .await
            .map(|_| ())
            .map_err(|e| store_error(name, e))
    }

    /// Commits the blob as these staged or committed blocks, in this order.
    pub async fn commit_blocks(&self, name: &str, ids: &[String]) -> Result<(), StoreError> {
        let blocks = ids
            .iter()
            .map(|id| BlobBlockType::new_latest(BlockId::new(id.as_bytes().to_vec())))
            .collect();
        self.client
            .blob_client(name)
            .put_block_list(BlockList { blocks })
            .await
            .map(|_| ())
            .map_err(|e| store_error(name, e))
    }

    /// The IDs of a block blob's committed blocks, in order (empty if there is no blob).
    pub async fn committed_blocks(&self, name: &str) -> Result<Vec<String>, StoreError> {
        let list = match self.client.blob_client(name).get_block_list().await {
            Ok(list) => list,
            Err(e) if status_of(&e) == Some(404) => return Ok(Vec::new()),
            Err(e) => return Err(store_error(name, e)),
        };
        Ok(list
            .block_with_size_list
            .blocks
            .iter()
            .filter_map(|b| match &b.block_list_type {
                BlobBlockType::Committed(id) => {
                    Some(String::from_utf8_lossy(&id.bytes()).into_owned())
                }
                _ => None,
            })
            .collect())
    }

    /// Deletes a blob (tests: retention deleting a blob mid-read).
    pub async fn delete(&self, name: &str) -> Result<(), StoreError> {
        self.client
            .blob_client(name)
            .delete()
            .await
            .map(|_| ())
            .map_err(|e| store_error(name, e))
    }
}

/// HTTP status of an SDK error, if it is an HTTP error.
fn status_of(e: &azure_core::Error) -> Option<u16> {
    match e.kind() {
        ErrorKind::HttpResponse { status, .. } => Some(u16::from(*status)),
        _ => None,
    }
}

fn store_error(what: &str, e: azure_core::Error) -> StoreError {
    match status_of(&e) {
        Some(404) => StoreError::NotFound(what.to_owned()),
        Some(401 | 403) => StoreError::Denied(format!("{what}: {}", error_text(&e))),
        Some(status) => StoreError::Other(format!("{what}: HTTP {status}: {}", error_text(&e))),
        None => StoreError::Other(format!("{what}: {}", error_text(&e))),
    }
}

/// The error and its causes, one line each joined by ": " (SDK errors can carry response
/// bodies over many lines, and their top line alone can hide the cause).
pub(crate) fn error_text(e: &azure_core::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut next: Option<&dyn std::error::Error> = Some(e);
    while let Some(err) = next {
        let line = err
            .to_string()
            .lines()
            .next()
            .unwrap_or_default()
            .to_owned();
        if !line.is_empty() && !parts.iter().any(|p| p.contains(&line)) {
            parts.push(line);
        }
        next = err.source();
    }
    without_url_queries(&parts.join(": "))
}

/// `text` with the query of every URL in it replaced: reqwest's errors quote the request
/// URL, whose query holds the SAS token (`sig=` is the secret).
fn without_url_queries(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("http") {
        let (before, url_on) = rest.split_at(at);
        out.push_str(before);
        let end = url_on
            .find(|c: char| c.is_whitespace() || matches!(c, ')' | '"' | '\'' | '>'))
            .unwrap_or(url_on.len());
        let url = &url_on[..end];
        match url.split_once('?') {
            Some((base, _)) => {
                out.push_str(base);
                out.push_str("?[query removed]");
            }
            None => out.push_str(url),
        }
        rest = &url_on[end..];
    }
    out.push_str(rest);
    out
}

impl AzureContainer {
    /// Every `*.json` blob whose name starts with `prefix` and passes the filter (paged by
    /// the SDK); returns the number of requests.
    async fn list_prefix(
        &self,
        prefix: &str,
        objects: &mut Vec<ObjectInfo>,
    ) -> Result<usize, StoreError> {
        let mut requests = 0;
        let mut pages = self
            .client
            .list_blobs()
            .prefix(prefix.to_owned())
            .into_stream();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| store_error(self.client.container_name(), e))?;
            requests += 1;
            for blob in page.blobs.blobs() {
                if blob.name.to_ascii_lowercase().ends_with(".json")
                    && self.filter.accepts(&blob.name)
                {
                    objects.push(ObjectInfo {
                        name: blob.name.clone(),
                        len: blob.properties.content_length,
                        version: crate::store::version_of(blob.properties.etag.to_string()),
                    });
                }
            }
        }
        Ok(requests)
    }
}

impl ObjectStore for AzureContainer {
    async fn list(&self, wanted: DirFilter<'_>) -> Result<Listing, StoreError> {
        let (full_due, dirs) = {
            let d = self.discovery.lock().expect("discovery lock");
            let due = !d.partitioned
                || !partial_is_cheaper(d.hour_dirs.len(), d.full_pages)
                || d.last_full
                    .is_none_or(|t| t.elapsed() >= self.full_listing_every);
            (due, d.hour_dirs.clone())
        };
        let mut objects = Vec::new();
        let mut requests = 0;
        if full_due {
            requests = self.list_prefix(&self.prefix, &mut objects).await?;
            let mut d = self.discovery.lock().expect("discovery lock");
            d.last_full = Some(Instant::now());
            d.full_pages = requests;
            d.partitioned = objects.iter().all(|o| hour_dir(&o.name).is_some());
            d.hour_dirs = objects
                .iter()
                .filter_map(|o| hour_dir(&o.name))
                .map(str::to_owned)
                .collect();
        } else {
            // Only the hours that can still be written to: this one and the one before.
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0);
            let hours = [now, now.saturating_sub(3600)]
                .map(|t| UtcTime::from_epoch_ms(t * 1000).hour_partition());
            for dir in dirs.iter().filter(|d| wanted(d)) {
                for hour in &hours {
                    requests += self
                        .list_prefix(&format!("{dir}{hour}"), &mut objects)
                        .await?;
                }
            }
        }
        objects.sort_by(|a, b| a.name.cmp(&b.name));
        objects.dedup_by(|a, b| a.name == b.name);
        Ok(Listing {
            objects,
            complete: full_due,
            requests,
        })
    }

    async fn read(&self, name: &str, offset: u64, len: usize) -> Result<Vec<u8>, StoreError> {
        if len == 0 {
            return Ok(Vec::new());
        }
        let mut pages = self
            .client
            .blob_client(name)
            .get()
            .range(offset..offset + len as u64)
            .into_stream();
        // `len` may be a generous bound (the rest of a blob): do not allocate it up front.
        let mut out = Vec::with_capacity(len.min(16 << 20));
        while let Some(page) = pages.next().await {
            let page = match page {
                Ok(p) => p,
                // Asked past the end: there is nothing more (yet).
                Err(e) if status_of(&e) == Some(416) => break,
                Err(e) => return Err(store_error(name, e)),
            };
            let bytes = page
                .data
                .collect()
                .await
                .map_err(|e| store_error(name, e))?;
            out.extend_from_slice(&bytes);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partial_listing_only_while_cheaper() {
        // 100,000 blobs (20 pages): up to 100 NSGs are polled by hour prefix.
        assert!(partial_is_cheaper(100, 20));
        assert!(!partial_is_cheaper(101, 20));
        // A small container: the full listing is one page.
        assert!(partial_is_cheaper(5, 1));
        assert!(!partial_is_cheaper(6, 1));
    }

    #[test]
    fn url_queries_are_removed_from_error_text() {
        let e = "error sending request for url (http://127.0.0.1:1/acct/c?restype=container&sv=1&sig=SECRET%3D): connection refused; see https://x.blob.core.windows.net/c?sig=SECRET2 or https://docs";
        assert_eq!(
            without_url_queries(e),
            "error sending request for url (http://127.0.0.1:1/acct/c?[query removed]): connection refused; see https://x.blob.core.windows.net/c?[query removed] or https://docs"
        );
    }
}
