//! Differential tests: string and bitmap commands.
mod support;

#[test]
fn transcripts_string_basic() {
    support::run_transcripts("string_basic");
}

#[test]
fn transcripts_string_getex() {
    support::run_transcripts("string_getex");
}

#[test]
fn transcripts_string_range() {
    support::run_transcripts("string_range");
}

#[test]
fn transcripts_string_float() {
    support::run_transcripts("string_float");
}

#[test]
fn transcripts_string_lcs() {
    support::run_transcripts("string_lcs");
}

#[test]
fn transcripts_string_bitmap() {
    support::run_transcripts("string_bitmap");
}

#[test]
fn transcripts_string_bitop() {
    support::run_transcripts("string_bitop");
}

#[test]
fn transcripts_string_bitfield() {
    support::run_transcripts("string_bitfield");
}

#[test]
fn transcripts_string_wrongtype() {
    support::run_transcripts("string_wrongtype");
}

#[test]
fn transcripts_string_ttl() {
    support::run_transcripts("string_ttl");
}

/// Size limits with a small `proto-max-bulk-len` (1 MB) on both servers.
#[test]
fn small_proto_max_bulk_len() {
    let script = r#"
SETRANGE k 1048575 x
STRLEN k
SETRANGE k 1048576 x
SETRANGE k 1048575 xy
SETRANGE k 2000000 ""
SETRANGE new 1048576 x
SETRANGE new 1048576 ""
GET new
APPEND k ""
APPEND k y
STRLEN k
SET small abc
SETRANGE small 1048574 xyz
SETBIT b 8388607 1
SETBIT b 8388608 1
GETBIT b 8388607
GETBIT b 8388608
STRLEN b
BITFIELD b2 SET u8 8388600 255
BITFIELD b2 SET u8 8388601 255
BITFIELD b2 GET u8 #1048575
BITFIELD b2 GET u8 #1048576
BITFIELD b2 GET i64 8388607
BITFIELD_RO b2 GET u8 8388608
SETRANGE l1 500 x
SETRANGE l2 500 y
LCS l1 l2 LEN
SETRANGE l1 600 x
SETRANGE l2 600 y
LCS l1 l2
LCS l1 l2 LEN
LCS l1 nokey
"#;
    for proto in ["2", "3"] {
        let mut p =
            support::Pair::start_with(&["--proto-max-bulk-len", "1048576"], &["--proto-max-bulk-len", "1048576"]);
        if proto == "3" {
            p.r.cmd(&["HELLO", "3"]);
            p.f.cmd(&["HELLO", "3"]);
        }
        p.run(&format!("small_proto_max_bulk_len (RESP{proto})"), script);
    }
}

fn info_field(c: &mut support::Conn, section: &str, field: &str) -> Option<i64> {
    let r = c.cmd(&["INFO", section]);
    let s = String::from_utf8_lossy(&r).to_string();
    let prefix = format!("{field}:");
    s.lines().find_map(|l| l.strip_prefix(prefix.as_str())).and_then(|v| v.trim().parse().ok())
}

/// Dirty counter, keyspace hits, keyspace misses.
fn counters(c: &mut support::Conn) -> [i64; 3] {
    [
        info_field(c, "persistence", "rdb_changes_since_last_save").unwrap_or(-1),
        info_field(c, "stats", "keyspace_hits").unwrap_or(-1),
        info_field(c, "stats", "keyspace_misses").unwrap_or(-1),
    ]
}

fn dirty(c: &mut support::Conn) -> Option<i64> {
    info_field(c, "persistence", "rdb_changes_since_last_save")
}

