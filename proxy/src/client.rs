//! One task per client connection: parse requests (Redis-exact protocol errors), route each one, and write the
//! replies in request order even when they come from different backends. Connection-level commands (AUTH,
//! HELLO, SELECT, CLIENT, CLUSTER, MULTI/EXEC/WATCH, pub/sub, FERRITE.PROXY) are handled here.

use crate::backend::{BackendError, Conn, DedConn, Delivery, Inbox, Side};
use crate::pubsub::{confirm, Kind, PsCmd, PubSubHandle};
use crate::resp::{self, encode_cmd, encode_into, FrameScanner};
use crate::router::{self, side_of, Fut, Merge, Req, Split};
use crate::slots::{InflightGuard, State};
use crate::Proxy;
use bytes::{Buf, Bytes, BytesMut};
use ferrite_commands::{get_keys, key_hash_slot, table, CommandMeta, Flags};
use ferrite_resp::parser::Parsed;
use ferrite_resp::{Limits, ReplyBuf, RequestParser};
use futures_util::stream::{FuturesUnordered, StreamExt};
use futures_util::FutureExt;
use prometheus::IntCounter;
use smallvec::SmallVec;
use std::collections::{BTreeSet, HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};

const MAX_PENDING: usize = 1024;
/// Undelivered pub/sub messages after which a client is disconnected.
const MAX_PUSH_BACKLOG: usize = 100_000;

const CROSSSLOT: &str = "CROSSSLOT Keys in request don't hash to the same slot";

/// What handling one request produced.
enum Out {
    Now(Bytes),
    Later(Fut),
    /// A pub/sub confirmation: messages are held back until it is written.
    Ctrl(Fut),
    /// Write this, then close the connection.
    Close(Bytes),
    /// Queued on a shared backend connection; the reply arrives in the client's inbox under the request's sequence
    /// number.
    Fast(FastInfo),
}

/// A request sent on the fast path (a single-slot command for a slot that is neither paused, mirrored nor
/// tracked): what is needed to finish it on the general path if the reply is a redirect or the connection failed.
struct FastInfo {
    slot: u16,
    side: Side,
    addr: Arc<str>,
    data: Bytes,
    name: &'static str,
    write: bool,
    readonly: bool,
    // The slot's in-flight count (`Slots::route_counted`) is held until the reply is in: a pause of the slot waits
    // for it. Whoever consumes a `FastInfo` ends it (`Slots::done`) or hands it to a guard.
}

/// A request waiting for a fast-path reply.
enum Fast {
    /// Sent on its own (through [`Client::handle`]).
    Own(FastInfo),
    /// Part of a run ([`Client::fast_run`]): its bytes are `off..off + len` of the run's.
    Run { slot: u16, meta: &'static CommandMeta, off: usize, len: usize },
}

impl Fast {
    fn slot(&self) -> u16 {
        match self {
            Fast::Own(f) => f.slot,
            Fast::Run { slot, .. } => *slot,
        }
    }
}

/// Consecutive requests of a client sent to one backend connection as one block of bytes, as the client sent
/// them; kept until their replies are written (a redirected or failed request is retried from these bytes).
struct Run {
    /// Sequence number of the first request.
    first: u64,
    n: u32,
    side: Side,
    addr: Arc<str>,
    data: Bytes,
}

/// The backend connection of the run being gathered in [`Client::fast_run`].
struct RunTarget {
    conn: Conn,
    addr: Arc<str>,
    side: Side,
    lane: u16,
}

/// A request whose reply is not written yet, in request order.
struct Entry {
    reply: Option<Bytes>,
    /// A pub/sub confirmation: pushed messages wait until it is written.
    ctrl: bool,
    fast: Option<Fast>,
}

/// A job for the client's dedicated-connection task (transactions, blocking commands).
struct DedJob {
    side: Side,
    addr: Arc<str>,
    resp3: bool,
    data: Bytes,
    replies: usize,
    tx: oneshot::Sender<Result<Vec<Bytes>, String>>,
}

async fn ded_task(proxy: Arc<Proxy>, mut rx: mpsc::UnboundedReceiver<DedJob>) {
    let mut conns: HashMap<(Arc<str>, bool), DedConn> = HashMap::new();
    while let Some(j) = rx.recv().await {
        let key = (j.addr.clone(), j.resp3);
        if !conns.contains_key(&key) {
            match DedConn::open(&j.addr, j.resp3, &proxy.pool.settings, j.side).await {
                Ok(c) => {
                    conns.insert(key.clone(), c);
                }
                Err(e) => {
                    let _ = j.tx.send(Err(format!("{} node {} is unreachable: {e}", j.side.name(), j.addr)));
                    continue;
                }
            }
        }
        let Some(c) = conns.get_mut(&key) else { continue };
        let mut tx = j.tx;
        // A client that goes away while blocked: drop the connection, which ends the command upstream.
        let r = tokio::select! {
            r = c.request(&j.data, j.replies) => Some(r),
            _ = tx.closed() => None,
        };
        match r {
            Some(Ok(r)) => {
                let _ = tx.send(Ok(r));
            }
            Some(Err(e)) => {
                conns.remove(&key);
                let _ = tx.send(Err(format!("{} node {} connection lost: {e}", j.side.name(), j.addr)));
            }
            None => {
                conns.remove(&key);
            }
        }
    }
}

struct Multi {
    /// Queued commands: (encoded, write?, keys).
    queued: Vec<(Bytes, bool, Vec<Bytes>)>,
    failed: bool,
}

/// Where a transaction runs: a slot and the node that owned it when pinned.
#[derive(Clone)]
struct Pin {
    slot: u16,
    side: Side,
    addr: Arc<str>,
}

pub struct Client {
    proxy: Arc<Proxy>,
    id: u64,
    resp3: bool,
    authed: bool,
    admin_authed: bool,
    loopback: bool,
    local: SocketAddr,
    name: Option<Bytes>,
    multi: Option<Multi>,
    pin: Option<Pin>,
    watching: bool,
    ded: Option<mpsc::UnboundedSender<DedJob>>,
    pubsub: Option<PubSubHandle>,
    subs: [BTreeSet<Bytes>; 3],
    push_tx: mpsc::UnboundedSender<Bytes>,
    /// The protocol changed: requests after this point wait until every earlier reply arrived, because they use
    /// other backend connections (per protocol) and must not overtake earlier requests.
    barrier: bool,
    /// Fast-path replies from the backend connections.
    inbox: Arc<Inbox>,
    /// The sequence number the next request gets (the reply queue's position).
    next_seq: u64,
    /// Encoding buffer for fast-path requests (split into `Bytes` without an allocation per request).
    enc: BytesMut,
    /// Backend connections used recently: (node, lane, RESP3?, connection).
    conns: Vec<(Arc<str>, u16, bool, Conn)>,
    /// Request counters used by this client: (command, side, counter, increments not yet added to it). The
    /// increments are published by [`Client::publish_counts`] before the client's task waits.
    counters: Vec<(&'static str, Side, IntCounter, u64)>,
    /// The last command looked up in the table (most clients repeat a few commands), whether it is a plain keyed
    /// command ([`is_plain`]) and whether its only key is `args[1]`.
    last_meta: Option<&'static CommandMeta>,
    last_plain: bool,
    last_simple_key: bool,
    /// The bytes of the request being handled, as the client sent them (a well-formed multibulk request): forwarded
    /// without encoding the arguments again.
    raw: Option<Bytes>,
    /// Fast-path requests not yet queued on their backend connection: consecutive requests for one connection are
    /// queued together (one lock, one reply delivery) when a request for another connection or for the general
    /// path comes, or when the read requests are all handled. (connection, sequence number of the first).
    group: Option<(Conn, u64)>,
    /// The bytes of the requests of `group`.
    group_data: Vec<Bytes>,
    /// Runs sent by [`Client::fast_run`] whose replies are not all written yet, oldest first.
    runs: VecDeque<Run>,
}

fn eq(a: &[u8], b: &str) -> bool {
    a.eq_ignore_ascii_case(b.as_bytes())
}

fn lower(b: &[u8]) -> String {
    String::from_utf8_lossy(b).to_ascii_lowercase()
}

fn err(msg: &str) -> Out {
    Out::Now(resp::error(msg))
}

fn ok() -> Out {
    Out::Now(Bytes::from_static(resp::OK))
}

fn kind_idx(k: Kind) -> usize {
    match k {
        Kind::Channel => 0,
        Kind::Pattern => 1,
        Kind::Shard => 2,
    }
}

/// Redis's unknown-command error text (`'%.128s'` for the name; arguments while the list is under 128 bytes,
/// each cut to what is left of those 128).
fn unknown_command(args: &[Bytes]) -> String {
    let name = &args[0][..args[0].len().min(128)];
    let mut list: Vec<u8> = Vec::new();
    for a in args.iter().skip(1) {
        if list.len() >= 128 {
            break;
        }
        let room = 128 - list.len();
        list.push(b'\'');
        list.extend_from_slice(&a[..a.len().min(room)]);
        list.extend_from_slice(b"' ");
    }
    format!(
        "ERR unknown command '{}', with args beginning with: {}",
        String::from_utf8_lossy(name),
        String::from_utf8_lossy(&list)
    )
}

impl Client {
    fn new(proxy: Arc<Proxy>, peer: SocketAddr, local: SocketAddr, push_tx: mpsc::UnboundedSender<Bytes>) -> Client {
        let id = proxy.next_client_id();
        let authed = !proxy.auth_required();
        Client {
            proxy,
            id,
            resp3: false,
            authed,
            admin_authed: false,
            loopback: peer.ip().is_loopback(),
            local,
            name: None,
            multi: None,
            pin: None,
            watching: false,
            ded: None,
            pubsub: None,
            subs: Default::default(),
            push_tx,
            barrier: false,
            inbox: Arc::new(Inbox::default()),
            next_seq: 0,
            enc: BytesMut::with_capacity(16 * 1024),
            conns: Vec::new(),
            counters: Vec::new(),
            last_meta: None,
            last_plain: false,
            last_simple_key: false,
            raw: None,
            group: None,
            group_data: Vec::new(),
            runs: VecDeque::new(),
        }
    }

