//! ferrite started like redis-server: a redis.conf file plus trailing
//! `--directive args` (differentially against a real redis-server 7.0 where
//! both must behave the same), Redis's FATAL CONFIG FILE ERROR text, the
//! bind failure message, `include`, quoted values, stdin, start-up log lines.
//!
//! Real processes on free loopback ports; every wait is bounded.

mod support;

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};
use support::{ferrite_bin, free_port, which, Conn, TempDir};

const WAIT: Duration = Duration::from_secs(20);

fn redis_bin() -> std::path::PathBuf {
    which("redis-server").expect("redis-server 7.0 is required on PATH for these tests (apt-get install redis-server)")
}

/// A started server: killed on drop; its stdout lines arrive on `lines`.
struct Server {
    child: Child,
    port: u16,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    /// Wait (bounded) for a stdout line containing `needle`.
    fn wait_line(&mut self, needle: &str) -> String {
        let deadline = Instant::now() + WAIT;
        if let Some(l) = self.seen.iter().find(|l| l.contains(needle)) {
            return l.clone();
        }
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(l) => {
                    self.seen.push(l.clone());
                    if l.contains(needle) {
                        return l;
                    }
                }
                Err(_) => panic!("no stdout line containing {needle:?} within {WAIT:?}; got: {:#?}", self.seen),
            }
        }
    }

    fn conn(&self) -> Conn {
        Conn::connect(self.port).expect("connect")
    }
}

fn spawn(bin: &Path, args: &[&str], port: u16, cwd: &Path) -> Server {
    let mut child = Command::new(bin)
        .args(args)
        .current_dir(cwd)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {}: {e}", bin.display()));
    let out = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for l in BufReader::new(out).lines() {
            let Ok(l) = l else { break };
            if tx.send(l).is_err() {
                break;
            }
        }
    });
    let mut s = Server { child, port, lines: rx, seen: Vec::new() };
    s.wait_line("Ready to accept connections");
    s
}

