//! The LRU cache every per-address enrichment goes through, with the hit, miss and
//! eviction counts published per cache (`address`, `rdns`).

use flowgate_core::hash::SeededState;
use flowgate_core::metric_names as m;
use lru::LruCache;
use std::net::IpAddr;
use std::num::NonZeroUsize;

pub struct LookupCache<V> {
    name: &'static str,
    cache: LruCache<IpAddr, V, SeededState>,
    counts: CacheCounts,
}

/// Counts since the last [`LookupCache::publish`].
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct CacheCounts {
    pub hits: u64,
    pub misses: u64,
    pub evictions: u64,
}

impl<V: Clone> LookupCache<V> {
    pub fn new(name: &'static str, capacity: usize) -> Self {
        LookupCache {
            name,
            cache: LruCache::with_hasher(
                NonZeroUsize::new(capacity.max(1)).expect("at least 1"),
                SeededState::default(),
            ),
            counts: CacheCounts::default(),
        }
    }

    /// The cached answer for `ip`, else `lookup`'s (remembered).
    pub fn get_or_insert_with(&mut self, ip: IpAddr, lookup: impl FnOnce() -> V) -> V {
        if let Some(found) = self.cache.get(&ip) {
            self.counts.hits += 1;
            return found.clone();
        }
        self.counts.misses += 1;
        let found = lookup();
        self.insert(ip, found.clone());
        found
    }

    /// Counts a hit answered in front of the cache (the enricher's table of recent
    /// addresses).
    pub fn count_hit(&mut self) {
        self.counts.hits += 1;
    }

    /// The cached answer, if any (counted as a hit or a miss).
    pub fn get(&mut self, ip: &IpAddr) -> Option<V> {
        let found = self.cache.get(ip).cloned();
        match found {
            Some(_) => self.counts.hits += 1,
            None => self.counts.misses += 1,
        }
        found
    }

    /// True if `ip` is cached and `fresh` holds for its value (not counted, not touched).
    pub fn peek_fresh(&self, ip: &IpAddr, fresh: impl Fn(&V) -> bool) -> bool {
        self.cache.peek(ip).is_some_and(fresh)
    }

    pub fn insert(&mut self, ip: IpAddr, value: V) {
        if let Some((evicted, _)) = self.cache.push(ip, value) {
            // `push` also returns the old value when `ip` was already there.
            if evicted != ip {
                self.counts.evictions += 1;
            }
        }
    }

    pub fn clear(&mut self) {
        self.cache.clear();
    }

    pub fn len(&self) -> usize {
        self.cache.len()
    }

    pub fn is_empty(&self) -> bool {
        self.cache.is_empty()
    }

    pub fn counts(&self) -> CacheCounts {
        self.counts
    }

    /// Adds the counts to the metrics and starts counting again.
    pub fn publish(&mut self) {
        let c = std::mem::take(&mut self.counts);
        metrics::counter!(m::ENRICH_CACHE_HITS_TOTAL, "cache" => self.name).increment(c.hits);
        metrics::counter!(m::ENRICH_CACHE_MISSES_TOTAL, "cache" => self.name).increment(c.misses);
        metrics::counter!(m::ENRICH_CACHE_EVICTIONS_TOTAL, "cache" => self.name)
            .increment(c.evictions);
        metrics::gauge!(m::ENRICH_CACHE_ENTRIES, "cache" => self.name).set(self.cache.len() as f64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_hits_misses_and_evictions() {
        let mut c: LookupCache<u32> = LookupCache::new("test", 2);
        let ip = |n: u8| IpAddr::from([10, 0, 0, n]);
        let mut computed = 0;
        for n in [1, 1, 2, 1, 3, 2, 1] {
            c.get_or_insert_with(ip(n), || {
                computed += 1;
                u32::from(n)
            });
        }
        // 1 miss, 1 hit, 2 miss, 1 hit, 3 miss (evicts 2, the least recently used),
        // 2 miss (evicts 1), 1 miss (evicts 3).
        assert_eq!(
            c.counts(),
            CacheCounts {
                hits: 2,
                misses: 5,
                evictions: 3
            }
        );
        assert_eq!(computed, 5);
        assert_eq!(c.len(), 2);
        c.insert(ip(1), 7);
        assert_eq!(c.counts().evictions, 3, "replacing a value is no eviction");
        c.publish();
        assert_eq!(c.counts(), CacheCounts::default());
    }
}
