//! Streams: entries keyed by (ms, seq) IDs, consumer groups with pending
//! entry lists. Owned by the stream commands in `cmd/stream.rs`.
//!
//! Entries live in "nodes" that model Redis's radix-tree-of-listpacks
//! layout: a node is keyed by its master ID (the first entry added to it),
//! holds up to `stream-node-max-entries` entries (live + deleted) and is
//! closed when its listpack would reach `stream-node-max-bytes`. Deleted
//! entries stay in their node as tombstones until the whole node is empty,
//! as in Redis. Modelling this exactly makes `~` trimming, XINFO's
//! radix-tree-keys/radix-tree-nodes and the node split points match Redis.

use crate::keyspace::smallbytes::SmallBytes;
use std::collections::{BTreeMap, BTreeSet, HashSet};

/// Redis's default `stream-node-max-entries`.
pub const NODE_MAX_ENTRIES: usize = 100;
/// Redis's default `stream-node-max-bytes`.
pub const NODE_MAX_BYTES: usize = 4096;
/// `STREAM_LISTPACK_MAX_SIZE` (1 GiB).
const LISTPACK_MAX_SIZE: usize = 1 << 30;
/// A consumer group's `entries_read` when it is unknown.
pub const INVALID_ENTRIES_READ: i64 = -1;

/// A stream ID `ms-seq`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct StreamId {
    pub ms: u64,
    pub seq: u64,
}

impl StreamId {
    pub const MIN: StreamId = StreamId { ms: 0, seq: 0 };
    pub const MAX: StreamId = StreamId { ms: u64::MAX, seq: u64::MAX };

    pub fn new(ms: u64, seq: u64) -> StreamId {
        StreamId { ms, seq }
    }

    pub fn is_zero(&self) -> bool {
        self.ms == 0 && self.seq == 0
    }

    /// The successor, or None for the maximal ID.
    pub fn incr(&self) -> Option<StreamId> {
        if self.seq == u64::MAX {
            if self.ms == u64::MAX {
                None
            } else {
                Some(StreamId::new(self.ms + 1, 0))
            }
        } else {
            Some(StreamId::new(self.ms, self.seq + 1))
        }
    }

    /// The predecessor, or None for 0-0.
    pub fn decr(&self) -> Option<StreamId> {
        if self.seq == 0 {
            if self.ms == 0 {
                None
            } else {
                Some(StreamId::new(self.ms - 1, u64::MAX))
            }
        } else {
            Some(StreamId::new(self.ms, self.seq - 1))
        }
    }

    /// `ms-seq` text.
    pub fn fmt(&self) -> String {
        format!("{}-{}", self.ms, self.seq)
    }

    /// The 16-byte big-endian radix tree key.
    fn key_bytes(&self) -> [u8; 16] {
        let mut k = [0u8; 16];
        k[..8].copy_from_slice(&self.ms.to_be_bytes());
        k[8..].copy_from_slice(&self.seq.to_be_bytes());
        k
    }
}

/// Entry flag: the entry is deleted (a tombstone).
const FLAG_DELETED: u8 = 1;
/// Entry flag: the entry has exactly the node's master fields.
const FLAG_SAME_FIELDS: u8 = 2;

fn put_varint(buf: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        buf.push((v as u8) | 0x80);
        v >>= 7;
    }
    buf.push(v as u8);
}

/// Read a varint written by `put_varint` (the buffer is ours, but a
/// truncated one still never panics: missing bytes read as 0).
fn get_varint(buf: &[u8], pos: &mut usize) -> u64 {
    let mut v = 0u64;
    let mut shift = 0u32;
    while let Some(&b) = buf.get(*pos) {
        *pos += 1;
        if shift < 64 {
            v |= ((b & 0x7f) as u64) << shift;
        }
        if b & 0x80 == 0 {
            break;
        }
        shift += 7;
    }
    v
}

fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

