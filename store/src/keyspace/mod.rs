//! The keyspace: 16 databases, each split into lock shards, each shard
//! holding one hash table per hash slot.
//!
//! Layout: slot `s` lives in shard `s % SHARDS` at position `s / SHARDS`.
//! Keeping one table per slot makes counting and listing the keys of a slot
//! O(keys in that slot), which cluster mode and migration rely on, and lets
//! SCAN walk slot by slot with Redis's full-iteration guarantee.
//!
//! Locking: a global `world` RwLock is taken shared by every command that
//! touches keys, and exclusive by commands that need a consistent view of
//! everything (MULTI/EXEC, FLUSHALL, SWAPDB, KEYS, ...). Under the shared
//! lock a command locks the shards of its declared keys in ascending order,
//! so two commands can never deadlock. Under the exclusive lock shards are
//! locked lazily in any order (nobody else can hold one).
//! No lock is ever held across an `.await`: commands run synchronously.

pub mod expire;
pub mod smallbytes;
pub mod value;

use ferrite_commands::SLOTS;
use hashbrown::HashTable;
use parking_lot::{Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};
use smallbytes::SmallBytes;
use smallvec::SmallVec;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock, OnceLock};
pub use value::{Entry, StrValue, Value};

/// Lock shards per database.
pub const SHARDS: usize = 64;
const SLOTS_PER_SHARD: usize = SLOTS / SHARDS;

/// Process-wide random seed for key hashing (HashDoS resistance, like
/// Redis's random siphash seed).
fn seed() -> u64 {
    static SEED: OnceLock<u64> = OnceLock::new();
    *SEED.get_or_init(rand::random)
}

/// Hasher for keys and collection members: foldhash with a per-process seed.
#[derive(Clone, Copy, Default)]
pub struct KeyHasher;

impl BuildHasher for KeyHasher {
    type Hasher = foldhash::fast::FoldHasher;
    #[inline]
    fn build_hasher(&self) -> Self::Hasher {
        foldhash::fast::FixedState::with_seed(seed()).build_hasher()
    }
}

#[inline]
pub fn hash_key(key: &[u8]) -> u64 {
    let mut h = KeyHasher.build_hasher();
    h.write(key);
    h.finish()
}

/// The keys of one hash slot.
#[derive(Default)]
pub struct SlotTable {
    pub table: HashTable<Box<Entry>>,
    /// Keys in this slot with an expiry set.
    pub volatile: u32,
}

impl SlotTable {
    #[inline]
    pub fn get(&self, key: &[u8]) -> Option<&Entry> {
        self.table.find(hash_key(key), |e| &*e.key == key).map(|b| &**b)
    }

    #[inline]
    pub fn get_mut(&mut self, key: &[u8]) -> Option<&mut Entry> {
        self.table.find_mut(hash_key(key), |e| &*e.key == key).map(|b| &mut **b)
    }

    pub fn len(&self) -> usize {
        self.table.len()
    }
}

/// Keep the slot and shard counts of keys with a TTL in step when a key
/// goes from (not) volatile to (not) volatile.
#[inline]
fn adjust_volatile(slot: &mut u32, shard: &mut usize, was: bool, now: bool) {
    match (was, now) {
        (false, true) => {
            *slot += 1;
            *shard += 1;
        }
        (true, false) => {
            *slot -= 1;
            *shard -= 1;
        }
        _ => {}
    }
}

/// One lock shard of a database.
pub struct Shard {
    pub slots: Box<[SlotTable]>,
    pub keys: usize,
    pub volatile: usize,
}

impl Shard {
    /// Slot tables are allocated on the first write, so the 15 databases
    /// most deployments never use cost next to nothing. Database 0's are
    /// allocated up front (about 640 KB in all): otherwise the first keys
    /// each cost a shard's 10 KB slot array, which `maxmemory` headroom
    /// computed from `used_memory` (Redis's own maxmemory tests do that)
    /// cannot foresee.
    fn new(eager: bool) -> Shard {
        let mut s = Shard { slots: Box::new([]), keys: 0, volatile: 0 };
        if eager {
            s.alloc_slots();
        }
        s
    }

    fn alloc_slots(&mut self) {
        self.slots = (0..SLOTS_PER_SHARD).map(|_| SlotTable::default()).collect();
    }

    #[inline]
    pub fn slot(&self, slot: u16) -> &SlotTable {
        static EMPTY: LazyLock<SlotTable> = LazyLock::new(SlotTable::default);
        self.slots.get(slot as usize / SHARDS).unwrap_or(&EMPTY)
    }

