//! Stream and module payloads recorded from a real redis-server 7.0.15.

use ferrite_rdb::file::{Event, RdbParser};
use ferrite_rdb::{decode_dump_body, dump_payload, verify_dump_payload, RdbValue, StreamId};

fn hex(s: &str) -> Vec<u8> {
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
}

/// XADD s 1-1 a 1 b 2; 1-2 a 3 b 4; 2-0 c x; 3-0 a 5 b 6; XDEL s 1-2;
/// XGROUP CREATE s g1 0; XREADGROUP alice COUNT 2, bob COUNT 1;
/// XGROUP CREATE s g2 $; XGROUP CREATECONSUMER s g2 carol.
const STREAM: &str = "13011000000000000000010000000000000001c34045404b124b0000001f0003010101020181610281620200200900002001401102050103600902030104200b40130bdfff0201018163028178020620280002401002050106201d00ff03030001010102040202673103000403000000000000000100000000000000016e2ea805a201000001000000000000000200000000000000006e2ea805a201000001000000000000000300000000000000007d2ea805a2010000010205616c6963656e2ea805a201000002000000000000000100000000000000010000000000000002000000000000000003626f627d2ea805a20100000100000000000000030000000000000000026732030081ffffffffffffffff0001056361726f6c8d2ea805a2010000000a00c3f2b24453e1879d";

#[test]
fn stream_with_groups_decodes_and_round_trips() {
    let p = hex(STREAM);
    let body = verify_dump_payload(&p).expect("checksum");
    let v = decode_dump_body(body).expect("decode");
    let RdbValue::Stream(s) = &v else { panic!("not a stream") };
    let ids: Vec<(StreamId, bool)> = s.entries.iter().map(|e| (e.id, e.deleted)).collect();
    assert_eq!(
        ids,
        vec![
            (StreamId::new(1, 1), false),
            (StreamId::new(1, 2), true),
            (StreamId::new(2, 0), false),
            (StreamId::new(3, 0), false)
        ]
    );
    assert_eq!(s.entries[2].fields, vec![(b"c".to_vec(), b"x".to_vec())]);
    assert_eq!(s.length, 3);
    assert_eq!(s.last_id, StreamId::new(3, 0));
    assert_eq!(s.first_id, StreamId::new(1, 1));
    assert_eq!(s.max_deleted_entry_id, StreamId::new(1, 2));
    assert_eq!(s.entries_added, 4);
    assert_eq!(s.groups.len(), 2);
    let g1 = &s.groups[0];
    assert_eq!(g1.name, b"g1");
    assert_eq!(g1.entries_read, 4);
    assert_eq!(g1.pel.len(), 3);
    assert_eq!(g1.consumers.len(), 2);
    assert_eq!(g1.consumers[0].name, b"alice");
    assert_eq!(g1.consumers[0].pending, vec![StreamId::new(1, 1), StreamId::new(2, 0)]);
    assert_eq!(s.groups[1].entries_read, -1);
    assert_eq!(s.groups[1].consumers[0].name, b"carol");
    // Our LZF compressor differs from liblzf, so compare after decoding.
    let again = dump_payload(&v);
    let back = decode_dump_body(verify_dump_payload(&again).expect("checksum")).expect("decode");
    assert_eq!(back, v);
}

fn read_len(b: &[u8], at: &mut usize) -> u64 {
    let f = b[*at];
    *at += 1;
    match f {
        0..=0x3f => f as u64,
        0x40..=0x7f => {
            let v = (((f & 0x3f) as u64) << 8) | b[*at] as u64;
            *at += 1;
            v
        }
        0x80 => {
            let v = u32::from_be_bytes(b[*at..*at + 4].try_into().unwrap()) as u64;
            *at += 4;
            v
        }
        0x81 => {
            let v = u64::from_be_bytes(b[*at..*at + 8].try_into().unwrap());
            *at += 8;
            v
        }
        _ => panic!("encoded length"),
    }
}

