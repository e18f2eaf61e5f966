//! Differential tests for pub/sub: the same multi-connection script runs
//! against real Redis and ferrite; every reply and push is compared.
mod support;
use support::*;

/// Run the script on one server, returning everything each connection saw.
fn script(port: u16, resp3: bool) -> Vec<String> {
    let mut seen = Vec::new();
    let mut sub = Conn::connect(port).unwrap();
    let mut publ = Conn::connect(port).unwrap();
    if resp3 {
        sub.cmd(&["HELLO", "3"]);
    }
    sub.send(&["SUBSCRIBE", "news", "sport"]);
    seen.push(show(&sub.read_reply()));
    seen.push(show(&sub.read_reply()));
    sub.send(&["PSUBSCRIBE", "h*llo"]);
    seen.push(show(&sub.read_reply()));
    seen.push(show(&sub.cmd(&["SSUBSCRIBE", "shardch"])));
    seen.push(show(&publ.cmd(&["PUBLISH", "news", "hi there"])));
    seen.push(show(&sub.read_reply()));
    seen.push(show(&publ.cmd(&["PUBLISH", "hello", "pattern payload"])));
    seen.push(show(&sub.read_reply()));
    seen.push(show(&publ.cmd(&["PUBLISH", "nobody", "x"])));
    seen.push(show(&publ.cmd(&["SPUBLISH", "shardch", "sharded"])));
    seen.push(show(&sub.read_reply()));
    seen.push(show(&publ.cmd(&["PUBSUB", "NUMSUB", "news", "sport", "nobody"])));
    seen.push(show(&publ.cmd(&["PUBSUB", "NUMPAT"])));
    seen.push(show(&publ.cmd(&["PUBSUB", "CHANNELS", "n*"])));
    seen.push(show(&publ.cmd(&["PUBSUB", "SHARDCHANNELS"])));
    seen.push(show(&publ.cmd(&["PUBSUB", "SHARDNUMSUB", "shardch"])));
    seen.push(show(&publ.cmd(&["PUBSUB", "HELP"])));
    seen.push(show(&publ.cmd(&["PUBSUB", "NOPE"])));
    // Commands allowed / refused while subscribed.
    seen.push(show(&sub.cmd(&["PING"])));
    seen.push(show(&sub.cmd(&["PING", "msg"])));
    seen.push(show(&sub.cmd(&["GET", "k"])));
    seen.push(show(&sub.cmd(&["UNSUBSCRIBE", "sport"])));
    seen.push(show(&sub.cmd(&["UNSUBSCRIBE", "notsubscribed"])));
    seen.push(show(&sub.cmd(&["PUNSUBSCRIBE"])));
    seen.push(show(&sub.cmd(&["SUNSUBSCRIBE"])));
    seen.push(show(&sub.cmd(&["UNSUBSCRIBE"])));
    seen.push(show(&sub.cmd(&["UNSUBSCRIBE"])));
    seen.push(show(&sub.cmd(&["PING"])));
    seen.push(show(&publ.cmd(&["PUBLISH", "news", "after"])));
    seen
}

fn compare(resp3: bool) {
    let redis = start_redis(&[]);
    let ferrite = start_ferrite(&[]);
    let label = format!("resp3={resp3}");
    assert_same_steps(&script(redis.port, resp3), &script(ferrite.port, resp3), &label);
}

#[test]
fn pubsub_resp2_matches_redis() {
    compare(false);
}

#[test]
fn pubsub_resp3_matches_redis() {
    compare(true);
}
