//! Shared argument parsing for SCAN, HSCAN, SSCAN and ZSCAN.

use super::{eq_ic, parse_int, CmdError, Cx, SYNTAX};

/// Parsed `cursor [MATCH pattern] [COUNT count] [TYPE type]`.
pub struct ScanArgs<'a> {
    pub cursor: u64,
    pub pattern: Option<&'a [u8]>,
    pub count: usize,
    /// Only SCAN accepts TYPE.
    pub type_filter: Option<&'a [u8]>,
}

/// Parse a scan cursor the way Redis does (`parseScanCursorOrReply`):
/// `strtoul` rules, so "" is 0, a leading '+' or '-' is accepted ("-1"
/// wraps), leading whitespace and anything unconsumed or out of range is
/// "invalid cursor".
pub fn parse_cursor(b: &[u8]) -> Result<u64, CmdError> {
    let invalid = || CmdError::err("invalid cursor");
    if b.is_empty() {
        return Ok(0);
    }
    let (neg, digits) = match b[0] {
        b'-' => (true, &b[1..]),
        b'+' => (false, &b[1..]),
        _ => (false, b),
    };
    if digits.is_empty() || !digits.iter().all(|c| c.is_ascii_digit()) {
        return Err(invalid());
    }
    let v = std::str::from_utf8(digits).ok().and_then(|s| s.parse::<u64>().ok()).ok_or_else(invalid)?;
    Ok(if neg { v.wrapping_neg() } else { v })
}

/// Parse from `cx.args[first]` on (`first` is the cursor's index).
pub fn parse<'a>(cx: &Cx<'a, '_>, first: usize, allow_type: bool) -> Result<ScanArgs<'a>, CmdError> {
    let cursor = parse_cursor(cx.arg(first))?;
    let mut a = ScanArgs { cursor, pattern: None, count: 10, type_filter: None };
    let mut i = first + 1;
    while i < cx.argc() {
        let more = cx.argc() - i - 1;
        let opt = cx.arg(i);
        if eq_ic(opt, b"COUNT") && more >= 1 {
            let c = parse_int(cx.arg(i + 1))?;
            if c < 1 {
                return Err(SYNTAX);
            }
            a.count = c as usize;
            i += 2;
        } else if eq_ic(opt, b"MATCH") && more >= 1 {
            let p = cx.arg(i + 1);
            // "*" matches everything: skip matching entirely, like Redis.
            a.pattern = if p == b"*" { None } else { Some(p) };
            i += 2;
        } else if allow_type && eq_ic(opt, b"TYPE") && more >= 1 {
            a.type_filter = Some(cx.arg(i + 1));
            i += 2;
        } else {
            return Err(SYNTAX);
        }
    }
    Ok(a)
}
