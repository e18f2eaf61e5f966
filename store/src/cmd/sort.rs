//! SORT and SORT_RO (Redis 7.0 `sortCommandGeneric`).
//!
//! The collection types are reached only through the small accessor
//! functions at the bottom of this file, so a change of their internal
//! representation only needs those adapted.

use super::{eq_ic, parse_int, CmdError, CmdImpl, CmdResult, Cx, Ks, Lock, SYNTAX, WRONGTYPE};
use crate::keyspace::smallbytes::SmallBytes;
use crate::keyspace::Value;
use crate::types::{hash::Hash, list::List, set::Set, zset::ZSet};
use std::cmp::Ordering;

// BY/GET patterns touch keys the key specs don't name: lock everything.
pub static COMMANDS: &[CmdImpl] = &[
    CmdImpl { name: "sort", handler: sort, lock: Lock::All },
    CmdImpl { name: "sort_ro", handler: sort_ro, lock: Lock::All },
];

fn sort(cx: &mut Cx) -> CmdResult {
    sort_generic(cx, false)
}

fn sort_ro(cx: &mut Cx) -> CmdResult {
    sort_generic(cx, true)
}

/// One element being sorted.
struct Item {
    obj: Vec<u8>,
    score: f64,
    /// ALPHA with BY: the looked-up value (None when missing).
    cmp: Option<Vec<u8>>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    List,
    Set,
    ZSet,
}

