//! The routing table: 16384 slots × {state, mirror, paused-from}, swapped atomically with an epoch, plus what the
//! migration needs around it: per-slot queues of requests waiting on a paused slot (arrival order, bounded in
//! time and count), in-flight counters (a pause is acknowledged only once requests routed under the old state
//! were answered), and TRACK/DIRTY key recording.

use crate::metrics::Metrics;
use crate::topology::NSLOTS;
use arc_swap::ArcSwap;
use bytes::Bytes;
use parking_lot::Mutex;
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Upstream,
    Ferrite,
    Paused,
}

impl State {
    pub fn name(self) -> &'static str {
        match self {
            State::Upstream => "upstream",
            State::Ferrite => "ferrite",
            State::Paused => "paused",
        }
    }
    pub fn parse(s: &[u8]) -> Option<State> {
        match s.to_ascii_lowercase().as_slice() {
            b"upstream" => Some(State::Upstream),
            b"ferrite" => Some(State::Ferrite),
            b"paused" => Some(State::Paused),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SlotEntry {
    pub state: State,
    pub mirror: bool,
    /// The owner before the pause (meaningful when `state == Paused`).
    pub from: State,
    pub since: Option<Instant>,
}

/// An immutable snapshot of the routing table.
pub struct Table {
    pub epoch: u64,
    pub slots: Box<[SlotEntry]>,
}

/// A request waiting on a paused slot. `dispatch` is called exactly once with the slot's new owner, in arrival
/// order, while the table lock is held (it must only queue work, never block).
pub struct Waiter {
    pub id: u64,
    pub dispatch: Box<dyn FnOnce(State) + Send>,
}

#[derive(Default)]
struct AdminState {
    queues: HashMap<u16, VecDeque<Waiter>>,
    queued: usize,
    /// (epoch, state, mirror, ranges) of the change applied at the current epoch.
    last_change: Option<(u64, State, bool, Vec<(u16, u16)>)>,
}

/// Outcome of trying to queue on a paused slot.
pub enum Enqueue {
    Queued,
    /// The slot is not paused (any more): route to this owner.
    NotPaused(SlotEntry),
    Full,
}

pub struct Slots {
    table: ArcSwap<Table>,
    admin: Mutex<AdminState>,
    inflight: Box<[AtomicU32]>,
    tracked: Box<[AtomicBool]>,
    any_tracked: AtomicBool,
    dirty: Mutex<HashMap<u16, (VecDeque<Bytes>, HashSet<Bytes>)>>,
    next_id: AtomicU64,
    pub max_queued: usize,
    pub pause_timeout: Duration,
    metrics: Arc<Metrics>,
    pub stats: AdminStats,
}

#[derive(Default)]
pub struct AdminStats {
    pub pause_timeouts: AtomicU64,
    pub pause_rejected: AtomicU64,
    pub pause_released: AtomicU64,
    pub mirror_ok: AtomicU64,
    pub mirror_failures: AtomicU64,
    pub setslots: AtomicU64,
}

/// Parse `N` or `N-M` (0 <= N <= M <= 16383).
pub fn parse_range(s: &[u8]) -> Option<(u16, u16)> {
    let s = std::str::from_utf8(s).ok()?;
    let (a, b) = match s.split_once('-') {
        Some((a, b)) => (a, b),
        None => (s, s),
    };
    let digits = |x: &str| !x.is_empty() && x.bytes().all(|c| c.is_ascii_digit()) && x.len() <= 5;
    if !digits(a) || !digits(b) {
        return None;
    }
    let (a, b): (u16, u16) = (a.parse().ok()?, b.parse().ok()?);
    (a <= b && (b as usize) < NSLOTS).then_some((a, b))
}

/// Sorted, merged ranges.
pub fn normalize(mut r: Vec<(u16, u16)>) -> Vec<(u16, u16)> {
    r.sort();
    let mut out: Vec<(u16, u16)> = Vec::new();
    for (a, b) in r {
        match out.last_mut() {
            Some(l) if a as u32 <= l.1 as u32 + 1 => l.1 = l.1.max(b),
            _ => out.push((a, b)),
        }
    }
    out
}

impl Slots {
    pub fn new(initial: State, max_queued: usize, pause_timeout: Duration, metrics: Arc<Metrics>) -> Arc<Slots> {
        let e = SlotEntry { state: initial, mirror: false, from: initial, since: None };
        let s = Arc::new(Slots {
            table: ArcSwap::from_pointee(Table { epoch: 0, slots: vec![e; NSLOTS].into_boxed_slice() }),
            admin: Mutex::new(AdminState::default()),
            inflight: (0..NSLOTS).map(|_| AtomicU32::new(0)).collect(),
            tracked: (0..NSLOTS).map(|_| AtomicBool::new(false)).collect(),
            any_tracked: AtomicBool::new(false),
            dirty: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(1),
            max_queued,
            pause_timeout,
            metrics,
            stats: AdminStats::default(),
        });
        s.update_gauges(&s.table.load());
        s
    }

    #[inline]
    pub fn load(&self) -> arc_swap::Guard<Arc<Table>> {
        self.table.load()
    }

    pub fn epoch(&self) -> u64 {
        self.table.load().epoch
    }

    /// Mark a request as routed under the current table for `slot` and return the slot's entry. The returned
    /// guard must live until the owner answered (SETSLOTS ... paused waits for those).
    #[inline]
    pub fn route(self: &Arc<Self>, slot: u16) -> (SlotEntry, InflightGuard) {
        self.inflight[slot as usize].fetch_add(1, Ordering::SeqCst);
        std::sync::atomic::fence(Ordering::SeqCst);
        let e = self.table.load().slots[slot as usize];
        (e, InflightGuard { slots: Some(self.clone()), slot })
    }

    /// [`Slots::route`] without a guard: the caller must call [`Slots::done`] exactly once for `slot` when the
    /// owner answered (or [`InflightGuard::adopt`] to hand the count to a guard).
    #[inline]
    pub fn route_counted(&self, slot: u16) -> SlotEntry {
        self.inflight[slot as usize].fetch_add(1, Ordering::SeqCst);
        std::sync::atomic::fence(Ordering::SeqCst);
        self.table.load().slots[slot as usize]
    }

    /// End a request counted by [`Slots::route_counted`].
    #[inline]
    pub fn done(&self, slot: u16) {
        self.inflight[slot as usize].fetch_sub(1, Ordering::SeqCst);
    }

    pub fn new_waiter_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// Queue `w` on paused `slot` (re-checked under the lock).
    pub fn enqueue(&self, slot: u16, w: Waiter) -> (Enqueue, Option<Waiter>) {
        let mut a = self.admin.lock();
        let e = self.table.load().slots[slot as usize];
        if e.state != State::Paused {
            return (Enqueue::NotPaused(e), Some(w));
        }
        if a.queued >= self.max_queued {
            self.stats.pause_rejected.fetch_add(1, Ordering::Relaxed);
            self.metrics.pause_rejected.inc();
            return (Enqueue::Full, Some(w));
        }
        a.queued += 1;
        a.queues.entry(slot).or_default().push_back(w);
        self.metrics.paused_requests.inc();
        (Enqueue::Queued, None)
    }

    /// Remove a waiter that timed out; false if it was already dispatched.
    pub fn cancel(&self, slot: u16, id: u64) -> bool {
        let mut a = self.admin.lock();
        let Some(q) = a.queues.get_mut(&slot) else { return false };
        let Some(pos) = q.iter().position(|w| w.id == id) else { return false };
        q.remove(pos);
        if q.is_empty() {
            a.queues.remove(&slot);
        }
        a.queued -= 1;
        self.metrics.paused_requests.dec();
        true
    }

    /// `FERRITE.PROXY SETSLOTS`: atomic for every listed range.
    /// Returns the epoch and the slots that became paused (wait for them with [`Slots::wait_drained`] before
    /// acknowledging).
    pub fn setslots(
        &self,
        epoch: u64,
        state: State,
        mirror: bool,
        ranges: Vec<(u16, u16)>,
    ) -> Result<(u64, Vec<u16>), String> {
        let ranges = normalize(ranges);
        let mut a = self.admin.lock();
        let cur = self.table.load_full();
        if epoch < cur.epoch {
            return Err(format!("ERR stale epoch {epoch}, current is {}", cur.epoch));
        }
        if epoch == cur.epoch {
            match &a.last_change {
                Some((e, s, m, r)) if *e == epoch && *s == state && *m == mirror && *r == ranges => {}
                _ => return Err(format!("ERR epoch {epoch} already used")),
            }
        }
        let now = Instant::now();
        let mut slots = cur.slots.clone();
        let mut released: Vec<u16> = Vec::new();
        let mut newly_paused: Vec<u16> = Vec::new();
        for &(lo, hi) in &ranges {
            for s in lo..=hi {
                let old = slots[s as usize];
                let mut e = old;
                e.mirror = mirror;
                match (old.state, state) {
                    (State::Paused, State::Paused) => {}
                    (o, State::Paused) => {
                        e.state = State::Paused;
                        e.from = o;
                        e.since = Some(now);
                        newly_paused.push(s);
                    }
                    (State::Paused, n) => {
                        e.state = n;
                        e.from = n;
                        e.since = None;
                        released.push(s);
                    }
                    (_, n) => {
                        e.state = n;
                        e.from = n;
                        e.since = None;
                    }
                }
                slots[s as usize] = e;
            }
        }
        let table = Arc::new(Table { epoch, slots });
        self.table.store(table.clone());
        std::sync::atomic::fence(Ordering::SeqCst);
        // Release waiting requests to the new owner, in arrival order, before anyone can route past them.
        self.release(&mut a, &released, &table);
        let text = ranges_text(&ranges);
        a.last_change = Some((epoch, state, mirror, ranges));
        drop(a);
        self.stats.setslots.fetch_add(1, Ordering::Relaxed);
        self.update_gauges(&table);
        tracing::info!(epoch, state = state.name(), mirror, ranges = %text, "slot table changed");
        Ok((epoch, newly_paused))
    }

    /// A pause is in force once the requests routed under the old owner were answered: wait for them (bounded).
    pub async fn wait_drained(&self, slots: &[u16], bound: Duration) {
        let deadline = Instant::now() + bound;
        while slots.iter().any(|&s| self.inflight[s as usize].load(Ordering::SeqCst) > 0) {
            if Instant::now() > deadline {
                tracing::warn!("pause acknowledged with requests still in flight after {bound:?}");
                break;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }

    fn release(&self, a: &mut AdminState, slots: &[u16], table: &Table) {
        for &s in slots {
            if let Some(q) = a.queues.remove(&s) {
                let owner = table.slots[s as usize].state;
                for w in q {
                    a.queued -= 1;
                    self.metrics.paused_requests.dec();
                    self.stats.pause_released.fetch_add(1, Ordering::Relaxed);
                    (w.dispatch)(owner);
                }
            }
        }
    }

    /// Resume slots paused for longer than the pause timeout to the owner they had before (epoch unchanged).
    pub fn expire_pauses(&self) {
        let cur = self.table.load_full();
        let now = Instant::now();
        let expired =
            |e: &SlotEntry| e.state == State::Paused && e.since.is_some_and(|t| now - t >= self.pause_timeout);
        if !cur.slots.iter().any(expired) {
            return;
        }
        let mut a = self.admin.lock();
        let cur = self.table.load_full();
        let mut slots = cur.slots.clone();
        let mut released = Vec::new();
        for (i, e) in slots.iter_mut().enumerate() {
            if expired(e) {
                e.state = e.from;
                e.since = None;
                released.push(i as u16);
            }
        }
        let table = Arc::new(Table { epoch: cur.epoch, slots });
        self.table.store(table.clone());
        std::sync::atomic::fence(Ordering::SeqCst);
        self.release(&mut a, &released, &table);
        drop(a);
        self.stats.pause_timeouts.fetch_add(1, Ordering::Relaxed);
        self.metrics.pause_timeouts.inc();
        self.update_gauges(&table);
        tracing::warn!(
            slots = released.len(),
            timeout_ms = self.pause_timeout.as_millis() as u64,
            "pause timed out: slots resumed to their previous owner"
        );
    }

    fn update_gauges(&self, t: &Table) {
        let mut n = [0i64; 3];
        let mut mirrored = 0;
        for e in t.slots.iter() {
            n[e.state as usize] += 1;
            mirrored += e.mirror as i64;
        }
        for (i, s) in [State::Upstream, State::Ferrite, State::Paused].iter().enumerate() {
            self.metrics.slots.with_label_values(&[s.name()]).set(n[i]);
        }
        self.metrics.slots_mirrored.set(mirrored);
        self.metrics.config_epoch.set(t.epoch as i64);
    }

    /// Maximal runs of slots with equal (state, mirror).
    pub fn runs(&self) -> Vec<(u16, u16, State, bool)> {
        let t = self.table.load();
        let mut out: Vec<(u16, u16, State, bool)> = Vec::new();
        for (i, e) in t.slots.iter().enumerate() {
            match out.last_mut() {
                Some(l) if l.2 == e.state && l.3 == e.mirror => l.1 = i as u16,
                _ => out.push((i as u16, i as u16, e.state, e.mirror)),
            }
        }
        out
    }

    pub fn paused_now(&self) -> usize {
        self.admin.lock().queued
    }

    // -- TRACK / DIRTY --------------------------------------------------------------------------------------

    pub fn set_tracking(&self, on: bool, ranges: &[(u16, u16)]) {
        for &(a, b) in ranges {
            for s in a..=b {
                self.tracked[s as usize].store(on, Ordering::SeqCst);
            }
        }
        let n = self.tracked.iter().filter(|t| t.load(Ordering::Relaxed)).count();
        self.any_tracked.store(n > 0, Ordering::SeqCst);
        self.metrics.slots_tracked.set(n as i64);
    }

    #[inline]
    pub fn is_tracked(&self, slot: u16) -> bool {
        self.any_tracked.load(Ordering::Relaxed) && self.tracked[slot as usize].load(Ordering::Relaxed)
    }

    pub fn record_dirty(&self, slot: u16, key: &Bytes) {
        if !self.is_tracked(slot) {
            return;
        }
        let mut d = self.dirty.lock();
        let (q, set) = d.entry(slot).or_default();
        if set.insert(key.clone()) {
            q.push_back(key.clone());
            self.metrics.dirty_keys.inc();
        }
    }

    pub fn take_dirty(&self, slot: u16, count: usize) -> Vec<Bytes> {
        let mut d = self.dirty.lock();
        let Some((q, set)) = d.get_mut(&slot) else { return Vec::new() };
        let mut out = Vec::new();
        while out.len() < count {
            let Some(k) = q.pop_front() else { break };
            set.remove(&k);
            out.push(k);
        }
        if q.is_empty() {
            d.remove(&slot);
        }
        self.metrics.dirty_keys.sub(out.len() as i64);
        out
    }
}

fn ranges_text(r: &[(u16, u16)]) -> String {
    let v: Vec<String> =
        r.iter().take(16).map(|(a, b)| if a == b { a.to_string() } else { format!("{a}-{b}") }).collect();
    let mut s = v.join(",");
    if r.len() > 16 {
        s.push_str(",...");
    }
    s
}

/// Decrements a slot's in-flight counter when dropped.
pub struct InflightGuard {
    slots: Option<Arc<Slots>>,
    slot: u16,
}

impl InflightGuard {
    pub fn none() -> InflightGuard {
        InflightGuard { slots: None, slot: 0 }
    }

    /// Take over a count made by [`Slots::route_counted`].
    pub fn adopt(slots: Arc<Slots>, slot: u16) -> InflightGuard {
        InflightGuard { slots: Some(slots), slot }
    }
}

impl Drop for InflightGuard {
    fn drop(&mut self) {
        if let Some(s) = &self.slots {
            s.inflight[self.slot as usize].fetch_sub(1, Ordering::SeqCst);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        assert_eq!(parse_range(b"5"), Some((5, 5)));
        assert_eq!(parse_range(b"0-16383"), Some((0, 16383)));
        assert_eq!(parse_range(b"16384"), None);
        assert_eq!(parse_range(b"5-4"), None);
        assert_eq!(parse_range(b"-1"), None);
        assert_eq!(parse_range(b"a"), None);
        assert_eq!(normalize(vec![(5, 9), (0, 4), (20, 30), (25, 26)]), vec![(0, 9), (20, 30)]);
    }

    #[test]
    fn epochs_and_pause_release_order() {
        let s = Slots::new(State::Upstream, 10, Duration::from_secs(5), Metrics::new());
        assert_eq!(s.setslots(0, State::Ferrite, false, vec![(0, 0)]).unwrap_err(), "ERR epoch 0 already used");
        assert_eq!(s.setslots(3, State::Paused, false, vec![(10, 12)]).unwrap().0, 3);
        assert_eq!(s.setslots(3, State::Paused, false, vec![(10, 12)]).unwrap().0, 3); // idempotent retry
        assert!(s.setslots(3, State::Ferrite, false, vec![(10, 12)]).is_err());
        assert_eq!(
            s.setslots(2, State::Ferrite, false, vec![(10, 12)]).unwrap_err(),
            "ERR stale epoch 2, current is 3"
        );
        let order = Arc::new(Mutex::new(Vec::new()));
        for i in 0..3 {
            let o = order.clone();
            let w = Waiter { id: s.new_waiter_id(), dispatch: Box::new(move |st| o.lock().push((i, st))) };
            assert!(matches!(s.enqueue(11, w).0, Enqueue::Queued));
        }
        assert_eq!(s.paused_now(), 3);
        s.setslots(4, State::Ferrite, true, vec![(10, 12)]).unwrap();
        assert_eq!(*order.lock(), vec![(0, State::Ferrite), (1, State::Ferrite), (2, State::Ferrite)]);
        assert_eq!(s.runs()[1], (10, 12, State::Ferrite, true));
    }
}
