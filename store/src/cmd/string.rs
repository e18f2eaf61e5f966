//! String commands.

use super::{eq_ic, CmdError, CmdImpl, CmdResult, Cx, Lock, NOT_INT, OVERFLOW, SYNTAX, WRONGTYPE};
use crate::keyspace::{StrValue, Value};
use crate::notify;

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
    CmdImpl { name: "getex", handler: getex, lock: Lock::Keys },
    CmdImpl { name: "getrange", handler: getrange, lock: Lock::Keys },
    CmdImpl { name: "substr", handler: getrange, lock: Lock::Keys },
    CmdImpl { name: "setrange", handler: setrange, lock: Lock::Keys },
    CmdImpl { name: "incrbyfloat", handler: incrbyfloat, lock: Lock::Keys },
    CmdImpl { name: "lcs", handler: lcs, lock: Lock::Keys },
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

/// Which expire option of SET/GETEX was given.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum ExpKind {
    Ex,
    Px,
    ExAt,
    PxAt,
}

/// Options of SET (`is_set`) or GETEX, parsed with Redis's exact rules:
/// repeating an option is fine (the last expire value wins), mixing
/// conflicting ones is a syntax error. Expire values are checked later.
#[derive(Default)]
struct ExtOpts<'a> {
    nx: bool,
    xx: bool,
    get: bool,
    keepttl: bool,
    persist: bool,
    kind: Option<ExpKind>,
    expire: Option<&'a [u8]>,
}

fn parse_ext<'a>(cx: &Cx<'a, '_>, is_set: bool) -> Result<ExtOpts<'a>, CmdError> {
    let mut o = ExtOpts::default();
    let mut j = if is_set { 3 } else { 2 };
    let argc = cx.argc();
    while j < argc {
        let a = cx.arg(j);
        let next = (j + 1 < argc).then(|| cx.arg(j + 1));
        let kind = if eq_ic(a, b"EX") {
            Some(ExpKind::Ex)
        } else if eq_ic(a, b"PX") {
            Some(ExpKind::Px)
        } else if eq_ic(a, b"EXAT") {
            Some(ExpKind::ExAt)
        } else if eq_ic(a, b"PXAT") {
            Some(ExpKind::PxAt)
        } else {
            None
        };
        if is_set && eq_ic(a, b"NX") && !o.xx {
            o.nx = true;
        } else if is_set && eq_ic(a, b"XX") && !o.nx {
            o.xx = true;
        } else if is_set && eq_ic(a, b"GET") {
            o.get = true;
        } else if is_set && eq_ic(a, b"KEEPTTL") && !o.persist && o.kind.is_none() {
            o.keepttl = true;
        } else if !is_set && eq_ic(a, b"PERSIST") && o.kind.is_none() && !o.keepttl {
            o.persist = true;
        } else if let (Some(k), Some(v)) = (kind, next) {
            if o.keepttl || o.persist || o.kind.is_some_and(|p| p != k) {
                return Err(SYNTAX);
            }
            o.kind = Some(k);
            o.expire = Some(v);
            j += 1;
        } else {
            return Err(SYNTAX);
        }
        j += 1;
    }
    Ok(o)
}

/// The absolute expiry (unix ms) of a parsed EX/PX/EXAT/PXAT value.
fn ext_expire_ms(cx: &Cx, o: &ExtOpts) -> Result<Option<i64>, CmdError> {
    match (o.kind, o.expire) {
        (Some(k), Some(v)) => {
            let (unit, abs) = match k {
                ExpKind::Ex => (1000, false),
                ExpKind::Px => (1, false),
                ExpKind::ExAt => (1000, true),
                ExpKind::PxAt => (1, true),
            };
            expire_arg(cx, v, unit, abs).map(Some)
        }
        _ => Ok(None),
    }
}

