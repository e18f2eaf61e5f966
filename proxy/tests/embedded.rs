//! The proxy with no upstream (embedded Ferrite store), with a standalone redis-server as a remote "ferrite"
//! side, and differentially against a real redis-server.

mod common;

use common::*;
use ferrite_testkit::{show, split, start_redis, start_redis_on, Conn, Reply};
use std::time::{Duration, Instant};

fn bulk(s: &str) -> Vec<u8> {
    format!("${}\r\n{s}\r\n", s.len()).into_bytes()
}

const TRANSCRIPT: &str = r#"
SET s hello
GET s
APPEND s " world"
STRLEN s
GETRANGE s 0 4
SET n 10
INCRBY n 5
INCRBYFLOAT n 1.5
INCR s
GET nosuch
SET e v EX 100
TTL e
PERSIST e
TTL e
RPUSH l a b c d
LRANGE l 0 -1
LPOP l
LPOS l c
LLEN l
LPUSH s x
HSET h f1 v1 f2 v2
HGET h f1
HGETALL h
HINCRBY h n 3
HMGET h f1 nosuch f2
SADD set a b c
SISMEMBER set b
SCARD set
ZADD z 1 a 2 b 3 c
ZRANGE z 0 -1 WITHSCORES
ZSCORE z b
ZINCRBY z 2.5 a
ZRANGEBYSCORE z 2 +inf
MSET {t}a 1 {t}b 2
MSET a 1 b
MSET a 1 b 2 c
MSET {t}a 1 {t}b
MGET {t}a {t}b {t}c
EXISTS s l h nosuch
TYPE h
TYPE z
DEL s l
EXPIRE h 100
OBJECT ENCODING z
GET
SET a
WRONGCMD x y
WRONGCMD aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb c d
SELECT 0
SELECT x
PING
PING hi
ECHO there
MULTI
SET {t}c 3
INCR {t}c
LPUSH {t}c x
EXEC
MULTI
SET a
EXEC
EXEC
DISCARD
GETDEL {t}a
GETEX {t}b PX 100000
SETRANGE k 5 abc
GET k
BITCOUNT k
XADD st 1-1 f v
XLEN st
XRANGE st - +
SORT nosuch
PING a b
ECHO
MULTI
MULTI
WATCH x
PING
EXEC
EXEC
DISCARD
UNWATCH
WATCH {t}a {t}b
UNWATCH
HELLO 4
HELLO x
HELLO 2 FOO
AUTH x
AUTH a b c
CLIENT GETNAME
CLIENT SETNAME "bad name"
CLIENT SETNAME good
CLIENT GETNAME
CONFIG GET
OBJECT
OBJECT FREQ
SELECT 0 1
"#;

#[test]
fn differential_against_redis_standalone() {
    let redis = start_redis(&[]);
    let proxy = start_proxy(&[]);
    for proto in ["2", "3"] {
        let mut r = redis.conn();
        let mut p = proxy.conn();
        if proto == "3" {
            r.cmd(&["HELLO", "3"]);
            p.cmd(&["HELLO", "3"]);
        }
        r.cmd(&["FLUSHALL"]);
        p.cmd(&["FLUSHALL"]);
        for line in TRANSCRIPT.lines().map(str::trim).filter(|l| !l.is_empty()) {
            let args = split(line);
            let a = r.cmd(&args);
            let b = p.cmd(&args);
            assert_eq!(show(&a), show(&b), "RESP{proto}: {line}");
        }
        // Malformed RESP: Redis's protocol error, then the connection is closed (only that one).
        for bad in [
            &b"*1\r\n$x\r\n"[..],
            b"*a\r\n",
            b"*1\r\n+x\r\n",
            b"\"unbalanced\r\n",
            b"*1\r\n$04\r\nPING\r\n",
            b"*01\r\n$4\r\nPING\r\n",
        ] {
            let mut r2 = redis.conn();
            let mut p2 = proxy.conn();
            r2.send_raw(bad);
            p2.send_raw(bad);
            let (ra, rc) = r2.read_until_close(Duration::from_secs(2));
            let (pa, pc) = p2.read_until_close(Duration::from_secs(2));
            assert_eq!(show(&ra), show(&pa), "protocol error reply for {:?}", show(bad));
            assert!(rc && pc, "both close the connection");
        }
        assert_eq!(p.cmd(&["PING"]), b"+PONG\r\n", "other connections unaffected");
    }
}

