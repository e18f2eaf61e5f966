//! Per-connection client state, and the registry that CLIENT LIST/KILL
//! and pub/sub use to reach other connections.
//!
//! Client memory and eviction (`maxmemory-clients`): [`account`] records a
//! connection's memory in its `OutState` (see `obuf`) after each batch of
//! commands, and when the total of all connections reaches the limit
//! [`evict_clients`] disconnects the biggest evictable clients (not
//! `CLIENT NO-EVICT on`, not replicas) until the total is below it, as
//! Redis 7.0 does (INFO `evicted_clients`).

use bytes::Bytes;
use parking_lot::Mutex;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::mpsc::UnboundedSender;

/// Something another part of the server pushes to a connection.
#[derive(Debug, Clone)]
pub enum Push {
    /// A pub/sub message: kind is `message`, `pmessage` or `smessage`.
    Message { kind: &'static str, pattern: Option<Bytes>, channel: Bytes, payload: Bytes },
    /// A MONITOR line (already formatted, without the leading `+`).
    Monitor(Bytes),
    /// CLIENT KILL or shutdown: close the connection.
    Kill,
    /// The reply of a blocked command, served by another connection's
    /// write (already encoded for this client's protocol).
    Reply(Bytes),
    /// CLIENT UNBLOCK: stop waiting; `error` picks the UNBLOCKED error
    /// over the timeout reply.
    Unblock { error: bool },
    /// CLIENT TRACKING invalidation (None: everything, after a flush);
    /// `pubsub`: as a `message` on `__redis__:invalidate` (RESP2 redirect).
    Invalidate { keys: Option<Vec<Bytes>>, pubsub: bool },
    /// CLIENT TRACKING: the redirect client (this id) is gone.
    RedirBroken(u64),
}

/// What other connections may see and change about a client.
pub struct ClientHandle {
    pub id: u64,
    pub addr: String,
    pub laddr: String,
    pub created: Instant,
    pub name: Mutex<Option<Bytes>>,
    pub db: AtomicUsize,
    pub last_cmd: Mutex<&'static str>,
    /// Milliseconds since server start of the last command.
    pub last_interaction_ms: AtomicU64,
    pub resp: AtomicU8,
    pub sub: AtomicUsize,
    pub psub: AtomicUsize,
    pub ssub: AtomicUsize,
    /// Commands queued in MULTI, or -1 outside MULTI.
    pub multi: AtomicI64,
    pub monitor: AtomicBool,
    pub user: Mutex<String>,
    pub killed: AtomicBool,
    /// Blocked in BLPOP & co (CLIENT LIST flag `b`, exempt from `timeout`).
    pub blocked: AtomicBool,
    /// The push channel, with the output accounting of `client-output-buffer-limit`.
    pub tx: crate::obuf::PushTx,
    /// Socket file descriptor (CLIENT LIST fd=).
    pub fd: i32,
    /// CLIENT NO-EVICT ON.
    pub no_evict: AtomicBool,
    /// CLIENT TRACKING mode.
    pub tracking: Mutex<crate::cmd::client::tracking::Mode>,
}

impl ClientHandle {
    /// A new client in its initial state (db 0, RESP2, user `default`, not in MULTI): the one constructor for
    /// network connections and for the internal clients (AOF loader, Lua), so a new field is set in one place.
    pub fn new(id: u64, addr: String, laddr: String, fd: i32, tx: UnboundedSender<Push>, now_ms: u64) -> ClientHandle {
        ClientHandle {
            id,
            addr,
            laddr,
            created: Instant::now(),
            name: Mutex::new(None),
            db: AtomicUsize::new(0),
            last_cmd: Mutex::new("NULL"),
            last_interaction_ms: AtomicU64::new(now_ms),
            resp: AtomicU8::new(2),
            sub: AtomicUsize::new(0),
            psub: AtomicUsize::new(0),
            ssub: AtomicUsize::new(0),
            multi: AtomicI64::new(-1),
            monitor: AtomicBool::new(false),
            user: Mutex::new("default".into()),
            killed: AtomicBool::new(false),
            blocked: AtomicBool::new(false),
            tx: {
                let t = crate::obuf::PushTx::new(tx);
                t.out.id.store(id, Ordering::Relaxed);
                t
            },
            fd,
            no_evict: AtomicBool::new(false),
            tracking: Default::default(),
        }
    }

