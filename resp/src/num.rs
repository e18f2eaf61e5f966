//! Number parsing and formatting with Redis's exact rules.

/// Redis's `string2ll`: a strict base-10 signed 64-bit integer.
/// No leading `+`, no leading zeros (except "0" itself), no spaces,
/// "-0" is rejected, overflow is rejected.
pub fn parse_i64(s: &[u8]) -> Option<i64> {
    if s.is_empty() || s.len() > 20 {
        return None;
    }
    if s.len() == 1 && s[0] == b'0' {
        return Some(0);
    }
    let (neg, digits) = if s[0] == b'-' { (true, &s[1..]) } else { (false, s) };
    if digits.is_empty() || digits[0] < b'1' || digits[0] > b'9' {
        return None;
    }
    let mut v: u64 = 0;
    for &c in digits {
        if !c.is_ascii_digit() {
            return None;
        }
        v = v.checked_mul(10)?.checked_add((c - b'0') as u64)?;
    }
    if neg {
        if v > (i64::MAX as u64) + 1 {
            None
        } else {
            Some((v as i64).wrapping_neg())
        }
    } else if v > i64::MAX as u64 {
        None
    } else {
        Some(v as i64)
    }
}

/// Parse an unsigned integer with the same strictness as [`parse_i64`].
pub fn parse_u64(s: &[u8]) -> Option<u64> {
    if s.is_empty() || s.len() > 20 {
        return None;
    }
    if s == b"0" {
        return Some(0);
    }
    if s[0] < b'1' || s[0] > b'9' {
        return None;
    }
    let mut v: u64 = 0;
    for &c in s {
        if !c.is_ascii_digit() {
            return None;
        }
        v = v.checked_mul(10)?.checked_add((c - b'0') as u64)?;
    }
    Some(v)
}

/// Redis's `string2d`/`getDoubleFromObject`: C `strtod` over the whole
/// string, no leading space, NaN rejected. Accepts "inf", "-inf", "+inf",
/// exponents and hex floats, as Redis does through libc.
pub fn parse_f64(s: &[u8]) -> Option<f64> {
    if s.is_empty() || s.len() > 5000 {
        return None;
    }
    if s[0].is_ascii_whitespace() {
        return None;
    }
    let mut buf = [0u8; 128];
    let heap;
    let cstr: &[u8] = if s.len() < buf.len() {
        buf[..s.len()].copy_from_slice(s);
        &buf[..=s.len()]
    } else {
        let mut v = s.to_vec();
        v.push(0);
        heap = v;
        &heap
    };
    if cstr[..cstr.len() - 1].contains(&0) {
        return None;
    }
    let mut end: *mut libc::c_char = std::ptr::null_mut();
    // SAFETY: cstr is NUL-terminated and lives for the call; strtod only reads it.
    let v = unsafe { libc::strtod(cstr.as_ptr() as *const libc::c_char, &mut end) };
    let consumed = end as usize - cstr.as_ptr() as usize;
    if consumed != s.len() || v.is_nan() {
        return None;
    }
    Some(v)
}

/// Format like C's `%.17g` (what Redis 7.0's `addReplyDouble` uses), with
/// "inf"/"-inf" for infinities.
pub fn fmt_g17(v: f64, out: &mut Vec<u8>) {
    if v.is_infinite() {
        out.extend_from_slice(if v > 0.0 { b"inf" } else { b"-inf" });
        return;
    }
    fmt_c(v, b"%.17g\0", out)
}

/// Format with an arbitrary C printf format taking one double.
pub fn fmt_c(v: f64, fmt: &[u8], out: &mut Vec<u8>) {
    debug_assert!(fmt.last() == Some(&0));
    let mut buf = [0u8; 400];
    // SAFETY: fmt is NUL-terminated and consumes exactly one double; buf is
    // large enough for any %g/%.17g output and snprintf never overruns its size.
    let n = unsafe {
        libc::snprintf(buf.as_mut_ptr() as *mut libc::c_char, buf.len(), fmt.as_ptr() as *const libc::c_char, v)
    };
    if n > 0 {
        let n = (n as usize).min(buf.len() - 1);
        out.extend_from_slice(&buf[..n]);
    }
}

/// Format like Redis's `d2string` for scores in replies that use it
/// (`%.17g` with integer fast path), returning an owned vec.
pub fn g17(v: f64) -> Vec<u8> {
    let mut out = Vec::with_capacity(24);
    fmt_g17(v, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn i64_strict() {
        assert_eq!(parse_i64(b"0"), Some(0));
        assert_eq!(parse_i64(b"-1"), Some(-1));
        assert_eq!(parse_i64(b"9223372036854775807"), Some(i64::MAX));
        assert_eq!(parse_i64(b"-9223372036854775808"), Some(i64::MIN));
        assert_eq!(parse_i64(b"9223372036854775808"), None);
        assert_eq!(parse_i64(b"01"), None);
        assert_eq!(parse_i64(b"-0"), None);
        assert_eq!(parse_i64(b"+1"), None);
        assert_eq!(parse_i64(b" 1"), None);
        assert_eq!(parse_i64(b""), None);
        assert_eq!(parse_i64(b"-"), None);
    }

    #[test]
    fn f64_like_strtod() {
        assert_eq!(parse_f64(b"1.5"), Some(1.5));
        assert_eq!(parse_f64(b"inf"), Some(f64::INFINITY));
        assert_eq!(parse_f64(b"-inf"), Some(f64::NEG_INFINITY));
        assert_eq!(parse_f64(b"1e3"), Some(1000.0));
        assert_eq!(parse_f64(b" 1"), None);
        assert_eq!(parse_f64(b"1 "), None);
        assert_eq!(parse_f64(b"nan"), None);
        assert_eq!(parse_f64(b"abc"), None);
        assert_eq!(parse_f64(b"1\x002"), None);
    }

    #[test]
    fn g17_matches_c() {
        assert_eq!(g17(1.1), b"1.1000000000000001");
        assert_eq!(g17(3.0), b"3");
        assert_eq!(g17(f64::INFINITY), b"inf");
        assert_eq!(g17(-0.5), b"-0.5");
        assert_eq!(g17(1e20), b"1e+20");
    }
}