/// The same transcript sent as one pipeline (and a long pipeline of mixed commands with errors in the middle):
/// requests for one backend connection are queued and answered in groups, and a group holding error replies is
/// split again per request. Replies must match a real Redis byte for byte, in order.
#[test]
fn pipelined_transcripts_match_redis() {
    let redis = start_redis(&[]);
    let backend = start_redis(&[]);
    let embedded = start_proxy(&[]);
    let remote = start_proxy(&["--ferrite", &backend.addr()]);
    let mut cmds: Vec<Vec<Vec<u8>>> = Vec::new();
    for line in TRANSCRIPT.lines().map(str::trim).filter(|l| !l.is_empty()) {
        // HELLO/AUTH change connection state the proxy handles itself; MULTI blocks are covered above.
        if ["HELLO", "AUTH", "MULTI", "EXEC", "DISCARD", "WATCH", "UNWATCH"].iter().any(|p| line.starts_with(p)) {
            continue;
        }
        cmds.push(split(line));
    }
    let mut long: Vec<Vec<Vec<u8>>> = Vec::new();
    for i in 0..3000 {
        let k = format!("k{}", i % 37);
        let c: Vec<String> = match i % 7 {
            0 => vec!["SET".into(), k, i.to_string()],
            1 => vec!["INCR".into(), k],
            2 => vec!["LPUSH".into(), k, "x".into()],
            3 => vec!["GET".into(), k],
            4 => vec!["HSET".into(), k, "f".into(), "v".into()],
            5 => vec!["DEL".into(), k, format!("k{}", i % 11)],
            _ => vec!["GETRANGE".into(), k, "0".into(), "2".into()],
        };
        long.push(c.into_iter().map(String::into_bytes).collect());
    }
    for proto in ["2", "3"] {
        for proxy in [&embedded, &remote] {
            let mut r = redis.conn();
            let mut p = proxy.conn();
            if proto == "3" {
                r.cmd(&["HELLO", "3"]);
                p.cmd(&["HELLO", "3"]);
            }
            for pipe in [&cmds, &long] {
                r.cmd(&["FLUSHALL"]);
                p.cmd(&["FLUSHALL"]);
                let a = r.pipeline(pipe);
                let b = p.pipeline(pipe);
                for (i, (x, y)) in a.iter().zip(&b).enumerate() {
                    let line: Vec<String> = pipe[i].iter().map(|a| String::from_utf8_lossy(a).into_owned()).collect();
                    assert_eq!(show(x), show(y), "RESP{proto} request {i} of the pipeline: {}", line.join(" "));
                }
            }
        }
    }
}

