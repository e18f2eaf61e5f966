//! Ferrite as a replication master: the replica registry and the
//! replication stream (Redis 7.0's `replicationFeedSlaves`).
//!
//! A replica attaches with `SYNC` / `PSYNC` (`cmd/repl.rs`), which holds
//! the exclusive world lock while it starts a background save
//! (`snapshot`, point-in-time per (db, slot)) and registers the replica, so
//! every write after the snapshot's instant is in its stream exactly once.
//! Until the save ends the replica's stream is buffered (`wait_bgsave`);
//! then the file is sent as `$<len>\r\n<rdb>` followed by the buffer
//! (`rdb_done`). When a save is already running, the image is serialized
//! in memory under the lock instead. The stream is shared by all replicas
//! as in Redis: the effects records of `propagate` encoded as RESP
//! multibulks, with a `SELECT` whenever the database changes (reset when a
//! replica attaches, so each replica's stream starts with one). Bytes reach
//! a replica's connection as `Push::Reply` on its push channel (the MONITOR
//! pattern); the connection's own replies are switched off.
//!
//! What it knows: the master side of the protocol (full resynchronization
//! with a disk-based payload, partial resynchronization from the backlog,
//! `REPLCONF ACK` offsets, `REPLCONF GETACK *`
//! for WAIT, a periodic `PING` every `repl-ping-replica-period` seconds),
//! `master_repl_offset` (bytes of the stream since the first replica
//! attached), good replicas for `min-replicas-to-write`.
//!
//! The backlog (`repl-backlog-size` bytes, created with the replication id
//! when the first replica attaches, as Redis does) keeps the newest bytes of
//! the stream; `PSYNC <replid> <offset>` within it gets `+CONTINUE <replid>`
//! and the bytes from that offset on, registered under the same lock as the
//! stream so nothing is missed or sent twice. PSYNC2: the replid is ours or
//! our secondary one (`replid2`, valid up to `second_repl_offset`: set when
//! a replica is promoted, when a replica continues with a master of another
//! id, and at start-up from the `repl-id` / `repl-offset` of dump.rdb). As a
//! replica, ferrite proxies its master's stream byte for byte (`feed_proxy`):
//! its id, offsets and backlog are its master's, so its own replicas can
//! continue with any node of the chain. WAIT counts the replicas that
//! acknowledged the client's own last write (`client_woff`, Redis's
//! `c->woff`). FAILOVER (`spawn_failover_driver`) pauses writes, waits for
//! the target's ACK and hands over with `PSYNC ... FAILOVER`.
//! What it does not know: diskless transfer (`repl-diskless-sync` and its
//! delay: the payload is always a disk RDB, sent as soon as it is written),
//! a second replica joining a running save (it gets an in-memory image),
//! replica output buffer limits and accounting (a slow replica's channel and
//! a waiting replica's buffer are unbounded; no
//! `mem_total_replication_buffers`).

use crate::client::Push;
use crate::server::{now_ms, Server};
use bytes::Bytes;
use parking_lot::{Condvar, Mutex};
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Arc;

/// One attached replica.
pub struct Replica {
    pub client_id: u64,
    pub tx: crate::obuf::PushTx,
    pub ip: String,
    /// `REPLCONF listening-port` (0 when not given).
    pub port: i64,
    /// Offset of the last `REPLCONF ACK` (the FULLRESYNC offset until then).
    pub ack_off: AtomicI64,
    /// Unix ms of the last ACK (or of the attach).
    pub ack_ms: AtomicI64,
    /// Sent at least one `REPLCONF ACK` (only such replicas are timed out, as Redis spares pre-PSYNC ones).
    acked: AtomicBool,
    /// While its RDB is being written by a background save: the stream
    /// produced meanwhile (None once online).
    pending: Mutex<Option<Vec<u8>>>,
}

impl Replica {
    pub fn alive(&self) -> bool {
        !self.tx.is_closed()
    }

    /// Receiving the stream (not waiting for its RDB).
    pub fn online(&self) -> bool {
        self.pending.lock().is_none()
    }
}

struct Inner {
    replicas: Vec<Arc<Replica>>,
    /// The newest `backlog_max` bytes of the stream; its last byte is at the master offset.
    backlog: std::collections::VecDeque<u8>,
    backlog_max: usize,
    /// Feeds since `backlog_max` was last read from the configuration.
    feeds: u32,
    /// Database of the last command in the stream (-1: emit SELECT next).
    last_db: i64,
    replid: String,
    /// The previous replication id (psync2): replicas of a former master,
    /// or of a former sibling, may continue it up to `second_off`.
    replid2: String,
    /// Last offset + 1 valid for `replid2` (-1: none).
    second_off: i64,
    /// `repl-stream-db`, `repl-id`, `repl-offset` aux fields of the last RDB
    /// loaded (used at start-up only, as Redis).
    rdb_aux: (Option<i64>, Option<String>, Option<i64>),
    /// `REPLCONF listening-port / ip-address` given before SYNC, by client id.
    pending: Vec<(u64, Option<i64>, Option<String>)>,
    /// `REPLCONF rdb-filter-only` given before SYNC: (client id, include functions).
    rdb_filters: Vec<(u64, bool)>,
}

