//! Server-wide counters reported by INFO (and reset by CONFIG RESETSTAT).
//!
//! Counters bumped on the hot path (hits, misses, dirty, ...) are striped
//! across cache lines by thread, so worker threads never contend on one
//! line. `Counter` offers the same `load/store/fetch_add` calls as an
//! `AtomicU64`.

use std::cell::Cell;
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

const STRIPES: usize = 16;

#[repr(align(64))]
#[derive(Default)]
struct Padded(AtomicU64);

/// A striped, relaxed counter.
#[derive(Default)]
pub struct Counter {
    stripes: [Padded; STRIPES],
}

thread_local! {
    static STRIPE: Cell<usize> = const { Cell::new(usize::MAX) };
}

#[inline]
fn stripe() -> usize {
    STRIPE.with(|s| {
        let v = s.get();
        if v != usize::MAX {
            return v;
        }
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let v = NEXT.fetch_add(1, Ordering::Relaxed) % STRIPES;
        s.set(v);
        v
    })
}

impl Counter {
    #[inline]
    pub fn fetch_add(&self, n: u64, _o: Ordering) -> u64 {
        self.stripes[stripe()].0.fetch_add(n, Ordering::Relaxed)
    }

    pub fn load(&self, _o: Ordering) -> u64 {
        self.stripes.iter().map(|s| s.0.load(Ordering::Relaxed)).fold(0u64, |a, b| a.wrapping_add(b))
    }

    pub fn store(&self, v: u64, _o: Ordering) {
        for (i, s) in self.stripes.iter().enumerate() {
            s.0.store(if i == 0 { v } else { 0 }, Ordering::Relaxed);
        }
    }
}

#[derive(Default)]
pub struct Stats {
    pub total_connections_received: Counter,
    pub total_commands_processed: Counter,
    pub rejected_connections: Counter,
    pub expired_keys: Counter,
    pub evicted_keys: Counter,
    pub keyspace_hits: Counter,
    pub keyspace_misses: Counter,
    pub net_input_bytes: Counter,
    pub net_output_bytes: Counter,
    pub total_error_replies: Counter,
    pub dirty: Counter,
    pub pubsub_messages: Counter,
    /// INFO commandstats, by full command name (`config|set`).
    pub cmds: parking_lot::RwLock<HashMap<String, Arc<CmdStat>>>,
    /// Identifies the current contents of `cmds` for the per-thread cache
    /// (`command_done`); unique across all `Stats` and every reset.
    cmds_gen: CmdsGen,
    /// INFO errorstats: replies by error code (`ERR`, `WRONGTYPE`, ...).
    pub errors: parking_lot::Mutex<HashMap<String, u64>>,
    pub slowlog: parking_lot::Mutex<SlowLog>,
    /// `slowlog-log-slower-than` (microseconds, negative disables).
    pub slowlog_slower_than: Setting<10000>,
    /// `slowlog-max-len`.
    pub slowlog_max_len: Setting<128>,
    /// `latency-monitor-threshold` (milliseconds, 0 disables).
    pub latency_threshold: Setting<0>,
    pub latency: parking_lot::Mutex<HashMap<&'static str, LatencyEvent>>,
    /// CLIENT TRACKING tables, and how many clients have tracking on.
    pub tracking: parking_lot::Mutex<crate::cmd::client::tracking::Table>,
    pub tracking_clients: AtomicUsize,
    /// Clients held by CLIENT PAUSE (INFO counts them as blocked).
    pub paused_clients: AtomicUsize,
    /// `latency-tracking` (1 = yes): per-command latency histograms.
    pub latency_tracking: Setting<1>,
    /// `latency-tracking-info-percentiles`.
    pub latency_percentiles: Percentiles,
    /// INFO stats `evicted_clients`.
    pub evicted_clients: Counter,
    /// INFO stats `total_forks`: background snapshots started (where Redis forks).
    pub total_forks: Counter,
}

/// The percentiles INFO latencystats reports (Redis's default 50 99 99.9).
pub struct Percentiles(pub parking_lot::RwLock<Vec<f64>>);

impl Default for Percentiles {
    fn default() -> Self {
        Percentiles(parking_lot::RwLock::new(vec![50.0, 99.0, 99.9]))
    }
}

