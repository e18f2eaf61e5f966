//! Whole RDB files: an incremental writer and an incremental (push-based)
//! reader. Both compute the CRC64 as bytes pass, never holding the file.

mod parser;
mod writer;

pub use parser::{Event, RdbFileReader, RdbParser, PART_BYTES, PART_ELEMENTS};
pub use writer::{RdbWriter, StandardAux};
