//! A small blocking RESP2 client: replies are parsed incrementally from a
//! buffer with checked lengths (a hostile or broken server cannot make it
//! allocate more than the bytes it actually sent, plus a bounded
//! preallocation), commands are pipelined by writing many at once.

use crate::{Error, Result};
use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

/// One RESP2 reply.
#[derive(Clone, Debug, PartialEq)]
pub enum Reply {
    Simple(Vec<u8>),
    Error(String),
    Int(i64),
    Bulk(Vec<u8>),
    /// Null bulk or null array.
    Nil,
    Array(Vec<Reply>),
    /// A bulk element of an array reply that was read and dropped instead
    /// of kept (its length), see [`Conn::skip_big_bulks`].
    TooBig(u64),
}

impl Reply {
    pub fn as_int(&self) -> Option<i64> {
        match self {
            Reply::Int(n) => Some(*n),
            Reply::Bulk(b) | Reply::Simple(b) => ferrite_resp::num::parse_i64(b),
            _ => None,
        }
    }
    pub fn as_bytes(&self) -> Option<&[u8]> {
        match self {
            Reply::Bulk(b) | Reply::Simple(b) => Some(b),
            _ => None,
        }
    }
    pub fn as_str(&self) -> Option<String> {
        self.as_bytes().map(|b| String::from_utf8_lossy(b).into_owned())
    }
    pub fn items(&self) -> &[Reply] {
        match self {
            Reply::Array(v) => v,
            _ => &[],
        }
    }
    pub fn is_error(&self) -> bool {
        matches!(self, Reply::Error(_))
    }
    /// The reply as a result: `-ERR ...` becomes `Error::Server`.
    pub fn ok(self) -> Result<Reply> {
        match self {
            Reply::Error(e) => Err(Error::Server(e)),
            r => Ok(r),
        }
    }
    /// Look up `name` in a flat name/value array (RESP2 form of a map).
    pub fn field(&self, name: &str) -> Option<&Reply> {
        let it = self.items();
        let mut i = 0;
        while i + 1 < it.len() {
            if it[i].as_bytes().map(|b| b.eq_ignore_ascii_case(name.as_bytes())).unwrap_or(false) {
                return Some(&it[i + 1]);
            }
            i += 2;
        }
        None
    }
}

/// Largest bulk accepted (Redis's proto-max-bulk-len ceiling).
const MAX_BULK: i64 = 1 << 32;
/// Largest nesting accepted.
const MAX_DEPTH: usize = 64;

/// Parse one reply from the start of `buf`. `Ok(None)` = incomplete.
pub fn parse_reply(buf: &[u8]) -> Result<Option<(Reply, usize)>> {
    parse_at(buf, 0, 0)
}

fn line(buf: &[u8], pos: usize) -> Option<(&[u8], usize)> {
    let rest = buf.get(pos..)?;
    let nl = rest.windows(2).position(|w| w == b"\r\n")?;
    Some((&rest[..nl], pos + nl + 2))
}

fn parse_at(buf: &[u8], pos: usize, depth: usize) -> Result<Option<(Reply, usize)>> {
    if depth > MAX_DEPTH {
        return Err(Error::Protocol("reply nested too deeply".into()));
    }
    let Some(&t) = buf.get(pos) else { return Ok(None) };
    let Some((l, next)) = line(buf, pos + 1) else { return Ok(None) };
    let num = || ferrite_resp::num::parse_i64(l).ok_or_else(|| Error::Protocol("bad length in reply".into()));
    match t {
        b'+' => Ok(Some((Reply::Simple(l.to_vec()), next))),
        b'-' => Ok(Some((Reply::Error(String::from_utf8_lossy(l).into_owned()), next))),
        b':' => Ok(Some((Reply::Int(num()?), next))),
        b'$' => {
            let n = num()?;
            if n < 0 {
                return Ok(Some((Reply::Nil, next)));
            }
            if n > MAX_BULK {
                return Err(Error::Protocol("bulk reply too long".into()));
            }
            let n = n as usize;
            if buf.len() < next + n + 2 {
                return Ok(None);
            }
            if &buf[next + n..next + n + 2] != b"\r\n" {
                return Err(Error::Protocol("bulk reply not terminated by CRLF".into()));
            }
            Ok(Some((Reply::Bulk(buf[next..next + n].to_vec()), next + n + 2)))
        }
        b'*' => {
            let n = num()?;
            if n < 0 {
                return Ok(Some((Reply::Nil, next)));
            }
            // Every element takes at least 3 bytes: a count beyond what the
            // buffer could hold means "incomplete", never a huge allocation.
            let n = n as usize;
            if n > (buf.len() - next) / 3 + 1 {
                return Ok(None);
            }
            let mut items = Vec::with_capacity(n.min(1024));
            let mut p = next;
            for _ in 0..n {
                match parse_at(buf, p, depth + 1)? {
                    Some((r, np)) => {
                        items.push(r);
                        p = np;
                    }
                    None => return Ok(None),
                }
            }
            Ok(Some((Reply::Array(items), p)))
        }
        _ => Err(Error::Protocol(format!("unexpected reply type byte {:?}", t as char))),
    }
}

