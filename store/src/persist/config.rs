//! Persistence settings: parsing (start-up flags, TOML file, CONFIG SET)
//! and the values CONFIG GET reports, with Redis 7.0's names and errors.

use std::path::PathBuf;

/// `appendfsync`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fsync {
    Always,
    EverySec,
    No,
}

impl Fsync {
    pub fn name(self) -> &'static str {
        match self {
            Fsync::Always => "always",
            Fsync::EverySec => "everysec",
            Fsync::No => "no",
        }
    }
}

#[derive(Clone, Debug)]
pub struct PersistConfig {
    /// Absolute directory of the RDB file and the AOF directory.
    pub dir: PathBuf,
    pub dbfilename: String,
    /// `save` rules: (seconds, changes).
    pub save: Vec<(u64, u64)>,
    pub appendonly: bool,
    pub appendfsync: Fsync,
    pub appendfilename: String,
    pub appenddirname: String,
    pub aof_load_truncated: bool,
    pub aof_use_rdb_preamble: bool,
    pub rdbcompression: bool,
    pub rdbchecksum: bool,
    pub auto_aof_rewrite_percentage: u64,
    pub auto_aof_rewrite_min_size: u64,
    pub stop_writes_on_bgsave_error: bool,
    pub aof_timestamp_enabled: bool,
}

impl Default for PersistConfig {
    /// Ferrite's defaults are Redis's, except `save`, which is empty: a
    /// server started without configuration never writes files by itself.
    fn default() -> Self {
        PersistConfig {
            dir: std::env::current_dir().unwrap_or_else(|_| PathBuf::from(".")),
            dbfilename: "dump.rdb".into(),
            save: Vec::new(),
            appendonly: false,
            appendfsync: Fsync::EverySec,
            appendfilename: "appendonly.aof".into(),
            appenddirname: "appendonlydir".into(),
            aof_load_truncated: true,
            aof_use_rdb_preamble: true,
            rdbcompression: true,
            rdbchecksum: true,
            auto_aof_rewrite_percentage: 100,
            auto_aof_rewrite_min_size: 64 * 1024 * 1024,
            stop_writes_on_bgsave_error: true,
            aof_timestamp_enabled: false,
        }
    }
}

/// The parameters this module owns, as CONFIG knows them.
pub const NAMES: &[&str] = &[
    "save",
    "appendonly",
    "appendfsync",
    "dir",
    "dbfilename",
    "appendfilename",
    "appenddirname",
    "aof-load-truncated",
    "aof-use-rdb-preamble",
    "rdbcompression",
    "rdbchecksum",
    "auto-aof-rewrite-percentage",
    "auto-aof-rewrite-min-size",
    "stop-writes-on-bgsave-error",
    "aof-timestamp-enabled",
];

fn yes_no(v: &str) -> Result<bool, String> {
    match v.to_ascii_lowercase().as_str() {
        "yes" => Ok(true),
        "no" => Ok(false),
        _ => Err("argument must be 'yes' or 'no'".into()),
    }
}

/// Redis's `save` syntax: pairs of "seconds changes", or "" for none.
pub fn parse_save(v: &str) -> Result<Vec<(u64, u64)>, String> {
    let parts: Vec<&str> = v.split_ascii_whitespace().collect();
    if !parts.len().is_multiple_of(2) {
        return Err("Invalid save parameters".into());
    }
    let mut out = Vec::new();
    for p in parts.chunks(2) {
        let s = p[0].parse::<u64>().map_err(|_| "Invalid save parameters".to_string())?;
        let c = p[1].parse::<u64>().map_err(|_| "Invalid save parameters".to_string())?;
        if s > i32::MAX as u64 || c > i32::MAX as u64 {
            return Err("Invalid save parameters".into());
        }
        out.push((s, c));
    }
    Ok(out)
}

