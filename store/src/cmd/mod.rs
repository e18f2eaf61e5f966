//! Command implementations and the registry that maps names to them.
//!
//! Each family module exports `COMMANDS: &[CmdImpl]`: the command's name
//! (matching the Redis command table in `ferrite-commands`), its handler,
//! and how it locks the keyspace. Arity, flags and key positions come from
//! the shared table, never from here.
//!
//! A handler gets a [`Cx`]: its arguments, the reply buffer, the client,
//! and [`Ks`], the keyspace view with the right shards already locked.
//! Handlers are synchronous; they never await.
//!
//! Rules for handlers:
//! - reply exactly once (an `Err` return is the reply);
//! - after changing a key call `cx.ks.modified(key)` (WATCH, dirty counter);
//! - delete collections that become empty (`cx.ks.remove_if_empty`).

pub mod acl;
pub mod bitmap;
pub mod client;
pub mod command;
pub mod config;
pub mod connection;
pub mod dump;
pub mod function;
pub mod geo;
pub mod hash;
pub mod hll;
pub mod info;
pub mod keys;
pub mod list;
pub mod module;
pub mod persist;
pub mod pubsub;
pub mod repl;
pub mod scan;
pub mod script;
pub mod server;
pub mod set;
pub mod sort;
pub mod stream;
pub mod string;
pub mod txn;
pub mod zset;

use crate::client::Client;
use crate::keyspace::{Access, Entry, Shard, StrValue, Value};
use crate::server::Server;
use crate::types::{hash::Hash, list::List, set::Set, stream::Stream, zset::ZSet};
use bytes::Bytes;
use ferrite_commands::{key_hash_slot, table, CommandMeta};
use ferrite_resp::ReplyBuf;
use smallvec::SmallVec;
use std::borrow::Cow;

/// An error reply. The text includes the error code (`ERR ...`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CmdError(pub Cow<'static, str>);

pub type CmdResult = Result<(), CmdError>;

impl CmdError {
    pub const fn st(s: &'static str) -> CmdError {
        CmdError(Cow::Borrowed(s))
    }
    /// `ERR <msg>`
    pub fn err(msg: impl std::fmt::Display) -> CmdError {
        CmdError(Cow::Owned(format!("ERR {msg}")))
    }
    /// A full error line with its own code.
    pub fn raw(msg: impl Into<String>) -> CmdError {
        CmdError(Cow::Owned(msg.into()))
    }
}

pub const WRONGTYPE: CmdError = CmdError::st("WRONGTYPE Operation against a key holding the wrong kind of value");
pub const SYNTAX: CmdError = CmdError::st("ERR syntax error");
pub const NOT_INT: CmdError = CmdError::st("ERR value is not an integer or out of range");
pub const NOT_FLOAT: CmdError = CmdError::st("ERR value is not a valid float");
pub const OVERFLOW: CmdError = CmdError::st("ERR increment or decrement would overflow");
pub const NO_KEY: CmdError = CmdError::st("ERR no such key");
pub const OUT_OF_RANGE: CmdError = CmdError::st("ERR index out of range");
pub const UNDECLARED: CmdError = CmdError::st("ERR internal error: command touched a key it did not declare");

/// How a command locks the keyspace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lock {
    /// Touches no keys.
    None,
    /// Touches exactly the keys its key specifications name.
    Keys,
    /// Needs a consistent view of everything (or keys it cannot declare).
    All,
}

pub type Handler = fn(&mut Cx<'_, '_>) -> CmdResult;

/// One implemented command.
pub struct CmdImpl {
    /// Lowercase name as in the Redis command table.
    pub name: &'static str,
    pub handler: Handler,
    pub lock: Lock,
}

/// A command as dispatch sees it: our implementation plus Redis's metadata.
pub struct Cmd {
    pub imp: &'static CmdImpl,
    /// Redis's metadata for the command (the table is process-static).
    pub meta: &'static CommandMeta,
}

pub struct Registry {
    map: hashbrown::HashMap<&'static str, Cmd, foldhash::fast::RandomState>,
}

/// Every family's command list.
pub fn families() -> [&'static [CmdImpl]; 26] {
    [
        acl::COMMANDS,
        geo::COMMANDS,
        hll::COMMANDS,
        stream::COMMANDS,
        bitmap::COMMANDS,
        client::COMMANDS,
        command::COMMANDS,
        config::COMMANDS,
        info::COMMANDS,
        sort::COMMANDS,
        connection::COMMANDS,
        server::COMMANDS,
        keys::COMMANDS,
        string::COMMANDS,
        list::COMMANDS,
        hash::COMMANDS,
        set::COMMANDS,
        zset::COMMANDS,
        txn::COMMANDS,
        pubsub::COMMANDS,
        dump::COMMANDS,
        persist::COMMANDS,
        script::COMMANDS,
        function::COMMANDS,
        repl::COMMANDS,
        module::COMMANDS,
    ]
}

