//! `[sinks.NAME]` with `type = "kafka"`: checked by `validate()` without I/O.

use crate::config::EncodingConfig;
use flowgate_core::Secret;
use serde::Deserialize;
use std::collections::BTreeMap;

/// What each message's key is, so that one key's events stay in order on one partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum KeyBy {
    /// The NSG's (or VNet flow log target's) resource ID.
    #[default]
    Nsg,
    SourceIp,
    /// No key: spread over partitions.
    None,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    None,
    Gzip,
    Snappy,
    #[default]
    Lz4,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
pub enum Acks {
    /// Every in-sync replica (the only setting that survives a broker failure).
    #[default]
    #[serde(rename = "all")]
    All,
    #[serde(rename = "1")]
    Leader,
    /// Not waiting for the broker: best effort.
    #[serde(rename = "0")]
    None,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaSinkConfig {
    /// `host:port,host:port`.
    pub bootstrap_servers: String,
    pub topic: String,
    #[serde(default)]
    pub key: KeyBy,
    #[serde(default)]
    pub compression: Compression,
    #[serde(default)]
    pub acks: Acks,
    /// Exactly-once per partition from librdkafka's retries, in order (needs acks = all).
    #[serde(default = "yes")]
    pub idempotence: bool,
    /// Messages librdkafka may hold before a send waits (backpressure, never a drop).
    #[serde(default = "default_queue")]
    pub queue_messages: usize,
    /// Any other librdkafka property (`security.protocol`, `sasl.*`, `ssl.*`, ...).
    /// Values are secrets: never printed.
    #[serde(default)]
    pub librdkafka: BTreeMap<String, Secret>,
    #[serde(default)]
    pub encoding: EncodingConfig,
}

fn yes() -> bool {
    true
}
fn default_queue() -> usize {
    100_000
}

/// Properties the sink sets from its own keys.
const OWN: [(&str, &str); 5] = [
    ("bootstrap.servers", "bootstrap_servers"),
    ("compression.type", "compression"),
    ("compression.codec", "compression"),
    ("acks", "acks"),
    ("enable.idempotence", "idempotence"),
];

impl KafkaSinkConfig {
    pub fn validate(&self, prefix: &str) -> Result<(), String> {
        if self.bootstrap_servers.trim().is_empty() {
            return Err(format!("{prefix}.bootstrap_servers must not be empty"));
        }
        if self.topic.is_empty()
            || self.topic.len() > 249
            || !self
                .topic
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
        {
            return Err(format!("{prefix}.topic must be 1 to 249 of [a-zA-Z0-9._-]"));
        }
        if self.idempotence && self.acks != Acks::All {
            return Err(format!("{prefix}.idempotence needs acks = \"all\""));
        }
        if !(1..=10_000_000).contains(&self.queue_messages) {
            return Err(format!("{prefix}.queue_messages must be in 1..=10000000"));
        }
        for key in self.librdkafka.keys() {
            if let Some((_, own)) = OWN.iter().find(|(k, _)| k == key) {
                return Err(format!(
                    "{prefix}.librdkafka.\"{key}\": set it with {prefix}.{own}"
                ));
            }
        }
        self.encoding.validate(prefix)
    }

    /// What in the passthrough settings weakens the connection's security, said once at
    /// start-up (the values themselves are not shown: only these known ones are read).
    pub fn insecure_settings(&self) -> Vec<&'static str> {
        let value = |key: &str| {
            self.librdkafka
                .get(key)
                .map(|v| v.expose().trim().to_ascii_lowercase())
        };
        let mut warnings = Vec::new();
        if value("enable.ssl.certificate.verification").is_some_and(|v| v == "false") {
            warnings.push("librdkafka enable.ssl.certificate.verification = false: the broker's certificate is not checked, so anyone on the path can pose as it");
        }
        if value("ssl.endpoint.identification.algorithm").is_some_and(|v| v == "none") {
            warnings.push("librdkafka ssl.endpoint.identification.algorithm = none: the broker's certificate is not checked against its host name");
        }
        if value("security.protocol").is_some_and(|v| v == "sasl_plaintext")
            && value("sasl.mechanism").is_none_or(|m| m == "plain" || m.starts_with("scram"))
        {
            warnings.push("librdkafka security.protocol = sasl_plaintext: the SASL credentials and every event cross the network in clear; use sasl_ssl");
        }
        warnings
    }

