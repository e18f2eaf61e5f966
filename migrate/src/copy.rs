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
        // In microseconds, rounded to the nearest ms at the end: on one host
        // the offset is then 0, not 1 ms whenever TIME straddles a ms
        // boundary (which shifted every copied deadline by 1 ms).
        let now_us = || {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_micros() as i64)
                .unwrap_or(0)
        };
        let t0 = now_us();
        let r = conn.cmd(&cmd!["TIME"])?.ok()?;
        let t1 = now_us();
        let it = r.items();
        let secs = it.first().and_then(|x| x.as_int()).unwrap_or(0);
        let us = it.get(1).and_then(|x| x.as_int()).unwrap_or(0);
        let remote = secs.saturating_mul(1_000_000).saturating_add(us);
        let clock_offset_ms = if secs > 0 { (remote - (t0 + t1) / 2) as f64 / 1000.0 } else { 0.0 }.round() as i64;
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

/// A DUMP payload longer than this is not read whole: the key is copied
/// in parts ([`copy_big`]).
pub const BIG_PAYLOAD: usize = 8 << 20;
/// DUMP payloads kept from one source pipeline at most (beyond it, payloads
/// over 64 KB are dropped and their keys copied in parts).
pub const PIPELINE_BUDGET: usize = 32 << 20;

