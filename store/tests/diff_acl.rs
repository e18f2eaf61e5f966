//! Differential tests: acl (transcripts/acl*.txt), plus multi-connection,
//! ACL LOG and ACL file tests.
mod support;

use support::{show, split, start_ferrite, start_redis, Conn, Proc, TempDir};

#[test]
fn transcripts_acl() {
    support::run_transcripts("acl");
}

/// Run `steps` (connection number, command line) against both servers with
/// `n` connections each; compare every reply byte for byte.
fn compare_steps(redis: &Proc, ferrite: &Proc, n: usize, steps: &[(usize, &str)]) {
    let mut rc: Vec<Conn> = (0..n).map(|_| Conn::connect(redis.port).unwrap()).collect();
    let mut fc: Vec<Conn> = (0..n).map(|_| Conn::connect(ferrite.port).unwrap()).collect();
    for (i, (c, line)) in steps.iter().enumerate() {
        let args = split(line);
        let a = rc[*c].cmd(&args);
        let b = fc[*c].cmd(&args);
        assert_eq!(show(&a), show(&b), "step {i}: conn {c}: {line}");
    }
}

#[test]
fn rules_apply_to_existing_connections() {
    let r = start_redis(&[]);
    let f = start_ferrite(&[]);
    compare_steps(
        &r,
        &f,
        2,
        &[
            (0, "ACL SETUSER u on >p ~* &* +@all"),
            (1, "AUTH u p"),
            (1, "SET k v"),
            (0, "ACL SETUSER u -set"),
            (1, "SET k v2"),
            (1, "GET k"),
            (0, "ACL SETUSER u resetkeys ~other"),
            (1, "GET k"),
            (0, "ACL SETUSER u off"),
            // Already authenticated connections keep working.
            (1, "GET other"),
            (0, "ACL SETUSER u on allkeys +set"),
            (1, "MULTI"),
            (1, "SET k v3"),
            (1, "GET k"),
            (0, "ACL SETUSER u -get"),
            (1, "EXEC"),
            (1, "GET k"),
            (0, "ACL SETUSER u resetkeys ~x"),
            (1, "MULTI"),
            (1, "SET x 1"),
            (0, "ACL SETUSER u resetkeys ~y"),
            (1, "EXEC"),
            (0, "ACL SETUSER u resetchannels &a"),
            (1, "MULTI"),
            (1, "PUBLISH a 1"),
            (0, "ACL SETUSER u resetchannels"),
            (1, "EXEC"),
        ],
    );
}

#[test]
fn deluser_closes_connections() {
    let f = start_ferrite(&[]);
    let mut admin = Conn::connect(f.port).unwrap();
    let mut a = Conn::connect(f.port).unwrap();
    let mut b = Conn::connect(f.port).unwrap();
    assert_eq!(admin.line("ACL SETUSER u on nopass +@all ~*"), b"+OK\r\n");
    assert_eq!(a.line("AUTH u x"), b"+OK\r\n");
    assert_eq!(b.line("AUTH u x"), b"+OK\r\n");
    assert_eq!(admin.line("ACL DELUSER u"), b":1\r\n");
    std::thread::sleep(std::time::Duration::from_millis(100));
    a.send(&["PING"]);
    assert!(a.try_read_reply().is_none(), "connection of a deleted user must be closed");
    // Deleting one's own user: the reply arrives, then the connection closes.
    assert_eq!(admin.line("ACL SETUSER v on nopass +@all ~*"), b"+OK\r\n");
    b.send(&["PING"]);
    assert!(b.try_read_reply().is_none());
    let mut c = Conn::connect(f.port).unwrap();
    assert_eq!(c.line("AUTH v x"), b"+OK\r\n");
    assert_eq!(c.line("ACL DELUSER v"), b":1\r\n");
    c.send(&["PING"]);
    assert!(c.try_read_reply().is_none());
    assert_eq!(admin.line("ACL USERS"), b"*1\r\n$7\r\ndefault\r\n");
}

