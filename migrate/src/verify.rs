//! `verify`: per-slot digests of both sides first, then key-by-key diffs
//! (both directions) only for the slots whose digests differ.
//!
//! A key's digest covers its name, type, a canonical encoding of its value
//! (decoded from DUMP: sets and hashes sorted, sorted sets sorted by member
//! with exact score bits; streams read with XRANGE, XINFO STREAM, XINFO
//! GROUPS, XINFO CONSUMERS and XPENDING) and its TTL as a bucket
//! of the absolute deadline (`--ttl-tolerance-ms`). Slot digests XOR the key
//! digests, so the order keys are listed in does not matter. Each side's
//! deadline is its PTTL plus the local clock when the reply arrived, so the
//! two readings of one deadline are a few ms apart (and a copy made with the
//! scan method is a few ms off too); a slot digest is kept for four bucket
//! grids a quarter bucket apart and a slot matches when any grid does, so
//! such noise only makes a slot differ when, for every grid, some key of the
//! slot straddles one of its boundaries.
//! A slot whose digest differed is compared key by key, where TTLs are
//! compared with the tolerance. Differences are re-read a few times before
//! they are reported, so a write in flight is not a difference; when no key
//! differs in such a slot, the report says why (TTL noise, a write that
//! settled, or a change between the two passes).
//!
//! Function libraries: `FUNCTION LIST WITHCODE` of every source master
//! (their union) against Ferrite's ([`crate::functions::compare`]).
//!
//! Streams: entries, last-generated-id, entries-added, max-deleted-entry-id
//! and every consumer group's name, last-delivered-id, entries-read,
//! consumers with their pending counts, and pending entries (id, owning
//! consumer, delivery count). Delivery times, idle times and consumers'
//! seen-times are not compared (each side's clock and reads set them), nor
//! an entries-read that is nil (unknown) on one side only.

use crate::resp::{Conn, Reply};
use crate::slots::{SlotSet, NSLOTS};
use crate::topo::Source;
use crate::{cmd, Error, Result};
use ferrite_commands::key_hash_slot;
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

/// What one side holds for a key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyInfo {
    pub ty: String,
    pub value: [u8; 32],
    /// Absolute deadline in local ms, or -1.
    pub deadline: i64,
    /// For a stream: what `value` covers, to say what differs.
    pub stream: Option<Box<StreamMeta>>,
}

/// A stream as verify compares it: entries, the stream's own ids and
/// counters, and its consumer groups.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct StreamMeta {
    /// Hash of every entry (id, fields and values, in order).
    pub entries: [u8; 32],
    pub last_id: String,
    pub entries_added: i64,
    pub max_deleted_id: String,
    /// Sorted by name.
    pub groups: Vec<GroupMeta>,
}

/// One consumer group: delivery times and consumers' seen-times are not
/// compared (they are times of the side that holds them).
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct GroupMeta {
    pub name: Vec<u8>,
    pub last_id: String,
    /// None when the group does not know it (XINFO GROUPS's nil).
    pub entries_read: Option<i64>,
    /// (name, pending count), sorted by name.
    pub consumers: Vec<(Vec<u8>, i64)>,
    /// Pending entries (XPENDING's count) and the hash of every pending
    /// entry's id, owning consumer and delivery count, in id order.
    pub pel_count: i64,
    pub pel: [u8; 32],
}

