//! Differential tests: acl (transcripts/acl*.txt).
mod support;

#[test]
fn transcripts_acl() {
    support::run_transcripts("acl");
}
