//! Wires sources, the transform and the sinks together with bounded channels.
//!
//! ```text
//! source ─┐  RecordBatch            Delivery (Arc<EventBatch> + Finalizer)
//! source ─┼─────────────► transform ──────────────┬──► sink
//!         │  (bounded)               (bounded)    └──► sink
//!         └◄──────────── Ack (unbounded: at most one per batch in flight) ◄──
//! ```
//! When a sink is slow its channel fills, the transform blocks, the record channel
//! fills and the sources stop reading: memory stays at a few batches per channel.

use crate::config::Config;
use crate::transform::Transform;
use anyhow::{Context, Result};
use flowgate_core::{Delivery, RecordBatch};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tracing::{info, warn};

/// Runs until `shutdown` turns true, then drains: sources stop reading, batches in flight
/// are delivered (up to the drain timeout) and the final checkpoints are stored.
/// `abort` turning true makes sinks give up on batches they are still retrying.
pub async fn run(
    config: Config,
    shutdown: watch::Receiver<bool>,
    mut external_abort: watch::Receiver<bool>,
) -> Result<()> {
    let checkpoints = config.checkpoints.build().map_err(anyhow::Error::msg)?;
    // Sinks give up on batches they are retrying when told to (a second signal), or once
    // the sources have stopped and stored their final checkpoints (drain timeout passed).
    let (abort_tx, abort) = watch::channel(false);
    let abort_tx = Arc::new(abort_tx);
    let forward = abort_tx.clone();
    tokio::spawn(async move {
        if external_abort.wait_for(|a| *a).await.is_ok() {
            let _ = forward.send(true);
        }
    });
    let capacity = config.pipeline.channel_capacity;
    let drain = Duration::from_secs_f64(config.pipeline.drain_timeout_secs);

    let mut sink_inputs = Vec::new();
    let mut sink_tasks = Vec::new();
    for (name, sink) in &config.sinks {
        let (tx, rx) = mpsc::channel::<Delivery>(capacity);
        sink_inputs.push((name.clone(), tx));
        let task = sink
            .build(name, rx, abort.clone())
            .map_err(anyhow::Error::msg)?;
        sink_tasks.push(task);
    }

    let (record_tx, record_rx) = mpsc::channel::<RecordBatch>(capacity);
    let stage = Transform {
        filter: config.filter.build().map_err(anyhow::Error::msg)?,
        dedup: config.volume.dedup(),
        aggregator: config.volume.aggregator(),
        enricher: config.enrich.build().map_err(anyhow::Error::msg)?,
        sinks: sink_inputs,
        max_batch_events: config.pipeline.max_batch_events,
    };
    let (stop, runtime) = (shutdown.clone(), tokio::runtime::Handle::current());
    let transform = tokio::task::spawn_blocking(move || stage.run(record_rx, stop, runtime));

    let mut sources = Vec::new();
    for (name, source) in &config.sources {
        let (out, stop) = (record_tx.clone(), shutdown.clone());
        let task = source
            .build(name, &checkpoints, out, stop, drain)
            .map_err(anyhow::Error::msg)?;
        sources.push(task);
    }
    drop(record_tx);
    info!(
        sources = sources.len(),
        sinks = sink_tasks.len(),
        "pipeline running"
    );

    let mut result = Ok(());
    for task in sources {
        match task.await {
            Ok(Ok(summary)) if summary.abandoned > 0 => {
                warn!(
                    batches = summary.abandoned,
                    "stopping with undelivered batches"
                )
            }
            Ok(Ok(_)) => {}
            Ok(Err(e)) => result = Err(anyhow::Error::from(e)),
            Err(e) => result = Err(anyhow::anyhow!("source task failed: {e}")),
        }
    }
    let _ = abort_tx.send(true);
    transform.await.context("transform task failed")?;
    for task in sink_tasks {
        task.await.context("sink task failed")?;
    }
    result
}
