//! Client output buffer limits (`client-output-buffer-limit`), as Redis 7.0
//! enforces them for pushed output: pub/sub messages, MONITOR lines,
//! invalidations and a replica's replication stream reach a connection
//! through its push channel, and a consumer that does not read lets that
//! channel grow. Every push is counted in the connection's [`OutState`]
//! when sent ([`PushTx::send`]) and uncounted when the connection takes it
//! out to write it; a connection over its class's hard limit, or over the
//! soft limit for longer than the soft seconds, is closed at once (its
//! pending write is abandoned and the queue dropped), with Redis's log line.
//!
//! Classes as in Redis: `replica` for a replica connection, `pubsub` for a
//! connection subscribed to anything, `normal` otherwise. A normal client's
//! own replies are written directly (not queued) and checked by the
//! connection after each command against the `normal` class.
//!
//! [`OutState`] also holds the rest of a connection's memory as CLIENT LIST
//! `tot-mem` reports it (query buffer, argv, MULTI queue and watched keys,
//! subscriptions, tracking prefixes; set by the connection task through
//! `client::account`), and every change is added to a process-wide striped
//! total ([`clients_mem`]) that `maxmemory-clients` compares against
//! (`client::evict_clients`).
//!
//! What it does not know: the memory of the connection's own reply buffer
//! beyond what is being written (a connection stops reading while a write
//! to a client that does not read waits, so its replies never pile up as
//! in Redis), and the `master` class (not configurable, as in Redis).

use crate::client::Push;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::Arc;
use tokio::sync::mpsc::error::SendError;
use tokio::sync::mpsc::UnboundedSender;

pub const NORMAL: u8 = 0;
pub const REPLICA: u8 = 1;
pub const PUBSUB: u8 = 2;
const CLASS_NAMES: [&str; 3] = ["normal", "slave", "pubsub"];

/// (hard, soft, soft seconds) per class, Redis's defaults.
static LIMITS: [[AtomicU64; 3]; 3] = [
    [AtomicU64::new(0), AtomicU64::new(0), AtomicU64::new(0)],
    [AtomicU64::new(256 << 20), AtomicU64::new(64 << 20), AtomicU64::new(60)],
    [AtomicU64::new(32 << 20), AtomicU64::new(8 << 20), AtomicU64::new(60)],
];

/// The default value, as CONFIG GET shows it.
pub const DEFAULT: &str = "normal 0 0 0 slave 268435456 67108864 60 pubsub 33554432 8388608 60";

fn class_of(name: &str) -> Option<usize> {
    match name.to_ascii_lowercase().as_str() {
        "normal" => Some(0),
        "slave" | "replica" => Some(1),
        "pubsub" => Some(2),
        _ => None,
    }
}

/// Validate a CONFIG SET / config file value against the `current` one and
/// return the new full value in Redis's form (every class, bytes). Only the
/// classes named change. Errors are Redis 7.0's texts.
pub fn merge(current: &str, value: &str) -> Result<String, String> {
    let mut limits = parse_full(current);
    let args: Vec<&str> = value.split_ascii_whitespace().collect();
    if !args.len().is_multiple_of(4) {
        return Err("Wrong number of arguments in buffer limit configuration.".into());
    }
    for c in args.chunks(4) {
        let Some(class) = class_of(c[0]) else {
            return Err("Invalid client class specified in buffer limit configuration.".into());
        };
        let bad = || "Error in hard, soft or soft_seconds setting in buffer limit configuration.".to_string();
        let hard = crate::cmd::config::parse_mem(c[1].as_bytes()).filter(|n| *n >= 0).ok_or_else(bad)?;
        let soft = crate::cmd::config::parse_mem(c[2].as_bytes()).filter(|n| *n >= 0).ok_or_else(bad)?;
        let secs: i64 = c[3].parse().ok().filter(|n: &i64| *n >= 0).ok_or_else(bad)?;
        limits[class] = [hard as u64, soft as u64, secs as u64];
    }
    Ok(format_full(&limits))
}

