//! RDB snapshots: the file writer and the point-in-time background saver
//! (see the module doc of `persist` for the copy-on-write-per-shard design).

use crate::keyspace::{shard_of, Access, Entry, Shard, SlotTable, SHARDS};
use crate::server::{now_ms, Server};
use ferrite_commands::SLOTS;
use ferrite_rdb::file::{RdbWriter, StandardAux};
use ferrite_rdb::{encode_value, Writer};
use parking_lot::Mutex;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

pub const OP_FUNCTION2: u8 = 245;
pub const OP_MODULE_AUX: u8 = 247;
pub const OP_IDLE: u8 = 248;
pub const OP_FREQ: u8 = 249;
pub const OP_AUX: u8 = 250;
pub const OP_RESIZEDB: u8 = 251;
pub const OP_EXPIRETIME_MS: u8 = 252;
pub const OP_EXPIRETIME: u8 = 253;
pub const OP_SELECTDB: u8 = 254;
pub const OP_EOF: u8 = 255;

/// What a background snapshot produces.
#[derive(Clone, Debug)]
pub enum JobKind {
    /// `dir/dbfilename` (BGSAVE, save rules).
    Rdb,
    /// The base of a new AOF (BGREWRITEAOF): written to this path, as an
    /// RDB image (a `.base.rdb`) or as commands (a `.base.aof`).
    AofBase(PathBuf),
}

/// One running snapshot.
pub struct SnapJob {
    pub kind: JobKind,
    /// RDB format (false: an AOF base as commands).
    rdb: bool,
    lru: LruMode,
    ndb: usize,
    /// (keys, keys with expiry) per db when the snapshot started.
    sizes: Vec<(usize, usize)>,
    /// Per (db * SLOTS + slot): already serialized for this snapshot.
    done: Box<[AtomicBool]>,
    /// Slots serialized by writers, waiting for the saver.
    parts: Mutex<std::collections::HashMap<usize, Vec<u8>>>,
    remaining: AtomicUsize,
    pub cancelled: AtomicBool,
    pub dirty_at_start: u64,
    pub started_ms: i64,
    /// `repl-*` aux fields for the file (see `Repl::rdb_info`).
    pub repl: Option<(u32, String, i64)>,
}

/// The (at most one) running snapshot.
#[derive(Default)]
pub struct SnapSlot {
    active: AtomicBool,
    job: Mutex<Option<Arc<SnapJob>>>,
}

impl SnapSlot {
    #[inline]
    pub fn running(&self) -> bool {
        self.active.load(Ordering::Acquire)
    }

    pub fn job(&self) -> Option<Arc<SnapJob>> {
        if !self.running() {
            return None;
        }
        self.job.lock().clone()
    }

    /// A BGSAVE (not an AOF rewrite) is running.
    pub fn rdb_running(&self) -> bool {
        self.job().is_some_and(|j| matches!(j.kind, JobKind::Rdb))
    }

    pub fn cancel(&self) {
        if let Some(j) = self.job() {
            j.cancelled.store(true, Ordering::SeqCst);
        }
    }
}

/// Which access information RDB records carry (Redis saves the idle time
/// under an LRU policy and the LFU counter under an LFU policy).
#[derive(Clone, Copy, Debug)]
pub enum LruMode {
    None,
    /// LRU clock (unix seconds) at the snapshot.
    Idle(u32),
    /// (unix ms, lfu-decay-time) at the snapshot.
    Freq(i64, u32),
}

impl LruMode {
    pub fn of(srv: &Server) -> LruMode {
        let p = crate::evict::policy(srv);
        let now = now_ms();
        if p.is_lfu() {
            LruMode::Freq(now, srv.tun.lfu_decay_time.load(Ordering::Relaxed) as u32)
        } else if p.name().ends_with("lru") {
            LruMode::Idle(crate::server::lru_of(now))
        } else {
            LruMode::None
        }
    }
}

