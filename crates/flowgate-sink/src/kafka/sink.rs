//! The Kafka sink: one message per event, on librdkafka's threaded producer.
//!
//! A batch is delivered when every one of its messages has a successful delivery report
//! (with `acks = "all"`: written to every in-sync replica). librdkafka retries on its own
//! with no time limit (`message.timeout.ms = 0`), in order per partition with idempotence,
//! so a broker outage only waits. A full producer queue makes the sender wait, which
//! fills the channels and stops the sources. A message the broker refuses for good (too
//! large) is counted as dropped; any other failed report fails the batch, which the
//! source then reads again from its checkpoint.

use super::config::{KafkaSinkConfig, KeyBy};
use crate::encode::{Encoder, Framing, SyslogKind};
use flowgate_core::{health, metric_names as m, BatchStatus, Delivery, Finalizer};
use rdkafka::config::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::{ClientContext, Statistics};
use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tracing::{error, warn};

/// One batch's messages in flight.
struct InFlight {
    remaining: AtomicUsize,
    failed: AtomicBool,
    dropped: AtomicUsize,
    events: usize,
    bytes: usize,
    finalizer: Mutex<Option<Finalizer>>,
}

struct Context {
    sink: String,
    /// This sink's name in `/readyz`.
    readiness: String,
}

impl ClientContext for Context {
    /// librdkafka's global errors. With every broker down the sink is not ready; it keeps
    /// retrying on its own, so nothing else changes.
    fn error(&self, error: KafkaError, reason: &str) {
        if error.rdkafka_error_code() == Some(RDKafkaErrorCode::AllBrokersDown) {
            health::set_ready(&self.readiness, false);
        }
        warn!(sink = %self.sink, error = %error, reason, "Kafka client");
    }

    /// Every `statistics.interval.ms`: ready again once a broker is up, even while no
    /// batch is waiting to prove it with a delivery.
    fn stats(&self, statistics: Statistics) {
        let up = statistics
            .brokers
            .values()
            .any(|b| b.state == "UP" && matches!(b.source.as_str(), "configured" | "learned"));
        if up {
            health::set_ready(&self.readiness, true);
        }
    }
}

impl ProducerContext for Context {
    type DeliveryOpaque = Arc<InFlight>;

    fn delivery(&self, result: &DeliveryResult<'_>, batch: Arc<InFlight>) {
        if let Err((e, _)) = result {
            match e {
                KafkaError::MessageProduction(
                    RDKafkaErrorCode::MessageSizeTooLarge | RDKafkaErrorCode::InvalidMessage,
                ) => {
                    batch.dropped.fetch_add(1, Ordering::Relaxed);
                }
                _ => {
                    if !batch.failed.swap(true, Ordering::Relaxed) {
                        warn!(sink = %self.sink, error = %e, "Kafka refused a message; the batch will be read again");
                    }
                }
            }
        }
        self.finish_one(&batch);
    }
}

pub struct KafkaSink {
    name: String,
    topic: String,
    key: KeyBy,
    encoder: Encoder,
    producer: ThreadedProducer<Context>,
}

impl KafkaSink {
    /// Creates the producer (it connects in the background; an unreachable broker is not
    /// a start-up error).
    pub fn new(name: &str, config: &KafkaSinkConfig) -> Result<KafkaSink, String> {
        let mut client = ClientConfig::new();
        for warning in config.insecure_settings() {
            warn!(sink = name, "{warning}");
        }
        for (k, v) in config.properties() {
            client.set(k, v);
        }
        let producer = client
            .create_with_context(Context {
                sink: name.to_owned(),
                readiness: format!("sink.{name}"),
            })
            .map_err(|e| {
                // librdkafka quotes a value it refuses: never show a passthrough value.
                let mut message = format!("Kafka producer: {e}");
                for value in config.librdkafka.values() {
                    if !value.expose().is_empty() {
                        message = message.replace(value.expose(), "***");
                    }
                }
                message
            })?;
        Ok(KafkaSink {
            name: name.to_owned(),
            topic: config.topic.clone(),
            key: config.key,
            encoder: config.encoding.encoder(Framing::Newline, SyslogKind::None),
            producer,
        })
    }