/// Target commands for one EXEC reply of `[DUMP k, PTTL k]*` (an empty
/// command = nothing to send for that key). Keys whose payload was too big
/// to keep go to `big`.
fn target_cmds(
    chunk: &[Vec<u8>],
    items: Vec<Reply>,
    read_at: i64,
    dst: &Target,
    st: &mut CopyStats,
    out: &mut Vec<(Vec<u8>, Vec<Vec<u8>>, u64)>,
    big: &mut Vec<Vec<u8>>,
) {
    let m = metrics::get();
    let mut it = items.into_iter();
    for k in chunk.iter() {
        let dump = it.next().unwrap_or(Reply::Nil);
        let pttl = it.next().as_ref().and_then(Reply::as_int).unwrap_or(-2);
        match dump {
            Reply::TooBig(_) => big.push(k.clone()),
            Reply::Bulk(payload) if pttl != -2 => {
                if pttl >= 0 {
                    let deadline = read_at + pttl + dst.clock_offset_ms;
                    if pttl == 0 || deadline <= crate::now_ms() + dst.clock_offset_ms {
                        out.push((k.clone(), cmd!["DEL", k], 0));
                        continue;
                    }
                    let n = payload.len() as u64;
                    let c = vec![
                        b"RESTORE".to_vec(),
                        k.clone(),
                        deadline.max(1).to_string().into_bytes(),
                        payload,
                        b"REPLACE".to_vec(),
                        b"ABSTTL".to_vec(),
                    ];
                    out.push((k.clone(), c, n));
                } else {
                    let n = payload.len() as u64;
                    let c = vec![b"RESTORE".to_vec(), k.clone(), b"0".to_vec(), payload, b"REPLACE".to_vec()];
                    out.push((k.clone(), c, n));
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
    let cmds: Vec<Vec<&[u8]>> = out.iter().map(|(_, c, _)| c.iter().map(Vec::as_slice).collect()).collect();
    let replies = dst.conn.pipeline(&cmds)?;
    drop(cmds);
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

/// Copy one key in parts, because its DUMP payload was too big to hold:
/// TYPE, then GETRANGE / LRANGE / SSCAN / HSCAN / ZSCAN in parts of about
/// 1 MB, written as SET + APPEND / RPUSH / SADD / HSET / ZADD after a DEL
/// (streams: groups and consumers, XRANGE / XADD with the same ids and
/// pending entries claimed on the way, then ids and counters, see
/// [`crate::streamcopy`]), then the TTL
/// (PTTL read last). Each part is read then written, by the one copying
/// thread, like every copy. The parts are not one snapshot: a write to the
/// key during its copy can leave a mix on Ferrite, but such a write is
/// recorded by the proxies and makes a later copy, the last one during the
/// pause, when nothing writes. Module values are copied with one DUMP
/// (their memory is not bounded).
pub fn copy_big(src: &mut Source, slot: u16, key: &[u8], dst: &mut Target, st: &mut CopyStats) -> Result<()> {
    match copy_big_inner(src, slot, key, dst) {
        Ok(Some(bytes)) => {
            let m = metrics::get();
            st.keys += 1;
            st.bytes += bytes;
            m.keys_copied.inc();
            m.bytes_copied.inc_by(bytes);
            Ok(())
        }
        Ok(None) => {
            st.deleted += 1;
            Ok(())
        }
        Err(Error::Server(e)) => {
            st.errors += 1;
            metrics::get().copy_errors.inc();
            if st.failed.len() < 100 {
                st.failed.push((key.to_vec(), format!("copy in parts: {e}")));
            }
            Ok(())
        }
        Err(e) => Err(e),
    }
}

/// Bytes copied, or None when the key is gone.
fn copy_big_inner(src: &mut Source, slot: u16, key: &[u8], dst: &mut Target) -> Result<Option<u64>> {
    const PART: usize = 1 << 20;
    fn read(src: &mut Source, slot: u16, c: Vec<Vec<u8>>) -> Result<Reply> {
        let mut r = src.slot_pipeline(slot, &[c])?;
        r.pop().ok_or_else(|| Error::Protocol("no reply from the source".into()))?.ok()
    }
    fn write<A: AsRef<[u8]>>(dst: &mut Target, c: &[A]) -> Result<()> {
        dst.conn.cmd(c)?.ok().map(|_| ())
    }
    let ty = read(src, slot, cmd!["TYPE", key])?.as_str().unwrap_or_default();
    let mut bytes = 0u64;
    // Elements per part, adapted to their size so a part is about PART bytes.
    let per_part = |bytes: u64, n: u64| -> u64 {
        if n == 0 || bytes == 0 {
            return 100;
        }
        (PART as u64 / (bytes / n).max(1)).clamp(1, 10_000)
    };
    match ty.as_str() {
        "none" => {
            write(dst, &cmd!["DEL", key])?;
            return Ok(None);
        }
        "string" => {
            let mut off = 0u64;
            for _ in 0..(1u64 << 20) {
                let r = read(src, slot, cmd!["GETRANGE", key, off, off + PART as u64 - 1])?;
                let b = r.as_bytes().unwrap_or_default();
                if off == 0 {
                    write(dst, &[&b"SET"[..], key, b])?;
                } else if !b.is_empty() {
                    write(dst, &[&b"APPEND"[..], key, b])?;
                }
                off += b.len() as u64;
                if b.len() < PART {
                    break;
                }
            }
            bytes = off;
        }
        "list" => {
            write(dst, &cmd!["DEL", key])?;
            let mut i = 0u64;
            for _ in 0..(1u64 << 32) {
                let n = per_part(bytes, i);
                let r = read(src, slot, cmd!["LRANGE", key, i, i + n - 1])?;
                let items = r.items();
                if items.is_empty() {
                    break;
                }
                let mut c: Vec<&[u8]> = vec![b"RPUSH", key];
                for x in items {
                    let b = x.as_bytes().unwrap_or_default();
                    bytes += b.len() as u64;
                    c.push(b);
                }
                write(dst, &c)?;
                i += items.len() as u64;
                if (items.len() as u64) < n {
                    break;
                }
            }
        }
        "set" | "hash" | "zset" => {
            write(dst, &cmd!["DEL", key])?;
            let (scan, add): (&str, &[u8]) = match ty.as_str() {
                "set" => ("SSCAN", b"SADD"),
                "hash" => ("HSCAN", b"HSET"),
                _ => ("ZSCAN", b"ZADD"),
            };
            let mut cursor = b"0".to_vec();
            let mut seen = 0u64;
            for _ in 0..(1u64 << 32) {
                let n = per_part(bytes, seen);
                let r = read(src, slot, cmd![scan, key, &cursor, "COUNT", n])?;
                let it = r.items();
                cursor = it.first().and_then(|x| x.as_bytes()).map(<[u8]>::to_vec).unwrap_or_else(|| b"0".to_vec());
                let items = it.get(1).map(|x| x.items()).unwrap_or_default();
                if !items.is_empty() {
                    let mut c: Vec<&[u8]> = vec![add, key];
                    if scan == "ZSCAN" {
                        // ZSCAN gives member, score; ZADD wants score, member.
                        for pair in items.chunks(2) {
                            let (Some(mbr), Some(score)) = (pair.first(), pair.get(1)) else { break };
                            let (mbr, score) =
                                (mbr.as_bytes().unwrap_or_default(), score.as_bytes().unwrap_or_default());
                            bytes += mbr.len() as u64 + 8;
                            c.push(score);
                            c.push(mbr);
                        }
                        seen += items.len() as u64 / 2;
                    } else {
                        for x in items {
                            let b = x.as_bytes().unwrap_or_default();
                            bytes += b.len() as u64;
                            c.push(b);
                        }
                        seen += if scan == "HSCAN" { items.len() as u64 / 2 } else { items.len() as u64 };
                    }
                    if c.len() > 2 {
                        write(dst, &c)?;
                    }
                }
                if cursor == b"0" {
                    break;
                }
            }
        }
        "stream" => match crate::streamcopy::copy_stream(src, slot, key, dst)? {
            Some(b) => bytes = b,
            None => return Ok(None),
        },
        _ => {
            // Module values: one DUMP.
            let r = read(src, slot, cmd!["DUMP", key])?;
            let Some(payload) = r.as_bytes() else {
                write(dst, &cmd!["DEL", key])?;
                return Ok(None);
            };
            bytes = payload.len() as u64;
            write(dst, &[&b"RESTORE"[..], key, b"0", payload, b"REPLACE"])?;
        }
    }
    // The TTL last: a deadline set or changed during the copy is seen.
    let read_at = crate::now_ms();
    let pttl = read(src, slot, cmd!["PTTL", key])?.as_int().unwrap_or(-2);
    if pttl == -2 {
        write(dst, &cmd!["DEL", key])?;
        return Ok(None);
    }
    if pttl >= 0 {
        let deadline = read_at + pttl + dst.clock_offset_ms;
        if pttl == 0 || deadline <= crate::now_ms() + dst.clock_offset_ms {
            write(dst, &cmd!["DEL", key])?;
            return Ok(None);
        }
        write(dst, &cmd!["PEXPIREAT", key, deadline.max(1)])?;
    }
    Ok(Some(bytes))
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
        src.skip_big_bulks(BIG_PAYLOAD, PIPELINE_BUDGET);
        let replies = src.slot_pipeline(slot, &cmds);
        src.skip_big_bulks(usize::MAX, usize::MAX);
        let mut replies = replies?;
        let read_at = crate::now_ms();
        let items = match replies.pop() {
            Some(Reply::Array(v)) if v.len() == chunk.len() * 2 => v,
            other => return Err(Error::Protocol(format!("slot {slot}: unexpected EXEC reply {other:?}"))),
        };
        let mut out = Vec::with_capacity(chunk.len());
        let mut big = Vec::new();
        target_cmds(chunk, items, read_at, dst, &mut st, &mut out, &mut big);
        apply_target(dst, out, &mut st)?;
        for k in big {
            copy_big(src, slot, &k, dst, &mut st)?;
        }
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
    let mut big: Vec<(u16, Vec<u8>)> = Vec::new();
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
        src.skip_big_bulks(BIG_PAYLOAD, PIPELINE_BUDGET);
        let replies = src.conn(&addr).and_then(|c| c.pipeline(&cmds));
        src.skip_big_bulks(usize::MAX, usize::MAX);
        let replies = match replies {
            Ok(r) => r,
            Err(_) => {
                src.drop_conn(&addr);
                fallback.extend(idxs);
                continue;
            }
        };
        let read_at = crate::now_ms();
        let mut bad: Vec<usize> = Vec::new();
        let mut replies = replies;
        for &(i, a, b, exec) in &blocks {
            if bad.contains(&i) {
                continue;
            }
            match replies.get_mut(exec).map(|r| std::mem::replace(r, Reply::Nil)) {
                Some(Reply::Array(v)) if v.len() == (b - a) * 2 => {
                    let mut bigs = Vec::new();
                    target_cmds(&work[i].1[a..b], v, read_at, dst, &mut st, &mut out, &mut bigs);
                    big.extend(bigs.into_iter().map(|k| (work[i].0, k)));
                }
                _ => bad.push(i),
            }
        }
        // A slot is copied either entirely here or entirely by the
        // fallback: drop what was prepared for the bad ones.
        if !bad.is_empty() {
            let bad_keys: std::collections::HashSet<&Vec<u8>> = bad.iter().flat_map(|&i| work[i].1.iter()).collect();
            out.retain(|(k, _, _)| !bad_keys.contains(k));
            big.retain(|(_, k)| !bad_keys.contains(k));
            fallback.extend(bad);
        }
    }
    let n: u64 = out.len() as u64 + big.len() as u64;
    apply_target(dst, out, &mut st)?;
    for (slot, k) in big {
        copy_big(src, slot, &k, dst, &mut st)?;
    }
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

/// Key names of many slots (with their known counts), one pipeline per
/// source master; a slot that cannot be listed that way (MOVED, failover)
/// is listed alone with [`slot_keys`].
pub fn many_slot_keys(src: &mut Source, slots: &[(u16, u64)]) -> Result<Vec<(u16, Vec<Vec<u8>>)>> {
    let mut by_master: std::collections::BTreeMap<String, Vec<(u16, u64)>> = Default::default();
    let mut alone = Vec::new();
    for &(s, n) in slots {
        match src.topo.master_of(s) {
            Some(m) if n != u64::MAX => by_master.entry(m.addr.clone()).or_default().push((s, n)),
            _ => alone.push(s),
        }
    }
    let mut out = Vec::new();
    for (addr, v) in by_master {
        let cmds: Vec<Vec<Vec<u8>>> =
            v.iter().map(|(s, n)| cmd!["CLUSTER", "GETKEYSINSLOT", *s, n + n / 10 + 100]).collect();
        match src.conn(&addr).and_then(|c| c.pipeline(&cmds)) {
            Ok(replies) => {
                for ((s, _), r) in v.iter().zip(replies) {
                    match r {
                        Reply::Array(items) => {
                            out.push((*s, items.iter().filter_map(|x| x.as_bytes().map(<[u8]>::to_vec)).collect()))
                        }
                        _ => alone.push(*s),
                    }
                }
            }
            Err(_) => {
                src.drop_conn(&addr);
                alone.extend(v.iter().map(|(s, _)| *s));
            }
        }
    }
    for s in alone {
        out.push((s, slot_keys(src, s)?));
    }
    out.sort_by_key(|(s, _)| *s);
    Ok(out)
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
