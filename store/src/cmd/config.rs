//! config commands.

use super::CmdImpl;

pub static COMMANDS: &[CmdImpl] = &[];
