//! DEBUG subcommands (everything except RELOAD/LOADAOF, which belong to
//! persistence). Included from `cmd/server.rs`, which checks
//! `enable-debug-command` first.
//!
//! DIGEST and DIGEST-VALUE follow Redis's `debug.c` mixing exactly (SHA1 of
//! the type, key, elements, `!!expire!!`), so digests of the same data match
//! a real Redis. DEBUG OBJECT's `serializedlength` is the length of
//! ferrite's own RDB encoding of the value (Redis's listpack blobs may be
//! shorter), and the quicklist fields are computed from the list as Redis
//! would pack it with the current `list-max-listpack-size`.
//!
//! Accepted with no effect in Ferrite:
//! AOF-FLUSH-SLEEP, PAUSE-CRON, CHANGE-REPL-ID (no replication), REPLYBUFFER
//! (no reply buffer resizing), QUICKLIST-PACKED-THRESHOLD (lists are not
//! stored as quicklists; only DEBUG OBJECT's node count uses it), LISTPACK
//! and QUICKLIST (nothing is printed). HTSTATS/HTSTATS-KEY report sizes
//! only, not chain statistics.

use crate::cmd::{eq_ic, CmdError, CmdResult, Cx};
use crate::keyspace::{Entry, StrValue, Value};
use crate::types::stream::StreamId;
use ferrite_commands::key_hash_slot;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// DEBUG SET-ACTIVE-EXPIRE: the background expiry sweep runs only while set.
pub static ACTIVE_EXPIRE: AtomicBool = AtomicBool::new(true);
/// DEBUG QUICKLIST-PACKED-THRESHOLD (bytes). Ferrite stores list elements
/// the same way whatever their size; only DEBUG OBJECT's node count uses it.
pub static PACKED_THRESHOLD: AtomicU64 = AtomicU64::new(1 << 30);

pub const HELP: &[&str] = &[
    "DEBUG <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
    "AOF-FLUSH-SLEEP <microsec>",
    "    Server will sleep before flushing the AOF, this is used for testing.",
    "CHANGE-REPL-ID",
    "    Change the replication IDs of the instance.",
    "    Dangerous: should be used only for testing the replication subsystem.",
    "DIGEST",
    "    Output a hex signature representing the current DB content.",
    "DIGEST-VALUE <key> [<key> ...]",
    "    Output a hex signature of the values of all the specified keys.",
    "ERROR <string>",
    "    Return a Redis protocol error with <string> as message. Useful for clients",
    "    unit tests to simulate Redis errors.",
    "LOG <message>",
    "    Write <message> to the server log.",
    "HTSTATS <dbid>",
    "    Return hash table statistics of the specified Redis database.",
    "HTSTATS-KEY <key>",
    "    Like HTSTATS but for the hash table stored at <key>'s value.",
    "LOADAOF",
    "    Flush the AOF buffers on disk and reload the AOF in memory.",
    "OBJECT <key>",
    "    Show low level info about `key` and associated value.",
    "POPULATE <count> [<prefix>] [<size>]",
    "    Create <count> string keys named key:<num>. If <prefix> is specified then",
    "    it is used instead of the 'key' prefix. These are not propagated to",
    "    replicas. Cluster slots are not respected so keys not belonging to the",
    "    current node can be created in cluster mode.",
    "PROTOCOL <type>",
    "    Reply with a test value of the specified type. <type> can be: string,",
    "    integer, double, bignum, null, array, set, map, attrib, push, verbatim,",
    "    true, false.",
    "RELOAD [option ...]",
    "    Save the RDB on disk and reload it back to memory. Valid <option> values:",
    "    * MERGE: conflicting keys will be loaded from RDB.",
    "    * NOFLUSH: the existing database will not be removed before load, but",
    "      conflicting keys will generate an exception and kill the server.",
    "    * NOSAVE: the database will be loaded from an existing RDB file.",
    "    Examples:",
    "    * DEBUG RELOAD: verify that the server is able to persist, flush and reload",
    "      the database.",
    "    * DEBUG RELOAD NOSAVE: replace the current database with the contents of an",
    "      existing RDB file.",
    "    * DEBUG RELOAD NOSAVE NOFLUSH MERGE: add the contents of an existing RDB",
    "      file to the database.",
    "SDSLEN <key>",
    "    Show low level SDS string info representing `key` and value.",
    "SEGFAULT",
    "    Crash the server with sigsegv.",
    "SET-ACTIVE-EXPIRE <0|1>",
    "    Setting it to 0 disables expiring keys in background when they are not",
    "    accessed (otherwise the Redis behavior). Setting it to 1 reenables back the",
    "    default.",
    "QUICKLIST-PACKED-THRESHOLD <size>",
    "    Sets the threshold for elements to be inserted as plain vs packed nodes",
    "    Default value is 1GB, allows values up to 4GB. Setting to 0 restores to default.",
    "SET-SKIP-CHECKSUM-VALIDATION <0|1>",
    "    Enables or disables checksum checks for RDB files and RESTORE's payload.",
    "SLEEP <seconds>",
    "    Stop the server for <seconds>. Decimals allowed.",
    "STRUCTSIZE",
    "    Return the size of different Redis core C structures.",
    "LISTPACK <key>",
    "    Show low level info about the listpack encoding of <key>.",
    "QUICKLIST <key> [<0|1>]",
    "    Show low level info about the quicklist encoding of <key>.",
    "    The optional argument (0 by default) sets the level of detail",
    "PAUSE-CRON <0|1>",
    "    Stop periodic cron job processing.",
    "REPLYBUFFER PEAK-RESET-TIME <NEVER||RESET|time>",
    "    Sets the time (in milliseconds) to wait between client reply buffer peak resets.",
    "    In case NEVER is provided the last observed peak will never be reset",
    "    In case RESET is provided the peak reset time will be restored to the default value",
    "REPLYBUFFER RESIZING <0|1>",
    "    Enable or disable the reply buffer resize cron job",
];

