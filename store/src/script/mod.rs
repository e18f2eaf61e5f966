//! Lua scripting: EVAL scripts and FUNCTION libraries (Redis 7.0 semantics).
//!
//! Two Lua 5.1 interpreters (the `mlua` crate's vendored Lua, driven
//! through its raw C API so errors, stack use and sandboxing behave as in
//! Redis's C code): one for EVAL scripts, one for function libraries.
//! A script runs while its caller holds exclusive access to the keyspace
//! (EVAL/FCALL take `Lock::All`); commands it calls go through
//! `dispatch::run_for_script` on that same access, with the script's own
//! client (`[db lua]` in MONITOR), the caller's user and db, and time
//! frozen at the script's start.
//!
//! What this module knows: the sandbox (read-only globals and library
//! tables through protected proxies, no `print`/`loadfile`/`dofile`/
//! `getfenv`/`setfenv`/`newproxy`, no `os`/`io`/`package`, binary chunks
//! parsed as text), the `redis.*` API, RESP <-> Lua conversions both ways
//! (RESP2 and RESP3), script flags (shebang and `register_function`), the
//! busy-script state other clients see (`-BUSY`, checked by dispatch
//! before it locks anything), SCRIPT KILL / FUNCTION KILL / SHUTDOWN
//! through a count hook, and the libraries `cjson`, `bit`, `struct` and
//! `cmsgpack` (see `libs`, `libs2`). A script that runs past 2 ms leaves
//! tokio's scheduling (`detach_from_runtime`) so the other connections
//! keep being served.
//!
//! What it does not know: the Lua debugger (SCRIPT DEBUG replies an
//! error). A script's effects are propagated through `persist::propagate`
//! as one MULTI/EXEC (`redis.set_repl` chooses the AOF and/or the
//! replicas); commands denied inside a script are logged in ACL LOG with
//! context `lua`.

pub mod libs;
pub mod libs2;
pub mod sha1;
pub mod vm;

use crate::server::{now_ms, Server};
use bytes::Bytes;
use ferrite_commands::{CommandMeta, Flags};
use parking_lot::Mutex;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicUsize, Ordering};

/// Script flags (shebang `flags=` and `register_function` flags).
pub const F_NO_WRITES: u32 = 1 << 0;
pub const F_ALLOW_OOM: u32 = 1 << 1;
pub const F_ALLOW_STALE: u32 = 1 << 2;
pub const F_NO_CLUSTER: u32 = 1 << 3;
pub const F_ALLOW_CROSS_SLOT: u32 = 1 << 4;
/// An EVAL script without a shebang (Redis's compatibility mode).
pub const F_EVAL_COMPAT: u32 = 1 << 5;

/// Flag names in Redis's order (FUNCTION LIST prints them in this order).
pub const FLAG_NAMES: &[(&str, u32)] = &[
    ("no-writes", F_NO_WRITES),
    ("allow-oom", F_ALLOW_OOM),
    ("allow-stale", F_ALLOW_STALE),
    ("no-cluster", F_NO_CLUSTER),
    ("allow-cross-slot-keys", F_ALLOW_CROSS_SLOT),
];

pub const BUSY_EVAL: &str = "BUSY Redis is busy running a script. You can only call SCRIPT KILL or SHUTDOWN NOSAVE.";
pub const BUSY_FUNCTION: &str =
    "BUSY Redis is busy running a script. You can only call FUNCTION KILL or SHUTDOWN NOSAVE.";

/// What other clients may see about the running script.
#[derive(Default)]
pub struct RunningInfo {
    /// Function name (FCALL) or script SHA1 (EVAL).
    pub name: String,
    /// The caller's command.
    pub argv: Vec<Bytes>,
    /// Started at (unix ms).
    pub start_ms: i64,
    pub eval: bool,
}