    /// Case-insensitive command lookup, remembering the last command found.
    #[inline]
    fn lookup(&mut self, name: &[u8]) -> Option<&'static CommandMeta> {
        if let Some(m) = self.last_meta {
            if m.name.as_bytes().eq_ignore_ascii_case(name) {
                return Some(m);
            }
        }
        let m = table().get(name)?;
        self.last_meta = Some(m);
        self.last_plain = is_plain(m);
        self.last_simple_key = self.last_plain && has_simple_key(m);
        Some(m)
    }

    /// Count a request sent to `side`.
    #[inline]
    fn count(&mut self, name: &'static str, side: Side) {
        if let Some(c) = self.counters.iter_mut().find(|c| std::ptr::eq(c.0, name) && c.1 == side) {
            c.3 += 1;
            return;
        }
        let c = self.proxy.metrics.requests.with_label_values(&[name, side.name()]);
        if self.counters.len() >= 64 {
            self.publish_counts();
            self.counters.clear();
        }
        self.counters.push((name, side, c, 1));
    }

    /// Add the counted requests to the shared counters.
    fn publish_counts(&mut self) {
        for c in self.counters.iter_mut().filter(|c| c.3 > 0) {
            c.2.inc_by(c.3);
            c.3 = 0;
        }
    }

    /// Send a single-slot request on the fast path when the slot is simply owned by one side (not paused, not
    /// mirrored, not tracked for writes). `None`: the request must take the general path.
    fn try_fast(&mut self, slot: u16, meta: &'static CommandMeta, args: &[Bytes]) -> Option<Out> {
        let write = meta.flags.has(Flags::WRITE);
        let entry = self.proxy.slots.route_counted(slot);
        let sent = self.fast_send(slot, entry, write, args);
        let Some((side, addr, data)) = sent else {
            self.proxy.slots.done(slot);
            return None;
        };
        self.count(meta.name.as_str(), side);
        Some(Out::Fast(FastInfo {
            slot,
            side,
            addr,
            data,
            name: meta.name.as_str(),
            write,
            readonly: meta.flags.has(Flags::READONLY),
        }))
    }

    /// The client's cached shared connection to `addr` for `lane`, opened (and cached) when missing or dead.
    fn cached_conn(&mut self, side: Side, slot: u16, addr: &Arc<str>, lane: u16) -> Option<Conn> {
        let resp3 = self.resp3;
        let found = self.conns.iter().find(|c| Arc::ptr_eq(&c.0, addr) && c.1 == lane && c.2 == resp3 && c.3.alive());
        if let Some(c) = found {
            return Some(c.3.clone());
        }
        let c = self.proxy.slot_conn(side, slot, addr, resp3)?;
        self.conns.retain(|c| c.3.alive());
        if self.conns.len() >= 64 {
            self.conns.clear();
        }
        self.conns.push((addr.clone(), lane, resp3, c.clone()));
        Some(c)
    }

    fn fast_send(
        &mut self,
        slot: u16,
        entry: crate::slots::SlotEntry,
        write: bool,
        args: &[Bytes],
    ) -> Option<(Side, Arc<str>, Bytes)> {
        if !self.proxy.plainly_owned(slot, entry, write) {
            return None;
        }
        let side = side_of(entry.state);
        let addr = self.proxy.slot_node(side, slot)?;
        let lane = self.proxy.lane(side, Some(slot));
        let conn = self.cached_conn(side, slot, &addr, lane)?;
        let data = match self.raw.take() {
            Some(raw) => raw,
            None => {
                encode_into(&mut self.enc, args);
                let data = self.enc.split().freeze();
                if self.enc.capacity() < 1024 {
                    self.enc.reserve(16 * 1024);
                }
                data
            }
        };
        if !self.group.as_ref().is_some_and(|(c, _)| c.same(&conn)) {
            self.flush_group();
            self.group = Some((conn, self.next_seq));
        }
        self.group_data.push(data.clone());
        Some((side, addr, data))
    }

    /// Queue the fast-path requests gathered so far on their backend connection. Must run before a request takes
    /// any other path, so that requests reach a node in the order the client sent them.
    fn flush_group(&mut self) {
        let Some((conn, seq)) = self.group.take() else { return };
        if !conn.push_group(&self.group_data, &self.inbox, seq) {
            // The connection closed meanwhile: nothing was written, the general path retries each request.
            let n = self.group_data.len() as u32;
            let r = Err(BackendError::NotSent("connection closed".into()));
            self.inbox.replies.lock().push(Delivery { seq, n, err: true, r });
        }
        self.group_data.clear();
    }

    /// The run fast path: take the complete requests at the front of `inbuf` that are plain commands with their
    /// only key at `args[1]` (GET, SET, INCR, HSET, ...) for slots simply owned by one side, find each request's
    /// end, command and key without building arguments, and send each run of consecutive requests for one backend
    /// connection as one block of the bytes the client sent (one queue entry, one reply delivery per run). Stops at
    /// the first request that needs anything else (left in `inbuf` for the general path). Returns the number of
    /// requests taken; each got a queue entry.
    fn fast_run(&mut self, inbuf: &mut BytesMut, queue: &mut VecDeque<Entry>, head: u64) -> usize {
        self.flush_group();
        let max_bulk = self.proxy.cfg.proto_max_bulk_len;
        let proxy = self.proxy.clone();
        // Slot maps, loaded once per call (per side).
        let mut views: [Option<arc_swap::Guard<Arc<crate::topology::View>>>; 2] = [None, None];
        let mut target: Option<RunTarget> = None;
        // Bytes at the front of `inbuf` in the current run, its requests, and the first one's sequence number.
        let (mut at, mut n, mut first) = (0usize, 0u32, 0u64);
        let mut taken = 0usize;
        while queue.len() < MAX_PENDING {
            let Some(s) = crate::fastrun::scan_simple(&inbuf[at..], max_bulk, 1024) else { break };
            let Some(meta) = self.lookup(&inbuf[at + s.name.0..at + s.name.1]) else { break };
            if !self.last_simple_key || !meta.arity_ok(s.nargs) {
                break;
            }
            let slot = key_hash_slot(&inbuf[at + s.key.0..at + s.key.1]);
            let write = meta.flags.has(Flags::WRITE);
            let e = proxy.slots.route_counted(slot);
            if !proxy.plainly_owned(slot, e, write) {
                proxy.slots.done(slot);
                break;
            }
            let side = side_of(e.state);
            let lane = proxy.lane(side, Some(slot));
            let Some(topo) = proxy.topo_of(side) else {
                proxy.slots.done(slot);
                break;
            };
            let view = views[side as usize].get_or_insert_with(|| topo.view());
            let Some(addr) = view.node(slot) else {
                proxy.slots.done(slot);
                break;
            };
            let same = target.as_ref().is_some_and(|t| t.side == side && t.lane == lane && Arc::ptr_eq(&t.addr, addr));
            if !same {
                let addr = addr.clone();
                let Some(conn) = self.cached_conn(side, slot, &addr, lane) else {
                    proxy.slots.done(slot);
                    break;
                };
                if let Some(t) = target.take() {
                    self.end_run(inbuf, t, at, n, first);
                    at = 0;
                }
                target = Some(RunTarget { conn, addr, side, lane });
                n = 0;
                first = head + queue.len() as u64;
            }
            self.count(meta.name.as_str(), side);
            queue.push_back(Entry {
                reply: None,
                ctrl: false,
                fast: Some(Fast::Run { slot, meta, off: at, len: s.end }),
            });
            at += s.end;
            n += 1;
            taken += 1;
        }
        if let Some(t) = target {
            self.end_run(inbuf, t, at, n, first);
        }
        taken
    }

