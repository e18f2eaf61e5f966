//! LZF decompression (and a simple compressor) compatible with liblzf.

use crate::{RdbError, Result};

/// Decompress `input` into exactly `out_len` bytes.
pub fn decompress(input: &[u8], out_len: usize) -> Result<Vec<u8>> {
    let mut out: Vec<u8> = Vec::with_capacity(out_len.min(1 << 20));
    let mut i = 0;
    while i < input.len() {
        let ctrl = input[i] as usize;
        i += 1;
        if ctrl < 32 {
            let n = ctrl + 1;
            if i + n > input.len() {
                return Err(RdbError::Bad("lzf literal overrun"));
            }
            if out.len() + n > out_len {
                return Err(RdbError::Bad("lzf output overrun"));
            }
            out.extend_from_slice(&input[i..i + n]);
            i += n;
        } else {
            let mut len = ctrl >> 5;
            if len == 7 {
                let b = *input.get(i).ok_or(RdbError::Bad("lzf truncated"))?;
                i += 1;
                len += b as usize;
            }
            len += 2;
            let b = *input.get(i).ok_or(RdbError::Bad("lzf truncated"))? as usize;
            i += 1;
            let back = ((ctrl & 0x1f) << 8) + b + 1;
            if back > out.len() {
                return Err(RdbError::Bad("lzf back reference"));
            }
            if out.len() + len > out_len {
                return Err(RdbError::Bad("lzf output overrun"));
            }
            let start = out.len() - back;
            for k in 0..len {
                let c = out[start + k];
                out.push(c);
            }
        }
    }
    if out.len() != out_len {
        return Err(RdbError::Bad("lzf length mismatch"));
    }
    Ok(out)
}

/// Compress with a simple hash-chain-free LZF encoder. Returns `None` when
/// the result would not be smaller than the input.
pub fn compress(input: &[u8]) -> Option<Vec<u8>> {
    if input.len() < 4 {
        return None;
    }
    // The hash table is sized to the input (at most 2^14 entries): a short
    // string must not pay for clearing a table built for a long one.
    let hbits = (usize::BITS - input.len().next_power_of_two().leading_zeros()).clamp(4, 14) as usize;
    let mut htab = vec![usize::MAX; 1 << hbits];
    let mut out: Vec<u8> = Vec::with_capacity(input.len());
    let mut lit: Vec<u8> = Vec::new();
    let flush = |out: &mut Vec<u8>, lit: &mut Vec<u8>| {
        for chunk in lit.chunks(32) {
            out.push((chunk.len() - 1) as u8);
            out.extend_from_slice(chunk);
        }
        lit.clear();
    };
    let mut i = 0;
    while i < input.len() {
        if i + 2 < input.len() {
            let h = ((input[i] as usize) << 16 | (input[i + 1] as usize) << 8 | input[i + 2] as usize)
                .wrapping_mul(2654435761)
                >> 8
                & ((1 << hbits) - 1);
            let cand = htab[h];
            htab[h] = i;
            if cand != usize::MAX && i - cand <= 8192 && input[cand..cand + 3] == input[i..i + 3] {
                let max = (input.len() - i).min(264);
                let mut len = 3;
                while len < max && input[cand + len] == input[i + len] {
                    len += 1;
                }
                flush(&mut out, &mut lit);
                let off = i - cand - 1;
                let l = len - 2;
                if l < 7 {
                    out.push(((l << 5) | (off >> 8)) as u8);
                } else {
                    out.push(((7 << 5) | (off >> 8)) as u8);
                    out.push((l - 7) as u8);
                }
                out.push((off & 0xff) as u8);
                i += len;
                continue;
            }
        }
        lit.push(input[i]);
        i += 1;
    }
    flush(&mut out, &mut lit);
    if out.len() < input.len() {
        Some(out)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let data: Vec<u8> = b"abcabcabcabcabcabcabcabcabcabcaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaxyz".to_vec();
        let c = compress(&data).unwrap();
        assert!(c.len() < data.len());
        assert_eq!(decompress(&c, data.len()).unwrap(), data);
    }

    #[test]
    fn bad_inputs() {
        assert!(decompress(&[0x20, 0x00], 2).is_err());
        assert!(decompress(&[5, b'a'], 6).is_err());
        assert!(decompress(&[0, b'a'], 2).is_err());
    }
}
