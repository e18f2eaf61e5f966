//! Access control lists: users, their rules and permission checks
//! (Redis 7.0 ACLs, selectors included).
//!
//! Users live in [`Acl`]; each user's rules sit behind their own lock so
//! ACL SETUSER changes apply to connections already authenticated as that
//! user. The check on every command is a single atomic load while the
//! client runs as the unrestricted `default` user.

use crate::client::Client;
use crate::glob::glob_match;
use crate::server::Server;
use bytes::Bytes;
use ferrite_commands::{table, CommandMeta, Flags};
use parking_lot::{Mutex, RwLock};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

/// Category names in Redis's order (ACL CAT, COMMAND INFO).
pub const CATEGORIES: [&str; 21] = [
    "keyspace",
    "read",
    "write",
    "set",
    "sortedset",
    "list",
    "hash",
    "string",
    "bitmap",
    "hyperloglog",
    "geo",
    "stream",
    "pubsub",
    "admin",
    "fast",
    "slow",
    "blocking",
    "dangerous",
    "connection",
    "transaction",
    "scripting",
];

/// Category bit for a name (case-insensitive), 0 if unknown.
pub fn category_flag(name: &[u8]) -> u32 {
    CATEGORIES.iter().position(|c| c.as_bytes().eq_ignore_ascii_case(name)).map_or(0, |i| 1 << i)
}

// ---------------------------------------------------------------------------
// Command index: every command and subcommand of the Redis table, with an id.

pub struct CmdInfo {
    pub name: &'static str,
    pub cats: u32,
    pub subs: Vec<usize>,
    pub meta: &'static CommandMeta,
}

pub struct Index {
    pub cmds: Vec<CmdInfo>,
    by_name: HashMap<&'static str, usize>,
}

const BITS_WORDS: usize = 16;
/// Reserved bit: set only by +@all / allcommands ("future commands").
const FUTURE_BIT: usize = BITS_WORDS * 64 - 1;

pub fn index() -> &'static Index {
    static I: OnceLock<Index> = OnceLock::new();
    I.get_or_init(|| {
        let t = table();
        let mut names: Vec<&String> = t.commands.keys().collect();
        names.sort();
        let mut cmds = Vec::new();
        let mut by_name = HashMap::new();
        let cats = |m: &CommandMeta| {
            m.acl_categories.iter().map(|c| category_flag(c.trim_start_matches('@').as_bytes())).fold(0, |a, b| a | b)
        };
        for n in names {
            let meta = &t.commands[n];
            let id = cmds.len();
            by_name.insert(meta.name.as_str(), id);
            cmds.push(CmdInfo { name: meta.name.as_str(), cats: cats(meta), subs: Vec::new(), meta });
            let mut subs: Vec<&CommandMeta> = meta.subcommands.iter().collect();
            subs.sort_by(|a, b| a.name.cmp(&b.name));
            for s in subs {
                let sid = cmds.len();
                by_name.insert(s.name.as_str(), sid);
                cmds.push(CmdInfo { name: s.name.as_str(), cats: cats(s), subs: Vec::new(), meta: s });
                cmds[id].subs.push(sid);
            }
        }
        assert!(cmds.len() < FUTURE_BIT, "command table larger than the ACL bitmap");
        Index { cmds, by_name }
    })
}

impl Index {
    /// Redis's `lookupCommandBySds` on the original table: `cmd` or
    /// `container|sub`, case-insensitive.
    pub fn lookup(&self, name: &[u8]) -> Option<usize> {
        let lower = String::from_utf8_lossy(name).to_ascii_lowercase();
        let mut parts = lower.split('|');
        let base = parts.next()?;
        let sub = parts.next();
        if parts.next().is_some() {
            return None;
        }
        let id = *self.by_name.get(base)?;
        match sub {
            None => Some(id),
            Some(s) => {
                if self.cmds[id].subs.is_empty() {
                    return None;
                }
                self.by_name.get(format!("{base}|{s}").as_str()).copied()
            }
        }
    }

    pub fn id_of(&self, meta: &CommandMeta) -> Option<usize> {
        self.by_name.get(meta.name.as_str()).copied()
    }
}

// ---------------------------------------------------------------------------
// Selectors and users.

pub const PERM_READ: u8 = 1;
pub const PERM_WRITE: u8 = 2;
pub const PERM_ALL: u8 = 3;

#[derive(Clone, Default)]
pub struct Selector {
    pub root: bool,
    pub allkeys: bool,
    pub allchannels: bool,
    pub allcommands: bool,
    bits: [u64; BITS_WORDS],
    firstargs: BTreeMap<usize, Vec<String>>,
    pub patterns: Vec<(u8, Vec<u8>)>,
    pub channels: Vec<Vec<u8>>,
}

/// Why ACL SETUSER rejected an operation (Redis's errno values).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpError {
    NoEnt,
    Inval,
    Exist,
    IsDir,
    NoDev,
    BadMsg,
    Child,
}

impl OpError {
    pub fn message(self) -> &'static str {
        match self {
            OpError::NoEnt => "Unknown command or category name in ACL",
            OpError::Inval => "Syntax error",
            OpError::Exist => "Adding a pattern after the * pattern (or the 'allkeys' flag) is not valid and does not have any effect. Try 'resetkeys' to start with an empty list of patterns",
            OpError::IsDir => "Adding a pattern after the * pattern (or the 'allchannels' flag) is not valid and does not have any effect. Try 'resetchannels' to start with an empty list of channels",
            OpError::NoDev => "The password you are trying to remove from the user does not exist",
            OpError::BadMsg => "The password hash must be exactly 64 characters and contain only lowercase hexadecimal characters",
            OpError::Child => "Allowing first-arg of a subcommand is not supported",
        }
    }
}

fn has_spaces(s: &[u8]) -> bool {
    s.iter().any(|&c| c == 0 || c.is_ascii_whitespace() || c == 0x0b)
}

