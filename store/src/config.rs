//! Configuration: command-line flags (clap), an optional TOML file, and
//! `FERRITE_*` environment variables. Precedence: flag > env > file > default.
//! The binary also reads redis-server's own command line (a redis.conf file
//! and `--directive args`, applied on top of these: see `redisconf.rs` in
//! the binary); [`rewrite_redis_conf`] is CONFIG REWRITE for such a file.
//!
//! At run time the same settings are visible to CONFIG GET/SET under their
//! Redis names. Only settings Ferrite actually honours can be SET.

use clap::Parser;
use serde::Deserialize;
use std::path::PathBuf;

#[derive(Parser, Debug, Default, Clone)]
#[command(
    name = "ferrite",
    version,
    about = "Ferrite: a Redis 7.0 compatible server",
    override_usage = "ferrite [OPTIONS]\n       ferrite [/path/to/redis.conf | file.toml | -] [--<redis.conf directive> <args>...]",
    after_help = "Like redis-server: an optional first argument names a redis.conf file (`-`: read it from stdin; a \
                  .toml file is the TOML configuration), and every `--directive args...` except ferrite's own \
                  --config, --threads and --metrics-listen is a redis.conf line applied after it (so are the flags \
                  above that Redis also knows, like --port), e.g.\n  ferrite /etc/redis/redis.conf --port 7000 --save \"\" \
                  --appendonly yes"
)]
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
    /// Absolute path of the redis.conf file ferrite was started with
    /// (CONFIG REWRITE rewrites it, see [`rewrite_redis_conf`]).
    pub redis_conf: Option<PathBuf>,
    /// `rename-command OLD NEW` lines of the redis.conf, in order (NEW empty = the command is removed).
    pub rename_commands: Vec<(Vec<u8>, Vec<u8>)>,
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
            redis_conf: None,
            rename_commands: Vec::new(),
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

/// The signature line above the settings CONFIG REWRITE appends.
pub const REWRITE_SIGNATURE: &str = "# Generated by CONFIG REWRITE";

/// Names CONFIG REWRITE never writes: aliases (their canonical name is
/// written instead) and settings whose redis.conf line is kept verbatim
/// (`bind` may list several addresses, `daemonize` is not a run-time value).
pub const REWRITE_SKIP: &[&str] = &[
    "hash-max-ziplist-entries",
    "hash-max-ziplist-value",
    "zset-max-ziplist-entries",
    "zset-max-ziplist-value",
    "list-max-ziplist-size",
    "slave-read-only",
    "lua-time-limit",
    "slaveof",
    "bind",
    "daemonize",
];

/// The canonical name of a setting for CONFIG REWRITE (aliases folded).
fn rewrite_canonical(name: &str) -> &str {
    match name {
        "hash-max-ziplist-entries" => "hash-max-listpack-entries",
        "hash-max-ziplist-value" => "hash-max-listpack-value",
        "zset-max-ziplist-entries" => "zset-max-listpack-entries",
        "zset-max-ziplist-value" => "zset-max-listpack-value",
        "list-max-ziplist-size" => "list-max-listpack-size",
        "slave-read-only" => "replica-read-only",
        "lua-time-limit" => "busy-reply-threshold",
        "slaveof" => "replicaof",
        "slave-serve-stale-data" => "replica-serve-stale-data",
        "repl-ping-slave-period" => "repl-ping-replica-period",
        "min-slaves-to-write" => "min-replicas-to-write",
        "min-slaves-max-lag" => "min-replicas-max-lag",
        "slave-priority" => "replica-priority",
        "slave-lazy-flush" => "replica-lazy-flush",
        "slave-announce-ip" => "replica-announce-ip",
        "slave-announce-port" => "replica-announce-port",
        "slave-ignore-maxmemory" => "replica-ignore-maxmemory",
        n => n,
    }
}

/// Settings written as several bare arguments.
const REWRITE_MULTI: &[&str] = &[
    "save",
    "client-output-buffer-limit",
    "oom-score-adj-values",
    "latency-tracking-info-percentiles",
    "shutdown-on-sigint",
    "shutdown-on-sigterm",
    "replicaof",
];

