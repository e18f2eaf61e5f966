//! End to end: a real Redis Cluster, a real ferrite, a real ferrite-proxy in
//! front of both, a bounded client load writing through the proxy and
//! logging every acknowledged write, and `ferrite-migrate` run to
//! completion (with a kill + resume, or a source failover, in the middle).
//! Afterwards: verify found no difference, every acknowledged write is in
//! ferrite in order, no client request failed, every slot is owned by
//! ferrite at the proxy.

mod common;
use common::*;
use ferrite_migrate::resp::{Auth, Conn, Reply};
use ferrite_testkit::{Cluster, Proc};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What one load thread saw acknowledged.
#[derive(Default, Debug)]
struct Acked {
    sets: Vec<(String, String)>,
    counter: i64,
    log: Vec<i64>,
    deleted: Vec<String>,
    expiring: Vec<String>,
    failures: Vec<String>,
    tryagain: u64,
}

fn load_thread(proxy: String, t: usize, stop: Arc<AtomicBool>) -> Acked {
    let mut a = Acked::default();
    let mut c = Conn::connect(&proxy, Duration::from_secs(10), &Auth::default()).expect("connect to proxy");
    let start = Instant::now();
    let call = |c: &mut Conn, parts: &[String], a: &mut Acked| -> Option<Reply> {
        for _ in 0..500 {
            match c.cmd(parts) {
                Ok(Reply::Error(e)) if e.starts_with("TRYAGAIN") => {
                    a.tryagain += 1;
                    std::thread::sleep(Duration::from_millis(5));
                }
                Ok(Reply::Error(e)) => {
                    a.failures.push(format!("{parts:?}: {e}"));
                    return None;
                }
                Ok(r) => return Some(r),
                Err(e) => {
                    a.failures.push(format!("{parts:?}: {e}"));
                    return None;
                }
            }
        }
        a.failures.push(format!("{parts:?}: TRYAGAIN 500 times"));
        None
    };
    for i in 0..1_000_000i64 {
        if stop.load(Ordering::Relaxed) || start.elapsed() > Duration::from_secs(240) {
            break;
        }
        let k = format!("ack:{t}:{i}");
        if let Some(r) = call(&mut c, &[s("SET"), k.clone(), i.to_string()], &mut a) {
            assert_eq!(r, Reply::Simple(b("OK")));
            a.sets.push((k, i.to_string()));
        }
        if let Some(r) = call(&mut c, &[s("INCR"), format!("cnt:{t}")], &mut a) {
            a.counter = r.as_int().unwrap();
        }
        if let Some(r) = call(&mut c, &[s("RPUSH"), format!("log:{t}"), i.to_string()], &mut a) {
            assert_eq!(r.as_int(), Some(a.log.len() as i64 + 1), "RPUSH reply order");
            a.log.push(i);
        }
        // Deletes and short expiries during the run must reach ferrite too.
        if i % 10 == 9 {
            let k = format!("ack:{t}:{}", i - 5);
            if let Some(r) = call(&mut c, &[s("DEL"), k.clone()], &mut a) {
                assert_eq!(r.as_int(), Some(1), "DEL {k}");
                a.deleted.push(k);
            }
            let k = format!("tmp:{t}:{i}");
            if call(&mut c, &[s("SET"), k.clone(), s("x"), s("PX"), s("100")], &mut a).is_some() {
                a.expiring.push(k);
            }
        }
        if !a.failures.is_empty() {
            break;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    a
}

fn s(x: &str) -> String {
    x.to_string()
}

fn flipped_count(state: &str) -> usize {
    std::fs::read_to_string(state)
        .ok()
        .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
        .map(|v| v["slots"].as_str().unwrap_or("").bytes().filter(|c| *c == b'f').count())
        .unwrap_or(0)
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Fault {
    None,
    KillAndResume,
    Failover,
}

fn scenario(method: &str, fault: Fault) {
    let cluster = Cluster::start(3, if fault == Fault::Failover { 1 } else { 0 });
    let ferrite = start_ferrite();
    // The failover scenarios also exercise the admin password.
    let pw: &[&str] = if fault == Fault::Failover { &["--admin-password", "s3cret"] } else { &[] };
    let proxy: Proc = start_proxy(&cluster, &ferrite.addr(), pw);
    let mut src = source(&cluster);
    let keys = load_all_types(&mut src, 20, "d");
    let stop = Arc::new(AtomicBool::new(false));
    let loads: Vec<_> = (0..2)
        .map(|t| {
            let p = proxy.addr();
            let st = stop.clone();
            std::thread::spawn(move || load_thread(p, t, st))
        })
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    let (_d, state) = state_path("e2e");
    let base = sv(&[
        "--from-redis-cluster",
        &cluster.seed(),
        "--to",
        &ferrite.addr(),
        "--proxy",
        &proxy.addr(),
        "--method",
        method,
        "--state",
        &state,
        "--cutover-slots",
        "1024",
        "--quiet",
    ]);
    let mut base = base;
    if fault == Fault::Failover {
        base.extend(sv(&["--proxy-admin-password", "s3cret"]));
    }
    let mut run = vec![s("run")];
    run.extend(base.iter().cloned());
    let out = if fault == Fault::None {
        migrate(&run, Duration::from_secs(240))
    } else {
        let mut child = spawn_migrate(&run);
        let t0 = Instant::now();
        while flipped_count(&state) < 4096 {
            assert!(t0.elapsed() < Duration::from_secs(120), "no progress");
            if let Ok(Some(_)) = child.try_wait() {
                panic!("run ended early: {}", show(&child.wait_with_output().unwrap()));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        if fault == Fault::KillAndResume {
            child.kill().unwrap();
            let _ = child.wait();
            assert!(flipped_count(&state) < 16384, "finished before the kill");
            std::thread::sleep(Duration::from_millis(500));
            let mut r = vec![s("resume")];
            r.extend(base.iter().cloned());
            migrate(&r, Duration::from_secs(240))
        } else {
            // Fail over the master of the last slots (not migrated yet).
            let m = cluster.master_of_slot(16383);
            let topo = cluster.topology();
            let my_id = topo.iter().find(|n| n.port == m).unwrap().id.clone();
            let rep = topo.iter().find(|n| !n.master && n.master_id.as_deref() == Some(my_id.as_str())).unwrap().port;
            cluster.failover(rep);
            let still_running = matches!(child.try_wait(), Ok(None));
            eprintln!("failover done; run still running: {still_running}");
            let t0 = Instant::now();
            loop {
                if let Ok(Some(_)) = child.try_wait() {
                    break;
                }
                assert!(t0.elapsed() < Duration::from_secs(240), "run did not finish after the failover");
                std::thread::sleep(Duration::from_millis(20));
            }
            let out = child.wait_with_output().unwrap();
            if still_running && method == "replication" {
                // The demoted master dropped its replicas: the link was
                // re-established with the new master.
                let err = String::from_utf8_lossy(&out.stderr);
                assert!(err.contains("replication link to"), "{}", show(&out));
            }
            out
        }
    };
    // Keep the load running a little after the run, then stop it.
    std::thread::sleep(Duration::from_millis(300));
    stop.store(true, Ordering::Relaxed);
    let acked: Vec<Acked> = loads.into_iter().map(|h| h.join().unwrap()).collect();
    assert!(out.status.success(), "{}\nproxy log:\n{}", show(&out), proxy.log());
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    eprintln!("{text}");
    assert!(text.contains("verify: 0 differences"), "{text}");
    assert!(text.contains("slots flipped 16384/16384"), "{text}");
    // No client request failed; every acknowledged write is in ferrite.
    let mut f = conn(&ferrite.addr());
    let mut total = 0;
    for (t, a) in acked.iter().enumerate() {
        assert!(a.failures.is_empty(), "client {t} failures: {:?}", a.failures);
        assert!(a.sets.len() > 50, "client {t} made too little progress: {}", a.sets.len());
        total += a.sets.len();
        let deleted: std::collections::HashSet<&String> = a.deleted.iter().collect();
        let live: Vec<(String, String)> = a.sets.iter().filter(|(k, _)| !deleted.contains(k)).cloned().collect();
        for k in &a.deleted {
            assert_eq!(f.cmd(&args(&["EXISTS", k])).unwrap().as_int(), Some(0), "deleted {k} exists in ferrite");
        }
        for k in &a.expiring {
            assert_eq!(f.cmd(&args(&["EXISTS", k])).unwrap().as_int(), Some(0), "expired {k} exists in ferrite");
        }
        for chunk in live.chunks(500) {
            let cmds: Vec<Vec<Vec<u8>>> = chunk.iter().map(|(k, _)| args(&["GET", k])).collect();
            let r = f.pipeline(&cmds).unwrap();
            for ((k, v), r) in chunk.iter().zip(r) {
                assert_eq!(r, Reply::Bulk(v.as_bytes().to_vec()), "acknowledged write {k}={v} missing in ferrite");
            }
        }
        let c = f.cmd(&args(&["GET", &format!("cnt:{t}")])).unwrap();
        assert_eq!(c.as_int(), Some(a.counter), "counter {t}");
        let l = f.cmd(&args(&["LRANGE", &format!("log:{t}"), "0", "-1"])).unwrap();
        let got: Vec<i64> = l.items().iter().map(|x| x.as_int().unwrap()).collect();
        assert_eq!(got, a.log, "log {t} in order");
    }
    eprintln!(
        "{method} {fault:?}: {total} acknowledged SETs checked, TRYAGAIN retries {}",
        acked.iter().map(|a| a.tryagain).sum::<u64>()
    );
    // Every slot is owned by ferrite at the proxy.
    let mut pc = conn(&proxy.addr());
    if fault == Fault::Failover {
        let r = pc.cmd(&args(&["FERRITE.PROXY", "SLOTS"])).unwrap();
        assert!(matches!(&r, Reply::Error(e) if e.starts_with("NOPERM")), "{r:?}");
        assert_eq!(pc.cmd(&args(&["FERRITE.PROXY", "AUTH", "s3cret"])).unwrap(), Reply::Simple(b("OK")));
    }
    let r = pc.cmd(&args(&["FERRITE.PROXY", "SLOTS"])).unwrap();
    let runs = r.items();
    assert_eq!(runs.len(), 1, "{r:?}");
    let run0 = runs[0].items();
    assert_eq!(run0[0].as_int(), Some(0));
    assert_eq!(run0[1].as_int(), Some(16383));
    assert_eq!(run0[2].as_str().as_deref(), Some("ferrite"));
    // The preloaded data is there too (and reads through the proxy work).
    for k in keys.iter().take(50) {
        let a = pc.cmd(&args(&["TYPE", k])).unwrap();
        let b2 = f.cmd(&args(&["TYPE", k])).unwrap();
        assert_eq!(a, b2);
        assert_ne!(a, Reply::Simple(b("none")), "{k}");
    }
    // Rollback of a few slots routes them back to the source, which has
    // every write thanks to the mirror.
    if method == "scan" && fault == Fault::KillAndResume {
        let out = migrate(&sv(&["rollback", "--state", &state, "--slots", "0-99"]), Duration::from_secs(30));
        assert!(out.status.success(), "{}", show(&out));
        let r = pc.cmd(&args(&["FERRITE.PROXY", "SLOTS"])).unwrap();
        let first = r.items()[0].items();
        assert_eq!(first[1].as_int(), Some(99), "{r:?}");
        assert_eq!(first[2].as_str().as_deref(), Some("upstream"), "{r:?}");
        let out = migrate(&sv(&["status", "--state", &state, "--json"]), Duration::from_secs(30));
        let st: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(st["slots_flipped"].as_u64(), Some(16384 - 100), "{st}");
        let mut src = source(&cluster);
        for (t, a) in acked.iter().enumerate() {
            let key = format!("cnt:{t}");
            let slot = ferrite_commands::key_hash_slot(key.as_bytes());
            let v = src.slot_pipeline(slot, &[args(&["GET", &key])]).unwrap().remove(0);
            assert_eq!(v.as_int(), Some(a.counter), "mirror kept {key} on the source");
        }
    }
    // Pause durations were measured.
    let out = migrate(
        &sv(&["status", "--state", &state, "--json", "--proxy-admin-password", "s3cret"]),
        Duration::from_secs(30),
    );
    let st: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(st["proxy_tables"][0]["slots"].is_array(), "{st}");
    assert!(st["pauses"].as_u64().unwrap() >= 16, "{st}");
    eprintln!("pause p50 {} ms p99 {} ms", st["pause_p50_ms"], st["pause_p99_ms"]);
}

#[test]
fn e2e_scan_with_kill_and_resume() {
    scenario("scan", Fault::KillAndResume);
}

#[test]
fn e2e_replication_with_kill_and_resume() {
    scenario("replication", Fault::KillAndResume);
}

#[test]
fn e2e_replication_with_failover() {
    scenario("replication", Fault::Failover);
}

#[test]
fn e2e_scan_with_failover() {
    scenario("scan", Fault::Failover);
}
