//! The orchestration of `run` / `resume`, plus `status` and `rollback`.
//!
//! Order of a run: load or create the checkpoint; connect to the source,
//! Ferrite and every proxy; reconcile with the proxies (a slot every proxy
//! already routes to Ferrite is flipped); empty the target's not-yet-flipped
//! slots in scope (so keys deleted on the source while nobody watched cannot
//! survive); copy (scan) or sync (replication); then per group of
//! `--cutover-slots` slots: pause at every proxy -> drain -> flip to Ferrite
//! with mirror on -> (the flip resumes the queued requests); checkpoint after
//! every slot; finally verify.

use crate::config::{Config, Method};
use crate::copy::{self, Limiter, Target};
use crate::metrics;
use crate::progress::{Mode, Progress};
use crate::proxy::Proxies;
use crate::repl;
use crate::slots::{ranges_string, SlotSet};
use crate::state::{self, State};
use crate::topo::Source;
use crate::{cmd, Error, Result};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What `run` ended with.
#[derive(Debug, serde::Serialize)]
pub struct Outcome {
    pub slots_in_scope: usize,
    pub slots_flipped: usize,
    pub keys_copied: u64,
    pub bytes_copied: u64,
    pub copy_errors: u64,
    pub pauses: usize,
    pub pause_p50_ms: f64,
    pub pause_p99_ms: f64,
    pub pause_max_ms: f64,
    pub verified: Option<bool>,
    pub mismatches: Option<u64>,
    pub elapsed_s: f64,
    pub failed_keys: Vec<String>,
    pub notes: Vec<String>,
    /// The differences verify found (first 100).
    pub diffs: Vec<String>,
}

struct Ctx<'a> {
    cfg: &'a Config,
    st: State,
    src: Source,
    dst: Target,
    px: Proxies,
    prog: Progress,
    lim: Limiter,
    notes: Vec<String>,
    /// Connections of the copying threads (scan), made on first use.
    pool: Vec<(Source, Target)>,
}

impl Ctx<'_> {
    fn save(&mut self) -> Result<()> {
        self.sync_counters();
        self.st.save(&self.cfg.state)
    }

    fn sync_counters(&mut self) {
        self.st.epoch = self.st.epoch.max(self.px.epoch);
        let m = metrics::get();
        self.st.keys_copied = m.keys_copied.get();
        self.st.bytes_copied = m.bytes_copied.get();
        self.st.copy_errors = m.copy_errors.get();
        m.slots.with_label_values(&["pending"]).set(self.st.with(state::PENDING).len() as i64);
        m.slots.with_label_values(&["copied"]).set(self.st.with(state::COPIED).len() as i64);
        m.slots.with_label_values(&["flipped"]).set(self.st.with(state::FLIPPED).len() as i64);
    }

    /// Checkpoint without fsync (write + rename): survives a crash or kill
    /// of the tool, not a power loss. Used for copy progress, which resume
    /// redoes anyway; flips are saved with [`Ctx::save`].
    fn save_light(&mut self) -> Result<()> {
        self.sync_counters();
        self.st.save_opts(&self.cfg.state, false)
    }

    fn note(&mut self, s: String) {
        self.prog.println(&s);
        self.notes.push(s);
    }

    fn record_failures(&mut self, cs: &copy::CopyStats) {
        for (k, e) in &cs.failed {
            if self.st.failed_keys.len() < 100 {
                self.st.failed_keys.push(format!("{}: {e}", String::from_utf8_lossy(k)));
            }
        }
    }
}

/// Base metrics so they show up before the first event.
fn init_metrics(st: &State) {
    let m = metrics::get();
    m.keys_copied.inc_by(st.keys_copied.saturating_sub(m.keys_copied.get()));
    m.bytes_copied.inc_by(st.bytes_copied.saturating_sub(m.bytes_copied.get()));
    m.copy_errors.inc_by(st.copy_errors.saturating_sub(m.copy_errors.get()));
}

