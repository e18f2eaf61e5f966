//! Command line, environment and TOML configuration.
//! Precedence: flag > environment variable > `--config` file > default.

use crate::progress::Mode;
use crate::resp::Auth;
use crate::slots::SlotSet;
use crate::{Error, Result};
use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;
use std::time::Duration;

#[derive(Parser, Debug)]
#[command(
    name = "ferrite-migrate",
    version,
    about = "Live, slot-by-slot migration from a Redis Cluster to Ferrite through ferrite-proxy",
    long_about = "Live, slot-by-slot migration from a Redis Cluster to Ferrite through ferrite-proxy.\n\n\
Without a subcommand it runs the whole migration (same as `run`) and exits 0 only when every slot in scope \
is owned by Ferrite at every proxy and verify found no difference.\n\n\
Every option can also be set with the environment variable shown, or as a key of the TOML file given with \
--config (same name as the long flag, e.g. `to = \"127.0.0.1:6379\"`, `proxy = [\"127.0.0.1:6380\"]`)."
)]
pub struct Cli {
    #[command(subcommand)]
    pub cmd: Option<Sub>,
    #[command(flatten)]
    pub opts: Opts,
}

#[derive(Subcommand, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sub {
    /// Show the source topology, key counts and sizes per slot, big keys and unsupported (module) types.
    Plan,
    /// Run the migration to completion (copy, cutover through every proxy, verify). Refuses to start over an
    /// unfinished state file unless --force.
    Run,
    /// Show the progress recorded in the state file (and the proxies' slot tables when reachable).
    Status,
    /// Compare source and target slot by slot (digests first, then key by key where they differ).
    Verify,
    /// Flip slots (default: every flipped slot of the state file, or --slots) back to the source.
    Rollback,
    /// Continue a run from its state file after a crash or Ctrl-C.
    Resume,
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Method {
    /// Act as a replica of every source master (PSYNC, RDB, command stream).
    Replication,
    /// CLUSTER GETKEYSINSLOT + DUMP/PTTL + RESTORE, re-copying keys the proxies saw written.
    Scan,
}

impl Method {
    pub fn name(self) -> &'static str {
        match self {
            Method::Replication => "replication",
            Method::Scan => "scan",
        }
    }
}

