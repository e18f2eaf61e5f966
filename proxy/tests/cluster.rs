//! The proxy in front of a real 3-master, 1-replica Redis Cluster (started by ferrite-testkit on loopback) with
//! the embedded Ferrite store as the other side.

mod common;

use common::*;
use ferrite_testkit::{encode, Cluster, Conn, Reply};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn bulk(s: &str) -> Vec<u8> {
    format!("${}\r\n{s}\r\n", s.len()).into_bytes()
}

#[test]
fn routing_pipelines_split_transactions_and_redirects() {
    let cluster = Cluster::start(3, 1);
    let proxy = start_proxy_cluster(&cluster.seed(), &["--metrics-listen", "127.0.0.1:0"]);
    let mut c = proxy.conn();

    // Keys on every master, through the proxy, land on the owning master.
    let keys: Vec<String> = (0..30).map(|i| format!("key:{i}")).collect();
    for k in &keys {
        assert_eq!(c.cmd(&["SET", k, k]), b"+OK\r\n");
    }
    let mut masters_used = std::collections::HashSet::new();
    for k in &keys {
        let owner = cluster.master_of_slot(slot(k));
        masters_used.insert(owner);
        assert_eq!(Conn::connect(owner).unwrap().cmd(&["GET", k]), bulk(k), "key {k} on its master");
    }
    assert_eq!(masters_used.len(), 3, "keys spread over the 3 masters");

    // A pipeline across backends keeps request order.
    let mut cmds: Vec<Vec<Vec<u8>>> = Vec::new();
    for (i, k) in keys.iter().enumerate() {
        cmds.push(vec![b"GET".to_vec(), k.clone().into_bytes()]);
        cmds.push(vec![b"ECHO".to_vec(), format!("e{i}").into_bytes()]);
        cmds.push(vec![b"INCR".to_vec(), format!("ctr:{i}").into_bytes()]);
    }
    let replies = c.pipeline(&cmds);
    for (i, k) in keys.iter().enumerate() {
        assert_eq!(replies[3 * i], bulk(k));
        assert_eq!(replies[3 * i + 1], bulk(&format!("e{i}")));
        assert_eq!(replies[3 * i + 2], b":1\r\n");
    }

    // Multi-key commands split over slots and merged in order.
    let mut mset = vec!["MSET".to_string()];
    for i in 0..10 {
        mset.push(format!("m{i}"));
        mset.push(format!("v{i}"));
    }
    assert_eq!(c.cmd(&mset), b"+OK\r\n");
    let mut mget = vec!["MGET".to_string()];
    for i in 0..10 {
        mget.push(format!("m{i}"));
    }
    mget.push("missing".into());
    let r = Reply::parse(&c.cmd(&mget));
    assert_eq!(r.items().len(), 11);
    for i in 0..10 {
        assert_eq!(r.items()[i].as_bytes(), Some(format!("v{i}").as_bytes()));
    }
    assert_eq!(r.items()[10], Reply::Nil);
    assert_eq!(c.cmd(&["EXISTS", "m0", "m1", "m2", "nope", "m0"]), b":4\r\n");
    assert_eq!(c.cmd(&["TOUCH", "m0", "m5", "nope"]), b":2\r\n");
    assert_eq!(c.cmd(&["DEL", "m0", "m1", "m2", "nope"]), b":3\r\n");
    assert_eq!(c.cmd(&["UNLINK", "m3", "m4"]), b":2\r\n");
    // Other cross-slot commands: Redis's CROSSSLOT error.
    assert_eq!(c.cmd(&["SUNION", "a", "b"]), b"-CROSSSLOT Keys in request don't hash to the same slot\r\n");
    assert_eq!(c.cmd(&["RENAME", "a", "b"]), b"-CROSSSLOT Keys in request don't hash to the same slot\r\n");
    assert_eq!(c.cmd(&["SUNION", "{t}a", "{t}b"]), b"*0\r\n");

    // Keyless fan-out.
    let total: i64 = cluster
        .master_ports()
        .iter()
        .map(|&p| Reply::parse(&Conn::connect(p).unwrap().cmd(&["DBSIZE"])).as_int().unwrap())
        .sum();
    assert_eq!(Reply::parse(&c.cmd(&["DBSIZE"])).as_int(), Some(total));
    let all = Reply::parse(&c.cmd(&["KEYS", "key:*"]));
    assert_eq!(all.items().len(), 30);
    // SCAN visits every node; the cursor encodes the node.
    let mut seen = std::collections::HashSet::new();
    let mut cursor = "0".to_string();
    for _ in 0..1000 {
        let r = Reply::parse(&c.cmd(&["SCAN", &cursor, "MATCH", "key:*", "COUNT", "100"]));
        cursor = String::from_utf8(r.items()[0].as_bytes().unwrap().to_vec()).unwrap();
        for k in r.items()[1].items() {
            seen.insert(k.as_bytes().unwrap().to_vec());
        }
        if cursor == "0" {
            break;
        }
    }
    assert_eq!(cursor, "0");
    assert_eq!(seen.len(), 30);

    // Scripts are routed by their keys; SCRIPT LOAD reaches every upstream master.
    assert_eq!(c.cmd(&["EVAL", "return redis.call('GET', KEYS[1])", "1", "key:3"]), bulk("key:3"));
    let sha = Reply::parse(&c.cmd(&["SCRIPT", "LOAD", "return redis.call('GET', KEYS[1])"]));
    let sha = String::from_utf8(sha.as_bytes().expect("sha").to_vec()).unwrap();
    for k in ["key:1", "key:2", "key:4", "key:5"] {
        assert_eq!(c.cmd(&["EVALSHA", &sha, "1", k]), bulk(k));
    }
    assert_eq!(c.cmd(&["SCRIPT", "EXISTS", &sha]), b"*1\r\n:1\r\n");
    assert_eq!(c.cmd(&["SCRIPT", "FLUSH"]), b"+OK\r\n");
    assert_eq!(c.cmd(&["SCRIPT", "EXISTS", &sha]), b"*1\r\n:0\r\n");
    assert_eq!(
        c.cmd(&["EVAL", "return 1", "2", "a", "b"]),
        b"-CROSSSLOT Keys in request don't hash to the same slot\r\n"
    );

    // MULTI/EXEC pinned to the owner of the first key's slot.
    assert_eq!(c.cmd(&["MULTI"]), b"+OK\r\n");
    assert_eq!(c.cmd(&["SET", "{u1}a", "1"]), b"+QUEUED\r\n");
    assert_eq!(c.cmd(&["INCR", "{u1}b"]), b"+QUEUED\r\n");
    assert_eq!(c.cmd(&["EXEC"]), b"*2\r\n+OK\r\n:1\r\n");
    // WATCH + a change from another client aborts.
    let mut other = proxy.conn();
    assert_eq!(c.cmd(&["WATCH", "{u1}a"]), b"+OK\r\n");
    assert_eq!(other.cmd(&["SET", "{u1}a", "2"]), b"+OK\r\n");
    assert_eq!(c.cmd(&["MULTI"]), b"+OK\r\n");
    assert_eq!(c.cmd(&["SET", "{u1}a", "3"]), b"+QUEUED\r\n");
    assert_eq!(c.cmd(&["EXEC"]), b"*-1\r\n");
    assert_eq!(c.cmd(&["GET", "{u1}a"]), bulk("2"));
    // A key on another node inside the transaction: CROSSSLOT, then EXECABORT.
    let far = (0..100)
        .map(|i| format!("far{i}"))
        .find(|k| cluster.master_of_slot(slot(k)) != cluster.master_of_slot(slot("{u1}a")));
    let far = far.unwrap();
    assert_eq!(c.cmd(&["MULTI"]), b"+OK\r\n");
    assert_eq!(c.cmd(&["SET", "{u1}a", "4"]), b"+QUEUED\r\n");
    assert_eq!(c.cmd(&["SET", &far, "x"]), b"-CROSSSLOT Keys in request don't hash to the same slot\r\n");
    assert_eq!(c.cmd(&["EXEC"]), b"-EXECABORT Transaction discarded because of previous errors.\r\n");
    assert_eq!(c.cmd(&["GET", "{u1}a"]), bulk("2"));

    // Blocking commands on a dedicated connection; other clients go on meanwhile.
    let p = proxy.port;
    let t = std::thread::spawn(move || {
        let mut b = Conn::connect(p).unwrap();
        b.cmd(&["BLPOP", "q1", "5"])
    });
    sleep_ms(200);
    assert_eq!(other.cmd(&["PING"]), b"+PONG\r\n");
    assert_eq!(other.cmd(&["RPUSH", "q1", "job"]), b":1\r\n");
    assert_eq!(t.join().unwrap(), b"*2\r\n$2\r\nq1\r\n$3\r\njob\r\n");

    // MOVED after a real slot migration in the upstream.
    let k = "key:7";
    let s = slot(k);
    let from = cluster.master_of_slot(s);
    let to = cluster.master_ports().into_iter().find(|&x| x != from).unwrap();
    cluster.move_slot(s, to, None);
    assert_eq!(c.cmd(&["GET", k]), bulk(k));
    assert_eq!(c.cmd(&["SET", k, "after-move"]), b"+OK\r\n");
    assert_eq!(Conn::connect(to).unwrap().cmd(&["GET", k]), bulk("after-move"));

    // ASK while a slot is half-migrated: keys on both sides stay readable through the proxy.
    let s2 = slot("key:11");
    let from2 = cluster.master_of_slot(s2);
    let to2 = cluster.master_ports().into_iter().find(|&x| x != from2).unwrap();
    let ask_keys: Vec<String> = (0..200).map(|i| format!("{{key:11}}:{i}")).collect();
    for k in &ask_keys {
        assert_eq!(c.cmd(&["SET", k, k]), b"+OK\r\n");
    }
    let stop = Arc::new(AtomicBool::new(false));
    let stop2 = stop.clone();
    let reader = std::thread::spawn(move || {
        let mut r = Conn::connect(p).unwrap();
        let mut n = 0;
        while !stop2.load(Ordering::Relaxed) && n < 200_000 {
            for k in ask_keys.iter().step_by(7) {
                assert_eq!(r.cmd(&["GET", k]), bulk(k), "GET {k} during migration");
            }
            n += 1;
        }
        n
    });
    cluster.move_slot(s2, to2, Some(Duration::from_millis(500)));
    stop.store(true, Ordering::Relaxed);
    assert!(reader.join().unwrap() > 0);
    let m = fetch_metrics(&proxy);
    assert!(m.contains("ferrite_proxy_redirects_total{kind=\"moved\"}"), "moved counted:\n{m}");
    assert!(m.contains("ferrite_proxy_redirects_total{kind=\"ask\"}"), "ask counted");
}

