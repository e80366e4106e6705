//! `[enrich]`: what flowgate adds to each event beyond the flow log's own fields, each
//! part switched on or off: the IANA service name of the destination port, the class of
//! each address (private, public, Azure platform, ...), and the kind of rule.

use crate::epoch::{Epoch, Recent, TableFull};
use crate::geoip::GeoLookup;
use crate::inventory::InventoryFile;
use crate::lookup_cache::LookupCache;
use crate::rdns::{RdnsConfig, ReverseDns};
use flowgate_core::{AddrClass, AddressFacts, Enrichment, EventBatch, LogKind, RuleKind, Service};
use serde::Deserialize;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EnrichConfig {
    /// `https`, `ssh`, `rdp`, ... for well-known destination ports.
    pub service_names: bool,
    /// `private`, `public`, `azure_platform`, `loopback`, `link_local`, `multicast`,
    /// `shared` (carrier-grade NAT), `unspecified`, for source and destination.
    pub address_classes: bool,
    /// `default` (`DefaultRule_*`), `user` (`UserRule_*`), `vnet_acl` (VNet flow logs),
    /// `other`.
    pub rule_kinds: bool,
    /// An asset inventory (CSV: `cidr,name,owner,environment,tags`), looked up for both
    /// addresses by longest prefix; see `inventory.rs`.
    pub inventory: Option<PathBuf>,
    /// MaxMind-format City and ASN databases (GeoLite2/GeoIP2 or ip-location-db
    /// builds), looked up for public addresses; see `geoip.rs`.
    pub geoip_city: Option<PathBuf>,
    pub geoip_asn: Option<PathBuf>,
    /// `[enrich.reverse_dns]`: PTR names, asynchronous with a timeout; see `rdns.rs`.
    pub reverse_dns: RdnsConfig,
    /// How often to check whether the inventory or a GeoIP database changed.
    pub inventory_reload_secs: f64,
    /// Addresses remembered by the lookup cache.
    pub cache_size: usize,
}

impl Default for EnrichConfig {
    fn default() -> Self {
        EnrichConfig {
            service_names: false,
            address_classes: false,
            rule_kinds: false,
            inventory: None,
            geoip_city: None,
            geoip_asn: None,
            reverse_dns: RdnsConfig::default(),
            inventory_reload_secs: 60.0,
            cache_size: 65_536,
        }
    }
}

impl EnrichConfig {
    pub fn any(&self) -> bool {
        self.service_names
            || self.address_classes
            || self.rule_kinds
            || self.inventory.is_some()
            || self.geoip()
            || self.reverse_dns.enabled
    }

    fn geoip(&self) -> bool {
        self.geoip_city.is_some() || self.geoip_asn.is_some()
    }

    /// Checks without I/O; errors name the key.
    pub fn validate(&self) -> Result<(), String> {
        if !(self.inventory_reload_secs > 0.0 && self.inventory_reload_secs <= 86_400.0) {
            return Err("enrich.inventory_reload_secs must be in (0, 86400]".into());
        }
        if !(1..=16_777_216).contains(&self.cache_size) {
            return Err("enrich.cache_size must be in 1..=16777216".into());
        }
        self.reverse_dns.validate()
    }

    /// Reads the files the settings name, as `build` does: for `flowgate validate`, which
    /// connects to nothing but can catch a missing or malformed file.
    pub fn check_files(&self) -> Result<(), String> {
        self.open_files().map(drop)
    }

    fn open_files(&self) -> Result<(Option<InventoryFile>, Option<GeoLookup>), String> {
        let reload = Duration::from_secs_f64(self.inventory_reload_secs);
        let inventory = match &self.inventory {
            Some(path) => Some(InventoryFile::open(path, reload)?),
            None => None,
        };
        let geo = match self.geoip() {
            true => Some(GeoLookup::open(
                self.geoip_city.as_deref(),
                self.geoip_asn.as_deref(),
                reload,
            )?),
            false => None,
        };
        Ok((inventory, geo))
    }

