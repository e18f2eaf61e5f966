//! Connections to backend nodes (upstream Redis Cluster nodes and Ferrite).
//!
//! - [`Pool`]: one multiplexed, pipelined connection per (node, protocol): requests of every client are written in
//!   batches and replies are matched to them in FIFO order, delivered as the exact bytes the node sent. A dead
//!   connection is replaced on the next request, with an exponential backoff between failed attempts.
//! - [`DedConn`]: a plain connection owned by one client for state that lives on a connection (transactions with
//!   WATCH, blocking commands, pub/sub).

use crate::metrics::Metrics;
use crate::resp::{encode_cmd, FrameScanner};
use bytes::{Buf, Bytes, BytesMut};
use futures_util::task::AtomicWaker;
use parking_lot::Mutex;
use std::collections::{HashMap, VecDeque};
use std::io::IoSlice;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{oneshot, watch, Notify};

/// Which side of the migration a backend belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Side {
    Upstream,
    Ferrite,
}

impl Side {
    pub fn name(self) -> &'static str {
        match self {
            Side::Upstream => "upstream",
            Side::Ferrite => "ferrite",
        }
    }
    pub fn other(self) -> Side {
        match self {
            Side::Upstream => Side::Ferrite,
            Side::Ferrite => Side::Upstream,
        }
    }
}

/// Why a backend request failed (never a reply from the backend: those are delivered as bytes).
#[derive(Debug, Clone)]
pub enum BackendError {
    /// The request was never written: retrying cannot apply it twice.
    NotSent(String),
    /// The request may have been written; the connection died before the reply.
    Lost(String),
}

impl BackendError {
    pub fn text(&self) -> &str {
        match self {
            BackendError::NotSent(s) | BackendError::Lost(s) => s,
        }
    }
}

/// Credentials the proxy uses on one side.
#[derive(Debug, Clone, Default)]
pub struct Creds {
    pub user: Option<String>,
    pub password: Option<String>,
}

/// Work run by a connection's reader when a request got a non-error reply, in reply order (mirroring, key
/// tracking). Running it there keeps the per-connection order of the owner's acknowledgements.
pub type PostAction = Box<dyn FnOnce(&Bytes) + Send>;

pub type ReplyTx = oneshot::Sender<Result<Bytes, BackendError>>;

/// One request for a multiplexed connection.
pub struct Job {
    /// Encoded command(s).
    pub data: Bytes,
    /// Reply frames to expect; only the last one is delivered (used for `ASKING` + command).
    pub replies: u8,
    pub tx: ReplyTx,
    pub post: Option<PostAction>,
}

/// Where the reply of a request goes.
pub enum Sink {
    /// A one-shot channel (the general routing path).
    Once(ReplyTx),
    /// A client's inbox, tagged with the client's sequence number for the first request and the number of requests
    /// (the fast path: no channel, no task per request; the client is woken once per read of the backend's
    /// replies). A group of `n` consecutive requests of one client gets its `n` reply frames as one delivery.
    Client(Arc<Inbox>, u64, u32),
    /// A function run by the connection's reader, in reply order (mirror writes).
    Call(Box<dyn FnOnce(Result<Bytes, BackendError>) + Send>),
}

impl Sink {
    /// Deliver a failure now.
    pub fn fail(self, e: BackendError) {
        let mut woken = Vec::new();
        self.deliver(Err(e), &mut woken);
        for w in woken {
            w.waker.wake();
        }
    }

    fn deliver(self, r: Result<Bytes, BackendError>, woken: &mut Vec<Arc<Inbox>>) {
        self.deliver_with(r, false, woken)
    }

    /// Deliver `r`; `err`: some frame of a group delivered as one is an error reply.
    fn deliver_with(self, r: Result<Bytes, BackendError>, err: bool, woken: &mut Vec<Arc<Inbox>>) {
        match self {
            Sink::Once(tx) => {
                let _ = tx.send(r);
            }
            Sink::Call(f) => f(r),
            Sink::Client(inbox, seq, n) => {
                let err = err
                    || match &r {
                        Ok(b) => b.first() == Some(&b'-'),
                        Err(_) => true,
                    };
                inbox.replies.lock().push(Delivery { seq, n, err, r });
                if !woken.last().is_some_and(|w| Arc::ptr_eq(w, &inbox)) {
                    woken.push(inbox);
                }
            }
        }
    }
}

