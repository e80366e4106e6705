//! The flat flow event: one per flow tuple, with its record context shared, not copied.
//!
//! An [`crate::EventBatch`] holds `records` (one [`RecordContext`] per flow log record),
//! `groups` (one [`FlowGroup`] per rule × MAC or ACL inside a record) and `events` (one
//! [`FlowEvent`] per tuple, pointing at its group by index). A tuple's own fields are
//! small values; strings live once per record or group.

use std::fmt;
use std::net::IpAddr;

/// Which flow log schema a record follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogKind {
    /// NSG flow log, `properties.Version` 1: 8-field tuples, no state or counters.
    NsgV1,
    /// NSG flow log, `properties.Version` 2: 13-field tuples with state and counters.
    NsgV2,
    /// VNet flow log (`flowRecords`), `flowLogVersion` 4: IANA protocol numbers, encryption.
    VNet,
}

impl LogKind {
    pub fn as_str(self) -> &'static str {
        match self {
            LogKind::NsgV1 => "nsg",
            LogKind::NsgV2 => "nsg",
            LogKind::VNet => "vnet",
        }
    }
}

/// Layer 4 protocol as its IANA number (NSG's `T`/`U` become 6/17).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Protocol(pub u8);

impl Protocol {
    pub const ICMP: Protocol = Protocol(1);
    pub const TCP: Protocol = Protocol(6);
    pub const UDP: Protocol = Protocol(17);
    pub const ICMPV6: Protocol = Protocol(58);

    /// The conventional upper-case name, or `None` for numbers without one here.
    pub fn name(self) -> Option<&'static str> {
        Some(match self.0 {
            1 => "ICMP",
            2 => "IGMP",
            4 => "IPIP",
            6 => "TCP",
            17 => "UDP",
            41 => "IPV6",
            47 => "GRE",
            50 => "ESP",
            51 => "AH",
            58 => "ICMPV6",
            132 => "SCTP",
            _ => return None,
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    Inbound,
    Outbound,
}

impl Direction {
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Inbound => "inbound",
            Direction::Outbound => "outbound",
        }
    }
    /// The letter Azure writes (`I`/`O`).
    pub fn code(self) -> &'static str {
        match self {
            Direction::Inbound => "I",
            Direction::Outbound => "O",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    Allow,
    Deny,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Allow => "allow",
            Action::Deny => "deny",
        }
    }
    /// The letter Azure writes (`A`/`D`).
    pub fn code(self) -> &'static str {
        match self {
            Action::Allow => "A",
            Action::Deny => "D",
        }
    }
}

/// Flow state (NSG Version 2 and VNet). `Denied` exists only in VNet logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FlowState {
    Begin,
    Continuing,
    End,
    Denied,
}

impl FlowState {
    pub fn as_str(self) -> &'static str {
        match self {
            FlowState::Begin => "begin",
            FlowState::Continuing => "continuing",
            FlowState::End => "end",
            FlowState::Denied => "denied",
        }
    }
    /// The letter Azure writes (`B`/`C`/`E`/`D`).
    pub fn code(self) -> &'static str {
        match self {
            FlowState::Begin => "B",
            FlowState::Continuing => "C",
            FlowState::End => "E",
            FlowState::Denied => "D",
        }
    }
}

/// VNet flow encryption state, as Microsoft documents it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Encryption {
    Encrypted,
    NotEncrypted,
    HwNotSupported,
    SwNotReady,
    NotAccepted,
    NotSupported,
    LocalDestination,
    Fallback,
}

impl Encryption {
    pub const ALL: [Encryption; 8] = [
        Encryption::Encrypted,
        Encryption::NotEncrypted,
        Encryption::HwNotSupported,
        Encryption::SwNotReady,
        Encryption::NotAccepted,
        Encryption::NotSupported,
        Encryption::LocalDestination,
        Encryption::Fallback,
    ];

    /// The code Azure writes (`X`, `NX`, `NX_HW_NOT_SUPPORTED`, ...).
    pub fn code(self) -> &'static str {
        match self {
            Encryption::Encrypted => "X",
            Encryption::NotEncrypted => "NX",
            Encryption::HwNotSupported => "NX_HW_NOT_SUPPORTED",
            Encryption::SwNotReady => "NX_SW_NOT_READY",
            Encryption::NotAccepted => "NX_NOT_ACCEPTED",
            Encryption::NotSupported => "NX_NOT_SUPPORTED",
            Encryption::LocalDestination => "NX_LOCAL_DST",
            Encryption::Fallback => "NX_FALLBACK",
        }
    }

    pub fn from_code(code: &str) -> Option<Encryption> {
        Encryption::ALL.into_iter().find(|e| e.code() == code)
    }
}

/// A 48-bit MAC address; displayed as `00:0D:3A:F8:78:56`.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Mac(pub [u8; 6]);

