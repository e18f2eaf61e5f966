//! Replication commands: SYNC, PSYNC, REPLCONF, WAIT, ROLE (master side:
//! state and stream in `persist::repl`) and REPLICAOF / SLAVEOF (ferrite as
//! a replica: `persist::replica`).

use super::{CmdError, CmdImpl, CmdResult, Cx, Lock, NOT_INT, SYNTAX};
use crate::keyspace::SHARDS;
use crate::persist::snapshot::{write_image, LruMode};
use ferrite_resp::num::parse_i64;
use std::sync::atomic::Ordering;

pub static COMMANDS: &[CmdImpl] = &[
    CmdImpl { name: "sync", handler: sync, lock: Lock::All },
    CmdImpl { name: "psync", handler: sync, lock: Lock::All },
    CmdImpl { name: "replconf", handler: replconf, lock: Lock::None },
    CmdImpl { name: "wait", handler: wait, lock: Lock::None },
    CmdImpl { name: "role", handler: role, lock: Lock::None },
    // Exclusive: the link thread applies the stream under the same lock, so
    // nothing from the old master lands after REPLICAOF returns.
    CmdImpl { name: "replicaof", handler: replicaof, lock: Lock::All },
    CmdImpl { name: "slaveof", handler: replicaof, lock: Lock::All },
    CmdImpl { name: "failover", handler: failover, lock: Lock::None },
];

/// REPLICAOF host port | NO ONE (Redis's replicaofCommand).
fn replicaof(cx: &mut Cx) -> CmdResult {
    use crate::persist::replica;
    let (host, port) = (cx.arg(1), cx.arg(2));
    if cx.srv.repl.failover.lock().state != crate::persist::repl::NO_FAILOVER {
        return Err(CmdError::err("REPLICAOF not allowed while failing over."));
    }
    if eq_ic(host, b"no") && eq_ic(port, b"one") {
        replica::unset_master(cx.srv);
        let _ = crate::cmd::config::oom_update(cx.srv); // oom-score-adj: back to the master class
        cx.out.ok();
        return Ok(());
    }
    if cx.srv.repl.is_replica(cx.client.id) {
        return Err(CmdError::err("Command is not valid when client is a replica."));
    }
    let port = match parse_i64(port) {
        Some(p @ 0..=65535) => p as u16,
        _ => return Err(CmdError::err("Invalid master port")),
    };
    let Some(me) = cx.srv.persist.me.get().and_then(|w| w.upgrade()) else {
        return Err(CmdError::err("server is shutting down"));
    };
    let host = String::from_utf8_lossy(host).into_owned();
    if replica::set_master(&me, &host, port) {
        cx.out.simple(b"OK Already connected to specified master");
    } else {
        cx.out.ok();
    }
    let _ = crate::cmd::config::oom_update(cx.srv); // oom-score-adj: the replica class
    Ok(())
}

fn eq_ic(a: &[u8], b: &[u8]) -> bool {
    a.eq_ignore_ascii_case(b)
}

