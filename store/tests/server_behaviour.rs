//! Server behaviour that is not byte-comparable with Redis (timings, memory
//! figures): INFO latencystats, errorstats/commandstats counts compared
//! field by field with a real redis-server, client eviction
//! (`maxmemory-clients`), lazyfree counters.
mod support;

use std::time::{Duration, Instant};
use support::{show, start_ferrite, start_redis, Conn};

/// Body of a bulk or verbatim reply.
fn text(reply: &[u8]) -> String {
    let s = String::from_utf8_lossy(reply).to_string();
    assert!(s.starts_with('$') || s.starts_with('='), "not a bulk reply: {}", show(reply));
    let start = s.find("\r\n").unwrap() + 2;
    let mut body = s[start..s.len() - 2].to_string();
    if s.starts_with('=') {
        body = body[4..].to_string();
    }
    body
}

fn info(c: &mut Conn, section: &str) -> String {
    text(&c.cmd(&["INFO", section]))
}

fn field(body: &str, name: &str) -> Option<String> {
    body.split("\r\n").find_map(|l| l.strip_prefix(name).and_then(|r| r.strip_prefix(':')).map(str::to_string))
}

/// errorstat lines, and cmdstat lines without their timings, sorted.
fn counts(c: &mut Conn) -> Vec<String> {
    let mut v: Vec<String> = Vec::new();
    for l in info(c, "errorstats").split("\r\n") {
        if l.starts_with("errorstat_") {
            v.push(l.to_string());
        }
    }
    for l in info(c, "commandstats").split("\r\n") {
        let Some((name, rest)) = l.split_once(':') else { continue };
        if !name.starts_with("cmdstat_") || name.contains("command|docs") || name == "cmdstat_info" {
            continue;
        }
        let kept: Vec<&str> =
            rest.split(',').filter(|kv| !kv.starts_with("usec") && !kv.starts_with("usec_per_call")).collect();
        v.push(format!("{name}:{}", kept.join(",")));
    }
    let st = info(c, "stats");
    v.push(format!("total_error_replies:{}", field(&st, "total_error_replies").unwrap_or_default()));
    v.sort();
    v
}

fn client_id(c: &mut Conn) -> String {
    let r = c.cmd(&["CLIENT", "ID"]);
    String::from_utf8_lossy(&r[1..]).trim().to_string()
}

