//! Routing of one request: to the owner of its slot (following `-MOVED`/`-ASK`, retrying `-TRYAGAIN`, waiting on
//! paused slots, mirroring acknowledged writes), split per slot and merged (MGET, MSET, DEL, UNLINK, EXISTS,
//! TOUCH), or fanned out to every node (DBSIZE, KEYS, SCAN, FLUSHALL, SCRIPT ...).
//!
//! Dispatch (choosing the node and queueing the bytes on its connection) is synchronous, so requests of one client
//! reach each backend connection in the order the client sent them; only waiting for the reply is asynchronous.

use crate::backend::{BackendError, Job, PostAction, Side};
use crate::resp::{self, encode_cmd, FrameScanner, Value};
use crate::slots::{Enqueue, State, Waiter};
use crate::Proxy;
use bytes::{BufMut, Bytes, BytesMut};
use ferrite_commands::key_hash_slot;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

pub type Fut = Pin<Box<dyn Future<Output = Bytes> + Send + 'static>>;

pub fn ready(b: Bytes) -> Fut {
    Box::pin(std::future::ready(b))
}

/// A request as the router needs it.
#[derive(Clone)]
pub struct Req {
    pub data: Bytes,
    pub name: &'static str,
    pub write: bool,
    pub readonly: bool,
    pub resp3: bool,
    /// Key names (for TRACK).
    pub keys: Arc<[Bytes]>,
}

pub fn side_of(s: State) -> Side {
    match s {
        State::Ferrite => Side::Ferrite,
        _ => Side::Upstream,
    }
}

type Dispatched = Result<(Arc<str>, oneshot::Receiver<Result<Bytes, BackendError>>), (Option<Arc<str>>, BackendError)>;

/// `-TRYAGAIN` for a paused slot.
pub fn tryagain(slot: u16) -> Bytes {
    resp::error(&format!("TRYAGAIN slot {slot} is paused for migration"))
}

pub(crate) fn parse_redirect(frame: &[u8]) -> Option<(u16, String)> {
    let line = std::str::from_utf8(frame.get(1..frame.len().checked_sub(2)?)?).ok()?;
    let mut it = line.split(' ');
    it.next()?;
    let slot: u16 = it.next()?.parse().ok()?;
    let addr = it.next()?;
    // `-MOVED 3999 :6381` (empty host) means the node we asked.
    Some((slot, addr.to_string()))
}

impl Proxy {
    fn topo(&self, side: Side) -> Option<&Arc<crate::topology::Topology>> {
        match side {
            Side::Upstream => self.upstream.as_ref(),
            Side::Ferrite => Some(&self.ferrite),
        }
    }

    /// Which of a node's connections carries a slot: with `--ferrite-connections N`, Ferrite slot `s` uses lane
    /// `s % N` (requests and mirror writes of one slot always share a connection); keyless requests use lane 0.
    #[inline]
    pub(crate) fn lane(&self, side: Side, slot: Option<u16>) -> u16 {
        match (side, slot) {
            (Side::Ferrite, Some(s)) if self.pool.settings.ferrite_lanes > 1 => s % self.pool.settings.ferrite_lanes,
            _ => 0,
        }
    }

    /// May a request for `slot` (in state `entry`) skip the general path: the slot is not paused, not mirrored,
    /// and (for a write) its keys are not tracked for a migration's catch-up?
    #[inline]
    pub(crate) fn plainly_owned(&self, slot: u16, entry: crate::slots::SlotEntry, write: bool) -> bool {
        entry.state != State::Paused && !entry.mirror && !(write && self.slots.is_tracked(slot))
    }

    /// The node serving `slot` on `side` and the pool's connection to it (the fast path's lookup).
    #[inline]
    pub fn slot_node(&self, side: Side, slot: u16) -> Option<Arc<str>> {
        self.topo(side)?.node(slot)
    }

    /// The pool connection to `addr` for `slot`'s lane.
    #[inline]
    pub fn slot_conn(&self, side: Side, slot: u16, addr: &Arc<str>, resp3: bool) -> Option<crate::backend::Conn> {
        self.pool.get(addr, resp3, side, self.lane(side, Some(slot))).ok()
    }

