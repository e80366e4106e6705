//! `flowgate run` on a followed directory: growth, restarts, crashes, rewrites, bad data.

use crate::support::{checkpoint_offsets, converted_as, fixture, flowgate, wait_until, Instance};
use flowgate::generate::{Generator, Schema, Target};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

const BLOB_DIR: &str = "resourceId=/SUBSCRIPTIONS/5A2F6C1E-8B3D-4E7A-9C2B-0D1E2F3A4B5C/RESOURCEGROUPS/PROD-NETWORK-RG/PROVIDERS/MICROSOFT.NETWORK/NETWORKSECURITYGROUPS/WEB-TIER-NSG/y=2024/m=03/d=04/h=10/m=00/macAddress=000D3A8F7856";

/// A followed directory with the container's layout, and flowgate writing to a file.
struct Harness {
    fg: Instance,
}

impl std::ops::Deref for Harness {
    type Target = Instance;
    fn deref(&self) -> &Instance {
        &self.fg
    }
}

impl std::ops::DerefMut for Harness {
    fn deref_mut(&mut self) -> &mut Instance {
        &mut self.fg
    }
}

impl Harness {
    fn new(read_chunk_bytes: usize) -> Harness {
        let fg = Instance::new();
        std::fs::create_dir_all(fg.path("logs").join(BLOB_DIR)).unwrap();
        let config = format!(
            r#"
[sources.test]
type = "local"
path = "{logs}"
poll_interval_secs = 0.1
read_chunk_bytes = {read_chunk_bytes}

[sinks.file]
type = "file"
path = "{out}"

[checkpoints]
path = "{cp}"

[pipeline]
channel_capacity = 2
drain_timeout_secs = 10
"#,
            logs = fg.path("logs").display(),
            out = fg.path("out.cef").display(),
            cp = fg.path("cp.redb").display(),
        );
        std::fs::write(fg.path("flowgate.toml"), config).unwrap();
        Harness { fg }
    }

    /// Sets the source's `start_at`.
    fn start_at(&self, value: &str) {
        let config = std::fs::read_to_string(self.path("flowgate.toml")).unwrap();
        let config = config.replace(
            "poll_interval_secs = 0.1",
            &format!("poll_interval_secs = 0.1\nstart_at = \"{value}\""),
        );
        std::fs::write(self.path("flowgate.toml"), config).unwrap();
    }

    fn blob(&self) -> PathBuf {
        self.path("logs").join(BLOB_DIR).join("PT1H.json")
    }
}

/// A growing PT1H.json, written the way Network Watcher commits it: each new record goes
/// in before the `]}` tail, and the file is replaced atomically (temporary file + rename,
/// as a sync tool would).
pub(crate) struct GrowingBlob {
    generator: Generator,
    records: Vec<String>,
    pub(crate) tuples: Vec<usize>,
    minute: u64,
}

impl GrowingBlob {
    pub(crate) fn new(seed: u64) -> Self {
        GrowingBlob {
            generator: Generator::new(Schema::NsgV2, seed, Target::default()),
            records: Vec::new(),
            tuples: Vec::new(),
            minute: 0,
        }
    }

    pub(crate) fn add_records(&mut self, n: usize) {
        for _ in 0..n {
            self.minute += 1;
            let mut rec = String::new();
            let n = self
                .generator
                .record(1_709_546_400 + 60 * self.minute, &mut rec);
            self.records.push(rec);
            self.tuples.push(n);
        }
    }

    fn document(&self) -> String {
        format!("{{\"records\":[{}]}}", self.records.join(","))
    }

    pub(crate) fn write_to(&self, path: &Path) {
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, self.document()).unwrap();
        std::fs::rename(&tmp, path).unwrap();
    }

    /// What `flowgate convert` makes of the current document: the expected output.
    pub(crate) fn expected(&self, dir: &Path) -> Vec<String> {
        let file = dir.join("expected.json");
        std::fs::write(&file, self.document()).unwrap();
        // What the service sends for this source ("test" in the harness's config).
        converted_as(&file, "test")
    }
}

