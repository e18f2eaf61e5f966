//! Shared helpers for the proxy's integration tests: start the `ferrite-proxy` binary on a free loopback port.

#![allow(dead_code)]

use ferrite_testkit::{free_port, spawn_server, Conn, Proc, Reply};
use std::time::Duration;

pub fn proxy_bin() -> &'static str {
    env!("CARGO_BIN_EXE_ferrite-proxy")
}

/// Start a proxy with extra flags; returns the process (port in `.port`).
pub fn start_proxy(extra: &[&str]) -> Proc {
    let port = free_port();
    let mut args: Vec<String> = vec!["--listen".into(), format!("127.0.0.1:{port}"), "--threads".into(), "2".into()];
    args.extend(extra.iter().map(|s| s.to_string()));
    spawn_server(proxy_bin(), &args, port, "ferrite-proxy")
}

/// Start a proxy in front of a cluster (embedded Ferrite as the other side).
pub fn start_proxy_cluster(seed: &str, extra: &[&str]) -> Proc {
    let mut a = vec!["--upstream-cluster", seed];
    a.extend_from_slice(extra);
    start_proxy(&a)
}

pub fn admin(c: &mut Conn, args: &[&str]) -> Reply {
    let mut v = vec!["FERRITE.PROXY"];
    v.extend_from_slice(args);
    c.call(&v)
}

/// A key whose slot is `slot` (brute force over a counter, bounded).
pub fn key_in_slot(slot: u16, prefix: &str) -> String {
    for i in 0..2_000_000u32 {
        let k = format!("{prefix}{i}");
        if ferrite_commands::key_hash_slot(k.as_bytes()) == slot {
            return k;
        }
    }
    panic!("no key found for slot {slot}");
}

pub fn slot(k: &str) -> u16 {
    ferrite_commands::key_hash_slot(k.as_bytes())
}

pub fn sleep_ms(ms: u64) {
    std::thread::sleep(Duration::from_millis(ms));
}

/// The metrics address a proxy printed (`--metrics-listen 127.0.0.1:0`).
pub fn metrics_addr(p: &Proc) -> String {
    ferrite_testkit::wait_for(Duration::from_secs(10), "the metrics address in the proxy output", || {
        p.log()
            .lines()
            .find_map(|l| l.split("metrics on http://").nth(1).map(|a| a.trim_end_matches("/metrics").to_string()))
    })
}

/// GET /metrics over plain HTTP.
pub fn fetch_metrics(p: &Proc) -> String {
    use std::io::{Read, Write};
    let addr = metrics_addr(p);
    let mut s = std::net::TcpStream::connect(&addr).expect("connect metrics");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    out
}
