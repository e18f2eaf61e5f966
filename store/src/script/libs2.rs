//! `struct` and `cmsgpack`, as bundled with Redis's Lua.
//!
//! Errors are raised only after every Rust value of the raising frame is
//! gone (the work happens in inner functions returning `Result`).

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

/// How an inner function failed: raise with the caller's position, or as
/// a bad argument.
enum Fail {
    Msg(String),
    /// Raised without a position (an error of the Lua API itself).
    Plain(&'static str),
    /// struct's "invalid format option 'c'" (the raw byte, argument 1).
    BadOption(u8),
    Arg(c_int, String),
}

/// Raise a failure. The message is moved onto the Lua stack first.
unsafe fn raise(l: *mut lua_State, f: Fail) -> ! {
    match f {
        Fail::Msg(m) => {
            luaL_where(l, 1);
            push_bytes(l, m.as_bytes());
            drop(m);
            lua_concat(l, 2);
            lua_error(l)
        }
        Fail::BadOption(c) => {
            let mut buf = *b"invalid format option 'X'\0";
            buf[23] = c;
            luaL_argerror(l, 1, buf.as_ptr() as *const c_char);
            lua_error(l)
        }
        Fail::Plain(m) => {
            push_bytes(l, m.as_bytes());
            lua_error(l)
        }
        Fail::Arg(i, m) => {
            let mut buf = [0u8; 128];
            let n = m.len().min(127);
            buf[..n].copy_from_slice(&m.as_bytes()[..n]);
            drop(m);
            luaL_argerror(l, i, buf.as_ptr() as *const c_char);
            lua_error(l)
        }
    }
}

// ------------------------------------------------------------ struct

/// luaL_checktype's message: "<what> expected, got <type>".
unsafe fn expected_msg(l: *mut lua_State, i: c_int, what: &str) -> String {
    let t = std::ffi::CStr::from_ptr(lua_typename(l, lua_type(l, i))).to_string_lossy();
    format!("{what} expected, got {t}")
}

const MAXINTSIZE: usize = 32;
const MAXALIGN: usize = 8;

struct Header {
    little: bool,
    align: usize,
}

fn getnum(fmt: &[u8], i: &mut usize, df: usize) -> Result<usize, Fail> {
    if *i >= fmt.len() || !fmt[*i].is_ascii_digit() {
        return Ok(df);
    }
    let mut a: usize = 0;
    while *i < fmt.len() && fmt[*i].is_ascii_digit() {
        if a > (i32::MAX as usize / 10) || a * 10 > (i32::MAX as usize - (fmt[*i] - b'0') as usize) {
            return Err(Fail::Msg("integral size overflow".into()));
        }
        a = a * 10 + (fmt[*i] - b'0') as usize;
        *i += 1;
    }
    Ok(a)
}

/// Size of option `opt` (its digits follow at `i`).
fn optsize(opt: u8, fmt: &[u8], i: &mut usize) -> Result<usize, Fail> {
    Ok(match opt {
        b'B' | b'b' => 1,
        b'H' | b'h' => 2,
        b'L' | b'l' | b'T' => 8,
        b'f' => 4,
        b'd' => 8,
        b'x' => 1,
        b'c' => getnum(fmt, i, 1)?,
        b'i' | b'I' => {
            let sz = getnum(fmt, i, 4)?;
            if sz > MAXINTSIZE {
                return Err(Fail::Msg(format!("integral size {sz} is larger than limit of {MAXINTSIZE}")));
            }
            sz
        }
        _ => 0,
    })
}

/// Redis's struct `controloptions`: endianness, alignment, spaces; any
/// other character is an invalid option.
fn controloptions(opt: u8, fmt: &[u8], i: &mut usize, h: &mut Header) -> Result<(), Fail> {
    match opt {
        b' ' => Ok(()),
        b'>' => {
            h.little = false;
            Ok(())
        }
        b'<' => {
            h.little = true;
            Ok(())
        }
        b'!' => {
            let a = getnum(fmt, i, MAXALIGN)?;
            if a == 0 || (a & (a - 1)) != 0 {
                return Err(Fail::Msg(format!("alignment {a} is not a power of 2")));
            }
            h.align = a;
            Ok(())
        }
        _ => Err(Fail::BadOption(opt)),
    }
}

/// Alignment padding for an element of `size` at `len` (wrapping, as the
/// C code's size_t arithmetic).
fn toalign(len: u64, h: &Header, opt: u8, size: usize) -> u64 {
    if size == 0 || opt == b'c' {
        return 0;
    }
    let size = size.min(h.align) as u64;
    (size.wrapping_sub(len & (size - 1))) & (size - 1)
}

unsafe fn fmt_arg(l: *mut lua_State) -> Result<Vec<u8>, Fail> {
    match lua_type(l, 1) {
        LUA_TSTRING | LUA_TNUMBER => Ok(to_bytes(l, 1).unwrap_or_default().to_vec()),
        _ => Err(Fail::Arg(1, expected_msg(l, 1, "string"))),
    }
}

unsafe fn struct_pack_inner(l: *mut lua_State) -> Result<Vec<u8>, Fail> {
    let fmt = fmt_arg(l)?;
    // Like the C code's "mark to separate arguments from string buffer":
    // a missing argument right after the last one reads as nil.
    lua_pushnil(l);
    let mut h = Header { little: true, align: 1 };
    let mut arg = 2;
    let mut out = Vec::new();
    let mut i = 0;
    while i < fmt.len() {
        let opt = fmt[i];
        i += 1;
        let size = optsize(opt, &fmt, &mut i)?;
        let pad = toalign(out.len() as u64, &h, opt, size) as usize;
        out.resize(out.len() + pad, 0);
        match opt {
            b'b' | b'B' | b'h' | b'H' | b'l' | b'L' | b'T' | b'i' | b'I' => {
                if lua_isnumber(l, arg) == 0 {
                    return Err(Fail::Arg(arg, expected_msg(l, arg, "number")));
                }
                let n = lua_tonumber(l, arg);
                arg += 1;
                let v: u64 = if n < 0.0 { super::vm::c_cast_i64(n) as u64 } else { n as u64 };
                // Bytes past the 8 of the value are zero (the C shifts).
                let mut bytes = vec![0u8; size];
                for (k, b) in bytes.iter_mut().enumerate().take(8) {
                    *b = (v >> (8 * k)) as u8;
                }
                if !h.little {
                    bytes.reverse();
                }
                out.extend_from_slice(&bytes);
            }
            b'x' => out.push(0),
            b'f' => {
                if lua_isnumber(l, arg) == 0 {
                    return Err(Fail::Arg(arg, expected_msg(l, arg, "number")));
                }
                let f = lua_tonumber(l, arg) as f32;
                arg += 1;
                out.extend_from_slice(&if h.little { f.to_le_bytes() } else { f.to_be_bytes() });
            }
            b'd' => {
                if lua_isnumber(l, arg) == 0 {
                    return Err(Fail::Arg(arg, expected_msg(l, arg, "number")));
                }
                let d = lua_tonumber(l, arg);
                arg += 1;
                out.extend_from_slice(&if h.little { d.to_le_bytes() } else { d.to_be_bytes() });
            }
            b'c' | b's' => {
                if lua_isstring(l, arg) == 0 {
                    return Err(Fail::Arg(arg, expected_msg(l, arg, "string")));
                }
                let s = to_bytes(l, arg).unwrap_or_default();
                arg += 1;
                let size = if size == 0 { s.len() } else { size };
                if s.len() < size {
                    return Err(Fail::Arg(arg, "string too short".into()));
                }
                out.extend_from_slice(&s[..size]);
                if opt == b's' {
                    out.push(0);
                }
            }
            _ => controloptions(opt, &fmt, &mut i, &mut h)?,
        }
    }
    Ok(out)
}

unsafe extern "C-unwind" fn struct_pack(l: *mut lua_State) -> c_int {
    let r = struct_pack_inner(l);
    match r {
        Ok(v) => {
            push_bytes(l, &v);
            drop(v);
            1
        }
        Err(f) => raise(l, f),
    }
}

unsafe fn struct_unpack_inner(l: *mut lua_State) -> Result<c_int, Fail> {
    let fmt = fmt_arg(l)?;
    let data = match lua_type(l, 2) {
        LUA_TSTRING | LUA_TNUMBER => to_bytes(l, 2).unwrap_or_default().to_vec(),
        _ => return Err(Fail::Arg(2, expected_msg(l, 2, "string"))),
    };
    let ld = data.len() as u64;
    let pos0: i64 = if lua_isnoneornil(l, 3) != 0 {
        1
    } else {
        if lua_isnumber(l, 3) == 0 {
            return Err(Fail::Arg(3, expected_msg(l, 3, "number")));
        }
        super::vm::c_cast_i64(lua_tonumber(l, 3))
    };
    // size_t arithmetic, as the C code: only 0 is "not > 0".
    if pos0 == 0 {
        return Err(Fail::Arg(3, "offset must be 1 or greater".into()));
    }
    let mut pos = (pos0 as u64).wrapping_sub(1);
    let mut h = Header { little: true, align: 1 };
    let mut n: c_int = 0;
    let mut i = 0;
    while i < fmt.len() {
        let opt = fmt[i];
        i += 1;
        let mut size = optsize(opt, &fmt, &mut i)?;
        pos = pos.wrapping_add(toalign(pos, &h, opt, size));
        let fits = |pos: u64, size: usize| (size as u64) <= ld && pos <= ld - size as u64;
        if !fits(pos, size) {
            return Err(Fail::Arg(2, "data string too short".into()));
        }
        if lua_checkstack(l, 2) == 0 {
            return Err(Fail::Msg("stack overflow (too many results)".into()));
        }
        let at = pos as usize;
        match opt {
            b'b' | b'B' | b'h' | b'H' | b'l' | b'L' | b'T' | b'i' | b'I' => {
                let bytes = &data[at..at + size];
                let mut v: u64 = 0;
                if h.little {
                    for &b in bytes.iter().rev() {
                        v = (v << 8) | b as u64;
                    }
                } else {
                    for &b in bytes {
                        v = (v << 8) | b as u64;
                    }
                }
                let num = if opt.is_ascii_lowercase() {
                    let sh = ((size * 8).wrapping_sub(1) % 64) as u32;
                    let mask = u64::MAX << sh;
                    if v & mask != 0 {
                        v |= mask;
                    }
                    v as i64 as f64
                } else {
                    v as f64
                };
                lua_pushnumber(l, num);
                n += 1;
            }
            b'x' => {}
            b'f' => {
                let mut b = [0u8; 4];
                b.copy_from_slice(&data[at..at + 4]);
                let f = if h.little { f32::from_le_bytes(b) } else { f32::from_be_bytes(b) };
                lua_pushnumber(l, f as f64);
                n += 1;
            }
            b'd' => {
                let mut b = [0u8; 8];
                b.copy_from_slice(&data[at..at + 8]);
                let d = if h.little { f64::from_le_bytes(b) } else { f64::from_be_bytes(b) };
                lua_pushnumber(l, d);
                n += 1;
            }
            b'c' => {
                if size == 0 {
                    if n == 0 || lua_isnumber(l, -1) == 0 {
                        return Err(Fail::Msg("format 'c0' needs a previous size".into()));
                    }
                    let s = lua_tonumber(l, -1);
                    // C's (size_t) cast: negative or NaN become huge.
                    size = if (0.0..1.8e19).contains(&s) { s as u64 as usize } else { usize::MAX };
                    lua_pop(l, 1);
                    n -= 1;
                    if !fits(pos, size) {
                        return Err(Fail::Arg(2, "data string too short".into()));
                    }
                }
                push_bytes(l, &data[at..at + size]);
                n += 1;
            }
            b's' => {
                let Some(z) = data[at..].iter().position(|&c| c == 0) else {
                    return Err(Fail::Msg("unfinished string in data".into()));
                };
                push_bytes(l, &data[at..at + z]);
                size = z + 1;
                n += 1;
            }
            _ => controloptions(opt, &fmt, &mut i, &mut h)?,
        }
        pos = pos.wrapping_add(size as u64);
    }
    lua_pushinteger(l, pos.wrapping_add(1) as i64 as lua_Integer);
    Ok(n + 1)
}

unsafe extern "C-unwind" fn struct_unpack(l: *mut lua_State) -> c_int {
    let r = struct_unpack_inner(l);
    match r {
        Ok(n) => n,
        Err(f) => raise(l, f),
    }
}

unsafe fn struct_size_inner(l: *mut lua_State) -> Result<u64, Fail> {
    let fmt = fmt_arg(l)?;
    let mut h = Header { little: true, align: 1 };
    let mut pos = 0u64;
    let mut i = 0;
    while i < fmt.len() {
        let opt = fmt[i];
        i += 1;
        let size = optsize(opt, &fmt, &mut i)?;
        pos = pos.wrapping_add(toalign(pos, &h, opt, size));
        if opt == b's' {
            return Err(Fail::Arg(1, "option 's' has no fixed size".into()));
        } else if opt == b'c' && size == 0 {
            return Err(Fail::Arg(1, "option 'c0' has no fixed size".into()));
        }
        // Letters and digits that are no option are ignored here.
        if !opt.is_ascii_alphanumeric() {
            controloptions(opt, &fmt, &mut i, &mut h)?;
        }
        pos = pos.wrapping_add(size as u64);
    }
    Ok(pos)
}

unsafe extern "C-unwind" fn struct_size(l: *mut lua_State) -> c_int {
    let r = struct_size_inner(l);
    match r {
        Ok(n) => {
            lua_pushinteger(l, n as i64 as lua_Integer);
            1
        }
        Err(f) => raise(l, f),
    }
}

pub unsafe fn open_struct(l: *mut lua_State) {
    lua_newtable(l);
    set_cfn(l, cs!("pack"), struct_pack);
    set_cfn(l, cs!("unpack"), struct_unpack);
    set_cfn(l, cs!("size"), struct_size);
    lua_setglobal(l, cs!("struct"));
}

// ------------------------------------------------------------ cmsgpack

const MAX_NESTING: usize = 16;

fn mp_int(out: &mut Vec<u8>, n: i64) {
    if n >= 0 {
        if n <= 127 {
            out.push(n as u8);
        } else if n <= 0xff {
            out.extend_from_slice(&[0xcc, n as u8]);
        } else if n <= 0xffff {
            out.push(0xcd);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        } else if n <= 0xffff_ffff {
            out.push(0xce);
            out.extend_from_slice(&(n as u32).to_be_bytes());
        } else {
            out.push(0xcf);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    } else if n >= -32 {
        out.push(n as i8 as u8);
    } else if n >= -128 {
        out.extend_from_slice(&[0xd0, n as i8 as u8]);
    } else if n >= -32768 {
        out.push(0xd1);
        out.extend_from_slice(&(n as i16).to_be_bytes());
    } else if n >= -2147483648 {
        out.push(0xd2);
        out.extend_from_slice(&(n as i32).to_be_bytes());
    } else {
        out.push(0xd3);
        out.extend_from_slice(&n.to_be_bytes());
    }
}

fn mp_len(out: &mut Vec<u8>, n: usize, fix: u8, fixmax: usize, b8: Option<u8>, b16: u8, b32: u8) {
    if n <= fixmax {
        out.push(fix | n as u8);
    } else if let (Some(c), true) = (b8, n <= 0xff) {
        out.extend_from_slice(&[c, n as u8]);
    } else if n <= 0xffff {
        out.push(b16);
        out.extend_from_slice(&(n as u16).to_be_bytes());
    } else {
        out.push(b32);
        out.extend_from_slice(&(n as u32).to_be_bytes());
    }
}

unsafe fn mp_encode(l: *mut lua_State, idx: c_int, out: &mut Vec<u8>, level: usize) {
    match lua_type(l, idx) {
        LUA_TSTRING => {
            let s = to_bytes(l, idx).unwrap_or_default();
            mp_len(out, s.len(), 0xa0, 31, Some(0xd9), 0xda, 0xdb);
            out.extend_from_slice(s);
        }
        LUA_TBOOLEAN => out.push(if lua_toboolean(l, idx) != 0 { 0xc3 } else { 0xc2 }),
        LUA_TNUMBER => {
            let n = lua_tonumber(l, idx);
            if n.is_finite() && (super::vm::c_cast_i64(n) as f64) == n {
                mp_int(out, n as i64);
            } else {
                let f = n as f32;
                if f as f64 == n {
                    out.push(0xca);
                    out.extend_from_slice(&f.to_be_bytes());
                } else {
                    out.push(0xcb);
                    out.extend_from_slice(&n.to_be_bytes());
                }
            }
        }
        LUA_TTABLE if level < MAX_NESTING && lua_checkstack(l, 3) != 0 => {
            super::vm::push_real_table(l, idx);
            let t = lua_gettop(l);
            // An array when the keys are exactly 1..n.
            let (mut count, mut max, mut array) = (0usize, 0f64, true);
            lua_pushnil(l);
            while lua_next(l, t) != 0 {
                lua_pop(l, 1);
                if lua_type(l, -1) == LUA_TNUMBER {
                    let k = lua_tonumber(l, -1);
                    if k > 0.0 && k.is_finite() && super::vm::c_cast_i64(k) as f64 == k {
                        count += 1;
                        if k > max {
                            max = k;
                        }
                        continue;
                    }
                }
                array = false;
                lua_pop(l, 1);
                break;
            }
            if array && max as usize == count {
                mp_len(out, count, 0x90, 15, None, 0xdc, 0xdd);
                for j in 1..=count {
                    lua_rawgeti_(l, t, j as c_int);
                    mp_encode(l, lua_gettop(l), out, level + 1);
                    lua_pop(l, 1);
                }
            } else {
                let mut n = 0;
                lua_pushnil(l);
                while lua_next(l, t) != 0 {
                    lua_pop(l, 1);
                    n += 1;
                }
                mp_len(out, n, 0x80, 15, None, 0xde, 0xdf);
                lua_pushnil(l);
                while lua_next(l, t) != 0 {
                    mp_encode(l, lua_gettop(l) - 1, out, level + 1);
                    mp_encode(l, lua_gettop(l), out, level + 1);
                    lua_pop(l, 1);
                }
            }
            lua_settop(l, t - 1);
        }
        _ => out.push(0xc0),
    }
}

unsafe extern "C-unwind" fn mp_pack(l: *mut lua_State) -> c_int {
    let argc = lua_gettop(l);
    if argc == 0 {
        luaL_argerror(l, 0, cs!("MessagePack pack needs input."));
    }
    let mut out = Vec::new();
    for i in 1..=argc {
        mp_encode(l, i, &mut out, 0);
    }
    push_bytes(l, &out);
    drop(out);
    1
}

struct Cursor<'a> {
    d: &'a [u8],
    p: usize,
}

impl Cursor<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], Fail> {
        if self.d.len() - self.p < n {
            return Err(Fail::Msg("Missing bytes in input.".into()));
        }
        let s = &self.d[self.p..self.p + n];
        self.p += n;
        Ok(s)
    }
    fn be(&mut self, n: usize) -> Result<u64, Fail> {
        Ok(self.take(n)?.iter().fold(0u64, |a, &b| (a << 8) | b as u64))
    }
}

