//! Incremental extraction of complete records from a growing `PT1H.json`.
//!
//! Network Watcher writes each blob as `{"records":[` + `{record}` + `,{record}`... + `]}`,
//! and appends by inserting new record blocks *before* the `]}` tail. So the bytes
//! before the old tail never change, and a reader that remembers the offset just after
//! the last record it delivered can resume there: what follows is either `,{record}` or
//! the tail. [`extract`] takes the bytes from that offset on and returns the complete
//! records in them and the new offset, without parsing the records themselves: it only
//! matches braces (aware of strings and escapes), which is what makes it cheap.

use memchr::{memchr2, memchr3};
use std::ops::Range;

const BOM: &[u8] = b"\xEF\xBB\xBF";

/// What [`extract`] found in a buffer.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Extracted {
    /// Complete records, as spans of the buffer (each starts with `{`, ends with `}`).
    pub records: Vec<Range<usize>>,
    /// Bytes of the buffer that are done with: the new checkpoint is `offset + consumed`.
    /// Always just after a record, the head, or skipped garbage; never inside a record.
    pub consumed: usize,
    /// Start of an incomplete record at the end of the buffer (wait for more bytes).
    pub partial: Option<usize>,
    /// The `]` that closes the record list was seen: the document is complete so far.
    pub complete: bool,
    /// Structural problems, each with its position in the buffer; the bytes were skipped.
    pub errors: Vec<ExtractError>,
}

impl Extracted {
    /// The bytes skipped for the error at `at`: up to the next record, or to where
    /// extraction stopped.
    pub fn skipped(&self, at: usize) -> Range<usize> {
        let end = self
            .records
            .iter()
            .map(|r| r.start)
            .find(|&s| s > at)
            .unwrap_or(self.consumed.max(self.partial.unwrap_or(0)));
        at..end.max(at)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExtractError {
    /// Position in the buffer.
    pub at: usize,
    pub kind: ExtractErrorKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExtractErrorKind {
    /// The document does not start with `{"records":[` (or a bare `[`).
    BadHead,
    /// A byte that cannot appear between records.
    UnexpectedByte(u8),
    /// Something other than `}` and whitespace after the closing `]`.
    TrailingData,
}

impl ExtractErrorKind {
    /// Short label for metrics and logs.
    pub fn reason(&self) -> &'static str {
        match self {
            ExtractErrorKind::BadHead => "bad_head",
            ExtractErrorKind::UnexpectedByte(_) => "unexpected_byte",
            ExtractErrorKind::TrailingData => "trailing_data",
        }
    }
}

impl std::fmt::Display for ExtractErrorKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ExtractErrorKind::BadHead => f.write_str("document does not start with {\"records\":["),
            ExtractErrorKind::UnexpectedByte(b) => {
                write!(f, "unexpected byte {:?} between records", *b as char)
            }
            ExtractErrorKind::TrailingData => f.write_str("data after the closing ]}"),
        }
    }
}

/// Extracts the complete records from `buf`, which holds a document's bytes from a
/// checkpointed offset on. `at_document_start` is true when that offset is 0 (the head,
/// and possibly a UTF-8 BOM, come first).
pub fn extract(buf: &[u8], at_document_start: bool) -> Extracted {
    let mut out = Extracted::default();
    let mut pos = 0;
    if at_document_start {
        match parse_head(buf) {
            Head::Complete(end) => {
                pos = end;
                out.consumed = end;
            }
            Head::Incomplete => return out,
            Head::Bad => {
                out.errors.push(ExtractError {
                    at: 0,
                    kind: ExtractErrorKind::BadHead,
                });
                pos = resync(buf, 0, &mut out);
            }
        }
    }
    let mut after_comma = false;
    while pos < buf.len() {
        pos = skip_ws(buf, pos);
        let Some(&b) = buf.get(pos) else { break };
        match b {
            b'{' => {
                let mut scanner = BraceScanner::default();
                match scanner.scan(&buf[pos..]) {
                    Some(len) => {
                        out.records.push(pos..pos + len);
                        pos += len;
                        out.consumed = pos;
                        after_comma = false;
                    }
                    None => {
                        out.partial = Some(pos);
                        break;
                    }
                }
            }
            b',' if !after_comma => {
                after_comma = true;
                pos += 1;
            }
            b']' => {
                out.complete = true;
                let rest = skip_ws(buf, pos + 1);
                let rest = if buf.get(rest) == Some(&b'}') {
                    skip_ws(buf, rest + 1)
                } else {
                    rest
                };
                if rest < buf.len() {
                    out.errors.push(ExtractError {
                        at: rest,
                        kind: ExtractErrorKind::TrailingData,
                    });
                }
                // The tail is not consumed: Azure inserts the next record before it.
                break;
            }
            other => {
                out.errors.push(ExtractError {
                    at: pos,
                    kind: ExtractErrorKind::UnexpectedByte(other),
                });
                pos = resync(buf, pos + 1, &mut out);
                after_comma = false;
            }
        }
    }
    out
}

