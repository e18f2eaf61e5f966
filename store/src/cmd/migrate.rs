//! MIGRATE (included from `cmd/keys.rs`): DUMP the keys, send AUTH/SELECT/
//! RESTORE to the target over a blocking connection bounded by the
//! command's timeout, and delete the keys the target accepted (unless
//! COPY). Like Redis, the calling client waits for the transfer; only the
//! shards of the migrated keys stay locked meanwhile.
//!
//! Connections are cached per `host:port` as in Redis: at most 64, closed
//! after 10 s unused (INFO `migrate_cached_sockets`), SELECT sent only when
//! the target db changed, and a cached connection found dead (a write fails,
//! or the first reply cannot be read, other than by a timeout) is replaced by
//! a fresh one once.

use crate::cmd::{eq_ic, CmdError, CmdResult, Cx, SYNTAX};
use crate::notify;
use parking_lot::Mutex;
use std::collections::HashMap;
use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::LazyLock;
use std::time::{Duration, Instant};

/// Redis's MIGRATE_SOCKET_CACHE_ITEMS and MIGRATE_SOCKET_CACHE_TTL.
const CACHE_ITEMS: usize = 64;
const CACHE_TTL: Duration = Duration::from_secs(10);

struct Cached {
    sock: TcpStream,
    /// The db the last successful transfer selected (-1: unknown, SELECT next time).
    db: i64,
    last_use: Instant,
}

/// Process-wide, like Redis's `server.migrate_cached_sockets`. A connection in use is taken out of the map.
static CACHE: LazyLock<Mutex<HashMap<String, Cached>>> = LazyLock::new(|| Mutex::new(HashMap::new()));

/// Close cached connections unused for 10 s (called by the server's cron and before counting them).
pub fn purge_idle() {
    let mut c = CACHE.lock();
    if !c.is_empty() {
        c.retain(|_, v| v.last_use.elapsed() <= CACHE_TTL);
    }
}

/// INFO stats `migrate_cached_sockets`.
pub fn cached_sockets() -> usize {
    purge_idle();
    CACHE.lock().len()
}

fn cache_put(key: String, sock: TcpStream, db: i64) {
    let mut c = CACHE.lock();
    if c.len() >= CACHE_ITEMS && !c.contains_key(&key) {
        // Full: drop one entry, as Redis drops a random one.
        if let Some(k) = c.keys().next().cloned() {
            c.remove(&k);
        }
    }
    c.insert(key, Cached { sock, db, last_use: Instant::now() });
}

fn push_cmd(buf: &mut Vec<u8>, args: &[&[u8]]) {
    buf.extend_from_slice(format!("*{}\r\n", args.len()).as_bytes());
    for a in args {
        buf.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        buf.extend_from_slice(a);
        buf.extend_from_slice(b"\r\n");
    }
}

/// One simple reply line (`+...` or `-...`), without the CRLF; the error kind when it could not be read.
fn read_line(r: &mut BufReader<TcpStream>) -> Result<String, ErrorKind> {
    let mut line = Vec::new();
    // Bounded: a reply line longer than 64 KiB is not a RESTORE/AUTH reply.
    let n = r.take(64 * 1024).read_until(b'\n', &mut line).map_err(|e| e.kind())?;
    if n == 0 || !line.ends_with(b"\n") {
        return Err(ErrorKind::UnexpectedEof);
    }
    Ok(String::from_utf8_lossy(&line).trim_end_matches(['\r', '\n']).to_string())
}

fn timed_out(k: ErrorKind) -> bool {
    matches!(k, ErrorKind::WouldBlock | ErrorKind::TimedOut)
}

