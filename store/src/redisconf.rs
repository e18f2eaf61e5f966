//! redis.conf support for the `ferrite` binary, so that it starts like
//! `redis-server /etc/redis/redis.conf --port 7000 --save ""`.
//!
//! What it knows: redis-server's command line (an optional config file or
//! `-` for stdin first, then `--directive args...` appended to the file's
//! text), the redis.conf syntax (one directive per line, `#` comments,
//! `sdssplitargs` quoting, `include`, repeated `save` / `user` lines), and
//! Redis's fatal start-up error format. Settings ferrite needs before the
//! server exists (port, bind, databases, dir, persistence, replicaof,
//! daemonize, pidfile, logfile...) are applied to [`Config`] here; every
//! other directive goes through CONFIG SET's own validation and apply
//! (`cmd::config::set_at_startup`) once the server exists. It also writes
//! Redis-style log lines (`pid:M 23 Nov 2026 05:25:52.846 * ...`).
//!
//! What it does not know: TLS, cluster mode, modules and
//! Sentinel directives (fatal errors, see [`unsupported`]). `rename-command`
//! lines are collected into `Config::rename_commands` and applied to the
//! command table when the server is built.

use ferrite::config::Config;
use ferrite::server::Server;
use std::ffi::OsString;
use std::io::Write;
use std::path::PathBuf;

/// The Redis version ferrite is compatible with (error banners).
pub const REDIS_VERSION: &str = "7.0.15";

/// The command line, split into what clap parses and what redis-server's
/// rules make of the rest.
#[derive(Debug, Default)]
pub struct CmdLine {
    pub clap: Vec<OsString>,
    /// The redis.conf file (first argument).
    pub file: Option<PathBuf>,
    /// `-` as the first or last argument: config text on stdin (appended
    /// to the file's).
    pub stdin: bool,
    /// redis-server's "options" text: one directive per line.
    pub options: String,
}

/// ferrite-only flags (not Redis directives): kept for clap, with a value.
const CLAP_ONLY: &[&str] = &["config", "threads", "metrics-listen"];
/// Former clap flags that are also Redis directives: `--name=value` keeps
/// working for them.
const OLD_CLAP: &[&str] = &[
    "bind",
    "port",
    "databases",
    "requirepass",
    "maxclients",
    "proto-max-bulk-len",
    "enable-debug-command",
    "timeout",
    "hz",
    "aclfile",
    "dir",
    "dbfilename",
    "save",
    "appendonly",
    "appendfsync",
    "appendfilename",
    "appenddirname",
    "aof-load-truncated",
    "aof-use-rdb-preamble",
    "replicaof",
    "slaveof",
];

/// Redis's `sdscatrepr`: a double-quoted string with escapes.
fn repr(s: &[u8]) -> String {
    let mut o = String::from("\"");
    for &c in s {
        match c {
            b'\\' => o.push_str("\\\\"),
            b'"' => o.push_str("\\\""),
            b'\n' => o.push_str("\\n"),
            b'\r' => o.push_str("\\r"),
            b'\t' => o.push_str("\\t"),
            7 => o.push_str("\\a"),
            8 => o.push_str("\\b"),
            c if c.is_ascii_graphic() || c == b' ' => o.push(c as char),
            c => o.push_str(&format!("\\x{c:02x}")),
        }
    }
    o.push('"');
    o
}

fn split(line: &[u8]) -> Option<Vec<Vec<u8>>> {
    let mut v = Vec::new();
    ferrite_resp::parser::split_args(line, &mut v).ok()?;
    Some(v.into_iter().map(|b| b.to_vec()).collect())
}

