//! Differential tests: stream commands (transcripts/stream*.txt).
mod support;

#[test]
fn transcripts_stream() {
    support::run_transcripts("stream");
}
