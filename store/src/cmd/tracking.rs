//! Server-assisted client side caching (CLIENT TRACKING), as Redis 7.0's
//! `tracking.c` (included from `cmd/client.rs`).
//!
//! Default mode: keys read by READONLY commands of a tracking client are
//! remembered (key -> client ids); the first change to such a key (write,
//! expiry, eviction) sends one `invalidate` message and forgets the key.
//! OPTIN/OPTOUT with CLIENT CACHING, NOLOOP and REDIRECT behave as in Redis.
//! BCAST mode: changed keys matching a client's prefixes are collected and
//! sent, sorted, after the command that changed them (Redis sends them
//! before the event loop sleeps). FLUSHALL/FLUSHDB send a null
//! invalidation to every tracking client. Messages are RESP3 pushes, or
//! `message __redis__:invalidate` for a RESP2 redirect target subscribed to
//! something. Past `tracking-table-max-keys` keys, keys are dropped from
//! the table (with an invalidation) after each command. Keys are tracked by
//! name across databases, like Redis.

use crate::client::{Client, ClientHandle, Push};
use crate::cmd::{eq_ic, CmdError, CmdResult, Cx, SYNTAX};
use crate::server::Server;
use bytes::Bytes;
use ferrite_commands::{CommandMeta, Flags};
use std::cell::Cell;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};

/// `tracking-table-max-keys` (0: no limit).
pub static MAX_KEYS: AtomicU64 = AtomicU64::new(1_000_000);
use std::sync::Arc;

/// A client's tracking mode, readable by the connections that invalidate.
#[derive(Default, Clone, Debug)]
pub struct Mode {
    pub on: bool,
    pub bcast: bool,
    pub optin: bool,
    pub optout: bool,
    pub noloop: bool,
    /// Client id invalidations go to (0: this client).
    pub redirect: u64,
    pub broken_redir: bool,
    /// BCAST prefixes, in the order given.
    pub prefixes: Vec<Vec<u8>>,
}

#[derive(Default)]
struct Bcast {
    clients: HashSet<u64>,
    /// Keys changed since the last broadcast -> id of the client that
    /// changed it last (0: the server itself).
    keys: BTreeMap<Vec<u8>, u64>,
}

/// The server's tracking tables (in `Stats`).
#[derive(Default)]
pub struct Table {
    keys: HashMap<Vec<u8>, HashSet<u64>>,
    items: usize,
    prefixes: BTreeMap<Vec<u8>, Bcast>,
}

thread_local! {
    /// The client whose command runs on this thread (0: none), for NOLOOP.
    static CURRENT: Cell<u64> = const { Cell::new(0) };
    /// The last non-zero `CURRENT` (see [`last_client`]).
    static LAST: Cell<u64> = const { Cell::new(0) };
    /// Invalidations for the running client itself, sent after its reply
    /// (Redis's tracking_pending_keys).
    static PENDING: std::cell::RefCell<Vec<(Arc<ClientHandle>, Vec<u8>)>> = const { std::cell::RefCell::new(Vec::new()) };
    /// Invalidations redirected to the running client by other tracking
    /// clients: Redis writes them into its reply buffer at once, ahead of
    /// the reply (FLUSHDB/FLUSHALL put them there, see [`take_inline`]);
    /// whatever is left goes out after the reply.
    static INLINE: std::cell::RefCell<Vec<(Arc<ClientHandle>, Push)>> = const { std::cell::RefCell::new(Vec::new()) };
    /// The running script called a read-only command (then its caller
    /// tracks the script's declared keys, as Redis does).
    static SCRIPT_READ: Cell<bool> = const { Cell::new(false) };
    /// Something may be in PENDING or INLINE (lets `end_command` skip both).
    static QUEUED: Cell<bool> = const { Cell::new(false) };
}

/// A command called by a script finished (instead of [`after_command`]):
/// the script's caller stays the current client for NOLOOP, and a read
/// makes the caller track the script's declared keys afterwards.
pub fn after_script_call(meta: &CommandMeta) {
    if meta.flags.has(Flags::READONLY) {
        SCRIPT_READ.with(|c| c.set(true));
    }
}

/// Dispatch: `id` starts running a command on this thread.
pub fn set_current(id: u64) {
    CURRENT.with(|c| c.set(id));
    if id != 0 {
        LAST.with(|c| c.set(id));
    }
}

