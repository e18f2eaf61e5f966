//! In-memory representations of the collection types. Each module owns its
//! data structure and the encoding name OBJECT ENCODING reports; the
//! commands that operate on them live in `crate::cmd`.

pub mod hash;
pub mod list;
pub mod set;
pub mod stream;
pub mod zset;
