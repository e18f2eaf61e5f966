//! Settings: command-line flags (clap), environment variables (`FERRITE_PROXY_*`) and a TOML file
//! (`--config proxy.toml`). Precedence: flag > environment > file > default.

use clap::Parser;
use serde::Deserialize;
use std::time::Duration;

#[derive(Parser, Debug, Default, Clone)]
#[command(
    name = "ferrite-proxy",
    version,
    about = "Transparent RESP proxy routing each hash slot to an upstream Redis Cluster or to Ferrite. \
             With no upstream it serves an embedded Ferrite store on 127.0.0.1:6380."
)]
pub struct Cli {
    /// TOML configuration file (keys are the long flag names, e.g. `upstream-cluster = ["127.0.0.1:7000"]`).
    #[arg(long, env = "FERRITE_PROXY_CONFIG")]
    pub config: Option<String>,
    /// Client listen address (loopback unless told otherwise).
    #[arg(long, env = "FERRITE_PROXY_LISTEN")]
    pub listen: Option<String>,
    /// Seed node(s) of the upstream Redis Cluster (repeat or comma-separate).
    #[arg(long = "upstream-cluster", env = "FERRITE_PROXY_UPSTREAM_CLUSTER", value_delimiter = ',')]
    pub upstream_cluster: Vec<String>,
    /// A remote Ferrite server; without it the embedded Ferrite store is used.
    #[arg(long, env = "FERRITE_PROXY_FERRITE")]
    pub ferrite: Option<String>,
    /// Prometheus /metrics listen address (off when not given).
    #[arg(long = "metrics-listen", env = "FERRITE_PROXY_METRICS_LISTEN")]
    pub metrics_listen: Option<String>,
    /// Password clients must give with AUTH (default user).
    #[arg(long, env = "FERRITE_PROXY_REQUIREPASS")]
    pub requirepass: Option<String>,
    /// Extra client users as `name:password` (repeat or comma-separate).
    #[arg(long = "user", env = "FERRITE_PROXY_USERS", value_delimiter = ',')]
    pub users: Vec<String>,
    /// Username the proxy uses on upstream nodes.
    #[arg(long = "upstream-user", env = "FERRITE_PROXY_UPSTREAM_USER")]
    pub upstream_user: Option<String>,
    /// Password the proxy uses on upstream nodes.
    #[arg(long = "upstream-password", env = "FERRITE_PROXY_UPSTREAM_PASSWORD")]
    pub upstream_password: Option<String>,
    /// Username the proxy uses on the remote Ferrite.
    #[arg(long = "ferrite-user", env = "FERRITE_PROXY_FERRITE_USER")]
    pub ferrite_user: Option<String>,
    /// Password the proxy uses on the remote Ferrite.
    #[arg(long = "ferrite-password", env = "FERRITE_PROXY_FERRITE_PASSWORD")]
    pub ferrite_password: Option<String>,
    /// Password for `FERRITE.PROXY` admin commands (without it only loopback clients may use them).
    #[arg(long = "admin-password", env = "FERRITE_PROXY_ADMIN_PASSWORD")]
    pub admin_password: Option<String>,
    /// Connect timeout to backends, ms.
    #[arg(long = "connect-timeout-ms", env = "FERRITE_PROXY_CONNECT_TIMEOUT_MS")]
    pub connect_timeout_ms: Option<u64>,
    /// How long a request may wait for a backend reply (non-blocking commands), ms.
    #[arg(long = "request-timeout-ms", env = "FERRITE_PROXY_REQUEST_TIMEOUT_MS")]
    pub request_timeout_ms: Option<u64>,
    /// Longest a request waits on a paused slot (and longest a slot stays paused), ms.
    #[arg(long = "pause-timeout-ms", env = "FERRITE_PROXY_PAUSE_TIMEOUT_MS")]
    pub pause_timeout_ms: Option<u64>,
    /// Most requests queued on paused slots (whole proxy).
    #[arg(long = "pause-max-queued", env = "FERRITE_PROXY_PAUSE_MAX_QUEUED")]
    pub pause_max_queued: Option<usize>,
    /// Most client connections.
    #[arg(long = "maxclients", env = "FERRITE_PROXY_MAXCLIENTS")]
    pub maxclients: Option<usize>,
    /// Largest bulk string accepted from clients, bytes.
    #[arg(long = "proto-max-bulk-len", env = "FERRITE_PROXY_PROTO_MAX_BULK_LEN")]
    pub proto_max_bulk_len: Option<u64>,
    /// Log format: `text` or `json`.
    #[arg(long = "log-format", env = "FERRITE_PROXY_LOG_FORMAT")]
    pub log_format: Option<String>,
    /// Log filter (`info`, `debug`, `ferrite_proxy=debug`, ...).
    #[arg(long = "log-level", env = "FERRITE_PROXY_LOG_LEVEL")]
    pub log_level: Option<String>,
    /// Worker threads (0 = automatic: half the CPUs, at least 1, when fronting remote backends, which usually share
    /// the machine or need the CPU for the network stack; every CPU when serving the embedded store).
    #[arg(long, env = "FERRITE_PROXY_THREADS")]
    pub threads: Option<usize>,
    /// How long graceful shutdown waits for in-flight requests, ms.
    #[arg(long = "shutdown-timeout-ms", env = "FERRITE_PROXY_SHUTDOWN_TIMEOUT_MS")]
    pub shutdown_timeout_ms: Option<u64>,
    /// The remote Ferrite (`--ferrite`) is a cluster: discover its nodes like the upstream's.
    #[arg(long = "ferrite-cluster", env = "FERRITE_PROXY_FERRITE_CLUSTER")]
    pub ferrite_cluster: bool,
    /// Connections per Ferrite node (1-64). More than 1 uses Ferrite's threads better; requests of one slot stay
    /// on one connection, but a client's requests to different slots may then run in a different order.
    #[arg(long = "ferrite-connections", env = "FERRITE_PROXY_FERRITE_CONNECTIONS")]
    pub ferrite_connections: Option<usize>,
}