    /// Queue `req` on the connection to `to` (or the slot's node on `side`); with `asking`, prefixed by ASKING.
    fn dispatch(
        self: &Arc<Self>,
        side: Side,
        slot: Option<u16>,
        req: &Req,
        mirror: bool,
        to: Option<(Arc<str>, bool)>,
    ) -> Dispatched {
        let (addr, asking) = match to {
            Some(t) => t,
            None => {
                let Some(topo) = self.topo(side) else {
                    return Err((None, BackendError::NotSent(format!("no {} backend is configured", side.name()))));
                };
                match slot.and_then(|s| topo.node(s)) {
                    Some(a) => (a, false),
                    None => {
                        topo.trigger_refresh();
                        return Err((None, BackendError::NotSent("no node serves this slot yet".into())));
                    }
                }
            }
        };
        let conn = match self.pool.get(&addr, req.resp3, side, self.lane(side, slot)) {
            Ok(c) => c,
            Err(e) => return Err((Some(addr), e)),
        };
        let post = slot.and_then(|s| self.post_action(side, s, req, mirror));
        let (tx, rx) = oneshot::channel();
        let (data, replies) = if asking {
            let mut b = BytesMut::with_capacity(req.data.len() + 20);
            b.put_slice(b"*1\r\n$6\r\nASKING\r\n");
            b.put_slice(&req.data);
            (b.freeze(), 2)
        } else {
            (req.data.clone(), 1)
        };
        conn.send(Job { data, replies, tx, post });
        Ok((addr, rx))
    }

    /// What to do once the owner acknowledged a write: record tracked keys, mirror to the other side.
    fn post_action(self: &Arc<Self>, side: Side, slot: u16, req: &Req, mirror: bool) -> Option<PostAction> {
        if !req.write {
            return None;
        }
        let track = self.slots.is_tracked(slot);
        if !mirror && !track {
            return None;
        }
        let me = self.clone();
        let req = req.clone();
        Some(Box::new(move |_reply: &Bytes| {
            if track {
                for k in req.keys.iter() {
                    if key_hash_slot(k) == slot {
                        me.slots.record_dirty(slot, k);
                    }
                }
            }
            if mirror {
                me.mirror_send(side.other(), slot, req.data.clone(), req.resp3);
            }
        }))
    }

    /// Send an acknowledged write to the other side. Called in the owner's acknowledgement order, so the mirror
    /// connection receives writes of a slot in the same order.
    pub fn mirror_send(self: &Arc<Self>, target: Side, slot: u16, data: Bytes, resp3: bool) {
        self.mirror_send_n(target, slot, data, resp3, 1)
    }

    /// Route a single-slot request to its owner and return the reply bytes.
    pub fn exec_slot(self: &Arc<Self>, slot: u16, req: Req) -> Fut {
        let (entry, guard) = self.slots.route(slot);
        if entry.state == State::Paused {
            drop(guard);
            return self.exec_paused(slot, req);
        }
        let side = side_of(entry.state);
        self.metrics.requests.with_label_values(&[req.name, side.name()]).inc();
        let first = self.dispatch(side, Some(slot), &req, entry.mirror, None);
        let me = self.clone();
        Box::pin(async move {
            let r = me.finish(side, Some(slot), req, entry.mirror, first).await;
            drop(guard);
            r
        })
    }

