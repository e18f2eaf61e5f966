//! The proxy's RESP helpers: the reply framing, value parser, request splitter and encoder live in
//! [`ferrite_resp::frame`] (shared and fuzzed there); re-exported here under the names the proxy uses.

pub use ferrite_resp::frame::*;