/// Replication state (`Server::repl`).
pub struct Repl {
    /// A replica attached at least once: the stream is fed (Redis keeps
    /// counting the offset once its backlog exists).
    pub active: AtomicBool,
    pub offset: AtomicI64,
    /// Full resynchronizations served (INFO `sync_full`).
    pub sync_full: std::sync::atomic::AtomicU64,
    /// PSYNC asked to continue a replication id and got a full resync.
    pub sync_partial_err: std::sync::atomic::AtomicU64,
    /// PSYNC continued from the backlog.
    pub sync_partial_ok: std::sync::atomic::AtomicU64,
    inner: Mutex<Inner>,
    /// Signalled when an ACK arrives (WAIT).
    acks: Condvar,
    ack_lock: Mutex<()>,
    /// Ferrite as a replica (REPLICAOF).
    pub replica: super::replica::ReplicaLink,
    /// As a replica: the database selected by the master's stream (kept
    /// across a lost link, saved in RDB files as `repl-stream-db`).
    pub stream_db: AtomicI64,
    /// Start-up load: expired keys of the file are skipped and their DEL
    /// goes to the backlog (a master, Redis's RDBFLAGS_FEED_REPL), or they
    /// are kept (a replica: its master's DEL decides).
    pub load_feed_expired: AtomicBool,
    pub load_keep_expired: AtomicBool,
    /// FAILOVER (Redis 7.0's coordinated failover), see `Failover`.
    pub failover: Mutex<Failover>,
    /// The master offset after a client's last write, for WAIT (Redis's
    /// `c->woff`), in slots by client id: a slot holds the newest write of
    /// the clients sharing it, never less than a client's own (bounded
    /// memory; a shared slot can only make WAIT wait for more).
    woff: Box<[AtomicI64]>,
}

/// Slots of `Repl::woff`.
const WOFF_SLOTS: usize = 4096;

/// No FAILOVER running.
pub const NO_FAILOVER: u8 = 0;
/// Writes paused, waiting for the target to acknowledge our offset.
pub const FAILOVER_WAIT_FOR_SYNC: u8 = 1;
/// Became a replica of the target, asking it to take over (`PSYNC ... FAILOVER`).
pub const FAILOVER_IN_PROGRESS: u8 = 2;

/// State of a FAILOVER command (Redis's server.failover_* fields).
#[derive(Default)]
pub struct Failover {
    pub state: u8,
    pub target: Option<(String, u16)>,
    /// Unix ms the wait for sync ends (0: no timeout).
    pub end_ms: i64,
    pub force: bool,
}

impl Default for Repl {
    fn default() -> Repl {
        Repl {
            active: AtomicBool::new(false),
            offset: AtomicI64::new(0),
            sync_full: Default::default(),
            sync_partial_err: Default::default(),
            sync_partial_ok: Default::default(),
            inner: Mutex::new(Inner {
                replicas: Vec::new(),
                backlog: Default::default(),
                backlog_max: 1 << 20,
                feeds: 0,
                last_db: -1,
                replid: random_id(),
                replid2: NO_ID.to_string(),
                second_off: -1,
                rdb_aux: (None, None, None),
                pending: Vec::new(),
                rdb_filters: Vec::new(),
            }),
            acks: Condvar::new(),
            ack_lock: Mutex::new(()),
            replica: Default::default(),
            stream_db: AtomicI64::new(0),
            load_feed_expired: AtomicBool::new(false),
            load_keep_expired: AtomicBool::new(false),
            failover: Mutex::new(Failover::default()),
            woff: (0..WOFF_SLOTS).map(|_| AtomicI64::new(0)).collect(),
        }
    }
}

/// `master_replid2` when there is no secondary id.
const NO_ID: &str = "0000000000000000000000000000000000000000";

fn random_id() -> String {
    (0..40).map(|_| format!("{:x}", rand::random::<u8>() % 16)).collect()
}

use super::aof::encode;

impl Repl {
    #[inline]
    pub fn feeding(&self) -> bool {
        self.active.load(Ordering::Relaxed)
    }

    /// CONFIG RESETSTAT: the sync counters of INFO stats.
    pub fn reset_stats(&self) {
        self.sync_full.store(0, Ordering::Relaxed);
        self.sync_partial_ok.store(0, Ordering::Relaxed);
        self.sync_partial_err.store(0, Ordering::Relaxed);
    }

    pub fn replid(&self) -> String {
        self.inner.lock().replid.clone()
    }

    /// Live replicas (disconnected ones are dropped here).
    pub fn replicas(&self) -> Vec<Arc<Replica>> {
        let mut g = self.inner.lock();
        g.replicas.retain(|r| r.alive());
        g.replicas.clone()
    }

