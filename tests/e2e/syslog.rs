//! The syslog sink against a real rsyslog: UDP, TCP (octet-counted and newline framing),
//! TLS and mutual TLS; a receiver restarted mid-stream; a receiver down from the start
//! (backpressure, then delivery); failover; the drop policy.

use crate::parse_back::cef_parse;
use crate::rsyslog::Rsyslog;
use crate::support::{
    checkpoint_offsets, fixture, flowgate, python_with_cefp, wait_until, Instance,
};
use std::path::Path;
use std::time::Duration;

struct Setup {
    fg: Instance,
    rs: Rsyslog,
    /// The bare CEF messages, in the order they must arrive.
    expected: Vec<String>,
}

/// rsyslog, a directory with `files` (each in its own folder, read in this order) and a
/// flowgate config with a local source and the sink `sink` returns.
fn setup(files: &[&Path], sink: impl Fn(&Rsyslog) -> String) -> Option<Setup> {
    let fg = Instance::new();
    let rs = Rsyslog::start(&fg.path("rsyslog"))?;
    let expected = files
        .iter()
        .enumerate()
        .flat_map(|(i, file)| fg.add_input(i, file))
        .collect();
    fg.write_local_config(&format!(
        "[sinks.siem]\ntype = \"syslog\"\n{}\n\n[pipeline]\ndrain_timeout_secs = 10",
        sink(&rs)
    ));
    Some(Setup { fg, rs, expected })
}

/// The header settings every test uses (checked on what rsyslog parsed).
const HEADER: &str = r#"
[sinks.siem.encoding.syslog]
facility = "local4"
hostname = "fg-test"
app_name = "flowgate"
msgid = "NSGFLOW"
"#;

impl Setup {
    fn messages(&self) -> Vec<String> {
        self.rs
            .received()
            .iter()
            .map(|r| r["msg"].as_str().unwrap().to_owned())
            .collect()
    }

    /// Waits for `n` messages (then a little longer, to see any extra ones).
    fn wait_for(&self, n: usize, timeout: Duration) {
        let ok = wait_until(timeout, || self.rs.received().len() >= n);
        assert!(
            ok,
            "rsyslog got {} of {n}\nflowgate: {}\nrsyslog: {}",
            self.rs.received().len(),
            self.fg.log(),
            self.rs.internal_log()
        );
        std::thread::sleep(Duration::from_millis(500));
    }

    /// Every message exactly as `convert` makes it, in order, with the header's fields.
    fn assert_all_arrived_with_headers(&self, input: &str) {
        let received = self.rs.received();
        let msgs: Vec<&str> = received
            .iter()
            .map(|r| r["msg"].as_str().unwrap())
            .collect();
        assert_eq!(msgs, self.expected, "every event once, in order, intact");
        for (r, cef) in received.iter().zip(&self.expected) {
            assert_eq!(r["inputname"], input);
            assert_eq!(r["protocol-version"], "1", "RFC 5424");
            assert_eq!(r["hostname"], "fg-test");
            assert_eq!(r["app-name"], "flowgate");
            assert_eq!(r["msgid"], "NSGFLOW");
            assert_eq!(r["facility"], 20, "local4");
            let severity = if cef.contains(" act=D ") { 4 } else { 6 };
            assert_eq!(
                r["severity"], severity,
                "deny → warning, allow → informational"
            );
        }
    }
}

#[test]
fn tcp_octet_counted_delivers_every_event_with_its_header_and_cefp_parses_it() {
    // `bad` has a rule name with `|`, `=`, `\` and a newline (and malformed tuples, skipped).
    let bad = fixture("bad.PT1H.json");
    let vnet = fixture("vnet.PT1H.json");
    let Some(mut s) = setup(&[&bad, &vnet], |rs| {
        format!(
            "mode = \"tcp\"\ntargets = [\"127.0.0.1:{}\"]\n{HEADER}",
            rs.tcp
        )
    }) else {
        return;
    };
    s.fg.start();
    s.wait_for(s.expected.len(), Duration::from_secs(30));
    s.fg.stop();
    s.assert_all_arrived_with_headers("tcp");
    // The payload as rsyslog stored it, through a CEF parser that is not ours: rule names
    // with `|`, `=`, `\` and newlines survive the syslog framing.
    if let Some(python) = python_with_cefp() {
        let text = s.messages().join("\n") + "\n";
        let parsed = cef_parse(&python, text.as_bytes());
        let direct = cef_parse(&python, (s.expected.join("\n") + "\n").as_bytes());
        assert_eq!(parsed.len(), s.expected.len());
        assert_eq!(parsed, direct);
        assert!(parsed
            .iter()
            .any(|(_, ext)| ext["cs1"] == "UserRule_a|b=c\\d\nnewline"));
    }
}

