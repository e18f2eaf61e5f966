//! Fuzz the request parser: arbitrary bytes, fed in arbitrary chunk sizes,
//! must never panic, and chunking must not change the parsed commands.
#![no_main]
use bytes::BytesMut;
use ferrite_resp::parser::Parsed;
use ferrite_resp::{Limits, RequestParser};
use libfuzzer_sys::fuzz_target;

fn parse_all(data: &[u8], chunk: usize) -> (Vec<Vec<Vec<u8>>>, bool) {
    let mut p = RequestParser::new(Limits { max_bulk_len: 1 << 20, max_inline: 4096, max_multibulk: 1 << 16 });
    let mut buf = BytesMut::new();
    let mut args = Vec::new();
    let mut out = Vec::new();
    for piece in data.chunks(chunk.max(1)) {
        buf.extend_from_slice(piece);
        loop {
            match p.parse(&mut buf, &mut args) {
                Ok(Parsed::Command) => {
                    assert!(!args.is_empty());
                    out.push(args.iter().map(|a| a.to_vec()).collect());
                    args.clear();
                }
                Ok(Parsed::Incomplete) => break,
                Err(_) => return (out, true),
            }
        }
    }
    (out, false)
}

fuzz_target!(|data: &[u8]| {
    if data.is_empty() {
        return;
    }
    let chunk = data[0] as usize % 17 + 1;
    let body = &data[1..];
    let whole = parse_all(body, body.len().max(1));
    let pieces = parse_all(body, chunk);
    // Errors may be detected at different points only for limit checks on
    // incomplete lines; when neither errored, results must be identical.
    if !whole.1 && !pieces.1 {
        assert_eq!(whole.0, pieces.0);
    }
});
