//! The `scan` method's copy: per slot CLUSTER COUNTKEYSINSLOT +
//! CLUSTER GETKEYSINSLOT, then per batch of keys one MULTI of DUMP + PTTL on
//! the source master (an atomic snapshot of the batch) and one pipeline of
//! `RESTORE key <deadline> payload REPLACE ABSTTL` (or DEL for keys that are
//! gone or already expired) on Ferrite.
//!
//! Ordering guarantee: every copy of a key is done by the single thread that
//! owns the run, read-then-write, one batch after the other; a key written
//! after its read is recorded by the proxies (TRACK) and copied again later,
//! and that later copy reads the source again. So the last write to the
//! target for a key always carries a value at least as new as any earlier
//! copy.

use crate::metrics;
use crate::resp::{Auth, Conn, Reply};
use crate::topo::Source;
use crate::{cmd, Error, Result};
use std::time::{Duration, Instant};

/// The Ferrite side.
pub struct Target {
    pub conn: Conn,
    pub addr: String,
    /// target clock - local clock, ms (from TIME), applied to deadlines.
    pub clock_offset_ms: i64,
}

impl Target {
    pub fn connect(addr: &str, timeout: Duration, auth: &Auth) -> Result<Target> {
        let mut conn = Conn::connect(addr, timeout, auth)?;
        let t0 = crate::now_ms();
        let r = conn.cmd(&cmd!["TIME"])?.ok()?;
        let t1 = crate::now_ms();
        let it = r.items();
        let secs = it.first().and_then(|x| x.as_int()).unwrap_or(0);
        let us = it.get(1).and_then(|x| x.as_int()).unwrap_or(0);
        let remote = secs * 1000 + us / 1000;
        let clock_offset_ms = if secs > 0 { remote - (t0 + t1) / 2 } else { 0 };
        Ok(Target { conn, addr: addr.to_string(), clock_offset_ms })
    }
}

/// Simple rate limiter (keys per second, 0 = unlimited).
pub struct Limiter {
    pub per_sec: u64,
    start: Instant,
    done: u64,
}

impl Limiter {
    pub fn new(per_sec: u64) -> Limiter {
        Limiter { per_sec, start: Instant::now(), done: 0 }
    }
    pub fn take(&mut self, n: u64) {
        self.done += n;
        if self.per_sec == 0 {
            return;
        }
        let due = Duration::from_secs_f64(self.done as f64 / self.per_sec as f64);
        let el = self.start.elapsed();
        if due > el {
            std::thread::sleep(due - el);
        }
    }
}

/// Outcome of copying some keys.
#[derive(Default, Debug, Clone)]
pub struct CopyStats {
    pub keys: u64,
    pub deleted: u64,
    pub bytes: u64,
    pub errors: u64,
    pub failed: Vec<(Vec<u8>, String)>,
}

impl CopyStats {
    pub fn add(&mut self, o: CopyStats) {
        self.keys += o.keys;
        self.deleted += o.deleted;
        self.bytes += o.bytes;
        self.errors += o.errors;
        for f in o.failed {
            if self.failed.len() < 100 {
                self.failed.push(f);
            }
        }
    }
}

/// Target commands for one EXEC reply of `[DUMP k, PTTL k]*` (an empty
/// command = nothing to send for that key).
fn target_cmds(
    chunk: &[Vec<u8>],
    items: &[Reply],
    read_at: i64,
    dst: &Target,
    st: &mut CopyStats,
    out: &mut Vec<(Vec<u8>, Vec<Vec<u8>>, u64)>,
) {
    let m = metrics::get();
    for (i, k) in chunk.iter().enumerate() {
        let dump = items.get(2 * i).unwrap_or(&Reply::Nil);
        let pttl = items.get(2 * i + 1).and_then(Reply::as_int).unwrap_or(-2);
        match dump {
            Reply::Bulk(payload) if pttl != -2 => {
                if pttl >= 0 {
                    let deadline = read_at + pttl + dst.clock_offset_ms;
                    if pttl == 0 || deadline <= crate::now_ms() + dst.clock_offset_ms {
                        out.push((k.clone(), cmd!["DEL", k], 0));
                        continue;
                    }
                    out.push((
                        k.clone(),
                        cmd!["RESTORE", k, deadline.max(1), payload, "REPLACE", "ABSTTL"],
                        payload.len() as u64,
                    ));
                } else {
                    out.push((k.clone(), cmd!["RESTORE", k, "0", payload, "REPLACE"], payload.len() as u64));
                }
            }
            Reply::Error(e) => {
                st.errors += 1;
                m.copy_errors.inc();
                if st.failed.len() < 100 {
                    st.failed.push((k.clone(), format!("source DUMP: {e}")));
                }
            }
            // Gone (or expired) on the source: gone on the target.
            _ => out.push((k.clone(), cmd!["DEL", k], 0)),
        }
    }
}