    fn exec_paused(self: &Arc<Self>, slot: u16, req: Req) -> Fut {
        let (tx, mut rx) = oneshot::channel::<(Side, bool, Dispatched)>();
        let me = self.clone();
        let r2 = req.clone();
        let id = self.slots.new_waiter_id();
        let w = Waiter {
            id,
            dispatch: Box::new(move |owner: State| {
                let side = side_of(owner);
                let mirror = me.slots.load().slots[slot as usize].mirror;
                let d = me.dispatch(side, Some(slot), &r2, mirror, None);
                let _ = tx.send((side, mirror, d));
            }),
        };
        match self.slots.enqueue(slot, w) {
            (Enqueue::Queued, _) => {
                let me = self.clone();
                Box::pin(async move {
                    let t0 = Instant::now();
                    // The slot itself resumes after the pause timeout (checked every 50 ms); the request's own
                    // bound leaves room for that.
                    let wait = me.slots.pause_timeout + Duration::from_millis(250);
                    let got = match tokio::time::timeout(wait, &mut rx).await {
                        Ok(r) => r.ok(),
                        Err(_) => {
                            if me.slots.cancel(slot, id) {
                                me.slots.stats.pause_timeouts.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                                me.metrics.pause_timeouts.inc();
                                me.metrics.pause_wait.observe(t0.elapsed().as_secs_f64());
                                me.metrics.errors.with_label_values(&[req.name, "paused", "proxy"]).inc();
                                return tryagain(slot);
                            }
                            rx.await.ok()
                        }
                    };
                    me.metrics.pause_wait.observe(t0.elapsed().as_secs_f64());
                    let Some((side, mirror, d)) = got else {
                        return resp::error("ERR internal proxy error: paused request lost");
                    };
                    me.metrics.requests.with_label_values(&[req.name, side.name()]).inc();
                    me.finish(side, Some(slot), req, mirror, d).await
                })
            }
            (Enqueue::NotPaused(_), _) => self.exec_slot(slot, req),
            (Enqueue::Full, _) => {
                self.metrics.errors.with_label_values(&[req.name, "paused", "proxy"]).inc();
                ready(tryagain(slot))
            }
        }
    }

    /// Wait for the reply of a dispatched request, following redirects and retrying what is safe to retry.
    async fn finish(
        self: &Arc<Self>,
        side: Side,
        slot: Option<u16>,
        req: Req,
        mirror: bool,
        first: Dispatched,
    ) -> Bytes {
        self.finish_with(side, slot, req, mirror, first, None).await
    }

    /// Go on with a request whose first reply (or failure) from `addr` already arrived through a client's inbox
    /// (the fast path): follow the redirect, retry, or turn the failure into the client's error reply.
    pub async fn finish_got(
        self: &Arc<Self>,
        side: Side,
        slot: u16,
        req: Req,
        addr: Arc<str>,
        got: Result<Bytes, BackendError>,
    ) -> Bytes {
        let unused = Err((None, BackendError::NotSent(String::new())));
        self.finish_with(side, Some(slot), req, false, unused, Some((Some(addr), got))).await
    }