/// The replies of `n` consecutive requests of one client (`seq` is the first one's sequence number): `n` frames
/// back to back, or the failure of all of them.
pub struct Delivery {
    pub seq: u64,
    pub n: u32,
    /// Some frame of the group is an error reply (or the connection failed): the client looks at each frame.
    pub err: bool,
    pub r: Result<Bytes, BackendError>,
}

/// Replies for one client from any number of backend connections, in arrival order with the client's sequence
/// numbers; the client puts them back in request order.
#[derive(Default)]
pub struct Inbox {
    pub replies: Mutex<Vec<Delivery>>,
    pub waker: AtomicWaker,
}

/// What a reply frame does to the request at the front of a connection's queue.
enum Step {
    /// Its last frame: deliver.
    Done(Pending),
    /// A frame of a group, kept until the group is complete.
    Keep,
    /// A frame nobody waits for (the reply to `ASKING`).
    Discard,
}

struct Pending {
    /// Reply frames still expected.
    left: u32,
    /// Requests in this entry (a client's group); 1 otherwise.
    count: u32,
    /// Deliver every frame (a group) rather than only the last one (`ASKING` + command).
    keep_all: bool,
    /// Some frame received so far is an error reply.
    err: bool,
    sink: Sink,
    post: Option<PostAction>,
    /// When the batch holding the request was written (stamped by the writer, once per batch).
    sent: Option<Instant>,
}

impl Queue {
    /// Queue the bytes of one request: small ones are copied into the current block, big ones kept as they are.
    fn add(&mut self, data: &Bytes) {
        if data.len() >= BIG_REQUEST {
            if !self.out.is_empty() {
                let run = self.out.split().freeze();
                self.chunks.push(run);
            }
            self.chunks.push(data.clone());
        } else {
            if self.out.capacity() - self.out.len() < data.len() {
                // A fresh block: never grow (and copy) what is queued already.
                if !self.out.is_empty() {
                    let run = self.out.split().freeze();
                    self.chunks.push(run);
                }
                self.out.reserve(OUT_BLOCK);
            }
            self.out.extend_from_slice(data);
        }
    }
}

/// What clients queue for the writer: the bytes to write and, in the same order, who waits for the replies.
struct Queue {
    /// Small requests, copied together.
    out: BytesMut,
    /// What to write, in order: runs of small requests split off `out`, and big requests as they are (no copy).
    chunks: Vec<Bytes>,
    pending: VecDeque<Pending>,
    /// Entries at the back of `pending` whose bytes are not written yet.
    unsent: usize,
    /// No more requests are accepted (the connection died or is closing).
    closed: bool,
}

struct Shared {
    q: Mutex<Queue>,
    /// Wakes the writer.
    wake: Notify,
    alive: AtomicBool,
    dead_tx: watch::Sender<bool>,
}

impl Shared {
    /// Mark dead and fail every request queued or waiting for a reply.
    fn kill(&self, why: &str) {
        self.alive.store(false, Ordering::SeqCst);
        let _ = self.dead_tx.send(true);
        let (drained, written) = {
            let mut q = self.q.lock();
            q.closed = true;
            q.out.clear();
            q.chunks.clear();
            let written = q.pending.len() - q.unsent;
            q.unsent = 0;
            (q.pending.drain(..).collect::<Vec<Pending>>(), written)
        };
        let mut woken = Vec::new();
        for (i, p) in drained.into_iter().enumerate() {
            // Requests never written cannot have run: they may be retried anywhere.
            let e =
                if i < written { BackendError::Lost(why.to_string()) } else { BackendError::NotSent(why.to_string()) };
            p.sink.deliver(Err(e), &mut woken);
        }
        for w in woken {
            w.waker.wake();
        }
    }
}

/// A handle to a multiplexed connection.
#[derive(Clone)]
pub struct Conn {
    shared: Arc<Shared>,
}

impl Conn {
    pub fn alive(&self) -> bool {
        self.shared.alive.load(Ordering::Relaxed)
    }

