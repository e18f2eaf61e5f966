//! PSYNC version 2 with ferrite in a chain of real `redis-server` 7.0
//! nodes: a replica proxies its master's stream byte for byte (every node
//! of a chain has the same `master_repl_offset` and `master_replid`), a
//! promoted replica keeps its old id as `master_replid2` up to
//! `second_repl_offset`, so its former master and its former siblings
//! continue with `+CONTINUE` (no full sync), in both directions (ferrite
//! promoted, Redis replicas continuing with it; Redis promoted, ferrite
//! continuing with it), and across a restart from dump.rdb (its `repl-id`,
//! `repl-offset`, `repl-stream-db` aux fields: a restarted replica
//! continues, a restarted master lets its replicas continue). Every wait is bounded; all servers listen on
//! 127.0.0.1 only.

mod support;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use support::{ferrite_bin, free_port, start_ferrite, start_redis, Conn, TempDir};

fn s(r: &[u8]) -> String {
    String::from_utf8_lossy(r).into_owned()
}

fn field(c: &mut Conn, section: &str, name: &str) -> String {
    let r = s(&c.cmd(&["INFO", section]));
    r.lines().find_map(|l| l.strip_prefix(&format!("{name}:")).map(|v| v.trim().to_string())).unwrap_or_default()
}

fn num(c: &mut Conn, section: &str, name: &str) -> i64 {
    field(c, section, name).parse().unwrap_or(-1)
}

fn ok(r: Vec<u8>) {
    assert_eq!(s(&r), "+OK\r\n");
}

