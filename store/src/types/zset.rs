//! Sorted sets: members ordered by (score, member).
//!
//! Representation: a hash map member -> score for O(1) ZSCORE/membership,
//! plus [`ZTree`], an order-statistic index of (score, member) keys (sorted
//! chunks with a Fenwick tree of chunk sizes). Complexity:
//! - add/remove/score update: O(log n + chunk size);
//! - ZRANK/ZREVRANK and the key at a rank: O(log n);
//! - ranges by rank, score or lex (equal scores): O(log n) seek + O(k)
//!   output, LIMIT offsets skipped in O(log n);
//! - ZCOUNT/ZLEXCOUNT (equal scores): O(log n).
//!
//! Encoding names follow Redis 7.0: `listpack` while the zset holds at most
//! `zset-max-listpack-entries` members none longer than
//! `zset-max-listpack-value` bytes, `skiplist` after that (never back).

use crate::keyspace::smallbytes::SmallBytes;
use std::cmp::Ordering;
use std::collections::HashMap;
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
    /// Order-statistic index of (score, member).
    pub tree: ZTree,
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

/// An order-statistic sorted container of [`ZKey`]s: a list of sorted
/// chunks (at most `CHUNK_MAX` keys each) plus a Fenwick tree over the
/// chunk sizes. With n keys and c = n / CHUNK_MAX chunks:
/// - insert/remove: O(log n + CHUNK_MAX) (plus O(c) when a chunk splits
///   or empties, amortised over CHUNK_MAX/2 operations);
/// - rank of a key and key at a rank: O(log n);
/// - iterators are double-ended and `nth`/`nth_back` jump in O(log n),
///   so skipping an offset costs O(log n).
#[derive(Clone, Debug, Default)]
pub struct ZTree {
    chunks: Vec<Vec<ZKey>>,
    /// Fenwick tree (1-based) over `chunks[i].len()`.
    fen: Vec<usize>,
    len: usize,
}

const CHUNK_MAX: usize = 256;

impl ZTree {
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn rebuild(&mut self) {
        let m = self.chunks.len();
        self.fen = vec![0; m + 1];
        for i in 0..m {
            let j = i + 1;
            self.fen[j] += self.chunks[i].len();
            let p = j + (j & j.wrapping_neg());
            if p <= m {
                let v = self.fen[j];
                self.fen[p] += v;
            }
        }
    }

    fn fen_add(&mut self, chunk: usize, delta: isize) {
        let mut j = chunk + 1;
        while j < self.fen.len() {
            self.fen[j] = (self.fen[j] as isize + delta) as usize;
            j += j & j.wrapping_neg();
        }
    }

    /// Number of keys in chunks `0..chunk`.
    fn prefix(&self, chunk: usize) -> usize {
        let mut j = chunk;
        let mut s = 0;
        while j > 0 {
            s += self.fen[j];
            j -= j & j.wrapping_neg();
        }
        s
    }

    /// (chunk, offset) of the key at rank `r` (< len).
    fn locate(&self, mut r: usize) -> (usize, usize) {
        let m = self.chunks.len();
        let mut pos = 0;
        let mut step = if m == 0 { 0 } else { 1usize << (usize::BITS - 1 - m.leading_zeros()) };
        while step > 0 {
            let nxt = pos + step;
            if nxt <= m && self.fen[nxt] <= r {
                pos = nxt;
                r -= self.fen[nxt];
            }
            step >>= 1;
        }
        (pos, r)
    }

    /// Index of the chunk where `k` is or would go.
    fn chunk_for(&self, k: &ZKey) -> usize {
        let i = self.chunks.partition_point(|c| c.last().is_some_and(|l| l < k));
        i.min(self.chunks.len().saturating_sub(1))
    }

    /// Insert; returns false if an equal key was present.
    pub fn insert(&mut self, k: ZKey) -> bool {
        if self.chunks.is_empty() {
            self.chunks.push(vec![k]);
            self.len = 1;
            self.rebuild();
            return true;
        }
        let ci = self.chunk_for(&k);
        let c = &mut self.chunks[ci];
        match c.binary_search(&k) {
            Ok(_) => return false,
            Err(p) => c.insert(p, k),
        }
        self.len += 1;
        if self.chunks[ci].len() > CHUNK_MAX {
            let tail = self.chunks[ci].split_off(CHUNK_MAX / 2);
            self.chunks.insert(ci + 1, tail);
            self.rebuild();
        } else {
            self.fen_add(ci, 1);
        }
        true
    }

    /// Remove an equal key; returns it.
    pub fn remove(&mut self, k: &ZKey) -> Option<ZKey> {
        if self.chunks.is_empty() {
            return None;
        }
        let ci = self.chunk_for(k);
        let p = self.chunks[ci].binary_search(k).ok()?;
        let out = self.chunks[ci].remove(p);
        self.len -= 1;
        if self.chunks[ci].is_empty() {
            self.chunks.remove(ci);
            self.rebuild();
        } else {
            self.fen_add(ci, -1);
        }
        Some(out)
    }