fn skip_str(b: &[u8], at: &mut usize) {
    if b[*at] == 0xc3 {
        *at += 1;
        let clen = read_len(b, at) as usize;
        read_len(b, at);
        *at += clen;
    } else {
        let n = read_len(b, at) as usize;
        *at += n;
    }
}

/// The same stream in the type-15 layout (no first ID, max deleted ID,
/// entries added, nor group entries-read).
fn to_type15(body: &[u8]) -> Vec<u8> {
    let mut at = 1;
    let nodes = read_len(body, &mut at);
    for _ in 0..nodes * 2 {
        skip_str(body, &mut at);
    }
    let mut out = vec![15u8];
    out.extend_from_slice(&body[1..at]);
    let s = at;
    for _ in 0..3 {
        read_len(body, &mut at);
    }
    out.extend_from_slice(&body[s..at]);
    for _ in 0..5 {
        read_len(body, &mut at);
    }
    let s = at;
    let groups = read_len(body, &mut at);
    out.extend_from_slice(&body[s..at]);
    for _ in 0..groups {
        let s = at;
        skip_str(body, &mut at);
        read_len(body, &mut at);
        read_len(body, &mut at);
        out.extend_from_slice(&body[s..at]);
        read_len(body, &mut at);
        let s = at;
        for _ in 0..read_len(body, &mut at) {
            at += 24;
            read_len(body, &mut at);
        }
        for _ in 0..read_len(body, &mut at) {
            skip_str(body, &mut at);
            at += 8;
            let n = read_len(body, &mut at);
            at += 16 * n as usize;
        }
        out.extend_from_slice(&body[s..at]);
    }
    assert_eq!(at, body.len());
    out
}

/// A value read through the streaming file parser (1-byte chunks).
fn via_file(ty_and_value: &[u8], version: u32) -> RdbValue {
    let mut f = format!("REDIS{version:04}").into_bytes();
    f.push(ty_and_value[0]);
    f.extend_from_slice(&[1, b'k']);
    f.extend_from_slice(&ty_and_value[1..]);
    f.push(255);
    f.extend_from_slice(&0u64.to_le_bytes());
    let mut p = RdbParser::new();
    let mut parts = Vec::new();
    for b in &f {
        p.feed(std::slice::from_ref(b));
        while let Some(e) = p.next_event().unwrap() {
            if let Event::Part(v) = e {
                parts.push(v);
            }
        }
    }
    p.end_of_input();
    assert!(p.next_event().unwrap().is_none());
    p.finish().unwrap();
    assert_eq!(parts.len(), 1);
    parts.pop().unwrap()
}

#[test]
fn type_15_and_file_parser_agree_with_the_dump_decoder() {
    let p = hex(STREAM);
    let body19 = verify_dump_payload(&p).unwrap().to_vec();
    let v19 = decode_dump_body(&body19).unwrap();
    assert_eq!(via_file(&body19, 10), v19);
    let body15 = to_type15(&body19);
    let v15 = decode_dump_body(&body15).unwrap();
    assert_eq!(via_file(&body15, 9), v15);
    let (RdbValue::Stream(a), RdbValue::Stream(b)) = (&v19, &v15) else { panic!() };
    // Type 15 has no tombstone bookkeeping: entries-added = length, first
    // ID = first live entry, and groups get Redis's entries-read estimate.
    assert_eq!(b.entries, a.entries);
    assert_eq!(b.entries_added, 3);
    assert_eq!(b.max_deleted_entry_id, StreamId::default());
    assert_eq!(b.first_id, StreamId::new(1, 1));
    assert_eq!(b.groups[0].entries_read, 3); // g1 at the last ID: entries added
    assert_eq!(b.groups[1].entries_read, 3); // g2 at $
    assert_eq!(b.groups[0].pel, a.groups[0].pel);
}
