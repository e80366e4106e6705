//! Seeded, realistic flow log documents: for tests, benchmarks and `flowgate simulate`.
//!
//! The shape follows what Network Watcher writes (see `../shared/notes/flow-log-field-notes.md`):
//! one record per minute, 2–6 rules per record, 1–4 NICs per rule, 20–200 tuples per
//! inner flow, a skewed mix of a few thousand public and private addresses and a few IPv6
//! flows; denied flows are `B` tuples with empty counters.

use std::fmt::Write;

/// Which schema to generate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Schema {
    NsgV1,
    NsgV2,
    VNet,
}

/// SplitMix64: small, fast, and the same sequence on every machine.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in `lo..hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next_u64() % (hi - lo)
    }
    pub fn chance(&mut self, p: f64) -> bool {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64 <= p
    }
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.range(0, items.len() as u64) as usize]
    }
}

/// (rule, direction, decision, weight)
const RULES: &[(&str, char, char, u64)] = &[
    ("DefaultRule_DenyAllInBound", 'I', 'D', 30),
    ("DefaultRule_AllowInternetOutBound", 'O', 'A', 25),
    ("DefaultRule_AllowVnetInBound", 'I', 'A', 12),
    ("DefaultRule_AllowVnetOutBound", 'O', 'A', 12),
    ("DefaultRule_AllowAzureLoadBalancerInBound", 'I', 'A', 4),
    ("DefaultRule_DenyAllOutBound", 'O', 'D', 3),
    ("UserRule_allow-https-inbound", 'I', 'A', 10),
    ("UserRule_allow-ssh-from-corp", 'I', 'A', 4),
    ("UserRule_deny-rdp-internet", 'I', 'D', 5),
    (
        "UserRule_aede8e1fd185211eaae4f962e72ea7eb-TCP-443-Internet",
        'I',
        'A',
        6,
    ),
    ("UserRule_deny-smb-outbound", 'O', 'D', 2),
];
const IN_PORTS: &[(u16, char)] = &[
    (443, 'T'),
    (80, 'T'),
    (22, 'T'),
    (3389, 'T'),
    (8080, 'T'),
    (445, 'T'),
    (53, 'U'),
    (123, 'U'),
];
const OUT_PORTS: &[(u16, char)] = &[
    (443, 'T'),
    (443, 'T'),
    (443, 'T'),
    (80, 'T'),
    (53, 'U'),
    (123, 'U'),
    (1433, 'T'),
    (5671, 'T'),
];
const V6_LOCAL: &[&str] = &["ace:cab:deca:deed::4", "ace:cab:deca:deed::5"];
const V6_REMOTE: &[&str] = &[
    "2404:f801:8028:1:4b2a::15",
    "2603:1030:20e:3::23c",
    "2a01:111:f100:2000::a83e:3019",
];

/// Identity of the NSG (or VNet) whose logs are generated.
#[derive(Debug, Clone)]
pub struct Target {
    pub subscription: String,
    pub resource_group: String,
    pub name: String,
}

impl Default for Target {
    fn default() -> Self {
        Target {
            subscription: "5A2F6C1E-8B3D-4E7A-9C2B-0D1E2F3A4B5C".into(),
            resource_group: "PROD-NETWORK-RG".into(),
            name: "WEB-TIER-NSG".into(),
        }
    }
}

/// Generates one record per call.
pub struct Generator {
    rng: Rng,
    schema: Schema,
    target: Target,
    macs: Vec<String>,
    local: Vec<[String; 2]>,
    public: Vec<String>,
    vnet: Vec<String>,
}