    /// Send the run of `n` requests that are the first `len` bytes of `inbuf`.
    fn end_run(&mut self, inbuf: &mut BytesMut, t: RunTarget, len: usize, n: u32, first: u64) {
        let data = inbuf.split_to(len).freeze();
        if !t.conn.push_run(&data, n, &self.inbox, first) {
            // The connection closed meanwhile: nothing was written, the general path retries each request.
            let r = Err(BackendError::NotSent("connection closed".into()));
            self.inbox.replies.lock().push(Delivery { seq: first, n, err: true, r });
        }
        self.runs.push_back(Run { first, n, side: t.side, addr: t.addr, data });
    }

    /// What the general path needs to finish fast-path request `seq`.
    fn resolve(&self, seq: u64, f: Fast) -> Option<FastInfo> {
        match f {
            Fast::Own(i) => Some(i),
            Fast::Run { slot, meta, off, len } => {
                let r = self.runs.iter().find(|r| seq >= r.first && seq - r.first < u64::from(r.n))?;
                Some(FastInfo {
                    slot,
                    side: r.side,
                    addr: r.addr.clone(),
                    data: r.data.slice(off..off + len),
                    name: meta.name.as_str(),
                    write: meta.flags.has(Flags::WRITE),
                    readonly: meta.flags.has(Flags::READONLY),
                })
            }
        }
    }

    /// Does this request run on the client's dedicated connection (so it must not overtake or be overtaken by
    /// requests on the shared connections)?
    fn isolated(&mut self, args: &[Bytes]) -> bool {
        if !self.authed {
            return false;
        }
        let Some(m) = self.lookup(&args[0]) else { return false };
        match m.name.as_str() {
            "exec" | "watch" | "wait" => true,
            "xread" | "xreadgroup" => self.multi.is_none() && is_blocking_call(&m.name, args),
            _ => self.multi.is_none() && m.flags.has(Flags::BLOCKING),
        }
    }

    fn subscribed(&self) -> bool {
        self.subs.iter().any(|s| !s.is_empty())
    }

    fn req(&self, args: &[Bytes], meta: Option<&'static CommandMeta>, keys: Vec<Bytes>) -> Req {
        let (name, write, readonly) = match meta {
            Some(m) => (m.name.as_str(), m.flags.has(Flags::WRITE), m.flags.has(Flags::READONLY)),
            None => ("unknown", false, false),
        };
        let data = match &self.raw {
            Some(raw) => raw.clone(),
            None => encode_cmd(args),
        };
        Req { data, name, write, readonly, resp3: self.resp3, keys: keys.into() }
    }

    fn ded(&mut self) -> mpsc::UnboundedSender<DedJob> {
        if let Some(d) = &self.ded {
            return d.clone();
        }
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(ded_task(self.proxy.clone(), rx));
        self.ded = Some(tx.clone());
        tx
    }

    /// Handle one parsed request.
    fn handle(&mut self, args: &[Bytes]) -> Out {
        let name = &args[0];
        // The common case first: an authenticated client outside MULTI and pub/sub sends a plain keyed command.
        if self.authed && self.multi.is_none() {
            if let Some(m) = self.lookup(name) {
                if self.last_plain && m.arity_ok(args.len()) && !self.subscribed() {
                    return self.route_keyed(m.name.as_str(), args, m);
                }
            }
        }
        self.flush_group();
        // Commands allowed before authentication.
        if eq(name, "auth") {
            return self.auth(args);
        }
        if eq(name, "hello") {
            return self.hello(args);
        }
        if eq(name, "quit") {
            return Out::Close(Bytes::from_static(resp::OK));
        }
        if !self.authed {
            return err("NOAUTH Authentication required.");
        }
        if eq(name, "reset") {
            return self.reset();
        }
        if eq(name, "ferrite.proxy") {
            return crate::admin::handle(self.proxy.clone(), args, self.resp3, self.loopback, &mut self.admin_authed)
                .map_or_else(Out::Now, Out::Later);
        }
        let meta = self.lookup(name);
        let Some(top) = meta else {
            if let Some(m) = &mut self.multi {
                m.failed = true;
            }
            return err(&unknown_command(args));
        };
        let meta: &'static CommandMeta = if !top.subcommands.is_empty() && args.len() >= 2 {
            match top.subcommand(&args[1]) {
                Some(s) => s,
                None => top,
            }
        } else {
            top
        };
        if !meta.arity_ok(args.len()) {
            if let Some(m) = &mut self.multi {
                m.failed = true;
            }
            return err(&format!("ERR wrong number of arguments for '{}' command", meta.name));
        }
        if self.subscribed() && !self.resp3 {
            let allowed =
                ["subscribe", "psubscribe", "ssubscribe", "unsubscribe", "punsubscribe", "sunsubscribe", "ping"];
            if !allowed.contains(&top.name.as_str()) {
                return err(&format!(
                    "ERR Can't execute '{}': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / RESET are allowed in this context",
                    meta.name
                ));
            }
        }
        let cmd = top.name.as_str();
        // Transaction control.
        match cmd {
            "multi" => {
                if self.multi.is_some() {
                    return err("ERR MULTI calls can not be nested");
                }
                self.multi = Some(Multi { queued: Vec::new(), failed: false });
                return ok();
            }
            "exec" => return self.exec(),
            "discard" => {
                if self.multi.take().is_none() {
                    return err("ERR DISCARD without MULTI");
                }
                return self.unwatch_reply(ok());
            }
            "watch" => {
                if self.multi.is_some() {
                    return err("ERR WATCH inside MULTI is not allowed");
                }
                return self.watch(args, meta);
            }
            "unwatch" if self.multi.is_none() => return self.unwatch_reply(ok()),
            _ => {}
        }
        if self.multi.is_some() {
            return self.queue(args, meta);
        }
        self.dispatch(cmd, args, meta)
    }

    fn dispatch(&mut self, cmd: &str, args: &[Bytes], meta: &'static CommandMeta) -> Out {
        let p = self.proxy.clone();
        match cmd {
            "ping" => {
                if args.len() > 2 {
                    return err("ERR wrong number of arguments for 'ping' command");
                }
                if self.subscribed() && !self.resp3 {
                    let msg = args.get(1).cloned().unwrap_or_default();
                    let mut b = BytesMut::from(&b"*2\r\n$4\r\npong\r\n"[..]);
                    b.extend_from_slice(&router::bulk(&msg));
                    return Out::Now(b.freeze());
                }
                return Out::Now(match args.get(1) {
                    Some(m) => router::bulk(m),
                    None => Bytes::from_static(b"+PONG\r\n"),
                });
            }
            "echo" => return Out::Now(router::bulk(&args[1])),
            "select" => {
                return match ferrite_resp::num::parse_i64(&args[1]) {
                    None => err("ERR value is not an integer or out of range"),
                    Some(0) => ok(),
                    Some(_) => err("ERR SELECT is not allowed in cluster mode"),
                };
            }
            "readonly" | "readwrite" | "asking" => return ok(),
            "client" => return self.client_cmd(args),
            "cluster" => return self.cluster_cmd(args),
            "info" => return Out::Now(self.info()),
            "subscribe" | "psubscribe" | "ssubscribe" => return self.subscribe(cmd, args),
            "unsubscribe" | "punsubscribe" | "sunsubscribe" => return self.unsubscribe(cmd, args),
            "publish" => {
                let slot = key_hash_slot(&args[1]);
                return Out::Later(p.exec_slot(slot, self.req(args, Some(meta), Vec::new())));
            }
            "pubsub" => return Out::Now(self.pubsub_info(args)),
            "dbsize" => return Out::Later(p.exec_fanout_owning(self.req(args, Some(meta), Vec::new()), Merge::SumInt)),
            "keys" => return Out::Later(p.exec_fanout(self.req(args, Some(meta), Vec::new()), Merge::Keys)),
            "flushall" | "flushdb" => {
                return Out::Later(p.exec_fanout(self.req(args, Some(meta), Vec::new()), Merge::AllOk))
            }
            "scan" => return Out::Later(p.exec_scan(args, self.req(args, Some(meta), Vec::new()))),
            "script" | "function" => {
                let sub = lower(&args[1]);
                let merge = match sub.as_str() {
                    "load" | "exists" | "list" | "dump" | "stats" => Merge::FirstOk,
                    _ => Merge::AllOk,
                };
                if sub == "help" {
                    return Out::Later(p.exec_default(self.req(args, Some(meta), Vec::new())));
                }
                return Out::Later(p.exec_fanout(self.req(args, Some(meta), Vec::new()), merge));
            }
            "wait" => {
                // WAIT blocks its connection: never on a shared one. On a dedicated connection it has no writes of
                // its own to wait for, so it reports the replicas of the default node.
                let (side, addr) = match p.default_target() {
                    (side, Some(a)) => (side, a),
                    (_, None) => return err("CLUSTERDOWN no backend node is known yet"),
                };
                let ded = self.ded();
                let (tx, rx) = oneshot::channel();
                let _ = ded.send(DedJob { side, addr, resp3: self.resp3, data: encode_cmd(args), replies: 1, tx });
                return Out::Later(Box::pin(async move {
                    match rx.await {
                        Ok(Ok(mut v)) => v.pop().unwrap_or_default(),
                        Ok(Err(e)) => resp::error(&format!("ERR {e}")),
                        Err(_) => resp::error("ERR internal proxy error"),
                    }
                }));
            }
            "monitor" | "sync" | "psync" | "replicaof" | "slaveof" | "shutdown" | "debug" | "swapdb" | "move"
            | "migrate" | "failover" => {
                return err(&format!("ERR '{}' is not supported through ferrite-proxy", meta.name));
            }
            _ => {}
        }
        self.route_keyed(cmd, args, meta)
    }

