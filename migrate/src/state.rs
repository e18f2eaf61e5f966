//! The checkpoint file: what was decided (source, target, proxies, scope,
//! method) and how far the run got (per-slot state, epoch, counters, pause
//! durations). Written after every slot with write-to-temp + fsync + rename,
//! so a crash leaves either the old or the new file, never a torn one.

use crate::slots::{SlotSet, NSLOTS};
use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::Path;

/// Per-slot progress codes in [`State::slots`].
pub const OUT: u8 = b'.';
pub const PENDING: u8 = b'p';
pub const COPIED: u8 = b'c';
pub const FLIPPED: u8 = b'f';

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct State {
    pub version: u32,
    pub method: String,
    pub source: Vec<String>,
    pub target: String,
    pub proxies: Vec<String>,
    /// Slot ranges in scope.
    pub scope: String,
    /// 16384 characters, one per slot: `.` out of scope, `p` pending,
    /// `c` copied (scan), `f` flipped to Ferrite.
    pub slots: String,
    pub epoch: u64,
    pub started_ms: i64,
    pub updated_ms: i64,
    pub keys_copied: u64,
    pub bytes_copied: u64,
    pub copy_errors: u64,
    /// Pause duration of every cutover, milliseconds.
    pub pauses_ms: Vec<f64>,
    pub finished: bool,
    /// Result of the last verify: number of differing keys.
    pub last_verify_mismatches: Option<u64>,
    /// Keys whose copy failed (first few, for the report).
    pub failed_keys: Vec<String>,
}

impl State {
    pub fn new(method: &str, source: Vec<String>, target: String, proxies: Vec<String>, scope: &SlotSet) -> State {
        let slots: String =
            (0..NSLOTS as u16).map(|s| if scope.contains(s) { PENDING as char } else { OUT as char }).collect();
        let now = crate::now_ms();
        State {
            version: 1,
            method: method.to_string(),
            source,
            target,
            proxies,
            scope: scope.to_ranges_string(),
            slots,
            epoch: 0,
            started_ms: now,
            updated_ms: now,
            keys_copied: 0,
            bytes_copied: 0,
            copy_errors: 0,
            pauses_ms: Vec::new(),
            finished: false,
            last_verify_mismatches: None,
            failed_keys: Vec::new(),
        }
    }

    pub fn get(&self, slot: u16) -> u8 {
        self.slots.as_bytes().get(slot as usize).copied().unwrap_or(OUT)
    }

    pub fn set(&mut self, slot: u16, code: u8) {
        let i = slot as usize;
        if i < self.slots.len() && code.is_ascii() {
            let mut b = std::mem::take(&mut self.slots).into_bytes();
            b[i] = code;
            self.slots = String::from_utf8(b).unwrap_or_default();
        }
    }

    /// Slots with the given code.
    pub fn with(&self, code: u8) -> SlotSet {
        let mut s = SlotSet::default();
        for (i, c) in self.slots.bytes().enumerate() {
            if c == code {
                s.insert(i as u16);
            }
        }
        s
    }

    pub fn scope_set(&self) -> SlotSet {
        let mut s = SlotSet::default();
        for (i, c) in self.slots.bytes().enumerate() {
            if c != OUT {
                s.insert(i as u16);
            }
        }
        s
    }

    pub fn load(path: &Path) -> Result<State> {
        let data = std::fs::read(path).map_err(|e| Error::Config(format!("cannot read state file {path:?}: {e}")))?;
        let st: State = serde_json::from_slice(&data)
            .map_err(|e| Error::Config(format!("state file {path:?} is not valid: {e}")))?;
        if st.slots.len() != NSLOTS || !st.slots.bytes().all(|c| [OUT, PENDING, COPIED, FLIPPED].contains(&c)) {
            return Err(Error::Config(format!("state file {path:?}: bad slot table")));
        }
        Ok(st)
    }

    /// Atomic write: temp file in the same directory, fsync, rename, fsync dir.
    pub fn save(&mut self, path: &Path) -> Result<()> {
        self.updated_ms = crate::now_ms();
        let data = serde_json::to_vec_pretty(self).map_err(|e| Error::Other(format!("serialize state: {e}")))?;
        let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "state".into());
        let tmp = dir.join(format!(".{name}.tmp{}", std::process::id()));
        let werr = |e: std::io::Error| Error::Other(format!("write state file {path:?}: {e}"));
        {
            let mut f = std::fs::File::create(&tmp).map_err(werr)?;
            f.write_all(&data).map_err(werr)?;
            f.sync_all().map_err(werr)?;
        }
        std::fs::rename(&tmp, path).map_err(werr)?;
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(())
    }

    /// p50 / p99 / max of the pause durations.
    pub fn pause_stats(&self) -> Option<(f64, f64, f64)> {
        percentiles(&self.pauses_ms)
    }
}

/// p50, p99 and max of a sample (nearest-rank).
pub fn percentiles(v: &[f64]) -> Option<(f64, f64, f64)> {
    if v.is_empty() {
        return None;
    }
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
    let rank = |p: f64| {
        let i = ((p * s.len() as f64).ceil() as usize).clamp(1, s.len()) - 1;
        s[i]
    };
    Some((rank(0.50), rank(0.99), s[s.len() - 1]))
}
