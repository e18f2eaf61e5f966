//! The request scanner of the client's run fast path: finds where a complete, well-formed multibulk request
//! ends and where its command name and first argument are, without building per-argument `Bytes`.

/// A complete multibulk request of at least two arguments at the front of a buffer (offsets into it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Simple {
    /// Bytes of the request.
    pub end: usize,
    /// Number of arguments (the command name included).
    pub nargs: usize,
    /// The command name (start, end).
    pub name: (usize, usize),
    /// The first argument after the name (start, end).
    pub key: (usize, usize),
}

/// A decimal length ending in CRLF at `at` (digits only, no sign, no leading zero): (value, offset after CRLF).
#[inline]
fn len_at(b: &[u8], at: usize) -> Option<(u64, usize)> {
    let mut v: u64 = 0;
    let mut i = at;
    while i < b.len() && b[i].is_ascii_digit() {
        if i - at >= 18 {
            return None;
        }
        v = v * 10 + u64::from(b[i] - b'0');
        i += 1;
    }
    if i == at || i + 1 >= b.len() || b[i] != b'\r' || b[i + 1] != b'\n' {
        return None;
    }
    if b[at] == b'0' && i - at > 1 {
        return None;
    }
    Some((v, i + 2))
}

/// The request at the front of `b` when it is complete and well formed (`*N` of `$len` bulks, `2 <= N <=
/// max_args`, every bulk at most `max_bulk` bytes). `None` for anything else (incomplete, inline, malformed, over
/// a limit, a single argument): such a request is left to the general parser, which gives Redis's exact errors.
pub fn scan_simple(b: &[u8], max_bulk: u64, max_args: usize) -> Option<Simple> {
    if b.first() != Some(&b'*') {
        return None;
    }
    let (n, mut at) = len_at(b, 1)?;
    if n < 2 || n > max_args as u64 {
        return None;
    }
    let (mut name, mut key) = ((0, 0), (0, 0));
    for i in 0..n as usize {
        if b.get(at) != Some(&b'$') {
            return None;
        }
        let (len, start) = len_at(b, at + 1)?;
        if len > max_bulk {
            return None;
        }
        let end = start.checked_add(len as usize)?;
        if end.checked_add(2)? > b.len() || b[end] != b'\r' || b[end + 1] != b'\n' {
            return None;
        }
        match i {
            0 => name = (start, end),
            1 => key = (start, end),
            _ => {}
        }
        at = end + 2;
    }
    Some(Simple { end: at, nargs: n as usize, name, key })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resp::split_request;
    use bytes::BytesMut;

    #[test]
    fn scans_complete_requests_only() {
        let set = b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$5\r\nhello\r\n";
        let s = scan_simple(set, 1 << 20, 1024).unwrap();
        assert_eq!(s, Simple { end: set.len(), nargs: 3, name: (8, 11), key: (17, 18) });
        // Every cut is incomplete.
        for cut in 0..set.len() {
            assert_eq!(scan_simple(&set[..cut], 1 << 20, 1024), None, "cut {cut}");
        }
        // Followed by more bytes: only the first request.
        let mut two = set.to_vec();
        two.extend_from_slice(b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n");
        assert_eq!(scan_simple(&two, 1 << 20, 1024).unwrap().end, set.len());
        for bad in [
            &b"*1\r\n$4\r\nPING\r\n"[..],       // one argument
            b"GET k\r\n",                       // inline
            b"*2\r\n$3\r\nGET\r\n$01\r\nk\r\n", // leading zero
            b"*2\r\n$3\r\nGET\r\n$1\r\nkx\r\n", // bad terminator
            b"*2\r\n$3\r\nGET\r\n:1\r\n",       // not a bulk
            b"*-1\r\n",                         // null
            b"*2\r\n$3\r\nGET\r\n$-1\r\n",      // null bulk
            b"*99999999999999999999\r\n",       // too long a count
        ] {
            assert_eq!(scan_simple(bad, 1 << 20, 1024), None, "{:?}", String::from_utf8_lossy(bad));
        }
        assert_eq!(scan_simple(set, 4, 1024), None, "bulk over the limit");
        assert_eq!(scan_simple(set, 1 << 20, 2), None, "too many arguments");
    }

    #[test]
    fn agrees_with_split_request() {
        // Whatever the scanner takes, the general splitter takes the same way (same end, same name and key).
        let mut seed = 0x2545f4914f6cdd1du64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let words: [&[u8]; 5] = [b"GET", b"k", b"", b"hello", b"0"];
        let noise: [u8; 8] = [b'*', b'$', b'0', b'1', b'\r', b'\n', b'-', b'x'];
        for _ in 0..20000 {
            // A well-formed request, then maybe one byte changed and maybe cut short.
            let n = next() % 4;
            let mut b = format!("*{n}\r\n").into_bytes();
            for _ in 0..n {
                let w = words[(next() % words.len() as u64) as usize];
                b.extend_from_slice(format!("${}\r\n", w.len()).as_bytes());
                b.extend_from_slice(w);
                b.extend_from_slice(b"\r\n");
            }
            if next() % 2 == 0 {
                let at = (next() % b.len() as u64) as usize;
                b[at] = noise[(next() % noise.len() as u64) as usize];
            }
            if next() % 3 == 0 {
                b.truncate((next() % (b.len() as u64 + 1)) as usize);
            }
            let mut buf = BytesMut::from(&b[..]);
            let mut args = Vec::new();
            let split = split_request(&mut buf, &mut args, 1 << 20, 1024);
            match scan_simple(&b, 1 << 20, 1024) {
                Some(s) => {
                    let raw = split.expect("the splitter takes what the scanner takes");
                    assert_eq!(raw.len(), s.end);
                    assert_eq!(args.len(), s.nargs);
                    assert_eq!(&args[0][..], &b[s.name.0..s.name.1]);
                    assert_eq!(&args[1][..], &b[s.key.0..s.key.1]);
                }
                None => assert!(split.is_none() || args.len() < 2, "{:?}", String::from_utf8_lossy(&b)),
            }
        }
    }
}
