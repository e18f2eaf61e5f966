//! Deterministic mutation test of the streaming file parser and the DUMP
//! decoder: a few thousand corrupted variants of real files, fed in random
//! chunks, must give an error or events (never a panic, never unbounded
//! buffering), and the same result whatever the chunking.

mod common;

use common::Rng;
use ferrite_rdb::file::{Event, RdbParser, RdbWriter};
use ferrite_rdb::{LruInfo, RdbError, RdbValue};

/// A file SAVEd by redis-server 7.0.15 (LFU policy): strings (raw, int,
/// LZF), listpack list, intset, plain set, listpack zset and hash with a
/// TTL, a stream with a tombstone and a group, a key in db 2, a function.
const REDIS_FILE: &str = "524544495330303130fa0972656469732d76657206372e302e3135fa0a72656469732d62697473c040fa056374696d65c24781036bfa08757365642d6d656dc228751400fa08616f662d62617365c000f5404223216c7561206e616d653d740a72656469732e72656769737465725f66756e6374696f6e282774272c2066756e6374696f6e28292072657475726e203120656e6429fe00fb0901f90500026c7ac30b40780361626361e06902016263fc40e7274eb9010000f90610016812120000000400816602817602816e020101fff90512016c0102151500000005008161028162020101c12c02dffb02fff90000016ec07bf9050001730568656c6c6ff9050b0273690e0200000003000000010002000300f905020273730201610162f90511017a14140000000400816102010181620283322e3504fff906130178011000000000000000010000000000000001c3373c123c0000001900020101010201816102816202002009000020014011020501032007000020050004200b801909010181630205010601ff0203010101020103010167010181ffffffffffffffff0100000000000000010000000000000001a7ffb005a20100000101026331a7ffb005a20100000100000000000000010000000000000001fe02fb0100f90500056f746865720176ff2e0265643c41f7e7";

fn hex(s: &str) -> Vec<u8> {
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
}

/// All events (or the error) for `data` fed in chunks of 1..=max bytes.
fn run(data: &[u8], rng: &mut Rng, max: u64) -> Result<Vec<Event>, RdbError> {
    let mut p = RdbParser::new();
    let mut out = Vec::new();
    let mut at = 0;
    loop {
        match p.next_event()? {
            Some(e) => out.push(e),
            None if p.is_done() => break,
            None if at >= data.len() => p.end_of_input(),
            None => {
                let n = (1 + rng.below(max) as usize).min(data.len() - at);
                p.feed(&data[at..at + n]);
                at += n;
                assert!(p.buffered() <= data.len());
            }
        }
    }
    p.finish()?;
    Ok(out)
}

fn mutate(base: &[u8], rng: &mut Rng) -> Vec<u8> {
    let mut v = base.to_vec();
    for _ in 0..1 + rng.below(3) {
        if v.is_empty() {
            break;
        }
        let i = rng.below(v.len() as u64) as usize;
        match rng.below(7) {
            0 => v[i] ^= 1 << rng.below(8),
            1 => v[i] = [0u8, 0x7f, 0x80, 0xc0, 0xc3, 0xfe, 0xff][rng.below(7) as usize],
            2 => v[i] = rng.next() as u8,
            3 => {
                v.remove(i);
            }
            4 => v.insert(i, rng.next() as u8),
            5 => v.truncate(i),
            _ => {
                let n = (rng.below(16) as usize).min(v.len() - i);
                let chunk = v[i..i + n].to_vec();
                v.splice(i..i, chunk);
            }
        }
    }
    v
}

#[test]
fn real_file_parses() {
    let data = hex(REDIS_FILE);
    let ev = run(&data, &mut Rng(1), 5).unwrap();
    assert_eq!(ev.first(), Some(&Event::Header(10)));
    assert!(matches!(ev.last(), Some(Event::Eof { checksum_ok: true, .. })));
    let keys = ev.iter().filter(|e| matches!(e, Event::Key { .. })).count();
    assert_eq!(keys, 10);
    assert!(ev.iter().any(|e| matches!(e, Event::Key { lru: LruInfo::Freq(_), .. })));
    assert!(ev.iter().any(|e| matches!(e, Event::Part(RdbValue::Stream(_)))));
    assert!(ev.iter().any(|e| matches!(e, Event::Function(_))));
}

#[test]
fn mutated_files_never_panic_and_ignore_chunking() {
    let base = hex(REDIS_FILE);
    let mut rng = Rng(0xdead_beef_cafe_f00d);
    let mut ok = 0;
    for case in 0..3000 {
        let data = mutate(&base, &mut rng);
        let whole = run(&data, &mut Rng(case + 1), 1 << 20);
        let chunked = run(&data, &mut Rng(case + 7), 1 + rng.below(9));
        assert_eq!(format!("{whole:?}"), format!("{chunked:?}"), "case {case}");
        if whole.is_ok() {
            ok += 1;
        }
        // The value decoder on every slice starting at a type byte.
        let at = rng.below(data.len().max(1) as u64) as usize;
        let _ = ferrite_rdb::decode_dump_body(&data[at.min(data.len())..]);
    }
    // Most mutations are caught (by structure or by the checksum).
    assert!(ok < 3000);
}

/// Parsed files written back with RdbWriter parse to the same values.
#[test]
fn parse_write_parse_round_trip() {
    let data = hex(REDIS_FILE);
    let ev = run(&data, &mut Rng(3), 64).unwrap();
    let mut w = RdbWriter::new(Vec::new()).unwrap();
    let mut pending: Option<(Vec<u8>, Option<i64>, LruInfo, Vec<RdbValue>)> = None;
    let mut values = Vec::new();
    for e in &ev {
        match e {
            Event::Aux(k, v) => w.aux(k, v).unwrap(),
            Event::SelectDb(n) => w.select_db(*n as u32).unwrap(),
            Event::ResizeDb { db_size, expires_size } => w.resize_db(*db_size, *expires_size).unwrap(),
            Event::Function(c) => w.function(c).unwrap(),
            Event::Key { key, expire_ms, lru, .. } => pending = Some((key.clone(), *expire_ms, *lru, Vec::new())),
            Event::Part(v) => pending.as_mut().unwrap().3.push(v.clone()),
            Event::EndKey => {
                let (k, exp, lru, parts) = pending.take().unwrap();
                assert_eq!(parts.len(), 1, "small values come in one part");
                w.entry(&k, &parts[0], exp, lru).unwrap();
                values.push((k, exp, lru, parts[0].clone()));
            }
            _ => {}
        }
    }
    let out = w.finish().unwrap();
    let ev2 = run(&out, &mut Rng(4), 3).unwrap();
    let mut values2 = Vec::new();
    let mut cur = None;
    for e in ev2 {
        match e {
            Event::Key { key, expire_ms, lru, .. } => cur = Some((key, expire_ms, lru)),
            Event::Part(v) => {
                let (k, exp, lru) = cur.clone().unwrap();
                values2.push((k, exp, lru, v));
            }
            _ => {}
        }
    }
    assert_eq!(values, values2);
}