fn sort_generic(cx: &mut Cx, readonly: bool) -> CmdResult {
    let from_script = crate::script::is_script_client(cx.srv, cx.client);
    let mut desc = false;
    let mut alpha = false;
    let mut limit_start: i64 = 0;
    let mut limit_count: i64 = -1;
    let mut store: Option<&[u8]> = None;
    let mut sortby: Option<&[u8]> = None;
    let mut dontsort = false;
    let mut gets: Vec<&[u8]> = Vec::new();
    let mut j = 2;
    while j < cx.argc() {
        let left = cx.argc() - j - 1;
        let a = cx.arg(j);
        if eq_ic(a, b"ASC") {
            desc = false;
        } else if eq_ic(a, b"DESC") {
            desc = true;
        } else if eq_ic(a, b"ALPHA") {
            alpha = true;
        } else if eq_ic(a, b"LIMIT") && left >= 2 {
            limit_start = parse_int(cx.arg(j + 1))?;
            limit_count = parse_int(cx.arg(j + 2))?;
            j += 2;
        } else if !readonly && eq_ic(a, b"STORE") && left >= 1 {
            store = Some(cx.arg(j + 1));
            j += 1;
        } else if eq_ic(a, b"BY") && left >= 1 {
            let p = cx.arg(j + 1);
            sortby = Some(p);
            // A pattern without '*' is constant: nothing to sort by. (Like
            // Redis, a later BY with a '*' does not undo this.)
            if !c_str(p).contains(&b'*') {
                dontsort = true;
            } else if !full_key_access(cx) {
                return Err(CmdError::err("BY option of SORT denied due to insufficient ACL permissions."));
            }
            j += 1;
        } else if eq_ic(a, b"GET") && left >= 1 {
            if !full_key_access(cx) {
                return Err(CmdError::err("GET option of SORT denied due to insufficient ACL permissions."));
            }
            gets.push(cx.arg(j + 1));
            j += 1;
        } else {
            return Err(SYNTAX);
        }
        j += 1;
    }

    // Load the elements in the collection's natural order.
    let key = cx.arg(1);
    let (kind, mut elems): (Kind, Vec<Vec<u8>>) = match cx.ks.lookup_read(key)? {
        None => (Kind::List, Vec::new()),
        Some(e) => match &mut e.value {
            Value::List(l) => (Kind::List, list_elements(l)),
            Value::Set(s) => (Kind::Set, set_elements(s)),
            Value::ZSet(z) => {
                // Redis 7.0 converts the sorted set to a skiplist here.
                zset_force_skiplist(z);
                (Kind::ZSet, zset_elements_by_rank(z))
            }
            _ => return Err(WRONGTYPE),
        },
    };

    // Sets have no order of their own: when storing, sort them so the result
    // is deterministic (Redis does the same for STORE and scripts).
    if dontsort && kind == Kind::Set && (store.is_some() || from_script) {
        dontsort = false;
        alpha = true;
        sortby = None;
    }

    let len = elems.len() as i64;
    let mut start = limit_start.max(0);
    let mut end = if limit_count < 0 { len - 1 } else { start.saturating_add(limit_count) - 1 };
    if start >= len {
        start = len - 1;
        end = len - 2;
    }
    if end >= len {
        end = len - 1;
    }

    // Lists and sorted sets keep their own order when not sorting; DESC then
    // walks them backwards and LIMIT picks the range directly.
    if dontsort && kind != Kind::Set {
        if desc {
            elems.reverse();
        }
        if end >= start {
            elems.truncate((end + 1) as usize);
            elems.drain(..start as usize);
        } else {
            elems.clear();
        }
        end -= start;
        start = 0;
    }

    let mut items: Vec<Item> = elems.into_iter().map(|obj| Item { obj, score: 0.0, cmp: None }).collect();
    let mut conversion_error = false;
    if !dontsort {
        for it in items.iter_mut() {
            let byval = match sortby {
                Some(p) => match lookup_by_pattern(&mut cx.ks, p, &it.obj)? {
                    Some(v) => v,
                    None => continue,
                },
                None => {
                    if !alpha {
                        match sort_strtod(&it.obj) {
                            Some(s) => it.score = s,
                            None => conversion_error = true,
                        }
                    }
                    continue;
                }
            };
            if alpha {
                it.cmp = Some(byval);
            } else {
                match sort_strtod(&byval) {
                    Some(s) => it.score = s,
                    None => conversion_error = true,
                }
            }
        }
        let bypattern = sortby.is_some();
        let storing = store.is_some();
        let mut cmp = |a: &Item, b: &Item| {
            let c = compare(a, b, alpha, bypattern, storing);
            if desc {
                c.reverse()
            } else {
                c
            }
        };
        if bypattern && (start != 0 || end != len - 1) {
            // Redis sorts only the LIMIT window with its partial quicksort;
            // equal BY values then come out in that algorithm's order.
            if items.len() > 1 {
                crate::pqsort::partial_qsort(&mut items, start.max(0) as usize, end.max(-1), &mut cmp);
            }
        } else {
            // glibc's qsort (merge sort) is stable, like sort_by.
            items.sort_by(cmp);
        }
    }

    if conversion_error {
        return Err(CmdError::err("One or more scores can't be converted into double"));
    }

    // The output range [start, end] (empty when end < start).
    let range: &[Item] = if end >= start && start >= 0 && (start as usize) < items.len() {
        let last = (end as usize).min(items.len() - 1);
        &items[start as usize..=last]
    } else {
        &[]
    };

    match store {
        None => {
            // Resolve the GET patterns first (they need the keyspace).
            let mut out: Vec<Option<Vec<u8>>> = Vec::new();
            for it in range {
                if gets.is_empty() {
                    out.push(Some(it.obj.clone()));
                }
                for g in &gets {
                    out.push(lookup_by_pattern(&mut cx.ks, g, &it.obj)?);
                }
            }
            cx.out.array(out.len());
            for v in &out {
                match v {
                    Some(b) => cx.out.bulk(b),
                    None => cx.out.null(),
                }
            }
        }
        Some(dest) => {
            let mut result: Vec<Vec<u8>> = Vec::new();
            for it in range {
                if gets.is_empty() {
                    result.push(it.obj.clone());
                }
                for g in &gets {
                    result.push(lookup_by_pattern(&mut cx.ks, g, &it.obj)?.unwrap_or_default());
                }
            }
            let n = result.len();
            if n > 0 {
                cx.ks.insert(dest, make_list(result), 0)?;
                cx.ks.notify(crate::notify::LIST, "sortstore", dest);
                // The STORE key has no key spec dispatch can see: signal it
                // for clients blocked on it (BLPOP & co).
                if cx.srv.blocking.any() {
                    cx.client.ready_keys.push((cx.ks.db, bytes::Bytes::copy_from_slice(dest)));
                }
            } else {
                cx.ks.delete_unchecked(dest)?;
            }
            cx.out.int(n as i64);
        }
    }
    Ok(())
}

/// `sortCompare`.
fn compare(a: &Item, b: &Item, alpha: bool, bypattern: bool, storing: bool) -> Ordering {
    if !alpha {
        match a.score.partial_cmp(&b.score) {
            Some(Ordering::Equal) | None => a.obj.cmp(&b.obj),
            Some(o) => o,
        }
    } else if bypattern {
        match (&a.cmp, &b.cmp) {
            (None, None) => Ordering::Equal,
            (None, Some(_)) => Ordering::Less,
            (Some(_), None) => Ordering::Greater,
            (Some(x), Some(y)) => {
                if storing {
                    x.cmp(y)
                } else {
                    collate(x, y)
                }
            }
        }
    } else if storing {
        a.obj.cmp(&b.obj)
    } else {
        collate(&a.obj, &b.obj)
    }
}

/// `strcoll` as Redis calls it: on C strings (up to the first NUL). Under
/// the C / C.UTF-8 locales that is byte order.
fn collate(a: &[u8], b: &[u8]) -> Ordering {
    c_str(a).cmp(c_str(b))
}

/// The bytes up to the first NUL (what C string functions see).
fn c_str(b: &[u8]) -> &[u8] {
    match b.iter().position(|&c| c == 0) {
        Some(p) => &b[..p],
        None => b,
    }
}

