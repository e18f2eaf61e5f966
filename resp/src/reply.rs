//! Reply encoding for RESP2 and RESP3.
//!
//! Every method appends one RESP value (or an aggregate header) to the
//! buffer. Methods that have different wire forms in RESP2 and RESP3
//! (nulls, maps, sets, doubles, booleans, push messages) pick the form from
//! `resp3`. Nothing here allocates besides growing the buffer.

use bytes::{BufMut, BytesMut};

pub struct ReplyBuf {
    pub buf: BytesMut,
    pub resp3: bool,
}

#[inline]
fn put_len(buf: &mut BytesMut, prefix: u8, n: i64) {
    let mut ib = itoa::Buffer::new();
    let s = ib.format(n);
    buf.reserve(s.len() + 3);
    buf.put_u8(prefix);
    buf.put_slice(s.as_bytes());
    buf.put_slice(b"\r\n");
}

impl ReplyBuf {
    pub fn new(resp3: bool) -> Self {
        ReplyBuf { buf: BytesMut::with_capacity(16 * 1024), resp3 }
    }

    pub fn len(&self) -> usize {
        self.buf.len()
    }

    /// `+OK`
    #[inline]
    pub fn ok(&mut self) {
        self.buf.put_slice(b"+OK\r\n");
    }

    /// A simple string; CR/LF inside are replaced by spaces as Redis does.
    pub fn simple(&mut self, s: &[u8]) {
        self.buf.reserve(s.len() + 3);
        self.buf.put_u8(b'+');
        for &c in s {
            self.buf.put_u8(if c == b'\r' || c == b'\n' { b' ' } else { c });
        }
        self.buf.put_slice(b"\r\n");
    }

    /// An error. `msg` carries its code (`ERR ...`, `WRONGTYPE ...`); a
    /// leading `-` is tolerated. CR/LF are replaced by spaces.
    pub fn error(&mut self, msg: &str) {
        let msg = msg.strip_prefix('-').unwrap_or(msg);
        self.buf.reserve(msg.len() + 3);
        self.buf.put_u8(b'-');
        for &c in msg.as_bytes() {
            self.buf.put_u8(if c == b'\r' || c == b'\n' { b' ' } else { c });
        }
        self.buf.put_slice(b"\r\n");
    }

    #[inline]
    pub fn int(&mut self, n: i64) {
        put_len(&mut self.buf, b':', n);
    }

    #[inline]
    pub fn bulk(&mut self, data: &[u8]) {
        put_len(&mut self.buf, b'$', data.len() as i64);
        self.buf.reserve(data.len() + 2);
        self.buf.put_slice(data);
        self.buf.put_slice(b"\r\n");
    }

    /// A bulk string holding the decimal form of `n`.
    pub fn bulk_int(&mut self, n: i64) {
        let mut ib = itoa::Buffer::new();
        self.bulk(ib.format(n).as_bytes());
    }

    /// The null bulk string (`$-1` / `_`).
    #[inline]
    pub fn null(&mut self) {
        if self.resp3 {
            self.buf.put_slice(b"_\r\n");
        } else {
            self.buf.put_slice(b"$-1\r\n");
        }
    }

    /// The null array (`*-1` / `_`).
    pub fn null_array(&mut self) {
        if self.resp3 {
            self.buf.put_slice(b"_\r\n");
        } else {
            self.buf.put_slice(b"*-1\r\n");
        }
    }

    #[inline]
    pub fn array(&mut self, n: usize) {
        put_len(&mut self.buf, b'*', n as i64);
    }

    /// A map of `n` key/value pairs (a flat array of 2n in RESP2).
    pub fn map(&mut self, n: usize) {
        if self.resp3 {
            put_len(&mut self.buf, b'%', n as i64);
        } else {
            put_len(&mut self.buf, b'*', 2 * n as i64);
        }
    }

    /// A set of `n` elements (an array in RESP2).
    pub fn set(&mut self, n: usize) {
        put_len(&mut self.buf, if self.resp3 { b'~' } else { b'*' }, n as i64);
    }

    /// An out-of-band push of `n` elements (an array in RESP2).
    pub fn push(&mut self, n: usize) {
        put_len(&mut self.buf, if self.resp3 { b'>' } else { b'*' }, n as i64);
    }

    /// A double formatted like Redis 7.0's `addReplyDouble` (`%.17g`,
    /// `inf`/`-inf`): a bulk string in RESP2, `,` in RESP3.
    pub fn double(&mut self, d: f64) {
        let mut tmp = Vec::with_capacity(32);
        crate::num::fmt_g17(d, &mut tmp);
        if self.resp3 {
            self.buf.reserve(tmp.len() + 3);
            self.buf.put_u8(b',');
            self.buf.put_slice(&tmp);
            self.buf.put_slice(b"\r\n");
        } else {
            self.bulk(&tmp);
        }
    }

    /// A boolean: `#t`/`#f` in RESP3, `:1`/`:0` in RESP2.
    pub fn boolean(&mut self, b: bool) {
        if self.resp3 {
            self.buf.put_slice(if b { b"#t\r\n" } else { b"#f\r\n" });
        } else {
            self.int(b as i64);
        }
    }

    /// A verbatim string (`=len\r\ntxt:...`) in RESP3, a bulk string in RESP2.
    pub fn verbatim(&mut self, format: &[u8; 3], data: &[u8]) {
        if self.resp3 {
            put_len(&mut self.buf, b'=', data.len() as i64 + 4);
            self.buf.put_slice(format);
            self.buf.put_u8(b':');
            self.buf.put_slice(data);
            self.buf.put_slice(b"\r\n");
        } else {
            self.bulk(data);
        }
    }

    /// Raw pre-encoded bytes.
    pub fn raw(&mut self, data: &[u8]) {
        self.buf.put_slice(data);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resp2_vs_resp3() {
        let mut r2 = ReplyBuf::new(false);
        let mut r3 = ReplyBuf::new(true);
        for r in [&mut r2, &mut r3] {
            r.null();
            r.map(1);
            r.double(1.5);
            r.boolean(true);
            r.error("ERR bad\r\nthing");
        }
        assert_eq!(&r2.buf[..], b"$-1\r\n*2\r\n$3\r\n1.5\r\n:1\r\n-ERR bad  thing\r\n");
        assert_eq!(&r3.buf[..], b"_\r\n%1\r\n,1.5\r\n#t\r\n-ERR bad  thing\r\n");
    }
}