#[derive(Deserialize, Debug, Default)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
struct FileConfig {
    listen: Option<String>,
    upstream_cluster: Option<Vec<String>>,
    ferrite: Option<String>,
    metrics_listen: Option<String>,
    requirepass: Option<String>,
    users: Option<Vec<String>>,
    upstream_user: Option<String>,
    upstream_password: Option<String>,
    ferrite_user: Option<String>,
    ferrite_password: Option<String>,
    admin_password: Option<String>,
    connect_timeout_ms: Option<u64>,
    request_timeout_ms: Option<u64>,
    pause_timeout_ms: Option<u64>,
    pause_max_queued: Option<usize>,
    maxclients: Option<usize>,
    proto_max_bulk_len: Option<u64>,
    log_format: Option<String>,
    log_level: Option<String>,
    threads: Option<usize>,
    shutdown_timeout_ms: Option<u64>,
    ferrite_connections: Option<usize>,
    ferrite_cluster: Option<bool>,
}

/// Effective settings.
#[derive(Debug, Clone)]
pub struct Config {
    pub listen: String,
    pub upstream_cluster: Vec<String>,
    pub ferrite: Option<String>,
    pub metrics_listen: Option<String>,
    pub requirepass: Option<String>,
    /// (user, password)
    pub users: Vec<(String, String)>,
    pub upstream_user: Option<String>,
    pub upstream_password: Option<String>,
    pub ferrite_user: Option<String>,
    pub ferrite_password: Option<String>,
    pub admin_password: Option<String>,
    pub connect_timeout: Duration,
    pub request_timeout: Duration,
    pub pause_timeout: Duration,
    pub pause_max_queued: usize,
    pub maxclients: usize,
    pub proto_max_bulk_len: u64,
    pub log_format: String,
    pub log_level: String,
    pub threads: usize,
    pub shutdown_timeout: Duration,
    pub ferrite_connections: usize,
    pub ferrite_cluster: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: "127.0.0.1:6380".into(),
            upstream_cluster: Vec::new(),
            ferrite: None,
            metrics_listen: None,
            requirepass: None,
            users: Vec::new(),
            upstream_user: None,
            upstream_password: None,
            ferrite_user: None,
            ferrite_password: None,
            admin_password: None,
            connect_timeout: Duration::from_millis(2000),
            request_timeout: Duration::from_millis(10_000),
            pause_timeout: Duration::from_millis(5000),
            pause_max_queued: 10_000,
            maxclients: 10_000,
            proto_max_bulk_len: 512 * 1024 * 1024,
            log_format: "text".into(),
            log_level: "info".into(),
            threads: 0,
            shutdown_timeout: Duration::from_millis(10_000),
            ferrite_connections: 1,
            ferrite_cluster: false,
        }
    }
}

fn parse_users(v: &[String]) -> Result<Vec<(String, String)>, String> {
    v.iter()
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.split_once(':')
                .map(|(u, p)| (u.to_string(), p.to_string()))
                .ok_or_else(|| format!("user {s:?} must be name:password"))
        })
        .collect()
}

