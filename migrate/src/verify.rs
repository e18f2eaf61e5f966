//! `verify`: per-slot digests of both sides first, then key-by-key diffs
//! (both directions) only for the slots whose digests differ.
//!
//! A key's digest covers its name, type, a canonical encoding of its value
//! (decoded from DUMP: sets and hashes sorted, sorted sets sorted by member
//! with exact score bits; streams read with XRANGE) and its TTL as a bucket
//! of the absolute deadline (`--ttl-tolerance-ms`). Slot digests XOR the key
//! digests, so the order keys are listed in does not matter. A deadline that
//! straddles a bucket boundary only costs a key-by-key look at that slot,
//! where TTLs are compared with the tolerance. Differences are re-read a few
//! times before they are reported, so a write in flight is not a difference.
//!
//! Consumer groups of streams are not compared (entries are).

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
    pub keys_source: u64,
    pub keys_target: u64,
    pub diffs: Vec<Diff>,
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
            let value = if ty == "stream" {
                stream_hash(pipe, k)?
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
            out.push(Some(KeyInfo { ty, value, deadline }));
        }
    }
    Ok(out)
}

fn stream_hash(pipe: &mut dyn FnMut(&[Vec<Vec<u8>>]) -> Result<Vec<Reply>>, key: &[u8]) -> Result<[u8; 32]> {
    let mut h = Sha256::new();
    h.update(b"x");
    let mut start = b"-".to_vec();
    for _ in 0..10_000_000u64 {
        let r = pipe(&[cmd!["XRANGE", key, &start, "+", "COUNT", "1000"]])?;
        let r = r.into_iter().next().unwrap_or(Reply::Nil);
        let items = r.items();
        for e in items {
            let it = e.items();
            if let Some(id) = it.first().and_then(|x| x.as_bytes()) {
                lp(&mut h, id);
            }
            for f in it.get(1).map(|x| x.items()).unwrap_or_default() {
                lp(&mut h, f.as_bytes().unwrap_or_default());
            }
        }
        if items.len() < 1000 {
            break;
        }
        let last = items.last().and_then(|e| e.items().first()).and_then(|x| x.as_bytes()).unwrap_or_default();
        start = [b"(".as_slice(), last].concat();
    }
    Ok(h.finalize().into())
}

fn key_digest(key: &[u8], info: &KeyInfo, tol: i64) -> [u8; 32] {
    let mut h = Sha256::new();
    lp(&mut h, key);
    lp(&mut h, info.ty.as_bytes());
    h.update(info.value);
    let bucket = if info.deadline < 0 { -1 } else { info.deadline / tol.max(1) };
    h.update(bucket.to_le_bytes());
    h.finalize().into()
}

/// Per-slot digests: XOR of key digests plus a key count.
pub struct Digests {
    pub x: Vec<[u8; 32]>,
    pub n: Vec<u64>,
}

impl Digests {
    fn new() -> Digests {
        Digests { x: vec![[0; 32]; NSLOTS], n: vec![0; NSLOTS] }
    }
    fn add(&mut self, slot: u16, d: [u8; 32]) {
        let s = slot as usize;
        for (a, b) in self.x[s].iter_mut().zip(d) {
            *a ^= b;
        }
        self.n[s] += 1;
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

fn digest_conn(conn: &mut Conn, scope: &SlotSet, tol: i64, d: &mut Digests) -> Result<u64> {
    let mut n = 0;
    scan_all(conn, scope, |c, keys| {
        let infos = key_infos(&mut |cmds| c.pipeline(cmds), &keys)?;
        for (k, i) in keys.iter().zip(infos) {
            if let Some(i) = i {
                d.add(key_hash_slot(k), key_digest(k, &i, tol));
                n += 1;
            }
        }
        Ok(())
    })?;
    Ok(n)
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
    let a = key_infos(&mut |cmds| src.slot_pipeline(s, cmds), keys)?;
    let b = key_infos(&mut |cmds| dst.pipeline(cmds), keys)?;
    let mut out = Vec::new();
    for ((k, a), b) in keys.iter().zip(a).zip(b) {
        let what = match (a, b) {
            (None, None) => None,
            (Some(_), None) => Some("missing on target".to_string()),
            (None, Some(b)) => Some(format!("extra on target ({})", b.ty)),
            (Some(a), Some(b)) => {
                if a.ty != b.ty {
                    Some(format!("type differs: source {} target {}", a.ty, b.ty))
                } else if a.value != b.value {
                    Some(format!("{} value differs", a.ty))
                } else if (a.deadline < 0) != (b.deadline < 0) || (a.deadline - b.deadline).abs() > tol_ms {
                    let show = |d: i64| if d < 0 { "none".to_string() } else { format!("{} ms", d - crate::now_ms()) };
                    Some(format!("ttl differs: source {} target {}", show(a.deadline), show(b.deadline)))
                } else {
                    None
                }
            }
        };
        if let Some(w) = what {
            out.push((k.clone(), w));
        }
    }
    Ok(out)
}

/// Compare `scope` on both sides.
pub fn verify(src: &mut Source, dst: &mut Conn, scope: &SlotSet, tol_ms: i64, max_print: usize) -> Result<Report> {
    let mut rep = Report { slots_checked: scope.len(), ..Default::default() };
    // Source digests, one master at a time (each SCANs its own slots).
    let mut ds = Digests::new();
    let masters: Vec<(String, SlotSet)> =
        src.topo.masters.iter().map(|m| (m.addr.clone(), m.slots.intersect(scope))).collect();
    for (addr, slots) in &masters {
        if slots.is_empty() {
            continue;
        }
        let c = src.conn(addr)?;
        rep.keys_source += digest_conn(c, slots, tol_ms, &mut ds)?;
    }
    let mut dt = Digests::new();
    rep.keys_target = digest_conn(dst, scope, tol_ms, &mut dt)?;
    let mut bad = SlotSet::default();
    for s in scope.iter() {
        if ds.x[s as usize] != dt.x[s as usize] || ds.n[s as usize] != dt.n[s as usize] {
            bad.insert(s);
        }
    }
    rep.slots_digest_mismatch = bad.len();
    if bad.is_empty() {
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
            for (k, w) in compare_keys(src, dst, s, &keys, tol_ms)? {
                last.insert((s, k.clone()), w);
                still.push((s, k));
            }
        }
        pending = still;
        if pending.is_empty() {
            break;
        }
    }
    for (s, k) in pending {
        let what = last.remove(&(s, k.clone())).unwrap_or_default();
        rep.diffs.push(Diff { slot: s, key: k, what });
    }
    let _ = max_print;
    crate::metrics::get().verify_mismatches.set(rep.diffs.len() as i64);
    Ok(rep)
}
