//! Differential tests: list commands (transcripts/list*.txt).
mod support;

#[test]
fn transcripts_list() {
    support::run_transcripts("list");
}