impl StreamMeta {
    fn hash(&self) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(b"x");
        h.update(self.entries);
        lp(&mut h, self.last_id.as_bytes());
        h.update(self.entries_added.to_le_bytes());
        lp(&mut h, self.max_deleted_id.as_bytes());
        h.update((self.groups.len() as u64).to_le_bytes());
        for g in &self.groups {
            lp(&mut h, &g.name);
            lp(&mut h, g.last_id.as_bytes());
            h.update(g.entries_read.unwrap_or(i64::MIN).to_le_bytes());
            h.update((g.consumers.len() as u64).to_le_bytes());
            for (c, n) in &g.consumers {
                lp(&mut h, c);
                h.update(n.to_le_bytes());
            }
            h.update(g.pel_count.to_le_bytes());
            h.update(g.pel);
        }
        h.finalize().into()
    }

    /// Equal, except for groups whose entries-read is known on one side
    /// only. A nil entries-read means the server does not know the count
    /// (it then estimates the lag); Redis 7.0 replicas fed by the command
    /// stream do not keep it (XREADGROUP is propagated without it), so after
    /// a failover of the source it can be nil there and known on Ferrite.
    fn same_but_unknown_entries_read(&self, b: &StreamMeta) -> bool {
        self.entries == b.entries
            && self.last_id == b.last_id
            && self.entries_added == b.entries_added
            && self.max_deleted_id == b.max_deleted_id
            && self.groups.len() == b.groups.len()
            && self.groups.iter().zip(&b.groups).all(|(x, y)| {
                x.name == y.name
                    && x.last_id == y.last_id
                    && (x.entries_read.is_none() || y.entries_read.is_none() || x.entries_read == y.entries_read)
                    && x.consumers == y.consumers
                    && x.pel_count == y.pel_count
                    && x.pel == y.pel
            })
    }

    /// What differs between two streams whose hashes differ.
    fn describe(&self, b: &StreamMeta) -> String {
        let mut out = Vec::new();
        let show = |x: &[u8]| String::from_utf8_lossy(x).into_owned();
        if self.entries != b.entries {
            out.push("entries differ".to_string());
        }
        if self.last_id != b.last_id {
            out.push(format!("last-generated-id: source {} target {}", self.last_id, b.last_id));
        }
        if self.entries_added != b.entries_added {
            out.push(format!("entries-added: source {} target {}", self.entries_added, b.entries_added));
        }
        if self.max_deleted_id != b.max_deleted_id {
            out.push(format!("max-deleted-entry-id: source {} target {}", self.max_deleted_id, b.max_deleted_id));
        }
        for g in &self.groups {
            let Some(o) = b.groups.iter().find(|o| o.name == g.name) else {
                out.push(format!("group {} missing on target", show(&g.name)));
                continue;
            };
            let name = show(&g.name);
            if g.last_id != o.last_id {
                out.push(format!("group {name} last-delivered-id: source {} target {}", g.last_id, o.last_id));
            }
            if g.entries_read.is_some() && o.entries_read.is_some() && g.entries_read != o.entries_read {
                let er = |x: Option<i64>| x.map(|n| n.to_string()).unwrap_or_else(|| "nil".into());
                out.push(format!(
                    "group {name} entries-read: source {} target {}",
                    er(g.entries_read),
                    er(o.entries_read)
                ));
            }
            if g.consumers != o.consumers {
                let cs = |v: &[(Vec<u8>, i64)]| {
                    v.iter().map(|(c, n)| format!("{}:{n}", show(c))).collect::<Vec<_>>().join(",")
                };
                out.push(format!(
                    "group {name} consumers (name:pending): source [{}] target [{}]",
                    cs(&g.consumers),
                    cs(&o.consumers)
                ));
            }
            if g.pel_count != o.pel_count || g.pel != o.pel {
                out.push(format!(
                    "group {name} pending entries (id, consumer, delivery count) differ: source {} target {}",
                    g.pel_count, o.pel_count
                ));
            }
        }
        for o in &b.groups {
            if !self.groups.iter().any(|g| g.name == o.name) {
                out.push(format!("group {} extra on target", show(&o.name)));
            }
        }
        if out.is_empty() {
            "stream value differs".to_string()
        } else {
            format!("stream value differs: {}", out.join("; "))
        }
    }
}

/// One reported difference.
#[derive(Clone, Debug)]
pub struct Diff {
    pub slot: u16,
    pub key: Vec<u8>,
    pub what: String,
}

#[derive(Debug, Default)]
pub struct Report {
    pub slots_checked: usize,
    pub slots_digest_mismatch: usize,
    /// Slots whose digest differed while every key agreed: because of TTLs
    /// within the tolerance on both sides of digest bucket boundaries...
    pub slots_ttl_boundary: usize,
    /// ... because of a stream group whose entries-read is nil on one side
    /// only (not a difference, see [`StreamMeta`]) ...
    pub slots_entries_read_unknown: usize,
    /// ... because some key differed at first and agreed on a re-read ...
    pub slots_settled: usize,
    /// ... or for no reason seen key by key (the data changed between the
    /// digest pass and the key-by-key pass).
    pub slots_changed: usize,
    pub keys_source: u64,
    pub keys_target: u64,
    pub diffs: Vec<Diff>,
    /// Function library differences (see [`crate::functions::compare`]).
    pub functions: Vec<String>,
}

fn lp(h: &mut Sha256, b: &[u8]) {
    h.update((b.len() as u64).to_le_bytes());
    h.update(b);
}

