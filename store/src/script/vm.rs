//! The Lua interpreters, driven through Lua 5.1's C API (`mlua::ffi`).
//!
//! Functions registered into Lua are `extern "C-unwind"` functions that do
//! their Rust work in an inner function (so every Rust value is dropped)
//! and only then raise a Lua error with `lua_error`, as Redis's C code
//! does; no Rust frame holding a destructor is ever crossed by a Lua error.

#![allow(clippy::missing_safety_doc)]
// Every function here is a thin layer over the Lua C API.
#![allow(unsafe_op_in_unsafe_fn)]

use super::*;
use crate::client::Client;
use crate::keyspace::Access;
use mlua::ffi::*;
use std::cell::Cell;
use std::collections::{BTreeMap, HashMap};
use std::ffi::{c_char, c_int, c_void};
use std::ptr;

macro_rules! cs {
    ($s:expr) => {
        concat!($s, "\0").as_ptr() as *const c_char
    };
}
pub(crate) use cs;

/// The chunk name of ferrite's own Lua code (never shown to users as the
/// place of an error: the error handler skips it).
const INTERNAL: &str = "=[redis]";

/// An owned interpreter.
pub struct Lua(pub *mut lua_State);

// SAFETY: a `Lua` is only used by one thread at a time (it lives behind a
// mutex) and Lua 5.1 keeps no thread-local state.
unsafe impl Send for Lua {}

impl Drop for Lua {
    fn drop(&mut self) {
        if !self.0.is_null() {
            unsafe { lua_close(self.0) }
        }
    }
}

// ------------------------------------------------------------ helpers

/// Push the table at `idx`, or the table a read-only proxy stands for
/// (cjson and cmsgpack serialise what the script sees).
pub unsafe fn push_real_table(l: *mut lua_State, idx: c_int) {
    let idx = if idx < 0 { lua_gettop(l) + idx + 1 } else { idx };
    lua_getfield(l, LUA_REGISTRYINDEX, cs!("__ferrite_realof"));
    if lua_type(l, -1) == LUA_TTABLE {
        lua_pushvalue(l, idx);
        lua_rawget(l, -2);
        if lua_type(l, -1) == LUA_TTABLE {
            lua_remove(l, -2);
            return;
        }
        lua_pop(l, 1);
    }
    lua_pop(l, 1);
    lua_pushvalue(l, idx);
}

pub unsafe fn push_bytes(l: *mut lua_State, b: &[u8]) {
    lua_pushlstring(l, b.as_ptr() as *const c_char, b.len());
}

/// The bytes of the string (or number, converted in place) at `idx`.
pub unsafe fn to_bytes<'a>(l: *mut lua_State, idx: c_int) -> Option<&'a [u8]> {
    let mut len = 0usize;
    let p = lua_tolstring(l, idx, &mut len);
    if p.is_null() {
        None
    } else {
        Some(std::slice::from_raw_parts(p as *const u8, len))
    }
}

unsafe fn set_field_str(l: *mut lua_State, k: &[u8], v: &[u8]) {
    push_bytes(l, k);
    push_bytes(l, v);
    lua_settable(l, -3);
}

/// The part of `b` a C string function sees (up to the first NUL).
fn cstr_prefix(b: &[u8]) -> &[u8] {
    &b[..b.iter().position(|&c| c == 0).unwrap_or(b.len())]
}

/// Redis's `luaPushErrorBuff`: push `{err = "CODE msg"}`. A leading `-`
/// means the text carries its own code; otherwise the code is `ERR`.
pub unsafe fn push_error(l: *mut lua_State, e: &[u8]) {
    let (code, msg): (&[u8], &[u8]) = if let Some(rest) = e.strip_prefix(b"-") {
        match rest.iter().position(|&c| c == b' ') {
            Some(sp) => (&rest[..sp], &rest[sp + 1..]),
            None => (b"ERR", rest),
        }
    } else {
        (b"ERR", e)
    };
    let mut m = msg;
    while let Some((&c, r)) = m.split_first() {
        if c == b'\r' || c == b'\n' {
            m = r;
        } else {
            break;
        }
    }
    while let Some((&c, r)) = m.split_last() {
        if c == b'\r' || c == b'\n' {
            m = r;
        } else {
            break;
        }
    }
    let mut full = code.to_vec();
    full.push(b' ');
    full.extend_from_slice(m);
    lua_createtable(l, 0, 1);
    set_field_str(l, b"err", &full);
}

unsafe fn push_error_ignore_stats(l: *mut lua_State, e: &[u8]) {
    push_error(l, e);
    lua_pushstring(l, cs!("ignore_error_stats_update"));
    lua_pushboolean(l, 1);
    lua_settable(l, -3);
}

/// `luaL_error`-like: message prefixed with the caller's position, raised.
unsafe fn raise_where(l: *mut lua_State, msg: &str) -> ! {
    luaL_where(l, 1);
    push_bytes(l, msg.as_bytes());
    lua_concat(l, 2);
    lua_error(l)
}

// ------------------------------------------------------------ run context

/// State of the script being run, reachable from Lua callbacks.
pub struct RunCtx {
    pub srv: *const Server,
    pub acc: *mut c_void,
    /// The script's own client (db, protocol, user of the caller).
    pub client: Client,
    pub read_only: bool,
    pub allow_oom: bool,
    pub oom_at_start: bool,
    pub wrote: bool,
    /// When the script started, and how often it tried to leave the
    /// runtime's scheduling (see `detach_from_runtime`).
    pub started: std::time::Instant,
    pub detach_attempts: u8,
}

thread_local! {
    static RUN: Cell<*mut RunCtx> = const { Cell::new(ptr::null_mut()) };
    static LOAD: Cell<*mut LoadCtx> = const { Cell::new(ptr::null_mut()) };
}

/// The library being loaded by FUNCTION LOAD.
pub struct LoadCtx {
    pub functions: Vec<FuncInfo>,
    pub start: std::time::Instant,
    pub timeout_ms: u64,
}

#[derive(Clone)]
pub struct FuncInfo {
    pub name: String,
    pub desc: Option<Vec<u8>>,
    pub flags: u32,
    /// Registry reference of the callback.
    pub fref: c_int,
}

// ------------------------------------------------------------ RESP -> Lua

struct RespParser<'a> {
    b: &'a [u8],
    p: usize,
}

impl RespParser<'_> {
    fn line(&mut self) -> &[u8] {
        let start = self.p;
        let end = self.b[start..].windows(2).position(|w| w == b"\r\n").map_or(self.b.len(), |i| start + i);
        self.p = (end + 2).min(self.b.len());
        &self.b[start..end]
    }

    fn take(&mut self, n: usize) -> &[u8] {
        let start = self.p.min(self.b.len());
        let end = (start + n).min(self.b.len());
        self.p = (end + 2).min(self.b.len());
        &self.b[start..end]
    }
}

fn num(b: &[u8]) -> i64 {
    ferrite_resp::num::parse_i64(b).unwrap_or(-1)
}

