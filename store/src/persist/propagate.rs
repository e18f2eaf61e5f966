//! The effects stream: every write that changed the data set, in the form
//! Redis 7.0 propagates it (to its AOF and replicas), in execution order.
//!
//! Dispatch calls [`before`] / [`after`] around every handler while the
//! command's shard locks are held, so records of commands touching the
//! same keys are appended in the order they ran. The consumers are the
//! AOF (`aof::append`) and the replicas (`repl::Repl::feed`), both at `emit`.
//!
//! Rewrites done (checked against a real Redis 7.0 AOF): relative expiries
//! become absolute (`EXPIRE/PEXPIRE/EXPIREAT` -> `PEXPIREAT`, an expiry in
//! the past -> `DEL`; `SET .. EX/PX/EXAT`, `SETEX`, `PSETEX` -> `SET k v PXAT
//! ms`; `GETEX` -> `PEXPIREAT`/`PERSIST`/`DEL`; `RESTORE ttl` -> `ABSTTL`),
//! `GETDEL` -> `DEL`, `GETSET` -> `SET`, `INCRBYFLOAT` -> `SET .. KEEPTTL`,
//! `HINCRBYFLOAT` -> `HSET`, `SPOP` -> `SREM` (one per member, wrapped in
//! MULTI/EXEC) or `DEL` when the set was emptied by a count, blocking pops
//! and `LMPOP`/`ZMPOP` -> `LPOP/RPOP/ZPOPMIN/ZPOPMAX key [count]`,
//! `BRPOPLPUSH` -> `RPOPLPUSH`, `BLMOVE` -> `LMOVE`, `XADD *` -> explicit id
//! and `XADD/XTRIM .. MAXLEN|MINID ~ x [LIMIT n]` -> `MAXLEN = <length>` /
//! `MINID = <first id>` (as Redis's streamRewriteTrimArgument), lazy/active expiry and eviction
//! -> `DEL`, `XREADGROUP` -> one forced `XCLAIM .. TIME .. RETRYCOUNT ..
//! LASTID` per new delivery (NOACK: `XGROUP CREATECONSUMER` + `XGROUP SETID
//! .. ENTRIESREAD`), `XCLAIM`/`XAUTOCLAIM` -> the same XCLAIM form,
//! transactions with more than one write -> MULTI/EXEC, `SELECT` when the
//! database changes. Commands that changed nothing are not logged.
//!
//! Pending entries XCLAIM/XAUTOCLAIM drop because their stream entries were deleted -> an XCLAIM of each (the
//! replica drops them too). Script effects
//! are collected by `script_begin`/`tx_end` and wrapped in MULTI/EXEC when
//! a script (EVAL/EVALSHA/FCALL and their _RO forms) wrote more than once.
//!
//! "Changed data" is decided per command: the handler signalled a change
//! on this thread (`note_dirty`, called by `Ks::modified_in`), or, for
//! exclusive commands and those that only bump the global dirty counter
//! (flushes, consumer groups, HLL caches), that counter moved.

use crate::cmd::SlotCache;
use crate::keyspace::{Access, Value};
use crate::server::Server;
use bytes::Bytes;
use ferrite_commands::{key_hash_slot, CommandMeta, Flags};
use ferrite_resp::ReplyBuf;
use std::cell::{Cell, RefCell};
use std::sync::atomic::Ordering;

/// One propagated command: (db, arguments).
pub type Record = (usize, Vec<Bytes>);

/// Propagation targets (Redis's PROPAGATE_AOF / PROPAGATE_REPL; `redis.set_repl` flags use the same values).
pub const TO_AOF: u8 = 1;
pub const TO_REPLICAS: u8 = 2;
pub const TO_ALL: u8 = 3;

/// `redis.set_repl(flags)`: where the running script's next commands are propagated. Reset to both by
/// [`script_target_reset`] when a script starts and ends.
pub fn set_script_target(t: u8) {
    SCRIPT_TARGET.with(|c| c.set(t & TO_ALL));
}

pub fn script_target_reset() {
    SCRIPT_TARGET.with(|c| c.set(TO_ALL));
}

