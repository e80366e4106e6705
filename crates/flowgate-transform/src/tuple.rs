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
    let bytes = s.as_bytes();
    let mut f = [&b""[..]; 13];
    let mut n = 0;
    let mut start = 0;
    let mut overflow = false;
    for_each_comma(bytes, |i| {
        if n == 12 {
            overflow = true;
            return;
        }
        f[n] = &bytes[start..i];
        n += 1;
        start = i + 1;
    });
    if overflow {
        return Err(E::FieldCount);
    }
    f[n] = &bytes[start..];
    n += 1;

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
    let src_ip = parse_ip(f[1]).ok_or(E::Address)?;
    let dst_ip = parse_ip(f[2]).ok_or(E::Address)?;
    let src_port = parse_port(f[3])?;
    let dst_port = parse_port(f[4])?;
    let direction = match f[6] {
        b"I" => Direction::Inbound,
        b"O" => Direction::Outbound,
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
            b"B" => FlowState::Begin,
            b"C" => FlowState::Continuing,
            b"E" => FlowState::End,
            b"D" => FlowState::Denied,
            _ => return Err(E::State),
        });
        if event.state == Some(FlowState::Denied) {
            event.action = Action::Deny;
        }
        let code = std::str::from_utf8(f[8]).map_err(|_| E::Encryption)?;
        event.encryption = Some(Encryption::from_code(code).ok_or(E::Encryption)?);
    } else {
        event.protocol = match f[5] {
            b"T" => Protocol::TCP,
            b"U" => Protocol::UDP,
            _ => return Err(E::Protocol),
        };
        event.action = match f[7] {
            b"A" => Action::Allow,
            b"D" => Action::Deny,
            _ => return Err(E::Action),
        };
        if kind == LogKind::NsgV2 {
            event.state = Some(match f[8] {
                b"B" => FlowState::Begin,
                b"C" => FlowState::Continuing,
                b"E" => FlowState::End,
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

/// Calls `found` with the index of every `,`, eight bytes at a time (SWAR): a tuple's
/// commas sit at irregular places, and testing byte by byte mispredicts at each one.
#[inline]
fn for_each_comma(bytes: &[u8], mut found: impl FnMut(usize)) {
    const LO7: u64 = 0x7F7F_7F7F_7F7F_7F7F;
    const COMMAS: u64 = 0x2C2C_2C2C_2C2C_2C2C;
    let mut base = 0;
    while let Some(w) = bytes.get(base..base + 8) {
        let x = u64::from_le_bytes(w.try_into().expect("8 bytes")) ^ COMMAS;
        // High bit set exactly in the bytes of `x` that are zero (the commas).
        let mut mask = !(((x & LO7) + LO7) | x | LO7);
        while mask != 0 {
            found(base + (mask.trailing_zeros() / 8) as usize);
            mask &= mask - 1;
        }
        base += 8;
    }
    for (i, &b) in bytes[base..].iter().enumerate() {
        if b == b',' {
            found(base + i);
        }
    }
}

/// IPv4 on a fast path (the common case), anything else through the standard parser.
fn parse_ip(s: &[u8]) -> Option<IpAddr> {
    parse_ipv4(s).map(IpAddr::V4).or_else(|| {
        std::str::from_utf8(s)
            .ok()?
            .parse::<std::net::Ipv6Addr>()
            .ok()
            .map(IpAddr::V6)
    })
}

/// Dotted quad; like the standard parser, rejects leading zeros (`010` is ambiguous).
fn parse_ipv4(s: &[u8]) -> Option<std::net::Ipv4Addr> {
    let mut octets = [0u8; 4];
    let mut i = 0;
    for (k, octet) in octets.iter_mut().enumerate() {
        if k > 0 {
            if s.get(i) != Some(&b'.') {
                return None;
            }
            i += 1;
        }
        let start = i;
        let mut v: u32 = 0;
        while let Some(d) = s.get(i).map(|b| b.wrapping_sub(b'0')).filter(|d| *d <= 9) {
            v = v * 10 + d as u32;
            i += 1;
            if i - start > 3 {
                return None;
            }
        }
        let len = i - start;
        if len == 0 || v > 255 || (len > 1 && s[start] == b'0') {
            return None;
        }
        *octet = v as u8;
    }
    (i == s.len()).then(|| std::net::Ipv4Addr::from(octets))
}

fn parse_port(s: &[u8]) -> Result<u16, TupleErrorKind> {
    parse_u64(s)
        .and_then(|p| u16::try_from(p).ok())
        .ok_or(TupleErrorKind::Port)
}

/// Empty is absent; anything else must be a number.
fn parse_counter(s: &[u8]) -> Result<Option<u64>, TupleErrorKind> {
    if s.is_empty() {
        return Ok(None);
    }
    parse_u64(s).map(Some).ok_or(TupleErrorKind::Counter)
}

/// Decimal digits only (no sign, no spaces), without overflow.
fn parse_u64(s: &[u8]) -> Option<u64> {
    if s.is_empty() || s.len() > 20 {
        return None;
    }
    let mut v: u64 = 0;
    if s.len() < 20 {
        // At most 19 digits: cannot overflow, so no checks in the loop.
        for &b in s {
            let d = b.wrapping_sub(b'0');
            if d > 9 {
                return None;
            }
            v = v * 10 + d as u64;
        }
        return Some(v);
    }
    for &b in s {
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
    fn numbers_up_to_u64_max() {
        assert_eq!(parse_u64(b"18446744073709551615"), Some(u64::MAX));
        assert_eq!(
            parse_u64(b"9999999999999999999"),
            Some(9_999_999_999_999_999_999)
        );
        assert_eq!(parse_u64(b"0"), Some(0));
        assert_eq!(parse_u64(b"1a"), None);
    }

    #[test]
    fn commas_found_at_every_position() {
        for len in 0..40 {
            for at in 0..len {
                let mut s = vec![b'x'; len];
                s[at] = b',';
                let mut found = Vec::new();
                for_each_comma(&s, |i| found.push(i));
                assert_eq!(found, [at], "len {len} at {at}");
            }
        }
    }

    #[test]
    fn ipv4_fast_path_agrees_with_std() {
        for a in [
            "0.0.0.0",
            "255.255.255.255",
            "10.5.16.4",
            "1.22.133.0",
            "192.168.001.1",
            "1.2.3",
            "256.1.1.1",
        ] {
            assert_eq!(parse_ipv4(a.as_bytes()), a.parse().ok(), "{a}");
        }
    }

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
        for bad_ip in [
            "1.2.3.4.5",
            "1.2.3.",
            "01.2.3.4",
            "1.2.3.256",
            "1..2.3",
            "1.2.3.4 ",
            "::g",
            "",
        ] {
            let t = format!("1542110402,{bad_ip},5.6.7.8,1,2,T,I,A");
            assert_eq!(
                parse_tuple(&t, LogKind::NsgV1, 0).unwrap_err(),
                E::Address,
                "{bad_ip:?}"
            );
        }
        let long = format!("1542110402,{},5.6.7.8,1,2,T,I,A", "1".repeat(300));
        assert_eq!(
            parse_tuple(&long, LogKind::NsgV1, 0).unwrap_err(),
            E::TooLong
        );
    }
}