/// Push one RESP value from `p` as Redis's `redisProtocolToLuaType` does.
unsafe fn resp_to_lua(l: *mut lua_State, p: &mut RespParser<'_>, depth: usize) {
    if p.p >= p.b.len() || depth > 1000 || lua_checkstack(l, 5) == 0 {
        lua_pushnil(l);
        return;
    }
    let t = p.b[p.p];
    p.p += 1;
    match t {
        b'+' => {
            let s = p.line().to_vec();
            lua_createtable(l, 0, 1);
            set_field_str(l, b"ok", &s);
        }
        b'-' => {
            let mut e = b"-".to_vec();
            e.extend_from_slice(p.line());
            push_error_ignore_stats(l, &e);
        }
        b':' => {
            let n = num(p.line());
            lua_pushnumber(l, n as f64);
        }
        b'$' => {
            let n = num(p.line());
            if n < 0 {
                lua_pushboolean(l, 0);
            } else {
                let s = p.take(n as usize);
                push_bytes(l, s);
            }
        }
        b'*' | b'~' | b'%' => {
            let n = num(p.line());
            if n < 0 {
                lua_pushboolean(l, 0);
                return;
            }
            // Never trust a count past the bytes actually there.
            let n = (n as usize).min(p.b.len().saturating_sub(p.p));
            match t {
                b'*' => {
                    lua_createtable(l, n.min(1 << 16) as c_int, 0);
                    for j in 0..n {
                        resp_to_lua(l, p, depth + 1);
                        lua_rawseti_(l, -2, (j + 1) as c_int);
                    }
                }
                b'~' => {
                    lua_createtable(l, 0, 1);
                    lua_pushstring(l, cs!("set"));
                    lua_createtable(l, 0, n.min(1 << 16) as c_int);
                    for _ in 0..n {
                        resp_to_lua(l, p, depth + 1);
                        lua_pushboolean(l, 1);
                        lua_settable(l, -3);
                    }
                    lua_settable(l, -3);
                }
                _ => {
                    lua_createtable(l, 0, 1);
                    lua_pushstring(l, cs!("map"));
                    lua_createtable(l, 0, n.min(1 << 16) as c_int);
                    for _ in 0..n {
                        resp_to_lua(l, p, depth + 1);
                        resp_to_lua(l, p, depth + 1);
                        lua_settable(l, -3);
                    }
                    lua_settable(l, -3);
                }
            }
        }
        b'_' => {
            p.line();
            lua_pushnil(l);
        }
        b'#' => {
            let v = p.line() == b"t";
            lua_pushboolean(l, v as c_int);
        }
        b',' => {
            let s = p.line();
            let d = match s {
                b"inf" => f64::INFINITY,
                b"-inf" => f64::NEG_INFINITY,
                b"nan" | b"-nan" => f64::NAN,
                _ => ferrite_resp::num::parse_f64(s).unwrap_or(0.0),
            };
            lua_createtable(l, 0, 1);
            lua_pushstring(l, cs!("double"));
            lua_pushnumber(l, d);
            lua_settable(l, -3);
        }
        b'(' => {
            let s = p.line().to_vec();
            lua_createtable(l, 0, 1);
            set_field_str(l, b"big_number", &s);
        }
        b'=' => {
            let n = num(p.line()).max(0) as usize;
            let s = p.take(n).to_vec();
            let (fmt, txt) = if s.len() >= 4 { (&s[..3], &s[4..]) } else { (&s[..], &s[s.len()..]) };
            lua_createtable(l, 0, 1);
            lua_pushstring(l, cs!("verbatim_string"));
            lua_createtable(l, 0, 2);
            set_field_str(l, b"string", txt);
            set_field_str(l, b"format", fmt);
            lua_settable(l, -3);
        }
        b'|' => {
            let n = num(p.line()).max(0) as usize;
            for _ in 0..n * 2 {
                resp_to_lua(l, p, depth + 1);
                lua_pop(l, 1);
            }
            resp_to_lua(l, p, depth);
        }
        _ => {
            p.line();
            lua_pushnil(l);
        }
    }
}

// ------------------------------------------------------------ Lua -> RESP

/// Error information of a Lua error object (`luaExtractErrorInformation`).
struct ErrInfo {
    msg: Vec<u8>,
    source: Option<Vec<u8>>,
    line: Option<Vec<u8>>,
    /// `ignore_error_stats_update`: the error was already counted (by the
    /// command that produced it, or when a redis.call was rejected).
    ignore: bool,
}

unsafe fn extract_error(l: *mut lua_State) -> ErrInfo {
    let mut info = ErrInfo { msg: Vec::new(), source: None, line: None, ignore: false };
    if lua_type(l, -1) == LUA_TSTRING || lua_type(l, -1) == LUA_TNUMBER {
        let mut m = b"ERR ".to_vec();
        m.extend_from_slice(cstr_prefix(to_bytes(l, -1).unwrap_or_default()));
        info.msg = m;
        return info;
    }
    if lua_type(l, -1) != LUA_TTABLE {
        return info;
    }
    // Raw reads: this runs outside any protected call, so no metamethod
    // of a user-made error table may run (it could raise).
    for (k, slot) in [(cs!("err"), 0), (cs!("source"), 1), (cs!("line"), 2)] {
        lua_pushstring(l, k);
        lua_rawget(l, -2);
        if lua_isstring(l, -1) != 0 {
            // Redis copies these with sdsnew(): C strings, cut at a NUL.
            let v = cstr_prefix(to_bytes(l, -1).unwrap_or_default()).to_vec();
            match slot {
                0 => info.msg = v,
                1 => info.source = Some(v),
                _ => info.line = Some(v),
            }
        }
        lua_pop(l, 1);
    }
    lua_pushstring(l, cs!("ignore_error_stats_update"));
    lua_rawget(l, -2);
    info.ignore = lua_type(l, -1) == LUA_TBOOLEAN && lua_toboolean(l, -1) != 0;
    lua_pop(l, 1);
    info
}

fn put_error(out: &mut ReplyBuf, msg: &[u8]) {
    let mut v = Vec::with_capacity(msg.len() + 3);
    v.push(b'-');
    let mut m = msg;
    while let Some((&c, r)) = m.split_last() {
        if c == b'\r' || c == b'\n' {
            m = r;
        } else {
            break;
        }
    }
    // Redis's addReplyErrorLength: a message not starting with '-' is
    // written as is after the '-' (the caller already chose the code).
    v.extend(m.iter().map(|&c| if c == b'\r' || c == b'\n' { b' ' } else { c }));
    v.extend_from_slice(b"\r\n");
    out.raw(&v);
}

use ferrite_resp::ReplyBuf;

/// Convert the value on top of the stack to a reply and pop it
/// (`luaReplyToRedisReply`). `script_resp3`: the script called
/// `redis.setresp(3)`.
unsafe fn lua_to_resp(l: *mut lua_State, out: &mut ReplyBuf, script_resp3: bool, depth: usize) {
    if depth > MAX_REPLY_DEPTH || lua_checkstack(l, 4) == 0 {
        out.raw(b"-ERR reached lua stack limit\r\n");
        lua_pop(l, 1);
        return;
    }
    match lua_type(l, -1) {
        LUA_TSTRING => out.bulk(to_bytes(l, -1).unwrap_or_default()),
        LUA_TBOOLEAN => {
            let b = lua_toboolean(l, -1) != 0;
            if !script_resp3 {
                if b {
                    out.int(1)
                } else {
                    out.null()
                }
            } else {
                out.boolean(b)
            }
        }
        LUA_TNUMBER => out.int(c_cast_i64(lua_tonumber(l, -1))),
        LUA_TTABLE => {
            lua_pushstring(l, cs!("err"));
            lua_rawget(l, -2);
            if lua_type(l, -1) == LUA_TSTRING {
                lua_pop(l, 1);
                let info = extract_error(l);
                put_error(out, &info.msg);
                lua_pop(l, 1);
                return;
            }
            lua_pop(l, 1);
            lua_pushstring(l, cs!("ok"));
            lua_rawget(l, -2);
            if lua_type(l, -1) == LUA_TSTRING {
                out.simple(cstr_prefix(to_bytes(l, -1).unwrap_or_default()));
                lua_pop(l, 2);
                return;
            }
            lua_pop(l, 1);
            lua_pushstring(l, cs!("double"));
            lua_rawget(l, -2);
            if lua_type(l, -1) == LUA_TNUMBER {
                out.double(lua_tonumber(l, -1));
                lua_pop(l, 2);
                return;
            }
            lua_pop(l, 1);
            lua_pushstring(l, cs!("big_number"));
            lua_rawget(l, -2);
            if lua_type(l, -1) == LUA_TSTRING {
                let s: Vec<u8> = to_bytes(l, -1)
                    .unwrap_or_default()
                    .iter()
                    .map(|&c| if c == b'\r' || c == b'\n' { b' ' } else { c })
                    .collect();
                if out.resp3 {
                    out.raw(b"(");
                    out.raw(&s);
                    out.raw(b"\r\n");
                } else {
                    out.bulk(&s);
                }
                lua_pop(l, 2);
                return;
            }
            lua_pop(l, 1);
            lua_pushstring(l, cs!("verbatim_string"));
            lua_rawget(l, -2);
            if lua_type(l, -1) == LUA_TTABLE {
                lua_pushstring(l, cs!("format"));
                lua_rawget(l, -2);
                if lua_type(l, -1) == LUA_TSTRING {
                    let fmt = to_bytes(l, -1).unwrap_or_default().to_vec();
                    lua_pushstring(l, cs!("string"));
                    lua_rawget(l, -3);
                    if lua_type(l, -1) == LUA_TSTRING {
                        let s = to_bytes(l, -1).unwrap_or_default();
                        let mut f = [0u8; 3];
                        for (d, s) in f.iter_mut().zip(fmt.iter()) {
                            *d = *s;
                        }
                        out.verbatim(&f, s);
                        lua_pop(l, 4);
                        return;
                    }
                    lua_pop(l, 1);
                }
                lua_pop(l, 1);
            }
            lua_pop(l, 1);
            lua_pushstring(l, cs!("map"));
            lua_rawget(l, -2);
            if lua_type(l, -1) == LUA_TTABLE {
                let mut n = 0;
                lua_pushnil(l);
                while lua_next(l, -2) != 0 {
                    n += 1;
                    lua_pop(l, 1);
                }
                out.map(n);
                lua_pushnil(l);
                while lua_next(l, -2) != 0 {
                    lua_pushvalue(l, -2);
                    lua_to_resp(l, out, script_resp3, depth + 1);
                    lua_to_resp(l, out, script_resp3, depth + 1);
                }
                lua_pop(l, 2);
                return;
            }
            lua_pop(l, 1);
            lua_pushstring(l, cs!("set"));
            lua_rawget(l, -2);
            if lua_type(l, -1) == LUA_TTABLE {
                let mut n = 0;
                lua_pushnil(l);
                while lua_next(l, -2) != 0 {
                    n += 1;
                    lua_pop(l, 1);
                }
                out.set(n);
                lua_pushnil(l);
                while lua_next(l, -2) != 0 {
                    lua_pop(l, 1);
                    lua_pushvalue(l, -1);
                    lua_to_resp(l, out, script_resp3, depth + 1);
                }
                lua_pop(l, 2);
                return;
            }
            lua_pop(l, 1);
            // An array: elements 1.. up to the first nil.
            let mut n = 0usize;
            loop {
                lua_rawgeti_(l, -1, (n + 1) as c_int);
                let nil = lua_type(l, -1) == LUA_TNIL;
                lua_pop(l, 1);
                if nil || n >= i32::MAX as usize - 1 {
                    break;
                }
                n += 1;
            }
            out.array(n);
            for j in 1..=n {
                lua_rawgeti_(l, -1, j as c_int);
                lua_to_resp(l, out, script_resp3, depth + 1);
            }
        }
        _ => out.null(),
    }
    lua_pop(l, 1);
}

