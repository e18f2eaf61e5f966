//! Differential tests for behaviour fixed while running Redis's own Tcl
//! suite against ferrite (transcripts/compat_*.txt): DEBUG DIGEST /
//! DIGEST-VALUE / OBJECT / POPULATE / PROTOCOL, SLOWLOG, LATENCY, CONFIG
//! parameters, COMMAND GETKEYS corner cases...
mod support;

#[test]
fn transcripts_compat() {
    support::run_transcripts("compat");
}

/// MIGRATE from a real Redis and from ferrite to the same real Redis target:
/// same replies, same keys and TTLs arrive, sources lose them (unless COPY).
#[test]
fn migrate_same_as_redis() {
    let target = support::start_redis(&[]);
    let src_r = support::start_redis(&[]);
    let src_f = support::start_ferrite(&[]);
    let tp = target.port.to_string();
    let mut t = support::Conn::connect(target.port).unwrap();
    let mut run = |port: u16| -> Vec<Vec<u8>> {
        t.cmd(&["FLUSHALL"]);
        let mut c = support::Conn::connect(port).unwrap();
        let mut out = Vec::new();
        let script: Vec<Vec<&str>> = vec![
            vec!["SET", "a", "1"],
            vec!["RPUSH", "l", "x", "y"],
            vec!["HSET", "h", "f", "v"],
            vec!["EXPIRE", "a", "100"],
            vec!["MIGRATE", "127.0.0.1", &tp, "a", "3", "1000"],
            vec!["MIGRATE", "127.0.0.1", &tp, "", "3", "1000", "COPY", "KEYS", "l", "nokey"],
            vec!["MIGRATE", "127.0.0.1", &tp, "", "3", "1000", "KEYS", "l"],
            vec!["MIGRATE", "127.0.0.1", &tp, "", "3", "1000", "REPLACE", "KEYS", "l", "h"],
            vec!["EXISTS", "a", "l", "h"],
            vec!["MIGRATE", "127.0.0.1", &tp, "nokey", "3", "1000"],
            vec!["SET", "x", "1"],
            vec!["MIGRATE", "127.0.0.1", &tp, "x", "3", "1000", "AUTH", "foo"],
            vec!["MIGRATE", "127.0.0.1", &tp, "x", "3", "1000", "AUTH2", "u", "p"],
            vec!["MIGRATE", "127.0.0.1", &tp, "x", "3", "1000", "AUTH"],
            vec!["MIGRATE", "127.0.0.1", &tp, "x", "3", "1000", "KEYS", "a"],
            vec!["MIGRATE", "127.0.0.1", &tp, "x", "abc", "1000"],
            vec!["MIGRATE", "127.0.0.1", &tp, "x", "3", "abc"],
            vec!["MIGRATE", "127.0.0.1", &tp, "x", "3", "1000", "BOGUS"],
        ];
        for cmd in &script {
            out.push(c.cmd(cmd));
        }
        let mut tt = support::Conn::connect(target.port).unwrap();
        tt.cmd(&["SELECT", "3"]);
        out.push(tt.cmd(&["LRANGE", "l", "0", "-1"]));
        out.push(tt.cmd(&["HGETALL", "h"]));
        out.push(tt.cmd(&["GET", "a"]));
        let ttl = String::from_utf8_lossy(&tt.cmd(&["TTL", "a"])).to_string();
        assert!(ttl == ":100\r\n" || ttl == ":99\r\n", "ttl {ttl}");
        out
    };
    let r = run(src_r.port);
    let f = run(src_f.port);
    for (i, (a, b)) in r.iter().zip(&f).enumerate() {
        assert_eq!(support::show(a), support::show(b), "step {i}");
    }
}

