//! Whole RDB files against a real redis-server 7.0: files Redis SAVEs are
//! read with the streaming parser fed in random (often tiny) chunks and
//! compared with what commands return; files written with `RdbWriter` are
//! loaded by Redis and checked through commands. Also truncation at every
//! cut point and forged huge lengths.

mod common;

use common::{start_redis, Client, Reply, Rng, TempDir};
use ferrite_rdb::file::{Event, RdbFileReader, RdbParser, RdbWriter, StandardAux};
use ferrite_rdb::{
    types, LruInfo, RdbConsumer, RdbConsumerGroup, RdbError, RdbPendingEntry, RdbStream, RdbStreamEntry, RdbValue,
    StreamId,
};
use std::collections::{BTreeMap, HashMap};

#[derive(Debug, Clone)]
struct Key {
    rdb_type: u8,
    expire: Option<i64>,
    lru: LruInfo,
    value: Option<RdbValue>,
    parts: usize,
}

#[derive(Debug, Default)]
struct Parsed {
    version: u32,
    aux: Vec<(Vec<u8>, Vec<u8>)>,
    functions: Vec<Vec<u8>>,
    dbs: BTreeMap<u64, BTreeMap<Vec<u8>, Key>>,
    checksum_ok: bool,
    max_buffered: usize,
    max_part_elems: usize,
    events: usize,
}

fn part_len(v: &RdbValue) -> usize {
    match v {
        RdbValue::List(x) | RdbValue::Set(x) => x.len(),
        RdbValue::ZSet(x) => x.len(),
        RdbValue::Hash(x) => x.len(),
        RdbValue::Stream(s) => s.entries.len(),
        _ => 1,
    }
}

fn merge(acc: &mut Option<RdbValue>, v: RdbValue) {
    match (acc.as_mut(), v) {
        (None, v) => *acc = Some(v),
        (Some(RdbValue::List(a)), RdbValue::List(b)) => a.extend(b),
        (Some(RdbValue::Set(a)), RdbValue::Set(b)) => a.extend(b),
        (Some(RdbValue::ZSet(a)), RdbValue::ZSet(b)) => a.extend(b),
        (Some(RdbValue::Hash(a)), RdbValue::Hash(b)) => a.extend(b),
        (Some(RdbValue::Stream(a)), RdbValue::Stream(b)) => {
            let b = *b;
            a.entries.extend(b.entries);
            a.node_sizes.extend(b.node_sizes);
            a.length = b.length;
            a.last_id = b.last_id;
            a.first_id = b.first_id;
            a.max_deleted_entry_id = b.max_deleted_entry_id;
            a.entries_added = b.entries_added;
            a.groups = b.groups;
        }
        (Some(a), b) => panic!("parts of different types: {a:?} / {b:?}"),
    }
}

/// Feed `data` in chunks of 1..=max_chunk bytes (chosen by `rng`).
fn parse_chunked(data: &[u8], rng: &mut Rng, max_chunk: u64) -> Result<Parsed, RdbError> {
    let mut p = RdbParser::new();
    let mut out = Parsed::default();
    let mut at = 0;
    let mut db = 0u64;
    let mut cur: Option<(Vec<u8>, Key)> = None;
    loop {
        match p.next_event()? {
            Some(ev) => {
                out.events += 1;
                match ev {
                    Event::Header(v) => out.version = v,
                    Event::Aux(k, v) => out.aux.push((k, v)),
                    Event::SelectDb(n) => db = n,
                    Event::ResizeDb { .. } => {}
                    Event::Function(c) => out.functions.push(c),
                    Event::ModuleAux(_) => panic!("no modules here"),
                    Event::Key { key, expire_ms, lru, rdb_type } => {
                        assert!(cur.is_none(), "Key inside a key");
                        cur = Some((key, Key { rdb_type, expire: expire_ms, lru, value: None, parts: 0 }));
                    }
                    Event::Part(v) => {
                        let (_, k) = cur.as_mut().expect("Part outside a key");
                        out.max_part_elems = out.max_part_elems.max(part_len(&v));
                        k.parts += 1;
                        merge(&mut k.value, v);
                    }
                    Event::EndKey => {
                        let (key, k) = cur.take().expect("EndKey outside a key");
                        out.dbs.entry(db).or_default().insert(key, k);
                    }
                    Event::Eof { checksum_ok, .. } => out.checksum_ok = checksum_ok,
                }
            }
            None => {
                if p.is_done() {
                    break;
                }
                if at >= data.len() {
                    p.end_of_input();
                    continue;
                }
                let n = (1 + rng.below(max_chunk) as usize).min(data.len() - at);
                p.feed(&data[at..at + n]);
                at += n;
                out.max_buffered = out.max_buffered.max(p.buffered());
            }
        }
    }
    p.finish()?;
    Ok(out)
}

