//! ACL commands: ACL SETUSER, GETUSER, DELUSER, LIST, USERS, WHOAMI, CAT,
//! LOG, GENPASS, DRYRUN, LOAD, SAVE, HELP.

use super::{CmdError, CmdImpl, CmdResult, Cx, Lock};
use crate::acl::{self, index, Denied, Reason, Sanitize, Selector, CATEGORIES};
use crate::server::Server;
use std::sync::atomic::Ordering;

pub static COMMANDS: &[CmdImpl] = &[CmdImpl { name: "acl", handler: acl_cmd, lock: Lock::None }];

fn acl_cmd(cx: &mut Cx) -> CmdResult {
    let sub = String::from_utf8_lossy(cx.arg(1)).to_ascii_lowercase();
    match sub.as_str() {
        "setuser" => setuser(cx),
        "deluser" => deluser(cx),
        "getuser" => getuser(cx),
        "list" | "users" => list(cx, sub == "users"),
        "whoami" => {
            cx.out.bulk(cx.client.user.as_bytes());
            Ok(())
        }
        "load" | "save" if cx.srv.config.read().aclfile.is_empty() => Err(CmdError::err(
            "This Redis instance is not configured to use an ACL file. You may want to specify users via the ACL SETUSER command and then issue a CONFIG REWRITE (assuming you have a Redis configuration file set) in order to store users in the Redis configuration.",
        )),
        "load" => load(cx),
        "save" => save(cx),
        "cat" => cat(cx),
        "genpass" => genpass(cx),
        "log" => log(cx),
        "dryrun" => dryrun(cx),
        "help" => help(cx),
        _ => Err(subcmd_err(cx)),
    }
}

/// Redis's `addReplySubcommandSyntaxError`.
fn subcmd_err(cx: &Cx) -> CmdError {
    let sub: String = String::from_utf8_lossy(cx.arg(1)).chars().take(128).collect();
    CmdError::err(format!("unknown subcommand or wrong number of arguments for '{sub}'. Try ACL HELP."))
}

fn has_spaces(s: &[u8]) -> bool {
    s.iter().any(|&c| c == 0 || c.is_ascii_whitespace() || c == 0x0b)
}

fn setuser(cx: &mut Cx) -> CmdResult {
    let name = cx.arg(2);
    if has_spaces(name) {
        return Err(CmdError::err("Usernames can't contain spaces or null characters"));
    }
    let ops: Vec<&[u8]> = cx.args[3..].iter().map(|a| &a[..]).collect();
    let revoked = cx.srv.acl.set_user(name, &ops).map_err(CmdError::err)?;
    if let Some(allowed) = revoked {
        kill_pubsub_clients(cx, name, &allowed);
    }
    cx.out.ok();
    Ok(())
}

/// Close the subscribed connections of `user` whose subscriptions the
/// user's channel patterns no longer allow.
fn kill_pubsub_clients(cx: &mut Cx, user: &[u8], allowed: &[Vec<u8>]) {
    let ok_channel = |ch: &[u8]| allowed.iter().any(|p| crate::glob::glob_match(p, ch, false));
    let ok_pattern = |pat: &[u8]| allowed.iter().any(|p| p.as_slice() == pat);
    let ps = &cx.srv.pubsub;
    for h in cx.srv.clients.snapshot() {
        let subs = h.sub.load(Ordering::Relaxed) + h.psub.load(Ordering::Relaxed) + h.ssub.load(Ordering::Relaxed);
        if subs == 0 || h.user.lock().as_bytes() != user {
            continue;
        }
        let id = h.id;
        let bad = ps.patterns.read().iter().any(|(p, m)| m.contains_key(&id) && !ok_pattern(p))
            || ps.channels.read().iter().any(|(c, m)| m.contains_key(&id) && !ok_channel(c))
            || ps.shard_channels.read().iter().any(|(c, m)| m.contains_key(&id) && !ok_channel(c));
        if bad {
            if id == cx.client.id {
                cx.client.close_after_reply = true;
            } else {
                h.kill();
            }
        }
    }
}

/// Close the connections authenticated as one of `names` (the caller's
/// own connection after this reply).
fn kill_clients_of(cx: &mut Cx, names: &[Vec<u8>]) {
    if names.iter().any(|n| n.as_slice() == cx.client.user.as_bytes()) {
        cx.client.close_after_reply = true;
    }
    for h in cx.srv.clients.snapshot() {
        if h.id == cx.client.id {
            continue;
        }
        let user = h.user.lock().clone();
        if names.iter().any(|n| n.as_slice() == user.as_bytes()) {
            h.kill();
        }
    }
}

fn deluser(cx: &mut Cx) -> CmdResult {
    if cx.args[2..].iter().any(|a| &a[..] == b"default") {
        return Err(CmdError::err("The 'default' user cannot be removed"));
    }
    let names: Vec<&[u8]> = cx.args[2..].iter().map(|a| &a[..]).collect();
    let existed: Vec<Vec<u8>> = names.iter().filter(|n| cx.srv.acl.get(n).is_some()).map(|n| n.to_vec()).collect();
    let n = cx.srv.acl.delete(&names);
    kill_clients_of(cx, &existed);
    cx.out.int(n as i64);
    Ok(())
}