    /// Route a command by its keys: to the slot's owner, split over slots, or on a dedicated connection.
    fn route_keyed(&mut self, cmd: &str, args: &[Bytes], meta: &'static CommandMeta) -> Out {
        let p = self.proxy.clone();
        if self.last_simple_key && args.len() >= 2 && self.last_meta.is_some_and(|m| std::ptr::eq(m, meta)) {
            // One key, at args[1] (GET, SET, INCR, HSET, ...): no key-spec walk.
            let slot = key_hash_slot(&args[1]);
            if let Some(out) = self.try_fast(slot, meta, args) {
                return out;
            }
            self.flush_group();
            return Out::Later(p.exec_slot(slot, self.req(args, Some(meta), vec![args[1].clone()])));
        }
        self.flush_group();
        let pos = match get_keys(meta, args) {
            Ok(p) => p,
            Err(_) => return Out::Later(p.exec_default(self.req(args, Some(meta), Vec::new()))),
        };
        if pos.is_empty() {
            return Out::Later(p.exec_default(self.req(args, Some(meta), Vec::new())));
        }
        let keys: SmallVec<[Bytes; 2]> = pos.iter().map(|&i| args[i].clone()).collect();
        let slot = key_hash_slot(&keys[0]);
        let same = keys[1..].iter().all(|k| key_hash_slot(k) == slot);
        if !same {
            let split = match cmd {
                "mget" => Some(Split::MGet),
                "mset" => Some(Split::MSet),
                "del" | "unlink" | "exists" | "touch" => Some(Split::Sum),
                _ => None,
            };
            return match split {
                Some(s) => Out::Later(p.exec_split(s, args, self.req(args, Some(meta), keys.into_vec()))),
                None => err(CROSSSLOT),
            };
        }
        let blocking = match cmd {
            "xread" | "xreadgroup" => is_blocking_call(cmd, args),
            _ => meta.flags.has(Flags::BLOCKING),
        };
        if blocking {
            return Out::Later(self.blocking(slot, self.req(args, Some(meta), keys.into_vec())));
        }
        if let Some(out) = self.try_fast(slot, meta, args) {
            return out;
        }
        self.flush_group();
        Out::Later(p.exec_slot(slot, self.req(args, Some(meta), keys.into_vec())))
    }

    /// Blocking commands run on the client's dedicated connection to the slot owner.
    fn blocking(&mut self, slot: u16, req: Req) -> Fut {
        let ded = self.ded();
        let p = self.proxy.clone();
        Box::pin(async move {
            let Some((side, addr)) = p.wait_owner(slot).await else {
                return router::tryagain(slot);
            };
            p.metrics.requests.with_label_values(&[req.name, side.name()]).inc();
            let mut addr = addr;
            for _ in 0..5 {
                let (tx, rx) = oneshot::channel();
                let job = DedJob { side, addr: addr.clone(), resp3: req.resp3, data: req.data.clone(), replies: 1, tx };
                if ded.send(job).is_err() {
                    return resp::error("ERR internal proxy error: connection task gone");
                }
                let r = match rx.await {
                    Ok(Ok(mut v)) => v.pop().unwrap_or_default(),
                    Ok(Err(e)) => return resp::error(&format!("ERR {e}")),
                    Err(_) => return resp::error("ERR internal proxy error: connection task gone"),
                };
                if r.starts_with(b"-MOVED ") {
                    if let Some(to) = std::str::from_utf8(&r[1..r.len() - 2]).ok().and_then(|l| l.split(' ').nth(2)) {
                        if let Some(t) = p.topo_of(side) {
                            t.moved(slot, to);
                        }
                        addr = Arc::from(to);
                        continue;
                    }
                }
                if r.first() != Some(&b'-') && req.write {
                    // Blocking writes (BLMOVE...) are tracked like any write.
                    for k in req.keys.iter() {
                        if key_hash_slot(k) == slot {
                            p.slots.record_dirty(slot, k);
                        }
                    }
                    if p.slots.load().slots[slot as usize].mirror {
                        p.mirror_send(side.other(), slot, req.data.clone(), req.resp3);
                    }
                }
                return r;
            }
            resp::error("ERR too many redirects")
        })
    }

    // -- transactions -------------------------------------------------------------------------------------

    /// The node owning `slot` now (paused: the node it had before the pause).
    fn owner_now(&self, slot: u16) -> Option<(Side, Arc<str>)> {
        let e = self.proxy.slots.load().slots[slot as usize];
        let side = side_of(if e.state == State::Paused { e.from } else { e.state });
        let addr = self.proxy.topo_of(side)?.node(slot)?;
        Some((side, addr))
    }

    fn watch(&mut self, args: &[Bytes], _meta: &CommandMeta) -> Out {
        let slot = key_hash_slot(&args[1]);
        if args[1..].iter().any(|k| key_hash_slot(k) != slot) {
            return err(CROSSSLOT);
        }
        let Some((side, addr)) = self.owner_now(slot) else {
            return err("CLUSTERDOWN Hash slot not served");
        };
        if let Some(pin) = &self.pin {
            if pin.side != side || pin.addr != addr {
                return err(CROSSSLOT);
            }
        } else {
            self.pin = Some(Pin { slot, side, addr: addr.clone() });
        }
        self.watching = true;
        let ded = self.ded();
        let (tx, rx) = oneshot::channel();
        let _ = ded.send(DedJob { side, addr, resp3: self.resp3, data: encode_cmd(args), replies: 1, tx });
        Out::Later(Box::pin(async move {
            match rx.await {
                Ok(Ok(mut v)) => v.pop().unwrap_or_default(),
                Ok(Err(e)) => resp::error(&format!("ERR {e}")),
                Err(_) => resp::error("ERR internal proxy error"),
            }
        }))
    }

    /// Clear WATCH state (UNWATCH on the pinned connection) and reply `reply`.
    fn unwatch_reply(&mut self, reply: Out) -> Out {
        if let (true, Some(pin)) = (self.watching, self.pin.clone()) {
            let ded = self.ded();
            let (tx, _rx) = oneshot::channel();
            let _ = ded.send(DedJob {
                side: pin.side,
                addr: pin.addr,
                resp3: self.resp3,
                data: encode_cmd(&["UNWATCH"]),
                replies: 1,
                tx,
            });
        }
        self.watching = false;
        self.pin = None;
        reply
    }

    fn queue(&mut self, args: &[Bytes], meta: &CommandMeta) -> Out {
        let top = meta.name.split('|').next().unwrap_or("");
        if matches!(top, "subscribe" | "psubscribe" | "ssubscribe" | "unsubscribe" | "punsubscribe" | "sunsubscribe") {
            // Allowed by Redis inside MULTI but meaningless through a proxy.
            if let Some(m) = &mut self.multi {
                m.failed = true;
            }
            return err("ERR pub/sub commands are not supported inside MULTI by ferrite-proxy");
        }
        let keys: Vec<Bytes> = match get_keys(meta, args) {
            Ok(p) => p.iter().map(|&i| args[i].clone()).collect(),
            Err(_) => Vec::new(),
        };
        if let Some(k0) = keys.first() {
            let slot = key_hash_slot(k0);
            if keys.iter().any(|k| key_hash_slot(k) != slot) {
                if let Some(m) = &mut self.multi {
                    m.failed = true;
                }
                return err(CROSSSLOT);
            }
            match self.owner_now(slot) {
                None => {
                    if let Some(m) = &mut self.multi {
                        m.failed = true;
                    }
                    return err("CLUSTERDOWN Hash slot not served");
                }
                Some((side, addr)) => match &self.pin {
                    Some(p) if p.side != side || p.addr != addr => {
                        if let Some(m) = &mut self.multi {
                            m.failed = true;
                        }
                        return err(CROSSSLOT);
                    }
                    Some(_) => {}
                    None => self.pin = Some(Pin { slot, side, addr }),
                },
            }
        }
        let write = meta.flags.has(Flags::WRITE);
        if let Some(m) = &mut self.multi {
            m.queued.push((encode_cmd(args), write, keys));
        }
        Out::Now(Bytes::from_static(b"+QUEUED\r\n"))
    }

