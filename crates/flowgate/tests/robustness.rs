//! The extractor and flattener on real documents: every split point, and corrupted input.

use flowgate::convert::convert_input;
use flowgate::generate::{document, Generator, Rng, Schema, Target};
use flowgate_sink::encode::{Encoder, Format, Framing};
use flowgate_source::extract::extract;

fn fixtures() -> Vec<Vec<u8>> {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/fixtures");
    let mut docs: Vec<Vec<u8>> = ["nsg-v1", "nsg-v2", "vnet", "nsg-edge"]
        .iter()
        .map(|n| std::fs::read(format!("{dir}/{n}.PT1H.json")).unwrap())
        .collect();
    for schema in [Schema::NsgV2, Schema::VNet] {
        let (doc, _) = document(
            &mut Generator::new(schema, 3, Target::default()),
            60_000,
            1_709_546_400,
        );
        docs.push(doc.into_bytes());
    }
    docs
}

/// Extracting the first `split` bytes and then the rest from the returned offset yields
/// the same records, byte for byte, as extracting the whole document: at every split point.
#[test]
fn every_split_point_of_real_documents() {
    for doc in fixtures() {
        let whole: Vec<&[u8]> = extract(&doc, true)
            .records
            .into_iter()
            .map(|r| &doc[r])
            .collect();
        assert!(!whole.is_empty());
        // Every split point of the small fixtures; a prime stride through the generated
        // documents (the test is quadratic in the document size).
        let stride = if doc.len() > 10_000 { 97 } else { 1 };
        for split in (0..=doc.len()).step_by(stride) {
            let first = extract(&doc[..split], true);
            let offset = first.consumed;
            let second = extract(&doc[offset..], offset == 0);
            assert!(
                first.errors.is_empty() && second.errors.is_empty(),
                "split {split}"
            );
            let got: Vec<&[u8]> = first
                .records
                .into_iter()
                .map(|r| &doc[r])
                .chain(
                    second
                        .records
                        .into_iter()
                        .map(|r| &doc[offset + r.start..offset + r.end]),
                )
                .collect();
            assert_eq!(got, whole, "split {split}");
        }
    }
}

/// Every fixture cut at every byte, through `convert` as the command runs it: no panic, a
/// problem reported unless the cut leaves the document whole, and exactly the events of
/// the records complete before the cut, in order (so every line is a whole event).
#[test]
fn every_truncation_of_every_fixture_delivers_the_complete_records_before_it() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/fixtures");
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with(".PT1H.json"))
        .collect();
    files.sort();
    assert!(files.len() >= 5, "{files:?}");
    let convert = |input: &[u8]| {
        let mut encoder = Encoder::new(Format::Cef, None, Framing::Newline);
        let mut out = Vec::new();
        let outcome = convert_input(
            "cut",
            &Default::default(),
            &mut &input[..],
            &mut encoder,
            &mut out,
        )
        .expect("only I/O errors are errors");
        (String::from_utf8(out).expect("UTF-8 out"), outcome.problems)
    };
    let mut cuts = 0;
    for file in &files {
        let doc = std::fs::read(file).unwrap();
        let (whole, _) = convert(&doc);
        let whole: Vec<&str> = whole.lines().collect();
        // Where each record ends, and how many events it makes.
        let mut ends: Vec<(usize, usize)> = Vec::new();
        for span in extract(&doc, true).records {
            let mut one = b"{\"records\":[".to_vec();
            one.extend_from_slice(&doc[span.clone()]);
            one.extend_from_slice(b"]}");
            ends.push((span.end, convert(&one).0.lines().count()));
        }
        assert_eq!(ends.iter().map(|e| e.1).sum::<usize>(), whole.len());
        for cut in 0..doc.len() {
            let (out, problems) = convert(&doc[..cut]);
            let complete: usize = ends.iter().filter(|e| e.0 <= cut).map(|e| e.1).sum();
            let got: Vec<&str> = out.lines().collect();
            assert_eq!(got, whole[..complete], "{}: cut at {cut}", file.display());
            assert!(out.is_empty() || out.ends_with('\n'));
            // Unreported only when nothing but the document's closing `}` is cut off.
            let trailing_only = doc[cut..]
                .iter()
                .all(|b| b.is_ascii_whitespace() || *b == b'}');
            assert!(
                problems > 0 || trailing_only,
                "{}: cut at {cut} not reported",
                file.display()
            );
            cuts += 1;
        }
    }
    assert!(cuts > 5_000, "{cuts}");
}

