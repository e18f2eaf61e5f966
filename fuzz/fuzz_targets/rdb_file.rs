#![no_main]
//! Feed arbitrary bytes in arbitrary chunks to the streaming RDB file
//! parser: it must return events or an error, never panic, never buffer
//! more than it was given, and give the same result whatever the chunking.

use ferrite_rdb::file::{Event, RdbParser};
use ferrite_rdb::RdbError;
use libfuzzer_sys::fuzz_target;

fn run(data: &[u8], chunks: &[u8]) -> Result<Vec<Event>, RdbError> {
    let mut p = RdbParser::new();
    let mut out = Vec::new();
    let mut at = 0;
    let mut k = 0;
    loop {
        match p.next_event()? {
            Some(e) => out.push(e),
            None if p.is_done() => break,
            None if at >= data.len() => p.end_of_input(),
            None => {
                let c = chunks.get(k % chunks.len().max(1)).copied().unwrap_or(255) as usize + 1;
                k += 1;
                let n = c.min(data.len() - at);
                p.feed(&data[at..at + n]);
                at += n;
                assert!(p.buffered() <= data.len());
            }
        }
    }
    p.finish()?;
    Ok(out)
}

fuzz_target!(|input: &[u8]| {
    // First byte: how many chunk-size bytes follow; the rest is the file.
    let Some((&n, rest)) = input.split_first() else { return };
    let n = (n as usize % 16).min(rest.len());
    let (chunks, data) = rest.split_at(n);
    // Most inputs lack the magic: give the parser a head start half the time.
    let mut owned;
    let data = if n % 2 == 0 {
        owned = b"REDIS0010".to_vec();
        owned.extend_from_slice(data);
        &owned[..]
    } else {
        data
    };
    let a = run(data, chunks);
    let b = run(data, &[]);
    assert_eq!(format!("{a:?}"), format!("{b:?}"));
});