thread_local! {
    /// Modifications signalled by handlers on this thread (`Ks::modified_in`).
    static LOCAL_DIRTY: Cell<u64> = const { Cell::new(0) };
    /// Effects produced by the running command before its own record
    /// (lazy expiry deletes).
    static PENDING: RefCell<Vec<Record>> = const { RefCell::new(Vec::new()) };
    /// Records of the running EXEC, emitted together at its end, each with its targets.
    static TX: RefCell<Option<Vec<(Record, u8)>>> = const { RefCell::new(None) };
    /// Where the running script's commands are propagated (`redis.set_repl`): [`TO_AOF`] | [`TO_REPLICAS`].
    static SCRIPT_TARGET: Cell<u8> = const { Cell::new(TO_ALL) };
    /// AOF offset the last command of this thread must see fsynced before
    /// its reply is sent (appendfsync always); 0 = none.
    static WRITTEN: Cell<u64> = const { Cell::new(0) };
    /// The running command holds the exclusive world lock (EXEC, Lock::All).
    static EXCLUSIVE: Cell<bool> = const { Cell::new(false) };
}

/// Does the command running on this thread hold the exclusive world lock?
/// (Then nothing it calls may take that lock again.)
pub fn running_exclusive() -> bool {
    EXCLUSIVE.with(|c| c.get())
}

/// A handler changed a key (called from `Ks::modified_in`).
#[inline]
pub fn note_dirty() {
    LOCAL_DIRTY.with(|c| c.set(c.get().wrapping_add(1)));
}

/// The AOF offset the caller's last commands need durable (and reset it).
pub fn take_written() -> u64 {
    WRITTEN.with(|c| c.replace(0))
}

pub(crate) fn set_written(off: u64) {
    WRITTEN.with(|c| c.set(c.get().max(off)));
}

fn feeding(srv: &Server) -> bool {
    (srv.persist.aof.enabled() || srv.repl.feeding()) && !srv.persist.loading.load(Ordering::Relaxed)
}

/// A key expired lazily (or was found expired by a write): propagate DEL.
pub fn expired(srv: &Server, db: usize, key: &[u8]) {
    if feeding(srv) {
        PENDING.with(|p| p.borrow_mut().push((db, vec![Bytes::from_static(b"DEL"), Bytes::copy_from_slice(key)])));
    }
}

/// A key was deleted outside any command (active expiry, eviction), with
/// its shard still locked: propagate DEL now.
pub fn deleted_now(srv: &Server, db: usize, key: &[u8]) {
    if feeding(srv) {
        emit(srv, vec![(db, vec![Bytes::from_static(b"DEL"), Bytes::copy_from_slice(key)])]);
    }
}

/// State captured before a handler runs.
pub struct Before {
    mark: usize,
    local: u64,
    global: u64,
    on: bool,
}

/// Before a handler: serialize shards for a running snapshot (writes only)
/// and remember the counters that tell whether the command changed data.
pub fn before(
    srv: &Server,
    acc: &mut Access<'_>,
    meta: &CommandMeta,
    db: usize,
    slots: &SlotCache,
    out: &ReplyBuf,
) -> Before {
    EXCLUSIVE.with(|c| c.set(acc.is_exclusive()));
    if meta.flags.has(Flags::WRITE) && srv.persist.snap.running() {
        let s: smallvec::SmallVec<[u16; 4]> = slots.0.iter().map(|x| x.2).collect();
        super::snapshot::cover(srv, acc, db, &s);
    }
    let on = feeding(srv);
    Before {
        mark: out.buf.len(),
        local: LOCAL_DIRTY.with(|c| c.get()),
        global: if on { srv.stats.dirty.load(Ordering::Relaxed) } else { 0 },
        on,
    }
}

/// EXEC starts: collect records until [`tx_end`].
pub fn tx_begin(srv: &Server) {
    if feeding(srv) {
        TX.with(|t| *t.borrow_mut() = Some(Vec::new()));
    }
}

/// A script starts (EVAL/FCALL family): collect its effects so that more
/// than one is wrapped in MULTI/EXEC, as Redis 7.0's effects replication.
/// Inside EXEC the transaction already collects them: returns false then.
pub fn script_begin(srv: &Server) -> bool {
    feeding(srv)
        && TX.with(|t| {
            let mut t = t.borrow_mut();
            if t.is_some() {
                return false;
            }
            *t = Some(Vec::new());
            true
        })
}

