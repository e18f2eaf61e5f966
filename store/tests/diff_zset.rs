//! Differential tests: zset commands (transcripts/zset*.txt).
mod support;

#[test]
fn transcripts_zset() {
    support::run_transcripts("zset");
}
