//! Set commands.
//!
//! Small integer sets behave like Redis intsets (ascending numeric order);
//! hashtable sets come out in hash order, which differs from Redis's dict
//! order just as one Redis instance's order differs from another's.

use super::{eq_ic, parse_int, CmdError, CmdImpl, CmdResult, Cx, Ks, Lock, SYNTAX, WRONGTYPE};
use crate::keyspace::smallbytes::SmallBytes;
use crate::keyspace::Value;
use crate::notify;
use crate::types::set::{scan_batch, scan_step, Set};
use std::sync::atomic::Ordering;

pub static COMMANDS: &[CmdImpl] = &[
    CmdImpl { name: "sadd", handler: sadd, lock: Lock::Keys },
    CmdImpl { name: "srem", handler: srem, lock: Lock::Keys },
    CmdImpl { name: "smembers", handler: smembers, lock: Lock::Keys },
    CmdImpl { name: "sismember", handler: sismember, lock: Lock::Keys },
    CmdImpl { name: "smismember", handler: smismember, lock: Lock::Keys },
    CmdImpl { name: "scard", handler: scard, lock: Lock::Keys },
    CmdImpl { name: "spop", handler: spop, lock: Lock::Keys },
    CmdImpl { name: "srandmember", handler: srandmember, lock: Lock::Keys },
    CmdImpl { name: "smove", handler: smove, lock: Lock::Keys },
    CmdImpl { name: "sinter", handler: sinter, lock: Lock::Keys },
    CmdImpl { name: "sinterstore", handler: sinterstore, lock: Lock::Keys },
    CmdImpl { name: "sintercard", handler: sintercard, lock: Lock::Keys },
    CmdImpl { name: "sunion", handler: sunion, lock: Lock::Keys },
    CmdImpl { name: "sunionstore", handler: sunionstore, lock: Lock::Keys },
    CmdImpl { name: "sdiff", handler: sdiff, lock: Lock::Keys },
    CmdImpl { name: "sdiffstore", handler: sdiffstore, lock: Lock::Keys },
    CmdImpl { name: "sscan", handler: sscan, lock: Lock::Keys },
];

fn max_intset(cx: &Cx) -> usize {
    cx.srv.tun.set_max_intset_entries.load(Ordering::Relaxed)
}

/// The set at `key` for reading (counts hits/misses); WRONGTYPE otherwise.
fn read_set<'c>(ks: &'c mut Ks, key: &[u8]) -> Result<Option<&'c mut Set>, CmdError> {
    match ks.lookup_read(key)? {
        None => Ok(None),
        Some(e) => match &mut e.value {
            Value::Set(s) => Ok(Some(s)),
            _ => Err(WRONGTYPE),
        },
    }
}

fn reply_members(out: &mut ferrite_resp::ReplyBuf, s: &Set) {
    let v = s.ordered();
    out.set(v.len());
    for m in v {
        out.bulk(m);
    }
}

fn sadd(cx: &mut Cx) -> CmdResult {
    let key = cx.arg(1);
    let max = max_intset(cx);
    let args = cx.args;
    let s = cx.ks.set_or_create(key)?;
    let mut added = 0;
    for m in &args[2..] {
        if s.add(m, max) {
            added += 1;
        }
    }
    if added > 0 {
        cx.ks.modified(key);
        cx.ks.notify(notify::SET, "sadd", key);
    }
    cx.out.int(added);
    Ok(())
}

fn srem(cx: &mut Cx) -> CmdResult {
    let key = cx.arg(1);
    let args = cx.args;
    let Some(s) = cx.ks.set(key)? else {
        cx.out.int(0);
        return Ok(());
    };
    let mut n = 0;
    for m in &args[2..] {
        if s.remove(m) {
            n += 1;
            if s.members.is_empty() {
                break;
            }
        }
    }
    if n > 0 {
        cx.ks.modified(key);
        cx.ks.notify(notify::SET, "srem", key);
        cx.ks.remove_if_empty(key)?;
    }
    cx.out.int(n);
    Ok(())
}

fn smembers(cx: &mut Cx) -> CmdResult {
    let key = cx.arg(1);
    match read_set(&mut cx.ks, key)? {
        None => cx.out.set(0),
        Some(s) => reply_members(cx.out, s),
    }
    Ok(())
}

