//! The append-only file, as Redis 7.0 lays it out: a directory
//! (`appenddirname`) holding a manifest (`<appendfilename>.manifest`), one
//! base file (`<appendfilename>.<seq>.base.rdb`, an RDB image, or `.aof`)
//! and incremental files (`<appendfilename>.<seq>.incr.aof`) of commands in
//! RESP. Manifest lines: `file <name> seq <n> type <b|h|i>`.
//!
//! Writes: `append` adds records to an in-memory buffer under a mutex (the
//! caller still holds the command's shard locks, so per-key order is the
//! execution order); the `ferrite-aof` thread writes the buffer out and,
//! with `appendfsync always`, fsyncs before publishing the durable offset
//! that connections wait for before sending replies (group commit: one
//! fsync covers every write buffered meanwhile). `everysec` fsyncs at most
//! once per second, `no` leaves it to the OS.
//!
//! Rewrite (BGREWRITEAOF, `CONFIG SET appendonly yes`): under the exclusive
//! lock a new incr file is opened and a snapshot (see `snapshot`) starts;
//! the manifest lists old base + old incrs + the new incr until the new
//! base is complete, then new base + new incr; old files are deleted.
//!
//! Loading replays commands through `dispatch` with a private client. A
//! truncated tail of the last incr file is cut at the last complete
//! command (`aof-load-truncated yes`) or refused (`no`), as in Redis.

use super::config::{Fsync, PersistConfig};
use super::snapshot::{self, JobKind, SnapJob};
use crate::server::{now_ms, Server};
use bytes::Bytes;
use parking_lot::{Condvar, Mutex};
use std::collections::VecDeque;
use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

enum Item {
    Data(Vec<u8>),
    /// Switch to this new incr file.
    Open(PathBuf),
}

#[derive(Default)]
struct Buf {
    items: VecDeque<Item>,
    /// Total bytes ever appended (the offset connections wait for).
    offset: u64,
    /// Database of the last record in the current file (-1: none yet).
    last_db: i64,
    stop: bool,
    /// Unix second of the last `#TS:` annotation written (aof-timestamp-enabled).
    last_ts: i64,
}

/// `aof-timestamp-enabled`: a `#TS:<unix seconds>` line before the first
/// record of each new second, and at the start of an AOF-format base
/// (Redis's genAofTimestampAnnotationIfNeeded).
pub static TIMESTAMPS: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// The annotation line for now.
pub fn timestamp_line() -> String {
    format!("#TS:{}\r\n", now_ms() / 1000)
}

#[derive(Default, Clone, Debug)]
pub struct Manifest {
    /// (file name, seq, is_rdb)
    pub base: Option<(String, u64)>,
    pub incrs: Vec<(String, u64)>,
    pub history: Vec<(String, u64)>,
}

/// AOF state in `Persist`.
#[derive(Default)]
pub struct Aof {
    on: AtomicBool,
    buf: Mutex<Buf>,
    cv: Condvar,
    /// The open incr file (written by the AOF thread or a final flush).
    file: Mutex<Option<File>>,
    pub fsynced: AtomicU64,
    pub durable: tokio::sync::Notify,
    pub write_ok: AtomicBool,
    pub manifest: Mutex<Manifest>,
    pub rewrite_scheduled: AtomicBool,
    pub rewrite_started_ms: AtomicI64,
    pub last_rewrite_secs: AtomicI64,
    pub last_rewrite_ok: AtomicBool,
    pub rewrites: AtomicU64,
    pub current_size: AtomicU64,
    pub base_size: AtomicU64,
    pub load_loaded: AtomicU64,
    pub load_expired: AtomicU64,
    rewriting: AtomicBool,
    /// Incr files opened by the running rewrite (kept after it).
    rewrite_keep_from: AtomicU64,
    fsync_always: AtomicBool,
}

impl Aof {
    #[inline]
    pub fn enabled(&self) -> bool {
        self.on.load(Ordering::Relaxed)
    }

    pub fn rewrite_running(&self) -> bool {
        self.rewriting.load(Ordering::Relaxed)
    }
}