    pub fn is_replica(&self, client_id: u64) -> bool {
        self.inner.lock().replicas.iter().any(|r| r.client_id == client_id && r.alive())
    }
}

/// `repl-backlog-size` in bytes.
fn configured_backlog() -> usize {
    crate::cmd::config::accepted_value("repl-backlog-size")
        .and_then(|v| v.parse::<usize>().ok())
        .filter(|n| *n > 0)
        .unwrap_or(1 << 20)
}

impl Inner {
    /// Keep the newest `backlog_max` bytes.
    fn trim_backlog(&mut self) {
        let excess = self.backlog.len().saturating_sub(self.backlog_max);
        if excess > 0 {
            self.backlog.drain(..excess);
        }
    }

    fn register(&mut self, client_id: u64, addr: &str, tx: &crate::obuf::PushTx, ack_off: i64, online: bool) {
        let (port, ip) = match self.pending.iter().position(|p| p.0 == client_id) {
            Some(i) => {
                let p = self.pending.remove(i);
                (p.1, p.2)
            }
            None => (None, None),
        };
        let ip = ip.unwrap_or_else(|| peer_ip(addr));
        self.replicas.retain(|r| r.alive());
        tx.out.set_class(crate::obuf::REPLICA);
        self.replicas.push(Arc::new(Replica {
            client_id,
            tx: tx.clone(),
            ip,
            port: port.unwrap_or(0),
            ack_off: AtomicI64::new(ack_off),
            ack_ms: AtomicI64::new(now_ms()),
            acked: AtomicBool::new(false),
            pending: Mutex::new(if online { None } else { Some(Vec::new()) }),
        }));
    }
}

impl Repl {
    fn send(g: &mut Inner, offset: &AtomicI64, data: Vec<u8>) {
        offset.fetch_add(data.len() as i64, Ordering::SeqCst);
        g.feeds = g.feeds.wrapping_add(1);
        if g.feeds.is_multiple_of(1024) {
            g.backlog_max = configured_backlog();
        }
        g.backlog.extend(data.iter());
        g.trim_backlog();
        let b = Bytes::from(data);
        g.replicas.retain(|r| {
            if let Some(buf) = r.pending.lock().as_mut() {
                buf.extend_from_slice(&b);
                return r.alive();
            }
            r.tx.send(Push::Reply(b.clone())).is_ok()
        });
    }

    /// Append effects records (db, args) to the stream.
    pub fn feed(&self, recs: &[super::propagate::Record]) {
        // A replica proxies its master's stream byte for byte (`feed_proxy`);
        // its own effects (and a writable replica's client writes) feed nothing.
        if !self.feeding() || recs.is_empty() || self.replica.is_replica() {
            return;
        }
        let mut data = Vec::with_capacity(64);
        let mut g = self.inner.lock();
        super::aof::encode_records(&mut data, &mut g.last_db, recs);
        Self::send(&mut g, &self.offset, data);
        let id = crate::cmd::client::tracking::last_client();
        if id != 0 {
            self.woff[id as usize % WOFF_SLOTS].fetch_max(self.offset.load(Ordering::SeqCst), Ordering::SeqCst);
        }
    }

    /// The master offset after the client's last write (0: none seen).
    pub fn client_woff(&self, client_id: u64) -> i64 {
        self.woff[client_id as usize % WOFF_SLOTS].load(Ordering::SeqCst)
    }

    /// Append a command that does not depend on the db (PING, REPLCONF GETACK).
    pub fn feed_raw(&self, args: &[Bytes]) {
        // A replica's own replicas get its master's PINGs and GETACKs instead.
        if !self.feeding() || self.replica.is_replica() {
            return;
        }
        let mut data = Vec::with_capacity(32);
        encode(&mut data, args);
        let mut g = self.inner.lock();
        Self::send(&mut g, &self.offset, data);
    }

    /// Ferrite as a replica: bytes of the master's stream just applied
    /// (whole commands, a transaction at its EXEC), appended unchanged to our
    /// backlog and our replicas' streams, so that every node of a chain has
    /// the same offsets (Redis's replicationFeedStreamFromMasterStream).
    pub fn feed_proxy(&self, data: &[u8]) {
        if data.is_empty() || !self.feeding() {
            return;
        }
        let mut g = self.inner.lock();
        Self::send(&mut g, &self.offset, data.to_vec());
    }

    /// A full sync from a master: its replication id and offset become ours,
    /// with an empty backlog (kept from now on, so that a promotion lets the
    /// former siblings continue) and no secondary id.
    pub fn adopt_master_history(&self, replid: &str, off: i64) {
        let mut g = self.inner.lock();
        g.replid = replid.to_string();
        g.replid2 = NO_ID.to_string();
        g.second_off = -1;
        g.backlog.clear();
        g.backlog_max = configured_backlog();
        g.last_db = -1;
        self.offset.store(off, Ordering::SeqCst);
        self.stream_db.store(0, Ordering::SeqCst);
        self.active.store(true, Ordering::SeqCst);
    }