/// EXEC ends: emit its records, wrapped in MULTI/EXEC when more than one (per target: the AOF and the replicas
/// get their own records when a script chose with `redis.set_repl`).
pub fn tx_end(srv: &Server) {
    let recs = TX.with(|t| t.borrow_mut().take());
    let Some(recs) = recs else { return };
    if recs.is_empty() {
        return;
    }
    if recs.iter().all(|r| r.1 == TO_ALL) {
        emit(srv, wrap(recs.into_iter().map(|r| r.0).collect()));
        return;
    }
    let pick = |to: u8| -> Vec<Record> { recs.iter().filter(|r| r.1 & to != 0).map(|r| r.0.clone()).collect() };
    let (aof, repl) = (pick(TO_AOF), pick(TO_REPLICAS));
    emit_to(srv, &wrap(aof), TO_AOF);
    emit_to(srv, &wrap(repl), TO_REPLICAS);
}

fn wrap(recs: Vec<Record>) -> Vec<Record> {
    if recs.len() <= 1 {
        return recs;
    }
    let db = recs[0].0;
    let mut v = Vec::with_capacity(recs.len() + 2);
    v.push((db, vec![Bytes::from_static(b"MULTI")]));
    let last = recs.last().map_or(db, |r| r.0);
    v.extend(recs);
    v.push((last, vec![Bytes::from_static(b"EXEC")]));
    v
}

/// After a handler (shard locks still held): propagate what it did.
#[allow(clippy::too_many_arguments)]
pub fn after(
    srv: &Server,
    acc: &mut Access<'_>,
    b: Before,
    name: &str,
    meta: &CommandMeta,
    args: &[Bytes],
    db: usize,
    out: &ReplyBuf,
) {
    // A client's write on a writable replica: keys it gave a TTL are expired
    // by the replica itself (Redis's rememberSlaveKeyWithExpire).
    if srv.repl.replica.is_replica() && meta.flags.has(Flags::WRITE) && !super::replica::applying() {
        super::replica::remember_own_expires(srv, acc, meta, args, db);
    }
    if !b.on {
        return;
    }
    let mut recs: Vec<Record> = PENDING.with(|p| std::mem::take(&mut *p.borrow_mut()));
    let pending_n = recs.len();
    let write = meta.flags.has(Flags::WRITE) || name == "pfcount";
    if write {
        let local = LOCAL_DIRTY.with(|c| c.get()) != b.local;
        let global = srv.stats.dirty.load(Ordering::Relaxed) != b.global;
        // Changes not signalled through `Ks::modified` (flushes, consumer
        // groups, HLL caches) only move the global counter.
        let changed = local
            || (global
                && (acc.is_exclusive()
                    || name.starts_with('x')
                    || name.starts_with("pf")
                    || matches!(name, "flushall" | "flushdb" | "swapdb")));
        if changed {
            let reply = out.buf.get(b.mark..).unwrap_or(&[]);
            let mine = rewrite(acc, name, args, db, reply);
            let in_tx = TX.with(|t| t.borrow().is_some());
            if mine.len() > 1 && !in_tx {
                recs.extend(wrap(mine.into_iter().map(|a| (db, a)).collect()));
            } else {
                recs.extend(mine.into_iter().map(|a| (db, a)));
            }
        }
    }
    // PUBLISH / SPUBLISH reach replicas (not the AOF), as Redis's
    // forceCommandPropagation(PROPAGATE_REPL).
    if matches!(name, "publish" | "spublish") && srv.repl.feeding() {
        recs.push((db, args.to_vec()));
    }
    if recs.is_empty() {
        return;
    }
    // A command a script calls goes where the script said (`redis.set_repl`); lazy-expiry deletes it caused
    // (`PENDING`, first in `recs`) go everywhere, as in Redis.
    let target = if crate::script::vm::in_script() { SCRIPT_TARGET.with(|c| c.get()) } else { TO_ALL };
    let own_from = if target == TO_ALL { recs.len() } else { pending_n };
    let in_tx = TX.with(|t| {
        if let Some(v) = t.borrow_mut().as_mut() {
            for (i, r) in recs.drain(..).enumerate() {
                let to = if i < own_from { TO_ALL } else { target };
                if to != 0 {
                    v.push((r, to));
                }
            }
            true
        } else {
            false
        }
    });
    if !in_tx {
        if target == TO_ALL {
            emit(srv, recs);
        } else {
            let own = recs.split_off(own_from);
            emit(srv, recs);
            emit_to(srv, &own, target);
        }
    }
}