    async fn finish_with(
        self: &Arc<Self>,
        side: Side,
        slot: Option<u16>,
        req: Req,
        mirror: bool,
        first: Dispatched,
        mut got: Option<(Option<Arc<str>>, Result<Bytes, BackendError>)>,
    ) -> Bytes {
        let mut d = first;
        let start = Instant::now();
        let budget = self.cfg.request_timeout.min(Duration::from_secs(8));
        let mut redirects = 0;
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            let (addr, res) = if let Some(g) = got.take() {
                g
            } else {
                match d {
                    Ok((addr, rx)) => {
                        let r = match tokio::time::timeout(self.cfg.request_timeout, rx).await {
                            Ok(Ok(r)) => r,
                            Ok(Err(_)) => Err(BackendError::Lost("connection dropped".into())),
                            Err(_) => {
                                self.metrics.errors.with_label_values(&[req.name, side.name(), "upstream"]).inc();
                                return resp::error(&format!(
                                    "ERR {} node {addr} timed out after {} ms",
                                    side.name(),
                                    self.cfg.request_timeout.as_millis()
                                ));
                            }
                        };
                        (Some(addr), r)
                    }
                    Err((addr, e)) => (addr, Err(e)),
                }
            };
            let retry_ok = start.elapsed() < budget;
            match res {
                Ok(frame) => {
                    if frame.first() != Some(&b'-') {
                        return frame;
                    }
                    let topo = self.topo(side);
                    if frame.starts_with(b"-MOVED ") && redirects < 8 {
                        if let (Some((s, to)), Some(topo)) = (parse_redirect(&frame), topo) {
                            redirects += 1;
                            self.metrics.redirects.with_label_values(&["moved"]).inc();
                            let to = fix_host(&to, addr.as_deref());
                            topo.moved(s, &to);
                            d = self.dispatch(side, slot, &req, mirror, Some((Arc::from(to.as_str()), false)));
                            continue;
                        }
                    }
                    if frame.starts_with(b"-ASK ") && redirects < 8 {
                        if let Some((_, to)) = parse_redirect(&frame) {
                            redirects += 1;
                            self.metrics.redirects.with_label_values(&["ask"]).inc();
                            let to = fix_host(&to, addr.as_deref());
                            d = self.dispatch(side, slot, &req, mirror, Some((Arc::from(to.as_str()), true)));
                            continue;
                        }
                    }
                    if (frame.starts_with(b"-TRYAGAIN") || frame.starts_with(b"-CLUSTERDOWN")) && retry_ok {
                        if let Some(t) = topo {
                            t.trigger_refresh();
                        }
                        tokio::time::sleep(Duration::from_millis(25)).await;
                        d = self.dispatch(side, slot, &req, mirror, None);
                        continue;
                    }
                    if frame.starts_with(b"-NOAUTH") || frame.starts_with(b"-WRONGPASS") {
                        // The backend refuses the proxy itself: say so (the client is authenticated here).
                        self.metrics.errors.with_label_values(&[req.name, side.name(), "upstream"]).inc();
                        return resp::error(&format!(
                            "ERR {} backend {} refused the proxy's credentials ({}); check --{}-user/--{}-password",
                            side.name(),
                            addr.as_deref().unwrap_or("?"),
                            String::from_utf8_lossy(&frame[1..frame.len().saturating_sub(2)]),
                            side.name(),
                            side.name()
                        ));
                    }
                    self.metrics.errors.with_label_values(&[req.name, side.name(), "backend"]).inc();
                    return frame;
                }
                Err(BackendError::NotSent(e)) if retry_ok => {
                    if let Some(t) = self.topo(side) {
                        t.trigger_refresh();
                    }
                    let _ = e;
                    tokio::time::sleep(Duration::from_millis(20 * attempt.min(10) as u64)).await;
                    d = self.dispatch(side, slot, &req, mirror, None);
                    continue;
                }
                Err(BackendError::Lost(_)) if req.readonly && retry_ok && attempt < 4 => {
                    if let Some(t) = self.topo(side) {
                        t.trigger_refresh();
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    d = self.dispatch(side, slot, &req, mirror, None);
                    continue;
                }
                Err(e) => {
                    self.metrics.errors.with_label_values(&[req.name, side.name(), "upstream"]).inc();
                    let node = addr.as_deref().unwrap_or("?");
                    return match (side, &e) {
                        (Side::Upstream, BackendError::NotSent(t)) => {
                            resp::error(&format!("CLUSTERDOWN upstream node {node} is unreachable: {t}"))
                        }
                        (Side::Ferrite, BackendError::NotSent(t)) => {
                            resp::error(&format!("ERR ferrite backend {node} is unreachable: {t}"))
                        }
                        (_, BackendError::Lost(t)) => resp::error(&format!(
                            "ERR {} node {node} connection lost before the reply (the command may have run): {t}",
                            side.name()
                        )),
                    };
                }
            }
        }
    }

    /// Send `req` to one node (no slot: fan-out and keyless commands); redirects are not followed.
    pub fn exec_node(self: &Arc<Self>, side: Side, addr: Arc<str>, req: Req) -> Fut {
        self.metrics.requests.with_label_values(&[req.name, side.name()]).inc();
        let first = self.dispatch(side, None, &req, false, Some((addr, false)));
        let me = self.clone();
        Box::pin(async move {
            // Retries of a keyless command go to the same node.
            let mut d = first;
            let start = Instant::now();
            loop {
                match d {
                    Ok((addr, rx)) => {
                        return match tokio::time::timeout(me.cfg.request_timeout, rx).await {
                            Ok(Ok(Ok(f))) => f,
                            Ok(Ok(Err(e))) => resp::error(&format!("ERR {} node {addr}: {}", side.name(), e.text())),
                            Ok(Err(_)) => resp::error(&format!("ERR {} node {addr}: connection dropped", side.name())),
                            Err(_) => resp::error(&format!("ERR {} node {addr} timed out", side.name())),
                        }
                    }
                    Err((Some(addr), BackendError::NotSent(_))) if start.elapsed() < Duration::from_secs(2) => {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        d = me.dispatch(side, None, &req, false, Some((addr, false)));
                    }
                    Err((addr, e)) => {
                        let what = if side == Side::Upstream { "CLUSTERDOWN upstream" } else { "ERR ferrite" };
                        return resp::error(&format!(
                            "{what} node {} is unreachable: {}",
                            addr.as_deref().unwrap_or("?"),
                            e.text()
                        ));
                    }
                }
            }
        })
    }

