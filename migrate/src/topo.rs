//! Source Redis Cluster topology: discovery (CLUSTER SHARDS, falling back to
//! CLUSTER SLOTS), per-slot master lookup, and a connection set that follows
//! MOVED replies and master failovers by refreshing the map and retrying.

use crate::resp::{Auth, Conn, Reply};
use crate::slots::{SlotSet, NSLOTS};
use crate::{cmd, Error, Result};
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// One master with its slots and replicas.
#[derive(Clone, Debug)]
pub struct Master {
    pub addr: String,
    pub id: String,
    pub replicas: Vec<String>,
    pub slots: SlotSet,
}

/// The slot map.
#[derive(Clone, Debug)]
pub struct Topo {
    pub masters: Vec<Master>,
    /// Index into `masters` per slot.
    pub owner: Vec<Option<usize>>,
}

impl Topo {
    pub fn master_of(&self, slot: u16) -> Option<&Master> {
        self.owner.get(slot as usize).copied().flatten().and_then(|i| self.masters.get(i))
    }
    pub fn covered(&self) -> SlotSet {
        let mut s = SlotSet::default();
        for m in &self.masters {
            for x in m.slots.iter() {
                s.insert(x);
            }
        }
        s
    }
    /// Every node address (masters then replicas).
    pub fn all_nodes(&self) -> Vec<String> {
        let mut v: Vec<String> = self.masters.iter().map(|m| m.addr.clone()).collect();
        for m in &self.masters {
            v.extend(m.replicas.iter().cloned());
        }
        v
    }
}

/// Slots named by `[slot->-id]` (migrating) or `[slot-<-id]` (importing) entries of the `myself` line of a
/// `CLUSTER NODES` reply.
pub fn transit_slots(nodes: &str) -> Vec<u16> {
    let mut v = Vec::new();
    for line in nodes.lines() {
        let mut f = line.split_whitespace();
        let flags = f.nth(2).unwrap_or_default();
        if !flags.split(',').any(|x| x == "myself") {
            continue;
        }
        for item in line.split_whitespace().skip(8) {
            let Some(inner) = item.strip_prefix('[').and_then(|x| x.strip_suffix(']')) else { continue };
            let slot = inner.split("->-").next().unwrap_or_default();
            let slot = slot.split("-<-").next().unwrap_or_default();
            if let Ok(s) = slot.parse::<u16>() {
                v.push(s);
            }
        }
    }
    v
}

/// Whether the master now serving `slot` in `now` belongs to the shard a replication stream for it was read
/// from: `addr` (that stream's current master) itself or one of the new master's replicas, or a node of the
/// shard that served the slot in `start` (a failover the stream has not followed yet). A slot moved to another
/// shard by a reshard fails both.
pub fn same_shard(start: &Topo, now: &Topo, slot: u16, addr: &str) -> bool {
    let Some(m) = now.master_of(slot) else { return false };
    if m.addr == addr || m.replicas.iter().any(|r| r == addr) {
        return true;
    }
    start.master_of(slot).is_some_and(|o| o.addr == m.addr || o.replicas.contains(&m.addr))
}

fn node_addr(ip: &str, port: i64) -> String {
    if ip.contains(':') {
        format!("[{ip}]:{port}")
    } else {
        format!("{ip}:{port}")
    }
}

fn from_shards(r: &Reply, seed: &str) -> Option<Topo> {
    let mut masters = Vec::new();
    for shard in r.items() {
        let slots_r = shard.field("slots")?;
        let mut slots = SlotSet::default();
        let it = slots_r.items();
        let mut i = 0;
        while i + 1 < it.len() {
            let (a, b) = (it[i].as_int()?, it[i + 1].as_int()?);
            if a < 0 || b < a || b >= NSLOTS as i64 {
                return None;
            }
            slots.insert_range(a as u16, b as u16);
            i += 2;
        }
        let mut master = None;
        let mut replicas = Vec::new();
        for n in shard.field("nodes")?.items() {
            let ip = n.field("ip").and_then(|x| x.as_str()).unwrap_or_default();
            let ip = if ip.is_empty() { seed_host(seed) } else { ip };
            let port = n.field("port").and_then(|x| x.as_int()).unwrap_or(0);
            let role = n.field("role").and_then(|x| x.as_str()).unwrap_or_default();
            let health = n.field("health").and_then(|x| x.as_str()).unwrap_or_else(|| "online".into());
            let id = n.field("id").and_then(|x| x.as_str()).unwrap_or_default();
            if port <= 0 {
                continue;
            }
            let addr = node_addr(&ip, port);
            if role == "master" && health != "fail" {
                master = Some((addr, id));
            } else if role == "replica" && health != "fail" {
                // Redis 7.0 reports a replica as `loading` while its replication offset is 0 (a master that was
                // never written to): it is a replica all the same.
                replicas.push(addr);
            }
        }
        if slots.is_empty() {
            continue;
        }
        let (addr, id) = master?;
        masters.push(Master { addr, id, replicas, slots });
    }
    Some(build(masters))
}