    /// Every librdkafka property the producer gets.
    pub fn properties(&self) -> Vec<(String, String)> {
        let mut p: Vec<(String, String)> = vec![
            ("bootstrap.servers".into(), self.bootstrap_servers.clone()),
            (
                "compression.type".into(),
                match self.compression {
                    Compression::None => "none",
                    Compression::Gzip => "gzip",
                    Compression::Snappy => "snappy",
                    Compression::Lz4 => "lz4",
                }
                .into(),
            ),
            (
                "acks".into(),
                match self.acks {
                    Acks::All => "all",
                    Acks::Leader => "1",
                    Acks::None => "0",
                }
                .into(),
            ),
            ("enable.idempotence".into(), self.idempotence.to_string()),
            // Retried by librdkafka until delivered: a broker outage waits, never drops.
            ("message.timeout.ms".into(), "0".into()),
            (
                "queue.buffering.max.messages".into(),
                self.queue_messages.to_string(),
            ),
            // The same partition for a key as Java clients choose.
            ("partitioner".into(), "murmur2_random".into()),
            // Broker states for readiness (see `Context::stats`).
            ("statistics.interval.ms".into(), "5000".into()),
        ];
        if !self.idempotence {
            // Without idempotence, retries of several requests in flight can reorder
            // messages: one at a time keeps each key in order.
            p.push(("max.in.flight.requests.per.connection".into(), "1".into()));
        }
        for (k, v) in &self.librdkafka {
            p.retain(|(own, _)| own != k);
            p.push((k.clone(), v.expose().to_owned()));
        }
        p
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(text: &str) -> Result<KafkaSinkConfig, String> {
        let c: KafkaSinkConfig = toml::from_str(text).map_err(|e| e.to_string())?;
        c.validate("sinks.k").map(|()| c)
    }

    #[test]
    fn validate_names_the_key_and_hides_passwords() {
        let base = "bootstrap_servers = \"b:9092\"\ntopic = \"flows\"\n";
        let c = config(&format!(
            "{base}[librdkafka]\n\"sasl.password\" = \"Endpoint=sb://x/;SharedAccessKey=TOPSECRET\"\n\"message.timeout.ms\" = \"60000\""
        ))
        .unwrap();
        assert!(!format!("{c:?}").contains("TOPSECRET"));
        let props = c.properties();
        assert!(props.contains(&("message.timeout.ms".into(), "60000".into())));
        assert_eq!(
            props
                .iter()
                .filter(|(k, _)| k == "message.timeout.ms")
                .count(),
            1
        );
        assert!(config(&format!("{base}acks = \"1\""))
            .unwrap_err()
            .contains("idempotence needs acks"));
        assert!(config("bootstrap_servers = \"b:9092\"\ntopic = \"a b\"")
            .unwrap_err()
            .contains("sinks.k.topic"));
        let insecure = config(&format!(
            "{base}[librdkafka]\n\"enable.ssl.certificate.verification\" = \"False\"\n\"security.protocol\" = \"SASL_PLAINTEXT\""
        ))
        .unwrap();
        let warnings = insecure.insecure_settings();
        assert_eq!(warnings.len(), 2, "{warnings:?}");
        assert!(warnings[0].contains("certificate is not checked"));
        assert!(config(base).unwrap().insecure_settings().is_empty());
        assert!(config(&format!("{base}[librdkafka]\nacks = \"0\""))
            .unwrap_err()
            .contains("set it with sinks.k.acks"));
    }
}
