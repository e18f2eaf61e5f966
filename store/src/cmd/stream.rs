//! Stream commands: XADD, XRANGE, XREVRANGE, XLEN, XDEL, XTRIM, XREAD,
//! XREADGROUP, XGROUP, XACK, XPENDING, XCLAIM, XAUTOCLAIM, XINFO, XSETID.
//!
//! Semantics, replies and error texts follow Redis 7.0 `t_stream.c`.
//! Blocking XREAD/XREADGROUP is not implemented yet: with BLOCK and no
//! data the reply is the null array Redis sends on timeout. The read logic
//! lives in [`xread_try`] so a blocking retry can call it again.

use super::{eq_ic, CmdError, CmdImpl, CmdResult, Cx, Lock, NO_KEY, SYNTAX, WRONGTYPE};
use crate::keyspace::Value;
use crate::notify;
use crate::server::Tunables;
use crate::types::stream::{AddError, EntryRef, Group, Nack, Stream, StreamId, Trim, TrimArgs, INVALID_ENTRIES_READ};
use ferrite_resp::ReplyBuf;

pub static COMMANDS: &[CmdImpl] = &[
    CmdImpl { name: "xadd", handler: xadd, lock: Lock::Keys },
    CmdImpl { name: "xrange", handler: xrange, lock: Lock::Keys },
    CmdImpl { name: "xrevrange", handler: xrevrange, lock: Lock::Keys },
    CmdImpl { name: "xlen", handler: xlen, lock: Lock::Keys },
    CmdImpl { name: "xdel", handler: xdel, lock: Lock::Keys },
    CmdImpl { name: "xtrim", handler: xtrim, lock: Lock::Keys },
    CmdImpl { name: "xread", handler: xread, lock: Lock::Keys },
    CmdImpl { name: "xreadgroup", handler: xreadgroup, lock: Lock::Keys },
    CmdImpl { name: "xgroup", handler: xgroup, lock: Lock::Keys },
    CmdImpl { name: "xack", handler: xack, lock: Lock::Keys },
    CmdImpl { name: "xpending", handler: xpending, lock: Lock::Keys },
    CmdImpl { name: "xclaim", handler: xclaim, lock: Lock::Keys },
    CmdImpl { name: "xautoclaim", handler: xautoclaim, lock: Lock::Keys },
    CmdImpl { name: "xinfo", handler: xinfo, lock: Lock::Keys },
    CmdImpl { name: "xsetid", handler: xsetid, lock: Lock::Keys },
];

const INVALID_ID: CmdError = CmdError::st("ERR Invalid stream ID specified as stream command argument");

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

/// Bytes up to the first NUL, as C string functions see them.
fn cstr(b: &[u8]) -> &[u8] {
    match b.iter().position(|&c| c == 0) {
        Some(p) => &b[..p],
        None => b,
    }
}

fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(cstr(b)).into_owned()
}

/// C `strtoull(s, &end, 10)` that must consume the whole string.
fn strtoull_full(s: &[u8]) -> Option<u64> {
    let mut i = 0;
    while i < s.len() && matches!(s[i], b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r') {
        i += 1;
    }
    let mut neg = false;
    if i < s.len() && (s[i] == b'+' || s[i] == b'-') {
        neg = s[i] == b'-';
        i += 1;
    }
    let start = i;
    let mut v: u64 = 0;
    while i < s.len() && s[i].is_ascii_digit() {
        v = v.checked_mul(10)?.checked_add((s[i] - b'0') as u64)?;
        i += 1;
    }
    if i == start || i != s.len() {
        return None;
    }
    Some(if neg { v.wrapping_neg() } else { v })
}

/// Redis's `string2ull`.
fn string2ull(s: &[u8]) -> Option<u64> {
    if let Some(v) = ferrite_resp::num::parse_i64(s) {
        return if v < 0 { None } else { Some(v as u64) };
    }
    if s.is_empty() {
        return None;
    }
    strtoull_full(s)
}

/// `streamGenericParseIDOrReply`. Returns the ID and whether the sequence
/// was given (false for `ms-*`, accepted only when `allow_seq_star`).
fn parse_id_generic(a: &[u8], missing_seq: u64, strict: bool, allow_seq_star: bool) -> Option<(StreamId, bool)> {
    if a.len() > 127 {
        return None;
    }
    let s = cstr(a);
    if strict && (s == b"-" || s == b"+") {
        return None;
    }
    if s == b"-" {
        return Some((StreamId::MIN, true));
    }
    if s == b"+" {
        return Some((StreamId::MAX, true));
    }
    let (ms_part, seq_part) = match s.iter().position(|&c| c == b'-') {
        Some(p) => (&s[..p], Some(&s[p + 1..])),
        None => (s, None),
    };
    let ms = string2ull(ms_part)?;
    match seq_part {
        None => Some((StreamId::new(ms, missing_seq), true)),
        Some(b"*") if allow_seq_star => Some((StreamId::new(ms, 0), false)),
        Some(q) => Some((StreamId::new(ms, string2ull(q)?), true)),
    }
}

/// Strict parse (`-` and `+` rejected).
fn parse_strict(a: &[u8], missing_seq: u64) -> Result<StreamId, CmdError> {
    parse_id_generic(a, missing_seq, true, false).map(|x| x.0).ok_or(INVALID_ID)
}

/// Non-strict parse (`-` and `+` accepted).
fn parse_loose(a: &[u8], missing_seq: u64) -> Result<StreamId, CmdError> {
    parse_id_generic(a, missing_seq, false, false).map(|x| x.0).ok_or(INVALID_ID)
}

/// `streamParseIntervalIDOrReply`: returns (id, exclusive).
fn parse_interval(a: &[u8], missing_seq: u64) -> Result<(StreamId, bool), CmdError> {
    if a.len() > 1 && a[0] == b'(' {
        Ok((parse_strict(&a[1..], missing_seq)?, true))
    } else {
        Ok((parse_loose(a, missing_seq)?, false))
    }
}

/// Parse a range start (incomplete = seq 0), applying `(`.
fn parse_range_start(a: &[u8]) -> Result<StreamId, CmdError> {
    let (id, ex) = parse_interval(a, 0)?;
    if ex {
        id.incr().ok_or_else(|| CmdError::err("invalid start ID for the interval"))
    } else {
        Ok(id)
    }
}

/// Parse a range end (incomplete = max seq), applying `(`.
fn parse_range_end(a: &[u8]) -> Result<StreamId, CmdError> {
    let (id, ex) = parse_interval(a, u64::MAX)?;
    if ex {
        id.decr().ok_or_else(|| CmdError::err("invalid end ID for the interval"))
    } else {
        Ok(id)
    }
}

fn reply_id(out: &mut ReplyBuf, id: StreamId) {
    out.bulk(id.fmt().as_bytes());
}

fn reply_entry(out: &mut ReplyBuf, e: &EntryRef<'_>) {
    out.array(2);
    reply_id(out, e.id);
    out.array(e.fv_len());
    e.for_each_fv(|x| out.bulk(x));
}

/// Emit entries of `[start, end]` (count 0 = all); returns how many.
fn reply_range(out: &mut ReplyBuf, s: &Stream, start: StreamId, end: StreamId, count: usize, rev: bool) -> usize {
    let mut body = ReplyBuf { buf: bytes::BytesMut::new(), resp3: out.resp3 };
    let mut n = 0usize;
    s.range(start, end, rev, |e| {
        reply_entry(&mut body, e);
        n += 1;
        count == 0 || n < count
    });
    out.array(n);
    out.raw(&body.buf);
    n
}