/// Append one element: canonical integers (as `parse_i64` accepts them,
/// which is exactly the text `fmt_int` gives back) as `zigzag << 1 | 1`,
/// other strings as `len << 1` followed by the bytes.
fn put_elem(buf: &mut Vec<u8>, s: &[u8]) {
    if let Some(n) = ferrite_resp::num::parse_i64(s) {
        let z = zigzag(n);
        if z < 1 << 63 {
            put_varint(buf, (z << 1) | 1);
            return;
        }
    }
    put_varint(buf, (s.len() as u64) << 1);
    buf.extend_from_slice(s);
}

/// A decoded element.
enum Elem<'a> {
    Str(&'a [u8]),
    Int(i64),
}

fn get_elem<'a>(buf: &'a [u8], pos: &mut usize) -> Elem<'a> {
    let tag = get_varint(buf, pos);
    if tag & 1 == 1 {
        return Elem::Int(unzigzag(tag >> 1));
    }
    let len = (tag >> 1) as usize;
    let start = (*pos).min(buf.len());
    let end = start.saturating_add(len).min(buf.len());
    *pos = end;
    Elem::Str(&buf[start..end])
}

fn skip_elem(buf: &[u8], pos: &mut usize) {
    let tag = get_varint(buf, pos);
    if tag & 1 == 0 {
        *pos = pos.saturating_add((tag >> 1) as usize).min(buf.len());
    }
}

/// Decimal text of `v` into `out`; returns the used tail.
fn fmt_int(v: i64, out: &mut [u8; 20]) -> &[u8] {
    let mut u = v.unsigned_abs();
    let mut i = out.len();
    loop {
        i -= 1;
        out[i] = b'0' + (u % 10) as u8;
        u /= 10;
        if u == 0 {
            break;
        }
    }
    if v < 0 {
        i -= 1;
        out[i] = b'-';
    }
    &out[i..]
}

fn with_elem(e: Elem<'_>, f: &mut impl FnMut(&[u8])) {
    match e {
        Elem::Str(s) => f(s),
        Elem::Int(n) => {
            let mut b = [0u8; 20];
            f(fmt_int(n, &mut b))
        }
    }
}

/// A view of one encoded stream entry.
#[derive(Clone, Copy, Debug)]
pub struct EntryRef<'a> {
    pub id: StreamId,
    flags: u8,
    master_fields: &'a [SmallBytes],
    /// The encoded fields/values (after the entry header).
    body: &'a [u8],
}

impl<'a> EntryRef<'a> {
    pub fn deleted(&self) -> bool {
        self.flags & FLAG_DELETED != 0
    }

    /// Number of field and value strings (twice the field count).
    pub fn fv_len(&self) -> usize {
        if self.flags & FLAG_SAME_FIELDS != 0 {
            self.master_fields.len() * 2
        } else {
            let mut p = 0;
            (get_varint(self.body, &mut p) as usize).saturating_mul(2)
        }
    }

    /// Visit field, value, field, value...
    pub fn for_each_fv(&self, mut f: impl FnMut(&[u8])) {
        let mut p = 0;
        if self.flags & FLAG_SAME_FIELDS != 0 {
            for field in self.master_fields {
                f(field);
                with_elem(get_elem(self.body, &mut p), &mut f);
            }
        } else {
            let n = get_varint(self.body, &mut p);
            for _ in 0..n {
                if p >= self.body.len() {
                    break;
                }
                with_elem(get_elem(self.body, &mut p), &mut f);
                with_elem(get_elem(self.body, &mut p), &mut f);
            }
        }
    }

    /// Field, value, ... as owned strings.
    pub fn fv(&self) -> Vec<Vec<u8>> {
        let mut v = Vec::with_capacity(self.fv_len().min(1024));
        self.for_each_fv(|x| v.push(x.to_vec()));
        v
    }
}

/// One listpack node: its entries are encoded in one byte buffer, each as
/// a flags byte, the ms delta and the zigzag seq delta to the node's
/// master ID, then (unless the fields are the master fields) the field
/// count and field, value pairs, else only the values.
#[derive(Clone, Debug)]
struct Node {
    master_fields: Box<[SmallBytes]>,
    buf: Vec<u8>,
    valid: usize,
    tombstones: usize,
    /// Listpack bytes except the header, the terminator and the two
    /// counters (valid, deleted), which change size with their values.
    body_bytes: usize,
}

