//! The `replication` method: one thread per source master that acts like a
//! Redis replica (PING, REPLCONF listening-port / capa eof / capa psync2,
//! PSYNC, RDB transfer in the `$<len>` or diskless `$EOF:<mark>` form, then
//! the command stream, answering REPLCONF GETACK and sending REPLCONF ACK
//! every second) and applies what it receives to Ferrite, keeping only keys
//! of slots still to migrate.
//!
//! The RDB is parsed incrementally with `ferrite_rdb::file::RdbParser`
//! (memory bounded by one part of one value); a key that arrives in one part
//! is sent as RESTORE (absolute TTL), a big collection as RESTORE of its
//! first part followed by RPUSH / SADD / ZADD / HSET batches for the next
//! parts. Streams are the exception: their parts are gathered and restored
//! once (a stream's memory is not bounded).
//!
//! The command stream is applied in order, batched into pipelines: SELECT
//! tracks the db (Redis Cluster only uses db 0, anything else is skipped),
//! PING is skipped, MULTI/EXEC blocks are filtered and sent as MULTI/EXEC,
//! FLUSHALL/FLUSHDB empty only the slots this replicator still owns on the
//! target, keyless commands (FUNCTION, SCRIPT, ...) are skipped. The applied
//! offset (the end of the last command Ferrite acknowledged) is what
//! REPLCONF ACK reports and what the cutover waits for.
//!
//! On a broken link (master failover, restart) the thread re-reads the
//! topology, finds the master now serving its slots and asks for a partial
//! resync from its replication id and offset (PSYNC2 keeps them across a
//! failover); if the master answers FULLRESYNC, the slots still owned are
//! emptied on the target and loaded again.

use crate::resp::{Auth, Conn};
use crate::slots::{SlotSet, NSLOTS};
use crate::{cmd, metrics, Error, Result};
use bytes::{Bytes, BytesMut};
use ferrite_rdb::RdbValue;
use parking_lot::Mutex;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Slots whose source changes are still applied (in scope, not flipped).
pub struct Filter {
    bits: Vec<AtomicU64>,
}

impl Filter {
    pub fn new(s: &SlotSet) -> Filter {
        let f = Filter { bits: (0..NSLOTS / 64).map(|_| AtomicU64::new(0)).collect() };
        for x in s.iter() {
            f.bits[x as usize / 64].fetch_or(1 << (x % 64), Ordering::SeqCst);
        }
        f
    }
    pub fn applies(&self, s: u16) -> bool {
        (s as usize) < NSLOTS && self.bits[s as usize / 64].load(Ordering::SeqCst) & (1 << (s % 64)) != 0
    }
    pub fn remove(&self, s: u16) {
        if (s as usize) < NSLOTS {
            self.bits[s as usize / 64].fetch_and(!(1 << (s % 64)), Ordering::SeqCst);
        }
    }
}

pub struct ReplConfig {
    pub master: String,
    /// Slots this replicator is responsible for.
    pub slots: SlotSet,
    pub seeds: Vec<String>,
    pub source_auth: Auth,
    pub target: String,
    pub target_auth: Auth,
    pub timeout: Duration,
    pub retry_for: Duration,
    pub replica_port: u16,
    /// Do not announce `capa eof` (the master then syncs through its disk).
    pub disk_sync: bool,
    /// Do not turn the master's `rdbcompression` off for the full sync.
    pub keep_rdb_compression: bool,
    pub filter: Arc<Filter>,
    pub clock_offset_ms: i64,
}

#[derive(Default)]
struct Shared {
    applied: Arc<AtomicI64>,
    received: AtomicI64,
    loaded: AtomicBool,
    stop: AtomicBool,
    error: Mutex<Option<String>>,
    master: Mutex<String>,
}

/// A running replicator thread.
pub struct Replicator {
    sh: Arc<Shared>,
    slots: SlotSet,
    handle: Option<std::thread::JoinHandle<()>>,
}

