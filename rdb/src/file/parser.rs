//! Incremental, push-based RDB file reader.
//!
//! Bytes are pushed with [`RdbParser::feed`]; [`RdbParser::next_event`]
//! returns the next event or `None` when more bytes are needed. Parsing
//! restarts at the last element boundary (an opcode, a key, one element of
//! a plain collection, one compact blob, one stream node), so the buffered
//! memory is bounded by the largest single element, never by a whole
//! collection or file. Big plain collections are handed over in several
//! `Part`s.

use crate::decode::{decode_value, Reader};
use crate::{
    crc64, module, opcodes as op, packs, stream, types as t, LruInfo, RdbError, RdbModule, RdbStream, RdbValue, Result,
    RDB_VERSION,
};
use std::io::Read;

/// Elements per part for big collections.
pub const PART_ELEMENTS: usize = 1024;
/// Approximate bytes per part for big collections.
pub const PART_BYTES: usize = 1 << 20;

/// One thing read from an RDB file.
#[derive(Clone, Debug, PartialEq)]
pub enum Event {
    /// The `REDISnnnn` magic: the RDB version (1..=10).
    Header(u32),
    /// An AUX field (redis-ver, ctime, repl-id, ...).
    Aux(Vec<u8>, Vec<u8>),
    /// Following keys belong to this db.
    SelectDb(u64),
    /// Size hints for the current db.
    ResizeDb { db_size: u64, expires_size: u64 },
    /// A function library's code (FUNCTION2; the 7.0-rc FUNCTION opcode is
    /// converted to the same `#!<engine> name=<lib>` form Redis builds).
    Function(Vec<u8>),
    /// Module aux data (opcode 247), kept opaque: the module id and the raw
    /// bytes after the opcode. Redis refuses a file with aux data of a
    /// module it does not have.
    ModuleAux(RdbModule),
    /// A key starts. `rdb_type` is the value's RDB type byte (see
    /// [`crate::types`], [`crate::is_compact_type`]). `expire_ms` is the
    /// absolute unix time in ms (already in the past possibly: Redis drops
    /// such keys when loading a file as a master).
    Key { key: Vec<u8>, expire_ms: Option<i64>, lru: LruInfo, rdb_type: u8 },
    /// Part of the current key's value. Several parts of one key have the
    /// same variant and are concatenated (for streams see [`RdbStream`]).
    /// A key with no part at all is an empty collection, which Redis skips
    /// when loading.
    Part(RdbValue),
    /// The current key's value is complete.
    EndKey,
    /// End of the RDB data. `checksum_ok` is true when the CRC64 matched,
    /// was disabled (0) or is absent (versions < 5). Bytes after it (an AOF
    /// tail) are left in the parser: see [`RdbParser::take_remaining`].
    Eof { checksum_ok: bool, checksum: Option<u64> },
}

#[derive(Debug)]
enum Phase {
    /// The value is one element: a string, a compact blob, a module value.
    Whole,
    /// The element count of a plain collection / quicklist / stream.
    Count,
    /// Plain elements (list/set member, zset member+score, hash pair).
    Items(u64),
    /// Quicklist nodes.
    QNodes(u64),
    /// Stream listpack nodes.
    SNodes(u64),
    /// Stream metadata (length, IDs, counters, group count).
    SMeta,
    /// Consumer groups left; each starts with its header.
    SGroups(u64),
    /// Global PEL entries left in the current group.
    SPel { groups: u64, left: u64 },
    /// The current group's consumer count.
    SConsCount { groups: u64 },
    /// Consumers left in the current group.
    SCons { groups: u64, left: u64 },
    /// Pending IDs left of the current consumer.
    SCPend { groups: u64, cons: u64, left: u64 },
    /// Emit EndKey.
    End,
}

#[derive(Debug)]
enum State {
    Magic,
    Top,
    Value { ty: u8, phase: Phase },
    Done,
}

