//! Differential tests for keyspace notifications.
//!
//! Each `transcripts/notify_*.txt` script runs against a fresh real
//! redis-server and a fresh ferrite. Besides comparing every reply byte for
//! byte, a subscriber connection on each server (PSUBSCRIBE `__key*__:*`)
//! collects the notifications each command produces; after every command
//! both servers publish an end marker and the messages before it are
//! compared exactly (order included).
//!
//! Script syntax (on top of the transcript syntax understood here):
//! - `!flags F` sets `notify-keyspace-events` to F on both servers;
//! - `!async CMD` sends CMD on a second command connection without reading
//!   its reply (a blocking command); `!await` reads and compares that reply;
//! - `!sleep MS` (its events are compared together with the next line's,
//!   so active and lazy expiry both count), `!noreply CMD`, `!unordered CMD`,
//!   `# comment`.
//!
//! Commands between MULTI and EXEC/DISCARD are not followed by a marker
//! (they are only queued); the events of the whole transaction are
//! compared after EXEC.
mod support;

use std::time::Duration;
use support::{show, sorted_elements, split, Conn, Pair};

const MARK: &str = "__keymark__:end";

struct Side {
    cmd: Conn,
    cmd2: Conn,
    sub: Conn,
    seq: u64,
}

impl Side {
    fn new(port: u16, resp3: bool) -> Side {
        let mut cmd = Conn::connect(port).unwrap();
        let mut cmd2 = Conn::connect(port).unwrap();
        let mut sub = Conn::connect(port).unwrap();
        if resp3 {
            for c in [&mut cmd, &mut cmd2, &mut sub] {
                c.cmd(&["HELLO", "3"]);
            }
        }
        sub.cmd(&["PSUBSCRIBE", "__key*__:*"]);
        Side { cmd, cmd2, sub, seq: 0 }
    }

