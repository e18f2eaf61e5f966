//! The client's run fast path (plain single-key commands sent to a backend as one block of the client's bytes):
//! reply order when fast and general-path requests mix, requests and replies split across reads, redirects inside
//! a run, and a backend dying in the middle of a run.

mod common;

use common::*;
use ferrite_testkit::{encode, start_redis, Cluster, Conn};
use std::io::{Read, Write};
use std::net::TcpListener;
use std::time::{Duration, Instant};

fn bulk(s: &str) -> Vec<u8> {
    format!("${}\r\n{s}\r\n", s.len()).into_bytes()
}

/// A pipeline mixing run-eligible commands (GET, SET, INCR, HSET, APPEND, with values big enough to be split over
/// many backend reads) with requests that take other paths (proxy-answered, multi-key, transactions, errors).
fn mixed_pipeline() -> (Vec<u8>, usize) {
    let big = "b".repeat(300_000);
    let mut cmds: Vec<Vec<String>> = Vec::new();
    let mut v = |a: &[&str]| cmds.push(a.iter().map(|s| s.to_string()).collect());
    for i in 0..40 {
        let k = format!("k{i}");
        v(&["SET", &k, &i.to_string()]);
        v(&["GET", &k]);
        v(&["INCR", &k]);
        if i % 3 == 0 {
            v(&["PING"]);
        }
        if i % 5 == 0 {
            v(&["MGET", "k1", &k, "nosuch"]);
            v(&["HSET", &k, "f", "v"]);
        }
        if i % 7 == 0 {
            v(&["MULTI"]);
            v(&["INCR", "{t}c"]);
            v(&["GET", "{t}c"]);
            v(&["EXEC"]);
        }
        if i % 9 == 0 {
            v(&["SET", "big", &big]);
            v(&["GET", "big"]);
            v(&["APPEND", "big", "x"]);
            v(&["GET"]);
            v(&["NOSUCHCMD", &k]);
        }
    }
    v(&["GET", "big"]);
    let n = cmds.len();
    let mut out = Vec::new();
    for c in &cmds {
        out.extend_from_slice(&encode(c));
    }
    (out, n)
}

/// Send `data` in pieces of the given sizes (with a short pause between, so they arrive as separate reads), then
/// read `n` replies.
fn transcript(port: u16, data: &[u8], n: usize, pieces: &[usize]) -> Vec<Vec<u8>> {
    let mut c = Conn::connect(port).unwrap();
    let mut at = 0;
    let mut i = 0;
    while at < data.len() {
        let k = if pieces.is_empty() { data.len() } else { pieces[i % pieces.len()] };
        let end = (at + k).min(data.len());
        c.send_raw(&data[at..end]);
        at = end;
        i += 1;
        if !pieces.is_empty() && i % 16 == 0 {
            sleep_ms(1);
        }
    }
    (0..n).map(|_| c.read_reply()).collect()
}

#[test]
fn runs_keep_reply_order_with_other_paths_and_split_reads() {
    let redis = start_redis(&[]);
    let backend = start_redis(&[]);
    let proxy = start_proxy(&["--ferrite", &backend.addr()]);
    let (data, n) = mixed_pipeline();
    let want = transcript(redis.port, &data, n, &[]);
    // Whole, then cut at every few bytes (requests split across reads at every position), each time from the
    // same state.
    for pieces in [&[][..], &[7, 1, 13, 2, 29][..], &[4096, 5][..], &[65536, 3, 100_000][..]] {
        for p in [&redis, &backend] {
            Conn::connect(p.port).unwrap().cmd(&["FLUSHALL"]);
        }
        let got = transcript(proxy.port, &data, n, pieces);
        for (i, (g, w)) in got.iter().zip(&want).enumerate() {
            assert!(
                g == w,
                "reply {i} of {n} with pieces {pieces:?}: proxy {:?} redis {:?}",
                String::from_utf8_lossy(&g[..g.len().min(200)]),
                String::from_utf8_lossy(&w[..w.len().min(200)])
            );
        }
    }
}

