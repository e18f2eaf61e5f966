//! Differential tests for behaviour fixed while running redis-py's own test
//! suite against ferrite (see tests/redispy/README.md): transcripts
//! transcripts/pycompat_*.txt compared byte for byte with a real Redis
//! 7.0, plus shape checks for replies whose figures or drawings are not
//! reproducible (MEMORY STATS, MEMORY MALLOC-STATS, LOLWUT 5/6).
mod support;

use support::{frame_len, start_ferrite, start_redis, Conn};

#[test]
fn transcripts_pycompat() {
    support::run_transcripts("pycompat");
}

/// The top-level elements of an aggregate reply, as raw frames.
fn elements(reply: &[u8]) -> Vec<Vec<u8>> {
    let hdr = reply.iter().position(|&b| b == b'\n').expect("header line") + 1;
    let n: usize = std::str::from_utf8(&reply[1..hdr - 2]).unwrap().parse().unwrap();
    let n = if reply[0] == b'%' { n * 2 } else { n };
    let mut out = Vec::new();
    let mut at = hdr;
    for _ in 0..n {
        let len = frame_len(&reply[at..]).expect("complete frame");
        out.push(reply[at..at + len].to_vec());
        at += len;
    }
    assert_eq!(at, reply.len(), "trailing bytes");
    out
}

/// MEMORY STATS as (field name, reply type of the value) pairs; nested
/// per-db maps are described by their own field names.
fn stats_shape(c: &mut Conn) -> Vec<String> {
    let r = c.cmd(&["MEMORY", "STATS"]);
    assert!(r[0] == b'*' || r[0] == b'%', "{}", support::show(&r));
    let el = elements(&r);
    let mut out = vec![format!("top {}", r[0] as char)];
    for kv in el.chunks(2) {
        let key = String::from_utf8_lossy(&kv[0]).to_string();
        let v = &kv[1];
        let mut desc = format!("{} {}", key.trim_end(), v[0] as char);
        if v[0] == b'*' || v[0] == b'%' {
            for (i, e) in elements(v).iter().enumerate() {
                if i % 2 == 0 {
                    desc.push_str(&format!(" {}", String::from_utf8_lossy(e).trim_end()));
                } else {
                    desc.push_str(&format!(" {}", e[0] as char));
                }
            }
        }
        // A RESP2 double is a bulk string holding a number.
        if v[0] == b'$' {
            let body = String::from_utf8_lossy(&v[v.iter().position(|&b| b == b'\n').unwrap() + 1..]).to_string();
            assert!(body.trim_end().parse::<f64>().is_ok(), "{key}: {body}");
        }
        out.push(desc);
    }
    out
}

/// MEMORY STATS has Redis's fields, in Redis's order, with Redis's reply
/// types (integers, doubles, per-db maps) in RESP2 and RESP3.
#[test]
fn memory_stats_shape_same_as_redis() {
    let r = start_redis(&[]);
    let f = start_ferrite(&[]);
    let run = |port: u16, proto: &str| -> Vec<String> {
        let mut c = Conn::connect(port).unwrap();
        if proto == "3" {
            c.cmd(&["HELLO", "3"]);
        }
        c.cmd(&["FLUSHALL"]);
        c.cmd(&["SET", "foo", "bar"]);
        c.cmd(&["SET", "e", "1", "EX", "100"]);
        c.cmd(&["SELECT", "3"]);
        c.cmd(&["RPUSH", "l", "a", "b"]);
        c.cmd(&["SELECT", "0"]);
        stats_shape(&mut c)
    };
    for proto in ["2", "3"] {
        let a = run(r.port, proto);
        let b = run(f.port, proto);
        assert_eq!(a, b, "RESP{proto}");
    }
    // keys.count is exact.
    let mut c = Conn::connect(f.port).unwrap();
    let el = elements(&c.cmd(&["MEMORY", "STATS"]));
    let pos = el.iter().position(|e| e.ends_with(b"keys.count\r\n")).unwrap();
    assert_eq!(el[pos + 1], b":3\r\n");
}