impl Replicator {
    pub fn start(cfg: ReplConfig) -> Replicator {
        let sh = Arc::new(Shared::default());
        *sh.master.lock() = cfg.master.clone();
        sh.applied.store(-1, Ordering::SeqCst);
        let slots = cfg.slots.clone();
        let sh2 = sh.clone();
        let handle = std::thread::spawn(move || {
            let res = link_loop(&cfg, &sh2);
            if let Err(e) = res {
                *sh2.error.lock() = Some(e.to_string());
            }
        });
        Replicator { sh, slots, handle: Some(handle) }
    }
    /// Applied offset (-1 before the initial sync is loaded).
    pub fn applied(&self) -> i64 {
        self.sh.applied.load(Ordering::SeqCst)
    }
    pub fn loaded(&self) -> bool {
        self.sh.loaded.load(Ordering::SeqCst)
    }
    pub fn error(&self) -> Option<String> {
        self.sh.error.lock().clone()
    }
    /// The master currently replicated from.
    pub fn master(&self) -> String {
        self.sh.master.lock().clone()
    }
    pub fn slots(&self) -> &SlotSet {
        &self.slots
    }
    pub fn stop(&self) {
        self.sh.stop.store(true, Ordering::SeqCst);
    }
    pub fn join(mut self) {
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

/// Where a link stands for a partial resync.
struct Psync {
    replid: String,
    offset: i64,
}

fn link_loop(cfg: &ReplConfig, sh: &Shared) -> Result<()> {
    let mut psync: Option<Psync> = None;
    let mut master = cfg.master.clone();
    let mut failing_since: Option<Instant> = None;
    let mut last_applied = i64::MIN;
    let mut full_syncs = 0u32;
    let mut dst = Applier::connect(cfg, sh.applied.clone())?;
    loop {
        if sh.stop.load(Ordering::SeqCst) {
            return Ok(());
        }
        *sh.master.lock() = master.clone();
        match session(cfg, sh, &master, &mut psync, &mut full_syncs, &mut dst) {
            Ok(()) => return Ok(()),
            Err(e) => {
                if sh.stop.load(Ordering::SeqCst) {
                    return Ok(());
                }
                // Commands not yet written are beyond `written_end`: the
                // master sends them again after the resync, which continues
                // after the last command written to Ferrite (those are
                // applied by Ferrite unless its connection broke too).
                dst.discard();
                if let (Some(p), Some(w)) = (psync.as_mut(), dst.written_end) {
                    p.offset = w;
                }
                // The retry budget restarts whenever the last session made
                // progress; a master gone for good ends the thread.
                let applied = sh.applied.load(Ordering::SeqCst);
                if applied != last_applied {
                    last_applied = applied;
                    failing_since = None;
                }
                let since = *failing_since.get_or_insert_with(Instant::now);
                if since.elapsed() > cfg.retry_for {
                    return Err(e);
                }
                eprintln!("replication link to {master} broken: {e}; reconnecting");
                std::thread::sleep(Duration::from_millis(200));
                // Where do our slots live now?
                if let Some(first) = cfg.slots.iter().next() {
                    let mut seeds = vec![master.clone()];
                    seeds.extend(cfg.seeds.iter().cloned());
                    if let Ok(t) = crate::topo::discover(&seeds, cfg.timeout, &cfg.source_auth) {
                        if let Some(m) = t.master_of(first) {
                            master = m.addr.clone();
                        }
                    }
                }
                if !dst.healthy() {
                    dst = Applier::connect(cfg, sh.applied.clone())?;
                }
            }
        }
    }
}

/// One written batch of commands, for the reply reader.
struct Batch {
    /// Name of every command in the batch (for error messages).
    names: Vec<Bytes>,
    /// Applied offset to publish once every reply of the batch arrived.
    applied: Option<i64>,
}

/// What the reply reader reports to the writer.
#[derive(Default)]
struct Acks {
    batches_done: AtomicU64,
    failed: Mutex<Option<String>>,
}

/// Sends commands to Ferrite over one connection without waiting for the
/// replies: commands are encoded straight into one output buffer, written
/// in large writes, and a reader thread consumes the replies in order (one
/// connection, so Ferrite applies them in the order written). The reader
/// counts what Ferrite refused and publishes the applied offset attached to
/// a batch once all its replies arrived.
struct Applier {
    conn: Option<Conn>,
    out: Vec<u8>,
    names: Vec<Bytes>,
    tx: Option<std::sync::mpsc::SyncSender<Batch>>,
    reader: Option<std::thread::JoinHandle<()>>,
    acks: Arc<Acks>,
    batches_sent: u64,
    /// Offset at the end of the last command pushed outside a transaction
    /// (None while loading the RDB).
    last_end: Option<i64>,
    /// Offset at the end of the last command written to Ferrite: where a
    /// partial resync must continue from.
    written_end: Option<i64>,
}

/// The name recorded for a command sent with `push_tolerant`.
const TOLERANT: &[u8] = b"FUNCTION (tolerant)";

/// Write when this much is buffered.
const WRITE_AT: usize = 1 << 20;

impl Applier {
    fn connect(cfg: &ReplConfig, applied: Arc<AtomicI64>) -> Result<Applier> {
        let conn = Conn::connect(&cfg.target, cfg.timeout, &cfg.target_auth)?;
        let mut rd = conn.try_clone()?;
        let (tx, rx) = std::sync::mpsc::sync_channel::<Batch>(4096);
        let acks = Arc::new(Acks::default());
        let acks2 = acks.clone();
        let reader = std::thread::spawn(move || {
            let m = metrics::get();
            let mut errors_shown = 0u32;
            while let Ok(b) = rx.recv() {
                for name in &b.names {
                    let r = match rd.recv() {
                        Ok(r) => r,
                        Err(e) => {
                            *acks2.failed.lock() = Some(e.to_string());
                            rd.shutdown();
                            return;
                        }
                    };
                    let bad = match &r {
                        crate::resp::Reply::Error(e) => Some(e.clone()),
                        crate::resp::Reply::Array(a) => a.iter().find_map(|x| match x {
                            crate::resp::Reply::Error(e) => Some(e.clone()),
                            _ => None,
                        }),
                        _ => None,
                    };
                    if let (Some(_), true) = (&bad, name.as_ref() == TOLERANT) {
                        continue;
                    }
                    if let Some(e) = bad {
                        m.copy_errors.inc();
                        m.stream_commands.with_label_values(&["refused"]).inc();
                        if errors_shown < 20 {
                            errors_shown += 1;
                            eprintln!("Ferrite refused {}: {e}", String::from_utf8_lossy(name));
                        }
                    }
                }
                if let Some(off) = b.applied {
                    applied.store(off, Ordering::SeqCst);
                }
                acks2.batches_done.fetch_add(1, Ordering::SeqCst);
            }
        });
        Ok(Applier {
            conn: Some(conn),
            out: Vec::with_capacity(WRITE_AT + (64 << 10)),
            names: Vec::new(),
            tx: Some(tx),
            reader: Some(reader),
            acks,
            batches_sent: 0,
            last_end: None,
            written_end: None,
        })
    }

    fn check(&self) -> Result<()> {
        if let Some(e) = self.acks.failed.lock().clone() {
            return Err(Error::Conn(format!("target: {e}")));
        }
        if self.conn.is_none() {
            return Err(Error::Conn("target connection lost".into()));
        }
        Ok(())
    }

    /// Usable (else the caller connects a new one).
    fn healthy(&self) -> bool {
        self.check().is_ok()
    }

    /// Queue one command.
    fn push<A: AsRef<[u8]>>(&mut self, args: &[A]) -> Result<()> {
        crate::resp::encode_cmd(args, &mut self.out);
        self.names.push(Bytes::copy_from_slice(args.first().map(|a| a.as_ref()).unwrap_or_default()));
        if self.out.len() >= WRITE_AT {
            self.write_out(None)?;
        }
        Ok(())
    }

    /// Queue one command whose error reply is expected at times and not a copy error (see `Route::Function`).
    fn push_tolerant<A: AsRef<[u8]>>(&mut self, args: &[A]) -> Result<()> {
        crate::resp::encode_cmd(args, &mut self.out);
        self.names.push(Bytes::from_static(TOLERANT));
        if self.out.len() >= WRITE_AT {
            self.write_out(None)?;
        }
        Ok(())
    }

    /// Queue a transaction (MULTI, the commands, EXEC) as one block: a
    /// write never carries a part of it.
    fn push_block(&mut self, cmds: &[Vec<Bytes>]) -> Result<()> {
        crate::resp::encode_cmd(&[&b"MULTI"[..]], &mut self.out);
        self.names.push(Bytes::from_static(b"MULTI"));
        for c in cmds {
            crate::resp::encode_cmd(c, &mut self.out);
            self.names.push(c.first().cloned().unwrap_or_default());
        }
        crate::resp::encode_cmd(&[&b"EXEC"[..]], &mut self.out);
        self.names.push(Bytes::from_static(b"EXEC"));
        if self.out.len() >= WRITE_AT {
            self.write_out(None)?;
        }
        Ok(())
    }

    /// Write what is buffered; `applied`: offset to publish once it is acknowledged.
    fn write_out(&mut self, applied: Option<i64>) -> Result<()> {
        self.check()?;
        if self.names.is_empty() {
            if let Some(off) = applied {
                // Nothing in flight for this offset beyond what is already
                // queued: publish it after the earlier batches.
                self.send_batch(Batch { names: Vec::new(), applied: Some(off) })?;
            }
            return Ok(());
        }
        let conn = self.conn.as_mut().ok_or_else(|| Error::Conn("target connection lost".into()))?;
        if let Err(e) = conn.write_all(&self.out) {
            self.conn = None;
            return Err(e);
        }
        self.out.clear();
        if self.out.capacity() > 4 * WRITE_AT {
            self.out.shrink_to(WRITE_AT + (64 << 10));
        }
        if self.last_end.is_some() {
            self.written_end = self.last_end;
        }
        let names = std::mem::take(&mut self.names);
        self.send_batch(Batch { names, applied })
    }

    fn send_batch(&mut self, b: Batch) -> Result<()> {
        let tx = self.tx.as_ref().ok_or_else(|| Error::Conn("target connection lost".into()))?;
        if tx.send(b).is_err() {
            self.check()?;
            return Err(Error::Conn("target reply reader stopped".into()));
        }
        self.batches_sent += 1;
        Ok(())
    }

    /// Write everything and wait until Ferrite acknowledged it.
    fn sync(&mut self) -> Result<()> {
        self.write_out(None)?;
        let t0 = Instant::now();
        while self.acks.batches_done.load(Ordering::SeqCst) < self.batches_sent {
            self.check()?;
            if t0.elapsed() > Duration::from_secs(600) {
                return Err(Error::Conn("target: no reply for 10 minutes".into()));
            }
            std::thread::sleep(Duration::from_micros(200));
        }
        self.check()
    }

    /// Forget what is buffered and not written (beyond `written_end`).
    fn discard(&mut self) {
        self.out.clear();
        self.names.clear();
        self.last_end = self.written_end;
    }
}

impl Drop for Applier {
    fn drop(&mut self) {
        self.tx = None;
        if let Some(c) = &self.conn {
            if self.acks.failed.lock().is_some() {
                c.shutdown();
            }
        }
        if let Some(h) = self.reader.take() {
            // The reader ends when the channel closes (after the replies
            // in flight) or when the socket fails.
            if let Some(c) = &self.conn {
                c.set_read_timeout(Some(Duration::from_secs(5)));
            }
            let _ = h.join();
        }
    }
}

fn read_line(c: &mut Conn, skip_newlines: bool) -> Result<Vec<u8>> {
    loop {
        if skip_newlines {
            let n = c.buffered().iter().take_while(|b| **b == b'\n').count();
            c.consume(n);
        }
        if let Some(p) = c.buffered().windows(2).position(|w| w == b"\r\n") {
            let l = c.buffered()[..p].to_vec();
            c.consume(p + 2);
            return Ok(l);
        }
        if c.buffered().len() > 64 * 1024 {
            return Err(Error::Protocol("line too long from master".into()));
        }
        c.fill()?;
    }
}

fn session(
    cfg: &ReplConfig,
    sh: &Shared,
    master: &str,
    psync: &mut Option<Psync>,
    full_syncs: &mut u32,
    dst: &mut Applier,
) -> Result<()> {
    let mut c = Conn::connect(master, cfg.timeout, &cfg.source_auth)?;
    let r = c.cmd(&cmd!["PING"])?;
    if let crate::resp::Reply::Error(e) = &r {
        if !e.starts_with("NOAUTH") {
            return Err(Error::Server(format!("{master}: PING: {e}")));
        }
    }
    c.cmd(&cmd!["REPLCONF", "listening-port", cfg.replica_port])?
        .ok()
        .map_err(|e| Error::Server(format!("{master}: REPLCONF listening-port: {e}")))?;
    let capa = if cfg.disk_sync {
        cmd!["REPLCONF", "capa", "psync2"]
    } else {
        cmd!["REPLCONF", "capa", "eof", "capa", "psync2"]
    };
    c.cmd(&capa)?.ok().map_err(|e| Error::Server(format!("{master}: REPLCONF capa: {e}")))?;
    // Settings of the master that only matter while it forks the full-sync child, changed for the handshake and
    // put back as soon as the master answered (the child keeps what it was forked with; sources that refuse
    // CONFIG keep their settings):
    // - a diskless full sync waits repl-diskless-sync-delay (5 s by default) for more replicas; Redis 7.0 starts
    //   at once when repl-diskless-sync-max-replicas replicas wait: set it to 1;
    // - rdbcompression no: LZF over every value was most of the master's CPU during the sync.
    let tweaks = if psync.is_some() { Vec::new() } else { sync_tweaks(master, cfg) };
    let args = match psync.as_ref() {
        Some(p) => cmd!["PSYNC", p.replid.as_str(), p.offset + 1],
        None => cmd!["PSYNC", "?", "-1"],
    };
    c.send(&[args])?;
    let line = read_line(&mut c, true);
    if !tweaks.is_empty() {
        restore_tweaks(master, cfg, &tweaks);
    }
    let line = line?;
    let line = String::from_utf8_lossy(&line).into_owned();
    if let Some(rest) = line.strip_prefix("+FULLRESYNC ") {
        let mut it = rest.split_whitespace();
        let replid = it.next().unwrap_or_default().to_string();
        let offset: i64 = it
            .next()
            .and_then(|x| x.parse().ok())
            .ok_or_else(|| Error::Protocol(format!("{master}: bad FULLRESYNC line {line:?}")))?;
        *full_syncs += 1;
        // Until this load completes, a retry must be a full resync again
        // (which empties the slots first): never continue on top of a
        // half-loaded RDB.
        *psync = None;
        dst.last_end = None;
        dst.written_end = None;
        if *full_syncs > 1 {
            // A second full sync (or a retry of an interrupted first one):
            // what we loaded before may hold keys the master no longer has.
            // Empty our still-owned slots first.
            let mut mine = SlotSet::default();
            for s in cfg.slots.iter() {
                if cfg.filter.applies(s) {
                    mine.insert(s);
                }
            }
            dst.sync()?;
            purge(cfg, &mine)?;
        }
        load_rdb(cfg, master, &mut c, dst)?;
        dst.sync()?;
        dst.last_end = Some(offset);
        dst.written_end = Some(offset);
        *psync = Some(Psync { replid, offset });
        sh.applied.store(offset, Ordering::SeqCst);
        sh.received.store(offset, Ordering::SeqCst);
        sh.loaded.store(true, Ordering::SeqCst);
    } else if let Some(rest) = line.strip_prefix("+CONTINUE") {
        let p = psync.as_mut().ok_or_else(|| Error::Protocol("CONTINUE without a previous sync".into()))?;
        dst.last_end = Some(p.offset);
        dst.written_end = Some(p.offset);
        let id = rest.trim();
        if !id.is_empty() {
            p.replid = id.to_string();
        }
    } else {
        return Err(Error::Server(format!("{master}: PSYNC: {line}")));
    }
    let p = psync.as_mut().ok_or_else(|| Error::Other("no sync state".into()))?;
    stream(cfg, sh, &mut c, p, dst)
}

fn purge(cfg: &ReplConfig, slots: &SlotSet) -> Result<u64> {
    let mut t = crate::copy::Target::connect(&cfg.target, cfg.timeout, &cfg.target_auth)?;
    crate::copy::purge_target(&mut t, slots)
}

/// Receive and apply the RDB payload.
fn load_rdb(cfg: &ReplConfig, master: &str, c: &mut Conn, dst: &mut Applier) -> Result<()> {
    c.set_read_timeout(Some(cfg.timeout.max(Duration::from_secs(60))));
    let head = read_line(c, true)?;
    let mut loader = RdbLoader::new(cfg, master);
    if let Some(mark) = head.strip_prefix(b"$EOF:") {
        if mark.len() != 40 {
            return Err(Error::Protocol("bad $EOF mark".into()));
        }
        let mark = mark.to_vec();
        // Diskless: data until the 40-byte mark. Keep the last 40 bytes back
        // until we know they are not the mark.
        let mut tail: Vec<u8> = Vec::new();
        loop {
            if c.buffered().is_empty() {
                c.fill()?;
            }
            tail.extend_from_slice(c.buffered());
            let n = c.buffered().len();
            c.consume(n);
            if tail.len() >= 40 && tail[tail.len() - 40..] == mark[..] {
                let body = tail.len() - 40;
                loader.feed(&tail[..body], dst)?;
                break;
            }
            if tail.len() > 40 {
                let cut = tail.len() - 40;
                loader.feed(&tail[..cut], dst)?;
                tail.drain(..cut);
            }
        }
    } else if let Some(n) = head.strip_prefix(b"$") {
        let mut left: u64 = std::str::from_utf8(n)
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| Error::Protocol("bad RDB length".into()))?;
        while left > 0 {
            if c.buffered().is_empty() {
                c.fill()?;
            }
            let take = (c.buffered().len() as u64).min(left) as usize;
            let chunk = c.buffered()[..take].to_vec();
            c.consume(take);
            left -= take as u64;
            loader.feed(&chunk, dst)?;
        }
    } else {
        return Err(Error::Protocol(format!("expected the RDB payload, got {:?}", String::from_utf8_lossy(&head))));
    }
    loader.finish(dst)?;
    c.set_read_timeout(Some(cfg.timeout));
    Ok(())
}

/// Turns RDB events into commands for Ferrite.
struct RdbLoader<'a> {
    cfg: &'a ReplConfig,
    /// The master the RDB comes from (asked for the pending entries of a stream sent in parts).
    master: &'a str,
    parser: ferrite_rdb::file::RdbParser,
    db: u64,
    /// The key being received: name, deadline, parts so far, keep?
    cur: Option<CurKey>,
    done: bool,
}

