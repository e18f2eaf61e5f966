//! Clients blocked on keys (BLPOP, BZPOPMIN, XREAD BLOCK, ...).
//!
//! A blocking command that finds nothing to serve registers a [`Waiter`]
//! on each of its keys while it still holds the shard locks of those keys,
//! so no write can slip in between the check and the registration. A write
//! to a key with waiters runs under exclusive access (dispatch checks
//! [`BlockRegistry::has_waiters`] first) and, before that access ends,
//! serves the waiters of the keys it made ready in first-blocked,
//! first-served order by re-running their commands' `try` step. The served
//! reply travels to the waiter's connection as `Push::Reply`. A waiter that
//! times out removes itself under the registry lock; if it was served in
//! the meantime its reply is already on the way.

use bytes::Bytes;
use parking_lot::Mutex;
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// What happened to a waiter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WaitState {
    Waiting,
    Served,
    Cancelled,
}

/// One blocked client.
pub struct Waiter {
    pub handle: Arc<crate::client::ClientHandle>,
    pub db: usize,
    pub resp3: bool,
    pub user: String,
    /// The blocking command, as sent.
    pub args: Vec<Bytes>,
    /// Keys it waits on (each registered in the registry).
    pub keys: Vec<Bytes>,
    pub state: Mutex<WaitState>,
}

#[derive(Default)]
pub struct BlockRegistry {
    queues: Mutex<HashMap<(usize, Bytes), VecDeque<Arc<Waiter>>>>,
    count: AtomicUsize,
}

impl BlockRegistry {
    /// Any blocked client at all? (Lock-free fast path for every write.)
    #[inline]
    pub fn any(&self) -> bool {
        self.count.load(Ordering::Relaxed) > 0
    }

    /// Does any of `keys` of `db` have waiters?
    pub fn has_waiters<'k>(&self, db: usize, keys: impl Iterator<Item = &'k [u8]>) -> bool {
        if !self.any() {
            return false;
        }
        let q = self.queues.lock();
        for k in keys {
            if q.contains_key(&(db, Bytes::copy_from_slice(k))) {
                return true;
            }
        }
        false
    }

    pub fn register(&self, w: Arc<Waiter>) {
        let mut q = self.queues.lock();
        for k in &w.keys {
            q.entry((w.db, k.clone())).or_default().push_back(w.clone());
        }
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    fn unlink(q: &mut HashMap<(usize, Bytes), VecDeque<Arc<Waiter>>>, w: &Arc<Waiter>) {
        for k in &w.keys {
            let id = (w.db, k.clone());
            if let Some(v) = q.get_mut(&id) {
                v.retain(|x| !Arc::ptr_eq(x, w));
                if v.is_empty() {
                    q.remove(&id);
                }
            }
        }
    }

    /// Cancel a waiter (timeout, disconnect). Returns false if it was
    /// already served (its reply is in flight). Call it holding the store's
    /// world read lock: serving happens under the exclusive world lock, so
    /// a cancel can never interleave with a serve of the same waiter.
    pub fn cancel(&self, w: &Arc<Waiter>) -> bool {
        self.finish(w, WaitState::Cancelled)
    }

    /// Move a waiting waiter to `to` and unlink it; false if it was not waiting.
    fn finish(&self, w: &Arc<Waiter>, to: WaitState) -> bool {
        let mut q = self.queues.lock();
        let mut st = w.state.lock();
        if *st != WaitState::Waiting {
            return false;
        }
        *st = to;
        Self::unlink(&mut q, w);
        self.count.fetch_sub(1, Ordering::Relaxed);
        true
    }

    /// Keys of `db` somebody is blocked on (SWAPDB signals them all).
    pub fn keys_in_db(&self, db: usize) -> Vec<Bytes> {
        self.queues.lock().keys().filter(|(d, _)| *d == db).map(|(_, k)| k.clone()).collect()
    }

    /// Waiters on `key` of `db`, oldest first.
    pub fn waiters(&self, db: usize, key: &[u8]) -> Vec<Arc<Waiter>> {
        if !self.any() {
            return Vec::new();
        }
        let q = self.queues.lock();
        q.get(&(db, Bytes::copy_from_slice(key))).map(|v| v.iter().cloned().collect()).unwrap_or_default()
    }

    /// Mark a waiter served and unlink it from all its keys. Returns false
    /// if it was cancelled concurrently (then nothing must be sent).
    pub fn mark_served(&self, w: &Arc<Waiter>) -> bool {
        self.finish(w, WaitState::Served)
    }

    pub fn blocked_clients(&self) -> usize {
        self.count.load(Ordering::Relaxed)
    }
}