fn sorted<T: Ord>(mut v: Vec<T>) -> Vec<T> {
    v.sort();
    v
}

fn kv(r: &Reply) -> HashMap<String, Reply> {
    let a = r.arr();
    let mut m = HashMap::new();
    for p in a.chunks(2) {
        m.insert(String::from_utf8(p[0].bulk()).unwrap(), p[1].clone());
    }
    m
}

fn id_str(id: StreamId) -> Vec<u8> {
    format!("{}-{}", id.ms, id.seq).into_bytes()
}

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64
}

/// Check every key of `dbs` (and no other key) through commands.
fn compare_with_redis(c: &mut Client, dbs: &BTreeMap<u64, BTreeMap<Vec<u8>, Key>>, check_nodes: bool) {
    for db in 0..16u64 {
        c.cmd(&["SELECT", &db.to_string()]);
        let keys = sorted(c.run("KEYS *").bulks());
        let empty = BTreeMap::new();
        let want = dbs.get(&db).unwrap_or(&empty);
        assert_eq!(keys, want.keys().cloned().collect::<Vec<_>>(), "keys of db {db}");
        for (key, k) in want {
            let name = String::from_utf8_lossy(key).to_string();
            let exp = c.cmd(&[b"PEXPIRETIME".as_slice(), key]).int();
            assert_eq!(exp, k.expire.unwrap_or(-1), "expire of {name}");
            let v = k.value.as_ref().unwrap_or_else(|| panic!("{name} has no value"));
            let ty = c.cmd(&[b"TYPE".as_slice(), key]).bulk();
            match v {
                RdbValue::Str(s) => {
                    assert_eq!(ty, b"string", "{name}");
                    assert_eq!(&c.cmd(&[b"GET".as_slice(), key]).bulk(), s, "{name}");
                }
                RdbValue::List(items) => {
                    assert_eq!(ty, b"list", "{name}");
                    assert_eq!(&c.cmd(&[b"LRANGE".as_slice(), key, b"0", b"-1"]).bulks(), items, "{name}");
                }
                RdbValue::Set(m) => {
                    assert_eq!(ty, b"set", "{name}");
                    let got = sorted(c.cmd(&[b"SMEMBERS".as_slice(), key]).bulks());
                    assert_eq!(got, sorted(m.clone()), "{name}");
                }
                RdbValue::ZSet(z) => {
                    assert_eq!(ty, b"zset", "{name}");
                    let got = c.cmd(&[b"ZRANGE".as_slice(), key, b"0", b"-1", b"WITHSCORES"]).bulks();
                    let mut want: Vec<(f64, Vec<u8>)> = z.iter().map(|(m, s)| (*s, m.clone())).collect();
                    want.sort_by(|a, b| a.0.partial_cmp(&b.0).unwrap().then(a.1.cmp(&b.1)));
                    assert_eq!(got.len(), want.len() * 2, "{name}");
                    for (i, (s, m)) in want.iter().enumerate() {
                        assert_eq!(&got[i * 2], m, "{name}");
                        let gs: f64 = match std::str::from_utf8(&got[i * 2 + 1]).unwrap() {
                            "inf" => f64::INFINITY,
                            "-inf" => f64::NEG_INFINITY,
                            x => x.parse().unwrap(),
                        };
                        assert_eq!(gs, *s, "{name} score of {m:?}");
                    }
                }
                RdbValue::Hash(h) => {
                    assert_eq!(ty, b"hash", "{name}");
                    let got = c.cmd(&[b"HGETALL".as_slice(), key]).bulks();
                    let got: Vec<(Vec<u8>, Vec<u8>)> = got.chunks(2).map(|p| (p[0].clone(), p[1].clone())).collect();
                    assert_eq!(sorted(got), sorted(h.clone()), "{name}");
                }
                RdbValue::Stream(s) => {
                    assert_eq!(ty, b"stream", "{name}");
                    compare_stream(c, key, s, check_nodes);
                }
                RdbValue::Module(_) => panic!("module value"),
            }
        }
    }
    c.run("SELECT 0");
}

