//! INCRBYFLOAT arithmetic with Redis's exact `long double` semantics,
//! through `csrc/ldouble.c` (see the comment there for why it is C).

use std::os::raw::{c_char, c_int};

extern "C" {
    fn ferrite_ld_incr(
        cur: *const c_char,
        cur_len: usize,
        incr: *const c_char,
        incr_len: usize,
        out: *mut c_char,
        cap: usize,
    ) -> c_int;
    fn ferrite_ld_parse_ok(s: *const c_char, len: usize) -> c_int;
}

#[derive(Debug, PartialEq, Eq)]
pub enum LdError {
    /// The stored value is not a valid float.
    BadCurrent,
    /// The increment is not a valid float.
    BadIncrement,
    /// The result would be NaN or infinity.
    NanOrInf,
}

/// `cur + incr` (cur `None` means 0), formatted like Redis
/// (`%.17Lf` without trailing zeros).
pub fn incr(cur: Option<&[u8]>, incr: &[u8]) -> Result<Vec<u8>, LdError> {
    let mut out = vec![0u8; 5200];
    let (cp, cl) = match cur {
        Some(c) => (c.as_ptr() as *const c_char, c.len()),
        None => (std::ptr::null(), 0),
    };
    // SAFETY: pointers/lengths describe live slices; the C side never
    // writes beyond `cap` bytes of `out`.
    let n = unsafe {
        ferrite_ld_incr(cp, cl, incr.as_ptr() as *const c_char, incr.len(), out.as_mut_ptr() as *mut c_char, out.len())
    };
    match n {
        -1 => Err(LdError::BadCurrent),
        -2 => Err(LdError::BadIncrement),
        n if n < 0 => Err(LdError::NanOrInf),
        n => {
            out.truncate(n as usize);
            Ok(out)
        }
    }
}

/// Is `s` a valid long double in Redis's `string2ld` sense?
pub fn is_valid(s: &[u8]) -> bool {
    // SAFETY: pointer/length describe a live slice.
    unsafe { ferrite_ld_parse_ok(s.as_ptr() as *const c_char, s.len()) == 1 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redis_examples() {
        assert_eq!(incr(Some(b"10.50"), b"0.1").unwrap(), b"10.6");
        assert_eq!(incr(None, b"5.0e3").unwrap(), b"5000");
        assert_eq!(incr(Some(b"5.0e3"), b"2.0e2").unwrap(), b"5200");
        assert_eq!(incr(Some(b"abc"), b"1"), Err(LdError::BadCurrent));
        assert_eq!(incr(Some(b"1"), b" 1"), Err(LdError::BadIncrement));
        assert_eq!(incr(Some(b"1"), b"inf"), Err(LdError::NanOrInf));
        assert_eq!(incr(Some(b"-1"), b"1").unwrap(), b"0");
    }
}