fn parse_full(v: &str) -> [[u64; 3]; 3] {
    let mut out = [[0, 0, 0], [256 << 20, 64 << 20, 60], [32 << 20, 8 << 20, 60]];
    let args: Vec<&str> = v.split_ascii_whitespace().collect();
    for c in args.chunks(4) {
        if let (Some(class), [_, h, s, t]) = (class_of(c[0]), c) {
            out[class] = [h.parse().unwrap_or(0), s.parse().unwrap_or(0), t.parse().unwrap_or(0)];
        }
    }
    out
}

fn format_full(l: &[[u64; 3]; 3]) -> String {
    (0..3).map(|i| format!("{} {} {} {}", CLASS_NAMES[i], l[i][0], l[i][1], l[i][2])).collect::<Vec<_>>().join(" ")
}

/// Make a (merged, valid) value the one in force.
pub fn apply(full: &str) {
    let l = parse_full(full);
    for (c, v) in l.iter().enumerate() {
        for (i, x) in v.iter().enumerate() {
            LIMITS[c][i].store(*x, Ordering::Relaxed);
        }
    }
}

/// The `normal` class has a limit (Redis's default has none): connections check their replies then.
#[inline]
pub fn normal_limited() -> bool {
    LIMITS[0][0].load(Ordering::Relaxed) > 0 || LIMITS[0][1].load(Ordering::Relaxed) > 0
}

/// The `normal` class hard limit in bytes (0: none).
pub fn normal_hard_limit() -> u64 {
    LIMITS[0][0].load(Ordering::Relaxed)
}

fn limits(class: u8) -> (u64, u64, u64) {
    let l = &LIMITS[(class as usize).min(2)];
    (l[0].load(Ordering::Relaxed), l[1].load(Ordering::Relaxed), l[2].load(Ordering::Relaxed))
}

/// Bytes a push takes once encoded (close enough for limits: the RESP
/// framing of a message is a few dozen bytes).
pub fn push_size(p: &Push) -> usize {
    match p {
        Push::Message { kind, pattern, channel, payload } => {
            40 + kind.len() + pattern.as_ref().map_or(0, |x| x.len() + 16) + channel.len() + payload.len()
        }
        Push::Monitor(b) | Push::Reply(b) => b.len() + 3,
        Push::Invalidate { keys, .. } => 48 + keys.as_ref().map_or(0, |k| k.iter().map(|x| x.len() + 16).sum()),
        Push::Kill | Push::Unblock { .. } | Push::RedirBroken(_) => 0,
    }
}

/// Memory of all connections (their `tot-mem`), striped by thread.
/// Process-wide: one server per process is what `maxmemory-clients` sees.
static CLIENTS_MEM: std::sync::LazyLock<crate::stats::Counter> = std::sync::LazyLock::new(Default::default);

#[inline]
fn global_add(delta: i64) {
    if delta != 0 {
        CLIENTS_MEM.fetch_add(delta as u64, Ordering::Relaxed);
    }
}

/// The sum of every connection's `tot-mem` (approximate under races; the
/// eviction itself recomputes it from the connections).
pub fn clients_mem() -> i64 {
    CLIENTS_MEM.load(Ordering::Relaxed) as i64
}

/// What every connection costs at least: its client structure and reply
/// buffer (Redis's `sizeof(client)` + 16 KB `buf`) and its 16 KB read buffer.
pub const CLIENT_BASE_MEM: usize = 1024 + 2 * 16384;

/// Output accounting of one connection, shared by everything that pushes to
/// it and the connection itself.
#[derive(Default)]
pub struct OutState {
    /// Query buffer bytes not yet executed (CLIENT LIST qbuf).
    qbuf: AtomicUsize,
    /// Query buffer memory: at least the whole bulk argument being received.
    qbuf_mem: AtomicUsize,
    /// Query buffer allocation (CLIENT LIST qbuf + qbuf-free).
    qbuf_cap: AtomicUsize,
    /// Arguments of the command being received (argv-mem).
    argv: AtomicUsize,
    /// MULTI queue and watched keys (multi-mem).
    multi: AtomicUsize,
    /// Subscriptions and tracking prefixes.
    other: AtomicUsize,
    /// The base cost is in the total (set by the first `set_mem`).
    counted: AtomicBool,
    /// Bytes pushed and not yet taken out by the connection.
    queued: AtomicUsize,
    /// Bytes of the write in progress (the connection's own reply buffer).
    writing: AtomicUsize,
    /// Unix ms since when the soft limit is exceeded (0: it is not).
    soft_since: AtomicI64,
    class: AtomicU8,
    /// Over a limit: the connection must close now.
    over: AtomicBool,
    /// Wakes a connection stuck in a write when it goes over.
    pub wake: tokio::sync::Notify,
    /// Client id, for the log line.
    pub id: AtomicU64,
}

