//! Loading RDB files (dump.rdb, AOF bases and RDB preambles) into the
//! keyspace. Every length is checked by `ferrite-rdb`'s reader; a corrupt
//! file is an error, never a panic.

use super::snapshot::*;
use crate::keyspace::{shard_of, smallbytes::SmallBytes, Entry};
use crate::server::Tunables;
use crate::server::{now_ms, Server};
use crate::types::hash::{Hash, Limits};
use ferrite_commands::key_hash_slot;
use ferrite_rdb::{crc64::crc64, decode_value, RdbError, RdbValue, Reader};
use std::path::Path;
use std::sync::atomic::Ordering;

#[derive(Debug, Default, Clone, Copy)]
pub struct LoadStats {
    pub loaded: u64,
    pub expired: u64,
    /// Bytes consumed (the RDB part of an AOF with a preamble).
    pub consumed: usize,
}

/// How a load error about corrupt content (not a short read or an I/O error) starts.
pub const CORRUPT: &str = "Corrupt RDB content: ";

fn bad(e: RdbError) -> String {
    format!("{e}")
}

/// Load `path` (an RDB file). The caller guarantees nobody else touches
/// the keyspace (start-up, or exclusive access without shard guards).
///
/// The file is memory-mapped, not read into a buffer: a multi-gigabyte
/// dump.rdb costs page cache, not a second copy in the heap.
pub fn load_rdb_file(srv: &Server, path: &Path) -> Result<LoadStats, String> {
    load_rdb_file_opts(srv, path, true)
}

/// [`load_rdb_file`]; `allow_dup` false = a function library that already
/// exists fails the load (Redis's rdbLoad without RDBFLAGS_ALLOW_DUP, as in
/// DEBUG RELOAD NOFLUSH without MERGE).
pub fn load_rdb_file_opts(srv: &Server, path: &Path, allow_dup: bool) -> Result<LoadStats, String> {
    let file = std::fs::File::open(path).map_err(|e| format!("can't read {}: {e}", path.display()))?;
    if file.metadata().map(|m| m.len()).unwrap_or(0) == 0 {
        return load_rdb_bytes_opts(srv, &[], false, allow_dup);
    }
    // SAFETY: the mapping is read-only and lives for this call only; like
    // Redis, ferrite assumes nobody truncates its dump.rdb while it starts
    // (SAVE writes a temp file and renames it, never in place).
    let map = unsafe { memmap2::Mmap::map(&file) }.map_err(|e| format!("can't map {}: {e}", path.display()))?;
    load_rdb_bytes_opts(srv, &map, false, allow_dup)
}

/// A decoded key on its way from the parser thread to the inserter.
struct Rec {
    db: usize,
    key: Vec<u8>,
    value: RdbValue,
    compact: bool,
    expire_at: i64,
    /// IDLE (seconds) / FREQ opcodes that preceded the key.
    idle: Option<u64>,
    freq: Option<u8>,
}

/// What the parser thread sends to the inserter.
enum Msg {
    /// RESIZEDB: the database's key count, to size its tables once.
    Resize {
        db: usize,
        keys: u64,
    },
    Keys(Vec<Rec>),
}

/// What the parser thread reports at the end.
struct Parsed {
    body_end: usize,
    expired: u64,
    empty: u64,
}

