//! Crash safety: with `appendfsync always`, every write acknowledged to a
//! client survives `kill -9` of the server.
//!
//! Several clients write (SET, INCR, RPUSH, HSET) until a write budget or
//! a time cap is reached; every acknowledged write is logged. The server
//! is killed with SIGKILL while the clients are still writing, restarted
//! on the same directory, and each acknowledged write is checked.

mod support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use support::{start_ferrite, Conn, TempDir};

const CLIENTS: usize = 4;
const WRITES_PER_CLIENT: usize = 1500;
const TIME_CAP: Duration = Duration::from_secs(20);

/// What a client knows was acknowledged.
#[derive(Default)]
struct Acked {
    /// (key, value) of acknowledged SETs.
    sets: Vec<(String, String)>,
    /// Highest acknowledged INCR result.
    counter: i64,
    /// Acknowledged RPUSH length.
    list_len: i64,
}

fn reply_int(r: &[u8]) -> Option<i64> {
    if r.first() != Some(&b':') {
        return None;
    }
    std::str::from_utf8(&r[1..r.len() - 2]).ok()?.parse().ok()
}

fn client(port: u16, id: usize, stop: Arc<AtomicBool>, log: Arc<Mutex<Acked>>) {
    let Ok(mut c) = Conn::connect(port) else { return };
    c.stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let deadline = Instant::now() + TIME_CAP;
    for n in 0..WRITES_PER_CLIENT {
        if stop.load(Ordering::Relaxed) || Instant::now() > deadline {
            break;
        }
        let (key, val) = (format!("c{id}:k{n}"), format!("v{n}"));
        let step = n % 3;
        let args: Vec<String> = match step {
            0 => vec!["SET".into(), key.clone(), val.clone()],
            1 => vec!["INCR".into(), format!("c{id}:counter")],
            _ => vec!["RPUSH".into(), format!("c{id}:list"), val.clone()],
        };
        if c.stream.write_all_checked(&support::encode(&args)).is_err() {
            break;
        }
        // A reply that never arrives (server killed) is simply not acked.
        let Some(r) = read_reply_opt(&mut c) else { break };
        let mut a = log.lock().unwrap();
        match step {
            0 if r.starts_with(b"+OK") => a.sets.push((key, val)),
            1 => {
                if let Some(v) = reply_int(&r) {
                    a.counter = a.counter.max(v);
                }
            }
            _ => {
                if let Some(v) = reply_int(&r) {
                    a.list_len = a.list_len.max(v);
                }
            }
        }
    }
}

trait WriteChecked {
    fn write_all_checked(&mut self, b: &[u8]) -> std::io::Result<()>;
}

impl WriteChecked for std::net::TcpStream {
    fn write_all_checked(&mut self, b: &[u8]) -> std::io::Result<()> {
        std::io::Write::write_all(self, b)
    }
}

/// One reply, or None if the connection broke.
fn read_reply_opt(c: &mut Conn) -> Option<Vec<u8>> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| c.try_read_reply())).ok().flatten()
}

#[test]
fn acknowledged_writes_survive_kill_9_with_appendfsync_always() {
    let dir = TempDir::new("crash");
    let d = dir.0.display().to_string();
    let args = ["--dir", d.as_str(), "--appendonly", "yes", "--appendfsync", "always"];
    let mut f = start_ferrite(&args);
    let port = f.port;
    let stop = Arc::new(AtomicBool::new(false));
    let logs: Vec<Arc<Mutex<Acked>>> = (0..CLIENTS).map(|_| Arc::new(Mutex::new(Acked::default()))).collect();
    let threads: Vec<_> = (0..CLIENTS)
        .map(|i| {
            let (s, l) = (stop.clone(), logs[i].clone());
            std::thread::spawn(move || client(port, i, s, l))
        })
        .collect();
    // Let the clients get going, then kill the server mid-stream.
    let start = Instant::now();
    loop {
        let total: usize = logs.iter().map(|l| l.lock().unwrap().sets.len()).sum();
        if total * 3 >= CLIENTS * WRITES_PER_CLIENT / 2 || start.elapsed() > Duration::from_secs(8) {
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    f.child.kill().expect("kill -9");
    let _ = f.child.wait();
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        t.join().unwrap();
    }
    let acked: usize = logs.iter().map(|l| l.lock().unwrap().sets.len()).sum();
    assert!(acked > 0, "no write was acknowledged before the kill");
    eprintln!("acknowledged SETs before kill -9: {acked}");

    let f2 = start_ferrite(&args);
    let mut c = Conn::connect(f2.port).unwrap();
    for (i, l) in logs.iter().enumerate() {
        let a = l.lock().unwrap();
        for (k, v) in &a.sets {
            let r = c.cmd(&["GET", k.as_str()]);
            let want = format!("${}\r\n{v}\r\n", v.len());
            assert_eq!(support::show(&r), support::show(want.as_bytes()), "acknowledged SET {k} lost");
        }
        let r = c.cmd(&["GET", &format!("c{i}:counter")]);
        let got: i64 = if r.starts_with(b"$-1") {
            0
        } else {
            let s = String::from_utf8_lossy(&r).into_owned();
            s.lines().nth(1).unwrap_or("0").parse().unwrap()
        };
        assert!(got >= a.counter, "client {i}: counter {got} < acknowledged {}", a.counter);
        let len = reply_int(&c.cmd(&["LLEN", &format!("c{i}:list")])).unwrap();
        assert!(len >= a.list_len, "client {i}: list length {len} < acknowledged {}", a.list_len);
    }
}
