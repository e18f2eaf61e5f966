//! Mirror writes for the rollback window: every write the owner of a mirrored slot acknowledged is sent to the
//! other side too, and the writes of one slot reach the other side in the order the owner acknowledged them, even
//! when the other side moves the slot (a failover or reshard of the upstream) while writes are in flight.
//!
//! Per slot the proxy knows how many mirror writes are in flight to which node. A new write goes out at once only
//! when every write still in flight went to the node it goes to; otherwise it is held. Replies are handled in the
//! backend connection's reader, in the connection's order: a `-MOVED` re-sends the write to the new node right
//! there (so the re-sends of several writes keep their order), and when the last write to the old node is
//! resolved the held writes follow, in order. Failures are counted and logged, never hidden.

use crate::backend::{BackendError, Side, Sink};
use crate::Proxy;
use bytes::Bytes;
use parking_lot::Mutex;
use smallvec::SmallVec;
use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

const NSLOTS: usize = 16384;
const MAX_REDIRECTS: u8 = 5;

/// One mirror write (a command, or MULTI ... EXEC as one unit).
pub struct MirrorJob {
    pub target: Side,
    pub slot: u16,
    pub data: Bytes,
    /// Reply frames to expect (the last one is checked).
    pub replies: u8,
    pub resp3: bool,
    pub t0: Instant,
    redirects: u8,
}

#[derive(Default)]
struct SlotMirror {
    /// Writes in flight per node.
    inflight: SmallVec<[(Arc<str>, u32); 2]>,
    /// Writes waiting until the writes in flight to another node are resolved.
    held: VecDeque<MirrorJob>,
}

impl SlotMirror {
    fn add(&mut self, addr: &Arc<str>) {
        match self.inflight.iter_mut().find(|(a, _)| a == addr) {
            Some(e) => e.1 += 1,
            None => self.inflight.push((addr.clone(), 1)),
        }
    }
    fn remove(&mut self, addr: &Arc<str>) {
        if let Some(i) = self.inflight.iter().position(|(a, _)| a == addr) {
            self.inflight[i].1 -= 1;
            if self.inflight[i].1 == 0 {
                self.inflight.swap_remove(i);
            }
        }
    }
    /// May a write go to `addr` now without overtaking an earlier one?
    fn clear_for(&self, addr: &Arc<str>) -> bool {
        self.inflight.iter().all(|(a, _)| a == addr)
    }
}

/// Per-slot ordering state of mirror writes.
pub struct Mirror {
    slots: Box<[Mutex<SlotMirror>]>,
}

impl Default for Mirror {
    fn default() -> Self {
        Mirror { slots: (0..NSLOTS).map(|_| Mutex::new(SlotMirror::default())).collect() }
    }
}

impl Proxy {
    /// Send an acknowledged write of `slot` (`replies` reply frames) to the `target` side, after every earlier
    /// mirror write of the slot.
    pub fn mirror_send_n(self: &Arc<Self>, target: Side, slot: u16, data: Bytes, resp3: bool, replies: u8) {
        self.metrics.mirror_inflight.inc();
        let job = MirrorJob { target, slot, data, replies, resp3, t0: Instant::now(), redirects: 0 };
        let Some(addr) = self.mirror_node(&job) else {
            return self.mirror_failed(job, "no node serves the slot on the mirror side".into());
        };
        let mut st = self.mirror.slots[slot as usize % NSLOTS].lock();
        if !st.held.is_empty() || !st.clear_for(&addr) {
            st.held.push_back(job);
            return;
        }
        if let Err((job, why)) = self.mirror_push(&mut st, addr, job) {
            drop(st);
            self.mirror_failed(job, why);
        }
    }

    fn mirror_node(&self, job: &MirrorJob) -> Option<Arc<str>> {
        self.topo_of(job.target)?.node(job.slot)
    }

