//! `[filter]`: which events go on to the sinks. Every list left empty lets everything
//! through; an event must pass every list that is set, and match no `exclude_*` list.

use flowgate_core::glob::glob_match;
use flowgate_core::{metric_names as m, Action, Direction, EventBatch, FlowEvent, FlowState};
use serde::Deserialize;
use std::net::IpAddr;

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilterConfig {
    /// `allow`, `deny`.
    #[serde(default)]
    pub actions: Vec<String>,
    /// `inbound`, `outbound`.
    #[serde(default)]
    pub directions: Vec<String>,
    /// Names (`tcp`, `udp`, `icmp`, ...) or IANA numbers (`"47"`).
    #[serde(default)]
    pub protocols: Vec<String>,
    /// Keep NSG Version 2 and VNet `B` (begin) tuples: they carry no counters, and the
    /// `C`/`E` updates of the same flow follow. On by default.
    #[serde(default = "yes")]
    pub keep_begin: bool,
    /// Source or destination inside one of these (`10.0.0.0/8`, `2001:db8::/32`, an address).
    #[serde(default)]
    pub cidrs: Vec<String>,
    #[serde(default)]
    pub exclude_cidrs: Vec<String>,
    #[serde(default)]
    pub source_cidrs: Vec<String>,
    #[serde(default)]
    pub destination_cidrs: Vec<String>,
    /// Destination port or range (`443`, `8000-8100`).
    #[serde(default)]
    pub destination_ports: Vec<String>,
    #[serde(default)]
    pub exclude_destination_ports: Vec<String>,
    /// Rule names, case-insensitive, `*` wildcards (`UserRule_*`).
    #[serde(default)]
    pub rules: Vec<String>,
    #[serde(default)]
    pub exclude_rules: Vec<String>,
    /// NSG (or VNet flow log target) names, as in the record's resource ID.
    #[serde(default)]
    pub nsgs: Vec<String>,
    #[serde(default)]
    pub exclude_nsgs: Vec<String>,
}

fn yes() -> bool {
    true
}

impl Default for FilterConfig {
    fn default() -> Self {
        FilterConfig {
            actions: Vec::new(),
            directions: Vec::new(),
            protocols: Vec::new(),
            keep_begin: true,
            cidrs: Vec::new(),
            exclude_cidrs: Vec::new(),
            source_cidrs: Vec::new(),
            destination_cidrs: Vec::new(),
            destination_ports: Vec::new(),
            exclude_destination_ports: Vec::new(),
            rules: Vec::new(),
            exclude_rules: Vec::new(),
            nsgs: Vec::new(),
            exclude_nsgs: Vec::new(),
        }
    }
}

/// An address block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    /// The address as 128 bits (IPv4 mapped into `::ffff:0:0/96`).
    bits: u128,
    /// Prefix length in those 128 bits.
    len: u8,
}

impl Cidr {
    pub fn parse(s: &str) -> Option<Cidr> {
        let (addr, len) = match s.split_once('/') {
            Some((a, l)) => (a, Some(l.parse::<u8>().ok()?)),
            None => (s, None),
        };
        let ip: IpAddr = addr.trim().parse().ok()?;
        let (bits, max, offset) = match ip {
            IpAddr::V4(v4) => (u128::from(v4.to_ipv6_mapped()), 32, 96),
            IpAddr::V6(v6) => (u128::from(v6), 128, 0),
        };
        let len = len.unwrap_or(max);
        if len > max {
            return None;
        }
        let len = len + offset;
        Some(Cidr {
            bits: bits & mask(len),
            len,
        })
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        bits_of(ip) & mask(self.len) == self.bits
    }

    /// Prefix length in the 128-bit form (IPv4 blocks: 96 + their length).
    pub fn prefix_len(&self) -> u8 {
        self.len
    }

    /// The block's address bits (host bits zero) in the 128-bit form.
    pub fn network_bits(&self) -> u128 {
        self.bits
    }
}

pub(crate) fn bits_of(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(v4) => u128::from(v4.to_ipv6_mapped()),
        IpAddr::V6(v6) => u128::from(v6),
    }
}

/// The network mask of a prefix of `len` bits in the 128-bit form.
pub(crate) fn mask(len: u8) -> u128 {
    if len == 0 {
        0
    } else {
        u128::MAX << (128 - u32::from(len))
    }
}

/// The checks of a [`FilterConfig`], parsed once.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    actions: Vec<Action>,
    directions: Vec<Direction>,
    protocols: Vec<u8>,
    keep_begin: bool,
    cidrs: Vec<Cidr>,
    exclude_cidrs: Vec<Cidr>,
    source_cidrs: Vec<Cidr>,
    destination_cidrs: Vec<Cidr>,
    ports: Vec<(u16, u16)>,
    exclude_ports: Vec<(u16, u16)>,
    rules: Vec<String>,
    exclude_rules: Vec<String>,
    nsgs: Vec<String>,
    exclude_nsgs: Vec<String>,
}