/// Server-wide scripting state (a field of `Server`).
pub struct Scripting {
    /// Unix ms when the running script started; 0 when none runs.
    pub running_since: AtomicI64,
    /// The running script is an EVAL script (not a function).
    pub running_eval: AtomicBool,
    /// SCRIPT KILL / FUNCTION KILL was accepted.
    pub kill: AtomicBool,
    /// The running script already called a write command.
    pub wrote: AtomicBool,
    /// busy-reply-threshold (lua-time-limit) in ms; 0 disables the hook.
    pub busy_threshold_ms: AtomicUsize,
    /// DEBUG set-disable-deny-scripts: let scripts call noscript commands.
    pub disable_deny_scripts: AtomicBool,
    pub running: Mutex<Option<RunningInfo>>,
    /// The scripts' own client (MONITOR shows its commands as `[db lua]`).
    pub lua_client: std::sync::OnceLock<std::sync::Arc<crate::client::ClientHandle>>,
    /// The EVAL interpreter and its script cache.
    pub eval: Mutex<vm::EvalEngine>,
    /// The FUNCTION interpreter and its libraries.
    pub func: Mutex<vm::FuncEngine>,
}

impl Default for Scripting {
    fn default() -> Self {
        Scripting {
            running_since: AtomicI64::new(0),
            running_eval: AtomicBool::new(false),
            kill: AtomicBool::new(false),
            wrote: AtomicBool::new(false),
            busy_threshold_ms: AtomicUsize::new(5000),
            disable_deny_scripts: AtomicBool::new(false),
            running: Mutex::new(None),
            lua_client: std::sync::OnceLock::new(),
            eval: Mutex::new(vm::EvalEngine::new()),
            func: Mutex::new(vm::FuncEngine::new()),
        }
    }
}

impl Scripting {
    /// Is a script running for longer than the busy threshold?
    pub fn timed_out(&self) -> bool {
        let since = self.running_since.load(Ordering::Acquire);
        if since == 0 {
            return false;
        }
        let th = self.busy_threshold_ms.load(Ordering::Relaxed) as i64;
        th > 0 && now_ms() - since >= th
    }
}

/// Called by dispatch before a command locks anything: while a script runs,
/// wait for it (Redis serves nobody meanwhile) until it ends or passes the
/// busy threshold; then commands other than the `allow-busy` ones get
/// `-BUSY`. Never blocks on the keyspace lock while a script holds it past
/// the threshold, so SCRIPT KILL can always get through.
pub fn busy_check(srv: &Server, meta: &CommandMeta) -> Result<(), crate::cmd::CmdError> {
    let s = &srv.scripting;
    if s.running_since.load(Ordering::Acquire) == 0 || meta.flags.has(Flags::ALLOW_BUSY) {
        return Ok(());
    }
    long_running(|| loop {
        if s.running_since.load(Ordering::Acquire) == 0 {
            return Ok(());
        }
        if s.timed_out() {
            let eval = s.running_eval.load(Ordering::Relaxed);
            return Err(crate::cmd::CmdError::st(if eval { BUSY_EVAL } else { BUSY_FUNCTION }));
        }
        std::thread::sleep(std::time::Duration::from_millis(1));
    })
}

/// Run `f`, which may take long (a script, or waiting for one), without
/// starving the other connections: on tokio's multi-thread runtime the
/// worker hands its other tasks (and the I/O driver) to another thread
/// meanwhile (`block_in_place`).
pub fn long_running<R>(f: impl FnOnce() -> R) -> R {
    use tokio::runtime::{Handle, RuntimeFlavor};
    match Handle::try_current() {
        Ok(h) if h.runtime_flavor() == RuntimeFlavor::MultiThread => tokio::task::block_in_place(f),
        _ => f(),
    }
}

thread_local! {
    static FROZEN_NOW: std::cell::Cell<i64> = const { std::cell::Cell::new(0) };
}

/// The time commands called by the running script see (its start time),
/// if this thread is running a script.
#[inline]
pub fn frozen_now() -> Option<i64> {
    let t = FROZEN_NOW.with(|c| c.get());
    (t != 0).then_some(t)
}

