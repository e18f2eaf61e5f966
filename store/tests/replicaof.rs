//! Ferrite as a replica of a real `redis-server` 7.0 master (REPLICAOF):
//! full sync in both payload forms (diskless `$EOF:` and disk-based
//! `$<len>`), the command stream (MULTI/EXEC, EXPIRE, DEL, scripts, SELECT),
//! offsets, `-READONLY` compared with a real Redis replica, REPLICAOF NO ONE,
//! ROLE / INFO, and a master restarted on the same port. Every wait is
//! bounded; all servers listen on 127.0.0.1 only.

mod support;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use support::{free_port, show, start_ferrite, start_redis, which, Conn, TempDir};

fn s(r: &[u8]) -> String {
    String::from_utf8_lossy(r).into_owned()
}

fn info_field(c: &mut Conn, field: &str) -> Option<String> {
    let r = s(&c.cmd(&["INFO", "replication"]));
    r.lines().find_map(|l| l.strip_prefix(&format!("{field}:")).map(|v| v.trim().to_string()))
}

/// Wait (bounded) until the replica's link is up and its offset equals the master's.
fn wait_synced(master: &mut Conn, replica: &mut Conn, secs: u64) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let up = info_field(replica, "master_link_status").as_deref() == Some("up");
        let moff = info_field(master, "master_repl_offset");
        let roff = info_field(replica, "slave_repl_offset");
        if up && moff.is_some() && moff == roff {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "replica not in sync after {secs}s: link up {up}, master offset {moff:?}, replica offset {roff:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn digest(c: &mut Conn) -> Vec<u8> {
    c.cmd(&["DEBUG", "DIGEST"])
}

fn fill_master(m: &mut Conn) {
    for l in [
        "SET str hello",
        "SET int 12345",
        "RPUSH list a b c 1 2 3",
        "HSET hash f1 v1 f2 v2",
        "SADD set x y z",
        "SADD iset 1 2 3",
        "ZADD zset 1 a 2.5 b -3 c",
        "XADD stream 1-1 f v",
        "XADD stream 2-1 g w",
        "XGROUP CREATE stream grp 0",
        "SET ttl v PX 500000",
        "HSET ttlhash a b",
        "EXPIRE ttlhash 10000",
        "PFADD hll a b c",
        "SETBIT bits 100 1",
        "SELECT 3",
        "SET db3key v3",
        "LPUSH db3list q",
        "SELECT 0",
    ] {
        let r = m.line(l);
        assert!(!r.starts_with(b"-"), "{l}: {}", show(&r));
    }
    // Hashtable / skiplist encodings.
    for i in 0..300 {
        m.cmd(&["HSET", "bighash", &format!("f{i}"), &format!("v{i}")]);
        m.cmd(&["ZADD", "bigzset", &i.to_string(), &format!("m{i}")]);
        m.cmd(&["SADD", "bigset", &format!("e{i}")]);
    }
}

fn writes_after_attach(m: &mut Conn) {
    for l in [
        "SET after1 v",
        "MULTI",
        "INCR int",
        "LPUSH list z",
        "HDEL hash f1",
        "EXEC",
        "EXPIRE str 100000",
        "DEL set",
        "EVAL \"redis.call('set', KEYS[1], 'fromscript'); return redis.call('incr', 'int')\" 1 scripted",
        "SELECT 3",
        "SET db3b x",
        "DEL db3key",
        "SELECT 0",
        "PERSIST ttl",
        "ZINCRBY zset 2 a",
        "XADD stream 3-1 h x",
        "SET gone v PX 1",
    ] {
        let r = m.line(l);
        assert!(!r.starts_with(b"-"), "{l}: {}", show(&r));
    }
}

fn attach(replica: &mut Conn, master_port: u16) {
    let r = replica.cmd(&["REPLICAOF", "127.0.0.1", &master_port.to_string()]);
    assert_eq!(s(&r), "+OK\r\n");
    let r = replica.cmd(&["REPLICAOF", "127.0.0.1", &master_port.to_string()]);
    assert_eq!(s(&r), "+OK Already connected to specified master\r\n");
}

fn full_sync(master_args: &[&str]) {
    let master = start_redis(master_args);
    let fer = start_ferrite(&[]);
    let mut m = Conn::connect(master.port).unwrap();
    let mut r = Conn::connect(fer.port).unwrap();
    r.line("SET stale_local_key x");
    fill_master(&mut m);
    attach(&mut r, master.port);
    writes_after_attach(&mut m);
    // `gone` (PX 1) is deleted on the master now (lazy expiry propagates its DEL).
    std::thread::sleep(Duration::from_millis(20));
    assert_eq!(s(&m.line("EXISTS gone")), ":0\r\n");
    wait_synced(&mut m, &mut r, 30);
    assert_eq!(digest(&mut m), digest(&mut r), "DEBUG DIGEST differs after the sync");
    assert_eq!(r.line("EXISTS stale_local_key"), b":0\r\n");
    assert_eq!(s(&r.line("GET scripted")), "$10\r\nfromscript\r\n");
    let pttl = s(&r.line("PTTL ttlhash"));
    let v: i64 = pttl.trim_start_matches(':').trim().parse().unwrap();
    assert!(v > 9_000_000 && v <= 10_000_000, "PTTL ttlhash {pttl}");
    assert_eq!(s(&r.line("TTL ttl")), ":-1\r\n");
    let mut r3 = Conn::connect(fer.port).unwrap();
    r3.line("SELECT 3");
    assert_eq!(s(&r3.line("GET db3b")), "$1\r\nx\r\n");
    assert_eq!(s(&r3.line("EXISTS db3key")), ":0\r\n");
    // More writes, then a WAIT on the master counts ferrite's ACK.
    m.line("SET later 1");
    let w = s(&m.line("WAIT 1 5000"));
    assert_eq!(w, ":1\r\n", "WAIT on the master");
    wait_synced(&mut m, &mut r, 10);
    assert_eq!(digest(&mut m), digest(&mut r));
    // ROLE slave form.
    let role = s(&r.line("ROLE"));
    assert_eq!(
        role,
        format!(
            "*5\r\n$5\r\nslave\r\n$9\r\n127.0.0.1\r\n:{}\r\n$9\r\nconnected\r\n:{}\r\n",
            master.port,
            info_field(&mut m, "master_repl_offset").unwrap()
        )
    );
    // The master sees ferrite as an online replica on its listening port.
    let slave0 = info_field(&mut m, "slave0").unwrap();
    assert!(slave0.contains(&format!("port={}", fer.port)) && slave0.contains("state=online"), "{slave0}");
    for (f, want) in [
        ("role", "slave".to_string()),
        ("master_host", "127.0.0.1".to_string()),
        ("master_port", master.port.to_string()),
        ("master_link_status", "up".to_string()),
        ("master_sync_in_progress", "0".to_string()),
        ("slave_read_only", "1".to_string()),
        ("slave_priority", "100".to_string()),
        ("replica_announced", "1".to_string()),
        ("connected_slaves", "0".to_string()),
        ("master_replid", info_field(&mut m, "master_replid").unwrap()),
    ] {
        assert_eq!(info_field(&mut r, f).as_deref(), Some(want.as_str()), "INFO field {f}");
    }
    let io: i64 = info_field(&mut r, "master_last_io_seconds_ago").unwrap().parse().unwrap();
    assert!((0..=10).contains(&io));
    assert_eq!(info_field(&mut r, "slave_read_repl_offset"), info_field(&mut r, "slave_repl_offset"));

    // REPLICAOF NO ONE keeps the data and accepts writes.
    assert_eq!(s(&r.line("REPLICAOF NO ONE")), "+OK\r\n");
    assert_eq!(digest(&mut m), digest(&mut r));
    assert_eq!(s(&r.line("SET after_promotion 1")), "+OK\r\n");
    assert_eq!(info_field(&mut r, "role").as_deref(), Some("master"));
    assert!(s(&r.line("ROLE")).starts_with("*3\r\n$6\r\nmaster\r\n"));
    // The old master's writes no longer arrive.
    m.line("SET after_unlink 1");
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(s(&r.line("EXISTS after_unlink")), ":0\r\n");
}

