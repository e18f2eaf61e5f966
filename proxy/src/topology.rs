//! Where each slot lives on one side: the upstream Redis Cluster's slot map (from `CLUSTER SHARDS`, falling back
//! to `CLUSTER SLOTS`, refreshed on `-MOVED`, on connection failures and every 10 s), or a single standalone node.
//! The map is swapped atomically; readers never lock.

use crate::backend::{BackendSettings, DedConn, Side};
use crate::metrics::Metrics;
use crate::resp::{encode_cmd, Value};
use arc_swap::ArcSwap;
use parking_lot::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub const NSLOTS: usize = 16384;
const NONE: u16 = u16::MAX;

/// An immutable snapshot of one side's slot map.
pub struct View {
    /// Master addresses, sorted (stable indexes for SCAN cursors).
    pub masters: Vec<Arc<str>>,
    /// Index into `masters` per slot, or `u16::MAX` when no node serves it.
    pub owner: Box<[u16]>,
}

impl View {
    fn empty() -> View {
        View { masters: Vec::new(), owner: vec![NONE; NSLOTS].into_boxed_slice() }
    }
    fn single(addr: Arc<str>) -> View {
        View { masters: vec![addr], owner: vec![0; NSLOTS].into_boxed_slice() }
    }
    pub fn node(&self, slot: u16) -> Option<&Arc<str>> {
        let i = *self.owner.get(slot as usize)?;
        self.masters.get(i as usize)
    }
    fn from_ranges(ranges: Vec<(u16, u16, Arc<str>)>) -> View {
        let mut masters: Vec<Arc<str>> = ranges.iter().map(|r| r.2.clone()).collect();
        masters.sort();
        masters.dedup();
        let mut owner = vec![NONE; NSLOTS].into_boxed_slice();
        for (a, b, addr) in ranges {
            let idx = masters.binary_search(&addr).unwrap_or(0) as u16;
            for s in a..=b.min(NSLOTS as u16 - 1) {
                owner[s as usize] = idx;
            }
        }
        View { masters, owner }
    }
}

pub struct Topology {
    pub side: Side,
    view: ArcSwap<View>,
    seeds: Vec<String>,
    cluster: bool,
    refreshing: AtomicBool,
    last_refresh: Mutex<Option<Instant>>,
    settings: Arc<BackendSettings>,
    metrics: Arc<Metrics>,
}

impl Topology {
    /// A single standalone node serving every slot.
    pub fn standalone(side: Side, addr: &str, settings: Arc<BackendSettings>, metrics: Arc<Metrics>) -> Arc<Topology> {
        Arc::new(Topology {
            side,
            view: ArcSwap::from_pointee(View::single(Arc::from(addr))),
            seeds: vec![addr.to_string()],
            cluster: false,
            refreshing: AtomicBool::new(false),
            last_refresh: Mutex::new(None),
            settings,
            metrics,
        })
    }

    /// A Redis Cluster discovered from `seeds` (the map stays empty until the first refresh succeeds).
    pub fn cluster(
        side: Side,
        seeds: Vec<String>,
        settings: Arc<BackendSettings>,
        metrics: Arc<Metrics>,
    ) -> Arc<Topology> {
        Arc::new(Topology {
            side,
            view: ArcSwap::from_pointee(View::empty()),
            seeds,
            cluster: true,
            refreshing: AtomicBool::new(false),
            last_refresh: Mutex::new(None),
            settings,
            metrics,
        })
    }

    pub fn is_cluster(&self) -> bool {
        self.cluster
    }

    pub fn view(&self) -> arc_swap::Guard<Arc<View>> {
        self.view.load()
    }

    pub fn node(&self, slot: u16) -> Option<Arc<str>> {
        self.view.load().node(slot).cloned()
    }

    /// Masters that serve slots, each with the lowest slot it serves, in slot order. A failover keeps a node's
    /// slots, so `(side, lowest slot)` names "the node holding these keys" across a change of address (SCAN
    /// cursors use it).
    pub fn masters_by_slot(&self) -> Vec<(u16, Arc<str>)> {
        let v = self.view.load();
        let mut seen = vec![false; v.masters.len()];
        let mut out = Vec::new();
        for (slot, &i) in v.owner.iter().enumerate() {
            if i != NONE && !seen[i as usize] {
                seen[i as usize] = true;
                out.push((slot as u16, v.masters[i as usize].clone()));
            }
        }
        out
    }

    /// Every master, sorted.
    pub fn masters(&self) -> Vec<Arc<str>> {
        self.view.load().masters.clone()
    }

    /// `-MOVED slot addr`: point the slot at `addr` now (copy-on-write), and refresh the whole map soon.
    pub fn moved(self: &Arc<Self>, slot: u16, addr: &str) {
        let cur = self.view.load_full();
        if cur.node(slot).is_some_and(|a| a.as_ref() == addr) {
            self.trigger_refresh();
            return;
        }
        let mut masters = cur.masters.clone();
        let idx = match masters.iter().position(|m| m.as_ref() == addr) {
            Some(i) => i,
            None => {
                masters.push(Arc::from(addr));
                masters.len() - 1
            }
        };
        let mut owner = cur.owner.clone();
        if let Some(o) = owner.get_mut(slot as usize) {
            *o = idx as u16;
        }
        // Keep `masters` sorted: rebuild indexes.
        let ranges: Vec<(u16, u16, Arc<str>)> = (0..NSLOTS)
            .filter_map(|s| masters.get(owner[s] as usize).map(|m| (s as u16, s as u16, m.clone())))
            .collect();
        self.view.store(Arc::new(View::from_ranges(ranges)));
        self.trigger_refresh();
    }

