//! `flowgate simulate`: writes flow logs into a storage account the way Network Watcher
//! does, for tests, demos and benchmarks.
//!
//! Per NSG and NIC, one block blob per hour at the container's real path layout: a
//! `{"records":[` head block, one block per record (`,` before all but the first), and a
//! `]}` tail block. Every interval adds one record block per blob and commits the block
//! list with the new block inserted before the tail, so a blob grows in the middle while
//! the bytes before the old tail stay the same. An hour boundary starts new blobs. A blob
//! that already exists is continued, never rebuilt: its committed blocks are kept.

use crate::generate::{Generator, Schema, Target};
use anyhow::{Context, Result};
use flowgate_core::time::UtcTime;
use flowgate_source::{AzureContainer, ObjectStore};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct SimulateSpec {
    pub schema: Schema,
    /// NSGs (or VNet flow logs) to write for.
    pub nsgs: usize,
    /// NICs per NSG: one blob each per hour.
    pub macs: usize,
    /// How many records each blob receives.
    pub intervals: usize,
    /// Pause between two intervals (Network Watcher: one minute).
    pub interval: Duration,
    pub seed: u64,
    /// Epoch seconds of the first interval; records follow one minute apart.
    pub start_epoch_secs: u64,
    /// Also write each blob's committed content here, under its blob name.
    pub mirror: Option<PathBuf>,
}

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct SimulateSummary {
    pub blobs: usize,
    pub records: usize,
    pub tuples: usize,
}

/// One stream of records: an NSG × NIC.
struct Stream {
    generator: Generator,
    target: Target,
    mac: String,
}

/// A blob being written: its record blocks so far, and their bytes (for the mirror).
#[derive(Default)]
struct BlobState {
    ids: Vec<String>,
    body: Vec<u8>,
}

const HEAD: &str = "head0000";
const TAIL: &str = "tail0000";

pub async fn run(container: &AzureContainer, spec: &SimulateSpec) -> Result<SimulateSummary> {
    container
        .create_if_missing()
        .await
        .context("creating the container")?;
    let mut streams: Vec<Stream> = Vec::new();
    for n in 0..spec.nsgs {
        for m in 0..spec.macs {
            let target = Target {
                name: format!("NSG-{n:02}"),
                ..Target::default()
            };
            let seed = spec.seed * 1_000_003 + (n * spec.macs + m) as u64;
            let mac = format!("000D3A{:02X}{:02X}{:02X}", n, m, spec.seed as u8);
            streams.push(Stream {
                generator: Generator::new(spec.schema, seed, target.clone())
                    .with_macs(vec![mac.clone()]),
                target,
                mac,
            });
        }
    }
    let mut blobs: BTreeMap<String, BlobState> = BTreeMap::new();
    let mut summary = SimulateSummary::default();
    for interval in 0..spec.intervals {
        if interval > 0 {
            tokio::time::sleep(spec.interval).await;
        }
        let t = spec.start_epoch_secs + 60 * interval as u64;
        for stream in &mut streams {
            let name = blob_name(spec.schema, &stream.target, &stream.mac, t);
            if !blobs.contains_key(&name) {
                let state = open_blob(container, &name).await?;
                if state.ids.is_empty() {
                    summary.blobs += 1;
                }
                blobs.insert(name.clone(), state);
            }
            let state = blobs.get_mut(&name).expect("just opened");
            let mut record = String::new();
            if !state.ids.is_empty() {
                record.push(',');
            }
            summary.tuples += stream.generator.record(t, &mut record);
            summary.records += 1;
            let id = format!("r{:07}", state.ids.len());
            container
                .put_block(&name, &id, record.as_bytes().to_vec())
                .await?;
            state.ids.push(id);
            state.body.extend_from_slice(record.as_bytes());
            let mut ids = vec![HEAD.to_owned()];
            ids.extend(state.ids.iter().cloned());
            ids.push(TAIL.to_owned());
            container.commit_blocks(&name, &ids).await?;
            if let Some(dir) = &spec.mirror {
                write_mirror(dir, &name, state)?;
            }
        }
    }
    Ok(summary)
}

/// Continues a blob that exists (keeping its committed record blocks), or starts one: head
/// and tail blocks staged, no records yet.
async fn open_blob(container: &AzureContainer, name: &str) -> Result<BlobState> {
    let committed = container.committed_blocks(name).await?;
    let records: Vec<String> = committed
        .into_iter()
        .filter(|id| id != HEAD && id != TAIL)
        .collect();
    if records.is_empty() {
        container.put_block(name, HEAD, HEAD_BYTES.to_vec()).await?;
        container.put_block(name, TAIL, b"]}".to_vec()).await?;
        return Ok(BlobState::default());
    }
    // A PT1H.json is an hour of one NIC's flows: far below 1 GiB.
    let content = container.read(name, 0, 1 << 30).await?;
    let body = content
        .get(HEAD_BYTES.len()..content.len().saturating_sub(2))
        .unwrap_or_default()
        .to_vec();
    Ok(BlobState { ids: records, body })
}

const HEAD_BYTES: &[u8] = b"{\"records\":[";

/// The blob's committed content, as a reader of the blob would see it now.
fn write_mirror(dir: &std::path::Path, name: &str, state: &BlobState) -> Result<()> {
    let path = dir.join(name);
    std::fs::create_dir_all(path.parent().expect("a blob path has a parent"))?;
    let mut doc = HEAD_BYTES.to_vec();
    doc.extend_from_slice(&state.body);
    doc.extend_from_slice(b"]}");
    std::fs::write(&path, doc).with_context(|| format!("writing {}", path.display()))
}

/// The path Network Watcher gives the blob of `mac` for the hour containing `t`.
pub fn blob_name(schema: Schema, target: &Target, mac: &str, t: u64) -> String {
    let hour = format!(
        "{}m=00/macAddress={mac}/PT1H.json",
        UtcTime::from_epoch_ms(t * 1000).hour_partition()
    );
    let sub = &target.subscription;
    match schema {
        Schema::VNet => format!(
            "flowLogResourceID=/{sub}_NETWORKWATCHERRG/NETWORKWATCHER_EASTUS_{}-FLOWLOG/{hour}",
            target.name
        ),
        _ => format!(
            "resourceId=/SUBSCRIPTIONS/{sub}/RESOURCEGROUPS/{}/PROVIDERS/MICROSOFT.NETWORK/NETWORKSECURITYGROUPS/{}/{hour}",
            target.resource_group, target.name
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blob_names_follow_the_container_layout() {
        let t = Target::default();
        assert_eq!(
            blob_name(Schema::NsgV2, &t, "000D3A8F7856", 1_709_546_520),
            "resourceId=/SUBSCRIPTIONS/5A2F6C1E-8B3D-4E7A-9C2B-0D1E2F3A4B5C/RESOURCEGROUPS/PROD-NETWORK-RG/PROVIDERS/MICROSOFT.NETWORK/NETWORKSECURITYGROUPS/WEB-TIER-NSG/y=2024/m=03/d=04/h=10/m=00/macAddress=000D3A8F7856/PT1H.json"
        );
        assert!(blob_name(Schema::VNet, &t, "112233445566", 1_709_546_520)
            .starts_with("flowLogResourceID=/5A2F6C1E-8B3D-4E7A-9C2B-0D1E2F3A4B5C_NETWORKWATCHERRG/NETWORKWATCHER_EASTUS_WEB-TIER-NSG-FLOWLOG/y=2024/m=03/d=04/h=10/"));
    }
}