#[test]
fn failover_and_reshard_under_load_without_failed_requests() {
    let cluster = Cluster::start(3, 1);
    let proxy = start_proxy_cluster(&cluster.seed(), &["--metrics-listen", "127.0.0.1:0"]);
    let port = proxy.port;
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let mut workers = Vec::new();
    for w in 0..4 {
        let stop = stop.clone();
        let done = done.clone();
        workers.push(std::thread::spawn(move || {
            let mut c = Conn::connect(port).unwrap();
            let deadline = Instant::now() + Duration::from_secs(120);
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                let k = format!("load:{w}:{}", i % 500);
                let v = format!("{i}");
                let r = c.cmd(&["SET", &k, &v]);
                assert_eq!(r, b"+OK\r\n", "SET {k} failed: {}", ferrite_testkit::show(&r));
                let r = c.cmd(&["GET", &k]);
                assert_eq!(r, bulk(&v), "GET {k}");
                i += 1;
                done.fetch_add(1, Ordering::Relaxed);
            }
            i
        }));
    }
    sleep_ms(500);
    // Fail over one master to its replica.
    let topo = cluster.topology();
    let master = topo.iter().find(|n| n.master && !n.slots.is_empty()).unwrap();
    let replica = topo.iter().find(|n| n.master_id.as_deref() == Some(master.id.as_str())).unwrap().port;
    cluster.failover(replica);
    sleep_ms(500);
    // Reshard 100 slots between two masters with redis-cli.
    let masters = cluster.master_ports();
    cluster.reshard(masters[0], masters[1], 100);
    sleep_ms(500);
    stop.store(true, Ordering::Relaxed);
    let mut total = 0;
    for w in workers {
        total += w.join().expect("a client request failed during failover/reshard");
    }
    assert!(total > 100, "load ran ({total} iterations)");
}