/// Split the process arguments the way redis-server reads them, keeping
/// ferrite's own flags (`--config`, `--threads`, `--metrics-listen`,
/// `--help`, `--version`) for clap.
pub fn split_cmdline(args: Vec<OsString>) -> CmdLine {
    let mut out = CmdLine::default();
    let mut it = args.into_iter();
    out.clap.push(it.next().unwrap_or_else(|| OsString::from("ferrite")));
    let args: Vec<OsString> = it.collect();
    let n = args.len();
    let bytes = |a: &OsString| -> Vec<u8> {
        use std::os::unix::ffi::OsStrExt;
        a.as_os_str().as_bytes().to_vec()
    };
    let mut j = 0;
    if let Some(first) = args.first() {
        let b = bytes(first);
        if !b.is_empty() && b[0] != b'-' {
            if b.ends_with(b".toml") {
                out.clap.push("--config".into());
                out.clap.push(first.clone());
            } else {
                out.file = Some(PathBuf::from(first));
            }
            j = 1;
        }
    }
    // True right after a directive name: the next argument is its value,
    // even when it starts with "--" (redis-server's rule).
    let mut want_value = false;
    while j < n {
        let a = bytes(&args[j]);
        if a == b"-" && (j == 0 || j == n - 1) {
            out.stdin = true;
            j += 1;
            continue;
        }
        if !want_value && (a == b"-h" || a == b"-V" || a == b"--help" || a == b"--version") {
            out.clap.push(args[j].clone());
            j += 1;
            continue;
        }
        if !want_value && a.starts_with(b"--") && a.len() > 2 {
            let body = &a[2..];
            let (name, eqv) = match body.iter().position(|&c| c == b'=') {
                Some(p) => (&body[..p], Some(&body[p + 1..])),
                None => (body, None),
            };
            let name_s = String::from_utf8_lossy(name).into_owned();
            if CLAP_ONLY.contains(&name_s.as_str()) {
                out.clap.push(args[j].clone());
                if eqv.is_none() && j + 1 < n {
                    out.clap.push(args[j + 1].clone());
                    j += 1;
                }
                j += 1;
                continue;
            }
            if !out.options.is_empty() {
                out.options.push('\n');
            }
            if let (Some(v), true) = (eqv, OLD_CLAP.contains(&name_s.as_str())) {
                out.options.push_str(&name_s);
                out.options.push(' ');
                out.options.push_str(&repr(v));
                out.options.push(' ');
                j += 1;
                continue;
            }
            out.options.push_str(&String::from_utf8_lossy(body));
            out.options.push(' ');
            if split(&a).map(|v| v.len()).unwrap_or(0) == 1 {
                want_value = true;
                let is_save = body.eq_ignore_ascii_case(b"save");
                if is_save && (j == n - 1 || bytes(&args[j + 1]).starts_with(b"--")) {
                    // `--save` alone means `save ""` (redis-server 7.0.1+).
                    out.options.push_str("\"\"");
                    want_value = false;
                }
            }
        } else {
            out.options.push_str(&repr(&a));
            out.options.push(' ');
            want_value = false;
        }
        j += 1;
    }
    out
}

/// One redis.conf line.
#[derive(Debug, Clone)]
pub struct Directive {
    pub line_no: usize,
    pub text: String,
    /// Lower-case directive name.
    pub name: String,
    pub args: Vec<Vec<u8>>,
    /// Redis's `reading_config_file` when this line is applied: false for
    /// the lines of a file after an `include` returned (Redis clears the
    /// flag when the included file is done), which makes each later `save`
    /// line replace the rules instead of adding to them.
    pub reading: bool,
}

impl Directive {
    fn joined(&self) -> Vec<u8> {
        self.args.join(&b' ')
    }
    fn err(&self, reason: impl Into<String>) -> ConfError {
        ConfError::Line { line_no: self.line_no, text: self.text.clone(), reason: reason.into() }
    }
}

/// A start-up failure, printed Redis's way.
#[derive(Debug)]
pub enum ConfError {
    /// `*** FATAL CONFIG FILE ERROR ***` for one line.
    Line { line_no: usize, text: String, reason: String },
    /// A plain fatal message (cannot open the file, ...).
    Fatal(String),
}

impl ConfError {
    pub fn message(&self) -> String {
        match self {
            ConfError::Line { line_no, text, reason } => format!(
                "\n*** FATAL CONFIG FILE ERROR (Redis {REDIS_VERSION}) ***\nReading the configuration file, at line \
                 {line_no}\n>>> '{text}'\n{reason}\n"
            ),
            ConfError::Fatal(m) => format!("{m}\n"),
        }
    }

    /// Print to stderr and exit 1, as redis-server does (the process's original stderr, also when a `logfile`
    /// has taken fd 2 over already).
    pub fn exit(&self) -> ! {
        let msg = self.message();
        let fd = ORIG_STDERR.load(std::sync::atomic::Ordering::SeqCst);
        if fd >= 0 {
            // SAFETY: `fd` is our own duplicate of the original stderr, never closed.
            unsafe {
                libc::write(fd, msg.as_ptr().cast(), msg.len());
            }
        } else {
            let _ = std::io::stderr().write_all(msg.as_bytes());
        }
        std::process::exit(1)
    }
}