fn compare_stream(c: &mut Client, key: &[u8], s: &RdbStream, check_nodes: bool) {
    let name = String::from_utf8_lossy(key).to_string();
    let got = c.cmd(&[b"XRANGE".as_slice(), key, b"-", b"+"]);
    let live: Vec<&RdbStreamEntry> = s.entries.iter().filter(|e| !e.deleted).collect();
    assert_eq!(got.arr().len(), live.len(), "{name} XRANGE length");
    for (g, e) in got.arr().iter().zip(&live) {
        let g = g.arr();
        assert_eq!(g[0].bulk(), id_str(e.id), "{name}");
        let fv = g[1].bulks();
        let want: Vec<Vec<u8>> = e.fields.iter().flat_map(|(f, v)| [f.clone(), v.clone()]).collect();
        assert_eq!(fv, want, "{name} fields of {:?}", e.id);
    }
    let info = kv(&c.cmd(&[b"XINFO".as_slice(), b"STREAM", key]));
    assert_eq!(info["length"].int() as u64, s.length, "{name}");
    assert_eq!(info["last-generated-id"].bulk(), id_str(s.last_id), "{name}");
    assert_eq!(info["max-deleted-entry-id"].bulk(), id_str(s.max_deleted_entry_id), "{name}");
    assert_eq!(info["entries-added"].int() as u64, s.entries_added, "{name}");
    assert_eq!(info["recorded-first-entry-id"].bulk(), id_str(s.first_id), "{name}");
    assert_eq!(info["groups"].int() as usize, s.groups.len(), "{name}");
    if check_nodes {
        assert_eq!(info["radix-tree-keys"].int() as usize, s.node_sizes.len(), "{name} nodes");
    }
    let groups = c.cmd(&[b"XINFO".as_slice(), b"GROUPS", key]);
    let now = now_ms();
    // Redis keeps groups and consumers sorted by name.
    let mut want_groups = s.groups.clone();
    want_groups.sort_by(|a, b| a.name.cmp(&b.name));
    for g in want_groups.iter_mut() {
        g.consumers.sort_by(|a, b| a.name.cmp(&b.name));
    }
    for (gr, g) in groups.arr().iter().zip(&want_groups) {
        let gi = kv(gr);
        assert_eq!(gi["name"].bulk(), g.name, "{name}");
        assert_eq!(gi["last-delivered-id"].bulk(), id_str(g.last_id), "{name}");
        assert_eq!(gi["pending"].int() as usize, g.pel.len(), "{name}");
        assert_eq!(gi["consumers"].int() as usize, g.consumers.len(), "{name}");
        match &gi["entries-read"] {
            Reply::Nil => assert_eq!(g.entries_read, -1, "{name}"),
            r => assert_eq!(r.int(), g.entries_read, "{name}"),
        }
        let pend = c.cmd(&[b"XPENDING".as_slice(), key, &g.name, b"-", b"+", b"1000000"]);
        assert_eq!(pend.arr().len(), g.pel.len(), "{name}");
        for (pr, pe) in pend.arr().iter().zip(&g.pel) {
            let pr = pr.arr();
            assert_eq!(pr[0].bulk(), id_str(pe.id), "{name}");
            let owner = g.consumers.iter().find(|c| c.pending.contains(&pe.id)).expect("owner");
            assert_eq!(pr[1].bulk(), owner.name, "{name}");
            let idle = pr[2].int();
            assert!((idle - (now - pe.delivery_time_ms)).abs() < 60_000, "{name} idle {idle}");
            assert_eq!(pr[3].int() as u64, pe.delivery_count, "{name}");
        }
        let cons = c.cmd(&[b"XINFO".as_slice(), b"CONSUMERS", key, &g.name]);
        assert_eq!(cons.arr().len(), g.consumers.len(), "{name}");
        for (cr, co) in cons.arr().iter().zip(&g.consumers) {
            let ci = kv(cr);
            assert_eq!(ci["name"].bulk(), co.name, "{name}");
            assert_eq!(ci["pending"].int() as usize, co.pending.len(), "{name}");
            let idle = ci["idle"].int();
            assert!((idle - (now - co.seen_time_ms)).abs() < 60_000, "{name} consumer idle {idle}");
        }
    }
}

fn words(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}{i}")).collect()
}

fn cmdv(c: &mut Client, head: &[&str], rest: &[String]) -> Reply {
    let mut a: Vec<Vec<u8>> = head.iter().map(|s| s.as_bytes().to_vec()).collect();
    a.extend(rest.iter().map(|s| s.as_bytes().to_vec()));
    let r = c.cmd(&a);
    assert!(!matches!(r, Reply::Err(_)), "{head:?}: {r:?}");
    r
}

