//! Pub/sub registry: channel, pattern and shard-channel subscriptions.

use crate::client::Push;
use crate::glob::glob_match;
use bytes::Bytes;
use parking_lot::RwLock;
use std::collections::HashMap;

type Subs = HashMap<Bytes, HashMap<u64, crate::obuf::PushTx>>;

#[derive(Default)]
pub struct PubSub {
    pub channels: RwLock<Subs>,
    pub patterns: RwLock<Subs>,
    pub shard_channels: RwLock<Subs>,
}

fn add(map: &RwLock<Subs>, name: &Bytes, id: u64, tx: &crate::obuf::PushTx) {
    map.write().entry(name.clone()).or_default().insert(id, tx.clone());
}

fn remove(map: &RwLock<Subs>, name: &[u8], id: u64) {
    let mut m = map.write();
    if let Some(subs) = m.get_mut(name) {
        subs.remove(&id);
        if subs.is_empty() {
            m.remove(name);
        }
    }
}

impl PubSub {
    pub fn subscribe(&self, ch: &Bytes, id: u64, tx: &crate::obuf::PushTx) {
        add(&self.channels, ch, id, tx)
    }
    pub fn unsubscribe(&self, ch: &[u8], id: u64) {
        remove(&self.channels, ch, id)
    }
    pub fn psubscribe(&self, p: &Bytes, id: u64, tx: &crate::obuf::PushTx) {
        add(&self.patterns, p, id, tx)
    }
    pub fn punsubscribe(&self, p: &[u8], id: u64) {
        remove(&self.patterns, p, id)
    }
    pub fn ssubscribe(&self, ch: &Bytes, id: u64, tx: &crate::obuf::PushTx) {
        add(&self.shard_channels, ch, id, tx)
    }
    pub fn sunsubscribe(&self, ch: &[u8], id: u64) {
        remove(&self.shard_channels, ch, id)
    }

    /// Deliver to channel and pattern subscribers; returns receivers count.
    pub fn publish(&self, channel: &Bytes, payload: &Bytes) -> usize {
        let mut n = 0;
        if let Some(subs) = self.channels.read().get(channel) {
            for tx in subs.values() {
                if tx
                    .send(Push::Message {
                        kind: "message",
                        pattern: None,
                        channel: channel.clone(),
                        payload: payload.clone(),
                    })
                    .is_ok()
                {
                    n += 1;
                }
            }
        }
        for (pat, subs) in self.patterns.read().iter() {
            if glob_match(pat, channel, false) {
                for tx in subs.values() {
                    let msg = Push::Message {
                        kind: "pmessage",
                        pattern: Some(pat.clone()),
                        channel: channel.clone(),
                        payload: payload.clone(),
                    };
                    if tx.send(msg).is_ok() {
                        n += 1;
                    }
                }
            }
        }
        n
    }

    /// SPUBLISH: deliver to shard-channel subscribers.
    pub fn spublish(&self, channel: &Bytes, payload: &Bytes) -> usize {
        let mut n = 0;
        if let Some(subs) = self.shard_channels.read().get(channel) {
            for tx in subs.values() {
                let msg = Push::Message {
                    kind: "smessage",
                    pattern: None,
                    channel: channel.clone(),
                    payload: payload.clone(),
                };
                if tx.send(msg).is_ok() {
                    n += 1;
                }
            }
        }
        n
    }
}
