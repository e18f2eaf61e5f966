//! Differential tests: server commands (transcripts/server*.txt), plus
//! property tests for the parts whose output is not byte-comparable with
//! Redis (INFO, CLIENT LIST, MONITOR, SHUTDOWN, DEBUG SLEEP, ...).
mod support;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use support::{show, start_ferrite, start_redis, Conn};

#[test]
fn transcripts_server() {
    support::run_transcripts("server");
}

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

fn int(reply: &[u8]) -> i64 {
    let s = String::from_utf8_lossy(reply);
    assert!(s.starts_with(':'), "not an integer: {}", show(reply));
    s[1..].trim().parse().unwrap()
}

fn info_fields(body: &str) -> Vec<(String, String)> {
    let mut v = Vec::new();
    for line in body.split("\r\n") {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (k, val) = line.split_once(':').unwrap_or_else(|| panic!("INFO line without ':': {line:?}"));
        v.push((k.to_string(), val.to_string()));
    }
    v
}

#[test]
fn info_fields_and_format() {
    let f = start_ferrite(&[]);
    let mut c = Conn::connect(f.port).unwrap();
    c.cmd(&["SET", "a", "1"]);
    c.cmd(&["SET", "b", "2", "EX", "100"]);
    c.cmd(&["SELECT", "3"]);
    c.cmd(&["SET", "c", "1"]);
    // On a loaded machine the start-up probe connection may not be reaped yet (bounded wait).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while !text(&c.cmd(&["INFO", "clients"])).contains("connected_clients:1\r\n")
        && std::time::Instant::now() < deadline
    {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let body = text(&c.cmd(&["INFO"]));
    assert!(body.starts_with("# Server\r\nredis_version:7.0.15\r\n"), "{body}");
    assert!(body.ends_with("\r\n"));
    for h in ["# Clients", "# Memory", "# Persistence", "# Stats", "# Replication", "# CPU", "# Cluster", "# Keyspace"]
    {
        assert!(body.contains(&format!("\r\n\r\n{h}\r\n")), "missing {h}");
    }
    let fields = info_fields(&body);
    let get = |k: &str| fields.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone()).unwrap_or_else(|| panic!("{k}"));
    assert_eq!(get("tcp_port"), f.port.to_string());
    assert_eq!(get("process_id"), f.child.id().to_string());
    assert_eq!(get("run_id").len(), 40);
    assert_eq!(get("role"), "master");
    assert_eq!(get("cluster_enabled"), "0");
    assert_eq!(get("redis_mode"), "standalone");
    assert!(!get("ferrite_version").is_empty());
    assert!(get("executable").contains("ferrite"));
    assert_eq!(get("connected_clients"), "1");
    assert!(get("used_memory").parse::<u64>().unwrap() > 0);
    assert!(get("total_commands_processed").parse::<u64>().unwrap() >= 4);
    assert!(get("uptime_in_seconds").parse::<u64>().is_ok());
    assert_eq!(get("db0"), "keys=2,expires=1,avg_ttl=0");
    assert_eq!(get("db3"), "keys=1,expires=0,avg_ttl=0");
    assert!(!fields.iter().any(|(k, _)| k == "db1"), "empty dbs are not listed");

    // Section selection, in Redis's order whatever the request order.
    let body = text(&c.cmd(&["INFO", "keyspace", "SERVER"]));
    let s = body.find("# Server").unwrap();
    let k = body.find("# Keyspace").unwrap();
    assert!(s < k);
    assert!(!body.contains("# Clients"));
    let all = text(&c.cmd(&["INFO", "all"]));
    assert!(all.contains("# Commandstats") && all.contains("# Modules") && all.contains("# Latencystats"));
    let every = text(&c.cmd(&["INFO", "everything"]));
    assert!(every.contains("# Modules"));
    assert_eq!(text(&c.cmd(&["INFO", "nosuch"])), "");

    // RESP3: verbatim string.
    c.cmd(&["HELLO", "3"]);
    let r = c.cmd(&["INFO", "server"]);
    assert!(r.starts_with(b"="), "{}", show(&r));
    assert!(text(&r).starts_with("# Server\r\n"));

    // CONFIG RESETSTAT clears counters.
    c.cmd(&["CONFIG", "RESETSTAT"]);
    let fields = info_fields(&text(&c.cmd(&["INFO", "stats"])));
    let n: u64 = fields.iter().find(|(k, _)| k == "total_commands_processed").unwrap().1.parse().unwrap();
    assert!(n <= 1, "total_commands_processed after RESETSTAT: {n}");
}

