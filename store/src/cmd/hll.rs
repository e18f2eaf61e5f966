//! HyperLogLog commands: PFADD, PFCOUNT, PFMERGE, PFDEBUG, PFSELFTEST.
//!
//! An HLL is a plain string value in Redis's exact byte format, so strings
//! copied between Redis and ferrite keep working:
//!
//! - a 16 byte header: `HYLL`, the encoding byte (0 dense, 1 sparse), three
//!   unused bytes and the cached cardinality (8 bytes little endian, the top
//!   bit of the last byte set = cache invalid);
//! - dense: 16384 registers of 6 bits, packed LSB first (12288 bytes);
//! - sparse: run-length opcodes `ZERO` (00xxxxxx, 1-64 zero registers),
//!   `XZERO` (01xxxxxx yyyyyyyy, 1-16384 zero registers) and `VAL`
//!   (1vvvvvxx, 1-4 registers of value 1-32).
//!
//! Elements are hashed with MurmurHash64A (seed 0xadc83b19); the low 14
//! bits pick the register, the run of zeros in the rest gives its value.
//! Cardinality is estimated with Ertl's improved estimator as in Redis 5+.

use super::{CmdError, CmdImpl, CmdResult, Cx, Lock, WRONGTYPE};
use crate::keyspace::{StrValue, Value};
use std::sync::atomic::{AtomicUsize, Ordering};

pub static COMMANDS: &[CmdImpl] = &[
    CmdImpl { name: "pfadd", handler: pfadd, lock: Lock::Keys },
    CmdImpl { name: "pfcount", handler: pfcount, lock: Lock::Keys },
    CmdImpl { name: "pfmerge", handler: pfmerge, lock: Lock::Keys },
    CmdImpl { name: "pfdebug", handler: pfdebug, lock: Lock::Keys },
    CmdImpl { name: "pfselftest", handler: pfselftest, lock: Lock::None },
];

/// `hll-sparse-max-bytes`: largest sparse HLL (header included) before it
/// is promoted to dense. CONFIG may store into this.
pub static SPARSE_MAX_BYTES: AtomicUsize = AtomicUsize::new(3000);

const INVALID_HLL: CmdError = CmdError::st("WRONGTYPE Key is not a valid HyperLogLog string value.");
const CORRUPTED: CmdError = CmdError::st("INVALIDOBJ Corrupted HLL object detected");

/// The HLL representation (Redis's byte format) and its algorithms.
mod repr {
    pub const HDR: usize = 16;
    pub const P: u32 = 14;
    pub const Q: u32 = 64 - P;
    pub const REGS: usize = 1 << P;
    pub const BITS: usize = 6;
    pub const REG_MAX: u8 = (1 << BITS) - 1;
    pub const DENSE_SIZE: usize = HDR + (REGS * BITS).div_ceil(8);
    pub const DENSE: u8 = 0;
    pub const SPARSE: u8 = 1;
    const VAL_MAX_VALUE: u8 = 32;
    const VAL_MAX_LEN: usize = 4;
    const ZERO_MAX_LEN: usize = 64;
    const XZERO_MAX_LEN: usize = 16384;
    /// 0.5 / ln(2)
    const ALPHA_INF: f64 = 0.721_347_520_444_481_7;

