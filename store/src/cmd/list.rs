//! List commands (the non-blocking ones).

use super::{eq_ic, parse_int, CmdError, CmdImpl, CmdResult, Cx, Ks, Lock, NO_KEY, OUT_OF_RANGE, SYNTAX, WRONGTYPE};
use crate::keyspace::smallbytes::SmallBytes;
use crate::keyspace::Value;
use crate::notify;
use crate::types::list::List;

pub static COMMANDS: &[CmdImpl] = &[
    CmdImpl { name: "blpop", handler: blpop, lock: Lock::Keys },
    CmdImpl { name: "brpop", handler: brpop, lock: Lock::Keys },
    CmdImpl { name: "blmove", handler: blmove, lock: Lock::Keys },
    CmdImpl { name: "brpoplpush", handler: brpoplpush, lock: Lock::Keys },
    CmdImpl { name: "blmpop", handler: blmpop, lock: Lock::Keys },
    CmdImpl { name: "lpush", handler: lpush, lock: Lock::Keys },
    CmdImpl { name: "rpush", handler: rpush, lock: Lock::Keys },
    CmdImpl { name: "lpushx", handler: lpushx, lock: Lock::Keys },
    CmdImpl { name: "rpushx", handler: rpushx, lock: Lock::Keys },
    CmdImpl { name: "lpop", handler: lpop, lock: Lock::Keys },
    CmdImpl { name: "rpop", handler: rpop, lock: Lock::Keys },
    CmdImpl { name: "llen", handler: llen, lock: Lock::Keys },
    CmdImpl { name: "lrange", handler: lrange, lock: Lock::Keys },
    CmdImpl { name: "lindex", handler: lindex, lock: Lock::Keys },
    CmdImpl { name: "lset", handler: lset, lock: Lock::Keys },
    CmdImpl { name: "linsert", handler: linsert, lock: Lock::Keys },
    CmdImpl { name: "lrem", handler: lrem, lock: Lock::Keys },
    CmdImpl { name: "ltrim", handler: ltrim, lock: Lock::Keys },
    CmdImpl { name: "lpos", handler: lpos, lock: Lock::Keys },
    CmdImpl { name: "lmove", handler: lmove, lock: Lock::Keys },
    CmdImpl { name: "rpoplpush", handler: rpoplpush, lock: Lock::Keys },
    CmdImpl { name: "lmpop", handler: lmpop, lock: Lock::Keys },
];

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum End {
    Left,
    Right,
}

/// `LEFT` / `RIGHT`, or a syntax error.
pub fn parse_end(b: &[u8]) -> Result<End, CmdError> {
    if eq_ic(b, b"LEFT") {
        Ok(End::Left)
    } else if eq_ic(b, b"RIGHT") {
        Ok(End::Right)
    } else {
        Err(SYNTAX)
    }
}

fn out_of_range_positive() -> CmdError {
    CmdError::err("value is out of range, must be positive")
}

/// The list at `key` for a read command (counts hits/misses).
fn read<'k>(ks: &'k mut Ks, key: &[u8]) -> Result<Option<&'k mut List>, CmdError> {
    match ks.lookup_read(key)? {
        None => Ok(None),
        Some(e) => match &mut e.value {
            Value::List(l) => Ok(Some(l)),
            _ => Err(WRONGTYPE),
        },
    }
}

fn push_generic(cx: &mut Cx, end: End, only_existing: bool) -> CmdResult {
    let key = cx.arg(1);
    let args = cx.args;
    let l = if only_existing {
        match cx.ks.list(key)? {
            Some(l) => l,
            None => {
                cx.out.int(0);
                return Ok(());
            }
        }
    } else {
        cx.ks.list_or_create(key)?
    };
    for a in &args[2..] {
        let e = SmallBytes::new(a);
        match end {
            End::Left => l.items.push_front(e),
            End::Right => l.items.push_back(e),
        }
    }
    let n = l.len();
    cx.ks.modified(key);
    cx.ks.notify(notify::LIST, push_event(end), key);
    cx.out.int(n as i64);
    Ok(())
}

/// The event a push at `end` publishes.
fn push_event(end: End) -> &'static str {
    match end {
        End::Left => "lpush",
        End::Right => "rpush",
    }
}

