//! Checks shared by the fuzz targets: encode an event batch in every format, behind every
//! syslog header, with both framings, and assert that the framing is intact.

use flowgate_core::EventBatch;
use flowgate_sink::encode::{Encoder, Format, Framing, SyslogConfig, SyslogKind};

/// Every syslog header the sinks can put in front of a message.
pub const HEADERS: [SyslogKind; 3] = [SyslogKind::None, SyslogKind::Rfc5424, SyslogKind::Rfc3164];
pub const FORMATS: [Format; 3] = [Format::Cef, Format::Leef, Format::Json];

/// One encoder per format × header: built once per input (cheap), so that the output of an
/// input does not depend on the inputs before it.
pub struct Encoders {
    encoders: Vec<(Format, SyslogKind, Encoder, Encoder)>,
    newline: Vec<u8>,
    counted: Vec<u8>,
}

impl Default for Encoders {
    fn default() -> Self {
        Self::new()
    }
}

impl Encoders {
    pub fn new() -> Self {
        let mut encoders = Vec::new();
        for format in FORMATS {
            for kind in HEADERS {
                let header = || {
                    SyslogConfig {
                        kind: Some(kind),
                        // A fixed name: the machine's own is read from /proc otherwise.
                        hostname: "fuzz-host".into(),
                        ..SyslogConfig::default()
                    }
                    .build(SyslogKind::None)
                };
                encoders.push((
                    format,
                    kind,
                    Encoder::new(format, header(), Framing::Newline),
                    Encoder::new(format, header(), Framing::OctetCounting),
                ));
            }
        }
        Encoders {
            encoders,
            newline: Vec::new(),
            counted: Vec::new(),
        }
    }

    /// Encodes `batch` every way and checks the framing: exactly one `\n` per event with
    /// newline framing (none inside a message), octet counting that adds up to the same
    /// messages, and each bare JSON message a JSON object.
    pub fn check(&mut self, batch: &EventBatch) {
        let n = batch.events.len();
        for (format, kind, newline, counted) in &mut self.encoders {
            self.newline.clear();
            newline.encode_batch(batch, &mut self.newline);
            let what = || format!("{format:?} with syslog header {kind:?}");
            let lines: Vec<&[u8]> = match self.newline.strip_suffix(b"\n") {
                Some(body) => body.split(|b| *b == b'\n').collect(),
                None => Vec::new(),
            };
            assert_eq!(
                lines.len(),
                n,
                "{}: {n} events but {} newline-framed lines in {:?}",
                what(),
                lines.len(),
                String::from_utf8_lossy(&self.newline)
            );
            for line in &lines {
                assert!(!line.is_empty(), "{}: empty message", what());
                assert!(
                    !line.contains(&b'\r'),
                    "{}: raw CR inside a message: {:?}",
                    what(),
                    String::from_utf8_lossy(line)
                );
                assert!(
                    std::str::from_utf8(line).is_ok(),
                    "{}: message is not UTF-8: {:?}",
                    what(),
                    String::from_utf8_lossy(line)
                );
                if *format == Format::Json && *kind == SyslogKind::None {
                    if let Err(e) = serde_json::from_slice::<serde_json::Map<String, serde_json::Value>>(line) {
                        panic!(
                            "JSON message is not a JSON object ({e}): {:?}",
                            String::from_utf8_lossy(line)
                        );
                    }
                }
            }

            self.counted.clear();
            counted.encode_batch(batch, &mut self.counted);
            let mut rest = &self.counted[..];
            let mut i = 0;
            while !rest.is_empty() {
                let sp = rest
                    .iter()
                    .position(|b| *b == b' ')
                    .unwrap_or_else(|| panic!("{}: octet count without a space", what()));
                let len: usize = std::str::from_utf8(&rest[..sp])
                    .ok()
                    .and_then(|s| s.parse().ok())
                    .unwrap_or_else(|| panic!("{}: bad octet count {:?}", what(), &rest[..sp]));
                let msg = rest
                    .get(sp + 1..sp + 1 + len)
                    .unwrap_or_else(|| panic!("{}: octet count {len} past the end", what()));
                assert!(i < n, "{}: more octet-counted messages than events", what());
                assert_eq!(
                    msg, lines[i],
                    "{}: octet-counted message {i} differs from the newline-framed one",
                    what()
                );
                rest = &rest[sp + 1 + len..];
                i += 1;
            }
            assert_eq!(i, n, "{}: {i} octet-counted messages for {n} events", what());
        }
    }
}

/// Structural invariants of a batch: every event's group and every group's record exist;
/// the enrichment and summaries are empty or one per event.
pub fn check_batch(batch: &EventBatch) {
    for e in &batch.events {
        let g = batch
            .groups
            .get(e.group as usize)
            .unwrap_or_else(|| panic!("event group {} of {}", e.group, batch.groups.len()));
        assert!(
            (g.record as usize) < batch.records.len(),
            "group record {} of {}",
            g.record,
            batch.records.len()
        );
    }
    for (what, len) in [
        ("enrichment", batch.enrichment.len()),
        ("summaries", batch.summaries.len()),
    ] {
        assert!(
            len == 0 || len == batch.events.len(),
            "{len} {what} for {} events",
            batch.events.len()
        );
    }
}