/// MEMORY MALLOC-STATS is a non-empty text report, a verbatim string in
/// RESP3 (as with Redis's jemalloc report).
#[test]
fn memory_malloc_stats_is_text() {
    let f = start_ferrite(&[]);
    let r = start_redis(&[]);
    for port in [r.port, f.port] {
        let mut c = Conn::connect(port).unwrap();
        let a = c.cmd(&["MEMORY", "MALLOC-STATS"]);
        assert_eq!(a[0], b'$', "{}", support::show(&a));
        assert!(a.len() > 40);
        c.cmd(&["HELLO", "3"]);
        let b = c.cmd(&["MEMORY", "MALLOC-STATS"]);
        assert!(b.starts_with(b"=") && b.windows(6).any(|w| w == b"\r\ntxt:"), "{}", support::show(&b[..40]));
    }
}

/// The text of a LOLWUT reply (bulk or verbatim).
fn lolwut_text(c: &mut Conn, args: &[&str]) -> String {
    let mut cmd = vec!["LOLWUT"];
    cmd.extend_from_slice(args);
    let r = c.cmd(&cmd);
    let hdr = r.iter().position(|&b| b == b'\n').unwrap() + 1;
    let body = &r[hdr..r.len() - 2];
    let body = if r[0] == b'=' { &body[4..] } else { body };
    String::from_utf8(body.to_vec()).expect("utf-8 drawing")
}

/// Lines and their widths in characters (the drawings are random, their
/// dimensions are not).
fn dims(text: &str) -> Vec<usize> {
    text.split('\n').map(|l| l.chars().count()).collect()
}

/// LOLWUT 5 (random Schotter) and 6 (random skyline): same dimensions and
/// same caption as Redis; the skyline uses Redis's four colour escapes.
#[test]
fn lolwut_drawings_same_shape_as_redis() {
    let r = start_redis(&[]);
    let f = start_ferrite(&[]);
    let mut cr = Conn::connect(r.port).unwrap();
    let mut cf = Conn::connect(f.port).unwrap();
    for args in [
        vec!["VERSION", "5"],
        vec!["VERSION", "5", "6", "7", "8"],
        vec!["VERSION", "5", "30", "3", "9"],
        vec!["VERSION", "6"],
        vec!["VERSION", "6", "30", "12"],
        vec!["VERSION", "6", "1", "1"],
    ] {
        let a = lolwut_text(&mut cr, &args);
        let b = lolwut_text(&mut cf, &args);
        if args[1] == "5" {
            assert_eq!(dims(&a), dims(&b), "{args:?}");
            assert!(b.ends_with("\nGeorg Nees - schotter, plotter on paper, 1968. Redis ver. 7.0.15\n"));
        } else {
            // Every pixel is one space between a colour escape and a reset.
            let strip =
                |t: &str| -> Vec<usize> { t.split('\n').map(|l| l.matches("\x1b[0m").count()).collect::<Vec<_>>() };
            assert_eq!(strip(&a), strip(&b), "{args:?}");
            let tail = "\nDedicated to the 8 bit game developers of past and present.\nOriginal 8 bit image from Plaguemon by hikikomori. Redis ver. 7.0.15\n";
            assert!(b.ends_with(tail));
            let allowed =
                ["\x1b[0;30;40m \x1b[0m", "\x1b[0;90;100m \x1b[0m", "\x1b[0;37;47m \x1b[0m", "\x1b[0;97;107m \x1b[0m"];
            let body = &b[..b.len() - tail.len()];
            for line in body.split('\n') {
                let mut rest = line;
                while !rest.is_empty() {
                    let p = allowed.iter().find(|p| rest.starts_with(**p)).unwrap_or_else(|| panic!("{rest:?}"));
                    rest = &rest[p.len()..];
                }
            }
        }
    }
    // Schotter rows below the second are randomised: two runs differ.
    let x = lolwut_text(&mut cf, &["VERSION", "5", "40", "4", "12"]);
    let y = lolwut_text(&mut cf, &["VERSION", "5", "40", "4", "12"]);
    let z = lolwut_text(&mut cf, &["VERSION", "5", "40", "4", "12"]);
    assert!(x != y || y != z, "Schotter is not random");
}