/// The push-based reader.
pub struct RdbParser {
    buf: Vec<u8>,
    pos: usize,
    /// Retry only once `buf.len() - pos` reaches this (from the last short read).
    want: usize,
    crc: u64,
    version: u32,
    state: State,
    input_done: bool,
    failed: Option<RdbError>,
    // Pending key attributes.
    expire: Option<i64>,
    lru: LruInfo,
    // Accumulated part.
    acc: Option<RdbValue>,
    acc_items: usize,
    acc_bytes: usize,
    // Streams across parts.
    stream_prev: Option<crate::StreamId>,
    stream_live: u64,
    stream_first_live: Option<crate::StreamId>,
    /// Stream metadata and groups being read (handed over in the last part).
    stream_tail: Option<Box<RdbStream>>,
    group_check: stream::GroupCheck,
    ready: std::collections::VecDeque<Event>,
}

impl Default for RdbParser {
    fn default() -> Self {
        Self::new()
    }
}

enum Step<T> {
    Got(T),
    More,
}

impl RdbParser {
    pub fn new() -> RdbParser {
        RdbParser {
            buf: Vec::new(),
            pos: 0,
            want: 0,
            crc: 0,
            version: 0,
            state: State::Magic,
            input_done: false,
            failed: None,
            expire: None,
            lru: LruInfo::None,
            acc: None,
            acc_items: 0,
            acc_bytes: 0,
            stream_prev: None,
            stream_live: 0,
            stream_first_live: None,
            stream_tail: None,
            group_check: Default::default(),
            ready: Default::default(),
        }
    }

    /// Push more input bytes.
    pub fn feed(&mut self, bytes: &[u8]) {
        if self.pos > 0 && (self.pos >= self.buf.len() / 2 || self.pos > 1 << 20) {
            self.buf.drain(..self.pos);
            self.pos = 0;
        }
        self.buf.extend_from_slice(bytes);
    }

    /// No more input will come: an incomplete element is now an error.
    pub fn end_of_input(&mut self) {
        self.input_done = true;
    }

    /// True once the EOF opcode (and checksum) was read.
    pub fn is_done(&self) -> bool {
        matches!(self.state, State::Done)
    }