/// Hand records to the consumers (the AOF and the replication stream).
pub fn emit(srv: &Server, recs: Vec<Record>) {
    emit_to(srv, &recs, TO_ALL);
}

/// Hand records to the AOF and/or the replication stream.
fn emit_to(srv: &Server, recs: &[Record], to: u8) {
    if recs.is_empty() {
        return;
    }
    if to & TO_AOF != 0 {
        if recs.iter().any(|r| repl_only(&r.1)) {
            let aof: Vec<Record> = recs.iter().filter(|r| !repl_only(&r.1)).cloned().collect();
            super::aof::append(srv, &aof);
        } else {
            super::aof::append(srv, recs);
        }
    }
    if to & TO_REPLICAS != 0 {
        srv.repl.feed(recs);
    }
}

/// Records for replicas only (PUBLISH / SPUBLISH).
fn repl_only(args: &[Bytes]) -> bool {
    args.first().is_some_and(|a| a.eq_ignore_ascii_case(b"publish") || a.eq_ignore_ascii_case(b"spublish"))
}

fn b(s: &'static str) -> Bytes {
    Bytes::from_static(s.as_bytes())
}

fn num(n: i64) -> Bytes {
    Bytes::from(n.to_string())
}

/// A parsed reply (enough of RESP2/RESP3 for the rewrites).
#[derive(Debug)]
enum R {
    Bulk(Vec<u8>),
    Int(i64),
    Arr(Vec<R>),
    Other,
}

fn parse_reply(b: &[u8], pos: &mut usize, depth: usize) -> Option<R> {
    let t = *b.get(*pos)?;
    let end = *pos + b.get(*pos..)?.windows(2).position(|w| w == b"\r\n")?;
    let line = b.get(*pos + 1..end)?;
    *pos = end + 2;
    let n = || std::str::from_utf8(line).ok()?.parse::<i64>().ok();
    match t {
        b'$' | b'=' => {
            let l = n()?;
            if l < 0 {
                return Some(R::Other);
            }
            let s = b.get(*pos..*pos + l as usize)?.to_vec();
            *pos += l as usize + 2;
            Some(R::Bulk(s))
        }
        b':' => Some(R::Int(n()?)),
        b',' | b'+' => Some(R::Bulk(line.to_vec())),
        b'*' | b'~' | b'>' | b'%' => {
            let l = n()?;
            if l < 0 || depth > 4 {
                return Some(R::Other);
            }
            let l = if t == b'%' { l * 2 } else { l };
            let mut v = Vec::new();
            for _ in 0..l {
                v.push(parse_reply(b, pos, depth + 1)?);
            }
            Some(R::Arr(v))
        }
        _ => Some(R::Other),
    }
}

fn bulk(r: &R) -> Option<Bytes> {
    match r {
        R::Bulk(s) => Some(Bytes::copy_from_slice(s)),
        R::Int(i) => Some(num(*i)),
        _ => None,
    }
}

/// (exists, expire_at) of `key` after the command.
fn post(acc: &mut Access<'_>, db: usize, key: &[u8]) -> Option<(i64, Option<u64>)> {
    let slot = key_hash_slot(key);
    let sh = acc.shard(db, slot)?;
    let e = sh.get_raw(slot, key)?;
    let xlen = match &e.value {
        Value::Stream(s) => Some(s.len() as u64),
        _ => None,
    };
    Some((e.expire_at, xlen))
}

fn eq(a: &[u8], b: &str) -> bool {
    a.eq_ignore_ascii_case(b.as_bytes())
}