    /// Wait (bounded) until a client is blocked (`!async` commands block).
    fn wait_blocked(&mut self) {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let info = String::from_utf8_lossy(&self.cmd.cmd(&["INFO", "clients"])).to_string();
            let blocked = info
                .lines()
                .find_map(|l| l.strip_prefix("blocked_clients:"))
                .and_then(|v| v.trim().parse::<u64>().ok())
                .unwrap_or(0);
            if blocked > 0 {
                return;
            }
            assert!(std::time::Instant::now() < deadline, "the !async command never blocked");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Publish an end marker and collect the notifications before it.
    fn events(&mut self) -> Vec<String> {
        self.seq += 1;
        let payload = self.seq.to_string();
        self.cmd.cmd(&["PUBLISH", MARK, &payload]);
        let mut out = Vec::new();
        loop {
            let m = self.sub.read_reply();
            let items = bulk_items(&m);
            let is_mark = items.len() == 4 && items[2] == MARK.as_bytes() && items[3] == payload.as_bytes();
            if is_mark {
                return out;
            }
            if items.len() == 4 {
                // Frame type (* or >), pattern, channel, payload.
                let t = m[0] as char;
                out.push(format!("{t}{} {} {}", show(&items[1]), show(&items[2]), show(&items[3])));
            } else {
                out.push(show(&m));
            }
        }
    }
}

/// The bulk strings of a flat pmessage frame, in order.
fn bulk_items(m: &[u8]) -> Vec<Vec<u8>> {
    let mut v = Vec::new();
    let mut rest = &m[m.windows(2).position(|w| w == b"\r\n").unwrap() + 2..];
    while !rest.is_empty() {
        let n = support::frame_len(rest).unwrap();
        let item = &rest[..n];
        let body_start = item.windows(2).position(|w| w == b"\r\n").unwrap() + 2;
        v.push(item[body_start..n.saturating_sub(2).max(body_start)].to_vec());
        rest = &rest[n..];
    }
    v
}

fn run_script(name: &str, text: &str, resp3: bool) {
    let pair = Pair::start();
    let mut r = Side::new(pair.redis.port, resp3);
    let mut f = Side::new(pair.ferrite.port, resp3);
    let name = &format!("{name} (RESP{})", if resp3 { 3 } else { 2 });
    let mut in_multi = false;
    let mut fails = Vec::new();
    for (lineno, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let at = format!("{name}:{}: {line}", lineno + 1);
        let mut compare_events = !in_multi;
        if let Some(fl) = line.strip_prefix("!flags ") {
            let fl = fl.trim();
            let fl = if fl == "\"\"" { "" } else { fl };
            let a = r.cmd.cmd(&["CONFIG", "SET", "notify-keyspace-events", fl]);
            let b = f.cmd.cmd(&["CONFIG", "SET", "notify-keyspace-events", fl]);
            assert_eq!(show(&a), show(&b), "{at}");
        } else if let Some(ms) = line.strip_prefix("!sleep ") {
            std::thread::sleep(Duration::from_millis(ms.trim().parse().unwrap()));
            // Events of the pause (active expiry) are compared with the next line's.
            compare_events = false;
        } else if let Some(cmd) = line.strip_prefix("!async ") {
            r.cmd2.send(&split(cmd));
            f.cmd2.send(&split(cmd));
            // Let the blocking command register before going on.
            r.wait_blocked();
            f.wait_blocked();
            compare_events = false;
        } else if line == "!await" {
            let a = r.cmd2.read_reply();
            let b = f.cmd2.read_reply();
            if a != b {
                fails.push(format!("\n{at}\n  redis reply:   {}\n  ferrite reply: {}", show(&a), show(&b)));
            }
        } else if let Some(cmd) = line.strip_prefix("!noreply ") {
            r.cmd.line(cmd);
            f.cmd.line(cmd);
        } else if let Some(cmd) = line.strip_prefix("!unordered ") {
            let a = r.cmd.line(cmd);
            let b = f.cmd.line(cmd);
            if sorted_elements(&a) != sorted_elements(&b) {
                fails.push(format!("\n{at}\n  redis reply:   {}\n  ferrite reply: {}", show(&a), show(&b)));
            }
        } else {
            let args = split(line);
            let a = r.cmd.cmd(&args);
            let b = f.cmd.cmd(&args);
            if a != b {
                fails.push(format!("\n{at}\n  redis reply:   {}\n  ferrite reply: {}", show(&a), show(&b)));
            }
            let name = String::from_utf8_lossy(&args[0]).to_ascii_uppercase();
            match name.as_str() {
                "MULTI" if a.starts_with(b"+OK") => {
                    in_multi = true;
                    compare_events = false;
                }
                "EXEC" | "DISCARD" => {
                    in_multi = false;
                    compare_events = true;
                }
                _ => {}
            }
        }
        if compare_events {
            let ea = r.events();
            let eb = f.events();
            if ea != eb {
                fails.push(format!("\n{at}\n  redis events:   {ea:?}\n  ferrite events: {eb:?}"));
            }
        }
    }
    drop(pair);
    if !fails.is_empty() {
        panic!("{} mismatches:{}", fails.len(), fails.join(""));
    }
}

#[test]
fn notify_events() {
    let dir = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/transcripts");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            let n = p.file_name().unwrap().to_string_lossy().to_string();
            n.starts_with("notify_") && n.ends_with(".txt")
        })
        .collect();
    files.sort();
    assert!(!files.is_empty());
    let only = std::env::var("NOTIFY_ONLY").ok();
    for f in files {
        let name = f.file_name().unwrap().to_string_lossy().to_string();
        if only.as_ref().is_some_and(|o| !name.contains(o.as_str())) {
            continue;
        }
        let text = std::fs::read_to_string(&f).unwrap();
        run_script(&name, &text, false);
        run_script(&name, &text, true);
    }
}

/// Redis delivers subscription confirmations and messages even when the
/// subscriber silenced its replies (CLIENT REPLY OFF / SKIP): its own
/// keyspace-notification tests subscribe that way.
#[test]
fn subscribe_with_client_reply_off_or_skip() {
    let pair = Pair::start();
    for mode in ["OFF", "SKIP", "ON"] {
        let mut streams = Vec::new();
        for port in [pair.redis.port, pair.ferrite.port] {
            let mut cmd = Conn::connect(port).unwrap();
            let mut sub = Conn::connect(port).unwrap();
            cmd.cmd(&["CONFIG", "SET", "notify-keyspace-events", "KA"]);
            sub.send(&["CLIENT", "REPLY", mode]);
            sub.send(&["PSUBSCRIBE", "*"]);
            // Let both commands run before anything is published.
            std::thread::sleep(Duration::from_millis(100));
            cmd.cmd(&["SET", "foo", "bar"]);
            cmd.cmd(&["PUBLISH", MARK, "x"]);
            let mut got = Vec::new();
            loop {
                let m = sub.read_reply();
                let done = bulk_items(&m).get(2).is_some_and(|c| c == MARK.as_bytes());
                got.push(show(&m));
                if done {
                    break;
                }
            }
            streams.push(got);
        }
        assert_eq!(streams[0], streams[1], "CLIENT REPLY {mode}: redis vs ferrite");
    }
}