fn set(cx: &mut Cx) -> CmdResult {
    let o = parse_ext(cx, true)?;
    let at = ext_expire_ms(cx, &o)?;
    let key = cx.arg(1);
    let old = if o.get {
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
    // Without NX/XX/GET the old value does not matter: the insert itself
    // expires a logically expired old key first (as the lookup would).
    let do_set = if !o.nx && !o.xx {
        true
    } else {
        let exists = if o.get { old.is_some() } else { cx.ks.exists(key)? };
        if exists {
            !o.nx
        } else {
            !o.xx
        }
    };
    if do_set {
        let value = Value::str(cx.arg(2));
        match at {
            Some(at) => cx.ks.insert(key, value, at)?,
            None if o.keepttl => cx.ks.insert_keep_ttl(key, value)?,
            None => cx.ks.insert(key, value, 0)?,
        }
        cx.ks.notify(notify::STRING, "set", key);
        if at.is_some() {
            cx.ks.notify(notify::GENERIC, "expire", key);
        }
    }
    if o.get {
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

fn getex(cx: &mut Cx) -> CmdResult {
    let o = parse_ext(cx, false)?;
    let key = cx.arg(1);
    let had_ttl = match cx.ks.lookup_read(key)? {
        None => {
            cx.out.null();
            return Ok(());
        }
        Some(e) => match &e.value {
            Value::Str(_) => e.expire_at != 0,
            _ => return Err(WRONGTYPE),
        },
    };
    let at = ext_expire_ms(cx, &o)?;
    // Reply with the value before it may be deleted.
    if let Some(Value::Str(s)) = cx.ks.lookup(key)?.map(|e| &e.value) {
        let mut t = itoa::Buffer::new();
        cx.out.bulk(s.as_bytes(&mut t));
    }
    let absolute = matches!(o.kind, Some(ExpKind::ExAt | ExpKind::PxAt));
    match at {
        Some(at) if absolute && at <= crate::server::now_ms() => {
            cx.ks.remove(key)?;
            cx.ks.notify(notify::GENERIC, "del", key);
        }
        Some(at) => {
            cx.ks.set_expire(key, at)?;
            cx.ks.modified(key);
            cx.ks.notify(notify::GENERIC, "expire", key);
        }
        None if o.persist && had_ttl => {
            cx.ks.set_expire(key, 0)?;
            cx.ks.modified(key);
            cx.ks.notify(notify::GENERIC, "persist", key);
        }
        None => {}
    }
    Ok(())
}

fn setnx(cx: &mut Cx) -> CmdResult {
    let key = cx.arg(1);
    if cx.ks.exists(key)? {
        cx.out.int(0);
    } else {
        cx.ks.insert(key, Value::str(cx.arg(2)), 0)?;
        cx.ks.notify(notify::STRING, "set", key);
        cx.out.int(1);
    }
    Ok(())
}

fn setex_generic(cx: &mut Cx, unit: i64) -> CmdResult {
    let at = expire_arg(cx, cx.arg(2), unit, false)?;
    cx.ks.insert(cx.arg(1), Value::str(cx.arg(3)), at)?;
    cx.ks.notify(notify::STRING, "set", cx.arg(1));
    cx.ks.notify(notify::GENERIC, "expire", cx.arg(1));
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
    cx.ks.notify(notify::STRING, "set", key);
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
        cx.ks.notify(notify::GENERIC, "del", key);
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
    if cx.argc().is_multiple_of(2) {
        return Err(cx.arity_error());
    }
    for i in (1..cx.argc()).step_by(2) {
        cx.ks.insert(cx.arg(i), Value::str(cx.arg(i + 1)), 0)?;
        cx.ks.notify(notify::STRING, "set", cx.arg(i));
    }
    cx.out.ok();
    Ok(())
}

fn msetnx(cx: &mut Cx) -> CmdResult {
    if cx.argc().is_multiple_of(2) {
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
        cx.ks.notify(notify::STRING, "set", cx.arg(i));
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
        Some(e) => {
            e.value = Value::Str(StrValue::Int(new));
            cx.ks.modified(key);
        }
        None => cx.ks.insert(key, Value::Str(StrValue::Int(new)), 0)?,
    }
    cx.ks.notify(notify::STRING, "incrby", key);
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
    let max = max_bulk_len(cx);
    let len = match cx.ks.string(key)? {
        Some(s) => {
            check_len(max, s.len() as u64, add.len() as u64)?;
            let v = s.make_raw();
            v.extend_from_slice(add);
            let n = v.len();
            cx.ks.modified(key);
            n
        }
        None => {
            cx.ks.insert(key, Value::str(add), 0)?;
            add.len()
        }
    };
    cx.ks.notify(notify::STRING, "append", key);
    cx.out.int(len as i64);
    Ok(())
}

/// Redis's 512 MB string limit (`proto-max-bulk-len` applies to writes).
pub fn check_string_size(len: usize) -> CmdResult {
    check_len(512 * 1024 * 1024, len as u64, 0)
}

/// The configured `proto-max-bulk-len`: the largest string a write may produce.
pub fn max_bulk_len(cx: &Cx) -> u64 {
    cx.srv.config.read().proto_max_bulk_len
}

/// Refuse a string of `size + append` bytes above `max` (Redis's `checkStringLength`).
pub fn check_len(max: u64, size: u64, append: u64) -> CmdResult {
    match size.checked_add(append) {
        Some(t) if t <= max => Ok(()),
        _ => Err(CmdError::err("string exceeds maximum allowed size (proto-max-bulk-len)")),
    }
}

fn strlen(cx: &mut Cx) -> CmdResult {
    let n = match cx.ks.lookup_read(cx.arg(1))? {
        None => 0,
        Some(e) => match &e.value {
            Value::Str(s) => s.len(),
            _ => return Err(WRONGTYPE),
        },
    };
    cx.out.int(n as i64);
    Ok(())
}

fn getrange(cx: &mut Cx) -> CmdResult {
    let start = cx.int_arg(2)?;
    let end = cx.int_arg(3)?;
    let key = cx.arg(1);
    let s = match cx.ks.lookup_read(key)? {
        None => {
            cx.out.bulk(b"");
            return Ok(());
        }
        Some(e) => match &e.value {
            Value::Str(s) => s,
            _ => return Err(WRONGTYPE),
        },
    };
    let mut t = itoa::Buffer::new();
    let b = s.as_bytes(&mut t);
    match clamp_range(start, end, b.len() as i64) {
        Some((s, e)) => cx.out.bulk(&b[s as usize..=e as usize]),
        None => cx.out.bulk(b""),
    }
    Ok(())
}

/// GETRANGE's index rules: negative indexes count from the end, the range
/// is clamped to the string; None for an empty result.
fn clamp_range(mut start: i64, mut end: i64, len: i64) -> Option<(i64, i64)> {
    if start < 0 && end < 0 && start > end {
        return None;
    }
    if start < 0 {
        start = start.saturating_add(len);
    }
    if end < 0 {
        end = end.saturating_add(len);
    }
    start = start.max(0);
    end = end.max(0);
    if end >= len {
        end = len - 1;
    }
    if start > end || len == 0 {
        None
    } else {
        Some((start, end))
    }
}

fn setrange(cx: &mut Cx) -> CmdResult {
    let offset = cx.int_arg(2)?;
    if offset < 0 {
        return Err(CmdError::err("offset is out of range"));
    }
    let key = cx.arg(1);
    let val = cx.arg(3);
    let max = max_bulk_len(cx);
    let offset_u = offset as u64;
    let len = match cx.ks.string(key)? {
        None => {
            if val.is_empty() {
                cx.out.int(0);
                return Ok(());
            }
            check_len(max, offset_u, val.len() as u64)?;
            let total = offset as usize + val.len();
            let mut v = vec![0u8; total];
            v[offset as usize..].copy_from_slice(val);
            cx.ks.insert(key, Value::Str(StrValue::Raw(v)), 0)?;
            cx.ks.notify(notify::STRING, "setrange", key);
            total
        }
        Some(s) => {
            if val.is_empty() {
                cx.out.int(s.len() as i64);
                return Ok(());
            }
            check_len(max, offset_u, val.len() as u64)?;
            let v = s.make_raw();
            let total = offset as usize + val.len();
            if v.len() < total {
                v.resize(total, 0);
            }
            v[offset as usize..total].copy_from_slice(val);
            let n = v.len();
            cx.ks.modified(key);
            cx.ks.notify(notify::STRING, "setrange", key);
            n
        }
    };
    cx.out.int(len as i64);
    Ok(())
}

/// A freshly created string object that Redis never integer-encodes
/// (`createStringObject`): embstr when short, raw otherwise.
fn plain_string(b: Vec<u8>) -> StrValue {
    if b.len() <= crate::keyspace::value::EMBSTR_MAX {
        StrValue::Emb(crate::keyspace::smallbytes::SmallBytes::new(&b))
    } else {
        StrValue::Raw(b)
    }
}

fn incrbyfloat(cx: &mut Cx) -> CmdResult {
    let key = cx.arg(1);
    let by = cx.arg(2);
    let res = match cx.ks.lookup(key)? {
        None => crate::ldouble::incr(None, by),
        Some(e) => match &e.value {
            Value::Str(s) => {
                let mut t = itoa::Buffer::new();
                crate::ldouble::incr(Some(s.as_bytes(&mut t)), by)
            }
            _ => return Err(WRONGTYPE),
        },
    };
    let new = match res {
        Ok(v) => v,
        Err(crate::ldouble::LdError::NanOrInf) => return Err(CmdError::err("increment would produce NaN or Infinity")),
        Err(_) => return Err(super::NOT_FLOAT),
    };
    cx.out.bulk(&new);
    let value = Value::Str(plain_string(new));
    match cx.ks.lookup(key)? {
        Some(e) => {
            e.value = value;
            cx.ks.modified(key);
        }
        None => cx.ks.insert(key, value, 0)?,
    }
    cx.ks.notify(notify::STRING, "incrbyfloat", key);
    Ok(())
}

/// The bytes of the string at `key` for LCS ("" when missing).
fn lcs_operand(cx: &mut Cx, key: &[u8]) -> Result<Vec<u8>, CmdError> {
    match cx.ks.lookup(key)? {
        None => Ok(Vec::new()),
        Some(e) => match &e.value {
            Value::Str(s) => Ok(s.to_vec()),
            _ => Err(CmdError::err("The specified keys must contain string values")),
        },
    }
}

fn lcs(cx: &mut Cx) -> CmdResult {
    let (ka, kb) = (cx.arg(1), cx.arg(2));
    // Redis looks both keys up before checking either type.
    let ta = cx.ks.lookup_read(ka)?.map(|e| matches!(e.value, Value::Str(_)));
    let tb = cx.ks.lookup_read(kb)?.map(|e| matches!(e.value, Value::Str(_)));
    if ta == Some(false) || tb == Some(false) {
        return Err(CmdError::err("The specified keys must contain string values"));
    }
    let a = lcs_operand(cx, ka)?;
    let b = lcs_operand(cx, kb)?;
    let (mut getlen, mut getidx, mut withmatchlen) = (false, false, false);
    let mut minmatchlen: i64 = 0;
    let mut j = 3;
    while j < cx.argc() {
        let opt = cx.arg(j);
        let more = j + 1 < cx.argc();
        if eq_ic(opt, b"IDX") {
            getidx = true;
        } else if eq_ic(opt, b"LEN") {
            getlen = true;
        } else if eq_ic(opt, b"WITHMATCHLEN") {
            withmatchlen = true;
        } else if eq_ic(opt, b"MINMATCHLEN") && more {
            minmatchlen = cx.int_arg(j + 1)?.max(0);
            j += 1;
        } else {
            return Err(SYNTAX);
        }
        j += 1;
    }
    if getlen && getidx {
        return Err(CmdError::err("If you want both the length and indexes, please just use IDX."));
    }
    if a.len() as u64 >= u32::MAX as u64 - 1 || b.len() as u64 >= u32::MAX as u64 - 1 {
        return Err(CmdError::err("String too long for LCS"));
    }
    let (alen, blen) = (a.len(), b.len());
    let cells = (alen as u64 + 1) * (blen as u64 + 1);
    if cells.saturating_mul(4) > max_bulk_len(cx) {
        return Err(CmdError::err("Insufficient memory, transient memory for LCS exceeds proto-max-bulk-len"));
    }
    let w = blen + 1;
    let mut t = vec![0u32; cells as usize];
    for i in 1..=alen {
        for jj in 1..=blen {
            t[i * w + jj] = if a[i - 1] == b[jj - 1] {
                t[(i - 1) * w + jj - 1] + 1
            } else {
                t[(i - 1) * w + jj].max(t[i * w + jj - 1])
            };
        }
    }
    let total = t[alen * w + blen];
    if getlen && !getidx {
        cx.out.int(total as i64);
        return Ok(());
    }
    // Walk back from the end, collecting the LCS and the matching ranges.
    let mut result = vec![0u8; total as usize];
    let mut idx = total as usize;
    let mut ranges: Vec<[u32; 4]> = Vec::new();
    let (mut i, mut jj) = (alen, blen);
    let none = alen as u32;
    let (mut as_, mut ae, mut bs, mut be) = (none, 0u32, 0u32, 0u32);
    while i > 0 && jj > 0 {
        let mut emit = false;
        if a[i - 1] == b[jj - 1] {
            result[idx - 1] = a[i - 1];
            if as_ == none {
                as_ = (i - 1) as u32;
                ae = as_;
                bs = (jj - 1) as u32;
                be = bs;
            } else if as_ == i as u32 && bs == jj as u32 {
                as_ -= 1;
                bs -= 1;
            } else {
                emit = true;
            }
            if as_ == 0 || bs == 0 {
                emit = true;
            }
            idx -= 1;
            i -= 1;
            jj -= 1;
        } else {
            let l1 = t[(i - 1) * w + jj];
            let l2 = t[i * w + jj - 1];
            if l1 > l2 {
                i -= 1;
            } else {
                jj -= 1;
            }
            if as_ != none {
                emit = true;
            }
        }
        if emit {
            let mlen = ae.wrapping_sub(as_).wrapping_add(1);
            if minmatchlen == 0 || mlen as i64 >= minmatchlen {
                ranges.push([as_, ae, bs, be]);
            }
            as_ = none;
        }
    }
    if !getidx {
        cx.out.bulk(&result);
        return Ok(());
    }
    cx.out.map(2);
    cx.out.bulk(b"matches");
    cx.out.array(ranges.len());
    for r in &ranges {
        cx.out.array(if withmatchlen { 3 } else { 2 });
        cx.out.array(2);
        cx.out.int(r[0] as i64);
        cx.out.int(r[1] as i64);
        cx.out.array(2);
        cx.out.int(r[2] as i64);
        cx.out.int(r[3] as i64);
        if withmatchlen {
            cx.out.int(r[1] as i64 - r[0] as i64 + 1);
        }
    }
    cx.out.bulk(b"len");
    cx.out.int(total as i64);
    Ok(())
}
