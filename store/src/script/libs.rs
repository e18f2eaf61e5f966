//! The libraries Redis bundles with its Lua: `bit` (LuaBitOp), `cjson`
//! (lua-cjson 2.1), `struct` (Roberto Ierusalimschy's struct) and
//! `cmsgpack` (lua-cmsgpack), written against Lua 5.1's C API with the
//! same results and error texts as the C originals for the cases they
//! document. Everything runs before any Lua error is raised, so a raised
//! error never crosses a Rust value with a destructor.

#![allow(clippy::missing_safety_doc)]
// Every function here is a thin layer over the Lua C API.
#![allow(unsafe_op_in_unsafe_fn)]

use super::vm::{cs, push_bytes, to_bytes};
use mlua::ffi::*;
use std::ffi::{c_char, c_int};

unsafe fn set_cfn(l: *mut lua_State, name: *const c_char, f: lua_CFunction) {
    lua_pushcfunction(l, f);
    lua_setfield(l, -2, name);
}

/// Register every library as a global table.
pub unsafe fn open(l: *mut lua_State) {
    open_bit(l);
    open_cjson(l);
    super::libs2::open_struct(l);
    super::libs2::open_cmsgpack(l);
}

/// Raise `msg` with the caller's position (luaL_error). Call only when no
/// Rust value with a destructor is alive in the calling frame.
pub unsafe fn error_at(l: *mut lua_State, msg: &[u8]) -> ! {
    luaL_where(l, 1);
    push_bytes(l, msg);
    lua_concat(l, 2);
    lua_error(l)
}

// ------------------------------------------------------------ bit

unsafe fn barg(l: *mut lua_State, i: c_int) -> u32 {
    let n = luaL_checknumber(l, i);
    (n + 6755399441055744.0).to_bits() as u32
}

unsafe fn bret(l: *mut lua_State, b: u32) -> c_int {
    lua_pushnumber(l, b as i32 as f64);
    1
}

unsafe extern "C-unwind" fn bit_tobit(l: *mut lua_State) -> c_int {
    bret(l, barg(l, 1))
}
unsafe extern "C-unwind" fn bit_bnot(l: *mut lua_State) -> c_int {
    bret(l, !barg(l, 1))
}
unsafe extern "C-unwind" fn bit_band(l: *mut lua_State) -> c_int {
    let mut b = barg(l, 1);
    for i in (2..=lua_gettop(l)).rev() {
        b &= barg(l, i);
    }
    bret(l, b)
}
unsafe extern "C-unwind" fn bit_bor(l: *mut lua_State) -> c_int {
    let mut b = barg(l, 1);
    for i in (2..=lua_gettop(l)).rev() {
        b |= barg(l, i);
    }
    bret(l, b)
}
unsafe extern "C-unwind" fn bit_bxor(l: *mut lua_State) -> c_int {
    let mut b = barg(l, 1);
    for i in (2..=lua_gettop(l)).rev() {
        b ^= barg(l, i);
    }
    bret(l, b)
}
unsafe extern "C-unwind" fn bit_lshift(l: *mut lua_State) -> c_int {
    let (b, n) = (barg(l, 1), barg(l, 2) & 31);
    bret(l, b << n)
}
unsafe extern "C-unwind" fn bit_rshift(l: *mut lua_State) -> c_int {
    let (b, n) = (barg(l, 1), barg(l, 2) & 31);
    bret(l, b >> n)
}
unsafe extern "C-unwind" fn bit_arshift(l: *mut lua_State) -> c_int {
    let (b, n) = (barg(l, 1), barg(l, 2) & 31);
    bret(l, ((b as i32) >> n) as u32)
}
unsafe extern "C-unwind" fn bit_rol(l: *mut lua_State) -> c_int {
    let (b, n) = (barg(l, 1), barg(l, 2) & 31);
    bret(l, b.rotate_left(n))
}
unsafe extern "C-unwind" fn bit_ror(l: *mut lua_State) -> c_int {
    let (b, n) = (barg(l, 1), barg(l, 2) & 31);
    bret(l, b.rotate_right(n))
}
unsafe extern "C-unwind" fn bit_bswap(l: *mut lua_State) -> c_int {
    bret(l, barg(l, 1).swap_bytes())
}
unsafe extern "C-unwind" fn bit_tohex(l: *mut lua_State) -> c_int {
    let mut b = barg(l, 1);
    let mut n: i32 = if lua_isnone(l, 2) != 0 { 8 } else { barg(l, 2) as i32 };
    let upper = n < 0;
    if upper {
        n = n.wrapping_neg();
    }
    // -INT_MIN overflows; the C code (as compiled) then takes the "> 8" branch.
    if !(0..=8).contains(&n) {
        n = 8;
    }
    if (0..8).contains(&n) {
        b &= (1u32 << (n * 4)).wrapping_sub(1);
    }
    let digits: &[u8; 16] = if upper { b"0123456789ABCDEF" } else { b"0123456789abcdef" };
    let mut buf = [0u8; 8];
    let n = n.clamp(0, 8) as usize;
    let mut v = b;
    for i in (0..n).rev() {
        buf[i] = digits[(v & 15) as usize];
        v >>= 4;
    }
    push_bytes(l, &buf[..n]);
    1
}

