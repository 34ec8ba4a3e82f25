//! Reading the journal from a sequence number on.

use std::path::{Path, PathBuf};

use crate::error::{JournalError, Result};
use crate::format::{
    decode_segment_header, RecordRef, SegmentCursor, SegmentEnd, SegmentHeader, Step, RECORD_HEADER_LEN,
};
use crate::segment::{list_segments, read_file, SegmentInfo};

struct Located {
    at: usize,
    len: usize,
    seq: u64,
    ts: u64,
    batch_index: u32,
}

/// An owned record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub seq: u64,
    pub ts: u64,
    pub payload: Vec<u8>,
}

/// Reads records in sequence order starting at a given sequence number, validating CRCs and
/// continuity as it goes. It never modifies files: a torn tail in the last segment simply ends
/// the iteration; corruption anywhere else is an error naming file and byte offset.
///
/// Each segment is read into memory whole (one at a time). The reader sees what is on disk when
/// it reaches a segment; while a [`Journal`](crate::Journal) is appending concurrently it may
/// also see records that are written but not yet durable: bound it by
/// [`Journal::durable_seq`](crate::Journal::durable_seq).
///
/// Use [`next_record`](Self::next_record) for zero-copy access, or the `Iterator` impl for owned
/// [`Record`]s.
pub struct JournalReader {
    segs: Vec<SegmentInfo>,
    idx: usize,
    data: Vec<u8>,
    pos: usize,
    expected: u64,
    from: u64,
    loaded: bool,
    bad_header: bool,
    done: bool,
}

impl JournalReader {
    /// Open the journal in `dir` positioned at `from_seq` (the segment is found by file name).
    /// Errors with [`JournalError::SeqNotAvailable`] if `from_seq` precedes the oldest segment.
    pub fn open(dir: impl AsRef<Path>, from_seq: u64) -> Result<Self> {
        let segs = list_segments(dir.as_ref())?;
        let mut r = JournalReader {
            idx: 0,
            data: Vec::new(),
            pos: 0,
            expected: 0,
            from: from_seq,
            loaded: false,
            bad_header: false,
            done: segs.is_empty(),
            segs,
        };
        if let Some(first) = r.segs.first() {
            if from_seq < first.first_seq {
                return Err(JournalError::SeqNotAvailable { requested: from_seq, first: first.first_seq });
            }
            r.idx = r.segs.partition_point(|s| s.first_seq <= from_seq).saturating_sub(1);
        }
        Ok(r)
    }

    /// The segment file being read.
    pub fn current_file(&self) -> Option<&PathBuf> {
        self.segs.get(self.idx).map(|s| &s.path)
    }

    fn load(&mut self) -> Result<()> {
        let seg = &self.segs[self.idx];
        if self.expected != 0 && seg.first_seq != self.expected {
            return Err(JournalError::SequenceGap {
                file: seg.path.clone(),
                expected: self.expected,
                found: seg.first_seq,
            });
        }
        self.data = read_file(&seg.path)?;
        self.expected = seg.first_seq;
        match decode_segment_header(&self.data) {
            SegmentHeader::Valid { first_seq } if first_seq == seg.first_seq => {
                self.pos = SegmentCursor::new(&self.data, first_seq).position();
                self.bad_header = false;
            }
            _ => {
                self.pos = 0;
                self.bad_header = true;
            }
        }
        self.loaded = true;
        Ok(())
    }

    fn corrupt(&self, offset: usize, reason: String, valid_after: Option<(u64, u64)>) -> JournalError {
        JournalError::Corrupt { file: self.segs[self.idx].path.clone(), offset: offset as u64, reason, valid_after }
    }

    /// Next record (borrowing the reader), `Ok(None)` at the end.
    pub fn next_record(&mut self) -> Result<Option<RecordRef<'_>>> {
        let r = self.advance();
        if r.is_err() {
            self.done = true;
        }
        Ok(r?.map(|h| RecordRef {
            seq: h.seq,
            ts: h.ts,
            batch_index: h.batch_index,
            payload: &self.data[h.at + RECORD_HEADER_LEN..h.at + h.len],
        }))
    }

    /// Moves to the next wanted record (already validated) and locates it in `self.data`.
    fn advance(&mut self) -> Result<Option<Located>> {
        loop {
            if self.done {
                return Ok(None);
            }
            if !self.loaded {
                self.load()?;
            }
            let is_last = self.idx + 1 == self.segs.len();
            let (step, pos, expected) = {
                let mut c = if self.bad_header {
                    SegmentCursor::bad_header(&self.data, self.expected)
                } else {
                    SegmentCursor::resume(&self.data, self.pos, self.expected)
                };
                let at = c.position();
                let s = match c.step() {
                    Step::Record(r) => {
                        Ok(Located { at, len: r.encoded_len(), seq: r.seq, ts: r.ts, batch_index: r.batch_index })
                    }
                    Step::End(e) => Err(e),
                };
                (s, c.position(), c.expected_seq())
            };
            self.pos = pos;
            self.expected = expected;
            match step {
                Ok(loc) => {
                    if loc.seq >= self.from {
                        return Ok(Some(loc));
                    }
                }
                Err(SegmentEnd::Clean { offset: 0 }) if !is_last => {
                    return Err(self.corrupt(0, "segment that is not the last is all zero".into(), None));
                }
                Err(SegmentEnd::Clean { .. }) => {
                    if is_last {
                        self.done = true;
                        return Ok(None);
                    }
                    self.idx += 1;
                    self.loaded = false;
                }
                Err(SegmentEnd::Torn { offset, garbage_end, .. }) if is_last => {
                    tracing::debug!(file = %self.segs[self.idx].path.display(), offset, garbage_end, "reader stops at torn tail");
                    self.done = true;
                    return Ok(None);
                }
                Err(SegmentEnd::Torn { offset, reason, .. }) => {
                    return Err(self.corrupt(offset, format!("{reason} (in a segment that is not the last)"), None));
                }
                Err(SegmentEnd::Corrupt { offset, reason, valid_at, valid_seq }) => {
                    return Err(self.corrupt(offset, reason.to_string(), Some((valid_at as u64, valid_seq))));
                }
            }
        }
    }
}

impl Iterator for JournalReader {
    type Item = Result<Record>;

    fn next(&mut self) -> Option<Self::Item> {
        match self.next_record() {
            Ok(Some(r)) => Some(Ok(Record { seq: r.seq, ts: r.ts, payload: r.payload.to_vec() })),
            Ok(None) => None,
            Err(e) => Some(Err(e)),
        }
    }
}
