#![no_main]
//! Decode arbitrary bytes as a DUMP body (type byte + value), and as a full
//! payload; decoding must return a value or an error, never panic. Decoded
//! values must survive an encode/decode round trip.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(v) = ferrite_rdb::decode_dump_body(data) {
        let p = ferrite_rdb::dump_payload(&v);
        let body = ferrite_rdb::verify_dump_payload(&p).expect("own payload verifies");
        let back = ferrite_rdb::decode_dump_body(body).expect("own payload decodes");
        assert_eq!(format!("{v:?}"), format!("{back:?}"));
    }
    if let Some(body) = ferrite_rdb::verify_dump_payload(data) {
        let _ = ferrite_rdb::decode_dump_body(body);
    }
});
