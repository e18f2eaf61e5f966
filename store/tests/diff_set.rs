//! Differential tests: set commands (transcripts/set*.txt).
mod support;

#[test]
fn transcripts_set() {
    support::run_transcripts("set");
}

use std::collections::{HashMap, HashSet};

/// Parse a flat RESP2 array of bulk strings.
fn bulks(reply: &[u8]) -> Vec<Vec<u8>> {
    fn line(b: &[u8]) -> (&[u8], &[u8]) {
        let p = b.windows(2).position(|w| w == b"\r\n").expect("line");
        (&b[..p], &b[p + 2..])
    }
    let (head, mut rest) = line(reply);
    assert!(head[0] == b'*' || head[0] == b'~', "not an array: {}", support::show(reply));
    let n: usize = std::str::from_utf8(&head[1..]).unwrap().parse().unwrap();
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let (h, r) = line(rest);
        assert_eq!(h[0], b'$');
        let len: usize = std::str::from_utf8(&h[1..]).unwrap().parse().unwrap();
        out.push(r[..len].to_vec());
        rest = &r[len + 2..];
    }
    out
}

fn int(reply: &[u8]) -> i64 {
    let s = String::from_utf8_lossy(reply);
    s.trim_start_matches(':').trim().parse().unwrap()
}

#[test]
fn spop_srandmember_properties() {
    let p = support::start_ferrite(&[]);
    let mut c = support::Conn::connect(p.port).unwrap();
    for (key, members) in [
        ("ints", (0..200).map(|i| i.to_string()).collect::<Vec<_>>()),
        ("strs", (0..200).map(|i| format!("m{i}")).collect::<Vec<_>>()),
        ("small", (0..5).map(|i| i.to_string()).collect::<Vec<_>>()),
    ] {
        let all: HashSet<Vec<u8>> = members.iter().map(|m| m.as_bytes().to_vec()).collect();
        let mut args = vec!["SADD".to_string(), key.to_string()];
        args.extend(members.iter().cloned());
        c.cmd(&args);
        let n = members.len();
        // SRANDMEMBER positive count: distinct members, min(count, n) of them.
        for count in [1usize, 3, n - 1, n, n + 10] {
            let r = bulks(&c.cmd(&["SRANDMEMBER", key, &count.to_string()]));
            assert_eq!(r.len(), count.min(n));
            let uniq: HashSet<_> = r.iter().cloned().collect();
            assert_eq!(uniq.len(), r.len(), "duplicates in SRANDMEMBER {count}");
            assert!(r.iter().all(|m| all.contains(m)));
        }
        // Negative count: exactly |count| members, repeats allowed and seen.
        let r = bulks(&c.cmd(&["SRANDMEMBER", key, "-1000"]));
        assert_eq!(r.len(), 1000);
        assert!(r.iter().all(|m| all.contains(m)));
        let uniq: HashSet<_> = r.iter().cloned().collect();
        assert!(uniq.len() < 1000);
        // Roughly uniform: every member of the small set shows up.
        if n == 5 {
            let mut freq: HashMap<Vec<u8>, usize> = HashMap::new();
            for m in r {
                *freq.entry(m).or_default() += 1;
            }
            assert_eq!(freq.len(), 5);
            assert!(freq.values().all(|&f| f > 100), "{freq:?}");
        }
        // Single SRANDMEMBER returns a member and does not remove it.
        let one = c.cmd(&["SRANDMEMBER", key]);
        assert!(all.iter().any(|m| one.windows(m.len()).any(|w| w == m.as_slice())));
        assert_eq!(int(&c.cmd(&["SCARD", key])), n as i64);
        // SPOP: popped members are distinct, removed, and the union is the set.
        let mut popped: HashSet<Vec<u8>> = HashSet::new();
        let first = bulks(&c.cmd(&["SPOP", key, "2"]));
        assert_eq!(first.len(), 2);
        popped.extend(first);
        assert_eq!(int(&c.cmd(&["SCARD", key])), n as i64 - 2);
        let single = c.cmd(&["SPOP", key]);
        let single = bulks(&format!("*1\r\n{}", String::from_utf8_lossy(&single)).into_bytes());
        assert_eq!(single.len(), 1);
        assert!(popped.insert(single[0].clone()), "SPOP returned an already popped member");
        let rest = bulks(&c.cmd(&["SPOP", key, &(n / 2).to_string()]));
        for m in rest {
            assert!(popped.insert(m), "duplicate across pops");
        }
        let rest = bulks(&c.cmd(&["SPOP", key, "100000"]));
        for m in rest {
            assert!(popped.insert(m), "duplicate across pops");
        }
        assert_eq!(popped, all);
        assert_eq!(int(&c.cmd(&["SCARD", key])), 0);
    }
}

#[test]
fn sscan_big_set_returns_everything() {
    let p = support::start_ferrite(&[]);
    let mut c = support::Conn::connect(p.port).unwrap();
    let mut args = vec!["SADD".to_string(), "big".to_string()];
    args.extend((0..1000).map(|i| format!("e{i}")));
    c.cmd(&args);
    let mut seen = HashSet::new();
    let mut cursor = "0".to_string();
    let mut rounds = 0;
    loop {
        let r = c.cmd(&["SSCAN", "big", &cursor, "COUNT", "10"]);
        let text = String::from_utf8_lossy(&r).to_string();
        let lines: Vec<&str> = text.split("\r\n").collect();
        // *2, $len, cursor, *n, then $len/value pairs
        cursor = lines[2].to_string();
        let n: usize = lines[3][1..].parse().unwrap();
        for k in 0..n {
            seen.insert(lines[5 + 2 * k].to_string());
        }
        rounds += 1;
        if cursor == "0" {
            break;
        }
        // Add and remove other members during the iteration.
        c.cmd(&["SADD", "big", &format!("new{rounds}")]);
    }
    assert!(rounds > 50);
    for i in 0..1000 {
        assert!(seen.contains(&format!("e{i}")));
    }
}

/// Random integer-set operations (intset order is deterministic) against
/// real Redis; every reply compared.
#[test]
fn random_intset_ops_match_redis() {
    let mut pair = support::Pair::start();
    let mut seed: u64 = 0x2545_f491_4f6c_dd1d;
    let mut rnd = move |n: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % n
    };
    let keys = ["s1", "s2", "s3"];
    let mut script = String::new();
    for _ in 0..4000 {
        let k = keys[rnd(3) as usize];
        let k2 = keys[rnd(3) as usize];
        let m = rnd(60) as i64 - 20;
        let line = match rnd(12) {
            0..=3 => format!("SADD {k} {m} {}", rnd(60) as i64 - 20),
            4 => format!("SREM {k} {m}"),
            5 => format!("SMEMBERS {k}"),
            6 => format!("SINTER {k} {k2}"),
            7 => format!("SUNION {k} {k2}"),
            8 => format!("SDIFF {k} {k2} s3"),
            9 => format!("SINTERSTORE {k} {k2} s1\nSMEMBERS {k}"),
            10 => format!("SMOVE {k} {k2} {m}\nSCARD {k}"),
            _ => format!("SINTERCARD 2 {k} {k2} LIMIT {}\nSMISMEMBER {k} {m} 1 2", rnd(4)),
        };
        script.push_str(&line);
        script.push('\n');
    }
    pair.run("random_intset_ops", &script);
}