#[test]
fn follows_growth_and_resumes_exactly_once() {
    let mut h = Harness::new(1 << 20);
    let mut blob = GrowingBlob::new(11);
    blob.add_records(2);
    blob.write_to(&h.blob());
    h.start();
    let expected = blob.expected(h.dir.path());
    h.wait_for_lines(expected.len());

    blob.add_records(1);
    blob.write_to(&h.blob());
    let expected = blob.expected(h.dir.path());
    h.wait_for_lines(expected.len());
    h.stop();
    assert_eq!(h.output(), expected, "every tuple once, in order");

    let offsets = checkpoint_offsets(h.path("flowgate.toml").to_str().unwrap());
    let offset = blob.document().len() as u64 - 2; // just after the last record, before `]}`
    assert!(offsets.contains(&offset), "{offsets:?}");

    // Grows while flowgate is down: after the restart only the new record is sent.
    blob.add_records(2);
    blob.write_to(&h.blob());
    h.start();
    let expected = blob.expected(h.dir.path());
    h.wait_for_lines(expected.len());
    std::thread::sleep(Duration::from_millis(500));
    h.stop();
    assert_eq!(
        h.output(),
        expected,
        "no duplicates and nothing lost across the restart"
    );
}

#[test]
fn kill_9_mid_stream_loses_nothing() {
    // A read chunk smaller than any record: every batch is exactly one record.
    let mut h = Harness::new(4096);
    let mut blob = GrowingBlob::new(12);
    blob.add_records(150);
    blob.write_to(&h.blob());
    let expected = blob.expected(h.dir.path());
    h.start();
    h.wait_for_lines(expected.len() / 5);
    h.kill9();
    assert!(h.output().len() < expected.len(), "killed mid-stream");
    h.start();
    h.wait_for_lines(expected.len());
    std::thread::sleep(Duration::from_millis(500));
    h.stop();

    let got = h.output();
    let mut got_counts: HashMap<&str, usize> = HashMap::new();
    for l in &got {
        *got_counts.entry(l).or_default() += 1;
    }
    let mut want_counts: HashMap<&str, usize> = HashMap::new();
    for l in &expected {
        *want_counts.entry(l).or_default() += 1;
    }
    for (line, n) in &want_counts {
        assert!(
            got_counts.get(line).copied().unwrap_or(0) >= *n,
            "lost: {line}"
        );
    }
    // A line cut by the kill is cut off the file at the restart: none is torn.
    let torn = got
        .iter()
        .filter(|l| !want_counts.contains_key(l.as_str()))
        .count();
    assert_eq!(torn, 0, "lines that were never sent");
    // Only batches not yet in a stored checkpoint at the kill come twice. In flight: two
    // channels of capacity 2 plus one batch in each of the source, transform and sink (7).
    // While one checkpoint commit is being fsynced, the sink can deliver all of those, and
    // their acks wait for the next commit (7 more), plus the batch being stored: 15
    // one-record batches at most.
    let duplicates = got.len() - torn - expected.len();
    let bound = 15 * blob.tuples.iter().max().unwrap();
    assert!(
        duplicates <= bound,
        "{duplicates} duplicates, more than {bound}"
    );
}

#[test]
fn a_rewritten_file_is_read_again_from_the_start() {
    let mut h = Harness::new(1 << 20);
    let mut first = GrowingBlob::new(13);
    first.add_records(2);
    first.write_to(&h.blob());
    h.start();
    let expected_first = first.expected(h.dir.path());
    h.wait_for_lines(expected_first.len());

    // Same path, other content (longer): the anchor no longer matches.
    let mut second = GrowingBlob::new(14);
    second.add_records(4);
    second.write_to(&h.blob());
    let expected_second = second.expected(h.dir.path());
    h.wait_for_lines(expected_first.len() + expected_second.len());
    h.stop();
    assert_eq!(h.output()[expected_first.len()..], expected_second[..]);
    assert!(h.log().contains("rewritten"), "{}", h.log());
}

