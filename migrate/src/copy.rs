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
    let m = metrics::get();
    for chunk in keys.chunks(batch.max(1)) {
        let mut cmds: Vec<Vec<Vec<u8>>> = Vec::with_capacity(chunk.len() * 2 + 2);
        cmds.push(cmd!["MULTI"]);
        for k in chunk {
            cmds.push(cmd!["DUMP", k]);
            cmds.push(cmd!["PTTL", k]);
        }
        cmds.push(cmd!["EXEC"]);
        let replies = src.slot_pipeline(slot, &cmds)?;
        let read_at = crate::now_ms();
        let exec = replies.last().cloned().unwrap_or(Reply::Nil);
        let items = match exec {
            Reply::Array(v) if v.len() == chunk.len() * 2 => v,
            other => return Err(Error::Protocol(format!("slot {slot}: unexpected EXEC reply {other:?}"))),
        };
        let mut out: Vec<Vec<Vec<u8>>> = Vec::with_capacity(chunk.len());
        let mut sizes = Vec::with_capacity(chunk.len());
        for (i, k) in chunk.iter().enumerate() {
            let dump = &items[2 * i];
            let pttl = items[2 * i + 1].as_int().unwrap_or(-2);
            match dump {
                Reply::Bulk(payload) if pttl != -2 => {
                    if pttl >= 0 {
                        let deadline = read_at + pttl + dst.clock_offset_ms;
                        if pttl == 0 || deadline <= crate::now_ms() + dst.clock_offset_ms {
                            out.push(cmd!["DEL", k]);
                            sizes.push(0);
                            continue;
                        }
                        out.push(cmd!["RESTORE", k, deadline.max(1), payload, "REPLACE", "ABSTTL"]);
                    } else {
                        out.push(cmd!["RESTORE", k, "0", payload, "REPLACE"]);
                    }
                    sizes.push(payload.len() as u64);
                }
                Reply::Error(e) => {
                    st.errors += 1;
                    m.copy_errors.inc();
                    if st.failed.len() < 100 {
                        st.failed.push((k.clone(), format!("source DUMP: {e}")));
                    }
                    out.push(Vec::new());
                    sizes.push(0);
                }
                _ => {
                    // Gone (or expired) on the source: gone on the target.
                    out.push(cmd!["DEL", k]);
                    sizes.push(0);
                }
            }
        }
        let to_send: Vec<Vec<Vec<u8>>> = out.iter().filter(|c| !c.is_empty()).cloned().collect();
        let replies = dst.conn.pipeline(&to_send)?;
        let mut ri = replies.into_iter();
        for (i, c) in out.iter().enumerate() {
            if c.is_empty() {
                continue;
            }
            let r = ri.next().unwrap_or(Reply::Nil);
            if let Reply::Error(e) = r {
                st.errors += 1;
                m.copy_errors.inc();
                if st.failed.len() < 100 {
                    st.failed.push((chunk[i].clone(), format!("target: {e}")));
                }
            } else if c[0] == b"DEL" {
                st.deleted += 1;
            } else {
                st.keys += 1;
                st.bytes += sizes[i];
                m.keys_copied.inc();
                m.bytes_copied.inc_by(sizes[i]);
            }
        }
        lim.take(chunk.len() as u64);
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