/// The dirty counter (`rdb_changes_since_last_save`) moves like Redis's
/// after every command. Needs INFO (server family).
#[test]
fn dirty_counter_matches() {
    let mut p = support::Pair::start();
    assert!(dirty(&mut p.f).is_some(), "ferrite INFO persistence lacks rdb_changes_since_last_save");
    let script = [
        "SET a 1",
        "SET a 1 NX",
        "SETNX a 2",
        "INCR a",
        "INCR newint",
        "INCRBYFLOAT fl 1.5",
        "INCRBYFLOAT newfl 1",
        "APPEND a x",
        "APPEND newapp x",
        "APPEND a \"\"",
        "SETRANGE r 0 abc",
        "SETRANGE r 0 abc",
        "SETRANGE r 1 \"\"",
        "SETRANGE none 1 \"\"",
        "SETBIT foo 0 0",
        "BITFIELD foo2 SET i5 0 0",
        "SETBIT foo 0 0",
        "BITFIELD foo2 SET i5 0 0",
        "SETBIT foo 0 1",
        "SETBIT foo 0 1",
        "SETBIT foo 0 0",
        "BITFIELD foo2 SET i5 0 1",
        "BITFIELD foo2 SET i5 0 1",
        "BITFIELD foo2 SET i5 0 0",
        "BITFIELD foo3 INCRBY i5 0 1",
        "BITFIELD foo3 INCRBY i5 0 1",
        "BITFIELD foo3 INCRBY i5 0 1 INCRBY i5 0 1 SET i5 0 1 GET u8 0",
        "SETBIT foo 90 0",
        "BITFIELD foo2 SET i5 90 0",
        "BITFIELD foo2 GET i5 90",
        "BITOP OR dst foo foo2",
        "BITOP OR dst none none2",
        "BITOP OR dst none none2",
        "GETEX a EX 100",
        "GETEX a PERSIST",
        "GETEX a PERSIST",
        "GETEX a",
        "GETEX a PXAT 1",
        "GETDEL r",
        "GETDEL r",
        "GETSET g 1",
        "MSET m1 1 m2 2 m3 3",
        "MSETNX m1 1 m4 4",
        "MSETNX m5 1 m4 4",
        "SET x 1 GET",
        "SETEX y 100 v",
        "PSETEX y 100000 v",
        "DECRBY a2 5",
        "SET n 1",
        "INCRBY n abc",
        "LCS a n",
        "LCS a none",
        "GETRANGE a 0 -1",
        "GETRANGE none 0 -1",
        "STRLEN a",
        "STRLEN none",
        "GET a",
        "GET none",
        "MGET a none n",
        "GETEX none",
        "GETBIT foo 0",
        "GETBIT none 0",
        "BITCOUNT foo",
        "BITCOUNT none",
        "BITPOS foo 1",
        "BITPOS none 1",
        "BITOP AND dst2 foo none",
        "BITFIELD foo GET u8 0",
        "BITFIELD none GET u8 0",
        "BITFIELD_RO foo GET u8 0",
        "BITFIELD foo SET u8 0 1",
        "SET none2 v GET",
        "SET n v XX",
        "SETNX n v",
        "INCRBYFLOAT nf 1",
        "APPEND n x",
        "SETRANGE n 0 x",
    ];
    for line in script {
        let args = support::split(line);
        let (r0, f0) = (counters(&mut p.r), counters(&mut p.f));
        let a = p.r.cmd(&args);
        let b = p.f.cmd(&args);
        assert_eq!(support::show(&a), support::show(&b), "reply of {line}");
        let (r1, f1) = (counters(&mut p.r), counters(&mut p.f));
        for (i, what) in ["dirty", "keyspace_hits", "keyspace_misses"].iter().enumerate() {
            if f0[i] >= 0 {
                assert_eq!(r1[i] - r0[i], f1[i] - f0[i], "{what} delta of {line}");
            }
        }
    }
}

fn both(p: &mut support::Pair, args: &[Vec<u8>]) {
    let a = p.r.cmd(args);
    let b = p.f.cmd(args);
    if a != b {
        let line: Vec<String> = args.iter().map(|x| format!("{:?}", String::from_utf8_lossy(x))).collect();
        panic!("\n{}\n  redis:   {}\n  ferrite: {}\n", line.join(" "), support::show(&a), support::show(&b));
    }
}

fn a(s: &str) -> Vec<u8> {
    s.as_bytes().to_vec()
}

/// Random (seeded) differential testing of range and bit commands.
#[test]
fn fuzz_ranges_and_bits() {
    let mut p = support::Pair::start();
    let mut r = support::Rng(0x9E3779B97F4A7C15);
    let bytes_alpha: Vec<u8> = vec![0x00, 0xff, 0x0f, 0xf0, 0x80, 0x01, 0x55, 0xaa, b'a', b'7'];
    for round in 0..1500 {
        let key = format!("k{}", r.below(4));
        let v = r.bytes(40, &bytes_alpha);
        match round % 10 {
            0 => both(&mut p, &[a("SET"), a(&key), v]),
            1 => both(&mut p, &[a("SETRANGE"), a(&key), a(&r.range(0, 50).to_string()), v]),
            2 => both(&mut p, &[a("SETBIT"), a(&key), a(&r.range(0, 400).to_string()), a(&r.range(0, 1).to_string())]),
            3 => both(&mut p, &[a("SET"), a(&key), a(&r.range(-100000, 100000).to_string())]),
            _ => {}
        }
        let (s, e) = (r.range(-60, 60).to_string(), r.range(-60, 60).to_string());
        let (bs, be) = (r.range(-400, 400).to_string(), r.range(-400, 400).to_string());
        let bit = r.range(0, 1).to_string();
        both(&mut p, &[a("GETRANGE"), a(&key), a(&s), a(&e)]);
        both(&mut p, &[a("BITCOUNT"), a(&key)]);
        both(&mut p, &[a("BITCOUNT"), a(&key), a(&s), a(&e)]);
        both(&mut p, &[a("BITCOUNT"), a(&key), a(&bs), a(&be), a("BIT")]);
        both(&mut p, &[a("BITPOS"), a(&key), a(&bit)]);
        both(&mut p, &[a("BITPOS"), a(&key), a(&bit), a(&s)]);
        both(&mut p, &[a("BITPOS"), a(&key), a(&bit), a(&s), a(&e)]);
        both(&mut p, &[a("BITPOS"), a(&key), a(&bit), a(&s), a(&e), a("BYTE")]);
        both(&mut p, &[a("BITPOS"), a(&key), a(&bit), a(&bs), a(&be), a("BIT")]);
        both(&mut p, &[a("GETBIT"), a(&key), a(&r.range(0, 400).to_string())]);
        if round % 3 == 0 {
            let op = ["AND", "OR", "XOR", "NOT"][r.below(4) as usize];
            let mut cmd = vec![a("BITOP"), a(op), a("dst")];
            let n = if op == "NOT" { 1 } else { 1 + r.below(4) };
            for _ in 0..n {
                cmd.push(a(&format!("k{}", r.below(5))));
            }
            both(&mut p, &cmd);
            both(&mut p, &[a("GET"), a("dst")]);
        }
    }
}

