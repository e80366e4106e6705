//! The syslog sink: an encoding thread, then one task per connection (TCP, TLS) or one
//! sending task (UDP).
//!
//! TCP and TLS acknowledgements: a batch is delivered once the receiver's TCP stack has
//! acknowledged its last byte (the kernel's count of unacknowledged bytes, `SIOCOUTQ`,
//! against the bytes this connection wrote to its socket, TLS records included) and the
//! connection has stayed open for [`SETTLE`] after that. A receiver that dies with our
//! bytes unread in its socket buffer resets the connection within that time; the batches
//! not yet delivered are then written again, first, on whichever connection is up. So a
//! receiver that stops or restarts loses nothing (it may see a batch twice). Beyond what
//! TCP can tell: a receiver that loses messages it has already read (killed with an
//! in-memory queue), and one that stops reading but keeps its connection open for longer
//! than [`SETTLE`] and is then killed (its kernel had acknowledged what sat in its receive
//! buffer). Only an application-level acknowledgement (RELP, Kafka) closes those.

use super::config::{Balance, Mode, Oversize, SyslogSinkConfig, WhenUnreachable};
use super::transport::{Connector, Stream};
use crate::encode::Encoder;
use bytes::Bytes;
use flowgate_core::{health, metric_names as m, BatchStatus, Delivery, Finalizer};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex as StdMutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, watch, Mutex};
use tracing::{info, warn};

/// How long a connection must stay open after the receiver acknowledged a batch.
const SETTLE: Duration = Duration::from_millis(250);
/// Bytes a connection may have written but not yet delivered.
const WINDOW: usize = 32 << 20;
/// How often acknowledgements and connection state are checked.
const TICK: Duration = Duration::from_millis(20);
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// A batch, encoded and framed.
struct Encoded {
    bytes: Bytes,
    events: usize,
    finalizer: Finalizer,
}

pub struct SyslogSink {
    name: Arc<str>,
    config: SyslogSinkConfig,
    connectors: Vec<Connector>,
}

impl SyslogSink {
    /// Reads the TLS files; connects later (an unreachable receiver is not a start-up
    /// error: batches wait for it).
    pub fn new(name: &str, config: &SyslogSinkConfig) -> Result<SyslogSink, String> {
        let timeout = Duration::from_secs_f64(config.connect_timeout_secs);
        let connectors = config
            .targets
            .iter()
            .map(|t| Connector::new(t, config.mode, config.tls.as_ref(), timeout))
            .collect::<Result<_, _>>()?;
        Ok(SyslogSink {
            name: name.into(),
            config: config.clone(),
            connectors,
        })
    }

    pub async fn run(self, input: mpsc::Receiver<Delivery>, abort: watch::Receiver<bool>) {
        let (tx, rx) = mpsc::channel::<Encoded>(2);
        let encoder = self.config.encoder();
        let encoding = tokio::task::spawn_blocking(move || encode(encoder, input, tx));
        match self.config.mode {
            Mode::Udp => self.run_udp(rx, abort).await,
            Mode::Tcp | Mode::Tls => self.run_streams(rx, abort).await,
        }
        let _ = encoding.await;
    }

    async fn run_streams(self, input: mpsc::Receiver<Encoded>, abort: watch::Receiver<bool>) {
        let shared = Arc::new(Shared {
            input: Mutex::new(input),
            retry: StdMutex::new(VecDeque::new()),
            up: (0..self.connectors.len())
                .map(|_| AtomicBool::new(true))
                .collect(),
            last_up_ms: AtomicU64::new(now_ms()),
            connected: AtomicUsize::new(0),
        });
        health::set_ready(&format!("sink.{}", self.name), false);
        let mut tasks = Vec::new();
        for (i, connector) in self.connectors.iter().enumerate() {
            for _ in 0..self.config.connections_per_target {
                let worker = Worker {
                    sink: self.name.clone(),
                    target: i,
                    connector: connector.clone(),
                    balance: self.config.balance,
                    write_timeout: Duration::from_secs_f64(self.config.write_timeout_secs),
                    shared: shared.clone(),
                };
                tasks.push(tokio::spawn(worker.run(abort.clone())));
            }
        }
        if self.config.when_unreachable == WhenUnreachable::Drop {
            let after = Duration::from_secs_f64(self.config.drop_after_secs);
            tasks.push(tokio::spawn(drop_while_unreachable(
                self.name.clone(),
                shared.clone(),
                after,
                abort.clone(),
            )));
        }
        for t in tasks {
            let _ = t.await;
        }
    }

