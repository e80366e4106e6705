//! Decoding one comma-separated flow tuple.
//!
//! NSG Version 1: `ts,src,dst,sport,dport,proto(T|U),dir(I|O),decision(A|D)`
//! NSG Version 2: Version 1 + `,state(B|C|E),pkts s→d,bytes s→d,pkts d→s,bytes d→s`
//! VNet:          `ts,src,dst,sport,dport,proto(IANA),dir(I|O),state(B|C|E|D),encryption,
//!                 pkts s→d,bytes s→d,pkts d→s,bytes d→s`
//! Counters may be empty (absent, not zero). VNet has no decision field: state `D` is a deny.

use crate::problem::TupleErrorKind;
use flowgate_core::{Action, Direction, Encryption, FlowEvent, FlowState, LogKind, Protocol};
use std::net::IpAddr;

/// Longer than any valid tuple (two full IPv6 addresses and every counter at u64::MAX).
pub(crate) const MAX_TUPLE_BYTES: usize = 256;

/// Timestamps below this are epoch seconds, above it epoch milliseconds (year 5138 vs 1973).
const MILLIS_THRESHOLD: u64 = 100_000_000_000;

pub(crate) fn parse_tuple(s: &str, kind: LogKind, group: u32) -> Result<FlowEvent, TupleErrorKind> {
    use TupleErrorKind as E;
    if s.len() > MAX_TUPLE_BYTES {
        return Err(E::TooLong);
    }
    let mut f = [""; 13];
    let mut n = 0;
    for field in s.split(',') {
        if n == f.len() {
            return Err(E::FieldCount);
        }
        f[n] = field;
        n += 1;
    }
    let expected = match kind {
        LogKind::NsgV1 => 8,
        LogKind::NsgV2 | LogKind::VNet => 13,
    };
    if n != expected {
        return Err(E::FieldCount);
    }

    let ts = parse_u64(f[0]).ok_or(E::Timestamp)?;
    let time_ms = if ts < MILLIS_THRESHOLD {
        ts.checked_mul(1000).ok_or(E::Timestamp)?
    } else {
        ts
    };
    let src_ip: IpAddr = f[1].parse().map_err(|_| E::Address)?;
    let dst_ip: IpAddr = f[2].parse().map_err(|_| E::Address)?;
    let src_port = parse_port(f[3])?;
    let dst_port = parse_port(f[4])?;
    let direction = match f[6] {
        "I" => Direction::Inbound,
        "O" => Direction::Outbound,
        _ => return Err(E::Direction),
    };

    let mut event = FlowEvent {
        group,
        time_ms,
        src_ip,
        dst_ip,
        src_port,
        dst_port,
        protocol: Protocol::TCP,
        direction,
        action: Action::Allow,
        state: None,
        encryption: None,
        packets_src_to_dst: None,
        bytes_src_to_dst: None,
        packets_dst_to_src: None,
        bytes_dst_to_src: None,
    };

    if kind == LogKind::VNet {
        event.protocol = Protocol(
            parse_u64(f[5])
                .and_then(|p| u8::try_from(p).ok())
                .ok_or(E::Protocol)?,
        );
        event.state = Some(match f[7] {
            "B" => FlowState::Begin,
            "C" => FlowState::Continuing,
            "E" => FlowState::End,
            "D" => FlowState::Denied,
            _ => return Err(E::State),
        });
        if event.state == Some(FlowState::Denied) {
            event.action = Action::Deny;
        }
        event.encryption = Some(Encryption::from_code(f[8]).ok_or(E::Encryption)?);
    } else {
        event.protocol = match f[5] {
            "T" => Protocol::TCP,
            "U" => Protocol::UDP,
            _ => return Err(E::Protocol),
        };
        event.action = match f[7] {
            "A" => Action::Allow,
            "D" => Action::Deny,
            _ => return Err(E::Action),
        };
        if kind == LogKind::NsgV2 {
            event.state = Some(match f[8] {
                "B" => FlowState::Begin,
                "C" => FlowState::Continuing,
                "E" => FlowState::End,
                _ => return Err(E::State),
            });
        }
    }
    if n == 13 {
        event.packets_src_to_dst = parse_counter(f[9])?;
        event.bytes_src_to_dst = parse_counter(f[10])?;
        event.packets_dst_to_src = parse_counter(f[11])?;
        event.bytes_dst_to_src = parse_counter(f[12])?;
    }
    Ok(event)
}

fn parse_port(s: &str) -> Result<u16, TupleErrorKind> {
    parse_u64(s)
        .and_then(|p| u16::try_from(p).ok())
        .ok_or(TupleErrorKind::Port)
}

/// Empty is absent; anything else must be a number.
fn parse_counter(s: &str) -> Result<Option<u64>, TupleErrorKind> {
    if s.is_empty() {
        return Ok(None);
    }
    parse_u64(s).map(Some).ok_or(TupleErrorKind::Counter)
}