    fn exec(&mut self) -> Out {
        let Some(m) = self.multi.take() else { return err("ERR EXEC without MULTI") };
        let pin = self.pin.take();
        let watching = std::mem::replace(&mut self.watching, false);
        if m.failed {
            if watching {
                self.pin = pin;
                self.watching = true;
                self.unwatch_reply(Out::Now(Bytes::new()));
            }
            return err("EXECABORT Transaction discarded because of previous errors.");
        }
        let p = self.proxy.clone();
        let ded = self.ded();
        let resp3 = self.resp3;
        Out::Later(Box::pin(async move {
            // The owner at EXEC time (waiting out a pause); a slot that moved since WATCH aborts like a touched key.
            // The in-flight guard makes a pause wait for this transaction's reply, like any routed request.
            let mut _guard = crate::slots::InflightGuard::none();
            let (slot, side, addr) = match &pin {
                Some(pin) => {
                    let mut found = None;
                    for _ in 0..3 {
                        let Some((side, addr)) = p.wait_owner(pin.slot).await else {
                            return router::tryagain(pin.slot);
                        };
                        let (e, g) = p.slots.route(pin.slot);
                        if e.state != State::Paused && side_of(e.state) == side {
                            _guard = g;
                            found = Some((side, addr));
                            break;
                        }
                    }
                    let Some((side, addr)) = found else { return router::tryagain(pin.slot) };
                    if watching && (side != pin.side || addr != pin.addr) {
                        return Bytes::from_static(if resp3 { b"_\r\n" } else { b"*-1\r\n" });
                    }
                    (Some(pin.slot), side, addr)
                }
                None => match p.default_target() {
                    (side, Some(a)) => (None, side, a),
                    (_, None) => return resp::error("CLUSTERDOWN no backend node is known yet"),
                },
            };
            let mut data = BytesMut::new();
            data.extend_from_slice(&encode_cmd(&["MULTI"]));
            for (c, _, _) in &m.queued {
                data.extend_from_slice(c);
            }
            data.extend_from_slice(&encode_cmd(&["EXEC"]));
            let n = m.queued.len() + 2;
            p.metrics.requests.with_label_values(&["exec", side.name()]).inc();
            let (tx, rx) = oneshot::channel();
            let data = data.freeze();
            let _ = ded.send(DedJob { side, addr, resp3, data: data.clone(), replies: n, tx });
            let r = match rx.await {
                Ok(Ok(mut v)) => v.pop().unwrap_or_default(),
                Ok(Err(e)) => return resp::error(&format!("ERR {e}")),
                Err(_) => return resp::error("ERR internal proxy error"),
            };
            if let Some(slot) = slot {
                if matches!(r.first(), Some(b'*')) && !r.starts_with(b"*-1") && m.queued.iter().any(|q| q.1) {
                    for (_, w, keys) in &m.queued {
                        if *w {
                            for k in keys {
                                p.slots.record_dirty(key_hash_slot(k), k);
                            }
                        }
                    }
                    if p.slots.load().slots[slot as usize].mirror {
                        let mut md = BytesMut::new();
                        md.extend_from_slice(&encode_cmd(&["MULTI"]));
                        for (c, w, _) in &m.queued {
                            if *w {
                                md.extend_from_slice(c);
                            }
                        }
                        md.extend_from_slice(&encode_cmd(&["EXEC"]));
                        p.mirror_send_multi(
                            side.other(),
                            slot,
                            md.freeze(),
                            resp3,
                            m.queued.iter().filter(|q| q.1).count() + 2,
                        );
                    }
                }
            }
            r
        }))
    }

    // -- pub/sub ------------------------------------------------------------------------------------------

    fn subscribe(&mut self, cmd: &str, args: &[Bytes]) -> Out {
        let kind = match cmd {
            "subscribe" => Kind::Channel,
            "psubscribe" => Kind::Pattern,
            _ => Kind::Shard,
        };
        let names: Vec<Bytes> = args[1..].to_vec();
        if kind == Kind::Shard {
            let s = key_hash_slot(&names[0]);
            if names.iter().any(|n| key_hash_slot(n) != s) {
                return err(CROSSSLOT);
            }
        }
        for n in &names {
            self.subs[kind_idx(kind)].insert(n.clone());
        }
        if self.pubsub.is_none() {
            self.pubsub = Some(PubSubHandle::start(self.proxy.clone(), self.resp3, self.push_tx.clone()));
        }
        let (tx, rx) = oneshot::channel();
        if let Some(ps) = &self.pubsub {
            let _ = ps.tx.send(PsCmd::Sub { kind, names, reply: tx });
        }
        Out::Ctrl(Box::pin(async move { rx.await.unwrap_or_else(|_| resp::error("ERR internal proxy error")) }))
    }

    fn unsubscribe(&mut self, cmd: &str, args: &[Bytes]) -> Out {
        let kind = match cmd {
            "unsubscribe" => Kind::Channel,
            "punsubscribe" => Kind::Pattern,
            _ => Kind::Shard,
        };
        let names: Vec<Bytes> = args[1..].to_vec();
        let Some(ps) = &self.pubsub else {
            // Nothing subscribed: Redis still confirms.
            let kindname = &cmd.to_string();
            let mut b = BytesMut::new();
            if names.is_empty() {
                b.extend_from_slice(&confirm(self.resp3, kindname, None, 0));
            }
            for n in &names {
                b.extend_from_slice(&confirm(self.resp3, kindname, Some(n), 0));
            }
            return Out::Now(b.freeze());
        };
        let (tx, rx) = oneshot::channel();
        let _ = ps.tx.send(PsCmd::Unsub { kind, names: names.clone(), reply: tx });
        if names.is_empty() {
            self.subs[kind_idx(kind)].clear();
        } else {
            for n in &names {
                self.subs[kind_idx(kind)].remove(n);
            }
        }
        Out::Ctrl(Box::pin(async move { rx.await.unwrap_or_else(|_| resp::error("ERR internal proxy error")) }))
    }

    fn pubsub_info(&self, args: &[Bytes]) -> Bytes {
        let sub = lower(&args[1]);
        let mut o = ReplyBuf::new(self.resp3);
        let (ch, pat, shard) = self.proxy.pubsub_snapshot();
        let pattern = args.get(2);
        let matches = |c: &[u8]| pattern.is_none_or(|p| ferrite::glob::glob_match(p, c, false));
        match sub.as_str() {
            "channels" | "shardchannels" => {
                let src = if sub == "channels" { &ch } else { &shard };
                let v: Vec<&Bytes> = src.keys().filter(|c| matches(c)).collect();
                o.array(v.len());
                for c in v {
                    o.bulk(c);
                }
            }
            "numsub" | "shardnumsub" => {
                let src = if sub == "numsub" { &ch } else { &shard };
                o.array((args.len() - 2) * 2);
                for c in &args[2..] {
                    o.bulk(c);
                    o.int(src.get(c).copied().unwrap_or(0) as i64);
                }
            }
            "numpat" => o.int(pat as i64),
            _ => o.error(&format!("ERR unknown subcommand '{}'. Try PUBSUB HELP.", String::from_utf8_lossy(&args[1]))),
        }
        o.buf.freeze()
    }

    // -- connection commands ------------------------------------------------------------------------------

    fn check_password(&self, user: Option<&[u8]>, pass: &[u8]) -> bool {
        let cfg = &self.proxy.cfg;
        match user {
            // The default user: `requirepass`; without it the default user has no password when no users are
            // configured (any password works, as in Redis), and is disabled when only named users are.
            None | Some(b"default") => match &cfg.requirepass {
                Some(p) => p.as_bytes() == pass,
                None => cfg.users.is_empty(),
            },
            Some(u) => cfg.users.iter().any(|(n, p)| n.as_bytes() == u && p.as_bytes() == pass),
        }
    }

    fn auth(&mut self, args: &[Bytes]) -> Out {
        let cfg = &self.proxy.cfg;
        match args.len() {
            2 => {
                if cfg.requirepass.is_none() {
                    return err("ERR AUTH <password> called without any password configured for the default user. Are you sure your configuration is correct?");
                }
                if self.check_password(None, &args[1]) {
                    self.authed = true;
                    return ok();
                }
            }
            3 => {
                if self.check_password(Some(&args[1]), &args[2]) {
                    self.authed = true;
                    return ok();
                }
            }
            _ => return err("ERR syntax error"),
        }
        tracing::info!(client = self.id, "client authentication failed");
        err("WRONGPASS invalid username-password pair or user is disabled.")
    }

