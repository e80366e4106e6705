//! Recognising that a file or blob is still the one a checkpoint was taken on.
//!
//! Flow log objects only grow, and the bytes before a checkpoint never change. So the
//! checkpoint keeps a hash of the (at most 64) bytes just before its offset; before
//! resuming, those bytes are read again and compared. A rename-and-replace with the same
//! content (a sync tool) resumes; a rewrite with other content starts over at 0. Inodes
//! and ETags cannot tell these apart: one changes on every replace, the other on every append.

use std::fmt;

/// Bytes covered by an anchor (fewer only near the start of the object).
pub const ANCHOR_BYTES: usize = 64;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Anchor {
    /// How many bytes before the offset are hashed.
    pub len: u8,
    pub hash: u64,
}

impl Anchor {
    /// The anchor of the position just after `before` (its last [`ANCHOR_BYTES`] count).
    pub fn of(before: &[u8]) -> Anchor {
        let tail = &before[before.len().saturating_sub(ANCHOR_BYTES)..];
        Anchor {
            len: tail.len() as u8,
            hash: fnv1a(tail),
        }
    }

    /// The anchor of offset 0: nothing to compare.
    pub const START: Anchor = Anchor {
        len: 0,
        hash: 0xcbf2_9ce4_8422_2325,
    };

    /// True if `bytes` (the `len` bytes before the offset, as read now) still match.
    pub fn matches(&self, bytes: &[u8]) -> bool {
        bytes.len() == self.len as usize && fnv1a(bytes) == self.hash
    }

    /// Parses the `len:hash` form stored in checkpoints.
    pub fn parse(s: &str) -> Option<Anchor> {
        let (len, hash) = s.split_once(':')?;
        let len: u8 = len.parse().ok()?;
        (len as usize <= ANCHOR_BYTES).then_some(())?;
        Some(Anchor {
            len,
            hash: u64::from_str_radix(hash, 16).ok()?,
        })
    }
}

impl fmt::Display for Anchor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{:016x}", self.len, self.hash)
    }
}

/// FNV-1a: tiny and good enough to tell two 64-byte strings apart.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ *b as u64).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_mismatch() {
        let data = b"{\"records\":[{\"time\":\"2024-03-04T10:01:00Z\",\"n\":1},{\"time\":\"2024-03-04T10:02:00Z\",\"n\":2}";
        let a = Anchor::of(data);
        assert_eq!(a.len, 64);
        assert_eq!(Anchor::parse(&a.to_string()), Some(a));
        assert!(a.matches(&data[data.len() - 64..]));
        let mut other = data.to_vec();
        other[data.len() - 3] = b'9';
        assert!(!a.matches(&other[data.len() - 64..]));
        let short = Anchor::of(b"{\"records\":[");
        assert_eq!(short.len, 12);
        assert!(Anchor::START.matches(b""));
        assert_eq!(Anchor::parse("65:00"), None);
        assert_eq!(Anchor::parse("garbage"), None);
    }
}