/// Nesting limit of a script's reply (Redis stops at the Lua stack limit;
/// this bound keeps the Rust recursion within a worker thread's stack).
const MAX_REPLY_DEPTH: usize = 1000;

/// C's `(int)` cast of a double as x86-64 does it (out of range: INT_MIN).
pub fn c_cast_i32(d: f64) -> i32 {
    if d.is_nan() || !(-2147483648.0..2147483648.0).contains(&d) {
        i32::MIN
    } else {
        d as i32
    }
}

/// C's `(long long)` cast of a double as x86-64 does it.
pub fn c_cast_i64(d: f64) -> i64 {
    if d.is_nan() || !(-9223372036854775808.0..9223372036854775808.0).contains(&d) {
        i64::MIN
    } else {
        d as i64
    }
}

// ------------------------------------------------------------ redis.* API

/// Is a script running on this thread? (EVAL, SCRIPT and FUNCTION called
/// from a script, possible only under DEBUG set-disable-deny-scripts,
/// would re-enter the engine they are part of.)
pub fn in_script() -> bool {
    !RUN.with(|c| c.get()).is_null() || !LOAD.with(|c| c.get()).is_null()
}

unsafe fn run_ctx<'a>() -> Option<&'a mut RunCtx> {
    let p = RUN.with(|c| c.get());
    if p.is_null() {
        None
    } else {
        Some(&mut *p)
    }
}

/// Outcome of a command called from Lua.
enum CallResult {
    /// The reply bytes (in the script client's protocol).
    Reply(Vec<u8>),
    /// Rejected before running (`luaPushError` text, without code = ERR).
    Rejected(Vec<u8>),
}

/// A command called from Lua; a rejection is counted as Redis's scriptCall
/// does (errorstats, and rejected_calls of the command).
fn run_command(ctx: &mut RunCtx, args: Vec<Bytes>) -> CallResult {
    // SAFETY: set by `run_script` for the duration of the script, on this thread.
    let srv: &Server = unsafe { &*ctx.srv };
    let name = crate::dispatch::resolve(srv, &args).map(|(_, m)| m.name.clone()).map_err(|e| e.0);
    let kept = if name.is_err() { args.clone() } else { Vec::new() };
    let r = run_command_inner(ctx, args);
    if let CallResult::Rejected(e) = &r {
        let text = String::from_utf8_lossy(e);
        srv.stats.error_reply(text.strip_prefix('-').unwrap_or("ERR"));
        match name {
            Ok(n) => srv.stats.rejected_call(&n),
            // Arity: still a rejected call of the command.
            Err(e) => crate::stats::rejected_before_resolve(srv, &kept, &e),
        }
    }
    r
}

fn run_command_inner(ctx: &mut RunCtx, args: Vec<Bytes>) -> CallResult {
    // SAFETY: set by `run_script` for the duration of the script, on this thread.
    let srv: &Server = unsafe { &*ctx.srv };
    let acc: &mut Access<'_> = unsafe { &mut *(ctx.acc as *mut Access<'_>) };
    let (cmd, meta) = match crate::dispatch::resolve(srv, &args) {
        Ok(x) => x,
        Err(e) => {
            let m = if e.0.starts_with("ERR wrong number") {
                "Wrong number of args calling Redis command from script"
            } else if noscript_in_table(&args) {
                // A Redis command this server does not implement, that
                // scripts may not call anyway.
                "This Redis command is not allowed from script"
            } else {
                "Unknown Redis command called from script"
            };
            return CallResult::Rejected(m.as_bytes().to_vec());
        }
    };
    if matches!(cmd.imp.name, "xread" | "xreadgroup") {
        for (i, a) in args.iter().enumerate().skip(1) {
            if a.eq_ignore_ascii_case(b"streams") {
                break;
            }
            if a.eq_ignore_ascii_case(b"block") && i + 1 < args.len() {
                let name = String::from_utf8_lossy(&args[0]);
                let e = format!("-ERR {name} command is not allowed with BLOCK option from scripts\r\n");
                return CallResult::Reply(e.into_bytes());
            }
        }
    }
    if (meta.flags.has(Flags::NOSCRIPT) || cmd.meta.flags.has(Flags::NOSCRIPT))
        && !srv.scripting.disable_deny_scripts.load(Ordering::Relaxed)
    {
        return CallResult::Rejected(b"This Redis command is not allowed from script".to_vec());
    }
    if let Err(e) = crate::acl::check_script(srv, &ctx.client, meta, &args) {
        let what = if e.0.contains("keys") {
            "can't access at least one of the keys mentioned in the command arguments"
        } else if e.0.contains("channels") {
            "can't publish to the channel mentioned in the command"
        } else {
            "can't run this command or subcommand"
        };
        return CallResult::Rejected(format!("The user executing the script {what}").into_bytes());
    }
    let write = meta.flags.has(Flags::WRITE);
    // COMMAND INFO (the recorded table) does not show may_replicate.
    let may_replicate =
        meta.flags.has(Flags::MAY_REPLICATE) || matches!(cmd.imp.name, "publish" | "spublish" | "pfcount");
    if ctx.read_only && (write || may_replicate) {
        return CallResult::Rejected(b"Write commands are not allowed from read-only scripts.".to_vec());
    }
    if !ctx.allow_oom && ctx.oom_at_start && !ctx.wrote && meta.flags.has(Flags::DENYOOM) {
        return CallResult::Rejected(b"-OOM command not allowed when used memory > 'maxmemory'.".to_vec());
    }
    // Redis's scriptVerifyWriteCommandAllow: server-state checks only
    // until the script's first write.
    if write && !ctx.wrote {
        if let Some(e) = crate::persist::deny_write(srv, meta) {
            return CallResult::Rejected(format!("-{}", e.0).into_bytes());
        }
        if crate::cmd::config::noreplicas_active() {
            return CallResult::Rejected(b"-NOREPLICAS Not enough good replicas to write.".to_vec());
        }
        if crate::persist::replica::read_only(srv) {
            return CallResult::Rejected(b"-READONLY You can't write against a read only replica.".to_vec());
        }
    }
    if write {
        ctx.wrote = true;
        srv.scripting.wrote.store(true, Ordering::Relaxed);
    }
    let reply = crate::dispatch::run_for_script(srv, &mut ctx.client, cmd, meta, &args, acc);
    CallResult::Reply(reply.to_vec())
}