/// Serialize one key as an RDB record (expiry, idle/freq, type, key, value).
pub fn write_entry(w: &mut Writer, e: &Entry, lru: LruMode) -> bool {
    let v = crate::rdbconv::to_rdb(&e.value);
    if e.expire_at != 0 {
        w.buf.push(OP_EXPIRETIME_MS);
        w.buf.extend_from_slice(&e.expire_at.to_le_bytes());
    }
    match lru {
        LruMode::None => {}
        LruMode::Idle(now) => {
            w.buf.push(OP_IDLE);
            w.len(now.saturating_sub(e.lru) as u64);
        }
        LruMode::Freq(now, decay) => {
            w.buf.push(OP_FREQ);
            w.buf.push(crate::evict::lfu_counter(e.lru, now, decay).min(255) as u8);
        }
    }
    let mut tmp = Writer::default();
    encode_value(&v, &mut tmp);
    let Some((&ty, body)) = tmp.buf.split_first() else { return false };
    w.buf.push(ty);
    w.string(&e.key);
    w.buf.extend_from_slice(body);
    true
}

/// Every key of one shard, serialized (`rdb`: as RDB records, otherwise
/// as commands).
fn serialize_shard(sh: &Shard, rdb: bool, lru: LruMode) -> Vec<u8> {
    let mut out = Vec::new();
    for st in sh.slots.iter() {
        out.extend_from_slice(&serialize_slot(st, rdb, lru));
    }
    out
}

/// Every key of one hash slot, serialized.
fn serialize_slot(st: &SlotTable, rdb: bool, lru: LruMode) -> Vec<u8> {
    let mut w = Writer::default();
    for e in st.table.iter() {
        if rdb {
            write_entry(&mut w, e, lru);
        } else {
            super::rewrite::entry_commands(&mut w.buf, e);
        }
    }
    w.buf
}

/// A writer counting the bytes written.
pub struct Counted<W: Write> {
    pub inner: W,
    pub written: u64,
}

