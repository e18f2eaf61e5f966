//! Sorted set commands.

use super::{eq_ic, parse_int, CmdError, CmdImpl, CmdResult, Cx, Ks, Lock, SYNTAX, WRONGTYPE};
use crate::keyspace::smallbytes::SmallBytes;
use crate::keyspace::Value;
use crate::notify;
use crate::types::set::{scan_batch, scan_step};
use crate::types::zset::{LexBound, LexRange, ScoreRange, ZKey, ZSet};
use ferrite_resp::ReplyBuf;
use std::collections::HashMap;
use std::sync::atomic::Ordering;

pub static COMMANDS: &[CmdImpl] = &[
    CmdImpl { name: "zadd", handler: zadd, lock: Lock::Keys },
    CmdImpl { name: "zincrby", handler: zincrby, lock: Lock::Keys },
    CmdImpl { name: "zrem", handler: zrem, lock: Lock::Keys },
    CmdImpl { name: "zcard", handler: zcard, lock: Lock::Keys },
    CmdImpl { name: "zscore", handler: zscore, lock: Lock::Keys },
    CmdImpl { name: "zmscore", handler: zmscore, lock: Lock::Keys },
    CmdImpl { name: "zrank", handler: zrank, lock: Lock::Keys },
    CmdImpl { name: "zrevrank", handler: zrevrank, lock: Lock::Keys },
    CmdImpl { name: "zcount", handler: zcount, lock: Lock::Keys },
    CmdImpl { name: "zlexcount", handler: zlexcount, lock: Lock::Keys },
    CmdImpl { name: "zrange", handler: zrange, lock: Lock::Keys },
    CmdImpl { name: "zrangestore", handler: zrangestore, lock: Lock::Keys },
    CmdImpl { name: "zrevrange", handler: zrevrange, lock: Lock::Keys },
    CmdImpl { name: "zrangebyscore", handler: zrangebyscore, lock: Lock::Keys },
    CmdImpl { name: "zrevrangebyscore", handler: zrevrangebyscore, lock: Lock::Keys },
    CmdImpl { name: "zrangebylex", handler: zrangebylex, lock: Lock::Keys },
    CmdImpl { name: "zrevrangebylex", handler: zrevrangebylex, lock: Lock::Keys },
    CmdImpl { name: "zremrangebyrank", handler: zremrangebyrank, lock: Lock::Keys },
    CmdImpl { name: "zremrangebyscore", handler: zremrangebyscore, lock: Lock::Keys },
    CmdImpl { name: "zremrangebylex", handler: zremrangebylex, lock: Lock::Keys },
    CmdImpl { name: "zpopmin", handler: zpopmin, lock: Lock::Keys },
    CmdImpl { name: "zpopmax", handler: zpopmax, lock: Lock::Keys },
    CmdImpl { name: "zmpop", handler: zmpop, lock: Lock::Keys },
    CmdImpl { name: "bzmpop", handler: bzmpop, lock: Lock::Keys },
    CmdImpl { name: "bzpopmin", handler: bzpopmin, lock: Lock::Keys },
    CmdImpl { name: "bzpopmax", handler: bzpopmax, lock: Lock::Keys },
    CmdImpl { name: "zrandmember", handler: zrandmember, lock: Lock::Keys },
    CmdImpl { name: "zunion", handler: zunion, lock: Lock::Keys },
    CmdImpl { name: "zinter", handler: zinter, lock: Lock::Keys },
    CmdImpl { name: "zdiff", handler: zdiff, lock: Lock::Keys },
    CmdImpl { name: "zunionstore", handler: zunionstore, lock: Lock::Keys },
    CmdImpl { name: "zinterstore", handler: zinterstore, lock: Lock::Keys },
    CmdImpl { name: "zdiffstore", handler: zdiffstore, lock: Lock::Keys },
    CmdImpl { name: "zintercard", handler: zintercard, lock: Lock::Keys },
    CmdImpl { name: "zscan", handler: zscan, lock: Lock::Keys },
];

const NAN_RESULT: CmdError = CmdError::st("ERR resulting score is not a number (NaN)");
const BAD_SCORE_RANGE: CmdError = CmdError::st("ERR min or max is not a float");
const BAD_LEX_RANGE: CmdError = CmdError::st("ERR min or max not valid string range item");
const MUST_BE_POSITIVE: CmdError = CmdError::st("ERR value is out of range, must be positive");

fn limits(cx: &Cx) -> (usize, usize) {
    (
        cx.srv.tun.zset_max_listpack_entries.load(Ordering::Relaxed),
        cx.srv.tun.zset_max_listpack_value.load(Ordering::Relaxed),
    )
}

/// The zset at `key`; `read` counts keyspace hits/misses.
fn get_zset<'c>(ks: &'c mut Ks, key: &[u8], read: bool) -> Result<Option<&'c mut ZSet>, CmdError> {
    let e = if read { ks.lookup_read(key)? } else { ks.lookup(key)? };
    match e {
        None => Ok(None),
        Some(e) => match &mut e.value {
            Value::ZSet(z) => Ok(Some(z)),
            _ => Err(WRONGTYPE),
        },
    }
}

/// C `strtod` over the bytes up to the first NUL; returns the value, how
/// many bytes it consumed, and whether it hit ERANGE.
fn strtod_raw(b: &[u8]) -> (f64, usize, bool) {
    let b = match b.iter().position(|&c| c == 0) {
        Some(p) => &b[..p],
        None => b,
    };
    let mut v = b.to_vec();
    v.push(0);
    let mut end: *mut libc::c_char = std::ptr::null_mut();
    // SAFETY: v is NUL-terminated and outlives the call; strtod only reads
    // it; errno is thread-local.
    let (d, erange) = unsafe {
        *libc::__errno_location() = 0;
        let d = libc::strtod(v.as_ptr() as *const libc::c_char, &mut end);
        (d, *libc::__errno_location() == libc::ERANGE)
    };
    (d, end as usize - v.as_ptr() as usize, erange)
}