fn subcommand_syntax_error(cx: &Cx) -> CmdError {
    let sub: String = String::from_utf8_lossy(cstr(cx.arg(1))).chars().take(128).collect();
    CmdError::err(format!(
        "unknown subcommand or wrong number of arguments for '{sub}'. Try {} HELP.",
        String::from_utf8_lossy(cx.arg(0)).to_ascii_uppercase()
    ))
}

fn reply_help(cx: &mut Cx, lines: &[&str]) {
    let cmd = String::from_utf8_lossy(cx.arg(0)).to_ascii_uppercase();
    cx.out.array(lines.len() + 3);
    cx.out.simple(format!("{cmd} <subcommand> [<arg> [value] [opt] ...]. Subcommands are:").as_bytes());
    for l in lines {
        cx.out.simple(l.as_bytes());
    }
    cx.out.simple(b"HELP");
    cx.out.simple(b"    Prints this help.");
}

/// Count a change that Redis does not signal to WATCH (consumer group
/// bookkeeping): only the dirty counter moves.
fn dirty(cx: &Cx) {
    cx.srv.stats.dirty.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
}

/// The stream at `key` for reading (counts hits/misses); WRONGTYPE for others.
fn stream_read<'c>(ks: &'c mut super::Ks<'_, '_>, key: &[u8]) -> Result<Option<&'c mut Stream>, CmdError> {
    match ks.lookup_read(key)? {
        None => Ok(None),
        Some(e) => match &mut e.value {
            Value::Stream(s) => Ok(Some(s)),
            _ => Err(WRONGTYPE),
        },
    }
}

// ---------------------------------------------------------------------------
// XADD / XTRIM
// ---------------------------------------------------------------------------

struct AddTrimArgs {
    id: StreamId,
    id_given: bool,
    seq_given: bool,
    no_mkstream: bool,
    trim: TrimArgs,
}

/// `streamParseAddOrTrimArgsOrReply`: returns the parsed args and the
/// position of the ID argument (XADD) / argc (XTRIM).
fn parse_add_trim(cx: &Cx, xadd: bool) -> Result<(AddTrimArgs, usize), CmdError> {
    let mut a = AddTrimArgs {
        id: StreamId::MIN,
        id_given: false,
        seq_given: true,
        no_mkstream: false,
        trim: TrimArgs { strategy: Trim::None, approx: false, limit: 0 },
    };
    let argc = cx.argc();
    let mut i = 2;
    let mut limit_given = false;
    let both = || CmdError::err("syntax error, MAXLEN and MINID options at the same time are not compatible");
    while i < argc {
        let moreargs = argc - 1 - i;
        let opt = cx.arg(i);
        if xadd && cstr(opt) == b"*" {
            break;
        } else if eq_ic(cstr(opt), b"maxlen") && moreargs > 0 {
            if a.trim.strategy != Trim::None {
                return Err(both());
            }
            a.trim.approx = false;
            let next = cstr(cx.arg(i + 1));
            if moreargs >= 2 && next == b"~" {
                a.trim.approx = true;
                i += 1;
            } else if moreargs >= 2 && next == b"=" {
                i += 1;
            }
            let v = cx.int_arg(i + 1)?;
            if v < 0 {
                return Err(CmdError::err("The MAXLEN argument must be >= 0."));
            }
            i += 1;
            a.trim.strategy = Trim::MaxLen(v as u64);
        } else if eq_ic(cstr(opt), b"minid") && moreargs > 0 {
            if a.trim.strategy != Trim::None {
                return Err(both());
            }
            a.trim.approx = false;
            let next = cstr(cx.arg(i + 1));
            if moreargs >= 2 && next == b"~" {
                a.trim.approx = true;
                i += 1;
            } else if moreargs >= 2 && next == b"=" {
                i += 1;
            }
            let id = parse_strict(cx.arg(i + 1), 0)?;
            i += 1;
            a.trim.strategy = Trim::MinId(id);
        } else if eq_ic(cstr(opt), b"limit") && moreargs > 0 {
            let v = cx.int_arg(i + 1)?;
            if v < 0 {
                return Err(CmdError::err("The LIMIT argument must be >= 0."));
            }
            a.trim.limit = v;
            limit_given = true;
            i += 1;
        } else if xadd && eq_ic(cstr(opt), b"nomkstream") {
            a.no_mkstream = true;
        } else if xadd {
            let (id, seq_given) = parse_id_generic(opt, 0, true, true).ok_or(INVALID_ID)?;
            a.id = id;
            a.seq_given = seq_given;
            a.id_given = true;
            break;
        } else {
            return Err(SYNTAX);
        }
        i += 1;
    }
    if a.trim.limit != 0 && a.trim.strategy == Trim::None {
        return Err(CmdError::err("syntax error, LIMIT cannot be used without specifying a trimming strategy"));
    }
    if !xadd && a.trim.strategy == Trim::None {
        return Err(CmdError::err("syntax error, XTRIM must be called with a trimming strategy"));
    }
    if limit_given {
        if !a.trim.approx {
            return Err(CmdError::err("syntax error, LIMIT cannot be used without the special ~ option"));
        }
    } else if a.trim.approx {
        // 100 nodes' worth, capped on both sides as Redis does.
        let per_node = Tunables::get(&cx.srv.tun.stream_node_max_entries) as i64;
        let limit = per_node.saturating_mul(100);
        a.trim.limit = if limit <= 0 { 10_000 } else { limit.min(1_000_000) };
    } else {
        a.trim.limit = 0;
    }
    Ok((a, i))
}

fn xadd(cx: &mut Cx) -> CmdResult {
    let (a, idpos) = parse_add_trim(cx, true)?;
    let field_pos = idpos + 1;
    let argc = cx.argc();
    if argc < field_pos + 2 || (argc - field_pos) % 2 == 1 {
        return Err(cx.arity_error());
    }
    if a.id_given && a.seq_given && a.id.is_zero() {
        return Err(CmdError::err("The ID specified in XADD must be greater than 0-0"));
    }
    let key = cx.arg(1);
    let now = cx.ks.now.max(0) as u64;
    let args = cx.args;
    if a.no_mkstream && cx.ks.stream(key)?.is_none() {
        cx.out.null();
        return Ok(());
    }
    let s = cx.ks.stream_or_create(key)?;
    if s.last_id == StreamId::MAX {
        return Err(CmdError::err("The stream has exhausted the last possible ID, unable to add more items"));
    }
    let use_id = a.id_given.then_some((a.id, a.seq_given));
    let fv: Vec<&[u8]> = args[field_pos..].iter().map(|b| &b[..]).collect();
    let max_entries = Tunables::get(&cx.srv.tun.stream_node_max_entries);
    let max_bytes = Tunables::get(&cx.srv.tun.stream_node_max_bytes);
    let res = s.next_id(use_id, now).and_then(|id| s.append(id, &fv, max_entries, max_bytes).map(|_| id));
    let id = match res {
        Ok(id) => id,
        Err(AddError::NotGreater) => {
            return Err(CmdError::err("The ID specified in XADD is equal or smaller than the target stream top item"))
        }
        Err(AddError::TooLarge) => return Err(CmdError::err("Elements are too large to be stored")),
    };
    reply_id(cx.out, id);
    let trimmed = s.trim(&a.trim);
    cx.ks.modified(key);
    cx.ks.notify(notify::STREAM, "xadd", key);
    if trimmed > 0 {
        cx.ks.notify(notify::STREAM, "xtrim", key);
    }
    Ok(())
}

