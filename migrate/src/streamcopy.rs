//! The `scan` method's copy of a stream too big to `DUMP` whole, in parts
//! (called by `copy::copy_big`, which sets the TTL afterwards):
//!
//! 1. `DEL`, then an empty stream (`XGROUP CREATE key <tmp> 0 MKSTREAM` +
//!    `XGROUP DESTROY`), so a stream without entries is copied too;
//! 2. groups (`XINFO GROUPS`) created at `0`, their consumers (`XINFO
//!    CONSUMERS`) with `XGROUP CREATECONSUMER`;
//! 3. entries: `XRANGE` in pages of about 1 MB on the source, `XADD key <id>
//!    field value ...` with the same ids on Ferrite, merged in id order with
//!    every group's pending entries (`XPENDING key group - + N` in pages):
//!    right after its entry is added, a pending entry is claimed with
//!    `XCLAIM key group consumer 0 id FORCE JUSTID RETRYCOUNT <deliveries>
//!    IDLE <idle>` (owner and delivery count exact, delivery time the
//!    source's give or take the copy's duration). A pending entry whose
//!    message is gone from the source (XDEL, trimming) gets a placeholder
//!    entry with its id, is claimed, and the placeholder is removed: `XDEL`
//!    after the first real entry (the source's max-deleted-entry-id covers
//!    it), `XTRIM MINID <first entry>` (or `MAXLEN 0`) before it, which
//!    leaves max-deleted-entry-id alone like the source's own trimming;
//! 4. `XSETID key <last-generated-id> ENTRIESADDED n MAXDELETEDID id` from
//!    `XINFO STREAM`, then `XGROUP SETID key group <last-delivered-id>
//!    [ENTRIESREAD n]` as read in step 2.
//!
//! Memory: one page of entries and one page of pending entries per group.
//! Not exact: the consumers' seen-times (set by the copy). Like the other
//! big types, the parts are not one snapshot: a write during the copy is
//! recorded by the proxies and makes a later copy.

use crate::copy::Target;
use crate::resp::Reply;
use crate::topo::Source;
use crate::{cmd, Error, Result};

/// About this many bytes of entries per page.
const PART: u64 = 1 << 20;
/// Pending entries per page.
const PEL_PAGE: usize = 1000;
/// The name of the group used to create an empty stream (destroyed at once).
const TMP_GROUP: &str = "ferrite-migrate-tmp-group";

fn read(src: &mut Source, slot: u16, c: Vec<Vec<u8>>) -> Result<Reply> {
    let mut r = src.slot_pipeline(slot, &[c])?;
    r.pop().ok_or_else(|| Error::Protocol("no reply from the source".into()))?.ok()
}

/// Send `cmds` to Ferrite in one pipeline; the first refusal is the error.
fn write_all(dst: &mut Target, cmds: &[Vec<&[u8]>]) -> Result<()> {
    if cmds.is_empty() {
        return Ok(());
    }
    for r in dst.conn.pipeline(cmds)? {
        r.ok()?;
    }
    Ok(())
}

fn bytes(r: Option<&Reply>) -> &[u8] {
    r.and_then(Reply::as_bytes).unwrap_or_default()
}

pub(crate) fn parse_id(id: &[u8]) -> Option<(u64, u64)> {
    let s = std::str::from_utf8(id).ok()?;
    let (ms, seq) = s.split_once('-')?;
    Some((ms.parse().ok()?, seq.parse().ok()?))
}

/// One pending entry of the source.
struct Pending {
    id: Vec<u8>,
    at: (u64, u64),
    consumer: Vec<u8>,
    idle: String,
    count: String,
}

/// A group's pending entries, read from the source one page at a time.
struct PelCursor {
    group: Vec<u8>,
    page: std::collections::VecDeque<Pending>,
    /// Where the next page starts; None once the list was read to its end.
    next: Option<Vec<u8>>,
}

impl PelCursor {
    /// The id of the next pending entry (reading a page when needed).
    fn front(&mut self, src: &mut Source, slot: u16, key: &[u8]) -> Result<Option<(u64, u64)>> {
        if self.page.is_empty() {
            if let Some(start) = self.next.take() {
                let r = read(src, slot, cmd!["XPENDING", key, &self.group, &start, "+", PEL_PAGE])?;
                let items = r.items();
                for e in items {
                    // id, consumer, idle ms, delivery count
                    let it = e.items();
                    let id = bytes(it.first()).to_vec();
                    let at = parse_id(&id).ok_or_else(|| Error::Protocol(format!("XPENDING entry {e:?}")))?;
                    self.page.push_back(Pending {
                        id,
                        at,
                        consumer: bytes(it.get(1)).to_vec(),
                        idle: it.get(2).and_then(Reply::as_int).unwrap_or(0).max(0).to_string(),
                        count: it.get(3).and_then(Reply::as_int).unwrap_or(1).max(0).to_string(),
                    });
                }
                if items.len() >= PEL_PAGE {
                    if let Some(last) = self.page.back() {
                        self.next = Some([b"(".as_slice(), &last.id].concat());
                    }
                }
            }
        }
        Ok(self.page.front().map(|p| p.at))
    }
}