unsafe fn open_bit(l: *mut lua_State) {
    lua_newtable(l);
    set_cfn(l, cs!("tobit"), bit_tobit);
    set_cfn(l, cs!("bnot"), bit_bnot);
    set_cfn(l, cs!("band"), bit_band);
    set_cfn(l, cs!("bor"), bit_bor);
    set_cfn(l, cs!("bxor"), bit_bxor);
    set_cfn(l, cs!("lshift"), bit_lshift);
    set_cfn(l, cs!("rshift"), bit_rshift);
    set_cfn(l, cs!("arshift"), bit_arshift);
    set_cfn(l, cs!("rol"), bit_rol);
    set_cfn(l, cs!("ror"), bit_ror);
    set_cfn(l, cs!("bswap"), bit_bswap);
    set_cfn(l, cs!("tohex"), bit_tohex);
    lua_setglobal(l, cs!("bit"));
}

// ------------------------------------------------------------ cjson

#[derive(Clone, Copy)]
struct JsonCfg {
    sparse_convert: bool,
    sparse_ratio: i32,
    sparse_safe: i32,
    encode_max_depth: i32,
    decode_max_depth: i32,
    precision: i32,
    encode_invalid: i32,
    decode_invalid: bool,
    keep_buffer: i32,
}

const JSON_DEFAULTS: JsonCfg = JsonCfg {
    sparse_convert: false,
    sparse_ratio: 2,
    sparse_safe: 10,
    encode_max_depth: 1000,
    decode_max_depth: 1000,
    precision: 14,
    encode_invalid: 0,
    decode_invalid: true,
    keep_buffer: 1,
};

/// The configuration of the cjson instance whose function is running: a
/// userdata bound as the function's upvalue (as lua-cjson does), so each
/// interpreter and each `cjson.new()` has its own.
unsafe fn cfg_mut<'a>(l: *mut lua_State) -> &'a mut JsonCfg {
    let p = lua_touserdata(l, lua_upvalueindex(1)) as *mut JsonCfg;
    if p.is_null() {
        // Not reachable: every cjson function is created with its upvalue.
        static mut FALLBACK: JsonCfg = JSON_DEFAULTS;
        #[allow(static_mut_refs)]
        return &mut FALLBACK;
    }
    &mut *p
}

/// `%.<prec>g` through the C library, as lua-cjson formats numbers.
pub fn fmt_g(d: f64, prec: i32) -> Vec<u8> {
    let mut buf = [0u8; 64];
    let fmt = format!("%.{}g\0", prec.clamp(1, 17));
    // SAFETY: buffer and format are NUL-terminated and sized.
    let n = unsafe { libc::snprintf(buf.as_mut_ptr() as *mut c_char, buf.len(), fmt.as_ptr() as *const c_char, d) };
    let n = (n.max(0) as usize).min(buf.len() - 1);
    buf[..n].to_vec()
}

unsafe fn type_name(l: *mut lua_State, idx: c_int) -> String {
    let p = lua_typename(l, lua_type(l, idx));
    std::ffi::CStr::from_ptr(p).to_string_lossy().into_owned()
}

