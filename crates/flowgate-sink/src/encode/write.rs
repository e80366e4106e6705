//! Allocation-free writers for numbers, addresses and timestamps.

use std::io::Write;
use std::net::IpAddr;

/// `key` and the number, when there is one (absent counters are left out, never 0).
#[inline]
pub fn optional_uint(out: &mut Vec<u8>, key: &[u8], value: Option<u64>) {
    if let Some(v) = value {
        out.extend_from_slice(key);
        uint(out, v);
    }
}

/// Appends a small stack buffer with one fixed-size copy, then trims it to `len`:
/// a variable-length copy of a few bytes would cost a `memmove` call each time.
#[inline]
fn extend_trimmed<const N: usize>(out: &mut Vec<u8>, buf: &[u8; N], len: usize) {
    let old = out.len();
    out.extend_from_slice(buf);
    out.truncate(old + len);
}

/// Decimal text of an unsigned integer.
#[inline]
pub fn uint(out: &mut Vec<u8>, v: impl itoa::Integer) {
    out.extend_from_slice(itoa::Buffer::new().format(v).as_bytes());
}

/// The decimal text of every byte value, for writing dotted quads without arithmetic.
static OCTETS: [([u8; 3], u8); 256] = {
    let mut t = [([0u8; 3], 0u8); 256];
    let mut i = 0;
    while i < 256 {
        let (h, d, u) = ((i / 100) as u8, (i / 10 % 10) as u8, (i % 10) as u8);
        t[i] = if i >= 100 {
            ([b'0' + h, b'0' + d, b'0' + u], 3)
        } else if i >= 10 {
            ([b'0' + d, b'0' + u, 0], 2)
        } else {
            ([b'0' + u, 0, 0], 1)
        };
        i += 1;
    }
    t
};

/// Dotted quad or RFC 5952 IPv6 text.
#[inline]
pub fn ip(out: &mut Vec<u8>, addr: &IpAddr) {
    match addr {
        IpAddr::V4(v4) => {
            let mut buf = [0u8; 16];
            let mut len = 0;
            for (i, b) in v4.octets().iter().enumerate() {
                if i > 0 {
                    buf[len] = b'.';
                    len += 1;
                }
                let (digits, n) = &OCTETS[*b as usize];
                buf[len..len + 3].copy_from_slice(digits);
                len += *n as usize;
            }
            extend_trimmed(out, &buf, len);
        }
        IpAddr::V6(v6) => {
            let _ = write!(out, "{v6}");
        }
    }
}

pub use flowgate_core::time::UtcTime;

fn two(out: &mut Vec<u8>, v: u32) {
    out.push(b'0' + (v / 10) as u8);
    out.push(b'0' + (v % 10) as u8);
}

/// `2018-11-13T12:00:02.000Z`
pub fn rfc3339_ms(out: &mut Vec<u8>, ms: u64) {
    let t = UtcTime::from_epoch_ms(ms);
    let y = t.year.clamp(0, 9999) as u32;
    two(out, y / 100);
    two(out, y % 100);
    out.push(b'-');
    two(out, t.month);
    out.push(b'-');
    two(out, t.day);
    out.push(b'T');
    two(out, t.hour);
    out.push(b':');
    two(out, t.minute);
    out.push(b':');
    two(out, t.second);
    out.push(b'.');
    out.push(b'0' + (t.millis / 100) as u8);
    two(out, t.millis % 100);
    out.push(b'Z');
}

/// RFC 3164 timestamp: `Nov 13 12:00:02` (day padded with a space).
pub fn rfc3164(out: &mut Vec<u8>, ms: u64) {
    const MONTHS: [&[u8; 3]; 12] = [
        b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov",
        b"Dec",
    ];
    let t = UtcTime::from_epoch_ms(ms);
    out.extend_from_slice(MONTHS[(t.month - 1) as usize]);
    out.push(b' ');
    if t.day < 10 {
        out.push(b' ');
        out.push(b'0' + t.day as u8);
    } else {
        two(out, t.day);
    }
    out.push(b' ');
    two(out, t.hour);
    out.push(b':');
    two(out, t.minute);
    out.push(b':');
    two(out, t.second);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(f: impl FnOnce(&mut Vec<u8>)) -> String {
        let mut v = Vec::new();
        f(&mut v);
        String::from_utf8(v).unwrap()
    }

    #[test]
    fn times() {
        assert_eq!(s(|o| rfc3339_ms(o, 0)), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            s(|o| rfc3339_ms(o, 1_542_110_402_000)),
            "2018-11-13T12:00:02.000Z"
        );
        assert_eq!(
            s(|o| rfc3339_ms(o, 1_663_146_003_599)),
            "2022-09-14T09:00:03.599Z"
        );
        assert_eq!(
            s(|o| rfc3339_ms(o, 951_782_400_000)),
            "2000-02-29T00:00:00.000Z"
        );
        assert_eq!(s(|o| rfc3164(o, 1_542_110_402_000)), "Nov 13 12:00:02");
        assert_eq!(s(|o| rfc3164(o, 1_709_546_520_000)), "Mar  4 10:02:00");
    }

    #[test]
    fn integers() {
        for v in [0u64, 7, 10, 99, 65535, 1_542_110_402_000, u64::MAX] {
            assert_eq!(s(|o| uint(o, v)), v.to_string());
        }
    }

    #[test]
    fn addresses() {
        assert_eq!(s(|o| ip(o, &"10.5.16.4".parse().unwrap())), "10.5.16.4");
        for a in ["255.0.0.1", "0.9.10.99", "100.199.200.255"] {
            assert_eq!(s(|o| ip(o, &a.parse().unwrap())), a);
        }
        assert_eq!(
            s(|o| ip(o, &"ace:cab:deca:deed::4".parse().unwrap())),
            "ace:cab:deca:deed::4"
        );
    }
}