/// Decimal digits only (no sign, no spaces), without overflow.
fn parse_u64(s: &str) -> Option<u64> {
    if s.is_empty() || s.len() > 20 {
        return None;
    }
    let mut v: u64 = 0;
    for b in s.bytes() {
        let d = b.wrapping_sub(b'0');
        if d > 9 {
            return None;
        }
        v = v.checked_mul(10)?.checked_add(d as u64)?;
    }
    Some(v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use TupleErrorKind as E;

    #[test]
    fn nsg_v1() {
        let e = parse_tuple(
            "1525186745,192.168.1.4,10.0.0.4,55960,3389,T,I,A",
            LogKind::NsgV1,
            3,
        )
        .unwrap();
        assert_eq!(e.group, 3);
        assert_eq!(e.time_ms, 1_525_186_745_000);
        assert_eq!(e.src_ip.to_string(), "192.168.1.4");
        assert_eq!((e.src_port, e.dst_port), (55960, 3389));
        assert_eq!(
            (e.protocol, e.direction, e.action),
            (Protocol::TCP, Direction::Inbound, Action::Allow)
        );
        assert_eq!((e.state, e.packets_src_to_dst), (None, None));
    }

    #[test]
    fn nsg_v2_begin_has_absent_counters_end_may_have_zeros() {
        let b = parse_tuple(
            "1542110402,94.102.49.190,10.5.16.4,28746,443,U,I,D,B,,,,",
            LogKind::NsgV2,
            0,
        )
        .unwrap();
        assert_eq!((b.action, b.state), (Action::Deny, Some(FlowState::Begin)));
        assert_eq!(
            [
                b.packets_src_to_dst,
                b.bytes_src_to_dst,
                b.packets_dst_to_src,
                b.bytes_dst_to_src
            ],
            [None; 4]
        );
        let e = parse_tuple(
            "1542110379,10.5.16.4,13.67.143.117,59932,443,T,O,A,E,0,0,1,66",
            LogKind::NsgV2,
            0,
        )
        .unwrap();
        assert_eq!(
            [
                e.packets_src_to_dst,
                e.bytes_src_to_dst,
                e.packets_dst_to_src,
                e.bytes_dst_to_src
            ],
            [Some(0), Some(0), Some(1), Some(66)]
        );
    }

    #[test]
    fn vnet_millis_ipv6_and_deny_state() {
        let e = parse_tuple(
            "1663146003599,2404:f801:8028:1:4b2a::15,10.0.0.6,23956,443,6,O,D,NX_HW_NOT_SUPPORTED,,,,",
            LogKind::VNet,
            0,
        )
        .unwrap();
        assert_eq!(e.time_ms, 1_663_146_003_599);
        assert!(e.src_ip.is_ipv6());
        assert_eq!((e.action, e.state), (Action::Deny, Some(FlowState::Denied)));
        assert_eq!(e.encryption, Some(Encryption::HwNotSupported));
        let s = parse_tuple(
            "1663146003,10.0.0.6,10.0.0.7,0,0,1,I,C,X,1,84,1,84",
            LogKind::VNet,
            0,
        )
        .unwrap();
        assert_eq!(
            s.time_ms, 1_663_146_003_000,
            "documentation example in seconds"
        );
        assert_eq!((s.protocol, s.action), (Protocol::ICMP, Action::Allow));
    }

    #[test]
    fn bad_tuples_name_their_field() {
        let cases = [
            ("1542110402,1.2.3.4,5.6.7.8,1,2,T,I,A,B,,,", E::FieldCount),
            ("1542110402,1.2.3.4,5.6.7.8,1,2,T,I,A,B,,,,,", E::FieldCount),
            ("x,1.2.3.4,5.6.7.8,1,2,T,I,A,B,,,,", E::Timestamp),
            ("-1,1.2.3.4,5.6.7.8,1,2,T,I,A,B,,,,", E::Timestamp),
            ("1542110402,1.2.3,5.6.7.8,1,2,T,I,A,B,,,,", E::Address),
            ("1542110402,1.2.3.4,5.6.7.8,65536,2,T,I,A,B,,,,", E::Port),
            ("1542110402,1.2.3.4,5.6.7.8,1,2,X,I,A,B,,,,", E::Protocol),
            ("1542110402,1.2.3.4,5.6.7.8,1,2,T,X,A,B,,,,", E::Direction),
            ("1542110402,1.2.3.4,5.6.7.8,1,2,T,I,X,B,,,,", E::Action),
            ("1542110402,1.2.3.4,5.6.7.8,1,2,T,I,A,D,,,,", E::State),
            ("1542110402,1.2.3.4,5.6.7.8,1,2,T,I,A,E,1,2,3,x", E::Counter),
            (
                "1542110402,1.2.3.4,5.6.7.8,1,2,T,I,A,E,1,2,3,99999999999999999999",
                E::Counter,
            ),
            ("", E::FieldCount),
        ];
        for (t, want) in cases {
            assert_eq!(parse_tuple(t, LogKind::NsgV2, 0).unwrap_err(), want, "{t}");
        }
        assert_eq!(
            parse_tuple(
                "1663146003599,10.0.0.6,10.0.0.7,1,2,256,O,B,NX,,,,",
                LogKind::VNet,
                0
            )
            .unwrap_err(),
            E::Protocol
        );
        assert_eq!(
            parse_tuple(
                "1663146003599,10.0.0.6,10.0.0.7,1,2,6,O,B,MAYBE,,,,",
                LogKind::VNet,
                0
            )
            .unwrap_err(),
            E::Encryption
        );
        let long = format!("1542110402,{},5.6.7.8,1,2,T,I,A", "1".repeat(300));
        assert_eq!(
            parse_tuple(&long, LogKind::NsgV1, 0).unwrap_err(),
            E::TooLong
        );
    }
}