#[derive(Args, Debug, Clone, Default)]
pub struct Opts {
    /// TOML configuration file.
    #[arg(long, global = true, env = "FERRITE_MIGRATE_CONFIG")]
    pub config: Option<PathBuf>,
    /// A node of the source Redis Cluster (HOST:PORT; repeat or comma-separate for more seeds).
    #[arg(long = "from-redis-cluster", global = true, env = "FERRITE_MIGRATE_FROM", value_delimiter = ',')]
    pub from: Vec<String>,
    /// The Ferrite server (HOST:PORT).
    #[arg(long, global = true, env = "FERRITE_MIGRATE_TO")]
    pub to: Option<String>,
    /// A ferrite-proxy admin address (HOST:PORT); repeat for every proxy in front of the cluster.
    #[arg(long = "proxy", global = true, env = "FERRITE_MIGRATE_PROXY", value_delimiter = ',')]
    pub proxy: Vec<String>,
    /// Slots in scope, e.g. `0-5460,6000` (default: every slot).
    #[arg(long, global = true, env = "FERRITE_MIGRATE_SLOTS")]
    pub slots: Option<String>,
    /// How data moves.
    #[arg(long, global = true, env = "FERRITE_MIGRATE_METHOD", value_enum)]
    pub method: Option<Method>,
    /// Checkpoint file [default: ./ferrite-migrate.state.json].
    #[arg(long, global = true, env = "FERRITE_MIGRATE_STATE")]
    pub state: Option<PathBuf>,
    /// Username for the source cluster (ACL).
    #[arg(long, global = true, env = "FERRITE_MIGRATE_SOURCE_USER")]
    pub source_user: Option<String>,
    /// Password for the source cluster.
    #[arg(long, global = true, env = "FERRITE_MIGRATE_SOURCE_PASSWORD", hide_env_values = true)]
    pub source_password: Option<String>,
    /// Username for Ferrite.
    #[arg(long, global = true, env = "FERRITE_MIGRATE_TARGET_USER")]
    pub target_user: Option<String>,
    /// Password for Ferrite.
    #[arg(long, global = true, env = "FERRITE_MIGRATE_TARGET_PASSWORD", hide_env_values = true)]
    pub target_password: Option<String>,
    /// Admin password of the proxies (FERRITE.PROXY AUTH).
    #[arg(long, global = true, env = "FERRITE_MIGRATE_PROXY_ADMIN_PASSWORD", hide_env_values = true)]
    pub proxy_admin_password: Option<String>,
    /// Connect / read / write timeout in milliseconds [default: 10000].
    #[arg(long, global = true, env = "FERRITE_MIGRATE_TIMEOUT_MS")]
    pub timeout_ms: Option<u64>,
    /// How long to keep retrying the source through a failover, seconds [default: 60].
    #[arg(long, global = true, env = "FERRITE_MIGRATE_RETRY_FOR_S")]
    pub retry_for_s: Option<u64>,
    /// Copy rate limit in keys per second, 0 = unlimited [default: 0].
    #[arg(long, global = true, env = "FERRITE_MIGRATE_MAX_KEYS_PER_SEC")]
    pub max_keys_per_sec: Option<u64>,
    /// Keys per DUMP/RESTORE batch [default: 200].
    #[arg(long, global = true, env = "FERRITE_MIGRATE_BATCH_KEYS")]
    pub batch_keys: Option<usize>,
    /// Slots per cutover step (one pause covers this many consecutive slots) [default: 256].
    #[arg(long, global = true, env = "FERRITE_MIGRATE_CUTOVER_SLOTS")]
    pub cutover_slots: Option<usize>,
    /// Longest wait for Ferrite to catch up during a pause, ms; the slots are resumed on the source if it
    /// is exceeded, and retried [default: 2000].
    #[arg(long, global = true, env = "FERRITE_MIGRATE_DRAIN_TIMEOUT_MS")]
    pub drain_timeout_ms: Option<u64>,
    /// TTL tolerance of verify, ms [default: 2000].
    #[arg(long, global = true, env = "FERRITE_MIGRATE_TTL_TOLERANCE_MS")]
    pub ttl_tolerance_ms: Option<i64>,
    /// Serve Prometheus metrics on this address (HOST:PORT, path /metrics).
    #[arg(long, global = true, env = "FERRITE_MIGRATE_METRICS_LISTEN")]
    pub metrics_listen: Option<String>,
    /// `plan`: keys at least this big (MEMORY USAGE bytes) are listed as big keys [default: 10485760].
    #[arg(long, global = true, env = "FERRITE_MIGRATE_BIG_KEY_BYTES")]
    pub big_key_bytes: Option<u64>,
    /// `plan`: measure at most this many keys per slot (0 = every key) [default: 0].
    #[arg(long, global = true, env = "FERRITE_MIGRATE_SAMPLE")]
    pub sample: Option<u64>,
    /// Port announced to source masters with REPLCONF listening-port [default: 0].
    #[arg(long, global = true, env = "FERRITE_MIGRATE_REPLICA_PORT")]
    pub replica_port: Option<u16>,
    /// Replication: ask the source masters for a disk-based full sync (the tool does not announce `capa eof`):
    /// the transfer starts at once instead of after the master's repl-diskless-sync-delay (5 s by default),
    /// but each master first writes its RDB file to its own disk.
    #[arg(long, global = true, env = "FERRITE_MIGRATE_DISK_SYNC")]
    pub disk_sync: bool,
    /// Replication: leave the source masters' `rdbcompression` alone. By default the tool sets it to `no` for the
    /// moment the master forks its full-sync child and puts the old value back right after (the child keeps
    /// the setting it was forked with): LZF-compressing the RDB was most of the masters' CPU during a sync, for
    /// payloads that cross a local network once. Use this on a slow link with compressible data.
    #[arg(long, global = true, env = "FERRITE_MIGRATE_KEEP_RDB_COMPRESSION")]
    pub keep_rdb_compression: bool,
    /// No progress output (errors and the final result only).
    #[arg(long, global = true, env = "FERRITE_MIGRATE_QUIET")]
    pub quiet: bool,
    /// Machine-readable output: JSON result on stdout, JSON progress lines on stderr.
    #[arg(long, global = true, env = "FERRITE_MIGRATE_JSON")]
    pub json: bool,
    /// `run`: skip the final verify.
    #[arg(long, global = true, env = "FERRITE_MIGRATE_NO_VERIFY")]
    pub no_verify: bool,
    /// `run`: after a successful verify, turn the mirror off (end of the rollback window).
    #[arg(long, global = true, env = "FERRITE_MIGRATE_DROP_MIRROR")]
    pub drop_mirror: bool,
    /// `run`: start over even if the state file holds an unfinished run.
    #[arg(long, global = true, env = "FERRITE_MIGRATE_FORCE")]
    pub force: bool,
}

