//! flowgate's configuration: a TOML file, overridden by `FLOWGATE_<TABLE>__<KEY>`
//! environment variables, checked by pure `validate()` functions (no I/O).

use flowgate_core::RecordBatch;
use flowgate_sink::SinkConfig;
use flowgate_source::{
    BlobSourceConfig, Checkpointing, ClusterConfig, LocalSourceConfig, SourceTask,
};
use flowgate_transform::{EnrichConfig, FilterConfig, VolumeConfig};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// `[sources.NAME]`: where flow logs are read.
    pub sources: BTreeMap<String, SourceConfig>,
    /// `[sinks.NAME]`: where every event is delivered (each sink gets every event).
    pub sinks: BTreeMap<String, SinkConfig>,
    pub checkpoints: CheckpointsConfig,
    pub pipeline: PipelineConfig,
    /// `[filter]`: which events go on to the sinks.
    pub filter: FilterConfig,
    /// `[enrich]`: what is added to every event.
    pub enrich: EnrichConfig,
    /// `[volume]`: duplicate suppression and aggregation.
    pub volume: VolumeConfig,
    /// `[api]`: the HTTP endpoint for `/metrics`, `/healthz` and `/readyz`.
    pub api: ApiConfig,
    /// `[dead_letter]`: where malformed input is copied.
    pub dead_letter: DeadLetterSettings,
    pub log: LogConfig,
}

/// The file as written; each source and sink table is typed by its `type` key afterwards,
/// so that an error can name its full path (`sinks.out.encoding.format`).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    sources: BTreeMap<String, toml::Table>,
    #[serde(default)]
    sinks: BTreeMap<String, toml::Table>,
    #[serde(default)]
    checkpoints: CheckpointsConfig,
    #[serde(default)]
    pipeline: PipelineConfig,
    #[serde(default)]
    filter: FilterConfig,
    #[serde(default)]
    enrich: EnrichConfig,
    #[serde(default)]
    volume: VolumeConfig,
    #[serde(default)]
    api: ApiConfig,
    #[serde(default)]
    dead_letter: DeadLetterSettings,
    #[serde(default)]
    log: LogConfig,
}

#[derive(Debug, Clone, PartialEq)]
#[allow(clippy::large_enum_variant)] // read once at start-up; size does not matter
pub enum SourceConfig {
    Local(LocalSourceConfig),
    AzureBlob(BlobSourceConfig),
}

impl SourceConfig {
    /// Checks the config without I/O; errors name the key under `sources.NAME`.
    pub fn validate(&self, prefix: &str) -> Result<(), String> {
        match self {
            SourceConfig::Local(c) => c.validate(prefix),
            SourceConfig::AzureBlob(c) => c.validate(prefix),
        }
    }

