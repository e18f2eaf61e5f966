//! Parsers for the compact blobs embedded in RDB values (listpack,
//! ziplist, intset, zipmap) and a listpack encoder. All bounds are checked.

use crate::{RdbError, Result, PREALLOC_CAP};

fn bad(m: &'static str) -> RdbError {
    RdbError::Bad(m)
}

fn slice(b: &[u8], at: usize, n: usize) -> Result<&[u8]> {
    let end = at.checked_add(n).ok_or(bad("overflow"))?;
    b.get(at..end).ok_or(bad("pack entry out of bounds"))
}

fn int_bytes(i: i64) -> Vec<u8> {
    i.to_string().into_bytes()
}

/// Entries of a listpack blob, integers formatted as decimal strings.
pub fn listpack(b: &[u8]) -> Result<Vec<Vec<u8>>> {
    listpack_impl(b, true)
}

/// Like [`listpack`] without checking the header's element count (Redis
/// does not check it in stream listpacks).
pub fn listpack_uncounted(b: &[u8]) -> Result<Vec<Vec<u8>>> {
    listpack_impl(b, false)
}

fn listpack_impl(b: &[u8], check_count: bool) -> Result<Vec<Vec<u8>>> {
    if b.len() < 7 {
        return Err(bad("listpack too short"));
    }
    let total = u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize;
    if total != b.len() {
        return Err(bad("listpack size mismatch"));
    }
    if b[total - 1] != 0xff {
        return Err(bad("listpack terminator"));
    }
    let count = u16::from_le_bytes([b[4], b[5]]) as usize;
    let mut out = Vec::with_capacity(count.min(PREALLOC_CAP));
    let mut p = 6;
    let end = total - 1;
    while p < end {
        let e = b[p];
        let (val, enc_len): (Vec<u8>, usize) = if e & 0x80 == 0 {
            (int_bytes((e & 0x7f) as i64), 1)
        } else if e & 0xc0 == 0x80 {
            let n = (e & 0x3f) as usize;
            (slice(b, p + 1, n)?.to_vec(), 1 + n)
        } else if e & 0xe0 == 0xc0 {
            let x = slice(b, p + 1, 1)?[0];
            let u = (((e & 0x1f) as u16) << 8) | x as u16;
            let v = if u >= 1 << 12 { u as i64 - (1 << 13) } else { u as i64 };
            (int_bytes(v), 2)
        } else if e & 0xf0 == 0xe0 {
            let x = slice(b, p + 1, 1)?[0];
            let n = (((e & 0x0f) as usize) << 8) | x as usize;
            (slice(b, p + 2, n)?.to_vec(), 2 + n)
        } else {
            match e {
                0xf0 => {
                    let l = slice(b, p + 1, 4)?;
                    let n = u32::from_le_bytes([l[0], l[1], l[2], l[3]]) as usize;
                    (slice(b, p + 5, n)?.to_vec(), 5 + n)
                }
                0xf1 => {
                    let l = slice(b, p + 1, 2)?;
                    (int_bytes(i16::from_le_bytes([l[0], l[1]]) as i64), 3)
                }
                0xf2 => {
                    let l = slice(b, p + 1, 3)?;
                    let v = (i32::from_le_bytes([0, l[0], l[1], l[2]]) >> 8) as i64;
                    (int_bytes(v), 4)
                }
                0xf3 => {
                    let l = slice(b, p + 1, 4)?;
                    (int_bytes(i32::from_le_bytes([l[0], l[1], l[2], l[3]]) as i64), 5)
                }
                0xf4 => {
                    let l = slice(b, p + 1, 8)?;
                    let mut a = [0u8; 8];
                    a.copy_from_slice(l);
                    (int_bytes(i64::from_le_bytes(a)), 9)
                }
                _ => return Err(bad("listpack bad encoding")),
            }
        };
        let bl = backlen_size(enc_len);
        // Validate the back-length bytes too.
        let blb = slice(b, p + enc_len, bl)?;
        if decode_backlen(blb) != Some(enc_len) {
            return Err(bad("listpack backlen"));
        }
        p += enc_len + bl;
        if p > end {
            return Err(bad("listpack entry past end"));
        }
        out.push(val);
    }
    if check_count && count != 0xffff && count != out.len() {
        return Err(bad("listpack count mismatch"));
    }
    Ok(out)
}