/// The resolved configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub from: Vec<String>,
    pub to: Option<String>,
    pub proxies: Vec<String>,
    pub slots: Option<SlotSet>,
    pub method: Method,
    pub state: PathBuf,
    pub source_auth: Auth,
    pub target_auth: Auth,
    pub proxy_admin_password: Option<String>,
    pub timeout: Duration,
    pub retry_for: Duration,
    pub max_keys_per_sec: u64,
    pub batch_keys: usize,
    pub cutover_slots: usize,
    pub drain_timeout: Duration,
    pub ttl_tolerance_ms: i64,
    pub metrics_listen: Option<String>,
    pub big_key_bytes: u64,
    pub sample: u64,
    pub replica_port: u16,
    pub mode: Mode,
    pub json: bool,
    pub no_verify: bool,
    pub disk_sync: bool,
    pub keep_rdb_compression: bool,
    pub drop_mirror: bool,
    pub force: bool,
}

fn file_str(t: &toml::Table, k: &str) -> Option<String> {
    match t.get(k)? {
        toml::Value::String(s) => Some(s.clone()),
        toml::Value::Integer(i) => Some(i.to_string()),
        _ => None,
    }
}
fn file_list(t: &toml::Table, k: &str) -> Vec<String> {
    match t.get(k) {
        Some(toml::Value::Array(a)) => a.iter().filter_map(|v| v.as_str().map(str::to_string)).collect(),
        Some(toml::Value::String(s)) => s.split(',').map(|x| x.trim().to_string()).filter(|x| !x.is_empty()).collect(),
        _ => Vec::new(),
    }
}
fn file_int(t: &toml::Table, k: &str) -> Result<Option<i64>> {
    match t.get(k) {
        None => Ok(None),
        Some(toml::Value::Integer(i)) => Ok(Some(*i)),
        Some(toml::Value::String(s)) => {
            s.parse().map(Some).map_err(|_| Error::Config(format!("config key {k}: not an integer")))
        }
        Some(_) => Err(Error::Config(format!("config key {k}: not an integer"))),
    }
}
fn file_bool(t: &toml::Table, k: &str) -> bool {
    match t.get(k) {
        Some(toml::Value::Boolean(b)) => *b,
        Some(toml::Value::String(s)) => matches!(s.as_str(), "yes" | "true" | "1"),
        _ => false,
    }
}

