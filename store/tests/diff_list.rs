//! Differential tests: list commands (transcripts/list*.txt).
mod support;

#[test]
fn transcripts_list() {
    support::run_transcripts("list");
}

/// Random sequences of list commands, compared byte for byte with Redis.
#[test]
fn random_list_commands_match_redis() {
    let keys = ["l1", "l2", "l3", "str"];
    let els = ["a", "b", "c", "1", "", "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"];
    let idx = ["0", "1", "2", "-1", "-2", "-3", "5", "-100", "100", "x", "9223372036854775807"];
    let ends = ["LEFT", "RIGHT", "left", "bad"];
    for proto in ["2", "3"] {
        let mut p = support::Pair::start();
        p.r.cmd(&["HELLO", proto]);
        p.f.cmd(&["HELLO", proto]);
        p.r.cmd(&["SET", "str", "v"]);
        p.f.cmd(&["SET", "str", "v"]);
        let mut rng = support::Rng(0x9E3779B97F4A7C15 ^ (proto.as_bytes()[0] as u64));
        for step in 0..3000 {
            let k = rng.pick(&keys);
            let k2 = rng.pick(&keys);
            let e = rng.pick(&els);
            let i = rng.pick(&idx);
            let j = rng.pick(&idx);
            let cmd: Vec<String> = match rng.next() % 20 {
                0 => vec!["LPUSH".into(), k.into(), e.into(), rng.pick(&els).into()],
                1 => vec!["RPUSH".into(), k.into(), e.into()],
                2 => vec!["LPUSHX".into(), k.into(), e.into()],
                3 => vec!["RPUSHX".into(), k.into(), e.into()],
                4 => vec!["LPOP".into(), k.into()],
                5 => vec!["RPOP".into(), k.into(), i.into()],
                6 => vec!["LLEN".into(), k.into()],
                7 | 8 => vec!["LRANGE".into(), k.into(), i.into(), j.into()],
                9 => vec!["LINDEX".into(), k.into(), i.into()],
                10 => vec!["LSET".into(), k.into(), i.into(), e.into()],
                11 => vec!["LINSERT".into(), k.into(), rng.pick(&["BEFORE", "AFTER"]).into(), e.into(), "z".into()],
                12 => vec!["LREM".into(), k.into(), i.into(), e.into()],
                13 => vec!["LTRIM".into(), k.into(), i.into(), j.into()],
                14 => vec!["LPOS".into(), k.into(), e.into(), "RANK".into(), i.into(), "COUNT".into(), j.into()],
                15 => vec!["LPOS".into(), k.into(), e.into(), "MAXLEN".into(), i.into()],
                16 => vec!["LMOVE".into(), k.into(), k2.into(), rng.pick(&ends).into(), rng.pick(&ends).into()],
                17 => vec!["RPOPLPUSH".into(), k.into(), k2.into()],
                18 => vec![
                    "LMPOP".into(),
                    "2".into(),
                    k.into(),
                    k2.into(),
                    rng.pick(&ends).into(),
                    "COUNT".into(),
                    i.into(),
                ],
                _ => vec!["LRANGE".into(), k.into(), "0".into(), "-1".into()],
            };
            let a = p.r.cmd(&cmd);
            let b = p.f.cmd(&cmd);
            assert_eq!(support::show(&a), support::show(&b), "RESP{proto} step {step}: {cmd:?}");
        }
    }
}
