//! Pub/sub for one client: a task that owns the client's subscription connections to both sides (Ferrite and one
//! upstream node for SUBSCRIBE/PSUBSCRIBE — PUBLISH is cluster-wide in Redis Cluster; the slot owners for
//! SSUBSCRIBE), subscribes on every side before confirming to the client (so no message published after the
//! confirmation is missed), answers the confirmations itself with the client's own counts, and forwards every
//! message from any side to the client unchanged.

use crate::backend::{DedConn, Side};
use crate::resp::{encode_cmd, Value};
use crate::Proxy;
use bytes::{BufMut, Bytes, BytesMut};
use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::net::tcp::OwnedWriteHalf;
use tokio::sync::{mpsc, oneshot};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    Channel,
    Pattern,
    Shard,
}

impl Kind {
    fn sub(self) -> &'static str {
        match self {
            Kind::Channel => "subscribe",
            Kind::Pattern => "psubscribe",
            Kind::Shard => "ssubscribe",
        }
    }
    fn unsub(self) -> &'static str {
        match self {
            Kind::Channel => "unsubscribe",
            Kind::Pattern => "punsubscribe",
            Kind::Shard => "sunsubscribe",
        }
    }
}

pub enum PsCmd {
    Sub {
        kind: Kind,
        names: Vec<Bytes>,
        reply: oneshot::Sender<Bytes>,
    },
    /// Empty `names`: everything of that kind.
    Unsub {
        kind: Kind,
        names: Vec<Bytes>,
        reply: oneshot::Sender<Bytes>,
    },
}

/// The client side's handle; dropping it ends the task and closes its backend connections.
pub struct PubSubHandle {
    pub tx: mpsc::UnboundedSender<PsCmd>,
    pub channels: usize,
    pub patterns: usize,
    pub shards: usize,
}

impl PubSubHandle {
    pub fn start(proxy: Arc<Proxy>, resp3: bool, push: mpsc::UnboundedSender<Bytes>) -> PubSubHandle {
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(run(proxy, resp3, push, rx));
        PubSubHandle { tx, channels: 0, patterns: 0, shards: 0 }
    }
    /// Subscriptions counted by SUBSCRIBE/PSUBSCRIBE replies.
    pub fn count(&self) -> usize {
        self.channels + self.patterns
    }
}

enum Event {
    Frame(usize, Bytes),
    Closed(usize),
}

struct BConn {
    wr: OwnedWriteHalf,
    /// Subscription frames sent and not yet confirmed.
    awaiting: usize,
}

/// Subscription confirmation frame as the client expects it.
pub fn confirm(resp3: bool, kind: &str, name: Option<&[u8]>, count: usize) -> Bytes {
    let mut b = BytesMut::new();
    b.put_slice(if resp3 { b">3\r\n" } else { b"*3\r\n" });
    b.put_slice(&crate::router::bulk(kind.as_bytes()));
    match name {
        Some(n) => b.put_slice(&crate::router::bulk(n)),
        None => b.put_slice(if resp3 { b"_\r\n" } else { b"$-1\r\n" }),
    }
    b.put_slice(format!(":{count}\r\n").as_bytes());
    b.freeze()
}

struct State {
    proxy: Arc<Proxy>,
    resp3: bool,
    push: mpsc::UnboundedSender<Bytes>,
    ev_tx: mpsc::UnboundedSender<Event>,
    conns: HashMap<usize, BConn>,
    /// (side, addr) -> conn id
    by_addr: HashMap<(Side, Arc<str>), usize>,
    next_id: usize,
    subs: HashMap<Kind, BTreeSet<Bytes>>,
    /// Shard channel -> conn ids holding it.
    shard_conns: HashMap<Bytes, Vec<usize>>,
    /// The nodes plain channels and patterns are subscribed on (kept while their connections live, so a topology
    /// change never subscribes twice on one side).
    broad: Vec<(Side, Arc<str>)>,
    /// A subscription connection died: re-subscribe on the next tick.
    broken: bool,
}