/// Why an event was filtered out (the `reason` label of `flowgate_events_filtered_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dropped {
    Action,
    Direction,
    Protocol,
    Begin,
    Address,
    Port,
    Rule,
    Nsg,
}

impl Dropped {
    pub fn reason(self) -> &'static str {
        match self {
            Dropped::Action => "action",
            Dropped::Direction => "direction",
            Dropped::Protocol => "protocol",
            Dropped::Begin => "begin",
            Dropped::Address => "address",
            Dropped::Port => "port",
            Dropped::Rule => "rule",
            Dropped::Nsg => "nsg",
        }
    }
}

const PROTOCOL_NAMES: [(&str, u8); 6] = [
    ("icmp", 1),
    ("tcp", 6),
    ("udp", 17),
    ("gre", 47),
    ("esp", 50),
    ("icmpv6", 58),
];

impl FilterConfig {
    /// Checks every value; errors name the key (`filter.cidrs: "10.0.0.0/33" ...`).
    pub fn build(&self) -> Result<Filter, String> {
        let each = |key: &str, values: &[String], parse: &dyn Fn(&str) -> bool| match values
            .iter()
            .find(|v| !parse(v))
        {
            Some(bad) => Err(format!("filter.{key}: {bad:?} is not valid")),
            None => Ok(()),
        };
        each("actions", &self.actions, &|v| matches!(v, "allow" | "deny"))?;
        each("directions", &self.directions, &|v| {
            matches!(v, "inbound" | "outbound")
        })?;
        each("protocols", &self.protocols, &|v| protocol(v).is_some())?;
        for (key, list) in [
            ("cidrs", &self.cidrs),
            ("exclude_cidrs", &self.exclude_cidrs),
            ("source_cidrs", &self.source_cidrs),
            ("destination_cidrs", &self.destination_cidrs),
        ] {
            each(key, list, &|v| Cidr::parse(v).is_some())?;
        }
        for (key, list) in [
            ("destination_ports", &self.destination_ports),
            ("exclude_destination_ports", &self.exclude_destination_ports),
        ] {
            each(key, list, &|v| port_range(v).is_some())?;
        }
        for (key, list) in [
            ("rules", &self.rules),
            ("exclude_rules", &self.exclude_rules),
            ("nsgs", &self.nsgs),
            ("exclude_nsgs", &self.exclude_nsgs),
        ] {
            each(key, list, &|v| !v.is_empty())?;
        }
        let cidrs = |l: &[String]| l.iter().filter_map(|c| Cidr::parse(c)).collect();
        let ports = |l: &[String]| l.iter().filter_map(|p| port_range(p)).collect();
        Ok(Filter {
            actions: self
                .actions
                .iter()
                .map(|a| {
                    if a == "deny" {
                        Action::Deny
                    } else {
                        Action::Allow
                    }
                })
                .collect(),
            directions: self
                .directions
                .iter()
                .map(|d| {
                    if d == "inbound" {
                        Direction::Inbound
                    } else {
                        Direction::Outbound
                    }
                })
                .collect(),
            protocols: self.protocols.iter().filter_map(|p| protocol(p)).collect(),
            keep_begin: self.keep_begin,
            cidrs: cidrs(&self.cidrs),
            exclude_cidrs: cidrs(&self.exclude_cidrs),
            source_cidrs: cidrs(&self.source_cidrs),
            destination_cidrs: cidrs(&self.destination_cidrs),
            ports: ports(&self.destination_ports),
            exclude_ports: ports(&self.exclude_destination_ports),
            rules: self.rules.clone(),
            exclude_rules: self.exclude_rules.clone(),
            nsgs: self.nsgs.clone(),
            exclude_nsgs: self.exclude_nsgs.clone(),
        })
    }
}

fn protocol(v: &str) -> Option<u8> {
    v.parse::<u8>().ok().or_else(|| {
        PROTOCOL_NAMES
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(v))
            .map(|(_, p)| *p)
    })
}

fn port_range(v: &str) -> Option<(u16, u16)> {
    let (lo, hi) = match v.split_once('-') {
        Some((a, b)) => (a.trim().parse().ok()?, b.trim().parse().ok()?),
        None => {
            let p = v.trim().parse().ok()?;
            (p, p)
        }
    };
    (lo <= hi).then_some((lo, hi))
}

impl Filter {
    /// True if nothing is filtered: the batch can skip the checks.
    pub fn is_pass_all(&self) -> bool {
        self.keep_begin
            && self.actions.is_empty()
            && self.directions.is_empty()
            && self.protocols.is_empty()
            && self.cidrs.is_empty()
            && self.exclude_cidrs.is_empty()
            && self.source_cidrs.is_empty()
            && self.destination_cidrs.is_empty()
            && self.ports.is_empty()
            && self.exclude_ports.is_empty()
            && self.rules.is_empty()
            && self.exclude_rules.is_empty()
            && self.nsgs.is_empty()
            && self.exclude_nsgs.is_empty()
    }