    /// The slot table, allocating this shard's tables if needed.
    #[inline]
    pub fn slot_mut(&mut self, slot: u16) -> &mut SlotTable {
        if self.slots.is_empty() {
            self.alloc_slots();
        }
        &mut self.slots[slot as usize / SHARDS]
    }

    /// The entry for `key`, whether expired or not.
    #[inline]
    pub fn get_raw(&mut self, slot: u16, key: &[u8]) -> Option<&mut Entry> {
        self.slots.get_mut(slot as usize / SHARDS)?.get_mut(key)
    }

    /// Insert or replace the entry for `entry.key`. Returns the old entry.
    pub fn put(&mut self, slot: u16, entry: Box<Entry>) -> Option<Box<Entry>> {
        let h = hash_key(&entry.key);
        let new_volatile = entry.expire_at != 0;
        self.slot_mut(slot);
        let st = &mut self.slots[slot as usize / SHARDS];
        let old = match st.table.find_mut(h, |e| e.key == entry.key) {
            Some(slot_e) => Some(std::mem::replace(slot_e, entry)),
            None => {
                st.table.insert_unique(h, entry, |e| hash_key(&e.key));
                self.keys += 1;
                None
            }
        };
        let old_volatile = old.as_ref().is_some_and(|o| o.expire_at != 0);
        adjust_volatile(&mut st.volatile, &mut self.volatile, old_volatile, new_volatile);
        old
    }

    /// Make room for about `n` more keys in every slot table of this shard
    /// (RDB loading knows the database size up front: no rehash while
    /// filling).
    pub fn reserve_per_slot(&mut self, n: usize) {
        self.slot_mut(0);
        for st in self.slots.iter_mut() {
            st.table.reserve(n, |e| hash_key(&e.key));
        }
    }

    /// Insert or replace with a single probe of the slot table (loading).
    pub fn put_one_probe(&mut self, slot: u16, entry: Box<Entry>) {
        let h = hash_key(&entry.key);
        let new_volatile = entry.expire_at != 0;
        self.slot_mut(slot);
        let st = &mut self.slots[slot as usize / SHARDS];
        let old_volatile = match st.table.entry(h, |e| e.key == entry.key, |e| hash_key(&e.key)) {
            hashbrown::hash_table::Entry::Occupied(mut o) => {
                let was = o.get().expire_at != 0;
                *o.get_mut() = entry;
                was
            }
            hashbrown::hash_table::Entry::Vacant(v) => {
                v.insert(entry);
                self.keys += 1;
                false
            }
        };
        adjust_volatile(&mut st.volatile, &mut self.volatile, old_volatile, new_volatile);
    }

    /// Set `key` to `value`, reusing the existing entry's allocation when
    /// the key is present (the common overwrite path of SET). Returns the
    /// previous value and expiry, if any.
    pub fn put_value(&mut self, slot: u16, key: &[u8], value: Value, expire_at: i64, lru: u32) -> Option<(Value, i64)> {
        let h = hash_key(key);
        self.slot_mut(slot);
        let st = &mut self.slots[slot as usize / SHARDS];
        let old = match st.table.find_mut(h, |e| &*e.key == key) {
            Some(e) => {
                let old_expire = std::mem::replace(&mut e.expire_at, expire_at);
                e.lru = lru;
                Some((std::mem::replace(&mut e.value, value), old_expire))
            }
            None => {
                let entry = Box::new(Entry { key: SmallBytes::new(key), value, expire_at, lru });
                st.table.insert_unique(h, entry, |e| hash_key(&e.key));
                self.keys += 1;
                None
            }
        };
        let old_volatile = old.as_ref().is_some_and(|(_, x)| *x != 0);
        adjust_volatile(&mut st.volatile, &mut self.volatile, old_volatile, expire_at != 0);
        old
    }

    /// Remove `key`, returning its entry.
    pub fn remove(&mut self, slot: u16, key: &[u8]) -> Option<Box<Entry>> {
        let st = self.slots.get_mut(slot as usize / SHARDS)?;
        let e = match st.table.find_entry(hash_key(key), |e| &*e.key == key) {
            Ok(occ) => occ.remove().0,
            Err(_) => return None,
        };
        self.keys -= 1;
        if e.expire_at != 0 {
            st.volatile -= 1;
            self.volatile -= 1;
        }
        Some(e)
    }

