//! Fuzz the reply-side framing of `ferrite_resp::frame` (what the proxy runs on every backend reply and on every
//! complete client request):
//! - the incremental `FrameScanner`, fed the input in arbitrary chunk sizes, finds the same frame boundaries as a
//!   one-shot scan of the whole input (or both reject it), and never panics;
//! - `Value::parse` of every frame found never panics;
//! - `split_request` only takes a request that the incremental `RequestParser` parses to the same arguments from
//!   the same bytes, and leaves the buffer untouched otherwise.
#![no_main]
use bytes::{Bytes, BytesMut};
use ferrite_resp::frame::{split_request, FrameScanner, Value};
use ferrite_resp::parser::Parsed;
use ferrite_resp::{Limits, RequestParser};
use libfuzzer_sys::fuzz_target;

/// Frame lengths found in `data` fed `chunk` bytes at a time; `true` if the scanner rejected the stream.
fn frames(data: &[u8], chunk: usize) -> (Vec<usize>, bool) {
    let mut sc = FrameScanner::default();
    let mut out = Vec::new();
    let mut start = 0;
    let mut have = 0;
    while have < data.len() || start < have {
        let before = have;
        have = (have + chunk).min(data.len());
        loop {
            match sc.scan(&data[start..have]) {
                Ok(Some(n)) => {
                    assert!(n > 0 && start + n <= have, "frame length within the buffer");
                    sc.reset();
                    out.push(n);
                    start += n;
                }
                Ok(None) => break,
                Err(_) => return (out, true),
            }
        }
        if have == before {
            break;
        }
    }
    (out, false)
}

fuzz_target!(|data: &[u8]| {
    if data.is_empty() {
        return;
    }
    let chunk = data[0] as usize % 23 + 1;
    let body = &data[1..];
    let whole = frames(body, body.len().max(1));
    let pieces = frames(body, chunk);
    if !whole.1 && !pieces.1 {
        assert_eq!(whole.0, pieces.0, "chunking changed the frame boundaries");
    }
    let all = Bytes::copy_from_slice(body);
    let mut at = 0;
    for n in &whole.0 {
        let _ = Value::parse(&all.slice(at..at + n));
        at += n;
    }

    let mut buf = BytesMut::from(body);
    let mut args = Vec::new();
    let limit = 1 << 16;
    match split_request(&mut buf, &mut args, limit, 1024) {
        Some(raw) => {
            assert_eq!(&raw[..], &body[..raw.len()], "the request is the front of the buffer");
            assert_eq!(&buf[..], &body[raw.len()..], "only the request is taken");
            let mut p = RequestParser::new(Limits { max_bulk_len: limit, max_inline: 4096, max_multibulk: 1024 });
            let mut b = BytesMut::from(&raw[..]);
            let mut parsed = Vec::new();
            assert!(matches!(p.parse(&mut b, &mut parsed), Ok(Parsed::Command)), "the parser accepts it");
            assert!(b.is_empty(), "the parser consumes exactly the request");
            assert_eq!(parsed, args, "same arguments");
        }
        None => {
            assert_eq!(&buf[..], body, "nothing taken");
            assert!(args.is_empty());
        }
    }
});