    fn hello(&mut self, args: &[Bytes]) -> Out {
        let mut ver = None;
        let mut i = 1;
        if args.len() >= 2 {
            match ferrite_resp::num::parse_i64(&args[1]) {
                None => return err("ERR Protocol version is not an integer or out of range"),
                Some(v) if !(2..=3).contains(&v) => return err("NOPROTO unsupported protocol version"),
                Some(v) => ver = Some(v),
            }
            i = 2;
        }
        let mut auth = None;
        let mut setname = None;
        while i < args.len() {
            let more = args.len() - i - 1;
            if eq(&args[i], "auth") && more >= 2 {
                auth = Some((args[i + 1].clone(), args[i + 2].clone()));
                i += 3;
            } else if eq(&args[i], "setname") && more >= 1 {
                setname = Some(args[i + 1].clone());
                i += 2;
            } else {
                return err(&format!("ERR Syntax error in HELLO option '{}'", String::from_utf8_lossy(&args[i])));
            }
        }
        if let Some((u, p)) = auth {
            if !self.check_password(Some(&u), &p) {
                return err("WRONGPASS invalid username-password pair or user is disabled.");
            }
            self.authed = true;
        }
        if !self.authed {
            return err("NOAUTH HELLO must be called with the client already authenticated, otherwise the HELLO <proto> AUTH <user> <pass> option can be used to authenticate the client and select the RESP protocol version at the same time");
        }
        if let Some(n) = setname {
            if !n.iter().all(|&c| (b'!'..=b'~').contains(&c)) {
                return err("ERR Client names cannot contain spaces, newlines or special characters.");
            }
            self.name = (!n.is_empty()).then_some(n);
        }
        if let Some(v) = ver {
            if self.resp3 != (v == 3) {
                self.barrier = true;
            }
            self.resp3 = v == 3;
        }
        let mut o = ReplyBuf::new(self.resp3);
        o.map(7);
        o.bulk(b"server");
        o.bulk(b"redis");
        o.bulk(b"version");
        o.bulk(table().redis_version.as_bytes());
        o.bulk(b"proto");
        o.int(if self.resp3 { 3 } else { 2 });
        o.bulk(b"id");
        o.int(self.id as i64);
        o.bulk(b"mode");
        o.bulk(b"standalone");
        o.bulk(b"role");
        o.bulk(b"master");
        o.bulk(b"modules");
        o.array(0);
        Out::Now(o.buf.freeze())
    }

    fn reset(&mut self) -> Out {
        self.multi = None;
        self.unwatch_reply(Out::Now(Bytes::new()));
        if self.resp3 {
            self.barrier = true;
        }
        self.resp3 = false;
        self.name = None;
        self.pubsub = None;
        self.subs = Default::default();
        self.authed = !self.proxy.auth_required();
        self.admin_authed = false;
        Out::Now(Bytes::from_static(b"+RESET\r\n"))
    }

    fn client_cmd(&mut self, args: &[Bytes]) -> Out {
        let sub = lower(&args[1]);
        match sub.as_str() {
            "id" => Out::Now(router::int_reply(self.id as i64)),
            "setname" => {
                let n = &args[2];
                if !n.iter().all(|&c| (b'!'..=b'~').contains(&c)) {
                    return err("ERR Client names cannot contain spaces, newlines or special characters.");
                }
                self.name = (!n.is_empty()).then(|| n.clone());
                ok()
            }
            "getname" => Out::Now(match &self.name {
                Some(n) => router::bulk(n),
                None => Bytes::from_static(if self.resp3 { b"_\r\n" } else { b"$-1\r\n" }),
            }),
            "setinfo" | "no-evict" | "no-touch" => ok(),
            "info" => Out::Now(router::bulk(self.client_line().as_bytes())),
            _ => err(&format!("ERR CLIENT {} is not supported through ferrite-proxy", sub.to_ascii_uppercase())),
        }
    }

    fn client_line(&self) -> String {
        format!(
            "id={} addr=? laddr={} name={} db=0 multi={} resp={}\n",
            self.id,
            self.local,
            self.name.as_ref().map(|n| String::from_utf8_lossy(n).to_string()).unwrap_or_default(),
            self.multi.as_ref().map_or(-1, |m| m.queued.len() as i64),
            if self.resp3 { 3 } else { 2 }
        )
    }

    fn cluster_cmd(&mut self, args: &[Bytes]) -> Out {
        let sub = lower(&args[1]);
        let ip = self.local.ip().to_string();
        let port = self.local.port() as i64;
        let id = self.proxy.node_id.clone();
        let mut o = ReplyBuf::new(self.resp3);
        match sub.as_str() {
            "myid" => o.bulk(id.as_bytes()),
            "keyslot" => o.int(key_hash_slot(&args[2]) as i64),
            "slots" => {
                o.array(1);
                o.array(3);
                o.int(0);
                o.int(16383);
                o.array(4);
                o.bulk(ip.as_bytes());
                o.int(port);
                o.bulk(id.as_bytes());
                // Redis 7.0's additional networking metadata (none).
                o.map(0);
            }
            "shards" => {
                o.array(1);
                o.map(2);
                o.bulk(b"slots");
                o.array(2);
                o.int(0);
                o.int(16383);
                o.bulk(b"nodes");
                o.array(1);
                o.map(7);
                o.bulk(b"id");
                o.bulk(id.as_bytes());
                o.bulk(b"port");
                o.int(port);
                o.bulk(b"ip");
                o.bulk(ip.as_bytes());
                o.bulk(b"endpoint");
                o.bulk(ip.as_bytes());
                o.bulk(b"role");
                o.bulk(b"master");
                o.bulk(b"replication-offset");
                o.int(0);
                o.bulk(b"health");
                o.bulk(b"online");
            }
            "nodes" => {
                let line = format!("{id} {ip}:{port}@{} myself,master - 0 0 1 connected 0-16383\n", port + 10000);
                o.verbatim(b"txt", line.as_bytes());
            }
            "info" => {
                let text = format!(
                    "cluster_enabled:1\r\ncluster_state:ok\r\ncluster_slots_assigned:16384\r\ncluster_slots_ok:16384\r\n\
                     cluster_slots_pfail:0\r\ncluster_slots_fail:0\r\ncluster_known_nodes:1\r\ncluster_size:1\r\n\
                     cluster_current_epoch:1\r\ncluster_my_epoch:1\r\ncluster_stats_messages_sent:0\r\n\
                     cluster_stats_messages_received:0\r\ntotal_cluster_links_buffer_limit_exceeded:0\r\n\
                     ferrite_proxy_config_epoch:{}\r\n",
                    self.proxy.slots.epoch()
                );
                o.verbatim(b"txt", text.as_bytes());
            }
            "countkeysinslot" | "getkeysinslot" => {
                let Some(slot) = ferrite_resp::num::parse_i64(&args[2]).filter(|s| (0..16384).contains(s)) else {
                    return err("ERR Invalid slot");
                };
                let req = self.req(args, table().get_full(&format!("cluster|{sub}")), Vec::new());
                return Out::Later(self.proxy.exec_slot(slot as u16, req));
            }
            _ => {
                return err(&format!(
                    "ERR CLUSTER {} is not supported by ferrite-proxy (it presents itself as a one-node cluster)",
                    sub.to_ascii_uppercase()
                ))
            }
        }
        Out::Now(o.buf.freeze())
    }

    fn info(&self) -> Bytes {
        let p = &self.proxy;
        let m = &p.metrics;
        let text = format!(
            "# Server\r\nredis_version:{}\r\nredis_mode:cluster\r\nferrite_proxy_version:{}\r\nprocess_id:{}\r\n\
             tcp_port:{}\r\nuptime_in_seconds:{}\r\n\r\n# Clients\r\nconnected_clients:{}\r\n\r\n\
             # Stats\r\ntotal_connections_received:{}\r\n\r\n# Proxy\r\nconfig_epoch:{}\r\nupstream_configured:{}\r\n\
             upstream_masters:{}\r\nferrite_nodes:{}\r\npaused_requests:{}\r\n\r\n# Cluster\r\ncluster_enabled:1\r\n",
            table().redis_version,
            env!("CARGO_PKG_VERSION"),
            std::process::id(),
            self.local.port(),
            p.started.elapsed().as_secs(),
            m.client_connections.get(),
            m.clients_accepted.get(),
            p.slots.epoch(),
            p.upstream.is_some() as u8,
            p.upstream.as_ref().map_or(0, |u| u.masters().len()),
            p.ferrite.masters().len(),
            p.slots.paused_now(),
        );
        let mut o = ReplyBuf::new(self.resp3);
        o.verbatim(b"txt", text.as_bytes());
        o.buf.freeze()
    }
}

/// XREAD/XREADGROUP are blocking only with BLOCK.
/// Commands `Client::handle` and `Client::dispatch` treat specially (connection state, fan-out, refusals):
/// everything else with keys is routed by its keys.
const SPECIAL: &[&str] = &[
    "auth",
    "hello",
    "quit",
    "reset",
    "ferrite.proxy",
    "multi",
    "exec",
    "discard",
    "watch",
    "unwatch",
    "ping",
    "echo",
    "select",
    "readonly",
    "readwrite",
    "asking",
    "client",
    "cluster",
    "info",
    "subscribe",
    "psubscribe",
    "ssubscribe",
    "unsubscribe",
    "punsubscribe",
    "sunsubscribe",
    "publish",
    "pubsub",
    "dbsize",
    "keys",
    "flushall",
    "flushdb",
    "scan",
    "script",
    "function",
    "wait",
    "monitor",
    "sync",
    "psync",
    "replicaof",
    "slaveof",
    "shutdown",
    "debug",
    "swapdb",
    "move",
    "migrate",
    "failover",
    "xread",
    "xreadgroup",
];