    /// Change the expiry of an existing key, keeping the volatile counters.
    pub fn set_expire(&mut self, slot: u16, key: &[u8], at: i64) -> bool {
        let Some(st) = self.slots.get_mut(slot as usize / SHARDS) else { return false };
        let Some(e) = st.get_mut(key) else { return false };
        let was = e.expire_at != 0;
        e.expire_at = at;
        adjust_volatile(&mut st.volatile, &mut self.volatile, was, at != 0);
        true
    }

    /// Drop every key. The slot array stays (its tables are freed): a
    /// flushed database that is written again does not pay for it again.
    pub fn clear(&mut self) {
        for st in self.slots.iter_mut() {
            *st = SlotTable::default();
        }
        self.keys = 0;
        self.volatile = 0;
    }
}

/// A client's interest in a key for WATCH.
pub struct WatchFlag {
    pub client_id: u64,
    pub dirty: Arc<AtomicBool>,
    /// The key was already logically expired when WATCH ran; its deletion
    /// is then not a change (Redis 7.0 `watchedKey.expired`).
    pub expired: bool,
}

/// One numbered database.
pub struct Db {
    pub shards: Box<[Mutex<Shard>]>,
    /// Keys watched by clients: key -> watchers. `watch_count` lets writers
    /// skip the lock entirely when nobody watches anything in this db.
    pub watched: Mutex<hashbrown::HashMap<Vec<u8>, Vec<WatchFlag>>>,
    pub watch_count: AtomicUsize,
    /// Approximate key counts, maintained lock-free for INFO keyspace.
    pub expires_hint: AtomicU64,
}

impl Db {
    fn new(eager: bool) -> Db {
        Db {
            shards: (0..SHARDS).map(|_| Mutex::new(Shard::new(eager))).collect(),
            watched: Mutex::new(hashbrown::HashMap::new()),
            watch_count: AtomicUsize::new(0),
            expires_hint: AtomicU64::new(0),
        }
    }

    /// Mark every client watching `key` as dirty.
    pub fn signal_modified(&self, key: &[u8]) {
        if self.watch_count.load(Ordering::Relaxed) == 0 {
            return;
        }
        if let Some(ws) = self.watched.lock().get(key) {
            for w in ws {
                w.dirty.store(true, Ordering::Relaxed);
            }
        }
    }

    /// `key` was deleted because it expired: watchers that saw it already
    /// expired at WATCH time see no change; the others are dirty.
    pub fn signal_expired_deleted(&self, key: &[u8]) {
        if self.watch_count.load(Ordering::Relaxed) == 0 {
            return;
        }
        if let Some(ws) = self.watched.lock().get_mut(key) {
            for w in ws {
                if w.expired {
                    w.expired = false;
                } else {
                    w.dirty.store(true, Ordering::Relaxed);
                }
            }
        }
    }

    /// Register a WATCH.
    pub fn watch(&self, key: &[u8], client_id: u64, dirty: &Arc<AtomicBool>, expired: bool) {
        let mut m = self.watched.lock();
        let ws = m.entry(key.to_vec()).or_default();
        if ws.iter().any(|w| w.client_id == client_id) {
            return;
        }
        ws.push(WatchFlag { client_id, dirty: dirty.clone(), expired });
        self.watch_count.fetch_add(1, Ordering::Relaxed);
    }

    /// Drop a client's WATCH on `key`.
    pub fn unwatch(&self, key: &[u8], client_id: u64) {
        let mut m = self.watched.lock();
        if let Some(ws) = m.get_mut(key) {
            let before = ws.len();
            ws.retain(|w| w.client_id != client_id);
            let removed = before - ws.len();
            if ws.is_empty() {
                m.remove(key);
            }
            self.watch_count.fetch_sub(removed, Ordering::Relaxed);
        }
    }

    /// Was `key` already expired when `client_id` watched it?
    pub fn watched_as_expired(&self, key: &[u8], client_id: u64) -> bool {
        self.watched.lock().get(key).is_some_and(|ws| ws.iter().any(|w| w.client_id == client_id && w.expired))
    }

    /// Mark every watcher of this db dirty (FLUSHDB, SWAPDB).
    pub fn signal_all(&self) {
        if self.watch_count.load(Ordering::Relaxed) == 0 {
            return;
        }
        for ws in self.watched.lock().values() {
            for w in ws {
                w.dirty.store(true, Ordering::Relaxed);
            }
        }
    }
}

#[inline]
pub fn shard_of(slot: u16) -> usize {
    slot as usize % SHARDS
}