/// Target commands of one copy, sent in pipelines of about a page.
struct Out {
    cmds: Vec<Vec<Vec<u8>>>,
}

impl Out {
    fn push(&mut self, dst: &mut Target, c: Vec<Vec<u8>>) -> Result<()> {
        self.cmds.push(c);
        if self.cmds.len() >= 1000 {
            self.flush(dst)?;
        }
        Ok(())
    }
    fn flush(&mut self, dst: &mut Target) -> Result<()> {
        let cmds: Vec<Vec<&[u8]>> = self.cmds.iter().map(|c| c.iter().map(Vec::as_slice).collect()).collect();
        write_all(dst, &cmds)?;
        self.cmds.clear();
        Ok(())
    }
}

/// Claim, on Ferrite, every pending entry of every group whose id is `at`.
fn claim_at(
    src: &mut Source,
    slot: u16,
    key: &[u8],
    dst: &mut Target,
    out: &mut Out,
    pels: &mut [PelCursor],
    at: (u64, u64),
) -> Result<()> {
    for c in pels.iter_mut() {
        while c.front(src, slot, key)? == Some(at) {
            let Some(p) = c.page.pop_front() else { break };
            out.push(
                dst,
                vec![
                    b"XCLAIM".to_vec(),
                    key.to_vec(),
                    c.group.clone(),
                    p.consumer,
                    b"0".to_vec(),
                    p.id,
                    b"FORCE".to_vec(),
                    b"JUSTID".to_vec(),
                    b"RETRYCOUNT".to_vec(),
                    p.count.into_bytes(),
                    b"IDLE".to_vec(),
                    p.idle.into_bytes(),
                ],
            )?;
        }
    }
    Ok(())
}

/// The smallest pending id of all groups.
fn min_pending(src: &mut Source, slot: u16, key: &[u8], pels: &mut [PelCursor]) -> Result<Option<(u64, u64)>> {
    let mut min = None;
    for c in pels.iter_mut() {
        if let Some(at) = c.front(src, slot, key)? {
            if min.is_none_or(|m| at < m) {
                min = Some(at);
            }
        }
    }
    Ok(min)
}