    /// MurmurHash2, 64 bit version, endian neutral (little endian reads).
    pub fn murmur64a(key: &[u8], seed: u64) -> u64 {
        const M: u64 = 0xc6a4_a793_5bd1_e995;
        const R: u32 = 47;
        let mut h = seed ^ (key.len() as u64).wrapping_mul(M);
        let mut chunks = key.chunks_exact(8);
        for c in &mut chunks {
            let mut k = u64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]);
            k = k.wrapping_mul(M);
            k ^= k >> R;
            k = k.wrapping_mul(M);
            h ^= k;
            h = h.wrapping_mul(M);
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            for (i, &b) in rest.iter().enumerate() {
                h ^= (b as u64) << (8 * i);
            }
            h = h.wrapping_mul(M);
        }
        h ^= h >> R;
        h = h.wrapping_mul(M);
        h ^= h >> R;
        h
    }

    /// Register index and run length ("000..1" pattern) for an element.
    pub fn pat_len(ele: &[u8]) -> (usize, u8) {
        let hash = murmur64a(ele, 0xadc8_3b19);
        let index = (hash & (REGS as u64 - 1)) as usize;
        let h = (hash >> P) | (1u64 << Q);
        (index, h.trailing_zeros() as u8 + 1)
    }

    /// Register `i` of packed dense registers (the byte after the array
    /// reads as zero, like the sds terminator in Redis).
    #[inline]
    pub fn dense_get(r: &[u8], i: usize) -> u8 {
        let byte = i * BITS / 8;
        let fb = (i * BITS) & 7;
        let b0 = r.get(byte).copied().unwrap_or(0) as u32;
        let b1 = r.get(byte + 1).copied().unwrap_or(0) as u32;
        (((b0 >> fb) | (b1 << (8 - fb))) & REG_MAX as u32) as u8
    }

    #[inline]
    pub fn dense_put(r: &mut [u8], i: usize, v: u8) {
        let byte = i * BITS / 8;
        let fb = (i * BITS) & 7;
        let v = (v & REG_MAX) as u32;
        let m = REG_MAX as u32;
        if let Some(b) = r.get_mut(byte) {
            *b &= !((m << fb) as u8);
            *b |= (v << fb) as u8;
        }
        if let Some(b) = r.get_mut(byte + 1) {
            *b &= !((m >> (8 - fb)) as u8);
            *b |= (v >> (8 - fb)) as u8;
        }
    }

    /// Set dense register `i` to `v` if that is larger. True if changed.
    #[inline]
    pub fn dense_set(r: &mut [u8], i: usize, v: u8) -> bool {
        if v > dense_get(r, i) {
            dense_put(r, i, v);
            true
        } else {
            false
        }
    }

    /// One sparse opcode.
    #[derive(Clone, Copy, PartialEq, Eq, Debug)]
    pub enum Op {
        Zero(usize),
        XZero(usize),
        /// value, run length
        Val(u8, usize),
    }

    impl Op {
        /// Number of registers the opcode covers.
        pub fn span(self) -> usize {
            match self {
                Op::Zero(n) | Op::XZero(n) | Op::Val(_, n) => n,
            }
        }
    }

    /// Decode the opcode at `p` (`p < s.len()`); returns it and its size.
    /// A truncated XZERO reads its second byte as zero (Redis reads the sds
    /// terminator there).
    #[inline]
    pub fn op_at(s: &[u8], p: usize) -> (Op, usize) {
        let b = s[p];
        if b & 0xc0 == 0 {
            (Op::Zero((b & 0x3f) as usize + 1), 1)
        } else if b & 0x80 != 0 {
            (Op::Val(((b >> 2) & 0x1f) + 1, (b & 3) as usize + 1), 1)
        } else {
            let lo = s.get(p + 1).copied().unwrap_or(0) as usize;
            (Op::XZero((((b & 0x3f) as usize) << 8 | lo) + 1), 2)
        }
    }

    /// Iterate over the opcodes of a sparse HLL string (header included).
    pub fn ops(s: &[u8]) -> impl Iterator<Item = Op> + '_ {
        let mut p = HDR;
        std::iter::from_fn(move || {
            if p >= s.len() {
                return None;
            }
            let (op, n) = op_at(s, p);
            p += n;
            Some(op)
        })
    }

    #[inline]
    fn val_byte(v: u8, len: usize) -> u8 {
        ((v - 1) << 2 | (len as u8 - 1)) | 0x80
    }

    fn push_zero(seq: &mut Vec<u8>, len: usize) {
        if len > ZERO_MAX_LEN {
            let l = len - 1;
            seq.push((l >> 8) as u8 | 0x40);
            seq.push((l & 0xff) as u8);
        } else {
            seq.push((len - 1) as u8);
        }
    }

    /// A fresh empty HLL: sparse, all registers zero, cache valid (0).
    pub fn new_sparse() -> Vec<u8> {
        let mut v = Vec::with_capacity(HDR + 2);
        v.extend_from_slice(b"HYLL");
        v.push(SPARSE);
        v.extend_from_slice(&[0; 11]);
        let mut left = REGS;
        while left > 0 {
            let n = left.min(XZERO_MAX_LEN);
            let l = n - 1;
            v.push((l >> 8) as u8 | 0x40);
            v.push((l & 0xff) as u8);
            left -= n;
        }
        v
    }

    /// Redis's `isHLLObjectOrReply` checks on the string bytes.
    pub fn is_valid(s: &[u8]) -> bool {
        s.len() >= HDR && &s[..4] == b"HYLL" && s[4] <= SPARSE && (s[4] != DENSE || s.len() == DENSE_SIZE)
    }

    pub fn invalidate_cache(s: &mut [u8]) {
        s[15] |= 0x80;
    }

    pub fn cache_valid(s: &[u8]) -> bool {
        s[15] & 0x80 == 0
    }

    pub fn cached(s: &[u8]) -> u64 {
        u64::from_le_bytes([s[8], s[9], s[10], s[11], s[12], s[13], s[14], s[15]])
    }

    pub fn set_cached(s: &mut [u8], card: u64) {
        s[8..16].copy_from_slice(&card.to_le_bytes());
    }

    /// Convert a sparse HLL to dense in place (no-op when already dense).
    /// Err (and no change) if the sparse data is corrupted.
    pub fn sparse_to_dense(s: &mut Vec<u8>) -> Result<(), ()> {
        if s[4] == DENSE {
            return Ok(());
        }
        let mut d = vec![0u8; DENSE_SIZE];
        d[..HDR].copy_from_slice(&s[..HDR]);
        d[4] = DENSE;
        let mut idx = 0usize;
        for op in ops(s) {
            let n = op.span();
            if n + idx > REGS {
                return Err(());
            }
            if let Op::Val(v, _) = op {
                for i in idx..idx + n {
                    dense_put(&mut d[HDR..], i, v);
                }
            }
            idx += n;
        }
        if idx != REGS {
            return Err(());
        }
        *s = d;
        Ok(())
    }

    /// Redis's `hllSparseSet`: raise register `index` to `count` in a
    /// sparse HLL, promoting to dense when needed. 1 = changed, 0 = not
    /// changed, -1 = corrupted.
    pub fn sparse_set(s: &mut Vec<u8>, index: usize, count: u8, max_bytes: usize) -> i32 {
        if count > VAL_MAX_VALUE {
            return promote(s, index, count);
        }
        // Step 1: find the opcode covering `index`.
        let end = s.len();
        let mut p = HDR;
        let mut first = 0usize;
        let mut prev: Option<usize> = None;
        let mut span = 0usize;
        let mut cur = Op::Zero(1);
        let mut oplen = 1;
        while p < end {
            let (op, n) = op_at(s, p);
            cur = op;
            oplen = n;
            span = match op {
                Op::Zero(l) | Op::XZero(l) | Op::Val(_, l) => l,
            };
            if index < first + span {
                break;
            }
            prev = Some(p);
            p += n;
            first += span;
        }
        if span == 0 || p >= end {
            return -1;
        }
        // Step 2: trivial in-place updates.
        match cur {
            Op::Val(old, runlen) => {
                if old >= count {
                    return 0;
                }
                if runlen == 1 {
                    s[p] = val_byte(count, 1);
                    return updated(s, prev);
                }
            }
            Op::Zero(1) => {
                s[p] = val_byte(count, 1);
                return updated(s, prev);
            }
            _ => {}
        }
        // General case: split the opcode into up to three.
        let last = first + span - 1;
        let mut seq: Vec<u8> = Vec::with_capacity(5);
        match cur {
            Op::Zero(_) | Op::XZero(_) => {
                if index != first {
                    push_zero(&mut seq, index - first);
                }
                seq.push(val_byte(count, 1));
                if index != last {
                    push_zero(&mut seq, last - index);
                }
            }
            Op::Val(cv, _) => {
                if index != first {
                    seq.push(val_byte(cv, index - first));
                }
                seq.push(val_byte(count, 1));
                if index != last {
                    seq.push(val_byte(cv, last - index));
                }
            }
        }
        // Step 3: substitute the sequence for the old opcode.
        let delta = seq.len() as isize - oplen as isize;
        if delta > 0 && s.len() + delta as usize > max_bytes {
            return promote(s, index, count);
        }
        let new_len = (s.len() as isize + delta) as usize;
        let old_end = (p + oplen).min(end);
        s.splice(p..old_end, seq);
        s.truncate(new_len);
        updated(s, prev)
    }

    /// Step 4 of `hllSparseSet`: merge adjacent equal VAL opcodes near the
    /// change, then invalidate the cached cardinality.
    fn updated(s: &mut Vec<u8>, prev: Option<usize>) -> i32 {
        let mut end = s.len();
        let mut p = prev.unwrap_or(HDR);
        let mut scan = 5;
        while p < end {
            if scan == 0 {
                break;
            }
            scan -= 1;
            match op_at(s, p) {
                (Op::XZero(_), _) => {
                    p += 2;
                    continue;
                }
                (Op::Zero(_), _) => {
                    p += 1;
                    continue;
                }
                (Op::Val(v1, l1), _) => {
                    if p + 1 < end {
                        if let (Op::Val(v2, l2), _) = op_at(s, p + 1) {
                            if v1 == v2 && l1 + l2 <= VAL_MAX_LEN {
                                s[p + 1] = val_byte(v1, l1 + l2);
                                s.remove(p);
                                end -= 1;
                                continue;
                            }
                        }
                    }
                }
            }
            p += 1;
        }
        invalidate_cache(s);
        1
    }

    fn promote(s: &mut Vec<u8>, index: usize, count: u8) -> i32 {
        if sparse_to_dense(s).is_err() {
            return -1;
        }
        dense_set(&mut s[HDR..], index, count);
        1
    }

    /// Add an element to a valid HLL: 1 = changed, 0 = not, -1 = corrupted.
    pub fn add(s: &mut Vec<u8>, ele: &[u8], max_bytes: usize) -> i32 {
        let (index, count) = pat_len(ele);
        match s[4] {
            DENSE => dense_set(&mut s[HDR..], index, count) as i32,
            SPARSE => sparse_set(s, index, count, max_bytes),
            _ => -1,
        }
    }

    /// Register histogram of a valid HLL; Err if the sparse data is corrupted.
    pub fn histogram(s: &[u8]) -> Result<[u64; 64], ()> {
        let mut h = [0u64; 64];
        if s[4] == DENSE {
            let r = &s[HDR..];
            for i in 0..REGS {
                h[dense_get(r, i) as usize] += 1;
            }
        } else {
            let mut idx = 0usize;
            for op in ops(s) {
                let n = op.span();
                if idx + n > REGS {
                    return Err(());
                }
                idx += n;
                let v = if let Op::Val(v, _) = op { v as usize } else { 0 };
                h[v] += n as u64;
            }
            if idx != REGS {
                return Err(());
            }
        }
        Ok(h)
    }

    /// Histogram of raw one-byte-per-register registers.
    pub fn raw_histogram(max: &[u8]) -> [u64; 64] {
        let mut h = [0u64; 64];
        for &v in max {
            h[(v & 63) as usize] += 1;
        }
        h
    }

    fn sigma(mut x: f64) -> f64 {
        if x == 1.0 {
            return f64::INFINITY;
        }
        let mut y = 1.0;
        let mut z = x;
        loop {
            x *= x;
            let zp = z;
            z += x * y;
            y += y;
            if zp == z {
                return z;
            }
        }
    }

    fn tau(mut x: f64) -> f64 {
        if x == 0.0 || x == 1.0 {
            return 0.0;
        }
        let mut y = 1.0;
        let mut z = 1.0 - x;
        loop {
            x = x.sqrt();
            let zp = z;
            y *= 0.5;
            let d = 1.0 - x;
            z -= d * d * y;
            if zp == z {
                return z / 3.0;
            }
        }
    }

    /// Ertl's estimator over a register histogram, with Redis's rounding
    /// and integer conversions.
    pub fn estimate(h: &[u64; 64]) -> u64 {
        let m = REGS as f64;
        let q = Q as usize;
        let mut z = m * tau((m - h[q + 1] as f64) / m);
        for j in (1..=q).rev() {
            z += h[j] as f64;
            z *= 0.5;
        }
        z += m * sigma(h[0] as f64 / m);
        let x = ALPHA_INF * m * m / z;
        // llroundl: half away from zero; out of range -> LLONG_MIN (x86).
        let ll: i64 = if x.is_finite() && x.abs() < 9.223_372_036_854_775e18 { x.round() as i64 } else { i64::MIN };
        let e = ll as f64;
        if e < 0.0 {
            (e as i64) as u64
        } else {
            e as u64
        }
    }

    /// Cardinality of a valid HLL; Err if the sparse data is corrupted.
    pub fn count(s: &[u8]) -> Result<u64, ()> {
        histogram(s).map(|h| estimate(&h))
    }

    /// max[i] = MAX(max[i], register i) over a valid HLL; Err if corrupted.
    pub fn merge(max: &mut [u8], s: &[u8]) -> Result<(), ()> {
        if s[4] == DENSE {
            let r = &s[HDR..];
            for (i, m) in max.iter_mut().enumerate().take(REGS) {
                let v = dense_get(r, i);
                if v > *m {
                    *m = v;
                }
            }
            return Ok(());
        }
        let mut i = 0usize;
        for op in ops(s) {
            let n = op.span();
            if n + i > REGS {
                return Err(());
            }
            if let Op::Val(v, _) = op {
                for m in &mut max[i..i + n] {
                    if v > *m {
                        *m = v;
                    }
                }
            }
            i += n;
        }
        if i != REGS {
            return Err(());
        }
        Ok(())
    }

    /// Human readable sparse opcodes (PFDEBUG DECODE).
    pub fn decode(s: &[u8]) -> String {
        let mut out = String::new();
        for op in ops(s) {
            let part = match op {
                Op::Zero(n) => format!("z:{n} "),
                Op::XZero(n) => format!("Z:{n} "),
                Op::Val(v, n) => format!("v:{v},{n} "),
            };
            out.push_str(&part);
        }
        while out.ends_with(' ') {
            out.pop();
        }
        out
    }
}

