//! The bounded in-memory event ring: the most recent sequence numbers, ready to send.
//!
//! The unit is a [`Chunk`]: every sequence number of one journal batch (one group commit),
//! released together once durable. The sequencer copies each command's journal payload and its
//! events into the chunk being filled (buffers that grow once and are then reused batch after
//! batch), so the sequencer allocates per batch, not per command; encoding the events for TCP
//! (the `Events` frame) and building an [`EngineBatch`] for in-process subscribers happen on the
//! subscribers' threads, and only when someone subscribes.

use std::collections::VecDeque;
use std::ops::Range;
use std::sync::{Arc, OnceLock};

use castle_engine::Event;
use castle_link::EngineBatch;

use crate::payload;

/// Per sequence number of a chunk: its time and where its payload and events end.
#[derive(Debug, Clone, Copy)]
struct Slot {
    ts: u64,
    payload_end: u32,
    events_end: u32,
}

/// The sequence numbers `first ..= first + len - 1` of one journal batch.
#[derive(Debug)]
pub struct Chunk {
    first: u64,
    slots: Vec<Slot>,
    payloads: Vec<u8>,
    events: Vec<Event>,
    /// Built once per seq by the first in-process subscriber that needs it, then shared. The
    /// slots themselves are allocated by that subscriber too, so the sequencer does not
    /// allocate and initialise them for chunks no in-process subscriber ever reads.
    batches: OnceLock<Box<[OnceLock<Arc<EngineBatch>>]>>,
}

impl Chunk {
    pub fn first(&self) -> u64 {
        self.first
    }

    pub fn len(&self) -> usize {
        self.slots.len()
    }

    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    pub fn last(&self) -> u64 {
        self.first + self.slots.len() as u64 - 1
    }

    fn ranges(&self, i: usize) -> (Range<usize>, Range<usize>) {
        let (p0, e0) = match i {
            0 => (0, 0),
            _ => (self.slots[i - 1].payload_end as usize, self.slots[i - 1].events_end as usize),
        };
        (p0..self.slots[i].payload_end as usize, e0..self.slots[i].events_end as usize)
    }
}

/// Collects the sequence numbers of the journal batch being filled.
#[derive(Debug, Default)]
pub struct ChunkBuilder {
    first: u64,
    slots: Vec<Slot>,
    payloads: Vec<u8>,
    events: Vec<Event>,
    /// Buffers of chunks that left the ring unshared, for the next batches: a fresh multi-MB
    /// allocation per batch costs a page fault per 4 KiB on the sequencer's thread (about 0.1
    /// per command at full rate), reused memory does not.
    spare: Vec<(Vec<Slot>, Vec<u8>, Vec<Event>)>,
}

/// Spare buffer sets kept by a [`ChunkBuilder`].
const SPARE_CHUNKS: usize = 4;

impl ChunkBuilder {
    /// Adds the next seq (must follow the previous one).
    pub fn push(&mut self, seq: u64, ts: u64, payload: &[u8], events: &[Event]) {
        self.payloads.extend_from_slice(payload);
        self.events.extend_from_slice(events);
        // Offsets fit in u32: a journal batch is far smaller than 4 GiB / 4 G events.
        self.close(seq, ts);
    }

    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// In-place filling, the sequencer's path: the payload is encoded straight into
    /// [`payloads`](Self::payloads) and the engine appends its events straight to
    /// [`events`](Self::events) (no copy of either per command); then [`close`](Self::close)
    /// ends the seq. [`open_lens`](Self::open_lens) gives the offsets where the open seq began.
    pub fn open_lens(&self) -> (usize, usize) {
        (self.payloads.len(), self.events.len())
    }

    pub fn payloads(&mut self) -> &mut Vec<u8> {
        &mut self.payloads
    }

    pub fn events(&mut self) -> &mut Vec<Event> {
        &mut self.events
    }

    /// Drops what was written since the last [`close`](Self::close) (down to `lens`).
    pub fn discard_open(&mut self, lens: (usize, usize)) {
        self.payloads.truncate(lens.0);
        self.events.truncate(lens.1);
    }

    /// Ends the seq whose payload and events were written in place since the last seq.
    pub fn close(&mut self, seq: u64, ts: u64) {
        if self.slots.is_empty() {
            self.first = seq;
        }
        debug_assert_eq!(seq, self.first + self.slots.len() as u64, "chunk seqs must be contiguous");
        self.slots.push(Slot { ts, payload_end: self.payloads.len() as u32, events_end: self.events.len() as u32 });
    }