/// Copy stream `key` in parts. Bytes of entries copied, or None when the key
/// is gone (or no longer a stream: the caller copies it again).
pub fn copy_stream(src: &mut Source, slot: u16, key: &[u8], dst: &mut Target) -> Result<Option<u64>> {
    let tmp = TMP_GROUP.as_bytes();
    write_all(
        dst,
        &[
            vec![b"DEL", key],
            vec![b"XGROUP", b"CREATE", key, tmp, b"0", b"MKSTREAM"],
            vec![b"XGROUP", b"DESTROY", key, tmp],
        ],
    )?;
    // Groups (their ids are set at the end) and consumers first: pending
    // entries are claimed as the entries arrive.
    let groups = match read(src, slot, cmd!["XINFO", "GROUPS", key]) {
        Ok(r) => r,
        // Gone, or replaced by another type: a later copy sees what it is.
        Err(Error::Server(e)) if e.starts_with("ERR no such key") || e.starts_with("WRONGTYPE") => {
            write_all(dst, &[vec![b"DEL", key]])?;
            return Ok(None);
        }
        Err(e) => return Err(e),
    };
    let mut out = Out { cmds: Vec::new() };
    let mut pels = Vec::new();
    for g in groups.items() {
        let name = bytes(g.field("name")).to_vec();
        out.push(dst, cmd!["XGROUP", "CREATE", key, &name, "0"])?;
        let consumers = read(src, slot, cmd!["XINFO", "CONSUMERS", key, &name])?;
        for c in consumers.items() {
            out.push(dst, cmd!["XGROUP", "CREATECONSUMER", key, &name, bytes(c.field("name"))])?;
        }
        pels.push(PelCursor { group: name, page: Default::default(), next: Some(b"-".to_vec()) });
    }
    // Entries in id order, merged with the pending entries: a pending entry
    // is claimed right after its entry is added; one whose entry no longer
    // exists on the source gets a placeholder entry, claimed, then removed
    // (XDEL; before the first real entry XTRIM, which leaves
    // max-deleted-entry-id alone, like the source's own trimming did).
    let mut copied = 0u64;
    let mut n_entries = 0u64;
    let mut first_real: Option<Vec<u8>> = None;
    let mut leading = 0u64;
    let mut dangling =
        |src: &mut Source, dst: &mut Target, out: &mut Out, pels: &mut [PelCursor], at: (u64, u64), real: bool| {
            let id = format!("{}-{}", at.0, at.1);
            out.push(dst, cmd!["XADD", key, id.as_str(), "ferrite-migrate", "pending entry of a deleted message"])?;
            claim_at(src, slot, key, dst, out, pels, at)?;
            if real {
                out.push(dst, cmd!["XDEL", key, id.as_str()])
            } else {
                leading += 1;
                Ok(())
            }
        };
    let mut start = b"-".to_vec();
    for _ in 0..(1u64 << 32) {
        let per = copied.checked_div(n_entries).map_or(100, |avg| (PART / avg.max(1)).clamp(1, 10_000));
        let r = read(src, slot, cmd!["XRANGE", key, &start, "+", "COUNT", per])?;
        let items = r.items();
        for e in items {
            let it = e.items();
            let id = bytes(it.first());
            let fields = it.get(1).map(Reply::items).unwrap_or_default();
            let Some(at) = parse_id(id).filter(|_| !fields.is_empty()) else {
                return Err(Error::Protocol(format!("unexpected XRANGE entry {e:?}")));
            };
            while let Some(p) = min_pending(src, slot, key, &mut pels)?.filter(|p| *p < at) {
                dangling(src, dst, &mut out, &mut pels, p, first_real.is_some())?;
            }
            let mut c: Vec<Vec<u8>> = Vec::with_capacity(3 + fields.len());
            c.extend([b"XADD".to_vec(), key.to_vec(), id.to_vec()]);
            for f in fields {
                let b = f.as_bytes().unwrap_or_default();
                copied += b.len() as u64;
                c.push(b.to_vec());
            }
            out.push(dst, c)?;
            if first_real.is_none() {
                first_real = Some(id.to_vec());
            }
            claim_at(src, slot, key, dst, &mut out, &mut pels, at)?;
        }
        n_entries += items.len() as u64;
        out.flush(dst)?;
        if (items.len() as u64) < per {
            break;
        }
        start = [b"(".as_slice(), bytes(items.last().and_then(|e| e.items().first()))].concat();
    }
    while let Some(p) = min_pending(src, slot, key, &mut pels)? {
        dangling(src, dst, &mut out, &mut pels, p, first_real.is_some())?;
    }
    if leading > 0 {
        match &first_real {
            Some(id) => out.push(dst, cmd!["XTRIM", key, "MINID", id])?,
            None => out.push(dst, cmd!["XTRIM", key, "MAXLEN", "0"])?,
        }
    }
    out.flush(dst)?;
    // The stream's ids and counters, then the groups' (as read first).
    let info = read(src, slot, cmd!["XINFO", "STREAM", key])?;
    let last_id = bytes(info.field("last-generated-id")).to_vec();
    let added = info.field("entries-added").and_then(Reply::as_int).unwrap_or(n_entries as i64).to_string();
    let max_deleted = bytes(info.field("max-deleted-entry-id")).to_vec();
    let mut c: Vec<&[u8]> = vec![b"XSETID", key, &last_id, b"ENTRIESADDED", added.as_bytes()];
    if !max_deleted.is_empty() {
        c.extend([&b"MAXDELETEDID"[..], &max_deleted]);
    }
    let mut cmds = vec![c];
    let ids: Vec<(Vec<u8>, Vec<u8>, Option<String>)> = groups
        .items()
        .iter()
        .map(|g| {
            let n = g.field("entries-read").and_then(Reply::as_int).map(|n| n.to_string());
            (bytes(g.field("name")).to_vec(), bytes(g.field("last-delivered-id")).to_vec(), n)
        })
        .collect();
    for (name, gid, n) in &ids {
        let mut c: Vec<&[u8]> = vec![b"XGROUP", b"SETID", key, name, gid];
        if let Some(n) = n {
            c.extend([&b"ENTRIESREAD"[..], n.as_bytes()]);
        }
        cmds.push(c);
    }
    write_all(dst, &cmds)?;
    Ok(Some(copied))
}