/// `%f` with trailing zeros (and a trailing point) removed, as Redis shows
/// a percentile (`99.9`, `50`).
pub fn fmt_percentile(p: f64) -> String {
    let mut t = format!("{p:.6}");
    if t.contains('.') {
        while t.ends_with('0') {
            t.pop();
        }
        if t.ends_with('.') {
            t.pop();
        }
    }
    t
}

/// Parse a `latency-tracking-info-percentiles` value with Redis's rules
/// (space separated, each a number in [0, 100]; `""` = none).
pub fn parse_percentiles(v: &[u8]) -> Result<Vec<f64>, &'static str> {
    if v.is_empty() {
        return Ok(Vec::new());
    }
    let mut out = Vec::new();
    for w in v.split(|&b| b == b' ') {
        let p = match ferrite_resp::num::parse_f64(w) {
            Some(p) if !p.is_nan() && !w.is_empty() && !w[0].is_ascii_whitespace() => p,
            _ => return Err("Invalid latency-tracking-info-percentiles parameters"),
        };
        if !(0.0..=100.0).contains(&p) {
            return Err("latency-tracking-info-percentiles parameters should sit between [0.0,100.0]");
        }
        out.push(p);
    }
    Ok(out)
}

/// A per-command latency histogram with the layout of the HdrHistogram
/// Redis uses for latencystats (values 1 ns ..= 1 s, 2 significant digits:
/// 24 buckets of 128 sub-buckets; a value is reported as the highest value
/// of its sub-bucket), so percentiles read like Redis's. The counts are
/// atomics: recording is one relaxed add, no lock, no allocation (the
/// array is allocated when the command is first recorded).
pub struct LatencyHist {
    counts: Box<[AtomicU64]>,
}

const HDR_MAX: u64 = 1_000_000_000;
const HDR_LEN: usize = 24 * 128;

impl LatencyHist {
    fn new() -> Self {
        LatencyHist { counts: (0..HDR_LEN).map(|_| AtomicU64::new(0)).collect() }
    }

    fn index(v: u64) -> usize {
        let v = v.clamp(1, HDR_MAX);
        let bucket = 64 - (v | 255).leading_zeros() as usize - 8;
        let sub = (v >> bucket) as usize;
        ((bucket + 1) << 7) + sub - 128
    }

    /// The lowest value of the sub-bucket at `idx`, and its width.
    fn value_at(idx: usize) -> (u64, u64) {
        let b = idx >> 7;
        if b == 0 {
            (idx as u64, 1)
        } else {
            let bucket = b - 1;
            ((((idx & 127) + 128) as u64) << bucket, 1u64 << bucket)
        }
    }

