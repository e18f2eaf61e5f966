//! SHA-1, as Redis uses it to name scripts (`sha1hex`) and mix DEBUG DIGEST values.

/// The SHA-1 digest of `data` (the RustCrypto `sha1` crate).
pub fn sha1(data: &[u8]) -> [u8; 20] {
    use sha1::Digest;
    sha1::Sha1::digest(data).into()
}

/// Lowercase hex SHA-1 of `data` (40 characters).
pub fn sha1hex(data: &[u8]) -> String {
    let mut s = String::with_capacity(40);
    for b in sha1(data) {
        s.push_str(&format!("{b:02x}"));
    }
    s
}

#[cfg(test)]
mod tests {
    #[test]
    fn known() {
        assert_eq!(super::sha1hex(b""), "da39a3ee5e6b4b0d3255bfef95601890afd80709");
        assert_eq!(super::sha1hex(b"return 1"), "e0e1f9fabfc9d4800c877a703b823ac0578ff8db");
    }
}
