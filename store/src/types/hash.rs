//! Hashes: field -> value maps, with Redis's two encodings.
//!
//! - `listpack`: a compact packed byte buffer of length-prefixed
//!   field/value pairs in insertion order (like Redis's listpack), used
//!   while the hash has at most `hash-max-listpack-entries` entries and every
//!   field and value is at most `hash-max-listpack-value` bytes.
//! - `hashtable`: a chained hash table with power-of-two buckets (like
//!   Redis's dict), so HSCAN can use Redis's reverse-binary cursor and keep
//!   its guarantee across inserts, deletes and resizes.
//!
//! A hash never converts back from `hashtable` to `listpack`.

use crate::keyspace::hash_key;
use crate::keyspace::smallbytes::SmallBytes;
use rand::Rng;

/// Limits that decide when a listpack hash converts to a hashtable.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub max_entries: usize,
    pub max_value: usize,
}

impl Limits {
    /// The current `hash-max-listpack-*` settings.
    pub fn of(tun: &crate::server::Tunables) -> Limits {
        use crate::server::Tunables;
        Limits {
            max_entries: Tunables::get(&tun.hash_max_listpack_entries),
            max_value: Tunables::get(&tun.hash_max_listpack_value),
        }
    }
}

#[derive(Clone, Debug)]
pub enum Hash {
    Pack(Pack),
    Dict(Box<Dict>),
}

impl Default for Hash {
    fn default() -> Self {
        Hash::Pack(Pack::default())
    }
}

impl Hash {
    pub fn len(&self) -> usize {
        match self {
            Hash::Pack(p) => p.n as usize,
            Hash::Dict(d) => d.len,
        }
    }

    pub fn encoding(&self) -> &'static str {
        match self {
            Hash::Pack(_) => "listpack",
            Hash::Dict(_) => "hashtable",
        }
    }

    pub fn is_big(&self) -> bool {
        matches!(self, Hash::Dict(_))
    }

    pub fn mem_usage(&self) -> usize {
        match self {
            Hash::Pack(p) => p.buf.len(),
            Hash::Dict(d) => {
                std::mem::size_of::<Dict>()
                    + d.buckets.capacity() * 8
                    + d.len * std::mem::size_of::<Node>()
                    + sampled(d.len, d.iter().map(|(k, v)| heap(k) + heap(v)))
            }
        }
    }

    pub fn get(&self, field: &[u8]) -> Option<&[u8]> {
        match self {
            Hash::Pack(p) => p.get(field),
            Hash::Dict(d) => d.get(field),
        }
    }

    pub fn contains(&self, field: &[u8]) -> bool {
        self.get(field).is_some()
    }

    /// Convert to a hashtable if any of `lens` exceeds the value limit
    /// (Redis's `hashTypeTryConversion`).
    pub fn try_convert(&mut self, lens: impl IntoIterator<Item = usize>, lim: Limits) {
        if matches!(self, Hash::Pack(_)) && lens.into_iter().any(|l| l > lim.max_value) {
            self.convert();
        }
    }

    /// Switch to the hashtable encoding.
    pub fn convert(&mut self) {
        if let Hash::Pack(p) = self {
            let mut d = Dict::with_capacity(p.n as usize);
            for (k, v) in p.iter() {
                d.insert(k, v);
            }
            *self = Hash::Dict(Box::new(d));
        }
    }

    /// Set `field` to `value`; true if the field is new. Converts to a
    /// hashtable when the limits are exceeded.
    pub fn set(&mut self, field: &[u8], value: &[u8], lim: Limits) -> bool {
        self.try_convert([field.len(), value.len()], lim);
        match self {
            Hash::Pack(p) => {
                let new = p.set(field, value);
                if p.n as usize > lim.max_entries {
                    self.convert();
                }
                new
            }
            Hash::Dict(d) => d.insert(field, value),
        }
    }

    /// Remove `field`; true if it existed.
    pub fn remove(&mut self, field: &[u8]) -> bool {
        match self {
            Hash::Pack(p) => p.remove(field),
            Hash::Dict(d) => d.remove(field),
        }
    }

    /// All pairs in encoding order (insertion order for listpack).
    pub fn iter(&self) -> HashIter<'_> {
        match self {
            Hash::Pack(p) => HashIter::Pack(p.iter()),
            Hash::Dict(d) => HashIter::Dict(d.iter()),
        }
    }

    /// A random pair (None if empty).
    pub fn random<R: Rng>(&self, rng: &mut R) -> Option<(&[u8], &[u8])> {
        match self {
            Hash::Pack(p) => {
                if p.n == 0 {
                    return None;
                }
                p.iter().nth(rng.gen_range(0..p.n as usize))
            }
            Hash::Dict(d) => d.fair_random(rng),
        }
    }
}