    /// Every node a fan-out reaches: Ferrite's, then the upstream masters (sorted; stable for SCAN cursors).
    pub fn fanout_targets(&self) -> Vec<(Side, Arc<str>)> {
        let mut v: Vec<(Side, Arc<str>)> = self.ferrite.masters().into_iter().map(|a| (Side::Ferrite, a)).collect();
        if let Some(u) = &self.upstream {
            v.extend(u.masters().into_iter().map(|a| (Side::Upstream, a)));
        }
        v
    }

    /// Node for keyless commands that go to one node: the first upstream master while any slot is routed
    /// upstream, else Ferrite.
    pub fn default_target(&self) -> (Side, Option<Arc<str>>) {
        if let Some(u) = &self.upstream {
            let t = self.slots.load();
            if t.slots.iter().any(|e| side_of(e.state) == Side::Upstream) {
                return (Side::Upstream, u.masters().into_iter().next());
            }
        }
        (Side::Ferrite, self.ferrite.masters().into_iter().next())
    }

    pub fn exec_default(self: &Arc<Self>, req: Req) -> Fut {
        match self.default_target() {
            (side, Some(addr)) => self.exec_node(side, addr, req),
            (side, None) => {
                if let Some(t) = self.topo(side) {
                    t.trigger_refresh();
                }
                ready(resp::error(&format!("CLUSTERDOWN no {} node is known yet", side.name())))
            }
        }
    }

    /// The sides that own at least one slot (a paused slot counts for the side it was paused from).
    pub fn owning_sides(&self) -> (bool, bool) {
        let t = self.slots.load();
        let (mut up, mut fe) = (false, false);
        for e in t.slots.iter() {
            let owner = if e.state == State::Paused { e.from } else { e.state };
            match side_of(owner) {
                Side::Upstream => up = true,
                Side::Ferrite => fe = true,
            }
            if up && fe {
                break;
            }
        }
        (up, fe)
    }

    /// Fan a request out to every node of the sides that own slots (DBSIZE: exact while one side owns
    /// everything) and merge the replies.
    pub fn exec_fanout_owning(self: &Arc<Self>, req: Req, merge: Merge) -> Fut {
        let (up, fe) = self.owning_sides();
        let targets: Vec<(Side, Arc<str>)> = self
            .fanout_targets()
            .into_iter()
            .filter(|(s, _)| match s {
                Side::Upstream => up,
                Side::Ferrite => fe,
            })
            .collect();
        self.fanout_to(targets, req, merge)
    }

    /// Fan a request out to every node and merge the replies with `merge`.
    pub fn exec_fanout(self: &Arc<Self>, req: Req, merge: Merge) -> Fut {
        let targets = self.fanout_targets();
        self.fanout_to(targets, req, merge)
    }

    fn fanout_to(self: &Arc<Self>, targets: Vec<(Side, Arc<str>)>, req: Req, merge: Merge) -> Fut {
        let futs: Vec<(Side, Fut)> = targets.into_iter().map(|(s, a)| (s, self.exec_node(s, a, req.clone()))).collect();
        let me = self.clone();
        Box::pin(async move {
            let (sides, futs): (Vec<Side>, Vec<Fut>) = futs.into_iter().unzip();
            let replies = futures_util::future::join_all(futs).await;
            me.merge(merge, &sides, replies, req.resp3)
        })
    }

    fn owned_by(&self, side: Side, key: &[u8]) -> bool {
        let e = self.slots.load().slots[key_hash_slot(key) as usize];
        let owner = if e.state == State::Paused { e.from } else { e.state };
        side_of(owner) == side
    }