/// Canonical hash of a DUMP payload; `None` when it cannot be decoded here.
pub fn canonical_dump(payload: &[u8]) -> Option<[u8; 32]> {
    let body = ferrite_rdb::verify_dump_payload(payload)?;
    let v = ferrite_rdb::decode_dump_body(body).ok()?;
    let mut h = Sha256::new();
    match v {
        ferrite_rdb::RdbValue::Str(s) => {
            h.update(b"s");
            lp(&mut h, &s);
        }
        ferrite_rdb::RdbValue::List(l) => {
            h.update(b"l");
            for e in l {
                lp(&mut h, &e);
            }
        }
        ferrite_rdb::RdbValue::Set(mut s) => {
            s.sort();
            h.update(b"S");
            for e in s {
                lp(&mut h, &e);
            }
        }
        ferrite_rdb::RdbValue::ZSet(mut z) => {
            z.sort_by(|a, b| a.0.cmp(&b.0));
            h.update(b"z");
            for (m, sc) in z {
                lp(&mut h, &m);
                let sc = if sc == 0.0 { 0.0f64 } else { sc };
                h.update(sc.to_bits().to_le_bytes());
            }
        }
        ferrite_rdb::RdbValue::Hash(mut f) => {
            f.sort();
            h.update(b"h");
            for (k, v) in f {
                lp(&mut h, &k);
                lp(&mut h, &v);
            }
        }
        #[allow(unreachable_patterns)]
        _ => return None,
    }
    Some(h.finalize().into())
}

/// Read type, TTL and value of `keys` through `pipe` (one side).
pub fn key_infos(
    pipe: &mut dyn FnMut(&[Vec<Vec<u8>>]) -> Result<Vec<Reply>>,
    keys: &[Vec<u8>],
) -> Result<Vec<Option<KeyInfo>>> {
    let mut out = Vec::with_capacity(keys.len());
    for chunk in keys.chunks(200) {
        let mut cmds = Vec::with_capacity(chunk.len() * 3);
        for k in chunk {
            cmds.push(cmd!["TYPE", k]);
            cmds.push(cmd!["PTTL", k]);
            cmds.push(cmd!["DUMP", k]);
        }
        let r = pipe(&cmds)?;
        let now = crate::now_ms();
        if r.len() != cmds.len() {
            return Err(Error::Protocol("short pipeline reply".into()));
        }
        for (i, k) in chunk.iter().enumerate() {
            let ty = r[3 * i].as_str().unwrap_or_default();
            if ty == "none" || r[3 * i].is_error() {
                out.push(None);
                continue;
            }
            let pttl = r[3 * i + 1].as_int().unwrap_or(-1);
            if pttl == -2 {
                out.push(None);
                continue;
            }
            let deadline = if pttl >= 0 { now + pttl } else { -1 };
            let mut stream = None;
            let value = if ty == "stream" {
                let m = match stream_meta(pipe, k) {
                    Ok(m) => m,
                    // Deleted or replaced while being read: a value that
                    // differs, read again by the key-by-key pass.
                    Err(Error::Server(e)) => StreamMeta { last_id: format!("unreadable: {e}"), ..Default::default() },
                    Err(e) => return Err(e),
                };
                let v = m.hash();
                stream = Some(Box::new(m));
                v
            } else {
                match &r[3 * i + 2] {
                    Reply::Bulk(p) => canonical_dump(p).unwrap_or_else(|| {
                        let mut h = Sha256::new();
                        h.update(b"raw");
                        lp(&mut h, p);
                        h.finalize().into()
                    }),
                    _ => [0; 32],
                }
            };
            out.push(Some(KeyInfo { ty, value, deadline, stream }));
        }
    }
    Ok(out)
}

type Pipe<'a> = dyn FnMut(&[Vec<Vec<u8>>]) -> Result<Vec<Reply>> + 'a;

fn one(pipe: &mut Pipe, c: Vec<Vec<u8>>) -> Result<Reply> {
    pipe(&[c])?.into_iter().next().ok_or_else(|| Error::Protocol("no reply".into()))?.ok()
}

fn id_of(r: Option<&Reply>) -> String {
    r.and_then(Reply::as_str).unwrap_or_default()
}

fn next_start(items: &[Reply]) -> Vec<u8> {
    let last = items.last().and_then(|e| e.items().first()).and_then(|x| x.as_bytes()).unwrap_or_default();
    [b"(".as_slice(), last].concat()
}