    async fn run_udp(self, mut input: mpsc::Receiver<Encoded>, abort: watch::Receiver<bool>) {
        // UDP has no connection to wait for: ready from the start.
        health::set_ready(&format!("sink.{}", self.name), true);
        let mut sockets: Vec<Option<UdpSocket>> = self.connectors.iter().map(|_| None).collect();
        // When each target last failed (ICMP port unreachable shows as a send error).
        let mut failed_at: Vec<Option<Instant>> = vec![None; self.connectors.len()];
        let mut next = 0;
        let max = self.config.max_message_bytes;
        while let Some(batch) = input.recv().await {
            if *abort.borrow() {
                return;
            }
            let n = self.connectors.len();
            let order: Vec<usize> = match self.config.balance {
                Balance::RoundRobin => {
                    next = (next + 1) % n;
                    (0..n).map(|k| (next + k) % n).collect()
                }
                Balance::Failover => (0..n).collect(),
            };
            let usable = order
                .iter()
                .copied()
                .find(|&i| failed_at[i].is_none_or(|t| t.elapsed() > MAX_BACKOFF))
                .unwrap_or(order[0]);
            let socket = match &sockets[usable] {
                Some(s) => s,
                None => match udp_socket(&self.connectors[usable].target).await {
                    Ok(s) => sockets[usable].insert(s),
                    Err(e) => {
                        warn!(sink = %self.name, target = %self.connectors[usable].target, error = %e, "cannot open a UDP socket; batch sent nowhere");
                        failed_at[usable] = Some(Instant::now());
                        // The finalizer drops: failed, read again later; not at once.
                        tokio::time::sleep(Duration::from_secs(1)).await;
                        continue;
                    }
                },
            };
            let (mut sent, mut dropped, mut bytes, mut truncated) = (0u64, 0u64, 0u64, 0u64);
            for message in batch.bytes.split(|&b| b == b'\n').filter(|m| !m.is_empty()) {
                let datagram = if message.len() > max {
                    match self.config.oversize {
                        Oversize::Truncate => {
                            truncated += 1;
                            truncate(message, max)
                        }
                        Oversize::Drop => {
                            dropped += 1;
                            continue;
                        }
                    }
                } else {
                    message
                };
                match socket.send(datagram).await {
                    Ok(_) => {
                        sent += 1;
                        bytes += datagram.len() as u64;
                    }
                    Err(e) => {
                        // Best effort, as RFC 5426 says: count it, remember the target.
                        dropped += 1;
                        if failed_at[usable].is_none_or(|t| t.elapsed() > MAX_BACKOFF) {
                            warn!(sink = %self.name, target = %self.connectors[usable].target, error = %e, "UDP send failed");
                        }
                        failed_at[usable] = Some(Instant::now());
                    }
                }
            }
            let sink = self.name.to_string();
            metrics::counter!(m::SINK_EVENTS_SENT_TOTAL, "sink" => sink.clone()).increment(sent);
            metrics::counter!(m::SINK_BYTES_SENT_TOTAL, "sink" => sink.clone()).increment(bytes);
            if truncated > 0 {
                metrics::counter!(m::SINK_EVENTS_TRUNCATED_TOTAL, "sink" => sink.clone())
                    .increment(truncated);
            }
            if dropped > 0 {
                metrics::counter!(m::SINK_EVENTS_DROPPED_TOTAL, "sink" => sink, "reason" => "udp")
                    .increment(dropped);
            }
            debug_assert_eq!(batch.events as u64, sent + dropped);
            batch.finalizer.update(BatchStatus::Delivered);
        }
    }
}

async fn udp_socket(target: &str) -> std::io::Result<UdpSocket> {
    let addr = tokio::net::lookup_host(target)
        .await?
        .next()
        .ok_or_else(|| std::io::Error::other("no address"))?;
    let local = if addr.is_ipv4() {
        "0.0.0.0:0"
    } else {
        "[::]:0"
    };
    let socket = UdpSocket::bind(local).await?;
    socket.connect(addr).await?;
    Ok(socket)
}

/// Encodes on a thread of its own, so the network tasks never wait for the CPU.
fn encode(mut encoder: Encoder, mut input: mpsc::Receiver<Delivery>, out: mpsc::Sender<Encoded>) {
    while let Some(delivery) = input.blocking_recv() {
        let mut buf = Vec::new();
        encoder.encode_batch(&delivery.batch, &mut buf);
        let encoded = Encoded {
            bytes: Bytes::from(buf),
            events: delivery.batch.events.len(),
            finalizer: delivery.finalizer,
        };
        if out.blocking_send(encoded).is_err() {
            return;
        }
    }
}

