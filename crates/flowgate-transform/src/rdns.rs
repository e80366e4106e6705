//! Reverse DNS (PTR) names for addresses, looked up asynchronously: each batch starts the
//! lookups its addresses need and waits for them at most `timeout_ms` in all; answers
//! that come later are cached for the next events. A batch is never held longer than
//! the timeout, however slow the DNS servers are.
//!
//! By default only non-public addresses are looked up: a PTR query for an outside
//! address goes to a server its owner controls, and tells an attacker they were noticed.
//!
//! The client is a small UDP one (PTR answers fit a datagram), asking the configured
//! servers, else those of /etc/resolv.conf, in order.

use crate::enrich::address_class;
use crate::lookup_cache::{CacheCounts, LookupCache};
use flowgate_core::{metric_names as m, AddrClass};
use serde::Deserialize;
use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RdnsConfig {
    pub enabled: bool,
    /// DNS servers (`ip:port` or `ip`); empty: the nameservers of /etc/resolv.conf.
    pub servers: Vec<String>,
    /// How long a batch waits for its lookups, and how long one lookup may take.
    pub timeout_ms: u64,
    /// `private` (every non-public address: RFC 1918, shared, link-local, IPv6 ULA) or
    /// `all` (public addresses too; see the module docs before choosing it).
    pub addresses: RdnsScope,
    /// How long a name, or the absence of one, is remembered.
    pub ttl_secs: u64,
    pub negative_ttl_secs: u64,
    /// Lookups running at once; addresses beyond it wait for a later batch.
    pub max_in_flight: usize,
    pub cache_size: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RdnsScope {
    Private,
    All,
}

impl Default for RdnsConfig {
    fn default() -> Self {
        RdnsConfig {
            enabled: false,
            servers: Vec::new(),
            timeout_ms: 200,
            addresses: RdnsScope::Private,
            ttl_secs: 3600,
            negative_ttl_secs: 300,
            max_in_flight: 256,
            cache_size: 65_536,
        }
    }
}

impl RdnsConfig {
    pub fn validate(&self) -> Result<(), String> {
        for s in &self.servers {
            parse_server(s)?;
        }
        if !(1..=10_000).contains(&self.timeout_ms) {
            return Err("enrich.reverse_dns.timeout_ms must be in 1..=10000".into());
        }
        // An hour is the usual; a week is the most a cached name may be trusted.
        for (key, ttl) in [
            ("ttl_secs", self.ttl_secs),
            ("negative_ttl_secs", self.negative_ttl_secs),
        ] {
            if ttl > 604_800 {
                return Err(format!(
                    "enrich.reverse_dns.{key} must be at most 604800 (a week)"
                ));
            }
        }
        if !(1..=65_536).contains(&self.max_in_flight) {
            return Err("enrich.reverse_dns.max_in_flight must be in 1..=65536".into());
        }
        if !(1..=16_777_216).contains(&self.cache_size) {
            return Err("enrich.reverse_dns.cache_size must be in 1..=16777216".into());
        }
        Ok(())
    }

    /// The resolver; needs a Tokio runtime (its lookups run there).
    pub fn build(&self, runtime: tokio::runtime::Handle) -> Result<ReverseDns, String> {
        self.validate()?;
        let servers = if self.servers.is_empty() {
            let text = std::fs::read_to_string("/etc/resolv.conf")
                .map_err(|e| format!("enrich.reverse_dns: /etc/resolv.conf: {e}"))?;
            let found = resolv_conf_servers(&text);
            if found.is_empty() {
                return Err(
                    "enrich.reverse_dns: no servers configured and none in /etc/resolv.conf".into(),
                );
            }
            found
        } else {
            self.servers
                .iter()
                .map(|s| parse_server(s))
                .collect::<Result<_, _>>()?
        };
        let (tx, rx) = mpsc::unbounded_channel();
        Ok(ReverseDns {
            config: self.clone(),
            servers: Arc::new(servers),
            runtime,
            cache: LookupCache::new("rdns", self.cache_size),
            pending: HashSet::new(),
            answers_tx: tx,
            answers: rx,
            batch_started: Instant::now(),
        })
    }
}

fn parse_server(s: &str) -> Result<SocketAddr, String> {
    s.parse::<SocketAddr>()
        .or_else(|_| s.parse::<IpAddr>().map(|ip| SocketAddr::new(ip, 53)))
        .map_err(|_| format!("enrich.reverse_dns.servers: {s:?} is not an address (ip or ip:port)"))
}

fn resolv_conf_servers(text: &str) -> Vec<SocketAddr> {
    text.lines()
        .filter_map(|l| l.strip_prefix("nameserver"))
        .filter_map(|rest| rest.split_whitespace().next()?.parse::<IpAddr>().ok())
        .map(|ip| SocketAddr::new(ip, 53))
        .collect()
}

/// A cached answer: the name (or none) and until when it holds.
#[derive(Clone)]
struct Answer {
    name: Option<Arc<str>>,
    until: Instant,
}

/// What a lookup task reports.
struct Done {
    ip: IpAddr,
    result: Lookup,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    Found(String),
    NotFound,
    Timeout,
    Error(String),
}

pub struct ReverseDns {
    config: RdnsConfig,
    servers: Arc<Vec<SocketAddr>>,
    runtime: tokio::runtime::Handle,
    cache: LookupCache<Answer>,
    pending: HashSet<IpAddr>,
    answers_tx: mpsc::UnboundedSender<Done>,
    answers: mpsc::UnboundedReceiver<Done>,
    /// When the current batch's `prepare` began: `name` compares TTLs with it.
    batch_started: Instant,
}

/// How long past its TTL a name may still be given (see `ReverseDns::name`).
const STALE_FOR: Duration = Duration::from_secs(60);

impl ReverseDns {
    fn wanted(&self, ip: IpAddr) -> bool {
        match self.config.addresses {
            RdnsScope::All => true,
            RdnsScope::Private => address_class(ip) != AddrClass::Public,
        }
    }

    /// Starts the lookups `ips` need and waits for them up to the timeout. Called from a
    /// blocking thread (the transform), never from the runtime itself.
    pub fn prepare(&mut self, ips: impl IntoIterator<Item = IpAddr>) {
        let now = Instant::now();
        self.batch_started = now;
        let mut started = 0usize;
        for ip in ips {
            if !self.wanted(ip) || self.pending.contains(&ip) {
                continue;
            }
            if self.cache.peek_fresh(&ip, |a| a.until > now) {
                continue;
            }
            if self.pending.len() >= self.config.max_in_flight {
                break;
            }
            self.pending.insert(ip);
            started += 1;
            let (servers, tx) = (self.servers.clone(), self.answers_tx.clone());
            let timeout = Duration::from_millis(self.config.timeout_ms);
            self.runtime.spawn(async move {
                let result = lookup(ip, &servers, timeout).await;
                let _ = tx.send(Done { ip, result });
            });
        }
        if started > 0 {
            let deadline =
                tokio::time::Instant::now() + Duration::from_millis(self.config.timeout_ms);
            let pending = &mut self.pending;
            let (answers, cache, config) = (&mut self.answers, &mut self.cache, &self.config);
            self.runtime.block_on(async {
                // Until every lookup of this batch answered (or the deadline).
                while !pending.is_empty() {
                    match tokio::time::timeout_at(deadline, answers.recv()).await {
                        Ok(Some(done)) => record(done, pending, cache, config),
                        _ => break,
                    }
                }
            });
        }
        // Late answers of earlier batches.
        while let Ok(done) = self.answers.try_recv() {
            record(done, &mut self.pending, &mut self.cache, &self.config);
        }
    }

    /// The name of `ip`, if known by now. A name past its TTL is still given for
    /// `STALE_FOR` while its refresh waits for a free lookup slot (serve-stale, RFC 8767),
    /// not longer.
    pub fn name(&mut self, ip: IpAddr) -> Option<Arc<str>> {
        if !self.wanted(ip) {
            return None;
        }
        let now = self.batch_started;
        self.cache
            .get(&ip)
            .filter(|a| a.until + STALE_FOR > now)
            .and_then(|a| a.name)
    }

    pub fn after_batch(&mut self) {
        self.cache.publish();
    }

    pub fn counts(&self) -> CacheCounts {
        self.cache.counts()
    }
}

fn record(
    done: Done,
    pending: &mut HashSet<IpAddr>,
    cache: &mut LookupCache<Answer>,
    config: &RdnsConfig,
) {
    pending.remove(&done.ip);
    let (result, name, ttl) = match done.result {
        Lookup::Found(n) => ("found", Some(Arc::from(n)), config.ttl_secs),
        Lookup::NotFound => ("not_found", None, config.negative_ttl_secs),
        Lookup::Timeout => ("timeout", None, config.negative_ttl_secs),
        Lookup::Error(e) => {
            tracing::debug!(ip = %done.ip, error = %e, "reverse DNS lookup failed");
            ("error", None, config.negative_ttl_secs)
        }
    };
    metrics::counter!(m::ENRICH_RDNS_LOOKUPS_TOTAL, "result" => result).increment(1);
    let until = Instant::now() + Duration::from_secs(ttl);
    cache.insert(done.ip, Answer { name, until });
}

/// Asks each server in turn, sharing `timeout` between them.
pub async fn lookup(ip: IpAddr, servers: &[SocketAddr], timeout: Duration) -> Lookup {
    let deadline = tokio::time::Instant::now() + timeout;
    let query_name = reverse_name(ip);
    let mut last = Lookup::Timeout;
    for (i, server) in servers.iter().enumerate() {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        // Each remaining server gets an equal share of what is left.
        let share = left / (servers.len() - i) as u32;
        match tokio::time::timeout(share, ask(*server, &query_name)).await {
            Ok(Ok(Some(name))) => return Lookup::Found(name),
            Ok(Ok(None)) => return Lookup::NotFound,
            Ok(Err(e)) => last = Lookup::Error(e),
            Err(_) => last = Lookup::Timeout,
        }
    }
    last
}

/// `4.3.2.1.in-addr.arpa` / nibbles `.ip6.arpa`.
pub fn reverse_name(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            format!("{}.{}.{}.{}.in-addr.arpa", o[3], o[2], o[1], o[0])
        }
        IpAddr::V6(v6) => {
            let mut s = String::with_capacity(72);
            for byte in v6.octets().iter().rev() {
                s.push_str(&format!("{:x}.{:x}.", byte & 0xf, byte >> 4));
            }
            s.push_str("ip6.arpa");
            s
        }
    }
}

