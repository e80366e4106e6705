//! `flowgate convert`: flow log files to one line per tuple on stdout.
//!
//! Streams each file through the same extractor, flattener and encoder as the service,
//! so memory stays at one read chunk whatever the file size. Malformed input is reported
//! with its file and byte offset; the good tuples around it are still written.

use crate::transform::problem_entry;
use anyhow::{Context, Result};
use flowgate_core::dead_letter::{self, Entry};
use flowgate_core::Origin;
use flowgate_sink::encode::Encoder;
use flowgate_source::extract::extract;
use flowgate_transform::Flattener;
use std::io::{Read, Write};
use std::sync::Arc;

/// Bytes read at a time: what one batch holds in the service.
const CHUNK: usize = 1 << 20;
/// Problems printed per file before only counting them.
const MAX_REPORTS: usize = 20;
/// Events encoded and written at a time (the default of `pipeline.max_batch_events`).
const MAX_BATCH_EVENTS: usize = 16_384;

/// Who the events are said to come from: empty for plain conversion; a source's name
/// and `subscription_tag` to produce exactly what the service would send for it.
#[derive(Debug, Default, Clone)]
pub struct Labels {
    pub source: String,
    pub subscription_tag: Option<String>,
    /// The `[enrich]` settings.
    pub enrich: flowgate_transform::EnrichConfig,
}

/// What converting one input found wrong.
#[derive(Debug, Default)]
pub struct Outcome {
    pub problems: u64,
}

pub fn convert_input(
    name: &str,
    labels: &Labels,
    input: &mut dyn Read,
    encoder: &mut Encoder,
    out: &mut dyn Write,
) -> Result<Outcome> {
    let origin = Arc::new(Origin {
        source: labels.source.as_str().into(),
        path: name.into(),
        subscription_tag: labels.subscription_tag.as_deref().map(Into::into),
    });
    let mut flattener = Flattener::new();
    let mut enricher = labels.enrich.build().map_err(anyhow::Error::msg)?;
    let mut outcome = Outcome::default();
    let mut report = |offset: u64, what: &dyn std::fmt::Display| {
        outcome.problems += 1;
        if outcome.problems as usize <= MAX_REPORTS {
            eprintln!("flowgate: {name}: byte {offset}: {what}");
        }
    };

    let mut buf: Vec<u8> = Vec::with_capacity(CHUNK);
    let mut base: u64 = 0; // file offset of buf[0]
    let mut encoded = Vec::new();
    let mut eof = false;
    let mut complete = false;
    while !eof {
        // Up to CHUNK more bytes, without zeroing a chunk first (`take` stops there).
        let n = (&mut *input)
            .take(CHUNK as u64)
            .read_to_end(&mut buf)
            .with_context(|| format!("reading {name}"))?;
        eof = n == 0;

        let ex = extract(&buf, base == 0);
        for e in &ex.errors {
            report(base + e.at as u64, &e.kind);
            dead_letter::write(Entry::skipped(
                &origin,
                base + e.at as u64,
                e.kind.reason(),
                &e.kind.to_string(),
                &buf[ex.skipped(e.at)],
            ));
        }
        complete |= ex.complete;
        // Written in parts of MAX_BATCH_EVENTS, as `run` does: a record of millions of
        // tuples never holds all of its events and their encodings at once.
        let mut failed: Option<std::io::Error> = None;
        let mut write = |mut part: flowgate_core::EventBatch| {
            if failed.is_none() {
                enricher.enrich(&mut part);
                encoded.clear();
                encoder.encode_batch(&part, &mut encoded);
                failed = out.write_all(&encoded).err();
            }
        };
        let mut batch = flowgate_core::EventBatch::new(origin.clone());
        for span in &ex.records {
            let offset = base + span.start as u64;
            flattener.flatten_record_in_parts(
                &buf[span.clone()],
                &mut batch,
                MAX_BATCH_EVENTS,
                &mut write,
                |p| {
                    report(offset, p);
                    if dead_letter::enabled() {
                        let record = &buf[span.clone()];
                        dead_letter::write(problem_entry(&origin, offset, p, record));
                    }
                },
            );
        }
        write(batch);
        if let Some(e) = failed {
            return Err(e.into());
        }

        let keep_from = if ex.complete { buf.len() } else { ex.consumed };
        buf.drain(..keep_from);
        base += keep_from as u64;
        if ex.complete {
            // Anything after the closing `]}` was reported by the extractor; stop here.
            break;
        }
    }
    if !complete {
        match buf.iter().position(|b| !b.is_ascii_whitespace()) {
            Some(i) => {
                let what = "truncated: the record starting here never ends";
                report(base + i as u64, &what);
                let offset = base + i as u64;
                let entry = Entry::skipped(&origin, offset, "record_unterminated", what, &buf[i..]);
                dead_letter::write(entry);
            }
            None => report(base, &"truncated: the document has no closing ]}"),
        }
    }
    if outcome.problems as usize > MAX_REPORTS {
        eprintln!(
            "flowgate: {name}: {} problems in all ({} shown)",
            outcome.problems, MAX_REPORTS
        );
    }
    out.flush()?;
    Ok(outcome)
}
