//! Sets of byte strings.

use crate::keyspace::smallbytes::SmallBytes;
use std::collections::HashSet;

#[derive(Clone, Debug, Default)]
pub struct Set {
    pub members: HashSet<SmallBytes>,
    /// Set once the set stopped qualifying as an intset.
    pub big: bool,
}

impl Set {
    pub fn len(&self) -> usize {
        self.members.len()
    }

    pub fn encoding(&self) -> &'static str {
        if self.big {
            "hashtable"
        } else {
            "intset"
        }
    }

    pub fn mem_usage(&self) -> usize {
        self.members.capacity() * 32 + self.members.iter().map(|m| m.heap_size()).sum::<usize>()
    }
}