struct CurKey {
    key: Vec<u8>,
    expire_ms: Option<i64>,
    keep: bool,
    parts: u64,
    stream: Option<ferrite_rdb::RdbStream>,
    /// Entry bytes gathered in `stream` and not yet sent.
    stream_bytes: usize,
    /// The stream went over STREAM_IN_PARTS_BYTES: its entries are sent as they arrive (XADD), the ids of its
    /// tombstones (deleted entries still in the RDB) are kept here as placeholders to delete at the end.
    spilled: Option<Vec<ferrite_rdb::StreamId>>,
    /// Ids pending in some consumer group of the stream on the master when its sending in parts began, in
    /// order, not yet passed by the entries sent: a pending entry whose message no longer exists gets a
    /// placeholder entry at its place, so that it can be claimed at the end.
    pending: std::collections::VecDeque<ferrite_rdb::StreamId>,
}

/// A stream whose entries gathered from the RDB exceed this is sent in parts (XADD per entry, then its
/// groups, pending entries and counters) instead of one RESTORE, so the tool's memory stays bounded.
const STREAM_IN_PARTS_BYTES: usize = 8 << 20;

fn sid(id: &ferrite_rdb::StreamId) -> String {
    format!("{}-{}", id.ms, id.seq)
}

/// Send the gathered entries of a stream being sent in parts. A tombstone becomes a placeholder entry (so that
/// a pending entry of a deleted message can still be claimed), deleted again by `finish_stream`.
fn send_stream_entries(cur: &mut CurKey, dst: &mut Applier) -> Result<()> {
    let (Some(acc), Some(placeholders)) = (cur.stream.as_mut(), cur.spilled.as_mut()) else { return Ok(()) };
    let m = metrics::get();
    for e in acc.entries.drain(..) {
        while let Some(p) = cur.pending.front().copied().filter(|p| *p <= e.id) {
            cur.pending.pop_front();
            if p < e.id {
                placeholder(&cur.key, p, placeholders, dst)?;
            }
        }
        let id = sid(&e.id);
        if e.deleted {
            placeholders.push(e.id);
            dst.push(&[&b"XADD"[..], &cur.key, id.as_bytes(), b"ferrite-migrate", b"deleted entry placeholder"])?;
            continue;
        }
        let mut c: Vec<&[u8]> = Vec::with_capacity(3 + 2 * e.fields.len());
        c.extend([&b"XADD"[..], &cur.key, id.as_bytes()]);
        for (f, v) in &e.fields {
            m.bytes_copied.inc_by((f.len() + v.len()) as u64);
            c.push(f);
            c.push(v);
        }
        dst.push(&c)?;
    }
    acc.node_sizes.clear();
    cur.stream_bytes = 0;
    Ok(())
}

