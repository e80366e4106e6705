//! GeoIP/ASN enrichment end to end: MaxMind-format databases built from
//! tests/fixtures/geoip.json by PyPI mmdb-writer (tests/tools/make_mmdb.py), in both City
//! layouts; what the service writes is checked against the spec, looked up here
//! independently, and the CEF is parsed back by cefp.

use crate::support::{fixture, python_with_cefp, repo, Instance};
use crate::volume::document;
use serde_json::Value;
use std::net::IpAddr;
use std::path::Path;
use std::process::Command;

/// Public, private, Azure platform, IPv6 and unknown addresses.
fn tuples() -> Vec<Vec<String>> {
    let t = 1_700_000_000;
    vec![vec![
        format!("{t},10.0.0.4,13.67.143.115,50000,443,T,O,A,B,,,,"),
        format!("{t},45.229.101.7,10.0.0.4,40000,22,T,I,D,B,,,,"),
        format!("{t},10.0.0.4,168.63.129.16,50001,53,U,O,A,B,,,,"),
        format!("{t},2603:1030:20e:3::23c,fd00::4,443,50002,T,I,A,B,,,,"),
        format!("{t},203.0.113.9,10.0.0.4,4444,3389,T,I,D,B,,,,"),
        format!("{t},176.119.4.10,10.0.0.5,5555,22,T,I,D,B,,,,"),
    ]]
}

/// City and ASN databases in `dir` from the spec `tests/fixtures/geoip.json`.
pub fn build_databases(python: &Path, dir: &Path, layout: &str) {
    build_databases_from(python, &fixture("geoip.json"), dir, layout);
}

pub fn build_databases_from(python: &Path, spec: &Path, dir: &Path, layout: &str) {
    let out = Command::new(python)
        .arg(repo().join("tests/tools/make_mmdb.py"))
        .arg(spec)
        .arg(dir)
        .args(["--layout", layout])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "make_mmdb.py: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The most specific network of `entries` holding `ip` (a plain reading of the spec).
fn spec_lookup(entries: &[Value], ip: IpAddr) -> Option<&Value> {
    let bits = |ip: IpAddr| match ip {
        IpAddr::V4(v4) => (u128::from(u32::from(v4)) << 96, 32u32),
        IpAddr::V6(v6) => (u128::from(v6), 128u32),
    };
    let (addr, width) = bits(ip);
    entries
        .iter()
        .filter_map(|e| {
            let (net, len) = e["network"].as_str()?.split_once('/')?;
            let net: IpAddr = net.parse().ok()?;
            let len: u32 = len.parse().ok()?;
            let (net_bits, net_width) = bits(net);
            if net_width != width {
                return None;
            }
            let mask = if len == 0 {
                0
            } else {
                u128::MAX << (128 - len)
            };
            (addr & mask == net_bits & mask).then_some((len, e))
        })
        .max_by_key(|(len, _)| *len)
        .map(|(_, e)| e)
}

/// What the spec says `geo` must hold for a public address (None: nothing known).
fn expected_geo(spec: &Value, ip: IpAddr) -> Option<Value> {
    let city = spec_lookup(spec["city"].as_array().unwrap(), ip);
    let asn = spec_lookup(spec["asn"].as_array().unwrap(), ip);
    if city.is_none() && asn.is_none() {
        return None;
    }
    let mut geo = serde_json::Map::new();
    if let Some(c) = city {
        geo.insert("country".into(), c["country"].clone());
        if let Some(name) = c.get("city") {
            geo.insert("city".into(), name.clone());
        }
        geo.insert("lat".into(), c["latitude"].clone());
        geo.insert("lon".into(), c["longitude"].clone());
    }
    if let Some(a) = asn {
        geo.insert("asn".into(), a["asn"].clone());
        geo.insert("as_org".into(), a["org"].clone());
    }
    Some(Value::Object(geo))
}

fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => !(v4.is_private() || v4.octets()[..2] == [168, 63] || v4.is_loopback()),
        IpAddr::V6(v6) => (v6.segments()[0] & 0xfe00) != 0xfc00,
    }
}

fn run(layout: &str, format: &str) -> Option<(Vec<String>, Value)> {
    let python = python_with_cefp()?;
    let mut fg = Instance::new();
    let dbs = fg.path("geoip");
    std::fs::create_dir_all(&dbs).unwrap();
    build_databases(&python, &dbs, layout);
    let doc = fg.path("flows.json");
    std::fs::write(&doc, document(&tuples())).unwrap();
    fg.add_input(0, &doc);
    fg.write_local_config(&format!(
        r#"[sinks.file]
type = "file"
path = "{out}"
[sinks.file.encoding]
format = "{format}"

[enrich]
geoip_city = "{city}"
geoip_asn = "{asn}""#,
        out = fg.path("out.cef").display(),
        city = dbs.join("city.mmdb").display(),
        asn = dbs.join("asn.mmdb").display(),
    ));
    fg.start();
    fg.wait_for_lines(tuples()[0].len());
    std::thread::sleep(std::time::Duration::from_millis(300));
    fg.stop();
    let spec: Value =
        serde_json::from_str(&std::fs::read_to_string(fixture("geoip.json")).unwrap()).unwrap();
    Some((fg.output(), spec))
}

