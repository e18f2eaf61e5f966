//! `ferrite-testkit`: test support shared by the crates of the workspace.
//!
//! What it does:
//! - starts a real `redis-server` standalone ([`start_redis`]) and a real Redis Cluster ([`Cluster::start`]: N
//!   masters with R replicas each, created with `redis-cli --cluster create`) on free loopback ports, each in its
//!   own temp dir, waits until every node reports `cluster_state:ok` and all nodes agree on the slot map, and kills
//!   every process on `Drop`;
//! - starts any server binary (a `ferrite`, a `ferrite-proxy`, ...) and waits until it answers `PING`
//!   ([`spawn_server`], [`start_ferrite`]);
//! - a tiny blocking RESP client ([`Conn`]) that returns raw reply bytes, plus a small reply parser ([`Reply`]).
//!
//! What it does not know: anything about the code under test. It never mocks Redis: a missing `redis-server` or
//! `redis-cli` is a loud test failure with the install hint, never a skip. Every wait is bounded in time; every
//! socket is on 127.0.0.1.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Read/write timeout of [`Conn`] sockets.
pub const IO_TIMEOUT: Duration = Duration::from_secs(20);

/// A free TCP port on 127.0.0.1 (bind to port 0, read it, release it).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0").local_addr().expect("local_addr").port()
}

fn port_free(p: u32) -> bool {
    p < 65536 && TcpListener::bind(("127.0.0.1", p as u16)).is_ok()
}

/// A free port `p` such that `p + 10000` (the cluster bus port) is free too.
pub fn free_cluster_port() -> u16 {
    for _ in 0..2000 {
        let p = 20000 + (rand_u64() % 25000) as u32;
        if port_free(p) && port_free(p + 10000) {
            return p as u16;
        }
    }
    panic!("no free port pair (p, p+10000) found on 127.0.0.1");
}

/// Search `PATH` for an executable.
pub fn which(bin: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?.to_str()?.split(':').map(|d| PathBuf::from(d).join(bin)).find(|p| p.is_file())
}

/// Like [`which`] but fails the test with an install hint.
pub fn require_bin(bin: &str) -> PathBuf {
    which(bin).unwrap_or_else(|| {
        panic!(
            "{bin} not found in PATH: install it (apt-get install -y redis-server redis-tools) — these tests need a \
             real Redis 7.0, they never mock it"
        )
    })
}

fn rand_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    static CTR: AtomicU64 = AtomicU64::new(0);
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(CTR.fetch_add(1, Ordering::Relaxed));
    h.write_u128(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos()));
    h.finish()
}

/// A temporary directory removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        let p = std::env::temp_dir().join(format!("ferrite-testkit-{tag}-{}-{:x}", std::process::id(), rand_u64()));
        std::fs::create_dir_all(&p).expect("create temp dir");
        TempDir(p)
    }
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A server process, killed (SIGKILL) and reaped on drop.
pub struct Proc {
    pub child: Child,
    pub port: u16,
    pub name: String,
    pub dir: Option<TempDir>,
}