/// Run a process that must exit; returns (exit code, stdout, stderr).
fn run_to_exit(bin: &Path, args: &[&str], stdin: Option<&str>, cwd: &Path) -> (i32, String, String) {
    let mut child = Command::new(bin)
        .args(args)
        .current_dir(cwd)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {}: {e}", bin.display()));
    {
        let mut i = child.stdin.take().unwrap();
        if let Some(t) = stdin {
            i.write_all(t.as_bytes()).unwrap();
        }
    }
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(st) = child.try_wait().unwrap() {
            let out = child.wait_with_output().unwrap();
            return (
                st.code().unwrap_or(-1),
                String::from_utf8_lossy(&out.stdout).into_owned(),
                String::from_utf8_lossy(&out.stderr).into_owned(),
            );
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{} {args:?} did not exit within {WAIT:?}", bin.display());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn bulk_value(reply: &[u8]) -> String {
    // CONFIG GET of one name in RESP2: *2 $n name $m value.
    let s = String::from_utf8_lossy(reply);
    let parts: Vec<&str> = s.split("\r\n").collect();
    assert!(parts.len() >= 5 && parts[0] == "*2", "unexpected CONFIG GET reply {s:?}");
    parts[4].to_string()
}

fn config_get(c: &mut Conn, name: &str) -> String {
    bulk_value(&c.cmd(&["CONFIG", "GET", name]))
}

const CONF: &str = "# a comment\n\
    bind 127.0.0.1\n\
    port PORT\n\
    save 900 1\n\
    save 300 10\n\
    requirepass \"pass word\"\n\
    maxmemory 10mb\n\
    slowlog-log-slower-than 1234\n\
    hash-max-listpack-entries 77\n\
    appendonly no\n\
    include INC\n\
    include GLOB\n\
    activerehashing yes\n\
    tcp-keepalive 60\n\
    loglevel notice\n";

const INC: &str = "hz 25\nnotify-keyspace-events \"KEA\"\n  timeout   7  \n";

/// The same redis.conf + trailing options give the same CONFIG GET values
/// on redis-server and on ferrite.
#[test]
fn config_file_and_trailing_directives_like_redis() {
    let names = [
        "save",
        "requirepass",
        "maxmemory",
        "maxmemory-policy",
        "slowlog-log-slower-than",
        "hash-max-listpack-entries",
        "appendonly",
        "hz",
        "notify-keyspace-events",
        "timeout",
        "activerehashing",
        "tcp-keepalive",
        "databases",
        "list-max-listpack-size",
        "maxclients",
        "maxmemory-samples",
        "lfu-log-factor",
    ];
    let mut results = Vec::new();
    for bin in [redis_bin(), ferrite_bin()] {
        let dir = TempDir::new("redisconf");
        let port = free_port();
        let inc = dir.0.join("inc.conf");
        std::fs::write(&inc, INC).unwrap();
        std::fs::create_dir_all(dir.0.join("conf.d")).unwrap();
        std::fs::write(dir.0.join("conf.d/a.conf"), "maxmemory-samples 7\n").unwrap();
        std::fs::write(dir.0.join("conf.d/b.conf"), "lfu-log-factor 12\n").unwrap();
        let glob = dir.0.join("conf.d/*.conf").display().to_string();
        let conf = dir.0.join("redis.conf");
        std::fs::write(
            &conf,
            CONF.replace("PORT", &port.to_string()).replace("INC", &inc.display().to_string()).replace("GLOB", &glob),
        )
        .unwrap();
        let conf_s = conf.display().to_string();
        let dir_s = dir.0.display().to_string();
        let mut s = spawn(
            &bin,
            &[
                &conf_s,
                "--maxmemory-policy",
                "allkeys-lru",
                "--databases",
                "3",
                "--list-max-ziplist-size",
                "-3",
                "--maxclients",
                "77",
                "--dir",
                &dir_s,
                "--daemonize",
                "no",
            ],
            port,
            &dir.0,
        );
        let mut c = s.conn();
        assert_eq!(c.cmd(&["PING"]), b"-NOAUTH Authentication required.\r\n".to_vec());
        assert_eq!(c.cmd(&["AUTH", "pass word"]), b"+OK\r\n".to_vec());
        assert_eq!(config_get(&mut c, "port"), port.to_string());
        let vals: Vec<(String, String)> = names.iter().map(|n| (n.to_string(), config_get(&mut c, n))).collect();
        assert_eq!(config_get(&mut c, "dir"), std::fs::canonicalize(&dir.0).unwrap().display().to_string());
        results.push(vals);
        s.wait_line("Ready to accept connections");
    }
    assert_eq!(results[0], results[1], "redis-server (left) and ferrite (right) differ");
    // And the values are the ones configured.
    let f: std::collections::HashMap<_, _> = results[1].iter().cloned().collect();
    assert_eq!(f["save"], "900 1 300 10");
    assert_eq!(f["requirepass"], "pass word");
    assert_eq!(f["hz"], "25");
    assert_eq!(f["timeout"], "7");
    assert_eq!(f["databases"], "3");
    assert_eq!(f["maxmemory-policy"], "allkeys-lru");
}

/// Bad directives: the same FATAL message on stderr and exit code 1 as
/// redis-server.
#[test]
fn bad_directives_fail_like_redis() {
    let dir = TempDir::new("redisconf-bad");
    let conf = dir.0.join("bad.conf");
    std::fs::write(&conf, "port 0\n# c\nsave \"\"\n").unwrap();
    let unbalanced = dir.0.join("unbalanced.conf");
    std::fs::write(&unbalanced, "port 0\nrequirepass \"abc\n").unwrap();
    let conf_s = conf.display().to_string();
    let unb_s = unbalanced.display().to_string();
    let cases: Vec<Vec<&str>> = vec![
        vec![&conf_s, "--no-such-directive", "1"],
        vec![&conf_s, "--port", "abc"],
        vec![&conf_s, "--timeout", "1", "2"],
        vec![&conf_s, "--maxmemory", "12x"],
        vec![&conf_s, "--appendonly", "maybe"],
        vec![&conf_s, "--maxmemory-policy", "sometimes"],
        vec!["--port", "0", "--hz", "x"],
        vec![&unb_s],
        vec![&conf_s, "--save", "--foo", "bar"],
        vec![&conf_s, "--user", "foo", "--user", "foo"],
        vec![&conf_s, "--rename-command", "nosuchcmd", "x"],
        vec![&conf_s, "--rename-command", "flushdb", "get"],
        vec![&conf_s, "--rename-command", "flushdb"],
        vec![&conf_s, "--rename-command", "flushdb", "a", "b"],
        vec![&conf_s, "--rename-command", "flushdb", "x", "--rename-command", "flushdb", "y"],
        // The error goes to stderr even when a `logfile` was opened before it.
        vec![&conf_s, "--logfile", "my.log", "--loglevel", "--bla"],
    ];
    for args in &cases {
        let (rc, _, redis_err) = run_to_exit(&redis_bin(), args, None, &dir.0);
        assert_eq!(rc, 1, "redis-server {args:?}");
        let (rc, _, ferrite_err) = run_to_exit(&ferrite_bin(), args, None, &dir.0);
        assert_eq!(rc, 1, "ferrite {args:?} should exit 1; stderr: {ferrite_err}");
        assert!(ferrite_err.contains("*** FATAL CONFIG FILE ERROR (Redis 7.0.15) ***"), "{ferrite_err}");
        assert_eq!(ferrite_err, redis_err, "stderr for {args:?}");
    }
    // Directives ferrite refuses on purpose: same format, a clear reason.
    for (args, reason) in [
        (vec![conf_s.as_str(), "--loadmodule", "/x.so"], "cannot load Redis modules"),
        (vec![conf_s.as_str(), "--cluster-enabled", "yes"], "Redis Cluster mode"),
    ] {
        let (rc, _, err) = run_to_exit(&ferrite_bin(), &args, None, &dir.0);
        assert_eq!(rc, 1, "{args:?}");
        assert!(err.contains("*** FATAL CONFIG FILE ERROR (Redis 7.0.15) ***") && err.contains(reason), "{err}");
        assert!(err.contains(&format!(">>> '{} \"", &args[1][2..])), "{err}");
    }
    // Bad ACL rules: Redis's two log lines, exit 1.
    let port = free_port().to_string();
    let (rc, out, _) = run_to_exit(&ferrite_bin(), &["--port", &port, "--user", "bar", "on", "+nosuch"], None, &dir.0);
    assert_eq!(rc, 1);
    assert!(
        out.contains(
            "# Error loading ACL rule '+nosuch' for the user named 'bar': Unknown command or category name in ACL"
        ) && out.contains("# Critical error while loading ACLs. Exiting."),
        "{out}"
    );
    // A file that does not exist.
    let (rc, _, err) = run_to_exit(&ferrite_bin(), &["/nonexistent/redis.conf"], None, &dir.0);
    assert_eq!(rc, 1);
    assert!(err.contains("Fatal error, can't open config file '/nonexistent/redis.conf'"), "{err}");
}

/// `rename-command` in a redis.conf: the old name is unknown, the new one runs the command (which keeps its own
/// name in replies), an empty new name removes the command, names are case-insensitive and may be long, and CONFIG
/// REWRITE keeps the lines. Same replies as redis-server with the same file.
#[test]
fn rename_command_like_redis() {
    let dir = TempDir::new("redisconf-rename");
    let secret = "b840fc02d524045429941cc15f59e41cb7be6c52";
    let mut replies: Vec<Vec<Vec<u8>>> = Vec::new();
    for bin in [redis_bin(), ferrite_bin()] {
        let port = free_port();
        let conf = dir.0.join(format!("r{port}.conf"));
        std::fs::write(
            &conf,
            format!(
                "port {port}\nsave \"\"\nrename-command flushdb badger\nrename-command CONFIG {secret}\n\
                 rename-command keys \"\"\nrename-command Badger BADGER2\n"
            ),
        )
        .unwrap();
        let conf_s = conf.display().to_string();
        let server = spawn(&bin, &[&conf_s], port, &dir.0);
        let mut c = server.conn();
        let mut got = Vec::new();
        for line in [
            "SET k v",
            "FLUSHDB",
            "BADGER",
            "badger2 x",
            "badger2",
            "GET k",
            "KEYS *",
            "CONFIG GET port",
            &format!("{} GET save", secret.to_uppercase()),
            "COMMAND INFO badger2",
            "COMMAND GETKEYS badger2",
            "MULTI",
            "badger2",
            "flushdb",
            "EXEC",
            &format!("{secret} REWRITE"),
        ] {
            got.push(c.line(line));
        }
        let text = std::fs::read_to_string(&conf).unwrap();
        for l in
            ["rename-command flushdb badger", &format!("rename-command CONFIG {secret}"), "rename-command keys \"\""]
        {
            assert!(text.contains(l), "CONFIG REWRITE keeps {l:?}: {text}");
        }
        replies.push(got);
    }
    for (i, (a, b)) in replies[0].iter().zip(&replies[1]).enumerate() {
        assert_eq!(String::from_utf8_lossy(a), String::from_utf8_lossy(b), "reply {i}");
    }
}

/// Send one command over a Unix domain socket and read one reply (bounded).
fn unix_cmd(path: &Path, args: &[&str]) -> String {
    use std::io::Read;
    let mut s = std::os::unix::net::UnixStream::connect(path).unwrap_or_else(|e| panic!("connect {path:?}: {e}"));
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut req = format!("*{}\r\n", args.len());
    for a in args {
        req.push_str(&format!("${}\r\n{a}\r\n", a.len()));
    }
    s.write_all(req.as_bytes()).unwrap();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(n) = support::frame_len(&buf) {
            return String::from_utf8_lossy(&buf[..n]).into_owned();
        }
        match s.read(&mut chunk) {
            Ok(0) => return String::from_utf8_lossy(&buf).into_owned(),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) => panic!("read from {path:?}: {e}"),
        }
    }
}

