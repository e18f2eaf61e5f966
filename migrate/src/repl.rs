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
    pub filter: Arc<Filter>,
    pub clock_offset_ms: i64,
}

#[derive(Default)]
struct Shared {
    applied: AtomicI64,
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
    let mut dst = Applier::connect(cfg)?;
    loop {
        if sh.stop.load(Ordering::SeqCst) {
            return Ok(());
        }
        *sh.master.lock() = master.clone();
        match session(cfg, sh, &master, &mut psync, &mut dst) {
            Ok(()) => return Ok(()),
            Err(e) => {
                if sh.stop.load(Ordering::SeqCst) {
                    return Ok(());
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
                if dst.conn.is_none() {
                    dst = Applier::connect(cfg)?;
                }
            }
        }
        if psync.is_some() && sh.loaded.load(Ordering::SeqCst) {
            failing_since = None;
        }
    }
}

/// Batches commands to Ferrite and counts what it refused.
struct Applier {
    conn: Option<Conn>,
    pending: Vec<Vec<Vec<u8>>>,
    bytes: usize,
    errors_shown: u32,
}

impl Applier {
    fn connect(cfg: &ReplConfig) -> Result<Applier> {
        let conn = Conn::connect(&cfg.target, cfg.timeout, &cfg.target_auth)?;
        Ok(Applier { conn: Some(conn), pending: Vec::new(), bytes: 0, errors_shown: 0 })
    }
    fn push(&mut self, c: Vec<Vec<u8>>) -> Result<()> {
        self.bytes += c.iter().map(|a| a.len() + 16).sum::<usize>();
        self.pending.push(c);
        if self.pending.len() >= 512 || self.bytes >= 4 << 20 {
            self.flush()?;
        }
        Ok(())
    }
    fn flush(&mut self) -> Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let cmds = std::mem::take(&mut self.pending);
        self.bytes = 0;
        let conn = self.conn.as_mut().ok_or_else(|| Error::Conn("target connection lost".into()))?;
        let replies = match conn.pipeline(&cmds) {
            Ok(r) => r,
            Err(e) => {
                self.conn = None;
                return Err(e);
            }
        };
        let m = metrics::get();
        for (c, r) in cmds.iter().zip(replies) {
            let bad = match &r {
                crate::resp::Reply::Error(e) => Some(e.clone()),
                crate::resp::Reply::Array(a) => a.iter().find_map(|x| match x {
                    crate::resp::Reply::Error(e) => Some(e.clone()),
                    _ => None,
                }),
                _ => None,
            };
            if let Some(e) = bad {
                m.copy_errors.inc();
                m.stream_commands.with_label_values(&["refused"]).inc();
                if self.errors_shown < 20 {
                    self.errors_shown += 1;
                    eprintln!(
                        "Ferrite refused {}: {e}",
                        String::from_utf8_lossy(c.first().map(Vec::as_slice).unwrap_or_default())
                    );
                }
            }
        }
        Ok(())
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

fn session(cfg: &ReplConfig, sh: &Shared, master: &str, psync: &mut Option<Psync>, dst: &mut Applier) -> Result<()> {
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
    c.cmd(&cmd!["REPLCONF", "capa", "eof", "capa", "psync2"])?
        .ok()
        .map_err(|e| Error::Server(format!("{master}: REPLCONF capa: {e}")))?;
    let args = match psync.as_ref() {
        Some(p) => cmd!["PSYNC", p.replid.as_str(), p.offset + 1],
        None => cmd!["PSYNC", "?", "-1"],
    };
    c.send(&[args])?;
    let line = read_line(&mut c, true)?;
    let line = String::from_utf8_lossy(&line).into_owned();
    if let Some(rest) = line.strip_prefix("+FULLRESYNC ") {
        let mut it = rest.split_whitespace();
        let replid = it.next().unwrap_or_default().to_string();
        let offset: i64 = it
            .next()
            .and_then(|x| x.parse().ok())
            .ok_or_else(|| Error::Protocol(format!("{master}: bad FULLRESYNC line {line:?}")))?;
        if psync.is_some() {
            // A second full sync: what we loaded before may hold keys the
            // master no longer has. Empty our still-owned slots first.
            let mut mine = SlotSet::default();
            for s in cfg.slots.iter() {
                if cfg.filter.applies(s) {
                    mine.insert(s);
                }
            }
            dst.flush()?;
            purge(cfg, &mine)?;
        }
        load_rdb(cfg, &mut c, dst)?;
        dst.flush()?;
        *psync = Some(Psync { replid, offset });
        sh.applied.store(offset, Ordering::SeqCst);
        sh.received.store(offset, Ordering::SeqCst);
        sh.loaded.store(true, Ordering::SeqCst);
    } else if let Some(rest) = line.strip_prefix("+CONTINUE") {
        let p = psync.as_mut().ok_or_else(|| Error::Protocol("CONTINUE without a previous sync".into()))?;
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
fn load_rdb(cfg: &ReplConfig, c: &mut Conn, dst: &mut Applier) -> Result<()> {
    c.set_read_timeout(Some(cfg.timeout.max(Duration::from_secs(60))));
    let head = read_line(c, true)?;
    let mut loader = RdbLoader::new(cfg);
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
}

impl<'a> RdbLoader<'a> {
    fn new(cfg: &'a ReplConfig) -> RdbLoader<'a> {
        RdbLoader { cfg, parser: ferrite_rdb::file::RdbParser::new(), db: 0, cur: None, done: false }
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
                    self.cur = Some(CurKey { key, expire_ms, keep, parts: 0, stream: None });
                }
                E::Part(v) => {
                    let Some(cur) = self.cur.as_mut() else {
                        return Err(Error::Protocol("RDB value part outside a key".into()));
                    };
                    if !cur.keep {
                        continue;
                    }
                    apply_part(self.cfg, cur, v, dst)?;
                }
                E::EndKey => {
                    if let Some(mut cur) = self.cur.take() {
                        if cur.keep {
                            if let Some(s) = cur.stream.take() {
                                restore(self.cfg, &cur.key, cur.expire_ms, &RdbValue::Stream(Box::new(s)), dst)?;
                            }
                            if cur.parts > 0 {
                                metrics::get().keys_copied.inc();
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
    let payload = ferrite_rdb::dump_payload(v);
    metrics::get().bytes_copied.inc_by(payload.len() as u64);
    match expire_ms {
        Some(at) => {
            let at = at + cfg.clock_offset_ms;
            if at <= crate::now_ms() + cfg.clock_offset_ms {
                dst.push(cmd!["DEL", key])
            } else {
                dst.push(cmd!["RESTORE", key, at.max(1), payload, "REPLACE", "ABSTTL"])
            }
        }
        None => dst.push(cmd!["RESTORE", key, "0", payload, "REPLACE"]),
    }
}

fn apply_part(cfg: &ReplConfig, cur: &mut CurKey, v: RdbValue, dst: &mut Applier) -> Result<()> {
    cur.parts += 1;
    if let RdbValue::Stream(s) = v {
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
                dst.push(c)?;
            }
        }
        RdbValue::Set(items) => {
            for ch in items.chunks(500) {
                let mut c = cmd!["SADD", &key];
                for e in ch {
                    m.bytes_copied.inc_by(e.len() as u64);
                    c.push(e.clone());
                }
                dst.push(c)?;
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
                dst.push(c)?;
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
                dst.push(c)?;
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
}

fn route(cfg: &ReplConfig, db: u64, args: &[Bytes]) -> Route {
    let Some(name) = args.first() else { return Route::Skip };
    let lname = name.to_ascii_lowercase();
    match lname.as_slice() {
        b"ping" | b"replconf" | b"select" | b"multi" | b"exec" => return Route::Skip,
        b"flushall" => return Route::FlushOwned,
        b"flushdb" => return if db == 0 { Route::FlushOwned } else { Route::Skip },
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
    let mut tx: Option<Vec<Vec<Vec<u8>>>> = None;
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
            if name == b"replconf" && args.get(1).map(|a| a.eq_ignore_ascii_case(b"getack")).unwrap_or(false) {
                if tx.is_none() {
                    dst.flush()?;
                    p.offset = start;
                    sh.applied.store(p.offset, Ordering::SeqCst);
                }
                c.send(&[cmd!["REPLCONF", "ACK", p.offset]])?;
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
                    if !cmds.is_empty() {
                        dst.push(cmd!["MULTI"])?;
                        for c2 in cmds {
                            dst.push(c2)?;
                        }
                        dst.push(cmd!["EXEC"])?;
                    }
                }
                continue;
            }
            match route(cfg, db, &args) {
                Route::Skip => m.stream_commands.with_label_values(&["skipped"]).inc(),
                Route::FlushOwned => {
                    dst.flush()?;
                    let mut mine = SlotSet::default();
                    for s in cfg.slots.iter() {
                        if cfg.filter.applies(s) {
                            mine.insert(s);
                        }
                    }
                    purge(cfg, &mine)?;
                    m.stream_commands.with_label_values(&["flush"]).inc();
                }
                Route::Apply => {
                    m.stream_commands.with_label_values(&["applied"]).inc();
                    let owned: Vec<Vec<u8>> = args.iter().map(|a| a.to_vec()).collect();
                    match tx.as_mut() {
                        Some(t) => t.push(owned),
                        None => dst.push(owned)?,
                    }
                }
            }
        }
        if tx.is_none() {
            dst.flush()?;
            p.offset = boundary;
            sh.applied.store(p.offset, Ordering::SeqCst);
        }
        sh.received.store(fed_off, Ordering::SeqCst);
        let lag = fed_off - p.offset;
        if lag <= 0 {
            caught_up_at = Instant::now();
        }
        m.lag_bytes.with_label_values(&[&label]).set(lag.max(0));
        m.lag_ms.with_label_values(&[&label]).set(caught_up_at.elapsed().as_millis() as i64);
        m.applied_offset.with_label_values(&[&label]).set(p.offset);
        if last_ack.elapsed() >= Duration::from_secs(1) {
            c.send(&[cmd!["REPLCONF", "ACK", p.offset]])?;
            last_ack = Instant::now();
        }
    }
}
