//! The hasher of every table keyed by flow data (addresses, in the enricher's epoch and
//! the lookup caches).
//!
//! Source addresses are chosen by whoever sends traffic. An unseeded hash lets an
//! attacker with one IPv6 /64 pick 2^64 addresses that all land in one bucket, and the
//! transform thread then spends O(n) per lookup while the attack runs (the colliding
//! addresses of `benches/hash_flood.rs` did exactly that to the multiply-rotate hash
//! used before). foldhash is seeded at random per process and again per table, so no
//! list of addresses collides in every table; it costs about what the old hash did,
//! where SipHash (std's `RandomState`) would cost more than the rest of a cache hit.
//! Nobody outside sees our hash values or a table's iteration order, which is what an
//! attacker would need to learn a seed (foldhash's README, "HashDoS resistance").

/// Builds the hasher of one table, with a random seed of its own.
pub type SeededState = foldhash::fast::RandomState;