/// Redis's range-item parsing: strtod must consume the whole string
/// (leading spaces and an empty string are fine); NaN is rejected.
fn strtod_full(b: &[u8]) -> Option<f64> {
    if b.len() > 4096 {
        return None;
    }
    let (d, used, _) = strtod_raw(b);
    let len = b.iter().position(|&c| c == 0).unwrap_or(b.len());
    if used != len || d.is_nan() {
        return None;
    }
    Some(d)
}

/// Redis's `getDoubleFromObject`: no empty string, no leading space, the
/// whole string consumed, no overflow/underflow, no NaN.
fn parse_double(b: &[u8]) -> Option<f64> {
    if b.is_empty() || b[0].is_ascii_whitespace() || b.len() > 4096 || b.contains(&0) {
        return None;
    }
    let (d, used, erange) = strtod_raw(b);
    if used != b.len() || d.is_nan() || (erange && (d.is_infinite() || d == 0.0)) {
        return None;
    }
    Some(d)
}

fn score_arg(b: &[u8]) -> Result<f64, CmdError> {
    parse_double(b).ok_or(super::NOT_FLOAT)
}

fn parse_score_range(min: &[u8], max: &[u8]) -> Result<ScoreRange, CmdError> {
    fn one(b: &[u8]) -> Option<(f64, bool)> {
        match b.first() {
            Some(b'(') => strtod_full(&b[1..]).map(|v| (v, true)),
            _ => strtod_full(b).map(|v| (v, false)),
        }
    }
    match (one(min), one(max)) {
        (Some((min, minex)), Some((max, maxex))) => Ok(ScoreRange { min, max, minex, maxex }),
        _ => Err(BAD_SCORE_RANGE),
    }
}

fn parse_lex_range(min: &[u8], max: &[u8]) -> Result<LexRange, CmdError> {
    fn one(b: &[u8]) -> Option<LexBound> {
        match b.first() {
            Some(b'+') if b.len() == 1 => Some(LexBound::PosInf),
            Some(b'-') if b.len() == 1 => Some(LexBound::NegInf),
            Some(b'(') => Some(LexBound::Excl(b[1..].to_vec())),
            Some(b'[') => Some(LexBound::Incl(b[1..].to_vec())),
            _ => None,
        }
    }
    match (one(min), one(max)) {
        (Some(min), Some(max)) => Ok(LexRange { min, max }),
        _ => Err(BAD_LEX_RANGE),
    }
}

/// Member/score pairs: RESP3 nests `[member, score]` pairs when
/// `withscores`, RESP2 flattens them.
fn reply_items<'a>(out: &mut ReplyBuf, items: impl ExactSizeIterator<Item = (&'a [u8], f64)>, withscores: bool) {
    let n = items.len();
    if !withscores {
        out.array(n);
        for (m, _) in items {
            out.bulk(m);
        }
    } else if out.resp3 {
        out.array(n);
        for (m, s) in items {
            out.array(2);
            out.bulk(m);
            out.double(s);
        }
    } else {
        out.array(n * 2);
        for (m, s) in items {
            out.bulk(m);
            out.double(s);
        }
    }
}

fn reply_keys(out: &mut ReplyBuf, items: &[ZKey], withscores: bool) {
    reply_items(out, items.iter().map(|k| (k.member.as_slice(), k.score)), withscores)
}

// ---------------------------------------------------------------- ZADD

#[derive(Default)]
struct AddFlags {
    nx: bool,
    xx: bool,
    gt: bool,
    lt: bool,
    ch: bool,
    incr: bool,
}

fn zadd(cx: &mut Cx) -> CmdResult {
    let key = cx.arg(1);
    let mut f = AddFlags::default();
    let mut i = 2;
    while i < cx.argc() {
        let a = cx.arg(i);
        if eq_ic(a, b"NX") {
            f.nx = true;
        } else if eq_ic(a, b"XX") {
            f.xx = true;
        } else if eq_ic(a, b"GT") {
            f.gt = true;
        } else if eq_ic(a, b"LT") {
            f.lt = true;
        } else if eq_ic(a, b"CH") {
            f.ch = true;
        } else if eq_ic(a, b"INCR") {
            f.incr = true;
        } else {
            break;
        }
        i += 1;
    }
    let elements = cx.argc() - i;
    if elements == 0 || !elements.is_multiple_of(2) {
        return Err(SYNTAX);
    }
    if f.nx && f.xx {
        return Err(CmdError::err("XX and NX options at the same time are not compatible"));
    }
    if (f.nx && (f.gt || f.lt)) || (f.gt && f.lt) {
        return Err(CmdError::err("GT, LT, and/or NX options at the same time are not compatible"));
    }
    if f.incr && elements > 2 {
        return Err(CmdError::err("INCR option supports a single increment-element pair"));
    }
    let mut pairs = Vec::with_capacity(elements / 2);
    for j in (i..cx.argc()).step_by(2) {
        let s = score_arg(cx.arg(j))?;
        pairs.push((s, cx.arg(j + 1)));
    }
    zadd_generic(cx, key, &f, &pairs)
}

