//! Generic keyspace commands: DEL, UNLINK, EXISTS, TYPE, the EXPIRE family,
//! TTL family, PERSIST, RENAME(NX), COPY, MOVE, KEYS, SCAN, RANDOMKEY,
//! TOUCH and OBJECT.

use super::{eq_ic, parse_int, CmdError, CmdImpl, CmdResult, Cx, Ks, Lock, NO_KEY, SYNTAX};
use crate::glob::glob_match;
use crate::keyspace::{Entry, StrValue, Value, SHARDS};
use crate::notify;
use crate::stats::Stats;
use ferrite_commands::SLOTS;

pub static COMMANDS: &[CmdImpl] = &[
    CmdImpl { name: "del", handler: del, lock: Lock::Keys },
    CmdImpl { name: "unlink", handler: del, lock: Lock::Keys },
    CmdImpl { name: "exists", handler: exists, lock: Lock::Keys },
    CmdImpl { name: "type", handler: type_cmd, lock: Lock::Keys },
    CmdImpl { name: "expire", handler: expire, lock: Lock::Keys },
    CmdImpl { name: "pexpire", handler: pexpire, lock: Lock::Keys },
    CmdImpl { name: "expireat", handler: expireat, lock: Lock::Keys },
    CmdImpl { name: "pexpireat", handler: pexpireat, lock: Lock::Keys },
    CmdImpl { name: "ttl", handler: ttl, lock: Lock::Keys },
    CmdImpl { name: "pttl", handler: pttl, lock: Lock::Keys },
    CmdImpl { name: "expiretime", handler: expiretime, lock: Lock::Keys },
    CmdImpl { name: "pexpiretime", handler: pexpiretime, lock: Lock::Keys },
    CmdImpl { name: "persist", handler: persist, lock: Lock::Keys },
    CmdImpl { name: "rename", handler: rename, lock: Lock::Keys },
    CmdImpl { name: "renamenx", handler: renamenx, lock: Lock::Keys },
    CmdImpl { name: "copy", handler: copy, lock: Lock::All },
    CmdImpl { name: "move", handler: move_cmd, lock: Lock::All },
    CmdImpl { name: "keys", handler: keys, lock: Lock::All },
    CmdImpl { name: "scan", handler: scan, lock: Lock::None },
    CmdImpl { name: "randomkey", handler: randomkey, lock: Lock::None },
    CmdImpl { name: "touch", handler: touch, lock: Lock::Keys },
    CmdImpl { name: "object", handler: object, lock: Lock::Keys },
    CmdImpl { name: "migrate", handler: migrate::migrate, lock: Lock::Keys },
];

#[path = "migrate.rs"]
pub mod migrate;

const SAME_OBJECT: CmdError = CmdError::st("ERR source and destination objects are the same");
const DB_RANGE: CmdError = CmdError::st("ERR DB index is out of range");

/// Look up a live key without updating its access time (Redis's
/// `LOOKUP_NOTOUCH`). Expired keys are deleted on the way. `stats` counts
/// a keyspace hit or miss.
fn peek<'c>(ks: &'c mut Ks, key: &[u8], stats: bool) -> Result<Option<&'c mut Entry>, CmdError> {
    peek_notify(ks, key, stats, true)
}

/// [`peek`], choosing whether a miss publishes "keymiss" (OBJECT does not).
fn peek_notify<'c>(
    ks: &'c mut Ks,
    key: &[u8],
    stats: bool,
    notify_miss: bool,
) -> Result<Option<&'c mut Entry>, CmdError> {
    let now = ks.now;
    let db = ks.db;
    let live = {
        let (shard, slot) = ks.shard_in(db, key)?;
        shard.get_raw(slot, key).map(|e| !e.is_expired(now))
    };
    if stats {
        let st = &ks.srv.stats;
        Stats::add(if live == Some(true) { &st.keyspace_hits } else { &st.keyspace_misses }, 1);
    }
    if live != Some(true) && notify_miss {
        if live == Some(false) {
            // Let the regular lookup delete it and signal the expiry.
            ks.lookup(key)?;
        }
        ks.notify(notify::KEY_MISS, "keymiss", key);
    }
    match live {
        None => Ok(None),
        Some(false) => {
            // Let the regular lookup delete it and signal the expiry.
            ks.lookup(key)?;
            Ok(None)
        }
        Some(true) => {
            let (shard, slot) = ks.shard_in(db, key)?;
            Ok(shard.get_raw(slot, key))
        }
    }
}

