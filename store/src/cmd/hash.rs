//! Hash commands.

use super::scan::{parse as parse_scan, parse_cursor};
use super::{eq_ic, parse_int, CmdError, CmdImpl, CmdResult, Cx, Ks, Lock, NOT_FLOAT, OVERFLOW, SYNTAX, WRONGTYPE};
use crate::keyspace::Value;
use crate::notify;
use crate::types::hash::{Hash, Limits};
use rand::Rng;

pub static COMMANDS: &[CmdImpl] = &[
    CmdImpl { name: "hset", handler: hset, lock: Lock::Keys },
    CmdImpl { name: "hmset", handler: hmset, lock: Lock::Keys },
    CmdImpl { name: "hsetnx", handler: hsetnx, lock: Lock::Keys },
    CmdImpl { name: "hget", handler: hget, lock: Lock::Keys },
    CmdImpl { name: "hmget", handler: hmget, lock: Lock::Keys },
    CmdImpl { name: "hgetall", handler: hgetall, lock: Lock::Keys },
    CmdImpl { name: "hkeys", handler: hkeys, lock: Lock::Keys },
    CmdImpl { name: "hvals", handler: hvals, lock: Lock::Keys },
    CmdImpl { name: "hdel", handler: hdel, lock: Lock::Keys },
    CmdImpl { name: "hlen", handler: hlen, lock: Lock::Keys },
    CmdImpl { name: "hexists", handler: hexists, lock: Lock::Keys },
    CmdImpl { name: "hstrlen", handler: hstrlen, lock: Lock::Keys },
    CmdImpl { name: "hincrby", handler: hincrby, lock: Lock::Keys },
    CmdImpl { name: "hincrbyfloat", handler: hincrbyfloat, lock: Lock::Keys },
    CmdImpl { name: "hrandfield", handler: hrandfield, lock: Lock::Keys },
    CmdImpl { name: "hscan", handler: hscan, lock: Lock::Keys },
];

/// Largest |count| HRANDFIELD serves (Redis would build an unbounded reply).
const MAX_RAND_COUNT: u64 = 100_000_000;

fn limits(cx: &Cx) -> Limits {
    Limits::of(&cx.srv.tun)
}

/// The hash at `key` for a read command (counts hits/misses).
fn read<'k>(ks: &'k mut Ks, key: &[u8]) -> Result<Option<&'k mut Hash>, CmdError> {
    match ks.lookup_read(key)? {
        None => Ok(None),
        Some(e) => match &mut e.value {
            Value::Hash(h) => Ok(Some(h)),
            _ => Err(WRONGTYPE),
        },
    }
}

fn hset_generic(cx: &mut Cx, ok_reply: bool) -> CmdResult {
    if !cx.argc().is_multiple_of(2) {
        return Err(cx.arity_error());
    }
    let key = cx.arg(1);
    let lim = limits(cx);
    let args = cx.args;
    let h = cx.ks.hash_or_create(key)?;
    h.try_convert(args[2..].iter().map(|a| a.len()), lim);
    let mut created = 0;
    for pair in args[2..].chunks_exact(2) {
        if h.set(&pair[0], &pair[1], lim) {
            created += 1;
        }
    }
    cx.ks.modified(key);
    cx.ks.notify(notify::HASH, "hset", key);
    if ok_reply {
        cx.out.ok();
    } else {
        cx.out.int(created);
    }
    Ok(())
}

fn hset(cx: &mut Cx) -> CmdResult {
    hset_generic(cx, false)
}

fn hmset(cx: &mut Cx) -> CmdResult {
    hset_generic(cx, true)
}

fn hsetnx(cx: &mut Cx) -> CmdResult {
    let (key, field, value) = (cx.arg(1), cx.arg(2), cx.arg(3));
    let lim = limits(cx);
    let h = cx.ks.hash_or_create(key)?;
    if h.contains(field) {
        cx.out.int(0);
        return Ok(());
    }
    h.set(field, value, lim);
    cx.ks.modified(key);
    cx.ks.notify(notify::HASH, "hset", key);
    cx.out.int(1);
    Ok(())
}

fn hget(cx: &mut Cx) -> CmdResult {
    let (key, field) = (cx.arg(1), cx.arg(2));
    match read(&mut cx.ks, key)?.and_then(|h| h.get(field)) {
        Some(v) => cx.out.bulk(v),
        None => cx.out.null(),
    }
    Ok(())
}

fn hmget(cx: &mut Cx) -> CmdResult {
    let key = cx.arg(1);
    let fields = &cx.args[2..];
    let h = read(&mut cx.ks, key)?;
    cx.out.array(fields.len());
    for f in fields {
        match h.as_ref().and_then(|h| h.get(f)) {
            Some(v) => cx.out.bulk(v),
            None => cx.out.null(),
        }
    }
    Ok(())
}