/// Is `args` a command (or subcommand) of Redis's table flagged noscript?
fn noscript_in_table(args: &[Bytes]) -> bool {
    let name = String::from_utf8_lossy(&args[0]).to_ascii_lowercase();
    let Some(meta) = ferrite_commands::table().commands.get(&name) else { return false };
    let meta = match args.get(1).and_then(|a| meta.subcommand(a)) {
        Some(sub) => sub,
        None => meta,
    };
    meta.flags.has(Flags::NOSCRIPT)
}

/// Collect redis.call's arguments; Err = the error was pushed.
unsafe fn call_args(l: *mut lua_State) -> Result<Vec<Bytes>, ()> {
    let argc = lua_gettop(l);
    if argc == 0 {
        push_error(l, b"Please specify at least one argument for this redis lib call");
        return Err(());
    }
    let mut args = Vec::with_capacity(argc as usize);
    let mut bad = false;
    for j in 1..=argc {
        if lua_type(l, j) == LUA_TNUMBER {
            let mut v = Vec::new();
            ferrite_resp::num::fmt_g17(lua_tonumber(l, j), &mut v);
            args.push(Bytes::from(v));
        } else if lua_isstring(l, j) != 0 {
            args.push(Bytes::copy_from_slice(to_bytes(l, j).unwrap_or_default()));
        } else {
            bad = true;
            break;
        }
    }
    lua_settop(l, 0);
    if bad {
        push_error(l, b"Lua redis lib command arguments must be strings or integers");
        return Err(());
    }
    Ok(args)
}

/// Body of redis.call / redis.pcall. Returns whether an error table is on
/// the stack (and whether it must be raised).
unsafe fn generic_call(l: *mut lua_State, raise: bool) -> bool {
    let Some(ctx) = run_ctx() else {
        push_error(l, b"redis.call/pcall can only be called inside a script invocation");
        return true;
    };
    let args = match call_args(l) {
        Ok(a) => a,
        Err(()) => return raise,
    };
    match run_command(ctx, args) {
        CallResult::Rejected(e) => {
            push_error_ignore_stats(l, &e);
            raise
        }
        CallResult::Reply(r) => {
            let is_err = r.first() == Some(&b'-');
            let mut p = RespParser { b: &r, p: 0 };
            resp_to_lua(l, &mut p, 0);
            raise && is_err
        }
    }
}

unsafe extern "C-unwind" fn l_call(l: *mut lua_State) -> c_int {
    if generic_call(l, true) {
        lua_error(l)
    }
    1
}

unsafe extern "C-unwind" fn l_pcall(l: *mut lua_State) -> c_int {
    generic_call(l, false);
    1
}

unsafe extern "C-unwind" fn l_sha1hex(l: *mut lua_State) -> c_int {
    if lua_gettop(l) != 1 {
        push_error(l, b"wrong number of arguments");
        lua_error(l)
    }
    let hex = super::sha1::sha1hex(to_bytes(l, 1).unwrap_or_default());
    push_bytes(l, hex.as_bytes());
    1
}

unsafe extern "C-unwind" fn l_error_reply(l: *mut lua_State) -> c_int {
    if lua_gettop(l) != 1 || lua_type(l, -1) != LUA_TSTRING {
        push_error(l, b"wrong number or type of arguments");
        return 1;
    }
    let e = to_bytes(l, -1).unwrap_or_default();
    // Redis treats the argument as a C string.
    let e = &e[..e.iter().position(|&c| c == 0).unwrap_or(e.len())];
    let mut v = Vec::with_capacity(e.len() + 1);
    if !e.starts_with(b"-") {
        v.push(b'-');
    }
    v.extend_from_slice(e);
    push_error(l, &v);
    1
}

unsafe extern "C-unwind" fn l_status_reply(l: *mut lua_State) -> c_int {
    if lua_gettop(l) != 1 || lua_type(l, -1) != LUA_TSTRING {
        push_error(l, b"wrong number or type of arguments");
        return 1;
    }
    lua_createtable(l, 0, 1);
    lua_pushstring(l, cs!("ok"));
    lua_pushvalue(l, -3);
    lua_settable(l, -3);
    1
}

unsafe extern "C-unwind" fn l_set_repl(l: *mut lua_State) -> c_int {
    if run_ctx().is_none() {
        push_error(l, b"redis.set_repl can only be called inside a script invocation");
        lua_error(l)
    }
    if lua_gettop(l) != 1 {
        push_error(l, b"redis.set_repl() requires two arguments.");
        lua_error(l)
    }
    let flags = c_cast_i32(lua_tonumber(l, -1));
    if flags & !3 != 0 {
        push_error(l, b"Invalid replication flags. Use REPL_AOF, REPL_REPLICA, REPL_ALL or REPL_NONE.");
        lua_error(l)
    }
    crate::persist::propagate::set_script_target(flags as u8);
    0
}

unsafe extern "C-unwind" fn l_replicate_commands(l: *mut lua_State) -> c_int {
    lua_pushboolean(l, 1);
    1
}

unsafe extern "C-unwind" fn l_noop(_l: *mut lua_State) -> c_int {
    0
}

unsafe extern "C-unwind" fn l_breakpoint(l: *mut lua_State) -> c_int {
    lua_pushboolean(l, 0);
    1
}

unsafe extern "C-unwind" fn l_log(l: *mut lua_State) -> c_int {
    let argc = lua_gettop(l);
    if argc < 2 {
        push_error(l, b"redis.log() requires two arguments or more.");
        lua_error(l)
    }
    if lua_isnumber(l, -argc) == 0 {
        push_error(l, b"First argument must be a number (log level).");
        lua_error(l)
    }
    let level = c_cast_i32(lua_tonumber(l, -argc));
    if !(0..=3).contains(&level) {
        push_error(l, b"Invalid debug level.");
        lua_error(l)
    }
    log_line(l, argc, level);
    0
}

unsafe fn log_line(l: *mut lua_State, argc: c_int, level: i32) {
    let mut line = Vec::new();
    for j in 1..argc {
        if let Some(s) = to_bytes(l, -argc + j) {
            if j != 1 {
                line.push(b' ');
            }
            line.extend_from_slice(s);
        }
    }
    // Redis logs at verbosity notice by default: debug/verbose are dropped.
    if level >= 2 {
        let mark = if level == 3 { '#' } else { '*' };
        eprintln!("ferrite: {mark} {}", String::from_utf8_lossy(&line));
    }
}

unsafe extern "C-unwind" fn l_setresp(l: *mut lua_State) -> c_int {
    let Some(ctx) = run_ctx() else {
        push_error(l, b"redis.setresp can only be called inside a script invocation");
        lua_error(l)
    };
    if lua_gettop(l) != 1 {
        push_error(l, b"redis.setresp() requires one argument.");
        lua_error(l)
    }
    let resp = c_cast_i32(lua_tonumber(l, -1));
    if resp != 2 && resp != 3 {
        push_error(l, b"RESP version must be 2 or 3.");
        lua_error(l)
    }
    ctx.client.resp3 = resp == 3;
    0
}

unsafe extern "C-unwind" fn l_acl_check_cmd(l: *mut lua_State) -> c_int {
    let Some(ctx) = run_ctx() else {
        push_error(l, b"redis.acl_check_cmd can only be called inside a script invocation");
        lua_error(l)
    };
    let args = match call_args(l) {
        Ok(a) => a,
        Err(()) => lua_error(l),
    };
    let srv: &Server = &*ctx.srv;
    // Redis's lookupCommand: no arity check here.
    let meta = srv.registry.get(&args[0]).and_then(|cmd| {
        if !cmd.meta.subcommands.is_empty() && args.len() >= 2 {
            cmd.meta.subcommand(&args[1])
        } else {
            Some(cmd.meta)
        }
    });
    let ok = meta.map(|meta| crate::acl::allowed(srv, &ctx.client, meta, &args));
    match ok {
        Some(b) => {
            lua_pushboolean(l, b as c_int);
            1
        }
        None => {
            push_error(l, b"Invalid command passed to redis.acl_check_cmd()");
            lua_error(l)
        }
    }
}

// math.random with Redis's rand48 (same sequence on every platform).
static RAND48: parking_lot::Mutex<u64> = parking_lot::Mutex::new(0x1234_ABCD_330E);

fn lrand48() -> i32 {
    let mut x = RAND48.lock();
    *x = (x.wrapping_mul(0x5_DEEC_E66D).wrapping_add(0xB)) & 0xFFFF_FFFF_FFFF;
    (*x >> 17) as i32
}