fn json_escape(out: &mut Vec<u8>, s: &[u8]) {
    out.push(b'"');
    for &c in s {
        match c {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'/' => out.extend_from_slice(b"\\/"),
            8 => out.extend_from_slice(b"\\b"),
            b'\t' => out.extend_from_slice(b"\\t"),
            b'\n' => out.extend_from_slice(b"\\n"),
            12 => out.extend_from_slice(b"\\f"),
            b'\r' => out.extend_from_slice(b"\\r"),
            c if c < 32 || c == 127 => out.extend_from_slice(format!("\\u{c:04x}").as_bytes()),
            c => out.push(c),
        }
    }
    out.push(b'"');
}

/// Array length of the table at the top, -1 if not an array, Err on an
/// excessively sparse array.
unsafe fn array_length(l: *mut lua_State, cfg: &JsonCfg) -> Result<i64, ()> {
    let (mut max, mut items) = (0i64, 0i64);
    lua_pushnil(l);
    while lua_next(l, -2) != 0 {
        if lua_type(l, -2) == LUA_TNUMBER {
            let k = lua_tonumber(l, -2);
            if k.floor() == k && k >= 1.0 {
                if k > max as f64 {
                    max = k as i64;
                }
                items += 1;
                lua_pop(l, 1);
                continue;
            }
        }
        lua_pop(l, 2);
        return Ok(-1);
    }
    if cfg.sparse_ratio > 0 && max > items * cfg.sparse_ratio as i64 && max > cfg.sparse_safe as i64 {
        if !cfg.sparse_convert {
            return Err(());
        }
        return Ok(-1);
    }
    Ok(max)
}

/// Encode the value at `idx` (absolute). Err = error message (with the
/// type of the offending value already in it).
unsafe fn encode(l: *mut lua_State, idx: c_int, out: &mut Vec<u8>, depth: i32, cfg: &JsonCfg) -> Result<(), String> {
    match lua_type(l, idx) {
        LUA_TSTRING => json_escape(out, to_bytes(l, idx).unwrap_or_default()),
        LUA_TNUMBER => encode_number(l, idx, out, cfg)?,
        LUA_TBOOLEAN => out.extend_from_slice(if lua_toboolean(l, idx) != 0 { b"true" } else { b"false" }),
        LUA_TNIL => out.extend_from_slice(b"null"),
        LUA_TLIGHTUSERDATA if lua_touserdata(l, idx).is_null() => out.extend_from_slice(b"null"),
        LUA_TTABLE => {
            let depth = depth + 1;
            if depth > cfg.encode_max_depth {
                return Err(format!("Cannot serialise, excessive nesting ({depth})"));
            }
            if lua_checkstack(l, 3) == 0 {
                return Err(format!("Cannot serialise, excessive nesting ({depth})"));
            }
            super::vm::push_real_table(l, idx);
            let t = lua_gettop(l);
            let len = match array_length(l, cfg) {
                Ok(n) => n,
                Err(()) => {
                    lua_pop(l, 1);
                    return Err("Cannot serialise table: excessively sparse array".into());
                }
            };
            let r = if len > 0 {
                out.push(b'[');
                let mut r = Ok(());
                for i in 1..=len {
                    if i > 1 {
                        out.push(b',');
                    }
                    lua_rawgeti_(l, t, i as c_int);
                    r = encode(l, lua_gettop(l), out, depth, cfg);
                    lua_pop(l, 1);
                    if r.is_err() {
                        break;
                    }
                }
                out.push(b']');
                r
            } else {
                out.push(b'{');
                let mut first = true;
                let mut r = Ok(());
                lua_pushnil(l);
                while lua_next(l, t) != 0 {
                    if !first {
                        out.push(b',');
                    }
                    first = false;
                    match lua_type(l, -2) {
                        LUA_TSTRING => json_escape(out, to_bytes(l, -2).unwrap_or_default()),
                        LUA_TNUMBER => {
                            out.push(b'"');
                            if let Err(e) = encode_number(l, lua_gettop(l) - 1, out, cfg) {
                                r = Err(e);
                            }
                            out.push(b'"');
                        }
                        _ => {
                            r = Err(format!(
                                "Cannot serialise {}: table key must be a number or string",
                                type_name(l, -2)
                            ));
                        }
                    }
                    if r.is_ok() {
                        out.push(b':');
                        r = encode(l, lua_gettop(l), out, depth, cfg);
                    }
                    if r.is_err() {
                        lua_pop(l, 2);
                        break;
                    }
                    lua_pop(l, 1);
                }
                out.push(b'}');
                r
            };
            lua_settop(l, t - 1);
            r?;
        }
        _ => return Err(format!("Cannot serialise {}: type not supported", type_name(l, idx))),
    }
    Ok(())
}

