//! `FERRITE.PROXY <sub> ...`: the admin protocol the migration tool drives (documented in `proxy/ADMIN.md`).

use crate::router::{ready, Fut};
use crate::slots::{parse_range, State};
use crate::Proxy;
use bytes::Bytes;
use ferrite_resp::ReplyBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

fn e(msg: &str) -> Bytes {
    crate::resp::error(msg)
}

fn ranges(args: &[Bytes]) -> Result<Vec<(u16, u16)>, Bytes> {
    if args.is_empty() {
        return Err(e("ERR wrong number of arguments: at least one slot range is required"));
    }
    args.iter()
        .map(|a| {
            parse_range(a).ok_or_else(|| {
                e(&format!("ERR invalid slot range '{}' (N or N-M, 0 <= N <= M <= 16383)", String::from_utf8_lossy(a)))
            })
        })
        .collect()
}

const HELP: &[&str] = &[
    "FERRITE.PROXY <subcommand> [<arg> ...]. Subcommands are:",
    "AUTH <password>",
    "    Authenticate for admin commands (when the proxy has an admin password).",
    "EPOCH",
    "    Return the current slot-table epoch.",
    "SLOTS",
    "    Return [start, end, state, mirror] for every run of slots with equal state and mirror flag.",
    "SETSLOTS <epoch> <upstream|ferrite|paused> <mirror 0|1> <range> [<range> ...]",
    "    Atomically set the state and mirror flag of slot ranges (N or N-M); returns the epoch.",
    "TRACK <on|off> <range> [<range> ...]",
    "    Record the keys written in the slots (read them with DIRTY).",
    "DIRTY <slot> <count>",
    "    Return and forget up to <count> recorded keys of a slot.",
    "STATS",
    "    Return admin counters.",
    "HELP",
    "    Print this help.",
];

