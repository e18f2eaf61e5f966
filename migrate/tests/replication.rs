//! The replication method against a real Redis Cluster and a real ferrite:
//! the tool acts as a replica of every master (PSYNC, RDB, command stream);
//! the initial copy and then live changes must reach ferrite in order.

mod common;
use common::*;
use ferrite_migrate::repl::{Filter, ReplConfig, Replicator};
use ferrite_migrate::resp::{Auth, Reply};
use ferrite_migrate::slots::SlotSet;
use ferrite_testkit::{wait_for, Cluster};
use std::sync::Arc;
use std::time::Duration;

fn master_offset(addr: &str) -> i64 {
    let r = conn(addr).cmd(&args(&["INFO", "replication"])).unwrap();
    let t = r.as_str().unwrap();
    t.lines().find_map(|l| l.strip_prefix("master_repl_offset:")).unwrap().trim().parse().unwrap()
}

fn verify_clean(cluster: &Cluster, ferrite: &str, scope: &SlotSet) {
    let mut src = source(cluster);
    let mut dst = conn(ferrite);
    let rep = ferrite_migrate::verify::verify(&mut src, &mut dst, scope, 2000, 50).expect("verify");
    assert!(rep.diffs.is_empty(), "differences: {:?}", rep.diffs);
    assert!(rep.keys_source > 0);
    assert_eq!(rep.keys_source, rep.keys_target);
}