/// The client whose command ran last on this thread (kept after the
/// command, unlike the NOLOOP one): its writes reach the replication
/// stream after the command (WAIT's per-client offset).
pub fn last_client() -> u64 {
    LAST.with(|c| c.get())
}

/// The running command's reply is out (or queued): send the invalidations
/// it produced for its own client, and forget the current client.
pub fn end_command(srv: &Server) {
    set_current(0);
    if !QUEUED.with(|q| q.replace(false)) {
        return;
    }
    for (dest, push) in INLINE.with(|p| std::mem::take(&mut *p.borrow_mut())) {
        let _ = dest.tx.send(push);
    }
    let pending = PENDING.with(|p| std::mem::take(&mut *p.borrow_mut()));
    for (target, key) in pending {
        send(srv, &target, Some(vec![Bytes::from(key)]));
    }
}

fn enabled(srv: &Server) -> bool {
    srv.stats.tracking_clients.load(Ordering::Relaxed) > 0
}

/// Recount the clients with tracking on (after a mode change), so the
/// count never drifts whatever order connections change and close in.
fn recount(srv: &Server) {
    let handles: Vec<Arc<ClientHandle>> = srv.clients.map.lock().values().cloned().collect();
    let n = handles.iter().filter(|h| h.tracking.lock().on).count();
    srv.stats.tracking_clients.store(n, Ordering::Relaxed);
}

fn lookup(srv: &Server, id: u64) -> Option<Arc<ClientHandle>> {
    srv.clients.map.lock().get(&id).cloned()
}

/// Redis's sendTrackingMessage: keys (None = null, after a flush) to
/// `target` or to the client it redirects to.
fn send(srv: &Server, target: &Arc<ClientHandle>, keys: Option<Vec<Bytes>>) {
    let redirect = target.tracking.lock().redirect;
    let (dest, redirected) = if redirect != 0 {
        match lookup(srv, redirect) {
            Some(h) => (h, true),
            None => {
                target.tracking.lock().broken_redir = true;
                if target.resp.load(Ordering::Relaxed) >= 3 {
                    let _ = target.tx.send(Push::RedirBroken(redirect));
                }
                return;
            }
        }
    } else {
        (target.clone(), false)
    };
    let resp3 = dest.resp.load(Ordering::Relaxed) >= 3;
    let subscribed = dest.sub.load(Ordering::Relaxed) + dest.psub.load(Ordering::Relaxed) > 0;
    if resp3 || (redirected && subscribed) {
        let push = match keys {
            // Redis writes the flush's null in the protocol of the tracking
            // client, even when the message goes to a redirect target
            // speaking the other one.
            None if redirected && (target.resp.load(Ordering::Relaxed) >= 3) != resp3 => {
                let mut b = ferrite_resp::ReplyBuf::new(resp3);
                if resp3 {
                    b.push(2);
                    b.bulk(b"invalidate");
                } else {
                    b.push(3);
                    b.bulk(b"message");
                    b.bulk(b"__redis__:invalidate");
                }
                b.raw(if resp3 { b"$-1\r\n" } else { b"_\r\n" });
                Push::Reply(b.buf.freeze())
            }
            keys => Push::Invalidate { keys, pubsub: !resp3 },
        };
        if redirected && dest.id == CURRENT.with(|c| c.get()) {
            INLINE.with(|p| p.borrow_mut().push((dest, push)));
            QUEUED.with(|q| q.set(true));
        } else {
            let _ = dest.tx.send(push);
        }
    }
}

/// Write the invalidations redirected to the running client so far into
/// its reply, ahead of the command's own reply, as Redis does.
pub fn take_inline(out: &mut ferrite_resp::ReplyBuf) {
    for (_, push) in INLINE.with(|p| std::mem::take(&mut *p.borrow_mut())) {
        crate::conn::encode_push(out, &push);
    }
}

/// Eviction before a command (Redis's performEvictions in processCommand):
/// invalidations for the calling client itself go into its reply buffer
/// ahead of the command's reply, as in Redis. Returns what eviction did.
pub fn evict_for(srv: &Server, client: &Client, out: &mut ferrite_resp::ReplyBuf) -> bool {
    set_current(client.id);
    let ok = crate::evict::perform_evictions(srv);
    set_current(0);
    let pending = PENDING.with(|p| std::mem::take(&mut *p.borrow_mut()));
    for (target, key) in pending {
        if target.id == client.id && target.tracking.lock().redirect == 0 {
            if client.resp3 {
                out.push(2);
                out.bulk(b"invalidate");
                out.array(1);
                out.bulk(&key);
            }
        } else {
            send(srv, &target, Some(vec![Bytes::from(key)]));
        }
    }
    ok
}

