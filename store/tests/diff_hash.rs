//! Differential tests: hash commands (transcripts/hash*.txt), plus property
//! tests for the random and cursor-based commands.
mod support;

use std::collections::{HashMap, HashSet};
use support::{frame_len, start_ferrite, Conn};

#[test]
fn transcripts_hash() {
    support::run_transcripts("hash");
}

/// Parse a flat RESP2 array of bulk strings (or one nested level of arrays,
/// flattened).
fn bulks(reply: &[u8]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < reply.len() {
        let end = reply[pos..].windows(2).position(|w| w == b"\r\n").unwrap() + pos;
        let head = &reply[pos..end];
        match head[0] {
            b'*' | b'~' | b'%' => pos = end + 2,
            b'$' => {
                let n: usize = std::str::from_utf8(&head[1..]).unwrap().parse().unwrap();
                out.push(reply[end + 2..end + 2 + n].to_vec());
                pos = end + 2 + n + 2;
            }
            _ => panic!("unexpected reply {:?}", support::show(reply)),
        }
    }
    out
}

fn header_len(reply: &[u8]) -> i64 {
    let end = reply.windows(2).position(|w| w == b"\r\n").unwrap();
    std::str::from_utf8(&reply[1..end]).unwrap().parse().unwrap()
}

fn fill(c: &mut Conn, key: &str, n: usize) -> HashMap<Vec<u8>, Vec<u8>> {
    let mut args = vec!["HSET".to_string(), key.to_string()];
    let mut m = HashMap::new();
    for i in 0..n {
        args.push(format!("f{i}"));
        args.push(format!("v{i}"));
        m.insert(format!("f{i}").into_bytes(), format!("v{i}").into_bytes());
    }
    let r = c.cmd(&args);
    assert_eq!(r, format!(":{n}\r\n").into_bytes());
    m
}

#[test]
fn hrandfield_properties() {
    let f = start_ferrite(&[]);
    let mut c = Conn::connect(f.port).unwrap();
    // small (listpack) and big (hashtable) hashes
    for (key, n) in [("small", 10usize), ("big", 300usize)] {
        let m = fill(&mut c, key, n);
        // no count: a member
        let mut seen = HashSet::new();
        for _ in 0..(n * 20) {
            let r = bulks(&c.cmd(&["HRANDFIELD", key]));
            assert_eq!(r.len(), 1);
            assert!(m.contains_key(&r[0]));
            seen.insert(r[0].clone());
        }
        assert_eq!(seen.len(), n, "{key}: every field eventually returned");
        // positive counts: unique, members, right length
        for count in [1usize, 2, 3, n / 3, n / 2, n - 1, n, n + 5] {
            let r = c.cmd(&["HRANDFIELD", key, &count.to_string()]);
            assert_eq!(header_len(&r) as usize, count.min(n));
            let items = bulks(&r);
            let set: HashSet<_> = items.iter().cloned().collect();
            assert_eq!(set.len(), items.len(), "{key} count {count}: unique");
            assert!(items.iter().all(|i| m.contains_key(i)));
            // WITHVALUES: pairs match
            let r = bulks(&c.cmd(&["HRANDFIELD", key, &count.to_string(), "WITHVALUES"]));
            assert_eq!(r.len(), 2 * count.min(n));
            let mut fields = HashSet::new();
            for p in r.chunks(2) {
                assert_eq!(m.get(&p[0]), Some(&p[1]));
                assert!(fields.insert(p[0].clone()));
            }
        }
        // negative counts: exact length, repetitions allowed, members
        for count in [1usize, 5, n, n * 3] {
            let r = c.cmd(&["HRANDFIELD", key, &format!("-{count}")]);
            assert_eq!(header_len(&r) as usize, count);
            let items = bulks(&r);
            assert!(items.iter().all(|i| m.contains_key(i)));
            let r = bulks(&c.cmd(&["HRANDFIELD", key, &format!("-{count}"), "WITHVALUES"]));
            assert_eq!(r.len(), 2 * count);
            for p in r.chunks(2) {
                assert_eq!(m.get(&p[0]), Some(&p[1]));
            }
        }
        // a large negative count repeats elements and covers the hash
        let items = bulks(&c.cmd(&["HRANDFIELD", key, &format!("-{}", n * 50)]));
        let set: HashSet<_> = items.iter().cloned().collect();
        assert_eq!(set.len(), n, "{key}: negative count covers every field");
        // rough uniformity: no field drawn more than 4x the mean
        let mut hist: HashMap<Vec<u8>, usize> = HashMap::new();
        for i in items {
            *hist.entry(i).or_default() += 1;
        }
        assert!(hist.values().all(|&v| v < 200), "{key}: distribution too skewed: {hist:?}");
        // a small positive count returns different subsets over time
        let mut subsets = HashSet::new();
        for _ in 0..50 {
            let mut s = bulks(&c.cmd(&["HRANDFIELD", key, "3"]));
            s.sort();
            subsets.insert(s);
        }
        assert!(subsets.len() > 5, "{key}: positive count subsets look random");
    }
    // RESP3 shapes: WITHVALUES gives an array of 2-element arrays
    c.cmd(&["HELLO", "3"]);
    let r = c.cmd(&["HRANDFIELD", "small", "-3", "WITHVALUES"]);
    assert!(r.starts_with(b"*3\r\n*2\r\n$"), "{}", support::show(&r));
    assert_eq!(frame_len(&r), Some(r.len()));
    let r = c.cmd(&["HRANDFIELD", "big", "4", "WITHVALUES"]);
    assert!(r.starts_with(b"*4\r\n*2\r\n$"), "{}", support::show(&r));
    let r = c.cmd(&["HRANDFIELD", "nokey", "4", "WITHVALUES"]);
    assert_eq!(r, b"*0\r\n");
    let r = c.cmd(&["HRANDFIELD", "nokey"]);
    assert_eq!(r, b"_\r\n");
}