fn io_text(e: &std::io::Error) -> String {
    let s = e.to_string();
    s.split(" (os error").next().unwrap_or(&s).to_string()
}

/// The whole configuration text: the file (or stdin), then the options.
pub fn load_text(cl: &CmdLine) -> Result<String, ConfError> {
    let mut text = match &cl.file {
        None => String::new(),
        Some(p) => read_file(p)?,
    };
    if cl.stdin {
        log('C', '#', "Reading config from stdin");
        let mut s = Vec::new();
        std::io::Read::read_to_end(&mut std::io::stdin(), &mut s)
            .map_err(|e| ConfError::Fatal(format!("Fatal error, can't read config from stdin: {}", io_text(&e))))?;
        text.push_str(&String::from_utf8_lossy(&s));
    }
    text.push('\n');
    text.push_str(&cl.options);
    Ok(text)
}

fn read_file(p: &std::path::Path) -> Result<String, ConfError> {
    std::fs::read(p).map(|b| String::from_utf8_lossy(&b).into_owned()).map_err(|e| {
        ConfError::Fatal(format!("Fatal error, can't open config file '{}': {}", p.display(), io_text(&e)))
    })
}

/// Parse configuration text into directives; `include` files are read and
/// parsed in place (their line numbers are their own, as in Redis).
pub fn parse(text: &str, depth: usize) -> Result<Vec<Directive>, ConfError> {
    let mut out = Vec::new();
    let mut reading = true;
    for (i, raw) in text.split('\n').enumerate() {
        let line = raw.trim_matches(|c| matches!(c, ' ' | '\t' | '\r' | '\n'));
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let d = |reason: &str| ConfError::Line { line_no: i + 1, text: line.to_string(), reason: reason.into() };
        let Some(mut args) = split(line.as_bytes()) else {
            return Err(d("Unbalanced quotes in configuration line"));
        };
        if args.is_empty() {
            continue;
        }
        let name = String::from_utf8_lossy(&args.remove(0)).to_ascii_lowercase();
        if name == "include" {
            if args.len() != 1 {
                return Err(d("Bad directive or wrong number of arguments"));
            }
            if depth >= 16 {
                return Err(d("Too many nested includes"));
            }
            let pattern = String::from_utf8_lossy(&args[0]).into_owned();
            let mut files = String::new();
            for path in include_paths(&pattern)? {
                files.push_str(&read_file(&path)?);
            }
            out.extend(parse(&files, depth + 1)?);
            reading = false;
            continue;
        }
        out.push(Directive { line_no: i + 1, text: line.to_string(), name, args, reading });
    }
    Ok(out)
}

/// The files an `include` names: the path itself, or with `*?[` in its
/// last component the matching files of that directory, sorted (none is
/// fine, as with Redis's glob).
fn include_paths(pattern: &str) -> Result<Vec<PathBuf>, ConfError> {
    let p = PathBuf::from(pattern);
    let name = p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    if !name.contains(['*', '?', '[']) {
        return Ok(vec![p]);
    }
    let dir = match p.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let mut out: Vec<PathBuf> = match std::fs::read_dir(&dir) {
        Ok(rd) => rd
            .filter_map(|e| e.ok())
            .filter(|e| {
                let n = e.file_name();
                let n = n.to_string_lossy();
                !n.starts_with('.') && ferrite::glob::glob_match(name.as_bytes(), n.as_bytes(), false)
            })
            .map(|e| dir.join(e.file_name()))
            .collect(),
        Err(_) => Vec::new(),
    };
    out.sort();
    Ok(out)
}

/// What start-up does besides the [`Config`] fields.
#[derive(Debug, Default)]
pub struct Boot {
    pub daemonize: bool,
    pub pidfile: Option<PathBuf>,
    /// Bind addresses after the first (Redis binds them all); `true`
    /// when optional (`-addr`).
    pub extra_binds: Vec<(String, bool)>,
    /// How Redis would print the bind address in messages ("*" or the list).
    pub bind_display: Option<String>,
    pub show_logo: bool,
    pub notify_systemd: bool,
    /// `unixsocket`: also listen on this Unix domain socket.
    pub unixsocket: Option<PathBuf>,
    /// Directives applied through CONFIG SET once the server exists.
    runtime: Vec<Directive>,
    has_users: bool,
}

