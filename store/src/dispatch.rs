//! Command dispatch: the one path every request takes.
//!
//! lookup -> arity -> auth -> transaction/pub-sub context -> (MULTI queue)
//! -> slot-ownership decision (`routing::decide`) -> lock -> handler.
//!
//! Everything here is synchronous; the connection task calls `execute`
//! for each parsed request and writes the reply buffer afterwards.

use crate::blocking::{WaitState, Waiter};
use crate::client::{Client, Multi, Push};
use crate::cmd::{arity_error, Cmd, CmdError, Cx, Ks, Lock, SlotCache};
use crate::keyspace::Access;
use crate::routing::{self, ClusterView};
use crate::server::{now_ms, Server};
use bytes::Bytes;
use ferrite_commands::{get_keys, key_hash_slot, CommandMeta, Flags};
use ferrite_resp::ReplyBuf;
use smallvec::SmallVec;
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// Redis's message for an unknown command.
fn unknown_command(args: &[Bytes]) -> CmdError {
    let mut list = String::new();
    for a in &args[1..] {
        if list.len() >= 128 {
            break;
        }
        let room = 128 - list.len();
        let s = String::from_utf8_lossy(a);
        let cut: String = s.chars().take(room).collect();
        list.push('\'');
        list.push_str(&cut);
        list.push_str("' ");
    }
    let name = String::from_utf8_lossy(&args[0]);
    let name: String = name.chars().take(128).collect();
    CmdError::err(format!("unknown command '{name}', with args beginning with: {list}"))
}

/// Reject a command before execution. Inside MULTI this also dooms the
/// transaction (EXECABORT), as in Redis.
fn reject(srv: &Server, client: &mut Client, out: &mut ReplyBuf, e: CmdError) {
    if let Some(m) = client.multi.as_mut() {
        m.dirty = true;
    }
    srv.stats.error_reply(&e.0);
    out.error(&e.0);
}

/// `reject` for a resolved command (INFO commandstats `rejected_calls`).
/// Refuse a command; an EXEC refused this way also ends the transaction (`EXECABORT ... because of: <error>`).
fn reject_or_abort_exec(
    srv: &Server,
    client: &mut Client,
    out: &mut ReplyBuf,
    meta: &CommandMeta,
    name: &str,
    e: CmdError,
) {
    if name != "exec" {
        return reject_cmd(srv, client, out, meta, e);
    }
    client.multi = None;
    client.handle.multi.store(-1, Ordering::Relaxed);
    unwatch_all(srv, client);
    srv.stats.error_reply(&e.0);
    out.error(&format!("EXECABORT Transaction discarded because of: {}", e.0));
}

fn reject_cmd(srv: &Server, client: &mut Client, out: &mut ReplyBuf, meta: &CommandMeta, e: CmdError) {
    srv.stats.rejected_call(&meta.name);
    reject(srv, client, out, e)
}

/// Resolve the command and, for container commands, the subcommand entry
/// whose arity and key specs apply.
pub fn resolve<'s>(srv: &'s Server, args: &[Bytes]) -> Result<(&'s Cmd, &'static CommandMeta), CmdError> {
    resolve_with(srv, args, &mut LastCmd::default())
}

#[inline]
fn resolve_with<'s>(
    srv: &'s Server,
    args: &[Bytes],
    last: &mut LastCmd<'s>,
) -> Result<(&'s Cmd, &'static CommandMeta), CmdError> {
    let Some(cmd) = last.lookup(srv, &args[0]) else {
        return Err(unknown_command(args));
    };
    let mut meta: &'static CommandMeta = cmd.meta;
    if !meta.subcommands.is_empty() && args.len() >= 2 {
        match meta.subcommand(&args[1]) {
            Some(sub) => meta = sub,
            None => {
                let sub: String = String::from_utf8_lossy(&args[1]).chars().take(128).collect();
                return Err(CmdError::err(format!(
                    "unknown subcommand '{sub}'. Try {} HELP.",
                    cmd.meta.name.to_ascii_uppercase()
                )));
            }
        }
    }
    if !meta.arity_ok(args.len()) {
        return Err(arity_error(&meta.name));
    }
    Ok((cmd, meta))
}