async fn run(
    proxy: Arc<Proxy>,
    resp3: bool,
    push: mpsc::UnboundedSender<Bytes>,
    mut rx: mpsc::UnboundedReceiver<PsCmd>,
) {
    let (ev_tx, mut ev_rx) = mpsc::unbounded_channel();
    let mut st = State {
        proxy,
        resp3,
        push,
        ev_tx,
        conns: HashMap::new(),
        by_addr: HashMap::new(),
        next_id: 0,
        subs: HashMap::new(),
        shard_conns: HashMap::new(),
        broad: Vec::new(),
        broken: false,
    };
    let mut repair = tokio::time::interval(Duration::from_millis(500));
    loop {
        tokio::select! {
            _ = repair.tick(), if st.broken => st.repair().await,
            cmd = rx.recv() => {
                let Some(cmd) = cmd else { break };
                st.command(cmd, &mut ev_rx).await;
            }
            ev = ev_rx.recv() => {
                let Some(ev) = ev else { break };
                let was = st.broken;
                st.event(ev);
                if st.broken && !was {
                    // Give the topology refresh a moment, then re-subscribe (the 500 ms tick retries after).
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    st.repair().await;
                }
            }
        }
    }
    st.proxy.pubsub_unregister(&st.subs);
}

impl State {
    /// Targets for plain channels and patterns: Ferrite's first node and one upstream master, chosen once and kept
    /// while their connections live.
    fn broad_targets(&mut self) -> Vec<(Side, Arc<str>)> {
        if !self.broad.is_empty() {
            return self.broad.clone();
        }
        let v = self.pick_broad();
        self.broad = v.clone();
        v
    }

    fn pick_broad(&self) -> Vec<(Side, Arc<str>)> {
        let mut v = Vec::new();
        if let Some(a) = self.proxy.ferrite.masters().into_iter().next() {
            v.push((Side::Ferrite, a));
        }
        if let Some(u) = &self.proxy.upstream {
            if let Some(a) = u.masters().into_iter().next() {
                v.push((Side::Upstream, a));
            }
        }
        v
    }

    fn shard_targets(&self, ch: &[u8]) -> Vec<(Side, Arc<str>)> {
        let slot = ferrite_commands::key_hash_slot(ch);
        let mut v = Vec::new();
        if let Some(a) = self.proxy.ferrite.node(slot) {
            v.push((Side::Ferrite, a));
        }
        if let Some(u) = &self.proxy.upstream {
            if let Some(a) = u.node(slot) {
                v.push((Side::Upstream, a));
            }
        }
        v
    }

