//! `[filter]`: which events go on to the sinks. Every list left empty lets everything
//! through; an event must pass every list that is set, and match no `exclude_*` list.

use flowgate_core::glob::glob_match;
use flowgate_core::{metric_names as m, Action, Direction, EventBatch, FlowEvent, FlowState};
use serde::Deserialize;
use std::net::IpAddr;

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FilterConfig {
    /// `allow`, `deny`.
    pub actions: Vec<String>,
    /// `inbound`, `outbound`.
    pub directions: Vec<String>,
    /// Names (`tcp`, `udp`, `icmp`, ...) or IANA numbers (`"47"`).
    pub protocols: Vec<String>,
    pub exclude_protocols: Vec<String>,
    /// Keep NSG Version 2 and VNet `B` (begin) tuples: they carry no counters, and the
    /// `C`/`E` updates of the same flow follow. On by default.
    pub keep_begin: bool,
    /// Source or destination inside one of these (`10.0.0.0/8`, `2001:db8::/32`, an
    /// address); `exclude_cidrs`: neither inside one of these.
    pub cidrs: Vec<String>,
    pub exclude_cidrs: Vec<String>,
    pub source_cidrs: Vec<String>,
    pub exclude_source_cidrs: Vec<String>,
    pub destination_cidrs: Vec<String>,
    pub exclude_destination_cidrs: Vec<String>,
    /// Ports or ranges (`443`, `8000-8100`).
    pub source_ports: Vec<String>,
    pub exclude_source_ports: Vec<String>,
    pub destination_ports: Vec<String>,
    pub exclude_destination_ports: Vec<String>,
    /// Rule names, case-insensitive, `*` wildcards (`UserRule_*`).
    pub rules: Vec<String>,
    pub exclude_rules: Vec<String>,
    /// NSG (or VNet flow log target) names, as in the record's resource ID.
    pub nsgs: Vec<String>,
    pub exclude_nsgs: Vec<String>,
}