impl Node {
    fn lp_bytes(&self) -> usize {
        6 + 1 + int_elem_size(self.valid as i64) + int_elem_size(self.tombstones as i64) + self.body_bytes
    }

    /// Decode the entry at `off`; returns it and the next entry's offset.
    fn entry_at(&self, master: StreamId, off: usize) -> (EntryRef<'_>, usize) {
        let buf = &self.buf[..];
        let mut p = off;
        let flags = buf.get(p).copied().unwrap_or(0);
        p += 1;
        let ms = master.ms.wrapping_add(get_varint(buf, &mut p));
        let seq = master.seq.wrapping_add(unzigzag(get_varint(buf, &mut p)) as u64);
        let body_start = p.min(buf.len());
        if flags & FLAG_SAME_FIELDS != 0 {
            for _ in 0..self.master_fields.len() {
                skip_elem(buf, &mut p);
            }
        } else {
            let n = get_varint(buf, &mut p);
            for _ in 0..n {
                if p >= buf.len() {
                    break;
                }
                skip_elem(buf, &mut p);
                skip_elem(buf, &mut p);
            }
        }
        let end = p.min(buf.len());
        let e = EntryRef {
            id: StreamId::new(ms, seq),
            flags,
            master_fields: &self.master_fields,
            body: &buf[body_start.min(end)..end],
        };
        (e, end.max(off + 1))
    }

    /// Offset of the entry with this ID (live or deleted).
    fn find(&self, master: StreamId, id: StreamId) -> Option<usize> {
        let mut off = 0;
        while off < self.buf.len() {
            let (e, next) = self.entry_at(master, off);
            if e.id == id {
                return Some(off);
            }
            if e.id > id {
                return None;
            }
            off = next;
        }
        None
    }

    /// The last entry's ID (live or deleted).
    fn last_entry_id(&self, master: StreamId) -> StreamId {
        let mut off = 0;
        let mut last = master;
        while off < self.buf.len() {
            let (e, next) = self.entry_at(master, off);
            last = e.id;
            off = next;
        }
        last
    }
}

/// Encoded size of an integer listpack element, backlen included.
fn int_elem_size(v: i64) -> usize {
    let enc = if (0..=127).contains(&v) {
        1
    } else if (-4096..=4095).contains(&v) {
        2
    } else if (-32768..=32767).contains(&v) {
        3
    } else if (-8_388_608..=8_388_607).contains(&v) {
        4
    } else if (i32::MIN as i64..=i32::MAX as i64).contains(&v) {
        5
    } else {
        9
    };
    enc + 1
}

fn backlen_size(l: usize) -> usize {
    if l <= 127 {
        1
    } else if l < 16383 {
        2
    } else if l < 2_097_151 {
        3
    } else if l < 268_435_455 {
        4
    } else {
        5
    }
}

/// Encoded size of a string listpack element (integers-as-strings are
/// stored as integers, as listpack does).
fn str_elem_size(s: &[u8]) -> usize {
    if s.len() <= 20 {
        if let Some(v) = ferrite_resp::num::parse_i64(s) {
            return int_elem_size(v);
        }
    }
    let enc = if s.len() <= 63 {
        1 + s.len()
    } else if s.len() <= 4095 {
        2 + s.len()
    } else {
        5 + s.len()
    };
    enc + backlen_size(enc)
}

/// A pending entry (NACK).
#[derive(Clone, Debug)]
pub struct Nack {
    pub delivery_time: i64,
    pub delivery_count: u64,
    /// Owner's name; empty only transiently (XCLAIM FORCE).
    pub consumer: Option<Vec<u8>>,
}

#[derive(Clone, Debug, Default)]
pub struct Consumer {
    pub seen_time: i64,
    pub pel: BTreeSet<StreamId>,
}

#[derive(Clone, Debug)]
pub struct Group {
    pub last_id: StreamId,
    pub entries_read: i64,
    pub pel: BTreeMap<StreamId, Nack>,
    pub consumers: BTreeMap<Vec<u8>, Consumer>,
}

