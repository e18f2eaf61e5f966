//! Driving every listed `ferrite-proxy` through the admin protocol
//! (`FERRITE.PROXY ...`, see PROXY-ADMIN / proxy/ADMIN.md): one epoch per
//! step, every step acknowledged by all proxies before the caller goes on.

use crate::resp::{Auth, Conn, Reply};
use crate::slots::range_args;
use crate::{cmd, Error, Result};
use std::time::Duration;

/// A slot run as reported by `FERRITE.PROXY SLOTS`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SlotRun {
    pub start: u16,
    pub end: u16,
    pub state: String,
    pub mirror: bool,
}

/// Connections to all proxies.
pub struct Proxies {
    pub addrs: Vec<String>,
    conns: Vec<Option<Conn>>,
    password: Option<String>,
    timeout: Duration,
    /// The highest epoch known to be acknowledged by every proxy.
    pub epoch: u64,
    /// Attempts per proxy and step on connection errors.
    pub attempts: usize,
}

impl Proxies {
    /// Connect to every proxy and read its epoch; `epoch` = the highest.
    pub fn connect(addrs: &[String], password: Option<String>, timeout: Duration) -> Result<Proxies> {
        let mut p = Proxies {
            addrs: addrs.to_vec(),
            conns: addrs.iter().map(|_| None).collect(),
            password,
            timeout,
            epoch: 0,
            attempts: 5,
        };
        p.epoch = p.max_epoch()?;
        Ok(p)
    }

    pub fn is_empty(&self) -> bool {
        self.addrs.is_empty()
    }

    fn conn(&mut self, i: usize) -> Result<&mut Conn> {
        if self.conns[i].is_none() {
            let mut c = Conn::connect(&self.addrs[i], self.timeout, &Auth::default())?;
            if let Some(pw) = &self.password {
                match c.cmd(&cmd!["FERRITE.PROXY", "AUTH", pw.as_str()])? {
                    // A proxy without an admin password accepts loopback admins.
                    Reply::Error(e) if e.contains("no admin password") => {}
                    Reply::Error(e) => {
                        return Err(Error::Conn(format!("proxy {}: admin AUTH: {e}", self.addrs[i])));
                    }
                    _ => {}
                }
            }
            self.conns[i] = Some(c);
        }
        self.conns[i].as_mut().ok_or_else(|| Error::Other("proxy connection vanished".into()))
    }

    /// One admin command to proxy `i`, reconnecting on connection errors
    /// (every admin command the tool sends is idempotent).
    pub fn call(&mut self, i: usize, args: &[Vec<u8>]) -> Result<Reply> {
        let mut last = None;
        for attempt in 0..self.attempts.max(1) {
            if attempt > 0 {
                std::thread::sleep(Duration::from_millis(50 << attempt.min(5)));
            }
            match self.conn(i).and_then(|c| c.cmd(args)) {
                Ok(r) => return Ok(r),
                Err(e) => {
                    self.conns[i] = None;
                    last = Some(e);
                }
            }
        }
        Err(last.unwrap_or_else(|| Error::Other("no attempt".into())))
    }

    /// Highest `FERRITE.PROXY EPOCH` over all proxies.
    pub fn max_epoch(&mut self) -> Result<u64> {
        let mut m = 0u64;
        for i in 0..self.addrs.len() {
            let r = self.call(i, &cmd!["FERRITE.PROXY", "EPOCH"])?.ok()?;
            let e = r.as_int().ok_or_else(|| Error::Protocol(format!("proxy {}: bad EPOCH reply", self.addrs[i])))?;
            m = m.max(e.max(0) as u64);
        }
        Ok(m)
    }