fn max_bytes() -> usize {
    SPARSE_MAX_BYTES.load(Ordering::Relaxed)
}

/// The bytes of a string value if it is a valid HLL (int-encoded strings
/// never are).
fn valid_hll(v: &Value) -> Result<(), CmdError> {
    match v {
        Value::Str(StrValue::Int(_)) => Err(INVALID_HLL),
        Value::Str(s) => {
            let mut t = itoa::Buffer::new();
            if repr::is_valid(s.as_bytes(&mut t)) {
                Ok(())
            } else {
                Err(INVALID_HLL)
            }
        }
        _ => Err(WRONGTYPE),
    }
}

/// Validate a looked-up value as an HLL and give mutable access to its
/// bytes (the string becomes `raw`, as Redis unshares it).
fn hll_bytes(v: &mut Value) -> Result<&mut Vec<u8>, CmdError> {
    valid_hll(v)?;
    match v {
        Value::Str(s) => Ok(s.make_raw()),
        _ => Err(WRONGTYPE),
    }
}

/// Read-only access to the bytes of a value already checked by `valid_hll`.
fn with_bytes<R>(v: &Value, f: impl FnOnce(&[u8]) -> R) -> R {
    let mut t = itoa::Buffer::new();
    match v {
        Value::Str(s) => f(s.as_bytes(&mut t)),
        _ => f(&[]),
    }
}