unsafe fn encode_number(l: *mut lua_State, idx: c_int, out: &mut Vec<u8>, cfg: &JsonCfg) -> Result<(), String> {
    let d = lua_tonumber(l, idx);
    if d.is_nan() || d.is_infinite() {
        if cfg.encode_invalid == 0 {
            return Err("Cannot serialise number: must not be NaN or Inf".into());
        }
        if cfg.encode_invalid == 1 {
            out.extend_from_slice(if d.is_nan() {
                b"nan"
            } else if d > 0.0 {
                b"inf"
            } else {
                b"-inf"
            });
        } else {
            out.extend_from_slice(b"null");
        }
        return Ok(());
    }
    out.extend_from_slice(&fmt_g(d, cfg.precision));
    Ok(())
}

unsafe fn encode_entry(l: *mut lua_State) -> Result<Vec<u8>, String> {
    let cfg = *cfg_mut(l);
    let mut out = Vec::new();
    encode(l, 1, &mut out, 0, &cfg)?;
    Ok(out)
}

unsafe extern "C-unwind" fn json_encode(l: *mut lua_State) -> c_int {
    if lua_gettop(l) != 1 {
        luaL_argerror(l, 1, cs!("expected 1 argument"));
    }
    let r = encode_entry(l);
    match r {
        Ok(v) => {
            push_bytes(l, &v);
            1
        }
        Err(e) => {
            // The error text is pushed first so no Rust value is alive.
            push_bytes(l, e.as_bytes());
            drop(e);
            luaL_where(l, 1);
            lua_insert(l, -2);
            lua_concat(l, 2);
            lua_error(l)
        }
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Tok {
    ObjBegin,
    ObjEnd,
    ArrBegin,
    ArrEnd,
    Str,
    Num,
    Bool,
    Null,
    Colon,
    Comma,
    End,
    Error,
}

fn tok_name(t: Tok) -> &'static str {
    match t {
        Tok::ObjBegin => "T_OBJ_BEGIN",
        Tok::ObjEnd => "T_OBJ_END",
        Tok::ArrBegin => "T_ARR_BEGIN",
        Tok::ArrEnd => "T_ARR_END",
        Tok::Str => "T_STRING",
        Tok::Num => "T_NUMBER",
        Tok::Bool => "T_BOOLEAN",
        Tok::Null => "T_NULL",
        Tok::Colon => "T_COLON",
        Tok::Comma => "T_COMMA",
        Tok::End => "T_END",
        Tok::Error => "T_ERROR",
    }
}

struct Token {
    t: Tok,
    index: usize,
    s: Vec<u8>,
    n: f64,
    b: bool,
    err: &'static str,
}

struct Parser<'a> {
    d: &'a [u8],
    p: usize,
    depth: i32,
    max_depth: i32,
    decode_invalid: bool,
}

/// lua-cjson's json_is_invalid_number: text that is not a JSON number
/// but that strtod may still read (+, hex, leading zeros, inf, nan).
fn invalid_number(p: &[u8]) -> bool {
    let mut p = p;
    if p.first() == Some(&b'+') {
        return true;
    }
    if p.first() == Some(&b'-') {
        p = &p[1..];
    }
    match p.first() {
        Some(&b'0') => {
            let c2 = p.get(1).copied().unwrap_or(0);
            (c2 | 0x20) == b'x' || c2.is_ascii_digit()
        }
        Some(&c) if c <= b'9' => false,
        None => false,
        _ => {
            let l3 = p.get(..3).map(|x| x.to_ascii_lowercase());
            matches!(l3.as_deref(), Some(b"inf") | Some(b"nan"))
        }
    }
}