use crate::script::sha1::sha1;

/// Redis's xorDigest: digest ^= SHA1(data).
fn xor_digest(digest: &mut [u8; 20], data: &[u8]) {
    for (d, h) in digest.iter_mut().zip(sha1(data)) {
        *d ^= h;
    }
}

/// Redis's mixDigest: digest = SHA1(digest ^ SHA1(data)) (order-sensitive).
fn mix_digest(digest: &mut [u8; 20], data: &[u8]) {
    xor_digest(digest, data);
    *digest = sha1(&digest[..]);
}

fn g17(v: f64) -> Vec<u8> {
    let mut b = Vec::with_capacity(32);
    ferrite_resp::num::fmt_g17(v, &mut b);
    b
}

/// Redis's xorObjectDigest: mix the value of one key into `digest`.
pub fn object_digest(digest: &mut [u8; 20], value: &Value, has_expire: bool) {
    let type_id: u32 = match value {
        Value::Str(_) => 0,
        Value::List(_) => 1,
        Value::Set(_) => 2,
        Value::ZSet(_) => 3,
        Value::Hash(_) => 4,
        Value::Stream(_) => 6,
    };
    mix_digest(digest, &type_id.to_be_bytes());
    match value {
        Value::Str(s) => {
            let mut t = itoa::Buffer::new();
            mix_digest(digest, s.as_bytes(&mut t));
        }
        Value::List(l) => {
            for x in l.items.iter() {
                mix_digest(digest, x);
            }
        }
        Value::Set(s) => {
            for m in s.members.iter() {
                xor_digest(digest, m);
            }
        }
        Value::ZSet(z) => {
            for (m, score) in z.scores.iter() {
                let mut ed = [0u8; 20];
                mix_digest(&mut ed, m);
                mix_digest(&mut ed, &g17(*score));
                xor_digest(digest, &ed);
            }
        }
        Value::Hash(h) => {
            for (f, v) in h.iter() {
                let mut ed = [0u8; 20];
                mix_digest(&mut ed, f);
                mix_digest(&mut ed, v);
                xor_digest(digest, &ed);
            }
        }
        Value::Stream(s) => {
            s.range(StreamId::new(0, 0), StreamId::new(u64::MAX, u64::MAX), false, |e| {
                mix_digest(digest, format!("{}.{}", e.id.ms, e.id.seq).as_bytes());
                e.for_each_fv(|x| mix_digest(digest, x));
                true
            });
        }
    }
    if has_expire {
        xor_digest(digest, b"!!expire!!");
    }
}

fn hex(d: &[u8; 20]) -> String {
    d.iter().map(|b| format!("{b:02x}")).collect()
}

