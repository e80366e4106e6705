//! The Kafka sink (librdkafka through `rdkafka`); works with Azure Event Hubs' Kafka
//! endpoint (SASL_SSL + PLAIN). See `sink.rs` for when a batch counts as delivered.

mod config;
mod sink;

pub use config::{Acks, Compression, KafkaSinkConfig, KeyBy};
pub use sink::KafkaSink;
