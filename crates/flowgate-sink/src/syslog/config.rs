//! `[sinks.NAME]` with `type = "syslog"`: checked by `validate()` without I/O.

use crate::config::EncodingConfig;
use crate::encode::{Encoder, Framing, SyslogKind};
use serde::Deserialize;
use std::path::PathBuf;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// RFC 5426: one message per datagram, best effort.
    Udp,
    /// RFC 6587.
    #[default]
    Tcp,
    /// RFC 5425: TCP with TLS, octet-counted.
    Tls,
}

/// How batches are spread over several targets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Balance {
    /// Everything to the first target that is up; the next ones only while it is down.
    #[default]
    Failover,
    /// Batches spread over every target that is up.
    RoundRobin,
}

/// What happens to batches while no target can be reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum WhenUnreachable {
    /// Wait: the channels fill and the sources stop reading. Nothing is lost.
    #[default]
    Block,
    /// After `drop_after_secs` without any target, drop batches (counted in
    /// `flowgate_sink_events_dropped_total{reason="unreachable"}`) and move checkpoints on.
    Drop,
}

/// UDP messages longer than `max_message_bytes`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Oversize {
    /// Cut to `max_message_bytes` (RFC 5426 allows receivers to do the same).
    #[default]
    Truncate,
    /// Not sent.
    Drop,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// CA certificates (PEM) that sign the server's certificate; the bundled Mozilla roots
    /// if not set.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// A client certificate chain and key (PEM) for mutual TLS.
    #[serde(default)]
    pub cert_file: Option<PathBuf>,
    #[serde(default)]
    pub key_file: Option<PathBuf>,
    /// The name the server's certificate must carry; the target's host by default.
    #[serde(default)]
    pub server_name: Option<String>,
    /// Off only for tests: any certificate is accepted, which lets anyone in the middle
    /// read the flows.
    #[serde(default)]
    pub insecure_skip_verify: bool,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyslogSinkConfig {
    #[serde(default)]
    pub mode: Mode,
    /// `host:port` of each receiver, in failover order.
    pub targets: Vec<String>,
    #[serde(default)]
    pub balance: Balance,
    /// Connections per target (TCP, TLS); more than one spreads the encryption and the
    /// receiver's parsing over cores, but does not keep order between batches.
    #[serde(default = "one")]
    pub connections_per_target: usize,
    /// TCP and TLS: `octet_counting` (RFC 6587 and 5425) or `newline`.
    #[serde(default = "octet_counting")]
    pub framing: Framing,
    #[serde(default)]
    pub tls: Option<TlsConfig>,
    /// UDP: the longest datagram; 2048 is what RFC 5426 says every receiver should take.
    #[serde(default = "default_max_message")]
    pub max_message_bytes: usize,
    #[serde(default)]
    pub oversize: Oversize,
    /// The message format; the syslog header is RFC 5424 unless `encoding.syslog.kind`
    /// says otherwise.
    #[serde(default)]
    pub encoding: EncodingConfig,
    #[serde(default = "default_connect_timeout")]
    pub connect_timeout_secs: f64,
    /// A batch not written and acknowledged by the receiver's TCP within this long counts
    /// as failed: the connection is dropped and the batch sent again on another.
    #[serde(default = "default_write_timeout")]
    pub write_timeout_secs: f64,
    #[serde(default)]
    pub when_unreachable: WhenUnreachable,
    #[serde(default = "default_drop_after")]
    pub drop_after_secs: f64,
}

fn one() -> usize {
    1
}
fn octet_counting() -> Framing {
    Framing::OctetCounting
}
fn default_max_message() -> usize {
    2048
}
fn default_connect_timeout() -> f64 {
    10.0
}
fn default_write_timeout() -> f64 {
    30.0
}
fn default_drop_after() -> f64 {
    60.0
}