fn hash_entries(h: &mut Sha256, items: &[Reply]) {
    for e in items {
        let it = e.items();
        if let Some(id) = it.first().and_then(|x| x.as_bytes()) {
            lp(h, id);
        }
        for f in it.get(1).map(|x| x.items()).unwrap_or_default() {
            lp(h, f.as_bytes().unwrap_or_default());
        }
    }
}

fn hash_pending(h: &mut Sha256, items: &[Reply]) {
    for e in items {
        // id, consumer, idle ms (not compared), delivery count
        let it = e.items();
        lp(h, it.first().and_then(Reply::as_bytes).unwrap_or_default());
        lp(h, it.get(1).and_then(Reply::as_bytes).unwrap_or_default());
        h.update(it.get(3).and_then(Reply::as_int).unwrap_or(-1).to_le_bytes());
    }
}

/// Read a stream's entries (XRANGE in pages), ids and counters (XINFO
/// STREAM) and consumer groups (XINFO GROUPS, XINFO CONSUMERS, XPENDING in
/// pages). The first page of each list travels in one pipeline with the
/// rest, so a small stream costs two round trips.
fn stream_meta(pipe: &mut Pipe, key: &[u8]) -> Result<StreamMeta> {
    const PAGE: usize = 1000;
    let mut m = StreamMeta::default();
    let r = pipe(&[
        cmd!["XINFO", "STREAM", key],
        cmd!["XINFO", "GROUPS", key],
        cmd!["XRANGE", key, "-", "+", "COUNT", PAGE],
    ])?;
    let [info, groups, first] =
        <[Reply; 3]>::try_from(r).map_err(|_| Error::Protocol("short pipeline reply".into()))?;
    let (info, groups, mut page) = (info.ok()?, groups.ok()?, first.ok()?);
    m.last_id = id_of(info.field("last-generated-id"));
    m.entries_added = info.field("entries-added").and_then(Reply::as_int).unwrap_or(-1);
    m.max_deleted_id = id_of(info.field("max-deleted-entry-id"));
    let mut h = Sha256::new();
    for _ in 0..10_000_000u64 {
        let items = page.items();
        hash_entries(&mut h, items);
        if items.len() < PAGE {
            break;
        }
        page = one(pipe, cmd!["XRANGE", key, next_start(items), "+", "COUNT", PAGE])?;
    }
    m.entries = h.finalize().into();
    let names: Vec<Vec<u8>> =
        groups.items().iter().map(|g| g.field("name").and_then(Reply::as_bytes).unwrap_or_default().to_vec()).collect();
    let mut cmds = Vec::with_capacity(names.len() * 2);
    for n in &names {
        cmds.push(cmd!["XINFO", "CONSUMERS", key, n]);
        cmds.push(cmd!["XPENDING", key, n, "-", "+", PAGE]);
    }
    let mut firsts = if cmds.is_empty() { Vec::new() } else { pipe(&cmds)? }.into_iter();
    for (g, name) in groups.items().iter().zip(names) {
        let mut gm = GroupMeta {
            last_id: id_of(g.field("last-delivered-id")),
            entries_read: g.field("entries-read").and_then(Reply::as_int),
            ..Default::default()
        };
        let short = || Error::Protocol("short pipeline reply".into());
        let cs = firsts.next().ok_or_else(short)?.ok()?;
        let mut page = firsts.next().ok_or_else(short)?.ok()?;
        gm.consumers = cs
            .items()
            .iter()
            .map(|c| {
                let n = c.field("name").and_then(Reply::as_bytes).unwrap_or_default().to_vec();
                (n, c.field("pending").and_then(Reply::as_int).unwrap_or(-1))
            })
            .collect();
        gm.consumers.sort();
        let mut h = Sha256::new();
        for _ in 0..10_000_000u64 {
            let items = page.items();
            hash_pending(&mut h, items);
            gm.pel_count += items.len() as i64;
            if items.len() < PAGE {
                break;
            }
            page = one(pipe, cmd!["XPENDING", key, &name, next_start(items), "+", PAGE])?;
        }
        gm.pel = h.finalize().into();
        gm.name = name;
        m.groups.push(gm);
    }
    m.groups.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(m)
}

/// A key's digest with its deadline in buckets of `tol` ms, the bucket
/// grid shifted by `shift` ms.
fn key_digest(key: &[u8], info: &KeyInfo, tol: i64, shift: i64) -> [u8; 32] {
    let mut h = Sha256::new();
    lp(&mut h, key);
    lp(&mut h, info.ty.as_bytes());
    h.update(info.value);
    h.update(bucket(info.deadline, tol, shift).to_le_bytes());
    h.finalize().into()
}