    /// Opens the source's store and starts following it into `out`.
    pub fn build(
        &self,
        name: &str,
        checkpoints: &Checkpointing,
        out: tokio::sync::mpsc::Sender<RecordBatch>,
        shutdown: tokio::sync::watch::Receiver<bool>,
        drain: std::time::Duration,
    ) -> Result<SourceTask, String> {
        let prefix = format!("sources.{name}");
        match self {
            SourceConfig::Local(c) => {
                let dir = flowgate_source::LocalDir::new(&c.path);
                checkpoints.spawn(name, dir, c.follow_options(), out, shutdown, drain)
            }
            SourceConfig::AzureBlob(c) => c.build().and_then(|container| {
                checkpoints.spawn(name, container, c.follow_options(), out, shutdown, drain)
            }),
        }
        .map_err(|e| format!("{prefix}: {e}"))
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CheckpointsConfig {
    /// The checkpoint store of a single instance (one file; its directory must exist).
    pub path: PathBuf,
    /// `[checkpoints.cluster]`: several instances share the sources, with checkpoints and
    /// ownership in a storage account; `path` is then unused.
    pub cluster: Option<ClusterConfig>,
}

impl Default for CheckpointsConfig {
    fn default() -> Self {
        CheckpointsConfig {
            path: "flowgate-checkpoints.redb".into(),
            cluster: None,
        }
    }
}

impl CheckpointsConfig {
    pub fn validate(&self) -> Result<(), String> {
        match &self.cluster {
            Some(cluster) => cluster.validate("checkpoints.cluster"),
            None if self.path.as_os_str().is_empty() => {
                Err("checkpoints.path must not be empty".into())
            }
            None => Ok(()),
        }
    }

    /// Opens the local store, or prepares the cluster's (no network I/O yet).
    pub fn build(&self) -> Result<Checkpointing, String> {
        match &self.cluster {
            Some(cluster) => Ok(Checkpointing::Cluster(Box::new(cluster.clone()))),
            None => flowgate_source::CheckpointStore::open(&self.path)
                .map(Checkpointing::Local)
                .map_err(|e| e.to_string()),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PipelineConfig {
    /// Batches each channel holds; with the read chunk size this bounds memory.
    pub channel_capacity: usize,
    /// On SIGINT/SIGTERM, how long to wait for batches in flight to be delivered.
    pub drain_timeout_secs: f64,
    /// Events per batch after the transform at most: a bigger record goes on in parts
    /// that share its acknowledgement, so that one record never holds all of its events
    /// (and their encodings) in memory at once.
    pub max_batch_events: usize,
}

impl Default for PipelineConfig {
    fn default() -> Self {
        PipelineConfig {
            channel_capacity: 4,
            drain_timeout_secs: 30.0,
            max_batch_events: 16_384,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ApiConfig {
    /// `host:port` to serve `/metrics`, `/healthz` and `/readyz` on; off when unset.
    /// In a container: `0.0.0.0:9898`.
    pub address: Option<String>,
    /// Connections served at once; one more is closed as soon as it is accepted.
    pub max_connections: usize,
    /// The longest a connection lasts, from accept to the last byte written: a client
    /// that never reads its response gives its slot back after this. A request head must
    /// arrive within 5 s (or this, if less).
    pub timeout_secs: f64,
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig {
            address: None,
            max_connections: 64,
            timeout_secs: 30.0,
        }
    }
}

impl ApiConfig {
    pub fn validate(&self) -> Result<(), String> {
        if let Some(a) = &self.address {
            if a.parse::<std::net::SocketAddr>().is_err() {
                return Err(format!(
                    "api.address: {a:?} is not an address (host:port, e.g. 0.0.0.0:9898)"
                ));
            }
        }
        if !(1..=4096).contains(&self.max_connections) {
            return Err("api.max_connections must be in [1, 4096]".into());
        }
        if !(self.timeout_secs >= 0.1 && self.timeout_secs <= 3600.0) {
            return Err("api.timeout_secs must be in [0.1, 3600]".into());
        }
        Ok(())
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DeadLetterSettings {
    /// A JSON Lines file for the raw bytes of every record, tuple or stretch of bytes
    /// that could not be parsed, with source, object, offset and reason; off when unset.
    pub path: Option<PathBuf>,
    /// The file grows to this size at most; later entries are only counted (dropped).
    pub max_file_bytes: u64,
    /// Bytes of one entry's data kept at most; its full length is written too.
    pub max_entry_bytes: usize,
}

impl Default for DeadLetterSettings {
    fn default() -> Self {
        DeadLetterSettings {
            path: None,
            max_file_bytes: 1 << 30,
            max_entry_bytes: 1 << 16,
        }
    }
}

impl DeadLetterSettings {
    pub fn validate(&self) -> Result<(), String> {
        if self.path.as_ref().is_some_and(|p| p.as_os_str().is_empty()) {
            return Err("dead_letter.path must not be empty".into());
        }
        if !(64..=64 << 20).contains(&self.max_entry_bytes) {
            return Err("dead_letter.max_entry_bytes must be in [64, 67108864]".into());
        }
        if self.max_file_bytes < self.max_entry_bytes as u64 * 2 {
            return Err("dead_letter.max_file_bytes must be at least twice max_entry_bytes".into());
        }
        Ok(())
    }

    /// The dead-letter file's settings, if there is one.
    pub fn file(&self) -> Option<flowgate_core::dead_letter::DeadLetterConfig> {
        Some(flowgate_core::dead_letter::DeadLetterConfig {
            path: self.path.clone()?,
            max_file_bytes: self.max_file_bytes,
            max_entry_bytes: self.max_entry_bytes,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// A `tracing` filter: `info`, `debug`, `flowgate_source=debug,info`, ...
    pub level: String,
    pub format: LogFormat,
    /// Warnings and errors logged per minute from one place in the code; the rest are
    /// counted and summarised. 0: no limit.
    pub repeat_limit_per_minute: u32,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            level: "info".into(),
            format: LogFormat::Text,
            repeat_limit_per_minute: 5,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

const ENV_PREFIX: &str = "FLOWGATE_";

impl Config {
    /// Reads `path` and applies the environment's overrides. Errors name the file and,
    /// for a wrong or unknown key, its full path (`sinks.out.encoding.format`).
    pub fn load(path: &Path) -> Result<Config, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        Config::parse(&text, std::env::vars()).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// Parses TOML text with `FLOWGATE_<TABLE>__<KEY>[__<KEY>...]` overrides from `env`.
    pub fn parse(
        text: &str,
        env: impl Iterator<Item = (String, String)>,
    ) -> Result<Config, String> {
        // toml's own message quotes the offending line, which may hold a secret: say
        // only where and what.
        let mut doc: toml::Table = toml::from_str(text).map_err(|e| {
            let line = e
                .span()
                .map(|s| text.get(..s.start).unwrap_or(text).matches('\n').count() + 1);
            match line {
                Some(line) => format!("line {line}: {}", e.message()),
                None => e.message().to_owned(),
            }
        })?;
        // Overrides read as TOML literals (`5`, `true`): where the key wants a string after
        // all (a password of digits), it gets the text as it was.
        let mut literals: Vec<(Vec<String>, String)> = Vec::new();
        for (name, value) in env {
            let Some(rest) = name.strip_prefix(ENV_PREFIX) else {
                continue;
            };
            // Only nested names are overrides, so FLOWGATE_VENV and the like are not.
            if !rest.contains("__") {
                continue;
            }
            let keys: Vec<String> = rest.split("__").map(str::to_lowercase).collect();
            if set_path(&mut doc, &keys, &value).map_err(|e| format!("{name}: {e}"))? {
                literals.push((keys, value));
            }
        }
        loop {
            match Config::from_table(doc.clone()) {
                Ok(config) => return Ok(config),
                Err(e) => match literals
                    .iter()
                    .position(|(keys, _)| keys.join(".") == e.path)
                {
                    Some(i) => {
                        let (keys, value) = literals.swap_remove(i);
                        set_string(&mut doc, &keys, value);
                    }
                    None => return Err(e.to_string()),
                },
            }
        }
    }

    /// The typed config of a parsed document.
    fn from_table(doc: toml::Table) -> Result<Config, Invalid> {
        let raw: RawConfig = typed("", doc)?;
        let mut sources = BTreeMap::new();
        for (name, mut table) in raw.sources {
            let prefix = format!("sources.{name}");
            let known = "local, azure_blob";
            let config = match take_type(&prefix, &mut table, known)?.as_str() {
                "local" => SourceConfig::Local(typed(&prefix, table)?),
                "azure_blob" => SourceConfig::AzureBlob(typed(&prefix, table)?),
                other => {
                    return Err(Invalid::at(
                        format!("{prefix}.type"),
                        format!("unknown source type {other:?} ({known})"),
                    ))
                }
            };
            sources.insert(name, config);
        }
        let mut sinks = BTreeMap::new();
        for (name, mut table) in raw.sinks {
            let prefix = format!("sinks.{name}");
            let config =
                match take_type(&prefix, &mut table, "stdout, file, syslog, kafka")?.as_str() {
                    "stdout" => SinkConfig::Stdout(typed(&prefix, table)?),
                    "file" => SinkConfig::File(typed(&prefix, table)?),
                    "syslog" => SinkConfig::Syslog(typed(&prefix, table)?),
                    "kafka" => SinkConfig::Kafka(typed(&prefix, table)?),
                    other => {
                        return Err(Invalid::at(
                            format!("{prefix}.type"),
                            format!("unknown sink type {other:?} (stdout, file, syslog, kafka)"),
                        ))
                    }
                };
            sinks.insert(name, config);
        }
        Ok(Config {
            sources,
            sinks,
            checkpoints: raw.checkpoints,
            pipeline: raw.pipeline,
            filter: raw.filter,
            enrich: raw.enrich,
            volume: raw.volume,
            api: raw.api,
            dead_letter: raw.dead_letter,
            log: raw.log,
        })
    }

    /// Everything that can be checked without touching the network or the disk.
    pub fn validate(&self) -> Result<(), String> {
        if self.sources.is_empty() {
            return Err("sources: at least one source is required".into());
        }
        if self.sinks.is_empty() {
            return Err("sinks: at least one sink is required".into());
        }
        for (name, source) in &self.sources {
            check_name("sources", name)?;
            source.validate(&format!("sources.{name}"))?;
        }
        for (name, sink) in &self.sinks {
            check_name("sinks", name)?;
            sink.validate(name)?;
        }
        self.checkpoints.validate()?;
        if !(1..=1024).contains(&self.pipeline.channel_capacity) {
            return Err("pipeline.channel_capacity must be between 1 and 1024".into());
        }
        if !(1..=1_000_000).contains(&self.pipeline.max_batch_events) {
            return Err("pipeline.max_batch_events must be between 1 and 1000000".into());
        }
        if !(self.pipeline.drain_timeout_secs >= 0.0 && self.pipeline.drain_timeout_secs <= 3600.0)
        {
            return Err("pipeline.drain_timeout_secs must be between 0 and 3600".into());
        }
        self.filter.build()?;
        self.enrich.validate()?;
        self.volume.validate()?;
        self.api.validate()?;
        self.dead_letter.validate()?;
        tracing_subscriber::EnvFilter::try_new(&self.log.level)
            .map_err(|e| format!("log.level: {e}"))?;
        Ok(())
    }
}

/// A key whose value has the wrong shape: its full path (`sinks.out.encoding.format`,
/// empty for the document) and what is wrong, without the value (it may be a secret).
#[derive(Debug)]
struct Invalid {
    path: String,
    message: String,
}

impl Invalid {
    fn at(path: String, message: String) -> Invalid {
        Invalid { path, message }
    }
}

impl std::fmt::Display for Invalid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.path.is_empty() {
            true => f.write_str(&self.message),
            false => write!(f, "{}: {}", self.path, self.message),
        }
    }
}

/// Deserializes `table`; an error names its path below `prefix`.
fn typed<T: serde::de::DeserializeOwned>(prefix: &str, table: toml::Table) -> Result<T, Invalid> {
    serde_path_to_error::deserialize(toml::Value::Table(table)).map_err(|e| {
        let path = e.path().to_string();
        let message = e.into_inner().to_string();
        // toml appends "in `table`" on a second line: the path already says it.
        let message = without_value(message.lines().next().unwrap_or_default());
        let path = match (prefix.is_empty(), path == ".") {
            (true, true) => String::new(),
            (true, false) => path,
            (false, true) => prefix.to_owned(),
            (false, false) => format!("{prefix}.{path}"),
        };
        Invalid { path, message }
    })
}

/// serde's `invalid type: integer `12345678`, expected a string` without the value: the
/// key may hold a password. What kind of value it was and what was expected stay.
fn without_value(message: &str) -> String {
    for lead in ["invalid type: ", "invalid value: "] {
        if let Some(rest) = message.strip_prefix(lead) {
            let (found, expected) = rest.rsplit_once(", expected ").unwrap_or((rest, ""));
            let kind = found
                .split([' '])
                .take_while(|w| !w.starts_with(['`', '"']));
            let kind: Vec<&str> = kind.collect();
            return format!("{lead}{}, expected {expected}", kind.join(" "));
        }
    }
    message.to_owned()
}

/// Removes and returns the table's `type`.
fn take_type(prefix: &str, table: &mut toml::Table, known: &str) -> Result<String, Invalid> {
    let path = format!("{prefix}.type");
    match table.remove("type") {
        Some(toml::Value::String(t)) => Ok(t),
        Some(_) => Err(Invalid::at(path, format!("must be a string ({known})"))),
        None => Err(Invalid::at(path, format!("is missing ({known})"))),
    }
}

/// Names become checkpoint keys and metric labels: keep them plain.
fn check_name(table: &str, name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{table}.{name}: names are 1 to 64 letters, digits, '_' or '-'"
        ))
    }
}

/// Sets `keys` in `doc` to `raw`: as a string where the file has a string there,
/// otherwise as a TOML literal if it is one (`5`, `true`, `["a"]`), else as a string.
/// True when it was read as a literal.
fn set_path(doc: &mut toml::Table, keys: &[String], raw: &str) -> Result<bool, String> {
    let (last, parents) = keys.split_last().expect("split of a non-empty name");
    let mut table = doc;
    for key in parents {
        let entry = table
            .entry(key.clone())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        table = entry
            .as_table_mut()
            .ok_or_else(|| format!("{key} is not a table"))?;
    }
    let value = match table.get(last) {
        Some(toml::Value::String(_)) => toml::Value::String(raw.to_owned()),
        _ => toml::from_str::<toml::Table>(&format!("v = {raw}"))
            .ok()
            .and_then(|mut t| t.remove("v"))
            .unwrap_or_else(|| toml::Value::String(raw.to_owned())),
    };
    let literal = !value.is_str();
    table.insert(last.clone(), value);
    Ok(literal)
}

/// Sets `keys` (already set by `set_path`) to `raw` as a string.
fn set_string(doc: &mut toml::Table, keys: &[String], raw: String) {
    let (last, parents) = keys.split_last().expect("split of a non-empty name");
    let mut table = doc;
    for key in parents {
        match table.get_mut(key).and_then(toml::Value::as_table_mut) {
            Some(t) => table = t,
            None => return,
        }
    }
    table.insert(last.clone(), toml::Value::String(raw));
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = r#"
[sources.sample]
type = "local"
path = "configs/sample-logs"

[sinks.out]
type = "stdout"
"#;

    fn parse(text: &str, env: &[(&str, &str)]) -> Result<Config, String> {
        Config::parse(
            text,
            env.iter().map(|(k, v)| (k.to_string(), v.to_string())),
        )
    }

    #[test]
    fn minimal_config_and_defaults() {
        let c = parse(BASE, &[]).unwrap();
        c.validate().unwrap();
        assert_eq!(c.pipeline.channel_capacity, 4);
        let SourceConfig::Local(l) = &c.sources["sample"] else {
            panic!()
        };
        assert_eq!(l.poll_interval_secs, 5.0);
    }

    #[test]
    fn unknown_keys_are_named() {
        let e = parse(
            &format!("{BASE}\n[sinks.out.encoding]\nformt = \"cef\"\n"),
            &[],
        )
        .unwrap_err();
        assert_eq!(
            e,
            "sinks.out.encoding.formt: unknown field `formt`, expected `format` or `syslog`"
        );
        let e = parse(&format!("{BASE}\n[pipeline]\nchanel_capacity = 3\n"), &[]).unwrap_err();
        assert_eq!(
            e,
            "pipeline.chanel_capacity: unknown field `chanel_capacity`, expected one of `channel_capacity`, `drain_timeout_secs`, `max_batch_events`"
        );
        let e = parse(&BASE.replace("path = ", "pth = "), &[]).unwrap_err();
        assert!(
            e.starts_with("sources.sample.pth: unknown field `pth`"),
            "{e}"
        );
        let e = parse(&BASE.replace("\"stdout\"", "\"stdot\""), &[]).unwrap_err();
        assert_eq!(
            e,
            "sinks.out.type: unknown sink type \"stdot\" (stdout, file, syslog, kafka)"
        );
        let e = parse(
            &format!("{BASE}\n[sinks.out.encoding]\nformat = \"xml\"\n"),
            &[],
        )
        .unwrap_err();
        assert!(
            e.starts_with("sinks.out.encoding.format: unknown variant `xml`"),
            "{e}"
        );
    }

    #[test]
    fn validate_names_the_key() {
        let c = parse(&format!("{BASE}\n[pipeline]\nchannel_capacity = 0\n"), &[]).unwrap();
        assert!(c
            .validate()
            .unwrap_err()
            .starts_with("pipeline.channel_capacity"));
        let c = parse(
            &format!(
                "{BASE}\n[sinks.out.encoding.syslog]\nkind = \"rfc5424\"\nfacility = \"local9\"\n"
            ),
            &[],
        )
        .unwrap();
        assert!(c
            .validate()
            .unwrap_err()
            .starts_with("sinks.out.encoding.syslog.facility"));
        let c = parse(&BASE.replace("sources.sample", "sources.\"a b\""), &[]).unwrap();
        assert!(c.validate().unwrap_err().starts_with("sources.a b"));
    }

    #[test]
    fn environment_strings_stay_strings_and_secrets_stay_out_of_errors() {
        let kafka = format!(
            "{BASE}\n[sinks.k]\ntype = \"kafka\"\nbootstrap_servers = \"b:9092\"\ntopic = \"t\"\n"
        );
        // Digits for a password: wanted as a string, so taken as one.
        let c = parse(
            &kafka,
            &[
                ("FLOWGATE_SINKS__K__LIBRDKAFKA__SASL.PASSWORD", "12345678"),
                ("FLOWGATE_PIPELINE__CHANNEL_CAPACITY", "9"),
            ],
        )
        .unwrap();
        let SinkConfig::Kafka(k) = &c.sinks["k"] else {
            panic!()
        };
        assert_eq!(k.librdkafka["sasl.password"].expose(), "12345678");
        assert_eq!(c.pipeline.channel_capacity, 9, "numbers stay numbers");
        // A wrong type names the key and the kind of value, never the value.
        for (text, env) in [
            (
                format!("{kafka}[sinks.k.librdkafka]\n\"sasl.password\" = 87654321\n"),
                vec![],
            ),
            (
                format!("{kafka}[sinks.k.librdkafka]\n\"sasl.password\" = [\"87654321\"]\n"),
                vec![],
            ),
            (
                BASE.to_owned(),
                vec![("FLOWGATE_PIPELINE__CHANNEL_CAPACITY", "\"87654321\"")],
            ),
        ] {
            let e = parse(&text, &env).unwrap_err();
            assert!(!e.contains("87654321"), "{e}");
            assert!(e.contains("invalid type"), "{e}");
        }
        let e = parse(
            &format!("{kafka}[sinks.k.librdkafka]\n\"sasl.password\" = 87654321\n"),
            &[],
        )
        .unwrap_err();
        assert_eq!(
            e,
            "sinks.k.librdkafka.sasl.password: invalid type: integer, expected a string"
        );
    }

    #[test]
    fn plain_http_endpoints_with_credentials_are_refused_unless_local_or_allowed() {
        let blob = |extra: &str| {
            parse(
                &format!(
                    "[sources.b]\ntype = \"azure_blob\"\ncontainer = \"c\"\naccount = \"a\"\n{extra}\n[sinks.out]\ntype = \"stdout\"\n"
                ),
                &[],
            )
            .unwrap()
            .validate()
        };
        let key = "access_key = \"a2V5\"\n";
        let e = blob(&format!("{key}endpoint = \"http://10.1.2.3:10000/a\"")).unwrap_err();
        assert!(
            e.starts_with("sources.b.endpoint is plain http")
                && e.contains("sources.b.allow_plain_http"),
            "{e}"
        );
        blob(&format!("{key}endpoint = \"https://10.1.2.3/a\"")).unwrap();
        blob(&format!("{key}endpoint = \"http://127.0.0.1:10000/a\"")).unwrap();
        blob(&format!(
            "{key}endpoint = \"http://10.1.2.3:10000/a\"\nallow_plain_http = true"
        ))
        .unwrap();
        let cs = |s: &str| format!("connection_string = \"{s}\"");
        let e = blob(&cs("DefaultEndpointsProtocol=http;AccountName=a;AccountKey=a2V5;EndpointSuffix=core.windows.net")).unwrap_err();
        assert!(
            e.contains("connection_string's blob endpoint is plain http"),
            "{e}"
        );
        assert!(!e.contains("a2V5"), "{e}");
        blob(&cs("DefaultEndpointsProtocol=http;AccountName=a;AccountKey=a2V5;BlobEndpoint=http://127.0.0.1:10000/a;")).unwrap();
        blob(&cs("UseDevelopmentStorage=true")).unwrap();
        let e = blob(
            "[sources.b.azure_ad]\nmethod = \"client_secret\"\nauthority_host = \"http://login.example\"",
        )
        .unwrap_err();
        assert!(
            e.contains("sources.b.azure_ad.authority_host is plain http"),
            "{e}"
        );
    }

    #[test]
    fn environment_overrides() {
        let c = parse(
            BASE,
            &[
                ("FLOWGATE_PIPELINE__CHANNEL_CAPACITY", "9"),
                ("FLOWGATE_SOURCES__SAMPLE__PATH", "/data/flows"),
                ("FLOWGATE_SINKS__OUT__ENCODING__FORMAT", "json"),
                ("FLOWGATE_VENV", "/not/an/override"),
                ("OTHER__THING", "x"),
            ],
        )
        .unwrap();
        assert_eq!(c.pipeline.channel_capacity, 9);
        let SourceConfig::Local(l) = &c.sources["sample"] else {
            panic!()
        };
        assert_eq!(l.path, PathBuf::from("/data/flows"));
        let SinkConfig::Stdout(s) = &c.sinks["out"] else {
            panic!()
        };
        assert_eq!(s.encoding.format, flowgate_sink::encode::Format::Json);
        let e = parse(BASE, &[("FLOWGATE_PIPELINE__BOGUS", "1")]).unwrap_err();
        assert!(
            e.starts_with("pipeline.bogus: unknown field `bogus`"),
            "{e}"
        );
    }
}