    /// The seqs collected so far as a chunk (None when empty); the builder starts over with
    /// buffers sized for a batch like this one: a few allocations per batch, none per command.
    pub fn seal(&mut self) -> Option<Chunk> {
        if self.slots.is_empty() {
            return None;
        }
        // Sized like this batch (not like the largest ever), so a ring of small batches stays
        // small: a spare set is reused only if it is big enough and at most 4x too big.
        let (n, np, ne) = (self.slots.len(), self.payloads.len(), self.events.len());
        let fits = |c: usize, want: usize| c >= want && c <= want.saturating_mul(4);
        let (ns, np2, ne2) = loop {
            match self.spare.pop() {
                Some((s, p, e)) if fits(s.capacity(), n) && fits(p.capacity(), np) && fits(e.capacity(), ne) => {
                    break (s, p, e);
                }
                Some(_) => continue,
                None => break (Vec::with_capacity(n), Vec::with_capacity(np), Vec::with_capacity(ne)),
            }
        };
        let slots = std::mem::replace(&mut self.slots, ns);
        let payloads = std::mem::replace(&mut self.payloads, np2);
        let events = std::mem::replace(&mut self.events, ne2);
        Some(Chunk { first: self.first, slots, payloads, events, batches: OnceLock::new() })
    }

    /// Takes back the buffers of a chunk that left the ring, if nobody else holds it.
    pub fn recycle(&mut self, c: Arc<Chunk>) {
        if self.spare.len() >= SPARE_CHUNKS {
            return;
        }
        if let Ok(c) = Arc::try_unwrap(c) {
            let Chunk { mut slots, mut payloads, mut events, .. } = c;
            slots.clear();
            payloads.clear();
            events.clear();
            self.spare.push((slots, payloads, events));
        }
    }
}

/// One sequence number in the ring: a handle on its chunk (cloning it is a reference count).
#[derive(Debug, Clone)]
pub struct Entry {
    chunk: Arc<Chunk>,
    i: usize,
    pub seq: u64,
    pub ts: u64,
}

impl Entry {
    /// The journal payload (what a standby appends to its own journal).
    pub fn payload(&self) -> &[u8] {
        &self.chunk.payloads[self.chunk.ranges(self.i).0]
    }

    /// The command's events.
    pub fn events(&self) -> &[Event] {
        &self.chunk.events[self.chunk.ranges(self.i).1]
    }

    /// The events as an [`EngineBatch`] (built once, then shared by every in-process subscriber).
    pub fn batch(&self) -> Arc<EngineBatch> {
        let slots = self.chunk.batches.get_or_init(|| (0..self.chunk.len()).map(|_| OnceLock::new()).collect());
        slots[self.i]
            .get_or_init(|| {
                Arc::new(EngineBatch {
                    origin: payload::origin(self.payload()),
                    seq: self.seq,
                    ts: self.ts,
                    events: self.events().to_vec(),
                })
            })
            .clone()
    }
}

/// Chunks holding at least the last `capacity` seqs released (and at most one chunk more).
pub struct Ring {
    next: u64,
    chunks: VecDeque<Arc<Chunk>>,
    len: usize,
    capacity: usize,
}

impl Ring {
    /// An empty ring whose next entry will be `next_seq`.
    pub fn new(next_seq: u64, capacity: usize) -> Self {
        Ring { next: next_seq, chunks: VecDeque::new(), len: 0, capacity: capacity.max(1) }
    }

    /// Oldest seq held (or the next to come when empty).
    pub fn first(&self) -> u64 {
        self.chunks.front().map_or(self.next, |c| c.first)
    }

    /// Newest seq held (`first - 1` when empty).
    pub fn last(&self) -> u64 {
        self.next - 1
    }

    /// Appends the next chunk (its first seq must be `last + 1`); drops the oldest chunks while
    /// the rest still hold `capacity` seqs.
    pub fn push(&mut self, c: Arc<Chunk>) {
        self.push_evicting(c, &mut Vec::new());
    }

    /// [`push`](Self::push), handing the chunks that leave to `evicted` (so the caller can
    /// reuse their buffers, and frees them outside the ring's lock).
    pub fn push_evicting(&mut self, c: Arc<Chunk>, evicted: &mut Vec<Arc<Chunk>>) {
        assert_eq!(c.first, self.next, "ring chunks must be contiguous");
        assert!(!c.is_empty());
        self.next = c.last() + 1;
        self.len += c.len();
        self.chunks.push_back(c);
        while self.chunks.len() > 1 && self.len - self.chunks[0].len() >= self.capacity {
            if let Some(old) = self.chunks.pop_front() {
                self.len -= old.len();
                evicted.push(old);
            }
        }
    }