/// Skips to the next `{` at or after `from` (or the end), marking the garbage consumed.
fn resync(buf: &[u8], from: usize, out: &mut Extracted) -> usize {
    let next = memchr::memchr(b'{', &buf[from.min(buf.len())..])
        .map(|i| from + i)
        .unwrap_or(buf.len());
    out.consumed = next;
    next
}

enum Head {
    Complete(usize),
    Incomplete,
    Bad,
}

/// Matches `BOM? ws '{' ws '"records"' ws ':' ws '['`, or a bare `BOM? ws '['`.
fn parse_head(buf: &[u8]) -> Head {
    let mut pos = if buf.starts_with(BOM) {
        BOM.len()
    } else if BOM.starts_with(buf) {
        return Head::Incomplete;
    } else {
        0
    };
    pos = skip_ws(buf, pos);
    match buf.get(pos) {
        None => return Head::Incomplete,
        Some(b'[') => return Head::Complete(pos + 1),
        Some(b'{') => pos += 1,
        Some(_) => return Head::Bad,
    }
    for token in [&b"\"records\""[..], b":", b"["] {
        pos = skip_ws(buf, pos);
        let rest = &buf[pos.min(buf.len())..];
        if rest.len() < token.len() {
            return if token.starts_with(rest) {
                Head::Incomplete
            } else {
                Head::Bad
            };
        }
        if !rest.starts_with(token) {
            return Head::Bad;
        }
        pos += token.len();
    }
    Head::Complete(pos)
}

fn skip_ws(buf: &[u8], mut pos: usize) -> usize {
    while let Some(b' ' | b'\n' | b'\r' | b'\t') = buf.get(pos) {
        pos += 1;
    }
    pos
}

/// Finds where a JSON object ends, across as many buffers as it takes.
///
/// Counts `{`/`}` outside strings; inside strings it only looks for the closing quote
/// and backslash escapes. It does not validate JSON: the parser does that afterwards.
#[derive(Debug, Default, Clone)]
pub struct BraceScanner {
    depth: u32,
    in_string: bool,
    escaped: bool,
}

