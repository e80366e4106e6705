//! Encoders: one flat event into one CEF, LEEF or JSON message, optionally behind a
//! syslog header, framed for its transport.
//!
//! Strings shared by a group of tuples (rule, resource, MAC) are escaped once per group
//! into a [`GroupCache`]; each event then writes only its own small fields.

mod cef;
pub mod escape;
mod json;
mod leef;
pub mod syslog;
pub mod write;

use flowgate_core::{
    Action, AddrClass, AddressFacts, AddressTable, Asset, Enrichment, EventBatch, FlowEvent, Geo,
    LogKind, Protocol, RuleKind, Service, Summary,
};
use serde::Deserialize;
pub use syslog::{SyslogConfig, SyslogHeader, SyslogKind};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    #[default]
    Cef,
    Leef,
    Json,
}

impl std::str::FromStr for Format {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "cef" => Ok(Format::Cef),
            "leef" => Ok(Format::Leef),
            "json" => Ok(Format::Json),
            _ => Err(format!("unknown format {s:?} (cef, leef, json)")),
        }
    }
}

/// How messages are delimited on a stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Framing {
    /// Each message followed by `\n` (files, stdout, RFC 6587 non-transparent framing).
    #[default]
    Newline,
    /// `LEN SP MSG` (RFC 6587 octet counting).
    OctetCounting,
}

/// Escaped, pre-rendered parts of a group's messages.
#[derive(Debug, Default)]
struct GroupCache {
    /// Bytes before the per-event part (format-specific).
    head: Vec<u8>,
    /// Bytes after it.
    tail: Vec<u8>,
    /// The group's MAC as `00:0D:3A:F8:78:56`, or empty.
    mac: Vec<u8>,
}

/// The most [`Encoder::encode_batch`] reserves ahead; past it, the output grows as it goes.
const MAX_RESERVE_BYTES: usize = 8 << 20;

/// Encodes batches; keeps its buffers between batches.
pub struct Encoder {
    format: Format,
    syslog: Option<SyslogHeader>,
    framing: Framing,
    cache: GroupCache,
    fixed: FixedFields,
    addresses: AddressForms,
    scratch: Vec<u8>,
    /// Average message length of the last batch.
    bytes_per_event: usize,
}

impl Encoder {
    pub fn new(format: Format, syslog: Option<SyslogHeader>, framing: Framing) -> Self {
        Encoder {
            format,
            syslog,
            framing,
            cache: GroupCache::default(),
            fixed: FixedFields::new(format),
            addresses: AddressForms::default(),
            scratch: Vec::new(),
            bytes_per_event: 320,
        }
    }

    /// Appends every event of `batch`, framed, to `out`.
    pub fn encode_batch(&mut self, batch: &EventBatch, out: &mut Vec<u8>) {
        // One allocation up front instead of doubling through the batch (enriched
        // messages are longer: size by the last batch's), clamped: one batch of
        // messages full of escapes must not make the next one ask for gigabytes.
        let start = out.len();
        out.reserve((batch.events.len() * (self.bytes_per_event + 32)).min(MAX_RESERVE_BYTES));
        if let Some(table) = &batch.addresses {
            self.addresses.start_batch(table);
        }
        let mut current_group = None;
        for (i, e) in batch.events.iter().enumerate() {
            if current_group != Some(e.group) {
                self.load_group(batch, e);
                current_group = Some(e.group);
            }
            let extra = batch.enrichment.get(i);
            let summary = batch.summaries.get(i);
            match self.framing {
                Framing::Newline => {
                    self.message(batch, e, extra, summary, out);
                    out.push(b'\n');
                }
                Framing::OctetCounting => {
                    let mut msg = std::mem::take(&mut self.scratch);
                    msg.clear();
                    self.message(batch, e, extra, summary, &mut msg);
                    write::uint(out, msg.len());
                    out.push(b' ');
                    out.extend_from_slice(&msg);
                    self.scratch = msg;
                }
            }
        }
        if !batch.events.is_empty() {
            self.bytes_per_event = (out.len() - start) / batch.events.len();
        }
    }

    fn load_group(&mut self, batch: &EventBatch, e: &FlowEvent) {
        let (g, r) = batch.context_of(e);
        let c = &mut self.cache;
        c.head.clear();
        c.tail.clear();
        c.mac.clear();
        if let Some(mac) = g.mac {
            mac.write_to(&mut c.mac);
        }
        let o = &batch.origin;
        match self.format {
            Format::Cef => cef::group(o, g, r, c),
            Format::Leef => leef::group(o, g, r, c),
            Format::Json => json::group(o, g, r, c),
        }
    }