/// `run` (resume = false) or `resume`.
pub fn run(cfg: &Config, resume: bool) -> Result<Outcome> {
    let t_start = Instant::now();
    let mut st = if resume {
        let st = State::load(&cfg.state)?;
        if st.finished {
            return Err(Error::Config(format!("{:?}: that run already finished; nothing to resume", cfg.state)));
        }
        st
    } else {
        if cfg.state.exists() && !cfg.force {
            if let Ok(old) = State::load(&cfg.state) {
                if !old.finished {
                    return Err(Error::Config(format!(
                        "{:?} holds an unfinished run: use `ferrite-migrate resume`, or --force to start over",
                        cfg.state
                    )));
                }
            }
        }
        let from = cfg.from.clone();
        if from.is_empty() {
            return Err(Error::Config("--from-redis-cluster is required".into()));
        }
        let to = cfg.to.clone().ok_or_else(|| Error::Config("--to is required".into()))?;
        let scope = cfg.slots.clone().unwrap_or_else(SlotSet::all);
        State::new(cfg.method.name(), from, to, cfg.proxies.clone(), &scope)
    };
    // Flags given now win over what the state file recorded.
    if resume {
        if !cfg.from.is_empty() {
            st.source = cfg.from.clone();
        }
        if let Some(t) = &cfg.to {
            st.target = t.clone();
        }
        if !cfg.proxies.is_empty() {
            st.proxies = cfg.proxies.clone();
        }
    }
    let method = if st.method == "scan" { Method::Scan } else { Method::Replication };
    init_metrics(&st);
    if let Some(addr) = &cfg.metrics_listen {
        crate::metrics::serve(addr)?;
    }
    let mut src = Source::connect(st.source.clone(), cfg.source_auth.clone(), cfg.timeout)?;
    src.retry_for = cfg.retry_for;
    let dst = Target::connect(&st.target, cfg.timeout, &cfg.target_auth)?;
    let px = Proxies::connect(&st.proxies, cfg.proxy_admin_password.clone(), cfg.timeout)?;
    let scope = st.scope_set();
    let uncovered = scope.minus(&src.topo.covered());
    if !uncovered.is_empty() {
        return Err(Error::Other(format!(
            "slots in scope served by no source master: {}",
            uncovered.to_ranges_string()
        )));
    }
    let prog = Progress::start(cfg.mode, scope.len() as u64);
    let mut cx = Ctx {
        cfg,
        st,
        src,
        dst,
        px,
        prog,
        lim: Limiter::new(cfg.max_keys_per_sec),
        notes: Vec::new(),
        pool: Vec::new(),
    };
    cx.px.epoch = cx.px.epoch.max(cx.st.epoch);
    if cx.px.is_empty() {
        cx.note("no --proxy given: data is copied and verified, but no traffic is switched (no cutover)".into());
    } else {
        reconcile(&mut cx)?;
    }
    cx.save()?;
    let todo = scope.minus(&cx.st.with(state::FLIPPED));
    let purged = copy::purge_target(&mut cx.dst, &todo)?;
    if purged > 0 {
        cx.note(format!("removed {purged} keys from Ferrite in the {} slots still to migrate", todo.len()));
    }
    for s in todo.iter() {
        cx.st.set(s, state::PENDING);
    }
    cx.save()?;
    // Function libraries before the data (a later FCALL may need them).
    let fl = crate::functions::copy(&mut cx.src, &mut cx.dst.conn)?;
    for w in fl.warnings {
        cx.note(w);
    }
    if fl.libraries > 0 {
        cx.note(format!("copied {} function libraries", fl.libraries));
    }
    let res = match method {
        Method::Scan => run_scan(&mut cx, &todo),
        Method::Replication => run_replication(&mut cx, &todo),
    };
    if let Err(e) = res {
        let _ = cx.save();
        cx.prog.println(&format!("error: {e}"));
        let Ctx { prog, .. } = cx;
        prog.finish();
        return Err(e);
    }
    // Verify.
    let mut verified = None;
    let mut mismatches = None;
    let mut diffs = Vec::new();
    if !cfg.no_verify {
        let flipped = cx.st.with(state::FLIPPED);
        let rep = crate::verify::verify(&mut cx.src, &mut cx.dst.conn, &flipped, cfg.ttl_tolerance_ms, 50)?;
        let rep_diffs = if rep.diffs.is_empty() || cx.px.is_empty() {
            rep.diffs
        } else {
            recheck_paused(&mut cx.src, &mut cx.dst.conn, &mut cx.px, rep.diffs, cfg.ttl_tolerance_ms)?
        };
        let rep = crate::verify::Report { diffs: rep_diffs, functions: rep.functions, ..Default::default() };
        diffs.extend(rep.functions.iter().cloned());
        for d in rep.diffs.iter().take(100) {
            diffs.push(format!("slot {} key {:?}: {}", d.slot, String::from_utf8_lossy(&d.key), d.what));
        }
        mismatches = Some(rep.differences() as u64);
        verified = Some(rep.differences() == 0);
        cx.st.last_verify_mismatches = mismatches;
    }
    if cfg.drop_mirror && verified == Some(true) && !cx.px.is_empty() {
        let r = cx.st.with(state::FLIPPED).ranges();
        cx.px.setslots("ferrite", false, &r)?;
        cx.note("mirror turned off for every flipped slot".into());
    }
    cx.st.finished = cx.st.with(state::FLIPPED) == scope;
    cx.save()?;
    let (p50, p99, pmax) = cx.st.pause_stats().unwrap_or((0.0, 0.0, 0.0));
    let out = Outcome {
        slots_in_scope: scope.len(),
        slots_flipped: cx.st.with(state::FLIPPED).len(),
        keys_copied: cx.st.keys_copied,
        bytes_copied: cx.st.bytes_copied,
        copy_errors: cx.st.copy_errors,
        pauses: cx.st.pauses_ms.len(),
        pause_p50_ms: p50,
        pause_p99_ms: p99,
        pause_max_ms: pmax,
        verified,
        mismatches,
        elapsed_s: t_start.elapsed().as_secs_f64(),
        failed_keys: cx.st.failed_keys.clone(),
        notes: cx.notes.clone(),
        diffs,
    };
    let Ctx { prog, .. } = cx;
    prog.finish();
    Ok(out)
}