    /// The same connection?
    pub fn same(&self, other: &Conn) -> bool {
        Arc::ptr_eq(&self.shared, &other.shared)
    }

    /// Queue a job; the write order of jobs queued from one thread is their call order.
    pub fn send(&self, job: Job) {
        let Job { data, replies, tx, post } = job;
        if let Err(sink) = self.push(data, replies, Sink::Once(tx), post) {
            sink.deliver(Err(BackendError::NotSent("connection closed".into())), &mut Vec::new());
        }
    }

    /// Queue encoded request bytes whose reply goes to `sink`. Requests queued from one task reach the node in
    /// call order. Gives the sink back when the connection is closed (nothing was queued).
    pub fn push(&self, data: Bytes, replies: u8, sink: Sink, post: Option<PostAction>) -> Result<(), Sink> {
        let first = {
            let mut q = self.shared.q.lock();
            if q.closed {
                return Err(sink);
            }
            q.add(&data);
            let left = u32::from(replies.max(1));
            q.pending.push_back(Pending { left, count: 1, keep_all: false, err: false, sink, post, sent: None });
            q.unsent += 1;
            q.unsent == 1
        };
        if first {
            self.shared.wake.notify_one();
        }
        Ok(())
    }

    /// Queue a client's group of consecutive requests (one `Bytes` each, one reply frame each) under one lock; the
    /// `datas.len()` reply frames are delivered together to `inbox` under sequence number `seq`. Returns false when
    /// the connection is closed (nothing was queued).
    pub fn push_group(&self, datas: &[Bytes], inbox: &Arc<Inbox>, seq: u64) -> bool {
        self.push_requests(datas, datas.len() as u32, inbox, seq)
    }

    /// Queue `n` consecutive requests of a client sent as one block of bytes (one reply frame each), like
    /// [`Conn::push_group`].
    pub fn push_run(&self, data: &Bytes, n: u32, inbox: &Arc<Inbox>, seq: u64) -> bool {
        self.push_requests(std::slice::from_ref(data), n, inbox, seq)
    }

    fn push_requests(&self, datas: &[Bytes], n: u32, inbox: &Arc<Inbox>, seq: u64) -> bool {
        if n == 0 {
            return true;
        }
        let first = {
            let mut q = self.shared.q.lock();
            if q.closed {
                return false;
            }
            for d in datas {
                q.add(d);
            }
            let sink = Sink::Client(inbox.clone(), seq, n);
            q.pending.push_back(Pending {
                left: n,
                count: n,
                keep_all: true,
                err: false,
                sink,
                post: None,
                sent: None,
            });
            q.unsent += 1;
            q.unsent == 1
        };
        if first {
            self.shared.wake.notify_one();
        }
        true
    }
}

struct NodeEntry {
    conn: Option<Conn>,
    /// No new connection attempt before this instant (backoff after failures).
    next_try: Option<Instant>,
    backoff: Duration,
    last_error: String,
}

/// Settings shared by every backend connection.
pub struct BackendSettings {
    pub upstream: Creds,
    pub ferrite: Creds,
    pub connect_timeout: Duration,
    /// A request without a reply for this long kills its (shared) connection: every request behind it on that
    /// connection is stuck too. Its waiters get an error.
    pub request_timeout: Duration,
    /// Connections per Ferrite node (slot-affine lanes); 1 keeps every client's requests on one connection.
    pub ferrite_lanes: u16,
}

/// Multiplexed connections to every node, keyed by (address, RESP3?).
pub struct Pool {
    nodes: parking_lot::RwLock<HashMap<(Arc<str>, bool, u16), Arc<Mutex<NodeEntry>>>>,
    pub settings: Arc<BackendSettings>,
    metrics: Arc<Metrics>,
}

/// Requests at least this big are queued by reference (written with `writev`) instead of copied.
const BIG_REQUEST: usize = 16 * 1024;
/// Size of the blocks small requests are copied into.
const OUT_BLOCK: usize = 64 * 1024;

const BACKOFF_MIN: Duration = Duration::from_millis(50);
const BACKOFF_MAX: Duration = Duration::from_millis(2000);

