//! String commands.

use super::{eq_ic, CmdError, CmdImpl, CmdResult, Cx, Lock, NOT_INT, OVERFLOW, SYNTAX, WRONGTYPE};
use crate::keyspace::{StrValue, Value};

pub static COMMANDS: &[CmdImpl] = &[
    CmdImpl { name: "get", handler: get, lock: Lock::Keys },
    CmdImpl { name: "set", handler: set, lock: Lock::Keys },
    CmdImpl { name: "setnx", handler: setnx, lock: Lock::Keys },
    CmdImpl { name: "setex", handler: setex, lock: Lock::Keys },
    CmdImpl { name: "psetex", handler: psetex, lock: Lock::Keys },
    CmdImpl { name: "getset", handler: getset, lock: Lock::Keys },
    CmdImpl { name: "getdel", handler: getdel, lock: Lock::Keys },
    CmdImpl { name: "mget", handler: mget, lock: Lock::Keys },
    CmdImpl { name: "mset", handler: mset, lock: Lock::Keys },
    CmdImpl { name: "msetnx", handler: msetnx, lock: Lock::Keys },
    CmdImpl { name: "incr", handler: incr, lock: Lock::Keys },
    CmdImpl { name: "decr", handler: decr, lock: Lock::Keys },
    CmdImpl { name: "incrby", handler: incrby, lock: Lock::Keys },
    CmdImpl { name: "decrby", handler: decrby, lock: Lock::Keys },
    CmdImpl { name: "append", handler: append, lock: Lock::Keys },
    CmdImpl { name: "strlen", handler: strlen, lock: Lock::Keys },
];

/// Reply with the string at `key` (null if missing); WRONGTYPE otherwise.
fn reply_string_at(cx: &mut Cx, key: &[u8]) -> CmdResult {
    match cx.ks.lookup_read(key)? {
        None => cx.out.null(),
        Some(e) => match &e.value {
            Value::Str(s) => {
                let mut t = itoa::Buffer::new();
                cx.out.bulk(s.as_bytes(&mut t));
            }
            _ => return Err(WRONGTYPE),
        },
    }
    Ok(())
}

fn get(cx: &mut Cx) -> CmdResult {
    reply_string_at(cx, cx.arg(1))
}

/// Expiry option of SET/GETEX.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum ExpireOpt {
    None,
    KeepTtl,
    Persist,
    /// Absolute unix ms.
    At(i64),
}

/// Parse an EX/PX/EXAT/PXAT value into absolute unix ms with Redis's checks.
pub fn expire_arg(cx: &Cx, val: &[u8], unit_ms: i64, absolute: bool) -> Result<i64, CmdError> {
    let v = super::parse_int(val)?;
    let invalid = || CmdError::err(format!("invalid expire time in '{}' command", cx.cmd.meta.name));
    if v <= 0 || (unit_ms == 1000 && v > i64::MAX / 1000) {
        return Err(invalid());
    }
    let ms = v * unit_ms;
    if absolute {
        Ok(ms)
    } else {
        ms.checked_add(cx.ks.now).ok_or_else(invalid)
    }
}