fn pfadd(cx: &mut Cx) -> CmdResult {
    let key = cx.arg(1);
    let mut updated = 0u64;
    if cx.ks.lookup(key)?.is_none() {
        cx.ks.insert(key, Value::Str(StrValue::Raw(repr::new_sparse())), 0)?;
        updated += 1;
    }
    let args = cx.args;
    let mb = max_bytes();
    let e = cx.ks.lookup(key)?.ok_or(super::UNDECLARED)?;
    let s = hll_bytes(&mut e.value)?;
    for ele in &args[2..] {
        match repr::add(s, ele, mb) {
            1 => updated += 1,
            -1 => return Err(CORRUPTED),
            _ => {}
        }
    }
    if updated > 0 {
        repr::invalidate_cache(s);
        cx.ks.modified(key);
        cx.ks.notify(crate::notify::STRING, "pfadd", key);
    }
    cx.out.int(i64::from(updated > 0));
    Ok(())
}

fn pfcount(cx: &mut Cx) -> CmdResult {
    if cx.argc() > 2 {
        let mut max = vec![0u8; repr::REGS];
        for i in 1..cx.argc() {
            let key = cx.arg(i);
            let Some(e) = cx.ks.lookup_read(key)? else { continue };
            valid_hll(&e.value)?;
            with_bytes(&e.value, |b| repr::merge(&mut max, b)).map_err(|_| CORRUPTED)?;
        }
        let card = repr::estimate(&repr::raw_histogram(&max));
        cx.out.int(card as i64);
        return Ok(());
    }
    let key = cx.arg(1);
    let Some(e) = cx.ks.lookup_read(key)? else {
        cx.out.int(0);
        return Ok(());
    };
    let s = hll_bytes(&mut e.value)?;
    if repr::cache_valid(s) {
        let card = repr::cached(s);
        cx.out.int(card as i64);
        return Ok(());
    }
    let card = repr::count(s).map_err(|_| CORRUPTED)?;
    repr::set_cached(s, card);
    cx.ks.modified(key);
    cx.out.int(card as i64);
    Ok(())
}

