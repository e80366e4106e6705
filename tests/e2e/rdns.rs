//! Reverse DNS end to end against a real DNS server (Debian's dnsmasq, answering PTR
//! queries from a hosts file, started on a free port): names for private addresses, none
//! for public ones unless asked, and a server that never answers costs each batch at most
//! the timeout.

use crate::support::{free_port, peer, wait_until, Instance};
use crate::volume::document;
use serde_json::Value;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

struct Dnsmasq {
    child: Child,
    port: u16,
    // Queries for 9.9.10.in-addr.arpa are forwarded here, and never answered.
    _black_hole: std::net::UdpSocket,
}

impl Drop for Dnsmasq {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_dnsmasq(dir: &std::path::Path) -> Option<Dnsmasq> {
    let bin = peer(
        "FLOWGATE_DNSMASQ",
        "/usr/sbin/dnsmasq".into(),
        "dnsmasq",
        "scripts/dns-deps.sh",
    )?;
    let hosts = dir.join("hosts");
    std::fs::write(
        &hosts,
        "10.1.2.3 vm-web-01.internal.example\nfd00:1::5 v6-ula.example.test\n192.0.2.55 gw.example.test\n",
    )
    .unwrap();
    let black_hole = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let hole = black_hole.local_addr().unwrap().port();
    let port = free_port();
    let mut cmd = Command::new(bin);
    cmd.args([
        "-k",
        "--log-facility=-",
        "--conf-file=/dev/null",
        "--no-resolv",
        "--no-hosts",
        "--no-poll",
        "--pid-file=",
        "--listen-address=127.0.0.1",
        "--bind-interfaces",
        // Authoritative for reverse zones: unknown addresses are NXDOMAIN, never forwarded.
        "--local=/in-addr.arpa/",
        "--local=/ip6.arpa/",
    ])
    .arg(format!("--port={port}"))
    .arg(format!("--addn-hosts={}", hosts.display()))
    .arg(format!("--server=/9.9.10.in-addr.arpa/127.0.0.1#{hole}"));
    // As root dnsmasq would switch to its own user; stay.
    if Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.starts_with(b"0\n"))
    {
        cmd.arg("--user=root");
    }
    let child = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Up when it answers on TCP too.
    assert!(wait_until(Duration::from_secs(10), || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    }));
    Some(Dnsmasq {
        child,
        port,
        _black_hole: black_hole,
    })
}

fn tuples() -> Vec<Vec<String>> {
    let t = 1_700_000_000;
    vec![vec![
        format!("{t},10.1.2.3,192.0.2.55,50000,443,T,O,A,B,,,,"),
        format!("{t},fd00:1::5,10.1.2.3,50001,22,T,O,A,B,,,,"),
        format!("{t},10.9.9.9,10.1.2.3,50002,22,T,I,A,B,,,,"),
        format!("{t},10.7.7.7,10.1.2.3,50003,22,T,I,A,B,,,,"),
    ]]
}

fn run(dns: &Dnsmasq, scope: &str) -> Vec<Value> {
    let mut fg = Instance::new();
    let doc = fg.path("flows.json");
    std::fs::write(&doc, document(&tuples())).unwrap();
    fg.add_input(0, &doc);
    fg.write_local_config(&format!(
        r#"[sinks.file]
type = "file"
path = "{out}"
[sinks.file.encoding]
format = "json"

[enrich.reverse_dns]
enabled = true
servers = ["127.0.0.1:{port}"]
timeout_ms = 300
addresses = "{scope}""#,
        out = fg.path("out.cef").display(),
        port = dns.port,
    ));
    fg.start();
    fg.wait_for_lines(4);
    fg.stop();
    fg.output()
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn reverse_dns_names_private_addresses_within_the_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let Some(dns) = start_dnsmasq(dir.path()) else {
        return;
    };
    let events = run(&dns, "private");
    let name = |i: usize, side: &str| events[i][format!("{side}_dns")].as_str().map(str::to_owned);
    assert_eq!(
        name(0, "src").as_deref(),
        Some("vm-web-01.internal.example")
    );
    assert_eq!(
        name(0, "dst"),
        None,
        "public addresses are not looked up by default"
    );
    assert_eq!(name(1, "src").as_deref(), Some("v6-ula.example.test"));
    assert_eq!(
        name(1, "dst").as_deref(),
        Some("vm-web-01.internal.example")
    );
    assert_eq!(
        name(2, "src"),
        None,
        "the server never answered: no name, still delivered"
    );
    assert_eq!(name(3, "src"), None, "NXDOMAIN");

    let events = run(&dns, "all");
    assert_eq!(
        events[0]["dst_dns"].as_str(),
        Some("gw.example.test"),
        "{}",
        events[0]
    );
}
