//! Conversion between ferrite values and the neutral RDB model of
//! `ferrite-rdb`, shared by DUMP/RESTORE and the persistence code. The
//! type modules apply Redis's encoding rules when a value is rebuilt.

use crate::keyspace::smallbytes::SmallBytes;
use crate::keyspace::Value;
use crate::server::Tunables;
use crate::types::{hash::Hash, hash::Limits, list::List, set::Set, zset::ZSet};
use ferrite_rdb::RdbValue;

/// The neutral RDB model of a ferrite value (streams are not supported).
pub fn to_rdb(v: &Value) -> Option<RdbValue> {
    Some(match v {
        Value::Str(s) => RdbValue::Str(s.to_vec()),
        Value::List(l) => RdbValue::List(l.items.iter().map(|x| x.to_vec()).collect()),
        Value::Set(s) => RdbValue::Set(s.ordered().into_iter().map(|x| x.to_vec()).collect()),
        Value::ZSet(z) => RdbValue::ZSet(z.tree.iter().map(|k| (k.member.to_vec(), k.score)).collect()),
        Value::Hash(h) => RdbValue::Hash(h.iter().map(|(f, v)| (f.to_vec(), v.to_vec())).collect()),
        Value::Stream(_) => return None,
    })
}

/// Build a ferrite value through the type modules, which apply Redis's
/// encoding rules (listpack/intset limits).
/// `compact`: the payload held a ziplist/listpack blob (not a zipmap); Redis 7.0
/// then only checks the entry count, not the element sizes.
pub fn from_rdb(v: RdbValue, tun: &Tunables, compact: bool) -> Value {
    match v {
        RdbValue::Str(s) => Value::str(&s),
        RdbValue::List(items) => {
            let mut l = List::default();
            l.items.extend(items.iter().map(|x| SmallBytes::new(x)));
            Value::List(Box::new(l))
        }
        RdbValue::Set(m) => {
            let max = Tunables::get(&tun.set_max_intset_entries);
            let mut s = Set::default();
            for x in &m {
                s.add(x, max);
            }
            Value::Set(Box::new(s))
        }
        RdbValue::ZSet(z) => {
            let me = Tunables::get(&tun.zset_max_listpack_entries);
            let mv = if compact { usize::MAX } else { Tunables::get(&tun.zset_max_listpack_value) };
            let mut zs = ZSet::default();
            if z.len() > me {
                zs.big = true;
            }
            for (m, sc) in &z {
                zs.set_score(m, *sc, me, mv);
            }
            Value::ZSet(Box::new(zs))
        }
        RdbValue::Hash(h) => {
            let mut lim = Limits::of(tun);
            if compact {
                lim.max_value = usize::MAX;
            }
            let mut hs = Hash::default();
            for (f, x) in &h {
                hs.set(f, x, lim);
            }
            Value::Hash(Box::new(hs))
        }
    }
}