fn selector_reply(cx: &mut Cx, s: &Selector) {
    let o = &mut *cx.out;
    o.bulk(b"commands");
    o.bulk(s.describe_commands().as_bytes());
    o.bulk(b"keys");
    o.bulk(&s.keys_string());
    o.bulk(b"channels");
    o.bulk(&s.channels_string());
}

fn getuser(cx: &mut Cx) -> CmdResult {
    if cx.argc() != 3 {
        return Err(subcmd_err(cx));
    }
    let Some(u) = cx.srv.acl.get(cx.arg(2)) else {
        cx.out.null();
        return Ok(());
    };
    let r = u.rules.read().clone();
    cx.out.map(6);
    cx.out.bulk(b"flags");
    let mut flags: Vec<&[u8]> = vec![if r.enabled { b"on" } else { b"off" }];
    if r.nopass {
        flags.push(b"nopass");
    }
    match r.sanitize {
        Sanitize::Skip => flags.push(b"skip-sanitize-payload"),
        Sanitize::Sanitize => flags.push(b"sanitize-payload"),
        Sanitize::Unset => {}
    }
    cx.out.set(flags.len());
    for f in flags {
        cx.out.bulk(f);
    }
    cx.out.bulk(b"passwords");
    cx.out.array(r.passwords.len());
    for p in &r.passwords {
        cx.out.bulk(p.as_bytes());
    }
    selector_reply(cx, r.root());
    cx.out.bulk(b"selectors");
    cx.out.array(r.selectors.len() - 1);
    for s in &r.selectors[1..] {
        cx.out.map(3);
        selector_reply(cx, s);
    }
    Ok(())
}

fn list(cx: &mut Cx, names_only: bool) -> CmdResult {
    if cx.argc() != 2 {
        return Err(subcmd_err(cx));
    }
    let users = cx.srv.acl.users();
    cx.out.array(users.len());
    for u in users {
        if names_only {
            cx.out.bulk(u.name.as_bytes());
        } else {
            let mut line = b"user ".to_vec();
            line.extend_from_slice(u.name.as_bytes());
            line.push(b' ');
            line.extend_from_slice(&u.rules.read().describe());
            cx.out.bulk(&line);
        }
    }
    Ok(())
}

/// Load the ACL file configured at startup (Redis exits on errors).
pub fn load_at_startup(srv: &Server) -> Result<(), String> {
    let path = srv.config.read().aclfile.clone();
    if path.is_empty() {
        return Ok(());
    }
    load_file(srv, &path).map(|_| ())
}

fn load_file(srv: &Server, path: &str) -> Result<Vec<Vec<u8>>, String> {
    let text =
        std::fs::read(path).map_err(|e| format!("Error loading ACLs, opening file '{path}': {}", io_error_text(&e)))?;
    srv.acl.load_text(&String::from_utf8_lossy(&text), path)
}

/// strerror-style text for an I/O error.
fn io_error_text(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::NotFound => "No such file or directory".into(),
        std::io::ErrorKind::PermissionDenied => "Permission denied".into(),
        _ => {
            let s = e.to_string();
            s.split(" (os error").next().unwrap_or(&s).to_string()
        }
    }
}

fn load(cx: &mut Cx) -> CmdResult {
    if cx.argc() != 2 {
        return Err(subcmd_err(cx));
    }
    let path = cx.srv.config.read().aclfile.clone();
    let old = load_file(cx.srv, &path).map_err(CmdError::err)?;
    kill_clients_of(cx, &old);
    cx.out.ok();
    Ok(())
}

fn save(cx: &mut Cx) -> CmdResult {
    if cx.argc() != 2 {
        return Err(subcmd_err(cx));
    }
    let path = cx.srv.config.read().aclfile.clone();
    let text = cx.srv.acl.save_text();
    let tmp = format!("{path}.tmp-{}-{}", std::process::id(), crate::server::now_ms());
    let ok = std::fs::write(&tmp, &text).and_then(|_| std::fs::rename(&tmp, &path));
    if ok.is_err() {
        let _ = std::fs::remove_file(&tmp);
        return Err(CmdError::err(
            "There was an error trying to save the ACLs. Please check the server logs for more information",
        ));
    }
    cx.out.ok();
    Ok(())
}

fn cat(cx: &mut Cx) -> CmdResult {
    match cx.argc() {
        2 => {
            cx.out.array(CATEGORIES.len());
            for c in CATEGORIES {
                cx.out.bulk(c.as_bytes());
            }
            Ok(())
        }
        3 => {
            let flag = acl::category_flag(cx.arg(2));
            if flag == 0 {
                let name: String = String::from_utf8_lossy(cx.arg(2)).chars().take(128).collect();
                return Err(CmdError::err(format!("Unknown category '{name}'")));
            }
            let names: Vec<&str> = index().cmds.iter().filter(|c| c.cats & flag != 0).map(|c| c.name).collect();
            cx.out.array(names.len());
            for n in names {
                cx.out.bulk(n.as_bytes());
            }
            Ok(())
        }
        _ => Err(subcmd_err(cx)),
    }
}