/// Every type and encoding Redis 7.0 writes, in three dbs, with TTLs.
fn build_dataset(c: &mut Client) {
    let ok = |r: Reply| assert!(!matches!(r, Reply::Err(_)), "{r:?}");
    for l in [
        "SET str hello",
        "SET int 12345",
        "SET neg -42",
        "SET bigint 12345678901",
        "SET sbyte 100",
        "RPUSH list a b 1 2 300 -5 70000",
        "SADD intset 1 2 3 -100 100000",
        "SADD sset a b c",
        "ZADD zsmall 1 a 2.5 b -3 c",
        "ZADD zinf +inf x -inf y 0 z",
        "HSET hsmall f1 v1 f2 2",
        "PFADD hll a b c",
        "PEXPIRE str 100000000",
        "EXPIRE list 5000",
    ] {
        ok(c.run(l));
    }
    ok(c.cmd(&["SET", "empty", ""]));
    ok(c.cmd(&["SET", "long", &"ab".repeat(500)]));
    ok(c.cmd(&[b"SET".as_slice(), b"bin", &[0u8, 255, 1, 2, 13, 10, 0]]));
    cmdv(c, &["RPUSH", "biglist"], &words("item", 3000));
    ok(c.cmd(&["RPUSH", "plainlist", "x", &"p".repeat(10000), "y"]));
    cmdv(c, &["SADD", "bigset"], &words("m", 2000));
    cmdv(c, &["SADD", "bigintset"], &(0..600).map(|i| i.to_string()).collect::<Vec<_>>());
    let zb: Vec<String> = (0..200).flat_map(|i| [format!("{}.5", i), format!("zm{i}")]).collect();
    cmdv(c, &["ZADD", "zbig"], &zb);
    let hb: Vec<String> = (0..1500).flat_map(|i| [format!("f{i}"), format!("v{i}")]).collect();
    cmdv(c, &["HSET", "hbig"], &hb);
    ok(c.cmd(&["HSET", "hlongval", "f", &"v".repeat(100)]));
    cmdv(c, &["PFADD", "hlldense"], &words("e", 5000));
    // Streams: tombstones, trimming, groups, pending entries, consumers.
    for i in 1..=30 {
        let r = if i % 3 == 0 {
            c.cmd(&["XADD", "st", &format!("{i}-1"), "other", &i.to_string()])
        } else {
            c.cmd(&["XADD", "st", &format!("{i}-1"), "a", &i.to_string(), "b", "x"])
        };
        ok(r);
    }
    for l in [
        "XDEL st 5-1 6-1 29-1",
        "XGROUP CREATE st g1 0",
        "XGROUP CREATE st g2 $",
        "XREADGROUP GROUP g1 alice COUNT 3 STREAMS st >",
        "XREADGROUP GROUP g1 bob COUNT 2 STREAMS st >",
        "XREADGROUP GROUP g1 alice COUNT 1 STREAMS st 0",
        "XCLAIM st g1 carol 0 1-1",
        "XGROUP CREATECONSUMER st g2 dave",
        "XADD st2 1-1 f v",
        "XDEL st2 1-1",
        "XGROUP CREATE st3 g 0 MKSTREAM",
    ] {
        ok(c.run(l));
    }
    for i in 0..2500 {
        ok(c.cmd(&["XADD", "bigstream", "*", "k", &i.to_string(), "payload", &"z".repeat(i % 50)]));
    }
    ok(c.run("XTRIM bigstream MAXLEN 2200"));
    ok(c.run("XGROUP CREATE bigstream grp 0"));
    ok(c.run("XREADGROUP GROUP grp c1 COUNT 1500 STREAMS bigstream >"));
    ok(c.run("SELECT 1"));
    ok(c.run("SET db1key v1"));
    ok(c.run("HSET db1hash a 1 b 2"));
    ok(c.run("PEXPIRE db1hash 99999999"));
    ok(c.run("SELECT 2"));
    ok(c.run("RPUSH db2list q w e"));
    ok(c.run("SELECT 0"));
    ok(c.cmd(&[
        "FUNCTION",
        "LOAD",
        "#!lua name=mylib\nredis.register_function('myfunc', function(keys, args) return 1 end)",
    ]));
}

fn expected_type(v: &RdbValue) -> &'static str {
    match v {
        RdbValue::Str(_) => "string",
        RdbValue::List(_) => "list",
        RdbValue::Set(_) => "set",
        RdbValue::ZSet(_) => "zset",
        RdbValue::Hash(_) => "hash",
        RdbValue::Stream(_) => "stream",
        RdbValue::Module(_) => "module",
    }
}

