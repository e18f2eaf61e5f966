//! Differential tests: hash commands (transcripts/hash*.txt).
mod support;

#[test]
fn transcripts_hash() {
    support::run_transcripts("hash");
}
