//! Differential tests: hll commands (transcripts/hll*.txt), plus property
//! tests for what transcripts cannot compare.
mod support;

use support::Conn;

#[test]
fn transcripts_hll() {
    support::run_transcripts("hll");
}

fn int(r: &[u8]) -> i64 {
    assert_eq!(r[0], b':', "not an integer reply: {}", support::show(r));
    std::str::from_utf8(&r[1..r.len() - 2]).unwrap().parse().unwrap()
}

/// PFSELFTEST uses random data; it must pass.
#[test]
fn pfselftest_passes() {
    let f = support::start_ferrite(&[]);
    let mut c = Conn::connect(f.port).unwrap();
    assert_eq!(c.cmd(&["PFSELFTEST"]), b"+OK\r\n");
}

/// Error bounds of the estimate at several cardinalities, and that the
/// union count equals the count of the merged key.
#[test]
fn estimates_within_bounds() {
    let f = support::start_ferrite(&[]);
    let mut c = Conn::connect(f.port).unwrap();
    let mut added = 0usize;
    for target in [100usize, 1000, 10_000, 50_000] {
        while added < target {
            let n = (target - added).min(500);
            let mut args = vec!["PFADD".to_string(), "k".to_string()];
            args.extend((added..added + n).map(|i| format!("item-{i}")));
            let refs: Vec<&str> = args.iter().map(|s| s.as_str()).collect();
            c.cmd(&refs);
            added += n;
        }
        let est = int(&c.cmd(&["PFCOUNT", "k"])) as f64;
        let err = (est - target as f64).abs() / target as f64;
        assert!(err < 0.05, "estimate {est} for {target}");
    }
    for i in 0..3000 {
        c.cmd(&["PFADD", "o", &format!("other-{i}")]);
    }
    let union = int(&c.cmd(&["PFCOUNT", "k", "o"]));
    assert_eq!(c.cmd(&["PFMERGE", "u", "k", "o"]), b"+OK\r\n");
    assert_eq!(int(&c.cmd(&["PFCOUNT", "u"])), union);
    // The multi-key count does not change the keys (cache stays as is).
    let before = c.cmd(&["GET", "o"]);
    c.cmd(&["PFCOUNT", "o", "k"]);
    assert_eq!(c.cmd(&["GET", "o"]), before);
}
