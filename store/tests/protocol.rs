//! Bad and unusual input on the wire, compared with real Redis: malformed
//! RESP, inline commands, huge lengths, partial requests, binary keys.
mod support;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};
use support::*;

/// Send raw bytes, then collect everything until the server closes the
/// connection or stays quiet for `quiet`.
fn exchange(port: u16, data: &[u8], quiet: Duration) -> (Vec<u8>, bool) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(quiet)).unwrap();
    s.write_all(data).unwrap();
    let mut out = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut buf = [0u8; 8192];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return (out, true),
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(_) => return (out, false),
        }
        if Instant::now() > deadline {
            return (out, false);
        }
    }
}

const CASES: &[&[u8]] = &[
    b"*abc\r\n",
    b"*1\r\n+x\r\n",
    b"*1\r\n$-1\r\n",
    b"*1\r\n$abc\r\n",
    b"*1\r\n$999999999999\r\n",
    b"*2\r\n$3\r\nGET\r\n:1\r\n",
    b"*-1\r\nPING\r\n",
    b"*0\r\nPING\r\n",
    b"\r\n\r\nPING\r\n",
    b"PING\n",
    b"set \"a b\" 'c d'\r\nget \"a b\"\r\n",
    b"set \"unbalanced\r\n",
    b"set 'x'y z\r\n",
    b"ECHO \"\\x41\\x42\\n\"\r\n",
    b"*3\r\n$3\r\nSET\r\n$3\r\n\xff\xfe\x00\r\n$2\r\n\x00\x01\r\n*2\r\n$3\r\nGET\r\n$3\r\n\xff\xfe\x00\r\n",
    b"*1\r\n$4\r\nPING\r\n*1\r\n$4\r\nPI",
    b"*2\r\n$4\r\nECHO\r\n$3\r\nabcXY*1\r\n$4\r\nPING\r\n",
    b"*3000000000\r\n",
    b"*1\r\n$4\r\nPING",
];

#[test]
fn malformed_requests_match_redis() {
    let redis = start_redis(&[]);
    let ferrite = start_ferrite(&[]);
    for case in CASES {
        let (a, a_closed) = exchange(redis.port, case, Duration::from_millis(500));
        let (b, b_closed) = exchange(ferrite.port, case, Duration::from_millis(500));
        assert_eq!(show(&a), show(&b), "reply differs for input {:?}", show(case));
        assert_eq!(a_closed, b_closed, "close behaviour differs for input {:?}", show(case));
    }
    // The server is still healthy.
    let mut c = Conn::connect(ferrite.port).unwrap();
    assert_eq!(c.cmd(&["PING"]), b"+PONG\r\n");
}

#[test]
fn too_big_inline_and_bulk_header() {
    let redis = start_redis(&[]);
    let ferrite = start_ferrite(&[]);
    for case in [vec![b'a'; 70 * 1024], [b"*1\r\n$".to_vec(), vec![b'1'; 70 * 1024]].concat()] {
        let (a, ac) = exchange(redis.port, &case, Duration::from_millis(500));
        let (b, bc) = exchange(ferrite.port, &case, Duration::from_millis(500));
        assert_eq!(show(&a), show(&b));
        assert_eq!(ac, bc);
    }
}

