//! Prometheus metrics of the store (`ferrite --metrics-listen HOST:PORT`, `GET /metrics`).
//!
//! What it knows: every value is read at scrape time from what `INFO everything` reports (the server's
//! counters in `stats.rs`, clients, memory, persistence, keyspace, and the commandstats/errorstats
//! sections), so a scrape costs one INFO and serving requests costs nothing extra. Because the source is
//! the INFO text, metrics follow whatever the INFO sections report: the persistence fields are the idle
//! values of a server that never saved until persistence lands, and the per-command and per-error families
//! have no samples while those INFO sections are empty. Every family is always listed with its `# HELP` and
//! `# TYPE` lines, even without samples, so dashboards can be checked against a fresh server.
//!
//! What it does not know: histograms of command latency (INFO has no such data), replication, or anything
//! about the proxy and the migration tool (they export `ferrite_proxy_*` and `ferrite_migrate_*`).
//!
//! The HTTP side is deliberately minimal: `GET /metrics` (query string ignored) answers the text exposition
//! format 0.0.4, every other request answers 404; requests are size- and time-bounded, and at most
//! [`MAX_CONNS`] scrapes are served at once.

use crate::server::Server;
use prometheus::core::{Collector, Desc};
use prometheus::proto::{self, MetricFamily, MetricType};
use prometheus::{Encoder, Registry, TextEncoder};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// Scrapes served concurrently; more connections are closed at once.
pub const MAX_CONNS: usize = 16;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Counter,
    Gauge,
}

/// How a single INFO field becomes a sample.
#[derive(Clone, Copy)]
enum Conv {
    /// The number as is.
    Num,
    /// `ok` -> 1, anything else -> 0.
    Ok,
}

/// A family whose one unlabelled sample is one INFO field.
struct Field {
    name: &'static str,
    kind: Kind,
    help: &'static str,
    info: &'static str,
    conv: Conv,
}

macro_rules! f {
    ($name:literal, $kind:ident, $info:literal, $conv:ident, $help:literal) => {
        Field { name: $name, kind: Kind::$kind, help: $help, info: $info, conv: Conv::$conv }
    };
}

