//! Streams: entries keyed by (ms, seq) IDs, consumer groups with pending
//! entry lists. Owned by the stream commands in `cmd/stream.rs`.

/// A stream ID `ms-seq`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct StreamId {
    pub ms: u64,
    pub seq: u64,
}

#[derive(Clone, Debug, Default)]
pub struct Stream {
    pub entries: std::collections::BTreeMap<StreamId, Vec<(Vec<u8>, Vec<u8>)>>,
    pub last_id: StreamId,
}

impl Stream {
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn mem_usage(&self) -> usize {
        self.entries.values().map(|f| 16 + f.iter().map(|(a, b)| a.len() + b.len() + 48).sum::<usize>()).sum()
    }
}
