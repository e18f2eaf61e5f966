//! MODULE: ferrite loads no Redis modules (the C ABI shim is not built), so the command answers as a Redis 7.0
//! server with no module loaded and every load failing: LIST is empty, LOAD/LOADEX fail with Redis's
//! "Error loading the extension" (and the reason in the log), UNLOAD finds no such module. LOAD, LOADEX and
//! UNLOAD are protected by `enable-module-command` (default `no`) exactly as in Redis 7.0; LIST and HELP are not.
//! Clients that probe for modules with MODULE LIST (client libraries, GUIs) get a correct, empty answer instead of
//! an unknown-command error.

use super::{CmdImpl, CmdResult, Cx, Lock};
use crate::cmd::CmdError;

pub static COMMANDS: &[CmdImpl] = &[CmdImpl { name: "module", handler: module, lock: Lock::None }];

const HELP: &[&str] = &[
    "MODULE <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
    "LIST",
    "    Return a list of loaded modules.",
    "LOAD <path> [<arg> ...]",
    "    Load a module library from <path>, passing to it any optional arguments.",
    "LOADEX <path> [[CONFIG NAME VALUE] [CONFIG NAME VALUE]] [ARGS ...]",
    "    Load a module library from <path>, while passing it module configurations and optional arguments.",
    "UNLOAD <name>",
    "    Unload a module.",
    "HELP",
    "    Prints this help.",
];

/// `enable-module-command` (Redis's allowProtectedAction).
fn allowed(cx: &Cx) -> bool {
    let mode = crate::cmd::config::accepted_value("enable-module-command").unwrap_or_default();
    super::server::protected_allowed(cx, &mode)
}

fn module(cx: &mut Cx) -> CmdResult {
    let sub = String::from_utf8_lossy(cx.arg(1)).to_ascii_lowercase();
    match sub.as_str() {
        "help" => {
            super::server::reply_help(cx, HELP);
            Ok(())
        }
        "list" => {
            cx.out.array(0);
            Ok(())
        }
        "load" | "loadex" | "unload" if !allowed(cx) => Err(CmdError::err(
            "MODULE command not allowed. If the enable-module-command option is set to \"local\", you can run it \
             from a local connection, otherwise you need to set this option in the configuration file, and then \
             restart the server.",
        )),
        "load" | "loadex" => {
            let path = String::from_utf8_lossy(cx.arg(2)).into_owned();
            eprintln!("ferrite: Module {path} failed to load: ferrite cannot load Redis modules");
            Err(CmdError::err("Error loading the extension. Please check the server logs."))
        }
        "unload" => Err(CmdError::err("Error unloading module: no such module with that name")),
        // Dispatch already answered unknown subcommands and wrong arities.
        _ => Err(CmdError::err(format!("unknown subcommand '{sub}'. Try MODULE HELP."))),
    }
}
