//! Ferrite as a replica: `REPLICAOF host port` / `REPLICAOF NO ONE`.
//!
//! A link thread (one per `REPLICAOF`, a plain OS thread with blocking socket
//! I/O and 100 ms read timeouts, so no lock is ever held across an await)
//! connects to the master, does the handshake (PING, AUTH with
//! `masterauth`/`masteruser`, `REPLCONF listening-port`, `REPLCONF capa eof
//! capa psync2`, `PSYNC ? -1`), reads the RDB payload in memory (both the
//! `$<len>` and the diskless `$EOF:<mark>` forms), empties every database and
//! the function libraries and loads it, then applies the command stream under
//! the exclusive world lock through `dispatch::execute_locked` and a private
//! client (as the AOF loader does; MULTI/EXEC applied as one batch), counting
//! the offset. `REPLCONF GETACK` is answered; ACKs go at once after the sync,
//! every 100 ms for 3 s, then every second. When the link drops (or nothing
//! is read for 60 s) it reconnects after a second and asks to continue
//! (below). REPLICAOF takes the exclusive lock too, so nothing from an old
//! master is applied after it returns. With `appendonly yes` the AOF is
//! rewritten after each full sync. Clients blocked on keys get `-UNBLOCKED`
//! when REPLICAOF makes ferrite a replica (Redis also closes their
//! connections; ferrite keeps them). Start-up `--replicaof HOST PORT`
//! (config.rs) starts the link once the port is bound.
//!
//! What it knows: full and partial resynchronization, offsets, link states
//! for ROLE and INFO (with the `master_sync_*` transfer fields), `-READONLY`
//! for client writes and script writes (`replica-read-only`), `-MASTERDOWN`
//! with `replica-serve-stale-data no` while the link is down (script
//! `allow-stale` flag honoured at the call, not inside the script), Redis's
//! replica expiry (no active expiry; an expired key is hidden from clients,
//! kept, and live for the master's stream until the master's DEL; everything
//! live while loading; keys already expired in an RDB are loaded, not
//! dropped).
//! Chained replicas: the master's stream is proxied byte for byte to
//! ferrite's own backlog and replicas (`Repl::feed_proxy`), so the whole
//! chain shares one replication id and offset (PSYNC2); a full sync
//! disconnects them so they resync; client commands on a replica feed
//! nothing. A writable replica expires the keys its own clients gave a TTL.
//! Every (re)connection asks to continue our history (`PSYNC <replid>
//! <offset+1>`; with `FAILOVER` when handing over as a FAILOVER's old
//! master); `+CONTINUE <new id>` makes our id the secondary one.
//! A lost link asks to continue (`PSYNC <replid> <offset+1>`): `+CONTINUE`
//! resumes the stream without a new payload, otherwise a full sync.
//! The full-sync payload is written to `dir/temp-<pid>-repl.rdb` as it
//! arrives and loaded from a memory map of it (removed after), so the data
//! set is not held twice in memory (Redis's `repl-diskless-load disabled`);
//! memory is used only when no file can be created in `dir`.
//! `repl-timeout` bounds how long the link may stay silent.
//! What it does not know: `repl-diskless-load`
//! swapdb/on-empty-db, the master client in CLIENT LIST,
//! `replica-ignore-maxmemory` (the stream is never evicted for, but ferrite's
//! own eviction still runs on a replica).

use crate::server::{now_ms, Server};
use bytes::Bytes;
use ferrite_commands::{CommandMeta, Flags};
use parking_lot::Mutex;
use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

/// Link states, as Redis names them in ROLE.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum LinkState {
    Connect,
    Connecting,
    Handshake,
    Sync,
    Connected,
}

impl LinkState {
    pub fn name(self) -> &'static str {
        match self {
            LinkState::Connect => "connect",
            LinkState::Connecting => "connecting",
            LinkState::Handshake => "handshake",
            LinkState::Sync => "sync",
            LinkState::Connected => "connected",
        }
    }
}

struct State {
    master: Option<(String, u16)>,
    /// Incremented by every REPLICAOF: a link thread of an older generation exits.
    gen: u64,
    link: LinkState,
    master_replid: String,
    /// Unix ms of the last byte read from the master.
    last_io_ms: i64,
    /// Unix ms the link went down.
    down_since_ms: i64,
    /// (peer, local) addresses of the master connection while it is open
    /// (what CLIENT KILL ADDR / LADDR match, as for Redis's master client).
    addrs: Option<(String, String)>,
}

/// Replica-side state (`Repl::replica`).
pub struct ReplicaLink {
    /// A master is set (fast check for the write path).
    pub active: AtomicBool,
    /// Offset of the stream applied (`slave_repl_offset`); -1 before a sync.
    pub offset: AtomicI64,
    /// Offset of the stream read (`slave_read_repl_offset`).
    pub read_offset: AtomicI64,
    /// RDB transfer progress: size (-1 for the `$EOF:` form) and bytes read.
    sync_total: AtomicI64,
    sync_read: AtomicI64,
    st: Mutex<State>,
    /// CLIENT KILL matched the master connection: the link drops it (and
    /// reconnects, asking to continue).
    kill: AtomicBool,
    /// Keys given a TTL by clients of a writable replica (db, key): the
    /// replica expires them itself (Redis's slaveKeysWithExpire).
    own_expires: Mutex<std::collections::HashSet<(usize, Vec<u8>)>>,
}

impl Default for ReplicaLink {
    fn default() -> Self {
        ReplicaLink {
            active: AtomicBool::new(false),
            offset: AtomicI64::new(-1),
            read_offset: AtomicI64::new(-1),
            sync_total: AtomicI64::new(0),
            sync_read: AtomicI64::new(0),
            st: Mutex::new(State {
                master: None,
                gen: 0,
                link: LinkState::Connect,
                master_replid: String::new(),
                last_io_ms: 0,
                down_since_ms: 0,
                addrs: None,
            }),
            kill: AtomicBool::new(false),
            own_expires: Mutex::new(Default::default()),
        }
    }
}