/// Append `n` in decimal (no allocation).
pub fn push_usize(out: &mut Vec<u8>, mut n: usize) {
    let mut tmp = [0u8; 20];
    let mut i = tmp.len();
    loop {
        i -= 1;
        tmp[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&tmp[i..]);
}

/// Append the header of a multibulk of `n` arguments.
pub fn encode_header(n: usize, out: &mut Vec<u8>) {
    out.push(b'*');
    push_usize(out, n);
    out.extend_from_slice(b"\r\n");
}

/// Append one bulk argument.
pub fn encode_bulk(a: &[u8], out: &mut Vec<u8>) {
    out.push(b'$');
    push_usize(out, a.len());
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(a);
    out.extend_from_slice(b"\r\n");
}

/// Encode one command as a RESP multibulk.
pub fn encode_cmd<A: AsRef<[u8]>>(args: &[A], out: &mut Vec<u8>) {
    encode_header(args.len(), out);
    for a in args {
        encode_bulk(a.as_ref(), out);
    }
}

/// Build an owned command from string-ish parts.
#[macro_export]
macro_rules! cmd {
    ($($a:expr),* $(,)?) => {{
        let v: Vec<Vec<u8>> = vec![$($crate::resp::Arg::arg(&$a)),*];
        v
    }};
}

/// Anything usable as a command argument.
pub trait Arg {
    fn arg(&self) -> Vec<u8>;
}
impl Arg for &str {
    fn arg(&self) -> Vec<u8> {
        self.as_bytes().to_vec()
    }
}
impl Arg for String {
    fn arg(&self) -> Vec<u8> {
        self.as_bytes().to_vec()
    }
}
impl Arg for &[u8] {
    fn arg(&self) -> Vec<u8> {
        self.to_vec()
    }
}
impl Arg for Vec<u8> {
    fn arg(&self) -> Vec<u8> {
        self.clone()
    }
}
impl Arg for &Vec<u8> {
    fn arg(&self) -> Vec<u8> {
        (*self).clone()
    }
}
macro_rules! arg_num {
    ($($t:ty),*) => {$(impl Arg for $t { fn arg(&self) -> Vec<u8> { self.to_string().into_bytes() } })*};
}
arg_num!(i64, u64, u16, u32, usize, i32);

/// `read`, retried when a signal interrupted it (sockets with a receive
/// timeout are not restarted by SA_RESTART).
fn read_retry(sock: &mut TcpStream, buf: &mut [u8]) -> std::io::Result<usize> {
    loop {
        match sock.read(buf) {
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            r => return r,
        }
    }
}

/// Credentials for AUTH.
#[derive(Clone, Debug, Default)]
pub struct Auth {
    pub user: Option<String>,
    pub pass: Option<String>,
}

/// A blocking connection to a RESP server.
pub struct Conn {
    pub addr: String,
    sock: TcpStream,
    buf: Vec<u8>,
    start: usize,
    /// Bulk elements of array replies longer than this are dropped as they
    /// arrive (`Reply::TooBig`); so are those that would take the bytes
    /// kept during one pipeline beyond `keep_budget`.
    skip_over: usize,
    keep_budget: usize,
    kept: usize,
}

impl Conn {
    /// Connect with a timeout; reads and writes time out after `timeout` too.
    pub fn connect(addr: &str, timeout: Duration, auth: &Auth) -> Result<Conn> {
        let sa = addr
            .to_socket_addrs()
            .map_err(|e| Error::Conn(format!("{addr}: {e}")))?
            .next()
            .ok_or_else(|| Error::Conn(format!("{addr}: no address")))?;
        let sock = TcpStream::connect_timeout(&sa, timeout).map_err(|e| Error::Conn(format!("{addr}: {e}")))?;
        sock.set_nodelay(true).ok();
        sock.set_read_timeout(Some(timeout)).ok();
        sock.set_write_timeout(Some(timeout)).ok();
        let mut c = Conn {
            addr: addr.to_string(),
            sock,
            buf: Vec::with_capacity(16 * 1024),
            start: 0,
            skip_over: usize::MAX,
            keep_budget: usize::MAX,
            kept: 0,
        };
        if let Some(pass) = &auth.pass {
            let r = match &auth.user {
                Some(u) => c.cmd(&cmd!["AUTH", u.as_str(), pass.as_str()])?,
                None => c.cmd(&cmd!["AUTH", pass.as_str()])?,
            };
            r.ok().map_err(|e| Error::Conn(format!("{addr}: AUTH failed: {e}")))?;
        }
        Ok(c)
    }

    /// A second handle on the same socket with its own read buffer (one
    /// thread writes commands, another reads the replies).
    pub fn try_clone(&self) -> Result<Conn> {
        let sock = self.sock.try_clone().map_err(|e| Error::Conn(format!("{}: {e}", self.addr)))?;
        Ok(Conn {
            addr: self.addr.clone(),
            sock,
            buf: Vec::with_capacity(64 * 1024),
            start: 0,
            skip_over: usize::MAX,
            keep_budget: usize::MAX,
            kept: 0,
        })
    }

    /// Close both directions (wakes a thread blocked reading it).
    pub fn shutdown(&self) {
        let _ = self.sock.shutdown(std::net::Shutdown::Both);
    }

    pub fn set_read_timeout(&self, t: Option<Duration>) {
        self.sock.set_read_timeout(t).ok();
    }

    /// Send raw bytes.
    pub fn write_all(&mut self, data: &[u8]) -> Result<()> {
        self.sock.write_all(data).map_err(|e| Error::Conn(format!("{}: write: {e}", self.addr)))
    }

    /// Send commands without reading replies.
    pub fn send<A: AsRef<[u8]>>(&mut self, cmds: &[Vec<A>]) -> Result<()> {
        let mut out = Vec::new();
        for c in cmds {
            encode_cmd(c, &mut out);
        }
        self.write_all(&out)
    }

    /// Read more bytes into the buffer; returns how many (0 = closed).
    pub fn fill(&mut self) -> Result<usize> {
        if self.start > 0 && self.start == self.buf.len() {
            self.buf.clear();
            self.start = 0;
        } else if self.start > 64 * 1024 && self.start * 2 > self.buf.len() {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        let old = self.buf.len();
        self.buf.resize(old + 64 * 1024, 0);
        match read_retry(&mut self.sock, &mut self.buf[old..]) {
            Ok(n) => {
                self.buf.truncate(old + n);
                if n == 0 {
                    return Err(Error::Conn(format!("{}: connection closed", self.addr)));
                }
                Ok(n)
            }
            Err(e) => {
                self.buf.truncate(old);
                Err(Error::Conn(format!("{}: read: {e}", self.addr)))
            }
        }
    }

    /// Like [`Conn::fill`], but a read timeout returns `Ok(0)`.
    pub fn fill_or_timeout(&mut self) -> Result<usize> {
        let old = self.buf.len();
        if self.start > 0 && self.start == old {
            self.buf.clear();
            self.start = 0;
        }
        let old = self.buf.len();
        self.buf.resize(old + 64 * 1024, 0);
        match read_retry(&mut self.sock, &mut self.buf[old..]) {
            Ok(0) => {
                self.buf.truncate(old);
                Err(Error::Conn(format!("{}: connection closed", self.addr)))
            }
            Ok(n) => {
                self.buf.truncate(old + n);
                Ok(n)
            }
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {
                self.buf.truncate(old);
                Ok(0)
            }
            Err(e) => {
                self.buf.truncate(old);
                Err(Error::Conn(format!("{}: read: {e}", self.addr)))
            }
        }
    }

    /// Bytes buffered but not consumed.
    pub fn buffered(&self) -> &[u8] {
        &self.buf[self.start..]
    }

    /// Mark `n` buffered bytes as consumed.
    pub fn consume(&mut self, n: usize) {
        self.start = (self.start + n).min(self.buf.len());
    }

    /// From now on, in array replies, drop bulk elements longer than
    /// `over` bytes, and those longer than 64 KB that would take the bytes
    /// kept during one pipeline beyond `budget` (each becomes
    /// `Reply::TooBig(len)`): the memory a reply takes stays bounded
    /// whatever the server sends. `usize::MAX` twice turns it off.
    pub fn skip_big_bulks(&mut self, over: usize, budget: usize) {
        self.skip_over = over;
        self.keep_budget = budget;
        self.kept = 0;
    }

    /// If the next reply is an array, read it element by element, dropping
    /// the bulks [`Conn::skip_big_bulks`] asked to drop as they arrive.
    fn recv_array_bounded(&mut self) -> Result<Option<Reply>> {
        let (n, hdr) = loop {
            let b = self.buffered();
            if b.is_empty() {
                self.fill()?;
                continue;
            }
            if b[0] != b'*' {
                return Ok(None);
            }
            match line(b, 1) {
                Some((l, next)) => {
                    let n =
                        ferrite_resp::num::parse_i64(l).ok_or_else(|| Error::Protocol("bad length in reply".into()))?;
                    break (n, next);
                }
                None if b.len() > 64 => return Ok(None),
                None => {
                    self.fill()?;
                }
            }
        };
        self.consume(hdr);
        if n < 0 {
            return Ok(Some(Reply::Nil));
        }
        let mut items = Vec::with_capacity((n as usize).min(1024));
        for _ in 0..n {
            loop {
                let b = self.buffered();
                if b.first() == Some(&b'$') {
                    if let Some((l, next)) = line(b, 1) {
                        let len = ferrite_resp::num::parse_i64(l)
                            .ok_or_else(|| Error::Protocol("bad length in reply".into()))?;
                        if len > MAX_BULK {
                            return Err(Error::Protocol("bulk reply too long".into()));
                        }
                        let len_u = len.max(0) as usize;
                        let over_budget = len_u > 64 * 1024 && self.kept.saturating_add(len_u) > self.keep_budget;
                        if len > 0 && (len_u > self.skip_over || over_budget) {
                            self.consume(next);
                            let mut left = len_u + 2;
                            while left > 0 {
                                if self.buffered().is_empty() {
                                    self.fill()?;
                                }
                                let take = self.buffered().len().min(left);
                                self.consume(take);
                                left -= take;
                            }
                            items.push(Reply::TooBig(len as u64));
                            break;
                        }
                    }
                }
                if let Some((r, used)) = parse_reply(self.buffered())? {
                    self.consume(used);
                    if let Reply::Bulk(v) = &r {
                        self.kept = self.kept.saturating_add(v.len());
                    }
                    items.push(r);
                    break;
                }
                self.fill()?;
            }
        }
        Ok(Some(Reply::Array(items)))
    }

    /// Read one reply.
    pub fn recv(&mut self) -> Result<Reply> {
        if self.skip_over != usize::MAX || self.keep_budget != usize::MAX {
            if let Some(r) = self.recv_array_bounded()? {
                return Ok(r);
            }
        }
        loop {
            if let Some((r, n)) = parse_reply(self.buffered())? {
                self.consume(n);
                return Ok(r);
            }
            self.fill()?;
        }
    }

    /// One command, one reply (errors come back as `Reply::Error`).
    pub fn cmd<A: AsRef<[u8]>>(&mut self, args: &[A]) -> Result<Reply> {
        let mut out = Vec::new();
        encode_cmd(args, &mut out);
        self.write_all(&out)?;
        self.recv()
    }

    /// Pipeline: send all, read all replies in order.
    pub fn pipeline<A: AsRef<[u8]>>(&mut self, cmds: &[Vec<A>]) -> Result<Vec<Reply>> {
        self.kept = 0;
        self.send(cmds)?;
        let mut v = Vec::with_capacity(cmds.len());
        for _ in cmds {
            v.push(self.recv()?);
        }
        Ok(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_nested_and_incomplete() {
        let b = b"*3\r\n:1\r\n$3\r\nfoo\r\n*2\r\n+OK\r\n-ERR x\r\n";
        let (r, n) = parse_reply(b).unwrap().unwrap();
        assert_eq!(n, b.len());
        assert_eq!(
            r,
            Reply::Array(vec![
                Reply::Int(1),
                Reply::Bulk(b"foo".to_vec()),
                Reply::Array(vec![Reply::Simple(b"OK".to_vec()), Reply::Error("ERR x".into())])
            ])
        );
        for i in 0..b.len() {
            assert!(parse_reply(&b[..i]).unwrap().is_none());
        }
        assert!(parse_reply(b"*99999999999\r\n").unwrap().is_none());
        assert!(parse_reply(b"$-1\r\n").unwrap().unwrap().0 == Reply::Nil);
        assert!(parse_reply(b"?x\r\n").is_err());
        assert!(parse_reply(b"$3\r\nabcd\r\n").is_err());
        let mut out = Vec::new();
        encode_cmd(&[&b"SET"[..], b"k", b"0123456789"], &mut out);
        assert_eq!(out, b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$10\r\n0123456789\r\n");
    }
}