#[test]
fn a_finished_blob_rewritten_to_the_same_length_is_read_again() {
    let mut h = Harness::new(1 << 20);
    let mut blob = GrowingBlob::new(16);
    blob.add_records(2);
    blob.write_to(&h.blob());
    let first = blob.expected(h.dir.path());
    h.start();
    h.wait_for_lines(first.len());
    // Several polls see it finished (read to its closing `]}`).
    std::thread::sleep(Duration::from_millis(500));
    // The last counter of the last tuple changed: the same length, another version.
    let mut doc = blob.document().into_bytes();
    let at = doc.windows(2).rposition(|w| w == b"\"]").unwrap() - 1;
    assert!(doc[at].is_ascii_digit(), "a counter ends the last tuple");
    doc[at] = if doc[at] == b'7' { b'8' } else { b'7' };
    let tmp = h.blob().with_extension("tmp");
    std::fs::write(&tmp, &doc).unwrap();
    std::fs::rename(&tmp, h.blob()).unwrap();
    let rewritten = h.dir.path().join("rewritten.json");
    std::fs::write(&rewritten, &doc).unwrap();
    let second = converted_as(&rewritten, "test");
    assert_ne!(first.last(), second.last());
    h.wait_for_lines(first.len() + second.len());
    h.stop();
    assert_eq!(h.output()[first.len()..], second[..]);
}

#[test]
fn a_malformed_record_is_logged_with_its_offset_and_skipped() {
    let mut h = Harness::new(1 << 20);
    std::fs::copy(fixture("bad.PT1H.json"), h.blob()).unwrap();
    h.start();
    h.wait_for_lines(3);
    std::thread::sleep(Duration::from_millis(500));
    h.stop();
    assert_eq!(h.output().len(), 3, "the good tuples around the bad ones");
    let log = h.log();
    assert!(log.contains("record skipped (unknown_version)"), "{log}");
    assert!(log.contains("offset=594"), "{log}");
    assert!(log.contains("macAddress=000D3A8F7856/PT1H.json"), "{log}");
}

#[test]
fn malformed_records_tuples_and_bytes_go_to_the_dead_letter_file_as_they_were() {
    let mut h = Harness::new(1 << 20);
    let dead = h.path("dead-letter.jsonl");
    let config = std::fs::read_to_string(h.path("flowgate.toml")).unwrap();
    std::fs::write(
        h.path("flowgate.toml"),
        format!("{config}\n[dead_letter]\npath = \"{}\"\n", dead.display()),
    )
    .unwrap();
    // The fixture's bad records and tuples, and garbage between two records.
    let text = std::fs::read_to_string(fixture("bad.PT1H.json")).unwrap();
    let at = text.find("\n{\"time\":123").unwrap() + 1;
    let input = format!("{}@@garbage|=\\@@\n{}", &text[..at], &text[at..]);
    std::fs::write(h.blob(), &input).unwrap();
    h.start();
    h.wait_for_lines(3);
    assert!(wait_until(Duration::from_secs(10), || {
        std::fs::read_to_string(&dead).is_ok_and(|d| d.lines().count() >= 7)
    }));
    std::thread::sleep(Duration::from_millis(500));
    h.stop();
    assert_eq!(h.output().len(), 3, "the good tuples still flow");

    let lines = std::fs::read_to_string(&dead).unwrap();
    let entries: Vec<serde_json::Value> = lines
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON object per line"))
        .collect();
    let count = |what: &str| entries.iter().filter(|e| e["what"] == what).count();
    // 3 bad tuples (too short, bad port, not a string), 3 bad records, the garbage.
    assert_eq!(
        (count("tuple"), count("record"), count("bytes")),
        (3, 3, 1),
        "{lines}"
    );
    for e in &entries {
        assert_eq!(e["source"], "test");
        assert!(e["object"].as_str().unwrap().ends_with("/PT1H.json"), "{e}");
        assert!(!e["reason"].as_str().unwrap().is_empty(), "{e}");
        let data = e["data"].as_str().unwrap();
        assert_eq!(e["length"].as_u64().unwrap() as usize, data.len(), "{e}");
        let offset = e["offset"].as_u64().unwrap() as usize;
        match e["what"].as_str().unwrap() {
            // The bytes at their offset in the object, exactly.
            "record" | "bytes" => assert_eq!(&input[offset..offset + data.len()], data, "{e}"),
            _ => assert!(
                input.contains(&format!("\"{data}\"")) || data.is_empty(),
                "{e}"
            ),
        }
    }
    assert!(
        entries.iter().any(|e| e["data"] == "@@garbage|=\\@@\n"),
        "{lines}"
    );
    assert!(entries
        .iter()
        .any(|e| e["data"] == "1542110402,94.102.49.190,10.5.16.4,28746"));
}