fn zadd_generic(cx: &mut Cx, key: &[u8], f: &AddFlags, pairs: &[(f64, &[u8])]) -> CmdResult {
    let (me, mv) = limits(cx);
    let exists = get_zset(&mut cx.ks, key, false)?.is_some();
    if !exists && f.xx {
        if f.incr {
            cx.out.null();
        } else {
            cx.out.int(0);
        }
        return Ok(());
    }
    let z = cx.ks.zset_or_create(key)?;
    let (mut added, mut updated, mut processed) = (0i64, 0i64, 0i64);
    let mut last = 0.0;
    let mut err = None;
    for &(score, m) in pairs {
        match z.score(m) {
            Some(cur) => {
                if f.nx {
                    continue;
                }
                let mut new = score;
                if f.incr {
                    new = cur + score;
                    if new.is_nan() {
                        err = Some(NAN_RESULT);
                        break;
                    }
                }
                if (f.gt && new <= cur) || (f.lt && new >= cur) {
                    continue;
                }
                last = new;
                processed += 1;
                if new != cur {
                    z.set_score(m, new, me, mv);
                    updated += 1;
                }
            }
            None => {
                if f.xx {
                    continue;
                }
                z.set_score(m, score, me, mv);
                last = z.score(m).unwrap_or(score);
                added += 1;
                processed += 1;
            }
        }
    }
    if added + updated > 0 {
        cx.ks.modified(key);
        cx.ks.notify(notify::ZSET, if f.incr { "zincr" } else { "zadd" }, key);
    }
    cx.ks.remove_if_empty(key)?;
    if let Some(e) = err {
        return Err(e);
    }
    if f.incr {
        if processed > 0 {
            cx.out.double(last);
        } else {
            cx.out.null();
        }
    } else {
        cx.out.int(if f.ch { added + updated } else { added });
    }
    Ok(())
}

fn zincrby(cx: &mut Cx) -> CmdResult {
    let key = cx.arg(1);
    let incr = score_arg(cx.arg(2))?;
    let m = cx.arg(3);
    let f = AddFlags { incr: true, ..Default::default() };
    zadd_generic(cx, key, &f, &[(incr, m)])
}

// ------------------------------------------------------------ simple reads

fn zrem(cx: &mut Cx) -> CmdResult {
    let key = cx.arg(1);
    let args = cx.args;
    let Some(z) = get_zset(&mut cx.ks, key, false)? else {
        cx.out.int(0);
        return Ok(());
    };
    let mut n = 0;
    for m in &args[2..] {
        if z.remove(m).is_some() {
            n += 1;
        }
    }
    if n > 0 {
        cx.ks.modified(key);
        cx.ks.notify(notify::ZSET, "zrem", key);
        cx.ks.remove_if_empty(key)?;
    }
    cx.out.int(n);
    Ok(())
}

fn zcard(cx: &mut Cx) -> CmdResult {
    let key = cx.arg(1);
    let n = get_zset(&mut cx.ks, key, true)?.map_or(0, |z| z.len());
    cx.out.int(n as i64);
    Ok(())
}

fn zscore(cx: &mut Cx) -> CmdResult {
    let (key, m) = (cx.arg(1), cx.arg(2));
    match get_zset(&mut cx.ks, key, true)?.and_then(|z| z.score(m)) {
        Some(s) => cx.out.double(s),
        None => cx.out.null(),
    }
    Ok(())
}

fn zmscore(cx: &mut Cx) -> CmdResult {
    let key = cx.arg(1);
    let args = cx.args;
    let z = get_zset(&mut cx.ks, key, true)?;
    let z: Option<&ZSet> = z.map(|z| &*z);
    cx.out.array(args.len() - 2);
    for m in &args[2..] {
        match z.and_then(|z| z.score(m)) {
            Some(s) => cx.out.double(s),
            None => cx.out.null(),
        }
    }
    Ok(())
}

fn rank_generic(cx: &mut Cx, rev: bool) -> CmdResult {
    let (key, m) = (cx.arg(1), cx.arg(2));
    match get_zset(&mut cx.ks, key, true)?.and_then(|z| z.rank(m, rev)) {
        Some(r) => cx.out.int(r as i64),
        None => cx.out.null(),
    }
    Ok(())
}

fn zrank(cx: &mut Cx) -> CmdResult {
    rank_generic(cx, false)
}

fn zrevrank(cx: &mut Cx) -> CmdResult {
    rank_generic(cx, true)
}

fn zcount(cx: &mut Cx) -> CmdResult {
    let key = cx.arg(1);
    let r = parse_score_range(cx.arg(2), cx.arg(3))?;
    let n = get_zset(&mut cx.ks, key, true)?.map_or(0, |z| {
        let it = z.range_by_score(&r, false);
        // The rank interval's length is exact: O(log n).
        match it.size_hint() {
            (a, Some(b)) if a == b => a,
            _ => it.count(),
        }
    });
    cx.out.int(n as i64);
    Ok(())
}

fn zlexcount(cx: &mut Cx) -> CmdResult {
    let key = cx.arg(1);
    let r = parse_lex_range(cx.arg(2), cx.arg(3))?;
    let n = get_zset(&mut cx.ks, key, true)?.map_or(0, |z| z.lex_count(&r));
    cx.out.int(n as i64);
    Ok(())
}

// ------------------------------------------------------------------ ZRANGE

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Rank,
    Score,
    Lex,
}

/// Clamp a rank range like Redis; None when empty.
fn clamp_ranks(start: i64, end: i64, len: usize) -> Option<(usize, usize)> {
    let llen = len as i64;
    let mut start = if start < 0 { start.saturating_add(llen) } else { start };
    let mut end = if end < 0 { end.saturating_add(llen) } else { end };
    if start < 0 {
        start = 0;
    }
    if start > end || start >= llen {
        return None;
    }
    if end >= llen {
        end = llen - 1;
    }
    Some((start as usize, end as usize))
}