/// Keys still differing after verify's re-reads may be keys written all the
/// time (the mirror keeps the other side a little behind). Compare them
/// again with their slot briefly paused at every proxy (after the mirror
/// settled), then give the slot back its state and mirror flag: what still
/// differs then is a real difference. At most 100 slots are paused this way.
pub fn recheck_paused(
    src: &mut Source,
    dst: &mut crate::resp::Conn,
    px: &mut Proxies,
    diffs: Vec<crate::verify::Diff>,
    tol_ms: i64,
) -> Result<Vec<crate::verify::Diff>> {
    let runs = px.slots(0)?;
    let state_of = |s: u16| runs.iter().find(|r| r.start <= s && s <= r.end).map(|r| (r.state.clone(), r.mirror));
    let mut by_slot: std::collections::BTreeMap<u16, Vec<Vec<u8>>> = Default::default();
    for d in diffs {
        by_slot.entry(d.slot).or_default().push(d.key);
    }
    let mut out = Vec::new();
    for (n, (s, keys)) in by_slot.into_iter().enumerate() {
        let r = match state_of(s) {
            Some((st, mirror)) if n < 100 && (st == "ferrite" || st == "upstream") => {
                px.setslots("paused", false, &[(s, s)])?;
                std::thread::sleep(Duration::from_millis(100));
                let r = crate::verify::compare_keys(src, dst, s, &keys, tol_ms);
                px.setslots(&st, mirror, &[(s, s)])?;
                r?
            }
            _ => crate::verify::compare_keys(src, dst, s, &keys, tol_ms)?,
        };
        out.extend(r.into_iter().map(|(key, what)| crate::verify::Diff { slot: s, key, what }));
    }
    metrics::get().verify_mismatches.set(out.len() as i64);
    Ok(out)
}

/// Slots every proxy already routes to Ferrite count as flipped.
fn reconcile(cx: &mut Ctx) -> Result<()> {
    let mut all_ferrite = SlotSet::all();
    for i in 0..cx.px.addrs.len() {
        let mut f = SlotSet::default();
        for r in cx.px.slots(i)? {
            if r.state == "ferrite" {
                f.insert_range(r.start, r.end);
            }
        }
        all_ferrite = all_ferrite.intersect(&f);
    }
    let scope = cx.st.scope_set();
    let newly = all_ferrite.intersect(&scope).minus(&cx.st.with(state::FLIPPED));
    if !newly.is_empty() {
        cx.note(format!(
            "slots {} are already routed to Ferrite by every proxy: counted as flipped",
            newly.to_ranges_string()
        ));
        for s in newly.iter() {
            cx.st.set(s, state::FLIPPED);
        }
    }
    // Slots we think are flipped but a proxy does not: flip them again.
    let lost = cx.st.with(state::FLIPPED).minus(&all_ferrite);
    if !lost.is_empty() {
        cx.note(format!("re-flipping slots {} that a proxy does not route to Ferrite", lost.to_ranges_string()));
        cx.px.setslots("ferrite", true, &lost.ranges())?;
    }
    Ok(())
}