/// Wait (bounded) until every node has the same replication id and offset,
/// and every replica's link is up.
fn wait_same(nodes: &mut [&mut Conn], what: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let mut ids = Vec::new();
        let mut up = true;
        for c in nodes.iter_mut() {
            ids.push((field(c, "replication", "master_replid"), num(c, "replication", "master_repl_offset")));
            if field(c, "replication", "role") == "slave" {
                up &= field(c, "replication", "master_link_status") == "up";
            }
        }
        if up && ids.windows(2).all(|w| w[0] == w[1]) {
            return;
        }
        assert!(Instant::now() < deadline, "{what}: nodes not in sync after 30s: {ids:?} (links up: {up})");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn wait_link(c: &mut Conn, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while field(c, "replication", "master_link_status") != "up" {
        assert!(Instant::now() < deadline, "{what}: link never came up");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn writes(m: &mut Conn, tag: &str) {
    for i in 0..20 {
        m.cmd(&["INCR", "counter"]);
        m.cmd(&["SET", &format!("{tag}:{i}"), "v"]);
    }
    m.line("MULTI");
    m.cmd(&["RPUSH", "list", tag]);
    m.cmd(&["SELECT", "2"]);
    m.cmd(&["SET", "in2", tag]);
    m.line("EXEC");
    m.cmd(&["SELECT", "0"]);
}

fn digest(c: &mut Conn) -> Vec<u8> {
    c.cmd(&["DEBUG", "DIGEST"])
}

/// Redis master -> ferrite -> Redis sub-replica: same ids and offsets on
/// all three. Ferrite promoted: the sub-replica continues, and the former
/// master (a real Redis) turned into ferrite's replica continues too.
#[test]
fn ferrite_promoted_in_a_chain_keeps_its_replicas_partial() {
    let master = start_redis(&["--repl-diskless-sync-delay", "0"]);
    let fer = start_ferrite(&[]);
    let sub = start_redis(&["--repl-diskless-sync-delay", "0"]);
    let (mut m, mut f, mut r) =
        (Conn::connect(master.port).unwrap(), Conn::connect(fer.port).unwrap(), Conn::connect(sub.port).unwrap());
    writes(&mut m, "before");
    ok(f.cmd(&["REPLICAOF", "127.0.0.1", &master.port.to_string()]));
    wait_link(&mut f, "ferrite");
    ok(r.cmd(&["REPLICAOF", "127.0.0.1", &fer.port.to_string()]));
    wait_link(&mut r, "sub-replica");
    writes(&mut m, "chained");
    wait_same(&mut [&mut m, &mut f, &mut r], "chain");
    let old_id = field(&mut m, "replication", "master_replid");
    assert_eq!(num(&mut f, "replication", "repl_backlog_active"), 1, "a replica keeps a backlog");
    let want = digest(&mut m);
    assert_eq!(digest(&mut f), want);
    assert_eq!(digest(&mut r), want);

    // Promotion: ferrite starts a new history; the old id is its secondary one.
    let off = num(&mut f, "replication", "master_repl_offset");
    ok(f.cmd(&["REPLICAOF", "NO", "ONE"]));
    assert_eq!(field(&mut f, "replication", "role"), "master");
    assert_eq!(field(&mut f, "replication", "master_replid2"), old_id);
    assert_eq!(num(&mut f, "replication", "second_repl_offset"), off + 1);
    assert_ne!(field(&mut f, "replication", "master_replid"), old_id);
    // The former master joins as a replica of ferrite.
    ok(m.cmd(&["REPLICAOF", "127.0.0.1", &fer.port.to_string()]));
    wait_link(&mut m, "former master");
    wait_link(&mut r, "sub-replica after the promotion");
    writes(&mut f, "promoted");
    wait_same(&mut [&mut f, &mut m, &mut r], "after the promotion");
    // Only the sub-replica's first sync was a full one; both reconnections continued.
    assert_eq!(num(&mut f, "stats", "sync_full"), 1, "full syncs served by ferrite");
    assert!(num(&mut f, "stats", "sync_partial_ok") >= 2, "partial syncs: {}", num(&mut f, "stats", "sync_partial_ok"));
    // The Redis nodes took the new id with the old one as their secondary.
    for c in [&mut m, &mut r] {
        assert_eq!(field(c, "replication", "master_replid2"), old_id);
        assert_eq!(num(c, "replication", "second_repl_offset"), off + 1);
    }
    let want = digest(&mut f);
    assert_eq!(digest(&mut m), want);
    assert_eq!(digest(&mut r), want);
}

/// Redis master with a Redis replica and a ferrite replica; the Redis
/// replica is promoted and ferrite, pointed at it, continues (`+CONTINUE`
/// with the new id: ferrite's secondary id becomes the old one).
#[test]
fn ferrite_continues_with_a_promoted_redis_sibling() {
    let master = start_redis(&["--repl-diskless-sync-delay", "0"]);
    let sibling = start_redis(&["--repl-diskless-sync-delay", "0"]);
    let fer = start_ferrite(&[]);
    let (mut m, mut sb, mut f) =
        (Conn::connect(master.port).unwrap(), Conn::connect(sibling.port).unwrap(), Conn::connect(fer.port).unwrap());
    ok(sb.cmd(&["REPLICAOF", "127.0.0.1", &master.port.to_string()]));
    ok(f.cmd(&["REPLICAOF", "127.0.0.1", &master.port.to_string()]));
    wait_link(&mut sb, "sibling");
    wait_link(&mut f, "ferrite");
    writes(&mut m, "one");
    wait_same(&mut [&mut m, &mut sb, &mut f], "siblings");
    let old_id = field(&mut m, "replication", "master_replid");
    ok(sb.cmd(&["REPLICAOF", "NO", "ONE"]));
    let new_id = field(&mut sb, "replication", "master_replid");
    let second = num(&mut sb, "replication", "second_repl_offset");
    ok(f.cmd(&["REPLICAOF", "127.0.0.1", &sibling.port.to_string()]));
    wait_link(&mut f, "ferrite after the switch");
    writes(&mut sb, "two");
    wait_same(&mut [&mut sb, &mut f], "after the switch");
    assert_eq!(num(&mut sb, "stats", "sync_full"), 0, "the promoted sibling served no full sync");
    assert_eq!(num(&mut sb, "stats", "sync_partial_ok"), 1);
    assert_eq!(field(&mut f, "replication", "master_replid"), new_id);
    assert_eq!(field(&mut f, "replication", "master_replid2"), old_id);
    assert_eq!(num(&mut f, "replication", "second_repl_offset"), second);
    assert_eq!(digest(&mut f), digest(&mut sb));
    // And the old master (now behind the new history) gets a full sync
    // only if it has writes of its own; here it continues too.
    ok(m.cmd(&["REPLICAOF", "127.0.0.1", &fer.port.to_string()]));
    wait_link(&mut m, "old master under ferrite");
    writes(&mut sb, "three");
    wait_same(&mut [&mut sb, &mut f, &mut m], "old master chained under ferrite");
    assert_eq!(num(&mut f, "stats", "sync_full"), 0, "ferrite served no full sync");
    assert_eq!(digest(&mut m), digest(&mut sb));
}

/// A ferrite process on a fixed port and directory (restartable), killed on drop.
struct Fer(Child);

impl Drop for Fer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn_ferrite_on(port: u16, dir: &TempDir, extra: &[&str]) -> (Fer, Conn) {
    spawn_ferrite_logged(port, dir, extra, Stdio::null())
}

fn spawn_ferrite_logged(port: u16, dir: &TempDir, extra: &[&str], stderr: Stdio) -> (Fer, Conn) {
    let child = Command::new(ferrite_bin())
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--enable-debug-command", "yes", "--dir"])
        .arg(&dir.0)
        .args(extra)
        .stdout(Stdio::null())
        .stderr(stderr)
        .spawn()
        .expect("spawn ferrite");
    let mut fer = Fer(child);
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let Ok(Some(st)) = fer.0.try_wait() {
            panic!("ferrite exited during startup with {st}");
        }
        if let Ok(mut c) = Conn::connect(port) {
            if c.cmd(&["PING"]).starts_with(b"+PONG") {
                return (fer, c);
            }
        }
        assert!(Instant::now() < deadline, "ferrite did not start on port {port}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// SHUTDOWN SAVE, then wait (bounded) for the process to exit.
fn shutdown(fer: &mut Fer, c: &mut Conn) {
    c.send(&["SHUTDOWN", "SAVE"]);
    let deadline = Instant::now() + Duration::from_secs(15);
    while fer.0.try_wait().ok().flatten().is_none() {
        assert!(Instant::now() < deadline, "ferrite did not exit after SHUTDOWN");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A ferrite replica saved on shutdown and restarted with `replicaof`
/// continues (no full sync), in the database its master's stream had selected.
#[test]
fn restarted_replica_continues_from_its_rdb() {
    let master = start_redis(&["--repl-diskless-sync-delay", "0"]);
    let mut m = Conn::connect(master.port).unwrap();
    let dir = TempDir::new("psync2-replica");
    let port = free_port();
    let (mut fer, mut f) = spawn_ferrite_on(port, &dir, &[]);
    ok(f.cmd(&["REPLICAOF", "127.0.0.1", &master.port.to_string()]));
    wait_link(&mut f, "replica");
    m.cmd(&["SELECT", "5"]);
    m.cmd(&["SET", "a", "1"]);
    m.cmd(&["SET", "b", "2"]);
    wait_same(&mut [&mut m, &mut f], "before the restart");
    shutdown(&mut fer, &mut f);
    // Written while the replica is down, in the same database (no new SELECT).
    m.cmd(&["SET", "c", "3"]);
    m.cmd(&["INCR", "b"]);
    let mp = format!("127.0.0.1 {}", master.port);
    let (_fer2, mut f) = spawn_ferrite_on(port, &dir, &["--replicaof", &mp]);
    wait_link(&mut f, "restarted replica");
    wait_same(&mut [&mut m, &mut f], "after the restart");
    assert_eq!(num(&mut m, "stats", "sync_full"), 1, "the restart did not need a full sync");
    assert_eq!(num(&mut m, "stats", "sync_partial_ok"), 1);
    f.cmd(&["SELECT", "5"]);
    assert_eq!(s(&f.cmd(&["GET", "c"])), "$1\r\n3\r\n");
    assert_eq!(s(&f.cmd(&["GET", "b"])), "$1\r\n3\r\n");
    assert_eq!(digest(&mut f), digest(&mut m));
}

/// A ferrite master saved on shutdown and restarted on the same port: its
/// Redis replica continues (the saved id became ferrite's secondary id).
#[test]
fn restarted_master_lets_its_replica_continue() {
    let dir = TempDir::new("psync2-master");
    let port = free_port();
    let (mut fer, mut f) = spawn_ferrite_on(port, &dir, &[]);
    let sub = start_redis(&[]);
    let mut r = Conn::connect(sub.port).unwrap();
    ok(r.cmd(&["REPLICAOF", "127.0.0.1", &port.to_string()]));
    wait_link(&mut r, "replica");
    writes(&mut f, "one");
    wait_same(&mut [&mut f, &mut r], "before the restart");
    let id = field(&mut f, "replication", "master_replid");
    let off = num(&mut f, "replication", "master_repl_offset");
    shutdown(&mut fer, &mut f);
    let (_fer2, mut f) = spawn_ferrite_on(port, &dir, &[]);
    assert_eq!(field(&mut f, "replication", "master_replid2"), id);
    assert_eq!(num(&mut f, "replication", "second_repl_offset"), off + 1);
    assert_eq!(num(&mut f, "replication", "master_repl_offset"), off);
    wait_link(&mut r, "replica after the master's restart");
    writes(&mut f, "two");
    wait_same(&mut [&mut f, &mut r], "after the restart");
    assert_eq!(num(&mut f, "stats", "sync_full"), 0, "no full sync after the restart");
    assert_eq!(num(&mut f, "stats", "sync_partial_ok"), 1);
    assert_eq!(digest(&mut r), digest(&mut f));
}

/// A sub-replica attaching to a replica gets no SELECT in the proxied
/// stream (the master selected its db before): the payload's
/// `repl-stream-db` says where the stream goes on. Both ways: a Redis
/// sub-replica of ferrite, ferrite as a sub-replica of a Redis replica.
#[test]
fn sub_replica_starts_in_the_stream_db() {
    let master = start_redis(&["--repl-diskless-sync-delay", "0"]);
    let fer = start_ferrite(&[]);
    let mid = start_redis(&["--repl-diskless-sync-delay", "0"]);
    let (mut m, mut f, mut r) =
        (Conn::connect(master.port).unwrap(), Conn::connect(fer.port).unwrap(), Conn::connect(mid.port).unwrap());
    ok(f.cmd(&["REPLICAOF", "127.0.0.1", &master.port.to_string()]));
    ok(r.cmd(&["REPLICAOF", "127.0.0.1", &master.port.to_string()]));
    wait_link(&mut f, "ferrite");
    wait_link(&mut r, "redis replica");
    m.cmd(&["SELECT", "9"]);
    m.cmd(&["SET", "a", "1"]);
    wait_same(&mut [&mut m, &mut f, &mut r], "two replicas");
    // A Redis sub-replica of ferrite, and a ferrite sub-replica of Redis.
    let sub_r = start_redis(&[]);
    let sub_f = start_ferrite(&[]);
    let (mut sr, mut sf) = (Conn::connect(sub_r.port).unwrap(), Conn::connect(sub_f.port).unwrap());
    ok(sr.cmd(&["REPLICAOF", "127.0.0.1", &fer.port.to_string()]));
    ok(sf.cmd(&["REPLICAOF", "127.0.0.1", &mid.port.to_string()]));
    wait_link(&mut sr, "redis sub-replica");
    wait_link(&mut sf, "ferrite sub-replica");
    // No SELECT in the stream after these attaches: the writes land in db 9.
    m.cmd(&["SET", "b", "2"]);
    m.cmd(&["INCR", "a"]);
    wait_same(&mut [&mut m, &mut f, &mut r, &mut sr, &mut sf], "sub-replicas");
    for c in [&mut f, &mut r, &mut sr, &mut sf] {
        c.cmd(&["SELECT", "9"]);
        assert_eq!(s(&c.cmd(&["MGET", "a", "b"])), "*2\r\n$1\r\n2\r\n$1\r\n2\r\n");
        c.cmd(&["SELECT", "0"]);
        assert_eq!(s(&c.cmd(&["DBSIZE"])), ":0\r\n");
    }
}

/// Keys that expired while a ferrite master was down are dropped when it
/// loads its file, their DELs put in its backlog after the saved offset: a
/// Redis replica continues and deletes them too (same digest).
#[test]
fn restarted_master_sends_the_dels_of_keys_expired_in_its_rdb() {
    let dir = TempDir::new("psync2-expire");
    let port = free_port();
    let (mut fer, mut f) = spawn_ferrite_on(port, &dir, &[]);
    let sub = start_redis(&[]);
    let mut r = Conn::connect(sub.port).unwrap();
    ok(r.cmd(&["REPLICAOF", "127.0.0.1", &port.to_string()]));
    wait_link(&mut r, "replica");
    f.cmd(&["DEBUG", "SET-ACTIVE-EXPIRE", "0"]);
    for j in 0..64 {
        f.cmd(&["SELECT", &(j % 16).to_string()]);
        f.cmd(&["SET", &j.to_string(), "v", "PX", "150"]);
    }
    f.cmd(&["SELECT", "0"]);
    f.cmd(&["SET", "kept", "v"]);
    wait_same(&mut [&mut f, &mut r], "before the restart");
    let off = num(&mut f, "replication", "master_repl_offset");
    std::thread::sleep(Duration::from_millis(300));
    shutdown(&mut fer, &mut f);
    let (_fer2, mut f) = spawn_ferrite_on(port, &dir, &[]);
    assert_eq!(num(&mut f, "persistence", "rdb_last_load_keys_expired"), 64);
    let hist = num(&mut f, "replication", "repl_backlog_histlen");
    assert!(hist > 0, "the DELs are in the backlog");
    assert_eq!(num(&mut f, "replication", "master_repl_offset"), off + hist);
    assert_eq!(num(&mut f, "replication", "repl_backlog_first_byte_offset"), off + 1);
    wait_link(&mut r, "replica after the restart");
    wait_same(&mut [&mut f, &mut r], "after the restart");
    assert_eq!(num(&mut f, "stats", "sync_full"), 0);
    assert_eq!(num(&mut f, "stats", "sync_partial_ok"), 1);
    assert_eq!(digest(&mut r), digest(&mut f));
    assert_eq!(s(&r.cmd(&["DBSIZE"])), ":1\r\n");
}

/// FAILOVER on a ferrite master with two Redis replicas: the target (a real
/// Redis) accepts `PSYNC ... FAILOVER` and becomes the master, ferrite its
/// replica; the other replica continues with the new master. No full sync.
#[test]
fn failover_from_ferrite_to_a_redis_replica() {
    let fer = start_ferrite(&[]);
    let r1 = start_redis(&[]);
    let r2 = start_redis(&[]);
    let (mut f, mut a, mut b) =
        (Conn::connect(fer.port).unwrap(), Conn::connect(r1.port).unwrap(), Conn::connect(r2.port).unwrap());
    let fp = fer.port.to_string();
    ok(a.cmd(&["REPLICAOF", "127.0.0.1", &fp]));
    ok(b.cmd(&["REPLICAOF", "127.0.0.1", &fp]));
    wait_link(&mut a, "r1");
    wait_link(&mut b, "r2");
    writes(&mut f, "before");
    wait_same(&mut [&mut f, &mut a, &mut b], "before the failover");
    a.cmd(&["CONFIG", "RESETSTAT"]);
    ok(f.cmd(&["FAILOVER", "TO", "127.0.0.1", &r1.port.to_string()]));
    let deadline = Instant::now() + Duration::from_secs(30);
    while field(&mut f, "replication", "master_failover_state") != "no-failover" {
        assert!(Instant::now() < deadline, "the failover did not end");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(field(&mut a, "replication", "role"), "master");
    assert_eq!(field(&mut f, "replication", "role"), "slave");
    assert_eq!(field(&mut f, "replication", "master_port"), r1.port.to_string());
    ok(b.cmd(&["REPLICAOF", "127.0.0.1", &r1.port.to_string()]));
    wait_link(&mut f, "ferrite under the new master");
    wait_link(&mut b, "r2 under the new master");
    writes(&mut a, "after");
    wait_same(&mut [&mut a, &mut f, &mut b], "after the failover");
    assert_eq!(num(&mut a, "stats", "sync_partial_ok"), 2);
    assert_eq!(num(&mut a, "stats", "sync_full"), 0);
    assert_eq!(digest(&mut f), digest(&mut a));
    assert_eq!(digest(&mut b), digest(&mut a));
    // Writes on ferrite are refused now (a read-only replica).
    assert!(s(&f.cmd(&["SET", "x", "y"])).starts_with("-READONLY"));
}

/// FAILOVER on a Redis master to a ferrite replica: ferrite takes over on
/// `PSYNC <replid> <offset> FAILOVER`, the old master continues as its
/// replica. Then FAILOVER back from ferrite (to any replica).
#[test]
fn failover_from_redis_to_ferrite_and_back() {
    let red = start_redis(&[]);
    let fer = start_ferrite(&[]);
    let (mut m, mut f) = (Conn::connect(red.port).unwrap(), Conn::connect(fer.port).unwrap());
    ok(f.cmd(&["REPLICAOF", "127.0.0.1", &red.port.to_string()]));
    wait_link(&mut f, "ferrite");
    writes(&mut m, "one");
    wait_same(&mut [&mut m, &mut f], "before the failover");
    ok(m.cmd(&["FAILOVER", "TO", "127.0.0.1", &fer.port.to_string()]));
    let deadline = Instant::now() + Duration::from_secs(30);
    while field(&mut m, "replication", "master_failover_state") != "no-failover" {
        assert!(Instant::now() < deadline, "the failover did not end");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(field(&mut f, "replication", "role"), "master");
    wait_link(&mut m, "old master");
    writes(&mut f, "two");
    wait_same(&mut [&mut f, &mut m], "after the failover");
    assert_eq!(num(&mut f, "stats", "sync_full"), 0);
    assert_eq!(num(&mut f, "stats", "sync_partial_ok"), 1);
    assert_eq!(digest(&mut f), digest(&mut m));
    // And back, to any replica.
    ok(f.cmd(&["FAILOVER"]));
    let deadline = Instant::now() + Duration::from_secs(30);
    while field(&mut f, "replication", "master_failover_state") != "no-failover" {
        assert!(Instant::now() < deadline, "the failover back did not end");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(field(&mut m, "replication", "role"), "master");
    wait_link(&mut f, "ferrite as a replica again");
    writes(&mut m, "three");
    wait_same(&mut [&mut m, &mut f], "after the failover back");
    assert_eq!(digest(&mut f), digest(&mut m));
}

/// FAILOVER's argument errors and refusals are Redis's.
#[test]
fn failover_errors_match_redis() {
    let red = start_redis(&[]);
    let fer = start_ferrite(&[]);
    let (mut r, mut f) = (Conn::connect(red.port).unwrap(), Conn::connect(fer.port).unwrap());
    let cases: &[&[&str]] = &[
        &["FAILOVER"],
        &["FAILOVER", "ABORT"],
        &["FAILOVER", "ABORT", "TIMEOUT", "5"],
        &["FAILOVER", "TO", "127.0.0.1", "1", "TO", "127.0.0.1", "2"],
        &["FAILOVER", "TO", "127.0.0.1", "abc"],
        &["FAILOVER", "TO", "127.0.0.1"],
        &["FAILOVER", "FORCE", "TIMEOUT", "100"],
        &["FAILOVER", "TO", "127.0.0.1", "1", "FORCE"],
        &["FAILOVER", "TIMEOUT", "0"],
        &["FAILOVER", "TIMEOUT", "-5"],
        &["FAILOVER", "TIMEOUT", "x"],
        &["FAILOVER", "FORCE", "FORCE"],
        &["FAILOVER", "bogus"],
        &["FAILOVER", "TO", "127.0.0.1", "1"],
        &["FAILOVER", "TIMEOUT", "100"],
    ];
    for c in cases {
        assert_eq!(s(&f.cmd(c)), s(&r.cmd(c)), "{c:?}");
    }
    // On a replica.
    let dead = free_port().to_string();
    ok(r.cmd(&["REPLICAOF", "127.0.0.1", &dead]));
    ok(f.cmd(&["REPLICAOF", "127.0.0.1", &dead]));
    for c in [&["FAILOVER"][..], &["FAILOVER", "TO", "127.0.0.1", "1"][..]] {
        assert_eq!(s(&f.cmd(c)), s(&r.cmd(c)), "{c:?}");
    }
    let c = ["PSYNC", "0123456789012345678901234567890123456789", "1", "FAILOVER"];
    assert_eq!(s(&f.cmd(&c)), s(&r.cmd(&c)));
}

/// DEBUG REPLICATE sends a command to the replicas only (the master does
/// not run it), DEBUG CHANGE-REPL-ID gives a new id with no secondary one;
/// a replica whose master's command fails logs Redis's "== CRITICAL =="
/// line naming the error and the command (a writable replica diverged).
/// Ferrite and a real Redis as the master of a Redis replica, then ferrite
/// as the diverging replica.
#[test]
fn debug_replicate_and_divergence_log() {
    for master_is_ferrite in [true, false] {
        let master = if master_is_ferrite { start_ferrite(&[]) } else { start_redis(&[]) };
        let rep = start_redis(&[]);
        let (mut m, mut r) = (Conn::connect(master.port).unwrap(), Conn::connect(rep.port).unwrap());
        ok(r.cmd(&["REPLICAOF", "127.0.0.1", &master.port.to_string()]));
        wait_link(&mut r, "replica");
        ok(m.cmd(&["DEBUG", "REPLICATE", "SET", "only-on-replica", "v"]));
        m.cmd(&["SET", "both", "v"]);
        wait_same(&mut [&mut m, &mut r], "after DEBUG REPLICATE");
        assert_eq!(s(&m.cmd(&["EXISTS", "only-on-replica", "both"])), ":1\r\n");
        assert_eq!(s(&r.cmd(&["EXISTS", "only-on-replica", "both"])), ":2\r\n");
        let id = field(&mut m, "replication", "master_replid");
        ok(m.cmd(&["DEBUG", "CHANGE-REPL-ID"]));
        assert_ne!(field(&mut m, "replication", "master_replid"), id);
        assert_eq!(field(&mut m, "replication", "master_replid2"), "0".repeat(40));
    }
    let master = start_redis(&[]);
    let mut m = Conn::connect(master.port).unwrap();
    let dir = TempDir::new("psync2-critical");
    let log = dir.0.join("ferrite.log");
    let port = free_port();
    let file = std::fs::File::create(&log).unwrap();
    let (_fer, mut f) = spawn_ferrite_logged(port, &dir, &["--replica-read-only", "no"], Stdio::from(file));
    ok(f.cmd(&["REPLICAOF", "127.0.0.1", &master.port.to_string()]));
    wait_link(&mut f, "ferrite");
    ok(f.cmd(&["SET", "number2", "foo"]));
    m.cmd(&["INCRBY", "number2", "1"]);
    ok(m.cmd(&["DEBUG", "REPLICATE", "fake-command-1"]));
    wait_same(&mut [&mut m, &mut f], "after the failing commands");
    assert_eq!(s(&f.cmd(&["GET", "number2"])), "$3\r\nfoo\r\n");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        let crit: Vec<&str> = text.lines().filter(|l| l.contains("== CRITICAL ==")).collect();
        if crit.len() == 2 {
            assert!(crit[0].contains("'ERR value is not an integer or out of range'") && crit[0].contains("'incrby'"));
            assert!(crit[1].contains("fake-command-1") && crit[1].contains("'<unknown>'"), "{}", crit[1]);
            break;
        }
        assert!(Instant::now() < deadline, "no CRITICAL lines in the log: {text}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A master that accepts the connection but never answers the handshake:
/// after `repl-timeout` the replica logs Redis's "Timeout connecting to the
/// MASTER..." (as a real Redis replica does) and keeps retrying.
#[test]
fn handshake_timeout_logged_like_redis() {
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let sport = silent.local_addr().unwrap().port().to_string();
    // Accepted connections are kept open and never answered.
    let held = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let h2 = held.clone();
    silent.set_nonblocking(true).unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stop2 = stop.clone();
    let acceptor = std::thread::spawn(move || {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !stop2.load(std::sync::atomic::Ordering::Relaxed) && Instant::now() < deadline {
            if let Ok((sock, _)) = silent.accept() {
                h2.lock().unwrap().push(sock);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    });
    let dir = TempDir::new("psync2-hstimeout");
    let log = dir.0.join("ferrite.log");
    let file = std::fs::File::create(&log).unwrap();
    let (_fer, mut f) = spawn_ferrite_logged(free_port(), &dir, &["--repl-timeout", "1"], Stdio::from(file));
    ok(f.cmd(&["REPLICAOF", "127.0.0.1", &sport]));
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if text.contains("Timeout connecting to the MASTER...") {
            break;
        }
        assert!(Instant::now() < deadline, "no handshake timeout in the log: {text}");
        std::thread::sleep(Duration::from_millis(100));
    }
    let role = s(&f.cmd(&["ROLE"]));
    assert!(role.contains("slave"), "{role}");
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let _ = acceptor.join();
    drop(held);
}