#[test]
fn full_sync_diskless_payload() {
    full_sync(&["--repl-diskless-sync", "yes", "--repl-diskless-sync-delay", "0"]);
}

#[test]
fn full_sync_disk_payload() {
    full_sync(&["--repl-diskless-sync", "no"]);
}

/// Client writes on a read-only replica: the same replies as a real Redis replica.
#[test]
fn readonly_replies_as_redis() {
    let master = start_redis(&["--repl-diskless-sync-delay", "0"]);
    let redis_replica = start_redis(&[]);
    let fer = start_ferrite(&[]);
    let mut m = Conn::connect(master.port).unwrap();
    m.line("SET k v");
    let mut rr = Conn::connect(redis_replica.port).unwrap();
    let mut fr = Conn::connect(fer.port).unwrap();
    for c in [&mut rr, &mut fr] {
        attach(c, master.port);
    }
    wait_synced(&mut m, &mut rr, 30);
    wait_synced(&mut m, &mut fr, 30);
    let script = [
        "SET k v2",
        "GET k",
        "INCR n",
        "DEL k",
        "PING",
        "MULTI",
        "SET k v3",
        "GET k",
        "EXEC",
        "MULTI",
        "GET k",
        "EXEC",
        "EVAL \"return 1\" 0",
        "EVAL_RO \"return redis.call('get', KEYS[1])\" 1 k",
        "EVAL \"return redis.call('set', 'x', '1')\" 0",
        "EVAL \"return redis.pcall('set', 'x', '1')\" 0",
        "EVAL \"#!lua\nreturn redis.call('get', 'x')\" 0",
        "EVAL \"#!lua flags=no-writes\nreturn redis.call('get', 'k')\" 0",
        "REPLICAOF 127.0.0.1 notaport",
        "REPLICAOF 127.0.0.1 70000",
        "REPLICAOF 127.0.0.1 -1",
        "SLAVEOF 127.0.0.1",
        "CONFIG GET replicaof",
        "WAIT 0 0",
        "WAIT 1 10",
        "FLUSHALL",
        "FLUSHDB",
        "PUBLISH ch m",
        "SCRIPT FLUSH",
        "FUNCTION FLUSH",
        "FUNCTION LOAD \"#!lua name=lib\nredis.register_function('f', function() return 1 end)\"",
        "SELECT 3",
        "SET k3 v",
        "SELECT 0",
        "EXPIRE k 10",
        "SWAPDB 0 1",
        "MOVE k 1",
        "COPY k k2",
        "SORT nolist",
        "SORT_RO nolist",
        "BLPOP l 0.01",
        "XREADGROUP GROUP g c STREAMS s >",
        "PFCOUNT h",
        "GEORADIUS g 0 0 1 km",
        "GEORADIUS_RO g 0 0 1 km",
        "OBJECT ENCODING k",
        "DBSIZE",
        "SET k v GET",
        "GETEX k PERSIST",
        "GETDEL k",
        "SPUBLISH ch m",
        "CLIENT NO-EVICT on",
        "CONFIG SET replica-read-only no",
        "SET local 1",
        "GET local",
        "CONFIG SET replica-read-only yes",
        "SET local 2",
        "CONFIG SET replica-serve-stale-data no",
        "GET k",
        "CONFIG SET replica-serve-stale-data yes",
    ];
    for resp in [2, 3] {
        if resp == 3 {
            rr.line("HELLO 3");
            fr.line("HELLO 3");
        }
        for l in script {
            let a = rr.line(l);
            let b = fr.line(l);
            assert_eq!(show(&a), show(&b), "reply to {l} (RESP{resp})");
        }
    }
    // MULTI; REPLICAOF NO ONE; EXEC works on both.
    for c in [&mut rr, &mut fr] {
        assert_eq!(s(&c.line("MULTI")), "+OK\r\n");
        assert_eq!(s(&c.line("REPLICAOF NO ONE")), "+QUEUED\r\n");
        assert_eq!(s(&c.line("EXEC")), "*1\r\n+OK\r\n");
        assert_eq!(s(&c.line("SET k mine")), "+OK\r\n");
    }
}

