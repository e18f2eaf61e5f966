//! `maxmemory` and eviction, with every Redis 7.0 `maxmemory-policy`.
//!
//! Before a command runs, dispatch calls [`perform_evictions`] when a limit
//! is set. Victims are chosen like Redis's approximated algorithms: sample
//! `maxmemory-samples` keys (all keys, or only keys with a TTL for the
//! `volatile-*` policies) and evict the best candidate — idlest for LRU,
//! least frequently used for LFU, nearest expiry for volatile-ttl, any for
//! random — until used memory is under the limit. If nothing can be evicted
//! (or the policy is noeviction) commands that may grow memory get
//! `-OOM command not allowed when used memory > 'maxmemory'.`
//!
//! LFU keeps Redis's 24-bit layout in `Entry::lru`: 16 bits of minutes
//! (last decrement time) and an 8-bit logarithmic counter.

#[path = "lazyfree.rs"]
pub mod lazyfree;

use crate::server::Server;
use rand::Rng;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Policy {
    NoEviction = 0,
    AllKeysLru,
    AllKeysLfu,
    AllKeysRandom,
    VolatileLru,
    VolatileLfu,
    VolatileRandom,
    VolatileTtl,
}

impl Policy {
    pub const ALL: [(Policy, &'static str); 8] = [
        (Policy::NoEviction, "noeviction"),
        (Policy::AllKeysLru, "allkeys-lru"),
        (Policy::AllKeysLfu, "allkeys-lfu"),
        (Policy::AllKeysRandom, "allkeys-random"),
        (Policy::VolatileLru, "volatile-lru"),
        (Policy::VolatileLfu, "volatile-lfu"),
        (Policy::VolatileRandom, "volatile-random"),
        (Policy::VolatileTtl, "volatile-ttl"),
    ];

    pub fn parse(s: &[u8]) -> Option<Policy> {
        Self::ALL.iter().find(|(_, n)| n.as_bytes().eq_ignore_ascii_case(s)).map(|(p, _)| *p)
    }

    pub fn name(self) -> &'static str {
        Self::ALL[self as usize].1
    }

    pub fn from_u8(v: u8) -> Policy {
        Self::ALL.get(v as usize).map_or(Policy::NoEviction, |(p, _)| *p)
    }

    pub fn is_lfu(self) -> bool {
        matches!(self, Policy::AllKeysLfu | Policy::VolatileLfu)
    }

    pub fn volatile_only(self) -> bool {
        matches!(self, Policy::VolatileLru | Policy::VolatileLfu | Policy::VolatileRandom | Policy::VolatileTtl)
    }
}

/// Current policy.
pub fn policy(srv: &Server) -> Policy {
    Policy::from_u8(srv.tun.maxmemory_policy.load(Ordering::Relaxed))
}

// ---------------------------------------------------------------- LFU

pub const LFU_INIT_VAL: u32 = 5;

fn minutes(now_ms: i64) -> u32 {
    ((now_ms / 1000 / 60) & 0xffff) as u32
}

/// The `lru` field of a new key under an LFU policy.
pub fn lfu_init(now_ms: i64) -> u32 {
    (minutes(now_ms) << 8) | LFU_INIT_VAL
}

fn lfu_elapsed(ldt: u32, now_ms: i64) -> u32 {
    let now = minutes(now_ms);
    if now >= ldt {
        now - ldt
    } else {
        65535u32.saturating_sub(ldt) + now
    }
}

/// The counter after decay (`LFUDecrAndReturn`), without updating.
pub fn lfu_counter(lru: u32, now_ms: i64, decay_time: u32) -> u32 {
    // 16 bits of minutes; a field written under an LRU policy decodes to
    // garbage, exactly as in Redis when the policy changes at run time.
    let ldt = (lru >> 8) & 0xffff;
    let counter = lru & 255;
    let periods = lfu_elapsed(ldt, now_ms).checked_div(decay_time).unwrap_or(0);
    counter.saturating_sub(periods)
}

/// Update an LFU field on access (`updateLFU`): decay, then a logarithmic
/// increment.
pub fn lfu_touch(lru: u32, now_ms: i64, log_factor: u32, decay_time: u32) -> u32 {
    let mut counter = lfu_counter(lru, now_ms, decay_time);
    if counter < 255 {
        let base = counter.saturating_sub(LFU_INIT_VAL) as f64;
        let p = 1.0 / (base * log_factor as f64 + 1.0);
        if rand::thread_rng().gen::<f64>() < p {
            counter += 1;
        }
    }
    (minutes(now_ms) << 8) | counter
}

// ----------------------------------------------------------- eviction

