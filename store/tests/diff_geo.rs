//! Differential tests: geo (transcripts/geo*.txt).
mod support;

use support::{show, Conn, Pair};

#[test]
fn transcripts_geo() {
    support::run_transcripts("geo");
}

/// Read pub/sub messages until the sentinel publish arrives.
fn drain_until_sentinel(c: &mut Conn) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let m = c.read_reply();
        if m.windows(8).any(|w| w == b"sentinel") {
            return out;
        }
        out.push(m);
    }
}

/// Keyspace notifications fired by geo commands match Redis's.
#[test]
fn geo_notifications() {
    let mut p = Pair::start();
    let mut subs = Vec::new();
    for port in [p.redis.port, p.ferrite.port] {
        let mut c = Conn::connect(port).unwrap();
        c.cmd(&["CONFIG", "SET", "notify-keyspace-events", "KEA"]);
        c.cmd(&["PSUBSCRIBE", "*"]);
        subs.push(c);
    }
    let script = [
        "GEOADD Sicily 13.361389 38.115556 Palermo 15.087269 37.502669 Catania",
        "GEOADD Sicily NX 13.361389 38.115556 Palermo",
        "GEOADD Sicily XX 13.361389 38.115556 Palermo",
        "GEOADD Sicily XX 13 38 Palermo",
        "GEOADD missing XX 13 38 Palermo",
        "GEORADIUS Sicily 15 37 200 km STORE dst",
        "GEORADIUS Sicily 15 37 200 km STOREDIST dst",
        "GEOSEARCHSTORE dst2 Sicily FROMLONLAT 15 37 BYRADIUS 200 km",
        "GEOSEARCHSTORE dst2 Sicily FROMLONLAT 15 37 BYRADIUS 1 m",
        "GEOSEARCHSTORE dst2 Sicily FROMLONLAT 15 37 BYRADIUS 1 m",
        "GEORADIUS Sicily 15 37 1 m STORE dst",
        "GEOADD x 1 1 a",
        "GEORADIUS nokey 15 37 1 m STORE x",
        "GEORADIUSBYMEMBER Sicily Palermo 1 km",
        "GEOPOS Sicily Palermo",
        "PUBLISH sentinel done",
    ];
    for line in script {
        let a = p.r.line(line);
        let b = p.f.line(line);
        assert_eq!(show(&a), show(&b), "{line}");
    }
    let ra = drain_until_sentinel(&mut subs[0]);
    let fa = drain_until_sentinel(&mut subs[1]);
    let ra: Vec<String> = ra.iter().map(|m| show(m)).collect();
    let fa: Vec<String> = fa.iter().map(|m| show(m)).collect();
    assert_eq!(ra, fa);
    assert!(!ra.is_empty());
}

/// Huge COUNT values and big sets never pre-allocate or misbehave.
#[test]
fn geo_huge_count() {
    let f = support::start_ferrite(&[]);
    let mut c = Conn::connect(f.port).unwrap();
    let mut args: Vec<String> = vec!["GEOADD".into(), "k".into()];
    for i in 0..2000 {
        args.push(format!("{}", (i % 360) as f64 - 179.5));
        args.push(format!("{}", ((i * 7) % 170) as f64 - 84.5));
        args.push(format!("m{i}"));
    }
    assert_eq!(c.cmd(&args), b":2000\r\n");
    let r = c.line("GEORADIUS k 0 0 30000 km COUNT 9223372036854775807");
    assert!(r.starts_with(b"*2000\r\n"), "{}", show(&r));
    let r = c.line("GEORADIUS k 0 0 30000 km COUNT 4611686018427387904 ANY");
    assert!(r.starts_with(b"*2000\r\n"), "{}", show(&r));
    let r = c.line("GEOSEARCHSTORE d k FROMLONLAT 0 0 BYBOX 1e12 1e12 km COUNT 9223372036854775807 STOREDIST");
    assert_eq!(r, b":2000\r\n");
}
