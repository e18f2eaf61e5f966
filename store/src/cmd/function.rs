//! FUNCTION (LOAD, DELETE, FLUSH, LIST, DUMP, RESTORE, STATS, KILL, HELP),
//! FCALL and FCALL_RO. Libraries live in `crate::script::vm::FuncEngine`.

use super::script::{kill, over_maxmemory, split_keys, OOM, REENTRY, RO_WRITE};
use super::{eq_ic, CmdError, CmdImpl, CmdResult, Cx, Lock};
use crate::script::vm::{FuncEngine, RunSpec};
use crate::script::{FLAG_NAMES, F_ALLOW_OOM, F_NO_WRITES};
use std::sync::atomic::Ordering;

pub static COMMANDS: &[CmdImpl] = &[
    CmdImpl { name: "fcall", handler: fcall, lock: Lock::All },
    CmdImpl { name: "fcall_ro", handler: fcall_ro, lock: Lock::All },
    CmdImpl { name: "function", handler: function_cmd, lock: Lock::None },
];

/// FUNCTION LOAD's limit for a library's top-level code.
const LOAD_TIMEOUT_MS: u64 = 500;
const RDB_OPCODE_FUNCTION2: u8 = 245;
const RDB_OPCODE_FUNCTION: u8 = 246;

fn fcall(cx: &mut Cx) -> CmdResult {
    fcall_generic(cx, false)
}
fn fcall_ro(cx: &mut Cx) -> CmdResult {
    fcall_generic(cx, true)
}

fn fcall_generic(cx: &mut Cx, ro: bool) -> CmdResult {
    if crate::script::vm::in_script() {
        return Err(REENTRY);
    }
    crate::script::feed_monitors(cx.srv, cx.client, cx.args);
    let srv = cx.srv;
    let name = String::from_utf8_lossy(cx.arg(1)).into_owned();
    let mut eng = srv.scripting.func.lock();
    let Some(f) = eng.function(&name).cloned() else { return Err(CmdError::err("Function not found")) };
    let numkeys =
        ferrite_resp::num::parse_i64(cx.arg(2)).ok_or_else(|| CmdError::err("Bad number of keys provided"))?;
    let numkeys = split_keys(cx, numkeys)?;
    let oom = over_maxmemory(srv);
    if oom && f.flags & (F_ALLOW_OOM | F_NO_WRITES) == 0 {
        return Err(OOM);
    }
    if ro && f.flags & F_NO_WRITES == 0 {
        return Err(RO_WRITE);
    }
    if f.flags & F_NO_WRITES == 0 {
        super::script::write_state_check(srv)?;
    }
    let keys = &cx.args[3..3 + numkeys];
    let args = &cx.args[3 + numkeys..];
    let spec = RunSpec { eval: false, name: &f.name, flags: f.flags, ro_cmd: ro, keys, args, argv: cx.args };
    let (client, acc, out) = (&mut *cx.client, &mut *cx.ks.acc, &mut *cx.out);
    eng.run(srv, client, acc, out, &spec, f.fref, oom);
    Ok(())
}

const HELP: &[&str] = &[
    "FUNCTION <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
    "LOAD [REPLACE] <FUNCTION CODE>",
    "    Create a new library with the given library name and code.",
    "DELETE <LIBRARY NAME>",
    "    Delete the given library.",
    "LIST [LIBRARYNAME PATTERN] [WITHCODE]",
    "    Return general information on all the libraries:",
    "    * Library name",
    "    * The engine used to run the Library",
    "    * Library description",
    "    * Functions list",
    "    * Library code (if WITHCODE is given)",
    "    It also possible to get only function that matches a pattern using LIBRARYNAME argument.",
    "STATS",
    "    Return information about the current function running:",
    "    * Function name",
    "    * Command used to run the function",
    "    * Duration in MS that the function is running",
    "    If no function is running, return nil",
    "    In addition, returns a list of available engines.",
    "KILL",
    "    Kill the current running function.",
    "FLUSH [ASYNC|SYNC]",
    "    Delete all the libraries.",
    "    When called without the optional mode argument, the behavior is determined by the",
    "    lazyfree-lazy-user-flush configuration directive. Valid modes are:",
    "    * ASYNC: Asynchronously flush the libraries.",
    "    * SYNC: Synchronously flush the libraries.",
    "DUMP",
    "    Return a serialized payload representing the current libraries, can be restored using FUNCTION RESTORE command",
    "RESTORE <PAYLOAD> [FLUSH|APPEND|REPLACE]",
    "    Restore the libraries represented by the given payload, it is possible to give a restore policy to",
    "    control how to handle existing libraries (default APPEND):",
    "    * FLUSH: delete all existing libraries.",
    "    * APPEND: appends the restored libraries to the existing libraries. On collision, abort.",
    "    * REPLACE: appends the restored libraries to the existing libraries, On collision, replace the old",
    "      libraries with the new libraries (notice that even on this option there is a chance of failure",
    "      in case of functions name collision with another library).",
    "HELP",
    "    Prints this help.",
];