    /// `None` if the event goes on, else why not. `rule` and `nsg` are its group's rule and
    /// its record's resource name.
    pub fn check(&self, e: &FlowEvent, rule: &str, nsg: &str) -> Option<Dropped> {
        let any_in = |l: &[Cidr], ip: IpAddr| l.iter().any(|c| c.contains(ip));
        if !self.actions.is_empty() && !self.actions.contains(&e.action) {
            return Some(Dropped::Action);
        }
        if !self.directions.is_empty() && !self.directions.contains(&e.direction) {
            return Some(Dropped::Direction);
        }
        if !self.protocols.is_empty() && !self.protocols.contains(&e.protocol.0) {
            return Some(Dropped::Protocol);
        }
        if !self.keep_begin && e.state == Some(FlowState::Begin) {
            return Some(Dropped::Begin);
        }
        let (src, dst) = (e.src_ip, e.dst_ip);
        if (!self.cidrs.is_empty() && !any_in(&self.cidrs, src) && !any_in(&self.cidrs, dst))
            || any_in(&self.exclude_cidrs, src)
            || any_in(&self.exclude_cidrs, dst)
            || (!self.source_cidrs.is_empty() && !any_in(&self.source_cidrs, src))
            || (!self.destination_cidrs.is_empty() && !any_in(&self.destination_cidrs, dst))
        {
            return Some(Dropped::Address);
        }
        let in_ranges =
            |l: &[(u16, u16)], p: u16| l.iter().any(|(lo, hi)| (*lo..=*hi).contains(&p));
        if (!self.ports.is_empty() && !in_ranges(&self.ports, e.dst_port))
            || in_ranges(&self.exclude_ports, e.dst_port)
        {
            return Some(Dropped::Port);
        }
        let matches = |l: &[String], v: &str| l.iter().any(|p| glob_match(p, v));
        if (!self.rules.is_empty() && !matches(&self.rules, rule))
            || matches(&self.exclude_rules, rule)
        {
            return Some(Dropped::Rule);
        }
        if (!self.nsgs.is_empty() && !matches(&self.nsgs, nsg)) || matches(&self.exclude_nsgs, nsg)
        {
            return Some(Dropped::Nsg);
        }
        None
    }

    /// Removes the events that do not pass, counting them by reason.
    pub fn apply(&self, batch: &mut EventBatch) {
        if self.is_pass_all() {
            return;
        }
        let mut counts = [0u64; 8];
        let (groups, records) = (&batch.groups, &batch.records);
        batch.events.retain(|e| {
            let g = &groups[e.group as usize];
            let r = &records[g.record as usize];
            match self.check(e, &g.rule, &r.resource_name) {
                None => true,
                Some(why) => {
                    counts[why as usize] += 1;
                    false
                }
            }
        });
        for (i, n) in counts.iter().enumerate() {
            if *n > 0 {
                let reason = REASONS[i].reason();
                metrics::counter!(m::EVENTS_FILTERED_TOTAL, "reason" => reason).increment(*n);
            }
        }
    }
}

const REASONS: [Dropped; 8] = [
    Dropped::Action,
    Dropped::Direction,
    Dropped::Protocol,
    Dropped::Begin,
    Dropped::Address,
    Dropped::Port,
    Dropped::Rule,
    Dropped::Nsg,
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidrs_of_both_families() {
        let c = Cidr::parse("10.1.0.0/16").unwrap();
        assert!(c.contains("10.1.200.3".parse().unwrap()));
        assert!(!c.contains("10.2.0.1".parse().unwrap()));
        assert!(
            !c.contains("::a01:1".parse().unwrap()),
            "not the IPv6 compatible form"
        );
        let c = Cidr::parse("2001:db8::/32").unwrap();
        assert!(c.contains("2001:db8:1::5".parse().unwrap()));
        assert!(!c.contains("2001:db9::5".parse().unwrap()));
        assert!(Cidr::parse("0.0.0.0/0")
            .unwrap()
            .contains("8.8.8.8".parse().unwrap()));
        assert!(!Cidr::parse("0.0.0.0/0")
            .unwrap()
            .contains("::1".parse().unwrap()));
        assert!(Cidr::parse("168.63.129.16")
            .unwrap()
            .contains("168.63.129.16".parse().unwrap()));
        for bad in ["10.0.0.0/33", "::/129", "10.0.0/8", "x", "10.0.0.0/-1"] {
            assert_eq!(Cidr::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn bad_values_name_their_key() {
        let c = FilterConfig {
            destination_ports: vec!["443".into(), "9000-8000".into()],
            ..FilterConfig::default()
        };
        assert_eq!(
            c.build().unwrap_err(),
            "filter.destination_ports: \"9000-8000\" is not valid"
        );
        let c = FilterConfig {
            protocols: vec!["tcp".into(), "sctp".into()],
            ..FilterConfig::default()
        };
        assert!(c.build().unwrap_err().starts_with("filter.protocols"));
        assert!(FilterConfig::default().build().unwrap().is_pass_all());
        let drop_begin = FilterConfig {
            keep_begin: false,
            ..FilterConfig::default()
        };
        assert!(!drop_begin.build().unwrap().is_pass_all());
    }
}