/// `get_keys`, with a shortcut for the most common shape: one key spec
/// whose only key is `args[1]` (GET, SET, INCR, LPUSH, HSET, ...), where the
/// general walk would return exactly `[1]`.
#[inline]
fn key_positions(meta: &CommandMeta, args: &[Bytes]) -> Result<SmallVec<[usize; 4]>, ferrite_commands::KeysError> {
    if single_key(meta, args) {
        return Ok(smallvec::smallvec![1]);
    }
    get_keys(meta, args)
}

/// Is `args[1]` the command's only key (see `key_positions`)?
#[inline]
fn single_key(meta: &CommandMeta, args: &[Bytes]) -> bool {
    use ferrite_commands::table::{BeginSearch, FindKeys};
    match meta.key_specs.as_slice() {
        [spec] => {
            matches!(spec.begin, BeginSearch::Index(1))
                && matches!(spec.find, FindKeys::Range { lastkey: 0, keystep, .. } if keystep > 0)
                && args.len() > 1
        }
        _ => false,
    }
}

const PUBSUB_ALLOWED: &[&str] =
    &["ping", "subscribe", "ssubscribe", "unsubscribe", "sunsubscribe", "psubscribe", "punsubscribe", "quit", "reset"];

/// The command a connection ran last, by the exact bytes of its name, so
/// a run of the same command skips the lowercasing and the table lookup.
#[derive(Default)]
pub struct LastCmd<'s> {
    name: [u8; 16],
    len: usize,
    cmd: Option<&'s Cmd>,
}

impl<'s> LastCmd<'s> {
    #[inline]
    fn lookup(&mut self, srv: &'s Server, name: &[u8]) -> Option<&'s Cmd> {
        if let Some(c) = self.cmd {
            if name.len() == self.len && self.name[..self.len] == *name {
                return Some(c);
            }
        }
        let c = srv.registry.get(name)?;
        if name.len() <= self.name.len() {
            self.name[..name.len()].copy_from_slice(name);
            self.len = name.len();
            self.cmd = Some(c);
        }
        Some(c)
    }
}

/// Execute one request, appending its reply to `out`. Returns the full
/// name of the command that ran (for CLIENT LIST's `cmd=`), if it resolved.
pub fn execute(srv: &Server, client: &mut Client, args: &[Bytes], out: &mut ReplyBuf) -> Option<&'static str> {
    execute_with(srv, client, args, out, &mut LastCmd::default())
}

/// `execute` with the connection's last-command cache.
pub fn execute_with<'s>(
    srv: &'s Server,
    client: &mut Client,
    args: &[Bytes],
    out: &mut ReplyBuf,
    last: &mut LastCmd<'s>,
) -> Option<&'static str> {
    let (cmd, meta) = match resolve_with(srv, args, last) {
        Ok(x) => x,
        Err(e) => {
            crate::stats::rejected_before_resolve(srv, args, &e.0);
            reject(srv, client, out, e);
            return None;
        }
    };
    let meta: &'static CommandMeta = meta;
    execute_resolved(srv, client, cmd, meta, args, out);
    Some(meta.name.as_str())
}

