//! CRC-64/Jones as used by Redis (reflected, polynomial 0xad93d23594c935a9,
//! init 0, no final xor). Check value for "123456789": 0xe9c6d914c4b8d9ca.

const POLY_REFLECTED: u64 = 0x95ac_9329_ac4b_c9b5;

const fn make_table() -> [u64; 256] {
    let mut t = [0u64; 256];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u64;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 == 1 { (c >> 1) ^ POLY_REFLECTED } else { c >> 1 };
            k += 1;
        }
        t[i] = c;
        i += 1;
    }
    t
}

/// Slicing-by-8 tables: `T[k][i]` is the CRC of byte `i` followed by `k`
/// zero bytes, so eight input bytes are folded with eight lookups.
const fn make_tables() -> [[u64; 256]; 8] {
    let mut t = [[0u64; 256]; 8];
    t[0] = make_table();
    let mut k = 1;
    while k < 8 {
        let mut i = 0;
        while i < 256 {
            let prev = t[k - 1][i];
            t[k][i] = (prev >> 8) ^ t[0][(prev & 0xff) as usize];
            i += 1;
        }
        k += 1;
    }
    t
}

static T: [[u64; 256]; 8] = make_tables();

/// Continue a CRC64 over `data` starting from `crc` (slicing-by-8: RDB
/// loading checks every byte of multi-gigabyte files).
pub fn crc64(mut crc: u64, data: &[u8]) -> u64 {
    let mut chunks = data.chunks_exact(8);
    for c in &mut chunks {
        let x = crc ^ u64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]);
        crc = T[7][(x & 0xff) as usize]
            ^ T[6][((x >> 8) & 0xff) as usize]
            ^ T[5][((x >> 16) & 0xff) as usize]
            ^ T[4][((x >> 24) & 0xff) as usize]
            ^ T[3][((x >> 32) & 0xff) as usize]
            ^ T[2][((x >> 40) & 0xff) as usize]
            ^ T[1][((x >> 48) & 0xff) as usize]
            ^ T[0][(x >> 56) as usize];
    }
    for &b in chunks.remainder() {
        crc = T[0][((crc ^ b as u64) & 0xff) as usize] ^ (crc >> 8);
    }
    crc
}

#[cfg(test)]
mod tests {
    #[test]
    fn check_value() {
        assert_eq!(super::crc64(0, b"123456789"), 0xe9c6d914c4b8d9ca);
    }

    /// The sliced loop agrees with the byte-at-a-time definition for every
    /// length and split point.
    #[test]
    fn sliced_matches_bytewise() {
        let table = super::make_table();
        let bytewise = |mut crc: u64, d: &[u8]| {
            for &b in d {
                crc = table[((crc ^ b as u64) & 0xff) as usize] ^ (crc >> 8);
            }
            crc
        };
        let data: Vec<u8> = (0..300u32).map(|i| (i.wrapping_mul(2654435761) >> 13) as u8).collect();
        for n in 0..data.len() {
            assert_eq!(super::crc64(0, &data[..n]), bytewise(0, &data[..n]), "length {n}");
            let (a, b) = data[..n].split_at(n / 3);
            assert_eq!(super::crc64(super::crc64(0, a), b), bytewise(0, &data[..n]), "split {n}");
        }
    }
}