impl Group {
    pub fn new(last_id: StreamId, entries_read: i64) -> Group {
        Group { last_id, entries_read, pel: BTreeMap::new(), consumers: BTreeMap::new() }
    }

    /// Remove a PEL entry from the group and its owner.
    pub fn remove_nack(&mut self, id: &StreamId) -> Option<Nack> {
        let n = self.pel.remove(id)?;
        if let Some(c) = n.consumer.as_ref().and_then(|name| self.consumers.get_mut(name)) {
            c.pel.remove(id);
        }
        Some(n)
    }
}

/// Trim strategy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Trim {
    None,
    MaxLen(u64),
    MinId(StreamId),
}

#[derive(Clone, Copy, Debug)]
pub struct TrimArgs {
    pub strategy: Trim,
    pub approx: bool,
    /// 0 = unlimited.
    pub limit: i64,
}

#[derive(Clone, Debug, Default)]
pub struct Stream {
    nodes: BTreeMap<StreamId, Node>,
    length: u64,
    pub last_id: StreamId,
    pub first_id: StreamId,
    pub max_deleted_id: StreamId,
    pub entries_added: u64,
    pub groups: BTreeMap<Vec<u8>, Group>,
}

/// Why an append failed.
#[derive(Debug, PartialEq, Eq)]
pub enum AddError {
    /// ID equal or smaller than the top item.
    NotGreater,
    /// Elements too large.
    TooLarge,
}

impl Stream {
    pub fn len(&self) -> usize {
        self.length as usize
    }

    pub fn is_empty(&self) -> bool {
        self.length == 0
    }

    pub fn mem_usage(&self) -> usize {
        let nodes: usize = self.nodes.values().map(|n| n.lp_bytes() + 64).sum();
        let groups: usize = self
            .groups
            .iter()
            .map(|(k, g)| {
                k.len()
                    + 96
                    + g.pel.len() * 64
                    + g.consumers.iter().map(|(n, c)| n.len() + 64 + c.pel.len() * 32).sum::<usize>()
            })
            .sum();
        nodes + groups
    }

    /// Number of listpack nodes (radix-tree-keys).
    pub fn rax_keys(&self) -> usize {
        self.nodes.len()
    }

    /// Node count of the radix tree holding the node keys, as rax builds
    /// it (root, key nodes, branching nodes and their children).
    pub fn rax_nodes(&self) -> usize {
        let keys: Vec<[u8; 16]> = self.nodes.keys().map(|k| k.key_bytes()).collect();
        let mut set: HashSet<Vec<u8>> = HashSet::new();
        set.insert(Vec::new());
        for k in &keys {
            set.insert(k.to_vec());
        }
        for w in keys.windows(2) {
            let l = w[0].iter().zip(w[1].iter()).take_while(|(a, b)| a == b).count();
            if l < 16 {
                set.insert(w[0][..l].to_vec());
                set.insert(w[0][..l + 1].to_vec());
                set.insert(w[1][..l + 1].to_vec());
            }
        }
        set.len()
    }

    /// Compute the ID an append would use. `seq_given` false = `ms-*`.
    pub fn next_id(&self, use_id: Option<(StreamId, bool)>, now_ms: u64) -> Result<StreamId, AddError> {
        let id = match use_id {
            Some((id, true)) => id,
            Some((id, false)) => {
                if self.last_id.ms == id.ms {
                    if self.last_id.seq == u64::MAX {
                        // Redis fails here without setting errno; in
                        // practice the reply is the ERANGE text.
                        return Err(AddError::TooLarge);
                    }
                    StreamId::new(id.ms, self.last_id.seq + 1)
                } else {
                    id
                }
            }
            None => {
                if now_ms > self.last_id.ms {
                    StreamId::new(now_ms, 0)
                } else {
                    self.last_id.incr().unwrap_or(StreamId::MIN)
                }
            }
        };
        if id <= self.last_id {
            return Err(AddError::NotGreater);
        }
        Ok(id)
    }

