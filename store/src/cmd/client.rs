//! CLIENT subcommands.
//!
//! CLIENT LIST / INFO use Redis 7.0's line format. Fields Ferrite does not
//! track per connection are reported as follows: qbuf and argv-mem = the
//! size of the current command for the caller (for other connections: the
//! unexecuted bytes buffered and the arguments of a command still arriving),
//! qbuf-free = the rest of the read buffer (for the caller: 16384 minus qbuf), rbs = 16384,
//! omem = pushed output not yet written (`obuf`), multi-mem = MULTI queue and
//! watched keys, obl/oll = 0, rbp = 0, tot-mem = the connection's memory as
//! `client::account` records it (what `maxmemory-clients` counts), events=r. For other connections `cmd=` is the last top-level
//! command name (subcommands are not recorded); for the calling client it
//! is the current command, as in Redis.
//!
//! PAUSE/UNPAUSE hold commands in the connection loop (see `conn.rs`);
//! UNBLOCK wakes a blocked client. TRACKING, CACHING, GETREDIR and
//! TRACKINGINFO are in `tracking.rs`.

use super::{eq_ic, CmdError, CmdImpl, CmdResult, Cx, Lock, SYNTAX};

#[path = "tracking.rs"]
pub mod tracking;
use crate::client::ClientHandle;
use std::fmt::Write as _;
use std::sync::atomic::Ordering;

pub static COMMANDS: &[CmdImpl] = &[CmdImpl { name: "client", handler: client, lock: Lock::None }];

const CLIENT_HELP: &[&str] = &[
    "CLIENT <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
    "CACHING (YES|NO)",
    "    Enable/disable tracking of the keys for next command in OPTIN/OPTOUT modes.",
    "GETREDIR",
    "    Return the client ID we are redirecting to when tracking is enabled.",
    "GETNAME",
    "    Return the name of the current connection.",
    "ID",
    "    Return the ID of the current connection.",
    "INFO",
    "    Return information about the current client connection.",
    "KILL <ip:port>",
    "    Kill connection made from <ip:port>.",
    "KILL <option> <value> [<option> <value> [...]]",
    "    Kill connections. Options are:",
    "    * ADDR (<ip:port>|<unixsocket>:0)",
    "      Kill connections made from the specified address",
    "    * LADDR (<ip:port>|<unixsocket>:0)",
    "      Kill connections made to specified local address",
    "    * TYPE (NORMAL|MASTER|REPLICA|PUBSUB)",
    "      Kill connections by type.",
    "    * USER <username>",
    "      Kill connections authenticated by <username>.",
    "    * SKIPME (YES|NO)",
    "      Skip killing current connection (default: yes).",
    "LIST [options ...]",
    "    Return information about client connections. Options:",
    "    * TYPE (NORMAL|MASTER|REPLICA|PUBSUB)",
    "      Return clients of specified type.",
    "UNPAUSE",
    "    Stop the current client pause, resuming traffic.",
    "PAUSE <timeout> [WRITE|ALL]",
    "    Suspend all, or just write, clients for <timeout> milliseconds.",
    "REPLY (ON|OFF|SKIP)",
    "    Control the replies sent to the current connection.",
    "SETNAME <name>",
    "    Assign the name <name> to the current connection.",
    "UNBLOCK <clientid> [TIMEOUT|ERROR]",
    "    Unblock the specified blocked client.",
    "TRACKING (ON|OFF) [REDIRECT <id>] [BCAST] [PREFIX <prefix> [...]]",
    "         [OPTIN] [OPTOUT] [NOLOOP]",
    "    Control server assisted client side caching.",
    "TRACKINGINFO",
    "    Report tracking status for the current connection.",
    "NO-EVICT (ON|OFF)",
    "    Protect current client connection from eviction.",
    "HELP",
    "    Prints this help.",
];

/// Redis client types as used by LIST TYPE and KILL TYPE.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Type {
    Normal,
    Replica,
    PubSub,
    Master,
}

fn parse_type(b: &[u8]) -> Result<Type, CmdError> {
    let t = if eq_ic(b, b"normal") {
        Type::Normal
    } else if eq_ic(b, b"slave") || eq_ic(b, b"replica") {
        Type::Replica
    } else if eq_ic(b, b"pubsub") {
        Type::PubSub
    } else if eq_ic(b, b"master") {
        Type::Master
    } else {
        return Err(CmdError::err(format!("Unknown client type '{}'", String::from_utf8_lossy(b))));
    };
    Ok(t)
}

