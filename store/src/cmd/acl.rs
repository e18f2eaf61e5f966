//! ACL commands.

use super::CmdImpl;

pub static COMMANDS: &[CmdImpl] = &[];