#[test]
fn redis_saved_file_parsed_in_random_chunks() {
    let dir = TempDir::new("save");
    let r = start_redis(&dir.0, "dump.rdb", &["--maxmemory-policy", "allkeys-lru"]);
    let mut c = Client::connect(r.port).unwrap();
    build_dataset(&mut c);
    assert_eq!(c.run("SAVE"), Reply::Simple("OK".into()));
    let data = std::fs::read(dir.0.join("dump.rdb")).unwrap();

    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut first: Option<Parsed> = None;
    for max_chunk in [1u64, 7, 64, 4096, 1 << 20] {
        let p = parse_chunked(&data, &mut rng, max_chunk).expect("parse");
        assert_eq!(p.version, 10);
        assert!(p.checksum_ok);
        assert!(p.max_part_elems <= 1100, "part too big: {}", p.max_part_elems);
        // Bounded by the largest element (the 10000-byte list item and the
        // stream nodes), not by the 3000-element list or the whole file.
        assert!(p.max_buffered < 20_000 + max_chunk as usize, "buffered {}", p.max_buffered);
        if let Some(f) = &first {
            assert_eq!(f.events, p.events, "same events whatever the chunking");
            assert_eq!(format!("{:?}", f.dbs), format!("{:?}", p.dbs));
        } else {
            first = Some(p);
        }
    }
    let p = first.unwrap();
    let aux: HashMap<Vec<u8>, Vec<u8>> = p.aux.iter().cloned().collect();
    assert_eq!(aux[&b"redis-ver".to_vec()], b"7.0.15");
    assert_eq!(aux[&b"aof-base".to_vec()], b"0");
    assert_eq!(p.functions.len(), 1);
    assert!(p.functions[0].starts_with(b"#!lua name=mylib"));
    // Encodings as Redis 7.0 writes them.
    let ty = |db: u64, k: &str| p.dbs[&db][k.as_bytes()].rdb_type;
    assert_eq!(ty(0, "list"), types::LIST_QUICKLIST_2);
    assert_eq!(ty(0, "intset"), types::SET_INTSET);
    assert_eq!(ty(0, "sset"), types::SET);
    assert_eq!(ty(0, "zsmall"), types::ZSET_LISTPACK);
    assert_eq!(ty(0, "zbig"), types::ZSET_2);
    assert_eq!(ty(0, "hsmall"), types::HASH_LISTPACK);
    assert_eq!(ty(0, "hbig"), types::HASH);
    assert_eq!(ty(0, "st"), types::STREAM_LISTPACKS_2);
    assert!(p.dbs[&0][b"biglist".as_slice()].parts >= 2);
    assert!(p.dbs[&0][b"bigset".as_slice()].parts >= 2);
    assert!(p.dbs[&0][b"hbig".as_slice()].parts >= 2);
    assert!(p.dbs[&0][b"bigstream".as_slice()].parts >= 2);
    for k in p.dbs.values().flat_map(|d| d.values()) {
        assert!(matches!(k.lru, LruInfo::Idle(_)), "LRU policy: every key has IDLE");
    }
    for (db, keys) in &p.dbs {
        c.cmd(&["SELECT", &db.to_string()]);
        for (key, k) in keys {
            let t = c.cmd(&[b"TYPE".as_slice(), key]).bulk();
            assert_eq!(t, expected_type(k.value.as_ref().unwrap()).as_bytes());
        }
    }
    compare_with_redis(&mut c, &p.dbs, true);
    let fl = c.run("FUNCTION LIST WITHCODE");
    let lib = kv(&fl.arr()[0]);
    assert_eq!(lib["library_code"].bulk(), p.functions[0]);

    // The pull wrapper gives the same events.
    let mut rd = RdbFileReader::new(std::fs::File::open(dir.0.join("dump.rdb")).unwrap());
    let mut n = 0;
    while let Some(_e) = rd.next().expect("pull reader") {
        n += 1;
    }
    assert_eq!(n, p.events);
}

#[test]
fn lfu_policy_writes_freq() {
    let dir = TempDir::new("lfu");
    let r = start_redis(&dir.0, "dump.rdb", &["--maxmemory-policy", "allkeys-lfu"]);
    let mut c = Client::connect(r.port).unwrap();
    for l in ["SET a 1", "SET b 2", "RPUSH l x y"] {
        c.run(l);
    }
    for _ in 0..50 {
        c.run("GET a");
    }
    assert_eq!(c.run("SAVE"), Reply::Simple("OK".into()));
    let data = std::fs::read(dir.0.join("dump.rdb")).unwrap();
    let p = parse_chunked(&data, &mut Rng(7), 3).unwrap();
    for (key, k) in &p.dbs[&0] {
        let LruInfo::Freq(f) = k.lru else { panic!("no FREQ for {key:?}: {:?}", k.lru) };
        let want = c.cmd(&[b"OBJECT".as_slice(), b"FREQ", key]).int();
        assert_eq!(f as i64, want, "{key:?}");
    }
    let LruInfo::Freq(fa) = p.dbs[&0][b"a".as_slice()].lru else { unreachable!() };
    let LruInfo::Freq(fb) = p.dbs[&0][b"b".as_slice()].lru else { unreachable!() };
    assert!(fa > fb);
}

