//! CLIENT PAUSE / UNPAUSE / UNBLOCK, compared with real Redis where the
//! replies are deterministic and bounded by loose timing checks otherwise.
mod support;
use std::time::{Duration, Instant};
use support::*;

fn timed(c: &mut Conn, args: &[&str]) -> (Vec<u8>, Duration) {
    let t = Instant::now();
    let r = c.cmd(args);
    (r, t.elapsed())
}

fn pause_behaviour(port: u16) -> Vec<String> {
    let mut a = Conn::connect(port).unwrap();
    let mut b = Conn::connect(port).unwrap();
    let mut seen = vec![
        show(&a.cmd(&["CLIENT", "PAUSE", "abc"])),
        show(&a.cmd(&["CLIENT", "PAUSE", "-1"])),
        show(&a.cmd(&["CLIENT", "PAUSE", "100", "SOME"])),
        show(&a.cmd(&["CLIENT", "PAUSE", "600", "WRITE"])),
    ];
    let (r, t) = timed(&mut b, &["GET", "k"]);
    seen.push(show(&r));
    assert!(t < Duration::from_millis(300), "reads must not wait under WRITE pause ({t:?})");
    let (r, t) = timed(&mut b, &["SET", "k", "v"]);
    seen.push(show(&r));
    assert!(t >= Duration::from_millis(350), "writes must wait under WRITE pause ({t:?})");
    seen.push(show(&a.cmd(&["CLIENT", "PAUSE", "5000", "WRITE"])));
    seen.push(show(&a.cmd(&["CLIENT", "UNPAUSE"])));
    let (r, t) = timed(&mut b, &["SET", "k", "w"]);
    seen.push(show(&r));
    assert!(t < Duration::from_millis(300), "UNPAUSE lifts the pause ({t:?})");
    seen.push(show(&a.cmd(&["CLIENT", "PAUSE", "400", "ALL"])));
    let (r, t) = timed(&mut b, &["PING"]);
    seen.push(show(&r));
    assert!(t >= Duration::from_millis(250), "ALL pauses every command ({t:?})");
    seen
}

#[test]
fn pause_matches_redis() {
    let r = start_redis(&[]);
    let f = start_ferrite(&[]);
    assert_eq!(pause_behaviour(r.port), pause_behaviour(f.port));
}

fn unblock_behaviour(port: u16) -> Vec<String> {
    let mut a = Conn::connect(port).unwrap();
    let mut b = Conn::connect(port).unwrap();
    let id = String::from_utf8_lossy(&a.cmd(&["CLIENT", "ID"])).trim_matches([':', '\r', '\n']).to_string();
    let mut seen = vec![
        show(&b.cmd(&["CLIENT", "UNBLOCK", &id])),
        show(&b.cmd(&["CLIENT", "UNBLOCK", &id, "MAYBE"])),
        show(&b.cmd(&["CLIENT", "UNBLOCK", "notanid"])),
    ];
    a.send(&["BLPOP", "k", "10"]);
    std::thread::sleep(Duration::from_millis(200));
    seen.push(show(&b.cmd(&["CLIENT", "UNBLOCK", &id])));
    seen.push(show(&a.read_reply()));
    a.send(&["BRPOP", "k", "10"]);
    std::thread::sleep(Duration::from_millis(200));
    seen.push(show(&b.cmd(&["CLIENT", "UNBLOCK", &id, "ERROR"])));
    seen.push(show(&a.read_reply()));
    seen.push(show(&a.cmd(&["PING"])));
    seen
}

#[test]
fn unblock_matches_redis() {
    let r = start_redis(&[]);
    let f = start_ferrite(&[]);
    assert_eq!(unblock_behaviour(r.port), unblock_behaviour(f.port));
}