/// A stale replica (link down) with replica-serve-stale-data no: MASTERDOWN,
/// EXEC aborted, as the Redis test suite checks (unit/multi).
#[test]
fn masterdown_when_stale() {
    let redis = start_redis(&[]);
    let fer = start_ferrite(&[]);
    let dead = free_port();
    for port in [redis.port, fer.port] {
        let mut c = Conn::connect(port).unwrap();
        let mut c1 = Conn::connect(port).unwrap();
        c.line("CONFIG SET replica-serve-stale-data no");
        c.line("SET xx 1");
        c.line("MULTI");
        c.line("GET xx");
        assert_eq!(s(&c1.cmd(&["REPLICAOF", "127.0.0.1", &dead.to_string()])), "+OK\r\n");
        let e = s(&c.line("EXEC"));
        assert_eq!(
            e,
            "-EXECABORT Transaction discarded because of: MASTERDOWN Link with MASTER is down and replica-serve-stale-data is set to 'no'.\r\n",
            "port {port}"
        );
        assert_eq!(
            s(&c.line("PING")),
            "-MASTERDOWN Link with MASTER is down and replica-serve-stale-data is set to 'no'.\r\n"
        );
        assert!(s(&c.line("INFO replication")).contains("master_link_status:down"));
        // Scripts declaring flags: stale-allowed only with allow-stale.
        for l in [
            "EVAL \"#!lua flags=no-writes\nreturn 1\" 0",
            "EVAL \"#!lua flags=allow-stale,no-writes\nreturn 1\" 0",
            "EVAL \"#!lua flags=allow-stale\nreturn 1\" 0",
        ] {
            let want = if l.contains("allow-stale,no-writes") {
                ":1\r\n"
            } else if l.contains("no-writes") {
                "-MASTERDOWN Link with MASTER is down and replica-serve-stale-data is set to 'no'.\r\n"
            } else {
                "-READONLY You can't write against a read only replica.\r\n"
            };
            assert_eq!(s(&c.line(l)), want, "{l} on port {port}");
        }
        c.line("MULTI");
        assert_eq!(s(&c1.line("REPLICAOF NO ONE")), "+OK\r\n");
        c.line("GET xx");
        assert_eq!(s(&c.line("EXEC")), "*1\r\n$1\r\n1\r\n", "port {port}");
    }
}

fn spawn_redis_on(port: u16, dir: &TempDir) -> Child {
    let bin = which("redis-server").expect("redis-server not found in PATH: a real Redis 7.0 is needed");
    Command::new(bin)
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
        .args(["--repl-diskless-sync-delay", "0", "--enable-debug-command", "yes", "--dir"])
        .arg(&dir.0)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn redis-server")
}