#[test]
fn default_user_password_gates_new_connections() {
    let r = start_redis(&[]);
    let f = start_ferrite(&[]);
    for p in [&r, &f] {
        let mut admin = Conn::connect(p.port).unwrap();
        assert_eq!(admin.line("ACL SETUSER default resetpass >pw"), b"+OK\r\n");
        let mut c = Conn::connect(p.port).unwrap();
        assert!(c.line("GET k").starts_with(b"-NOAUTH"), "{}", p.name);
        assert_eq!(c.line("AUTH pw"), b"+OK\r\n");
        assert_eq!(c.line("GET k"), b"$-1\r\n");
        // Making the default user nopass again lets unauthenticated
        // connections run commands.
        let mut d = Conn::connect(p.port).unwrap();
        assert_eq!(admin.line("ACL SETUSER default nopass"), b"+OK\r\n");
        assert_eq!(d.line("GET k"), b"$-1\r\n");
    }
    let f2 = start_ferrite(&["--requirepass", "secret"]);
    let mut c = Conn::connect(f2.port).unwrap();
    assert!(c.line("PING").starts_with(b"-NOAUTH"));
    assert_eq!(c.line("AUTH secret"), b"+OK\r\n");
    assert!(c.line("ACL LIST").windows(8).any(|w| w == b"on #2bb8"));
}

/// Parse a RESP2 ACL LOG reply (flat maps) into entries of (field, value).
fn log_entries(reply: &[u8]) -> Vec<Vec<(String, String)>> {
    let text = String::from_utf8_lossy(reply).to_string();
    let mut lines = text.split("\r\n");
    let n: usize = lines.next().unwrap()[1..].parse().unwrap();
    let mut out = Vec::new();
    for _ in 0..n {
        let h = lines.next().unwrap();
        let m: usize = h[1..].parse().unwrap_or_else(|_| panic!("bad header {h:?} in {text}"));
        let mut e = Vec::new();
        for _ in 0..m / 2 {
            let read = |lines: &mut std::str::Split<&str>| {
                let h = lines.next().unwrap();
                if h.starts_with('$') {
                    lines.next().unwrap().to_string()
                } else {
                    h[1..].to_string()
                }
            };
            let k = read(&mut lines);
            let v = read(&mut lines);
            e.push((k, v));
        }
        out.push(e);
    }
    out
}

fn field<'a>(e: &'a [(String, String)], k: &str) -> &'a str {
    &e.iter().find(|(x, _)| x == k).unwrap().1
}

#[test]
fn acl_log_entries() {
    let r = start_redis(&[]);
    let f = start_ferrite(&[]);
    let mut logs = Vec::new();
    for p in [&r, &f] {
        let mut c = Conn::connect(p.port).unwrap();
        for l in [
            "ACL SETUSER u on >p ~k* &ch +get +set +multi +exec +discard +publish +auth +eval",
            "AUTH u wrong",
            "AUTH u wrong",
            "AUTH u p",
            "GET other",
            "GET other",
            "DEL k1",
            "PUBLISH nope x",
            "MULTI",
            "GET other2",
            "DISCARD",
            // Denied inside a script: context `lua`; redis.acl_check_cmd logs nothing.
            "EVAL \"return redis.call('get','other3')\" 0",
            "EVAL \"return redis.acl_check_cmd('get','other4')\" 0",
            "AUTH default x",
        ] {
            c.line(l);
        }
        let all = log_entries(&c.line("ACL LOG"));
        let two = log_entries(&c.line("ACL LOG 2"));
        assert_eq!(two.len(), 2);
        assert_eq!(log_entries(&c.line("ACL LOG -5")).len(), 0);
        assert!(c.line("ACL LOG abc").starts_with(b"-ERR value is not an integer"));
        assert_eq!(c.line("ACL LOG RESET"), b"+OK\r\n");
        assert_eq!(c.line("ACL LOG"), b"*0\r\n");
        logs.push(all);
    }
    let (rl, fl) = (&logs[0], &logs[1]);
    assert_eq!(rl.len(), fl.len(), "{rl:?}\n{fl:?}");
    for (a, b) in rl.iter().zip(fl) {
        for k in ["count", "reason", "context", "object", "username"] {
            assert_eq!(field(a, k), field(b, k), "field {k}: {a:?} vs {b:?}");
        }
        let keys: Vec<&str> = b.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, ["count", "reason", "context", "object", "username", "age-seconds", "client-info"]);
        let age: f64 = field(b, "age-seconds").parse().unwrap();
        assert!((0.0..5.0).contains(&age));
        assert!(field(b, "client-info").starts_with("id="));
        assert!(field(b, "client-info").contains(" user="));
    }
    // RESP3: a map per entry, age as a double.
    let mut c = Conn::connect(f.port).unwrap();
    c.line("HELLO 3");
    c.line("AUTH nosuch x");
    let rep = c.line("ACL LOG");
    assert!(rep.starts_with(b"*1\r\n%7\r\n"), "{}", show(&rep));
    assert!(rep.windows(13).any(|w| w == b"age-seconds\r\n"));
    assert!(String::from_utf8_lossy(&rep).contains("\r\n,"));
}

