//! The syslog sink: UDP (RFC 5426), TCP (RFC 6587) and TLS (RFC 5425), to one or more
//! receivers. See `sink.rs` for when a batch counts as delivered.

mod config;
mod sink;
mod transport;

pub use config::{Balance, Mode, Oversize, SyslogSinkConfig, TlsConfig, WhenUnreachable};
pub use sink::SyslogSink;
