//! Fuzz the reply parser of ferrite-migrate's blocking client (`ferrite_migrate::resp::parse_reply`, run on every
//! reply of the source cluster and of the proxies): it must never panic or allocate beyond the input, every prefix
//! of a complete reply must be "incomplete", and where it finds a RESP2 reply it must end where the proxy's frame
//! scanner (`ferrite_resp::frame`) ends it.
#![no_main]
use ferrite_migrate::resp::parse_reply;
use ferrite_resp::frame::frame_len;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(Some((_, n))) = parse_reply(data) {
        assert!(n > 0 && n <= data.len(), "reply length within the input");
        if let Ok(Some(m)) = frame_len(data) {
            assert_eq!(n, m, "both parsers end the reply at the same byte");
        }
        for cut in [0, n / 2, n - 1] {
            assert!(matches!(parse_reply(&data[..cut]), Ok(None) | Err(_)), "a prefix is not a whole reply");
        }
    }
});
