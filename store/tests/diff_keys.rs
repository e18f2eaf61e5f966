//! Differential tests: keys commands (transcripts/keys*.txt), plus
//! property tests for the commands whose output Redis leaves unordered or
//! random (SCAN, KEYS, RANDOMKEY).
mod support;

use std::collections::HashSet;
use support::{Conn, Pair};

#[test]
fn transcripts_keys() {
    support::run_transcripts("keys");
}

/// A parsed reply: enough of RESP2/RESP3 for these tests.
#[derive(Debug, Clone, PartialEq)]
enum R {
    Bulk(Vec<u8>),
    Null,
    Int(i64),
    Simple(String),
    Err(String),
    Arr(Vec<R>),
}

fn parse(b: &[u8]) -> (R, usize) {
    let end = b.windows(2).position(|w| w == b"\r\n").unwrap();
    let head = std::str::from_utf8(&b[1..end]).unwrap();
    let after = end + 2;
    match b[0] {
        b'+' => (R::Simple(head.to_string()), after),
        b'-' => (R::Err(head.to_string()), after),
        b':' => (R::Int(head.parse().unwrap()), after),
        b'_' => (R::Null, after),
        b'$' => {
            let n: i64 = head.parse().unwrap();
            if n < 0 {
                return (R::Null, after);
            }
            let n = n as usize;
            (R::Bulk(b[after..after + n].to_vec()), after + n + 2)
        }
        b'*' | b'~' => {
            let n: i64 = head.parse().unwrap();
            if n < 0 {
                return (R::Null, after);
            }
            let mut pos = after;
            let mut v = Vec::new();
            for _ in 0..n {
                let (x, used) = parse(&b[pos..]);
                v.push(x);
                pos += used;
            }
            (R::Arr(v), pos)
        }
        c => panic!("unexpected reply type {}", c as char),
    }
}

fn cmd(c: &mut Conn, args: &[&str]) -> R {
    parse(&c.cmd(args)).0
}

fn bulks(r: R) -> Vec<Vec<u8>> {
    match r {
        R::Arr(v) => v
            .into_iter()
            .map(|x| match x {
                R::Bulk(b) => b,
                other => panic!("not a bulk: {other:?}"),
            })
            .collect(),
        other => panic!("not an array: {other:?}"),
    }
}

/// Run a full SCAN iteration; returns every key returned (with repeats)
/// and the number of calls.
fn full_scan(c: &mut Conn, extra: &[&str]) -> (Vec<Vec<u8>>, usize) {
    let mut cursor = "0".to_string();
    let mut all = Vec::new();
    let mut calls = 0;
    loop {
        let mut args = vec!["SCAN", cursor.as_str()];
        args.extend_from_slice(extra);
        let r = cmd(c, &args);
        calls += 1;
        let R::Arr(mut v) = r else { panic!("SCAN reply {r:?}") };
        assert_eq!(v.len(), 2);
        let keys = bulks(v.pop().unwrap());
        let R::Bulk(cur) = v.pop().unwrap() else { panic!("cursor not bulk") };
        all.extend(keys);
        cursor = String::from_utf8(cur).unwrap();
        if cursor == "0" {
            break;
        }
        assert!(calls < 100_000, "SCAN does not terminate");
    }
    (all, calls)
}

fn set_of(v: &[Vec<u8>]) -> HashSet<Vec<u8>> {
    v.iter().cloned().collect()
}

fn populate(c: &mut Conn, n: usize, prefix: &str) -> HashSet<Vec<u8>> {
    let mut keys = HashSet::new();
    for chunk in (0..n).collect::<Vec<_>>().chunks(100) {
        let mut args: Vec<String> = vec!["MSET".into()];
        for i in chunk {
            let k = format!("{prefix}{i}");
            args.push(k.clone());
            args.push(i.to_string());
            keys.insert(k.into_bytes());
        }
        let refs: Vec<&str> = args.iter().map(|s| s.as_str()).collect();
        assert_eq!(cmd(c, &refs), R::Simple("OK".into()));
    }
    keys
}