#[test]
fn pipelines_pubsub_blocking_and_metrics() {
    let proxy = start_proxy(&["--metrics-listen", "127.0.0.1:0"]);
    let mut c = proxy.conn();
    // A deep pipeline: order preserved.
    let cmds: Vec<Vec<Vec<u8>>> = (0..2000)
        .map(|i| {
            if i % 2 == 0 {
                vec![b"SET".to_vec(), format!("k{i}").into_bytes(), format!("v{i}").into_bytes()]
            } else {
                vec![b"GET".to_vec(), format!("k{}", i - 1).into_bytes()]
            }
        })
        .collect();
    let r = c.pipeline(&cmds);
    for i in (1..2000).step_by(2) {
        assert_eq!(r[i], bulk(&format!("v{}", i - 1)));
    }
    // A protocol switch in the middle of a pipeline keeps the order (other backend connections after it).
    let mut h = proxy.conn();
    let cmds: Vec<Vec<Vec<u8>>> = vec![
        vec![b"SET".to_vec(), b"hk".to_vec(), b"1".to_vec()],
        vec![b"HELLO".to_vec(), b"3".to_vec()],
        vec![b"INCR".to_vec(), b"hk".to_vec()],
        vec![b"HELLO".to_vec(), b"2".to_vec()],
        vec![b"INCR".to_vec(), b"hk".to_vec()],
        vec![b"GET".to_vec(), b"nope".to_vec()],
    ];
    let r = h.pipeline(&cmds);
    assert_eq!(r[0], b"+OK\r\n");
    assert!(r[1].starts_with(b"%7\r\n"));
    assert_eq!(r[2], b":2\r\n");
    assert!(r[3].starts_with(b"*14\r\n"));
    assert_eq!(r[4], b":3\r\n");
    assert_eq!(r[5], b"$-1\r\n");

    // Transactions and blocking commands (dedicated connections) keep their place in a pipeline.
    let cmds: Vec<Vec<Vec<u8>>> = [
        "SET tk 1",
        "MULTI",
        "INCR tk",
        "EXEC",
        "GET tk",
        "RPUSH bq a",
        "BLPOP bq 1",
        "RPUSH bq b",
        "LLEN bq",
        "XADD xs 1-1 f v",
        "XREAD BLOCK 100 STREAMS xs 0",
        "XADD xs 2-1 f v",
        "XLEN xs",
    ]
    .iter()
    .map(|l| split(l))
    .collect();
    let r = h.pipeline(&cmds);
    let got: Vec<String> = r.iter().map(|x| show(x)).collect();
    assert_eq!(got[..5], ["+OK\\r\\n", "+OK\\r\\n", "+QUEUED\\r\\n", "*1\\r\\n:2\\r\\n", "$1\\r\\n2\\r\\n"]);
    assert_eq!(got[5..9], [":1\\r\\n", "*2\\r\\n$2\\r\\nbq\\r\\n$1\\r\\na\\r\\n", ":1\\r\\n", ":1\\r\\n"]);
    assert!(got[10].contains("1-1") && !got[10].contains("2-1"), "{}", got[10]);
    assert_eq!(got[12], ":2\\r\\n");

    // Large values pass through both ways.
    let big = "x".repeat(5 * 1024 * 1024 + 7);
    assert_eq!(h.cmd(&["SET", "big", &big]), b"+OK\r\n");
    assert_eq!(h.cmd(&["GET", "big"]), bulk(&big));
    assert_eq!(h.cmd(&["STRLEN", "big"]), format!(":{}\r\n", big.len()).into_bytes());

    // Cluster view as a one-node cluster.
    let slots = Reply::parse(&c.cmd(&["CLUSTER", "SLOTS"]));
    assert_eq!(slots.items()[0].items()[0].as_int(), Some(0));
    assert_eq!(slots.items()[0].items()[1].as_int(), Some(16383));
    assert_eq!(slots.items()[0].items()[2].items()[1].as_int(), Some(proxy.port as i64));
    assert!(Reply::bulk_text(&c.cmd(&["CLUSTER", "INFO"])).contains("cluster_state:ok"));
    assert_eq!(c.cmd(&["CLUSTER", "KEYSLOT", "foo"]), b":12182\r\n");
    assert!(Reply::bulk_text(&c.cmd(&["CLUSTER", "NODES"])).contains("myself,master - 0 0 1 connected 0-16383"));

    // Pub/sub: RESP2 subscriber, pattern subscriber, RESP3 subscriber that keeps running commands.
    let mut s2 = proxy.conn();
    assert_eq!(s2.cmd(&["SUBSCRIBE", "a", "b"]).len(), "*3\r\n$9\r\nsubscribe\r\n$1\r\na\r\n:1\r\n".len());
    assert_eq!(s2.read_reply(), b"*3\r\n$9\r\nsubscribe\r\n$1\r\nb\r\n:2\r\n");
    assert_eq!(s2.cmd(&["PSUBSCRIBE", "n*"]), b"*3\r\n$10\r\npsubscribe\r\n$2\r\nn*\r\n:3\r\n");
    let mut s3 = proxy.conn();
    s3.cmd(&["HELLO", "3"]);
    assert_eq!(s3.cmd(&["SUBSCRIBE", "a"]), b">3\r\n$9\r\nsubscribe\r\n$1\r\na\r\n:1\r\n");
    assert_eq!(c.cmd(&["PUBLISH", "a", "m1"]), b":2\r\n");
    assert_eq!(s2.read_reply(), b"*3\r\n$7\r\nmessage\r\n$1\r\na\r\n$2\r\nm1\r\n");
    assert_eq!(s3.read_reply(), b">3\r\n$7\r\nmessage\r\n$1\r\na\r\n$2\r\nm1\r\n");
    assert_eq!(s3.cmd(&["GET", "k0"]), bulk("v0"));
    c.cmd(&["PUBLISH", "news", "m2"]);
    assert_eq!(s2.read_reply(), b"*4\r\n$8\r\npmessage\r\n$2\r\nn*\r\n$4\r\nnews\r\n$2\r\nm2\r\n");
    assert_eq!(c.cmd(&["PUBSUB", "NUMSUB", "a", "zz"]), b"*4\r\n$1\r\na\r\n:2\r\n$2\r\nzz\r\n:0\r\n");
    assert_eq!(c.cmd(&["PUBSUB", "NUMPAT"]), b":1\r\n");
    assert_eq!(s2.cmd(&["PUNSUBSCRIBE"]), b"*3\r\n$12\r\npunsubscribe\r\n$2\r\nn*\r\n:2\r\n");
    assert_eq!(c.cmd(&["SSUBSCRIBE", "x"]), b"*3\r\n$10\r\nssubscribe\r\n$1\r\nx\r\n:1\r\n");
    assert_eq!(c.cmd(&["SUNSUBSCRIBE", "x"]), b"*3\r\n$12\r\nsunsubscribe\r\n$1\r\nx\r\n:0\r\n");

    // Blocking pop served when another client pushes.
    let p = proxy.port;
    let t = std::thread::spawn(move || Conn::connect(p).unwrap().cmd(&["BRPOP", "jobs", "5"]));
    sleep_ms(200);
    assert_eq!(c.cmd(&["LPUSH", "jobs", "j1"]), b":1\r\n");
    assert_eq!(t.join().unwrap(), b"*2\r\n$4\r\njobs\r\n$2\r\nj1\r\n");
    // A blocking command that times out.
    assert_eq!(c.cmd(&["BLPOP", "none", "0.1"]), b"*-1\r\n");

    let m = fetch_metrics(&proxy);
    for name in [
        "ferrite_proxy_requests_total{command=\"set\",side=\"ferrite\"}",
        "ferrite_proxy_backend_latency_seconds_bucket",
        "ferrite_proxy_client_connections",
        "ferrite_proxy_slots{state=\"ferrite\"} 16384",
        "ferrite_proxy_slots{state=\"upstream\"} 0",
        "ferrite_proxy_config_epoch 0",
        "ferrite_proxy_backend_connections",
        "ferrite_proxy_paused_requests 0",
        "ferrite_proxy_mirror_inflight 0",
    ] {
        assert!(m.contains(name), "metric {name} missing in:\n{m}");
    }
}