/// Parse records from `data` (after the 9-byte header), sending batches.
fn parse_records(
    srv: &Server,
    data: &[u8],
    ndb: usize,
    now: i64,
    preamble: bool,
    allow_dup: bool,
    tx: std::sync::mpsc::SyncSender<Msg>,
) -> Result<Parsed, String> {
    let mut r = Reader::new(&data[9..]);
    let mut db = 0usize;
    let mut expire_at: i64 = 0;
    let mut expired = 0u64;
    let mut empty = 0u64;
    let (mut idle, mut freq) = (None, None);
    let mut batch = Vec::with_capacity(256);
    let mut batch_bytes = 0usize;
    loop {
        let op = r.u8().map_err(bad)?;
        match op {
            OP_EOF => break,
            OP_SELECTDB => {
                let d = r.len().map_err(bad)? as usize;
                if d >= ndb {
                    return Err(format!("FATAL: Data file was created with a Redis server configured to handle more than {ndb} databases. Exiting"));
                }
                db = d;
            }
            OP_RESIZEDB => {
                let keys = r.len().map_err(bad)?;
                r.len().map_err(bad)?;
                if tx.send(Msg::Resize { db, keys }).is_err() {
                    return Err("loader stopped".into());
                }
            }
            OP_AUX => {
                let k = r.string().map_err(bad)?;
                let v = r.string().map_err(bad)?;
                if k.starts_with(b"repl-") {
                    srv.repl.note_rdb_aux(&k, &v);
                }
            }
            OP_EXPIRETIME_MS => {
                let b = r.take(8).map_err(bad)?;
                expire_at = i64::from_le_bytes(b.try_into().map_err(|_| "bad expire")?);
            }
            OP_EXPIRETIME => {
                let b = r.take(4).map_err(bad)?;
                expire_at = i32::from_le_bytes(b.try_into().map_err(|_| "bad expire")?) as i64 * 1000;
            }
            OP_IDLE => {
                idle = Some(r.len().map_err(bad)?);
            }
            OP_FREQ => {
                freq = Some(r.u8().map_err(bad)?);
            }
            OP_FUNCTION2 => {
                // A function library (Redis fails the load when one does not compile).
                let code = r.string().map_err(bad)?;
                crate::script::function_load_code(srv, &code, allow_dup)
                    .map_err(|e| format!("Failed loading library from the RDB: {e}"))?;
            }
            OP_MODULE_AUX => return Err("The RDB holds module data, which Ferrite cannot load".into()),
            ty => {
                let start = r.remaining();
                let key = r.string().map_err(bad)?;
                let value = match decode_value(ty, &mut r) {
                    Ok(v) => v,
                    // Redis 7.0 skips empty collections (with a log line).
                    Err(RdbError::EmptyKey) => {
                        eprintln!("ferrite: rdbLoadObject skipping empty key: {}", String::from_utf8_lossy(&key));
                        expire_at = 0;
                        (idle, freq) = (None, None);
                        empty += 1;
                        continue;
                    }
                    Err(RdbError::Unsupported(x)) => {
                        return Err(format!("Unsupported value type {x} for key '{}'", String::from_utf8_lossy(&key)))
                    }
                    Err(RdbError::Bad(m)) => {
                        return Err(format!("{CORRUPT}{m} (key '{}')", String::from_utf8_lossy(&key)))
                    }
                    Err(e) => return Err(format!("{e} (key '{}')", String::from_utf8_lossy(&key))),
                };
                let exp = std::mem::take(&mut expire_at);
                let (idle, freq) = (idle.take(), freq.take());
                // A replica keeps them (Redis's iAmMaster check): the master's DEL decides.
                let keep = srv.repl.replica.is_replica() || srv.repl.load_keep_expired.load(Ordering::Relaxed);
                if exp != 0 && exp < now && !preamble && !keep {
                    expired += 1;
                    if srv.repl.load_feed_expired.load(Ordering::Relaxed) {
                        srv.repl.feed(&[(db, vec![bytes::Bytes::from_static(b"DEL"), bytes::Bytes::from(key)])]);
                    }
                    continue;
                }
                batch.push(Rec {
                    db,
                    key,
                    value,
                    // A zipmap is converted checking both limits (Redis's rdbLoadObject).
                    compact: ferrite_rdb::is_compact_type(ty) && ty != ferrite_rdb::types::HASH_ZIPMAP,
                    expire_at: exp,
                    idle,
                    freq,
                });
                batch_bytes += start - r.remaining();
                if batch.len() >= 1024 || batch_bytes >= 4 << 20 {
                    if tx.send(Msg::Keys(std::mem::take(&mut batch))).is_err() {
                        return Err("loader stopped".into());
                    }
                    batch_bytes = 0;
                }
            }
        }
    }
    if !batch.is_empty() && tx.send(Msg::Keys(batch)).is_err() {
        return Err("loader stopped".into());
    }
    Ok(Parsed { body_end: 9 + (data.len() - 9 - r.remaining()), expired, empty })
}

/// Load an RDB image from memory. `preamble`: part of an AOF (expired keys
/// are kept, as Redis does, and trailing bytes are allowed).
///
/// Three threads share the work: one parses and decodes records, this one
/// builds ferrite values and inserts them, and one checks the CRC64.
pub fn load_rdb_bytes(srv: &Server, data: &[u8], preamble: bool) -> Result<LoadStats, String> {
    load_rdb_bytes_opts(srv, data, preamble, true)
}

