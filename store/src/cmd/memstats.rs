//! MEMORY STATS, MEMORY DOCTOR, MEMORY MALLOC-STATS and MEMORY PURGE.
//!
//! The figures come from Ferrite's counting allocator (the bytes the
//! process has allocated, like Redis's zmalloc counter), its peak, the RSS
//! and key counters. Ferrite does not track everything Redis does: there is
//! no startup baseline, no replication backlog or client buffer accounting
//! and the allocator is mimalloc, so `startup.allocated`,
//! `replication.backlog`, `clients.*`, `cluster.links`, `aof.buffer` and
//! `functions.caches` are 0, and the allocator figures are the counted
//! allocation (allocated, active) and the RSS (resident). The per-db hash
//! table overheads are estimates from the key counts.

use super::Cx;
use std::sync::atomic::Ordering;

/// The figures behind MEMORY STATS and MEMORY DOCTOR (Redis's
/// redisMemOverhead).
struct Overhead {
    peak: u64,
    total: u64,
    startup: u64,
    lua_caches: u64,
    /// (db, main table overhead, expires table overhead)
    dbs: Vec<(usize, u64, u64)>,
    overhead_total: u64,
    keys: u64,
    bytes_per_key: u64,
    dataset: u64,
    dataset_perc: f32,
    peak_perc: f32,
    alloc_allocated: u64,
    alloc_active: u64,
    alloc_resident: u64,
    rss: u64,
    scripts: u64,
}

/// Bytes a hash table spends per key (bucket pointer and entry header),
/// used for the per-db overhead estimates.
const PER_KEY: u64 = (std::mem::size_of::<usize>() * 3) as u64;

fn overhead(cx: &Cx) -> Overhead {
    let srv = cx.srv;
    let total = crate::alloc::used_memory() as u64;
    let peak = srv.mem_peak.fetch_max(total, Ordering::Relaxed).max(total);
    let rss = crate::alloc::rss() as u64;
    let sc = crate::script::info_fields(srv);
    let field = |k: &str| sc.iter().find(|(n, _)| *n == k).map_or(0, |(_, v)| *v);
    let lua_caches = field("used_memory_scripts_eval");
    let scripts = field("number_of_cached_scripts");
    let startup = 0u64;
    let mut overhead_total = startup + lua_caches;
    let mut dbs = Vec::new();
    let mut keys = 0u64;
    for db in 0..srv.store.dbs.len() {
        let n = srv.store.db_size(db) as u64;
        if n == 0 {
            continue;
        }
        let v = srv.store.db_volatile(db) as u64;
        let (main, exp) = (n * PER_KEY, v * PER_KEY);
        overhead_total += main + exp;
        keys += n;
        dbs.push((db, main, exp));
    }
    let net = total.saturating_sub(startup);
    let dataset = total.saturating_sub(overhead_total);
    Overhead {
        peak,
        total,
        startup,
        lua_caches,
        dbs,
        overhead_total,
        keys,
        bytes_per_key: net.checked_div(keys).unwrap_or(0),
        dataset,
        dataset_perc: if net > 0 { (dataset as f64 * 100.0 / net as f64) as f32 } else { 0.0 },
        peak_perc: if peak > 0 { (total as f64 * 100.0 / peak as f64) as f32 } else { 0.0 },
        alloc_allocated: total,
        alloc_active: total,
        alloc_resident: rss,
        rss,
        scripts,
    }
}

/// Ratio as Redis computes it: a C float division.
fn ratio(a: u64, b: u64) -> f32 {
    a as f32 / b as f32
}

pub fn stats(cx: &mut Cx) {
    let m = overhead(cx);
    let o = &mut cx.out;
    o.map(27 + m.dbs.len());
    let ints: [(&str, u64); 10] = [
        ("peak.allocated", m.peak),
        ("total.allocated", m.total),
        ("startup.allocated", m.startup),
        ("replication.backlog", 0),
        ("clients.slaves", 0),
        ("clients.normal", 0),
        ("cluster.links", 0),
        ("aof.buffer", 0),
        ("lua.caches", m.lua_caches),
        ("functions.caches", 0),
    ];
    for (k, v) in ints {
        o.bulk(k.as_bytes());
        o.int(v as i64);
    }
    for (db, main, exp) in &m.dbs {
        o.bulk(format!("db.{db}").as_bytes());
        o.map(3);
        o.bulk(b"overhead.hashtable.main");
        o.int(*main as i64);
        o.bulk(b"overhead.hashtable.expires");
        o.int(*exp as i64);
        o.bulk(b"overhead.hashtable.slot-to-keys");
        o.int(0);
    }
    for (k, v) in [
        ("overhead.total", m.overhead_total),
        ("keys.count", m.keys),
        ("keys.bytes-per-key", m.bytes_per_key),
        ("dataset.bytes", m.dataset),
    ] {
        o.bulk(k.as_bytes());
        o.int(v as i64);
    }
    o.bulk(b"dataset.percentage");
    o.double(m.dataset_perc as f64);
    o.bulk(b"peak.percentage");
    o.double(m.peak_perc as f64);
    for (k, v) in [
        ("allocator.allocated", m.alloc_allocated),
        ("allocator.active", m.alloc_active),
        ("allocator.resident", m.alloc_resident),
    ] {
        o.bulk(k.as_bytes());
        o.int(v as i64);
    }
    let diff = |a: u64, b: u64| a as i64 - b as i64;
    let pairs: [(&str, f32, &str, i64); 4] = [
        (
            "allocator-fragmentation.ratio",
            ratio(m.alloc_active, m.alloc_allocated),
            "allocator-fragmentation.bytes",
            diff(m.alloc_active, m.alloc_allocated),
        ),
        (
            "allocator-rss.ratio",
            ratio(m.alloc_resident, m.alloc_active),
            "allocator-rss.bytes",
            diff(m.alloc_resident, m.alloc_active),
        ),
        ("rss-overhead.ratio", ratio(m.rss, m.alloc_resident), "rss-overhead.bytes", diff(m.rss, m.alloc_resident)),
        ("fragmentation", ratio(m.rss, m.total), "fragmentation.bytes", diff(m.rss, m.total)),
    ];
    for (rk, r, bk, b) in pairs {
        o.bulk(rk.as_bytes());
        o.double(r as f64);
        o.bulk(bk.as_bytes());
        o.int(b);
    }
}