fn execute_resolved(
    srv: &Server,
    client: &mut Client,
    cmd: &Cmd,
    meta: &'static CommandMeta,
    args: &[Bytes],
    out: &mut ReplyBuf,
) {
    let name = cmd.imp.name;
    if !client.authenticated && !meta.flags.has(Flags::NO_AUTH) && srv.acl.auth_required() {
        return reject_cmd(srv, client, out, meta, CmdError::st("NOAUTH Authentication required."));
    }
    if let Err(e) = crate::script::busy_check(srv, meta) {
        if name == "exec" && client.multi.is_some() {
            // Redis's execCommandAbort: the transaction is discarded.
            client.multi = None;
            client.handle.multi.store(-1, Ordering::Relaxed);
            unwatch_all(srv, client);
            srv.stats.error_reply("EXECABORT");
            out.error(&format!("EXECABORT Transaction discarded because of: {}", e.0));
            return;
        }
        return reject(srv, client, out, e);
    }
    if client.multi.is_some() && meta.flags.has(Flags::NO_MULTI) {
        return reject_cmd(srv, client, out, meta, CmdError::err("Command not allowed inside a transaction"));
    }
    // ACL permissions (a single flag check for the unrestricted default user).
    if let Err(e) = crate::acl::check(srv, client, meta, args) {
        if name == "exec" {
            // Redis's execCommandAbort: the transaction is discarded.
            client.multi = None;
            client.handle.multi.store(-1, Ordering::Relaxed);
            unwatch_all(srv, client);
            srv.stats.error_reply("EXECABORT");
            out.error(&format!("EXECABORT Transaction discarded because of: {}", e.0));
            return;
        }
        return reject_cmd(srv, client, out, meta, e);
    }
    // maxmemory: evict first; if still over the limit, refuse commands that
    // may grow memory (and anything queued in MULTI), as Redis does.
    // A script declaring flags is a write (unless no-writes) and deny-oom
    // (unless allow-oom or no-writes) for these checks, as in Redis.
    let script_flags =
        if matches!(name, "eval" | "evalsha" | "fcall") { crate::script::declared_flags(srv, args) } else { None };
    let script_write = script_flags.is_some_and(|f| f & crate::script::F_NO_WRITES == 0);
    if srv.tun.maxmemory.load(Ordering::Relaxed) > 0 && !crate::cmd::client::tracking::evict_for(srv, client, out) {
        let denyoom = meta.flags.has(Flags::DENYOOM)
            || script_flags.is_some_and(|f| f & (crate::script::F_NO_WRITES | crate::script::F_ALLOW_OOM) == 0)
            || (name == "exec"
                && client.multi.as_ref().is_some_and(|m| {
                    m.queue.iter().any(|a| resolve(srv, a).is_ok_and(|(_, qm)| qm.flags.has(Flags::DENYOOM)))
                }))
            || (client.multi.is_some() && !matches!(name, "exec" | "discard" | "quit" | "reset"));
        if denyoom {
            let e = CmdError::st("OOM command not allowed when used memory > 'maxmemory'.");
            if name == "exec" {
                // Redis's execCommandAbort: the transaction ends (the client leaves MULTI).
                srv.stats.rejected_call(&meta.name);
                client.multi = None;
                client.handle.multi.store(-1, Ordering::Relaxed);
                unwatch_all(srv, client);
                let msg = format!("EXECABORT Transaction discarded because of: {}", e.0);
                srv.stats.error_reply(&msg);
                out.error(&msg);
                return;
            }
            return reject_cmd(srv, client, out, meta, e);
        }
    }
    let write_meta = match script_write {
        true => ferrite_commands::table().commands.get("set").unwrap_or(meta),
        false => meta,
    };
    if let Some(e) = crate::persist::deny_write(srv, write_meta) {
        return reject_cmd(srv, client, out, meta, e);
    }
    if crate::cmd::config::noreplicas(client, meta, srv) || (script_write && crate::cmd::config::noreplicas_active()) {
        let e = CmdError::st("NOREPLICAS Not enough good replicas to write.");
        return reject_or_abort_exec(srv, client, out, meta, name, e);
    }
    // A replica: -READONLY for client writes, -MASTERDOWN while the link is down.
    let queued = if name == "exec" { client.multi.as_ref().map(|m| &m.queue[..]) } else { None };
    if let Some(e) = crate::persist::replica::deny(srv, meta, queued, script_flags) {
        return reject_or_abort_exec(srv, client, out, meta, name, e);
    }
    if !client.resp3 && client.in_pubsub() && !PUBSUB_ALLOWED.contains(&name) {
        let e = CmdError::err(format!(
            "Can't execute '{}': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / RESET are allowed in this context",
            meta.name
        ));
        return reject_cmd(srv, client, out, meta, e);
    }
    if let Some(m) = client.multi.as_mut() {
        if !matches!(name, "exec" | "discard" | "multi" | "watch" | "quit" | "reset") {
            m.queue.push(args.to_vec());
            client.handle.multi.store(m.queue.len() as i64, Ordering::Relaxed);
            out.simple(b"QUEUED");
            return;
        }
    }
    if name == "exec" {
        let t0 = std::time::Instant::now();
        let failed = exec(srv, client, out);
        crate::cmd::client::tracking::flush_bcast(srv);
        if srv.monitor_count.load(Ordering::Relaxed) > 0 {
            feed_monitors(srv, client, client.db, args);
        }
        return srv.stats.command_done(meta, args, client, t0.elapsed(), failed);
    }
    run(srv, client, cmd, meta, args, out, None)
}

