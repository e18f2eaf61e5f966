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
    crc16::State::<crc16::XMODEM>::calculate(hash_tag(key)) & (SLOTS as u16 - 1)
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
}