/// One PTR query over UDP: `Some(name)`, `None` for NXDOMAIN or no PTR answer.
async fn ask(server: SocketAddr, name: &str) -> Result<Option<String>, String> {
    let bind: SocketAddr = if server.is_ipv4() {
        "0.0.0.0:0".parse().expect("literal")
    } else {
        "[::]:0".parse().expect("literal")
    };
    let socket = UdpSocket::bind(bind).await.map_err(|e| e.to_string())?;
    socket.connect(server).await.map_err(|e| e.to_string())?;
    let id = query_id();
    socket
        .send(&query(id, name))
        .await
        .map_err(|e| e.to_string())?;
    let mut buf = [0u8; 1500];
    loop {
        let n = socket.recv(&mut buf).await.map_err(|e| e.to_string())?;
        // Ignore stray datagrams (another id): a spoofed answer must match the query.
        if n >= 2 && u16::from_be_bytes([buf[0], buf[1]]) == id {
            return parse_ptr_answer(&buf[..n]);
        }
    }
}

fn query_id() -> u16 {
    use std::hash::{BuildHasher, RandomState};
    RandomState::new().hash_one(Instant::now()) as u16
}

fn query(id: u16, name: &str) -> Vec<u8> {
    let mut q = Vec::with_capacity(96);
    q.extend_from_slice(&id.to_be_bytes());
    q.extend_from_slice(&[0x01, 0x00]); // recursion desired
    q.extend_from_slice(&[0, 1, 0, 0, 0, 0, 0, 0]); // one question
    for label in name.split('.') {
        q.push(label.len() as u8);
        q.extend_from_slice(label.as_bytes());
    }
    q.push(0);
    q.extend_from_slice(&[0, 12, 0, 1]); // PTR, IN
    q
}