    #[inline]
    pub fn record_ns(&self, ns: u64) {
        if let Some(c) = self.counts.get(Self::index(ns)) {
            c.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// `record_ns` by the histogram's only writer (a thread's own part):
    /// a plain load and store, no locked instruction.
    #[inline]
    fn record_ns_owned(&self, ns: u64) {
        if let Some(c) = self.counts.get(Self::index(ns)) {
            bump_owned(c, 1);
        }
    }

    /// hdr_value_at_percentile: the highest value equivalent to the one at
    /// the percentile (the lowest for percentile 0).
    #[cfg(test)]
    pub fn value_at_percentile(&self, p: f64) -> u64 {
        let counts: Vec<u64> = self.counts.iter().map(|c| c.load(Ordering::Relaxed)).collect();
        Self::percentile_of(&counts, p)
    }

    /// Add this histogram's counts into `into` (HDR_LEN long).
    fn add_to(&self, into: &mut [u64]) {
        for (a, c) in into.iter_mut().zip(self.counts.iter()) {
            *a = a.wrapping_add(c.load(Ordering::Relaxed));
        }
    }

    /// `value_at_percentile` of summed counts.
    fn percentile_of(counts: &[u64], p: f64) -> u64 {
        let total: u64 = counts.iter().sum();
        let want = ((p.min(100.0) / 100.0 * total as f64 + 0.5) as u64).max(1);
        let mut seen = 0u64;
        for (i, &n) in counts.iter().enumerate() {
            seen += n;
            if seen >= want {
                let (low, width) = Self::value_at(i);
                return if p == 0.0 { low } else { low + width - 1 };
            }
        }
        0
    }
}

/// An integer setting with a default.
pub struct Setting<const D: i64>(pub AtomicI64);

impl<const D: i64> Default for Setting<D> {
    fn default() -> Self {
        Setting(AtomicI64::new(D))
    }
}

impl<const D: i64> Setting<D> {
    pub fn get(&self) -> i64 {
        self.0.load(Ordering::Relaxed)
    }
    pub fn set(&self, v: i64) {
        self.0.store(v, Ordering::Relaxed)
    }
}

/// A process-wide unique number (see `Stats::cmds_gen`).
struct CmdsGen(AtomicU64);

fn next_cmds_gen() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

impl Default for CmdsGen {
    fn default() -> Self {
        CmdsGen(AtomicU64::new(next_cmds_gen()))
    }
}

const CMD_CACHE: usize = 16;

/// One slot of the per-thread commandstats cache: (generation, command
/// metadata address, this thread's part of its entry, whether this thread
/// is that part's only writer).
type CmdCacheSlot = (u64, usize, Option<(Arc<CmdCounts>, bool)>);

thread_local! {
    /// Per-thread cache of commandstats entries, so a command's counters are
    /// found without the map's lock or a reference count update.
    static CMD_STATS: std::cell::RefCell<[CmdCacheSlot; CMD_CACHE]> =
        const { std::cell::RefCell::new([const { (0, 0, None) }; CMD_CACHE]) };
    /// This thread's number among the threads that ran commands (0 = not yet assigned).
    static THREAD_NO: Cell<u64> = const { Cell::new(0) };
}

fn thread_no() -> u64 {
    THREAD_NO.with(|t| {
        if t.get() == 0 {
            static NEXT: AtomicU64 = AtomicU64::new(1);
            t.set(NEXT.fetch_add(1, Ordering::Relaxed));
        }
        t.get()
    })
}

/// At most this many threads get a part of their own in one command's
/// entry; further threads share the entry's common part.
const MAX_PARTS: usize = 64;

/// Add `n` to a counter this thread alone writes (relaxed load + store:
/// no locked instruction; readers on other threads see a value that was
/// current at some point, as with `fetch_add`).
#[inline]
fn bump_owned(c: &AtomicU64, n: u64) {
    c.store(c.load(Ordering::Relaxed).wrapping_add(n), Ordering::Relaxed);
}

/// The counters of one command, as written by one thread (or, for the
/// entry's common part, by any thread with atomic adds). Aligned so that
/// two threads' parts never share a cache line (or an adjacent-line
/// prefetch pair).
#[derive(Default)]
#[repr(align(128))]
pub struct CmdCounts {
    calls: AtomicU64,
    usec: AtomicU64,
    failed: AtomicU64,
    /// Latency histogram: bucket i counts calls of at most 2^i microseconds.
    hist: [AtomicU64; 32],
    /// INFO latencystats histogram (while `latency-tracking` is on).
    latency: std::sync::OnceLock<LatencyHist>,
}

impl CmdCounts {
    /// Count one call. `owned`: this thread is the only writer.
    #[inline]
    fn record(&self, us: u64, failed: bool, tracking: bool, owned: bool) {
        let bucket = &self.hist[hist_bucket(us)];
        if owned {
            bump_owned(&self.calls, 1);
            bump_owned(&self.usec, us);
            bump_owned(bucket, 1);
            if failed {
                bump_owned(&self.failed, 1);
            }
            if tracking {
                // Redis records the call's microseconds, in nanoseconds.
                self.latency.get_or_init(LatencyHist::new).record_ns_owned(us.saturating_mul(1000));
            }
        } else {
            self.calls.fetch_add(1, Ordering::Relaxed);
            self.usec.fetch_add(us, Ordering::Relaxed);
            bucket.fetch_add(1, Ordering::Relaxed);
            if failed {
                self.failed.fetch_add(1, Ordering::Relaxed);
            }
            if tracking {
                self.latency.get_or_init(LatencyHist::new).record_ns(us.saturating_mul(1000));
            }
        }
    }
}

/// Per-command counters (INFO commandstats, LATENCY HISTOGRAM, INFO
/// latencystats). Each thread that runs the command counts in a part of
/// its own (no cache line shared between worker threads on the command
/// path); readers add the parts up.
#[derive(Default)]
pub struct CmdStat {
    pub rejected: AtomicU64,
    /// Counts of threads without a part of their own (and `failed_call`).
    common: Arc<CmdCounts>,
    /// (thread number, its part).
    parts: parking_lot::Mutex<Vec<(u64, Arc<CmdCounts>)>>,
}

impl CmdStat {
    /// This thread's part (created on first use) and whether it is its own.
    fn part(&self) -> (Arc<CmdCounts>, bool) {
        let me = thread_no();
        let mut parts = self.parts.lock();
        if let Some((_, p)) = parts.iter().find(|(t, _)| *t == me) {
            return (p.clone(), true);
        }
        if parts.len() >= MAX_PARTS {
            return (self.common.clone(), false);
        }
        let p = Arc::new(CmdCounts::default());
        parts.push((me, p.clone()));
        (p, true)
    }

    fn sum(&self, f: impl Fn(&CmdCounts) -> u64) -> u64 {
        let parts = self.parts.lock();
        parts.iter().fold(f(&self.common), |a, (_, p)| a.wrapping_add(f(p)))
    }

    pub fn calls(&self) -> u64 {
        self.sum(|c| c.calls.load(Ordering::Relaxed))
    }

    pub fn usec(&self) -> u64 {
        self.sum(|c| c.usec.load(Ordering::Relaxed))
    }

    pub fn failed(&self) -> u64 {
        self.sum(|c| c.failed.load(Ordering::Relaxed))
    }

    /// The LATENCY HISTOGRAM buckets (bucket i: calls of at most 2^i us).
    pub fn hist(&self) -> [u64; 32] {
        let mut out = [0u64; 32];
        let parts = self.parts.lock();
        for c in std::iter::once(&*self.common).chain(parts.iter().map(|(_, p)| &**p)) {
            for (o, b) in out.iter_mut().zip(&c.hist) {
                *o = o.wrapping_add(b.load(Ordering::Relaxed));
            }
        }
        out
    }

    /// The INFO latencystats values (ns) at `pcts`, if a call was recorded
    /// while latency tracking was on.
    pub fn latency_percentiles(&self, pcts: &[f64]) -> Option<Vec<u64>> {
        let parts = self.parts.lock();
        let mut counts: Option<Vec<u64>> = None;
        for c in std::iter::once(&*self.common).chain(parts.iter().map(|(_, p)| &**p)) {
            if let Some(h) = c.latency.get() {
                h.add_to(counts.get_or_insert_with(|| vec![0; HDR_LEN]));
            }
        }
        counts.map(|c| pcts.iter().map(|&p| LatencyHist::percentile_of(&c, p)).collect())
    }
}

/// The histogram bucket of a duration in microseconds.
pub fn hist_bucket(us: u64) -> usize {
    let us = us.max(1);
    ((64 - (us - 1).leading_zeros()) as usize).min(31)
}

/// One SLOWLOG entry.
pub struct SlowEntry {
    pub id: u64,
    pub time: i64,
    pub duration_us: u64,
    pub args: Vec<Vec<u8>>,
    pub peer: String,
    pub name: Vec<u8>,
}

#[derive(Default)]
pub struct SlowLog {
    pub next_id: u64,
    /// Newest first.
    pub entries: VecDeque<SlowEntry>,
}

/// LATENCY samples of one event (newest last, at most 160).
#[derive(Default)]
pub struct LatencyEvent {
    pub samples: VecDeque<(i64, u64)>,
    pub max: u64,
}

const SLOWLOG_MAX_ARGC: usize = 32;
const SLOWLOG_MAX_STRING: usize = 128;

/// Is argument `i` of this call a secret that SLOWLOG and MONITOR show as
/// `(redacted)` (Redis's redactClientCommandArgument callers)?
pub fn is_redacted(args: &[bytes::Bytes], i: usize) -> bool {
    let Some(cmd) = args.first() else { return false };
    let is = |name: &[u8]| cmd.eq_ignore_ascii_case(name);
    let sub_is = |name: &[u8]| args.get(1).is_some_and(|a| a.eq_ignore_ascii_case(name));
    if is(b"auth") {
        i >= 1
    } else if is(b"hello") {
        args.iter().position(|a| a.eq_ignore_ascii_case(b"auth")).is_some_and(|p| p >= 2 && i > p && i <= p + 2)
    } else if is(b"acl") && sub_is(b"setuser") {
        i >= 2
    } else if is(b"config") && sub_is(b"set") {
        i >= 3
            && i % 2 == 1
            && ["masterauth", "requirepass", "tls-key-file-pass", "tls-client-key-file-pass"]
                .iter()
                .any(|n| args[i - 1].eq_ignore_ascii_case(n.as_bytes()))
    } else if is(b"migrate") {
        let mut j = 6;
        while j < args.len() {
            if args[j].eq_ignore_ascii_case(b"auth") {
                if i == j + 1 {
                    return true;
                }
                j += 2;
            } else if args[j].eq_ignore_ascii_case(b"auth2") {
                if i == j + 1 || i == j + 2 {
                    return true;
                }
                j += 3;
            } else if args[j].eq_ignore_ascii_case(b"keys") {
                break;
            } else {
                j += 1;
            }
        }
        false
    } else {
        false
    }
}

/// Arguments as SLOWLOG keeps them: at most 32 (the last one says how many
/// more there were), each at most 128 bytes, secrets redacted.
fn slowlog_args(args: &[bytes::Bytes]) -> Vec<Vec<u8>> {
    let redacted = |i: usize| is_redacted(args, i);
    let n = args.len().min(SLOWLOG_MAX_ARGC);
    let mut out = Vec::with_capacity(n);
    for (i, a) in args.iter().take(n).enumerate() {
        if n != args.len() && i == n - 1 {
            out.push(format!("... ({} more arguments)", args.len() - n + 1).into_bytes());
        } else if redacted(i) {
            out.push(b"(redacted)".to_vec());
        } else if a.len() > SLOWLOG_MAX_STRING {
            let mut v = a[..SLOWLOG_MAX_STRING].to_vec();
            v.extend_from_slice(format!("... ({} more bytes)", a.len() - SLOWLOG_MAX_STRING).as_bytes());
            out.push(v);
        } else {
            out.push(a.to_vec());
        }
    }
    out
}

/// A request failed to resolve: an arity error still counts as a rejected
/// call of its (sub)command in INFO commandstats, like Redis.
pub fn rejected_before_resolve(srv: &crate::server::Server, args: &[bytes::Bytes], err: &str) {
    if !err.starts_with("ERR wrong number of arguments") || args.is_empty() {
        return;
    }
    let Some(cmd) = srv.registry.get(&args[0]) else { return };
    let mut meta = cmd.meta;
    if !meta.subcommands.is_empty() && args.len() >= 2 {
        match meta.subcommand(&args[1]) {
            Some(s) => meta = s,
            None => return,
        }
    }
    srv.stats.rejected_call(&meta.name);
}

/// A blocked command ended without being served (timeout, CLIENT
/// UNBLOCK): Redis counts the call then (commandstats, latencystats).
pub fn unblocked(srv: &crate::server::Server, client: &crate::client::Client, args: &[bytes::Bytes], failed: bool) {
    if let Ok((_, meta)) = crate::dispatch::resolve(srv, args) {
        srv.stats.command_done(meta, args, client, std::time::Duration::ZERO, failed);
    }
}

/// The error code of an error reply text (`ERR`, `WRONGTYPE`, ...), as
/// Redis's errorstats counts it.
fn error_code(msg: &str) -> &str {
    let code = msg.split(' ').next().unwrap_or("ERR");
    if code.is_empty() || code.len() > 128 {
        "ERR"
    } else {
        code
    }
}

impl Stats {
    /// An error reply was sent (INFO total_error_replies and errorstats).
    pub fn error_reply(&self, msg: &str) {
        self.total_error_replies.fetch_add(1, Ordering::Relaxed);
        let code = error_code(msg);
        let mut m = self.errors.lock();
        // Like Redis, stop tracking new codes past 128 distinct ones.
        if let Some(n) = m.get_mut(code) {
            *n += 1;
        } else if m.len() < 128 {
            m.insert(code.to_string(), 1);
        }
    }

    fn cmd_stat(&self, name: &str) -> Arc<CmdStat> {
        if let Some(c) = self.cmds.read().get(name) {
            return c.clone();
        }
        self.cmds.write().entry(name.to_string()).or_default().clone()
    }

    /// A command was refused before running (arity, auth, ACL, OOM...).
    pub fn rejected_call(&self, name: &str) {
        self.cmd_stat(name).rejected.fetch_add(1, Ordering::Relaxed);
    }

    /// A command that ran failed without its error reply being counted
    /// here (a script's error already counted by the command it called).
    pub fn failed_call(&self, name: &str) {
        self.cmd_stat(name).common.failed.fetch_add(1, Ordering::Relaxed);
    }

    /// A command ran: commandstats, SLOWLOG and the `command` latency event.
    pub fn command_done(
        &self,
        meta: &'static ferrite_commands::CommandMeta,
        args: &[bytes::Bytes],
        client: &crate::client::Client,
        duration: std::time::Duration,
        failed: bool,
    ) {
        let us = duration.as_micros() as u64;
        let tracking = self.latency_tracking.get() != 0;
        // `meta` lives in the process-wide command table, so its address
        // names the command; the generation ties the entry to this `Stats`
        // since its last reset.
        let gen = self.cmds_gen.0.load(Ordering::Relaxed);
        let key = meta as *const ferrite_commands::CommandMeta as usize;
        let hit = CMD_STATS
            .try_with(|c| {
                let mut c = c.borrow_mut();
                let slot = &mut c[(key >> 4) % CMD_CACHE];
                if slot.0 != gen || slot.1 != key || slot.2.is_none() {
                    *slot = (gen, key, Some(self.cmd_stat(&meta.name).part()));
                }
                if let Some((part, owned)) = &slot.2 {
                    part.record(us, failed, tracking, *owned);
                }
            })
            .is_ok();
        if !hit {
            self.cmd_stat(&meta.name).common.record(us, failed, tracking, false);
        }
        if meta.flags.has(ferrite_commands::Flags::SKIP_SLOWLOG) {
            return;
        }
        let slower = self.slowlog_slower_than.get();
        if slower >= 0 && us as i64 >= slower {
            let entry = SlowEntry {
                id: 0,
                time: crate::server::now_ms() / 1000,
                duration_us: us,
                args: slowlog_args(args),
                peer: client.handle.addr.clone(),
                name: client.handle.name.lock().as_ref().map(|n| n.to_vec()).unwrap_or_default(),
            };
            let max = self.slowlog_max_len.get().max(0) as usize;
            let mut l = self.slowlog.lock();
            let id = l.next_id;
            l.next_id += 1;
            l.entries.push_front(SlowEntry { id, ..entry });
            l.entries.truncate(max);
        }
        let ms = duration.as_millis() as u64;
        let th = self.latency_threshold.get();
        if th > 0 && ms as i64 >= th {
            let fast = meta.flags.has(ferrite_commands::Flags::FAST);
            self.latency_sample(if fast { "fast-command" } else { "command" }, ms);
        }
    }

    /// Record one latency sample (LATENCY LATEST/HISTORY).
    pub fn latency_sample(&self, event: &'static str, ms: u64) {
        let now = crate::server::now_ms() / 1000;
        let mut m = self.latency.lock();
        let e = m.entry(event).or_default();
        match e.samples.back_mut() {
            // One sample per second: keep the worst.
            Some(last) if last.0 == now => last.1 = last.1.max(ms),
            _ => e.samples.push_back((now, ms)),
        }
        while e.samples.len() > 160 {
            e.samples.pop_front();
        }
        e.max = e.max.max(ms);
    }
}

impl Stats {
    pub fn reset(&self) {
        {
            let mut m = self.cmds.write();
            m.clear();
            self.cmds_gen.0.store(next_cmds_gen(), Ordering::Relaxed);
        }
        self.errors.lock().clear();
        crate::evict::lazyfree::FREED.store(0, Ordering::Relaxed);
        for c in [
            &self.total_connections_received,
            &self.total_commands_processed,
            &self.rejected_connections,
            &self.expired_keys,
            &self.evicted_keys,
            &self.keyspace_hits,
            &self.keyspace_misses,
            &self.net_input_bytes,
            &self.net_output_bytes,
            &self.total_error_replies,
            &self.evicted_clients,
            &self.total_forks,
        ] {
            c.store(0, Ordering::Relaxed);
        }
    }

    #[inline]
    pub fn add(c: &Counter, n: u64) {
        if n > 0 {
            c.fetch_add(n, Ordering::Relaxed);
        }
    }
}

/// INFO latencystats lines (`latency_percentiles_usec_<cmd>:p50=..`), by
/// command name.
pub fn latencystats(stats: &Stats, s: &mut String) {
    use std::fmt::Write as _;
    let pcts = stats.latency_percentiles.0.read().clone();
    let labels: Vec<String> = pcts.iter().map(|&p| fmt_percentile(p)).collect();
    let m = stats.cmds.read();
    let mut names: Vec<&String> = m.keys().collect();
    names.sort();
    for n in names {
        let Some(values) = m[n].latency_percentiles(&pcts) else { continue };
        let _ = write!(s, "latency_percentiles_usec_{n}:");
        for (i, (v, label)) in values.iter().zip(&labels).enumerate() {
            if i > 0 {
                s.push(',');
            }
            let _ = write!(s, "p{label}={:.3}", *v as f64 / 1000.0);
        }
        s.push_str("\r\n");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latency_hist_matches_hdr_layout() {
        let h = LatencyHist::new();
        h.record_ns(7000);
        // hdr_histogram (1..1e9, 2 digits): 7000 ns sits in [6976, 7007].
        assert_eq!(h.value_at_percentile(50.0), 7007);
        assert_eq!(h.value_at_percentile(0.0), 6976);
        for v in [1u64, 255, 256, 257, 1000, 65_535, 999_999_999, 1_000_000_000, u64::MAX] {
            let i = LatencyHist::index(v);
            assert!(i < HDR_LEN);
            let (low, w) = LatencyHist::value_at(i);
            let v = v.clamp(1, HDR_MAX);
            assert!(low <= v && v < low + w, "{v}: {low} {w}");
        }
        let h = LatencyHist::new();
        for v in 1..=100u64 {
            h.record_ns(v * 1000);
        }
        assert_eq!(h.value_at_percentile(50.0), 50_175);
        assert_eq!(h.value_at_percentile(100.0), 100_351);
        assert_eq!(fmt_percentile(99.9), "99.9");
        assert_eq!(fmt_percentile(50.0), "50");
        assert_eq!(parse_percentiles(b"0x10 1e1").unwrap(), vec![16.0, 10.0]);
        assert!(parse_percentiles(b" 5").is_err());
        assert!(parse_percentiles(b"101").is_err());
        assert!(parse_percentiles(b"").unwrap().is_empty());
    }

    fn dummy_client() -> crate::client::Client {
        let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
        let h = crate::client::ClientHandle::new(1, "127.0.0.1:1".into(), "127.0.0.1:2".into(), -1, tx, 0);
        crate::client::Client::new(std::sync::Arc::new(h), true)
    }

    #[test]
    fn command_counts_sum_across_threads() {
        let stats = std::sync::Arc::new(Stats::default());
        let meta = ferrite_commands::table().commands.get("get").expect("get in the command table");
        let hs: Vec<_> = (0..3u64)
            .map(|t| {
                let stats = stats.clone();
                std::thread::spawn(move || {
                    for i in 0..1000u64 {
                        stats.command_done(
                            meta,
                            &[],
                            &dummy_client(),
                            std::time::Duration::from_micros(t),
                            i % 10 == 0,
                        );
                    }
                })
            })
            .collect();
        hs.into_iter().for_each(|h| h.join().unwrap());
        stats.failed_call("get");
        let st = stats.cmds.read().get("get").cloned().expect("entry");
        assert_eq!(st.calls(), 3000);
        assert_eq!(st.usec(), 1000 + 2000);
        assert_eq!(st.failed(), 301);
        let h = st.hist();
        // 0 and 1 us fall in bucket 0, 2 us in bucket 1.
        assert_eq!((h[0], h[1], h.iter().sum::<u64>()), (2000, 1000, 3000));
        // p50 of {1000 x 1 ns (0 us clamps to 1), 1000 x 1000 ns, 1000 x 2000 ns}: the 1000 ns sub-bucket.
        let p = st.latency_percentiles(&[0.0, 50.0, 100.0]).expect("tracked");
        assert_eq!(p, vec![1, 1003, 2007]);
        stats.reset();
        assert!(stats.cmds.read().get("get").is_none());
    }

    #[test]
    fn striped_counter_sums_across_threads() {
        let c = std::sync::Arc::new(Counter::default());
        let hs: Vec<_> = (0..4)
            .map(|_| {
                let c = c.clone();
                std::thread::spawn(move || {
                    for _ in 0..1000 {
                        c.fetch_add(1, Ordering::Relaxed);
                    }
                })
            })
            .collect();
        hs.into_iter().for_each(|h| h.join().unwrap());
        assert_eq!(c.load(Ordering::Relaxed), 4000);
        c.store(5, Ordering::Relaxed);
        assert_eq!(c.load(Ordering::Relaxed), 5);
    }
}