    /// `+CONTINUE <id>` with another id than ours (the master was promoted,
    /// or is a former sibling): our id becomes the secondary one, valid up to
    /// our offset, and the master's id ours (Redis's psync2 switch). Returns
    /// true when the id changed (our own replicas must then reconnect).
    pub fn continue_with_id(&self, new_id: &str) -> bool {
        let mut g = self.inner.lock();
        if new_id.is_empty() || g.replid == new_id {
            return false;
        }
        g.replid2 = std::mem::replace(&mut g.replid, new_id.to_string());
        g.second_off = self.offset.load(Ordering::SeqCst) + 1;
        true
    }

    /// A replica promoted (`REPLICAOF NO ONE`): a new history starts at our
    /// offset; the old id stays valid as the secondary one up to here
    /// (Redis's shiftReplicationId), and the next write starts with SELECT.
    pub fn shift_replid(&self) {
        let mut g = self.inner.lock();
        g.replid2 = std::mem::replace(&mut g.replid, random_id());
        g.second_off = self.offset.load(Ordering::SeqCst) + 1;
        g.last_db = -1;
    }

    /// The replication aux fields of an RDB file saved now (`repl-stream-db`,
    /// `repl-id`, `repl-offset`): a master with a backlog, or a replica that
    /// synced (Redis's rdbPopulateSaveInfo). Call with the data set locked
    /// (the offset must be the image's).
    pub fn rdb_info(&self) -> Option<(u32, String, i64)> {
        if !self.feeding() {
            return None;
        }
        let g = self.inner.lock();
        let db = if self.replica.is_replica() { self.stream_db.load(Ordering::SeqCst) } else { g.last_db.max(0) };
        Some((db.max(0) as u32, g.replid.clone(), self.offset.load(Ordering::SeqCst)))
    }

    /// An aux field met while loading an RDB file.
    pub fn note_rdb_aux(&self, key: &[u8], val: &[u8]) {
        let num = || std::str::from_utf8(val).ok().and_then(|v| v.parse::<i64>().ok());
        let mut g = self.inner.lock();
        match key {
            b"repl-stream-db" => g.rdb_aux.0 = num(),
            b"repl-id" if val.len() == 40 => g.rdb_aux.1 = Some(String::from_utf8_lossy(val).into_owned()),
            b"repl-offset" => g.rdb_aux.2 = num(),
            _ => {}
        }
    }

    /// `repl-stream-db` of the last RDB loaded, if it had one.
    pub fn rdb_stream_db(&self) -> Option<i64> {
        self.inner.lock().rdb_aux.0
    }

    /// Forget the aux fields (before a load).
    pub fn clear_rdb_aux(&self) {
        self.inner.lock().rdb_aux = (None, None, None);
    }

    /// Start-up, after loading dump.rdb: the replication id and offset it
    /// was saved with. A replica continues that history (it asks its master
    /// to continue from there); a master keeps it as its secondary id, so
    /// its former replicas continue with it (Redis's loadDataFromDisk).
    /// A master loading at start-up: its backlog exists during the load, so
    /// the DELs of expired keys are in it (see `load_feed_expired`).
    pub fn start_startup_load(&self, replica: bool) {
        if replica {
            self.load_keep_expired.store(true, Ordering::SeqCst);
        } else {
            self.create_backlog();
            self.load_feed_expired.store(true, Ordering::SeqCst);
        }
    }

    /// Start-up, after loading dump.rdb (or failing to, or with none): the
    /// replication id and offset it was saved with. A replica continues that
    /// history (it asks its master to continue from there); a master keeps
    /// it as its secondary id, its offset rebased after the DELs of the keys
    /// that expired in the file, so its former replicas continue with it
    /// (Redis's loadDataFromDisk). A master whose file had no replication
    /// info drops the backlog again.
    pub fn restore_from_rdb(&self, replica: bool) -> bool {
        self.load_feed_expired.store(false, Ordering::SeqCst);
        self.load_keep_expired.store(false, Ordering::SeqCst);
        let mut g = self.inner.lock();
        let aux = std::mem::take(&mut g.rdb_aux);
        let restored = match aux {
            (Some(db), Some(id), Some(off)) if db >= 0 && off >= 0 => {
                if replica {
                    g.backlog.clear();
                    g.backlog_max = configured_backlog();
                    g.replid = id;
                    g.replid2 = NO_ID.to_string();
                    g.second_off = -1;
                    self.stream_db.store(db, Ordering::SeqCst);
                    self.offset.store(off, Ordering::SeqCst);
                } else {
                    g.replid2 = id;
                    g.second_off = off + 1;
                    g.last_db = -1;
                    self.offset.fetch_add(off, Ordering::SeqCst);
                }
                self.active.store(true, Ordering::SeqCst);
                true
            }
            _ => false,
        };
        if !replica && !restored {
            g.backlog.clear();
            self.active.store(false, Ordering::SeqCst);
        }
        restored
    }