/// Redis's `getIntFromObjectOrReply` (32-bit range).
fn parse_i32(b: &[u8]) -> Result<i64, CmdError> {
    let v = parse_int(b)?;
    if v < i32::MIN as i64 || v > i32::MAX as i64 {
        return Err(CmdError::err("value is out of range, value must between -2147483648 and 2147483647"));
    }
    Ok(v)
}

/// A db index argument for MOVE/COPY.
fn parse_db(cx: &Cx, b: &[u8]) -> Result<usize, CmdError> {
    let v = parse_i32(b)?;
    if v < 0 || v as usize >= cx.srv.store.dbs.len() {
        return Err(DB_RANGE);
    }
    Ok(v as usize)
}

fn del(cx: &mut Cx) -> CmdResult {
    let mut n = 0;
    // UNLINK (and DEL with lazyfree-lazy-user-del) frees big values in the background.
    let lazy =
        cx.cmd.imp.name == "unlink" || crate::evict::lazyfree::LAZY_USER_DEL.load(std::sync::atomic::Ordering::Relaxed);
    for i in 1..cx.argc() {
        let key = cx.arg(i);
        if let Some(e) = cx.ks.remove(key)? {
            cx.ks.notify(notify::GENERIC, "del", key);
            n += 1;
            if lazy {
                crate::evict::lazyfree::free(cx.srv, e);
            }
        }
    }
    cx.out.int(n);
    Ok(())
}

fn exists(cx: &mut Cx) -> CmdResult {
    let mut n = 0;
    for i in 1..cx.argc() {
        let key = cx.arg(i);
        if peek(&mut cx.ks, key, true)?.is_some() {
            n += 1;
        }
    }
    cx.out.int(n);
    Ok(())
}

fn type_cmd(cx: &mut Cx) -> CmdResult {
    let key = cx.arg(1);
    let name = peek(&mut cx.ks, key, true)?.map_or("none", |e| e.value.type_name());
    cx.out.simple(name.as_bytes());
    Ok(())
}

const NX: u8 = 1;
const XX: u8 = 2;
const GT: u8 = 4;
const LT: u8 = 8;

/// EXPIRE/PEXPIRE/EXPIREAT/PEXPIREAT (`expireGenericCommand`).
fn expire_generic(cx: &mut Cx, unit_ms: i64, absolute: bool) -> CmdResult {
    let mut flags = 0u8;
    for i in 3..cx.argc() {
        let a = cx.arg(i);
        flags |= if eq_ic(a, b"NX") {
            NX
        } else if eq_ic(a, b"XX") {
            XX
        } else if eq_ic(a, b"GT") {
            GT
        } else if eq_ic(a, b"LT") {
            LT
        } else {
            return Err(CmdError::err(format!("Unsupported option {}", String::from_utf8_lossy(a))));
        };
    }
    if flags & NX != 0 && flags & (XX | GT | LT) != 0 {
        return Err(CmdError::err("NX and XX, GT or LT options at the same time are not compatible"));
    }
    if flags & GT != 0 && flags & LT != 0 {
        return Err(CmdError::err("GT and LT options at the same time are not compatible"));
    }
    let invalid = || CmdError::err(format!("invalid expire time in '{}' command", cx.cmd.meta.name));
    let mut when = parse_int(cx.arg(2))?;
    if unit_ms == 1000 {
        if !(i64::MIN / 1000..=i64::MAX / 1000).contains(&when) {
            return Err(invalid());
        }
        when *= 1000;
    }
    let base = if absolute { 0 } else { cx.ks.now };
    if when > i64::MAX - base {
        return Err(invalid());
    }
    when += base;
    let key = cx.arg(1);
    let Some(e) = cx.ks.lookup(key)? else {
        cx.out.int(0);
        return Ok(());
    };
    if flags != 0 {
        let cur = e.expire_at; // 0 = no expiry
        let refuse = (flags & NX != 0 && cur != 0)
            || (flags & XX != 0 && cur == 0)
            || (flags & GT != 0 && (cur == 0 || when <= cur))
            || (flags & LT != 0 && cur != 0 && when >= cur);
        if refuse {
            cx.out.int(0);
            return Ok(());
        }
    }
    if when <= cx.ks.now {
        cx.ks.remove(key)?;
        cx.ks.notify(notify::GENERIC, "del", key);
    } else {
        cx.ks.set_expire(key, when)?;
        cx.ks.modified(key);
        cx.ks.notify(notify::GENERIC, "expire", key);
    }
    cx.out.int(1);
    Ok(())
}

