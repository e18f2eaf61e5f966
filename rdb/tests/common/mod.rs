//! Test support for the RDB file tests: a real `redis-server` on a free
//! loopback port with its own temp dir, and a small blocking RESP2 client.
//! A missing `redis-server` fails the test with a clear message.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
        let p = std::env::temp_dir().join(format!("ferrite-rdb-{tag}-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub struct Redis {
    pub child: Child,
    pub port: u16,
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn which(bin: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?.to_str()?.split(':').map(|d| PathBuf::from(d).join(bin)).find(|p| p.is_file())
}

/// Start redis-server with `--dir dir --dbfilename file` and extra args.
pub fn start_redis(dir: &Path, file: &str, extra: &[&str]) -> Redis {
    let bin = which("redis-server").unwrap_or_else(|| {
        panic!("redis-server not found in PATH: these tests need a real Redis 7.0 (apt-get install -y redis-server)")
    });
    for _ in 0..5 {
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let mut child = Command::new(&bin)
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .args(["--dir", &dir.display().to_string(), "--dbfilename", file, "--enable-debug-command", "yes"])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn redis-server");
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(Some(st)) = child.try_wait() {
                // Port race or a file Redis refused to load.
                let log = std::fs::read_to_string(dir.join("redis.log")).unwrap_or_default();
                if Instant::now() + Duration::from_secs(19) > deadline {
                    break;
                }
                panic!("redis-server exited with {st}: {log}");
            }
            if let Ok(mut c) = Client::connect(port) {
                if let Reply::Simple(s) = c.cmd(&["PING"]) {
                    if s == "PONG" {
                        return Redis { child, port };
                    }
                }
            }
            assert!(Instant::now() < deadline, "redis-server did not answer on port {port} within 20s");
            std::thread::sleep(Duration::from_millis(20));
        }
        let st = child.wait();
        if dir.join(file).exists() {
            panic!("redis-server exited at startup ({st:?}) with {} present: it refused the file?", file);
        }
    }
    panic!("could not start redis-server");
}

#[derive(Clone, Debug, PartialEq)]
pub enum Reply {
    Nil,
    Int(i64),
    Bulk(Vec<u8>),
    Simple(String),
    Err(String),
    Arr(Vec<Reply>),
}

impl Reply {
    pub fn bulk(&self) -> Vec<u8> {
        match self {
            Reply::Bulk(b) => b.clone(),
            Reply::Simple(s) => s.as_bytes().to_vec(),
            other => panic!("expected a bulk reply, got {other:?}"),
        }
    }

    pub fn int(&self) -> i64 {
        match self {
            Reply::Int(i) => *i,
            other => panic!("expected an integer reply, got {other:?}"),
        }
    }

    pub fn arr(&self) -> &[Reply] {
        match self {
            Reply::Arr(a) => a,
            other => panic!("expected an array reply, got {other:?}"),
        }
    }

    /// An array of bulks.
    pub fn bulks(&self) -> Vec<Vec<u8>> {
        self.arr().iter().map(|r| r.bulk()).collect()
    }
}

pub struct Client {
    r: BufReader<TcpStream>,
    w: TcpStream,
}

impl Client {
    pub fn connect(port: u16) -> std::io::Result<Client> {
        let s = TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_secs(2))?;
        s.set_read_timeout(Some(Duration::from_secs(30)))?;
        s.set_write_timeout(Some(Duration::from_secs(30)))?;
        Ok(Client { r: BufReader::new(s.try_clone()?), w: s })
    }

    pub fn cmd(&mut self, args: &[impl AsRef<[u8]>]) -> Reply {
        let mut out = format!("*{}\r\n", args.len()).into_bytes();
        for a in args {
            let a = a.as_ref();
            out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
            out.extend_from_slice(a);
            out.extend_from_slice(b"\r\n");
        }
        self.w.write_all(&out).expect("write to redis");
        self.read()
    }

    /// A command given as whitespace-separated words.
    pub fn run(&mut self, line: &str) -> Reply {
        let args: Vec<&str> = line.split_whitespace().collect();
        self.cmd(&args)
    }

    fn line(&mut self) -> String {
        let mut l = String::new();
        self.r.read_line(&mut l).expect("read from redis");
        assert!(l.ends_with("\r\n"), "connection closed or bad line: {l:?}");
        l.truncate(l.len() - 2);
        l
    }

    fn read(&mut self) -> Reply {
        let l = self.line();
        let (t, rest) = l.split_at(1);
        match t {
            "+" => Reply::Simple(rest.to_string()),
            "-" => Reply::Err(rest.to_string()),
            ":" => Reply::Int(rest.parse().unwrap()),
            "$" => {
                let n: i64 = rest.parse().unwrap();
                if n < 0 {
                    return Reply::Nil;
                }
                let mut b = vec![0u8; n as usize + 2];
                std::io::Read::read_exact(&mut self.r, &mut b).expect("read bulk");
                b.truncate(n as usize);
                Reply::Bulk(b)
            }
            "*" => {
                let n: i64 = rest.parse().unwrap();
                if n < 0 {
                    return Reply::Nil;
                }
                Reply::Arr((0..n).map(|_| self.read()).collect())
            }
            _ => panic!("unexpected reply line {l:?}"),
        }
    }
}

/// A small deterministic PRNG (xorshift64*).
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}