/// `unixsocket` / `unixsocketperm`: the same socket behaviour as redis-server (a stale file at the path replaced,
/// permissions applied, CLIENT INFO `addr=<path>:0 laddr=<path>:0` and flag `U`, CONFIG GET/SET, the file removed
/// at shutdown).
#[test]
fn unix_socket_like_redis() {
    use std::os::unix::fs::PermissionsExt;
    let dir = TempDir::new("redisconf-unix");
    for (i, bin) in [redis_bin(), ferrite_bin()].into_iter().enumerate() {
        let port = free_port();
        let path = dir.0.join(format!("s{i}.sock"));
        std::fs::write(&path, "stale").unwrap();
        let (port_s, path_s) = (port.to_string(), path.display().to_string());
        let server = spawn(
            &bin,
            &["--port", &port_s, "--save", "", "--unixsocket", &path_s, "--unixsocketperm", "700"],
            port,
            &dir.0,
        );
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700, "{bin:?}: socket permissions");
        let info = unix_cmd(&path, &["CLIENT", "INFO"]);
        let field = |k: &str| info.split(' ').find_map(|f| f.strip_prefix(k)).unwrap_or("").to_string();
        assert_eq!(field("addr="), format!("{path_s}:0"), "{bin:?}: {info}");
        assert_eq!(field("laddr="), format!("{path_s}:0"), "{bin:?}: {info}");
        assert_eq!(field("flags="), "U", "{bin:?}: {info}");
        assert_eq!(unix_cmd(&path, &["SET", "k", "v"]), "+OK\r\n");
        assert_eq!(unix_cmd(&path, &["GET", "k"]), "$1\r\nv\r\n");
        assert_eq!(
            unix_cmd(&path, &["CONFIG", "GET", "unixsocket"]),
            format!("*2\r\n$10\r\nunixsocket\r\n${}\r\n{path_s}\r\n", path_s.len())
        );
        assert_eq!(
            unix_cmd(&path, &["CONFIG", "SET", "unixsocket", "/tmp/other.sock"]),
            "-ERR CONFIG SET failed (possibly related to argument 'unixsocket') - can't set immutable config\r\n"
        );
        // A TCP client sees the Unix client's key.
        assert_eq!(server.conn().cmd(&["GET", "k"]), b"$1\r\nv\r\n");
        let _ = unix_cmd(&path, &["SHUTDOWN", "NOSAVE"]);
        let deadline = Instant::now() + WAIT;
        while path.exists() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(!path.exists(), "{bin:?}: the socket file is removed at shutdown");
    }
}