    /// The enricher; reads the inventory and databases now, so that a bad file is a
    /// start-up error.
    pub fn build(&self) -> Result<Enricher, String> {
        self.validate()?;
        let (inventory, geo) = self.open_files()?;
        let rdns = match self.reverse_dns.enabled {
            true => {
                let runtime = tokio::runtime::Handle::try_current()
                    .map_err(|_| "enrich.reverse_dns needs the service's runtime".to_string())?;
                Some(self.reverse_dns.build(runtime)?)
            }
            false => None,
        };
        Ok(Enricher {
            config: self.clone(),
            inventory,
            geo,
            addresses: LookupCache::new("address", self.cache_size),
            rdns,
            epoch: Epoch::new(0, self.cache_size.min(EPOCH_ADDRESSES), 0),
            table_entries: 0,
            batch_number: 0,
        })
    }
}

/// Adds an [`Enrichment`] per event (after filtering: one per kept event).
pub struct Enricher {
    config: EnrichConfig,
    inventory: Option<InventoryFile>,
    geo: Option<GeoLookup>,
    /// What the inventory and the GeoIP databases say about each address: the bounded
    /// LRU cache, with its hit, miss and eviction counts, behind `epoch`.
    addresses: LookupCache<AddressInfo>,
    rdns: Option<ReverseDns>,
    /// The addresses of recent batches and their facts, shared by those batches.
    epoch: Epoch,
    /// Facts a new epoch's table holds at least (raised when a batch overflowed one).
    table_entries: usize,
    /// Numbers batches (see `Recent::checked`).
    batch_number: u32,
}

/// Addresses an epoch remembers at most (16 bytes each in its map).
const EPOCH_ADDRESSES: usize = 16_384;

/// An address's class and the index of its facts in the batch's table (`Enrichment::src`).
type Side = (AddrClass, Option<u32>);

/// Everything known about one address from local data (the inventory and GeoIP).
#[derive(Clone)]
struct AddressInfo {
    class: AddrClass,
    facts: AddressFacts,
}

impl Enricher {
    pub fn enrich(&mut self, batch: &mut EventBatch) {
        batch.enrichment.clear();
        batch.addresses = None;
        if !self.config.any() {
            return;
        }
        self.reload_changed_files();
        if let Some(rdns) = &mut self.rdns {
            rdns.prepare(batch.events.iter().flat_map(|e| [e.src_ip, e.dst_ip]));
        }
        let looks_up = self.inventory.is_some() || self.geo.is_some() || self.rdns.is_some();
        if looks_up && self.epoch.is_full() {
            self.next_epoch(self.table_entries);
        }
        batch.enrichment = match self.enrich_events(batch, looks_up) {
            Ok(out) => out,
            Err(TableFull) => {
                // A new epoch's table holds two addresses per event: the batch fits.
                self.next_epoch(2 * batch.events.len());
                let out = self
                    .enrich_events(batch, looks_up)
                    .expect("a batch fits in a new epoch");
                // Size later tables for batches like this one (within reason), so that
                // a small `cache_size` does not make every batch overflow and run twice.
                self.table_entries = (2 * self.epoch.used()).clamp(self.table_entries, 1 << 18);
                out
            }
        };
        if looks_up {
            batch.addresses = Some(Arc::clone(self.epoch.table()));
        }
        self.after_batch();
    }

    fn enrich_events(
        &mut self,
        batch: &EventBatch,
        looks_up: bool,
    ) -> Result<Vec<Enrichment>, TableFull> {
        self.batch_number = self.batch_number.wrapping_add(1);
        let mut out = Vec::with_capacity(batch.events.len());
        // The previous event's answer per side: a NIC's own address recurs on one side of
        // most of its events, and comparing is cheaper than hashing.
        let mut last: [Option<(IpAddr, Side)>; 2] = [None, None];
        // The rule kind of the current group (events come group by group).
        let mut group_kind: Option<(u32, Option<RuleKind>)> = None;
        for e in &batch.events {
            let rule_kind = match group_kind {
                Some((group, kind)) if group == e.group => kind,
                _ => {
                    let (g, r) = batch.context_of(e);
                    let kind = self
                        .config
                        .rule_kinds
                        .then(|| rule_kind(&g.rule, r.kind == LogKind::VNet));
                    group_kind = Some((e.group, kind));
                    kind
                }
            };
            let ((src_class, src), (dst_class, dst)) = if looks_up {
                let mut answer = |side: usize, ip: IpAddr, this: &mut Self| match last[side] {
                    Some((known, answer)) if known == ip => Ok(answer),
                    _ => {
                        let answer = this.side(ip)?;
                        last[side] = Some((ip, answer));
                        Ok(answer)
                    }
                };
                (answer(0, e.src_ip, self)?, answer(1, e.dst_ip, self)?)
            } else {
                (
                    (address_class(e.src_ip), None),
                    (address_class(e.dst_ip), None),
                )
            };
            let config = &self.config;
            out.push(Enrichment {
                service: config
                    .service_names
                    .then(|| Service::of(e.protocol, e.dst_port))
                    .flatten(),
                src_class: config.address_classes.then_some(src_class),
                dst_class: config.address_classes.then_some(dst_class),
                rule_kind,
                src,
                dst,
            });
        }
        Ok(out)
    }

