//! The dead-letter file: the raw bytes of every record, tuple or stretch between records
//! that could not be parsed, with where they came from and why, one JSON object per line.
//! Malformed data is still counted, logged once and skipped; this keeps a copy that an
//! operator can look at later, so that nothing is lost silently.
//!
//! One file per process, installed at start-up ([`install`]); without it [`write`] does
//! nothing. Entries are written when the problem is found, before the checkpoint that
//! passes them moves: a crash in between writes them again when the data is read again
//! (at least once, like delivery). Writes are flushed, not synced.

use crate::metric_names as m;
use crate::Origin;
use base64::Engine;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};
use std::time::{SystemTime, UNIX_EPOCH};

/// What an entry holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum What {
    /// A whole record that could not be flattened.
    Record,
    /// One flow tuple of a record.
    Tuple,
    /// Bytes between records (or a record too large or never closed), skipped by the
    /// extractor.
    Bytes,
}

impl What {
    fn as_str(self) -> &'static str {
        match self {
            What::Record => "record",
            What::Tuple => "tuple",
            What::Bytes => "bytes",
        }
    }
}

/// One malformed piece of input.
#[derive(Debug, Clone, Copy)]
pub struct Entry<'a> {
    pub source: &'a str,
    /// The object (blob name or file path).
    pub object: &'a str,
    /// Byte offset in the object: of the bytes, or of the record holding the tuple.
    pub offset: u64,
    pub what: What,
    /// The tuple's index in its record.
    pub tuple: Option<usize>,
    /// The metric reason (`invalid_json`, `bad_protocol`, ...).
    pub reason: &'a str,
    /// The parser's message.
    pub detail: &'a str,
    pub data: &'a [u8],
}

impl<'a> Entry<'a> {
    /// Bytes of `origin`'s object, at `offset`, that the extractor skipped.
    pub fn skipped(
        origin: &'a Origin,
        offset: u64,
        reason: &'a str,
        detail: &'a str,
        data: &'a [u8],
    ) -> Entry<'a> {
        Entry {
            source: &origin.source,
            object: &origin.path,
            offset,
            what: What::Bytes,
            tuple: None,
            reason,
            detail,
            data,
        }
    }
}

/// `[dead_letter]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetterConfig {
    pub path: PathBuf,
    /// The file grows to this size at most; entries past it are counted as dropped.
    pub max_file_bytes: u64,
    /// Bytes of one entry's data kept at most (its full length is written too).
    pub max_entry_bytes: usize,
}

struct DeadLetters {
    config: DeadLetterConfig,
    file: Mutex<(File, u64)>,
}

static DEAD_LETTERS: OnceLock<DeadLetters> = OnceLock::new();

/// Opens (creates, mode 0640, appending) the dead-letter file for the whole process.
pub fn install(config: DeadLetterConfig) -> std::io::Result<()> {
    let file = open(&config.path)?;
    let size = file.metadata()?.len();
    let _ = DEAD_LETTERS.set(DeadLetters {
        config,
        file: Mutex::new((file, size)),
    });
    Ok(())
}

fn open(path: &Path) -> std::io::Result<File> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o640)
        .open(path)
}

/// Whether a dead-letter file is installed.
pub fn enabled() -> bool {
    DEAD_LETTERS.get().is_some()
}

/// Appends `entry`, if a dead-letter file is installed. A write that fails or would pass
/// `max_file_bytes` is counted as dropped; it never stops the pipeline.
pub fn write(entry: Entry<'_>) {
    let Some(dl) = DEAD_LETTERS.get() else {
        return;
    };
    let line = format_entry(&entry, dl.config.max_entry_bytes, unix_ms());
    let mut file = dl.file.lock().unwrap_or_else(|p| p.into_inner());
    let outcome = if file.1 + line.len() as u64 > dl.config.max_file_bytes {
        "dropped"
    } else if file.0.write_all(line.as_bytes()).is_ok() {
        file.1 += line.len() as u64;
        "written"
    } else {
        "dropped"
    };
    metrics::counter!(m::DEAD_LETTERS_TOTAL, "what" => entry.what.as_str(), "outcome" => outcome)
        .increment(1);
}

/// One JSON line. The data is a string when it is UTF-8, else base64 (`data_base64`).
pub fn format_entry(entry: &Entry<'_>, max_data: usize, now_ms: u64) -> String {
    let mut cut = entry.data.len().min(max_data);
    let text = loop {
        // A cut inside a UTF-8 character: back off to its start.
        match std::str::from_utf8(&entry.data[..cut]) {
            Ok(t) => break Some(t),
            Err(e) if e.error_len().is_none() && cut - e.valid_up_to() < 4 => cut = e.valid_up_to(),
            Err(_) => break None,
        }
    };
    let mut line = String::with_capacity(256 + cut * 4 / 3);
    line.push_str("{\"time_ms\":");
    line.push_str(&now_ms.to_string());
    for (key, value) in [
        ("source", entry.source),
        ("object", entry.object),
        ("what", entry.what.as_str()),
        ("reason", entry.reason),
        ("detail", entry.detail),
    ] {
        line.push_str(",\"");
        line.push_str(key);
        line.push_str("\":");
        line.push_str(&json_string(value));
    }
    line.push_str(",\"offset\":");
    line.push_str(&entry.offset.to_string());
    if let Some(t) = entry.tuple {
        line.push_str(",\"tuple\":");
        line.push_str(&t.to_string());
    }
    line.push_str(",\"length\":");
    line.push_str(&entry.data.len().to_string());
    match text {
        Some(t) => {
            line.push_str(",\"data\":");
            line.push_str(&json_string(t));
        }
        None => {
            cut = entry.data.len().min(max_data);
            line.push_str(",\"data_base64\":\"");
            line.push_str(&base64::engine::general_purpose::STANDARD.encode(&entry.data[..cut]));
            line.push('"');
        }
    }
    if cut < entry.data.len() {
        line.push_str(",\"truncated\":true");
    }
    line.push_str("}\n");
    line
}

fn json_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 || c == '\u{2028}' || c == '\u{2029}' => {
                out.push_str(&format!("\\u{:04x}", c as u32))
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(data: &[u8]) -> Entry<'_> {
        Entry {
            source: "s",
            object: "a/\"b\"\n.json",
            offset: 42,
            what: What::Tuple,
            tuple: Some(3),
            reason: "bad_protocol",
            detail: "protocol X",
            data,
        }
    }

    #[test]
    fn entries_are_one_json_line_each_with_the_bytes_kept() {
        let line = format_entry(&entry(b"1,2\n3|\"x\""), 1024, 7);
        assert_eq!(line.matches('\n').count(), 1, "{line}");
        assert!(line.ends_with("}\n"));
        assert_eq!(
            line,
            "{\"time_ms\":7,\"source\":\"s\",\"object\":\"a/\\\"b\\\"\\n.json\",\"what\":\"tuple\",\"reason\":\"bad_protocol\",\"detail\":\"protocol X\",\"offset\":42,\"tuple\":3,\"length\":9,\"data\":\"1,2\\n3|\\\"x\\\"\"}\n"
        );
        // Not UTF-8: base64, so the bytes survive exactly.
        let line = format_entry(&entry(&[0xff, 0x00, b'a']), 1024, 7);
        assert!(line.contains("\"data_base64\":\"/wBh\""), "{line}");
        // Cut to the limit, never inside a character.
        let line = format_entry(&entry("aé".as_bytes()), 2, 7);
        assert!(
            line.contains("\"length\":3,\"data\":\"a\",\"truncated\":true"),
            "{line}"
        );
    }
}