const CLIENT_FIELDS: &[&str] = &[
    "id",
    "addr",
    "laddr",
    "fd",
    "name",
    "age",
    "idle",
    "flags",
    "db",
    "sub",
    "psub",
    "ssub",
    "multi",
    "qbuf",
    "qbuf-free",
    "argv-mem",
    "multi-mem",
    "rbs",
    "rbp",
    "obl",
    "oll",
    "omem",
    "tot-mem",
    "events",
    "cmd",
    "user",
    "redir",
    "resp",
];

fn parse_client_line(line: &str) -> Vec<(String, String)> {
    line.split(' ')
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or_else(|| panic!("bad field {kv:?} in {line:?}"));
            (k.to_string(), v.to_string())
        })
        .collect()
}

#[test]
fn client_list_and_info_format() {
    let f = start_ferrite(&[]);
    let mut a = Conn::connect(f.port).unwrap();
    let mut b = Conn::connect(f.port).unwrap();
    let id_a = int(&a.cmd(&["CLIENT", "ID"]));
    let id_b = int(&b.cmd(&["CLIENT", "ID"]));
    assert_ne!(id_a, id_b);
    assert_eq!(a.cmd(&["CLIENT", "SETNAME", "alpha"]), b"+OK\r\n");
    assert_eq!(a.cmd(&["CLIENT", "GETNAME"]), b"$5\r\nalpha\r\n");
    b.cmd(&["SELECT", "2"]);
    b.cmd(&["MULTI"]);
    b.cmd(&["PING"]);
    let list = text(&a.cmd(&["CLIENT", "LIST"]));
    assert!(list.ends_with('\n'));
    // The start-up readiness probe (a PING on its own connection) may not be reaped yet on a loaded machine.
    let lines: Vec<&str> = list
        .trim_end_matches('\n')
        .split('\n')
        .filter(|l| l.starts_with(&format!("id={id_a} ")) || l.starts_with(&format!("id={id_b} ")))
        .collect();
    assert_eq!(lines.len(), 2, "{list}");
    for l in &lines {
        let fields = parse_client_line(l);
        let names: Vec<&str> = fields.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(names, CLIENT_FIELDS, "{l}");
    }
    let la = parse_client_line(lines.iter().find(|l| l.starts_with(&format!("id={id_a} "))).unwrap());
    let g = |f: &[(String, String)], k: &str| f.iter().find(|(n, _)| n == k).unwrap().1.clone();
    assert_eq!(g(&la, "name"), "alpha");
    assert_eq!(g(&la, "cmd"), "client|list");
    assert_eq!(g(&la, "flags"), "N");
    assert_eq!(g(&la, "laddr"), format!("127.0.0.1:{}", f.port));
    assert_eq!(g(&la, "resp"), "2");
    // As in Redis's introspection test: the caller's own command is still
    // in its query buffer (*2 $6 client $4 list = 26 bytes).
    assert_eq!(g(&la, "qbuf"), "26");
    assert_eq!(g(&la, "argv-mem"), "10");
    let lb = parse_client_line(lines.iter().find(|l| l.starts_with(&format!("id={id_b} "))).unwrap());
    assert_eq!(g(&lb, "db"), "2");
    assert_eq!(g(&lb, "multi"), "1");
    assert_eq!(g(&lb, "flags"), "x");
    b.cmd(&["DISCARD"]);

    // LIST ID picks clients in the given order, skipping unknown ids.
    let l = text(&a.cmd(&["CLIENT", "LIST", "ID", &id_b.to_string(), "99999", &id_a.to_string()]));
    let ids: Vec<String> = l.lines().map(|x| g(&parse_client_line(x), "id")).collect();
    assert_eq!(ids, [id_b.to_string(), id_a.to_string()]);
    // TYPE filters.
    assert_eq!(text(&a.cmd(&["CLIENT", "LIST", "TYPE", "normal"])).lines().count(), 2);
    // (Only where SUBSCRIBE exists: pub/sub is another family's work.)
    if !b.cmd(&["SUBSCRIBE", "ch"]).starts_with(b"-") {
        let l = text(&a.cmd(&["CLIENT", "LIST", "TYPE", "pubsub"]));
        assert_eq!(l.lines().count(), 1);
        let lb = parse_client_line(l.lines().next().unwrap());
        assert_eq!(g(&lb, "sub"), "1");
        assert_eq!(g(&lb, "flags"), "P");
    }

    // CLIENT INFO: one line for the caller.
    a.cmd(&["CLIENT", "NO-EVICT", "on"]);
    let info = text(&a.cmd(&["CLIENT", "INFO"]));
    assert!(info.ends_with('\n') && info.lines().count() == 1);
    let fi = parse_client_line(info.trim_end());
    assert_eq!(g(&fi, "id"), id_a.to_string());
    assert_eq!(g(&fi, "cmd"), "client|info");
    assert_eq!(g(&fi, "flags"), "e");
    // RESP3: verbatim.
    a.cmd(&["HELLO", "3"]);
    assert!(a.cmd(&["CLIENT", "INFO"]).starts_with(b"="));
}