    /// Starts a new epoch whose table holds at least `min_entries` facts.
    fn next_epoch(&mut self, min_entries: usize) {
        let max = self.config.cache_size.min(EPOCH_ADDRESSES);
        self.epoch = Epoch::new(self.epoch.id() + 1, max, min_entries);
    }

    /// The class of `ip` and the index of its facts in the epoch's table.
    fn side(&mut self, ip: IpAddr) -> Result<Side, TableFull> {
        let batch = self.batch_number;
        let recent = match self.epoch.get_mut(ip) {
            Some(r) => {
                self.addresses.count_hit();
                let found = *r;
                let Some(rdns) = self.rdns.as_mut().filter(|_| found.checked != batch) else {
                    return Ok((found.class, found.index()));
                };
                // A name may have arrived or expired since the last batch.
                let name = rdns.name(ip);
                let facts = found.index().map(|i| self.epoch.facts(i));
                if facts.and_then(|f| f.dns.as_ref()) == name.as_ref() {
                    found.checked_in(batch)
                } else {
                    let facts = AddressFacts {
                        dns: name,
                        ..facts.cloned().unwrap_or_default()
                    };
                    Recent::new(found.class, self.epoch.add(facts)?, batch)
                }
            }
            None => {
                let AddressInfo { class, mut facts } = self.address(ip);
                if let Some(rdns) = &mut self.rdns {
                    facts.dns = rdns.name(ip);
                }
                Recent::new(class, self.epoch.add(facts)?, batch)
            }
        };
        self.epoch.insert(ip, recent);
        Ok((recent.class, recent.index()))
    }

    /// The class, inventory entry and GeoIP data of `ip`, through the cache.
    fn address(&mut self, ip: IpAddr) -> AddressInfo {
        let (inventory, geo) = (&self.inventory, &self.geo);
        if inventory.is_none() && geo.is_none() {
            return AddressInfo {
                class: address_class(ip),
                facts: AddressFacts::default(),
            };
        }
        self.addresses.get_or_insert_with(ip, || {
            let class = address_class(ip);
            AddressInfo {
                class,
                facts: AddressFacts {
                    asset: inventory.as_ref().and_then(|i| i.lookup(ip)),
                    // Private addresses are in no GeoIP database.
                    geo: geo
                        .as_ref()
                        .filter(|_| class == AddrClass::Public)
                        .and_then(|g| g.lookup(ip)),
                    dns: None,
                },
            }
        })
    }

    /// Reloads the inventory or a database whose file changed (checked at most every
    /// `inventory_reload_secs`): the cache and the epoch then start empty, so the batch
    /// about to be enriched already sees the new data.
    fn reload_changed_files(&mut self) {
        let mut changed = false;
        if let Some(i) = &mut self.inventory {
            changed |= i.reload_if_changed();
        }
        if let Some(g) = &mut self.geo {
            changed |= g.reload_if_changed();
        }
        if changed {
            self.addresses.clear();
            self.next_epoch(self.table_entries);
        }
    }

    /// Publishes the cache counters.
    fn after_batch(&mut self) {
        self.addresses.publish();
        if let Some(rdns) = &mut self.rdns {
            rdns.after_batch();
        }
    }
}

