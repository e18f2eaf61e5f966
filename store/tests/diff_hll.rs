//! Differential tests: hll commands (transcripts/hll*.txt), plus property
//! tests for what transcripts cannot compare.
mod support;

use std::path::PathBuf;
use support::{Conn, Pair};

/// Transcripts that also need commands of other families (lists, keys).
const NEEDS_OTHER_FAMILIES: &[&str] = &["hll_types.txt"];

#[test]
fn transcripts_hll() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/transcripts");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name().unwrap().to_string_lossy().starts_with("hll") && p.extension().is_some_and(|e| e == "txt")
        })
        .collect();
    files.sort();
    assert!(!files.is_empty());
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap();
        let name = f.file_name().unwrap().to_string_lossy().to_string();
        for proto in ["2", "3"] {
            let mut p = Pair::start();
            if NEEDS_OTHER_FAMILIES.contains(&name.as_str()) {
                let ok = ["LPUSH", "HSET", "EXISTS", "TYPE", "EXPIRE", "TTL", "PEXPIRE", "DEL", "OBJECT"]
                    .iter()
                    .all(|c| probe(&mut p.f, c));
                if !ok {
                    eprintln!("skipping {name}: ferrite lacks list/hash/keys commands in this build");
                    break;
                }
            }
            if proto == "3" {
                p.r.cmd(&["HELLO", "3"]);
                p.f.cmd(&["HELLO", "3"]);
            }
            p.run(&format!("{name} (RESP{proto})"), &text);
        }
    }
}

/// Whether ferrite dispatches `cmd` (other families may not be merged yet;
/// an arity error means the command exists).
fn probe(f: &mut Conn, cmd: &str) -> bool {
    let r = f.cmd(&[cmd]);
    !r.starts_with(b"-ERR unknown command")
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