fn hexval(c: u8) -> Option<u32> {
    (c as char).to_digit(16)
}

impl Parser<'_> {
    fn next(&mut self) -> Token {
        while self.p < self.d.len() && matches!(self.d[self.p], b' ' | b'\t' | b'\n' | b'\r') {
            self.p += 1;
        }
        let mut t = Token { t: Tok::End, index: self.p, s: Vec::new(), n: 0.0, b: false, err: "" };
        let Some(&c) = self.d.get(self.p) else { return t };
        let simple = match c {
            b'{' => Some(Tok::ObjBegin),
            b'}' => Some(Tok::ObjEnd),
            b'[' => Some(Tok::ArrBegin),
            b']' => Some(Tok::ArrEnd),
            b':' => Some(Tok::Colon),
            b',' => Some(Tok::Comma),
            0 => Some(Tok::End),
            _ => None,
        };
        if let Some(s) = simple {
            if s != Tok::End {
                self.p += 1;
            }
            t.t = s;
            return t;
        }
        if c == b'"' {
            return self.string(t);
        }
        let rest = &self.d[self.p..];
        if c == b'-' || c.is_ascii_digit() {
            if !self.decode_invalid && invalid_number(rest) {
                t.t = Tok::Error;
                t.err = "invalid number";
                return t;
            }
            return self.number(t);
        }
        for (lit, tok, b) in
            [(&b"true"[..], Tok::Bool, true), (b"false", Tok::Bool, false), (b"null", Tok::Null, false)]
        {
            if rest.starts_with(lit) {
                self.p += lit.len();
                t.t = tok;
                t.b = b;
                return t;
            }
        }
        if self.decode_invalid && invalid_number(rest) {
            return self.number(t);
        }
        t.t = Tok::Error;
        t.err = "invalid token";
        t
    }

    /// A number token through strtod (lua-cjson's fpconv_strtod).
    fn number(&mut self, mut t: Token) -> Token {
        let rest = &self.d[self.p..];
        let take = rest.len().min(512);
        let mut buf = rest[..take].to_vec();
        buf.push(0);
        let mut end: *mut c_char = std::ptr::null_mut();
        // SAFETY: NUL-terminated buffer.
        let v = unsafe { libc::strtod(buf.as_ptr() as *const c_char, &mut end) };
        let used = (end as usize).saturating_sub(buf.as_ptr() as usize).min(rest.len());
        if used == 0 {
            t.t = Tok::Error;
            t.err = "invalid number";
            return t;
        }
        self.p += used;
        t.t = Tok::Num;
        t.n = v;
        t
    }

    fn string(&mut self, mut t: Token) -> Token {
        self.p += 1;
        let d = self.d;
        loop {
            let c = d.get(self.p).copied().unwrap_or(0);
            if c == 0 {
                t.t = Tok::Error;
                t.err = "unexpected end of string";
                t.index = self.p;
                return t;
            }
            if c == b'"' {
                self.p += 1;
                break;
            }
            if c != b'\\' {
                t.s.push(c);
                self.p += 1;
                continue;
            }
            let e = d.get(self.p + 1).copied().unwrap_or(0);
            match e {
                b'"' | b'\\' | b'/' => t.s.push(e),
                b'b' => t.s.push(8),
                b'f' => t.s.push(12),
                b'n' => t.s.push(b'\n'),
                b'r' => t.s.push(b'\r'),
                b't' => t.s.push(b'\t'),
                b'u' => match self.unicode(self.p) {
                    Some((cp, used)) => {
                        let mut b = [0u8; 4];
                        let s = char::from_u32(cp).unwrap_or('\u{fffd}').encode_utf8(&mut b);
                        t.s.extend_from_slice(s.as_bytes());
                        self.p += used;
                        continue;
                    }
                    None => {
                        t.t = Tok::Error;
                        t.err = "invalid unicode escape code";
                        t.index = self.p;
                        return t;
                    }
                },
                _ => {
                    t.t = Tok::Error;
                    t.err = "invalid escape code";
                    t.index = self.p;
                    return t;
                }
            }
            self.p += 2;
        }
        t.t = Tok::Str;
        t
    }

    /// `\uXXXX` (with a surrogate pair) at `at`: (code point, bytes used).
    fn unicode(&self, at: usize) -> Option<(u32, usize)> {
        let h4 = |p: usize| -> Option<u32> {
            let s = self.d.get(p..p + 4)?;
            let mut v = 0;
            for &c in s {
                v = v * 16 + hexval(c)?;
            }
            Some(v)
        };
        let hi = h4(at + 2)?;
        if (0xDC00..=0xDFFF).contains(&hi) {
            return None;
        }
        if (0xD800..=0xDBFF).contains(&hi) {
            if self.d.get(at + 6..at + 8) != Some(b"\\u") {
                return None;
            }
            let lo = h4(at + 8)?;
            if !(0xDC00..=0xDFFF).contains(&lo) {
                return None;
            }
            return Some((((hi & 0x3FF) << 10 | (lo & 0x3FF)) + 0x10000, 12));
        }
        Some((hi, 6))
    }
}