fn placeholder(
    key: &[u8],
    id: ferrite_rdb::StreamId,
    placeholders: &mut Vec<ferrite_rdb::StreamId>,
    dst: &mut Applier,
) -> Result<()> {
    placeholders.push(id);
    let id = sid(&id);
    dst.push(&[&b"XADD"[..], key, id.as_bytes(), b"ferrite-migrate", b"deleted entry placeholder"])
}

fn parse_sid(b: &[u8]) -> Option<ferrite_rdb::StreamId> {
    crate::streamcopy::parse_id(b).map(|(ms, seq)| ferrite_rdb::StreamId::new(ms, seq))
}

/// The ids pending in any consumer group of stream `key` on `master` (XINFO GROUPS, then XPENDING in pages),
/// sorted and without duplicates. Entries acknowledged after the RDB was made are in the list no more, and
/// that is fine: the replication stream acknowledges them on Ferrite too.
fn live_pending_ids(
    cfg: &ReplConfig,
    master: &str,
    key: &[u8],
) -> Result<std::collections::VecDeque<ferrite_rdb::StreamId>> {
    let mut c = Conn::connect(master, cfg.timeout, &cfg.source_auth)?;
    let groups = c.cmd(&[&b"XINFO"[..], b"GROUPS", key])?;
    if groups.is_error() {
        // Gone or replaced meanwhile: the stream of commands will say what it became.
        return Ok(Default::default());
    }
    let mut ids = std::collections::BTreeSet::new();
    for g in groups.items() {
        let Some(name) = g.field("name").and_then(|x| x.as_bytes()).map(|x| x.to_vec()) else { continue };
        let mut start = b"-".to_vec();
        loop {
            let r = c.cmd(&[&b"XPENDING"[..], key, &name, &start, b"+", b"10000"])?;
            let items = r.items();
            for e in items {
                if let Some(id) = e.items().first().and_then(|x| x.as_bytes()).and_then(parse_sid) {
                    ids.insert(id);
                }
            }
            match items.last().and_then(|e| e.items().first()).and_then(|x| x.as_bytes()) {
                Some(last) if items.len() == 10000 => start = [&b"("[..], last].concat(),
                _ => break,
            }
        }
    }
    Ok(ids.into_iter().collect())
}