/// Redis 7.0's defaults (CONFIG GET of a redis-server started without a
/// configuration): CONFIG REWRITE appends a setting missing from the file
/// only when its value differs from these.
const REDIS_DEFAULTS: &[(&str, &str)] = &[
    ("acl-pubsub-default", "resetchannels"),
    ("aclfile", ""),
    ("acllog-max-len", "128"),
    ("active-defrag-cycle-max", "25"),
    ("active-defrag-cycle-min", "1"),
    ("active-defrag-ignore-bytes", "104857600"),
    ("active-defrag-max-scan-fields", "1000"),
    ("active-defrag-threshold-lower", "10"),
    ("active-defrag-threshold-upper", "100"),
    ("active-expire-effort", "1"),
    ("activedefrag", "no"),
    ("activerehashing", "yes"),
    ("always-show-logo", "no"),
    ("aof-disable-auto-gc", "no"),
    ("aof-load-truncated", "yes"),
    ("aof-rewrite-incremental-fsync", "yes"),
    ("aof-timestamp-enabled", "no"),
    ("aof-use-rdb-preamble", "yes"),
    ("aof_rewrite_cpulist", ""),
    ("appenddirname", "appendonlydir"),
    ("appendfilename", "appendonly.aof"),
    ("appendfsync", "everysec"),
    ("appendonly", "no"),
    ("auto-aof-rewrite-min-size", "67108864"),
    ("auto-aof-rewrite-percentage", "100"),
    ("bgsave_cpulist", ""),
    ("bind", "* -::*"),
    ("bind-source-addr", ""),
    ("bio_cpulist", ""),
    ("busy-reply-threshold", "5000"),
    ("client-output-buffer-limit", "normal 0 0 0 slave 268435456 67108864 60 pubsub 33554432 8388608 60"),
    ("client-query-buffer-limit", "1073741824"),
    ("cluster-allow-pubsubshard-when-down", "yes"),
    ("cluster-allow-reads-when-down", "no"),
    ("cluster-allow-replica-migration", "yes"),
    ("cluster-announce-bus-port", "0"),
    ("cluster-announce-hostname", ""),
    ("cluster-announce-ip", ""),
    ("cluster-announce-port", "0"),
    ("cluster-announce-tls-port", "0"),
    ("cluster-config-file", "nodes.conf"),
    ("cluster-enabled", "no"),
    ("cluster-link-sendbuf-limit", "0"),
    ("cluster-migration-barrier", "1"),
    ("cluster-node-timeout", "15000"),
    ("cluster-port", "0"),
    ("cluster-preferred-endpoint-type", "ip"),
    ("cluster-replica-no-failover", "no"),
    ("cluster-replica-validity-factor", "10"),
    ("cluster-require-full-coverage", "yes"),
    ("cluster-slave-no-failover", "no"),
    ("cluster-slave-validity-factor", "10"),
    ("crash-log-enabled", "yes"),
    ("crash-memcheck-enabled", "yes"),
    ("daemonize", "no"),
    ("databases", "16"),
    ("dbfilename", "dump.rdb"),
    ("disable-thp", "yes"),
    ("dynamic-hz", "yes"),
    ("enable-debug-command", "no"),
    ("enable-module-command", "no"),
    ("enable-protected-configs", "no"),
    ("hash-max-listpack-entries", "512"),
    ("hash-max-listpack-value", "64"),
    ("hash-max-ziplist-entries", "512"),
    ("hash-max-ziplist-value", "64"),
    ("hll-sparse-max-bytes", "3000"),
    ("hz", "10"),
    ("ignore-warnings", ""),
    ("io-threads", "1"),
    ("io-threads-do-reads", "no"),
    ("jemalloc-bg-thread", "yes"),
    ("latency-monitor-threshold", "0"),
    ("latency-tracking", "yes"),
    ("latency-tracking-info-percentiles", "50 99 99.9"),
    ("lazyfree-lazy-eviction", "no"),
    ("lazyfree-lazy-expire", "no"),
    ("lazyfree-lazy-server-del", "no"),
    ("lazyfree-lazy-user-del", "no"),
    ("lazyfree-lazy-user-flush", "no"),
    ("lfu-decay-time", "1"),
    ("lfu-log-factor", "10"),
    ("list-compress-depth", "0"),
    ("list-max-listpack-size", "-2"),
    ("list-max-ziplist-size", "-2"),
    ("logfile", ""),
    ("loglevel", "notice"),
    ("lua-time-limit", "5000"),
    ("masterauth", ""),
    ("masteruser", ""),
    ("maxclients", "10000"),
    ("maxmemory", "0"),
    ("maxmemory-clients", "0"),
    ("maxmemory-eviction-tenacity", "10"),
    ("maxmemory-policy", "noeviction"),
    ("maxmemory-samples", "5"),
    ("min-replicas-max-lag", "10"),
    ("min-replicas-to-write", "0"),
    ("min-slaves-max-lag", "10"),
    ("min-slaves-to-write", "0"),
    ("no-appendfsync-on-rewrite", "no"),
    ("notify-keyspace-events", ""),
    ("oom-score-adj", "no"),
    ("oom-score-adj-values", "0 200 800"),
    ("pidfile", ""),
    ("port", "6379"),
    ("proc-title-template", "{title} {listen-addr} {server-mode}"),
    ("propagation-error-behavior", "ignore"),
    ("protected-mode", "yes"),
    ("proto-max-bulk-len", "536870912"),
    ("rdb-del-sync-files", "no"),
    ("rdb-save-incremental-fsync", "yes"),
    ("rdbchecksum", "yes"),
    ("rdbcompression", "yes"),
    ("repl-backlog-size", "1048576"),
    ("repl-backlog-ttl", "3600"),
    ("repl-disable-tcp-nodelay", "no"),
    ("repl-diskless-load", "disabled"),
    ("repl-diskless-sync", "yes"),
    ("repl-diskless-sync-delay", "5"),
    ("repl-diskless-sync-max-replicas", "0"),
    ("repl-ping-replica-period", "10"),
    ("repl-ping-slave-period", "10"),
    ("repl-timeout", "60"),
    ("replica-announce-ip", ""),
    ("replica-announce-port", "0"),
    ("replica-announced", "yes"),
    ("replica-ignore-disk-write-errors", "no"),
    ("replica-ignore-maxmemory", "yes"),
    ("replica-lazy-flush", "no"),
    ("replica-priority", "100"),
    ("replica-read-only", "yes"),
    ("replica-serve-stale-data", "yes"),
    ("replicaof", ""),
    ("requirepass", ""),
    ("sanitize-dump-payload", "no"),
    ("save", "3600 1 300 100 60 10000"),
    ("server_cpulist", ""),
    ("set-max-intset-entries", "512"),
    ("set-proc-title", "yes"),
    ("shutdown-on-sigint", "default"),
    ("shutdown-on-sigterm", "default"),
    ("shutdown-timeout", "10"),
    ("slave-announce-ip", ""),
    ("slave-announce-port", "0"),
    ("slave-ignore-maxmemory", "yes"),
    ("slave-lazy-flush", "no"),
    ("slave-priority", "100"),
    ("slave-read-only", "yes"),
    ("slave-serve-stale-data", "yes"),
    ("slaveof", ""),
    ("slowlog-log-slower-than", "10000"),
    ("slowlog-max-len", "128"),
    ("socket-mark-id", "0"),
    ("stop-writes-on-bgsave-error", "yes"),
    ("stream-node-max-bytes", "4096"),
    ("stream-node-max-entries", "100"),
    ("supervised", "no"),
    ("syslog-enabled", "no"),
    ("syslog-facility", "local0"),
    ("syslog-ident", "redis"),
    ("tcp-backlog", "511"),
    ("tcp-keepalive", "300"),
    ("timeout", "0"),
    ("tls-auth-clients", "yes"),
    ("tls-ca-cert-dir", ""),
    ("tls-ca-cert-file", ""),
    ("tls-cert-file", ""),
    ("tls-ciphers", ""),
    ("tls-ciphersuites", ""),
    ("tls-client-cert-file", ""),
    ("tls-client-key-file", ""),
    ("tls-client-key-file-pass", ""),
    ("tls-cluster", "no"),
    ("tls-dh-params-file", ""),
    ("tls-key-file", ""),
    ("tls-key-file-pass", ""),
    ("tls-port", "0"),
    ("tls-prefer-server-ciphers", "no"),
    ("tls-protocols", ""),
    ("tls-replication", "no"),
    ("tls-session-cache-size", "20480"),
    ("tls-session-cache-timeout", "300"),
    ("tls-session-caching", "yes"),
    ("tracking-table-max-keys", "1000000"),
    ("unixsocket", ""),
    ("unixsocketperm", "0"),
    ("zset-max-listpack-entries", "128"),
    ("zset-max-listpack-value", "64"),
    ("zset-max-ziplist-entries", "128"),
    ("zset-max-ziplist-value", "64"),
];

