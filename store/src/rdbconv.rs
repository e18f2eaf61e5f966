//! Conversion between ferrite values and the neutral RDB model of
//! `ferrite-rdb`, shared by DUMP/RESTORE and the persistence code. The
//! type modules apply Redis's encoding rules when a value is rebuilt.
//!
//! [`ValueBuilder`] rebuilds a value from the parts the streaming RDB file
//! reader hands over (a big collection arrives in several parts); [`from_rdb`]
//! is the one-part case. Module values cannot become ferrite values (no
//! module system): both refuse them with an error, as Redis does without
//! the module.

use crate::keyspace::smallbytes::SmallBytes;
use crate::keyspace::Value;
use crate::server::Tunables;
use crate::types::hash::Limits;
use crate::types::stream::{Consumer, Group, Nack, Stream, StreamId, INVALID_ENTRIES_READ};
use ferrite_rdb::{
    RdbConsumer, RdbConsumerGroup, RdbPendingEntry, RdbStream, RdbStreamEntry, RdbValue, StreamId as RId,
};

/// Why an RDB value cannot become a ferrite value.
pub type ConvError = &'static str;

/// The neutral RDB model of a ferrite value.
pub fn to_rdb(v: &Value) -> RdbValue {
    match v {
        Value::Str(s) => RdbValue::Str(s.to_vec()),
        Value::List(l) => RdbValue::List(l.items.iter().map(|x| x.to_vec()).collect()),
        Value::Set(s) => RdbValue::Set(s.ordered().into_iter().map(|x| x.to_vec()).collect()),
        Value::ZSet(z) => RdbValue::ZSet(z.tree.iter().map(|k| (k.member.to_vec(), k.score)).collect()),
        Value::Hash(h) => RdbValue::Hash(h.iter().map(|(f, v)| (f.to_vec(), v.to_vec())).collect()),
        Value::Stream(s) => RdbValue::Stream(Box::new(stream_to_rdb(s))),
    }
}

fn rid(id: StreamId) -> RId {
    RId::new(id.ms, id.seq)
}

fn fid(id: RId) -> StreamId {
    StreamId::new(id.ms, id.seq)
}

fn pairs(fv: Vec<Vec<u8>>) -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut out = Vec::with_capacity(fv.len() / 2);
    let mut it = fv.into_iter();
    while let (Some(f), Some(v)) = (it.next(), it.next()) {
        out.push((f, v));
    }
    out
}

fn stream_to_rdb(s: &Stream) -> RdbStream {
    let mut entries = Vec::with_capacity(s.len().min(1 << 16));
    s.range(StreamId::MIN, StreamId::MAX, false, |e| {
        entries.push(RdbStreamEntry { id: rid(e.id), deleted: false, fields: pairs(e.fv()) });
        true
    });
    let groups = s
        .groups
        .iter()
        .map(|(name, g)| RdbConsumerGroup {
            name: name.clone(),
            last_id: rid(g.last_id),
            entries_read: g.entries_read,
            pel: g
                .pel
                .iter()
                .map(|(id, n)| RdbPendingEntry {
                    id: rid(*id),
                    delivery_time_ms: n.delivery_time,
                    delivery_count: n.delivery_count,
                })
                .collect(),
            consumers: g
                .consumers
                .iter()
                .map(|(cn, c)| RdbConsumer {
                    name: cn.clone(),
                    seen_time_ms: c.seen_time,
                    active_time_ms: None,
                    pending: c.pel.iter().map(|id| rid(*id)).collect(),
                })
                .collect(),
        })
        .collect();
    RdbStream {
        entries,
        node_sizes: Vec::new(),
        length: s.len() as u64,
        last_id: rid(s.last_id),
        first_id: rid(s.first_id),
        max_deleted_entry_id: rid(s.max_deleted_id),
        entries_added: s.entries_added,
        groups,
    }
}

