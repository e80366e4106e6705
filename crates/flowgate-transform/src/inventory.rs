//! The asset inventory: address blocks → name, owner, environment, tags, with
//! longest-prefix match, behind an LRU cache, reloaded when its file changes.
//!
//! The file is CSV, one block per line: `cidr,name,owner,environment,tags` (tags
//! `;`-separated; a first line starting with `cidr` is a header; `#` starts a comment).

use crate::filter::{bits_of, mask, Cidr};
use crate::lookup_cache::{CacheCounts, LookupCache};
use crate::watched_file::WatchedFile;
use flowgate_core::Asset;
use std::collections::HashMap;
use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tracing::{info, warn};

/// Blocks grouped by prefix length, longest first: a lookup masks the address once per
/// length present, so its cost does not grow with the number of blocks.
#[derive(Debug, Default)]
pub struct Inventory {
    by_len: Vec<(u8, HashMap<u128, Arc<Asset>>)>,
    entries: usize,
}

impl Inventory {
    pub fn parse(text: &str, file: &str) -> Result<Inventory, String> {
        let mut by_len: HashMap<u8, HashMap<u128, Arc<Asset>>> = HashMap::new();
        let mut entries = 0;
        for (i, line) in text.lines().enumerate() {
            let line = line.split('#').next().unwrap_or_default().trim();
            if line.is_empty() || (i == 0 && line.to_ascii_lowercase().starts_with("cidr")) {
                continue;
            }
            let fields: Vec<&str> = line.splitn(5, ',').map(str::trim).collect();
            let cidr = Cidr::parse(fields[0]).ok_or_else(|| {
                format!("{file}:{}: {:?} is not an address block", i + 1, fields[0])
            })?;
            let field = |k: usize| fields.get(k).copied().unwrap_or_default().into();
            let asset = Arc::new(Asset {
                name: field(1),
                owner: field(2),
                environment: field(3),
                tags: field(4),
            });
            if asset.name.is_empty() {
                return Err(format!("{file}:{}: the name is missing", i + 1));
            }
            if by_len
                .entry(cidr.prefix_len())
                .or_default()
                .insert(cidr.network_bits(), asset)
                .is_some()
            {
                return Err(format!("{file}:{}: {} is listed twice", i + 1, fields[0]));
            }
            entries += 1;
        }
        let mut by_len: Vec<_> = by_len.into_iter().collect();
        by_len.sort_by_key(|(len, _)| std::cmp::Reverse(*len));
        Ok(Inventory { by_len, entries })
    }

    pub fn load(path: &Path) -> Result<Inventory, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("inventory {}: {e}", path.display()))?;
        Inventory::parse(&text, &path.display().to_string())
    }

    /// The most specific block that holds `ip`.
    pub fn lookup(&self, ip: IpAddr) -> Option<Arc<Asset>> {
        let bits = bits_of(ip);
        self.by_len
            .iter()
            .find_map(|(len, blocks)| blocks.get(&(bits & mask(*len))).cloned())
    }

    pub fn len(&self) -> usize {
        self.entries
    }

    pub fn is_empty(&self) -> bool {
        self.entries == 0
    }
}

/// Lookups for the transform: the inventory behind an LRU cache, reloaded when the file's
/// modification time changes.
pub struct AssetLookup {
    file: WatchedFile,
    inventory: Inventory,
    cache: LookupCache<Option<Arc<Asset>>>,
}

impl AssetLookup {
    pub fn open(path: &Path, cache_size: usize, reload_every: Duration) -> Result<Self, String> {
        let inventory = Inventory::load(path)?;
        info!(inventory = %path.display(), blocks = inventory.len(), "asset inventory loaded");
        Ok(AssetLookup {
            file: WatchedFile::new(path, reload_every),
            inventory,
            cache: LookupCache::new("inventory", cache_size),
        })
    }

    pub fn lookup(&mut self, ip: IpAddr) -> Option<Arc<Asset>> {
        let inventory = &self.inventory;
        self.cache.get_or_insert_with(ip, || inventory.lookup(ip))
    }

    /// Publishes the cache counters and reloads the file if it changed; a file that does
    /// not parse keeps the previous inventory (and says why).
    pub fn after_batch(&mut self) {
        self.cache.publish();
        if !self.file.changed() {
            return;
        }
        match Inventory::load(self.file.path()) {
            Ok(inventory) => {
                info!(inventory = %self.file.path().display(), blocks = inventory.len(), "asset inventory reloaded");
                self.inventory = inventory;
                self.cache.clear();
            }
            Err(e) => warn!(error = %e, "asset inventory not reloaded; keeping the previous one"),
        }
    }

