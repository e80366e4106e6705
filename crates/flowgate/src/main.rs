//! The `flowgate` binary: command line, configuration and pipeline wiring.

use flowgate::convert;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use flowgate_sink::encode::{Encoder, Format, Framing, SyslogConfig, SyslogKind};
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

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
    /// Convert flow log files to one line per flow tuple on stdout.
    Convert {
        /// cef, leef or json.
        #[arg(long, default_value = "cef")]
        format: Format,
        /// none, rfc5424 or rfc3164.
        #[arg(long, default_value = "none", value_parser = parse_syslog_kind)]
        syslog: SyslogKind,
        /// Files to read; `-` is stdin.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
}

fn parse_syslog_kind(s: &str) -> Result<SyslogKind, String> {
    match s {
        "none" => Ok(SyslogKind::None),
        "rfc5424" => Ok(SyslogKind::Rfc5424),
        "rfc3164" => Ok(SyslogKind::Rfc3164),
        _ => Err(format!(
            "unknown syslog header {s:?} (none, rfc5424, rfc3164)"
        )),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Convert {
            format,
            syslog,
            files,
        } => run_convert(format, syslog, &files),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("flowgate: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn run_convert(format: Format, syslog: SyslogKind, files: &[PathBuf]) -> Result<ExitCode> {
    let header = SyslogConfig {
        kind: syslog,
        ..SyslogConfig::default()
    }
    .build();
    let mut encoder = Encoder::new(format, header, Framing::Newline);
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::with_capacity(1 << 20, stdout.lock());
    let mut problems = 0;
    for path in files {
        let name = path.display().to_string();
        let outcome = if name == "-" {
            convert::convert_input(
                "<stdin>",
                &mut std::io::stdin().lock(),
                &mut encoder,
                &mut out,
            )?
        } else {
            let mut file =
                std::fs::File::open(path).with_context(|| format!("cannot open {name}"))?;
            convert::convert_input(&name, &mut file, &mut encoder, &mut out)?
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
