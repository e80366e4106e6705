//! `flowgate_transform::inventory::Inventory::parse` on arbitrary UTF-8 CSV: errors are
//! fine, panics are not. When it parses: every data line whose first field is a plain
//! address block is found by looking up that block's first address, every asset found
//! has a name, and an empty inventory finds nothing.
#![no_main]

use flowgate_transform::inventory::Inventory;
use flowgate_transform::Cidr;
use libfuzzer_sys::{fuzz_target, Corpus};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

fuzz_target!(|data: &[u8]| -> Corpus {
    let Ok(text) = std::str::from_utf8(data) else {
        return Corpus::Reject;
    };
    let inventory = match Inventory::parse(text, "fuzz.csv") {
        Ok(inv) => inv,
        Err(e) => {
            assert!(e.starts_with("fuzz.csv:"), "error does not name the line: {e}");
            return Corpus::Keep;
        }
    };
    assert_eq!(inventory.is_empty(), inventory.len() == 0);
    let mut blocks = 0;
    for line in text.lines() {
        // The first field, when it is unquoted and not a comment: a block the
        // inventory must hold (the header's first field never parses as one).
        let first = line.split(',').next().unwrap_or_default();
        if first.contains('"') || first.trim_start().starts_with('#') {
            continue;
        }
        let Some(cidr) = Cidr::parse(first.trim()) else {
            continue;
        };
        blocks += 1;
        let ip = IpAddr::V6(Ipv6Addr::from(cidr.network_bits()));
        let asset = inventory
            .lookup(ip)
            .unwrap_or_else(|| panic!("{first:?} parsed but {ip} is not found"));
        assert!(!asset.name.is_empty(), "asset without a name for {first:?}");
    }
    assert!(blocks <= inventory.len(), "{blocks} blocks but {} entries", inventory.len());
    for ip in [
        IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        IpAddr::V4(Ipv4Addr::new(10, 1, 0, 4)),
        IpAddr::V4(Ipv4Addr::BROADCAST),
        IpAddr::V6(Ipv6Addr::UNSPECIFIED),
        IpAddr::V6(Ipv6Addr::from(u128::MAX)),
    ] {
        match inventory.lookup(ip) {
            Some(asset) => assert!(!asset.name.is_empty(), "asset without a name for {ip}"),
            None => {}
        }
        if inventory.is_empty() {
            assert!(inventory.lookup(ip).is_none(), "empty inventory found {ip}");
        }
    }
    Corpus::Keep
});
