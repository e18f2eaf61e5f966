//! Differential tests: notify (transcripts/notify*.txt).
mod support;

#[test]
fn transcripts_notify() {
    support::run_transcripts("notify");
}
