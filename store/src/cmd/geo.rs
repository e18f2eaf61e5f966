//! geo commands.

use super::CmdImpl;

pub static COMMANDS: &[CmdImpl] = &[];