/// What the connections of one sink share.
struct Shared {
    input: Mutex<mpsc::Receiver<Encoded>>,
    /// Batches of a broken connection, to be written again before anything new.
    retry: StdMutex<VecDeque<Encoded>>,
    /// Per target: the last connection attempt succeeded.
    up: Vec<AtomicBool>,
    /// When some target was last up (for `when_unreachable = "drop"`).
    last_up_ms: AtomicU64,
    /// Connections open now: the sink is ready while there is one.
    connected: AtomicUsize,
}

impl Shared {
    /// The next batch: a retried one first. `None` when the input is closed and drained.
    async fn next(&self) -> Option<Encoded> {
        if let Some(b) = self.retry.lock().expect("retry lock").pop_front() {
            return Some(b);
        }
        self.input.lock().await.recv().await
    }

    fn any_up(&self) -> bool {
        self.up.iter().any(|u| u.load(Ordering::Relaxed))
    }
}

/// A batch written on a connection, waiting to be delivered.
struct Written {
    batch: Encoded,
    /// The connection's socket byte count once this batch was flushed.
    wire_end: u64,
    written_at: Instant,
    acked_at: Option<Instant>,
}

/// One connection to one target.
struct Worker {
    sink: Arc<str>,
    target: usize,
    connector: Connector,
    balance: Balance,
    write_timeout: Duration,
    shared: Arc<Shared>,
}

enum Outcome {
    /// Input closed and everything delivered.
    Finished,
    /// The connection broke; reconnect (`delivered`: something was delivered on it).
    Broken {
        why: String,
        delivered: bool,
    },
    /// A preferred (failover) target is up again: this connection is no longer needed.
    Idle,
    Aborted,
}

impl Worker {
    /// Failover: only while every earlier target is down.
    fn may_take(&self) -> bool {
        self.balance == Balance::RoundRobin
            || self.shared.up[..self.target]
                .iter()
                .all(|u| !u.load(Ordering::Relaxed))
    }

    async fn run(self, mut abort: watch::Receiver<bool>) {
        let target = &self.connector.target;
        let mut backoff = Duration::from_millis(200);
        let mut failures = 0u32;
        loop {
            if *abort.borrow() {
                return;
            }
            // A failover target connects only when it is needed.
            if !self.may_take() {
                tokio::select! {
                    _ = tokio::time::sleep(TICK * 5) => continue,
                    _ = abort.changed() => return,
                }
            }
            let stream = match self.connector.connect().await {
                Ok(s) => s,
                Err(e) => {
                    failures += 1;
                    self.shared.up[self.target].store(false, Ordering::Relaxed);
                    metrics::counter!(m::SINK_CONNECT_ERRORS_TOTAL, "sink" => self.sink.to_string())
                        .increment(1);
                    if failures == 1 || failures.is_multiple_of(10) {
                        warn!(sink = %self.sink, target = %target, error = %e, failures, "cannot connect; retrying");
                    }
                    let wait = jitter(backoff);
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                    tokio::select! {
                        _ = tokio::time::sleep(wait) => continue,
                        _ = abort.changed() => return,
                    }
                }
            };
            if failures > 0 {
                info!(sink = %self.sink, target = %target, "connected again");
            }
            self.shared.up[self.target].store(true, Ordering::Relaxed);
            self.shared.last_up_ms.store(now_ms(), Ordering::Relaxed);
            let component = format!("sink.{}", self.sink);
            self.shared.connected.fetch_add(1, Ordering::AcqRel);
            health::set_ready(&component, true);
            let outcome = self.serve(stream, &mut abort).await;
            if self.shared.connected.fetch_sub(1, Ordering::AcqRel) == 1 {
                health::set_ready(&component, false);
            }
            match outcome {
                Outcome::Finished | Outcome::Aborted => return,
                Outcome::Idle => {}
                Outcome::Broken { why, delivered } => {
                    // Backoff is reset by a delivery, not by a connect: a receiver that
                    // accepts and then closes (refused certificate, no session left) must
                    // not be hammered.
                    if delivered {
                        failures = 0;
                        backoff = Duration::from_millis(200);
                    } else {
                        failures += 1;
                    }
                    if failures <= 1 || failures.is_multiple_of(10) {
                        warn!(sink = %self.sink, target = %target, error = %why, failures, "connection lost; undelivered batches will be sent again");
                    }
                    if !delivered {
                        let wait = jitter(backoff);
                        backoff = (backoff * 2).min(MAX_BACKOFF);
                        tokio::select! {
                            _ = tokio::time::sleep(wait) => {}
                            _ = abort.changed() => return,
                        }
                    }
                }
            }
        }
    }