fn b(s: &str) -> Vec<u8> {
    s.as_bytes().to_vec()
}

/// A dataset written with `RdbWriter`, covering every value kind.
fn writer_dataset() -> BTreeMap<u64, BTreeMap<Vec<u8>, Key>> {
    let now = now_ms();
    let mut dbs: BTreeMap<u64, BTreeMap<Vec<u8>, Key>> = BTreeMap::new();
    let mut put = |db: u64, k: &str, v: RdbValue, expire: Option<i64>, lru: LruInfo| {
        dbs.entry(db).or_default().insert(b(k), Key { rdb_type: 0, expire, lru, value: Some(v), parts: 1 });
    };
    put(0, "s", RdbValue::Str(b("hello")), None, LruInfo::Idle(10));
    put(0, "i", RdbValue::Str(b("-123456")), Some(now + 1_000_000), LruInfo::None);
    put(0, "lz", RdbValue::Str(b(&"xyz".repeat(1000))), None, LruInfo::None);
    put(0, "bin", RdbValue::Str(vec![0, 1, 2, 255]), None, LruInfo::None);
    put(0, "l", RdbValue::List((0..1000).map(|i| i.to_string().into_bytes()).collect()), None, LruInfo::None);
    put(0, "set", RdbValue::Set(vec![b("a"), b("1"), b("zz")]), Some(now + 50_000), LruInfo::None);
    put(0, "iset", RdbValue::Set((0..10).map(|i| i.to_string().into_bytes()).collect()), None, LruInfo::None);
    put(0, "z", RdbValue::ZSet(vec![(b("a"), 1.5), (b("b"), f64::INFINITY), (b("c"), -2.0)]), None, LruInfo::None);
    put(0, "h", RdbValue::Hash(vec![(b("f"), b("v")), (b("n"), b("12"))]), None, LruInfo::None);
    let mut entries = Vec::new();
    for i in 1..=250u64 {
        let fields = if i % 7 == 0 {
            vec![(b("other"), b("x"))]
        } else {
            vec![(b("a"), i.to_string().into_bytes()), (b("b"), b("y"))]
        };
        entries.push(RdbStreamEntry { id: StreamId::new(1000 + i, i % 3), deleted: false, fields });
    }
    let del = StreamId::new(1010, 10 % 3);
    entries.iter_mut().find(|e| e.id == del).unwrap().deleted = true;
    let live: Vec<StreamId> = entries.iter().filter(|e| !e.deleted).map(|e| e.id).collect();
    let stream = RdbStream {
        length: live.len() as u64,
        last_id: StreamId::new(1250, 250 % 3),
        first_id: live[0],
        max_deleted_entry_id: del,
        entries_added: 250,
        groups: vec![
            RdbConsumerGroup {
                name: b("grp"),
                last_id: live[4],
                entries_read: 5,
                pel: vec![
                    RdbPendingEntry { id: live[0], delivery_time_ms: now - 5000, delivery_count: 3 },
                    RdbPendingEntry { id: live[2], delivery_time_ms: now - 7000, delivery_count: 1 },
                    RdbPendingEntry { id: live[4], delivery_time_ms: now - 9000, delivery_count: 2 },
                ],
                consumers: vec![
                    RdbConsumer {
                        name: b("alice"),
                        seen_time_ms: now - 4000,
                        active_time_ms: None,
                        pending: vec![live[0], live[4]],
                    },
                    RdbConsumer {
                        name: b("bob"),
                        seen_time_ms: now - 3000,
                        active_time_ms: None,
                        pending: vec![live[2]],
                    },
                    RdbConsumer { name: b("carol"), seen_time_ms: now - 1000, active_time_ms: None, pending: vec![] },
                ],
            },
            RdbConsumerGroup {
                name: b("empty"),
                last_id: StreamId::default(),
                entries_read: -1,
                pel: vec![],
                consumers: vec![],
            },
        ],
        entries,
        node_sizes: vec![],
    };
    put(0, "stream", RdbValue::Stream(Box::new(stream)), Some(now + 3_600_000), LruInfo::None);
    put(3, "db3", RdbValue::Str(b("three")), None, LruInfo::None);
    put(15, "db15", RdbValue::List(vec![b("x")]), Some(now + 20_000), LruInfo::None);
    dbs
}