/// One command in RESP (the form of AOF records and of the replication stream).
pub(super) fn encode(out: &mut Vec<u8>, args: &[Bytes]) {
    out.extend_from_slice(format!("*{}\r\n", args.len()).as_bytes());
    for a in args {
        out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
}

/// Encode effects records, with a `SELECT` before each change of db (`last_db` is the stream's current db).
pub(super) fn encode_records(out: &mut Vec<u8>, last_db: &mut i64, recs: &[super::propagate::Record]) {
    for (db, args) in recs {
        if *last_db != *db as i64 {
            encode(out, &[Bytes::from_static(b"SELECT"), Bytes::from(db.to_string())]);
            *last_db = *db as i64;
        }
        encode(out, args);
    }
}

/// Append records (from `propagate`) to the AOF buffer.
pub fn append(srv: &Server, recs: &[super::propagate::Record]) {
    let aof = &srv.persist.aof;
    if !aof.enabled() || recs.is_empty() {
        return;
    }
    let mut data = Vec::with_capacity(64);
    let mut g = aof.buf.lock();
    if TIMESTAMPS.load(Ordering::Relaxed) {
        let now = now_ms() / 1000;
        if now > g.last_ts {
            g.last_ts = now;
            data.extend_from_slice(timestamp_line().as_bytes());
        }
    }
    encode_records(&mut data, &mut g.last_db, recs);
    g.offset += data.len() as u64;
    let off = g.offset;
    match g.items.back_mut() {
        Some(Item::Data(d)) if d.len() < (8 << 20) => d.extend_from_slice(&data),
        _ => g.items.push_back(Item::Data(data)),
    }
    drop(g);
    aof.cv.notify_one();
    if aof.fsync_always.load(Ordering::Relaxed) {
        super::propagate::set_written(off);
    }
}

/// Wait until the AOF offset `target` is durable (appendfsync always).
pub async fn wait_durable(srv: &Server, target: u64) {
    let aof = &srv.persist.aof;
    loop {
        let n = aof.durable.notified();
        tokio::pin!(n);
        n.as_mut().enable();
        if aof.fsynced.load(Ordering::Acquire) >= target || !aof.enabled() {
            return;
        }
        let _ = tokio::time::timeout(Duration::from_millis(200), n).await;
    }
}

/// With `appendfsync always`, wait until everything appended so far is
/// durable (a blocked client served by another client's write).
pub async fn wait_all_durable(srv: &Server) {
    let aof = &srv.persist.aof;
    if !aof.fsync_always.load(Ordering::Relaxed) || !aof.enabled() {
        return;
    }
    let target = aof.buf.lock().offset;
    wait_durable(srv, target).await;
}

/// Write out what is buffered; fsync per policy. Returns false on error.
fn drain(srv: &Server, force_sync: bool, last_sync: &mut Instant) -> bool {
    let aof = &srv.persist.aof;
    let mut f = aof.file.lock();
    let (items, off) = {
        let mut g = aof.buf.lock();
        (std::mem::take(&mut g.items), g.offset)
    };
    let policy = srv.persist.cfg.lock().appendfsync;
    let mut ok = true;
    let mut wrote = false;
    for it in items {
        match it {
            Item::Data(d) => {
                if let Some(file) = f.as_mut() {
                    if let Err(e) = file.write_all(&d) {
                        eprintln!("ferrite: error writing to the AOF: {e}");
                        ok = false;
                    }
                    aof.current_size.fetch_add(d.len() as u64, Ordering::Relaxed);
                    wrote = true;
                }
            }
            Item::Open(p) => {
                if let Some(old) = f.take() {
                    let _ = old.sync_data();
                }
                match std::fs::OpenOptions::new().create(true).append(true).open(&p) {
                    Ok(nf) => *f = Some(nf),
                    Err(e) => {
                        eprintln!("ferrite: can't open the AOF file {}: {e}", p.display());
                        ok = false;
                    }
                }
            }
        }
    }
    let want_sync = force_sync
        || (wrote && policy == Fsync::Always)
        || (policy == Fsync::EverySec && last_sync.elapsed() >= Duration::from_secs(1));
    if want_sync {
        if let Some(file) = f.as_ref() {
            if let Err(e) = file.sync_data() {
                eprintln!("ferrite: error fsyncing the AOF: {e}");
                ok = false;
            }
        }
        *last_sync = Instant::now();
    }
    aof.write_ok.store(ok, Ordering::Relaxed);
    if !ok && policy == Fsync::Always {
        eprintln!("ferrite: Can't recover from AOF write error when the AOF fsync policy is 'always'. Exiting...");
        std::process::exit(1);
    }
    if ok && (want_sync || policy != Fsync::Always) {
        aof.fsynced.store(off, Ordering::Release);
        aof.durable.notify_waiters();
    }
    ok
}

fn spawn_writer(srv: &Arc<Server>) -> io::Result<()> {
    let srv = srv.clone();
    std::thread::Builder::new().name("ferrite-aof".into()).spawn(move || {
        let mut last_sync = Instant::now();
        loop {
            {
                let aof = &srv.persist.aof;
                let mut g = aof.buf.lock();
                if g.items.is_empty() && !g.stop {
                    aof.cv.wait_for(&mut g, Duration::from_millis(100));
                }
                if g.stop && g.items.is_empty() {
                    break;
                }
            }
            drain(&srv, false, &mut last_sync);
        }
    })?;
    Ok(())
}

/// Flush and fsync everything buffered (shutdown, `appendonly no`).
pub fn flush_on_shutdown(srv: &Server) {
    if srv.persist.aof.enabled() {
        let mut t = Instant::now();
        drain(srv, true, &mut t);
    }
}

/// Stop the AOF (`CONFIG SET appendonly no`).
pub fn stop(srv: &Server) {
    let aof = &srv.persist.aof;
    // A rewrite in progress is abandoned (Redis kills its child), so the
    // next BGREWRITEAOF can start at once.
    if let Some(job) = srv.persist.snap.job().filter(|j| matches!(j.kind, JobKind::AofBase(_))) {
        eprintln!("ferrite: Killing running AOF rewrite child: {}", std::process::id());
        job.cancelled.store(true, Ordering::SeqCst);
        if !super::propagate::running_exclusive() {
            let deadline = Instant::now() + Duration::from_secs(2);
            while srv.persist.snap.job().is_some_and(|j| Arc::ptr_eq(&j, &job)) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(5));
            }
        }
    }
    flush_on_shutdown(srv);
    aof.on.store(false, Ordering::SeqCst);
    aof.buf.lock().stop = true;
    aof.cv.notify_all();
    *aof.file.lock() = None;
    aof.durable.notify_waiters();
}

