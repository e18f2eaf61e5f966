//! Reply-side RESP framing for clients and proxies (used by ferrite-proxy; fuzzed by `fuzz/fuzz_targets/frames.rs`):
//!
//! - [`FrameScanner`]: finds where complete RESP2/RESP3 frames end in a growing buffer without rescanning bulk
//!   payloads, so replies can be forwarded as the exact bytes a server sent, never re-encoded;
//! - [`Value`]: a small parser for the few replies a client must look inside (topology, merges of split commands);
//! - [`split_request`]: takes one complete, well-formed multibulk request off a buffer without copying (anything
//!   else is left to the incremental [`crate::RequestParser`]);
//! - [`encode_cmd`] / [`encode_into`]: request encoding.
//!
//! Like the rest of this crate it knows nothing about sockets or command meaning.

use bytes::{BufMut, Bytes, BytesMut};
use smallvec::SmallVec;

/// Finds where complete RESP2/RESP3 frames end in a growing buffer without rescanning bulk payloads: the state
/// (position and the stack of open aggregates) survives between calls.
#[derive(Debug, Default)]
pub struct FrameScanner {
    pos: usize,
    /// Elements still expected by each open aggregate, innermost last.
    stack: SmallVec<[u64; 8]>,
}

/// A reply stream that is not RESP: the connection must be dropped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadFrame(pub String);

impl FrameScanner {
    /// Length of the first complete frame at the start of `buf` (call again with the same buffer, grown, after
    /// `Ok(None)`; call [`FrameScanner::reset`] after consuming a frame).
    pub fn scan(&mut self, buf: &[u8]) -> Result<Option<usize>, BadFrame> {
        loop {
            let start = self.pos;
            let Some(rest) = buf.get(start..) else { return Ok(None) };
            if rest.is_empty() {
                return Ok(None);
            }
            let Some(nl) = memchr_crlf(rest) else {
                if rest.len() > 64 * 1024 {
                    return Err(BadFrame("header line too long".into()));
                }
                return Ok(None);
            };
            if nl == 0 {
                return Err(BadFrame("empty reply line".into()));
            }
            let t = rest[0];
            let head = &rest[1..nl];
            let after = start + nl + 2;
            let mut done_elem = true;
            match t {
                b'+' | b'-' | b':' | b',' | b'_' | b'#' | b'(' => self.pos = after,
                b'$' | b'=' | b'!' => {
                    let n = parse_len(head)?;
                    if n < 0 {
                        self.pos = after;
                    } else {
                        let end = after + n as usize + 2;
                        if buf.len() < end {
                            return Ok(None);
                        }
                        if &buf[end - 2..end] != b"\r\n" {
                            return Err(BadFrame("bulk not terminated by CRLF".into()));
                        }
                        self.pos = end;
                    }
                }
                b'*' | b'~' | b'>' | b'%' | b'|' => {
                    let n = parse_len(head)?;
                    self.pos = after;
                    if n > 0 {
                        let n = n as u64;
                        let items = if matches!(t, b'%' | b'|') { n.saturating_mul(2) } else { n };
                        // `|` attributes precede the real reply: count the reply itself as one more element.
                        let items = if t == b'|' { items + 1 } else { items };
                        self.stack.push(items);
                        done_elem = false;
                    }
                }
                _ => return Err(BadFrame(format!("unexpected reply type byte {t:#04x}"))),
            }
            if done_elem {
                // Close every aggregate this element completes.
                loop {
                    match self.stack.last_mut() {
                        None => {
                            let len = self.pos;
                            return Ok(Some(len));
                        }
                        Some(top) => {
                            *top -= 1;
                            if *top == 0 {
                                self.stack.pop();
                            } else {
                                break;
                            }
                        }
                    }
                }
            }
        }
    }

    /// Forget the position (after the caller consumed the frame, or to rescan).
    pub fn reset(&mut self) {
        self.pos = 0;
        self.stack.clear();
    }
}

fn parse_len(head: &[u8]) -> Result<i64, BadFrame> {
    std::str::from_utf8(head)
        .ok()
        .and_then(|s| s.parse::<i64>().ok())
        .filter(|n| (-1..=1 << 40).contains(n))
        .ok_or_else(|| BadFrame(format!("bad length {:?}", String::from_utf8_lossy(head))))
}