impl Pool {
    pub fn new(settings: Arc<BackendSettings>, metrics: Arc<Metrics>) -> Pool {
        Pool { nodes: parking_lot::RwLock::new(HashMap::new()), settings, metrics }
    }

    /// The live connection to `addr`, creating one if needed. Fails fast (without connecting) while the node is
    /// in its reconnect backoff.
    ///
    /// `lane` picks one of several connections to the same node (`--ferrite-connections`); 0 otherwise.
    pub fn get(&self, addr: &Arc<str>, resp3: bool, side: Side, lane: u16) -> Result<Conn, BackendError> {
        let key = (addr.clone(), resp3, lane);
        let found = self.nodes.read().get(&key).cloned();
        let entry = match found {
            Some(e) => e,
            None => self
                .nodes
                .write()
                .entry(key)
                .or_insert_with(|| {
                    Arc::new(Mutex::new(NodeEntry {
                        conn: None,
                        next_try: None,
                        backoff: BACKOFF_MIN,
                        last_error: String::new(),
                    }))
                })
                .clone(),
        };
        let mut e = entry.lock();
        if let Some(c) = &e.conn {
            if c.alive() {
                return Ok(c.clone());
            }
        }
        if let Some(t) = e.next_try {
            if Instant::now() < t {
                return Err(BackendError::NotSent(format!("unreachable ({})", e.last_error)));
            }
        }
        let (dead_tx, _) = watch::channel(false);
        let shared = Arc::new(Shared {
            q: Mutex::new(Queue {
                out: BytesMut::with_capacity(OUT_BLOCK),
                chunks: Vec::new(),
                pending: VecDeque::new(),
                unsent: 0,
                closed: false,
            }),
            wake: Notify::new(),
            alive: AtomicBool::new(true),
            dead_tx,
        });
        let conn = Conn { shared: shared.clone() };
        e.conn = Some(conn.clone());
        drop(e);
        tokio::spawn(run_conn(addr.clone(), side, resp3, self.settings.clone(), shared, entry, self.metrics.clone()));
        Ok(conn)
    }

    /// Is `addr` currently in reconnect backoff?
    pub fn is_down(&self, addr: &Arc<str>) -> bool {
        let m = self.nodes.read();
        m.iter().any(|(k, e)| {
            k.0 == *addr && {
                let e = e.lock();
                e.next_try.is_some_and(|t| Instant::now() < t)
            }
        })
    }
}

fn creds_for(settings: &BackendSettings, side: Side) -> &Creds {
    match side {
        Side::Upstream => &settings.upstream,
        Side::Ferrite => &settings.ferrite,
    }
}

/// Connect and authenticate (`HELLO 3 [AUTH ..]` for RESP3, `AUTH` for RESP2 with credentials).
pub async fn connect(addr: &str, resp3: bool, creds: &Creds, timeout: Duration) -> Result<TcpStream, String> {
    let mut s = match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => return Err(e.to_string()),
        Err(_) => return Err(format!("connect timed out after {timeout:?}")),
    };
    let _ = s.set_nodelay(true);
    let hello: Option<Bytes> = match (resp3, &creds.password) {
        (true, Some(p)) => {
            Some(encode_cmd(&["HELLO", "3", "AUTH", creds.user.as_deref().unwrap_or("default"), p.as_str()]))
        }
        (true, None) => Some(encode_cmd(&["HELLO", "3"])),
        (false, Some(p)) => match &creds.user {
            Some(u) => Some(encode_cmd(&["AUTH", u.as_str(), p.as_str()])),
            None => Some(encode_cmd(&["AUTH", p.as_str()])),
        },
        (false, None) => None,
    };
    if let Some(h) = hello {
        let fut = async {
            s.write_all(&h).await.map_err(|e| e.to_string())?;
            let mut buf = BytesMut::with_capacity(1024);
            let mut sc = FrameScanner::default();
            loop {
                if let Some(n) = sc.scan(&buf).map_err(|e| e.0)? {
                    if buf[0] == b'-' {
                        return Err(format!(
                            "authentication failed: {}",
                            String::from_utf8_lossy(&buf[1..n.saturating_sub(2)])
                        ));
                    }
                    return Ok(());
                }
                if s.read_buf(&mut buf).await.map_err(|e| e.to_string())? == 0 {
                    return Err("connection closed during handshake".into());
                }
                if buf.len() > 1 << 20 {
                    return Err("handshake reply too large".into());
                }
            }
        };
        tokio::time::timeout(timeout, fut).await.map_err(|_| "handshake timed out".to_string())??;
    }
    Ok(s)
}