    /// `repl-backlog-ttl` expired: no backlog, a new id (no replica can
    /// continue the old history).
    pub fn free_backlog(&self) {
        let mut g = self.inner.lock();
        g.replid = random_id();
        g.replid2 = NO_ID.to_string();
        g.second_off = -1;
        g.backlog.clear();
        g.backlog.shrink_to_fit();
        self.active.store(false, Ordering::SeqCst);
    }

    /// DEBUG CHANGE-REPL-ID: a new id, no secondary one (Redis's
    /// changeReplicationId + clearReplicationId2).
    pub fn change_replid(&self) {
        let mut g = self.inner.lock();
        g.replid = random_id();
        g.replid2 = NO_ID.to_string();
        g.second_off = -1;
    }

    /// (replid, replid2, second offset) for INFO.
    pub fn ids(&self) -> (String, String, i64) {
        let g = self.inner.lock();
        (g.replid.clone(), g.replid2.clone(), g.second_off)
    }

    /// Close every replica connection (they reconnect and ask to continue).
    pub fn disconnect_replicas(&self) {
        for rep in self.replicas() {
            let _ = rep.tx.send(Push::Kill);
        }
    }

    /// `REPLCONF rdb-filter-only`: the client's payload holds no keys, and
    /// the function libraries only if `functions`.
    pub fn set_rdb_filter(&self, client_id: u64, functions: bool) {
        let mut g = self.inner.lock();
        g.rdb_filters.retain(|f| f.0 != client_id);
        if g.rdb_filters.len() >= 1024 {
            g.rdb_filters.remove(0);
        }
        g.rdb_filters.push((client_id, functions));
    }

    /// The filter a client asked for (taken: it applies to one SYNC).
    pub fn take_rdb_filter(&self, client_id: u64) -> Option<bool> {
        let mut g = self.inner.lock();
        let i = g.rdb_filters.iter().position(|f| f.0 == client_id)?;
        Some(g.rdb_filters.remove(i).1)
    }

    /// Remember `REPLCONF listening-port` / `ip-address` of a client that
    /// has not sent SYNC yet.
    pub fn set_pending(&self, client_id: u64, port: Option<i64>, ip: Option<String>) {
        let mut g = self.inner.lock();
        if let Some(p) = g.pending.iter_mut().find(|p| p.0 == client_id) {
            if port.is_some() {
                p.1 = port;
            }
            if ip.is_some() {
                p.2 = ip;
            }
            return;
        }
        // Bounded: entries of clients that never sent SYNC are dropped oldest first.
        if g.pending.len() >= 1024 {
            g.pending.remove(0);
        }
        g.pending.push((client_id, port, ip));
    }

    /// The first replica: Redis creates its backlog with a new replication
    /// id (before the payload is made, which records them).
    pub fn create_backlog(&self) {
        let mut g = self.inner.lock();
        if !self.active.load(Ordering::SeqCst) {
            g.replid = random_id();
            g.replid2 = NO_ID.to_string();
            g.second_off = -1;
            g.backlog.clear();
            g.backlog_max = configured_backlog();
            self.active.store(true, Ordering::SeqCst);
        }
    }

    /// Register a replica. The caller holds the exclusive world lock, so
    /// no write is between the data set image and the registration.
    /// `header` gets the replid and offset (FULLRESYNC) and returns the
    /// bytes to send first. With `payload` (an RDB image made now) the
    /// replica is online at once; without, it waits for the background
    /// save started with it (`rdb_done`), the stream buffered meanwhile.
    /// Returns false if the connection is gone.
    pub fn attach(
        &self,
        client_id: u64,
        addr: &str,
        tx: &crate::obuf::PushTx,
        header: impl FnOnce(&str, i64) -> Vec<u8>,
        payload: Option<&[u8]>,
    ) -> bool {
        self.create_backlog();
        let mut g = self.inner.lock();
        g.last_db = -1;
        self.sync_full.fetch_add(1, Ordering::Relaxed);
        let off = self.offset.load(Ordering::SeqCst);
        let mut first = header(&g.replid, off);
        if let Some(payload) = payload {
            first.extend_from_slice(format!("${}\r\n", payload.len()).as_bytes());
            first.extend_from_slice(payload);
        }
        if !first.is_empty() && tx.send(Push::Reply(Bytes::from(first))).is_err() {
            return false;
        }
        g.register(client_id, addr, tx, off, payload.is_some());
        true
    }