fn expire(cx: &mut Cx) -> CmdResult {
    expire_generic(cx, 1000, false)
}
fn pexpire(cx: &mut Cx) -> CmdResult {
    expire_generic(cx, 1, false)
}
fn expireat(cx: &mut Cx) -> CmdResult {
    expire_generic(cx, 1000, true)
}
fn pexpireat(cx: &mut Cx) -> CmdResult {
    expire_generic(cx, 1, true)
}

/// TTL/PTTL/EXPIRETIME/PEXPIRETIME (`ttlGenericCommand`).
fn ttl_generic(cx: &mut Cx, ms: bool, absolute: bool) -> CmdResult {
    let key = cx.arg(1);
    let now = cx.ks.now;
    let Some(e) = peek(&mut cx.ks, key, true)? else {
        cx.out.int(-2);
        return Ok(());
    };
    if e.expire_at == 0 {
        cx.out.int(-1);
        return Ok(());
    }
    let t = if absolute { e.expire_at } else { e.expire_at - now }.max(0);
    cx.out.int(if ms { t } else { ((t as i128 + 500) / 1000) as i64 });
    Ok(())
}

fn ttl(cx: &mut Cx) -> CmdResult {
    ttl_generic(cx, false, false)
}
fn pttl(cx: &mut Cx) -> CmdResult {
    ttl_generic(cx, true, false)
}
fn expiretime(cx: &mut Cx) -> CmdResult {
    ttl_generic(cx, false, true)
}
fn pexpiretime(cx: &mut Cx) -> CmdResult {
    ttl_generic(cx, true, true)
}

fn persist(cx: &mut Cx) -> CmdResult {
    let key = cx.arg(1);
    let has_ttl = cx.ks.lookup(key)?.is_some_and(|e| e.expire_at != 0);
    if has_ttl {
        cx.ks.set_expire(key, 0)?;
        cx.ks.modified(key);
        cx.ks.notify(notify::GENERIC, "persist", key);
    }
    cx.out.int(has_ttl as i64);
    Ok(())
}

/// Store a moved/copied value under `key` in `db`, keeping its access time.
fn put_entry(ks: &mut Ks, db: usize, key: &[u8], value: Value, expire_at: i64, lru: u32) -> CmdResult {
    ks.insert_in(db, key, value, expire_at)?;
    let (shard, slot) = ks.shard_in(db, key)?;
    if let Some(e) = shard.get_raw(slot, key) {
        e.lru = lru;
    }
    Ok(())
}

fn rename_generic(cx: &mut Cx, nx: bool) -> CmdResult {
    let (src, dst) = (cx.arg(1), cx.arg(2));
    if cx.ks.lookup(src)?.is_none() {
        return Err(NO_KEY);
    }
    if src == dst {
        if nx {
            cx.out.int(0);
        } else {
            cx.out.ok();
        }
        return Ok(());
    }
    if nx && cx.ks.exists(dst)? {
        cx.out.int(0);
        return Ok(());
    }
    let Some(e) = cx.ks.remove(src)? else { return Err(NO_KEY) };
    let e = *e;
    let db = cx.ks.db;
    // Redis deletes an existing destination before adding the key anew
    // (so "new" is published for it either way).
    cx.ks.remove(dst)?;
    put_entry(&mut cx.ks, db, dst, e.value, e.expire_at, e.lru)?;
    cx.ks.notify(notify::GENERIC, "rename_from", src);
    cx.ks.notify(notify::GENERIC, "rename_to", dst);
    if nx {
        cx.out.int(1);
    } else {
        cx.out.ok();
    }
    Ok(())
}