fn wait_blocked(c: &mut Conn, n: usize) {
    let t0 = Instant::now();
    loop {
        let body = info(c, "clients");
        if field(&body, "blocked_clients").and_then(|v| v.parse::<usize>().ok()) == Some(n) {
            return;
        }
        assert!(t0.elapsed() < Duration::from_secs(10), "client never blocked: {body}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The same script on both servers: errors inside MULTI/EXEC, EXEC
/// without MULTI, EXECABORT, blocking commands unblocked by CLIENT UNBLOCK
/// (with and without error) and by their timeout.
fn errorstats_script(port: u16) -> Vec<String> {
    let mut c = Conn::connect(port).unwrap();
    let mut b = Conn::connect(port).unwrap();
    let bid = client_id(&mut b);
    c.cmd(&["CONFIG", "RESETSTAT"]);
    for line in ["MULTI", "SET a b", "AUTH a", "EXEC", "EXEC", "MULTI", "SET", "EXEC", "DEL l"] {
        c.line(line);
    }
    b.send(&["BLPOP", "l", "0"]);
    wait_blocked(&mut c, 1);
    c.cmd(&["CLIENT", "UNBLOCK", &bid, "ERROR"]);
    assert!(b.read_reply().starts_with(b"-UNBLOCKED"));
    b.send(&["BLPOP", "l", "0"]);
    wait_blocked(&mut c, 1);
    c.cmd(&["CLIENT", "UNBLOCK", &bid]);
    b.read_reply();
    b.cmd(&["BLPOP", "l", "0.01"]);
    b.send(&["BRPOP", "l", "0"]);
    wait_blocked(&mut c, 1);
    c.cmd(&["RPUSH", "l", "x"]);
    b.read_reply();
    counts(&mut c)
}

#[test]
fn errorstats_multi_exec_and_blocking_like_redis() {
    let r = start_redis(&[]);
    let f = start_ferrite(&[]);
    let want = errorstats_script(r.port);
    let got = errorstats_script(f.port);
    assert_eq!(got, want, "ferrite (left) vs redis (right)");
}

fn percentiles(body: &str, cmd: &str) -> Option<String> {
    field(body, &format!("latency_percentiles_usec_{cmd}"))
}

#[test]
fn latencystats_tracking_and_percentiles() {
    let f = start_ferrite(&[]);
    let mut c = Conn::connect(f.port).unwrap();
    c.cmd(&["CONFIG", "RESETSTAT"]);
    c.cmd(&["CONFIG", "SET", "latency-tracking", "no"]);
    c.cmd(&["SET", "a", "b"]);
    assert_eq!(percentiles(&info(&mut c, "latencystats"), "set"), None);
    c.cmd(&["CONFIG", "SET", "latency-tracking", "yes"]);
    c.cmd(&["SET", "a", "b"]);
    c.cmd(&["CLIENT", "ID"]);
    let body = info(&mut c, "latencystats");
    assert!(body.starts_with("# Latencystats\r\n"), "{body}");
    let line = percentiles(&body, "set").expect("set tracked");
    let parts: Vec<&str> = line.split(',').collect();
    assert_eq!(parts.len(), 3, "{line}");
    for (p, want) in parts.iter().zip(["p50=", "p99=", "p99.9="]) {
        assert!(p.starts_with(want), "{line}");
        let v = &p[want.len()..];
        let (_, frac) = v.split_once('.').expect("three decimals");
        assert_eq!(frac.len(), 3, "{line}");
    }
    assert!(percentiles(&body, "client|id").is_some(), "{body}");
    // Not in the default INFO, but in INFO all / everything.
    assert!(percentiles(&text(&c.cmd(&["INFO"])), "set").is_none());
    assert!(percentiles(&text(&c.cmd(&["INFO", "everything"])), "set").is_some());

    c.cmd(&["CONFIG", "SET", "latency-tracking-info-percentiles", "0 50 100"]);
    c.cmd(&["DEBUG", "SLEEP", "0.05"]);
    let body = info(&mut c, "latencystats");
    let line = percentiles(&body, "debug").expect("debug tracked");
    assert!(line.starts_with("p0=") && line.contains(",p50=") && line.contains(",p100="), "{line}");
    let p50: f64 = line.split(",p50=").nth(1).unwrap().split(',').next().unwrap().parse().unwrap();
    assert!(p50 >= 50000.0, "{line}");

    c.cmd(&["CONFIG", "SET", "latency-tracking-info-percentiles", ""]);
    let body = info(&mut c, "latencystats");
    assert_eq!(percentiles(&body, "debug").as_deref(), Some(""));

    c.cmd(&["CONFIG", "RESETSTAT"]);
    assert_eq!(percentiles(&info(&mut c, "latencystats"), "set"), None);

    // A blocking command is recorded when it is served.
    c.cmd(&["CONFIG", "SET", "latency-tracking-info-percentiles", "50"]);
    let mut b = Conn::connect(f.port).unwrap();
    b.send(&["BLPOP", "list", "0"]);
    wait_blocked(&mut c, 1);
    c.cmd(&["LPUSH", "list", "a"]);
    b.read_reply();
    assert!(percentiles(&info(&mut c, "latencystats"), "blpop").is_some_and(|l| l.starts_with("p50=")));
}

/// CLIENT LIST line of the client named `name`, if connected.
fn client_line(c: &mut Conn, name: &str) -> Option<String> {
    let list = text(&c.cmd(&["CLIENT", "LIST"]));
    list.lines().find(|l| l.contains(&format!(" name={name} "))).map(str::to_string)
}

fn client_field(line: &str, f: &str) -> u64 {
    line.split(' ')
        .find_map(|kv| kv.strip_prefix(f).and_then(|r| r.strip_prefix('=')))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {f} in {line}"))
}

/// A client named `name` that sent `n` bytes of an unfinished bulk argument.
fn big_qbuf_client(port: u16, name: &str, n: usize) -> Conn {
    let mut c = Conn::connect(port).unwrap();
    c.cmd(&["CLIENT", "SETNAME", name]);
    let mut req = format!("*2\r\n${n}\r\n").into_bytes();
    req.resize(req.len() + n, b'v');
    c.send_raw(&req);
    c
}

fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    let t0 = Instant::now();
    while !f() {
        assert!(t0.elapsed() < Duration::from_secs(10), "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn client_eviction_biggest_first_no_evict_and_stats() {
    let f = start_ferrite(&[]);
    let mut c = Conn::connect(f.port).unwrap();
    c.cmd(&["CLIENT", "SETNAME", "control"]);
    c.cmd(&["CLIENT", "NO-EVICT", "on"]);
    assert!(client_line(&mut c, "control").unwrap().contains(" flags=e "));
    // No limit: the buffered bytes show in qbuf and tot-mem of other clients.
    let _small = big_qbuf_client(f.port, "small", 100_000);
    let _mid = big_qbuf_client(f.port, "mid", 400_000);
    let _big = big_qbuf_client(f.port, "big", 1_500_000);
    for (name, n) in [("small", 100_000u64), ("mid", 400_000), ("big", 1_500_000)] {
        wait_until(name, || client_line(&mut c, name).is_some_and(|l| client_field(&l, "qbuf") == n));
        let l = client_line(&mut c, name).unwrap();
        assert!(client_field(&l, "tot-mem") >= n, "{l}");
    }
    // Lowering the limit evicts the biggest clients until the total is below it.
    c.cmd(&["CONFIG", "SET", "maxmemory-clients", "1mb"]);
    assert!(client_line(&mut c, "big").is_none());
    assert!(client_line(&mut c, "mid").is_some());
    assert!(client_line(&mut c, "small").is_some());
    let st = info(&mut c, "stats");
    assert_eq!(field(&st, "evicted_clients").as_deref(), Some("1"));
    c.cmd(&["CONFIG", "SET", "maxmemory-clients", "300000"]);
    assert!(client_line(&mut c, "mid").is_none());
    assert!(client_line(&mut c, "small").is_some());
    assert_eq!(field(&info(&mut c, "stats"), "evicted_clients").as_deref(), Some("2"));

    // A client that grows past the limit while sending is disconnected.
    let mut g = big_qbuf_client(f.port, "grower", 10_000);
    wait_until("grower", || client_line(&mut c, "grower").is_some());
    let mut more = vec![b'v'; 400_000];
    more.extend_from_slice(b"\r\n$1\r\nx\r\n");
    let _ = std::io::Write::write_all(&mut g.stream, &more);
    wait_until("grower evicted", || client_line(&mut c, "grower").is_none());
    assert!(g.try_read_reply().is_none(), "evicted client still served");

    // NO-EVICT on: over the limit and still connected (the other clients go).
    drop(_small);
    wait_until("small gone", || client_line(&mut c, "small").is_none());
    let mut ne = Conn::connect(f.port).unwrap();
    ne.cmd(&["CLIENT", "SETNAME", "noevict"]);
    ne.cmd(&["CLIENT", "NO-EVICT", "on"]);
    let mut req = b"*2\r\n$500000\r\n".to_vec();
    req.resize(req.len() + 500_000, b'v');
    ne.send_raw(&req);
    wait_until("noevict qbuf", || client_line(&mut c, "noevict").is_some_and(|l| client_field(&l, "qbuf") == 500_000));
    let l = client_line(&mut c, "noevict").unwrap();
    assert!(client_field(&l, "tot-mem") > 300_000 && l.contains(" flags=e "), "{l}");

    drop(ne);
    wait_until("noevict gone", || client_line(&mut c, "noevict").is_none());
    // Percentage of maxmemory: 10% of 4 MB = 419430 bytes.
    c.cmd(&["CONFIG", "SET", "maxmemory-clients", "0"]);
    c.cmd(&["CONFIG", "SET", "maxmemory", "4mb"]);
    c.cmd(&["CONFIG", "SET", "maxmemory-clients", "10%"]);
    let _p = big_qbuf_client(f.port, "pct", 200_000);
    wait_until("pct", || client_line(&mut c, "pct").is_some_and(|l| client_field(&l, "qbuf") == 200_000));
    let mut p2 = big_qbuf_client(f.port, "pct2", 450_000);
    wait_until("pct2 evicted", || client_line(&mut c, "pct2").is_none());
    assert!(p2.try_read_reply().is_none());
    c.cmd(&["CONFIG", "SET", "maxmemory", "0"]);
}

#[test]
fn client_eviction_multi_queue_and_subscriptions() {
    let f = start_ferrite(&[]);
    let mut c = Conn::connect(f.port).unwrap();
    c.cmd(&["CLIENT", "NO-EVICT", "on"]);
    c.cmd(&["CONFIG", "SET", "maxmemory-clients", "200000"]);
    // MULTI queue: multi-mem grows until the client is evicted.
    let mut m = Conn::connect(f.port).unwrap();
    m.cmd(&["CLIENT", "SETNAME", "multi"]);
    m.cmd(&["MULTI"]);
    let v = "x".repeat(20_000);
    let mut evicted = false;
    for _ in 0..20 {
        m.send(&["SET", "k", &v]);
        if m.try_read_reply().is_none() {
            evicted = true;
            break;
        }
    }
    assert!(evicted, "MULTI queue never evicted");
    // Subscriptions.
    let mut s = Conn::connect(f.port).unwrap();
    let mut evicted = false;
    for j in 0..20_000 {
        s.send(&["PSUBSCRIBE", &format!("pattern-{j}")]);
        if s.try_read_reply().is_none() {
            evicted = true;
            break;
        }
    }
    assert!(evicted, "subscriptions never evicted");
    let st = info(&mut c, "stats");
    assert_eq!(field(&st, "evicted_clients").as_deref(), Some("2"));
}

/// UNLINK / DEL of small and big values on both servers: the lazyfree
/// counters must match Redis's.
fn lazyfree_script(port: u16) -> Vec<String> {
    let mut c = Conn::connect(port).unwrap();
    c.cmd(&["CONFIG", "RESETSTAT"]);
    let mut sadd: Vec<String> = vec!["SADD".into(), "big".into()];
    sadd.extend((0..2000).map(|i| format!("m{i}")));
    let mut out = Vec::new();
    let mut snapshot = |c: &mut Conn, label: &str| {
        let t0 = Instant::now();
        loop {
            let m = info(c, "memory");
            if field(&m, "lazyfree_pending_objects").as_deref() == Some("0") {
                out.push(format!("{label}: freed={}", field(&m, "lazyfreed_objects").unwrap_or_default()));
                return;
            }
            assert!(t0.elapsed() < Duration::from_secs(10), "lazyfree never done");
            std::thread::sleep(Duration::from_millis(10));
        }
    };
    c.cmd(&sadd);
    c.cmd(&["SADD", "small", "a", "b"]);
    c.cmd(&["UNLINK", "small", "big", "missing"]);
    snapshot(&mut c, "unlink");
    c.cmd(&sadd);
    c.cmd(&["DEL", "big"]);
    snapshot(&mut c, "del");
    c.cmd(&["CONFIG", "SET", "lazyfree-lazy-user-del", "yes"]);
    c.cmd(&sadd);
    c.cmd(&["DEL", "big"]);
    snapshot(&mut c, "del lazy");
    c.cmd(&["CONFIG", "SET", "lazyfree-lazy-user-del", "no"]);
    c.cmd(&["CONFIG", "SET", "stream-node-max-entries", "5"]);
    for i in 0..500 {
        c.cmd(&["XADD", "s", "*", "f", &i.to_string()]);
    }
    c.cmd(&["XADD", "s1", "*", "f", "v"]);
    c.cmd(&["UNLINK", "s", "s1"]);
    snapshot(&mut c, "streams");
    c.cmd(&["CONFIG", "RESETSTAT"]);
    snapshot(&mut c, "resetstat");
    out
}

#[test]
fn lazyfree_counters_like_redis() {
    let r = start_redis(&[]);
    let f = start_ferrite(&[]);
    let want = lazyfree_script(r.port);
    let got = lazyfree_script(f.port);
    assert_eq!(got, want, "ferrite (left) vs redis (right)");
}

/// rdb_changes_since_last_save after writes and flushes, with and without
/// save rules (FLUSHALL saves then): the same counts as Redis.
fn dirty_script(port: u16) -> Vec<String> {
    let mut c = Conn::connect(port).unwrap();
    let mut out = Vec::new();
    let changes = |c: &mut Conn| field(&info(c, "persistence"), "rdb_changes_since_last_save").unwrap_or_default();
    c.cmd(&["CONFIG", "SET", "save", ""]);
    c.cmd(&["FLUSHALL"]);
    let base: i64 = changes(&mut c).parse().unwrap();
    let mut rel = |c: &mut Conn, label: &str| {
        let v: i64 = changes(c).parse().unwrap();
        out.push(format!("{label}: {}", v - base));
    };
    for line in ["SET a 1", "SET b 2", "SELECT 1", "SET c 3", "SELECT 0"] {
        c.line(line);
    }
    rel(&mut c, "writes");
    c.cmd(&["FLUSHDB"]);
    rel(&mut c, "flushdb");
    c.cmd(&["FLUSHDB"]);
    rel(&mut c, "flushdb empty");
    c.cmd(&["FLUSHALL"]);
    rel(&mut c, "flushall");
    for line in ["MULTI", "SET x 1", "SET y 2", "FLUSHALL", "EXEC"] {
        c.line(line);
    }
    rel(&mut c, "multi flushall");
    c.cmd(&["CONFIG", "SET", "save", "3600 1 300 100 60 10000"]);
    c.cmd(&["SET", "key", "value"]);
    c.cmd(&["FLUSHALL"]);
    out.push(format!("flushall with save rules: {}", changes(&mut c)));
    c.cmd(&["CONFIG", "SET", "save", ""]);
    out
}

#[test]
fn flush_dirty_counter_like_redis() {
    let r = start_redis(&[]);
    let f = start_ferrite(&[]);
    let want = dirty_script(r.port);
    let got = dirty_script(f.port);
    assert_eq!(got, want, "ferrite (left) vs redis (right)");
}

fn oom_score_adj(pid: u32) -> i64 {
    std::fs::read_to_string(format!("/proc/{pid}/oom_score_adj")).unwrap().trim().parse().unwrap()
}

#[test]
fn oom_score_adj_applies_relative_absolute_and_restores() {
    let f = start_ferrite(&[]);
    let pid = f.child.id();
    let mut c = Conn::connect(f.port).unwrap();
    let base = oom_score_adj(pid);
    c.cmd(&["CONFIG", "SET", "oom-score-adj-values", "9 20 30", "oom-score-adj", "yes"]);
    assert_eq!(oom_score_adj(pid), (base + 9).clamp(-1000, 1000));
    c.cmd(&["CONFIG", "SET", "oom-score-adj-values", "15 20 30"]);
    assert_eq!(oom_score_adj(pid), (base + 15).clamp(-1000, 1000));
    c.cmd(&["CONFIG", "SET", "oom-score-adj", "absolute"]);
    assert_eq!(oom_score_adj(pid), 15);
    c.cmd(&["CONFIG", "SET", "oom-score-adj", "relative"]);
    assert_eq!(oom_score_adj(pid), (base + 15).clamp(-1000, 1000));
    c.cmd(&["CONFIG", "SET", "oom-score-adj", "no"]);
    assert_eq!(oom_score_adj(pid), base);
    // Disabled: changing the values does not touch the process.
    c.cmd(&["CONFIG", "SET", "oom-score-adj-values", "1 1 1"]);
    assert_eq!(oom_score_adj(pid), base);
}

fn used_memory(c: &mut Conn) -> i64 {
    field(&info(c, "memory"), "used_memory").unwrap().parse().unwrap()
}

/// A big argument's buffer is not kept by the connection afterwards (nor
/// by a replica's link: Redis's unit/pendingquerybuf).
#[test]
fn big_argument_buffer_is_released() {
    let f = start_ferrite(&[]);
    let mut c = Conn::connect(f.port).unwrap();
    let mut w = Conn::connect(f.port).unwrap();
    let base = used_memory(&mut c);
    let v = vec![b'x'; 16 << 20];
    assert_eq!(w.cmd(&[&b"SET"[..], b"big", &v]), b"+OK\r\n");
    assert_eq!(w.cmd(&["DEL", "big"]), b":1\r\n");
    std::thread::sleep(Duration::from_millis(200));
    let after = used_memory(&mut c);
    assert!(after - base < 4 << 20, "used_memory {base} -> {after} after a 16 MB SET + DEL");
}