fn backlen_size(l: usize) -> usize {
    if l <= 127 {
        1
    } else if l < 16383 {
        2
    } else if l < 2097151 {
        3
    } else if l < 268435455 {
        4
    } else {
        5
    }
}

fn encode_backlen(l: usize, out: &mut Vec<u8>) {
    // Lowest address: most significant 7-bit group without the continuation
    // bit; every following byte carries 128; the last is the lowest group.
    let n = backlen_size(l);
    for i in (0..n).rev() {
        let g = ((l >> (7 * i)) & 0x7f) as u8;
        out.push(if i == n - 1 { g } else { g | 0x80 });
    }
}

fn decode_backlen(b: &[u8]) -> Option<usize> {
    // b is stored left to right; read from the right.
    let mut v: usize = 0;
    let mut shift = 0;
    for (k, &byte) in b.iter().rev().enumerate() {
        v |= ((byte & 0x7f) as usize) << shift;
        shift += 7;
        let last = k == b.len() - 1;
        if (byte & 0x80 == 0) != last {
            return None;
        }
    }
    Some(v)
}

/// Encode entries as a listpack blob (strings; small integers as integers).
pub fn listpack_encode<'a>(items: impl Iterator<Item = &'a [u8]>) -> Vec<u8> {
    let mut out = vec![0u8; 6];
    let mut count: usize = 0;
    for it in items {
        count += 1;
        let start = out.len();
        if let Some(i) = canonical_int(it) {
            if (0..=127).contains(&i) {
                out.push(i as u8);
            } else if (-4096..=4095).contains(&i) {
                let u = (i as u16) & 0x1fff;
                out.push(0xc0 | (u >> 8) as u8);
                out.push((u & 0xff) as u8);
            } else if (i16::MIN as i64..=i16::MAX as i64).contains(&i) {
                out.push(0xf1);
                out.extend_from_slice(&(i as i16).to_le_bytes());
            } else if (-(1 << 23)..(1 << 23)).contains(&i) {
                out.push(0xf2);
                out.extend_from_slice(&(i as i32).to_le_bytes()[..3]);
            } else if (i32::MIN as i64..=i32::MAX as i64).contains(&i) {
                out.push(0xf3);
                out.extend_from_slice(&(i as i32).to_le_bytes());
            } else {
                out.push(0xf4);
                out.extend_from_slice(&i.to_le_bytes());
            }
        } else if it.len() < 64 {
            out.push(0x80 | it.len() as u8);
            out.extend_from_slice(it);
        } else if it.len() < 4096 {
            out.push(0xe0 | (it.len() >> 8) as u8);
            out.push((it.len() & 0xff) as u8);
            out.extend_from_slice(it);
        } else {
            out.push(0xf0);
            out.extend_from_slice(&(it.len() as u32).to_le_bytes());
            out.extend_from_slice(it);
        }
        let l = out.len() - start;
        encode_backlen(l, &mut out);
    }
    out.push(0xff);
    let total = out.len() as u32;
    out[0..4].copy_from_slice(&total.to_le_bytes());
    let c = if count < 0xffff { count as u16 } else { 0xffff };
    out[4..6].copy_from_slice(&c.to_le_bytes());
    out
}

/// Encoded size of one listpack element (back length included).
pub fn elem_size(it: &[u8]) -> usize {
    let enc = if let Some(i) = canonical_int(it) {
        if (0..=127).contains(&i) {
            1
        } else if (-4096..=4095).contains(&i) {
            2
        } else if (i16::MIN as i64..=i16::MAX as i64).contains(&i) {
            3
        } else if (-(1 << 23)..(1 << 23)).contains(&i) {
            4
        } else if (i32::MIN as i64..=i32::MAX as i64).contains(&i) {
            5
        } else {
            9
        }
    } else if it.len() < 64 {
        1 + it.len()
    } else if it.len() < 4096 {
        2 + it.len()
    } else {
        5 + it.len()
    };
    enc + backlen_size(enc)
}

