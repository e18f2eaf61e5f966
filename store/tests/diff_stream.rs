//! Differential tests: stream commands (transcripts/stream*.txt), plus
//! property tests for replies that carry times or generated IDs. The
//! property tests run against both a real redis-server and ferrite, so the
//! properties themselves are checked against Redis.
mod support;

use std::time::{Duration, SystemTime, UNIX_EPOCH};
use support::{start_ferrite, start_redis, Conn};

#[test]
fn transcripts_stream() {
    support::run_transcripts("stream");
}

/// A parsed RESP2/RESP3 reply (only what these tests need).
#[derive(Debug, Clone, PartialEq)]
enum V {
    Str(Vec<u8>),
    Err(String),
    Int(i64),
    Nil,
    Arr(Vec<V>),
}

impl V {
    fn arr(&self) -> &[V] {
        match self {
            V::Arr(a) => a,
            other => panic!("not an array: {other:?}"),
        }
    }
    fn int(&self) -> i64 {
        match self {
            V::Int(i) => *i,
            other => panic!("not an int: {other:?}"),
        }
    }
    fn s(&self) -> String {
        match self {
            V::Str(b) => String::from_utf8_lossy(b).into_owned(),
            other => panic!("not a string: {other:?}"),
        }
    }
    /// Value of `key` in a map (RESP3) or flat key/value array (RESP2).
    fn get(&self, key: &str) -> &V {
        let a = self.arr();
        for kv in a.chunks(2) {
            if kv[0] == V::Str(key.as_bytes().to_vec()) {
                return &kv[1];
            }
        }
        panic!("no field {key} in {self:?}")
    }
}

fn parse(b: &[u8]) -> (V, usize) {
    let end = b.windows(2).position(|w| w == b"\r\n").unwrap();
    let head = std::str::from_utf8(&b[1..end]).unwrap();
    let mut pos = end + 2;
    match b[0] {
        b'+' => (V::Str(head.as_bytes().to_vec()), pos),
        b'-' => (V::Err(head.to_string()), pos),
        b':' => (V::Int(head.parse().unwrap()), pos),
        b'_' => (V::Nil, pos),
        b'$' => {
            let n: i64 = head.parse().unwrap();
            if n < 0 {
                return (V::Nil, pos);
            }
            let n = n as usize;
            (V::Str(b[pos..pos + n].to_vec()), pos + n + 2)
        }
        b'*' | b'%' | b'~' => {
            let n: i64 = head.parse().unwrap();
            if n < 0 {
                return (V::Nil, pos);
            }
            let n = if b[0] == b'%' { 2 * n } else { n };
            let mut items = Vec::new();
            for _ in 0..n {
                let (v, used) = parse(&b[pos..]);
                items.push(v);
                pos += used;
            }
            (V::Arr(items), pos)
        }
        c => panic!("unexpected reply type {}", c as char),
    }
}

fn q(c: &mut Conn, line: &str) -> V {
    parse(&c.line(line)).0
}

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as i64
}

fn id_parts(s: &str) -> (u64, u64) {
    let (a, b) = s.split_once('-').expect("ID has a dash");
    (a.parse().unwrap(), b.parse().unwrap())
}

/// Run `f` against a fresh redis-server and a fresh ferrite, in RESP2 and RESP3.
fn both(f: impl Fn(&mut Conn)) {
    for proto in ["2", "3"] {
        let r = start_redis(&[]);
        let fe = start_ferrite(&[]);
        for p in [&r, &fe] {
            let mut c = Conn::connect(p.port).unwrap();
            if proto == "3" {
                c.cmd(&["HELLO", "3"]);
            }
            f(&mut c);
        }
    }
}

