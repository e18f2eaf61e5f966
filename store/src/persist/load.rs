//! Loading RDB files (dump.rdb, AOF bases and RDB preambles) into the
//! keyspace. Every length is checked by `ferrite-rdb`'s reader; a corrupt
//! file is an error, never a panic.

use super::snapshot::*;
use crate::keyspace::{shard_of, smallbytes::SmallBytes, Entry};
use crate::server::{now_ms, Server};
use ferrite_commands::key_hash_slot;
use ferrite_rdb::{crc64::crc64, decode_value, RdbError, Reader};
use std::path::Path;

#[derive(Debug, Default, Clone, Copy)]
pub struct LoadStats {
    pub loaded: u64,
    pub expired: u64,
    /// Bytes consumed (the RDB part of an AOF with a preamble).
    pub consumed: usize,
}

fn bad(e: RdbError) -> String {
    format!("{e}")
}

/// Load `path` (an RDB file). The caller guarantees nobody else touches
/// the keyspace (start-up, or exclusive access without shard guards).
pub fn load_rdb_file(srv: &Server, path: &Path) -> Result<LoadStats, String> {
    let data = std::fs::read(path).map_err(|e| format!("can't read {}: {e}", path.display()))?;
    load_rdb_bytes(srv, &data, false)
}

/// Load an RDB image from memory. `preamble`: part of an AOF (expired keys
/// are kept, as Redis does, and trailing bytes are allowed).
pub fn load_rdb_bytes(srv: &Server, data: &[u8], preamble: bool) -> Result<LoadStats, String> {
    if data.len() < 9 || &data[..5] != b"REDIS" {
        return Err("Wrong signature trying to load DB from file".into());
    }
    let ver: u32 = std::str::from_utf8(&data[5..9]).ok().and_then(|s| s.parse().ok()).ok_or("bad RDB version")?;
    if !(1..=10).contains(&ver) {
        return Err(format!("Can't handle RDB format version {ver}"));
    }
    let mut r = Reader::new(&data[9..]);
    let mut st = LoadStats::default();
    let now = now_ms();
    let tun = &srv.tun;
    let lru = crate::cmd::new_lru(srv, now);
    let ndb = srv.store.dbs.len();
    let mut db = 0usize;
    let mut expire_at: i64 = 0;
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
                r.len().map_err(bad)?;
                r.len().map_err(bad)?;
            }
            OP_AUX => {
                r.string().map_err(bad)?;
                r.string().map_err(bad)?;
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
                r.len().map_err(bad)?;
            }
            OP_FREQ => {
                r.u8().map_err(bad)?;
            }
            OP_FUNCTION2 => {
                // Function libraries: not executed by Ferrite.
                r.string().map_err(bad)?;
                eprintln!("ferrite: warning: the RDB holds a function library, which Ferrite does not load");
            }
            OP_MODULE_AUX => return Err("The RDB holds module data, which Ferrite cannot load".into()),
            ty => {
                let key = r.string().map_err(bad)?;
                let v = match decode_value(ty, &mut r) {
                    Ok(v) => v,
                    Err(RdbError::Unsupported(x)) => {
                        return Err(format!("Unsupported value type {x} for key '{}'", String::from_utf8_lossy(&key)))
                    }
                    Err(e) => return Err(format!("{e} (key '{}')", String::from_utf8_lossy(&key))),
                };
                let compact = ferrite_rdb::is_compact_type(ty);
                let exp = std::mem::take(&mut expire_at);
                if exp != 0 && exp < now && !preamble {
                    st.expired += 1;
                    continue;
                }
                let value = crate::rdbconv::from_rdb(v, tun, compact)
                    .map_err(|e| format!("{e} (key '{}')", String::from_utf8_lossy(&key)))?;
                let slot = key_hash_slot(&key);
                let entry = Box::new(Entry { key: SmallBytes::new(&key), value, expire_at: exp, lru });
                srv.store.dbs[db].shards[shard_of(slot)].lock().put(slot, entry);
                st.loaded += 1;
            }
        }
    }
    let body_end = 9 + (data.len() - 9 - r.remaining());
    if ver >= 5 {
        let b = r.take(8).map_err(|_| "Short read: the RDB file has no checksum".to_string())?;
        let want = u64::from_le_bytes(b.try_into().map_err(|_| "bad checksum")?);
        if want != 0 && crc64(0, &data[..body_end]) != want {
            return Err("Wrong RDB checksum. Aborting now.".into());
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
