//! The scan method against a real Redis Cluster (3 masters) and a real
//! ferrite, without a proxy: plan, copy of every type with TTLs, verify,
//! a planted difference, and checkpoint/resume after killing a run.

mod common;
use common::*;
use ferrite_migrate::resp::Reply;
use ferrite_testkit::Cluster;
use std::time::Duration;

#[test]
fn plan_reports_counts_types_and_big_keys() {
    let cluster = Cluster::start(3, 0);
    let mut src = source(&cluster);
    let keys = load_all_types(&mut src, 20, "p");
    let out = migrate(
        &sv(&["plan", "--from-redis-cluster", &cluster.seed(), "--json", "--big-key-bytes", "100000"]),
        Duration::from_secs(60),
    );
    assert!(out.status.success(), "{}", show(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("plan --json output");
    assert_eq!(v["keys"].as_u64(), Some(keys.len() as u64), "{v}");
    assert_eq!(v["masters"].as_array().map(|a| a.len()), Some(3));
    assert_eq!(v["slots_in_scope"].as_u64(), Some(16384));
    assert_eq!(v["types"]["hash"].as_u64(), Some(23));
    assert_eq!(v["types"]["string"].as_u64(), Some(20 * 2 + 20 + 3), "{}", v["types"]);
    let big: Vec<&str> = v["big_keys"].as_array().unwrap().iter().map(|k| k["key"].as_str().unwrap()).collect();
    for j in 0..3 {
        assert!(big.contains(&format!("p:bigstr:{j}").as_str()), "{big:?}");
    }
    assert_eq!(v["unsupported"].as_array().map(|a| a.len()), Some(0));
    let per_slot: u64 = v["per_slot"].as_array().unwrap().iter().map(|s| s["keys"].as_u64().unwrap()).sum();
    assert_eq!(per_slot, keys.len() as u64);
    // Human output mentions the masters and totals; --slots restricts.
    let out =
        migrate(&sv(&["plan", "--from-redis-cluster", &cluster.seed(), "--slots", "0-100"]), Duration::from_secs(60));
    assert!(out.status.success(), "{}", show(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("101 slots in scope"), "{text}");
    assert!(text.contains("total:"), "{text}");
    // Sampling: sizes are estimated, counts stay exact.
    let out = migrate(
        &sv(&["plan", "--from-redis-cluster", &cluster.seed(), "--json", "--sample", "1"]),
        Duration::from_secs(60),
    );
    assert!(out.status.success(), "{}", show(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["sampled"].as_bool(), Some(true));
    assert_eq!(v["keys"].as_u64(), Some(keys.len() as u64));
    assert!(v["bytes"].as_u64().unwrap() > 0);
}

#[test]
fn scan_copies_every_type_with_ttls_and_verify_is_clean_then_detects_a_plant() {
    let cluster = Cluster::start(3, 0);
    let ferrite = start_ferrite();
    let mut src = source(&cluster);
    let keys = load_all_types(&mut src, 30, "s");
    // A key that will expire during the run and one deleted before it.
    on_key(&mut src, "s:short", &["SET", "s:short", "v", "PX", "300"]);
    let (_d, state) = state_path("scan");
    let out = migrate(
        &sv(&[
            "--from-redis-cluster",
            &cluster.seed(),
            "--to",
            &ferrite.addr(),
            "--method",
            "scan",
            "--state",
            &state,
            "--quiet",
            "--batch-keys",
            "37",
        ]),
        Duration::from_secs(120),
    );
    assert!(out.status.success(), "{}", show(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("verify: 0 differences"), "{text}");
    // Every key is there, with its TTL as an absolute deadline.
    let mut f = conn(&ferrite.addr());
    let mut s = source(&cluster);
    for k in &keys {
        let a = on_key(&mut s, k, &["TYPE", k]);
        let b = f.cmd(&args(&["TYPE", k])).unwrap();
        assert_eq!(a, b, "type of {k}");
        let ta = on_key(&mut s, k, &["PTTL", k]).as_int().unwrap();
        let tb = f.cmd(&args(&["PTTL", k])).unwrap().as_int().unwrap();
        assert_eq!(ta < 0, tb < 0, "ttl presence of {k}: {ta} vs {tb}");
        assert!((ta - tb).abs() < 5000, "ttl of {k}: {ta} vs {tb}");
    }
    assert_eq!(f.cmd(&args(&["GET", "s:str:4"])).unwrap(), Reply::Bulk(b("value-4")));
    assert_eq!(f.cmd(&args(&["LRANGE", "s:biglist:1", "1998", "-1"])).unwrap().items().len(), 2);
    assert_eq!(f.cmd(&args(&["ZSCORE", "s:zset:3", "b"])).unwrap(), Reply::Bulk(b("-2")));
    // Standalone verify agrees.
    let out = migrate(
        &sv(&["verify", "--from-redis-cluster", &cluster.seed(), "--to", &ferrite.addr(), "--json"]),
        Duration::from_secs(60),
    );
    assert!(out.status.success(), "{}", show(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["differences"].as_u64(), Some(0), "{v}");
    // Plant differences of every kind on the target.
    f.cmd(&args(&["HSET", "s:hash:5", "f1", "changed"])).unwrap();
    f.cmd(&args(&["DEL", "s:list:6"])).unwrap();
    f.cmd(&args(&["SET", "s:extra{s:str:1}", "x"])).unwrap();
    f.cmd(&args(&["PERSIST", "s:str:9"])).unwrap();
    f.cmd(&args(&["SADD", "s:bigset:2", "intruder"])).unwrap();
    let out = migrate(
        &sv(&["verify", "--from-redis-cluster", &cluster.seed(), "--to", &ferrite.addr(), "--json"]),
        Duration::from_secs(60),
    );
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["differences"].as_u64(), Some(5), "{v}");
    let diffs = v["diffs"].to_string();
    for (k, what) in [
        ("s:hash:5", "hash value differs"),
        ("s:list:6", "missing on target"),
        ("s:extra{s:str:1}", "extra on target"),
        ("s:str:9", "ttl differs"),
        ("s:bigset:2", "set value differs"),
    ] {
        assert!(diffs.contains(k) && diffs.contains(what), "{k} / {what} not in {diffs}");
    }
    // Human form prints the differing keys.
    let out = migrate(
        &sv(&["verify", "--from-redis-cluster", &cluster.seed(), "--to", &ferrite.addr()]),
        Duration::from_secs(60),
    );
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("DIFF slot") && text.contains("s:list:6") && text.contains("5 differences"), "{text}");
}

#[test]
fn checkpoint_and_resume_after_kill() {
    let cluster = Cluster::start(3, 0);
    let ferrite = start_ferrite();
    let mut src = source(&cluster);
    let keys = load_all_types(&mut src, 150, "r");
    let (_d, state) = state_path("resume");
    let base = sv(&[
        "--from-redis-cluster",
        &cluster.seed(),
        "--to",
        &ferrite.addr(),
        "--method",
        "scan",
        "--state",
        &state,
        "--quiet",
        "--max-keys-per-sec",
        "300",
        "--cutover-slots",
        "64",
    ]);
    let mport = ferrite_testkit::free_port();
    let mut with_metrics = base.clone();
    with_metrics.push("--metrics-listen".into());
    with_metrics.push(format!("127.0.0.1:{mport}"));
    let mut child = spawn_migrate(&with_metrics);
    // Wait until some slots are checkpointed, then kill it hard.
    let started = std::time::Instant::now();
    loop {
        assert!(started.elapsed() < Duration::from_secs(60), "no checkpoint appeared");
        if let Ok(t) = std::fs::read_to_string(&state) {
            if let Ok(v) = serde_json::from_str::<serde_json::Value>(&t) {
                let done = v["slots"].as_str().unwrap_or("").bytes().filter(|c| *c == b'f').count();
                if done >= 128 {
                    break;
                }
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    // Prometheus metrics while it runs.
    let body = http_get(mport, "/metrics");
    for m in [
        "ferrite_migrate_keys_copied_total",
        "ferrite_migrate_bytes_copied_total",
        "ferrite_migrate_slots{state=\"flipped\"}",
        "ferrite_migrate_pause_seconds",
        "ferrite_migrate_copy_errors_total 0",
    ] {
        assert!(body.contains(m), "{m} not in {body}");
    }
    assert!(http_get(mport, "/nope").starts_with("HTTP/1.1 404"));
    child.kill().unwrap();
    let _ = child.wait();
    let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&state).unwrap()).unwrap();
    let flipped = v["slots"].as_str().unwrap().bytes().filter(|c| *c == b'f').count();
    assert!(flipped < 16384, "the run finished before it was killed");
    // Change data on the source while the tool is down, in a slot not done
    // yet: the resumed run must pick the change up; and delete a key there.
    let slots_str = v["slots"].as_str().unwrap().as_bytes().to_vec();
    let todo: Vec<&String> =
        keys.iter().filter(|k| slots_str[ferrite_commands::key_hash_slot(k.as_bytes()) as usize] != b'f').collect();
    assert!(todo.len() >= 2);
    let changed = todo[0].clone();
    let deleted = todo[1].clone();
    on_key(&mut src, &changed, &["DEL", &changed]);
    on_key(&mut src, &changed, &["SET", &changed, "after-kill"]);
    on_key(&mut src, &deleted, &["DEL", &deleted]);
    // `run` refuses to start over an unfinished state file.
    let out = migrate(&base, Duration::from_secs(30));
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("resume"), "{}", show(&out));
    // status shows the partial progress.
    let out = migrate(&sv(&["status", "--state", &state, "--json"]), Duration::from_secs(30));
    assert!(out.status.success(), "{}", show(&out));
    let st: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(st["slots_flipped"].as_u64(), Some(flipped as u64));
    assert_eq!(st["finished"].as_bool(), Some(false));
    // Resume to completion.
    let mut r = vec!["resume".to_string()];
    r.extend(base.iter().cloned());
    r.retain(|x| x != "300");
    let pos = r.iter().position(|x| x == "--max-keys-per-sec").unwrap();
    r.remove(pos);
    let out = migrate(&r, Duration::from_secs(180));
    assert!(out.status.success(), "{}", show(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("verify: 0 differences"), "{}", show(&out));
    let mut f = conn(&ferrite.addr());
    assert_eq!(f.cmd(&args(&["GET", &changed])).unwrap().as_bytes(), Some(&b"after-kill"[..]));
    assert_eq!(f.cmd(&args(&["EXISTS", &deleted])).unwrap().as_int(), Some(0));
    let n = f.cmd(&args(&["DBSIZE"])).unwrap().as_int().unwrap();
    assert_eq!(n as usize, keys.len() - 1);
    let out = migrate(&sv(&["status", "--state", &state, "--json"]), Duration::from_secs(30));
    let st: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(st["slots_flipped"].as_u64(), Some(16384));
    assert_eq!(st["finished"].as_bool(), Some(true));
}

fn http_get(port: u16, path: &str) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect to metrics");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out
}

#[test]
fn ctrl_c_stops_at_a_safe_point_and_resume_finishes() {
    let cluster = Cluster::start(3, 0);
    let ferrite = start_ferrite();
    let mut src = source(&cluster);
    let keys = load_all_types(&mut src, 100, "c");
    let (_d, state) = state_path("sigint");
    let base = sv(&[
        "--from-redis-cluster",
        &cluster.seed(),
        "--to",
        &ferrite.addr(),
        "--method",
        "scan",
        "--state",
        &state,
        "--quiet",
        "--cutover-slots",
        "512",
    ]);
    let mut run = base.clone();
    run.extend(sv(&["--max-keys-per-sec", "300"]));
    let mut child = spawn_migrate(&run);
    let started = std::time::Instant::now();
    loop {
        assert!(started.elapsed() < Duration::from_secs(60), "no checkpoint appeared");
        let done = std::fs::read_to_string(&state)
            .ok()
            .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
            .map(|v| v["slots"].as_str().unwrap_or("").bytes().filter(|c| *c == b'f').count())
            .unwrap_or(0);
        if done >= 512 {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let st = std::process::Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap();
    assert!(st.success());
    let t0 = std::time::Instant::now();
    loop {
        if let Ok(Some(_)) = child.try_wait() {
            break;
        }
        assert!(t0.elapsed() < Duration::from_secs(30), "SIGINT did not stop the run");
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(130), "{}", show(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("resume"), "{}", show(&out));
    let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&state).unwrap()).unwrap();
    assert_eq!(v["finished"].as_bool(), Some(false));
    let mut r = vec!["resume".to_string()];
    r.extend(base);
    let out = migrate(&r, Duration::from_secs(180));
    assert!(out.status.success(), "{}", show(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("verify: 0 differences"), "{}", show(&out));
    let n = conn(&ferrite.addr()).cmd(&args(&["DBSIZE"])).unwrap().as_int().unwrap();
    assert_eq!(n as usize, keys.len());
}

#[test]
fn target_password_from_env_and_scope_subset() {
    let cluster = Cluster::start(3, 0);
    let ferrite = ferrite_testkit::start_ferrite(common::ferrite_bin(), &["--requirepass", "tpw"]);
    let mut src = source(&cluster);
    let keys = load_all_types(&mut src, 10, "w");
    let (_d, state) = state_path("pw");
    let out = std::process::Command::new(common::MIGRATE)
        .args(["--from-redis-cluster", &cluster.seed(), "--to", &ferrite.addr(), "--method", "scan"])
        .args(["--state", &state, "--quiet", "--slots", "0-8000"])
        .env("FERRITE_MIGRATE_TARGET_PASSWORD", "tpw")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", show(&out));
    let mut f = ferrite_migrate::resp::Conn::connect(
        &ferrite.addr(),
        Duration::from_secs(10),
        &ferrite_migrate::resp::Auth { user: None, pass: Some("tpw".into()) },
    )
    .unwrap();
    for k in &keys {
        let inside = ferrite_commands::key_hash_slot(k.as_bytes()) <= 8000;
        let e = f.cmd(&args(&["EXISTS", k])).unwrap().as_int();
        assert_eq!(e, Some(inside as i64), "{k}");
    }
    // Wrong password: a clear error, exit 2.
    let (_d2, state2) = state_path("pw2");
    let out = std::process::Command::new(common::MIGRATE)
        .args(["--from-redis-cluster", &cluster.seed(), "--to", &ferrite.addr(), "--method", "scan"])
        .args(["--state", &state2, "--quiet", "--target-password", "nope"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("AUTH"), "{}", show(&out));
}

/// Printable bytes that LZF cannot shrink (so DUMP payloads stay as big as
/// the values).
fn noise(seed: u64, n: usize) -> String {
    const ABC: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut x = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    (0..n)
        .map(|_| {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ABC[(x >> 58) as usize] as char
        })
        .collect()
}

#[test]
fn scan_copies_keys_too_big_to_dump_whole_in_parts() {
    let cluster = Cluster::start(3, 0);
    let ferrite = start_ferrite();
    let mut src = source(&cluster);
    // Each key's DUMP payload is over the 8 MB the tool keeps whole.
    on_key(&mut src, "big:str", &["SET", "big:str", &noise(1, 12 << 20)]);
    for (i, (key, cmd)) in
        [("big:list", "RPUSH"), ("big:set", "SADD"), ("big:hash", "HSET"), ("big:zset", "ZADD")].into_iter().enumerate()
    {
        for part in 0..12 {
            let mut a = vec![cmd.to_string(), key.to_string()];
            for j in 0..1000 {
                let n = part * 1000 + j;
                match cmd {
                    "HSET" => a.push(format!("f{n}")),
                    "ZADD" => a.push(format!("{}", n as f64 * 0.5 - 7.25)),
                    _ => {}
                }
                a.push(format!("{n}:{}", noise((i * 100_000 + n) as u64, 1024)));
            }
            let a: Vec<&str> = a.iter().map(String::as_str).collect();
            assert!(!on_key(&mut src, key, &a).is_error(), "{cmd}");
        }
    }
    on_key(&mut src, "big:hash", &["PEXPIRE", "big:hash", "3600000"]);
    on_key(&mut src, "small", &["SET", "small", "v"]);
    let (_d, state) = state_path("scanbig");
    let out = migrate(
        &sv(&[
            "--from-redis-cluster",
            &cluster.seed(),
            "--to",
            &ferrite.addr(),
            "--method",
            "scan",
            "--state",
            &state,
            "--quiet",
        ]),
        Duration::from_secs(180),
    );
    assert!(out.status.success(), "{}", show(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("verify: 0 differences") && text.contains("copy errors 0"), "{text}");
    let mut f = conn(&ferrite.addr());
    assert_eq!(f.cmd(&args(&["STRLEN", "big:str"])).unwrap().as_int(), Some(12 << 20));
    assert_eq!(f.cmd(&args(&["LLEN", "big:list"])).unwrap().as_int(), Some(12000));
    assert_eq!(f.cmd(&args(&["ZCARD", "big:zset"])).unwrap().as_int(), Some(12000));
    let t = f.cmd(&args(&["PTTL", "big:hash"])).unwrap().as_int().unwrap();
    assert!(t > 3_000_000, "{t}");
    assert_eq!(f.cmd(&args(&["PTTL", "big:list"])).unwrap().as_int(), Some(-1));
}

/// A TTL read a little apart on the two sides across a digest bucket
/// boundary does not make the slot differ; when the readings straddle the
/// boundaries of every bucket grid (still within the tolerance), the slot is
/// compared key by key and the report says why nothing differs.
#[test]
fn verify_ttl_noise_across_a_bucket_boundary() {
    let cluster = Cluster::start(3, 0);
    let ferrite = start_ferrite();
    let mut src = source(&cluster);
    let mut f = conn(&ferrite.addr());
    // A bucket boundary an hour from now (the default tolerance is 2000 ms).
    let d = (ferrite_migrate::now_ms() / 2000 + 1800) * 2000;
    let set =
        |src: &mut ferrite_migrate::topo::Source, f: &mut ferrite_migrate::resp::Conn, k: &str, a: i64, b: i64| {
            on_key(src, k, &["SET", k, "v"]);
            on_key(src, k, &["PEXPIREAT", k, &a.to_string()]);
            f.cmd(&args(&["SET", k, "v"])).unwrap();
            f.cmd(&args(&["PEXPIREAT", k, &b.to_string()])).unwrap();
        };
    set(&mut src, &mut f, "ttl:near", d - 200, d + 200);
    let verify = || {
        let out = migrate(
            &sv(&["verify", "--from-redis-cluster", &cluster.seed(), "--to", &ferrite.addr(), "--json"]),
            Duration::from_secs(60),
        );
        assert!(out.status.success(), "{}", show(&out));
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()
    };
    let v = verify();
    assert_eq!(v["differences"].as_u64(), Some(0), "{v}");
    assert_eq!(v["slots_digest_mismatch"].as_u64(), Some(0), "{v}");
    // 1.8 s apart (tolerance 2 s): across a boundary of every grid (they
    // are 500 ms apart).
    set(&mut src, &mut f, "ttl:far", d - 100, d + 1700);
    let v = verify();
    assert_eq!(v["differences"].as_u64(), Some(0), "{v}");
    assert_eq!(v["slots_digest_mismatch"].as_u64(), Some(1), "{v}");
    let s = v["summary"].as_str().unwrap();
    assert!(
        s.contains("1 slot digest differed; key-by-key re-check found 0 differences")
            && s.contains("1 slot only with TTLs that agree within --ttl-tolerance-ms but fall in different"),
        "{s}"
    );
}

/// Builds a stream with deleted entries, two consumer groups, pending
/// entries with several delivery counts and a consumer without pending
/// entries (on the source, through its master).
fn load_stream_with_groups(src: &mut ferrite_migrate::topo::Source, k: &str, n: usize, value_len: usize) {
    for part in 0..n.div_ceil(500) {
        // One XADD per entry, pipelined through the master.
        let slot = ferrite_commands::key_hash_slot(k.as_bytes());
        let cmds: Vec<Vec<Vec<u8>>> = (part * 500..((part + 1) * 500).min(n))
            .map(|i| {
                args(&[
                    "XADD",
                    k,
                    &format!("{}-{}", 1000 + i, i % 3),
                    "f",
                    &noise(i as u64, value_len),
                    "n",
                    &i.to_string(),
                ])
            })
            .collect();
        for r in src.slot_pipeline(slot, &cmds).unwrap() {
            assert!(!r.is_error(), "{r:?}");
        }
    }
    for c in [
        vec!["XDEL", k, "1003-0", "1004-1"],
        vec!["XGROUP", "CREATE", k, "g1", "0"],
        vec!["XGROUP", "CREATE", k, "g2", "1010-1", "ENTRIESREAD", "9"],
        vec!["XGROUP", "CREATECONSUMER", k, "g2", "idle-one"],
        vec!["XREADGROUP", "GROUP", "g1", "alice", "COUNT", "40", "STREAMS", k, ">"],
        vec!["XREADGROUP", "GROUP", "g1", "bob", "COUNT", "25", "STREAMS", k, ">"],
        vec!["XACK", k, "g1", "1000-0", "1001-1", "1002-2"],
        vec!["XCLAIM", k, "g1", "bob", "0", "1005-2", "1006-0"],
        vec!["XCLAIM", k, "g1", "bob", "0", "1006-0"],
        vec!["XREADGROUP", "GROUP", "g2", "carol", "COUNT", "7", "STREAMS", k, ">"],
    ] {
        let r = on_key(src, k, &c);
        assert!(!r.is_error(), "{c:?}: {r:?}");
    }
}

/// Verify compares consumer groups: copied streams verify clean, and a
/// group, consumer or pending entry changed on the target is reported with
/// what differs.
#[test]
fn verify_compares_stream_consumer_groups() {
    let cluster = Cluster::start(3, 0);
    let ferrite = start_ferrite();
    let mut src = source(&cluster);
    load_stream_with_groups(&mut src, "xs:1", 120, 20);
    load_stream_with_groups(&mut src, "xs:2", 60, 20);
    // A group whose entries-read is nil (created mid-stream after deletes).
    load_stream_with_groups(&mut src, "xs:3", 30, 5);
    assert!(!on_key(&mut src, "xs:3", &["XGROUP", "CREATE", "xs:3", "g3", "1010-1"]).is_error());
    let (_d, state) = state_path("xgroups");
    let out = migrate(
        &sv(&[
            "--from-redis-cluster",
            &cluster.seed(),
            "--to",
            &ferrite.addr(),
            "--method",
            "scan",
            "--state",
            &state,
            "--quiet",
        ]),
        Duration::from_secs(120),
    );
    assert!(out.status.success(), "{}", show(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("verify: 0 differences"), "{}", show(&out));
    let mut f = conn(&ferrite.addr());
    // An entries-read known on one side only is not a difference (Redis's
    // own replicas lose it), but the slot's digest differs: the summary says
    // why.
    let g = on_key(&mut src, "xs:3", &["XINFO", "GROUPS", "xs:3"]);
    let g3 = g.items().iter().find(|x| x.field("name").and_then(Reply::as_str).as_deref() == Some("g3")).unwrap();
    assert_eq!(g3.field("entries-read"), Some(&Reply::Nil), "{g3:?}");
    assert!(!f.cmd(&args(&["XGROUP", "SETID", "xs:3", "g3", "1010-1", "ENTRIESREAD", "9"])).unwrap().is_error());
    for c in [
        vec!["XGROUP", "SETID", "xs:1", "g1", "1001-1", "ENTRIESREAD", "2"],
        vec!["XGROUP", "SETID", "xs:2", "g2", "1017-2", "ENTRIESREAD", "99"],
        vec!["XACK", "xs:1", "g2", "1011-2"],
        vec!["XGROUP", "CREATECONSUMER", "xs:1", "g1", "mallory"],
        vec!["XCLAIM", "xs:2", "g1", "alice", "0", "1030-0", "FORCE", "JUSTID", "RETRYCOUNT", "9"],
    ] {
        assert!(!f.cmd(&args(&c)).unwrap().is_error(), "{c:?}");
    }
    let out = migrate(
        &sv(&["verify", "--from-redis-cluster", &cluster.seed(), "--to", &ferrite.addr(), "--json"]),
        Duration::from_secs(60),
    );
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["differences"].as_u64(), Some(2), "{v}");
    let diffs = v["diffs"].to_string();
    for what in [
        "group g1 last-delivered-id: source 1066-0 target 1001-1",
        "group g2 entries-read: source 16 target 99",
        "group g1 consumers (name:pending): source [alice:35,bob:27] target [alice:35,bob:27,mallory:0]",
        "group g2 consumers (name:pending): source [carol:7,idle-one:0] target [carol:6,idle-one:0]",
        "group g2 pending entries (id, consumer, delivery count) differ: source 7 target 6",
    ] {
        assert!(diffs.contains(what), "{what} not in {diffs}");
    }
    assert!(
        diffs.contains("group g1 pending entries (id, consumer, delivery count) differ: source 55 target 55"),
        "{diffs}"
    );
    assert!(!diffs.contains("xs:3"), "{diffs}");
    let summary = v["summary"].as_str().unwrap();
    assert!(summary.contains("3 slot digests differed; key-by-key re-check found 2 differences"), "{summary}");
    assert!(summary.contains("1 slot only with stream groups whose entries-read is nil on one side"), "{summary}");
}

fn lua_lib(name: &str, fname: &str, ret: &str) -> String {
    format!("#!lua name={name}\nredis.register_function{{function_name='{fname}', callback=function(keys, args) return '{ret}' end, flags={{'no-writes'}}}}")
}

/// Function libraries: `plan` counts them, `run` copies them (the union
/// when the masters disagree, an error for one name with two codes) before
/// the data, `verify` compares them.
#[test]
fn functions_are_planned_copied_and_verified() {
    let cluster = Cluster::start(3, 0);
    let ferrite = start_ferrite();
    let mut src = source(&cluster);
    let masters: Vec<String> = src.topo.masters.iter().map(|m| m.addr.clone()).collect();
    assert_eq!(masters.len(), 3);
    for (i, m) in masters.iter().enumerate() {
        let c = src.conn(m).unwrap();
        let r = c.cmd(&args(&["FUNCTION", "LOAD", &lua_lib("common", "hello", "hi")])).unwrap();
        assert!(!r.is_error(), "{r:?}");
        if i == 0 {
            let r = c.cmd(&args(&["FUNCTION", "LOAD", &lua_lib("extra", "only0", "zero")])).unwrap();
            assert!(!r.is_error(), "{r:?}");
        }
    }
    on_key(&mut src, "fk", &["SET", "fk", "v"]);
    let out = migrate(&sv(&["plan", "--from-redis-cluster", &cluster.seed(), "--json"]), Duration::from_secs(60));
    assert!(out.status.success(), "{}", show(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["function_libraries"].as_u64(), Some(2), "{v}");
    assert!(v["function_warnings"].to_string().contains("different function libraries"), "{v}");
    let (_d, state) = state_path("functions");
    let run = |state: &str| {
        migrate(
            &sv(&[
                "--from-redis-cluster",
                &cluster.seed(),
                "--to",
                &ferrite.addr(),
                "--method",
                "scan",
                "--state",
                state,
                "--force",
            ]),
            Duration::from_secs(120),
        )
    };
    let out = run(&state);
    assert!(out.status.success(), "{}", show(&out));
    let text = String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(text.contains("verify: 0 differences"), "{text}");
    assert!(text.contains("using the union [common, extra]"), "{text}");
    let mut f = conn(&ferrite.addr());
    assert_eq!(f.cmd(&args(&["FCALL", "hello", "0"])).unwrap(), Reply::Bulk(b("hi")));
    assert_eq!(f.cmd(&args(&["FCALL_RO", "only0", "0"])).unwrap(), Reply::Bulk(b("zero")));
    let verify = || {
        migrate(
            &sv(&["verify", "--from-redis-cluster", &cluster.seed(), "--to", &ferrite.addr(), "--json"]),
            Duration::from_secs(60),
        )
    };
    let out = verify();
    assert!(out.status.success(), "{}", show(&out));
    // Differences on the target are reported.
    for c in [
        vec!["FUNCTION".to_string(), "DELETE".into(), "extra".into()],
        vec!["FUNCTION".into(), "LOAD".into(), lua_lib("mine", "m", "m")],
        vec!["FUNCTION".into(), "LOAD".into(), "REPLACE".into(), lua_lib("common", "hello", "changed")],
    ] {
        let c: Vec<&str> = c.iter().map(String::as_str).collect();
        assert!(!f.cmd(&args(&c)).unwrap().is_error(), "{c:?}");
    }
    let out = verify();
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["differences"].as_u64(), Some(3), "{v}");
    let fd = v["function_diffs"].to_string();
    for what in [
        "function library common: code differs",
        "function library extra: missing on target",
        "function library mine: extra on target",
    ] {
        assert!(fd.contains(what), "{what} not in {fd}");
    }
    // A run puts the source's libraries back (REPLACE); ferrite's own extra
    // library stays.
    let (_d2, state2) = state_path("functions2");
    let out = run(&state2);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("verify: 1 differences"), "{}", show(&out));
    assert_eq!(f.cmd(&args(&["FCALL", "hello", "0"])).unwrap(), Reply::Bulk(b("hi")));
    // One name, two codes on the source: the run refuses, before any data.
    let r =
        src.conn(&masters[1]).unwrap().cmd(&args(&["FUNCTION", "LOAD", &lua_lib("extra", "only0", "one")])).unwrap();
    assert!(!r.is_error(), "{r:?}");
    let (_d3, state3) = state_path("functions3");
    let out = run(&state3);
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("function library extra differs between source masters"), "{err}");
}

/// XINFO STREAM without the radix tree's key and node counts (a layout
/// detail: a copy made of different appends and deletes packs differently).
fn without_layout(r: Reply) -> Reply {
    match r {
        Reply::Array(v) if v.first().and_then(Reply::as_bytes) == Some(b"length") => {
            let mut out = Vec::new();
            for pair in v.chunks(2) {
                let name = pair[0].as_bytes().unwrap_or_default();
                if name != b"radix-tree-keys" && name != b"radix-tree-nodes" {
                    out.extend(pair.iter().cloned());
                }
            }
            Reply::Array(out)
        }
        r => r,
    }
}

/// A stream whose DUMP payload is over the 8 MB kept whole is copied in
/// parts (XRANGE / XADD with its ids, XSETID, groups, consumers, pending
/// entries): verify finds no difference, groups and pending entries match.
#[test]
fn scan_copies_a_big_stream_with_groups_in_parts() {
    let cluster = Cluster::start(3, 0);
    let ferrite = start_ferrite();
    let mut src = source(&cluster);
    // 12000 entries of about 1 KB: a DUMP payload of about 12 MB.
    load_stream_with_groups(&mut src, "big:stream", 12000, 1024);
    on_key(&mut src, "big:stream", &["PEXPIRE", "big:stream", "3600000"]);
    // More pending entries than one XPENDING page (1000), some deleted.
    for c in [
        vec!["XGROUP", "CREATE", "big:stream", "g3", "0"],
        vec!["XREADGROUP", "GROUP", "g3", "dave", "COUNT", "2500", "STREAMS", "big:stream", ">"],
        vec!["XDEL", "big:stream", "2001-2", "2002-0"],
    ] {
        assert!(!on_key(&mut src, "big:stream", &c).is_error(), "{c:?}");
    }
    let dump = on_key(&mut src, "big:stream", &["DUMP", "big:stream"]);
    assert!(dump.as_bytes().map(|p| p.len()).unwrap_or(0) > 8 << 20, "the stream is not big enough");
    drop(dump);
    load_stream_with_groups(&mut src, "small:stream", 100, 10);
    let (_d, state) = state_path("bigstream");
    let out = migrate(
        &sv(&[
            "--from-redis-cluster",
            &cluster.seed(),
            "--to",
            &ferrite.addr(),
            "--method",
            "scan",
            "--state",
            &state,
            "--quiet",
        ]),
        Duration::from_secs(300),
    );
    assert!(out.status.success(), "{}", show(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("verify: 0 differences") && text.contains("copy errors 0"), "{text}");
    let mut f = conn(&ferrite.addr());
    for k in ["big:stream", "small:stream"] {
        for c in [
            vec!["XLEN", k],
            vec!["XRANGE", k, "1990", "2010"],
            vec!["XINFO", "GROUPS", k],
            vec!["XINFO", "STREAM", k],
            vec!["XPENDING", k, "g1"],
            vec!["XPENDING", k, "g2"],
            vec!["XPENDING", k, "g3"],
        ] {
            let (a, b) = (without_layout(on_key(&mut src, k, &c)), without_layout(f.cmd(&args(&c)).unwrap()));
            assert!(a == b, "{c:?} differs");
        }
        // Pending entries: owner and delivery count exact, idle time close.
        let a = on_key(&mut src, k, &["XPENDING", k, "g1", "-", "+", "1000"]);
        let b = f.cmd(&args(&["XPENDING", k, "g1", "-", "+", "1000"])).unwrap();
        assert_eq!(a.items().len(), b.items().len());
        assert!(!a.items().is_empty());
        for (x, y) in a.items().iter().zip(b.items()) {
            let (x, y) = (x.items(), y.items());
            assert_eq!((&x[0], &x[1], &x[3]), (&y[0], &y[1], &y[3]));
            let (ix, iy) = (x[2].as_int().unwrap(), y[2].as_int().unwrap());
            assert!(iy + 60_000 >= ix && iy >= ix - 1000, "idle {ix} vs {iy}");
        }
    }
    let t = f.cmd(&args(&["PTTL", "big:stream"])).unwrap().as_int().unwrap();
    assert!(t > 3_000_000, "{t}");
    // It arrived in parts (the small stream was one RESTORE): every entry
    // was an XADD, every pending entry an XCLAIM.
    let info = f.cmd(&args(&["INFO", "commandstats"])).unwrap().as_str().unwrap();
    let calls = |c: &str| -> i64 {
        let line = info.lines().find(|l| l.starts_with(&format!("cmdstat_{c}:calls="))).unwrap_or("");
        line.split(['=', ',']).nth(1).and_then(|n| n.parse().ok()).unwrap_or(0)
    };
    assert!(calls("xadd") >= 11998, "{info}");
    assert!(calls("xclaim") >= 60, "{info}");
    assert!(calls("xsetid") >= 1, "{info}");
}

/// Edge cases of the in-parts stream copy, through the library: an empty
/// stream with a group and consumers, a trimmed stream, pending entries
/// whose messages were trimmed or deleted (placeholders), a stream trimmed
/// to nothing with pending entries, a key gone from the source.
#[test]
fn stream_copy_in_parts_edge_cases() {
    use ferrite_migrate::copy::{copy_big, CopyStats, Target};
    let cluster = Cluster::start(3, 0);
    let ferrite = start_ferrite();
    let mut src = source(&cluster);
    for c in [
        vec!["XGROUP", "CREATE", "xe:empty", "g", "$", "MKSTREAM"],
        vec!["XGROUP", "CREATECONSUMER", "xe:empty", "g", "c1"],
        vec!["XGROUP", "CREATE", "xe:empty", "h", "0", "ENTRIESREAD", "0"],
    ] {
        assert!(!on_key(&mut src, "xe:empty", &c).is_error(), "{c:?}");
    }
    load_stream_with_groups(&mut src, "xe:trim", 300, 5);
    // Trims pending entries' messages too (g1's 1005..1009).
    on_key(&mut src, "xe:trim", &["XTRIM", "xe:trim", "MINID", "1010"]);
    load_stream_with_groups(&mut src, "xe:dangling", 50, 5);
    // 1007-1 and 1038-2 (alice) are pending in g1; delete
    // their messages, and the newest entries.
    for id in ["1007-1", "1038-2", "1049-1", "1048-0"] {
        assert_eq!(on_key(&mut src, "xe:dangling", &["XDEL", "xe:dangling", id]).as_int(), Some(1));
    }
    load_stream_with_groups(&mut src, "xe:gone", 40, 5);
    on_key(&mut src, "xe:gone", &["XTRIM", "xe:gone", "MAXLEN", "0"]);
    let auth = ferrite_migrate::resp::Auth::default();
    let mut dst = Target::connect(&ferrite.addr(), Duration::from_secs(10), &auth).unwrap();
    // Something in the way on the target is replaced.
    dst.conn.cmd(&args(&["SET", "xe:trim", "old"])).unwrap();
    let mut st = CopyStats::default();
    for k in ["xe:empty", "xe:trim", "xe:dangling", "xe:gone", "xe:missing"] {
        let slot = ferrite_commands::key_hash_slot(k.as_bytes());
        copy_big(&mut src, slot, k.as_bytes(), &mut dst, &mut st).unwrap();
    }
    assert_eq!(st.errors, 0, "{:?}", st.failed);
    assert_eq!((st.keys, st.deleted), (4, 1));
    let mut f = conn(&ferrite.addr());
    for k in ["xe:empty", "xe:trim", "xe:dangling", "xe:gone"] {
        for c in [
            vec!["XINFO", "STREAM", k],
            vec!["XINFO", "GROUPS", k],
            vec!["XLEN", k],
            vec!["XPENDING", k, "g1"],
            vec!["XPENDING", k, "g2"],
        ] {
            assert_eq!(without_layout(on_key(&mut src, k, &c)), without_layout(f.cmd(&args(&c)).unwrap()), "{c:?}");
        }
        let slot = ferrite_commands::key_hash_slot(k.as_bytes());
        let d = ferrite_migrate::verify::compare_keys(&mut src, &mut dst.conn, slot, &[b(k)], 2000).unwrap();
        assert!(d.is_empty(), "{k}: {d:?}");
    }
    assert_eq!(f.cmd(&args(&["XINFO", "CONSUMERS", "xe:empty", "g"])).unwrap().items().len(), 1);
    // The placeholders are gone, the pending entries stay.
    let r = f.cmd(&args(&["XPENDING", "xe:trim", "g1", "-", "1009-2", "100"])).unwrap();
    assert_eq!(r.items().len(), 5, "{r:?}");
    assert_eq!(f.cmd(&args(&["XRANGE", "xe:trim", "-", "1009-2"])).unwrap().items().len(), 0);
}