impl OutState {
    /// CLIENT LIST `omem`.
    pub fn omem(&self) -> usize {
        self.queued.load(Ordering::Relaxed) + self.writing.load(Ordering::Relaxed)
    }

    /// CLIENT LIST `qbuf`, `argv-mem` and `multi-mem` as last recorded (and the query buffer's memory).
    pub fn qbuf(&self) -> usize {
        self.qbuf.load(Ordering::Relaxed)
    }
    pub fn qbuf_mem(&self) -> usize {
        self.qbuf_mem.load(Ordering::Relaxed)
    }
    pub fn qbuf_cap(&self) -> usize {
        self.qbuf_cap.load(Ordering::Relaxed)
    }
    pub fn set_qbuf_cap(&self, cap: usize) {
        self.qbuf_cap.store(cap, Ordering::Relaxed);
    }
    pub fn argv_mem(&self) -> usize {
        self.argv.load(Ordering::Relaxed)
    }
    pub fn multi_mem(&self) -> usize {
        self.multi.load(Ordering::Relaxed)
    }

    /// CLIENT LIST `tot-mem`.
    pub fn tot_mem(&self) -> usize {
        CLIENT_BASE_MEM
            + self.qbuf_mem.load(Ordering::Relaxed)
            + self.argv.load(Ordering::Relaxed)
            + self.multi.load(Ordering::Relaxed)
            + self.other.load(Ordering::Relaxed)
            + self.omem()
    }

    /// Record the connection's own memory (see the module doc); keeps the
    /// process-wide total in step. Relaxed stores; the total is touched
    /// only when something changed.
    #[inline]
    pub fn set_mem(&self, qbuf: usize, qbuf_mem: usize, argv: usize, multi: usize, other: usize) {
        self.qbuf.store(qbuf, Ordering::Relaxed);
        let mut delta = 0i64;
        for (f, v) in [(&self.qbuf_mem, qbuf_mem), (&self.argv, argv), (&self.multi, multi), (&self.other, other)] {
            let old = f.load(Ordering::Relaxed);
            if old != v {
                f.store(v, Ordering::Relaxed);
                delta += v as i64 - old as i64;
            }
        }
        if !self.counted.load(Ordering::Relaxed) {
            self.counted.store(true, Ordering::Relaxed);
            delta += CLIENT_BASE_MEM as i64;
        }
        global_add(delta);
    }

    /// The connection is gone: its memory leaves the total.
    pub fn release(&self) {
        let mut delta = 0i64;
        self.qbuf.store(0, Ordering::Relaxed);
        self.qbuf_cap.store(0, Ordering::Relaxed);
        for f in [&self.qbuf_mem, &self.argv, &self.multi, &self.other, &self.queued, &self.writing] {
            delta -= f.swap(0, Ordering::Relaxed) as i64;
        }
        if self.counted.swap(false, Ordering::Relaxed) {
            delta -= CLIENT_BASE_MEM as i64;
        }
        global_add(delta);
    }

    /// A write of the connection's own replies is in progress (it reads no input meanwhile).
    pub fn is_writing(&self) -> bool {
        self.writing.load(Ordering::Relaxed) > 0
    }

    pub fn class(&self) -> u8 {
        self.class.load(Ordering::Relaxed)
    }

    pub fn set_class(&self, class: u8) {
        self.class.store(class, Ordering::Relaxed);
    }

    /// Subscribed to something or not (replicas stay replicas).
    pub fn set_pubsub(&self, subscribed: bool) {
        let c = self.class.load(Ordering::Relaxed);
        if c != REPLICA {
            self.set_class(if subscribed { PUBSUB } else { NORMAL });
        }
    }

    pub fn is_over(&self) -> bool {
        self.over.load(Ordering::Relaxed)
    }

    /// The connection took `n` pushed bytes out of its queue.
    pub fn taken(&self, n: usize) {
        let n = n.min(self.queued.load(Ordering::Relaxed));
        if n > 0 {
            self.queued.fetch_sub(n, Ordering::Relaxed);
            global_add(-(n as i64));
        }
    }