/// Build a ferrite value through the type modules, which apply Redis's
/// encoding rules (listpack/intset limits).
/// `compact`: the payload held a ziplist/listpack blob (not a zipmap); Redis 7.0
/// then only checks the entry count, not the element sizes
/// (see [`ferrite_rdb::is_compact_type`]).
pub fn from_rdb(v: RdbValue, tun: &Tunables, compact: bool) -> Result<Value, ConvError> {
    let mut b = ValueBuilder::new(compact);
    b.push(v, tun)?;
    b.finish()
}

/// Rebuilds a value from one or more parts of the same type (the streaming
/// RDB reader's `Part` events between `Key` and `EndKey`).
pub struct ValueBuilder {
    compact: bool,
    value: Option<Value>,
    /// Streams: the tombstones to delete once all entries are in.
    tombstones: Vec<StreamId>,
    /// Streams: metadata and groups of the latest part (the last one wins).
    stream_meta: Option<RdbStream>,
    first_part: bool,
}

impl ValueBuilder {
    /// `compact`: see [`from_rdb`].
    pub fn new(compact: bool) -> ValueBuilder {
        ValueBuilder { compact, value: None, tombstones: Vec::new(), stream_meta: None, first_part: true }
    }

    /// Add one part. Duplicate members/fields are refused, as Redis does.
    pub fn push(&mut self, part: RdbValue, tun: &Tunables) -> Result<(), ConvError> {
        let first = std::mem::replace(&mut self.first_part, false);
        let compact = self.compact;
        match (part, &mut self.value) {
            (RdbValue::Str(s), None) => self.value = Some(Value::str(&s)),
            (RdbValue::List(items), v) => {
                let v = v.get_or_insert_with(|| Value::List(Box::default()));
                let Value::List(l) = v else { return Err("parts of different types") };
                l.items.extend(items.iter().map(|x| SmallBytes::new(x)));
            }
            (RdbValue::Set(m), v) => {
                let max = Tunables::get(&tun.set_max_intset_entries);
                let v = v.get_or_insert_with(|| Value::Set(Box::default()));
                let Value::Set(s) = v else { return Err("parts of different types") };
                for x in &m {
                    if !s.add(x, max) {
                        return Err("duplicate set member");
                    }
                }
            }
            (RdbValue::ZSet(z), v) => {
                let me = Tunables::get(&tun.zset_max_listpack_entries);
                let mv = if compact { usize::MAX } else { Tunables::get(&tun.zset_max_listpack_value) };
                let v = v.get_or_insert_with(|| Value::ZSet(Box::default()));
                let Value::ZSet(zs) = v else { return Err("parts of different types") };
                if first && z.len() > me {
                    zs.big = true;
                }
                for (m, sc) in &z {
                    if sc.is_nan() {
                        return Err("NaN score");
                    }
                    if zs.set_score(m, *sc, me, mv).is_some() {
                        return Err("duplicate sorted set member");
                    }
                }
            }
            (RdbValue::Hash(h), v) => {
                let mut lim = Limits::of(tun);
                if compact {
                    lim.max_value = usize::MAX;
                }
                let v = v.get_or_insert_with(|| Value::Hash(Box::default()));
                let Value::Hash(hs) = v else { return Err("parts of different types") };
                for (f, x) in &h {
                    if !hs.set(f, x, lim) {
                        return Err("duplicate hash field");
                    }
                }
            }
            (RdbValue::Stream(mut rs), v) => {
                let v = v.get_or_insert_with(|| Value::Stream(Box::default()));
                let Value::Stream(s) = v else { return Err("parts of different types") };
                let entries = std::mem::take(&mut rs.entries);
                let nodes = std::mem::take(&mut rs.node_sizes);
                stream_entries(s, entries, nodes, tun, &mut self.tombstones)?;
                self.stream_meta = Some(*rs);
            }
            (RdbValue::Module(_), _) => return Err("module values are not supported"),
            _ => return Err("parts of different types"),
        }
        Ok(())
    }

