//! Differential tests: zset commands (transcripts/zset*.txt).
mod support;

#[test]
fn transcripts_zset() {
    support::run_transcripts("zset");
}

use std::collections::{HashMap, HashSet};

/// Parse a reply made of bulk strings / doubles, nested arrays flattened.
fn flat(reply: &[u8]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut rest = reply;
    while !rest.is_empty() {
        let p = rest.windows(2).position(|w| w == b"\r\n").expect("line");
        let (line, r) = (&rest[..p], &rest[p + 2..]);
        rest = r;
        match line[0] {
            b'*' | b'~' | b'%' => {}
            b'$' => {
                let len: usize = std::str::from_utf8(&line[1..]).unwrap().parse().unwrap();
                out.push(rest[..len].to_vec());
                rest = &rest[len + 2..];
            }
            _ => out.push(line[1..].to_vec()),
        }
    }
    out
}

#[test]
fn zrandmember_properties() {
    let p = support::start_ferrite(&[]);
    let mut c = support::Conn::connect(p.port).unwrap();
    for (key, n) in [("small", 5usize), ("big", 300)] {
        let mut args = vec!["ZADD".to_string(), key.to_string()];
        let mut scores = HashMap::new();
        for i in 0..n {
            args.push(format!("{}.5", i));
            args.push(format!("m{i}"));
            scores.insert(format!("m{i}").into_bytes(), format!("{}.5", i).into_bytes());
        }
        c.cmd(&args);
        for count in [1usize, 2, n - 1, n, n + 5] {
            let r = flat(&c.cmd(&["ZRANDMEMBER", key, &count.to_string()]));
            assert_eq!(r.len(), count.min(n));
            let uniq: HashSet<_> = r.iter().cloned().collect();
            assert_eq!(uniq.len(), r.len());
            assert!(r.iter().all(|m| scores.contains_key(m)));
            let r = flat(&c.cmd(&["ZRANDMEMBER", key, &count.to_string(), "WITHSCORES"]));
            assert_eq!(r.len(), 2 * count.min(n));
            for pair in r.chunks(2) {
                assert_eq!(scores.get(&pair[0]), Some(&pair[1]));
            }
        }
        for resp3 in [false, true] {
            if resp3 {
                c.cmd(&["HELLO", "3"]);
            }
            let raw = c.cmd(&["ZRANDMEMBER", key, "-500", "WITHSCORES"]);
            if resp3 {
                assert!(raw.starts_with(b"*500\r\n*2\r\n"), "{}", support::show(&raw[..20]));
            } else {
                assert!(raw.starts_with(b"*1000\r\n"));
            }
            let r = flat(&raw);
            assert_eq!(r.len(), 1000);
            let mut freq: HashMap<Vec<u8>, usize> = HashMap::new();
            for pair in r.chunks(2) {
                let s = String::from_utf8_lossy(&pair[1]).to_string();
                let expect = String::from_utf8_lossy(&scores[&pair[0]]).to_string();
                assert_eq!(s.parse::<f64>().unwrap(), expect.parse::<f64>().unwrap());
                *freq.entry(pair[0].clone()).or_default() += 1;
            }
            if n == 5 {
                assert_eq!(freq.len(), 5, "negative count should reach every member");
                assert!(freq.values().all(|&f| f > 50));
            } else {
                assert!(freq.values().any(|&f| f > 1) || freq.len() == 500);
            }
            if resp3 {
                c.cmd(&["HELLO", "2"]);
            }
        }
        let one = flat(&c.cmd(&["ZRANDMEMBER", key]));
        assert_eq!(one.len(), 1);
        assert!(scores.contains_key(&one[0]));
        let card = flat(&c.cmd(&["ZCARD", key]));
        assert_eq!(card[0], n.to_string().into_bytes());
    }
}

#[test]
fn zscan_big_zset_returns_everything_once_present() {
    let p = support::start_ferrite(&[]);
    let mut c = support::Conn::connect(p.port).unwrap();
    let mut args = vec!["ZADD".to_string(), "z".to_string()];
    for i in 0..1000 {
        args.push(i.to_string());
        args.push(format!("e{i}"));
    }
    c.cmd(&args);
    let mut seen = HashMap::new();
    let mut cursor = b"0".to_vec();
    let mut rounds = 0;
    loop {
        let r = flat(&c.cmd(&[b"ZSCAN".to_vec(), b"z".to_vec(), cursor.clone(), b"COUNT".to_vec(), b"20".to_vec()]));
        cursor = r[0].clone();
        for pair in r[1..].chunks(2) {
            seen.insert(pair[0].clone(), pair[1].clone());
        }
        rounds += 1;
        if cursor == b"0" {
            break;
        }
        c.cmd(&["ZADD", "z", "1", &format!("new{rounds}")]);
        assert!(rounds < 10000);
    }
    assert!(rounds > 20);
    for i in 0..1000 {
        assert_eq!(seen.get(format!("e{i}").as_bytes()), Some(&i.to_string().into_bytes()));
    }
}

