//! Differential tests: string and bitmap commands.
mod support;

#[test]
fn transcripts_string_basic() {
    support::run_transcripts("string_basic");
}

#[test]
fn transcripts_string_getex() {
    support::run_transcripts("string_getex");
}

#[test]
fn transcripts_string_range() {
    support::run_transcripts("string_range");
}

#[test]
fn transcripts_string_float() {
    support::run_transcripts("string_float");
}

#[test]
fn transcripts_string_lcs() {
    support::run_transcripts("string_lcs");
}
