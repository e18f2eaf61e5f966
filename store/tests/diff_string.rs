//! Differential tests: string commands.
mod support;

#[test]
fn transcripts_string() {
    support::run_transcripts("string");
}