pub fn doctor(cx: &mut Cx) {
    let m = overhead(cx);
    let mut issues: Vec<&str> = Vec::new();
    let empty = m.total < 5 * 1024 * 1024;
    let big = |r: f32, bytes: i64, lim: f32| r > lim && bytes > 10 << 20;
    if !empty {
        if ratio(m.peak, m.total) > 1.5 {
            issues.push(" * Peak memory: In the past this instance used more than 150% the memory that is currently using. The allocator is normally not able to release memory after a peak, so you can expect to see a big fragmentation ratio, however this is actually harmless and is only due to the memory peak, and if the Redis instance Resident Set Size (RSS) is currently bigger than expected, the memory will be used as soon as you fill the Redis instance with more data. If the memory peak was only occasional and you want to try to reclaim memory, please try the MEMORY PURGE command, otherwise the only other option is to shutdown and restart the instance.\n\n");
        }
        if big(ratio(m.rss, m.total), m.rss as i64 - m.total as i64, 1.4) {
            issues.push(" * High total RSS: This instance has a memory fragmentation and RSS overhead greater than 1.4 (this means that the Resident Set Size of the Redis process is much larger than the sum of the logical allocations Redis performed). This problem is usually due either to a large peak memory (check if there is a peak memory entry above in the report) or may result from a workload that causes the allocator to fragment memory a lot. If the problem is a large peak memory, then there is no issue. Otherwise, make sure you are using the Jemalloc allocator and not the default libc malloc. Note: The currently used allocator is \"mimalloc\".\n\n");
        }
        if big(ratio(m.alloc_resident, m.alloc_active), m.alloc_resident as i64 - m.alloc_active as i64, 1.1) {
            issues.push(" * High allocator RSS overhead: This instance has an RSS memory overhead is greater than 1.1 (this means that the Resident Set Size of the allocator is much larger than the sum what the allocator actually holds). This problem is usually due to a large peak memory (check if there is a peak memory entry above in the report), you can try the MEMORY PURGE command to reclaim it.\n\n");
        }
        if m.scripts > 1000 {
            issues.push(" * Many scripts: There seem to be many cached scripts in this instance (more than 1000). This may be because scripts are generated and `EVAL`ed, instead of being parameterized (with KEYS and ARGV), `SCRIPT LOAD`ed and `EVALSHA`ed. Unless `SCRIPT FLUSH` is called periodically, the scripts' caches may end up consuming most of your memory.\n\n");
        }
    }
    let text = if empty {
        "Hi Sam, this instance is empty or is using very little memory, my issues detector can't be used in these conditions. Please, leave for your mission on Earth and fill it with some data. The new Sam and I will be back to our programming as soon as I finished rebooting.\n".to_string()
    } else if issues.is_empty() {
        "Hi Sam, I can't find any memory issue in your instance. I can only account for what occurs on this base.\n"
            .to_string()
    } else {
        let mut s = String::from("Sam, I detected a few issues in this Redis instance memory implants:\n\n");
        for i in issues {
            s.push_str(i);
        }
        s.push_str("I'm here to keep you safe, Sam. I want to help you.\n");
        s
    };
    cx.out.verbatim(b"txt", text.as_bytes());
}

extern "C" {
    // From the mimalloc C library linked in through the `mimalloc` crate.
    fn mi_collect(force: bool);
    fn mi_stats_print_out(
        out: Option<unsafe extern "C" fn(msg: *const std::os::raw::c_char, arg: *mut std::ffi::c_void)>,
        arg: *mut std::ffi::c_void,
    );
}

unsafe extern "C" fn collect_out(msg: *const std::os::raw::c_char, arg: *mut std::ffi::c_void) {
    if msg.is_null() || arg.is_null() {
        return;
    }
    // SAFETY: `arg` is the Vec passed by malloc_stats below, alive for the
    // whole mi_stats_print_out call; `msg` is a NUL-terminated C string.
    let buf = unsafe { &mut *(arg as *mut Vec<u8>) };
    buf.extend_from_slice(unsafe { std::ffi::CStr::from_ptr(msg) }.to_bytes());
}

/// MEMORY MALLOC-STATS: the allocator's own report (mimalloc's statistics
/// where Redis prints jemalloc's), as a verbatim string.
pub fn malloc_stats(cx: &mut Cx) {
    let mut buf: Vec<u8> = Vec::new();
    // SAFETY: the callback only appends to `buf`, which outlives the call.
    unsafe { mi_stats_print_out(Some(collect_out), &mut buf as *mut Vec<u8> as *mut std::ffi::c_void) };
    if buf.is_empty() {
        buf.extend_from_slice(b"Stats not supported for the current allocator");
        cx.out.bulk(&buf);
        return;
    }
    cx.out.verbatim(b"txt", &buf);
}

/// MEMORY PURGE: ask the allocator to return freed pages to the OS.
pub fn purge(cx: &mut Cx) {
    // SAFETY: mi_collect has no preconditions.
    unsafe { mi_collect(true) };
    cx.out.ok();
}