impl Selector {
    fn new(root: bool) -> Selector {
        Selector { root, ..Default::default() }
    }

    fn bit(&self, id: usize) -> bool {
        self.bits[id / 64] & (1 << (id % 64)) != 0
    }

    fn set_bit(&mut self, id: usize, v: bool) {
        if v {
            self.bits[id / 64] |= 1 << (id % 64);
        } else {
            self.bits[id / 64] &= !(1 << (id % 64));
            self.allcommands = false;
        }
    }

    fn future(&self) -> bool {
        self.bit(FUTURE_BIT)
    }

    fn change_perm(&mut self, id: usize, allow: bool) {
        self.set_bit(id, allow);
        self.firstargs.remove(&id);
        for &s in &index().cmds[id].subs {
            self.set_bit(s, allow);
        }
    }

    fn set_category(&mut self, flag: u32, allow: bool) {
        for (id, c) in index().cmds.iter().enumerate() {
            if c.cats & flag != 0 {
                self.change_perm(id, allow);
            }
        }
    }

    fn count_category(&self, flag: u32) -> (usize, usize) {
        let (mut on, mut off) = (0, 0);
        for (id, c) in index().cmds.iter().enumerate() {
            if c.cats & flag != 0 {
                if self.bit(id) {
                    on += 1;
                } else {
                    off += 1;
                }
            }
        }
        (on, off)
    }

    fn all_commands(&mut self, on: bool) {
        self.bits = if on { [u64::MAX; BITS_WORDS] } else { [0; BITS_WORDS] };
        self.allcommands = on;
        self.firstargs.clear();
    }

    /// Apply one selector rule (Redis's `ACLSetSelector`).
    pub fn apply(&mut self, op: &[u8]) -> Result<(), OpError> {
        let is = |s: &str| op.eq_ignore_ascii_case(s.as_bytes());
        if is("allkeys") || is("~*") {
            self.allkeys = true;
            self.patterns.clear();
        } else if is("resetkeys") {
            self.allkeys = false;
            self.patterns.clear();
        } else if is("allchannels") || is("&*") {
            self.allchannels = true;
            self.channels.clear();
        } else if is("resetchannels") {
            self.allchannels = false;
            self.channels.clear();
        } else if is("allcommands") || is("+@all") {
            self.all_commands(true);
        } else if is("nocommands") || is("-@all") {
            self.all_commands(false);
        } else if op[0] == b'~' || op[0] == b'%' {
            if self.allkeys {
                return Err(OpError::Exist);
            }
            let mut flags = 0u8;
            let mut offset = 1;
            if op[0] == b'%' {
                while offset < op.len() {
                    let c = op[offset].to_ascii_uppercase();
                    if c == b'R' && flags & PERM_READ == 0 {
                        flags |= PERM_READ;
                    } else if c == b'W' && flags & PERM_WRITE == 0 {
                        flags |= PERM_WRITE;
                    } else if op[offset] == b'~' {
                        offset += 1;
                        break;
                    } else {
                        return Err(OpError::Inval);
                    }
                    offset += 1;
                }
                if flags == 0 {
                    return Err(OpError::Inval);
                }
            } else {
                flags = PERM_ALL;
            }
            let pat = &op[offset..];
            if has_spaces(pat) {
                return Err(OpError::Inval);
            }
            match self.patterns.iter_mut().find(|(_, p)| p == pat) {
                Some((f, _)) => *f |= flags,
                None => self.patterns.push((flags, pat.to_vec())),
            }
            self.allkeys = false;
        } else if op[0] == b'&' {
            if self.allchannels {
                return Err(OpError::IsDir);
            }
            let pat = &op[1..];
            if has_spaces(pat) {
                return Err(OpError::Inval);
            }
            if !self.channels.iter().any(|p| p == pat) {
                self.channels.push(pat.to_vec());
            }
            self.allchannels = false;
        } else if op[0] == b'+' && op.get(1) != Some(&b'@') {
            let name = &op[1..];
            let idx = index();
            match name.iter().rposition(|&c| c == b'|') {
                None => {
                    let id = idx.lookup(name).ok_or(OpError::NoEnt)?;
                    self.change_perm(id, true);
                }
                Some(bar) => {
                    let (base, sub) = (&name[..bar], &name[bar + 1..]);
                    let id = idx.lookup(base).ok_or(OpError::NoEnt)?;
                    if idx.cmds[id].name.contains('|') {
                        return Err(OpError::Child);
                    }
                    if sub.is_empty() {
                        return Err(OpError::Inval);
                    }
                    if !idx.cmds[id].subs.is_empty() {
                        let sid = idx.lookup(name).ok_or(OpError::NoEnt)?;
                        self.change_perm(sid, true);
                    } else {
                        let sub = String::from_utf8_lossy(sub).into_owned();
                        let list = self.firstargs.entry(id).or_default();
                        if !list.iter().any(|s| s.eq_ignore_ascii_case(&sub)) {
                            list.push(sub);
                        }
                    }
                }
            }
        } else if op[0] == b'-' && op.get(1) != Some(&b'@') {
            let id = index().lookup(&op[1..]).ok_or(OpError::NoEnt)?;
            self.change_perm(id, false);
        } else if (op[0] == b'+' || op[0] == b'-') && op.get(1) == Some(&b'@') {
            let flag = category_flag(&op[2..]);
            if flag == 0 {
                return Err(OpError::NoEnt);
            }
            self.set_category(flag, op[0] == b'+');
        } else {
            return Err(OpError::Inval);
        }
        Ok(())
    }