impl SyslogSinkConfig {
    pub fn validate(&self, prefix: &str) -> Result<(), String> {
        if self.targets.is_empty() {
            return Err(format!("{prefix}.targets: at least one host:port"));
        }
        for t in &self.targets {
            split_target(t).map_err(|e| format!("{prefix}.targets: {e}"))?;
        }
        if !(1..=64).contains(&self.connections_per_target) {
            return Err(format!("{prefix}.connections_per_target must be in 1..=64"));
        }
        match (self.mode, &self.tls) {
            (Mode::Tls, Some(tls)) if tls.cert_file.is_some() != tls.key_file.is_some() => {
                return Err(format!(
                    "{prefix}.tls: cert_file and key_file go together (mutual TLS)"
                ));
            }
            (Mode::Tls, Some(tls)) if tls.insecure_skip_verify && tls.ca_file.is_some() => {
                return Err(format!(
                    "{prefix}.tls: insecure_skip_verify ignores ca_file; set one of them"
                ));
            }
            // Without `tls`, the server is verified against the bundled roots.
            (Mode::Tls, _) => {}
            (_, Some(_)) => return Err(format!("{prefix}.tls is only for mode = \"tls\"")),
            _ => {}
        }
        if self.mode == Mode::Udp && !(480..=65_507).contains(&self.max_message_bytes) {
            return Err(format!(
                "{prefix}.max_message_bytes must be in 480..=65507 (one UDP datagram)"
            ));
        }
        for (key, v) in [
            ("connect_timeout_secs", self.connect_timeout_secs),
            ("write_timeout_secs", self.write_timeout_secs),
            ("drop_after_secs", self.drop_after_secs),
        ] {
            if !(v > 0.0 && v <= 86_400.0) {
                return Err(format!("{prefix}.{key} must be in (0, 86400]"));
            }
        }
        self.encoding.validate(prefix)
    }

    /// The encoder: RFC 5424 headers unless configured otherwise; datagrams carry one
    /// message each, so UDP needs no framing.
    pub fn encoder(&self) -> Encoder {
        let framing = match self.mode {
            Mode::Udp => Framing::Newline,
            _ => self.framing,
        };
        self.encoding.encoder(framing, SyslogKind::Rfc5424)
    }
}

/// `host:port` → (host, port); IPv6 literals in brackets.
pub fn split_target(target: &str) -> Result<(String, u16), String> {
    let (host, port) = target
        .rsplit_once(':')
        .ok_or_else(|| format!("{target:?} is not host:port"))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let port: u16 = port
        .parse()
        .ok()
        .filter(|p| *p != 0)
        .ok_or_else(|| format!("{target:?}: bad port"))?;
    if host.is_empty() {
        return Err(format!("{target:?}: empty host"));
    }
    Ok((host.to_owned(), port))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(text: &str) -> Result<(), String> {
        let c: SyslogSinkConfig = toml::from_str(text).map_err(|e| e.to_string())?;
        c.validate("sinks.s")
    }

    #[test]
    fn validate_names_the_key() {
        assert_eq!(config("targets = [\"siem:6514\"]\nmode = \"tls\""), Ok(()));
        assert_eq!(config("targets = [\"[::1]:514\"]\nmode = \"udp\""), Ok(()));
        assert!(config("targets = []")
            .unwrap_err()
            .contains("sinks.s.targets"));
        assert!(config("targets = [\"siem\"]")
            .unwrap_err()
            .contains("not host:port"));
        assert!(config("targets = [\"siem:0\"]")
            .unwrap_err()
            .contains("bad port"));
        assert!(config("targets = [\"s:1\"]\n[tls]\nca_file = \"x\"")
            .unwrap_err()
            .contains("sinks.s.tls is only for mode"));
        assert!(
            config("targets = [\"s:1\"]\nmode = \"tls\"\n[tls]\ncert_file = \"c\"")
                .unwrap_err()
                .contains("cert_file and key_file go together")
        );
        assert!(
            config("targets = [\"s:1\"]\nmode = \"udp\"\nmax_message_bytes = 70000")
                .unwrap_err()
                .contains("max_message_bytes")
        );
    }
}
