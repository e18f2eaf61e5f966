//! The value stored under a key, and the per-key entry.

use super::smallbytes::SmallBytes;
use crate::types::{hash::Hash, list::List, set::Set, stream::Stream, zset::ZSet};

/// A string value, with Redis's three encodings.
#[derive(Clone, Debug)]
pub enum StrValue {
    /// `int`: the string is the canonical decimal form of this integer.
    Int(i64),
    /// `embstr`: a short (<= 44 bytes) string that was never modified in place.
    Emb(SmallBytes),
    /// `raw`: a long string, or one modified in place (APPEND, SETRANGE, SETBIT).
    Raw(Vec<u8>),
}

/// Largest string Redis stores as `embstr`.
pub const EMBSTR_MAX: usize = 44;

impl StrValue {
    /// Encode a fresh string value the way Redis's `tryObjectEncoding` does.
    pub fn from_bytes(b: &[u8]) -> StrValue {
        if b.len() <= 20 {
            if let Some(i) = ferrite_resp::num::parse_i64(b) {
                return StrValue::Int(i);
            }
        }
        if b.len() <= EMBSTR_MAX {
            StrValue::Emb(SmallBytes::new(b))
        } else {
            StrValue::Raw(b.to_vec())
        }
    }

    /// The bytes of the string; integers are formatted into `tmp`.
    pub fn as_bytes<'a>(&'a self, tmp: &'a mut itoa::Buffer) -> &'a [u8] {
        match self {
            StrValue::Int(i) => tmp.format(*i).as_bytes(),
            StrValue::Emb(s) => s,
            StrValue::Raw(v) => v,
        }
    }

    /// Owned copy of the bytes.
    pub fn to_vec(&self) -> Vec<u8> {
        let mut t = itoa::Buffer::new();
        self.as_bytes(&mut t).to_vec()
    }

    /// Length in bytes (STRLEN).
    pub fn len(&self) -> usize {
        match self {
            StrValue::Int(i) => itoa::Buffer::new().format(*i).len(),
            StrValue::Emb(s) => s.len(),
            StrValue::Raw(v) => v.len(),
        }
    }

    /// Switch to the `raw` encoding and give mutable access to the bytes.
    pub fn make_raw(&mut self) -> &mut Vec<u8> {
        if !matches!(self, StrValue::Raw(_)) {
            *self = StrValue::Raw(self.to_vec());
        }
        match self {
            StrValue::Raw(v) => v,
            _ => unreachable!("just converted to raw"),
        }
    }

    pub fn encoding(&self) -> &'static str {
        match self {
            StrValue::Int(_) => "int",
            StrValue::Emb(_) => "embstr",
            StrValue::Raw(_) => "raw",
        }
    }
}

#[derive(Clone, Debug)]
pub enum Value {
    Str(StrValue),
    List(Box<List>),
    Hash(Box<Hash>),
    Set(Box<Set>),
    ZSet(Box<ZSet>),
    Stream(Box<Stream>),
}

impl Value {
    pub fn str(b: &[u8]) -> Value {
        Value::Str(StrValue::from_bytes(b))
    }

    /// The name TYPE replies with.
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Str(_) => "string",
            Value::List(_) => "list",
            Value::Hash(_) => "hash",
            Value::Set(_) => "set",
            Value::ZSet(_) => "zset",
            Value::Stream(_) => "stream",
        }
    }

    /// The name OBJECT ENCODING replies with (Redis 7.0 names).
    pub fn encoding(&self) -> &'static str {
        match self {
            Value::Str(s) => s.encoding(),
            Value::List(_) => "quicklist",
            Value::Hash(h) => h.encoding(),
            Value::Set(s) => s.encoding(),
            Value::ZSet(z) => z.encoding(),
            Value::Stream(_) => "stream",
        }
    }

    /// Approximate heap bytes owned by the value (MEMORY USAGE, eviction).
    pub fn mem_usage(&self) -> usize {
        match self {
            Value::Str(StrValue::Int(_)) => 0,
            Value::Str(StrValue::Emb(s)) => s.heap_size(),
            Value::Str(StrValue::Raw(v)) => v.capacity(),
            Value::List(l) => l.mem_usage(),
            Value::Hash(h) => h.mem_usage(),
            Value::Set(s) => s.mem_usage(),
            Value::ZSet(z) => z.mem_usage(),
            Value::Stream(s) => s.mem_usage(),
        }
    }

    /// Whether a collection became empty (and the key must be deleted).
    /// Streams are never deleted for being empty, as in Redis.
    pub fn is_empty_collection(&self) -> bool {
        match self {
            Value::Str(_) | Value::Stream(_) => false,
            Value::List(l) => l.len() == 0,
            Value::Hash(h) => h.len() == 0,
            Value::Set(s) => s.len() == 0,
            Value::ZSet(z) => z.len() == 0,
        }
    }
}

/// One key and everything attached to it. Boxed in the slot tables so a
/// table bucket costs one pointer.
#[derive(Clone, Debug)]
pub struct Entry {
    pub key: SmallBytes,
    pub value: Value,
    /// Absolute expiry in unix milliseconds; 0 means no expiry.
    pub expire_at: i64,
    /// LRU clock (unix seconds, see `server::lru_of`) of the last access.
    pub lru: u32,
}

impl Entry {
    #[inline]
    pub fn is_expired(&self, now_ms: i64) -> bool {
        self.expire_at != 0 && self.expire_at < now_ms
    }
}
