//! Differential tests: keys commands (transcripts/keys*.txt).
mod support;

#[test]
fn transcripts_keys() {
    support::run_transcripts("keys");
}
