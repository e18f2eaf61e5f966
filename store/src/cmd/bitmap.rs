//! Bitmap commands: SETBIT, GETBIT, BITCOUNT, BITPOS, BITOP, BITFIELD,
//! BITFIELD_RO. Bits are numbered from the most significant bit of the
//! first byte. Writes turn the string into the `raw` encoding.

use super::string::max_bulk_len;
use super::{eq_ic, CmdError, CmdImpl, CmdResult, Cx, Lock, SYNTAX, UNDECLARED, WRONGTYPE};
use crate::keyspace::{StrValue, Value};

pub static COMMANDS: &[CmdImpl] = &[
    CmdImpl { name: "setbit", handler: setbit, lock: Lock::Keys },
    CmdImpl { name: "getbit", handler: getbit, lock: Lock::Keys },
    CmdImpl { name: "bitcount", handler: bitcount, lock: Lock::Keys },
    CmdImpl { name: "bitpos", handler: bitpos, lock: Lock::Keys },
    CmdImpl { name: "bitop", handler: bitop, lock: Lock::Keys },
    CmdImpl { name: "bitfield", handler: bitfield, lock: Lock::Keys },
    CmdImpl { name: "bitfield_ro", handler: bitfield_ro, lock: Lock::Keys },
];

const BIT_OFFSET_ERR: &str = "bit offset is not an integer or out of range";

/// Parse a bit offset (Redis's `getBitOffsetFromArgument`). With `bits`
/// set (BITFIELD), `#N` means `N * bits`.
fn bit_offset(arg: &[u8], max_bulk: u64, bits: Option<u32>) -> Result<u64, CmdError> {
    let (digits, mul) = match (arg.first(), bits) {
        (Some(b'#'), Some(b)) => (&arg[1..], b as i64),
        _ => (arg, 1),
    };
    let v = ferrite_resp::num::parse_i64(digits).ok_or_else(|| CmdError::err(BIT_OFFSET_ERR))?;
    // Redis multiplies in C and lets it wrap.
    let v = v.wrapping_mul(mul);
    if v < 0 || (v as u64 >> 3) >= max_bulk {
        return Err(CmdError::err(BIT_OFFSET_ERR));
    }
    Ok(v as u64)
}

/// How `string_for_bits` found the key.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Grow {
    /// Created (the insert already signalled the change).
    Created,
    /// Existing string made longer.
    Grown,
    /// Existing string, length unchanged.
    Same,
}

/// The string at `key` as raw bytes grown (zero padded) so that bit `maxbit`
/// exists, creating the key when missing (Redis's `lookupStringForBitCommand`).
fn string_for_bits<'c>(cx: &'c mut Cx, key: &[u8], maxbit: u64) -> Result<(&'c mut Vec<u8>, Grow), CmdError> {
    let need = (maxbit >> 3) as usize + 1;
    let exists = cx.ks.string(key)?.is_some();
    if !exists {
        cx.ks.insert(key, Value::Str(StrValue::Raw(vec![0u8; need])), 0)?;
    }
    let s = cx.ks.string(key)?.ok_or(UNDECLARED)?;
    let v = s.make_raw();
    let mut how = if exists { Grow::Same } else { Grow::Created };
    if v.len() < need {
        v.resize(need, 0);
        how = Grow::Grown;
    }
    Ok((v, how))
}

/// Signal `changes` modifications of `key` (Redis adds each to the dirty
/// counter); a created key was already signalled once by its insert.
fn signal_changes(cx: &mut Cx, key: &[u8], how: Grow, changes: u64) {
    if changes == 0 {
        return;
    }
    if how != Grow::Created {
        cx.ks.modified(key);
    }
    cx.ks.notify(crate::notify::STRING, "setbit", key);
    if changes > 1 {
        cx.srv.stats.dirty.fetch_add(changes - 1, std::sync::atomic::Ordering::Relaxed);
    }
}