fn parse_mem(v: &str) -> Option<u64> {
    crate::cmd::config::parse_mem(v.as_bytes()).and_then(|n| u64::try_from(n).ok())
}

impl PersistConfig {
    /// Build from (name, value) pairs given at start-up (later ones win).
    pub fn from_pairs(pairs: &[(String, String)]) -> Result<PersistConfig, String> {
        let mut c = PersistConfig::default();
        for (k, v) in pairs {
            c.set(k, v, true).map_err(|e| format!("{k}: {e}"))?;
        }
        Ok(c)
    }

    pub fn rdb_path(&self) -> PathBuf {
        self.dir.join(&self.dbfilename)
    }

    pub fn aof_dir(&self) -> PathBuf {
        self.dir.join(&self.appenddirname)
    }

    /// Validate and apply one setting. `startup`: immutable and protected
    /// settings may be set (as in redis.conf).
    pub fn set(&mut self, name: &str, v: &str, startup: bool) -> Result<(), String> {
        let name = name.to_ascii_lowercase();
        match name.as_str() {
            "save" => self.save = parse_save(v)?,
            "appendonly" => self.appendonly = yes_no(v)?,
            "appendfsync" => {
                self.appendfsync = match v.to_ascii_lowercase().as_str() {
                    "always" => Fsync::Always,
                    "everysec" => Fsync::EverySec,
                    "no" => Fsync::No,
                    _ => return Err("argument(s) must be one of the following: everysec, always, no".into()),
                }
            }
            "dir" | "dbfilename" if !startup => return Err("can't set protected config".into()),
            "appendfilename" | "appenddirname" if !startup => return Err("can't set immutable config".into()),
            "dir" => {
                let p = PathBuf::from(v);
                let p = std::fs::canonicalize(&p).map_err(|e| format!("can't use dir {v}: {e}"))?;
                if !p.is_dir() {
                    return Err(format!("{v} is not a directory"));
                }
                self.dir = p;
            }
            "dbfilename" | "appendfilename" | "appenddirname" => {
                if v.is_empty() || v.contains('/') || v == "." || v == ".." {
                    return Err(format!("{name} can't be a path, just a filename"));
                }
                match name.as_str() {
                    "dbfilename" => self.dbfilename = v.into(),
                    "appendfilename" => self.appendfilename = v.into(),
                    _ => self.appenddirname = v.into(),
                }
            }
            "aof-load-truncated" => self.aof_load_truncated = yes_no(v)?,
            "aof-use-rdb-preamble" => self.aof_use_rdb_preamble = yes_no(v)?,
            "rdbcompression" => self.rdbcompression = yes_no(v)?,
            "rdbchecksum" => self.rdbchecksum = yes_no(v)?,
            "stop-writes-on-bgsave-error" => self.stop_writes_on_bgsave_error = yes_no(v)?,
            "aof-timestamp-enabled" => {
                self.aof_timestamp_enabled = yes_no(v)?;
                super::aof::TIMESTAMPS.store(self.aof_timestamp_enabled, std::sync::atomic::Ordering::Relaxed);
            }
            "auto-aof-rewrite-percentage" => {
                self.auto_aof_rewrite_percentage = v
                    .parse::<u64>()
                    .ok()
                    .filter(|n| *n <= i32::MAX as u64)
                    .ok_or("argument must be between 0 and 2147483647 inclusive")?
            }
            "auto-aof-rewrite-min-size" => {
                self.auto_aof_rewrite_min_size = parse_mem(v).ok_or("argument must be a memory value")?
            }
            _ => return Err("unknown persistence setting".into()),
        }
        Ok(())
    }

