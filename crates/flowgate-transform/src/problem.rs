//! Why a record or a tuple was skipped.

use std::fmt;

/// A whole record was skipped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RecordErrorKind {
    /// Not valid JSON, not UTF-8, or a field of the wrong type.
    InvalidJson,
    /// Neither an NSG (`properties.flows`) nor a VNet (`flowRecords`) record.
    UnknownSchema,
    /// A schema version flowgate does not know; never guessed.
    UnknownVersion,
    /// A context string (rule, resource id, ...) longer than [`crate::flatten::MAX_FIELD_BYTES`].
    FieldTooLong,
}

/// One tuple was skipped; its neighbours were not.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TupleErrorKind {
    NotAString,
    TooLong,
    FieldCount,
    Timestamp,
    Address,
    Port,
    Protocol,
    Direction,
    Action,
    State,
    Encryption,
    Counter,
}

impl RecordErrorKind {
    pub const ALL: [RecordErrorKind; 4] = [
        RecordErrorKind::InvalidJson,
        RecordErrorKind::UnknownSchema,
        RecordErrorKind::UnknownVersion,
        RecordErrorKind::FieldTooLong,
    ];

    /// The `reason` label of `flowgate_records_failed_total`.
    pub fn reason(self) -> &'static str {
        match self {
            RecordErrorKind::InvalidJson => "invalid_json",
            RecordErrorKind::UnknownSchema => "unknown_schema",
            RecordErrorKind::UnknownVersion => "unknown_version",
            RecordErrorKind::FieldTooLong => "field_too_long",
        }
    }
}

impl TupleErrorKind {
    pub const ALL: [TupleErrorKind; 12] = [
        TupleErrorKind::NotAString,
        TupleErrorKind::TooLong,
        TupleErrorKind::FieldCount,
        TupleErrorKind::Timestamp,
        TupleErrorKind::Address,
        TupleErrorKind::Port,
        TupleErrorKind::Protocol,
        TupleErrorKind::Direction,
        TupleErrorKind::Action,
        TupleErrorKind::State,
        TupleErrorKind::Encryption,
        TupleErrorKind::Counter,
    ];

    /// The `reason` label of `flowgate_tuples_failed_total`.
    pub fn reason(self) -> &'static str {
        match self {
            TupleErrorKind::NotAString => "not_a_string",
            TupleErrorKind::TooLong => "too_long",
            TupleErrorKind::FieldCount => "field_count",
            TupleErrorKind::Timestamp => "timestamp",
            TupleErrorKind::Address => "address",
            TupleErrorKind::Port => "port",
            TupleErrorKind::Protocol => "protocol",
            TupleErrorKind::Direction => "direction",
            TupleErrorKind::Action => "action",
            TupleErrorKind::State => "state",
            TupleErrorKind::Encryption => "encryption",
            TupleErrorKind::Counter => "counter",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProblemKind {
    Record(RecordErrorKind),
    Tuple(TupleErrorKind),
}

impl ProblemKind {
    pub fn reason(self) -> &'static str {
        match self {
            ProblemKind::Record(k) => k.reason(),
            ProblemKind::Tuple(k) => k.reason(),
        }
    }
}

/// Something skipped inside one record, with enough detail to find it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub kind: ProblemKind,
    /// Index of the tuple inside the record (tuple problems only).
    pub tuple: Option<usize>,
    /// Human-readable detail: the parser's message or the offending value (shortened).
    pub detail: String,
    /// The offending tuple as it was (tuple problems; its first MiB), for the dead-letter
    /// file. A record problem's bytes are the record's, which the caller has.
    pub raw: Option<Box<str>>,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.kind, self.tuple) {
            (ProblemKind::Record(k), _) => {
                write!(f, "record skipped ({}): {}", k.reason(), self.detail)
            }
            (ProblemKind::Tuple(k), Some(i)) => {
                write!(f, "tuple #{i} skipped ({}): {}", k.reason(), self.detail)
            }
            (ProblemKind::Tuple(k), None) => {
                write!(f, "tuple skipped ({}): {}", k.reason(), self.detail)
            }
        }
    }
}

/// Shortens untrusted text for a log line: at most 80 characters, control characters escaped.
pub(crate) fn shorten(s: &str) -> String {
    let mut out: String = s.chars().take(80).flat_map(char::escape_debug).collect();
    if s.chars().nth(80).is_some() {
        out.push('…');
    }
    out
}
