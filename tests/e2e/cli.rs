//! The command line: convert's error reporting, stdin, BOM; validate's messages.

use crate::support::{fixture, flowgate, repo};

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn stdout_lines(o: &std::process::Output) -> Vec<String> {
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(str::to_owned)
        .collect()
}

#[test]
fn convert_reports_file_and_offset_and_keeps_good_tuples() {
    let bad = fixture("bad.PT1H.json");
    let out = flowgate(&["convert", bad.to_str().unwrap()], None);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("bad.PT1H.json: byte 13: tuple #1 skipped (field_count)"),
        "{err}"
    );
    assert!(
        err.contains("record skipped (unknown_version): NSG properties.Version 3"),
        "{err}"
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 3);
}

#[test]
fn convert_truncated_input_names_the_offset() {
    let doc = std::fs::read(fixture("nsg-v2.PT1H.json")).unwrap();
    let cut = &doc[..doc.len() - 40];
    let out = flowgate(&["convert", "-"], Some(cut));
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("<stdin>: byte 12: truncated"),
        "{}",
        stderr(&out)
    );
    assert!(out.stdout.is_empty(), "an unfinished record yields nothing");
}

#[test]
fn convert_accepts_a_bom_and_stdin() {
    let mut doc = b"\xEF\xBB\xBF".to_vec();
    doc.extend(std::fs::read(fixture("nsg-v2.PT1H.json")).unwrap());
    let out = flowgate(&["convert", "--format", "json", "-"], Some(&doc));
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 7);
}