/// The shared ZRANGE family. `first` is the index of the source key;
/// `kind`/`rev` are fixed for the legacy commands (None = from options).
fn zrange_generic(cx: &mut Cx, first: usize, kind: Option<Kind>, rev: Option<bool>, store: Option<&[u8]>) -> CmdResult {
    let src = cx.arg(first);
    let (mut withscores, mut offset, mut limit) = (false, 0i64, -1i64);
    let mut kind_o = kind;
    let mut rev_o = rev;
    let mut j = first + 3;
    while j < cx.argc() {
        let left = cx.argc() - j - 1;
        let a = cx.arg(j);
        if store.is_none() && eq_ic(a, b"WITHSCORES") {
            withscores = true;
        } else if eq_ic(a, b"LIMIT") && left >= 2 {
            offset = parse_int(cx.arg(j + 1))?;
            limit = parse_int(cx.arg(j + 2))?;
            j += 2;
        } else if rev_o.is_none() && eq_ic(a, b"REV") {
            rev_o = Some(true);
        } else if kind_o.is_none() && eq_ic(a, b"BYLEX") {
            kind_o = Some(Kind::Lex);
        } else if kind_o.is_none() && eq_ic(a, b"BYSCORE") {
            kind_o = Some(Kind::Score);
        } else {
            return Err(SYNTAX);
        }
        j += 1;
    }
    let rev = rev_o.unwrap_or(false);
    let kind = kind_o.unwrap_or(Kind::Rank);
    if limit != -1 && kind == Kind::Rank {
        return Err(CmdError::err("syntax error, LIMIT is only supported in combination with either BYSCORE or BYLEX"));
    }
    if withscores && kind == Kind::Lex {
        return Err(CmdError::err("syntax error, WITHSCORES not supported in combination with BYLEX"));
    }
    let (mut mi, mut ma) = (first + 1, first + 2);
    if rev && kind != Kind::Rank {
        std::mem::swap(&mut mi, &mut ma);
    }
    enum Spec {
        Rank(i64, i64),
        Score(ScoreRange),
        Lex(LexRange),
    }
    let spec = match kind {
        Kind::Rank => Spec::Rank(parse_int(cx.arg(mi))?, parse_int(cx.arg(ma))?),
        Kind::Score => Spec::Score(parse_score_range(cx.arg(mi), cx.arg(ma))?),
        Kind::Lex => Spec::Lex(parse_lex_range(cx.arg(mi), cx.arg(ma))?),
    };
    // ZRANGESTORE reads its source like ZRANGE does (hits/misses, keymiss).
    let result: Vec<ZKey> = match get_zset(&mut cx.ks, src, true)? {
        None => Vec::new(),
        Some(z) => {
            let z: &ZSet = z;
            let skip_take = |it: crate::types::zset::ZIter<'_>| -> Vec<ZKey> {
                if offset < 0 || limit == 0 {
                    return Vec::new();
                }
                let it = it.skip(offset as usize);
                if limit < 0 {
                    it.cloned().collect()
                } else {
                    it.take(limit as usize).cloned().collect()
                }
            };
            match &spec {
                Spec::Rank(s, e) => match clamp_ranks(*s, *e, z.len()) {
                    None => Vec::new(),
                    Some((s, e)) => z.range_by_rank(s, e, rev).cloned().collect(),
                },
                Spec::Score(r) => skip_take(z.range_by_score(r, rev)),
                Spec::Lex(r) => {
                    // Redis skips the offset without range checks, then
                    // stops at the first element out of range.
                    if offset < 0 || limit == 0 {
                        Vec::new()
                    } else {
                        let it = z.lex_start(r, rev).skip(offset as usize).take_while(|k| {
                            if rev {
                                r.gte_min(&k.member)
                            } else {
                                r.lte_max(&k.member)
                            }
                        });
                        if limit < 0 {
                            it.cloned().collect()
                        } else {
                            it.take(limit as usize).cloned().collect()
                        }
                    }
                }
            }
        }
    };
    match store {
        None => reply_keys(cx.out, &result, withscores),
        Some(dst) => store_result(cx, dst, "zrangestore", result.into_iter().map(|k| (k.member, k.score)))?,
    }
    Ok(())
}

/// Replace `dst` with the given pairs (deleting it when empty) and reply
/// with the count.
/// `event` is published for a stored result, "del" for a deleted `dst`.
fn store_result(cx: &mut Cx, dst: &[u8], event: &str, pairs: impl IntoIterator<Item = (SmallBytes, f64)>) -> CmdResult {
    let (me, mv) = limits(cx);
    let z = ZSet::from_pairs(pairs, me, mv);
    let n = z.len();
    if n == 0 {
        cx.ks.delete_unchecked(dst)?;
    } else {
        cx.ks.insert(dst, Value::ZSet(Box::new(z)), 0)?;
        cx.ks.notify(notify::ZSET, event, dst);
    }
    cx.out.int(n as i64);
    Ok(())
}

fn zrange(cx: &mut Cx) -> CmdResult {
    zrange_generic(cx, 1, None, None, None)
}

fn zrangestore(cx: &mut Cx) -> CmdResult {
    let dst = cx.arg(1);
    zrange_generic(cx, 2, None, None, Some(dst))
}

fn zrevrange(cx: &mut Cx) -> CmdResult {
    zrange_generic(cx, 1, Some(Kind::Rank), Some(true), None)
}