/// A command routed by its keys with no special handling: no subcommands, not blocking, has key specs, not in
/// [`SPECIAL`].
fn is_plain(m: &CommandMeta) -> bool {
    m.subcommands.is_empty()
        && !m.flags.has(Flags::BLOCKING)
        && !m.key_specs.is_empty()
        && !SPECIAL.contains(&m.name.as_str())
}

/// The command's only key is `args[1]` (one key spec: index 1, a range of one key).
fn has_simple_key(m: &CommandMeta) -> bool {
    use ferrite_commands::table::{BeginSearch, FindKeys};
    m.key_specs.len() == 1
        && matches!(m.key_specs[0].begin, BeginSearch::Index(1))
        && matches!(m.key_specs[0].find, FindKeys::Range { lastkey: 0, .. })
        && !m.key_specs[0].has_flag("INCOMPLETE")
}

fn is_blocking_call(cmd: &str, args: &[Bytes]) -> bool {
    matches!(cmd, "xread" | "xreadgroup") && args.iter().any(|a| eq(a, "block"))
}

/// Write as much of `out` as the socket takes without waiting (the rest stays in `out`).
fn write_now(wr: &tokio::net::tcp::OwnedWriteHalf, out: &mut BytesMut) -> std::io::Result<()> {
    while !out.is_empty() {
        match wr.try_write(out) {
            Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
            Ok(n) => out.advance(n),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Ok(()),
            Err(e) => return Err(e),
        }
    }
    out.clear();
    if out.capacity() > 1 << 20 {
        *out = BytesMut::with_capacity(16 * 1024);
    }
    Ok(())
}

/// The replies of a group delivery, one per request: the frames of `r`, or its failure for each.
fn split_delivery(r: Result<Bytes, BackendError>, n: u32) -> Vec<Result<Bytes, BackendError>> {
    let n = n as usize;
    match r {
        Ok(b) if n == 1 => vec![Ok(b)],
        Ok(b) => {
            let mut v = Vec::with_capacity(n);
            let mut at = 0;
            let mut sc = FrameScanner::default();
            while v.len() < n {
                match sc.scan(&b[at..]) {
                    Ok(Some(len)) => {
                        sc.reset();
                        v.push(Ok(b.slice(at..at + len)));
                        at += len;
                    }
                    _ => break,
                }
            }
            while v.len() < n {
                v.push(Err(BackendError::Lost("incomplete reply group".into())));
            }
            v
        }
        Err(e) => vec![Err(e); n],
    }
}

/// Turn a fast-path reply into the client's reply: plain replies as they are; redirects, retryable errors and
/// connection failures go on through the general path (a future that completes the entry later).
fn fast_reply(
    proxy: &Arc<Proxy>,
    resp3: bool,
    f: FastInfo,
    got: Result<Bytes, BackendError>,
) -> Result<Bytes, router::Fut> {
    if let Ok(frame) = &got {
        let special = [&b"-MOVED "[..], b"-ASK ", b"-TRYAGAIN", b"-CLUSTERDOWN", b"-NOAUTH", b"-WRONGPASS"];
        if frame.first() != Some(&b'-') || !special.iter().any(|p| frame.starts_with(p)) {
            proxy.slots.done(f.slot);
            if frame.first() == Some(&b'-') {
                proxy.metrics.errors.with_label_values(&[f.name, f.side.name(), "backend"]).inc();
            }
            return Ok(got.unwrap_or_default());
        }
    }
    // The general path needs the keys (write tracking may have started meanwhile): read them from the request.
    let mut args = Vec::new();
    let _ = resp::split_request(&mut BytesMut::from(&f.data[..]), &mut args, u64::MAX, usize::MAX);
    let keys: Arc<[Bytes]> = match table().get(f.name.as_bytes()) {
        Some(meta) => {
            get_keys(meta, &args).map(|pos| pos.iter().map(|&i| args[i].clone()).collect()).unwrap_or_default()
        }
        None => Arc::from(Vec::new()),
    };
    let req = Req { data: f.data, name: f.name, write: f.write, readonly: f.readonly, resp3, keys };
    let p = proxy.clone();
    let guard = InflightGuard::adopt(proxy.slots.clone(), f.slot);
    let (side, slot, addr) = (f.side, f.slot, f.addr);
    Err(Box::pin(async move {
        let r = p.finish_got(side, slot, req, addr, got).await;
        drop(guard);
        r
    }))
}