/// Random operations against real Redis and ferrite; every reply compared.
#[test]
fn random_ops_match_redis() {
    for members in [40u64, 400] {
        random_ops(members);
    }
}

fn random_ops(members: u64) {
    let mut pair = support::Pair::start();
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut rnd = move |n: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % n
    };
    let scores = ["0", "1", "2", "-1", "1.5", "inf", "-inf", "3", "(1", "(2", "-0", "1e3"];
    let mut script = String::new();
    for _ in 0..(if members > 100 { 8000 } else { 3000 }) {
        let key = ["z1", "z2"][rnd(2) as usize];
        let m = format!("m{}", rnd(members));
        let s = scores[rnd(8) as usize];
        let a = scores[rnd(scores.len() as u64) as usize];
        let b = scores[rnd(scores.len() as u64) as usize];
        let r1 = rnd(50) as i64 - 25;
        let r2 = rnd(50) as i64 - 25;
        let lex = ["-", "+", "[m1", "(m2", "[m3", "(m", "[m39"];
        let la = lex[rnd(lex.len() as u64) as usize];
        let lb = lex[rnd(lex.len() as u64) as usize];
        let o = rnd(5);
        let cnt = rnd(6) as i64 - 1;
        let line = match rnd(26) {
            16 => format!("ZRANGE {key} {b} {a} BYSCORE REV LIMIT {o} {cnt} WITHSCORES"),
            17 => format!("ZRANGE {key} {r1} {r2} REV WITHSCORES"),
            18 => format!("ZREMRANGEBYRANK {key} {r1} {r2}"),
            19 => format!("ZRANGEBYLEX lx {la} {lb} LIMIT {o} {cnt}\nZREVRANGEBYLEX lx {lb} {la} LIMIT {o} {cnt}"),
            20 => format!("ZMPOP 2 z1 z2 MAX COUNT {}", rnd(3) + 1),
            21 => "ZDIFF 2 z1 z2 WITHSCORES".to_string(),
            22 => format!("ZINTERCARD 2 z1 z2 LIMIT {}", rnd(4)),
            23 => format!("ZRANGESTORE z3 {key} {r1} {r2}\nZRANGE z3 0 -1 WITHSCORES"),
            24 => format!("ZRANGE {key} {a} {b} BYSCORE LIMIT {o} {cnt}"),
            25 => format!("ZUNION 2 z1 z2 WEIGHTS {s} 2 AGGREGATE MIN WITHSCORES"),
            0..=3 => format!("ZADD {key} {s} {m} {b_} {m}x", b_ = scores[rnd(8) as usize]),
            4 => format!("ZINCRBY {key} {s} {m}"),
            5 => format!("ZREM {key} {m}"),
            6 => format!("ZRANK {key} {m}"),
            7 => format!("ZRANGE {key} {r1} {r2} WITHSCORES"),
            8 => format!("ZRANGEBYSCORE {key} {a} {b} WITHSCORES LIMIT {} {}", rnd(3), rnd(5) as i64 - 1),
            9 => format!("ZREVRANGEBYSCORE {key} {a} {b}"),
            10 => format!("ZCOUNT {key} {a} {b}"),
            11 => format!("ZUNIONSTORE z3 2 z1 z2 WEIGHTS 1 {s}"),
            12 => "ZINTER 2 z1 z2 AGGREGATE MAX WITHSCORES".to_string(),
            13 => format!("ZPOPMIN {key} {}", rnd(3)),
            14 => format!("ZREVRANK {key} {m}"),
            _ => {
                format!("ZADD lx 0 {m}\nZRANGEBYLEX lx {la} {lb}\nZLEXCOUNT lx {la} {lb}\nZREMRANGEBYLEX lx {lb} {la}")
            }
        };
        script.push_str(&line);
        script.push('\n');
    }
    pair.run("random_ops", &script);
}