fn bucket(deadline: i64, tol: i64, shift: i64) -> i64 {
    if deadline < 0 {
        -1
    } else {
        (deadline + shift).div_euclid(tol.max(1))
    }
}

/// How many bucket grids a slot digest is kept for.
const GRIDS: usize = 4;

/// The bucket grids a slot digest is computed with: deadlines in buckets of
/// `tol` ms, grid `i` shifted by `i * tol / GRIDS`. The boundaries of all
/// grids together are `tol / GRIDS` apart, so two readings of one deadline
/// less than that apart (each side's deadline is PTTL plus the local clock
/// when the reply arrived, and the copy itself is a few ms off) straddle a
/// boundary of at most one grid; a slot then only differs when every grid
/// has such a key in it. Two deadlines more than `tol` apart are in
/// different buckets of every grid.
fn shifts(tol: i64) -> [i64; GRIDS] {
    let t = tol.max(1);
    std::array::from_fn(|i| t * i as i64 / GRIDS as i64)
}

/// Per-slot digests: XOR of key digests (one per bucket grid) plus a key
/// count.
pub struct Digests {
    pub x: [Vec<[u8; 32]>; GRIDS],
    pub n: Vec<u64>,
    tol: i64,
}

impl Digests {
    fn new(tol: i64) -> Digests {
        Digests { x: std::array::from_fn(|_| vec![[0; 32]; NSLOTS]), n: vec![0; NSLOTS], tol }
    }
    fn add(&mut self, key: &[u8], info: &KeyInfo) {
        let s = key_hash_slot(key) as usize;
        for (g, shift) in shifts(self.tol).into_iter().enumerate() {
            let d = key_digest(key, info, self.tol, shift);
            for (a, b) in self.x[g][s].iter_mut().zip(d) {
                *a ^= b;
            }
        }
        self.n[s] += 1;
    }
    /// Whether slot `s` holds the same keys on both sides, as far as the
    /// digests tell: same count and the same digest in at least one grid.
    fn same(&self, other: &Digests, s: u16) -> bool {
        let s = s as usize;
        self.n[s] == other.n[s] && (0..GRIDS).any(|g| self.x[g][s] == other.x[g][s])
    }
}

/// SCAN one connection fully, calling `f` with batches of keys in `scope`.
fn scan_all(conn: &mut Conn, scope: &SlotSet, mut f: impl FnMut(&mut Conn, Vec<Vec<u8>>) -> Result<()>) -> Result<()> {
    let mut cursor = b"0".to_vec();
    for _ in 0..100_000_000u64 {
        let r = conn.cmd(&cmd!["SCAN", &cursor, "COUNT", "1000"])?.ok()?;
        let it = r.items();
        cursor = it.first().and_then(|x| x.as_bytes()).map(<[u8]>::to_vec).unwrap_or_else(|| b"0".to_vec());
        let keys: Vec<Vec<u8>> = it
            .get(1)
            .map(|k| k.items().iter().filter_map(|x| x.as_bytes().map(<[u8]>::to_vec)).collect())
            .unwrap_or_default();
        let keys: Vec<Vec<u8>> = keys.into_iter().filter(|k| scope.contains(key_hash_slot(k))).collect();
        if !keys.is_empty() {
            f(conn, keys)?;
        }
        if cursor == b"0" {
            return Ok(());
        }
    }
    Ok(())
}

fn digest_conn(conn: &mut Conn, scope: &SlotSet, d: &mut Digests) -> Result<u64> {
    let mut n = 0;
    scan_all(conn, scope, |c, keys| {
        let infos = key_infos(&mut |cmds| c.pipeline(cmds), &keys)?;
        for (k, i) in keys.iter().zip(infos) {
            if let Some(i) = i {
                d.add(k, &i);
                n += 1;
            }
        }
        Ok(())
    })?;
    Ok(n)
}

/// How one key compares on both sides.
struct Judged {
    /// What differs, if anything.
    what: Option<String>,
    /// Equal (TTLs within the tolerance), yet the key's digests differ in
    /// some bucket grid: its deadlines straddle a boundary of it.
    ttl_split: bool,
    /// Equal, but a stream group's entries-read is nil on one side only.
    entries_read_unknown: bool,
}

