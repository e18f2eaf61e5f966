//! Sorted sets: members ordered by (score, member).
//!
//! Representation: a hash map member -> score for O(1) ZSCORE/membership,
//! plus a B-tree of (score, member) keys for order. Complexity:
//! - add/remove/score update: O(log n);
//! - ranges by score or lex (equal scores): O(log n) seek + O(k) output;
//! - ZRANK: O(min(rank, n - rank)) (the B-tree has no subtree counts; both
//!   ends are walked at once so the nearer one wins);
//! - range by rank: O(min(start, n - end) + k), walking from the nearer end;
//! - ZCOUNT/ZLEXCOUNT: O(log n + matching elements).
//!
//! Encoding names follow Redis 7.0: `listpack` while the zset holds at most
//! `zset-max-listpack-entries` members none longer than
//! `zset-max-listpack-value` bytes, `skiplist` after that (never back).

use crate::keyspace::smallbytes::SmallBytes;
use std::cmp::Ordering;
use std::collections::{BTreeSet, HashMap};
use std::ops::Bound;

/// A (score, member) pair ordered like Redis's skiplist.
#[derive(Clone, Debug)]
pub struct ZKey {
    pub score: f64,
    pub member: SmallBytes,
}

impl Ord for ZKey {
    fn cmp(&self, o: &Self) -> Ordering {
        self.score
            .partial_cmp(&o.score)
            .unwrap_or(Ordering::Equal)
            .then_with(|| self.member.as_slice().cmp(o.member.as_slice()))
    }
}

impl PartialOrd for ZKey {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}

impl PartialEq for ZKey {
    fn eq(&self, o: &Self) -> bool {
        self.cmp(o) == Ordering::Equal
    }
}

impl Eq for ZKey {}

fn zk(score: f64, member: &[u8]) -> ZKey {
    ZKey { score, member: SmallBytes::new(member) }
}

#[derive(Clone, Debug, Default)]
pub struct ZSet {
    pub scores: HashMap<SmallBytes, f64>,
    pub tree: BTreeSet<ZKey>,
    /// Set once the zset outgrew the listpack limits.
    pub big: bool,
}

/// A score interval as parsed from `[(]min [(]max`.
#[derive(Clone, Copy, Debug)]
pub struct ScoreRange {
    pub min: f64,
    pub max: f64,
    pub minex: bool,
    pub maxex: bool,
}

impl ScoreRange {
    pub fn gte_min(&self, v: f64) -> bool {
        if self.minex {
            v > self.min
        } else {
            v >= self.min
        }
    }
    pub fn lte_max(&self, v: f64) -> bool {
        if self.maxex {
            v < self.max
        } else {
            v <= self.max
        }
    }
    pub fn is_empty(&self) -> bool {
        self.min > self.max || (self.min == self.max && (self.minex || self.maxex))
    }
}

/// One end of a lex range.
#[derive(Clone, Debug)]
pub enum LexBound {
    NegInf,
    PosInf,
    Incl(Vec<u8>),
    Excl(Vec<u8>),
}

#[derive(Clone, Debug)]
pub struct LexRange {
    pub min: LexBound,
    pub max: LexBound,
}

impl LexRange {
    pub fn gte_min(&self, m: &[u8]) -> bool {
        match &self.min {
            LexBound::NegInf => true,
            LexBound::PosInf => false,
            LexBound::Incl(x) => m >= x.as_slice(),
            LexBound::Excl(x) => m > x.as_slice(),
        }
    }
    pub fn lte_max(&self, m: &[u8]) -> bool {
        match &self.max {
            LexBound::NegInf => false,
            LexBound::PosInf => true,
            LexBound::Incl(x) => m <= x.as_slice(),
            LexBound::Excl(x) => m < x.as_slice(),
        }
    }
    /// Redis's emptiness test (`zslIsInLexRange` preamble).
    pub fn is_empty(&self) -> bool {
        fn val(b: &LexBound) -> (i8, &[u8], bool) {
            match b {
                LexBound::NegInf => (-1, &[], false),
                LexBound::PosInf => (1, &[], false),
                LexBound::Incl(x) => (0, x, false),
                LexBound::Excl(x) => (0, x, true),
            }
        }
        let (a, b) = (val(&self.min), val(&self.max));
        let cmp = match (a.0, b.0) {
            (0, 0) => a.1.cmp(b.1),
            (x, y) => x.cmp(&y),
        };
        cmp == Ordering::Greater || (cmp == Ordering::Equal && (a.2 || b.2))
    }
}