/// MODULE with `enable-module-command yes`: ferrite loads no modules, so every load fails with Redis's error for
/// a module that cannot be loaded, like redis-server given a path that is not a module.
#[test]
fn module_command_when_enabled_like_redis() {
    let dir = TempDir::new("redisconf-module");
    let notmodule = dir.0.join("not-a-module.so");
    std::fs::write(&notmodule, "not an ELF file").unwrap();
    let nm = notmodule.display().to_string();
    let mut replies: Vec<Vec<Vec<u8>>> = Vec::new();
    for bin in [redis_bin(), ferrite_bin()] {
        let port = free_port();
        let port_s = port.to_string();
        let server = spawn(&bin, &["--port", &port_s, "--save", "", "--enable-module-command", "yes"], port, &dir.0);
        let mut c = server.conn();
        let mut got = Vec::new();
        for args in [
            vec!["MODULE", "LIST"],
            vec!["MODULE", "LOAD", nm.as_str()],
            vec!["MODULE", "LOAD", "/nonexistent/x.so", "a", "b"],
            vec!["MODULE", "LOADEX", nm.as_str(), "CONFIG", "a", "b", "ARGS", "c"],
            vec!["MODULE", "UNLOAD", "nosuch"],
            vec!["MODULE", "LIST"],
        ] {
            got.push(c.cmd(&args));
        }
        replies.push(got);
    }
    for (i, (a, b)) in replies[0].iter().zip(&replies[1]).enumerate() {
        assert_eq!(String::from_utf8_lossy(a), String::from_utf8_lossy(b), "reply {i}");
    }
}