/// HGETALL / HKEYS / HVALS.
fn getall(cx: &mut Cx, keys: bool, vals: bool) -> CmdResult {
    let key = cx.arg(1);
    let h = read(&mut cx.ks, key)?;
    let n = h.as_ref().map_or(0, |h| h.len());
    if keys && vals {
        cx.out.map(n);
    } else {
        cx.out.array(n);
    }
    if let Some(h) = h {
        for (k, v) in h.iter() {
            if keys {
                cx.out.bulk(k);
            }
            if vals {
                cx.out.bulk(v);
            }
        }
    }
    Ok(())
}

fn hgetall(cx: &mut Cx) -> CmdResult {
    getall(cx, true, true)
}

fn hkeys(cx: &mut Cx) -> CmdResult {
    getall(cx, true, false)
}

fn hvals(cx: &mut Cx) -> CmdResult {
    getall(cx, false, true)
}

fn hdel(cx: &mut Cx) -> CmdResult {
    let key = cx.arg(1);
    let fields = &cx.args[2..];
    let Some(h) = cx.ks.hash(key)? else {
        cx.out.int(0);
        return Ok(());
    };
    let mut deleted = 0;
    for f in fields {
        if h.remove(f) {
            deleted += 1;
            if h.len() == 0 {
                break;
            }
        }
    }
    if deleted > 0 {
        cx.ks.notify(notify::HASH, "hdel", key);
        cx.ks.remove_if_empty(key)?;
        cx.ks.modified(key);
    }
    cx.out.int(deleted);
    Ok(())
}

fn hlen(cx: &mut Cx) -> CmdResult {
    let key = cx.arg(1);
    let n = read(&mut cx.ks, key)?.map_or(0, |h| h.len());
    cx.out.int(n as i64);
    Ok(())
}

fn hexists(cx: &mut Cx) -> CmdResult {
    let (key, field) = (cx.arg(1), cx.arg(2));
    let e = read(&mut cx.ks, key)?.is_some_and(|h| h.contains(field));
    cx.out.int(e as i64);
    Ok(())
}

fn hstrlen(cx: &mut Cx) -> CmdResult {
    let (key, field) = (cx.arg(1), cx.arg(2));
    let n = read(&mut cx.ks, key)?.and_then(|h| h.get(field)).map_or(0, |v| v.len());
    cx.out.int(n as i64);
    Ok(())
}

fn hincrby(cx: &mut Cx) -> CmdResult {
    let (key, field) = (cx.arg(1), cx.arg(2));
    let incr = cx.int_arg(3)?;
    let lim = limits(cx);
    let h = cx.ks.hash_or_create(key)?;
    let cur = match h.get(field) {
        Some(v) => ferrite_resp::num::parse_i64(v).ok_or_else(|| CmdError::err("hash value is not an integer"))?,
        None => 0,
    };
    let new = cur.checked_add(incr).ok_or(OVERFLOW)?;
    let mut ib = itoa::Buffer::new();
    h.set(field, ib.format(new).as_bytes(), lim);
    cx.ks.modified(key);
    cx.ks.notify(notify::HASH, "hincrby", key);
    cx.out.int(new);
    Ok(())
}

/// Is `s` (a valid long double) an infinity literal?
fn is_inf_literal(s: &[u8]) -> bool {
    let s = s.strip_prefix(b"-").or_else(|| s.strip_prefix(b"+")).unwrap_or(s);
    s.len() >= 3 && eq_ic(&s[..3], b"inf")
}

fn hincrbyfloat(cx: &mut Cx) -> CmdResult {
    let (key, field, incr) = (cx.arg(1), cx.arg(2), cx.arg(3));
    if !crate::ldouble::is_valid(incr) {
        return Err(NOT_FLOAT);
    }
    if is_inf_literal(incr) {
        return Err(CmdError::err("value is NaN or Infinity"));
    }
    let lim = limits(cx);
    let h = cx.ks.hash_or_create(key)?;
    let res = crate::ldouble::incr(h.get(field), incr);
    let new = match res {
        Ok(v) => v,
        Err(crate::ldouble::LdError::BadCurrent) => return Err(CmdError::err("hash value is not a float")),
        Err(crate::ldouble::LdError::BadIncrement) => return Err(NOT_FLOAT),
        Err(crate::ldouble::LdError::NanOrInf) => {
            return Err(CmdError::err("increment would produce NaN or Infinity"));
        }
    };
    h.set(field, &new, lim);
    cx.ks.modified(key);
    cx.ks.notify(notify::HASH, "hincrbyfloat", key);
    cx.out.bulk(&new);
    Ok(())
}

