//! `ferrite-proxy`: a transparent RESP proxy that lets applications move from a Redis Cluster to Ferrite without
//! changing anything: they connect to the proxy before, during and after the migration.
//!
//! What it does:
//! - speaks RESP2/RESP3 to clients (requests parsed by `ferrite-resp` with Redis's exact protocol errors),
//!   pipelines with replies in request order, and answers `CLUSTER SLOTS/SHARDS/NODES/INFO/MYID` as a one-node
//!   cluster owning every slot, so cluster-aware clients work unchanged;
//! - routes every request by the hash slot of its keys (key positions from `ferrite-commands`, the same table the
//!   store uses) through a 16384-slot table whose entries say `upstream`, `ferrite` or `paused`, plus a mirror
//!   flag ([`slots`]); the table is swapped atomically with an epoch by the `FERRITE.PROXY` admin commands
//!   ([`admin`], contract in `proxy/ADMIN.md`);
//! - upstream: discovers the Redis Cluster from seed nodes (`CLUSTER SHARDS`, falling back to `CLUSTER SLOTS`),
//!   keeps one multiplexed connection per master, follows `-MOVED` (refreshing the map) and `-ASK` (with
//!   `ASKING`), retries `-TRYAGAIN`/`-CLUSTERDOWN` and unsent requests within a time budget ([`topology`],
//!   [`backend`], [`router`]);
//! - Ferrite: a remote server (`--ferrite host:port`, standalone or, with `--ferrite-cluster`, a cluster
//!   discovered like the upstream) or, without it, the embedded Ferrite store run in this process on an internal
//!   loopback listener with a random password ([`Proxy::start`]);
//! - splits MGET/MSET/DEL/UNLINK/EXISTS/TOUCH over slots and merges the replies in order; fans out DBSIZE, KEYS,
//!   SCAN, FLUSHALL/FLUSHDB, SCRIPT/FUNCTION; runs MULTI/EXEC/WATCH and blocking commands on dedicated
//!   connections to the owner; delivers pub/sub messages from both sides ([`pubsub`]);
//! - exports Prometheus metrics on their own port ([`metrics`]).
//!
//! What it does not know: how a command executes (backends do that; replies are passed through byte for byte
//! except for split/fan-out merges), how data moves between the sides (that is `ferrite-migrate`, which drives the
//! slot states), databases other than 0, and Redis Cluster replicas (reads always go to masters).

pub mod admin;
pub mod backend;
pub mod client;
pub mod config;
pub mod fastrun;
pub mod metrics;
pub mod mirror;
pub mod pubsub;
pub mod resp;
pub mod router;
pub mod slots;
pub mod topology;

use crate::backend::{BackendSettings, Creds, Pool, Side};
use crate::config::Config;
use crate::metrics::Metrics;
use crate::pubsub::Kind;
use crate::slots::{Enqueue, Slots, State, Waiter};
use crate::topology::Topology;
use bytes::Bytes;
use parking_lot::Mutex;
use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tokio::sync::{oneshot, watch};

/// Shared state of a running proxy.
pub struct Proxy {
    pub cfg: Config,
    pub metrics: Arc<Metrics>,
    pub slots: Arc<Slots>,
    pub pool: Pool,
    pub upstream: Option<Arc<Topology>>,
    pub ferrite: Arc<Topology>,
    /// This proxy's node id in `CLUSTER` replies.
    pub node_id: String,
    pub started: Instant,
    next_client: AtomicU64,
    shutdown_tx: watch::Sender<bool>,
    /// The embedded store, when no remote Ferrite is configured.
    pub embedded: Option<Arc<ferrite::server::Server>>,
    /// Subscriptions of this proxy's clients: channel -> clients, patterns, shard channel -> clients.
    subs: Mutex<(HashMap<Bytes, usize>, usize, HashMap<Bytes, usize>)>,
    /// Ordering state of mirror writes per slot.
    pub mirror: mirror::Mirror,
}

/// A running proxy: its address and handle.
pub struct Running {
    pub proxy: Arc<Proxy>,
    pub addr: SocketAddr,
    pub metrics_addr: Option<SocketAddr>,
    /// Resolves when the accept loop ended and in-flight requests finished (after [`Proxy::shutdown`]).
    pub done: tokio::task::JoinHandle<()>,
}

fn random_hex(n: usize) -> String {
    (0..n).map(|_| format!("{:x}", rand::random::<u8>() % 16)).collect()
}