#[test]
fn big_values_roundtrip_and_limit() {
    let ferrite = start_ferrite(&[]);
    let mut c = Conn::connect(ferrite.port).unwrap();
    let big = vec![b'x'; 64 * 1024 * 1024];
    assert_eq!(c.cmd(&[b"SET".as_slice(), b"big", &big]), b"+OK\r\n");
    let reply = c.cmd(&["GET", "big"]);
    assert_eq!(reply.len(), big.len() + format!("${}\r\n\r\n", big.len()).len());
    assert_eq!(c.cmd(&["STRLEN", "big"]), format!(":{}\r\n", big.len()).into_bytes());

    // Redis's minimum for the setting is 1 MB.
    let small = start_ferrite(&["--proto-max-bulk-len", "1mb"]);
    let (out, closed) = exchange(small.port, b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1048577\r\n", Duration::from_millis(500));
    assert_eq!(show(&out), "-ERR Protocol error: invalid bulk length\\r\\n");
    assert!(closed);
}

#[test]
fn unauthenticated_limits_match_redis() {
    let redis = start_redis(&["--requirepass", "pw"]);
    let ferrite = start_ferrite(&["--requirepass", "pw"]);
    let cases: &[&[u8]] = &[
        b"*11\r\n",
        b"*2\r\n$3\r\nGET\r\n$20000\r\n",
        b"GET k\r\n",
        b"AUTH wrong\r\n",
        b"AUTH pw\r\nGET k\r\n",
        b"HELLO 3 AUTH default pw\r\n",
    ];
    for case in cases {
        let (a, ac) = exchange(redis.port, case, Duration::from_millis(500));
        let (b, bc) = exchange(ferrite.port, case, Duration::from_millis(500));
        // HELLO's map carries the server id/version; compare its shape only.
        if case.starts_with(b"HELLO") {
            assert!(a.starts_with(b"%7") && b.starts_with(b"%7"), "{} vs {}", show(&a), show(&b));
            continue;
        }
        assert_eq!(show(&a), show(&b), "input {:?}", show(case));
        assert_eq!(ac, bc, "close behaviour for {:?}", show(case));
    }
}

#[test]
fn pipelined_burst_is_answered_in_order() {
    let ferrite = start_ferrite(&[]);
    let mut c = Conn::connect(ferrite.port).unwrap();
    let mut req = Vec::new();
    for i in 0..10_000 {
        req.extend_from_slice(&encode(&["SET".to_string(), format!("k{i}"), i.to_string()]));
        req.extend_from_slice(&encode(&["GET".to_string(), format!("k{i}")]));
    }
    c.send_raw(&req);
    for i in 0..10_000 {
        assert_eq!(c.read_reply(), b"+OK\r\n");
        assert_eq!(c.read_reply(), format!("${}\r\n{i}\r\n", i.to_string().len()).into_bytes());
    }
}

/// A client that writes a whole pipeline before reading any reply (redis-py's `pipeline().execute()` does this)
/// must be served: the server keeps reading and executing while the replies wait for the client, as Redis does.
/// Before, ferrite stopped reading while a reply write waited, and with requests and replies bigger than the
/// socket buffers both sides waited forever. Bounded: the write and the reads time out instead of hanging.
#[test]
fn pipeline_sent_whole_before_reading_is_served() {
    for (name, srv) in [("redis", start_redis(&[])), ("ferrite", start_ferrite(&[]))] {
        let mut s = TcpStream::connect(("127.0.0.1", srv.port)).unwrap();
        s.set_write_timeout(Some(Duration::from_secs(20))).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let value = "v".repeat(100);
        s.write_all(format!("*3\r\n$3\r\nSET\r\n$1\r\nk\r\n${}\r\n{value}\r\n", value.len()).as_bytes()).unwrap();
        let mut ok = [0u8; 5];
        s.read_exact(&mut ok).unwrap();
        assert_eq!(&ok, b"+OK\r\n");
        // 16 MB of requests and 85 MB of replies: both far more than the socket buffers hold (a few MB each way).
        let n = 800_000usize;
        let one = b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n";
        let mut req = Vec::with_capacity(one.len() * 4096);
        for _ in 0..4096 {
            req.extend_from_slice(one);
        }
        let reply_len = format!("${}\r\n{value}\r\n", value.len()).len();
        let mut sent = 0;
        while sent < n {
            let k = (n - sent).min(4096);
            if let Err(e) = s.write_all(&req[..k * one.len()]) {
                panic!("{name}: the server stopped reading a pipeline it had not answered yet ({e}) after {sent}");
            }
            sent += k;
        }
        let mut left = n * reply_len;
        let mut buf = vec![0u8; 1 << 20];
        while left > 0 {
            match s.read(&mut buf[..left.min(1 << 20)]) {
                Ok(0) => panic!("{name}: closed with {left} reply bytes missing"),
                Ok(k) => left -= k,
                Err(e) => panic!("{name}: {e} with {left} reply bytes missing"),
            }
        }
    }
}