fn stat(c: &mut Conn, name: &str) -> i64 {
    let r = admin(c, &["STATS"]);
    let it = r.items();
    it.chunks(2).find(|p| p[0].as_bytes() == Some(name.as_bytes())).and_then(|p| p[1].as_int()).unwrap()
}

#[test]
fn admin_protocol() {
    let proxy = start_proxy(&["--admin-password", "adm", "--pause-timeout-ms", "1500", "--pause-max-queued", "2"]);
    let mut c = proxy.conn();
    assert_eq!(c.cmd(&["FERRITE.PROXY", "EPOCH"]), b"-NOPERM admin authentication required\r\n");
    assert_eq!(c.cmd(&["FERRITE.PROXY", "AUTH", "bad"]), b"-WRONGPASS invalid admin password\r\n");
    assert_eq!(c.cmd(&["FERRITE.PROXY", "AUTH", "adm"]), b"+OK\r\n");
    assert_eq!(admin(&mut c, &["EPOCH"]).as_int(), Some(0));
    assert_eq!(c.cmd(&["FERRITE.PROXY", "SLOTS"]), b"*1\r\n*4\r\n:0\r\n:16383\r\n$7\r\nferrite\r\n:0\r\n");
    assert!(matches!(admin(&mut c, &["HELP"]), Reply::Array(..)));
    // Errors: nothing changes.
    let err = |r: Reply| match r {
        Reply::Error(e) => e,
        other => panic!("expected an error, got {other:?}"),
    };
    assert_eq!(err(admin(&mut c, &["SETSLOTS", "0", "ferrite", "1", "5"])), "ERR epoch 0 already used");
    assert!(err(admin(&mut c, &["SETSLOTS", "1", "ferrite", "1", "5", "16384"])).starts_with("ERR invalid slot range"));
    assert!(err(admin(&mut c, &["SETSLOTS", "1", "ferrite", "1", "9-3"])).starts_with("ERR invalid slot range"));
    assert!(err(admin(&mut c, &["SETSLOTS", "1", "nowhere", "1", "5"])).starts_with("ERR state"));
    assert!(err(admin(&mut c, &["SETSLOTS", "1", "ferrite", "2", "5"])).starts_with("ERR mirror"));
    assert!(err(admin(&mut c, &["SETSLOTS", "x", "ferrite", "0", "5"])).starts_with("ERR epoch"));
    assert!(err(admin(&mut c, &["SETSLOTS", "1", "upstream", "0", "5"])).starts_with("ERR no upstream"));
    assert_eq!(admin(&mut c, &["EPOCH"]).as_int(), Some(0));
    // Atomic multi-range change, idempotent retry, stale epochs.
    assert_eq!(admin(&mut c, &["SETSLOTS", "5", "ferrite", "1", "10-20", "100", "30-40"]).as_int(), Some(5));
    assert_eq!(admin(&mut c, &["SETSLOTS", "5", "ferrite", "1", "30-40", "100", "10-20"]).as_int(), Some(5));
    assert_eq!(err(admin(&mut c, &["SETSLOTS", "5", "ferrite", "0", "10-20"])), "ERR epoch 5 already used");
    assert_eq!(err(admin(&mut c, &["SETSLOTS", "4", "ferrite", "0", "10-20"])), "ERR stale epoch 4, current is 5");
    let runs = admin(&mut c, &["SLOTS"]);
    let runs: Vec<(i64, i64, Vec<u8>, i64)> = runs
        .items()
        .iter()
        .map(|r| {
            let i = r.items();
            (i[0].as_int().unwrap(), i[1].as_int().unwrap(), i[2].as_bytes().unwrap().to_vec(), i[3].as_int().unwrap())
        })
        .collect();
    assert_eq!(runs[1], (10, 20, b"ferrite".to_vec(), 1));
    assert_eq!(runs[3], (30, 40, b"ferrite".to_vec(), 1));
    assert_eq!(runs[5], (100, 100, b"ferrite".to_vec(), 1));

    // Pause: requests wait in order; a full queue answers TRYAGAIN at once (in pipeline order).
    let k = key_in_slot(200, "p");
    assert_eq!(c.cmd(&["SET", &k, "0"]), b"+OK\r\n");
    assert_eq!(admin(&mut c, &["SETSLOTS", "6", "paused", "0", "200"]).as_int(), Some(6));
    let p = proxy.port;
    let k2 = k.clone();
    let t = std::thread::spawn(move || {
        let mut w = Conn::connect(p).unwrap();
        let cmds: Vec<Vec<Vec<u8>>> = vec![
            vec![b"INCR".to_vec(), k2.clone().into_bytes()],
            vec![b"PING".to_vec()],
            vec![b"INCR".to_vec(), k2.clone().into_bytes()],
            vec![b"INCR".to_vec(), k2.into_bytes()],
        ];
        w.pipeline(&cmds)
    });
    ferrite_testkit::wait_for(Duration::from_secs(10), "two requests queued on the paused slot", || {
        (stat(&mut c, "paused_now") == 2).then_some(())
    });
    sleep_ms(100);
    assert_eq!(admin(&mut c, &["SETSLOTS", "7", "ferrite", "0", "200"]).as_int(), Some(7));
    let r = t.join().unwrap();
    assert_eq!(r[0], b":1\r\n");
    assert_eq!(r[1], b"+PONG\r\n");
    assert_eq!(r[2], b":2\r\n");
    assert_eq!(r[3], b"-TRYAGAIN slot 200 is paused for migration\r\n");
    assert_eq!(stat(&mut c, "pause_rejected"), 1);

    // Pause timeout: the slot resumes to its previous owner; waiting requests are served.
    assert_eq!(admin(&mut c, &["SETSLOTS", "8", "paused", "0", "200"]).as_int(), Some(8));
    let t0 = Instant::now();
    assert_eq!(c.cmd(&["GET", &k]), bulk("2"));
    let waited = t0.elapsed();
    assert!(waited >= Duration::from_millis(1000) && waited < Duration::from_secs(5), "waited {waited:?}");
    assert_eq!(stat(&mut c, "pause_timeouts"), 1);
    assert_eq!(admin(&mut c, &["EPOCH"]).as_int(), Some(8));
    assert!(!String::from_utf8_lossy(&c.cmd(&["FERRITE.PROXY", "SLOTS"])).contains("paused"));

    // TRACK / DIRTY.
    let s = 300u16;
    let (a, b, d) = (key_in_slot(s, "ta"), key_in_slot(s, "tb"), key_in_slot(s, "tc"));
    assert_eq!(c.cmd(&["FERRITE.PROXY", "TRACK", "on", "300"]), b"+OK\r\n");
    c.cmd(&["SET", &a, "1"]);
    c.cmd(&["SET", &b, "1"]);
    c.cmd(&["SET", &a, "2"]);
    c.cmd(&["GET", &d]);
    c.cmd(&["MSET", &a, "3", "unrelated", "x"]);
    let r = admin(&mut c, &["DIRTY", "300", "10"]);
    let got: Vec<&[u8]> = r.items().iter().map(|x| x.as_bytes().unwrap()).collect();
    assert_eq!(got, vec![a.as_bytes(), b.as_bytes()]);
    assert_eq!(admin(&mut c, &["DIRTY", "300", "10"]).items().len(), 0);
    c.cmd(&["DEL", &b]);
    c.cmd(&["LPUSH", &d, "x"]);
    assert_eq!(admin(&mut c, &["DIRTY", "300", "1"]).items()[0].as_bytes(), Some(b.as_bytes()));
    assert_eq!(admin(&mut c, &["DIRTY", "300", "5"]).items()[0].as_bytes(), Some(d.as_bytes()));
    assert_eq!(c.cmd(&["FERRITE.PROXY", "TRACK", "off", "300"]), b"+OK\r\n");
    c.cmd(&["SET", &a, "4"]);
    assert_eq!(admin(&mut c, &["DIRTY", "300", "5"]).items().len(), 0);
    assert!(err(admin(&mut c, &["DIRTY", "16384", "5"])).starts_with("ERR invalid slot"));
    assert!(err(admin(&mut c, &["NOPE"])).starts_with("ERR unknown subcommand"));
}