impl Proxy {
    /// Start the proxy inside the current tokio runtime: the embedded store (if needed), the topology, the
    /// client listener and the metrics listener.
    pub async fn start(cfg: Config) -> Result<Running, String> {
        let metrics = Metrics::new();
        let mut ferrite_creds = Creds { user: cfg.ferrite_user.clone(), password: cfg.ferrite_password.clone() };
        let mut embedded = None;
        let ferrite_addr = match &cfg.ferrite {
            Some(a) => a.clone(),
            None => {
                // The embedded store listens on an ephemeral loopback port, protected by a random password.
                let pass = random_hex(32);
                let sc = ferrite::config::Config {
                    bind: "127.0.0.1".into(),
                    port: 0,
                    requirepass: Some(pass.clone()),
                    threads: cfg.threads,
                    ..ferrite::config::Config::default()
                };
                let (addr, srv) =
                    ferrite::server::start(sc).await.map_err(|e| format!("cannot start the embedded store: {e}"))?;
                ferrite_creds = Creds { user: None, password: Some(pass) };
                embedded = Some(srv);
                addr.to_string()
            }
        };
        let settings = Arc::new(BackendSettings {
            upstream: Creds { user: cfg.upstream_user.clone(), password: cfg.upstream_password.clone() },
            ferrite: ferrite_creds,
            connect_timeout: cfg.connect_timeout,
            request_timeout: cfg.request_timeout,
            ferrite_lanes: cfg.ferrite_connections.clamp(1, 64) as u16,
        });
        let ferrite = if cfg.ferrite_cluster {
            Topology::cluster(Side::Ferrite, vec![ferrite_addr.clone()], settings.clone(), metrics.clone())
        } else {
            Topology::standalone(Side::Ferrite, &ferrite_addr, settings.clone(), metrics.clone())
        };
        let upstream = (!cfg.upstream_cluster.is_empty()).then(|| {
            Topology::cluster(Side::Upstream, cfg.upstream_cluster.clone(), settings.clone(), metrics.clone())
        });
        let initial = if upstream.is_some() { State::Upstream } else { State::Ferrite };
        let slots = Slots::new(initial, cfg.pause_max_queued, cfg.pause_timeout, metrics.clone());
        let listener =
            TcpListener::bind(&cfg.listen).await.map_err(|e| format!("cannot listen on {}: {e}", cfg.listen))?;
        let addr = listener.local_addr().map_err(|e| e.to_string())?;
        let metrics_listener = match &cfg.metrics_listen {
            Some(a) => Some(TcpListener::bind(a).await.map_err(|e| format!("cannot listen on {a} for metrics: {e}"))?),
            None => None,
        };
        let metrics_addr = metrics_listener.as_ref().and_then(|l| l.local_addr().ok());
        let (shutdown_tx, _) = watch::channel(false);
        let proxy = Arc::new(Proxy {
            pool: Pool::new(settings, metrics.clone()),
            cfg,
            metrics: metrics.clone(),
            slots,
            upstream,
            ferrite,
            node_id: random_hex(40),
            started: Instant::now(),
            next_client: AtomicU64::new(1),
            shutdown_tx,
            embedded,
            subs: Mutex::new((HashMap::new(), 0, HashMap::new())),
            mirror: mirror::Mirror::default(),
        });
        if let Some(u) = &proxy.upstream {
            if let Err(e) = u.refresh().await {
                tracing::warn!(error = %e, "upstream cluster not reachable yet; retrying in the background");
            }
        }
        if proxy.ferrite.is_cluster() {
            if let Err(e) = proxy.ferrite.refresh().await {
                tracing::warn!(error = %e, "ferrite cluster not reachable yet; retrying in the background");
            }
        }
        if let Some(l) = metrics_listener {
            tokio::spawn(metrics::serve(l, metrics.clone()));
        }
        tokio::spawn(background(proxy.clone()));
        // Logged before the accept loop starts (the listener is bound: connections wait in its backlog), so a
        // client that got an answer always finds this line in the log.
        tracing::info!(
            listen = %addr,
            upstream = ?proxy.cfg.upstream_cluster,
            ferrite = %ferrite_addr,
            embedded = proxy.embedded.is_some(),
            metrics = ?metrics_addr,
            "ferrite-proxy ready"
        );
        let done = tokio::spawn(accept_loop(proxy.clone(), listener));
        Ok(Running { proxy, addr, metrics_addr, done })
    }

    pub fn next_client_id(&self) -> u64 {
        self.next_client.fetch_add(1, Ordering::Relaxed)
    }

    pub fn auth_required(&self) -> bool {
        self.cfg.requirepass.is_some() || !self.cfg.users.is_empty()
    }

    pub fn shutdown_rx(&self) -> watch::Receiver<bool> {
        self.shutdown_tx.subscribe()
    }

    /// Stop accepting; connections finish the requests they received and close.
    pub fn shutdown(&self) {
        let _ = self.shutdown_tx.send(true);
    }

    pub fn topo_of(&self, side: Side) -> Option<&Arc<Topology>> {
        match side {
            Side::Upstream => self.upstream.as_ref(),
            Side::Ferrite => Some(&self.ferrite),
        }
    }