impl Generator {
    pub fn new(schema: Schema, seed: u64, target: Target) -> Self {
        let mut rng = Rng::new(seed);
        let macs: Vec<String> = (0..8)
            .map(|_| format!("000D3A{:06X}", rng.range(0, 1 << 24)))
            .collect();
        let local = macs
            .iter()
            .map(|_| {
                let mut ip = || {
                    format!(
                        "10.{}.{}.{}",
                        rng.pick(&[0, 1, 5, 20]),
                        rng.range(0, 8),
                        rng.range(4, 250)
                    )
                };
                [ip(), ip()]
            })
            .collect();
        let public = (0..6000)
            .map(|_| {
                let mut a = rng.range(1, 224);
                while [10, 127, 100, 169, 172, 192].contains(&a) {
                    a = rng.range(1, 224);
                }
                format!(
                    "{a}.{}.{}.{}",
                    rng.range(0, 256),
                    rng.range(0, 256),
                    rng.range(1, 255)
                )
            })
            .collect();
        let vnet = (0..2000)
            .map(|_| {
                format!(
                    "10.{}.{}.{}",
                    rng.pick(&[0, 1, 5, 20, 244]),
                    rng.range(0, 16),
                    rng.range(1, 255)
                )
            })
            .collect();
        Generator {
            rng,
            schema,
            target,
            macs,
            local,
            public,
            vnet,
        }
    }

    pub fn schema(&self) -> Schema {
        self.schema
    }

    /// Uses exactly these NICs (a blob holds the flows of one NIC: its `macAddress`).
    pub fn with_macs(mut self, macs: Vec<String>) -> Self {
        let local = self.local[0].clone();
        self.local = macs.iter().map(|_| local.clone()).collect();
        self.macs = macs;
        self
    }