/// The records Redis 7.0 propagates for one command that changed data.
fn rewrite(acc: &mut Access<'_>, name: &str, args: &[Bytes], db: usize, reply: &[u8]) -> Vec<Vec<Bytes>> {
    let verbatim = || vec![args.to_vec()];
    let key = args.get(1).cloned().unwrap_or_default();
    let parsed = || parse_reply(reply, &mut 0, 0);
    let del = |k: &Bytes| vec![vec![b("DEL"), k.clone()]];
    match name {
        "set" => {
            let rel = args.iter().skip(3).any(|a| eq(a, "ex") || eq(a, "px") || eq(a, "exat") || eq(a, "pxat"));
            match (rel, post(acc, db, &key)) {
                (true, Some((at, _))) if at != 0 => {
                    vec![vec![b("SET"), key, args[2].clone(), b("PXAT"), num(at)]]
                }
                _ => verbatim(),
            }
        }
        "setex" | "psetex" if args.len() == 4 => match post(acc, db, &key) {
            Some((at, _)) if at != 0 => vec![vec![b("SET"), key, args[3].clone(), b("PXAT"), num(at)]],
            _ => verbatim(),
        },
        "getex" => match post(acc, db, &key) {
            None => del(&key),
            Some((0, _)) => vec![vec![b("PERSIST"), key]],
            Some((at, _)) => vec![vec![b("PEXPIREAT"), key, num(at)]],
        },
        "expire" | "pexpire" | "expireat" | "pexpireat" => match post(acc, db, &key) {
            None => del(&key),
            Some((at, _)) if at != 0 && name != "pexpireat" => {
                let mut v = vec![b("PEXPIREAT"), key, num(at)];
                v.extend(args.iter().skip(3).cloned());
                vec![v]
            }
            _ => verbatim(),
        },
        "getdel" => del(&key),
        "getset" if args.len() == 3 => vec![vec![b("SET"), key, args[2].clone()]],
        "incrbyfloat" => match parsed().as_ref().and_then(bulk) {
            Some(v) => vec![vec![b("SET"), key, v, b("KEEPTTL")]],
            None => verbatim(),
        },
        "hincrbyfloat" if args.len() == 4 => match parsed().as_ref().and_then(bulk) {
            Some(v) => vec![vec![b("HSET"), key, args[2].clone(), v]],
            None => verbatim(),
        },
        "spop" => match parsed() {
            Some(R::Bulk(m)) => vec![vec![b("SREM"), key, Bytes::from(m)]],
            Some(R::Arr(ms)) => {
                if post(acc, db, &key).is_none() {
                    del(&key)
                } else {
                    ms.iter().filter_map(bulk).map(|m| vec![b("SREM"), key.clone(), m]).collect()
                }
            }
            _ => verbatim(),
        },
        "blpop" | "brpop" => match parsed() {
            Some(R::Arr(v)) if v.len() == 2 => match bulk(&v[0]) {
                Some(k) => vec![vec![b(if name == "blpop" { "LPOP" } else { "RPOP" }), k]],
                None => verbatim(),
            },
            _ => verbatim(),
        },
        "brpoplpush" if args.len() == 4 => vec![vec![b("RPOPLPUSH"), args[1].clone(), args[2].clone()]],
        "blmove" if args.len() == 6 => {
            vec![vec![b("LMOVE"), args[1].clone(), args[2].clone(), args[3].clone(), args[4].clone()]]
        }
        "lmpop" | "blmpop" | "zmpop" | "bzmpop" => {
            let base = if name.starts_with('b') { 2 } else { 1 };
            let nk = args.get(base).and_then(|a| std::str::from_utf8(a).ok()?.parse::<usize>().ok()).unwrap_or(0);
            let dir = args.get(base + 1 + nk).cloned().unwrap_or_default();
            let op = match (name.ends_with("lmpop"), eq(&dir, "left") || eq(&dir, "min")) {
                (true, true) => "LPOP",
                (true, false) => "RPOP",
                (false, true) => "ZPOPMIN",
                (false, false) => "ZPOPMAX",
            };
            match parsed() {
                Some(R::Arr(v)) if v.len() == 2 => match (bulk(&v[0]), &v[1]) {
                    (Some(k), R::Arr(items)) => vec![vec![b(op), k, num(items.len() as i64)]],
                    _ => verbatim(),
                },
                _ => verbatim(),
            }
        }
        "bzpopmin" | "bzpopmax" => match parsed() {
            Some(R::Arr(v)) if v.len() == 3 => match bulk(&v[0]) {
                Some(k) => vec![vec![b(if name == "bzpopmin" { "ZPOPMIN" } else { "ZPOPMAX" }), k]],
                None => verbatim(),
            },
            _ => verbatim(),
        },
        "xadd" => xadd(acc, args, db, parsed()),
        "xtrim" if args.len() > 2 => xtrim(acc, args, db),
        "xreadgroup" => xreadgroup(acc, args, db, parsed()),
        "xclaim" | "xautoclaim" if args.len() >= 4 => {
            let (ids, gone): (Vec<Bytes>, Vec<Bytes>) = match (name, parsed()) {
                ("xclaim", Some(R::Arr(v))) => {
                    let ids: Vec<Bytes> = v.iter().filter_map(entry_id).collect();
                    // Requested entries that do not exist (any more): their pending entries were dropped.
                    let asked: Vec<Bytes> =
                        args.iter().skip(5).take_while(|a| loose_id(a).is_some()).cloned().collect();
                    let gone = with_stream(acc, db, &key, |st| {
                        asked.into_iter().filter(|a| loose_id(a).is_some_and(|id| !st.exists(id))).collect()
                    });
                    (ids, gone.unwrap_or_default())
                }
                ("xautoclaim", Some(R::Arr(v))) if v.len() >= 2 => {
                    let ids = match &v[1] {
                        R::Arr(e) => e.iter().filter_map(entry_id).collect(),
                        _ => Vec::new(),
                    };
                    let gone = match v.get(2) {
                        Some(R::Arr(e)) => e.iter().filter_map(bulk).collect(),
                        _ => Vec::new(),
                    };
                    (ids, gone)
                }
                _ => return verbatim(),
            };
            let mut out = dropped_claims(acc, db, &key, &args[2], &args[3], &gone);
            out.extend(claims(acc, db, &key, &args[2], &args[3], &ids, false));
            out
        }
        "restore" if args.len() >= 4 => {
            let abs = args.iter().skip(4).any(|a| eq(a, "absttl"));
            let ttl = std::str::from_utf8(&args[2]).ok().and_then(|s| s.parse::<i64>().ok()).unwrap_or(0);
            match post(acc, db, &key) {
                Some((at, _)) if !abs && ttl > 0 && at != 0 => {
                    let mut v = args.to_vec();
                    v[2] = num(at);
                    v.push(b("ABSTTL"));
                    vec![v]
                }
                _ => verbatim(),
            }
        }
        _ => verbatim(),
    }
}

