//! COMMAND and its subcommands. Entries come from Redis's own command
//! table (`ferrite-commands`), restricted to the commands Ferrite
//! implements (the registry). Subcommands of an implemented container are
//! listed as Redis lists them.

use super::{eq_ic, Cmd, CmdError, CmdImpl, CmdResult, Cx, Lock, SYNTAX};
use crate::glob::glob_match;
use ferrite_commands::{get_keys, CommandMeta, Flags, Node};

pub static COMMANDS: &[CmdImpl] = &[CmdImpl { name: "command", handler: command, lock: Lock::None }];

const COMMAND_HELP: &[&str] = &[
    "COMMAND <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
    "(no subcommand)",
    "    Return details about all Redis commands.",
    "COUNT",
    "    Return the total number of commands in this Redis server.",
    "LIST",
    "    Return a list of all commands in this Redis server.",
    "INFO [<command-name> ...]",
    "    Return details about multiple Redis commands.",
    "    If no command names are given, documentation details for all",
    "    commands are returned.",
    "DOCS [<command-name> ...]",
    "    Return documentation details about multiple Redis commands.",
    "    If no command names are given, documentation details for all",
    "    commands are returned.",
    "GETKEYS <full-command>",
    "    Return the keys from a full Redis command.",
    "GETKEYSANDFLAGS <full-command>",
    "    Return the keys and the access flags from a full Redis command.",
    "HELP",
    "    Prints this help.",
];

fn command(cx: &mut Cx) -> CmdResult {
    if cx.argc() == 1 {
        let all = sorted(cx);
        cx.out.array(all.len());
        for c in all {
            c.meta.info.encode(cx.out);
        }
        return Ok(());
    }
    let sub = cx.arg(1);
    if eq_ic(sub, b"count") {
        cx.out.int(cx.srv.registry.len() as i64);
        Ok(())
    } else if eq_ic(sub, b"info") {
        info(cx)
    } else if eq_ic(sub, b"docs") {
        docs(cx)
    } else if eq_ic(sub, b"list") {
        list(cx)
    } else if eq_ic(sub, b"getkeys") {
        getkeys(cx, false)
    } else if eq_ic(sub, b"getkeysandflags") {
        getkeys(cx, true)
    } else {
        super::server::reply_help(cx, COMMAND_HELP);
        Ok(())
    }
}

/// Implemented commands, by name (a stable order for "all" replies).
fn sorted<'s>(cx: &Cx<'_, 's>) -> Vec<&'s Cmd> {
    let mut v: Vec<&Cmd> = cx.srv.registry.iter().collect();
    v.sort_by_key(|c| c.imp.name);
    v
}

/// Look up an implemented command or `container|sub` by name.
fn lookup<'s>(cx: &Cx<'_, 's>, name: &[u8]) -> Option<&'s CommandMeta> {
    match name.iter().position(|&c| c == b'|') {
        None => cx.srv.registry.get(name).map(|c| c.meta),
        Some(p) => {
            let (c, s) = (&name[..p], &name[p + 1..]);
            if s.contains(&b'|') {
                return None;
            }
            cx.srv.registry.get(c)?.meta.subcommand(s)
        }
    }
}

fn info(cx: &mut Cx) -> CmdResult {
    if cx.argc() == 2 {
        let all = sorted(cx);
        cx.out.array(all.len());
        for c in all {
            c.meta.info.encode(cx.out);
        }
        return Ok(());
    }
    cx.out.array(cx.argc() - 2);
    for i in 2..cx.argc() {
        match lookup(cx, cx.arg(i)) {
            Some(m) => m.info.encode(cx.out),
            None => cx.out.null(),
        }
    }
    Ok(())
}

fn docs(cx: &mut Cx) -> CmdResult {
    let mut found: Vec<(&str, &Node)> = Vec::new();
    if cx.argc() == 2 {
        for c in sorted(cx) {
            if let Some(d) = &c.meta.docs {
                found.push((&c.meta.name, d));
            }
        }
    } else {
        for i in 2..cx.argc() {
            if let Some(m) = lookup(cx, cx.arg(i)) {
                if let Some(d) = &m.docs {
                    found.push((&m.name, d));
                }
            }
        }
    }
    cx.out.map(found.len());
    for (name, d) in found {
        cx.out.bulk(name.as_bytes());
        d.encode(cx.out);
    }
    Ok(())
}

