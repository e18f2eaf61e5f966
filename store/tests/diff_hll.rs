//! Differential tests: hll commands (transcripts/hll*.txt).
mod support;

#[test]
fn transcripts_hll() {
    support::run_transcripts("hll");
}