fn set(cx: &mut Cx) -> CmdResult {
    let (mut nx, mut xx, mut get) = (false, false, false);
    let mut exp = ExpireOpt::None;
    let mut has_exp = false;
    let mut i = 3;
    while i < cx.argc() {
        let a = cx.arg(i);
        let next = (i + 1 < cx.argc()).then(|| cx.arg(i + 1));
        if eq_ic(a, b"NX") && !xx {
            nx = true;
        } else if eq_ic(a, b"XX") && !nx {
            xx = true;
        } else if eq_ic(a, b"GET") {
            get = true;
        } else if eq_ic(a, b"KEEPTTL") && !has_exp {
            exp = ExpireOpt::KeepTtl;
        } else if let (Some(v), Some((unit, abs))) = (next, expire_kind(a)) {
            if exp == ExpireOpt::KeepTtl || (has_exp && !same_kind(cx, i)) {
                return Err(SYNTAX);
            }
            has_exp = true;
            exp = ExpireOpt::At(expire_arg(cx, v, unit, abs)?);
            i += 1;
        } else {
            return Err(SYNTAX);
        }
        i += 1;
    }
    let key = cx.arg(1);
    let old = if get {
        match cx.ks.lookup_read(key)? {
            None => None,
            Some(e) => match &e.value {
                Value::Str(s) => Some(s.to_vec()),
                _ => return Err(WRONGTYPE),
            },
        }
    } else {
        None
    };
    let exists = if get { old.is_some() } else { cx.ks.exists(key)? };
    let do_set = !(nx && exists) && !(xx && !exists);
    if do_set {
        let value = Value::str(cx.arg(2));
        match exp {
            ExpireOpt::KeepTtl => cx.ks.insert_keep_ttl(key, value)?,
            ExpireOpt::At(at) => cx.ks.insert(key, value, at)?,
            _ => cx.ks.insert(key, value, 0)?,
        }
    }
    if get {
        match old {
            Some(v) => cx.out.bulk(&v),
            None => cx.out.null(),
        }
    } else if do_set {
        cx.out.ok();
    } else {
        cx.out.null();
    }
    Ok(())
}

fn expire_kind(a: &[u8]) -> Option<(i64, bool)> {
    if eq_ic(a, b"EX") {
        Some((1000, false))
    } else if eq_ic(a, b"PX") {
        Some((1, false))
    } else if eq_ic(a, b"EXAT") {
        Some((1000, true))
    } else if eq_ic(a, b"PXAT") {
        Some((1, true))
    } else {
        None
    }
}

/// Redis lets the same expire option repeat (last wins) but not mix kinds.
fn same_kind(cx: &Cx, i: usize) -> bool {
    let this = expire_kind(cx.arg(i));
    (3..i).any(|j| expire_kind(cx.arg(j)).is_some() && expire_kind(cx.arg(j)) == this)
}

fn setnx(cx: &mut Cx) -> CmdResult {
    let key = cx.arg(1);
    if cx.ks.exists(key)? {
        cx.out.int(0);
    } else {
        cx.ks.insert(key, Value::str(cx.arg(2)), 0)?;
        cx.out.int(1);
    }
    Ok(())
}

fn setex_generic(cx: &mut Cx, unit: i64) -> CmdResult {
    let at = expire_arg(cx, cx.arg(2), unit, false)?;
    cx.ks.insert(cx.arg(1), Value::str(cx.arg(3)), at)?;
    cx.out.ok();
    Ok(())
}

fn setex(cx: &mut Cx) -> CmdResult {
    setex_generic(cx, 1000)
}

fn psetex(cx: &mut Cx) -> CmdResult {
    setex_generic(cx, 1)
}

fn getset(cx: &mut Cx) -> CmdResult {
    let key = cx.arg(1);
    let old = match cx.ks.lookup_read(key)? {
        None => None,
        Some(e) => match &e.value {
            Value::Str(s) => Some(s.to_vec()),
            _ => return Err(WRONGTYPE),
        },
    };
    cx.ks.insert(key, Value::str(cx.arg(2)), 0)?;
    match old {
        Some(v) => cx.out.bulk(&v),
        None => cx.out.null(),
    }
    Ok(())
}

fn getdel(cx: &mut Cx) -> CmdResult {
    let key = cx.arg(1);
    match cx.ks.lookup_read(key)? {
        None => {
            cx.out.null();
            return Ok(());
        }
        Some(e) if !matches!(e.value, Value::Str(_)) => return Err(WRONGTYPE),
        Some(_) => {}
    }
    if let Some(e) = cx.ks.remove(key)? {
        if let Value::Str(s) = &e.value {
            let mut t = itoa::Buffer::new();
            cx.out.bulk(s.as_bytes(&mut t));
        }
    }
    Ok(())
}