/// A connection to the target: the cached one or a new one, with the db it has selected (-1: unknown).
fn get_socket(key: &str, host: &str, port: &str, dur: Duration) -> Result<(TcpStream, i64), CmdError> {
    if let Some(c) = CACHE.lock().remove(key) {
        return Ok((c.sock, c.db));
    }
    // Redis connects without blocking and sees a refused connection only
    // when it writes; a connect that times out is reported as such.
    let addr = format!("{host}:{port}").to_socket_addrs().ok().and_then(|mut a| a.next());
    match addr {
        None => Err(CmdError::raw("IOERR error or timeout connecting to the client")),
        Some(addr) => match TcpStream::connect_timeout(&addr, dur) {
            Ok(s) => Ok((s, -1)),
            Err(e) if e.kind() == ErrorKind::TimedOut => {
                Err(CmdError::raw("IOERR error or timeout connecting to the client"))
            }
            Err(_) => Err(CmdError::raw("IOERR error or timeout writing to target instance")),
        },
    }
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
    let cache_key = format!("{host}:{port}");
    let dur = Duration::from_millis(timeout as u64);
    let read_err = || CmdError::raw("IOERR error or timeout reading to target instance");
    let target_err = |l: &str| CmdError::err(format!("Target instance replied with error: {}", &l[1..]));
    let mut may_retry = true;
    'attempt: loop {
        let (mut sock, last_db) = get_socket(&cache_key, &host, &port, dur)?;
        if sock.set_read_timeout(Some(dur)).is_err() || sock.set_write_timeout(Some(dur)).is_err() {
            return Err(CmdError::raw("IOERR error or timeout connecting to the client"));
        }
        let select = last_db != dbid;
        let mut buf = Vec::new();
        if let Some((user, pass)) = auth {
            match user {
                Some(u) => push_cmd(&mut buf, &[b"AUTH", u, pass]),
                None => push_cmd(&mut buf, &[b"AUTH", pass]),
            }
        }
        let db = dbid.to_string();
        if select {
            push_cmd(&mut buf, &[b"SELECT", db.as_bytes()]);
        }
        for (key, payload, ttl) in &items {
            let t = ttl.to_string();
            let mut args: Vec<&[u8]> = vec![b"RESTORE", key, t.as_bytes(), payload];
            if replace {
                args.push(b"REPLACE");
            }
            push_cmd(&mut buf, &args);
        }
        if let Err(e) = sock.write_all(&buf) {
            // A cached connection the target closed meanwhile: once more on a new one.
            if may_retry && !timed_out(e.kind()) {
                may_retry = false;
                continue 'attempt;
            }
            return Err(CmdError::raw("IOERR error or timeout writing to target instance"));
        }
        let Ok(rsock) = sock.try_clone() else {
            return Err(read_err());
        };
        let mut r = BufReader::new(rsock);
        // Nothing was executed yet when the first reply cannot be read: a retry is safe.
        macro_rules! first_reply {
            () => {
                match read_line(&mut r) {
                    Ok(l) => l,
                    Err(k) => {
                        if may_retry && !timed_out(k) {
                            may_retry = false;
                            continue 'attempt;
                        }
                        return Err(read_err());
                    }
                }
            };
        }
        // An AUTH or SELECT error ends the call; the connection is not kept (its replies are not all read).
        if auth.is_some() {
            let l = first_reply!();
            if l.starts_with('-') {
                return Err(target_err(&l));
            }
        }
        if select {
            let l = first_reply!();
            if l.starts_with('-') {
                return Err(target_err(&l));
            }
        }
        let mut error: Option<CmdError> = None;
        for (j, (key, _, _)) in items.iter().enumerate() {
            let l = if j == 0 {
                first_reply!()
            } else {
                match read_line(&mut r) {
                    Ok(l) => l,
                    Err(_) => return Err(error.unwrap_or_else(read_err)),
                }
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
        drop(r);
        // Every reply was read: the connection is kept. After an error reply the next call selects again.
        cache_put(cache_key, sock, if error.is_some() { -1 } else { dbid });
        return match error {
            Some(e) => Err(e),
            None => {
                cx.out.ok();
                Ok(())
            }
        };
    }
}