#[inline]
fn memchr_crlf(b: &[u8]) -> Option<usize> {
    let mut i = 0;
    while i + 1 < b.len() {
        match b[i..].iter().position(|&c| c == b'\r') {
            Some(p) => {
                let at = i + p;
                if b.get(at + 1) == Some(&b'\n') {
                    return Some(at);
                }
                i = at + 1;
            }
            None => return None,
        }
    }
    None
}

/// Length of the complete frame at the start of `buf`, if any (one-shot helper).
pub fn frame_len(buf: &[u8]) -> Result<Option<usize>, BadFrame> {
    FrameScanner::default().scan(buf)
}

/// A parsed reply, only for the replies the proxy inspects.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Simple(Bytes),
    Error(Bytes),
    Int(i64),
    Bulk(Bytes),
    Nil,
    /// Type byte (`*`, `~`, `>`, `%` flattened, `|`) and elements.
    Array(u8, Vec<Value>),
    /// Other scalars (`,` `#` `(` `=` `!`): type byte and raw text.
    Other(u8, Bytes),
}

impl Value {
    /// Parse one complete frame (as delimited by [`FrameScanner`]).
    pub fn parse(b: &Bytes) -> Option<Value> {
        let (v, _) = parse_at(b, 0, 0)?;
        Some(v)
    }
    pub fn items(&self) -> &[Value] {
        match self {
            Value::Array(_, v) => v,
            _ => &[],
        }
    }
    pub fn bytes(&self) -> Option<&Bytes> {
        match self {
            Value::Bulk(b) | Value::Simple(b) | Value::Other(_, b) => Some(b),
            _ => None,
        }
    }
    pub fn int(&self) -> Option<i64> {
        match self {
            Value::Int(n) => Some(*n),
            Value::Bulk(b) | Value::Simple(b) => std::str::from_utf8(b).ok()?.parse().ok(),
            _ => None,
        }
    }
    pub fn is_error(&self) -> bool {
        matches!(self, Value::Error(_))
    }
    /// Field of a map (RESP3 `%`, or a RESP2 flat array of name/value pairs).
    pub fn field(&self, name: &str) -> Option<&Value> {
        let it = self.items();
        it.chunks(2)
            .find(|c| c.len() == 2 && c[0].bytes().is_some_and(|b| b.eq_ignore_ascii_case(name.as_bytes())))
            .map(|c| &c[1])
    }
}

fn parse_at(b: &Bytes, pos: usize, depth: usize) -> Option<(Value, usize)> {
    if depth > 64 {
        return None;
    }
    let rest = b.get(pos..)?;
    let nl = memchr_crlf(rest).filter(|&nl| nl > 0)?;
    let t = *rest.first()?;
    let head = &rest[1..nl];
    let after = pos + nl + 2;
    let text = || b.slice(pos + 1..pos + nl);
    Some(match t {
        b'+' => (Value::Simple(text()), after),
        b'-' => (Value::Error(text()), after),
        b':' => (Value::Int(std::str::from_utf8(head).ok()?.parse().ok()?), after),
        b'_' => (Value::Nil, after),
        b'$' | b'=' | b'!' => {
            let n: i64 = std::str::from_utf8(head).ok()?.parse().ok()?;
            if n < 0 {
                return Some((Value::Nil, after));
            }
            let end = after.checked_add(n as usize)?;
            if end + 2 > b.len() {
                return None;
            }
            let data = b.slice(after..end);
            let v = if t == b'$' { Value::Bulk(data) } else { Value::Other(t, data) };
            (v, end + 2)
        }
        b'*' | b'~' | b'>' | b'%' | b'|' => {
            let n: i64 = std::str::from_utf8(head).ok()?.parse().ok()?;
            if n < 0 {
                return Some((Value::Nil, after));
            }
            let items = if matches!(t, b'%' | b'|') { (n as usize).checked_mul(2)? } else { n as usize };
            let mut v = Vec::with_capacity(items.min(1024));
            let mut p = after;
            for _ in 0..items {
                let (x, np) = parse_at(b, p, depth + 1)?;
                v.push(x);
                p = np;
            }
            (Value::Array(t, v), p)
        }
        _ => (Value::Other(t, text()), after),
    })
}

