//! The server: shared state, the accept loop, background tasks and
//! graceful shutdown.

use crate::client::Clients;
use crate::cmd::Registry;
use crate::config::Config;
use crate::keyspace::expire::{active_expire_cycle, ExpireCursor};
use crate::keyspace::Store;
use crate::pubsub::PubSub;
use crate::stats::Stats;
use parking_lot::RwLock;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU16, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::net::TcpListener;
use tokio::sync::watch;

/// Encoding thresholds and other settings read on hot paths, as atomics
/// so commands never take the config lock. CONFIG SET writes them.
pub struct Tunables {
    pub hash_max_listpack_entries: AtomicUsize,
    pub hash_max_listpack_value: AtomicUsize,
    pub set_max_intset_entries: AtomicUsize,
    pub zset_max_listpack_entries: AtomicUsize,
    pub zset_max_listpack_value: AtomicUsize,
    pub list_max_listpack_size: std::sync::atomic::AtomicI64,
    pub list_compress_depth: AtomicUsize,
    /// `maxmemory` in bytes (0 = no limit) and the eviction settings.
    pub maxmemory: std::sync::atomic::AtomicU64,
    pub maxmemory_policy: std::sync::atomic::AtomicU8,
    pub maxmemory_samples: AtomicUsize,
    pub lfu_log_factor: AtomicUsize,
    pub lfu_decay_time: AtomicUsize,
    /// `notify-keyspace-events` flags (see `notify`); 0 = off.
    pub notify_flags: std::sync::atomic::AtomicU32,
    /// `stream-node-max-entries` / `stream-node-max-bytes`.
    pub stream_node_max_entries: AtomicUsize,
    pub stream_node_max_bytes: AtomicUsize,
}

impl Default for Tunables {
    fn default() -> Self {
        Tunables {
            hash_max_listpack_entries: AtomicUsize::new(512),
            hash_max_listpack_value: AtomicUsize::new(64),
            set_max_intset_entries: AtomicUsize::new(512),
            zset_max_listpack_entries: AtomicUsize::new(128),
            zset_max_listpack_value: AtomicUsize::new(64),
            list_max_listpack_size: std::sync::atomic::AtomicI64::new(-2),
            list_compress_depth: AtomicUsize::new(0),
            notify_flags: std::sync::atomic::AtomicU32::new(0),
            maxmemory: std::sync::atomic::AtomicU64::new(0),
            maxmemory_policy: std::sync::atomic::AtomicU8::new(0),
            maxmemory_samples: AtomicUsize::new(5),
            lfu_log_factor: AtomicUsize::new(10),
            lfu_decay_time: AtomicUsize::new(1),
            stream_node_max_entries: AtomicUsize::new(100),
            stream_node_max_bytes: AtomicUsize::new(4096),
        }
    }
}

impl Tunables {
    #[inline]
    pub fn get(v: &AtomicUsize) -> usize {
        v.load(Ordering::Relaxed)
    }
}

/// Everything connections share.
pub struct Server {
    pub store: Store,
    pub config: RwLock<Config>,
    pub clients: Clients,
    pub pubsub: PubSub,
    pub stats: Stats,
    pub registry: Registry,
    pub tun: Tunables,
    pub started: Instant,
    /// The coarse monotonic clock at start, in ms (see `uptime_ms_coarse`).
    started_coarse_ms: u64,
    pub run_id: String,
    pub port: AtomicU16,
    pub shutdown_tx: watch::Sender<bool>,
    /// Listening sockets, shut at once by [`Server::shutdown`]: a client that saw SHUTDOWN close its connection
    /// is refused on its next connect, as with Redis (which exits inside the command).
    listen_fds: parking_lot::Mutex<Vec<std::os::fd::RawFd>>,
    pub shutting_down: AtomicBool,
    /// Clients in MONITOR mode.
    pub monitors: RwLock<Vec<(u64, crate::obuf::PushTx)>>,
    pub monitor_count: AtomicUsize,
    /// Clients blocked on keys.
    pub blocking: crate::blocking::BlockRegistry,
    /// ACL users and log.
    pub acl: crate::acl::Acl,
    /// Highest `used_memory` seen (INFO's used_memory_peak).
    pub mem_peak: std::sync::atomic::AtomicU64,
    /// CLIENT PAUSE state: (end in unix ms, pauses all commands or only writes).
    pub pause: parking_lot::Mutex<Option<(i64, bool)>>,
    pub paused: AtomicBool,
    pub unpaused: tokio::sync::Notify,
    /// RDB/AOF persistence state.
    pub persist: crate::persist::Persist,
    /// Lua scripting: EVAL cache, function libraries, the running script.
    pub scripting: crate::script::Scripting,
    /// Replicas attached with SYNC/PSYNC and the replication stream.
    pub repl: crate::persist::repl::Repl,
}

/// Current unix time in milliseconds.
#[inline]
pub fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

