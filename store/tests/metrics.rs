//! Prometheus endpoint of the store: start `ferrite --metrics-listen`, run commands, scrape, check the
//! values move; every family listed even at zero; HTTP edge cases; the TOML key and the env variable.
mod support;
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use support::*;

/// A ferrite with metrics on (killed on drop); `port` is the RESP port, `mport` the metrics port.
struct Metered {
    child: std::process::Child,
    port: u16,
    mport: u16,
}

impl Drop for Metered {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn port_of(line: &str) -> u16 {
    line.trim()
        .trim_end_matches("/metrics")
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("unexpected ferrite banner: {line}"))
}

fn spawn_with(cmd: &mut Command) -> Metered {
    let mut child = cmd.stdout(Stdio::piped()).stderr(Stdio::inherit()).spawn().expect("spawn ferrite");
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let ready = lines.next().expect("ferrite printed nothing").unwrap();
    let port = port_of(&ready);
    let mline = lines.next().expect("ferrite printed no metrics line").unwrap();
    assert!(mline.contains("metrics on http://"), "unexpected metrics banner: {mline}");
    let mport = port_of(&mline);
    std::thread::spawn(move || for _ in lines {});
    Metered { child, port, mport }
}

fn start() -> Metered {
    spawn_with(Command::new(ferrite_bin()).args([
        "--port",
        "0",
        "--bind",
        "127.0.0.1",
        "--metrics-listen",
        "127.0.0.1:0",
        "--hz",
        "50",
    ]))
}

/// One HTTP exchange; returns (status line, body).
fn http(port: u16, request: &[u8]) -> (String, String) {
    let mut s = TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_secs(2)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(request).unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let text = String::from_utf8_lossy(&out).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    (head.lines().next().unwrap_or("").to_string(), body.to_string())
}

fn scrape_text(mport: u16) -> String {
    let (status, body) = http(mport, b"GET /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n");
    assert_eq!(status, "HTTP/1.1 200 OK", "scrape failed: {body}");
    body
}

/// Samples: `name{labels}` -> value.
fn scrape(mport: u16) -> HashMap<String, f64> {
    let body = scrape_text(mport);
    let mut m = HashMap::new();
    for line in body.lines() {
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        let (k, v) = line.rsplit_once(' ').unwrap_or_else(|| panic!("bad sample line {line:?}"));
        let v: f64 = v.parse().unwrap_or_else(|_| panic!("bad value in {line:?}"));
        m.insert(k.to_string(), v);
    }
    m
}

fn val(m: &HashMap<String, f64>, k: &str) -> f64 {
    *m.get(k).unwrap_or_else(|| panic!("no sample {k} in scrape: {:?}", m.keys().collect::<Vec<_>>()))
}

