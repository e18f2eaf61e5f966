//! Persistence: RDB snapshots (SAVE, BGSAVE, save rules, load at start-up),
//! the Redis 7.0 multi-part append-only file, and the stream of write
//! effects both the AOF and the replicas consume (`repl`: ferrite as a
//! replication master).
//!
//! Modules: `snapshot` (RDB writing, BGSAVE), `load` (RDB reading),
//! `aof` (manifest, writer thread, rewrite, replay), `rewrite` (an AOF base
//! as commands), `propagate` (the effects stream), `config` (settings).
//!
//! What it knows: the RDB record layout (expiry, idle/freq opcodes, key)
//! and the file frame written through `ferrite-rdb`'s `RdbWriter`; the AOF
//! manifest format of Redis 7.0 (`aof.c`); how Redis 7.0 rewrites commands
//! before propagating them (`propagate`).
//! What it does not know: value encodings (that is `ferrite-rdb` and
//! `crate::rdbconv`), or how commands execute (they run through
//! `dispatch`, also when an AOF is replayed). Function libraries travel as
//! FUNCTION2 records (RDB) or `FUNCTION LOAD` commands (AOF base without
//! preamble); module values refuse to load.
//!
//! Deliberate difference: without configuration ferrite has no `save`
//! rules (Redis defaults to "3600 1 300 100 60 10000"), so a server started
//! bare never writes files by itself. `rdbcompression no` and
//! `rdbchecksum no` are accepted but values are still compressed and the
//! CRC64 is still written (both load everywhere).
//!
//! ## Point-in-time snapshots without fork()
//!
//! `fork()` is unsafe in this multi-threaded process, so a background save
//! is copy-on-write at the granularity of one hash slot of one database
//! (`snapshot.rs`). Starting a snapshot takes the exclusive world lock
//! (nothing else runs), records the key counts and clears one "serialized"
//! marker per (db, slot). The saver thread then walks the slots in order,
//! taking one shard lock at a time; a slot whose marker is still clear is
//! serialized into the file under that lock. A write command, before its
//! handler runs, serializes every slot of its declared keys whose marker is
//! still clear, under the shard locks it already holds (dispatch calls
//! [`before`]); a command holding the exclusive world lock (FLUSHALL,
//! SWAPDB, EXEC, ...) serializes all remaining slots first, and eviction
//! serializes the victim's slot. Each slot is therefore captured exactly as
//! it was when the snapshot started, while other clients keep being served;
//! a write pays at most the serialization of its own slots once. Slots
//! serialized by writers are kept in memory until the saver reaches them.
//! Keys deleted by the active expiry sweep before the saver reaches them
//! are missing from the file; they were expired and would not load anyway.
//!
//! Loads happen before the listener accepts connections; `loading` is set
//! while replaying so nothing is propagated back into the AOF.

pub mod aof;
pub mod config;
pub mod load;
pub mod propagate;
pub mod repl;
pub mod replica;
pub mod rewrite;
pub mod snapshot;

use crate::server::{now_ms, Server};
use parking_lot::Mutex;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;

pub use config::PersistConfig;
pub use propagate::{after, before, Before};

/// Persistence state shared by the whole server (`Server::persist`).
pub struct Persist {
    /// The server itself, for background threads (set by `Server::new`).
    pub me: std::sync::OnceLock<std::sync::Weak<Server>>,
    pub cfg: Mutex<PersistConfig>,
    /// Set while an RDB or AOF is being loaded (no propagation then).
    pub loading: AtomicBool,
    /// Unix seconds of the last successful save (start time until then).
    pub lastsave: AtomicI64,
    /// `stats.dirty` at the start of the last successful save.
    pub dirty_base: AtomicU64,
    pub last_bgsave_ok: AtomicBool,
    pub last_bgsave_try: AtomicI64,
    pub last_bgsave_secs: AtomicI64,
    pub bgsave_started_ms: AtomicI64,
    pub bgsave_scheduled: AtomicBool,
    pub rdb_saves: AtomicU64,
    pub snap: snapshot::SnapSlot,
    pub aof: aof::Aof,
}

