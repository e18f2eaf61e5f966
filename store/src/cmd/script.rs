//! EVAL, EVALSHA, EVAL_RO, EVALSHA_RO and SCRIPT (LOAD, EXISTS, FLUSH,
//! KILL, HELP). The interpreter lives in `crate::script`.
//!
//! The Lua debugger is not implemented: SCRIPT DEBUG YES/SYNC reply an
//! error (NO is accepted).

use super::{eq_ic, CmdError, CmdImpl, CmdResult, Cx, Lock};
use crate::script::{self, vm::RunSpec, F_ALLOW_OOM, F_EVAL_COMPAT, F_NO_WRITES};
use crate::server::Server;
use std::sync::atomic::Ordering;

pub static COMMANDS: &[CmdImpl] = &[
    CmdImpl { name: "eval", handler: eval, lock: Lock::All },
    CmdImpl { name: "evalsha", handler: evalsha, lock: Lock::All },
    CmdImpl { name: "eval_ro", handler: eval_ro, lock: Lock::All },
    CmdImpl { name: "evalsha_ro", handler: evalsha_ro, lock: Lock::All },
    CmdImpl { name: "script", handler: script_cmd, lock: Lock::None },
];

const NOSCRIPT: CmdError = CmdError::st("NOSCRIPT No matching script. Please use EVAL.");
pub const OOM: CmdError = CmdError::st("OOM command not allowed when used memory > 'maxmemory'.");
pub const RO_WRITE: CmdError = CmdError::st("ERR Can not execute a script with write flag using *_ro command.");

fn eval(cx: &mut Cx) -> CmdResult {
    eval_generic(cx, false, false)
}
fn evalsha(cx: &mut Cx) -> CmdResult {
    eval_generic(cx, true, false)
}
fn eval_ro(cx: &mut Cx) -> CmdResult {
    eval_generic(cx, false, true)
}
fn evalsha_ro(cx: &mut Cx) -> CmdResult {
    eval_generic(cx, true, true)
}

/// Is used memory over `maxmemory` (after dispatch's eviction attempt)?
pub fn over_maxmemory(srv: &Server) -> bool {
    let max = srv.tun.maxmemory.load(Ordering::Relaxed) as usize;
    max > 0 && {
        crate::alloc::flush_local();
        crate::alloc::used_memory() > max
    }
}

/// A script declaring flags without `no-writes` is a write command for
/// Redis's processCommand: refused when writes are denied by a persistence
/// error (MISCONF) or for lack of replicas (NOREPLICAS).
pub fn write_state_check(srv: &crate::server::Server) -> Result<(), CmdError> {
    if let Some(set) = ferrite_commands::table().commands.get("set") {
        if let Some(e) = crate::persist::deny_write(srv, set) {
            return Err(e);
        }
    }
    if crate::cmd::config::noreplicas_active() {
        return Err(CmdError::st("NOREPLICAS Not enough good replicas to write."));
    }
    Ok(())
}

/// `numkeys` of EVAL/FCALL: (keys, args) split.
pub fn split_keys(cx: &Cx, numkeys: i64) -> Result<usize, CmdError> {
    if numkeys > (cx.argc() - 3) as i64 {
        return Err(CmdError::err("Number of keys can't be greater than number of args"));
    }
    if numkeys < 0 {
        return Err(CmdError::err("Number of keys can't be negative"));
    }
    Ok(numkeys as usize)
}

pub const REENTRY: CmdError = CmdError::st("ERR This Redis command is not allowed from script");

fn eval_generic(cx: &mut Cx, evalsha: bool, ro: bool) -> CmdResult {
    if script::vm::in_script() {
        return Err(REENTRY);
    }
    script::feed_monitors(cx.srv, cx.client, cx.args);
    let body = cx.args[1].clone();
    if evalsha && body.len() != 40 {
        return Err(NOSCRIPT);
    }
    let numkeys = split_keys(cx, cx.int_arg(2)?)?;
    let srv = cx.srv;
    let mut eng = srv.scripting.eval.lock();
    let sha = if evalsha {
        String::from_utf8_lossy(&body).to_ascii_lowercase()
    } else {
        let sha = script::sha1::sha1hex(&body);
        if !eng.scripts.contains_key(&sha) {
            eng.create(&body).map_err(CmdError::err)?;
        }
        sha
    };
    let Some(s) = eng.scripts.get(&sha) else { return Err(NOSCRIPT) };
    let flags = s.flags;
    let oom = over_maxmemory(srv);
    if flags & F_EVAL_COMPAT == 0 {
        if oom && flags & (F_ALLOW_OOM | F_NO_WRITES) == 0 {
            return Err(OOM);
        }
        if ro && flags & F_NO_WRITES == 0 {
            return Err(RO_WRITE);
        }
        if flags & F_NO_WRITES == 0 {
            write_state_check(srv)?;
        }
    }
    let keys = &cx.args[3..3 + numkeys];
    let args = &cx.args[3 + numkeys..];
    let spec = RunSpec { eval: true, name: &sha, flags, ro_cmd: ro, keys, args, argv: cx.args };
    let (client, acc, out) = (&mut *cx.client, &mut *cx.ks.acc, &mut *cx.out);
    eng.run(srv, client, acc, out, &spec, oom);
    Ok(())
}