#[test]
fn replication_initial_copy_then_live_changes_in_order() {
    let cluster = Cluster::start(3, 0);
    let ferrite = start_ferrite();
    let mut src = source(&cluster);
    let keys = load_all_types(&mut src, 40, "i");
    // Everything but slots 0-99 is in scope: keys there must not be copied.
    let mut scope = SlotSet::all();
    for s in 0..100u16 {
        scope.remove(s);
    }
    let outside: Vec<&String> =
        keys.iter().filter(|k| !scope.contains(ferrite_commands::key_hash_slot(k.as_bytes()))).collect();
    let filter = Arc::new(Filter::new(&scope));
    let topo = src.topo.clone();
    let mut reps = Vec::new();
    for m in &topo.masters {
        reps.push(Replicator::start(ReplConfig {
            master: m.addr.clone(),
            slots: m.slots.intersect(&scope),
            seeds: topo.all_nodes(),
            source_auth: Auth::default(),
            target: ferrite.addr(),
            target_auth: Auth::default(),
            timeout: Duration::from_secs(10),
            retry_for: Duration::from_secs(30),
            replica_port: 0,
            disk_sync: false,
            keep_rdb_compression: false,
            filter: filter.clone(),
            clock_offset_ms: 0,
        }));
    }
    wait_for(Duration::from_secs(60), "initial syncs", || {
        for r in &reps {
            assert!(r.error().is_none(), "replicator error: {:?}", r.error());
        }
        reps.iter().all(|r| r.loaded()).then_some(())
    });
    let catch_up = |reps: &[Replicator]| {
        for r in reps {
            let off = master_offset(&r.master());
            wait_for(Duration::from_secs(30), "ferrite to catch up", || {
                assert!(r.error().is_none(), "replicator error: {:?}", r.error());
                (r.applied() >= off).then_some(())
            });
        }
    };
    catch_up(&reps);
    verify_clean(&cluster, &ferrite.addr(), &scope);
    let mut f = conn(&ferrite.addr());
    for k in &outside {
        assert_eq!(f.cmd(&args(&["EXISTS", k])).unwrap().as_int(), Some(0), "{k} is outside the scope");
    }
    // Live changes: ordered sequences whose final state depends on order.
    for i in 0..300 {
        on_key(&mut src, "live:counter", &["INCR", "live:counter"]);
        on_key(&mut src, "live:list", &["RPUSH", "live:list", &i.to_string()]);
        on_key(&mut src, "live:str", &["SET", "live:str", &format!("v{i}")]);
        if i % 7 == 0 {
            on_key(&mut src, "live:list", &["LPOP", "live:list"]);
        }
    }
    on_key(&mut src, "i:str:1", &["DEL", "i:str:1"]);
    on_key(&mut src, "i:hash:2", &["HSET", "i:hash:2", "new", "field"]);
    on_key(&mut src, "i:str:2", &["PEXPIRE", "i:str:2", "900000"]);
    on_key(&mut src, "i:zset:3", &["ZINCRBY", "i:zset:3", "10", "a"]);
    on_key(&mut src, "i:stream:1", &["XADD", "i:stream:1", "*", "late", "1"]);
    on_key(&mut src, "i:short", &["SET", "i:short", "x", "PX", "200"]);
    // A transaction on one slot (hash tags).
    let slot = ferrite_commands::key_hash_slot(b"{tx}a");
    src.slot_pipeline(
        slot,
        &[args(&["MULTI"]), args(&["SET", "{tx}a", "1"]), args(&["INCRBY", "{tx}b", "5"]), args(&["EXEC"])],
    )
    .unwrap();
    // A big collection created live (goes through the stream, not the RDB).
    let mut big = vec!["SADD".to_string(), "live:bigset".into()];
    for m in 0..3000 {
        big.push(format!("m{m}"));
    }
    let big: Vec<&str> = big.iter().map(String::as_str).collect();
    on_key(&mut src, "live:bigset", &big);
    std::thread::sleep(Duration::from_millis(300));
    catch_up(&reps);
    let counter_in = scope.contains(ferrite_commands::key_hash_slot(b"live:counter"));
    if counter_in {
        assert_eq!(f.cmd(&args(&["GET", "live:counter"])).unwrap(), Reply::Bulk(b("300")));
    }
    assert_eq!(f.cmd(&args(&["EXISTS", "i:str:1"])).unwrap().as_int(), Some(0));
    assert_eq!(f.cmd(&args(&["HGET", "i:hash:2", "new"])).unwrap(), Reply::Bulk(b("field")));
    assert_eq!(f.cmd(&args(&["GET", "{tx}b"])).unwrap(), Reply::Bulk(b("5")));
    // Functions loaded, replaced and deleted on every master during the run (as `redis-cli --cluster call`
    // does) reach Ferrite once, without copy errors for the other masters' copies of the same change.
    let errors_before = ferrite_migrate::metrics::get().copy_errors.get();
    let lib = |v: &str| format!("#!lua name=livelib\nredis.register_function('livef', function() return '{v}' end)");
    for port in cluster.master_ports() {
        let mut c = conn(&format!("127.0.0.1:{port}"));
        assert!(!c.cmd(&args(&["FUNCTION", "LOAD", &lib("one")])).unwrap().is_error());
        assert!(!c.cmd(&args(&["FUNCTION", "LOAD", "REPLACE", &lib("two")])).unwrap().is_error());
        assert!(!c
            .cmd(&args(&["FUNCTION", "LOAD", &lib("x").replace("livelib", "gone").replace("livef", "gonef")]))
            .unwrap()
            .is_error());
        assert!(!c.cmd(&args(&["FUNCTION", "DELETE", "gone"])).unwrap().is_error());
    }
    catch_up(&reps);
    assert_eq!(f.cmd(&args(&["FCALL", "livef", "0"])).unwrap(), Reply::Bulk(b("two")));
    let listed = f.cmd(&args(&["FUNCTION", "LIST", "LIBRARYNAME", "gone"])).unwrap();
    assert!(listed.items().is_empty(), "{listed:?}");
    assert_eq!(ferrite_migrate::metrics::get().copy_errors.get(), errors_before, "FUNCTION copies counted as errors");
    assert_eq!(f.cmd(&args(&["SCARD", "live:bigset"])).unwrap().as_int(), Some(3000));
    verify_clean(&cluster, &ferrite.addr(), &scope);
    // From a slot's flip on, its source changes are no longer applied.
    let s = ferrite_commands::key_hash_slot(b"live:str");
    filter.remove(s);
    on_key(&mut src, "live:str", &["SET", "live:str", "after-flip"]);
    on_key(&mut src, "live:counter", &["INCR", "live:counter"]);
    std::thread::sleep(Duration::from_millis(200));
    catch_up(&reps);
    assert_eq!(f.cmd(&args(&["GET", "live:str"])).unwrap(), Reply::Bulk(b("v299")));
    if counter_in && ferrite_commands::key_hash_slot(b"live:counter") != s {
        assert_eq!(f.cmd(&args(&["GET", "live:counter"])).unwrap(), Reply::Bulk(b("301")));
    }
    for r in &reps {
        r.stop();
    }
    for r in reps {
        r.join();
    }
}