/// Lock what the command needs and run its handler. `shared` is the
/// exclusive access EXEC already holds (then blocked clients are served by
/// EXEC once the whole transaction ran, as in Redis).
fn run<'s>(
    srv: &'s Server,
    client: &mut Client,
    cmd: &'s Cmd,
    meta: &'static CommandMeta,
    args: &[Bytes],
    out: &mut ReplyBuf,
    shared: Option<&mut Access<'s>>,
) {
    let db = client.db;
    let in_exec = shared.is_some();
    let mut owned;
    let mut slot_cache = SlotCache::default();
    let acc: &mut Access<'s> = match shared {
        Some(a) => a,
        None => {
            owned = match cmd.imp.lock {
                Lock::None => srv.store.access_none(),
                Lock::All => srv.store.access_all(),
                // The common shape (GET, SET, INCR, LPUSH...): one key, one shard, no position list.
                Lock::Keys if single_key(meta, args) => {
                    let key = &args[1];
                    let sl = key_hash_slot(key);
                    slot_cache.0.push((key.as_ptr() as usize, key.len(), sl));
                    // (Matching `Serve` first spares the decision's drop call on the common path.)
                    let decision = routing::decide(ClusterView::Standalone, &[sl]);
                    if !matches!(decision, routing::Decision::Serve) {
                        if let Some(e) = decision.error() {
                            srv.stats.total_error_replies.fetch_add(1, Ordering::Relaxed);
                            out.error(&e);
                            return;
                        }
                    }
                    if meta.flags.has(Flags::WRITE) && srv.blocking.has_waiters(db, std::iter::once(&key[..])) {
                        srv.store.access_all()
                    } else {
                        srv.store.access_slot(db, sl)
                    }
                }
                Lock::Keys => match key_positions(meta, args) {
                    Ok(pos) => {
                        let slots: SmallVec<[u16; 4]> = pos.iter().map(|&i| key_hash_slot(&args[i])).collect();
                        for (&i, &sl) in pos.iter().zip(&slots) {
                            slot_cache.0.push((args[i].as_ptr() as usize, args[i].len(), sl));
                        }
                        // The one place a cluster node will refuse or redirect.
                        let decision = routing::decide(ClusterView::Standalone, &slots);
                        if let Some(e) = decision.error() {
                            srv.stats.total_error_replies.fetch_add(1, Ordering::Relaxed);
                            out.error(&e);
                            return;
                        }
                        // A write to a key somebody is blocked on runs
                        // exclusively, so serving the blocked clients is
                        // atomic with the write (first blocked, first served).
                        if meta.flags.has(Flags::WRITE)
                            && srv.blocking.has_waiters(db, pos.iter().map(|&i| &args[i][..]))
                        {
                            srv.store.access_all()
                        } else {
                            srv.store.access_slots(db, slots.into_iter())
                        }
                    }
                    // Arguments don't fit the key specs: the handler will
                    // report the precise error; lock everything meanwhile.
                    Err(_) => srv.store.access_all(),
                },
            };
            &mut owned
        }
    };
    let persist = crate::persist::before(srv, acc, meta, db, &slot_cache, out);
    // A script's effects are propagated together (MULTI/EXEC when > 1).
    let is_script = matches!(cmd.imp.name, "eval" | "evalsha" | "eval_ro" | "evalsha_ro" | "fcall" | "fcall_ro");
    let script_group = is_script && crate::persist::propagate::script_begin(srv);
    if is_script {
        crate::persist::propagate::script_target_reset();
    }
    // One clock reading (taken once the locks are held) is both the
    // command's time and the start of its duration, like Redis's `call()`
    // (`ustime()` before and after). Inside a script, time stands still at
    // the script's start (Redis).
    let t0_us = crate::clock::now_us();
    let now = crate::script::frozen_now().unwrap_or(t0_us.div_euclid(1000));
    let mut cx = Cx { srv, client, out, ks: Ks { srv, acc, db, now, slots: slot_cache }, args, cmd, in_exec };
    // A command called by a script keeps the script's caller current.
    let script_call = crate::script::vm::in_script();
    if !script_call {
        crate::cmd::client::tracking::set_current(cx.client.id);
    }
    let res = (cmd.imp.handler)(&mut cx);
    // A command that blocked is counted once, when it is served.
    if client.block.is_none() {
        let took = std::time::Duration::from_micros(crate::clock::now_us().saturating_sub(t0_us).max(0) as u64);
        srv.stats.command_done(meta, args, client, took, res.is_err());
    }
    if script_call {
        crate::cmd::client::tracking::after_script_call(meta);
    } else {
        crate::cmd::client::tracking::after_command(srv, client, meta, args, in_exec);
    }
    if let Err(e) = res {
        srv.stats.error_reply(&e.0);
        out.error(&e.0);
    }
    crate::persist::after(srv, acc, persist, cmd.imp.name, meta, args, db, out);
    if is_script {
        crate::persist::propagate::script_target_reset();
    }
    if script_group {
        crate::persist::propagate::tx_end(srv);
    }
    if let Some(req) = &client.block {
        // Register while the keys' shards are still locked: no write can
        // slip in between "nothing to pop" and "waiting".
        let w = Arc::new(Waiter {
            handle: client.handle.clone(),
            db,
            resp3: client.resp3,
            user: client.user.clone(),
            args: req.rerun.clone().unwrap_or_else(|| args.to_vec()),
            keys: req.keys.clone(),
            state: parking_lot::Mutex::new(WaitState::Waiting),
        });
        srv.blocking.register(w.clone());
        client.handle.blocked.store(true, Ordering::Relaxed);
        client.waiter = Some(w);
    } else if meta.flags.has(Flags::WRITE) && srv.blocking.any() {
        if let Ok(pos) = get_keys(meta, args) {
            client.ready_keys.extend(pos.iter().map(|&i| (db, args[i].clone())));
        }
        if !in_exec && acc.is_exclusive() {
            serve_blocked(srv, acc, std::mem::take(&mut client.ready_keys));
        }
    }
    if srv.monitor_count.load(Ordering::Relaxed) > 0 && !meta.flags.has(Flags::ADMIN | Flags::SKIP_MONITOR) {
        feed_monitors(srv, client, db, args);
    }
}

