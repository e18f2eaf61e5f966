//! Per-connection client state, and the registry that CLIENT LIST/KILL
//! and pub/sub use to reach other connections.

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
