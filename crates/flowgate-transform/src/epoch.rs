//! The enricher's current epoch: the addresses of recent batches, each with its class and
//! the index of its facts in an [`AddressTable`] that the epoch's batches share.
//!
//! Most addresses of a batch were in the batches before it. Asking the LRU cache for each
//! cost a memory miss per address and batch (its nodes live all over the heap), and a
//! list of facts per batch cost reference counts bounced between the transform and sink
//! threads. An epoch instead keeps a compact map, with IPv4 keys as 32-bit integers (16
//! bytes an entry, so that its hot part stays in the CPU's cache: it is asked for most
//! events), from address to an index in one table; a new epoch starts when either is full.

use flowgate_core::hash::SeededState;
use flowgate_core::{AddrClass, AddressFacts, AddressTable};
use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::Arc;

type Map<K> = HashMap<K, Recent, SeededState>;

pub(crate) struct Epoch {
    table: Arc<AddressTable>,
    /// Entries of `table` set so far.
    used: u32,
    v4: Map<u32>,
    v6: Map<Ipv6Addr>,
    max_addresses: usize,
}

/// What the epoch remembers of an address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Recent {
    pub class: AddrClass,
    index: u32,
    /// The last batch that asked (numbered by the enricher; for reverse DNS, whose
    /// answers change between batches).
    pub checked: u32,
}

const NO_FACTS: u32 = u32::MAX;

impl Recent {
    pub fn new(class: AddrClass, index: Option<u32>, checked: u32) -> Self {
        Recent {
            class,
            index: index.unwrap_or(NO_FACTS),
            checked,
        }
    }

    /// The same, asked by batch `batch`.
    pub fn checked_in(self, batch: u32) -> Recent {
        Recent {
            checked: batch,
            ..self
        }
    }

    /// The index of the address's facts in the table, if there are any.
    pub fn index(&self) -> Option<u32> {
        (self.index != NO_FACTS).then_some(self.index)
    }
}

/// The table has no room left: the batch is redone in a new epoch.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct TableFull;

impl Epoch {
    /// An empty epoch for up to `max_addresses` addresses, whose table holds at least
    /// `min_entries` facts (two per event of the largest batch, so that any one batch fits
    /// in a new epoch).
    pub fn new(id: u64, max_addresses: usize, min_entries: usize) -> Self {
        let capacity = (2 * max_addresses).max(min_entries).min(NO_FACTS as usize);
        Epoch {
            table: Arc::new(AddressTable::new(id, capacity)),
            used: 0,
            v4: Map::default(),
            v6: Map::default(),
            max_addresses,
        }
    }

    pub fn table(&self) -> &Arc<AddressTable> {
        &self.table
    }

    pub fn id(&self) -> u64 {
        self.table.id()
    }

    /// True when the map has reached its size: time for a new epoch.
    pub fn is_full(&self) -> bool {
        self.v4.len() + self.v6.len() >= self.max_addresses
    }

    /// Facts in the table.
    pub fn used(&self) -> usize {
        self.used as usize
    }

    /// Room for `entries` more facts.
    pub fn has_room(&self, entries: usize) -> bool {
        self.used as usize + entries <= self.table.capacity()
    }

    pub fn get_mut(&mut self, ip: IpAddr) -> Option<&mut Recent> {
        match ip {
            IpAddr::V4(v4) => self.v4.get_mut(&v4.to_bits()),
            IpAddr::V6(v6) => self.v6.get_mut(&v6),
        }
    }

    pub fn insert(&mut self, ip: IpAddr, recent: Recent) {
        match ip {
            IpAddr::V4(v4) => self.v4.insert(v4.to_bits(), recent),
            IpAddr::V6(v6) => self.v6.insert(v6, recent),
        };
    }

    /// Adds `facts` to the table; their index, `None` if there is nothing to add.
    pub fn add(&mut self, facts: AddressFacts) -> Result<Option<u32>, TableFull> {
        if facts.is_empty() {
            return Ok(None);
        }
        if !self.has_room(1) {
            return Err(TableFull);
        }
        let index = self.used;
        self.table.set(index, facts);
        self.used += 1;
        Ok(Some(index))
    }

    pub fn facts(&self, index: u32) -> &AddressFacts {
        self.table.get(index)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flowgate_core::Asset;

    fn facts(name: &str) -> AddressFacts {
        AddressFacts {
            asset: Some(Arc::new(Asset {
                name: name.into(),
                owner: "".into(),
                environment: "".into(),
                tags: "".into(),
            })),
            ..AddressFacts::default()
        }
    }

    #[test]
    fn remembers_addresses_and_numbers_facts() {
        let mut epoch = Epoch::new(7, 4, 0);
        assert_eq!(epoch.id(), 7);
        assert_eq!(epoch.table().capacity(), 8);
        let v4: IpAddr = "10.0.0.1".parse().unwrap();
        let v6: IpAddr = "fd00::1".parse().unwrap();
        assert_eq!(
            epoch.add(AddressFacts::default()),
            Ok(None),
            "nothing to add"
        );
        let a = epoch.add(facts("a")).unwrap();
        let b = epoch.add(facts("b")).unwrap();
        assert_eq!((a, b), (Some(0), Some(1)));
        epoch.insert(v4, Recent::new(AddrClass::Private, a, 1));
        epoch.insert(v6, Recent::new(AddrClass::Private, b, 1));
        let found = *epoch.get_mut(v4).unwrap();
        assert_eq!(found.index(), Some(0));
        assert_eq!(epoch.facts(0), &facts("a"));
        assert_eq!(epoch.get_mut(v6).unwrap().index(), Some(1));
        assert_eq!(epoch.facts(1), &facts("b"));
        assert!(epoch.get_mut("10.0.0.2".parse().unwrap()).is_none());
        // The same 16 bytes as an IPv6 address are another key.
        assert!(epoch.get_mut("::ffff:10.0.0.1".parse().unwrap()).is_none());
        assert!(!epoch.is_full());
        epoch.insert(
            "10.0.0.2".parse().unwrap(),
            Recent::new(AddrClass::Private, None, 1),
        );
        epoch.insert(
            "10.0.0.3".parse().unwrap(),
            Recent::new(AddrClass::Private, None, 1),
        );
        assert!(epoch.is_full());
    }

    #[test]
    fn a_full_table_says_so() {
        let mut epoch = Epoch::new(1, 1, 3);
        assert_eq!(epoch.table().capacity(), 3, "at least min_entries");
        for i in 0..3 {
            assert_eq!(epoch.add(facts("x")), Ok(Some(i)));
        }
        assert!(!epoch.has_room(1));
        assert_eq!(epoch.add(facts("y")), Err(TableFull));
        assert_eq!(epoch.add(AddressFacts::default()), Ok(None));
    }
}