    /// Check after `end_of_input` and draining events: Ok when the file was
    /// complete, else the error (truncated input).
    pub fn finish(&self) -> Result<()> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        if self.is_done() {
            Ok(())
        } else {
            Err(RdbError::Truncated)
        }
    }

    /// The RDB version from the header (0 before it was read).
    pub fn version(&self) -> u32 {
        self.version
    }

    /// Bytes buffered but not consumed (after Eof: what followed the RDB
    /// data, e.g. the AOF part of a file with an RDB preamble).
    pub fn take_remaining(&mut self) -> Vec<u8> {
        let v = self.buf.split_off(self.pos);
        self.buf.clear();
        self.pos = 0;
        v
    }

    /// Bytes currently buffered (for memory accounting and tests).
    pub fn buffered(&self) -> usize {
        self.buf.len() - self.pos
    }

    /// The next event; `Ok(None)` = more input needed (or, after Eof, nothing
    /// more to read). After an error every call returns that error.
    pub fn next_event(&mut self) -> Result<Option<Event>> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        loop {
            if let Some(e) = self.ready.pop_front() {
                return Ok(Some(e));
            }
            if matches!(self.state, State::Done) {
                return Ok(None);
            }
            if !self.input_done && self.buffered() < self.want {
                return Ok(None);
            }
            match self.step() {
                Ok(true) => continue,
                Ok(false) => {
                    if self.input_done {
                        let e = RdbError::Truncated;
                        self.failed = Some(e.clone());
                        return Err(e);
                    }
                    return Ok(None);
                }
                Err(e) => {
                    self.failed = Some(e.clone());
                    return Err(e);
                }
            }
        }
    }

    /// Parse one element from the buffer with `f`; on success consume its
    /// bytes (and checksum them).
    fn elem<T>(&mut self, f: impl FnOnce(&mut Reader<'_>) -> Result<T>) -> Result<Step<T>> {
        let mut r = Reader::new(&self.buf[self.pos..]);
        match f(&mut r) {
            Ok(v) => {
                let n = r.pos();
                self.crc = crc64::crc64(self.crc, &self.buf[self.pos..self.pos + n]);
                self.pos += n;
                self.want = 0;
                Ok(Step::Got(v))
            }
            Err(RdbError::Truncated) => {
                self.want = r.want().max(self.buffered() + 1);
                Ok(Step::More)
            }
            Err(e) => Err(e),
        }
    }

    /// One parsing step: true = progress made, false = need more input.
    fn step(&mut self) -> Result<bool> {
        match std::mem::replace(&mut self.state, State::Done) {
            State::Magic => {
                let got = self.elem(|r| {
                    let m = r.take(9)?;
                    if &m[..5] != b"REDIS" {
                        return Err(RdbError::Bad("wrong signature trying to load DB from file"));
                    }
                    let v = std::str::from_utf8(&m[5..])
                        .ok()
                        .filter(|s| s.bytes().all(|b| b.is_ascii_digit()))
                        .and_then(|s| s.parse::<u32>().ok())
                        .ok_or(RdbError::Bad("bad RDB version"))?;
                    if v < 1 || v > RDB_VERSION as u32 {
                        return Err(RdbError::Version(v));
                    }
                    Ok(v)
                })?;
                match got {
                    Step::Got(v) => {
                        self.version = v;
                        self.ready.push_back(Event::Header(v));
                        self.state = State::Top;
                        Ok(true)
                    }
                    Step::More => {
                        self.state = State::Magic;
                        Ok(false)
                    }
                }
            }
            State::Top => self.top(),
            State::Value { ty, phase } => self.value(ty, phase),
            State::Done => Ok(false),
        }
    }

    fn top(&mut self) -> Result<bool> {
        if self.buf.get(self.pos) == Some(&op::EOF) {
            // The opcode is checksummed, the checksum itself is not.
            let need = if self.version >= 5 { 9 } else { 1 };
            if self.buffered() < need {
                self.want = need;
                self.state = State::Top;
                return Ok(false);
            }
            self.crc = crc64::crc64(self.crc, &[op::EOF]);
            self.pos += 1;
            self.want = 0;
            if need == 9 {
                let mut c = [0u8; 8];
                c.copy_from_slice(&self.buf[self.pos..self.pos + 8]);
                self.pos += 8;
                let sum = u64::from_le_bytes(c);
                let ok = sum == 0 || sum == self.crc;
                self.ready.push_back(Event::Eof { checksum_ok: ok, checksum: Some(sum) });
            } else {
                self.ready.push_back(Event::Eof { checksum_ok: true, checksum: None });
            }
            self.state = State::Done;
            return Ok(true);
        }
        let got = self.elem(|r| {
            let opcode = r.u8()?;
            Ok(match opcode {
                op::EXPIRETIME_MS => Top::Expire(r.ms_time()?),
                op::EXPIRETIME => {
                    let b = r.take(4)?;
                    Top::Expire(i32::from_le_bytes([b[0], b[1], b[2], b[3]]) as i64 * 1000)
                }
                op::IDLE => Top::Lru(LruInfo::Idle(r.len()?)),
                op::FREQ => Top::Lru(LruInfo::Freq(r.u8()?)),
                op::SELECTDB => Top::Ev(Event::SelectDb(r.len()?)),
                op::RESIZEDB => {
                    let db_size = r.len()?;
                    let expires_size = r.len()?;
                    Top::Ev(Event::ResizeDb { db_size, expires_size })
                }
                op::AUX => {
                    let k = r.string()?;
                    let v = r.string()?;
                    Top::Ev(Event::Aux(k, v))
                }
                op::MODULE_AUX => {
                    let m = module::walk(r)?;
                    Top::Ev(Event::ModuleAux(m))
                }
                op::FUNCTION2 => Top::Ev(Event::Function(r.string()?)),
                op::FUNCTION => {
                    let name = r.string()?;
                    let engine = r.string()?;
                    if r.len()? != 0 {
                        r.string()?;
                    }
                    let blob = r.string()?;
                    let mut code = Vec::with_capacity(blob.len() + name.len() + engine.len() + 10);
                    code.extend_from_slice(b"#!");
                    code.extend_from_slice(&engine);
                    code.extend_from_slice(b" name=");
                    code.extend_from_slice(&name);
                    code.push(b'\n');
                    code.extend_from_slice(&blob);
                    Top::Ev(Event::Function(code))
                }
                ty if ty <= t::STREAM_LISTPACKS_3 && ty != 8 => {
                    if ty == t::MODULE {
                        return Err(RdbError::Unsupported(ty));
                    }
                    let key = r.string()?;
                    Top::Key(ty, key)
                }
                _ => return Err(RdbError::Bad("unknown RDB opcode or value type")),
            })
        })?;
        let Step::Got(top) = got else {
            self.state = State::Top;
            return Ok(false);
        };
        self.state = State::Top;
        match top {
            Top::Expire(ms) => self.expire = Some(ms),
            Top::Lru(l) => self.lru = l,
            Top::Ev(e) => self.ready.push_back(e),
            Top::Key(ty, key) => {
                let expire_ms = self.expire.take();
                let lru = std::mem::take(&mut self.lru);
                self.ready.push_back(Event::Key { key, expire_ms, lru, rdb_type: ty });
                let phase = match ty {
                    t::LIST | t::SET | t::ZSET | t::ZSET_2 | t::HASH => Phase::Count,
                    t::LIST_QUICKLIST | t::LIST_QUICKLIST_2 => Phase::Count,
                    t::STREAM_LISTPACKS | t::STREAM_LISTPACKS_2 | t::STREAM_LISTPACKS_3 => {
                        self.stream_prev = None;
                        self.stream_live = 0;
                        self.stream_first_live = None;
                        self.stream_tail = None;
                        self.group_check = Default::default();
                        Phase::Count
                    }
                    _ => Phase::Whole,
                };
                self.acc = None;
                self.acc_items = 0;
                self.acc_bytes = 0;
                self.state = State::Value { ty, phase };
            }
        }
        Ok(true)
    }

    fn tail_mut(&mut self) -> &mut RdbStream {
        self.stream_tail.get_or_insert_with(Box::default)
    }

    fn push_part_item(&mut self, v: RdbValue, items: usize, bytes: usize) {
        self.acc_items += items;
        self.acc_bytes += bytes;
        match (&mut self.acc, v) {
            (None, v) => self.acc = Some(v),
            (Some(RdbValue::List(a)), RdbValue::List(b)) => a.extend(b),
            (Some(RdbValue::Set(a)), RdbValue::Set(b)) => a.extend(b),
            (Some(RdbValue::ZSet(a)), RdbValue::ZSet(b)) => a.extend(b),
            (Some(RdbValue::Hash(a)), RdbValue::Hash(b)) => a.extend(b),
            (Some(RdbValue::Stream(a)), RdbValue::Stream(b)) => {
                a.entries.extend(b.entries);
                a.node_sizes.extend(b.node_sizes);
            }
            (Some(_), v) => self.acc = Some(v),
        }
    }

    fn flush_part(&mut self, force: bool) {
        if self.acc.is_some() && (force || self.acc_items >= PART_ELEMENTS || self.acc_bytes >= PART_BYTES) {
            if let Some(v) = self.acc.take() {
                self.ready.push_back(Event::Part(v));
            }
            self.acc_items = 0;
            self.acc_bytes = 0;
        }
    }

    fn value(&mut self, ty: u8, phase: Phase) -> Result<bool> {
        self.state = State::Value { ty, phase: Phase::End };
        let next = match phase {
            Phase::End => {
                self.flush_part(true);
                self.ready.push_back(Event::EndKey);
                self.state = State::Top;
                return Ok(true);
            }
            Phase::Whole => match self.elem(|r| match decode_value(ty, r) {
                Err(RdbError::EmptyKey) => Ok(None),
                x => x.map(Some),
            })? {
                Step::More => Phase::Whole,
                Step::Got(v) => {
                    if let Some(v) = v {
                        self.ready.push_back(Event::Part(v));
                    }
                    Phase::End
                }
            },
            Phase::Count => match self.elem(|r| r.len())? {
                Step::More => Phase::Count,
                Step::Got(n) => match ty {
                    t::LIST_QUICKLIST | t::LIST_QUICKLIST_2 => Phase::QNodes(n),
                    t::STREAM_LISTPACKS | t::STREAM_LISTPACKS_2 | t::STREAM_LISTPACKS_3 => Phase::SNodes(n),
                    _ => Phase::Items(n),
                },
            },
            Phase::Items(0) => Phase::End,
            Phase::Items(n) => match self.elem(|r| plain_item(ty, r))? {
                Step::More => Phase::Items(n),
                Step::Got((v, bytes)) => {
                    self.push_part_item(v, 1, bytes);
                    self.flush_part(false);
                    Phase::Items(n - 1)
                }
            },
            Phase::QNodes(0) => Phase::End,
            Phase::QNodes(n) => match self.elem(|r| {
                let container = if ty == t::LIST_QUICKLIST_2 { r.len()? } else { 2 };
                let blob = r.string()?;
                match container {
                    1 => Ok(vec![blob]),
                    2 if ty == t::LIST_QUICKLIST => packs::ziplist(&blob),
                    2 => packs::listpack(&blob),
                    _ => Err(RdbError::Bad("bad quicklist container")),
                }
            })? {
                Step::More => Phase::QNodes(n),
                Step::Got(items) => {
                    // Split a node's items so no part exceeds PART_ELEMENTS.
                    let mut items = items.into_iter().peekable();
                    while items.peek().is_some() {
                        let room = PART_ELEMENTS.saturating_sub(self.acc_items).max(1);
                        let chunk: Vec<Vec<u8>> = items.by_ref().take(room).collect();
                        let bytes = chunk.iter().map(|x| x.len() + 8).sum();
                        let k = chunk.len();
                        self.push_part_item(RdbValue::List(chunk), k, bytes);
                        self.flush_part(false);
                    }
                    Phase::QNodes(n - 1)
                }
            },
            Phase::SNodes(0) => Phase::SMeta,
            Phase::SNodes(n) => {
                let mut prev = self.stream_prev;
                match self.elem(|r| {
                    let key = r.string()?;
                    let lp = r.string()?;
                    let mut entries = Vec::new();
                    let k = stream::decode_node(&key, &lp, &mut prev, &mut entries)?;
                    Ok((entries, k, lp.len()))
                })? {
                    Step::More => Phase::SNodes(n),
                    Step::Got((entries, k, bytes)) => {
                        self.stream_prev = prev;
                        for e in entries.iter().filter(|e| !e.deleted) {
                            self.stream_live += 1;
                            if self.stream_first_live.is_none() {
                                self.stream_first_live = Some(e.id);
                            }
                        }
                        let s = RdbStream { entries, node_sizes: vec![k], ..Default::default() };
                        self.push_part_item(RdbValue::Stream(Box::new(s)), k as usize, bytes);
                        self.flush_part(false);
                        Phase::SNodes(n - 1)
                    }
                }
            }
            Phase::SMeta => match self.elem(|r| {
                let mut s = RdbStream::default();
                let n = stream::decode_meta(ty, r, &mut s)?;
                Ok((s, n))
            })? {
                Step::More => Phase::SMeta,
                Step::Got((mut tail, ngroups)) => {
                    if tail.length != self.stream_live {
                        return Err(RdbError::Bad("stream length inconsistent with its entries"));
                    }
                    if ty == t::STREAM_LISTPACKS {
                        tail.first_id = self.stream_first_live.unwrap_or_default();
                    }
                    self.stream_tail = Some(Box::new(tail));
                    Phase::SGroups(ngroups)
                }
            },
            Phase::SGroups(0) => {
                let tail = self.stream_tail.take().unwrap_or_default();
                let mut s = match self.acc.take() {
                    Some(RdbValue::Stream(s)) => s,
                    _ => Box::default(),
                };
                s.length = tail.length;
                s.last_id = tail.last_id;
                s.first_id = tail.first_id;
                s.max_deleted_entry_id = tail.max_deleted_entry_id;
                s.entries_added = tail.entries_added;
                s.groups = tail.groups;
                self.ready.push_back(Event::Part(RdbValue::Stream(s)));
                self.acc_items = 0;
                self.acc_bytes = 0;
                Phase::End
            }
            Phase::SGroups(groups) => match self.elem(|r| stream::decode_group_head(ty, r))? {
                Step::More => Phase::SGroups(groups),
                Step::Got((g, npel)) => {
                    self.group_check.group(&g.name)?;
                    self.tail_mut().groups.push(g);
                    Phase::SPel { groups, left: npel }
                }
            },
            Phase::SPel { groups, left: 0 } => Phase::SConsCount { groups },
            Phase::SPel { groups, left } => match self.elem(stream::decode_pel_entry)? {
                Step::More => Phase::SPel { groups, left },
                Step::Got(p) => {
                    self.group_check.pel(p.id)?;
                    if let Some(g) = self.tail_mut().groups.last_mut() {
                        g.pel.push(p);
                    }
                    Phase::SPel { groups, left: left - 1 }
                }
            },
            Phase::SConsCount { groups } => match self.elem(|r| r.len())? {
                Step::More => Phase::SConsCount { groups },
                Step::Got(n) => Phase::SCons { groups, left: n },
            },
            Phase::SCons { groups, left: 0 } => {
                self.group_check.end_group()?;
                Phase::SGroups(groups - 1)
            }
            Phase::SCons { groups, left } => match self.elem(|r| stream::decode_consumer_head(ty, r))? {
                Step::More => Phase::SCons { groups, left },
                Step::Got((c, np)) => {
                    self.group_check.consumer(&c.name)?;
                    if let Some(g) = self.tail_mut().groups.last_mut() {
                        g.consumers.push(c);
                    }
                    Phase::SCPend { groups, cons: left, left: np }
                }
            },
            Phase::SCPend { groups, cons, left: 0 } => Phase::SCons { groups, left: cons - 1 },
            Phase::SCPend { groups, cons, left } => match self.elem(stream::raw_id)? {
                Step::More => Phase::SCPend { groups, cons, left },
                Step::Got(id) => {
                    self.group_check.owned(id)?;
                    if let Some(c) = self.tail_mut().groups.last_mut().and_then(|g| g.consumers.last_mut()) {
                        c.pending.push(id);
                    }
                    Phase::SCPend { groups, cons, left: left - 1 }
                }
            },
        };
        // `elem` clears `want` on success and sets it when input is short.
        let progressed = self.want == 0;
        self.state = State::Value { ty, phase: next };
        Ok(progressed)
    }
}