fn judge(k: &[u8], a: Option<KeyInfo>, b: Option<KeyInfo>, tol_ms: i64) -> Judged {
    let mut ttl_split = false;
    let mut entries_read_unknown = false;
    let what = match (a, b) {
        (None, None) => None,
        (Some(_), None) => Some("missing on target".to_string()),
        (None, Some(b)) => Some(format!("extra on target ({})", b.ty)),
        (Some(a), Some(b)) => {
            if a.ty != b.ty {
                Some(format!("type differs: source {} target {}", a.ty, b.ty))
            } else if a.value != b.value {
                match (&a.stream, &b.stream) {
                    (Some(x), Some(y)) if x.same_but_unknown_entries_read(y) => {
                        entries_read_unknown = true;
                        ttl_diff(&a, &b, tol_ms)
                    }
                    (Some(x), Some(y)) => Some(x.describe(y)),
                    _ => Some(format!("{} value differs", a.ty)),
                }
            } else if let Some(w) = ttl_diff(&a, &b, tol_ms) {
                Some(w)
            } else {
                ttl_split =
                    shifts(tol_ms).iter().any(|&sh| key_digest(k, &a, tol_ms, sh) != key_digest(k, &b, tol_ms, sh));
                None
            }
        }
    };
    Judged { what, ttl_split, entries_read_unknown }
}

fn ttl_diff(a: &KeyInfo, b: &KeyInfo, tol_ms: i64) -> Option<String> {
    if (a.deadline < 0) != (b.deadline < 0) || (a.deadline - b.deadline).abs() > tol_ms {
        let show = |d: i64| if d < 0 { "none".to_string() } else { format!("{} ms", d - crate::now_ms()) };
        Some(format!("ttl differs: source {} target {}", show(a.deadline), show(b.deadline)))
    } else {
        None
    }
}

fn compare_judged(src: &mut Source, dst: &mut Conn, s: u16, keys: &[Vec<u8>], tol_ms: i64) -> Result<Vec<Judged>> {
    let a = key_infos(&mut |cmds| src.slot_pipeline(s, cmds), keys)?;
    let b = key_infos(&mut |cmds| dst.pipeline(cmds), keys)?;
    Ok(keys.iter().zip(a).zip(b).map(|((k, a), b)| judge(k, a, b, tol_ms)).collect())
}

/// Compare some keys of one slot on both sides: the keys that differ, with
/// what differs.
pub fn compare_keys(
    src: &mut Source,
    dst: &mut Conn,
    s: u16,
    keys: &[Vec<u8>],
    tol_ms: i64,
) -> Result<Vec<(Vec<u8>, String)>> {
    let j = compare_judged(src, dst, s, keys, tol_ms)?;
    Ok(keys.iter().zip(j).filter_map(|(k, j)| j.what.map(|w| (k.clone(), w))).collect())
}

impl Report {
    /// One line: what was compared, how many slot digests differed and what
    /// the key-by-key pass found there (and, when it found nothing in a slot
    /// whose digest differed, why).
    /// Key differences plus function library differences.
    pub fn differences(&self) -> usize {
        self.diffs.len() + self.functions.len()
    }

    pub fn summary(&self) -> String {
        let mut out = self.slots_summary();
        if !self.functions.is_empty() {
            out.push_str(&format!("; {} function library differences", self.functions.len()));
        }
        out
    }

    fn slots_summary(&self) -> String {
        let n = self.slots_digest_mismatch;
        let mut out = format!(
            "verify: {} slots, {} keys on the source, {} on the target, {} slot digest{} differed",
            self.slots_checked,
            self.keys_source,
            self.keys_target,
            n,
            if n == 1 { "" } else { "s" }
        );
        if n == 0 {
            out.push_str(&format!(", {} differences", self.diffs.len()));
            return out;
        }
        out.push_str(&format!("; key-by-key re-check found {} differences", self.diffs.len()));
        let mut why = Vec::new();
        let plural = |k: usize| if k == 1 { "slot" } else { "slots" };
        if self.slots_ttl_boundary > 0 {
            why.push(format!(
                "{} {} only with TTLs that agree within --ttl-tolerance-ms but fall in different digest buckets",
                self.slots_ttl_boundary,
                plural(self.slots_ttl_boundary)
            ));
        }
        if self.slots_entries_read_unknown > 0 {
            why.push(format!(
                "{} {} only with stream groups whose entries-read is nil on one side (unknown, not compared)",
                self.slots_entries_read_unknown,
                plural(self.slots_entries_read_unknown)
            ));
        }
        if self.slots_settled > 0 {
            why.push(format!(
                "{} {} with keys that differed at first and agreed on a re-read (writes in flight)",
                self.slots_settled,
                plural(self.slots_settled)
            ));
        }
        if self.slots_changed > 0 {
            why.push(format!(
                "{} {} where every key agreed: keys changed, expired or were deleted between the digest pass and the \
                 key-by-key pass",
                self.slots_changed,
                plural(self.slots_changed)
            ));
        }
        if !why.is_empty() {
            out.push_str(&format!(" ({})", why.join("; ")));
        }
        out
    }
}