// ---------- manifest ----------

fn manifest_path(cfg: &PersistConfig) -> PathBuf {
    cfg.aof_dir().join(format!("{}.manifest", cfg.appendfilename))
}

/// Parse a Redis 7.0 manifest exactly as Redis's aofLoadManifestFromFile:
/// every line ends with a newline and is at most 1024 bytes, `#` lines are
/// comments, a blank line is invalid, fields are split like `sdssplitargs`
/// (quoted names), at least `file`, `seq` (non-zero) and `type` in
/// key/value pairs, the file a plain name, incr seqs increasing.
pub fn parse_manifest(text: &str) -> Result<Manifest, String> {
    const MAX_LINE: usize = 1024;
    const BAD: &str = "Invalid AOF manifest file format";
    let mut m = Manifest::default();
    if text.is_empty() {
        return Err("Found an empty AOF manifest".into());
    }
    let mut rest = text.as_bytes();
    let mut maxseq = 0i64;
    while !rest.is_empty() {
        // What one fgets() of MAX_LINE + 1 bytes returns.
        let take = rest.iter().position(|&c| c == b'\n').map_or(rest.len(), |i| i + 1).min(MAX_LINE);
        let (buf, tail) = rest.split_at(take);
        rest = tail;
        if buf.first() == Some(&b'#') {
            // A comment longer than the buffer continues as the next "line" (as in Redis).
            continue;
        }
        if !buf.contains(&b'\n') {
            return Err("The AOF manifest file contains too long line".into());
        }
        let line = trim_manifest_line(buf);
        if line.is_empty() {
            return Err(BAD.into());
        }
        let args = crate::script::split_args(line).ok_or(BAD)?;
        if args.len() < 6 || !args.len().is_multiple_of(2) {
            return Err(BAD.into());
        }
        let (mut name, mut seq, mut ty) = (None::<String>, 0i64, 0u8);
        for kv in args.chunks(2) {
            if kv[0].eq_ignore_ascii_case(b"file") {
                let n = String::from_utf8_lossy(&kv[1]).into_owned();
                if n.contains('/') {
                    return Err("File can't be a path, just a filename".into());
                }
                name = Some(n);
            } else if kv[0].eq_ignore_ascii_case(b"seq") {
                seq = atoll(&kv[1]);
            } else if kv[0].eq_ignore_ascii_case(b"type") {
                ty = kv[1].first().copied().unwrap_or(0);
            }
        }
        let Some(name) = name.filter(|_| seq != 0 && ty != 0) else {
            return Err(BAD.into());
        };
        let seq_u = seq.max(0) as u64;
        match ty {
            b'b' => {
                if m.base.is_some() {
                    return Err("Found duplicate base file information".into());
                }
                m.base = Some((name, seq_u));
            }
            b'h' => m.history.push((name, seq_u)),
            b'i' => {
                if seq <= maxseq {
                    return Err("Found a non-monotonic sequence number".into());
                }
                maxseq = seq;
                m.incrs.push((name, seq_u));
            }
            _ => return Err("Unknown AOF file type".into()),
        }
    }
    Ok(m)
}

/// `sdstrim(line, " \t\r\n")`.
fn trim_manifest_line(b: &[u8]) -> &[u8] {
    let ws = |c: &u8| matches!(c, b' ' | b'\t' | b'\r' | b'\n');
    let start = b.iter().position(|c| !ws(c)).unwrap_or(b.len());
    let end = b.iter().rposition(|c| !ws(c)).map_or(start, |i| i + 1);
    &b[start..end]
}

/// C's atoll: optional sign and leading digits, 0 when none.
fn atoll(b: &[u8]) -> i64 {
    let s = std::str::from_utf8(b).unwrap_or("").trim_start();
    let (neg, digits) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    let n: i64 = digits
        .bytes()
        .take_while(|c| c.is_ascii_digit())
        .fold(0i64, |acc, c| acc.saturating_mul(10).saturating_add((c - b'0') as i64));
    if neg {
        -n
    } else {
        n
    }
}