    pub fn first(&self) -> Option<&ZKey> {
        self.chunks.first().and_then(|c| c.first())
    }

    pub fn last(&self) -> Option<&ZKey> {
        self.chunks.last().and_then(|c| c.last())
    }

    pub fn pop_first(&mut self) -> Option<ZKey> {
        let k = self.first()?.clone();
        self.remove(&k)
    }

    pub fn pop_last(&mut self) -> Option<ZKey> {
        let k = self.last()?.clone();
        self.remove(&k)
    }

    /// Number of keys strictly less than `k`.
    pub fn rank_of(&self, k: &ZKey) -> usize {
        if self.chunks.is_empty() {
            return 0;
        }
        let ci = self.chunk_for(k);
        self.prefix(ci) + self.chunks[ci].partition_point(|x| x < k)
    }

    /// Number of keys less than or equal to `k`.
    fn rank_after(&self, k: &ZKey) -> usize {
        if self.chunks.is_empty() {
            return 0;
        }
        let ci = self.chunk_for(k);
        self.prefix(ci) + self.chunks[ci].partition_point(|x| x <= k)
    }

    pub fn get(&self, rank: usize) -> Option<&ZKey> {
        if rank >= self.len {
            return None;
        }
        let (c, o) = self.locate(rank);
        self.chunks.get(c).and_then(|c| c.get(o))
    }

    /// Keys with ranks in `lo..hi`.
    pub fn ranks(&self, lo: usize, hi: usize) -> ZTreeIter<'_> {
        let hi = hi.min(self.len);
        let lo = lo.min(hi);
        let mut it = ZTreeIter { t: self, lo, hi, f: (0, 0), b: (0, 0) };
        it.seek_front();
        it.seek_back();
        it
    }

    pub fn iter(&self) -> ZTreeIter<'_> {
        self.ranks(0, self.len)
    }

    /// Keys within the bounds (never panics on inverted bounds).
    pub fn range(&self, (lower, upper): (Bound<ZKey>, Bound<ZKey>)) -> ZTreeIter<'_> {
        let lo = match &lower {
            Bound::Unbounded => 0,
            Bound::Included(k) => self.rank_of(k),
            Bound::Excluded(k) => self.rank_after(k),
        };
        let hi = match &upper {
            Bound::Unbounded => self.len,
            Bound::Included(k) => self.rank_after(k),
            Bound::Excluded(k) => self.rank_of(k),
        };
        self.ranks(lo, hi.max(lo))
    }
}

/// A double-ended iterator over a rank interval of a [`ZTree`].
pub struct ZTreeIter<'a> {
    t: &'a ZTree,
    lo: usize,
    hi: usize,
    /// Position of rank `lo` (valid when lo < hi).
    f: (usize, usize),
    /// Position of rank `hi - 1` (valid when lo < hi).
    b: (usize, usize),
}

impl<'a> ZTreeIter<'a> {
    fn seek_front(&mut self) {
        if self.lo < self.hi {
            self.f = self.t.locate(self.lo);
        }
    }
    fn seek_back(&mut self) {
        if self.lo < self.hi {
            self.b = self.t.locate(self.hi - 1);
        }
    }
}

impl<'a> Iterator for ZTreeIter<'a> {
    type Item = &'a ZKey;

    fn next(&mut self) -> Option<&'a ZKey> {
        if self.lo >= self.hi {
            return None;
        }
        let (c, o) = self.f;
        let item = self.t.chunks.get(c)?.get(o)?;
        self.lo += 1;
        if o + 1 < self.t.chunks[c].len() {
            self.f = (c, o + 1);
        } else {
            self.f = (c + 1, 0);
        }
        Some(item)
    }

    fn nth(&mut self, n: usize) -> Option<&'a ZKey> {
        if n > 0 {
            self.lo = self.lo.saturating_add(n).min(self.hi);
            self.seek_front();
        }
        self.next()
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let n = self.hi - self.lo;
        (n, Some(n))
    }

    fn count(self) -> usize {
        self.hi - self.lo
    }
}

impl<'a> DoubleEndedIterator for ZTreeIter<'a> {
    fn next_back(&mut self) -> Option<&'a ZKey> {
        if self.lo >= self.hi {
            return None;
        }
        let (c, o) = self.b;
        let item = self.t.chunks.get(c)?.get(o)?;
        self.hi -= 1;
        if o > 0 {
            self.b = (c, o - 1);
        } else if c > 0 {
            self.b = (c - 1, self.t.chunks[c - 1].len().saturating_sub(1));
        }
        Some(item)
    }

    fn nth_back(&mut self, n: usize) -> Option<&'a ZKey> {
        if n > 0 {
            self.hi = self.hi.saturating_sub(n).max(self.lo);
            self.seek_back();
        }
        self.next_back()
    }
}