/// The world lock, striped so that shared lockers on different threads
/// touch different cache lines: a reader locks its thread's stripe, the
/// exclusive locker takes every stripe in order.
struct WorldLock {
    stripes: [PaddedLock; WORLD_STRIPES],
}

const WORLD_STRIPES: usize = 8;

#[repr(align(64))]
#[derive(Default)]
struct PaddedLock(RwLock<()>);

thread_local! {
    static WORLD_STRIPE: std::cell::Cell<usize> = const { std::cell::Cell::new(usize::MAX) };
}

impl WorldLock {
    fn new() -> WorldLock {
        WorldLock { stripes: Default::default() }
    }

    #[inline]
    fn read(&self) -> RwLockReadGuard<'_, ()> {
        let i = WORLD_STRIPE.with(|s| {
            let v = s.get();
            if v != usize::MAX {
                return v;
            }
            static NEXT: AtomicUsize = AtomicUsize::new(0);
            let v = NEXT.fetch_add(1, Ordering::Relaxed) % WORLD_STRIPES;
            s.set(v);
            v
        });
        self.stripes[i].0.read()
    }

    fn write(&self) -> Vec<RwLockWriteGuard<'_, ()>> {
        self.stripes.iter().map(|s| s.0.write()).collect()
    }
}

pub struct Store {
    pub dbs: Box<[Db]>,
    world: WorldLock,
}

