//! INFO [section ...], in Redis 7.0's format.
//!
//! Sections appear in Redis's fixed order whatever order they are asked
//! in. Values are real where Ferrite has them; fields for features Ferrite
//! lacks (persistence, replication, modules) report the idle values a
//! Redis without those features active reports. Latencystats come from
//! the per-command histograms of `crate::stats` (`latency-tracking`).

use super::{CmdImpl, CmdResult, Cx, Lock};
use crate::server::Server;
use std::fmt::Write as _;
use std::sync::atomic::Ordering;

pub static COMMANDS: &[CmdImpl] = &[CmdImpl { name: "info", handler: info, lock: Lock::None }];

/// Redis's section order.
const ORDER: &[&str] = &[
    "server",
    "clients",
    "memory",
    "persistence",
    "stats",
    "replication",
    "cpu",
    "modules",
    "commandstats",
    "errorstats",
    "latencystats",
    "cluster",
    "keyspace",
];

const DEFAULT: &[&str] = &[
    "server",
    "clients",
    "memory",
    "persistence",
    "stats",
    "replication",
    "cpu",
    "modules",
    "errorstats",
    "cluster",
    "keyspace",
];

/// The version Ferrite claims for compatibility.
pub const REDIS_VERSION: &str = "7.0.15";

fn info(cx: &mut Cx) -> CmdResult {
    let mut wanted = [false; 13];
    if cx.argc() == 1 {
        select(&mut wanted, DEFAULT);
    }
    for i in 1..cx.argc() {
        let a = String::from_utf8_lossy(cx.arg(i)).to_ascii_lowercase();
        match a.as_str() {
            "default" => select(&mut wanted, DEFAULT),
            // Ferrite has no module-generated sections, so both are the same.
            "all" | "everything" => select(&mut wanted, ORDER),
            s => select(&mut wanted, &[s]),
        }
    }
    let text = info_string(cx.srv, &wanted);
    cx.out.verbatim(b"txt", text.as_bytes());
    Ok(())
}

fn select(wanted: &mut [bool; 13], names: &[&str]) {
    for n in names {
        if let Some(p) = ORDER.iter().position(|o| o == n) {
            wanted[p] = true;
        }
    }
}

/// Redis's bytesToHuman.
pub fn human(n: u64) -> String {
    let d = n as f64;
    if n < 1024 {
        format!("{n}B")
    } else if n < 1024 * 1024 {
        format!("{:.2}K", d / 1024.0)
    } else if n < 1024 * 1024 * 1024 {
        format!("{:.2}M", d / (1024.0 * 1024.0))
    } else if n < 1024u64.pow(4) {
        format!("{:.2}G", d / (1024.0 * 1024.0 * 1024.0))
    } else if n < 1024u64.pow(5) {
        format!("{:.2}T", d / 1024f64.powi(4))
    } else {
        format!("{:.2}P", d / 1024f64.powi(5))
    }
}

/// Resident set size of this process in bytes, from /proc/self/statm
/// (second field, in pages). 0 where /proc is unavailable.
pub fn rss_bytes() -> u64 {
    let page = {
        // SAFETY: sysconf has no preconditions.
        let p = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
        if p > 0 {
            p as u64
        } else {
            4096
        }
    };
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1).and_then(|v| v.parse::<u64>().ok()))
        .map_or(0, |pages| pages * page)
}

/// (user, system) CPU seconds of this process, from getrusage.
fn cpu_times(who: libc::c_int) -> (f64, f64) {
    // SAFETY: getrusage writes into the zeroed struct we own.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    if unsafe { libc::getrusage(who, &mut ru) } != 0 {
        return (0.0, 0.0);
    }
    let t = |tv: libc::timeval| tv.tv_sec as f64 + tv.tv_usec as f64 / 1e6;
    (t(ru.ru_utime), t(ru.ru_stime))
}

fn total_system_memory() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse::<u64>().ok()))
        })
        .map_or(0, |kb| kb * 1024)
}

fn os_string() -> String {
    // SAFETY: uname fills the zeroed struct we own.
    let mut u: libc::utsname = unsafe { std::mem::zeroed() };
    if unsafe { libc::uname(&mut u) } != 0 {
        return std::env::consts::OS.to_string();
    }
    let f = |a: &[libc::c_char]| {
        let b: Vec<u8> = a.iter().take_while(|&&c| c != 0).map(|&c| c as u8).collect();
        String::from_utf8_lossy(&b).into_owned()
    };
    format!("{} {} {}", f(&u.sysname), f(&u.release), f(&u.machine))
}

/// Build the INFO text for the selected sections (indexes into ORDER).
pub fn info_string(srv: &Server, wanted: &[bool; 13]) -> String {
    let mut s = String::with_capacity(4096);
    let mut first = true;
    for (i, name) in ORDER.iter().enumerate() {
        if !wanted[i] {
            continue;
        }
        if !first {
            s.push_str("\r\n");
        }
        first = false;
        section(srv, name, &mut s);
    }
    s
}