/// Old names Redis still accepts for these settings.
fn canonical(name: &str) -> &str {
    match name {
        "slave-serve-stale-data" => "replica-serve-stale-data",
        "repl-ping-slave-period" => "repl-ping-replica-period",
        "min-slaves-to-write" => "min-replicas-to-write",
        "min-slaves-max-lag" => "min-replicas-max-lag",
        "slave-priority" => "replica-priority",
        "slave-lazy-flush" => "replica-lazy-flush",
        "slave-announce-ip" => "replica-announce-ip",
        "slave-announce-port" => "replica-announce-port",
        "slave-ignore-maxmemory" => "replica-ignore-maxmemory",
        "list-max-ziplist-size" => "list-max-listpack-size",
        "slave-read-only" => "replica-read-only",
        n => n,
    }
}

/// Settings that take several arguments (joined with spaces).
const MULTI_ARG: &[&str] = &[
    "save",
    "bind",
    "client-output-buffer-limit",
    "oom-score-adj-values",
    "latency-tracking-info-percentiles",
    "shutdown-on-sigint",
    "shutdown-on-sigterm",
];

/// Directives ferrite refuses at start-up, with the reason (a fatal
/// error is better than silently running differently).
pub fn unsupported(name: &str, args: &[Vec<u8>]) -> Option<String> {
    let v = args.first().map(|a| String::from_utf8_lossy(a).to_ascii_lowercase()).unwrap_or_default();
    Some(match name {
        "loadmodule" => "ferrite cannot load Redis modules (loadmodule)".into(),
        "sentinel" => "ferrite is not Redis Sentinel (sentinel directives)".into(),
        "tls-port" if v != "0" => "ferrite does not support TLS (tls-port must be 0)".into(),
        "cluster-enabled" if v == "yes" => {
            "ferrite does not implement Redis Cluster mode (cluster-enabled yes); put ferrite-proxy in front of a \
             Redis Cluster instead"
                .into()
        }
        "supervised" if v == "upstart" => {
            "ferrite does not support supervised upstart (use no, auto or systemd)".into()
        }
        _ => return None,
    })
}

fn parse_int(v: &[u8], min: i64, max: i64) -> Result<i64, String> {
    let n = ferrite_resp::num::parse_i64(v).ok_or("argument couldn't be parsed into an integer")?;
    if n < min || n > max {
        return Err(format!("argument must be between {min} and {max} inclusive"));
    }
    Ok(n)
}

/// Redis's memtoull (the one CONFIG SET uses), as bytes.
fn parse_mem_value(v: &[u8]) -> Option<u64> {
    ferrite::cmd::config::parse_mem(v).and_then(|n| u64::try_from(n).ok())
}

fn parse_bool(v: &[u8]) -> Result<bool, String> {
    if v.eq_ignore_ascii_case(b"yes") {
        Ok(true)
    } else if v.eq_ignore_ascii_case(b"no") {
        Ok(false)
    } else {
        Err("argument must be 'yes' or 'no'".into())
    }
}

fn parse_enum<'a>(v: &[u8], opts: &[&'a str]) -> Result<&'a str, String> {
    opts.iter()
        .find(|o| o.as_bytes().eq_ignore_ascii_case(v))
        .copied()
        .ok_or_else(|| format!("argument(s) must be one of the following: {}", opts.join(", ")))
}