impl Persist {
    pub fn new(cfg: PersistConfig) -> Persist {
        let now = now_ms() / 1000;
        Persist {
            me: std::sync::OnceLock::new(),
            cfg: Mutex::new(cfg),
            loading: AtomicBool::new(false),
            lastsave: AtomicI64::new(now),
            dirty_base: AtomicU64::new(0),
            last_bgsave_ok: AtomicBool::new(true),
            last_bgsave_try: AtomicI64::new(0),
            last_bgsave_secs: AtomicI64::new(-1),
            bgsave_started_ms: AtomicI64::new(0),
            bgsave_scheduled: AtomicBool::new(false),
            rdb_saves: AtomicU64::new(0),
            snap: snapshot::SnapSlot::default(),
            aof: {
                // Like Redis, a server that never wrote an AOF reports "ok".
                let a = aof::Aof::default();
                a.write_ok.store(true, Ordering::Relaxed);
                a.last_rewrite_ok.store(true, Ordering::Relaxed);
                a
            },
        }
    }

    /// Changes since the last successful save (`rdb_changes_since_last_save`).
    pub fn dirty_since_save(&self, srv: &Server) -> u64 {
        srv.stats.dirty.load(Ordering::Relaxed).saturating_sub(self.dirty_base.load(Ordering::Relaxed))
    }
}

/// The `# Persistence` section of INFO, in Redis 7.0's field order.
pub fn info_section(srv: &Server, s: &mut String) {
    use std::fmt::Write;
    let p = &srv.persist;
    let now = now_ms();
    let bg = p.snap.rdb_running();
    let rw = p.aof.rewrite_running();
    let cur_bg = if bg { (now - p.bgsave_started_ms.load(Ordering::Relaxed)) / 1000 } else { -1 };
    let cur_rw = if rw { (now - p.aof.rewrite_started_ms.load(Ordering::Relaxed)) / 1000 } else { -1 };
    let enabled = p.aof.enabled();
    s.push_str("# Persistence\r\n");
    let mut l = |k: &str, v: String| {
        let _ = write!(s, "{k}:{v}\r\n");
    };
    l("loading", (p.loading.load(Ordering::Relaxed) as u8).to_string());
    l("async_loading", "0".into());
    l("current_cow_peak", "0".into());
    l("current_cow_size", "0".into());
    l("current_cow_size_age", "0".into());
    l("current_fork_perc", "0.00".into());
    l("current_save_keys_processed", "0".into());
    l("current_save_keys_total", "0".into());
    l("rdb_changes_since_last_save", p.dirty_since_save(srv).to_string());
    l("rdb_bgsave_in_progress", (bg as u8).to_string());
    l("rdb_last_save_time", p.lastsave.load(Ordering::Relaxed).to_string());
    l("rdb_last_bgsave_status", if p.last_bgsave_ok.load(Ordering::Relaxed) { "ok" } else { "err" }.into());
    l("rdb_last_bgsave_time_sec", p.last_bgsave_secs.load(Ordering::Relaxed).to_string());
    l("rdb_current_bgsave_time_sec", cur_bg.to_string());
    l("rdb_saves", p.rdb_saves.load(Ordering::Relaxed).to_string());
    l("rdb_last_cow_size", "0".into());
    l("rdb_last_load_keys_expired", p.aof.load_expired.load(Ordering::Relaxed).to_string());
    l("rdb_last_load_keys_loaded", p.aof.load_loaded.load(Ordering::Relaxed).to_string());
    l("aof_enabled", (enabled as u8).to_string());
    l("aof_rewrite_in_progress", (rw as u8).to_string());
    l("aof_rewrite_scheduled", (p.aof.rewrite_scheduled.load(Ordering::Relaxed) as u8).to_string());
    l("aof_last_rewrite_time_sec", p.aof.last_rewrite_secs.load(Ordering::Relaxed).to_string());
    l("aof_current_rewrite_time_sec", cur_rw.to_string());
    l("aof_last_bgrewrite_status", if p.aof.last_rewrite_ok.load(Ordering::Relaxed) { "ok" } else { "err" }.into());
    l("aof_rewrites", p.aof.rewrites.load(Ordering::Relaxed).to_string());
    l("aof_rewrites_consecutive_failures", "0".into());
    l("aof_last_write_status", if p.aof.write_ok.load(Ordering::Relaxed) { "ok" } else { "err" }.into());
    l("aof_last_cow_size", "0".into());
    l("module_fork_in_progress", "0".into());
    l("module_fork_last_cow_size", "0".into());
    if enabled {
        l("aof_current_size", p.aof.current_size.load(Ordering::Relaxed).to_string());
        l("aof_base_size", p.aof.base_size.load(Ordering::Relaxed).to_string());
        l("aof_pending_rewrite", "0".into());
        l("aof_buffer_length", "0".into());
        l("aof_pending_bio_fsync", "0".into());
        l("aof_delayed_fsync", "0".into());
    }
}

