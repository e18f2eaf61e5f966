//! maxmemory, eviction policies and expiry, against real Redis where the
//! observable replies must match and by properties where they can't.
mod support;
use std::time::{Duration, Instant};
use support::*;

fn info_field(c: &mut Conn, section: &str, field: &str) -> i64 {
    let r = c.cmd(&["INFO", section]);
    let text = String::from_utf8_lossy(&r).to_string();
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{field}:")))
        .unwrap_or_else(|| panic!("no {field} in INFO {section}: {text}"))
        .trim()
        .parse()
        .unwrap()
}

/// Fill with 100-byte values until eviction must happen; the limit holds.
fn fill(c: &mut Conn, n: usize) {
    let mut req = Vec::new();
    for i in 0..n {
        req.extend_from_slice(&encode(&["SET".to_string(), format!("key:{i}"), "x".repeat(100)]));
    }
    c.send_raw(&req);
    for _ in 0..n {
        let r = c.read_reply();
        assert!(r.starts_with(b"+OK") || r.starts_with(b"-OOM"), "{}", show(&r));
    }
}

#[test]
fn eviction_policies_keep_memory_under_the_limit() {
    for policy in ["allkeys-lru", "allkeys-lfu", "allkeys-random", "volatile-ttl", "volatile-lru"] {
        let f = start_ferrite(&[]);
        let mut c = Conn::connect(f.port).unwrap();
        let used = info_field(&mut c, "memory", "used_memory");
        let limit = used + 3_000_000;
        assert_eq!(c.cmd(&["CONFIG", "SET", "maxmemory", &limit.to_string()]), b"+OK\r\n");
        assert_eq!(c.cmd(&["CONFIG", "SET", "maxmemory-policy", policy]), b"+OK\r\n");
        if policy.starts_with("volatile") {
            // Half the keys have a TTL; only they may be evicted.
            let mut req = Vec::new();
            for i in 0..20_000 {
                req.extend_from_slice(&encode(&[
                    "SET".to_string(),
                    format!("v:{i}"),
                    "y".repeat(100),
                    "EX".into(),
                    "1000".into(),
                ]));
            }
            c.send_raw(&req);
            for _ in 0..20_000 {
                c.read_reply();
            }
        }
        fill(&mut c, 40_000);
        let evicted = info_field(&mut c, "stats", "evicted_keys");
        assert!(evicted > 0, "{policy}: nothing evicted");
        let used_now = info_field(&mut c, "memory", "used_memory");
        assert!(used_now <= limit + 200_000, "{policy}: used {used_now} > limit {limit}");
        if policy.starts_with("volatile") {
            // Keys without TTL survive volatile policies.
            assert_eq!(c.cmd(&["EXISTS", "key:0"]), b":1\r\n", "{policy}");
        }
    }
}

#[test]
fn noeviction_refuses_writes_like_redis() {
    let r = start_redis(&[]);
    let f = start_ferrite(&[]);
    let mut replies = vec![];
    for port in [r.port, f.port] {
        let mut c = Conn::connect(port).unwrap();
        c.cmd(&["SET", "existing", "v"]);
        c.cmd(&["CONFIG", "SET", "maxmemory", "1"]);
        let mut seen = vec![];
        for cmd in [
            &["SET", "k", "v"][..],
            &["GET", "existing"],
            &["DEL", "existing"],
            &["LPUSH", "l", "x"],
            &["INCR", "n"],
            &["MULTI"],
            &["GET", "x"],
            &["EXEC"],
            &["CONFIG", "GET", "maxmemory-policy"],
        ] {
            seen.push(show(&c.cmd(cmd)));
        }
        c.cmd(&["CONFIG", "SET", "maxmemory", "0"]);
        seen.push(show(&c.cmd(&["SET", "k", "v"])));
        replies.push(seen);
    }
    assert_eq!(replies[0], replies[1]);
}

#[test]
fn active_expiry_reclaims_keys_like_redis() {
    let r = start_redis(&[]);
    let f = start_ferrite(&[]);
    for port in [r.port, f.port] {
        let mut c = Conn::connect(port).unwrap();
        let mut req = Vec::new();
        for i in 0..500 {
            req.extend_from_slice(&encode(&[
                "SET".to_string(),
                format!("t:{i}"),
                "v".into(),
                "PX".into(),
                "100".into(),
            ]));
        }
        req.extend_from_slice(&encode(&["SET", "keep", "v"]));
        c.send_raw(&req);
        for _ in 0..501 {
            c.read_reply();
        }
        // Nobody touches the keys: only the background cycle can remove them.
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            if c.cmd(&["DBSIZE"]) == b":1\r\n" {
                break;
            }
            assert!(Instant::now() < deadline, "keys were not actively expired on port {port}");
            std::thread::sleep(Duration::from_millis(100));
        }
        assert_eq!(info_field(&mut c, "stats", "expired_keys"), 500);
    }
}
