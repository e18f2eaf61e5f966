//! Decoding of RDB values.

use crate::packs;
use crate::{lzf, types as t, RdbError, RdbValue, Result, PREALLOC_CAP};

/// A cursor over input bytes.
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    /// After a `Truncated` error: the input length that would have let the
    /// failing read succeed (a lower bound for a retry).
    want: usize,
    /// Deep sanitization (Redis's `sanitize-dump-payload yes`): also refuse what Redis only checks then (an
    /// intset out of order).
    pub deep: bool,
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8]) -> Reader<'a> {
        Reader { buf, pos: 0, want: 0, deep: false }
    }

    pub fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    /// Bytes consumed so far.
    pub fn pos(&self) -> usize {
        self.pos
    }

    /// The bytes consumed since position `start`.
    pub fn since(&self, start: usize) -> &'a [u8] {
        &self.buf[start.min(self.pos)..self.pos]
    }

    /// An 8-byte little-endian millisecond time.
    pub fn ms_time(&mut self) -> Result<i64> {
        let s = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(s);
        Ok(i64::from_le_bytes(a))
    }

    /// Skip an RDB string without decompressing it.
    pub fn skip_string(&mut self) -> Result<()> {
        let (l, enc) = self.len_or_enc()?;
        if !enc {
            if l > self.remaining() as u64 {
                return Err(self.short(l));
            }
            self.take(l as usize)?;
            return Ok(());
        }
        match l {
            0 => self.take(1).map(|_| ()),
            1 => self.take(2).map(|_| ()),
            2 => self.take(4).map(|_| ()),
            3 => {
                let clen = self.len()?;
                let _ulen = self.len()?;
                if clen > self.remaining() as u64 {
                    return Err(self.short(clen));
                }
                self.take(clen as usize).map(|_| ())
            }
            _ => Err(RdbError::Bad("unknown string encoding")),
        }
    }

    /// After a `Truncated` error: input length needed for the failed read.
    pub fn want(&self) -> usize {
        self.want
    }

    fn short(&mut self, n: u64) -> RdbError {
        self.want = (self.pos as u64).saturating_add(n).min(usize::MAX as u64) as usize;
        RdbError::Truncated
    }

    pub fn u8(&mut self) -> Result<u8> {
        let Some(&b) = self.buf.get(self.pos) else { return Err(self.short(1)) };
        self.pos += 1;
        Ok(b)
    }

    pub fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        if n > self.remaining() {
            return Err(self.short(n as u64));
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    /// An RDB length, or a special string encoding (`Err(Ok(enc))` style is
    /// avoided: returns (value, is_encoded)).
    pub fn len_or_enc(&mut self) -> Result<(u64, bool)> {
        let b = self.u8()?;
        match b >> 6 {
            0 => Ok(((b & 0x3f) as u64, false)),
            1 => {
                let c = self.u8()?;
                Ok(((((b & 0x3f) as u64) << 8) | c as u64, false))
            }
            2 => match b {
                0x80 => {
                    let s = self.take(4)?;
                    Ok((u32::from_be_bytes([s[0], s[1], s[2], s[3]]) as u64, false))
                }
                0x81 => {
                    let s = self.take(8)?;
                    let mut a = [0u8; 8];
                    a.copy_from_slice(s);
                    Ok((u64::from_be_bytes(a), false))
                }
                _ => Err(RdbError::Bad("bad length encoding")),
            },
            _ => Ok(((b & 0x3f) as u64, true)),
        }
    }

    /// A plain length (special encodings rejected).
    pub fn len(&mut self) -> Result<u64> {
        match self.len_or_enc()? {
            (l, false) => Ok(l),
            _ => Err(RdbError::Bad("unexpected encoded length")),
        }
    }

    /// A length usable as a count: must not exceed the remaining input
    /// (every element takes at least one byte).
    fn count(&mut self) -> Result<usize> {
        let l = self.len()?;
        if l > self.remaining() as u64 {
            return Err(self.short(l));
        }
        Ok(l as usize)
    }

    /// An RDB string (raw, integer or LZF encoded).
    pub fn string(&mut self) -> Result<Vec<u8>> {
        let (l, enc) = self.len_or_enc()?;
        if !enc {
            if l > self.remaining() as u64 {
                return Err(self.short(l));
            }
            return Ok(self.take(l as usize)?.to_vec());
        }
        match l {
            0 => Ok((self.u8()? as i8).to_string().into_bytes()),
            1 => {
                let s = self.take(2)?;
                Ok(i16::from_le_bytes([s[0], s[1]]).to_string().into_bytes())
            }
            2 => {
                let s = self.take(4)?;
                Ok(i32::from_le_bytes([s[0], s[1], s[2], s[3]]).to_string().into_bytes())
            }
            3 => {
                let clen = self.len()?;
                let ulen = self.len()?;
                if clen > self.remaining() as u64 {
                    return Err(self.short(clen));
                }
                // LZF expands at most ~264/2 times per input byte.
                if ulen == 0 || ulen > clen.saturating_mul(132).saturating_add(64) {
                    return Err(RdbError::Bad("bad lzf lengths"));
                }
                let c = self.take(clen as usize)?;
                lzf::decompress(c, ulen as usize)
            }
            _ => Err(RdbError::Bad("unknown string encoding")),
        }
    }

    pub(crate) fn binary_double(&mut self) -> Result<f64> {
        let s = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(s);
        Ok(f64::from_le_bytes(a))
    }

    pub(crate) fn string_double(&mut self) -> Result<f64> {
        let l = self.u8()?;
        match l {
            253 => Ok(f64::NAN),
            254 => Ok(f64::INFINITY),
            255 => Ok(f64::NEG_INFINITY),
            n => {
                let s = self.take(n as usize)?;
                std::str::from_utf8(s).ok().and_then(|s| s.parse::<f64>().ok()).ok_or(RdbError::Bad("bad double"))
            }
        }
    }
}

