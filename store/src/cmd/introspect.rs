//! SLOWLOG and LATENCY (included from `cmd/connection.rs`, whose command
//! table lists them). The data lives in `Stats`, filled by dispatch after
//! every command: SLOWLOG entries follow Redis's trimming and redaction
//! rules; LATENCY events are recorded for commands slower than
//! `latency-monitor-threshold` (`command` / `fast-command`) and for the
//! active expiry of one cron tick (`expire-cycle`, in server.rs); other
//! Redis events (fork, aof, eviction...) are not measured.
//! LATENCY HISTOGRAM buckets are powers of two microseconds, like Redis's.

use crate::cmd::{eq_ic, CmdError, CmdResult, Cx};

const SLOWLOG_HELP: &[&str] = &[
    "SLOWLOG <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
    "GET [<count>]",
    "    Return top <count> entries from the slowlog (default: 10, -1 mean all).",
    "    Entries are made of:",
    "    id, timestamp, time in microseconds, arguments array, client IP and port,",
    "    client name",
    "LEN",
    "    Return the length of the slowlog.",
    "RESET",
    "    Reset the slowlog.",
    "HELP",
    "    Prints this help.",
];

const LATENCY_HELP: &[&str] = &[
    "LATENCY <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
    "DOCTOR",
    "    Return a human readable latency analysis report.",
    "GRAPH <event>",
    "    Return an ASCII latency graph for the <event> class.",
    "HISTORY <event>",
    "    Return time-latency samples for the <event> class.",
    "LATEST",
    "    Return the latest latency samples for all events.",
    "RESET [<event> ...]",
    "    Reset latency data of one or more <event> classes.",
    "    (default: reset all data for all event classes)",
    "HISTOGRAM [COMMAND ...]",
    "    Return a cumulative distribution of latencies in the format of a histogram for the specified command names.",
    "    If no commands are specified then all histograms are replied.",
    "HELP",
    "    Prints this help.",
];

fn subcommand_syntax(cx: &Cx) -> CmdError {
    let sub: String = String::from_utf8_lossy(cx.arg(1)).chars().take(128).collect();
    let cmd = String::from_utf8_lossy(cx.arg(0)).to_ascii_uppercase();
    CmdError::err(format!("unknown subcommand or wrong number of arguments for '{sub}'. Try {cmd} HELP."))
}

pub fn slowlog(cx: &mut Cx) -> CmdResult {
    let sub = cx.arg(1);
    let argc = cx.argc();
    if eq_ic(sub, b"help") && argc == 2 {
        crate::cmd::server::reply_help(cx, SLOWLOG_HELP);
    } else if eq_ic(sub, b"reset") && argc == 2 {
        cx.srv.stats.slowlog.lock().entries.clear();
        cx.out.ok();
    } else if eq_ic(sub, b"len") && argc == 2 {
        let n = cx.srv.stats.slowlog.lock().entries.len();
        cx.out.int(n as i64);
    } else if eq_ic(sub, b"get") && (argc == 2 || argc == 3) {
        let mut count = 10usize;
        if argc == 3 {
            let n = crate::cmd::parse_int(cx.arg(2))
                .map_err(|_| CmdError::err("count should be greater than or equal to -1"))?;
            if n < -1 {
                return Err(CmdError::err("count should be greater than or equal to -1"));
            }
            count = if n == -1 { usize::MAX } else { n as usize };
        }
        let l = cx.srv.stats.slowlog.lock();
        let n = l.entries.len().min(count);
        cx.out.array(n);
        for e in l.entries.iter().take(n) {
            cx.out.array(6);
            cx.out.int(e.id as i64);
            cx.out.int(e.time);
            cx.out.int(e.duration_us as i64);
            cx.out.array(e.args.len());
            for a in &e.args {
                cx.out.bulk(a);
            }
            cx.out.bulk(e.peer.as_bytes());
            cx.out.bulk(&e.name);
        }
    } else {
        return Err(subcommand_syntax(cx));
    }
    Ok(())
}

/// One command's `{calls, histogram_usec}` map.
fn histogram_reply(cx: &mut Cx, st: &crate::stats::CmdStat) {
    let calls = st.calls();
    cx.out.map(2);
    cx.out.bulk(b"calls");
    cx.out.int(calls as i64);
    cx.out.bulk(b"histogram_usec");
    let mut cum = 0u64;
    let mut rows = Vec::new();
    for (i, n) in st.hist().into_iter().enumerate() {
        if n > 0 {
            cum += n;
            rows.push((1u64 << i, cum));
        }
    }
    cx.out.map(rows.len());
    for (k, v) in rows {
        cx.out.int(k as i64);
        cx.out.int(v as i64);
    }
}

