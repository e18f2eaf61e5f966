//! Keyspace notifications (`notify-keyspace-events`), with Redis's event
//! classes and channel names: `__keyspace@<db>__:<key>` carries the event
//! name, `__keyevent@<db>__:<event>` carries the key.

use crate::server::Server;
use bytes::Bytes;
use std::sync::atomic::Ordering;

pub const KEYSPACE: u32 = 1 << 0; // K
pub const KEYEVENT: u32 = 1 << 1; // E
pub const GENERIC: u32 = 1 << 2; // g
pub const STRING: u32 = 1 << 3; // $
pub const LIST: u32 = 1 << 4; // l
pub const SET: u32 = 1 << 5; // s
pub const HASH: u32 = 1 << 6; // h
pub const ZSET: u32 = 1 << 7; // z
pub const EXPIRED: u32 = 1 << 8; // x
pub const EVICTED: u32 = 1 << 9; // e
pub const STREAM: u32 = 1 << 10; // t
pub const KEY_MISS: u32 = 1 << 11; // m
pub const MODULE: u32 = 1 << 12; // d
pub const NEW: u32 = 1 << 13; // n
/// `A`: every class except m and n.
pub const ALL: u32 = GENERIC | STRING | LIST | SET | HASH | ZSET | EXPIRED | EVICTED | STREAM | MODULE;

/// Parse a flags string like Redis's `keyspaceEventsStringToFlags`; None on
/// an unknown character.
pub fn parse_flags(s: &[u8]) -> Option<u32> {
    let mut f = 0;
    for &c in s {
        f |= match c {
            b'A' => ALL,
            b'g' => GENERIC,
            b'$' => STRING,
            b'l' => LIST,
            b's' => SET,
            b'h' => HASH,
            b'z' => ZSET,
            b'x' => EXPIRED,
            b'e' => EVICTED,
            b'K' => KEYSPACE,
            b'E' => KEYEVENT,
            b't' => STREAM,
            b'm' => KEY_MISS,
            b'd' => MODULE,
            b'n' => NEW,
            _ => return None,
        };
    }
    Some(f)
}

/// Render flags like Redis's `keyspaceEventsFlagsToString`.
pub fn flags_to_string(f: u32) -> String {
    let mut s = String::new();
    if f & ALL == ALL {
        s.push('A');
    } else {
        for (bit, c) in [
            (GENERIC, 'g'),
            (STRING, '$'),
            (LIST, 'l'),
            (SET, 's'),
            (HASH, 'h'),
            (ZSET, 'z'),
            (EXPIRED, 'x'),
            (EVICTED, 'e'),
            (STREAM, 't'),
            (MODULE, 'd'),
        ] {
            if f & bit != 0 {
                s.push(c);
            }
        }
    }
    if f & KEYSPACE != 0 {
        s.push('K');
    }
    if f & KEYEVENT != 0 {
        s.push('E');
    }
    if f & KEY_MISS != 0 {
        s.push('m');
    }
    if f & NEW != 0 {
        s.push('n');
    }
    s
}

/// Publish a keyspace event if its class is enabled. The disabled case is
/// one atomic load and inlined at every call site.
#[inline]
pub fn notify(srv: &Server, class: u32, event: &str, key: &[u8], db: usize) {
    let flags = srv.tun.notify_flags.load(Ordering::Relaxed);
    if flags & class == 0 || flags & (KEYSPACE | KEYEVENT) == 0 {
        return;
    }
    publish(srv, flags, event, key, db);
}

#[cold]
#[inline(never)]
fn publish(srv: &Server, flags: u32, event: &str, key: &[u8], db: usize) {
    if flags & KEYSPACE != 0 {
        let mut ch = format!("__keyspace@{db}__:").into_bytes();
        ch.extend_from_slice(key);
        srv.pubsub.publish(&Bytes::from(ch), &Bytes::copy_from_slice(event.as_bytes()));
    }
    if flags & KEYEVENT != 0 {
        let ch = format!("__keyevent@{db}__:{event}");
        srv.pubsub.publish(&Bytes::from(ch), &Bytes::copy_from_slice(key));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_roundtrip_like_redis() {
        assert_eq!(flags_to_string(parse_flags(b"KEA").unwrap()), "AKE");
        assert_eq!(flags_to_string(parse_flags(b"Kx").unwrap()), "xK");
        assert_eq!(flags_to_string(parse_flags(b"Eg$lshzxetd").unwrap()), "AE");
        assert_eq!(flags_to_string(parse_flags(b"").unwrap()), "");
        assert_eq!(parse_flags(b"Q"), None);
    }
}
