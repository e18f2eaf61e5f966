//! The `scan` method's copy of a stream too big to `DUMP` whole, in parts
//! (called by `copy::copy_big`, which sets the TTL afterwards):
//!
//! 1. `DEL`, then an empty stream (`XGROUP CREATE key <tmp> 0 MKSTREAM` +
//!    `XGROUP DESTROY`), so a stream without entries is copied too;
//! 2. entries: `XRANGE` in pages of about 1 MB on the source, `XADD key <id>
//!    field value ...` with the same ids on Ferrite (one pipeline per page);
//! 3. `XSETID key <last-generated-id> ENTRIESADDED n MAXDELETEDID id` from
//!    `XINFO STREAM`;
//! 4. groups: `XGROUP CREATE key group <last-delivered-id> [ENTRIESREAD n]`
//!    from `XINFO GROUPS`, consumers with `XGROUP CREATECONSUMER` from
//!    `XINFO CONSUMERS`;
//! 5. pending entries (`XPENDING key group - + N` in pages): `XCLAIM key
//!    group consumer 0 id FORCE JUSTID RETRYCOUNT <deliveries> IDLE <idle>`,
//!    so owner and delivery count are exact and the delivery time is the
//!    source's, give or take the copy's duration.
//!
//! Memory: one page of entries or pending entries at a time. Not exact: the
//! consumers' seen-times (set by the copy), and a pending entry whose message
//! was deleted (`XDEL`) cannot be recreated (`XCLAIM` skips ids that are not
//! in the stream); `verify` reports that as a pending-entry difference. Like
//! the other big types, the parts are not one snapshot: a write during the
//! copy is recorded by the proxies and makes a later copy.

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
    // Entries, in id order.
    let mut copied = 0u64;
    let mut n_entries = 0u64;
    let mut start = b"-".to_vec();
    for _ in 0..(1u64 << 32) {
        let per = copied.checked_div(n_entries).map_or(100, |avg| (PART / avg.max(1)).clamp(1, 10_000));
        let r = read(src, slot, cmd!["XRANGE", key, &start, "+", "COUNT", per])?;
        let items = r.items();
        let mut cmds: Vec<Vec<&[u8]>> = Vec::with_capacity(items.len());
        for e in items {
            let it = e.items();
            let id = bytes(it.first());
            let fields = it.get(1).map(Reply::items).unwrap_or_default();
            if id.is_empty() || fields.is_empty() {
                return Err(Error::Protocol(format!("unexpected XRANGE entry {e:?}")));
            }
            let mut c: Vec<&[u8]> = Vec::with_capacity(3 + fields.len());
            c.extend([&b"XADD"[..], key, id]);
            for f in fields {
                let b = f.as_bytes().unwrap_or_default();
                copied += b.len() as u64;
                c.push(b);
            }
            cmds.push(c);
        }
        write_all(dst, &cmds)?;
        n_entries += items.len() as u64;
        if (items.len() as u64) < per {
            break;
        }
        start = [b"(".as_slice(), bytes(items.last().and_then(|e| e.items().first()))].concat();
    }
    // The stream's ids and counters.
    let info = match read(src, slot, cmd!["XINFO", "STREAM", key]) {
        Ok(r) => r,
        // Gone, or replaced by another type: a later copy sees what it is.
        Err(Error::Server(e)) if e.starts_with("ERR no such key") || e.starts_with("WRONGTYPE") => {
            write_all(dst, &[vec![b"DEL", key]])?;
            return Ok(None);
        }
        Err(e) => return Err(e),
    };
    let last_id = bytes(info.field("last-generated-id")).to_vec();
    let added = info.field("entries-added").and_then(Reply::as_int).unwrap_or(n_entries as i64).to_string();
    let max_deleted = bytes(info.field("max-deleted-entry-id")).to_vec();
    let mut c: Vec<&[u8]> = vec![b"XSETID", key, &last_id, b"ENTRIESADDED", added.as_bytes()];
    if !max_deleted.is_empty() {
        c.extend([&b"MAXDELETEDID"[..], &max_deleted]);
    }
    write_all(dst, &[c])?;
    // Groups, their consumers and pending entries.
    let groups = read(src, slot, cmd!["XINFO", "GROUPS", key])?;
    for g in groups.items() {
        let name = bytes(g.field("name")).to_vec();
        let gid = bytes(g.field("last-delivered-id")).to_vec();
        let read_n = g.field("entries-read").and_then(Reply::as_int).map(|n| n.to_string());
        let mut c: Vec<&[u8]> = vec![b"XGROUP", b"CREATE", key, &name, &gid];
        if let Some(n) = &read_n {
            c.extend([&b"ENTRIESREAD"[..], n.as_bytes()]);
        }
        write_all(dst, &[c])?;
        let consumers = read(src, slot, cmd!["XINFO", "CONSUMERS", key, &name])?;
        let cmds: Vec<Vec<&[u8]>> = consumers
            .items()
            .iter()
            .map(|c| vec![&b"XGROUP"[..], b"CREATECONSUMER", key, &name, bytes(c.field("name"))])
            .collect();
        write_all(dst, &cmds)?;
        let mut start = b"-".to_vec();
        for _ in 0..(1u64 << 32) {
            let r = read(src, slot, cmd!["XPENDING", key, &name, &start, "+", PEL_PAGE])?;
            let items = r.items();
            // id, consumer, idle ms, delivery count
            let nums: Vec<(String, String)> = items
                .iter()
                .map(|e| {
                    let it = e.items();
                    let idle = it.get(2).and_then(Reply::as_int).unwrap_or(0).max(0);
                    let count = it.get(3).and_then(Reply::as_int).unwrap_or(1).max(0);
                    (idle.to_string(), count.to_string())
                })
                .collect();
            let cmds: Vec<Vec<&[u8]>> = items
                .iter()
                .zip(&nums)
                .map(|(e, (idle, count))| {
                    let it = e.items();
                    vec![
                        &b"XCLAIM"[..],
                        key,
                        &name,
                        bytes(it.get(1)),
                        b"0",
                        bytes(it.first()),
                        b"FORCE",
                        b"JUSTID",
                        b"RETRYCOUNT",
                        count.as_bytes(),
                        b"IDLE",
                        idle.as_bytes(),
                    ]
                })
                .collect();
            write_all(dst, &cmds)?;
            if items.len() < PEL_PAGE {
                break;
            }
            start = [b"(".as_slice(), bytes(items.last().and_then(|e| e.items().first()))].concat();
        }
    }
    Ok(Some(copied))
}