    /// `SETSLOTS <epoch> <state> <mirror> <ranges>` on every proxy with one
    /// new epoch; returns once all acknowledged it. On a stale-epoch error
    /// (someone else moved the epoch) the step is re-sent to all with an
    /// epoch above the highest seen.
    pub fn setslots(&mut self, state: &str, mirror: bool, ranges: &[(u16, u16)]) -> Result<u64> {
        if ranges.is_empty() || self.addrs.is_empty() {
            return Ok(self.epoch);
        }
        let mut epoch = self.epoch + 1;
        'outer: for _round in 0..5 {
            for i in 0..self.addrs.len() {
                let mut args = cmd!["FERRITE.PROXY", "SETSLOTS", epoch, state, if mirror { "1" } else { "0" }];
                args.extend(range_args(ranges).into_iter().map(String::into_bytes));
                match self.call(i, &args)? {
                    Reply::Int(n) if n as u64 == epoch => {}
                    Reply::Error(e) if e.contains("stale epoch") || e.contains("already used") => {
                        epoch = self.max_epoch()? + 1;
                        continue 'outer;
                    }
                    r => {
                        return Err(Error::Protocol(format!(
                            "proxy {}: SETSLOTS {epoch} {state}: unexpected reply {r:?}",
                            self.addrs[i]
                        )))
                    }
                }
            }
            self.epoch = epoch;
            return Ok(epoch);
        }
        Err(Error::Other(format!("SETSLOTS {state}: epoch kept moving under us")))
    }

    /// `TRACK on|off <ranges>` on every proxy.
    pub fn track(&mut self, on: bool, ranges: &[(u16, u16)]) -> Result<()> {
        if ranges.is_empty() {
            return Ok(());
        }
        for i in 0..self.addrs.len() {
            let mut args = cmd!["FERRITE.PROXY", "TRACK", if on { "on" } else { "off" }];
            args.extend(range_args(ranges).into_iter().map(String::into_bytes));
            self.call(i, &args)?.ok().map_err(|e| Error::Other(format!("proxy {}: TRACK: {e}", self.addrs[i])))?;
        }
        Ok(())
    }

    /// Every key recorded as written for `slot` by any proxy (drained from
    /// their records), deduplicated.
    pub fn dirty(&mut self, slot: u16, per_call: usize) -> Result<Vec<Vec<u8>>> {
        let mut seen = std::collections::HashSet::new();
        let mut out = Vec::new();
        for i in 0..self.addrs.len() {
            for _ in 0..1_000_000 {
                let r = self.call(i, &cmd!["FERRITE.PROXY", "DIRTY", slot, per_call])?.ok()?;
                let n = r.items().len();
                for k in r.items() {
                    if let Some(b) = k.as_bytes() {
                        if seen.insert(b.to_vec()) {
                            out.push(b.to_vec());
                        }
                    }
                }
                if n < per_call {
                    break;
                }
            }
        }
        Ok(out)
    }

    /// Like [`Proxies::dirty`] for many slots, pipelined per proxy (one
    /// round trip per proxy and round): the keys per slot.
    pub fn dirty_many(&mut self, slots: &[u16], per_call: usize) -> Result<Vec<(u16, Vec<Vec<u8>>)>> {
        let mut acc: std::collections::BTreeMap<u16, (std::collections::HashSet<Vec<u8>>, Vec<Vec<u8>>)> =
            Default::default();
        for i in 0..self.addrs.len() {
            let mut todo: Vec<u16> = slots.to_vec();
            for _round in 0..1_000_000 {
                if todo.is_empty() {
                    break;
                }
                // Small pipelines: one write per batch, well under a read
                // buffer of the proxy.
                let batch: Vec<u16> = todo.drain(..todo.len().min(64)).collect();
                let cmds: Vec<Vec<Vec<u8>>> =
                    batch.iter().map(|s| cmd!["FERRITE.PROXY", "DIRTY", *s, per_call]).collect();
                let replies = match self.conn(i).and_then(|c| c.pipeline(&cmds)) {
                    Ok(r) => r,
                    Err(_) => {
                        // Reconnect and fall back to one call at a time.
                        self.conns[i] = None;
                        let mut v = Vec::new();
                        for c in &cmds {
                            v.push(self.call(i, c)?);
                        }
                        v
                    }
                };
                let mut again = Vec::new();
                for (s, r) in batch.iter().zip(replies) {
                    let r = r.ok()?;
                    let e = acc.entry(*s).or_default();
                    for k in r.items() {
                        if let Some(b) = k.as_bytes() {
                            if e.0.insert(b.to_vec()) {
                                e.1.push(b.to_vec());
                            }
                        }
                    }
                    if r.items().len() >= per_call {
                        again.push(*s);
                    }
                }
                todo.extend(again);
            }
        }
        Ok(acc.into_iter().filter(|(_, (_, v))| !v.is_empty()).map(|(s, (_, v))| (s, v)).collect())
    }

    /// `FERRITE.PROXY SLOTS` of proxy `i`.
    pub fn slots(&mut self, i: usize) -> Result<Vec<SlotRun>> {
        let r = self.call(i, &cmd!["FERRITE.PROXY", "SLOTS"])?.ok()?;
        let mut v = Vec::new();
        for e in r.items() {
            let it = e.items();
            let (Some(a), Some(b), Some(st)) = (
                it.first().and_then(|x| x.as_int()),
                it.get(1).and_then(|x| x.as_int()),
                it.get(2).and_then(|x| x.as_str()),
            ) else {
                return Err(Error::Protocol("bad FERRITE.PROXY SLOTS reply".into()));
            };
            let mirror = it.get(3).and_then(|x| x.as_int()).unwrap_or(0) != 0;
            v.push(SlotRun { start: a.clamp(0, 16383) as u16, end: b.clamp(0, 16383) as u16, state: st, mirror });
        }
        Ok(v)
    }
}