    /// Up to `max` entries from `from` on (`first <= from`; nothing when `from > last`).
    pub fn take(&self, from: u64, max: usize, out: &mut Vec<Entry>) {
        debug_assert!(from >= self.first());
        let mut k = self.chunks.partition_point(|c| c.last() < from);
        let mut seq = from;
        while k < self.chunks.len() && out.len() < max {
            let c = &self.chunks[k];
            let i = (seq - c.first) as usize;
            if i >= c.len() {
                k += 1;
                continue;
            }
            out.push(Entry { chunk: c.clone(), i, seq, ts: c.slots[i].ts });
            seq += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use castle_engine::EventKind;

    fn chunk(b: &mut ChunkBuilder, seqs: std::ops::RangeInclusive<u64>) -> Arc<Chunk> {
        for s in seqs {
            let ev = Event {
                seq: s,
                ts: s * 10,
                kind: EventKind::BalanceChanged { account: 1, asset: 1, available: s as i64, locked: 0 },
            };
            b.push(s, s * 10, &s.to_le_bytes(), &vec![ev; (s % 3) as usize]);
        }
        Arc::new(b.seal().expect("not empty"))
    }

    /// A chunk of one event per seq (every chunk of n seqs has the same sizes).
    fn uniform(b: &mut ChunkBuilder, seqs: std::ops::RangeInclusive<u64>) -> Arc<Chunk> {
        for s in seqs {
            let ev = Event {
                seq: s,
                ts: s,
                kind: EventKind::BalanceChanged { account: 1, asset: 1, available: 0, locked: 0 },
            };
            b.push(s, s, &s.to_le_bytes(), &[ev]);
        }
        Arc::new(b.seal().expect("not empty"))
    }

    #[test]
    fn evicted_unshared_chunks_lend_their_buffers_to_later_batches() {
        let mut b = ChunkBuilder::default();
        let mut r = Ring::new(1, 4);
        let mut evicted = Vec::new();
        r.push_evicting(uniform(&mut b, 1..=4), &mut evicted);
        assert!(evicted.is_empty());
        let held = uniform(&mut b, 5..=8);
        let keep = held.clone();
        r.push_evicting(held, &mut evicted);
        r.push_evicting(uniform(&mut b, 9..=12), &mut evicted);
        r.push_evicting(uniform(&mut b, 13..=16), &mut evicted);
        assert_eq!(evicted.iter().map(|c| c.first()).collect::<Vec<_>>(), vec![1, 5, 9]);
        let spare_events = evicted[2].events.as_ptr();
        for c in evicted.drain(..) {
            b.recycle(c);
        }
        // 1..=4 and 9..=12 were unshared: spare; 5..=8 is still held by `keep`: left alone.
        assert_eq!(b.spare.len(), 2);
        assert_eq!(keep.first(), 5);
        // The next seal hands the newest spare set to the builder (same sizes: it fits).
        let c = uniform(&mut b, 17..=20);
        assert_eq!(b.spare.len(), 1);
        assert_eq!(b.events.as_ptr(), spare_events);
        assert_eq!(c.first(), 17);
        // A spare far too large for the batches being built is dropped, not kept.
        b.spare.push((Vec::with_capacity(1_000), Vec::with_capacity(100_000), Vec::with_capacity(1_000)));
        let _ = uniform(&mut b, 21..=21);
        assert!(b.spare.is_empty());
        assert!(b.payloads.capacity() < 100_000);
    }

    #[test]
    fn bounded_contiguous_and_entries_see_their_own_slices() {
        let mut b = ChunkBuilder::default();
        assert!(b.seal().is_none());
        let mut r = Ring::new(5, 4);
        assert_eq!((r.first(), r.last()), (5, 4));
        r.push(chunk(&mut b, 5..=7));
        r.push(chunk(&mut b, 8..=9));
        assert_eq!((r.first(), r.last()), (5, 9));
        // 10..=12 arrive: 8..=12 still hold 4 seqs, so 5..=7 go.
        r.push(chunk(&mut b, 10..=12));
        assert_eq!((r.first(), r.last()), (8, 12));
        let mut v = Vec::new();
        r.take(9, 10, &mut v);
        assert_eq!(v.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![9, 10, 11, 12]);
        for e in &v {
            assert_eq!(e.ts, e.seq * 10);
            assert_eq!(e.payload(), &e.seq.to_le_bytes());
            assert_eq!(e.events().len(), (e.seq % 3) as usize);
            assert!(e.events().iter().all(|x| x.seq == e.seq));
            let b = e.batch();
            assert_eq!((b.seq, b.ts, b.events.as_slice()), (e.seq, e.ts, e.events()));
            assert!(Arc::ptr_eq(&b, &e.batch()), "built once");
        }
        v.clear();
        r.take(8, 2, &mut v);
        assert_eq!(v.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![8, 9]);
        v.clear();
        r.take(13, 5, &mut v);
        assert!(v.is_empty());
    }
}