    /// Redis's `ACLDescribeSelectorCommandRules`.
    pub fn describe_commands(&self) -> String {
        let mut rules = String::new();
        let additive = !self.future();
        let mut fake = Selector::new(false);
        if additive {
            rules.push_str("-@all ");
            fake.all_commands(false);
        } else {
            rules.push_str("+@all ");
            fake.all_commands(true);
        }
        let mut temp = Selector::new(false);
        temp.bits = self.bits;
        let mut applied = [false; CATEGORIES.len()];
        loop {
            let mut best = None;
            let (mut mindiff, mut maxsame) = (usize::MAX, 0);
            for (j, _) in CATEGORIES.iter().enumerate() {
                if applied[j] {
                    continue;
                }
                let (on, off) = temp.count_category(1 << j);
                let (diff, same) = if additive { (off, on) } else { (on, off) };
                if same > diff && (diff < mindiff || (diff == mindiff && same > maxsame)) {
                    best = Some(j);
                    mindiff = diff;
                    maxsame = same;
                }
            }
            let Some(j) = best else { break };
            fake.set_category(1 << j, additive);
            temp.set_category(1 << j, !additive);
            rules.push(if additive { '+' } else { '-' });
            rules.push('@');
            rules.push_str(CATEGORIES[j]);
            rules.push(' ');
            applied[j] = true;
        }
        let idx = index();
        for (id, c) in idx.cmds.iter().enumerate() {
            let userbit = self.bit(id);
            if userbit != fake.bit(id) {
                rules.push(if userbit { '+' } else { '-' });
                rules.push_str(c.name);
                rules.push(' ');
                fake.change_perm(id, userbit);
            }
            if !userbit {
                if let Some(list) = self.firstargs.get(&id) {
                    for a in list {
                        let _ = write!(rules, "+{}|{} ", c.name, a);
                    }
                }
            }
        }
        rules.pop();
        rules
    }

    fn pattern_string(flags: u8, p: &[u8], out: &mut Vec<u8>) {
        out.extend_from_slice(match flags {
            PERM_READ => b"%R~",
            PERM_WRITE => b"%W~",
            _ => b"~",
        });
        out.extend_from_slice(p);
    }

    /// Keys as ACL GETUSER shows them.
    pub fn keys_string(&self) -> Vec<u8> {
        if self.allkeys {
            return b"~*".to_vec();
        }
        let mut out = Vec::new();
        for (i, (f, p)) in self.patterns.iter().enumerate() {
            if i > 0 {
                out.push(b' ');
            }
            Self::pattern_string(*f, p, &mut out);
        }
        out
    }

    /// Channels as ACL GETUSER shows them.
    pub fn channels_string(&self) -> Vec<u8> {
        if self.allchannels {
            return b"&*".to_vec();
        }
        let mut out = Vec::new();
        for (i, p) in self.channels.iter().enumerate() {
            if i > 0 {
                out.push(b' ');
            }
            out.push(b'&');
            out.extend_from_slice(p);
        }
        out
    }

    /// Redis's `ACLDescribeSelector`.
    fn describe(&self, out: &mut Vec<u8>) {
        if self.allkeys {
            out.extend_from_slice(b"~* ");
        } else {
            for (f, p) in &self.patterns {
                Self::pattern_string(*f, p, out);
                out.push(b' ');
            }
        }
        if self.allchannels {
            out.extend_from_slice(b"&* ");
        } else {
            out.extend_from_slice(b"resetchannels ");
            for p in &self.channels {
                out.push(b'&');
                out.extend_from_slice(p);
                out.push(b' ');
            }
        }
        out.extend_from_slice(self.describe_commands().as_bytes());
    }

    fn check_key(&self, key: &[u8], spec_flags: u8) -> bool {
        if self.allkeys {
            return true;
        }
        self.patterns.iter().any(|(f, p)| f & spec_flags == spec_flags && glob_match(p, key, false))
    }

    fn check_channel(&self, ch: &[u8], is_pattern: bool) -> bool {
        self.allchannels || self.channels.iter().any(|p| if is_pattern { p == ch } else { glob_match(p, ch, false) })
    }

    /// Redis's `ACLSelectorCheckCmd`: Err((reason, argument position)).
    fn check_cmd(&self, id: usize, meta: &CommandMeta, args: &[Bytes], keys: &[(usize, u8)]) -> Result<(), Denied> {
        if !self.allcommands && !meta.flags.has(Flags::NO_AUTH) && !self.bit(id) {
            let idx = if meta.name.contains('|') { 2 } else { 1 };
            let ok = args.len() >= 2
                && self
                    .firstargs
                    .get(&id)
                    .zip(args.get(idx))
                    .is_some_and(|(list, a)| list.iter().any(|s| s.as_bytes().eq_ignore_ascii_case(a)));
            if !ok {
                return Err(Denied::Cmd);
            }
        }
        if !self.allkeys {
            for &(pos, flags) in keys {
                if !self.check_key(&args[pos], flags) {
                    return Err(Denied::Key(pos));
                }
            }
        }
        if !self.allchannels {
            if let Some((start, count, pattern)) = channel_spec(meta) {
                let end = if count < 0 { args.len() } else { (start + count as usize).min(args.len()) };
                for (pos, ch) in args.iter().enumerate().take(end).skip(start) {
                    if !self.check_channel(ch, pattern) {
                        return Err(Denied::Channel(pos));
                    }
                }
            }
        }
        Ok(())
    }
}

/// The channel arguments of PUBLISH/SUBSCRIBE and friends that ACLs check:
/// (first position, count or -1 for all, arguments are patterns).
fn channel_spec(meta: &CommandMeta) -> Option<(usize, i64, bool)> {
    match meta.name.as_str() {
        "subscribe" | "ssubscribe" => Some((1, -1, false)),
        "psubscribe" => Some((1, -1, true)),
        "publish" | "spublish" => Some((1, 1, false)),
        _ => None,
    }
}