const KNOWN: &[&str] = &[
    "from-redis-cluster",
    "to",
    "proxy",
    "slots",
    "method",
    "state",
    "source-user",
    "source-password",
    "target-user",
    "target-password",
    "proxy-admin-password",
    "timeout-ms",
    "retry-for-s",
    "max-keys-per-sec",
    "batch-keys",
    "cutover-slots",
    "drain-timeout-ms",
    "ttl-tolerance-ms",
    "metrics-listen",
    "big-key-bytes",
    "sample",
    "replica-port",
    "disk-sync",
    "keep-rdb-compression",
    "quiet",
    "json",
    "no-verify",
    "drop-mirror",
    "force",
];

impl Opts {
    /// Merge with the TOML file and defaults.
    pub fn resolve(&self) -> Result<Config> {
        let t: toml::Table = match &self.config {
            Some(p) => {
                let s = std::fs::read_to_string(p).map_err(|e| Error::Config(format!("--config {p:?}: {e}")))?;
                let t: toml::Table = s.parse().map_err(|e| Error::Config(format!("--config {p:?}: {e}")))?;
                for k in t.keys() {
                    if !KNOWN.contains(&k.as_str()) {
                        return Err(Error::Config(format!("--config {p:?}: unknown key {k:?}")));
                    }
                }
                t
            }
            None => toml::Table::new(),
        };
        let pick = |a: &Option<String>, k: &str| a.clone().or_else(|| file_str(&t, k));
        let int = |a: Option<i64>, k: &str, d: i64| -> Result<i64> {
            Ok(match a {
                Some(v) => v,
                None => file_int(&t, k)?.unwrap_or(d),
            })
        };
        let from = if self.from.is_empty() { file_list(&t, "from-redis-cluster") } else { self.from.clone() };
        let proxies = if self.proxy.is_empty() { file_list(&t, "proxy") } else { self.proxy.clone() };
        let slots = match pick(&self.slots, "slots") {
            Some(s) => Some(SlotSet::parse(&s)?),
            None => None,
        };
        let method = match self.method {
            Some(m) => m,
            None => match file_str(&t, "method").as_deref() {
                None | Some("replication") => Method::Replication,
                Some("scan") => Method::Scan,
                Some(o) => return Err(Error::Config(format!("method {o:?}: use replication or scan"))),
            },
        };
        let pos = |v: i64, name: &str| -> Result<u64> {
            if v < 0 {
                Err(Error::Config(format!("{name} must be >= 0")))
            } else {
                Ok(v as u64)
            }
        };
        let timeout_ms = pos(int(self.timeout_ms.map(|x| x as i64), "timeout-ms", 10_000)?, "timeout-ms")?.max(1);
        let quiet = self.quiet || file_bool(&t, "quiet");
        let json = self.json || file_bool(&t, "json");
        let replica_port = int(self.replica_port.map(i64::from), "replica-port", 0)?;
        if !(0..=65535).contains(&replica_port) {
            return Err(Error::Config("replica-port out of range".into()));
        }
        Ok(Config {
            from,
            to: pick(&self.to, "to"),
            proxies,
            slots,
            method,
            state: self
                .state
                .clone()
                .or_else(|| file_str(&t, "state").map(PathBuf::from))
                .unwrap_or_else(|| PathBuf::from("ferrite-migrate.state.json")),
            source_auth: Auth {
                user: pick(&self.source_user, "source-user"),
                pass: pick(&self.source_password, "source-password"),
            },
            target_auth: Auth {
                user: pick(&self.target_user, "target-user"),
                pass: pick(&self.target_password, "target-password"),
            },
            proxy_admin_password: pick(&self.proxy_admin_password, "proxy-admin-password"),
            timeout: Duration::from_millis(timeout_ms),
            retry_for: Duration::from_secs(pos(
                int(self.retry_for_s.map(|x| x as i64), "retry-for-s", 60)?,
                "retry-for-s",
            )?),
            max_keys_per_sec: pos(
                int(self.max_keys_per_sec.map(|x| x as i64), "max-keys-per-sec", 0)?,
                "max-keys-per-sec",
            )?,
            batch_keys: pos(int(self.batch_keys.map(|x| x as i64), "batch-keys", 200)?, "batch-keys")?.clamp(1, 100_000)
                as usize,
            cutover_slots: pos(int(self.cutover_slots.map(|x| x as i64), "cutover-slots", 256)?, "cutover-slots")?
                .clamp(1, 16384) as usize,
            drain_timeout: Duration::from_millis(pos(
                int(self.drain_timeout_ms.map(|x| x as i64), "drain-timeout-ms", 2000)?,
                "drain-timeout-ms",
            )?),
            ttl_tolerance_ms: int(self.ttl_tolerance_ms, "ttl-tolerance-ms", 2000)?.max(1),
            metrics_listen: pick(&self.metrics_listen, "metrics-listen"),
            big_key_bytes: pos(int(self.big_key_bytes.map(|x| x as i64), "big-key-bytes", 10 << 20)?, "big-key-bytes")?,
            sample: pos(int(self.sample.map(|x| x as i64), "sample", 0)?, "sample")?,
            replica_port: replica_port as u16,
            mode: if json {
                Mode::Json
            } else if quiet {
                Mode::Quiet
            } else {
                Mode::Bars
            },
            json,
            no_verify: self.no_verify || file_bool(&t, "no-verify"),
            disk_sync: self.disk_sync || file_bool(&t, "disk-sync"),
            keep_rdb_compression: self.keep_rdb_compression || file_bool(&t, "keep-rdb-compression"),
            drop_mirror: self.drop_mirror || file_bool(&t, "drop-mirror"),
            force: self.force || file_bool(&t, "force"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn toml_file_then_flags_win() {
        let dir = std::env::temp_dir().join(format!("ferrite-migrate-cfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("m.toml");
        std::fs::write(
            &f,
            "from-redis-cluster = [\"10.0.0.1:7000\"]\nto = \"10.0.0.9:6379\"\nproxy = \"a:1,b:2\"\n\
             method = \"scan\"\nslots = \"0-99\"\nmax-keys-per-sec = 500\nquiet = true\n",
        )
        .unwrap();
        let cli = Cli::parse_from(["ferrite-migrate", "--config", f.to_str().unwrap(), "--to", "127.0.0.1:1"]);
        let c = cli.opts.resolve().unwrap();
        assert_eq!(c.from, vec!["10.0.0.1:7000".to_string()]);
        assert_eq!(c.to.as_deref(), Some("127.0.0.1:1"));
        assert_eq!(c.proxies, vec!["a:1".to_string(), "b:2".to_string()]);
        assert_eq!(c.method, Method::Scan);
        assert_eq!(c.slots.as_ref().map(|s| s.len()), Some(100));
        assert_eq!(c.max_keys_per_sec, 500);
        assert_eq!(c.mode, Mode::Quiet);
        assert_eq!(c.state, PathBuf::from("ferrite-migrate.state.json"));
        std::fs::write(&f, "bogus = 1\n").unwrap();
        let cli = Cli::parse_from(["ferrite-migrate", "--config", f.to_str().unwrap()]);
        assert!(cli.opts.resolve().is_err());
        std::fs::write(&f, "method = \"teleport\"\n").unwrap();
        let cli = Cli::parse_from(["ferrite-migrate", "--config", f.to_str().unwrap()]);
        assert!(cli.opts.resolve().is_err());
        let _ = std::fs::remove_dir_all(&dir);
        let cli = Cli::parse_from(["ferrite-migrate", "plan", "--slots", "5-1"]);
        assert!(cli.opts.resolve().is_err());
        let cli = Cli::parse_from(["ferrite-migrate", "status", "--json"]);
        assert_eq!(cli.cmd, Some(Sub::Status));
        assert_eq!(cli.opts.resolve().unwrap().method, Method::Replication);
    }
}