/// Evict until under `maxmemory`. Returns false if memory is still over
/// the limit (nothing evictable, or the noeviction policy).
pub fn perform_evictions(srv: &Server) -> bool {
    let max = srv.tun.maxmemory.load(Ordering::Relaxed) as usize;
    if max == 0 {
        return true;
    }
    crate::alloc::flush_local();
    if crate::alloc::used_memory() <= max {
        return true;
    }
    let pol = policy(srv);
    if pol == Policy::NoEviction {
        return false;
    }
    let dbs: Vec<usize> = (0..srv.store.dbs.len())
        .filter(|&d| if pol.volatile_only() { srv.store.db_volatile(d) > 0 } else { srv.store.db_size(d) > 0 })
        .collect();
    if dbs.is_empty() {
        return false;
    }
    let deadline = Instant::now() + Duration::from_millis(50);
    loop {
        if !evict_one(srv, pol, &dbs) {
            crate::alloc::flush_local();
            return crate::alloc::used_memory() <= max;
        }
        crate::alloc::flush_local();
        if crate::alloc::used_memory() <= max {
            return true;
        }
        if Instant::now() > deadline {
            // Like Redis's eviction time limit: continue on the next command.
            return crate::alloc::used_memory() <= max;
        }
    }
}

/// Sample keys and evict the best candidate. False if none was found.
fn evict_one(srv: &Server, pol: Policy, dbs: &[usize]) -> bool {
    let samples = srv.tun.maxmemory_samples.load(Ordering::Relaxed).clamp(1, 64);
    let now = crate::server::now_ms();
    let decay = srv.tun.lfu_decay_time.load(Ordering::Relaxed) as u32;
    let lru_now = crate::server::lru_of(now);
    let mut rng = rand::thread_rng();
    // (score: higher is a better victim, db, key)
    let mut best: Option<(i64, usize, Vec<u8>)> = None;
    let mut got = 0;
    let volatile = pol.volatile_only();
    // Shards are visited from a random one onwards, so a few keys in a
    // mostly empty keyspace are always found.
    let base = rng.gen_range(0..crate::keyspace::SHARDS);
    for t in 0..(samples * 8).max(crate::keyspace::SHARDS) {
        if got >= samples {
            break;
        }
        let db = dbs[rng.gen_range(0..dbs.len())];
        let shard_i = (base + t) % crate::keyspace::SHARDS;
        let _world = srv.store.world_read();
        let shard = srv.store.dbs[db].shards[shard_i].lock();
        if (volatile && shard.volatile == 0) || shard.keys == 0 {
            continue;
        }
        let n = shard.slots.len();
        let start = rng.gen_range(0..n);
        let Some(st) =
            (0..n)
                .map(|i| &shard.slots[(start + i) % n])
                .find(|st| if volatile { st.volatile > 0 } else { st.len() > 0 })
        else {
            continue;
        };
        let pick = rng.gen_range(0..st.len());
        let cand = if volatile {
            // Walk from a random position to the next key with a TTL.
            st.table.iter().cycle().skip(pick).take(st.len()).find(|e| e.expire_at != 0)
        } else {
            st.table.iter().nth(pick)
        };
        let Some(e) = cand else { continue };
        got += 1;
        let score = match pol {
            Policy::AllKeysLru | Policy::VolatileLru => lru_now.saturating_sub(e.lru) as i64,
            Policy::AllKeysLfu | Policy::VolatileLfu => 255 - lfu_counter(e.lru, now, decay) as i64,
            Policy::VolatileTtl => -e.expire_at,
            _ => rng.gen_range(0..i64::MAX),
        };
        if best.as_ref().is_none_or(|(s, _, _)| score > *s) {
            best = Some((score, db, e.key.to_vec()));
        }
    }
    let Some((_, db, key)) = best else { return false };
    let slot = ferrite_commands::key_hash_slot(&key);
    let removed = {
        let _world = srv.store.world_read();
        let mut shard = srv.store.dbs[db].shards[crate::keyspace::shard_of(slot)].lock();
        crate::persist::snapshot::cover_shard(srv, db, slot, &shard);
        let r = shard.remove(slot, &key);
        if r.is_some() {
            crate::persist::propagate::deleted_now(srv, db, &key);
        }
        r
    };
    if removed.is_some() {
        drop(removed);
        srv.store.dbs[db].signal_modified(&key);
        crate::cmd::client::tracking::invalidate_by_server(srv, &key);
        srv.stats.evicted_keys.fetch_add(1, Ordering::Relaxed);
        crate::notify::notify(srv, crate::notify::EVICTED, "evicted", &key, db);
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lfu_counter_decays_and_never_panics() {
        let now = 1_700_000_000_000i64;
        let init = lfu_init(now);
        assert_eq!(lfu_counter(init, now, 1), LFU_INIT_VAL);
        // Ten minutes later with decay 1 the counter dropped by ten, floored at 0.
        assert_eq!(lfu_counter(init, now + 10 * 60_000, 1), 0);
        // A field written as an LRU clock (unix seconds) must not panic.
        let lru_style = (now / 1000) as u32;
        let _ = lfu_counter(lru_style, now, 1);
        let _ = lfu_touch(lru_style, now, 10, 1);
        for p in Policy::ALL {
            assert_eq!(Policy::parse(p.1.as_bytes()), Some(p.0));
        }
    }
}