/// Keys of a call with the ACL permission they need (read/write bits),
/// from the key specs (Redis's `getKeysFromCommandWithSpecs`).
pub fn keys_with_flags(meta: &CommandMeta, args: &[Bytes]) -> Vec<(usize, u8)> {
    // Key specs with variable flags: Redis asks the command's own key finder.
    match meta.name.as_str() {
        "set" if args.len() > 1 => {
            let get = args.iter().skip(3).any(|a| a.eq_ignore_ascii_case(b"get"));
            return vec![(1, if get { PERM_ALL } else { PERM_WRITE })];
        }
        "bitfield" if args.len() > 1 => {
            let mut readonly = true;
            let mut i = 2;
            while i < args.len() {
                let rem = args.len() - i - 1;
                let a = &args[i];
                if a.eq_ignore_ascii_case(b"get") && rem >= 2 {
                    i += 2;
                } else if (a.eq_ignore_ascii_case(b"set") || a.eq_ignore_ascii_case(b"incrby")) && rem >= 3 {
                    readonly = false;
                    break;
                } else if a.eq_ignore_ascii_case(b"overflow") && rem >= 1 {
                    i += 1;
                } else {
                    readonly = false;
                    break;
                }
                i += 1;
            }
            return vec![(1, if readonly { PERM_READ } else { PERM_ALL })];
        }
        _ => {}
    }
    // The key specs find the keys (shared with dispatch's locking); each
    // key's permission comes from the flags of the spec that found it.
    let Ok(found) = ferrite_commands::keys::get_keys_by_spec(meta, args) else {
        return fallback_keys(meta, args);
    };
    let mut out = Vec::with_capacity(found.len());
    for (pos, spec_idx) in found {
        let spec = &meta.key_specs[spec_idx];
        if spec.has_flag("incomplete") {
            return fallback_keys(meta, args);
        }
        if spec.has_flag("not_key") {
            continue;
        }
        let mut perm = 0u8;
        if spec.has_flag("access") {
            perm |= PERM_READ;
        }
        if spec.has_flag("insert") || spec.has_flag("delete") || spec.has_flag("update") {
            perm |= PERM_WRITE;
        }
        out.push((pos, perm));
    }
    out
}