/// A port already in use: Redis's two log lines on stdout, exit code 1.
#[test]
fn port_in_use_prints_redis_bind_message() {
    let dir = TempDir::new("redisconf-bind");
    let hold = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = hold.local_addr().unwrap().port().to_string();
    let (rc, out, _) = run_to_exit(&ferrite_bin(), &["--bind", "127.0.0.1", "--port", &port], None, &dir.0);
    assert_eq!(rc, 1);
    assert!(
        out.contains(&format!(
            "# Warning: Could not create server TCP listening socket 127.0.0.1:{port}: bind: Address already in use"
        )),
        "{out}"
    );
    assert!(out.contains(&format!("# Failed listening on port {port} (TCP), aborting.")), "{out}");
    drop(hold);
}

/// `-` reads the configuration from stdin; always-show-logo prints the
/// " PID: <pid>" line the Tcl harness waits for; pidfile is written.
#[test]
fn stdin_config_logo_and_pidfile() {
    let dir = TempDir::new("redisconf-stdin");
    let port = free_port();
    let pidfile = dir.0.join("ferrite.pid");
    let text = format!(
        "port {port}\nbind 127.0.0.1\nalways-show-logo yes\npidfile {}\nproto-max-bulk-len 2mb\n",
        pidfile.display()
    );
    let mut child = Command::new(ferrite_bin())
        .args(["-", "--dir", &dir.0.display().to_string()])
        .current_dir(&dir.0)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let out = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for l in BufReader::new(out).lines().map_while(Result::ok) {
            if tx.send(l).is_err() {
                break;
            }
        }
    });
    let mut s = Server { child, port, lines: rx, seen: Vec::new() };
    s.wait_line("Ready to accept connections");
    let pid = s.child.id();
    s.wait_line(&format!(" PID: {pid}"));
    s.wait_line(&format!("Port: {port}"));
    assert_eq!(std::fs::read_to_string(&pidfile).unwrap().trim(), pid.to_string());
    let mut c = s.conn();
    assert_eq!(config_get(&mut c, "proto-max-bulk-len"), "2097152");
    // No `save` line: Redis's default rules, as redis-server.
    assert_eq!(config_get(&mut c, "save"), "3600 1 300 100 60 10000");
    // SHUTDOWN removes the pidfile.
    c.send(&["SHUTDOWN", "NOSAVE"]);
    let deadline = Instant::now() + WAIT;
    while s.child.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "ferrite did not exit after SHUTDOWN");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// ferrite's own flags keep working next to redis.conf directives, and a