/// HSCAN on a hashtable-encoded hash returns every element present for
/// the whole scan, even while other fields are added and removed.
#[test]
fn hscan_guarantees() {
    let f = start_ferrite(&[]);
    let mut c = Conn::connect(f.port).unwrap();
    let m = fill(&mut c, "h", 1000);
    for count in ["1", "10", "100"] {
        let mut seen = HashSet::new();
        let mut cursor = b"0".to_vec();
        let mut step = 0;
        loop {
            let r = c.cmd(&[&b"HSCAN"[..], b"h", &cursor, b"COUNT", count.as_bytes()]);
            let items = bulks(&r);
            cursor = items[0].clone();
            for p in items[1..].chunks(2) {
                if p[0].starts_with(b"f") {
                    assert_eq!(m.get(&p[0]), Some(&p[1]));
                }
                seen.insert(p[0].clone());
            }
            // churn: add and delete temporary fields
            step += 1;
            c.cmd(&["HSET", "h", &format!("tmp{step}"), "x"]);
            if step > 3 {
                c.cmd(&["HDEL", "h", &format!("tmp{}", step - 3)]);
            }
            if cursor == b"0" {
                break;
            }
            assert!(step < 100_000);
        }
        for k in m.keys() {
            assert!(seen.contains(k), "count {count}: missed {}", String::from_utf8_lossy(k));
        }
        // MATCH filters
        let r = bulks(&c.cmd(&["HSCAN", "h", "0", "MATCH", "f1*", "COUNT", "100000"]));
        assert_eq!(r[0], b"0");
        assert!(r[1..].chunks(2).all(|p| p[0].starts_with(b"f1")));
        assert_eq!(r[1..].len() / 2, 111);
    }
}