pub(crate) fn set_frozen_now(t: i64) {
    FROZEN_NOW.with(|c| c.set(t));
}

/// The handle of the scripts' client (created on first use).
pub fn lua_handle(srv: &Server) -> std::sync::Arc<crate::client::ClientHandle> {
    srv.scripting
        .lua_client
        .get_or_init(|| {
            let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
            std::sync::Arc::new(crate::client::ClientHandle::new(
                srv.clients.next_id(),
                "lua".into(),
                String::new(),
                -1,
                tx,
                0,
            ))
        })
        .clone()
}

/// Is this the scripts' client? (Redis's CLIENT_SCRIPT flag: e.g. SORT
/// of a set without BY must sort its output when called from a script.)
pub fn is_script_client(srv: &Server, client: &crate::client::Client) -> bool {
    srv.scripting.lua_client.get().is_some_and(|h| std::sync::Arc::ptr_eq(h, &client.handle))
}

/// MONITOR sees EVAL/EVALSHA/FCALL themselves (Redis feeds them before
/// running, their commands then show as `[db lua]`).
pub fn feed_monitors(srv: &Server, client: &crate::client::Client, args: &[Bytes]) {
    if srv.monitor_count.load(Ordering::Relaxed) > 0 {
        crate::dispatch::feed_monitors(srv, client, client.db, args);
    }
}

/// Scripting figures for INFO (memory section), as Redis 7.0 names them:
/// `number_of_cached_scripts`, `number_of_functions`, `number_of_libraries`,
/// `used_memory_vm_eval` (= `used_memory_lua`), `used_memory_scripts_eval`,
/// `used_memory_vm_functions`. Engines busy with a running script report 0.
pub fn info_fields(srv: &Server) -> Vec<(&'static str, u64)> {
    let s = &srv.scripting;
    let (scripts, eval_mem, scripts_mem) = match s.eval.try_lock() {
        Some(e) => {
            let body: usize = e.scripts.values().map(|x| x.body.len() + 40).sum();
            (e.scripts.len(), e.memory(), body)
        }
        None => (0, 0, 0),
    };
    let (funcs, libs, func_mem) = match s.func.try_lock() {
        Some(f) => (f.funcs.len(), f.libs.len(), f.memory()),
        None => (0, 0, 0),
    };
    vec![
        ("used_memory_lua", eval_mem as u64),
        ("used_memory_vm_eval", eval_mem as u64),
        ("used_memory_scripts_eval", scripts_mem as u64),
        ("number_of_cached_scripts", scripts as u64),
        ("number_of_functions", funcs as u64),
        ("number_of_libraries", libs as u64),
        ("used_memory_vm_functions", func_mem as u64),
        ("used_memory_vm_total", (eval_mem + func_mem) as u64),
    ]
}

/// Called from the running script's hook once it has run for a while:
/// hand this worker's other tasks (and tokio's I/O driver) to another
/// thread for the rest of the script, so the other connections are served
/// (with -BUSY past the threshold) and SCRIPT KILL can arrive. Short
/// scripts never pay for this. Returns whether it may be worth retrying.
pub fn detach_from_runtime() {
    use tokio::runtime::{Handle, RuntimeFlavor};
    if let Ok(h) = Handle::try_current() {
        if h.runtime_flavor() == RuntimeFlavor::MultiThread {
            // The new worker thread takes the core while we wait; when this
            // returns the core stays with it, and this thread finishes the
            // script outside the runtime's scheduling.
            tokio::task::block_in_place(|| std::thread::sleep(std::time::Duration::from_millis(1)));
        }
    }
}

