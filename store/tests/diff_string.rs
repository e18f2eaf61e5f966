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

#[test]
fn transcripts_string_bitmap() {
    support::run_transcripts("string_bitmap");
}

#[test]
fn transcripts_string_bitop() {
    support::run_transcripts("string_bitop");
}

#[test]
fn transcripts_string_bitfield() {
    support::run_transcripts("string_bitfield");
}

#[test]
fn transcripts_string_wrongtype() {
    support::run_transcripts("string_wrongtype");
}

#[test]
fn transcripts_string_ttl() {
    support::run_transcripts("string_ttl");
}