/// The end of a stream sent in parts: groups, consumers, pending entries (XCLAIM ... FORCE with the source's
/// delivery count and time), placeholders removed, then the stream's and the groups' ids and counters, and the
/// TTL. A pending entry whose message is neither in the RDB nor a tombstone (trimmed away) cannot be claimed on
/// an append-only stream: it is dropped (XCLAIM FORCE ignores it) and `verify` reports it.
fn finish_stream(cfg: &ReplConfig, cur: &mut CurKey, dst: &mut Applier) -> Result<()> {
    send_stream_entries(cur, dst)?;
    let (Some(s), Some(mut placeholders)) = (cur.stream.take(), cur.spilled.take()) else { return Ok(()) };
    while let Some(p) = cur.pending.pop_front() {
        if p <= s.last_id && placeholders.last().is_none_or(|l| *l < p) {
            placeholder(&cur.key, p, &mut placeholders, dst)?;
        }
    }
    let key = cur.key.clone();
    for g in &s.groups {
        dst.push(&[&b"XGROUP"[..], b"CREATE", &key, &g.name, b"0"])?;
        let mut owner: std::collections::HashMap<ferrite_rdb::StreamId, &[u8]> = std::collections::HashMap::new();
        for c in &g.consumers {
            dst.push(&[&b"XGROUP"[..], b"CREATECONSUMER", &key, &g.name, &c.name])?;
            for id in &c.pending {
                owner.insert(*id, &c.name);
            }
        }
        for p in &g.pel {
            let Some(consumer) = owner.get(&p.id) else { continue };
            let (id, count) = (sid(&p.id), p.delivery_count.to_string());
            let time = (p.delivery_time_ms + cfg.clock_offset_ms).max(0).to_string();
            dst.push(&[
                &b"XCLAIM"[..],
                &key,
                &g.name,
                consumer,
                b"0",
                id.as_bytes(),
                b"TIME",
                time.as_bytes(),
                b"RETRYCOUNT",
                count.as_bytes(),
                b"FORCE",
                b"JUSTID",
            ])?;
        }
    }
    for ch in placeholders.chunks(500) {
        let ids: Vec<String> = ch.iter().map(sid).collect();
        let mut c: Vec<&[u8]> = vec![b"XDEL", &key];
        c.extend(ids.iter().map(|x| x.as_bytes()));
        dst.push(&c)?;
    }
    let (last, added, maxdel) = (sid(&s.last_id), s.entries_added.to_string(), sid(&s.max_deleted_entry_id));
    dst.push(&[
        &b"XSETID"[..],
        &key,
        last.as_bytes(),
        b"ENTRIESADDED",
        added.as_bytes(),
        b"MAXDELETEDID",
        maxdel.as_bytes(),
    ])?;
    for g in &s.groups {
        let id = sid(&g.last_id);
        let read = g.entries_read.to_string();
        if g.entries_read >= 0 {
            dst.push(&[&b"XGROUP"[..], b"SETID", &key, &g.name, id.as_bytes(), b"ENTRIESREAD", read.as_bytes()])?;
        } else {
            dst.push(&[&b"XGROUP"[..], b"SETID", &key, &g.name, id.as_bytes()])?;
        }
    }
    if let Some(at) = cur.expire_ms {
        let at = (at + cfg.clock_offset_ms).to_string();
        dst.push(&[&b"PEXPIREAT"[..], &key, at.as_bytes()])?;
    }
    Ok(())
}