/// A run for a slot that moved without the proxy knowing: its requests get `-MOVED` from the old owner and are
/// followed to the new one, in order with the requests around them.
#[test]
fn moved_inside_a_run_is_followed_in_order() {
    let cluster = Cluster::start(3, 0);
    let proxy = start_proxy_cluster(&cluster.seed(), &[]);
    let mut c = Conn::connect(proxy.port).unwrap();
    let moving = "{m}key";
    let s = slot(moving);
    let from = cluster.master_of_slot(s);
    let stay: Vec<String> =
        (0..200).map(|i| format!("stay{i}")).filter(|k| cluster.master_of_slot(slot(k)) == from).collect();
    assert!(stay.len() > 5);
    assert_eq!(c.cmd(&["SET", moving, "0"]), b"+OK\r\n");
    for k in &stay {
        assert_eq!(c.cmd(&["SET", k, k]), b"+OK\r\n");
    }
    let to = cluster.master_ports().into_iter().find(|&x| x != from).unwrap();
    cluster.move_slot(s, to, None);
    // One pipeline: requests for the moved slot between requests for slots that stayed on the same node (one run
    // on one connection).
    let mut data = Vec::new();
    let mut want = Vec::new();
    for (i, k) in stay.iter().enumerate() {
        data.extend_from_slice(&encode(&["GET", k]));
        want.push(bulk(k));
        data.extend_from_slice(&encode(&["INCR", moving]));
        want.push(format!(":{}\r\n", i + 1).into_bytes());
        data.extend_from_slice(&encode(&["GET", moving]));
        want.push(bulk(&(i + 1).to_string()));
    }
    c.send_raw(&data);
    for (i, w) in want.iter().enumerate() {
        let g = c.read_reply();
        assert_eq!(String::from_utf8_lossy(&g), String::from_utf8_lossy(w), "reply {i}");
    }
    assert_eq!(Conn::connect(to).unwrap().cmd(&["GET", moving]), bulk(&stay.len().to_string()));
}

/// A backend that answers the first `answer` GETs of what it reads and then closes its connection (accepting
/// only once): exactly the requests without a reply get an error, in order, and the client goes on.
#[test]
fn backend_dying_mid_run_fails_exactly_the_pending_requests() {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap().to_string();
    let (n, answer) = (64usize, 20usize);
    let fake = std::thread::spawn(move || {
        // Connections that close without the run (a startup probe) are skipped; the one carrying the run is
        // answered in part and closed, and then nothing more is accepted.
        let one = encode(&["GET", "k"]);
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            assert!(Instant::now() < deadline, "no connection carried the run");
            let (mut s, _) = l.accept().unwrap();
            s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            let mut got = Vec::new();
            let mut buf = [0u8; 4096];
            while got.len() < n * one.len() && Instant::now() < deadline {
                match s.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(k) => got.extend_from_slice(&buf[..k]),
                }
            }
            if got.is_empty() {
                continue;
            }
            assert_eq!(got, one.repeat(n), "the backend got the whole run");
            drop(l);
            let mut out = Vec::new();
            for _ in 0..answer {
                out.extend_from_slice(b"$1\r\nv\r\n");
            }
            // Half of the next reply, then close.
            out.extend_from_slice(b"$1\r\n");
            s.write_all(&out).unwrap();
            s.flush().unwrap();
            return;
        }
    });
    let proxy = start_proxy(&["--ferrite", &addr, "--request-timeout-ms", "5000"]);
    let mut c = Conn::connect(proxy.port).unwrap();
    let mut data = Vec::new();
    for _ in 0..n {
        data.extend_from_slice(&encode(&["GET", "k"]));
    }
    data.extend_from_slice(&encode(&["PING"]));
    c.send_raw(&data);
    for i in 0..n {
        let r = c.read_reply();
        if i < answer {
            assert_eq!(r, b"$1\r\nv\r\n", "reply {i}");
        } else {
            assert_eq!(r.first(), Some(&b'-'), "reply {i}: {}", String::from_utf8_lossy(&r));
        }
    }
    assert_eq!(c.read_reply(), b"+PONG\r\n");
    fake.join().unwrap();
}
