//! Golden outputs: every fixture in every format, compared byte for byte with
//! `tests/golden/`. `UPDATE_GOLDEN=1 cargo test golden` rewrites them (then review the diff).

use crate::support::{fixture, flowgate, repo};

const FIXTURES: &[&str] = &["nsg-v1", "nsg-v2", "vnet", "nsg-edge", "bad"];

fn check(fixture_name: &str, variant: &str, args: &[&str]) {
    let input = fixture(&format!("{fixture_name}.PT1H.json"));
    let mut all = args.to_vec();
    let input = input.to_str().unwrap();
    all.push(input);
    let out = flowgate(&all, None);
    let expected_exit = if fixture_name == "bad" { 1 } else { 0 };
    assert_eq!(
        out.status.code(),
        Some(expected_exit),
        "{fixture_name}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let golden = repo().join(format!("tests/golden/{fixture_name}.{variant}"));
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&golden, &out.stdout).unwrap();
        return;
    }
    let want = std::fs::read(&golden).unwrap_or_else(|e| panic!("{}: {e}", golden.display()));
    if out.stdout != want {
        panic!(
            "{fixture_name} {variant} differs from {}:\n--- got\n{}\n--- want\n{}",
            golden.display(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&want)
        );
    }
}

#[test]
fn cef() {
    for f in FIXTURES {
        check(f, "cef", &["convert", "--format", "cef"]);
    }
}

#[test]
fn leef() {
    for f in FIXTURES {
        check(f, "leef", &["convert", "--format", "leef"]);
    }
}

#[test]
fn json() {
    for f in FIXTURES {
        check(f, "json", &["convert", "--format", "json"]);
    }
}

#[test]
fn syslog_headers() {
    for f in ["nsg-v2", "bad"] {
        check(
            f,
            "rfc5424.cef",
            &[
                "convert",
                "--syslog",
                "rfc5424",
                "--hostname",
                "golden-host",
            ],
        );
        check(
            f,
            "rfc3164.leef",
            &[
                "convert",
                "--format",
                "leef",
                "--syslog",
                "rfc3164",
                "--hostname",
                "golden-host",
            ],
        );
    }
}

#[test]
fn every_enrichment_on_in_every_format() {
    for f in ["nsg-v2", "vnet", "nsg-edge"] {
        for format in ["cef", "leef", "json"] {
            check(
                f,
                &format!("enriched.{format}"),
                &["convert", "--enrich", "--format", format],
            );
        }
    }
}

#[test]
fn enriched_json_is_json_with_the_added_fields() {
    let input = fixture("nsg-edge.PT1H.json");
    let out = flowgate(
        &[
            "convert",
            "--enrich",
            "--format",
            "json",
            input.to_str().unwrap(),
        ],
        None,
    );
    let text = String::from_utf8(out.stdout).unwrap();
    for line in text.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        for key in ["src_class", "dst_class", "rule_kind"] {
            assert!(v[key].is_string(), "{key} in {line}");
        }
        let port = v["dst_port"].as_u64().unwrap();
        if port == 443 && v["protocol"] == "TCP" {
            assert_eq!(v["service"], "https");
        }
    }
}

#[test]
fn inventory_fields_in_every_format() {
    let inventory = fixture_path("assets.csv");
    for format in ["cef", "leef", "json"] {
        check(
            "nsg-edge",
            &format!("inventory.{format}"),
            &["convert", "--inventory", &inventory, "--format", format],
        );
    }
}

/// Everything but reverse DNS (which needs a DNS server: tests/e2e/rdns.rs): service
/// names, classes, rule kinds, the inventory, and GeoIP and ASN from databases built from
/// tests/fixtures/geoip.json, which covers the fixtures' public addresses.
#[test]
fn every_enrichment_with_inventory_and_geoip_in_every_format() {
    let Some(python) = crate::support::python_with_cefp() else {
        return;
    };
    let dbs = tempfile::tempdir().unwrap();
    crate::geoip::build_databases(&python, dbs.path(), "geoip2");
    let city = dbs.path().join("city.mmdb");
    let asn = dbs.path().join("asn.mmdb");
    let inventory = fixture_path("assets.csv");
    for f in ["nsg-v2", "vnet", "nsg-edge"] {
        for format in ["cef", "leef", "json"] {
            check(
                f,
                &format!("all.{format}"),
                &[
                    "convert",
                    "--enrich",
                    "--inventory",
                    &inventory,
                    "--geoip-city",
                    city.to_str().unwrap(),
                    "--geoip-asn",
                    asn.to_str().unwrap(),
                    "--format",
                    format,
                ],
            );
        }
    }
}

fn fixture_path(name: &str) -> String {
    fixture(name).to_str().unwrap().to_owned()
}

#[test]
fn inventory_names_survive_a_real_cef_parser() {
    let Some(python) = crate::support::python_with_cefp() else {
        return;
    };
    let out = flowgate(
        &[
            "convert",
            "--inventory",
            &fixture_path("assets.csv"),
            &fixture_path("nsg-edge.PT1H.json"),
        ],
        None,
    );
    let parsed = crate::parse_back::cef_parse(&python, &out.stdout);
    let hosts: Vec<&str> = parsed
        .iter()
        .filter_map(|(_, ext)| ext.get("dhost").map(String::as_str))
        .collect();
    assert!(hosts.contains(&"web-vm-01"), "{hosts:?}");
    assert!(hosts.contains(&"web tier | edge=1 \\ east"), "{hosts:?}");
}