fn subcommand_syntax(cx: &Cx) -> CmdError {
    let s: String = String::from_utf8_lossy(cx.arg(1)).chars().take(128).collect();
    CmdError::err(format!("unknown subcommand or wrong number of arguments for '{s}'. Try FUNCTION HELP."))
}

fn dirty(cx: &Cx) {
    cx.srv.stats.dirty.fetch_add(1, Ordering::Relaxed);
    // Propagated as sent (AOF), like Redis.
    crate::persist::propagate::note_dirty();
}

fn function_cmd(cx: &mut Cx) -> CmdResult {
    if crate::script::vm::in_script() && !eq_ic(cx.arg(1), b"kill") && !eq_ic(cx.arg(1), b"help") {
        return Err(REENTRY);
    }
    let sub = cx.arg(1).to_ascii_lowercase();
    match &sub[..] {
        b"help" => {
            super::server::reply_help(cx, HELP);
            Ok(())
        }
        b"load" => {
            let mut replace = false;
            let mut pos = 2;
            while pos < cx.argc() - 1 {
                if eq_ic(cx.arg(pos), b"replace") {
                    replace = true;
                    pos += 1;
                    continue;
                }
                return Err(CmdError::err(format!("Unknown option given: {}", String::from_utf8_lossy(cx.arg(pos)))));
            }
            if pos >= cx.argc() {
                return Err(CmdError::err("Function code is missing"));
            }
            let code = cx.args[pos].clone();
            let srv = cx.srv;
            let name = crate::script::long_running(|| srv.scripting.func.lock().load(&code, replace, LOAD_TIMEOUT_MS))
                .map_err(CmdError::err)?;
            dirty(cx);
            cx.out.bulk(name.as_bytes());
            Ok(())
        }
        b"delete" => {
            let name = String::from_utf8_lossy(cx.arg(2)).into_owned();
            if !cx.srv.scripting.func.lock().delete(&name) {
                return Err(CmdError::err("Library not found"));
            }
            dirty(cx);
            cx.out.ok();
            Ok(())
        }
        b"flush" => {
            if cx.argc() > 3 {
                return Err(subcommand_syntax(cx));
            }
            if cx.argc() == 3 && !eq_ic(cx.arg(2), b"sync") && !eq_ic(cx.arg(2), b"async") {
                return Err(CmdError::err("FUNCTION FLUSH only supports SYNC|ASYNC option"));
            }
            cx.srv.scripting.func.lock().flush();
            dirty(cx);
            cx.out.ok();
            Ok(())
        }
        b"kill" => {
            kill(cx.srv, false)?;
            cx.out.ok();
            Ok(())
        }
        b"stats" => stats(cx),
        b"list" => list(cx),
        b"dump" => {
            let payload = dump(&cx.srv.scripting.func.lock());
            cx.out.bulk(&payload);
            Ok(())
        }
        b"restore" => restore(cx),
        _ => Err(subcommand_syntax(cx)),
    }
}

fn stats(cx: &mut Cx) -> CmdResult {
    let sc = &cx.srv.scripting;
    let running = sc.running.lock().as_ref().map(|r| (r.name.clone(), r.argv.clone(), r.start_ms, r.eval));
    if let Some((_, _, _, true)) = running {
        return Err(CmdError::st(crate::script::BUSY_EVAL));
    }
    cx.out.map(2);
    cx.out.bulk(b"running_script");
    match running {
        None => cx.out.null(),
        Some((name, argv, start, _)) => {
            cx.out.map(3);
            cx.out.bulk(b"name");
            cx.out.bulk(name.as_bytes());
            cx.out.bulk(b"command");
            cx.out.array(argv.len());
            for a in &argv {
                cx.out.bulk(a);
            }
            cx.out.bulk(b"duration_ms");
            cx.out.int(crate::server::now_ms() - start);
        }
    }
    cx.out.bulk(b"engines");
    // Counting needs the library table: wait for a running script only if
    // none runs (a running function holds the engine).
    let (libs, funcs) = match sc.func.try_lock() {
        Some(e) => (e.libs.len(), e.funcs.len()),
        None => (0, 0),
    };
    cx.out.map(1);
    cx.out.bulk(b"LUA");
    cx.out.map(2);
    cx.out.bulk(b"libraries_count");
    cx.out.int(libs as i64);
    cx.out.bulk(b"functions_count");
    cx.out.int(funcs as i64);
    Ok(())
}