fn check_json(lines: &[String], spec: &Value, coordinates_exact: bool) {
    let mut looked_up = 0;
    for line in lines {
        let v: Value = serde_json::from_str(line).unwrap();
        for side in ["src", "dst"] {
            let ip: IpAddr = v[format!("{side}_ip")].as_str().unwrap().parse().unwrap();
            let got = v.get(format!("{side}_geo"));
            let want = if is_public(ip) {
                expected_geo(spec, ip)
            } else {
                None
            };
            match (got, want) {
                (None, None) => {}
                (Some(got), Some(want)) => {
                    looked_up += 1;
                    for (k, w) in want.as_object().unwrap() {
                        let g = &got[k];
                        if matches!(k.as_str(), "lat" | "lon") && !coordinates_exact {
                            // 32-bit floats in the flat layout.
                            let d = g.as_f64().unwrap() - w.as_f64().unwrap();
                            assert!(d.abs() < 1e-4, "{ip} {k}: {g} vs {w}");
                        } else {
                            assert_eq!(g, w, "{ip} {k} in {line}");
                        }
                    }
                    assert_eq!(
                        got.as_object().unwrap().len(),
                        want.as_object().unwrap().len(),
                        "{ip}: {got}"
                    );
                }
                (got, want) => panic!("{ip}: got {got:?}, want {want:?}\n{line}"),
            }
        }
    }
    // 13.67.143.115, 45.229.101.7, 2603:1030:20e:3::23c, 176.119.4.10.
    assert_eq!(looked_up, 4);
}

#[test]
fn geoip_and_asn_from_maxmind_layout_databases() {
    let Some((lines, spec)) = run("geoip2", "json") else {
        return;
    };
    check_json(&lines, &spec, true);
    // Private, Azure platform and unknown public addresses carry nothing.
    assert!(lines[2].find("_geo").is_none(), "{}", lines[2]);
    assert!(lines[4].find("_geo").is_none(), "{}", lines[4]);
}

#[test]
fn geoip_from_ip_location_db_flat_layout_databases() {
    let Some((lines, spec)) = run("flat", "json") else {
        return;
    };
    check_json(&lines, &spec, false);
}

#[test]
fn geoip_fields_survive_cef_escaping() {
    let Some((lines, _)) = run("geoip2", "cef") else {
        return;
    };
    let python = python_with_cefp().unwrap();
    let cef = lines.join("\n") + "\n";
    let parsed: Vec<_> = crate::parse_back::cef_parse(&python, cef.as_bytes())
        .into_iter()
        .map(|(_, ext)| ext)
        .collect();
    assert_eq!(parsed.len(), lines.len());
    let br = &parsed[1];
    assert_eq!(br["srcGeoCountryCode"], "BR");
    assert_eq!(br["srcGeoCity"], "São Paulo");
    assert_eq!(br["srcAsOrg"], "BRASIL TECPAR | AMIGO | AVATO");
    assert_eq!(br["srcAsn"], "267147");
    assert_eq!(br["slat"], "-23.5475");
    let ru = &parsed[5];
    assert_eq!(ru["srcAsOrg"], "LLC \"T1Cloud\"");
    assert!(!ru.contains_key("srcGeoCity"));
}

#[test]
fn a_database_replaced_while_running_is_used_for_the_next_batches() {
    let Some(python) = python_with_cefp() else {
        return;
    };
    let mut fg = Instance::new();
    // The same data, then with 13.64.0.0/11 moved to Canada.
    let spec_path = fixture("geoip.json");
    let mut spec: Value =
        serde_json::from_str(&std::fs::read_to_string(&spec_path).unwrap()).unwrap();
    let (before, after) = (fg.path("geoip-before"), fg.path("geoip-after"));
    for dir in [&before, &after] {
        std::fs::create_dir_all(dir).unwrap();
    }
    build_databases(&python, &before, "geoip2");
    for entry in spec["city"].as_array_mut().unwrap() {
        if entry["network"].as_str().unwrap().starts_with("13.") {
            entry["country"] = "CA".into();
            entry["country_name"] = "Canada".into();
        }
    }
    let moved = fg.path("geoip-moved.json");
    std::fs::write(&moved, spec.to_string()).unwrap();
    build_databases_from(&python, &moved, &after, "geoip2");
    let city = fg.path("city.mmdb");
    std::fs::copy(before.join("city.mmdb"), &city).unwrap();
    fg.write_local_config(&format!(
        r#"[sinks.file]
type = "file"
path = "{out}"
[sinks.file.encoding]
format = "json"

[enrich]
geoip_city = "{city}"
inventory_reload_secs = 0.1"#,
        out = fg.path("out.cef").display(),
        city = city.display(),
    ));
    let t = 1_700_000_000;
    let flow = |minute: u64| {
        vec![vec![format!(
            "{},10.0.0.4,13.67.143.115,50000,443,T,O,A,B,,,,",
            t + 60 * minute
        )]]
    };
    let country = |line: &str| {
        let v: Value = serde_json::from_str(line).unwrap();
        v["dst_geo"]["country"]
            .as_str()
            .unwrap_or("none")
            .to_owned()
    };
    let first = fg.path("first.json");
    std::fs::write(&first, document(&flow(0))).unwrap();
    fg.add_input(0, &first);
    fg.start();
    fg.wait_for_lines(1);
    assert_eq!(country(&fg.output()[0]), "US");

    // Replaced the way a download job should: a new file renamed over the old one.
    let tmp = fg.path("city.mmdb.tmp");
    std::fs::copy(after.join("city.mmdb"), &tmp).unwrap();
    std::fs::rename(&tmp, &city).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(300));
    let second = fg.path("second.json");
    std::fs::write(&second, document(&flow(1))).unwrap();
    fg.add_input(1, &second);
    fg.wait_for_lines(2);
    fg.stop();
    assert_eq!(country(&fg.output()[1]), "CA", "{}", fg.log());
}
