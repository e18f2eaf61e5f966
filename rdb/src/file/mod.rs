//! Whole RDB files: an incremental writer and an incremental (push-based)
//! reader. Both compute the CRC64 as bytes pass, never holding the file.

mod writer;

pub use writer::{RdbWriter, StandardAux};