impl<'a> RdbLoader<'a> {
    fn new(cfg: &'a ReplConfig, master: &'a str) -> RdbLoader<'a> {
        RdbLoader { cfg, master, parser: ferrite_rdb::file::RdbParser::new(), db: 0, cur: None, done: false }
    }

    fn feed(&mut self, data: &[u8], dst: &mut Applier) -> Result<()> {
        self.parser.feed(data);
        self.drain(dst)
    }

    fn finish(&mut self, dst: &mut Applier) -> Result<()> {
        self.parser.end_of_input();
        self.drain(dst)?;
        if !self.done {
            return Err(Error::Protocol("RDB payload ended before its EOF opcode".into()));
        }
        Ok(())
    }

    fn drain(&mut self, dst: &mut Applier) -> Result<()> {
        use ferrite_rdb::file::Event as E;
        loop {
            let ev = self.parser.next_event().map_err(|e| Error::Protocol(format!("RDB: {e}")))?;
            let Some(ev) = ev else { return Ok(()) };
            match ev {
                E::SelectDb(db) => self.db = db,
                E::Key { key, expire_ms, .. } => {
                    let slot = ferrite_commands::key_hash_slot(&key);
                    let keep = self.db == 0 && self.cfg.slots.contains(slot) && self.cfg.filter.applies(slot);
                    self.cur = Some(CurKey {
                        key,
                        expire_ms,
                        keep,
                        parts: 0,
                        stream: None,
                        stream_bytes: 0,
                        spilled: None,
                        pending: Default::default(),
                    });
                }
                E::Part(v) => {
                    let Some(cur) = self.cur.as_mut() else {
                        return Err(Error::Protocol("RDB value part outside a key".into()));
                    };
                    if !cur.keep {
                        continue;
                    }
                    apply_part(self.cfg, self.master, cur, v, dst)?;
                }
                E::EndKey => {
                    if let Some(mut cur) = self.cur.take() {
                        if cur.keep {
                            let in_parts = cur.spilled.is_some();
                            if in_parts {
                                finish_stream(self.cfg, &mut cur, dst)?;
                            }
                            if let Some(s) = cur.stream.take() {
                                restore(self.cfg, &cur.key, cur.expire_ms, &RdbValue::Stream(Box::new(s)), dst)?;
                            }
                            if cur.parts > 0 {
                                metrics::get().keys_copied.inc();
                            }
                            // A key sent in several parts got its TTL with the
                            // first one; if it ran out meanwhile, the next parts
                            // re-created it without one. Set it again (a
                            // deadline in the past deletes the key).
                            if let (Some(at), true) = (cur.expire_ms, cur.parts > 1 && !in_parts) {
                                let at = (at + self.cfg.clock_offset_ms).to_string();
                                dst.push(&[&b"PEXPIREAT"[..], &cur.key, at.as_bytes()])?;
                            }
                        }
                    }
                }
                E::Eof { checksum_ok, .. } => {
                    if !checksum_ok {
                        return Err(Error::Protocol("RDB checksum mismatch".into()));
                    }
                    self.done = true;
                }
                _ => {}
            }
        }
    }
}

fn restore(cfg: &ReplConfig, key: &[u8], expire_ms: Option<i64>, v: &RdbValue, dst: &mut Applier) -> Result<()> {
    // The absolute deadline on the target's clock; a key already expired there is deleted instead.
    let deadline = match expire_ms.map(|at| at + cfg.clock_offset_ms) {
        Some(at) if at <= crate::now_ms() + cfg.clock_offset_ms => return dst.push(&[&b"DEL"[..], key]),
        Some(at) => Some(at.max(1).to_string()),
        None => None,
    };
    if let RdbValue::Str(val) = v {
        // Strings (most keys) go as SET: the target neither checks a payload checksum nor decodes RDB for them,
        // and the result is the same value with the same absolute expiry.
        metrics::get().bytes_copied.inc_by(val.len() as u64);
        return match &deadline {
            Some(at) => dst.push(&[&b"SET"[..], key, val, b"PXAT", at.as_bytes()]),
            None => dst.push(&[&b"SET"[..], key, val]),
        };
    }
    let payload = plain_payload(v);
    metrics::get().bytes_copied.inc_by(payload.len() as u64);
    match &deadline {
        Some(at) => dst.push(&[&b"RESTORE"[..], key, at.as_bytes(), &payload, b"REPLACE", b"ABSTTL"]),
        None => dst.push(&[&b"RESTORE"[..], key, b"0", &payload, b"REPLACE"]),
    }
}

fn apply_part(cfg: &ReplConfig, master: &str, cur: &mut CurKey, v: RdbValue, dst: &mut Applier) -> Result<()> {
    cur.parts += 1;
    if let RdbValue::Stream(s) = v {
        cur.stream_bytes += s
            .entries
            .iter()
            .map(|e| 24 + e.fields.iter().map(|(f, x)| f.len() + x.len() + 16).sum::<usize>())
            .sum::<usize>();
        match cur.stream.as_mut() {
            None => cur.stream = Some(*s),
            Some(acc) => {
                acc.entries.extend(s.entries);
                acc.node_sizes.extend(s.node_sizes);
                acc.length = s.length;
                acc.last_id = s.last_id;
                acc.first_id = s.first_id;
                acc.max_deleted_entry_id = s.max_deleted_entry_id;
                acc.entries_added = s.entries_added;
                acc.groups = s.groups;
            }
        }
        if cur.spilled.is_none() && cur.stream_bytes > STREAM_IN_PARTS_BYTES {
            // Too big to gather: from here on entries go to Ferrite as they arrive.
            dst.push(&[&b"DEL"[..], &cur.key])?;
            cur.spilled = Some(Vec::new());
            cur.pending = live_pending_ids(cfg, master, &cur.key)?;
        }
        if cur.spilled.is_some() {
            send_stream_entries(cur, dst)?;
        }
        return Ok(());
    }
    if cur.parts == 1 {
        return restore(cfg, &cur.key.clone(), cur.expire_ms, &v, dst);
    }
    let key = cur.key.clone();
    let m = metrics::get();
    match v {
        RdbValue::List(items) => {
            for ch in items.chunks(500) {
                let mut c = cmd!["RPUSH", &key];
                for e in ch {
                    m.bytes_copied.inc_by(e.len() as u64);
                    c.push(e.clone());
                }
                dst.push(&c)?;
            }
        }
        RdbValue::Set(items) => {
            for ch in items.chunks(500) {
                let mut c = cmd!["SADD", &key];
                for e in ch {
                    m.bytes_copied.inc_by(e.len() as u64);
                    c.push(e.clone());
                }
                dst.push(&c)?;
            }
        }
        RdbValue::ZSet(items) => {
            for ch in items.chunks(500) {
                let mut c = cmd!["ZADD", &key];
                for (e, s) in ch {
                    m.bytes_copied.inc_by(e.len() as u64 + 8);
                    c.push(ferrite_resp::num::g17(*s));
                    c.push(e.clone());
                }
                dst.push(&c)?;
            }
        }
        RdbValue::Hash(items) => {
            for ch in items.chunks(500) {
                let mut c = cmd!["HSET", &key];
                for (f, v) in ch {
                    m.bytes_copied.inc_by((f.len() + v.len()) as u64);
                    c.push(f.clone());
                    c.push(v.clone());
                }
                dst.push(&c)?;
            }
        }
        other => {
            // A single-part type arriving in parts: replace with the last one.
            restore(cfg, &key, cur.expire_ms, &other, dst)?;
        }
    }
    Ok(())
}

/// What to do with one stream command.
enum Route {
    Apply,
    Skip,
    FlushOwned,
    /// FUNCTION LOAD/DELETE/FLUSH/RESTORE: every master of the source sends the same ones (functions are loaded
    /// on each node); applied so that Ferrite follows them, LOAD with REPLACE and errors tolerated, so the second
    /// master's copy of a change is a no-op.
    Function,
}