    /// `PSYNC <replid> <offset>`: continue from the backlog when `replid` is
    /// ours and the bytes from `psync_off` (the first byte the replica
    /// lacks) are all still in it: `+CONTINUE <replid>`, those bytes, then
    /// the live stream, the replica registered under the stream's lock.
    /// False (nothing sent) when a full resync is needed.
    pub fn try_continue(
        &self,
        client_id: u64,
        addr: &str,
        tx: &crate::obuf::PushTx,
        replid: &[u8],
        psync_off: i64,
    ) -> bool {
        let mut g = self.inner.lock();
        if !self.active.load(Ordering::SeqCst) {
            return false;
        }
        // Our id, or the previous one up to where it stopped being ours (psync2).
        let ours = replid == g.replid.as_bytes()
            || (replid == g.replid2.as_bytes() && g.second_off >= 0 && psync_off <= g.second_off);
        if !ours {
            return false;
        }
        let master_off = self.offset.load(Ordering::SeqCst);
        let first_byte = master_off - g.backlog.len() as i64 + 1;
        if psync_off < first_byte || psync_off > master_off + 1 {
            return false;
        }
        let skip = (psync_off - first_byte) as usize;
        let mut out = format!("+CONTINUE {}\r\n", g.replid).into_bytes();
        out.extend(g.backlog.iter().skip(skip));
        if tx.send(Push::Reply(Bytes::from(out))).is_err() {
            return false;
        }
        self.sync_partial_ok.fetch_add(1, Ordering::Relaxed);
        g.register(client_id, addr, tx, psync_off - 1, true);
        true
    }

    /// Backlog figures for INFO: (first byte offset, histlen, size).
    pub fn backlog_info(&self) -> (i64, i64, usize) {
        let g = self.inner.lock();
        let off = self.offset.load(Ordering::SeqCst);
        let len = g.backlog.len() as i64;
        (off - len + 1, len, g.backlog_max)
    }

    /// A background save ended (`snapshot::run_job`, before another can
    /// start): replicas waiting for it get the file, then what was streamed
    /// meanwhile; if it failed they are disconnected (they retry, as with Redis).
    pub fn rdb_done(&self, ok: bool, path: &std::path::Path) {
        let waiting = self.inner.lock().replicas.iter().any(|r| !r.online());
        if !waiting {
            return;
        }
        let file = if ok { std::fs::read(path).ok() } else { None };
        let g = self.inner.lock();
        for r in g.replicas.iter() {
            let mut p = r.pending.lock();
            let Some(buf) = p.take() else { continue };
            match &file {
                Some(rdb) => {
                    let mut first = format!("${}\r\n", rdb.len()).into_bytes();
                    first.extend_from_slice(rdb);
                    let _ = r.tx.send(Push::Reply(Bytes::from(first)));
                    if !buf.is_empty() {
                        let _ = r.tx.send(Push::Reply(Bytes::from(buf)));
                    }
                    r.ack_ms.store(now_ms(), Ordering::Relaxed);
                }
                None => {
                    eprintln!("ferrite: background save for replica {} failed: disconnecting it", r.client_id);
                    let _ = r.tx.send(Push::Kill);
                }
            }
        }
    }

    fn refresh_acks(&self) {
        let v: Vec<i64> =
            self.replicas().iter().filter(|r| r.online()).map(|r| r.ack_ms.load(Ordering::Relaxed)).collect();
        *ACKS.lock() = v;
    }

    /// `REPLCONF ACK <offset>` from a replica connection.
    pub fn ack(&self, client_id: u64, off: i64) {
        let r = self.inner.lock().replicas.iter().find(|r| r.client_id == client_id).cloned();
        if let Some(r) = r {
            r.ack_off.fetch_max(off, Ordering::SeqCst);
            r.ack_ms.store(now_ms(), Ordering::Relaxed);
            r.acked.store(true, Ordering::Relaxed);
            {
                let _g = self.ack_lock.lock();
                self.acks.notify_all();
            }
            self.refresh_acks();
        }
    }

    /// Online replicas whose ACK covers `off`.
    pub fn count_acked(&self, off: i64) -> i64 {
        self.replicas().iter().filter(|r| r.online() && r.ack_off.load(Ordering::SeqCst) >= off).count() as i64
    }

    /// WAIT: block (this worker thread, holding no lock) until `n` replicas
    /// acknowledged `off`, the deadline passes, or `stop()` says so.
    /// Returns the count at that point.
    pub fn wait_acks(&self, n: i64, off: i64, deadline_ms: Option<i64>, stop: impl Fn() -> bool) -> i64 {
        self.feed_raw(&[Bytes::from_static(b"REPLCONF"), Bytes::from_static(b"GETACK"), Bytes::from_static(b"*")]);
        loop {
            let c = self.count_acked(off);
            if c >= n || stop() {
                return c;
            }
            let mut step = 100i64;
            if let Some(d) = deadline_ms {
                let left = d - now_ms();
                if left <= 0 {
                    return c;
                }
                step = step.min(left);
            }
            let mut g = self.ack_lock.lock();
            self.acks.wait_for(&mut g, std::time::Duration::from_millis(step as u64));
        }
    }
}

/// Unix ms of the last ACK of each online replica (of the process's
/// server), refreshed on every ACK and every second: what
/// `min-replicas-to-write` counts (Redis's repl_good_slaves_count).
static ACKS: Mutex<Vec<i64>> = Mutex::new(Vec::new());

