//! Differential tests for behaviour fixed while running Redis's own Tcl
//! suite against ferrite (transcripts/compat_*.txt): DEBUG DIGEST /
//! DIGEST-VALUE / OBJECT / POPULATE / PROTOCOL, SLOWLOG, LATENCY, CONFIG
//! parameters, COMMAND GETKEYS corner cases...
mod support;

#[test]
fn transcripts_compat() {
    support::run_transcripts("compat");
}