fn route(cfg: &ReplConfig, db: u64, args: &[Bytes]) -> Route {
    let Some(name) = args.first() else { return Route::Skip };
    let lname = name.to_ascii_lowercase();
    match lname.as_slice() {
        b"ping" | b"replconf" | b"select" | b"multi" | b"exec" => return Route::Skip,
        b"flushall" => return Route::FlushOwned,
        b"flushdb" => return if db == 0 { Route::FlushOwned } else { Route::Skip },
        b"function" => {
            let sub = args.get(1).map(|x| x.to_ascii_lowercase()).unwrap_or_default();
            return match sub.as_slice() {
                b"load" | b"delete" | b"flush" | b"restore" => Route::Function,
                _ => Route::Skip,
            };
        }
        _ => {}
    }
    if db != 0 {
        return Route::Skip;
    }
    let table = ferrite_commands::table();
    let Some(mut meta) = table.get(name) else { return Route::Skip };
    if !meta.subcommands.is_empty() {
        match args.get(1).and_then(|s| meta.subcommand(s)) {
            Some(sub) => meta = sub,
            None => return Route::Skip,
        }
    }
    let Ok(keys) = ferrite_commands::get_keys(meta, args) else { return Route::Skip };
    let Some(&first) = keys.first() else { return Route::Skip };
    let Some(k) = args.get(first) else { return Route::Skip };
    let slot = ferrite_commands::key_hash_slot(k);
    if cfg.slots.contains(slot) && cfg.filter.applies(slot) {
        Route::Apply
    } else {
        Route::Skip
    }
}

fn stream(cfg: &ReplConfig, sh: &Shared, c: &mut Conn, p: &mut Psync, dst: &mut Applier) -> Result<()> {
    c.set_read_timeout(Some(Duration::from_millis(100)));
    let mut parser = ferrite_resp::RequestParser::new(ferrite_resp::Limits::default());
    let mut buf = BytesMut::new();
    let mut args: Vec<Bytes> = Vec::new();
    let mut db = 0u64;
    let mut tx: Option<Vec<Vec<Bytes>>> = None;
    let mut last_ack = Instant::now();
    let mut last_data = Instant::now();
    let mut caught_up_at = Instant::now();
    let m = metrics::get();
    let label = c.addr.clone();
    // Offset of every byte handed to the parser, and offset at the end of
    // the last complete command (the parser consumes partial commands).
    let mut fed_off = p.offset;
    let mut boundary = p.offset;
    // An immediate first ACK: after a diskless transfer the master keeps
    // the replica offline (and the stream buffered) until it gets one.
    c.send(&[cmd!["REPLCONF", "ACK", p.offset]])?;
    loop {
        if sh.stop.load(Ordering::SeqCst) {
            return Ok(());
        }
        let got = c.fill_or_timeout()?;
        if got > 0 {
            last_data = Instant::now();
            buf.extend_from_slice(c.buffered());
            let n = c.buffered().len();
            c.consume(n);
        } else if last_data.elapsed() > Duration::from_secs(60) {
            return Err(Error::Conn(format!("{}: no data from the master for 60 s", c.addr)));
        }
        loop {
            let before = buf.len();
            // `args` is cleared only after a complete command: the parser
            // appends the arguments of a command that spans reads.
            let r = parser.parse(&mut buf, &mut args).map_err(|e| Error::Protocol(e.message()))?;
            fed_off += (before - buf.len()) as i64;
            if r == ferrite_resp::parser::Parsed::Incomplete {
                break;
            }
            let args = std::mem::take(&mut args);
            let start = boundary;
            boundary = fed_off;
            let name = args.first().map(|a| a.to_ascii_lowercase()).unwrap_or_default();
            if tx.is_none() {
                // Set before the command is queued: a write that carries
                // it records that everything up to its end was written.
                dst.last_end = Some(boundary);
            }
            if name == b"replconf" && args.get(1).map(|a| a.eq_ignore_ascii_case(b"getack")).unwrap_or(false) {
                if tx.is_none() {
                    // Answer with everything before the GETACK applied.
                    dst.write_out(Some(start))?;
                    dst.sync()?;
                    p.offset = start;
                }
                c.send(&[cmd!["REPLCONF", "ACK", sh.applied.load(Ordering::SeqCst)]])?;
                last_ack = Instant::now();
                continue;
            }
            if name == b"select" {
                db = args.get(1).and_then(|a| ferrite_resp::num::parse_i64(a)).unwrap_or(0).max(0) as u64;
                continue;
            }
            if name == b"multi" {
                tx = Some(Vec::new());
                continue;
            }
            if name == b"exec" {
                if let Some(cmds) = tx.take() {
                    dst.last_end = Some(boundary);
                    if !cmds.is_empty() {
                        // One block: never written in part.
                        dst.push_block(&cmds)?;
                    }
                }
                continue;
            }
            match route(cfg, db, &args) {
                Route::Skip => m.stream_commands.with_label_values(&["skipped"]).inc(),
                Route::FlushOwned => {
                    dst.sync()?;
                    let mut mine = SlotSet::default();
                    for s in cfg.slots.iter() {
                        if cfg.filter.applies(s) {
                            mine.insert(s);
                        }
                    }
                    purge(cfg, &mine)?;
                    m.stream_commands.with_label_values(&["flush"]).inc();
                }
                Route::Function => {
                    m.stream_commands.with_label_values(&["applied"]).inc();
                    let mut c = args;
                    let is_load = c.get(1).is_some_and(|x| x.eq_ignore_ascii_case(b"load"));
                    if is_load && !c.iter().skip(2).take(1).any(|x| x.eq_ignore_ascii_case(b"replace")) {
                        c.insert(2, Bytes::from_static(b"REPLACE"));
                    }
                    match tx.as_mut() {
                        Some(t) => t.push(c),
                        None => dst.push_tolerant(&c)?,
                    }
                }
                Route::Apply => {
                    m.stream_commands.with_label_values(&["applied"]).inc();
                    match tx.as_mut() {
                        Some(t) => t.push(args),
                        None => dst.push(&args)?,
                    }
                }
            }
        }
        if tx.is_none() {
            // Written now, applied (published by the reply reader) once
            // Ferrite acknowledged it.
            dst.write_out(Some(boundary))?;
            p.offset = boundary;
        }
        let applied = sh.applied.load(Ordering::SeqCst);
        sh.received.store(fed_off, Ordering::SeqCst);
        let lag = fed_off - applied;
        if lag <= 0 {
            caught_up_at = Instant::now();
        }
        m.lag_bytes.with_label_values(&[&label]).set(lag.max(0));
        m.lag_ms.with_label_values(&[&label]).set(caught_up_at.elapsed().as_millis() as i64);
        m.applied_offset.with_label_values(&[&label]).set(applied);
        if last_ack.elapsed() >= Duration::from_secs(1) {
            c.send(&[cmd!["REPLCONF", "ACK", applied]])?;
            last_ack = Instant::now();
        }
    }
}