#[test]
fn client_auth_is_separate_from_backend_credentials() {
    let proxy = start_proxy(&["--requirepass", "pw", "--user", "alice:secret"]);
    let mut c = proxy.conn();
    assert_eq!(c.cmd(&["GET", "x"]), b"-NOAUTH Authentication required.\r\n");
    assert_eq!(c.cmd(&["AUTH", "nope"]), b"-WRONGPASS invalid username-password pair or user is disabled.\r\n");
    assert_eq!(c.cmd(&["AUTH", "pw"]), b"+OK\r\n");
    assert_eq!(c.cmd(&["SET", "x", "1"]), b"+OK\r\n");
    let mut d = proxy.conn();
    assert!(d.cmd(&["HELLO", "3"]).starts_with(b"-NOAUTH HELLO must be called"));
    let r = d.cmd(&["HELLO", "3", "AUTH", "alice", "secret"]);
    assert!(r.starts_with(b"%7\r\n"), "{}", show(&r));
    assert_eq!(d.cmd(&["GET", "x"]), bulk("1"));
    let mut e = proxy.conn();
    assert_eq!(
        e.cmd(&["AUTH", "alice", "wrong"]),
        b"-WRONGPASS invalid username-password pair or user is disabled.\r\n"
    );
    // Unauthenticated clients may not send big requests (Redis's limit).
    let mut f = proxy.conn();
    f.send_raw(b"*2000\r\n");
    let (r, closed) = f.read_until_close(Duration::from_secs(2));
    assert_eq!(show(&r), "-ERR Protocol error: unauthenticated multibulk length\\r\\n");
    assert!(closed);
    // Admin commands without an admin password: loopback only (we are on loopback).
    assert_eq!(c.cmd(&["FERRITE.PROXY", "EPOCH"]), b":0\r\n");
}