    /// Counts since the last `after_batch` (tests).
    pub fn counts(&self) -> CacheCounts {
        self.cache.counts()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CSV: &str = "cidr,name,owner,environment,tags
10.0.0.0/8,corp,netops,prod,
10.1.0.0/16,web-tier,web-team,prod,pci;internet-facing
10.1.0.4/32,web-vm-01,web-team,prod,pci
2001:db8::/32,v6-corp,netops,prod,
2001:db8:1::/48,v6-lab,research,dev,lab # a comment
";

    fn name(inv: &Inventory, ip: &str) -> Option<String> {
        inv.lookup(ip.parse().unwrap()).map(|a| a.name.to_string())
    }

    #[test]
    fn longest_prefix_wins_for_both_families() {
        let inv = Inventory::parse(CSV, "assets.csv").unwrap();
        assert_eq!(inv.len(), 5);
        assert_eq!(name(&inv, "10.1.0.4").as_deref(), Some("web-vm-01"));
        assert_eq!(name(&inv, "10.1.0.5").as_deref(), Some("web-tier"));
        assert_eq!(name(&inv, "10.200.0.5").as_deref(), Some("corp"));
        assert_eq!(name(&inv, "11.0.0.1"), None);
        assert_eq!(name(&inv, "2001:db8:1::9").as_deref(), Some("v6-lab"));
        assert_eq!(name(&inv, "2001:db8:2::9").as_deref(), Some("v6-corp"));
        assert_eq!(name(&inv, "2001:db9::1"), None);
        let a = inv.lookup("10.1.0.4".parse().unwrap()).unwrap();
        assert_eq!(
            (&*a.owner, &*a.environment, &*a.tags),
            ("web-team", "prod", "pci")
        );
        let lab = inv.lookup("2001:db8:1::9".parse().unwrap()).unwrap();
        assert_eq!(&*lab.tags, "lab");
    }

    #[test]
    fn errors_name_the_line() {
        let e = Inventory::parse("10.0.0.0/8,a\n10.0.0.0/33,b\n", "x.csv").unwrap_err();
        assert_eq!(e, "x.csv:2: \"10.0.0.0/33\" is not an address block");
        let e = Inventory::parse("10.0.0.0/8,a\n10.0.0.0/8,b\n", "x.csv").unwrap_err();
        assert!(e.contains("listed twice"), "{e}");
        let e = Inventory::parse("10.0.0.0/8\n", "x.csv").unwrap_err();
        assert!(e.contains("name is missing"), "{e}");
    }

    #[test]
    fn cache_hits_evicts_and_reloads() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("assets.csv");
        std::fs::write(&path, CSV).unwrap();
        use std::time::SystemTime;
        let mut l = AssetLookup::open(&path, 2, Duration::ZERO).unwrap();
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        l.lookup(ip("10.1.0.4"));
        l.lookup(ip("10.1.0.4"));
        l.lookup(ip("10.9.9.9"));
        assert_eq!((l.counts().hits, l.counts().misses), (1, 2));
        // A third address evicts the least recently used one (10.1.0.4).
        l.lookup(ip("11.0.0.1"));
        l.lookup(ip("10.1.0.4"));
        let c = l.counts();
        assert_eq!((c.hits, c.misses, c.evictions), (1, 4, 2));
        l.after_batch();
        assert_eq!(l.counts(), CacheCounts::default());
        // The file changes: the new inventory is used, the cache forgotten.
        std::thread::sleep(Duration::from_millis(20));
        std::fs::write(&path, "10.1.0.4/32,renamed-vm,web-team,prod,\n").unwrap();
        let later = SystemTime::now() + Duration::from_secs(5);
        std::fs::File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_modified(later)
            .unwrap();
        l.after_batch();
        assert_eq!(
            l.lookup(ip("10.1.0.4")).unwrap().name.as_ref(),
            "renamed-vm"
        );
        // A broken file keeps the last good inventory.
        std::fs::write(&path, "not a cidr,x\n").unwrap();
        std::fs::File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_modified(later + Duration::from_secs(5))
            .unwrap();
        l.after_batch();
        assert_eq!(
            l.lookup(ip("10.1.0.4")).unwrap().name.as_ref(),
            "renamed-vm"
        );
    }
}