/// What ROLE / INFO show of a replica.
pub struct Snapshot {
    pub host: String,
    pub port: u16,
    pub link: LinkState,
    pub last_io_ms: i64,
    pub down_since_ms: i64,
    pub master_replid: String,
}

impl ReplicaLink {
    #[inline]
    pub fn is_replica(&self) -> bool {
        self.active.load(Ordering::Relaxed)
    }

    pub fn snapshot(&self) -> Option<Snapshot> {
        let g = self.st.lock();
        let (host, port) = g.master.clone()?;
        Some(Snapshot {
            host,
            port,
            link: g.link,
            last_io_ms: g.last_io_ms,
            down_since_ms: g.down_since_ms,
            master_replid: g.master_replid.clone(),
        })
    }

    fn set_link(&self, gen: u64, link: LinkState) -> bool {
        let mut g = self.st.lock();
        if g.gen != gen {
            return false;
        }
        if g.link == LinkState::Connected && link != LinkState::Connected {
            g.down_since_ms = now_ms();
        }
        if link == LinkState::Connect {
            g.addrs = None;
        }
        g.link = link;
        true
    }

    fn current(&self, gen: u64) -> bool {
        self.st.lock().gen == gen
    }

    fn touch(&self) {
        self.st.lock().last_io_ms = now_ms();
    }
}

/// `REPLICAOF host port`: Ok(true) = already connected to that master.
pub fn set_master(srv: &Arc<Server>, host: &str, port: u16) -> bool {
    let link = &srv.repl.replica;
    let gen = {
        let mut g = link.st.lock();
        if g.master.as_ref().is_some_and(|(h, p)| h.eq_ignore_ascii_case(host) && *p == port) {
            return true;
        }
        if g.master.is_none() {
            // A master turning replica: its own offset until a sync (Redis
            // caches itself as the master).
            let off = srv.repl.offset.load(Ordering::SeqCst);
            link.offset.store(off, Ordering::SeqCst);
            link.read_offset.store(off, Ordering::SeqCst);
        }
        g.master = Some((host.to_string(), port));
        g.gen += 1;
        g.link = LinkState::Connect;
        // -1 in INFO until a link is lost (Redis's repl_down_since).
        g.down_since_ms = 0;
        g.last_io_ms = 0;
        g.gen
    };
    link.active.store(true, Ordering::SeqCst);
    unblock_all(srv);
    let weak = Arc::downgrade(srv);
    let host = host.to_string();
    let r = std::thread::Builder::new().name("ferrite-replica".into()).spawn(move || run(weak, gen, host, port));
    if let Err(e) = r {
        eprintln!("ferrite: can't start the replication thread: {e}");
    }
    false
}

/// After a client's write on a writable replica (its shards still locked):
/// remember the keys it named that now have a TTL.
pub fn remember_own_expires(
    srv: &Server,
    acc: &mut crate::keyspace::Access<'_>,
    meta: &CommandMeta,
    args: &[Bytes],
    db: usize,
) {
    let Ok(pos) = ferrite_commands::get_keys(meta, args) else { return };
    let mut found = Vec::new();
    for p in pos {
        let Some(key) = args.get(p) else { continue };
        let slot = ferrite_commands::key_hash_slot(key);
        if let Some(sh) = acc.shard(db, slot) {
            if sh.get_raw(slot, key).is_some_and(|e| e.expire_at != 0) {
                found.push((db, key.to_vec()));
            }
        }
    }
    if !found.is_empty() {
        srv.repl.replica.own_expires.lock().extend(found);
    }
}

/// Delete the remembered keys of a writable replica whose TTL passed
/// (forgetting those gone or without a TTL), as Redis's expireSlaveKeys.
fn expire_own_keys(srv: &Server) {
    // At most every 100 ms (Redis's serverCron runs it at hz 10).
    static LAST: AtomicI64 = AtomicI64::new(0);
    let t = now_ms();
    if t - LAST.load(Ordering::Relaxed) < 100 {
        return;
    }
    LAST.store(t, Ordering::Relaxed);
    let keys: Vec<(usize, Vec<u8>)> = {
        let g = srv.repl.replica.own_expires.lock();
        if g.is_empty() {
            return;
        }
        g.iter().cloned().collect()
    };
    let now = now_ms();
    let mut acc = srv.store.access_all();
    let mut forget = Vec::new();
    let mut expired = 0u64;
    for (db, key) in keys {
        if db >= srv.store.dbs.len() {
            forget.push((db, key));
            continue;
        }
        let slot = ferrite_commands::key_hash_slot(&key);
        let gone = acc.with_slot(db, slot, |sh| match sh.get_raw(slot, &key) {
            None => true,
            Some(e) if e.expire_at == 0 => true,
            Some(e) if e.expire_at <= now => {
                sh.remove(slot, &key);
                srv.store.dbs[db].signal_expired_deleted(&key);
                crate::persist::propagate::deleted_now(srv, db, &key);
                crate::notify::notify(srv, crate::notify::EXPIRED, "expired", &key, db);
                expired += 1;
                true
            }
            Some(_) => false,
        });
        if gone != Some(false) {
            forget.push((db, key));
        }
    }
    drop(acc);
    crate::stats::Stats::add(&srv.stats.expired_keys, expired);
    let mut g = srv.repl.replica.own_expires.lock();
    for k in forget {
        g.remove(&k);
    }
}

/// CLIENT KILL [ADDR a] [LADDR l] [TYPE master] on a replica: the master
/// connection, when it matches, is dropped (the link reconnects after a
/// second and asks to continue, as Redis's master client). True if matched.
pub fn kill_master_link(srv: &Server, addr: Option<&[u8]>, laddr: Option<&[u8]>) -> bool {
    let link = &srv.repl.replica;
    let g = link.st.lock();
    let Some((peer, local)) = &g.addrs else { return false };
    if addr.is_some_and(|a| a != peer.as_bytes()) || laddr.is_some_and(|a| a != local.as_bytes()) {
        return false;
    }
    link.kill.store(true, Ordering::SeqCst);
    true
}