/// The id of an entry in a reply (`[id, fields]` or a bare id).
fn entry_id(r: &R) -> Option<Bytes> {
    match r {
        R::Arr(v) => v.first().and_then(bulk),
        R::Bulk(_) => bulk(r),
        _ => None,
    }
}

/// The group of a stream key after the command.
fn with_group<T>(
    acc: &mut Access<'_>,
    db: usize,
    key: &[u8],
    group: &[u8],
    f: impl FnOnce(&crate::types::stream::Group) -> T,
) -> Option<T> {
    with_stream(acc, db, key, |s| s.groups.get(group).map(f)).flatten()
}

fn parse_id(b: &[u8]) -> Option<crate::types::stream::StreamId> {
    let s = std::str::from_utf8(b).ok()?;
    let (ms, seq) = s.split_once('-')?;
    Some(crate::types::stream::StreamId::new(ms.parse().ok()?, seq.parse().ok()?))
}

/// Deliveries as Redis 7.0 propagates them: one forced XCLAIM per entry
/// with its delivery time and count and the group's last id (for new
/// deliveries by XREADGROUP, the entry's own id: the group's position
/// when it was delivered).
fn claims(
    acc: &mut Access<'_>,
    db: usize,
    key: &Bytes,
    group: &Bytes,
    consumer: &Bytes,
    ids: &[Bytes],
    new_deliveries: bool,
) -> Vec<Vec<Bytes>> {
    let mut out = Vec::new();
    for idb in ids {
        let Some(id) = parse_id(idb) else { continue };
        let info = with_group(acc, db, key, group, |g| {
            (g.pel.get(&id).map(|n| (n.delivery_time, n.delivery_count)), g.last_id.fmt())
        });
        let Some((Some((t, n)), last)) = info else { continue };
        out.push(vec![
            b("XCLAIM"),
            key.clone(),
            group.clone(),
            consumer.clone(),
            b("0"),
            idb.clone(),
            b("TIME"),
            num(t),
            b("RETRYCOUNT"),
            num(n as i64),
            b("FORCE"),
            b("JUSTID"),
            b("LASTID"),
            if new_deliveries { idb.clone() } else { Bytes::from(last) },
        ]);
    }
    out
}

