//! `ferrite-commands`: what every Redis 7.0 command looks like from the
//! outside, as data.
//!
//! - [`table`]: the command table (arity, flags, ACL categories, key
//!   specifications, subcommands, and `COMMAND DOCS` content) recorded from
//!   a real Redis 7.0 server by `tools/gen_command_table.py`.
//! - [`keys`]: finding the key arguments of a command from its key
//!   specifications, exactly like Redis's `getKeysUsingKeySpecs`.
//! - [`slot`]: `CRC16(key) mod 16384` with hash tags.
//!
//! What it does not know: how any command is executed, sockets, or where a
//! slot lives. The store uses it to validate arity and to lock the right
//! shards; the proxy uses it to route.

pub mod keys;
pub mod node;
pub mod slot;
pub mod table;

pub use keys::{get_keys, KeysError};
pub use node::Node;
pub use slot::{key_hash_slot, SLOTS};
pub use table::{table, CommandMeta, Flags, KeySpec};