/// `.toml` first argument is still the TOML configuration.
#[test]
fn ferrite_flags_still_work() {
    let dir = TempDir::new("redisconf-flags");
    let port = free_port();
    let toml = dir.0.join("f.toml");
    std::fs::write(&toml, format!("port = {port}\nbind = \"127.0.0.1\"\nhz = 33\n")).unwrap();
    let toml_s = toml.display().to_string();
    let dir_s = dir.0.display().to_string();
    let mut s = spawn(&ferrite_bin(), &[&toml_s, "--threads", "2", "--dir", &dir_s, "--timeout=9"], port, &dir.0);
    let mut c = s.conn();
    assert_eq!(config_get(&mut c, "hz"), "33");
    assert_eq!(config_get(&mut c, "timeout"), "9");
    s.wait_line(&format!("ready to accept connections on 127.0.0.1:{port}"));
}

/// CONFIG REWRITE of the redis.conf file: comments, unknown directives and
/// order kept, changed settings updated in place (duplicates and aliases
/// folded), new ones appended; a restart from the file gets the values.
#[test]
fn config_rewrite_updates_the_redis_conf_file() {
    let dir = TempDir::new("redisconf-rewrite");
    let port = free_port();
    let inc = dir.0.join("inc.conf");
    std::fs::write(&inc, "hz 15\n").unwrap();
    let conf = dir.0.join("r.conf");
    std::fs::write(
        &conf,
        format!(
            "# top comment\nport {port}\nbind 127.0.0.1\nhash-max-ziplist-entries 20\n\n\n# mid\nsave 900 1\nsave 300 \
             10\ninclude {}\nuser alice on >pw ~* +@all\n",
            inc.display()
        ),
    )
    .unwrap();
    let conf_s = conf.display().to_string();
    let dir_s = dir.0.display().to_string();
    {
        let s = spawn(&ferrite_bin(), &[&conf_s, "--dir", &dir_s], port, &dir.0);
        let mut c = s.conn();
        for (k, v) in [("maxmemory", "5mb"), ("save", "100 1"), ("hash-max-listpack-entries", "33")] {
            assert_eq!(c.cmd(&["CONFIG", "SET", k, v]), b"+OK\r\n".to_vec());
        }
        assert_eq!(c.cmd(&["CONFIG", "SET", "requirepass", "a b"]), b"+OK\r\n".to_vec());
        assert_eq!(c.cmd(&["AUTH", "a b"]), b"+OK\r\n".to_vec());
        assert_eq!(c.cmd(&["CONFIG", "REWRITE"]), b"+OK\r\n".to_vec());
    }
    let text = std::fs::read_to_string(&conf).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let canon = std::fs::canonicalize(&dir.0).unwrap().display().to_string();
    let expect = vec![
        "# top comment".to_string(),
        format!("port {port}"),
        "bind 127.0.0.1".into(),
        "hash-max-listpack-entries 33".into(),
        "".into(),
        "# mid".into(),
        "save 100 1".into(),
        format!("include {}", inc.display()),
        "user alice on >pw ~* +@all".into(),
        "".into(),
        "# Generated by CONFIG REWRITE".into(),
        "requirepass \"a b\"".into(),
        "hz 15".into(),
        "maxmemory 5242880".into(),
        format!("dir {canon}"),
    ];
    assert_eq!(lines, expect, "rewritten file:\n{text}");
    // Restarted from the rewritten file alone: same values.
    let s = spawn(&ferrite_bin(), &[&conf_s], port, &dir.0);
    let mut c = s.conn();
    assert_eq!(c.cmd(&["AUTH", "a b"]), b"+OK\r\n".to_vec());
    assert_eq!(config_get(&mut c, "save"), "100 1");
    assert_eq!(config_get(&mut c, "maxmemory"), "5242880");
    assert_eq!(config_get(&mut c, "hash-max-ziplist-entries"), "33");
    assert_eq!(c.cmd(&["AUTH", "alice", "pw"]), b"+OK\r\n".to_vec());
}