#[test]
fn xadd_auto_ids() {
    both(|c| {
        let before = now_ms() as u64;
        let mut last = (0u64, 0u64);
        for i in 0..50 {
            let id = q(c, &format!("XADD s * n {i}")).s();
            let p = id_parts(&id);
            assert!(p > last, "IDs increase: {id}");
            assert!(p.0 >= before && p.0 <= now_ms() as u64 + 1000, "ms part is the time: {id}");
            last = p;
        }
        // ms-* continues the sequence of the same ms, or starts at 0.
        let id = q(c, &format!("XADD s {}-* a b", last.0)).s();
        assert_eq!(id_parts(&id), (last.0, last.1 + 1));
        let id = q(c, &format!("XADD s {}-* a b", last.0 + 10_000_000)).s();
        assert_eq!(id_parts(&id), (last.0 + 10_000_000, 0));
        // Auto IDs never go backwards after an ID in the future.
        let id = q(c, "XADD s * a b").s();
        assert_eq!(id_parts(&id), (last.0 + 10_000_000, 1));
        assert_eq!(q(c, "XLEN s").int(), 53);
        let err = q(c, &format!("XADD s {}-* a b", last.0));
        assert!(matches!(err, V::Err(e) if e.contains("equal or smaller")));
        // Auto IDs on a brand new stream with MAXLEN.
        let id = q(c, "XADD t MAXLEN 1 * a b").s();
        assert!(id_parts(&id).0 >= before);
        q(c, "XADD t MAXLEN 1 * a b");
        assert_eq!(q(c, "XLEN t").int(), 1);
    });
}

#[test]
fn pending_times_and_counts() {
    both(|c| {
        for i in 1..=3 {
            q(c, &format!("XADD s {i}-0 f v"));
        }
        q(c, "XGROUP CREATE s g 0");
        q(c, "XREADGROUP GROUP g alice STREAMS s >");
        std::thread::sleep(Duration::from_millis(500));
        let p = q(c, "XPENDING s g - + 10");
        let p = p.arr();
        assert_eq!(p.len(), 3);
        for e in p {
            let e = e.arr();
            assert_eq!(e[1].s(), "alice");
            let idle = e[2].int();
            assert!((500..30_000).contains(&idle), "idle {idle}");
            assert_eq!(e[3].int(), 1);
        }
        // Reading the history re-delivers: count 2, idle reset.
        q(c, "XREADGROUP GROUP g alice COUNT 1 STREAMS s 0");
        let p = q(c, "XPENDING s g - + 1");
        let e = p.arr()[0].arr();
        assert_eq!(e[0].s(), "1-0");
        assert!(e[2].int() < 400);
        assert_eq!(e[3].int(), 2);
        // IDLE filter: only the two untouched entries are idle enough.
        let p = q(c, "XPENDING s g IDLE 400 - + 10");
        let ids: Vec<String> = p.arr().iter().map(|e| e.arr()[0].s()).collect();
        assert_eq!(ids, vec!["2-0", "3-0"]);
        let p = q(c, "XPENDING s g IDLE 400 - + 10 alice");
        assert_eq!(p.arr().len(), 2);
        let p = q(c, "XPENDING s g IDLE 400 - + 10 bob");
        assert_eq!(p.arr().len(), 0);
        // XCLAIM with a min idle time larger than the idle: nothing moves.
        let r = q(c, "XCLAIM s g bob 100000 2-0 JUSTID");
        assert_eq!(r.arr().len(), 0);
        // XCLAIM IDLE sets the idle time; JUSTID keeps the count.
        let r = q(c, "XCLAIM s g bob 50 2-0 IDLE 500000 JUSTID");
        assert_eq!(r.arr().len(), 1);
        let e = q(c, "XPENDING s g 2-0 2-0 1");
        let e = e.arr()[0].arr();
        assert_eq!(e[1].s(), "bob");
        assert!((500_000..530_000).contains(&e[2].int()), "idle {:?}", e[2]);
        assert_eq!(e[3].int(), 1);
        // XCLAIM TIME sets the delivery time; a normal claim increments the count.
        let t = now_ms() - 700_000;
        q(c, &format!("XCLAIM s g carol 0 2-0 TIME {t}"));
        let e = q(c, "XPENDING s g 2-0 2-0 1");
        let e = e.arr()[0].arr();
        assert_eq!(e[1].s(), "carol");
        assert!((700_000..730_000).contains(&e[2].int()), "idle {:?}", e[2]);
        assert_eq!(e[3].int(), 2);
        // A TIME in the future is clamped to now.
        q(c, &format!("XCLAIM s g carol 0 2-0 TIME {} RETRYCOUNT 9", now_ms() + 1_000_000));
        let e = q(c, "XPENDING s g 2-0 2-0 1");
        let e = e.arr()[0].arr();
        assert!(e[2].int() < 5000);
        assert_eq!(e[3].int(), 9);
        // XAUTOCLAIM honours min-idle.
        std::thread::sleep(Duration::from_millis(60));
        let r = q(c, "XAUTOCLAIM s g dave 50 - JUSTID");
        let r = r.arr();
        assert_eq!(r[0].s(), "0-0");
        let ids: Vec<String> = r[1].arr().iter().map(|v| v.s()).collect();
        assert_eq!(ids, vec!["1-0", "2-0", "3-0"]);
        let r = q(c, "XAUTOCLAIM s g erin 5000 - JUSTID");
        assert_eq!(r.arr()[1].arr().len(), 0);
        // XINFO CONSUMERS idle and pending.
        std::thread::sleep(Duration::from_millis(30));
        let cons = q(c, "XINFO CONSUMERS s g");
        let cons = cons.arr();
        let names: Vec<String> = cons.iter().map(|m| m.get("name").s()).collect();
        assert_eq!(names, vec!["alice", "bob", "carol", "dave"]);
        for m in cons {
            let idle = m.get("idle").int();
            assert!((20..30_000).contains(&idle), "idle {idle}");
        }
        assert_eq!(cons[3].get("pending").int(), 3);
        assert_eq!(cons[0].get("pending").int(), 0);
    });
}