fn rename(cx: &mut Cx) -> CmdResult {
    rename_generic(cx, false)
}
fn renamenx(cx: &mut Cx) -> CmdResult {
    rename_generic(cx, true)
}

fn copy(cx: &mut Cx) -> CmdResult {
    let src_db = cx.ks.db;
    let mut dst_db = src_db;
    let mut replace = false;
    let mut i = 3;
    while i < cx.argc() {
        let a = cx.arg(i);
        if eq_ic(a, b"REPLACE") {
            replace = true;
        } else if eq_ic(a, b"DB") && i + 1 < cx.argc() {
            dst_db = parse_db(cx, cx.arg(i + 1))?;
            i += 1;
        } else {
            return Err(SYNTAX);
        }
        i += 1;
    }
    let (src, dst) = (cx.arg(1), cx.arg(2));
    if src_db == dst_db && src == dst {
        return Err(SAME_OBJECT);
    }
    let expire_at = match cx.ks.lookup_read(src)? {
        None => {
            cx.out.int(0);
            return Ok(());
        }
        Some(e) => e.expire_at,
    };
    if !replace && cx.ks.lookup_in(dst_db, dst)?.is_some() {
        cx.out.int(0);
        return Ok(());
    }
    // Deep copy (collections included); the insert replaces any old value.
    let Some(value) = cx.ks.lookup(src)?.map(|e| e.value.clone()) else {
        cx.out.int(0);
        return Ok(());
    };
    cx.ks.remove_in(dst_db, dst)?;
    cx.ks.insert_in(dst_db, dst, value, expire_at)?;
    notify::notify(cx.srv, notify::GENERIC, "copy_to", dst, dst_db);
    cx.out.int(1);
    Ok(())
}

fn move_cmd(cx: &mut Cx) -> CmdResult {
    let dst_db = parse_db(cx, cx.arg(2))?;
    let src_db = cx.ks.db;
    if src_db == dst_db {
        return Err(SAME_OBJECT);
    }
    let key = cx.arg(1);
    if cx.ks.lookup(key)?.is_none() || cx.ks.lookup_in(dst_db, key)?.is_some() {
        cx.out.int(0);
        return Ok(());
    }
    let Some(e) = cx.ks.remove(key)? else {
        cx.out.int(0);
        return Ok(());
    };
    let e = *e;
    put_entry(&mut cx.ks, dst_db, key, e.value, e.expire_at, e.lru)?;
    notify::notify(cx.srv, notify::GENERIC, "move_from", key, src_db);
    notify::notify(cx.srv, notify::GENERIC, "move_to", key, dst_db);
    cx.out.int(1);
    Ok(())
}

fn keys(cx: &mut Cx) -> CmdResult {
    let pattern = cx.arg(1);
    let all = pattern == b"*";
    let now = cx.ks.now;
    let db = cx.ks.db;
    let mut found: Vec<Vec<u8>> = Vec::new();
    cx.ks.acc.for_each_shard(db, |shard| {
        for st in shard.slots.iter() {
            for e in st.table.iter() {
                if !e.is_expired(now) && (all || glob_match(pattern, &e.key, false)) {
                    found.push(e.key.to_vec());
                }
            }
        }
    });
    cx.out.array(found.len());
    for k in &found {
        cx.out.bulk(k);
    }
    Ok(())
}

