//! `plan`: the source topology, key counts per slot (CLUSTER
//! COUNTKEYSINSLOT), sizes (MEMORY USAGE of every key, or of a sample per
//! slot with `--sample`), big keys, unsupported (module) value types and
//! the number of function libraries.

use crate::resp::Reply;
use crate::slots::{SlotSet, NSLOTS};
use crate::topo::Source;
use crate::{cmd, Result};
use ferrite_commands::key_hash_slot;
use serde::Serialize;

const NATIVE: &[&str] = &["string", "list", "set", "zset", "hash", "stream"];

#[derive(Serialize, Debug, Clone)]
pub struct BigKey {
    pub key: String,
    pub slot: u16,
    pub ty: String,
    pub bytes: u64,
}

#[derive(Serialize, Debug, Clone)]
pub struct MasterPlan {
    pub addr: String,
    pub id: String,
    pub replicas: Vec<String>,
    pub slots: String,
    pub keys: u64,
    pub bytes: u64,
}

#[derive(Serialize, Debug, Clone)]
pub struct SlotPlan {
    pub slot: u16,
    pub keys: u64,
    /// Measured (or, when sampled, estimated) bytes.
    pub bytes: u64,
}

#[derive(Serialize, Debug, Default)]
pub struct Plan {
    pub masters: Vec<MasterPlan>,
    pub slots_in_scope: usize,
    pub uncovered_slots: String,
    pub keys: u64,
    pub bytes: u64,
    pub sampled: bool,
    pub types: std::collections::BTreeMap<String, u64>,
    pub big_keys: Vec<BigKey>,
    pub unsupported: Vec<BigKey>,
    /// Non-empty slots in scope.
    pub per_slot: Vec<SlotPlan>,
    /// Function libraries on the source (union over its masters), copied
    /// to Ferrite before the data.
    pub function_libraries: usize,
    /// Masters holding different libraries, or one library name with two
    /// codes (the run refuses the latter).
    pub function_warnings: Vec<String>,
}

fn show(k: &[u8]) -> String {
    String::from_utf8_lossy(k).into_owned()
}

