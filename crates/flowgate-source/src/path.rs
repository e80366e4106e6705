//! What a flow log blob's name says: its hour partition and which subscription, resource
//! group and NSG (or VNet flow log) it belongs to, and the include/exclude filters on them.
//!
//! Names seen in real accounts (see `flow-log-field-notes.md`):
//! - NSG: `resourceId=/SUBSCRIPTIONS/{sub}/RESOURCEGROUPS/{rg}/PROVIDERS/MICROSOFT.NETWORK/
//!   NETWORKSECURITYGROUPS/{nsg}/y=YYYY/m=MM/d=DD/h=HH/m=00/macAddress={mac}/PT1H.json`
//! - VNet, long: `flowLogResourceID=/SUBSCRIPTIONS/{sub}/RESOURCEGROUPS/{rg}/PROVIDERS/
//!   MICROSOFT.NETWORK/NETWORKWATCHERS/{nw}/FLOWLOGS/{name}/y=.../PT1H.json`
//! - VNet, short: `flowLogResourceID=/{SUB}_{RG}/NETWORKWATCHER_{REGION}_{NAME}/y=.../PT1H.json`
//! - Legacy: `{nsg}/{year}/{month}/{day}/PT1H.json`

use flowgate_core::glob::glob_match;
use flowgate_core::time::UtcTime;
use serde::Deserialize;

/// The part of a blob name before its `y=YYYY/m=MM/d=DD/h=HH/` partition, found wherever
/// it is in the path (VNet and NSG paths have different depths): one per NSG or flow log.
pub fn hour_dir(name: &str) -> Option<&str> {
    hour_partition(name).map(|(at, _)| &name[..at])
}

/// The object's name without its hour partition: the same for every hour of one NSG and
/// MAC (or flow log), so that its hours can be read one after another, in time order.
/// Names without an hour partition are streams of their own.
pub fn stream_of(name: &str) -> (&str, &str) {
    match hour_partition(name) {
        // `y=YYYY/m=MM/d=DD/h=HH/` is 22 bytes.
        Some((at, _)) => (&name[..at], name.get(at + 22..).unwrap_or_default()),
        None => (name, ""),
    }
}

/// Start of the hour a blob's partition names, in seconds since the epoch.
pub fn hour_start(name: &str) -> Option<i64> {
    hour_partition(name).map(|(_, t)| t)
}

fn hour_partition(name: &str) -> Option<(usize, i64)> {
    let at = name.find("/y=")? + 1;
    let rest = &name.as_bytes()[at..];
    let shaped = rest.len() > 21
        && rest[6] == b'/'
        && rest[7..].starts_with(b"m=")
        && rest[12..].starts_with(b"d=")
        && rest[17..].starts_with(b"h=")
        && rest[21] == b'/';
    if !shaped {
        return None;
    }
    let digits = |r: std::ops::Range<usize>| -> Option<u32> {
        let d = &rest[r];
        d.iter()
            .all(u8::is_ascii_digit)
            .then(|| d.iter().fold(0, |n, c| n * 10 + u32::from(c - b'0')))
    };
    let time = UtcTime {
        year: i64::from(digits(2..6)?),
        month: digits(9..11)?,
        day: digits(14..16)?,
        hour: digits(19..21)?,
        minute: 0,
        second: 0,
        millis: 0,
    };
    Some((at, time.epoch_secs()))
}

/// Which subscription, resource group and NSG (or VNet flow log) a blob belongs to, as
/// far as its name tells.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Scope<'a> {
    pub subscription: Option<&'a str>,
    pub resource_group: Option<&'a str>,
    /// The NSG's name, or the VNet flow log's name.
    pub nsg: Option<&'a str>,
}

impl<'a> Scope<'a> {
    pub fn of(name: &'a str) -> Scope<'a> {
        let segments: Vec<&str> = name.split('/').collect();
        let after = |key: &str| {
            segments
                .windows(2)
                .find(|w| w[0].eq_ignore_ascii_case(key))
                .map(|w| w[1])
        };
        if let Some(subscription) = after("SUBSCRIPTIONS") {
            return Scope {
                subscription: Some(subscription),
                resource_group: after("RESOURCEGROUPS"),
                nsg: after("NETWORKSECURITYGROUPS").or_else(|| after("FLOWLOGS")),
            };
        }
        if segments[0].eq_ignore_ascii_case("flowLogResourceID=") && segments.len() > 2 {
            // `{SUB}_{RG}/NETWORKWATCHER_{REGION}_{NAME}`: a subscription ID has no `_`.
            let (subscription, resource_group) = match segments[1].split_once('_') {
                Some((s, rg)) => (Some(s), Some(rg)),
                None => (Some(segments[1]), None),
            };
            let nsg = segments[2]
                .split_once('_')
                .and_then(|(_, rest)| rest.split_once('_'))
                .map(|(_, name)| name);
            return Scope {
                subscription,
                resource_group,
                nsg,
            };
        }
        let legacy = segments.len() > 1 && !segments[0].contains('=') && hour_dir(name).is_none();
        Scope {
            nsg: legacy.then_some(segments[0]),
            ..Scope::default()
        }
    }
}

/// Names to match, case-insensitively; `*` matches any run of characters.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScopeNames {
    #[serde(default)]
    pub subscriptions: Vec<String>,
    #[serde(default)]
    pub resource_groups: Vec<String>,
    /// NSG names; for VNet flow logs, flow log names.
    #[serde(default)]
    pub nsgs: Vec<String>,
}