/// Apply the directives that must be known before the server exists; the
/// others are kept in the returned [`Boot`] for [`apply_runtime`].
pub fn apply_startup(cfg: &mut Config, dirs: Vec<Directive>) -> Result<Boot, ConfError> {
    let mut boot = Boot::default();
    let mut save_seen = false;
    // The command table as the `rename-command` lines so far leave it (built at the first one).
    let mut renames: Option<ferrite::cmd::Registry> = None;
    // Settings refused only for their final value (a later
    // `--tls-port 0` overrides the file's port).
    let mut last: Vec<Directive> = Vec::new();
    for d in dirs {
        let name = canonical(&d.name).to_string();
        if matches!(name.as_str(), "tls-port" | "cluster-enabled" | "supervised") {
            last.retain(|x| x.name != name);
            last.push(d.clone());
        } else if let Some(why) = unsupported(&name, &d.args) {
            return Err(d.err(why));
        }
        let bad = || d.err("Bad directive or wrong number of arguments");
        let multi = MULTI_ARG.contains(&name.as_str());
        let one = || -> Result<&[u8], ConfError> {
            if d.args.len() != 1 {
                Err(d.err("wrong number of arguments"))
            } else {
                Ok(&d.args[0])
            }
        };
        let text = |v: &[u8]| String::from_utf8_lossy(v).into_owned();
        match name.as_str() {
            "bind" => {
                if d.args.is_empty() {
                    return Err(d.err("wrong number of arguments"));
                }
                let mut addrs: Vec<(String, bool)> = Vec::new();
                let list: Vec<Vec<u8>> =
                    if d.args.len() == 1 { split(&d.args[0]).unwrap_or_default() } else { d.args.clone() };
                if list.is_empty() {
                    return Err(d.err("Too many bind addresses specified."));
                }
                for a in &list {
                    let s = text(a);
                    let (opt, s) = match s.strip_prefix('-') {
                        Some(r) => (true, r.to_string()),
                        None => (false, s),
                    };
                    let s = match s.as_str() {
                        "*" => "0.0.0.0".to_string(),
                        "::*" => "::".to_string(),
                        _ => s,
                    };
                    addrs.push((s, opt));
                }
                boot.bind_display = Some(list.iter().map(|a| text(a)).collect::<Vec<_>>().join(" "));
                let (first, _) = addrs.remove(0);
                cfg.bind = first;
                boot.extra_binds = addrs;
            }
            "port" => cfg.port = parse_int(one()?, 0, 65535).map_err(|e| d.err(e))? as u16,
            "databases" => {
                let n = parse_int(one()?, 1, i32::MAX as i64).map_err(|e| d.err(e))?;
                if n > 1_000_000 {
                    return Err(d.err("ferrite supports at most 1000000 databases"));
                }
                cfg.databases = n as usize;
            }
            "proto-max-bulk-len" => {
                // ferrite's `--proto-max-bulk-len` flag always took values
                // below Redis's 1mb minimum (tests use tiny limits); CONFIG SET
                // keeps Redis's range.
                let v = one()?;
                let n = parse_mem_value(v).ok_or_else(|| d.err("argument must be a memory value"))?;
                if n < 1 {
                    return Err(d.err(format!("argument must be between 1 and {} inclusive", i64::MAX)));
                }
                cfg.proto_max_bulk_len = n;
            }
            "enable-debug-command" => {
                cfg.enable_debug_command = parse_enum(one()?, &["no", "yes", "local"]).map_err(|e| d.err(e))?.into()
            }
            "aclfile" => cfg.aclfile = text(one()?),
            "replicaof" | "slaveof" => {
                // "HOST PORT" in one argument: ferrite's older flag form.
                let parts: Vec<Vec<u8>> = if d.args.len() == 1 {
                    d.args[0].split(|c| *c == b' ').filter(|p| !p.is_empty()).map(|p| p.to_vec()).collect()
                } else {
                    d.args.clone()
                };
                if parts.len() != 2 {
                    return Err(bad());
                }
                if parts[0].eq_ignore_ascii_case(b"no") && parts[1].eq_ignore_ascii_case(b"one") {
                    cfg.replicaof = None;
                    continue;
                }
                let port = std::str::from_utf8(&parts[1])
                    .ok()
                    .and_then(|p| p.parse::<u16>().ok())
                    .ok_or_else(|| d.err("Invalid master port"))?;
                cfg.replicaof = Some((text(&parts[0]), port));
            }
            "daemonize" => boot.daemonize = parse_bool(one()?).map_err(|e| d.err(e))?,
            "always-show-logo" => {
                boot.show_logo = parse_bool(one()?).map_err(|e| d.err(e))?;
                boot.runtime.push(d);
            }
            "pidfile" => {
                let v = text(one()?);
                boot.pidfile = (!v.is_empty()).then(|| PathBuf::from(v));
            }
            "logfile" => {
                let v = text(one()?);
                set_logfile(&v).map_err(|e| d.err(format!("Can't open the log file: {e}")))?;
            }
            "unixsocket" => {
                let v = one()?;
                boot.unixsocket = (!v.is_empty()).then(|| PathBuf::from(text(v)));
                boot.runtime.push(d);
            }
            "supervised" => {
                let v = parse_enum(one()?, &["upstart", "systemd", "auto", "no"]).map_err(|e| d.err(e))?;
                boot.notify_systemd = v == "systemd" || (v == "auto" && std::env::var_os("NOTIFY_SOCKET").is_some());
            }
            "io-threads" => {
                // ferrite is multi-threaded anyway (`--threads`).
                parse_int(one()?, 1, 128).map_err(|e| d.err(e))?;
            }
            "cluster-enabled" | "tls-port" => {
                one()?;
            }
            n if n.starts_with("cluster-") || n.starts_with("tls-") => {
                // Only used with cluster mode / TLS, which are refused above.
                one()?;
            }
            "rename-command" => {
                if d.args.len() != 2 {
                    return Err(bad());
                }
                renames
                    .get_or_insert_with(ferrite::cmd::Registry::build)
                    .rename(&d.args[0], &d.args[1])
                    .map_err(|e| d.err(e))?;
                cfg.rename_commands.push((d.args[0].clone(), d.args[1].clone()));
            }
            "user" => {
                if d.args.is_empty() {
                    return Err(bad());
                }
                if boot.runtime.iter().any(|x| x.name == "user" && x.args[0] == d.args[0]) {
                    return Err(d.err(format!(
                        "Error in user declaration '{}': Duplicate user found. A user can only be defined once in \
                         config files",
                        text(&d.args[0])
                    )));
                }
                boot.has_users = true;
                boot.runtime.push(d);
            }
            n if ferrite::persist::config::NAMES.contains(&n) => {
                let v = if multi { d.joined() } else { one()?.to_vec() };
                let v = text(&v);
                if n == "save" {
                    // Redis: while reading a file, the first `save` line
                    // replaces the defaults and later ones add; "" clears.
                    let add = d.reading && save_seen && !v.trim().is_empty();
                    if d.reading {
                        save_seen = true;
                    }
                    if add {
                        let before = cfg.persist.save.clone();
                        cfg.persist.set("save", &v, true).map_err(|e| d.err(e))?;
                        let mut all = before;
                        all.extend(cfg.persist.save.iter().copied());
                        cfg.persist.save = all;
                        continue;
                    }
                }
                cfg.persist.set(n, &v, true).map_err(|e| d.err(e))?;
                if n == "dir" {
                    // Redis chdirs: later relative paths are relative to it.
                    std::env::set_current_dir(&cfg.persist.dir)
                        .map_err(|e| d.err(format!("Can't chdir to '{v}': {}", io_text(&e))))?;
                }
            }
            n => {
                if !ferrite::cmd::config::is_param(n.as_bytes()) {
                    return Err(bad());
                }
                if !multi && d.args.len() != 1 {
                    return Err(d.err("wrong number of arguments"));
                }
                boot.runtime.push(d);
            }
        }
    }
    for d in last {
        if let Some(why) = unsupported(&d.name, &d.args) {
            return Err(d.err(why));
        }
    }
    if boot.has_users && !cfg.aclfile.is_empty() {
        return Err(ConfError::Fatal(
            "Configuring Redis with users defined in redis.conf and at the same setting an ACL file path is \
             invalid. This setup is very likely to lead to configuration errors and security holes, please define \
             either an ACL file or declare users directly in your redis.conf, but not both."
                .into(),
        ));
    }
    if boot.daemonize && boot.pidfile.is_none() {
        boot.pidfile = Some(PathBuf::from("/var/run/redis.pid"));
    }
    Ok(boot)
}