/// Clients blocked on keys get an error (Redis's disconnectAllBlockedClients):
/// on a replica they could only be served by the master's writes.
fn unblock_all(srv: &Server) {
    const MSG: &str = "UNBLOCKED force unblock from blocking operation, instance state changed (master -> replica?)";
    if !srv.blocking.any() {
        return;
    }
    for db in 0..srv.store.dbs.len() {
        for key in srv.blocking.keys_in_db(db) {
            for w in srv.blocking.waiters(db, &key) {
                if srv.blocking.mark_served(&w) {
                    w.handle.blocked.store(false, Ordering::Relaxed);
                    srv.stats.error_reply(MSG);
                    let reply = Bytes::from(format!("-{MSG}\r\n"));
                    let _ = w.handle.tx.send(crate::client::Push::Reply(reply));
                }
            }
        }
    }
}

/// `REPLICAOF NO ONE`: back to a master keeping the data.
pub fn unset_master(srv: &Server) {
    let link = &srv.repl.replica;
    let was = {
        let mut g = link.st.lock();
        let was = g.master.take().is_some();
        g.gen += 1;
        g.link = LinkState::Connect;
        was
    };
    link.active.store(false, Ordering::SeqCst);
    if was {
        // A new history from our offset; the master's id stays valid up to
        // here as our secondary id, so its other replicas can continue with
        // us; ours reconnect to learn the new id (Redis's
        // replicationUnsetMaster: shiftReplicationId, disconnectSlaves).
        srv.repl.shift_replid();
        srv.repl.disconnect_replicas();
        eprintln!("ferrite: MASTER MODE enabled");
    }
}

/// The write-path check (dispatch): `-READONLY` for client writes on a
/// read-only replica, `-MASTERDOWN` for commands without the `stale` flag
/// while the link is down and `replica-serve-stale-data` is no. For EXEC
/// the queued commands' flags count (Redis's `cmd_flags` / `cmd_inv_flags`).
pub fn deny(
    srv: &Server,
    meta: &CommandMeta,
    queued: Option<&[Vec<Bytes>]>,
    script_flags: Option<u32>,
) -> Option<crate::cmd::CmdError> {
    use crate::script::{F_ALLOW_STALE, F_NO_WRITES};
    let link = &srv.repl.replica;
    if !link.is_replica() {
        return None;
    }
    let queued_flags = |want: u32, any_without: bool| -> bool {
        queued
            .unwrap_or(&[])
            .iter()
            .any(|a| crate::dispatch::resolve(srv, a).is_ok_and(|(_, m)| m.flags.has(want) != any_without))
    };
    // A script declaring flags: a write unless no-writes, stale-allowed
    // only with allow-stale (Redis's scriptFlagsToCmdFlags).
    let script_write = script_flags.is_some_and(|f| f & F_NO_WRITES == 0);
    let write =
        meta.flags.has(Flags::WRITE) || script_write || (meta.name == "exec" && queued_flags(Flags::WRITE, false));
    if write && accepted("replica-read-only", "yes") {
        return Some(crate::cmd::CmdError::st("READONLY You can't write against a read only replica."));
    }
    let connected = link.st.lock().link == LinkState::Connected;
    if !connected && accepted("replica-serve-stale-data", "no") {
        let stale_ok = match script_flags {
            Some(f) => f & F_ALLOW_STALE != 0,
            None => meta.flags.has(Flags::STALE),
        };
        let denystale = !stale_ok || (meta.name == "exec" && queued_flags(Flags::STALE, true));
        if denystale {
            return Some(crate::cmd::CmdError::st(
                "MASTERDOWN Link with MASTER is down and replica-serve-stale-data is set to 'no'.",
            ));
        }
    }
    None
}

thread_local! {
    /// Set while the link thread applies the master's stream.
    static APPLYING: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// A logically expired key met by a lookup. None: not a replica (delete
/// it as usual). Some(true): a client's command on a replica (hide it, keep
/// it). Some(false): the master's stream (the key is still live: the
/// master's DEL decides).
/// Is this thread applying the master's stream?
pub fn applying() -> bool {
    APPLYING.with(|a| a.get())
}

pub fn hide_expired(srv: &Server) -> Option<bool> {
    if !srv.repl.replica.is_replica() {
        return None;
    }
    // While loading (DEBUG RELOAD / LOADAOF) every key is live, as in Redis.
    Some(!APPLYING.with(|a| a.get()) && !srv.persist.loading.load(Ordering::Relaxed))
}

/// A read-only replica and the caller is not the master's stream (writes
/// by scripts are refused with -READONLY).
pub fn read_only(srv: &Server) -> bool {
    hide_expired(srv) == Some(true) && accepted("replica-read-only", "yes")
}

fn accepted(name: &str, val: &str) -> bool {
    crate::cmd::config::accepted_value(name).is_some_and(|v| v.eq_ignore_ascii_case(val))
}

/// Buffered blocking reader over the master connection.
struct Conn {
    s: TcpStream,
    buf: Vec<u8>,
    pos: usize,
}

enum Step {
    /// Give up this link (error text for the log).
    Fail(String),
    /// REPLICAOF changed or the server stops.
    Stop,
}

type R<T> = Result<T, Step>;

fn fail<T>(msg: impl Into<String>) -> R<T> {
    Err(Step::Fail(msg.into()))
}

struct Ctx<'a> {
    srv: &'a Server,
    gen: u64,
}

impl Ctx<'_> {
    fn check(&self) -> R<()> {
        if self.srv.shutting_down.load(Ordering::Relaxed) || !self.srv.repl.replica.current(self.gen) {
            return Err(Step::Stop);
        }
        if self.srv.repl.replica.kill.swap(false, Ordering::SeqCst) {
            return fail("connection with master killed (CLIENT KILL)");
        }
        Ok(())
    }
}