    /// Queue `job` on the connection to `addr` (the slot's lock is held by the caller).
    fn mirror_push(
        self: &Arc<Self>,
        st: &mut SlotMirror,
        addr: Arc<str>,
        job: MirrorJob,
    ) -> Result<(), (MirrorJob, String)> {
        let conn = match self.pool.get(&addr, job.resp3, job.target, self.lane(job.target, Some(job.slot))) {
            Ok(c) => c,
            Err(e) => return Err((job, format!("{addr}: {}", e.text()))),
        };
        let data = job.data.clone();
        let replies = job.replies;
        st.add(&addr);
        let me = self.clone();
        let at = addr.clone();
        let sink = Sink::Call(Box::new(move |r| me.mirror_reply(at, job, r)));
        if let Err(sink) = conn.push(data, replies, sink, None) {
            // The connection closed meanwhile: the write fails through its own reply path (which takes the slot's
            // lock, held here, so later).
            tokio::spawn(async move { sink.fail(BackendError::NotSent("connection closed".into())) });
        }
        Ok(())
    }

    /// The reply to a mirror write, in the connection's reply order.
    fn mirror_reply(self: &Arc<Self>, addr: Arc<str>, mut job: MirrorJob, r: Result<Bytes, BackendError>) {
        let slot = job.slot;
        let mut st = self.mirror.slots[slot as usize % NSLOTS].lock();
        st.remove(&addr);
        let outcome: Result<(), String> = match r {
            Ok(f) if f.first() != Some(&b'-') => Ok(()),
            Ok(f) => {
                let moved = if f.starts_with(b"-MOVED ") && job.redirects < MAX_REDIRECTS {
                    crate::router::parse_redirect(&f)
                } else {
                    None
                };
                match (moved, self.topo_of(job.target)) {
                    (Some((s, to)), Some(topo)) => {
                        // Re-send here, in reply order: the writes behind this one get their -MOVED next and follow
                        // it to the new node in the same order; held writes wait for all of them.
                        job.redirects += 1;
                        self.metrics.redirects.with_label_values(&["moved"]).inc();
                        let to = crate::router::fix_host(&to, Some(&addr));
                        topo.moved(s, &to);
                        let to: Arc<str> = Arc::from(to.as_str());
                        match self.mirror_push(&mut st, to, job) {
                            Ok(()) => {
                                self.mirror_flush(&mut st);
                                return;
                            }
                            Err((j, why)) => {
                                job = j;
                                Err(why)
                            }
                        }
                    }
                    _ => Err(String::from_utf8_lossy(&f[1..f.len().saturating_sub(2)]).to_string()),
                }
            }
            Err(e) => Err(format!("{addr}: {}", e.text())),
        };
        self.mirror_flush(&mut st);
        drop(st);
        match outcome {
            Ok(()) => {
                let m = &self.metrics;
                m.mirror_inflight.dec();
                m.mirror_lag.observe(job.t0.elapsed().as_secs_f64());
                self.slots.stats.mirror_ok.fetch_add(1, Ordering::Relaxed);
                m.mirror_writes.with_label_values(&["ok"]).inc();
            }
            Err(why) => self.mirror_failed(job, why),
        }
    }

    /// Send the held writes of a slot whose earlier writes are all resolved (or all go to the same node).
    fn mirror_flush(self: &Arc<Self>, st: &mut SlotMirror) {
        while let Some(front) = st.held.front() {
            let Some(addr) = self.mirror_node(front) else {
                let Some(job) = st.held.pop_front() else { break };
                self.mirror_failed(job, "no node serves the slot on the mirror side".into());
                continue;
            };
            if !st.clear_for(&addr) {
                break;
            }
            let Some(job) = st.held.pop_front() else { break };
            if let Err((job, why)) = self.mirror_push(st, addr, job) {
                self.mirror_failed(job, why);
            }
        }
    }

    fn mirror_failed(&self, job: MirrorJob, why: String) {
        let m = &self.metrics;
        m.mirror_inflight.dec();
        m.mirror_lag.observe(job.t0.elapsed().as_secs_f64());
        self.slots.stats.mirror_failures.fetch_add(1, Ordering::Relaxed);
        m.mirror_writes.with_label_values(&["failed"]).inc();
        tracing::warn!(slot = job.slot, target = job.target.name(), error = %why, "mirror write failed");
    }
}
