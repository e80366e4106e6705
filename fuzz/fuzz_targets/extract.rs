//! `flowgate_source::extract::extract` on arbitrary bytes, from the document start and
//! from a checkpoint: no panic, every record span inside the input, in order and not
//! overlapping, `consumed` never inside a record, and resuming from `consumed` after a
//! split yields the records of the whole (when nothing was reported as garbage).
#![no_main]

use flowgate_source::extract::{extract, BraceScanner, Extracted};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for at_start in [true, false] {
        let whole = extract(data, at_start);
        check(data, &whole);
        if at_start {
            for split in [data.len() / 2, data.len() / 3, data.len().saturating_sub(1)] {
                check_split(data, &whole, split);
            }
        }
    }
});

fn check(buf: &[u8], ex: &Extracted) {
    let mut prev_end = 0;
    for r in &ex.records {
        assert!(
            r.start < r.end && r.end <= buf.len(),
            "record {r:?} outside the {}-byte input",
            buf.len()
        );
        assert!(r.start >= prev_end, "record {r:?} overlaps or precedes the one ending at {prev_end}");
        assert_eq!(buf[r.start], b'{', "record {r:?} does not start with {{");
        assert_eq!(buf[r.end - 1], b'}', "record {r:?} does not end with }}");
        // The scanner agrees when fed the record in two pieces.
        let rec = &buf[r.clone()];
        let mid = rec.len() / 2;
        let mut s = BraceScanner::default();
        assert_eq!(s.scan(&rec[..mid]), None, "record {r:?} ends before its end");
        assert_eq!(s.scan(&rec[mid..]), Some(rec.len() - mid), "record {r:?} split at {mid}");
        prev_end = r.end;
    }
    assert!(ex.consumed <= buf.len(), "consumed {} of {}", ex.consumed, buf.len());
    assert!(
        ex.consumed >= prev_end,
        "consumed {} before the end of the last record ({prev_end})",
        ex.consumed
    );
    for r in &ex.records {
        assert!(
            !(r.start < ex.consumed && ex.consumed < r.end),
            "consumed {} inside record {r:?}",
            ex.consumed
        );
    }
    if let Some(p) = ex.partial {
        assert!(p < buf.len() && buf[p] == b'{', "partial {p} is not at a {{");
        assert!(p >= prev_end && p >= ex.consumed, "partial {p} before consumed {}", ex.consumed);
    }
    for e in &ex.errors {
        assert!(e.at <= buf.len(), "error {e:?} past the end");
        let _ = (e.kind.reason(), e.kind.to_string());
    }
}

/// Extract `buf[..split]`, then the rest from its `consumed`, as the source does when the
/// blob grows: the two together hold the records of the whole, when no part saw garbage.
fn check_split(buf: &[u8], whole: &Extracted, split: usize) {
    let first = extract(&buf[..split], true);
    check(&buf[..split], &first);
    let offset = first.consumed;
    let second = extract(&buf[offset..], offset == 0);
    check(&buf[offset..], &second);
    if !(whole.errors.is_empty() && first.errors.is_empty() && second.errors.is_empty()) {
        return;
    }
    let mut got: Vec<_> = first.records.clone();
    got.extend(second.records.iter().map(|r| r.start + offset..r.end + offset));
    assert_eq!(got, whole.records, "split at {split}, resumed at {offset}");
    assert_eq!(second.complete, whole.complete, "split at {split}: complete");
}