/// Redis's computeDatasetDigest over every database.
fn dataset_digest(cx: &mut Cx) -> [u8; 20] {
    let mut fin = [0u8; 20];
    for db in 0..cx.srv.store.dbs.len() {
        if cx.srv.store.db_size(db) == 0 {
            continue;
        }
        mix_digest(&mut fin, &(db as u32).to_be_bytes());
        cx.ks.acc.for_each_shard(db, |s| {
            for t in s.slots.iter() {
                for e in t.table.iter() {
                    let mut d = [0u8; 20];
                    mix_digest(&mut d, &e.key);
                    object_digest(&mut d, &e.value, e.expire_at != 0);
                    xor_digest(&mut fin, &d);
                }
            }
        });
    }
    fin
}

// ---------------------------------------------------------------- helpers

/// The entry of `key` in the selected db, logically expired or not (DEBUG
/// looks at the dictionary directly, as Redis does).
fn raw_entry<'c>(cx: &'c mut Cx, key: &[u8]) -> Option<&'c mut Entry> {
    let db = cx.ks.db;
    let slot = key_hash_slot(key);
    cx.ks.acc.shard(db, slot)?.get_raw(slot, key)
}

/// Redis's memtoull: a number with an optional b/k/kb/m/mb/g/gb unit.
pub fn memtoull(s: &[u8]) -> Option<u64> {
    let s = std::str::from_utf8(s).ok()?.to_ascii_lowercase();
    let digits = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(digits);
    let mul: u64 = match unit {
        "" | "b" => 1,
        "k" => 1000,
        "kb" => 1024,
        "m" => 1000 * 1000,
        "mb" => 1024 * 1024,
        "g" => 1000 * 1000 * 1000,
        "gb" => 1024 * 1024 * 1024,
        _ => return None,
    };
    if num.is_empty() {
        return None;
    }
    num.parse::<u64>().ok()?.checked_mul(mul)
}

/// C's atoi: optional sign and leading digits, 0 if none.
fn atoi(s: &[u8]) -> i64 {
    let s = std::str::from_utf8(s).unwrap_or("").trim_start();
    let (neg, rest) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    let end = rest.find(|c: char| !c.is_ascii_digit()).unwrap_or(rest.len());
    let v = rest[..end].parse::<i64>().unwrap_or(0);
    if neg {
        -v
    } else {
        v
    }
}

/// Listpack entry size in bytes for one element (encoding + data + backlen),
/// as Redis's listpack would store it.
fn lp_entry_size(e: &[u8]) -> usize {
    if e.len() <= 20 {
        if let Some(v) = ferrite_resp::num::parse_i64(e) {
            let enc = match v {
                0..=127 => 1,
                -4096..=4095 => 2,
                -32768..=32767 => 3,
                -8388608..=8388607 => 4,
                -2147483648..=2147483647 => 5,
                _ => 9,
            };
            return enc + 1;
        }
    }
    let hdr = if e.len() < 64 {
        1
    } else if e.len() < 4096 {
        2
    } else {
        5
    };
    let l = hdr + e.len();
    let back = match l {
        0..=127 => 1,
        128..=16382 => 2,
        16383..=2097150 => 3,
        2097151..=268435454 => 4,
        _ => 5,
    };
    l + back
}

/// Quicklist shape of a list as Redis would build it by appending:
/// (nodes, total listpack bytes).
fn quicklist_shape(
    items: &std::collections::VecDeque<crate::keyspace::smallbytes::SmallBytes>,
    fill: i64,
) -> (usize, usize) {
    let threshold = PACKED_THRESHOLD.load(Ordering::Relaxed) as usize;
    let max_bytes = match fill {
        f if f >= 0 => usize::MAX,
        -1 => 4096,
        -2 => 8192,
        -3 => 16384,
        -4 => 32768,
        _ => 65536,
    };
    let max_count = if fill > 0 { fill as usize } else { usize::MAX };
    let (mut nodes, mut total, mut cur_bytes, mut cur_count) = (0usize, 0usize, 0usize, 0usize);
    for it in items {
        if it.len() >= threshold {
            // A plain node of its own.
            nodes += 1;
            total += it.len();
            cur_count = 0;
            cur_bytes = 0;
            continue;
        }
        let sz = lp_entry_size(it);
        if cur_count == 0 || cur_count + 1 > max_count || cur_bytes + sz > max_bytes {
            nodes += 1;
            total += 7;
            cur_bytes = 7;
            cur_count = 0;
        }
        cur_bytes += sz;
        cur_count += 1;
        total += sz;
    }
    (nodes, total)
}

fn serialized_len(v: &Value) -> usize {
    ferrite_rdb::dump_payload(&crate::rdbconv::to_rdb(v)).len().saturating_sub(11)
}

// ---------------------------------------------------------------- subcommands