#[test]
fn slot_states_mirror_pause_and_pubsub_across_sides() {
    let cluster = Cluster::start(3, 0);
    let proxy = start_proxy_cluster(&cluster.seed(), &["--pause-timeout-ms", "3000"]);
    let mut c = proxy.conn();
    let k = "state:key";
    let s = slot(k);
    let upstream_owner = cluster.master_of_slot(s);
    assert_eq!(c.cmd(&["SET", k, "up"]), b"+OK\r\n");
    assert_eq!(admin(&mut c, &["EPOCH"]).as_int(), Some(0));

    // Mirror on while upstream owns the slot: writes reach Ferrite too.
    let r = admin(&mut c, &["SETSLOTS", "1", "upstream", "1", &s.to_string()]);
    assert_eq!(r.as_int(), Some(1));
    assert_eq!(c.cmd(&["SET", k, "mirrored"]), b"+OK\r\n");
    assert_eq!(c.cmd(&["RPUSH", "{state:key}l", "a", "b"]), b":2\r\n");
    sleep_ms(200);
    // Flip to Ferrite: the mirrored writes are there, the older one is not.
    assert_eq!(admin(&mut c, &["SETSLOTS", "2", "ferrite", "1", &s.to_string()]).as_int(), Some(2));
    assert_eq!(c.cmd(&["GET", k]), bulk("mirrored"));
    assert_eq!(c.cmd(&["LRANGE", "{state:key}l", "0", "-1"]), b"*2\r\n$1\r\na\r\n$1\r\nb\r\n");
    // Now Ferrite owns it and mirrors back to upstream.
    assert_eq!(c.cmd(&["SET", k, "from-ferrite"]), b"+OK\r\n");
    sleep_ms(200);
    assert_eq!(Conn::connect(upstream_owner).unwrap().cmd(&["GET", k]), bulk("from-ferrite"));
    let stats = admin(&mut c, &["STATS"]);
    let get = |name: &str| {
        let it = stats.items();
        it.chunks(2).find(|p| p[0].as_bytes() == Some(name.as_bytes())).and_then(|p| p[1].as_int()).unwrap()
    };
    assert!(get("mirror_ok") >= 3, "mirror_ok counted");
    assert_eq!(get("mirror_failures"), 0);
    // Other slots stay upstream.
    assert_eq!(c.cmd(&["SET", "other", "x"]), b"+OK\r\n");
    assert_eq!(Conn::connect(cluster.master_of_slot(slot("other"))).unwrap().cmd(&["GET", "other"]), bulk("x"));

    // Pause: a pipeline keeps its order, queued requests go to the new owner after the flip.
    assert_eq!(admin(&mut c, &["SETSLOTS", "3", "paused", "0", &s.to_string()]).as_int(), Some(3));
    let p = proxy.port;
    let t = std::thread::spawn(move || {
        let mut w = Conn::connect(p).unwrap();
        let cmds: Vec<Vec<Vec<u8>>> = vec![
            vec![b"INCR".to_vec(), b"{state:key}n".to_vec()],
            vec![b"GET".to_vec(), b"other".to_vec()],
            vec![b"INCR".to_vec(), b"{state:key}n".to_vec()],
        ];
        let t0 = Instant::now();
        let r = w.pipeline(&cmds);
        (r, t0.elapsed())
    });
    let paused_now = |c: &mut Conn| {
        let st = admin(c, &["STATS"]);
        st.items().chunks(2).find(|p| p[0].as_bytes() == Some(b"paused_now")).and_then(|p| p[1].as_int()).unwrap()
    };
    ferrite_testkit::wait_for(Duration::from_secs(10), "both INCRs queued on the paused slot", || {
        (paused_now(&mut c) == 2).then_some(())
    });
    sleep_ms(100);
    assert_eq!(admin(&mut c, &["SETSLOTS", "4", "upstream", "0", &s.to_string()]).as_int(), Some(4));
    let (r, waited) = t.join().unwrap();
    assert_eq!(r, vec![b":1\r\n".to_vec(), bulk("x"), b":2\r\n".to_vec()]);
    assert!(waited >= Duration::from_millis(100), "requests waited for the pause ({waited:?})");
    assert_eq!(Conn::connect(upstream_owner).unwrap().cmd(&["GET", "{state:key}n"]), bulk("2"));

    // Pub/sub: a subscriber through the proxy gets messages published on either side.
    let mut sub = proxy.conn();
    assert_eq!(sub.cmd(&["SUBSCRIBE", "news"]), b"*3\r\n$9\r\nsubscribe\r\n$4\r\nnews\r\n:1\r\n");
    // Published directly on an upstream node.
    Conn::connect(cluster.master_ports()[2]).unwrap().cmd(&["PUBLISH", "news", "from-upstream"]);
    assert_eq!(sub.read_reply(), b"*3\r\n$7\r\nmessage\r\n$4\r\nnews\r\n$13\r\nfrom-upstream\r\n");
    // Published through the proxy with the channel's slot owned by Ferrite.
    let cs = slot("news").to_string();
    assert_eq!(admin(&mut c, &["SETSLOTS", "5", "ferrite", "0", &cs]).as_int(), Some(5));
    assert!(Reply::parse(&c.cmd(&["PUBLISH", "news", "from-ferrite"])).as_int().unwrap() >= 1);
    assert_eq!(sub.read_reply(), b"*3\r\n$7\r\nmessage\r\n$4\r\nnews\r\n$12\r\nfrom-ferrite\r\n");
    assert_eq!(sub.cmd(&["PING"]), b"*2\r\n$4\r\npong\r\n$0\r\n\r\n");
    assert!(sub.cmd(&["GET", "x"]).starts_with(b"-ERR Can't execute 'get'"));
    assert_eq!(sub.cmd(&["UNSUBSCRIBE"]), b"*3\r\n$11\r\nunsubscribe\r\n$4\r\nnews\r\n:0\r\n");
    assert_eq!(sub.cmd(&["GET", "nokey"]), b"$-1\r\n");

    // Mirror order under concurrency: many clients overwrite one key; both sides end with the same value.
    let ms = slot("{mirror}").to_string();
    assert_eq!(admin(&mut c, &["SETSLOTS", "6", "ferrite", "1", &ms]).as_int(), Some(6));
    let p = proxy.port;
    let writers: Vec<_> = (0..4)
        .map(|w| {
            std::thread::spawn(move || {
                let mut x = Conn::connect(p).unwrap();
                for i in 0..300 {
                    let cmds: Vec<Vec<Vec<u8>>> = (0..5)
                        .map(|j| vec![b"SET".to_vec(), b"{mirror}k".to_vec(), format!("{w}-{i}-{j}").into_bytes()])
                        .collect();
                    for r in x.pipeline(&cmds) {
                        assert_eq!(r, b"+OK\r\n");
                    }
                }
            })
        })
        .collect();
    for w in writers {
        w.join().unwrap();
    }
    let owner = cluster.master_of_slot(slot("{mirror}"));
    let mut direct = Conn::connect(owner).unwrap();
    let final_ferrite = c.cmd(&["GET", "{mirror}k"]);
    ferrite_testkit::wait_for(Duration::from_secs(10), "the mirror to catch up", || {
        (direct.cmd(&["GET", "{mirror}k"]) == final_ferrite).then_some(())
    });
    sleep_ms(300);
    assert_eq!(direct.cmd(&["GET", "{mirror}k"]), final_ferrite, "mirror applied the writes in the owner's order");
    let stats = admin(&mut c, &["STATS"]);
    let failures = stats.items().chunks(2).find(|p| p[0].as_bytes() == Some(b"mirror_failures")).unwrap()[1].as_int();
    assert_eq!(failures, Some(0));
    let _ = encode(&["x"]);
}