#[test]
fn tcp_newline_framing_and_udp_deliver_every_event() {
    let v2 = fixture("nsg-v2.PT1H.json");
    for mode in ["newline", "udp"] {
        let Some(mut s) = setup(&[&v2], |rs| match mode {
            "udp" => format!(
                "mode = \"udp\"\ntargets = [\"127.0.0.1:{}\"]\n{HEADER}",
                rs.udp
            ),
            _ => format!(
                "mode = \"tcp\"\nframing = \"newline\"\ntargets = [\"127.0.0.1:{}\"]\n{HEADER}",
                rs.tcp
            ),
        }) else {
            return;
        };
        s.fg.start();
        s.wait_for(s.expected.len(), Duration::from_secs(30));
        s.fg.stop();
        s.assert_all_arrived_with_headers(if mode == "udp" { "udp" } else { "tcp" });
    }
}

#[test]
fn tls_verifies_the_server_and_mutual_tls_presents_the_client_certificate() {
    let v1 = fixture("nsg-v1.PT1H.json");
    // Server authentication against the test CA, server name checked (127.0.0.1).
    let Some(mut s) = setup(&[&v1], |rs| {
        format!(
            "mode = \"tls\"\ntargets = [\"127.0.0.1:{}\"]\n[sinks.siem.tls]\nca_file = \"{}\"\n{HEADER}",
            rs.tls,
            rs.certs.ca.display()
        )
    }) else {
        return;
    };
    s.fg.start();
    s.wait_for(s.expected.len(), Duration::from_secs(30));
    s.fg.stop();
    s.assert_all_arrived_with_headers("tls");

    // Mutual TLS: the listener requires a certificate signed by the CA.
    let Some(mut s) = setup(&[&v1], |rs| {
        format!(
            "mode = \"tls\"\ntargets = [\"127.0.0.1:{}\"]\n[sinks.siem.tls]\nca_file = \"{}\"\ncert_file = \"{}\"\nkey_file = \"{}\"\n{HEADER}",
            rs.mtls,
            rs.certs.ca.display(),
            rs.certs.client_cert.display(),
            rs.certs.client_key.display()
        )
    }) else {
        return;
    };
    s.fg.start();
    s.wait_for(s.expected.len(), Duration::from_secs(30));
    s.fg.stop();
    s.assert_all_arrived_with_headers("mtls");
}

#[test]
fn tls_refused_certificates_deliver_nothing_and_hold_the_checkpoint() {
    let v1 = fixture("nsg-v1.PT1H.json");
    type SinkFor = fn(&Rsyslog) -> String;
    let cases: [(&str, SinkFor); 2] = [
        // The server's certificate does not carry this name.
        ("not valid for name", |rs| {
            format!(
                "mode = \"tls\"\ntargets = [\"127.0.0.1:{}\"]\n[sinks.siem.tls]\nca_file = \"{}\"\nserver_name = \"siem.example.com\"\n",
                rs.tls,
                rs.certs.ca.display()
            )
        }),
        // Mutual TLS without a client certificate: rsyslog closes the connection.
        ("connection lost", |rs| {
            format!(
                "mode = \"tls\"\ntargets = [\"127.0.0.1:{}\"]\n[sinks.siem.tls]\nca_file = \"{}\"\n",
                rs.mtls,
                rs.certs.ca.display()
            )
        }),
    ];
    for (why, sink) in cases {
        let Some(mut s) = setup(&[&v1], sink) else {
            return;
        };
        s.fg.start();
        assert!(
            wait_until(Duration::from_secs(20), || s.fg.log().contains(why)),
            "{why}: {}",
            s.fg.log()
        );
        std::thread::sleep(Duration::from_secs(1));
        assert!(s.rs.received().is_empty(), "{why}");
        s.fg.stop();
        let offsets = checkpoint_offsets(&s.fg.config());
        assert!(
            !offsets.is_empty() && offsets.iter().all(|o| *o == 0),
            "{why}: nothing delivered, so the checkpoint stayed at 0: {offsets:?}"
        );
    }
}