    /// The connection starts (`n` > 0) or ended (0) writing `n` bytes of its own.
    pub fn set_writing(&self, n: usize) {
        let old = self.writing.swap(n, Ordering::Relaxed);
        global_add(n as i64 - old as i64);
    }

    /// Check the limits of the client's class; true when it must be closed
    /// (and it is marked so, the connection woken, the event logged once).
    pub fn check(&self, now_ms: i64) -> bool {
        if self.is_over() {
            return true;
        }
        let (hard, soft, secs) = limits(self.class.load(Ordering::Relaxed));
        let used = self.omem() as u64;
        let mut over = hard > 0 && used >= hard;
        if soft > 0 && used >= soft {
            let since = self.soft_since.load(Ordering::Relaxed);
            if since == 0 {
                self.soft_since.store(now_ms, Ordering::Relaxed);
            } else if now_ms - since >= (secs as i64).saturating_mul(1000) {
                over = true;
            }
        } else {
            self.soft_since.store(0, Ordering::Relaxed);
        }
        if over && !self.over.swap(true, Ordering::Relaxed) {
            let class = CLASS_NAMES[(self.class.load(Ordering::Relaxed) as usize).min(2)];
            eprintln!(
                "ferrite: Client id={} ({class}) scheduled to be closed ASAP for overcoming of output buffer limits.",
                self.id.load(Ordering::Relaxed)
            );
            self.wake.notify_one();
        }
        over
    }
}

/// A connection's push channel with its output accounting. Cloned into the
/// pub/sub registry, the replica list and wherever a connection is reached.
#[derive(Clone)]
pub struct PushTx {
    tx: UnboundedSender<Push>,
    pub out: Arc<OutState>,
}

impl std::fmt::Debug for PushTx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PushTx(omem={})", self.out.omem())
    }
}

impl PushTx {
    pub fn new(tx: UnboundedSender<Push>) -> PushTx {
        PushTx { tx, out: Arc::new(OutState::default()) }
    }

    /// Queue `p`, counting its bytes; a connection that goes over its limit
    /// is marked to close (the push is still queued; it is dropped with the
    /// connection).
    pub fn send(&self, p: Push) -> Result<(), SendError<Push>> {
        let n = push_size(&p);
        if n > 0 {
            self.out.queued.fetch_add(n, Ordering::Relaxed);
            global_add(n as i64);
        }
        let r = self.tx.send(p);
        if n > 0 {
            if r.is_ok() {
                self.out.check(crate::server::now_ms());
            } else {
                // The connection is gone: nothing will take it out.
                self.out.taken(n);
            }
        }
        r
    }

    pub fn is_closed(&self) -> bool {
        self.tx.is_closed()
    }

    /// Close the connection now, even while a write to it waits (a replica that timed out).
    pub fn close_now(&self) {
        self.out.over.store(true, Ordering::Relaxed);
        self.out.wake.notify_one();
        let _ = self.tx.send(Push::Kill);
    }

    pub fn same_channel(&self, other: &PushTx) -> bool {
        self.tx.same_channel(&other.tx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_keeps_other_classes_and_normalizes() {
        let v = merge(DEFAULT, "normal 1mb 2mb 60 replica 3mb 4mb 70 pubsub 5mb 6mb 80").unwrap();
        assert_eq!(v, "normal 1048576 2097152 60 slave 3145728 4194304 70 pubsub 5242880 6291456 80");
        let v = merge(&v, "pubsub 100000 0 0").unwrap();
        assert_eq!(v, "normal 1048576 2097152 60 slave 3145728 4194304 70 pubsub 100000 0 0");
        assert!(merge(DEFAULT, "wrong number").unwrap_err().contains("Wrong number"));
        assert!(merge(DEFAULT, "invalid_class 10mb 10mb 60").unwrap_err().contains("Invalid client class"));
        assert!(merge(DEFAULT, "master 10mb 10mb 60").unwrap_err().contains("Invalid client class"));
        assert!(merge(DEFAULT, "normal 10mbs 10mb 60").unwrap_err().contains("hard"));
        assert!(merge(DEFAULT, "pubsub 10mb 10mb 60s").unwrap_err().contains("soft_seconds"));
    }
}