/// Apply the remaining directives through CONFIG SET's code.
pub fn apply_runtime(srv: &Server, boot: &mut Boot) -> Result<(), ConfError> {
    for d in std::mem::take(&mut boot.runtime) {
        let name = canonical(&d.name);
        if name == "user" {
            // Redis creates configured users from scratch; the existing
            // `default` user is reset first.
            let mut ops: Vec<&[u8]> = Vec::with_capacity(d.args.len());
            if d.args[0] == b"default" {
                ops.push(b"reset");
            }
            ops.extend(d.args[1..].iter().map(|a| a.as_slice()));
            if let Err(e) = srv.acl.set_user(&d.args[0], &ops) {
                // Redis checks the rules after loading the file: two log
                // lines and exit 1 (not a config file error).
                let (op, why) = e
                    .strip_prefix("Error in ACL SETUSER modifier '")
                    .and_then(|r| r.split_once("': "))
                    .map(|(o, w)| (o.to_string(), w.to_string()))
                    .unwrap_or_else(|| (String::new(), e.clone()));
                let user = String::from_utf8_lossy(&d.args[0]);
                log('M', '#', &format!("Error loading ACL rule '{op}' for the user named '{user}': {why}"));
                log('M', '#', "Critical error while loading ACLs. Exiting.");
                std::process::exit(1);
            }
            continue;
        }
        let v = if MULTI_ARG.contains(&name) { d.joined() } else { d.args[0].clone() };
        ferrite::cmd::config::set_at_startup(srv, name.as_bytes(), &v).map_err(|e| d.err(e))?;
    }
    Ok(())
}