/// A decode error: message.
fn expected(what: &str, t: &Token) -> String {
    let found = if t.t == Tok::Error { t.err } else { tok_name(t.t) };
    format!("Expected {what} but found {found} at character {}", t.index + 1)
}

unsafe fn decode_value(l: *mut lua_State, p: &mut Parser<'_>, t: Token) -> Result<(), String> {
    match t.t {
        Tok::Str => push_bytes(l, &t.s),
        Tok::Num => lua_pushnumber(l, t.n),
        Tok::Bool => lua_pushboolean(l, t.b as c_int),
        Tok::Null => lua_pushlightuserdata(l, std::ptr::null_mut()),
        Tok::ObjBegin | Tok::ArrBegin => {
            p.depth += 1;
            if p.depth > p.max_depth || lua_checkstack(l, 4) == 0 {
                return Err(format!(
                    "Found too many nested data structures ({}) at character {}",
                    p.depth,
                    t.index + 1
                ));
            }
            lua_newtable(l);
            if t.t == Tok::ObjBegin {
                let mut tk = p.next();
                if tk.t != Tok::ObjEnd {
                    loop {
                        if tk.t != Tok::Str {
                            return Err(expected("object key string", &tk));
                        }
                        push_bytes(l, &tk.s);
                        let c = p.next();
                        if c.t != Tok::Colon {
                            return Err(expected("colon", &c));
                        }
                        let v = p.next();
                        decode_value(l, p, v)?;
                        lua_rawset(l, -3);
                        let n = p.next();
                        if n.t == Tok::ObjEnd {
                            break;
                        }
                        if n.t != Tok::Comma {
                            return Err(expected("comma or object end", &n));
                        }
                        tk = p.next();
                    }
                }
            } else {
                let mut tk = p.next();
                if tk.t != Tok::ArrEnd {
                    let mut i = 1;
                    loop {
                        decode_value(l, p, tk)?;
                        lua_rawseti_(l, -2, i);
                        i += 1;
                        let n = p.next();
                        if n.t == Tok::ArrEnd {
                            break;
                        }
                        if n.t != Tok::Comma {
                            return Err(expected("comma or array end", &n));
                        }
                        tk = p.next();
                    }
                }
            }
            p.depth -= 1;
        }
        _ => return Err(expected("value", &t)),
    }
    Ok(())
}

unsafe fn decode_entry(l: *mut lua_State) -> Result<(), String> {
    let top = lua_gettop(l);
    let data = to_bytes(l, 1).unwrap_or_default().to_vec();
    let (max_depth, decode_invalid) = {
        let c = cfg_mut(l);
        (c.decode_max_depth, c.decode_invalid)
    };
    let mut p = Parser { d: &data, p: 0, depth: 0, max_depth, decode_invalid };
    let t = p.next();
    let r = decode_value(l, &mut p, t).and_then(|_| {
        let e = p.next();
        if e.t != Tok::End {
            Err(expected("the end", &e))
        } else {
            Ok(())
        }
    });
    if r.is_err() {
        lua_settop(l, top);
    }
    r
}

