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