/// A file name as Redis writes it in the manifest: quoted with escapes
/// when it has spaces, quotes or unprintable bytes (sdsneedsrepr / sdscatrepr).
fn manifest_name(n: &str) -> String {
    let needs = n.bytes().any(|c| c == b'\\' || c == b'"' || !c.is_ascii_graphic());
    if !needs {
        return n.to_string();
    }
    let mut out = String::from("\"");
    for c in n.bytes() {
        match c {
            b'\\' => out.push_str("\\\\"),
            b'"' => out.push_str("\\\""),
            b'\n' => out.push_str("\\n"),
            b'\r' => out.push_str("\\r"),
            b'\t' => out.push_str("\\t"),
            7 => out.push_str("\\a"),
            8 => out.push_str("\\b"),
            c if c.is_ascii_graphic() || c == b' ' => out.push(c as char),
            c => out.push_str(&format!("\\x{c:02x}")),
        }
    }
    out.push('"');
    out
}

fn render_manifest(m: &Manifest) -> String {
    let mut s = String::new();
    if let Some((n, seq)) = &m.base {
        s.push_str(&format!("file {} seq {seq} type b\n", manifest_name(n)));
    }
    for (n, seq) in &m.history {
        s.push_str(&format!("file {} seq {seq} type h\n", manifest_name(n)));
    }
    for (n, seq) in &m.incrs {
        s.push_str(&format!("file {} seq {seq} type i\n", manifest_name(n)));
    }
    s
}

fn write_file_atomically(path: &Path, data: &[u8]) -> io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let tmp = dir.join(format!("temp-{}.manifest", rand::random::<u32>()));
    let r = (|| {
        let mut f = File::create(&tmp)?;
        f.write_all(data)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)?;
        if let Ok(d) = File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(())
    })();
    if r.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    r
}

fn persist_manifest(cfg: &PersistConfig, m: &Manifest) -> io::Result<()> {
    write_file_atomically(&manifest_path(cfg), render_manifest(m).as_bytes())
}

/// `<appendfilename>.<seq>.base.rdb`, or `.base.aof` without the RDB preamble.
fn base_name(cfg: &PersistConfig, seq: u64) -> String {
    let ext = if cfg.aof_use_rdb_preamble { "rdb" } else { "aof" };
    format!("{}.{seq}.base.{ext}", cfg.appendfilename)
}

fn next_seq(m: &Manifest) -> (u64, u64) {
    (m.base.as_ref().map_or(0, |b| b.1) + 1, m.incrs.last().map_or(0, |i| i.1) + 1)
}

// ---------- loading ----------

/// Replay RESP commands from `data`. Returns bytes of complete commands
/// consumed and whether the data ended mid-command (or mid-transaction).
///
/// Commands run with the exclusive access the loader holds, through
/// `dispatch::execute_locked`: like Redis's fake AOF client they skip
/// authentication, ACLs and maxmemory, and MULTI/EXEC need no queueing
/// (nothing else runs meanwhile); they still delimit a truncated tail.
fn replay<'s>(
    srv: &'s Server,
    client: &mut crate::client::Client,
    data: &[u8],
    name: &str,
    acc: &mut crate::keyspace::Access<'s>,
) -> Result<(usize, bool), String> {
    let mut pos = 0usize;
    let mut multi_start: Option<usize> = None;
    let mut queued: Vec<Vec<Bytes>> = Vec::new();
    let mut out = ferrite_resp::ReplyBuf::new(false);
    loop {
        if pos >= data.len() {
            break;
        }
        let start = pos;
        // Annotations (`#TS:...` with aof-timestamp-enabled) are skipped.
        if data[pos] == b'#' {
            match data[pos..].windows(2).position(|w| w == b"\r\n") {
                Some(e) => {
                    pos += e + 2;
                    continue;
                }
                None => return Ok((multi_start.unwrap_or(start), true)),
            }
        }
        let Some(args) = parse_command(data, &mut pos)? else {
            return Ok((multi_start.unwrap_or(start), true));
        };
        if args.is_empty() {
            continue;
        }
        let is_multi = args[0].eq_ignore_ascii_case(b"multi");
        let is_exec = args[0].eq_ignore_ascii_case(b"exec");
        if is_multi {
            multi_start = Some(start);
        }
        if srv.registry.get(&args[0]).is_none() {
            return Err(format!(
                "Unknown command '{}' reading the append only file {name}",
                String::from_utf8_lossy(&args[0])
            ));
        }
        if is_multi || is_exec {
            if is_exec {
                multi_start = None;
                for a in std::mem::take(&mut queued) {
                    out.buf.clear();
                    crate::dispatch::execute_locked(srv, client, &a, &mut out, acc);
                    acc.release_shards();
                }
            }
            continue;
        }
        if multi_start.is_some() {
            // Runs at EXEC; dropped if the file ends inside the transaction.
            queued.push(args);
            continue;
        }
        out.buf.clear();
        crate::dispatch::execute_locked(srv, client, &args, &mut out, acc);
        // Keep the guard list short (lookups in it are linear).
        acc.release_shards();
    }
    match multi_start {
        Some(s) => Ok((s, true)),
        None => Ok((pos, false)),
    }
}

