//! Server commands: DBSIZE, FLUSHDB, FLUSHALL, SWAPDB, TIME, LASTSAVE,
//! MEMORY, MONITOR, DEBUG, SHUTDOWN, LOLWUT; CLUSTER, READONLY, READWRITE
//! and ASKING answer that cluster support is disabled, as Redis does.

use super::{eq_ic, CmdError, CmdImpl, CmdResult, Cx, Lock, SYNTAX};
use crate::keyspace::Entry;
use ferrite_commands::key_hash_slot;
use std::sync::atomic::Ordering;
use std::time::Duration;

#[path = "debug.rs"]
pub mod debug;
#[path = "lolwut.rs"]
mod lolwut;
#[path = "memstats.rs"]
mod memstats;

pub static COMMANDS: &[CmdImpl] = &[
    CmdImpl { name: "dbsize", handler: dbsize, lock: Lock::None },
    CmdImpl { name: "flushdb", handler: flushdb, lock: Lock::All },
    CmdImpl { name: "flushall", handler: flushall, lock: Lock::All },
    CmdImpl { name: "swapdb", handler: swapdb, lock: Lock::All },
    CmdImpl { name: "time", handler: time, lock: Lock::None },
    CmdImpl { name: "memory", handler: memory, lock: Lock::Keys },
    CmdImpl { name: "monitor", handler: monitor, lock: Lock::None },
    CmdImpl { name: "debug", handler: debug, lock: Lock::All },
    CmdImpl { name: "shutdown", handler: shutdown, lock: Lock::None },
    CmdImpl { name: "lolwut", handler: lolwut::lolwut, lock: Lock::None },
    CmdImpl { name: "cluster", handler: no_cluster, lock: Lock::None },
    CmdImpl { name: "readonly", handler: no_cluster, lock: Lock::None },
    CmdImpl { name: "readwrite", handler: no_cluster, lock: Lock::None },
    CmdImpl { name: "asking", handler: no_cluster, lock: Lock::None },
];

/// CLUSTER (every subcommand but unknown ones, which dispatch rejects),
/// READONLY, READWRITE and ASKING on a server without cluster mode, which
/// Ferrite always is: Redis 7.0's reply with cluster-enabled no.
fn no_cluster(_cx: &mut Cx) -> CmdResult {
    Err(CmdError::err("This instance has cluster support disabled"))
}

/// Write a HELP reply (an array of status lines, as Redis's addReplyHelp).
pub fn reply_help(cx: &mut Cx, lines: &[&str]) {
    cx.out.array(lines.len());
    for l in lines {
        cx.out.simple(l.as_bytes());
    }
}

fn dbsize(cx: &mut Cx) -> CmdResult {
    let n = cx.srv.store.db_size(cx.client.db);
    cx.out.int(n as i64);
    Ok(())
}

/// Parse the optional ASYNC|SYNC argument of FLUSHDB/FLUSHALL.
fn flush_mode(cx: &Cx) -> CmdResult {
    match cx.argc() {
        1 => Ok(()),
        2 if eq_ic(cx.arg(1), b"async") || eq_ic(cx.arg(1), b"sync") => Ok(()),
        _ => Err(SYNTAX),
    }
}

/// Does `key` exist (possibly logically expired) in `db`? Exclusive access only.
fn raw_exists(cx: &mut Cx, db: usize, key: &[u8]) -> bool {
    let slot = key_hash_slot(key);
    cx.ks.acc.shard(db, slot).is_some_and(|s| s.get_raw(slot, key).is_some())
}

/// Is `key` in `db` present but logically expired? Exclusive access only.
fn raw_expired(cx: &mut Cx, db: usize, key: &[u8]) -> bool {
    let slot = key_hash_slot(key);
    let now = cx.ks.now;
    cx.ks.acc.shard(db, slot).and_then(|s| s.get_raw(slot, key).map(|e| e.is_expired(now))).unwrap_or(false)
}

/// Redis's touchAllWatchedKeysInDb: `emptied` loses all its keys and gets
/// those of `replaced_with` (SWAPDB) or none (FLUSHDB). Watchers of a key
/// that existed in either db become dirty, except when nothing logically
/// changed: an expired key that is now gone or still expired, or a missing
/// key replaced by an expired one.
fn touch_watched(cx: &mut Cx, emptied: usize, replaced_with: Option<usize>) {
    let db = &cx.srv.store.dbs[emptied];
    if db.watch_count.load(Ordering::Relaxed) == 0 {
        return;
    }
    let keys: Vec<Vec<u8>> = db.watched.lock().keys().cloned().collect();
    for key in keys {
        let in_emptied = raw_exists(cx, emptied, &key);
        let in_replacement = replaced_with.is_some_and(|r| raw_exists(cx, r, &key));
        if !in_emptied && !in_replacement {
            continue;
        }
        let replacement_expired = in_replacement && replaced_with.is_some_and(|r| raw_expired(cx, r, &key));
        if let Some(ws) = cx.srv.store.dbs[emptied].watched.lock().get_mut(&key) {
            for w in ws.iter_mut() {
                if w.expired {
                    if !in_replacement {
                        w.expired = false;
                        continue;
                    } else if replacement_expired {
                        continue;
                    }
                } else if !in_emptied && replacement_expired {
                    w.expired = true;
                    continue;
                }
                w.dirty.store(true, Ordering::Relaxed);
            }
        }
    }
}