/// Groups of up to `n` slots (in slot order).
fn groups(todo: &SlotSet, n: usize) -> Vec<SlotSet> {
    let v: Vec<u16> = todo.iter().collect();
    v.chunks(n.max(1))
        .map(|c| {
            let mut s = SlotSet::default();
            for x in c {
                s.insert(*x);
            }
            s
        })
        .collect()
}

/// Re-copy the keys the proxies recorded as written. `limited`: obey
/// `--max-keys-per-sec` (not during a pause: clients are waiting).
fn copy_dirty(cx: &mut Ctx, group: &SlotSet, limited: bool) -> Result<u64> {
    let mut n = 0;
    let slots: Vec<u16> = group.iter().collect();
    let work = cx.px.dirty_many(&slots, 1000)?;
    for (_, keys) in &work {
        n += keys.len() as u64;
    }
    metrics::get().keys_recopied.inc_by(n);
    if !work.is_empty() {
        let mut unlimited = Limiter::new(0);
        let lim = if limited { &mut cx.lim } else { &mut unlimited };
        let cs = copy::copy_many(&mut cx.src, &work, &mut cx.dst, cx.cfg.batch_keys, lim)?;
        cx.record_failures(&cs);
    }
    Ok(n)
}

/// Key counts of the slots of a group, one pipeline per source master
/// (a slot whose count cannot be read this way counts as non-empty: the
/// per-slot copy then follows MOVED and failovers).
fn group_counts(cx: &mut Ctx, g: &SlotSet) -> Vec<(u16, u64)> {
    let mut by_master: std::collections::BTreeMap<String, Vec<u16>> = Default::default();
    let mut out = Vec::new();
    for s in g.iter() {
        match cx.src.topo.master_of(s) {
            Some(m) => by_master.entry(m.addr.clone()).or_default().push(s),
            None => out.push((s, u64::MAX)),
        }
    }
    for (addr, slots) in by_master {
        let cmds: Vec<Vec<Vec<u8>>> = slots.iter().map(|s| cmd!["CLUSTER", "COUNTKEYSINSLOT", *s]).collect();
        match cx.src.conn(&addr).and_then(|c| c.pipeline(&cmds)) {
            Ok(r) => {
                for (s, r) in slots.iter().zip(r) {
                    out.push((*s, r.as_int().map(|n| n.max(0) as u64).unwrap_or(u64::MAX)));
                }
            }
            Err(_) => {
                cx.src.drop_conn(&addr);
                out.extend(slots.iter().map(|s| (*s, u64::MAX)));
            }
        }
    }
    out.sort_unstable();
    out
}

fn run_scan(cx: &mut Ctx, todo: &SlotSet) -> Result<()> {
    for g in groups(todo, cx.cfg.cutover_slots) {
        if crate::interrupted() {
            return Err(Error::Interrupted);
        }
        let ranges = g.ranges();
        cx.px.track(true, &ranges)?;
        if let Err(e) = scan_group(cx, &g) {
            // Stop recording for this group; resume copies it again.
            let _ = cx.px.track(false, &ranges);
            return Err(e);
        }
        cx.px.track(false, &ranges)?;
    }
    Ok(())
}

fn scan_group(cx: &mut Ctx, g: &SlotSet) -> Result<()> {
    let g = g.clone();
    {
        // Slots are copied in small sets (one source pipeline per master for
        // their key names and one for their values); the checkpoint is
        // written after every set. Empty slots cost nothing.
        let counts = group_counts(cx, &g);
        let nonempty: Vec<(u16, u64)> = counts.iter().copied().filter(|(_, n)| *n > 0).collect();
        for (s, _) in counts.iter().filter(|(_, n)| *n == 0) {
            cx.st.set(*s, state::COPIED);
        }
        copy_parallel(cx, &nonempty)?;
        cx.save()?;
        if cx.px.is_empty() {
            for s in g.iter() {
                cx.st.set(s, state::FLIPPED);
            }
            cx.save()?;
            return Ok(());
        }
        // Catch up with the writes made during the copy before pausing, so
        // the pause only covers the last few.
        for _ in 0..10 {
            if copy_dirty(cx, &g, true)? < 50 {
                break;
            }
        }
        cutover(cx, &g, &mut |cx: &mut Ctx, g: &SlotSet, _deadline: Instant| {
            // Paused: no write for these slots is forwarded any more, so one
            // full drain of every proxy's record is complete.
            copy_dirty(cx, g, false)?;
            Ok(true)
        })?;
    }
    Ok(())
}