/// Sum of `it` over its first entries, extrapolated to `n` (like Redis's
/// sampling MEMORY USAGE), so big values are not walked whole.
pub fn sampled(n: usize, it: impl Iterator<Item = usize>) -> usize {
    const SAMPLES: usize = 64;
    let (mut sum, mut seen) = (0usize, 0usize);
    for x in it.take(SAMPLES) {
        sum += x;
        seen += 1;
    }
    sum.checked_div(seen).map_or(0, |avg| avg * n + sum % seen)
}

fn heap(b: &[u8]) -> usize {
    if b.len() > 22 {
        b.len()
    } else {
        0
    }
}

pub enum HashIter<'a> {
    Pack(PackIter<'a>),
    Dict(DictIter<'a>),
}

impl<'a> Iterator for HashIter<'a> {
    type Item = (&'a [u8], &'a [u8]);
    #[inline]
    fn next(&mut self) -> Option<Self::Item> {
        match self {
            HashIter::Pack(i) => i.next(),
            HashIter::Dict(i) => i.next(),
        }
    }
}

// ---------------------------------------------------------------- listpack

/// Packed pairs: `varint(len) bytes varint(len) bytes ...`.
#[derive(Clone, Debug, Default)]
pub struct Pack {
    /// Exact-size allocation (every change reallocates, like a listpack).
    buf: Box<[u8]>,
    n: u32,
}

fn put_varint(out: &mut Vec<u8>, mut v: usize) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Decode a varint at `pos`: (value, position after it).
#[inline]
fn get_varint(buf: &[u8], mut pos: usize) -> (usize, usize) {
    let mut v = 0usize;
    let mut shift = 0;
    while let Some(&b) = buf.get(pos) {
        pos += 1;
        v |= ((b & 0x7f) as usize) << shift;
        if b < 0x80 {
            break;
        }
        shift += 7;
    }
    (v, pos)
}

/// Read one length-prefixed string at `pos`: (start, end).
#[inline]
fn get_str(buf: &[u8], pos: usize) -> (usize, usize) {
    let (len, s) = get_varint(buf, pos);
    (s, (s + len).min(buf.len()))
}

pub struct PackIter<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Iterator for PackIter<'a> {
    type Item = (&'a [u8], &'a [u8]);
    #[inline]
    fn next(&mut self) -> Option<Self::Item> {
        if self.pos >= self.buf.len() {
            return None;
        }
        let (fs, fe) = get_str(self.buf, self.pos);
        let (vs, ve) = get_str(self.buf, fe);
        self.pos = ve;
        Some((&self.buf[fs..fe], &self.buf[vs..ve]))
    }
}

/// Where a pair sits in the buffer.
struct Slot {
    start: usize,
    value_at: usize,
    end: usize,
}