/// Encode a command (multibulk of bulk strings).
pub fn encode_cmd<A: AsRef<[u8]>>(args: &[A]) -> Bytes {
    let mut n = 16;
    for a in args {
        n += a.as_ref().len() + 16;
    }
    let mut out = BytesMut::with_capacity(n);
    encode_into(&mut out, args);
    out.freeze()
}

/// Append an encoded command to `out`.
pub fn encode_into<A: AsRef<[u8]>>(out: &mut BytesMut, args: &[A]) {
    let mut ib = itoa::Buffer::new();
    out.put_u8(b'*');
    out.put_slice(ib.format(args.len()).as_bytes());
    out.put_slice(b"\r\n");
    for a in args {
        let a = a.as_ref();
        out.put_u8(b'$');
        out.put_slice(ib.format(a.len()).as_bytes());
        out.put_slice(b"\r\n");
        out.put_slice(a);
        out.put_slice(b"\r\n");
    }
}

/// `-<msg>\r\n` (msg must contain the error code, e.g. `ERR ...`); CR/LF in the message become spaces.
pub fn error(msg: &str) -> Bytes {
    let mut v = Vec::with_capacity(msg.len() + 3);
    v.push(b'-');
    v.extend(msg.bytes().map(|c| if c == b'\r' || c == b'\n' { b' ' } else { c }));
    v.extend_from_slice(b"\r\n");
    Bytes::from(v)
}

pub const OK: &[u8] = b"+OK\r\n";

/// Parse one decimal length (`[0-9]+`, at most 18 digits) ending in `\r\n` at `buf[at..]`: `(value, index after
/// the CRLF)`, or `None` when the line is incomplete or not a plain non-negative number.
fn scan_len(buf: &[u8], at: usize) -> Option<(u64, usize)> {
    let mut v: u64 = 0;
    let mut i = at;
    while i < buf.len() && buf[i].is_ascii_digit() {
        if i - at >= 18 {
            return None;
        }
        v = v * 10 + (buf[i] - b'0') as u64;
        i += 1;
    }
    if i == at || i + 1 >= buf.len() || buf[i] != b'\r' || buf[i + 1] != b'\n' {
        return None;
    }
    // Redis (string2ll) refuses leading zeros ("$08"): such a request is left to the parser, which answers with
    // Redis's protocol error, instead of being forwarded to a backend that would close the connection.
    if buf[at] == b'0' && i - at > 1 {
        return None;
    }
    Some((v, i + 2))
}