fn seed_host(seed: &str) -> String {
    seed.rsplit_once(':').map(|(h, _)| h.trim_matches(['[', ']']).to_string()).unwrap_or_default()
}

fn from_slots(r: &Reply, seed: &str) -> Option<Topo> {
    let mut by_addr: HashMap<String, Master> = HashMap::new();
    for e in r.items() {
        let it = e.items();
        if it.len() < 3 {
            return None;
        }
        let (a, b) = (it[0].as_int()?, it[1].as_int()?);
        if a < 0 || b < a || b >= NSLOTS as i64 {
            return None;
        }
        let node = |n: &Reply| -> Option<(String, String)> {
            let f = n.items();
            let ip = f.first()?.as_str()?;
            let ip = if ip.is_empty() { seed_host(seed) } else { ip };
            let port = f.get(1)?.as_int()?;
            let id = f.get(2).and_then(|x| x.as_str()).unwrap_or_default();
            Some((node_addr(&ip, port), id))
        };
        let (addr, id) = node(&it[2])?;
        let m = by_addr.entry(addr.clone()).or_insert_with(|| Master {
            addr,
            id,
            replicas: Vec::new(),
            slots: SlotSet::default(),
        });
        m.slots.insert_range(a as u16, b as u16);
        for rep in &it[3..] {
            if let Some((ra, _)) = node(rep) {
                if !m.replicas.contains(&ra) {
                    m.replicas.push(ra);
                }
            }
        }
    }
    let mut masters: Vec<Master> = by_addr.into_values().collect();
    masters.sort_by(|a, b| a.addr.cmp(&b.addr));
    Some(build(masters))
}

fn build(masters: Vec<Master>) -> Topo {
    let mut owner = vec![None; NSLOTS];
    for (i, m) in masters.iter().enumerate() {
        for s in m.slots.iter() {
            owner[s as usize] = Some(i);
        }
    }
    Topo { masters, owner }
}

/// Ask one node for the topology.
pub fn discover_from(addr: &str, timeout: Duration, auth: &Auth) -> Result<Topo> {
    let mut c = Conn::connect(addr, timeout, auth)?;
    let r = c.cmd(&cmd!["CLUSTER", "SHARDS"])?;
    if !r.is_error() {
        if let Some(t) = from_shards(&r, addr) {
            if !t.masters.is_empty() {
                return Ok(t);
            }
        }
    }
    let r = c.cmd(&cmd!["CLUSTER", "SLOTS"])?.ok()?;
    match from_slots(&r, addr) {
        Some(t) if !t.masters.is_empty() => Ok(t),
        _ => Err(Error::Protocol(format!("{addr}: cannot read the cluster topology (is it a Redis Cluster node?)"))),
    }
}

/// Try each address until one answers.
pub fn discover(addrs: &[String], timeout: Duration, auth: &Auth) -> Result<Topo> {
    let mut last = Error::Config("no source node given".into());
    for a in addrs {
        match discover_from(a, timeout, auth) {
            Ok(t) => return Ok(t),
            Err(e) => last = e,
        }
    }
    Err(last)
}

/// Connections to the source cluster that follow its topology.
pub struct Source {
    pub seeds: Vec<String>,
    pub auth: Auth,
    pub timeout: Duration,
    pub topo: Topo,
    conns: HashMap<String, Conn>,
    /// How long to keep retrying through a failover.
    pub retry_for: Duration,
    pub refreshes: u64,
    /// `Conn::skip_big_bulks` settings of every connection.
    skip: (usize, usize),
}

fn retryable(e: &str) -> bool {
    ["MOVED ", "ASK ", "TRYAGAIN", "CLUSTERDOWN", "LOADING", "READONLY", "MASTERDOWN"].iter().any(|p| e.starts_with(p))
}

impl Source {
    pub fn connect(seeds: Vec<String>, auth: Auth, timeout: Duration) -> Result<Source> {
        let topo = discover(&seeds, timeout, &auth)?;
        Ok(Source {
            seeds,
            auth,
            timeout,
            topo,
            conns: HashMap::new(),
            retry_for: Duration::from_secs(60),
            refreshes: 0,
            skip: (usize::MAX, usize::MAX),
        })
    }

    /// Re-read the topology from any known node.
    pub fn refresh(&mut self) -> Result<()> {
        let mut addrs = self.topo.all_nodes();
        for s in &self.seeds {
            if !addrs.contains(s) {
                addrs.push(s.clone());
            }
        }
        self.topo = discover(&addrs, self.timeout, &self.auth)?;
        self.refreshes += 1;
        crate::metrics::get().source_refreshes.inc();
        Ok(())
    }