    /// Writes batches on one connection until it breaks, the input ends or abort.
    async fn serve(&self, stream: Stream, abort: &mut watch::Receiver<bool>) -> Outcome {
        let mut stream = stream;
        let mut pending: VecDeque<Written> = VecDeque::new();
        let mut pending_bytes = 0usize;
        let mut input_done = false;
        let mut delivered = false;
        let mut tick = tokio::time::interval(TICK);
        let outcome = loop {
            let can_take = !input_done && pending_bytes < WINDOW && self.may_take();
            tokio::select! {
                biased;
                _ = abort.changed() => break Outcome::Aborted,
                _ = tick.tick() => {
                    match self.settle(&stream, &mut pending, &mut pending_bytes) {
                        Ok(n) => delivered |= n > 0,
                        Err(why) => break Outcome::Broken { why, delivered },
                    }
                    // Up as long as this connection is: `when_unreachable = "drop"` counts
                    // from when the last connection went away.
                    self.shared.last_up_ms.store(now_ms(), Ordering::Relaxed);
                    if input_done && pending.is_empty() {
                        stream.close().await;
                        return Outcome::Finished;
                    }
                    if !self.may_take() && pending.is_empty() {
                        // A preferred target is back: leave it the work.
                        stream.close().await;
                        return Outcome::Idle;
                    }
                }
                next = self.shared.next(), if can_take => match next {
                    None => input_done = true,
                    Some(batch) => {
                        let result = tokio::time::timeout(self.write_timeout, stream.write_all(&batch.bytes)).await;
                        let len = batch.bytes.len();
                        pending_bytes += len;
                        pending.push_back(Written {
                            batch,
                            wire_end: stream.bytes_written(),
                            written_at: Instant::now(),
                            acked_at: None,
                        });
                        match result {
                            Ok(Ok(())) => {}
                            Ok(Err(e)) => break Outcome::Broken { why: format!("write: {e}"), delivered },
                            Err(_) => break Outcome::Broken { why: "write: timed out".into(), delivered },
                        }
                    }
                },
            }
        };
        // Whatever was not delivered goes back to the front, in order.
        if !pending.is_empty() {
            metrics::counter!(m::SINK_RETRIES_TOTAL, "sink" => self.sink.to_string())
                .increment(pending.len() as u64);
            let mut retry = self.shared.retry.lock().expect("retry lock");
            for w in pending.into_iter().rev() {
                retry.push_front(w.batch);
            }
        }
        if let Outcome::Broken { .. } = outcome {
            self.shared.up[self.target].store(false, Ordering::Relaxed);
        }
        outcome
    }

    /// Acknowledges the batches the receiver has held for [`SETTLE`]; an error if the
    /// connection closed or a batch has waited longer than the write timeout.
    fn settle(
        &self,
        stream: &Stream,
        pending: &mut VecDeque<Written>,
        pending_bytes: &mut usize,
    ) -> Result<usize, String> {
        if !stream.is_open() {
            return Err("closed by the receiver".into());
        }
        if pending.is_empty() {
            return Ok(0);
        }
        let unacked = stream
            .unacknowledged()
            .map_err(|e| format!("socket state: {e}"))? as u64;
        let acked_to = stream.bytes_written().saturating_sub(unacked);
        let now = Instant::now();
        let mut acked = 0;
        for w in pending.iter_mut() {
            if w.wire_end > acked_to {
                break;
            }
            w.acked_at.get_or_insert(now);
        }
        while let Some(w) = pending.front() {
            match w.acked_at {
                Some(at) if now.duration_since(at) >= SETTLE => {}
                Some(_) => break,
                None if now.duration_since(w.written_at) > self.write_timeout => {
                    return Err("the receiver stopped acknowledging".into());
                }
                None => break,
            }
            let w = pending.pop_front().expect("front");
            *pending_bytes -= w.batch.bytes.len();
            let sink = self.sink.to_string();
            metrics::counter!(m::SINK_EVENTS_SENT_TOTAL, "sink" => sink.clone())
                .increment(w.batch.events as u64);
            metrics::counter!(m::SINK_BYTES_SENT_TOTAL, "sink" => sink)
                .increment(w.batch.bytes.len() as u64);
            w.batch.finalizer.update(BatchStatus::Delivered);
            acked += 1;
        }
        Ok(acked)
    }
}