impl Proc {
    /// `127.0.0.1:port`.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
    /// A new connection to this server.
    pub fn conn(&self) -> Conn {
        Conn::connect(self.port).unwrap_or_else(|e| panic!("connect to {} on {}: {e}", self.name, self.port))
    }
    /// Is the process still running?
    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
    /// Kill the process now (the `Proc` stays; `alive()` becomes false).
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
    /// Send SIGTERM and wait up to `timeout` for the exit; returns the exit status if it exited.
    pub fn terminate(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let _ = Command::new("kill").arg("-TERM").arg(self.child.id().to_string()).status();
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(Some(st)) = self.child.try_wait() {
                return Some(st);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Wait until `port` answers PING (`+PONG` or `-NOAUTH`), failing if the child exits or 15 s pass.
pub fn wait_ready(port: u16, child: &mut Child, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let Ok(Some(st)) = child.try_wait() {
            panic!("{what} exited during startup with {st}");
        }
        if let Ok(mut c) = Conn::connect(port) {
            c.stream.set_read_timeout(Some(Duration::from_secs(2))).ok();
            c.send(&["PING"]);
            // +PONG, or -NOAUTH when a password is required: either way it is up.
            if let Some(r) = c.try_read_reply_quiet() {
                if r.starts_with(b"+PONG") || r.starts_with(b"-NOAUTH") {
                    return;
                }
            }
        }
        if Instant::now() > deadline {
            panic!("{what} did not answer PING on port {port} within 15s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn redis_base_args(port: u16, dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = [
        "--port",
        &port.to_string(),
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--appendonly",
        "no",
        "--dir",
        &dir.display().to_string(),
        "--enable-debug-command",
        "yes",
        "--protected-mode",
        "no",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    v.push("--logfile".into());
    v.push(dir.join("redis.log").display().to_string());
    v
}

/// Start Debian's `redis-server` (7.0) standalone on a free loopback port, persistence off.
pub fn start_redis(extra: &[&str]) -> Proc {
    let bin = require_bin("redis-server");
    for _ in 0..5 {
        let port = free_port();
        let dir = TempDir::new("redis");
        let mut args = redis_base_args(port, dir.path());
        args.extend(extra.iter().map(|s| s.to_string()));
        let mut child = Command::new(&bin)
            .args(&args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn redis-server");
        std::thread::sleep(Duration::from_millis(30));
        if let Ok(Some(_)) = child.try_wait() {
            continue; // port race: try another
        }
        wait_ready(port, &mut child, "redis-server");
        return Proc { child, port, name: "redis-server".into(), dir: Some(dir) };
    }
    panic!("could not start redis-server (5 attempts)");
}

/// Start `redis-server` standalone on a given loopback port (e.g. to restart a killed node on the same address).
/// `dir` keeps the data directory of the node across restarts when given.
pub fn start_redis_on(port: u16, extra: &[&str]) -> Proc {
    let bin = require_bin("redis-server");
    let dir = TempDir::new("redis");
    let mut args = redis_base_args(port, dir.path());
    args.extend(extra.iter().map(|s| s.to_string()));
    let mut child =
        Command::new(&bin).args(&args).stdout(Stdio::null()).stderr(Stdio::null()).spawn().expect("spawn redis-server");
    wait_ready(port, &mut child, "redis-server");
    Proc { child, port, name: "redis-server".into(), dir: Some(dir) }
}

/// Start any server binary whose listening port is given in `args`, and wait until it answers PING.
/// Its stdout/stderr go to a log file in a temp dir (`proc.dir`), shown by [`Proc::log`].
pub fn spawn_server(bin: impl AsRef<Path>, args: &[String], port: u16, name: &str) -> Proc {
    let bin = bin.as_ref();
    assert!(bin.is_file(), "{name}: binary {} not found (build it first: cargo build --bins)", bin.display());
    let dir = TempDir::new(name);
    let log = std::fs::File::create(dir.path().join("out.log")).expect("create log");
    let log2 = log.try_clone().expect("clone log");
    let mut child = Command::new(bin)
        .args(args)
        .current_dir(dir.path())
        .stdout(Stdio::from(log))
        .stderr(Stdio::from(log2))
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {}: {e}", bin.display()));
    wait_ready(port, &mut child, name);
    Proc { child, port, name: name.into(), dir: Some(dir) }
}

impl Proc {
    /// The captured output of a process started by [`spawn_server`] (or the redis log).
    pub fn log(&self) -> String {
        let Some(d) = &self.dir else { return String::new() };
        let mut s = String::new();
        for f in ["out.log", "redis.log"] {
            if let Ok(t) = std::fs::read_to_string(d.path().join(f)) {
                s.push_str(&t);
            }
        }
        s
    }
}

/// Path of a workspace binary (`target/<profile>/<name>`), found from the running test executable
/// (`target/<profile>/deps/test-xxxx`) or `$CARGO_TARGET_DIR`. Panics with a build hint if absent.
pub fn workspace_bin(name: &str) -> PathBuf {
    let mut cands = Vec::new();
    if let Ok(exe) = std::env::current_exe() {
        if let Some(deps) = exe.parent() {
            if let Some(profile) = deps.parent() {
                cands.push(profile.join(name));
            }
            cands.push(deps.join(name));
        }
    }
    if let Some(t) = std::env::var_os("CARGO_TARGET_DIR") {
        cands.push(PathBuf::from(&t).join("debug").join(name));
        cands.push(PathBuf::from(&t).join("release").join(name));
    }
    for c in &cands {
        if c.is_file() {
            return c.clone();
        }
    }
    panic!("binary {name} not built (looked in {cands:?}): run `cargo build --bin {name}` first");
}

/// Start the `ferrite` store binary (`bin`, e.g. `env!("CARGO_BIN_EXE_ferrite")` or `workspace_bin("ferrite")`)
/// on a free loopback port.
pub fn start_ferrite(bin: impl AsRef<Path>, extra: &[&str]) -> Proc {
    let port = free_port();
    let mut args: Vec<String> = vec!["--port".into(), port.to_string(), "--bind".into(), "127.0.0.1".into()];
    args.extend(extra.iter().map(|s| s.to_string()));
    spawn_server(bin, &args, port, "ferrite")
}

/// Poll `f` every 20 ms until it returns `Some`, or panic with `what` after `timeout`.
pub fn wait_for<T>(timeout: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        if Instant::now() > deadline {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Redis Cluster
// ---------------------------------------------------------------------------------------------------------------

/// One node as seen in `CLUSTER NODES`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeInfo {
    pub id: String,
    pub port: u16,
    pub master: bool,
    /// Master id for a replica.
    pub master_id: Option<String>,
    /// Inclusive slot ranges served (masters).
    pub slots: Vec<(u16, u16)>,
    pub failed: bool,
}

/// Parse a `CLUSTER NODES` text.
pub fn parse_cluster_nodes(text: &str) -> Vec<NodeInfo> {
    let mut out = Vec::new();
    for line in text.lines() {
        let f: Vec<&str> = line.split(' ').collect();
        if f.len() < 8 {
            continue;
        }
        let port = f[1].split('@').next().and_then(|a| a.rsplit(':').next()).and_then(|p| p.parse().ok());
        let Some(port) = port else { continue };
        let flags = f[2];
        let mut slots = Vec::new();
        for s in &f[8..] {
            if s.starts_with('[') {
                continue;
            }
            let (a, b) = s.split_once('-').unwrap_or((s, s));
            if let (Ok(a), Ok(b)) = (a.parse(), b.parse()) {
                slots.push((a, b));
            }
        }
        out.push(NodeInfo {
            id: f[0].to_string(),
            port,
            master: flags.contains("master"),
            master_id: (f[3] != "-").then(|| f[3].to_string()),
            slots,
            failed: flags.split(',').any(|x| x == "fail" || x == "fail?"),
        });
    }
    out
}

/// A real Redis Cluster on loopback: `masters` masters with `replicas` replicas each. Killed on drop.
pub struct Cluster {
    pub nodes: Vec<Proc>,
    pub masters: usize,
    pub replicas: usize,
}

impl Cluster {
    /// Start and create the cluster, then wait until it is fully up and consistent (60 s bound).
    pub fn start(masters: usize, replicas: usize) -> Cluster {
        Cluster::start_with(masters, replicas, &[])
    }

    /// Like [`Cluster::start`] with extra `redis-server` arguments for every node.
    pub fn start_with(masters: usize, replicas: usize, extra: &[&str]) -> Cluster {
        assert!(masters >= 1, "a cluster needs at least one master (redis-cli needs 3)");
        let bin = require_bin("redis-server");
        let cli = require_bin("redis-cli");
        let total = masters * (1 + replicas);
        let mut nodes = Vec::new();
        for _ in 0..total {
            let mut started = None;
            for _ in 0..5 {
                let port = free_cluster_port();
                let dir = TempDir::new("cluster");
                let mut args = redis_base_args(port, dir.path());
                for a in [
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    "nodes.conf",
                    "--cluster-node-timeout",
                    "3000",
                    "--cluster-require-full-coverage",
                    "yes",
                ] {
                    args.push(a.into());
                }
                args.extend(extra.iter().map(|s| s.to_string()));
                let mut child = Command::new(&bin)
                    .args(&args)
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
                    .expect("spawn redis-server");
                std::thread::sleep(Duration::from_millis(30));
                if let Ok(Some(_)) = child.try_wait() {
                    continue;
                }
                wait_ready(port, &mut child, "redis-server (cluster node)");
                started = Some(Proc { child, port, name: "redis-cluster-node".into(), dir: Some(dir) });
                break;
            }
            nodes.push(started.expect("could not start a cluster node (5 attempts)"));
        }
        let mut c = Cluster { nodes, masters, replicas };
        if masters >= 3 {
            let mut cmd = Command::new(&cli);
            cmd.arg("--cluster").arg("create");
            for n in &c.nodes {
                cmd.arg(n.addr());
            }
            cmd.args(["--cluster-replicas", &replicas.to_string(), "--cluster-yes"]);
            let out = cmd.output().expect("run redis-cli --cluster create");
            assert!(
                out.status.success(),
                "redis-cli --cluster create failed: {}\n{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        } else {
            c.create_manually();
        }
        c.wait_consistent(Duration::from_secs(60));
        c
    }

    /// Small clusters (1-2 masters) that `redis-cli --cluster create` refuses: ADDSLOTSRANGE + MEET + REPLICATE.
    fn create_manually(&mut self) {
        let per = 16384 / self.masters;
        for i in 0..self.masters {
            let lo = i * per;
            let hi = if i + 1 == self.masters { 16383 } else { (i + 1) * per - 1 };
            let r = self.nodes[i].conn().cmd(&["CLUSTER", "ADDSLOTSRANGE", &lo.to_string(), &hi.to_string()]);
            assert!(r.starts_with(b"+OK"), "ADDSLOTSRANGE: {}", show(&r));
        }
        let first = self.nodes[0].port;
        for n in &self.nodes[1..] {
            n.conn().cmd(&["CLUSTER", "MEET", "127.0.0.1", &first.to_string()]);
        }
        let ids: Vec<String> =
            self.nodes.iter().map(|n| Reply::bulk_text(&n.conn().cmd(&["CLUSTER", "MYID"]))).collect();
        let total = self.nodes.len();
        wait_for(Duration::from_secs(30), "all nodes to know each other", || {
            self.nodes
                .iter()
                .all(|n| parse_cluster_nodes(&Reply::bulk_text(&n.conn().cmd(&["CLUSTER", "NODES"]))).len() == total)
                .then_some(())
        });
        for (k, n) in self.nodes[self.masters..].iter().enumerate() {
            let m = &ids[k % self.masters];
            wait_for(Duration::from_secs(20), "CLUSTER REPLICATE to succeed", || {
                n.conn().cmd(&["CLUSTER", "REPLICATE", m]).starts_with(b"+OK").then_some(())
            });
        }
    }

    /// `127.0.0.1:port` of the first node (a seed).
    pub fn seed(&self) -> String {
        self.nodes[0].addr()
    }

    /// Ports of every node.
    pub fn ports(&self) -> Vec<u16> {
        self.nodes.iter().map(|n| n.port).collect()
    }

    /// The topology as `CLUSTER NODES` of a live node sees it.
    pub fn topology(&self) -> Vec<NodeInfo> {
        for n in &self.nodes {
            if let Ok(mut c) = Conn::connect(n.port) {
                c.stream.set_read_timeout(Some(Duration::from_secs(3))).ok();
                c.send(&["CLUSTER", "NODES"]);
                if let Some(r) = c.try_read_reply_quiet() {
                    if r.starts_with(b"$") {
                        return parse_cluster_nodes(&Reply::bulk_text(&r));
                    }
                }
            }
        }
        panic!("no cluster node answered CLUSTER NODES");
    }

    /// Ports of the current masters (with slots).
    pub fn master_ports(&self) -> Vec<u16> {
        self.topology().into_iter().filter(|n| n.master && !n.slots.is_empty()).map(|n| n.port).collect()
    }

    /// Ports of the current replicas.
    pub fn replica_ports(&self) -> Vec<u16> {
        self.topology().into_iter().filter(|n| !n.master).map(|n| n.port).collect()
    }

    /// Port of the master serving `slot` (as the first live node sees it).
    pub fn master_of_slot(&self, slot: u16) -> u16 {
        self.topology()
            .into_iter()
            .find(|n| n.master && n.slots.iter().any(|&(a, b)| a <= slot && slot <= b))
            .map(|n| n.port)
            .unwrap_or_else(|| panic!("no master serves slot {slot}"))
    }

    /// Node id of the node on `port`.
    pub fn node_id(&self, port: u16) -> String {
        Reply::bulk_text(&Conn::connect(port).expect("connect").cmd(&["CLUSTER", "MYID"]))
    }

    /// Is the whole cluster up: every live node `cluster_state:ok`, knows every node, agrees on the slot map,
    /// and every replica's link to its master is up?
    pub fn is_consistent(&self) -> bool {
        let total = self.nodes.len();
        let mut maps: Vec<Vec<(u16, u16, u16)>> = Vec::new();
        for n in &self.nodes {
            let Ok(mut c) = Conn::connect(n.port) else { return false };
            c.stream.set_read_timeout(Some(Duration::from_secs(3))).ok();
            c.send(&["CLUSTER", "INFO"]);
            let Some(info) = c.try_read_reply_quiet() else { return false };
            let info = String::from_utf8_lossy(&info).to_string();
            if !info.contains("cluster_state:ok") || !info.contains(&format!("cluster_known_nodes:{total}\r")) {
                return false;
            }
            c.send(&["CLUSTER", "NODES"]);
            let Some(nodes) = c.try_read_reply_quiet() else { return false };
            let nodes = parse_cluster_nodes(&Reply::bulk_text(&nodes));
            if nodes.len() != total || nodes.iter().any(|x| x.failed) {
                return false;
            }
            let mut m: Vec<(u16, u16, u16)> = nodes
                .iter()
                .filter(|x| x.master)
                .flat_map(|x| x.slots.iter().map(move |&(a, b)| (a, b, x.port)))
                .collect();
            m.sort();
            let covered: u32 = m.iter().map(|&(a, b, _)| (b - a) as u32 + 1).sum();
            if covered != 16384 {
                return false;
            }
            maps.push(m);
            c.send(&["ROLE"]);
            let Some(role) = c.try_read_reply_quiet() else { return false };
            if role.windows(5).any(|w| w == b"slave") {
                c.send(&["INFO", "replication"]);
                let Some(r) = c.try_read_reply_quiet() else { return false };
                if !String::from_utf8_lossy(&r).contains("master_link_status:up") {
                    return false;
                }
            }
        }
        maps.windows(2).all(|w| w[0] == w[1])
    }

    /// Wait until [`Cluster::is_consistent`], panicking after `timeout`.
    pub fn wait_consistent(&self, timeout: Duration) {
        wait_for(timeout, "the Redis Cluster to be ok and consistent on every node", || {
            self.is_consistent().then_some(())
        });
    }

    /// Manual failover: promote the replica on `replica_port` (`CLUSTER FAILOVER`), wait until it is a master
    /// and the cluster is consistent again.
    pub fn failover(&self, replica_port: u16) {
        let r = Conn::connect(replica_port).expect("connect replica").cmd(&["CLUSTER", "FAILOVER"]);
        assert!(r.starts_with(b"+OK"), "CLUSTER FAILOVER: {}", show(&r));
        wait_for(Duration::from_secs(30), "the replica to become master", || {
            let r = Conn::connect(replica_port).ok()?.cmd(&["ROLE"]);
            r.windows(6).any(|w| w == b"master").then_some(())
        });
        self.wait_consistent(Duration::from_secs(30));
    }

    /// Move one slot (and its keys) from its current master to the master on `to_port`, the way
    /// `redis-cli --cluster reshard` does: SETSLOT IMPORTING/MIGRATING, MIGRATE in batches, SETSLOT NODE everywhere.
    /// With `pause_between` the slot is left half-migrated (keys partly moved) for that long, to exercise `-ASK`.
    pub fn move_slot(&self, slot: u16, to_port: u16, pause_between: Option<Duration>) {
        let from_port = self.master_of_slot(slot);
        if from_port == to_port {
            return;
        }
        let from_id = self.node_id(from_port);
        let to_id = self.node_id(to_port);
        let s = slot.to_string();
        let mut to = Conn::connect(to_port).expect("connect target");
        let mut from = Conn::connect(from_port).expect("connect source");
        let r = to.cmd(&["CLUSTER", "SETSLOT", &s, "IMPORTING", &from_id]);
        assert!(r.starts_with(b"+OK"), "SETSLOT IMPORTING: {}", show(&r));
        let r = from.cmd(&["CLUSTER", "SETSLOT", &s, "MIGRATING", &to_id]);
        assert!(r.starts_with(b"+OK"), "SETSLOT MIGRATING: {}", show(&r));
        let mut first = true;
        for _ in 0..100_000 {
            let keys = Reply::parse(&from.cmd(&["CLUSTER", "GETKEYSINSLOT", &s, "100"]));
            let keys: Vec<Vec<u8>> = keys.items().iter().filter_map(|k| k.as_bytes().map(|b| b.to_vec())).collect();
            if keys.is_empty() {
                break;
            }
            let mut args: Vec<Vec<u8>> =
                vec![b"MIGRATE".to_vec(), b"127.0.0.1".to_vec(), to_port.to_string().into_bytes(), b"".to_vec()];
            args.push(b"0".to_vec());
            args.push(b"10000".to_vec());
            args.push(b"REPLACE".to_vec());
            args.push(b"KEYS".to_vec());
            // Half-migrate on the first batch when asked to pause.
            let n = if first && pause_between.is_some() { keys.len().div_ceil(2) } else { keys.len() };
            args.extend(keys[..n].iter().cloned());
            let r = from.cmd(&args);
            assert!(r.starts_with(b"+OK") || r.starts_with(b"+NOKEY"), "MIGRATE: {}", show(&r));
            if first {
                if let Some(d) = pause_between {
                    std::thread::sleep(d);
                }
                first = false;
            }
        }
        for port in self.master_ports() {
            let _ = Conn::connect(port).map(|mut c| c.cmd(&["CLUSTER", "SETSLOT", &s, "NODE", &to_id]));
        }
        let _ = to.cmd(&["CLUSTER", "SETSLOT", &s, "NODE", &to_id]);
        let _ = from.cmd(&["CLUSTER", "SETSLOT", &s, "NODE", &to_id]);
        self.wait_consistent(Duration::from_secs(30));
    }

    /// `redis-cli --cluster reshard`: move `count` slots from the master on `from_port` to the one on `to_port`.
    pub fn reshard(&self, from_port: u16, to_port: u16, count: usize) {
        let cli = require_bin("redis-cli");
        let out = Command::new(cli)
            .args(["--cluster", "reshard", &format!("127.0.0.1:{from_port}")])
            .args(["--cluster-from", &self.node_id(from_port)])
            .args(["--cluster-to", &self.node_id(to_port)])
            .args(["--cluster-slots", &count.to_string(), "--cluster-yes"])
            .output()
            .expect("run redis-cli --cluster reshard");
        assert!(
            out.status.success(),
            "redis-cli --cluster reshard failed: {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        self.wait_consistent(Duration::from_secs(60));
    }

    /// The `Proc` of the node on `port`.
    pub fn node(&mut self, port: u16) -> &mut Proc {
        self.nodes.iter_mut().find(|n| n.port == port).unwrap_or_else(|| panic!("no node on port {port}"))
    }
}

// ---------------------------------------------------------------------------------------------------------------
// A tiny blocking RESP client
// ---------------------------------------------------------------------------------------------------------------

/// A blocking RESP connection returning raw reply bytes. Reads time out after [`IO_TIMEOUT`].
pub struct Conn {
    pub stream: TcpStream,
    buf: Vec<u8>,
}

impl Conn {
    /// Connect to `127.0.0.1:port`.
    pub fn connect(port: u16) -> std::io::Result<Conn> {
        Conn::connect_addr(&format!("127.0.0.1:{port}"))
    }

    /// Connect to `host:port`.
    pub fn connect_addr(addr: &str) -> std::io::Result<Conn> {
        use std::net::ToSocketAddrs;
        let sa = addr
            .to_socket_addrs()?
            .next()
            .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidInput, "bad address"))?;
        let stream = TcpStream::connect_timeout(&sa, Duration::from_secs(2))?;
        stream.set_read_timeout(Some(IO_TIMEOUT))?;
        stream.set_write_timeout(Some(IO_TIMEOUT))?;
        stream.set_nodelay(true)?;
        Ok(Conn { stream, buf: Vec::new() })
    }

    /// Change the read timeout.
    pub fn set_timeout(&mut self, d: Duration) {
        self.stream.set_read_timeout(Some(d)).ok();
    }

    pub fn send_raw(&mut self, data: &[u8]) {
        self.stream.write_all(data).expect("write to server");
    }

    pub fn send(&mut self, args: &[impl AsRef<[u8]>]) {
        self.send_raw(&encode(args));
    }

    /// Read one complete reply (any RESP2/RESP3 type), raw bytes. Panics on close or timeout.
    pub fn read_reply(&mut self) -> Vec<u8> {
        self.try_read_reply().expect("connection closed before a reply arrived")
    }

    /// Read one reply; `None` if the server closed the connection. Panics on timeout.
    pub fn try_read_reply(&mut self) -> Option<Vec<u8>> {
        match self.read_reply_result() {
            Ok(r) => r,
            Err(e) => panic!("read failed (timeout?): {e}"),
        }
    }

    /// Read one reply; `None` on close, timeout or error.
    pub fn try_read_reply_quiet(&mut self) -> Option<Vec<u8>> {
        self.read_reply_result().ok().flatten()
    }

    /// Read one reply: `Ok(None)` if the server closed the connection.
    pub fn read_reply_result(&mut self) -> std::io::Result<Option<Vec<u8>>> {
        loop {
            if !self.buf.is_empty() {
                match frame_len(&self.buf) {
                    Ok(Some(n)) => return Ok(Some(self.buf.drain(..n).collect())),
                    Ok(None) => {}
                    Err(e) => return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, e)),
                }
            }
            let mut tmp = [0u8; 65536];
            match self.stream.read(&mut tmp) {
                Ok(0) => return Ok(None),
                Ok(n) => self.buf.extend_from_slice(&tmp[..n]),
                Err(e) => return Err(e),
            }
        }
    }

    /// Everything the server sends until it closes the connection or `wait` passes without data.
    pub fn read_until_close(&mut self, wait: Duration) -> (Vec<u8>, bool) {
        self.stream.set_read_timeout(Some(wait)).ok();
        let mut out = std::mem::take(&mut self.buf);
        let mut tmp = [0u8; 65536];
        let closed = loop {
            match self.stream.read(&mut tmp) {
                Ok(0) => break true,
                Ok(n) => out.extend_from_slice(&tmp[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break true,
                Err(_) => break false,
            }
        };
        self.stream.set_read_timeout(Some(IO_TIMEOUT)).ok();
        (out, closed)
    }

    /// Send a command, read its reply.
    pub fn cmd(&mut self, args: &[impl AsRef<[u8]>]) -> Vec<u8> {
        self.send(args);
        self.read_reply()
    }

    /// Send a command given as one redis-cli-style line (quotes, `\x` escapes), read its reply.
    pub fn line(&mut self, line: &str) -> Vec<u8> {
        let args = split(line);
        self.cmd(&args)
    }

    /// Send a command and parse its reply.
    pub fn call(&mut self, args: &[impl AsRef<[u8]>]) -> Reply {
        Reply::parse(&self.cmd(args))
    }

    /// Send many commands at once, then read as many replies (a pipeline).
    pub fn pipeline(&mut self, cmds: &[Vec<Vec<u8>>]) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        for c in cmds {
            out.extend_from_slice(&encode(c));
        }
        self.send_raw(&out);
        (0..cmds.len()).map(|_| self.read_reply()).collect()
    }
}

/// Length of the first complete RESP2/RESP3 frame in `b`: `Ok(None)` if incomplete, `Err` if not RESP.
pub fn frame_len(b: &[u8]) -> Result<Option<usize>, String> {
    let Some(line_end) = b.windows(2).position(|w| w == b"\r\n") else { return Ok(None) };
    if b.is_empty() {
        return Ok(None);
    }
    let head = &b[1..line_end];
    let after = line_end + 2;
    let num = || -> Result<i64, String> {
        std::str::from_utf8(head)
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| format!("bad RESP header {:?}", show(b)))
    };
    match b[0] {
        b'+' | b'-' | b':' | b',' | b'_' | b'#' | b'(' => Ok(Some(after)),
        b'$' | b'=' | b'!' => {
            let n = num()?;
            if n < 0 {
                return Ok(Some(after));
            }
            let end = after + n as usize + 2;
            Ok((b.len() >= end).then_some(end))
        }
        b'*' | b'~' | b'>' | b'%' | b'|' => {
            let n = num()?;
            if n < 0 {
                return Ok(Some(after));
            }
            let items = if matches!(b[0], b'%' | b'|') { 2 * n } else { n };
            let mut pos = after;
            for _ in 0..items {
                match frame_len(&b[pos..])? {
                    Some(l) => pos += l,
                    None => return Ok(None),
                }
            }
            Ok(Some(pos))
        }
        _ => Err(format!("not RESP: {:?}", show(b))),
    }
}

/// Encode a command as a RESP multibulk.
pub fn encode(args: &[impl AsRef<[u8]>]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        let a = a.as_ref();
        out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// Split a line like redis-cli does (quotes, `\x` escapes).
pub fn split(line: &str) -> Vec<Vec<u8>> {
    let mut v = Vec::new();
    ferrite_resp::parser::split_args(line.as_bytes(), &mut v).unwrap_or_else(|_| panic!("bad quoting in {line:?}"));
    v.into_iter().map(|b| b.to_vec()).collect()
}

/// Raw reply bytes shown on one line (`\r\n` escaped).
pub fn show(b: &[u8]) -> String {
    String::from_utf8_lossy(b).replace("\r\n", "\\r\\n")
}

/// A parsed reply (RESP2 and RESP3). Aggregates keep their kind; maps are flattened key, value, ...
#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    Simple(String),
    Error(String),
    Int(i64),
    Bulk(Vec<u8>),
    Nil,
    /// `*`, `~` (set), `>` (push), `%` (map, flattened) with the type byte.
    Array(u8, Vec<Reply>),
    /// `,` `#` `(` `=` and other scalar RESP3 forms, as text.
    Other(u8, String),
}

impl Reply {
    /// Parse one complete reply; panics on incomplete or invalid input (test helper).
    pub fn parse(b: &[u8]) -> Reply {
        let (r, _) = Reply::parse_at(b, 0).unwrap_or_else(|| panic!("cannot parse reply {:?}", show(b)));
        r
    }

    fn parse_at(b: &[u8], pos: usize) -> Option<(Reply, usize)> {
        let rest = b.get(pos..)?;
        let le = rest.windows(2).position(|w| w == b"\r\n")?;
        let t = *rest.first()?;
        let head = std::str::from_utf8(&rest[1..le]).ok()?;
        let after = pos + le + 2;
        Some(match t {
            b'+' => (Reply::Simple(head.into()), after),
            b'-' => (Reply::Error(head.into()), after),
            b':' => (Reply::Int(head.parse().ok()?), after),
            b'_' => (Reply::Nil, after),
            b'$' | b'=' | b'!' => {
                let n: i64 = head.parse().ok()?;
                if n < 0 {
                    return Some((Reply::Nil, after));
                }
                let data = b.get(after..after + n as usize)?.to_vec();
                let r =
                    if t == b'$' { Reply::Bulk(data) } else { Reply::Other(t, String::from_utf8_lossy(&data).into()) };
                (r, after + n as usize + 2)
            }
            b'*' | b'~' | b'>' | b'%' | b'|' => {
                let n: i64 = head.parse().ok()?;
                if n < 0 {
                    return Some((Reply::Nil, after));
                }
                let items = if matches!(t, b'%' | b'|') { 2 * n } else { n };
                let mut v = Vec::new();
                let mut p = after;
                for _ in 0..items {
                    let (r, np) = Reply::parse_at(b, p)?;
                    v.push(r);
                    p = np;
                }
                (Reply::Array(t, v), p)
            }
            _ => (Reply::Other(t, head.into()), after),
        })
    }

    /// Elements of an aggregate (empty for scalars).
    pub fn items(&self) -> &[Reply] {
        match self {
            Reply::Array(_, v) => v,
            _ => &[],
        }
    }

    /// Bytes of a bulk or simple string.
    pub fn as_bytes(&self) -> Option<&[u8]> {
        match self {
            Reply::Bulk(b) => Some(b),
            Reply::Simple(s) => Some(s.as_bytes()),
            _ => None,
        }
    }

    pub fn as_int(&self) -> Option<i64> {
        match self {
            Reply::Int(n) => Some(*n),
            _ => None,
        }
    }

    /// The text of a bulk reply given raw (panics otherwise): handy for `CLUSTER NODES`, `INFO`, `CLUSTER MYID`.
    pub fn bulk_text(raw: &[u8]) -> String {
        match Reply::parse(raw) {
            Reply::Bulk(b) => String::from_utf8_lossy(&b).into(),
            Reply::Other(b'=', s) => s.get(4..).unwrap_or("").to_string(),
            other => panic!("expected a bulk reply, got {other:?}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_frame() {
        let r = b"*3\r\n:1\r\n$3\r\nabc\r\n%1\r\n+a\r\n_\r\n";
        assert_eq!(frame_len(r), Ok(Some(r.len())));
        assert_eq!(frame_len(&r[..r.len() - 1]), Ok(None));
        let p = Reply::parse(r);
        assert_eq!(p.items().len(), 3);
        assert_eq!(p.items()[1].as_bytes(), Some(&b"abc"[..]));
        assert!(frame_len(b"?x\r\n").is_err());
    }

    #[test]
    fn nodes_text() {
        let t = "07c3 127.0.0.1:30004@40004 slave e7d1 0 1426238317239 4 connected\n\
                 e7d1 127.0.0.1:30001@40001 myself,master - 0 0 1 connected 0-5460 5461\n";
        let n = parse_cluster_nodes(t);
        assert_eq!(n.len(), 2);
        assert!(!n[0].master && n[0].master_id.as_deref() == Some("e7d1"));
        assert_eq!(n[1].slots, vec![(0, 5460), (5461, 5461)]);
    }
}
