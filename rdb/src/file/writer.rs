//! Incremental RDB file writer.

use crate::encode::{encode_value, Writer};
use crate::{crc64, opcodes as op, LruInfo, RdbValue, RDB_VERSION};
use std::io::{self, Write};

/// Values for the aux fields Redis writes at the start of every RDB file
/// (`rdbSaveInfoAuxFields`).
#[derive(Clone, Debug)]
pub struct StandardAux {
    /// `redis-ver`, e.g. "7.0.15".
    pub redis_ver: String,
    /// `redis-bits` (64 on 64-bit builds).
    pub redis_bits: u32,
    /// `ctime`: unix time in seconds.
    pub ctime: i64,
    /// `used-mem`: bytes in use.
    pub used_mem: u64,
    /// `repl-stream-db`, `repl-id`, `repl-offset`: written only for
    /// replication (Redis writes them when it has replication info).
    pub repl: Option<(u32, String, i64)>,
    /// `aof-base`: true when the file is an AOF preamble.
    pub aof_base: bool,
}

/// Writes an RDB file (version 10) to `W`, computing the CRC64 while
/// writing. Each call writes straight through: memory held is at most one
/// encoded value.
pub struct RdbWriter<W: Write> {
    w: W,
    crc: u64,
    scratch: Writer,
}

impl<W: Write> RdbWriter<W> {
    /// Start a file: writes the `REDIS0010` magic.
    pub fn new(w: W) -> io::Result<Self> {
        let mut me = RdbWriter { w, crc: 0, scratch: Writer::default() };
        let magic = format!("REDIS{RDB_VERSION:04}");
        me.put(magic.as_bytes())?;
        Ok(me)
    }

    fn put(&mut self, b: &[u8]) -> io::Result<()> {
        self.crc = crc64::crc64(self.crc, b);
        self.w.write_all(b)
    }

    fn flush_scratch(&mut self) -> io::Result<()> {
        let buf = std::mem::take(&mut self.scratch.buf);
        let r = self.put(&buf);
        self.scratch.buf = buf;
        self.scratch.buf.clear();
        if self.scratch.buf.capacity() > 1 << 20 {
            self.scratch.buf.shrink_to(1 << 16);
        }
        r
    }

    /// An AUX field (opcode 250).
    pub fn aux(&mut self, key: &[u8], value: &[u8]) -> io::Result<()> {
        self.scratch.buf.push(op::AUX);
        self.scratch.string(key);
        self.scratch.string(value);
        self.flush_scratch()
    }

    /// The aux fields Redis writes at the start of a file, in its order.
    pub fn standard_aux(&mut self, a: &StandardAux) -> io::Result<()> {
        self.aux(b"redis-ver", a.redis_ver.as_bytes())?;
        self.aux(b"redis-bits", a.redis_bits.to_string().as_bytes())?;
        self.aux(b"ctime", a.ctime.to_string().as_bytes())?;
        self.aux(b"used-mem", a.used_mem.to_string().as_bytes())?;
        if let Some((db, id, off)) = &a.repl {
            self.aux(b"repl-stream-db", db.to_string().as_bytes())?;
            self.aux(b"repl-id", id.as_bytes())?;
            self.aux(b"repl-offset", off.to_string().as_bytes())?;
        }
        self.aux(b"aof-base", if a.aof_base { b"1" } else { b"0" })
    }

    /// SELECTDB opcode.
    pub fn select_db(&mut self, db: u32) -> io::Result<()> {
        self.scratch.buf.push(op::SELECTDB);
        self.scratch.len(db as u64);
        self.flush_scratch()
    }

    /// RESIZEDB opcode (hash table size hints).
    pub fn resize_db(&mut self, db_size: u64, expires_size: u64) -> io::Result<()> {
        self.scratch.buf.push(op::RESIZEDB);
        self.scratch.len(db_size);
        self.scratch.len(expires_size);
        self.flush_scratch()
    }

    /// A function library (FUNCTION2 opcode): its full code, starting with
    /// the `#!<engine> name=<lib>` shebang line.
    pub fn function(&mut self, code: &[u8]) -> io::Result<()> {
        self.scratch.buf.push(op::FUNCTION2);
        self.scratch.string(code);
        self.flush_scratch()
    }

    /// A key: optional absolute expire time (unix ms), LRU/LFU info, the
    /// type, the key and the value.
    pub fn entry(&mut self, key: &[u8], value: &RdbValue, expire_at_ms: Option<i64>, lru: LruInfo) -> io::Result<()> {
        if let Some(at) = expire_at_ms {
            self.scratch.buf.push(op::EXPIRETIME_MS);
            self.scratch.buf.extend_from_slice(&at.to_le_bytes());
        }
        match lru {
            LruInfo::None => {}
            LruInfo::Idle(secs) => {
                self.scratch.buf.push(op::IDLE);
                self.scratch.len(secs);
            }
            LruInfo::Freq(f) => {
                self.scratch.buf.push(op::FREQ);
                self.scratch.buf.push(f);
            }
        }
        // encode_value writes the type byte first; the key goes after it.
        let head = self.scratch.buf.len();
        encode_value(value, &mut self.scratch);
        let mut key_enc = Writer::default();
        key_enc.string(key);
        let at = head + 1;
        self.scratch.buf.splice(at..at, key_enc.buf);
        self.flush_scratch()
    }

    /// Bytes of an already encoded element written verbatim (counted in the
    /// checksum). For callers that encode values themselves.
    pub fn raw(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.put(bytes)
    }

    /// The EOF opcode and the CRC64 of everything; returns the sink after
    /// flushing it.
    pub fn finish(mut self) -> io::Result<W> {
        self.put(&[op::EOF])?;
        let crc = self.crc;
        self.w.write_all(&crc.to_le_bytes())?;
        self.w.flush()?;
        Ok(self.w)
    }
}