fn write_file(dbs: &BTreeMap<u64, BTreeMap<Vec<u8>, Key>>, functions: &[&str]) -> Vec<u8> {
    let mut w = RdbWriter::new(Vec::new()).unwrap();
    w.standard_aux(&StandardAux {
        redis_ver: "7.0.15".into(),
        redis_bits: 64,
        ctime: now_ms() / 1000,
        used_mem: 1 << 20,
        repl: None,
        aof_base: false,
    })
    .unwrap();
    for f in functions {
        w.function(f.as_bytes()).unwrap();
    }
    for (db, keys) in dbs {
        w.select_db(*db as u32).unwrap();
        let expires = keys.values().filter(|k| k.expire.is_some()).count() as u64;
        w.resize_db(keys.len() as u64, expires).unwrap();
        for (key, k) in keys {
            w.entry(key, k.value.as_ref().unwrap(), k.expire, k.lru).unwrap();
        }
    }
    w.finish().unwrap()
}

#[test]
fn written_file_loads_in_redis() {
    let dbs = writer_dataset();
    let func = "#!lua name=wlib\nredis.register_function('wf', function(keys, args) return 2 end)";
    let data = write_file(&dbs, &[func]);
    // Our own reader agrees with what was written.
    let p = parse_chunked(&data, &mut Rng(99), 13).unwrap();
    assert!(p.checksum_ok);
    for (db, keys) in &dbs {
        for (key, k) in keys {
            let got = &p.dbs[db][key];
            assert_eq!(got.expire, k.expire);
            assert_eq!(got.lru, k.lru);
            let (mut a, mut bv) = (got.value.clone().unwrap(), k.value.clone().unwrap());
            if let (RdbValue::Stream(x), RdbValue::Stream(y)) = (&mut a, &mut bv) {
                x.node_sizes.clear();
                y.node_sizes.clear();
            }
            assert_eq!(a, bv, "{key:?}");
        }
    }
    let dir = TempDir::new("write");
    std::fs::write(dir.0.join("w.rdb"), &data).unwrap();
    let r = start_redis(&dir.0, "w.rdb", &[]);
    let mut c = Client::connect(r.port).unwrap();
    // Redis's IDLE opcode was honoured (checked before reads touch the key).
    let idle = c.run("OBJECT IDLETIME s").int();
    assert!((10..60).contains(&idle), "idle {idle}");
    compare_with_redis(&mut c, &dbs, false);
    assert_eq!(c.run("FCALL wf 0"), Reply::Int(2));
    // Reload (Redis saves and loads its own file) and check again.
    assert_eq!(c.run("DEBUG RELOAD"), Reply::Simple("OK".into()));
    compare_with_redis(&mut c, &dbs, false);
    // Redis's own save of our data parses back to the same data.
    assert_eq!(c.run("SAVE"), Reply::Simple("OK".into()));
    let again = std::fs::read(dir.0.join("w.rdb")).unwrap();
    let p2 = parse_chunked(&again, &mut Rng(5), 1000).unwrap();
    compare_with_redis(&mut c, &p2.dbs, true);
}

fn small_file() -> Vec<u8> {
    let mut dbs = writer_dataset();
    // Keep it small: the cut loop is quadratic.
    let d0 = dbs.get_mut(&0).unwrap();
    d0.remove(b"lz".as_slice());
    d0.insert(
        b("l"),
        Key {
            rdb_type: 0,
            expire: None,
            lru: LruInfo::Freq(5),
            value: Some(RdbValue::List(vec![b("a"), b("1")])),
            parts: 1,
        },
    );
    if let Some(Key { value: Some(RdbValue::Stream(s)), .. }) = d0.get_mut(b"stream".as_slice()) {
        s.entries.retain(|e| e.id.ms <= 1012);
        s.length = s.entries.iter().filter(|e| !e.deleted).count() as u64;
        s.last_id = s.entries.last().unwrap().id;
        s.groups[0].last_id = s.last_id;
    }
    write_file(&dbs, &["#!lua name=x\nredis.register_function('f', function() return 1 end)"])
}