/// The class of an address (it runs for both addresses of every event: matched on the
/// leading bits, not by scanning a table).
pub fn address_class(ip: IpAddr) -> AddrClass {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, c, d] = v4.octets();
            match (a, b) {
                (168, 63) if c == 129 && d == 16 => AddrClass::AzurePlatform,
                (169, 254) if c == 169 && d == 254 => AddrClass::AzurePlatform,
                (10, _) => AddrClass::Private,
                (172, 16..=31) | (192, 168) => AddrClass::Private,
                (100, 64..=127) => AddrClass::Shared,
                (127, _) => AddrClass::Loopback,
                (169, 254) => AddrClass::LinkLocal,
                (224..=239, _) => AddrClass::Multicast,
                (0, 0) if c == 0 && d == 0 => AddrClass::Unspecified,
                (0, _) | (240..=255, _) | (198, 18..=19) => AddrClass::Reserved,
                (192, 0) if c == 0 => AddrClass::Reserved,
                _ => AddrClass::Public,
            }
        }
        IpAddr::V6(v6) => {
            // ::ffff:a.b.c.d is an IPv4 address (as the inventory and filters read it).
            if let Some(v4) = v6.to_ipv4_mapped() {
                return address_class(IpAddr::V4(v4));
            }
            let first = v6.segments()[0];
            if v6.is_unspecified() {
                AddrClass::Unspecified
            } else if v6.is_loopback() {
                AddrClass::Loopback
            } else if first & 0xfe00 == 0xfc00 {
                AddrClass::Private
            } else if first & 0xffc0 == 0xfe80 {
                AddrClass::LinkLocal
            } else if first & 0xff00 == 0xff00 {
                AddrClass::Multicast
            } else {
                AddrClass::Public
            }
        }
    }
}

fn rule_kind(rule: &str, vnet: bool) -> RuleKind {
    if rule.starts_with("DefaultRule_") {
        RuleKind::Default
    } else if rule.starts_with("UserRule_") {
        RuleKind::User
    } else if vnet {
        RuleKind::VnetAcl
    } else {
        RuleKind::Other
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn address_classes() {
        let class = |s: &str| address_class(s.parse().unwrap());
        assert_eq!(class("10.1.2.3"), AddrClass::Private);
        assert_eq!(class("172.31.255.255"), AddrClass::Private);
        assert_eq!(class("172.32.0.1"), AddrClass::Public);
        assert_eq!(class("168.63.129.16"), AddrClass::AzurePlatform);
        assert_eq!(class("169.254.169.254"), AddrClass::AzurePlatform);
        assert_eq!(class("169.254.1.1"), AddrClass::LinkLocal);
        assert_eq!(class("100.100.0.1"), AddrClass::Shared);
        assert_eq!(class("13.67.143.118"), AddrClass::Public);
        assert_eq!(class("fd00::1"), AddrClass::Private);
        assert_eq!(class("fe80::1"), AddrClass::LinkLocal);
        assert_eq!(class("2001:4860::8888"), AddrClass::Public);
        assert_eq!(class("::1"), AddrClass::Loopback);
        assert_eq!(class("239.1.1.1"), AddrClass::Multicast);
        assert_eq!(class("0.0.0.0"), AddrClass::Unspecified);
        for reserved in [
            "0.1.2.3",
            "192.0.0.8",
            "198.18.0.1",
            "198.19.255.255",
            "240.0.0.1",
            "255.255.255.255",
        ] {
            assert_eq!(class(reserved), AddrClass::Reserved, "{reserved}");
        }
        for public in [
            "192.0.1.1",
            "198.17.0.1",
            "198.20.0.1",
            "223.255.255.255",
            "192.0.2.1",
        ] {
            assert_eq!(class(public), AddrClass::Public, "{public}");
        }
        assert_eq!(class("::ffff:10.0.0.1"), AddrClass::Private);
        assert_eq!(class("::ffff:168.63.129.16"), AddrClass::AzurePlatform);
        assert_eq!(class("::ffff:13.67.143.118"), AddrClass::Public);
    }

    #[test]
    fn rule_kinds() {
        assert_eq!(
            rule_kind("DefaultRule_AllowInternetOutBound", false),
            RuleKind::Default
        );
        assert_eq!(rule_kind("UserRule_allow-https", false), RuleKind::User);
        assert_eq!(rule_kind("BlockHighRiskPorts", true), RuleKind::VnetAcl);
        assert_eq!(rule_kind("Something", false), RuleKind::Other);
    }
}
