//! What `[enrich]` adds to an event (computed in flowgate-transform, written by the
//! encoders).

use crate::event::Protocol;
use std::sync::{Arc, OnceLock};

/// One event's additions; `None` where that enrichment is off or has no answer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Enrichment {
    /// IANA service name of the destination port.
    pub service: Option<Service>,
    pub src_class: Option<AddrClass>,
    pub dst_class: Option<AddrClass>,
    pub rule_kind: Option<RuleKind>,
    /// What is known about each address: an index into the batch's [`AddressTable`]
    /// (shared, so that an event carries no reference counts).
    pub src: Option<u32>,
    pub dst: Option<u32>,
}

/// The IANA service name of a well-known destination port: an index into a fixed table,
/// so that an encoder can keep each one's field rendered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Service(u8);

impl Service {
    pub const COUNT: usize = SERVICES.len();

    /// The service of a TCP or UDP destination port, if it is a well-known one.
    pub fn of(protocol: Protocol, port: u16) -> Option<Service> {
        if protocol != Protocol::TCP && protocol != Protocol::UDP {
            return None;
        }
        let index = SERVICES.binary_search_by_key(&port, |&(p, _)| p).ok()?;
        Some(Service(index as u8))
    }

    pub fn as_str(self) -> &'static str {
        SERVICES[self.index()].1
    }

    /// Its position in the table, below [`Service::COUNT`].
    pub fn index(self) -> usize {
        usize::from(self.0)
    }

    pub fn all() -> impl Iterator<Item = Service> {
        (0..Self::COUNT as u8).map(Service)
    }
}

/// Well-known ports and their IANA service names (TCP and UDP alike, as assigned),
/// sorted by port.
const SERVICES: [(u16, &str); 56] = [
    (20, "ftp-data"),
    (21, "ftp"),
    (22, "ssh"),
    (23, "telnet"),
    (25, "smtp"),
    (53, "domain"),
    (67, "bootps"),
    (68, "bootpc"),
    (69, "tftp"),
    (80, "http"),
    (88, "kerberos"),
    (110, "pop3"),
    (123, "ntp"),
    (135, "epmap"),
    (137, "netbios-ns"),
    (138, "netbios-dgm"),
    (139, "netbios-ssn"),
    (143, "imap"),
    (161, "snmp"),
    (162, "snmptrap"),
    (389, "ldap"),
    (443, "https"),
    (445, "microsoft-ds"),
    (464, "kpasswd"),
    (465, "submissions"),
    (500, "isakmp"),
    (514, "syslog"),
    (587, "submission"),
    (636, "ldaps"),
    (853, "domain-s"),
    (993, "imaps"),
    (995, "pop3s"),
    (1433, "ms-sql-s"),
    (1434, "ms-sql-m"),
    (1812, "radius"),
    (1813, "radius-acct"),
    (2049, "nfs"),
    (2375, "docker"),
    (2376, "docker-s"),
    (3268, "msft-gc"),
    (3269, "msft-gc-ssl"),
    (3306, "mysql"),
    (3389, "ms-wbt-server"),
    (4500, "ipsec-nat-t"),
    (5060, "sip"),
    (5061, "sips"),
    (5432, "postgresql"),
    (5671, "amqps"),
    (5672, "amqp"),
    (5985, "wsman"),
    (5986, "wsmans"),
    (6379, "redis"),
    (6514, "syslog-tls"),
    (8080, "http-alt"),
    (8443, "pcsync-https"),
    (27017, "mongodb"),
];

/// What the inventory, the GeoIP databases and reverse DNS say about one address.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AddressFacts {
    pub asset: Option<Arc<Asset>>,
    /// GeoIP and ASN, for public addresses.
    pub geo: Option<Arc<Geo>>,
    /// The reverse DNS (PTR) name.
    pub dns: Option<Arc<str>>,
}

impl AddressFacts {
    pub fn is_empty(&self) -> bool {
        self.asset.is_none() && self.geo.is_none() && self.dns.is_none()
    }
}

/// The addresses the enrichment says something about, numbered, shared by consecutive
/// batches (one table per "epoch" of the enricher): an address recurs in thousands of
/// events and hundreds of batches, so its facts are stored, and encoded by each sink,
/// once per table rather than once per batch.
///
/// The enricher appends entries while sinks read earlier ones; an entry is set once and
/// never changes, and a batch refers only to entries set before it was sent.
#[derive(Debug)]
pub struct AddressTable {
    id: u64,
    entries: Box<[OnceLock<AddressFacts>]>,
}

impl AddressTable {
    pub fn new(id: u64, capacity: usize) -> Self {
        AddressTable {
            id,
            entries: (0..capacity).map(|_| OnceLock::new()).collect(),
        }
    }

