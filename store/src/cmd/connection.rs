//! Connection commands: PING, ECHO, QUIT, SELECT, HELLO, AUTH, RESET.

use super::{eq_ic, CmdError, CmdImpl, CmdResult, Cx, Lock, SYNTAX};
use std::sync::atomic::Ordering;

pub static COMMANDS: &[CmdImpl] = &[
    CmdImpl { name: "ping", handler: ping, lock: Lock::None },
    CmdImpl { name: "echo", handler: echo, lock: Lock::None },
    CmdImpl { name: "quit", handler: quit, lock: Lock::None },
    CmdImpl { name: "select", handler: select, lock: Lock::None },
    CmdImpl { name: "hello", handler: hello, lock: Lock::None },
    CmdImpl { name: "auth", handler: auth, lock: Lock::None },
    CmdImpl { name: "reset", handler: reset, lock: Lock::None },
    CmdImpl { name: "slowlog", handler: introspect::slowlog, lock: Lock::None },
    CmdImpl { name: "latency", handler: introspect::latency, lock: Lock::None },
];

#[path = "introspect.rs"]
mod introspect;

fn ping(cx: &mut Cx) -> CmdResult {
    if cx.argc() > 2 {
        return Err(cx.arity_error());
    }
    if !cx.client.resp3 && cx.client.in_pubsub() {
        cx.out.array(2);
        cx.out.bulk(b"pong");
        cx.out.bulk(if cx.argc() == 2 { cx.arg(1) } else { b"" });
    } else if cx.argc() == 2 {
        cx.out.bulk(cx.arg(1));
    } else {
        cx.out.simple(b"PONG");
    }
    Ok(())
}

fn echo(cx: &mut Cx) -> CmdResult {
    cx.out.bulk(cx.arg(1));
    Ok(())
}

fn quit(cx: &mut Cx) -> CmdResult {
    cx.out.ok();
    cx.client.close_after_reply = true;
    // The connection is going away: stop receiving messages and tracking
    // invalidations now rather than when its task gets to clean up, so a
    // command another client sends right after sees it gone (as with
    // Redis's single thread).
    super::pubsub::unsubscribe_all(cx.srv, cx.client);
    super::client::tracking::disable(cx.srv, cx.client);
    // Gone for CLIENT LIST / KILL and for clients redirecting their
    // invalidations to it (tracking-redir-broken) from now on.
    cx.srv.clients.unregister(cx.client.id);
    Ok(())
}

fn select(cx: &mut Cx) -> CmdResult {
    let id = cx.int_arg(1)?;
    if id < 0 || id >= cx.srv.store.dbs.len() as i64 || id > i32::MAX as i64 {
        return Err(CmdError::err("DB index is out of range"));
    }
    cx.client.db = id as usize;
    cx.client.handle.db.store(id as usize, Ordering::Relaxed);
    cx.out.ok();
    Ok(())
}

/// Check a username/password pair against the ACL users (no side effects).
pub fn check_credentials(cx: &Cx, user: &[u8], pass: &[u8]) -> bool {
    cx.srv.acl.check_credentials(user, pass)
}

const WRONGPASS: CmdError = CmdError::st("WRONGPASS invalid username-password pair or user is disabled.");

fn auth(cx: &mut Cx) -> CmdResult {
    let (user, pass): (&[u8], &[u8]) = match cx.argc() {
        2 => {
            if cx.srv.acl.default_nopass() {
                return Err(CmdError::err(
                    "AUTH <password> called without any password configured for the default user. Are you sure your configuration is correct?",
                ));
            }
            (b"default", cx.arg(1))
        }
        3 => (cx.arg(1), cx.arg(2)),
        _ => return Err(SYNTAX),
    };
    if crate::acl::authenticate(cx.srv, cx.client, user, pass, cx.arg(0)) {
        cx.out.ok();
        Ok(())
    } else {
        Err(WRONGPASS)
    }
}