fn latency_histogram(cx: &mut Cx) -> CmdResult {
    let all: Vec<(String, std::sync::Arc<crate::stats::CmdStat>)> = {
        let m = cx.srv.stats.cmds.read();
        let mut v: Vec<_> = m.iter().filter(|(_, s)| s.calls() > 0).map(|(k, s)| (k.clone(), s.clone())).collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    };
    let mut chosen: Vec<&(String, std::sync::Arc<crate::stats::CmdStat>)> = Vec::new();
    if cx.argc() == 2 {
        chosen.extend(all.iter());
    } else {
        for j in 2..cx.argc() {
            let name = String::from_utf8_lossy(cx.arg(j)).to_ascii_lowercase();
            // A known command (or container|subcommand) only.
            let known = match name.split_once('|') {
                Some((c, s)) => {
                    cx.srv.registry.get(c.as_bytes()).is_some_and(|cmd| cmd.meta.subcommand(s.as_bytes()).is_some())
                }
                None => cx.srv.registry.get(name.as_bytes()).is_some(),
            };
            if !known {
                continue;
            }
            for e in all.iter() {
                let hit =
                    e.0 == name || (!name.contains('|') && e.0.strip_prefix(&name).is_some_and(|r| r.starts_with('|')));
                if hit && !chosen.iter().any(|c| std::ptr::eq(*c, e)) {
                    chosen.push(e);
                }
            }
        }
    }
    cx.out.map(chosen.len());
    for (name, st) in chosen {
        cx.out.bulk(name.as_bytes());
        histogram_reply(cx, st);
    }
    Ok(())
}

pub fn latency(cx: &mut Cx) -> CmdResult {
    let sub = cx.arg(1);
    let argc = cx.argc();
    if eq_ic(sub, b"history") && argc == 3 {
        let ev = cx.arg(2);
        let m = cx.srv.stats.latency.lock();
        match m.iter().find(|(k, _)| k.as_bytes() == ev) {
            None => cx.out.array(0),
            Some((_, e)) => {
                cx.out.array(e.samples.len());
                for (t, ms) in &e.samples {
                    cx.out.array(2);
                    cx.out.int(*t);
                    cx.out.int(*ms as i64);
                }
            }
        }
    } else if eq_ic(sub, b"graph") && argc == 3 {
        let ev = cx.arg(2);
        let m = cx.srv.stats.latency.lock();
        let Some((name, e)) = m.iter().find(|(k, _)| k.as_bytes() == ev) else {
            return Err(CmdError::err(format!("No samples available for event '{}'", String::from_utf8_lossy(ev))));
        };
        let hi = e.samples.iter().map(|s| s.1).max().unwrap_or(0);
        let lo = e.samples.iter().map(|s| s.1).min().unwrap_or(0);
        let mut g = format!("{name} - high {hi} ms, low {lo} ms (all time high {} ms)\n", e.max);
        g.push_str(&"-".repeat(80));
        g.push('\n');
        for (_, ms) in &e.samples {
            let h = if hi == 0 { 0 } else { (ms * 4).div_ceil(hi) };
            g.push_str(&format!("{}\n", "#".repeat(h as usize)));
        }
        cx.out.verbatim(b"txt", g.as_bytes());
    } else if eq_ic(sub, b"latest") && argc == 2 {
        let m = cx.srv.stats.latency.lock();
        let mut evs: Vec<_> = m.iter().filter(|(_, e)| !e.samples.is_empty()).collect();
        evs.sort_by_key(|(k, _)| **k);
        cx.out.array(evs.len());
        for (name, e) in evs {
            let (t, ms) = *e.samples.back().unwrap_or(&(0, 0));
            cx.out.array(4);
            cx.out.bulk(name.as_bytes());
            cx.out.int(t);
            cx.out.int(ms as i64);
            cx.out.int(e.max as i64);
        }
    } else if eq_ic(sub, b"doctor") && argc == 2 {
        let m = cx.srv.stats.latency.lock();
        let text = if m.is_empty() {
            "Dave, no latency spike was observed during the lifetime of this Redis instance, not in the slightest bit. I honestly think you ought to sleep tonight.\n".to_string()
        } else {
            let mut t = String::from("Dave, I have observed latency spikes in this Redis instance. You don't mind talking about it, do you Dave?\n\n");
            let mut evs: Vec<_> = m.iter().collect();
            evs.sort_by_key(|(k, _)| **k);
            for (i, (name, e)) in evs.iter().enumerate() {
                let avg = e.samples.iter().map(|s| s.1).sum::<u64>() / (e.samples.len().max(1) as u64);
                t.push_str(&format!(
                    "{}. {name}: {} latency spikes (average {avg}ms, mean deviation 0ms, period 0 sec). Worst all time event {}ms.\n",
                    i + 1,
                    e.samples.len(),
                    e.max
                ));
            }
            t
        };
        cx.out.verbatim(b"txt", text.as_bytes());
    } else if eq_ic(sub, b"reset") && argc >= 2 {
        let mut m = cx.srv.stats.latency.lock();
        let n = if argc == 2 {
            let n = m.len();
            m.clear();
            n
        } else {
            let mut n = 0;
            for j in 2..argc {
                let ev = cx.arg(j);
                let k = m.keys().find(|k| k.as_bytes() == ev).copied();
                if let Some(k) = k {
                    m.remove(k);
                    n += 1;
                }
            }
            n
        };
        drop(m);
        cx.out.int(n as i64);
    } else if eq_ic(sub, b"histogram") {
        return latency_histogram(cx);
    } else if eq_ic(sub, b"help") && argc == 2 {
        crate::cmd::server::reply_help(cx, LATENCY_HELP);
    } else {
        return Err(subcommand_syntax(cx));
    }
    Ok(())
}