fn zrangebyscore(cx: &mut Cx) -> CmdResult {
    zrange_generic(cx, 1, Some(Kind::Score), Some(false), None)
}

fn zrevrangebyscore(cx: &mut Cx) -> CmdResult {
    zrange_generic(cx, 1, Some(Kind::Score), Some(true), None)
}

fn zrangebylex(cx: &mut Cx) -> CmdResult {
    zrange_generic(cx, 1, Some(Kind::Lex), Some(false), None)
}

fn zrevrangebylex(cx: &mut Cx) -> CmdResult {
    zrange_generic(cx, 1, Some(Kind::Lex), Some(true), None)
}

// ------------------------------------------------------------ ZREMRANGE*

fn zremrange_generic(cx: &mut Cx, kind: Kind) -> CmdResult {
    let key = cx.arg(1);
    let (a, b) = (cx.arg(2), cx.arg(3));
    let (mut rank, mut score, mut lex) = (None, None, None);
    match kind {
        Kind::Rank => rank = Some((parse_int(a)?, parse_int(b)?)),
        Kind::Score => score = Some(parse_score_range(a, b)?),
        Kind::Lex => lex = Some(parse_lex_range(a, b)?),
    }
    let Some(z) = get_zset(&mut cx.ks, key, false)? else {
        cx.out.int(0);
        return Ok(());
    };
    let victims: Vec<ZKey> = if let Some((s, e)) = rank {
        match clamp_ranks(s, e, z.len()) {
            None => Vec::new(),
            Some((s, e)) => z.range_by_rank(s, e, false).cloned().collect(),
        }
    } else if let Some(r) = &score {
        z.range_by_score(r, false).cloned().collect()
    } else if let Some(r) = &lex {
        z.range_by_lex(r, false).cloned().collect()
    } else {
        Vec::new()
    };
    let n = z.remove_keys(victims);
    if n > 0 {
        cx.ks.modified(key);
        let ev = match kind {
            Kind::Rank => "zremrangebyrank",
            Kind::Score => "zremrangebyscore",
            Kind::Lex => "zremrangebylex",
        };
        cx.ks.notify(notify::ZSET, ev, key);
        cx.ks.remove_if_empty(key)?;
    }
    cx.out.int(n as i64);
    Ok(())
}

fn zremrangebyrank(cx: &mut Cx) -> CmdResult {
    zremrange_generic(cx, Kind::Rank)
}

fn zremrangebyscore(cx: &mut Cx) -> CmdResult {
    zremrange_generic(cx, Kind::Score)
}

fn zremrangebylex(cx: &mut Cx) -> CmdResult {
    zremrange_generic(cx, Kind::Lex)
}

// -------------------------------------------------------------------- pops

/// Pop up to `count` from the first non-empty zset among `keys`.
/// `count` None = plain ZPOPMIN/ZPOPMAX without a count.
fn pop_generic(cx: &mut Cx, keys: &[bytes::Bytes], max: bool, count: Option<u64>, zmpop: bool) -> CmdResult {
    let mut found = None;
    for k in keys {
        if get_zset(&mut cx.ks, k, false)?.is_some() {
            found = Some(k.clone());
            break;
        }
    }
    let Some(key) = found else {
        if zmpop {
            cx.out.null_array();
        } else {
            cx.out.array(0);
        }
        return Ok(());
    };
    if count == Some(0) {
        cx.out.array(0);
        return Ok(());
    }
    let want = count.unwrap_or(1);
    let mut popped = Vec::new();
    if let Some(z) = get_zset(&mut cx.ks, &key, false)? {
        while (popped.len() as u64) < want {
            let k = if max { z.pop_last() } else { z.pop_first() };
            match k {
                Some(k) => popped.push(k),
                None => break,
            }
        }
    }
    cx.ks.modified(&key);
    if !popped.is_empty() {
        cx.ks.notify(notify::ZSET, if max { "zpopmax" } else { "zpopmin" }, &key);
    }
    cx.ks.remove_if_empty(&key)?;
    let out = &mut *cx.out;
    if zmpop {
        out.array(2);
        out.bulk(&key);
        out.array(popped.len());
        for k in &popped {
            out.array(2);
            out.bulk(&k.member);
            out.double(k.score);
        }
    } else if count.is_none() {
        out.array(popped.len() * 2);
        for k in &popped {
            out.bulk(&k.member);
            out.double(k.score);
        }
    } else {
        reply_keys(out, &popped, true);
    }
    Ok(())
}

fn zpop_cmd(cx: &mut Cx, max: bool) -> CmdResult {
    if cx.argc() > 3 {
        return Err(SYNTAX);
    }
    let count = if cx.argc() == 3 {
        match parse_int(cx.arg(2)) {
            Ok(c) if c >= 0 => Some(c as u64),
            _ => return Err(MUST_BE_POSITIVE),
        }
    } else {
        None
    };
    let keys = &cx.args[1..2];
    pop_generic(cx, keys, max, count, false)
}

fn zpopmin(cx: &mut Cx) -> CmdResult {
    zpop_cmd(cx, false)
}

fn zpopmax(cx: &mut Cx) -> CmdResult {
    zpop_cmd(cx, true)
}

fn zmpop(cx: &mut Cx) -> CmdResult {
    zmpop_generic(cx, 1, false)
}

fn bzmpop(cx: &mut Cx) -> CmdResult {
    zmpop_generic(cx, 2, true)
}

