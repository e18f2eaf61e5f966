//! Encoding of values in forms Redis 7.0 loads.

use crate::packs;
use crate::{lzf, types as t, RdbValue};

/// An output buffer.
#[derive(Default)]
pub struct Writer {
    pub buf: Vec<u8>,
}

impl Writer {
    pub fn len(&mut self, l: u64) {
        if l < 64 {
            self.buf.push(l as u8);
        } else if l < 16384 {
            self.buf.push(0x40 | (l >> 8) as u8);
            self.buf.push((l & 0xff) as u8);
        } else if l <= u32::MAX as u64 {
            self.buf.push(0x80);
            self.buf.extend_from_slice(&(l as u32).to_be_bytes());
        } else {
            self.buf.push(0x81);
            self.buf.extend_from_slice(&l.to_be_bytes());
        }
    }

    /// A string, integer-encoded when Redis would (canonical integer of at
    /// most 11 chars fitting in 32 bits), LZF-compressed when longer than 20
    /// bytes and compression saves at least 4 bytes.
    pub fn string(&mut self, s: &[u8]) {
        if s.len() <= 11 {
            if let Some(i) = packs::canonical_int(s) {
                if (i8::MIN as i64..=i8::MAX as i64).contains(&i) {
                    self.buf.push(0xc0);
                    self.buf.push(i as i8 as u8);
                    return;
                } else if (i16::MIN as i64..=i16::MAX as i64).contains(&i) {
                    self.buf.push(0xc1);
                    self.buf.extend_from_slice(&(i as i16).to_le_bytes());
                    return;
                } else if (i32::MIN as i64..=i32::MAX as i64).contains(&i) {
                    self.buf.push(0xc2);
                    self.buf.extend_from_slice(&(i as i32).to_le_bytes());
                    return;
                }
            }
        }
        if s.len() > 20 {
            if let Some(c) = lzf::compress(s) {
                if c.len() + 4 <= s.len() {
                    self.buf.push(0xc3);
                    self.len(c.len() as u64);
                    self.len(s.len() as u64);
                    self.buf.extend_from_slice(&c);
                    return;
                }
            }
        }
        self.len(s.len() as u64);
        self.buf.extend_from_slice(s);
    }
}

/// Elements per listpack node when encoding lists.
const NODE_ENTRIES: usize = 128;

/// Append the type byte and the encoded value.
pub fn encode_value(v: &RdbValue, w: &mut Writer) {
    match v {
        RdbValue::Str(s) => {
            w.buf.push(t::STRING);
            w.string(s);
        }
        RdbValue::List(items) => {
            w.buf.push(t::LIST_QUICKLIST_2);
            let nodes = items.len().div_ceil(NODE_ENTRIES);
            w.len(nodes as u64);
            for chunk in items.chunks(NODE_ENTRIES) {
                w.len(2); // PACKED
                let lp = packs::listpack_encode(chunk.iter().map(|x| x.as_slice()));
                w.string(&lp);
            }
        }
        RdbValue::Set(m) => {
            w.buf.push(t::SET);
            w.len(m.len() as u64);
            for x in m {
                w.string(x);
            }
        }
        RdbValue::ZSet(z) => {
            w.buf.push(t::ZSET_2);
            w.len(z.len() as u64);
            // Redis writes the skiplist from the tail; any order loads.
            for (m, s) in z {
                w.string(m);
                w.buf.extend_from_slice(&s.to_le_bytes());
            }
        }
        RdbValue::Stream(s) => {
            w.buf.push(t::STREAM_LISTPACKS_2);
            crate::stream::encode(s, w);
        }
        RdbValue::Module(m) => {
            w.buf.push(t::MODULE_2);
            w.buf.extend_from_slice(&m.raw);
        }
        RdbValue::Hash(h) => {
            w.buf.push(t::HASH);
            w.len(h.len() as u64);
            for (f, x) in h {
                w.string(f);
                w.string(x);
            }
        }
    }
}