/// The event a pop at `end` publishes.
pub fn pop_event(end: End) -> &'static str {
    match end {
        End::Left => "lpop",
        End::Right => "rpop",
    }
}

fn lpush(cx: &mut Cx) -> CmdResult {
    push_generic(cx, End::Left, false)
}

fn rpush(cx: &mut Cx) -> CmdResult {
    push_generic(cx, End::Right, false)
}

fn lpushx(cx: &mut Cx) -> CmdResult {
    push_generic(cx, End::Left, true)
}

fn rpushx(cx: &mut Cx) -> CmdResult {
    push_generic(cx, End::Right, true)
}

/// Pop one element from the given end.
pub fn pop_one(l: &mut List, end: End) -> Option<SmallBytes> {
    match end {
        End::Left => l.items.pop_front(),
        End::Right => l.items.pop_back(),
    }
}

fn pop_generic(cx: &mut Cx, end: End) -> CmdResult {
    if cx.argc() > 3 {
        return Err(cx.arity_error());
    }
    let key = cx.arg(1);
    let count = if cx.argc() == 3 {
        let c = parse_int(cx.arg(2)).map_err(|_| out_of_range_positive())?;
        if c < 0 {
            return Err(out_of_range_positive());
        }
        Some(c as u64)
    } else {
        None
    };
    let Some(l) = cx.ks.list(key)? else {
        match count {
            Some(_) => cx.out.null_array(),
            None => cx.out.null(),
        }
        return Ok(());
    };
    match count {
        None => {
            let Some(e) = pop_one(l, end) else {
                cx.out.null();
                return Ok(());
            };
            cx.out.bulk(&e);
        }
        Some(0) => {
            cx.out.array(0);
            return Ok(());
        }
        Some(c) => {
            let n = (c.min(l.len() as u64)) as usize;
            cx.out.array(n);
            for _ in 0..n {
                if let Some(e) = pop_one(l, end) {
                    cx.out.bulk(&e);
                }
            }
        }
    }
    cx.ks.notify(notify::LIST, pop_event(end), key);
    cx.ks.remove_if_empty(key)?;
    cx.ks.modified(key);
    Ok(())
}

fn lpop(cx: &mut Cx) -> CmdResult {
    pop_generic(cx, End::Left)
}

fn rpop(cx: &mut Cx) -> CmdResult {
    pop_generic(cx, End::Right)
}

fn llen(cx: &mut Cx) -> CmdResult {
    let key = cx.arg(1);
    let n = read(&mut cx.ks, key)?.map_or(0, |l| l.len());
    cx.out.int(n as i64);
    Ok(())
}

/// Normalize a `start stop` range (Redis LRANGE/LTRIM rules); None = empty.
fn norm_range(start: i64, end: i64, len: usize) -> Option<(usize, usize)> {
    let len = len as i64;
    let mut s = if start < 0 { start.saturating_add(len) } else { start };
    let mut e = if end < 0 { end.saturating_add(len) } else { end };
    if s < 0 {
        s = 0;
    }
    if s > e || s >= len {
        return None;
    }
    if e >= len {
        e = len - 1;
    }
    Some((s as usize, e as usize))
}

fn lrange(cx: &mut Cx) -> CmdResult {
    let key = cx.arg(1);
    let start = cx.int_arg(2)?;
    let end = cx.int_arg(3)?;
    let Some(l) = read(&mut cx.ks, key)? else {
        cx.out.array(0);
        return Ok(());
    };
    match norm_range(start, end, l.len()) {
        None => cx.out.array(0),
        Some((s, e)) => {
            cx.out.array(e - s + 1);
            for it in l.items.range(s..=e) {
                cx.out.bulk(it);
            }
        }
    }
    Ok(())
}

/// Resolve a possibly negative index.
fn resolve(index: i64, len: usize) -> Option<usize> {
    let len = len as i64;
    let i = if index < 0 { index.checked_add(len)? } else { index };
    (0..len).contains(&i).then_some(i as usize)
}

fn lindex(cx: &mut Cx) -> CmdResult {
    let key = cx.arg(1);
    let idx = cx.arg(2);
    let Some(l) = read(&mut cx.ks, key)? else {
        cx.out.null();
        return Ok(());
    };
    let index = parse_int(idx)?;
    match resolve(index, l.len()).and_then(|i| l.items.get(i)) {
        Some(e) => cx.out.bulk(e),
        None => cx.out.null(),
    }
    Ok(())
}