    fn merge(&self, merge: Merge, sides: &[Side], replies: Vec<Bytes>, _resp3: bool) -> Bytes {
        // A side that does not know the command at all (Ferrite without scripting, say) is skipped when another
        // node answered it.
        let unknown = |r: &Bytes| r.starts_with(b"-ERR unknown command") || r.starts_with(b"-ERR unknown subcommand");
        let any_ok = replies.iter().any(|r| r.first() != Some(&b'-'));
        if let Some(e) = replies.iter().find(|r| r.first() == Some(&b'-') && !(any_ok && unknown(r))) {
            if !matches!(merge, Merge::FirstOk) {
                return e.clone();
            }
        }
        let (sides, replies): (Vec<Side>, Vec<Bytes>) =
            sides.iter().copied().zip(replies).filter(|(_, r)| !(any_ok && unknown(r))).unzip();
        let sides = &sides[..];
        match merge {
            Merge::AllOk => replies.into_iter().next().unwrap_or_else(|| Bytes::from_static(resp::OK)),
            Merge::FirstOk => replies
                .iter()
                .find(|r| r.first() != Some(&b'-'))
                .or(replies.first())
                .cloned()
                .unwrap_or_else(|| resp::error("ERR no backend")),
            Merge::SumInt => {
                let mut n = 0i64;
                for r in &replies {
                    n += Value::parse(r).and_then(|v| v.int()).unwrap_or(0);
                }
                int_reply(n)
            }
            Merge::Keys => {
                let mut items: Vec<Bytes> = Vec::new();
                for (r, s) in replies.iter().zip(sides) {
                    for el in split_aggregate(r).unwrap_or_default() {
                        if let Some(k) = Value::parse(&el).as_ref().and_then(|v| v.bytes()) {
                            if self.owned_by(*s, k) {
                                items.push(el);
                            }
                        }
                    }
                }
                array_of(&items)
            }
        }
    }

    /// `SCAN` across nodes, in slot order (0 starts and ends the iteration).
    ///
    /// The proxy's cursor is `backend_cursor << 31 | node_fingerprint << 15 | side << 14 | slot`: the iteration is at
    /// position (`side`, `slot`) (Ferrite = 0 first, then upstream = 1) and scans the node serving `slot` on `side`,
    /// returning its keys of slots `>= slot` that `side` owns. When that node's scan ends, the next position is the
    /// first later slot served by another node (slots the node serves before it were covered by its scan). A
    /// backend cursor only means something on the node that issued it (Redis seeds its hash function per process),
    /// so when another node serves the position's slot now (a failover, a reshard) that node is scanned from the
    /// start. So a key present for the whole iteration is returned even when a reshard moves its slot, before the
    /// iteration reaches it, to a node already scanned: that node is scanned again from the slot on. Keys may repeat,
    /// as SCAN allows; a node whose slots are split into several runs is scanned once per run.
    pub fn exec_scan(self: &Arc<Self>, args: &[Bytes], req: Req) -> Fut {
        let Some(c) = std::str::from_utf8(&args[1])
            .ok()
            .and_then(|s| s.parse::<u64>().ok())
            .filter(|_| args[1].iter().all(|c| c.is_ascii_digit()))
        else {
            return ready(resp::error("ERR invalid cursor"));
        };
        let (side, slot, addr, inner) = if c == 0 {
            match self.scan_position(Side::Ferrite, None, None) {
                Some((side, slot, a)) => (side, slot, a, 0),
                None => return ready(resp::error("CLUSTERDOWN no backend node is known yet")),
            }
        } else {
            let side = if c & (1 << 14) != 0 { Side::Upstream } else { Side::Ferrite };
            let (slot, fp, inner) = ((c & 0x3fff) as u16, ((c >> 15) & 0xffff) as u16, c >> 31);
            match self.topo(side).and_then(|t| t.node(slot)) {
                // The node that issued the backend cursor still serves the slot: go on there.
                Some(a) if node_fingerprint(&a) == fp => (side, slot, a, inner),
                Some(a) => (side, slot, a, 0),
                // Nobody serves the slot now: go on at the next slot that is served.
                None => match self.scan_position(side, Some(slot), None) {
                    Some((side, slot, a)) => (side, slot, a, 0),
                    None => return ready(empty_scan_page()),
                },
            }
        };
        let fp = node_fingerprint(&addr);
        let mut sub: Vec<Bytes> = args.to_vec();
        sub[1] = Bytes::from(inner.to_string());
        let sreq = Req { data: encode_cmd(&sub), ..req };
        let fut = self.exec_node(side, addr.clone(), sreq);
        let me = self.clone();
        let side_bit = |s: Side| if s == Side::Upstream { 1u64 << 14 } else { 0 };
        Box::pin(async move {
            let r = fut.await;
            if r.first() == Some(&b'-') {
                return r;
            }
            let Some(v) = Value::parse(&r) else { return resp::error("ERR internal proxy error: bad SCAN reply") };
            let (Some(next), Some(keys)) = (v.items().first().and_then(|x| x.int()), v.items().get(1)) else {
                return resp::error("ERR internal proxy error: bad SCAN reply");
            };
            let next = next as u64;
            let cursor = if next != 0 {
                if next > (u64::MAX >> 31) {
                    return resp::error("ERR internal proxy error: backend SCAN cursor too large");
                }
                (next << 31) | (fp as u64) << 15 | side_bit(side) | slot as u64
            } else {
                // The map as it is now, after this node's scan.
                match me.scan_position(side, Some(slot), Some(&addr)) {
                    Some((s, sl, a)) => (node_fingerprint(&a) as u64) << 15 | side_bit(s) | sl as u64,
                    None => 0,
                }
            };
            let mut items: Vec<Bytes> = Vec::new();
            for k in keys.items() {
                if let Some(b) = k.bytes() {
                    if key_hash_slot(b) >= slot && me.owned_by(side, b) {
                        items.push(bulk(b));
                    }
                }
            }
            let mut out = BytesMut::new();
            out.put_slice(b"*2\r\n");
            out.put_slice(&bulk(cursor.to_string().as_bytes()));
            out.put_slice(&array_of(&items));
            out.freeze()
        })
    }