#[test]
fn a_failing_sink_holds_the_checkpoint_and_still_stops() {
    let mut h = Harness::new(1 << 20);
    // Every write to /dev/full fails (ENOSPC): batches are retried, never acknowledged.
    let config = std::fs::read_to_string(h.path("flowgate.toml")).unwrap();
    let config = config
        .replace(&h.path("out.cef").display().to_string(), "/dev/full")
        .replace("drain_timeout_secs = 10", "drain_timeout_secs = 1");
    std::fs::write(h.path("flowgate.toml"), config).unwrap();
    std::fs::copy(fixture("nsg-v2.PT1H.json"), h.blob()).unwrap();
    h.start();
    assert!(wait_until(Duration::from_secs(20), || h
        .log()
        .contains("write failed; retrying")));
    let started = std::time::Instant::now();
    h.stop();
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "drain timeout bounds shutdown"
    );
    let log = h.log();
    assert!(log.contains("giving up on a batch at shutdown"), "{log}");
    let offsets = checkpoint_offsets(h.path("flowgate.toml").to_str().unwrap());
    assert!(
        offsets.iter().all(|o| *o == 0),
        "nothing delivered, nothing checkpointed: {offsets:?}"
    );
}

#[test]
fn start_at_end_skips_what_exists_and_forwards_what_is_appended() {
    let mut h = Harness::new(1 << 20);
    h.start_at("end");
    let mut blob = GrowingBlob::new(15);
    blob.add_records(3);
    blob.write_to(&h.blob());
    let before = blob.expected(h.dir.path());
    h.start();
    std::thread::sleep(Duration::from_millis(800));
    assert!(h.output().is_empty(), "what existed at start-up is skipped");
    // Stopped before anything new arrived: the restart resumes where the first run
    // started, not at the end again (which would skip what came in between).
    h.stop();
    blob.add_records(1);
    blob.write_to(&h.blob());
    let between = blob.expected(h.dir.path());
    h.start();
    h.wait_for_lines(between.len() - before.len());

    blob.add_records(1);
    blob.write_to(&h.blob());
    let after = blob.expected(h.dir.path());
    h.wait_for_lines(after.len() - before.len());
    std::thread::sleep(Duration::from_millis(300));
    h.stop();
    assert_eq!(
        h.output(),
        after[before.len()..],
        "only the appended records"
    );
}

