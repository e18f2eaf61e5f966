//! `ferrite-migrate`: live, slot-by-slot migration from a Redis Cluster to a
//! Ferrite server through one or more `ferrite-proxy` instances.
//!
//! What it knows:
//! - the source topology (CLUSTER SHARDS, falling back to CLUSTER SLOTS), and
//!   how to follow MOVED replies and master failovers while it runs;
//! - two ways to move data: `scan` (CLUSTER GETKEYSINSLOT + DUMP/PTTL inside
//!   MULTI, RESTORE ... ABSTTL REPLACE on Ferrite, then re-copy of every key the
//!   proxies recorded as written) and `replication` (it acts as a Redis
//!   replica of every source master: PSYNC, streaming RDB, command stream,
//!   REPLCONF ACK);
//! - the proxy admin protocol (`FERRITE.PROXY SETSLOTS/TRACK/DIRTY/EPOCH`),
//!   driven through every listed proxy with one epoch per step;
//! - a checkpoint file (written atomically after every slot) so `resume`
//!   continues after a crash;
//! - per-slot digests and key-by-key diffs to verify both sides;
//! - function libraries (FUNCTION DUMP / RESTORE), copied before the data.
//!
//! What it does not know: Redis modules (module values are reported by `plan`
//! and skipped), TLS, and more than database 0 (Redis Cluster only has db 0).
//! It never writes to the source except through the proxy's mirror.

pub mod config;
pub mod copy;
pub mod functions;
pub mod metrics;
pub mod plan;
pub mod progress;
pub mod proxy;
pub mod repl;
pub mod resp;
pub mod run;
pub mod slots;
pub mod state;
pub mod streamcopy;
pub mod topo;
pub mod verify;

use std::fmt;

/// Errors of the tool.
#[derive(Debug)]
pub enum Error {
    /// Network: connect, read, write, closed connection.
    Conn(String),
    /// The peer sent something that is not RESP / not the expected protocol.
    Protocol(String),
    /// An error reply from a server.
    Server(String),
    /// Bad command line, configuration or state file.
    Config(String),
    /// Something else (with a message for the user).
    Other(String),
    /// Stopped by SIGINT/SIGTERM at a safe point (state saved).
    Interrupted,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Conn(m) => write!(f, "connection error: {m}"),
            Error::Protocol(m) => write!(f, "protocol error: {m}"),
            Error::Server(m) => write!(f, "server replied: {m}"),
            Error::Config(m) => write!(f, "configuration error: {m}"),
            Error::Other(m) => write!(f, "{m}"),
            Error::Interrupted => write!(f, "interrupted: progress saved, continue with `ferrite-migrate resume`"),
        }
    }
}

impl std::error::Error for Error {}

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Self {
        Error::Other(e.to_string())
    }
}

pub type Result<T> = std::result::Result<T, Error>;

static INTERRUPTED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

extern "C" fn on_sigint(_: libc::c_int) {
    INTERRUPTED.store(true, std::sync::atomic::Ordering::SeqCst);
    // A second Ctrl-C kills the process the usual way.
    // SAFETY: signal() is async-signal-safe; SIG_DFL is a valid handler.
    unsafe {
        libc::signal(libc::SIGINT, libc::SIG_DFL);
    }
}

/// Catch the first SIGINT / SIGTERM: `run`/`resume` then stop at the next
/// safe point (after the current slot or cutover step), turn tracking off,
/// checkpoint, and exit with status 130.
pub fn install_interrupt_handler() {
    let h = on_sigint as extern "C" fn(libc::c_int) as libc::sighandler_t;
    // SAFETY: installing a handler that only stores to an atomic and calls
    // the async-signal-safe signal().
    unsafe {
        libc::signal(libc::SIGINT, h);
        libc::signal(libc::SIGTERM, h);
    }
}

/// True once SIGINT/SIGTERM arrived (see [`install_interrupt_handler`]).
pub fn interrupted() -> bool {
    INTERRUPTED.load(std::sync::atomic::Ordering::SeqCst)
}

/// Unix time in milliseconds.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}
