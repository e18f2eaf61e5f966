//! Hashes: field -> value maps.

use crate::keyspace::smallbytes::SmallBytes;
use std::collections::HashMap;

#[derive(Clone, Debug, Default)]
pub struct Hash {
    pub map: HashMap<SmallBytes, SmallBytes>,
    /// Set once the hash outgrew the listpack limits (Redis never converts back).
    pub big: bool,
}

impl Hash {
    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn encoding(&self) -> &'static str {
        if self.big {
            "hashtable"
        } else {
            "listpack"
        }
    }

    pub fn mem_usage(&self) -> usize {
        self.map.capacity() * 56 + self.map.iter().map(|(k, v)| k.heap_size() + v.heap_size()).sum::<usize>()
    }
}