unsafe extern "C-unwind" fn json_decode(l: *mut lua_State) -> c_int {
    if lua_gettop(l) != 1 {
        luaL_argerror(l, 1, cs!("expected 1 argument"));
    }
    luaL_checklstring(l, 1, std::ptr::null_mut());
    let r = decode_entry(l);
    if let Err(e) = r {
        push_bytes(l, e.as_bytes());
        drop(e);
        luaL_where(l, 1);
        lua_insert(l, -2);
        lua_concat(l, 2);
        lua_error(l)
    }
    1
}

/// lua-cjson's json_arg_init: at most `n` arguments, missing ones nil.
/// (No lock is held while a luaL_* check may raise.)
unsafe fn json_args(l: *mut lua_State, n: c_int) {
    if lua_gettop(l) > n {
        luaL_argerror(l, n + 1, cs!("found too many arguments"));
    }
    while lua_gettop(l) < n {
        lua_pushnil(l);
    }
}

/// json_integer_option: set `cur` from argument `i` if given.
unsafe fn int_option(l: *mut lua_State, i: c_int, lo: i64, hi: i64, cur: i32) -> i32 {
    if lua_isnil(l, i) != 0 {
        return cur;
    }
    let v = luaL_checkinteger(l, i) as i32 as i64;
    if v < lo || v > hi {
        let msg = format!("expected integer between {lo} and {hi}\0");
        let mut buf = [0u8; 64];
        let n = msg.len().min(63);
        buf[..n].copy_from_slice(&msg.as_bytes()[..n]);
        drop(msg);
        luaL_argerror(l, 1, buf.as_ptr() as *const c_char);
    }
    v as i32
}

const OFF_ON: [*const c_char; 3] = [c"off".as_ptr(), c"on".as_ptr(), std::ptr::null()];
const OFF_ON_NULL: [*const c_char; 4] = [c"off".as_ptr(), c"on".as_ptr(), c"null".as_ptr(), std::ptr::null()];

/// json_enum_option with boolean shortcuts (true = 1): returns the setting.
unsafe fn enum_option(l: *mut lua_State, i: c_int, cur: i32, opts: &[*const c_char]) -> i32 {
    if lua_isnil(l, i) != 0 {
        return cur;
    }
    if lua_isboolean(l, i) != 0 {
        return lua_toboolean(l, i);
    }
    luaL_checkoption(l, i, std::ptr::null(), opts.as_ptr())
}

unsafe fn push_enum(l: *mut lua_State, v: i32, opts: &[*const c_char]) {
    if v == 0 || v == 1 {
        lua_pushboolean(l, v);
    } else {
        lua_pushstring(l, opts[v as usize]);
    }
}

unsafe extern "C-unwind" fn json_cfg_encode_max_depth(l: *mut lua_State) -> c_int {
    json_args(l, 1);
    let cur = cfg_mut(l).encode_max_depth;
    let v = int_option(l, 1, 1, i32::MAX as i64, cur);
    cfg_mut(l).encode_max_depth = v;
    lua_pushinteger(l, v as lua_Integer);
    1
}

unsafe extern "C-unwind" fn json_cfg_decode_max_depth(l: *mut lua_State) -> c_int {
    json_args(l, 1);
    let cur = cfg_mut(l).decode_max_depth;
    let v = int_option(l, 1, 1, i32::MAX as i64, cur);
    cfg_mut(l).decode_max_depth = v;
    lua_pushinteger(l, v as lua_Integer);
    1
}

unsafe extern "C-unwind" fn json_cfg_precision(l: *mut lua_State) -> c_int {
    json_args(l, 1);
    let cur = cfg_mut(l).precision;
    let v = int_option(l, 1, 1, 14, cur);
    cfg_mut(l).precision = v;
    lua_pushinteger(l, v as lua_Integer);
    1
}