/// Every single-field family, in exposition order.
static FIELDS: &[Field] = &[
    f!("ferrite_uptime_seconds", Gauge, "uptime_in_seconds", Num, "Seconds since the server started"),
    f!("ferrite_connected_clients", Gauge, "connected_clients", Num, "Client connections open now"),
    f!("ferrite_blocked_clients", Gauge, "blocked_clients", Num, "Clients blocked on keys (BLPOP, XREAD BLOCK, ...)"),
    f!("ferrite_max_clients", Gauge, "maxclients", Num, "The maxclients setting"),
    f!("ferrite_connections_received_total", Counter, "total_connections_received", Num, "Client connections accepted"),
    f!(
        "ferrite_rejected_connections_total",
        Counter,
        "rejected_connections",
        Num,
        "Client connections refused because of maxclients"
    ),
    f!("ferrite_commands_processed_total", Counter, "total_commands_processed", Num, "Commands executed"),
    f!("ferrite_error_replies_total", Counter, "total_error_replies", Num, "Error replies sent to clients"),
    f!("ferrite_net_input_bytes_total", Counter, "total_net_input_bytes", Num, "Bytes read from clients"),
    f!("ferrite_net_output_bytes_total", Counter, "total_net_output_bytes", Num, "Bytes written to clients"),
    f!("ferrite_keyspace_hits_total", Counter, "keyspace_hits", Num, "Key lookups by read commands that found the key"),
    f!(
        "ferrite_keyspace_misses_total",
        Counter,
        "keyspace_misses",
        Num,
        "Key lookups by read commands that did not find the key"
    ),
    f!("ferrite_expired_keys_total", Counter, "expired_keys", Num, "Keys deleted because their TTL passed"),
    f!("ferrite_evicted_keys_total", Counter, "evicted_keys", Num, "Keys evicted because of maxmemory"),
    f!("ferrite_pubsub_channels", Gauge, "pubsub_channels", Num, "Pub/sub channels with subscribers"),
    f!("ferrite_pubsub_patterns", Gauge, "pubsub_patterns", Num, "Pub/sub patterns with subscribers"),
    f!("ferrite_pubsub_shard_channels", Gauge, "pubsubshard_channels", Num, "Shard channels with subscribers"),
    f!("ferrite_memory_used_bytes", Gauge, "used_memory", Num, "Bytes allocated by the server (INFO used_memory)"),
    f!("ferrite_memory_rss_bytes", Gauge, "used_memory_rss", Num, "Resident set size of the process"),
    f!("ferrite_memory_peak_bytes", Gauge, "used_memory_peak", Num, "Highest used_memory seen"),
    f!("ferrite_memory_max_bytes", Gauge, "maxmemory", Num, "The maxmemory setting (0 = no limit)"),
    f!("ferrite_memory_system_bytes", Gauge, "total_system_memory", Num, "Memory of the machine"),
    f!("ferrite_memory_fragmentation_ratio", Gauge, "mem_fragmentation_ratio", Num, "RSS divided by used_memory"),
    f!("ferrite_cpu_user_seconds_total", Counter, "used_cpu_user", Num, "User CPU time of the process"),
    f!("ferrite_cpu_sys_seconds_total", Counter, "used_cpu_sys", Num, "System CPU time of the process"),
    f!("ferrite_loading", Gauge, "loading", Num, "1 while a data file is being loaded"),
    f!(
        "ferrite_rdb_changes_since_last_save",
        Gauge,
        "rdb_changes_since_last_save",
        Num,
        "Writes since the last successful save"
    ),
    f!("ferrite_rdb_bgsave_in_progress", Gauge, "rdb_bgsave_in_progress", Num, "1 while a background save runs"),
    f!(
        "ferrite_rdb_last_save_timestamp_seconds",
        Gauge,
        "rdb_last_save_time",
        Num,
        "Unix time of the last successful save (start time if none)"
    ),
    f!(
        "ferrite_rdb_last_bgsave_ok",
        Gauge,
        "rdb_last_bgsave_status",
        Ok,
        "1 if the last background save succeeded (or none ran), 0 if it failed"
    ),
    f!(
        "ferrite_rdb_last_bgsave_duration_seconds",
        Gauge,
        "rdb_last_bgsave_time_sec",
        Num,
        "Duration of the last background save (-1 if none)"
    ),
    f!("ferrite_rdb_saves_total", Counter, "rdb_saves", Num, "Successful RDB saves"),
    f!("ferrite_aof_enabled", Gauge, "aof_enabled", Num, "1 if appendonly is on"),
    f!("ferrite_aof_rewrite_in_progress", Gauge, "aof_rewrite_in_progress", Num, "1 while an AOF rewrite runs"),
    f!(
        "ferrite_aof_last_bgrewrite_ok",
        Gauge,
        "aof_last_bgrewrite_status",
        Ok,
        "1 if the last AOF rewrite succeeded (or none ran), 0 if it failed"
    ),
    f!(
        "ferrite_aof_last_write_ok",
        Gauge,
        "aof_last_write_status",
        Ok,
        "1 if the last AOF write succeeded (or none ran), 0 if it failed"
    ),
    f!("ferrite_aof_rewrites_total", Counter, "aof_rewrites", Num, "Completed AOF rewrites"),
];

/// Families with labels, built from the keyspace, commandstats and errorstats sections.
struct Labelled {
    name: &'static str,
    kind: Kind,
    help: &'static str,
    labels: &'static [&'static str],
}

static LABELLED: &[Labelled] = &[
    Labelled {
        name: "ferrite_build_info",
        kind: Kind::Gauge,
        help: "Always 1; the labels give the Ferrite version and the Redis version it is compatible with",
        labels: &["version", "redis_version"],
    },
    Labelled {
        name: "ferrite_db_keys",
        kind: Kind::Gauge,
        help: "Keys per database (non-empty ones)",
        labels: &["db"],
    },
    Labelled {
        name: "ferrite_db_expiring_keys",
        kind: Kind::Gauge,
        help: "Keys with a TTL per database (non-empty ones)",
        labels: &["db"],
    },
    Labelled {
        name: "ferrite_command_calls_total",
        kind: Kind::Counter,
        help: "Calls per command (INFO commandstats)",
        labels: &["command"],
    },
    Labelled {
        name: "ferrite_command_duration_seconds_total",
        kind: Kind::Counter,
        help: "Time spent executing each command (INFO commandstats usec)",
        labels: &["command"],
    },
    Labelled {
        name: "ferrite_command_failed_calls_total",
        kind: Kind::Counter,
        help: "Calls per command that returned an error while executing (INFO commandstats failed_calls)",
        labels: &["command"],
    },
    Labelled {
        name: "ferrite_command_rejected_calls_total",
        kind: Kind::Counter,
        help: "Calls per command refused before executing: arity, ACL, OOM, ... (INFO commandstats rejected_calls)",
        labels: &["command"],
    },
    Labelled {
        name: "ferrite_errors_total",
        kind: Kind::Counter,
        help: "Error replies per error code (INFO errorstats)",
        labels: &["error"],
    },
];