unsafe extern "C-unwind" fn l_math_random(l: *mut lua_State) -> c_int {
    if run_ctx().is_none() {
        raise_where(l, "math.random can only be called inside a script invocation");
    }
    let max = i32::MAX as f64;
    let r = (lrand48() % i32::MAX) as f64 / max;
    match lua_gettop(l) {
        0 => lua_pushnumber(l, r),
        1 => {
            let u = luaL_checkinteger(l, 1) as c_int;
            if u < 1 {
                luaL_argerror(l, 1, cs!("interval is empty"));
            }
            lua_pushnumber(l, (r * u as f64).floor() + 1.0);
        }
        2 => {
            let lo = luaL_checkinteger(l, 1) as c_int;
            let u = luaL_checkinteger(l, 2) as c_int;
            if lo > u {
                luaL_argerror(l, 2, cs!("interval is empty"));
            }
            lua_pushnumber(l, (r * (u as f64 - lo as f64 + 1.0)).floor() + lo as f64);
        }
        _ => raise_where(l, "wrong number of arguments"),
    }
    1
}

unsafe extern "C-unwind" fn l_math_randomseed(l: *mut lua_State) -> c_int {
    if run_ctx().is_none() {
        raise_where(l, "math.randomseed can only be called inside a script invocation");
    }
    let seed = luaL_checkinteger(l, 1) as i32 as u32;
    *RAND48.lock() = ((seed as u64) << 16) | 0x330E;
    0
}

/// VM instructions between two runs of the count hook (Redis: 100000).
const HOOK_EVERY: c_int = 100_000;

/// The count hook: SCRIPT KILL / FUNCTION KILL, and leaving the runtime's
/// scheduling once the script turns out long.
unsafe extern "C-unwind" fn kill_hook(l: *mut lua_State, _ar: *mut lua_Debug) {
    let Some(ctx) = run_ctx() else { return };
    if ctx.detach_attempts < 3 && ctx.started.elapsed() >= std::time::Duration::from_millis(2) {
        ctx.detach_attempts += 1;
        super::detach_from_runtime();
    }
    let srv: &Server = &*ctx.srv;
    // SHUTDOWN (NOSAVE or a signal) stops any script, even one that wrote.
    if srv.scripting.kill.load(Ordering::Relaxed) || srv.shutting_down.load(Ordering::Relaxed) {
        // Fire on every line from now on so pcall cannot swallow it.
        lua_sethook(l, Some(kill_hook), LUA_MASKLINE, 0);
        push_error(l, b"Script killed by user with SCRIPT KILL...");
        lua_error(l)
    }
}

/// The FUNCTION LOAD hook: 500 ms for the library's top-level code.
unsafe extern "C-unwind" fn load_hook(l: *mut lua_State, _ar: *mut lua_Debug) {
    let p = LOAD.with(|c| c.get());
    if p.is_null() {
        return;
    }
    let expired = {
        let ctx = &*p;
        ctx.timeout_ms > 0 && ctx.start.elapsed().as_millis() as u64 > ctx.timeout_ms
    };
    if expired {
        lua_sethook(l, Some(load_hook), LUA_MASKLINE, 0);
        push_error(l, b"FUNCTION LOAD timeout");
        lua_error(l)
    }
}

// ------------------------------------------------------------ register_function

fn valid_name(n: &[u8]) -> bool {
    !n.is_empty() && n.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'_')
}

/// Read `register_function`'s arguments. Ok = (name, desc, flags) with the
/// callback pushed on top of the stack; Err = error message.
unsafe fn register_args(l: *mut lua_State) -> Result<(Vec<u8>, Option<Vec<u8>>, u32), &'static str> {
    let argc = lua_gettop(l);
    if !(1..=2).contains(&argc) {
        return Err("wrong number of arguments to redis.register_function");
    }
    if argc == 2 {
        if lua_isstring(l, 1) == 0 {
            return Err("first argument to redis.register_function must be a string");
        }
        let name = to_bytes(l, 1).unwrap_or_default().to_vec();
        if lua_type(l, 2) != LUA_TFUNCTION {
            return Err("second argument to redis.register_function must be a function");
        }
        lua_pushvalue(l, 2);
        return Ok((name, None, 0));
    }
    if lua_type(l, 1) != LUA_TTABLE {
        return Err("calling redis.register_function with a single argument is only applicable to Lua table (representing named arguments).");
    }
    let (mut name, mut desc, mut flags, mut cb) = (None, None, 0u32, false);
    lua_pushnil(l);
    while lua_next(l, 1) != 0 {
        if lua_type(l, -2) != LUA_TSTRING && lua_type(l, -2) != LUA_TNUMBER {
            return Err("named argument key given to redis.register_function is not a string");
        }
        // Copy the key: to_bytes on a number key would convert it in place.
        lua_pushvalue(l, -2);
        let key = to_bytes(l, -1).unwrap_or_default().to_ascii_lowercase();
        lua_pop(l, 1);
        match &key[..] {
            b"function_name" => {
                if lua_isstring(l, -1) == 0 {
                    return Err("function_name argument given to redis.register_function must be a string");
                }
                name = Some(to_bytes(l, -1).unwrap_or_default().to_vec());
            }
            b"description" => {
                if lua_isstring(l, -1) == 0 {
                    return Err("description argument given to redis.register_function must be a string");
                }
                desc = Some(to_bytes(l, -1).unwrap_or_default().to_vec());
            }
            b"callback" => {
                if lua_type(l, -1) != LUA_TFUNCTION {
                    return Err("callback argument given to redis.register_function must be a function");
                }
                lua_pushvalue(l, -1);
                lua_setfield(l, LUA_REGISTRYINDEX, cs!("__ferrite_cb"));
                cb = true;
            }
            b"flags" => {
                if lua_type(l, -1) != LUA_TTABLE {
                    return Err(
                        "flags argument to redis.register_function must be a table representing function flags",
                    );
                }
                let mut j = 1;
                loop {
                    lua_rawgeti_(l, -1, j);
                    if lua_type(l, -1) == LUA_TNIL {
                        lua_pop(l, 1);
                        break;
                    }
                    if lua_type(l, -1) != LUA_TSTRING {
                        lua_pop(l, 1);
                        return Err("unknown flag given");
                    }
                    let f = to_bytes(l, -1).unwrap_or_default();
                    match FLAG_NAMES.iter().find(|(n, _)| n.as_bytes().eq_ignore_ascii_case(f)) {
                        Some((_, v)) => flags |= v,
                        None => {
                            lua_pop(l, 1);
                            return Err("unknown flag given");
                        }
                    }
                    lua_pop(l, 1);
                    j += 1;
                }
            }
            _ => return Err("unknown argument given to redis.register_function"),
        }
        lua_pop(l, 1);
    }
    let Some(name) = name else { return Err("redis.register_function must get a function name argument") };
    if !cb {
        return Err("redis.register_function must get a callback argument");
    }
    lua_getfield(l, LUA_REGISTRYINDEX, cs!("__ferrite_cb"));
    Ok((name, desc, flags))
}

unsafe fn register_inner(l: *mut lua_State) -> Result<(), Vec<u8>> {
    let p = LOAD.with(|c| c.get());
    if p.is_null() {
        return Err(b"redis.register_function can only be called on FUNCTION LOAD command".to_vec());
    }
    let (name, desc, flags) = register_args(l).map_err(|e| e.as_bytes().to_vec())?;
    let ctx = &mut *p;
    if !valid_name(&name) {
        lua_pop(l, 1);
        return Err(b"Library names can only contain letters, numbers, or underscores(_) and must be at least one character long".to_vec());
    }
    let name = String::from_utf8_lossy(&name).into_owned();
    if ctx.functions.iter().any(|f| f.name == name) {
        lua_pop(l, 1);
        return Err(b"Function already exists in the library".to_vec());
    }
    let fref = luaL_ref(l, LUA_REGISTRYINDEX);
    ctx.functions.push(FuncInfo { name, desc, flags, fref });
    Ok(())
}

unsafe extern "C-unwind" fn l_register_function(l: *mut lua_State) -> c_int {
    let r = register_inner(l);
    if let Err(e) = r {
        push_error(l, &e);
        lua_error(l)
    }
    0
}

// ------------------------------------------------------------ state setup

unsafe fn set_cfn(l: *mut lua_State, name: *const c_char, f: lua_CFunction) {
    lua_pushcfunction(l, f);
    lua_setfield(l, -2, name);
}