/// One `*N\r\n$len\r\n...` command. Ok(None): incomplete. Err: garbage.
fn parse_command(d: &[u8], pos: &mut usize) -> Result<Option<Vec<Bytes>>, String> {
    let line = |p: &mut usize| -> Option<&[u8]> {
        let rest = d.get(*p..)?;
        let e = rest.windows(2).position(|w| w == b"\r\n")?;
        let l = &rest[..e];
        *p += e + 2;
        Some(l)
    };
    let mut p = *pos;
    let Some(l) = line(&mut p) else { return Ok(None) };
    if l.first() != Some(&b'*') {
        return Err("Bad file format reading the append only file".into());
    }
    let n: usize = std::str::from_utf8(&l[1..])
        .ok()
        .and_then(|s| s.parse().ok())
        .filter(|n| *n >= 1 && *n <= 1 << 20)
        .ok_or("Bad file format reading the append only file")?;
    let mut args = Vec::with_capacity(n.min(1024));
    for _ in 0..n {
        let Some(l) = line(&mut p) else { return Ok(None) };
        if l.first() != Some(&b'$') {
            return Err("Bad file format reading the append only file".into());
        }
        let len: usize = std::str::from_utf8(&l[1..])
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or("Bad file format reading the append only file")?;
        let Some(bs) = d.get(p..p.saturating_add(len)) else { return Ok(None) };
        if d.get(p + len..p + len + 2).is_none() {
            return Ok(None);
        }
        args.push(Bytes::copy_from_slice(bs));
        p += len + 2;
    }
    *pos = p;
    Ok(Some(args))
}

fn loader_client(srv: &Server) -> crate::client::Client {
    let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
    let handle = Arc::new(crate::client::ClientHandle::new(
        u64::MAX,
        "aof-loader".into(),
        String::new(),
        -1,
        tx,
        srv.uptime_ms(),
    ));
    crate::client::Client::new(handle, true)
}

/// Load one AOF file (base or incr). `last`: the tail may be truncated.
fn load_file<'s>(
    srv: &'s Server,
    path: &Path,
    last: bool,
    cfg: &PersistConfig,
    acc: &mut crate::keyspace::Access<'s>,
) -> Result<u64, String> {
    acc.release_shards();
    let data = std::fs::read(path).map_err(|e| format!("can't read {}: {e}", path.display()))?;
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let mut client = loader_client(srv);
    let mut body = &data[..];
    let mut offset = 0;
    if data.starts_with(b"REDIS") {
        let st = super::load::load_rdb_bytes(srv, &data, true).map_err(|e| format!("{name}: {e}"))?;
        offset = st.consumed;
        body = &data[st.consumed..];
    }
    let (good, truncated) = replay(srv, &mut client, body, &name, acc)?;
    if truncated {
        if !last || !cfg.aof_load_truncated {
            return Err(format!(
                "Unexpected end of file reading the append only file {name}. You can: 1) Make a backup of your AOF file, then use ./redis-check-aof --fix <filename.manifest>. 2) Alternatively you can set the 'aof-load-truncated' configuration option to yes and restart the server."
            ));
        }
        let keep = (offset + good) as u64;
        eprintln!(
            "ferrite: !!! Warning: short read while loading the AOF file {name}!!! AOF loaded anyway because aof-load-truncated is enabled; truncating to {keep} bytes"
        );
        let f = std::fs::OpenOptions::new().write(true).open(path).map_err(|e| format!("{name}: {e}"))?;
        f.set_len(keep).map_err(|e| format!("{name}: {e}"))?;
        let _ = f.sync_all();
        return Ok(keep);
    }
    Ok(data.len() as u64)
}