/// SYNC / PSYNC: a partial resynchronization from the backlog when PSYNC
/// names our replication id and an offset still in it, else a full one. The reply (FULLRESYNC
/// line for PSYNC, then `$<len>\r\n<rdb>`) and then the stream go through
/// the client's push channel; the connection's own replies are switched off
/// (Redis does not answer a replica's commands).
fn sync(cx: &mut Cx) -> CmdResult {
    let psync = eq_ic(cx.arg(0), b"psync");
    if psync && parse_i64(cx.arg(2)).is_none() {
        return Err(NOT_INT);
    }
    let srv = cx.srv;
    let id = cx.client.id;
    if srv.repl.is_replica(id) {
        // Already a replica: ignored, as Redis.
        return Ok(());
    }
    // `PSYNC <replid> <offset> FAILOVER`: our master hands over to us (its
    // FAILOVER command); it must be continuing our own history.
    if psync && cx.argc() > 3 && eq_ic(cx.arg(3), b"failover") {
        if cx.arg(1) != srv.repl.replid().as_bytes() {
            return Err(CmdError::err("PSYNC FAILOVER replid must match my replid."));
        }
        crate::persist::replica::unset_master(srv);
        eprintln!("ferrite: MASTER MODE enabled (failover request from '{}')", cx.client.handle.addr);
    }
    // A replica serves SYNC only while its own link is up (Redis).
    if srv.repl.replica.snapshot().is_some_and(|m| m.link != crate::persist::replica::LinkState::Connected) {
        return Err(CmdError::st("NOMASTERLINK Can't SYNC while not connected with my master"));
    }
    let addr = cx.client.handle.addr.clone();
    let tx = cx.client.handle.tx.clone();
    if psync && cx.arg(1) != b"?" {
        // Continue from the backlog if it still holds what the replica lacks.
        let off = parse_i64(cx.arg(2)).unwrap_or(-1);
        if srv.repl.try_continue(id, &addr, &tx, cx.arg(1), off) {
            cx.client.reply_off = true;
            return Ok(());
        }
        srv.repl.sync_partial_err.fetch_add(1, Ordering::Relaxed);
    }
    let header = |replid: &str, off: i64| {
        if psync {
            format!("+FULLRESYNC {replid} {off}\r\n").into_bytes()
        } else {
            Vec::new()
        }
    };
    let me = srv.persist.me.get().and_then(|w| w.upgrade());
    srv.repl.create_backlog();
    // Disk-based, as Redis: a background save to `dir/dbfilename` started
    // now (this command holds the exclusive lock, so the replica's stream
    // starts exactly at the snapshot's instant); the file is sent when the
    // save ends. If a save is already running, the image is made now,
    // under the lock, in memory.
    // REPLCONF rdb-filter-only: an image without keys (functions or nothing), made now.
    let filter = srv.repl.take_rdb_filter(id);
    let attached = if let Some(functions) = filter {
        let code = if functions { crate::script::function_dump_codes(srv) } else { Vec::new() };
        let mut image = Vec::new();
        let r = write_image(&mut image, true, LruMode::of(srv), false, 0, &code, srv.repl.rdb_info(), |_, _| {});
        if let Err(e) = r {
            return Err(CmdError::err(format!("could not build the RDB for the replica: {e}")));
        }
        srv.repl.attach(id, &addr, &tx, header, Some(&image))
    } else if !srv.persist.snap.running()
        && me.as_ref().is_some_and(|me| {
            crate::persist::snapshot::start_job_locked(me, cx.ks.acc, crate::persist::snapshot::JobKind::Rdb).is_ok()
        })
    {
        // The save is registered first (INFO never shows a replica waiting
        // for a save that is not running); it hands its file over only once
        // this command's exclusive access ends (`snapshot::run_job`), so the
        // replica registered here cannot miss it.
        srv.repl.attach(id, &addr, &tx, header, None)
    } else {
        let ndb = srv.store.dbs.len();
        let functions = crate::script::function_dump_codes(srv);
        let mut image = Vec::new();
        let acc = &mut *cx.ks.acc;
        let r =
            write_image(&mut image, true, LruMode::of(srv), false, ndb, &functions, srv.repl.rdb_info(), |db, f| {
                for i in 0..SHARDS {
                    acc.with_slot(db, i as u16, |sh| f(sh));
                }
            });
        if let Err(e) = r {
            return Err(CmdError::err(format!("could not build the RDB for the replica: {e}")));
        }
        srv.repl.attach(id, &addr, &tx, header, Some(&image))
    };
    if attached {
        if let Some(me) = &me {
            if !PINGER.swap(true, Ordering::SeqCst) {
                crate::persist::repl::spawn_pinger(me);
            }
        }
    }
    cx.client.reply_off = true;
    Ok(())
}

static PINGER: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