unsafe fn set_num(l: *mut lua_State, name: *const c_char, v: f64) {
    lua_pushnumber(l, v);
    lua_setfield(l, -2, name);
}

unsafe fn register_log(l: *mut lua_State) {
    set_cfn(l, cs!("log"), l_log);
    set_num(l, cs!("LOG_DEBUG"), 0.0);
    set_num(l, cs!("LOG_VERBOSE"), 1.0);
    set_num(l, cs!("LOG_NOTICE"), 2.0);
    set_num(l, cs!("LOG_WARNING"), 3.0);
}

unsafe fn register_version(l: *mut lua_State) {
    set_num(l, cs!("REDIS_VERSION_NUM"), 0x07000f as f64);
    lua_pushstring(l, cs!("7.0.15"));
    lua_setfield(l, -2, cs!("REDIS_VERSION"));
}

/// Ferrite's own Lua: the error handler, Redis's pcall, and the read-only
/// protection of globals and library tables (Redis patches Lua for that;
/// here proxies with `__newindex` errors do it). Returns the new globals
/// proxy, the error handler, the real globals and a mode switch.
const PRELUDE: &str = r#"
local mode = ...
local G = _G
local dbg = debug
local rawget, rawset, setmetatable, getmetatable, error, type, tostring, select, unpack, raw_pcall =
      rawget, rawset, setmetatable, getmetatable, error, type, tostring, select, unpack, pcall
G.debug = nil

local function handler(err)
  local lvl = 2
  local i = dbg.getinfo(lvl, 'nSl')
  if i and i.what == 'C' then lvl = 3; i = dbg.getinfo(lvl, 'nSl') end
  while i and (i.what == 'C' or i.source == '=[redis]') do
    lvl = lvl + 1
    i = dbg.getinfo(lvl, 'nSl')
  end
  if type(err) ~= 'table' then err = {err = 'ERR ' .. tostring(err)} end
  if i then
    err['source'] = i.source
    err['line'] = i.currentline
  end
  return err
end

if mode == 'eval' then G.__redis__err__handler = handler end

local function pack(...) return {n = select('#', ...), ...} end
G.pcall = function(...)
  local r = pack(raw_pcall(...))
  if not r[1] and type(r[2]) == 'table' then
    local e = r[2].err
    if type(e) == 'string' or type(e) == 'number' then r[2] = e end
  end
  return unpack(r, 1, r.n)
end

local protected = setmetatable({}, {__mode = 'k'})
-- proxy -> the table it shows (pairs, next and rawget see through it)
local realof = setmetatable({}, {__mode = 'k'})
local function ro() error('Attempt to modify a readonly table', 2) end
local function protect(real, strict)
  local mt = {__newindex = ro}
  if strict then
    mt.__index = function(t, k)
      local v = real[k]
      if v == nil then error("Script attempted to access nonexistent global variable '" .. tostring(k) .. "'", 2) end
      return v
    end
  else
    mt.__index = real
  end
  local mtp = setmetatable({}, {__index = mt, __newindex = ro, __metatable = false})
  mt.__metatable = mtp
  local p = setmetatable({}, mt)
  protected[p] = true
  protected[mtp] = true
  realof[p] = real
  return p
end

