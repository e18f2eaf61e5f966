//! Differential tests: scripting (transcripts/script_*.txt and
//! function_*.txt against a real redis-server), plus multi-connection
//! tests for what transcripts cannot show: busy scripts, SCRIPT KILL /
//! FUNCTION KILL, FUNCTION DUMP/RESTORE round trips, random output.
mod support;

use std::time::{Duration, Instant};
use support::{start_ferrite, Conn};

#[test]
fn transcripts_script() {
    support::run_transcripts("script");
}

#[test]
fn transcripts_function() {
    support::run_transcripts("function");
}
