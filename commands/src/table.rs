//! The Redis 7.0 command table, loaded once from the recorded data file.

use crate::node::Node;
use std::collections::HashMap;
use std::sync::OnceLock;

static DATA: &str = include_str!("../data/redis-7.0-commands.json");

/// Command flags (Redis's `CMD_*`), as a bit set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Flags(pub u32);

impl Flags {
    pub const WRITE: u32 = 1 << 0;
    pub const READONLY: u32 = 1 << 1;
    pub const DENYOOM: u32 = 1 << 2;
    pub const ADMIN: u32 = 1 << 3;
    pub const PUBSUB: u32 = 1 << 4;
    pub const NOSCRIPT: u32 = 1 << 5;
    pub const BLOCKING: u32 = 1 << 6;
    pub const LOADING: u32 = 1 << 7;
    pub const STALE: u32 = 1 << 8;
    pub const SKIP_MONITOR: u32 = 1 << 9;
    pub const SKIP_SLOWLOG: u32 = 1 << 10;
    pub const ASKING: u32 = 1 << 11;
    pub const FAST: u32 = 1 << 12;
    pub const NO_AUTH: u32 = 1 << 13;
    pub const MAY_REPLICATE: u32 = 1 << 14;
    pub const NO_MANDATORY_KEYS: u32 = 1 << 15;
    pub const MOVABLEKEYS: u32 = 1 << 16;
    pub const NO_MULTI: u32 = 1 << 17;
    pub const ALLOW_BUSY: u32 = 1 << 18;
    pub const NO_ASYNC_LOADING: u32 = 1 << 19;
    pub const PROTECTED: u32 = 1 << 20;

    fn from_name(s: &str) -> u32 {
        match s {
            "write" => Self::WRITE,
            "readonly" => Self::READONLY,
            "denyoom" => Self::DENYOOM,
            "admin" => Self::ADMIN,
            "pubsub" => Self::PUBSUB,
            "noscript" => Self::NOSCRIPT,
            "blocking" => Self::BLOCKING,
            "loading" => Self::LOADING,
            "stale" => Self::STALE,
            "skip_monitor" => Self::SKIP_MONITOR,
            "skip_slowlog" => Self::SKIP_SLOWLOG,
            "asking" => Self::ASKING,
            "fast" => Self::FAST,
            "no_auth" => Self::NO_AUTH,
            "may_replicate" => Self::MAY_REPLICATE,
            "no_mandatory_keys" => Self::NO_MANDATORY_KEYS,
            "movablekeys" => Self::MOVABLEKEYS,
            "no_multi" => Self::NO_MULTI,
            "allow_busy" => Self::ALLOW_BUSY,
            "no_async_loading" => Self::NO_ASYNC_LOADING,
            "protected" => Self::PROTECTED,
            _ => 0,
        }
    }

    #[inline]
    pub fn has(self, f: u32) -> bool {
        self.0 & f != 0
    }
}

/// Where a key specification starts looking for keys.
#[derive(Debug, Clone, PartialEq)]
pub enum BeginSearch {
    Index(i64),
    Keyword { keyword: String, startfrom: i64 },
    Unknown,
}

/// How a key specification finds keys once it has started.
#[derive(Debug, Clone, PartialEq)]
pub enum FindKeys {
    Range { lastkey: i64, keystep: i64, limit: i64 },
    Keynum { keynumidx: i64, firstkey: i64, keystep: i64 },
    Unknown,
}

/// One key specification (Redis 7.0 `keySpec`).
#[derive(Debug, Clone, PartialEq)]
pub struct KeySpec {
    pub flags: Vec<String>,
    pub begin: BeginSearch,
    pub find: FindKeys,
}

impl KeySpec {
    pub fn has_flag(&self, f: &str) -> bool {
        self.flags.iter().any(|x| x == f)
    }
}

/// Everything Redis says about one command (or subcommand).
#[derive(Debug, Clone)]
pub struct CommandMeta {
    /// Lowercase name; subcommands are `container|sub`.
    pub name: String,
    pub arity: i32,
    pub flags: Flags,
    pub first_key: i32,
    pub last_key: i32,
    pub key_step: i32,
    pub acl_categories: Vec<String>,
    pub key_specs: Vec<KeySpec>,
    pub subcommands: Vec<CommandMeta>,
    /// The full `COMMAND INFO` entry.
    pub info: Node,
    /// The `COMMAND DOCS` map for this command, if Redis had one.
    pub docs: Option<Node>,
}

impl CommandMeta {
    /// Does `argc` satisfy this command's arity?
    #[inline]
    pub fn arity_ok(&self, argc: usize) -> bool {
        let a = self.arity;
        (a > 0 && argc as i32 == a) || (a < 0 && argc as i32 >= -a)
    }

    pub fn subcommand(&self, name: &[u8]) -> Option<&CommandMeta> {
        self.subcommands.iter().find(|s| {
            let sub = s.name.rsplit('|').next().unwrap_or("");
            sub.as_bytes().eq_ignore_ascii_case(name)
        })
    }

    pub fn group(&self) -> Option<&str> {
        self.docs.as_ref().and_then(|d| d.get("group")).and_then(|g| g.as_str())
    }
}

pub struct Table {
    pub commands: HashMap<String, CommandMeta>,
    pub redis_version: String,
}