/// Sets of slots copied together: up to 64 slots or about 4 batches of keys.
fn slot_sets(nonempty: &[(u16, u64)], batch: usize) -> Vec<&[(u16, u64)]> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < nonempty.len() {
        let mut j = i;
        let mut keys = 0u64;
        while j < nonempty.len() && j - i < 64 && (keys == 0 || keys + nonempty[j].1 <= 4 * batch as u64) {
            keys += nonempty[j].1.min(1 << 40);
            j += 1;
        }
        out.push(&nonempty[i..j]);
        i = j;
    }
    out
}

/// Threads (each with its own source and Ferrite connections) that make the
/// first copy of a group's slots.
const COPY_THREADS: usize = 4;

/// First copy of the non-empty slots of a group, by [`COPY_THREADS`]
/// threads, each with its own connections to the source and to Ferrite
/// (kept for the whole run): the sets of slots are dealt out in turn, so
/// source DUMPs and Ferrite RESTOREs overlap even when one master serves
/// the whole group. A slot belongs to one thread, so a key is still copied
/// by one thread at a time; the dirty re-copies start only after every
/// thread finished. The checkpoint is written (by this thread) after every
/// set.
fn copy_parallel(cx: &mut Ctx, nonempty: &[(u16, u64)]) -> Result<()> {
    let batch = cx.cfg.batch_keys;
    let sets = slot_sets(nonempty, batch);
    if sets.len() <= 1 {
        for set in sets {
            if crate::interrupted() {
                cx.save()?;
                return Err(Error::Interrupted);
            }
            let work = copy::many_slot_keys(&mut cx.src, set)?;
            let cs = copy::copy_many(&mut cx.src, &work, &mut cx.dst, batch, &mut cx.lim)?;
            cx.record_failures(&cs);
            for (s, _) in set {
                cx.st.set(*s, state::COPIED);
            }
            cx.save_light()?;
        }
        return Ok(());
    }
    while cx.pool.len() < COPY_THREADS {
        let mut src = Source::connect(cx.src.topo.all_nodes(), cx.cfg.source_auth.clone(), cx.cfg.timeout)?;
        src.retry_for = cx.cfg.retry_for;
        let dst = Target::connect(&cx.st.target, cx.cfg.timeout, &cx.cfg.target_auth)?;
        cx.pool.push((src, dst));
    }
    let per_sec = if cx.cfg.max_keys_per_sec == 0 { 0 } else { (cx.cfg.max_keys_per_sec / COPY_THREADS as u64).max(1) };
    let mut pool = std::mem::take(&mut cx.pool);
    let stop = std::sync::atomic::AtomicBool::new(false);
    let (tx, rx) = std::sync::mpsc::channel::<Result<(Vec<u16>, copy::CopyStats)>>();
    let mut first_err: Option<Error> = None;
    std::thread::scope(|sc| {
        for (w, (src, dst)) in pool.iter_mut().enumerate() {
            let tx = tx.clone();
            let (sets, stop) = (&sets, &stop);
            sc.spawn(move || {
                let res = (|| -> Result<()> {
                    let mut lim = Limiter::new(per_sec);
                    for set in sets.iter().skip(w).step_by(COPY_THREADS) {
                        if crate::interrupted() {
                            return Err(Error::Interrupted);
                        }
                        if stop.load(std::sync::atomic::Ordering::SeqCst) {
                            return Ok(());
                        }
                        let work = copy::many_slot_keys(src, set)?;
                        let cs = copy::copy_many(src, &work, dst, batch, &mut lim)?;
                        let _ = tx.send(Ok((set.iter().map(|(s, _)| *s).collect(), cs)));
                    }
                    Ok(())
                })();
                if let Err(e) = res {
                    let _ = tx.send(Err(e));
                }
            });
        }
        drop(tx);
        for msg in rx {
            match msg {
                Ok((slots, cs)) => {
                    cx.record_failures(&cs);
                    for s in slots {
                        cx.st.set(s, state::COPIED);
                    }
                    if let Err(e) = cx.save_light() {
                        stop.store(true, std::sync::atomic::Ordering::SeqCst);
                        first_err.get_or_insert(e);
                    }
                }
                Err(e) => {
                    stop.store(true, std::sync::atomic::Ordering::SeqCst);
                    first_err.get_or_insert(e);
                }
            }
        }
    });
    if first_err.is_none() {
        cx.pool = pool;
    }
    if let Some(e) = first_err {
        if matches!(e, Error::Interrupted) {
            cx.save()?;
        }
        return Err(e);
    }
    Ok(())
}