/// Redis's getkeys procedures, used when the key specs can't tell (unknown
/// or incomplete specs, invalid key counts): SORT and MIGRATE find their
/// keys by scanning the arguments; the others then name no keys.
fn fallback_keys(meta: &CommandMeta, args: &[Bytes]) -> Vec<(usize, u8)> {
    let is = |i: usize, w: &[u8]| args[i].eq_ignore_ascii_case(w);
    match meta.name.as_str() {
        "sort_ro" if args.len() > 1 => vec![(1, PERM_READ)],
        "sort" if args.len() > 1 => {
            let mut out = vec![(1, PERM_READ)];
            let mut store = None;
            let mut i = 2;
            while i < args.len() {
                if is(i, b"limit") {
                    i += 2;
                } else if is(i, b"get") || is(i, b"by") {
                    i += 1;
                } else if is(i, b"store") && i + 1 < args.len() {
                    store = Some(i + 1);
                }
                i += 1;
            }
            if let Some(s) = store {
                out.push((s, PERM_WRITE));
            }
            out
        }
        "migrate" if args.len() > 3 => {
            let (mut first, mut num) = (3, 1);
            if args.len() > 6 {
                let mut i = 6;
                while i < args.len() {
                    if is(i, b"keys") {
                        if args[3].is_empty() {
                            first = i + 1;
                            num = args.len() - first;
                        }
                        break;
                    }
                    if is(i, b"auth") {
                        i += 1;
                    } else if is(i, b"auth2") {
                        i += 2;
                    }
                    i += 1;
                }
            }
            (first..first + num).map(|i| (i, PERM_ALL)).collect()
        }
        _ => Vec::new(),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Denied {
    Cmd,
    Key(usize),
    Channel(usize),
}

impl Denied {
    fn rank(self) -> (u8, usize) {
        match self {
            Denied::Cmd => (1, 0),
            Denied::Key(p) => (2, p),
            Denied::Channel(p) => (4, p),
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Default)]
pub enum Sanitize {
    #[default]
    Unset,
    Skip,
    Sanitize,
}

#[derive(Clone)]
pub struct Rules {
    pub enabled: bool,
    pub nopass: bool,
    pub sanitize: Sanitize,
    /// SHA-256 hex of each password.
    pub passwords: Vec<String>,
    /// The root selector first.
    pub selectors: Vec<Selector>,
}

/// `acl-pubsub-default allchannels`: new users and `reset` get `&*`
/// (Redis 7.0's default is `resetchannels`).
pub static PUBSUB_DEFAULT_ALL: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

fn pubsub_default_all() -> bool {
    PUBSUB_DEFAULT_ALL.load(std::sync::atomic::Ordering::Relaxed)
}

impl Default for Rules {
    fn default() -> Self {
        let mut root = Selector::new(true);
        root.allchannels = pubsub_default_all();
        Rules { enabled: false, nopass: false, sanitize: Sanitize::Unset, passwords: Vec::new(), selectors: vec![root] }
    }
}

pub fn hash_password(p: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    let h = Sha256::digest(p);
    let mut s = String::with_capacity(64);
    for b in h {
        let _ = write!(s, "{b:02x}");
    }
    s
}

fn valid_hash(h: &[u8]) -> bool {
    h.len() == 64 && h.iter().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f'))
}

/// Split "(a b c)" into its rules (a plain whitespace split).
fn split_selector(op: &[u8]) -> Vec<&[u8]> {
    op[1..op.len() - 1].split(|c| c.is_ascii_whitespace()).filter(|s| !s.is_empty()).collect()
}

impl Rules {
    pub fn root(&self) -> &Selector {
        &self.selectors[0]
    }

    /// Apply one user rule (Redis's `ACLSetUser`).
    pub fn apply(&mut self, op: &[u8]) -> Result<(), OpError> {
        if op.is_empty() {
            return Ok(());
        }
        let is = |s: &str| op.eq_ignore_ascii_case(s.as_bytes());
        if is("on") {
            self.enabled = true;
        } else if is("off") {
            self.enabled = false;
        } else if is("skip-sanitize-payload") {
            self.sanitize = Sanitize::Skip;
        } else if is("sanitize-payload") {
            self.sanitize = Sanitize::Sanitize;
        } else if is("nopass") {
            self.nopass = true;
            self.passwords.clear();
        } else if is("resetpass") {
            self.nopass = false;
            self.passwords.clear();
        } else if op[0] == b'>' || op[0] == b'#' {
            let h = if op[0] == b'>' {
                hash_password(&op[1..])
            } else {
                if !valid_hash(&op[1..]) {
                    return Err(OpError::BadMsg);
                }
                String::from_utf8_lossy(&op[1..]).into_owned()
            };
            if !self.passwords.contains(&h) {
                self.passwords.push(h);
            }
            self.nopass = false;
        } else if op[0] == b'<' || op[0] == b'!' {
            let h = if op[0] == b'<' {
                hash_password(&op[1..])
            } else {
                if !valid_hash(&op[1..]) {
                    return Err(OpError::BadMsg);
                }
                String::from_utf8_lossy(&op[1..]).into_owned()
            };
            match self.passwords.iter().position(|p| *p == h) {
                Some(i) => {
                    self.passwords.remove(i);
                }
                None => return Err(OpError::NoDev),
            }
        } else if op[0] == b'(' && op[op.len() - 1] == b')' && op.len() >= 2 {
            let mut s = Selector::new(false);
            for r in split_selector(op) {
                s.apply(r)?;
            }
            self.selectors.push(s);
        } else if is("clearselectors") {
            self.selectors.truncate(1);
        } else if is("reset") {
            self.nopass = false;
            self.passwords.clear();
            let root = &mut self.selectors[0];
            root.allkeys = false;
            root.patterns.clear();
            root.allchannels = pubsub_default_all();
            root.channels.clear();
            self.enabled = false;
            self.sanitize = Sanitize::Sanitize;
            self.selectors.truncate(1);
            self.selectors[0].all_commands(false);
        } else {
            self.selectors[0].apply(op)?;
        }
        Ok(())
    }

    /// Redis's `ACLDescribeUser`.
    pub fn describe(&self) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(if self.enabled { b"on " } else { b"off " });
        if self.nopass {
            out.extend_from_slice(b"nopass ");
        }
        match self.sanitize {
            Sanitize::Skip => out.extend_from_slice(b"skip-sanitize-payload "),
            Sanitize::Sanitize => out.extend_from_slice(b"sanitize-payload "),
            Sanitize::Unset => {}
        }
        for p in &self.passwords {
            out.push(b'#');
            out.extend_from_slice(p.as_bytes());
            out.push(b' ');
        }
        for s in &self.selectors {
            if s.root {
                s.describe(&mut out);
            } else {
                out.extend_from_slice(b" (");
                s.describe(&mut out);
                out.push(b')');
            }
        }
        out
    }

    /// Redis's `ACLKillPubsubClientsIfNeeded` test: None when the new rules
    /// still allow every channel the old ones did; otherwise the channel
    /// patterns that subscribers of this user must still match.
    pub fn channels_revoked(old: &Rules, new: &Rules) -> Option<Vec<Vec<u8>>> {
        if new.selectors.iter().any(|s| s.allchannels) {
            return None;
        }
        let upcoming: Vec<Vec<u8>> = new.selectors.iter().flat_map(|s| s.channels.iter().cloned()).collect();
        let superset = old.selectors.iter().all(|s| !s.allchannels && s.channels.iter().all(|c| upcoming.contains(c)));
        if superset {
            None
        } else {
            Some(upcoming)
        }
    }

    /// Can this user run anything on any key and channel?
    fn unrestricted(&self) -> bool {
        let r = self.root();
        r.allcommands && r.allkeys && r.allchannels
    }

    /// Redis's `ACLCheckAllUserCommandPerm`.
    pub fn check(&self, meta: &CommandMeta, args: &[Bytes]) -> Result<(), Denied> {
        let Some(id) = index().id_of(meta) else { return Ok(()) };
        let needs_keys = self.selectors.iter().any(|s| !s.allkeys) && !meta.key_specs.is_empty();
        let keys = if needs_keys { keys_with_flags(meta, args) } else { Vec::new() };
        let mut worst = Denied::Cmd;
        for s in &self.selectors {
            match s.check_cmd(id, meta, args, &keys) {
                Ok(()) => return Ok(()),
                Err(e) => {
                    if e.rank() > worst.rank() {
                        worst = e;
                    }
                }
            }
        }
        Err(worst)
    }
}

pub struct User {
    pub name: String,
    pub rules: RwLock<Rules>,
}

// ---------------------------------------------------------------------------
// The ACL log.

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    Command,
    Key,
    Channel,
    Auth,
}

pub struct LogEntry {
    pub count: u64,
    pub reason: Reason,
    /// Where the denied command ran: `toplevel`, `multi` or `lua` (ACL LOG's `context`).
    pub context: &'static str,
    pub object: Vec<u8>,
    pub username: Vec<u8>,
    pub ctime_ms: i64,
    pub cinfo: String,
}

pub struct Acl {
    users: RwLock<BTreeMap<Vec<u8>, Arc<User>>>,
    pub default: Arc<User>,
    /// The default user may run anything: the per-command fast path.
    default_open: AtomicBool,
    pub log: Mutex<VecDeque<LogEntry>>,
    pub log_max_len: AtomicUsize,
}

impl Default for Acl {
    fn default() -> Self {
        Acl::new()
    }
}

fn default_rules() -> Rules {
    let mut r = Rules::default();
    for op in ["+@all", "~*", "&*", "on", "nopass"] {
        let _ = r.apply(op.as_bytes());
    }
    r
}

impl Acl {
    pub fn new() -> Acl {
        let default = Arc::new(User { name: "default".into(), rules: RwLock::new(default_rules()) });
        let mut users = BTreeMap::new();
        users.insert(b"default".to_vec(), default.clone());
        Acl {
            users: RwLock::new(users),
            default,
            default_open: AtomicBool::new(true),
            log: Mutex::new(VecDeque::new()),
            log_max_len: AtomicUsize::new(128),
        }
    }

    fn refresh_default(&self) {
        let open = self.default.rules.read().unrestricted();
        self.default_open.store(open, Ordering::Relaxed);
    }

    pub fn get(&self, name: &[u8]) -> Option<Arc<User>> {
        if name == b"default" {
            return Some(self.default.clone());
        }
        self.users.read().get(name).cloned()
    }

    pub fn user_names(&self) -> Vec<Vec<u8>> {
        self.users.read().keys().cloned().collect()
    }

    pub fn users(&self) -> Vec<Arc<User>> {
        self.users.read().values().cloned().collect()
    }

    /// Do new connections start unauthenticated? (default user not
    /// `nopass` or disabled).
    pub fn auth_required(&self) -> bool {
        let r = self.default.rules.read();
        !r.nopass || !r.enabled
    }

    pub fn default_nopass(&self) -> bool {
        self.default.rules.read().nopass
    }

    /// `requirepass`: reset the default user's passwords to this one (or nopass).
    pub fn set_default_password(&self, pass: Option<&[u8]>) {
        let mut r = self.default.rules.write();
        let _ = r.apply(b"resetpass");
        match pass {
            Some(p) => {
                let mut op = b">".to_vec();
                op.extend_from_slice(p);
                let _ = r.apply(&op);
            }
            None => {
                let _ = r.apply(b"nopass");
            }
        }
    }

    /// Redis's `ACLCheckUserCredentials`.
    pub fn check_credentials(&self, user: &[u8], pass: &[u8]) -> bool {
        let Some(u) = self.get(user) else { return false };
        let r = u.rules.read();
        if !r.enabled {
            return false;
        }
        if r.nopass {
            return true;
        }
        let h = hash_password(pass);
        let mut ok = false;
        for p in &r.passwords {
            // Compare every stored hash fully (no early exit on a byte).
            let diff = p.bytes().zip(h.bytes()).fold(0u8, |a, (x, y)| a | (x ^ y));
            ok |= diff == 0 && p.len() == h.len();
        }
        ok
    }

    /// ACL SETUSER: apply all rules to a copy, then commit (or nothing).
    /// Returns the channel patterns existing subscribers must still match
    /// when channel permissions were revoked.
    pub fn set_user(&self, name: &[u8], ops: &[&[u8]]) -> Result<Option<Vec<Vec<u8>>>, String> {
        let merged = merge_selector_args(ops)?;
        let existing = self.get(name);
        let mut tmp = match &existing {
            Some(u) => u.rules.read().clone(),
            None => Rules::default(),
        };
        for op in &merged {
            if let Err(e) = tmp.apply(op) {
                return Err(format!(
                    "Error in ACL SETUSER modifier '{}': {}",
                    String::from_utf8_lossy(op),
                    e.message()
                ));
            }
        }
        let mut revoked = None;
        match existing {
            Some(u) => {
                let mut r = u.rules.write();
                revoked = Rules::channels_revoked(&r, &tmp);
                *r = tmp;
            }
            None => {
                let u = Arc::new(User { name: String::from_utf8_lossy(name).into_owned(), rules: RwLock::new(tmp) });
                self.users.write().insert(name.to_vec(), u);
            }
        }
        self.refresh_default();
        Ok(revoked)
    }

    /// Remove users; returns how many existed.
    pub fn delete(&self, names: &[&[u8]]) -> usize {
        let mut m = self.users.write();
        names.iter().filter(|n| m.remove(**n).is_some()).count()
    }

    /// Replace every user from ACL file text (Redis's `ACLLoadFromFile`).
    /// Returns the names of the users that were replaced or removed.
    pub fn load_text(&self, text: &str, filename: &str) -> Result<Vec<Vec<u8>>, String> {
        let mut errors = String::new();
        let mut new: BTreeMap<Vec<u8>, Rules> = BTreeMap::new();
        for (i, line) in text.split('\n').enumerate() {
            let linenum = i + 1;
            let line = line.trim_matches(|c| c == ' ' || c == '\t' || c == '\r' || c == '\n');
            if line.is_empty() {
                continue;
            }
            let argv: Vec<&str> = line.split(' ').collect();
            if argv[0] != "user" || argv.len() < 2 {
                let _ =
                    write!(errors, "{filename}:{linenum} should start with user keyword followed by the username. ");
                continue;
            }
            if has_spaces(argv[1].as_bytes()) {
                let _ = write!(errors, "'{filename}:{linenum}: username '{}' contains invalid characters. ", argv[1]);
                continue;
            }
            if new.contains_key(argv[1].as_bytes()) {
                let _ = write!(errors, "WARNING: Duplicate user '{}' found on line {linenum}. ", argv[1]);
                continue;
            }
            let mut rules = Rules::default();
            let ops: Vec<&[u8]> = argv[2..].iter().map(|s| s.as_bytes()).collect();
            let merged = match merge_selector_args(&ops) {
                Ok(m) => m,
                Err(_) => {
                    let _ = write!(errors, "{filename}:{linenum}: Unmatched parenthesis in selector definition.");
                    Vec::new()
                }
            };
            let mut syntax_error = false;
            for op in &merged {
                let op: &[u8] = trim_bytes(op);
                if let Err(e) = rules.apply(op) {
                    if e == OpError::NoEnt {
                        let _ = write!(
                            errors,
                            "{filename}:{linenum}: Error in applying operation '{}': {}. ",
                            String::from_utf8_lossy(op),
                            e.message()
                        );
                    } else if !syntax_error {
                        let _ = write!(errors, "{filename}:{linenum}: {}. ", e.message());
                        syntax_error = true;
                    }
                }
            }
            new.insert(argv[1].as_bytes().to_vec(), rules);
        }
        if !errors.is_empty() {
            errors.push_str("WARNING: ACL errors detected, no change to the previously active ACL rules was performed");
            return Err(errors);
        }
        let default_rules = new.remove(b"default".as_slice()).unwrap_or_else(default_rules);
        *self.default.rules.write() = default_rules;
        let mut users = self.users.write();
        let old: Vec<Vec<u8>> = users.keys().filter(|k| k.as_slice() != b"default").cloned().collect();
        users.retain(|k, _| k.as_slice() == b"default");
        for (name, rules) in new {
            let u = Arc::new(User { name: String::from_utf8_lossy(&name).into_owned(), rules: RwLock::new(rules) });
            users.insert(name, u);
        }
        drop(users);
        self.refresh_default();
        Ok(old)
    }

    /// The ACL file text for ACL SAVE.
    pub fn save_text(&self) -> Vec<u8> {
        let mut out = Vec::new();
        for (name, u) in self.users.read().iter() {
            out.extend_from_slice(b"user ");
            out.extend_from_slice(name);
            out.push(b' ');
            out.extend_from_slice(&u.rules.read().describe());
            out.push(b'\n');
        }
        out
    }

    /// Redis's `addACLLogEntry`.
    pub fn add_log(&self, reason: Reason, context: &'static str, object: Vec<u8>, username: Vec<u8>, cinfo: String) {
        let now = crate::server::now_ms();
        let mut log = self.log.lock();
        let found = log.iter().take(10).position(|e| {
            e.reason == reason
                && e.context == context
                && (e.ctime_ms - now).abs() <= 60_000
                && e.object == object
                && e.username == username
        });
        match found {
            Some(i) => {
                if let Some(mut e) = log.remove(i) {
                    e.cinfo = cinfo;
                    e.ctime_ms = now;
                    e.count += 1;
                    log.push_front(e);
                }
            }
            None => {
                log.push_front(LogEntry { count: 1, reason, context, object, username, ctime_ms: now, cinfo });
                let max = self.log_max_len.load(Ordering::Relaxed);
                while log.len() > max {
                    log.pop_back();
                }
            }
        }
    }
}

fn trim_bytes(b: &[u8]) -> &[u8] {
    let is_ws = |c: &u8| matches!(c, b'\t' | b'\r' | b'\n');
    let start = b.iter().position(|c| !is_ws(c)).unwrap_or(b.len());
    let end = b.iter().rposition(|c| !is_ws(c)).map_or(start, |e| e + 1);
    &b[start..end.max(start)]
}

/// Join selector rules spread over several arguments: "(~a" "+get)" ->
/// "(~a +get)" (Redis's `ACLMergeSelectorArguments`).
fn merge_selector_args(ops: &[&[u8]]) -> Result<Vec<Vec<u8>>, String> {
    let mut out = Vec::new();
    let mut open: Option<(usize, Vec<u8>)> = None;
    for (j, op) in ops.iter().enumerate() {
        if let Some((_, sel)) = open.as_mut() {
            sel.push(b' ');
            sel.extend_from_slice(op);
            if op.last() == Some(&b')') {
                if let Some((_, sel)) = open.take() {
                    out.push(sel);
                }
            }
            continue;
        }
        if op.first() == Some(&b'(') && op.last() != Some(&b')') {
            open = Some((j, op.to_vec()));
            continue;
        }
        out.push(op.to_vec());
    }
    if let Some((j, _)) = open {
        return Err(format!(
            "Unmatched parenthesis in acl selector starting at '{}'.",
            String::from_utf8_lossy(ops[j])
        ));
    }
    Ok(out)
}

// ---------------------------------------------------------------------------
// Per-command checks (dispatch).

/// One CLIENT LIST style line for ACL LOG's client-info.
pub fn client_info(srv: &Server, client: &Client, cmd: &str) -> String {
    let h = &client.handle;
    let name = h.name.lock().clone().unwrap_or_default();
    let mut flags = String::new();
    if client.in_pubsub() {
        flags.push('P');
    }
    if client.multi.is_some() {
        flags.push('x');
    }
    if flags.is_empty() {
        flags.push('N');
    }
    let _ = srv;
    format!(
        "id={} addr={} laddr={} fd={} name={} age={} idle=0 flags={} db={} sub={} psub={} ssub={} multi={} qbuf=0 \
         qbuf-free=0 argv-mem=0 multi-mem=0 rbs=16384 rbp=0 obl=0 oll=0 omem=0 tot-mem=0 events=r cmd={} user={} \
         redir=-1 resp={}",
        h.id,
        h.addr,
        h.laddr,
        h.fd,
        String::from_utf8_lossy(&name),
        h.created.elapsed().as_secs(),
        flags,
        client.db,
        client.channels.len(),
        client.patterns.len(),
        client.shard_channels.len(),
        client.multi.as_ref().map_or(-1, |m| m.queue.len() as i64),
        cmd,
        client.user,
        if client.resp3 { 3 } else { 2 },
    )
}

fn log_denied(srv: &Server, client: &Client, meta: &CommandMeta, args: &[Bytes], d: Denied, context: &'static str) {
    let (reason, object) = match d {
        Denied::Cmd => (Reason::Command, meta.name.as_bytes().to_vec()),
        Denied::Key(p) => (Reason::Key, args[p].to_vec()),
        Denied::Channel(p) => (Reason::Channel, args[p].to_vec()),
    };
    let cinfo = client_info(srv, client, &meta.name);
    srv.acl.add_log(reason, context, object, client.user.as_bytes().to_vec(), cinfo);
}

/// The check before a command runs or is queued (processCommand).
#[inline]
pub fn check(srv: &Server, client: &Client, meta: &CommandMeta, args: &[Bytes]) -> Result<(), crate::cmd::CmdError> {
    if client.user == "default" && srv.acl.default_open.load(Ordering::Relaxed) {
        return Ok(());
    }
    check_slow(srv, client, meta, args)
}

fn user_check(srv: &Server, client: &Client, meta: &CommandMeta, args: &[Bytes]) -> Result<(), Denied> {
    match srv.acl.get(client.user.as_bytes()) {
        Some(u) => u.rules.read().check(meta, args),
        // A deleted user's connection is being closed.
        None => Err(Denied::Cmd),
    }
}

#[cold]
fn check_slow(srv: &Server, client: &Client, meta: &CommandMeta, args: &[Bytes]) -> Result<(), crate::cmd::CmdError> {
    let Err(d) = user_check(srv, client, meta, args) else { return Ok(()) };
    log_denied(srv, client, meta, args, d, if client.multi.is_some() { "multi" } else { "toplevel" });
    Err(denied_error(d, meta))
}

fn denied_error(d: Denied, meta: &CommandMeta) -> crate::cmd::CmdError {
    use crate::cmd::CmdError;
    match d {
        Denied::Cmd => CmdError::raw(format!("NOPERM this user has no permissions to run the '{}' command", meta.name)),
        Denied::Key(_) => {
            CmdError::st("NOPERM this user has no permissions to access one of the keys used as arguments")
        }
        Denied::Channel(_) => {
            CmdError::st("NOPERM this user has no permissions to access one of the channels used as arguments")
        }
    }
}

/// The check of a command a script calls (Redis's scriptVerifyACL): a denial is logged with context `lua`.
pub fn check_script(
    srv: &Server,
    client: &Client,
    meta: &CommandMeta,
    args: &[Bytes],
) -> Result<(), crate::cmd::CmdError> {
    let Err(d) = verdict(srv, client, meta, args) else { return Ok(()) };
    log_denied(srv, client, meta, args, d, "lua");
    Err(denied_error(d, meta))
}

/// `redis.acl_check_cmd`: the verdict only (Redis logs nothing).
pub fn allowed(srv: &Server, client: &Client, meta: &CommandMeta, args: &[Bytes]) -> bool {
    verdict(srv, client, meta, args).is_ok()
}

/// The user's verdict, with the shortcut for an open `default` user (what [`check`] does before logging).
fn verdict(srv: &Server, client: &Client, meta: &CommandMeta, args: &[Bytes]) -> Result<(), Denied> {
    if client.user == "default" && srv.acl.default_open.load(Ordering::Relaxed) {
        return Ok(());
    }
    user_check(srv, client, meta, args)
}

/// The re-check of a queued command inside EXEC.
pub fn check_exec(
    srv: &Server,
    client: &Client,
    meta: &CommandMeta,
    args: &[Bytes],
) -> Result<(), crate::cmd::CmdError> {
    let Err(d) = verdict(srv, client, meta, args) else { return Ok(()) };
    log_denied(srv, client, meta, args, d, "multi");
    let reason = match d {
        Denied::Cmd => "no permission to execute the command or subcommand",
        Denied::Key(_) => "no permission to touch the specified keys",
        Denied::Channel(_) => "no permission to access one of the channels used as arguments",
    };
    Err(crate::cmd::CmdError::raw(format!(
        "NOPERM ACLs rules changed between the moment the transaction was accumulated and the EXEC call. This \
         command is no longer allowed for the following reason: {reason}"
    )))
}

/// AUTH / HELLO AUTH: check the credentials; log a failure.
pub fn authenticate(srv: &Server, client: &mut Client, user: &[u8], pass: &[u8], argv0: &[u8]) -> bool {
    if srv.acl.check_credentials(user, pass) {
        client.authenticated = true;
        client.user = String::from_utf8_lossy(user).into_owned();
        *client.handle.user.lock() = client.user.clone();
        true
    } else {
        let cmd = String::from_utf8_lossy(argv0).to_ascii_lowercase();
        let cinfo = client_info(srv, client, &cmd);
        srv.acl.add_log(
            Reason::Auth,
            if client.multi.is_some() { "multi" } else { "toplevel" },
            argv0.to_vec(),
            user.to_vec(),
            cinfo,
        );
        false
    }
}

/// Redis's `ACLUserCheckCmdWithUnrestrictedKeyAccess` for reads: may the
/// client run this command with read access to every key? SORT ... BY/GET
/// must refuse patterns otherwise ("BY option of SORT denied due to
/// insufficient ACL permissions.").
pub fn can_read_any_key(srv: &Server, client: &Client, meta: &CommandMeta, args: &[Bytes]) -> bool {
    if client.user == "default" && srv.acl.default_open.load(Ordering::Relaxed) {
        return true;
    }
    let Some(u) = srv.acl.get(client.user.as_bytes()) else { return false };
    let r = u.rules.read();
    let Some(id) = index().id_of(meta) else { return true };
    let keys = if meta.key_specs.is_empty() { Vec::new() } else { keys_with_flags(meta, args) };
    r.selectors.iter().any(|s| {
        s.check_cmd(id, meta, args, &keys).is_ok()
            && (s.allkeys || s.patterns.iter().any(|(f, p)| f & PERM_READ != 0 && p.as_slice() == b"*"))
    })
}

/// Check a user against a command for ACL DRYRUN.
pub fn dry_run(u: &User, meta: &CommandMeta, args: &[Bytes]) -> Result<(), Denied> {
    u.rules.read().check(meta, args)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_user_describes_like_redis() {
        let r = default_rules();
        assert_eq!(String::from_utf8(r.describe()).unwrap(), "on nopass ~* &* +@all");
        let mut r = Rules::default();
        assert_eq!(String::from_utf8(r.describe()).unwrap(), "off resetchannels -@all");
        r.apply(b"+@read").unwrap();
        r.apply(b"-get").unwrap();
        assert_eq!(String::from_utf8(r.describe()).unwrap(), "off resetchannels -@all +@read -get");
    }

    #[test]
    fn hashes() {
        assert_eq!(hash_password(b"foo"), "2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae");
    }
}