unsafe extern "C-unwind" fn json_cfg_sparse(l: *mut lua_State) -> c_int {
    json_args(l, 3);
    let (conv, ratio, safe) = {
        let c = cfg_mut(l);
        (c.sparse_convert as i32, c.sparse_ratio, c.sparse_safe)
    };
    // Each setting is stored as soon as it is read (a later bad argument
    // leaves the earlier ones applied, as lua-cjson).
    let conv = enum_option(l, 1, conv, &OFF_ON);
    cfg_mut(l).sparse_convert = conv != 0;
    let ratio = int_option(l, 2, 0, i32::MAX as i64, ratio);
    cfg_mut(l).sparse_ratio = ratio;
    let safe = int_option(l, 3, 0, i32::MAX as i64, safe);
    cfg_mut(l).sparse_safe = safe;
    push_enum(l, conv, &OFF_ON);
    lua_pushinteger(l, ratio as lua_Integer);
    lua_pushinteger(l, safe as lua_Integer);
    3
}

unsafe extern "C-unwind" fn json_cfg_keep_buffer(l: *mut lua_State) -> c_int {
    json_args(l, 1);
    let cur = cfg_mut(l).keep_buffer;
    let v = enum_option(l, 1, cur, &OFF_ON);
    cfg_mut(l).keep_buffer = v;
    push_enum(l, v, &OFF_ON);
    1
}

unsafe extern "C-unwind" fn json_cfg_encode_invalid(l: *mut lua_State) -> c_int {
    json_args(l, 1);
    let cur = cfg_mut(l).encode_invalid;
    let v = enum_option(l, 1, cur, &OFF_ON_NULL);
    cfg_mut(l).encode_invalid = v;
    push_enum(l, v, &OFF_ON_NULL);
    1
}

unsafe extern "C-unwind" fn json_cfg_decode_invalid(l: *mut lua_State) -> c_int {
    json_args(l, 1);
    let cur = cfg_mut(l).decode_invalid as i32;
    let v = enum_option(l, 1, cur, &OFF_ON);
    cfg_mut(l).decode_invalid = v != 0;
    push_enum(l, v, &OFF_ON);
    1
}

unsafe extern "C-unwind" fn json_new(l: *mut lua_State) -> c_int {
    push_cjson(l);
    1
}

unsafe fn open_cjson(l: *mut lua_State) {
    push_cjson(l);
    lua_setglobal(l, cs!("cjson"));
}

/// A cjson module table with its own configuration (`cjson.new()` makes
/// another, as lua-cjson).
unsafe fn push_cjson(l: *mut lua_State) {
    lua_newtable(l);
    let cfg = lua_newuserdata(l, std::mem::size_of::<JsonCfg>()) as *mut JsonCfg;
    if !cfg.is_null() {
        cfg.write(JSON_DEFAULTS);
    }
    let funcs: [(*const c_char, lua_CFunction); 10] = [
        (cs!("new"), json_new),
        (cs!("encode"), json_encode),
        (cs!("decode"), json_decode),
        (cs!("encode_sparse_array"), json_cfg_sparse),
        (cs!("encode_max_depth"), json_cfg_encode_max_depth),
        (cs!("decode_max_depth"), json_cfg_decode_max_depth),
        (cs!("encode_number_precision"), json_cfg_precision),
        (cs!("encode_keep_buffer"), json_cfg_keep_buffer),
        (cs!("encode_invalid_numbers"), json_cfg_encode_invalid),
        (cs!("decode_invalid_numbers"), json_cfg_decode_invalid),
    ];
    // Stack: module table, config userdata.
    for (name, f) in funcs.iter() {
        lua_pushvalue(l, -1);
        lua_pushcclosure(l, *f, 1);
        lua_setfield(l, -3, *name);
    }
    lua_pop(l, 1);
    lua_pushlightuserdata(l, std::ptr::null_mut());
    lua_setfield(l, -2, cs!("null"));
    lua_pushstring(l, cs!("cjson"));
    lua_setfield(l, -2, cs!("_NAME"));
    lua_pushstring(l, cs!("2.1.0"));
    lua_setfield(l, -2, cs!("_VERSION"));
}

#[cfg(test)]
mod tests {
    #[test]
    fn fmt() {
        assert_eq!(super::fmt_g(0.1, 14), b"0.1");
        assert_eq!(super::fmt_g(1e20, 14), b"1e+20");
        assert_eq!(super::fmt_g(3.0, 14), b"3");
    }
}