fn setbit(cx: &mut Cx) -> CmdResult {
    let max = max_bulk_len(cx);
    let off = bit_offset(cx.arg(2), max, None)?;
    let bit_err = || CmdError::err("bit is not an integer or out of range");
    let on = ferrite_resp::num::parse_i64(cx.arg(3)).ok_or_else(bit_err)?;
    if on & !1 != 0 {
        return Err(bit_err());
    }
    let key = cx.arg(1);
    let (v, how) = string_for_bits(cx, key, off)?;
    let byte = (off >> 3) as usize;
    let shift = 7 - (off & 7) as u32;
    let old = (v[byte] >> shift) & 1;
    let changed = how != Grow::Same || old as i64 != on;
    if changed {
        v[byte] = (v[byte] & !(1 << shift)) | ((on as u8) << shift);
        signal_changes(cx, key, how, 1);
    }
    cx.out.int(old as i64);
    Ok(())
}

fn getbit(cx: &mut Cx) -> CmdResult {
    let max = max_bulk_len(cx);
    let off = bit_offset(cx.arg(2), max, None)?;
    let bit = match cx.ks.lookup_read(cx.arg(1))? {
        None => 0,
        Some(e) => match &e.value {
            Value::Str(s) => {
                let mut t = itoa::Buffer::new();
                let b = s.as_bytes(&mut t);
                let byte = (off >> 3) as usize;
                b.get(byte).map_or(0, |v| (v >> (7 - (off & 7))) & 1)
            }
            _ => return Err(WRONGTYPE),
        },
    };
    cx.out.int(bit as i64);
    Ok(())
}

fn popcount(b: &[u8]) -> u64 {
    let mut chunks = b.chunks_exact(8);
    let mut n: u64 = 0;
    for c in &mut chunks {
        let mut w = [0u8; 8];
        w.copy_from_slice(c);
        n += u64::from_ne_bytes(w).count_ones() as u64;
    }
    n + chunks.remainder().iter().map(|x| x.count_ones() as u64).sum::<u64>()
}

/// BYTE / BIT unit argument.
fn parse_unit(a: &[u8]) -> Result<bool, CmdError> {
    if eq_ic(a, b"BIT") {
        Ok(true)
    } else if eq_ic(a, b"BYTE") {
        Ok(false)
    } else {
        Err(SYNTAX)
    }
}

/// Normalize a start/end pair against `total` units the way Redis does:
/// negatives count from the end, clamp to `[0, total-1]`.
fn norm(mut start: i64, mut end: i64, total: i64) -> (i64, i64) {
    if start < 0 {
        start = start.saturating_add(total);
    }
    if end < 0 {
        end = end.saturating_add(total);
    }
    start = start.max(0);
    end = end.max(0);
    if end >= total {
        end = total - 1;
    }
    (start, end)
}

/// Number of set bits in the bit range `[bs, be]` of `p` (both in range).
fn count_bits(p: &[u8], bs: u64, be: u64) -> u64 {
    let (sb, eb) = ((bs >> 3) as usize, (be >> 3) as usize);
    let mut n = popcount(&p[sb..=eb]);
    let lead = (bs & 7) as u32;
    if lead != 0 {
        n -= (p[sb] >> (8 - lead)).count_ones() as u64;
    }
    let trail = 7 - (be & 7) as u32;
    if trail != 0 {
        n -= (p[eb] & ((1u8 << trail) - 1)).count_ones() as u64;
    }
    n
}

