//! Slot sets and range lists (`0-5460,5461,6000-6100`).

use crate::{Error, Result};

pub const NSLOTS: usize = 16384;

/// A set of hash slots as a bitmap.
#[derive(Clone, PartialEq, Eq)]
pub struct SlotSet {
    bits: Vec<u64>,
}

impl Default for SlotSet {
    fn default() -> Self {
        SlotSet { bits: vec![0; NSLOTS / 64] }
    }
}

impl std::fmt::Debug for SlotSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SlotSet({})", self.to_ranges_string())
    }
}

impl SlotSet {
    pub fn all() -> SlotSet {
        SlotSet { bits: vec![u64::MAX; NSLOTS / 64] }
    }
    pub fn insert(&mut self, s: u16) {
        if (s as usize) < NSLOTS {
            self.bits[s as usize / 64] |= 1 << (s % 64);
        }
    }
    pub fn remove(&mut self, s: u16) {
        if (s as usize) < NSLOTS {
            self.bits[s as usize / 64] &= !(1 << (s % 64));
        }
    }
    pub fn contains(&self, s: u16) -> bool {
        (s as usize) < NSLOTS && self.bits[s as usize / 64] & (1 << (s % 64)) != 0
    }
    pub fn insert_range(&mut self, a: u16, b: u16) {
        for s in a..=b {
            self.insert(s);
        }
    }
    pub fn len(&self) -> usize {
        self.bits.iter().map(|w| w.count_ones() as usize).sum()
    }
    pub fn is_empty(&self) -> bool {
        self.bits.iter().all(|w| *w == 0)
    }
    pub fn iter(&self) -> impl Iterator<Item = u16> + '_ {
        (0..NSLOTS as u16).filter(move |s| self.contains(*s))
    }
    pub fn intersect(&self, o: &SlotSet) -> SlotSet {
        SlotSet { bits: self.bits.iter().zip(&o.bits).map(|(a, b)| a & b).collect() }
    }
    pub fn minus(&self, o: &SlotSet) -> SlotSet {
        SlotSet { bits: self.bits.iter().zip(&o.bits).map(|(a, b)| a & !b).collect() }
    }
    /// Maximal inclusive runs.
    pub fn ranges(&self) -> Vec<(u16, u16)> {
        let mut out = Vec::new();
        let mut cur: Option<(u16, u16)> = None;
        for s in self.iter() {
            cur = match cur {
                Some((a, b)) if b + 1 == s => Some((a, s)),
                Some(r) => {
                    out.push(r);
                    Some((s, s))
                }
                None => Some((s, s)),
            };
        }
        out.extend(cur);
        out
    }
    pub fn to_ranges_string(&self) -> String {
        ranges_string(&self.ranges())
    }
    /// Parse `N` / `N-M` items separated by commas (or spaces).
    pub fn parse(s: &str) -> Result<SlotSet> {
        let mut set = SlotSet::default();
        for part in s.split([',', ' ']).map(str::trim).filter(|p| !p.is_empty()) {
            let (a, b) = match part.split_once('-') {
                Some((a, b)) => (a.trim(), b.trim()),
                None => (part, part),
            };
            let a: u16 = a.parse().map_err(|_| Error::Config(format!("bad slot range {part:?}")))?;
            let b: u16 = b.parse().map_err(|_| Error::Config(format!("bad slot range {part:?}")))?;
            if a > b || b as usize >= NSLOTS {
                return Err(Error::Config(format!("bad slot range {part:?} (0 <= N <= M <= 16383)")));
            }
            set.insert_range(a, b);
        }
        Ok(set)
    }
}

/// `0-10,12,20-30`.
pub fn ranges_string(r: &[(u16, u16)]) -> String {
    r.iter().map(|(a, b)| if a == b { a.to_string() } else { format!("{a}-{b}") }).collect::<Vec<_>>().join(",")
}

/// Range arguments for the proxy admin protocol (`N` or `N-M` each).
pub fn range_args(r: &[(u16, u16)]) -> Vec<String> {
    r.iter().map(|(a, b)| if a == b { a.to_string() } else { format!("{a}-{b}") }).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn parse_and_print() {
        let s = SlotSet::parse("0-3,5, 7-7,16383").unwrap();
        assert_eq!(s.len(), 7);
        assert_eq!(s.to_ranges_string(), "0-3,5,7,16383");
        assert!(SlotSet::parse("5-3").is_err());
        assert!(SlotSet::parse("16384").is_err());
        assert!(SlotSet::parse("x").is_err());
        assert_eq!(SlotSet::all().len(), 16384);
    }
}
