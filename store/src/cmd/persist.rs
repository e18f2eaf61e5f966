//! Persistence commands: SAVE, BGSAVE [SCHEDULE], LASTSAVE, BGREWRITEAOF,
//! and the DEBUG subcommands RELOAD and LOADAOF (see `crate::persist`).

use super::{eq_ic, CmdError, CmdImpl, CmdResult, Cx, Lock, SYNTAX};
use crate::persist::{aof, load, snapshot};
use std::sync::atomic::Ordering;
use std::sync::Arc;

pub static COMMANDS: &[CmdImpl] = &[
    CmdImpl { name: "save", handler: save, lock: Lock::All },
    CmdImpl { name: "bgsave", handler: bgsave, lock: Lock::All },
    CmdImpl { name: "lastsave", handler: lastsave, lock: Lock::None },
    CmdImpl { name: "bgrewriteaof", handler: bgrewriteaof, lock: Lock::All },
];

/// The server as an `Arc` (background jobs keep it alive).
fn arc(cx: &Cx) -> Option<Arc<crate::server::Server>> {
    cx.srv.persist.me.get().and_then(|w| w.upgrade())
}

fn save(cx: &mut Cx) -> CmdResult {
    if cx.srv.persist.snap.rdb_running() {
        return Err(CmdError::err("Background save already in progress"));
    }
    cx.ks.acc.release_shards();
    snapshot::save_sync_with(cx.srv, cx.ks.acc).map_err(|e| {
        eprintln!("ferrite: Failed saving the DB: {e}");
        CmdError::err(format!("Failed saving the DB: {e}"))
    })?;
    cx.out.ok();
    Ok(())
}

fn bgsave(cx: &mut Cx) -> CmdResult {
    let mut schedule = false;
    if cx.argc() > 1 {
        if cx.argc() == 2 && eq_ic(cx.arg(1), b"schedule") {
            schedule = true;
        } else {
            return Err(SYNTAX);
        }
    }
    let p = &cx.srv.persist;
    if p.snap.rdb_running() {
        return Err(CmdError::err("Background save already in progress"));
    }
    if p.snap.running() {
        if schedule {
            p.bgsave_scheduled.store(true, Ordering::Relaxed);
            cx.out.simple(b"Background saving scheduled");
            return Ok(());
        }
        return Err(CmdError::err(
            "Another child process is active (AOF?): can't BGSAVE right now. Use BGSAVE SCHEDULE in order to schedule a BGSAVE whenever possible.",
        ));
    }
    let srv = arc(cx).ok_or_else(|| CmdError::err("server is shutting down"))?;
    cx.ks.acc.release_shards();
    snapshot::start_bgsave_locked(&srv, cx.ks.acc).map_err(CmdError::raw)?;
    cx.out.simple(b"Background saving started");
    Ok(())
}

fn lastsave(cx: &mut Cx) -> CmdResult {
    cx.out.int(cx.srv.persist.lastsave.load(Ordering::Relaxed));
    Ok(())
}

fn bgrewriteaof(cx: &mut Cx) -> CmdResult {
    let srv = arc(cx).ok_or_else(|| CmdError::err("server is shutting down"))?;
    // Inside MULTI/EXEC Redis only schedules the rewrite (the cron starts it).
    if cx.in_exec {
        if srv.persist.aof.rewrite_running() {
            return Err(CmdError::raw("ERR Background append only file rewriting already in progress"));
        }
        srv.persist.aof.rewrite_scheduled.store(true, Ordering::Relaxed);
        cx.out.simple(b"Background append only file rewriting scheduled");
        return Ok(());
    }
    cx.ks.acc.release_shards();
    let msg = aof::start_rewrite_locked(&srv, cx.ks.acc).map_err(CmdError::raw)?;
    cx.out.simple(msg.as_bytes());
    Ok(())
}