/// Client names may not contain spaces, newlines or special characters.
pub fn valid_client_name(name: &[u8]) -> bool {
    name.iter().all(|&c| (b'!'..=b'~').contains(&c))
}

fn hello(cx: &mut Cx) -> CmdResult {
    let mut ver = None;
    let mut i = 1;
    if cx.argc() >= 2 {
        let v = cx.int_arg(1).map_err(|_| CmdError::err("Protocol version is not an integer or out of range"))?;
        if !(2..=3).contains(&v) {
            return Err(CmdError::st("NOPROTO unsupported protocol version"));
        }
        ver = Some(v);
        i = 2;
    }
    let mut auth: Option<(usize, usize)> = None;
    let mut setname: Option<usize> = None;
    while i < cx.argc() {
        let more = cx.argc() - i - 1;
        if eq_ic(cx.arg(i), b"AUTH") && more >= 2 {
            auth = Some((i + 1, i + 2));
            i += 3;
        } else if eq_ic(cx.arg(i), b"SETNAME") && more >= 1 {
            setname = Some(i + 1);
            i += 2;
        } else {
            return Err(CmdError::err(format!(
                "Syntax error in HELLO option '{}'",
                String::from_utf8_lossy(cx.arg(i))
            )));
        }
    }
    if let Some((u, p)) = auth {
        if !crate::acl::authenticate(cx.srv, cx.client, cx.arg(u), cx.arg(p), cx.arg(0)) {
            return Err(WRONGPASS);
        }
    }
    if !cx.client.authenticated {
        return Err(CmdError::st(
            "NOAUTH HELLO must be called with the client already authenticated, otherwise the HELLO <proto> AUTH <user> <pass> option can be used to authenticate the client and select the RESP protocol version at the same time",
        ));
    }
    if let Some(n) = setname {
        let name = cx.arg(n);
        if !valid_client_name(name) {
            return Err(CmdError::err("Client names cannot contain spaces, newlines or special characters."));
        }
        *cx.client.handle.name.lock() = if name.is_empty() { None } else { Some(cx.args[n].clone()) };
    }
    if let Some(v) = ver {
        cx.client.resp3 = v == 3;
        cx.out.resp3 = v == 3;
        cx.client.handle.resp.store(v as u8, Ordering::Relaxed);
    }
    let o = &mut *cx.out;
    o.map(7);
    o.bulk(b"server");
    o.bulk(b"redis");
    o.bulk(b"version");
    o.bulk(ferrite_commands::table::table().redis_version.as_bytes());
    o.bulk(b"proto");
    o.int(if cx.client.resp3 { 3 } else { 2 });
    o.bulk(b"id");
    o.int(cx.client.id as i64);
    o.bulk(b"mode");
    o.bulk(b"standalone");
    o.bulk(b"role");
    o.bulk(b"master");
    o.bulk(b"modules");
    o.array(0);
    Ok(())
}

fn reset(cx: &mut Cx) -> CmdResult {
    let srv = cx.srv;
    cx.client.multi = None;
    cx.client.handle.multi.store(-1, Ordering::Relaxed);
    crate::dispatch::unwatch_all(srv, cx.client);
    super::pubsub::unsubscribe_all(srv, cx.client);
    super::client::tracking::disable(srv, cx.client);
    if cx.client.handle.monitor.swap(false, Ordering::Relaxed) {
        let mut m = srv.monitors.write();
        m.retain(|(id, _)| *id != cx.client.id);
        srv.monitor_count.store(m.len(), Ordering::Relaxed);
    }
    cx.client.db = 0;
    cx.client.handle.db.store(0, Ordering::Relaxed);
    cx.client.resp3 = false;
    cx.out.resp3 = false;
    cx.client.handle.resp.store(2, Ordering::Relaxed);
    cx.client.reply_off = false;
    *cx.client.handle.name.lock() = None;
    cx.client.authenticated = !srv.acl.auth_required();
    cx.client.user = "default".into();
    *cx.client.handle.user.lock() = "default".into();
    cx.out.simple(b"RESET");
    Ok(())
}