    /// A connection to `addr` (cached).
    pub fn conn(&mut self, addr: &str) -> Result<&mut Conn> {
        if !self.conns.contains_key(addr) {
            let c = Conn::connect(addr, self.timeout, &self.auth)?;
            self.conns.insert(addr.to_string(), c);
        }
        let skip = self.skip;
        let c = self.conns.get_mut(addr).ok_or_else(|| Error::Other("connection vanished".into()))?;
        c.skip_big_bulks(skip.0, skip.1);
        Ok(c)
    }

    /// [`Conn::skip_big_bulks`] for every connection to the source, until
    /// called again with `usize::MAX` twice.
    pub fn skip_big_bulks(&mut self, over: usize, budget: usize) {
        self.skip = (over, budget);
    }

    /// Slots of `g` that some source master reports as migrating or importing (a `redis-cli --cluster reshard`
    /// or a manual `CLUSTER SETSLOT` in progress). Each master's `CLUSTER NODES` shows its own slot transfers
    /// on its `myself` line as `[slot->-id]` / `[slot-<-id]`.
    pub fn slots_in_transit(&mut self, g: &SlotSet) -> Result<Vec<u16>> {
        let mut found = Vec::new();
        // The masters as of now (a failover since the last refresh must not send us to a dead node).
        let mut addrs = self.topo.all_nodes();
        addrs.extend(self.seeds.iter().filter(|s| !addrs.contains(s)).cloned().collect::<Vec<_>>());
        let now = discover(&addrs, self.timeout, &self.auth)?;
        let masters: Vec<String> = now.masters.iter().map(|m| m.addr.clone()).collect();
        for addr in masters {
            let r = match self.conn(&addr).and_then(|c| c.cmd(&cmd!["CLUSTER", "NODES"])) {
                Ok(r) => r.ok()?,
                Err(e) => {
                    self.drop_conn(&addr);
                    return Err(e);
                }
            };
            for s in transit_slots(&r.as_str().unwrap_or_default()) {
                if g.contains(s) && !found.contains(&s) {
                    found.push(s);
                }
            }
        }
        found.sort_unstable();
        Ok(found)
    }

    pub fn drop_conn(&mut self, addr: &str) {
        self.conns.remove(addr);
    }