    /// The owner of `slot`, waiting (bounded by the pause timeout) while it is paused.
    pub async fn wait_owner(self: &Arc<Self>, slot: u16) -> Option<(Side, Arc<str>)> {
        for _ in 0..3 {
            let e = self.slots.load().slots[slot as usize];
            if e.state != State::Paused {
                let side = router::side_of(e.state);
                return Some((side, self.topo_of(side)?.node(slot)?));
            }
            let (tx, rx) = oneshot::channel();
            let id = self.slots.new_waiter_id();
            let w = Waiter {
                id,
                dispatch: Box::new(move |s| {
                    let _ = tx.send(s);
                }),
            };
            match self.slots.enqueue(slot, w).0 {
                Enqueue::Queued => {
                    match tokio::time::timeout(self.slots.pause_timeout + Duration::from_millis(250), rx).await {
                        Ok(Ok(s)) => {
                            let side = router::side_of(s);
                            return Some((side, self.topo_of(side)?.node(slot)?));
                        }
                        _ => {
                            self.slots.cancel(slot, id);
                            return None;
                        }
                    }
                }
                Enqueue::NotPaused(_) => continue,
                Enqueue::Full => return None,
            }
        }
        None
    }

    /// Mirror a whole MULTI/EXEC block (`replies` frames expected).
    pub fn mirror_send_multi(self: &Arc<Self>, target: Side, slot: u16, data: Bytes, resp3: bool, replies: usize) {
        let _ = replies;
        // A multiplexed connection writes one job contiguously, so MULTI ... EXEC stays one unit; the reply of
        // EXEC is the one checked.
        self.mirror_send_n(target, slot, data, resp3, replies.min(255) as u8);
    }

    pub fn pubsub_register(&self, kind: Kind, name: &Bytes, delta: i64) {
        let mut s = self.subs.lock();
        let map = match kind {
            Kind::Channel => &mut s.0,
            Kind::Shard => &mut s.2,
            Kind::Pattern => {
                s.1 = (s.1 as i64 + delta).max(0) as usize;
                return;
            }
        };
        let e = map.entry(name.clone()).or_insert(0);
        *e = (*e as i64 + delta).max(0) as usize;
        if *e == 0 {
            map.remove(name);
        }
    }

    pub fn pubsub_unregister(&self, subs: &HashMap<Kind, BTreeSet<Bytes>>) {
        for (k, set) in subs {
            for n in set {
                self.pubsub_register(*k, n, -1);
            }
        }
    }

    pub fn pubsub_snapshot(&self) -> (HashMap<Bytes, usize>, usize, HashMap<Bytes, usize>) {
        self.subs.lock().clone()
    }
}

async fn accept_loop(proxy: Arc<Proxy>, listener: TcpListener) {
    let mut shutdown = proxy.shutdown_rx();
    let mut tasks = tokio::task::JoinSet::new();
    loop {
        tokio::select! {
            r = listener.accept() => match r {
                Ok((sock, peer)) => {
                    if proxy.metrics.client_connections.get() as usize >= proxy.cfg.maxclients {
                        let p = proxy.clone();
                        tokio::spawn(async move {
                            use tokio::io::AsyncWriteExt;
                            let mut s = sock;
                            let _ = s.write_all(b"-ERR max number of clients reached\r\n").await;
                            drop(p);
                        });
                        continue;
                    }
                    tasks.spawn(client::handle(proxy.clone(), sock, peer));
                }
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            },
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
            _ = shutdown.changed() => break,
        }
    }
    drop(listener);
    tracing::info!(connections = tasks.len(), "shutting down: finishing in-flight requests");
    let deadline = tokio::time::Instant::now() + proxy.cfg.shutdown_timeout;
    while !tasks.is_empty() {
        match tokio::time::timeout_at(deadline, tasks.join_next()).await {
            Ok(_) => {}
            Err(_) => {
                tracing::warn!(connections = tasks.len(), "shutdown timeout: closing remaining connections");
                tasks.abort_all();
                break;
            }
        }
    }
    if let Some(s) = &proxy.embedded {
        s.shutdown();
    }
}

/// Periodic work: pause expiry (every 50 ms) and an upstream topology refresh every 10 s.
async fn background(proxy: Arc<Proxy>) {
    let mut shutdown = proxy.shutdown_rx();
    let mut last_refresh = Instant::now();
    let mut ticks_f = 0u32;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(50)) => {}
            _ = shutdown.changed() => return,
        }
        proxy.slots.expire_pauses();
        if proxy.ferrite.is_cluster() {
            let every = if proxy.ferrite.masters().is_empty() { 10 } else { 200 };
            ticks_f += 1;
            if ticks_f >= every {
                ticks_f = 0;
                proxy.ferrite.trigger_refresh();
            }
        }
        if let Some(u) = &proxy.upstream {
            let every = if u.masters().is_empty() { Duration::from_millis(500) } else { Duration::from_secs(10) };
            if last_refresh.elapsed() >= every {
                last_refresh = Instant::now();
                u.trigger_refresh();
            }
        }
    }
}