/// Keys in `db`, through the command's own access (EXEC may hold shards).
fn db_keys(cx: &mut Cx, db: usize) -> u64 {
    let mut n = 0u64;
    cx.ks.acc.for_each_shard(db, |s| n += s.keys as u64);
    n
}

fn clear_db(cx: &mut Cx, db: usize) {
    touch_watched(cx, db, None);
    cx.ks.acc.for_each_shard(db, |s| s.clear());
    // Clients blocked in XREADGROUP on a flushed key get an error now.
    if cx.srv.blocking.any() {
        for key in cx.srv.blocking.keys_in_db(db) {
            super::stream::unblock_deleted_readgroup(cx.srv, db, &key, None);
        }
    }
}

fn flushdb(cx: &mut Cx) -> CmdResult {
    flush_mode(cx)?;
    let db = cx.client.db;
    let deleted = db_keys(cx, db);
    clear_db(cx, db);
    super::client::tracking::flush(cx.srv);
    super::client::tracking::take_inline(cx.out);
    cx.srv.stats.dirty.fetch_add(deleted, Ordering::Relaxed);
    crate::persist::propagate::note_dirty();
    cx.out.ok();
    Ok(())
}

fn flushall(cx: &mut Cx) -> CmdResult {
    flush_mode(cx)?;
    // Like Redis 7.0: dirty grows by the keys deleted (before the save of
    // the save rules, which resets it), and the flush is always propagated.
    let mut deleted = 0;
    for db in 0..cx.srv.store.dbs.len() {
        deleted += db_keys(cx, db);
        clear_db(cx, db);
    }
    cx.srv.stats.dirty.fetch_add(deleted, Ordering::Relaxed);
    crate::persist::propagate::note_dirty();
    super::persist::after_flushall(cx);
    super::client::tracking::flush(cx.srv);
    super::client::tracking::take_inline(cx.out);
    cx.out.ok();
    Ok(())
}

fn swapdb(cx: &mut Cx) -> CmdResult {
    let a = super::parse_int(cx.arg(1)).map_err(|_| CmdError::err("invalid first DB index"))?;
    let b = super::parse_int(cx.arg(2)).map_err(|_| CmdError::err("invalid second DB index"))?;
    let n = cx.srv.store.dbs.len() as i64;
    if a < 0 || a >= n || b < 0 || b >= n {
        return Err(CmdError::err("DB index is out of range"));
    }
    let (a, b) = (a as usize, b as usize);
    if a != b {
        touch_watched(cx, a, Some(b));
        touch_watched(cx, b, Some(a));
        // Lock the shards of both dbs pairwise, in a fixed order, without
        // holding any guard this access took lazily before (EXEC).
        cx.ks.acc.release_shards();
        let (lo, hi) = (a.min(b), a.max(b));
        let dbs = &cx.srv.store.dbs;
        for i in 0..dbs[lo].shards.len() {
            let mut x = dbs[lo].shards[i].lock();
            let mut y = dbs[hi].shards[i].lock();
            std::mem::swap(&mut *x, &mut *y);
        }
        cx.srv.stats.dirty.fetch_add(1, Ordering::Relaxed);
        // Like Redis's scanDatabaseForReadyKeys: keys that now exist may
        // serve clients blocked on them in either db.
        if cx.srv.blocking.any() {
            for db in [a, b] {
                let keys = cx.srv.blocking.keys_in_db(db);
                cx.client.ready_keys.extend(keys.into_iter().map(|k| (db, k)));
            }
        }
    }
    cx.out.ok();
    Ok(())
}

fn time(cx: &mut Cx) -> CmdResult {
    let us = crate::server::now_us();
    cx.out.array(2);
    cx.out.bulk_int(us / 1_000_000);
    cx.out.bulk_int(us % 1_000_000);
    Ok(())
}

/// Unix time (seconds) of the server start: nothing is ever saved yet, and
/// Redis reports its start time until the first save.
pub fn start_unix(srv: &crate::server::Server) -> i64 {
    (crate::server::now_ms() - srv.started.elapsed().as_millis() as i64) / 1000
}

const MEMORY_HELP: &[&str] = &[
    "MEMORY <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
    "DOCTOR",
    "    Return memory problems reports.",
    "MALLOC-STATS",
    "    Return internal statistics report from the memory allocator.",
    "PURGE",
    "    Attempt to purge dirty pages for reclamation by the allocator.",
    "STATS",
    "    Return information about the memory usage of the server.",
    "USAGE <key> [SAMPLES <count>]",
    "    Return memory in bytes used by <key> and its value. Nested values are",
    "    sampled up to <count> times (default: 5, 0 means sample all).",
    "HELP",
    "    Prints this help.",
];

