//! Pub/sub commands: (P|S)SUBSCRIBE, (P|S)UNSUBSCRIBE, PUBLISH, SPUBLISH
//! and PUBSUB introspection. Delivery goes through `crate::pubsub`.

use super::{CmdImpl, CmdResult, Cx, Lock};
use crate::client::Client;
use crate::glob::glob_match;
use crate::server::Server;
use bytes::Bytes;
use std::sync::atomic::Ordering;

pub static COMMANDS: &[CmdImpl] = &[
    CmdImpl { name: "subscribe", handler: subscribe, lock: Lock::None },
    CmdImpl { name: "unsubscribe", handler: unsubscribe, lock: Lock::None },
    CmdImpl { name: "psubscribe", handler: psubscribe, lock: Lock::None },
    CmdImpl { name: "punsubscribe", handler: punsubscribe, lock: Lock::None },
    CmdImpl { name: "ssubscribe", handler: ssubscribe, lock: Lock::None },
    CmdImpl { name: "sunsubscribe", handler: sunsubscribe, lock: Lock::None },
    CmdImpl { name: "publish", handler: publish, lock: Lock::None },
    CmdImpl { name: "spublish", handler: spublish, lock: Lock::None },
    CmdImpl { name: "pubsub", handler: pubsub, lock: Lock::None },
];

/// Drop every subscription of `client` (RESET, disconnect).
pub fn unsubscribe_all(srv: &Server, client: &mut Client) {
    for ch in client.channels.drain() {
        srv.pubsub.unsubscribe(&ch, client.id);
    }
    for p in client.patterns.drain() {
        srv.pubsub.punsubscribe(&p, client.id);
    }
    for ch in client.shard_channels.drain() {
        srv.pubsub.sunsubscribe(&ch, client.id);
    }
    sync_counts(client);
}

fn sync_counts(client: &Client) {
    let h = &client.handle;
    h.sub.store(client.channels.len(), Ordering::Relaxed);
    h.psub.store(client.patterns.len(), Ordering::Relaxed);
    h.ssub.store(client.shard_channels.len(), Ordering::Relaxed);
    let subscribed = !client.channels.is_empty() || !client.patterns.is_empty() || !client.shard_channels.is_empty();
    h.tx.out.set_pubsub(subscribed);
}

/// `[kind, name, count]` as a push (RESP3) or array (RESP2).
fn confirm(cx: &mut Cx, kind: &[u8], name: Option<&[u8]>, count: usize) {
    cx.out.push(3);
    cx.out.bulk(kind);
    match name {
        Some(n) => cx.out.bulk(n),
        None => cx.out.null(),
    }
    cx.out.int(count as i64);
}

#[derive(Clone, Copy)]
enum Kind {
    Channel,
    Pattern,
    Shard,
}

fn subscribe_generic(cx: &mut Cx, kind: Kind) -> CmdResult {
    let srv = cx.srv;
    for i in 1..cx.argc() {
        let name: Bytes = cx.args[i].clone();
        let id = cx.client.id;
        let tx = cx.client.handle.tx.clone();
        let (label, count): (&[u8], usize) = match kind {
            Kind::Channel => {
                if cx.client.channels.insert(name.clone()) {
                    srv.pubsub.subscribe(&name, id, &tx);
                }
                (b"subscribe", cx.client.sub_count())
            }
            Kind::Pattern => {
                if cx.client.patterns.insert(name.clone()) {
                    srv.pubsub.psubscribe(&name, id, &tx);
                }
                (b"psubscribe", cx.client.sub_count())
            }
            Kind::Shard => {
                if cx.client.shard_channels.insert(name.clone()) {
                    srv.pubsub.ssubscribe(&name, id, &tx);
                }
                (b"ssubscribe", cx.client.shard_channels.len())
            }
        };
        confirm(cx, label, Some(&name), count);
    }
    sync_counts(cx.client);
    Ok(())
}

fn unsubscribe_generic(cx: &mut Cx, kind: Kind) -> CmdResult {
    let srv = cx.srv;
    let label: &[u8] = match kind {
        Kind::Channel => b"unsubscribe",
        Kind::Pattern => b"punsubscribe",
        Kind::Shard => b"sunsubscribe",
    };
    let names: Vec<Bytes> = if cx.argc() > 1 {
        cx.args[1..].to_vec()
    } else {
        let mut v: Vec<Bytes> = match kind {
            Kind::Channel => cx.client.channels.iter().cloned().collect(),
            Kind::Pattern => cx.client.patterns.iter().cloned().collect(),
            Kind::Shard => cx.client.shard_channels.iter().cloned().collect(),
        };
        v.sort();
        if v.is_empty() {
            let count = match kind {
                Kind::Shard => cx.client.shard_channels.len(),
                _ => cx.client.sub_count(),
            };
            confirm(cx, label, None, count);
            return Ok(());
        }
        v
    };
    let id = cx.client.id;
    for name in names {
        let count = match kind {
            Kind::Channel => {
                if cx.client.channels.remove(&name) {
                    srv.pubsub.unsubscribe(&name, id);
                }
                cx.client.sub_count()
            }
            Kind::Pattern => {
                if cx.client.patterns.remove(&name) {
                    srv.pubsub.punsubscribe(&name, id);
                }
                cx.client.sub_count()
            }
            Kind::Shard => {
                if cx.client.shard_channels.remove(&name) {
                    srv.pubsub.sunsubscribe(&name, id);
                }
                cx.client.shard_channels.len()
            }
        };
        confirm(cx, label, Some(&name), count);
    }
    sync_counts(cx.client);
    Ok(())
}