#[test]
fn an_hour_before_start_at_stays_unread_across_restarts() {
    let mut h = Harness::new(1 << 20);
    h.start_at("2024-03-04T11:30:00Z");
    // 10:00-11:00 ended before start_at; 11:00-12:00 holds it and is read whole.
    std::fs::copy(fixture("nsg-v2.PT1H.json"), h.blob()).unwrap();
    let next_hour = h.path("logs").join(BLOB_DIR.replace("/h=10/", "/h=11/"));
    std::fs::create_dir_all(&next_hour).unwrap();
    std::fs::copy(fixture("nsg-edge.PT1H.json"), next_hour.join("PT1H.json")).unwrap();
    let expected = converted_as(&fixture("nsg-edge.PT1H.json"), "test");
    h.start();
    h.wait_for_lines(expected.len());
    std::thread::sleep(Duration::from_millis(500));
    h.stop();
    assert_eq!(h.output(), expected, "the older hour is not read");
    // A checkpoint for the older hour would make it look followed after a restart.
    h.start();
    std::thread::sleep(Duration::from_millis(1000));
    h.stop();
    assert_eq!(h.output(), expected, "nor after a restart");
}

#[test]
fn the_source_name_and_subscription_tag_reach_every_event() {
    let mut h = Harness::new(1 << 20);
    let config = std::fs::read_to_string(h.path("flowgate.toml")).unwrap();
    let tag = "Contoso|Prod=1";
    let config = config.replace(
        "type = \"local\"",
        &format!("type = \"local\"\nsubscription_tag = \"{tag}\""),
    );
    std::fs::write(h.path("flowgate.toml"), config).unwrap();
    std::fs::copy(fixture("nsg-v2.PT1H.json"), h.blob()).unwrap();
    h.start();
    h.wait_for_lines(7);
    std::thread::sleep(Duration::from_millis(300));
    h.stop();
    let out = h.output();
    assert_eq!(out.len(), 7);
    for line in &out {
        assert!(
            line.contains("flexString1=test flexString1Label=Source flexString2=Contoso|Prod\\=1 flexString2Label=SubscriptionTag"),
            "{line}"
        );
    }
    let fixture_path = fixture("nsg-v2.PT1H.json");
    let conv = flowgate(
        &[
            "convert",
            "--source",
            "test",
            "--subscription-tag",
            tag,
            fixture_path.to_str().unwrap(),
        ],
        None,
    );
    let expected: Vec<String> = String::from_utf8(conv.stdout)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    assert_eq!(out, expected, "convert reproduces what the service sends");
}

#[test]
fn the_file_sink_follows_logrotate_and_sighup_never_stops_the_service() {
    let mut fg = Instance::new();
    let out = fg.path("out.cef");
    fg.write_local_config(&format!(
        "[sinks.file]\ntype = \"file\"\npath = \"{}\"\n",
        out.display()
    ));
    // A partial line left by a killed writer: cut, never glued to the next event.
    std::fs::write(&out, b"CEF:0|complete line\nCEF:0|half a li").unwrap();
    let first = fg.add_input(0, &fixture("nsg-v2.PT1H.json"));
    fg.start();
    fg.wait_for_lines(first.len() + 1);
    let mut want = vec!["CEF:0|complete line".to_owned()];
    want.extend(first.iter().cloned());
    assert_eq!(fg.output(), want);

    // logrotate without copytruncate: rename, then new events go to a new file.
    std::fs::rename(&out, fg.path("out.cef.1")).unwrap();
    let second = fg.add_input(1, &fixture("nsg-v1.PT1H.json"));
    fg.wait_for_lines(second.len());
    assert_eq!(fg.output(), second);
    assert_eq!(crate::support::lines(&fg.path("out.cef.1")), want);

    // SIGHUP reopens and the service goes on.
    let hup = std::process::Command::new("kill")
        .args(["-HUP", &fg.pid().to_string()])
        .status()
        .unwrap();
    assert!(hup.success());
    let third = fg.add_input(2, &fixture("vnet.PT1H.json"));
    fg.wait_for_lines(second.len() + third.len());
    let mut both = second.clone();
    both.extend(third);
    assert_eq!(fg.output(), both);
    assert!(fg.log().contains("SIGHUP"), "{}", fg.log());
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&out).unwrap().permissions());
    assert_eq!(mode & 0o077 & !0o040, 0, "{mode:o}: not readable by others");
    fg.stop();
}