fn connect_wait(port: u16) -> Conn {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let Ok(mut c) = Conn::connect(port) {
            if c.cmd(&["PING"]).starts_with(b"+PONG") {
                return c;
            }
        }
        assert!(Instant::now() < deadline, "redis-server did not start on port {port}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The master is killed and restarted (empty, new data) on the same port:
/// the replica reconnects and resynchronizes by itself.
#[test]
fn master_restart_resyncs() {
    let dir = TempDir::new("replicaof-master");
    let port = free_port();
    let mut child = spawn_redis_on(port, &dir);
    let mut m = connect_wait(port);
    m.line("SET before restart");
    let fer = start_ferrite(&[]);
    let mut r = Conn::connect(fer.port).unwrap();
    attach(&mut r, port);
    wait_synced(&mut m, &mut r, 30);
    assert_eq!(s(&r.line("GET before")), "$7\r\nrestart\r\n");
    let _ = child.kill();
    let _ = child.wait();
    // The link goes down.
    let deadline = Instant::now() + Duration::from_secs(10);
    while info_field(&mut r, "master_link_status").as_deref() != Some("down") {
        assert!(Instant::now() < deadline, "link still up after the master died");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(s(&r.line("GET before")), "$7\r\nrestart\r\n", "data kept while the master is down");
    let mut child = spawn_redis_on(port, &dir);
    let mut m = connect_wait(port);
    m.line("SET after restart2");
    wait_synced(&mut m, &mut r, 30);
    assert_eq!(s(&r.line("GET after")), "$8\r\nrestart2\r\n");
    assert_eq!(s(&r.line("EXISTS before")), ":0\r\n", "full resync replaced the data");
    assert_eq!(digest(&mut m), digest(&mut r));
    let _ = child.kill();
    let _ = child.wait();
}

/// Expiry on a replica, as Redis: a logically expired key is hidden from
/// clients but kept until the master's DEL arrives; a real Redis replica
/// gives the same replies.
#[test]
fn expired_keys_hidden_until_the_master_deletes_them() {
    let master = start_redis(&["--repl-diskless-sync-delay", "0"]);
    let redis_replica = start_redis(&[]);
    let fer = start_ferrite(&[]);
    let mut m = Conn::connect(master.port).unwrap();
    assert_eq!(s(&m.line("DEBUG SET-ACTIVE-EXPIRE 0")), "+OK\r\n");
    // Already expired when the master's RDB is made: a replica loads it anyway.
    m.line("SET pre v PX 1");
    std::thread::sleep(Duration::from_millis(20));
    let mut rr = Conn::connect(redis_replica.port).unwrap();
    let mut fr = Conn::connect(fer.port).unwrap();
    for c in [&mut rr, &mut fr] {
        attach(c, master.port);
    }
    m.line("SET short v PX 100");
    m.line("SET long v");
    wait_synced(&mut m, &mut rr, 30);
    wait_synced(&mut m, &mut fr, 30);
    std::thread::sleep(Duration::from_millis(300));
    for l in ["GET short", "EXISTS short", "TTL short", "DBSIZE", "GET long", "DBSIZE"] {
        assert_eq!(show(&rr.line(l)), show(&fr.line(l)), "reply to {l}");
    }
    assert_eq!(s(&fr.line("DBSIZE")), ":3\r\n", "the replica deletes nothing itself");
    // The master expires it on access and propagates the DEL.
    assert_eq!(s(&m.line("GET short")), "$-1\r\n");
    wait_synced(&mut m, &mut rr, 30);
    wait_synced(&mut m, &mut fr, 30);
    assert_eq!(s(&fr.line("DBSIZE")), ":2\r\n");
    assert_eq!(show(&rr.line("DBSIZE")), show(&fr.line("DBSIZE")));
    assert_eq!(s(&m.line("GET pre")), "$-1\r\n");
    wait_synced(&mut m, &mut rr, 30);
    wait_synced(&mut m, &mut fr, 30);
    assert_eq!(s(&fr.line("DBSIZE")), ":1\r\n");
    assert_eq!(show(&rr.line("DBSIZE")), show(&fr.line("DBSIZE")));
}

/// Chained: real Redis master -> ferrite -> real Redis replica. Ferrite
/// feeds the effects of its master's stream to its own replica.
#[test]
fn chained_replica_of_ferrite() {
    let master = start_redis(&["--repl-diskless-sync-delay", "0"]);
    let fer = start_ferrite(&[]);
    let sub = start_redis(&[]);
    let mut m = Conn::connect(master.port).unwrap();
    let mut f = Conn::connect(fer.port).unwrap();
    let mut r = Conn::connect(sub.port).unwrap();
    fill_master(&mut m);
    attach(&mut f, master.port);
    wait_synced(&mut m, &mut f, 30);
    // The sub-replica attaches to ferrite (a replica itself).
    assert_eq!(s(&r.cmd(&["REPLICAOF", "127.0.0.1", &fer.port.to_string()])), "+OK\r\n");
    let deadline = Instant::now() + Duration::from_secs(30);
    while info_field(&mut r, "master_link_status").as_deref() != Some("up") {
        assert!(Instant::now() < deadline, "the Redis replica of ferrite never came up");
        std::thread::sleep(Duration::from_millis(50));
    }
    writes_after_attach(&mut m);
    std::thread::sleep(Duration::from_millis(20));
    m.line("EXISTS gone");
    wait_synced(&mut m, &mut f, 30);
    let want = digest(&mut m);
    assert_eq!(digest(&mut f), want);
    let deadline = Instant::now() + Duration::from_secs(30);
    while digest(&mut r) != want {
        assert!(Instant::now() < deadline, "the Redis replica of ferrite did not converge");
        std::thread::sleep(Duration::from_millis(50));
    }
    // A new full sync of ferrite (another master) disconnects its replica, which resyncs.
    let master2 = start_redis(&["--repl-diskless-sync-delay", "0"]);
    let mut m2 = Conn::connect(master2.port).unwrap();
    m2.line("SET other master");
    attach(&mut f, master2.port);
    wait_synced(&mut m2, &mut f, 30);
    let want = digest(&mut m2);
    let deadline = Instant::now() + Duration::from_secs(30);
    while digest(&mut r) != want {
        assert!(Instant::now() < deadline, "the Redis replica of ferrite did not resync after ferrite's full sync");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A fresh server pointed at a dead master: ROLE and the INFO replication
/// fields are the same as Redis's.
#[test]
fn role_and_info_with_a_dead_master_match_redis() {
    let redis = start_redis(&[]);
    let fer = start_ferrite(&[]);
    let dead = free_port().to_string();
    let mut rc = Conn::connect(redis.port).unwrap();
    let mut fc = Conn::connect(fer.port).unwrap();
    for c in [&mut rc, &mut fc] {
        assert_eq!(s(&c.cmd(&["REPLICAOF", "127.0.0.1", &dead])), "+OK\r\n");
    }
    std::thread::sleep(Duration::from_millis(300));
    for f in [
        "role",
        "master_host",
        "master_port",
        "master_link_status",
        "master_last_io_seconds_ago",
        "master_sync_in_progress",
        "slave_read_repl_offset",
        "slave_repl_offset",
        "master_link_down_since_seconds",
        "slave_priority",
        "slave_read_only",
        "replica_announced",
        "connected_slaves",
        "master_repl_offset",
    ] {
        assert_eq!(info_field(&mut rc, f), info_field(&mut fc, f), "INFO field {f}");
    }
    let role = |c: &mut Conn| s(&c.line("ROLE")).replace("connecting", "connect");
    assert_eq!(role(&mut rc), role(&mut fc));
    // No SYNC from a replica whose link is down.
    for port in [redis.port, fer.port] {
        for l in ["PSYNC ? -1", "SYNC"] {
            assert_eq!(
                s(&Conn::connect(port).unwrap().line(l)),
                "-NOMASTERLINK Can't SYNC while not connected with my master\r\n",
                "{l} on port {port}"
            );
        }
    }
    for c in [&mut rc, &mut fc] {
        assert_eq!(s(&c.line("REPLICAOF NO ONE")), "+OK\r\n");
        assert_eq!(info_field(c, "role").as_deref(), Some("master"));
    }
}

/// A master with a password: `masterauth` (and `masteruser` with an ACL user).
#[test]
fn masterauth_and_masteruser() {
    let master = start_redis(&["--repl-diskless-sync-delay", "0", "--requirepass", "s3cret"]);
    let mut m = Conn::connect(master.port).unwrap();
    assert_eq!(s(&m.line("AUTH s3cret")), "+OK\r\n");
    m.line("ACL SETUSER repl on >replpass +@all ~*");
    m.line("SET k v");
    let fer = start_ferrite(&[]);
    let mut r = Conn::connect(fer.port).unwrap();
    // Without the password the link does not come up.
    attach(&mut r, master.port);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(info_field(&mut r, "master_link_status").as_deref(), Some("down"));
    assert_eq!(s(&r.line("CONFIG SET masterauth s3cret")), "+OK\r\n");
    wait_synced(&mut m, &mut r, 30);
    assert_eq!(s(&r.line("GET k")), "$1\r\nv\r\n");
    // With an ACL user.
    assert_eq!(s(&r.line("REPLICAOF NO ONE")), "+OK\r\n");
    assert_eq!(s(&r.line("CONFIG SET masteruser repl")), "+OK\r\n");
    assert_eq!(s(&r.line("CONFIG SET masterauth replpass")), "+OK\r\n");
    m.line("SET k2 v2");
    attach(&mut r, master.port);
    wait_synced(&mut m, &mut r, 30);
    assert_eq!(s(&r.line("GET k2")), "$2\r\nv2\r\n");
    assert_eq!(digest(&mut m), digest(&mut r));
}

/// With `appendonly yes` the replica's AOF holds the synced data set and
/// the stream: DEBUG LOADAOF gives back the master's data.
#[test]
fn aof_after_sync_has_the_master_data() {
    let master = start_redis(&["--repl-diskless-sync-delay", "0"]);
    let fer = start_ferrite(&["--appendonly", "yes"]);
    let mut m = Conn::connect(master.port).unwrap();
    let mut r = Conn::connect(fer.port).unwrap();
    r.line("SET local_only 1");
    fill_master(&mut m);
    attach(&mut r, master.port);
    writes_after_attach(&mut m);
    std::thread::sleep(Duration::from_millis(20));
    m.line("EXISTS gone");
    wait_synced(&mut m, &mut r, 30);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let inf = s(&r.line("INFO persistence"));
        if inf.contains("aof_rewrite_in_progress:0") && inf.contains("aof_rewrite_scheduled:0") {
            break;
        }
        assert!(Instant::now() < deadline, "AOF rewrite did not finish");
        std::thread::sleep(Duration::from_millis(50));
    }
    m.line("SET after_rewrite 1");
    wait_synced(&mut m, &mut r, 30);
    let want = digest(&mut m);
    assert_eq!(digest(&mut r), want);
    assert_eq!(s(&r.line("DEBUG LOADAOF")), "+OK\r\n");
    assert_eq!(digest(&mut r), want, "DEBUG LOADAOF on the replica");
}

/// `--replicaof HOST PORT` at start-up; a bad port refuses to start.
#[test]
fn replicaof_at_startup() {
    let master = start_redis(&["--repl-diskless-sync-delay", "0"]);
    let mut m = Conn::connect(master.port).unwrap();
    m.line("SET boot v");
    let port = master.port.to_string();
    let fer = start_ferrite(&["--replicaof", "127.0.0.1", &port]);
    let mut r = Conn::connect(fer.port).unwrap();
    wait_synced(&mut m, &mut r, 30);
    assert_eq!(s(&r.line("GET boot")), "$1\r\nv\r\n");
    assert_eq!(
        s(&r.line("CONFIG GET replicaof")),
        format!("*2\r\n$9\r\nreplicaof\r\n${}\r\n127.0.0.1 {port}\r\n", 10 + port.len())
    );
    let out = Command::new(support::ferrite_bin())
        .args(["--port", "0", "--replicaof", "127.0.0.1", "abc"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .expect("run ferrite");
    assert!(!out.status.success());
    assert!(s(&out.stderr).contains("Invalid master port"), "{}", s(&out.stderr));
}

/// Ferrite replicating from a ferrite master (disk-based `$<len>` payload,
/// ferrite's own stream, PINGs and GETACK from WAIT).
#[test]
fn ferrite_replica_of_ferrite() {
    let master = start_ferrite(&[]);
    let fer = start_ferrite(&[]);
    let mut m = Conn::connect(master.port).unwrap();
    let mut r = Conn::connect(fer.port).unwrap();
    fill_master(&mut m);
    attach(&mut r, master.port);
    writes_after_attach(&mut m);
    std::thread::sleep(Duration::from_millis(20));
    m.line("EXISTS gone");
    wait_synced(&mut m, &mut r, 30);
    assert_eq!(digest(&mut m), digest(&mut r));
    m.line("SET w 1");
    assert_eq!(s(&m.line("WAIT 1 5000")), ":1\r\n");
    assert_eq!(s(&r.line("GET w")), "$1\r\n1\r\n");
}

/// A peer that is not a well-behaved master (bad replies, truncated or
/// corrupt payloads, garbage in the stream): ferrite never panics, keeps
/// serving, and keeps retrying. The peer is a plain socket script, one
/// behaviour per connection (ferrite reconnects every second).
#[test]
fn bad_master_input_never_breaks_the_replica() {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    listener.set_nonblocking(true).unwrap();
    let empty_rdb: Vec<u8> = [&b"REDIS0009\xff"[..], &[0u8; 8]].concat();
    let with_len = |p: &[u8]| [format!("${}\r\n", p.len()).as_bytes(), p].concat();
    // What the peer sends after reading PSYNC (earlier commands get +OK / +PONG).
    let cases: Vec<Vec<u8>> = vec![
        b"-ERR no\r\n".to_vec(),
        b"+FULLRESYNC abc notanumber\r\n".to_vec(),
        b"+FULLRESYNC abc 0\r\n$abc\r\n".to_vec(),
        b"+FULLRESYNC abc 0\r\n$100\r\nREDIS".to_vec(),
        b"+FULLRESYNC abc 0\r\n$9\r\nREDIS0009".to_vec(),
        b"+FULLRESYNC abc 0\r\n$EOF:short\r\n".to_vec(),
        [&b"+FULLRESYNC abc 0\r\n"[..], &with_len(b"NOTREDIS0")].concat(),
        [&b"+FULLRESYNC abc 0\r\n"[..], &with_len(&empty_rdb), b"*1\r\n$99999999999\r\n"].concat(),
        [&b"+FULLRESYNC abc 0\r\n"[..], &with_len(&empty_rdb), b"*2\r\n$3\r\nSET\r\n$1\r\nk\r\n*x\r\n"].concat(),
        [&b"+FULLRESYNC abc 0\r\n"[..], &with_len(&empty_rdb), b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n"].concat(),
    ];
    let n = cases.len();
    let peer = std::thread::spawn(move || {
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut served = 0;
        while served < n && Instant::now() < deadline {
            let (mut sock, _) = match listener.accept() {
                Ok(x) => x,
                Err(_) => {
                    std::thread::sleep(Duration::from_millis(20));
                    continue;
                }
            };
            sock.set_nonblocking(false).unwrap();
            sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let mut got = Vec::new();
            let mut buf = [0u8; 4096];
            // Answer each command until PSYNC, then the case's bytes.
            let mut answered = 0;
            while let Ok(k) = sock.read(&mut buf) {
                if k == 0 {
                    break;
                }
                got.extend_from_slice(&buf[..k]);
                let cmds = got.windows(1).filter(|w| w[0] == b'*').count();
                let psync = got.windows(11).any(|w| w == b"$5\r\nPSYNC\r\n");
                while answered < cmds - usize::from(psync) {
                    let _ = sock.write_all(if answered == 0 { b"+PONG\r\n" } else { b"+OK\r\n" });
                    answered += 1;
                }
                if psync {
                    let _ = sock.write_all(&cases[served]);
                    std::thread::sleep(Duration::from_millis(200));
                    break;
                }
            }
            served += 1;
        }
        served
    });
    let fer = start_ferrite(&[]);
    let mut r = Conn::connect(fer.port).unwrap();
    attach(&mut r, port);
    let deadline = Instant::now() + Duration::from_secs(60);
    while !peer.is_finished() {
        assert_eq!(s(&r.line("PING")), "+PONG\r\n");
        assert!(Instant::now() < deadline, "the scripted peer did not see all its connections");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(peer.join().unwrap(), n, "ferrite stopped reconnecting");
    // The last case was a valid empty RDB and one SET.
    let deadline = Instant::now() + Duration::from_secs(10);
    while s(&r.line("GET k")) != "$1\r\nv\r\n" {
        assert!(Instant::now() < deadline, "the well-formed case was not applied");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(s(&r.line("PING")), "+PONG\r\n");
    assert_eq!(s(&r.line("REPLICAOF NO ONE")), "+OK\r\n");
}

/// While the RDB is being transferred: ROLE `sync`, INFO
/// `master_sync_in_progress:1` and the `master_sync_*` fields (a slowed
/// master: `rdb-key-save-delay`).
#[test]
fn sync_in_progress_fields() {
    let master = start_redis(&["--repl-diskless-sync", "no", "--rdb-key-save-delay", "200000"]);
    let mut m = Conn::connect(master.port).unwrap();
    for i in 0..10 {
        m.cmd(&["SET", &format!("k{i}"), "v"]);
    }
    let fer = start_ferrite(&[]);
    let mut r = Conn::connect(fer.port).unwrap();
    attach(&mut r, master.port);
    let deadline = Instant::now() + Duration::from_secs(10);
    // Disk-based: the payload is sent once the (slow) save ends; until then
    // the replica waits for it after +FULLRESYNC.
    while info_field(&mut r, "master_sync_in_progress").as_deref() != Some("1") {
        assert!(Instant::now() < deadline, "never saw the sync in progress");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(s(&r.line("ROLE")).contains("$4\r\nsync\r\n"));
    for f in ["master_sync_total_bytes", "master_sync_read_bytes", "master_sync_left_bytes", "master_sync_perc"] {
        assert!(info_field(&mut r, f).is_some(), "INFO field {f} during the transfer");
    }
    assert_eq!(info_field(&mut r, "master_link_status").as_deref(), Some("down"));
    m.cmd(&["CONFIG", "SET", "rdb-key-save-delay", "0"]);
    wait_synced(&mut m, &mut r, 30);
    assert_eq!(info_field(&mut r, "master_sync_total_bytes"), None);
    assert_eq!(digest(&mut m), digest(&mut r));
}

fn stat(c: &mut Conn, field: &str) -> i64 {
    let r = s(&c.cmd(&["INFO", "stats"]));
    r.lines().find_map(|l| l.strip_prefix(&format!("{field}:")).and_then(|v| v.trim().parse().ok())).unwrap_or(-1)
}

/// The link is killed by the master (CLIENT KILL TYPE replica) and writes
/// (one a transaction) happen meanwhile: the replica continues with
/// `+CONTINUE` (no new full sync) and ends with the master's data.
#[test]
fn partial_resync_after_a_lost_link() {
    let master = start_redis(&["--repl-diskless-sync-delay", "0"]);
    let fer = start_ferrite(&[]);
    let mut m = Conn::connect(master.port).unwrap();
    let mut r = Conn::connect(fer.port).unwrap();
    fill_master(&mut m);
    attach(&mut r, master.port);
    wait_synced(&mut m, &mut r, 30);
    assert_eq!(stat(&mut m, "sync_full"), 1);
    for round in 0..3 {
        assert_eq!(s(&m.line("CLIENT KILL TYPE replica")), ":1\r\n");
        // Writes while the replica is away are in the master's backlog.
        m.line(&format!("SET away{round} v"));
        m.line("MULTI");
        m.line("INCR int");
        m.line(&format!("LPUSH list r{round}"));
        m.line("EXEC");
        wait_synced(&mut m, &mut r, 30);
        assert_eq!(digest(&mut m), digest(&mut r), "round {round}");
    }
    assert_eq!(stat(&mut m, "sync_full"), 1, "no new full sync");
    assert!(stat(&mut m, "sync_partial_ok") >= 3, "partial syncs: {}", stat(&mut m, "sync_partial_ok"));
}

/// Clients blocked on keys get -UNBLOCKED when the server becomes a replica
/// (as Redis; Redis then closes their connection, ferrite does not).
#[test]
fn blocked_clients_unblocked_by_replicaof() {
    let redis = start_redis(&[]);
    let fer = start_ferrite(&[]);
    let dead = free_port().to_string();
    let mut replies = Vec::new();
    for port in [redis.port, fer.port] {
        let mut b = Conn::connect(port).unwrap();
        let mut c = Conn::connect(port).unwrap();
        b.send(&["BLPOP", "nolist", "10"]);
        let deadline = Instant::now() + Duration::from_secs(5);
        while !s(&c.line("INFO clients")).contains("blocked_clients:1") {
            assert!(Instant::now() < deadline, "BLPOP did not block on port {port}");
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(s(&c.cmd(&["REPLICAOF", "127.0.0.1", &dead])), "+OK\r\n");
        replies.push(s(&b.read_reply()));
        // (Redis also closes that connection; ferrite keeps it open.)
        assert!(s(&c.line("INFO clients")).contains("blocked_clients:0"));
        assert_eq!(s(&c.line("REPLICAOF NO ONE")), "+OK\r\n");
    }
    assert_eq!(
        replies[0],
        "-UNBLOCKED force unblock from blocking operation, instance state changed (master -> replica?)\r\n"
    );
    assert_eq!(replies[0], replies[1]);
}

/// A read-only blocking command on a replica (XREAD BLOCK) is woken by the
/// master's write arriving in the stream.
#[test]
fn xread_block_on_replica_woken_by_the_master() {
    let master = start_redis(&["--repl-diskless-sync-delay", "0"]);
    let fer = start_ferrite(&[]);
    let mut m = Conn::connect(master.port).unwrap();
    let mut r = Conn::connect(fer.port).unwrap();
    attach(&mut r, master.port);
    wait_synced(&mut m, &mut r, 30);
    let mut b = Conn::connect(fer.port).unwrap();
    b.send(&["XREAD", "BLOCK", "10000", "STREAMS", "s", "$"]);
    let deadline = Instant::now() + Duration::from_secs(5);
    while !s(&r.line("INFO clients")).contains("blocked_clients:1") {
        assert!(Instant::now() < deadline, "XREAD did not block");
        std::thread::sleep(Duration::from_millis(10));
    }
    m.line("XADD s 1-1 f v");
    let got = s(&b.read_reply());
    assert_eq!(got, "*1\r\n*2\r\n$1\r\ns\r\n*1\r\n*2\r\n$3\r\n1-1\r\n*2\r\n$1\r\nf\r\n$1\r\nv\r\n");
}

/// CLIENT KILL on a replica matches its master connection (TYPE master,
/// ADDR of the master, the old form) like Redis's master client: the link
/// drops and comes back with a partial resync. Replies compared with a
/// real Redis replica.
#[test]
fn client_kill_drops_the_master_link_like_redis() {
    let master = start_redis(&["--repl-diskless-sync-delay", "0"]);
    let fer = start_ferrite(&[]);
    let red = start_redis(&[]);
    let mut m = Conn::connect(master.port).unwrap();
    let mut f = Conn::connect(fer.port).unwrap();
    let mut r = Conn::connect(red.port).unwrap();
    fill_master(&mut m);
    attach(&mut f, master.port);
    attach(&mut r, master.port);
    wait_synced(&mut m, &mut f, 30);
    wait_synced(&mut m, &mut r, 30);
    let addr = format!("127.0.0.1:{}", master.port);
    let kills: [&[&str]; 3] =
        [&["CLIENT", "KILL", "TYPE", "master"], &["CLIENT", "KILL", "ADDR", &addr], &["CLIENT", "KILL", &addr]];
    for (round, k) in kills.iter().enumerate() {
        let before = stat(&mut m, "sync_partial_ok");
        let want = s(&r.cmd(k));
        assert_eq!(s(&f.cmd(k)), want, "{k:?}");
        // The same write reaches both after their reconnection.
        m.line(&format!("SET killed{round} v"));
        let deadline = Instant::now() + Duration::from_secs(30);
        while stat(&mut m, "sync_partial_ok") < before + 2 {
            assert!(Instant::now() < deadline, "no partial resyncs after {k:?}");
            std::thread::sleep(Duration::from_millis(50));
        }
        wait_synced(&mut m, &mut f, 30);
        wait_synced(&mut m, &mut r, 30);
        assert_eq!(digest(&mut f), digest(&mut m));
    }
    assert_eq!(stat(&mut m, "sync_full"), 2, "no new full sync");
    // Nothing else matches: the reply is Redis's.
    let none: &[&str] = &["CLIENT", "KILL", "127.0.0.1:1"];
    assert_eq!(s(&f.cmd(none)), s(&r.cmd(none)));
}

/// A writable replica expires the keys its own clients gave a TTL (Redis's
/// slaveKeysWithExpire), while keys from the master wait for the master's
/// DEL. Ferrite and a real Redis replica side by side.
#[test]
fn writable_replica_expires_its_own_keys_like_redis() {
    let master = start_redis(&["--repl-diskless-sync-delay", "0"]);
    let fer = start_ferrite(&[]);
    let red = start_redis(&[]);
    let mut m = Conn::connect(master.port).unwrap();
    m.cmd(&["DEBUG", "SET-ACTIVE-EXPIRE", "0"]);
    let mut got = Vec::new();
    for port in [red.port, fer.port] {
        let mut r = Conn::connect(port).unwrap();
        attach(&mut r, master.port);
        wait_synced(&mut m, &mut r, 30);
        r.cmd(&["CONFIG", "SET", "replica-read-only", "no"]);
        r.cmd(&["SELECT", "5"]);
        for k in ["key1", "key2", "key3"] {
            assert_eq!(s(&r.cmd(&["SET", k, "1", "PX", "300"])), "+OK\r\n");
        }
        got.push(s(&r.cmd(&["DBSIZE"])));
    }
    // Keys from the master with a TTL that passes: the master never expires
    // them (active expiry off), so the replicas keep them (hidden).
    m.cmd(&["SELECT", "6"]);
    m.cmd(&["SET", "from-master", "v", "PX", "100"]);
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut rs = Conn::connect(red.port).unwrap();
    let mut fs = Conn::connect(fer.port).unwrap();
    for c in [&mut rs, &mut fs] {
        c.cmd(&["SELECT", "5"]);
    }
    loop {
        let a = s(&rs.cmd(&["DBSIZE"]));
        let b = s(&fs.cmd(&["DBSIZE"]));
        if a == ":0\r\n" && b == ":0\r\n" {
            break;
        }
        assert!(Instant::now() < deadline, "own keys not expired: redis {a:?}, ferrite {b:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
    wait_synced(&mut m, &mut fs, 30);
    wait_synced(&mut m, &mut rs, 30);
    std::thread::sleep(Duration::from_millis(300));
    for c in [&mut rs, &mut fs] {
        c.cmd(&["SELECT", "6"]);
    }
    assert_eq!(s(&fs.cmd(&["DBSIZE"])), s(&rs.cmd(&["DBSIZE"])));
    assert_eq!(s(&fs.cmd(&["DBSIZE"])), ":1\r\n");
    assert_eq!(got[0], got[1]);
}

/// A ferrite master started with `master_args` and two replicas of it in sync, a ferrite and a real
/// redis-server: (the processes, kept alive by the caller; a connection to the master; one to each replica).
fn master_and_two_replicas(master_args: &[&str]) -> (Vec<support::Proc>, Conn, [Conn; 2]) {
    let m = start_ferrite(master_args);
    let fr = start_ferrite(&[]);
    let rr = start_redis(&[]);
    let mut mc = Conn::connect(m.port).unwrap();
    let mut replicas = [Conn::connect(fr.port).unwrap(), Conn::connect(rr.port).unwrap()];
    for r in replicas.iter_mut() {
        attach(r, m.port);
        wait_synced(&mut mc, r, 20);
    }
    (vec![m, fr, rr], mc, replicas)
}

/// An extended XPENDING reply without the idle times (the 6th line of each 7-line entry after the header).
fn strip_idle(v: &[u8]) -> Vec<String> {
    let text = s(v);
    let toks: Vec<&str> = text.split("\r\n").collect();
    let mut out = vec![toks[0].to_string()];
    out.extend(toks[1..].iter().enumerate().filter(|(i, _)| i % 7 != 5).map(|(_, t)| t.to_string()));
    out
}

/// XCLAIM / XAUTOCLAIM of entries that were deleted drop their pending entries; the replicas of a ferrite master
/// (a ferrite and a real redis-server) must drop them too (Redis's "Replication tests of XCLAIM with deleted
/// entries").
#[test]
fn xclaim_of_deleted_entries_reaches_replicas() {
    let (_procs, mut mc, mut replicas) = master_and_two_replicas(&[]);
    for autoclaim in [false, true] {
        mc.line("DEL x");
        for i in 1..=5 {
            mc.line(&format!("XADD x {i}-0 f v"));
        }
        mc.line("XGROUP CREATE x grp 0");
        mc.line("XREADGROUP GROUP grp Alice STREAMS x >");
        mc.line("XDEL x 2-0");
        mc.line("XDEL x 4-0");
        let r = if autoclaim {
            mc.line("XAUTOCLAIM x grp Bob 0 0-0")
        } else {
            mc.line("XCLAIM x grp Bob 0 1-0 2-0 3-0 4-0")
        };
        assert!(r.starts_with(b"*"), "{}", show(&r));
        let want = mc.line("XPENDING x grp - + 10 Alice");
        let want_bob = mc.line("XPENDING x grp - + 10 Bob");
        for r in replicas.iter_mut() {
            wait_synced(&mut mc, r, 20);
            // Without the idle times (they differ per server).
            let alice = strip_idle(&r.line("XPENDING x grp - + 10 Alice"));
            let bob = strip_idle(&r.line("XPENDING x grp - + 10 Bob"));
            assert_eq!(alice, strip_idle(&want), "autoclaim={autoclaim}: Alice's pending entries");
            assert_eq!(bob, strip_idle(&want_bob), "autoclaim={autoclaim}: Bob's pending entries");
        }
    }
}

/// `redis.set_repl` inside a script: REPL_NONE writes reach neither replicas nor the AOF, REPL_AOF only the AOF,
/// REPL_ALL both (Redis's "Test selective replication of certain Redis commands from Lua"), with a ferrite and a
/// real redis-server as replicas of a ferrite master.
#[test]
fn script_set_repl_selects_targets() {
    let (_procs, mut mc, mut replicas) = master_and_two_replicas(&["--appendonly", "yes"]);
    let script = "redis.call('set','a','1'); redis.set_repl(redis.REPL_NONE); redis.call('set','b','2'); \
                  redis.set_repl(redis.REPL_AOF); redis.call('set','c','3'); redis.set_repl(redis.REPL_ALL); \
                  redis.call('set','d','4')";
    assert_eq!(mc.cmd(&["EVAL", script, "0"]), b"$-1\r\n");
    // The next script starts with both targets again.
    assert_eq!(mc.cmd(&["EVAL", "redis.call('set','e','5')", "0"]), b"$-1\r\n");
    let mget = |c: &mut Conn| s(&c.cmd(&["MGET", "a", "b", "c", "d", "e"]));
    assert_eq!(mget(&mut mc), "*5\r\n$1\r\n1\r\n$1\r\n2\r\n$1\r\n3\r\n$1\r\n4\r\n$1\r\n5\r\n");
    for r in replicas.iter_mut() {
        wait_synced(&mut mc, r, 20);
        assert_eq!(mget(r), "*5\r\n$1\r\n1\r\n$-1\r\n$-1\r\n$1\r\n4\r\n$1\r\n5\r\n", "replica");
    }
    assert_eq!(mc.cmd(&["DEBUG", "LOADAOF"]), b"+OK\r\n");
    assert_eq!(mget(&mut mc), "*5\r\n$1\r\n1\r\n$-1\r\n$1\r\n3\r\n$1\r\n4\r\n$1\r\n5\r\n", "master after LOADAOF");
}

/// `bind-source-addr`: the replication link to the master leaves from that address (the master lists the
/// replica with it), as Redis's; CONFIG GET/SET like Redis's string setting.
#[test]
fn bind_source_addr_sets_the_replication_link_source() {
    let m = start_ferrite(&[]);
    let fr = start_ferrite(&[]);
    let rr = start_redis(&[]);
    let mut mc = Conn::connect(m.port).unwrap();
    for p in [&fr, &rr] {
        let mut c = Conn::connect(p.port).unwrap();
        assert_eq!(s(&c.cmd(&["CONFIG", "GET", "bind-source-addr"])), "*2\r\n$16\r\nbind-source-addr\r\n$0\r\n\r\n");
        assert_eq!(c.cmd(&["CONFIG", "SET", "bind-source-addr", "127.0.0.2"]), b"+OK\r\n");
        attach(&mut c, m.port);
        wait_synced(&mut mc, &mut c, 20);
    }
    let info = s(&mc.cmd(&["INFO", "replication"]));
    let slaves: Vec<&str> = info.lines().filter(|l| l.starts_with("slave")).collect();
    assert_eq!(slaves.len(), 2, "{info}");
    for l in slaves {
        assert!(l.contains("ip=127.0.0.2,"), "{l}");
    }
}