#[test]
fn xinfo_full_times() {
    both(|c| {
        q(c, "XADD s 1-0 a 1");
        q(c, "XADD s 2-0 b 2");
        q(c, "XGROUP CREATE s g 0");
        let t0 = now_ms();
        q(c, "XREADGROUP GROUP g c1 STREAMS s >");
        let info = q(c, "XINFO STREAM s FULL");
        assert_eq!(info.get("length").int(), 2);
        let groups = info.get("groups").arr();
        assert_eq!(groups.len(), 1);
        let g = &groups[0];
        assert_eq!(g.get("name").s(), "g");
        assert_eq!(g.get("last-delivered-id").s(), "2-0");
        assert_eq!(g.get("entries-read").int(), 2);
        assert_eq!(g.get("lag").int(), 0);
        assert_eq!(g.get("pel-count").int(), 2);
        let pending = g.get("pending").arr();
        assert_eq!(pending.len(), 2);
        let p0 = pending[0].arr();
        assert_eq!(p0[0].s(), "1-0");
        assert_eq!(p0[1].s(), "c1");
        assert!((p0[2].int() - t0).abs() < 5000);
        assert_eq!(p0[3].int(), 1);
        let cons = g.get("consumers").arr();
        assert_eq!(cons[0].get("name").s(), "c1");
        assert!((cons[0].get("seen-time").int() - t0).abs() < 5000);
        assert_eq!(cons[0].get("pel-count").int(), 2);
        let cp = cons[0].get("pending").arr();
        assert_eq!(cp.len(), 2);
        assert_eq!(cp[1].arr()[0].s(), "2-0");
        assert_eq!(cp[1].arr()[2].int(), 1);
        // COUNT limits entries and both PEL listings.
        let info = q(c, "XINFO STREAM s FULL COUNT 1");
        assert_eq!(info.get("entries").arr().len(), 1);
        let g = &info.get("groups").arr()[0];
        assert_eq!(g.get("pending").arr().len(), 1);
        assert_eq!(g.get("consumers").arr()[0].get("pending").arr().len(), 1);
    });
}

#[test]
fn xread_block() {
    // Data available: BLOCK replies at once like Redis.
    both(|c| {
        q(c, "XADD s 1-0 a 1");
        let r = q(c, "XREAD BLOCK 100 STREAMS s 0");
        assert_ne!(r, V::Nil);
        q(c, "XGROUP CREATE s g 0");
        let r = q(c, "XREADGROUP GROUP g c BLOCK 100 STREAMS s >");
        assert_ne!(r, V::Nil);
        // No data: the timeout reply is the null array.
        let r = q(c, "XREAD BLOCK 50 STREAMS s $");
        assert_eq!(r, V::Nil);
        let r = q(c, "XREADGROUP GROUP g c BLOCK 50 STREAMS s >");
        assert_eq!(r, V::Nil);
    });
}