/// ZMPOP / BZMPOP: `numkeys` at `numkeys_idx`, keys, MIN|MAX [COUNT n];
/// BZMPOP's timeout is argument 1.
fn zmpop_generic(cx: &mut Cx, numkeys_idx: usize, block: bool) -> CmdResult {
    let numkeys = match parse_int(cx.arg(numkeys_idx)) {
        Ok(n) if n > 0 => n as usize,
        _ => return Err(CmdError::err("numkeys should be greater than 0")),
    };
    // numkeys keys, then MIN|MAX.
    if numkeys > cx.argc().saturating_sub(numkeys_idx + 2) {
        return Err(SYNTAX);
    }
    let wi = numkeys_idx + 1 + numkeys;
    let w = cx.arg(wi);
    let max = if eq_ic(w, b"MIN") {
        false
    } else if eq_ic(w, b"MAX") {
        true
    } else {
        return Err(SYNTAX);
    };
    let mut count: Option<u64> = None;
    let mut j = wi + 1;
    while j < cx.argc() {
        if count.is_none() && eq_ic(cx.arg(j), b"COUNT") && j + 1 < cx.argc() {
            count = match parse_int(cx.arg(j + 1)) {
                Ok(c) if c > 0 => Some(c as u64),
                _ => return Err(CmdError::err("count should be greater than 0")),
            };
            j += 2;
        } else {
            return Err(SYNTAX);
        }
    }
    let args = cx.args;
    let keys = &args[numkeys_idx + 1..numkeys_idx + 1 + numkeys];
    if block {
        let deadline = cx.timeout_arg(1)?;
        if !any_zset(cx, keys)? {
            cx.block_on(keys.to_vec(), deadline, true);
            return Ok(());
        }
    }
    pop_generic(cx, keys, max, Some(count.unwrap_or(1)), true)
}

/// Does any of `keys` hold a (non-empty) sorted set? WRONGTYPE first, like Redis.
fn any_zset(cx: &mut Cx, keys: &[bytes::Bytes]) -> Result<bool, CmdError> {
    for k in keys {
        if get_zset(&mut cx.ks, k, false)?.is_some_and(|z| z.len() > 0) {
            return Ok(true);
        }
    }
    Ok(false)
}

/// BZPOPMIN / BZPOPMAX: `[key, member, score]` from the first non-empty
/// sorted set, or block.
fn bzpop(cx: &mut Cx, max: bool) -> CmdResult {
    let last = cx.argc() - 1;
    let deadline = cx.timeout_arg(last)?;
    let args = cx.args;
    let keys = &args[1..last];
    for key in keys {
        let Some(z) = get_zset(&mut cx.ks, key, false)? else { continue };
        let Some(k) = (if max { z.pop_last() } else { z.pop_first() }) else { continue };
        cx.ks.modified(key);
        cx.ks.notify(notify::ZSET, if max { "zpopmax" } else { "zpopmin" }, key);
        cx.ks.remove_if_empty(key)?;
        cx.out.array(3);
        cx.out.bulk(key);
        cx.out.bulk(&k.member);
        cx.out.double(k.score);
        return Ok(());
    }
    cx.block_on(keys.to_vec(), deadline, true);
    Ok(())
}

fn bzpopmin(cx: &mut Cx) -> CmdResult {
    bzpop(cx, false)
}

fn bzpopmax(cx: &mut Cx) -> CmdResult {
    bzpop(cx, true)
}

// ------------------------------------------------------------ ZRANDMEMBER

fn zrandmember(cx: &mut Cx) -> CmdResult {
    use rand::Rng;
    let key = cx.arg(1);
    if cx.argc() == 2 {
        let Some(z) = get_zset(&mut cx.ks, key, true)? else {
            cx.out.null();
            return Ok(());
        };
        let n = z.len();
        if n == 0 {
            cx.out.null();
            return Ok(());
        }
        let i = rand::thread_rng().gen_range(0..n);
        match z.tree.get(i) {
            Some(k) => cx.out.bulk(&k.member),
            None => cx.out.null(),
        }
        return Ok(());
    }
    let l = parse_int(cx.arg(2))?;
    if l == i64::MIN {
        return Err(CmdError::err(
            "value is out of range, value must between -9223372036854775807 and 9223372036854775807",
        ));
    }
    let mut withscores = false;
    if cx.argc() == 4 && eq_ic(cx.arg(3), b"WITHSCORES") {
        withscores = true;
    } else if cx.argc() > 3 {
        return Err(SYNTAX);
    }
    if withscores && !(-(i64::MAX / 2)..=i64::MAX / 2).contains(&l) {
        return Err(CmdError::err("value is out of range"));
    }
    let out = &mut *cx.out;
    let Some(z) = get_zset(&mut cx.ks, key, true)? else {
        out.array(0);
        return Ok(());
    };
    let n = z.len();
    if l == 0 || n == 0 {
        out.array(0);
        return Ok(());
    }
    if l < 0 {
        let cnt = l.unsigned_abs();
        let mut rng = rand::thread_rng();
        // Stream the reply: no allocation proportional to the count.
        if withscores && out.resp3 {
            out.array(cnt as usize);
        } else if withscores {
            out.array((cnt as usize).saturating_mul(2));
        } else {
            out.array(cnt as usize);
        }
        for _ in 0..cnt {
            let Some(k) = z.tree.get(rng.gen_range(0..n)) else {
                break;
            };
            if withscores && out.resp3 {
                out.array(2);
            }
            out.bulk(&k.member);
            if withscores {
                out.double(k.score);
            }
        }
        return Ok(());
    }
    let picked: Vec<&ZKey> = if l as usize >= n {
        z.tree.iter().collect()
    } else {
        let idx = crate::types::set::distinct_indices(n, l as usize);
        let mut v: Vec<&ZKey> = idx.into_iter().filter_map(|i| z.tree.get(i)).collect();
        // Random order, like Redis's dict-based pick.
        let mut rng = rand::thread_rng();
        for i in (1..v.len()).rev() {
            v.swap(i, rng.gen_range(0..=i));
        }
        v
    };
    reply_items(out, picked.iter().map(|k| (k.member.as_slice(), k.score)), withscores);
    Ok(())
}

