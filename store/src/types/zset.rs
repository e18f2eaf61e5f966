//! Sorted sets: members ordered by (score, member).

use crate::keyspace::smallbytes::SmallBytes;
use std::collections::HashMap;

#[derive(Clone, Debug, Default)]
pub struct ZSet {
    pub scores: HashMap<SmallBytes, f64>,
    /// Set once the zset outgrew the listpack limits.
    pub big: bool,
}

impl ZSet {
    pub fn len(&self) -> usize {
        self.scores.len()
    }

    pub fn encoding(&self) -> &'static str {
        if self.big {
            "skiplist"
        } else {
            "listpack"
        }
    }

    pub fn mem_usage(&self) -> usize {
        self.scores.capacity() * 40 + self.scores.keys().map(|m| m.heap_size()).sum::<usize>()
    }
}