fn bitcount(cx: &mut Cx) -> CmdResult {
    let argc = cx.argc();
    let e = match cx.ks.lookup_read(cx.arg(1))? {
        None => {
            cx.out.int(0);
            return Ok(());
        }
        Some(e) => e,
    };
    let s = match &e.value {
        Value::Str(s) => s,
        _ => return Err(WRONGTYPE),
    };
    let mut t = itoa::Buffer::new();
    let p = s.as_bytes(&mut t);
    let len = p.len() as i64;
    let n = if argc == 4 || argc == 5 {
        let start = super::parse_int(cx.args[2].as_ref())?;
        let end = super::parse_int(cx.args[3].as_ref())?;
        if start < 0 && end < 0 && start > end {
            cx.out.int(0);
            return Ok(());
        }
        let isbit = if argc == 5 { parse_unit(&cx.args[4])? } else { false };
        let total = if isbit { len << 3 } else { len };
        let (start, end) = norm(start, end, total);
        if start > end {
            0
        } else if isbit {
            count_bits(p, start as u64, end as u64)
        } else {
            popcount(&p[start as usize..=end as usize])
        }
    } else if argc == 2 {
        popcount(p)
    } else {
        return Err(SYNTAX);
    };
    cx.out.int(n as i64);
    Ok(())
}

/// First bit equal to `bit` in the bit range `[bs, be]` of `p`.
fn find_bit(p: &[u8], bs: u64, be: u64, bit: bool) -> Option<u64> {
    let skip = if bit { 0u8 } else { 0xff };
    let mut i = bs;
    while i <= be {
        let byte = p[(i >> 3) as usize];
        if i & 63 == 0 && i + 63 <= be {
            // Skip whole 8-byte words that cannot contain the bit.
            let at = (i >> 3) as usize;
            if p[at..at + 8].iter().all(|&b| b == skip) {
                i += 64;
                continue;
            }
        }
        if i & 7 == 0 && i + 7 <= be {
            if byte == skip {
                i += 8;
                continue;
            }
            let v = if bit { byte } else { !byte };
            return Some(i + v.leading_zeros() as u64);
        }
        if ((byte >> (7 - (i & 7))) & 1 == 1) == bit {
            return Some(i);
        }
        i += 1;
    }
    None
}