impl Registry {
    pub fn build() -> Registry {
        let t = table();
        let mut map = hashbrown::HashMap::with_hasher(foldhash::fast::RandomState::default());
        for fam in families() {
            for imp in fam {
                match t.commands.get(imp.name) {
                    Some(meta) => {
                        map.insert(imp.name, Cmd { imp, meta });
                    }
                    None => eprintln!("ferrite: no Redis metadata for command '{}', not registered", imp.name),
                }
            }
        }
        Registry { map }
    }

    /// The table after redis.conf's `rename-command` lines (already validated at start-up; one that fails here
    /// is skipped).
    pub fn with_renames(renames: &[(Vec<u8>, Vec<u8>)]) -> Registry {
        let mut r = Registry::build();
        for (old, new) in renames {
            let _ = r.rename(old, new);
        }
        r
    }

    /// `rename-command OLD NEW` as Redis applies it: OLD is looked up (case-insensitively) and removed, then the
    /// same command is added under NEW unless NEW is empty. The command keeps its own name in replies (COMMAND,
    /// error messages), as in Redis. Errors are Redis's config-file error texts.
    pub fn rename(&mut self, old: &[u8], new: &[u8]) -> Result<(), &'static str> {
        let old = String::from_utf8_lossy(old).to_ascii_lowercase();
        let cmd = self.map.remove(old.as_str()).ok_or("No such command in rename-command")?;
        if new.is_empty() {
            return Ok(());
        }
        let new = String::from_utf8_lossy(new).to_ascii_lowercase();
        if self.map.contains_key(new.as_str()) {
            return Err("Target command name already exists");
        }
        // Start-up configuration only: a handful of names for the life of the process.
        let key: &'static str = Box::leak(new.into_boxed_str());
        self.map.insert(key, cmd);
        Ok(())
    }

    /// Case-insensitive lookup without allocation for short names.
    #[inline]
    pub fn get(&self, name: &[u8]) -> Option<&Cmd> {
        let mut buf = [0u8; 32];
        if name.len() > buf.len() {
            // Only names given by rename-command can be this long.
            return std::str::from_utf8(name).ok().and_then(|s| self.map.get(s.to_ascii_lowercase().as_str()));
        }
        for (d, s) in buf.iter_mut().zip(name) {
            *d = s.to_ascii_lowercase();
        }
        let s = std::str::from_utf8(&buf[..name.len()]).ok()?;
        self.map.get(s)
    }

    pub fn iter(&self) -> impl Iterator<Item = &Cmd> {
        self.map.values()
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }
}

/// The `lru` field after an access: the LRU clock, or Redis's LFU
/// counter update under an LFU policy.
#[inline]
pub fn touch_lru(srv: &Server, lru: u32, now: i64) -> u32 {
    if crate::evict::policy(srv).is_lfu() {
        let t = &srv.tun;
        crate::evict::lfu_touch(
            lru,
            now,
            t.lfu_log_factor.load(std::sync::atomic::Ordering::Relaxed) as u32,
            t.lfu_decay_time.load(std::sync::atomic::Ordering::Relaxed) as u32,
        )
    } else {
        crate::server::lru_of(now)
    }
}

/// The `lru` field of a new key.
#[inline]
pub fn new_lru(srv: &Server, now: i64) -> u32 {
    if crate::evict::policy(srv).is_lfu() {
        crate::evict::lfu_init(now)
    } else {
        crate::server::lru_of(now)
    }
}

/// The keyspace as one command sees it.
pub struct Ks<'a, 's> {
    pub srv: &'s Server,
    pub acc: &'a mut Access<'s>,
    /// Selected database.
    pub db: usize,
    /// Command start time in unix ms (Redis caches it per command too).
    pub now: i64,
    /// Hash slots already computed by dispatch for the command's key
    /// arguments, by argument address: CRC16 runs once per key per command.
    pub slots: SlotCache,
}

/// (argument address, length, slot) for the keys of the current command.
#[derive(Default)]
pub struct SlotCache(pub SmallVec<[(usize, usize, u16); 4]>);

impl SlotCache {
    #[inline]
    pub fn slot_of(&self, key: &[u8]) -> u16 {
        let id = (key.as_ptr() as usize, key.len());
        for &(p, l, s) in &self.0 {
            if (p, l) == id {
                return s;
            }
        }
        key_hash_slot(key)
    }
}