fn score_from(s: &[u8]) -> Result<f64> {
    let v: f64 = std::str::from_utf8(s).ok().and_then(|s| s.parse().ok()).ok_or(RdbError::Bad("bad score"))?;
    if v.is_nan() {
        return Err(RdbError::Bad("nan score"));
    }
    Ok(v)
}

fn pairs(v: Vec<Vec<u8>>) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
    if v.len() & 1 == 1 {
        return Err(RdbError::Bad("odd number of entries"));
    }
    let mut out = Vec::with_capacity(v.len() / 2);
    let mut it = v.into_iter();
    while let (Some(a), Some(b)) = (it.next(), it.next()) {
        out.push((a, b));
    }
    Ok(out)
}

/// Refuse duplicate members. Small collections (the listpack case) are
/// compared pairwise; bigger ones are sorted: no hashing, one allocation.
fn no_dups<'a>(it: impl Iterator<Item = &'a [u8]>) -> Result<()> {
    let mut v: Vec<&[u8]> = it.collect();
    if v.len() <= 8 {
        for i in 1..v.len() {
            if v[..i].contains(&v[i]) {
                return Err(RdbError::Bad("duplicate element"));
            }
        }
        return Ok(());
    }
    v.sort_unstable();
    if v.windows(2).any(|w| w[0] == w[1]) {
        return Err(RdbError::Bad("duplicate element"));
    }
    Ok(())
}

fn zset_from_pairs(p: Vec<(Vec<u8>, Vec<u8>)>) -> Result<RdbValue> {
    let mut out = Vec::with_capacity(p.len());
    for (m, s) in p {
        let sc = score_from(&s)?;
        out.push((m, sc));
    }
    finish_zset(out)
}

fn finish_zset(v: Vec<(Vec<u8>, f64)>) -> Result<RdbValue> {
    if v.is_empty() {
        return Err(RdbError::EmptyKey);
    }
    no_dups(v.iter().map(|(m, _)| m.as_slice()))?;
    Ok(RdbValue::ZSet(v))
}

fn finish_hash(v: Vec<(Vec<u8>, Vec<u8>)>) -> Result<RdbValue> {
    if v.is_empty() {
        return Err(RdbError::EmptyKey);
    }
    no_dups(v.iter().map(|(f, _)| f.as_slice()))?;
    Ok(RdbValue::Hash(v))
}

fn finish_set(v: Vec<Vec<u8>>) -> Result<RdbValue> {
    if v.is_empty() {
        return Err(RdbError::EmptyKey);
    }
    no_dups(v.iter().map(|m| m.as_slice()))?;
    Ok(RdbValue::Set(v))
}

/// Report a packed value that failed to decode (or holds duplicates) with Redis's message for its encoding; an
/// empty collection stays [`RdbError::EmptyKey`].
fn integrity<T>(r: Result<T>, msg: &'static str) -> Result<T> {
    r.map_err(|e| match e {
        RdbError::EmptyKey => RdbError::EmptyKey,
        _ => RdbError::Bad(msg),
    })
}

/// A value stored as one packed blob: read the blob (a read error stays what it is), decode it with `f`, and
/// report a failure with `msg` ([`integrity`]).
fn packed<T>(r: &mut Reader<'_>, msg: &'static str, f: impl FnOnce(&[u8]) -> Result<T>) -> Result<T> {
    let blob = r.string()?;
    integrity(f(&blob), msg)
}

