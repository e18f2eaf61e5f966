//! Configuration: command-line flags (clap), an optional TOML file, and
//! `FERRITE_*` environment variables. Precedence: flag > env > file > default.
//!
//! At run time the same settings are visible to CONFIG GET/SET under their
//! Redis names. Only settings Ferrite actually honours can be SET.

use clap::Parser;
use serde::Deserialize;
use std::path::PathBuf;

#[derive(Parser, Debug, Default, Clone)]
#[command(name = "ferrite", version, about = "Ferrite: a Redis 7.0 compatible server")]
pub struct Cli {
    /// Address to listen on.
    #[arg(long, env = "FERRITE_BIND")]
    pub bind: Option<String>,
    /// TCP port (0 picks a free port and prints it).
    #[arg(long, env = "FERRITE_PORT")]
    pub port: Option<u16>,
    /// TOML configuration file.
    #[arg(long, env = "FERRITE_CONFIG")]
    pub config: Option<PathBuf>,
    /// Number of databases.
    #[arg(long, env = "FERRITE_DATABASES")]
    pub databases: Option<usize>,
    /// Password for the default user (like Redis's requirepass).
    #[arg(long, env = "FERRITE_REQUIREPASS")]
    pub requirepass: Option<String>,
    /// Maximum simultaneous clients.
    #[arg(long, env = "FERRITE_MAXCLIENTS")]
    pub maxclients: Option<usize>,
    /// Largest accepted bulk string in bytes.
    #[arg(long = "proto-max-bulk-len", env = "FERRITE_PROTO_MAX_BULK_LEN")]
    pub proto_max_bulk_len: Option<u64>,
    /// Allow DEBUG (yes/no/local), like Redis's enable-debug-command.
    #[arg(long = "enable-debug-command", env = "FERRITE_ENABLE_DEBUG_COMMAND")]
    pub enable_debug_command: Option<String>,
    /// Worker threads (default: number of CPUs).
    #[arg(long, env = "FERRITE_THREADS")]
    pub threads: Option<usize>,
    /// Close idle clients after this many seconds (0 = never).
    #[arg(long, env = "FERRITE_TIMEOUT")]
    pub timeout: Option<u64>,
    /// Background task frequency (active expiry), per second.
    #[arg(long, env = "FERRITE_HZ")]
    pub hz: Option<u32>,
    /// ACL file with users (like Redis's aclfile).
    #[arg(long, env = "FERRITE_ACLFILE")]
    pub aclfile: Option<String>,
    /// Persistence settings with Redis's names (see `persist::config`).
    #[arg(long)]
    pub dir: Option<String>,
    #[arg(long)]
    pub dbfilename: Option<String>,
    #[arg(long, allow_hyphen_values = true)]
    pub save: Option<String>,
    #[arg(long)]
    pub appendonly: Option<String>,
    #[arg(long)]
    pub appendfsync: Option<String>,
    #[arg(long)]
    pub appendfilename: Option<String>,
    #[arg(long)]
    pub appenddirname: Option<String>,
    #[arg(long = "aof-load-truncated")]
    pub aof_load_truncated: Option<String>,
    #[arg(long = "aof-use-rdb-preamble")]
    pub aof_use_rdb_preamble: Option<String>,
    /// Serve Prometheus metrics on HOST:PORT at /metrics (off when not given or empty).
    #[arg(long = "metrics-listen", env = "FERRITE_METRICS_LISTEN")]
    pub metrics_listen: Option<String>,
    /// Start as a replica of this master: `--replicaof HOST PORT` (or "HOST PORT").
    #[arg(long, alias = "slaveof", num_args = 1..=2)]
    pub replicaof: Option<Vec<String>>,
}

/// The TOML file's shape (Redis names with `-` or `_`).
#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct FileConfig {
    pub bind: Option<String>,
    pub port: Option<u16>,
    pub databases: Option<usize>,
    pub requirepass: Option<String>,
    pub maxclients: Option<usize>,
    pub proto_max_bulk_len: Option<u64>,
    pub enable_debug_command: Option<String>,
    pub threads: Option<usize>,
    pub timeout: Option<u64>,
    pub hz: Option<u32>,
    pub aclfile: Option<String>,
    pub dir: Option<String>,
    pub dbfilename: Option<String>,
    pub save: Option<String>,
    pub appendonly: Option<String>,
    pub appendfsync: Option<String>,
    pub appendfilename: Option<String>,
    pub appenddirname: Option<String>,
    pub aof_load_truncated: Option<String>,
    pub aof_use_rdb_preamble: Option<String>,
    pub metrics_listen: Option<String>,
    /// "host port".
    pub replicaof: Option<String>,
}

