//! Shared test support: a real Redis Cluster and a real ferrite (testkit),
//! data loading through the tool's own cluster-aware connection set, and
//! running the `ferrite-migrate` binary with a time bound.
#![allow(dead_code)]

use ferrite_migrate::resp::{Auth, Conn, Reply};
use ferrite_migrate::topo::Source;
use ferrite_testkit::{Cluster, Proc};
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub const MIGRATE: &str = env!("CARGO_BIN_EXE_ferrite-migrate");

/// A binary of this workspace, built on demand with the same cargo (so a
/// test never silently uses a stale or missing binary).
pub fn workspace_binary(pkg: &str, bin: &str) -> PathBuf {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _g = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let exe = std::env::current_exe().expect("current_exe");
    let profile = exe.parent().and_then(|d| d.parent()).expect("target dir").to_path_buf();
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let st = Command::new(cargo)
        .args(["build", "-q", "-p", pkg, "--bin", bin])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .status()
        .expect("run cargo build");
    assert!(st.success(), "cargo build -p {pkg} --bin {bin} failed");
    let p = profile.join(bin);
    assert!(p.is_file(), "{bin} binary not found at {p:?} after building it");
    p
}

pub fn ferrite_bin() -> PathBuf {
    static P: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    P.get_or_init(|| workspace_binary("ferrite", "ferrite")).clone()
}

pub fn proxy_bin() -> PathBuf {
    static P: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    P.get_or_init(|| workspace_binary("ferrite-proxy", "ferrite-proxy")).clone()
}

/// A ferrite-proxy in front of `cluster` and `ferrite`.
pub fn start_proxy(cluster: &Cluster, ferrite: &str, extra: &[&str]) -> Proc {
    let port = ferrite_testkit::free_port();
    let mut a = vec![
        "--listen".to_string(),
        format!("127.0.0.1:{port}"),
        "--upstream-cluster".into(),
        cluster.seed(),
        "--ferrite".into(),
        ferrite.to_string(),
    ];
    a.extend(extra.iter().map(|x| x.to_string()));
    ferrite_testkit::spawn_server(proxy_bin(), &a, port, "ferrite-proxy")
}

pub fn start_ferrite() -> Proc {
    ferrite_testkit::start_ferrite(ferrite_bin(), &[])
}

pub fn source(cluster: &Cluster) -> Source {
    Source::connect(vec![cluster.seed()], Auth::default(), Duration::from_secs(10)).expect("connect to the cluster")
}

pub fn conn(addr: &str) -> Conn {
    Conn::connect(addr, Duration::from_secs(10), &Auth::default()).expect("connect")
}

pub fn b(s: &str) -> Vec<u8> {
    s.as_bytes().to_vec()
}

pub fn args(parts: &[&str]) -> Vec<Vec<u8>> {
    parts.iter().map(|s| s.as_bytes().to_vec()).collect()
}

/// Run one command on the master owning `key`.
pub fn on_key(src: &mut Source, key: &str, parts: &[&str]) -> Reply {
    let slot = ferrite_commands::key_hash_slot(key.as_bytes());
    src.slot_pipeline(slot, &[args(parts)]).expect("source command").remove(0)
}