/// A key was changed by the running command: Redis's trackingInvalidateKey.
pub fn invalidate(srv: &Server, key: &[u8]) {
    invalidate_as(srv, key, false)
}

/// A key was deleted by the server itself (expiry, eviction): BCAST
/// clients in NOLOOP mode are told too, as in Redis.
pub fn invalidate_by_server(srv: &Server, key: &[u8]) {
    invalidate_as(srv, key, true)
}

fn invalidate_as(srv: &Server, key: &[u8], by_server: bool) {
    if !enabled(srv) {
        return;
    }
    let cur = CURRENT.with(|c| c.get());
    let modifier = if by_server { 0 } else { cur };
    let ids = {
        let mut t = srv.stats.tracking.lock();
        for (p, b) in t.prefixes.iter_mut() {
            if key.starts_with(p) {
                b.keys.insert(key.to_vec(), modifier);
            }
        }
        let ids = t.keys.remove(key);
        if let Some(ids) = &ids {
            t.items = t.items.saturating_sub(ids.len());
        }
        ids
    };
    if let Some(ids) = ids {
        for id in ids {
            let Some(target) = lookup(srv, id) else { continue };
            let m = target.tracking.lock().clone();
            if !m.on || m.bcast || (m.noloop && id == cur) {
                continue;
            }
            if id == cur {
                PENDING.with(|p| p.borrow_mut().push((target, key.to_vec())));
                QUEUED.with(|q| q.set(true));
            } else {
                send(srv, &target, Some(vec![Bytes::copy_from_slice(key)]));
            }
        }
    }
    // Outside any command (background expiry): broadcast right away.
    if cur == 0 {
        flush_bcast(srv);
    }
}

/// Send the keys collected for BCAST prefixes (Redis's
/// trackingBroadcastInvalidationMessages).
pub fn flush_bcast(srv: &Server) {
    if !enabled(srv) {
        return;
    }
    let batches: Vec<(Vec<u64>, BTreeMap<Vec<u8>, u64>)> = {
        let mut t = srv.stats.tracking.lock();
        t.prefixes
            .values_mut()
            .filter(|b| !b.keys.is_empty())
            .map(|b| (b.clients.iter().copied().collect(), std::mem::take(&mut b.keys)))
            .collect()
    };
    for (clients, keys) in batches {
        for id in clients {
            let Some(target) = lookup(srv, id) else { continue };
            let noloop = target.tracking.lock().noloop;
            let list: Vec<Bytes> =
                keys.iter().filter(|(_, by)| !(noloop && **by == id)).map(|(k, _)| Bytes::copy_from_slice(k)).collect();
            if !list.is_empty() {
                send(srv, &target, Some(list));
            }
        }
    }
}

/// FLUSHALL / FLUSHDB: a null invalidation to every tracking client, and
/// the key table is emptied.
pub fn flush(srv: &Server) {
    if !enabled(srv) {
        return;
    }
    {
        let mut t = srv.stats.tracking.lock();
        t.keys.clear();
        t.items = 0;
    }
    let clients: Vec<Arc<ClientHandle>> = srv.clients.map.lock().values().cloned().collect();
    for c in clients {
        if c.tracking.lock().on {
            send(srv, &c, None);
        }
    }
}

/// After a command: remember the keys a tracking client read, send BCAST
/// invalidations, and end the CLIENT CACHING window.
pub fn after_command(srv: &Server, client: &mut Client, meta: &CommandMeta, args: &[Bytes], in_exec: bool) {
    end_command(srv);
    let script_read = SCRIPT_READ.with(|c| c.replace(false));
    if !enabled(srv) {
        return;
    }
    // EVAL_RO & co are read-only commands, but only their scripts' reads
    // track keys (the declared keys).
    let ro_script = matches!(meta.name.as_str(), "eval_ro" | "evalsha_ro" | "fcall_ro");
    let read = (meta.flags.has(Flags::READONLY) && !ro_script) || script_read;
    if client.tracking && read && !meta.flags.has(Flags::PUBSUB) {
        let m = client.handle.tracking.lock().clone();
        let caching = client.tracking_caching;
        if m.on && !m.bcast && !((m.optin && !caching) || (m.optout && caching)) {
            if let Ok(pos) = ferrite_commands::get_keys(meta, args) {
                let mut t = srv.stats.tracking.lock();
                for p in pos {
                    if t.keys.entry(args[p].to_vec()).or_default().insert(client.id) {
                        t.items += 1;
                    }
                }
            }
        }
    }
    if !in_exec && client.multi.is_none() && !meta.name.starts_with("client") {
        client.tracking_caching = false;
    }
    // Inside EXEC the whole transaction's keys go out together afterwards.
    if !in_exec {
        flush_bcast(srv);
        limit_table(srv);
    }
}