#[test]
fn convert_not_utf8_is_an_error_not_a_panic() {
    let doc =
        b"{\"records\":[{\"time\":\"\xff\xfe\",\"properties\":{\"Version\":1,\"flows\":[]}}]}";
    let out = flowgate(&["convert", "-"], Some(doc));
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("byte 12: record skipped (invalid_json)"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn convert_writes_what_it_cannot_parse_to_its_dead_letter_file() {
    let dir = tempfile::tempdir().unwrap();
    let dead = dir.path().join("dead.jsonl");
    let input = std::fs::read(fixture("bad.PT1H.json")).unwrap();
    // Cut inside the last record: it never ends.
    let cut = &input[..input.len() - 20];
    let out = flowgate(
        &["convert", "--dead-letter", dead.to_str().unwrap(), "-"],
        Some(cut),
    );
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert_eq!(
        stdout_lines(&out).len(),
        2,
        "the good tuples before the cut"
    );
    let lines = std::fs::read_to_string(&dead).unwrap();
    let entries: Vec<serde_json::Value> = lines
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let whats: Vec<&str> = entries
        .iter()
        .map(|e| e["what"].as_str().unwrap())
        .collect();
    assert_eq!(
        whats,
        ["tuple", "tuple", "tuple", "record", "record", "record", "bytes"],
        "{lines}"
    );
    let last = entries.last().unwrap();
    assert_eq!(last["reason"], "record_unterminated");
    let offset = last["offset"].as_u64().unwrap() as usize;
    assert_eq!(last["data"].as_str().unwrap().as_bytes(), &cut[offset..]);
    assert_eq!(last["object"], "<stdin>");
}

/// The binary itself on cut fixtures (a sample of cut points; every byte is covered
/// in-process by robustness.rs): exit 0 or 1, never a panic, whole lines only.
#[test]
fn convert_exits_0_or_1_on_a_cut_fixture_and_writes_only_whole_lines() {
    for name in ["nsg-v1", "nsg-v2", "vnet", "nsg-edge", "bad"] {
        let doc = std::fs::read(fixture(&format!("{name}.PT1H.json"))).unwrap();
        let whole = stdout_lines(&flowgate(&["convert", "-"], Some(&doc)));
        for cut in (0..doc.len()).step_by(61) {
            let out = flowgate(&["convert", "-"], Some(&doc[..cut]));
            let code = out.status.code();
            assert!(
                matches!(code, Some(0 | 1)),
                "{name} cut at {cut}: {code:?} {}",
                stderr(&out)
            );
            assert!(!stderr(&out).contains("panicked"), "{name} cut at {cut}");
            assert!(out.stdout.is_empty() || out.stdout.ends_with(b"\n"));
            let lines = stdout_lines(&out);
            assert_eq!(
                lines,
                whole[..lines.len()],
                "{name} cut at {cut}: a prefix of the whole"
            );
        }
    }
}

#[test]
fn convert_garbage_is_reported() {
    let out = flowgate(&["convert", "-"], Some(b"hello world"));
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("byte 0: document does not start with"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn validate_accepts_the_shipped_configs() {
    for config in [
        "configs/flowgate.toml",
        "configs/file-sink.example.toml",
        "configs/azure-connection-string.example.toml",
        "configs/azure-access-key.example.toml",
        "configs/azure-sas.example.toml",
        "configs/azurite.example.toml",
        "configs/cluster-azurite.example.toml",
        "configs/azure-workload-identity.example.toml",
        "configs/azure-managed-identity.example.toml",
        "configs/azure-service-principal.example.toml",
        "configs/kafka-event-hubs.example.toml",
        "configs/syslog-tls.example.toml",
    ] {
        let out = flowgate(&["validate", "--config", config], None);
        assert!(out.status.success(), "{config}: {}", stderr(&out));
        assert!(String::from_utf8_lossy(&out.stdout).contains("valid (1 source, 1 sink)"));
    }
}

#[test]
fn validate_reads_the_inventory_and_databases_it_names() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("enrich.toml");
    let base = std::fs::read_to_string(repo().join("configs/flowgate.toml")).unwrap();
    let inventory = dir.path().join("assets.csv");
    let with = |enrich: &str| {
        std::fs::write(&config, format!("{base}\n[enrich]\n{enrich}\n")).unwrap();
        flowgate(&["validate", "--config", config.to_str().unwrap()], None)
    };
    let set_inventory = format!("inventory = \"{}\"", inventory.display());
    std::fs::write(&inventory, "10.0.0.0/8,corp\n10.1.0.0/33,web\n").unwrap();
    let out = with(&set_inventory);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("assets.csv:2: \"10.1.0.0/33\" is not an address block"),
        "{}",
        stderr(&out)
    );
    std::fs::write(&inventory, "10.0.0.0/8,corp\n").unwrap();
    assert!(with(&set_inventory).status.success());
    let missing = dir.path().join("missing.mmdb");
    let out = with(&format!("geoip_city = \"{}\"", missing.display()));
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("missing.mmdb"), "{}", stderr(&out));
}

#[test]
fn validate_names_the_offending_key() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("bad.toml");
    let base = std::fs::read_to_string(repo().join("configs/flowgate.toml")).unwrap();
    std::fs::write(
        &config,
        base.replace("format = \"cef\"", "format = \"xml\""),
    )
    .unwrap();
    let out = flowgate(&["validate", "--config", config.to_str().unwrap()], None);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("sinks.stdout.encoding.format: unknown variant `xml`"),
        "{}",
        stderr(&out)
    );
    std::fs::write(
        &config,
        base.replace("channel_capacity = 4", "channel_capacity = 0"),
    )
    .unwrap();
    let out = flowgate(&["validate", "--config", config.to_str().unwrap()], None);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("pipeline.channel_capacity"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn validate_explains_bad_start_times_and_filters() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("bad.toml");
    let cases = [
        (
            "start_at = \"2024-02-30T00:00:00Z\"",
            "sources.s.start_at: expected \"beginning\", \"end\" or an RFC 3339 time",
        ),
        (
            "[sources.s.include]\nnsgs = [\"a/b\"]",
            "sources.s.include.nsgs: names must be non-empty and contain no '/'",
        ),
        (
            "[filter]\nexclude_cidrs = [\"10.0.0.0/33\"]",
            "filter.exclude_cidrs: \"10.0.0.0/33\" is not valid",
        ),
        (
            "[sources.s.exclude]\nvnets = [\"x\"]",
            "sources.s.exclude.vnets: unknown field `vnets`",
        ),
    ];
    for (setting, message) in cases {
        std::fs::write(
            &config,
            format!("[sources.s]\ntype = \"local\"\npath = \"/tmp\"\n{setting}\n[sinks.o]\ntype = \"stdout\"\n"),
        )
        .unwrap();
        let out = flowgate(&["validate", "--config", config.to_str().unwrap()], None);
        assert_eq!(out.status.code(), Some(2));
        assert!(stderr(&out).contains(message), "{}", stderr(&out));
    }
}