#[test]
fn client_kill_forms() {
    let f = start_ferrite(&[]);
    let mut a = Conn::connect(f.port).unwrap();
    let mut b = Conn::connect(f.port).unwrap();
    let mut c = Conn::connect(f.port).unwrap();
    let id_b = int(&b.cmd(&["CLIENT", "ID"]));
    c.cmd(&["PING"]);
    // New form by ID: count of killed clients; the victim is disconnected.
    assert_eq!(int(&a.cmd(&["CLIENT", "KILL", "ID", &id_b.to_string()])), 1);
    b.send(&["PING"]);
    assert!(b.try_read_reply().is_none(), "killed client still answered");
    // Old form by address.
    let info = text(&c.cmd(&["CLIENT", "INFO"]));
    let addr = info.split(' ').find_map(|kv| kv.strip_prefix("addr=")).unwrap().to_string();
    assert_eq!(a.cmd(&["CLIENT", "KILL", &addr]), b"+OK\r\n");
    c.send(&["PING"]);
    assert!(c.try_read_reply().is_none());
    assert_eq!(a.cmd(&["CLIENT", "KILL", &addr]), b"-ERR No such client\r\n");
    // SKIPME yes (default) spares the caller; SKIPME no kills it after the reply.
    let mut d = Conn::connect(f.port).unwrap();
    d.cmd(&["PING"]);
    // On a loaded machine the killed clients (and the start-up probe) may not be reaped yet: wait (bounded) until
    // only `a` and `d` are listed.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while text(&a.cmd(&["CLIENT", "LIST"])).lines().count() > 2 && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert_eq!(int(&a.cmd(&["CLIENT", "KILL", "TYPE", "normal"])), 1);
    assert_eq!(a.cmd(&["PING"]), b"+PONG\r\n");
    assert_eq!(int(&a.cmd(&["CLIENT", "KILL", "TYPE", "normal", "SKIPME", "no"])), 1);
    a.send(&["PING"]);
    assert!(a.try_read_reply().is_none());
    let mut e = Conn::connect(f.port).unwrap();
    assert_eq!(int(&e.cmd(&["CLIENT", "KILL", "USER", "default"])), 0);
    assert_eq!(int(&e.cmd(&["CLIENT", "KILL", "LADDR", &format!("127.0.0.1:{}", f.port), "SKIPME", "yes"])), 0);
}

#[test]
fn client_reply_modes() {
    let f = start_ferrite(&[]);
    let mut a = Conn::connect(f.port).unwrap();
    // OFF: nothing until ON, which replies +OK.
    a.send(&["CLIENT", "REPLY", "OFF"]);
    a.send(&["SET", "k", "1"]);
    a.send(&["GET", "k"]);
    a.send(&["CLIENT", "REPLY", "ON"]);
    assert_eq!(a.read_reply(), b"+OK\r\n");
    // SKIP: the next command's reply only.
    a.send(&["CLIENT", "REPLY", "SKIP"]);
    a.send(&["SET", "k", "2"]);
    a.send(&["GET", "k"]);
    assert_eq!(a.read_reply(), b"$1\r\n2\r\n");
    assert_eq!(a.cmd(&["PING"]), b"+PONG\r\n");
}