/// Redis's trackingLimitUsedSlots: drop keys (sending their invalidation)
/// while the table holds more than `tracking-table-max-keys` keys.
fn limit_table(srv: &Server) {
    let max = MAX_KEYS.load(Ordering::Relaxed) as usize;
    if max == 0 {
        return;
    }
    for _ in 0..1000 {
        let key = {
            let t = srv.stats.tracking.lock();
            if t.keys.len() <= max {
                return;
            }
            match t.keys.keys().next() {
                Some(k) => k.clone(),
                None => return,
            }
        };
        invalidate_by_server(srv, &key);
    }
}

/// Stop tracking for a client (CLIENT TRACKING off, RESET, disconnect).
pub fn disable(srv: &Server, client: &mut Client) {
    client.tracking = false;
    client.tracking_caching = false;
    let old = std::mem::take(&mut *client.handle.tracking.lock());
    if !old.on {
        return;
    }
    recount(srv);
    if old.bcast {
        let mut t = srv.stats.tracking.lock();
        for p in &old.prefixes {
            let empty = match t.prefixes.get_mut(p) {
                Some(b) => {
                    b.clients.remove(&client.id);
                    b.clients.is_empty()
                }
                None => false,
            };
            if empty {
                t.prefixes.remove(p);
            }
        }
    }
}

/// INFO: (tracking_total_keys, tracking_total_items, tracking_total_prefixes).
pub fn totals(srv: &Server) -> (usize, usize, usize) {
    let t = srv.stats.tracking.lock();
    (t.keys.len(), t.items, t.prefixes.len())
}

/// CLIENT TRACKING on|off [REDIRECT id] [PREFIX p ...] [BCAST] [OPTIN]
/// [OPTOUT] [NOLOOP]
pub fn tracking_cmd(cx: &mut Cx) -> CmdResult {
    let (mut redir, mut bcast, mut optin, mut optout, mut noloop) = (0i64, false, false, false, false);
    let mut prefixes: Vec<Vec<u8>> = Vec::new();
    let mut j = 3;
    while j < cx.argc() {
        let a = cx.arg(j);
        let more = cx.argc() - 1 - j;
        if eq_ic(a, b"redirect") && more > 0 {
            j += 1;
            if redir != 0 {
                return Err(CmdError::err("A client can only redirect to a single other client"));
            }
            redir = cx.int_arg(j)?;
            if redir <= 0 || lookup(cx.srv, redir as u64).is_none() {
                return Err(CmdError::err("The client ID you want redirect to does not exist"));
            }
        } else if eq_ic(a, b"bcast") {
            bcast = true;
        } else if eq_ic(a, b"optin") {
            optin = true;
        } else if eq_ic(a, b"optout") {
            optout = true;
        } else if eq_ic(a, b"noloop") {
            noloop = true;
        } else if eq_ic(a, b"prefix") && more > 0 {
            j += 1;
            prefixes.push(cx.arg(j).to_vec());
        } else {
            return Err(SYNTAX);
        }
        j += 1;
    }
    let onoff = cx.arg(2);
    if eq_ic(onoff, b"off") {
        disable(cx.srv, cx.client);
        cx.out.ok();
        return Ok(());
    }
    if !eq_ic(onoff, b"on") {
        return Err(SYNTAX);
    }
    if !bcast && !prefixes.is_empty() {
        return Err(CmdError::err("PREFIX option requires BCAST mode to be enabled"));
    }
    let cur = cx.client.handle.tracking.lock().clone();
    if cur.on && cur.bcast != bcast {
        return Err(CmdError::err(
            "You can't switch BCAST mode on/off before disabling tracking for this client, and then re-enabling it with a different mode.",
        ));
    }
    if bcast && (optin || optout) {
        return Err(CmdError::err("OPTIN and OPTOUT are not compatible with BCAST"));
    }
    if optin && optout {
        return Err(CmdError::err("You can't specify both OPTIN mode and OPTOUT mode"));
    }
    if (optin && cur.optout) || (optout && cur.optin) {
        return Err(CmdError::err(
            "You can't switch OPTIN/OPTOUT mode before disabling tracking for this client, and then re-enabling it with a different mode.",
        ));
    }
    if bcast {
        for (i, p) in prefixes.iter().enumerate() {
            for old in &cur.prefixes {
                if old.starts_with(p) || p.starts_with(old) {
                    return Err(CmdError::err(format!(
                        "Prefix '{}' overlaps with an existing prefix '{}'. Prefixes for a single client must not overlap.",
                        String::from_utf8_lossy(p),
                        String::from_utf8_lossy(old)
                    )));
                }
            }
            for q in &prefixes[i + 1..] {
                if q.starts_with(p) || p.starts_with(q) {
                    return Err(CmdError::err(format!(
                        "Prefix '{}' overlaps with another provided prefix '{}'. Prefixes for a single client must not overlap.",
                        String::from_utf8_lossy(p),
                        String::from_utf8_lossy(q)
                    )));
                }
            }
        }
    }
    let id = cx.client.id;
    let mut new_prefixes = cur.prefixes.clone();
    if bcast {
        if prefixes.is_empty() {
            prefixes.push(Vec::new());
        }
        let mut t = cx.srv.stats.tracking.lock();
        for p in prefixes {
            t.prefixes.entry(p.clone()).or_default().clients.insert(id);
            if !new_prefixes.contains(&p) {
                new_prefixes.push(p);
            }
        }
    }
    *cx.client.handle.tracking.lock() = Mode {
        on: true,
        bcast,
        optin,
        optout,
        noloop,
        redirect: redir as u64,
        broken_redir: false,
        prefixes: new_prefixes,
    };
    cx.client.tracking = true;
    recount(cx.srv);
    cx.out.ok();
    Ok(())
}