/// The integer a string is the canonical decimal form of (like Redis's
/// string2ll), if any.
pub fn canonical_int(s: &[u8]) -> Option<i64> {
    if s.is_empty() || s.len() > 20 {
        return None;
    }
    let v: i64 = std::str::from_utf8(s).ok()?.parse().ok()?;
    if v.to_string().as_bytes() == s {
        Some(v)
    } else {
        None
    }
}

/// Entries of a ziplist blob.
pub fn ziplist(b: &[u8]) -> Result<Vec<Vec<u8>>> {
    if b.len() < 11 {
        return Err(bad("ziplist too short"));
    }
    let total = u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize;
    if total != b.len() || b[total - 1] != 0xff {
        return Err(bad("ziplist header"));
    }
    let tail = u32::from_le_bytes([b[4], b[5], b[6], b[7]]) as usize;
    let count = u16::from_le_bytes([b[8], b[9]]) as usize;
    let mut out = Vec::with_capacity(count.min(PREALLOC_CAP));
    let mut p = 10;
    let end = total - 1;
    let mut prev_len = 0usize;
    let mut last_start = 10;
    while p < end {
        let start = p;
        last_start = start;
        let first = b[p];
        let prevlen = if first < 254 {
            p += 1;
            first as usize
        } else if first == 254 {
            let l = slice(b, p + 1, 4)?;
            p += 5;
            u32::from_le_bytes([l[0], l[1], l[2], l[3]]) as usize
        } else {
            return Err(bad("ziplist prevlen"));
        };
        if prevlen != prev_len {
            return Err(bad("ziplist prevlen mismatch"));
        }
        let e = *b.get(p).ok_or(bad("ziplist truncated"))?;
        let val = match e >> 6 {
            0 => {
                let n = (e & 0x3f) as usize;
                let v = slice(b, p + 1, n)?.to_vec();
                p += 1 + n;
                v
            }
            1 => {
                let x = slice(b, p + 1, 1)?[0];
                let n = (((e & 0x3f) as usize) << 8) | x as usize;
                let v = slice(b, p + 2, n)?.to_vec();
                p += 2 + n;
                v
            }
            2 => {
                let l = slice(b, p + 1, 4)?;
                let n = u32::from_be_bytes([l[0], l[1], l[2], l[3]]) as usize;
                let v = slice(b, p + 5, n)?.to_vec();
                p += 5 + n;
                v
            }
            _ => {
                let (v, n) = match e {
                    0xc0 => {
                        let l = slice(b, p + 1, 2)?;
                        (i16::from_le_bytes([l[0], l[1]]) as i64, 2)
                    }
                    0xd0 => {
                        let l = slice(b, p + 1, 4)?;
                        (i32::from_le_bytes([l[0], l[1], l[2], l[3]]) as i64, 4)
                    }
                    0xe0 => {
                        let l = slice(b, p + 1, 8)?;
                        let mut a = [0u8; 8];
                        a.copy_from_slice(l);
                        (i64::from_le_bytes(a), 8)
                    }
                    0xf0 => {
                        let l = slice(b, p + 1, 3)?;
                        ((i32::from_le_bytes([0, l[0], l[1], l[2]]) >> 8) as i64, 3)
                    }
                    0xfe => (slice(b, p + 1, 1)?[0] as i8 as i64, 1),
                    0xf1..=0xfd => (((e & 0x0f) as i64) - 1, 0),
                    _ => return Err(bad("ziplist bad encoding")),
                };
                p += 1 + n;
                int_bytes(v)
            }
        };
        if p > end {
            return Err(bad("ziplist entry past end"));
        }
        prev_len = p - start;
        out.push(val);
    }
    if count != 0xffff && count != out.len() {
        return Err(bad("ziplist count mismatch"));
    }
    // The header's tail offset must point at the last entry (the end marker's offset when empty: 10).
    if tail != last_start {
        return Err(bad("ziplist tail offset"));
    }
    Ok(out)
}