/// Send target commands in one pipeline and account for the replies.
fn apply_target(dst: &mut Target, out: Vec<(Vec<u8>, Vec<Vec<u8>>, u64)>, st: &mut CopyStats) -> Result<()> {
    if out.is_empty() {
        return Ok(());
    }
    let m = metrics::get();
    let cmds: Vec<Vec<Vec<u8>>> = out.iter().map(|(_, c, _)| c.clone()).collect();
    let replies = dst.conn.pipeline(&cmds)?;
    for ((k, c, size), r) in out.into_iter().zip(replies) {
        if let Reply::Error(e) = r {
            st.errors += 1;
            m.copy_errors.inc();
            if st.failed.len() < 100 {
                st.failed.push((k, format!("target: {e}")));
            }
        } else if c[0] == b"DEL" {
            st.deleted += 1;
        } else {
            st.keys += 1;
            st.bytes += size;
            m.keys_copied.inc();
            m.bytes_copied.inc_by(size);
        }
    }
    Ok(())
}

fn snapshot_cmds(chunk: &[Vec<u8>], cmds: &mut Vec<Vec<Vec<u8>>>) {
    cmds.push(cmd!["MULTI"]);
    for k in chunk {
        cmds.push(cmd!["DUMP", k]);
        cmds.push(cmd!["PTTL", k]);
    }
    cmds.push(cmd!["EXEC"]);
}

/// Copy `keys` (all of one slot) from the source to the target.
pub fn copy_keys(
    src: &mut Source,
    slot: u16,
    keys: &[Vec<u8>],
    dst: &mut Target,
    batch: usize,
    lim: &mut Limiter,
) -> Result<CopyStats> {
    let mut st = CopyStats::default();
    for chunk in keys.chunks(batch.max(1)) {
        let mut cmds: Vec<Vec<Vec<u8>>> = Vec::with_capacity(chunk.len() * 2 + 2);
        snapshot_cmds(chunk, &mut cmds);
        let replies = src.slot_pipeline(slot, &cmds)?;
        let read_at = crate::now_ms();
        let items = match replies.last() {
            Some(Reply::Array(v)) if v.len() == chunk.len() * 2 => v,
            other => return Err(Error::Protocol(format!("slot {slot}: unexpected EXEC reply {other:?}"))),
        };
        let mut out = Vec::with_capacity(chunk.len());
        target_cmds(chunk, items, read_at, dst, &mut st, &mut out);
        apply_target(dst, out, &mut st)?;
        lim.take(chunk.len() as u64);
    }
    Ok(st)
}