/// Load the data set at start-up, before the listener accepts anything:
/// the AOF when `appendonly yes` (as Redis, it takes precedence), otherwise
/// `dir/dbfilename` if present. Errors are fatal (the caller exits 1).
pub fn load_at_startup(srv: &Arc<Server>) -> Result<(), String> {
    let cfg = srv.persist.cfg.lock().clone();
    srv.persist.loading.store(true, Ordering::SeqCst);
    let t0 = std::time::Instant::now();
    let replica = srv.config.read().replicaof.is_some();
    let r = if cfg.appendonly {
        aof::load_and_open(srv, &cfg)
    } else {
        let path = cfg.rdb_path();
        if path.exists() {
            srv.repl.clear_rdb_aux();
            srv.repl.start_startup_load(replica);
            match load::load_rdb_file(srv, &path) {
                Ok(st) => {
                    eprintln!(
                        "ferrite: DB loaded from disk: {} keys ({} expired skipped) in {:.3} seconds",
                        st.loaded,
                        st.expired,
                        t0.elapsed().as_secs_f64()
                    );
                    // The replication history the file was saved with.
                    srv.repl.restore_from_rdb(replica);
                    Ok(())
                }
                Err(e) if e.starts_with(load::CORRUPT) => {
                    // Like Redis (whose RDB check then repeats the reason): the error, then the verdict.
                    let reason = &e[load::CORRUPT.len()..];
                    eprintln!("ferrite: Internal error in RDB reading offset 0, function at rdb.c:0 -> {reason}");
                    eprintln!("ferrite: --- RDB ERROR DETECTED ---");
                    eprintln!("ferrite: [{}] {reason}", path.display());
                    Err("Terminating server after rdb file reading failure.".to_string())
                }
                Err(e) => Err(format!("Short read or OOM loading DB. Unrecoverable error, aborting now. ({e})")),
            }
        } else {
            Ok(())
        }
    };
    srv.persist.loading.store(false, Ordering::SeqCst);
    srv.persist.dirty_base.store(srv.stats.dirty.load(Ordering::Relaxed), Ordering::Relaxed);
    r
}

/// Background duties, every 100 ms: save rules, scheduled BGSAVE /
/// BGREWRITEAOF, automatic AOF rewrite.
pub fn spawn_cron(srv: &Arc<Server>) {
    let srv = srv.clone();
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            if srv.shutting_down.load(Ordering::Relaxed) {
                break;
            }
            cron(&srv);
            // MIGRATE's cached connections unused for 10 s are closed (Redis's migrateCloseTimedoutSockets).
            crate::cmd::keys::migrate::purge_idle();
        }
    });
}