/// The LRU clock value for a unix-ms time.
#[inline]
pub fn lru_of(ms: i64) -> u32 {
    (ms / 1000) as u32
}

/// The coarse monotonic clock in milliseconds (CLOCK_MONOTONIC_COARSE on
/// Linux; elsewhere the ordinary monotonic clock).
#[inline]
fn coarse_monotonic_ms() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    #[cfg(any(target_os = "linux", target_os = "android"))]
    let clock = libc::CLOCK_MONOTONIC_COARSE;
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    let clock = libc::CLOCK_MONOTONIC;
    // SAFETY: `ts` is a valid timespec to write into and `clock` a clock id
    // the platform supports (on failure `ts` stays zero).
    unsafe { libc::clock_gettime(clock, &mut ts) };
    ts.tv_sec as u64 * 1000 + ts.tv_nsec as u64 / 1_000_000
}

/// Current unix time in microseconds.
#[inline]
pub fn now_us() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_micros() as i64).unwrap_or(0)
}

impl Server {
    pub fn new(config: Config) -> Arc<Server> {
        let run_id: String = (0..40).map(|_| format!("{:x}", rand::random::<u8>() % 16)).collect();
        let (shutdown_tx, _) = watch::channel(false);
        let tun = Tunables::default();
        let acl = crate::acl::Acl::new();
        acl.set_default_password(config.requirepass.as_deref().map(str::as_bytes));
        let persist = crate::persist::Persist::new(config.persist.clone());
        let registry = Registry::with_renames(&config.rename_commands);
        let srv = Arc::new(Server {
            persist,
            store: Store::new(config.databases),
            config: RwLock::new(config),
            clients: Clients::default(),
            pubsub: PubSub::default(),
            stats: Stats::default(),
            registry,
            tun,
            started: Instant::now(),
            started_coarse_ms: coarse_monotonic_ms(),
            run_id,
            port: AtomicU16::new(0),
            shutdown_tx,
            listen_fds: parking_lot::Mutex::new(Vec::new()),
            shutting_down: AtomicBool::new(false),
            monitors: RwLock::new(Vec::new()),
            monitor_count: AtomicUsize::new(0),
            blocking: Default::default(),
            mem_peak: std::sync::atomic::AtomicU64::new(0),
            pause: parking_lot::Mutex::new(None),
            paused: AtomicBool::new(false),
            unpaused: tokio::sync::Notify::new(),
            scripting: Default::default(),
            repl: Default::default(),
            acl,
        });
        let _ = srv.persist.me.set(Arc::downgrade(&srv));
        srv
    }

    /// The LRU clock: unix seconds as u32 (what `Entry::lru` stores).
    pub fn lru_clock(&self) -> u32 {
        lru_of(now_ms())
    }

    pub fn uptime_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    /// `uptime_ms` from the coarse monotonic clock: up to one scheduler
    /// tick (a few ms) behind, but it does not read the clock hardware, so
    /// it is cheap enough for every batch of requests (a client's last
    /// interaction time, which Redis keeps in seconds).
    #[inline]
    pub fn uptime_ms_coarse(&self) -> u64 {
        coarse_monotonic_ms().saturating_sub(self.started_coarse_ms)
    }

    /// CLIENT PAUSE: pause until `until_ms`; `all` pauses every command,
    /// otherwise only writes. Like Redis, the latest mode wins and the
    /// later end time is kept.
    pub fn pause_clients(&self, until_ms: i64, all: bool) {
        let mut p = self.pause.lock();
        let end = p.map_or(until_ms, |(e, _)| e.max(until_ms));
        *p = Some((end, all));
        self.paused.store(true, Ordering::SeqCst);
    }

    /// CLIENT UNPAUSE.
    pub fn unpause_clients(&self) {
        *self.pause.lock() = None;
        self.paused.store(false, Ordering::SeqCst);
        self.unpaused.notify_waiters();
    }

    /// If a pause applies to a command (`write`: may it modify data?),
    /// when it ends.
    pub fn pause_until(&self, write: bool) -> Option<i64> {
        if !self.paused.load(Ordering::Relaxed) {
            return None;
        }
        let mut p = self.pause.lock();
        match *p {
            Some((end, all)) if end > now_ms() => (all || write).then_some(end),
            _ => {
                *p = None;
                self.paused.store(false, Ordering::SeqCst);
                None
            }
        }
    }

    /// Ask the accept loop and every connection to stop.
    pub fn shutdown(&self) {
        self.shutting_down.store(true, Ordering::SeqCst);
        // Taken out on the first call: the sockets are still open (their accept loops stop only after this).
        for fd in std::mem::take(&mut *self.listen_fds.lock()) {
            // SAFETY: `fd` is a listening socket owned by a listener that is still alive (registered by
            // `register_listener`, whose caller keeps the listener until the accept loop sees the shutdown).
            unsafe {
                libc::shutdown(fd, libc::SHUT_RDWR);
            }
        }
        let _ = self.shutdown_tx.send(true);
        for c in self.clients.snapshot() {
            c.kill();
        }
    }

