//! Sets of byte strings.
//!
//! Members live in one insertion-ordered hash set (`indexmap`), so that a
//! random member (SPOP, SRANDMEMBER) is an O(1) index pick rather than a
//! walk of the table. Like Redis 7.0 the set reports the
//! `intset` encoding while every member is a strict 64-bit integer and the
//! count stays within `set-max-intset-entries`; once either stops holding it
//! becomes `hashtable` for good (`big`). Redis iterates an intset in
//! ascending numeric order, so [`Set::ordered`] sorts small integer sets
//! (at most `set-max-intset-entries` members) to reproduce that order.

use crate::keyspace::smallbytes::SmallBytes;
use crate::keyspace::KeyHasher;
use ferrite_resp::num::parse_i64;
use indexmap::IndexSet;
use std::collections::HashSet;
use std::hash::{Hash, Hasher};

#[derive(Clone, Debug, Default)]
pub struct Set {
    pub members: IndexSet<SmallBytes, KeyHasher>,
    /// Set once the set stopped qualifying as an intset.
    pub big: bool,
}

impl Set {
    pub fn len(&self) -> usize {
        self.members.len()
    }

    pub fn encoding(&self) -> &'static str {
        if self.big {
            "hashtable"
        } else {
            "intset"
        }
    }

    pub fn mem_usage(&self) -> usize {
        // Entries (hash + member) plus the index table (index + control byte).
        self.members.capacity() * (8 + 24 + 9) + self.members.iter().map(|m| m.heap_size()).sum::<usize>()
    }

    pub fn contains(&self, m: &[u8]) -> bool {
        self.members.contains(m)
    }

    /// Add a member; `max_intset` is `set-max-intset-entries`. Returns true
    /// if it was new.
    pub fn add(&mut self, m: &[u8], max_intset: usize) -> bool {
        if self.members.contains(m) {
            return false;
        }
        if !self.big && parse_i64(m).is_none() {
            self.big = true;
        }
        self.members.insert(SmallBytes::new(m));
        if !self.big && self.members.len() > max_intset {
            self.big = true;
        }
        true
    }

    pub fn remove(&mut self, m: &[u8]) -> bool {
        // O(1): the last member takes the removed one's place.
        let found = self.members.swap_remove(m);
        self.shrink_if_sparse();
        found
    }

    /// Give memory back once the set is down to an eighth of its capacity (Redis shrinks a dict under 10% fill).
    fn shrink_if_sparse(&mut self) {
        let (len, cap) = (self.members.len(), self.members.capacity());
        if cap > 64 && len * 8 < cap {
            self.members.shrink_to(len * 2);
        }
    }

    /// Members in the order Redis would iterate them: ascending numeric for
    /// an intset, hash order otherwise.
    pub fn ordered(&self) -> Vec<&SmallBytes> {
        let mut v: Vec<&SmallBytes> = self.members.iter().collect();
        if !self.big {
            v.sort_by_key(|m| parse_i64(m).unwrap_or(0));
        }
        v
    }

    /// Remove and return up to `k` distinct random members (all when
    /// `k >= len`).
    pub fn pop_random(&mut self, k: usize) -> Vec<SmallBytes> {
        let picked: Vec<SmallBytes> = self.sample(k).into_iter().cloned().collect();
        for m in &picked {
            self.members.swap_remove(m.as_slice());
        }
        self.shrink_if_sparse();
        picked
    }

    /// Up to `k` distinct random members, without removing them.
    pub fn sample(&self, k: usize) -> Vec<&SmallBytes> {
        let n = self.members.len();
        if k >= n {
            return self.members.iter().collect();
        }
        distinct_indices(n, k).into_iter().filter_map(|i| self.members.get_index(i)).collect()
    }

    /// One random member.
    pub fn random(&self) -> Option<&SmallBytes> {
        let n = self.members.len();
        if n == 0 {
            return None;
        }
        self.members.get_index(rand::Rng::gen_range(&mut rand::thread_rng(), 0..n))
    }

    /// The member at `i` (`i < len`), for uniform picks with repeats.
    pub fn get_index(&self, i: usize) -> Option<&SmallBytes> {
        self.members.get_index(i)
    }
}

/// `k < n` distinct indices in `0..n`, sorted (Floyd's algorithm).
pub fn distinct_indices(n: usize, k: usize) -> Vec<usize> {
    use rand::Rng;
    let mut rng = rand::thread_rng();
    let mut chosen = HashSet::with_capacity(k);
    for j in (n - k)..n {
        let t = rng.gen_range(0..=j);
        if !chosen.insert(t) {
            chosen.insert(j);
        }
    }
    let mut v: Vec<usize> = chosen.into_iter().collect();
    v.sort_unstable();
    v
}