fn replconf(cx: &mut Cx) -> CmdResult {
    if cx.argc().is_multiple_of(2) {
        return Err(SYNTAX);
    }
    let id = cx.client.id;
    let mut port = None;
    let mut ip = None;
    let mut j = 1;
    while j + 1 < cx.argc() {
        let (opt, val) = (cx.arg(j), cx.arg(j + 1));
        if eq_ic(opt, b"listening-port") {
            port = Some(parse_i64(val).ok_or(NOT_INT)?);
        } else if eq_ic(opt, b"ip-address") {
            if val.len() >= 256 {
                return Err(CmdError::err(format!(
                    "REPLCONF ip-address provided by replica instance is too long: {} bytes",
                    val.len()
                )));
            }
            ip = Some(String::from_utf8_lossy(val).into_owned());
        } else if eq_ic(opt, b"capa") {
            // Capabilities (eof, psync2) are accepted; the payload is always disk-based.
        } else if eq_ic(opt, b"ack") || eq_ic(opt, b"fack") {
            // From a replica: record its offset, never reply.
            if eq_ic(opt, b"ack") {
                if let Some(off) = parse_i64(val) {
                    cx.srv.repl.ack(id, off);
                }
            }
            return Ok(());
        } else if eq_ic(opt, b"getack") {
            // Only a replica answers GETACK (to its master); a master ignores it.
            return Ok(());
        } else if eq_ic(opt, b"rdb-filter-only") {
            // Only "functions" (or nothing): the payload has no keys (Redis 7.0).
            let Some(filters) = crate::script::split_args(val) else {
                return Err(CmdError::err("Missing rdb-filter-only values"));
            };
            let mut functions = false;
            for f in &filters {
                if f.eq_ignore_ascii_case(b"functions") {
                    functions = true;
                } else {
                    return Err(CmdError::err(format!(
                        "Unsupported rdb-filter-only option: {}",
                        String::from_utf8_lossy(f)
                    )));
                }
            }
            cx.srv.repl.set_rdb_filter(id, functions);
        } else if eq_ic(opt, b"rdb-only") {
            match parse_i64(val) {
                Some(0 | 1) => {}
                Some(_) => return Err(CmdError::err("value is out of range, value must between 0 and 1")),
                None => return Err(NOT_INT),
            }
        } else {
            return Err(CmdError::err(format!("Unrecognized REPLCONF option: {}", String::from_utf8_lossy(opt))));
        }
        j += 2;
    }
    if port.is_some() || ip.is_some() {
        cx.srv.repl.set_pending(id, port, ip);
    }
    cx.out.ok();
    Ok(())
}

/// WAIT numreplicas timeout: the number of replicas whose ACK covers the
/// offset of the client's last write.
fn wait(cx: &mut Cx) -> CmdResult {
    let n = parse_i64(cx.arg(1)).ok_or(NOT_INT)?;
    let t = parse_i64(cx.arg(2)).ok_or_else(|| CmdError::err("timeout is not an integer or out of range"))?;
    if t < 0 {
        return Err(CmdError::err("timeout is negative"));
    }
    let repl = &cx.srv.repl;
    if repl.replica.is_replica() {
        return Err(CmdError::err(
            "WAIT cannot be used with replica instances. Please also note that since Redis 4.0 if a replica is configured to be writable (which is not the default) writes to replicas are just local and are not propagated.",
        ));
    }
    // The offset of this client's last write (Redis's c->woff): other
    // clients' later writes are not waited for.
    let off = repl.client_woff(cx.client.id);
    let acked = repl.count_acked(off);
    let in_script = crate::script::vm::in_script();
    if acked >= n || cx.in_exec || in_script {
        cx.out.int(acked);
        return Ok(());
    }
    let deadline = if t == 0 { None } else { Some(cx.ks.now.saturating_add(t)) };
    let handle = cx.client.handle.clone();
    let srv = cx.srv;
    let stop = || handle.killed.load(Ordering::Relaxed) || srv.shutting_down.load(Ordering::Relaxed);
    let got = match tokio::runtime::Handle::try_current() {
        Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(|| repl.wait_acks(n, off, deadline, stop))
        }
        // Without a multi-threaded runtime blocking here would stop the
        // replicas' ACKs from being read: answer with the count now.
        _ => acked,
    };
    cx.out.int(got);
    Ok(())
}

/// ROLE: master, offset, [[ip, port, offset] ...]; as a replica:
/// slave, host, port, state, offset.
fn role(cx: &mut Cx) -> CmdResult {
    let repl = &cx.srv.repl;
    if let Some(m) = repl.replica.snapshot() {
        let o = &mut cx.out;
        o.array(5);
        o.bulk(b"slave");
        o.bulk(m.host.as_bytes());
        o.int(m.port as i64);
        o.bulk(m.link.name().as_bytes());
        let off = if m.link == crate::persist::replica::LinkState::Connected {
            repl.replica.offset.load(Ordering::SeqCst)
        } else {
            -1
        };
        o.int(off);
        return Ok(());
    }
    let reps = repl.replicas();
    let o = &mut cx.out;
    o.array(3);
    o.bulk(b"master");
    o.int(repl.offset.load(Ordering::SeqCst));
    o.array(reps.len());
    for r in &reps {
        o.array(3);
        o.bulk(r.ip.as_bytes());
        o.bulk(r.port.to_string().as_bytes());
        o.bulk(r.ack_off.load(Ordering::SeqCst).to_string().as_bytes());
    }
    Ok(())
}