fn pfmerge(cx: &mut Cx) -> CmdResult {
    let mut max = vec![0u8; repr::REGS];
    let mut use_dense = false;
    for i in 1..cx.argc() {
        let key = cx.arg(i);
        let Some(e) = cx.ks.lookup_read(key)? else { continue };
        valid_hll(&e.value)?;
        with_bytes(&e.value, |b| {
            if b[4] == repr::DENSE {
                use_dense = true;
            }
            repr::merge(&mut max, b)
        })
        .map_err(|_| CORRUPTED)?;
    }
    let dest = cx.arg(1);
    if cx.ks.lookup(dest)?.is_none() {
        cx.ks.insert(dest, Value::Str(StrValue::Raw(repr::new_sparse())), 0)?;
    }
    let mb = max_bytes();
    let e = cx.ks.lookup(dest)?.ok_or(super::UNDECLARED)?;
    let s = hll_bytes(&mut e.value)?;
    if use_dense && repr::sparse_to_dense(s).is_err() {
        return Err(CORRUPTED);
    }
    for (j, &m) in max.iter().enumerate() {
        if m == 0 {
            continue;
        }
        if s[4] == repr::DENSE {
            repr::dense_set(&mut s[repr::HDR..], j, m);
        } else {
            repr::sparse_set(s, j, m, mb);
        }
    }
    repr::invalidate_cache(s);
    cx.ks.modified(dest);
    // Redis publishes "pfadd" for PFMERGE too.
    cx.ks.notify(crate::notify::STRING, "pfadd", dest);
    cx.out.ok();
    Ok(())
}