#[test]
fn genpass_lengths() {
    let f = start_ferrite(&[]);
    let mut c = Conn::connect(f.port).unwrap();
    for (bits, len) in [(None, 64), (Some(1), 1), (Some(4), 1), (Some(5), 2), (Some(128), 32), (Some(4096), 1024)] {
        let r = match bits {
            None => c.line("ACL GENPASS"),
            Some(b) => c.line(&format!("ACL GENPASS {b}")),
        };
        let text = String::from_utf8(r).unwrap();
        let mut parts = text.split("\r\n");
        assert_eq!(parts.next().unwrap(), format!("${len}"));
        let p = parts.next().unwrap();
        assert_eq!(p.len(), len);
        assert!(p.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
    }
    assert_ne!(c.line("ACL GENPASS"), c.line("ACL GENPASS"));
}

/// Command rules with several single commands come out in hash-table
/// order in Redis: compare them as sets of rules.
#[test]
fn describe_rules_as_sets() {
    let r = start_redis(&[]);
    let f = start_ferrite(&[]);
    let cases = [
        "+get +set +del",
        "+@read -@write +@hash",
        "+@all -flushall -flushdb -keys -debug",
        "-@all +@string -append +client|id +config|get +select|0 +select|1",
        "+@all -@dangerous +info",
        "-@all +@geo +@stream -xadd",
        "+@all -config +config|get",
        "+@all -@dangerous +@admin -@write +@set",
        "-@all +@read +@write -@keyspace +@fast",
    ];
    for (i, rules) in cases.iter().enumerate() {
        let mut outs = Vec::new();
        for p in [&r, &f] {
            let mut c = Conn::connect(p.port).unwrap();
            let name = format!("u{i}");
            let mut args = vec!["ACL".to_string(), "SETUSER".into(), name.clone(), "reset".into()];
            args.extend(rules.split(' ').map(String::from));
            assert_eq!(c.cmd(&args), b"+OK\r\n");
            let rep = String::from_utf8(c.line("ACL LIST")).unwrap();
            let line = rep.split("\r\n").find(|l| l.starts_with(&format!("user {name} "))).unwrap().to_string();
            let mut toks: Vec<String> = line.split(' ').map(String::from).collect();
            let head: Vec<String> = toks.drain(..5).collect();
            toks.sort();
            outs.push((head, toks));
        }
        assert_eq!(outs[0], outs[1], "rules {rules}");
    }
}

#[test]
fn acl_file_load_and_save() {
    let dir = TempDir::new("aclfile");
    let path = dir.0.join("users.acl");
    std::fs::write(
        &path,
        "user default on nopass ~* &* +@all\nuser alice on #2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae ~a* +get\n\n",
    )
    .unwrap();
    let p = path.display().to_string();
    let f = start_ferrite(&["--aclfile", &p]);
    let mut c = Conn::connect(f.port).unwrap();
    assert_eq!(
        show(&c.line("ACL LIST")),
        show(&support::encode(&[
            "user alice on #2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae ~a* resetchannels -@all +get",
            "user default on nopass ~* &* +@all",
        ]))
    );
    let mut a = Conn::connect(f.port).unwrap();
    assert_eq!(a.line("AUTH alice foo"), b"+OK\r\n");
    assert_eq!(a.line("GET a1"), b"$-1\r\n");
    assert_eq!(c.line("ACL SETUSER bob on nopass +@all"), b"+OK\r\n");
    assert_eq!(c.line("ACL SAVE"), b"+OK\r\n");
    let saved = std::fs::read_to_string(&path).unwrap();
    assert!(saved.contains("user bob on nopass resetchannels +@all\n"), "{saved}");
    assert!(saved.starts_with("user alice "));
    // A bad file changes nothing.
    std::fs::write(&path, "user carol on +nosuch\nfoo bar\n").unwrap();
    let err = String::from_utf8(c.line("ACL LOAD")).unwrap();
    assert!(err.starts_with("-ERR "), "{err}");
    assert!(
        err.contains(":1: Error in applying operation '+nosuch': Unknown command or category name in ACL."),
        "{err}"
    );
    assert!(err.contains(":2 should start with user keyword followed by the username."), "{err}");
    assert!(err.contains("WARNING: ACL errors detected, no change to the previously active ACL rules was performed"));
    assert_eq!(c.line("ACL USERS"), b"*3\r\n$5\r\nalice\r\n$3\r\nbob\r\n$7\r\ndefault\r\n");
    // Loading replaces the users and closes connections of the old ones.
    std::fs::write(&path, "user carol on nopass +@all ~*\n").unwrap();
    assert_eq!(c.line("ACL LOAD"), b"+OK\r\n");
    assert_eq!(c.line("ACL USERS"), b"*2\r\n$5\r\ncarol\r\n$7\r\ndefault\r\n");
    assert!(c.line("ACL GETUSER default").len() > 10);
    std::thread::sleep(std::time::Duration::from_millis(100));
    a.send(&["PING"]);
    assert!(a.try_read_reply().is_none());
    // Missing file.
    std::fs::remove_file(&path).unwrap();
    let err = String::from_utf8(c.line("ACL LOAD")).unwrap();
    assert!(
        err.starts_with(&format!("-ERR Error loading ACLs, opening file '{p}': No such file or directory")),
        "{err}"
    );
    // Startup with a broken file fails.
    std::fs::write(&path, "user x on +nosuch\n").unwrap();
    let st = std::process::Command::new(support::ferrite_bin())
        .args(["--port", "0", "--aclfile", &p])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(!st.success());
}

#[test]
fn load_save_without_aclfile() {
    let r = start_redis(&[]);
    let f = start_ferrite(&[]);
    compare_steps(&r, &f, 1, &[(0, "ACL LOAD"), (0, "ACL SAVE"), (0, "CONFIG GET aclfile")]);
}

#[test]
fn revoked_channels_close_subscribers() {
    let r = start_redis(&[]);
    let f = start_ferrite(&[]);
    for p in [&r, &f] {
        let mut admin = Conn::connect(p.port).unwrap();
        assert_eq!(admin.line("ACL SETUSER u on nopass +@all ~* resetchannels &a &p*"), b"+OK\r\n");
        let mut s1 = Conn::connect(p.port).unwrap();
        let mut s2 = Conn::connect(p.port).unwrap();
        assert_eq!(s1.line("AUTH u x"), b"+OK\r\n");
        assert_eq!(s2.line("AUTH u x"), b"+OK\r\n");
        assert!(s1.line("SUBSCRIBE a").starts_with(b"*3\r\n"));
        assert!(s2.line("PSUBSCRIBE p*").starts_with(b"*3\r\n"));
        assert!(s2.line("SUBSCRIBE b").starts_with(b"-NOPERM"), "{}", p.name);
        // A superset keeps everybody.
        assert_eq!(admin.line("ACL SETUSER u &c"), b"+OK\r\n");
        assert_eq!(admin.line("PUBLISH a hi"), b":1\r\n");
        // Dropping "a" closes the channel subscriber only.
        assert_eq!(admin.line("ACL SETUSER u resetchannels &p* &zz"), b"+OK\r\n");
        std::thread::sleep(std::time::Duration::from_millis(100));
        assert_eq!(admin.line("PUBLISH a hi"), b":0\r\n", "{}", p.name);
        assert_eq!(admin.line("PUBLISH px hi"), b":1\r\n", "{}", p.name);
        // Pattern subscriptions must match an allowed pattern literally.
        assert_eq!(admin.line("ACL SETUSER u resetchannels &p**"), b"+OK\r\n");
        std::thread::sleep(std::time::Duration::from_millis(100));
        assert_eq!(admin.line("PUBLISH px hi"), b":0\r\n", "{}", p.name);
    }
}

#[test]
fn acl_log_max_len() {
    let f = start_ferrite(&[]);
    let mut c = Conn::connect(f.port).unwrap();
    assert_eq!(c.line("CONFIG SET acllog-max-len 3"), b"+OK\r\n");
    for i in 0..6 {
        c.line(&format!("AUTH user{i} x"));
    }
    let e = log_entries(&c.line("ACL LOG"));
    assert_eq!(e.len(), 3);
    assert_eq!(field(&e[0], "username"), "user5");
    assert_eq!(field(&e[2], "username"), "user3");
    assert_eq!(field(&e[0], "reason"), "auth");
    assert_eq!(field(&e[0], "object"), "AUTH");
    // Repeated failures are grouped into one entry.
    c.line("AUTH user5 x");
    let e = log_entries(&c.line("ACL LOG"));
    assert_eq!(field(&e[0], "count"), "2");
    assert_eq!(e.len(), 3);
}