/// Compare `scope` on both sides.
pub fn verify(src: &mut Source, dst: &mut Conn, scope: &SlotSet, tol_ms: i64, max_print: usize) -> Result<Report> {
    let mut rep = Report { slots_checked: scope.len(), ..Default::default() };
    rep.functions = crate::functions::compare(src, dst)?;
    // Source digests, one master at a time (each SCANs its own slots).
    let mut ds = Digests::new(tol_ms);
    let masters: Vec<(String, SlotSet)> =
        src.topo.masters.iter().map(|m| (m.addr.clone(), m.slots.intersect(scope))).collect();
    for (addr, slots) in &masters {
        if slots.is_empty() {
            continue;
        }
        let c = src.conn(addr)?;
        rep.keys_source += digest_conn(c, slots, &mut ds)?;
    }
    let mut dt = Digests::new(tol_ms);
    rep.keys_target = digest_conn(dst, scope, &mut dt)?;
    let mut bad = SlotSet::default();
    for s in scope.iter() {
        if !ds.same(&dt, s) {
            bad.insert(s);
        }
    }
    rep.slots_digest_mismatch = bad.len();
    if bad.is_empty() {
        crate::metrics::get().verify_mismatches.set(rep.differences() as i64);
        return Ok(rep);
    }
    // Key-by-key in the differing slots: key names from both sides.
    let mut names: BTreeMap<u16, Vec<Vec<u8>>> = BTreeMap::new();
    for s in bad.iter() {
        names.insert(s, crate::copy::slot_keys(src, s)?);
    }
    scan_all(dst, &bad, |_, keys| {
        for k in keys {
            let v = names.entry(key_hash_slot(&k)).or_default();
            if !v.contains(&k) {
                v.push(k);
            }
        }
        Ok(())
    })?;
    let mut pending: Vec<(u16, Vec<u8>)> =
        names.into_iter().flat_map(|(s, ks)| ks.into_iter().map(move |k| (s, k))).collect();
    let mut last: HashMap<(u16, Vec<u8>), String> = HashMap::new();
    // Why a slot whose digest differed shows no difference key by key.
    let mut ttl_split = SlotSet::default();
    let mut differed_once = SlotSet::default();
    let mut er_unknown = SlotSet::default();
    for round in 0..3 {
        if round > 0 {
            std::thread::sleep(Duration::from_millis(300));
        }
        let mut still = Vec::new();
        last.clear();
        let mut by_slot: BTreeMap<u16, Vec<Vec<u8>>> = BTreeMap::new();
        for (s, k) in pending.drain(..) {
            by_slot.entry(s).or_default().push(k);
        }
        for (s, keys) in by_slot {
            let judged = compare_judged(src, dst, s, &keys, tol_ms)?;
            for (k, j) in keys.into_iter().zip(judged) {
                if j.ttl_split && round == 0 {
                    ttl_split.insert(s);
                }
                if j.entries_read_unknown && round == 0 {
                    er_unknown.insert(s);
                }
                if let Some(w) = j.what {
                    differed_once.insert(s);
                    last.insert((s, k.clone()), w);
                    still.push((s, k));
                }
            }
        }
        pending = still;
        if pending.is_empty() {
            break;
        }
    }
    let mut still_bad = SlotSet::default();
    for (s, k) in pending {
        let what = last.remove(&(s, k.clone())).unwrap_or_default();
        still_bad.insert(s);
        rep.diffs.push(Diff { slot: s, key: k, what });
    }
    for s in bad.iter() {
        if still_bad.contains(s) {
            continue;
        }
        if differed_once.contains(s) {
            rep.slots_settled += 1;
        } else if ttl_split.contains(s) {
            rep.slots_ttl_boundary += 1;
        } else if er_unknown.contains(s) {
            rep.slots_entries_read_unknown += 1;
        } else {
            rep.slots_changed += 1;
        }
    }
    let _ = max_print;
    crate::metrics::get().verify_mismatches.set(rep.differences() as i64);
    Ok(rep)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferrite_rdb::RdbValue;

    #[test]
    fn canonical_value_ignores_order_where_redis_does() {
        let a = ferrite_rdb::dump_payload(&RdbValue::Set(vec![b"x".to_vec(), b"y".to_vec()]));
        let b = ferrite_rdb::dump_payload(&RdbValue::Set(vec![b"y".to_vec(), b"x".to_vec()]));
        assert_eq!(canonical_dump(&a), canonical_dump(&b));
        let a = ferrite_rdb::dump_payload(&RdbValue::Hash(vec![
            (b"f".to_vec(), b"1".to_vec()),
            (b"g".to_vec(), b"2".to_vec()),
        ]));
        let b = ferrite_rdb::dump_payload(&RdbValue::Hash(vec![
            (b"g".to_vec(), b"2".to_vec()),
            (b"f".to_vec(), b"1".to_vec()),
        ]));
        assert_eq!(canonical_dump(&a), canonical_dump(&b));
        let c = ferrite_rdb::dump_payload(&RdbValue::Hash(vec![
            (b"g".to_vec(), b"1".to_vec()),
            (b"f".to_vec(), b"2".to_vec()),
        ]));
        assert_ne!(canonical_dump(&a), canonical_dump(&c));
        // Lists keep their order; types are told apart.
        let l1 = ferrite_rdb::dump_payload(&RdbValue::List(vec![b"x".to_vec(), b"y".to_vec()]));
        let l2 = ferrite_rdb::dump_payload(&RdbValue::List(vec![b"y".to_vec(), b"x".to_vec()]));
        assert_ne!(canonical_dump(&l1), canonical_dump(&l2));
        let s = ferrite_rdb::dump_payload(&RdbValue::Set(vec![b"x".to_vec(), b"y".to_vec()]));
        assert_ne!(canonical_dump(&l1), canonical_dump(&s));
        // Scores compare exactly.
        let z1 = ferrite_rdb::dump_payload(&RdbValue::ZSet(vec![(b"m".to_vec(), 0.1)]));
        let z2 = ferrite_rdb::dump_payload(&RdbValue::ZSet(vec![(b"m".to_vec(), 0.1 + 1e-18)]));
        let z3 = ferrite_rdb::dump_payload(&RdbValue::ZSet(vec![(b"m".to_vec(), 0.10000000000000002)]));
        assert_eq!(canonical_dump(&z1), canonical_dump(&z2));
        assert_ne!(canonical_dump(&z1), canonical_dump(&z3));
        // Garbage is not decodable (verify then hashes the raw bytes).
        assert_eq!(canonical_dump(b"garbage"), None);
    }

    fn slot_of_one(key: &[u8], deadline: i64, tol: i64) -> (Digests, u16) {
        let mut d = Digests::new(tol);
        d.add(key, &KeyInfo { ty: "string".into(), value: [7; 32], deadline, stream: None });
        (d, key_hash_slot(key))
    }

    #[test]
    fn ttl_noise_across_a_bucket_boundary_does_not_make_a_slot_differ() {
        let tol = 2000;
        for (a, b, same) in [
            // A few ms apart across a boundary of the first grid.
            (1_700_000_001_999, 1_700_000_002_003, true),
            // ... or of the second one.
            (1_700_000_000_998, 1_700_000_001_001, true),
            (5, 5, true),
            (-1, -1, true),
            // Beyond the tolerance: always different.
            (1_700_000_000_000, 1_700_000_002_001, false),
            (1_700_000_000_500, 1_700_000_002_501, false),
            (-1, 1_700_000_000_000, false),
        ] {
            let (da, s) = slot_of_one(b"k", a, tol);
            let (db, _) = slot_of_one(b"k", b, tol);
            assert_eq!(da.same(&db, s), same, "{a} vs {b}");
        }
        // Two keys of one slot, each a few ms apart across a boundary of a
        // different grid (grids are 500 ms apart): still the same.
        let (mut da, mut db) = (Digests::new(tol), Digests::new(tol));
        let info = |deadline| KeyInfo { ty: "string".into(), value: [7; 32], deadline, stream: None };
        da.add(b"{t}a", &info(1_700_000_001_998));
        db.add(b"{t}a", &info(1_700_000_002_001));
        da.add(b"{t}b", &info(1_700_000_002_999));
        db.add(b"{t}b", &info(1_700_000_003_002));
        assert!(da.same(&db, key_hash_slot(b"{t}a")));
    }
}