fn bitpos(cx: &mut Cx) -> CmdResult {
    let argc = cx.argc();
    let bit = cx.int_arg(2)?;
    if bit != 0 && bit != 1 {
        return Err(CmdError::err("The bit argument must be 1 or 0."));
    }
    let e = match cx.ks.lookup_read(cx.arg(1))? {
        None => {
            cx.out.int(if bit == 1 { -1 } else { 0 });
            return Ok(());
        }
        Some(e) => e,
    };
    let s = match &e.value {
        Value::Str(s) => s,
        _ => return Err(WRONGTYPE),
    };
    let mut t = itoa::Buffer::new();
    let p = s.as_bytes(&mut t);
    let len = p.len() as i64;
    let (mut isbit, mut end_given) = (false, false);
    let (start, end) = if (4..=6).contains(&argc) {
        let start = super::parse_int(&cx.args[3])?;
        if argc == 6 {
            isbit = parse_unit(&cx.args[5])?;
        }
        let end = if argc >= 5 {
            end_given = true;
            super::parse_int(&cx.args[4])?
        } else if isbit {
            (len << 3) + 7
        } else {
            len - 1
        };
        norm(start, end, if isbit { len << 3 } else { len })
    } else if argc == 3 {
        (0, len - 1)
    } else {
        return Err(SYNTAX);
    };
    if start > end {
        cx.out.int(-1);
        return Ok(());
    }
    let (bs, be) = if isbit { (start as u64, end as u64) } else { ((start as u64) << 3, ((end as u64) << 3) + 7) };
    let pos = match find_bit(p, bs, be, bit == 1) {
        Some(i) => i as i64,
        None if bit == 1 || end_given => -1,
        // Looking for a clear bit without an explicit end: the string is
        // considered zero padded on the right.
        None => be as i64 + 1,
    };
    cx.out.int(pos);
    Ok(())
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum BitOp {
    And,
    Or,
    Xor,
    Not,
}

fn bitop(cx: &mut Cx) -> CmdResult {
    let name = cx.arg(1);
    let op = if eq_ic(name, b"AND") {
        BitOp::And
    } else if eq_ic(name, b"OR") {
        BitOp::Or
    } else if eq_ic(name, b"XOR") {
        BitOp::Xor
    } else if eq_ic(name, b"NOT") {
        BitOp::Not
    } else {
        return Err(SYNTAX);
    };
    if op == BitOp::Not && cx.argc() != 4 {
        return Err(CmdError::err("BITOP NOT must be called with a single source key."));
    }
    // Fold the sources in order; bytes past a source's end count as 0.
    let mut res: Vec<u8> = Vec::new();
    for i in 3..cx.argc() {
        let mut t = itoa::Buffer::new();
        let e = cx.ks.lookup_read(cx.arg(i))?;
        let src: &[u8] = match e {
            None => b"",
            Some(e) => match &e.value {
                Value::Str(s) => s.as_bytes(&mut t),
                _ => return Err(WRONGTYPE),
            },
        };
        if res.len() < src.len() {
            res.resize(src.len(), 0);
        }
        if i == 3 {
            res[..src.len()].copy_from_slice(src);
            if op == BitOp::Not {
                res.iter_mut().for_each(|b| *b = !*b);
            }
            continue;
        }
        match op {
            BitOp::And => {
                for (j, r) in res.iter_mut().enumerate() {
                    *r &= src.get(j).copied().unwrap_or(0);
                }
            }
            BitOp::Or => res.iter_mut().zip(src).for_each(|(r, s)| *r |= s),
            BitOp::Xor => res.iter_mut().zip(src).for_each(|(r, s)| *r ^= s),
            BitOp::Not => {}
        }
    }
    let dest = cx.arg(2);
    let n = res.len();
    if n > 0 {
        cx.ks.insert(dest, Value::Str(StrValue::Raw(res)), 0)?;
        cx.ks.notify(crate::notify::STRING, "set", dest);
    } else {
        cx.ks.delete_unchecked(dest)?;
    }
    cx.out.int(n as i64);
    Ok(())
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Overflow {
    Wrap,
    Sat,
    Fail,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum FieldOp {
    Get,
    Set,
    Incr,
}

struct Field {
    op: FieldOp,
    offset: u64,
    bits: u32,
    signed: bool,
    value: i64,
    ow: Overflow,
}

const TYPE_ERR: &str = "Invalid bitfield type. Use something like i16 u8. Note that u64 is not supported but i64 is.";

/// `i<bits>` / `u<bits>`: signed up to 64 bits, unsigned up to 63.
fn bitfield_type(a: &[u8]) -> Result<(bool, u32), CmdError> {
    let err = || CmdError::err(TYPE_ERR);
    let signed = match a.first() {
        Some(b'i') => true,
        Some(b'u') => false,
        _ => return Err(err()),
    };
    // Redis reads the rest as a C string.
    let rest = &a[1..];
    let rest = &rest[..rest.iter().position(|&c| c == 0).unwrap_or(rest.len())];
    let bits = ferrite_resp::num::parse_i64(rest).ok_or_else(err)?;
    if bits < 1 || (signed && bits > 64) || (!signed && bits > 63) {
        return Err(err());
    }
    Ok((signed, bits as u32))
}

fn get_unsigned(p: &[u8], offset: u64, bits: u32) -> u64 {
    let mut v: u64 = 0;
    for k in 0..bits as u64 {
        let o = offset + k;
        let byte = p.get((o >> 3) as usize).copied().unwrap_or(0);
        v = (v << 1) | ((byte >> (7 - (o & 7))) & 1) as u64;
    }
    v
}

fn get_signed(p: &[u8], offset: u64, bits: u32) -> i64 {
    let mut v = get_unsigned(p, offset, bits) as i64;
    if bits < 64 && v & (1i64 << (bits - 1)) != 0 {
        v |= -1i64 << bits;
    }
    v
}

/// Write `bits` bits of `value` at `offset`; the bytes must exist.
fn set_bits(p: &mut [u8], offset: u64, bits: u32, value: u64) {
    for k in 0..bits as u64 {
        let bitval = ((value >> (bits as u64 - 1 - k)) & 1) as u8;
        let o = offset + k;
        if let Some(byte) = p.get_mut((o >> 3) as usize) {
            let shift = 7 - (o & 7);
            *byte = (*byte & !(1 << shift)) | (bitval << shift);
        }
    }
}

/// Redis's `checkUnsignedBitfieldOverflow`: Some(replacement) on overflow
/// (the replacement is meaningless for FAIL).
fn unsigned_overflow(value: u64, incr: i64, bits: u32, ow: Overflow) -> Option<u64> {
    let max: u64 = if bits == 64 { u64::MAX } else { (1u64 << bits) - 1 };
    let maxincr = max.wrapping_sub(value) as i64;
    let minincr = value.wrapping_neg() as i64;
    let wrap = || value.wrapping_add(incr as u64) & !(u64::MAX.checked_shl(bits).unwrap_or(0));
    if value > max || (incr > 0 && incr > maxincr) {
        Some(match ow {
            Overflow::Wrap => wrap(),
            _ => max,
        })
    } else if incr < 0 && incr < minincr {
        Some(match ow {
            Overflow::Wrap => wrap(),
            _ => 0,
        })
    } else {
        None
    }
}

/// Redis's `checkSignedBitfieldOverflow`.
fn signed_overflow(value: i64, incr: i64, bits: u32, ow: Overflow) -> Option<i64> {
    let max: i64 = if bits == 64 { i64::MAX } else { (1i64 << (bits - 1)) - 1 };
    let min = -max - 1;
    let maxincr = (max as u64).wrapping_sub(value as u64) as i64;
    let minincr = min.wrapping_sub(value);
    let wrap = || {
        let mut c = (value as u64).wrapping_add(incr as u64);
        if bits < 64 {
            let mask = u64::MAX << bits;
            if c & (1u64 << (bits - 1)) != 0 {
                c |= mask;
            } else {
                c &= !mask;
            }
        }
        c as i64
    };
    if value > max || (bits != 64 && incr > maxincr) || (value >= 0 && incr > 0 && incr > maxincr) {
        Some(match ow {
            Overflow::Wrap => wrap(),
            _ => max,
        })
    } else if value < min || (bits != 64 && incr < minincr) || (value < 0 && incr < 0 && incr < minincr) {
        Some(match ow {
            Overflow::Wrap => wrap(),
            _ => min,
        })
    } else {
        None
    }
}

fn bitfield(cx: &mut Cx) -> CmdResult {
    bitfield_generic(cx, false)
}

fn bitfield_ro(cx: &mut Cx) -> CmdResult {
    bitfield_generic(cx, true)
}

fn bitfield_generic(cx: &mut Cx, ro: bool) -> CmdResult {
    let max = max_bulk_len(cx);
    let argc = cx.argc();
    let mut ops: Vec<Field> = Vec::new();
    let mut ow = Overflow::Wrap;
    let mut readonly = true;
    let mut highest: u64 = 0;
    let mut j = 2;
    while j < argc {
        let rem = argc - j - 1;
        let sub = cx.arg(j);
        let op = if eq_ic(sub, b"GET") && rem >= 2 {
            FieldOp::Get
        } else if eq_ic(sub, b"SET") && rem >= 3 {
            FieldOp::Set
        } else if eq_ic(sub, b"INCRBY") && rem >= 3 {
            FieldOp::Incr
        } else if eq_ic(sub, b"OVERFLOW") && rem >= 1 {
            let t = cx.arg(j + 1);
            ow = if eq_ic(t, b"WRAP") {
                Overflow::Wrap
            } else if eq_ic(t, b"SAT") {
                Overflow::Sat
            } else if eq_ic(t, b"FAIL") {
                Overflow::Fail
            } else {
                return Err(CmdError::err("Invalid OVERFLOW type specified"));
            };
            j += 2;
            continue;
        } else {
            return Err(SYNTAX);
        };
        let (signed, bits) = bitfield_type(cx.arg(j + 1))?;
        let offset = bit_offset(cx.arg(j + 2), max, Some(bits))?;
        let mut value = 0;
        if op != FieldOp::Get {
            readonly = false;
            highest = highest.max(offset + bits as u64 - 1);
            value = cx.int_arg(j + 3)?;
        }
        ops.push(Field { op, offset, bits, signed, value, ow });
        j += if op == FieldOp::Get { 3 } else { 4 };
    }

    let key = cx.arg(1);
    if readonly {
        let mut t = itoa::Buffer::new();
        let p: &[u8] = match cx.ks.lookup_read(key)? {
            None => b"",
            Some(e) => match &e.value {
                Value::Str(s) => s.as_bytes(&mut t),
                _ => return Err(WRONGTYPE),
            },
        };
        cx.out.array(ops.len());
        for f in &ops {
            if f.signed {
                cx.out.int(get_signed(p, f.offset, f.bits));
            } else {
                cx.out.int(get_unsigned(p, f.offset, f.bits) as i64);
            }
        }
        return Ok(());
    }
    if ro {
        return Err(CmdError::err("BITFIELD_RO only supports the GET subcommand"));
    }
    let (p, how) = string_for_bits(cx, key, highest)?;
    let dirty = how != Grow::Same;
    let mut changes = 0u64;
    let mut replies: Vec<Option<i64>> = Vec::with_capacity(ops.len());
    for f in &ops {
        match f.op {
            FieldOp::Get => {
                let v =
                    if f.signed { get_signed(p, f.offset, f.bits) } else { get_unsigned(p, f.offset, f.bits) as i64 };
                replies.push(Some(v));
            }
            FieldOp::Set | FieldOp::Incr if f.signed => {
                let old = get_signed(p, f.offset, f.bits);
                let (of, new, ret) = if f.op == FieldOp::Incr {
                    let of = signed_overflow(old, f.value, f.bits, f.ow);
                    let new = of.unwrap_or(old.wrapping_add(f.value));
                    (of.is_some(), new, new)
                } else {
                    let of = signed_overflow(f.value, 0, f.bits, f.ow);
                    (of.is_some(), of.unwrap_or(f.value), old)
                };
                if of && f.ow == Overflow::Fail {
                    replies.push(None);
                } else {
                    replies.push(Some(ret));
                    set_bits(p, f.offset, f.bits, new as u64);
                    if dirty || old != new {
                        changes += 1;
                    }
                }
            }
            FieldOp::Set | FieldOp::Incr => {
                let old = get_unsigned(p, f.offset, f.bits);
                let (of, new, ret) = if f.op == FieldOp::Incr {
                    let of = unsigned_overflow(old, f.value, f.bits, f.ow);
                    let new = of.unwrap_or(old.wrapping_add(f.value as u64));
                    (of.is_some(), new, new)
                } else {
                    let v = f.value as u64;
                    let of = unsigned_overflow(v, 0, f.bits, f.ow);
                    (of.is_some(), of.unwrap_or(v), old)
                };
                if of && f.ow == Overflow::Fail {
                    replies.push(None);
                } else {
                    replies.push(Some(ret as i64));
                    set_bits(p, f.offset, f.bits, new);
                    if dirty || old != new {
                        changes += 1;
                    }
                }
            }
        }
    }
    signal_changes(cx, key, how, changes);
    cx.out.array(replies.len());
    for r in replies {
        match r {
            Some(v) => cx.out.int(v),
            None => cx.out.null(),
        }
    }
    Ok(())
}