    /// Appends one record (JSON object, no separator) for the minute ending at `epoch_secs`;
    /// returns the number of tuples in it.
    pub fn record(&mut self, epoch_secs: u64, out: &mut String) -> usize {
        let r = &mut self.rng;
        let nmac = (r.range(1, 5) as usize).min(self.macs.len());
        let mut macs: Vec<usize> = Vec::new();
        while macs.len() < nmac {
            let m = r.range(0, self.macs.len() as u64) as usize;
            if !macs.contains(&m) {
                macs.push(m);
            }
        }
        let nrules = r.range(2, 7) as usize;
        let total_weight: u64 = RULES.iter().map(|x| x.3).sum();
        let mut rules: Vec<usize> = Vec::new();
        while rules.len() < nrules {
            let mut w = r.range(0, total_weight);
            let i = RULES.iter().position(|x| {
                if w < x.3 {
                    true
                } else {
                    w -= x.3;
                    false
                }
            });
            let i = i.unwrap_or(0);
            if !rules.contains(&i) {
                rules.push(i);
            }
        }
        rules.sort_unstable();
        let time = iso_time(epoch_secs, r.range(0, 10_000_000));
        let sub = &self.target.subscription;
        let rg = &self.target.resource_group;
        let name = &self.target.name;
        let mut tuples = 0;
        let version = match self.schema {
            Schema::NsgV1 => 1,
            Schema::NsgV2 => 2,
            Schema::VNet => 4,
        };
        if self.schema == Schema::VNet {
            let _ = write!(
                out,
                r#"{{"time":"{time}","flowLogVersion":4,"flowLogGUID":"{:08x}-0000-4000-8000-{:012x}","macAddress":"{}","category":"FlowLogFlowEvent","flowLogResourceID":"/SUBSCRIPTIONS/{sub}/RESOURCEGROUPS/NETWORKWATCHERRG/PROVIDERS/MICROSOFT.NETWORK/NETWORKWATCHERS/NETWORKWATCHER_EASTUS/FLOWLOGS/{name}-FLOWLOG","targetResourceID":"/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.Network/virtualNetworks/{name}","operationName":"FlowLogFlowEvent","flowRecords":{{"flows":[{{"aclID":"00000000-1234-abcd-ef00-c1c2c3c4c5c6","flowGroups":["#,
                r.next_u64() as u32,
                r.next_u64() & 0xFFFF_FFFF_FFFF,
                self.macs[macs[0]]
            );
        } else {
            let _ = write!(
                out,
                r#"{{"time":"{time}","systemId":"{:08x}-0000-4000-8000-{:012x}","macAddress":"{}","category":"NetworkSecurityGroupFlowEvent","resourceId":"/SUBSCRIPTIONS/{sub}/RESOURCEGROUPS/{rg}/PROVIDERS/MICROSOFT.NETWORK/NETWORKSECURITYGROUPS/{name}","operationName":"NetworkSecurityGroupFlowEvents","properties":{{"Version":{version},"flows":["#,
                r.next_u64() as u32,
                r.next_u64() & 0xFFFF_FFFF_FFFF,
                self.macs[macs[0]]
            );
        }
        for (ri, &rule) in rules.iter().enumerate() {
            let (rule_name, dir, decision, _) = RULES[rule];
            if ri > 0 {
                out.push(',');
            }
            let _ = write!(out, r#"{{"rule":"{rule_name}","#);
            if self.schema == Schema::VNet {
                out.push_str(r#""flowTuples":["#);
            } else {
                out.push_str(r#""flows":["#);
            }
            let nic_count = if self.schema == Schema::VNet {
                1
            } else {
                self.rng.range(1, nmac as u64 + 1) as usize
            };
            for (mi, &mac) in macs.iter().take(nic_count).enumerate() {
                if self.schema != Schema::VNet {
                    if mi > 0 {
                        out.push(',');
                    }
                    let _ = write!(out, r#"{{"mac":"{}","flowTuples":["#, self.macs[mac]);
                }
                let k = self.rng.range(20, 201);
                let mut stamps: Vec<u64> =
                    (0..k).map(|_| epoch_secs - self.rng.range(0, 60)).collect();
                stamps.sort_unstable();
                for (ti, ts) in stamps.into_iter().enumerate() {
                    if ti > 0 {
                        out.push(',');
                    }
                    out.push('"');
                    self.tuple(ts, rule_name, dir, decision, mac, out);
                    out.push('"');
                }
                tuples += k as usize;
                if self.schema != Schema::VNet {
                    out.push_str("]}");
                }
            }
            out.push_str("]}");
        }
        out.push_str(if self.schema == Schema::VNet {
            "]}]}}"
        } else {
            "]}}"
        });
        tuples
    }

    fn tuple(
        &mut self,
        ts: u64,
        rule: &str,
        dir: char,
        decision: char,
        mac: usize,
        out: &mut String,
    ) {
        let r = &mut self.rng;
        let mut local = r.pick(&self.local[mac]).as_str();
        let mut remote = if rule.contains("Vnet") {
            r.pick(&self.vnet).as_str()
        } else if rule.contains("LoadBalancer") {
            "168.63.129.16"
        } else if r.chance(0.5) {
            self.public[r.range(0, 200) as usize].as_str()
        } else {
            r.pick(&self.public).as_str()
        };
        if r.chance(0.003) {
            local = *r.pick(V6_LOCAL);
            remote = *r.pick(V6_REMOTE);
        }
        let (src, dst, sport, dport, proto) = if dir == 'I' {
            let (mut port, proto) = *r.pick(IN_PORTS);
            if r.chance(0.15) {
                port = r.range(1, 65536) as u16;
            }
            (remote, local, r.range(1024, 65536) as u16, port, proto)
        } else {
            let (port, proto) = *r.pick(OUT_PORTS);
            (local, remote, r.range(32768, 61000) as u16, port, proto)
        };
        let state = if decision == 'D' {
            'B'
        } else {
            *r.pick(&['B', 'B', 'B', 'C', 'E', 'E', 'E'])
        };
        match self.schema {
            Schema::NsgV1 => {
                let _ = write!(
                    out,
                    "{ts},{src},{dst},{sport},{dport},{proto},{dir},{decision}"
                );
            }
            Schema::NsgV2 => {
                let _ = write!(
                    out,
                    "{ts},{src},{dst},{sport},{dport},{proto},{dir},{decision},{state},"
                );
                counters(r, state, out);
            }
            Schema::VNet => {
                let ms = ts * 1000 + r.range(0, 1000);
                let proto = if proto == 'T' { 6 } else { 17 };
                let state = if decision == 'D' { 'D' } else { state };
                let enc = if r.chance(0.9) { "NX" } else { "X" };
                let _ = write!(
                    out,
                    "{ms},{src},{dst},{sport},{dport},{proto},{dir},{state},{enc},"
                );
                counters(r, state, out);
            }
        }
    }
}

fn counters(r: &mut Rng, state: char, out: &mut String) {
    if state == 'B' || state == 'D' {
        out.push_str(",,,");
        return;
    }
    let p1 = if r.chance(0.9) {
        r.range(0, 40)
    } else {
        r.range(40, 200_000)
    };
    let p2 = r.range(0, p1 + 1);
    let b1 = p1 * r.range(54, 1500);
    let b2 = p2 * r.range(54, 1500);
    let _ = write!(out, "{p1},{b1},{p2},{b2}");
}

/// `2024-03-04T10:01:00.1234567Z`, as Azure writes record times.
fn iso_time(epoch_secs: u64, frac7: u64) -> String {
    let days = epoch_secs / 86_400;
    let sod = epoch_secs % 86_400;
    // civil_from_days (Howard Hinnant), for dates after 1970.
    let z = days as i64 + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{frac7:07}Z",
        sod / 3600,
        sod / 60 % 60,
        sod % 60
    )
}

/// A whole `PT1H.json` document of at least `min_bytes`, one record per minute from
/// `start_epoch_secs`. Returns the document and its tuple count.
pub fn document(
    generator: &mut Generator,
    min_bytes: usize,
    start_epoch_secs: u64,
) -> (String, usize) {
    let mut doc = String::with_capacity(min_bytes + (1 << 20));
    doc.push_str("{\"records\":[");
    let mut tuples = 0;
    let mut minute = 1;
    while doc.len() < min_bytes {
        if minute > 1 {
            doc.push(',');
        }
        tuples += generator.record(start_epoch_secs + 60 * minute, &mut doc);
        minute += 1;
    }
    doc.push_str("]}");
    (doc, tuples)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documents_are_valid_json_with_the_counted_tuples() {
        for schema in [Schema::NsgV1, Schema::NsgV2, Schema::VNet] {
            let mut g = Generator::new(schema, 7, Target::default());
            let (doc, tuples) = document(&mut g, 200_000, 1_709_546_400);
            let v: serde_json::Value = serde_json::from_str(&doc).unwrap();
            let records = v["records"].as_array().unwrap();
            let counted: usize = records
                .iter()
                .map(|r| {
                    let groups = if schema == Schema::VNet {
                        r["flowRecords"]["flows"][0]["flowGroups"]
                            .as_array()
                            .unwrap()
                            .clone()
                    } else {
                        r["properties"]["flows"]
                            .as_array()
                            .unwrap()
                            .iter()
                            .flat_map(|f| f["flows"].as_array().unwrap().clone())
                            .collect()
                    };
                    groups
                        .iter()
                        .map(|g| g["flowTuples"].as_array().unwrap().len())
                        .sum::<usize>()
                })
                .sum();
            assert_eq!(counted, tuples, "{schema:?}");
            assert!(tuples > 1000);
        }
        assert_eq!(iso_time(1_542_110_402, 1), "2018-11-13T12:00:02.0000001Z");
    }

    #[test]
    fn same_seed_same_document() {
        let a = document(
            &mut Generator::new(Schema::NsgV2, 1, Target::default()),
            50_000,
            0,
        );
        let b = document(
            &mut Generator::new(Schema::NsgV2, 1, Target::default()),
            50_000,
            0,
        );
        assert_eq!(a, b);
    }
}