    /// Start a background refresh unless one is running or one finished in the last 100 ms.
    pub fn trigger_refresh(self: &Arc<Self>) {
        if !self.cluster {
            return;
        }
        if let Some(t) = *self.last_refresh.lock() {
            if t.elapsed() < Duration::from_millis(100) {
                return;
            }
        }
        if self.refreshing.swap(true, Ordering::SeqCst) {
            return;
        }
        let me = self.clone();
        tokio::spawn(async move {
            let _ = me.refresh().await;
        });
    }

    /// Fetch the map from the first node that answers (known masters first, then the seeds).
    pub async fn refresh(self: &Arc<Self>) -> Result<(), String> {
        self.refreshing.store(true, Ordering::SeqCst);
        let mut cands: Vec<String> = self.view.load().masters.iter().map(|m| m.to_string()).collect();
        for s in &self.seeds {
            if !cands.contains(s) {
                cands.push(s.clone());
            }
        }
        let mut last = String::from("no seed nodes");
        let mut result = Err(String::new());
        for addr in cands {
            match fetch_map(&addr, &self.settings, self.side).await {
                Ok(ranges) if !ranges.is_empty() => {
                    self.view.store(Arc::new(View::from_ranges(ranges)));
                    result = Ok(());
                    break;
                }
                Ok(_) => last = format!("{addr}: no slots assigned"),
                Err(e) => last = format!("{addr}: {e}"),
            }
        }
        *self.last_refresh.lock() = Some(Instant::now());
        self.refreshing.store(false, Ordering::SeqCst);
        match &result {
            Ok(()) => self.metrics.topology_refreshes.with_label_values(&["ok"]).inc(),
            Err(_) => {
                self.metrics.topology_refreshes.with_label_values(&["failed"]).inc();
                tracing::warn!(side = self.side.name(), error = %last, "topology refresh failed");
            }
        }
        result.map_err(|_| last)
    }
}

async fn fetch_map(addr: &str, settings: &BackendSettings, side: Side) -> Result<Vec<(u16, u16, Arc<str>)>, String> {
    let a: Arc<str> = Arc::from(addr);
    let fut = async {
        let mut c = DedConn::open(&a, false, settings, side).await?;
        let host = addr.rsplit_once(':').map(|(h, _)| h.to_string()).unwrap_or_default();
        let r = c.request(&encode_cmd(&["CLUSTER", "SHARDS"]), 1).await?;
        let v = Value::parse(&r[0]).ok_or("unparsable CLUSTER SHARDS reply")?;
        if !v.is_error() {
            return Ok(parse_shards(&v, &host));
        }
        let r = c.request(&encode_cmd(&["CLUSTER", "SLOTS"]), 1).await?;
        let v = Value::parse(&r[0]).ok_or("unparsable CLUSTER SLOTS reply")?;
        if let Value::Error(e) = &v {
            return Err(String::from_utf8_lossy(e).to_string());
        }
        Ok(parse_slots(&v, &host))
    };
    tokio::time::timeout(Duration::from_secs(5), fut).await.map_err(|_| "timed out".to_string())?
}

fn node_addr(ip: Option<&Value>, port: Option<i64>, host: &str) -> Option<Arc<str>> {
    let port = port?;
    if !(1..=65535).contains(&port) {
        return None;
    }
    let ip = ip.and_then(|v| v.bytes()).map(|b| String::from_utf8_lossy(b).to_string()).unwrap_or_default();
    let ip = if ip.is_empty() || ip == "?" { host.to_string() } else { ip };
    Some(Arc::from(format!("{ip}:{port}")))
}

/// `CLUSTER SHARDS` (RESP2 flat maps): slot ranges of each shard's online master.
pub fn parse_shards(v: &Value, host: &str) -> Vec<(u16, u16, Arc<str>)> {
    let mut out = Vec::new();
    for shard in v.items() {
        let slots: Vec<i64> =
            shard.field("slots").map(|s| s.items().iter().filter_map(|x| x.int()).collect()).unwrap_or_default();
        let Some(nodes) = shard.field("nodes") else { continue };
        let master = nodes.items().iter().find(|n| {
            n.field("role").and_then(|r| r.bytes()).is_some_and(|r| &r[..] == b"master")
                && n.field("health").and_then(|h| h.bytes()).is_none_or(|h| &h[..] != b"fail")
        });
        let Some(m) = master else { continue };
        let Some(addr) = node_addr(m.field("ip"), m.field("port").and_then(|p| p.int()), host) else { continue };
        for pair in slots.chunks(2) {
            if let [a, b] = pair {
                if (0..NSLOTS as i64).contains(a) && (0..NSLOTS as i64).contains(b) && a <= b {
                    out.push((*a as u16, *b as u16, addr.clone()));
                }
            }
        }
    }
    out
}

/// `CLUSTER SLOTS`: `[start, end, [ip, port, id], replicas...]`.
pub fn parse_slots(v: &Value, host: &str) -> Vec<(u16, u16, Arc<str>)> {
    let mut out = Vec::new();
    for e in v.items() {
        let it = e.items();
        if it.len() < 3 {
            continue;
        }
        let (Some(a), Some(b)) = (it[0].int(), it[1].int()) else { continue };
        let m = it[2].items();
        let Some(addr) = node_addr(m.first(), m.get(1).and_then(|p| p.int()), host) else { continue };
        if (0..NSLOTS as i64).contains(&a) && (0..NSLOTS as i64).contains(&b) && a <= b {
            out.push((a as u16, b as u16, addr));
        }
    }
    out
}
