//! `[filter]` end to end: what reaches a sink is exactly the converted events that pass
//! the filter, checked here on the CEF fields, independently of flowgate's own code.

use crate::support::{fixture, flowgate, Instance};

/// The value of a CEF extension key in `line` (values here have no spaces).
fn field<'a>(line: &'a str, key: &str) -> &'a str {
    let k = format!(" {key}=");
    line.find(&k)
        .map(|at| line[at + k.len()..].split(' ').next().unwrap())
        .unwrap_or("")
}

fn in_10_1(ip: &str) -> bool {
    ip.starts_with("10.1.")
}

#[test]
fn only_events_that_pass_every_check_reach_the_sink() {
    let mut fg = Instance::new();
    let files = ["nsg-v1", "nsg-v2", "nsg-edge", "vnet"];
    let all: Vec<String> = files
        .iter()
        .enumerate()
        .flat_map(|(i, name)| fg.add_input(i, &fixture(&format!("{name}.PT1H.json"))))
        .collect();
    // Allowed TCP or UDP flows, no begin tuples, not from or to 10.1.0.0/16, to ports
    // below 1024 or 3389.
    let expected: Vec<&String> = all
        .iter()
        .filter(|l| field(l, "act") == "A")
        .filter(|l| matches!(field(l, "proto"), "TCP" | "UDP"))
        .filter(|l| field(l, "cs2") != "B")
        .filter(|l| !in_10_1(field(l, "src")) && !in_10_1(field(l, "dst")))
        .filter(|l| {
            let port: u16 = field(l, "dpt").parse().unwrap_or(0);
            port < 1024 || port == 3389
        })
        .collect();
    assert!(
        !expected.is_empty() && expected.len() < all.len() / 2,
        "{} of {}",
        expected.len(),
        all.len()
    );
    fg.write_local_config(&format!(
        r#"[sinks.file]
type = "file"
path = "{out}"

[filter]
actions = ["allow"]
protocols = ["tcp", "17"]
keep_begin = false
exclude_cidrs = ["10.1.0.0/16"]
destination_ports = ["0-1023", "3389"]"#,
        out = fg.path("out.cef").display(),
    ));
    fg.start();
    fg.wait_for_lines(expected.len());
    std::thread::sleep(std::time::Duration::from_millis(500));
    fg.stop();
    let got = fg.output();
    let want: Vec<String> = expected.into_iter().cloned().collect();
    assert_eq!(got, want);
}

#[test]
fn the_service_enriches_exactly_as_convert_does() {
    let mut fg = Instance::new();
    let src = fixture("vnet.PT1H.json");
    fg.add_input(0, &src);
    let out = flowgate(
        &[
            "convert",
            "--enrich",
            "--format",
            "json",
            "--source",
            "local",
            src.to_str().unwrap(),
        ],
        None,
    );
    let expected: Vec<String> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    assert!(expected.iter().all(|l| l.contains("\"rule_kind\":")));
    fg.write_local_config(&format!(
        r#"[sinks.file]
type = "file"
path = "{out}"
[sinks.file.encoding]
format = "json"

[enrich]
service_names = true
address_classes = true
rule_kinds = true"#,
        out = fg.path("out.cef").display(),
    ));
    fg.start();
    fg.wait_for_lines(expected.len());
    std::thread::sleep(std::time::Duration::from_millis(300));
    fg.stop();
    assert_eq!(fg.output(), expected);
}