/// Copy the keys of many slots with one source pipeline per master (one
/// MULTI/EXEC snapshot per slot and batch inside it) and one target
/// pipeline: the dirty re-copy during a pause costs a few round trips, not
/// a few per slot. Slots whose snapshot hit MOVED, a failover or an error
/// are copied again one by one with [`copy_keys`] (which follows them).
pub fn copy_many(
    src: &mut Source,
    work: &[(u16, Vec<Vec<u8>>)],
    dst: &mut Target,
    batch: usize,
    lim: &mut Limiter,
) -> Result<CopyStats> {
    let mut st = CopyStats::default();
    let mut by_master: std::collections::BTreeMap<String, Vec<usize>> = Default::default();
    let mut fallback: Vec<usize> = Vec::new();
    for (i, (slot, _)) in work.iter().enumerate() {
        match src.topo.master_of(*slot) {
            Some(m) => by_master.entry(m.addr.clone()).or_default().push(i),
            None => fallback.push(i),
        }
    }
    let mut out = Vec::new();
    for (addr, idxs) in by_master {
        let mut cmds = Vec::new();
        // (work index, chunk start, chunk end, index of the EXEC reply)
        let mut blocks = Vec::new();
        for &i in &idxs {
            let keys = &work[i].1;
            let mut start = 0;
            while start < keys.len() {
                let end = (start + batch.max(1)).min(keys.len());
                snapshot_cmds(&keys[start..end], &mut cmds);
                blocks.push((i, start, end, cmds.len() - 1));
                start = end;
            }
        }
        let replies = match src.conn(&addr).and_then(|c| c.pipeline(&cmds)) {
            Ok(r) => r,
            Err(_) => {
                src.drop_conn(&addr);
                fallback.extend(idxs);
                continue;
            }
        };
        let read_at = crate::now_ms();
        let mut bad: Vec<usize> = Vec::new();
        for &(i, a, b, exec) in &blocks {
            if bad.contains(&i) {
                continue;
            }
            match replies.get(exec) {
                Some(Reply::Array(v)) if v.len() == (b - a) * 2 => {
                    target_cmds(&work[i].1[a..b], v, read_at, dst, &mut st, &mut out);
                }
                _ => bad.push(i),
            }
        }
        // A slot is copied either entirely here or entirely by the
        // fallback: drop what was prepared for the bad ones.
        if !bad.is_empty() {
            let bad_keys: std::collections::HashSet<&Vec<u8>> = bad.iter().flat_map(|&i| work[i].1.iter()).collect();
            out.retain(|(k, _, _)| !bad_keys.contains(k));
            fallback.extend(bad);
        }
    }
    let n: u64 = out.len() as u64;
    apply_target(dst, out, &mut st)?;
    lim.take(n);
    for i in fallback {
        let (slot, keys) = &work[i];
        st.add(copy_keys(src, *slot, keys, dst, batch, lim)?);
    }
    Ok(st)
}

/// All key names of a slot on the source (CLUSTER GETKEYSINSLOT has no
/// cursor, so it asks for COUNTKEYSINSLOT + slack keys at once: the memory
/// used is the key names of one slot).
pub fn slot_keys(src: &mut Source, slot: u16) -> Result<Vec<Vec<u8>>> {
    let r = src.slot_pipeline(slot, &[cmd!["CLUSTER", "COUNTKEYSINSLOT", slot]])?;
    let n = r.first().and_then(|x| x.as_int()).unwrap_or(0).max(0) as u64;
    if n == 0 {
        return Ok(Vec::new());
    }
    let r = src.slot_pipeline(slot, &[cmd!["CLUSTER", "GETKEYSINSLOT", slot, n + n / 10 + 100]])?;
    let r = r.into_iter().next().unwrap_or(Reply::Nil).ok()?;
    Ok(r.items().iter().filter_map(|x| x.as_bytes().map(<[u8]>::to_vec)).collect())
}

/// Copy a whole slot.
pub fn copy_slot(src: &mut Source, slot: u16, dst: &mut Target, batch: usize, lim: &mut Limiter) -> Result<CopyStats> {
    let keys = slot_keys(src, slot)?;
    copy_keys(src, slot, &keys, dst, batch, lim)
}

/// Delete every key of the target whose slot is in `slots` (one SCAN pass
/// over the target; keys are deleted in batches). Returns how many.
pub fn purge_target(dst: &mut Target, slots: &crate::slots::SlotSet) -> Result<u64> {
    if slots.is_empty() {
        return Ok(0);
    }
    let mut cursor = b"0".to_vec();
    let mut deleted = 0;
    for _ in 0..100_000_000u64 {
        let r = dst.conn.cmd(&cmd!["SCAN", &cursor, "COUNT", "1000"])?.ok()?;
        let it = r.items();
        cursor = it.first().and_then(|x| x.as_bytes()).map(<[u8]>::to_vec).unwrap_or_else(|| b"0".to_vec());
        let keys: Vec<Vec<u8>> = it
            .get(1)
            .map(|k| k.items().iter().filter_map(|x| x.as_bytes().map(<[u8]>::to_vec)).collect())
            .unwrap_or_default();
        let del: Vec<Vec<Vec<u8>>> = keys
            .into_iter()
            .filter(|k| slots.contains(ferrite_commands::key_hash_slot(k)))
            .map(|k| cmd!["DEL", k])
            .collect();
        if !del.is_empty() {
            for r in dst.conn.pipeline(&del)? {
                deleted += r.as_int().unwrap_or(0).max(0) as u64;
            }
        }
        if cursor == b"0" {
            break;
        }
    }
    Ok(deleted)
}