impl ScopeNames {
    fn is_empty(&self) -> bool {
        self.subscriptions.is_empty() && self.resource_groups.is_empty() && self.nsgs.is_empty()
    }

    fn lists<'s>(&'s self, scope: &Scope<'s>) -> [(&'s [String], Option<&'s str>); 3] {
        [
            (&self.subscriptions, scope.subscription),
            (&self.resource_groups, scope.resource_group),
            (&self.nsgs, scope.nsg),
        ]
    }
}

/// `include` and `exclude` of a source: an object is followed if every non-empty include
/// list matches it and no exclude list does. A name its path does not carry (a legacy
/// path has no subscription) fails an include list on it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PathFilter {
    pub include: ScopeNames,
    pub exclude: ScopeNames,
}

impl PathFilter {
    pub fn accepts(&self, name: &str) -> bool {
        if self.include.is_empty() && self.exclude.is_empty() {
            return true;
        }
        let scope = Scope::of(name);
        let any = |patterns: &[String], value: Option<&str>| {
            value.is_some_and(|v| patterns.iter().any(|p| glob_match(p, v)))
        };
        let included = self
            .include
            .lists(&scope)
            .iter()
            .all(|(patterns, value)| patterns.is_empty() || any(patterns, *value));
        let excluded = self
            .exclude
            .lists(&scope)
            .iter()
            .any(|(patterns, value)| any(patterns, *value));
        included && !excluded
    }

