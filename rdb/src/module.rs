//! Module values (RDB type 7) and module aux data, walked through the
//! module opcodes without interpreting them.

use crate::decode::Reader;
use crate::{RdbError, RdbModule, Result};

const CHARSET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

const OP_EOF: u64 = 0;
const OP_SINT: u64 = 1;
const OP_UINT: u64 = 2;
const OP_FLOAT: u64 = 3;
const OP_DOUBLE: u64 = 4;
const OP_STRING: u64 = 5;

/// The 9-character module type name of a module id.
pub fn type_name(id: u64) -> String {
    let mut s = String::with_capacity(9);
    for i in 0..9 {
        let shift = 64 - 6 * (i + 1);
        let c = ((id >> shift) & 63) as usize;
        s.push(CHARSET[c] as char);
    }
    s
}

/// Walk a module value (after the type byte): the module id, then opcodes
/// until EOF. Returns the id and the raw bytes walked.
pub fn walk(r: &mut Reader<'_>) -> Result<RdbModule> {
    let start = r.pos();
    let module_id = r.len()?;
    loop {
        let op = r.len()?;
        match op {
            OP_EOF => break,
            OP_SINT | OP_UINT => {
                r.len()?;
            }
            OP_FLOAT => {
                r.take(4)?;
            }
            OP_DOUBLE => {
                r.take(8)?;
            }
            OP_STRING => r.skip_string()?,
            _ => return Err(RdbError::Bad("unknown module opcode")),
        }
    }
    Ok(RdbModule { module_id, raw: r.since(start).to_vec() })
}

#[cfg(test)]
mod tests {
    #[test]
    fn names() {
        // "mytype123" with encver 5.
        let mut id: u64 = 0;
        for c in b"mytype123" {
            let i = super::CHARSET.iter().position(|x| x == c).unwrap() as u64;
            id = (id << 6) | i;
        }
        id = (id << 10) | 5;
        assert_eq!(super::type_name(id), "mytype123");
    }
}