impl Config {
    /// Merge defaults, the TOML file, environment and flags (clap already folded env into `cli`).
    pub fn load(cli: Cli) -> Result<Config, String> {
        let mut c = Config::default();
        if let Some(path) = &cli.config {
            let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read config {path}: {e}"))?;
            let f: FileConfig = toml::from_str(&text).map_err(|e| format!("bad config {path}: {e}"))?;
            macro_rules! set {
                ($($name:ident),*) => { $( if let Some(v) = f.$name { c.$name = v; } )* };
            }
            set!(
                listen,
                upstream_cluster,
                maxclients,
                proto_max_bulk_len,
                log_format,
                log_level,
                threads,
                pause_max_queued,
                ferrite_connections,
                ferrite_cluster
            );
            macro_rules! set_opt {
                ($($name:ident),*) => { $( if f.$name.is_some() { c.$name = f.$name; } )* };
            }
            set_opt!(
                ferrite,
                metrics_listen,
                requirepass,
                upstream_user,
                upstream_password,
                ferrite_user,
                ferrite_password,
                admin_password
            );
            if let Some(u) = f.users {
                c.users = parse_users(&u)?;
            }
            macro_rules! set_ms {
                ($($name:ident => $field:ident),*) => { $( if let Some(v) = f.$name { c.$field = Duration::from_millis(v); } )* };
            }
            set_ms!(connect_timeout_ms => connect_timeout, request_timeout_ms => request_timeout,
                pause_timeout_ms => pause_timeout, shutdown_timeout_ms => shutdown_timeout);
        }
        macro_rules! cli_set {
            ($($name:ident),*) => { $( if let Some(v) = cli.$name { c.$name = v; } )* };
        }
        cli_set!(
            listen,
            maxclients,
            proto_max_bulk_len,
            log_format,
            log_level,
            threads,
            pause_max_queued,
            ferrite_connections
        );
        macro_rules! cli_opt {
            ($($name:ident),*) => { $( if cli.$name.is_some() { c.$name = cli.$name; } )* };
        }
        cli_opt!(
            ferrite,
            metrics_listen,
            requirepass,
            upstream_user,
            upstream_password,
            ferrite_user,
            ferrite_password,
            admin_password
        );
        if !cli.upstream_cluster.is_empty() {
            c.upstream_cluster = cli.upstream_cluster.into_iter().filter(|s| !s.is_empty()).collect();
        }
        if !cli.users.is_empty() {
            c.users = parse_users(&cli.users)?;
        }
        macro_rules! cli_ms {
            ($($name:ident => $field:ident),*) => { $( if let Some(v) = cli.$name { c.$field = Duration::from_millis(v); } )* };
        }
        cli_ms!(connect_timeout_ms => connect_timeout, request_timeout_ms => request_timeout,
            pause_timeout_ms => pause_timeout, shutdown_timeout_ms => shutdown_timeout);
        if c.threads == 0 {
            let cpus = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2);
            let embedded = c.upstream_cluster.is_empty() && c.ferrite.is_none();
            c.threads = if embedded { cpus } else { (cpus / 2).max(1) };
        }
        if cli.ferrite_cluster {
            c.ferrite_cluster = true;
        }
        if c.ferrite_cluster && c.ferrite.is_none() {
            return Err("--ferrite-cluster needs --ferrite <seed node>".into());
        }
        if !(1..=64).contains(&c.ferrite_connections) {
            return Err("ferrite-connections must be between 1 and 64".into());
        }
        if c.pause_timeout.is_zero() {
            return Err("pause-timeout-ms must be at least 1".into());
        }
        if !matches!(c.log_format.as_str(), "text" | "json") {
            return Err(format!("log-format must be text or json, not {:?}", c.log_format));
        }
        Ok(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_env_flag_precedence() {
        let dir = std::env::temp_dir().join(format!("ferrite-proxy-cfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("p.toml");
        std::fs::write(
            &f,
            "listen = \"127.0.0.1:7777\"\nupstream-cluster = [\"127.0.0.1:7000\", \"127.0.0.1:7001\"]\n\
             pause-timeout-ms = 1234\nusers = [\"a:b\"]\nadmin-password = \"x\"\n",
        )
        .unwrap();
        let cli = Cli::parse_from(["ferrite-proxy", "--config", f.to_str().unwrap(), "--listen", "127.0.0.1:8888"]);
        let c = Config::load(cli).unwrap();
        assert_eq!(c.listen, "127.0.0.1:8888");
        assert_eq!(c.upstream_cluster, vec!["127.0.0.1:7000", "127.0.0.1:7001"]);
        assert_eq!(c.pause_timeout, Duration::from_millis(1234));
        assert_eq!(c.users, vec![("a".to_string(), "b".to_string())]);
        assert_eq!(c.admin_password.as_deref(), Some("x"));
        assert_eq!(c.pause_max_queued, 10_000);
        std::fs::write(&f, "nonsense = 1\n").unwrap();
        let cli = Cli::parse_from(["ferrite-proxy", "--config", f.to_str().unwrap()]);
        assert!(Config::load(cli).unwrap_err().contains("unknown field"));
        let cli = Cli::parse_from(["ferrite-proxy", "--user", "nocolon"]);
        assert!(Config::load(cli).is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