fn cron(srv: &Arc<Server>) {
    let p = &srv.persist;
    if p.loading.load(Ordering::Relaxed) {
        return;
    }
    let busy = p.snap.running();
    if !busy && p.aof.rewrite_scheduled.load(Ordering::Relaxed) {
        p.aof.rewrite_scheduled.store(false, Ordering::Relaxed);
        let _ = aof::start_rewrite(srv);
        return;
    }
    if !busy && p.bgsave_scheduled.swap(false, Ordering::Relaxed) {
        let _ = snapshot::start_bgsave(srv);
        return;
    }
    if busy {
        return;
    }
    let (rules, auto_pct, auto_min) = {
        let c = p.cfg.lock();
        (c.save.clone(), c.auto_aof_rewrite_percentage, c.auto_aof_rewrite_min_size)
    };
    let now = now_ms();
    let dirty = p.dirty_since_save(srv);
    let since = now / 1000 - p.lastsave.load(Ordering::Relaxed);
    let retry_ok = p.last_bgsave_ok.load(Ordering::Relaxed) || now - p.last_bgsave_try.load(Ordering::Relaxed) > 5000;
    if retry_ok && rules.iter().any(|&(secs, changes)| dirty >= changes && since >= secs as i64) {
        let _ = snapshot::start_bgsave(srv);
        return;
    }
    if p.aof.enabled() && auto_pct > 0 {
        let cur = p.aof.current_size.load(Ordering::Relaxed);
        let base = p.aof.base_size.load(Ordering::Relaxed).max(1);
        if cur > auto_min && cur.saturating_sub(base) * 100 / base >= auto_pct {
            let _ = aof::start_rewrite(srv);
        }
    }
}

/// Save on shutdown: with `save` true (SHUTDOWN SAVE) always, with `nosave`
/// never, otherwise when save rules exist. Also flushes and fsyncs the AOF.
/// Returns an error text when the save failed (the shutdown is refused).
pub fn on_shutdown(srv: &Server, save: bool, nosave: bool) -> Result<(), String> {
    let p = &srv.persist;
    p.snap.cancel();
    aof::flush_on_shutdown(srv);
    let rules = !p.cfg.lock().save.is_empty();
    if !nosave && (save || rules) {
        if let Err(e) = snapshot::save_sync(srv) {
            eprintln!("ferrite: Error trying to save the DB, can't exit. ({e})");
            return Err("Errors trying to SHUTDOWN. Check logs.".into());
        }
        eprintln!("ferrite: DB saved on disk");
    }
    Ok(())
}

/// Redis's `writeCommandsDeniedByDiskError`: with save rules and
/// `stop-writes-on-bgsave-error yes`, a failed background save refuses
/// writes (and PING) until a save succeeds; a failed AOF write too.
pub fn deny_write(srv: &Server, meta: &ferrite_commands::CommandMeta) -> Option<crate::cmd::CmdError> {
    let p = &srv.persist;
    let bg_failed = !p.last_bgsave_ok.load(Ordering::Relaxed);
    let aof_failed = p.aof.enabled() && !p.aof.write_ok.load(Ordering::Relaxed);
    if !bg_failed && !aof_failed {
        return None;
    }
    if !(meta.flags.has(ferrite_commands::Flags::WRITE) || meta.name == "ping") {
        return None;
    }
    if bg_failed {
        let c = p.cfg.lock();
        if c.stop_writes_on_bgsave_error && !c.save.is_empty() {
            return Some(crate::cmd::CmdError::st(
                "MISCONF Redis is configured to save RDB snapshots, but it's currently unable to persist to disk. Commands that may modify the data set are disabled, because this instance is configured to report errors during writes if RDB snapshotting fails (stop-writes-on-bgsave-error option). Please check the Redis logs for details about the RDB error.",
            ));
        }
    }
    if aof_failed {
        return Some(crate::cmd::CmdError::st("MISCONF Errors writing to the AOF file: see the server log"));
    }
    None
}