    /// Append an entry with the given ID (already checked by `next_id`).
    pub fn append(&mut self, id: StreamId, fv: &[&[u8]], max_entries: usize, max_bytes: usize) -> Result<(), AddError> {
        if id <= self.last_id {
            return Err(AddError::NotGreater);
        }
        let totelelen: usize = fv.iter().map(|s| s.len()).sum();
        if totelelen > LISTPACK_MAX_SIZE {
            return Err(AddError::TooLarge);
        }
        let numfields = fv.len() / 2;
        let node_max_bytes =
            if max_bytes == 0 || max_bytes > LISTPACK_MAX_SIZE { LISTPACK_MAX_SIZE } else { max_bytes };
        let mut use_tail = false;
        if let Some((_, tail)) = self.nodes.iter().next_back() {
            use_tail = !(tail.lp_bytes() + totelelen >= node_max_bytes
                || (max_entries > 0 && tail.valid + tail.tombstones >= max_entries));
        }
        if !use_tail {
            // The tail node is closed: give back its spare capacity.
            if let Some((_, tail)) = self.nodes.iter_mut().next_back() {
                tail.buf.shrink_to_fit();
            }
            let mut body = int_elem_size(numfields as i64);
            for i in 0..numfields {
                body += str_elem_size(fv[i * 2]);
            }
            body += int_elem_size(0);
            let master_fields = (0..numfields).map(|i| SmallBytes::new(fv[i * 2])).collect();
            let node = Node { master_fields, buf: Vec::new(), valid: 0, tombstones: 0, body_bytes: body };
            self.nodes.insert(id, node);
        }
        let Some((&master_id, node)) = self.nodes.iter_mut().next_back() else {
            return Err(AddError::TooLarge);
        };
        let same = node.master_fields.len() == numfields
            && node.master_fields.iter().enumerate().all(|(i, f)| f.as_slice() == fv[i * 2]);
        let flags: i64 = if same { 2 } else { 0 };
        let mut b = int_elem_size(flags);
        b += int_elem_size(id.ms.wrapping_sub(master_id.ms) as i64);
        b += int_elem_size(id.seq.wrapping_sub(master_id.seq) as i64);
        if !same {
            b += int_elem_size(numfields as i64);
        }
        for i in 0..numfields {
            if !same {
                b += str_elem_size(fv[i * 2]);
            }
            b += str_elem_size(fv[i * 2 + 1]);
        }
        let mut lp_count = numfields as i64 + 3;
        if !same {
            lp_count += numfields as i64 + 1;
        }
        b += int_elem_size(lp_count);
        node.body_bytes += b;
        node.valid += 1;
        node.buf.push(if same { FLAG_SAME_FIELDS } else { 0 });
        put_varint(&mut node.buf, id.ms.wrapping_sub(master_id.ms));
        put_varint(&mut node.buf, zigzag(id.seq.wrapping_sub(master_id.seq) as i64));
        if same {
            for i in 0..numfields {
                put_elem(&mut node.buf, fv[i * 2 + 1]);
            }
        } else {
            put_varint(&mut node.buf, numfields as u64);
            for i in 0..numfields {
                put_elem(&mut node.buf, fv[i * 2]);
                put_elem(&mut node.buf, fv[i * 2 + 1]);
            }
        }
        self.length += 1;
        self.entries_added += 1;
        self.last_id = id;
        if self.length == 1 {
            self.first_id = id;
        }
        Ok(())
    }

    /// Visit live entries in `[start, end]`, in order (or reverse). The
    /// visitor returns false to stop.
    pub fn range<'a>(&'a self, start: StreamId, end: StreamId, rev: bool, mut f: impl FnMut(&EntryRef<'a>) -> bool) {
        if start > end {
            return;
        }
        if !rev {
            let from = self.nodes.range(..=start).next_back().map(|(k, _)| *k).unwrap_or(StreamId::MIN);
            for (&k, node) in self.nodes.range(from..) {
                if k > end {
                    return;
                }
                let mut off = 0;
                while off < node.buf.len() {
                    let (e, next) = node.entry_at(k, off);
                    off = next;
                    if e.id < start {
                        continue;
                    }
                    if e.id > end {
                        return;
                    }
                    if !e.deleted() && !f(&e) {
                        return;
                    }
                }
            }
        } else {
            let mut offs: Vec<usize> = Vec::new();
            for (&k, node) in self.nodes.range(..=end).rev() {
                offs.clear();
                let mut off = 0;
                while off < node.buf.len() {
                    let (e, next) = node.entry_at(k, off);
                    if e.id > end {
                        break;
                    }
                    offs.push(off);
                    off = next;
                }
                for &off in offs.iter().rev() {
                    let (e, _) = node.entry_at(k, off);
                    if e.id < start {
                        return;
                    }
                    if !e.deleted() && !f(&e) {
                        return;
                    }
                }
            }
        }
    }