fn list(cx: &mut Cx) -> CmdResult {
    let mut with_code = false;
    let mut pattern: Option<Vec<u8>> = None;
    let mut i = 2;
    while i < cx.argc() {
        let a = cx.arg(i);
        if !with_code && eq_ic(a, b"withcode") {
            with_code = true;
            i += 1;
            continue;
        }
        if pattern.is_none() && eq_ic(a, b"libraryname") {
            if i >= cx.argc() - 1 {
                return Err(CmdError::err("library name argument was not given"));
            }
            pattern = Some(cx.arg(i + 1).to_vec());
            i += 2;
            continue;
        }
        return Err(CmdError::err(format!("Unknown argument {}", String::from_utf8_lossy(a))));
    }
    let eng = cx.srv.scripting.func.lock();
    let libs: Vec<_> = eng
        .libs
        .values()
        .filter(|l| pattern.as_ref().is_none_or(|p| crate::glob::glob_match(p, l.name.as_bytes(), true)))
        .collect();
    cx.out.array(libs.len());
    for l in libs {
        cx.out.map(if with_code { 4 } else { 3 });
        cx.out.bulk(b"library_name");
        cx.out.bulk(l.name.as_bytes());
        cx.out.bulk(b"engine");
        cx.out.bulk(b"LUA");
        cx.out.bulk(b"functions");
        cx.out.array(l.functions.len());
        for f in &l.functions {
            cx.out.map(3);
            cx.out.bulk(b"name");
            cx.out.bulk(f.name.as_bytes());
            cx.out.bulk(b"description");
            match &f.desc {
                Some(d) => cx.out.bulk(d),
                None => cx.out.null(),
            }
            cx.out.bulk(b"flags");
            let names: Vec<&str> = FLAG_NAMES.iter().filter(|(_, v)| f.flags & v != 0).map(|(n, _)| *n).collect();
            cx.out.set(names.len());
            for n in names {
                cx.out.simple(n.as_bytes());
            }
        }
        if with_code {
            cx.out.bulk(b"library_code");
            cx.out.bulk(&l.code);
        }
    }
    Ok(())
}

/// FUNCTION DUMP's payload: FUNCTION2 records, RDB version, CRC64.
pub fn dump(eng: &FuncEngine) -> Vec<u8> {
    let mut w = ferrite_rdb::Writer::default();
    for code in eng.codes() {
        w.buf.push(RDB_OPCODE_FUNCTION2);
        w.string(&code);
    }
    let mut out = w.buf;
    out.extend_from_slice(&ferrite_rdb::RDB_VERSION.to_le_bytes());
    let crc = ferrite_rdb::crc64::crc64(0, &out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

fn restore(cx: &mut Cx) -> CmdResult {
    if cx.argc() > 4 {
        return Err(subcommand_syntax(cx));
    }
    #[derive(PartialEq)]
    enum Policy {
        Append,
        Replace,
        Flush,
    }
    let mut policy = Policy::Append;
    if cx.argc() == 4 {
        let p = cx.arg(3);
        policy = if eq_ic(p, b"append") {
            Policy::Append
        } else if eq_ic(p, b"replace") {
            Policy::Replace
        } else if eq_ic(p, b"flush") {
            Policy::Flush
        } else {
            return Err(CmdError::err("Wrong restore policy given, value should be either FLUSH, APPEND or REPLACE."));
        };
    }
    let payload = cx.args[2].clone();
    let Some(body) = ferrite_rdb::verify_dump_payload(&payload) else {
        return Err(CmdError::err("DUMP payload version or checksum are wrong"));
    };
    let mut r = ferrite_rdb::Reader::new(body);
    let mut codes = Vec::new();
    while r.remaining() > 0 {
        let t = r.u8().map_err(|_| CmdError::err("can not read data type"))?;
        if t != RDB_OPCODE_FUNCTION2 && t != RDB_OPCODE_FUNCTION {
            return Err(CmdError::err("given type is not a function"));
        }
        if t == RDB_OPCODE_FUNCTION {
            return Err(CmdError::err("failed loading the given functions payload"));
        }
        let code = r.string().map_err(|_| CmdError::err("failed loading the given functions payload"))?;
        codes.push(code);
    }
    // Load into a scratch engine first: a payload that does not load
    // changes nothing.
    let mut scratch = FuncEngine::new();
    for c in &codes {
        scratch.load(c, false, 0).map_err(CmdError::err)?;
    }
    let mut eng = cx.srv.scripting.func.lock();
    if policy == Policy::Flush {
        *eng = scratch;
    } else {
        for (name, lib) in &scratch.libs {
            if eng.libs.contains_key(name) && policy == Policy::Append {
                return Err(CmdError::err(format!("Library {name} already exists")));
            }
            for f in &lib.functions {
                if let Some(owner) = eng.funcs.get(&f.name.to_ascii_lowercase()) {
                    if policy == Policy::Append || !scratch.libs.contains_key(owner) {
                        return Err(CmdError::err(format!("Function {} already exists", f.name)));
                    }
                }
            }
        }
        if policy == Policy::Replace {
            for name in scratch.libs.keys() {
                eng.delete(name);
            }
        }
        for c in &codes {
            eng.load(c, true, 0).map_err(CmdError::err)?;
        }
    }
    drop(eng);
    dirty(cx);
    cx.out.ok();
    Ok(())
}