    /// Tells tables apart (encoders keep per-table state).
    pub fn id(&self) -> u64 {
        self.id
    }

    pub fn capacity(&self) -> usize {
        self.entries.len()
    }

    /// Entry `index`; it must have been set (an index comes from the enricher that set it).
    pub fn get(&self, index: u32) -> &AddressFacts {
        self.entries[index as usize]
            .get()
            .expect("an address index refers to a set entry")
    }

    /// Sets entry `index`, which must be unset and below the capacity.
    pub fn set(&self, index: u32, facts: AddressFacts) {
        let fresh = self.entries[index as usize].set(facts).is_ok();
        assert!(fresh, "address table entry {index} set twice");
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddrClass {
    Private,
    Public,
    /// 168.63.129.16 (platform DNS, DHCP, health probes) and 169.254.169.254 (IMDS).
    AzurePlatform,
    Loopback,
    LinkLocal,
    Multicast,
    /// 100.64.0.0/10 (RFC 6598).
    Shared,
    Unspecified,
    /// Never a host on the Internet: 0.0.0.0/8 (but 0.0.0.0), 192.0.0.0/24,
    /// 198.18.0.0/15 (benchmarking), 240.0.0.0/4 and the broadcast address.
    Reserved,
}

impl AddrClass {
    /// Every class, in declaration order (`class as usize` indexes it).
    pub const ALL: [AddrClass; 9] = [
        AddrClass::Private,
        AddrClass::Public,
        AddrClass::AzurePlatform,
        AddrClass::Loopback,
        AddrClass::LinkLocal,
        AddrClass::Multicast,
        AddrClass::Shared,
        AddrClass::Unspecified,
        AddrClass::Reserved,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            AddrClass::Private => "private",
            AddrClass::Public => "public",
            AddrClass::AzurePlatform => "azure_platform",
            AddrClass::Loopback => "loopback",
            AddrClass::LinkLocal => "link_local",
            AddrClass::Multicast => "multicast",
            AddrClass::Shared => "shared",
            AddrClass::Unspecified => "unspecified",
            AddrClass::Reserved => "reserved",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuleKind {
    /// `DefaultRule_*`.
    Default,
    /// `UserRule_*`.
    User,
    /// A VNet flow log's ACL rule.
    VnetAcl,
    Other,
}

impl RuleKind {
    /// Every kind, in declaration order (`kind as usize` indexes it).
    pub const ALL: [RuleKind; 4] = [
        RuleKind::Default,
        RuleKind::User,
        RuleKind::VnetAcl,
        RuleKind::Other,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RuleKind::Default => "default",
            RuleKind::User => "user",
            RuleKind::VnetAcl => "vnet_acl",
            RuleKind::Other => "other",
        }
    }
}

/// An entry of the asset inventory: what owns an address block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Asset {
    pub name: Box<str>,
    pub owner: Box<str>,
    pub environment: Box<str>,
    /// `;`-separated, as written in the inventory.
    pub tags: Box<str>,
}

/// Where a public address is, and which network announces it (MaxMind-format databases).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Geo {
    /// ISO 3166-1 alpha-2 code.
    pub country: Option<Box<str>>,
    pub city: Option<Box<str>>,
    /// Decimal degrees as text (`41.6015`), rendered once per address, not per event.
    pub latitude: Option<Box<str>>,
    pub longitude: Option<Box<str>>,
    /// Autonomous system number and its organisation.
    pub asn: Option<u32>,
    pub as_org: Option<Box<str>>,
}

impl Geo {
    pub fn is_empty(&self) -> bool {
        *self == Geo::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn services() {
        let name = |p: Protocol, port: u16| Service::of(p, port).map(Service::as_str);
        assert_eq!(name(Protocol::TCP, 443), Some("https"));
        assert_eq!(name(Protocol::UDP, 53), Some("domain"));
        assert_eq!(name(Protocol::TCP, 3389), Some("ms-wbt-server"));
        assert_eq!(name(Protocol::TCP, 20), Some("ftp-data"), "the first");
        assert_eq!(name(Protocol::TCP, 27017), Some("mongodb"), "the last");
        assert_eq!(name(Protocol::ICMP, 443), None);
        assert_eq!(name(Protocol::TCP, 40000), None);
        assert!(
            SERVICES.windows(2).all(|w| w[0].0 < w[1].0),
            "sorted, no repeats"
        );
        assert_eq!(Service::all().count(), Service::COUNT);
        assert!(Service::all().enumerate().all(|(i, s)| s.index() == i));
    }

    #[test]
    fn all_lists_every_variant_in_order() {
        assert!(AddrClass::ALL
            .iter()
            .enumerate()
            .all(|(i, c)| *c as usize == i));
        assert!(RuleKind::ALL
            .iter()
            .enumerate()
            .all(|(i, k)| *k as usize == i));
    }
}