fn pfdebug(cx: &mut Cx) -> CmdResult {
    let sub = cx.arg(1);
    let key = cx.arg(2);
    let Some(e) = cx.ks.lookup(key)? else {
        return Err(CmdError::err("The specified key does not exist"));
    };
    let s = hll_bytes(&mut e.value)?;
    if sub.eq_ignore_ascii_case(b"getreg") {
        if s[4] == repr::SPARSE {
            repr::sparse_to_dense(s).map_err(|_| CORRUPTED)?;
            cx.srv.stats.dirty.fetch_add(1, Ordering::Relaxed);
        }
        let r = &s[repr::HDR..];
        cx.out.array(repr::REGS);
        for i in 0..repr::REGS {
            cx.out.int(repr::dense_get(r, i) as i64);
        }
    } else if sub.eq_ignore_ascii_case(b"decode") {
        if s[4] != repr::SPARSE {
            return Err(CmdError::err("HLL encoding is not sparse"));
        }
        let d = repr::decode(s);
        cx.out.bulk(d.as_bytes());
    } else if sub.eq_ignore_ascii_case(b"encoding") {
        cx.out.simple(if s[4] == repr::DENSE { b"dense" } else { b"sparse" });
    } else if sub.eq_ignore_ascii_case(b"todense") {
        let mut conv = false;
        if s[4] == repr::SPARSE {
            repr::sparse_to_dense(s).map_err(|_| CORRUPTED)?;
            conv = true;
            cx.srv.stats.dirty.fetch_add(1, Ordering::Relaxed);
        }
        cx.out.int(i64::from(conv));
    } else {
        match std::str::from_utf8(sub) {
            Ok(name) => return Err(CmdError::err(format!("Unknown PFDEBUG subcommand '{name}'"))),
            Err(_) => {
                // Not UTF-8: write the error bytes as Redis does.
                let mut line = b"-ERR Unknown PFDEBUG subcommand '".to_vec();
                line.extend(sub.iter().map(|&c| if c == b'\r' || c == b'\n' { b' ' } else { c }));
                line.extend_from_slice(b"'\r\n");
                cx.out.raw(&line);
            }
        }
    }
    Ok(())
}

