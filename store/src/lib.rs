//! `ferrite`: a multi-threaded, Redis 7.0 compatible server.
//!
//! What it does: accepts RESP2/RESP3 connections (`conn`), runs each
//! request through one dispatch path (`dispatch`) against a sharded,
//! per-slot-indexed keyspace (`keyspace`), with commands implemented per
//! data type in `cmd`.
//!
//! What it does not know: the wire format details (that is
//! `ferrite-resp`), command metadata such as arity and key positions
//! (`ferrite-commands`), or where other cluster nodes are (`routing`
//! only decides, from a view it is given).

pub mod acl;
pub mod alloc;
pub mod blocking;
pub mod client;
pub mod clock;
pub mod cmd;
pub mod config;
pub mod conn;
pub mod crash;
pub mod dispatch;
pub mod evict;
pub mod glob;
pub mod keyspace;
pub mod ldouble;
pub mod metrics;
pub mod notify;
pub mod obuf;
pub mod persist;
pub mod pqsort;
pub mod pubsub;
pub mod rdbconv;
pub mod routing;
pub mod script;
pub mod server;
pub mod stats;
pub mod types;