#[test]
fn unreachable_backend_errors_then_recovers() {
    let redis = start_redis(&[]);
    let rport = redis.port;
    let proxy = start_proxy(&["--ferrite", &format!("127.0.0.1:{rport}"), "--request-timeout-ms", "1500"]);
    let mut c = proxy.conn();
    assert_eq!(c.cmd(&["SET", "a", "1"]), b"+OK\r\n");
    let mut sub = proxy.conn();
    assert_eq!(sub.cmd(&["SUBSCRIBE", "ch"]), b"*3\r\n$9\r\nsubscribe\r\n$2\r\nch\r\n:1\r\n");
    drop(redis);
    let t0 = Instant::now();
    let r = c.cmd(&["GET", "a"]);
    assert!(r.starts_with(b"-ERR ferrite backend 127.0.0.1:") || r.starts_with(b"-ERR ferrite node"), "{}", show(&r));
    assert!(t0.elapsed() < Duration::from_secs(10));
    // Back on the same port: the proxy reconnects by itself.
    let _redis2 = start_redis_on(rport, &[]);
    let ok = (0..100).any(|_| {
        let r = c.cmd(&["SET", "a", "2"]);
        if r == b"+OK\r\n" {
            return true;
        }
        sleep_ms(100);
        false
    });
    assert!(ok, "the proxy recovered after the backend came back");
    assert_eq!(c.cmd(&["GET", "a"]), bulk("2"));
    // The subscription is re-created on the restarted backend.
    let delivered = (0..100).any(|_| {
        if Reply::parse(&c.cmd(&["PUBLISH", "ch", "back"])).as_int() == Some(1) {
            return true;
        }
        sleep_ms(100);
        false
    });
    assert!(delivered, "subscriber re-subscribed after the backend restart");
    assert_eq!(sub.read_reply(), b"*3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$4\r\nback\r\n");
}

#[test]
fn graceful_shutdown_finishes_in_flight_requests() {
    let mut proxy = start_proxy(&[]);
    let mut c = proxy.conn();
    c.send(&["BLPOP", "nothing", "1"]);
    sleep_ms(200);
    let t0 = Instant::now();
    let status = proxy.terminate(Duration::from_secs(10));
    assert_eq!(c.read_reply(), b"*-1\r\n", "the in-flight BLPOP got its reply");
    assert!(t0.elapsed() >= Duration::from_millis(500));
    let st = status.expect("the proxy exited after SIGTERM");
    assert!(st.success(), "exit status {st}");
}

#[test]
fn blocked_client_that_disconnects_releases_its_backend_connection() {
    let redis = start_redis(&[]);
    let proxy = start_proxy(&["--ferrite", &format!("127.0.0.1:{}", redis.port)]);
    let blocked = |r: &ferrite_testkit::Proc| {
        let info = Reply::bulk_text(&r.conn().cmd(&["INFO", "clients"]));
        info.lines().find_map(|l| l.strip_prefix("blocked_clients:")).map(|v| v.trim().to_string()).unwrap()
    };
    let mut c = proxy.conn();
    c.send(&["BLPOP", "never", "0"]);
    ferrite_testkit::wait_for(Duration::from_secs(10), "the BLPOP to block upstream", || {
        (blocked(&redis) == "1").then_some(())
    });
    drop(c);
    ferrite_testkit::wait_for(Duration::from_secs(10), "the blocked upstream connection to close", || {
        (blocked(&redis) == "0").then_some(())
    });
    // Pipelined requests after a half-close are still answered.
    let mut d = proxy.conn();
    d.send_raw(b"SET hc 1\r\nGET hc\r\n");
    d.stream.shutdown(std::net::Shutdown::Write).unwrap();
    let (r, closed) = d.read_until_close(Duration::from_secs(5));
    assert_eq!(show(&r), "+OK\\r\\n$1\\r\\n1\\r\\n");
    assert!(closed);
}