/// `repl-timeout` in ms: how long the link may stay silent (handshake, payload, stream).
fn io_timeout_ms() -> i64 {
    crate::cmd::config::accepted_value("repl-timeout")
        .and_then(|v| v.parse::<i64>().ok())
        .filter(|n| *n > 0)
        .unwrap_or(60)
        .saturating_mul(1000)
}

impl Conn {
    fn avail(&self) -> &[u8] {
        &self.buf[self.pos..]
    }

    fn compact(&mut self) {
        if self.pos > 0 && self.pos >= self.buf.len() / 2 {
            self.buf.drain(..self.pos);
            self.pos = 0;
            // A big command (a large value) went through: don't keep its
            // buffer (Redis trims a replica's pending query buffer too).
            if self.buf.capacity() > 1 << 20 && self.buf.len() < 64 * 1024 {
                self.buf.shrink_to(64 * 1024);
            }
        }
    }

    /// Read more bytes (waits at most ~100 ms). Ok(false): nothing yet.
    fn fill(&mut self, cx: &Ctx) -> R<bool> {
        cx.check()?;
        self.compact();
        let mut tmp = [0u8; 64 * 1024];
        match self.s.read(&mut tmp) {
            Ok(0) => fail("connection closed by the master"),
            Ok(n) => {
                self.buf.extend_from_slice(&tmp[..n]);
                cx.srv.repl.replica.touch();
                Ok(true)
            }
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => Ok(false),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => Ok(false),
            Err(e) => fail(format!("read error: {e}")),
        }
    }

    /// One `\r\n`-terminated line (without it); bare `\n` keepalives skipped.
    fn line(&mut self, cx: &Ctx) -> R<Vec<u8>> {
        let t0 = now_ms();
        loop {
            while self.avail().first() == Some(&b'\n') {
                self.pos += 1;
            }
            if let Some(e) = self.avail().windows(2).position(|w| w == b"\r\n") {
                let l = self.avail()[..e].to_vec();
                self.pos += e + 2;
                return Ok(l);
            }
            if self.avail().len() > 64 * 1024 {
                return fail("protocol error: line too long");
            }
            if !self.fill(cx)? && now_ms() - t0 > io_timeout_ms() {
                // Redis's words while connecting / in the handshake.
                let link = cx.srv.repl.replica.st.lock().link;
                if matches!(link, LinkState::Connecting | LinkState::Handshake) {
                    return fail("Timeout connecting to the MASTER...");
                }
                return fail("timeout reading from the master");
            }
        }
    }

    fn send(&mut self, args: &[&[u8]]) -> R<()> {
        let mut out = Vec::new();
        encode(&mut out, args);
        self.s.write_all(&out).or_else(|e| fail(format!("write error: {e}")))
    }

    fn cmd(&mut self, cx: &Ctx, args: &[&[u8]]) -> R<Vec<u8>> {
        self.send(args)?;
        self.line(cx)
    }
}

fn encode(out: &mut Vec<u8>, args: &[&[u8]]) {
    out.extend_from_slice(format!("*{}\r\n", args.len()).as_bytes());
    for a in args {
        out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
}

fn run(weak: Weak<Server>, gen: u64, host: String, port: u16) {
    loop {
        {
            let Some(srv) = weak.upgrade() else { return };
            let cx = Ctx { srv: &srv, gen };
            if cx.check().is_err() {
                return;
            }
            match session(&cx, &host, port) {
                Err(Step::Stop) => return,
                Err(Step::Fail(m)) => {
                    eprintln!("ferrite: replication link with {host}:{port}: {m}");
                    cx.srv.repl.replica.set_link(gen, LinkState::Connect);
                }
                Ok(()) => {}
            }
        }
        // Retry after a second (Redis's replicationCron), the server `Arc`
        // not held while sleeping.
        for _ in 0..10 {
            std::thread::sleep(Duration::from_millis(100));
            match weak.upgrade() {
                Some(s) if !s.shutting_down.load(Ordering::Relaxed) && s.repl.replica.current(gen) => {
                    expire_own_keys(&s)
                }
                _ => return,
            }
        }
    }
}

fn is_err(l: &[u8]) -> bool {
    l.first() == Some(&b'-')
}

/// Connect to the master, from `bind-source-addr` when it is set (as Redis's replication link).
fn connect_from(addr: &std::net::SocketAddr) -> std::io::Result<TcpStream> {
    let timeout = Duration::from_secs(5);
    let src = crate::cmd::config::accepted_value("bind-source-addr").unwrap_or_default();
    if src.is_empty() {
        return TcpStream::connect_timeout(addr, timeout);
    }
    let ip: std::net::IpAddr = src
        .parse()
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidInput, format!("bad bind-source-addr {src}")))?;
    let sock = socket2::Socket::new(socket2::Domain::for_address(*addr), socket2::Type::STREAM, None)?;
    sock.bind(&std::net::SocketAddr::new(ip, 0).into())?;
    sock.connect_timeout(&(*addr).into(), timeout)?;
    Ok(sock.into())
}