/// The whole start-up configuration step (before the runtime exists).
pub fn startup(cl: &CmdLine, cfg: &mut Config) -> Result<Boot, ConfError> {
    let text = load_text(cl)?;
    let dirs = parse(&text, 0)?;
    // Started from a redis.conf (and no TOML file): Redis's default save
    // rules apply unless a `save` line says otherwise, as with redis-server.
    // (ferrite's own default is no automatic snapshots.)
    let redis_defaults = (cl.file.is_some() || cl.stdin) && cfg.config_file.is_none();
    let has_save = dirs.iter().any(|d| d.name == "save");
    if redis_defaults && !has_save {
        cfg.persist.save = REDIS_DEFAULT_SAVE.to_vec();
    }
    apply_startup(cfg, dirs)
}

/// Redis 7.0's default `save` rules.
pub const REDIS_DEFAULT_SAVE: &[(u64, u64)] = &[(3600, 1), (300, 100), (60, 10000)];

/// Detach like redis-server's `daemonize yes`: fork (the parent exits),
/// new session, stdio on /dev/null. Must run before any thread exists.
pub fn daemonize() {
    // SAFETY: called from main before the tokio runtime (or any other
    // thread) is created, so the child is a complete copy of the process.
    unsafe {
        match libc::fork() {
            -1 => {
                eprintln!("ferrite: fork failed: {}", std::io::Error::last_os_error());
                std::process::exit(1);
            }
            0 => {}
            _ => libc::_exit(0),
        }
        libc::setsid();
        let fd = libc::open(c"/dev/null".as_ptr(), libc::O_RDWR, 0);
        if fd != -1 {
            libc::dup2(fd, 0);
            libc::dup2(fd, 1);
            libc::dup2(fd, 2);
            if fd > 2 {
                libc::close(fd);
            }
        }
    }
}

/// Tell systemd we are ready (`supervised systemd`), like Redis's
/// `redisCommunicateSystemd`. Silently does nothing without NOTIFY_SOCKET.
pub fn notify_systemd(msg: &str) {
    use std::os::unix::net::UnixDatagram;
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else { return };
    let Ok(sock) = UnixDatagram::unbound() else { return };
    use std::os::unix::ffi::OsStrExt;
    let p = path.as_bytes();
    if let Some(name) = p.strip_prefix(b"@") {
        use std::os::linux::net::SocketAddrExt;
        if let Ok(addr) = std::os::unix::net::SocketAddr::from_abstract_name(name) {
            let _ = sock.send_to_addr(msg.as_bytes(), &addr);
        }
    } else {
        let _ = sock.send_to(msg.as_bytes(), std::path::Path::new(&path));
    }
}

// ---- Redis-style logging ----

static LOGFILE: parking_lot::Mutex<Option<std::fs::File>> = parking_lot::Mutex::new(None);
/// The process's stderr before `logfile` took fd 2 over (-1: not taken over).
static ORIG_STDERR: std::sync::atomic::AtomicI32 = std::sync::atomic::AtomicI32::new(-1);

/// `logfile PATH` ("" = stdout). Opened at once, like Redis, so a bad path
/// is a configuration error.
pub fn set_logfile(path: &str) -> Result<(), String> {
    let f = if path.is_empty() {
        None
    } else {
        Some(std::fs::OpenOptions::new().create(true).append(true).open(path).map_err(|e| io_text(&e))?)
    };
    *LOGFILE.lock() = f;
    Ok(())
}

/// With a `logfile`, ferrite's other messages (written to stderr: "DB
/// saved on disk", AOF and replication events...) go to the same file, as
/// all of Redis's logging does.
pub fn stderr_to_logfile() {
    use std::os::fd::AsRawFd;
    if let Some(f) = LOGFILE.lock().as_ref() {
        // SAFETY: dup of fd 2 (kept for fatal configuration errors), then dup2 onto fd 2 of an open file we own;
        // no Rust object owns fd 2.
        unsafe {
            ORIG_STDERR.store(libc::dup(2), std::sync::atomic::Ordering::SeqCst);
            libc::dup2(f.as_raw_fd(), 2);
        }
    }
}