#[test]
fn pause_release_cycles_under_concurrent_pipelines_keep_order() {
    let proxy = start_proxy(&["--pause-timeout-ms", "5000"]);
    let port = proxy.port;
    let slot = slot("{stress}");
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut workers = Vec::new();
    for w in 0..4 {
        let stop = stop.clone();
        workers.push(std::thread::spawn(move || {
            let mut c = Conn::connect(port).unwrap();
            let key = format!("{{stress}}:{w}");
            let mut expect = 1i64;
            let mut batches = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) && batches < 2000 {
                let cmds: Vec<Vec<Vec<u8>>> = (0..10)
                    .map(|i| {
                        if i % 3 == 2 {
                            vec![b"GET".to_vec(), b"unrelated".to_vec()]
                        } else {
                            vec![b"INCR".to_vec(), key.clone().into_bytes()]
                        }
                    })
                    .collect();
                for (i, r) in c.pipeline(&cmds).into_iter().enumerate() {
                    if i % 3 == 2 {
                        assert_eq!(r, b"$-1\r\n");
                    } else {
                        assert_eq!(r, format!(":{expect}\r\n").into_bytes(), "worker {w}");
                        expect += 1;
                    }
                }
                batches += 1;
            }
            expect
        }));
    }
    let mut a = proxy.conn();
    let s = slot.to_string();
    let mut epoch = 1;
    for _ in 0..40 {
        assert_eq!(admin(&mut a, &["SETSLOTS", &epoch.to_string(), "paused", "0", &s]).as_int(), Some(epoch));
        sleep_ms(5);
        epoch += 1;
        assert_eq!(admin(&mut a, &["SETSLOTS", &epoch.to_string(), "ferrite", "0", &s]).as_int(), Some(epoch));
        epoch += 1;
        sleep_ms(5);
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for w in workers {
        assert!(w.join().expect("a worker saw a wrong or misordered reply") > 1);
    }
    assert_eq!(stat(&mut a, "paused_now"), 0);
    assert_eq!(stat(&mut a, "pause_rejected"), 0);
    let released = stat(&mut a, "pause_released");
    eprintln!("requests held by a pause and released: {released}");
    assert!(released > 0, "some requests waited on a pause");
}

#[test]
fn random_bytes_never_take_the_proxy_down() {
    let mut proxy = start_proxy(&[]);
    let mut seed = 0x9E3779B97F4A7C15u64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let alphabet = b"*$+-:\r\n0123456789abcGETSETMULTIEXEC {}\"'\\x";
    for _ in 0..150 {
        let mut c = proxy.conn();
        let len = (next() % 300) as usize;
        let data: Vec<u8> = (0..len).map(|_| alphabet[(next() % alphabet.len() as u64) as usize]).collect();
        c.send_raw(&data);
        let _ = c.read_until_close(Duration::from_millis(30));
    }
    assert!(proxy.alive(), "the proxy survived random input");
    assert_eq!(proxy.conn().cmd(&["PING"]), b"+PONG\r\n");
    assert!(!proxy.log().contains("panicked"), "no task panicked:\n{}", proxy.log());
}

#[test]
fn backend_credentials_are_used_on_every_backend_connection() {
    let redis = start_redis(&["--requirepass", "backendpw"]);
    let addr = format!("127.0.0.1:{}", redis.port);
    // Without the backend password: a clear error naming the backend.
    let p1 = start_proxy(&["--ferrite", &addr, "--request-timeout-ms", "1000"]);
    let r = p1.conn().cmd(&["GET", "k"]);
    assert!(r.starts_with(b"-ERR ferrite backend 127.0.0.1:") && show(&r).contains("NOAUTH"), "{}", show(&r));
    assert!(show(&r).contains("--ferrite-password"), "{}", show(&r));
    // With it: normal service, in RESP2 and RESP3, and on dedicated connections (blocking, transactions).
    let p2 = start_proxy(&["--ferrite", &addr, "--ferrite-password", "backendpw", "--requirepass", "clientpw"]);
    let mut c = p2.conn();
    assert_eq!(c.cmd(&["AUTH", "backendpw"]), b"-WRONGPASS invalid username-password pair or user is disabled.\r\n");
    assert_eq!(c.cmd(&["AUTH", "clientpw"]), b"+OK\r\n");
    assert_eq!(c.cmd(&["SET", "k", "v"]), b"+OK\r\n");
    assert_eq!(c.cmd(&["BLPOP", "none", "0.05"]), b"*-1\r\n");
    c.cmd(&["MULTI"]);
    c.cmd(&["INCR", "n"]);
    assert_eq!(c.cmd(&["EXEC"]), b"*1\r\n:1\r\n");
    assert!(c.cmd(&["HELLO", "3"]).starts_with(b"%7"));
    assert_eq!(c.cmd(&["GET", "k"]), bulk("v"));
}