unsafe fn mp_decode(l: *mut lua_State, c: &mut Cursor<'_>, depth: usize) -> Result<(), Fail> {
    if depth > 1000 || lua_checkstack(l, 3) == 0 {
        return Err(Fail::Msg("Bad data format in input.".into()));
    }
    let t = c.take(1)?[0];
    match t {
        0x00..=0x7f => lua_pushnumber(l, t as f64),
        0xe0..=0xff => lua_pushnumber(l, t as i8 as f64),
        0x80..=0x8f => mp_map(l, c, (t & 0x0f) as usize, depth)?,
        0x90..=0x9f => mp_array(l, c, (t & 0x0f) as usize, depth)?,
        0xa0..=0xbf => {
            let s = c.take((t & 0x1f) as usize)?;
            push_bytes(l, s);
        }
        0xc0 => lua_pushnil(l),
        0xc2 => lua_pushboolean(l, 0),
        0xc3 => lua_pushboolean(l, 1),
        // lua-cmsgpack 0.4 knows no bin types (0xc4..0xc6): bad format.
        0xd9 => {
            let n = c.be(1)? as usize;
            push_bytes(l, c.take(n)?);
        }
        0xda => {
            let n = c.be(2)? as usize;
            push_bytes(l, c.take(n)?);
        }
        0xdb => {
            let n = c.be(4)? as usize;
            push_bytes(l, c.take(n)?);
        }
        0xca => lua_pushnumber(l, f32::from_bits(c.be(4)? as u32) as f64),
        0xcb => lua_pushnumber(l, f64::from_bits(c.be(8)?)),
        0xcc => lua_pushnumber(l, c.be(1)? as f64),
        0xcd => lua_pushnumber(l, c.be(2)? as f64),
        0xce => lua_pushnumber(l, c.be(4)? as f64),
        // lua_pushunsigned is lua_pushinteger (signed) with Lua 5.1.
        0xcf => lua_pushnumber(l, c.be(8)? as i64 as f64),
        0xd0 => lua_pushnumber(l, c.be(1)? as u8 as i8 as f64),
        0xd1 => lua_pushnumber(l, c.be(2)? as u16 as i16 as f64),
        0xd2 => lua_pushnumber(l, c.be(4)? as u32 as i32 as f64),
        0xd3 => lua_pushnumber(l, c.be(8)? as i64 as f64),
        0xdc => {
            let n = c.be(2)? as usize;
            mp_array(l, c, n, depth)?
        }
        0xdd => {
            let n = c.be(4)? as usize;
            mp_array(l, c, n, depth)?
        }
        0xde => {
            let n = c.be(2)? as usize;
            mp_map(l, c, n, depth)?
        }
        0xdf => {
            let n = c.be(4)? as usize;
            mp_map(l, c, n, depth)?
        }
        _ => return Err(Fail::Msg("Bad data format in input.".into())),
    }
    Ok(())
}