/// One redis.conf line for a setting.
fn rewrite_line(name: &str, value: &str) -> String {
    if REWRITE_MULTI.contains(&name) && !value.is_empty() {
        return format!("{name} {value}");
    }
    let plain = !value.is_empty() && value.bytes().all(|c| c.is_ascii_graphic() && !matches!(c, b'"' | b'\'' | b'\\'));
    if plain {
        return format!("{name} {value}");
    }
    let mut q = String::from("\"");
    for c in value.bytes() {
        match c {
            b'\\' => q.push_str("\\\\"),
            b'"' => q.push_str("\\\""),
            b'\n' => q.push_str("\\n"),
            b'\r' => q.push_str("\\r"),
            b'\t' => q.push_str("\\t"),
            c if c == b' ' || c.is_ascii_graphic() => q.push(c as char),
            c => q.push_str(&format!("\\x{c:02x}")),
        }
    }
    q.push('"');
    format!("{name} {q}")
}

/// Redis's CONFIG REWRITE of a redis.conf file: comments, blank lines
/// (runs collapsed to one) and directives that are not CONFIG settings
/// (include, user, ...) stay where they are; the first line of each
/// setting gets its current value (an alias is rewritten under the
/// canonical name) and its other lines go; settings not in the file are
/// appended under [`REWRITE_SIGNATURE`] when they differ from Redis's
/// default. `current` is (name, CONFIG GET value) of every setting. The
/// new file replaces the old one atomically.
/// With `force_all` (DEBUG CONFIG-REWRITE-FORCE-ALL) every setting is written, defaults included.
pub fn rewrite_redis_conf(path: &std::path::Path, current: &[(String, String)], force_all: bool) -> Result<(), String> {
    let old = match std::fs::read(path) {
        Ok(b) => String::from_utf8_lossy(&b).into_owned(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(e.to_string()),
    };
    let value: std::collections::HashMap<&str, &str> = current.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
    let mut out: Vec<String> = Vec::new();
    let mut written: std::collections::HashSet<String> = std::collections::HashSet::new();
    for raw in old.split('\n') {
        let t = raw.trim_matches(|c| matches!(c, ' ' | '\t' | '\r'));
        if t == REWRITE_SIGNATURE {
            continue;
        }
        if t.is_empty() {
            if out.last().is_some_and(|l| !l.is_empty()) {
                out.push(String::new());
            }
            continue;
        }
        if t.starts_with('#') {
            out.push(raw.to_string());
            continue;
        }
        let mut args = Vec::new();
        let name = match ferrite_resp::parser::split_args(t.as_bytes(), &mut args) {
            Ok(()) if !args.is_empty() => String::from_utf8_lossy(&args[0]).to_ascii_lowercase(),
            _ => {
                out.push(raw.to_string());
                continue;
            }
        };
        let c = rewrite_canonical(&name);
        match value.get(c) {
            // No master: Redis drops the line.
            Some(v) if c == "replicaof" && v.is_empty() => {}
            Some(v) if !REWRITE_SKIP.contains(&c) => {
                if written.insert(c.to_string()) {
                    out.push(rewrite_line(c, v));
                }
            }
            _ => out.push(raw.to_string()),
        }
    }
    while out.last().is_some_and(|l| l.is_empty()) {
        out.pop();
    }
    let mut appended = Vec::new();
    for (n, v) in current {
        if written.contains(n.as_str()) || REWRITE_SKIP.contains(&n.as_str()) || (n == "replicaof" && v.is_empty()) {
            continue;
        }
        let default = REDIS_DEFAULTS.iter().find(|(d, _)| d == n).map(|(_, d)| *d);
        if force_all || n == "dir" || default.is_some_and(|d| d != v) || (default.is_none() && !v.is_empty()) {
            appended.push(rewrite_line(n, v));
        }
    }
    if !appended.is_empty() {
        if !out.is_empty() {
            out.push(String::new());
        }
        out.push(REWRITE_SIGNATURE.to_string());
        out.extend(appended);
    }
    let mut text = out.join("\n");
    text.push('\n');
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".rewrite.tmp");
    let tmp = PathBuf::from(tmp);
    std::fs::write(&tmp, text.as_bytes()).and_then(|_| std::fs::rename(&tmp, path)).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        e.to_string()
    })
}
