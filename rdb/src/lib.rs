//! Redis 7.0 RDB codec, with no sockets: CRC64 (Jones), LZF, length and
//! string encodings, every value encoding Redis 7.0 (RDB version 10) writes
//! or loads (strings, lists, sets, sorted sets, hashes in all their compact
//! and plain forms, streams with consumer groups, module values kept as
//! opaque blobs), DUMP payloads, and whole RDB files: [`file::RdbWriter`]
//! writes a file incrementally, [`file::RdbParser`] reads one incrementally
//! (push-based, bounded memory, big collections handed over in parts).
//!
//! What it does not know: module value semantics (module values and module
//! aux data are walked via the module opcodes and kept verbatim, never
//! interpreted), RDB version 11+ (Redis 7.2 files are refused, as Redis 7.0
//! does), and the deprecated module type 6 (refused, as Redis 7.0 does).
//! Decoding is defensive: every length is checked against the input that is
//! actually present before anything is allocated from it.

pub mod crc64;
mod decode;
mod encode;
pub mod file;
pub mod lzf;
mod module;
mod packs;
mod stream;

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

/// Top-level opcodes of an RDB file.
pub mod opcodes {
    pub const FUNCTION2: u8 = 245;
    pub const FUNCTION: u8 = 246;
    pub const MODULE_AUX: u8 = 247;
    pub const IDLE: u8 = 248;
    pub const FREQ: u8 = 249;
    pub const AUX: u8 = 250;
    pub const RESIZEDB: u8 = 251;
    pub const EXPIRETIME_MS: u8 = 252;
    pub const EXPIRETIME: u8 = 253;
    pub const SELECTDB: u8 = 254;
    pub const EOF: u8 = 255;
}

/// Whether a value of this RDB type was stored as one compact blob
/// (ziplist/listpack/intset/zipmap), which Redis loads keeping a compact
/// encoding when only the entry count allows it.
pub fn is_compact_type(ty: u8) -> bool {
    matches!(
        ty,
        types::HASH_ZIPMAP
            | types::LIST_ZIPLIST
            | types::SET_INTSET
            | types::ZSET_ZIPLIST
            | types::HASH_ZIPLIST
            | types::HASH_LISTPACK
            | types::ZSET_LISTPACK
            | types::SET_LISTPACK
    )
}

/// A decoded value in a neutral model.
#[derive(Clone, Debug, PartialEq)]
pub enum RdbValue {
    Str(Vec<u8>),
    List(Vec<Vec<u8>>),
    Set(Vec<Vec<u8>>),
    ZSet(Vec<(Vec<u8>, f64)>),
    Hash(Vec<(Vec<u8>, Vec<u8>)>),
    Stream(Box<RdbStream>),
    Module(RdbModule),
}

/// A stream ID `ms-seq`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct StreamId {
    pub ms: u64,
    pub seq: u64,
}

impl StreamId {
    pub fn new(ms: u64, seq: u64) -> StreamId {
        StreamId { ms, seq }
    }

    /// The 16-byte big-endian form Redis uses as radix tree key and in PELs.
    pub fn to_be_bytes(&self) -> [u8; 16] {
        let mut k = [0u8; 16];
        k[..8].copy_from_slice(&self.ms.to_be_bytes());
        k[8..].copy_from_slice(&self.seq.to_be_bytes());
        k
    }

    pub fn from_be_bytes(b: [u8; 16]) -> StreamId {
        let mut ms = [0u8; 8];
        let mut seq = [0u8; 8];
        ms.copy_from_slice(&b[..8]);
        seq.copy_from_slice(&b[8..]);
        StreamId { ms: u64::from_be_bytes(ms), seq: u64::from_be_bytes(seq) }
    }
}

/// One stream entry as stored in a listpack node.
#[derive(Clone, Debug, PartialEq)]
pub struct RdbStreamEntry {
    pub id: StreamId,
    /// A tombstone: XDEL'd but still present in its node, as Redis keeps it
    /// until the whole node is gone. Readers that want the data skip these.
    pub deleted: bool,
    pub fields: Vec<(Vec<u8>, Vec<u8>)>,
}