    /// Errors name the key under `prefix`.
    pub fn validate(&self, prefix: &str) -> Result<(), String> {
        for (which, names) in [("include", &self.include), ("exclude", &self.exclude)] {
            for (key, list) in [
                ("subscriptions", &names.subscriptions),
                ("resource_groups", &names.resource_groups),
                ("nsgs", &names.nsgs),
            ] {
                if list.iter().any(|p| p.is_empty() || p.contains('/')) {
                    return Err(format!(
                        "{prefix}.{which}.{key}: names must be non-empty and contain no '/'"
                    ));
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stream_is_every_hour_of_one_nic() {
        let a = "resourceId=/X/NSG/y=2024/m=03/d=04/h=10/m=00/macAddress=AA/PT1H.json";
        let b = "resourceId=/X/NSG/y=2024/m=03/d=04/h=11/m=00/macAddress=AA/PT1H.json";
        let c = "resourceId=/X/NSG/y=2024/m=03/d=04/h=11/m=00/macAddress=BB/PT1H.json";
        assert_eq!(
            stream_of(a),
            ("resourceId=/X/NSG/", "m=00/macAddress=AA/PT1H.json")
        );
        assert_eq!(stream_of(a), stream_of(b));
        assert_ne!(stream_of(b), stream_of(c));
        assert_eq!(
            stream_of("nsg/2024/03/04/PT1H.json"),
            ("nsg/2024/03/04/PT1H.json", "")
        );
    }

    const NSG: &str = "resourceId=/SUBSCRIPTIONS/00000000-0000-0000-0000-000000000000/RESOURCEGROUPS/FABRIKAMRG/PROVIDERS/MICROSOFT.NETWORK/NETWORKSECURITYGROUPS/FABRIAKMVM1-NSG/y=2024/m=03/d=04/h=10/m=00/macAddress=000D3AF87856/PT1H.json";
    const VNET_LONG: &str = "flowLogResourceID=/SUBSCRIPTIONS/11111111-1111-1111-1111-111111111111/RESOURCEGROUPS/NETWORKWATCHERRG/PROVIDERS/MICROSOFT.NETWORK/NETWORKWATCHERS/NETWORKWATCHER_EASTUS/FLOWLOGS/MYVNETFLOWLOG/y=2024/m=03/d=04/h=10/m=00/macAddress=1/PT1H.json";
    const VNET_SHORT: &str = "flowLogResourceID=/22222222-2222-2222-2222-222222222222_NETWORKWATCHERRG/NETWORKWATCHER_EASTUS_MYVNETFLOWLOG/y=2024/m=03/d=04/h=10/m=00/macAddress=1/PT1H.json";
    const LEGACY: &str = "myvm-nsg/2018/05/01/PT1H.json";

    #[test]
    fn hour_partitions_are_found_at_any_depth() {
        assert_eq!(
            hour_dir(NSG),
            Some("resourceId=/SUBSCRIPTIONS/00000000-0000-0000-0000-000000000000/RESOURCEGROUPS/FABRIKAMRG/PROVIDERS/MICROSOFT.NETWORK/NETWORKSECURITYGROUPS/FABRIAKMVM1-NSG/")
        );
        assert_eq!(
            hour_dir(VNET_SHORT),
            Some("flowLogResourceID=/22222222-2222-2222-2222-222222222222_NETWORKWATCHERRG/NETWORKWATCHER_EASTUS_MYVNETFLOWLOG/")
        );
        assert_eq!(hour_start(NSG), Some(1_709_546_400));
        assert_eq!(hour_start(VNET_LONG), Some(1_709_546_400));
        assert_eq!(hour_dir(LEGACY), None);
        assert_eq!(hour_dir("x/y=2024/PT1H.json"), None);
        assert_eq!(hour_start("x/y=2024/m=0x/d=04/h=10/m=00/PT1H.json"), None);
    }

    #[test]
    fn scopes_of_every_path_shape() {
        assert_eq!(
            Scope::of(NSG),
            Scope {
                subscription: Some("00000000-0000-0000-0000-000000000000"),
                resource_group: Some("FABRIKAMRG"),
                nsg: Some("FABRIAKMVM1-NSG"),
            }
        );
        let long = Scope::of(VNET_LONG);
        assert_eq!(
            long.subscription,
            Some("11111111-1111-1111-1111-111111111111")
        );
        assert_eq!(long.resource_group, Some("NETWORKWATCHERRG"));
        assert_eq!(long.nsg, Some("MYVNETFLOWLOG"));
        assert_eq!(
            Scope::of(VNET_SHORT),
            Scope {
                subscription: Some("22222222-2222-2222-2222-222222222222"),
                resource_group: Some("NETWORKWATCHERRG"),
                nsg: Some("MYVNETFLOWLOG"),
            }
        );
        assert_eq!(
            Scope::of(LEGACY),
            Scope {
                nsg: Some("myvm-nsg"),
                ..Scope::default()
            }
        );
    }

    #[test]
    fn include_and_exclude() {
        let names = |subscriptions: &[&str], resource_groups: &[&str], nsgs: &[&str]| {
            let v = |l: &[&str]| l.iter().map(|s| s.to_string()).collect();
            ScopeNames {
                subscriptions: v(subscriptions),
                resource_groups: v(resource_groups),
                nsgs: v(nsgs),
            }
        };
        let all = [NSG, VNET_LONG, VNET_SHORT, LEGACY];
        let accepted = |f: &PathFilter| -> Vec<&str> {
            all.iter().copied().filter(|n| f.accepts(n)).collect()
        };
        assert_eq!(accepted(&PathFilter::default()), all);
        let f = PathFilter {
            include: names(
                &["00000000-*", "22222222-2222-2222-2222-222222222222"],
                &[],
                &[],
            ),
            ..PathFilter::default()
        };
        assert_eq!(accepted(&f), [NSG, VNET_SHORT]);
        let f = PathFilter {
            include: names(&[], &["networkwatcherrg"], &["myvnetflowlog"]),
            ..PathFilter::default()
        };
        assert_eq!(accepted(&f), [VNET_LONG, VNET_SHORT]);
        let f = PathFilter {
            exclude: names(&[], &[], &["*-nsg"]),
            ..PathFilter::default()
        };
        assert_eq!(accepted(&f), [VNET_LONG, VNET_SHORT]);
        let f = PathFilter {
            include: names(&[], &["*"], &[]),
            exclude: names(&["11111111-*"], &[], &[]),
        };
        assert_eq!(accepted(&f), [NSG, VNET_SHORT]);
        assert!(f.validate("sources.a").is_ok());
        let bad = PathFilter {
            exclude: names(&[], &["a/b"], &[]),
            ..PathFilter::default()
        };
        assert_eq!(
            bad.validate("sources.a").unwrap_err(),
            "sources.a.exclude.resource_groups: names must be non-empty and contain no '/'"
        );
    }
}