/// Start-up with `appendonly yes`: load the manifest's files, then open the
/// last incr file for appending (creating base + incr + manifest when the
/// directory is new, as Redis 7.0 does).
pub fn load_and_open(srv: &Arc<Server>, cfg: &PersistConfig) -> Result<(), String> {
    let dir = cfg.aof_dir();
    let dir_existed = dir.is_dir();
    std::fs::create_dir_all(&dir).map_err(|e| format!("can't create the AOF directory {}: {e}", dir.display()))?;
    let mpath = manifest_path(cfg);
    let aof = &srv.persist.aof;
    let t0 = Instant::now();
    let mut m = if mpath.exists() {
        let text = std::fs::read_to_string(&mpath).map_err(|e| format!("can't read the AOF manifest: {e}"))?;
        parse_manifest(&text)?
    } else {
        Manifest::default()
    };
    // A pre-7.0 single-file AOF in `dir`: it becomes the base of a
    // multi-part AOF, as Redis 7.0 upgrades it.
    // Also an upgrade interrupted before the rename: a manifest with only
    // that file as its base, the file not moved yet (Redis's three cases).
    let old_style = cfg.dir.join(&cfg.appendfilename);
    let upgrade = old_style.is_file()
        && (!dir_existed
            || !mpath.exists()
            || (m.base.is_none() && m.incrs.is_empty())
            || (m.incrs.is_empty()
                && m.base.as_ref().is_some_and(|b| b.0 == cfg.appendfilename)
                && !dir.join(&cfg.appendfilename).exists()));
    if upgrade {
        let to = dir.join(&cfg.appendfilename);
        std::fs::rename(&old_style, &to).map_err(|e| format!("can't move the old AOF into {}: {e}", dir.display()))?;
        m.base = Some((cfg.appendfilename.clone(), 1));
        m.incrs.clear();
        let iname = format!("{}.1.incr.aof", cfg.appendfilename);
        File::create(dir.join(&iname)).map_err(|e| format!("can't create the AOF incr file: {e}"))?;
        m.incrs.push((iname, 1));
        persist_manifest(cfg, &m).map_err(|e| format!("can't write the AOF manifest: {e}"))?;
        eprintln!("ferrite: upgraded the old-style AOF {} to a multi-part AOF", old_style.display());
    }
    // Every file the manifest names must be there (Redis stats them all first).
    for f in m.base.iter().map(|b| &b.0).chain(m.incrs.iter().map(|i| &i.0)) {
        if let Err(e) = std::fs::metadata(dir.join(f)) {
            let why = e.to_string();
            let why = why.split(" (os error").next().unwrap_or(&why);
            return Err(format!("Unable to obtain the AOF file {f} length. stat: {why}"));
        }
    }
    let mut total = 0u64;
    if m.base.is_some() || !m.incrs.is_empty() {
        let mut acc = srv.store.access_all();
        if let Some((b, _)) = &m.base {
            let n = load_file(srv, &dir.join(b), m.incrs.is_empty(), cfg, &mut acc)?;
            aof.base_size.store(n, Ordering::Relaxed);
            total += n;
        }
        let count = m.incrs.len();
        for (i, (f, _)) in m.incrs.iter().enumerate() {
            total += load_file(srv, &dir.join(f), i + 1 == count, cfg, &mut acc)?;
        }
        eprintln!("ferrite: DB loaded from append only file: {:.3} seconds", t0.elapsed().as_secs_f64());
    }
    aof.current_size.store(total, Ordering::Relaxed);
    if m.base.is_none() && m.incrs.is_empty() {
        // A fresh directory: base of the (empty) data set + first incr.
        let (bseq, iseq) = next_seq(&m);
        let bname = base_name(cfg, bseq);
        let mut acc = srv.store.access_all();
        write_base_sync(srv, &mut acc, &dir.join(&bname)).map_err(|e| format!("can't write the AOF base: {e}"))?;
        drop(acc);
        m.base = Some((bname, bseq));
        let iname = format!("{}.{iseq}.incr.aof", cfg.appendfilename);
        m.incrs.push((iname, iseq));
        persist_manifest(cfg, &m).map_err(|e| format!("can't write the AOF manifest: {e}"))?;
    } else if m.incrs.is_empty() {
        let (_, iseq) = next_seq(&m);
        m.incrs.push((format!("{}.{iseq}.incr.aof", cfg.appendfilename), iseq));
        persist_manifest(cfg, &m).map_err(|e| format!("can't write the AOF manifest: {e}"))?;
    }
    let last = m.incrs.last().map(|(n, _)| dir.join(n)).ok_or("no incr file")?;
    *aof.manifest.lock() = m;
    open_writer(srv, &last, cfg.appendfsync).map_err(|e| format!("can't open the AOF: {e}"))
}

fn open_writer(srv: &Arc<Server>, incr: &Path, policy: Fsync) -> io::Result<()> {
    let aof = &srv.persist.aof;
    let f = std::fs::OpenOptions::new().create(true).append(true).open(incr)?;
    *aof.file.lock() = Some(f);
    {
        let mut g = aof.buf.lock();
        g.stop = false;
        g.last_db = -1;
        aof.fsynced.store(g.offset, Ordering::Release);
    }
    aof.fsync_always.store(policy == Fsync::Always, Ordering::Relaxed);
    aof.write_ok.store(true, Ordering::Relaxed);
    aof.last_rewrite_ok.store(true, Ordering::Relaxed);
    aof.last_rewrite_secs.store(-1, Ordering::Relaxed);
    spawn_writer(srv)?;
    aof.on.store(true, Ordering::SeqCst);
    Ok(())
}

/// Keep `fsync_always` in step with CONFIG SET appendfsync.
pub fn refresh_policy(srv: &Server) {
    let p = srv.persist.cfg.lock().appendfsync;
    srv.persist.aof.fsync_always.store(p == Fsync::Always, Ordering::Relaxed);
}

/// A base RDB written synchronously (fresh AOF directory).
fn write_base_sync(srv: &Server, acc: &mut crate::keyspace::Access<'_>, path: &Path) -> io::Result<()> {
    let ndb = srv.store.dbs.len();
    let rdb = path.extension().is_none_or(|e| e != "aof");
    snapshot::write_atomically(path, |out| {
        snapshot::write_image(
            out,
            rdb,
            snapshot::LruMode::of(srv),
            true,
            ndb,
            &crate::script::function_dump_codes(srv),
            None,
            |db, f| {
                for i in 0..crate::keyspace::SHARDS {
                    acc.with_slot(db, i as u16, |sh| f(sh));
                }
            },
        )
    })
    .map(|_| ())
}

// ---------- rewrite ----------

/// BGREWRITEAOF from a context holding no lock.
pub fn start_rewrite(srv: &Arc<Server>) -> Result<&'static str, String> {
    let mut acc = srv.store.access_all();
    start_rewrite_locked(srv, &mut acc)
}