pub type ZIter<'a> = Box<dyn Iterator<Item = &'a ZKey> + 'a>;

impl ZSet {
    pub fn len(&self) -> usize {
        self.scores.len()
    }

    pub fn encoding(&self) -> &'static str {
        if self.big {
            "skiplist"
        } else {
            "listpack"
        }
    }

    pub fn mem_usage(&self) -> usize {
        self.scores.capacity() * 40
            + self.tree.len() * 40
            + self.scores.keys().map(|m| 2 * m.heap_size()).sum::<usize>()
    }

    pub fn score(&self, m: &[u8]) -> Option<f64> {
        self.scores.get(m).copied()
    }

    /// Would adding a new member of this length outgrow the listpack?
    pub fn check_grow(&mut self, member_len: usize, max_entries: usize, max_value: usize) {
        if !self.big && (self.scores.len() + 1 > max_entries || member_len > max_value) {
            self.big = true;
        }
    }

    /// Set `m`'s score (adding it if new). Returns the old score. The
    /// listpack encoding converts first when the new member does not fit;
    /// a listpack stores -0 as 0 like Redis 7.0 does.
    pub fn set_score(&mut self, m: &[u8], mut score: f64, max_entries: usize, max_value: usize) -> Option<f64> {
        let old = self.scores.get(m).copied();
        if old.is_none() {
            self.check_grow(m.len(), max_entries, max_value);
        }
        if !self.big && score == 0.0 {
            score = 0.0;
        }
        match old {
            Some(o) => {
                if o.to_bits() != score.to_bits() {
                    self.tree.remove(&zk(o, m));
                    self.tree.insert(zk(score, m));
                    if let Some(s) = self.scores.get_mut(m) {
                        *s = score;
                    }
                }
            }
            None => {
                self.tree.insert(zk(score, m));
                self.scores.insert(SmallBytes::new(m), score);
            }
        }
        old
    }

    pub fn remove(&mut self, m: &[u8]) -> Option<f64> {
        let s = self.scores.remove(m)?;
        self.tree.remove(&zk(s, m));
        Some(s)
    }

    pub fn pop_first(&mut self) -> Option<ZKey> {
        let k = self.tree.pop_first()?;
        self.scores.remove(k.member.as_slice());
        Some(k)
    }

    pub fn pop_last(&mut self) -> Option<ZKey> {
        let k = self.tree.pop_last()?;
        self.scores.remove(k.member.as_slice());
        Some(k)
    }

    /// 0-based rank in ascending order (descending with `rev`).
    pub fn rank(&self, m: &[u8], rev: bool) -> Option<usize> {
        let s = self.score(m)?;
        let key = zk(s, m);
        let mut below = self.tree.range(..&key);
        let mut above = self.tree.range(&key..);
        let n = self.tree.len();
        let mut steps = 0usize;
        let asc = loop {
            if below.next().is_none() {
                break steps;
            }
            if above.next().is_none() {
                break n - steps;
            }
            steps += 1;
        };
        Some(if rev { n - 1 - asc } else { asc })
    }

    /// Elements with ascending ranks `start..=end` (already clamped, start
    /// <= end < len), in ascending order, or descending ranks with `rev`
    /// (rank 0 = highest) in descending order.
    pub fn range_by_rank(&self, start: usize, end: usize, rev: bool) -> ZIter<'_> {
        let n = self.tree.len();
        let cnt = end - start + 1;
        // Ascending positions covered.
        let (a_start, a_end) = if rev { (n - 1 - end, n - 1 - start) } else { (start, end) };
        let from_front = a_start <= n - 1 - a_end;
        match (rev, from_front) {
            (false, true) => Box::new(self.tree.iter().skip(a_start).take(cnt)),
            (true, false) => Box::new(self.tree.iter().rev().skip(n - 1 - a_end).take(cnt)),
            (false, false) => {
                let mut v: Vec<&ZKey> = self.tree.iter().rev().skip(n - 1 - a_end).take(cnt).collect();
                v.reverse();
                Box::new(v.into_iter())
            }
            (true, true) => {
                let mut v: Vec<&ZKey> = self.tree.iter().skip(a_start).take(cnt).collect();
                v.reverse();
                Box::new(v.into_iter())
            }
        }
    }

    /// Elements in a score range, ascending (descending with `rev`).
    pub fn range_by_score(&self, r: &ScoreRange, rev: bool) -> ZIter<'_> {
        if r.is_empty() || (r.minex && r.min == f64::INFINITY) {
            return Box::new(std::iter::empty());
        }
        let lower = if r.min == f64::NEG_INFINITY && !r.minex {
            Bound::Unbounded
        } else {
            Bound::Included(zk(if r.minex { r.min.next_up() } else { r.min }, b""))
        };
        let upper = if r.maxex {
            Bound::Excluded(zk(r.max, b""))
        } else if r.max == f64::INFINITY {
            Bound::Unbounded
        } else {
            Bound::Excluded(zk(r.max.next_up(), b""))
        };
        if let (Bound::Included(a), Bound::Excluded(b)) = (&lower, &upper) {
            if a > b {
                return Box::new(std::iter::empty());
            }
        }
        let it = self.tree.range((lower, upper));
        if rev {
            Box::new(it.rev())
        } else {
            Box::new(it)
        }
    }

    /// Elements in a lex range (see [`ZSet::lex_start`]).
    pub fn range_by_lex<'a>(&'a self, r: &'a LexRange, rev: bool) -> ZIter<'a> {
        let it = self.lex_start(r, rev);
        if rev {
            Box::new(it.take_while(move |k| r.gte_min(&k.member)))
        } else {
            Box::new(it.take_while(move |k| r.lte_max(&k.member)))
        }
    }

    /// Redis's lex walk: empty unless the last element is at or above min
    /// and the first at or below max; otherwise start at the first element
    /// at or above min (going backwards: the last at or below max), which
    /// must itself be in range, and continue unfiltered from there (callers
    /// skip their offset, then stop at the first element out of range).
    /// Meaningful when all scores are equal, where it seeks in O(log n);
    /// with mixed scores it reproduces the listpack walk.
    pub fn lex_start<'a>(&'a self, r: &'a LexRange, rev: bool) -> ZIter<'a> {
        let (first, last) = match (self.tree.first(), self.tree.last()) {
            (Some(a), Some(b)) => (a, b),
            _ => return Box::new(std::iter::empty()),
        };
        if r.is_empty() || !r.gte_min(&last.member) || !r.lte_max(&first.member) {
            return Box::new(std::iter::empty());
        }
        let it: ZIter<'a> = if first.score == last.score {
            let s = first.score;
            if rev {
                let upper = match &r.max {
                    LexBound::NegInf => return Box::new(std::iter::empty()),
                    LexBound::PosInf => Bound::Unbounded,
                    LexBound::Incl(x) => Bound::Included(zk(s, x)),
                    LexBound::Excl(x) => Bound::Excluded(zk(s, x)),
                };
                Box::new(self.tree.range((Bound::Unbounded, upper)).rev())
            } else {
                let lower = match &r.min {
                    LexBound::NegInf => Bound::Unbounded,
                    LexBound::PosInf => return Box::new(std::iter::empty()),
                    LexBound::Incl(x) => Bound::Included(zk(s, x)),
                    LexBound::Excl(x) => Bound::Excluded(zk(s, x)),
                };
                Box::new(self.tree.range((lower, Bound::Unbounded)))
            }
        } else if rev {
            Box::new(self.tree.iter().rev().skip_while(move |k| !r.lte_max(&k.member)))
        } else {
            Box::new(self.tree.iter().skip_while(move |k| !r.gte_min(&k.member)))
        };
        let mut it = it.peekable();
        let ok = match it.peek() {
            Some(k) => {
                if rev {
                    r.gte_min(&k.member)
                } else {
                    r.lte_max(&k.member)
                }
            }
            None => false,
        };
        if ok {
            Box::new(it)
        } else {
            Box::new(std::iter::empty())
        }
    }

    /// Drop the members in `keys` (cloned out of a range first).
    pub fn remove_keys(&mut self, keys: Vec<ZKey>) -> usize {
        let n = keys.len();
        for k in keys {
            self.tree.remove(&k);
            self.scores.remove(k.member.as_slice());
        }
        n
    }

    /// Build a result zset from (member, score) pairs, choosing the
    /// encoding the way Redis converts store results.
    pub fn from_pairs(
        pairs: impl IntoIterator<Item = (SmallBytes, f64)>,
        max_entries: usize,
        max_value: usize,
    ) -> ZSet {
        let mut z = ZSet { big: true, ..Default::default() };
        let mut maxlen = 0;
        for (m, s) in pairs {
            maxlen = maxlen.max(m.len());
            z.tree.insert(ZKey { score: s, member: m.clone() });
            z.scores.insert(m, s);
        }
        if z.len() <= max_entries && maxlen <= max_value {
            z.big = false;
            // A listpack keeps -0 as 0.
            let negz: Vec<SmallBytes> =
                z.scores.iter().filter(|(_, s)| **s == 0.0 && s.is_sign_negative()).map(|(m, _)| m.clone()).collect();
            for m in negz {
                z.set_score(&m, 0.0, usize::MAX, usize::MAX);
            }
        }
        z
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mk(pairs: &[(f64, &str)]) -> ZSet {
        let mut z = ZSet::default();
        for (s, m) in pairs {
            z.set_score(m.as_bytes(), *s, 128, 64);
        }
        z
    }

    fn names(it: ZIter<'_>) -> Vec<String> {
        it.map(|k| String::from_utf8_lossy(&k.member).to_string()).collect()
    }

    #[test]
    fn ranks_and_ranges() {
        let z = mk(&[(1.0, "a"), (2.0, "b"), (2.0, "c"), (f64::INFINITY, "d"), (f64::NEG_INFINITY, "e")]);
        assert_eq!(z.rank(b"e", false), Some(0));
        assert_eq!(z.rank(b"c", false), Some(3));
        assert_eq!(z.rank(b"d", false), Some(4));
        assert_eq!(z.rank(b"d", true), Some(0));
        assert_eq!(z.rank(b"x", true), None);
        assert_eq!(names(z.range_by_rank(1, 3, false)), ["a", "b", "c"]);
        assert_eq!(names(z.range_by_rank(3, 4, false)), ["c", "d"]);
        assert_eq!(names(z.range_by_rank(0, 1, true)), ["d", "c"]);
        assert_eq!(names(z.range_by_rank(3, 4, true)), ["a", "e"]);
        let r = ScoreRange { min: 1.0, max: 2.0, minex: true, maxex: false };
        assert_eq!(names(z.range_by_score(&r, false)), ["b", "c"]);
        assert_eq!(names(z.range_by_score(&r, true)), ["c", "b"]);
        let r = ScoreRange { min: f64::NEG_INFINITY, max: f64::INFINITY, minex: false, maxex: false };
        assert_eq!(z.range_by_score(&r, false).count(), 5);
        let r = ScoreRange { min: f64::NEG_INFINITY, max: f64::INFINITY, minex: true, maxex: true };
        assert_eq!(z.range_by_score(&r, false).count(), 3);
        let r = ScoreRange { min: 2.0, max: 2.0, minex: false, maxex: false };
        assert_eq!(z.range_by_score(&r, false).count(), 2);
        let r = ScoreRange { min: 3.0, max: 2.0, minex: false, maxex: false };
        assert_eq!(z.range_by_score(&r, false).count(), 0);
    }

    #[test]
    fn lex() {
        let z = mk(&[(0.0, "a"), (0.0, "b"), (0.0, "c"), (0.0, "d")]);
        let r = LexRange { min: LexBound::Excl(b"a".to_vec()), max: LexBound::Incl(b"c".to_vec()) };
        assert_eq!(names(z.range_by_lex(&r, false)), ["b", "c"]);
        assert_eq!(names(z.range_by_lex(&r, true)), ["c", "b"]);
        let r = LexRange { min: LexBound::NegInf, max: LexBound::PosInf };
        assert_eq!(z.range_by_lex(&r, false).count(), 4);
        let r = LexRange { min: LexBound::PosInf, max: LexBound::PosInf };
        assert_eq!(z.range_by_lex(&r, false).count(), 0);
    }

    #[test]
    fn encodings_and_negative_zero() {
        let mut z = ZSet::default();
        z.set_score(b"a", -0.0, 2, 64);
        assert!(z.score(b"a").is_some_and(|s| s.is_sign_positive()));
        z.set_score(b"b", 1.0, 2, 64);
        assert_eq!(z.encoding(), "listpack");
        z.set_score(b"c", -0.0, 2, 64);
        assert_eq!(z.encoding(), "skiplist");
        assert!(z.score(b"c").is_some_and(|s| s.is_sign_negative()));
        z.remove(b"c");
        z.remove(b"b");
        assert_eq!(z.encoding(), "skiplist");
    }
}