/// Estimated bytes used by one key: the table bucket, the boxed entry, the
/// key's heap bytes and the value's own estimate.
pub fn entry_mem(e: &Entry) -> usize {
    std::mem::size_of::<usize>() + std::mem::size_of::<Entry>() + e.key.heap_size() + e.value.mem_usage()
}

fn memory(cx: &mut Cx) -> CmdResult {
    let sub = cx.arg(1);
    if eq_ic(sub, b"help") {
        reply_help(cx, MEMORY_HELP);
        return Ok(());
    }
    if eq_ic(sub, b"stats") {
        memstats::stats(cx);
        return Ok(());
    }
    if eq_ic(sub, b"doctor") {
        memstats::doctor(cx);
        return Ok(());
    }
    if eq_ic(sub, b"malloc-stats") {
        memstats::malloc_stats(cx);
        return Ok(());
    }
    if eq_ic(sub, b"purge") {
        memstats::purge(cx);
        return Ok(());
    }
    let mut j = 3;
    while j < cx.argc() {
        if eq_ic(cx.arg(j), b"samples") && j + 1 < cx.argc() {
            let n = cx.int_arg(j + 1)?;
            if n < 0 {
                return Err(SYNTAX);
            }
            j += 2;
        } else {
            return Err(SYNTAX);
        }
    }
    let key = cx.arg(2);
    match cx.ks.lookup(key)? {
        None => cx.out.null(),
        Some(e) => {
            let n = entry_mem(e);
            cx.out.int(n as i64);
        }
    }
    Ok(())
}

fn monitor(cx: &mut Cx) -> CmdResult {
    let h = &cx.client.handle;
    // Already monitoring: ignored without a reply, as in Redis.
    if h.monitor.swap(true, Ordering::Relaxed) {
        return Ok(());
    }
    let mut m = cx.srv.monitors.write();
    m.push((cx.client.id, h.tx.clone()));
    cx.srv.monitor_count.store(m.len(), Ordering::Relaxed);
    drop(m);
    cx.out.ok();
    Ok(())
}

/// The longest prefix of `s` that is a number, like C's strtod (0 if none).
fn strtod_prefix(s: &[u8]) -> f64 {
    let s = match s.iter().position(|c| !c.is_ascii_whitespace()) {
        Some(p) => &s[p..],
        None => return 0.0,
    };
    let max = s.len().min(64);
    for end in (1..=max).rev() {
        if let Some(v) = ferrite_resp::num::parse_f64(&s[..end]) {
            return v;
        }
    }
    0.0
}

/// Redis's allowProtectedAction for `enable-debug-command` / `enable-module-command`: yes, no, or local
/// (loopback and Unix socket clients only).
pub fn protected_allowed(cx: &Cx, mode: &str) -> bool {
    match mode {
        "yes" => true,
        "local" => {
            let a = &cx.client.handle.addr;
            a.starts_with("127.") || a.starts_with("[::1]") || a.starts_with('/')
        }
        _ => false,
    }
}

fn debug_allowed(cx: &Cx) -> bool {
    let mode = cx.srv.config.read().enable_debug_command.clone();
    protected_allowed(cx, &mode)
}

fn debug(cx: &mut Cx) -> CmdResult {
    if let Some(r) = debug_allowed(cx).then(|| super::persist::debug_sub(cx)).flatten() {
        return r;
    }
    if !debug_allowed(cx) {
        return Err(CmdError::err(
            "DEBUG command not allowed. If the enable-debug-command option is set to \"local\", you can run it from a local connection, otherwise you need to set this option in the configuration file, and then restart the server.",
        ));
    }
    let sub = cx.arg(1);
    if eq_ic(sub, b"help") && cx.argc() == 2 {
        reply_help(cx, debug::HELP);
        return Ok(());
    }
    if eq_ic(sub, b"sleep") && cx.argc() == 3 {
        let secs = strtod_prefix(cx.arg(2));
        let micros = secs * 1e6;
        // Like Redis, a negative or non-finite duration does not sleep.
        if micros.is_finite() && micros >= 1.0 {
            cx.ks.acc.release_shards();
            std::thread::sleep(Duration::from_micros(micros.min(u64::MAX as f64) as u64));
        }
        cx.out.ok();
        return Ok(());
    }
    debug::run(cx)
}

fn shutdown(cx: &mut Cx) -> CmdResult {
    let (mut nosave, mut save, mut abort, mut other) = (false, false, false, false);
    for i in 1..cx.argc() {
        let a = cx.arg(i);
        if eq_ic(a, b"nosave") {
            nosave = true;
        } else if eq_ic(a, b"save") {
            save = true;
        } else if eq_ic(a, b"now") || eq_ic(a, b"force") {
            other = true;
        } else if eq_ic(a, b"abort") {
            abort = true;
        } else {
            return Err(SYNTAX);
        }
    }
    if (abort && (nosave || save || other)) || (nosave && save) {
        return Err(SYNTAX);
    }
    if abort {
        // Shutdown is immediate in Ferrite, so one is never in progress.
        return Err(CmdError::err("No shutdown in progress."));
    }
    super::persist::on_shutdown(cx, save, nosave)?;
    // No reply, like Redis: the connection closes and the server stops.
    cx.client.shutdown = true;
    Ok(())
}