fn lset(cx: &mut Cx) -> CmdResult {
    let (key, idx, val) = (cx.arg(1), cx.arg(2), cx.arg(3));
    let Some(l) = cx.ks.list(key)? else {
        return Err(NO_KEY);
    };
    let index = parse_int(idx)?;
    let Some(i) = resolve(index, l.len()) else {
        return Err(OUT_OF_RANGE);
    };
    l.items[i] = SmallBytes::new(val);
    cx.ks.modified(key);
    cx.ks.notify(notify::LIST, "lset", key);
    cx.out.ok();
    Ok(())
}

fn linsert(cx: &mut Cx) -> CmdResult {
    let (key, wh, pivot, val) = (cx.arg(1), cx.arg(2), cx.arg(3), cx.arg(4));
    let after = if eq_ic(wh, b"AFTER") {
        true
    } else if eq_ic(wh, b"BEFORE") {
        false
    } else {
        return Err(SYNTAX);
    };
    let Some(l) = cx.ks.list(key)? else {
        cx.out.int(0);
        return Ok(());
    };
    let Some(pos) = l.items.iter().position(|e| &**e == pivot) else {
        cx.out.int(-1);
        return Ok(());
    };
    l.items.insert(if after { pos + 1 } else { pos }, SmallBytes::new(val));
    let n = l.len();
    cx.ks.modified(key);
    cx.ks.notify(notify::LIST, "linsert", key);
    cx.out.int(n as i64);
    Ok(())
}

fn lrem(cx: &mut Cx) -> CmdResult {
    let (key, el) = (cx.arg(1), cx.arg(3));
    let count = cx.int_arg(2)?;
    let Some(l) = cx.ks.list(key)? else {
        cx.out.int(0);
        return Ok(());
    };
    let limit = if count == 0 { usize::MAX } else { usize::try_from(count.unsigned_abs()).unwrap_or(usize::MAX) };
    // Positions to remove (ascending), then one compaction pass.
    let mut hits: Vec<usize> = Vec::new();
    if count >= 0 {
        hits.extend(l.items.iter().enumerate().filter(|(_, e)| &***e == el).map(|(i, _)| i).take(limit));
    } else {
        hits.extend(l.items.iter().enumerate().rev().filter(|(_, e)| &***e == el).map(|(i, _)| i).take(limit));
        hits.reverse();
    }
    let removed = hits.len();
    if removed > 0 {
        let mut idx = 0usize;
        let mut next = hits.iter().copied().peekable();
        l.items.retain(|_| {
            let drop = next.peek() == Some(&idx);
            if drop {
                next.next();
            }
            idx += 1;
            !drop
        });
    }
    if removed > 0 {
        cx.ks.notify(notify::LIST, "lrem", key);
        cx.ks.remove_if_empty(key)?;
        cx.ks.modified(key);
    }
    cx.out.int(removed as i64);
    Ok(())
}

fn ltrim(cx: &mut Cx) -> CmdResult {
    let key = cx.arg(1);
    let start = cx.int_arg(2)?;
    let end = cx.int_arg(3)?;
    let Some(l) = cx.ks.list(key)? else {
        cx.out.ok();
        return Ok(());
    };
    let len = l.len();
    match norm_range(start, end, len) {
        None => l.items.clear(),
        Some((s, e)) => {
            l.items.truncate(e + 1);
            l.items.drain(..s);
        }
    }
    if l.items.capacity() > 64 && l.items.capacity() > 4 * l.items.len() {
        l.items.shrink_to_fit();
    }
    cx.ks.notify(notify::LIST, "ltrim", key);
    cx.ks.remove_if_empty(key)?;
    cx.ks.modified(key);
    cx.out.ok();
    Ok(())
}

