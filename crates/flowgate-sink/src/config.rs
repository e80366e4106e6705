//! Sink configuration: what `flowgate validate` checks and `build()` turns into a sink.

use crate::encode::{Encoder, Format, Framing, SyslogConfig, SyslogKind};
use crate::kafka::KafkaSinkConfig;
use crate::syslog::SyslogSinkConfig;
use crate::{KafkaSink, SyslogSink, WriterSink};
use flowgate_core::Delivery;
use serde::Deserialize;
use std::path::PathBuf;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

/// How events become bytes.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct EncodingConfig {
    pub format: Format,
    pub syslog: SyslogConfig,
}

impl EncodingConfig {
    pub fn validate(&self, prefix: &str) -> Result<(), String> {
        self.syslog
            .validate()
            .map_err(|e| format!("{prefix}.encoding.{e}"))
    }

    /// The encoder; `default_header` applies when `syslog.kind` is not set.
    pub fn encoder(&self, framing: Framing, default_header: SyslogKind) -> Encoder {
        Encoder::new(self.format, self.syslog.build(default_header), framing)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StdoutSinkConfig {
    #[serde(default)]
    pub encoding: EncodingConfig,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileSinkConfig {
    /// Appended to; created if missing (its directory must exist).
    pub path: PathBuf,
    #[serde(default)]
    pub encoding: EncodingConfig,
    /// fsync after each batch, before acknowledging it (on by default: the checkpoint
    /// must not get ahead of what is on disk).
    #[serde(default = "yes")]
    pub fsync: bool,
}

fn yes() -> bool {
    true
}

/// One `[sinks.NAME]` table, chosen by its `type`.
#[derive(Debug, Clone, PartialEq)]
pub enum SinkConfig {
    Stdout(StdoutSinkConfig),
    File(FileSinkConfig),
    Syslog(SyslogSinkConfig),
    Kafka(KafkaSinkConfig),
}

impl SinkConfig {
    /// Checks the config without I/O; errors name the key.
    pub fn validate(&self, name: &str) -> Result<(), String> {
        let prefix = format!("sinks.{name}");
        match self {
            SinkConfig::Stdout(c) => c.encoding.validate(&prefix),
            SinkConfig::File(c) => {
                if c.path.as_os_str().is_empty() {
                    return Err(format!("{prefix}.path must not be empty"));
                }
                c.encoding.validate(&prefix)
            }
            SinkConfig::Syslog(c) => c.validate(&prefix),
            SinkConfig::Kafka(c) => c.validate(&prefix),
        }
    }

    /// Opens the sink (files, sockets, the Kafka client) and starts it on `input`: writers
    /// block on their files and librdkafka on its queue, so they get blocking threads;
    /// syslog is a task. `abort` turning true makes it give up on batches it is retrying.
    pub fn build(
        &self,
        name: &str,
        input: mpsc::Receiver<Delivery>,
        abort: watch::Receiver<bool>,
    ) -> Result<JoinHandle<()>, String> {
        let prefix = format!("sinks.{name}");
        Ok(match self {
            SinkConfig::Stdout(c) => {
                let writer = WriterSink::stdout(name, c);
                tokio::task::spawn_blocking(move || writer.run(input, abort))
            }
            SinkConfig::File(c) => {
                let writer = WriterSink::file(name, c).map_err(|e| format!("{prefix}: {e}"))?;
                tokio::task::spawn_blocking(move || writer.run(input, abort))
            }
            SinkConfig::Syslog(c) => {
                let sink = SyslogSink::new(name, c).map_err(|e| format!("{prefix}: {e}"))?;
                tokio::spawn(sink.run(input, abort))
            }
            SinkConfig::Kafka(c) => {
                let sink = KafkaSink::new(name, c).map_err(|e| format!("{prefix}: {e}"))?;
                tokio::task::spawn_blocking(move || sink.run(input, abort))
            }
        })
    }
}
