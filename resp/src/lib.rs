//! `ferrite-resp`: the wire layer shared by the Ferrite store and proxy.
//!
//! What it does:
//! - [`RequestParser`]: incremental parsing of client requests exactly as
//!   Redis 7.0 accepts them (multibulk arrays of bulk strings, and inline
//!   commands), with Redis's own protocol error strings and size limits.
//!   It returns "need more bytes" instead of failing on partial input and
//!   never rescans bulk payloads it has already consumed.
//! - [`ReplyBuf`]: a reply encoder that knows the difference between RESP2
//!   and RESP3 (maps, sets, doubles, nulls, booleans, push messages).
//! - [`num`]: Redis-compatible number parsing and formatting (`string2ll`,
//!   `strtod`, `%.17g`).
//! - [`frame`]: the reply side for clients and proxies: an incremental frame scanner, a small value parser, a
//!   zero-copy splitter of complete requests and request encoding.
//!
//! What it does not know: sockets, command names, or what any command means.

pub mod frame;
pub mod num;
pub mod parser;
pub mod reply;

pub use parser::{Limits, ProtoError, RequestParser};
pub use reply::ReplyBuf;