impl<W: Write> Write for Counted<W> {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(b)?;
        self.written += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// The aux fields Redis 7.0 writes at the start of a file.
pub fn standard_aux(aof_base: bool, repl: Option<(u32, String, i64)>) -> StandardAux {
    StandardAux {
        redis_ver: "7.0.15".into(),
        redis_bits: 64,
        ctime: now_ms() / 1000,
        used_mem: crate::alloc::used_memory() as u64,
        repl,
        aof_base,
    }
}

/// Where a snapshot goes: an RDB image (`ferrite-rdb`'s file writer, which
/// adds the header, opcodes, EOF and CRC64) or AOF commands.
enum Sink<'a, W: Write> {
    Rdb(RdbWriter<&'a mut W>),
    Commands(&'a mut W),
}

impl<'a, W: Write> Sink<'a, W> {
    /// Start the image: header and aux fields, then the function
    /// libraries (FUNCTION2 records, or `FUNCTION LOAD` commands in an AOF
    /// base without preamble), as Redis writes them before the keys.
    fn new(
        out: &'a mut W,
        rdb: bool,
        aof_base: bool,
        functions: &[Vec<u8>],
        repl: Option<(u32, String, i64)>,
    ) -> io::Result<Self> {
        if rdb {
            let mut w = RdbWriter::new(out)?;
            w.standard_aux(&standard_aux(aof_base, repl))?;
            for code in functions {
                w.function(code)?;
            }
            Ok(Sink::Rdb(w))
        } else {
            if aof_base && super::aof::TIMESTAMPS.load(Ordering::Relaxed) {
                out.write_all(super::aof::timestamp_line().as_bytes())?;
            }
            for code in functions {
                let mut cmd = Vec::with_capacity(code.len() + 48);
                cmd.extend_from_slice(b"*3\r\n$8\r\nFUNCTION\r\n$4\r\nLOAD\r\n");
                cmd.extend_from_slice(format!("${}\r\n", code.len()).as_bytes());
                cmd.extend_from_slice(code);
                cmd.extend_from_slice(b"\r\n");
                out.write_all(&cmd)?;
            }
            Ok(Sink::Commands(out))
        }
    }

    fn db(&mut self, db: usize, keys: usize, expires: usize) -> io::Result<()> {
        match self {
            Sink::Rdb(w) => {
                w.select_db(db as u32)?;
                w.resize_db(keys as u64, expires as u64)
            }
            Sink::Commands(w) => w.write_all(&super::rewrite::select(db)),
        }
    }

    fn put(&mut self, b: &[u8]) -> io::Result<()> {
        match self {
            Sink::Rdb(w) => w.raw(b),
            Sink::Commands(w) => w.write_all(b),
        }
    }

    fn finish(self) -> io::Result<()> {
        match self {
            Sink::Rdb(w) => w.finish().map(|_| ()),
            Sink::Commands(w) => w.flush(),
        }
    }
}

/// Write the keys of every db through a sink; `shards(db, f)` hands each
/// shard of `db` to `f`.
#[allow(clippy::too_many_arguments)]
pub fn write_image<W: Write>(
    out: &mut W,
    rdb: bool,
    lru: LruMode,
    aof_base: bool,
    ndb: usize,
    functions: &[Vec<u8>],
    repl: Option<(u32, String, i64)>,
    mut shards: impl FnMut(usize, &mut dyn FnMut(&Shard)),
) -> io::Result<()> {
    let mut sink = Sink::new(out, rdb, aof_base, functions, repl)?;
    for db in 0..ndb {
        let mut parts = Vec::new();
        let (mut keys, mut exp) = (0, 0);
        shards(db, &mut |sh: &Shard| {
            keys += sh.keys;
            exp += sh.volatile;
            if sh.keys > 0 {
                parts.push(serialize_shard(sh, rdb, lru));
            }
        });
        if keys == 0 {
            continue;
        }
        sink.db(db, keys, exp)?;
        for p in parts {
            sink.put(&p)?;
        }
    }
    sink.finish()
}

/// Write `path` atomically: a temp file in the same directory, fsync,
/// rename, fsync the directory (as Redis's rdbSave).
pub fn write_atomically(
    path: &Path,
    f: impl FnOnce(&mut Counted<io::BufWriter<&std::fs::File>>) -> io::Result<()>,
) -> io::Result<u64> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let tmp = dir.join(format!("temp-{}-{}.rdb", std::process::id(), rand::random::<u32>()));
    let r = (|| {
        let file = std::fs::File::create(&tmp)?;
        let written = {
            let mut out = Counted { inner: io::BufWriter::with_capacity(1 << 20, &file), written: 0 };
            f(&mut out)?;
            out.flush()?;
            out.written
        };
        file.sync_all()?;
        std::fs::rename(&tmp, path)?;
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(written)
    })();
    if r.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    r
}

/// Serialize everything now, holding exclusive access (SAVE, SHUTDOWN,
/// FLUSHALL with save rules, DEBUG RELOAD).
pub fn save_sync_with(srv: &Server, acc: &mut Access<'_>) -> io::Result<()> {
    if srv.persist.snap.rdb_running() {
        // A background save in flight would race with our rename (an AOF
        // rewrite writes elsewhere and goes on).
        srv.persist.snap.cancel();
    }
    let path = srv.persist.cfg.lock().rdb_path();
    let dirty = srv.stats.dirty.load(Ordering::Relaxed);
    let ndb = srv.store.dbs.len();
    write_atomically(&path, |out| {
        let functions = crate::script::function_dump_codes(srv);
        write_image(out, true, LruMode::of(srv), false, ndb, &functions, srv.repl.rdb_info(), |db, f| {
            for i in 0..SHARDS {
                acc.with_slot(db, i as u16, |sh| f(sh));
            }
        })
    })?;
    let p = &srv.persist;
    p.dirty_base.store(dirty, Ordering::Relaxed);
    p.lastsave.store(now_ms() / 1000, Ordering::Relaxed);
    p.last_bgsave_ok.store(true, Ordering::Relaxed);
    p.rdb_saves.fetch_add(1, Ordering::Relaxed);
    Ok(())
}

/// SAVE-like synchronous save taking the exclusive lock itself.
pub fn save_sync(srv: &Server) -> io::Result<()> {
    let mut acc = srv.store.access_all();
    save_sync_with(srv, &mut acc)
}

/// Before a write command modifies anything: serialize, for the running
/// snapshot, every shard this access holds that is not serialized yet.
/// With exclusive access, all remaining shards.
pub fn cover(srv: &Server, acc: &mut Access<'_>, db: usize, slots: &[u16]) {
    let Some(job) = srv.persist.snap.job() else { return };
    if job.remaining.load(Ordering::Acquire) == 0 {
        return;
    }
    if acc.is_exclusive() {
        for d in 0..job.ndb {
            for i in 0..SHARDS {
                // The shard's slots are i, i + SHARDS, i + 2 * SHARDS, ...
                let pending = (i..SLOTS).step_by(SHARDS).any(|s| !job.done[d * SLOTS + s].load(Ordering::Acquire));
                if pending {
                    acc.with_slot(d, i as u16, |sh| {
                        for s in (i..SLOTS).step_by(SHARDS) {
                            job.take_slot(d, s as u16, sh);
                        }
                    });
                }
            }
        }
        return;
    }
    for &slot in slots {
        let idx = db * SLOTS + slot as usize;
        if idx < job.done.len() && !job.done[idx].load(Ordering::Acquire) {
            if let Some(sh) = acc.shard(db, slot) {
                job.take_slot(db, slot, sh);
            }
        }
    }
}

/// A key is about to be deleted outside any command (eviction) from a
/// shard the caller has locked: serialize it for a running snapshot first.
pub fn cover_shard(srv: &Server, db: usize, slot: u16, sh: &Shard) {
    if !srv.persist.snap.running() {
        return;
    }
    if let Some(job) = srv.persist.snap.job() {
        if db < job.ndb {
            job.take_slot(db, slot, sh);
        }
    }
}

impl SnapJob {
    /// Serialize one slot into the parts (caller holds its shard's lock).
    fn take_slot(&self, db: usize, slot: u16, sh: &Shard) {
        let idx = db * SLOTS + slot as usize;
        if self.done[idx].load(Ordering::Acquire) {
            return;
        }
        let buf = serialize_slot(sh.slot(slot), self.rdb, self.lru);
        if !buf.is_empty() {
            self.parts.lock().insert(idx, buf);
        }
        self.done[idx].store(true, Ordering::Release);
        self.remaining.fetch_sub(1, Ordering::AcqRel);
    }