unsafe fn mp_array(l: *mut lua_State, c: &mut Cursor<'_>, n: usize, depth: usize) -> Result<(), Fail> {
    lua_createtable(l, n.min(1024) as c_int, 0);
    for j in 1..=n {
        mp_decode(l, c, depth + 1)?;
        lua_rawseti_(l, -2, j as c_int);
    }
    Ok(())
}

unsafe fn mp_map(l: *mut lua_State, c: &mut Cursor<'_>, n: usize, depth: usize) -> Result<(), Fail> {
    lua_createtable(l, 0, n.min(1024) as c_int);
    for _ in 0..n {
        mp_decode(l, c, depth + 1)?;
        mp_decode(l, c, depth + 1)?;
        if lua_type(l, -2) == LUA_TNIL {
            return Err(Fail::Plain("table index is nil"));
        }
        if lua_type(l, -2) == LUA_TNUMBER && lua_tonumber(l, -2).is_nan() {
            return Err(Fail::Plain("table index is NaN"));
        }
        lua_rawset(l, -3);
    }
    Ok(())
}

/// Decode up to `limit` objects (0 = all) from `offset`. Pushes the
/// objects; returns (count, next offset or -1 at the end).
unsafe fn mp_unpack_full(l: *mut lua_State, limit: i64, offset: i64) -> Result<(c_int, i64), Fail> {
    if lua_type(l, 1) != LUA_TSTRING && lua_type(l, 1) != LUA_TNUMBER {
        return Err(Fail::Arg(1, expected_msg(l, 1, "string")));
    }
    let data = to_bytes(l, 1).unwrap_or_default().to_vec();
    if offset < 0 || limit < 0 {
        // (lua-cmsgpack prints the input length as the limit)
        let len = data.len();
        // (printed through C `(int)` casts)
        let (o, n) = (offset as i32, len as i32);
        return Err(Fail::Msg(format!("Invalid request to unpack with offset of {o} and limit of {n}.")));
    }
    if offset as usize > data.len() {
        return Err(Fail::Msg(
            "Start offset ".to_string()
                + &(offset as i32).to_string()
                + " greater than input length "
                + &(data.len() as i32).to_string()
                + ".",
        ));
    }
    let mut c = Cursor { d: &data, p: offset as usize };
    let mut cnt: c_int = 0;
    let limit = if limit == 0 && offset == 0 { i64::MAX } else { limit };
    while c.p < data.len() && (cnt as i64) < limit {
        if lua_checkstack(l, 2) == 0 {
            return Err(Fail::Msg("too many objects to unpack".into()));
        }
        mp_decode(l, &mut c, 0)?;
        cnt += 1;
    }
    let next = if c.p >= data.len() { -1 } else { c.p as i64 };
    Ok((cnt, next))
}