/// Take one complete, well-formed multibulk request (`*N` of `$len` bulks, `N >= 1`) from the front of `buf`
/// without copying: returns the request's bytes and pushes its arguments (slices of them) to `args`.
///
/// `None` leaves `buf` and `args` untouched: the request is incomplete, inline, malformed or over a limit, and
/// the caller hands it to the incremental [`crate::RequestParser`], which produces Redis's exact error or
/// keeps the partial request. Proxies forward the returned bytes as they are instead of encoding the arguments
/// again.
pub fn split_request(buf: &mut BytesMut, args: &mut Vec<Bytes>, max_bulk: u64, max_args: usize) -> Option<Bytes> {
    let b = &buf[..];
    if b.first() != Some(&b'*') {
        return None;
    }
    let (n, mut at) = scan_len(b, 1)?;
    if n == 0 || n as usize > max_args {
        return None;
    }
    // (start, len) of each argument; requests are small in count on the fast path.
    let mut spans: smallvec::SmallVec<[(usize, usize); 8]> = smallvec::SmallVec::new();
    for _ in 0..n {
        if b.get(at) != Some(&b'$') {
            return None;
        }
        let (len, start) = scan_len(b, at + 1)?;
        if len > max_bulk {
            return None;
        }
        let end = start.checked_add(len as usize)?;
        if end + 2 > b.len() || b[end] != b'\r' || b[end + 1] != b'\n' {
            return None;
        }
        spans.push((start, len as usize));
        at = end + 2;
    }
    let raw = buf.split_to(at).freeze();
    for (s, l) in spans {
        args.push(raw.slice(s..s + l));
    }
    Some(raw)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scanner_incremental() {
        let full = b"*3\r\n$3\r\nabc\r\n%1\r\n+k\r\n:5\r\n*-1\r\n+rest";
        let frame = full.len() - 5;
        for cut in 0..full.len() {
            let mut s = FrameScanner::default();
            let first = s.scan(&full[..cut]).unwrap();
            // After a complete frame the caller consumes it and resets; otherwise it rescans the grown buffer.
            let r = if first.is_some() { first } else { s.scan(full).unwrap() };
            if cut >= frame {
                assert_eq!(first, Some(frame));
            } else {
                assert_eq!(first, None, "cut {cut}");
            }
            assert_eq!(r, Some(frame), "cut {cut}");
        }
        assert!(FrameScanner::default().scan(b"?\r\n").is_err());
        // Found by fuzzing: an empty line must be an error, not an out-of-range slice.
        assert!(FrameScanner::default().scan(b"\r\n").is_err());
        assert!(FrameScanner::default().scan(b"*1\r\n\r\n").is_err());
        assert_eq!(Value::parse(&Bytes::from_static(b"\r\n")), None);
        assert_eq!(frame_len(b"*0\r\n").unwrap(), Some(4));
        assert_eq!(frame_len(b"$-1\r\n").unwrap(), Some(5));
        assert_eq!(frame_len(b"|1\r\n+a\r\n+b\r\n:1\r\n").unwrap(), Some(16));
    }

    #[test]
    fn values() {
        let b = Bytes::from_static(b"*2\r\n$1\r\na\r\n*1\r\n:7\r\n");
        let v = Value::parse(&b).unwrap();
        assert_eq!(v.items()[1].items()[0].int(), Some(7));
        assert_eq!(&encode_cmd(&["GET", "k"])[..], b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n");
        assert_eq!(&error("ERR a\r\nb")[..], b"-ERR a  b\r\n");
    }

    #[test]
    fn split_request_takes_only_complete_well_formed_requests() {
        let mut args = Vec::new();
        let full = b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$5\r\nhello\r\n*1\r\n$4\r\nPING\r\n";
        let mut buf = BytesMut::from(&full[..]);
        let raw = split_request(&mut buf, &mut args, 1 << 20, 1024).unwrap();
        assert_eq!(&raw[..], &full[..31]);
        assert_eq!(args, vec![Bytes::from("SET"), Bytes::from("k"), Bytes::from("hello")]);
        assert_eq!(&buf[..], &b"*1\r\n$4\r\nPING\r\n"[..]);
        // Every proper prefix is incomplete: nothing is taken.
        for cut in 0..31 {
            let mut b = BytesMut::from(&full[..cut]);
            let mut a = Vec::new();
            assert!(split_request(&mut b, &mut a, 1 << 20, 1024).is_none(), "cut {cut}");
            assert_eq!(b.len(), cut);
            assert!(a.is_empty());
        }
        // Left to the incremental parser: inline, empty, negative, signed, oversized, bad terminators.
        for bad in [
            &b"PING\r\n"[..],
            b"*0\r\n",
            b"*-1\r\n",
            b"*1\r\n$-1\r\n",
            b"*1\r\n$+4\r\nPING\r\n",
            b"*1\r\n$4\r\nPINGxx",
            b"*1\r\n:4\r\nPING\r\n",
            b"*2000\r\n$4\r\nPING\r\n",
            b"*1\r\n$99999999999999999999\r\n",
            // Found by fuzzing: leading zeros are a protocol error in Redis.
            b"*1\r\n$04\r\nPING\r\n",
            b"*01\r\n$4\r\nPING\r\n",
        ] {
            let mut b = BytesMut::from(bad);
            let mut a = Vec::new();
            assert!(split_request(&mut b, &mut a, 1 << 20, 1024).is_none(), "{:?}", String::from_utf8_lossy(bad));
            assert_eq!(&b[..], bad);
        }
        let mut b = BytesMut::from(&b"*1\r\n$5\r\nhello\r\n"[..]);
        assert!(split_request(&mut b, &mut Vec::new(), 4, 1024).is_none(), "over the bulk limit");
    }
}