#[test]
fn unreachable_upstream_node_errors_then_recovers() {
    let mut cluster = Cluster::start(3, 0);
    let proxy = start_proxy_cluster(&cluster.seed(), &["--request-timeout-ms", "1500"]);
    let mut c = proxy.conn();
    let down = cluster.master_of_slot(slot("kd"));
    let other = (0..100).map(|i| format!("ko{i}")).find(|k| cluster.master_of_slot(slot(k)) != down).unwrap();
    assert_eq!(c.cmd(&["SET", "kd", "1"]), b"+OK\r\n");
    assert_eq!(c.cmd(&["SET", &other, "1"]), b"+OK\r\n");
    cluster.kill_node(down);
    let t0 = Instant::now();
    let r = c.cmd(&["GET", "kd"]);
    assert!(
        r.starts_with(format!("-CLUSTERDOWN upstream node 127.0.0.1:{down} is unreachable").as_bytes())
            || r.starts_with(b"-ERR upstream node"),
        "{}",
        ferrite_testkit::show(&r)
    );
    assert!(t0.elapsed() < Duration::from_secs(10));
    // Slots of the other masters are served meanwhile (before the cluster declares the node failed).
    assert_eq!(c.cmd(&["GET", &other]), bulk("1"));
    // The node comes back with its data dir: the proxy reconnects by itself.
    cluster.restart_node(down);
    cluster.wait_consistent(Duration::from_secs(60));
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let r = c.cmd(&["SET", "kd", "2"]);
        if r == b"+OK\r\n" {
            break;
        }
        assert!(Instant::now() < deadline, "no recovery: {}", ferrite_testkit::show(&r));
        sleep_ms(100);
    }
    assert_eq!(c.cmd(&["GET", "kd"]), bulk("2"));
}

