//! Streams: listpack nodes (RDB types 15, 19 and 21), metadata, consumer
//! groups. Decoding validates the node layout the way Redis's integrity
//! check does (master entry, entry flags, back counts, ascending IDs).

use crate::decode::Reader;
use crate::encode::Writer;
use crate::packs;
use crate::{
    types as t, RdbConsumer, RdbConsumerGroup, RdbError, RdbPendingEntry, RdbStream, RdbStreamEntry, Result, StreamId,
    PREALLOC_CAP,
};
use std::collections::{HashMap, HashSet};

const FLAG_DELETED: i64 = 1;
const FLAG_SAMEFIELDS: i64 = 2;

/// The first ID Redis computes for a type-15 stream without entries.
pub const NO_FIRST_ID: StreamId = StreamId { ms: u64::MAX, seq: u64::MAX };

/// Redis's default stream-node-max-entries / stream-node-max-bytes.
const NODE_MAX_ENTRIES: usize = 100;
const NODE_MAX_BYTES: usize = 4096;

/// Redis's message for a stream node whose listpack is not a valid stream node.
const LP_INTEGRITY: &str = "Stream listpack integrity check failed.";

fn bad(m: &'static str) -> RdbError {
    RdbError::Bad(m)
}

fn int(v: &[u8]) -> Result<i64> {
    packs::canonical_int(v).ok_or(bad(LP_INTEGRITY))
}

/// Decode one node: its 16-byte master ID key and listpack blob, appending
/// its entries (tombstones included) to `out`. `prev` is the last ID seen
/// in the stream so far (IDs must ascend). Returns the number of entries.
pub fn decode_node(key: &[u8], lp: &[u8], prev: &mut Option<StreamId>, out: &mut Vec<RdbStreamEntry>) -> Result<u32> {
    let key: [u8; 16] = key.try_into().map_err(|_| bad("Stream node key entry is not the size of a stream ID"))?;
    let master = StreamId::from_be_bytes(key);
    let items = packs::listpack_uncounted(lp).map_err(|_| bad(LP_INTEGRITY))?;
    if items.is_empty() {
        return Err(bad("Empty listpack inside stream"));
    }
    let mut it = items.iter();
    let mut next = || it.next().ok_or(bad(LP_INTEGRITY));
    let count = int(next()?)?;
    let deleted = int(next()?)?;
    let nmaster = int(next()?)?;
    if count < 0 || deleted < 0 || nmaster <= 0 {
        return Err(bad(LP_INTEGRITY));
    }
    let mut master_fields: Vec<&[u8]> = Vec::with_capacity((nmaster as usize).min(PREALLOC_CAP));
    for _ in 0..nmaster {
        master_fields.push(next()?);
    }
    if int(next()?)? != 0 {
        return Err(bad(LP_INTEGRITY));
    }
    let (mut live, mut dead) = (0i64, 0i64);
    let mut n = 0u32;
    let mut it = it.peekable();
    while it.peek().is_some() {
        let mut next = || it.next().ok_or(bad(LP_INTEGRITY));
        let flags = int(next()?)?;
        let ms = master.ms.wrapping_add(int(next()?)? as u64);
        let seq = master.seq.wrapping_add(int(next()?)? as u64);
        let id = StreamId::new(ms, seq);
        if prev.is_some_and(|p| id <= p) || (n == 0 && id < master) {
            return Err(bad(LP_INTEGRITY));
        }
        *prev = Some(id);
        let mut fields = Vec::new();
        let lp_count = if flags & FLAG_SAMEFIELDS != 0 {
            for f in &master_fields {
                fields.push((f.to_vec(), next()?.clone()));
            }
            master_fields.len() as i64 + 3
        } else {
            let nf = int(next()?)?;
            if nf <= 0 {
                return Err(bad(LP_INTEGRITY));
            }
            for _ in 0..nf {
                let f = next()?.clone();
                let v = next()?.clone();
                fields.push((f, v));
            }
            nf.saturating_mul(2).saturating_add(4)
        };
        if int(next()?)? != lp_count {
            return Err(bad(LP_INTEGRITY));
        }
        let del = flags & FLAG_DELETED != 0;
        if del {
            dead += 1;
        } else {
            live += 1;
        }
        out.push(RdbStreamEntry { id, deleted: del, fields });
        n += 1;
    }
    if live != count || dead != deleted {
        return Err(bad(LP_INTEGRITY));
    }
    if n == 0 {
        return Err(bad(LP_INTEGRITY));
    }
    Ok(n)
}

