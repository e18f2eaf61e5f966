//! Pub/sub commands (SUBSCRIBE family, PUBLISH, PUBSUB).

use super::CmdImpl;
use crate::client::Client;
use crate::server::Server;

pub static COMMANDS: &[CmdImpl] = &[];

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
}
