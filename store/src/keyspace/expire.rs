//! Active expiry: a background sweep that deletes keys whose TTL passed,
//! complementing the lazy check every lookup does.
//!
//! Like Redis's `activeExpireCycle`, each cycle has a budget; shards and
//! slots without volatile keys are skipped in O(1), and the sweep resumes
//! where the previous cycle stopped, so every volatile key is visited
//! within a bounded number of cycles.

use super::{Store, SHARDS};

/// Cursor across cycles: (db, shard, slot position).
#[derive(Default, Debug, Clone, Copy)]
pub struct ExpireCursor {
    db: usize,
    shard: usize,
    pos: usize,
}

/// Visit up to `budget` entries of volatile slots, removing expired keys.
/// `on_expired(db, key)` runs for each removed key while its shard is still
/// locked, so its effects (watchers, notifications) are ordered before any
/// later command on that key. Returns how many keys expired.
pub fn active_expire_cycle(
    store: &Store,
    cur: &mut ExpireCursor,
    now_ms: i64,
    mut budget: usize,
    mut on_expired: impl FnMut(usize, &[u8]),
) -> usize {
    let mut out = 0usize;
    let ndb = store.dbs.len();
    let total_shards = ndb * SHARDS;
    let mut visited_shards = 0;
    while budget > 0 && visited_shards <= total_shards {
        if cur.db >= ndb {
            cur.db = 0;
        }
        let db = cur.db;
        {
            let _w = store.world_read();
            let mut shard = store.dbs[db].shards[cur.shard].lock();
            if shard.volatile > 0 {
                let nslots = shard.slots.len();
                while cur.pos < nslots && budget > 0 {
                    let st = &mut shard.slots[cur.pos];
                    if st.volatile > 0 {
                        budget = budget.saturating_sub(st.table.len().max(1));
                        let mut removed = 0u32;
                        st.table.retain(|e| {
                            if e.is_expired(now_ms) {
                                on_expired(db, &e.key);
                                out += 1;
                                removed += 1;
                                false
                            } else {
                                true
                            }
                        });
                        st.volatile -= removed;
                        shard.keys -= removed as usize;
                        shard.volatile -= removed as usize;
                    }
                    cur.pos += 1;
                }
                if cur.pos < nslots {
                    // Budget exhausted mid-shard: resume here next cycle.
                    return out;
                }
            }
        }
        cur.pos = 0;
        cur.shard += 1;
        visited_shards += 1;
        if cur.shard >= SHARDS {
            cur.shard = 0;
            cur.db += 1;
        }
    }
    out
}