    fn message(
        &mut self,
        batch: &EventBatch,
        e: &FlowEvent,
        extra: Option<&Enrichment>,
        summary: Option<&Summary>,
        out: &mut Vec<u8>,
    ) {
        if let Some(h) = &self.syslog {
            h.write(e, out);
        }
        // The enrichment's fields in four pre-rendered pieces: service, classes and rule
        // kind, source address, destination address.
        let enriched = extra.map(|x| {
            let sides = match &batch.addresses {
                Some(table) => self.addresses.sides(self.format, table, x),
                None => [Span::EMPTY; 2],
            };
            let [service, classes] = self.fixed.pieces(x);
            let [src, dst] = sides.map(|span| self.addresses.bytes(span));
            [service, classes, src, dst]
        });
        match self.format {
            Format::Cef => {
                cef::event(e, &self.cache, out);
                for piece in enriched.iter().flatten() {
                    out.extend_from_slice(piece);
                }
                if let Some(s) = summary {
                    summary_fields(e, s, [b" start=", b" end=", b" cnt="], out);
                }
            }
            Format::Leef => {
                leef::event(e, &self.cache, out);
                for piece in enriched.iter().flatten() {
                    out.extend_from_slice(piece);
                }
                if let Some(s) = summary {
                    summary_fields(
                        e,
                        s,
                        [b"\tstartTime=", b"\tendTime=", b"\teventCount="],
                        out,
                    );
                }
            }
            Format::Json => json::event(e, enriched, summary, &self.cache, out),
        }
    }
}

/// An aggregation summary's first and last time seen (epoch ms) and tuple count.
fn summary_fields(e: &FlowEvent, s: &Summary, keys: [&[u8]; 3], out: &mut Vec<u8>) {
    out.extend_from_slice(keys[0]);
    write::uint(out, e.time_ms);
    out.extend_from_slice(keys[1]);
    write::uint(out, s.last_ms);
    out.extend_from_slice(keys[2]);
    write::uint(out, s.count);
}