fn hrandfield(cx: &mut Cx) -> CmdResult {
    let key = cx.arg(1);
    if cx.argc() == 2 {
        match read(&mut cx.ks, key)?.and_then(|h| h.random(&mut rand::thread_rng())) {
            Some((k, _)) => cx.out.bulk(k),
            None => cx.out.null(),
        }
        return Ok(());
    }
    let l = parse_int(cx.arg(2))?;
    if l == i64::MIN {
        return Err(CmdError::err(format!("value is out of range, value must between {} and {}", -i64::MAX, i64::MAX)));
    }
    let withvalues = if cx.argc() == 4 && eq_ic(cx.arg(3), b"WITHVALUES") {
        true
    } else if cx.argc() >= 4 {
        return Err(SYNTAX);
    } else {
        false
    };
    let (count, uniq) = if l >= 0 { (l as u64, true) } else { (l.unsigned_abs(), false) };
    if withvalues && !uniq && l < -i64::MAX / 2 {
        return Err(CmdError::err("value is out of range"));
    }
    let Some(h) = read(&mut cx.ks, key)? else {
        cx.out.array(0);
        return Ok(());
    };
    if count == 0 {
        cx.out.array(0);
        return Ok(());
    }
    let resp3 = cx.out.resp3;
    let out = &mut *cx.out;
    let emit = |out: &mut ferrite_resp::ReplyBuf, k: &[u8], v: &[u8]| {
        if withvalues && resp3 {
            out.array(2);
        }
        out.bulk(k);
        if withvalues {
            out.bulk(v);
        }
    };
    let header = |out: &mut ferrite_resp::ReplyBuf, n: usize| {
        out.array(if withvalues && !resp3 { n * 2 } else { n });
    };
    let size = h.len();
    let mut rng = rand::thread_rng();
    // Repetitions allowed (negative count, or a single element).
    if !uniq || count == 1 {
        // A count this big only ends (in Redis too) when the client's output
        // buffer limit closes it: with a normal-class hard limit, reply until
        // over it (the connection is then closed); without one, refuse.
        let limit = crate::obuf::normal_hard_limit() as usize;
        if count > MAX_RAND_COUNT && limit == 0 {
            return Err(CmdError::err("value is out of range"));
        }
        header(out, count as usize);
        for i in 0..count {
            if let Some((k, v)) = h.random(&mut rng) {
                emit(out, k, v);
            }
            if limit > 0 && i % 1024 == 0 && out.buf.len() > limit {
                break;
            }
        }
        return Ok(());
    }
    // The whole hash.
    if count >= size as u64 {
        header(out, size);
        for (k, v) in h.iter() {
            emit(out, k, v);
        }
        return Ok(());
    }
    // A random subset of `count` distinct entries: a partial shuffle of the
    // indexes. Listpack hashes reply in their own order (like Redis's
    // lpRandomPairsUnique); hashtables in random order.
    let count = count as usize;
    let pairs: Vec<(&[u8], &[u8])> = h.iter().collect();
    let mut idx: Vec<usize> = (0..size).collect();
    for i in 0..count {
        let j = rng.gen_range(i..size);
        idx.swap(i, j);
    }
    let chosen = &mut idx[..count];
    if !h.is_big() {
        chosen.sort_unstable();
    }
    header(out, count);
    for &i in chosen.iter() {
        let (k, v) = pairs[i];
        emit(out, k, v);
    }
    Ok(())
}

fn hscan(cx: &mut Cx) -> CmdResult {
    let key = cx.arg(1);
    parse_cursor(cx.arg(2))?;
    // Options errors are reported only once the key is known to exist (like
    // Redis), so keep the result for later.
    let opts = parse_scan(cx, 2, false);
    let Some(h) = read(&mut cx.ks, key)? else {
        cx.out.array(2);
        cx.out.bulk(b"0");
        cx.out.array(0);
        return Ok(());
    };
    let a = opts?;
    let h: &Hash = h;
    let mut items: Vec<(&[u8], &[u8])> = Vec::new();
    let next = match h {
        Hash::Pack(_) => {
            items.extend(h.iter());
            0
        }
        Hash::Dict(d) => {
            let mut c = a.cursor;
            let mut maxiter = a.count.saturating_mul(10);
            loop {
                c = d.scan(c, |k, v| items.push((k, v)));
                if c == 0 || maxiter == 0 || items.len() >= a.count {
                    break;
                }
                maxiter -= 1;
            }
            c
        }
    };
    if let Some(p) = a.pattern {
        items.retain(|(k, _)| crate::glob::glob_match(p, k, false));
    }
    cx.out.array(2);
    let mut ib = itoa::Buffer::new();
    cx.out.bulk(ib.format(next).as_bytes());
    cx.out.array(items.len() * 2);
    for (k, v) in items {
        cx.out.bulk(k);
        cx.out.bulk(v);
    }
    Ok(())
}