/// Everything after the enable-debug-command check and HELP.
pub fn run(cx: &mut Cx) -> CmdResult {
    let sub = cx.arg(1).to_ascii_lowercase();
    let argc = cx.argc();
    match (sub.as_slice(), argc) {
        (b"object", 3) => debug_object(cx),
        // The crash report (crate::crash) is written, then the process dies of SIGSEGV.
        (b"segfault", 2) => crate::crash::segfault(),
        (b"config-rewrite-force-all", 2) => crate::cmd::config::rewrite(cx, true),
        (b"digest", 2) => {
            let d = dataset_digest(cx);
            cx.out.simple(hex(&d).as_bytes());
            Ok(())
        }
        (b"digest-value", _) => {
            cx.out.array(argc - 2);
            for j in 2..argc {
                let key = cx.arg(j);
                let mut d = [0u8; 20];
                if let Some(e) = raw_entry(cx, key) {
                    let has_exp = e.expire_at != 0;
                    object_digest(&mut d, &e.value, has_exp);
                }
                cx.out.simple(hex(&d).as_bytes());
            }
            Ok(())
        }
        (b"populate", 3..=5) => populate(cx),
        (b"protocol", 3) => protocol(cx),
        (b"set-active-expire", 3) => {
            ACTIVE_EXPIRE.store(atoi(cx.arg(2)) != 0, Ordering::Relaxed);
            cx.out.ok();
            Ok(())
        }
        (b"quicklist-packed-threshold", 3) => match memtoull(cx.arg(2)) {
            Some(sz) if sz <= (1u64 << 32) - (1 << 20) => {
                PACKED_THRESHOLD.store(if sz == 0 { 1 << 30 } else { sz }, Ordering::Relaxed);
                cx.out.ok();
                Ok(())
            }
            _ => Err(CmdError::err("argument must be a memory value bigger than 1 and smaller than 4gb")),
        },
        (b"set-disable-deny-scripts", 3) => {
            cx.srv.scripting.disable_deny_scripts.store(atoi(cx.arg(2)) != 0, Ordering::Relaxed);
            cx.out.ok();
            Ok(())
        }
        (b"set-skip-checksum-validation", 3) => {
            crate::cmd::dump::set_skip_checksum(atoi(cx.arg(2)) != 0);
            cx.out.ok();
            Ok(())
        }
        (b"aof-flush-sleep", 3) | (b"pause-cron", 3) => {
            cx.out.ok();
            Ok(())
        }
        (b"change-repl-id", 2) => {
            cx.srv.repl.change_replid();
            cx.out.ok();
            Ok(())
        }
        (b"replicate", n) if n >= 3 => {
            // To replicas only, as Redis's alsoPropagate(PROPAGATE_REPL).
            cx.srv.repl.feed_raw(&cx.args[2..]);
            cx.out.ok();
            Ok(())
        }
        (b"log", 3) => {
            eprintln!("DEBUG LOG: {}", String::from_utf8_lossy(cx.arg(2)));
            cx.out.ok();
            Ok(())
        }
        (b"error", 3) => {
            let msg: String = String::from_utf8_lossy(cx.arg(2))
                .chars()
                .map(|c| if c == '\r' || c == '\n' { ' ' } else { c })
                .collect();
            Err(CmdError::raw(msg))
        }
        (b"replybuffer", 4) => {
            let what = cx.arg(2);
            if eq_ic(what, b"peak-reset-time") {
                let v = cx.arg(3);
                if !eq_ic(v, b"never") && !eq_ic(v, b"reset") {
                    cx.int_arg(3)?;
                }
            } else if !eq_ic(what, b"resizing") {
                let s = String::from_utf8_lossy(cx.arg(1)).to_string();
                return Err(CmdError::err(format!(
                    "unknown subcommand or wrong number of arguments for '{s}'. Try DEBUG HELP."
                )));
            }
            cx.out.ok();
            Ok(())
        }
        (b"sdslen", 3) => {
            let key = cx.arg(2);
            let klen = key.len();
            let Some(e) = raw_entry(cx, key) else { return Err(crate::cmd::NO_KEY) };
            match &e.value {
                Value::Str(s @ (StrValue::Emb(_) | StrValue::Raw(_))) => {
                    let vlen = s.len();
                    let avail = match s {
                        StrValue::Raw(v) => v.capacity() - v.len(),
                        _ => 0,
                    };
                    let line = format!(
                        "key_sds_len:{klen}, key_sds_avail:0, key_zmalloc: {}, val_sds_len:{vlen}, val_sds_avail:{avail}, val_zmalloc: {}",
                        klen + 3,
                        vlen + avail + 3
                    );
                    cx.out.simple(line.as_bytes());
                    Ok(())
                }
                _ => Err(CmdError::err("Not an sds encoded string.")),
            }
        }
        (b"listpack", 3) => {
            let key = cx.arg(2);
            let Some(e) = raw_entry(cx, key) else { return Err(crate::cmd::NO_KEY) };
            if e.value.encoding() != "listpack" {
                return Err(CmdError::err("Not a listpack encoded object."));
            }
            cx.out.simple(b"Listpack structure printed on stdout");
            Ok(())
        }
        (b"quicklist", 3 | 4) => {
            let key = cx.arg(2);
            let Some(e) = raw_entry(cx, key) else { return Err(crate::cmd::NO_KEY) };
            if e.value.encoding() != "quicklist" {
                return Err(CmdError::err("Not a quicklist encoded object."));
            }
            cx.out.simple(b"Quicklist structure printed on stdout");
            Ok(())
        }
        (b"structsize", 2) => {
            cx.out.bulk(b"bits:64 robj:16 dictentry:24 sdshdr5:1 sdshdr8:3 sdshdr16:5 sdshdr32:9 sdshdr64:17 ");
            Ok(())
        }
        (b"htstats", 3) => {
            let id = cx.int_arg(2)?;
            if id < 0 || id as usize >= cx.srv.store.dbs.len() {
                return Err(CmdError::err("Out of range database"));
            }
            let n = cx.srv.store.db_size(id as usize);
            let v = cx.srv.store.db_volatile(id as usize);
            let mut s = String::from("[Dictionary HT]\n");
            s.push_str(&ht_stats(n));
            s.push_str("[Expires HT]\n");
            s.push_str(&ht_stats(v));
            cx.out.verbatim(b"txt", s.as_bytes());
            Ok(())
        }
        (b"htstats-key", 3) => {
            let key = cx.arg(2);
            let Some(e) = raw_entry(cx, key) else { return Err(crate::cmd::NO_KEY) };
            let n = match &e.value {
                Value::Hash(h) if h.encoding() == "hashtable" => Some(h.len()),
                Value::Set(s) if s.encoding() == "hashtable" => Some(s.len()),
                Value::ZSet(z) if z.encoding() == "skiplist" => Some(z.len()),
                _ => None,
            };
            match n {
                Some(n) => {
                    let s = ht_stats(n);
                    cx.out.verbatim(b"txt", s.as_bytes());
                    Ok(())
                }
                None => {
                    Err(CmdError::err("The value stored at the specified key is not represented using an hash table"))
                }
            }
        }
        _ => {
            let s: String = String::from_utf8_lossy(cx.arg(1)).chars().take(128).collect();
            Err(CmdError::err(format!("unknown subcommand or wrong number of arguments for '{s}'. Try DEBUG HELP.")))
        }
    }
}

