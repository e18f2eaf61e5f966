//! Incremental request parser with Redis 7.0's acceptance rules.
//!
//! A request is either a multibulk array (`*N\r\n$len\r\n...`) or an inline
//! command line. The parser keeps its position inside a multibulk request
//! between calls, so a 512 MB argument arriving in many reads is never
//! scanned twice. All protocol errors are fatal for the connection, as in
//! Redis: the caller replies `-ERR <message>` and closes.

use bytes::{Buf, Bytes, BytesMut};

/// Size limits, mirroring Redis's `proto-max-bulk-len` and friends.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Largest bulk string accepted (`proto-max-bulk-len`, 512 MB default).
    pub max_bulk_len: u64,
    /// Largest inline request / header line (`PROTO_INLINE_MAX_SIZE`).
    pub max_inline: usize,
    /// Largest multibulk element count (Redis: `INT_MAX`).
    pub max_multibulk: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { max_bulk_len: 512 * 1024 * 1024, max_inline: 64 * 1024, max_multibulk: i32::MAX as u64 }
    }
}

/// A fatal protocol error; `message()` is the text Redis sends after `-ERR `.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProtoError {
    TooBigInline,
    UnbalancedQuotes,
    TooBigMbulkCount,
    InvalidMultibulkLength,
    UnauthenticatedMultibulkLength,
    TooBigBulkCount,
    ExpectedDollar(u8),
    InvalidBulkLength,
    UnauthenticatedBulkLength,
}

