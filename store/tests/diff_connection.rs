//! Differential tests: connection, transactions and protocol handling.
mod support;

#[test]
fn transcripts_connection() {
    support::run_transcripts("connection");
}

#[test]
fn transcripts_txn() {
    support::run_transcripts("txn");
}
