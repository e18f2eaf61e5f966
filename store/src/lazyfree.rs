//! Lazy freeing, as Redis's lazyfree: a deleted value whose freeing costs
//! many allocations (more than 64: a big hashtable set or hash, skiplist
//! zset, long list, stream with many nodes or pending entries) is dropped
//! by a background thread instead of by the command (UNLINK always; DEL
//! with `lazyfree-lazy-user-del yes`). INFO reports
//! `lazyfree_pending_objects` and `lazyfreed_objects` (the latter reset by
//! CONFIG RESETSTAT).
//!
//! Not done lazily here: FLUSHALL/FLUSHDB ASYNC (the tables are cleared in
//! place), eviction and expiry (`lazyfree-lazy-eviction/expire/server-del`
//! are accepted but free synchronously).

use crate::keyspace::value::{Entry, Value};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::Sender;
use std::sync::{Mutex, OnceLock};

/// Values queued and not yet freed.
pub static PENDING: AtomicU64 = AtomicU64::new(0);
/// Values freed by the background thread.
pub static FREED: AtomicU64 = AtomicU64::new(0);
/// `lazyfree-lazy-user-del`: DEL behaves like UNLINK.
pub static LAZY_USER_DEL: AtomicBool = AtomicBool::new(false);

/// Redis's LAZYFREE_THRESHOLD.
const THRESHOLD: usize = 64;

/// Redis's lazyfreeGetFreeEffort: about how many allocations freeing the
/// value takes (1 for compact encodings).
pub fn effort(v: &Value, stream_node_max_entries: usize) -> usize {
    match v {
        Value::Str(_) => 1,
        // A quicklist node holds up to 8 KB of elements.
        Value::List(l) => 1 + l.len() / 128,
        Value::Hash(h) if h.encoding() == "hashtable" => h.len(),
        Value::Set(s) if s.encoding() == "hashtable" => s.len(),
        Value::ZSet(z) if z.encoding() == "skiplist" => z.len(),
        Value::Hash(_) | Value::Set(_) | Value::ZSet(_) => 1,
        Value::Stream(s) => {
            let nodes = s.len() / stream_node_max_entries.max(1) + 1;
            let pel = s.groups.values().next().map_or(0, |g| g.pel.len());
            nodes + s.groups.len() * (1 + pel)
        }
    }
}

fn sender() -> &'static Mutex<Sender<Box<Entry>>> {
    static TX: OnceLock<Mutex<Sender<Box<Entry>>>> = OnceLock::new();
    TX.get_or_init(|| {
        let (tx, rx) = std::sync::mpsc::channel::<Box<Entry>>();
        let spawned = std::thread::Builder::new().name("ferrite-lazyfree".into()).spawn(move || {
            for e in rx {
                drop(e);
                PENDING.fetch_sub(1, Ordering::Relaxed);
                FREED.fetch_add(1, Ordering::Relaxed);
            }
        });
        if let Err(e) = spawned {
            eprintln!("ferrite: could not start the lazyfree thread: {e}");
        }
        Mutex::new(tx)
    })
}

/// Free a deleted entry: in the background when that is costly, else now.
pub fn free(srv: &crate::server::Server, e: Box<Entry>) {
    let max = srv.tun.stream_node_max_entries.load(Ordering::Relaxed);
    if effort(&e.value, max) <= THRESHOLD {
        return;
    }
    PENDING.fetch_add(1, Ordering::Relaxed);
    let tx = sender().lock().unwrap_or_else(|p| p.into_inner()).clone();
    if let Err(back) = tx.send(e) {
        // No background thread: free it here.
        PENDING.fetch_sub(1, Ordering::Relaxed);
        drop(back);
    }
}