#[test]
fn ferrite_side_may_be_a_cluster() {
    // A Redis Cluster stands in for a clustered Ferrite: same discovery and redirects on the Ferrite side.
    let cluster = Cluster::start(3, 0);
    let proxy = start_proxy(&["--ferrite", &cluster.seed(), "--ferrite-cluster"]);
    let mut c = proxy.conn();
    for i in 0..30 {
        let k = format!("fc:{i}");
        assert_eq!(c.cmd(&["SET", &k, &k]), b"+OK\r\n");
        assert_eq!(Conn::connect(cluster.master_of_slot(slot(&k))).unwrap().cmd(&["GET", &k]), bulk(&k));
    }
    let s = slot("fc:3");
    let to = cluster.master_ports().into_iter().find(|&p| p != cluster.master_of_slot(s)).unwrap();
    cluster.move_slot(s, to, None);
    assert_eq!(c.cmd(&["GET", "fc:3"]), bulk("fc:3"));
    assert_eq!(Reply::parse(&c.cmd(&["DBSIZE"])).as_int(), Some(30));
    assert_eq!(c.cmd(&["FERRITE.PROXY", "SLOTS"]), b"*1\r\n*4\r\n:0\r\n:16383\r\n$7\r\nferrite\r\n:0\r\n");
}

