//! The asset inventory: address blocks → name, owner, environment, tags, with
//! longest-prefix match, behind an LRU cache, reloaded when its file changes.
//!
//! The file is CSV, one block per line: `cidr,name,owner,environment,tags` (tags
//! `;`-separated; a first line starting with `cidr` is a header). Fields may be quoted as
//! in RFC 4180 (`"Smith, J"`, `""` for a quote); a quote inside an unquoted field is kept
//! as it is (`O"Brien`), as spreadsheet exports and Python's `csv` do; `#` at the start of
//! a line or after a blank, outside quotes, starts a comment; empty trailing fields are
//! ignored.

use crate::filter::{bits_of, mask, Cidr};
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
        let mut header_possible = true;
        for (i, line) in text.lines().enumerate() {
            let fields = csv_fields(line).map_err(|e| format!("{file}:{}: {e}", i + 1))?;
            if fields.len() == 1 && fields[0].is_empty() {
                continue;
            }
            if std::mem::take(&mut header_possible)
                && fields[0].to_ascii_lowercase().starts_with("cidr")
            {
                continue;
            }
            if fields.len() > 5 && fields[5..].iter().any(|f| !f.is_empty()) {
                return Err(format!(
                    "{file}:{}: {} fields, expected cidr,name,owner,environment,tags (quote a field that holds a comma)",
                    i + 1,
                    fields.len()
                ));
            }
            let cidr = Cidr::parse(&fields[0]).ok_or_else(|| {
                format!("{file}:{}: {:?} is not an address block", i + 1, fields[0])
            })?;
            let field = |k: usize| fields.get(k).map(String::as_str).unwrap_or_default().into();
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

/// The fields of one CSV line, without its comment: unquoted fields trimmed, quoted ones
/// as written.
fn csv_fields(line: &str) -> Result<Vec<String>, &'static str> {
    let mut fields = Vec::new();
    let mut field = String::new();
    let mut in_quotes = false;
    // This field began with a quote (blanks after the closing quote are dropped).
    let mut was_quoted = false;
    let mut after_blank = true;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        if in_quotes {
            match c {
                '"' if chars.peek() == Some(&'"') => {
                    chars.next();
                    field.push('"');
                }
                '"' => in_quotes = false,
                c => field.push(c),
            }
            after_blank = false;
            continue;
        }
        match c {
            ',' => {
                fields.push(finish_field(field, was_quoted));
                field = String::new();
                was_quoted = false;
            }
            '#' if after_blank => break,
            ' ' | '\t' => {
                if !was_quoted {
                    field.push(c);
                }
            }
            '"' if !was_quoted && field.trim().is_empty() => {
                field.clear();
                in_quotes = true;
                was_quoted = true;
            }
            c => field.push(c),
        }
        after_blank = c == ' ' || c == '\t';
    }
    if in_quotes {
        return Err("a quote is not closed (a field cannot span lines)");
    }
    fields.push(finish_field(field, was_quoted));
    Ok(fields)
}

fn finish_field(field: String, was_quoted: bool) -> String {
    if was_quoted {
        field
    } else {
        field.trim().to_owned()
    }
}

/// The inventory and the file it came from, reloaded when the file changes.
pub struct InventoryFile {
    file: WatchedFile,
    inventory: Inventory,
}

impl InventoryFile {
    pub fn open(path: &Path, reload_every: Duration) -> Result<Self, String> {
        let inventory = Inventory::load(path)?;
        info!(inventory = %path.display(), blocks = inventory.len(), "asset inventory loaded");
        Ok(InventoryFile {
            file: WatchedFile::new(path, reload_every),
            inventory,
        })
    }

    pub fn lookup(&self, ip: IpAddr) -> Option<Arc<Asset>> {
        self.inventory.lookup(ip)
    }

    /// Reloads the file if it changed; true if the inventory was replaced. A file that
    /// does not parse keeps the previous inventory (and says why).
    pub fn reload_if_changed(&mut self) -> bool {
        if !self.file.changed() {
            return false;
        }
        match Inventory::load(self.file.path()) {
            Ok(inventory) => {
                info!(inventory = %self.file.path().display(), blocks = inventory.len(), "asset inventory reloaded");
                self.inventory = inventory;
                true
            }
            Err(e) => {
                warn!(error = %e, "asset inventory not reloaded; keeping the previous one");
                false
            }
        }
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
    fn quoted_fields_and_comments() {
        let text = "# assets\ncidr,name,owner,environment,tags\n\
            10.0.0.0/8, \"Smith, J\" ,\"the \"\"core\"\"\",prod,team#2;pci # owned by netops\n\
            \"10.1.0.0/16\",\" padded \",,,\n   # indented comment\n";
        let inv = Inventory::parse(text, "a.csv").unwrap();
        assert_eq!(inv.len(), 2);
        let a = inv.lookup("10.2.3.4".parse().unwrap()).unwrap();
        assert_eq!(
            (&*a.name, &*a.owner, &*a.environment, &*a.tags),
            ("Smith, J", "the \"core\"", "prod", "team#2;pci")
        );
        let b = inv.lookup("10.1.3.4".parse().unwrap()).unwrap();
        assert_eq!((&*b.name, &*b.owner, &*b.tags), (" padded ", "", ""));
        // What spreadsheet exports write: another header, stray quotes, empty columns.
        let export =
            "CIDR Block,Name,Owner,Env,Tags,,\n10.0.0.0/8,O\"Brien's VM,\"ops\"-team,prod,,,\n";
        let inv = Inventory::parse(export, "export.csv").unwrap();
        let a = inv.lookup("10.9.9.9".parse().unwrap()).unwrap();
        assert_eq!((&*a.name, &*a.owner), ("O\"Brien's VM", "ops-team"));
        for (bad, why) in [
            ("10.0.0.0/8,\"open\n", "not closed"),
            ("10.0.0.0/8,a,b,c,d,e\n", "6 fields"),
        ] {
            let e = Inventory::parse(bad, "x.csv").unwrap_err();
            assert!(
                e.starts_with("x.csv:1: ") && e.contains(why),
                "{bad:?}: {e}"
            );
        }
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
    fn reloads_a_changed_file_and_keeps_the_last_good_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("assets.csv");
        std::fs::write(&path, CSV).unwrap();
        let mut f = InventoryFile::open(&path, Duration::ZERO).unwrap();
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let name = |f: &InventoryFile| f.lookup(ip("10.1.0.4")).unwrap().name.to_string();
        assert_eq!(name(&f), "web-vm-01");
        assert!(!f.reload_if_changed(), "unchanged");
        let touch = |secs: u64| {
            std::fs::File::options()
                .write(true)
                .open(&path)
                .unwrap()
                .set_modified(std::time::SystemTime::now() + Duration::from_secs(secs))
                .unwrap()
        };
        std::fs::write(&path, "10.1.0.4/32,renamed-vm,web-team,prod,\n").unwrap();
        touch(5);
        assert!(f.reload_if_changed());
        assert_eq!(name(&f), "renamed-vm");
        // A broken file keeps the last good inventory.
        std::fs::write(&path, "not a cidr,x\n").unwrap();
        touch(10);
        assert!(!f.reload_if_changed());
        assert_eq!(name(&f), "renamed-vm");
    }
}