impl Pack {
    pub fn iter(&self) -> PackIter<'_> {
        PackIter { buf: &self.buf, pos: 0 }
    }

    fn find(&self, field: &[u8]) -> Option<Slot> {
        let buf = &self.buf[..];
        let mut pos = 0;
        while pos < buf.len() {
            let (fs, fe) = get_str(buf, pos);
            let (_, ve) = get_str(buf, fe);
            if &buf[fs..fe] == field {
                return Some(Slot { start: pos, value_at: fe, end: ve });
            }
            pos = ve;
        }
        None
    }

    fn get(&self, field: &[u8]) -> Option<&[u8]> {
        self.find(field).map(|s| {
            let (vs, ve) = get_str(&self.buf, s.value_at);
            &self.buf[vs..ve]
        })
    }

    fn set(&mut self, field: &[u8], value: &[u8]) -> bool {
        let mut enc = Vec::with_capacity(value.len() + 5);
        match self.find(field) {
            Some(s) => {
                put_varint(&mut enc, value.len());
                enc.extend_from_slice(value);
                let mut v = std::mem::take(&mut self.buf).into_vec();
                v.splice(s.value_at..s.end, enc);
                self.buf = v.into_boxed_slice();
                false
            }
            None => {
                put_varint(&mut enc, field.len());
                enc.extend_from_slice(field);
                put_varint(&mut enc, value.len());
                enc.extend_from_slice(value);
                let mut v = std::mem::take(&mut self.buf).into_vec();
                v.reserve_exact(enc.len());
                v.extend_from_slice(&enc);
                self.buf = v.into_boxed_slice();
                self.n += 1;
                true
            }
        }
    }

    fn remove(&mut self, field: &[u8]) -> bool {
        match self.find(field) {
            Some(s) => {
                let mut v = std::mem::take(&mut self.buf).into_vec();
                v.drain(s.start..s.end);
                self.buf = v.into_boxed_slice();
                self.n -= 1;
                true
            }
            None => false,
        }
    }
}

// ---------------------------------------------------------------- hashtable

#[derive(Clone, Debug)]
struct Node {
    key: SmallBytes,
    val: SmallBytes,
    next: Option<Box<Node>>,
}

/// A chained hash table with power-of-two bucket counts.
#[derive(Clone, Debug, Default)]
pub struct Dict {
    buckets: Vec<Option<Box<Node>>>,
    len: usize,
}

const MIN_BUCKETS: usize = 4;

impl Dict {
    pub fn with_capacity(n: usize) -> Dict {
        let size = n.max(MIN_BUCKETS).next_power_of_two();
        let mut buckets = Vec::new();
        buckets.resize_with(size, || None);
        Dict { buckets, len: 0 }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    #[inline]
    fn mask(&self) -> usize {
        self.buckets.len().wrapping_sub(1)
    }

    fn resize(&mut self, size: usize) {
        let size = size.max(MIN_BUCKETS).next_power_of_two();
        let mut nb: Vec<Option<Box<Node>>> = Vec::new();
        nb.resize_with(size, || None);
        let old = std::mem::replace(&mut self.buckets, nb);
        let mask = size - 1;
        for mut chain in old {
            while let Some(mut node) = chain {
                chain = node.next.take();
                let b = (hash_key(&node.key) as usize) & mask;
                node.next = self.buckets[b].take();
                self.buckets[b] = Some(node);
            }
        }
    }

    pub fn get(&self, key: &[u8]) -> Option<&[u8]> {
        if self.buckets.is_empty() {
            return None;
        }
        let b = (hash_key(key) as usize) & self.mask();
        let mut cur = self.buckets[b].as_deref();
        while let Some(n) = cur {
            if &*n.key == key {
                return Some(&n.val);
            }
            cur = n.next.as_deref();
        }
        None
    }

    /// Insert or overwrite; true if the key is new.
    pub fn insert(&mut self, key: &[u8], val: &[u8]) -> bool {
        if self.buckets.is_empty() {
            self.resize(MIN_BUCKETS);
        }
        let b = (hash_key(key) as usize) & self.mask();
        let mut cur = self.buckets[b].as_deref_mut();
        while let Some(n) = cur {
            if &*n.key == key {
                n.val = SmallBytes::new(val);
                return false;
            }
            cur = n.next.as_deref_mut();
        }
        if self.len + 1 > self.buckets.len() {
            self.resize((self.len + 1) * 2);
        }
        let b = (hash_key(key) as usize) & self.mask();
        let next = self.buckets[b].take();
        self.buckets[b] = Some(Box::new(Node { key: SmallBytes::new(key), val: SmallBytes::new(val), next }));
        self.len += 1;
        true
    }

    pub fn remove(&mut self, key: &[u8]) -> bool {
        if self.buckets.is_empty() {
            return false;
        }
        let b = (hash_key(key) as usize) & self.mask();
        let mut link = &mut self.buckets[b];
        loop {
            match link {
                None => return false,
                Some(n) if &*n.key == key => {
                    let next = n.next.take();
                    *link = next;
                    break;
                }
                Some(n) => link = &mut n.next,
            }
        }
        self.len -= 1;
        if self.buckets.len() > MIN_BUCKETS && self.len * 10 < self.buckets.len() {
            self.resize(self.len);
        }
        true
    }

    pub fn iter(&self) -> DictIter<'_> {
        DictIter { buckets: &self.buckets, bucket: 0, node: None }
    }