/// RDB length encoding.
fn put_len(out: &mut Vec<u8>, n: usize) {
    if n < 64 {
        out.push(n as u8);
    } else if n < 16384 {
        out.push(0x40 | (n >> 8) as u8);
        out.push(n as u8);
    } else if n <= u32::MAX as usize {
        out.push(0x80);
        out.extend_from_slice(&(n as u32).to_be_bytes());
    } else {
        out.push(0x81);
        out.extend_from_slice(&(n as u64).to_be_bytes());
    }
}

fn put_str(out: &mut Vec<u8>, s: &[u8]) {
    put_len(out, s.len());
    out.extend_from_slice(s);
}

/// A DUMP payload for `v` in the plain (non-compact, uncompressed) RDB
/// encodings every Redis since 2.x and Ferrite load: string (0), list as a
/// linked list (1), set (2), hash (4), sorted set with binary scores (5).
/// Unlike `ferrite_rdb::dump_payload` it never LZF-compresses (the values
/// came out of an RDB that was compressed already where it paid, and
/// compressing again cost a third of the tool's CPU). Streams and module
/// values use `ferrite_rdb::dump_payload`.
fn plain_payload(v: &RdbValue) -> Vec<u8> {
    use ferrite_rdb::types as t;
    let mut out = Vec::new();
    match v {
        RdbValue::Str(s) => {
            out.reserve(s.len() + 16);
            out.push(t::STRING);
            put_str(&mut out, s);
        }
        RdbValue::List(items) | RdbValue::Set(items) => {
            out.reserve(items.iter().map(|e| e.len() + 5).sum::<usize>() + 16);
            out.push(if matches!(v, RdbValue::List(_)) { t::LIST } else { t::SET });
            put_len(&mut out, items.len());
            for e in items {
                put_str(&mut out, e);
            }
        }
        RdbValue::Hash(items) => {
            out.reserve(items.iter().map(|(f, x)| f.len() + x.len() + 10).sum::<usize>() + 16);
            out.push(t::HASH);
            put_len(&mut out, items.len());
            for (f, x) in items {
                put_str(&mut out, f);
                put_str(&mut out, x);
            }
        }
        RdbValue::ZSet(items) => {
            out.reserve(items.iter().map(|(m, _)| m.len() + 13).sum::<usize>() + 16);
            out.push(t::ZSET_2);
            put_len(&mut out, items.len());
            for (m, sc) in items {
                put_str(&mut out, m);
                out.extend_from_slice(&sc.to_le_bytes());
            }
        }
        other => return ferrite_rdb::dump_payload(other),
    }
    out.extend_from_slice(&ferrite_rdb::RDB_VERSION.to_le_bytes());
    let crc = ferrite_rdb::crc64::crc64(0, &out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

/// The master settings to change for the full-sync handshake: (name, value wanted, value to put back).
fn wanted_tweaks(cfg: &ReplConfig) -> Vec<(&'static str, &'static [u8], &'static [u8])> {
    let mut v = Vec::new();
    if !cfg.disk_sync {
        // Only from 0 ("wait the whole delay"): another value is the operator's choice.
        v.push(("repl-diskless-sync-max-replicas", &b"1"[..], &b"0"[..]));
    }
    if !cfg.keep_rdb_compression {
        v.push(("rdbcompression", &b"no"[..], &b"yes"[..]));
    }
    v
}

/// Apply `wanted_tweaks` on `master`; returns (name, old value) of each setting changed. A setting is changed
/// only when it holds the expected old value; a refused CONFIG changes nothing.
fn sync_tweaks(master: &str, cfg: &ReplConfig) -> Vec<(&'static str, Vec<u8>)> {
    let mut done = Vec::new();
    let wanted = wanted_tweaks(cfg);
    if wanted.is_empty() {
        return done;
    }
    let Ok(mut c) = Conn::connect(master, cfg.timeout, &cfg.source_auth) else { return done };
    for (name, want, from) in wanted {
        let cur = match c.cmd(&cmd!["CONFIG", "GET", name]) {
            Ok(crate::resp::Reply::Array(v)) => match v.get(1) {
                Some(crate::resp::Reply::Bulk(b)) => b.clone(),
                _ => continue,
            },
            _ => continue,
        };
        if cur != from {
            continue;
        }
        if matches!(c.cmd(&[&b"CONFIG"[..], b"SET", name.as_bytes(), want]), Ok(crate::resp::Reply::Simple(_))) {
            done.push((name, cur));
        }
    }
    done
}

/// Put back what `sync_tweaks` changed; a failure is printed (with the value to set by hand), not fatal.
fn restore_tweaks(master: &str, cfg: &ReplConfig, tweaks: &[(&'static str, Vec<u8>)]) {
    let mut conn = Conn::connect(master, cfg.timeout, &cfg.source_auth);
    for (name, old) in tweaks {
        let r = conn
            .as_mut()
            .map_err(|e| e.to_string())
            .and_then(|c| c.cmd(&[&b"CONFIG"[..], b"SET", name.as_bytes(), old]).map_err(|e| e.to_string()));
        if !matches!(r, Ok(crate::resp::Reply::Simple(_))) {
            eprintln!(
                "ferrite-migrate: warning: could not restore {name} on {master} (set it back to {} by hand): {r:?}",
                String::from_utf8_lossy(old)
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_payload_decodes_to_the_same_value() {
        let long = vec![b'x'; 70_000];
        let vals = vec![
            RdbValue::Str(b"".to_vec()),
            RdbValue::Str(b"12345".to_vec()),
            RdbValue::Str(long.clone()),
            RdbValue::List(vec![b"a".to_vec(), long.clone(), vec![b'y'; 100]]),
            RdbValue::Set((0..300).map(|i| format!("m{i}").into_bytes()).collect()),
            RdbValue::Hash(vec![(b"f".to_vec(), b"v".to_vec()), (vec![b'k'; 20_000], long.clone())]),
            RdbValue::ZSet(vec![(b"a".to_vec(), 1.5), (b"b".to_vec(), f64::INFINITY), (b"c".to_vec(), -0.1)]),
        ];
        for v in vals {
            let p = plain_payload(&v);
            assert!(ferrite_rdb::verify_dump_payload(&p).is_some());
            let back = ferrite_rdb::decode_dump_body(&p).expect("decodes");
            assert_eq!(back, v);
        }
    }
}