/// Every family name the store exports.
pub fn family_names() -> Vec<&'static str> {
    FIELDS.iter().map(|f| f.name).chain(LABELLED.iter().map(|l| l.name)).collect()
}

/// The collector: builds every family from one INFO text at scrape time.
struct StoreCollector {
    srv: Arc<Server>,
    descs: Vec<Desc>,
}

impl StoreCollector {
    fn new(srv: Arc<Server>) -> StoreCollector {
        let mut descs = Vec::new();
        for f in FIELDS {
            descs.push(Desc::new(f.name.into(), f.help.into(), vec![], HashMap::new()).expect("valid metric name"));
        }
        for l in LABELLED {
            let labels = l.labels.iter().map(|s| s.to_string()).collect();
            descs.push(Desc::new(l.name.into(), l.help.into(), labels, HashMap::new()).expect("valid metric name"));
        }
        StoreCollector { srv, descs }
    }
}

fn family(name: &str, help: &str, kind: Kind, metrics: Vec<proto::Metric>) -> MetricFamily {
    let mut mf = MetricFamily::default();
    mf.set_name(name.to_string());
    mf.set_help(help.to_string());
    mf.set_field_type(match kind {
        Kind::Counter => MetricType::COUNTER,
        Kind::Gauge => MetricType::GAUGE,
    });
    mf.set_metric(metrics);
    mf
}

fn sample(kind: Kind, labels: &[(&str, &str)], v: f64) -> proto::Metric {
    let mut m = proto::Metric::default();
    m.set_label(
        labels
            .iter()
            .map(|(k, val)| {
                let mut p = proto::LabelPair::default();
                p.set_name(k.to_string());
                p.set_value(val.to_string());
                p
            })
            .collect(),
    );
    match kind {
        Kind::Counter => {
            let mut c = proto::Counter::default();
            c.set_value(v);
            m.set_counter(c);
        }
        Kind::Gauge => {
            let mut g = proto::Gauge::default();
            g.set_value(v);
            m.set_gauge(g);
        }
    }
    m
}

/// `a=1,b=2` -> value of `key`.
fn sub_field(list: &str, key: &str) -> Option<f64> {
    list.split(',').find_map(|kv| kv.split_once('=').filter(|(k, _)| *k == key).and_then(|(_, v)| v.parse().ok()))
}

/// What one INFO text says, split into plain fields and the labelled sections.
#[derive(Default)]
struct Parsed<'a> {
    fields: HashMap<&'a str, &'a str>,
    /// (db number, keys, expires)
    dbs: Vec<(&'a str, f64, f64)>,
    /// (command, "calls=..,usec=..,...")
    cmds: Vec<(&'a str, &'a str)>,
    /// (error code, count)
    errors: Vec<(&'a str, f64)>,
}

fn parse(info: &str) -> Parsed<'_> {
    let mut p = Parsed::default();
    for line in info.lines() {
        let line = line.trim_end_matches('\r');
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        let Some((k, v)) = line.split_once(':') else { continue };
        if let Some(cmd) = k.strip_prefix("cmdstat_") {
            p.cmds.push((cmd, v));
        } else if let Some(code) = k.strip_prefix("errorstat_") {
            if let Some(n) = sub_field(v, "count") {
                p.errors.push((code, n));
            }
        } else if let Some(db) = k.strip_prefix("db").filter(|d| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit()))
        {
            if let (Some(keys), Some(exp)) = (sub_field(v, "keys"), sub_field(v, "expires")) {
                p.dbs.push((db, keys, exp));
            }
        } else {
            p.fields.insert(k, v);
        }
    }
    p
}