/// One connection: handshake, partial (`+CONTINUE`) or full sync, stream
/// until it fails.
fn session(cx: &Ctx, host: &str, port: u16) -> R<()> {
    let link = &cx.srv.repl.replica;
    if !link.set_link(cx.gen, LinkState::Connecting) {
        return Err(Step::Stop);
    }
    let addr = (host, port)
        .to_socket_addrs()
        .map_err(|e| Step::Fail(format!("can't resolve {host}: {e}")))?
        .next()
        .ok_or_else(|| Step::Fail(format!("can't resolve {host}")))?;
    let s = connect_from(&addr).map_err(|e| Step::Fail(format!("can't connect: {e}")))?;
    let _ = s.set_nodelay(true);
    s.set_read_timeout(Some(Duration::from_millis(100))).map_err(|e| Step::Fail(e.to_string()))?;
    s.set_write_timeout(Some(Duration::from_secs(10))).map_err(|e| Step::Fail(e.to_string()))?;
    {
        let peer = s.peer_addr().map(|a| a.to_string()).unwrap_or_default();
        let local = s.local_addr().map(|a| a.to_string()).unwrap_or_default();
        let mut g = link.st.lock();
        if g.gen == cx.gen {
            g.addrs = Some((peer, local));
        }
        link.kill.store(false, Ordering::SeqCst);
    }
    let mut c = Conn { s, buf: Vec::new(), pos: 0 };
    link.set_link(cx.gen, LinkState::Handshake);
    let pong = c.cmd(cx, &[b"PING"])?;
    // Redis accepts an authentication error here (AUTH follows).
    if is_err(&pong)
        && !pong.starts_with(b"-NOAUTH")
        && !pong.starts_with(b"-NOPERM")
        && !pong.starts_with(b"-ERR operation not permitted")
    {
        return fail(format!("error reply to PING from master: {}", String::from_utf8_lossy(&pong)));
    }
    let auth = crate::cmd::config::accepted_value("masterauth").unwrap_or_default();
    if !auth.is_empty() {
        let user = crate::cmd::config::accepted_value("masteruser").unwrap_or_default();
        let r = if user.is_empty() {
            c.cmd(cx, &[b"AUTH", auth.as_bytes()])?
        } else {
            c.cmd(cx, &[b"AUTH", user.as_bytes(), auth.as_bytes()])?
        };
        if is_err(&r) {
            return fail(format!("Unable to AUTH to MASTER: {}", String::from_utf8_lossy(&r)));
        }
    }
    let my_port = cx.srv.port.load(Ordering::Relaxed).to_string();
    let r = c.cmd(cx, &[b"REPLCONF", b"listening-port", my_port.as_bytes()])?;
    if is_err(&r) {
        eprintln!("ferrite: (non critical) master does not understand REPLCONF listening-port");
    }
    let _ = c.cmd(cx, &[b"REPLCONF", b"capa", b"eof", b"capa", b"psync2"])?;
    // Always ask to continue our own history (after a sync it is the
    // master's; a former master asks with its own id, as Redis's
    // replicationCacheMasterUsingMyself): a master that has our id as its
    // current or previous one (psync2) answers +CONTINUE.
    let repl = &cx.srv.repl;
    let id = repl.replid();
    let off = repl.offset.load(Ordering::SeqCst);
    // FAILOVER: we were the master; the target takes over when it sees the flag.
    let failover = repl.failover.lock().state == super::repl::FAILOVER_IN_PROGRESS;
    let psync_off = (off + 1).to_string();
    let r = if failover {
        c.cmd(cx, &[b"PSYNC", id.as_bytes(), psync_off.as_bytes(), b"FAILOVER"])?
    } else {
        c.cmd(cx, &[b"PSYNC", id.as_bytes(), psync_off.as_bytes()])?
    };
    if failover {
        if r.starts_with(b"+CONTINUE") || r.starts_with(b"+FULLRESYNC") {
            super::repl::clear_failover(cx.srv);
        } else {
            eprintln!("ferrite: PSYNC FAILOVER reply: {}", String::from_utf8_lossy(&r));
            let srv = cx.srv;
            // Not on this thread's lock path: the abort takes the exclusive lock itself.
            super::repl::abort_failover(srv, "Failover target rejected psync request");
            return Err(Step::Stop);
        }
    }
    if let Some(rest) = r.strip_prefix(b"+CONTINUE") {
        // Partial resynchronization: the stream goes on from our offset
        // (a new replication id may follow, psync2).
        let new_id = String::from_utf8_lossy(rest).trim().to_string();
        {
            // Under the exclusive lock, as the stream is applied: no
            // REPLICAOF runs between the check and the switch.
            let mut a = cx.srv.store.access_all();
            a.release_shards();
            cx.check()?;
            if !repl.feeding() {
                repl.adopt_master_history(&id, off);
            }
            if repl.continue_with_id(&new_id) {
                // Our replicas must learn the new id: they reconnect and continue.
                repl.disconnect_replicas();
            }
            link.offset.store(off, Ordering::SeqCst);
            link.read_offset.store(off, Ordering::SeqCst);
            let mut g = link.st.lock();
            if g.gen != cx.gen {
                return Err(Step::Stop);
            }
            g.master_replid = repl.replid();
            g.link = LinkState::Connected;
            g.last_io_ms = now_ms();
        }
        eprintln!("ferrite: MASTER <-> REPLICA sync: Master accepted a Partial Resynchronization.");
        return stream(cx, &mut c, off);
    }
    let Some(rest) = r.strip_prefix(b"+FULLRESYNC ") else {
        return fail(format!("unexpected reply to PSYNC from master: {}", String::from_utf8_lossy(&r)));
    };
    let rest = String::from_utf8_lossy(rest).into_owned();
    let mut it = rest.split(' ');
    let replid = it.next().unwrap_or("").to_string();
    let off: i64 = it.next().and_then(|o| o.parse().ok()).ok_or_else(|| Step::Fail("bad FULLRESYNC".into()))?;
    // Unknown size until the payload's first line (Redis's -1).
    link.sync_total.store(-1, Ordering::Relaxed);
    link.sync_read.store(0, Ordering::Relaxed);
    link.set_link(cx.gen, LinkState::Sync);
    let rdb = read_payload(cx, &mut c)?;
    load(cx, rdb.bytes(), &replid, off)?;
    drop(rdb);
    link.offset.store(off, Ordering::SeqCst);
    link.read_offset.store(off, Ordering::SeqCst);
    {
        let mut g = link.st.lock();
        if g.gen != cx.gen {
            return Err(Step::Stop);
        }
        g.master_replid = replid;
        g.link = LinkState::Connected;
        g.last_io_ms = now_ms();
    }
    stream(cx, &mut c, off)
}

/// Where the full-sync payload goes while it arrives: a temporary file in
/// `dir` (memory-mapped for the load, so a big data set does not sit twice
/// in memory), or memory when no file can be created there.
enum Sink {
    File { path: std::path::PathBuf, w: std::io::BufWriter<std::fs::File> },
    Mem(Vec<u8>),
}