impl<'a> ExactSizeIterator for ZTreeIter<'a> {}

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

    /// 0-based rank in ascending order (descending with `rev`). O(log n).
    pub fn rank(&self, m: &[u8], rev: bool) -> Option<usize> {
        let s = self.score(m)?;
        let asc = self.tree.rank_of(&zk(s, m));
        Some(if rev { self.tree.len() - 1 - asc } else { asc })
    }

    /// Elements with ascending ranks `start..=end` (already clamped, start
    /// <= end < len), in ascending order, or descending ranks with `rev`
    /// (rank 0 = highest) in descending order.
    pub fn range_by_rank(&self, start: usize, end: usize, rev: bool) -> ZIter<'_> {
        let n = self.tree.len();
        if rev {
            Box::new(self.tree.ranks(n - 1 - end, n - start).rev())
        } else {
            Box::new(self.tree.ranks(start, end + 1))
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

    /// Number of elements in a lex range: O(log n) when all scores are
    /// equal (the meaningful case), a walk otherwise.
    pub fn lex_count(&self, r: &LexRange) -> usize {
        let (first, last) = match (self.tree.first(), self.tree.last()) {
            (Some(a), Some(b)) => (a, b),
            _ => return 0,
        };
        if first.score != last.score || r.is_empty() {
            return self.range_by_lex(r, false).count();
        }
        let s = first.score;
        let lower = match &r.min {
            LexBound::NegInf => Bound::Unbounded,
            LexBound::PosInf => return 0,
            LexBound::Incl(x) => Bound::Included(zk(s, x)),
            LexBound::Excl(x) => Bound::Excluded(zk(s, x)),
        };
        let upper = match &r.max {
            LexBound::NegInf => return 0,
            LexBound::PosInf => Bound::Unbounded,
            LexBound::Incl(x) => Bound::Included(zk(s, x)),
            LexBound::Excl(x) => Bound::Excluded(zk(s, x)),
        };
        self.tree.range((lower, upper)).len()
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
    fn ztree_matches_btreeset() {
        use rand::{Rng, SeedableRng};
        use std::collections::BTreeSet;
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let mut t = ZTree::default();
        let mut r: BTreeSet<ZKey> = BTreeSet::new();
        for step in 0..40000 {
            let k = zk(rng.gen_range(0..50) as f64, format!("m{}", rng.gen_range(0..400)).as_bytes());
            if rng.gen_bool(0.6) {
                assert_eq!(t.insert(k.clone()), r.insert(k.clone()));
            } else {
                assert_eq!(t.remove(&k).is_some(), r.remove(&k));
            }
            assert_eq!(t.len(), r.len());
            if step % 97 == 0 {
                let a: Vec<&ZKey> = t.iter().collect();
                let b: Vec<&ZKey> = r.iter().collect();
                assert_eq!(a, b);
                let a: Vec<&ZKey> = t.iter().rev().collect();
                let b: Vec<&ZKey> = r.iter().rev().collect();
                assert_eq!(a, b);
                let probe = zk(rng.gen_range(0..50) as f64, format!("m{}", rng.gen_range(0..400)).as_bytes());
                assert_eq!(t.rank_of(&probe), r.range(..&probe).count());
                let lo = zk(rng.gen_range(0..50) as f64, b"");
                let hi = zk(rng.gen_range(0..50) as f64, b"m2");
                let a: Vec<&ZKey> = t.range((Bound::Included(lo.clone()), Bound::Excluded(hi.clone()))).collect();
                let b: Vec<&ZKey> = if lo <= hi {
                    r.range((Bound::Included(lo.clone()), Bound::Excluded(hi.clone()))).collect()
                } else {
                    vec![]
                };
                assert_eq!(a, b);
                let a: Vec<&ZKey> = t.range((Bound::Excluded(lo.clone()), Bound::Included(hi.clone()))).rev().collect();
                let b: Vec<&ZKey> = if lo < hi {
                    r.range((Bound::Excluded(lo.clone()), Bound::Included(hi.clone()))).rev().collect()
                } else {
                    vec![]
                };
                assert_eq!(a, b);
                if !r.is_empty() {
                    let n = r.len();
                    let i = rng.gen_range(0..n);
                    assert_eq!(t.get(i), r.iter().nth(i));
                    let j = rng.gen_range(i..n);
                    let a: Vec<&ZKey> = t.ranks(i, j + 1).collect();
                    let b: Vec<&ZKey> = r.iter().skip(i).take(j + 1 - i).collect();
                    assert_eq!(a, b);
                    let mut it = t.iter();
                    let mut rit = r.iter();
                    assert_eq!(it.nth(i), rit.nth(i));
                    assert_eq!(it.nth_back(j.min(n - i - 1)), rit.nth_back(j.min(n - i - 1)));
                    assert_eq!(it.next(), rit.next());
                    assert_eq!(it.next_back(), rit.next_back());
                    assert_eq!(it.len(), rit.len());
                }
            }
        }
        while let Some(k) = t.pop_first() {
            assert_eq!(Some(k), r.pop_first());
            if let Some(k) = t.pop_last() {
                assert_eq!(Some(k), r.pop_last());
            }
        }
        assert!(r.is_empty() && t.is_empty());
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