/// Every family built from one INFO text (families without samples included, with no metrics).
fn families(info: &str) -> Vec<MetricFamily> {
    let p = parse(info);
    let mut out = Vec::with_capacity(FIELDS.len() + LABELLED.len());
    for f in FIELDS {
        let v = p.fields.get(f.info).and_then(|raw| match f.conv {
            Conv::Num => raw.trim().parse::<f64>().ok(),
            Conv::Ok => Some(if raw.trim() == "ok" { 1.0 } else { 0.0 }),
        });
        let metrics = v.map(|v| vec![sample(f.kind, &[], v)]).unwrap_or_default();
        out.push(family(f.name, f.help, f.kind, metrics));
    }
    for l in LABELLED {
        let metrics: Vec<proto::Metric> = match l.name {
            "ferrite_build_info" => {
                let ver = p.fields.get("ferrite_version").copied().unwrap_or(env!("CARGO_PKG_VERSION"));
                let redis = p.fields.get("redis_version").copied().unwrap_or("");
                vec![sample(l.kind, &[("version", ver), ("redis_version", redis)], 1.0)]
            }
            "ferrite_db_keys" => p.dbs.iter().map(|(db, k, _)| sample(l.kind, &[("db", db)], *k)).collect(),
            "ferrite_db_expiring_keys" => p.dbs.iter().map(|(db, _, e)| sample(l.kind, &[("db", db)], *e)).collect(),
            "ferrite_errors_total" => p.errors.iter().map(|(c, n)| sample(l.kind, &[("error", c)], *n)).collect(),
            name => {
                let (key, divisor) = match name {
                    "ferrite_command_calls_total" => ("calls", 1.0),
                    "ferrite_command_duration_seconds_total" => ("usec", 1e6),
                    "ferrite_command_failed_calls_total" => ("failed_calls", 1.0),
                    _ => ("rejected_calls", 1.0),
                };
                p.cmds
                    .iter()
                    .filter_map(|(cmd, list)| {
                        sub_field(list, key).map(|v| sample(l.kind, &[("command", cmd)], v / divisor))
                    })
                    .collect()
            }
        };
        out.push(family(l.name, l.help, l.kind, metrics));
    }
    out
}

impl Collector for StoreCollector {
    fn desc(&self) -> Vec<&Desc> {
        self.descs.iter().collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let info = crate::cmd::info::info_string(&self.srv, &[true; 13]);
        families(&info)
    }
}

/// The store's one registry and the families it holds.
pub struct Metrics {
    pub registry: Registry,
    /// (name, help, type) of every family, for the `# HELP` lines of families without samples.
    heads: Vec<(&'static str, &'static str, &'static str)>,
}

impl Metrics {
    pub fn new(srv: Arc<Server>) -> Arc<Metrics> {
        let registry = Registry::new();
        registry.register(Box::new(StoreCollector::new(srv))).expect("register the store collector");
        let kind = |k: Kind| if k == Kind::Counter { "counter" } else { "gauge" };
        let heads = FIELDS
            .iter()
            .map(|f| (f.name, f.help, kind(f.kind)))
            .chain(LABELLED.iter().map(|l| (l.name, l.help, kind(l.kind))))
            .collect();
        Arc::new(Metrics { registry, heads })
    }

