//! GeoIP and ASN lookups from MaxMind-format databases (`maxminddb`): country, city and
//! coordinates from a City database, AS number and organisation from an ASN database.
//! Only public addresses are looked up (private ones are in no such database), each
//! through the LRU cache; a database whose file changes is reopened.
//!
//! Two City layouts are read: MaxMind's GeoIP2/GeoLite2 (`country.iso_code`,
//! `city.names.en`, `location.latitude`) and the flat one of the ip-location-db
//! project's builds (`country_code`, `city`, `latitude`).

use crate::watched_file::WatchedFile;
use flowgate_core::Geo;
use maxminddb::Reader;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tracing::{info, warn};

/// One opened database and the file it came from.
struct Database {
    file: WatchedFile,
    reader: Reader<Vec<u8>>,
}

impl Database {
    fn open(path: &Path, reload_every: Duration) -> Result<Database, String> {
        let reader = open_reader(path)?;
        info!(database = %path.display(), kind = %reader.metadata().database_type, "GeoIP database loaded");
        Ok(Database {
            file: WatchedFile::new(path, reload_every),
            reader,
        })
    }

    /// Reopens the file if it changed; true if it was replaced.
    fn reload_if_changed(&mut self) -> bool {
        if !self.file.changed() {
            return false;
        }
        match open_reader(self.file.path()) {
            Ok(reader) => {
                info!(database = %self.file.path().display(), "GeoIP database reloaded");
                self.reader = reader;
                true
            }
            Err(e) => {
                warn!(error = %e, "GeoIP database not reloaded; keeping the previous one");
                false
            }
        }
    }

    fn decode<T: for<'de> Deserialize<'de>>(&self, ip: IpAddr) -> Option<T> {
        // An IPv4-only database (ip-location-db ships one file per IP version) has no
        // answer for IPv6 addresses: not an error.
        if ip.is_ipv6() && self.reader.metadata().ip_version == 4 {
            return None;
        }
        match self.reader.lookup(ip).and_then(|r| r.decode::<T>()) {
            Ok(found) => found,
            Err(e) => {
                // A corrupt entry answers nothing; the event still goes out.
                warn!(database = %self.file.path().display(), %ip, error = %e, "GeoIP lookup failed");
                None
            }
        }
    }
}

fn open_reader(path: &Path) -> Result<Reader<Vec<u8>>, String> {
    Reader::open_readfile(path).map_err(|e| format!("GeoIP database {}: {e}", path.display()))
}

/// The City and ASN databases; lookups are cached by the enricher's address cache.
pub struct GeoLookup {
    city: Option<Database>,
    asn: Option<Database>,
}

impl GeoLookup {
    pub fn open(
        city: Option<&Path>,
        asn: Option<&Path>,
        reload_every: Duration,
    ) -> Result<GeoLookup, String> {
        let open = |p: Option<&Path>| p.map(|p| Database::open(p, reload_every)).transpose();
        Ok(GeoLookup {
            city: open(city)?,
            asn: open(asn)?,
        })
    }

    /// What the databases say about `ip` (`None` if they know nothing).
    pub fn lookup(&self, ip: IpAddr) -> Option<Arc<Geo>> {
        let mut geo = Geo::default();
        if let Some(record) = self
            .city
            .as_ref()
            .and_then(|db| db.decode::<CityRecord>(ip))
        {
            record.fill(&mut geo);
        }
        if let Some(record) = self.asn.as_ref().and_then(|db| db.decode::<AsnRecord>(ip)) {
            geo.asn = record.autonomous_system_number;
            geo.as_org = record.autonomous_system_organization.map(Into::into);
        }
        (!geo.is_empty()).then(|| Arc::new(geo))
    }

    /// Reopens changed databases; true if one was replaced.
    pub fn reload_if_changed(&mut self) -> bool {
        let mut changed = false;
        for db in [&mut self.city, &mut self.asn].into_iter().flatten() {
            changed |= db.reload_if_changed();
        }
        changed
    }
}

/// A City record in either layout; unknown fields are ignored.
#[derive(Deserialize, Default)]
#[serde(default)]
struct CityRecord {
    country: Option<Place>,
    city: Option<Place>,
    location: Option<Location>,
    // The flat layout.
    country_code: Option<String>,
    latitude: Option<Coordinate>,
    longitude: Option<Coordinate>,
}

/// A latitude or longitude: a double in MaxMind's databases, a 32-bit float in
/// ip-location-db's (the decoder is strict about which it is asked for).
#[derive(Clone, Copy)]
struct Coordinate(f64);

impl<'de> Deserialize<'de> for Coordinate {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = Coordinate;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a number")
            }
            fn visit_f32<E>(self, v: f32) -> Result<Coordinate, E> {
                // Through its shortest decimal, so that 41.6015f32 is 41.6015, not
                // 41.60150146484375.
                Ok(Coordinate(v.to_string().parse().unwrap_or(f64::from(v))))
            }
            fn visit_f64<E>(self, v: f64) -> Result<Coordinate, E> {
                Ok(Coordinate(v))
            }
            fn visit_i64<E>(self, v: i64) -> Result<Coordinate, E> {
                Ok(Coordinate(v as f64))
            }
            fn visit_u64<E>(self, v: u64) -> Result<Coordinate, E> {
                Ok(Coordinate(v as f64))
            }
        }
        d.deserialize_any(Visitor)
    }
}

/// GeoIP2 places are `{"iso_code": .., "names": {"en": ..}}`; flat ones a plain name.
#[derive(Deserialize)]
#[serde(untagged)]
enum Place {
    Name(String),
    Map {
        #[serde(default)]
        iso_code: Option<String>,
        #[serde(default)]
        names: BTreeMap<String, String>,
    },
}

impl Place {
    fn name(self) -> Option<String> {
        match self {
            Place::Name(n) => Some(n),
            Place::Map { mut names, .. } => names.remove("en"),
        }
    }

    fn code(self) -> Option<String> {
        match self {
            Place::Name(n) => Some(n),
            Place::Map { iso_code, .. } => iso_code,
        }
    }
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Location {
    latitude: Option<Coordinate>,
    longitude: Option<Coordinate>,
}

impl CityRecord {
    fn fill(self, geo: &mut Geo) {
        let non_empty = |s: Option<String>| s.filter(|s| !s.is_empty()).map(Into::into);
        geo.country = non_empty(self.country.and_then(Place::code).or(self.country_code));
        geo.city = non_empty(self.city.and_then(Place::name));
        let location = self.location.unwrap_or_default();
        // Rendered once here rather than per event by the encoders.
        let text = |c: Coordinate| c.0.is_finite().then(|| c.0.to_string().into());
        geo.latitude = location.latitude.or(self.latitude).and_then(text);
        geo.longitude = location.longitude.or(self.longitude).and_then(text);
    }
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct AsnRecord {
    autonomous_system_number: Option<u32>,
    autonomous_system_organization: Option<String>,
}