    /// The saver's view of one slot: serialized now under its shard's lock
    /// unless a writer already did.
    fn part(&self, srv: &Server, db: usize, slot: u16) -> Vec<u8> {
        let idx = db * SLOTS + slot as usize;
        {
            let _w = srv.store.world_read();
            let g = srv.store.dbs[db].shards[shard_of(slot)].lock();
            if !self.done[idx].load(Ordering::Acquire) {
                let buf = serialize_slot(g.slot(slot), self.rdb, self.lru);
                self.done[idx].store(true, Ordering::Release);
                self.remaining.fetch_sub(1, Ordering::AcqRel);
                return buf;
            }
        }
        self.parts.lock().remove(&idx).unwrap_or_default()
    }
}

/// Start a background snapshot. The caller holds exclusive access (so the
/// snapshot's instant is between two commands). Errors are Redis's replies.
pub fn start_job_locked(srv: &Arc<Server>, acc: &mut Access<'_>, kind: JobKind) -> Result<Arc<SnapJob>, String> {
    let p = &srv.persist;
    let mut slot = p.snap.job.lock();
    if slot.is_some() {
        return Err(match slot.as_ref().map(|j| &j.kind) {
            Some(JobKind::Rdb) => "ERR Background save already in progress".into(),
            _ => "ERR Another child process is active (AOF?): can't BGSAVE right now. Use BGSAVE SCHEDULE in order to schedule a BGSAVE whenever possible.".into(),
        });
    }
    let ndb = srv.store.dbs.len();
    let mut sizes = vec![(0usize, 0usize); ndb];
    for (d, sz) in sizes.iter_mut().enumerate() {
        for i in 0..SHARDS {
            acc.with_slot(d, i as u16, |sh| {
                sz.0 += sh.keys;
                sz.1 += sh.volatile;
            });
        }
    }
    let n = ndb * SLOTS;
    let rdb = match &kind {
        JobKind::Rdb => true,
        JobKind::AofBase(p) => p.extension().is_some_and(|e| e == "rdb"),
    };
    // The stream position of the snapshot's instant (an AOF base has none, as in Redis).
    let repl_info = if matches!(kind, JobKind::Rdb) { srv.repl.rdb_info() } else { None };
    let job = Arc::new(SnapJob {
        rdb,
        lru: LruMode::of(srv),
        kind,
        ndb,
        sizes,
        done: (0..n).map(|_| AtomicBool::new(false)).collect(),
        parts: Mutex::new(std::collections::HashMap::new()),
        remaining: AtomicUsize::new(n),
        cancelled: AtomicBool::new(false),
        dirty_at_start: srv.stats.dirty.load(Ordering::Relaxed),
        started_ms: now_ms(),
        repl: repl_info,
    });
    *slot = Some(job.clone());
    p.snap.active.store(true, Ordering::Release);
    drop(slot);
    // Where Redis forks: INFO total_forks.
    srv.stats.total_forks.fetch_add(1, Ordering::Relaxed);
    if matches!(job.kind, JobKind::Rdb) {
        p.bgsave_started_ms.store(job.started_ms, Ordering::Relaxed);
        p.last_bgsave_try.store(job.started_ms, Ordering::Relaxed);
    }
    let srv2 = srv.clone();
    let j2 = job.clone();
    let spawned = std::thread::Builder::new().name("ferrite-save".into()).spawn(move || run_job(srv2, j2));
    if let Err(e) = spawned {
        *p.snap.job.lock() = None;
        p.snap.active.store(false, Ordering::Release);
        return Err(format!("ERR could not start the background save: {e}"));
    }
    Ok(job)
}

/// BGSAVE from a context holding exclusive access.
pub fn start_bgsave_locked(srv: &Arc<Server>, acc: &mut Access<'_>) -> Result<(), String> {
    start_job_locked(srv, acc, JobKind::Rdb).map(|_| ())
}

/// BGSAVE from a context holding no lock (cron).
pub fn start_bgsave(srv: &Arc<Server>) -> Result<(), String> {
    let mut acc = srv.store.access_all();
    start_bgsave_locked(srv, &mut acc)
}

fn write_job<W: Write>(srv: &Server, job: &SnapJob, out: &mut W) -> io::Result<()> {
    let functions = crate::script::function_dump_codes(srv);
    let mut sink = Sink::new(out, job.rdb, matches!(job.kind, JobKind::AofBase(_)), &functions, job.repl.clone())?;
    for db in 0..job.ndb {
        let (keys, exp) = job.sizes[db];
        if keys == 0 {
            continue;
        }
        sink.db(db, keys, exp)?;
        for slot in 0..SLOTS as u16 {
            if job.cancelled.load(Ordering::Relaxed) {
                return Err(io::Error::other("background save cancelled"));
            }
            let delay = crate::cmd::config::RDB_KEY_SAVE_DELAY.load(Ordering::Relaxed);
            if delay != 0 {
                let n = {
                    let _w = srv.store.world_read();
                    srv.store.dbs[db].shards[shard_of(slot)].lock().slot(slot).table.len()
                };
                key_save_delay(job, delay, n)?;
            }
            let part = job.part(srv, db, slot);
            if !part.is_empty() {
                sink.put(&part)?;
            }
        }
    }
    sink.finish()
}

/// `rdb-key-save-delay`: sleep `delay` µs per key of a slot about to be
/// written (Redis's forked child sleeps per key; here the saver thread does,
/// outside every lock), in short steps so a cancelled job stops promptly.
fn key_save_delay(job: &SnapJob, delay: i64, keys: usize) -> io::Result<()> {
    for _ in 0..keys {
        if delay < 0 {
            crate::cmd::config::debug_delay(delay);
        } else {
            let mut left = delay as u64;
            while left > 0 {
                if job.cancelled.load(Ordering::Relaxed) {
                    return Err(io::Error::other("background save cancelled"));
                }
                let step = left.min(10_000);
                std::thread::sleep(std::time::Duration::from_micros(step));
                left -= step;
            }
        }
    }
    if job.cancelled.load(Ordering::Relaxed) {
        return Err(io::Error::other("background save cancelled"));
    }
    Ok(())
}

/// The saver thread.
fn run_job(srv: Arc<Server>, job: Arc<SnapJob>) {
    let path = match &job.kind {
        JobKind::Rdb => srv.persist.cfg.lock().rdb_path(),
        JobKind::AofBase(p) => p.clone(),
    };
    let r = write_atomically(&path, |out| write_job(&srv, &job, out));
    if matches!(job.kind, JobKind::Rdb) {
        // The SYNC that started this save registers its replica while it
        // still holds the exclusive access: wait for that section to end so
        // the replica is there (a small data set is saved at once).
        drop(srv.store.world_read());
        // Replicas waiting for this save get the file (before another save may replace it).
        srv.repl.rdb_done(r.is_ok(), &path);
    }
    let p = &srv.persist;
    // Release the slot first so writers stop checking markers.
    *p.snap.job.lock() = None;
    p.snap.active.store(false, Ordering::Release);
    let secs = (now_ms() - job.started_ms) / 1000;
    match &job.kind {
        JobKind::Rdb => {
            p.last_bgsave_secs.store(secs, Ordering::Relaxed);
            match &r {
                Ok(_) => {
                    p.dirty_base.store(job.dirty_at_start, Ordering::Relaxed);
                    p.lastsave.store(now_ms() / 1000, Ordering::Relaxed);
                    p.last_bgsave_ok.store(true, Ordering::Relaxed);
                    p.rdb_saves.fetch_add(1, Ordering::Relaxed);
                    eprintln!("ferrite: Background saving terminated with success");
                }
                Err(e) => {
                    if !job.cancelled.load(Ordering::Relaxed) {
                        p.last_bgsave_ok.store(false, Ordering::Relaxed);
                    }
                    eprintln!("ferrite: Background saving error: {e}");
                }
            }
        }
        JobKind::AofBase(_) => super::aof::rewrite_done(&srv, &job, r),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keyspace::{smallbytes::SmallBytes, Value};

    #[test]
    fn entry_records_decode() {
        let e = Entry { key: SmallBytes::new(b"k"), value: Value::str(b"hello"), expire_at: 1234, lru: 0 };
        let mut w = Writer::default();
        assert!(write_entry(&mut w, &e, LruMode::None));
        assert_eq!(w.buf[0], OP_EXPIRETIME_MS);
        assert_eq!(&w.buf[1..9], &1234i64.to_le_bytes());
        assert_eq!(w.buf[9], 0); // string type
        assert_eq!(&w.buf[10..12], &[1, b'k']);
    }
}