/// A dictGetStats-like summary for a table of `n` entries.
fn ht_stats(n: usize) -> String {
    if n == 0 {
        return "No stats available for empty dictionaries\n".to_string();
    }
    let size = n.next_power_of_two().max(4);
    format!("Hash table 0 stats (main hash table):\n table size: {size}\n number of elements: {n}\n")
}

fn debug_object(cx: &mut Cx) -> CmdResult {
    let key = cx.arg(2);
    let fill = cx.srv.tun.list_max_listpack_size.load(Ordering::Relaxed);
    let compress = cx.srv.tun.list_compress_depth.load(Ordering::Relaxed);
    let lru_now = cx.srv.lru_clock();
    let Some(e) = raw_entry(cx, key) else { return Err(crate::cmd::NO_KEY) };
    let mut extra = String::new();
    if let Value::List(l) = &e.value {
        let (nodes, sz) = quicklist_shape(&l.items, fill);
        let avg = if nodes == 0 { 0.0 } else { l.len() as f64 / nodes as f64 };
        extra = format!(
            " ql_nodes:{nodes} ql_avg_node:{avg:.2} ql_listpack_max:{fill} ql_compressed:{} ql_uncompressed_size:{sz}",
            (compress != 0) as u8
        );
    }
    let refcount = match &e.value {
        Value::Str(StrValue::Int(i)) if (0..10000).contains(i) => 2147483647,
        _ => 1,
    };
    let idle = lru_now.saturating_sub(e.lru);
    let line = format!(
        "Value at:{:p} refcount:{refcount} encoding:{} serializedlength:{} lru:{} lru_seconds_idle:{idle}{extra}",
        &e.value as *const Value,
        e.value.encoding(),
        serialized_len(&e.value),
        e.lru & 0xFF_FFFF,
    );
    cx.out.simple(line.as_bytes());
    Ok(())
}