// ------------------------------------------------- ZUNION / ZINTER / ZDIFF

#[derive(Clone, Copy, PartialEq, Eq)]
enum SetOp {
    Union,
    Inter,
    Diff,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Agg {
    Sum,
    Min,
    Max,
}

fn aggregate(target: &mut f64, val: f64, agg: Agg) {
    match agg {
        Agg::Sum => {
            *target += val;
            if target.is_nan() {
                *target = 0.0;
            }
        }
        Agg::Min => {
            if val < *target {
                *target = val
            }
        }
        Agg::Max => {
            if val > *target {
                *target = val
            }
        }
    }
}

/// `w * s`, with NaN (0 * inf) read as 0.
fn weighted(s: f64, w: f64) -> f64 {
    let v = s * w;
    if v.is_nan() {
        0.0
    } else {
        v
    }
}

/// Size of the zset or set at `k` (None if missing); WRONGTYPE otherwise.
/// Redis 7.0 looks inputs up for reading even when storing (`_write`).
fn input_size(cx: &mut Cx, k: &[u8], _write: bool) -> Result<Option<usize>, CmdError> {
    let e = cx.ks.lookup_read(k)?;
    match e {
        None => Ok(None),
        Some(e) => match &e.value {
            Value::ZSet(z) => Ok(Some(z.len())),
            Value::Set(s) => Ok(Some(s.len())),
            _ => Err(WRONGTYPE),
        },
    }
}

/// All (member, score) pairs of an input in its iteration order (sets
/// give score 1).
fn input_items(cx: &mut Cx, k: &[u8]) -> Result<Vec<(SmallBytes, f64)>, CmdError> {
    Ok(match cx.ks.lookup(k)? {
        None => Vec::new(),
        Some(e) => match &e.value {
            Value::ZSet(z) => z.tree.iter().map(|k| (k.member.clone(), k.score)).collect(),
            Value::Set(s) => s.ordered().into_iter().map(|m| (m.clone(), 1.0)).collect(),
            _ => return Err(WRONGTYPE),
        },
    })
}

/// Run `f(member) -> Option<score>` lookups against the input at `k`.
fn with_input<R>(cx: &mut Cx, k: &[u8], f: impl FnOnce(&dyn Fn(&[u8]) -> Option<f64>) -> R) -> Result<R, CmdError> {
    match cx.ks.lookup(k)? {
        None => Ok(f(&|_| None)),
        Some(e) => match &e.value {
            Value::ZSet(z) => Ok(f(&|m| z.score(m))),
            Value::Set(s) => Ok(f(&|m| s.contains(m).then_some(1.0))),
            _ => Err(WRONGTYPE),
        },
    }
}

/// The shared body of ZUNION/ZINTER/ZDIFF[STORE] and ZINTERCARD.
/// `nk` is the index of numkeys. Inputs are read in place; only the
/// result candidates are copied.
fn setop_generic(cx: &mut Cx, nk: usize, op: SetOp, dst: Option<&[u8]>, card_only: bool) -> CmdResult {
    let setnum = parse_int(cx.arg(nk))?;
    if setnum < 1 {
        return Err(CmdError::err(format!("at least 1 input key is needed for '{}' command", cx.cmd.meta.name)));
    }
    if setnum as u64 > (cx.argc() - nk - 1) as u64 {
        return Err(SYNTAX);
    }
    let setnum = setnum as usize;
    let keys = &cx.args[nk + 1..nk + 1 + setnum];
    // Look up and type-check every input before parsing options.
    let mut sizes = Vec::with_capacity(setnum);
    for k in keys {
        sizes.push(input_size(cx, k, dst.is_some())?);
    }
    let mut weights = vec![1.0f64; setnum];
    let mut agg = Agg::Sum;
    let mut withscores = false;
    let mut limit = 0usize;
    let mut j = nk + 1 + setnum;
    while j < cx.argc() {
        let remaining = cx.argc() - j;
        let a = cx.arg(j);
        if op != SetOp::Diff && !card_only && remaining > setnum && eq_ic(a, b"WEIGHTS") {
            j += 1;
            for w in weights.iter_mut() {
                *w = parse_double(cx.arg(j)).ok_or_else(|| CmdError::err("weight value is not a float"))?;
                j += 1;
            }
        } else if op != SetOp::Diff && !card_only && remaining >= 2 && eq_ic(a, b"AGGREGATE") {
            let v = cx.arg(j + 1);
            agg = if eq_ic(v, b"SUM") {
                Agg::Sum
            } else if eq_ic(v, b"MIN") {
                Agg::Min
            } else if eq_ic(v, b"MAX") {
                Agg::Max
            } else {
                return Err(SYNTAX);
            };
            j += 2;
        } else if dst.is_none() && !card_only && eq_ic(a, b"WITHSCORES") {
            withscores = true;
            j += 1;
        } else if card_only && remaining >= 2 && eq_ic(a, b"LIMIT") {
            limit = match parse_int(cx.arg(j + 1)) {
                Ok(l) if l >= 0 => l as usize,
                _ => return Err(CmdError::err("LIMIT can't be negative")),
            };
            j += 2;
        } else {
            return Err(SYNTAX);
        }
    }
    // Smallest input first (stable, like Redis's qsort on glibc), except
    // for DIFF whose first input is the base.
    let mut order: Vec<usize> = (0..setnum).collect();
    if op != SetOp::Diff {
        order.sort_by_key(|&i| sizes[i].unwrap_or(0));
    }
    let mut result: Vec<(SmallBytes, f64)> = Vec::new();
    match op {
        SetOp::Inter => {
            if sizes.iter().all(|s| s.is_some()) {
                let first = order[0];
                let mut cands: Vec<(SmallBytes, f64, bool)> = input_items(cx, &keys[first])?
                    .into_iter()
                    .map(|(m, s)| (m, weighted(s, weights[first]), true))
                    .collect();
                for &i in &order[1..] {
                    let w = weights[i];
                    with_input(cx, &keys[i], |get| {
                        for c in cands.iter_mut().filter(|c| c.2) {
                            match get(&c.0) {
                                // Not normalised: a NaN product leaves MIN/MAX alone.
                                Some(v) => aggregate(&mut c.1, v * w, agg),
                                None => c.2 = false,
                            }
                        }
                    })?;
                }
                result = cands.into_iter().filter(|c| c.2).map(|c| (c.0, c.1)).collect();
            }
        }
        SetOp::Union => {
            let mut acc: HashMap<SmallBytes, usize> = HashMap::new();
            for &i in &order {
                let w = weights[i];
                for (m, sc) in input_items(cx, &keys[i])? {
                    let v = weighted(sc, w);
                    match acc.get(m.as_slice()) {
                        Some(&idx) => aggregate(&mut result[idx].1, v, agg),
                        None => {
                            acc.insert(m.clone(), result.len());
                            result.push((m, v));
                        }
                    }
                }
            }
        }
        SetOp::Diff => {
            if sizes[0].is_some() {
                let mut cands: Vec<(SmallBytes, f64, bool)> =
                    input_items(cx, &keys[0])?.into_iter().map(|(m, s)| (m, s, true)).collect();
                for k in &keys[1..] {
                    with_input(cx, k, |get| {
                        for c in cands.iter_mut().filter(|c| c.2) {
                            if get(&c.0).is_some() {
                                c.2 = false;
                            }
                        }
                    })?;
                }
                result = cands.into_iter().filter(|c| c.2).map(|c| (c.0, c.1)).collect();
            }
        }
    }
    if card_only {
        let n = if limit != 0 { result.len().min(limit) } else { result.len() };
        cx.out.int(n as i64);
        return Ok(());
    }
    match dst {
        Some(d) => {
            let ev = match op {
                SetOp::Union => "zunionstore",
                SetOp::Inter => "zinterstore",
                SetOp::Diff => "zdiffstore",
            };
            store_result(cx, d, ev, result)
        }
        None => {
            let mut keys: Vec<ZKey> = result.into_iter().map(|(member, score)| ZKey { score, member }).collect();
            keys.sort();
            reply_keys(cx.out, &keys, withscores);
            Ok(())
        }
    }
}

fn zunion(cx: &mut Cx) -> CmdResult {
    setop_generic(cx, 1, SetOp::Union, None, false)
}

fn zinter(cx: &mut Cx) -> CmdResult {
    setop_generic(cx, 1, SetOp::Inter, None, false)
}

fn zdiff(cx: &mut Cx) -> CmdResult {
    setop_generic(cx, 1, SetOp::Diff, None, false)
}

fn zunionstore(cx: &mut Cx) -> CmdResult {
    let d = cx.arg(1);
    setop_generic(cx, 2, SetOp::Union, Some(d), false)
}

fn zinterstore(cx: &mut Cx) -> CmdResult {
    let d = cx.arg(1);
    setop_generic(cx, 2, SetOp::Inter, Some(d), false)
}

fn zdiffstore(cx: &mut Cx) -> CmdResult {
    let d = cx.arg(1);
    setop_generic(cx, 2, SetOp::Diff, Some(d), false)
}

fn zintercard(cx: &mut Cx) -> CmdResult {
    setop_generic(cx, 1, SetOp::Inter, None, true)
}

// ------------------------------------------------------------------- ZSCAN

fn zscan(cx: &mut Cx) -> CmdResult {
    let key = cx.arg(1);
    super::scan::parse_cursor(cx.arg(2))?;
    if get_zset(&mut cx.ks, key, true)?.is_none() {
        cx.out.array(2);
        cx.out.bulk(b"0");
        cx.out.array(0);
        return Ok(());
    }
    let a = super::scan::parse(cx, 2, false)?;
    let Some(z) = get_zset(&mut cx.ks, key, false)? else {
        return Err(super::UNDECLARED);
    };
    let z: &ZSet = z;
    let (items, next): (Vec<&ZKey>, u64) = if !z.big {
        (z.tree.iter().collect(), 0)
    } else {
        scan_step(z.tree.iter(), |k: &ZKey| k.member.as_slice(), a.cursor, scan_batch(a.count, z.len()))
    };
    let items: Vec<&ZKey> = match a.pattern {
        None => items,
        Some(p) => items.into_iter().filter(|k| crate::glob::glob_match(p, &k.member, false)).collect(),
    };
    let out = &mut *cx.out;
    out.array(2);
    out.bulk(next.to_string().as_bytes());
    out.array(items.len() * 2);
    let mut buf = Vec::with_capacity(32);
    for k in items {
        out.bulk(&k.member);
        buf.clear();
        // Redis's d2string: -0 prints as 0 here.
        let s = if k.score == 0.0 { 0.0 } else { k.score };
        ferrite_resp::num::fmt_g17(s, &mut buf);
        out.bulk(&buf);
    }
    Ok(())
}
