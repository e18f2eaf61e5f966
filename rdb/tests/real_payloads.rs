//! Payloads recorded from a real redis-server 7.0.15 with DUMP.

use ferrite_rdb::{decode_dump_body, dump_payload, verify_dump_payload, RdbValue};

fn hex(s: &str) -> Vec<u8> {
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
}

fn load(h: &str) -> RdbValue {
    let p = hex(h);
    let body = verify_dump_payload(&p).expect("checksum");
    decode_dump_body(body).expect("decode")
}

fn b(s: &str) -> Vec<u8> {
    s.as_bytes().to_vec()
}

fn sorted(mut v: Vec<Vec<u8>>) -> Vec<Vec<u8>> {
    v.sort();
    v
}

#[test]
fn list_quicklist2_listpack() {
    // RPUSH l a b 1 2 300 -5 70000
    let v = load("1201021c1c000000070081610281620201010201c12c02dffb02f270110104ff0a00de0ee66e09ff6fca");
    assert_eq!(v, RdbValue::List(["a", "b", "1", "2", "300", "-5", "70000"].iter().map(|s| b(s)).collect()));
}

#[test]
fn set_intset() {
    let v = load("0b1c04000000050000009cffffff010000000200000003000000a08601000a006fcdde08d3cf2492");
    assert_eq!(v, RdbValue::Set(["-100", "1", "2", "3", "100000"].iter().map(|s| b(s)).collect()));
}

#[test]
fn set_plain() {
    let RdbValue::Set(m) = load("02030163016101620a00d51bc2f0968e69c3") else { panic!() };
    assert_eq!(sorted(m), vec![b("a"), b("b"), b("c")]);
}

#[test]
fn zset_listpack() {
    let v = load("111a1a0000000600816302dffd02816102010181620283322e3504ff0a00a68a1ab1a9f2dcc2");
    assert_eq!(v, RdbValue::ZSet(vec![(b("c"), -3.0), (b("a"), 1.0), (b("b"), 2.5)]));
}

#[test]
fn zset2_binary_doubles() {
    let v = load("0502016200000000000004400161000000000000f03f0a00f46eb73919767291");
    assert_eq!(v, RdbValue::ZSet(vec![(b("b"), 2.5), (b("a"), 1.0)]));
}

#[test]
fn hash_listpack_and_plain() {
    let v = load("1012120000000400816602817602816e020c01ff0a0001369481d35b8974");
    assert_eq!(v, RdbValue::Hash(vec![(b("f"), b("v")), (b("n"), b("12"))]));
    let v = load("0401016601760a00adf24356b1860efc");
    assert_eq!(v, RdbValue::Hash(vec![(b("f"), b("v"))]));
}

#[test]
fn strings() {
    assert_eq!(load("00c139300a009d94ea2793fc08b9"), RdbValue::Str(b("12345")));
    assert_eq!(load("000568656c6c6f0a006372df766534200a"), RdbValue::Str(b("hello")));
    assert_eq!(load("00c3093c016161e02f000161610a00a67e08b217d09780"), RdbValue::Str(vec![b'a'; 60]));
}

#[test]
fn our_dumps_match_redis_for_simple_values() {
    // Same bytes as Redis for the encodings we write like Redis does.
    assert_eq!(dump_payload(&RdbValue::Str(b("12345"))), hex("00c139300a009d94ea2793fc08b9"));
    assert_eq!(dump_payload(&RdbValue::Str(b("hello"))), hex("000568656c6c6f0a006372df766534200a"));
    assert_eq!(dump_payload(&RdbValue::Hash(vec![(b("f"), b("v"))])), hex("0401016601760a00adf24356b1860efc"));
    assert_eq!(
        dump_payload(&RdbValue::ZSet(vec![(b("b"), 2.5), (b("a"), 1.0)])),
        hex("0502016200000000000004400161000000000000f03f0a00f46eb73919767291")
    );
}

#[test]
fn round_trips() {
    let vals = vec![
        RdbValue::Str(vec![b'x'; 1000]),
        RdbValue::Str(b("-2147483648")),
        RdbValue::Str(b("007")),
        RdbValue::List((0..1000).map(|i| format!("e{i}").into_bytes()).collect()),
        RdbValue::Set((0..300).map(|i| i.to_string().into_bytes()).collect()),
        RdbValue::ZSet(vec![(b("a"), f64::INFINITY), (b("b"), -0.0), (b("c"), 1e300)]),
        RdbValue::Hash((0..600).map(|i| (format!("f{i}").into_bytes(), vec![b'v'; i % 100])).collect()),
    ];
    for v in vals {
        let p = dump_payload(&v);
        let got = decode_dump_body(verify_dump_payload(&p).unwrap()).unwrap();
        assert_eq!(got, v);
    }
}

#[test]
fn corrupt_payloads_are_errors() {
    let good = hex("1201021c1c000000070081610281620201010201c12c02dffb02f270110104ff0a00de0ee66e09ff6fca");
    // Checksum / version.
    let mut p = good.clone();
    p[5] ^= 1;
    assert!(verify_dump_payload(&p).is_none());
    let mut p = good.clone();
    let n = p.len();
    p[n - 10] = 11;
    assert!(verify_dump_payload(&p).is_none());
    assert!(verify_dump_payload(&[0u8; 9]).is_none());
    // Every truncation and every single-byte change of the body decodes to an
    // error or a value, never a panic.
    let body = &good[..good.len() - 10];
    for i in 0..body.len() {
        let _ = decode_dump_body(&body[..i]);
        for x in [0u8, 1, 0x7f, 0x80, 0xfe, 0xff] {
            let mut c = body.to_vec();
            c[i] = x;
            let _ = decode_dump_body(&c);
        }
    }
    // Truncated streams and modules are errors; module type 6 is refused.
    assert!(decode_dump_body(&[15, 0]).is_err());
    assert!(decode_dump_body(&[7, 0]).is_err());
    assert!(matches!(decode_dump_body(&[6, 0]), Err(ferrite_rdb::RdbError::Unsupported(6))));
    // Huge counts with no data fail cleanly without allocating.
    assert!(decode_dump_body(&[2, 0x81, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]).is_err());
    assert!(decode_dump_body(&[0, 0xc3, 0x01, 0x80, 0xff, 0xff, 0xff, 0xff, 0x00]).is_err());
}