#[test]
fn counters_move_with_commands() {
    let f = start();
    let mut c = Conn::connect(f.port).unwrap();
    let before = scrape(f.mport);
    for k in ["ferrite_commands_processed_total", "ferrite_keyspace_hits_total", "ferrite_uptime_seconds"] {
        val(&before, k);
    }

    assert_eq!(c.line("SET k v"), b"+OK\r\n");
    assert_eq!(c.line("GET k"), b"$1\r\nv\r\n");
    assert_eq!(c.line("GET k"), b"$1\r\nv\r\n");
    assert_eq!(c.line("GET missing"), b"$-1\r\n");
    assert!(c.line("LPUSH k x").starts_with(b"-WRONGTYPE"));
    assert_eq!(c.line("SET t v PX 30"), b"+OK\r\n");
    assert_eq!(c.line("SET e v EX 1000"), b"+OK\r\n");
    assert_eq!(c.line("SELECT 3"), b"+OK\r\n");
    assert_eq!(c.line("SET a b"), b"+OK\r\n");
    assert_eq!(c.line("SELECT 0"), b"+OK\r\n");
    assert_eq!(c.line("CONFIG SET maxmemory 123456789"), b"+OK\r\n");

    // A blocked client and a subscriber.
    let mut blocked = Conn::connect(f.port).unwrap();
    blocked.send(&["BLPOP", "nolist", "0"]);
    let mut sub = Conn::connect(f.port).unwrap();
    sub.cmd(&["SUBSCRIBE", "ch1"]);
    sub.cmd(&["PSUBSCRIBE", "p*"]);
    // The key with a 30 ms TTL expires through the active sweep (hz 50).
    let deadline = Instant::now() + Duration::from_secs(10);
    let after = loop {
        let m = scrape(f.mport);
        let ready = val(&m, "ferrite_blocked_clients") == 1.0 && val(&m, "ferrite_expired_keys_total") >= 1.0;
        if ready || Instant::now() > deadline {
            break m;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(val(&after, "ferrite_commands_processed_total") >= val(&before, "ferrite_commands_processed_total") + 10.0);
    assert_eq!(val(&after, "ferrite_keyspace_hits_total") - val(&before, "ferrite_keyspace_hits_total"), 2.0);
    assert_eq!(val(&after, "ferrite_keyspace_misses_total") - val(&before, "ferrite_keyspace_misses_total"), 1.0);
    assert!(val(&after, "ferrite_error_replies_total") >= 1.0);
    assert_eq!(val(&after, "ferrite_expired_keys_total"), 1.0);
    assert_eq!(val(&after, "ferrite_blocked_clients"), 1.0);
    assert_eq!(val(&after, "ferrite_connected_clients"), 3.0);
    assert!(val(&after, "ferrite_connections_received_total") >= 3.0);
    assert_eq!(val(&after, "ferrite_pubsub_channels"), 1.0);
    assert_eq!(val(&after, "ferrite_pubsub_patterns"), 1.0);
    assert_eq!(val(&after, "ferrite_memory_max_bytes"), 123456789.0);
    assert!(val(&after, "ferrite_memory_used_bytes") > 0.0);
    assert!(val(&after, "ferrite_memory_rss_bytes") > 0.0);
    assert_eq!(val(&after, "ferrite_db_keys{db=\"0\"}"), 2.0);
    assert_eq!(val(&after, "ferrite_db_expiring_keys{db=\"0\"}"), 1.0);
    assert_eq!(val(&after, "ferrite_db_keys{db=\"3\"}"), 1.0);
    assert!(val(&after, "ferrite_rdb_changes_since_last_save") >= 3.0);
    assert!(val(&after, "ferrite_net_input_bytes_total") > val(&before, "ferrite_net_input_bytes_total"));
    assert_eq!(val(&after, "ferrite_build_info{version=\"0.1.0\",redis_version=\"7.0.15\"}"), 1.0);

    // Disconnects and CONFIG RESETSTAT show up at the next scrape.
    drop(blocked);
    drop(sub);
    assert_eq!(c.line("CONFIG RESETSTAT"), b"+OK\r\n");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let m = scrape(f.mport);
        if val(&m, "ferrite_connected_clients") == 1.0 && val(&m, "ferrite_blocked_clients") == 0.0 {
            assert_eq!(val(&m, "ferrite_keyspace_hits_total"), 0.0);
            assert_eq!(val(&m, "ferrite_pubsub_channels"), 0.0);
            break;
        }
        assert!(Instant::now() < deadline, "disconnected clients still counted: {m:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn every_family_is_listed_even_without_samples() {
    let f = start();
    let body = scrape_text(f.mport);
    for name in ferrite::metrics::family_names() {
        assert!(body.contains(&format!("# HELP {name} ")), "no HELP for {name}");
        assert!(body.contains(&format!("# TYPE {name} ")), "no TYPE for {name}");
    }
    // Every sample line is `name[{labels}] value` with a known family name.
    let names = ferrite::metrics::family_names();
    for line in body.lines().filter(|l| !l.starts_with('#') && !l.is_empty()) {
        let name = line.split(['{', ' ']).next().unwrap();
        assert!(names.contains(&name), "unexpected sample {line:?}");
        assert!(line.rsplit_once(' ').unwrap().1.parse::<f64>().is_ok(), "bad value in {line:?}");
    }
}

#[test]
fn http_edge_cases() {
    let f = start();
    let (st, _) = http(f.mport, b"GET / HTTP/1.1\r\n\r\n");
    assert_eq!(st, "HTTP/1.1 404 Not Found");
    let (st, _) = http(f.mport, b"POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n");
    assert_eq!(st, "HTTP/1.1 404 Not Found");
    let (st, _) = http(f.mport, b"garbage\r\n\r\n");
    assert_eq!(st, "HTTP/1.1 404 Not Found");
    let (st, body) = http(f.mport, b"GET /metrics?x=1 HTTP/1.0\r\n\r\n");
    assert_eq!(st, "HTTP/1.1 200 OK");
    assert!(body.contains("ferrite_uptime_seconds "));
    // An endless request head is cut off without an answer; the server keeps serving.
    {
        let mut s = TcpStream::connect(("127.0.0.1", f.mport)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let chunk = vec![b'a'; 8192];
        for _ in 0..4 {
            if s.write_all(&chunk).is_err() {
                break;
            }
        }
        let mut out = Vec::new();
        let _ = s.read_to_end(&mut out);
        assert!(out.is_empty(), "answered an oversized head: {}", String::from_utf8_lossy(&out));
    }
    // Several scrapes at once.
    let hs: Vec<_> = (0..8).map(|_| std::thread::spawn(move || scrape(f.mport).len())).collect();
    for h in hs {
        assert!(h.join().unwrap() > 20);
    }
    let mut c = Conn::connect(f.port).unwrap();
    assert_eq!(c.line("PING"), b"+PONG\r\n");
}

#[test]
fn metrics_listen_from_file_and_env() {
    let dir = TempDir::new("metrics");
    let path = dir.0.join("ferrite.toml");
    std::fs::write(&path, "bind = \"127.0.0.1\"\nport = 0\nmetrics-listen = \"127.0.0.1:0\"\n").unwrap();
    let f = spawn_with(Command::new(ferrite_bin()).arg("--config").arg(&path));
    assert!(scrape(f.mport).contains_key("ferrite_uptime_seconds"));
    drop(f);
    let f = spawn_with(
        Command::new(ferrite_bin())
            .args(["--port", "0", "--bind", "127.0.0.1"])
            .env("FERRITE_METRICS_LISTEN", "127.0.0.1:0"),
    );
    assert!(scrape(f.mport).contains_key("ferrite_uptime_seconds"));
}

#[test]
fn bad_metrics_address_fails_at_start() {
    let out = Command::new(ferrite_bin())
        .args(["--port", "0", "--metrics-listen", "256.1.1.1:99999"])
        .output()
        .expect("run ferrite");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cannot listen for metrics"), "stderr: {err}");
}

/// The INFO text of a RESP reply (bulk or verbatim `txt:`).
fn info_text(reply: &[u8]) -> String {
    let s = String::from_utf8_lossy(reply).into_owned();
    let body = s.split_once("\r\n").map(|(_, b)| b).unwrap_or("");
    body.strip_prefix("txt:").unwrap_or(body).to_string()
}

#[test]
fn scrape_agrees_with_info() {
    let f = start();
    let mut c = Conn::connect(f.port).unwrap();
    for line in ["SET a 1", "GET a", "GET b", "LPUSH a x", "GET", "HSET h f v", "SELECT 1", "SET z 1 EX 100"] {
        c.line(line);
    }
    // Nothing else runs now: INFO and the scrape see the same counters (INFO does not count itself).
    let info = info_text(&c.line("INFO everything"));
    let m = scrape(f.mport);
    let field = |k: &str| -> f64 {
        info.lines()
            .find_map(|l| l.strip_prefix(&format!("{k}:")))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("INFO has no numeric {k}"))
    };
    for (metric, key) in [
        ("ferrite_keyspace_hits_total", "keyspace_hits"),
        ("ferrite_keyspace_misses_total", "keyspace_misses"),
        ("ferrite_error_replies_total", "total_error_replies"),
        ("ferrite_connections_received_total", "total_connections_received"),
        ("ferrite_max_clients", "maxclients"),
        ("ferrite_rdb_changes_since_last_save", "rdb_changes_since_last_save"),
        ("ferrite_memory_max_bytes", "maxmemory"),
        ("ferrite_pubsub_channels", "pubsub_channels"),
    ] {
        assert_eq!(val(&m, metric), field(key), "{metric} vs INFO {key}");
    }
    // Per-command and per-error families follow INFO's commandstats / errorstats lines when it has any.
    for l in info.lines() {
        if let Some((cmd, rest)) = l.strip_prefix("cmdstat_").and_then(|r| r.split_once(':')) {
            if cmd == "info" {
                continue;
            }
            let calls: f64 = rest.split(',').find_map(|kv| kv.strip_prefix("calls=")).unwrap().parse().unwrap();
            assert_eq!(val(&m, &format!("ferrite_command_calls_total{{command=\"{cmd}\"}}")), calls, "{l}");
        }
        if let Some((code, rest)) = l.strip_prefix("errorstat_").and_then(|r| r.split_once(':')) {
            let n: f64 = rest.strip_prefix("count=").unwrap().parse().unwrap();
            assert_eq!(val(&m, &format!("ferrite_errors_total{{error=\"{code}\"}}")), n, "{l}");
        }
        let db_line = l.strip_prefix("db").and_then(|r| r.split_once(':'));
        if let Some((db, rest)) = db_line.filter(|(d, _)| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit())) {
            let keys: f64 = rest.split(',').find_map(|kv| kv.strip_prefix("keys=")).unwrap().parse().unwrap();
            assert_eq!(val(&m, &format!("ferrite_db_keys{{db=\"{db}\"}}")), keys, "{l}");
        }
    }
}