#[test]
fn kafka_passthrough_values_never_appear_in_errors() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("kafka.toml");
    // librdkafka refuses the value and would quote it in its message.
    std::fs::write(
        &config,
        format!("[sources.s]\ntype = \"local\"\npath = \"/nonexistent\"\n[sinks.k]\ntype = \"kafka\"\nbootstrap_servers = \"127.0.0.1:1\"\ntopic = \"t\"\n[sinks.k.librdkafka]\n\"linger.ms\" = \"TOPSECRETKEY\"\n[checkpoints]\npath = \"{}\"\n",
            dir.path().join("cp.redb").display()
        ),
    )
    .unwrap();
    let out = flowgate(&["validate", "--config", config.to_str().unwrap()], None);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!String::from_utf8_lossy(&out.stdout).contains("TOPSECRETKEY"));
    let out = flowgate(&["run", "--config", config.to_str().unwrap()], None);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("sinks.k") && err.contains("linger.ms"),
        "{err}"
    );
    assert!(!err.contains("TOPSECRETKEY"), "{err}");
}

#[test]
fn secrets_never_appear_in_validate_output_or_errors() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("secret.toml");
    let cases = [
        // A malformed connection string: the parser's own message would quote it.
        "connection_string = \"AccountName=acct;AccountKey=TOPSECRETKEY==;BrokenPart\"",
        // Valid credentials, but two at once.
        "connection_string = \"AccountName=acct;AccountKey=TOPSECRETKEY==\"\nsas_token = \"sv=1&sig=TOPSECRETKEY\"",
        // A key without its account.
        "access_key = \"TOPSECRETKEY==\"",
        // A TOML syntax error on the secret's line: toml's message would quote the line.
        "account = \"a\"\nsas_token = \"sv=1&sig=TOPSECRETKEY",
        // A client secret with a method that takes none.
        "account = \"a\"\n[sources.s.azure_ad]\nmethod = \"managed_identity\"\nclient_secret = \"TOPSECRETKEY\"",
    ];
    for credentials in cases {
        std::fs::write(
            &config,
            format!(
                "[sources.s]\ntype = \"azure_blob\"\n{credentials}\n[sinks.o]\ntype = \"stdout\"\n"
            ),
        )
        .unwrap();
        let out = flowgate(&["validate", "--config", config.to_str().unwrap()], None);
        assert_eq!(out.status.code(), Some(2), "{credentials}");
        let all = format!("{}{}", stderr(&out), String::from_utf8_lossy(&out.stdout));
        assert!(
            all.contains("sources.s") || all.contains(": line 4: "),
            "the error names the source, or the line of a syntax error: {all}"
        );
        assert!(!all.contains("TOPSECRETKEY"), "secret leaked: {all}");
    }
    // And a valid one: the success line shows nothing of it either.
    std::fs::write(
        &config,
        "[sources.s]\ntype = \"azure_blob\"\naccount = \"acct\"\naccess_key = \"TOPSECRETKEY==\"\n[sinks.o]\ntype = \"stdout\"\n",
    )
    .unwrap();
    let out = flowgate(&["validate", "--config", config.to_str().unwrap()], None);
    assert!(out.status.success());
    assert!(!String::from_utf8_lossy(&out.stdout).contains("TOPSECRETKEY"));
}