fn sismember(cx: &mut Cx) -> CmdResult {
    let (key, m) = (cx.arg(1), cx.arg(2));
    let r = read_set(&mut cx.ks, key)?.is_some_and(|s| s.contains(m));
    cx.out.int(r as i64);
    Ok(())
}

fn smismember(cx: &mut Cx) -> CmdResult {
    let key = cx.arg(1);
    let args = cx.args;
    let s = read_set(&mut cx.ks, key)?;
    let s: Option<&Set> = s.map(|s| &*s);
    cx.out.array(args.len() - 2);
    for m in &args[2..] {
        cx.out.int(s.is_some_and(|s| s.contains(m)) as i64);
    }
    Ok(())
}

fn scard(cx: &mut Cx) -> CmdResult {
    let key = cx.arg(1);
    let n = read_set(&mut cx.ks, key)?.map_or(0, |s| s.len());
    cx.out.int(n as i64);
    Ok(())
}

fn spop(cx: &mut Cx) -> CmdResult {
    let key = cx.arg(1);
    if cx.argc() > 3 {
        return Err(SYNTAX);
    }
    if cx.argc() == 2 {
        let Some(s) = cx.ks.set(key)? else {
            cx.out.null();
            return Ok(());
        };
        let m = s.pop_random(1);
        match m.first() {
            Some(m) => cx.out.bulk(m),
            None => cx.out.null(),
        }
        cx.ks.modified(key);
        cx.ks.notify(notify::SET, "spop", key);
        cx.ks.remove_if_empty(key)?;
        return Ok(());
    }
    let count = match parse_int(cx.arg(2)) {
        Ok(c) if c >= 0 => c as usize,
        _ => return Err(CmdError::err("value is out of range, must be positive")),
    };
    let Some(s) = cx.ks.set(key)? else {
        cx.out.set(0);
        return Ok(());
    };
    if count == 0 {
        cx.out.set(0);
        return Ok(());
    }
    if count >= s.len() {
        // The whole set goes, replied in its iteration order.
        let all: Vec<SmallBytes> = s.ordered().into_iter().cloned().collect();
        cx.ks.remove(key)?;
        cx.ks.notify(notify::SET, "spop", key);
        cx.ks.notify(notify::GENERIC, "del", key);
        cx.out.set(all.len());
        for m in &all {
            cx.out.bulk(m);
        }
        return Ok(());
    }
    let popped = s.pop_random(count);
    cx.out.set(popped.len());
    for m in &popped {
        cx.out.bulk(m);
    }
    cx.ks.modified(key);
    cx.ks.notify(notify::SET, "spop", key);
    Ok(())
}

fn srandmember(cx: &mut Cx) -> CmdResult {
    let key = cx.arg(1);
    if cx.argc() > 3 {
        return Err(SYNTAX);
    }
    if cx.argc() == 2 {
        match read_set(&mut cx.ks, key)? {
            None => cx.out.null(),
            Some(s) => match s.random() {
                Some(m) => cx.out.bulk(m),
                None => cx.out.null(),
            },
        }
        return Ok(());
    }
    let l = parse_int(cx.arg(2))?;
    if l == i64::MIN {
        return Err(CmdError::err(
            "value is out of range, value must between -9223372036854775807 and 9223372036854775807",
        ));
    }
    let out = &mut *cx.out;
    let Some(s) = read_set(&mut cx.ks, key)? else {
        out.array(0);
        return Ok(());
    };
    if l == 0 || s.members.is_empty() {
        out.array(0);
    } else if l < 0 {
        // Repeats allowed: a uniform pick per element.
        use rand::Rng;
        let n = l.unsigned_abs();
        let len = s.len();
        let mut rng = rand::thread_rng();
        out.array(n as usize);
        for _ in 0..n {
            if let Some(m) = s.get_index(rng.gen_range(0..len)) {
                out.bulk(m);
            }
        }
    } else if l as usize >= s.len() {
        let v = s.ordered();
        out.array(v.len());
        for m in v {
            out.bulk(m);
        }
    } else {
        let v = s.sample(l as usize);
        out.array(v.len());
        for m in v {
            out.bulk(m);
        }
    }
    Ok(())
}