/// `user` lines create users from scratch (the default user is reset
/// first), like redis-server.
#[test]
fn user_directives_like_redis() {
    let mut lists = Vec::new();
    for bin in [redis_bin(), ferrite_bin()] {
        let dir = TempDir::new("redisconf-users");
        let port = free_port();
        let conf = dir.0.join("u.conf");
        std::fs::write(
            &conf,
            format!("port {port}\nuser default on nopass ~* +@all\nuser alice on >pw ~k* &news \"+get\"\n"),
        )
        .unwrap();
        let conf_s = conf.display().to_string();
        let dir_s = dir.0.display().to_string();
        let s = spawn(&bin, &[&conf_s, "--dir", &dir_s, "--user", "bob", "off"], port, &dir.0);
        let mut c = s.conn();
        lists.push((c.cmd(&["ACL", "LIST"]), c.cmd(&["SUBSCRIBE", "x"])));
    }
    assert_eq!(lists[0], lists[1], "redis-server (left) and ferrite (right) differ");
}

/// `enable-protected-configs yes|local` lets CONFIG SET change `dir` and
/// `dbfilename` (from a local client for `local`), like redis-server.
#[test]
fn protected_configs_like_redis() {
    let mut replies = Vec::new();
    for bin in [redis_bin(), ferrite_bin()] {
        let mut per = Vec::new();
        for mode in ["no", "yes", "local"] {
            let dir = TempDir::new("redisconf-protected");
            std::fs::create_dir_all(dir.0.join("sub")).unwrap();
            let port = free_port();
            let (p, d) = (port.to_string(), dir.0.display().to_string());
            let s = spawn(
                &bin,
                &["--port", &p, "--dir", &d, "--save", "", "--enable-protected-configs", mode],
                port,
                &dir.0,
            );
            let mut c = s.conn();
            per.push(c.cmd(&["CONFIG", "SET", "dbfilename", "other.rdb"]));
            per.push(c.cmd(&["CONFIG", "GET", "dbfilename"]));
            per.push(c.cmd(&["CONFIG", "SET", "dir", "sub"]));
            let got = config_get(&mut c, "dir");
            let want = if mode == "no" { dir.0.clone() } else { dir.0.join("sub") };
            assert_eq!(got, std::fs::canonicalize(want).unwrap().display().to_string(), "{} {mode}", bin.display());
            per.push(c.cmd(&["CONFIG", "SET", "enable-protected-configs", "no"]));
        }
        replies.push(per);
    }
    assert_eq!(replies[0], replies[1], "redis-server (left) and ferrite (right) differ");
}

/// DEBUG CONFIG-REWRITE-FORCE-ALL writes every setting (defaults included) to the redis.conf the server started
/// from; a server started from that file has exactly the same CONFIG GET * (Redis's "CONFIG REWRITE sanity").
#[test]
fn config_rewrite_force_all_round_trips() {
    let dir = TempDir::new("redisconf-forceall");
    let port = free_port();
    let conf = dir.0.join("r.conf");
    std::fs::write(&conf, format!("port {port}\nbind 127.0.0.1\nenable-debug-command yes\nmaxmemory 10mb\n")).unwrap();
    let conf_s = conf.display().to_string();
    let all = |c: &mut Conn| -> Vec<(String, String)> {
        // A flat array of bulk strings (none holds a CRLF): "*N", then "$len" and the text for each.
        let text = String::from_utf8(c.cmd(&["CONFIG", "GET", "*"])).unwrap();
        let toks: Vec<&str> = text.split("\r\n").collect();
        // Drop the header and the empty piece after the last CRLF; keep every second token (the texts).
        let items: Vec<String> = toks[1..toks.len() - 1].iter().skip(1).step_by(2).map(|t| t.to_string()).collect();
        assert_eq!(items.len() % 2, 0);
        let mut v: Vec<(String, String)> = items.chunks(2).map(|p| (p[0].clone(), p[1].clone())).collect();
        v.sort();
        v
    };
    let before = {
        let s = spawn(&ferrite_bin(), &[&conf_s], port, &dir.0);
        let mut c = s.conn();
        let before = all(&mut c);
        assert_eq!(c.cmd(&["DEBUG", "CONFIG-REWRITE-FORCE-ALL"]), b"+OK\r\n");
        c.send(&["SHUTDOWN", "NOSAVE"]);
        assert!(c.try_read_reply().is_none());
        drop(s);
        before
    };
    let written = std::fs::read_to_string(&conf).unwrap();
    assert!(written.lines().count() > 100, "every setting written: {written}");
    let s = spawn(&ferrite_bin(), &[&conf_s], port, &dir.0);
    let mut c = s.conn();
    assert_eq!(all(&mut c), before);
}