#[test]
fn replication_run_end_to_end_without_proxy() {
    let cluster = Cluster::start(3, 0);
    let ferrite = start_ferrite();
    let mut src = source(&cluster);
    let keys = load_all_types(&mut src, 30, "e");
    let (_d, state) = state_path("repl");
    let out = migrate(
        &sv(&["--from-redis-cluster", &cluster.seed(), "--to", &ferrite.addr(), "--state", &state, "--json"]),
        Duration::from_secs(180),
    );
    assert!(out.status.success(), "{}", show(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json outcome");
    assert_eq!(v["verified"].as_bool(), Some(true), "{v}");
    assert_eq!(v["slots_flipped"].as_u64(), Some(16384));
    assert_eq!(v["copy_errors"].as_u64(), Some(0), "{v}");
    let n = conn(&ferrite.addr()).cmd(&args(&["DBSIZE"])).unwrap().as_int().unwrap();
    assert_eq!(n as usize, keys.len());
    // The tool set repl-diskless-sync-max-replicas to 1 (so the diskless sync did not wait the 5 s delay) and
    // rdbcompression to no for its handshakes, and put the defaults back on every master.
    for port in cluster.master_ports() {
        for (name, default) in [("repl-diskless-sync-max-replicas", "0"), ("rdbcompression", "yes")] {
            let r = conn(&format!("127.0.0.1:{port}")).cmd(&args(&["CONFIG", "GET", name])).unwrap();
            let ferrite_migrate::resp::Reply::Array(v) = &r else { panic!("CONFIG GET: {r:?}") };
            assert_eq!(
                v.get(1).and_then(|x| x.as_bytes()),
                Some(default.as_bytes()),
                "{name} not restored on {port}: {r:?}"
            );
        }
    }
}

#[test]
fn replication_streams_big_collections_in_parts() {
    let cluster = Cluster::start(3, 0);
    let ferrite = start_ferrite();
    let mut src = source(&cluster);
    // Collections far above the parser's part size (1024 elements), with TTLs.
    let mut big: Vec<(String, Vec<String>)> = Vec::new();
    let mut list = vec!["RPUSH".to_string(), "big:list".into()];
    list.extend((0..30000).map(|i| format!("e{i}")));
    big.push(("big:list".into(), list));
    let mut set = vec!["SADD".to_string(), "big:set".into()];
    set.extend((0..5000).map(|i| format!("m{i}")));
    big.push(("big:set".into(), set));
    let mut iset = vec!["SADD".to_string(), "big:intset".into()];
    iset.extend((0..3000).map(|i| (i * 7).to_string()));
    big.push(("big:intset".into(), iset));
    let mut hash = vec!["HSET".to_string(), "big:hash".into()];
    for i in 0..4000 {
        hash.push(format!("f{i}"));
        hash.push(format!("v{i}"));
    }
    big.push(("big:hash".into(), hash));
    let mut zset = vec!["ZADD".to_string(), "big:zset".into()];
    for i in 0..4000 {
        zset.push(format!("{}", (i as f64) / 3.0 - 100.0));
        zset.push(format!("z{i}"));
    }
    zset.extend(["inf".to_string(), "top".into(), "-inf".into(), "bottom".into()]);
    big.push(("big:zset".into(), zset));
    for (k, cmd) in &big {
        let a: Vec<&str> = cmd.iter().map(String::as_str).collect();
        on_key(&mut src, k, &a);
    }
    on_key(&mut src, "big:hash", &["PEXPIRE", "big:hash", "700000"]);
    on_key(&mut src, "big:list", &["EXPIRE", "big:list", "800"]);
    let mut x = vec!["XADD".to_string(), "big:stream".into(), "*".into()];
    x.extend(["a".to_string(), "b".into()]);
    for _ in 0..2500 {
        let a: Vec<&str> = x.iter().map(String::as_str).collect();
        on_key(&mut src, "big:stream", &a);
    }
    on_key(&mut src, "big:stream", &["XGROUP", "CREATE", "big:stream", "g", "0"]);
    on_key(&mut src, "big:stream", &["XREADGROUP", "GROUP", "g", "c1", "COUNT", "1500", "STREAMS", "big:stream", ">"]);
    let (_d, state) = state_path("big");
    let out = migrate(
        &sv(&["--from-redis-cluster", &cluster.seed(), "--to", &ferrite.addr(), "--state", &state, "--quiet"]),
        Duration::from_secs(180),
    );
    assert!(out.status.success(), "{}", show(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("verify: 0 differences"), "{}", show(&out));
    let mut f = conn(&ferrite.addr());
    assert_eq!(f.cmd(&args(&["LLEN", "big:list"])).unwrap().as_int(), Some(30000));
    assert_eq!(f.cmd(&args(&["LINDEX", "big:list", "29999"])).unwrap(), Reply::Bulk(b("e29999")));
    assert_eq!(f.cmd(&args(&["SCARD", "big:set"])).unwrap().as_int(), Some(5000));
    assert_eq!(f.cmd(&args(&["SCARD", "big:intset"])).unwrap().as_int(), Some(3000));
    assert_eq!(f.cmd(&args(&["HLEN", "big:hash"])).unwrap().as_int(), Some(4000));
    assert_eq!(f.cmd(&args(&["ZCARD", "big:zset"])).unwrap().as_int(), Some(4002));
    assert_eq!(f.cmd(&args(&["ZSCORE", "big:zset", "top"])).unwrap(), Reply::Bulk(b("inf")));
    let t = f.cmd(&args(&["PTTL", "big:hash"])).unwrap().as_int().unwrap();
    assert!(t > 690_000 && t <= 700_000, "{t}");
    let t = f.cmd(&args(&["TTL", "big:list"])).unwrap().as_int().unwrap();
    assert!(t > 790 && t <= 800, "{t}");
    assert_eq!(f.cmd(&args(&["XLEN", "big:stream"])).unwrap().as_int(), Some(2500));
    let g = f.cmd(&args(&["XPENDING", "big:stream", "g"])).unwrap();
    assert_eq!(g.items().first().and_then(|x| x.as_int()), Some(1500), "{g:?}");
}

fn info_field(addr: &str, section: &str, field: &str) -> i64 {
    let r = conn(addr).cmd(&args(&["INFO", section])).unwrap();
    let t = r.as_str().unwrap();
    let p = format!("{field}:");
    t.lines().find_map(|l| l.strip_prefix(p.as_str())).unwrap().trim().parse().unwrap()
}

#[test]
fn replication_link_loss_partial_and_full_resync() {
    let cluster = Cluster::start(3, 0);
    let ferrite = start_ferrite();
    let mut src = source(&cluster);
    load_all_types(&mut src, 10, "f");
    on_key(&mut src, "{g}gone", &["SET", "{g}gone", "1"]);
    on_key(&mut src, "{g}gone2", &["SET", "{g}gone2", "1"]);
    let scope = SlotSet::all();
    let filter = Arc::new(Filter::new(&scope));
    let topo = src.topo.clone();
    let reps: Vec<Replicator> = topo
        .masters
        .iter()
        .map(|m| {
            Replicator::start(ReplConfig {
                master: m.addr.clone(),
                slots: m.slots.clone(),
                seeds: topo.all_nodes(),
                source_auth: Auth::default(),
                target: ferrite.addr(),
                target_auth: Auth::default(),
                timeout: Duration::from_secs(10),
                retry_for: Duration::from_secs(30),
                replica_port: 0,
                // The disk-based transfer (`$<len>` form) here, the
                // diskless one (`$EOF:` form) in the test above.
                disk_sync: true,
                keep_rdb_compression: false,
                filter: filter.clone(),
                clock_offset_ms: 0,
            })
        })
        .collect();
    let catch_up = |reps: &[Replicator]| {
        for r in reps {
            wait_for(Duration::from_secs(60), "initial sync", || r.loaded().then_some(()));
            let off = master_offset(&r.master());
            wait_for(Duration::from_secs(30), "ferrite to catch up", || {
                assert!(r.error().is_none(), "replicator error: {:?}", r.error());
                (r.applied() >= off).then_some(())
            });
        }
    };
    catch_up(&reps);
    let slot = ferrite_commands::key_hash_slot(b"{g}gone");
    let m = src.topo.master_of(slot).unwrap().addr.clone();
    let mut f = conn(&ferrite.addr());
    assert_eq!(f.cmd(&args(&["EXISTS", "{g}gone"])).unwrap().as_int(), Some(1));
    // 1. Link killed, small change: PSYNC continues from the offset.
    let full0 = info_field(&m, "stats", "sync_full");
    let partial0 = info_field(&m, "stats", "sync_partial_ok");
    let mut mc = conn(&m);
    mc.cmd(&args(&["CLIENT", "KILL", "TYPE", "replica"])).unwrap();
    mc.cmd(&args(&["DEL", "{g}gone"])).unwrap();
    mc.cmd(&args(&["SET", "{g}new", "v"])).unwrap();
    std::thread::sleep(Duration::from_millis(500));
    catch_up(&reps);
    assert_eq!(f.cmd(&args(&["EXISTS", "{g}gone"])).unwrap().as_int(), Some(0));
    assert_eq!(f.cmd(&args(&["GET", "{g}new"])).unwrap(), Reply::Bulk(b("v")));
    assert_eq!(info_field(&m, "stats", "sync_partial_ok"), partial0 + 1, "expected a partial resync");
    assert_eq!(info_field(&m, "stats", "sync_full"), full0);
    // 2. Link killed and the backlog overrun: FULLRESYNC, the slots are
    //    emptied on ferrite and loaded again.
    mc.cmd(&args(&["CONFIG", "SET", "repl-backlog-size", "16384"])).unwrap();
    mc.cmd(&args(&["CLIENT", "KILL", "TYPE", "replica"])).unwrap();
    let big = "x".repeat(100_000);
    mc.cmd(&args(&["SET", "{g}big", &big])).unwrap();
    mc.cmd(&args(&["SET", "{g}big", &big])).unwrap();
    mc.cmd(&args(&["DEL", "{g}gone2"])).unwrap();
    std::thread::sleep(Duration::from_millis(500));
    catch_up(&reps);
    wait_for(Duration::from_secs(30), "a full resync", || (info_field(&m, "stats", "sync_full") > full0).then_some(()));
    catch_up(&reps);
    assert_eq!(f.cmd(&args(&["EXISTS", "{g}gone2"])).unwrap().as_int(), Some(0));
    assert_eq!(f.cmd(&args(&["STRLEN", "{g}big"])).unwrap().as_int(), Some(100_000));
    verify_clean(&cluster, &ferrite.addr(), &scope);
    for r in &reps {
        r.stop();
    }
    for r in reps {
        r.join();
    }
}

/// The replication method copies function libraries before the data too,
/// and streams with consumer groups verify clean (groups compared).
#[test]
fn replication_run_copies_functions_and_stream_groups() {
    let cluster = Cluster::start(3, 0);
    let ferrite = start_ferrite();
    let mut src = source(&cluster);
    let lib =
        "#!lua name=rlib\nredis.register_function('rget', function(keys, args) return redis.call('GET', keys[1]) end)";
    let masters: Vec<String> = src.topo.masters.iter().map(|m| m.addr.clone()).collect();
    for m in &masters {
        let r = src.conn(m).unwrap().cmd(&args(&["FUNCTION", "LOAD", lib])).unwrap();
        assert!(!r.is_error(), "{r:?}");
    }
    on_key(&mut src, "fr:k", &["SET", "fr:k", "through a function"]);
    for i in 0..30 {
        on_key(&mut src, "fr:s", &["XADD", "fr:s", &format!("{}-1", i + 1), "n", &i.to_string()]);
    }
    for c in [
        vec!["XGROUP", "CREATE", "fr:s", "g", "0"],
        vec!["XREADGROUP", "GROUP", "g", "c1", "COUNT", "10", "STREAMS", "fr:s", ">"],
        vec!["XDEL", "fr:s", "3-1"],
        vec!["XGROUP", "CREATE", "fr:s", "h", "5-1"],
        vec!["XGROUP", "CREATECONSUMER", "fr:s", "h", "idle"],
    ] {
        assert!(!on_key(&mut src, "fr:s", &c).is_error(), "{c:?}");
    }
    let (_d, state) = state_path("rfunctions");
    let out = migrate(
        &sv(&["--from-redis-cluster", &cluster.seed(), "--to", &ferrite.addr(), "--state", &state, "--quiet"]),
        Duration::from_secs(180),
    );
    assert!(out.status.success(), "{}", show(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("verify: 0 differences"), "{}", show(&out));
    let mut f = conn(&ferrite.addr());
    assert_eq!(f.cmd(&args(&["FCALL", "rget", "1", "fr:k"])).unwrap(), Reply::Bulk(b("through a function")));
    for c in [vec!["XINFO", "GROUPS", "fr:s"], vec!["XPENDING", "fr:s", "g"], vec!["XINFO", "CONSUMERS", "fr:s", "h"]] {
        let a = on_key(&mut src, "fr:s", &c);
        let b = f.cmd(&args(&c)).unwrap();
        if c[1] == "CONSUMERS" {
            // idle times differ; names and pending counts do not.
            assert_eq!(a.items()[0].field("name"), b.items()[0].field("name"));
            assert_eq!(a.items()[0].field("pending"), b.items()[0].field("pending"));
        } else {
            assert_eq!(a, b, "{c:?}");
        }
    }
    verify_clean(&cluster, &ferrite.addr(), &SlotSet::all());
}

#[test]
fn replication_sends_a_big_stream_in_parts() {
    let cluster = Cluster::start(3, 0);
    let ferrite = start_ferrite();
    let mut src = source(&cluster);
    // About 12 MB of entries: above the 8 MB the tool gathers for one RESTORE, so it goes over in parts.
    // The first 100 entries are small (many per listpack node: a deleted one stays as a tombstone in the RDB),
    // the others are 4 KB (one per node: a deleted one leaves no trace in the RDB).
    let value = "x".repeat(4000);
    let mut ids = Vec::new();
    for i in 0..3100 {
        let v = if i < 100 { "small" } else { value.as_str() };
        let r = on_key(&mut src, "{bs}s", &["XADD", "{bs}s", "*", "n", &i.to_string(), "v", v]);
        ids.push(String::from_utf8(r.as_bytes().unwrap().to_vec()).unwrap());
    }
    on_key(&mut src, "{bs}s", &["XGROUP", "CREATE", "{bs}s", "g1", "0"]);
    on_key(&mut src, "{bs}s", &["XGROUP", "CREATE", "{bs}s", "g2", "$"]);
    on_key(&mut src, "{bs}s", &["XREADGROUP", "GROUP", "g1", "c1", "COUNT", "200", "STREAMS", "{bs}s", ">"]);
    on_key(&mut src, "{bs}s", &["XREADGROUP", "GROUP", "g1", "c2", "COUNT", "50", "STREAMS", "{bs}s", ">"]);
    on_key(&mut src, "{bs}s", &["XREADGROUP", "GROUP", "g1", "c2", "COUNT", "5", "STREAMS", "{bs}s", "0"]);
    for id in &ids[..20] {
        on_key(&mut src, "{bs}s", &["XACK", "{bs}s", "g1", id]);
    }
    // Deleted messages that are still pending (tombstones, and entries gone from the RDB, that the PEL refers
    // to), and deleted ones that are not.
    for id in ids[30..40].iter().chain(&ids[150..160]).chain(&ids[1000..1010]) {
        on_key(&mut src, "{bs}s", &["XDEL", "{bs}s", id]);
    }
    on_key(&mut src, "{bs}s", &["EXPIRE", "{bs}s", "1000"]);
    on_key(&mut src, "{bs}small", &["XADD", "{bs}small", "1-1", "a", "b"]);
    let (_d, state) = state_path("bigstream");
    let out = migrate(
        &sv(&["--from-redis-cluster", &cluster.seed(), "--to", &ferrite.addr(), "--state", &state, "--quiet"]),
        Duration::from_secs(180),
    );
    assert!(out.status.success(), "{}", show(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("verify: 0 differences"), "{}", show(&out));
    let mut f = conn(&ferrite.addr());
    assert_eq!(f.cmd(&args(&["XLEN", "{bs}s"])).unwrap().as_int(), Some(3070));
    let t = f.cmd(&args(&["TTL", "{bs}s"])).unwrap().as_int().unwrap();
    assert!(t > 990 && t <= 1000, "{t}");
    let g = f.cmd(&args(&["XPENDING", "{bs}s", "g1"])).unwrap();
    assert_eq!(g.items().first().and_then(|x| x.as_int()), Some(230), "{g:?}");
    let p = f.cmd(&args(&["XPENDING", "{bs}s", "g1", "-", "+", "1", "c2"])).unwrap();
    let delivered = p.items().first().and_then(|e| e.items().get(3).and_then(|x| x.as_int()));
    assert_eq!(delivered, Some(2), "c2's first entry was delivered twice: {p:?}");
    // The in-parts path was taken: every entry went over as an XADD (placeholders included).
    let stats = f.cmd(&args(&["INFO", "commandstats"])).unwrap();
    let xadds: i64 = stats
        .as_str()
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("cmdstat_xadd:calls="))
        .and_then(|l| l.split(',').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    assert!(xadds >= 3090, "{xadds}");
}
