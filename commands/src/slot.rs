//! Hash slots: `CRC16-XMODEM(key) & 16383`, with `{hash tags}`.

/// Number of hash slots in a Redis Cluster.
pub const SLOTS: usize = 16384;

/// The part of `key` that is hashed: the content of the first `{...}` if it
/// is non-empty, otherwise the whole key (Redis's `keyHashSlot`).
#[inline]
pub fn hash_tag(key: &[u8]) -> &[u8] {
    if let Some(s) = key.iter().position(|&c| c == b'{') {
        if let Some(e) = key[s + 1..].iter().position(|&c| c == b'}') {
            if e > 0 {
                return &key[s + 1..s + 1 + e];
            }
        }
    }
    key
}

/// The hash slot of `key`.
#[inline]
pub fn key_hash_slot(key: &[u8]) -> u16 {
    crc16_xmodem(hash_tag(key)) & (SLOTS as u16 - 1)
}

/// CRC16 lookup tables for slicing-by-8: `CRC_TABLES[k][b]` is the CRC
/// register after byte `b` followed by `k` zero bytes.
static CRC_TABLES: [[u16; 256]; 8] = crc_tables();

const fn crc_tables() -> [[u16; 256]; 8] {
    let mut t = [[0u16; 256]; 8];
    let mut i = 0;
    while i < 256 {
        let mut c = (i as u16) << 8;
        let mut bit = 0;
        while bit < 8 {
            c = if c & 0x8000 != 0 { (c << 1) ^ 0x1021 } else { c << 1 };
            bit += 1;
        }
        t[0][i] = c;
        i += 1;
    }
    let mut k = 1;
    while k < 8 {
        let mut i = 0;
        while i < 256 {
            let p = t[k - 1][i];
            t[k][i] = (p << 8) ^ t[0][(p >> 8) as usize];
            i += 1;
        }
        k += 1;
    }
    t
}

/// CRC16-XMODEM (polynomial 0x1021, initial value 0), eight bytes per step
/// so the table lookups of a step do not wait on each other.
#[inline]
pub fn crc16_xmodem(data: &[u8]) -> u16 {
    let t = &CRC_TABLES;
    let mut crc: u16 = 0;
    let mut chunks = data.chunks_exact(8);
    for c in &mut chunks {
        let hi = (c[0] ^ (crc >> 8) as u8) as usize;
        let lo = (c[1] ^ crc as u8) as usize;
        crc = t[7][hi]
            ^ t[6][lo]
            ^ t[5][c[2] as usize]
            ^ t[4][c[3] as usize]
            ^ t[3][c[4] as usize]
            ^ t[2][c[5] as usize]
            ^ t[1][c[6] as usize]
            ^ t[0][c[7] as usize];
    }
    for &b in chunks.remainder() {
        crc = (crc << 8) ^ t[0][((crc >> 8) as u8 ^ b) as usize];
    }
    crc
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_slots() {
        // Values from `CLUSTER KEYSLOT` on Redis 7.0.
        assert_eq!(key_hash_slot(b"foo"), 12182);
        assert_eq!(key_hash_slot(b"bar"), 5061);
        assert_eq!(key_hash_slot(b"{user1000}.following"), key_hash_slot(b"user1000"));
        assert_eq!(key_hash_slot(b"foo{}{bar}"), key_hash_slot(b"foo{}{bar}"));
        assert_eq!(hash_tag(b"foo{}{bar}"), b"foo{}{bar}");
        assert_eq!(hash_tag(b"foo{{bar}}zap"), b"{bar");
        assert_eq!(hash_tag(b"foo{bar}{zap}"), b"bar");
        assert_eq!(key_hash_slot(b""), 0);
    }

    #[test]
    fn crc16_matches_bitwise_reference() {
        // Bit-at-a-time CRC16-XMODEM, the definition.
        fn reference(data: &[u8]) -> u16 {
            let mut crc: u16 = 0;
            for &b in data {
                crc ^= (b as u16) << 8;
                for _ in 0..8 {
                    crc = if crc & 0x8000 != 0 { (crc << 1) ^ 0x1021 } else { crc << 1 };
                }
            }
            crc
        }
        assert_eq!(crc16_xmodem(b"123456789"), 0x31c3);
        let mut x: u32 = 12345;
        for len in 0..200 {
            let data: Vec<u8> = (0..len)
                .map(|_| {
                    x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
                    (x >> 16) as u8
                })
                .collect();
            assert_eq!(crc16_xmodem(&data), reference(&data), "length {len}");
            assert_eq!(crc16_xmodem(&data), crc16::State::<crc16::XMODEM>::calculate(&data), "length {len}");
        }
    }
}