/// Mirror writes to the upstream follow `-MOVED` when the upstream master of the slot fails over during the
/// rollback window (the proxy's map still names the demoted master): none is counted as failed, and they reach the
/// new master in the order the owner acknowledged them (the list on the new master is the list on Ferrite).
#[test]
fn mirror_writes_follow_an_upstream_failover() {
    let cluster = Cluster::start(3, 1);
    let proxy = start_proxy_cluster(&cluster.seed(), &[]);
    let mut c = proxy.conn();
    let k = "mirrorfo:key";
    let list = "{mirrorfo:key}list";
    let s = slot(k);
    let owner = cluster.master_of_slot(s);
    let topo = cluster.topology();
    let owner_id = topo.iter().find(|n| n.port == owner).unwrap().id.clone();
    let replica = topo.iter().find(|n| n.master_id.as_deref() == Some(owner_id.as_str())).unwrap().port;
    assert_eq!(admin(&mut c, &["SETSLOTS", "1", "ferrite", "1", &s.to_string()]).as_int(), Some(1));
    assert_eq!(c.cmd(&["SET", k, "before"]), b"+OK\r\n");
    ferrite_testkit::wait_for(Duration::from_secs(10), "the first mirror write", || {
        (Conn::connect(owner).unwrap().cmd(&["GET", k]) == bulk("before")).then_some(())
    });
    cluster.failover(replica);
    // Written right after the failover, pipelined: the first mirror attempts go to the demoted master, answer
    // -MOVED, and are re-sent while later writes keep coming.
    let n = 300;
    for round in 0..3 {
        let cmds: Vec<Vec<Vec<u8>>> = (0..n / 3)
            .map(|i| vec![b"RPUSH".to_vec(), list.as_bytes().to_vec(), format!("{}", round * (n / 3) + i).into_bytes()])
            .collect();
        for r in c.pipeline(&cmds) {
            assert_eq!(r[0], b':', "{}", String::from_utf8_lossy(&r));
        }
    }
    assert_eq!(c.cmd(&["SET", k, "after"]), b"+OK\r\n");
    ferrite_testkit::wait_for(Duration::from_secs(10), "the mirror writes on the new master", || {
        (Conn::connect(replica).unwrap().cmd(&["GET", k]) == bulk("after")).then_some(())
    });
    let on_ferrite = c.cmd(&["LRANGE", list, "0", "-1"]);
    let on_new_master = Conn::connect(replica).unwrap().cmd(&["LRANGE", list, "0", "-1"]);
    assert_eq!(
        String::from_utf8_lossy(&on_new_master),
        String::from_utf8_lossy(&on_ferrite),
        "mirror writes reached the new master in another order"
    );
    let stats = admin(&mut c, &["STATS"]);
    let failures = stats.items().chunks(2).find(|p| p[0].as_bytes() == Some(b"mirror_failures")).unwrap()[1].as_int();
    assert_eq!(failures, Some(0), "mirror writes failed during the failover:\n{}", proxy.log());
}

