//! What `[enrich]` adds to an event (computed in flowgate-transform, written by the
//! encoders).

use std::sync::{Arc, OnceLock};

/// One event's additions; `None` where that enrichment is off or has no answer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Enrichment {
    /// IANA service name of the destination port.
    pub service: Option<&'static str>,
    pub src_class: Option<AddrClass>,
    pub dst_class: Option<AddrClass>,
    pub rule_kind: Option<RuleKind>,
    /// What is known about each address: an index into the batch's [`AddressTable`]
    /// (shared, so that an event carries no reference counts).
    pub src: Option<u32>,
    pub dst: Option<u32>,
}

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
}

impl AddrClass {
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
