//! Lists: a deque of elements. Redis 7.0 reports every list as `quicklist`.

use crate::keyspace::smallbytes::SmallBytes;
use std::collections::VecDeque;

#[derive(Clone, Debug, Default)]
pub struct List {
    pub items: VecDeque<SmallBytes>,
}

impl List {
    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn mem_usage(&self) -> usize {
        self.items.capacity() * std::mem::size_of::<SmallBytes>()
            + crate::types::hash::sampled(self.items.len(), self.items.iter().map(|i| i.heap_size()))
    }
}