/// A received payload, ready to load.
enum Payload {
    File { path: std::path::PathBuf, map: Option<memmap2::Mmap> },
    Mem(Vec<u8>),
}

impl Payload {
    fn bytes(&self) -> &[u8] {
        match self {
            Payload::File { map: Some(m), .. } => m,
            Payload::File { map: None, .. } => &[],
            Payload::Mem(v) => v,
        }
    }
}

impl Drop for Payload {
    fn drop(&mut self) {
        if let Payload::File { path, map } = self {
            drop(map.take());
            let _ = std::fs::remove_file(&*path);
        }
    }
}

impl Sink {
    fn new(cx: &Ctx) -> Sink {
        let dir = cx.srv.persist.cfg.lock().dir.clone();
        let path = dir.join(format!("temp-{}-repl.rdb", std::process::id()));
        match std::fs::OpenOptions::new().read(true).write(true).create(true).truncate(true).open(&path) {
            Ok(f) => Sink::File { path, w: std::io::BufWriter::with_capacity(1 << 20, f) },
            Err(_) => Sink::Mem(Vec::new()),
        }
    }

    fn write(&mut self, b: &[u8]) -> R<()> {
        match self {
            Sink::File { w, .. } => std::io::Write::write_all(w, b)
                .map_err(|e| Step::Fail(format!("writing the RDB from master to disk: {e}"))),
            Sink::Mem(v) => {
                v.extend_from_slice(b);
                Ok(())
            }
        }
    }

    fn finish(self) -> R<Payload> {
        match self {
            Sink::Mem(v) => Ok(Payload::Mem(v)),
            Sink::File { path, w } => {
                let mut p = Payload::File { path, map: None };
                let f = w.into_inner().map_err(|e| Step::Fail(format!("writing the RDB from master: {e}")))?;
                let empty = f.metadata().map(|m| m.len() == 0).unwrap_or(true);
                if !empty {
                    // SAFETY: the file is ours (a name with our pid in our dir), written and closed for writing
                    // above, and removed only when the map is dropped; nothing truncates it meanwhile.
                    let map = unsafe { memmap2::Mmap::map(&f) }
                        .map_err(|e| Step::Fail(format!("mapping the RDB from master: {e}")))?;
                    if let Payload::File { map: m, .. } = &mut p {
                        *m = Some(map);
                    }
                }
                Ok(p)
            }
        }
    }
}

/// The RDB after FULLRESYNC: `$<len>\r\n<bytes>` or `$EOF:<40 bytes>\r\n<bytes><mark>`.
fn read_payload(cx: &Ctx, c: &mut Conn) -> R<Payload> {
    let head = c.line(cx)?;
    if head.first() != Some(&b'$') {
        return fail(format!("bad protocol from master sending the RDB: {}", String::from_utf8_lossy(&head)));
    }
    let mut sink = Sink::new(cx);
    let mut got: usize = 0;
    let mut last = Instant::now();
    let link = &cx.srv.repl.replica;
    link.sync_read.store(0, Ordering::Relaxed);
    if let Some(mark) = head.strip_prefix(b"$EOF:") {
        link.sync_total.store(-1, Ordering::Relaxed);
        if mark.len() != 40 {
            return fail("bad EOF mark from master");
        }
        let mark = mark.to_vec();
        // The last 40 bytes received are held back until we know they are not the mark.
        let mut tail: Vec<u8> = Vec::with_capacity(80);
        loop {
            let a = c.avail();
            got += a.len();
            if tail.len() + a.len() <= 40 {
                tail.extend_from_slice(a);
            } else {
                // Everything but the newest 40 bytes can be written.
                let keep_from_a = 40.min(a.len());
                let spill_tail = tail.len() - (40 - keep_from_a);
                sink.write(&tail[..spill_tail])?;
                tail.drain(..spill_tail);
                sink.write(&a[..a.len() - keep_from_a])?;
                tail.extend_from_slice(&a[a.len() - keep_from_a..]);
            }
            c.pos = c.buf.len();
            link.sync_read.store(got as i64, Ordering::Relaxed);
            if tail.len() == 40 && tail[..] == mark[..] {
                return sink.finish();
            }
            if c.fill(cx)? {
                last = Instant::now();
            } else if last.elapsed().as_millis() as i64 > io_timeout_ms() {
                return fail("timeout receiving the RDB from master");
            }
        }
    }
    let len: usize = std::str::from_utf8(&head[1..])
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| Step::Fail("bad RDB length from master".into()))?;
    link.sync_total.store(len as i64, Ordering::Relaxed);
    while got < len {
        let take = (len - got).min(c.avail().len());
        sink.write(&c.avail()[..take])?;
        c.pos += take;
        got += take;
        link.sync_read.store(got as i64, Ordering::Relaxed);
        if got >= len {
            break;
        }
        if c.fill(cx)? {
            last = Instant::now();
        } else if last.elapsed().as_millis() as i64 > io_timeout_ms() {
            return fail("timeout receiving the RDB from master");
        }
    }
    sink.finish()
}