fn subscribe(cx: &mut Cx) -> CmdResult {
    subscribe_generic(cx, Kind::Channel)
}
fn psubscribe(cx: &mut Cx) -> CmdResult {
    subscribe_generic(cx, Kind::Pattern)
}
fn ssubscribe(cx: &mut Cx) -> CmdResult {
    subscribe_generic(cx, Kind::Shard)
}
fn unsubscribe(cx: &mut Cx) -> CmdResult {
    unsubscribe_generic(cx, Kind::Channel)
}
fn punsubscribe(cx: &mut Cx) -> CmdResult {
    unsubscribe_generic(cx, Kind::Pattern)
}
fn sunsubscribe(cx: &mut Cx) -> CmdResult {
    unsubscribe_generic(cx, Kind::Shard)
}

fn publish(cx: &mut Cx) -> CmdResult {
    let n = cx.srv.pubsub.publish(&cx.args[1], &cx.args[2]);
    cx.srv.stats.pubsub_messages.fetch_add(1, Ordering::Relaxed);
    cx.out.int(n as i64);
    Ok(())
}

fn spublish(cx: &mut Cx) -> CmdResult {
    let n = cx.srv.pubsub.spublish(&cx.args[1], &cx.args[2]);
    cx.out.int(n as i64);
    Ok(())
}

fn pubsub(cx: &mut Cx) -> CmdResult {
    let sub = cx.arg(1).to_ascii_lowercase();
    let ps = &cx.srv.pubsub;
    match sub.as_slice() {
        b"channels" | b"shardchannels" => {
            let map = if sub == b"channels" { &ps.channels } else { &ps.shard_channels };
            let pat = if cx.argc() > 2 { Some(cx.arg(2)) } else { None };
            let names: Vec<Bytes> = map
                .read()
                .iter()
                .filter(|(_, subs)| !subs.is_empty())
                .filter(|(ch, _)| pat.is_none_or(|p| glob_match(p, ch, false)))
                .map(|(ch, _)| ch.clone())
                .collect();
            cx.out.array(names.len());
            for n in names {
                cx.out.bulk(&n);
            }
        }
        b"numsub" | b"shardnumsub" => {
            let map = if sub == b"numsub" { &ps.channels } else { &ps.shard_channels };
            let counts: Vec<(Bytes, usize)> = {
                let m = map.read();
                cx.args[2..].iter().map(|ch| (ch.clone(), m.get(ch).map_or(0, |s| s.len()))).collect()
            };
            cx.out.array(counts.len() * 2);
            for (ch, n) in counts {
                cx.out.bulk(&ch);
                cx.out.int(n as i64);
            }
        }
        b"numpat" => {
            let n = ps.patterns.read().len();
            cx.out.int(n as i64);
        }
        b"help" => {
            let lines: &[&[u8]] = &[
                b"PUBSUB <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
                b"CHANNELS [<pattern>]",
                b"    Return the currently active channels matching a <pattern> (default: '*').",
                b"NUMPAT",
                b"    Return number of subscriptions to patterns.",
                b"NUMSUB [<channel> ...]",
                b"    Return the number of subscribers for the specified channels, excluding",
                b"    pattern subscriptions(default: no channels).",
                b"SHARDCHANNELS [<pattern>]",
                b"    Return the currently active shard level channels matching a <pattern> (default: '*').",
                b"SHARDNUMSUB [<shardchannel> ...]",
                b"    Return the number of subscribers for the specified shard level channel(s)",
                b"HELP",
                b"    Prints this help.",
            ];
            cx.out.array(lines.len());
            for l in lines {
                cx.out.simple(l);
            }
        }
        _ => unreachable_sub(cx)?,
    }
    Ok(())
}

fn unreachable_sub(cx: &mut Cx) -> CmdResult {
    Err(super::CmdError::err(format!("unknown subcommand '{}'. Try PUBSUB HELP.", String::from_utf8_lossy(cx.arg(1)))))
}