/// SCAN: the cursor is the next hash slot to visit. Every key of a slot is
/// returned at once, so a key present for the whole iteration is always
/// returned (at least once, like Redis).
fn scan(cx: &mut Cx) -> CmdResult {
    let args = super::scan::parse(cx, 1, true)?;
    let db = cx.ks.db;
    let now = cx.ks.now;
    let mut keys: Vec<Vec<u8>> = Vec::new();
    let mut visited = 0usize;
    let mut expired: Vec<Vec<u8>> = Vec::new();
    let mut slot = args.cursor;
    let srv = cx.srv;
    while slot < SLOTS as u64 && visited < args.count {
        let s = slot as u16;
        cx.ks.acc.with_slot(db, s, |shard| {
            if shard.keys == 0 {
                return;
            }
            for e in shard.slot(s).table.iter() {
                visited += 1;
                if e.is_expired(now) {
                    expired.push(e.key.to_vec());
                    continue;
                }
                if let Some(p) = args.pattern {
                    if !glob_match(p, &e.key, false) {
                        continue;
                    }
                }
                if let Some(t) = args.type_filter {
                    if !eq_ic(t, e.value.type_name().as_bytes()) {
                        continue;
                    }
                }
                keys.push(e.key.to_vec());
            }
            // Expired keys met on the way are deleted, like Redis's scan does.
            for k in &expired {
                shard.remove(s, k);
                crate::persist::propagate::deleted_now(srv, db, k);
            }
        });
        for k in expired.drain(..) {
            cx.srv.store.dbs[db].signal_expired_deleted(&k);
            super::client::tracking::invalidate_by_server(cx.srv, &k);
            Stats::add(&cx.srv.stats.expired_keys, 1);
            notify::notify(cx.srv, notify::EXPIRED, "expired", &k, db);
        }
        slot += 1;
    }
    let next = if slot >= SLOTS as u64 { 0 } else { slot };
    cx.out.array(2);
    cx.out.bulk(itoa::Buffer::new().format(next).as_bytes());
    cx.out.array(keys.len());
    for k in &keys {
        cx.out.bulk(k);
    }
    Ok(())
}

/// RANDOMKEY: a uniformly chosen key (pick a shard weighted by its key
/// count, then a position inside it); expired keys are skipped.
fn randomkey(cx: &mut Cx) -> CmdResult {
    let db = cx.ks.db;
    let now = cx.ks.now;
    if db >= cx.srv.store.dbs.len() {
        cx.out.null();
        return Ok(());
    }
    for _ in 0..16 {
        let mut counts = [0usize; SHARDS];
        for (i, c) in counts.iter_mut().enumerate() {
            *c = cx.ks.acc.with_slot(db, i as u16, |sh| sh.keys).unwrap_or(0);
        }
        let total: usize = counts.iter().sum();
        if total == 0 {
            cx.out.null();
            return Ok(());
        }
        let mut r = rand::random::<usize>() % total;
        let mut shard = 0;
        while r >= counts[shard] {
            r -= counts[shard];
            shard += 1;
        }
        // The shard is locked again: its count may have changed meanwhile.
        let srv = cx.srv;
        let pick = cx.ks.acc.with_slot(db, shard as u16, |sh| {
            if sh.keys == 0 {
                return None;
            }
            let mut r = r % sh.keys;
            let mut hit = None;
            for (i, st) in sh.slots.iter().enumerate() {
                if r < st.table.len() {
                    let slot = (shard + i * SHARDS) as u16;
                    hit = st.table.iter().nth(r).map(|e| (slot, e.key.to_vec(), e.is_expired(now)));
                    break;
                }
                r -= st.table.len();
            }
            let (slot, key, expired) = hit?;
            if expired {
                // Deleted when met, like Redis's dbRandomKey (propagated as DEL).
                sh.remove(slot, &key);
                crate::persist::propagate::deleted_now(srv, db, &key);
            }
            Some((key, expired))
        });
        match pick {
            Some(Some((k, false))) => {
                cx.out.bulk(&k);
                return Ok(());
            }
            Some(Some((k, true))) => {
                cx.srv.store.dbs[db].signal_expired_deleted(&k);
                super::client::tracking::invalidate_by_server(cx.srv, &k);
                Stats::add(&cx.srv.stats.expired_keys, 1);
                notify::notify(cx.srv, notify::EXPIRED, "expired", &k, db);
            }
            _ => {}
        }
    }
    // Mostly expired keys: walk the slots from a random point for a live one.
    let start = rand::random::<u16>() % SLOTS as u16;
    for i in 0..SLOTS as u32 {
        let s = ((start as u32 + i) % SLOTS as u32) as u16;
        let found = cx
            .ks
            .acc
            .with_slot(db, s, |sh| sh.slot(s).table.iter().find(|e| !e.is_expired(now)).map(|e| e.key.to_vec()))
            .flatten();
        if let Some(k) = found {
            cx.out.bulk(&k);
            return Ok(());
        }
    }
    cx.out.null();
    Ok(())
}