-- Binary chunks are refused (Redis patches Lua's loader for that).
local raw_loadstring, raw_load, concat = loadstring, load, table.concat
G.loadstring = function(s, name)
  if type(s) == 'string' and s:byte(1) == 27 then return raw_loadstring(' ' .. s, name or s) end
  return raw_loadstring(s, name)
end
G.load = function(f, name)
  if type(f) ~= 'function' then return raw_load(f, name) end
  local parts = {}
  while true do
    local p = f()
    if p == nil or p == '' then break end
    if type(p) ~= 'string' then return nil, 'reader function must return a string' end
    parts[#parts + 1] = p
  end
  return G.loadstring(concat(parts), name)
end
local raw_rawset, raw_setmetatable, raw_next, raw_pairs = rawset, setmetatable, next, pairs
G.next = function(t, k) return raw_next(realof[t] or t, k) end
local mynext = G.next
G.pairs = function(t)
  local r = realof[t]
  if r then return mynext, t, nil end
  return raw_pairs(t)
end
G.rawget = function(t, k) return rawget(realof[t] or t, k) end
G.rawset = function(t, k, v)
  if protected[t] then error('Attempt to modify a readonly table', 0) end
  return raw_rawset(t, k, v)
end
G.setmetatable = function(t, m)
  if protected[t] then error('Attempt to modify a readonly table', 0) end
  return raw_setmetatable(t, m)
end

local real_string = G.string
for _, name in ipairs({'redis', 'cjson', 'bit', 'struct', 'cmsgpack', 'string', 'math', 'table', 'coroutine'}) do
  if type(G[name]) == 'table' then G[name] = protect(G[name], false) end
end
local smt = getmetatable('')
if smt then
  smt.__index = G.string
  smt.__metatable = protect({__index = G.string}, false)
end

-- Globals: reads of missing names fail, every write fails.
local cur = G
local gmt = {__newindex = ro}
gmt.__index = function(t, k)
  local v = cur[k]
  if v == nil then error("Script attempted to access nonexistent global variable '" .. tostring(k) .. "'", 2) end
  return v
end
local gmtp = setmetatable({}, {__index = gmt, __newindex = ro, __metatable = false})
gmt.__metatable = gmtp
local proxy = setmetatable({}, gmt)
protected[proxy] = true
realof[proxy] = G
protected[gmtp] = true
G._G = proxy

local libapi
if mode == 'function' then
  local lr = {}
  for k, v in pairs(G.__ferrite_libapi) do lr[k] = v end
  G.__ferrite_libapi = nil
  libapi = {redis = protect(lr, true)}
end
local function setmode(loading)
  if loading then cur = libapi else cur = G end
end
return proxy, handler, G, setmode, realof
"#;

/// Create an interpreter with Redis's libraries, API and sandbox.
unsafe fn new_state(functions: bool) -> Lua {
    let l = luaL_newstate();
    if l.is_null() {
        // Out of memory at startup: nothing sensible to do.
        std::process::abort();
    }
    let libs: [(lua_CFunction, *const c_char); 5] = [
        (luaopen_base, cs!("")),
        (luaopen_table, cs!("table")),
        (luaopen_string, cs!("string")),
        (luaopen_math, cs!("math")),
        (luaopen_debug, cs!("debug")),
    ];
    for (f, name) in libs {
        lua_pushcfunction(l, f);
        lua_pushstring(l, name);
        lua_call(l, 1, 0);
    }
    super::libs::open(l);
    for g in [cs!("dofile"), cs!("loadfile"), cs!("print"), cs!("newproxy"), cs!("getfenv"), cs!("setfenv")] {
        lua_pushnil(l);
        lua_setglobal(l, g);
    }
    // redis.*
    lua_newtable(l);
    set_cfn(l, cs!("call"), l_call);
    set_cfn(l, cs!("pcall"), l_pcall);
    register_log(l);
    register_version(l);
    set_cfn(l, cs!("setresp"), l_setresp);
    set_cfn(l, cs!("sha1hex"), l_sha1hex);
    set_cfn(l, cs!("error_reply"), l_error_reply);
    set_cfn(l, cs!("status_reply"), l_status_reply);
    set_cfn(l, cs!("set_repl"), l_set_repl);
    set_num(l, cs!("REPL_NONE"), 0.0);
    set_num(l, cs!("REPL_AOF"), 1.0);
    set_num(l, cs!("REPL_SLAVE"), 2.0);
    set_num(l, cs!("REPL_REPLICA"), 2.0);
    set_num(l, cs!("REPL_ALL"), 3.0);
    set_cfn(l, cs!("acl_check_cmd"), l_acl_check_cmd);
    if !functions {
        set_cfn(l, cs!("breakpoint"), l_breakpoint);
        set_cfn(l, cs!("debug"), l_noop);
        set_cfn(l, cs!("replicate_commands"), l_replicate_commands);
    }
    lua_setglobal(l, cs!("redis"));
    lua_getglobal(l, cs!("math"));
    set_cfn(l, cs!("random"), l_math_random);
    set_cfn(l, cs!("randomseed"), l_math_randomseed);
    lua_pop(l, 1);
    if functions {
        // The `redis` table library code sees while FUNCTION LOAD runs it.
        lua_newtable(l);
        set_cfn(l, cs!("register_function"), l_register_function);
        register_log(l);
        register_version(l);
        lua_setglobal(l, cs!("__ferrite_libapi"));
    }
    if luaL_loadbuffer(l, PRELUDE.as_ptr() as *const c_char, PRELUDE.len(), cs!("=[redis]")) != 0 {
        std::process::abort();
    }
    lua_pushstring(l, if functions { cs!("function") } else { cs!("eval") });
    if lua_pcall(l, 1, 5, 0) != 0 {
        std::process::abort();
    }
    // Stack: proxy, handler, real globals, setmode, realof.
    lua_setfield(l, LUA_REGISTRYINDEX, cs!("__ferrite_realof"));
    lua_setfield(l, LUA_REGISTRYINDEX, cs!("__ferrite_setmode"));
    lua_setfield(l, LUA_REGISTRYINDEX, cs!("__ferrite_globals"));
    lua_setfield(l, LUA_REGISTRYINDEX, cs!("__ferrite_errh"));
    lua_replace(l, LUA_GLOBALSINDEX);
    let _ = INTERNAL;
    Lua(l)
}

// ------------------------------------------------------------ running

/// How a script is run.
pub struct RunSpec<'a> {
    pub eval: bool,
    pub name: &'a str,
    pub flags: u32,
    pub ro_cmd: bool,
    pub keys: &'a [Bytes],
    pub args: &'a [Bytes],
    /// The caller's whole command (FUNCTION STATS shows it).
    pub argv: &'a [Bytes],
}

unsafe fn push_array(l: *mut lua_State, items: &[Bytes]) {
    lua_createtable(l, items.len().min(1 << 20) as c_int, 0);
    for (j, a) in items.iter().enumerate() {
        push_bytes(l, a);
        lua_rawseti_(l, -2, (j + 1) as c_int);
    }
}

/// Run the function on top of the stack (below it: nothing of ours) with
/// the run context installed, writing the reply.
#[allow(clippy::too_many_arguments)]
unsafe fn call_function<'s>(
    l: *mut lua_State,
    srv: &'s Server,
    caller: &mut Client,
    acc: &mut Access<'s>,
    out: &mut ReplyBuf,
    spec: &RunSpec<'_>,
    oom: bool,
) {
    let compat = spec.flags & F_EVAL_COMPAT != 0;
    let mut client = Client::new(super::lua_handle(srv), true);
    client.db = caller.db;
    client.user = caller.user.clone();
    client.resp3 = false;
    let mut ctx = RunCtx {
        srv,
        acc: acc as *mut Access<'s> as *mut c_void,
        client,
        read_only: spec.ro_cmd || (!compat && spec.flags & F_NO_WRITES != 0),
        allow_oom: !compat && spec.flags & F_ALLOW_OOM != 0,
        oom_at_start: oom,
        wrote: false,
        started: std::time::Instant::now(),
        detach_attempts: 0,
    };
    let sc = &srv.scripting;
    sc.kill.store(false, Ordering::Relaxed);
    sc.wrote.store(false, Ordering::Relaxed);
    sc.running_eval.store(spec.eval, Ordering::Relaxed);
    let start = now_ms();
    *sc.running.lock() =
        Some(RunningInfo { name: spec.name.to_string(), argv: spec.argv.to_vec(), start_ms: start, eval: spec.eval });
    sc.running_since.store(start.max(1), Ordering::Release);
    RUN.with(|c| c.set(&mut ctx as *mut RunCtx));
    super::set_frozen_now(start);
    lua_sethook(l, Some(kill_hook), LUA_MASKCOUNT, HOOK_EVERY);
    // Stack: function. Put the handler below it.
    lua_getfield(l, LUA_REGISTRYINDEX, cs!("__ferrite_errh"));
    lua_insert(l, -2);
    let err = if spec.eval {
        lua_getfield(l, LUA_REGISTRYINDEX, cs!("__ferrite_globals"));
        push_array(l, spec.keys);
        lua_setfield(l, -2, cs!("KEYS"));
        push_array(l, spec.args);
        lua_setfield(l, -2, cs!("ARGV"));
        lua_pop(l, 1);
        lua_pcall(l, 0, 1, -2)
    } else {
        push_array(l, spec.keys);
        push_array(l, spec.args);
        lua_pcall(l, 2, 1, -4)
    };
    // An error reply of EVAL/FCALL fails the call; its error is counted
    // unless the command that raised it already was (Redis's
    // ERR_REPLY_FLAG_NO_STATS_UPDATE).
    let cmd_name = spec.argv.first().map(|a| String::from_utf8_lossy(a).to_ascii_lowercase()).unwrap_or_default();
    let script_error = |counted: bool, msg: &[u8]| {
        srv.stats.failed_call(&cmd_name);
        if !counted {
            srv.stats.error_reply(&String::from_utf8_lossy(msg));
        }
    };
    if err != 0 {
        if lua_type(l, -1) != LUA_TTABLE {
            let msg = to_bytes(l, -1).map(|b| String::from_utf8_lossy(b).into_owned());
            let msg = msg.unwrap_or_else(|| "execution failure".into());
            let msg: String = msg.chars().take(100).collect();
            script_error(false, b"ERR");
            put_error(out, format!("ERR Error running script {}, {}", spec.name, msg).as_bytes());
        } else {
            let info = extract_error(l);
            script_error(info.ignore, &info.msg);
            let mut m = info.msg.clone();
            if let (Some(line), Some(src)) = (&info.line, &info.source) {
                m.extend_from_slice(format!(" script: {}, on ", spec.name).as_bytes());
                m.extend_from_slice(src);
                m.push(b':');
                m.extend_from_slice(line);
                m.push(b'.');
            }
            put_error(out, &m);
        }
        lua_pop(l, 1);
    } else {
        let resp3 = ctx.client.resp3;
        if lua_type(l, -1) == LUA_TTABLE {
            // A returned error table ({err=...}) is an error reply.
            lua_pushstring(l, cs!("err"));
            lua_rawget(l, -2);
            let is_err = lua_type(l, -1) == LUA_TSTRING;
            lua_pop(l, 1);
            if is_err {
                let info = extract_error(l);
                script_error(info.ignore, &info.msg);
            }
        }
        lua_to_resp(l, out, resp3, 0);
    }
    lua_pop(l, 1); // the handler
    lua_sethook(l, None, 0, 0);
    RUN.with(|c| c.set(ptr::null_mut()));
    super::set_frozen_now(0);
    sc.running_since.store(0, Ordering::Release);
    *sc.running.lock() = None;
    // Blocked clients waiting on keys the script fed are served now.
    let ready = std::mem::take(&mut ctx.client.ready_keys);
    if !ready.is_empty() {
        crate::dispatch::serve_blocked(srv, acc, ready);
    }
    static GC: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    if GC.fetch_add(1, Ordering::Relaxed) % 50 == 49 {
        lua_gc(l, LUA_GCSTEP, 50);
    }
}

// ------------------------------------------------------------ EVAL engine

pub struct Script {
    pub body: Bytes,
    pub flags: u32,
}

/// The EVAL interpreter and the script cache.
pub struct EvalEngine {
    lua: Lua,
    pub scripts: HashMap<String, Script>,
}

impl EvalEngine {
    pub fn new() -> EvalEngine {
        EvalEngine { lua: unsafe { new_state(false) }, scripts: HashMap::new() }
    }

    /// SCRIPT FLUSH: a fresh interpreter and an empty cache.
    pub fn reset(&mut self) {
        *self = EvalEngine::new();
    }

    /// Compile and cache a script (SCRIPT LOAD / EVAL). Returns its SHA1.
    pub fn create(&mut self, body: &Bytes) -> Result<String, String> {
        let sha = super::sha1::sha1hex(body);
        if self.scripts.contains_key(&sha) {
            return Ok(sha);
        }
        let (flags, shebang) = eval_shebang(body)?;
        let l = self.lua.0;
        // Binary chunks are parsed as source text (a leading space makes
        // Lua's loader do that), as Redis's patched Lua does.
        let spaced;
        let mut code = &body[shebang..];
        if code.first() == Some(&0x1b) {
            spaced = [b" ", code].concat();
            code = &spaced;
        }
        unsafe {
            if luaL_loadbuffer(l, code.as_ptr() as *const c_char, code.len(), cs!("@user_script")) != 0 {
                let msg = to_bytes(l, -1).map(|b| String::from_utf8_lossy(b).into_owned()).unwrap_or_default();
                lua_pop(l, 1);
                return Err(format!("Error compiling script (new function): {msg}"));
            }
            let fname = format!("f_{sha}\0");
            lua_setfield(l, LUA_REGISTRYINDEX, fname.as_ptr() as *const c_char);
        }
        self.scripts.insert(sha.clone(), Script { body: body.clone(), flags });
        Ok(sha)
    }