/// Decode the stream metadata after the nodes (length, IDs, counters) into
/// `s`; returns the number of consumer groups that follow.
pub fn decode_meta(ty: u8, r: &mut Reader<'_>, s: &mut RdbStream) -> Result<u64> {
    s.length = r.len()?;
    s.last_id = StreamId::new(r.len()?, r.len()?);
    if ty == t::STREAM_LISTPACKS {
        s.entries_added = s.length;
        s.max_deleted_entry_id = StreamId::default();
        // Redis computes it from the entries (streamGetEdgeID): the maximal
        // ID when there is none.
        s.first_id = s.entries.iter().find(|e| !e.deleted).map(|e| e.id).unwrap_or(NO_FIRST_ID);
    } else {
        s.first_id = StreamId::new(r.len()?, r.len()?);
        s.max_deleted_entry_id = StreamId::new(r.len()?, r.len()?);
        s.entries_added = r.len()?;
    }
    r.len()
}

/// Redis's `streamEstimateDistanceFromFirstEverEntry`: the entries-read
/// counter a group created at `id` gets when type 15 has none.
pub fn estimate_entries_read(s: &RdbStream, id: StreamId) -> i64 {
    if s.entries_added == 0 {
        return 0;
    }
    if s.length == 0 && id <= s.last_id {
        return s.entries_added as i64;
    }
    if id == s.last_id {
        return s.entries_added as i64;
    } else if id > s.last_id {
        return -1;
    }
    let zero = StreamId::default();
    if s.max_deleted_entry_id == zero || s.max_deleted_entry_id < s.first_id {
        if id < s.first_id {
            return s.entries_added as i64 - s.length as i64;
        } else if id == s.first_id {
            return s.entries_added as i64 - s.length as i64 + 1;
        }
    }
    -1
}

/// A group's header (name, last ID, entries read); returns it (without PEL
/// and consumers) and the PEL size. For type 15, which has no entries-read
/// field, `meta` (the stream's metadata) gives Redis's estimate.
pub fn decode_group_head(ty: u8, r: &mut Reader<'_>, meta: &RdbStream) -> Result<(RdbConsumerGroup, u64)> {
    let name = r.string()?;
    let last_id = StreamId::new(r.len()?, r.len()?);
    let entries_read = if ty == t::STREAM_LISTPACKS { estimate_entries_read(meta, last_id) } else { r.len()? as i64 };
    let npel = r.len()?;
    Ok((RdbConsumerGroup { name, last_id, entries_read, pel: Vec::new(), consumers: Vec::new() }, npel))
}

/// One global PEL entry.
pub fn decode_pel_entry(r: &mut Reader<'_>) -> Result<RdbPendingEntry> {
    let id = raw_id(r)?;
    let delivery_time_ms = r.ms_time()?;
    let delivery_count = r.len()?;
    Ok(RdbPendingEntry { id, delivery_time_ms, delivery_count })
}

/// A consumer's header (name, seen time, active time for type 21); returns
/// it (without pending IDs) and its PEL size.
pub fn decode_consumer_head(ty: u8, r: &mut Reader<'_>) -> Result<(RdbConsumer, u64)> {
    let name = r.string()?;
    let seen_time_ms = r.ms_time()?;
    let active_time_ms = if ty == t::STREAM_LISTPACKS_3 { Some(r.ms_time()?) } else { None };
    let np = r.len()?;
    Ok((RdbConsumer { name, seen_time_ms, active_time_ms, pending: Vec::new() }, np))
}

/// Consistency checks of groups as Redis's loader does them: unique group
/// and consumer names, unique PEL entries, each owned by exactly one
/// consumer.
#[derive(Default)]
pub struct GroupCheck {
    names: HashSet<Vec<u8>>,
    owners: HashMap<StreamId, bool>,
    consumers: HashSet<Vec<u8>>,
}

impl GroupCheck {
    pub fn group(&mut self, name: &[u8]) -> Result<()> {
        self.owners.clear();
        self.consumers.clear();
        if !self.names.insert(name.to_vec()) {
            return Err(bad("Duplicated consumer group name"));
        }
        Ok(())
    }