#[test]
fn truncation_at_every_cut_is_an_error() {
    let data = small_file();
    assert!(data.len() < 4000, "{}", data.len());
    let full = parse_chunked(&data, &mut Rng(1), 50).unwrap();
    assert!(full.checksum_ok);
    for cut in 0..data.len() {
        let mut rng = Rng(cut as u64 + 1);
        let r = parse_chunked(&data[..cut], &mut rng, 17);
        assert_eq!(r.err(), Some(RdbError::Truncated), "cut at {cut}");
    }
    // A flipped byte in the body is caught by the checksum at the latest.
    let mut bad = data.clone();
    bad[20] ^= 0x01;
    if let Ok(p) = parse_chunked(&bad, &mut Rng(3), 9) {
        assert!(!p.checksum_ok);
    }
}

#[test]
fn forged_huge_lengths_never_allocate() {
    let head = b"REDIS0010".to_vec();
    let huge8 = [0x81u8, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff];
    let mut cases: Vec<Vec<u8>> = Vec::new();
    // A string value of 2^63 bytes.
    cases.push([head.clone(), vec![types::STRING, 1, b'k'], huge8.to_vec()].concat());
    // A list / set / zset / hash / quicklist / stream with 2^63 elements.
    for ty in [types::LIST, types::SET, types::ZSET_2, types::HASH, types::LIST_QUICKLIST_2, types::STREAM_LISTPACKS_2]
    {
        cases.push([head.clone(), vec![ty, 1, b'k'], huge8.to_vec(), vec![1, b'a']].concat());
    }
    // LZF string claiming a huge uncompressed size.
    cases.push([head.clone(), vec![types::STRING, 1, b'k', 0xc3, 2], huge8.to_vec(), vec![0, b'a']].concat());
    // AUX with a 4 GB key.
    cases.push([head.clone(), vec![250, 0x80, 0xff, 0xff, 0xff, 0xff]].concat());
    // Stream groups / PEL / consumers counts.
    cases.push(
        [head.clone(), vec![types::STREAM_LISTPACKS_2, 1, b'k', 0, 0, 0, 0, 0, 0, 0, 0, 0], huge8.to_vec()].concat(),
    );
    for c in cases {
        let mut p = RdbParser::new();
        p.feed(&c);
        loop {
            match p.next_event() {
                Ok(Some(_)) => continue,
                Ok(None) => break,
                Err(_) => break,
            }
        }
        // Waiting for more input holds only what was fed.
        assert!(p.buffered() <= c.len());
        p.end_of_input();
        let mut res = Ok(None);
        for _ in 0..100 {
            res = p.next_event();
            if !matches!(res, Ok(Some(_))) {
                break;
            }
        }
        assert!(res.is_err(), "{c:?} -> {res:?}");
    }
}

#[test]
fn versions_and_signature() {
    for (v, ok) in [("0001", true), ("0009", true), ("0010", true), ("0011", false), ("0000", false)] {
        let mut p = RdbParser::new();
        p.feed(format!("REDIS{v}").as_bytes());
        p.feed(&[255]);
        let r = p.next_event();
        if ok {
            assert!(matches!(r, Ok(Some(Event::Header(_)))), "{v}: {r:?}");
        } else {
            assert!(r.is_err(), "{v}");
        }
    }
    let mut p = RdbParser::new();
    p.feed(b"RADIS0010\xff");
    assert!(p.next_event().is_err());
    // Version 11 (Redis 7.2) is refused like Redis 7.0 does.
    let mut p = RdbParser::new();
    p.feed(b"REDIS0011\xff");
    assert_eq!(p.next_event(), Err(RdbError::Version(11)));
    // Old versions: no checksum before 5, old EXPIRETIME opcode in seconds.
    let mut p = RdbParser::new();
    p.feed(b"REDIS0004");
    p.feed(&[253, 0x10, 0, 0, 0, 0, 1, b'k', 1, b'v', 255]);
    p.end_of_input();
    let mut evs = Vec::new();
    while let Some(e) = p.next_event().unwrap() {
        evs.push(e);
    }
    assert_eq!(
        evs,
        vec![
            Event::Header(4),
            Event::Key { key: b("k"), expire_ms: Some(16_000), lru: LruInfo::None, rdb_type: 0 },
            Event::Part(RdbValue::Str(b("v"))),
            Event::EndKey,
            Event::Eof { checksum_ok: true, checksum: None },
        ]
    );
    // Bytes after the RDB data (an AOF tail) stay available.
    let mut data = small_file();
    data.extend_from_slice(b"*1\r\n$4\r\nPING\r\n");
    let mut p = RdbParser::new();
    p.feed(&data);
    while p.next_event().unwrap().is_some() {}
    assert!(p.is_done());
    assert_eq!(p.take_remaining(), b"*1\r\n$4\r\nPING\r\n");
}