    /// Run a pipeline of idempotent reads against the master of `slot`,
    /// retrying (after refreshing the topology) on MOVED, TRYAGAIN,
    /// CLUSTERDOWN, LOADING and connection errors until `retry_for` passes.
    pub fn slot_pipeline(&mut self, slot: u16, cmds: &[Vec<Vec<u8>>]) -> Result<Vec<Reply>> {
        let start = Instant::now();
        let mut delay = Duration::from_millis(20);
        loop {
            let addr = match self.topo.master_of(slot) {
                Some(m) => m.addr.clone(),
                None => {
                    if start.elapsed() > self.retry_for {
                        return Err(Error::Other(format!("no source master serves slot {slot}")));
                    }
                    std::thread::sleep(delay);
                    let _ = self.refresh();
                    continue;
                }
            };
            let res = self.conn(&addr).and_then(|c| c.pipeline(cmds));
            let retry_msg = match res {
                Ok(replies) => {
                    let bad = replies.iter().find_map(|r| match r {
                        Reply::Error(e) if retryable(e) => Some(e.clone()),
                        Reply::Array(a) => a.iter().find_map(|x| match x {
                            Reply::Error(e) if retryable(e) => Some(e.clone()),
                            _ => None,
                        }),
                        _ => None,
                    });
                    match bad {
                        None => return Ok(replies),
                        Some(e) => e,
                    }
                }
                Err(e) => {
                    self.drop_conn(&addr);
                    e.to_string()
                }
            };
            if start.elapsed() > self.retry_for {
                return Err(Error::Other(format!("slot {slot}: source kept failing: {retry_msg}")));
            }
            std::thread::sleep(delay);
            delay = (delay * 2).min(Duration::from_millis(1000));
            let _ = self.refresh();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_shard_accepts_failovers_and_refuses_reshards() {
        let topo = |owners: &[(&str, &[&str], std::ops::Range<u16>)]| {
            let mut masters = Vec::new();
            let mut owner = vec![None; NSLOTS];
            for (i, (addr, reps, range)) in owners.iter().enumerate() {
                let mut slots = SlotSet::default();
                for s in range.clone() {
                    slots.insert(s);
                    owner[s as usize] = Some(i);
                }
                let replicas = reps.iter().map(|r| r.to_string()).collect();
                masters.push(Master { addr: addr.to_string(), id: format!("id{i}"), replicas, slots });
            }
            Topo { masters, owner }
        };
        let start = topo(&[("a:1", &["a:2"], 0..100), ("b:1", &["b:2"], 100..200)]);
        // Unchanged.
        assert!(same_shard(&start, &start, 5, "a:1"));
        // Failover a:1 -> a:2, followed by the stream or not yet, with the old master alive or gone.
        let fo = topo(&[("a:2", &["a:1"], 0..100), ("b:1", &["b:2"], 100..200)]);
        assert!(same_shard(&start, &fo, 5, "a:1"));
        assert!(same_shard(&start, &fo, 5, "a:2"));
        let fo_dead = topo(&[("a:2", &[], 0..100), ("b:1", &["b:2"], 100..200)]);
        assert!(same_shard(&start, &fo_dead, 5, "a:1"));
        // Slot 5 resharded to b's shard.
        let moved = topo(&[("a:1", &["a:2"], 6..100), ("b:1", &["b:2"], 100..200)]);
        let mut moved = moved;
        moved.owner[5] = Some(1);
        assert!(!same_shard(&start, &moved, 5, "a:1"));
        // No owner any more.
        let gone = topo(&[("b:1", &["b:2"], 100..200)]);
        assert!(!same_shard(&start, &gone, 5, "a:1"));
    }

    #[test]
    fn transit_slots_reads_the_myself_line_only() {
        let nodes = "a1 127.0.0.1:7000@17000 myself,master - 0 0 1 connected 0-5460 [5461-<-b2] [100->-c3]\n\
                     b2 127.0.0.1:7001@17001 master - 0 0 2 connected 5461-10922 [7->-a1]\n";
        assert_eq!(transit_slots(nodes), vec![5461, 100]);
        assert!(transit_slots("a1 127.0.0.1:7000@17000 myself,master - 0 0 1 connected 0-16383\n").is_empty());
    }

    fn bulk(s: &str) -> Reply {
        Reply::Bulk(s.as_bytes().to_vec())
    }

    #[test]
    fn parses_cluster_slots_and_shards() {
        let node = |ip: &str, port: i64, id: &str| Reply::Array(vec![bulk(ip), Reply::Int(port), bulk(id)]);
        let r = Reply::Array(vec![
            Reply::Array(vec![
                Reply::Int(0),
                Reply::Int(100),
                node("127.0.0.1", 7000, "a"),
                node("127.0.0.1", 7003, "d"),
            ]),
            Reply::Array(vec![Reply::Int(101), Reply::Int(16383), node("", 7001, "b")]),
        ]);
        let t = from_slots(&r, "10.1.1.1:7000").unwrap();
        assert_eq!(t.masters.len(), 2);
        assert_eq!(t.master_of(50).unwrap().addr, "127.0.0.1:7000");
        assert_eq!(t.master_of(250).unwrap().addr, "10.1.1.1:7001");
        assert_eq!(t.master_of(250).unwrap().id, "b");
        assert_eq!(t.master_of(0).unwrap().replicas, vec!["127.0.0.1:7003".to_string()]);
        assert_eq!(t.covered().len(), 16384);
        // Bad ranges are refused, not trusted.
        let bad = Reply::Array(vec![Reply::Array(vec![Reply::Int(5), Reply::Int(99999), node("h", 1, "x")])]);
        assert!(from_slots(&bad, "h:1").is_none());
        // CLUSTER SHARDS (RESP2 flat maps); a failed master is skipped.
        let n = |ip: &str, port: i64, role: &str, health: &str| {
            Reply::Array(vec![
                bulk("id"),
                bulk(&format!("id{port}")),
                bulk("port"),
                Reply::Int(port),
                bulk("ip"),
                bulk(ip),
                bulk("role"),
                bulk(role),
                bulk("health"),
                bulk(health),
            ])
        };
        let shards = Reply::Array(vec![
            Reply::Array(vec![
                bulk("slots"),
                Reply::Array(vec![Reply::Int(0), Reply::Int(8191)]),
                bulk("nodes"),
                Reply::Array(vec![n("127.0.0.1", 7000, "master", "online"), n("127.0.0.1", 7003, "replica", "online")]),
            ]),
            Reply::Array(vec![
                bulk("slots"),
                Reply::Array(vec![Reply::Int(8192), Reply::Int(16383)]),
                bulk("nodes"),
                Reply::Array(vec![n("127.0.0.1", 7001, "master", "online")]),
            ]),
        ]);
        let t = from_shards(&shards, "127.0.0.1:7000").unwrap();
        assert_eq!(t.masters.len(), 2);
        assert_eq!(t.master_of(8192).unwrap().addr, "127.0.0.1:7001");
        assert_eq!(t.master_of(1).unwrap().replicas, vec!["127.0.0.1:7003".to_string()]);
        assert_eq!(t.all_nodes().len(), 3);
    }
}