/// Empty everything and load the master's RDB (exclusive access).
fn load(cx: &Ctx, rdb: &[u8], replid: &str, off: i64) -> R<()> {
    let srv = cx.srv;
    let mut acc = srv.store.access_all();
    acc.release_shards();
    cx.check()?;
    srv.scripting.func.lock().flush();
    for db in srv.store.dbs.iter() {
        db.signal_all();
        for s in db.shards.iter() {
            s.lock().clear();
        }
    }
    crate::cmd::client::tracking::flush(srv);
    srv.persist.loading.store(true, Ordering::SeqCst);
    srv.repl.clear_rdb_aux();
    let r = super::load::load_rdb_bytes_opts(srv, rdb, false, true);
    srv.persist.loading.store(false, Ordering::SeqCst);
    // The AOF must describe the new data set: rewrite it now (Redis
    // restarts the AOF after a sync), or as soon as a running one ends.
    if r.is_ok() && srv.persist.aof.enabled() {
        let started = match srv.persist.me.get().and_then(|w| w.upgrade()) {
            Some(me) => super::aof::start_rewrite_locked(&me, &mut acc).is_ok(),
            None => false,
        };
        if !started {
            srv.persist.aof.rewrite_scheduled.store(true, Ordering::Relaxed);
        }
    }
    // The master's history is ours now (same id and offsets, an empty
    // backlog). Our own replicas hold another data set: they reconnect and
    // get a full resync of the new one (Redis's disconnectSlaves).
    srv.repl.adopt_master_history(replid, off);
    // A replica's payload says which database its proxied stream is in (its
    // master does not repeat SELECT): Redis's rsi.repl_stream_db.
    if let Some(db) = srv.repl.rdb_stream_db().filter(|d| (0..srv.store.dbs.len() as i64).contains(d)) {
        srv.repl.stream_db.store(db, Ordering::SeqCst);
    }
    srv.repl.clear_rdb_aux();
    srv.repl.disconnect_replicas();
    drop(acc);
    r.map(|_| ()).map_err(|e| Step::Fail(format!("failed loading the RDB from master: {e}")))
}

fn master_client(srv: &Server) -> crate::client::Client {
    let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
    let handle = Arc::new(crate::client::ClientHandle::new(
        u64::MAX - 1,
        "master".into(),
        String::new(),
        -1,
        tx,
        srv.uptime_ms(),
    ));
    crate::client::Client::new(handle, true)
}

/// One complete `*N` command at the start of `d`: (args, bytes). Ok(None): incomplete.
fn parse_command(d: &[u8]) -> R<Option<(Vec<Bytes>, usize)>> {
    let mut p = 0usize;
    let line = |p: &mut usize| -> Option<&[u8]> {
        let rest = d.get(*p..)?;
        let e = rest.windows(2).position(|w| w == b"\r\n")?;
        *p += e + 2;
        Some(&rest[..e])
    };
    let bad = || Step::Fail("protocol error in the replication stream".into());
    let Some(l) = line(&mut p) else { return Ok(None) };
    if l.is_empty() {
        // A bare "\r\n" (inline empty command): skipped, still counted.
        return Ok(Some((Vec::new(), p)));
    }
    if l[0] != b'*' {
        // Inline command (the master's "\n" keepalives never reach here).
        let args = l.split(|b| *b == b' ').filter(|a| !a.is_empty()).map(Bytes::copy_from_slice).collect();
        return Ok(Some((args, p)));
    }
    let n: usize =
        std::str::from_utf8(&l[1..]).ok().and_then(|s| s.parse().ok()).filter(|n| *n <= 1 << 20).ok_or_else(bad)?;
    let mut args = Vec::with_capacity(n.min(1024));
    for _ in 0..n {
        let Some(l) = line(&mut p) else { return Ok(None) };
        if l.first() != Some(&b'$') {
            return Err(bad());
        }
        let len: usize = std::str::from_utf8(&l[1..])
            .ok()
            .and_then(|s| s.parse().ok())
            .filter(|n| *n <= 512 << 20)
            .ok_or_else(bad)?;
        if d.len() < p + len + 2 {
            return Ok(None);
        }
        args.push(Bytes::copy_from_slice(&d[p..p + len]));
        p += len + 2;
    }
    Ok(Some((args, p)))
}

/// Clears `APPLYING` when a batch ends (also on an early return).
struct Reset;
impl Drop for Reset {
    fn drop(&mut self) {
        APPLYING.with(|f| f.set(false));
    }
}