fn smove(cx: &mut Cx) -> CmdResult {
    let (src, dst, m) = (cx.arg(1), cx.arg(2), cx.arg(3));
    let max = max_intset(cx);
    let src_is = match cx.ks.lookup(src)? {
        None => {
            cx.out.int(0);
            return Ok(());
        }
        Some(e) => match &e.value {
            Value::Set(s) => s.contains(m),
            _ => return Err(WRONGTYPE),
        },
    };
    if let Some(e) = cx.ks.lookup(dst)? {
        if !matches!(e.value, Value::Set(_)) {
            return Err(WRONGTYPE);
        }
    }
    if src == dst {
        cx.out.int(src_is as i64);
        return Ok(());
    }
    if !src_is {
        cx.out.int(0);
        return Ok(());
    }
    if let Some(s) = cx.ks.set(src)? {
        s.remove(m);
    }
    cx.ks.modified(src);
    cx.ks.notify(notify::SET, "srem", src);
    cx.ks.remove_if_empty(src)?;
    // Like Redis, the destination is signalled only if the member was new.
    if cx.ks.set_or_create(dst)?.add(m, max) {
        cx.ks.modified(dst);
        cx.ks.notify(notify::SET, "sadd", dst);
    }
    cx.out.int(1);
    Ok(())
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Op {
    Inter,
    Union,
    Diff,
}

/// Type-check every input (missing = None) and return the sizes.
/// Redis 7.0 looks inputs up for reading even when storing (`_write`):
/// hits/misses are counted and a missing input publishes "keymiss".
fn input_sizes(cx: &mut Cx, keys: &[bytes::Bytes], _write: bool) -> Result<Vec<Option<usize>>, CmdError> {
    let mut v = Vec::with_capacity(keys.len());
    for k in keys {
        v.push(read_set(&mut cx.ks, k)?.map(|s| s.len()));
    }
    Ok(v)
}

/// Members of the set at `key` (already type-checked), in iteration order.
fn members_of(cx: &mut Cx, key: &[u8]) -> Result<Vec<SmallBytes>, CmdError> {
    Ok(cx.ks.set(key)?.map(|s| s.ordered().into_iter().cloned().collect()).unwrap_or_default())
}

/// Keep only the candidates that are (`keep_present`) or are not members
/// of the set at `key`.
fn filter_by(cx: &mut Cx, key: &[u8], cands: &mut Vec<SmallBytes>, keep_present: bool) -> CmdResult {
    if let Some(s) = cx.ks.set(key)? {
        cands.retain(|m| s.contains(m) == keep_present);
    } else if keep_present {
        cands.clear();
    }
    Ok(())
}

/// The intersection's members in the smallest input's order (empty if any
/// input is missing). Costs O(smallest * inputs).
fn intersect(cx: &mut Cx, keys: &[bytes::Bytes], sizes: &[Option<usize>]) -> Result<Vec<SmallBytes>, CmdError> {
    if sizes.iter().any(|s| s.is_none()) || keys.is_empty() {
        return Ok(Vec::new());
    }
    // Smallest first (stable), like Redis's qsort by cardinality.
    let mut order: Vec<usize> = (0..keys.len()).collect();
    order.sort_by_key(|&i| sizes[i].unwrap_or(0));
    let mut cands = members_of(cx, &keys[order[0]])?;
    for &i in &order[1..] {
        if cands.is_empty() {
            break;
        }
        filter_by(cx, &keys[i], &mut cands, true)?;
    }
    Ok(cands)
}

/// Compute a set operation over `keys` into a fresh set built the way
/// Redis builds its result (starting as an intset). Only the candidates
/// are copied, never whole inputs besides the one being iterated.
fn compute(cx: &mut Cx, keys: &[bytes::Bytes], op: Op, write: bool) -> Result<Set, CmdError> {
    let max = max_intset(cx);
    let sizes = input_sizes(cx, keys, write)?;
    let mut out = Set::default();
    match op {
        Op::Inter => {
            for m in intersect(cx, keys, &sizes)? {
                out.add(&m, max);
            }
        }
        Op::Union => {
            for k in keys {
                if let Some(s) = cx.ks.set(k)? {
                    for m in s.ordered() {
                        out.add(m, max);
                    }
                }
            }
        }
        Op::Diff => {
            if sizes.first().is_some_and(|s| s.is_some()) {
                let mut cands = members_of(cx, &keys[0])?;
                for k in &keys[1..] {
                    if cands.is_empty() {
                        break;
                    }
                    filter_by(cx, k, &mut cands, false)?;
                }
                for m in cands {
                    out.add(&m, max);
                }
            }
        }
    }
    Ok(out)
}

fn reply_generic(cx: &mut Cx, keys_from: usize, op: Op) -> CmdResult {
    let keys = &cx.args[keys_from..];
    let r = compute(cx, keys, op, false)?;
    reply_members(cx.out, &r);
    Ok(())
}

fn store_generic(cx: &mut Cx, op: Op) -> CmdResult {
    let dst = cx.arg(1);
    let keys = &cx.args[2..];
    let r = compute(cx, keys, op, true)?;
    let n = r.len();
    if n == 0 {
        cx.ks.delete_unchecked(dst)?;
    } else {
        cx.ks.insert(dst, Value::Set(Box::new(r)), 0)?;
        let ev = match op {
            Op::Inter => "sinterstore",
            Op::Union => "sunionstore",
            Op::Diff => "sdiffstore",
        };
        cx.ks.notify(notify::SET, ev, dst);
    }
    cx.out.int(n as i64);
    Ok(())
}

fn sinter(cx: &mut Cx) -> CmdResult {
    reply_generic(cx, 1, Op::Inter)
}

fn sunion(cx: &mut Cx) -> CmdResult {
    reply_generic(cx, 1, Op::Union)
}

fn sdiff(cx: &mut Cx) -> CmdResult {
    reply_generic(cx, 1, Op::Diff)
}

fn sinterstore(cx: &mut Cx) -> CmdResult {
    store_generic(cx, Op::Inter)
}

fn sunionstore(cx: &mut Cx) -> CmdResult {
    store_generic(cx, Op::Union)
}

fn sdiffstore(cx: &mut Cx) -> CmdResult {
    store_generic(cx, Op::Diff)
}

fn sintercard(cx: &mut Cx) -> CmdResult {
    let numkeys = match parse_int(cx.arg(1)) {
        Ok(n) if n > 0 => n as usize,
        _ => return Err(CmdError::err("numkeys should be greater than 0")),
    };
    if numkeys > cx.argc() - 2 {
        return Err(CmdError::err("Number of keys can't be greater than number of args"));
    }
    let mut limit = 0usize;
    let mut i = 2 + numkeys;
    while i < cx.argc() {
        if eq_ic(cx.arg(i), b"LIMIT") && i + 1 < cx.argc() {
            limit = match parse_int(cx.arg(i + 1)) {
                Ok(l) if l >= 0 => l as usize,
                _ => return Err(CmdError::err("LIMIT can't be negative")),
            };
            i += 2;
        } else {
            return Err(SYNTAX);
        }
    }
    let keys = &cx.args[2..2 + numkeys];
    let sizes = input_sizes(cx, keys, false)?;
    let mut n = intersect(cx, keys, &sizes)?.len();
    if limit != 0 {
        n = n.min(limit);
    }
    cx.out.int(n as i64);
    Ok(())
}

fn sscan(cx: &mut Cx) -> CmdResult {
    let key = cx.arg(1);
    super::scan::parse_cursor(cx.arg(2))?;
    if read_set(&mut cx.ks, key)?.is_none() {
        cx.out.array(2);
        cx.out.bulk(b"0");
        cx.out.array(0);
        return Ok(());
    }
    let a = super::scan::parse(cx, 2, false)?;
    let Some(s) = cx.ks.set(key)? else {
        return Err(super::UNDECLARED);
    };
    let s: &Set = s;
    let (items, next): (Vec<&SmallBytes>, u64) = if !s.big {
        (s.ordered(), 0)
    } else {
        scan_step(s.members.iter(), |m: &SmallBytes| m.as_slice(), a.cursor, scan_batch(a.count, s.len()))
    };
    let out = &mut *cx.out;
    let items: Vec<&SmallBytes> = match a.pattern {
        None => items,
        Some(p) => items.into_iter().filter(|m| crate::glob::glob_match(p, m, false)).collect(),
    };
    out.array(2);
    out.bulk(next.to_string().as_bytes());
    out.array(items.len());
    for m in items {
        out.bulk(m);
    }
    Ok(())
}