    /// The value CONFIG GET shows.
    pub fn get(&self, name: &str) -> Option<String> {
        let b = |x: bool| if x { "yes" } else { "no" }.to_string();
        Some(match name {
            "save" => self.save.iter().map(|(s, c)| format!("{s} {c}")).collect::<Vec<_>>().join(" "),
            "appendonly" => b(self.appendonly),
            "appendfsync" => self.appendfsync.name().into(),
            "dir" => self.dir.display().to_string(),
            "dbfilename" => self.dbfilename.clone(),
            "appendfilename" => self.appendfilename.clone(),
            "appenddirname" => self.appenddirname.clone(),
            "aof-load-truncated" => b(self.aof_load_truncated),
            "aof-use-rdb-preamble" => b(self.aof_use_rdb_preamble),
            "rdbcompression" => b(self.rdbcompression),
            "rdbchecksum" => b(self.rdbchecksum),
            "stop-writes-on-bgsave-error" => b(self.stop_writes_on_bgsave_error),
            "aof-timestamp-enabled" => b(self.aof_timestamp_enabled),
            "auto-aof-rewrite-percentage" => self.auto_aof_rewrite_percentage.to_string(),
            "auto-aof-rewrite-min-size" => self.auto_aof_rewrite_min_size.to_string(),
            _ => return None,
        })
    }
}

/// CONFIG GET for a persistence parameter (None: not ours).
pub fn config_get(srv: &crate::server::Server, name: &str) -> Option<String> {
    srv.persist.cfg.lock().get(name)
}

/// CONFIG SET validation for a persistence parameter, without applying.
pub fn config_validate(srv: &crate::server::Server, name: &str, v: &[u8]) -> Result<(), String> {
    let v = std::str::from_utf8(v).map_err(|_| "argument must be valid text".to_string())?;
    let mut c = srv.persist.cfg.lock().clone();
    c.set(name, v, false)
}

/// CONFIG SET apply (already validated). `appendonly yes` starts the AOF
/// with a rewrite, `no` stops it, as Redis does.
pub fn config_apply(srv: &std::sync::Arc<crate::server::Server>, name: &str, v: &[u8]) {
    let v = String::from_utf8_lossy(v).into_owned();
    let (was, now) = {
        let mut c = srv.persist.cfg.lock();
        let was = c.appendonly;
        let _ = c.set(name, &v, false);
        (was, c.appendonly)
    };
    super::aof::refresh_policy(srv);
    if name.eq_ignore_ascii_case("appendonly") && was != now {
        if now {
            let enable = |srv: &std::sync::Arc<crate::server::Server>| {
                if let Err(e) = super::aof::start_at_runtime(srv) {
                    eprintln!("ferrite: could not enable the AOF: {e}");
                    srv.persist.cfg.lock().appendonly = false;
                }
            };
            if super::propagate::running_exclusive() {
                // Inside EXEC: the exclusive lock is ours until EXEC ends.
                eprintln!(
                    "ferrite: AOF was enabled during a transaction. An AOF background was scheduled to start when \
                     possible."
                );
                let srv = srv.clone();
                std::thread::spawn(move || enable(&srv));
            } else {
                enable(srv);
            }
        } else {
            super::aof::stop(srv);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn save_rules_parse() {
        assert_eq!(parse_save("3600 1 300 100 60 10000").unwrap(), vec![(3600, 1), (300, 100), (60, 10000)]);
        assert!(parse_save("").unwrap().is_empty());
        assert!(parse_save("1 2 3").is_err());
        assert!(parse_save("x 2").is_err());
        assert!(parse_save("-1 2").is_err());
    }

    #[test]
    fn settings_roundtrip() {
        let mut c = PersistConfig::default();
        c.set("appendfsync", "ALWAYS", false).unwrap();
        assert_eq!(c.get("appendfsync").unwrap(), "always");
        assert!(c.set("dbfilename", "x", false).is_err());
        assert!(c.set("dbfilename", "a/b", true).is_err());
        c.set("auto-aof-rewrite-min-size", "1mb", false).unwrap();
        assert_eq!(c.auto_aof_rewrite_min_size, 1 << 20);
        assert!(c.set("rdbcompression", "maybe", false).is_err());
    }
}