/// [`load_rdb_bytes`] with `allow_dup` (see [`load_rdb_file_opts`]).
pub fn load_rdb_bytes_opts(srv: &Server, data: &[u8], preamble: bool, allow_dup: bool) -> Result<LoadStats, String> {
    if data.len() < 9 || &data[..5] != b"REDIS" {
        return Err("Wrong signature trying to load DB from file".into());
    }
    let ver: u32 = std::str::from_utf8(&data[5..9]).ok().and_then(|s| s.parse().ok()).ok_or("bad RDB version")?;
    if !(1..=10).contains(&ver) {
        return Err(format!("Can't handle RDB format version {ver}"));
    }
    let mut st = LoadStats::default();
    let now = now_ms();
    let tun = &srv.tun;
    let lru = crate::cmd::new_lru(srv, now);
    let ndb = srv.store.dbs.len();
    let big = Tunables::get(&tun.hash_max_listpack_entries);
    let lfu = crate::evict::policy(srv).is_lfu();
    let (parsed, crc_guess) = std::thread::scope(|sc| -> Result<(Parsed, Option<u64>), String> {
        // The checksum of everything but the last 8 bytes: right when the
        // file is exactly one RDB image (the usual case).
        let crc = (!preamble && data.len() >= 17).then(|| sc.spawn(|| crc64(0, &data[..data.len() - 8])));
        let (tx, rx) = std::sync::mpsc::sync_channel::<Msg>(8);
        let parser = sc.spawn(move || parse_records(srv, data, ndb, now, preamble, allow_dup, tx));
        let mut failure = None;
        for msg in rx.iter() {
            let batch = match msg {
                Msg::Keys(b) => b,
                Msg::Resize { db, keys } => {
                    // Spread over the slot tables (an empty table stays
                    // unallocated when the database is small).
                    let per_slot = (keys as usize).min(1 << 32) / 16384;
                    if per_slot > 0 {
                        for sh in srv.store.dbs[db].shards.iter() {
                            sh.lock().reserve_per_slot(per_slot + per_slot / 8);
                        }
                    }
                    continue;
                }
            };
            let load_delay = crate::cmd::config::KEY_LOAD_DELAY.load(std::sync::atomic::Ordering::Relaxed);
            for rec in batch {
                if load_delay != 0 {
                    crate::cmd::config::debug_delay(load_delay);
                }
                let Rec { db, key, value, compact, expire_at, idle, freq } = rec;
                // Like Redis's objectSetLRUOrLFU.
                let lru = match (lfu, freq, idle) {
                    (true, Some(f), _) => (lru & !0xff) | f as u32,
                    (false, _, Some(i)) => crate::server::lru_of(now).saturating_sub(i.min(u32::MAX as u64) as u32),
                    _ => lru,
                };
                let value = match value {
                    RdbValue::Hash(h) if h.len() > big => big_hash(h),
                    v => crate::rdbconv::from_rdb(v, tun, compact),
                };
                let value = match value {
                    Ok(v) => v,
                    Err(e) => {
                        failure = Some(format!("{e} (key '{}')", String::from_utf8_lossy(&key)));
                        break;
                    }
                };
                let slot = key_hash_slot(&key);
                let entry = Box::new(Entry { key: SmallBytes::new(&key), value, expire_at, lru });
                srv.store.dbs[db].shards[shard_of(slot)].lock().put_one_probe(slot, entry);
                st.loaded += 1;
            }
            if failure.is_some() {
                break;
            }
        }
        drop(rx);
        let parsed = parser.join().map_err(|_| "RDB parser panicked".to_string())?;
        let crc = crc.and_then(|h| h.join().ok());
        if let Some(f) = failure {
            return Err(f);
        }
        Ok((parsed?, crc))
    })?;
    st.expired = parsed.expired;
    if parsed.empty > 0 {
        eprintln!(
            "ferrite: Done loading RDB, keys loaded: {}, keys expired: {}, empty keys skipped: {}.",
            st.loaded, st.expired, parsed.empty
        );
    }
    let body_end = parsed.body_end;
    if ver >= 5 {
        let b = data.get(body_end..body_end + 8).ok_or("Short read: the RDB file has no checksum")?;
        let want = u64::from_le_bytes(b.try_into().map_err(|_| "bad checksum")?);
        let have = match crc_guess {
            Some(c) if body_end + 8 == data.len() => c,
            _ => crc64(0, &data[..body_end]),
        };
        if want != 0 && have != want && !crate::cmd::dump::skip_checksum() {
            // Redis's two lines (the second is what tools and tests look for).
            return Err(format!(
                "Wrong RDB checksum expected: ({want:016x}) got ({have:016x}). Aborting now. \
                 Internal error in RDB reading offset 0, function at rdb.c:0 -> RDB CRC error"
            ));
        }
        st.consumed = body_end + 8;
    } else {
        st.consumed = body_end;
    }
    if !preamble && st.consumed != data.len() {
        eprintln!("ferrite: warning: {} bytes after the RDB end were ignored", data.len() - st.consumed);
    }
    srv.persist.aof.load_loaded.store(st.loaded, std::sync::atomic::Ordering::Relaxed);
    srv.persist.aof.load_expired.store(st.expired, std::sync::atomic::Ordering::Relaxed);
    Ok(st)
}

/// A hash too big for a listpack, built as a hashtable from the start
/// (inserting into a listpack first would be quadratic).
fn big_hash(h: Vec<(Vec<u8>, Vec<u8>)>) -> Result<crate::keyspace::Value, &'static str> {
    let mut hs = Hash::default();
    hs.convert();
    let lim = Limits { max_entries: usize::MAX, max_value: usize::MAX };
    for (f, v) in &h {
        if !hs.set(f, v, lim) {
            return Err("duplicate hash field");
        }
    }
    Ok(crate::keyspace::Value::Hash(Box::new(hs)))
}