/// CLIENT KILL USER disconnects the connections authenticated as that
/// user, and only those, as in Redis.
#[test]
fn client_kill_user_same_as_redis() {
    let r = start_redis(&[]);
    let f = start_ferrite(&[]);
    let run = |port: u16| -> Vec<String> {
        let mut out = Vec::new();
        let mut admin = Conn::connect(port).unwrap();
        out.push(support::show(&admin.cmd(&["ACL", "SETUSER", "victim", "on", ">pw", "+@all", "~*"])));
        let mut v1 = Conn::connect(port).unwrap();
        let mut v2 = Conn::connect(port).unwrap();
        let mut other = Conn::connect(port).unwrap();
        out.push(support::show(&v1.cmd(&["AUTH", "victim", "pw"])));
        out.push(support::show(&v2.cmd(&["AUTH", "victim", "pw"])));
        out.push(support::show(&admin.cmd(&["CLIENT", "KILL", "USER", "victim"])));
        // The killed connections are closed; the others still answer.
        out.push(format!("v1 {:?}", v1.try_read_reply().map(|r| support::show(&r))));
        out.push(support::show(&other.cmd(&["PING"])));
        out.push(support::show(&admin.cmd(&["CLIENT", "KILL", "USER", "victim"])));
        out.push(support::show(&admin.cmd(&["ACL", "DELUSER", "victim"])));
        out.push(support::show(&admin.cmd(&["CLIENT", "KILL", "USER", "victim"])));
        out
    };
    let a = run(r.port);
    let b = run(f.port);
    assert_eq!(a, b);
    assert_eq!(a[3], ":2\\r\\n", "{a:?}");
}

/// Read everything a connection receives within `ms` (bounded: at most
/// 64 reads), for comparing the exact order of pushes and replies.
fn drain(c: &mut Conn, ms: u64) -> String {
    use std::io::Read;
    c.stream.set_read_timeout(Some(std::time::Duration::from_millis(ms))).unwrap();
    let mut all = Vec::new();
    let mut buf = [0u8; 65536];
    for _ in 0..64 {
        match c.stream.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => all.extend_from_slice(&buf[..n]),
        }
    }
    c.stream.set_read_timeout(Some(std::time::Duration::from_secs(10))).unwrap();
    support::show(&all)
}

/// A client tracking with REDIRECT to the connection that runs FLUSHDB /
/// FLUSHALL: Redis writes the null invalidation into that connection's
/// output before the command's +OK (redis-py test_client_tracking traffic).
#[test]
fn flush_invalidation_to_redirect_target_before_reply() {
    let r = start_redis(&[]);
    let f = start_ferrite(&[]);
    let run = |port: u16| -> Vec<String> {
        let mut out = Vec::new();
        let mut b = Conn::connect(port).unwrap();
        b.cmd(&["HELLO", "3"]);
        let id = String::from_utf8_lossy(&b.cmd(&["CLIENT", "ID"])).trim_start_matches(':').trim().to_string();
        let mut a = Conn::connect(port).unwrap();
        out.push(support::show(&a.cmd(&["CLIENT", "TRACKING", "ON", "REDIRECT", &id])));
        a.cmd(&["GET", "k"]);
        b.send(&["FLUSHDB"]);
        out.push(drain(&mut b, 300));
        a.cmd(&["GET", "k"]);
        b.send(&["MULTI"]);
        b.send(&["FLUSHALL"]);
        b.send(&["EXEC"]);
        out.push(drain(&mut b, 300));
        // Tracking on itself: the client's own flush invalidation comes
        // after the reply.
        b.cmd(&["CLIENT", "TRACKING", "ON"]);
        b.cmd(&["GET", "k"]);
        b.send(&["FLUSHDB"]);
        out.push(drain(&mut b, 300));
        // A RESP3 tracker redirecting to a RESP2 subscriber: the null is
        // written in the tracker's protocol, as Redis does.
        let mut s = Conn::connect(port).unwrap();
        let sid = String::from_utf8_lossy(&s.cmd(&["CLIENT", "ID"])).trim_start_matches(':').trim().to_string();
        out.push(support::show(&s.cmd(&["SUBSCRIBE", "__redis__:invalidate"])));
        let mut t = Conn::connect(port).unwrap();
        t.cmd(&["HELLO", "3"]);
        out.push(support::show(&t.cmd(&["CLIENT", "TRACKING", "ON", "REDIRECT", &sid])));
        t.cmd(&["GET", "k"]);
        out.push(support::show(&b.cmd(&["FLUSHALL"])));
        out.push(drain(&mut s, 300));
        out
    };
    let a = run(r.port);
    let b = run(f.port);
    assert_eq!(a, b);
}
