//! MIGRATE (included from `cmd/keys.rs`): DUMP the keys, send AUTH/SELECT/
//! RESTORE to the target over a fresh blocking connection bounded by the
//! command's timeout, and delete the keys the target accepted (unless
//! COPY). Like Redis, the calling client waits for the transfer; only the
//! shards of the migrated keys stay locked meanwhile. Differences from
//! Redis: no connection caching between calls, and stream values cannot be
//! serialized yet (an error, nothing is sent).

use crate::cmd::{eq_ic, CmdError, CmdResult, Cx, SYNTAX};
use crate::notify;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

fn push_cmd(buf: &mut Vec<u8>, args: &[&[u8]]) {
    buf.extend_from_slice(format!("*{}\r\n", args.len()).as_bytes());
    for a in args {
        buf.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        buf.extend_from_slice(a);
        buf.extend_from_slice(b"\r\n");
    }
}

/// One simple reply line (`+...` or `-...`), without the CRLF.
fn read_line(r: &mut BufReader<TcpStream>) -> Option<String> {
    let mut line = Vec::new();
    // Bounded: a reply line longer than 64 KiB is not a RESTORE/AUTH reply.
    let n = r.take(64 * 1024).read_until(b'\n', &mut line).ok()?;
    if n == 0 || !line.ends_with(b"\n") {
        return None;
    }
    Some(String::from_utf8_lossy(&line).trim_end_matches(['\r', '\n']).to_string())
}

pub fn migrate(cx: &mut Cx) -> CmdResult {
    let (mut copy, mut replace) = (false, false);
    let mut auth: Option<(Option<&[u8]>, &[u8])> = None;
    let mut first_key = 3;
    let mut num_keys = 1;
    let mut j = 6;
    while j < cx.argc() {
        let a = cx.arg(j);
        let more = cx.argc() - j - 1;
        if eq_ic(a, b"copy") {
            copy = true;
        } else if eq_ic(a, b"replace") {
            replace = true;
        } else if eq_ic(a, b"auth") {
            if more == 0 {
                return Err(SYNTAX);
            }
            j += 1;
            auth = Some((None, cx.arg(j)));
        } else if eq_ic(a, b"auth2") {
            if more < 2 {
                return Err(SYNTAX);
            }
            auth = Some((Some(cx.arg(j + 1)), cx.arg(j + 2)));
            j += 2;
        } else if eq_ic(a, b"keys") {
            if !cx.arg(3).is_empty() {
                return Err(CmdError::err(
                    "When using MIGRATE KEYS option, the key argument must be set to the empty string",
                ));
            }
            first_key = j + 1;
            num_keys = cx.argc() - j - 1;
            break;
        } else {
            return Err(SYNTAX);
        }
        j += 1;
    }
    let timeout = cx.int_arg(5)?;
    let dbid = cx.int_arg(4)?;
    let timeout = if timeout <= 0 { 1000 } else { timeout };

    // The keys that exist, with their payloads and remaining TTLs.
    let mut items: Vec<(&[u8], Vec<u8>, i64)> = Vec::new();
    let now = cx.ks.now;
    for i in first_key..first_key + num_keys {
        let key = cx.arg(i);
        if let Some(e) = cx.ks.lookup_read(key)? {
            let ttl = if e.expire_at != 0 { (e.expire_at - now).max(1) } else { 0 };
            let v = crate::rdbconv::to_rdb(&e.value);
            items.push((key, ferrite_rdb::dump_payload(&v), ttl));
        }
    }
    if items.is_empty() {
        cx.out.simple(b"NOKEY");
        return Ok(());
    }

    let host = String::from_utf8_lossy(cx.arg(1)).to_string();
    let port = String::from_utf8_lossy(cx.arg(2)).to_string();
    let dur = Duration::from_millis(timeout as u64);
    // Redis connects without blocking and sees a refused connection only
    // when it writes; a connect that times out is reported as such.
    let addr = format!("{host}:{port}").to_socket_addrs().ok().and_then(|mut a| a.next());
    let conn = match addr {
        None => Err(CmdError::raw("IOERR error or timeout connecting to the client")),
        Some(addr) => match TcpStream::connect_timeout(&addr, dur) {
            Ok(s) => Ok(s),
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {
                Err(CmdError::raw("IOERR error or timeout connecting to the client"))
            }
            Err(_) => Err(CmdError::raw("IOERR error or timeout writing to target instance")),
        },
    };
    let mut sock = conn?;
    if sock.set_read_timeout(Some(dur)).is_err() || sock.set_write_timeout(Some(dur)).is_err() {
        return Err(CmdError::raw("IOERR error or timeout connecting to the client"));
    }

    let mut buf = Vec::new();
    if let Some((user, pass)) = auth {
        match user {
            Some(u) => push_cmd(&mut buf, &[b"AUTH", u, pass]),
            None => push_cmd(&mut buf, &[b"AUTH", pass]),
        }
    }
    let db = dbid.to_string();
    push_cmd(&mut buf, &[b"SELECT", db.as_bytes()]);
    for (key, payload, ttl) in &items {
        let t = ttl.to_string();
        let mut args: Vec<&[u8]> = vec![b"RESTORE", key, t.as_bytes(), payload];
        if replace {
            args.push(b"REPLACE");
        }
        push_cmd(&mut buf, &args);
    }
    if sock.write_all(&buf).is_err() {
        return Err(CmdError::raw("IOERR error or timeout writing to target instance"));
    }
    let Ok(rsock) = sock.try_clone() else {
        return Err(CmdError::raw("IOERR error or timeout reading to target instance"));
    };
    let mut r = BufReader::new(rsock);
    let read_err = || CmdError::raw("IOERR error or timeout reading to target instance");
    let target_err = |l: &str| CmdError::err(format!("Target instance replied with error: {}", &l[1..]));
    if auth.is_some() {
        let l = read_line(&mut r).ok_or_else(read_err)?;
        if l.starts_with('-') {
            return Err(target_err(&l));
        }
    }
    let l = read_line(&mut r).ok_or_else(read_err)?;
    if l.starts_with('-') {
        return Err(target_err(&l));
    }
    let mut error: Option<CmdError> = None;
    for (key, _, _) in &items {
        let Some(l) = read_line(&mut r) else {
            return Err(error.unwrap_or_else(read_err));
        };
        if l.starts_with('-') {
            if error.is_none() {
                error = Some(target_err(&l));
            }
        } else if !copy {
            cx.ks.remove(key)?;
            cx.ks.notify(notify::GENERIC, "del", key);
        }
    }
    match error {
        Some(e) => Err(e),
        None => {
            cx.out.ok();
            Ok(())
        }
    }
}