/// Decode a value of RDB type `ty` from `r`.
pub fn decode_value(ty: u8, r: &mut Reader<'_>) -> Result<RdbValue> {
    match ty {
        t::STRING => Ok(RdbValue::Str(r.string()?)),
        t::LIST => {
            let n = r.count()?;
            let mut v = Vec::with_capacity(n.min(PREALLOC_CAP));
            for _ in 0..n {
                v.push(r.string()?);
            }
            if v.is_empty() {
                return Err(RdbError::EmptyKey);
            }
            Ok(RdbValue::List(v))
        }
        t::SET => {
            let n = r.count()?;
            let mut v = Vec::with_capacity(n.min(PREALLOC_CAP));
            for _ in 0..n {
                v.push(r.string()?);
            }
            finish_set(v)
        }
        t::ZSET | t::ZSET_2 => {
            let n = r.count()?;
            let mut v = Vec::with_capacity(n.min(PREALLOC_CAP));
            for _ in 0..n {
                let m = r.string()?;
                let s = if ty == t::ZSET_2 { r.binary_double()? } else { r.string_double()? };
                if s.is_nan() {
                    return Err(RdbError::Bad("nan score"));
                }
                v.push((m, s));
            }
            finish_zset(v)
        }
        t::HASH => {
            let n = r.count()?;
            let mut v = Vec::with_capacity(n.min(PREALLOC_CAP));
            for _ in 0..n {
                let f = r.string()?;
                let val = r.string()?;
                v.push((f, val));
            }
            finish_hash(v)
        }
        // A packed encoding that is not valid (or holds duplicates) is refused with Redis's message for it.
        t::HASH_ZIPMAP => packed(r, "Zipmap integrity check failed.", |b| packs::zipmap(b).and_then(finish_hash)),
        t::LIST_ZIPLIST => {
            let v = packed(r, "List ziplist integrity check failed.", packs::ziplist)?;
            if v.is_empty() {
                return Err(RdbError::EmptyKey);
            }
            Ok(RdbValue::List(v))
        }
        t::SET_INTSET => {
            let deep = r.deep;
            packed(r, "Intset integrity check failed.", |b| packs::intset(b, deep).and_then(finish_set))
        }
        t::SET_LISTPACK => {
            packed(r, "Set listpack integrity check failed.", |b| packs::listpack(b).and_then(finish_set))
        }
        t::ZSET_ZIPLIST => packed(r, "Zset ziplist integrity check failed.", |b| {
            packs::ziplist(b).and_then(pairs).and_then(zset_from_pairs)
        }),
        t::ZSET_LISTPACK => packed(r, "Zset listpack integrity check failed.", |b| {
            packs::listpack(b).and_then(pairs).and_then(zset_from_pairs)
        }),
        t::HASH_ZIPLIST => packed(r, "Hash ziplist integrity check failed.", |b| {
            packs::ziplist(b).and_then(pairs).and_then(finish_hash)
        }),
        t::HASH_LISTPACK => packed(r, "Hash listpack integrity check failed.", |b| {
            packs::listpack(b).and_then(pairs).and_then(finish_hash)
        }),
        t::LIST_QUICKLIST | t::LIST_QUICKLIST_2 => {
            let nodes = r.count()?;
            let mut v = Vec::new();
            for _ in 0..nodes {
                let container = if ty == t::LIST_QUICKLIST_2 { r.len()? } else { 2 };
                if container != 1 && container != 2 {
                    return Err(RdbError::Bad("Quicklist integrity check failed."));
                }
                let blob = r.string()?;
                // Redis refuses a node with no bytes, packed or plain.
                if blob.is_empty() {
                    return Err(RdbError::Bad("empty quicklist node"));
                }
                if container == 1 {
                    v.push(blob);
                    continue;
                }
                let items = if ty == t::LIST_QUICKLIST {
                    integrity(packs::ziplist(&blob), "Ziplist integrity check failed.")?
                } else {
                    integrity(packs::listpack(&blob), "Listpack integrity check failed.")?
                };
                // Redis skips empty nodes.
                v.extend(items);
            }
            if v.is_empty() {
                return Err(RdbError::EmptyKey);
            }
            Ok(RdbValue::List(v))
        }
        t::STREAM_LISTPACKS | t::STREAM_LISTPACKS_2 | t::STREAM_LISTPACKS_3 => {
            Ok(RdbValue::Stream(Box::new(crate::stream::decode(ty, r)?)))
        }
        t::MODULE_2 => Ok(RdbValue::Module(crate::module::walk(r)?)),
        t::MODULE => Err(RdbError::Unsupported(ty)),
        _ => Err(RdbError::Bad("unknown type")),
    }
}