    /// The next SCAN position after (`side`, `after`) (`None`: from the start of `side`): the first later slot with
    /// a node serving it, other than `done` on the same side; Ferrite's side comes before the upstream side.
    fn scan_position(&self, side: Side, after: Option<u16>, done: Option<&Arc<str>>) -> Option<(Side, u16, Arc<str>)> {
        let sides: &[Side] = match side {
            Side::Ferrite => &[Side::Ferrite, Side::Upstream],
            Side::Upstream => &[Side::Upstream],
        };
        for &sd in sides {
            let Some(topo) = self.topo(sd) else { continue };
            let view = topo.view();
            let from = match after {
                Some(a) if sd == side => a as usize + 1,
                _ => 0,
            };
            for s in from..crate::topology::NSLOTS {
                if let Some(a) = view.node(s as u16) {
                    if sd != side || done.is_none_or(|d| d != a) {
                        return Some((sd, s as u16, a.clone()));
                    }
                }
            }
        }
        None
    }

    /// Split a multi-key command over slots and merge the replies in key order.
    pub fn exec_split(self: &Arc<Self>, kind: Split, args: &[Bytes], req: Req) -> Fut {
        let step = if kind == Split::MSet { 2 } else { 1 };
        if step == 2 && args.len() & 1 == 0 {
            return ready(resp::error(&format!("ERR wrong number of arguments for '{}' command", req.name)));
        }
        // Groups per slot, in order of first appearance.
        let mut groups: Vec<(u16, Vec<usize>)> = Vec::new();
        let mut i = 1;
        while i < args.len() {
            let s = key_hash_slot(&args[i]);
            match groups.iter_mut().find(|g| g.0 == s) {
                Some(g) => g.1.push(i),
                None => groups.push((s, vec![i])),
            }
            i += step;
        }
        if groups.len() == 1 {
            return self.exec_slot(groups[0].0, req);
        }
        let mut futs = Vec::with_capacity(groups.len());
        for (slot, idxs) in &groups {
            let mut sub: Vec<&[u8]> = vec![&args[0]];
            let mut keys = Vec::with_capacity(idxs.len());
            for &k in idxs {
                sub.push(&args[k]);
                keys.push(args[k].clone());
                if step == 2 {
                    sub.push(&args[k + 1]);
                }
            }
            let r = Req { data: encode_cmd(&sub), keys: keys.into(), ..req.clone() };
            futs.push(self.exec_slot(*slot, r));
        }
        let nkeys = (args.len() - 1) / step;
        Box::pin(async move {
            let replies = futures_util::future::join_all(futs).await;
            if let Some(e) = replies.iter().find(|r| r.first() == Some(&b'-')) {
                return e.clone();
            }
            match kind {
                Split::MSet => Bytes::from_static(resp::OK),
                Split::Sum => {
                    let n: i64 = replies.iter().map(|r| Value::parse(r).and_then(|v| v.int()).unwrap_or(0)).sum();
                    int_reply(n)
                }
                Split::MGet => {
                    let mut out: Vec<Bytes> = vec![Bytes::new(); nkeys];
                    for ((_, idxs), r) in groups.iter().zip(&replies) {
                        let Some(els) = split_aggregate(r) else {
                            return resp::error("ERR internal proxy error: bad MGET reply");
                        };
                        for (&k, el) in idxs.iter().zip(els) {
                            if let Some(slot) = out.get_mut(k - 1) {
                                *slot = el;
                            }
                        }
                    }
                    array_of(&out)
                }
            }
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Split {
    MGet,
    MSet,
    Sum,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Merge {
    /// Every node must succeed; the first reply is returned.
    AllOk,
    /// The first successful reply.
    FirstOk,
    /// Integers summed.
    SumInt,
    /// Arrays of keys concatenated, each key kept only from the side that owns its slot.
    Keys,
}

/// 16 bits naming a node address in SCAN cursors (FNV-1a; never 0, so a cursor is never 0 by accident).
fn node_fingerprint(addr: &str) -> u16 {
    let mut h: u32 = 0x811c9dc5;
    for b in addr.bytes() {
        h = (h ^ b as u32).wrapping_mul(0x01000193);
    }
    ((h ^ (h >> 16)) as u16).max(1)
}

pub(crate) fn fix_host(to: &str, asked: Option<&str>) -> String {
    if to.starts_with(':') {
        if let Some((h, _)) = asked.and_then(|a| a.rsplit_once(':')) {
            return format!("{h}{to}");
        }
    }
    to.to_string()
}

pub fn int_reply(n: i64) -> Bytes {
    Bytes::from(format!(":{n}\r\n"))
}

/// A SCAN reply that ends the iteration with no keys.
fn empty_scan_page() -> Bytes {
    Bytes::from_static(b"*2\r\n$1\r\n0\r\n*0\r\n")
}

pub fn bulk(b: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(b.len() + 16);
    out.put_u8(b'$');
    out.put_slice(itoa::Buffer::new().format(b.len()).as_bytes());
    out.put_slice(b"\r\n");
    out.put_slice(b);
    out.put_slice(b"\r\n");
    out.freeze()
}

pub fn array_of(items: &[Bytes]) -> Bytes {
    let mut out = BytesMut::with_capacity(16 + items.iter().map(|i| i.len()).sum::<usize>());
    out.put_u8(b'*');
    out.put_slice(itoa::Buffer::new().format(items.len()).as_bytes());
    out.put_slice(b"\r\n");
    for i in items {
        out.put_slice(i);
    }
    out.freeze()
}

/// The raw element frames of an aggregate reply.
pub fn split_aggregate(r: &Bytes) -> Option<Vec<Bytes>> {
    if !matches!(r.first(), Some(b'*' | b'~' | b'>')) {
        return None;
    }
    let nl = r.iter().position(|&c| c == b'\n')?;
    let n: i64 = std::str::from_utf8(&r[1..nl.checked_sub(1)?]).ok()?.parse().ok()?;
    let mut out = Vec::with_capacity(n.clamp(0, 4096) as usize);
    let mut pos = nl + 1;
    for _ in 0..n.max(0) {
        let len = FrameScanner::default().scan(&r[pos..]).ok()??;
        out.push(r.slice(pos..pos + len));
        pos += len;
    }
    Some(out)
}