/// A stable 64-bit hash of a member, used as the SSCAN/ZSCAN cursor order
/// for big collections.
pub fn scan_hash(m: &[u8]) -> u64 {
    let mut h = std::hash::DefaultHasher::new();
    m.hash(&mut h);
    h.finish()
}

/// Elements returned per SSCAN/ZSCAN step of a big collection: COUNT, but
/// at least 1/256 of the collection, so that a whole iteration (each step
/// costs O(n log batch)) stays within ~256 passes. COUNT is only a hint in
/// Redis too.
pub fn scan_batch(count: usize, len: usize) -> usize {
    count.max(len / 256)
}

/// One step of a cursor scan over a big collection: the items whose
/// `scan_hash` is >= `cursor`, in hash order, at least `count` of them (all
/// items sharing the last hash are included). Returns them and the next
/// cursor (0 when done). Every item present for the whole iteration is
/// returned at least once because the cursor only ever moves forward in
/// hash order. Cost: O(n log count) per call.
pub fn scan_step<'a, T: ?Sized + 'a>(
    items: impl Iterator<Item = &'a T>,
    key: impl Fn(&T) -> &[u8],
    cursor: u64,
    count: usize,
) -> (Vec<&'a T>, u64) {
    use std::collections::BinaryHeap;
    // Keep the `count + 1` smallest hashes >= cursor (max-heap by hash), plus
    // every item whose hash ties with the boundary.
    let limit = count.saturating_add(1);
    let mut heap: BinaryHeap<(u64, usize)> = BinaryHeap::new();
    let mut all: Vec<(u64, &'a T)> = Vec::new();
    for it in items {
        let h = scan_hash(key(it));
        if h < cursor {
            continue;
        }
        if heap.len() < limit {
            heap.push((h, all.len()));
            all.push((h, it));
        } else if let Some(&(top, _)) = heap.peek() {
            if h < top {
                heap.pop();
                heap.push((h, all.len()));
                all.push((h, it));
            } else if h == top {
                all.push((h, it));
            }
        }
    }
    let bound = heap.peek().map(|&(h, _)| h);
    let mut kept: Vec<(u64, &'a T)> = match bound {
        None => return (Vec::new(), 0),
        Some(b) => all.into_iter().filter(|&(h, _)| h <= b).collect(),
    };
    kept.sort_by_key(|&(h, _)| h);
    // Take `count` items, extended to the end of their hash group.
    let mut end = count.min(kept.len());
    while end > 0 && end < kept.len() && kept[end].0 == kept[end - 1].0 {
        end += 1;
    }
    let next = if end < kept.len() { kept[end].0 } else { 0 };
    kept.truncate(end);
    (kept.into_iter().map(|(_, t)| t).collect(), next)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoding_transitions() {
        let mut s = Set::default();
        assert!(s.add(b"3", 3));
        assert!(s.add(b"-1", 3));
        assert!(!s.add(b"3", 3));
        assert_eq!(s.encoding(), "intset");
        let o: Vec<&[u8]> = s.ordered().into_iter().map(|m| m.as_slice()).collect();
        assert_eq!(o, vec![&b"-1"[..], b"3"]);
        s.add(b"7", 3);
        assert_eq!(s.encoding(), "intset");
        s.add(b"8", 3);
        assert_eq!(s.encoding(), "hashtable");
        let mut t = Set::default();
        t.add(b"01", 10);
        assert_eq!(t.encoding(), "hashtable");
        t.remove(b"01");
        t.add(b"1", 10);
        assert_eq!(t.encoding(), "hashtable");
    }

    #[test]
    fn scan_covers_everything() {
        let items: Vec<Vec<u8>> = (0..1000).map(|i| format!("m{i}").into_bytes()).collect();
        let mut seen = HashSet::new();
        let mut cursor = 0;
        let mut rounds = 0;
        loop {
            let (got, next) = scan_step(items.iter(), |v: &Vec<u8>| v.as_slice(), cursor, 7);
            for g in got {
                seen.insert(g.clone());
            }
            rounds += 1;
            if next == 0 {
                break;
            }
            assert!(next > cursor);
            cursor = next;
        }
        assert_eq!(seen.len(), 1000);
        assert!(rounds >= 1000 / 8);
    }

    #[test]
    fn floyd() {
        for _ in 0..100 {
            let v = distinct_indices(10, 4);
            assert_eq!(v.len(), 4);
            assert!(v.windows(2).all(|w| w[0] < w[1]));
            assert!(v.iter().all(|&i| i < 10));
        }
    }
}
