//! The `flowgate` binary: command line, logging and signals.

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use flowgate::config::{Config, SourceConfig};
use flowgate::convert;
use flowgate::generate::{document, Generator, Schema, Target};
use flowgate::simulate::SimulateSpec;
use flowgate_sink::encode::{Encoder, Format, Framing, SyslogConfig, SyslogKind};
use flowgate_source::CheckpointStore;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use tokio::sync::watch;

#[derive(Parser)]
#[command(
    name = "flowgate",
    version,
    about = "Forwards Azure NSG and VNet flow logs to SIEMs"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the pipeline until SIGINT or SIGTERM.
    Run {
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Check a configuration file without connecting to anything.
    Validate {
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Convert flow log files to one line per flow tuple on stdout.
    Convert {
        /// cef, leef or json.
        #[arg(long, default_value = "cef")]
        format: Format,
        /// none, rfc5424 or rfc3164.
        #[arg(long, default_value = "none")]
        syslog: SyslogKind,
        /// HOSTNAME of the syslog header (default: this machine's name).
        #[arg(long, default_value = "")]
        hostname: String,
        /// Label the events as the service labels a source's (its name, in every format).
        #[arg(long, default_value = "")]
        source: String,
        /// The source's `subscription_tag`, likewise.
        #[arg(long)]
        subscription_tag: Option<String>,
        /// Add every `[enrich]` field (service names, address classes, rule kinds).
        #[arg(long)]
        enrich: bool,
        /// An asset inventory (CSV) to look both addresses up in.
        #[arg(long)]
        inventory: Option<PathBuf>,
        /// Append the raw bytes of every record, tuple or stretch of bytes that cannot be
        /// parsed to this JSON Lines file, with file, offset and reason.
        #[arg(long)]
        dead_letter: Option<PathBuf>,
        /// A MaxMind-format City database (country, city, coordinates of public addresses).
        #[arg(long)]
        geoip_city: Option<PathBuf>,
        /// A MaxMind-format ASN database (network owner of public addresses).
        #[arg(long)]
        geoip_asn: Option<PathBuf>,
        /// Files to read; `-` is stdin.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// List the stored checkpoints (stop the service first: the store is locked while it runs).
    Checkpoints {
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Write flow logs into the storage account of an `azure_blob` source, the way Network
    /// Watcher does (for tests, demos and benchmarks).
    Simulate {
        #[arg(long, short)]
        config: PathBuf,
        /// The `[sources.NAME]` whose account and container to write to.
        #[arg(long)]
        source: String,
        /// nsg-v1, nsg-v2 or vnet.
        #[arg(long, default_value = "nsg-v2", value_parser = parse_schema)]
        schema: Schema,
        #[arg(long, default_value_t = 2)]
        nsgs: usize,
        /// NICs per NSG (one blob each per hour).
        #[arg(long, default_value_t = 1)]
        macs: usize,
        /// Records written to each blob.
        #[arg(long, default_value_t = 5)]
        intervals: usize,
        /// Seconds between two intervals (Network Watcher: 60).
        #[arg(long, default_value_t = 60.0, value_parser = seconds_up_to_a_day)]
        interval_secs: f64,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Epoch seconds of the first record (default: now).
        #[arg(long)]
        start: Option<u64>,
        /// Also write each blob's content to this directory.
        #[arg(long)]
        mirror: Option<PathBuf>,
    },
    /// Write a realistic, seeded PT1H.json (for benchmarks and demos).
    Generate {
        /// nsg-v1, nsg-v2 or vnet.
        #[arg(long, default_value = "nsg-v2", value_parser = parse_schema)]
        schema: Schema,
        /// At least this many MiB.
        #[arg(long, default_value_t = 64)]
        mib: usize,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        #[arg(long)]
        out: PathBuf,
    },
}

fn parse_schema(s: &str) -> Result<Schema, String> {
    match s {
        "nsg-v1" => Ok(Schema::NsgV1),
        "nsg-v2" => Ok(Schema::NsgV2),
        "vnet" => Ok(Schema::VNet),
        _ => Err(format!("unknown schema {s:?} (nsg-v1, nsg-v2, vnet)")),
    }
}

/// A number of seconds in [0, 86400].
fn seconds_up_to_a_day(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(v) if (0.0..=86_400.0).contains(&v) => Ok(v),
        _ => Err("seconds in [0, 86400]".into()),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run { config } => run(&config),
        Command::Validate { config } => validate(&config),
        Command::Convert {
            format,
            syslog,
            hostname,
            source,
            subscription_tag,
            enrich,
            inventory,
            geoip_city,
            geoip_asn,
            dead_letter,
            files,
        } => run_convert(
            dead_letter,
            format,
            syslog,
            hostname,
            convert::Labels {
                source,
                subscription_tag,
                enrich: flowgate_transform::EnrichConfig {
                    service_names: enrich,
                    address_classes: enrich,
                    rule_kinds: enrich,
                    inventory,
                    geoip_city,
                    geoip_asn,
                    ..Default::default()
                },
            },
            &files,
        ),
        Command::Checkpoints { config } => list_checkpoints(&config),
        Command::Generate {
            schema,
            mib,
            seed,
            out,
        } => generate(schema, mib, seed, &out),
        Command::Simulate {
            config,
            source,
            schema,
            nsgs,
            macs,
            intervals,
            interval_secs,
            seed,
            start,
            mirror,
        } => {
            let spec = SimulateSpec {
                schema,
                nsgs,
                macs,
                intervals,
                // A bad value is refused by clap's parser: from_secs_f64 would panic.
                interval: std::time::Duration::from_secs_f64(interval_secs),
                seed,
                start_epoch_secs: start.unwrap_or_else(|| {
                    std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .map(|d| d.as_secs() / 60 * 60)
                        .unwrap_or(0)
                }),
                mirror,
            };
            simulate(&config, &source, &spec)
        }
    };
    match result {
        Ok(code) => code,
        // A reader that went away (`flowgate convert ... | head`) ends us quietly.
        Err(e) if is_broken_pipe(&e) => ExitCode::from(141),
        Err(e) => {
            eprintln!("flowgate: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

fn simulate(path: &Path, source: &str, spec: &SimulateSpec) -> Result<ExitCode> {
    let config = load(path)?;
    let Some(SourceConfig::AzureBlob(blob)) = config.sources.get(source) else {
        anyhow::bail!(
            "{}: sources.{source} is not an azure_blob source",
            path.display()
        );
    };
    let container = blob
        .build()
        .map_err(|e| anyhow::anyhow!("sources.{source}: {e}"))?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let summary = runtime.block_on(flowgate::simulate::run(&container, spec))?;
    println!(
        "{{\"blobs\": {}, \"records\": {}, \"tuples\": {}}}",
        summary.blobs, summary.records, summary.tuples
    );
    Ok(ExitCode::SUCCESS)
}

fn generate(schema: Schema, mib: usize, seed: u64, out: &Path) -> Result<ExitCode> {
    let mut generator = Generator::new(schema, seed, Target::default());
    let (doc, tuples) = document(&mut generator, mib << 20, 1_709_546_400);
    std::fs::write(out, &doc).with_context(|| format!("writing {}", out.display()))?;
    println!(
        "{{\"file\": \"{}\", \"bytes\": {}, \"tuples\": {tuples}}}",
        out.display(),
        doc.len()
    );
    Ok(ExitCode::SUCCESS)
}

/// Loads and validates; the message names the file and the offending key.
fn load(path: &Path) -> Result<Config> {
    let config = Config::load(path).map_err(anyhow::Error::msg)?;
    config
        .validate()
        .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    Ok(config)
}

fn validate(path: &Path) -> Result<ExitCode> {
    let config = load(path)?;
    config
        .enrich
        .check_files()
        .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    println!(
        "{}: valid ({} source{}, {} sink{})",
        path.display(),
        config.sources.len(),
        if config.sources.len() == 1 { "" } else { "s" },
        config.sinks.len(),
        if config.sinks.len() == 1 { "" } else { "s" },
    );
    Ok(ExitCode::SUCCESS)
}

fn run(path: &Path) -> Result<ExitCode> {
    let config = load(path)?;
    flowgate::logging::init(&config.log);
    if let Some(file) = config.dead_letter.file() {
        let shown = file.path.display().to_string();
        flowgate_core::dead_letter::install(file)
            .with_context(|| format!("dead_letter.path: cannot open {shown}"))?;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    runtime.block_on(async move {
        let (shutdown_tx, shutdown_rx) = watch::channel(false);
        let (abort_tx, abort_rx) = watch::channel(false);
        tokio::spawn(async {
            use tokio::signal::unix::{signal, SignalKind};
            // SIGHUP (logrotate): reopen the file sinks' paths; the service goes on.
            let mut hup = signal(SignalKind::hangup()).expect("SIGHUP handler");
            while hup.recv().await.is_some() {
                tracing::info!("SIGHUP: file sinks reopen their paths");
                flowgate_core::reopen::request();
            }
        });
        tokio::spawn(async move {
            use tokio::signal::unix::{signal, SignalKind};
            let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
            let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler");
            tokio::select! { _ = term.recv() => {}, _ = int.recv() => {} }
            tracing::info!("shutting down: draining batches in flight (signal again to abort)");
            flowgate_core::health::set_draining();
            let _ = shutdown_tx.send(true);
            tokio::select! { _ = term.recv() => {}, _ = int.recv() => {} }
            tracing::warn!("second signal: abandoning batches still being retried");
            let _ = abort_tx.send(true);
        });
        if config.api.address.is_some() {
            flowgate::api::serve(&config.api, flowgate::api::metrics_handle()?).await?;
        }
        flowgate::pipeline::run(config, shutdown_rx, abort_rx).await
    })?;
    Ok(ExitCode::SUCCESS)
}

fn list_checkpoints(path: &Path) -> Result<ExitCode> {
    let config = load(path)?;
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "{:<12} {:<12} {:<20} key",
        "offset", "updated", "anchor"
    )?;
    let Some(cluster) = &config.checkpoints.cluster else {
        let store = CheckpointStore::open(&config.checkpoints.path)?;
        for (key, cp) in store.list("")? {
            writeln!(
                out,
                "{:<12} {:<12} {:<20} {key}",
                cp.offset, cp.updated, cp.anchor
            )?;
        }
        return Ok(ExitCode::SUCCESS);
    };
    // A cluster's: read from the partition blobs, with each partition's last owner.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    for source in config.sources.keys() {
        let listed = runtime
            .block_on(cluster.list_checkpoints(source))
            .map_err(anyhow::Error::msg)?;
        for (partition, owner, name, cp) in listed {
            writeln!(
                out,
                "{:<12} {:<12} {:<20} {source}/{name}  (partition {partition}, {owner})",
                cp.offset, cp.updated, cp.anchor
            )?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn run_convert(
    dead_letter: Option<PathBuf>,
    format: Format,
    syslog: SyslogKind,
    hostname: String,
    labels: convert::Labels,
    files: &[PathBuf],
) -> Result<ExitCode> {
    let syslog = SyslogConfig {
        kind: Some(syslog),
        hostname,
        ..SyslogConfig::default()
    };
    syslog.validate().map_err(anyhow::Error::msg)?;
    if let Some(path) = dead_letter {
        let shown = path.display().to_string();
        flowgate_core::dead_letter::install(flowgate_core::dead_letter::DeadLetterConfig {
            path,
            max_file_bytes: u64::MAX,
            max_entry_bytes: 64 << 20,
        })
        .with_context(|| format!("--dead-letter: cannot open {shown}"))?;
    }
    let header = syslog.build(SyslogKind::None);
    let mut encoder = Encoder::new(format, header, Framing::Newline);
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::with_capacity(1 << 20, stdout.lock());
    let mut problems = 0;
    for path in files {
        let name = path.display().to_string();
        let outcome = if name == "-" {
            convert::convert_input(
                "<stdin>",
                &labels,
                &mut std::io::stdin().lock(),
                &mut encoder,
                &mut out,
            )?
        } else {
            let mut file =
                std::fs::File::open(path).with_context(|| format!("cannot open {name}"))?;
            convert::convert_input(&name, &labels, &mut file, &mut encoder, &mut out)?
        };
        problems += outcome.problems;
    }
    out.flush()?;
    Ok(if problems > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}