impl BraceScanner {
    /// Feeds the next bytes; returns how many of them complete the object, if it ends here.
    pub fn scan(&mut self, buf: &[u8]) -> Option<usize> {
        let mut pos = 0;
        while pos < buf.len() {
            if self.escaped {
                self.escaped = false;
                pos += 1;
                continue;
            }
            if self.in_string {
                let i = memchr2(b'"', b'\\', &buf[pos..])?;
                pos += i;
                if buf[pos] == b'"' {
                    self.in_string = false;
                } else {
                    self.escaped = true;
                }
                pos += 1;
            } else {
                let i = memchr3(b'{', b'}', b'"', &buf[pos..])?;
                pos += i;
                match buf[pos] {
                    b'{' => self.depth += 1,
                    b'}' => {
                        self.depth = self.depth.saturating_sub(1);
                        if self.depth == 0 {
                            return Some(pos + 1);
                        }
                    }
                    _ => self.in_string = true,
                }
                pos += 1;
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOC: &str = r#"{"records":[{"a":1,"s":"x}{\"y"},
  {"b":{"c":[1,2,{"d":"\\"}]}}
 ,{"e":"]}"}]}"#;

    fn records(buf: &[u8], ex: &Extracted) -> Vec<String> {
        ex.records
            .iter()
            .map(|r| String::from_utf8(buf[r.clone()].to_vec()).unwrap())
            .collect()
    }

    #[test]
    fn whole_document() {
        let ex = extract(DOC.as_bytes(), true);
        assert_eq!(
            records(DOC.as_bytes(), &ex),
            [
                r#"{"a":1,"s":"x}{\"y"}"#,
                r#"{"b":{"c":[1,2,{"d":"\\"}]}}"#,
                r#"{"e":"]}"}"#
            ]
        );
        assert!(ex.complete);
        assert!(ex.errors.is_empty());
        assert_eq!(ex.partial, None);
        assert_eq!(&DOC[ex.consumed..], "]}");
    }

    /// Every split point: extracting the first part, then the rest from the returned
    /// offset, yields exactly the records of the whole document.
    #[test]
    fn every_split_point_yields_the_same_records() {
        let doc = DOC.as_bytes();
        let whole = records(doc, &extract(doc, true));
        for split in 0..=doc.len() {
            let first = extract(&doc[..split], true);
            assert!(first.errors.is_empty(), "split {split}: {:?}", first.errors);
            let mut got = records(doc, &first);
            let offset = first.consumed;
            let second = extract(&doc[offset..], offset == 0);
            assert!(second.errors.is_empty(), "split {split}");
            got.extend(records(&doc[offset..], &second));
            assert_eq!(got, whole, "split at {split}");
            assert!(second.complete);
        }
    }

    #[test]
    fn growth_in_the_middle_like_network_watcher() {
        let v1 = br#"{"records":[{"n":1}]}"#;
        let ex1 = extract(v1, true);
        assert_eq!(ex1.records.len(), 1);
        let v2 = br#"{"records":[{"n":1},{"n":2},{"n":3}]}"#;
        let ex2 = extract(&v2[ex1.consumed..], false);
        assert_eq!(
            records(&v2[ex1.consumed..], &ex2),
            [r#"{"n":2}"#, r#"{"n":3}"#]
        );
    }

    #[test]
    fn head_variants() {
        for doc in [
            &b"\xEF\xBB\xBF{\"records\":[{\"n\":1}]}"[..],
            b"{ \"records\" :\n [ {\"n\":1} ] }",
            b"[{\"n\":1}]",
        ] {
            let ex = extract(doc, true);
            assert_eq!(ex.records.len(), 1, "{:?}", String::from_utf8_lossy(doc));
            assert!(ex.complete && ex.errors.is_empty());
        }
        let ex = extract(b"{\"recor", true);
        assert_eq!((ex.consumed, ex.records.len(), ex.errors.len()), (0, 0, 0));
        let ex = extract(b"\xEF\xBB", true);
        assert_eq!((ex.consumed, ex.errors.len()), (0, 0));
        let ex = extract(b"{\"values\":[{\"n\":1}]}", true);
        assert_eq!(ex.errors[0].kind, ExtractErrorKind::BadHead);
    }

    #[test]
    fn garbage_between_records_is_reported_and_skipped() {
        let doc = br#"{"records":[{"n":1},x,{"n":2},,{"n":3}]} junk"#;
        let ex = extract(doc, true);
        assert_eq!(
            records(doc, &ex),
            [r#"{"n":1}"#, r#"{"n":2}"#, r#"{"n":3}"#]
        );
        let kinds: Vec<_> = ex.errors.iter().map(|e| (e.at, e.kind)).collect();
        assert_eq!(
            kinds,
            [
                (20, ExtractErrorKind::UnexpectedByte(b'x')),
                (30, ExtractErrorKind::UnexpectedByte(b',')),
                (41, ExtractErrorKind::TrailingData),
            ]
        );
    }

    #[test]
    fn partial_record_waits() {
        let doc = br#"{"records":[{"n":1},{"n":"2"#;
        let ex = extract(doc, true);
        assert_eq!(ex.records.len(), 1);
        assert_eq!(ex.partial, Some(20));
        assert_eq!(ex.consumed, 19);
        assert!(!ex.complete);
    }

    #[test]
    fn scanner_resumes_across_buffers() {
        let obj = br#"{"a":"}\"{","b":{"c":"\\"}}"#;
        for split in 0..obj.len() {
            let mut s = BraceScanner::default();
            let first = s.scan(&obj[..split]);
            assert_eq!(first, None, "split {split}");
            assert_eq!(
                s.scan(&obj[split..]),
                Some(obj.len() - split),
                "split {split}"
            );
        }
    }
}
