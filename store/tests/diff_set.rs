//! Differential tests: set commands (transcripts/set*.txt).
mod support;

#[test]
fn transcripts_set() {
    support::run_transcripts("set");
}