    /// Remember a listening socket for [`Server::shutdown`]. The listener must stay open at least until the
    /// server shuts down.
    pub fn register_listener(&self, fd: std::os::fd::RawFd) {
        self.listen_fds.lock().push(fd);
    }

    /// Bind the listener. The returned address has the real port when 0
    /// was requested.
    pub async fn bind(self: &Arc<Self>) -> std::io::Result<TcpListener> {
        let (bind, port) = {
            let c = self.config.read();
            (c.bind.clone(), c.port)
        };
        let listener = TcpListener::bind((bind.as_str(), port)).await?;
        self.register_listener(std::os::fd::AsRawFd::as_raw_fd(&listener));
        let addr = listener.local_addr()?;
        self.port.store(addr.port(), Ordering::Relaxed);
        // `replicaof` at start-up: the link starts once our port is known.
        let master = self.config.read().replicaof.clone();
        if let Some((host, port)) = master {
            crate::persist::replica::set_master(self, &host, port);
        }
        Ok(listener)
    }

    /// Accept connections until shutdown; also runs background tasks.
    pub async fn serve(self: Arc<Self>, listener: TcpListener) {
        let bg = tokio::spawn(background(self.clone()));
        crate::persist::spawn_cron(&self);
        let mut shutdown = self.shutdown_tx.subscribe();
        loop {
            tokio::select! {
                r = listener.accept() => {
                    match r {
                        Ok((sock, peer)) => {
                            let srv = self.clone();
                            let local = sock.local_addr().unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], 0)));
                            tokio::spawn(async move { crate::conn::handle(srv, sock, peer, local).await });
                        }
                        Err(_) if self.shutting_down.load(Ordering::SeqCst) => break,
                        Err(e) => {
                            // EMFILE and friends: back off briefly instead of spinning.
                            eprintln!("accept error: {e}");
                            tokio::time::sleep(Duration::from_millis(10)).await;
                        }
                    }
                }
                _ = shutdown.changed() => break,
            }
        }
        bg.abort();
        // Give connections a moment to flush their last replies.
        for _ in 0..50 {
            if self.clients.len() == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

/// Periodic work: active expiry at `hz` cycles per second.
async fn background(srv: Arc<Server>) {
    let mut cursor = ExpireCursor::default();
    loop {
        let hz = srv.config.read().hz.max(1);
        tokio::time::sleep(Duration::from_millis(1000 / hz as u64)).await;
        crate::cmd::client::close_idle_clients(&srv);
        // Output buffer soft limits are also enforced when no new output arrives (Redis's clientsCron).
        let now = now_ms();
        for h in srv.clients.snapshot() {
            if h.tx.out.omem() > 0 {
                h.tx.out.check(now);
            }
        }
        // Like Redis: keep cycling while a large share of sampled keys expired,
        // bounded to ~25% of the period.
        let deadline = Instant::now() + Duration::from_millis(250 / hz as u64);
        // Time spent expiring this tick: Redis's `expire-cycle` latency event.
        let mut spent = Duration::ZERO;
        // A running script holds the keyspace: skip the cycle rather than
        // park a worker on the lock (block_in_place covers the race).
        while crate::cmd::server::debug::ACTIVE_EXPIRE.load(std::sync::atomic::Ordering::Relaxed)
            && srv.pause_until(true).is_none()
            && !srv.repl.replica.is_replica()
            && srv.scripting.running_since.load(Ordering::Acquire) == 0
        {
            let t0 = Instant::now();
            let n = crate::script::long_running(|| {
                active_expire_cycle(&srv.store, &mut cursor, now_ms(), 2000, |db, key| {
                    srv.store.dbs[db].signal_expired_deleted(key);
                    crate::persist::propagate::deleted_now(&srv, db, key);
                    crate::cmd::client::tracking::invalidate_by_server(&srv, key);
                    crate::notify::notify(&srv, crate::notify::EXPIRED, "expired", key, db);
                })
            });
            spent += t0.elapsed();
            crate::stats::Stats::add(&srv.stats.expired_keys, n as u64);
            if n < 100 || Instant::now() >= deadline {
                break;
            }
            tokio::task::yield_now().await;
        }
        let th = srv.stats.latency_threshold.get();
        let ms = spent.as_millis() as u64;
        if th > 0 && ms as i64 >= th {
            srv.stats.latency_sample("expire-cycle", ms);
        }
    }
}

/// Start a server on a runtime that already exists (tests, embedding).
/// Returns the bound address and the server handle.
pub async fn start(config: Config) -> std::io::Result<(SocketAddr, Arc<Server>)> {
    let srv = Server::new(config);
    let listener = srv.bind().await?;
    let addr = listener.local_addr()?;
    tokio::spawn(srv.clone().serve(listener));
    Ok((addr, srv))
}