fn lpos(cx: &mut Cx) -> CmdResult {
    let (key, el) = (cx.arg(1), cx.arg(2));
    let mut rank: i64 = 1;
    let mut count: Option<u64> = None;
    let mut maxlen: u64 = 0;
    let mut j = 3;
    while j < cx.argc() {
        let opt = cx.arg(j);
        let more = cx.argc() - 1 - j;
        if eq_ic(opt, b"RANK") && more > 0 {
            j += 1;
            let r = parse_int(cx.arg(j))?;
            if r == 0 {
                return Err(CmdError::err(
                    "RANK can't be zero: use 1 to start from the first match, 2 from the second ... or use negative \
                     to start from the end of the list",
                ));
            }
            rank = r;
        } else if eq_ic(opt, b"COUNT") && more > 0 {
            j += 1;
            let c = parse_int(cx.arg(j)).ok().filter(|c| *c >= 0);
            count = Some(c.ok_or_else(|| CmdError::err("COUNT can't be negative"))? as u64);
        } else if eq_ic(opt, b"MAXLEN") && more > 0 {
            j += 1;
            let m = parse_int(cx.arg(j)).ok().filter(|c| *c >= 0);
            maxlen = m.ok_or_else(|| CmdError::err("MAXLEN can't be negative"))? as u64;
        } else {
            return Err(SYNTAX);
        }
        j += 1;
    }
    let Some(l) = read(&mut cx.ks, key)? else {
        match count {
            Some(_) => cx.out.array(0),
            None => cx.out.null(),
        }
        return Ok(());
    };
    let len = l.len();
    let want = match count {
        Some(0) => u64::MAX,
        Some(c) => c,
        None => 1,
    };
    // Redis negates the rank in a `long`: LONG_MIN stays negative and then
    // matches the first hit from the tail.
    let mut skip = if rank == i64::MIN { 0 } else { rank.unsigned_abs() - 1 };
    let limit = if maxlen == 0 { len } else { (maxlen.min(len as u64)) as usize };
    let mut found: Vec<usize> = Vec::new();
    let mut check = |i: usize, e: &SmallBytes| -> bool {
        if &**e == el {
            if skip > 0 {
                skip -= 1;
            } else {
                found.push(i);
                if found.len() as u64 >= want {
                    return true;
                }
            }
        }
        false
    };
    if rank > 0 {
        for (i, e) in l.items.iter().enumerate().take(limit) {
            if check(i, e) {
                break;
            }
        }
    } else {
        for (i, e) in l.items.iter().enumerate().rev().take(limit) {
            if check(i, e) {
                break;
            }
        }
    }
    match count {
        Some(_) => {
            cx.out.array(found.len());
            for i in found {
                cx.out.int(i as i64);
            }
        }
        None => match found.first() {
            Some(&i) => cx.out.int(i as i64),
            None => cx.out.null(),
        },
    }
    Ok(())
}

/// Pop from `src` at `from` and push to `dst` at `to`; reply with the
/// element (null if `src` is missing).
fn move_generic(cx: &mut Cx, src: &[u8], dst: &[u8], from: End, to: End) -> CmdResult {
    let Some(l) = cx.ks.list(src)? else {
        cx.out.null();
        return Ok(());
    };
    if l.len() == 0 {
        cx.out.null();
        return Ok(());
    }
    // Type-check the destination before touching anything.
    cx.ks.list(dst)?;
    let Some(l) = cx.ks.list(src)? else {
        cx.out.null();
        return Ok(());
    };
    let Some(e) = pop_one(l, from) else {
        cx.out.null();
        return Ok(());
    };
    let d = cx.ks.list_or_create(dst)?;
    match to {
        End::Left => d.items.push_front(e.clone()),
        End::Right => d.items.push_back(e.clone()),
    }
    cx.ks.modified(src);
    cx.ks.modified(dst);
    cx.ks.notify(notify::LIST, push_event(to), dst);
    cx.ks.notify(notify::LIST, pop_event(from), src);
    cx.ks.remove_if_empty(src)?;
    cx.out.bulk(&e);
    Ok(())
}

fn lmove(cx: &mut Cx) -> CmdResult {
    let (src, dst) = (cx.arg(1), cx.arg(2));
    let from = parse_end(cx.arg(3))?;
    let to = parse_end(cx.arg(4))?;
    move_generic(cx, src, dst, from, to)
}

fn rpoplpush(cx: &mut Cx) -> CmdResult {
    let (src, dst) = (cx.arg(1), cx.arg(2));
    move_generic(cx, src, dst, End::Right, End::Left)
}

fn lmpop(cx: &mut Cx) -> CmdResult {
    lmpop_generic(cx, 1, false)
}

fn blmpop(cx: &mut Cx) -> CmdResult {
    lmpop_generic(cx, 2, true)
}