/// For CLIENT PAUSE WRITE: does this EVAL/EVALSHA/FCALL (or _RO) call count
/// as a write? Redis derives it from the script's flags (`no-writes`), and
/// scripts without a shebang count as writes (EVAL is may-replicate).
/// None for other commands.
pub fn may_write(srv: &Server, args: &[Bytes]) -> Option<bool> {
    let name = args.first()?.to_ascii_lowercase();
    let flags_write = |flags: u32| flags & F_EVAL_COMPAT != 0 || flags & F_NO_WRITES == 0;
    match &name[..] {
        b"eval_ro" | b"evalsha_ro" | b"fcall_ro" => Some(false),
        b"eval" | b"evalsha" => {
            let body = args.get(1)?;
            let sha = if name == b"evalsha" {
                String::from_utf8_lossy(body).to_ascii_lowercase()
            } else {
                sha1::sha1hex(body)
            };
            let cached = srv.scripting.eval.try_lock().and_then(|e| e.scripts.get(&sha).map(|s| s.flags));
            match cached {
                Some(f) => Some(flags_write(f)),
                None if name == b"eval" => Some(eval_shebang(body).map_or(true, |(f, _)| flags_write(f))),
                None => Some(true),
            }
        }
        b"fcall" => {
            let fname = String::from_utf8_lossy(args.get(1)?).into_owned();
            let f = srv.scripting.func.try_lock().and_then(|e| e.function(&fname).map(|f| f.flags));
            Some(f.is_none_or(flags_write))
        }
        _ => None,
    }
}

/// The declared flags of the script an EVAL/EVALSHA/FCALL call would run,
/// when it declares them (a shebang; every function does): Redis's
/// processCommand treats such a call as a write unless `no-writes`, and
/// as deny-oom unless `allow-oom`. None for other commands, flagless
/// scripts and unknown scripts (the handler reports those).
pub fn declared_flags(srv: &Server, args: &[Bytes]) -> Option<u32> {
    let name = args.first()?;
    let flags = if name.eq_ignore_ascii_case(b"eval") || name.eq_ignore_ascii_case(b"evalsha") {
        let body = args.get(1)?;
        let sha = if name.eq_ignore_ascii_case(b"evalsha") {
            String::from_utf8_lossy(body).to_ascii_lowercase()
        } else {
            sha1::sha1hex(body)
        };
        let cached = srv.scripting.eval.try_lock().and_then(|e| e.scripts.get(&sha).map(|s| s.flags));
        match cached {
            Some(f) => f,
            None if name.eq_ignore_ascii_case(b"eval") => eval_shebang(body).ok()?.0,
            None => return None,
        }
    } else if name.eq_ignore_ascii_case(b"fcall") {
        let fname = String::from_utf8_lossy(args.get(1)?).into_owned();
        srv.scripting.func.try_lock().and_then(|e| e.function(&fname).map(|f| f.flags))?
    } else {
        return None;
    };
    (flags & F_EVAL_COMPAT == 0).then_some(flags)
}

/// Every library's code, for RDB persistence (the FUNCTION2 opcode).
pub fn function_dump_codes(srv: &Server) -> Vec<Vec<u8>> {
    srv.scripting.func.lock().codes()
}

/// Load one library from its code (as saved by `function_dump_codes`),
/// replacing a library of the same name. Used when loading an RDB file.
pub fn function_load_code(srv: &Server, code: &[u8], replace: bool) -> Result<String, String> {
    srv.scripting.func.lock().load(code, replace, 0)
}

