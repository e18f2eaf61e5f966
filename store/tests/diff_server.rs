//! Differential tests: server commands (transcripts/server*.txt).
mod support;

#[test]
fn transcripts_server() {
    support::run_transcripts("server");
}