/// Days since 1970-01-01 to (year, month, day) (Howard Hinnant's algorithm).
fn civil(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// The timestamp Redis puts in its log lines (UTC): `23 Nov 2026 05:25:52.846`.
fn timestamp() -> String {
    let ms = ferrite::server::now_ms();
    let (secs, milli) = (ms.div_euclid(1000), ms.rem_euclid(1000));
    let (y, m, d) = civil(secs.div_euclid(86_400));
    let t = secs.rem_euclid(86_400);
    const MON: [&str; 12] = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
    format!("{d:02} {} {y} {:02}:{:02}:{:02}.{milli:03}", MON[(m as usize - 1) % 12], t / 3600, (t / 60) % 60, t % 60)
}

/// Write one Redis-format log line: `role` is 'C' (before start) or 'M',
/// `level` '.' debug, '-' verbose, '*' notice, '#' warning.
pub fn log(role: char, level: char, msg: &str) {
    // `loglevel`: debug < verbose < notice < warning.
    let rank = |c: char| match c {
        '.' => 0,
        '-' => 1,
        '*' => 2,
        _ => 3,
    };
    let min = match ferrite::cmd::config::accepted_value("loglevel").as_deref() {
        Some("debug") => 0,
        Some("verbose") => 1,
        Some("warning") => 3,
        _ => 2,
    };
    if rank(level) < min {
        return;
    }
    let line = format!("{}:{role} {} {level} {msg}\n", std::process::id(), timestamp());
    log_raw(&line);
}

/// Write text to the log as is (the start-up banner).
pub fn log_raw(text: &str) {
    let mut f = LOGFILE.lock();
    match f.as_mut() {
        Some(file) => {
            let _ = file.write_all(text.as_bytes());
        }
        None => {
            let mut out = std::io::stdout().lock();
            let _ = out.write_all(text.as_bytes());
            let _ = out.flush();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cl(args: &[&str]) -> CmdLine {
        split_cmdline(std::iter::once("ferrite").chain(args.iter().copied()).map(OsString::from).collect())
    }

    #[test]
    fn command_line_like_redis_server() {
        let c = cl(&["/etc/redis.conf", "--port", "7000", "--save", "", "--appendonly", "yes"]);
        assert_eq!(c.file, Some(PathBuf::from("/etc/redis.conf")));
        assert_eq!(c.options, "port \"7000\" \nsave \"\" \nappendonly \"yes\" ");
        let c = cl(&["--save", "--port", "1", "--save", "900", "1", "--threads", "2", "--port=5"]);
        assert_eq!(c.options, "save \"\"\nport \"1\" \nsave \"900\" \"1\" \nport \"5\" ");
        assert_eq!(c.clap, vec![OsString::from("ferrite"), "--threads".into(), "2".into()]);
        let c = cl(&["x.toml", "--maxmemory-policy", "--x"]);
        assert_eq!(c.clap[1..], [OsString::from("--config"), "x.toml".into()]);
        assert_eq!(c.options, "maxmemory-policy \"--x\" ");
        assert!(cl(&["-", "--port", "1"]).stdin);
        assert!(cl(&["--port", "1", "-"]).stdin);
        assert_eq!(cl(&["--port 6380"]).options, "port 6380 ");
    }

    #[test]
    fn parse_lines() {
        let d = parse("# c\n  save 900 1  \n\nuser  \"a b\" on\nx \"unbalanced\n", 0).unwrap_err();
        match d {
            ConfError::Line { line_no, text, reason } => {
                assert_eq!((line_no, text.as_str()), (5, "x \"unbalanced"));
                assert_eq!(reason, "Unbalanced quotes in configuration line");
            }
            e => panic!("{e:?}"),
        }
        let d = parse("save 900 1\nUSER \"a b\" on\n", 0).unwrap();
        assert_eq!(d[1].name, "user");
        assert_eq!(d[1].args[0], b"a b");
        assert_eq!(d[1].line_no, 2);
    }

    #[test]
    fn dates() {
        assert_eq!(civil(0), (1970, 1, 1));
        assert_eq!(civil(20_780), (2026, 11, 23));
        assert_eq!(civil(11_016), (2000, 2, 29));
    }
}