#[test]
fn rsyslog_restarted_mid_stream_loses_nothing() {
    let fg_gen = Instance::new();
    let big = fg_gen.path("big.json");
    let out = flowgate(
        &[
            "generate",
            "--mib",
            "24",
            "--seed",
            "7",
            "--out",
            big.to_str().unwrap(),
        ],
        None,
    );
    assert!(out.status.success());
    let Some(mut s) = setup(&[&big], |rs| {
        format!(
            "mode = \"tcp\"\ntargets = [\"127.0.0.1:{}\"]\n{HEADER}",
            rs.tcp
        )
    }) else {
        return;
    };
    let total = s.expected.len();
    assert!(total > 100_000, "{total}");
    s.fg.start();
    assert!(wait_until(Duration::from_secs(60), || s.rs.count() > 1000));
    // Stopped mid-stream, down for 3 s, back on the same port.
    s.rs.stop();
    let at_stop = s.rs.count();
    assert!(at_stop < total, "stopped too late to test anything");
    std::thread::sleep(Duration::from_secs(3));
    s.rs.restart();
    let ok = wait_until(Duration::from_secs(120), || {
        let got: std::collections::HashSet<String> = s.messages().into_iter().collect();
        got.len() >= total
    });
    let msgs = s.messages();
    let unique: std::collections::HashSet<&String> = msgs.iter().collect();
    assert!(
        ok,
        "{} of {total} distinct messages\n{}",
        unique.len(),
        s.fg.log()
    );
    s.fg.stop();
    let expected: std::collections::HashSet<&String> = s.expected.iter().collect();
    assert_eq!(unique, expected, "every event arrived");
    let duplicates = msgs.len() - total;
    // At most what was written but not yet delivered when the connection broke.
    assert!(duplicates < total / 2, "{duplicates} duplicates");
    assert!(s.fg.log().contains("connection lost"), "{}", s.fg.log());
    eprintln!("restart: {total} events, {duplicates} sent twice");
}

#[test]
fn a_receiver_down_holds_everything_back_then_gets_it_all_via_failover() {
    let v2 = fixture("nsg-v2.PT1H.json");
    // The first target never answers; the second is rsyslog, stopped at first.
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead_port = dead.local_addr().unwrap().port();
    drop(dead);
    let Some(mut s) = setup(&[&v2], |rs| {
        format!(
            "mode = \"tcp\"\ntargets = [\"127.0.0.1:{dead_port}\", \"127.0.0.1:{}\"]\nconnect_timeout_secs = 1\n{HEADER}",
            rs.tcp
        )
    }) else {
        return;
    };
    s.rs.stop();
    s.fg.start();
    assert!(
        wait_until(Duration::from_secs(20), || s
            .fg
            .log()
            .contains("cannot connect")),
        "{}",
        s.fg.log()
    );
    std::thread::sleep(Duration::from_secs(2));
    // Stopped while nothing could be delivered (after the drain timeout): a clean exit,
    // and no checkpoint.
    s.fg.stop();
    let offsets = checkpoint_offsets(&s.fg.config());
    assert!(
        !offsets.is_empty() && offsets.iter().all(|o| *o == 0),
        "no checkpoint past 0 while nothing is delivered: {offsets:?}"
    );
    s.rs.restart();
    s.fg.start();
    s.wait_for(s.expected.len(), Duration::from_secs(60));
    s.fg.stop();
    s.assert_all_arrived_with_headers("tcp");
}

#[test]
fn when_unreachable_drop_counts_and_moves_on() {
    let v2 = fixture("nsg-v2.PT1H.json");
    let Some(mut s) = setup(&[&v2], |rs| {
        format!(
            "mode = \"tcp\"\ntargets = [\"127.0.0.1:{}\"]\nwhen_unreachable = \"drop\"\ndrop_after_secs = 1\n",
            rs.tcp
        )
    }) else {
        return;
    };
    s.rs.stop();
    s.fg.start();
    assert!(
        wait_until(Duration::from_secs(20), || s
            .fg
            .log()
            .contains("batch dropped")),
        "{}",
        s.fg.log()
    );
    s.fg.stop();
    // Dropped on purpose: the checkpoint moved past the records, so a restart won't resend.
    let offsets = checkpoint_offsets(&s.fg.config());
    assert!(!offsets.is_empty() && offsets[0] > 0, "{offsets:?}");
}