/// Small deterministic PRNG for the self test (xorshift64*).
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

fn pfselftest(cx: &mut Cx) -> CmdResult {
    let seed0 = (cx.ks.now as u64) ^ 0x9e37_79b9_7f4a_7c15 | 1;
    let mut rng = Rng(seed0);
    // Test 1: register access does not disturb neighbours.
    let mut regs = vec![0u8; repr::DENSE_SIZE - repr::HDR];
    let mut bytes = vec![0u8; repr::REGS];
    for _ in 0..1000 {
        for (i, b) in bytes.iter_mut().enumerate() {
            let r = (rng.next() & repr::REG_MAX as u64) as u8;
            *b = r;
            repr::dense_put(&mut regs, i, r);
        }
        for (i, &b) in bytes.iter().enumerate() {
            let v = repr::dense_get(&regs, i);
            if v != b {
                return Err(CmdError::raw(format!("TESTFAILED Register {i} should be {b} but is {v}")));
            }
        }
    }
    // Test 2: approximation error, dense and sparse agreeing.
    let mut dense = vec![0u8; repr::DENSE_SIZE];
    dense[..4].copy_from_slice(b"HYLL");
    let mut sparse = repr::new_sparse();
    let relerr = 1.04 / (repr::REGS as f64).sqrt();
    let mut checkpoint: u64 = 1;
    let seed = rng.next();
    let mb = max_bytes();
    for j in 1..=10_000_000u64 {
        let ele = (j ^ seed).to_le_bytes();
        let (index, count) = repr::pat_len(&ele);
        repr::dense_set(&mut dense[repr::HDR..], index, count);
        repr::add(&mut sparse, &ele, mb);
        if j != checkpoint {
            continue;
        }
        if (j as usize) < mb / 2 && sparse[4] != repr::SPARSE {
            return Err(CmdError::st("TESTFAILED sparse encoding not used"));
        }
        let dc = repr::count(&dense).unwrap_or(u64::MAX);
        let sc = repr::count(&sparse).unwrap_or(u64::MAX - 1);
        if dc != sc {
            return Err(CmdError::st("TESTFAILED dense/sparse disagree"));
        }
        let abserr = (checkpoint as i64 - dc as i64).unsigned_abs();
        let mut maxerr = (relerr * 6.0 * checkpoint as f64).ceil() as u64;
        if j == 10 {
            maxerr = 1;
        }
        if abserr > maxerr {
            return Err(CmdError::raw(format!("TESTFAILED Too big error. card:{checkpoint} abserr:{abserr}")));
        }
        checkpoint *= 10;
    }
    cx.out.ok();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::repr::*;

    #[test]
    fn empty_is_18_bytes_and_counts_zero() {
        let s = new_sparse();
        assert_eq!(s.len(), 18);
        assert_eq!(&s[16..], &[0x7f, 0xff]);
        assert_eq!(count(&s), Ok(0));
    }

    #[test]
    fn sparse_and_dense_agree() {
        let mut s = new_sparse();
        let mut d = s.clone();
        sparse_to_dense(&mut d).unwrap();
        for i in 0..5000u32 {
            let e = format!("e{i}");
            add(&mut s, e.as_bytes(), 3000);
            add(&mut d, e.as_bytes(), 3000);
            if i % 97 == 0 {
                assert_eq!(count(&s), count(&d));
            }
        }
        assert_eq!(s[4], DENSE);
        assert_eq!(s[HDR..], d[HDR..]);
    }

    #[test]
    fn corrupted_sparse_is_rejected() {
        let mut s = new_sparse();
        s.truncate(HDR);
        assert_eq!(add(&mut s, b"x", 3000), -1);
        assert!(count(&s).is_err());
        let mut t = new_sparse();
        t.push(0x80);
        assert!(count(&t).is_err());
        // Opcodes running past the last register are corruption (Redis
        // with the CVE-2025-32023 fix, as shipped in Debian's 7.0.15).
        let mut max = vec![0u8; REGS];
        assert!(merge(&mut max, &t).is_err());
        assert!(sparse_to_dense(&mut t).is_err());
        let mut u = new_sparse();
        u.push(0x00);
        u.push(0x80);
        assert!(merge(&mut max, &u).is_err());
        assert!(sparse_to_dense(&mut u).is_err());
    }
}
