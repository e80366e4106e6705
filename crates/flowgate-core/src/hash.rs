//! A fast hasher for flowgate's own lookup tables.

use std::hash::Hasher;

/// A multiply-rotate hasher (after rustc's FxHash) for addresses and pointers: the
/// default SipHash costs more than the rest of a cache hit. Keys come from flow logs and
/// flowgate itself, not chosen to collide; colliding keys would only slow a table down.
#[derive(Default)]
pub struct FastHasher(u64);

impl Hasher for FastHasher {
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.write_u64(u64::from_le_bytes(word));
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0.rotate_left(5) ^ n).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }

    fn write_u8(&mut self, n: u8) {
        self.write_u64(u64::from(n));
    }

    fn write_usize(&mut self, n: usize) {
        self.write_u64(n as u64);
    }

    fn finish(&self) -> u64 {
        // The product's high bits are the mixed ones; hash tables index by the low bits
        // (without this, all of 10.0.0.0/8 shares a handful of buckets).
        self.0.rotate_left(26)
    }
}