#[test]
fn scan_full_iteration_returns_every_key() {
    let f = support::start_ferrite(&[]);
    let mut c = Conn::connect(f.port).unwrap();
    let keys = populate(&mut c, 2000, "key:");
    for count in ["1", "10", "100", "5000"] {
        let (got, calls) = full_scan(&mut c, &["COUNT", count]);
        assert_eq!(got.len(), keys.len(), "each key once (COUNT {count})");
        assert_eq!(set_of(&got), keys, "COUNT {count}");
        if count == "1" {
            assert!(calls > 100, "COUNT 1 should take many calls, took {calls}");
        }
        if count == "5000" {
            assert_eq!(calls, 1);
        }
    }
    // Default COUNT.
    let (got, _) = full_scan(&mut c, &[]);
    assert_eq!(set_of(&got), keys);
    // MATCH filters.
    let (got, _) = full_scan(&mut c, &["MATCH", "key:1*"]);
    let want: HashSet<Vec<u8>> = keys.iter().filter(|k| k.starts_with(b"key:1")).cloned().collect();
    assert_eq!(set_of(&got), want);
    assert_eq!(got.len(), want.len());
    // TYPE filters (case-insensitive), unknown types match nothing.
    let (got, _) = full_scan(&mut c, &["TYPE", "STRING", "COUNT", "50"]);
    assert_eq!(set_of(&got), keys);
    let (got, _) = full_scan(&mut c, &["TYPE", "hash"]);
    assert!(got.is_empty());
    let (got, _) = full_scan(&mut c, &["TYPE", "nosuchtype", "MATCH", "*"]);
    assert!(got.is_empty());
    // Other databases are not visited.
    cmd(&mut c, &["SELECT", "1"]);
    let (got, calls) = full_scan(&mut c, &[]);
    assert!(got.is_empty());
    assert_eq!(calls, 1, "empty db finishes in one call");
    // A cursor past the end is simply done.
    assert_eq!(cmd(&mut c, &["SCAN", "99999"]), R::Arr(vec![R::Bulk(b"0".to_vec()), R::Arr(vec![])]));
}

#[test]
fn scan_guarantee_under_concurrent_changes() {
    let f = support::start_ferrite(&[]);
    let mut c = Conn::connect(f.port).unwrap();
    let mut other = Conn::connect(f.port).unwrap();
    let stable = populate(&mut c, 1000, "stable:");
    let mut cursor = "0".to_string();
    let mut seen = HashSet::new();
    let mut i = 0;
    loop {
        let r = cmd(&mut c, &["SCAN", &cursor, "COUNT", "20"]);
        let R::Arr(mut v) = r else { panic!() };
        let keys = bulks(v.pop().unwrap());
        let R::Bulk(cur) = v.pop().unwrap() else { panic!() };
        seen.extend(keys);
        // Meanwhile another client adds and removes unrelated keys.
        let k = format!("churn:{i}");
        cmd(&mut other, &["SET", &k, "x"]);
        if i > 5 {
            cmd(&mut other, &["DEL", &format!("churn:{}", i - 5)]);
        }
        i += 1;
        cursor = String::from_utf8(cur).unwrap();
        if cursor == "0" {
            break;
        }
    }
    for k in &stable {
        assert!(seen.contains(k), "stable key {} missed", String::from_utf8_lossy(k));
    }
}

#[test]
fn scan_skips_expired_keys() {
    let f = support::start_ferrite(&[]);
    let mut c = Conn::connect(f.port).unwrap();
    let live = populate(&mut c, 50, "live:");
    for i in 0..50 {
        cmd(&mut c, &["SET", &format!("dead:{i}"), "x", "PX", "1"]);
    }
    std::thread::sleep(std::time::Duration::from_millis(20));
    let (got, _) = full_scan(&mut c, &[]);
    assert_eq!(set_of(&got), live);
    let keys = bulks(cmd(&mut c, &["KEYS", "*"]));
    assert_eq!(set_of(&keys), live);
}

#[test]
fn keys_matches_redis() {
    let mut p = Pair::start();
    let rk = populate(&mut p.r, 500, "user:");
    let fk = populate(&mut p.f, 500, "user:");
    assert_eq!(rk, fk);
    for pat in ["*", "user:1*", "user:?", "user:[0-3]?", "*9", "nomatch", "user:\\*", "USER:*"] {
        let mut a = bulks(cmd(&mut p.r, &["KEYS", pat]));
        let mut b = bulks(cmd(&mut p.f, &["KEYS", pat]));
        a.sort();
        b.sort();
        assert_eq!(a, b, "KEYS {pat}");
    }
    // A full SCAN returns exactly what KEYS * returns.
    let (got, _) = full_scan(&mut p.f, &["COUNT", "7"]);
    assert_eq!(set_of(&got), fk);
}