macro_rules! typed_getters {
    ($get:ident, $create:ident, $variant:ident, $ty:ty) => {
        /// The live value at `key` if it has this type; WRONGTYPE otherwise.
        pub fn $get(&mut self, key: &[u8]) -> Result<Option<&mut $ty>, CmdError> {
            match self.lookup(key)? {
                None => Ok(None),
                Some(e) => match &mut e.value {
                    Value::$variant(v) => Ok(Some(v)),
                    _ => Err(WRONGTYPE),
                },
            }
        }

        /// Like the getter, creating an empty value when the key is missing.
        pub fn $create(&mut self, key: &[u8]) -> Result<&mut $ty, CmdError> {
            if self.lookup(key)?.is_none() {
                self.insert(key, Value::$variant(Default::default()), 0)?;
            }
            match self.lookup(key)? {
                Some(Entry { value: Value::$variant(v), .. }) => Ok(v),
                Some(_) => Err(WRONGTYPE),
                None => Err(UNDECLARED),
            }
        }
    };
}

impl<'a, 's> Ks<'a, 's> {
    /// The locked shard for `key` in `db`, and the key's slot.
    #[inline]
    pub fn shard_in(&mut self, db: usize, key: &[u8]) -> Result<(&mut Shard, u16), CmdError> {
        let slot = self.slots.slot_of(key);
        match self.acc.shard(db, slot) {
            Some(s) => Ok((s, slot)),
            None => Err(UNDECLARED),
        }
    }

    /// Look up a live key in `db`; an expired key is deleted on the way.
    pub fn lookup_in(&mut self, db: usize, key: &[u8]) -> Result<Option<&mut Entry>, CmdError> {
        let now = self.now;
        let srv = self.srv;
        let (shard, slot) = self.shard_in(db, key)?;
        let expired = match shard.get_raw(slot, key) {
            None => return Ok(None),
            Some(e) => e.is_expired(now),
        };
        // A replica deletes nothing itself: an expired key is hidden from
        // clients and live for the master's stream (Redis's expireIfNeeded).
        let replica = if expired { crate::persist::replica::hide_expired(srv) } else { None };
        if replica == Some(true) {
            return Ok(None);
        }
        if expired && replica.is_none() {
            // Like Redis, nothing is deleted while writes are paused.
            if srv.paused.load(std::sync::atomic::Ordering::Relaxed) && srv.pause_until(true).is_some() {
                return Ok(None);
            }
            shard.remove(slot, key);
            srv.store.dbs[db].signal_expired_deleted(key);
            crate::persist::propagate::expired(srv, db, key);
            crate::cmd::client::tracking::invalidate_by_server(srv, key);
            crate::stats::Stats::add(&srv.stats.expired_keys, 1);
            crate::notify::notify(srv, crate::notify::EXPIRED, "expired", key, db);
            return Ok(None);
        }
        let e = shard.get_raw(slot, key).ok_or(UNDECLARED)?;
        e.lru = touch_lru(srv, e.lru, now);
        Ok(Some(e))
    }

    /// Look up a live key in the selected db.
    #[inline]
    pub fn lookup(&mut self, key: &[u8]) -> Result<Option<&mut Entry>, CmdError> {
        self.lookup_in(self.db, key)
    }

    /// Lookup for a read command: counts keyspace hits and misses.
    pub fn lookup_read(&mut self, key: &[u8]) -> Result<Option<&mut Entry>, CmdError> {
        let stats = &self.srv.stats;
        let (srv, db) = (self.srv, self.db);
        let r = self.lookup_in(db, key)?;
        if r.is_none() {
            crate::notify::notify(srv, crate::notify::KEY_MISS, "keymiss", key, db);
        }
        crate::stats::Stats::add(if r.is_some() { &stats.keyspace_hits } else { &stats.keyspace_misses }, 1);
        Ok(r)
    }

    /// Does a live key exist?
    pub fn exists(&mut self, key: &[u8]) -> Result<bool, CmdError> {
        Ok(self.lookup(key)?.is_some())
    }