/// Online replicas whose last ACK is at most `max_lag` seconds old.
pub fn good_replicas(max_lag: i64) -> i64 {
    let now = now_ms() / 1000;
    ACKS.lock().iter().filter(|&&t| now - t / 1000 <= max_lag).count() as i64
}

/// "1.2.3.4:5678" / "[::1]:5678" -> the ip part.
fn peer_ip(addr: &str) -> String {
    let host = addr.rsplit_once(':').map_or(addr, |(h, _)| h);
    host.trim_start_matches('[').trim_end_matches(']').to_string()
}

/// Every second: PING the replicas once `repl-ping-replica-period` seconds
/// passed since the last one (Redis's replicationCron).
pub fn spawn_pinger(srv: &Arc<Server>) {
    let weak = Arc::downgrade(srv);
    let Ok(rt) = tokio::runtime::Handle::try_current() else { return };
    rt.spawn(async move {
        let mut last = now_ms();
        // Since when a master with a backlog has had no replica (0: has some).
        let mut alone_since = 0i64;
        loop {
            tokio::time::sleep(std::time::Duration::from_secs(1)).await;
            let Some(srv) = weak.upgrade() else { break };
            if srv.shutting_down.load(Ordering::Relaxed) {
                break;
            }
            srv.repl.refresh_acks();
            // repl-backlog-ttl: a master without replicas for that long frees
            // its backlog and changes its id (Redis's replicationCron).
            let ttl = crate::cmd::config::accepted_value("repl-backlog-ttl")
                .and_then(|v| v.parse::<i64>().ok())
                .unwrap_or(3600);
            let now = now_ms();
            if srv.repl.replica.is_replica() || !srv.repl.feeding() || !srv.repl.replicas().is_empty() {
                alone_since = 0;
            } else if alone_since == 0 {
                alone_since = now;
            } else if ttl > 0 && now - alone_since > ttl * 1000 {
                srv.repl.free_backlog();
                eprintln!(
                    "ferrite: Replication backlog freed after {} seconds without connected replicas.",
                    (now - alone_since) / 1000
                );
                alone_since = 0;
            }
            // repl-timeout: an online replica that stopped acknowledging is disconnected (Redis's replicationCron).
            let timeout = crate::cmd::config::accepted_value("repl-timeout")
                .and_then(|v| v.parse::<i64>().ok())
                .unwrap_or(60)
                .max(1);
            let now = now_ms();
            for r in srv.repl.replicas() {
                if r.online()
                    && r.acked.load(Ordering::Relaxed)
                    && now - r.ack_ms.load(Ordering::Relaxed) > timeout * 1000
                {
                    eprintln!("ferrite: Disconnecting timedout replica (streaming sync): {}:{}", r.ip, r.port);
                    r.tx.close_now();
                }
            }
            let period = crate::cmd::config::accepted_value("repl-ping-replica-period")
                .and_then(|v| v.parse::<i64>().ok())
                .unwrap_or(10)
                .max(1);
            let now = now_ms();
            // Paused writes (CLIENT PAUSE WRITE, FAILOVER) pause the PINGs too: the offset must hold still.
            if now - last >= period * 1000 && srv.pause_until(true).is_none() {
                last = now;
                if !srv.repl.replicas().is_empty() {
                    srv.repl.feed_raw(&[Bytes::from_static(b"PING")]);
                }
            }
        }
    });
}

/// The `# Replication` section of INFO for a master.
pub fn info_section(srv: &Server, s: &mut String) {
    use std::fmt::Write;
    let r = &srv.repl;
    let reps = r.replicas();
    let off = r.offset.load(Ordering::SeqCst);
    let active = r.feeding();
    let now = now_ms();
    s.push_str("# Replication\r\n");
    let rs = r.replica.snapshot();
    if let Some(m) = &rs {
        super::replica::info_slave(r, m, s);
    } else {
        s.push_str("role:master\r\n");
    }
    let _ = write!(s, "connected_slaves:{}\r\n", reps.len());
    for (i, rep) in reps.iter().enumerate() {
        let _ = write!(
            s,
            "slave{i}:ip={},port={},state={},offset={},lag={}\r\n",
            rep.ip,
            rep.port,
            if rep.online() { "online" } else { "wait_bgsave" },
            rep.ack_off.load(Ordering::SeqCst),
            (now - rep.ack_ms.load(Ordering::Relaxed)).max(0) / 1000
        );
    }
    // As a replica these are the master's id and offset (a replica proxies
    // its master's stream byte for byte, so the offsets are the same).
    let (replid, replid2, second) = r.ids();
    let fo = match r.failover.lock().state {
        FAILOVER_WAIT_FOR_SYNC => "waiting-for-sync",
        FAILOVER_IN_PROGRESS => "failover-in-progress",
        _ => "no-failover",
    };
    let _ = write!(s, "master_failover_state:{fo}\r\nmaster_replid:{replid}\r\n");
    let _ = write!(s, "master_replid2:{replid2}\r\n");
    let _ = write!(s, "master_repl_offset:{off}\r\nsecond_repl_offset:{second}\r\n");
    if active {
        let (first, len, size) = r.backlog_info();
        let _ = write!(
            s,
            "repl_backlog_active:1\r\nrepl_backlog_size:{size}\r\nrepl_backlog_first_byte_offset:{first}\r\n\
             repl_backlog_histlen:{len}\r\n"
        );
    } else {
        let _ = write!(
            s,
            "repl_backlog_active:0\r\nrepl_backlog_size:{}\r\nrepl_backlog_first_byte_offset:0\r\n\
             repl_backlog_histlen:0\r\n",
            configured_backlog()
        );
    }
}