    /// A random pair: a random non-empty bucket, then a random chain entry
    /// (Redis's `dictGetRandomKey`).
    pub fn random<R: Rng>(&self, rng: &mut R) -> Option<(&[u8], &[u8])> {
        if self.len == 0 {
            return None;
        }
        loop {
            let b = rng.gen_range(0..self.buckets.len());
            if let Some(head) = self.buckets[b].as_deref() {
                let mut chain = 0;
                let mut cur = Some(head);
                while let Some(n) = cur {
                    chain += 1;
                    cur = n.next.as_deref();
                }
                let mut pick = rng.gen_range(0..chain);
                let mut cur = head;
                while pick > 0 {
                    match cur.next.as_deref() {
                        Some(n) => cur = n,
                        None => break,
                    }
                    pick -= 1;
                }
                return Some((&cur.key, &cur.val));
            }
        }
    }

    /// Redis's `dictGetFairRandomKey`: gather up to 15 entries from
    /// consecutive buckets starting at a random one and pick one of them,
    /// so entries in long chains are not favoured; falls back to `random`.
    pub fn fair_random<R: Rng>(&self, rng: &mut R) -> Option<(&[u8], &[u8])> {
        if self.len == 0 {
            return None;
        }
        const WANT: usize = 15;
        let n = self.buckets.len();
        let mut found: Vec<(&[u8], &[u8])> = Vec::with_capacity(WANT);
        let mut i = rng.gen_range(0..n);
        let mut steps = 0;
        while found.len() < WANT && steps < WANT * 10 && steps < n {
            let mut cur = self.buckets[i].as_deref();
            while let Some(node) = cur {
                if found.len() == WANT {
                    break;
                }
                found.push((&node.key, &node.val));
                cur = node.next.as_deref();
            }
            i = (i + 1) % n;
            steps += 1;
        }
        if found.is_empty() {
            return self.random(rng);
        }
        Some(found[rng.gen_range(0..found.len())])
    }

    /// One step of a reverse-binary cursor scan (Redis's `dictScan` on a
    /// table that is not rehashing): calls `f` for every pair in the bucket
    /// the cursor points to, returns the next cursor (0 = done).
    pub fn scan<'a>(&'a self, cursor: u64, mut f: impl FnMut(&'a [u8], &'a [u8])) -> u64 {
        if self.len == 0 || self.buckets.is_empty() {
            return 0;
        }
        let m0 = self.mask() as u64;
        let mut cur = self.buckets[(cursor & m0) as usize].as_deref();
        while let Some(n) = cur {
            f(&n.key, &n.val);
            cur = n.next.as_deref();
        }
        let mut v = cursor | !m0;
        v = v.reverse_bits();
        v = v.wrapping_add(1);
        v.reverse_bits()
    }
}

pub struct DictIter<'a> {
    buckets: &'a [Option<Box<Node>>],
    bucket: usize,
    node: Option<&'a Node>,
}

impl<'a> Iterator for DictIter<'a> {
    type Item = (&'a [u8], &'a [u8]);
    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(n) = self.node {
                self.node = n.next.as_deref();
                return Some((&n.key, &n.val));
            }
            let b = self.buckets.get(self.bucket)?;
            self.bucket += 1;
            self.node = b.as_deref();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::{HashMap, HashSet};

    const LIM: Limits = Limits { max_entries: 128, max_value: 64 };