    /// Store `value` at `key` in `db` with the given absolute expiry
    /// (0 = none), replacing any previous value. Signals the modification.
    pub fn insert_in(&mut self, db: usize, key: &[u8], value: Value, expire_at: i64) -> Result<(), CmdError> {
        let lru = new_lru(self.srv, self.now);
        let (now, srv) = (self.now, self.srv);
        let (shard, slot) = self.shard_in(db, key)?;
        let old = shard.put_value(slot, key, value, expire_at, lru);
        // Replacing a logically expired key: Redis expires it first (its
        // lookup before the write), then adds the key anew.
        let was_expired = old.as_ref().is_some_and(|(_, x)| *x != 0 && *x < now);
        if was_expired {
            srv.store.dbs[db].signal_expired_deleted(key);
            crate::persist::propagate::expired(srv, db, key);
            crate::cmd::client::tracking::invalidate_by_server(srv, key);
            crate::stats::Stats::add(&srv.stats.expired_keys, 1);
        }
        self.modified_in(db, key);
        if was_expired {
            crate::notify::notify(srv, crate::notify::EXPIRED, "expired", key, db);
        }
        // "new" (class n) when the key did not exist.
        if old.is_none() || was_expired {
            crate::notify::notify(srv, crate::notify::NEW, "new", key, db);
        }
        Ok(())
    }

    pub fn insert(&mut self, key: &[u8], value: Value, expire_at: i64) -> Result<(), CmdError> {
        self.insert_in(self.db, key, value, expire_at)
    }

    /// Replace the value of `key`, keeping its TTL if the key was live.
    pub fn insert_keep_ttl(&mut self, key: &[u8], value: Value) -> Result<(), CmdError> {
        let ttl = self.lookup(key)?.map_or(0, |e| e.expire_at);
        self.insert(key, value, ttl)
    }

    /// Remove a live key from `db`; returns its entry.
    pub fn remove_in(&mut self, db: usize, key: &[u8]) -> Result<Option<Box<Entry>>, CmdError> {
        if self.lookup_in(db, key)?.is_none() {
            return Ok(None);
        }
        let (shard, slot) = self.shard_in(db, key)?;
        let e = shard.remove(slot, key);
        if e.is_some() {
            self.modified_in(db, key);
        }
        Ok(e)
    }

    pub fn remove(&mut self, key: &[u8]) -> Result<Option<Box<Entry>>, CmdError> {
        self.remove_in(self.db, key)
    }

    /// Redis's `dbDelete` for a key the command did not look up (a store
    /// destination whose result is empty): removes it even if it is
    /// logically expired, publishing "del" (not "expired") when something
    /// was removed. Returns whether it was.
    pub fn delete_unchecked(&mut self, key: &[u8]) -> Result<bool, CmdError> {
        let db = self.db;
        let (shard, slot) = self.shard_in(db, key)?;
        let removed = shard.remove(slot, key).is_some();
        if removed {
            self.modified_in(db, key);
            self.notify(crate::notify::GENERIC, "del", key);
        }
        Ok(removed)
    }

    /// Delete `key` if it holds an empty collection. Returns true if deleted.
    pub fn remove_if_empty(&mut self, key: &[u8]) -> Result<bool, CmdError> {
        let empty = self.lookup(key)?.is_some_and(|e| e.value.is_empty_collection());
        if empty {
            let (shard, slot) = self.shard_in(self.db, key)?;
            shard.remove(slot, key);
            self.notify(crate::notify::GENERIC, "del", key);
        }
        Ok(empty)
    }

    /// Set (or clear with 0) the absolute expiry of a live key.
    pub fn set_expire(&mut self, key: &[u8], at: i64) -> Result<bool, CmdError> {
        if self.lookup(key)?.is_none() {
            return Ok(false);
        }
        let (shard, slot) = self.shard_in(self.db, key)?;
        Ok(shard.set_expire(slot, key, at))
    }

    /// Publish a keyspace notification for `key` in the selected db
    /// (`class` from `crate::notify`, e.g. `notify::LIST`, event "lpush").
    #[inline]
    pub fn notify(&self, class: u32, event: &str, key: &[u8]) {
        crate::notify::notify(self.srv, class, event, key, self.db)
    }

    /// Signal that `key` in the selected db changed (WATCH, dirty counter).
    #[inline]
    pub fn modified(&self, key: &[u8]) {
        self.modified_in(self.db, key)
    }

    #[inline]
    pub fn modified_in(&self, db: usize, key: &[u8]) {
        self.srv.store.dbs[db].signal_modified(key);
        crate::cmd::client::tracking::invalidate(self.srv, key);
        self.srv.stats.dirty.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        crate::persist::propagate::note_dirty();
    }

    typed_getters!(list, list_or_create, List, Box<List>);
    typed_getters!(hash, hash_or_create, Hash, Box<Hash>);
    typed_getters!(set, set_or_create, Set, Box<Set>);
    typed_getters!(zset, zset_or_create, ZSet, Box<ZSet>);
    typed_getters!(stream, stream_or_create, Stream, Box<Stream>);