/// Keys of the GeoIP and reverse DNS fields, source then destination: country, city,
/// latitude, longitude, AS number, AS organisation, DNS name.
type GeoKeys = [[&'static [u8]; 7]; 2];
const CEF_GEO_KEYS: GeoKeys = [
    [
        b" srcGeoCountryCode=",
        b" srcGeoCity=",
        b" slat=",
        b" slong=",
        b" srcAsn=",
        b" srcAsOrg=",
        b" srcDnsName=",
    ],
    [
        b" dstGeoCountryCode=",
        b" dstGeoCity=",
        b" dlat=",
        b" dlong=",
        b" dstAsn=",
        b" dstAsOrg=",
        b" dstDnsName=",
    ],
];
const LEEF_GEO_KEYS: GeoKeys = [
    [
        b"\tsrcGeoCountry=",
        b"\tsrcGeoCity=",
        b"\tsrcLat=",
        b"\tsrcLong=",
        b"\tsrcAsn=",
        b"\tsrcAsOrg=",
        b"\tsrcDnsName=",
    ],
    [
        b"\tdstGeoCountry=",
        b"\tdstGeoCity=",
        b"\tdstLat=",
        b"\tdstLong=",
        b"\tdstAsn=",
        b"\tdstAsOrg=",
        b"\tdstDnsName=",
    ],
];

/// The fields of each address the enrichment knows something about (inventory entry,
/// GeoIP, DNS name), escaped for the format once per address and side for as long as the
/// enricher keeps the address in its [`AddressTable`] (an address recurs in thousands of
/// events: escaping per event, or even per batch, cost more than the rest of the message).
/// Kept in one buffer, so that the fields of the addresses in use stay in the CPU's cache.
#[derive(Default)]
struct AddressForms {
    /// The table (`AddressTable::id`) the forms belong to.
    table: Option<u64>,
    bytes: Vec<u8>,
    /// Per table index: the source-side and destination-side fields in `bytes`.
    spans: Vec<[Span; 2]>,
}

/// A piece of a buffer (`u32`s: these buffers are small and read for every event).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Span {
    start: u32,
    len: u32,
}

impl Span {
    const EMPTY: Span = Span { start: 0, len: 0 };
    const UNSET: Span = Span {
        start: u32::MAX,
        len: 0,
    };

    /// The span from `start` to the end of `buffer`.
    fn since(start: usize, buffer: &[u8]) -> Span {
        Span {
            start: start as u32,
            len: (buffer.len() - start) as u32,
        }
    }

    fn of(self, buffer: &[u8]) -> &[u8] {
        &buffer[self.start as usize..][..self.len as usize]
    }
}

/// Forms kept per table before starting over (the tables are bounded; this bounds what
/// very long inventory names could add, and keeps offsets far below `u32::MAX`).
const MAX_FORM_BYTES: usize = 64 << 20;

impl AddressForms {
    fn start_batch(&mut self, table: &AddressTable) {
        if self.table != Some(table.id()) || self.bytes.len() > MAX_FORM_BYTES {
            self.table = Some(table.id());
            self.bytes.clear();
            self.spans.clear();
        }
    }

    /// Where the event's source and destination fields are in `bytes` (encoded now if
    /// this is their first use).
    fn sides(&mut self, format: Format, table: &AddressTable, x: &Enrichment) -> [Span; 2] {
        let mut out = [Span::EMPTY; 2];
        for (side, index) in [x.src, x.dst].into_iter().enumerate() {
            let Some(i) = index else { continue };
            let i = i as usize;
            if i >= self.spans.len() {
                self.spans.resize(i + 1, [Span::UNSET; 2]);
            }
            if self.spans[i][side] == Span::UNSET {
                let start = self.bytes.len();
                let facts = table.get(i as u32);
                match format {
                    Format::Cef => {
                        let keys = (&CEF_ASSET_KEYS[side], &CEF_GEO_KEYS[side]);
                        address_fields(facts, keys, escape::cef_value, &mut self.bytes)
                    }
                    Format::Leef => {
                        let keys = (&LEEF_ASSET_KEYS[side], &LEEF_GEO_KEYS[side]);
                        address_fields(facts, keys, escape::leef_value, &mut self.bytes)
                    }
                    Format::Json => json::address_fields(facts, side, &mut self.bytes),
                }
                self.spans[i][side] = Span::since(start, &self.bytes);
            }
            out[side] = self.spans[i][side];
        }
        out
    }

    fn bytes(&self, span: Span) -> &[u8] {
        span.of(&self.bytes)
    }
}

/// One address's inventory, GeoIP and DNS fields for CEF or LEEF (names come from outside:
/// a user's file, databases, DNS; so they are escaped for the format).
fn address_fields(
    facts: &AddressFacts,
    (asset_keys, geo_keys): (&[&[u8]; 4], &[&[u8]; 7]),
    escape: fn(&str, &mut Vec<u8>),
    out: &mut Vec<u8>,
) {
    if let Some(a) = &facts.asset {
        asset_fields(a, asset_keys, escape, out);
    }
    if let Some(g) = &facts.geo {
        geo_fields(g, geo_keys, escape, out);
    }
    if let Some(name) = &facts.dns {
        out.extend_from_slice(geo_keys[6]);
        escape(name, out);
    }
}

fn geo_fields(g: &Geo, keys: &[&[u8]; 7], escape: fn(&str, &mut Vec<u8>), out: &mut Vec<u8>) {
    for (key, value) in [(keys[0], &g.country), (keys[1], &g.city)] {
        if let Some(v) = value {
            out.extend_from_slice(key);
            escape(v, out);
        }
    }
    for (key, value) in [(keys[2], &g.latitude), (keys[3], &g.longitude)] {
        if let Some(v) = value {
            // Digits, `-` and `.`: nothing to escape.
            out.extend_from_slice(key);
            out.extend_from_slice(v.as_bytes());
        }
    }
    if let Some(asn) = g.asn {
        out.extend_from_slice(keys[4]);
        write::uint(out, asn);
    }
    if let Some(org) = &g.as_org {
        out.extend_from_slice(keys[5]);
        escape(org, out);
    }
}

/// The enrichment's fixed-vocabulary fields (service name, address classes, rule kind),
/// rendered for the format when the encoder is made: an event then copies two pieces
/// instead of up to eight keys and values.
struct FixedFields {
    bytes: Vec<u8>,
    /// Per `Service::index`.
    services: Vec<Span>,
    /// Per combination of source class, destination class and rule kind (each possibly
    /// absent): see `FixedFields::combination`.
    classes_and_kind: Vec<Span>,
}

impl FixedFields {
    fn new(format: Format) -> Self {
        let (keys, close): (Keys, &[u8]) = match format {
            Format::Cef => (CEF_KEYS, b""),
            Format::Leef => (LEEF_KEYS, b""),
            Format::Json => (JSON_KEYS, b"\""),
        };
        let mut bytes = Vec::new();
        let mut render = |x: Enrichment| {
            let start = bytes.len();
            enrichment(&x, keys, close, &mut bytes);
            Span::since(start, &bytes)
        };
        let services = Service::all()
            .map(|s| {
                render(Enrichment {
                    service: Some(s),
                    ..Enrichment::default()
                })
            })
            .collect();
        let classes = || std::iter::once(None).chain(AddrClass::ALL.map(Some));
        let mut classes_and_kind = Vec::new();
        for src_class in classes() {
            for dst_class in classes() {
                for rule_kind in std::iter::once(None).chain(RuleKind::ALL.map(Some)) {
                    let x = Enrichment {
                        src_class,
                        dst_class,
                        rule_kind,
                        ..Enrichment::default()
                    };
                    debug_assert_eq!(Self::combination(&x), classes_and_kind.len());
                    classes_and_kind.push(render(x));
                }
            }
        }
        FixedFields {
            bytes,
            services,
            classes_and_kind,
        }
    }

    /// The index of `x`'s classes and rule kind in `classes_and_kind`.
    fn combination(x: &Enrichment) -> usize {
        let class = |c: Option<AddrClass>| c.map_or(0, |c| c as usize + 1);
        let kind = x.rule_kind.map_or(0, |k| k as usize + 1);
        let classes = AddrClass::ALL.len() + 1;
        (class(x.src_class) * classes + class(x.dst_class)) * (RuleKind::ALL.len() + 1) + kind
    }

    /// The service field and the classes-and-kind fields of `x`.
    fn pieces(&self, x: &Enrichment) -> [&[u8]; 2] {
        let service = x.service.map_or(Span::EMPTY, |s| self.services[s.index()]);
        let classes = self.classes_and_kind[Self::combination(x)];
        [service.of(&self.bytes), classes.of(&self.bytes)]
    }
}

/// Keys of the enrichment fields: service, source class, destination class, rule kind.
type Keys = [&'static [u8]; 4];
const CEF_KEYS: Keys = [
    b" app=",
    b" srcAddressClass=",
    b" dstAddressClass=",
    b" cat=",
];
const LEEF_KEYS: Keys = [
    b"\tservice=",
    b"\tsrcAddrClass=",
    b"\tdstAddrClass=",
    b"\truleKind=",
];

const JSON_KEYS: Keys = [
    b",\"service\":\"",
    b",\"src_class\":\"",
    b",\"dst_class\":\"",
    b",\"rule_kind\":\"",
];

/// Writes the enrichment fields that are set, each value followed by `close` (JSON's
/// closing quote). Their values come from fixed vocabularies (letters, digits, `-`, `_`):
/// nothing to escape in any format.
fn enrichment(x: &Enrichment, keys: Keys, close: &[u8], out: &mut Vec<u8>) {
    let values = [
        x.service.map(Service::as_str),
        x.src_class.map(|c| c.as_str()),
        x.dst_class.map(|c| c.as_str()),
        x.rule_kind.map(|k| k.as_str()),
    ];
    for (key, value) in keys.iter().zip(values) {
        if let Some(v) = value {
            out.extend_from_slice(key);
            out.extend_from_slice(v.as_bytes());
            out.extend_from_slice(close);
        }
    }
}

/// Keys of the inventory fields, source then destination: name, owner, environment, tags.
type AssetKeys = [[&'static [u8]; 4]; 2];
const CEF_ASSET_KEYS: AssetKeys = [
    [
        b" shost=",
        b" srcAssetOwner=",
        b" srcAssetEnvironment=",
        b" srcAssetTags=",
    ],
    [
        b" dhost=",
        b" dstAssetOwner=",
        b" dstAssetEnvironment=",
        b" dstAssetTags=",
    ],
];
const LEEF_ASSET_KEYS: AssetKeys = [
    [
        b"\tsrcAssetName=",
        b"\tsrcAssetOwner=",
        b"\tsrcAssetEnvironment=",
        b"\tsrcAssetTags=",
    ],
    [
        b"\tdstAssetName=",
        b"\tdstAssetOwner=",
        b"\tdstAssetEnvironment=",
        b"\tdstAssetTags=",
    ],
];

/// The inventory's fields of one address; empty fields are left out.
fn asset_fields(a: &Asset, keys: &[&[u8]; 4], escape: fn(&str, &mut Vec<u8>), out: &mut Vec<u8>) {
    for (key, value) in keys
        .iter()
        .zip([&a.name, &a.owner, &a.environment, &a.tags])
    {
        if !value.is_empty() {
            out.extend_from_slice(key);
            escape(value, out);
        }
    }
}

/// CEF/LEEF device product (with the `|` that ends it).
fn product(kind: LogKind) -> &'static [u8] {
    match kind {
        LogKind::VNet => b"FLOWLOGS|",
        LogKind::NsgV1 | LogKind::NsgV2 => b"NETWORKSECURITYGROUPS|",
    }
}

/// CEF/LEEF severity: denied flows are more interesting than allowed ones.
fn severity_digit(action: Action) -> &'static [u8] {
    match action {
        Action::Allow => b"1",
        Action::Deny => b"5",
    }
}

/// `TCP`, `UDP`, ... or the IANA number for protocols without a name here.
fn protocol(out: &mut Vec<u8>, p: Protocol) {
    match p.name() {
        Some(name) => out.extend_from_slice(name.as_bytes()),
        None => write::uint(out, p.0),
    }
}