/// Pending entries XCLAIM/XAUTOCLAIM dropped because their stream entries were deleted: an XCLAIM of each, as
/// Redis propagates them (the replica, not finding the entry either, drops its pending entry too).
fn dropped_claims(
    acc: &mut Access<'_>,
    db: usize,
    key: &Bytes,
    group: &Bytes,
    consumer: &Bytes,
    ids: &[Bytes],
) -> Vec<Vec<Bytes>> {
    if ids.is_empty() {
        return Vec::new();
    }
    let Some(last) = with_group(acc, db, key, group, |g| g.last_id.fmt()) else { return Vec::new() };
    ids.iter()
        .map(|id| {
            vec![
                b("XCLAIM"),
                key.clone(),
                group.clone(),
                consumer.clone(),
                b("0"),
                id.clone(),
                b("TIME"),
                b("0"),
                b("RETRYCOUNT"),
                b("0"),
                b("FORCE"),
                b("JUSTID"),
                b("LASTID"),
                Bytes::from(last.clone()),
            ]
        })
        .collect()
}

/// A stream ID as XCLAIM takes it (`ms-seq`, or `ms` for `ms-0`).
fn loose_id(b: &[u8]) -> Option<crate::types::stream::StreamId> {
    parse_id(b).or_else(|| {
        let ms = std::str::from_utf8(b).ok()?.parse::<u64>().ok()?;
        Some(crate::types::stream::StreamId::new(ms, 0))
    })
}

/// The stream at `key` after the command.
fn with_stream<T>(
    acc: &mut Access<'_>,
    db: usize,
    key: &[u8],
    f: impl FnOnce(&crate::types::stream::Stream) -> T,
) -> Option<T> {
    let slot = key_hash_slot(key);
    let e = acc.shard(db, slot)?.get_raw(slot, key)?;
    match &e.value {
        Value::Stream(s) => Some(f(s)),
        _ => None,
    }
}

/// XREADGROUP: new deliveries become XCLAIMs; with NOACK the group's
/// position moves (XGROUP SETID) and the consumer exists.
fn xreadgroup(acc: &mut Access<'_>, args: &[Bytes], db: usize, reply: Option<R>) -> Vec<Vec<Bytes>> {
    if args.len() < 7 {
        return vec![args.to_vec()];
    }
    let (group, consumer) = (args[2].clone(), args[3].clone());
    let mut noack = false;
    let mut i = 4;
    while i < args.len() && !eq(&args[i], "streams") {
        if eq(&args[i], "noack") {
            noack = true;
        }
        i += 1;
    }
    let rest = &args[(i + 1).min(args.len())..];
    let nkeys = rest.len() / 2;
    // (key, delivered ids) from the reply (RESP2 pairs or a RESP3 map).
    let mut delivered: Vec<(Bytes, Vec<Bytes>)> = Vec::new();
    if let Some(R::Arr(v)) = reply {
        let mut it = v.into_iter().peekable();
        while let Some(x) = it.next() {
            let (k, entries) = match x {
                R::Arr(mut p) if p.len() == 2 => {
                    let e = p.pop();
                    (p.pop(), e)
                }
                k @ R::Bulk(_) => (Some(k), it.next()),
                _ => continue,
            };
            let (Some(k), Some(R::Arr(entries))) = (k.as_ref().and_then(bulk), entries) else { continue };
            delivered.push((k, entries.iter().filter_map(entry_id).collect()));
        }
    }
    let mut out = Vec::new();
    for (k, ids) in delivered {
        let Some(pos) = rest[..nkeys].iter().position(|x| *x == k) else { continue };
        if &rest[nkeys + pos][..] != b">" || ids.is_empty() {
            continue;
        }
        if noack {
            let Some((last, read)) = with_group(acc, db, &k, &group, |g| (g.last_id.fmt(), g.entries_read)) else {
                continue;
            };
            out.push(vec![b("XGROUP"), b("CREATECONSUMER"), k.clone(), group.clone(), consumer.clone()]);
            out.push(vec![b("XGROUP"), b("SETID"), k, group.clone(), Bytes::from(last), b("ENTRIESREAD"), num(read)]);
        } else {
            out.extend(claims(acc, db, &k, &group, &consumer, &ids, true));
        }
    }
    out
}