/// Apply the stream until the link fails.
fn stream(cx: &Ctx, c: &mut Conn, mut off: i64) -> R<()> {
    let srv = cx.srv;
    let link = &srv.repl.replica;
    let mut client = master_client(srv);
    // The stream goes on in the database it last selected (a master does not
    // repeat SELECT after +CONTINUE; 0 after a full sync).
    client.db = (srv.repl.stream_db.load(Ordering::SeqCst).max(0) as usize).min(srv.store.dbs.len().saturating_sub(1));
    let mut out = ferrite_resp::ReplyBuf::new(false);
    let mut multi: Option<Vec<Vec<Bytes>>> = None;
    let mut in_multi = 0i64;
    // Bytes applied but not yet proxied to our backlog and replicas (a
    // transaction goes at its EXEC, when the offset moves).
    let mut proxy: Vec<u8> = Vec::new();
    // The first ACK goes out at once: after a diskless transfer a Redis
    // master starts the stream only on an ACK received once it marked us
    // online (which can be after our load ended), so ACKs go every 100 ms
    // for the first seconds, then every second.
    let o = off.to_string();
    c.send(&[b"REPLCONF", b"ACK", o.as_bytes()])?;
    let synced_at = Instant::now();
    let mut last_ack = Instant::now();
    loop {
        // Parse what is buffered into commands.
        let mut cmds: Vec<(Vec<Bytes>, usize)> = Vec::new();
        let start = c.pos;
        while let Some((args, n)) = parse_command(c.avail())? {
            c.pos += n;
            cmds.push((args, n));
        }
        let raw = c.buf[start..c.pos].to_vec();
        let mut at = 0usize;
        let mut ack_now = None;
        if !cmds.is_empty() {
            link.read_offset.fetch_add(cmds.iter().map(|x| x.1 as i64).sum(), Ordering::SeqCst);
            // REPLICAOF runs with the exclusive lock too: checked under it,
            // nothing is applied after REPLICAOF NO ONE / another master.
            let mut a = srv.store.access_all();
            a.release_shards();
            cx.check()?;
            APPLYING.with(|f| f.set(true));
            let _reset = Reset;
            for (args, n) in cmds {
                let name = args.first().map(|a| a.to_ascii_lowercase()).unwrap_or_default();
                match &name[..] {
                    b"" | b"ping" => {}
                    b"replconf" => {
                        if args.get(1).is_some_and(|a| a.eq_ignore_ascii_case(b"getack")) {
                            // The offset before this command (Redis updates it after);
                            // sent once the lock is released.
                            ack_now = Some(off);
                        }
                    }
                    b"multi" => multi = Some(Vec::new()),
                    b"exec" => {
                        let q = multi.take().unwrap_or_default();
                        crate::persist::propagate::tx_begin(srv);
                        for qa in &q {
                            out.buf.clear();
                            crate::dispatch::execute_locked(srv, &mut client, qa, &mut out, &mut a);
                            a.release_shards();
                            log_error_reply(&out.buf, qa);
                        }
                        crate::persist::propagate::tx_end(srv);
                    }
                    _ => {
                        if let Some(q) = multi.as_mut() {
                            q.push(args);
                        } else {
                            out.buf.clear();
                            crate::dispatch::execute_locked(srv, &mut client, &args, &mut out, &mut a);
                            a.release_shards();
                            log_error_reply(&out.buf, &args);
                        }
                    }
                }
                // Inside MULTI the offset stays at the transaction's start
                // until EXEC (Redis): a link lost mid-transaction resumes there.
                proxy.extend_from_slice(raw.get(at..at + n).unwrap_or(&[]));
                at += n;
                if multi.is_some() {
                    in_multi += n as i64;
                } else {
                    off += in_multi + n as i64;
                    in_multi = 0;
                    srv.repl.feed_proxy(&proxy);
                    proxy.clear();
                }
                link.offset.store(off, Ordering::SeqCst);
            }
            srv.repl.stream_db.store(client.db as i64, Ordering::SeqCst);
            let ready = std::mem::take(&mut client.ready_keys);
            if !ready.is_empty() {
                crate::dispatch::serve_blocked(srv, &mut a, ready);
            }
        }
        if let Some(o) = ack_now {
            c.send(&[b"REPLCONF", b"ACK", o.to_string().as_bytes()])?;
        }
        expire_own_keys(srv);
        let every = if synced_at.elapsed() < Duration::from_secs(3) { 100 } else { 1000 };
        if last_ack.elapsed() >= Duration::from_millis(every) {
            last_ack = Instant::now();
            let o = off.to_string();
            c.send(&[b"REPLCONF", b"ACK", o.as_bytes()])?;
        }
        let idle = {
            let g = link.st.lock();
            now_ms() - g.last_io_ms
        };
        if !c.fill(cx)? && idle > io_timeout_ms() {
            return fail("MASTER timeout: no data nor PING received");
        }
    }
}

/// A command of the master's stream failed here: the data sets may have
/// diverged. Redis logs it (its afterErrorReply) in these words.
fn log_error_reply(reply: &[u8], args: &[Bytes]) {
    if reply.first() != Some(&b'-') {
        return;
    }
    let end = reply.windows(2).position(|w| w == b"\r\n").unwrap_or(reply.len()).min(4097);
    let err = String::from_utf8_lossy(&reply[1..end]);
    let name = args.first().map(|a| String::from_utf8_lossy(a).to_ascii_lowercase()).unwrap_or_default();
    // Redis names the command only when it exists.
    let name = if err.starts_with("ERR unknown command") { "<unknown>".to_string() } else { name };
    eprintln!(
        "ferrite: == CRITICAL == This replica is sending an error to its master: '{err}' after processing the command '{name}'"
    );
}

/// INFO replication's replica fields (after `# Replication`, before `connected_slaves`).
pub fn info_slave(r: &super::repl::Repl, m: &Snapshot, s: &mut String) {
    use std::fmt::Write;
    let link = &r.replica;
    let up = m.link == LinkState::Connected;
    let now = now_ms();
    let _ = write!(s, "role:slave\r\nmaster_host:{}\r\nmaster_port:{}\r\n", m.host, m.port);
    let _ = write!(s, "master_link_status:{}\r\n", if up { "up" } else { "down" });
    // -1 while there is no master client (Redis's server.master).
    let last_io = if up && m.last_io_ms > 0 { (now - m.last_io_ms).max(0) / 1000 } else { -1 };
    let _ = write!(s, "master_last_io_seconds_ago:{last_io}\r\n");
    let _ = write!(s, "master_sync_in_progress:{}\r\n", (m.link == LinkState::Sync) as u8);
    let off = link.offset.load(Ordering::SeqCst);
    let roff = link.read_offset.load(Ordering::SeqCst);
    // Redis shows 1 before any master client exists.
    let _ = write!(
        s,
        "slave_read_repl_offset:{}\r\nslave_repl_offset:{}\r\n",
        if roff < 0 { 1 } else { roff },
        if off < 0 { 1 } else { off }
    );
    if m.link == LinkState::Sync {
        let total = link.sync_total.load(Ordering::Relaxed);
        let read = link.sync_read.load(Ordering::Relaxed);
        let perc = if total != 0 { read as f64 / total as f64 * 100.0 } else { 0.0 };
        let io = if m.last_io_ms > 0 { (now - m.last_io_ms).max(0) / 1000 } else { 0 };
        let _ = write!(
            s,
            "master_sync_total_bytes:{total}\r\nmaster_sync_read_bytes:{read}\r\nmaster_sync_left_bytes:{}\r\nmaster_sync_perc:{perc:.2}\r\nmaster_sync_last_io_seconds_ago:{io}\r\n",
            total - read
        );
    }
    if !up {
        let since = if m.down_since_ms > 0 { (now - m.down_since_ms).max(0) / 1000 } else { -1 };
        let _ = write!(s, "master_link_down_since_seconds:{since}\r\n");
    }
    let prio = crate::cmd::config::accepted_value("replica-priority").unwrap_or_else(|| "100".into());
    let ro = accepted("replica-read-only", "yes") as u8;
    let announced = crate::cmd::config::accepted_value("replica-announced").map_or(1, |v| (v == "yes") as u8);
    let _ = write!(s, "slave_priority:{prio}\r\nslave_read_only:{ro}\r\nreplica_announced:{announced}\r\n");
}
