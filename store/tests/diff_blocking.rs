//! Blocking commands with several clients, compared with real Redis:
//! wake-ups by other connections, FIFO fairness, timeouts, chains through
//! BLMOVE, MULTI/EXEC (no blocking inside, serving after the whole EXEC),
//! disconnects while blocked. Every wait is bounded by short timeouts.
mod support;
use std::time::Duration;
use support::*;

fn pause() {
    std::thread::sleep(Duration::from_millis(150));
}

fn script(port: u16, resp3: bool) -> Vec<String> {
    let conn = || {
        let mut c = Conn::connect(port).unwrap();
        if resp3 {
            c.cmd(&["HELLO", "3"]);
        }
        c
    };
    let (mut a, mut b, mut c) = (conn(), conn(), conn());
    let mut seen = Vec::new();
    let mut log = |r: Vec<u8>| seen.push(show(&r));

    // Errors are immediate.
    log(a.cmd(&["BLPOP", "k", "-1"]));
    log(a.cmd(&["BLPOP", "k", "abc"]));
    log(a.cmd(&["BLPOP", "k", "inf"]));
    log(a.cmd(&["BLMPOP", "0", "0", "k", "LEFT"]));
    log(a.cmd(&["BLMOVE", "a", "b", "UP", "LEFT", "0"]));
    log(c.cmd(&["SET", "str", "x"]));
    log(a.cmd(&["BLPOP", "nolist", "str", "0"]));
    // Immediate serve when data is there.
    log(c.cmd(&["RPUSH", "ready", "1", "2"]));
    log(a.cmd(&["BLPOP", "empty", "ready", "0"]));
    log(a.cmd(&["BRPOP", "ready", "0"]));

    // Wake-up by a push from another client, on the second key.
    a.send(&["BLPOP", "l1", "l2", "5"]);
    pause();
    log(c.cmd(&["RPUSH", "l2", "x", "y"]));
    log(a.read_reply());
    log(c.cmd(&["LRANGE", "l2", "0", "-1"]));

    // First blocked, first served.
    a.send(&["BLPOP", "q", "5"]);
    pause();
    b.send(&["BLPOP", "q", "5"]);
    pause();
    log(c.cmd(&["RPUSH", "q", "first", "second", "third"]));
    log(a.read_reply());
    log(b.read_reply());
    log(c.cmd(&["LRANGE", "q", "0", "-1"]));

    // Timeout with sub-second precision.
    log(a.cmd(&["BLPOP", "nothing", "0.15"]));
    log(a.cmd(&["BLMOVE", "nothing", "dst", "LEFT", "LEFT", "0.1"]));
    log(a.cmd(&["BLMPOP", "0.1", "1", "nothing", "RIGHT"]));

    // A chain: BLMOVE's push wakes a BLPOP on its destination.
    a.send(&["BLMOVE", "src", "dst", "LEFT", "RIGHT", "5"]);
    pause();
    b.send(&["BLPOP", "dst", "5"]);
    pause();
    log(c.cmd(&["RPUSH", "src", "v"]));
    log(a.read_reply());
    log(b.read_reply());
    log(c.cmd(&["EXISTS", "src", "dst"]));

    // BRPOPLPUSH and BLMPOP with COUNT.
    a.send(&["BRPOPLPUSH", "s2", "d2", "5"]);
    pause();
    log(c.cmd(&["LPUSH", "s2", "p"]));
    log(a.read_reply());
    a.send(&["BLMPOP", "5", "2", "m1", "m2", "LEFT", "COUNT", "2"]);
    pause();
    log(c.cmd(&["RPUSH", "m2", "1", "2", "3"]));
    log(a.read_reply());

    // No blocking inside MULTI.
    log(a.cmd(&["MULTI"]));
    log(a.cmd(&["BLPOP", "nothing", "0"]));
    log(a.cmd(&["BLMOVE", "nothing", "x", "LEFT", "LEFT", "0"]));
    log(a.cmd(&["EXEC"]));

    // A transaction that pushes and pops the same element serves nobody.
    a.send(&["BLPOP", "tx", "0.4"]);
    pause();
    log(c.cmd(&["MULTI"]));
    log(c.cmd(&["RPUSH", "tx", "e"]));
    log(c.cmd(&["LPOP", "tx"]));
    log(c.cmd(&["EXEC"]));
    log(a.read_reply());
    // ...but one that leaves an element does, after EXEC.
    a.send(&["BLPOP", "tx", "5"]);
    pause();
    log(c.cmd(&["MULTI"]));
    log(c.cmd(&["RPUSH", "tx", "e1", "e2"]));
    log(c.cmd(&["LPOP", "tx"]));
    log(c.cmd(&["EXEC"]));
    log(a.read_reply());

    // A client that disconnects while blocked takes nothing.
    let mut gone = conn();
    gone.send(&["BLPOP", "dq", "5"]);
    pause();
    drop(gone);
    pause();
    log(c.cmd(&["RPUSH", "dq", "kept"]));
    log(c.cmd(&["LRANGE", "dq", "0", "-1"]));

    // Writes of another type don't wake list waiters.
    a.send(&["BLPOP", "typed", "0.3"]);
    pause();
    log(c.cmd(&["SET", "typed", "string"]));
    log(a.read_reply());
    seen
}