/// `when_unreachable = "drop"`: once no target has been up for `after`, batches are
/// acknowledged as dropped (and counted) instead of waiting.
async fn drop_while_unreachable(
    sink: Arc<str>,
    shared: Arc<Shared>,
    after: Duration,
    mut abort: watch::Receiver<bool>,
) {
    loop {
        let down_for = now_ms().saturating_sub(shared.last_up_ms.load(Ordering::Relaxed));
        if shared.any_up() || down_for < after.as_millis() as u64 {
            tokio::select! {
                _ = tokio::time::sleep(TICK * 5) => continue,
                _ = abort.changed() => return,
            }
        }
        let batch = tokio::select! {
            b = shared.next() => b,
            _ = tokio::time::sleep(TICK * 5) => continue,
            _ = abort.changed() => return,
        };
        let Some(batch) = batch else { return };
        warn!(sink = %sink, events = batch.events, "no target reachable: batch dropped (when_unreachable = \"drop\")");
        metrics::counter!(m::SINK_EVENTS_DROPPED_TOTAL, "sink" => sink.to_string(), "reason" => "unreachable")
            .increment(batch.events as u64);
        batch.finalizer.update(BatchStatus::Dropped);
    }
}

fn jitter(d: Duration) -> Duration {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    d.mul_f64(1.0 - 0.25 * f64::from(nanos % 1000) / 1000.0)
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// The longest start of `message` of at most `max` bytes that ends neither inside a UTF-8
/// character nor inside a backslash escape (CEF's `\|`, LEEF's `\=`, `\\`, JSON's
/// `\u00e9`): what is cut off is lost, what is kept still decodes.
fn truncate(message: &[u8], max: usize) -> &[u8] {
    if message.len() <= max {
        return message;
    }
    let mut cut = max;
    while cut > 0 && message[cut] & 0xC0 == 0x80 {
        cut -= 1; // a continuation byte: the character began before
    }
    let escaping = |at: usize| {
        // The backslash at `at` starts an escape if an even number of them precede it.
        message[..at]
            .iter()
            .rev()
            .take_while(|&&b| b == b'\\')
            .count()
            % 2
            == 0
    };
    // `\uXXXX` cut in its digits.
    for at in cut.saturating_sub(5)..cut.saturating_sub(1) {
        if message[at] == b'\\' && message[at + 1] == b'u' && escaping(at) {
            cut = at;
            break;
        }
    }
    // A backslash whose escaped character was cut off.
    if cut > 0 && message[cut - 1] == b'\\' && escaping(cut - 1) {
        cut -= 1;
    }
    &message[..cut]
}

#[cfg(test)]
mod tests {
    use super::truncate;

    #[test]
    fn truncation_keeps_characters_and_escapes_whole() {
        assert_eq!(truncate(b"abcdef", 10), b"abcdef");
        assert_eq!(truncate(b"abcdef", 3), b"abc");
        // é is two bytes, € three: never half of one.
        assert_eq!(truncate("abé".as_bytes(), 3), b"ab");
        assert_eq!(truncate("a€b".as_bytes(), 3), b"a");
        assert_eq!(truncate("a€b".as_bytes(), 4), "a€".as_bytes());
        // CEF `\|` and `\\`: the backslash goes with what it escapes.
        assert_eq!(truncate(br"ab\|cd", 3), b"ab");
        assert_eq!(truncate(br"ab\\cd", 3), b"ab");
        assert_eq!(truncate(br"ab\\cd", 4), br"ab\\");
        assert_eq!(truncate(br"a\\\|x", 4), br"a\\");
        // JSON `\u00e9`, cut anywhere in it.
        for max in 2..8 {
            assert_eq!(
                truncate(br#"ab\u00e9cd"#, max),
                &br#"ab\u00e9cd"#[..2],
                "{max}"
            );
        }
        assert_eq!(truncate(br#"ab\u00e9cd"#, 8), br#"ab\u00e9"#);
        // `\\u` is an escaped backslash and a plain u.
        assert_eq!(truncate(br"a\\u00e9", 5), br"a\\u0");
        for message in ["x€\\|é\\u00e9y".as_bytes(), "ü\\\\\\=€".as_bytes()] {
            for max in 0..message.len() {
                let kept = truncate(message, max);
                assert!(kept.len() <= max);
                assert!(std::str::from_utf8(kept).is_ok(), "{max}: {kept:?}");
            }
        }
    }
}
