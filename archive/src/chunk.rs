//! Groups encoded lines into records and records into flushes within the
//! limits of the sink (Kinesis: 1 MiB per record, 500 records and 5 MiB per
//! PutRecords call). A command's lines are split across records only when
//! they alone exceed a record (a mass cancel of thousands of orders), and
//! only at line boundaries, so every record is whole JSON lines.

use castle_engine::Seq;

/// Kinesis PutRecords limits, minus room for the partition key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    pub record_bytes: usize,
    pub records_per_flush: usize,
    pub flush_bytes: usize,
}

impl Limits {
    pub const KINESIS: Limits =
        Limits { record_bytes: (1 << 20) - 256, records_per_flush: 500, flush_bytes: (5 << 20) - 500 * 256 };
}

/// What one flush writes: whole commands `first_seq..=last_seq`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Flush {
    pub first_seq: Seq,
    pub last_seq: Seq,
    /// Engine time of the first command (ns since the epoch): the local sink's partition.
    pub first_ts: u64,
    pub records: Vec<Vec<u8>>,
    pub events: usize,
}

impl Flush {
    pub fn bytes(&self) -> usize {
        self.records.iter().map(Vec::len).sum()
    }
}

#[derive(Debug)]
pub struct Chunker {
    limits: Limits,
    flush: Flush,
    current: Vec<u8>,
    bytes: usize,
    commands: usize,
}

impl Chunker {
    pub fn new(limits: Limits) -> Self {
        assert!(limits.record_bytes >= 4096 && limits.records_per_flush >= 1);
        assert!(limits.flush_bytes >= limits.record_bytes);
        Self { limits, flush: Flush::default(), current: Vec::new(), bytes: 0, commands: 0 }
    }

    pub fn is_empty(&self) -> bool {
        self.commands == 0
    }

    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Whether one command's lines can join this flush. Exact: it counts the records
    /// [`Chunker::push`] would make, line splits included.
    pub fn fits(&self, lines: &[u8]) -> bool {
        if self.is_empty() {
            return true; // an oversized command is split over records, never refused
        }
        self.bytes + lines.len() <= self.limits.flush_bytes
            && self.records_after(lines) <= self.limits.records_per_flush
    }

    /// Records in the flush once `lines` are pushed (the last one still open counted).
    fn records_after(&self, lines: &[u8]) -> usize {
        let max = self.limits.record_bytes;
        let mut closed = self.flush.records.len();
        let mut open = self.current.len();
        if open + lines.len() > max && open > 0 {
            closed += 1;
            open = 0;
        }
        if lines.len() <= max {
            open += lines.len();
        } else {
            for line in lines.split_inclusive(|&b| b == b'\n') {
                if open + line.len() > max {
                    closed += 1;
                    open = 0;
                }
                open += line.len();
            }
        }
        closed + usize::from(open > 0)
    }

    /// Adds one command (its lines, possibly none). The caller checks [`Chunker::fits`] first.
    pub fn push(&mut self, seq: Seq, ts: u64, lines: &[u8], events: usize) {
        debug_assert!(self.fits(lines));
        if self.commands == 0 {
            self.flush.first_seq = seq;
            self.flush.first_ts = ts;
        } else {
            assert!(seq > self.flush.last_seq, "commands out of order: {seq} after {}", self.flush.last_seq);
        }
        self.flush.last_seq = seq;
        self.flush.events += events;
        self.commands += 1;
        self.bytes += lines.len();
        if self.current.len() + lines.len() > self.limits.record_bytes && !self.current.is_empty() {
            self.flush.records.push(std::mem::take(&mut self.current));
        }
        if lines.len() <= self.limits.record_bytes {
            self.current.extend_from_slice(lines);
            return;
        }
        for line in lines.split_inclusive(|&b| b == b'\n') {
            assert!(line.len() <= self.limits.record_bytes, "one line of {} bytes", line.len());
            if self.current.len() + line.len() > self.limits.record_bytes {
                self.flush.records.push(std::mem::take(&mut self.current));
            }
            self.current.extend_from_slice(line);
        }
    }

    /// The flush so far (None when no command was pushed).
    pub fn take(&mut self) -> Option<Flush> {
        if self.commands == 0 {
            return None;
        }
        if !self.current.is_empty() {
            self.flush.records.push(std::mem::take(&mut self.current));
        }
        self.bytes = 0;
        self.commands = 0;
        Some(std::mem::take(&mut self.flush))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const SMALL: Limits = Limits { record_bytes: 4096, records_per_flush: 4, flush_bytes: 12_000 };

    fn lines(n: usize, width: usize) -> Vec<u8> {
        let mut v = Vec::new();
        for _ in 0..n {
            v.extend(std::iter::repeat_n(b'x', width - 1));
            v.push(b'\n');
        }
        v
    }

    proptest! {
        /// Whatever the command sizes, flushes respect the limits, records are whole lines,
        /// and concatenating every flush gives back every byte in order.
        #[test]
        fn limits_hold_and_nothing_is_lost(cmds in proptest::collection::vec((0usize..60, 1usize..300), 1..200)) {
            let mut c = Chunker::new(SMALL);
            let mut all = Vec::new();
            let mut got = Vec::new();
            let mut seqs = Vec::new();
            let check = |f: Flush, got: &mut Vec<u8>, seqs: &mut Vec<(u64, u64)>| {
                assert!(f.records.len() <= SMALL.records_per_flush || f.first_seq == f.last_seq);
                for r in &f.records {
                    assert!(r.len() <= SMALL.record_bytes);
                    assert!(r.ends_with(b"\n"));
                    got.extend_from_slice(r);
                }
                seqs.push((f.first_seq, f.last_seq));
            };
            for (i, (n, w)) in cmds.iter().enumerate() {
                let l = lines(*n, *w);
                all.extend_from_slice(&l);
                if !c.fits(&l) {
                    check(c.take().unwrap(), &mut got, &mut seqs);
                }
                c.push(i as u64 + 1, 0, &l, *n);
            }
            if let Some(f) = c.take() {
                check(f, &mut got, &mut seqs);
            }
            prop_assert_eq!(got, all);
            // Flushes cover every command exactly once, in order.
            let mut next = 1;
            for (a, b) in seqs {
                prop_assert_eq!(a, next);
                prop_assert!(b >= a);
                next = b + 1;
            }
            prop_assert_eq!(next, cmds.len() as u64 + 1);
        }
    }

    #[test]
    fn an_oversized_command_is_split_at_lines() {
        let mut c = Chunker::new(SMALL);
        let l = lines(100, 100); // 10,000 bytes > one 4,096-byte record
        c.push(7, 5, &l, 100);
        let f = c.take().unwrap();
        assert_eq!((f.first_seq, f.last_seq, f.first_ts, f.events), (7, 7, 5, 100));
        assert_eq!(f.records.len(), 3);
        assert!(f.records.iter().all(|r| r.len() <= 4096 && r.ends_with(b"\n")));
        assert!(c.take().is_none());
    }

    #[test]
    fn commands_without_events_still_advance() {
        let mut c = Chunker::new(SMALL);
        c.push(1, 0, b"", 0);
        c.push(2, 0, b"", 0);
        let f = c.take().unwrap();
        assert_eq!((f.first_seq, f.last_seq, f.records.len()), (1, 2, 0));
    }
}