/// Write every chunk, several per system call.
async fn write_chunks<W: AsyncWrite + Unpin>(wr: &mut W, chunks: &[Bytes]) -> std::io::Result<()> {
    let (mut idx, mut off) = (0usize, 0usize);
    while idx < chunks.len() {
        let slices: smallvec::SmallVec<[IoSlice<'_>; 64]> = chunks[idx..]
            .iter()
            .take(64)
            .enumerate()
            .map(|(k, c)| IoSlice::new(if k == 0 { &c[off..] } else { &c[..] }))
            .collect();
        let mut n = wr.write_vectored(&slices).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        while n > 0 && idx < chunks.len() {
            let rest = chunks[idx].len() - off;
            if n >= rest {
                n -= rest;
                idx += 1;
                off = 0;
            } else {
                off += n;
                n = 0;
            }
        }
    }
    Ok(())
}

/// Fail every queued request with `NotSent` (the connection never came up) and refuse new ones.
fn refuse_all(shared: &Shared, why: &str) {
    shared.alive.store(false, Ordering::SeqCst);
    let drained: Vec<Pending> = {
        let mut q = shared.q.lock();
        q.closed = true;
        q.out.clear();
        q.chunks.clear();
        q.unsent = 0;
        q.pending.drain(..).collect()
    };
    let mut woken = Vec::new();
    for p in drained {
        p.sink.deliver(Err(BackendError::NotSent(why.to_string())), &mut woken);
    }
    for w in woken {
        w.waker.wake();
    }
}

async fn run_conn(
    addr: Arc<str>,
    side: Side,
    resp3: bool,
    settings: Arc<BackendSettings>,
    shared: Arc<Shared>,
    entry: Arc<Mutex<NodeEntry>>,
    metrics: Arc<Metrics>,
) {
    let labels = [addr.as_ref(), side.name()];
    let stream = match connect(&addr, resp3, creds_for(&settings, side), settings.connect_timeout).await {
        Ok(s) => {
            let mut e = entry.lock();
            e.next_try = None;
            e.backoff = BACKOFF_MIN;
            s
        }
        Err(err) => {
            metrics.backend_connect_failures.with_label_values(&labels).inc();
            tracing::warn!(backend = %addr, side = side.name(), error = %err, "backend connect failed");
            {
                let mut e = entry.lock();
                e.next_try = Some(Instant::now() + e.backoff);
                e.backoff = (e.backoff * 2).min(BACKOFF_MAX);
                e.last_error = err.clone();
            }
            refuse_all(&shared, &format!("unreachable ({err})"));
            return;
        }
    };
    let gauge = metrics.backend_connections.with_label_values(&labels);
    gauge.inc();
    let (mut rd, mut wr) = stream.into_split();
    let latency = metrics.latency.with_label_values(&labels);
    let rshared = shared.clone();
    let mut dead_rx = shared.dead_tx.subscribe();
    let reader = tokio::spawn(async move {
        let mut buf = BytesMut::with_capacity(64 * 1024);
        let mut sc = FrameScanner::default();
        let mut woken: Vec<Arc<Inbox>> = Vec::new();
        // Complete frames found in one pass (end offset, error reply?) and what each does to the queue.
        let mut ends: Vec<(usize, bool)> = Vec::new();
        let mut steps: Vec<(usize, Step)> = Vec::new();
        // Latency observations are counted locally and published once per read (not one atomic update per reply).
        let lat = latency.local();
        // Bytes at the front of `buf` that are complete frames of the front request group, not delivered yet.
        let mut pos = 0usize;
        let why = loop {
            match rd.read_buf(&mut buf).await {
                Ok(0) => break "connection closed by backend".to_string(),
                Err(e) => break e.to_string(),
                Ok(_) => {}
            }
            // One clock reading per read: every reply in it arrived at the same time.
            let now = Instant::now();
            let mut bad = None;
            loop {
                // 1. The complete frames after `pos`, up to an out-of-band push (RESP3) if any.
                let mut at = pos;
                let mut push = None;
                loop {
                    match sc.scan(&buf[at..]) {
                        Ok(Some(n)) => {
                            sc.reset();
                            if resp3 && buf[at] == b'>' {
                                push = Some(n);
                                break;
                            }
                            ends.push((at + n, buf[at] == b'-'));
                            at += n;
                        }
                        Ok(None) => break,
                        Err(e) => {
                            bad = Some(format!("bad reply stream: {}", e.0));
                            break;
                        }
                    }
                }
                // 2. Match them with the queued requests under one lock.
                if !ends.is_empty() {
                    let mut q = rshared.q.lock();
                    for &(end, is_err) in &ends {
                        let written = q.pending.len() - q.unsent;
                        let step = match q.pending.front_mut() {
                            Some(f) if written > 0 => {
                                f.left = f.left.saturating_sub(1);
                                f.err |= is_err;
                                if f.left == 0 {
                                    q.pending.pop_front().map(Step::Done)
                                } else if f.keep_all {
                                    Some(Step::Keep)
                                } else {
                                    Some(Step::Discard)
                                }
                            }
                            _ => None,
                        };
                        match step {
                            Some(s) => steps.push((end, s)),
                            None => {
                                bad = Some("reply without a request".to_string());
                                break;
                            }
                        }
                    }
                    ends.clear();
                }
                // 3. Deliver, outside the lock (a post action may queue a request on another connection).
                // `base`: bytes removed from the front of `buf` since the offsets were taken.
                let mut base = 0usize;
                for (end, step) in steps.drain(..) {
                    match step {
                        // A frame of a group: delivered with the group's last one.
                        Step::Keep => pos = end - base,
                        // `ASKING`'s reply: only the command's reply is delivered.
                        Step::Discard => {
                            buf.advance(end - base);
                            base = end;
                            pos = 0;
                        }
                        Step::Done(p) => {
                            let frame = buf.split_to(end - base).freeze();
                            base = end;
                            pos = 0;
                            if let Some(sent) = p.sent {
                                let took = now.saturating_duration_since(sent).as_secs_f64();
                                for _ in 0..p.count {
                                    lat.observe(took);
                                }
                            }
                            if let Some(post) = p.post {
                                if frame[0] != b'-' {
                                    post(&frame);
                                }
                            }
                            p.sink.deliver_with(Ok(frame), p.err, &mut woken);
                        }
                    }
                }
                if bad.is_some() {
                    break;
                }
                match push {
                    // An out-of-band push on a shared connection: not ours to deliver. Cut it out and go on.
                    Some(n) => {
                        let start = at - base;
                        if start == 0 {
                            buf.advance(n);
                        } else {
                            let mut tail = buf.split_off(start);
                            tail.advance(n);
                            buf.extend_from_slice(&tail);
                        }
                    }
                    None => {
                        if buf.capacity() - buf.len() < 16 * 1024 {
                            buf.reserve(64 * 1024);
                        }
                        break;
                    }
                }
            }
            lat.flush();
            for w in woken.drain(..) {
                w.waker.wake();
            }
            if let Some(b) = bad {
                break b;
            }
        };
        // The front group's replies that did arrive are delivered; only its requests without a reply fail.
        if pos > 0 {
            let part = {
                let mut q = rshared.q.lock();
                let written = q.pending.len() - q.unsent;
                match q.pending.front_mut() {
                    Some(f) if written > 0 && f.keep_all && f.left > 0 && f.left < f.count => match &mut f.sink {
                        Sink::Client(inbox, seq, n) => {
                            let got = f.count - f.left;
                            let part = (inbox.clone(), *seq, got, f.err);
                            *seq += u64::from(got);
                            *n -= got;
                            f.count = f.left;
                            f.err = false;
                            Some(part)
                        }
                        _ => None,
                    },
                    _ => None,
                }
            };
            if let Some((inbox, seq, got, err)) = part {
                let frames = buf.split_to(pos).freeze();
                Sink::Client(inbox, seq, got).deliver_with(Ok(frames), err, &mut woken);
                for w in woken.drain(..) {
                    w.waker.wake();
                }
            }
        }
        rshared.kill(&why);
        why
    });
    // A watchdog: the oldest written request without a reply for longer than the request timeout means the node
    // (or the link) hangs; every request behind it on this connection is stuck as well.
    let wshared = shared.clone();
    let timeout = settings.request_timeout;
    let mut wdead_rx = shared.dead_tx.subscribe();
    let watchdog = tokio::spawn(async move {
        let tick = (timeout / 4).clamp(Duration::from_millis(10), Duration::from_secs(1));
        loop {
            tokio::select! {
                _ = tokio::time::sleep(tick) => {}
                _ = wdead_rx.changed() => return,
            }
            let stuck = {
                let q = wshared.q.lock();
                q.pending.front().and_then(|p| p.sent).is_some_and(|t| t.elapsed() > timeout)
            };
            if stuck {
                wshared.kill(&format!("no reply within {} ms", timeout.as_millis()));
                return;
            }
        }
    });
    let mut chunks: Vec<Bytes> = Vec::new();
    let why = loop {
        tokio::select! {
            _ = shared.wake.notified() => {}
            _ = dead_rx.changed() => break "connection closed".to_string(),
        }
        // Let the other tasks that are ready now (clients whose requests are already read) queue theirs first, so
        // requests of many clients leave in one write instead of one write each.
        tokio::task::yield_now().await;
        {
            let mut q = shared.q.lock();
            if q.closed {
                break "connection closed".to_string();
            }
            if q.unsent == 0 {
                continue;
            }
            std::mem::swap(&mut chunks, &mut q.chunks);
            if !q.out.is_empty() {
                let run = q.out.split().freeze();
                chunks.push(run);
            }
            let now = Instant::now();
            let n = q.unsent;
            q.unsent = 0;
            for p in q.pending.iter_mut().rev().take(n) {
                p.sent = Some(now);
            }
        }
        if let Err(e) = write_chunks(&mut wr, &chunks).await {
            break e.to_string();
        }
        chunks.clear();
    };
    shared.kill(&why);
    let _ = wr.shutdown().await;
    let rwhy = reader.await.unwrap_or_default();
    watchdog.abort();
    gauge.dec();
    tracing::info!(backend = %addr, side = side.name(), reason = %rwhy, "backend connection closed");
    {
        let mut e = entry.lock();
        // A connection that dies is retried at once the first time, then with backoff.
        if e.next_try.is_none() {
            e.last_error = rwhy;
        }
    }
}

/// A connection owned by one client (transactions, blocking commands, pub/sub).
pub struct DedConn {
    pub stream: TcpStream,
    pub buf: BytesMut,
    sc: FrameScanner,
    pub addr: Arc<str>,
}

impl DedConn {
    pub async fn open(addr: &Arc<str>, resp3: bool, settings: &BackendSettings, side: Side) -> Result<DedConn, String> {
        let s = connect(addr, resp3, creds_for(settings, side), settings.connect_timeout).await?;
        Ok(DedConn {
            stream: s,
            buf: BytesMut::with_capacity(16 * 1024),
            sc: FrameScanner::default(),
            addr: addr.clone(),
        })
    }

    /// Read one reply frame.
    pub async fn read_frame(&mut self) -> Result<Bytes, String> {
        loop {
            if let Some(n) = self.sc.scan(&self.buf).map_err(|e| e.0)? {
                self.sc.reset();
                return Ok(self.buf.split_to(n).freeze());
            }
            if self.buf.capacity() - self.buf.len() < 8192 {
                self.buf.reserve(64 * 1024);
            }
            match self.stream.read_buf(&mut self.buf).await {
                Ok(0) => return Err("connection closed by backend".into()),
                Ok(_) => {}
                Err(e) => return Err(e.to_string()),
            }
        }
    }

    /// Write `data` and read `n` reply frames (all returned).
    pub async fn request(&mut self, data: &[u8], n: usize) -> Result<Vec<Bytes>, String> {
        self.stream.write_all(data).await.map_err(|e| e.to_string())?;
        let mut out = Vec::with_capacity(n);
        for _ in 0..n {
            out.push(self.read_frame().await?);
        }
        Ok(out)
    }
}
