//! client-output-buffer-limit enforcement, as Redis 7.0's unit/obuf-limits:
//! a pub/sub subscriber that does not read is closed once its queued output
//! passes the hard limit, or stays above the soft limit for the soft
//! seconds (also when nothing more is published); CLIENT LIST shows the
//! queued bytes as `omem`. A normal client whose replies pass the `normal`
//! hard limit is closed without them.

mod support;

use std::time::{Duration, Instant};
use support::{show, start_ferrite, Conn};

/// `omem` of the client named `name` in CLIENT LIST, None when it is gone.
fn omem_of(c: &mut Conn, name: &str) -> Option<u64> {
    let list = String::from_utf8_lossy(&c.cmd(&["CLIENT", "LIST"])).into_owned();
    let line = list.lines().find(|l| l.contains(&format!(" name={name} ")))?;
    line.split(' ').find_map(|f| f.strip_prefix("omem=")).and_then(|v| v.parse().ok())
}

fn subscriber(port: u16, name: &str) -> Conn {
    let mut s = Conn::connect(port).unwrap();
    assert_eq!(s.cmd(&["CLIENT", "SETNAME", name]), b"+OK\r\n");
    s.send(&["SUBSCRIBE", "foo"]);
    let r = s.read_reply();
    assert!(show(&r).contains("subscribe"), "{}", show(&r));
    s
}

#[test]
fn hard_limit_closes_a_subscriber_that_does_not_read() {
    let f = start_ferrite(&[]);
    let mut c = Conn::connect(f.port).unwrap();
    assert_eq!(c.cmd(&["CONFIG", "SET", "client-output-buffer-limit", "pubsub 100000 0 0"]), b"+OK\r\n");
    let _sub = subscriber(f.port, "slowsub");
    let payload = "x".repeat(1000);
    let mut max_seen = 0;
    let mut gone = false;
    // The socket buffers take a few MB first; bounded at 100 MB published.
    for _ in 0..100_000 {
        c.cmd(&["PUBLISH", "foo", &payload]);
        match omem_of(&mut c, "slowsub") {
            Some(m) => max_seen = max_seen.max(m),
            None => {
                gone = true;
                break;
            }
        }
    }
    assert!(gone, "the subscriber is still connected (largest omem seen {max_seen})");
    assert!(max_seen < 200_000, "omem reached {max_seen} before the close");
}

#[test]
fn soft_limit_closes_after_its_seconds_even_without_traffic() {
    let f = start_ferrite(&[]);
    let mut c = Conn::connect(f.port).unwrap();
    assert_eq!(c.cmd(&["CONFIG", "SET", "client-output-buffer-limit", "pubsub 0 100000 2"]), b"+OK\r\n");
    let _sub = subscriber(f.port, "softsub");
    let payload = "x".repeat(1000);
    let mut over_at = None;
    for _ in 0..100_000 {
        c.cmd(&["PUBLISH", "foo", &payload]);
        let m = omem_of(&mut c, "softsub").expect("closed before the soft limit's seconds");
        if m > 100_000 {
            over_at = Some(Instant::now());
            break;
        }
    }
    let over_at = over_at.expect("omem never passed the soft limit");
    // Not closed at once: the soft limit allows its seconds.
    std::thread::sleep(Duration::from_millis(500));
    assert!(omem_of(&mut c, "softsub").is_some(), "closed before the soft limit's 2 seconds");
    // Nothing more is published; the server's cron closes it after about 2 s.
    let deadline = over_at + Duration::from_secs(6);
    while omem_of(&mut c, "softsub").is_some() {
        assert!(Instant::now() < deadline, "still connected 6 s after passing the soft limit");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(over_at.elapsed() >= Duration::from_millis(1900), "closed after {:?}", over_at.elapsed());
}

#[test]
fn normal_hard_limit_closes_without_the_reply() {
    let f = start_ferrite(&[]);
    let mut c = Conn::connect(f.port).unwrap();
    let big = "v".repeat(10_000);
    for i in 0..20 {
        assert_eq!(c.cmd(&["SET", &format!("k{i}"), &big]), b"+OK\r\n");
    }
    assert_eq!(c.cmd(&["CONFIG", "SET", "client-output-buffer-limit", "normal 100000 0 0"]), b"+OK\r\n");
    let keys: Vec<String> = (0..20).map(|i| format!("k{i}")).collect();
    let mut mget = vec!["MGET"];
    mget.extend(keys.iter().map(String::as_str));
    // A 200 KB reply: the connection is closed and gets nothing.
    c.send(&mget);
    assert_eq!(c.try_read_reply(), None, "a reply came back");
    // A small reply on a new connection is fine.
    let mut d = Conn::connect(f.port).unwrap();
    assert_eq!(d.cmd(&["GET", "k0"]).len(), 10_000 + 10);
    assert_eq!(d.cmd(&["CONFIG", "SET", "client-output-buffer-limit", "normal 0 0 0"]), b"+OK\r\n");
}

/// client-query-buffer-limit, the same on Redis 7.0 and ferrite: a client whose unprocessed input passes the
/// limit is closed (no reply), a smaller command still works.
#[test]
fn query_buffer_limit_closes_the_client_like_redis() {
    let redis = support::start_redis(&[]);
    let ferrite = start_ferrite(&[]);
    for port in [redis.port, ferrite.port] {
        let mut c = Conn::connect(port).unwrap();
        assert_eq!(c.cmd(&["CONFIG", "SET", "client-query-buffer-limit", "1mb"]), b"+OK\r\n", "port {port}");
        let ok = "a".repeat(500_000);
        assert_eq!(c.cmd(&["SET", "small", &ok]), b"+OK\r\n", "port {port}");
        let big = "b".repeat(2_000_000);
        let mut d = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        d.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        // The server may close while this is still being written.
        let _ = std::io::Write::write_all(&mut d, &support::encode(&["SET", "big", &big]));
        let mut tmp = [0u8; 1024];
        match std::io::Read::read(&mut d, &mut tmp) {
            Ok(0) => {}
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
            other => panic!("port {port}: expected the connection closed, got {other:?}"),
        }
        assert_eq!(c.cmd(&["EXISTS", "big"]), b":0\r\n", "port {port}");
        assert_eq!(c.cmd(&["CONFIG", "SET", "client-query-buffer-limit", "1gb"]), b"+OK\r\n");
    }
}