    /// The value, once every part was pushed.
    pub fn finish(self) -> Result<Value, ConvError> {
        let mut v = self.value.ok_or("no value")?;
        if let (Value::Stream(s), Some(meta)) = (&mut v, self.stream_meta) {
            stream_finish(s, meta, self.tombstones)?;
        }
        let empty = match &v {
            Value::List(l) => l.items.is_empty(),
            Value::Set(s) => s.len() == 0,
            Value::ZSet(z) => z.len() == 0,
            Value::Hash(h) => h.len() == 0,
            _ => false,
        };
        if empty {
            return Err("empty collection");
        }
        Ok(v)
    }
}

/// Append the entries of one stream part; tombstones are appended too (and
/// deleted at the end) so the node layout is Redis's.
fn stream_entries(
    s: &mut Stream,
    entries: Vec<RdbStreamEntry>,
    node_sizes: Vec<u32>,
    tun: &Tunables,
    tomb: &mut Vec<StreamId>,
) -> Result<(), ConvError> {
    let recorded: u64 = node_sizes.iter().map(|&n| n as u64).sum();
    let use_nodes = !node_sizes.is_empty() && recorded == entries.len() as u64;
    let mut starts = std::collections::HashSet::new();
    if use_nodes {
        let mut at = 0usize;
        for n in &node_sizes {
            starts.insert(at);
            at += *n as usize;
        }
    }
    let (me, mb) = (Tunables::get(&tun.stream_node_max_entries), Tunables::get(&tun.stream_node_max_bytes));
    let mut fv: Vec<&[u8]> = Vec::new();
    for (i, e) in entries.iter().enumerate() {
        fv.clear();
        for (f, v) in &e.fields {
            fv.push(f);
            fv.push(v);
        }
        // With recorded nodes: force a new node at each recorded start
        // (max_entries 1) and never split inside one (0 = no limits).
        let (a, b) = if use_nodes { (if starts.contains(&i) { 1 } else { 0 }, 0) } else { (me, mb) };
        s.append(fid(e.id), &fv, a, b).map_err(|_| "stream entries out of order")?;
        if e.deleted {
            tomb.push(fid(e.id));
        }
    }
    Ok(())
}

/// Delete the tombstones, then set the metadata and the groups.
fn stream_finish(s: &mut Stream, meta: RdbStream, tomb: Vec<StreamId>) -> Result<(), ConvError> {
    for id in tomb {
        s.delete(id);
    }
    if s.len() as u64 != meta.length {
        return Err("stream length inconsistent with its entries");
    }
    s.last_id = fid(meta.last_id);
    s.first_id = fid(meta.first_id);
    s.max_deleted_id = fid(meta.max_deleted_entry_id);
    s.entries_added = meta.entries_added;
    for g in meta.groups {
        if s.groups.contains_key(&g.name) {
            return Err("duplicated consumer group");
        }
        let mut entries_read = g.entries_read;
        if entries_read < 0 {
            entries_read = s.estimate_distance(fid(g.last_id)).unwrap_or(INVALID_ENTRIES_READ);
        }
        let mut grp = Group::new(fid(g.last_id), entries_read);
        for p in &g.pel {
            let n = Nack { delivery_time: p.delivery_time_ms, delivery_count: p.delivery_count, consumer: None };
            if grp.pel.insert(fid(p.id), n).is_some() {
                return Err("duplicated PEL entry");
            }
        }
        for c in g.consumers {
            let mut cons = Consumer { seen_time: c.seen_time_ms, ..Default::default() };
            for id in &c.pending {
                let Some(n) = grp.pel.get_mut(&fid(*id)) else { return Err("consumer PEL entry not in group PEL") };
                if n.consumer.is_some() {
                    return Err("PEL entry owned twice");
                }
                n.consumer = Some(c.name.clone());
                cons.pel.insert(fid(*id));
            }
            if grp.consumers.insert(c.name, cons).is_some() {
                return Err("duplicate consumer");
            }
        }
        if grp.pel.values().any(|n| n.consumer.is_none()) {
            return Err("PEL entry without owner");
        }
        s.groups.insert(g.name, grp);
    }
    Ok(())
}