/// Seeded corruption (changed, deleted and inserted bytes, truncation) never panics, and
/// every line that comes out is still one line.
#[test]
fn corrupted_documents_never_panic() {
    let mut rng = Rng::new(42);
    let specials = [
        b'"', b'\\', b'{', b'}', b'[', b']', b',', b'|', b'=', b'\n', 0xff, 0,
    ];
    for doc in fixtures() {
        for _ in 0..60 {
            let mut bad = doc.clone();
            for _ in 0..rng.range(1, 6) {
                let at = rng.range(0, bad.len() as u64) as usize;
                match rng.range(0, 4) {
                    0 => bad[at] = *rng.pick(&specials),
                    1 => {
                        bad.remove(at);
                    }
                    2 => bad.insert(at, *rng.pick(&specials)),
                    _ => bad.truncate(at.max(1)),
                }
            }
            for format in [Format::Cef, Format::Leef, Format::Json] {
                let mut encoder = Encoder::new(format, None, Framing::Newline);
                let mut out = Vec::new();
                convert_input(
                    "fuzz",
                    &Default::default(),
                    &mut bad.as_slice(),
                    &mut encoder,
                    &mut out,
                )
                .unwrap();
                assert!(!out.contains(&b'\r'), "no raw CR can reach the output");
            }
        }
    }
}

/// One batch of events whose rule is 4,096 bytes of control characters (each escaped
/// in the output) must not make the encoder reserve, for the next batch, its length
/// times that batch's events.
#[test]
fn the_encoders_reservation_is_clamped_after_a_batch_of_huge_messages() {
    use flowgate_core::{EventBatch, Origin};
    use flowgate_transform::Flattener;
    let record = |rule: &str, tuples: usize| {
        let list: Vec<String> = (0..tuples)
            .map(|i| format!("\"1709546400,10.0.0.4,10.0.0.5,{i},443,T,I,A,B,,,,\""))
            .collect();
        format!(
            r#"{{"time":"t","resourceId":"/SUBSCRIPTIONS/S/RESOURCEGROUPS/RG/PROVIDERS/MICROSOFT.NETWORK/NETWORKSECURITYGROUPS/NSG","properties":{{"Version":2,"flows":[{{"rule":"{rule}","flows":[{{"mac":"000D3AF87856","flowTuples":[{}]}}]}}]}}}}"#,
            list.join(",")
        )
    };
    let batch_of = |json: String| {
        let mut batch = EventBatch::new(std::sync::Arc::new(Origin {
            source: "s".into(),
            path: "p".into(),
            subscription_tag: None,
        }));
        Flattener::new().flatten_record(json.as_bytes(), &mut batch, |p| panic!("{p}"));
        batch
    };
    let huge = batch_of(record(&"\\u0001".repeat(4096), 1));
    let normal = batch_of(record("R", 20_000));
    for format in [Format::Cef, Format::Leef, Format::Json] {
        let mut encoder = Encoder::new(format, None, Framing::Newline);
        let mut out = Vec::new();
        encoder.encode_batch(&huge, &mut out);
        let per_huge_event = out.len();
        assert!(per_huge_event > 4096, "{format:?}: {per_huge_event}");
        let mut out = Vec::new();
        encoder.encode_batch(&normal, &mut out);
        assert!(
            out.capacity() < (8 << 20) + 2 * out.len(),
            "{format:?}: reserved {} for {} bytes ({} unclamped)",
            out.capacity(),
            out.len(),
            20_000 * per_huge_event
        );
    }
}