    #[test]
    fn compact_sizes() {
        assert!(std::mem::size_of::<Hash>() <= 24);
    }

    #[test]
    fn pack_basic_and_conversion() {
        let mut h = Hash::default();
        assert!(h.set(b"a", b"1", LIM));
        assert!(h.set(b"b", b"2", LIM));
        assert!(!h.set(b"a", b"xyz", LIM));
        assert_eq!(h.get(b"a"), Some(&b"xyz"[..]));
        assert_eq!(h.iter().map(|(k, _)| k.to_vec()).collect::<Vec<_>>(), vec![b"a".to_vec(), b"b".to_vec()]);
        assert_eq!(h.encoding(), "listpack");
        assert!(h.remove(b"a"));
        assert!(!h.remove(b"a"));
        assert_eq!(h.len(), 1);
        let long = vec![b'x'; 65];
        h.set(b"c", &long, LIM);
        assert_eq!(h.encoding(), "hashtable");
        assert_eq!(h.get(b"c"), Some(&long[..]));
        assert_eq!(h.get(b"b"), Some(&b"2"[..]));
        let mut h = Hash::default();
        for i in 0..128 {
            h.set(format!("f{i}").as_bytes(), b"v", LIM);
        }
        assert_eq!(h.encoding(), "listpack");
        h.set(b"f128", b"v", LIM);
        assert_eq!(h.encoding(), "hashtable");
        assert_eq!(h.len(), 129);
        // Long lengths (multi-byte varints) round-trip in a pack.
        let big = Limits { max_entries: 128, max_value: 100_000 };
        let mut h = Hash::default();
        let v = vec![b'y'; 20_000];
        h.set(&v, &v, big);
        h.set(b"k", b"", big);
        assert_eq!(h.get(&v), Some(&v[..]));
        assert_eq!(h.get(b"k"), Some(&b""[..]));
        assert_eq!(h.encoding(), "listpack");
    }

    #[test]
    fn dict_matches_model_and_scan_guarantee() {
        let mut d = Dict::default();
        let mut model = HashMap::new();
        for i in 0..5000u32 {
            let k = format!("k{}", i % 3000);
            d.insert(k.as_bytes(), &i.to_le_bytes());
            model.insert(k, i);
            if i % 7 == 0 {
                let k = format!("k{}", i / 2);
                assert_eq!(d.remove(k.as_bytes()), model.remove(&k).is_some());
            }
        }
        assert_eq!(d.len(), model.len());
        for (k, v) in &model {
            assert_eq!(d.get(k.as_bytes()), Some(&v.to_le_bytes()[..]));
        }
        assert_eq!(d.iter().count(), model.len());
        // Scan while inserting and deleting: everything present for the
        // whole iteration is returned.
        let stable: HashSet<Vec<u8>> =
            model.keys().filter(|k| k.len() % 2 == 0).map(|k| k.as_bytes().to_vec()).collect();
        let mut seen = HashSet::new();
        let mut cursor = 0;
        let mut step = 0u32;
        loop {
            cursor = d.scan(cursor, |k, _| {
                seen.insert(k.to_vec());
            });
            step += 1;
            // churn: add new keys and delete unstable ones
            d.insert(format!("new{step}").as_bytes(), b"x");
            let victim = model.keys().find(|k| k.len() % 2 == 1).cloned();
            if let Some(v) = victim {
                model.remove(&v);
                d.remove(v.as_bytes());
            }
            if cursor == 0 {
                break;
            }
        }
        for k in &stable {
            assert!(seen.contains(k), "missed {:?}", String::from_utf8_lossy(k));
        }
        // Shrinks when mostly deleted, and random works.
        let keys: Vec<Vec<u8>> = d.iter().map(|(k, _)| k.to_vec()).collect();
        for k in &keys[1..] {
            d.remove(k);
        }
        assert_eq!(d.len(), 1);
        assert!(d.buckets.len() <= 8);
        let mut rng = rand::thread_rng();
        assert_eq!(d.random(&mut rng).map(|(k, _)| k.to_vec()), Some(keys[0].clone()));
    }
}