    /// Sends batches until the channel closes, then waits for every delivery report (or
    /// `abort`: then the batches still in flight count as failed).
    pub fn run(mut self, mut input: mpsc::Receiver<Delivery>, abort: watch::Receiver<bool>) {
        let mut buf = Vec::new();
        let mut key = Vec::new();
        // Ready once the brokers answered (or, later, a broker is up or a delivery succeeds).
        let metadata = self
            .producer
            .client()
            .fetch_metadata(Some(&self.topic), Duration::from_secs(5));
        health::set_ready(&self.producer.context().readiness, metadata.is_ok());
        'batches: while let Some(delivery) = input.blocking_recv() {
            buf.clear();
            self.encoder.encode_batch(&delivery.batch, &mut buf);
            let events = &delivery.batch.events;
            if events.is_empty() {
                delivery.finalizer.update(BatchStatus::Delivered);
                continue;
            }
            let in_flight = Arc::new(InFlight {
                remaining: AtomicUsize::new(events.len()),
                failed: AtomicBool::new(false),
                dropped: AtomicUsize::new(0),
                events: events.len(),
                bytes: buf.len(),
                finalizer: Mutex::new(Some(delivery.finalizer)),
            });
            // One line per event: messages never contain a raw newline.
            let messages = buf.split(|&b| b == b'\n').filter(|l| !l.is_empty());
            for (e, payload) in events.iter().zip(messages) {
                key.clear();
                match self.key {
                    KeyBy::Nsg => {
                        let (_, record) = delivery.batch.context_of(e);
                        key.extend_from_slice(record.resource_id.as_bytes());
                    }
                    KeyBy::SourceIp => {
                        let _ = write!(key, "{}", e.src_ip);
                    }
                    KeyBy::None => {}
                }
                let mut record =
                    BaseRecord::with_opaque_to(&self.topic, in_flight.clone()).payload(payload);
                if !key.is_empty() {
                    record = record.key(&key[..]);
                }
                loop {
                    match self.producer.send(record) {
                        Ok(()) => break,
                        Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                            // Backpressure: wait for deliveries to make room.
                            if *abort.borrow() {
                                break 'batches;
                            }
                            record = r;
                            std::thread::sleep(Duration::from_millis(5));
                        }
                        Err((e, r)) => {
                            // Refused before queueing: the delivery callback never sees it,
                            // so account for it here. Too large is counted and dropped, as
                            // in the callback; anything else fails the batch, after a pause
                            // so that the source does not re-read it in a tight loop.
                            drop(r);
                            let too_large = matches!(
                                e,
                                KafkaError::MessageProduction(
                                    RDKafkaErrorCode::MessageSizeTooLarge
                                )
                            );
                            if too_large {
                                in_flight.dropped.fetch_add(1, Ordering::Relaxed);
                            } else if !in_flight.failed.swap(true, Ordering::Relaxed) {
                                warn!(sink = %self.name, error = %e, "message not queued; the batch will be read again");
                                std::thread::sleep(Duration::from_secs(1));
                            }
                            self.producer.context().finish_one(&in_flight);
                            break;
                        }
                    }
                }
            }
        }
        // Drained: wait for the reports of what is in flight.
        while self.producer.in_flight_count() > 0 && !*abort.borrow() {
            let _ = self.producer.flush(Duration::from_millis(200));
        }
    }
}

impl Context {
    /// One message of `batch` is done (reported, or refused before queueing); the last
    /// one reports the batch and counts it.
    fn finish_one(&self, batch: &InFlight) {
        if batch.remaining.fetch_sub(1, Ordering::AcqRel) != 1 {
            return;
        }
        let Some(finalizer) = batch.finalizer.lock().expect("finalizer lock").take() else {
            return;
        };
        let dropped = batch.dropped.load(Ordering::Relaxed);
        if dropped > 0 {
            error!(sink = %self.sink, messages = dropped, "Kafka refused messages for good (too large?); dropped");
            metrics::counter!(m::SINK_EVENTS_DROPPED_TOTAL, "sink" => self.sink.clone(), "reason" => "kafka")
                .increment(dropped as u64);
        }
        if batch.failed.load(Ordering::Relaxed) {
            metrics::counter!(m::SINK_RETRIES_TOTAL, "sink" => self.sink.clone()).increment(1);
            finalizer.update(BatchStatus::Failed);
        } else {
            metrics::counter!(m::SINK_EVENTS_SENT_TOTAL, "sink" => self.sink.clone())
                .increment((batch.events - dropped) as u64);
            metrics::counter!(m::SINK_BYTES_SENT_TOTAL, "sink" => self.sink.clone())
                .increment(batch.bytes as u64);
            finalizer.update(BatchStatus::Delivered);
            health::set_ready(&self.readiness, true);
        }
    }
}