/// A pending entry of a consumer group (global PEL).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RdbPendingEntry {
    pub id: StreamId,
    pub delivery_time_ms: i64,
    pub delivery_count: u64,
}

/// A consumer of a group.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RdbConsumer {
    pub name: Vec<u8>,
    pub seen_time_ms: i64,
    /// Only in type 21 (Redis 7.2); `None` when read from 15/19. A stream
    /// with any `Some` here is written as type 21 (which Redis 7.0 cannot
    /// load), otherwise as type 19.
    pub active_time_ms: Option<i64>,
    /// IDs of the group PEL entries this consumer owns.
    pub pending: Vec<StreamId>,
}

/// A consumer group.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RdbConsumerGroup {
    pub name: Vec<u8>,
    pub last_id: StreamId,
    /// Logical read counter; -1 (Redis's SCG_INVALID_ENTRIES_READ) when
    /// unknown. Type 15 has no such field: the reader puts Redis's estimate
    /// there (`streamEstimateDistanceFromFirstEverEntry`).
    pub entries_read: i64,
    pub pel: Vec<RdbPendingEntry>,
    pub consumers: Vec<RdbConsumer>,
}

/// A stream value. `entries` are in ID order and include tombstones.
/// `node_sizes`, when not empty, is the number of entries (tombstones
/// included) of each listpack node in order, as read from the input; the
/// writer then reproduces the same nodes, otherwise it splits nodes like
/// Redis's XADD does with the default limits (100 entries, 4096 bytes).
///
/// When the streaming file reader hands a big stream over in several parts,
/// every part but the last carries only entries (and their node sizes); the
/// last part also carries the metadata and the consumer groups.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RdbStream {
    pub entries: Vec<RdbStreamEntry>,
    pub node_sizes: Vec<u32>,
    /// Number of live entries.
    pub length: u64,
    pub last_id: StreamId,
    pub first_id: StreamId,
    pub max_deleted_entry_id: StreamId,
    pub entries_added: u64,
    pub groups: Vec<RdbConsumerGroup>,
}

/// A module value (RDB type 7, MODULE_2) kept opaque.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RdbModule {
    /// The 64-bit module type id (9-char name + 10-bit encoding version).
    pub module_id: u64,
    /// Everything after the type byte: the encoded module id, the module's
    /// opcodes and values, and the final EOF opcode; re-emitted verbatim.
    pub raw: Vec<u8>,
}

impl RdbModule {
    /// The module type name encoded in the id (9 characters).
    pub fn type_name(&self) -> String {
        module::type_name(self.module_id)
    }

    /// The encoding version encoded in the id.
    pub fn encoding_version(&self) -> u32 {
        (self.module_id & 1023) as u32
    }
}

/// Key access information stored before a key: LRU idle seconds (IDLE
/// opcode) or LFU counter (FREQ opcode).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LruInfo {
    #[default]
    None,
    Idle(u64),
    Freq(u8),
}

/// Decoding error.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RdbError {
    /// Input ended early.
    Truncated,
    /// Malformed data.
    Bad(&'static str),
    /// A valid type this codec does not load (module type 6).
    Unsupported(u8),
    /// An RDB file of a version this codec (like Redis 7.0) does not load.
    Version(u32),
    /// An I/O error from the underlying reader or writer (file API).
    Io(String),
    /// A collection with no elements: Redis refuses it in a DUMP payload and
    /// skips the key when loading a file.
    EmptyKey,
}

impl std::fmt::Display for RdbError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RdbError::Truncated => write!(f, "truncated input"),
            RdbError::Bad(m) => write!(f, "bad data: {m}"),
            RdbError::Unsupported(t) => write!(f, "unsupported type {t}"),
            RdbError::Version(v) => write!(f, "Can't handle RDB format version {v}"),
            RdbError::Io(e) => write!(f, "I/O error: {e}"),
            RdbError::EmptyKey => write!(f, "empty collection"),
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
    decode_dump_body_with(body, false)
}

/// [`decode_dump_body`], with Redis's deep sanitization checks when `deep`.
pub fn decode_dump_body_with(body: &[u8], deep: bool) -> Result<RdbValue> {
    let mut r = Reader::new(body);
    r.deep = deep;
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