fn genpass(cx: &mut Cx) -> CmdResult {
    if cx.argc() > 3 {
        return Err(subcmd_err(cx));
    }
    let bits = if cx.argc() == 3 { cx.int_arg(2)? } else { 256 };
    if bits <= 0 || bits > 4096 {
        return Err(CmdError::err(
            "ACL GENPASS argument must be the number of bits for the output password, a positive number up to 4096",
        ));
    }
    let chars = ((bits + 3) / 4) as usize;
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let pass: Vec<u8> = (0..chars).map(|_| HEX[(rand::random::<u8>() & 15) as usize]).collect();
    cx.out.bulk(&pass);
    Ok(())
}

fn log(cx: &mut Cx) -> CmdResult {
    if cx.argc() > 3 {
        return Err(subcmd_err(cx));
    }
    let mut count: i64 = 10;
    if cx.argc() == 3 {
        if cx.arg(2).eq_ignore_ascii_case(b"reset") {
            cx.srv.acl.log.lock().clear();
            cx.out.ok();
            return Ok(());
        }
        count = cx.int_arg(2)?.max(0);
    }
    let now = crate::server::now_ms();
    let log = cx.srv.acl.log.lock();
    let n = (count as usize).min(log.len());
    let o = &mut *cx.out;
    o.array(n);
    for e in log.iter().take(n) {
        o.map(7);
        o.bulk(b"count");
        o.int(e.count as i64);
        o.bulk(b"reason");
        o.bulk(match e.reason {
            Reason::Command => b"command".as_slice(),
            Reason::Key => b"key",
            Reason::Channel => b"channel",
            Reason::Auth => b"auth",
        });
        o.bulk(b"context");
        o.bulk(e.context.as_bytes());
        o.bulk(b"object");
        o.bulk(&e.object);
        o.bulk(b"username");
        o.bulk(&e.username);
        o.bulk(b"age-seconds");
        o.double((now - e.ctime_ms) as f64 / 1000.0);
        o.bulk(b"client-info");
        o.bulk(e.cinfo.as_bytes());
    }
    Ok(())
}

fn dryrun(cx: &mut Cx) -> CmdResult {
    let Some(u) = cx.srv.acl.get(cx.arg(2)) else {
        return Err(CmdError::err(format!("User '{}' not found", String::from_utf8_lossy(cx.arg(2)))));
    };
    let args = &cx.args[3..];
    let t = ferrite_commands::table();
    let Some(mut meta) = t.get(&args[0]) else {
        return Err(CmdError::err(format!("Command '{}' not found", String::from_utf8_lossy(&args[0]))));
    };
    if args.len() > 1 && !meta.subcommands.is_empty() {
        match meta.subcommand(&args[1]) {
            Some(s) => meta = s,
            None => {
                return Err(CmdError::err(format!("Command '{}' not found", String::from_utf8_lossy(&args[0]))));
            }
        }
    }
    if !meta.arity_ok(args.len()) {
        return Err(super::arity_error(&meta.name));
    }
    match acl::dry_run(&u, meta, args) {
        Ok(()) => cx.out.ok(),
        Err(d) => {
            let msg = match d {
                Denied::Cmd => format!("This user has no permissions to run the '{}' command", meta.name),
                Denied::Key(p) => {
                    format!("This user has no permissions to access the '{}' key", String::from_utf8_lossy(&args[p]))
                }
                Denied::Channel(p) => format!(
                    "This user has no permissions to access the '{}' channel",
                    String::from_utf8_lossy(&args[p])
                ),
            };
            cx.out.bulk(msg.as_bytes());
        }
    }
    Ok(())
}

fn help(cx: &mut Cx) -> CmdResult {
    if cx.argc() != 2 {
        return Err(subcmd_err(cx));
    }
    const LINES: &[&str] = &[
        "ACL <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
        "CAT [<category>]",
        "    List all commands that belong to <category>, or all command categories",
        "    when no category is specified.",
        "DELUSER <username> [<username> ...]",
        "    Delete a list of users.",
        "DRYRUN <username> <command> [<arg> ...]",
        "    Returns whether the user can execute the given command without executing the command.",
        "GETUSER <username>",
        "    Get the user's details.",
        "GENPASS [<bits>]",
        "    Generate a secure 256-bit user password. The optional `bits` argument can",
        "    be used to specify a different size.",
        "LIST",
        "    Show users details in config file format.",
        "LOAD",
        "    Reload users from the ACL file.",
        "LOG [<count> | RESET]",
        "    Show the ACL log entries.",
        "SAVE",
        "    Save the current config to the ACL file.",
        "SETUSER <username> <attribute> [<attribute> ...]",
        "    Create or modify a user with the specified attributes.",
        "USERS",
        "    List all the registered usernames.",
        "WHOAMI",
        "    Return the current connection username.",
        "HELP",
        "    Prints this help.",
    ];
    cx.out.array(LINES.len());
    for l in LINES {
        cx.out.simple(l.as_bytes());
    }
    Ok(())
}