/// An SSUBSCRIBE made through the proxy follows its slot when the upstream moves the slot to another master
/// (Redis drops the subscription on the old owner with an unsolicited `sunsubscribe`): messages published after
/// the move still arrive, and the client never sees the backend's unsubscribe.
#[test]
fn shard_subscription_follows_an_upstream_slot_move() {
    let cluster = Cluster::start(3, 0);
    let proxy = start_proxy_cluster(&cluster.seed(), &[]);
    let ch = "shardmove:chan";
    let s = slot(ch);
    let mut sub = proxy.conn();
    assert_eq!(sub.cmd(&["SSUBSCRIBE", ch]), b"*3\r\n$10\r\nssubscribe\r\n$14\r\nshardmove:chan\r\n:1\r\n".to_vec());
    let mut c = proxy.conn();
    let msg =
        |i: usize| format!("*3\r\n$8\r\nsmessage\r\n$14\r\nshardmove:chan\r\n${}\r\nm{i}\r\n", 1 + i.to_string().len());
    assert_eq!(c.cmd(&["SPUBLISH", ch, "m0"]), b":1\r\n");
    assert_eq!(sub.read_reply(), msg(0).into_bytes());
    let from = cluster.master_of_slot(s);
    let to = *cluster.master_ports().iter().find(|&&p| p != from).unwrap();
    cluster.move_slot(s, to, None);
    // The proxy re-subscribes on the new owner; publish until a message arrives (bounded).
    sub.set_timeout(Duration::from_millis(300));
    let mut got = None;
    for i in 1..=40 {
        let r = c.cmd(&["SPUBLISH", ch, &format!("m{i}")]);
        assert!(r.starts_with(b":"), "SPUBLISH: {}", String::from_utf8_lossy(&r));
        if let Some(m) = sub.try_read_reply_quiet() {
            got = Some((i, m));
            break;
        }
    }
    let (i, m) = got.expect("no shard message after the slot moved");
    assert_eq!(
        String::from_utf8_lossy(&m),
        msg(i),
        "the client must only see messages, not the backend's sunsubscribe"
    );
    // From then on every message arrives, in order.
    sub.set_timeout(Duration::from_secs(5));
    for j in i + 1..i + 5 {
        assert_eq!(c.cmd(&["SPUBLISH", ch, &format!("m{j}")]), b":1\r\n");
        assert_eq!(String::from_utf8_lossy(&sub.read_reply()), msg(j));
    }
}