#[test]
fn toml_config_env_and_json_logs() {
    let dir = ferrite_testkit::TempDir::new("proxy-config");
    let port = ferrite_testkit::free_port();
    let file = dir.path().join("proxy.toml");
    std::fs::write(
        &file,
        format!(
            "listen = \"127.0.0.1:{port}\"\nrequirepass = \"filepw\"\nlog-format = \"json\"\npause-timeout-ms = 777\n"
        ),
    )
    .unwrap();
    let args = vec!["--config".to_string(), file.display().to_string()];
    let p = ferrite_testkit::spawn_server(proxy_bin(), &args, port, "ferrite-proxy");
    let mut c = p.conn();
    assert_eq!(c.cmd(&["GET", "x"]), b"-NOAUTH Authentication required.\r\n");
    assert_eq!(c.cmd(&["AUTH", "filepw"]), b"+OK\r\n");
    let log = p.log();
    let line = log.lines().find(|l| l.contains("ferrite-proxy ready")).expect("ready log line");
    assert!(line.starts_with('{') && line.contains("\"listen\""), "structured JSON log: {line}");
}

#[test]
fn several_ferrite_connections_keep_per_slot_order() {
    let proxy = start_proxy(&["--ferrite-connections", "4"]);
    let mut c = proxy.conn();
    let mut cmds: Vec<Vec<Vec<u8>>> = Vec::new();
    for round in 0..20 {
        for k in 0..25 {
            cmds.push(vec![b"APPEND".to_vec(), format!("lane:{k}").into_bytes(), format!("{round},").into_bytes()]);
        }
    }
    c.pipeline(&cmds);
    let expected: String = (0..20).map(|r| format!("{r},")).collect();
    let mut mget = vec!["MGET".to_string()];
    mget.extend((0..25).map(|k| format!("lane:{k}")));
    let r = Reply::parse(&c.cmd(&mget));
    assert_eq!(r.items().len(), 25);
    for v in r.items() {
        assert_eq!(v.as_bytes(), Some(expected.as_bytes()));
    }
    assert_eq!(Reply::parse(&c.cmd(&["DBSIZE"])).as_int(), Some(25));
}

/// A client that writes a whole pipeline before reading any reply (redis-py's `pipeline().execute()`) is served:
/// the proxy keeps reading and answering while replies wait for the client. Before, its blocking reply write
/// deadlocked with such a client once both directions outgrew the socket buffers (redis-py, 500,000 GETs: hung).
/// Bounded by socket timeouts.
#[test]
fn pipeline_sent_whole_before_reading_is_served() {
    use std::io::{Read, Write};
    let proxy = start_proxy(&[]);
    let mut s = std::net::TcpStream::connect(("127.0.0.1", proxy.port)).unwrap();
    s.set_write_timeout(Some(Duration::from_secs(30))).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let value = "v".repeat(100);
    s.write_all(format!("*3\r\n$3\r\nSET\r\n$1\r\nk\r\n${}\r\n{value}\r\n", value.len()).as_bytes()).unwrap();
    let mut ok = [0u8; 5];
    s.read_exact(&mut ok).unwrap();
    assert_eq!(&ok, b"+OK\r\n");
    // 16 MB of requests and 85 MB of replies: both far more than the socket buffers hold.
    let n = 800_000usize;
    let one = b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n";
    let req: Vec<u8> = one.iter().copied().cycle().take(one.len() * 4096).collect();
    let mut sent = 0;
    while sent < n {
        let k = (n - sent).min(4096);
        if let Err(e) = s.write_all(&req[..k * one.len()]) {
            panic!("the proxy stopped reading a pipeline it had not answered yet ({e}) after {sent} requests");
        }
        sent += k;
    }
    let reply_len = format!("${}\r\n{value}\r\n", value.len()).len();
    let mut left = n * reply_len;
    let mut buf = vec![0u8; 1 << 20];
    while left > 0 {
        match s.read(&mut buf[..left.min(1 << 20)]) {
            Ok(0) => panic!("closed with {left} reply bytes missing"),
            Ok(k) => left -= k,
            Err(e) => panic!("{e} with {left} reply bytes missing"),
        }
    }
}
