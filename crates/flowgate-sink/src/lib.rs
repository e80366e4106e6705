//! flowgate sinks: encoders for SIEM formats, and the outputs that deliver them.

pub mod config;
pub mod encode;
pub mod kafka;
pub mod syslog;
pub mod writer;

pub use config::{EncodingConfig, FileSinkConfig, SinkConfig, StdoutSinkConfig};
pub use kafka::{KafkaSink, KafkaSinkConfig};
pub use syslog::{SyslogSink, SyslogSinkConfig};
pub use writer::WriterSink;