macro_rules! line {
    ($s:expr, $($arg:tt)*) => {{
        let _ = write!($s, $($arg)*);
        $s.push_str("\r\n");
    }};
}

fn section(srv: &Server, name: &str, s: &mut String) {
    let st = &srv.stats;
    let ld = |a: &crate::stats::Counter| a.load(Ordering::Relaxed);
    let uptime = srv.started.elapsed().as_secs();
    match name {
        "server" => {
            let (hz, config_file) = {
                let c = srv.config.read();
                (c.hz, c.config_file.as_ref().map(|p| p.display().to_string()).unwrap_or_default())
            };
            s.push_str("# Server\r\n");
            line!(s, "redis_version:{REDIS_VERSION}");
            line!(s, "redis_git_sha1:00000000");
            line!(s, "redis_git_dirty:0");
            line!(s, "redis_build_id:0");
            line!(s, "redis_mode:standalone");
            line!(s, "ferrite_version:{}", env!("CARGO_PKG_VERSION"));
            line!(s, "os:{}", os_string());
            line!(s, "arch_bits:{}", usize::BITS);
            line!(s, "monotonic_clock:POSIX clock_gettime");
            line!(s, "multiplexing_api:epoll");
            line!(s, "atomicvar_api:c11-builtin");
            line!(s, "gcc_version:0.0.0");
            line!(s, "process_id:{}", std::process::id());
            line!(s, "process_supervised:no");
            line!(s, "run_id:{}", srv.run_id);
            line!(s, "tcp_port:{}", srv.port.load(Ordering::Relaxed));
            line!(s, "server_time_usec:{}", crate::server::now_us());
            line!(s, "uptime_in_seconds:{uptime}");
            line!(s, "uptime_in_days:{}", uptime / 86400);
            line!(s, "hz:{hz}");
            line!(s, "configured_hz:{hz}");
            line!(s, "lru_clock:{}", srv.lru_clock());
            let exe = std::env::current_exe().map(|p| p.display().to_string()).unwrap_or_default();
            line!(s, "executable:{exe}");
            line!(s, "config_file:{config_file}");
            line!(s, "io_threads_active:0");
        }
        "clients" => {
            let clients = srv.clients.snapshot();
            let maxclients = srv.config.read().maxclients;
            s.push_str("# Clients\r\n");
            line!(s, "connected_clients:{}", clients.len());
            line!(s, "cluster_connections:0");
            line!(s, "maxclients:{maxclients}");
            line!(s, "client_recent_max_input_buffer:0");
            line!(s, "client_recent_max_output_buffer:0");
            line!(
                s,
                "blocked_clients:{}",
                srv.blocking.blocked_clients() + srv.stats.paused_clients.load(Ordering::Relaxed)
            );
            line!(s, "tracking_clients:{}", srv.stats.tracking_clients.load(Ordering::Relaxed));
            line!(s, "clients_in_timeout_table:0");
        }
        "memory" => {
            // used_memory: bytes handed out by the allocator (the binary
            // counts them, like Redis's zmalloc); RSS when not instrumented.
            let used = crate::alloc::used_memory() as u64;
            let rss = rss_bytes();
            let sys = total_system_memory();
            let maxmem = srv.tun.maxmemory.load(Ordering::Relaxed);
            let peak = srv.mem_peak.fetch_max(used, Ordering::Relaxed).max(used);
            s.push_str("# Memory\r\n");
            line!(s, "used_memory:{used}");
            line!(s, "used_memory_human:{}", human(used));
            line!(s, "used_memory_rss:{rss}");
            line!(s, "used_memory_rss_human:{}", human(rss));
            line!(s, "used_memory_peak:{peak}");
            line!(s, "used_memory_peak_human:{}", human(peak));
            line!(s, "total_system_memory:{sys}");
            line!(s, "total_system_memory_human:{}", human(sys));
            let sc: std::collections::HashMap<&str, u64> = crate::script::info_fields(srv).into_iter().collect();
            let f = |k: &str| sc.get(k).copied().unwrap_or(0);
            line!(s, "used_memory_lua:{}", f("used_memory_lua"));
            line!(s, "number_of_cached_scripts:{}", f("number_of_cached_scripts"));
            line!(s, "used_memory_scripts:{}", f("used_memory_scripts_eval"));
            line!(s, "maxmemory:{maxmem}");
            line!(s, "maxmemory_human:{}", human(maxmem));
            line!(s, "maxmemory_policy:{}", crate::evict::policy(srv).name());
            line!(s, "mem_fragmentation_ratio:{:.2}", if used > 0 { rss as f64 / used as f64 } else { 1.0 });
            line!(s, "mem_not_counted_for_evict:0");
            line!(s, "mem_replication_backlog:0");
            line!(s, "mem_total_replication_buffers:0");
            let (mut replicas, mut normal) = (0usize, 0usize);
            for h in srv.clients.snapshot() {
                match h.tx.out.class() {
                    crate::obuf::REPLICA => replicas += h.tx.out.tot_mem(),
                    _ => normal += h.tx.out.tot_mem(),
                }
            }
            line!(s, "mem_clients_slaves:{replicas}");
            line!(s, "mem_clients_normal:{normal}");
            line!(s, "mem_cluster_links:0");
            line!(s, "mem_allocator:mimalloc");
            line!(s, "active_defrag_running:0");
            line!(s, "lazyfree_pending_objects:{}", crate::evict::lazyfree::PENDING.load(Ordering::Relaxed));
            line!(s, "lazyfreed_objects:{}", crate::evict::lazyfree::FREED.load(Ordering::Relaxed));
        }
        "persistence" => crate::persist::info_section(srv, s),
        "stats" => {
            let channels = srv.pubsub.channels.read().len();
            let patterns = srv.pubsub.patterns.read().len();
            let shard = srv.pubsub.shard_channels.read().len();
            s.push_str("# Stats\r\n");
            line!(s, "total_connections_received:{}", ld(&st.total_connections_received));
            line!(s, "total_commands_processed:{}", ld(&st.total_commands_processed));
            line!(s, "instantaneous_ops_per_sec:0");
            line!(s, "total_net_input_bytes:{}", ld(&st.net_input_bytes));
            line!(s, "total_net_output_bytes:{}", ld(&st.net_output_bytes));
            line!(s, "instantaneous_input_kbps:0.00");
            line!(s, "instantaneous_output_kbps:0.00");
            line!(s, "rejected_connections:{}", ld(&st.rejected_connections));
            line!(s, "sync_full:{}", srv.repl.sync_full.load(Ordering::Relaxed));
            line!(s, "sync_partial_ok:{}", srv.repl.sync_partial_ok.load(Ordering::Relaxed));
            line!(s, "sync_partial_err:{}", srv.repl.sync_partial_err.load(Ordering::Relaxed));
            line!(s, "expired_keys:{}", ld(&st.expired_keys));
            line!(s, "expired_stale_perc:0.00");
            line!(s, "expired_time_cap_reached_count:0");
            line!(s, "evicted_keys:{}", ld(&st.evicted_keys));
            line!(s, "evicted_clients:{}", ld(&st.evicted_clients));
            line!(s, "keyspace_hits:{}", ld(&st.keyspace_hits));
            line!(s, "keyspace_misses:{}", ld(&st.keyspace_misses));
            line!(s, "pubsub_channels:{channels}");
            line!(s, "pubsub_patterns:{patterns}");
            line!(s, "pubsubshard_channels:{shard}");
            line!(s, "latest_fork_usec:0");
            line!(s, "total_forks:{}", ld(&st.total_forks));
            line!(s, "migrate_cached_sockets:{}", crate::cmd::keys::migrate::cached_sockets());
            let (tk, ti, tp) = crate::cmd::client::tracking::totals(srv);
            line!(s, "tracking_total_keys:{tk}");
            line!(s, "tracking_total_items:{ti}");
            line!(s, "tracking_total_prefixes:{tp}");
            line!(s, "unexpected_error_replies:0");
            line!(s, "total_error_replies:{}", ld(&st.total_error_replies));
            line!(s, "dump_payload_sanitizations:0");
        }
        "replication" => crate::persist::repl::info_section(srv, s),
        "cpu" => {
            let (u, sy) = cpu_times(libc::RUSAGE_SELF);
            let (cu, csy) = cpu_times(libc::RUSAGE_CHILDREN);
            s.push_str("# CPU\r\n");
            line!(s, "used_cpu_sys:{sy:.6}");
            line!(s, "used_cpu_user:{u:.6}");
            line!(s, "used_cpu_sys_children:{csy:.6}");
            line!(s, "used_cpu_user_children:{cu:.6}");
        }
        "modules" => s.push_str("# Modules\r\n"),
        "commandstats" => {
            s.push_str("# Commandstats\r\n");
            crate::cmd::client::commandstats(srv, s);
        }
        "errorstats" => {
            s.push_str("# Errorstats\r\n");
            crate::cmd::client::errorstats(srv, s);
        }
        "latencystats" => {
            s.push_str("# Latencystats\r\n");
            crate::stats::latencystats(&srv.stats, s);
        }
        "cluster" => {
            s.push_str("# Cluster\r\n");
            line!(s, "cluster_enabled:0");
        }
        "keyspace" => {
            s.push_str("# Keyspace\r\n");
            for db in 0..srv.store.dbs.len() {
                let keys = srv.store.db_size(db);
                if keys == 0 {
                    continue;
                }
                let expires = srv.store.db_volatile(db);
                line!(s, "db{db}:keys={keys},expires={expires},avg_ttl=0");
            }
        }
        _ => {}
    }
}