enum Filter<'a> {
    None,
    Module,
    AclCat(&'a [u8]),
    Pattern(&'a [u8]),
}

fn keep(f: &Filter, m: &CommandMeta) -> bool {
    match f {
        Filter::None => true,
        // Ferrite has no modules.
        Filter::Module => false,
        Filter::AclCat(c) => m.acl_categories.iter().any(|a| eq_ic(a.strip_prefix('@').unwrap_or(a).as_bytes(), c)),
        Filter::Pattern(p) => glob_match(p, m.name.as_bytes(), true),
    }
}

fn list(cx: &mut Cx) -> CmdResult {
    let filter = match cx.argc() {
        2 => Filter::None,
        5 if eq_ic(cx.arg(2), b"filterby") => {
            let (kind, arg) = (cx.arg(3), cx.arg(4));
            if eq_ic(kind, b"module") {
                Filter::Module
            } else if eq_ic(kind, b"aclcat") {
                Filter::AclCat(arg)
            } else if eq_ic(kind, b"pattern") {
                Filter::Pattern(arg)
            } else {
                return Err(SYNTAX);
            }
        }
        _ => return Err(SYNTAX),
    };
    let mut names: Vec<&str> = Vec::new();
    for c in sorted(cx) {
        if keep(&filter, c.meta) {
            names.push(&c.meta.name);
        }
        for s in &c.meta.subcommands {
            if keep(&filter, s) {
                names.push(&s.name);
            }
        }
    }
    cx.out.array(names.len());
    for n in names {
        cx.out.bulk(n.as_bytes());
    }
    Ok(())
}

/// Does the command have key arguments at all (Redis's doesCommandHaveKeys)?
fn has_keys(m: &CommandMeta) -> bool {
    !m.key_specs.is_empty() || m.flags.has(Flags::MOVABLEKEYS)
}

fn getkeys(cx: &mut Cx, with_flags: bool) -> CmdResult {
    let args = &cx.args[2..];
    let Some(top) = cx.srv.registry.get(&args[0]) else {
        return Err(CmdError::err("Invalid command specified"));
    };
    let mut meta = top.meta;
    if !meta.subcommands.is_empty() && args.len() >= 2 {
        match meta.subcommand(&args[1]) {
            Some(s) => meta = s,
            None => return Err(CmdError::err("Invalid command specified")),
        }
    }
    if !has_keys(meta) {
        return Err(CmdError::err("The command has no key arguments"));
    }
    if !meta.arity_ok(args.len()) {
        return Err(CmdError::err("Invalid number of arguments specified for command"));
    }
    // Keys spec by spec, so each key knows the flags of its spec.
    let mut keys: Vec<(usize, &[String])> = Vec::new();
    let sort_flags: [Vec<String>; 2] = [vec!["RO".into(), "access".into()], vec!["OW".into(), "update".into()]];
    if meta.name == "sort_ro" {
        // sortROGetKeys: only the sorted key (BY/GET patterns are unknown).
        keys.push((1, &sort_flags[0]));
        return reply_keys(cx, args, keys, with_flags);
    }
    if meta.name == "sort" {
        // SORT's STORE key has no usable key spec: Redis falls back to
        // sortGetKeys, which skips LIMIT/GET/BY arguments and takes the
        // last STORE.
        keys.push((1, &sort_flags[0]));
        let mut store = None;
        let mut i = 2;
        while i < args.len() {
            let a = &args[i];
            if eq_ic(a, b"limit") {
                i += 2;
            } else if eq_ic(a, b"get") || eq_ic(a, b"by") {
                i += 1;
            } else if eq_ic(a, b"store") && i + 1 < args.len() {
                store = Some(i + 1);
            }
            i += 1;
        }
        if let Some(p) = store {
            keys.push((p, &sort_flags[1]));
        }
        return reply_keys(cx, args, keys, with_flags);
    }
    // MIGRATE's KEYS spec is INCOMPLETE: when its keyword search (from the
    // second-to-last argument back to the second) finds KEYS, Redis drops
    // the spec results and uses migrateGetKeys: the key at 3, or (when that
    // is empty) everything after the first KEYS from argument 6 on, skipping
    // the arguments of AUTH/AUTH2; with KEYS and a non-empty key there are
    // no keys (MIGRATE itself reports the syntax error).
    let keys_found = || args.len() >= 3 && args[2..args.len() - 1].iter().any(|a| eq_ic(a, b"keys"));
    if meta.name == "migrate" && !meta.key_specs.is_empty() && keys_found() {
        let flags = meta.key_specs[0].flags.as_slice();
        let (mut first, mut num) = (3, 1);
        let mut i = 6;
        while i < args.len() {
            let a = &args[i];
            if eq_ic(a, b"keys") {
                if args[3].is_empty() {
                    first = i + 1;
                    num = args.len() - first;
                } else {
                    num = 0;
                }
                break;
            }
            if eq_ic(a, b"auth") {
                i += 1;
            } else if eq_ic(a, b"auth2") {
                i += 2;
            }
            i += 1;
        }
        if num == 0 {
            return Err(CmdError::err("Invalid arguments specified for command"));
        }
        keys.extend((first..first + num).map(|p| (p, flags)));
        return reply_keys(cx, args, keys, with_flags);
    }
    let owned_flags: [Vec<String>; 3] = [
        vec!["OW".into(), "update".into()],
        vec!["RW".into(), "access".into(), "update".into()],
        vec!["RO".into(), "access".into()],
    ];
    let variable_flags = |name: &str, args: &[bytes::Bytes]| -> Option<&[String]> {
        match name {
            "set" => {
                let get = args.iter().skip(3).any(|a| eq_ic(a, b"get"));
                Some(if get { &owned_flags[1] } else { &owned_flags[0] })
            }
            "bitfield" => {
                let mut readonly = true;
                let mut i = 2;
                while i < args.len() {
                    let rem = args.len() - i - 1;
                    let a = &args[i];
                    if eq_ic(a, b"get") && rem >= 2 {
                        i += 3;
                    } else if eq_ic(a, b"overflow") && rem >= 1 {
                        i += 2;
                    } else {
                        readonly = false;
                        break;
                    }
                }
                Some(if readonly { &owned_flags[2] } else { &owned_flags[1] })
            }
            _ => None,
        }
    };
    for spec in &meta.key_specs {
        let one = CommandMeta {
            name: String::new(),
            arity: meta.arity,
            flags: meta.flags,
            first_key: 0,
            last_key: 0,
            key_step: 0,
            acl_categories: Vec::new(),
            key_specs: vec![spec.clone()],
            subcommands: Vec::new(),
            info: Node::Null,
            docs: None,
        };
        match get_keys(&one, args) {
            Ok(pos) => keys.extend(pos.into_iter().map(|p| (p, spec.flags.as_slice()))),
            Err(_) => {
                keys.clear();
                if meta.flags.has(Flags::NO_MANDATORY_KEYS) {
                    break;
                }
                return Err(CmdError::err("Invalid arguments specified for command"));
            }
        }
    }
    if keys.is_empty() && !meta.flags.has(Flags::NO_MANDATORY_KEYS) {
        return Err(CmdError::err("Invalid arguments specified for command"));
    }
    // Specs with variable flags: Redis computes the flags from the
    // arguments (setGetKeys, bitfieldGetKeys).
    if let Some(f) = variable_flags(&meta.name, args) {
        for k in keys.iter_mut() {
            k.1 = f;
        }
    }
    reply_keys(cx, args, keys, with_flags)
}

fn reply_keys(cx: &mut Cx, args: &[bytes::Bytes], keys: Vec<(usize, &[String])>, with_flags: bool) -> CmdResult {
    cx.out.array(keys.len());
    for (p, flags) in keys {
        if with_flags {
            cx.out.array(2);
            cx.out.bulk(&args[p]);
            cx.out.set(flags.len());
            for f in flags {
                cx.out.simple(f.as_bytes());
            }
        } else {
            cx.out.bulk(&args[p]);
        }
    }
    Ok(())
}
