//! The base of an AOF as commands (`aof-use-rdb-preamble no`), the forms
//! Redis 7.0's `rewriteAppendOnlyFileRio` writes: SET, RPUSH/SADD/ZADD/
//! HMSET in batches of 64 items, streams as XADD + XSETID + XGROUP CREATE
//! (+ CREATECONSUMER) + XCLAIM for pending entries, then PEXPIREAT.

use crate::keyspace::Entry;
use ferrite_rdb::{RdbValue, StreamId};

const ITEMS_PER_CMD: usize = 64;

fn cmd(out: &mut Vec<u8>, args: &[&[u8]]) {
    out.extend_from_slice(format!("*{}\r\n", args.len()).as_bytes());
    for a in args {
        out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
}

fn id(i: &StreamId) -> Vec<u8> {
    format!("{}-{}", i.ms, i.seq).into_bytes()
}

/// Batched variadic command: `name key` + items (each item = 1 or 2 args).
fn batched(out: &mut Vec<u8>, name: &[u8], key: &[u8], items: &[Vec<Vec<u8>>]) {
    for chunk in items.chunks(ITEMS_PER_CMD) {
        let mut args: Vec<&[u8]> = vec![name, key];
        for it in chunk {
            args.extend(it.iter().map(|x| x.as_slice()));
        }
        cmd(out, &args);
    }
}

/// The commands that rebuild one key.
pub fn entry_commands(out: &mut Vec<u8>, e: &Entry) {
    let key: &[u8] = &e.key;
    match crate::rdbconv::to_rdb(&e.value) {
        RdbValue::Str(s) => cmd(out, &[b"SET", key, &s]),
        RdbValue::List(items) => {
            let v: Vec<Vec<Vec<u8>>> = items.into_iter().map(|x| vec![x]).collect();
            batched(out, b"RPUSH", key, &v);
        }
        RdbValue::Set(m) => {
            let v: Vec<Vec<Vec<u8>>> = m.into_iter().map(|x| vec![x]).collect();
            batched(out, b"SADD", key, &v);
        }
        RdbValue::ZSet(z) => {
            let v: Vec<Vec<Vec<u8>>> = z.into_iter().map(|(m, s)| vec![ferrite_resp::num::g17(s), m]).collect();
            batched(out, b"ZADD", key, &v);
        }
        RdbValue::Hash(h) => {
            let v: Vec<Vec<Vec<u8>>> = h.into_iter().map(|(f, x)| vec![f, x]).collect();
            batched(out, b"HMSET", key, &v);
        }
        RdbValue::Stream(s) => {
            let live: Vec<_> = s.entries.iter().filter(|x| !x.deleted).collect();
            if live.is_empty() {
                // Create the empty stream as Redis does: XADD MAXLEN 0 with
                // id 0-1 (0-0 is refused); XSETID below sets the real last id.
                cmd(out, &[b"XADD", key, b"MAXLEN", b"0", b"0-1", b"x", b"y"]);
            }
            for x in live {
                let i = id(&x.id);
                let mut args: Vec<&[u8]> = vec![b"XADD", key, &i];
                for (f, v) in &x.fields {
                    args.push(f);
                    args.push(v);
                }
                cmd(out, &args);
            }
            let added = s.entries_added.to_string();
            cmd(
                out,
                &[
                    b"XSETID",
                    key,
                    &id(&s.last_id),
                    b"ENTRIESADDED",
                    added.as_bytes(),
                    b"MAXDELETEDID",
                    &id(&s.max_deleted_entry_id),
                ],
            );
            for g in &s.groups {
                let read = g.entries_read.to_string();
                cmd(out, &[b"XGROUP", b"CREATE", key, &g.name, &id(&g.last_id), b"ENTRIESREAD", read.as_bytes()]);
                for c in &g.consumers {
                    if c.pending.is_empty() {
                        cmd(out, &[b"XGROUP", b"CREATECONSUMER", key, &g.name, &c.name]);
                    }
                    for pid in &c.pending {
                        let Some(p) = g.pel.iter().find(|p| p.id == *pid) else { continue };
                        let (t, n) = (p.delivery_time_ms.to_string(), p.delivery_count.to_string());
                        cmd(
                            out,
                            &[
                                b"XCLAIM",
                                key,
                                &g.name,
                                &c.name,
                                b"0",
                                &id(pid),
                                b"TIME",
                                t.as_bytes(),
                                b"RETRYCOUNT",
                                n.as_bytes(),
                                b"JUSTID",
                                b"FORCE",
                            ],
                        );
                    }
                }
            }
        }
        RdbValue::Module(_) => {}
    }
    if e.expire_at != 0 {
        cmd(out, &[b"PEXPIREAT", key, e.expire_at.to_string().as_bytes()]);
    }
}

/// `SELECT db` in command form.
pub fn select(db: usize) -> Vec<u8> {
    let mut out = Vec::new();
    cmd(&mut out, &[b"SELECT", db.to_string().as_bytes()]);
    out
}