/// FAILOVER [TO host port [FORCE]] [TIMEOUT ms] | FAILOVER ABORT (Redis 7.0's
/// failoverCommand): pause writes, wait until the target replica (or any
/// replica) acknowledged everything, then become its replica asking it to
/// take over (`persist::repl::spawn_failover_driver`, the link's `PSYNC ...
/// FAILOVER`).
fn failover(cx: &mut Cx) -> CmdResult {
    use crate::persist::repl::{self as r, FAILOVER_WAIT_FOR_SYNC, NO_FAILOVER};
    let srv = cx.srv;
    // ABORT only alone (Redis).
    if cx.argc() == 2 && eq_ic(cx.arg(1), b"abort") {
        if srv.repl.failover.lock().state == NO_FAILOVER {
            return Err(CmdError::err("No failover in progress."));
        }
        r::abort_failover(srv, "Failover manually aborted");
        cx.out.ok();
        return Ok(());
    }
    let mut host: Option<String> = None;
    let mut port = 0i64;
    let mut timeout = 0i64;
    let mut force = false;
    let mut j = 1;
    while j < cx.argc() {
        let a = cx.arg(j);
        if eq_ic(a, b"timeout") && j + 1 < cx.argc() && timeout == 0 {
            timeout = parse_i64(cx.arg(j + 1)).ok_or(NOT_INT)?;
            if timeout <= 0 {
                return Err(CmdError::err("FAILOVER timeout must be greater than 0"));
            }
            j += 1;
        } else if eq_ic(a, b"to") && j + 2 < cx.argc() && host.is_none() {
            port = parse_i64(cx.arg(j + 2)).ok_or(NOT_INT)?;
            host = Some(String::from_utf8_lossy(cx.arg(j + 1)).into_owned());
            j += 2;
        } else if eq_ic(a, b"force") && !force {
            force = true;
        } else {
            return Err(SYNTAX);
        }
        j += 1;
    }
    if srv.repl.failover.lock().state != NO_FAILOVER {
        return Err(CmdError::err("FAILOVER already in progress."));
    }
    if srv.repl.replica.is_replica() {
        return Err(CmdError::err("FAILOVER is not valid when server is a replica."));
    }
    if srv.repl.replicas().is_empty() {
        return Err(CmdError::err("FAILOVER requires connected replicas."));
    }
    if force && (timeout == 0 || host.is_none()) {
        return Err(CmdError::err("FAILOVER with force option requires both a timeout and target HOST and IP."));
    }
    let Some(me) = srv.persist.me.get().and_then(|w| w.upgrade()) else {
        return Err(CmdError::err("server is shutting down"));
    };
    let mut g = srv.repl.failover.lock();
    if g.state != NO_FAILOVER {
        return Err(CmdError::err("FAILOVER already in progress."));
    }
    let target = match host {
        Some(h) => {
            let p = u16::try_from(port).ok();
            let Some(rep) = p.and_then(|p| r::find_replica(srv, &h, p)) else {
                return Err(CmdError::err("FAILOVER target HOST and PORT is not a replica."));
            };
            if !rep.online() {
                return Err(CmdError::err("FAILOVER target replica is not online."));
            }
            eprintln!("ferrite: FAILOVER requested to {h}:{port}.");
            Some((h, port as u16))
        }
        None => {
            eprintln!("ferrite: FAILOVER requested to any replica.");
            None
        }
    };
    *g = r::Failover {
        state: FAILOVER_WAIT_FOR_SYNC,
        target,
        end_ms: if timeout > 0 { cx.ks.now.saturating_add(timeout) } else { 0 },
        force,
    };
    drop(g);
    // Writes wait (as Redis's PAUSE_DURING_FAILOVER) until the failover ends.
    srv.pause_clients(i64::MAX, false);
    r::spawn_failover_driver(&me);
    cx.out.ok();
    Ok(())
}