/// MIGRATE keeps its connection to the target, as Redis does (INFO `migrate_cached_sockets`), and a cached
/// connection the target closed meanwhile (the target restarted) is replaced at once: no error reaches the client.
#[test]
fn migrate_caches_connections_like_redis() {
    let target = support::start_redis(&[]);
    let tp = target.port.to_string();
    let src_r = support::start_redis(&[]);
    let src_f = support::start_ferrite(&[]);
    let cached = |c: &mut support::Conn| -> String {
        let info = String::from_utf8_lossy(&c.cmd(&["INFO", "stats"])).to_string();
        info.lines().find(|l| l.starts_with("migrate_cached_sockets:")).unwrap_or("missing").to_string()
    };
    let mut conns = [support::Conn::connect(src_r.port).unwrap(), support::Conn::connect(src_f.port).unwrap()];
    let mut log: [Vec<String>; 2] = [Vec::new(), Vec::new()];
    for (i, c) in conns.iter_mut().enumerate() {
        let k = format!("mk{i}");
        log[i].push(cached(c));
        c.cmd(&["SET", &k, "v"]);
        c.cmd(&["SET", &format!("{k}b"), "w"]);
        log[i].push(support::show(&c.cmd(&["MIGRATE", "127.0.0.1", &tp, &k, "0", "1000"])));
        log[i].push(cached(c));
        // Same target, another db: the cached connection selects it.
        log[i].push(support::show(&c.cmd(&["MIGRATE", "127.0.0.1", &tp, &format!("{k}b"), "5", "1000", "COPY"])));
        log[i].push(cached(c));
    }
    // The target restarts on the same port: the cached connections are dead.
    drop(target);
    let bin = support::which("redis-server").expect("redis-server not found: a real Redis 7.0 is needed");
    let dir = support::TempDir::new("migrate-target");
    let child = std::process::Command::new(bin)
        .args(["--port", &tp, "--bind", "127.0.0.1", "--save", "", "--dir"])
        .arg(&dir.0)
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("spawn redis-server");
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let _target = Kill(child);
    let target_port: u16 = tp.parse().unwrap();
    let mut up = false;
    for _ in 0..500 {
        if support::Conn::connect(target_port).is_ok_and(|mut c| c.cmd(&["PING"]) == b"+PONG\r\n") {
            up = true;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert!(up, "redis-server did not restart on port {tp}");
    for (i, c) in conns.iter_mut().enumerate() {
        let k = format!("mk{i}b");
        log[i].push(support::show(&c.cmd(&["MIGRATE", "127.0.0.1", &tp, &k, "0", "1000"])));
        log[i].push(cached(c));
    }
    assert_eq!(log[1], log[0], "ferrite (left) vs redis (right)");
    assert_eq!(log[0][0], "migrate_cached_sockets:0");
    assert_eq!(log[0][2], "migrate_cached_sockets:1");
    assert_eq!(log[0][5], "+OK\\r\\n");
    let mut t = support::Conn::connect(target_port).unwrap();
    assert_eq!(t.cmd(&["EXISTS", "mk0b", "mk1b"]), b":2\r\n");
}

/// CLIENT TRACKING across connections: the same invalidation frames, in
/// the same order, from a real Redis and from ferrite.
#[test]
fn tracking_same_as_redis() {
    fn run(port: u16) -> Vec<String> {
        use support::Conn;
        let mut out = Vec::new();
        let mut log = |v: Vec<u8>| out.push(support::show(&v));
        let mut b = Conn::connect(port).unwrap();
        b.cmd(&["FLUSHALL"]);
        let mut a = Conn::connect(port).unwrap();
        a.cmd(&["HELLO", "3"]);
        log(a.cmd(&["CLIENT", "TRACKING", "on"]));
        log(a.cmd(&["GET", "foo"]));
        log(b.cmd(&["SET", "foo", "1"]));
        log(a.read_reply());
        log(a.cmd(&["MGET", "foo", "bar"]));
        log(b.cmd(&["MSET", "foo", "2", "bar", "3"]));
        log(a.read_reply());
        log(a.read_reply());
        log(a.cmd(&["GET", "foo"]));
        log(a.cmd(&["SET", "foo", "9"]));
        log(a.read_reply());
        log(a.cmd(&["CLIENT", "TRACKING", "on", "NOLOOP"]));
        log(a.cmd(&["GET", "foo"]));
        log(a.cmd(&["SET", "foo", "10"]));
        log(b.cmd(&["SET", "foo", "11"]));
        log(a.cmd(&["PING"]));
        // Redirect to a RESP2 client subscribed to __redis__:invalidate.
        let mut rd = Conn::connect(port).unwrap();
        let id = String::from_utf8_lossy(&rd.cmd(&["CLIENT", "ID"])).trim().trim_start_matches(':').to_string();
        log(rd.cmd(&["SUBSCRIBE", "__redis__:invalidate"]));
        let mut c2 = Conn::connect(port).unwrap();
        log(c2.cmd(&["CLIENT", "TRACKING", "on", "REDIRECT", &id]));
        log(c2.cmd(&["GET", "k1"]));
        log(b.cmd(&["SET", "k1", "v"]));
        log(rd.read_reply());
        log(b.cmd(&["FLUSHALL"]));
        log(rd.read_reply());
        log(a.read_reply());
        // BCAST with prefixes: one message per prefix, keys sorted.
        let mut d = Conn::connect(port).unwrap();
        d.cmd(&["HELLO", "3"]);
        log(d.cmd(&["CLIENT", "TRACKING", "on", "BCAST", "PREFIX", "p", "PREFIX", "x"]));
        log(b.cmd(&["MSET", "p2", "1", "p1", "2", "q", "3"]));
        log(d.read_reply());
        log(b.cmd(&["MULTI"]));
        log(b.cmd(&["SET", "x1", "1"]));
        log(b.cmd(&["SET", "p3", "1"]));
        log(b.cmd(&["EXEC"]));
        let mut two = vec![support::show(&d.read_reply()), support::show(&d.read_reply())];
        two.sort();
        out.extend(two);
        out
    }
    let r = support::start_redis(&[]);
    let f = support::start_ferrite(&[]);
    let (rr, ff) = (run(r.port), run(f.port));
    for (i, (a, b)) in rr.iter().zip(&ff).enumerate() {
        assert_eq!(a, b, "step {i}");
    }
    assert_eq!(rr.len(), ff.len());
}

/// Errors of scripts in INFO errorstats / commandstats / total_error_replies:
/// a rejected redis.call counts once (the command's rejected_calls), an
/// error raised by a called command is not counted again by EVAL, EVAL's
/// failed_calls grows whenever it replies with an error.
#[test]
fn script_error_stats_same_as_redis() {
    fn stats(c: &mut support::Conn) -> String {
        let mut lines = Vec::new();
        for section in ["errorstats", "stats", "commandstats"] {
            let r = c.cmd(&["INFO", section]);
            for l in String::from_utf8_lossy(&r).lines() {
                let l = l.trim();
                let keep = l.starts_with("errorstat_")
                    || l.starts_with("total_error_replies")
                    || (l.starts_with("cmdstat_")
                        && !l.starts_with("cmdstat_info")
                        && !l.starts_with("cmdstat_config"));
                if keep {
                    // Drop the timings: keep calls / rejected / failed.
                    let l: Vec<&str> = l.split(',').filter(|f| !f.starts_with("usec")).collect();
                    let l = l.join(",");
                    let l = l.split_once("usec=").map_or(l.clone(), |(a, _)| a.to_string());
                    lines.push(l);
                }
            }
        }
        lines.sort();
        lines.join(" ")
    }
    fn run(port: u16) -> Vec<String> {
        let mut c = support::Conn::connect(port).unwrap();
        let mut out = Vec::new();
        let steps: &[&[&str]] = &[
            &["CONFIG", "SET", "maxmemory", "1"],
            &["EVAL", "return redis.call('set','x','y')", "1", "x"],
            &["EVAL", "local t = redis.pcall('set','x','y'); return t['err']", "1", "x"],
            &["EVAL", "return redis.pcall('set','x','y')", "1", "x"],
            &["EVAL", "#!lua\nreturn 1", "0"],
            &["EVAL", "#!lua flags=allow-oom\nreturn 1", "0"],
            &["CONFIG", "SET", "maxmemory", "0"],
            &["EVAL", "return redis.call('select',99)", "0"],
            &["EVAL", "local t = redis.pcall('select',99); return 1", "0"],
            &["EVAL_RO", "return redis.call('set','x','y')", "1", "x"],
            &["EVAL", "return redis.error_reply('MY_ERR_CODE custom msg')", "0"],
            &["EVAL", "return redis.error_reply('')", "0"],
            &["EVAL", "error('boom')", "0"],
            &["EVAL", "return {err='XYZ my'}", "0"],
            &["EVAL", "return redis.call('nosuchcmd')", "0"],
            &["EVAL", "return redis.call('get')", "0"],
            &["EVAL", "#!lua flags=no-writes\nreturn redis.call('set', KEYS[1], 1)", "1", "x"],
            &["CONFIG", "SET", "min-replicas-to-write", "1"],
            &["EVAL", "return redis.call('set', KEYS[1], 1)", "1", "x"],
            &["EVAL", "#!lua\nreturn 1", "0"],
            &["CONFIG", "SET", "min-replicas-to-write", "0"],
            &[
                "FUNCTION",
                "LOAD",
                "#!lua name=ll\nredis.register_function('f', function() return redis.call('select', 99) end)",
            ],
            &["FCALL", "f", "0"],
        ];
        for s in steps {
            c.cmd(&["CONFIG", "RESETSTAT"]);
            out.push(format!("{} => {}", support::show(&c.cmd(s)), stats(&mut c)));
        }
        out
    }
    let r = support::start_redis(&[]);
    let f = support::start_ferrite(&[]);
    let (rr, ff) = (run(r.port), run(f.port));
    support::assert_same_steps(&rr, &ff, "script error stats");
}

/// CLIENT TRACKING and scripts: a script's write does not invalidate its
/// NOLOOP caller; a script that calls a read-only command makes its caller
/// track the script's declared keys (EVAL_RO too), a script without reads
/// tracks nothing.
#[test]
fn script_tracking_same_as_redis() {
    fn run(port: u16) -> Vec<String> {
        use support::Conn;
        let mut out = Vec::new();
        let mut log = |v: Vec<u8>| out.push(support::show(&v));
        let mut b = Conn::connect(port).unwrap();
        b.cmd(&["FLUSHALL"]);
        let mut a = Conn::connect(port).unwrap();
        a.cmd(&["HELLO", "3"]);
        log(a.cmd(&["CLIENT", "TRACKING", "on", "NOLOOP"]));
        log(a.cmd(&["SET", "key1", "1"]));
        log(a.cmd(&["GET", "key1"]));
        log(a.cmd(&["EVAL", "return redis.call('set', 'key1', '2')", "1", "key1"]));
        log(a.cmd(&["GET", "key1"]));
        log(a.cmd(&["CLIENT", "TRACKING", "off"]));
        log(a.cmd(&["CLIENT", "TRACKING", "on"]));
        log(b.cmd(&["MSET", "key2{t}", "1", "key1{t}", "1"]));
        log(a.cmd(&["EVAL", "redis.call('set', 'key3{t}', 'bar')", "2", "key1{t}", "key2{t}"]));
        log(b.cmd(&["MSET", "key2{t}", "2", "key1{t}", "2"]));
        log(a.cmd(&["EVAL", "redis.call('get', 'key3{t}')", "2", "key1{t}", "key2{t}"]));
        log(b.cmd(&["MSET", "key2{t}", "2", "key1{t}", "2"]));
        log(a.read_reply());
        log(a.read_reply());
        log(a.cmd(&["EVAL_RO", "redis.call('ping')", "2", "key1{t}", "key2{t}"]));
        log(b.cmd(&["MSET", "key2{t}", "2", "key1{t}", "2"]));
        log(a.cmd(&["EVAL_RO", "redis.call('get', 'key1{t}')", "2", "key1{t}", "key2{t}"]));
        log(b.cmd(&["MSET", "key2{t}", "3", "key1{t}", "3"]));
        log(a.read_reply());
        log(a.read_reply());
        log(a.cmd(&["PING"]));
        out
    }
    let r = support::start_redis(&[]);
    let f = support::start_ferrite(&[]);
    let (rr, ff) = (run(r.port), run(f.port));
    support::assert_same_steps(&rr, &ff, "script tracking");
}

/// The active expiry of a big key is recorded as the `expire-cycle`
/// latency event (Redis's latency-monitor test).
#[test]
fn expire_cycle_latency_event() {
    let f = support::start_ferrite(&[]);
    let mut c = support::Conn::connect(f.port).unwrap();
    c.cmd(&["CONFIG", "SET", "latency-monitor-threshold", "1"]);
    // Members longer than the 22 inline bytes: freeing the key frees 300,000 allocations (well over 1 ms).
    let script = "for i = 1, tonumber(ARGV[1]) do redis.call('sadd', KEYS[1], 'member-with-a-long-name-' .. i) end";
    c.cmd(&["EVAL", script, "1", "big", "300000"]);
    c.cmd(&["PEXPIRE", "big", "20"]);
    let mut gone = false;
    for _ in 0..100 {
        std::thread::sleep(std::time::Duration::from_millis(50));
        if c.cmd(&["DBSIZE"]) == b":0\r\n" {
            gone = true;
            break;
        }
    }
    assert!(gone, "the key was not expired");
    // The event is recorded when the expiry cycle ends, just after the key left the table (its value is freed in
    // between): wait for it, bounded.
    let mut latest = String::new();
    for _ in 0..40 {
        latest = String::from_utf8_lossy(&c.cmd(&["LATENCY", "LATEST"])).into_owned();
        if latest.contains("expire-cycle") {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert!(latest.contains("expire-cycle"), "no expire-cycle event: {latest}");
}

/// Approximate stream trims (XADD/XTRIM .. MAXLEN|MINID ~ [LIMIT]) are
/// logged exactly, so DEBUG LOADAOF with other node sizes rebuilds the same
/// stream (Redis's stream.tcl propagation tests), same as a real Redis.
#[test]
fn approx_stream_trim_aof_same_as_redis() {
    fn run(port: u16) -> Vec<String> {
        let mut c = support::Conn::connect(port).unwrap();
        let mut out = Vec::new();
        c.cmd(&["CONFIG", "SET", "appendonly", "yes"]);
        // Wait for the initial rewrite (bounded).
        for _ in 0..100 {
            let info = String::from_utf8_lossy(&c.cmd(&["INFO", "persistence"])).into_owned();
            if info.contains("aof_rewrite_in_progress:0") && info.contains("aof_rewrite_scheduled:0") {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        for (key, trim) in [
            ("s1", vec!["MINID", "~", "100"]),
            ("s2", vec!["MAXLEN", "~", "5"]),
            ("s3", vec!["MINID", "~", "55", "LIMIT", "30"]),
        ] {
            c.cmd(&["CONFIG", "SET", "stream-node-max-entries", "10"]);
            for j in 1..=100 {
                c.cmd(&["XADD", key, &j.to_string(), "f", "v"]);
            }
            let mut a = vec!["XADD", key];
            a.extend(trim.iter().copied());
            a.extend(["*", "f", "v"]);
            c.cmd(&a);
            out.push(support::show(&c.cmd(&["XLEN", key])));
        }
        c.cmd(&["CONFIG", "SET", "stream-node-max-entries", "100"]);
        for j in 1..=100 {
            c.cmd(&["XADD", "t1", &j.to_string(), "f", "v"]);
        }
        out.push(support::show(&c.cmd(&["XTRIM", "t1", "MAXLEN", "~", "20"])));
        out.push(support::show(&c.cmd(&["XTRIM", "t1", "MINID", "~", "90"])));
        c.cmd(&["CONFIG", "SET", "stream-node-max-entries", "1"]);
        out.push(support::show(&c.cmd(&["DEBUG", "LOADAOF"])));
        for k in ["s1", "s2", "s3", "t1"] {
            out.push(support::show(&c.cmd(&["XLEN", k])));
            out.push(
                support::show(&c.cmd(&["XRANGE", k, "-", "+", "COUNT", "1"]))
                    .split("\\r\\n")
                    .next()
                    .unwrap_or("")
                    .to_string(),
            );
        }
        out
    }
    let r = support::start_redis(&[]);
    let f = support::start_ferrite(&[]);
    let (rr, ff) = (run(r.port), run(f.port));
    support::assert_same_steps(&rr, &ff, "approximate trims through the AOF");
}

/// Empty streams (MKSTREAM, all entries deleted) survive an AOF rewrite
/// without RDB preamble and DEBUG LOADAOF, same as a real Redis.
#[test]
fn empty_stream_aof_rewrite_same_as_redis() {
    fn wait_rewrite(c: &mut support::Conn) {
        for _ in 0..100 {
            let info = String::from_utf8_lossy(&c.cmd(&["INFO", "persistence"])).into_owned();
            if info.contains("aof_rewrite_in_progress:0") && info.contains("aof_rewrite_scheduled:0") {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        panic!("AOF rewrite did not finish");
    }
    fn run(port: u16) -> Vec<String> {
        let mut c = support::Conn::connect(port).unwrap();
        let mut out = Vec::new();
        c.cmd(&["CONFIG", "SET", "appendonly", "yes"]);
        c.cmd(&["CONFIG", "SET", "aof-use-rdb-preamble", "no"]);
        wait_rewrite(&mut c);
        out.push(support::show(&c.cmd(&["XGROUP", "CREATE", "mystream", "g", "$", "MKSTREAM"])));
        c.cmd(&["XADD", "s2", "5-1", "a", "b"]);
        c.cmd(&["XDEL", "s2", "5-1"]);
        c.cmd(&["XGROUP", "CREATE", "s2", "g2", "0"]);
        c.cmd(&["BGREWRITEAOF"]);
        std::thread::sleep(std::time::Duration::from_millis(100));
        wait_rewrite(&mut c);
        out.push(support::show(&c.cmd(&["DEBUG", "LOADAOF"])));
        for k in ["mystream", "s2"] {
            out.push(support::show(&c.cmd(&["XINFO", "STREAM", k])));
            out.push(support::show(&c.cmd(&["XINFO", "GROUPS", k])));
        }
        out
    }
    let r = support::start_redis(&[]);
    let f = support::start_ferrite(&[]);
    let (rr, ff) = (run(r.port), run(f.port));
    support::assert_same_steps(&rr, &ff, "empty streams through an AOF rewrite");
}

/// A client whose QUIT was answered is gone at once: a tracking client
/// redirecting to it gets tracking-redir-broken on the next invalidation.
#[test]
fn quit_breaks_redirect_same_as_redis() {
    fn run(port: u16) -> Vec<String> {
        use support::Conn;
        let mut out = Vec::new();
        let mut sg = Conn::connect(port).unwrap();
        let mut redir = Conn::connect(port).unwrap();
        let id = String::from_utf8_lossy(&redir.cmd(&["CLIENT", "ID"])).trim().trim_start_matches(':').to_string();
        let mut a = Conn::connect(port).unwrap();
        a.cmd(&["HELLO", "3"]);
        out.push(support::show(&a.cmd(&["CLIENT", "TRACKING", "on", "REDIRECT", &id])));
        out.push(support::show(&sg.cmd(&["SET", "foo", "bar"])));
        out.push(support::show(&a.cmd(&["GET", "foo"])));
        out.push(support::show(&redir.cmd(&["QUIT"])));
        out.push(support::show(&sg.cmd(&["SET", "foo", "bar2"])));
        // The redirect id differs between servers: compare it to `id`.
        out.push(support::show(&a.read_reply()).replace(&format!(":{id}\\r\\n"), ":<id>\\r\\n"));
        out.push(support::show(&a.cmd(&["PING"])));
        out
    }
    let r = support::start_redis(&[]);
    let f = support::start_ferrite(&[]);
    let (rr, ff) = (run(r.port), run(f.port));
    support::assert_same_steps(&rr, &ff, "QUIT and tracking redirection");
}