const HELP: &[&str] = &[
    "SCRIPT <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
    "DEBUG (YES|SYNC|NO)",
    "    Set the debug mode for subsequent scripts executed.",
    "EXISTS <sha1> [<sha1> ...]",
    "    Return information about the existence of the scripts in the script cache.",
    "FLUSH [ASYNC|SYNC]",
    "    Flush the Lua scripts cache. Very dangerous on replicas.",
    "    When called without the optional mode argument, the behavior is determined by the",
    "    lazyfree-lazy-user-flush configuration directive. Valid modes are:",
    "    * ASYNC: Asynchronously flush the scripts cache.",
    "    * SYNC: Synchronously flush the scripts cache.",
    "KILL",
    "    Kill the currently executing Lua script.",
    "LOAD <script>",
    "    Load a script into the scripts cache without executing it.",
    "HELP",
    "    Prints this help.",
];

/// SCRIPT KILL / FUNCTION KILL.
pub fn kill(srv: &Server, is_eval: bool) -> CmdResult {
    let sc = &srv.scripting;
    if sc.running_since.load(Ordering::Acquire) == 0 {
        return Err(CmdError::st("NOTBUSY No scripts in execution right now."));
    }
    if sc.wrote.load(Ordering::Relaxed) {
        return Err(CmdError::st(
            "UNKILLABLE Sorry the script already executed write commands against the dataset. You can either \
             wait the script termination or kill the server in a hard way using the SHUTDOWN NOSAVE command.",
        ));
    }
    let running_eval = sc.running_eval.load(Ordering::Relaxed);
    if is_eval && !running_eval {
        return Err(CmdError::st(script::BUSY_FUNCTION));
    }
    if !is_eval && running_eval {
        return Err(CmdError::st(script::BUSY_EVAL));
    }
    sc.kill.store(true, Ordering::Relaxed);
    Ok(())
}

fn script_cmd(cx: &mut Cx) -> CmdResult {
    if script::vm::in_script() && !eq_ic(cx.arg(1), b"kill") && !eq_ic(cx.arg(1), b"help") {
        return Err(REENTRY);
    }
    let sub = cx.arg(1).to_ascii_lowercase();
    match &sub[..] {
        b"help" if cx.argc() == 2 => {
            super::server::reply_help(cx, HELP);
            Ok(())
        }
        b"flush" => {
            let ok = match cx.argc() {
                2 => true,
                3 => eq_ic(cx.arg(2), b"sync") || eq_ic(cx.arg(2), b"async"),
                _ => false,
            };
            if !ok {
                return Err(CmdError::err("SCRIPT FLUSH only support SYNC|ASYNC option"));
            }
            cx.srv.scripting.eval.lock().reset();
            cx.out.ok();
            Ok(())
        }
        b"exists" => {
            let eng = cx.srv.scripting.eval.lock();
            cx.out.array(cx.argc() - 2);
            for a in &cx.args[2..] {
                let sha = String::from_utf8_lossy(a).to_ascii_lowercase();
                cx.out.int(eng.scripts.contains_key(&sha) as i64);
            }
            Ok(())
        }
        b"load" if cx.argc() == 3 => {
            let body = cx.args[2].clone();
            let sha = cx.srv.scripting.eval.lock().create(&body).map_err(CmdError::err)?;
            cx.out.bulk(sha.as_bytes());
            Ok(())
        }
        b"kill" if cx.argc() == 2 => {
            kill(cx.srv, true)?;
            cx.out.ok();
            Ok(())
        }
        b"debug" if cx.argc() == 3 => {
            let mode = cx.arg(2);
            if eq_ic(mode, b"no") {
                // The debugger is never on, so turning it off is a no-op.
                cx.out.ok();
                Ok(())
            } else if eq_ic(mode, b"yes") || eq_ic(mode, b"sync") {
                Err(CmdError::err("SCRIPT DEBUG (the Lua debugger) is not supported by this server"))
            } else {
                Err(CmdError::err("Use SCRIPT DEBUG YES/SYNC/NO"))
            }
        }
        _ => {
            let s: String = String::from_utf8_lossy(cx.arg(1)).chars().take(128).collect();
            Err(CmdError::err(format!("unknown subcommand or wrong number of arguments for '{s}'. Try SCRIPT HELP.")))
        }
    }
}