    pub fn kill(&self) {
        self.killed.store(true, Ordering::Relaxed);
        let _ = self.tx.send(Push::Kill);
    }
}

/// What a blocking command asks for when it finds nothing to serve.
#[derive(Debug, Clone)]
pub struct BlockRequest {
    /// Keys to wait on.
    pub keys: Vec<Bytes>,
    /// Absolute deadline in unix ms; None waits forever.
    pub deadline_ms: Option<i64>,
    /// Reply when it cannot block (inside EXEC): null array (true) or null
    /// bulk (false). A real timeout always replies a null array.
    pub null_array: bool,
    /// The command to re-run when woken, if not the one as sent (XREAD
    /// keeps the IDs `$` resolved to when it blocked).
    pub rerun: Option<Vec<Bytes>>,
}

/// MULTI state.
#[derive(Default)]
pub struct Multi {
    pub queue: Vec<Vec<Bytes>>,
    /// An error was seen while queueing: EXEC must abort.
    pub dirty: bool,
}

/// Connection-local state, owned by the connection task.
pub struct Client {
    pub id: u64,
    pub db: usize,
    pub resp3: bool,
    pub authenticated: bool,
    pub user: String,
    pub multi: Option<Multi>,
    /// WATCHed keys: (db, key).
    pub watched: Vec<(usize, Vec<u8>)>,
    /// Set by writers when a watched key changes.
    pub watch_dirty: Arc<AtomicBool>,
    pub channels: HashSet<Bytes>,
    pub patterns: HashSet<Bytes>,
    pub shard_channels: HashSet<Bytes>,
    pub handle: Arc<ClientHandle>,
    /// Close the connection once the pending replies are written.
    pub close_after_reply: bool,
    /// Replies are suppressed (CLIENT REPLY OFF; the OFF command itself
    /// writes no reply).
    pub reply_off: bool,
    /// Suppress the reply of the next command (armed by CLIENT REPLY SKIP,
    /// which itself writes no reply).
    pub reply_skip: bool,
    /// The reply of the command running now is suppressed (SKIP armed by
    /// the previous command); CLIENT REPLY ON clears it, as in Redis.
    pub reply_skip_now: bool,
    /// CLIENT TRACKING is on (mirror of the handle's mode, for the hot path).
    pub tracking: bool,
    /// CLIENT CACHING yes/no given for the next command (or transaction).
    pub tracking_caching: bool,
    /// Shutdown was requested by this client.
    pub shutdown: bool,
    /// Set by a blocking command that found nothing (see `blocking`).
    pub block: Option<BlockRequest>,
    /// The registered waiter while the client is blocked.
    pub waiter: Option<Arc<crate::blocking::Waiter>>,
    /// Keys written by this client's commands that blocked clients may wait
    /// on; served at the end of the command (or of EXEC).
    pub ready_keys: Vec<(usize, Bytes)>,
    /// MULTI queue memory already summed: (queued commands, bytes).
    multi_counted: (usize, usize),
}

impl Client {
    pub fn new(handle: Arc<ClientHandle>, authenticated: bool) -> Client {
        Client {
            id: handle.id,
            db: 0,
            resp3: false,
            authenticated,
            user: "default".into(),
            multi: None,
            watched: Vec::new(),
            watch_dirty: Arc::new(AtomicBool::new(false)),
            channels: HashSet::new(),
            patterns: HashSet::new(),
            shard_channels: HashSet::new(),
            handle,
            close_after_reply: false,
            reply_off: false,
            reply_skip: false,
            reply_skip_now: false,
            tracking: false,
            tracking_caching: false,
            shutdown: false,
            block: None,
            waiter: None,
            ready_keys: Vec::new(),
            multi_counted: (0, 0),
        }
    }

    /// Subscribed to anything (RESP2 restricts commands then).
    pub fn in_pubsub(&self) -> bool {
        !self.channels.is_empty() || !self.patterns.is_empty() || !self.shard_channels.is_empty()
    }