enum World<'a> {
    Nothing,
    Shared(#[allow(dead_code)] RwLockReadGuard<'a, ()>),
    Exclusive(#[allow(dead_code)] Vec<RwLockWriteGuard<'a, ()>>),
}

/// The shards a command may touch, locked.
pub struct Access<'a> {
    store: &'a Store,
    world: World<'a>,
    /// (db << 16 | shard, guard), sorted by the first field.
    guards: SmallVec<[(u32, MutexGuard<'a, Shard>); 2]>,
}

impl<'a> Access<'a> {
    pub fn store(&self) -> &'a Store {
        self.store
    }

    pub fn is_exclusive(&self) -> bool {
        matches!(self.world, World::Exclusive(_))
    }

    /// The locked shard holding `slot` of `db`; under the exclusive lock it
    /// is locked on demand. `None` means the command touched a key it did
    /// not declare (a bug, reported to the client as an error).
    #[inline]
    pub fn shard(&mut self, db: usize, slot: u16) -> Option<&mut Shard> {
        let id = ((db as u32) << 16) | shard_of(slot) as u32;
        let pos = self.guards.iter().position(|(i, _)| *i == id);
        match pos {
            Some(p) => Some(&mut self.guards[p].1),
            None if self.is_exclusive() => {
                let g = self.store.dbs.get(db)?.shards[shard_of(slot)].lock();
                self.guards.push((id, g));
                let last = self.guards.len() - 1;
                Some(&mut self.guards[last].1)
            }
            None => None,
        }
    }

    /// Run `f` on every shard of `db` in turn (exclusive access only;
    /// otherwise shards are locked one at a time, giving a weakly
    /// consistent view like Redis's incremental commands).
    pub fn for_each_shard(&mut self, db: usize, mut f: impl FnMut(&mut Shard)) {
        for i in 0..SHARDS {
            let id = ((db as u32) << 16) | i as u32;
            if let Some(p) = self.guards.iter().position(|(g, _)| *g == id) {
                f(&mut self.guards[p].1);
            } else if let Some(d) = self.store.dbs.get(db) {
                let mut g = d.shards[i].lock();
                f(&mut g);
            }
        }
    }

    /// Run `f` on the shard holding `slot` of `db`: the guard this access
    /// already holds if any, otherwise the shard is locked just for `f`.
    /// Safe for commands declared `Lock::None` (they hold no shard) and
    /// inside EXEC (exclusive). Returns None for an unknown db.
    pub fn with_slot<R>(&mut self, db: usize, slot: u16, f: impl FnOnce(&mut Shard) -> R) -> Option<R> {
        let id = ((db as u32) << 16) | shard_of(slot) as u32;
        if let Some(p) = self.guards.iter().position(|(g, _)| *g == id) {
            return Some(f(&mut self.guards[p].1));
        }
        debug_assert!(self.is_exclusive() || self.guards.is_empty(), "with_slot while holding other shards");
        let d = self.store.dbs.get(db)?;
        let mut g = d.shards[shard_of(slot)].lock();
        Some(f(&mut g))
    }

    /// Release shard locks taken lazily (keeps the world lock).
    pub fn release_shards(&mut self) {
        self.guards.clear();
    }
}

impl Store {
    pub fn new(databases: usize) -> Store {
        Store { dbs: (0..databases.max(1)).map(|i| Db::new(i == 0)).collect(), world: WorldLock::new() }
    }

    /// Lock nothing (commands that touch no keys).
    pub fn access_none(&self) -> Access<'_> {
        Access { store: self, world: World::Nothing, guards: SmallVec::new() }
    }

    /// Lock the shards holding `slots` of `db`, in ascending order.
    pub fn access_slots(&self, db: usize, slots: impl Iterator<Item = u16>) -> Access<'_> {
        let world = World::Shared(self.world.read());
        let mut ids: SmallVec<[u32; 8]> = slots.map(|s| ((db as u32) << 16) | shard_of(s) as u32).collect();
        ids.sort_unstable();
        ids.dedup();
        let mut guards = SmallVec::new();
        if let Some(d) = self.dbs.get(db) {
            for id in ids {
                guards.push((id, d.shards[(id & 0xffff) as usize].lock()));
            }
        }
        Access { store: self, world, guards }
    }

    /// Lock the shard holding `slot` of `db` (`access_slots` for one slot).
    #[inline]
    pub fn access_slot(&self, db: usize, slot: u16) -> Access<'_> {
        let world = World::Shared(self.world.read());
        let mut guards = SmallVec::new();
        if let Some(d) = self.dbs.get(db) {
            let shard = shard_of(slot);
            guards.push((((db as u32) << 16) | shard as u32, d.shards[shard].lock()));
        }
        Access { store: self, world, guards }
    }

    /// Exclusive access to everything.
    pub fn access_all(&self) -> Access<'_> {
        Access { store: self, world: World::Exclusive(self.world.write()), guards: SmallVec::new() }
    }

    /// The shared world lock, for background work that locks shards itself.
    pub fn world_read(&self) -> RwLockReadGuard<'_, ()> {
        self.world.read()
    }

    /// Total keys in a db (sums shard counters; locks each shard briefly).
    pub fn db_size(&self, db: usize) -> usize {
        self.dbs.get(db).map_or(0, |d| d.shards.iter().map(|s| s.lock().keys).sum())
    }

    pub fn db_volatile(&self, db: usize) -> usize {
        self.dbs.get(db).map_or(0, |d| d.shards.iter().map(|s| s.lock().volatile).sum())
    }

    /// Number of keys in one hash slot of `db`.
    pub fn count_keys_in_slot(&self, db: usize, slot: u16) -> usize {
        self.dbs.get(db).map_or(0, |d| d.shards[shard_of(slot)].lock().slot(slot).len())
    }

    /// Up to `count` keys of one hash slot of `db`.
    pub fn keys_in_slot(&self, db: usize, slot: u16, count: usize) -> Vec<SmallBytes> {
        self.dbs.get(db).map_or_else(Vec::new, |d| {
            d.shards[shard_of(slot)].lock().slot(slot).table.iter().take(count).map(|e| e.key.clone()).collect()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferrite_commands::key_hash_slot;

    fn entry(k: &[u8], exp: i64) -> Box<Entry> {
        Box::new(Entry { key: SmallBytes::new(k), value: Value::str(b"v"), expire_at: exp, lru: 0 })
    }

    #[test]
    fn put_get_remove_and_counters() {
        let store = Store::new(16);
        let keys: Vec<Vec<u8>> = (0..1000).map(|i| format!("key:{i}").into_bytes()).collect();
        {
            let mut acc = store.access_all();
            for (i, k) in keys.iter().enumerate() {
                let slot = key_hash_slot(k);
                acc.shard(0, slot).unwrap().put(slot, entry(k, if i % 2 == 0 { 5 } else { 0 }));
            }
        }
        assert_eq!(store.db_size(0), 1000);
        assert_eq!(store.db_volatile(0), 500);
        let slot = key_hash_slot(b"key:7");
        assert_eq!(store.count_keys_in_slot(0, slot), store.keys_in_slot(0, slot, usize::MAX).len());
        let mut acc = store.access_slots(0, [slot].into_iter());
        assert!(acc.shard(0, slot).unwrap().get_raw(slot, b"key:7").is_some());
        assert!(acc.shard(0, slot).unwrap().remove(slot, b"key:7").is_some());
        drop(acc);
        assert_eq!(store.db_size(0), 999);
        // An undeclared shard is refused under shared access.
        let mut acc = store.access_slots(0, [0u16].into_iter());
        assert!(acc.shard(0, 1).is_none());
    }
}