    async fn conn_for(&mut self, side: Side, addr: &Arc<str>) -> Option<usize> {
        if let Some(&id) = self.by_addr.get(&(side, addr.clone())) {
            if self.conns.contains_key(&id) {
                return Some(id);
            }
        }
        let c = match DedConn::open(addr, self.resp3, &self.proxy.pool.settings, side).await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(backend = %addr, side = side.name(), error = %e, "pub/sub connection failed");
                return None;
            }
        };
        let id = self.next_id;
        self.next_id += 1;
        let DedConn { stream, mut buf, .. } = c;
        let (mut rd, wr) = stream.into_split();
        let ev = self.ev_tx.clone();
        tokio::spawn(async move {
            use tokio::io::AsyncReadExt;
            let mut sc = crate::resp::FrameScanner::default();
            loop {
                loop {
                    match sc.scan(&buf) {
                        Ok(Some(n)) => {
                            sc.reset();
                            if ev.send(Event::Frame(id, buf.split_to(n).freeze())).is_err() {
                                return;
                            }
                        }
                        Ok(None) => break,
                        Err(_) => {
                            let _ = ev.send(Event::Closed(id));
                            return;
                        }
                    }
                }
                buf.reserve(16 * 1024);
                match rd.read_buf(&mut buf).await {
                    Ok(0) | Err(_) => {
                        let _ = ev.send(Event::Closed(id));
                        return;
                    }
                    Ok(_) => {}
                }
            }
        });
        self.conns.insert(id, BConn { wr, awaiting: 0 });
        self.by_addr.insert((side, addr.clone()), id);
        Some(id)
    }

    /// A frame from a backend: messages go to the client, confirmations are counted.
    fn event(&mut self, ev: Event) {
        match ev {
            Event::Frame(id, f) => {
                if f.first() == Some(&b'-') {
                    // An error answers a (S)SUBSCRIBE we sent: `-MOVED` means the slot's owner changed before we
                    // knew; the subscription is re-made on the new owner.
                    if let Some(c) = self.conns.get_mut(&id) {
                        c.awaiting = c.awaiting.saturating_sub(1);
                    }
                    if let Some((slot, to)) = crate::router::parse_redirect(&f) {
                        if let Some((side, addr)) = self.conn_target(id) {
                            if let Some(topo) = self.proxy.topo_of(side) {
                                topo.moved(slot, &crate::router::fix_host(&to, Some(&addr)));
                            }
                        }
                        self.drop_shard_conn(id, |ch| ferrite_commands::key_hash_slot(ch) == slot);
                    } else {
                        tracing::warn!(error = %String::from_utf8_lossy(&f).trim_end(), "pub/sub backend refused a subscription");
                    }
                    return;
                }
                let v = Value::parse(&f);
                let items = v.as_ref().map(|v| v.items()).unwrap_or_default();
                let kind = items.first().and_then(|k| k.bytes().cloned());
                match kind.as_deref() {
                    Some(b"message" | b"pmessage" | b"smessage") => {
                        let _ = self.push.send(f);
                    }
                    Some(b"sunsubscribe") => {
                        // Redis drops shard subscriptions of a slot it no longer serves (a reshard or failover)
                        // with an unsolicited `sunsubscribe`: not one we asked for if the client still holds the
                        // channel and this connection still carries it. Re-subscribe where the slot is now.
                        let ch = items.get(1).and_then(|c| c.bytes().cloned());
                        let ours = ch.as_ref().is_some_and(|ch| {
                            self.subs.get(&Kind::Shard).is_some_and(|s| s.contains(ch))
                                && self.shard_conns.get(ch).is_some_and(|v| v.contains(&id))
                        });
                        if ours {
                            if let Some(ch) = ch {
                                self.drop_shard_conn(id, |c| c == &ch[..]);
                            }
                            if let Some((side, _)) = self.conn_target(id) {
                                if let Some(topo) = self.proxy.topo_of(side) {
                                    topo.trigger_refresh();
                                }
                            }
                        } else if let Some(c) = self.conns.get_mut(&id) {
                            c.awaiting = c.awaiting.saturating_sub(1);
                        }
                    }
                    Some(_) => {
                        if let Some(c) = self.conns.get_mut(&id) {
                            c.awaiting = c.awaiting.saturating_sub(1);
                        }
                    }
                    None => {}
                }
            }
            Event::Closed(id) => {
                self.conns.remove(&id);
                let lost: Vec<(Side, Arc<str>)> =
                    self.by_addr.iter().filter(|(_, v)| **v == id).map(|(k, _)| k.clone()).collect();
                self.by_addr.retain(|_, v| *v != id);
                self.broad.retain(|t| !lost.contains(t));
                for v in self.shard_conns.values_mut() {
                    v.retain(|c| *c != id);
                }
                self.broken = true;
                tracing::warn!("pub/sub backend connection closed; re-subscribing");
            }
        }
    }

    /// The node a subscription connection goes to.
    fn conn_target(&self, id: usize) -> Option<(Side, Arc<str>)> {
        self.by_addr.iter().find(|(_, v)| **v == id).map(|(k, _)| k.clone())
    }

    /// Forget that connection `id` carries the shard channels matching `which`, and re-subscribe them soon.
    fn drop_shard_conn(&mut self, id: usize, which: impl Fn(&[u8]) -> bool) {
        let mut any = false;
        for (ch, v) in self.shard_conns.iter_mut() {
            if which(ch) && v.contains(&id) {
                v.retain(|c| *c != id);
                any = true;
            }
        }
        if any {
            self.broken = true;
        }
    }

    /// Re-create lost subscription connections and subscribe again (messages published meanwhile are lost, as
    /// with a reconnecting Redis client).
    async fn repair(&mut self) {
        let mut ok = true;
        let chans: Vec<Bytes> = self.subs.get(&Kind::Channel).map(|s| s.iter().cloned().collect()).unwrap_or_default();
        let pats: Vec<Bytes> = self.subs.get(&Kind::Pattern).map(|s| s.iter().cloned().collect()).unwrap_or_default();
        if !chans.is_empty() || !pats.is_empty() {
            let want = self.pick_broad();
            for t in want {
                if self.broad.contains(&t) {
                    continue;
                }
                let Some(id) = self.conn_for(t.0, &t.1).await else {
                    ok = false;
                    continue;
                };
                for (kind, names) in [(Kind::Channel, &chans), (Kind::Pattern, &pats)] {
                    if !names.is_empty() {
                        let mut args: Vec<&[u8]> = vec![kind.sub().as_bytes()];
                        args.extend(names.iter().map(|c| &c[..]));
                        self.send(id, &encode_cmd(&args), names.len()).await;
                    }
                }
                self.broad.push(t);
            }
        }
        let shards: Vec<Bytes> = self.subs.get(&Kind::Shard).map(|s| s.iter().cloned().collect()).unwrap_or_default();
        for ch in shards {
            for (side, addr) in self.shard_targets(&ch) {
                let have = self.by_addr.get(&(side, addr.clone())).copied();
                if have.is_some_and(|id| self.shard_conns.get(&ch).is_some_and(|v| v.contains(&id))) {
                    continue;
                }
                let Some(id) = self.conn_for(side, &addr).await else {
                    ok = false;
                    continue;
                };
                self.send(id, &encode_cmd(&[&b"SSUBSCRIBE"[..], &ch]), 1).await;
                self.shard_conns.entry(ch.clone()).or_default().push(id);
            }
        }
        self.broken = !ok;
    }

    async fn send(&mut self, id: usize, data: &[u8], confirmations: usize) {
        if let Some(c) = self.conns.get_mut(&id) {
            if c.wr.write_all(data).await.is_ok() {
                c.awaiting += confirmations;
            } else {
                self.conns.remove(&id);
            }
        }
    }

    /// Wait (bounded) until every connection confirmed what was sent, still forwarding messages.
    async fn settle(&mut self, ev_rx: &mut mpsc::UnboundedReceiver<Event>) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while self.conns.values().any(|c| c.awaiting > 0) {
            match tokio::time::timeout_at(deadline, ev_rx.recv()).await {
                Ok(Some(ev)) => self.event(ev),
                _ => {
                    tracing::warn!("pub/sub backend did not confirm within 5s");
                    break;
                }
            }
        }
    }

    async fn command(&mut self, cmd: PsCmd, ev_rx: &mut mpsc::UnboundedReceiver<Event>) {
        match cmd {
            PsCmd::Sub { kind, names, reply } => {
                let mut out = BytesMut::new();
                // Subscribe on the backends first.
                let mut per_conn: HashMap<usize, Vec<Bytes>> = HashMap::new();
                for n in &names {
                    let targets = if kind == Kind::Shard { self.shard_targets(n) } else { self.broad_targets() };
                    for (side, addr) in targets {
                        if let Some(id) = self.conn_for(side, &addr).await {
                            per_conn.entry(id).or_default().push(n.clone());
                            if kind == Kind::Shard {
                                let v = self.shard_conns.entry(n.clone()).or_default();
                                if !v.contains(&id) {
                                    v.push(id);
                                }
                            }
                        }
                    }
                }
                for (id, chans) in per_conn {
                    let mut args: Vec<&[u8]> = vec![kind.sub().as_bytes()];
                    args.extend(chans.iter().map(|c| &c[..]));
                    self.send(id, &encode_cmd(&args), chans.len()).await;
                }
                self.settle(ev_rx).await;
                for n in names {
                    let set = self.subs.entry(kind).or_default();
                    if set.insert(n.clone()) {
                        self.proxy.pubsub_register(kind, &n, 1);
                    }
                    let count = self.count(kind);
                    out.put_slice(&confirm(self.resp3, kind.sub(), Some(&n), count));
                }
                let _ = reply.send(out.freeze());
            }
            PsCmd::Unsub { kind, names, reply } => {
                let names: Vec<Bytes> = if names.is_empty() {
                    self.subs.get(&kind).map(|s| s.iter().cloned().collect()).unwrap_or_default()
                } else {
                    names
                };
                let mut out = BytesMut::new();
                if names.is_empty() {
                    out.put_slice(&confirm(self.resp3, kind.unsub(), None, self.count(kind)));
                    let _ = reply.send(out.freeze());
                    return;
                }
                let ids: Vec<usize> = if kind == Kind::Shard {
                    let mut v: Vec<usize> =
                        names.iter().flat_map(|n| self.shard_conns.remove(n).unwrap_or_default()).collect();
                    v.sort();
                    v.dedup();
                    v
                } else {
                    let t = self.broad_targets();
                    t.iter().filter_map(|k| self.by_addr.get(k).copied()).collect()
                };
                for id in ids {
                    let mut args: Vec<&[u8]> = vec![kind.unsub().as_bytes()];
                    args.extend(names.iter().map(|c| &c[..]));
                    self.send(id, &encode_cmd(&args), names.len()).await;
                }
                self.settle(ev_rx).await;
                for n in names {
                    if self.subs.get_mut(&kind).is_some_and(|s| s.remove(&n)) {
                        self.proxy.pubsub_register(kind, &n, -1);
                    }
                    out.put_slice(&confirm(self.resp3, kind.unsub(), Some(&n), self.count(kind)));
                }
                let _ = reply.send(out.freeze());
            }
        }
    }

    fn count(&self, kind: Kind) -> usize {
        let n = |k| self.subs.get(&k).map_or(0, |s: &BTreeSet<Bytes>| s.len());
        match kind {
            Kind::Shard => n(Kind::Shard),
            _ => n(Kind::Channel) + n(Kind::Pattern),
        }
    }
}