pub fn caching_cmd(cx: &mut Cx) -> CmdResult {
    let m = cx.client.handle.tracking.lock().clone();
    if !m.on {
        return Err(CmdError::err(
            "CLIENT CACHING can be called only when the client is in tracking mode with OPTIN or OPTOUT mode enabled",
        ));
    }
    let a = cx.arg(2);
    if eq_ic(a, b"yes") {
        if !m.optin {
            return Err(CmdError::err("CLIENT CACHING YES is only valid when tracking is enabled in OPTIN mode."));
        }
    } else if eq_ic(a, b"no") {
        if !m.optout {
            return Err(CmdError::err("CLIENT CACHING NO is only valid when tracking is enabled in OPTOUT mode."));
        }
    } else {
        return Err(SYNTAX);
    }
    cx.client.tracking_caching = true;
    cx.out.ok();
    Ok(())
}

pub fn getredir_cmd(cx: &mut Cx) -> CmdResult {
    let m = cx.client.handle.tracking.lock().clone();
    cx.out.int(if m.on { m.redirect as i64 } else { -1 });
    Ok(())
}

pub fn trackinginfo_cmd(cx: &mut Cx) -> CmdResult {
    let m = cx.client.handle.tracking.lock().clone();
    let caching = cx.client.tracking_caching;
    let mut flags: Vec<&str> = vec![if m.on { "on" } else { "off" }];
    if m.bcast {
        flags.push("bcast");
    }
    if m.optin {
        flags.push("optin");
        if caching {
            flags.push("caching-yes");
        }
    }
    if m.optout {
        flags.push("optout");
        if caching {
            flags.push("caching-no");
        }
    }
    if m.noloop {
        flags.push("noloop");
    }
    if m.broken_redir {
        flags.push("broken_redirect");
    }
    cx.out.map(3);
    cx.out.bulk(b"flags");
    cx.out.set(flags.len());
    for f in flags {
        cx.out.bulk(f.as_bytes());
    }
    cx.out.bulk(b"redirect");
    cx.out.int(if m.on { m.redirect as i64 } else { -1 });
    cx.out.bulk(b"prefixes");
    let mut prefixes = m.prefixes.clone();
    prefixes.sort();
    cx.out.array(prefixes.len());
    for p in &prefixes {
        cx.out.bulk(p);
    }
    Ok(())
}