fn type_of(srv: &crate::server::Server, h: &ClientHandle) -> Type {
    if srv.repl.is_replica(h.id) {
        return Type::Replica;
    }
    let subs = h.sub.load(Ordering::Relaxed) + h.psub.load(Ordering::Relaxed) + h.ssub.load(Ordering::Relaxed);
    if subs > 0 {
        Type::PubSub
    } else {
        Type::Normal
    }
}

/// Read buffer size a connection starts with (conn.rs READ_CHUNK).
const READ_CHUNK: u64 = 16 * 1024;

/// One CLIENT LIST line (without the trailing newline). `cur_cmd` is the
/// full name of the command being executed when `h` is the caller.
fn client_line(cx: &Cx, h: &ClientHandle, cur_cmd: Option<&str>, s: &mut String) {
    let me = cur_cmd.is_some();
    let name = h.name.lock().clone().unwrap_or_default();
    let age = h.created.elapsed().as_secs();
    let idle =
        if me { 0 } else { cx.srv.uptime_ms().saturating_sub(h.last_interaction_ms.load(Ordering::Relaxed)) / 1000 };
    let mut flags = String::new();
    if h.monitor.load(Ordering::Relaxed) {
        flags.push('O');
    }
    let ty = type_of(cx.srv, h);
    if ty == Type::Replica {
        flags.push('S');
    }
    if ty == Type::PubSub {
        flags.push('P');
    }
    let multi = h.multi.load(Ordering::Relaxed);
    if multi >= 0 {
        flags.push('x');
    }
    if h.blocked.load(Ordering::Relaxed) {
        flags.push('b');
    }
    if me && cx.client.close_after_reply {
        flags.push('c');
    }
    // A Unix domain socket client (its address is the socket's path).
    if h.addr.starts_with('/') {
        flags.push('U');
    }
    if h.no_evict.load(Ordering::Relaxed) {
        flags.push('e');
    }
    if flags.is_empty() {
        flags.push('N');
    }
    let cmd = match cur_cmd {
        Some(c) => c.to_string(),
        None => h.last_cmd.lock().to_string(),
    };
    let user = h.user.lock().clone();
    // For the caller, the command being executed is still in the query
    // buffer (its RESP size) and in argv (its argument bytes), as in Redis.
    let os = &h.tx.out;
    let (qbuf, argv_mem) = if me {
        let argv: u64 = cx.args.iter().map(|a| a.len() as u64).sum();
        let framing: u64 = cx.args.iter().map(|a| 5 + digits(a.len()) as u64).sum();
        (3 + digits(cx.args.len()) as u64 + framing + argv, argv)
    } else {
        (os.qbuf() as u64, os.argv_mem() as u64)
    };
    let omem = os.omem() as u64;
    let multi_mem = os.multi_mem() as u64;
    // Recorded memory, with this client's own current command instead of what was recorded.
    let tot_mem = if me {
        (os.tot_mem() as u64).saturating_sub((os.qbuf_mem() + os.argv_mem()) as u64) + qbuf + argv_mem
    } else {
        os.tot_mem() as u64
    };
    let _ = write!(
        s,
        "id={} addr={} laddr={} fd={} name={} age={} idle={} flags={} db={} sub={} psub={} ssub={} multi={} \
         qbuf={} qbuf-free={} argv-mem={} multi-mem={} rbs={} rbp=0 obl=0 oll=0 omem={} tot-mem={} events=r cmd={} \
         user={} redir=-1 resp={}",
        h.id,
        h.addr,
        h.laddr,
        h.fd,
        String::from_utf8_lossy(&name),
        age,
        idle,
        flags,
        h.db.load(Ordering::Relaxed),
        h.sub.load(Ordering::Relaxed),
        h.psub.load(Ordering::Relaxed),
        h.ssub.load(Ordering::Relaxed),
        multi,
        qbuf,
        if me { READ_CHUNK.saturating_sub(qbuf) } else { (os.qbuf_cap() as u64).saturating_sub(qbuf) },
        argv_mem,
        multi_mem,
        READ_CHUNK,
        omem,
        tot_mem,
        cmd,
        user,
        h.resp.load(Ordering::Relaxed),
    );
}

fn digits(n: usize) -> usize {
    n.checked_ilog10().map_or(1, |d| d as usize + 1)
}