unsafe extern "C-unwind" fn mp_unpack(l: *mut lua_State) -> c_int {
    let r = mp_unpack_full(l, 0, 0);
    match r {
        Ok((n, _)) => n,
        Err(f) => raise(l, f),
    }
}

unsafe fn push_offset_first(l: *mut lua_State, n: c_int, next: i64) -> c_int {
    lua_pushinteger(l, next as lua_Integer);
    lua_insert(l, -(n + 1));
    n + 1
}

unsafe extern "C-unwind" fn mp_unpack_one(l: *mut lua_State) -> c_int {
    let offset = luaL_optinteger(l, 2, 0) as i64;
    if lua_gettop(l) >= 1 {
        lua_settop(l, 1);
    }
    let r = mp_unpack_full(l, 1, offset);
    match r {
        Ok((n, next)) => push_offset_first(l, n, next),
        Err(f) => raise(l, f),
    }
}

unsafe extern "C-unwind" fn mp_unpack_limit(l: *mut lua_State) -> c_int {
    let limit = luaL_checkinteger(l, 2) as i64;
    let offset = luaL_optinteger(l, 3, 0) as i64;
    if lua_gettop(l) >= 1 {
        lua_settop(l, 1);
    }
    let r = mp_unpack_full(l, limit, offset);
    match r {
        // Decoding everything (limit and offset 0) returns no offset.
        Ok((n, _)) if limit == 0 && offset == 0 => n,
        Ok((n, next)) => push_offset_first(l, n, next),
        Err(f) => raise(l, f),
    }
}

pub unsafe fn open_cmsgpack(l: *mut lua_State) {
    lua_newtable(l);
    set_cfn(l, cs!("pack"), mp_pack);
    set_cfn(l, cs!("unpack"), mp_unpack);
    set_cfn(l, cs!("unpack_one"), mp_unpack_one);
    set_cfn(l, cs!("unpack_limit"), mp_unpack_limit);
    lua_pushstring(l, cs!("cmsgpack"));
    lua_setfield(l, -2, cs!("_NAME"));
    lua_pushstring(l, cs!("lua-cmsgpack 0.4.0"));
    lua_setfield(l, -2, cs!("_VERSION"));
    lua_pushstring(l, cs!("Copyright (C) 2012, Salvatore Sanfilippo"));
    lua_setfield(l, -2, cs!("_COPYRIGHT"));
    lua_pushstring(l, cs!("MessagePack C implementation for Lua"));
    lua_setfield(l, -2, cs!("_DESCRIPTION"));
    lua_setglobal(l, cs!("cmsgpack"));
}