/// Run one command called by a script (redis.call) on the exclusive access
/// the script's EVAL/FCALL holds, as EXEC runs its queued commands
/// (blocking commands do not block). Returns the reply bytes. The caller
/// has done the script-specific checks (noscript, ACL, read-only, OOM).
pub fn run_for_script<'s>(
    srv: &'s Server,
    client: &mut Client,
    cmd: &'s Cmd,
    meta: &'static CommandMeta,
    args: &[Bytes],
    acc: &mut Access<'s>,
) -> Bytes {
    let mut out = ReplyBuf { buf: bytes::BytesMut::with_capacity(64), resp3: client.resp3 };
    run(srv, client, cmd, meta, args, &mut out, Some(acc));
    out.buf.freeze()
}

/// The type of key a blocking command waits for.
fn blocked_on_type(cmd: &str) -> &'static str {
    match cmd {
        "bzpopmin" | "bzpopmax" | "bzmpop" => "zset",
        "xread" | "xreadgroup" => "stream",
        _ => "list",
    }
}

/// Serve clients blocked on `ready` keys, oldest first, by re-running their
/// commands under the exclusive access the writer holds. A served command
/// may make further keys ready (BLMOVE's destination); those are served too.
pub fn serve_blocked<'s>(srv: &'s Server, acc: &mut Access<'s>, ready: Vec<(usize, Bytes)>) {
    if ready.is_empty() || !srv.blocking.any() {
        return;
    }
    let mut queue: std::collections::VecDeque<(usize, Bytes)> = ready.into();
    let mut rounds = 0;
    while let Some((db, key)) = queue.pop_front() {
        rounds += 1;
        if rounds > 100_000 {
            break;
        }
        // Like Redis, a key only serves the clients blocked for its type
        // (a list serves BLPOP, not BZPOPMIN); other writes serve nobody.
        let slot = key_hash_slot(&key);
        let now = now_ms();
        let ty = acc
            .shard(db, slot)
            .and_then(|s| s.get_raw(slot, &key).filter(|e| !e.is_expired(now)).map(|e| e.value.type_name()));
        // An expired key with waiters is deleted by the wake-up attempt (as
        // Redis's lookup when serving them), propagated as DEL.
        if ty.is_none() && srv.blocking.has_waiters(db, std::iter::once(&key[..])) {
            let gone = acc.shard(db, slot).and_then(|s| s.remove(slot, &key)).is_some();
            if gone {
                srv.store.dbs[db].signal_expired_deleted(&key);
                crate::persist::propagate::deleted_now(srv, db, &key);
                crate::stats::Stats::add(&srv.stats.expired_keys, 1);
                crate::notify::notify(srv, crate::notify::EXPIRED, "expired", &key, db);
            }
        }
        crate::cmd::stream::unblock_deleted_readgroup(srv, db, &key, ty);
        let Some(ty) = ty else {
            continue;
        };
        for w in srv.blocking.waiters(db, &key) {
            let Ok((cmd, meta)) = resolve(srv, &w.args) else { continue };
            if blocked_on_type(cmd.imp.name) != ty {
                continue;
            }
            let mut tmp = Client::new(w.handle.clone(), true);
            tmp.db = w.db;
            tmp.resp3 = w.resp3;
            tmp.user = w.user.clone();
            let mut out = ReplyBuf { buf: bytes::BytesMut::with_capacity(128), resp3: w.resp3 };
            let persist = crate::persist::before(srv, acc, meta, w.db, &SlotCache::default(), &out);
            let mut cx = Cx {
                srv,
                client: &mut tmp,
                out: &mut out,
                ks: Ks { srv, acc, db: w.db, now: now_ms(), slots: SlotCache::default() },
                args: &w.args,
                cmd,
                in_exec: false,
            };
            crate::cmd::client::tracking::set_current(w.handle.id);
            let t0 = std::time::Instant::now();
            let res = (cmd.imp.handler)(&mut cx);
            if tmp.block.is_none() {
                srv.stats.command_done(meta, &w.args, &tmp, t0.elapsed(), res.is_err());
            }
            if let Err(e) = res {
                if tmp.block.is_none() {
                    srv.stats.error_reply(&e.0);
                }
                out.error(&e.0);
            }
            if tmp.block.is_some() {
                crate::cmd::client::tracking::end_command(srv);
                // Nothing left on this key for anybody behind this waiter.
                break;
            }
            crate::persist::after(srv, acc, persist, cmd.imp.name, meta, &w.args, w.db, &out);
            if srv.blocking.mark_served(&w) {
                w.handle.blocked.store(false, Ordering::Relaxed);
                let _ = w.handle.tx.send(Push::Reply(out.buf.freeze()));
                if let Ok(pos) = get_keys(meta, &w.args) {
                    for i in pos {
                        if w.args[i] != key {
                            queue.push_back((w.db, w.args[i].clone()));
                        }
                    }
                }
                if srv.monitor_count.load(Ordering::Relaxed) > 0 {
                    feed_monitors(srv, &tmp, w.db, &w.args);
                }
            }
            crate::cmd::client::tracking::end_command(srv);
        }
    }
}