/// The caller's current command as Redis names it (`client|list`).
fn current_cmd(cx: &Cx) -> String {
    let mut n = cx.cmd.meta.name.clone();
    if !cx.cmd.meta.subcommands.is_empty() && cx.argc() > 1 {
        n.push('|');
        n.push_str(&String::from_utf8_lossy(cx.arg(1)).to_ascii_lowercase());
    }
    n
}

fn client(cx: &mut Cx) -> CmdResult {
    let sub = String::from_utf8_lossy(cx.arg(1)).to_ascii_lowercase();
    match sub.as_str() {
        "id" => {
            cx.out.int(cx.client.id as i64);
            Ok(())
        }
        "setname" => setname(cx),
        "getname" => {
            let n = cx.client.handle.name.lock().clone();
            match n {
                Some(n) => cx.out.bulk(&n),
                None => cx.out.null(),
            }
            Ok(())
        }
        "list" => list(cx),
        "info" => {
            let mut s = String::new();
            let cur = current_cmd(cx);
            let h = cx.client.handle.clone();
            client_line(cx, &h, Some(&cur), &mut s);
            s.push('\n');
            cx.out.verbatim(b"txt", s.as_bytes());
            Ok(())
        }
        "kill" => kill(cx),
        "reply" => reply(cx),
        "no-evict" => {
            let a = cx.arg(2);
            let on = if eq_ic(a, b"on") {
                true
            } else if eq_ic(a, b"off") {
                false
            } else {
                return Err(SYNTAX);
            };
            cx.client.handle.no_evict.store(on, Ordering::Relaxed);
            crate::client::eviction_rules_changed();
            cx.out.ok();
            Ok(())
        }
        "tracking" => tracking::tracking_cmd(cx),
        "getredir" => tracking::getredir_cmd(cx),
        "trackinginfo" => tracking::trackinginfo_cmd(cx),
        "caching" => tracking::caching_cmd(cx),
        "help" => {
            super::server::reply_help(cx, CLIENT_HELP);
            Ok(())
        }
        "pause" => {
            let t =
                super::parse_int(cx.arg(2)).map_err(|_| CmdError::err("timeout is not an integer or out of range"))?;
            if t < 0 {
                return Err(CmdError::err("timeout is negative"));
            }
            let all = match cx.args.get(3) {
                None => true,
                Some(m) if eq_ic(m, b"ALL") => true,
                Some(m) if eq_ic(m, b"WRITE") => false,
                Some(_) => return Err(CmdError::err("CLIENT PAUSE mode must be WRITE or ALL")),
            };
            if cx.argc() > 4 {
                return Err(SYNTAX);
            }
            cx.srv.pause_clients(cx.ks.now.saturating_add(t), all);
            cx.out.ok();
            Ok(())
        }
        "unpause" => {
            cx.srv.unpause_clients();
            cx.out.ok();
            Ok(())
        }
        "unblock" => {
            let id = super::parse_int(cx.arg(2))?;
            let error = match cx.args.get(3) {
                None => false,
                Some(m) if eq_ic(m, b"TIMEOUT") => false,
                Some(m) if eq_ic(m, b"ERROR") => true,
                Some(_) => {
                    return Err(CmdError::err("CLIENT UNBLOCK reason should be TIMEOUT or ERROR"));
                }
            };
            let target = cx.srv.clients.map.lock().get(&(id as u64)).cloned();
            match target {
                Some(h) if h.blocked.load(Ordering::Relaxed) => {
                    let _ = h.tx.send(crate::client::Push::Unblock { error });
                    if error {
                        // Redis counts a call that caused an error reply
                        // (here the target's) as failed.
                        cx.srv.stats.failed_call("client|unblock");
                    }
                    cx.out.int(1);
                }
                _ => cx.out.int(0),
            }
            Ok(())
        }
        other => Err(CmdError::err(format!("CLIENT {} is not supported by Ferrite", other.to_ascii_uppercase()))),
    }
}

fn setname(cx: &mut Cx) -> CmdResult {
    let name = cx.arg(2);
    if name.iter().any(|&c| !(b'!'..=b'~').contains(&c)) {
        return Err(CmdError::err("Client names cannot contain spaces, newlines or special characters."));
    }
    *cx.client.handle.name.lock() = if name.is_empty() { None } else { Some(bytes::Bytes::copy_from_slice(name)) };
    cx.out.ok();
    Ok(())
}