/// Members of an intset blob. With `deep` (Redis's deep sanitization) they
/// must be in strictly ascending order, as Redis writes them; without it,
/// like Redis, the order is not checked (duplicates are rejected by the
/// caller; ferrite rebuilds the set, so the order does not matter to it).
pub fn intset(b: &[u8], deep: bool) -> Result<Vec<Vec<u8>>> {
    if b.len() < 8 {
        return Err(bad("intset too short"));
    }
    let enc = u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize;
    let n = u32::from_le_bytes([b[4], b[5], b[6], b[7]]) as usize;
    if enc != 2 && enc != 4 && enc != 8 {
        return Err(bad("intset encoding"));
    }
    if n.checked_mul(enc).and_then(|x| x.checked_add(8)) != Some(b.len()) {
        return Err(bad("intset size"));
    }
    let mut out = Vec::with_capacity(n.min(PREALLOC_CAP));
    let mut prev: Option<i64> = None;
    for c in b[8..].chunks_exact(enc) {
        let v = match enc {
            2 => i16::from_le_bytes([c[0], c[1]]) as i64,
            4 => i32::from_le_bytes([c[0], c[1], c[2], c[3]]) as i64,
            _ => {
                let mut a = [0u8; 8];
                a.copy_from_slice(c);
                i64::from_le_bytes(a)
            }
        };
        if deep && prev.is_some_and(|p| p >= v) {
            return Err(bad("intset order"));
        }
        prev = Some(v);
        out.push(int_bytes(v));
    }
    Ok(out)
}

/// Field/value pairs of a zipmap blob.
pub fn zipmap(b: &[u8]) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
    if b.len() < 2 {
        return Err(bad("zipmap too short"));
    }
    let mut out = Vec::with_capacity((b[0] as usize).min(PREALLOC_CAP));
    let mut p = 1;
    let read_len = |p: &mut usize| -> Result<Option<usize>> {
        let f = *b.get(*p).ok_or(bad("zipmap truncated"))?;
        match f {
            255 => Ok(None),
            254 => {
                let l = slice(b, *p + 1, 4)?;
                *p += 5;
                Ok(Some(u32::from_le_bytes([l[0], l[1], l[2], l[3]]) as usize))
            }
            253 => Err(bad("zipmap length")),
            x => {
                *p += 1;
                Ok(Some(x as usize))
            }
        }
    };
    while let Some(kl) = read_len(&mut p)? {
        let k = slice(b, p, kl)?.to_vec();
        p += kl;
        let Some(vl) = read_len(&mut p)? else { return Err(bad("zipmap missing value")) };
        let free = *b.get(p).ok_or(bad("zipmap truncated"))? as usize;
        p += 1;
        let v = slice(b, p, vl)?.to_vec();
        p += vl + free;
        out.push((k, v));
    }
    if p + 1 != b.len() {
        return Err(bad("zipmap trailing bytes"));
    }
    // Redis refuses an empty zipmap as corrupt (not as an empty key).
    if out.is_empty() {
        return Err(bad("empty zipmap"));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listpack_round_trip() {
        let items: Vec<Vec<u8>> = vec![
            b"a".to_vec(),
            b"0".to_vec(),
            b"127".to_vec(),
            b"-1".to_vec(),
            b"4095".to_vec(),
            b"-4096".to_vec(),
            b"30000".to_vec(),
            b"-8000000".to_vec(),
            b"2000000000".to_vec(),
            b"9223372036854775807".to_vec(),
            b"007".to_vec(),
            vec![b'x'; 100],
            vec![b'y'; 5000],
        ];
        let lp = listpack_encode(items.iter().map(|v| v.as_slice()));
        assert_eq!(listpack(&lp).unwrap(), items);
    }

    #[test]
    fn backlen() {
        for l in [1usize, 127, 128, 16382, 16383, 2097150, 2097151, 300_000_000] {
            let mut v = Vec::new();
            encode_backlen(l, &mut v);
            assert_eq!(v.len(), backlen_size(l));
            assert_eq!(decode_backlen(&v), Some(l), "{l}");
        }
    }
}