/// LMPOP / BLMPOP: `numkeys` at `numkeys_idx`, keys after it, then
/// LEFT|RIGHT [COUNT n]; BLMPOP's timeout is argument 1.
fn lmpop_generic(cx: &mut Cx, numkeys_idx: usize, block: bool) -> CmdResult {
    let numkeys = parse_int(cx.arg(numkeys_idx))
        .ok()
        .filter(|n| *n >= 1)
        .ok_or_else(|| CmdError::err("numkeys should be greater than 0"))? as u64;
    let where_idx = numkeys.saturating_add(numkeys_idx as u64 + 1);
    if where_idx >= cx.argc() as u64 {
        return Err(SYNTAX);
    }
    let where_idx = where_idx as usize;
    let end = parse_end(cx.arg(where_idx))?;
    let mut count: Option<u64> = None;
    let mut j = where_idx + 1;
    while j < cx.argc() {
        let more = cx.argc() - 1 - j;
        if count.is_none() && eq_ic(cx.arg(j), b"COUNT") && more > 0 {
            j += 1;
            let c = parse_int(cx.arg(j))
                .ok()
                .filter(|c| *c >= 1)
                .ok_or_else(|| CmdError::err("count should be greater than 0"))?;
            count = Some(c as u64);
        } else {
            return Err(SYNTAX);
        }
        j += 1;
    }
    let count = count.unwrap_or(1);
    let deadline = if block { Some(cx.timeout_arg(1)?) } else { None };
    let args = cx.args;
    let keys = &args[numkeys_idx + 1..where_idx];
    for key in keys {
        let Some(l) = cx.ks.list(key)? else {
            continue;
        };
        if l.len() == 0 {
            continue;
        }
        let n = (count.min(l.len() as u64)) as usize;
        cx.out.array(2);
        cx.out.bulk(key);
        cx.out.array(n);
        for _ in 0..n {
            if let Some(e) = pop_one(l, end) {
                cx.out.bulk(&e);
            }
        }
        cx.ks.notify(notify::LIST, pop_event(end), key);
        cx.ks.remove_if_empty(key)?;
        cx.ks.modified(key);
        return Ok(());
    }
    match deadline {
        Some(d) => cx.block_on(keys.to_vec(), d, true),
        None => cx.out.null_array(),
    }
    Ok(())
}

/// BLPOP / BRPOP: pop from the first non-empty list, or block.
fn bpop(cx: &mut Cx, end: End) -> CmdResult {
    let last = cx.argc() - 1;
    let deadline = cx.timeout_arg(last)?;
    let args = cx.args;
    let keys = &args[1..last];
    for key in keys {
        let Some(l) = cx.ks.list(key)? else { continue };
        let Some(e) = pop_one(l, end) else { continue };
        cx.out.array(2);
        cx.out.bulk(key);
        cx.out.bulk(&e);
        cx.ks.notify(notify::LIST, pop_event(end), key);
        cx.ks.remove_if_empty(key)?;
        cx.ks.modified(key);
        return Ok(());
    }
    cx.block_on(keys.to_vec(), deadline, true);
    Ok(())
}

fn blpop(cx: &mut Cx) -> CmdResult {
    bpop(cx, End::Left)
}

fn brpop(cx: &mut Cx) -> CmdResult {
    bpop(cx, End::Right)
}

/// BLMOVE / BRPOPLPUSH: LMOVE when the source has elements, else block on it.
fn bmove(cx: &mut Cx, from: End, to: End, timeout_idx: usize) -> CmdResult {
    let (src, dst) = (cx.arg(1), cx.arg(2));
    let deadline = cx.timeout_arg(timeout_idx)?;
    match cx.ks.list(src)? {
        Some(l) if l.len() > 0 => move_generic(cx, src, dst, from, to),
        _ => {
            cx.block_on(vec![cx.args[1].clone()], deadline, false);
            Ok(())
        }
    }
}

fn blmove(cx: &mut Cx) -> CmdResult {
    let from = parse_end(cx.arg(3))?;
    let to = parse_end(cx.arg(4))?;
    bmove(cx, from, to, 5)
}

fn brpoplpush(cx: &mut Cx) -> CmdResult {
    bmove(cx, End::Right, End::Left, 3)
}