fn xtrim(cx: &mut Cx) -> CmdResult {
    let (a, _) = parse_add_trim(cx, false)?;
    let key = cx.arg(1);
    let Some(s) = cx.ks.stream(key)? else {
        cx.out.int(0);
        return Ok(());
    };
    let n = s.trim(&a.trim);
    cx.out.int(n as i64);
    if n > 0 {
        cx.ks.modified(key);
        cx.ks.notify(notify::STREAM, "xtrim", key);
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// XRANGE / XREVRANGE / XLEN / XDEL
// ---------------------------------------------------------------------------

fn xrange_generic(cx: &mut Cx, rev: bool) -> CmdResult {
    let (start_arg, end_arg) = if rev { (cx.arg(3), cx.arg(2)) } else { (cx.arg(2), cx.arg(3)) };
    let start = parse_range_start(start_arg)?;
    let end = parse_range_end(end_arg)?;
    let mut count: i64 = -1;
    let mut j = 4;
    while j < cx.argc() {
        let additional = cx.argc() - j - 1;
        if eq_ic(cstr(cx.arg(j)), b"COUNT") && additional >= 1 {
            count = cx.int_arg(j + 1)?.max(0);
            j += 1;
        } else {
            return Err(SYNTAX);
        }
        j += 1;
    }
    let key = cx.arg(1);
    let Some(s) = stream_read(&mut cx.ks, key)? else {
        cx.out.array(0);
        return Ok(());
    };
    if count == 0 {
        cx.out.null_array();
    } else {
        let c = if count < 0 { 0 } else { usize::try_from(count).unwrap_or(usize::MAX) };
        reply_range(cx.out, s, start, end, c, rev);
    }
    Ok(())
}

fn xrange(cx: &mut Cx) -> CmdResult {
    xrange_generic(cx, false)
}

fn xrevrange(cx: &mut Cx) -> CmdResult {
    xrange_generic(cx, true)
}

fn xlen(cx: &mut Cx) -> CmdResult {
    let key = cx.arg(1);
    let n = stream_read(&mut cx.ks, key)?.map_or(0, |s| s.len());
    cx.out.int(n as i64);
    Ok(())
}

fn xdel(cx: &mut Cx) -> CmdResult {
    let key = cx.arg(1);
    let args = cx.args;
    let Some(s) = cx.ks.stream(key)? else {
        cx.out.int(0);
        return Ok(());
    };
    let mut ids = Vec::with_capacity(args.len() - 2);
    for a in &args[2..] {
        ids.push(parse_strict(a, 0)?);
    }
    let mut deleted = 0i64;
    let mut first_entry = false;
    for id in ids {
        if s.delete(id) {
            if id == s.first_id {
                first_entry = true;
            }
            if id > s.max_deleted_id {
                s.max_deleted_id = id;
            }
            deleted += 1;
        }
    }
    if deleted > 0 {
        if s.is_empty() {
            s.first_id = StreamId::MIN;
        } else if first_entry {
            s.first_id = s.edge_id(true).unwrap_or(StreamId::MAX);
        }
    }
    cx.out.int(deleted);
    if deleted > 0 {
        cx.ks.modified(key);
        cx.ks.notify(notify::STREAM, "xdel", key);
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// XREAD / XREADGROUP
// ---------------------------------------------------------------------------

/// Parsed XREAD/XREADGROUP arguments, IDs resolved (`$` to the stream's
/// last ID at parse time, `>` to the maximal ID).
///
/// For real blocking: when nothing was served and `block_ms` is set, park
/// the client on `keys` and call [`xread_try`] again when one of them
/// changes. Redis serves a client woken after blocking with at most 1000
/// entries per stream when no COUNT was given (`XREAD_BLOCKED_DEFAULT_COUNT`),
/// so set `count` to 1000 if it is 0 before retrying, and reply with the
/// null array on timeout. A `>` ID is re-resolved against the group's
/// last-delivered ID on every try; `$` was resolved once, at parse time, as
/// in Redis.
pub struct XReadArgs {
    /// 0 = no limit.
    pub count: usize,
    /// BLOCK timeout in ms (0 = forever), None without BLOCK.
    pub block_ms: Option<i64>,
    pub noack: bool,
    /// (group, consumer) for XREADGROUP.
    pub group: Option<(Vec<u8>, Vec<u8>)>,
    pub keys: Vec<Vec<u8>>,
    pub ids: Vec<StreamId>,
}

/// Is this the re-run that serves a blocked XREAD/XREADGROUP? Redis serves
/// the ready key without looking the keys up again (no hit/miss counts, no
/// "keymiss" events).
fn serving_blocked(cx: &Cx) -> bool {
    cx.client.handle.blocked.load(std::sync::atomic::Ordering::Relaxed)
}

/// Parse XREAD (`xreadgroup` false) or XREADGROUP arguments, with the
/// argument errors and key checks (WRONGTYPE, NOGROUP) Redis gives.
pub fn parse_xread(cx: &mut Cx, xreadgroup: bool) -> Result<XReadArgs, CmdError> {
    let argc = cx.argc();
    let mut count: i64 = 0;
    let mut block_ms = None;
    let mut noack = false;
    let mut group: Option<(Vec<u8>, Vec<u8>)> = None;
    let mut streams_arg = 0;
    let mut streams_count = 0;
    let mut i = 1;
    while i < argc {
        let moreargs = argc - i - 1;
        let o = cstr(cx.arg(i));
        if eq_ic(o, b"BLOCK") && moreargs > 0 {
            i += 1;
            let t =
                super::parse_int(cx.arg(i)).map_err(|_| CmdError::err("timeout is not an integer or out of range"))?;
            if t < 0 {
                return Err(CmdError::err("timeout is negative"));
            }
            block_ms = Some(t);
        } else if eq_ic(o, b"COUNT") && moreargs > 0 {
            i += 1;
            count = cx.int_arg(i)?.max(0);
        } else if eq_ic(o, b"STREAMS") && moreargs > 0 {
            streams_arg = i + 1;
            let n = argc - streams_arg;
            if !n.is_multiple_of(2) {
                return Err(CmdError::err(
                    "Unbalanced XREAD list of streams: for each stream key an ID or '$' must be specified.",
                ));
            }
            streams_count = n / 2;
            break;
        } else if eq_ic(o, b"GROUP") && moreargs >= 2 {
            if !xreadgroup {
                return Err(CmdError::err(
                    "The GROUP option is only supported by XREADGROUP. You called XREAD instead.",
                ));
            }
            group = Some((cx.arg(i + 1).to_vec(), cx.arg(i + 2).to_vec()));
            i += 2;
        } else if eq_ic(o, b"NOACK") {
            if !xreadgroup {
                return Err(CmdError::err(
                    "The NOACK option is only supported by XREADGROUP. You called XREAD instead.",
                ));
            }
            noack = true;
        } else {
            return Err(SYNTAX);
        }
        i += 1;
    }
    if streams_arg == 0 {
        return Err(SYNTAX);
    }
    if xreadgroup && group.is_none() {
        return Err(CmdError::err("Missing GROUP option for XREADGROUP"));
    }
    let mut keys = Vec::with_capacity(streams_count);
    let mut ids = Vec::with_capacity(streams_count);
    let serving = serving_blocked(cx);
    for k in 0..streams_count {
        let key = cx.arg(streams_arg + k);
        let ida = cx.arg(streams_arg + streams_count + k);
        let s = if serving { cx.ks.stream(key)?.map(|b| &mut **b) } else { stream_read(&mut cx.ks, key)? };
        if let Some((g, _)) = &group {
            if !s.as_ref().is_some_and(|s| s.groups.contains_key(g)) {
                return Err(CmdError::raw(format!(
                    "NOGROUP No such key '{}' or consumer group '{}' in XREADGROUP with GROUP option",
                    lossy(key),
                    lossy(g)
                )));
            }
        }
        let id = if cstr(ida) == b"$" {
            if xreadgroup {
                return Err(CmdError::err(
                    "The $ ID is meaningless in the context of XREADGROUP: you want to read the history of this consumer by specifying a proper ID, or use the > ID to get new messages. The $ ID would just return an empty result set.",
                ));
            }
            s.map_or(StreamId::MIN, |s| s.last_id)
        } else if cstr(ida) == b">" {
            if !xreadgroup {
                return Err(CmdError::err(
                    "The > ID can be specified only when calling XREADGROUP using the GROUP <group> <consumer> option.",
                ));
            }
            StreamId::MAX
        } else {
            parse_strict(ida, 0)?
        };
        keys.push(key.to_vec());
        ids.push(id);
    }
    Ok(XReadArgs { count: usize::try_from(count).unwrap_or(usize::MAX), block_ms, noack, group, keys, ids })
}

/// Serve an XREAD/XREADGROUP synchronously if any stream has data for it.
/// Writes the reply and returns true if it did; writes nothing and returns
/// false otherwise (the caller replies with the timeout null or blocks).
pub fn xread_try(cx: &mut Cx, a: &XReadArgs) -> Result<bool, CmdError> {
    let serving = serving_blocked(cx);
    let now = cx.ks.now;
    let resp3 = cx.out.resp3;
    let mut body = ReplyBuf { buf: bytes::BytesMut::new(), resp3 };
    let mut served = 0usize;
    let mut new_consumer_keys = Vec::new();
    for (i, key) in a.keys.iter().enumerate() {
        let e = if serving { cx.ks.lookup(key)? } else { cx.ks.lookup_read(key)? };
        let s = match e {
            None => continue,
            Some(e) => match &mut e.value {
                Value::Stream(s) => s,
                _ => return Err(WRONGTYPE),
            },
        };
        let mut gt = a.ids[i];
        let mut history = false;
        let serve = match &a.group {
            Some((g, _)) => {
                let Some(group) = s.groups.get(g) else {
                    return Err(CmdError::raw(format!(
                        "NOGROUP No such key '{}' or consumer group '{}' in XREADGROUP with GROUP option",
                        lossy(key),
                        lossy(g)
                    )));
                };
                if gt != StreamId::MAX {
                    history = true;
                    true
                } else if !s.is_empty() && s.last_valid_id() > group.last_id {
                    gt = group.last_id;
                    true
                } else {
                    false
                }
            }
            None => !s.is_empty() && s.last_valid_id() > gt,
        };
        if !serve {
            continue;
        }
        served += 1;
        // A start after the maximal ID serves nothing.
        let start = gt.incr();
        if !resp3 {
            body.array(2);
        }
        body.bulk(key);
        match &a.group {
            None => match start {
                Some(st) => {
                    reply_range(&mut body, s, st, StreamId::MAX, a.count, false);
                }
                None => body.array(0),
            },
            Some((g, c)) => {
                if serve_group(&mut body, s, g, c, start, a.count, a.noack, history, now) {
                    new_consumer_keys.push(key.clone());
                }
            }
        }
    }
    for key in &new_consumer_keys {
        cx.ks.notify(notify::STREAM, "xgroup-createconsumer", key);
    }
    if served == 0 {
        return Ok(false);
    }
    if resp3 {
        cx.out.map(served);
    } else {
        cx.out.array(served);
    }
    cx.out.raw(&body.buf);
    if a.group.is_some() {
        // Redis counts the group changes as dirty but signals no key.
        dirty(cx);
    }
    Ok(true)
}

/// Serve one stream to a consumer of a group (new entries, or its history).
#[allow(clippy::too_many_arguments)]
fn serve_group(
    out: &mut ReplyBuf,
    s: &mut Stream,
    gname: &[u8],
    cname: &[u8],
    start: Option<StreamId>,
    count: usize,
    noack: bool,
    history: bool,
    now: i64,
) -> bool {
    // Look up (refreshing seen-time) or create the consumer.
    let mut created = false;
    if let Some(g) = s.groups.get_mut(gname) {
        created = !g.consumers.contains_key(cname);
        g.consumers.entry(cname.to_vec()).or_default().seen_time = now;
    }
    if history {
        let ids: Vec<StreamId> = match (start, s.groups.get(gname).and_then(|g| g.consumers.get(cname))) {
            (Some(st), Some(c)) => {
                let it = c.pel.range(st..).copied();
                if count == 0 {
                    it.collect()
                } else {
                    it.take(count).collect()
                }
            }
            _ => Vec::new(),
        };
        out.array(ids.len());
        for id in ids {
            match s.get(id) {
                Some(e) => {
                    reply_entry(out, &e);
                    if let Some(n) = s.groups.get_mut(gname).and_then(|g| g.pel.get_mut(&id)) {
                        n.delivery_time = now;
                        n.delivery_count = n.delivery_count.wrapping_add(1);
                    }
                }
                None => {
                    out.array(2);
                    reply_id(out, id);
                    out.null_array();
                }
            }
        }
        return created;
    }
    let mut delivered = Vec::new();
    match start {
        Some(st) => {
            let mut n = 0usize;
            let mut body = ReplyBuf { buf: bytes::BytesMut::new(), resp3: out.resp3 };
            s.range(st, StreamId::MAX, false, |e| {
                reply_entry(&mut body, e);
                delivered.push(e.id);
                n += 1;
                count == 0 || n < count
            });
            out.array(n);
            out.raw(&body.buf);
        }
        None => out.array(0),
    }
    for id in delivered {
        let tomb = s.range_has_tombstones(id);
        let est = s.estimate_distance(id);
        let added = s.entries_added;
        let Some(g) = s.groups.get_mut(gname) else { return created };
        if id > g.last_id {
            if g.entries_read != INVALID_ENTRIES_READ && !tomb {
                g.entries_read += 1;
            } else if added > 0 {
                g.entries_read = est.unwrap_or(INVALID_ENTRIES_READ);
            }
            g.last_id = id;
        }
        if !noack {
            deliver_nack(g, id, cname, now);
        }
    }
    created
}

/// Create or reassign the PEL entry for `id` to consumer `cname`.
fn deliver_nack(g: &mut Group, id: StreamId, cname: &[u8], now: i64) {
    if let Some(n) = g.pel.get_mut(&id) {
        let old = n.consumer.replace(cname.to_vec());
        n.delivery_time = now;
        n.delivery_count = 1;
        if let Some(c) = old.and_then(|o| g.consumers.get_mut(&o)) {
            c.pel.remove(&id);
        }
    } else {
        g.pel.insert(id, Nack { delivery_time: now, delivery_count: 1, consumer: Some(cname.to_vec()) });
    }
    if let Some(c) = g.consumers.get_mut(cname) {
        c.pel.insert(id);
    }
}

fn xread_generic(cx: &mut Cx, xreadgroup: bool) -> CmdResult {
    let a = parse_xread(cx, xreadgroup)?;
    if xread_try(cx, &a)? {
        return Ok(());
    }
    let Some(ms) = a.block_ms else {
        cx.out.null_array();
        return Ok(());
    };
    let deadline = if ms == 0 {
        None
    } else {
        Some(cx.ks.now.checked_add(ms).ok_or_else(|| CmdError::err("timeout is out of range"))?)
    };
    // Re-run with the IDs resolved now (`$` means "after what exists when
    // blocking"), and at most 1000 entries per stream when no COUNT was
    // given, as Redis serves woken readers.
    let mut rerun: Vec<bytes::Bytes> = Vec::with_capacity(8 + 2 * a.keys.len());
    let b = |s: &[u8]| bytes::Bytes::copy_from_slice(s);
    rerun.push(b(if xreadgroup { b"XREADGROUP" } else { b"XREAD" }));
    if let Some((g, c)) = &a.group {
        rerun.extend([b(b"GROUP"), b(g), b(c)]);
    }
    let count = if a.count == 0 { 1000 } else { a.count };
    rerun.extend([b(b"COUNT"), b(count.to_string().as_bytes()), b(b"BLOCK"), b(ms.to_string().as_bytes())]);
    if a.noack {
        rerun.push(b(b"NOACK"));
    }
    rerun.push(b(b"STREAMS"));
    rerun.extend(a.keys.iter().map(|k| b(k)));
    for id in &a.ids {
        rerun.push(if *id == StreamId::MAX { b(b">") } else { b(id.fmt().as_bytes()) });
    }
    let keys = a.keys.iter().map(|k| b(k)).collect();
    cx.block_on_rerun(keys, deadline, rerun);
    Ok(())
}

fn xread(cx: &mut Cx) -> CmdResult {
    xread_generic(cx, false)
}

fn xreadgroup(cx: &mut Cx) -> CmdResult {
    xread_generic(cx, true)
}

// ---------------------------------------------------------------------------
// XGROUP / XSETID
// ---------------------------------------------------------------------------

fn nogroup_for_key(g: &[u8], key: &[u8]) -> CmdError {
    CmdError::raw(format!("NOGROUP No such consumer group '{}' for key name '{}'", lossy(g), lossy(key)))
}

fn xgroup(cx: &mut Cx) -> CmdResult {
    let opt = cstr(cx.arg(1)).to_vec();
    let argc = cx.argc();
    let mut mkstream = false;
    let mut entries_read = INVALID_ENTRIES_READ;
    let is = |name: &[u8]| eq_ic(&opt, name);
    if argc == 2 && is(b"HELP") {
        reply_help(
            cx,
            &[
                "CREATE <key> <groupname> <id|$> [option]",
                "    Create a new consumer group. Options are:",
                "    * MKSTREAM",
                "      Create the empty stream if it does not exist.",
                "    * ENTRIESREAD entries_read",
                "      Set the group's entries_read counter (internal use).",
                "CREATECONSUMER <key> <groupname> <consumer>",
                "    Create a new consumer in the specified group.",
                "DELCONSUMER <key> <groupname> <consumer>",
                "    Remove the specified consumer.",
                "DESTROY <key> <groupname>",
                "    Remove the specified group.",
                "SETID <key> <groupname> <id|$> [ENTRIESREAD entries_read]",
                "    Set the current group ID and entries_read counter.",
            ],
        );
        return Ok(());
    }
    if argc < 4 {
        return Err(subcommand_syntax_error(cx));
    }
    let create = is(b"CREATE");
    let setid = is(b"SETID");
    let mut i = 5;
    while i < argc {
        let a = cstr(cx.arg(i));
        if create && eq_ic(a, b"MKSTREAM") {
            mkstream = true;
            i += 1;
        } else if (create || setid) && eq_ic(a, b"ENTRIESREAD") && i + 1 < argc {
            entries_read = cx.int_arg(i + 1)?;
            if entries_read < 0 && entries_read != INVALID_ENTRIES_READ {
                return Err(CmdError::err("value for ENTRIESREAD must be positive or -1"));
            }
            i += 2;
        } else {
            return Err(subcommand_syntax_error(cx));
        }
    }
    let key = cx.arg(2);
    let gname = cx.arg(3);
    let exists = cx.ks.stream(key)?.is_some();
    if !mkstream {
        if !exists {
            return Err(CmdError::err(
                "The XGROUP subcommand requires the key to exist. Note that for CREATE you may want to use the MKSTREAM option to create an empty stream automatically.",
            ));
        }
        let has_group = cx.ks.stream(key)?.is_some_and(|s| s.groups.contains_key(gname));
        if !has_group && (setid || is(b"CREATECONSUMER") || is(b"DELCONSUMER")) {
            return Err(nogroup_for_key(gname, key));
        }
    }
    let now = cx.ks.now;
    if create && (5..=8).contains(&argc) {
        let ida = cx.arg(4);
        let id = if cstr(ida) == b"$" {
            cx.ks.stream(key)?.map_or(StreamId::MIN, |s| s.last_id)
        } else {
            parse_strict(ida, 0)?
        };
        let s = cx.ks.stream_or_create(key)?;
        if s.groups.contains_key(gname) {
            if !exists {
                dirty(cx);
            }
            return Err(CmdError::st("BUSYGROUP Consumer Group name already exists"));
        }
        s.groups.insert(gname.to_vec(), Group::new(id, entries_read));
        cx.out.ok();
        dirty(cx);
        cx.ks.notify(notify::STREAM, "xgroup-create", key);
    } else if setid && (argc == 5 || argc == 7) {
        let ida = cx.arg(4);
        let s = cx.ks.stream(key)?.ok_or(NO_KEY)?;
        let id = if cstr(ida) == b"$" { s.last_id } else { parse_loose(ida, 0)? };
        if let Some(g) = s.groups.get_mut(gname) {
            g.last_id = id;
            g.entries_read = entries_read;
        }
        cx.out.ok();
        dirty(cx);
        cx.ks.notify(notify::STREAM, "xgroup-setid", key);
    } else if is(b"DESTROY") && argc == 4 {
        let s = cx.ks.stream(key)?.ok_or(NO_KEY)?;
        if s.groups.remove(gname).is_some() {
            cx.out.int(1);
            dirty(cx);
            cx.ks.notify(notify::STREAM, "xgroup-destroy", key);
        } else {
            cx.out.int(0);
        }
    } else if is(b"CREATECONSUMER") && argc == 5 {
        let cname = cx.arg(4);
        let s = cx.ks.stream(key)?.ok_or(NO_KEY)?;
        let g = s.groups.get_mut(gname).ok_or_else(|| nogroup_for_key(gname, key))?;
        if g.consumers.contains_key(cname) {
            cx.out.int(0);
        } else {
            g.consumers.insert(cname.to_vec(), crate::types::stream::Consumer { seen_time: now, ..Default::default() });
            cx.out.int(1);
            dirty(cx);
            cx.ks.notify(notify::STREAM, "xgroup-createconsumer", key);
        }
    } else if is(b"DELCONSUMER") && argc == 5 {
        let cname = cx.arg(4);
        let s = cx.ks.stream(key)?.ok_or(NO_KEY)?;
        let g = s.groups.get_mut(gname).ok_or_else(|| nogroup_for_key(gname, key))?;
        match g.consumers.remove(cname) {
            Some(c) => {
                for id in &c.pel {
                    g.pel.remove(id);
                }
                cx.out.int(c.pel.len() as i64);
                dirty(cx);
                cx.ks.notify(notify::STREAM, "xgroup-delconsumer", key);
            }
            None => cx.out.int(0),
        }
    } else {
        return Err(subcommand_syntax_error(cx));
    }
    Ok(())
}

fn xsetid(cx: &mut Cx) -> CmdResult {
    let id = parse_strict(cx.arg(2), 0)?;
    let mut max_xdel = StreamId::MIN;
    let mut entries_added: i64 = -1;
    let argc = cx.argc();
    let mut i = 3;
    while i < argc {
        let moreargs = argc - 1 - i;
        let opt = cstr(cx.arg(i));
        if eq_ic(opt, b"ENTRIESADDED") && moreargs > 0 {
            entries_added = cx.int_arg(i + 1)?;
            if entries_added < 0 {
                return Err(CmdError::err("entries_added must be positive"));
            }
            i += 2;
        } else if eq_ic(opt, b"MAXDELETEDID") && moreargs > 0 {
            max_xdel = parse_strict(cx.arg(i + 1), 0)?;
            if id < max_xdel {
                return Err(CmdError::err(
                    "The ID specified in XSETID is smaller than the provided max_deleted_entry_id",
                ));
            }
            i += 2;
        } else {
            return Err(SYNTAX);
        }
    }
    let key = cx.arg(1);
    let s = cx.ks.stream(key)?.ok_or(NO_KEY)?;
    if !s.is_empty() {
        if id < s.last_valid_id() {
            return Err(CmdError::err("The ID specified in XSETID is smaller than the target stream top item"));
        }
        if entries_added != -1 && s.len() as u64 > entries_added as u64 {
            return Err(CmdError::err(
                "The entries_added specified in XSETID is smaller than the target stream length",
            ));
        }
    }
    s.last_id = id;
    if entries_added != -1 {
        s.entries_added = entries_added as u64;
    }
    if !max_xdel.is_zero() {
        s.max_deleted_id = max_xdel;
    }
    cx.out.ok();
    dirty(cx);
    cx.ks.notify(notify::STREAM, "xsetid", key);
    Ok(())
}

// ---------------------------------------------------------------------------
// XACK / XPENDING / XCLAIM / XAUTOCLAIM
// ---------------------------------------------------------------------------

fn xack(cx: &mut Cx) -> CmdResult {
    let key = cx.arg(1);
    let gname = cx.arg(2);
    let args = cx.args;
    let has_group = match stream_read(&mut cx.ks, key)? {
        None => false,
        Some(s) => s.groups.contains_key(gname),
    };
    if !has_group {
        cx.out.int(0);
        return Ok(());
    }
    let mut ids = Vec::with_capacity(args.len() - 3);
    for a in &args[3..] {
        ids.push(parse_strict(a, 0)?);
    }
    let mut acked = 0i64;
    if let Some(g) = cx.ks.stream(key)?.and_then(|s| s.groups.get_mut(gname)) {
        for id in ids {
            if g.remove_nack(&id).is_some() {
                acked += 1;
            }
        }
    }
    cx.out.int(acked);
    if acked > 0 {
        dirty(cx);
    }
    Ok(())
}

fn nogroup_key_or_group(key: &[u8], g: &[u8]) -> CmdError {
    CmdError::raw(format!("NOGROUP No such key '{}' or consumer group '{}'", lossy(key), lossy(g)))
}

fn xpending(cx: &mut Cx) -> CmdResult {
    let argc = cx.argc();
    let justinfo = argc == 3;
    if argc != 3 && !(6..=9).contains(&argc) {
        return Err(SYNTAX);
    }
    let mut start = StreamId::MIN;
    let mut end = StreamId::MAX;
    let mut count: i64 = 0;
    let mut minidle: i64 = 0;
    let mut consumer: Option<&[u8]> = None;
    if argc >= 6 {
        let mut startidx = 3;
        if eq_ic(cstr(cx.arg(3)), b"IDLE") {
            minidle = cx.int_arg(4)?;
            if argc < 8 {
                return Err(SYNTAX);
            }
            startidx += 2;
        }
        count = cx.int_arg(startidx + 2)?.max(0);
        start = parse_range_start(cx.arg(startidx))?;
        end = parse_range_end(cx.arg(startidx + 1))?;
        if startidx + 3 < argc {
            consumer = Some(cx.arg(startidx + 3));
        }
    }
    let key = cx.arg(1);
    let gname = cx.arg(2);
    let now = cx.ks.now;
    let s = stream_read(&mut cx.ks, key)?;
    let Some(g) = s.and_then(|s| s.groups.get(gname)) else {
        return Err(nogroup_key_or_group(key, gname));
    };
    let out = &mut *cx.out;
    if justinfo {
        out.array(4);
        out.int(g.pel.len() as i64);
        match (g.pel.keys().next(), g.pel.keys().next_back()) {
            (Some(first), Some(last)) => {
                reply_id(out, *first);
                reply_id(out, *last);
                let with: Vec<_> = g.consumers.iter().filter(|(_, c)| !c.pel.is_empty()).collect();
                out.array(with.len());
                for (name, c) in with {
                    out.array(2);
                    out.bulk(name);
                    out.bulk_int(c.pel.len() as i64);
                }
            }
            _ => {
                out.null();
                out.null();
                out.null_array();
            }
        }
        return Ok(());
    }
    let pel_ids: Box<dyn Iterator<Item = StreamId>> = match consumer {
        Some(cn) => match g.consumers.get(cn) {
            None => {
                out.array(0);
                return Ok(());
            }
            Some(c) => Box::new(c.pel.range(start..).copied()),
        },
        None => Box::new(g.pel.range(start..).map(|(k, _)| *k)),
    };
    let mut body = ReplyBuf { buf: bytes::BytesMut::new(), resp3: out.resp3 };
    let mut n = 0usize;
    let mut left = count;
    for id in pel_ids {
        if left == 0 || id > end {
            break;
        }
        let Some(nack) = g.pel.get(&id) else { continue };
        if minidle != 0 && now.saturating_sub(nack.delivery_time) < minidle {
            continue;
        }
        n += 1;
        left -= 1;
        body.array(4);
        reply_id(&mut body, id);
        body.bulk(nack.consumer.as_deref().unwrap_or(b""));
        body.int(now.saturating_sub(nack.delivery_time).max(0));
        body.int(nack.delivery_count as i64);
    }
    out.array(n);
    out.raw(&body.buf);
    Ok(())
}

/// Claim `id` for consumer `cname` (consumer created as needed).
fn claim(g: &mut Group, id: StreamId, cname: &[u8], delivery_time: i64, retry: Option<u64>, incr: bool) {
    let Some(n) = g.pel.get_mut(&id) else { return };
    let old = n.consumer.clone();
    n.delivery_time = delivery_time;
    if let Some(r) = retry {
        n.delivery_count = r;
    } else if incr {
        n.delivery_count = n.delivery_count.wrapping_add(1);
    }
    if old.as_deref() != Some(cname) {
        n.consumer = Some(cname.to_vec());
        if let Some(c) = old.and_then(|o| g.consumers.get_mut(&o)) {
            c.pel.remove(&id);
        }
        if let Some(c) = g.consumers.get_mut(cname) {
            c.pel.insert(id);
        }
    }
}

/// Look up (refreshing seen-time) or create the consumer once; true if it
/// was created.
fn ensure_consumer(g: &mut Group, cname: &[u8], now: i64, done: &mut bool) -> bool {
    if *done {
        return false;
    }
    *done = true;
    let created = !g.consumers.contains_key(cname);
    g.consumers.entry(cname.to_vec()).or_default().seen_time = now;
    created
}

fn xclaim(cx: &mut Cx) -> CmdResult {
    let key = cx.arg(1);
    let gname = cx.arg(2);
    let cname = cx.arg(3);
    let args = cx.args;
    let has_group = match stream_read(&mut cx.ks, key)? {
        None => false,
        Some(s) => s.groups.contains_key(gname),
    };
    if !has_group {
        return Err(nogroup_key_or_group(key, gname));
    }
    let minidle =
        super::parse_int(cx.arg(4)).map_err(|_| CmdError::err("Invalid min-idle-time argument for XCLAIM"))?.max(0);
    let mut ids = Vec::new();
    let mut j = 5;
    while j < args.len() {
        match parse_id_generic(&args[j], 0, true, false) {
            Some((id, _)) => ids.push(id),
            None => break,
        }
        j += 1;
    }
    let now = cx.ks.now;
    let mut force = false;
    let mut justid = false;
    let mut deliverytime: i64 = -1;
    let mut retrycount: i64 = -1;
    let mut last_id = StreamId::MIN;
    while j < args.len() {
        let moreargs = args.len() - 1 - j;
        let opt = cstr(&args[j]);
        if eq_ic(opt, b"FORCE") {
            force = true;
        } else if eq_ic(opt, b"JUSTID") {
            justid = true;
        } else if eq_ic(opt, b"IDLE") && moreargs > 0 {
            j += 1;
            let v = super::parse_int(&args[j]).map_err(|_| CmdError::err("Invalid IDLE option argument for XCLAIM"))?;
            deliverytime = now.wrapping_sub(v);
        } else if eq_ic(opt, b"TIME") && moreargs > 0 {
            j += 1;
            deliverytime =
                super::parse_int(&args[j]).map_err(|_| CmdError::err("Invalid TIME option argument for XCLAIM"))?;
        } else if eq_ic(opt, b"RETRYCOUNT") && moreargs > 0 {
            j += 1;
            retrycount = super::parse_int(&args[j])
                .map_err(|_| CmdError::err("Invalid RETRYCOUNT option argument for XCLAIM"))?;
        } else if eq_ic(opt, b"LASTID") && moreargs > 0 {
            j += 1;
            last_id = parse_strict(&args[j], 0)?;
        } else {
            return Err(CmdError::err(format!("Unrecognized XCLAIM option '{}'", lossy(&args[j]))));
        }
        j += 1;
    }
    if deliverytime != -1 {
        if deliverytime < 0 || deliverytime > now {
            deliverytime = now;
        }
    } else {
        deliverytime = now;
    }
    let Some(s) = cx.ks.stream(key)? else { return Err(nogroup_key_or_group(key, gname)) };
    let mut changed = false;
    if let Some(g) = s.groups.get_mut(gname) {
        if last_id > g.last_id {
            g.last_id = last_id;
            changed = true;
        }
    }
    let mut body = ReplyBuf { buf: bytes::BytesMut::new(), resp3: cx.out.resp3 };
    let mut n = 0usize;
    let mut have_consumer = false;
    let mut new_consumer = false;
    for id in ids {
        let exists = s.exists(id);
        let Some(g) = s.groups.get_mut(gname) else { break };
        if !exists {
            if g.remove_nack(&id).is_some() {
                changed = true;
            }
            continue;
        }
        let forced = if force && !g.pel.contains_key(&id) {
            g.pel.insert(id, Nack { delivery_time: now, delivery_count: 1, consumer: None });
            true
        } else {
            false
        };
        let Some(nack) = g.pel.get(&id) else { continue };
        if !forced && nack.consumer.is_some() && minidle != 0 && now.saturating_sub(nack.delivery_time) < minidle {
            continue;
        }
        new_consumer |= ensure_consumer(g, cname, now, &mut have_consumer);
        claim(g, id, cname, deliverytime, (retrycount >= 0).then_some(retrycount as u64), !justid);
        changed = true;
        n += 1;
        if justid {
            reply_id(&mut body, id);
        } else if let Some(e) = s.get(id) {
            reply_entry(&mut body, &e);
        }
    }
    cx.out.array(n);
    cx.out.raw(&body.buf);
    if new_consumer {
        cx.ks.notify(notify::STREAM, "xgroup-createconsumer", key);
    }
    if changed {
        dirty(cx);
    }
    Ok(())
}

fn xautoclaim(cx: &mut Cx) -> CmdResult {
    let key = cx.arg(1);
    let gname = cx.arg(2);
    let cname = cx.arg(3);
    let minidle =
        super::parse_int(cx.arg(4)).map_err(|_| CmdError::err("Invalid min-idle-time argument for XAUTOCLAIM"))?.max(0);
    let start = parse_range_start(cx.arg(5))?;
    let mut count: i64 = 100;
    let mut justid = false;
    let argc = cx.argc();
    let mut j = 6;
    while j < argc {
        let moreargs = argc - 1 - j;
        let opt = cstr(cx.arg(j));
        if eq_ic(opt, b"COUNT") && moreargs > 0 {
            let max_count = i64::MAX / 16;
            count = super::parse_int(cx.arg(j + 1))
                .ok()
                .filter(|c| (1..=max_count).contains(c))
                .ok_or_else(|| CmdError::err("COUNT must be > 0"))?;
            j += 1;
        } else if eq_ic(opt, b"JUSTID") {
            justid = true;
        } else {
            return Err(SYNTAX);
        }
        j += 1;
    }
    let now = cx.ks.now;
    let s = stream_read(&mut cx.ks, key)?;
    let Some(s) = s.filter(|s| s.groups.contains_key(gname)) else {
        return Err(nogroup_key_or_group(key, gname));
    };
    let mut attempts = count * 10;
    let mut cursor = Some(start);
    let mut deleted_ids = Vec::new();
    let mut body = ReplyBuf { buf: bytes::BytesMut::new(), resp3: cx.out.resp3 };
    let mut n = 0usize;
    let mut have_consumer = false;
    let mut new_consumer = false;
    let mut changed = false;
    loop {
        if attempts == 0 {
            break;
        }
        attempts -= 1;
        if count == 0 {
            break;
        }
        let Some(cur) = cursor else { break };
        let Some(g) = s.groups.get(gname) else { break };
        let Some((&id, nack)) = g.pel.range(cur..).next() else {
            cursor = None;
            break;
        };
        cursor = id.incr();
        let idle_ok = minidle == 0 || now.saturating_sub(nack.delivery_time) >= minidle;
        let exists = s.exists(id);
        let Some(g) = s.groups.get_mut(gname) else { break };
        if !exists {
            g.remove_nack(&id);
            deleted_ids.push(id);
            count -= 1;
            changed = true;
            continue;
        }
        if !idle_ok {
            continue;
        }
        new_consumer |= ensure_consumer(g, cname, now, &mut have_consumer);
        claim(g, id, cname, now, None, !justid);
        changed = true;
        if justid {
            reply_id(&mut body, id);
        } else if let Some(e) = s.get(id) {
            reply_entry(&mut body, &e);
        }
        n += 1;
        count -= 1;
    }
    let next = match (cursor, s.groups.get(gname)) {
        (Some(c), Some(g)) => g.pel.range(c..).next().map(|(k, _)| *k),
        _ => None,
    };
    let out = &mut *cx.out;
    out.array(3);
    reply_id(out, next.unwrap_or(StreamId::MIN));
    out.array(n);
    out.raw(&body.buf);
    out.array(deleted_ids.len());
    for id in deleted_ids {
        reply_id(out, id);
    }
    if new_consumer {
        cx.ks.notify(notify::STREAM, "xgroup-createconsumer", key);
    }
    if changed {
        dirty(cx);
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// XINFO
// ---------------------------------------------------------------------------

fn reply_lag(out: &mut ReplyBuf, s: &Stream, g: &Group) {
    match s.group_lag(g) {
        Some(l) => out.int(l),
        None => out.null(),
    }
}

fn reply_entries_read(out: &mut ReplyBuf, g: &Group) {
    if g.entries_read != INVALID_ENTRIES_READ {
        out.int(g.entries_read);
    } else {
        out.null();
    }
}

fn xinfo(cx: &mut Cx) -> CmdResult {
    let opt = cstr(cx.arg(1)).to_vec();
    if eq_ic(&opt, b"HELP") {
        if cx.argc() != 2 {
            return Err(subcommand_syntax_error(cx));
        }
        reply_help(
            cx,
            &[
                "CONSUMERS <key> <groupname>",
                "    Show consumers of <groupname>.",
                "GROUPS <key>",
                "    Show the stream consumer groups.",
                "STREAM <key> [FULL [COUNT <count>]",
                "    Show information about the stream.",
            ],
        );
        return Ok(());
    }
    if cx.argc() < 3 {
        return Err(subcommand_syntax_error(cx));
    }
    let key = cx.arg(2);
    let argc = cx.argc();
    let now = cx.ks.now;
    // Option errors of XINFO STREAM come after the key lookup in Redis.
    let stream_opts = if eq_ic(&opt, b"STREAM") { Some(parse_xinfo_stream_opts(cx)) } else { None };
    let ext = cx.arg(3.min(argc - 1));
    let syntax = subcommand_syntax_error(cx);
    let s = stream_read(&mut cx.ks, key)?.ok_or(NO_KEY)?;
    let out = &mut *cx.out;
    if eq_ic(&opt, b"CONSUMERS") && argc == 4 {
        let g = s.groups.get(ext).ok_or_else(|| nogroup_for_key(ext, key))?;
        out.array(g.consumers.len());
        for (name, c) in &g.consumers {
            out.map(3);
            out.bulk(b"name");
            out.bulk(name);
            out.bulk(b"pending");
            out.int(c.pel.len() as i64);
            out.bulk(b"idle");
            out.int(now.saturating_sub(c.seen_time).max(0));
        }
    } else if eq_ic(&opt, b"GROUPS") && argc == 3 {
        out.array(s.groups.len());
        for (name, g) in &s.groups {
            out.map(6);
            out.bulk(b"name");
            out.bulk(name);
            out.bulk(b"consumers");
            out.int(g.consumers.len() as i64);
            out.bulk(b"pending");
            out.int(g.pel.len() as i64);
            out.bulk(b"last-delivered-id");
            reply_id(out, g.last_id);
            out.bulk(b"entries-read");
            reply_entries_read(out, g);
            out.bulk(b"lag");
            reply_lag(out, s, g);
        }
    } else if let Some(o) = stream_opts {
        let (full, count) = o?;
        xinfo_stream(out, s, full, count);
    } else {
        return Err(syntax);
    }
    Ok(())
}

/// XINFO STREAM options: (full, count); count 0 = everything.
fn parse_xinfo_stream_opts(cx: &Cx) -> Result<(bool, usize), CmdError> {
    let optc = cx.argc() - 3;
    if optc == 0 {
        return Ok((false, 10));
    }
    if optc != 1 && optc != 3 {
        return Err(subcommand_syntax_error(cx));
    }
    if !eq_ic(cstr(cx.arg(3)), b"full") {
        return Err(subcommand_syntax_error(cx));
    }
    let mut count: i64 = 10;
    if optc == 3 {
        if !eq_ic(cstr(cx.arg(4)), b"count") {
            return Err(subcommand_syntax_error(cx));
        }
        count = cx.int_arg(5)?;
        if count < 0 {
            count = 10;
        }
    }
    Ok((true, usize::try_from(count).unwrap_or(usize::MAX)))
}

fn xinfo_stream(out: &mut ReplyBuf, s: &Stream, full: bool, count: usize) {
    out.map(if full { 9 } else { 10 });
    out.bulk(b"length");
    out.int(s.len() as i64);
    out.bulk(b"radix-tree-keys");
    out.int(s.rax_keys() as i64);
    out.bulk(b"radix-tree-nodes");
    out.int(s.rax_nodes() as i64);
    out.bulk(b"last-generated-id");
    reply_id(out, s.last_id);
    out.bulk(b"max-deleted-entry-id");
    reply_id(out, s.max_deleted_id);
    out.bulk(b"entries-added");
    out.int(s.entries_added as i64);
    out.bulk(b"recorded-first-entry-id");
    reply_id(out, s.first_id);
    if !full {
        out.bulk(b"groups");
        out.int(s.groups.len() as i64);
        for (name, rev) in [(&b"first-entry"[..], false), (&b"last-entry"[..], true)] {
            out.bulk(name);
            let mut found = false;
            s.range(StreamId::MIN, StreamId::MAX, rev, |e| {
                reply_entry(out, e);
                found = true;
                false
            });
            if !found {
                out.null();
            }
        }
        return;
    }
    out.bulk(b"entries");
    reply_range(out, s, StreamId::MIN, StreamId::MAX, count, false);
    out.bulk(b"groups");
    out.array(s.groups.len());
    let lim = |n: usize| if count == 0 { n } else { n.min(count) };
    for (name, g) in &s.groups {
        out.map(7);
        out.bulk(b"name");
        out.bulk(name);
        out.bulk(b"last-delivered-id");
        reply_id(out, g.last_id);
        out.bulk(b"entries-read");
        reply_entries_read(out, g);
        out.bulk(b"lag");
        reply_lag(out, s, g);
        out.bulk(b"pel-count");
        out.int(g.pel.len() as i64);
        out.bulk(b"pending");
        out.array(lim(g.pel.len()));
        for (id, n) in g.pel.iter().take(lim(g.pel.len())) {
            out.array(4);
            reply_id(out, *id);
            out.bulk(n.consumer.as_deref().unwrap_or(b""));
            out.int(n.delivery_time);
            out.int(n.delivery_count as i64);
        }
        out.bulk(b"consumers");
        out.array(g.consumers.len());
        for (cname, c) in &g.consumers {
            out.map(4);
            out.bulk(b"name");
            out.bulk(cname);
            out.bulk(b"seen-time");
            out.int(c.seen_time);
            out.bulk(b"pel-count");
            out.int(c.pel.len() as i64);
            out.bulk(b"pending");
            out.array(lim(c.pel.len()));
            for id in c.pel.iter().take(lim(c.pel.len())) {
                let n = g.pel.get(id);
                out.array(3);
                reply_id(out, *id);
                out.int(n.map_or(0, |n| n.delivery_time));
                out.int(n.map_or(0, |n| n.delivery_count as i64));
            }
        }
    }
}

/// Redis's unblockDeletedStreamReadgroupClients: `key` was written and is
/// now missing (`ty` None) or not a stream, so the clients blocked on it in
/// XREADGROUP can never be served (their group is gone): they get an error
/// right away instead of waiting.
pub fn unblock_deleted_readgroup(srv: &crate::server::Server, db: usize, key: &[u8], ty: Option<&str>) {
    if ty == Some("stream") {
        return;
    }
    for w in srv.blocking.waiters(db, key) {
        if !w.args.first().is_some_and(|a| eq_ic(a, b"xreadgroup")) {
            continue;
        }
        if srv.blocking.mark_served(&w) {
            w.handle.blocked.store(false, std::sync::atomic::Ordering::Relaxed);
            srv.stats.error_reply("UNBLOCKED the stream key no longer exists");
            let reply = bytes::Bytes::from_static(b"-UNBLOCKED the stream key no longer exists\r\n");
            let _ = w.handle.tx.send(crate::client::Push::Reply(reply));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn id_parsing() {
        assert_eq!(parse_id_generic(b"1-2", 0, true, false), Some((StreamId::new(1, 2), true)));
        assert_eq!(parse_id_generic(b"5", 7, true, false), Some((StreamId::new(5, 7), true)));
        assert_eq!(parse_id_generic(b"-", 0, true, false), None);
        assert_eq!(parse_id_generic(b"-", 0, false, false), Some((StreamId::MIN, true)));
        assert_eq!(parse_id_generic(b"+", 0, false, false), Some((StreamId::MAX, true)));
        assert_eq!(parse_id_generic(b"3-*", 0, true, true), Some((StreamId::new(3, 0), false)));
        assert_eq!(parse_id_generic(b"3-*", 0, true, false), None);
        assert_eq!(parse_id_generic(b"18446744073709551615-1", 0, true, false).unwrap().0.ms, u64::MAX);
        assert_eq!(parse_id_generic(b"18446744073709551616", 0, true, false), None);
        assert_eq!(parse_id_generic(b"abc", 0, true, false), None);
        assert_eq!(parse_id_generic(b"1-", 0, true, false), None);
        assert_eq!(parse_id_generic(b"007", 0, true, false).unwrap().0.ms, 7);
        assert_eq!(parse_id_generic(b"-1", 0, true, false), None);
    }
}