impl Mac {
    /// Parses `000D3AF87856`, `00-0D-3A-F8-78-56` or `00:0d:3a:f8:78:56`.
    pub fn parse(s: &str) -> Option<Mac> {
        let mut out = [0u8; 6];
        let mut n = 0;
        let mut hi: Option<u8> = None;
        for b in s.bytes() {
            let v = match b {
                b'0'..=b'9' => b - b'0',
                b'a'..=b'f' => b - b'a' + 10,
                b'A'..=b'F' => b - b'A' + 10,
                b'-' | b':' if hi.is_none() => continue,
                _ => return None,
            };
            match hi.take() {
                None => hi = Some(v),
                Some(h) => {
                    if n == 6 {
                        return None;
                    }
                    out[n] = h << 4 | v;
                    n += 1;
                }
            }
        }
        (n == 6 && hi.is_none()).then_some(Mac(out))
    }

    /// Writes `00:0D:3A:F8:78:56` (17 bytes) into `out`.
    pub fn write_to(&self, out: &mut Vec<u8>) {
        const HEX: &[u8; 16] = b"0123456789ABCDEF";
        for (i, b) in self.0.iter().enumerate() {
            if i > 0 {
                out.push(b':');
            }
            out.push(HEX[(b >> 4) as usize]);
            out.push(HEX[(b & 15) as usize]);
        }
    }
}

impl fmt::Display for Mac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut v = Vec::with_capacity(17);
        self.write_to(&mut v);
        f.write_str(std::str::from_utf8(&v).expect("hex is ASCII"))
    }
}

impl fmt::Debug for Mac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// What one flow log record says about all of its tuples.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordContext {
    pub kind: LogKind,
    /// `properties.Version` (NSG) or `flowLogVersion` (VNet).
    pub version: u32,
    /// The record's `time`, as written (ISO 8601).
    pub time: Box<str>,
    pub category: Box<str>,
    pub operation_name: Box<str>,
    /// NSG `systemId`; `None` for VNet.
    pub system_id: Option<Box<str>>,
    /// NSG `resourceId`, or VNet `targetResourceID`.
    pub resource_id: Box<str>,
    /// Split out of `resource_id`; empty where the id does not carry it.
    pub subscription_id: Box<str>,
    pub resource_group: Box<str>,
    /// Last segment of `resource_id`: the NSG name, or the VNet/subnet/NIC name.
    pub resource_name: Box<str>,
    /// Record-level `macAddress`.
    pub mac: Option<Mac>,
    /// VNet `flowLogGUID`.
    pub flow_log_guid: Option<Box<str>>,
    /// VNet `flowLogResourceID`.
    pub flow_log_resource_id: Option<Box<str>>,
}

/// Tuples that share a rule and MAC (NSG) or a rule and ACL (VNet).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlowGroup {
    /// Index into the batch's `records`.
    pub record: u32,
    pub rule: Box<str>,
    /// The NIC's MAC: the inner flow's `mac`, else the record's `macAddress`.
    pub mac: Option<Mac>,
    /// VNet `aclID`.
    pub acl_id: Option<Box<str>>,
}

/// One flow tuple, flattened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlowEvent {
    /// Index into the batch's `groups`.
    pub group: u32,
    /// Epoch milliseconds (NSG seconds are scaled; VNet milliseconds kept).
    pub time_ms: u64,
    pub src_ip: IpAddr,
    pub dst_ip: IpAddr,
    pub src_port: u16,
    pub dst_port: u16,
    pub protocol: Protocol,
    pub direction: Direction,
    pub action: Action,
    /// `None` for NSG Version 1.
    pub state: Option<FlowState>,
    /// VNet only.
    pub encryption: Option<Encryption>,
    /// Counters are `None` where the log leaves them empty (`B` tuples), never 0.
    pub packets_src_to_dst: Option<u64>,
    pub bytes_src_to_dst: Option<u64>,
    pub packets_dst_to_src: Option<u64>,
    pub bytes_dst_to_src: Option<u64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mac_forms() {
        let m = Mac::parse("000D3AF87856").unwrap();
        assert_eq!(m.to_string(), "00:0D:3A:F8:78:56");
        assert_eq!(Mac::parse("00-0d-3a-f8-78-56"), Some(m));
        assert_eq!(Mac::parse("00:0D:3A:F8:78:56"), Some(m));
        assert_eq!(Mac::parse("000D3AF8785"), None);
        assert_eq!(Mac::parse("000D3AF878560"), None);
        assert_eq!(Mac::parse("000D3AF8785G"), None);
        assert_eq!(Mac::parse(""), None);
    }

    #[test]
    fn encryption_codes_round_trip() {
        for e in Encryption::ALL {
            assert_eq!(Encryption::from_code(e.code()), Some(e));
        }
        assert_eq!(Encryption::from_code("nx"), None);
    }
}