/// DEBUG RELOAD / DEBUG LOADAOF (called first by DEBUG; None: not ours).
pub fn debug_sub(cx: &mut Cx) -> Option<CmdResult> {
    let sub = cx.arg(1);
    if eq_ic(sub, b"reload") {
        return Some(debug_reload(cx));
    }
    if eq_ic(sub, b"loadaof") {
        return Some(debug_loadaof(cx));
    }
    None
}

/// Empty every database and the function libraries, as Redis's
/// emptyData (shard guards of this access released first).
fn clear_all(cx: &mut Cx) {
    cx.ks.acc.release_shards();
    cx.srv.scripting.func.lock().flush();
    for db in cx.srv.store.dbs.iter() {
        db.signal_all();
        for s in db.shards.iter() {
            s.lock().clear();
        }
    }
}

/// DEBUG RELOAD [MERGE] [NOFLUSH] [NOSAVE]: save, flush, load again.
fn debug_reload(cx: &mut Cx) -> CmdResult {
    let (mut merge, mut noflush, mut nosave) = (false, false, false);
    for i in 2..cx.argc() {
        let a = cx.arg(i);
        if eq_ic(a, b"merge") {
            merge = true;
        } else if eq_ic(a, b"noflush") {
            noflush = true;
        } else if eq_ic(a, b"nosave") {
            nosave = true;
        } else {
            return Err(CmdError::err("DEBUG RELOAD only supports the MERGE, NOFLUSH and NOSAVE options."));
        }
    }
    cx.ks.acc.release_shards();
    if !nosave {
        snapshot::save_sync_with(cx.srv, cx.ks.acc)
            .map_err(|e| CmdError::err(format!("Error trying to save the DB: {e}")))?;
    }
    if !noflush {
        clear_all(cx);
    }
    let path = cx.srv.persist.cfg.lock().rdb_path();
    cx.srv.persist.loading.store(true, Ordering::SeqCst);
    let r = load::load_rdb_file_opts(cx.srv, &path, merge);
    cx.srv.persist.loading.store(false, Ordering::SeqCst);
    r.map_err(|e| {
        eprintln!("ferrite: DEBUG RELOAD: {e}");
        CmdError::err("Error trying to load the RDB dump")
    })?;
    cx.out.ok();
    Ok(())
}

/// DEBUG LOADAOF: flush the AOF to disk, empty the data set, replay it.
fn debug_loadaof(cx: &mut Cx) -> CmdResult {
    if !cx.srv.persist.aof.enabled() && !aof::manifest_on_disk(cx.srv) {
        cx.out.ok();
        return Ok(());
    }
    clear_all(cx);
    cx.srv.persist.loading.store(true, Ordering::SeqCst);
    let r = aof::reload_with(cx.srv, cx.ks.acc);
    cx.srv.persist.loading.store(false, Ordering::SeqCst);
    r.map_err(|e| CmdError::err(format!("Error trying to load the AOF files, check server logs. ({e})")))?;
    eprintln!("ferrite: Append Only File loaded by DEBUG LOADAOF");
    cx.out.ok();
    Ok(())
}

/// FLUSHALL (exclusive access held): stop a running BGSAVE and, when save
/// rules exist, save the now empty data set, as Redis does.
pub fn after_flushall(cx: &mut Cx) {
    let p = &cx.srv.persist;
    if p.snap.rdb_running() {
        p.snap.cancel();
    }
    if !p.cfg.lock().save.is_empty() {
        cx.ks.acc.release_shards();
        if let Err(e) = snapshot::save_sync_with(cx.srv, cx.ks.acc) {
            eprintln!("ferrite: FLUSHALL could not save the DB: {e}");
        }
    }
}

/// SHUTDOWN [NOSAVE|SAVE]: save when asked or when save rules exist.
pub fn on_shutdown(cx: &mut Cx, save: bool, nosave: bool) -> CmdResult {
    crate::persist::on_shutdown(cx.srv, save, nosave).map_err(CmdError::err)
}