impl Table {
    /// Case-insensitive lookup of a top-level command without allocating
    /// for names up to 32 bytes.
    pub fn get(&self, name: &[u8]) -> Option<&CommandMeta> {
        let mut buf = [0u8; 32];
        if name.len() <= buf.len() {
            for (d, s) in buf.iter_mut().zip(name) {
                *d = s.to_ascii_lowercase();
            }
            let s = std::str::from_utf8(&buf[..name.len()]).ok()?;
            self.commands.get(s)
        } else {
            let s = String::from_utf8_lossy(name).to_ascii_lowercase();
            self.commands.get(&s)
        }
    }

    /// Look up `container|sub` or a plain command by its full name.
    pub fn get_full(&self, full: &str) -> Option<&CommandMeta> {
        let lower = full.to_ascii_lowercase();
        match lower.split_once('|') {
            Some((c, s)) => self.commands.get(c)?.subcommand(s.as_bytes()),
            None => self.commands.get(&lower),
        }
    }
}

fn parse_spec(n: &Node) -> KeySpec {
    let flags = n.get("flags").map(|f| f.items().iter().filter_map(|x| x.as_str().map(String::from)).collect());
    let begin = match n.get("begin_search") {
        Some(b) => {
            let spec = b.get("spec");
            match b.get("type").and_then(|t| t.as_str()) {
                Some("index") => {
                    BeginSearch::Index(spec.and_then(|s| s.get("index")).and_then(|i| i.as_int()).unwrap_or(0))
                }
                Some("keyword") => BeginSearch::Keyword {
                    keyword: spec.and_then(|s| s.get("keyword")).and_then(|k| k.as_str()).unwrap_or("").to_string(),
                    startfrom: spec.and_then(|s| s.get("startfrom")).and_then(|i| i.as_int()).unwrap_or(0),
                },
                _ => BeginSearch::Unknown,
            }
        }
        None => BeginSearch::Unknown,
    };
    let find = match n.get("find_keys") {
        Some(f) => {
            let spec = f.get("spec");
            let gi = |k: &str| spec.and_then(|s| s.get(k)).and_then(|i| i.as_int()).unwrap_or(0);
            match f.get("type").and_then(|t| t.as_str()) {
                Some("range") => FindKeys::Range { lastkey: gi("lastkey"), keystep: gi("keystep"), limit: gi("limit") },
                Some("keynum") => {
                    FindKeys::Keynum { keynumidx: gi("keynumidx"), firstkey: gi("firstkey"), keystep: gi("keystep") }
                }
                _ => FindKeys::Unknown,
            }
        }
        None => FindKeys::Unknown,
    };
    KeySpec { flags: flags.unwrap_or_default(), begin, find }
}

fn parse_entry(n: &Node, docs: Option<&Node>) -> Option<CommandMeta> {
    let it = n.items();
    if it.len() < 10 {
        return None;
    }
    let name = it[0].as_str()?.to_string();
    let mut flags = 0;
    for f in it[2].items() {
        flags |= Flags::from_name(f.as_str().unwrap_or(""));
    }
    let subdocs = docs.and_then(|d| d.get("subcommands"));
    let subcommands = it[9]
        .items()
        .iter()
        .filter_map(|s| {
            let sname = s.items().first().and_then(|x| x.as_str()).unwrap_or("");
            parse_entry(s, subdocs.and_then(|d| d.get(sname)))
        })
        .collect();
    Some(CommandMeta {
        name,
        arity: it[1].as_int()? as i32,
        flags: Flags(flags),
        first_key: it[3].as_int()? as i32,
        last_key: it[4].as_int()? as i32,
        key_step: it[5].as_int()? as i32,
        acl_categories: it[6].items().iter().filter_map(|x| x.as_str().map(String::from)).collect(),
        key_specs: it[8].items().iter().map(parse_spec).collect(),
        subcommands,
        info: n.clone(),
        docs: docs.cloned(),
    })
}

fn load() -> Table {
    let v: serde_json::Value = serde_json::from_str(DATA).expect("embedded command table is valid JSON");
    let info = Node::from_json(&v["info"]);
    let docs = Node::from_json(&v["docs"]);
    let mut commands = HashMap::new();
    for entry in info.items() {
        let name = entry.items().first().and_then(|x| x.as_str()).unwrap_or("").to_string();
        if let Some(meta) = parse_entry(entry, docs.get(&name)) {
            commands.insert(name, meta);
        }
    }
    Table { commands, redis_version: v["redis_version"].as_str().unwrap_or("7.0.0").to_string() }
}

/// The process-wide command table.
pub fn table() -> &'static Table {
    static T: OnceLock<Table> = OnceLock::new();
    T.get_or_init(load)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loads_known_commands() {
        let t = table();
        assert!(t.commands.len() >= 200);
        let get = t.get(b"GET").unwrap();
        assert_eq!(get.arity, 2);
        assert!(get.flags.has(Flags::READONLY) && get.flags.has(Flags::FAST));
        assert_eq!(get.key_specs.len(), 1);
        let cfg = t.get(b"config").unwrap();
        assert!(cfg.subcommand(b"GET").is_some());
        assert_eq!(t.get_full("CONFIG|get").unwrap().name, "config|get");
        assert_eq!(t.get(b"set").unwrap().group(), Some("string"));
    }
}