impl Default for FilterConfig {
    fn default() -> Self {
        FilterConfig {
            actions: Vec::new(),
            directions: Vec::new(),
            protocols: Vec::new(),
            exclude_protocols: Vec::new(),
            keep_begin: true,
            cidrs: Vec::new(),
            exclude_cidrs: Vec::new(),
            source_cidrs: Vec::new(),
            exclude_source_cidrs: Vec::new(),
            destination_cidrs: Vec::new(),
            exclude_destination_cidrs: Vec::new(),
            source_ports: Vec::new(),
            exclude_source_ports: Vec::new(),
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
    protocols: Lists<u8>,
    keep_begin: bool,
    cidrs: Lists<Cidr>,
    source_cidrs: Lists<Cidr>,
    destination_cidrs: Lists<Cidr>,
    source_ports: Lists<(u16, u16)>,
    destination_ports: Lists<(u16, u16)>,
    rules: Lists<String>,
    nsgs: Lists<String>,
}

/// An include list and an exclude list of one kind of value.
#[derive(Debug, Clone)]
struct Lists<T> {
    include: Vec<T>,
    exclude: Vec<T>,
}

impl<T> Default for Lists<T> {
    fn default() -> Self {
        Lists {
            include: Vec::new(),
            exclude: Vec::new(),
        }
    }
}

impl<T> Lists<T> {
    fn new(include: Vec<T>, exclude: Vec<T>) -> Self {
        Lists { include, exclude }
    }

    fn is_empty(&self) -> bool {
        self.include.is_empty() && self.exclude.is_empty()
    }

    /// Some included value matches (or none are listed), and no excluded one does.
    #[inline]
    fn pass(&self, matches: impl Fn(&T) -> bool) -> bool {
        (self.include.is_empty() || self.include.iter().any(&matches))
            && !self.exclude.iter().any(matches)
    }
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
        fn each<T>(
            key: &str,
            values: &[String],
            parse: impl Fn(&str) -> Option<T>,
        ) -> Result<Vec<T>, String> {
            values
                .iter()
                .map(|v| parse(v).ok_or_else(|| format!("filter.{key}: {v:?} is not valid")))
                .collect()
        }
        let action = |v: &str| match v {
            "allow" => Some(Action::Allow),
            "deny" => Some(Action::Deny),
            _ => None,
        };
        let direction = |v: &str| match v {
            "inbound" => Some(Direction::Inbound),
            "outbound" => Some(Direction::Outbound),
            _ => None,
        };
        let name = |v: &str| (!v.is_empty()).then(|| v.to_owned());
        // `key` and its `exclude_` twin.
        fn lists<T>(
            key: &str,
            include: &[String],
            exclude: &[String],
            parse: impl Fn(&str) -> Option<T> + Copy,
        ) -> Result<Lists<T>, String> {
            Ok(Lists::new(
                each(key, include, parse)?,
                each(&format!("exclude_{key}"), exclude, parse)?,
            ))
        }
        Ok(Filter {
            actions: each("actions", &self.actions, action)?,
            directions: each("directions", &self.directions, direction)?,
            protocols: lists(
                "protocols",
                &self.protocols,
                &self.exclude_protocols,
                protocol,
            )?,
            keep_begin: self.keep_begin,
            cidrs: lists("cidrs", &self.cidrs, &self.exclude_cidrs, Cidr::parse)?,
            source_cidrs: lists(
                "source_cidrs",
                &self.source_cidrs,
                &self.exclude_source_cidrs,
                Cidr::parse,
            )?,
            destination_cidrs: lists(
                "destination_cidrs",
                &self.destination_cidrs,
                &self.exclude_destination_cidrs,
                Cidr::parse,
            )?,
            source_ports: lists(
                "source_ports",
                &self.source_ports,
                &self.exclude_source_ports,
                port_range,
            )?,
            destination_ports: lists(
                "destination_ports",
                &self.destination_ports,
                &self.exclude_destination_ports,
                port_range,
            )?,
            rules: lists("rules", &self.rules, &self.exclude_rules, name)?,
            nsgs: lists("nsgs", &self.nsgs, &self.exclude_nsgs, name)?,
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
            && self.source_cidrs.is_empty()
            && self.destination_cidrs.is_empty()
            && self.source_ports.is_empty()
            && self.destination_ports.is_empty()
            && self.rules.is_empty()
            && self.nsgs.is_empty()
    }

    /// `None` if the event goes on, else why not. `rule` and `nsg` are its group's rule and
    /// its record's resource name.
    pub fn check(&self, e: &FlowEvent, rule: &str, nsg: &str) -> Option<Dropped> {
        if !self.actions.is_empty() && !self.actions.contains(&e.action) {
            return Some(Dropped::Action);
        }
        if !self.directions.is_empty() && !self.directions.contains(&e.direction) {
            return Some(Dropped::Direction);
        }
        if !self.protocols.pass(|p| *p == e.protocol.0) {
            return Some(Dropped::Protocol);
        }
        if !self.keep_begin && e.state == Some(FlowState::Begin) {
            return Some(Dropped::Begin);
        }
        let (src, dst) = (e.src_ip, e.dst_ip);
        if !self.cidrs.pass(|c| c.contains(src) || c.contains(dst))
            || !self.source_cidrs.pass(|c| c.contains(src))
            || !self.destination_cidrs.pass(|c| c.contains(dst))
        {
            return Some(Dropped::Address);
        }
        let in_range = |port: u16| move |(lo, hi): &(u16, u16)| (*lo..=*hi).contains(&port);
        if !self.source_ports.pass(in_range(e.src_port))
            || !self.destination_ports.pass(in_range(e.dst_port))
        {
            return Some(Dropped::Port);
        }
        if !self.rules.pass(|p| glob_match(p, rule)) {
            return Some(Dropped::Rule);
        }
        if !self.nsgs.pass(|p| glob_match(p, nsg)) {
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
        for key in ["exclude_protocols", "exclude_source_cidrs", "source_ports"] {
            let text = format!("{key} = [\"nonsense\"]");
            let c: FilterConfig = toml::from_str(&text).unwrap();
            assert_eq!(
                c.build().unwrap_err(),
                format!("filter.{key}: \"nonsense\" is not valid")
            );
        }
        assert!(toml::from_str::<FilterConfig>("exclude_ports = []").is_err());
    }

    /// Events of every kind the lists tell apart: (event, rule, NSG).
    fn events() -> Vec<(FlowEvent, &'static str, &'static str)> {
        use flowgate_core::Protocol;
        let event = |src: &str, sp: u16, dst: &str, dp: u16, p: u8, d, a, st| FlowEvent {
            group: 0,
            time_ms: 0,
            src_ip: src.parse().unwrap(),
            dst_ip: dst.parse().unwrap(),
            src_port: sp,
            dst_port: dp,
            protocol: Protocol(p),
            direction: d,
            action: a,
            state: st,
            encryption: None,
            packets_src_to_dst: None,
            bytes_src_to_dst: None,
            packets_dst_to_src: None,
            bytes_dst_to_src: None,
        };
        use Action::*;
        use Direction::*;
        let (b, c) = (Some(FlowState::Begin), Some(FlowState::Continuing));
        vec![
            (
                event(
                    "10.0.0.4",
                    50000,
                    "13.67.143.118",
                    443,
                    6,
                    Outbound,
                    Allow,
                    b,
                ),
                "UserRule_web",
                "WEB-NSG",
            ),
            (
                event("203.0.113.9", 4444, "10.1.0.4", 3389, 6, Inbound, Deny, c),
                "DefaultRule_DenyAllInBound",
                "WEB-NSG",
            ),
            (
                event(
                    "10.0.0.5",
                    53000,
                    "168.63.129.16",
                    53,
                    17,
                    Outbound,
                    Allow,
                    c,
                ),
                "DefaultRule_AllowVnetOutBound",
                "DB-NSG",
            ),
            (
                event(
                    "2603:1030:20e:3::23c",
                    443,
                    "fd00::4",
                    50002,
                    6,
                    Inbound,
                    Allow,
                    c,
                ),
                "UserRule_v6",
                "DB-NSG",
            ),
            (
                event("fd00::4", 0, "2001:db8::1", 0, 58, Outbound, Deny, None),
                "UserRule_icmp",
                "EDGE-NSG",
            ),
            (
                event("10.1.0.5", 1234, "10.1.0.4", 22, 6, Inbound, Allow, c),
                "UserRule_ssh",
                "WEB-NSG",
            ),
        ]
    }

    /// Which of `events()` pass a filter given as TOML.
    fn passing(toml_text: &str) -> Vec<usize> {
        let config: FilterConfig = toml::from_str(toml_text).unwrap();
        let filter = config.build().unwrap();
        events()
            .iter()
            .enumerate()
            .filter(|(_, (e, rule, nsg))| filter.check(e, rule, nsg).is_none())
            .map(|(i, _)| i)
            .collect()
    }

    #[test]
    fn every_list_includes_and_excludes() {
        let all: Vec<usize> = (0..events().len()).collect();
        for (filter, want) in [
            ("", all.clone()),
            ("actions = [\"deny\"]", vec![1, 4]),
            ("directions = [\"inbound\"]", vec![1, 3, 5]),
            ("protocols = [\"udp\", \"58\"]", vec![2, 4]),
            ("exclude_protocols = [\"tcp\"]", vec![2, 4]),
            ("keep_begin = false", vec![1, 2, 3, 4, 5]),
            ("cidrs = [\"10.1.0.0/16\"]", vec![1, 5]),
            ("cidrs = [\"fd00::/8\"]", vec![3, 4]),
            ("exclude_cidrs = [\"10.0.0.0/8\", \"2001:db8::/32\"]", vec![3]),
            ("source_cidrs = [\"10.0.0.0/8\"]", vec![0, 2, 5]),
            ("exclude_source_cidrs = [\"10.0.0.0/8\", \"fd00::4\"]", vec![1, 3]),
            ("destination_cidrs = [\"10.1.0.4/32\", \"fd00::/7\"]", vec![1, 3, 5]),
            ("exclude_destination_cidrs = [\"10.1.0.4\"]", vec![0, 2, 3, 4]),
            ("source_ports = [\"50000-60000\"]", vec![0, 2]),
            ("exclude_source_ports = [\"0-1023\"]", vec![0, 1, 2, 5]),
            ("destination_ports = [\"22\", \"443\"]", vec![0, 5]),
            ("exclude_destination_ports = [\"0-1023\"]", vec![1, 3]),
            ("rules = [\"userrule_*\"]", vec![0, 3, 4, 5]),
            ("exclude_rules = [\"DefaultRule_*\", \"*_v6\"]", vec![0, 4, 5]),
            ("nsgs = [\"web-nsg\"]", vec![0, 1, 5]),
            ("exclude_nsgs = [\"WEB-*\"]", vec![2, 3, 4]),
            // Every list set must pass, and no exclude match.
            ("protocols = [\"tcp\"]\nexclude_nsgs = [\"DB-NSG\"]\nexclude_source_cidrs = [\"10.1.0.0/16\"]", vec![0, 1]),
        ] {
            assert_eq!(passing(filter), want, "{filter}");
        }
    }
}