fn mget(cx: &mut Cx) -> CmdResult {
    cx.out.array(cx.argc() - 1);
    for i in 1..cx.argc() {
        match cx.ks.lookup_read(cx.arg(i))? {
            Some(e) => match &e.value {
                Value::Str(s) => {
                    let mut t = itoa::Buffer::new();
                    cx.out.bulk(s.as_bytes(&mut t));
                }
                _ => cx.out.null(),
            },
            None => cx.out.null(),
        }
    }
    Ok(())
}

fn mset(cx: &mut Cx) -> CmdResult {
    if cx.argc() % 2 == 0 {
        return Err(cx.arity_error());
    }
    for i in (1..cx.argc()).step_by(2) {
        cx.ks.insert(cx.arg(i), Value::str(cx.arg(i + 1)), 0)?;
    }
    cx.out.ok();
    Ok(())
}

fn msetnx(cx: &mut Cx) -> CmdResult {
    if cx.argc() % 2 == 0 {
        return Err(cx.arity_error());
    }
    for i in (1..cx.argc()).step_by(2) {
        if cx.ks.exists(cx.arg(i))? {
            cx.out.int(0);
            return Ok(());
        }
    }
    for i in (1..cx.argc()).step_by(2) {
        cx.ks.insert(cx.arg(i), Value::str(cx.arg(i + 1)), 0)?;
    }
    cx.out.int(1);
    Ok(())
}

/// Add `by` to the integer at `key`, creating it as 0; replies the result.
pub fn incr_generic(cx: &mut Cx, by: i64) -> CmdResult {
    let key = cx.arg(1);
    let cur = match cx.ks.lookup(key)? {
        None => None,
        Some(e) => match &mut e.value {
            Value::Str(StrValue::Int(i)) => Some(*i),
            Value::Str(s) => {
                let mut t = itoa::Buffer::new();
                let b = s.as_bytes(&mut t);
                if b.len() > 20 {
                    return Err(NOT_INT);
                }
                Some(super::parse_int(b)?)
            }
            _ => return Err(WRONGTYPE),
        },
    };
    let old = cur.unwrap_or(0);
    let new = old.checked_add(by).ok_or(OVERFLOW)?;
    match cx.ks.lookup(key)? {
        Some(e) => e.value = Value::Str(StrValue::Int(new)),
        None => cx.ks.insert(key, Value::Str(StrValue::Int(new)), 0)?,
    }
    cx.ks.modified(key);
    cx.out.int(new);
    Ok(())
}

fn incr(cx: &mut Cx) -> CmdResult {
    incr_generic(cx, 1)
}

fn decr(cx: &mut Cx) -> CmdResult {
    incr_generic(cx, -1)
}

fn incrby(cx: &mut Cx) -> CmdResult {
    let by = cx.int_arg(2)?;
    incr_generic(cx, by)
}

fn decrby(cx: &mut Cx) -> CmdResult {
    let by = cx.int_arg(2)?;
    if by == i64::MIN {
        return Err(CmdError::err("decrement would overflow"));
    }
    incr_generic(cx, -by)
}

fn append(cx: &mut Cx) -> CmdResult {
    let key = cx.arg(1);
    let add = cx.arg(2);
    let len = match cx.ks.string(key)? {
        Some(s) => {
            let v = s.make_raw();
            check_string_size(v.len() + add.len())?;
            v.extend_from_slice(add);
            v.len()
        }
        None => {
            cx.ks.insert(key, Value::str(add), 0)?;
            add.len()
        }
    };
    cx.ks.modified(key);
    cx.out.int(len as i64);
    Ok(())
}

/// Redis's 512 MB string limit (`proto-max-bulk-len` applies to writes).
pub fn check_string_size(len: usize) -> CmdResult {
    if len > 512 * 1024 * 1024 {
        return Err(CmdError::err("string exceeds maximum allowed size (proto-max-bulk-len)"));
    }
    Ok(())
}

fn strlen(cx: &mut Cx) -> CmdResult {
    let n = cx.ks.string(cx.arg(1))?.map_or(0, |s| s.len());
    cx.out.int(n as i64);
    Ok(())
}