type Drain<'a> = dyn FnMut(&mut Ctx, &SlotSet, Instant) -> Result<bool> + 'a;

/// pause -> drain -> flip, at every proxy; retried (after resuming the
/// source) when the drain does not finish within `--drain-timeout-ms`.
fn cutover(cx: &mut Ctx, g: &SlotSet, drain: &mut Drain) -> Result<()> {
    let ranges = g.ranges();
    let started = Instant::now();
    let mut attempt = 0;
    while attempt < 5 {
        let t0 = Instant::now();
        cx.px.setslots("paused", false, &ranges)?;
        let t_paused = t0.elapsed();
        // A reshard of the source in progress for one of these slots: its keys are split between two source
        // nodes, which neither copy method follows. Do not flip; the slots stay on the source.
        match cx.src.slots_in_transit(g) {
            Ok(moving) if moving.is_empty() => {}
            Ok(moving) => {
                let _ = cx.px.setslots("upstream", false, &ranges);
                return Err(Error::Other(format!(
                    "source slots {:?} are being resharded in the source cluster (migrating/importing); they were \
                     not flipped. Let the reshard finish, then run `ferrite-migrate resume` (slots not flipped \
                     are copied again from their new owner)",
                    moving
                )));
            }
            Err(e) => {
                // The source cannot be read (a failover under way, say): resume on the source and try again
                // for up to --retry-for-s.
                cx.px.setslots("upstream", false, &ranges)?;
                if started.elapsed() > cx.cfg.retry_for {
                    return Err(e);
                }
                cx.note(format!(
                    "slots {}: source not readable before the flip ({e}); retrying",
                    ranges_string(&ranges)
                ));
                std::thread::sleep(Duration::from_secs(1));
                continue;
            }
        }
        attempt += 1;
        let deadline = Instant::now() + cx.cfg.drain_timeout;
        match drain(cx, g, deadline) {
            Ok(true) => {
                let t_drained = t0.elapsed();
                cx.px.setslots("ferrite", true, &ranges)?;
                let ms = t0.elapsed().as_secs_f64() * 1000.0;
                if ms > 50.0 {
                    cx.note(format!(
                        "slots {}: pause {ms:.1} ms (pause acknowledged after {:.1} ms, drained after {:.1} ms)",
                        ranges_string(&ranges),
                        t_paused.as_secs_f64() * 1000.0,
                        t_drained.as_secs_f64() * 1000.0
                    ));
                }
                metrics::get().pause_seconds.observe(ms / 1000.0);
                cx.st.pauses_ms.push(ms);
                for s in g.iter() {
                    cx.st.set(s, state::FLIPPED);
                }
                cx.save()?;
                return Ok(());
            }
            Ok(false) => {
                cx.px.setslots("upstream", false, &ranges)?;
                cx.note(format!(
                    "slots {}: Ferrite did not catch up within the drain timeout (attempt {}); resumed on the source",
                    ranges_string(&ranges),
                    attempt
                ));
                std::thread::sleep(Duration::from_millis(500));
            }
            Err(e) => {
                let _ = cx.px.setslots("upstream", false, &ranges);
                return Err(e);
            }
        }
    }
    Err(Error::Other(format!("slots {}: cutover failed 5 times", ranges_string(&ranges))))
}

fn run_replication(cx: &mut Ctx, todo: &SlotSet) -> Result<()> {
    if todo.is_empty() {
        return Ok(());
    }
    let filter = Arc::new(repl::Filter::new(todo));
    let masters: Vec<(String, SlotSet)> = cx
        .src
        .topo
        .masters
        .iter()
        .map(|m| (m.addr.clone(), m.slots.intersect(todo)))
        .filter(|(_, s)| !s.is_empty())
        .collect();
    let mut reps = Vec::new();
    for (addr, slots) in &masters {
        reps.push(repl::Replicator::start(repl::ReplConfig {
            master: addr.clone(),
            slots: slots.clone(),
            seeds: cx.src.topo.all_nodes(),
            source_auth: cx.cfg.source_auth.clone(),
            target: cx.st.target.clone(),
            target_auth: cx.cfg.target_auth.clone(),
            timeout: cx.cfg.timeout,
            retry_for: cx.cfg.retry_for,
            replica_port: cx.cfg.replica_port,
            disk_sync: cx.cfg.disk_sync,
            keep_rdb_compression: cx.cfg.keep_rdb_compression,
            filter: filter.clone(),
            clock_offset_ms: cx.dst.clock_offset_ms,
        }));
    }
    let start = cx.src.topo.clone();
    let res = replication_cutovers(cx, todo, &reps, &filter, &start);
    for r in &reps {
        r.stop();
    }
    for r in reps {
        r.join();
    }
    res
}