/// Parse `#!lua flags=a,b` of an EVAL script. Returns (flags, shebang length).
pub fn eval_shebang(body: &[u8]) -> Result<(u32, usize), String> {
    if !body.starts_with(b"#!") {
        return Ok((F_EVAL_COMPAT, 0));
    }
    let Some(end) = body.iter().position(|&c| c == b'\n') else {
        return Err("Invalid script shebang".into());
    };
    let line = &body[..end];
    let parts = split_args(line).ok_or_else(|| "Invalid engine in script shebang".to_string())?;
    if parts.is_empty() {
        return Err("Invalid engine in script shebang".into());
    }
    if parts[0] != b"#!lua" {
        return Err(format!("Unexpected engine in script shebang: {}", String::from_utf8_lossy(&parts[0])));
    }
    let mut flags = 0;
    for p in &parts[1..] {
        if let Some(list) = p.strip_prefix(b"flags=") {
            if list.is_empty() {
                continue;
            }
            for f in list.split(|&c| c == b',') {
                match FLAG_NAMES.iter().find(|(n, _)| n.as_bytes() == f) {
                    Some((_, v)) => flags |= v,
                    None => return Err(format!("Unexpected flag in script shebang: {}", String::from_utf8_lossy(f))),
                }
            }
        } else {
            return Err(format!("Unknown lua shebang option: {}", String::from_utf8_lossy(p)));
        }
    }
    Ok((flags, end))
}

/// Redis's `sdssplitargs` (quotes, escapes); None on unbalanced quotes.
pub fn split_args(line: &[u8]) -> Option<Vec<Vec<u8>>> {
    let mut out = Vec::new();
    let mut i = 0;
    let n = line.len();
    loop {
        while i < n && line[i].is_ascii_whitespace() {
            i += 1;
        }
        if i >= n {
            return Some(out);
        }
        let mut cur = Vec::new();
        let (mut inq, mut insq, mut done) = (false, false, false);
        while !done {
            if inq {
                if i >= n {
                    return None;
                }
                if line[i] == b'\\'
                    && i + 3 < n
                    && line[i + 1] == b'x'
                    && line[i + 2].is_ascii_hexdigit()
                    && line[i + 3].is_ascii_hexdigit()
                {
                    let h = |c: u8| (c as char).to_digit(16).unwrap_or(0) as u8;
                    cur.push(h(line[i + 2]) * 16 + h(line[i + 3]));
                    i += 3;
                } else if line[i] == b'\\' && i + 1 < n {
                    i += 1;
                    cur.push(match line[i] {
                        b'n' => b'\n',
                        b'r' => b'\r',
                        b't' => b'\t',
                        b'b' => 8,
                        b'a' => 7,
                        c => c,
                    });
                } else if line[i] == b'"' {
                    if i + 1 < n && !line[i + 1].is_ascii_whitespace() {
                        return None;
                    }
                    done = true;
                } else {
                    cur.push(line[i]);
                }
            } else if insq {
                if i >= n {
                    return None;
                }
                if line[i] == b'\\' && i + 1 < n && line[i + 1] == b'\'' {
                    i += 1;
                    cur.push(b'\'');
                } else if line[i] == b'\'' {
                    if i + 1 < n && !line[i + 1].is_ascii_whitespace() {
                        return None;
                    }
                    done = true;
                } else {
                    cur.push(line[i]);
                }
            } else if i >= n {
                done = true;
            } else {
                match line[i] {
                    b' ' | b'\n' | b'\r' | b'\t' | 0 => done = true,
                    b'"' => inq = true,
                    b'\'' => insq = true,
                    c => cur.push(c),
                }
            }
            if i < n {
                i += 1;
            }
        }
        out.push(cur);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shebang() {
        assert_eq!(eval_shebang(b"return 1").unwrap(), (F_EVAL_COMPAT, 0));
        assert_eq!(eval_shebang(b"#!lua\nreturn 1").unwrap(), (0, 5));
        assert_eq!(eval_shebang(b"#!lua flags=no-writes,allow-oom\nx").unwrap().0, F_NO_WRITES | F_ALLOW_OOM);
        assert!(eval_shebang(b"#!lua flags=bad\nx").is_err());
        assert!(eval_shebang(b"#!lua").is_err());
        assert!(eval_shebang(b"#!py\nx").is_err());
    }

    #[test]
    fn split() {
        assert_eq!(split_args(b"a \"b c\" 'd'").unwrap(), vec![b"a".to_vec(), b"b c".to_vec(), b"d".to_vec()]);
        assert!(split_args(b"\"abc").is_none());
    }
}