/// A SCAN iteration through the proxy survives an upstream reshard that moves slots not reached yet to a node
/// already scanned (`redis-cli --cluster reshard`): every key present for the whole iteration is returned.
#[test]
fn scan_iteration_survives_a_reshard_to_a_scanned_node() {
    let cluster = Cluster::start(3, 0);
    let proxy = start_proxy_cluster(&cluster.seed(), &[]);
    let mut c = proxy.conn();
    let n = 3000;
    for chunk in (0..n).collect::<Vec<_>>().chunks(500) {
        let cmds: Vec<Vec<Vec<u8>>> =
            chunk.iter().map(|i| vec![b"SET".to_vec(), format!("srs:{i}").into_bytes(), b"v".to_vec()]).collect();
        for r in c.pipeline(&cmds) {
            assert_eq!(r, b"+OK\r\n");
        }
    }
    let first = cluster.master_of_slot(0);
    let last = cluster.master_of_slot(16383);
    let mut seen = std::collections::HashSet::new();
    let mut cursor = "0".to_string();
    let mut resharded = false;
    for _ in 0..100_000 {
        let r = Reply::parse(&c.cmd(&["SCAN", &cursor, "MATCH", "srs:*", "COUNT", "50"]));
        let items = r.items();
        assert_eq!(items.len(), 2, "{r:?}");
        cursor = String::from_utf8(items[0].as_bytes().unwrap().to_vec()).unwrap();
        for k in items[1].items() {
            seen.insert(k.as_bytes().unwrap().to_vec());
        }
        if cursor == "0" {
            break;
        }
        // Once the node serving slot 0 is done (the cursor's position is past its slots), move 1000 slots of the
        // node serving the last slots, not scanned yet, to it.
        let pos = cursor.parse::<u64>().unwrap() & 0x3fff;
        if !resharded && cluster.master_of_slot(pos as u16) != first {
            cluster.reshard(last, first, 1000);
            resharded = true;
            // Requests for the moved slots get -MOVED, which makes the proxy re-read the map.
            for i in 0..300 {
                assert_eq!(c.cmd(&["GET", &format!("srs:{i}")]), b"$1\r\nv\r\n");
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    }
    assert!(resharded, "the iteration ended before the reshard");
    assert_eq!(cursor, "0", "the iteration did not end");
    assert_eq!(seen.len(), n, "keys missed by the iteration");
}

/// A SCAN iteration through the proxy survives an upstream failover in the middle: every key present for the whole
/// iteration is returned (the cursor names "the node serving slot s", which the promoted replica now is).
#[test]
fn scan_iteration_survives_an_upstream_failover() {
    let cluster = Cluster::start(3, 1);
    let proxy = start_proxy_cluster(&cluster.seed(), &[]);
    let mut c = proxy.conn();
    let n = 3000;
    for chunk in (0..n).collect::<Vec<_>>().chunks(500) {
        let cmds: Vec<Vec<Vec<u8>>> =
            chunk.iter().map(|i| vec![b"SET".to_vec(), format!("sfo:{i}").into_bytes(), b"v".to_vec()]).collect();
        for r in c.pipeline(&cmds) {
            assert_eq!(r, b"+OK\r\n");
        }
    }
    let mut seen = std::collections::HashSet::new();
    let mut cursor = "0".to_string();
    let mut failed_over = false;
    for step in 0..100_000 {
        let r = Reply::parse(&c.cmd(&["SCAN", &cursor, "MATCH", "sfo:*", "COUNT", "50"]));
        let items = r.items();
        assert_eq!(items.len(), 2, "{r:?}");
        cursor = String::from_utf8(items[0].as_bytes().unwrap().to_vec()).unwrap();
        for k in items[1].items() {
            seen.insert(k.as_bytes().unwrap().to_vec());
        }
        // About halfway through the iteration (in the node serving the middle slots), fail over that node: its
        // replica has the same keys, but the backend cursor issued by the old master means nothing there.
        if !failed_over && step == 30 {
            let topo = cluster.topology();
            let m = topo.iter().find(|m| m.master && m.slots.iter().any(|&(a, b)| a <= 8192 && 8192 <= b)).unwrap();
            let replica = topo.iter().find(|n| n.master_id.as_deref() == Some(m.id.as_str())).unwrap().port;
            cluster.failover(replica);
            failed_over = true;
            // Requests to the demoted master get -MOVED, which makes the proxy re-read the map.
            for i in 0..200 {
                assert_eq!(c.cmd(&["GET", &format!("sfo:{i}")]), b"$1\r\nv\r\n");
            }
            std::thread::sleep(Duration::from_millis(500));
        }
        if cursor == "0" {
            break;
        }
    }
    assert!(failed_over, "the iteration ended before the failover");
    assert_eq!(seen.len(), n, "keys missed by the iteration");
}
