//! Differential tests: geo (transcripts/geo*.txt).
mod support;

#[test]
fn transcripts_geo() {
    support::run_transcripts("geo");
}