/// Serve one client connection until it closes, sends QUIT, hits a protocol error, or the proxy shuts down.
pub async fn handle(proxy: Arc<Proxy>, sock: TcpStream, peer: SocketAddr) {
    let _ = sock.set_nodelay(true);
    let local = sock.local_addr().unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], 0)));
    let (mut rd, mut wr) = sock.into_split();
    let (push_tx, mut push_rx) = mpsc::unbounded_channel::<Bytes>();
    let mut cl = Client::new(proxy.clone(), peer, local, push_tx);
    let inbox = cl.inbox.clone();
    let limits = Limits { max_bulk_len: proxy.cfg.proto_max_bulk_len, ..Limits::default() };
    let mut parser = RequestParser::new(limits);
    parser.authenticated = cl.authed;
    let mut inbuf = BytesMut::with_capacity(16 * 1024);
    let mut out = BytesMut::with_capacity(16 * 1024);
    // Requests whose replies are not written yet, in request order; `head` is the sequence number of the first.
    let mut queue: VecDeque<Entry> = VecDeque::new();
    let mut head: u64 = 0;
    // Replies computed by futures (the general path), tagged with their sequence numbers.
    let mut slow: FuturesUnordered<futures_util::future::BoxFuture<'static, (u64, Bytes)>> = FuturesUnordered::new();
    let mut fast_waiting = 0usize;
    let mut got: Vec<Delivery> = Vec::new();
    let mut ctrl_pending = 0usize;
    let mut args: Vec<Bytes> = Vec::new();
    let mut deferred: Option<Vec<Bytes>> = None;
    let mut closing = false;
    let mut pushes = false;
    let mut shutdown = proxy.shutdown_rx();
    // Created once: a `changed()` future made in every loop turn registers and unregisters a waiter each time.
    let shutdown_changed = shutdown.changed();
    tokio::pin!(shutdown_changed);
    proxy.metrics.client_connections.inc();
    proxy.metrics.clients_accepted.inc();
    // Put a reply in its place in the queue.
    fn complete(queue: &mut VecDeque<Entry>, head: u64, seq: u64, r: Bytes) {
        if let Some(e) = seq.checked_sub(head).and_then(|i| queue.get_mut(i as usize)) {
            e.reply = Some(r);
        }
    }
    loop {
        // Handle every complete request in the buffer.
        while !closing && queue.len() < MAX_PENDING {
            if cl.barrier {
                if !queue.is_empty() {
                    break;
                }
                cl.barrier = false;
            }
            // A request that runs on a dedicated connection (EXEC, WATCH, blocking commands) starts only when every
            // earlier reply arrived, and later requests wait for its reply: as on a single Redis connection.
            let from_deferred = match deferred.take() {
                Some(d) => {
                    if !queue.is_empty() {
                        deferred = Some(d);
                        break;
                    }
                    args = d;
                    true
                }
                None => false,
            };
            cl.raw = None;
            if !from_deferred
                && !parser.in_progress()
                && cl.authed
                && cl.multi.is_none()
                && !cl.barrier
                && !cl.subscribed()
            {
                let n = cl.fast_run(&mut inbuf, &mut queue, head);
                if n > 0 {
                    fast_waiting += n;
                    continue;
                }
            }
            if !from_deferred {
                // A complete request is taken without copying; anything else (partial, inline, malformed) goes
                // through the incremental parser, which keeps the arguments of an incomplete request in `args`
                // between reads.
                if !parser.in_progress() && cl.authed {
                    cl.raw = resp::split_request(&mut inbuf, &mut args, proxy.cfg.proto_max_bulk_len, 1024);
                }
                let parsed = if cl.raw.is_some() { Ok(Parsed::Command) } else { parser.parse(&mut inbuf, &mut args) };
                match parsed {
                    Ok(Parsed::Command) => {}
                    Ok(Parsed::Incomplete) => break,
                    Err(e) => {
                        tracing::debug!(client = cl.id, error = %e.message(), "client protocol error");
                        queue.push_back(Entry {
                            reply: Some(resp::error(&format!("ERR {}", e.message()))),
                            ctrl: false,
                            fast: None,
                        });
                        closing = true;
                        break;
                    }
                }
            }
            let isolated = cl.isolated(&args);
            if isolated && !queue.is_empty() {
                deferred = Some(std::mem::take(&mut args));
                break;
            }
            cl.next_seq = head + queue.len() as u64;
            let r = cl.handle(&args);
            if isolated {
                cl.barrier = true;
            }
            if let Out::Now(b) | Out::Close(b) = &r {
                // Answered by the proxy itself.
                let name = cl.lookup(&args[0]).map_or("unknown", |m| m.name.as_str());
                proxy.metrics.requests.with_label_values(&[name, "proxy"]).inc();
                if b.first() == Some(&b'-') {
                    proxy.metrics.errors.with_label_values(&[name, "proxy", "proxy"]).inc();
                }
            }
            args.clear();
            cl.raw = None;
            parser.authenticated = cl.authed;
            let seq = cl.next_seq;
            let entry = match r {
                Out::Now(b) => Entry { reply: Some(b), ctrl: false, fast: None },
                Out::Close(b) => {
                    closing = true;
                    Entry { reply: Some(b), ctrl: false, fast: None }
                }
                Out::Later(f) => {
                    slow.push(Box::pin(f.map(move |b| (seq, b))));
                    Entry { reply: None, ctrl: false, fast: None }
                }
                Out::Ctrl(f) => {
                    ctrl_pending += 1;
                    slow.push(Box::pin(f.map(move |b| (seq, b))));
                    Entry { reply: None, ctrl: true, fast: None }
                }
                Out::Fast(info) => {
                    fast_waiting += 1;
                    Entry { reply: None, ctrl: false, fast: Some(Fast::Own(info)) }
                }
            };
            queue.push_back(entry);
        }
        cl.flush_group();
        // The parse loop stopped at the pending limit: once replies make room, the requests still buffered must be
        // handled without waiting for more input (the client may have sent everything already).
        let stalled = queue.len() >= MAX_PENDING;
        // Take the replies that are already in, then write every reply that is next in order.
        loop {
            let mut progress = false;
            if fast_waiting > 0 {
                std::mem::swap(&mut got, &mut *inbox.replies.lock());
                for d in got.drain(..) {
                    let Some(base) = d.seq.checked_sub(head) else { continue };
                    let base = base as usize;
                    if !d.err {
                        // Plain replies (the common case): the whole group's frames are the first request's reply,
                        // the others' are empty.
                        let Ok(b) = d.r else { continue };
                        let mut whole = Some(b);
                        for k in 0..d.n as usize {
                            let Some(e) = queue.get_mut(base + k) else { break };
                            let Some(info) = e.fast.take() else { continue };
                            proxy.slots.done(info.slot());
                            fast_waiting -= 1;
                            progress = true;
                            e.reply = Some(whole.take().unwrap_or_default());
                        }
                        continue;
                    }
                    // Some reply is an error (maybe a redirect) or the connection failed: each request on its own.
                    for (k, r) in split_delivery(d.r, d.n).into_iter().enumerate() {
                        let seq = d.seq + k as u64;
                        let Some(e) = queue.get_mut(base + k) else { break };
                        let Some(fast) = e.fast.take() else { continue };
                        fast_waiting -= 1;
                        progress = true;
                        let slot = fast.slot();
                        let Some(info) = cl.resolve(seq, fast) else {
                            proxy.slots.done(slot);
                            e.reply = Some(resp::error("ERR internal proxy error: request bytes lost"));
                            continue;
                        };
                        match fast_reply(&proxy, cl.resp3, info, r) {
                            Ok(b) => e.reply = Some(b),
                            Err(f) => slow.push(Box::pin(f.map(move |b| (seq, b)))),
                        }
                    }
                }
            }
            while let Some(Some((seq, r))) = slow.next().now_or_never() {
                complete(&mut queue, head, seq, r);
                progress = true;
            }
            if !progress {
                break;
            }
        }
        while queue.front().is_some_and(|e| e.reply.is_some()) {
            let Some(e) = queue.pop_front() else { break };
            head += 1;
            if let Some(r) = e.reply {
                out.extend_from_slice(&r);
            }
            if e.ctrl {
                ctrl_pending -= 1;
            }
        }
        // Runs whose replies are all written.
        while cl.runs.front().is_some_and(|r| r.first + u64::from(r.n) <= head) {
            cl.runs.pop_front();
        }
        // Pushed messages exist only once the client used pub/sub (its sender is handed out then): other clients
        // skip the channel entirely.
        pushes |= cl.pubsub.is_some();
        if ctrl_pending == 0 && pushes {
            while let Ok(m) = push_rx.try_recv() {
                out.extend_from_slice(&m);
            }
        }
        // Published before the replies are written: a client that read its reply sees it counted.
        cl.publish_counts();
        // Write what the socket takes now; the rest waits for the client to read while requests are still read
        // and answered, as Redis does (waiting here deadlocks with a client that sends a whole pipeline before
        // reading any reply, once both directions outgrow the socket buffers).
        if !out.is_empty() && write_now(&wr, &mut out).is_err() {
            break;
        }
        if closing && queue.is_empty() {
            // Every reply is written before the connection closes.
            if !out.is_empty() {
                let _ = wr.write_all(&out).await;
            }
            break;
        }
        if stalled && queue.len() < MAX_PENDING && !closing {
            continue;
        }
        if (cl.barrier || deferred.is_some()) && queue.is_empty() && !closing {
            // Every earlier reply is written: go on with the buffered requests.
            cl.barrier = false;
            continue;
        }
        if pushes && push_rx.len() > MAX_PUSH_BACKLOG {
            // Like Redis's pub/sub output buffer limit: a subscriber that does not read is disconnected.
            tracing::warn!(client = cl.id, backlog = push_rx.len(), "closing a pub/sub client that does not read");
            break;
        }
        let inbox_ready = futures_util::future::poll_fn(|cx| {
            inbox.waker.register(cx.waker());
            if inbox.replies.lock().is_empty() {
                std::task::Poll::Pending
            } else {
                std::task::Poll::Ready(())
            }
        });
        tokio::select! {
            r = slow.next(), if !slow.is_empty() => {
                if let Some((seq, r)) = r {
                    complete(&mut queue, head, seq, r);
                }
            }
            _ = inbox_ready, if fast_waiting > 0 => {}
            m = push_rx.recv(), if ctrl_pending == 0 && pushes => {
                if let Some(m) = m {
                    out.extend_from_slice(&m);
                }
            }
            // While a dedicated-connection request is in flight, reading continues only a little (to notice a
            // client that goes away while blocked).
            r = rd.read_buf(&mut inbuf), if !closing && queue.len() < MAX_PENDING
                && ((!cl.barrier && deferred.is_none()) || inbuf.len() < 64 * 1024) => {
                match r {
                    // The client closed its side: a blocked client is gone (as in Redis); otherwise the replies to
                    // what it already sent are still written.
                    Ok(0) if !cl.barrier && deferred.is_none() => closing = true,
                    Ok(0) | Err(_) => break,
                    Ok(_) => {
                        if inbuf.len() == inbuf.capacity() {
                            // The read filled the buffer: the client sends big batches, read them in fewer calls.
                            inbuf.reserve(64 * 1024);
                        } else if inbuf.capacity() - inbuf.len() < 4096 {
                            inbuf.reserve(16 * 1024);
                        }
                    }
                }
            }
            // The client reads again: write more of its pending replies.
            r = wr.writable(), if !out.is_empty() => {
                if r.is_err() {
                    break;
                }
            }
            _ = &mut shutdown_changed, if !closing => {
                // Graceful shutdown: finish what was received, then close.
                closing = true;
            }
        }
    }
    cl.publish_counts();
    // Requests still waiting for their replies end here (their replies will be dropped by the inbox).
    for e in queue.iter() {
        if let Some(f) = &e.fast {
            proxy.slots.done(f.slot());
        }
    }
    let _ = wr.shutdown().await;
    proxy.metrics.client_connections.dec();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(name: &str) -> &'static CommandMeta {
        table().get(name.as_bytes()).unwrap()
    }

    #[test]
    fn plain_and_simple_key_classes() {
        for c in ["get", "set", "incr", "hset", "lpush", "zadd", "getex", "expire", "xadd", "pfadd"] {
            assert!(is_plain(meta(c)) && has_simple_key(meta(c)), "{c}");
        }
        // Routed by keys, but not only args[1].
        for c in ["mget", "mset", "del", "eval", "fcall", "sort", "lmove", "zunionstore", "bitop"] {
            assert!(!has_simple_key(meta(c)) || !is_plain(meta(c)), "{c}");
        }
        // Special handling or connection state: never the shortcut.
        for c in ["blpop", "xread", "subscribe", "publish", "watch", "exec", "object", "client", "keys", "scan"] {
            assert!(!is_plain(meta(c)), "{c}");
        }
        // Every name in SPECIAL is a real command (a typo would silently route it by keys).
        for c in SPECIAL {
            if *c != "ferrite.proxy" {
                assert!(table().get(c.as_bytes()).is_some(), "{c}");
            }
        }
    }
}