/// Random sequences of hash commands on listpack-sized hashes (so order is
/// deterministic), compared byte for byte with Redis.
#[test]
fn random_hash_commands_match_redis() {
    let keys = ["h1", "h2", "str", "none"];
    let fields = ["f0", "f1", "f2", "f3", "f4", "", "n", "x"];
    let vals = ["1", "-2", "1.5", "abc", "", "9223372036854775807", "0.1", "3e2", " 1"];
    let incrs = ["1", "-1", "0", "x", "9223372036854775807", "1.5", "-0.25", "1e3"];
    for proto in ["2", "3"] {
        let mut p = support::Pair::start();
        p.r.cmd(&["HELLO", proto]);
        p.f.cmd(&["HELLO", proto]);
        p.r.cmd(&["SET", "str", "v"]);
        p.f.cmd(&["SET", "str", "v"]);
        let mut rng = support::Rng(0xD1B54A32D192ED03 + proto.as_bytes()[0] as u64);
        for step in 0..3000 {
            let k = rng.pick(&keys);
            let f = rng.pick(&fields);
            let f2 = rng.pick(&fields);
            let v = rng.pick(&vals);
            let cmd: Vec<&str> = match rng.next() % 18 {
                0 | 1 => vec!["HSET", k, f, v, f2, rng.pick(&vals)],
                2 => vec!["HSETNX", k, f, v],
                3 => vec!["HMSET", k, f, v],
                4 => vec!["HGET", k, f],
                5 => vec!["HMGET", k, f, f2, "nope"],
                6 => vec!["HGETALL", k],
                7 => vec!["HKEYS", k],
                8 => vec!["HVALS", k],
                9 => vec!["HDEL", k, f, f2],
                10 => vec!["HLEN", k],
                11 => vec!["HEXISTS", k, f],
                12 => vec!["HSTRLEN", k, f],
                13 => vec!["HINCRBY", k, f, rng.pick(&incrs)],
                14 => vec!["HINCRBYFLOAT", k, f, rng.pick(&incrs)],
                15 => vec!["HSCAN", k, "0", "MATCH", rng.pick(&["f*", "*", "?", "n"])],
                16 => vec!["HRANDFIELD", k, "100", "WITHVALUES"],
                _ => vec!["HRANDFIELD", k, rng.pick(&["0", "-0", "x"])],
            };
            let a = p.r.cmd(&cmd);
            let b = p.f.cmd(&cmd);
            assert_eq!(support::show(&a), support::show(&b), "RESP{proto} step {step}: {cmd:?}");
        }
    }
}

fn scan_cursor(c: &mut Conn, key: &str) -> (Vec<u8>, usize) {
    let r = bulks(&c.cmd(&["HSCAN", key, "0", "COUNT", "1"]));
    (r[0].clone(), (r.len() - 1) / 2)
}

/// Encoding conversions observed through HSCAN: a listpack hash returns
/// everything with cursor 0 whatever COUNT says; a hashtable honours COUNT.
#[test]
fn encoding_conversions_via_hscan() {
    let f = start_ferrite(&[]);
    let mut c = Conn::connect(f.port).unwrap();
    assert_eq!(c.cmd(&["CONFIG", "SET", "hash-max-listpack-entries", "128"]), b"+OK\r\n");
    fill(&mut c, "h", 128);
    assert_eq!(scan_cursor(&mut c, "h"), (b"0".to_vec(), 128));
    c.cmd(&["HSET", "h", "one-more", "v"]);
    let (cur, n) = scan_cursor(&mut c, "h");
    assert!(cur != b"0" && n < 129, "129 entries must be a hashtable");
    // never converts back
    for i in 0..100 {
        c.cmd(&["HDEL", "h", &format!("f{i}")]);
    }
    let (cur, _) = scan_cursor(&mut c, "h");
    assert!(cur != b"0");
    // value and field length limit (64)
    let v64 = "x".repeat(64);
    let v65 = "x".repeat(65);
    fill(&mut c, "a", 10);
    c.cmd(&["HSET", "a", "f", &v64]);
    c.cmd(&["HSET", "a", &v64, "v"]);
    assert_eq!(scan_cursor(&mut c, "a").0, b"0");
    c.cmd(&["HSET", "a", "f", &v65]);
    assert!(scan_cursor(&mut c, "a").0 != b"0");
    fill(&mut c, "b", 10);
    c.cmd(&["HSETNX", "b", &v65, "v"]);
    assert!(scan_cursor(&mut c, "b").0 != b"0");
    // HSETNX on an existing field does not convert
    fill(&mut c, "d", 10);
    c.cmd(&["HSETNX", "d", "f1", &v65]);
    assert_eq!(scan_cursor(&mut c, "d"), (b"0".to_vec(), 10));
    // HINCRBYFLOAT producing a long value converts
    fill(&mut c, "e", 10);
    c.cmd(&["HINCRBYFLOAT", "e", "n", "1e70"]);
    assert!(scan_cursor(&mut c, "e").0 != b"0");
}