    pub fn sub_count(&self) -> usize {
        self.channels.len() + self.patterns.len()
    }
}

/// All connected clients, by id.
#[derive(Default)]
pub struct Clients {
    pub map: Mutex<HashMap<u64, Arc<ClientHandle>>>,
    pub next_id: AtomicU64,
}

impl Clients {
    pub fn next_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed) + 1
    }

    pub fn register(&self, h: Arc<ClientHandle>) {
        self.map.lock().insert(h.id, h);
    }

    pub fn unregister(&self, id: u64) {
        self.map.lock().remove(&id);
    }

    pub fn len(&self) -> usize {
        self.map.lock().len()
    }

    pub fn snapshot(&self) -> Vec<Arc<ClientHandle>> {
        let mut v: Vec<_> = self.map.lock().values().cloned().collect();
        v.sort_by_key(|h| h.id);
        v
    }
}

/// `maxmemory-clients`: 0 = off, > 0 bytes, < 0 = that percentage of `maxmemory`.
pub static MAXMEMORY_CLIENTS: AtomicI64 = AtomicI64::new(0);

/// Parse a (validated) `maxmemory-clients` value: `N%` or bytes.
pub fn set_maxmemory_clients(v: &str) {
    let n = match v.strip_suffix('%') {
        Some(p) => -p.parse::<i64>().unwrap_or(0),
        None => v.parse::<i64>().unwrap_or(0),
    };
    MAXMEMORY_CLIENTS.store(n, Ordering::Relaxed);
    eviction_rules_changed();
}

/// The client memory limit in bytes (0: none). Like Redis, a percentage
/// needs `maxmemory`, and a limit is never below 128 KB.
pub fn eviction_limit(srv: &crate::server::Server) -> u64 {
    let v = MAXMEMORY_CLIENTS.load(Ordering::Relaxed);
    let bytes = if v < 0 {
        let maxmemory = srv.tun.maxmemory.load(Ordering::Relaxed);
        if maxmemory == 0 {
            return 0;
        }
        (maxmemory as f64 * (-v) as f64 / 100.0) as u64
    } else if v > 0 {
        v as u64
    } else {
        return 0;
    };
    bytes.max(128 * 1024)
}

/// Redis's per-entry overheads (client.c getClientMemoryUsage): a watched
/// key, a queued command, a pattern, a channel, a tracking prefix.
const WATCHED_KEY_MEM: usize = 56;
const MULTI_CMD_MEM: usize = 24;
const PATTERN_MEM: usize = 24;
const CHANNEL_MEM: usize = 32;
const PREFIX_MEM: usize = 32;

/// Record this connection's memory (unexecuted query bytes, the arguments
/// of a command still arriving, MULTI queue, watched keys, subscriptions,
/// tracking prefixes) and evict clients when the total is over
/// `maxmemory-clients`. Returns true when this client was evicted.
/// Cheap: no lock (the tracking lock only while CLIENT TRACKING is on).
pub fn account(
    srv: &crate::server::Server,
    client: &mut Client,
    rbuf: &bytes::BytesMut,
    pending_bulk: Option<usize>,
    partial: &[Bytes],
) -> bool {
    let qbuf = rbuf.len();
    client.handle.tx.out.set_qbuf_cap(rbuf.capacity());
    // Like Redis, a big argument being received has its whole size reserved.
    let qbuf_mem = qbuf.max(pending_bulk.map_or(0, |n| n + 2));
    let argv = if partial.is_empty() { 0 } else { partial.iter().map(|a| a.len() + 8).sum() };
    let multi = match &client.multi {
        None => {
            client.multi_counted = (0, 0);
            0
        }
        Some(m) => {
            let (mut n, mut bytes) = client.multi_counted;
            if n > m.queue.len() {
                (n, bytes) = (0, 0);
            }
            for c in &m.queue[n..] {
                bytes += c.iter().map(|a| a.len() + 8).sum::<usize>() + MULTI_CMD_MEM;
            }
            client.multi_counted = (m.queue.len(), bytes);
            bytes
        }
    } + client.watched.len() * WATCHED_KEY_MEM;
    let mut other =
        (client.channels.len() + client.shard_channels.len()) * CHANNEL_MEM + client.patterns.len() * PATTERN_MEM;
    if client.tracking {
        other += client.handle.tracking.lock().prefixes.len() * PREFIX_MEM;
    }
    client.handle.tx.out.set_mem(qbuf, qbuf_mem, argv, multi, other);
    if MAXMEMORY_CLIENTS.load(Ordering::Relaxed) == 0 {
        return false;
    }
    let limit = eviction_limit(srv);
    if limit == 0 || (crate::obuf::clients_mem().max(0) as u64) < limit {
        return false;
    }
    evict_clients(srv);
    client.handle.killed.load(Ordering::Relaxed)
}