/// The first PTR name of a response, `None` for NXDOMAIN or an answer without one.
fn parse_ptr_answer(msg: &[u8]) -> Result<Option<String>, String> {
    let bad = || "malformed DNS response".to_string();
    if msg.len() < 12 || msg[2] & 0x80 == 0 {
        return Err(bad());
    }
    if msg[2] & 0x02 != 0 {
        return Err("truncated DNS response".into());
    }
    match msg[3] & 0x0f {
        0 => {}
        3 => return Ok(None),
        rcode => return Err(format!("DNS server answered rcode {rcode}")),
    }
    let qd = u16::from_be_bytes([msg[4], msg[5]]);
    let an = u16::from_be_bytes([msg[6], msg[7]]);
    let mut pos = 12;
    for _ in 0..qd {
        pos = skip_name(msg, pos).ok_or_else(bad)? + 4;
    }
    for _ in 0..an {
        pos = skip_name(msg, pos).ok_or_else(bad)?;
        let header = msg.get(pos..pos + 10).ok_or_else(bad)?;
        let rtype = u16::from_be_bytes([header[0], header[1]]);
        let len = u16::from_be_bytes([header[8], header[9]]) as usize;
        pos += 10;
        if pos + len > msg.len() {
            return Err(bad());
        }
        if rtype == 12 {
            return read_name(msg, pos).map(Some).ok_or_else(bad);
        }
        pos += len;
    }
    Ok(None)
}