/// Bytes a socket received that its connection has not read yet.
fn unread_bytes(fd: i32) -> usize {
    let mut n: libc::c_int = 0;
    // SAFETY: FIONREAD writes one c_int; a closed or reused fd only gives an error or another count.
    let r = unsafe { libc::ioctl(fd, libc::FIONREAD, &mut n) };
    if r == 0 {
        n.max(0) as usize
    } else {
        0
    }
}

/// Before CLIENT LIST describes other connections, let them read what
/// their clients already sent (at most 20 ms): Redis, single-threaded,
/// reads every ready socket in the event-loop iteration that serves CLIENT
/// LIST, so a client's input sent before CLIENT LIST shows in its qbuf /
/// tot-mem (and counts for maxmemory-clients). Blocked, killed and writing
/// connections do not read, so they are not waited for.
fn settle_input(srv: &crate::server::Server, me: u64) {
    if srv.paused.load(Ordering::Relaxed) {
        return;
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_millis(20);
    loop {
        let pending = srv.clients.snapshot().iter().any(|h| {
            h.id != me
                && h.fd >= 0
                && !h.blocked.load(Ordering::Relaxed)
                && !h.killed.load(Ordering::Relaxed)
                && !h.tx.out.is_writing()
                && unread_bytes(h.fd) > 0
        });
        if !pending || std::time::Instant::now() >= deadline {
            return;
        }
        crate::script::long_running(|| std::thread::sleep(std::time::Duration::from_millis(1)));
    }
}

fn list(cx: &mut Cx) -> CmdResult {
    settle_input(cx.srv, cx.client.id);
    let mut ty: Option<Type> = None;
    let mut ids: Option<Vec<u64>> = None;
    if cx.argc() == 4 && eq_ic(cx.arg(2), b"type") {
        ty = Some(parse_type(cx.arg(3))?);
    } else if cx.argc() > 3 && eq_ic(cx.arg(2), b"id") {
        let mut v = Vec::new();
        for i in 3..cx.argc() {
            match ferrite_resp::num::parse_i64(cx.arg(i)) {
                Some(n) => v.push(n as u64),
                None => return Err(CmdError::err("Invalid client ID")),
            }
        }
        ids = Some(v);
    } else if cx.argc() != 2 {
        return Err(SYNTAX);
    }
    let cur = current_cmd(cx);
    let mut all = cx.srv.clients.snapshot();
    all.retain(|h| !h.killed.load(Ordering::Relaxed));
    let chosen: Vec<_> = match &ids {
        Some(ids) => ids.iter().filter_map(|id| all.iter().find(|h| h.id == *id).cloned()).collect(),
        None => all.into_iter().filter(|h| ty.is_none_or(|t| type_of(cx.srv, h) == t)).collect(),
    };
    let mut s = String::new();
    for h in chosen {
        let me = h.id == cx.client.id;
        client_line(cx, &h, me.then_some(cur.as_str()), &mut s);
        s.push('\n');
    }
    cx.out.verbatim(b"txt", s.as_bytes());
    Ok(())
}

fn reply(cx: &mut Cx) -> CmdResult {
    let a = cx.arg(2);
    if eq_ic(a, b"on") {
        cx.client.reply_off = false;
        cx.client.reply_skip = false;
        cx.client.reply_skip_now = false;
        cx.out.ok();
    } else if eq_ic(a, b"off") {
        cx.client.reply_off = true;
    } else if eq_ic(a, b"skip") {
        if !cx.client.reply_off {
            cx.client.reply_skip = true;
        }
    } else {
        return Err(SYNTAX);
    }
    Ok(())
}

fn kill(cx: &mut Cx) -> CmdResult {
    let mut addr: Option<&[u8]> = None;
    let mut laddr: Option<&[u8]> = None;
    let mut user: Option<&[u8]> = None;
    let mut id: Option<u64> = None;
    let mut ty: Option<Type> = None;
    let mut skipme = true;
    let old_form = cx.argc() == 3;
    if old_form {
        addr = Some(cx.arg(2));
        skipme = false;
    } else {
        let mut i = 2;
        while i < cx.argc() {
            let opt = cx.arg(i);
            if i + 1 >= cx.argc() {
                return Err(SYNTAX);
            }
            let v = cx.arg(i + 1);
            if eq_ic(opt, b"id") {
                match ferrite_resp::num::parse_i64(v) {
                    Some(n) if n >= 1 => id = Some(n as u64),
                    _ => return Err(CmdError::err("client-id should be greater than 0")),
                }
            } else if eq_ic(opt, b"type") {
                ty = Some(parse_type(v)?);
            } else if eq_ic(opt, b"addr") {
                addr = Some(v);
            } else if eq_ic(opt, b"laddr") {
                laddr = Some(v);
            } else if eq_ic(opt, b"user") {
                if cx.srv.acl.get(v).is_none() {
                    return Err(CmdError::err(format!("No such user '{}'", String::from_utf8_lossy(v))));
                }
                user = Some(v);
            } else if eq_ic(opt, b"skipme") {
                if eq_ic(v, b"yes") {
                    skipme = true;
                } else if eq_ic(v, b"no") {
                    skipme = false;
                } else {
                    return Err(SYNTAX);
                }
            } else {
                return Err(SYNTAX);
            }
            i += 2;
        }
    }
    let mut killed = 0i64;
    for h in cx.srv.clients.snapshot() {
        // Already killed, just not unregistered yet.
        if h.killed.load(Ordering::Relaxed) {
            continue;
        }
        if addr.is_some_and(|a| a != h.addr.as_bytes())
            || laddr.is_some_and(|a| a != h.laddr.as_bytes())
            || ty.is_some_and(|t| t != type_of(cx.srv, &h))
            || id.is_some_and(|i| i != h.id)
            || user.is_some_and(|u| u != h.user.lock().as_bytes())
        {
            continue;
        }
        if h.id == cx.client.id {
            if skipme {
                continue;
            }
            cx.client.close_after_reply = true;
        } else {
            h.kill();
        }
        killed += 1;
    }
    // A replica's master connection (not in the client table).
    if id.is_none()
        && user.is_none()
        && ty.is_none_or(|t| t == Type::Master)
        && crate::persist::replica::kill_master_link(cx.srv, addr, laddr)
    {
        killed += 1;
    }
    if old_form {
        if killed == 0 {
            return Err(CmdError::err("No such client"));
        }
        cx.out.ok();
    } else {
        cx.out.int(killed);
    }
    Ok(())
}

/// Close clients idle for longer than the `timeout` setting (seconds, 0 =
/// never), as Redis's clientsCron does. Subscribers and MONITOR clients
/// are exempt, like Redis's pub/sub and replica connections. Called by the
/// server's background task.
pub fn close_idle_clients(srv: &crate::server::Server) {
    let timeout = srv.config.read().timeout;
    if timeout == 0 {
        return;
    }
    let now = srv.uptime_ms();
    let limit = timeout.saturating_mul(1000);
    for h in srv.clients.snapshot() {
        // Like Redis: pub/sub, replica, MONITOR and blocked clients are not timed out
        // (a blocked client has its own timeout).
        if matches!(type_of(srv, &h), Type::PubSub | Type::Replica)
            || h.monitor.load(Ordering::Relaxed)
            || h.blocked.load(Ordering::Relaxed)
        {
            continue;
        }
        if now.saturating_sub(h.last_interaction_ms.load(Ordering::Relaxed)) > limit {
            h.kill();
        }
    }
}

/// INFO commandstats lines (`cmdstat_<name>:calls=...`), sorted by name.
pub fn commandstats(srv: &crate::server::Server, s: &mut String) {
    use std::fmt::Write as _;
    let m = srv.stats.cmds.read();
    let mut names: Vec<&String> = m.keys().collect();
    names.sort();
    for n in names {
        let c = &m[n];
        let calls = c.calls();
        let usec = c.usec();
        let rejected = c.rejected.load(Ordering::Relaxed);
        let failed = c.failed();
        if calls == 0 && rejected == 0 && failed == 0 {
            continue;
        }
        let per = if calls == 0 { 0.0 } else { usec as f64 / calls as f64 };
        let _ = write!(
            s,
            "cmdstat_{n}:calls={calls},usec={usec},usec_per_call={per:.2},rejected_calls={rejected},failed_calls={failed}\r\n"
        );
    }
}

/// INFO errorstats lines (`errorstat_<CODE>:count=N`), sorted by code.
pub fn errorstats(srv: &crate::server::Server, s: &mut String) {
    use std::fmt::Write as _;
    let m = srv.stats.errors.lock();
    let mut codes: Vec<(&String, &u64)> = m.iter().collect();
    codes.sort();
    for (code, n) in codes {
        let _ = write!(s, "errorstat_{code}:count={n}\r\n");
    }
}
