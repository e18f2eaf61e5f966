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