/// The offset after the name at `pos`.
fn skip_name(msg: &[u8], mut pos: usize) -> Option<usize> {
    loop {
        let len = *msg.get(pos)? as usize;
        match len {
            0 => return Some(pos + 1),
            l if l & 0xc0 == 0xc0 => return Some(pos + 2),
            l => pos += 1 + l,
        }
    }
}

/// A (possibly compressed) name, without the final dot, checked to be a plain host name
/// (letters, digits, `-`, `_`, `.`): a hostile DNS server cannot smuggle other bytes into
/// the events.
fn read_name(msg: &[u8], mut pos: usize) -> Option<String> {
    let mut name = String::new();
    for _ in 0..128 {
        let len = *msg.get(pos)? as usize;
        if len == 0 {
            return (!name.is_empty() && name.len() <= 253).then_some(name);
        }
        if len & 0xc0 == 0xc0 {
            pos = ((len & 0x3f) << 8) | *msg.get(pos + 1)? as usize;
            continue;
        }
        let label = msg.get(pos + 1..pos + 1 + len)?;
        if !label
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || *b == b'-' || *b == b'_')
        {
            return None;
        }
        if !name.is_empty() {
            name.push('.');
        }
        name.push_str(std::str::from_utf8(label).ok()?);
        pos += 1 + len;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reverse_names() {
        assert_eq!(
            reverse_name("10.1.2.3".parse().unwrap()),
            "3.2.1.10.in-addr.arpa"
        );
        assert_eq!(
            reverse_name("2001:db8::1".parse().unwrap()),
            "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa"
        );
    }

    #[test]
    fn parses_a_compressed_answer_and_refuses_odd_bytes() {
        let mut msg = query(7, "3.2.1.10.in-addr.arpa");
        msg[2] |= 0x80; // response
        msg[7] = 1; // one answer
                    // name: pointer to the question's name (offset 12), PTR IN, TTL, rdata
        let rdata = [3, b'v', b'm', b'1', 0xc0, 12 + 6]; // "vm1" + "10.in-addr.arpa"
        msg.extend_from_slice(&[0xc0, 12, 0, 12, 0, 1, 0, 0, 0, 60, 0, rdata.len() as u8]);
        msg.extend_from_slice(&rdata);
        assert_eq!(
            parse_ptr_answer(&msg).unwrap().as_deref(),
            Some("vm1.10.in-addr.arpa")
        );
        let n = msg.len();
        msg[n - 5] = b'|';
        assert!(
            parse_ptr_answer(&msg).is_err(),
            "| is no host name character"
        );
        let mut nx = query(7, "x.arpa");
        nx[2] |= 0x80;
        nx[3] = 3;
        assert_eq!(parse_ptr_answer(&nx), Ok(None));
    }

    #[test]
    fn resolv_conf() {
        let s = resolv_conf_servers("# c\nnameserver 10.0.0.2\nsearch x\nnameserver ::1\n");
        assert_eq!(
            s,
            vec!["10.0.0.2:53".parse().unwrap(), "[::1]:53".parse().unwrap()]
        );
    }
}
