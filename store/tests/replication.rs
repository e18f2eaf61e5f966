//! ferrite as a replication master, checked against real Redis 7.0:
//! a real `redis-server --replicaof <ferrite>` ends with the same data set
//! (DEBUG DIGEST) for data written before and after it attached, also with
//! writers running while it attaches; the command stream read with a raw
//! `SYNC` equals what a real Redis master propagates for the same
//! transcript (absolute expiry times masked), including lazy expiry, a
//! blocked client's wake-up and PUBLISH; PSYNC/ACK/GETACK/WAIT offsets;
//! writes during the background save follow the payload; SYNC during a
//! running BGSAVE; WAIT, ROLE, INFO replication and min-replicas-to-write
//! with a replica attached; REPLCONF / WAIT / ROLE replies (and errors)
//! byte for byte without replicas; PUBLISH never reaches the AOF.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};
use support::{encode, show, split, start_ferrite, start_redis, Conn, Pair};

fn s(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn info_field(c: &mut Conn, section: &str, field: &str) -> Option<String> {
    let r = c.cmd(&["INFO", section]);
    let text = s(&r);
    text.lines().find_map(|l| l.strip_prefix(&format!("{field}:")).map(|v| v.trim().to_string()))
}

/// Poll `f` every 50 ms for at most `secs`.
fn wait_until(secs: u64, what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !f() {
        assert!(Instant::now() < deadline, "timed out after {secs}s waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn run(c: &mut Conn, lines: &[&str]) {
    for l in lines {
        let r = c.line(l);
        assert!(!r.starts_with(b"-"), "{l} -> {}", show(&r));
    }
}

/// The dataset written before the replica attaches: every type, TTLs,
/// several databases.
const BEFORE: &[&str] = &[
    "SET str hello",
    "SET int 12345",
    "SET big 123456789012345678901234567890",
    "SET ttl v PX 500000",
    "RPUSH list a b c 1 2 3",
    "HSET hash f1 v1 f2 2",
    "SADD intset 1 2 3 100",
    "SADD set a b c",
    "ZADD zset 1 a 2.5 b -3 c",
    "XADD stream 1-1 f v",
    "XADD stream 2-1 f2 v2",
    "XGROUP CREATE stream g 0",
    "XREADGROUP GROUP g alice COUNT 1 STREAMS stream >",
    "PFADD hll a b c",
    "SELECT 3",
    "SET in3 x EX 1000",
    "RPUSH l3 x",
    "SELECT 5",
    "HSET h5 a 1",
    "SELECT 0",
];

/// Writes made while the replica is attached.
const AFTER: &[&str] = &[
    "SET ex v EX 1000",
    "INCR int",
    "INCRBYFLOAT fl 1.5",
    "LPUSH list z",
    "EXPIRE list 1000",
    "DEL str",
    "EVAL \"redis.call('set','s1','1'); redis.call('incr','s1'); return 1\" 0",
    "MULTI",
    "SET m1 1",
    "INCR m1",
    "HSET hash f3 v3",
    "EXEC",
    "SPOP set",
    "XADD stream * f3 v3",
    "XREADGROUP GROUP g bob COUNT 1 STREAMS stream >",
    "ZINCRBY zset 5 a",
    "SELECT 3",
    "FLUSHDB",
    "SET after3 y",
    "SELECT 7",
    "SADD s7 q",
    "SELECT 0",
    "SET last 1",
];

fn digest_all(c: &mut Conn) -> Vec<u8> {
    c.cmd(&["DEBUG", "DIGEST"])
}

#[test]
fn real_redis_replica_gets_the_same_dataset() {
    let ferrite = start_ferrite(&[]);
    let mut f = Conn::connect(ferrite.port).unwrap();
    run(&mut f, BEFORE);
    let port = ferrite.port.to_string();
    let replica = start_redis(&["--replicaof", "127.0.0.1", &port]);
    let mut r = Conn::connect(replica.port).unwrap();
    wait_until(20, "the replica's link to ferrite", || {
        info_field(&mut r, "replication", "master_link_status").as_deref() == Some("up")
    });
    run(&mut f, AFTER);
    // WAIT: the replica acknowledges everything written so far.
    let w = f.cmd(&["WAIT", "1", "10000"]);
    assert_eq!(w, b":1\r\n", "WAIT 1 10000 -> {}", show(&w));
    let fd = digest_all(&mut f);
    wait_until(10, "identical DEBUG DIGEST on ferrite and the replica", || digest_all(&mut r) == fd);
    assert_ne!(fd, b"$40\r\n0000000000000000000000000000000000000000\r\n".to_vec());
    // Spot checks with readable failures.
    for db in ["0", "3", "5", "7"] {
        f.cmd(&["SELECT", db]);
        r.cmd(&["SELECT", db]);
        assert_eq!(f.cmd(&["DBSIZE"]), r.cmd(&["DBSIZE"]), "DBSIZE of db {db}");
    }
    f.cmd(&["SELECT", "0"]);
    r.cmd(&["SELECT", "0"]);
    let ttl = r.cmd(&["TTL", "ex"]);
    assert!(ttl.starts_with(b":99") || ttl == b":1000\r\n", "TTL ex on the replica: {}", show(&ttl));
    assert_eq!(r.cmd(&["GET", "s1"]), b"$1\r\n2\r\n");
    assert_eq!(r.cmd(&["EXISTS", "str"]), b":0\r\n");

    // ROLE and INFO replication on the master.
    // (The replica acknowledges WAIT's GETACK with the offset before it;
    // its next once-a-second ACK covers everything.)
    let off = info_field(&mut f, "replication", "master_repl_offset").unwrap();
    let off_n: i64 = off.parse().unwrap();
    assert!(off_n > 0, "master_repl_offset {off}");
    let want_port = replica.port.to_string();
    let expect = format!(
        "*3\r\n$6\r\nmaster\r\n:{off}\r\n*1\r\n*3\r\n$9\r\n127.0.0.1\r\n${}\r\n{want_port}\r\n${}\r\n{off}\r\n",
        want_port.len(),
        off.len()
    );
    let mut role = Vec::new();
    wait_until(5, "ROLE with the replica's ACK at the master offset", || {
        role = f.cmd(&["ROLE"]);
        s(&role) == expect
    });
    assert_eq!(info_field(&mut f, "replication", "role").as_deref(), Some("master"));
    assert_eq!(info_field(&mut f, "replication", "connected_slaves").as_deref(), Some("1"));
    let slave0 = info_field(&mut f, "replication", "slave0").unwrap();
    assert!(
        slave0.starts_with(&format!("ip=127.0.0.1,port={want_port},state=online,offset={off},lag=")),
        "slave0: {slave0}"
    );
    let replid = info_field(&mut f, "replication", "master_replid").unwrap();
    assert_eq!(replid.len(), 40);
    // The replica knows the same replication id and offset.
    assert_eq!(info_field(&mut r, "replication", "master_replid").as_deref(), Some(replid.as_str()));
    wait_until(10, "the replica's offset", || {
        info_field(&mut r, "replication", "master_repl_offset").as_deref() == Some(off.as_str())
    });
    // WAIT with nothing new to acknowledge, and for more replicas than exist (times out).
    assert_eq!(f.cmd(&["WAIT", "1", "0"]), b":1\r\n");
    let t0 = Instant::now();
    assert_eq!(f.cmd(&["WAIT", "2", "300"]), b":1\r\n");
    assert!(t0.elapsed() >= Duration::from_millis(250), "WAIT 2 300 returned too early");
    // min-replicas-to-write counts the replica (acknowledged within min-replicas-max-lag).
    assert_eq!(f.cmd(&["CONFIG", "SET", "min-replicas-to-write", "1"]), b"+OK\r\n");
    assert_eq!(f.cmd(&["SET", "mr", "1"]), b"+OK\r\n");
    assert_eq!(f.cmd(&["CONFIG", "SET", "min-replicas-to-write", "2"]), b"+OK\r\n");
    assert_eq!(f.cmd(&["SET", "mr", "1"]), b"-NOREPLICAS Not enough good replicas to write.\r\n");
    assert_eq!(f.cmd(&["CONFIG", "SET", "min-replicas-to-write", "0"]), b"+OK\r\n");
    // The replica going away is noticed.
    drop(r);
    drop(replica);
    wait_until(10, "connected_slaves:0", || {
        f.cmd(&["SET", "tick", "1"]);
        info_field(&mut f, "replication", "connected_slaves").as_deref() == Some("0")
    });
    assert_eq!(f.cmd(&["WAIT", "1", "100"]), b":0\r\n");
}

/// A raw SYNC attachment: reads the payload, then propagated commands.
struct Stream {
    sock: TcpStream,
    buf: Vec<u8>,
}

impl Stream {
    fn attach(port: u16) -> Stream {
        let mut sock = TcpStream::connect(("127.0.0.1", port)).unwrap();
        sock.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        sock.write_all(b"SYNC\r\n").unwrap();
        let mut st = Stream { sock, buf: Vec::new() };
        // Newlines are keep-alives sent while the RDB is prepared.
        let line = loop {
            let l = st.line();
            if !l.is_empty() {
                break l;
            }
        };
        assert!(line.starts_with(b"$"), "SYNC answered {}", show(&line));
        let n: usize = s(&line[1..]).parse().unwrap();
        let payload = st.take(n);
        assert!(payload.starts_with(b"REDIS"), "payload is not an RDB");
        st
    }

    fn fill(&mut self) {
        let mut tmp = [0u8; 65536];
        let n = self.sock.read(&mut tmp).expect("replication stream read (10 s timeout)");
        assert!(n > 0, "replication stream closed");
        self.buf.extend_from_slice(&tmp[..n]);
    }

    fn line(&mut self) -> Vec<u8> {
        loop {
            if let Some(p) = self.buf.iter().position(|&b| b == b'\n') {
                let mut l: Vec<u8> = self.buf.drain(..=p).collect();
                l.pop();
                if l.last() == Some(&b'\r') {
                    l.pop();
                }
                return l;
            }
            self.fill();
        }
    }

    fn take(&mut self, n: usize) -> Vec<u8> {
        while self.buf.len() < n {
            self.fill();
        }
        self.buf.drain(..n).collect()
    }

    fn command(&mut self) -> Vec<Vec<u8>> {
        let head = self.line();
        assert!(head.starts_with(b"*"), "expected a multibulk, got {}", show(&head));
        let n: usize = s(&head[1..]).parse().unwrap();
        assert!(n < 1000);
        let mut v = Vec::with_capacity(n);
        for _ in 0..n {
            let h = self.line();
            assert!(h.starts_with(b"$"), "expected a bulk, got {}", show(&h));
            let len: usize = s(&h[1..]).parse().unwrap();
            let mut a = self.take(len + 2);
            a.truncate(len);
            v.push(a);
        }
        v
    }

    /// Commands up to and including `SET __end__ 1`, bounded.
    fn until_end(&mut self) -> Vec<String> {
        let mut out = Vec::new();
        for _ in 0..10_000 {
            let c = self.command();
            let end = c.len() == 3 && c[1] == b"__end__";
            out.push(mask(&c));
            if end {
                return out;
            }
        }
        panic!("no end marker in 10000 commands");
    }
}

/// A command as a line, with absolute times masked.
fn mask(c: &[Vec<u8>]) -> String {
    let mut v: Vec<String> = c.iter().map(|a| s(a)).collect();
    let name = v.first().map(|n| n.to_ascii_lowercase()).unwrap_or_default();
    for i in 1..v.len() {
        if v[i - 1].eq_ignore_ascii_case("pxat") {
            v[i] = "<ms>".into();
        }
    }
    if name == "pexpireat" && v.len() >= 3 {
        v[2] = "<ms>".into();
    }
    v.join(" ")
}

const STREAM_TRANSCRIPT: &[&str] = &[
    "SET foo bar",
    "SET foo bar EX 100",
    "SETEX k 100 v",
    "PSETEX k2 100000 v",
    "INCR n",
    "INCRBYFLOAT f 1.5",
    "GETSET foo baz",
    "LPUSH l a b c",
    "RPOP l",
    "EXPIRE l 100",
    "PERSIST l",
    "DEL l",
    "GETDEL foo",
    "GET n",
    "DEL missing",
    "SELECT 9",
    "SET x 1",
    "MULTI",
    "SET a 1",
    "INCR a",
    "EXEC",
    "MULTI",
    "GET a",
    "EXEC",
    "EVAL \"redis.call('set','s1','1'); redis.call('incr','s1')\" 0",
    "EVAL \"return redis.call('get','s1')\" 0",
    "EVAL \"redis.call('set','s2','1')\" 0",
    "SADD set1 only",
    "SPOP set1",
    "HSET h f 1",
    "HINCRBYFLOAT h f 1.5",
    "ZADD z 1 a",
    "ZINCRBY z 2 a",
    "XADD st 1-1 f v",
    "EXPIRE x 0",
    "FLUSHDB",
    "SELECT 0",
    "SET back 1",
    "SELECT 9",
    "SET back9 1",
    "APPEND ap x",
    "SETRANGE ap 3 y",
    "SETNX nx 1",
    "SETNX nx 2",
    "MSET m1 1 m2 2",
    "GETEX m1 EX 100",
    "GETEX m1 PERSIST",
    "GETEX m2 PXAT 1",
    "PEXPIRE nx 100000 NX",
    "EXPIREAT ap 1",
    "RENAME m1 m1b",
    "COPY m1b m1c DB 4",
    "MOVE m1b 5",
    "RPUSH src a b c",
    "LMOVE src dst LEFT RIGHT",
    "BLPOP src 0",
    "BRPOPLPUSH src dst 0",
    "LMPOP 1 dst LEFT COUNT 5",
    "SADD s a b c",
    "SREM s a zz",
    "SMOVE s s2 b",
    "SINTERSTORE s3 s s2",
    "HSET h2 a 1 b 2",
    "HDEL h2 a",
    "ZADD z2 1 a 2 b 3 c",
    "ZREM z2 a",
    "ZPOPMIN z2",
    "BZPOPMAX z2 0",
    "PFADD hll a b",
    "XADD st2 1-1 f v",
    "XADD st2 2-1 f v",
    "XGROUP CREATE st2 g 0",
    "XACK st2 g 1-1",
    "XDEL st2 1-1",
    "XTRIM st2 MAXLEN 0",
    "SORT src ALPHA STORE sorted",
    "SWAPDB 0 1",
    "SET in0 x",
    "FLUSHALL",
    "SET after x",
    "PUBLISH chan msg",
    "SPUBLISH schan msg",
    "MULTI",
    "PUBLISH chan msg2",
    "EXEC",
    "MULTI",
    "PUBLISH chan msg3",
    "SET pub 1",
    "EXEC",
    "EVAL \"redis.call('publish','e','f'); redis.call('set','y','1')\" 0",
    "set lower bar pxat 1900000000000",
    "set lower2 bar exat 1900000000 get",
    "DEBUG SET-ACTIVE-EXPIRE 0",
    "SET e1 v PX 1",
    "SLEEP",
    "SCAN 0",
    "RANDOMKEY",
    "DEBUG SET-ACTIVE-EXPIRE 1",
    "SET __end__ 1",
];

fn stream_of(port: u16) -> Vec<String> {
    let mut c = Conn::connect(port).unwrap();
    assert_eq!(c.line("CONFIG SET repl-ping-replica-period 3600"), b"+OK\r\n");
    let mut st = Stream::attach(port);
    for l in STREAM_TRANSCRIPT {
        if *l == "SLEEP" {
            std::thread::sleep(Duration::from_millis(20));
            continue;
        }
        let r = c.cmd(&split(l));
        assert!(!r.starts_with(b"-"), "{l} -> {}", show(&r));
    }
    let got = st.until_end();
    // Nothing else queued (with the ping period raised, no PING either).
    c.cmd(&["CONFIG", "SET", "repl-ping-replica-period", "10"]);
    got
}

#[test]
fn sync_stream_matches_redis() {
    let redis = start_redis(&[]);
    let ferrite = start_ferrite(&[]);
    let want = stream_of(redis.port);
    let got = stream_of(ferrite.port);
    assert!(want.len() > 60, "Redis propagated only {} commands: {want:?}", want.len());
    if want != got {
        let mut msg = String::new();
        for i in 0..want.len().max(got.len()) {
            let a = want.get(i).map_or("<none>", |x| x.as_str());
            let b = got.get(i).map_or("<none>", |x| x.as_str());
            msg.push_str(&format!("{} {i:3} redis: {a}\n          ferrite: {b}\n", if a == b { " " } else { "!" }));
        }
        panic!("replication streams differ:\n{msg}");
    }
    // A second SYNC attachment starts with SELECT again.
    let mut c = Conn::connect(ferrite.port).unwrap();
    c.cmd(&["CONFIG", "SET", "repl-ping-replica-period", "3600"]);
    let mut st = Stream::attach(ferrite.port);
    c.cmd(&["SET", "__end__", "1"]);
    assert_eq!(st.until_end(), vec!["SELECT 0".to_string(), "SET __end__ 1".to_string()]);
}

#[test]
fn psync_answers_fullresync_with_offset() {
    let ferrite = start_ferrite(&[]);
    let mut c = Conn::connect(ferrite.port).unwrap();
    c.cmd(&["SET", "a", "1"]);
    let mut sock = TcpStream::connect(("127.0.0.1", ferrite.port)).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    sock.write_all(&encode(&["REPLCONF", "listening-port", "4242"])).unwrap();
    sock.write_all(&encode(&["REPLCONF", "capa", "eof", "capa", "psync2"])).unwrap();
    sock.write_all(&encode(&["PSYNC", "?", "-1"])).unwrap();
    let mut st = Stream { sock, buf: Vec::new() };
    assert_eq!(st.line(), b"+OK");
    assert_eq!(st.line(), b"+OK");
    let full = s(&st.line());
    let parts: Vec<&str> = full.split(' ').collect();
    assert_eq!(parts.len(), 3, "{full}");
    assert_eq!(parts[0], "+FULLRESYNC");
    assert_eq!(parts[1].len(), 40);
    assert!(parts[1].bytes().all(|b| b.is_ascii_hexdigit()));
    let off: i64 = parts[2].parse().unwrap();
    let head = st.line();
    let n: usize = s(&head[1..]).parse().unwrap();
    let rdb = st.take(n);
    assert!(rdb.starts_with(b"REDIS0010"), "RDB version");
    // The replica's ACK is recorded and gets no reply; ROLE shows it.
    st.sock.write_all(&encode(&["REPLCONF", "ACK", &off.to_string()])).unwrap();
    wait_until(5, "the replica in ROLE", || {
        let r = s(&c.cmd(&["ROLE"]));
        r.contains("$4\r\n4242\r\n")
    });
    assert_eq!(c.cmd(&["WAIT", "1", "1000"]), b":1\r\n");
    assert_eq!(info_field(&mut c, "replication", "master_replid").as_deref(), Some(parts[1]));
    assert_eq!(info_field(&mut c, "stats", "sync_full").as_deref(), Some("1"));
    assert_eq!(info_field(&mut c, "stats", "sync_partial_err").as_deref(), Some("0"));
    // A write is streamed (SELECT first) and advances the offset by its bytes.
    c.cmd(&["SET", "__end__", "1"]);
    let cmds = st.until_end();
    assert_eq!(cmds, vec!["SELECT 0".to_string(), "SET __end__ 1".to_string()]);
    let bytes = encode(&["SELECT", "0"]).len() + encode(&["SET", "__end__", "1"]).len();
    let now: i64 = info_field(&mut c, "replication", "master_repl_offset").unwrap().parse().unwrap();
    assert_eq!(now, off + bytes as i64);
    // WAIT (for this client's write, not yet acknowledged) sends REPLCONF
    // GETACK * down the stream and waits for the ACK.
    let w = &mut c;
    w.send(&["WAIT", "1", "5000"]);
    let getack = st.command();
    assert_eq!(getack, vec![b"REPLCONF".to_vec(), b"GETACK".to_vec(), b"*".to_vec()]);
    let acked = now + encode(&["REPLCONF", "GETACK", "*"]).len() as i64;
    st.sock.write_all(&encode(&["REPLCONF", "ACK", &acked.to_string()])).unwrap();
    assert_eq!(w.read_reply(), b":1\r\n");
}

/// Replies without replicas, byte for byte against Redis (RESP2 and RESP3).
#[test]
fn replconf_wait_role_replies_match_redis() {
    let t = "
ROLE
WAIT 0 0
WAIT 1 10
WAIT x 0
WAIT 0 x
WAIT 0 -1
WAIT 0 1.5
WAIT
REPLCONF
REPLCONF listening-port
REPLCONF listening-port 6380
REPLCONF listening-port x
REPLCONF ip-address 10.0.0.1
REPLCONF ip-address 1234567890123456789012345678901234567890123456789
REPLCONF ip-address aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa
REPLCONF ip-address aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa
REPLCONF rdb-only x
REPLCONF listening-port 99999999999999999999
REPLCONF capa eof capa psync2
REPLCONF rdb-only 1
REPLCONF rdb-only 2
REPLCONF nosuch 1
REPLCONF listening-port 1 capa eof
MULTI
WAIT 1 0
EXEC
PSYNC ? x
";
    let mut p = Pair::start();
    p.run("repl-resp2", t);
    p.run("repl-resp3", &format!("!resp3\n{t}"));
    // GETACK and ACK from a non-replica get no reply at all.
    for c in [&mut p.r, &mut p.f] {
        c.send(&["REPLCONF", "GETACK", "*"]);
        c.send(&["REPLCONF", "ACK", "10"]);
        assert_eq!(c.cmd(&["PING"]), b"+PONG\r\n");
    }
}

/// The RDB comes from a background save started by SYNC (slowed down with
/// rdb-key-save-delay): writes made while it runs are buffered and follow
/// the payload; meanwhile the replica is `wait_bgsave` and WAIT does not
/// count it. A real replica attached the same way ends identical.
#[test]
fn writes_during_the_background_save_follow_the_payload() {
    let ferrite = start_ferrite(&[]);
    let mut c = Conn::connect(ferrite.port).unwrap();
    for i in 0..8 {
        c.cmd(&["SET", &format!("k{i}"), "v"]);
    }
    c.cmd(&["CONFIG", "SET", "repl-ping-replica-period", "3600"]);
    // 8 keys, 0.5 s each: the save outlasts the checks below on a loaded machine.
    c.cmd(&["CONFIG", "SET", "rdb-key-save-delay", "500000"]);
    let mut sock = TcpStream::connect(("127.0.0.1", ferrite.port)).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    sock.write_all(b"SYNC\r\n").unwrap();
    wait_until(5, "the replica in wait_bgsave", || {
        info_field(&mut c, "replication", "slave0").is_some_and(|v| v.contains("state=wait_bgsave"))
    });
    assert_eq!(info_field(&mut c, "persistence", "rdb_bgsave_in_progress").as_deref(), Some("1"));
    c.cmd(&["SET", "k0", "changed"]);
    c.cmd(&["SELECT", "2"]);
    c.cmd(&["INCR", "n"]);
    assert_eq!(c.cmd(&["WAIT", "1", "50"]), b":0\r\n");
    c.cmd(&["SET", "__end__", "1"]);
    let mut st = Stream { sock, buf: Vec::new() };
    let head = st.line();
    assert!(head.starts_with(b"$"), "{}", show(&head));
    let n: usize = s(&head[1..]).parse().unwrap();
    let rdb = st.take(n);
    assert!(rdb.starts_with(b"REDIS"));
    // The image is from before the writes: k0 still has its old value.
    // (WAIT's GETACK is in the stream too, as in Redis.)
    assert!(!rdb.windows(7).any(|w| w == b"changed"), "the RDB contains a later write");
    assert_eq!(
        st.until_end(),
        vec!["SELECT 0", "SET k0 changed", "SELECT 2", "INCR n", "REPLCONF GETACK *", "SET __end__ 1"]
            .into_iter()
            .map(String::from)
            .collect::<Vec<_>>()
    );
    assert!(info_field(&mut c, "replication", "slave0").unwrap().contains("state=online"));
    c.cmd(&["CONFIG", "SET", "rdb-key-save-delay", "0"]);
}

/// A blocked BRPOP woken for a key that expired meanwhile: the wake-up
/// deletes it and `DEL` follows the transaction in the stream (as Redis).
fn expired_wakeup_stream(port: u16) -> Vec<String> {
    let mut c = Conn::connect(port).unwrap();
    c.cmd(&["CONFIG", "SET", "repl-ping-replica-period", "3600"]);
    let mut st = Stream::attach(port);
    run(&mut c, &["FLUSHALL", "DEBUG SET-ACTIVE-EXPIRE 0"]);
    let mut rd = Conn::connect(port).unwrap();
    let id = s(&rd.cmd(&["CLIENT", "ID"]));
    let id = id.trim().trim_start_matches(':').to_string();
    rd.send(&["BRPOP", "k", "0"]);
    wait_until(5, "the client to block", || info_field(&mut c, "clients", "blocked_clients").as_deref() == Some("1"));
    run(&mut c, &["MULTI"]);
    for l in ["RPUSH k hello", "PEXPIRE k 50", "DEBUG SLEEP 0.1"] {
        assert_eq!(c.line(l), b"+QUEUED\r\n");
    }
    let r = c.line("EXEC");
    assert!(r.starts_with(b"*3\r\n"), "{}", show(&r));
    // Still blocked: the key had expired.
    assert_eq!(c.cmd(&["CLIENT", "UNBLOCK", &id]), b":1\r\n");
    assert_eq!(rd.read_reply(), b"*-1\r\n");
    run(&mut c, &["SET __end__ 1", "DEBUG SET-ACTIVE-EXPIRE 1"]);
    st.until_end()
}

#[test]
fn expired_key_met_by_a_wakeup_is_propagated_as_del() {
    let redis = start_redis(&[]);
    let ferrite = start_ferrite(&[]);
    let want = expired_wakeup_stream(redis.port);
    assert_eq!(want.len(), 8, "{want:?}");
    assert_eq!(expired_wakeup_stream(ferrite.port), want);
}

/// SYNC while a BGSAVE is already running: the image is made at once in
/// memory (under the lock) and the stream follows it.
#[test]
fn sync_during_a_running_bgsave_gets_an_in_memory_image() {
    let ferrite = start_ferrite(&[]);
    let mut c = Conn::connect(ferrite.port).unwrap();
    for i in 0..8 {
        c.cmd(&["SET", &format!("k{i}"), "v"]);
    }
    c.cmd(&["CONFIG", "SET", "repl-ping-replica-period", "3600"]);
    c.cmd(&["CONFIG", "SET", "rdb-key-save-delay", "200000"]);
    assert_eq!(c.cmd(&["BGSAVE"]), b"+Background saving started\r\n");
    let t0 = Instant::now();
    let mut st = Stream::attach(ferrite.port);
    assert!(t0.elapsed() < Duration::from_millis(1000), "SYNC waited for the running BGSAVE");
    assert_eq!(info_field(&mut c, "persistence", "rdb_bgsave_in_progress").as_deref(), Some("1"));
    assert!(info_field(&mut c, "replication", "slave0").unwrap().contains("state=online"));
    c.cmd(&["SET", "__end__", "1"]);
    assert_eq!(st.until_end(), vec!["SELECT 0".to_string(), "SET __end__ 1".to_string()]);
    c.cmd(&["CONFIG", "SET", "rdb-key-save-delay", "0"]);
}

/// PUBLISH reaches replicas but not the AOF (as Redis: PROPAGATE_REPL only).
#[test]
fn publish_goes_to_replicas_not_to_the_aof() {
    let dir = support::TempDir::new("repl-aof");
    let d = dir.0.display().to_string();
    let ferrite = start_ferrite(&["--dir", &d, "--appendonly", "yes", "--appendfsync", "always"]);
    let mut c = Conn::connect(ferrite.port).unwrap();
    c.cmd(&["CONFIG", "SET", "repl-ping-replica-period", "3600"]);
    let mut st = Stream::attach(ferrite.port);
    c.cmd(&["PUBLISH", "chan", "hello"]);
    c.cmd(&["SET", "__end__", "1"]);
    assert_eq!(
        st.until_end(),
        vec!["SELECT 0".to_string(), "PUBLISH chan hello".to_string(), "SET __end__ 1".to_string()]
    );
    let mut aof = Vec::new();
    for e in std::fs::read_dir(dir.0.join("appendonlydir")).unwrap() {
        let p = e.unwrap().path();
        if p.to_string_lossy().ends_with(".incr.aof") {
            aof.extend(std::fs::read(&p).unwrap());
        }
    }
    assert!(aof.windows(7).any(|w| w == b"__end__"), "the SET is in the AOF");
    assert!(!aof.windows(5).any(|w| w == b"hello"), "PUBLISH must not be in the AOF");
}

/// EXEC refused for OOM ends the transaction with EXECABORT, as Redis
/// (unit/multi: the client left in MULTI failed every later test).
#[test]
fn exec_refused_for_oom_aborts_the_transaction() {
    let mut p = Pair::start();
    let (rp, fp) = (p.redis.port, p.ferrite.port);
    for (c, port) in [(&mut p.r, rp), (&mut p.f, fp)] {
        let mut other = Conn::connect(port).unwrap();
        assert_eq!(c.cmd(&["MULTI"]), b"+OK\r\n");
        assert_eq!(c.cmd(&["SET", "x", "1"]), b"+QUEUED\r\n");
        assert_eq!(c.cmd(&["GET", "x"]), b"+QUEUED\r\n");
        assert_eq!(other.cmd(&["CONFIG", "SET", "maxmemory", "1"]), b"+OK\r\n");
        assert_eq!(
            c.cmd(&["EXEC"]),
            b"-EXECABORT Transaction discarded because of: OOM command not allowed when used memory > 'maxmemory'.\r\n",
            "port {port}"
        );
        assert_eq!(c.cmd(&["PING"]), b"+PONG\r\n", "still in MULTI on port {port}");
        assert_eq!(other.cmd(&["CONFIG", "SET", "maxmemory", "0"]), b"+OK\r\n");
        let stats = s(&other.cmd(&["INFO", "errorstats"]));
        assert!(stats.contains("errorstat_EXECABORT:count=1"), "port {port}: {stats}");
    }
}

/// Writers keep going on 4 connections while a real replica attaches (the
/// background save runs with them): every write is in the snapshot or in
/// the stream exactly once, so both end with the same DEBUG DIGEST.
#[test]
fn concurrent_writes_while_a_replica_attaches() {
    let ferrite = start_ferrite(&[]);
    let port = ferrite.port;
    let mut c = Conn::connect(port).unwrap();
    for i in 0..2000 {
        c.cmd(&["SET", &format!("pre{i}"), "x"]);
    }
    // A slower save (200 µs per key, ~0.4 s) so that many writes land while it runs.
    c.cmd(&["CONFIG", "SET", "rdb-key-save-delay", "200"]);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writers: Vec<_> = (0..4)
        .map(|t| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut w = Conn::connect(port).unwrap();
                let mut n = 0u64;
                // Bounded: stops when told, or after 20000 rounds.
                while !stop.load(std::sync::atomic::Ordering::Relaxed) && n < 20_000 {
                    let k = format!("k{}", n % 97);
                    w.cmd(&["INCR", &format!("ctr{t}")]);
                    w.cmd(&["RPUSH", &format!("list{t}"), &k]);
                    w.cmd(&["HINCRBY", "h", &k, "1"]);
                    w.cmd(&["SET", &k, &n.to_string(), "EX", "1000"]);
                    n += 1;
                }
                n
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(100));
    let p = port.to_string();
    let replica = start_redis(&["--replicaof", "127.0.0.1", &p]);
    let mut r = Conn::connect(replica.port).unwrap();
    wait_until(30, "the replica's link to ferrite", || {
        info_field(&mut r, "replication", "master_link_status").as_deref() == Some("up")
    });
    std::thread::sleep(Duration::from_millis(200));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let total: u64 = writers.into_iter().map(|h| h.join().unwrap()).sum();
    assert!(total > 100, "only {total} write rounds");
    c.cmd(&["CONFIG", "SET", "rdb-key-save-delay", "0"]);
    assert_eq!(c.cmd(&["WAIT", "1", "10000"]), b":1\r\n");
    let fd = c.cmd(&["DEBUG", "DIGEST"]);
    wait_until(10, "identical DEBUG DIGEST", || r.cmd(&["DEBUG", "DIGEST"]) == fd);
}

/// Attach a real Redis replica to `ferrite_port` and wait for its link.
fn attach_redis_replica(ferrite_port: u16) -> (support::Proc, Conn) {
    let port = ferrite_port.to_string();
    let replica = start_redis(&["--replicaof", "127.0.0.1", &port]);
    let mut r = Conn::connect(replica.port).unwrap();
    wait_until(20, "the replica's link to ferrite", || {
        info_field(&mut r, "replication", "master_link_status").as_deref() == Some("up")
    });
    (replica, r)
}

/// Drop the replication link from the master's side while the replica is
/// stopped (SIGSTOP: a Redis 7.0 replica reconnects at once otherwise),
/// write `writes`, let it run again and wait until it is back with the same
/// data set.
fn drop_link_and_write(f: &mut Conn, replica: &support::Proc, r: &mut Conn, writes: &[Vec<String>]) {
    let pid = replica.child.id().to_string();
    let signal = |sig: &str| {
        let st = std::process::Command::new("kill").args([sig, &pid]).status().expect("kill");
        assert!(st.success(), "kill {sig} {pid}");
    };
    signal("-STOP");
    let killed = f.cmd(&["CLIENT", "KILL", "TYPE", "replica"]);
    for w in writes {
        let a: Vec<&str> = w.iter().map(String::as_str).collect();
        let rep = f.cmd(&a);
        assert!(!rep.starts_with(b"-"), "{w:?} -> {}", show(&rep));
    }
    signal("-CONT");
    assert_eq!(killed, b":1\r\n", "CLIENT KILL TYPE replica -> {}", show(&killed));
    f.cmd(&["SELECT", "0"]);
    let fd = digest_all(f);
    wait_until(20, "the replica back with ferrite's data set", || {
        info_field(r, "replication", "master_link_status").as_deref() == Some("up") && digest_all(r) == fd
    });
}

#[test]
fn a_replica_that_lost_its_link_continues_from_the_backlog() {
    let ferrite = start_ferrite(&[]);
    let mut f = Conn::connect(ferrite.port).unwrap();
    run(&mut f, BEFORE);
    let (replica, mut r) = attach_redis_replica(ferrite.port);
    run(&mut f, AFTER);
    let fd = digest_all(&mut f);
    wait_until(10, "identical DEBUG DIGEST", || digest_all(&mut r) == fd);
    let writes: Vec<Vec<String>> = (0..200)
        .map(|i| vec!["RPUSH".into(), "while-away".into(), format!("e{i}")])
        .chain([vec!["SELECT".into(), "4".into()], vec!["SET".into(), "in4".into(), "x".into()]])
        .collect();
    drop_link_and_write(&mut f, &replica, &mut r, &writes);
    assert_eq!(info_field(&mut f, "stats", "sync_full").as_deref(), Some("1"), "a full resync happened");
    assert_eq!(info_field(&mut f, "stats", "sync_partial_ok").as_deref(), Some("1"));
    assert_eq!(info_field(&mut f, "stats", "sync_partial_err").as_deref(), Some("0"));
    // The replica kept ferrite's replication id and offset.
    assert_eq!(info_field(&mut r, "replication", "master_replid"), info_field(&mut f, "replication", "master_replid"));
    let histlen: i64 = info_field(&mut f, "replication", "repl_backlog_histlen").unwrap().parse().unwrap();
    let first: i64 = info_field(&mut f, "replication", "repl_backlog_first_byte_offset").unwrap().parse().unwrap();
    let off: i64 = info_field(&mut f, "replication", "master_repl_offset").unwrap().parse().unwrap();
    assert!(histlen > 0 && first + histlen - 1 == off, "backlog {first}+{histlen} vs offset {off}");
    // Writes after the continue still flow.
    f.cmd(&["SET", "after", "1"]);
    let fd = digest_all(&mut f);
    wait_until(10, "the write after the continue", || digest_all(&mut r) == fd);
}

#[test]
fn a_replica_away_for_longer_than_the_backlog_gets_a_full_resync() {
    let ferrite = start_ferrite(&[]);
    let mut f = Conn::connect(ferrite.port).unwrap();
    run(&mut f, &["CONFIG SET repl-backlog-size 16384"]);
    run(&mut f, BEFORE);
    let (replica, mut r) = attach_redis_replica(ferrite.port);
    assert_eq!(info_field(&mut f, "replication", "repl_backlog_size").as_deref(), Some("16384"));
    // About 100 KB written while the replica is away: more than the backlog holds.
    let big = "v".repeat(1000);
    // One command, right after the kill: written before the replica can reconnect.
    let mut mset = vec!["MSET".to_string()];
    for i in 0..100 {
        mset.push(format!("k{i}"));
        mset.push(big.clone());
    }
    let writes = vec![mset];
    drop_link_and_write(&mut f, &replica, &mut r, &writes);
    let histlen: i64 = info_field(&mut f, "replication", "repl_backlog_histlen").unwrap().parse().unwrap();
    assert!(histlen <= 16384, "backlog kept {histlen} bytes");
    let stats = (
        info_field(&mut f, "stats", "sync_full"),
        info_field(&mut f, "stats", "sync_partial_ok"),
        info_field(&mut f, "stats", "sync_partial_err"),
    );
    assert_eq!(stats.0.as_deref(), Some("2"), "{stats:?}");
    assert_eq!(info_field(&mut f, "stats", "sync_partial_ok").as_deref(), Some("0"));
    assert_eq!(info_field(&mut f, "stats", "sync_partial_err").as_deref(), Some("1"));
}

#[test]
fn a_replica_that_stops_acknowledging_is_dropped_after_repl_timeout() {
    let ferrite = start_ferrite(&[]);
    let mut c = Conn::connect(ferrite.port).unwrap();
    run(&mut c, &["CONFIG SET repl-timeout 2", "SET a 1"]);
    let mut sock = TcpStream::connect(("127.0.0.1", ferrite.port)).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    sock.write_all(&encode(&["REPLCONF", "listening-port", "4343"])).unwrap();
    sock.write_all(&encode(&["PSYNC", "?", "-1"])).unwrap();
    let mut st = Stream { sock, buf: Vec::new() };
    assert_eq!(st.line(), b"+OK");
    let full = s(&st.line());
    assert!(full.starts_with("+FULLRESYNC "), "{full}");
    let off: i64 = full.rsplit(' ').next().unwrap().parse().unwrap();
    let head = st.line();
    let n: usize = s(&head[1..]).parse().unwrap();
    st.take(n);
    // One ACK, then silence: dropped once repl-timeout (2 s) passes without one.
    st.sock.write_all(&encode(&["REPLCONF", "ACK", &off.to_string()])).unwrap();
    wait_until(5, "the replica in ROLE", || s(&c.cmd(&["ROLE"])).contains("$4\r\n4343\r\n"));
    let t0 = Instant::now();
    let mut tmp = [0u8; 4096];
    loop {
        match st.sock.read(&mut tmp) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) => panic!("no disconnect after {:?}: {e}", t0.elapsed()),
        }
        assert!(t0.elapsed() < Duration::from_secs(10), "still connected after 10 s");
    }
    assert!(t0.elapsed() >= Duration::from_millis(1500), "dropped after only {:?}", t0.elapsed());
    wait_until(5, "the replica gone from ROLE", || !s(&c.cmd(&["ROLE"])).contains("4343"));
}

/// `repl-backlog-ttl`: a master left without replicas for that long frees
/// its backlog and takes a new replication id (as Redis), so a replica
/// coming back later gets a full resync.
#[test]
fn backlog_freed_after_repl_backlog_ttl() {
    let fer = support::start_ferrite(&[]);
    let red = support::start_redis(&[]);
    let mut f = support::Conn::connect(fer.port).unwrap();
    let mut r = support::Conn::connect(red.port).unwrap();
    let info = |c: &mut support::Conn, k: &str| -> String {
        let t = String::from_utf8_lossy(&c.cmd(&["INFO", "replication"])).into_owned();
        t.lines().find_map(|l| l.strip_prefix(&format!("{k}:")).map(|v| v.trim().to_string())).unwrap_or_default()
    };
    f.cmd(&["CONFIG", "SET", "repl-backlog-ttl", "1"]);
    r.cmd(&["REPLICAOF", "127.0.0.1", &fer.port.to_string()]);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while info(&mut r, "master_link_status") != "up" {
        assert!(std::time::Instant::now() < deadline, "replica never came up");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    f.cmd(&["SET", "k", "v"]);
    let id = info(&mut f, "master_replid");
    assert_eq!(info(&mut f, "repl_backlog_active"), "1");
    r.cmd(&["REPLICAOF", "NO", "ONE"]);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    while info(&mut f, "repl_backlog_active") != "0" {
        assert!(std::time::Instant::now() < deadline, "backlog not freed after repl-backlog-ttl");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert_ne!(info(&mut f, "master_replid"), id, "a new replication id");
}

/// WAIT counts replicas that acknowledged the offset of the calling
/// client's own last write (Redis's c->woff), not later writes of other
/// clients: with the replica stopped after A's write was acknowledged, A's
/// WAIT is satisfied at once, B's (who wrote after) times out. Same replies
/// from a real Redis master in the same situation.
#[test]
fn wait_counts_the_clients_own_last_write() {
    let fer = start_ferrite(&[]);
    let redis = start_redis(&[]);
    for (name, port) in [("ferrite", fer.port), ("redis", redis.port)] {
        let rep = start_redis(&[]);
        let mut r = Conn::connect(rep.port).unwrap();
        r.cmd(&["REPLICAOF", "127.0.0.1", &port.to_string()]);
        let mut a = Conn::connect(port).unwrap();
        let mut b = Conn::connect(port).unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while !String::from_utf8_lossy(&r.cmd(&["INFO", "replication"])).contains("master_link_status:up") {
            assert!(std::time::Instant::now() < deadline, "{name}: replica never came up");
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        a.cmd(&["SET", "a", "1"]);
        assert_eq!(show(&a.cmd(&["WAIT", "1", "5000"])), ":1\\r\\n", "{name}: A's write acknowledged");
        let pid = rep.child.id().to_string();
        let st = std::process::Command::new("kill").args(["-STOP", &pid]).status().expect("kill -STOP");
        assert!(st.success());
        b.cmd(&["SET", "b", "2"]);
        let got_a = show(&a.cmd(&["WAIT", "1", "200"]));
        let got_b = show(&b.cmd(&["WAIT", "1", "200"]));
        let _ = std::process::Command::new("kill").args(["-CONT", &pid]).status();
        assert_eq!(got_a, ":1\\r\\n", "{name}: A's WAIT does not wait for B's write");
        assert_eq!(got_b, ":0\\r\\n", "{name}: B's write is not acknowledged");
        assert_eq!(show(&b.cmd(&["WAIT", "1", "5000"])), ":1\\r\\n", "{name}: B's write acknowledged after SIGCONT");
    }
}

/// `redis-cli --functions-rdb` (REPLCONF rdb-only + rdb-filter-only
/// functions, then SYNC): the payload has the function libraries and no
/// keys; a real Redis started on that file has the library and no keys.
/// `redis-cli --rdb` gets everything. REPLCONF rdb-filter-only errors as Redis.
#[test]
fn redis_cli_functions_rdb_and_rdb_filter_errors() {
    let fer = start_ferrite(&[]);
    let mut c = Conn::connect(fer.port).unwrap();
    for i in 0..50 {
        c.cmd(&["SET", &format!("k{i}"), "v"]);
    }
    let lib = "#!lua name=lib1\nredis.register_function('func1', function() return 123 end)";
    assert_eq!(show(&c.cmd(&["FUNCTION", "LOAD", lib])), "$4\\r\\nlib1\\r\\n");
    for (flag, keys) in [("--functions-rdb", 0), ("--rdb", 50)] {
        let dir = support::TempDir::new("clirdb");
        let file = dir.0.join("dump.rdb");
        let out = std::process::Command::new(support::which("redis-cli").expect("redis-cli is needed"))
            .args(["-p", &fer.port.to_string(), flag])
            .arg(&file)
            .output()
            .expect("redis-cli");
        let text = String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("Transfer finished with success"), "{flag}: {text}");
        let d = dir.0.display().to_string();
        let r = start_redis(&["--dir", &d, "--dbfilename", "dump.rdb"]);
        let mut rc = Conn::connect(r.port).unwrap();
        assert_eq!(show(&rc.cmd(&["DBSIZE"])), format!(":{keys}\\r\\n"), "{flag}");
        assert!(show(&rc.cmd(&["FUNCTION", "LIST"])).contains("lib1"), "{flag}");
    }
    let redis = start_redis(&[]);
    let mut rc = Conn::connect(redis.port).unwrap();
    for args in [
        &["REPLCONF", "rdb-filter-only", "functions"][..],
        &["REPLCONF", "rdb-filter-only", ""][..],
        &["REPLCONF", "rdb-filter-only", "keys"][..],
        &["REPLCONF", "rdb-filter-only", "\"unbalanced"][..],
    ] {
        assert_eq!(show(&c.cmd(args)), show(&rc.cmd(args)), "{args:?}");
    }
}