/// Before a command runs (only while `maxmemory-clients` is set): a
/// command with big arguments (over 32 KB, Redis's big-argument size)
/// counts them now, so a client over the limit is evicted before running
/// it, and clients are evicted when the total is over the limit (before
/// the command's key eviction), as Redis does. Returns true when this
/// client was evicted.
#[inline]
pub fn before_command(
    srv: &crate::server::Server,
    client: &mut Client,
    rbuf: &bytes::BytesMut,
    args: &[Bytes],
) -> bool {
    if MAXMEMORY_CLIENTS.load(Ordering::Relaxed) == 0 {
        return false;
    }
    let big = args.iter().map(|a| a.len()).sum::<usize>() > 32 * 1024;
    if big {
        return account(srv, client, rbuf, None, args);
    }
    // Other clients' memory may have grown meanwhile (pushed output): like
    // Redis, evict clients before the command (and before key eviction).
    let limit = eviction_limit(srv);
    if limit > 0 && crate::obuf::clients_mem().max(0) as u64 >= limit {
        evict_clients(srv);
        return client.handle.killed.load(Ordering::Relaxed);
    }
    false
}

/// Disconnect the biggest evictable clients until the memory of all
/// clients (normal and pub/sub) is below `maxmemory-clients`.
pub fn evict_clients(srv: &crate::server::Server) {
    let limit = eviction_limit(srv);
    if limit == 0 {
        return;
    }
    // Over the limit with nothing evictable (NO-EVICT clients): don't scan
    // every connection again until something changed.
    let seen = crate::obuf::clients_mem();
    if FUTILE_AT.load(Ordering::Relaxed) == seen {
        return;
    }
    let before = srv.stats.evicted_clients.load(Ordering::Relaxed);
    evict_over_limit(srv, limit);
    let evicted = srv.stats.evicted_clients.load(Ordering::Relaxed) != before;
    FUTILE_AT.store(if evicted { i64::MIN } else { seen }, Ordering::Relaxed);
}

/// The client memory total at which the last eviction found nothing to evict.
static FUTILE_AT: AtomicI64 = AtomicI64::new(i64::MIN);

/// Something that decides evictability changed (a limit, CLIENT NO-EVICT).
pub fn eviction_rules_changed() {
    FUTILE_AT.store(i64::MIN, Ordering::Relaxed);
}

fn evict_over_limit(srv: &crate::server::Server, limit: u64) {
    let all = srv.clients.snapshot();
    let mut total: u64 = 0;
    let mut candidates: Vec<(u64, &Arc<ClientHandle>)> = Vec::new();
    for h in &all {
        if h.tx.out.class() == crate::obuf::REPLICA || h.killed.load(Ordering::Relaxed) {
            continue;
        }
        let mem = h.tx.out.tot_mem() as u64;
        total += mem;
        if !h.no_evict.load(Ordering::Relaxed) {
            candidates.push((mem, h));
        }
    }
    if total < limit {
        return;
    }
    // Biggest first; among equals, the oldest connection.
    candidates.sort_by_key(|c| std::cmp::Reverse(c.0));
    for (mem, h) in candidates {
        if total < limit {
            break;
        }
        let name = h.name.lock().clone().unwrap_or_default();
        eprintln!(
            "ferrite: Evicting client: id={} addr={} name={} tot-mem={mem} (maxmemory-clients {limit})",
            h.id,
            h.addr,
            String::from_utf8_lossy(&name)
        );
        srv.clients.unregister(h.id);
        h.killed.store(true, Ordering::Relaxed);
        h.tx.close_now();
        srv.stats.evicted_clients.fetch_add(1, Ordering::Relaxed);
        total = total.saturating_sub(mem);
    }
}