/// The exact trim threshold after an approximate trim (Redis's
/// streamRewriteTrimArgument): the length for MAXLEN, the first entry's id
/// for MINID (the maximal id when the stream is empty).
fn exact_threshold(acc: &mut Access<'_>, db: usize, key: &[u8], maxlen: bool) -> Option<Bytes> {
    let slot = key_hash_slot(key);
    let sh = acc.shard(db, slot)?;
    let e = sh.get_raw(slot, key)?;
    let Value::Stream(s) = &e.value else { return None };
    Some(if maxlen {
        num(s.len() as i64)
    } else {
        let id = s.edge_id(true).unwrap_or(crate::types::stream::StreamId::new(u64::MAX, u64::MAX));
        Bytes::from(id.fmt())
    })
}

/// Rewrite one `MAXLEN|MINID [=|~] <threshold> [LIMIT n]` clause starting
/// at `v[i]` (the MAXLEN/MINID word); approximate trims become exact with
/// the resulting threshold and lose LIMIT. Returns the index after it.
fn exact_trim(acc: &mut Access<'_>, db: usize, key: &[u8], v: &mut Vec<Bytes>, mut i: usize) -> usize {
    let maxlen = eq(&v[i], "maxlen");
    i += 1;
    let mut exact = false;
    if i < v.len() && &v[i][..] == b"~" {
        if let Some(t) = exact_threshold(acc, db, key, maxlen) {
            v[i] = b("=");
            if i + 1 < v.len() {
                v[i + 1] = t;
                exact = true;
            }
        }
        i += 1;
    } else if i < v.len() && &v[i][..] == b"=" {
        i += 1;
    }
    i += 1;
    if i < v.len() && eq(&v[i], "limit") {
        // LIMIT only applies to approximate trimming, now exact.
        if exact {
            v.drain(i..(i + 2).min(v.len()));
        } else {
            i += 2;
        }
    }
    i
}

/// XADD: the generated id made explicit, approximate trimming made exact.
fn xadd(acc: &mut Access<'_>, args: &[Bytes], db: usize, reply: Option<R>) -> Vec<Vec<Bytes>> {
    let mut v = args.to_vec();
    let mut i = 2;
    while i < v.len() {
        if eq(&v[i], "nomkstream") {
            i += 1;
        } else if eq(&v[i], "maxlen") || eq(&v[i], "minid") {
            i = exact_trim(acc, db, &args[1], &mut v, i);
        } else {
            break;
        }
    }
    if i < v.len() && v[i].ends_with(b"*") {
        if let Some(id) = reply.as_ref().and_then(bulk) {
            v[i] = id;
        }
    }
    vec![v]
}

/// XTRIM: approximate trimming made exact.
fn xtrim(acc: &mut Access<'_>, args: &[Bytes], db: usize) -> Vec<Vec<Bytes>> {
    let mut v = args.to_vec();
    if v.len() > 2 && (eq(&v[2], "maxlen") || eq(&v[2], "minid")) {
        exact_trim(acc, db, &args[1], &mut v, 2);
    }
    vec![v]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reply_parser() {
        let r = parse_reply(b"*2\r\n$1\r\nk\r\n*2\r\n$1\r\na\r\n$1\r\nb\r\n", &mut 0, 0).unwrap();
        match r {
            R::Arr(v) => {
                assert!(matches!(&v[0], R::Bulk(k) if k == b"k"));
                assert!(matches!(&v[1], R::Arr(x) if x.len() == 2));
            }
            _ => panic!(),
        }
        assert!(parse_reply(b"*5\r\n$1\r\n", &mut 0, 0).is_none());
        assert!(parse_reply(b"$100\r\nab\r\n", &mut 0, 0).is_none());
    }
}