/// SORT's number conversion: `strtod` must consume the whole C string,
/// must not overflow/underflow (ERANGE) and must not produce NaN. Leading
/// whitespace is allowed and the empty string is 0, as in Redis.
fn sort_strtod(b: &[u8]) -> Option<f64> {
    let s = c_str(b);
    if s.is_empty() {
        return Some(0.0);
    }
    let mut buf = Vec::with_capacity(s.len() + 1);
    buf.extend_from_slice(s);
    buf.push(0);
    let mut end: *mut libc::c_char = std::ptr::null_mut();
    // SAFETY: buf is NUL-terminated and outlives the call; errno is
    // thread-local.
    let (v, erange) = unsafe {
        *errno_ptr() = 0;
        let v = libc::strtod(buf.as_ptr() as *const libc::c_char, &mut end);
        (v, *errno_ptr() == libc::ERANGE)
    };
    let consumed = end as usize - buf.as_ptr() as usize;
    if consumed != s.len() || erange || v.is_nan() {
        return None;
    }
    Some(v)
}

/// This thread's `errno`.
#[cfg(any(target_os = "linux", target_os = "android"))]
fn errno_ptr() -> *mut libc::c_int {
    // SAFETY: returns the calling thread's errno location; always valid.
    unsafe { libc::__errno_location() }
}

#[cfg(any(target_os = "macos", target_os = "ios", target_os = "freebsd"))]
fn errno_ptr() -> *mut libc::c_int {
    // SAFETY: returns the calling thread's errno location; always valid.
    unsafe { libc::__error() }
}

/// `lookupKeyByPattern`: substitute the first '*' of `pattern` with
/// `subst` and fetch that string key, or a hash field with `->field`.
/// `#` alone yields the element itself.
fn lookup_by_pattern(ks: &mut Ks, pattern: &[u8], subst: &[u8]) -> Result<Option<Vec<u8>>, CmdError> {
    if pattern.first() == Some(&b'#') && (pattern.len() == 1 || pattern[1] == 0) {
        return Ok(Some(subst.to_vec()));
    }
    let cpat = c_str(pattern);
    let Some(star) = cpat.iter().position(|&c| c == b'*') else {
        return Ok(None);
    };
    // A "->" after the '*' followed by at least one character names a field.
    let after = &cpat[star + 1..];
    let arrow = after.windows(2).position(|w| w == b"->").filter(|&f| f + 2 < after.len());
    let (postfix, field) = match arrow {
        Some(f) => {
            let fpos = star + 1 + f;
            (&pattern[star + 1..fpos], Some(&pattern[fpos + 2..]))
        }
        None => (&pattern[star + 1..], None),
    };
    let mut key = Vec::with_capacity(star + subst.len() + postfix.len());
    key.extend_from_slice(&pattern[..star]);
    key.extend_from_slice(subst);
    key.extend_from_slice(postfix);
    let Some(e) = ks.lookup_read(&key)? else {
        return Ok(None);
    };
    Ok(match (&e.value, field) {
        (Value::Hash(h), Some(f)) => hash_get(h, f),
        (Value::Str(s), None) => Some(s.to_vec()),
        _ => None,
    })
}

// ---- collection accessors (adapt these when the types change) ----

/// Elements of a list, head to tail.
fn list_elements(l: &List) -> Vec<Vec<u8>> {
    l.items.iter().map(|e| e.to_vec()).collect()
}

/// Members of a set, in the set's iteration order.
fn set_elements(s: &Set) -> Vec<Vec<u8>> {
    s.members.iter().map(|e| e.to_vec()).collect()
}

/// Members of a sorted set by rank: ascending (score, member).
fn zset_elements_by_rank(z: &ZSet) -> Vec<Vec<u8>> {
    let mut v: Vec<(f64, &SmallBytes)> = z.scores.iter().map(|(m, s)| (*s, m)).collect();
    v.sort_by(|a, b| a.0.partial_cmp(&b.0).unwrap_or(Ordering::Equal).then_with(|| a.1.cmp(b.1)));
    v.into_iter().map(|(_, m)| m.to_vec()).collect()
}

/// Switch a sorted set to the `skiplist` encoding (SORT does, in 7.0).
fn zset_force_skiplist(z: &mut ZSet) {
    z.big = true;
}

/// The value of a hash field.
fn hash_get(h: &Hash, field: &[u8]) -> Option<Vec<u8>> {
    h.get(field).map(|v| v.to_vec())
}

/// A list value holding `items` in order (SORT ... STORE).
fn make_list(items: Vec<Vec<u8>>) -> Value {
    let mut l = List::default();
    l.items.extend(items.into_iter().map(SmallBytes::from));
    Value::List(Box::new(l))
}

/// BY/GET patterns read keys no key spec names: Redis allows them only to
/// users who may read every key.
fn full_key_access(cx: &Cx) -> bool {
    crate::acl::can_read_any_key(cx.srv, cx.client, cx.cmd.meta, cx.args)
}