/// Handle an admin command: `Err(bytes)` is an immediate reply, `Ok(fut)` a deferred one.
pub fn handle(proxy: Arc<Proxy>, args: &[Bytes], resp3: bool, loopback: bool, authed: &mut bool) -> Result<Fut, Bytes> {
    let Some(sub) = args.get(1) else {
        return Err(e("ERR wrong number of arguments for 'ferrite.proxy' command"));
    };
    let sub = String::from_utf8_lossy(sub).to_ascii_lowercase();
    let rest = &args[2..];
    if sub == "auth" {
        let [pw] = rest else { return Err(e("ERR wrong number of arguments for 'ferrite.proxy|auth' command")) };
        return match &proxy.cfg.admin_password {
            None => Err(e("ERR no admin password is configured (admin commands are open to loopback clients)")),
            Some(p) if p.as_bytes() == &pw[..] => {
                *authed = true;
                Err(Bytes::from_static(b"+OK\r\n"))
            }
            Some(_) => {
                tracing::warn!("admin authentication failed");
                Err(e("WRONGPASS invalid admin password"))
            }
        };
    }
    let allowed = match &proxy.cfg.admin_password {
        Some(_) => *authed,
        None => loopback,
    };
    if !allowed {
        return Err(e("NOPERM admin authentication required"));
    }
    let mut o = ReplyBuf::new(resp3);
    let slots = &proxy.slots;
    match sub.as_str() {
        "help" => {
            o.array(HELP.len());
            for l in HELP {
                o.simple(l.as_bytes());
            }
        }
        "epoch" => {
            if !rest.is_empty() {
                return Err(e("ERR wrong number of arguments for 'ferrite.proxy|epoch' command"));
            }
            o.int(slots.epoch() as i64);
        }
        "slots" => {
            let runs = slots.runs();
            o.array(runs.len());
            for (a, b, st, m) in runs {
                o.array(4);
                o.int(a as i64);
                o.int(b as i64);
                o.bulk(st.name().as_bytes());
                o.int(m as i64);
            }
        }
        "setslots" => {
            if rest.len() < 4 {
                return Err(e("ERR wrong number of arguments for 'ferrite.proxy|setslots' command"));
            }
            let epoch = std::str::from_utf8(&rest[0])
                .ok()
                .filter(|s| s.bytes().all(|c| c.is_ascii_digit()))
                .and_then(|s| s.parse::<u64>().ok())
                .ok_or_else(|| e("ERR epoch must be a non-negative integer"))?;
            let state = State::parse(&rest[1]).ok_or_else(|| e("ERR state must be upstream, ferrite or paused"))?;
            let mirror = match &rest[2][..] {
                b"0" => false,
                b"1" => true,
                _ => return Err(e("ERR mirror must be 0 or 1")),
            };
            let r = ranges(&rest[3..])?;
            if state == State::Upstream && proxy.upstream.is_none() {
                return Err(e("ERR no upstream cluster is configured"));
            }
            let (epoch, paused) = slots.setslots(epoch, state, mirror, r).map_err(|m| e(&m))?;
            let p = proxy.clone();
            return Ok(Box::pin(async move {
                p.slots.wait_drained(&paused, Duration::from_secs(2)).await;
                crate::router::int_reply(epoch as i64)
            }));
        }
        "track" => {
            if rest.len() < 2 {
                return Err(e("ERR wrong number of arguments for 'ferrite.proxy|track' command"));
            }
            let on = match String::from_utf8_lossy(&rest[0]).to_ascii_lowercase().as_str() {
                "on" => true,
                "off" => false,
                _ => return Err(e("ERR TRACK expects on or off")),
            };
            let r = ranges(&rest[1..])?;
            slots.set_tracking(on, &r);
            o.ok();
        }
        "dirty" => {
            let [slot, count] = rest else {
                return Err(e("ERR wrong number of arguments for 'ferrite.proxy|dirty' command"));
            };
            let slot = parse_range(slot).filter(|(a, b)| a == b).map(|r| r.0).ok_or_else(|| e("ERR invalid slot"))?;
            let count = ferrite_resp::num::parse_i64(count)
                .filter(|&c| c >= 0)
                .ok_or_else(|| e("ERR count must be a non-negative integer"))?;
            let keys = slots.take_dirty(slot, count.min(1 << 20) as usize);
            o.array(keys.len());
            for k in keys {
                o.bulk(&k);
            }
        }
        "stats" => {
            let m = &proxy.metrics;
            let st = &slots.stats;
            let requests: u64 = sum_counter(&m.requests);
            let errors: u64 = sum_counter(&m.errors);
            let pairs: Vec<(&str, i64)> = vec![
                ("requests", requests as i64),
                ("errors", errors as i64),
                ("paused_now", slots.paused_now() as i64),
                ("pause_timeouts", st.pause_timeouts.load(Ordering::Relaxed) as i64),
                ("pause_rejected", st.pause_rejected.load(Ordering::Relaxed) as i64),
                ("pause_released", st.pause_released.load(Ordering::Relaxed) as i64),
                ("mirror_ok", st.mirror_ok.load(Ordering::Relaxed) as i64),
                ("mirror_failures", st.mirror_failures.load(Ordering::Relaxed) as i64),
                ("mirror_inflight", m.mirror_inflight.get()),
                ("epoch", slots.epoch() as i64),
                ("setslots", st.setslots.load(Ordering::Relaxed) as i64),
                ("dirty_keys", m.dirty_keys.get()),
                ("client_connections", m.client_connections.get()),
            ];
            o.map(pairs.len());
            for (k, v) in pairs {
                o.bulk(k.as_bytes());
                o.int(v);
            }
        }
        _ => return Err(e(&format!("ERR unknown subcommand '{sub}'. Try FERRITE.PROXY HELP."))),
    }
    Ok(ready(o.buf.freeze()))
}

fn sum_counter(c: &prometheus::IntCounterVec) -> u64 {
    use prometheus::core::Collector;
    c.collect()
        .iter()
        .flat_map(|mf| mf.get_metric().iter().map(|m| m.get_counter().get_value() as u64).collect::<Vec<_>>())
        .sum()
}