/// The online replica announced as `host:port` (its address, or
/// `REPLCONF ip-address`, and its `listening-port`), as Redis's findReplica.
pub fn find_replica(srv: &Server, host: &str, port: u16) -> Option<Arc<Replica>> {
    srv.repl.replicas().into_iter().find(|r| r.port == port as i64 && r.ip.eq_ignore_ascii_case(host))
}

/// End a FAILOVER: writes resume (Redis's clearFailoverState).
pub fn clear_failover(srv: &Server) {
    let was = std::mem::take(&mut *srv.repl.failover.lock());
    if was.state != NO_FAILOVER {
        srv.unpause_clients();
    }
}

/// Abort a FAILOVER (Redis's abortFailover): a node that already turned
/// into the target's replica becomes a master again.
pub fn abort_failover(srv: &Server, why: &str) {
    let (state, target) = {
        let g = srv.repl.failover.lock();
        (g.state, g.target.clone())
    };
    if state == NO_FAILOVER {
        return;
    }
    match &target {
        Some((h, p)) => eprintln!("ferrite: FAILOVER to {h}:{p} aborted: {why}"),
        None => eprintln!("ferrite: FAILOVER to any replica aborted: {why}"),
    }
    if state == FAILOVER_IN_PROGRESS {
        let mut acc = srv.store.access_all();
        acc.release_shards();
        super::replica::unset_master(srv);
    }
    clear_failover(srv);
}

/// Drive a FAILOVER in `FAILOVER_WAIT_FOR_SYNC` (Redis's
/// updateFailoverStatus, run every 10 ms by a thread started with the
/// command): once the target (or, without one, any replica) acknowledged
/// our whole stream, or the timeout passed with FORCE, become its replica
/// with the failover flag (the link asks it to take over). Without FORCE
/// the timeout aborts.
pub fn spawn_failover_driver(srv: &Arc<Server>) {
    let weak = Arc::downgrade(srv);
    let r = std::thread::Builder::new().name("ferrite-failover".into()).spawn(move || loop {
        std::thread::sleep(std::time::Duration::from_millis(10));
        let Some(srv) = weak.upgrade() else { return };
        if srv.shutting_down.load(Ordering::Relaxed) {
            return;
        }
        let (state, target, end_ms, force) = {
            let g = srv.repl.failover.lock();
            (g.state, g.target.clone(), g.end_ms, g.force)
        };
        if state != FAILOVER_WAIT_FOR_SYNC {
            return;
        }
        if end_ms != 0 && end_ms <= now_ms() {
            match (force, target) {
                (true, Some((h, p))) => {
                    eprintln!("ferrite: FAILOVER to {h}:{p} time out exceeded, failing over.");
                    become_replica_of_target(&srv, &h, p);
                }
                _ => abort_failover(&srv, "Replica never caught up before timeout"),
            }
            return;
        }
        let off = srv.repl.offset.load(Ordering::SeqCst);
        let found = match &target {
            Some((h, p)) => find_replica(&srv, h, *p).map(|r| (h.clone(), *p, r)),
            None => srv
                .repl
                .replicas()
                .into_iter()
                .find(|r| r.online() && r.ack_off.load(Ordering::SeqCst) == off)
                .map(|r| (r.ip.clone(), r.port as u16, r)),
        };
        if let Some((h, p, r)) = found {
            if r.ack_off.load(Ordering::SeqCst) == off {
                srv.repl.failover.lock().target = Some((h.clone(), p));
                eprintln!("ferrite: Failover target {h}:{p} is synced, failing over.");
                become_replica_of_target(&srv, &h, p);
                return;
            }
        }
    });
    if let Err(e) = r {
        eprintln!("ferrite: can't start the failover thread: {e}");
        abort_failover(srv, "no failover thread");
    }
}

fn become_replica_of_target(srv: &Arc<Server>, host: &str, port: u16) {
    let mut acc = srv.store.access_all();
    acc.release_shards();
    {
        let mut g = srv.repl.failover.lock();
        if g.state != FAILOVER_WAIT_FOR_SYNC {
            return;
        }
        g.state = FAILOVER_IN_PROGRESS;
    }
    super::replica::set_master(srv, host, port);
}