fn populate(cx: &mut Cx) -> CmdResult {
    let positive = |cx: &Cx, i: usize| -> Result<i64, CmdError> {
        // getPositiveLongFromObjectOrReply: one message for both failures.
        match crate::cmd::parse_int(cx.arg(i)) {
            Ok(v) if v >= 0 => Ok(v),
            _ => Err(CmdError::err("value is out of range, must be positive")),
        }
    };
    let count = positive(cx, 2)?;
    let valsize = if cx.argc() == 5 { positive(cx, 4)? as usize } else { 0 };
    if valsize > 512 * 1024 * 1024 {
        return Err(CmdError::err("value is out of range"));
    }
    let prefix: Vec<u8> = if cx.argc() >= 4 { cx.arg(3).to_vec() } else { b"key".to_vec() };
    for j in 0..count {
        let mut key = prefix.clone();
        key.push(b':');
        key.extend_from_slice(itoa::Buffer::new().format(j).as_bytes());
        // Like Redis's snprintf into a 128-byte buffer.
        key.truncate(127);
        if cx.ks.exists(&key)? {
            continue;
        }
        let val = format!("value:{j}").into_bytes();
        let v = if valsize == 0 {
            Value::str(&val)
        } else {
            let mut b = vec![0u8; valsize];
            let n = val.len().min(valsize);
            b[..n].copy_from_slice(&val[..n]);
            Value::str(&b)
        };
        cx.ks.insert(&key, v, 0)?;
    }
    cx.out.ok();
    Ok(())
}

fn protocol(cx: &mut Cx) -> CmdResult {
    let name = cx.arg(2).to_ascii_lowercase();
    let resp3 = cx.client.resp3;
    let o = &mut *cx.out;
    match name.as_slice() {
        b"string" => o.bulk(b"Hello World"),
        b"integer" => o.int(12345),
        #[allow(clippy::approx_constant)]
        b"double" => o.double(3.141),
        b"bignum" => {
            if resp3 {
                o.raw(b"(1234567999999999999999999999999999999\r\n");
            } else {
                o.bulk(b"1234567999999999999999999999999999999");
            }
        }
        b"null" => o.null(),
        b"array" => {
            o.array(3);
            for j in 0..3 {
                o.int(j);
            }
        }
        b"set" => {
            o.set(3);
            for j in 0..3 {
                o.int(j);
            }
        }
        b"map" => {
            o.map(3);
            for j in 0..3 {
                o.int(j);
                o.boolean(j == 1);
            }
        }
        b"attrib" => {
            if resp3 {
                o.raw(b"|1\r\n$14\r\nkey-popularity\r\n*2\r\n$7\r\nkey:123\r\n:90\r\n");
            }
            o.bulk(b"Some real reply following the attribute");
        }
        b"push" => {
            if !resp3 {
                return Err(CmdError::err("RESP2 is not supported by this command"));
            }
            o.push(2);
            o.bulk(b"server-cpu-usage");
            o.int(42);
            o.bulk(b"Some real reply following the push reply");
        }
        b"true" => o.boolean(true),
        b"false" => o.boolean(false),
        b"verbatim" => o.verbatim(b"txt", b"This is a verbatim\nstring"),
        _ => {
            return Err(CmdError::err(
                "Wrong protocol type name. Please use one of the following: string|integer|double|bignum|null|array|set|map|attrib|push|verbatim|true|false",
            ))
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha1_vectors() {
        assert_eq!(hex(&sha1(b"")), "da39a3ee5e6b4b0d3255bfef95601890afd80709");
        assert_eq!(hex(&sha1(b"abc")), "a9993e364706816aba3e25717850c26c9cd0d89d");
        let long = vec![b'a'; 1000];
        assert_eq!(hex(&sha1(&long)), "291e9a6c66994949b57ba5e650361e98fc36b1ba");
    }

    #[test]
    fn memtoull_units() {
        assert_eq!(memtoull(b"1b"), Some(1));
        assert_eq!(memtoull(b"1kb"), Some(1024));
        assert_eq!(memtoull(b"0"), Some(0));
        assert_eq!(memtoull(b"x"), None);
        assert_eq!(memtoull(b"-1"), None);
    }
}