/// Run one command with access the caller already holds (AOF replay by
/// DEBUG LOADAOF under the exclusive lock).
pub fn execute_locked<'s>(
    srv: &'s Server,
    client: &mut Client,
    args: &[Bytes],
    out: &mut ReplyBuf,
    acc: &mut Access<'s>,
) {
    match resolve(srv, args) {
        Ok((cmd, meta)) => run(srv, client, cmd, meta, args, out, Some(acc)),
        Err(e) => out.error(&e.0),
    }
}

/// EXEC: run the queued commands atomically under exclusive access.
/// Returns true when EXEC itself failed (INFO commandstats failed_calls).
fn exec(srv: &Server, client: &mut Client, out: &mut ReplyBuf) -> bool {
    let Some(multi) = client.multi.take() else {
        reject(srv, client, out, CmdError::err("EXEC without MULTI"));
        return true;
    };
    client.handle.multi.store(-1, Ordering::Relaxed);
    let Multi { queue, dirty } = multi;
    if dirty {
        unwatch_all(srv, client);
        srv.stats.error_reply("EXECABORT");
        out.error("EXECABORT Transaction discarded because of previous errors.");
        return true;
    }
    let mut acc = srv.store.access_all();
    if watched_keys_changed(srv, client, &mut acc) {
        unwatch_all(srv, client);
        out.null_array();
        return false;
    }
    unwatch_all(srv, client);
    out.array(queue.len());
    crate::persist::propagate::tx_begin(srv);
    for args in &queue {
        match resolve(srv, args) {
            Ok((cmd, meta)) => match crate::acl::check_exec(srv, client, meta, args) {
                Ok(()) => run(srv, client, cmd, meta, args, out, Some(&mut acc)),
                Err(e) => {
                    srv.stats.error_reply(&e.0);
                    out.error(&e.0)
                }
            },
            Err(e) => {
                srv.stats.error_reply(&e.0);
                out.error(&e.0)
            }
        }
    }
    crate::persist::propagate::tx_end(srv);
    serve_blocked(srv, &mut acc, std::mem::take(&mut client.ready_keys));
    false
}