    /// Every entry, tombstones included, node by node, in order:
    /// `f(first_of_its_node, entry)`. For serialization that keeps Redis's
    /// node layout (RDB/DUMP).
    pub fn for_each_raw<'a>(&'a self, mut f: impl FnMut(bool, &EntryRef<'a>)) {
        for (&k, node) in &self.nodes {
            let mut off = 0;
            let mut first = true;
            while off < node.buf.len() {
                let (e, next) = node.entry_at(k, off);
                f(first, &e);
                first = false;
                off = next;
            }
        }
    }

    /// The live entry with this ID.
    pub fn get(&self, id: StreamId) -> Option<EntryRef<'_>> {
        let (&k, node) = self.nodes.range(..=id).next_back()?;
        let off = node.find(k, id)?;
        let (e, _) = node.entry_at(k, off);
        (!e.deleted()).then_some(e)
    }

    pub fn exists(&self, id: StreamId) -> bool {
        self.get(id).is_some()
    }

    /// First (or last) live entry ID.
    pub fn edge_id(&self, first: bool) -> Option<StreamId> {
        let mut out = None;
        self.range(StreamId::MIN, StreamId::MAX, !first, |e| {
            out = Some(e.id);
            false
        });
        out
    }

    /// XDEL one ID: true if a live entry was deleted.
    pub fn delete(&mut self, id: StreamId) -> bool {
        let Some((&key, node)) = self.nodes.range_mut(..=id).next_back() else {
            return false;
        };
        let Some(off) = node.find(key, id) else {
            return false;
        };
        if node.buf[off] & FLAG_DELETED != 0 {
            return false;
        }
        if node.valid == 1 {
            self.nodes.remove(&key);
        } else {
            node.buf[off] |= FLAG_DELETED;
            node.valid -= 1;
            node.tombstones += 1;
        }
        self.length -= 1;
        true
    }

    /// Trim as Redis's `streamTrim`; returns the number of entries removed.
    pub fn trim(&mut self, args: &TrimArgs) -> u64 {
        if args.strategy == Trim::None {
            return 0;
        }
        let mut deleted: u64 = 0;
        loop {
            if let Trim::MaxLen(m) = args.strategy {
                if self.length <= m {
                    break;
                }
            }
            let Some((&key, node)) = self.nodes.iter_mut().next() else {
                break;
            };
            let entries = node.valid as u64;
            if args.limit > 0 && deleted + entries > args.limit as u64 {
                break;
            }
            let remove_node = match args.strategy {
                Trim::MaxLen(m) => self.length - entries >= m,
                Trim::MinId(min) => node.last_entry_id(key) < min,
                Trim::None => false,
            };
            if remove_node {
                self.nodes.remove(&key);
                self.length -= entries;
                deleted += entries;
                continue;
            }
            if args.approx {
                break;
            }
            let mut from_lp = 0usize;
            let mut off = 0;
            while off < node.buf.len() {
                let (e, next) = node.entry_at(key, off);
                let (id, was_deleted) = (e.id, e.deleted());
                let stop = match args.strategy {
                    Trim::MaxLen(m) => self.length <= m,
                    Trim::MinId(min) => id >= min,
                    Trim::None => true,
                };
                if stop {
                    break;
                }
                if !was_deleted {
                    node.buf[off] |= FLAG_DELETED;
                    from_lp += 1;
                    self.length -= 1;
                }
                off = next;
            }
            node.valid -= from_lp;
            node.tombstones += from_lp;
            deleted += from_lp as u64;
            break;
        }
        if self.length == 0 {
            self.first_id = StreamId::MIN;
        } else if deleted > 0 {
            self.first_id = self.edge_id(true).unwrap_or(StreamId::MAX);
        }
        deleted
    }

    /// The last live entry's ID (0-0 when empty).
    pub fn last_valid_id(&self) -> StreamId {
        self.edge_id(false).unwrap_or(StreamId::MIN)
    }

    /// Does `[start, +inf)` contain a tombstone? (`streamRangeHasTombstones`)
    pub fn range_has_tombstones(&self, start: StreamId) -> bool {
        if self.length == 0 || self.max_deleted_id.is_zero() {
            return false;
        }
        if self.first_id > self.max_deleted_id {
            return false;
        }
        start <= self.max_deleted_id
    }

    /// `streamEstimateDistanceFromFirstEverEntry`; None if not obtainable.
    pub fn estimate_distance(&self, id: StreamId) -> Option<i64> {
        if self.entries_added == 0 {
            return Some(0);
        }
        if self.length == 0 && id <= self.last_id {
            return Some(self.entries_added as i64);
        }
        if id == self.last_id {
            return Some(self.entries_added as i64);
        } else if id > self.last_id {
            return None;
        }
        if self.max_deleted_id.is_zero() || self.max_deleted_id < self.first_id {
            if id < self.first_id {
                return Some(self.entries_added as i64 - self.length as i64);
            } else if id == self.first_id {
                return Some(self.entries_added as i64 - self.length as i64 + 1);
            }
        }
        None
    }

    /// A group's lag, None when not obtainable.
    pub fn group_lag(&self, g: &Group) -> Option<i64> {
        if self.entries_added == 0 {
            return Some(0);
        }
        if g.entries_read != INVALID_ENTRIES_READ && !self.range_has_tombstones(g.last_id) {
            return Some(self.entries_added as i64 - g.entries_read);
        }
        self.estimate_distance(g.last_id).map(|r| self.entries_added as i64 - r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn add(s: &mut Stream, ms: u64, seq: u64, fv: &[&[u8]]) {
        s.append(StreamId::new(ms, seq), fv, NODE_MAX_ENTRIES, NODE_MAX_BYTES).unwrap();
    }

    #[test]
    fn nodes_split_by_count() {
        let mut s = Stream::default();
        for i in 1..=250 {
            add(&mut s, i, 0, &[b"f", b"v"]);
        }
        assert_eq!(s.rax_keys(), 3);
        assert_eq!(s.len(), 250);
        let n = s.trim(&TrimArgs { strategy: Trim::MaxLen(120), approx: true, limit: 10000 });
        assert_eq!(n, 100);
        let n = s.trim(&TrimArgs { strategy: Trim::MaxLen(120), approx: false, limit: 0 });
        assert_eq!(n, 30);
        assert_eq!(s.first_id, StreamId::new(131, 0));
    }

    #[test]
    fn delete_and_range() {
        let mut s = Stream::default();
        for i in 1..=5 {
            add(&mut s, i, 0, &[b"a", b"1"]);
        }
        assert!(s.delete(StreamId::new(3, 0)));
        assert!(!s.delete(StreamId::new(3, 0)));
        let mut ids = vec![];
        s.range(StreamId::MIN, StreamId::MAX, true, |e| {
            ids.push(e.id.ms);
            assert_eq!(e.fv(), vec![b"a".to_vec(), b"1".to_vec()]);
            true
        });
        assert_eq!(ids, vec![5, 4, 2, 1]);
    }

    fn fill(n: u64, max_entries: usize) -> Stream {
        let mut s = Stream::default();
        for i in 1..=n {
            s.append(StreamId::new(i, 0), &[b"xitem", b"v"], max_entries, NODE_MAX_BYTES).unwrap();
        }
        s
    }

    fn approx(strategy: Trim, limit: i64) -> TrimArgs {
        TrimArgs { strategy, approx: true, limit }
    }

    // The next tests replay Redis's stream.tcl cases that change
    // stream-node-max-entries.
    #[test]
    fn limit_consecutive_calls_node_size_10() {
        let mut s = fill(100, 10);
        s.append(StreamId::new(101, 0), &[b"xitem", b"v"], 10, NODE_MAX_BYTES).unwrap();
        s.trim(&approx(Trim::MaxLen(55), 30));
        assert_eq!(s.len(), 71);
        s.append(StreamId::new(102, 0), &[b"xitem", b"v"], 10, NODE_MAX_BYTES).unwrap();
        s.trim(&approx(Trim::MaxLen(55), 30));
        assert_eq!(s.len(), 62);
    }

    #[test]
    fn approx_trim_is_limited_node_size_1() {
        let mut s = fill(102, 1);
        assert_eq!(s.rax_keys(), 102);
        s.trim(&approx(Trim::MaxLen(1), 100));
        assert_eq!(s.len(), 2);
        let mut s = fill(102, 1);
        s.trim(&TrimArgs { strategy: Trim::MaxLen(1), approx: false, limit: 0 });
        assert_eq!(s.len(), 1);
    }

    #[test]
    fn trim_limit_node_size_2() {
        let mut s = fill(3, 2);
        assert_eq!(s.trim(&approx(Trim::MaxLen(0), 1)), 0);
        assert_eq!(s.trim(&approx(Trim::MaxLen(0), 2)), 2);
    }

    #[test]
    fn node_split_by_bytes() {
        let mut s = Stream::default();
        let big = vec![b'x'; 1500];
        for i in 1..=3 {
            s.append(StreamId::new(i, 0), &[b"f", &big], 100, 4096).unwrap();
        }
        // Two 1.5 KB values fit in a node; the third would pass 4096 bytes.
        assert_eq!(s.rax_keys(), 2);
        let mut s = Stream::default();
        for i in 1..=5 {
            s.append(StreamId::new(i, 0), &[b"f", &big], 100, 0).unwrap();
        }
        assert_eq!(s.rax_keys(), 1);
    }

    #[test]
    fn encoding_round_trips() {
        let big = vec![b'z'; 5000];
        let vals: Vec<&[u8]> = vec![
            b"0",
            b"-0",
            b"01",
            b"+1",
            b"-1",
            b"9223372036854775807",
            b"-9223372036854775808",
            b"4611686018427387904",
            b"-4611686018427387905",
            b"18446744073709551616",
            b"",
            b"abc",
            &big,
            b"123456",
            b" 1",
            b"1.5",
        ];
        let mut s = Stream::default();
        let mut want = Vec::new();
        for (i, v) in vals.iter().enumerate() {
            let ms = 10 + i as u64;
            let seq = if i % 3 == 0 { u64::MAX - i as u64 } else { i as u64 };
            let fv: Vec<&[u8]> = if i % 2 == 0 { vec![b"f", v] } else { vec![b"f", v, b"g", b"-12"] };
            let id = StreamId::new(ms, seq);
            s.append(id, &fv, 4, 0).unwrap();
            want.push((id, fv.iter().map(|x| x.to_vec()).collect::<Vec<_>>()));
        }
        let mut got = Vec::new();
        s.range(StreamId::MIN, StreamId::MAX, false, |e| {
            got.push((e.id, e.fv()));
            assert_eq!(e.fv_len(), e.fv().len());
            true
        });
        assert_eq!(got, want);
        let mut rgot = Vec::new();
        s.range(StreamId::MIN, StreamId::MAX, true, |e| {
            rgot.push((e.id, e.fv()));
            true
        });
        rgot.reverse();
        assert_eq!(rgot, want);
        for (id, fv) in &want {
            assert_eq!(&s.get(*id).unwrap().fv(), fv);
        }
        let (id3, _) = want[3].clone();
        assert!(s.delete(id3));
        assert!(s.get(id3).is_none());
        let (lo, hi) = (want[2].0, want[5].0);
        let mut ids = Vec::new();
        s.range(lo, hi, true, |e| {
            ids.push(e.id);
            true
        });
        assert_eq!(ids, vec![want[5].0, want[4].0, want[2].0]);
    }
}
