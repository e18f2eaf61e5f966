//! Test support: start a real `redis-server` and a `ferrite` process on
//! free loopback ports, talk raw RESP to them, and run differential
//! transcripts that compare replies byte for byte.
//!
//! Every network operation has a timeout; a missing `redis-server` is a
//! loud failure, never a skip.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const IO_TIMEOUT: Duration = Duration::from_secs(20);

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A server process killed on drop.
pub struct Proc {
    pub child: Child,
    pub port: u16,
    pub name: &'static str,
    _dir: Option<TempDir>,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub struct TempDir(pub PathBuf);
impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        let p = std::env::temp_dir().join(format!("ferrite-test-{tag}-{}-{}", std::process::id(), rand_u64()));
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
}
impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn rand_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(Instant::now().elapsed().as_nanos() as u64);
    h.finish()
}

fn wait_ready(port: u16, child: &mut Child, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let Ok(Some(st)) = child.try_wait() {
            panic!("{what} exited during startup with {st}");
        }
        if let Ok(mut c) = Conn::connect(port) {
            let r = c.cmd(&["PING"]);
            // +PONG, or -NOAUTH when a password is required: either way it is up.
            if r.starts_with(b"+PONG") || r.starts_with(b"-NOAUTH") {
                return;
            }
        }
        if Instant::now() > deadline {
            panic!("{what} did not answer PING on port {port} within 15s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Start Debian's `redis-server` (7.0) with persistence off.
pub fn start_redis(extra: &[&str]) -> Proc {
    let bin = which("redis-server").unwrap_or_else(|| {
        panic!("redis-server not found in PATH: install it (apt-get install -y redis-server) — differential tests need a real Redis 7.0")
    });
    for _ in 0..5 {
        let port = free_port();
        let dir = TempDir::new("redis");
        let mut args: Vec<String> = vec![
            "--port".into(),
            port.to_string(),
            "--bind".into(),
            "127.0.0.1".into(),
            "--save".into(),
            "".into(),
            "--appendonly".into(),
            "no".into(),
            "--dir".into(),
            dir.0.display().to_string(),
            "--enable-debug-command".into(),
            "yes".into(),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        let mut child = Command::new(&bin)
            .args(&args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn redis-server");
        std::thread::sleep(Duration::from_millis(30));
        if let Ok(Some(_)) = child.try_wait() {
            continue; // port race: try another
        }
        wait_ready(port, &mut child, "redis-server");
        return Proc { child, port, name: "redis", _dir: Some(dir) };
    }
    panic!("could not start redis-server");
}

pub fn ferrite_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_ferrite"))
}

/// Start the `ferrite` binary on a free port. Unless `extra` names a
/// `--dir`, it gets a private temporary directory (SAVE, DEBUG RELOAD and
/// the AOF never touch the working directory of the tests).
pub fn start_ferrite(extra: &[&str]) -> Proc {
    let dir = (!extra.contains(&"--dir")).then(|| TempDir::new("ferrite"));
    let dir_args: Vec<String> =
        dir.as_ref().map(|d| vec!["--dir".to_string(), d.0.display().to_string()]).unwrap_or_default();
    let mut child = Command::new(ferrite_bin())
        .args(["--port", "0", "--bind", "127.0.0.1", "--enable-debug-command", "yes"])
        .args(&dir_args)
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn ferrite");
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let line = lines.next().expect("ferrite printed nothing").unwrap();
    let port: u16 = line
        .rsplit(':')
        .next()
        .and_then(|p| p.trim().parse().ok())
        .unwrap_or_else(|| panic!("unexpected ferrite banner: {line}"));
    // Keep draining stdout so the child never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    wait_ready(port, &mut child, "ferrite");
    Proc { child, port, name: "ferrite", _dir: dir }
}

pub fn which(bin: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?.to_str()?.split(':').map(|d| PathBuf::from(d).join(bin)).find(|p| p.is_file())
}

/// A blocking RESP connection returning raw reply bytes.
pub struct Conn {
    pub stream: TcpStream,
    buf: Vec<u8>,
}

impl Conn {
    pub fn connect(port: u16) -> std::io::Result<Conn> {
        let stream = TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_secs(2))?;
        stream.set_read_timeout(Some(IO_TIMEOUT))?;
        stream.set_write_timeout(Some(IO_TIMEOUT))?;
        stream.set_nodelay(true)?;
        Ok(Conn { stream, buf: Vec::new() })
    }

    pub fn send_raw(&mut self, data: &[u8]) {
        self.stream.write_all(data).expect("write");
    }

    pub fn send(&mut self, args: &[impl AsRef<[u8]>]) {
        self.send_raw(&encode(args));
    }

    /// Read one complete reply (any RESP2/RESP3 type), raw bytes.
    pub fn read_reply(&mut self) -> Vec<u8> {
        self.try_read_reply().expect("connection closed before a reply arrived")
    }

    /// Read one reply; None if the server closed the connection.
    pub fn try_read_reply(&mut self) -> Option<Vec<u8>> {
        loop {
            if !self.buf.is_empty() {
                if let Some(n) = frame_len(&self.buf) {
                    return Some(self.buf.drain(..n).collect());
                }
            }
            let mut tmp = [0u8; 65536];
            match self.stream.read(&mut tmp) {
                Ok(0) => return None,
                Ok(n) => self.buf.extend_from_slice(&tmp[..n]),
                Err(e) => panic!("read failed (timeout {IO_TIMEOUT:?}?): {e}"),
            }
        }
    }

    pub fn cmd(&mut self, args: &[impl AsRef<[u8]>]) -> Vec<u8> {
        self.send(args);
        self.read_reply()
    }

    /// Convenience: command given as one shell-like line.
    pub fn line(&mut self, line: &str) -> Vec<u8> {
        let args = split(line);
        self.cmd(&args)
    }
}

/// Length of the first complete RESP2/RESP3 frame in `b`, if complete.
/// Panics on bytes that are not RESP.
pub fn frame_len(b: &[u8]) -> Option<usize> {
    let line_end = b.windows(2).position(|w| w == b"\r\n")?;
    let head = &b[1..line_end];
    let after = line_end + 2;
    let num = || -> i64 {
        std::str::from_utf8(head)
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("bad RESP header {:?}", show(b)))
    };
    match b[0] {
        b'+' | b'-' | b':' | b',' | b'_' | b'#' | b'(' => Some(after),
        b'$' | b'=' | b'!' => {
            let n = num();
            if n < 0 {
                return Some(after);
            }
            let end = after + n as usize + 2;
            (b.len() >= end).then_some(end)
        }
        b'*' | b'~' | b'>' | b'%' | b'|' => {
            let n = num();
            if n < 0 {
                return Some(after);
            }
            let items = if matches!(b[0], b'%' | b'|') { 2 * n } else { n };
            let mut pos = after;
            for _ in 0..items {
                pos += frame_len(&b[pos..])?;
            }
            Some(pos)
        }
        _ => panic!("not RESP: {:?}", show(b)),
    }
}

pub fn encode(args: &[impl AsRef<[u8]>]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        let a = a.as_ref();
        out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// Split a transcript line like redis-cli does (quotes, \x escapes).
pub fn split(line: &str) -> Vec<Vec<u8>> {
    let mut v = Vec::new();
    ferrite_resp::parser::split_args(line.as_bytes(), &mut v).unwrap_or_else(|_| panic!("bad quoting in {line:?}"));
    v.into_iter().map(|b| b.to_vec()).collect()
}

pub fn show(b: &[u8]) -> String {
    String::from_utf8_lossy(b).replace("\r\n", "\\r\\n")
}

/// Sorted top-level elements of an aggregate reply (for order-free compare).
pub fn sorted_elements(reply: &[u8]) -> Vec<Vec<u8>> {
    let head_end = reply.windows(2).position(|w| w == b"\r\n").unwrap() + 2;
    let mut rest = &reply[head_end..];
    let mut items = Vec::new();
    while !rest.is_empty() {
        let n = frame_len(rest).unwrap();
        items.push(rest[..n].to_vec());
        rest = &rest[n..];
    }
    items.sort();
    items
}

/// A pair of servers for differential testing.
pub struct Pair {
    pub redis: Proc,
    pub ferrite: Proc,
    pub r: Conn,
    pub f: Conn,
}

impl Pair {
    pub fn start() -> Pair {
        Pair::start_with(&[], &[])
    }

    pub fn start_with(redis_args: &[&str], ferrite_args: &[&str]) -> Pair {
        let redis = start_redis(redis_args);
        let ferrite = start_ferrite(ferrite_args);
        let r = Conn::connect(redis.port).unwrap();
        let f = Conn::connect(ferrite.port).unwrap();
        Pair { redis, ferrite, r, f }
    }

    /// Run a transcript; panics with a readable diff on the first mismatch.
    ///
    /// Lines: a command per line (redis-cli quoting). Directives:
    /// `# comment`, `!resp3` / `!resp2` (HELLO on both, reply not compared),
    /// `!sleep MS`, `!unordered CMD` (compare top-level elements as a
    /// multiset), `!noreply CMD` (run, don't compare), `!raw BYTES` (send
    /// raw bytes with \r\n escapes, compare everything the server sends
    /// back until it closes or 300ms pass).
    pub fn run(&mut self, name: &str, transcript: &str) {
        for (lineno, raw) in transcript.lines().enumerate() {
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let at = format!("{name}:{}: {line}", lineno + 1);
            if line == "!resp3" || line == "!resp2" {
                let v = if line == "!resp3" { "3" } else { "2" };
                self.r.cmd(&["HELLO", v]);
                self.f.cmd(&["HELLO", v]);
                continue;
            }
            if let Some(ms) = line.strip_prefix("!sleep ") {
                std::thread::sleep(Duration::from_millis(ms.trim().parse().unwrap()));
                continue;
            }
            if let Some(cmd) = line.strip_prefix("!noreply ") {
                self.r.line(cmd);
                self.f.line(cmd);
                continue;
            }
            if let Some(cmd) = line.strip_prefix("!unordered ") {
                let a = self.r.line(cmd);
                let b = self.f.line(cmd);
                let (ha, hb) = (head(&a), head(&b));
                if ha != hb || sorted_elements(&a) != sorted_elements(&b) {
                    panic!("\n{at}\n  redis:   {}\n  ferrite: {}\n", show(&a), show(&b));
                }
                continue;
            }
            let args = split(line);
            let a = self.r.cmd(&args);
            let b = self.f.cmd(&args);
            if a != b {
                panic!("\n{at}\n  redis:   {}\n  ferrite: {}\n", show(&a), show(&b));
            }
        }
    }
}

fn head(reply: &[u8]) -> &[u8] {
    let end = reply.windows(2).position(|w| w == b"\r\n").map_or(reply.len(), |p| p + 2);
    &reply[..end]
}

/// Run every transcript file in `tests/transcripts/` whose name starts
/// with `prefix`, each against a fresh pair, in both RESP2 and RESP3.
pub fn run_transcripts(prefix: &str) {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/transcripts");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name().unwrap().to_string_lossy().starts_with(prefix) && p.extension().is_some_and(|e| e == "txt")
        })
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no transcripts matching {prefix}* in {}", dir.display());
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap();
        let name = f.file_name().unwrap().to_string_lossy().to_string();
        for proto in ["2", "3"] {
            let mut p = Pair::start();
            if proto == "3" {
                p.r.cmd(&["HELLO", "3"]);
                p.f.cmd(&["HELLO", "3"]);
            }
            p.run(&format!("{name} (RESP{proto})"), &text);
        }
    }
}

/// Small deterministic PRNG (xorshift64*) for seeded differential runs, so a
/// failure is reproducible from its seed.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545F4914F6CDD1D)
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    pub fn range(&mut self, lo: i64, hi: i64) -> i64 {
        lo + self.below((hi - lo + 1) as u64) as i64
    }
    pub fn bytes(&mut self, max: u64, alphabet: &[u8]) -> Vec<u8> {
        let n = self.below(max + 1);
        (0..n).map(|_| alphabet[self.below(alphabet.len() as u64) as usize]).collect()
    }
    pub fn pick<'a>(&mut self, v: &[&'a str]) -> &'a str {
        v[(self.next() % v.len() as u64) as usize]
    }
}

/// Assert two recorded step sequences (one per server) are identical.
pub fn assert_same_steps(redis: &[String], ferrite: &[String], label: &str) {
    for (i, (x, y)) in redis.iter().zip(ferrite).enumerate() {
        assert_eq!(x, y, "step {i} differs ({label})");
    }
    assert_eq!(redis.len(), ferrite.len(), "step counts differ ({label})");
}