#[test]
fn randomkey_properties() {
    let f = support::start_ferrite(&[]);
    let mut c = Conn::connect(f.port).unwrap();
    assert_eq!(cmd(&mut c, &["RANDOMKEY"]), R::Null);
    let keys = populate(&mut c, 20, "k");
    let mut seen = HashSet::new();
    for _ in 0..400 {
        match cmd(&mut c, &["RANDOMKEY"]) {
            R::Bulk(k) => {
                assert!(keys.contains(&k), "unknown key {}", String::from_utf8_lossy(&k));
                seen.insert(k);
            }
            other => panic!("RANDOMKEY gave {other:?}"),
        }
    }
    assert!(seen.len() >= 10, "RANDOMKEY is not random: {} distinct of 20", seen.len());
    // Expired keys are never returned; a db of only expired keys is empty.
    cmd(&mut c, &["SELECT", "3"]);
    for i in 0..30 {
        cmd(&mut c, &["SET", &format!("gone{i}"), "x", "PX", "1"]);
    }
    std::thread::sleep(std::time::Duration::from_millis(20));
    assert_eq!(cmd(&mut c, &["RANDOMKEY"]), R::Null);
    cmd(&mut c, &["SET", "stay", "1"]);
    for i in 0..30 {
        cmd(&mut c, &["SET", &format!("gone{i}"), "x", "PX", "1"]);
    }
    std::thread::sleep(std::time::Duration::from_millis(20));
    for _ in 0..50 {
        assert_eq!(cmd(&mut c, &["RANDOMKEY"]), R::Bulk(b"stay".to_vec()));
    }
    // Uniform: two keys in neighbouring slots are both returned often.
    cmd(&mut c, &["SELECT", "6"]);
    let first = "k0".to_string();
    let s0 = ferrite_commands::key_hash_slot(first.as_bytes());
    let second = (1..100_000)
        .map(|i| format!("k{i}"))
        .find(|k| ferrite_commands::key_hash_slot(k.as_bytes()) == s0 + 1 || s0 == 16383)
        .unwrap();
    cmd(&mut c, &["SET", &first, "1"]);
    cmd(&mut c, &["SET", &second, "1"]);
    let mut n_first = 0;
    for _ in 0..200 {
        match cmd(&mut c, &["RANDOMKEY"]) {
            R::Bulk(k) if k == first.as_bytes() => n_first += 1,
            R::Bulk(k) if k == second.as_bytes() => {}
            other => panic!("RANDOMKEY gave {other:?}"),
        }
    }
    assert!((40..=160).contains(&n_first), "skewed RANDOMKEY: {n_first}/200");
    // RESP3 null.
    cmd(&mut c, &["SELECT", "4"]);
    c.cmd(&["HELLO", "3"]);
    assert_eq!(c.cmd(&["RANDOMKEY"]), b"_\r\n");
}

#[test]
fn sort_big_collections_match_redis() {
    let mut p = Pair::start();
    // Deterministic pseudo-random numbers with many ties.
    let mut x: u64 = 12345;
    let mut nums = Vec::new();
    for _ in 0..600 {
        x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        let v = (x >> 33) % 1000;
        nums.push(match v % 4 {
            0 => format!("{}", v as i64 - 500),
            1 => format!("{}.{}", v, v % 7),
            2 => format!("{}e-2", v),
            _ => format!("{}", v % 50),
        });
    }
    for c in [&mut p.r, &mut p.f] {
        let mut args = vec!["RPUSH", "big"];
        args.extend(nums.iter().map(|s| s.as_str()));
        cmd(c, &args);
        let mut args = vec!["SADD", "bigset"];
        args.extend(nums.iter().map(|s| s.as_str()));
        cmd(c, &args);
        for (i, n) in nums.iter().enumerate().take(200) {
            cmd(c, &["SET", &format!("w_{n}"), &format!("{}", (i * 7919) % 97)]);
        }
    }
    for q in [
        "SORT big",
        "SORT big DESC",
        "SORT big ALPHA",
        "SORT big ALPHA DESC LIMIT 10 50",
        "SORT big LIMIT 100 20",
        "SORT big BY w_*",
        "SORT big BY w_* DESC LIMIT 5 30 GET # GET w_*",
        "SORT big BY w_* ALPHA",
        "SORT bigset",
        "SORT bigset DESC LIMIT 0 25",
        "SORT bigset ALPHA",
        "SORT bigset BY nosort STORE dst",
        "LRANGE dst 0 -1",
        "SORT big BY nosort DESC LIMIT 3 10",
    ] {
        let a = p.r.line(q);
        let b = p.f.line(q);
        assert_eq!(support::show(&a), support::show(&b), "{q}");
    }
}
