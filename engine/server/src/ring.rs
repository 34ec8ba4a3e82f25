//! The bounded in-memory event ring: the most recent sequence numbers, ready to send.

use std::collections::VecDeque;
use std::sync::{Arc, OnceLock};

use castle_engine::codec::Reader;
use castle_engine::Event;
use castle_link::EngineBatch;

use crate::payload;

/// One sequence number: its journal record and its encoded `Events` frame.
#[derive(Debug)]
pub struct Entry {
    pub seq: u64,
    pub ts: u64,
    /// The journal payload followed by the complete `Events` frame: one allocation per seq.
    pub bytes: Vec<u8>,
    /// Where the `Events` frame starts in `bytes`.
    pub split: usize,
    /// The same events decoded for in-process subscribers ([`crate::DurableLink`]): built by the
    /// first subscriber thread that needs it and shared by the others, so the sequencer never
    /// pays for it and TCP-only servers never do.
    batch: OnceLock<Arc<EngineBatch>>,
}

impl Entry {
    pub fn new(seq: u64, ts: u64, bytes: Vec<u8>, split: usize) -> Self {
        debug_assert!(split <= bytes.len());
        Entry { seq, ts, bytes, split, batch: OnceLock::new() }
    }

    /// The events as an [`EngineBatch`] (decoded once, then shared).
    pub fn batch(&self) -> Arc<EngineBatch> {
        self.batch.get_or_init(|| Arc::new(self.decode())).clone()
    }

    fn decode(&self) -> EngineBatch {
        let origin = payload::origin(self.payload());
        let mut events = Vec::new();
        // Frame: len u32 | type u8 | seq u64 | ts u64 | count u32 | kinds. The sequencer wrote
        // it a moment ago, so a failure here is a bug, not hostile input.
        let mut r = Reader::new(self.events().get(21..).unwrap_or_default());
        match r.u32() {
            Ok(n) => {
                for _ in 0..n {
                    match r.event_kind() {
                        Ok(kind) => events.push(Event { seq: self.seq, ts: self.ts, kind }),
                        Err(e) => {
                            debug_assert!(false, "undecodable event frame at seq {}: {e}", self.seq);
                            tracing::error!(seq = self.seq, error = %e, "undecodable event frame");
                            break;
                        }
                    }
                }
            }
            Err(e) => tracing::error!(seq = self.seq, error = %e, "short event frame"),
        }
        EngineBatch { origin, seq: self.seq, ts: self.ts, events }
    }
}

impl Entry {
    /// The journal payload (what a standby appends to its own journal).
    pub fn payload(&self) -> &[u8] {
        &self.bytes[..self.split]
    }

    /// The complete `Events` frame (header included).
    pub fn events(&self) -> &[u8] {
        &self.bytes[self.split..]
    }
}

/// Entries `first ..= first + len - 1`; the oldest are dropped beyond `capacity`.
pub struct Ring {
    first: u64,
    entries: VecDeque<Arc<Entry>>,
    capacity: usize,
}

impl Ring {
    /// An empty ring whose next entry will be `next_seq`.
    pub fn new(next_seq: u64, capacity: usize) -> Self {
        Ring { first: next_seq, entries: VecDeque::with_capacity(capacity.min(1 << 20)), capacity: capacity.max(1) }
    }

    /// Oldest seq held (or the next to come when empty).
    pub fn first(&self) -> u64 {
        self.first
    }

    /// Newest seq held (`first - 1` when empty).
    pub fn last(&self) -> u64 {
        self.first + self.entries.len() as u64 - 1
    }

    /// Appends the next seq (must be `last + 1`).
    pub fn push(&mut self, e: Arc<Entry>) {
        debug_assert_eq!(e.seq, self.last() + 1);
        if self.entries.len() == self.capacity {
            self.entries.pop_front();
            self.first += 1;
        }
        self.entries.push_back(e);
    }

    /// Up to `max` entries from `from` on (`from` must be >= `first`).
    pub fn take(&self, from: u64, max: usize, out: &mut Vec<Arc<Entry>>) {
        let start = (from - self.first) as usize;
        out.extend(self.entries.iter().skip(start).take(max).cloned());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_and_contiguous() {
        let mut r = Ring::new(5, 3);
        assert_eq!((r.first(), r.last()), (5, 4));
        for s in 5..10 {
            r.push(Arc::new(Entry::new(s, 0, vec![], 0)));
        }
        assert_eq!((r.first(), r.last()), (7, 9));
        let mut v = Vec::new();
        r.take(8, 10, &mut v);
        assert_eq!(v.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![8, 9]);
    }
}