fn touch(cx: &mut Cx) -> CmdResult {
    let mut n = 0;
    for i in 1..cx.argc() {
        let key = cx.arg(i);
        if cx.ks.lookup_read(key)?.is_some() {
            n += 1;
        }
    }
    cx.out.int(n);
    Ok(())
}

const OBJECT_HELP: &[&str] = &[
    "OBJECT <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
    "ENCODING <key>",
    "    Return the kind of internal representation used in order to store the value",
    "    associated with a <key>.",
    "FREQ <key>",
    "    Return the access frequency index of the <key>. The returned integer is",
    "    proportional to the logarithm of the recent access frequency of the key.",
    "IDLETIME <key>",
    "    Return the idle time of the <key>, that is the approximated number of",
    "    seconds elapsed since the last access to the key.",
    "REFCOUNT <key>",
    "    Return the number of references of the value associated with the specified",
    "    <key>.",
    "HELP",
    "    Prints this help.",
];

/// Redis shares the integer objects 0..9999 (refcount INT_MAX).
const SHARED_INTEGERS: i64 = 10000;

fn object(cx: &mut Cx) -> CmdResult {
    let sub = cx.arg(1);
    if eq_ic(sub, b"HELP") {
        cx.out.array(OBJECT_HELP.len());
        for l in OBJECT_HELP {
            cx.out.simple(l.as_bytes());
        }
        return Ok(());
    }
    let key = cx.arg(2);
    let lru_now = cx.srv.lru_clock();
    let Some(e) = peek_notify(&mut cx.ks, key, true, false)? else {
        cx.out.null();
        return Ok(());
    };
    if eq_ic(sub, b"ENCODING") {
        cx.out.bulk(e.value.encoding().as_bytes());
    } else if eq_ic(sub, b"REFCOUNT") {
        // Redis does not share integers when maxmemory is set with an LRU/LFU policy (each value keeps its own
        // access time); ferrite decides with the current settings rather than those of the write.
        let pol = crate::evict::policy(cx.srv);
        let per_object = cx.srv.tun.maxmemory.load(std::sync::atomic::Ordering::Relaxed) > 0
            && matches!(
                pol,
                crate::evict::Policy::AllKeysLru
                    | crate::evict::Policy::VolatileLru
                    | crate::evict::Policy::AllKeysLfu
                    | crate::evict::Policy::VolatileLfu
            );
        let shared =
            !per_object && matches!(e.value, Value::Str(StrValue::Int(i)) if (0..SHARED_INTEGERS).contains(&i));
        cx.out.int(if shared { i32::MAX as i64 } else { 1 });
    } else if eq_ic(sub, b"IDLETIME") {
        if crate::evict::policy(cx.srv).is_lfu() {
            return Err(CmdError::err(
                "An LFU maxmemory policy is selected, idle time not tracked. Please note that when switching \
                 between policies at runtime LRU and LFU data will take some time to adjust.",
            ));
        }
        cx.out.int(lru_now.saturating_sub(e.lru) as i64);
    } else if eq_ic(sub, b"FREQ") {
        if !crate::evict::policy(cx.srv).is_lfu() {
            return Err(CmdError::err(
                "An LFU maxmemory policy is not selected, access frequency not tracked. Please note that when \
                 switching between policies at runtime LRU and LFU data will take some time to adjust.",
            ));
        }
        let decay = cx.srv.tun.lfu_decay_time.load(std::sync::atomic::Ordering::Relaxed) as u32;
        cx.out.int(crate::evict::lfu_counter(e.lru, cx.ks.now, decay) as i64);
    } else {
        return Err(SYNTAX);
    }
    Ok(())
}