/// Effective settings.
#[derive(Debug, Clone)]
pub struct Config {
    pub bind: String,
    pub port: u16,
    pub databases: usize,
    pub requirepass: Option<String>,
    pub maxclients: usize,
    pub proto_max_bulk_len: u64,
    pub enable_debug_command: String,
    pub threads: usize,
    pub timeout: u64,
    pub hz: u32,
    pub config_file: Option<PathBuf>,
    /// ACL file path ("" = none).
    pub aclfile: String,
    /// RDB/AOF settings.
    pub persist: crate::persist::PersistConfig,
    /// Prometheus /metrics listen address (None = off).
    pub metrics_listen: Option<String>,
    /// Master to replicate from at start-up (`replicaof`).
    pub replicaof: Option<(String, u16)>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            bind: "127.0.0.1".into(),
            port: 6379,
            databases: 16,
            requirepass: None,
            maxclients: 10000,
            proto_max_bulk_len: 512 * 1024 * 1024,
            enable_debug_command: "no".into(),
            threads: std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2),
            timeout: 0,
            hz: 10,
            config_file: None,
            aclfile: String::new(),
            persist: Default::default(),
            metrics_listen: None,
            replicaof: None,
        }
    }
}

/// `replicaof HOST PORT` (Redis's messages for a bad port).
fn parse_replicaof<'a>(mut it: impl Iterator<Item = &'a str>) -> Result<(String, u16), String> {
    let (Some(host), Some(port), None) = (it.next(), it.next(), it.next()) else {
        return Err("replicaof: wrong number of arguments (HOST PORT)".into());
    };
    let port = port.parse::<u16>().map_err(|_| format!("replicaof \"{host}\" \"{port}\": Invalid master port"))?;
    Ok((host.to_string(), port))
}

impl Config {
    /// Merge defaults, the file named by `--config`, env and flags.
    pub fn load(mut cli: Cli) -> Result<Config, String> {
        let mut c = Config::default();
        let mut persist: Vec<(String, String)> = Vec::new();
        macro_rules! take_persist {
            ($s:ident) => {{
                for (k, v) in [
                    ("dir", $s.dir.take()),
                    ("dbfilename", $s.dbfilename.take()),
                    ("save", $s.save.take()),
                    ("appendonly", $s.appendonly.take()),
                    ("appendfsync", $s.appendfsync.take()),
                    ("appendfilename", $s.appendfilename.take()),
                    ("appenddirname", $s.appenddirname.take()),
                    ("aof-load-truncated", $s.aof_load_truncated.take()),
                    ("aof-use-rdb-preamble", $s.aof_use_rdb_preamble.take()),
                ] {
                    if let Some(v) = v {
                        persist.push((k.to_string(), v));
                    }
                }
            }};
        }
        if let Some(path) = &cli.config {
            let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
            let mut f: FileConfig =
                toml::from_str(&text).map_err(|e| format!("bad config file {}: {e}", path.display()))?;
            macro_rules! take {
                ($($f:ident),*) => { $( if let Some(v) = f.$f { c.$f = v; } )* };
            }
            take!(bind, port, databases, maxclients, proto_max_bulk_len, enable_debug_command, threads, timeout, hz);
            if let Some(v) = f.aclfile {
                c.aclfile = v;
            }
            if f.metrics_listen.is_some() {
                c.metrics_listen = f.metrics_listen;
            }
            if f.requirepass.is_some() {
                c.requirepass = f.requirepass;
            }
            take_persist!(f);
            if let Some(v) = f.replicaof {
                c.replicaof = Some(parse_replicaof(v.split_whitespace())?);
            }
            c.config_file = Some(path.clone());
        }
        macro_rules! take_cli {
            ($($f:ident),*) => { $( if let Some(v) = cli.$f { c.$f = v; } )* };
        }
        take_cli!(bind, port, databases, maxclients, proto_max_bulk_len, enable_debug_command, threads, timeout, hz);
        if let Some(v) = cli.aclfile {
            c.aclfile = v;
        }
        if cli.metrics_listen.is_some() {
            c.metrics_listen = cli.metrics_listen;
        }
        c.metrics_listen = c.metrics_listen.filter(|a| !a.trim().is_empty());
        if cli.requirepass.is_some() {
            c.requirepass = cli.requirepass.filter(|p| !p.is_empty());
        }
        take_persist!(cli);
        if let Some(v) = &cli.replicaof {
            c.replicaof = Some(parse_replicaof(v.iter().flat_map(|a| a.split_whitespace()))?);
        }
        c.persist = crate::persist::PersistConfig::from_pairs(&persist)?;
        if c.databases == 0 || c.databases > 1_000_000 {
            return Err("databases must be between 1 and 1000000".into());
        }
        if !matches!(c.enable_debug_command.as_str(), "yes" | "no" | "local") {
            return Err("enable-debug-command must be yes, no or local".into());
        }
        c.hz = c.hz.clamp(1, 500);
        c.threads = c.threads.max(1);
        Ok(c)
    }
}