/// Did any watched key change (or expire) since WATCH?
fn watched_keys_changed(srv: &Server, client: &mut Client, acc: &mut Access<'_>) -> bool {
    if client.watch_dirty.load(Ordering::Relaxed) {
        return true;
    }
    let now = now_ms();
    for (db, key) in &client.watched {
        let slot = key_hash_slot(key);
        let expired_now =
            acc.shard(*db, slot).and_then(|s| s.get_raw(slot, key).map(|e| e.is_expired(now))).unwrap_or(false);
        if expired_now && !srv.store.dbs[*db].watched_as_expired(key, client.id) {
            return true;
        }
    }
    false
}

/// Forget every WATCH of this client.
pub fn unwatch_all(srv: &Server, client: &mut Client) {
    for (db, key) in client.watched.drain(..) {
        srv.store.dbs[db].unwatch(&key, client.id);
    }
    client.watch_dirty.store(false, Ordering::Relaxed);
}

/// Append a byte string the way Redis's `sdscatrepr` quotes it.
pub fn repr(out: &mut Vec<u8>, s: &[u8]) {
    out.push(b'"');
    for &c in s {
        match c {
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'"' => out.extend_from_slice(b"\\\""),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            7 => out.extend_from_slice(b"\\a"),
            8 => out.extend_from_slice(b"\\b"),
            c if c.is_ascii_graphic() || c == b' ' => out.push(c),
            c => out.extend_from_slice(format!("\\x{c:02x}").as_bytes()),
        }
    }
    out.push(b'"');
}

/// Send a command line to MONITOR clients (EVAL/FCALL feed themselves).
pub fn feed_monitors(srv: &Server, client: &Client, db: usize, args: &[Bytes]) {
    let us = crate::server::now_us();
    let mut line = format!("{}.{:06} [{} {}]", us / 1_000_000, us % 1_000_000, db, client.handle.addr).into_bytes();
    for (i, a) in args.iter().enumerate() {
        line.push(b' ');
        if crate::stats::is_redacted(args, i) {
            line.extend_from_slice(b"\"(redacted)\"");
        } else {
            repr(&mut line, a);
        }
    }
    let line = Bytes::from(line);
    for (_, tx) in srv.monitors.read().iter() {
        let _ = tx.send(Push::Monitor(line.clone()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The shortcut agrees with the general key-spec walk for every command
    /// and subcommand of the table, at every argument count up to 7.
    #[test]
    fn key_positions_match_get_keys() {
        let t = ferrite_commands::table();
        let mut metas: Vec<&CommandMeta> = Vec::new();
        for m in t.commands.values() {
            metas.push(m);
            metas.extend(m.subcommands.iter());
        }
        let mut shortcut = 0;
        for m in metas {
            for argc in 1..=7 {
                let args: Vec<Bytes> = (0..argc).map(|i| Bytes::from(format!("a{i}"))).collect();
                assert_eq!(key_positions(m, &args), get_keys(m, &args), "{} argc {argc}", m.name);
                if key_positions(m, &args) == Ok(smallvec::smallvec![1]) {
                    shortcut += 1;
                }
            }
        }
        assert!(shortcut > 100);
    }
}