/// Sorted sets and streams.
fn script_zset_stream(port: u16, resp3: bool) -> Vec<String> {
    let conn = || {
        let mut c = Conn::connect(port).unwrap();
        if resp3 {
            c.cmd(&["HELLO", "3"]);
        }
        c
    };
    let (mut a, mut b, mut c) = (conn(), conn(), conn());
    let mut seen = Vec::new();
    let mut log = |r: Vec<u8>| seen.push(show(&r));

    log(a.cmd(&["BZPOPMIN", "z", "-1"]));
    log(a.cmd(&["BZMPOP", "0", "1", "z", "MIDDLE"]));
    log(c.cmd(&["ZADD", "zr", "1", "a", "2", "b"]));
    log(a.cmd(&["BZPOPMAX", "zempty", "zr", "0"]));
    log(a.cmd(&["BZPOPMIN", "nothing", "0.1"]));
    log(a.cmd(&["BZMPOP", "0.1", "1", "nothing", "MIN"]));
    a.send(&["BZPOPMIN", "z1", "z2", "5"]);
    pause();
    b.send(&["BZMPOP", "5", "1", "z2", "MAX", "COUNT", "5"]);
    pause();
    log(c.cmd(&["ZADD", "z2", "3", "c", "1", "a", "2", "b"]));
    log(a.read_reply());
    log(b.read_reply());
    // A list push does not wake a sorted-set waiter.
    a.send(&["BZPOPMIN", "mixed", "0.3"]);
    pause();
    log(c.cmd(&["RPUSH", "mixed", "x"]));
    log(a.read_reply());
    log(a.cmd(&["MULTI"]));
    log(a.cmd(&["BZPOPMIN", "nothing", "0"]));
    log(a.cmd(&["EXEC"]));

    // Streams: XREAD BLOCK with $ only sees entries added after it blocked.
    log(c.cmd(&["XADD", "s", "1-1", "f", "old"]));
    a.send(&["XREAD", "BLOCK", "5000", "STREAMS", "s", "$"]);
    pause();
    log(c.cmd(&["XADD", "s", "2-1", "f", "new"]));
    log(a.read_reply());
    log(a.cmd(&["XREAD", "BLOCK", "100", "STREAMS", "s", "$"]));
    log(a.cmd(&["XREAD", "BLOCK", "-1", "STREAMS", "s", "$"]));
    log(a.cmd(&["XREAD", "BLOCK", "abc", "STREAMS", "s", "$"]));
    // XREADGROUP BLOCK with > and several readers.
    log(c.cmd(&["XGROUP", "CREATE", "s", "g", "$"]));
    a.send(&["XREADGROUP", "GROUP", "g", "alice", "BLOCK", "5000", "STREAMS", "s", ">"]);
    pause();
    b.send(&["XREADGROUP", "GROUP", "g", "bob", "COUNT", "1", "BLOCK", "5000", "STREAMS", "s", ">"]);
    pause();
    log(c.cmd(&["XADD", "s", "3-1", "f", "x"]));
    log(a.read_reply());
    log(c.cmd(&["XADD", "s", "4-1", "f", "y"]));
    log(b.read_reply());
    log(c.cmd(&["XPENDING", "s", "g"]));
    log(a.cmd(&["MULTI"]));
    log(a.cmd(&["XREAD", "BLOCK", "0", "STREAMS", "s", "$"]));
    log(a.cmd(&["EXEC"]));
    seen
}

fn compare(resp3: bool) {
    let redis = start_redis(&[]);
    let ferrite = start_ferrite(&[]);
    let label = format!("resp3={resp3}");
    assert_same_steps(&script(redis.port, resp3), &script(ferrite.port, resp3), &label);
    assert_same_steps(&script_zset_stream(redis.port, resp3), &script_zset_stream(ferrite.port, resp3), &label);
}

#[test]
fn blocking_lists_resp2_match_redis() {
    compare(false);
}

#[test]
fn blocking_lists_resp3_match_redis() {
    compare(true);
}

#[test]
fn blocked_clients_show_in_info_and_client_list() {
    let f = start_ferrite(&[]);
    let mut a = Conn::connect(f.port).unwrap();
    let mut c = Conn::connect(f.port).unwrap();
    a.send(&["BLPOP", "k", "5"]);
    pause();
    let info = String::from_utf8_lossy(&c.cmd(&["INFO", "clients"])).to_string();
    assert!(info.contains("blocked_clients:1"), "{info}");
    let list = String::from_utf8_lossy(&c.cmd(&["CLIENT", "LIST"])).to_string();
    assert!(list.lines().any(|l| l.contains("flags=b") && l.contains("cmd=blpop")), "{list}");
    c.cmd(&["RPUSH", "k", "v"]);
    assert_eq!(show(&a.read_reply()), "*2\\r\\n$1\\r\\nk\\r\\n$1\\r\\nv\\r\\n");
    let info = String::from_utf8_lossy(&c.cmd(&["INFO", "clients"])).to_string();
    assert!(info.contains("blocked_clients:0"), "{info}");
}