/// Random (seeded) differential testing of BITFIELD arithmetic.
#[test]
fn fuzz_bitfield() {
    let mut p = support::Pair::start();
    let mut r = support::Rng(0xD1B54A32D192ED03);
    let specials: [i64; 12] = [0, 1, -1, 127, 128, -128, 255, 256, i64::MAX, i64::MIN, 1 << 32, -(1 << 40)];
    for _ in 0..1500 {
        let mut cmd = vec![a("BITFIELD"), a(&format!("b{}", r.below(3)))];
        for _ in 0..1 + r.below(4) {
            let signed = r.below(2) == 0;
            let bits = if signed { r.range(1, 64) } else { r.range(1, 63) };
            let ty = format!("{}{}", if signed { "i" } else { "u" }, bits);
            let off = if r.below(4) == 0 { format!("#{}", r.below(6)) } else { r.below(100).to_string() };
            let val = if r.below(2) == 0 {
                specials[r.below(specials.len() as u64) as usize]
            } else {
                r.next() as i64 >> r.below(64)
            };
            match r.below(5) {
                0 => cmd.extend([a("GET"), a(&ty), a(&off)]),
                1 => cmd.extend([a("SET"), a(&ty), a(&off), a(&val.to_string())]),
                2 => cmd.extend([a("INCRBY"), a(&ty), a(&off), a(&val.to_string())]),
                _ => cmd.extend([a("OVERFLOW"), a(["WRAP", "SAT", "FAIL"][r.below(3) as usize])]),
            }
        }
        both(&mut p, &cmd);
    }
    for k in ["b0", "b1", "b2"] {
        both(&mut p, &[a("GET"), a(k)]);
    }
}

/// Random (seeded) differential testing of LCS on small alphabets.
#[test]
fn fuzz_lcs() {
    let mut p = support::Pair::start();
    let mut r = support::Rng(0xA0761D6478BD642F);
    for _ in 0..400 {
        let x = r.bytes(30, b"abc");
        let y = r.bytes(30, b"abcd");
        both(&mut p, &[a("SET"), a("x"), x]);
        both(&mut p, &[a("SET"), a("y"), y]);
        both(&mut p, &[a("LCS"), a("x"), a("y")]);
        both(&mut p, &[a("LCS"), a("x"), a("y"), a("LEN")]);
        both(&mut p, &[a("LCS"), a("x"), a("y"), a("IDX"), a("WITHMATCHLEN")]);
        let m = r.range(0, 4).to_string();
        both(&mut p, &[a("LCS"), a("y"), a("x"), a("IDX"), a("MINMATCHLEN"), a(&m)]);
    }
}

/// Random (seeded) differential testing of INCRBYFLOAT formatting.
#[test]
fn fuzz_incrbyfloat() {
    let mut p = support::Pair::start();
    let mut r = support::Rng(0xE7037ED1A0B428DB);
    for i in 0..600 {
        let key = format!("f{}", i % 7);
        let mant = (r.next() as i64 >> r.below(60)).to_string();
        let incr = match r.below(4) {
            0 => mant,
            1 => format!("{mant}e{}", r.range(-30, 30)),
            2 => format!("0.{}", r.below(1_000_000_000)),
            _ => format!("-{}.{}", r.below(1000), r.below(1000)),
        };
        both(&mut p, &[a("INCRBYFLOAT"), a(&key), a(&incr)]);
        if i % 50 == 0 {
            both(&mut p, &[a("SET"), a(&key), a(&r.range(-1000, 1000).to_string())]);
        }
    }
}

#[test]
fn transcripts_string_watch() {
    support::run_transcripts("string_watch");
}

#[test]
fn transcripts_string_arity() {
    support::run_transcripts("string_arity");
}