#[test]
fn many_entries_and_big_counts() {
    let fe = start_ferrite(&[]);
    let mut c = Conn::connect(fe.port).unwrap();
    for i in 1..=1000 {
        q(&mut c, &format!("XADD s {i}-0 f {i}"));
    }
    let r = q(&mut c, "XRANGE s - + COUNT 4611686018427387904");
    assert_eq!(r.arr().len(), 1000);
    let r = q(&mut c, "XREAD COUNT 4611686018427387904 STREAMS s 0");
    assert_eq!(r.arr()[0].arr()[1].arr().len(), 1000);
    q(&mut c, "XGROUP CREATE s g 0");
    let r = q(&mut c, "XREADGROUP GROUP g c COUNT 9223372036854775807 STREAMS s >");
    assert_eq!(r.arr()[0].arr()[1].arr().len(), 1000);
    let r = q(&mut c, "XPENDING s g - + 9223372036854775807");
    assert_eq!(r.arr().len(), 1000);
    let r = q(&mut c, "XAUTOCLAIM s g d 0 - COUNT 576460752303423487 JUSTID");
    assert_eq!(r.arr()[1].arr().len(), 1000);
    let r = q(&mut c, "XINFO STREAM s FULL COUNT 0");
    assert_eq!(r.get("entries").arr().len(), 1000);
    assert_eq!(q(&mut c, "XTRIM s MAXLEN ~ 0").int(), 1000);
    assert_eq!(q(&mut c, "XLEN s").int(), 0);
}

/// Redis's "XINFO FULL output" test (stream-cgroups.tcl).
#[test]
fn xinfo_full_output_redis_case() {
    both(|c| {
        for (i, f) in ["a", "b", "c", "e", "f"].iter().enumerate() {
            q(c, &format!("XADD x {} {f} 1", 100 + i));
        }
        q(c, "XGROUP CREATE x g1 0");
        q(c, "XGROUP CREATE x g2 0");
        q(c, "XREADGROUP GROUP g1 Alice COUNT 1 STREAMS x >");
        q(c, "XREADGROUP GROUP g1 Bob COUNT 1 STREAMS x >");
        q(c, "XREADGROUP GROUP g1 Bob NOACK COUNT 1 STREAMS x >");
        q(c, "XREADGROUP GROUP g2 Charlie COUNT 4 STREAMS x >");
        q(c, "XDEL x 103");
        let reply = q(c, "XINFO STREAM x FULL");
        assert_eq!(reply.get("length").int(), 4);
        let ids: Vec<String> = reply.get("entries").arr().iter().map(|e| e.arr()[0].s()).collect();
        assert_eq!(ids, vec!["100-0", "101-0", "102-0", "104-0"]);
        let groups = reply.get("groups").arr();
        assert_eq!(groups[0].get("name").s(), "g1");
        assert_eq!(groups[0].get("pending").arr()[0].arr()[0].s(), "100-0");
        assert_eq!(groups[0].get("pel-count").int(), 2);
        assert_eq!(groups[0].get("entries-read").int(), 3);
        let alice = &groups[0].get("consumers").arr()[0];
        assert_eq!(alice.get("name").s(), "Alice");
        assert_eq!(alice.get("pending").arr()[0].arr()[0].s(), "100-0");
        assert_eq!(groups[1].get("name").s(), "g2");
        let charlie = &groups[1].get("consumers").arr()[0];
        assert_eq!(charlie.get("name").s(), "Charlie");
        let cp = charlie.get("pending").arr();
        assert_eq!(cp[0].arr()[0].s(), "100-0");
        assert_eq!(cp[1].arr()[0].s(), "101-0");
        assert_eq!(groups[1].get("lag"), &V::Nil);
        let reply = q(c, "XINFO STREAM x FULL COUNT 1");
        assert_eq!(reply.get("length").int(), 4);
        assert_eq!(reply.get("entries").arr().len(), 1);
    });
}