enum Top {
    Expire(i64),
    Lru(LruInfo),
    Ev(Event),
    Key(u8, Vec<u8>),
}

/// One element of a plain collection, as a one-element value, and its size.
fn plain_item(ty: u8, r: &mut Reader<'_>) -> Result<(RdbValue, usize)> {
    Ok(match ty {
        t::LIST => {
            let s = r.string()?;
            let n = s.len() + 8;
            (RdbValue::List(vec![s]), n)
        }
        t::SET => {
            let s = r.string()?;
            let n = s.len() + 8;
            (RdbValue::Set(vec![s]), n)
        }
        t::ZSET | t::ZSET_2 => {
            let m = r.string()?;
            let sc = if ty == t::ZSET_2 { r.binary_double()? } else { r.string_double()? };
            if sc.is_nan() {
                return Err(RdbError::Bad("nan score"));
            }
            let n = m.len() + 16;
            (RdbValue::ZSet(vec![(m, sc)]), n)
        }
        _ => {
            let f = r.string()?;
            let v = r.string()?;
            let n = f.len() + v.len() + 16;
            (RdbValue::Hash(vec![(f, v)]), n)
        }
    })
}

/// Pull-style convenience wrapper over any `io::Read`.
pub struct RdbFileReader<R: Read> {
    inner: R,
    parser: RdbParser,
    chunk: Vec<u8>,
    eof: bool,
}

impl<R: Read> RdbFileReader<R> {
    pub fn new(inner: R) -> Self {
        RdbFileReader { inner, parser: RdbParser::new(), chunk: vec![0u8; 64 * 1024], eof: false }
    }

    /// The next event, `None` after Eof was returned. Input ending early is
    /// `Err(Truncated)`.
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> Result<Option<Event>> {
        loop {
            if let Some(e) = self.parser.next_event()? {
                return Ok(Some(e));
            }
            if self.parser.is_done() {
                return Ok(None);
            }
            if self.eof {
                return Err(RdbError::Truncated);
            }
            let n = loop {
                match self.inner.read(&mut self.chunk) {
                    Ok(n) => break n,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(RdbError::Io(e.to_string())),
                }
            };
            if n == 0 {
                self.eof = true;
                self.parser.end_of_input();
            } else {
                self.parser.feed(&self.chunk[..n]);
            }
        }
    }

    /// The parser (e.g. to take the bytes after the RDB data).
    pub fn parser_mut(&mut self) -> &mut RdbParser {
        &mut self.parser
    }

    /// The underlying reader.
    pub fn into_inner(self) -> (R, RdbParser) {
        (self.inner, self.parser)
    }
}