pub fn plan(src: &mut Source, scope: &SlotSet, sample: u64, big: u64) -> Result<Plan> {
    let mut p = Plan { sampled: sample > 0, slots_in_scope: scope.len(), ..Default::default() };
    p.uncovered_slots = scope.minus(&src.topo.covered()).to_ranges_string();
    let mut counts = vec![0u64; NSLOTS];
    let mut bytes = vec![0u64; NSLOTS];
    let mut measured = vec![0u64; NSLOTS];
    let masters = src.topo.masters.clone();
    for m in &masters {
        let mine = m.slots.intersect(scope);
        let slots: Vec<u16> = mine.iter().collect();
        // Key counts, pipelined.
        for chunk in slots.chunks(1000) {
            let cmds: Vec<Vec<Vec<u8>>> = chunk.iter().map(|s| cmd!["CLUSTER", "COUNTKEYSINSLOT", *s]).collect();
            let r = src.conn(&m.addr)?.pipeline(&cmds)?;
            for (s, r) in chunk.iter().zip(r) {
                counts[*s as usize] = r.as_int().unwrap_or(0).max(0) as u64;
            }
        }
        let mut measure = |src: &mut Source, keys: Vec<Vec<u8>>, p: &mut Plan| -> Result<()> {
            for chunk in keys.chunks(500) {
                let mut cmds = Vec::with_capacity(chunk.len() * 2);
                for k in chunk {
                    cmds.push(cmd!["TYPE", k]);
                    cmds.push(cmd!["MEMORY", "USAGE", k, "SAMPLES", "5"]);
                }
                let r = src.conn(&m.addr)?.pipeline(&cmds)?;
                for (i, k) in chunk.iter().enumerate() {
                    let ty = r[2 * i].as_str().unwrap_or_default();
                    if ty == "none" || ty.is_empty() {
                        continue;
                    }
                    let b = r[2 * i + 1].as_int().unwrap_or(0).max(0) as u64;
                    let slot = key_hash_slot(k);
                    bytes[slot as usize] += b;
                    measured[slot as usize] += 1;
                    *p.types.entry(ty.clone()).or_default() += 1;
                    let entry = BigKey { key: show(k), slot, ty: ty.clone(), bytes: b };
                    if !NATIVE.contains(&ty.as_str()) && p.unsupported.len() < 1000 {
                        p.unsupported.push(entry.clone());
                    }
                    if b >= big && p.big_keys.len() < 1000 {
                        p.big_keys.push(entry);
                    }
                }
            }
            Ok(())
        };
        if sample == 0 {
            let mut cursor = b"0".to_vec();
            for _ in 0..100_000_000u64 {
                let r = src.conn(&m.addr)?.cmd(&cmd!["SCAN", &cursor, "COUNT", "1000"])?.ok()?;
                let it = r.items();
                cursor = it.first().and_then(Reply::as_bytes).map(<[u8]>::to_vec).unwrap_or_else(|| b"0".to_vec());
                let keys: Vec<Vec<u8>> = it
                    .get(1)
                    .map(|k| k.items().iter().filter_map(|x| x.as_bytes().map(<[u8]>::to_vec)).collect())
                    .unwrap_or_default();
                let keys: Vec<Vec<u8>> = keys.into_iter().filter(|k| mine.contains(key_hash_slot(k))).collect();
                measure(src, keys, &mut p)?;
                if cursor == b"0" {
                    break;
                }
            }
        } else {
            for &s in &slots {
                if counts[s as usize] == 0 {
                    continue;
                }
                let r = src.conn(&m.addr)?.cmd(&cmd!["CLUSTER", "GETKEYSINSLOT", s, sample])?.ok()?;
                let keys: Vec<Vec<u8>> = r.items().iter().filter_map(|x| x.as_bytes().map(<[u8]>::to_vec)).collect();
                measure(src, keys, &mut p)?;
            }
        }
        let mut mp = MasterPlan {
            addr: m.addr.clone(),
            id: m.id.clone(),
            replicas: m.replicas.clone(),
            slots: m.slots.to_ranges_string(),
            keys: 0,
            bytes: 0,
        };
        for s in slots {
            let i = s as usize;
            if measured[i] > 0 && measured[i] < counts[i] {
                bytes[i] = bytes[i] * counts[i] / measured[i];
            }
            mp.keys += counts[i];
            mp.bytes += bytes[i];
            if counts[i] > 0 {
                p.per_slot.push(SlotPlan { slot: s, keys: counts[i], bytes: bytes[i] });
            }
        }
        p.keys += mp.keys;
        p.bytes += mp.bytes;
        p.masters.push(mp);
    }
    let fl = crate::functions::source_libraries(src)?;
    p.function_libraries = fl.libs.len();
    p.function_warnings = fl.warnings;
    p.function_warnings.extend(fl.conflicts);
    p.per_slot.sort_by_key(|s| s.slot);
    p.big_keys.sort_by_key(|b| std::cmp::Reverse(b.bytes));
    Ok(p)
}

/// Human-readable report.
pub fn print(p: &Plan) {
    println!("source: {} masters, {} slots in scope", p.masters.len(), p.slots_in_scope);
    if !p.uncovered_slots.is_empty() {
        println!("WARNING: slots in scope served by no master: {}", p.uncovered_slots);
    }
    for m in &p.masters {
        println!(
            "  master {} ({}) replicas [{}] slots {}: {} keys, {:.1} MB",
            m.addr,
            m.id,
            m.replicas.join(", "),
            m.slots,
            m.keys,
            m.bytes as f64 / 1e6
        );
    }
    println!(
        "total: {} keys, {:.1} MB{}",
        p.keys,
        p.bytes as f64 / 1e6,
        if p.sampled { " (sizes estimated from samples)" } else { "" }
    );
    println!("function libraries: {}", p.function_libraries);
    for w in &p.function_warnings {
        println!("WARNING: {w}");
    }
    let types: Vec<String> = p.types.iter().map(|(t, n)| format!("{t}={n}")).collect();
    println!("types: {}", types.join(" "));
    let mut top = p.per_slot.clone();
    top.sort_by_key(|b| std::cmp::Reverse(b.keys));
    println!("busiest slots:");
    for s in top.iter().take(10) {
        println!("  slot {:5}: {} keys, {:.1} KB", s.slot, s.keys, s.bytes as f64 / 1e3);
    }
    if p.big_keys.is_empty() {
        println!("big keys: none");
    } else {
        println!("big keys:");
        for k in p.big_keys.iter().take(20) {
            println!("  {} ({}, slot {}): {:.1} MB", k.key, k.ty, k.slot, k.bytes as f64 / 1e6);
        }
    }
    if p.unsupported.is_empty() {
        println!("unsupported types: none");
    } else {
        println!("unsupported types (module values, will not be copied):");
        for k in p.unsupported.iter().take(20) {
            println!("  {} ({}, slot {})", k.key, k.ty, k.slot);
        }
    }
}