    pub fn pel(&mut self, id: StreamId) -> Result<()> {
        if self.owners.insert(id, false).is_some() {
            return Err(bad("Duplicated global PEL entry loading stream consumer group"));
        }
        Ok(())
    }

    pub fn consumer(&mut self, name: &[u8]) -> Result<()> {
        if !self.consumers.insert(name.to_vec()) {
            return Err(bad("Duplicate stream consumer detected."));
        }
        Ok(())
    }

    pub fn owned(&mut self, id: StreamId) -> Result<()> {
        match self.owners.get_mut(&id) {
            None => Err(bad("Consumer entry not found in group global PEL")),
            Some(true) => Err(bad("Duplicated consumer PEL entry loading a stream consumer group")),
            Some(o) => {
                *o = true;
                Ok(())
            }
        }
    }

    pub fn end_group(&mut self) -> Result<()> {
        if self.owners.values().any(|o| !o) {
            return Err(bad("Stream CG PEL entry without consumer"));
        }
        Ok(())
    }
}

/// Decode the part after the nodes: metadata and the consumer groups.
pub fn decode_tail(ty: u8, r: &mut Reader<'_>, s: &mut RdbStream) -> Result<()> {
    let ngroups = decode_meta(ty, r, s)?;
    let mut check = GroupCheck::default();
    for _ in 0..ngroups {
        let (mut g, npel) = decode_group_head(ty, r, s)?;
        check.group(&g.name)?;
        for _ in 0..npel {
            let p = decode_pel_entry(r)?;
            check.pel(p.id)?;
            g.pel.push(p);
        }
        let ncons = r.len()?;
        for _ in 0..ncons {
            let (mut c, np) = decode_consumer_head(ty, r)?;
            check.consumer(&c.name)?;
            for _ in 0..np {
                let id = raw_id(r)?;
                check.owned(id)?;
                c.pending.push(id);
            }
            g.consumers.push(c);
        }
        check.end_group()?;
        s.groups.push(g);
    }
    Ok(())
}

pub fn raw_id(r: &mut Reader<'_>) -> Result<StreamId> {
    let b = r.take(16)?;
    let mut a = [0u8; 16];
    a.copy_from_slice(b);
    Ok(StreamId::from_be_bytes(a))
}

/// Decode a whole stream value (after the type byte).
pub fn decode(ty: u8, r: &mut Reader<'_>) -> Result<RdbStream> {
    let mut s = RdbStream::default();
    let nodes = r.len()?;
    let mut prev = None;
    for _ in 0..nodes {
        let key = r.string()?;
        let lp = r.string()?;
        let n = decode_node(&key, &lp, &mut prev, &mut s.entries)?;
        s.node_sizes.push(n);
    }
    decode_tail(ty, r, &mut s)?;
    check_length(&s)?;
    Ok(s)
}

/// The stream's declared length must match its live entries.
pub fn check_length(s: &RdbStream) -> Result<()> {
    let live = s.entries.iter().filter(|e| !e.deleted).count() as u64;
    if live != s.length {
        return Err(bad("Stream length inconsistent with rax entries"));
    }
    Ok(())
}

/// Node sizes to write: the recorded ones if they cover the entries, else
/// Redis's XADD splitting with the default limits.
fn node_plan(s: &RdbStream) -> Vec<usize> {
    let recorded: u64 = s.node_sizes.iter().map(|&n| n as u64).sum();
    if !s.node_sizes.is_empty() && recorded == s.entries.len() as u64 && s.node_sizes.iter().all(|&n| n > 0) {
        return s.node_sizes.iter().map(|&n| n as usize).collect();
    }
    let mut plan = Vec::new();
    let mut cur = 0usize;
    let mut bytes = 0usize;
    let mut master: Option<&[(Vec<u8>, Vec<u8>)]> = None;
    for e in &s.entries {
        let tot: usize = e.fields.iter().map(|(f, v)| f.len() + v.len()).sum();
        if cur > 0 && (bytes + tot >= NODE_MAX_BYTES || cur >= NODE_MAX_ENTRIES) {
            plan.push(cur);
            cur = 0;
        }
        if cur == 0 {
            master = Some(&e.fields);
            // header, count, deleted, field count, fields, terminator, end
            bytes = 6 + 2 + 2 + 2 + 2 + 1;
            bytes += e.fields.iter().map(|(f, _)| packs::elem_size(f)).sum::<usize>();
        }
        let same = master.is_some_and(|m| same_fields(m, &e.fields));
        bytes += entry_size(e, same);
        cur += 1;
    }
    if cur > 0 {
        plan.push(cur);
    }
    plan
}