/// Load a dataset of every type (with and without TTLs) into the cluster;
/// returns the key names.
pub fn load_all_types(src: &mut Source, n: usize, tag: &str) -> Vec<String> {
    let mut keys = Vec::new();
    for i in 0..n {
        let k = format!("{tag}:str:{i}");
        on_key(src, &k, &["SET", &k, &format!("value-{i}")]);
        if i % 3 == 0 {
            on_key(src, &k, &["PEXPIRE", &k, "600000"]);
        }
        keys.push(k);
        let k = format!("{tag}:int:{i}");
        on_key(src, &k, &["SET", &k, &i.to_string()]);
        keys.push(k);
        let k = format!("{tag}:list:{i}");
        on_key(src, &k, &["RPUSH", &k, "a", "b", "c", &i.to_string()]);
        keys.push(k);
        let k = format!("{tag}:set:{i}");
        on_key(src, &k, &["SADD", &k, "x", "y", "z", &format!("m{i}")]);
        keys.push(k);
        let k = format!("{tag}:intset:{i}");
        on_key(src, &k, &["SADD", &k, "1", "2", "3", &i.to_string()]);
        keys.push(k);
        let k = format!("{tag}:zset:{i}");
        on_key(src, &k, &["ZADD", &k, "1.5", "a", "-2", "b", &i.to_string(), "c"]);
        if i % 4 == 1 {
            on_key(src, &k, &["EXPIRE", &k, "3600"]);
        }
        keys.push(k);
        let k = format!("{tag}:hash:{i}");
        on_key(src, &k, &["HSET", &k, "f1", "v1", "f2", &i.to_string()]);
        keys.push(k);
        let k = format!("{tag}:hll:{i}");
        on_key(src, &k, &["PFADD", &k, "a", "b", "c", &i.to_string()]);
        keys.push(k);
    }
    // Streams with a consumer group and pending entries.
    for i in 0..n.div_ceil(5) {
        let k = format!("{tag}:stream:{i}");
        for e in 0..20 {
            on_key(src, &k, &["XADD", &k, "*", "n", &e.to_string(), "who", &format!("w{i}")]);
        }
        on_key(src, &k, &["XGROUP", "CREATE", &k, "g1", "0"]);
        on_key(src, &k, &["XREADGROUP", "GROUP", "g1", "alice", "COUNT", "5", "STREAMS", &k, ">"]);
        keys.push(k);
    }
    // A few big collections (hashtable / skiplist / quicklist encodings).
    for j in 0..3 {
        let k = format!("{tag}:bighash:{j}");
        let mut a = vec!["HSET".to_string(), k.clone()];
        for f in 0..600 {
            a.push(format!("field{f}"));
            a.push(format!("value{f}-{}", "x".repeat(f % 50)));
        }
        let a: Vec<&str> = a.iter().map(String::as_str).collect();
        on_key(src, &k, &a);
        keys.push(k);
        let k = format!("{tag}:bigzset:{j}");
        let mut a = vec!["ZADD".to_string(), k.clone()];
        for f in 0..600 {
            a.push(format!("{}", f as f64 / 7.0));
            a.push(format!("m{f}"));
        }
        let a: Vec<&str> = a.iter().map(String::as_str).collect();
        on_key(src, &k, &a);
        keys.push(k);
        let k = format!("{tag}:biglist:{j}");
        let mut a = vec!["RPUSH".to_string(), k.clone()];
        for f in 0..2000 {
            a.push(format!("item{f}"));
        }
        let a: Vec<&str> = a.iter().map(String::as_str).collect();
        on_key(src, &k, &a);
        keys.push(k);
        let k = format!("{tag}:bigset:{j}");
        let mut a = vec!["SADD".to_string(), k.clone()];
        for f in 0..700 {
            a.push(format!("member{f}"));
        }
        let a: Vec<&str> = a.iter().map(String::as_str).collect();
        on_key(src, &k, &a);
        keys.push(k);
        let k = format!("{tag}:bigstr:{j}");
        on_key(src, &k, &["SET", &k, &"B".repeat(300_000)]);
        keys.push(k);
    }
    keys
}

/// Run the tool; panics if it does not finish within `limit`.
pub fn migrate(a: &[String], limit: Duration) -> Output {
    let mut child = Command::new(MIGRATE)
        .args(a)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn ferrite-migrate");
    let start = Instant::now();
    loop {
        if let Ok(Some(_)) = child.try_wait() {
            break;
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let out = child.wait_with_output().expect("wait");
            panic!(
                "ferrite-migrate {a:?} did not finish within {limit:?}\nstdout:\n{}\nstderr:\n{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().expect("wait")
}

pub fn spawn_migrate(a: &[String]) -> Child {
    Command::new(MIGRATE).args(a).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("spawn ferrite-migrate")
}

pub fn show(o: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

pub fn sv(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

/// A fresh state file path (the directory lives as long as the TempDir).
pub fn state_path(tag: &str) -> (ferrite_testkit::TempDir, String) {
    let d = ferrite_testkit::TempDir::new(tag);
    let p = d.path().join("state.json").display().to_string();
    (d, p)
}
