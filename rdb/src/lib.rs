//! Redis 7.0 RDB value codec: CRC64 (Jones), LZF, length and string
//! encodings, and the value types a DUMP payload can carry. Decoding is
//! defensive: every length is checked against the remaining input and no
//! allocation is sized by an unchecked length.

pub mod crc64;
mod decode;
mod encode;
pub mod lzf;
mod packs;

pub use decode::{decode_value, Reader};
pub use encode::{encode_value, Writer};

/// RDB version written by Redis 7.0.
pub const RDB_VERSION: u16 = 10;

/// Object type bytes.
pub mod types {
    pub const STRING: u8 = 0;
    pub const LIST: u8 = 1;
    pub const SET: u8 = 2;
    pub const ZSET: u8 = 3;
    pub const HASH: u8 = 4;
    pub const ZSET_2: u8 = 5;
    pub const MODULE: u8 = 6;
    pub const MODULE_2: u8 = 7;
    pub const HASH_ZIPMAP: u8 = 9;
    pub const LIST_ZIPLIST: u8 = 10;
    pub const SET_INTSET: u8 = 11;
    pub const ZSET_ZIPLIST: u8 = 12;
    pub const HASH_ZIPLIST: u8 = 13;
    pub const LIST_QUICKLIST: u8 = 14;
    pub const STREAM_LISTPACKS: u8 = 15;
    pub const HASH_LISTPACK: u8 = 16;
    pub const ZSET_LISTPACK: u8 = 17;
    pub const LIST_QUICKLIST_2: u8 = 18;
    pub const STREAM_LISTPACKS_2: u8 = 19;
    pub const SET_LISTPACK: u8 = 20;
    pub const STREAM_LISTPACKS_3: u8 = 21;
}

/// A decoded value in a neutral model.
#[derive(Clone, Debug, PartialEq)]
pub enum RdbValue {
    Str(Vec<u8>),
    List(Vec<Vec<u8>>),
    Set(Vec<Vec<u8>>),
    ZSet(Vec<(Vec<u8>, f64)>),
    Hash(Vec<(Vec<u8>, Vec<u8>)>),
}

/// Decoding error.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RdbError {
    /// Input ended early.
    Truncated,
    /// Malformed data.
    Bad(&'static str),
    /// A valid type this codec does not load (streams, modules).
    Unsupported(u8),
}

impl std::fmt::Display for RdbError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RdbError::Truncated => write!(f, "truncated input"),
            RdbError::Bad(m) => write!(f, "bad data: {m}"),
            RdbError::Unsupported(t) => write!(f, "unsupported type {t}"),
        }
    }
}

impl std::error::Error for RdbError {}

pub type Result<T> = std::result::Result<T, RdbError>;

/// Cap for preallocations driven by lengths read from the input.
pub(crate) const PREALLOC_CAP: usize = 1024;

/// Split a DUMP payload into its body (type byte + value) after checking the
/// footer: RDB version (<= 10) and CRC64. `None` = version or checksum wrong.
pub fn verify_dump_payload(p: &[u8]) -> Option<&[u8]> {
    if p.len() < 10 {
        return None;
    }
    let body_len = p.len() - 10;
    let ver = u16::from_le_bytes([p[body_len], p[body_len + 1]]);
    if ver > RDB_VERSION {
        return None;
    }
    let mut c = [0u8; 8];
    c.copy_from_slice(&p[body_len + 2..]);
    let want = u64::from_le_bytes(c);
    if crc64::crc64(0, &p[..p.len() - 8]) != want {
        return None;
    }
    Some(&p[..body_len])
}

/// Decode a verified DUMP body: type byte then the value.
pub fn decode_dump_body(body: &[u8]) -> Result<RdbValue> {
    let mut r = Reader::new(body);
    let t = r.u8()?;
    decode_value(t, &mut r)
}

/// Build a complete DUMP payload for a value.
pub fn dump_payload(v: &RdbValue) -> Vec<u8> {
    let mut w = Writer::default();
    encode_value(v, &mut w);
    let mut out = w.buf;
    out.extend_from_slice(&RDB_VERSION.to_le_bytes());
    let crc = crc64::crc64(0, &out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}