#[test]
fn monitor_sees_other_connections() {
    let f = start_ferrite(&[]);
    let mut m = Conn::connect(f.port).unwrap();
    assert_eq!(m.cmd(&["MONITOR"]), b"+OK\r\n");
    let mut c = Conn::connect(f.port).unwrap();
    c.cmd(&["SET", "mkey", "hello world"]);
    let line = String::from_utf8(m.read_reply()).unwrap();
    assert!(line.starts_with('+'), "{line}");
    assert!(line.contains("[0 127.0.0.1:"), "{line}");
    assert!(line.ends_with("\"SET\" \"mkey\" \"hello world\"\r\n"), "{line}");
    let mon = text(&c.cmd(&["CLIENT", "LIST"]));
    assert!(mon.lines().any(|l| l.contains("flags=O ")), "{mon}");
}

#[test]
fn shutdown_stops_the_server() {
    let mut f = start_ferrite(&[]);
    let mut c = Conn::connect(f.port).unwrap();
    assert_eq!(c.cmd(&["SHUTDOWN", "NOSAVE", "ABORT"]), b"-ERR syntax error\r\n");
    c.send(&["SHUTDOWN", "NOSAVE"]);
    assert!(c.try_read_reply().is_none(), "SHUTDOWN replied");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(st) = f.child.try_wait().unwrap() {
            assert!(st.success(), "exit status {st}");
            break;
        }
        assert!(Instant::now() < deadline, "ferrite still running after SHUTDOWN");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn debug_sleep_blocks() {
    let f = start_ferrite(&[]);
    let mut c = Conn::connect(f.port).unwrap();
    let t = Instant::now();
    assert_eq!(c.cmd(&["DEBUG", "SLEEP", "0.3"]), b"+OK\r\n");
    let el = t.elapsed();
    assert!(el >= Duration::from_millis(290) && el < Duration::from_secs(5), "{el:?}");
    let t = Instant::now();
    assert_eq!(c.cmd(&["DEBUG", "SLEEP", "0"]), b"+OK\r\n");
    assert!(t.elapsed() < Duration::from_secs(1));
    // DEBUG HELP lists what ferrite supports.
    let h = String::from_utf8(c.cmd(&["DEBUG", "HELP"])).unwrap();
    assert!(h.contains("+SLEEP <seconds>\r\n"), "{h}");
}

#[test]
fn debug_disabled_error_matches_redis() {
    let r = start_redis(&["--enable-debug-command", "no"]);
    let mut child = Command::new(support::ferrite_bin())
        .args(["--port", "0", "--bind", "127.0.0.1"])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    use std::io::BufRead;
    let out = child.stdout.take().unwrap();
    let mut lines = std::io::BufReader::new(out).lines();
    let banner = lines.next().unwrap().unwrap();
    let port: u16 = banner.rsplit(':').next().unwrap().trim().parse().unwrap();
    std::thread::spawn(move || for _ in lines {});
    let mut fc = Conn::connect(port).unwrap();
    let mut rc = Conn::connect(r.port).unwrap();
    for cmd in [&["DEBUG", "SLEEP", "0"][..], &["DEBUG", "HELP"][..]] {
        assert_eq!(show(&fc.cmd(cmd)), show(&rc.cmd(cmd)));
    }
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn memory_usage_and_help() {
    let f = start_ferrite(&[]);
    let mut c = Conn::connect(f.port).unwrap();
    c.cmd(&["SET", "k", "v"]);
    c.cmd(&["SET", "big", &"x".repeat(10_000)]);
    let small = int(&c.cmd(&["MEMORY", "USAGE", "k"]));
    let big = int(&c.cmd(&["MEMORY", "USAGE", "big", "SAMPLES", "0"]));
    assert!(small > 0 && big > 10_000 && big < 20_000, "{small} {big}");
    assert_eq!(c.cmd(&["MEMORY", "USAGE", "nokey"]), b"$-1\r\n");
    let h = String::from_utf8(c.cmd(&["MEMORY", "HELP"])).unwrap();
    assert!(h.starts_with("*14\r\n+MEMORY <subcommand>") && h.contains("+USAGE <key> [SAMPLES <count>]"), "{h}");
}

#[test]
fn time_lastsave_swapdb_flush() {
    let f = start_ferrite(&[]);
    let mut c = Conn::connect(f.port).unwrap();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
    let t = String::from_utf8(c.cmd(&["TIME"])).unwrap();
    let parts: Vec<&str> = t.split("\r\n").collect();
    assert_eq!(parts[0], "*2");
    let secs: i64 = parts[2].parse().unwrap();
    let us: i64 = parts[4].parse().unwrap();
    assert!((secs - now).abs() <= 2 && (0..1_000_000).contains(&us), "{t}");
    let ls = int(&c.cmd(&["LASTSAVE"]));
    assert!((ls - now).abs() <= 30, "{ls} vs {now}");
    // SWAPDB is visible to other connections selected on either db.
    let mut o = Conn::connect(f.port).unwrap();
    o.cmd(&["SELECT", "1"]);
    c.cmd(&["SET", "only0", "v"]);
    assert_eq!(c.cmd(&["SWAPDB", "0", "1"]), b"+OK\r\n");
    assert_eq!(o.cmd(&["GET", "only0"]), b"$1\r\nv\r\n");
    assert_eq!(int(&o.cmd(&["DBSIZE"])), 1);
    assert_eq!(int(&c.cmd(&["DBSIZE"])), 0);
    assert_eq!(c.cmd(&["FLUSHALL"]), b"+OK\r\n");
    assert_eq!(int(&o.cmd(&["DBSIZE"])), 0);
}

#[test]
fn command_count_matches_list_and_containers() {
    let f = start_ferrite(&[]);
    let mut c = Conn::connect(f.port).unwrap();
    let n = int(&c.cmd(&["COMMAND", "COUNT"]));
    let all = c.cmd(&["COMMAND"]);
    assert!(all.starts_with(format!("*{n}\r\n").as_bytes()));
    let info_all = c.cmd(&["COMMAND", "INFO"]);
    assert_eq!(all, info_all);
    // Containers list every subcommand Redis has.
    let cfg = String::from_utf8(c.cmd(&["COMMAND", "INFO", "config"])).unwrap();
    for s in ["config|get", "config|set", "config|resetstat", "config|rewrite", "config|help"] {
        assert!(cfg.contains(s), "{s}");
    }
    let list = String::from_utf8(c.cmd(&["COMMAND", "LIST"])).unwrap();
    assert!(list.contains("\r\nconfig|get\r\n") && list.contains("\r\nget\r\n"));
    let docs = String::from_utf8(c.cmd(&["COMMAND", "DOCS"])).unwrap();
    assert!(docs.starts_with(&format!("*{}\r\n", 2 * n)), "{}", &docs[..20]);
}

#[test]
fn config_rewrite_writes_file() {
    let dir = support::TempDir::new("cfg");
    let path = dir.0.join("ferrite.toml");
    std::fs::write(&path, "hz = 15\n").unwrap();
    let f = start_ferrite(&["--config", path.to_str().unwrap()]);
    let mut c = Conn::connect(f.port).unwrap();
    assert_eq!(c.cmd(&["CONFIG", "GET", "hz"]), b"*2\r\n$2\r\nhz\r\n$2\r\n15\r\n");
    assert_eq!(c.cmd(&["CONFIG", "SET", "hz", "25", "timeout", "7"]), b"+OK\r\n");
    assert_eq!(c.cmd(&["CONFIG", "REWRITE"]), b"+OK\r\n");
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.contains("hz = 25\n") && text.contains("timeout = 7\n"), "{text}");
    let info = text_of_info(&mut c);
    assert!(info.contains(&format!("config_file:{}\r\n", path.display())));
}

fn text_of_info(c: &mut Conn) -> String {
    text(&c.cmd(&["INFO", "server"]))
}

#[test]
fn config_set_requirepass_applies_to_new_connections() {
    let f = start_ferrite(&[]);
    let mut c = Conn::connect(f.port).unwrap();
    assert_eq!(c.cmd(&["CONFIG", "SET", "requirepass", "secret"]), b"+OK\r\n");
    assert_eq!(c.cmd(&["CONFIG", "GET", "requirepass"]), b"*2\r\n$11\r\nrequirepass\r\n$6\r\nsecret\r\n");
    let mut n = Conn::connect(f.port).unwrap();
    assert!(n.cmd(&["PING"]).starts_with(b"-NOAUTH"));
    assert_eq!(n.cmd(&["AUTH", "secret"]), b"+OK\r\n");
    assert_eq!(c.cmd(&["CONFIG", "SET", "requirepass", ""]), b"+OK\r\n");
    // Not changeable settings fail loudly.
    let r = String::from_utf8(c.cmd(&["CONFIG", "SET", "port", "1"])).unwrap();
    assert!(r.starts_with("-ERR CONFIG SET failed (possibly related to argument 'port')"), "{r}");
}

#[test]
fn idle_timeout_closes_clients() {
    let f = start_ferrite(&[]);
    let mut admin = Conn::connect(f.port).unwrap();
    let mut idle = Conn::connect(f.port).unwrap();
    assert_eq!(idle.cmd(&["PING"]), b"+PONG\r\n");
    assert_eq!(admin.cmd(&["CONFIG", "SET", "timeout", "1"]), b"+OK\r\n");
    let t = Instant::now();
    // Keep the admin connection active while the other one idles.
    while t.elapsed() < Duration::from_millis(2500) {
        admin.cmd(&["PING"]);
        std::thread::sleep(Duration::from_millis(200));
    }
    idle.send(&["PING"]);
    assert!(idle.try_read_reply().is_none(), "idle client survived timeout");
    assert_eq!(admin.cmd(&["PING"]), b"+PONG\r\n");
}

#[test]
fn client_info_fields_match_redis() {
    let r = start_redis(&[]);
    let f = start_ferrite(&[]);
    let mut rc = Conn::connect(r.port).unwrap();
    let mut fc = Conn::connect(f.port).unwrap();
    // CLIENT LIST is restricted to our own id: the startup probe connection
    // may still be closing when the list is taken.
    let id_of =
        |c: &mut Conn| String::from_utf8_lossy(&c.cmd(&["CLIENT", "ID"])).trim_matches([':', '\r', '\n']).to_string();
    let (rid, fid) = (id_of(&mut rc), id_of(&mut fc));
    for (rcmd, fcmd) in [
        (vec!["CLIENT", "INFO"], vec!["CLIENT", "INFO"]),
        (vec!["CLIENT", "LIST", "ID", rid.as_str()], vec!["CLIENT", "LIST", "ID", fid.as_str()]),
    ] {
        let a = parse_client_line(text(&rc.cmd(&rcmd)).trim_end());
        let b = parse_client_line(text(&fc.cmd(&fcmd)).trim_end());
        let names = |v: &[(String, String)]| v.iter().map(|(k, _)| k.clone()).collect::<Vec<_>>();
        assert_eq!(names(&a), names(&b));
        // Fields with deterministic values for a fresh connection.
        for k in ["name", "flags", "db", "sub", "psub", "ssub", "multi", "qbuf", "argv-mem", "multi-mem", "obl", "oll"]
        {
            let va = &a.iter().find(|(n, _)| n == k).unwrap().1;
            let vb = &b.iter().find(|(n, _)| n == k).unwrap().1;
            assert_eq!(va, vb, "field {k}");
        }
        for k in ["omem", "events", "cmd", "user", "redir", "resp"] {
            let va = &a.iter().find(|(n, _)| n == k).unwrap().1;
            let vb = &b.iter().find(|(n, _)| n == k).unwrap().1;
            assert_eq!(va, vb, "field {k}");
        }
    }
}

/// Every INFO field ferrite reports exists in Redis's INFO (except
/// ferrite_version), in the same section and relative order.
#[test]
fn info_fields_are_redis_fields_in_redis_order() {
    let r = start_redis(&[]);
    let f = start_ferrite(&[]);
    let mut rc = Conn::connect(r.port).unwrap();
    let mut fc = Conn::connect(f.port).unwrap();
    rc.cmd(&["SET", "k", "v"]);
    fc.cmd(&["SET", "k", "v"]);
    let sections = |body: &str| {
        let mut v: Vec<(String, Vec<String>)> = Vec::new();
        for line in body.split("\r\n") {
            if let Some(h) = line.strip_prefix("# ") {
                v.push((h.to_string(), Vec::new()));
            } else if let Some((k, _)) = line.split_once(':') {
                v.last_mut().unwrap().1.push(k.to_string());
            }
        }
        v
    };
    let rs = sections(&text(&rc.cmd(&["INFO", "everything"])));
    let fs = sections(&text(&fc.cmd(&["INFO", "everything"])));
    let names = |v: &[(String, Vec<String>)]| v.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>();
    assert_eq!(names(&rs), names(&fs));
    for ((sec, rk), (_, fk)) in rs.iter().zip(&fs) {
        // Redis lists these in hash-table order.
        if sec == "Commandstats" || sec == "Errorstats" || sec == "Latencystats" {
            continue;
        }
        let mut last = 0;
        for k in fk.iter().filter(|k| *k != "ferrite_version") {
            let p = rk.iter().position(|x| x == k).unwrap_or_else(|| panic!("{sec}: {k} is not a Redis field"));
            assert!(p >= last, "{sec}: {k} out of Redis's order");
            last = p;
        }
    }
}