fn replication_cutovers(
    cx: &mut Ctx,
    todo: &SlotSet,
    reps: &[repl::Replicator],
    filter: &repl::Filter,
    start: &crate::topo::Topo,
) -> Result<()> {
    // Wait for every initial sync.
    loop {
        for r in reps {
            if let Some(e) = r.error() {
                return Err(Error::Other(format!("replication from {}: {e}", r.master())));
            }
        }
        if reps.iter().all(|r| r.loaded()) {
            break;
        }
        if crate::interrupted() {
            return Err(Error::Interrupted);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    for s in todo.iter() {
        cx.st.set(s, state::COPIED);
    }
    cx.save()?;
    for g in groups(todo, cx.cfg.cutover_slots) {
        if crate::interrupted() {
            return Err(Error::Interrupted);
        }
        let involved: Vec<usize> =
            reps.iter().enumerate().filter(|(_, r)| !r.slots().intersect(&g).is_empty()).map(|(i, _)| i).collect();
        let mut drain = |cx: &mut Ctx, g: &SlotSet, deadline: Instant| -> Result<bool> {
            // Each slot must still be served by the shard whose stream was applied for it (a failover inside
            // the shard is fine; a slot moved to another shard by a reshard is not: that shard's stream for
            // it was never applied).
            let now = crate::topo::discover(&cx.src.topo.all_nodes(), cx.cfg.timeout, &cx.cfg.source_auth)?;
            for r in reps.iter().filter(|r| !r.slots().intersect(g).is_empty()) {
                let master = r.master();
                if let Some(s) =
                    r.slots().intersect(g).iter().find(|&s| !crate::topo::same_shard(start, &now, s, &master))
                {
                    return Err(Error::Other(format!(
                        "source slot {s} moved away from the shard of {master} during the run (a reshard of the \
                         source); its slots were not flipped. Run `ferrite-migrate resume`: slots not flipped are \
                         copied again from their new owner"
                    )));
                }
            }
            for &i in &involved {
                let r = &reps[i];
                if let Some(e) = r.error() {
                    return Err(Error::Other(format!("replication from {}: {e}", r.master())));
                }
                let addr = r.master();
                let target = read_master_offset(cx, &addr)?;
                loop {
                    if r.applied() >= target {
                        break;
                    }
                    if let Some(e) = r.error() {
                        return Err(Error::Other(format!("replication from {}: {e}", r.master())));
                    }
                    if Instant::now() > deadline {
                        return Ok(false);
                    }
                    std::thread::sleep(Duration::from_micros(500));
                }
            }
            // From here on the stream's changes for these slots are not
            // applied any more (they would echo the mirrored writes).
            for s in g.iter() {
                filter.remove(s);
            }
            Ok(true)
        };
        cutover(cx, &g, &mut drain)?;
        // A failed cutover attempt above re-adds nothing: `drain` only
        // removes slots from the filter when it succeeded.
    }
    Ok(())
}

/// `master_repl_offset` of a source master.
fn read_master_offset(cx: &mut Ctx, addr: &str) -> Result<i64> {
    let r = cx.src.conn(addr).and_then(|c| c.cmd(&cmd!["INFO", "replication"]));
    let r = match r {
        Ok(r) => r.ok()?,
        Err(e) => {
            cx.src.drop_conn(addr);
            return Err(e);
        }
    };
    let text = r.as_str().unwrap_or_default();
    for line in text.lines() {
        if let Some(v) = line.strip_prefix("master_repl_offset:") {
            return v.trim().parse().map_err(|_| Error::Protocol("bad master_repl_offset".into()));
        }
    }
    Err(Error::Protocol(format!("{addr}: no master_repl_offset in INFO replication")))
}

/// `status`.
pub fn status(cfg: &Config) -> Result<serde_json::Value> {
    let st = State::load(&cfg.state)?;
    let scope = st.scope_set();
    let (p50, p99, pmax) = st.pause_stats().unwrap_or((0.0, 0.0, 0.0));
    let mut v = serde_json::json!({
        "state_file": cfg.state,
        "method": st.method,
        "source": st.source,
        "target": st.target,
        "proxies": st.proxies,
        "scope": st.scope,
        "slots_in_scope": scope.len(),
        "slots_pending": st.with(state::PENDING).len(),
        "slots_copied": st.with(state::COPIED).len(),
        "slots_flipped": st.with(state::FLIPPED).len(),
        "flipped": st.with(state::FLIPPED).to_ranges_string(),
        "epoch": st.epoch,
        "keys_copied": st.keys_copied,
        "bytes_copied": st.bytes_copied,
        "copy_errors": st.copy_errors,
        "pauses": st.pauses_ms.len(),
        "pause_p50_ms": p50,
        "pause_p99_ms": p99,
        "pause_max_ms": pmax,
        "finished": st.finished,
        "last_verify_mismatches": st.last_verify_mismatches,
        "started_ms": st.started_ms,
        "updated_ms": st.updated_ms,
    });
    let proxies = if cfg.proxies.is_empty() { st.proxies.clone() } else { cfg.proxies.clone() };
    if !proxies.is_empty() {
        let mut pv = Vec::new();
        match Proxies::connect(&proxies, cfg.proxy_admin_password.clone(), cfg.timeout) {
            Ok(mut px) => {
                for (i, addr) in proxies.iter().enumerate() {
                    let slots = px.slots(i).map(|runs| {
                        runs.iter().map(|r| serde_json::json!([r.start, r.end, r.state, r.mirror])).collect::<Vec<_>>()
                    });
                    pv.push(match slots {
                        Ok(s) => serde_json::json!({"addr": addr, "epoch": px.epoch, "slots": s}),
                        Err(e) => serde_json::json!({"addr": addr, "error": e.to_string()}),
                    });
                }
            }
            Err(e) => pv.push(serde_json::json!({"error": e.to_string()})),
        }
        v["proxy_tables"] = serde_json::Value::Array(pv);
    }
    Ok(v)
}

/// `rollback`: route slots back to the source (mirror off) at every proxy.
pub fn rollback(cfg: &Config) -> Result<String> {
    let mut st = State::load(&cfg.state)?;
    let proxies = if cfg.proxies.is_empty() { st.proxies.clone() } else { cfg.proxies.clone() };
    if proxies.is_empty() {
        return Err(Error::Config("no proxy to roll back (give --proxy)".into()));
    }
    let which = match &cfg.slots {
        Some(s) => s.clone(),
        None => st.with(state::FLIPPED),
    };
    if which.is_empty() {
        return Ok("nothing to roll back".into());
    }
    let mut px = Proxies::connect(&proxies, cfg.proxy_admin_password.clone(), cfg.timeout)?;
    px.epoch = px.epoch.max(st.epoch);
    let e = px.setslots("upstream", false, &which.ranges())?;
    for s in which.iter() {
        if st.get(s) != state::OUT {
            st.set(s, state::PENDING);
        }
    }
    st.epoch = e;
    st.finished = false;
    st.save(&cfg.state)?;
    Ok(format!("slots {} routed back to the source (epoch {e})", which.to_ranges_string()))
}

/// Print an outcome.
pub fn print_outcome(o: &Outcome, mode: Mode) {
    if mode == Mode::Json {
        println!("{}", serde_json::to_string(o).unwrap_or_default());
        return;
    }
    println!(
        "slots flipped {}/{}; keys copied {}, {:.1} MB; copy errors {}; {:.1} s",
        o.slots_flipped,
        o.slots_in_scope,
        o.keys_copied,
        o.bytes_copied as f64 / 1e6,
        o.copy_errors,
        o.elapsed_s
    );
    if o.pauses > 0 {
        println!(
            "pauses: {} cutovers, p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
            o.pauses, o.pause_p50_ms, o.pause_p99_ms, o.pause_max_ms
        );
    }
    for k in o.failed_keys.iter().take(20) {
        println!("failed: {k}");
    }
    for d in &o.diffs {
        println!("DIFF {d}");
    }
    for n in &o.notes {
        println!("note: {n}");
    }
    match o.verified {
        Some(true) => println!("verify: 0 differences"),
        Some(false) => println!("verify: {} differences", o.mismatches.unwrap_or(0)),
        None => println!("verify: skipped"),
    }
}