/// BGREWRITEAOF with exclusive access held. Returns the status reply.
pub fn start_rewrite_locked(srv: &Arc<Server>, acc: &mut crate::keyspace::Access<'_>) -> Result<&'static str, String> {
    let p = &srv.persist;
    let aof = &p.aof;
    if aof.rewriting.load(Ordering::Relaxed) {
        return Err("ERR Background append only file rewriting already in progress".into());
    }
    if p.snap.running() {
        aof.rewrite_scheduled.store(true, Ordering::Relaxed);
        return Ok("Background append only file rewriting scheduled");
    }
    let cfg = p.cfg.lock().clone();
    let dir = cfg.aof_dir();
    std::fs::create_dir_all(&dir).map_err(|e| format!("ERR can't create the AOF directory: {e}"))?;
    let mut m = aof.manifest.lock().clone();
    if m.base.is_none() && m.incrs.is_empty() && manifest_path(&cfg).exists() {
        if let Ok(t) = std::fs::read_to_string(manifest_path(&cfg)) {
            m = parse_manifest(&t).unwrap_or_default();
        }
    }
    let (bseq, iseq) = next_seq(&m);
    let base = base_name(&cfg, bseq);
    if aof.enabled() {
        // New writes go to a new incr file from this instant on.
        let iname = format!("{}.{iseq}.incr.aof", cfg.appendfilename);
        m.incrs.push((iname.clone(), iseq));
        persist_manifest(&cfg, &m).map_err(|e| format!("ERR can't write the AOF manifest: {e}"))?;
        let mut g = aof.buf.lock();
        g.items.push_back(Item::Open(dir.join(&iname)));
        g.last_db = -1;
        drop(g);
        aof.cv.notify_one();
        *aof.manifest.lock() = m;
    }
    aof.rewrite_keep_from.store(if aof.enabled() { iseq } else { u64::MAX }, Ordering::Relaxed);
    aof.rewriting.store(true, Ordering::Relaxed);
    aof.rewrite_started_ms.store(now_ms(), Ordering::Relaxed);
    let _ = bseq;
    match snapshot::start_job_locked(srv, acc, JobKind::AofBase(dir.join(&base))) {
        Ok(_) => Ok("Background append only file rewriting started"),
        Err(e) => {
            aof.rewriting.store(false, Ordering::Relaxed);
            Err(e)
        }
    }
}

/// The snapshot of a rewrite finished: install the new base.
pub fn rewrite_done(srv: &Server, job: &SnapJob, r: io::Result<u64>) {
    let p = &srv.persist;
    let aof = &p.aof;
    aof.last_rewrite_secs.store((now_ms() - job.started_ms) / 1000, Ordering::Relaxed);
    let JobKind::AofBase(path) = &job.kind else {
        aof.rewriting.store(false, Ordering::Relaxed);
        return;
    };
    let size = match r {
        Ok(n) => n,
        Err(e) => {
            eprintln!("ferrite: Background AOF rewrite failed: {e}");
            // Killed on purpose (appendonly no) is not a failure (Redis).
            if !job.cancelled.load(Ordering::Relaxed) {
                aof.last_rewrite_ok.store(false, Ordering::Relaxed);
            }
            let _ = std::fs::remove_file(path);
            aof.rewriting.store(false, Ordering::Relaxed);
            return;
        }
    };
    let cfg = p.cfg.lock().clone();
    let keep_from = aof.rewrite_keep_from.load(Ordering::Relaxed);
    let mut m = aof.manifest.lock();
    let old = m.clone();
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let seq = name.split('.').rev().nth(2).and_then(|s| s.parse().ok()).unwrap_or(1);
    let mut nm = Manifest { base: Some((name, seq)), incrs: Vec::new(), history: Vec::new() };
    nm.incrs = old.incrs.iter().filter(|(_, s)| *s >= keep_from).cloned().collect();
    if let Err(e) = persist_manifest(&cfg, &nm) {
        eprintln!("ferrite: can't write the AOF manifest after a rewrite: {e}");
        aof.last_rewrite_ok.store(false, Ordering::Relaxed);
        aof.rewriting.store(false, Ordering::Relaxed);
        return;
    }
    *m = nm.clone();
    drop(m);
    let dir = cfg.aof_dir();
    let keep: Vec<&String> = nm.base.iter().map(|b| &b.0).chain(nm.incrs.iter().map(|i| &i.0)).collect();
    for f in old.base.iter().map(|b| &b.0).chain(old.incrs.iter().map(|i| &i.0)).chain(old.history.iter().map(|h| &h.0))
    {
        if !keep.contains(&f) {
            let _ = std::fs::remove_file(dir.join(f));
        }
    }
    let incr_size: u64 =
        nm.incrs.iter().filter_map(|(f, _)| std::fs::metadata(dir.join(f)).ok()).map(|md| md.len()).sum();
    aof.base_size.store(size, Ordering::Relaxed);
    aof.current_size.store(size + incr_size, Ordering::Relaxed);
    aof.last_rewrite_ok.store(true, Ordering::Relaxed);
    aof.rewrites.fetch_add(1, Ordering::Relaxed);
    eprintln!("ferrite: Background AOF rewrite finished successfully");
    aof.rewriting.store(false, Ordering::Relaxed);
}

/// `CONFIG SET appendonly yes`: start logging now into a new incr file and
/// write a base of the current data set in the background.
pub fn start_at_runtime(srv: &Arc<Server>) -> Result<(), String> {
    let cfg = srv.persist.cfg.lock().clone();
    let dir = cfg.aof_dir();
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let aof = &srv.persist.aof;
    let mut acc = srv.store.access_all();
    if aof.rewriting.load(Ordering::Relaxed) || srv.persist.snap.running() {
        srv.persist.snap.cancel();
    }
    let mut m = if manifest_path(&cfg).exists() {
        std::fs::read_to_string(manifest_path(&cfg)).ok().and_then(|t| parse_manifest(&t).ok()).unwrap_or_default()
    } else {
        Manifest::default()
    };
    let (_, iseq) = next_seq(&m);
    let iname = format!("{}.{iseq}.incr.aof", cfg.appendfilename);
    // Old files become history; they are deleted when the base is ready.
    let mut hist: Vec<(String, u64)> = m.base.take().into_iter().collect();
    hist.append(&mut m.incrs);
    m.history.extend(hist);
    m.incrs.push((iname.clone(), iseq));
    *aof.manifest.lock() = m;
    open_writer(srv, &dir.join(&iname), cfg.appendfsync).map_err(|e| e.to_string())?;
    aof.current_size.store(0, Ordering::Relaxed);
    start_rewrite_inner(srv, &mut acc, iseq)
}

fn start_rewrite_inner(srv: &Arc<Server>, acc: &mut crate::keyspace::Access<'_>, keep_from: u64) -> Result<(), String> {
    let aof = &srv.persist.aof;
    let cfg = srv.persist.cfg.lock().clone();
    let m = aof.manifest.lock().clone();
    let bseq = m.base.as_ref().map_or(0, |b| b.1).max(keep_from.saturating_sub(1)) + 1;
    let base = cfg.aof_dir().join(base_name(&cfg, bseq));
    aof.rewrite_keep_from.store(keep_from, Ordering::Relaxed);
    aof.rewriting.store(true, Ordering::Relaxed);
    aof.rewrite_started_ms.store(now_ms(), Ordering::Relaxed);
    snapshot::start_job_locked(srv, acc, JobKind::AofBase(base)).map(|_| ()).inspect_err(|_| {
        aof.rewriting.store(false, Ordering::Relaxed);
    })
}

/// DEBUG LOADAOF: flush the AOF and replay it into the (already emptied)
/// data set, with the exclusive access the DEBUG command holds.
/// Is there an AOF manifest on disk (DEBUG LOADAOF with the AOF off)?
pub fn manifest_on_disk(srv: &Server) -> bool {
    manifest_path(&srv.persist.cfg.lock()).is_file()
}

pub fn reload_with<'s>(srv: &'s Server, acc: &mut crate::keyspace::Access<'s>) -> Result<(), String> {
    flush_on_shutdown(srv);
    let cfg = srv.persist.cfg.lock().clone();
    // The manifest on disk, as Redis's DEBUG LOADAOF (also with the AOF off,
    // after a BGREWRITEAOF wrote one).
    let m = match std::fs::read_to_string(manifest_path(&cfg)) {
        Ok(t) => parse_manifest(&t)?,
        Err(_) => srv.persist.aof.manifest.lock().clone(),
    };
    let dir = cfg.aof_dir();
    if let Some((b, _)) = &m.base {
        load_file(srv, &dir.join(b), false, &cfg, acc)?;
    }
    for (f, _) in &m.incrs {
        load_file(srv, &dir.join(f), false, &cfg, acc)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifest_roundtrip() {
        let t = "file appendonly.aof.1.base.rdb seq 1 type b\nfile appendonly.aof.1.incr.aof seq 1 type i\nfile appendonly.aof.2.incr.aof seq 2 type i\n";
        let m = parse_manifest(t).unwrap();
        assert_eq!(m.base.as_ref().unwrap().1, 1);
        assert_eq!(m.incrs.len(), 2);
        assert_eq!(render_manifest(&m), t);
        assert!(parse_manifest("file x seq 1").is_err());
        assert!(parse_manifest("file a seq 2 type i\nfile b seq 1 type i\n").is_err());
    }

    #[test]
    fn command_parser_truncation() {
        let d = b"*2\r\n$3\r\nDEL\r\n$1\r\nk\r\n*3\r\n$3\r\nSET\r\n$1\r\na";
        let mut p = 0;
        assert_eq!(parse_command(d, &mut p).unwrap().unwrap().len(), 2);
        let before = p;
        assert!(parse_command(d, &mut p).unwrap().is_none());
        assert_eq!(p, before);
        assert!(parse_command(b"hello\r\n", &mut 0).is_err());
    }
}