    /// The live string at `key`; WRONGTYPE for other types.
    pub fn string(&mut self, key: &[u8]) -> Result<Option<&mut StrValue>, CmdError> {
        match self.lookup(key)? {
            None => Ok(None),
            Some(e) => match &mut e.value {
                Value::Str(s) => Ok(Some(s)),
                _ => Err(WRONGTYPE),
            },
        }
    }
}

/// Everything a command handler gets.
pub struct Cx<'a, 's> {
    pub srv: &'s Server,
    pub client: &'a mut Client,
    pub out: &'a mut ReplyBuf,
    pub ks: Ks<'a, 's>,
    pub args: &'a [Bytes],
    pub cmd: &'s Cmd,
    /// Running inside EXEC: blocking commands must not block.
    pub in_exec: bool,
}

impl<'a, 's> Cx<'a, 's> {
    /// A blocking command found nothing: block on `keys` until `deadline_ms`
    /// (None = forever), or, inside MULTI/EXEC, reply the timeout reply now.
    pub fn block_on(&mut self, keys: Vec<Bytes>, deadline_ms: Option<i64>, null_array: bool) {
        if self.in_exec {
            if null_array {
                self.out.null_array();
            } else {
                self.out.null();
            }
            return;
        }
        self.client.block = Some(crate::client::BlockRequest { keys, deadline_ms, null_array, rerun: None });
    }

    /// Like [`Cx::block_on`], re-running `rerun` instead of the command as
    /// sent when a key becomes ready.
    pub fn block_on_rerun(&mut self, keys: Vec<Bytes>, deadline_ms: Option<i64>, rerun: Vec<Bytes>) {
        self.block_on(keys, deadline_ms, true);
        if let Some(b) = self.client.block.as_mut() {
            b.rerun = Some(rerun);
        }
    }

    /// Parse a blocking timeout in seconds (Redis's `getTimeoutFromObjectOrReply`
    /// with UNIT_SECONDS) into an absolute deadline; 0 means forever.
    pub fn timeout_arg(&self, i: usize) -> Result<Option<i64>, CmdError> {
        let v = ferrite_resp::num::parse_f64(self.arg(i))
            .filter(|_| crate::ldouble::is_valid(self.arg(i)))
            .ok_or_else(|| CmdError::err("timeout is not a float or out of range"))?;
        let ms = (v * 1000.0).ceil();
        // Redis converts with a C cast, which turns anything beyond the
        // i64 range (including inf) into a negative number on x86_64.
        let ms = if ms >= i64::MAX as f64 || ms.is_nan() { -1 } else { ms as i64 };
        if ms < 0 {
            return Err(CmdError::err("timeout is negative"));
        }
        if ms == 0 {
            return Ok(None);
        }
        if ms > i64::MAX - self.ks.now {
            return Err(CmdError::err("timeout is out of range"));
        }
        Ok(Some(self.ks.now + ms))
    }

    #[inline]
    pub fn arg(&self, i: usize) -> &'a [u8] {
        &self.args[i]
    }

    pub fn argc(&self) -> usize {
        self.args.len()
    }

    /// Argument `i` as a strict integer, or `ERR value is not an integer or out of range`.
    pub fn int_arg(&self, i: usize) -> Result<i64, CmdError> {
        parse_int(&self.args[i])
    }

    /// Argument `i` as a float (strtod rules), or `ERR value is not a valid float`.
    pub fn float_arg(&self, i: usize) -> Result<f64, CmdError> {
        parse_float(&self.args[i])
    }

    /// The lowercase command name (`config|get` for subcommands is not
    /// included; use `cmd.meta.name`).
    pub fn name(&self) -> &'static str {
        self.cmd.imp.name
    }

    /// `ERR wrong number of arguments for '<cmd>' command`
    pub fn arity_error(&self) -> CmdError {
        arity_error(&self.cmd.meta.name)
    }
}

pub fn arity_error(fullname: &str) -> CmdError {
    CmdError::err(format!("wrong number of arguments for '{fullname}' command"))
}

pub fn parse_int(b: &[u8]) -> Result<i64, CmdError> {
    ferrite_resp::num::parse_i64(b).ok_or(NOT_INT)
}

pub fn parse_float(b: &[u8]) -> Result<f64, CmdError> {
    ferrite_resp::num::parse_f64(b).ok_or(NOT_FLOAT)
}

/// Case-insensitive ASCII comparison for option names.
#[inline]
pub fn eq_ic(a: &[u8], b: &[u8]) -> bool {
    a.eq_ignore_ascii_case(b)
}