fn same_fields(m: &[(Vec<u8>, Vec<u8>)], f: &[(Vec<u8>, Vec<u8>)]) -> bool {
    m.len() == f.len() && m.iter().zip(f).all(|(a, b)| a.0 == b.0)
}

fn entry_size(e: &RdbStreamEntry, same: bool) -> usize {
    // flags, two deltas and lp-count are small integers (estimate 2 bytes
    // each, exact sizes do not matter for loading).
    let mut n = 8;
    for (f, v) in &e.fields {
        if !same {
            n += packs::elem_size(f);
        }
        n += packs::elem_size(v);
    }
    if !same {
        n += 2;
    }
    n
}

/// Encode a stream as RDB type 19, or 21 with `v3` (after the type byte).
pub fn encode(s: &RdbStream, w: &mut Writer, v3: bool) {
    let plan = node_plan(s);
    w.len(plan.len() as u64);
    let mut at = 0;
    for n in plan {
        let node = &s.entries[at..at + n];
        at += n;
        encode_node(node, w);
    }
    w.len(s.length);
    w.len(s.last_id.ms);
    w.len(s.last_id.seq);
    w.len(s.first_id.ms);
    w.len(s.first_id.seq);
    w.len(s.max_deleted_entry_id.ms);
    w.len(s.max_deleted_entry_id.seq);
    w.len(s.entries_added);
    w.len(s.groups.len() as u64);
    for g in &s.groups {
        w.string(&g.name);
        w.len(g.last_id.ms);
        w.len(g.last_id.seq);
        w.len(g.entries_read as u64);
        w.len(g.pel.len() as u64);
        for p in &g.pel {
            w.buf.extend_from_slice(&p.id.to_be_bytes());
            w.buf.extend_from_slice(&p.delivery_time_ms.to_le_bytes());
            w.len(p.delivery_count);
        }
        w.len(g.consumers.len() as u64);
        for c in &g.consumers {
            w.string(&c.name);
            w.buf.extend_from_slice(&c.seen_time_ms.to_le_bytes());
            if v3 {
                w.buf.extend_from_slice(&c.active_time_ms.unwrap_or(c.seen_time_ms).to_le_bytes());
            }
            w.len(c.pending.len() as u64);
            for id in &c.pending {
                w.buf.extend_from_slice(&id.to_be_bytes());
            }
        }
    }
}

fn encode_node(node: &[RdbStreamEntry], w: &mut Writer) {
    let Some(first) = node.first() else { return };
    let master = first.id;
    let live = node.iter().filter(|e| !e.deleted).count();
    let mut items: Vec<Vec<u8>> = Vec::new();
    let num = |i: i64| i.to_string().into_bytes();
    items.push(num(live as i64));
    items.push(num((node.len() - live) as i64));
    items.push(num(first.fields.len() as i64));
    for (f, _) in &first.fields {
        items.push(f.clone());
    }
    items.push(num(0));
    for e in node {
        let same = same_fields(&first.fields, &e.fields);
        let mut flags = 0;
        if e.deleted {
            flags |= FLAG_DELETED;
        }
        if same {
            flags |= FLAG_SAMEFIELDS;
        }
        items.push(num(flags));
        items.push(num(e.id.ms.wrapping_sub(master.ms) as i64));
        items.push(num(e.id.seq.wrapping_sub(master.seq) as i64));
        if same {
            for (_, v) in &e.fields {
                items.push(v.clone());
            }
            items.push(num(e.fields.len() as i64 + 3));
        } else {
            items.push(num(e.fields.len() as i64));
            for (f, v) in &e.fields {
                items.push(f.clone());
                items.push(v.clone());
            }
            items.push(num(e.fields.len() as i64 * 2 + 4));
        }
    }
    w.string(&master.to_be_bytes());
    let lp = packs::listpack_encode(items.iter().map(|x| x.as_slice()));
    w.string(&lp);
}
