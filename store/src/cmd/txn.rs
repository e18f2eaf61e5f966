//! Transactions: MULTI, DISCARD, WATCH, UNWATCH. EXEC itself runs in
//! `dispatch::exec`, which needs the whole queue under one lock.

use super::{CmdError, CmdImpl, CmdResult, Cx, Lock};
use crate::client::Multi;
use ferrite_commands::key_hash_slot;
use std::sync::atomic::Ordering;

pub static COMMANDS: &[CmdImpl] = &[
    CmdImpl { name: "multi", handler: multi, lock: Lock::None },
    CmdImpl { name: "exec", handler: exec_outside, lock: Lock::None },
    CmdImpl { name: "discard", handler: discard, lock: Lock::None },
    CmdImpl { name: "watch", handler: watch, lock: Lock::Keys },
    CmdImpl { name: "unwatch", handler: unwatch, lock: Lock::None },
];

fn multi(cx: &mut Cx) -> CmdResult {
    if cx.client.multi.is_some() {
        return Err(CmdError::err("MULTI calls can not be nested"));
    }
    cx.client.multi = Some(Multi::default());
    cx.client.handle.multi.store(0, Ordering::Relaxed);
    cx.out.ok();
    Ok(())
}

/// Only reached if EXEC bypassed dispatch's transaction path.
fn exec_outside(_cx: &mut Cx) -> CmdResult {
    Err(CmdError::err("EXEC without MULTI"))
}

fn discard(cx: &mut Cx) -> CmdResult {
    if cx.client.multi.take().is_none() {
        return Err(CmdError::err("DISCARD without MULTI"));
    }
    cx.client.handle.multi.store(-1, Ordering::Relaxed);
    crate::dispatch::unwatch_all(cx.srv, cx.client);
    cx.out.ok();
    Ok(())
}

fn watch(cx: &mut Cx) -> CmdResult {
    if cx.client.multi.is_some() {
        return Err(CmdError::err("WATCH inside MULTI is not allowed"));
    }
    let db = cx.ks.db;
    for i in 1..cx.argc() {
        let key = cx.arg(i);
        if cx.client.watched.iter().any(|(d, k)| *d == db && k == key) {
            continue;
        }
        let slot = key_hash_slot(key);
        let now = cx.ks.now;
        let expired =
            cx.ks.acc.shard(db, slot).and_then(|s| s.get_raw(slot, key).map(|e| e.is_expired(now))).unwrap_or(false);
        cx.srv.store.dbs[db].watch(key, cx.client.id, &cx.client.watch_dirty, expired);
        cx.client.watched.push((db, key.to_vec()));
    }
    cx.out.ok();
    Ok(())
}

fn unwatch(cx: &mut Cx) -> CmdResult {
    crate::dispatch::unwatch_all(cx.srv, cx.client);
    cx.out.ok();
    Ok(())
}
