//! Crash torture: flowgate killed with SIGKILL at random points, many times, while its
//! blob grows the way Network Watcher's do; then every tuple is counted at the receiver.
//! Lost must be 0, torn 0, and duplicates within the bound README's "Delivery guarantees"
//! gives. The kill points come from a seed printed at the start (FLOWGATE_TORTURE_SEED
//! replays one).

use crate::rsyslog::Rsyslog;
use crate::run::GrowingBlob;
use crate::support::{lines, wait_until, Instance};
use std::collections::HashMap;
use std::time::Duration;

const BLOB_DIR: &str = "resourceId=/SUBSCRIPTIONS/S/RESOURCEGROUPS/RG/PROVIDERS/MICROSOFT.NETWORK/NETWORKSECURITYGROUPS/NSG/y=2024/m=03/d=04/h=10/m=00/macAddress=000D3A8F7856";
const KILLS: usize = 12;

/// xorshift64*: enough randomness for kill points, reproducible from its seed.
struct Rng(u64);

impl Rng {
    fn seeded() -> Rng {
        let seed = std::env::var("FLOWGATE_TORTURE_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_nanos() as u64
                    | 1
            });
        eprintln!("torture: FLOWGATE_TORTURE_SEED={seed}");
        Rng(seed)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % n
    }
}

/// Configures `fg` to follow one growing blob (one record per batch) into `sink`.
fn configure(fg: &Instance, sink: &str) {
    std::fs::create_dir_all(fg.path("logs").join(BLOB_DIR)).unwrap();
    let config = format!(
        "[sources.test]\ntype = \"local\"\npath = \"{logs}\"\npoll_interval_secs = 0.1\nread_chunk_bytes = 4096\n\n{sink}\n\n[checkpoints]\npath = \"{cp}\"\n\n[pipeline]\nchannel_capacity = 2\ndrain_timeout_secs = 10\n",
        logs = fg.path("logs").display(),
        cp = fg.path("cp.redb").display(),
    );
    std::fs::write(fg.path("flowgate.toml"), config).unwrap();
}

/// Runs `fg` KILLS times, each killed at a random point while the blob grows, then once
/// more to the end; checks what `delivered` returns against what was written.
fn torture(fg: &mut Instance, delivered: impl Fn() -> Vec<String>) {
    let blob_path = fg.path("logs").join(BLOB_DIR).join("PT1H.json");
    let mut rng = Rng::seeded();
    let mut blob = GrowingBlob::new(31);
    blob.add_records(30);
    blob.write_to(&blob_path);
    for _ in 0..KILLS {
        fg.start();
        // Killed before, while or after it reads what the last round appended.
        std::thread::sleep(Duration::from_millis(rng.below(300)));
        blob.add_records(10);
        blob.write_to(&blob_path);
        std::thread::sleep(Duration::from_millis(rng.below(500)));
        fg.kill9();
    }
    let expected = blob.expected(fg.dir.path());
    let mut want: HashMap<&str, usize> = HashMap::new();
    for l in &expected {
        *want.entry(l).or_default() += 1;
    }
    let missing = |got: &[String]| {
        let mut have: HashMap<&str, usize> = HashMap::new();
        for l in got {
            *have.entry(l).or_default() += 1;
        }
        want.iter()
            .filter(|(l, n)| have.get(*l).copied().unwrap_or(0) < **n)
            .count()
    };
    fg.start();
    let all = wait_until(Duration::from_secs(90), || missing(&delivered()) == 0);
    std::thread::sleep(Duration::from_millis(500));
    fg.stop();
    let got = delivered();
    assert!(all, "{} events lost\n{}", missing(&got), fg.log());
    let torn: Vec<&String> = got
        .iter()
        .filter(|l| !want.contains_key(l.as_str()))
        .collect();
    assert!(
        torn.is_empty(),
        "{} torn: {:?}",
        torn.len(),
        &torn[..torn.len().min(3)]
    );
    // Each kill repeats at most the batches not yet under a stored checkpoint: 15
    // one-record batches (see run::kill_9_mid_stream_loses_nothing for the count).
    let duplicates = got.len() - expected.len();
    let bound = KILLS * 15 * blob.tuples.iter().max().unwrap();
    assert!(
        duplicates <= bound,
        "{duplicates} duplicates, more than {bound}"
    );
    eprintln!(
        "torture: {KILLS} kills, {} events, 0 lost, 0 torn, {duplicates} duplicates (bound {bound})",
        expected.len()
    );
}

#[test]
fn kill_9_at_random_points_into_the_file_sink_loses_and_tears_nothing() {
    let mut fg = Instance::new();
    let out = fg.path("out.cef");
    configure(
        &fg,
        &format!(
            "[sinks.file]\ntype = \"file\"\npath = \"{}\"",
            out.display()
        ),
    );
    torture(&mut fg, || lines(&out));
}

#[test]
fn kill_9_at_random_points_into_rsyslog_with_octet_counting_loses_and_tears_nothing() {
    let mut fg = Instance::new();
    let Some(rs) = Rsyslog::start(&fg.path("rsyslog")) else {
        return;
    };
    configure(
        &fg,
        &format!(
            "[sinks.siem]\ntype = \"syslog\"\nmode = \"tcp\"\nframing = \"octet_counting\"\ntargets = [\"127.0.0.1:{}\"]",
            rs.tcp
        ),
    );
    torture(&mut fg, || {
        rs.received()
            .iter()
            .map(|r| r["msg"].as_str().unwrap_or_default().to_owned())
            .collect()
    });
}