impl ProtoError {
    pub fn message(&self) -> String {
        match self {
            ProtoError::TooBigInline => "Protocol error: too big inline request".into(),
            ProtoError::UnbalancedQuotes => "Protocol error: unbalanced quotes in request".into(),
            ProtoError::TooBigMbulkCount => "Protocol error: too big mbulk count string".into(),
            ProtoError::InvalidMultibulkLength => "Protocol error: invalid multibulk length".into(),
            ProtoError::UnauthenticatedMultibulkLength => "Protocol error: unauthenticated multibulk length".into(),
            ProtoError::TooBigBulkCount => "Protocol error: too big bulk count string".into(),
            ProtoError::ExpectedDollar(c) => format!("Protocol error: expected '$', got '{}'", *c as char),
            ProtoError::InvalidBulkLength => "Protocol error: invalid bulk length".into(),
            ProtoError::UnauthenticatedBulkLength => "Protocol error: unauthenticated bulk length".into(),
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum State {
    /// Waiting for the start of a new request.
    Idle,
    /// Inside a multibulk request: `left` elements still to read; `bulk` is the
    /// length of the bulk currently being read, if its header was consumed.
    Multibulk { left: u64, bulk: Option<usize> },
}

/// What a successful `parse` call produced.
#[derive(Debug, PartialEq, Eq)]
pub enum Parsed {
    /// `args` holds one complete command (at least one argument).
    Command,
    /// More bytes are needed; nothing in `args` is meaningful yet.
    Incomplete,
}

/// Incremental request parser. One per connection.
#[derive(Debug)]
pub struct RequestParser {
    state: State,
    limits: Limits,
    /// Whether the client is authenticated (Redis limits unauthenticated
    /// clients to small requests).
    pub authenticated: bool,
    /// Whether the last completed command arrived inline (affects nothing
    /// but is useful to callers that mirror Redis's CLIENT LIST).
    pub last_inline: bool,
}

impl RequestParser {
    pub fn new(limits: Limits) -> Self {
        RequestParser { state: State::Idle, limits, authenticated: true, last_inline: false }
    }

    pub fn set_limits(&mut self, limits: Limits) {
        self.limits = limits;
    }

    /// True when the parser is in the middle of a request.
    pub fn in_progress(&self) -> bool {
        !matches!(self.state, State::Idle)
    }

    /// The length of the bulk argument being received, once its header was
    /// read (the buffer room a server reserves for it).
    pub fn pending_bulk(&self) -> Option<usize> {
        match self.state {
            State::Multibulk { bulk, .. } => bulk,
            State::Idle => None,
        }
    }

    /// Parse at most one command from `buf`, appending its arguments to
    /// `args` (which the caller clears between commands). Consumed bytes are
    /// removed from `buf`. Empty requests (blank inline lines, `*0`, `*-1`)
    /// are skipped silently, as Redis does.
    pub fn parse(&mut self, buf: &mut BytesMut, args: &mut Vec<Bytes>) -> Result<Parsed, ProtoError> {
        loop {
            match self.state {
                State::Idle => {
                    if buf.is_empty() {
                        return Ok(Parsed::Incomplete);
                    }
                    if buf[0] == b'*' {
                        let Some(nl) = find_cr(buf) else {
                            if buf.len() > self.limits.max_inline {
                                return Err(ProtoError::TooBigMbulkCount);
                            }
                            return Ok(Parsed::Incomplete);
                        };
                        if nl + 2 > buf.len() {
                            return Ok(Parsed::Incomplete);
                        }
                        let count = parse_len(&buf[1..nl]);
                        let Some(count) = count else {
                            return Err(ProtoError::InvalidMultibulkLength);
                        };
                        if count > self.limits.max_multibulk as i64 {
                            return Err(ProtoError::InvalidMultibulkLength);
                        }
                        if !self.authenticated && count > 10 {
                            return Err(ProtoError::UnauthenticatedMultibulkLength);
                        }
                        buf.advance(nl + 2);
                        if count <= 0 {
                            continue;
                        }
                        args.clear();
                        args.reserve((count as usize).min(1024));
                        self.state = State::Multibulk { left: count as u64, bulk: None };
                    } else {
                        match self.parse_inline(buf, args)? {
                            Some(true) => {
                                self.last_inline = true;
                                return Ok(Parsed::Command);
                            }
                            Some(false) => continue,
                            None => return Ok(Parsed::Incomplete),
                        }
                    }
                }
                State::Multibulk { left, bulk } => {
                    let len = match bulk {
                        Some(len) => len,
                        None => {
                            if buf.is_empty() {
                                return Ok(Parsed::Incomplete);
                            }
                            let Some(nl) = find_cr(buf) else {
                                if buf.len() > self.limits.max_inline {
                                    return Err(ProtoError::TooBigBulkCount);
                                }
                                return Ok(Parsed::Incomplete);
                            };
                            if nl + 2 > buf.len() {
                                return Ok(Parsed::Incomplete);
                            }
                            if buf[0] != b'$' {
                                return Err(ProtoError::ExpectedDollar(buf[0]));
                            }
                            let len = match parse_len(&buf[1..nl]) {
                                Some(l) if l >= 0 && (l as u64) <= self.limits.max_bulk_len => l as usize,
                                _ => return Err(ProtoError::InvalidBulkLength),
                            };
                            if !self.authenticated && len > 16384 {
                                return Err(ProtoError::UnauthenticatedBulkLength);
                            }
                            buf.advance(nl + 2);
                            self.state = State::Multibulk { left, bulk: Some(len) };
                            len
                        }
                    };
                    if buf.len() < len + 2 {
                        // Make room for the whole bulk once, instead of
                        // growing the buffer read by read.
                        let need = len + 2 - buf.len();
                        if buf.capacity() - buf.len() < need {
                            buf.reserve(need);
                        }
                        return Ok(Parsed::Incomplete);
                    }
                    let arg = buf.split_to(len).freeze();
                    // Like Redis, the two bytes after the payload are skipped
                    // without being inspected.
                    buf.advance(2);
                    args.push(arg);
                    if left == 1 {
                        self.state = State::Idle;
                        self.last_inline = false;
                        return Ok(Parsed::Command);
                    }
                    self.state = State::Multibulk { left: left - 1, bulk: None };
                }
            }
        }
    }

    /// Returns Some(true) for a command, Some(false) for an empty line that
    /// was skipped, None when the line is incomplete.
    fn parse_inline(&mut self, buf: &mut BytesMut, args: &mut Vec<Bytes>) -> Result<Option<bool>, ProtoError> {
        let Some(nl) = buf.iter().position(|&c| c == b'\n') else {
            if buf.len() > self.limits.max_inline {
                return Err(ProtoError::TooBigInline);
            }
            return Ok(None);
        };
        let line_end = if nl > 0 && buf[nl - 1] == b'\r' { nl - 1 } else { nl };
        args.clear();
        let res = split_args(&buf[..line_end], args);
        buf.advance(nl + 1);
        res.map(|()| Some(!args.is_empty()))
    }
}

fn find_cr(buf: &[u8]) -> Option<usize> {
    buf.iter().position(|&c| c == b'\r')
}

fn parse_len(s: &[u8]) -> Option<i64> {
    crate::num::parse_i64(s)
}

fn hex_val(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

fn is_space(c: u8) -> bool {
    matches!(c, b' ' | b'\n' | b'\r' | b'\t' | 0x0b | 0x0c)
}

/// Split an inline command line the way Redis's `sdssplitargs` does:
/// whitespace separated, with "double quoted" strings supporting escapes
/// (`\n \r \t \b \a \\ \" \xHH`) and 'single quoted' strings supporting `\'`.
/// A closing quote must be followed by whitespace or the end of the line.
pub fn split_args(line: &[u8], args: &mut Vec<Bytes>) -> Result<(), ProtoError> {
    // Redis splits a C string: an embedded NUL ends the line.
    let line = match line.iter().position(|&c| c == 0) {
        Some(z) => &line[..z],
        None => line,
    };
    let mut i = 0;
    let n = line.len();
    loop {
        while i < n && is_space(line[i]) {
            i += 1;
        }
        if i >= n {
            return Ok(());
        }
        let mut cur = Vec::new();
        let mut inq = false;
        let mut insq = false;
        let mut done = false;
        while !done {
            if inq {
                if i >= n {
                    return Err(ProtoError::UnbalancedQuotes);
                }
                let c = line[i];
                if c == b'\\' && i + 3 < n && line[i + 1] == b'x' {
                    if let (Some(a), Some(b)) = (hex_val(line[i + 2]), hex_val(line[i + 3])) {
                        cur.push(a * 16 + b);
                        i += 3;
                        i += 1;
                        continue;
                    }
                }
                if c == b'\\' && i + 1 < n {
                    i += 1;
                    let e = match line[i] {
                        b'n' => b'\n',
                        b'r' => b'\r',
                        b't' => b'\t',
                        b'b' => 8,
                        b'a' => 7,
                        other => other,
                    };
                    cur.push(e);
                } else if c == b'"' {
                    if i + 1 < n && !is_space(line[i + 1]) {
                        return Err(ProtoError::UnbalancedQuotes);
                    }
                    done = true;
                } else {
                    cur.push(c);
                }
            } else if insq {
                if i >= n {
                    return Err(ProtoError::UnbalancedQuotes);
                }
                let c = line[i];
                if c == b'\\' && i + 1 < n && line[i + 1] == b'\'' {
                    i += 1;
                    cur.push(b'\'');
                } else if c == b'\'' {
                    if i + 1 < n && !is_space(line[i + 1]) {
                        return Err(ProtoError::UnbalancedQuotes);
                    }
                    done = true;
                } else {
                    cur.push(c);
                }
            } else {
                if i >= n {
                    break;
                }
                let c = line[i];
                match c {
                    b' ' | b'\n' | b'\r' | b'\t' => done = true,
                    b'"' => inq = true,
                    b'\'' => insq = true,
                    _ => cur.push(c),
                }
            }
            if i < n {
                i += 1;
            }
        }
        args.push(Bytes::from(cur));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_all(input: &[u8]) -> Result<Vec<Vec<Vec<u8>>>, ProtoError> {
        let mut p = RequestParser::new(Limits::default());
        let mut buf = BytesMut::from(input);
        let mut out = vec![];
        let mut args = vec![];
        loop {
            match p.parse(&mut buf, &mut args)? {
                Parsed::Command => {
                    out.push(args.iter().map(|a| a.to_vec()).collect());
                    args.clear();
                }
                Parsed::Incomplete => return Ok(out),
            }
        }
    }

    #[test]
    fn multibulk_and_pipelining() {
        let r = parse_all(b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n*1\r\n$4\r\nPING\r\n").unwrap();
        assert_eq!(r, vec![vec![b"GET".to_vec(), b"k".to_vec()], vec![b"PING".to_vec()]]);
    }

    #[test]
    fn byte_by_byte() {
        let input = b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$5\r\nhello\r\nPING\r\n";
        let mut p = RequestParser::new(Limits::default());
        let mut buf = BytesMut::new();
        let mut args = vec![];
        let mut cmds = vec![];
        for &b in input.iter() {
            buf.extend_from_slice(&[b]);
            while let Parsed::Command = p.parse(&mut buf, &mut args).unwrap() {
                cmds.push(args.clone());
                args.clear();
            }
        }
        assert_eq!(cmds.len(), 2);
        assert_eq!(cmds[0][2], Bytes::from_static(b"hello"));
        assert_eq!(cmds[1][0], Bytes::from_static(b"PING"));
    }

    #[test]
    fn inline_quotes() {
        let r = parse_all(b"set \"a b\" 'c\\'d' \"\\x41\\n\"\r\n\r\n").unwrap();
        assert_eq!(r, vec![vec![b"set".to_vec(), b"a b".to_vec(), b"c'd".to_vec(), b"A\n".to_vec()]]);
        assert_eq!(parse_all(b"set \"abc\n"), Err(ProtoError::UnbalancedQuotes));
        assert_eq!(parse_all(b"set \"abc\"x\n"), Err(ProtoError::UnbalancedQuotes));
    }

    #[test]
    fn errors() {
        assert_eq!(parse_all(b"*abc\r\n"), Err(ProtoError::InvalidMultibulkLength));
        assert_eq!(parse_all(b"*1\r\n+x\r\n"), Err(ProtoError::ExpectedDollar(b'+')));
        assert_eq!(parse_all(b"*1\r\n$-1\r\n"), Err(ProtoError::InvalidBulkLength));
        assert_eq!(parse_all(b"*1\r\n$99999999999\r\n"), Err(ProtoError::InvalidBulkLength));
        assert_eq!(parse_all(b"*0\r\n*-1\r\n").unwrap().len(), 0);
        let big = vec![b'a'; 70 * 1024];
        assert_eq!(parse_all(&big), Err(ProtoError::TooBigInline));
    }

    #[test]
    fn unauthenticated_limits() {
        let mut p = RequestParser::new(Limits::default());
        p.authenticated = false;
        let mut args = vec![];
        let mut buf = BytesMut::from(&b"*11\r\n"[..]);
        assert_eq!(p.parse(&mut buf, &mut args), Err(ProtoError::UnauthenticatedMultibulkLength));
    }
}

#[cfg(test)]
mod chunking {
    //! A deterministic mini-fuzzer run in every `cargo test`: random
    //! mutations of valid requests, parsed whole and in random chunks.
    use super::*;

    fn parse_chunks(data: &[u8], chunk: usize) -> Result<Vec<Vec<Bytes>>, ProtoError> {
        let mut p = RequestParser::new(Limits { max_bulk_len: 1 << 20, max_inline: 4096, max_multibulk: 1 << 16 });
        let mut buf = BytesMut::new();
        let mut args = Vec::new();
        let mut out = Vec::new();
        for piece in data.chunks(chunk) {
            buf.extend_from_slice(piece);
            while let Parsed::Command = p.parse(&mut buf, &mut args)? {
                out.push(std::mem::take(&mut args));
            }
        }
        Ok(out)
    }

    #[test]
    fn random_mutations_never_panic_and_chunking_is_transparent() {
        let seeds: &[&[u8]] = &[
            b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$5\r\nhello\r\n",
            b"PING\r\nset \"a b\" 'c'\r\n",
            b"*2\r\n$4\r\nECHO\r\n$0\r\n\r\n*1\r\n$4\r\nPING\r\n",
        ];
        let mut x: u64 = 0x9e3779b97f4a7c15;
        let mut rnd = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for round in 0..20_000 {
            let mut data = seeds[round % seeds.len()].repeat(1 + (rnd() % 3) as usize);
            for _ in 0..(rnd() % 4) {
                let i = (rnd() as usize) % data.len();
                match rnd() % 3 {
                    0 => data[i] = rnd() as u8,
                    1 => data.insert(i, b"*$\r\n-0123456789"[(rnd() % 15) as usize]),
                    _ => {
                        data.remove(i);
                    }
                }
                if data.is_empty() {
                    data.push(b'*');
                }
            }
            let whole = parse_chunks(&data, data.len());
            let chunk = 1 + (rnd() % 7) as usize;
            let split = parse_chunks(&data, chunk);
            if let (Ok(a), Ok(b)) = (&whole, &split) {
                assert_eq!(a, b, "chunking changed the result for {:?}", String::from_utf8_lossy(&data));
            }
        }
    }
}
