//! DUMP and RESTORE: values serialized in Redis 7.0's RDB format.

use super::{eq_ic, CmdError, CmdImpl, CmdResult, Cx, Lock, SYNTAX};
use crate::notify;
use crate::rdbconv::{from_rdb, to_rdb};
use std::sync::atomic::{AtomicBool, Ordering};

/// `DEBUG SET-SKIP-CHECKSUM-VALIDATION 1`: RESTORE payloads and RDB files are accepted whatever their CRC64
/// (their content is still validated). Process-wide, like Redis's flag.
static SKIP_CHECKSUM: AtomicBool = AtomicBool::new(false);

pub fn set_skip_checksum(on: bool) {
    SKIP_CHECKSUM.store(on, Ordering::Relaxed);
}

pub fn skip_checksum() -> bool {
    SKIP_CHECKSUM.load(Ordering::Relaxed)
}

/// Redis logs why a RESTORE payload was refused at the verbose level, in its RDB error format.
fn log_refused(reason: &str) {
    if matches!(super::config::accepted_value("loglevel").as_deref(), Some("verbose" | "debug")) {
        eprintln!("ferrite: Internal error in RDB reading offset 0, function at rdb.c:0 -> {reason}");
    }
}

pub static COMMANDS: &[CmdImpl] = &[
    CmdImpl { name: "dump", handler: dump, lock: Lock::Keys },
    CmdImpl { name: "restore", handler: restore, lock: Lock::Keys },
    // Redis Cluster's MIGRATE sends RESTORE-ASKING (RESTORE that a cluster node accepts for an importing slot).
    CmdImpl { name: "restore-asking", handler: restore, lock: Lock::Keys },
];

fn dump(cx: &mut Cx) -> CmdResult {
    let key = cx.arg(1);
    let payload = match cx.ks.lookup_read(key)? {
        None => None,
        Some(e) => Some(ferrite_rdb::dump_payload(&to_rdb(&e.value))),
    };
    match payload {
        Some(p) => cx.out.bulk(&p),
        None => cx.out.null(),
    }
    Ok(())
}

fn restore(cx: &mut Cx) -> CmdResult {
    let key = cx.arg(1);
    let (mut replace, mut absttl) = (false, false);
    let (mut idle, mut freq): (i64, i64) = (-1, -1);
    let mut j = 4;
    while j < cx.argc() {
        let a = cx.arg(j);
        let more = cx.argc() - j - 1;
        if eq_ic(a, b"replace") {
            replace = true;
        } else if eq_ic(a, b"absttl") {
            absttl = true;
        } else if eq_ic(a, b"idletime") && more >= 1 && freq == -1 {
            idle = cx.int_arg(j + 1)?;
            if idle < 0 {
                return Err(CmdError::err("Invalid IDLETIME value, must be >= 0"));
            }
            j += 1;
        } else if eq_ic(a, b"freq") && more >= 1 && idle == -1 {
            freq = cx.int_arg(j + 1)?;
            if !(0..=255).contains(&freq) {
                return Err(CmdError::err("Invalid FREQ value, must be >= 0 and <= 255"));
            }
            j += 1;
        } else {
            return Err(SYNTAX);
        }
        j += 1;
    }
    if !replace && cx.ks.lookup(key)?.is_some() {
        return Err(CmdError::st("BUSYKEY Target key name already exists."));
    }
    let mut ttl = cx.int_arg(2)?;
    if ttl < 0 {
        return Err(CmdError::err("Invalid TTL value, must be >= 0"));
    }
    let payload = cx.arg(3);
    let valid = if skip_checksum() {
        // Only the version is checked.
        payload.len() >= 10
            && u16::from_le_bytes([payload[payload.len() - 10], payload[payload.len() - 9]]) <= ferrite_rdb::RDB_VERSION
    } else {
        ferrite_rdb::verify_dump_payload(payload).is_some()
    };
    if !valid {
        return Err(CmdError::err("DUMP payload version or checksum are wrong"));
    }
    // Like Redis, the value is read from the whole payload: a value whose
    // last bytes run into the footer still loads if it is well formed.
    // `sanitize-dump-payload yes` (or `clients`: every client here) adds Redis's deep checks.
    let deep = matches!(super::config::accepted_value("sanitize-dump-payload").as_deref(), Some("yes" | "clients"));
    let rv = ferrite_rdb::decode_dump_body_with(payload, deep).map_err(|e| {
        if let ferrite_rdb::RdbError::Bad(m) = e {
            log_refused(m);
        }
        CmdError::err("Bad data format")
    })?;
    // Module values (no module system here) are refused like Redis does
    // when the module is not loaded.
    let compact = matches!(payload.first(), Some(&(12 | 13 | 16 | 17)));
    let value = from_rdb(rv, &cx.srv.tun, compact).map_err(|_| CmdError::err("Bad data format"))?;
    let deleted = replace && cx.ks.remove(key)?.is_some();
    if ttl != 0 && !absttl {
        ttl = ttl.saturating_add(cx.ks.now);
    }
    if ttl != 0 && ttl <= cx.ks.now {
        if deleted {
            cx.ks.notify(notify::GENERIC, "del", key);
        }
        cx.out.ok();
        return Ok(());
    }
    cx.ks.insert(key, value, ttl)?;
    let lfu = crate::evict::policy(cx.srv).is_lfu();
    let now = cx.ks.now;
    let db = cx.ks.db;
    let (shard, slot) = cx.ks.shard_in(db, key)?;
    if let Some(e) = shard.get_raw(slot, key) {
        if lfu && freq >= 0 {
            e.lru = (e.lru & !0xff) | freq as u32;
        } else if !lfu && idle >= 0 {
            let now_s = crate::server::lru_of(now);
            e.lru = now_s.saturating_sub(idle.min(u32::MAX as i64) as u32);
        }
    }
    cx.ks.notify(notify::GENERIC, "restore", key);
    cx.out.ok();
    Ok(())
}