    /// Run a cached script.
    pub fn run<'s>(
        &mut self,
        srv: &'s Server,
        caller: &mut Client,
        acc: &mut Access<'s>,
        out: &mut ReplyBuf,
        spec: &RunSpec<'_>,
        oom: bool,
    ) {
        let l = self.lua.0;
        unsafe {
            let fname = format!("f_{}\0", spec.name);
            lua_getfield(l, LUA_REGISTRYINDEX, fname.as_ptr() as *const c_char);
            if lua_type(l, -1) != LUA_TFUNCTION {
                lua_pop(l, 1);
                out.error("NOSCRIPT No matching script. Please use EVAL.");
                return;
            }
            call_function(l, srv, caller, acc, out, spec, oom);
        }
    }

    /// Bytes of Lua memory in use.
    pub fn memory(&self) -> usize {
        unsafe { (lua_gc(self.lua.0, LUA_GCCOUNT, 0) as usize) * 1024 + lua_gc(self.lua.0, LUA_GCCOUNTB, 0) as usize }
    }
}

// ------------------------------------------------------------ FUNCTION engine

pub struct Library {
    pub name: String,
    pub code: Bytes,
    pub functions: Vec<FuncInfo>,
}

/// The function interpreter and its libraries.
pub struct FuncEngine {
    lua: Lua,
    pub libs: BTreeMap<String, Library>,
    /// function name (lowercase: FCALL is case-insensitive) -> library name
    pub funcs: HashMap<String, String>,
}

/// The parts of a library's first line.
fn lib_metadata(code: &[u8]) -> Result<(String, Vec<u8>, usize), String> {
    if !code.starts_with(b"#!") {
        return Err("Missing library metadata".into());
    }
    let Some(end) = code.iter().position(|&c| c == b'\n') else {
        return Err("Invalid library metadata".into());
    };
    let parts = match split_args(&code[..end]) {
        Some(p) if !p.is_empty() => p,
        _ => return Err("Invalid library metadata".into()),
    };
    let engine = parts[0].get(2..).unwrap_or_default().to_vec();
    let mut name: Option<Vec<u8>> = None;
    for p in &parts[1..] {
        if p.len() >= 5 && p[..5].eq_ignore_ascii_case(b"name=") {
            if name.is_some() {
                return Err("Invalid metadata value, name argument was given multiple times".into());
            }
            name = Some(p[5..].to_vec());
            continue;
        }
        return Err(format!("Invalid metadata value given: {}", String::from_utf8_lossy(p)));
    }
    let Some(name) = name else { return Err("Library name was not given".into()) };
    if !valid_name(&name) {
        return Err("Library names can only contain letters, numbers, or underscores(_) and must be at least one character long".into());
    }
    Ok((String::from_utf8_lossy(&name).into_owned(), engine, end))
}

impl FuncEngine {
    pub fn new() -> FuncEngine {
        FuncEngine { lua: unsafe { new_state(true) }, libs: BTreeMap::new(), funcs: HashMap::new() }
    }

    /// FUNCTION FLUSH.
    pub fn flush(&mut self) {
        *self = FuncEngine::new();
    }

    pub fn codes(&self) -> Vec<Vec<u8>> {
        self.libs.values().map(|l| l.code.to_vec()).collect()
    }

    /// Compile and run a library's code, collecting its functions.
    fn compile(&mut self, code: &[u8], body_start: usize, timeout_ms: u64) -> Result<Vec<FuncInfo>, String> {
        let l = self.lua.0;
        let body = &code[body_start..];
        unsafe {
            lua_getfield(l, LUA_REGISTRYINDEX, cs!("__ferrite_setmode"));
            lua_pushboolean(l, 1);
            lua_call(l, 1, 0);
            let res = self.compile_inner(l, body, timeout_ms);
            lua_getfield(l, LUA_REGISTRYINDEX, cs!("__ferrite_setmode"));
            lua_pushboolean(l, 0);
            lua_call(l, 1, 0);
            res
        }
    }

    unsafe fn compile_inner(
        &mut self,
        l: *mut lua_State,
        body: &[u8],
        timeout_ms: u64,
    ) -> Result<Vec<FuncInfo>, String> {
        if luaL_loadbuffer(l, body.as_ptr() as *const c_char, body.len(), cs!("@user_function")) != 0 {
            let msg = to_bytes(l, -1).map(|b| String::from_utf8_lossy(b).into_owned()).unwrap_or_default();
            lua_pop(l, 1);
            return Err(format!("Error compiling function: {msg}"));
        }
        let mut ctx = LoadCtx { functions: Vec::new(), start: std::time::Instant::now(), timeout_ms };
        LOAD.with(|c| c.set(&mut ctx as *mut LoadCtx));
        lua_sethook(l, Some(load_hook), LUA_MASKCOUNT, 100_000);
        let rc = lua_pcall(l, 0, 0, 0);
        lua_sethook(l, None, 0, 0);
        LOAD.with(|c| c.set(ptr::null_mut()));
        if rc != 0 {
            let info = extract_error(l);
            lua_pop(l, 1);
            for f in &ctx.functions {
                luaL_unref(l, LUA_REGISTRYINDEX, f.fref);
            }
            return Err(format!("Error registering functions: {}", String::from_utf8_lossy(&info.msg)));
        }
        Ok(ctx.functions)
    }

    fn unref(&mut self, fs: &[FuncInfo]) {
        for f in fs {
            unsafe { luaL_unref(self.lua.0, LUA_REGISTRYINDEX, f.fref) };
        }
    }

    /// FUNCTION LOAD. Returns the library name.
    pub fn load(&mut self, code: &[u8], replace: bool, timeout_ms: u64) -> Result<String, String> {
        let (name, engine, end) = lib_metadata(code)?;
        if !engine.eq_ignore_ascii_case(b"lua") {
            return Err(format!("Engine '{}' not found", String::from_utf8_lossy(&engine)));
        }
        if self.libs.contains_key(&name) && !replace {
            return Err(format!("Library '{name}' already exists"));
        }
        let fs = self.compile(code, end, timeout_ms)?;
        if fs.is_empty() {
            return Err("No functions registered".into());
        }
        for f in &fs {
            if let Some(owner) = self.funcs.get(&f.name.to_ascii_lowercase()) {
                if *owner != name {
                    let msg = format!("Function {} already exists", f.name);
                    self.unref(&fs);
                    return Err(msg);
                }
            }
        }
        if let Some(old) = self.libs.remove(&name) {
            for f in &old.functions {
                self.funcs.remove(&f.name.to_ascii_lowercase());
            }
            self.unref(&old.functions);
        }
        for f in &fs {
            self.funcs.insert(f.name.to_ascii_lowercase(), name.clone());
        }
        self.libs
            .insert(name.clone(), Library { name: name.clone(), code: Bytes::copy_from_slice(code), functions: fs });
        Ok(name)
    }

    /// FUNCTION DELETE.
    pub fn delete(&mut self, name: &str) -> bool {
        match self.libs.remove(name) {
            Some(old) => {
                for f in &old.functions {
                    self.funcs.remove(&f.name.to_ascii_lowercase());
                }
                self.unref(&old.functions);
                true
            }
            None => false,
        }
    }

    /// Find a function: (library, info).
    pub fn function(&self, name: &str) -> Option<&FuncInfo> {
        let lib = self.funcs.get(&name.to_ascii_lowercase())?;
        self.libs.get(lib)?.functions.iter().find(|f| f.name.eq_ignore_ascii_case(name))
    }

    /// Run a function.
    pub fn run<'s>(
        &mut self,
        srv: &'s Server,
        caller: &mut Client,
        acc: &mut Access<'s>,
        out: &mut ReplyBuf,
        spec: &RunSpec<'_>,
        fref: c_int,
        oom: bool,
    ) {
        let l = self.lua.0;
        unsafe {
            lua_rawgeti_(l, LUA_REGISTRYINDEX, fref);
            call_function(l, srv, caller, acc, out, spec, oom);
        }
    }

    pub fn memory(&self) -> usize {
        unsafe { (lua_gc(self.lua.0, LUA_GCCOUNT, 0) as usize) * 1024 + lua_gc(self.lua.0, LUA_GCCOUNTB, 0) as usize }
    }
}