    /// The text exposition (0.0.4): every family with samples, then `# HELP`/`# TYPE` of the others.
    pub fn render(&self) -> Vec<u8> {
        let gathered = self.registry.gather();
        let mut out = Vec::with_capacity(8192);
        if let Err(e) = TextEncoder::new().encode(&gathered, &mut out) {
            out.clear();
            out.extend_from_slice(format!("# ferrite: cannot encode metrics: {e}\n").as_bytes());
        }
        let present: HashSet<&str> = gathered.iter().map(|mf| mf.get_name()).collect();
        for (name, help, kind) in &self.heads {
            if !present.contains(name) {
                out.extend_from_slice(format!("# HELP {name} {help}\n# TYPE {name} {kind}\n").as_bytes());
            }
        }
        out
    }
}

/// What to answer to one request head.
fn respond(head: &[u8], m: &Metrics) -> Vec<u8> {
    let line = head.split(|&c| c == b'\n').next().unwrap_or(b"");
    let line = String::from_utf8_lossy(line);
    let mut parts = line.split_whitespace();
    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let (status, ctype, body) = if method == "GET" && (path == "/metrics" || path.starts_with("/metrics?")) {
        ("200 OK", "text/plain; version=0.0.4; charset=utf-8", m.render())
    } else {
        ("404 Not Found", "text/plain", b"not found\n".to_vec())
    };
    let mut r = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    r.extend_from_slice(&body);
    r
}

/// Serve `GET /metrics` on `listener` until the server shuts down.
pub async fn serve(listener: TcpListener, srv: Arc<Server>, metrics: Arc<Metrics>) {
    let mut shutdown = srv.shutdown_tx.subscribe();
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNS));
    loop {
        let accepted = tokio::select! {
            r = listener.accept() => r,
            _ = shutdown.changed() => return,
        };
        let mut sock = match accepted {
            Ok((s, _)) => s,
            Err(_) => {
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            continue; // too many scrapes at once: drop this one
        };
        let m = metrics.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let mut head = Vec::with_capacity(512);
            let read = tokio::time::timeout(Duration::from_secs(5), async {
                let mut tmp = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    if head.len() > 16 * 1024 {
                        return false;
                    }
                    match sock.read(&mut tmp).await {
                        Ok(0) | Err(_) => return false,
                        Ok(n) => head.extend_from_slice(&tmp[..n]),
                    }
                }
                true
            })
            .await;
            if !matches!(read, Ok(true)) {
                return;
            }
            let reply = respond(&head, &m);
            let _ = tokio::time::timeout(Duration::from_secs(10), async {
                let _ = sock.write_all(&reply).await;
                let _ = sock.shutdown().await;
            })
            .await;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_info_fields_and_sections() {
        let info = "# Server\r\nuptime_in_seconds:12\r\nferrite_version:9.9.9\r\nredis_version:7.0.15\r\n\
                    # Persistence\r\nrdb_last_bgsave_status:err\r\nrdb_last_bgsave_time_sec:-1\r\n\
                    # Commandstats\r\ncmdstat_get:calls=3,usec=1500,usec_per_call=500.00,rejected_calls=1,failed_calls=2\r\n\
                    cmdstat_client|list:calls=1,usec=10,usec_per_call=10.00,rejected_calls=0,failed_calls=0\r\n\
                    # Errorstats\r\nerrorstat_WRONGTYPE:count=4\r\n\
                    # Keyspace\r\ndb0:keys=5,expires=2,avg_ttl=0\r\ndb3:keys=1,expires=0,avg_ttl=0\r\n";
        let fams = families(info);
        let get = |n: &str| fams.iter().find(|f| f.get_name() == n).expect(n);
        assert_eq!(get("ferrite_uptime_seconds").get_metric()[0].get_gauge().get_value(), 12.0);
        assert_eq!(get("ferrite_rdb_last_bgsave_ok").get_metric()[0].get_gauge().get_value(), 0.0);
        assert_eq!(get("ferrite_rdb_last_bgsave_duration_seconds").get_metric()[0].get_gauge().get_value(), -1.0);
        // Field absent from INFO: family without samples.
        assert!(get("ferrite_connected_clients").get_metric().is_empty());
        let calls = get("ferrite_command_calls_total").get_metric();
        assert_eq!(calls.len(), 2);
        assert_eq!(calls[0].get_label()[0].get_value(), "get");
        assert_eq!(calls[0].get_counter().get_value(), 3.0);
        assert_eq!(calls[1].get_label()[0].get_value(), "client|list");
        let usec = get("ferrite_command_duration_seconds_total").get_metric();
        assert!((usec[0].get_counter().get_value() - 0.0015).abs() < 1e-12);
        assert_eq!(get("ferrite_command_failed_calls_total").get_metric()[0].get_counter().get_value(), 2.0);
        assert_eq!(get("ferrite_command_rejected_calls_total").get_metric()[0].get_counter().get_value(), 1.0);
        assert_eq!(get("ferrite_errors_total").get_metric()[0].get_counter().get_value(), 4.0);
        let keys = get("ferrite_db_keys").get_metric();
        assert_eq!(keys.len(), 2);
        assert_eq!(keys[1].get_label()[0].get_value(), "3");
        assert_eq!(get("ferrite_db_expiring_keys").get_metric()[0].get_gauge().get_value(), 2.0);
        let bi = &get("ferrite_build_info").get_metric()[0];
        assert_eq!(bi.get_label()[0].get_value(), "9.9.9");
    }

    #[test]
    fn garbage_info_never_panics() {
        for s in ["", ":", "db:keys=1", "dbx:keys=a", "cmdstat_:", "errorstat_X:count=", "a:b:c\r\n#\r\n"] {
            let _ = families(s);
        }
    }

    #[test]
    fn family_names_are_unique_and_prefixed() {
        let names = family_names();
        let set: HashSet<_> = names.iter().collect();
        assert_eq!(set.len(), names.len());
        assert!(names.iter().all(|n| n.starts_with("ferrite_") && !n.starts_with("ferrite_proxy_")));
    }
}
