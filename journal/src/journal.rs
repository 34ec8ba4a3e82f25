//! The journal writer: recovery on open, appends into a bounded batch buffer, pipelined group
//! commit.

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::buf::AlignedBuf;
use crate::error::{JournalError, Result};
use crate::format::{
    decode_segment_header, encode_record_into, encode_segment_header, BadRecord, SegmentCursor, SegmentEnd,
    SegmentHeader, Step, BLOCK, RECORD_HEADER_LEN, SEGMENT_HEADER_LEN,
};
use crate::segment::{
    fsync_dir, list_segments, open_segment_rw, preallocate, read_file, segment_file_name, write_side_file, zero_range,
    SegmentInfo,
};
use crate::writer::{make_writer, BatchWriter, WriteOp, WriterChoice, WriterKind, MAX_OPS_PER_BATCH};

/// What to do with corruption that is not a torn tail.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RecoveryMode {
    /// Refuse to open, naming file and byte offset (torn tails are always truncated).
    #[default]
    Strict,
    /// Discard everything from the first bad byte on: the bad segment is cut there (the cut bytes
    /// are kept in `<segment>.discarded-<offset>`), later segments are renamed to
    /// `<name>.discarded`.
    Truncate,
}

/// How much of the journal [`Journal::open`] checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Verify {
    /// Read every segment: CRCs and continuity of the whole journal.
    #[default]
    Full,
    /// Only the last segment (where a crash can leave a torn tail). Older segments are checked
    /// when a [`JournalReader`](crate::JournalReader) reads them.
    LastSegment,
}

/// Options for [`Journal::open`].
#[derive(Debug, Clone)]
pub struct JournalOptions {
    /// Directory of the segment files (created if missing).
    pub dir: PathBuf,
    /// Segment size limit in bytes (rounded up to 4 KiB); new segments are pre-allocated to it.
    pub segment_size: u64,
    /// Size of each of the two batch buffers (rounded up to 4 KiB). Memory use is twice this.
    pub batch_capacity: usize,
    pub writer: WriterChoice,
    /// Try O_DIRECT (falls back to buffered writes + fdatasync where the filesystem refuses it).
    pub direct_io: bool,
    /// fallocate new segments to `segment_size`.
    pub preallocate: bool,
    pub recovery: RecoveryMode,
    pub verify: Verify,
    /// Sequence number of the first record of an empty journal (>= 1).
    pub first_seq: u64,
}

impl JournalOptions {
    /// Defaults: 64 MiB segments, 2 x 4 MiB batch buffers, auto writer, O_DIRECT, fallocate,
    /// strict recovery, full verification, first sequence 1.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        JournalOptions {
            dir: dir.into(),
            segment_size: 64 << 20,
            batch_capacity: 4 << 20,
            writer: WriterChoice::Auto,
            direct_io: true,
            preallocate: true,
            recovery: RecoveryMode::Strict,
            verify: Verify::Full,
            first_seq: 1,
        }
    }
}

/// A piece of the journal that recovery cut off.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Truncation {
    pub file: PathBuf,
    /// Byte offset of the cut (the end of the last good record).
    pub offset: u64,
    /// Non-zero bytes that were zeroed.
    pub discarded_bytes: u64,
    /// Records with a valid CRC inside the discarded bytes (members of the torn batch).
    pub discarded_valid_records: usize,
    pub reason: String,
    /// `false` for a torn tail, `true` for corruption discarded because of [`RecoveryMode::Truncate`].
    pub corruption: bool,
}

/// What [`Journal::open`] found and did.
#[derive(Debug, Clone)]
pub struct RecoveryReport {
    /// Segment files after recovery.
    pub segments: usize,
    /// Last sequence number in the journal (`next_seq - 1`), if any record exists.
    pub last_seq: Option<u64>,
    /// Sequence number the next append gets.
    pub next_seq: u64,
    pub truncations: Vec<Truncation>,
    /// Segment files deleted (never written) or renamed away (discarded).
    pub removed_segments: Vec<PathBuf>,
    pub writer: WriterKind,
}

enum Target {
    Existing(Arc<File>, Arc<PathBuf>),
    New(u64),
}

/// A contiguous piece of the batch buffer destined for one segment.
struct Chunk {
    target: Target,
    /// Block-aligned file offset that `buf_start` maps to.
    file_off: u64,
    /// Block-aligned.
    buf_start: usize,
    /// Where bytes not yet on disk begin (after the carried-over partial block).
    new_from: usize,
    buf_end: usize,
}

/// The write-ahead journal. See the crate docs for the commit protocol.
pub struct Journal {
    // Declared first so it drops before the buffers it may reference.
    writer: Box<dyn BatchWriter>,
    bufs: [AlignedBuf; 2],
    opts: JournalOptions,
    fill: usize,
    fill_len: usize,
    chunks: Vec<Chunk>,
    /// Logical end of data in the segment being appended to (including unsubmitted records).
    seg_pos: u64,
    batch_records: u32,
    next_seq: u64,
    in_flight_last: Option<u64>,
    durable: u64,
    poisoned: bool,
    direct: bool,
    max_record: usize,
}

fn round_up(x: usize) -> usize {
    x.div_ceil(BLOCK) * BLOCK
}

struct Recovered {
    report_truncations: Vec<Truncation>,
    removed: Vec<PathBuf>,
    segments: usize,
    next_seq: u64,
    /// The segment to continue appending to: info, data end, bytes of its last partial block.
    last: Option<(SegmentInfo, u64, Vec<u8>)>,
}

fn discard_segments(dir: &Path, segs: &[SegmentInfo], removed: &mut Vec<PathBuf>) -> Result<()> {
    for s in segs {
        let mut to = s.path.clone().into_os_string();
        to.push(".discarded");
        fs::rename(&s.path, &to).map_err(|e| JournalError::io("rename", &s.path, e))?;
        tracing::warn!(file = %s.path.display(), "discarded segment after corruption (renamed to .discarded)");
        removed.push(s.path.clone());
    }
    if !segs.is_empty() {
        fsync_dir(dir)?;
    }
    Ok(())
}

fn recover(opts: &JournalOptions) -> Result<Recovered> {
    let dir = &opts.dir;
    let mut segs = list_segments(dir)?;
    // A writer that died may still have writes landing (see `segment::lock_exclusive`).
    for s in &segs {
        crate::segment::wait_for_writers(&s.path)?;
    }
    let mut removed = Vec::new();
    let mut truncations = Vec::new();
    let mut name_hint = None;
    let mut last_data: Option<Vec<u8>> = None;

    // Trailing segments that were created but never written (crash between creation and the
    // first write) are removed.
    while let Some(last) = segs.last() {
        let data = read_file(&last.path)?;
        if data.iter().any(|&b| b != 0) {
            last_data = Some(data);
            break;
        }
        fs::remove_file(&last.path).map_err(|e| JournalError::io("remove", &last.path, e))?;
        tracing::info!(file = %last.path.display(), "removed empty (never written) segment");
        name_hint = Some(last.first_seq);
        removed.push(last.path.clone());
        segs.pop();
        fsync_dir(dir)?;
    }

    let mut n = segs.len();
    let start = match opts.verify {
        Verify::Full => 0,
        Verify::LastSegment => n.saturating_sub(1),
    };
    let mut expected: Option<u64> = None;
    let mut last = None;
    let mut i = start;
    while i < n {
        let seg = segs[i].clone();
        if let Some(exp) = expected {
            if seg.first_seq != exp {
                if opts.recovery == RecoveryMode::Truncate {
                    tracing::warn!(file = %seg.path.display(), expected = exp, found = seg.first_seq, "sequence gap; discarding this and later segments");
                    discard_segments(dir, &segs[i..], &mut removed)?;
                    n = i;
                    break;
                }
                return Err(JournalError::SequenceGap { file: seg.path.clone(), expected: exp, found: seg.first_seq });
            }
        }
        let is_last = i + 1 == n;
        let data = match (is_last, last_data.take()) {
            (true, Some(d)) => d,
            (_, d) => {
                last_data = d;
                read_file(&seg.path)?
            }
        };
        let mut cursor = match decode_segment_header(&data) {
            SegmentHeader::Valid { first_seq } if first_seq == seg.first_seq => {
                SegmentCursor::new(&data, seg.first_seq)
            }
            _ => SegmentCursor::bad_header(&data, seg.first_seq),
        };
        let end = loop {
            match cursor.step() {
                Step::Record(_) => {}
                Step::End(e) => break e,
            }
        };
        let mut became_last = is_last;
        let end_off = match end {
            SegmentEnd::Clean { offset: 0 } if !is_last => {
                return Err(JournalError::Corrupt {
                    file: seg.path.clone(),
                    offset: 0,
                    reason: "segment that is not the last is all zero".into(),
                    valid_after: None,
                });
            }
            SegmentEnd::Clean { offset } => offset,
            SegmentEnd::Torn { offset, garbage_end, valid_records, reason } if is_last => {
                tracing::warn!(
                    file = %seg.path.display(), offset, discarded_bytes = garbage_end - offset,
                    discarded_valid_records = valid_records, %reason,
                    "torn journal tail truncated to the last good record"
                );
                zero_range(&seg.path, offset as u64, garbage_end as u64)?;
                truncations.push(Truncation {
                    file: seg.path.clone(),
                    offset: offset as u64,
                    discarded_bytes: (garbage_end - offset) as u64,
                    discarded_valid_records: valid_records,
                    reason: reason.to_string(),
                    corruption: false,
                });
                offset
            }
            SegmentEnd::Torn { offset, reason, .. } | SegmentEnd::Corrupt { offset, reason, .. } => {
                let valid_after = match end {
                    SegmentEnd::Corrupt { valid_at, valid_seq, .. } => Some((valid_at as u64, valid_seq)),
                    _ => None,
                };
                let reason_s =
                    if is_last { reason.to_string() } else { format!("{reason} (in a segment that is not the last)") };
                if opts.recovery == RecoveryMode::Strict {
                    return Err(JournalError::Corrupt {
                        file: seg.path.clone(),
                        offset: offset as u64,
                        reason: reason_s,
                        valid_after,
                    });
                }
                let nz_end = crate::format::last_nonzero(&data).map_or(offset, |p| p + 1);
                let mut side = seg.path.clone().into_os_string();
                side.push(format!(".discarded-{offset}"));
                write_side_file(Path::new(&side), &data[offset..nz_end.max(offset)])?;
                zero_range(&seg.path, offset as u64, nz_end.max(offset) as u64)?;
                tracing::warn!(file = %seg.path.display(), offset, reason = %reason_s, "corruption discarded (RecoveryMode::Truncate)");
                truncations.push(Truncation {
                    file: seg.path.clone(),
                    offset: offset as u64,
                    discarded_bytes: nz_end.saturating_sub(offset) as u64,
                    discarded_valid_records: 0,
                    reason: reason_s,
                    corruption: true,
                });
                discard_segments(dir, &segs[i + 1..], &mut removed)?;
                n = i + 1;
                became_last = true;
                offset
            }
        };
        expected = Some(cursor.expected_seq());
        if became_last {
            if end_off < SEGMENT_HEADER_LEN
                || matches!(
                    end,
                    SegmentEnd::Torn { reason: BadRecord::SegmentHeader, .. }
                        | SegmentEnd::Corrupt { reason: BadRecord::SegmentHeader, .. }
                )
            {
                // No valid header survives: drop the file, the next append recreates it.
                fs::remove_file(&seg.path).map_err(|e| JournalError::io("remove", &seg.path, e))?;
                fsync_dir(dir)?;
                removed.push(seg.path.clone());
                name_hint = Some(seg.first_seq);
                n = i;
            } else {
                let tail_start = end_off / BLOCK * BLOCK;
                last = Some((seg.clone(), end_off as u64, data[tail_start..end_off].to_vec()));
            }
        }
        i += 1;
    }
    let next_seq = expected.or(name_hint).unwrap_or(opts.first_seq);
    Ok(Recovered { report_truncations: truncations, removed, segments: n, next_seq, last })
}

impl Journal {
    /// Open (creating if needed) the journal in `opts.dir`, recovering from a crash: a torn tail
    /// is truncated to the last good record and logged; corruption elsewhere is an error
    /// ([`JournalError::Corrupt`], naming file and byte offset) unless `opts.recovery` is
    /// [`RecoveryMode::Truncate`].
    pub fn open(opts: JournalOptions) -> Result<(Journal, RecoveryReport)> {
        let mut opts = opts;
        if opts.first_seq == 0 {
            return Err(JournalError::Config("first_seq must be >= 1".into()));
        }
        opts.segment_size = (opts.segment_size as usize).div_ceil(BLOCK) as u64 * BLOCK as u64;
        opts.batch_capacity = round_up(opts.batch_capacity.max(2 * BLOCK));
        if opts.segment_size < (2 * BLOCK) as u64 {
            return Err(JournalError::Config("segment_size must be >= 8 KiB".into()));
        }
        fs::create_dir_all(&opts.dir).map_err(|e| JournalError::io("create dir", &opts.dir, e))?;
        let rec = recover(&opts)?;

        let cap = opts.batch_capacity;
        let bufs = [AlignedBuf::new(cap), AlignedBuf::new(cap)];
        // SAFETY: the buffers live in the Journal next to the writer, which is dropped first.
        let writer = unsafe { make_writer(opts.writer, &[(bufs[0].as_ptr(), cap), (bufs[1].as_ptr(), cap)])? };
        let max_record = (opts.segment_size as usize - SEGMENT_HEADER_LEN).min(cap - BLOCK - SEGMENT_HEADER_LEN);
        let mut j = Journal {
            writer,
            bufs,
            fill: 0,
            fill_len: 0,
            chunks: Vec::with_capacity(MAX_OPS_PER_BATCH),
            seg_pos: 0,
            batch_records: 0,
            next_seq: rec.next_seq,
            in_flight_last: None,
            durable: rec.next_seq - 1,
            poisoned: false,
            direct: opts.direct_io,
            max_record,
            opts,
        };
        if let Some((seg, end, tail)) = rec.last {
            let (file, direct) = open_segment_rw(&seg.path, false, j.direct)?;
            j.direct = direct;
            j.bufs[0].as_mut_slice()[..tail.len()].copy_from_slice(&tail);
            j.chunks.push(Chunk {
                target: Target::Existing(Arc::new(file), Arc::new(seg.path.clone())),
                file_off: end - tail.len() as u64,
                buf_start: 0,
                new_from: tail.len(),
                buf_end: tail.len(),
            });
            j.fill_len = tail.len();
            j.seg_pos = end;
        }
        let report = RecoveryReport {
            segments: rec.segments,
            last_seq: (rec.next_seq > 1).then(|| rec.next_seq - 1),
            next_seq: rec.next_seq,
            truncations: rec.report_truncations,
            removed_segments: rec.removed,
            writer: j.writer.kind(),
        };
        tracing::info!(
            dir = %j.opts.dir.display(), next_seq = report.next_seq, segments = report.segments,
            truncations = report.truncations.len(), writer = %report.writer, "journal opened"
        );
        Ok((j, report))
    }

    /// Append a record to the current batch (memory only, no I/O) and return its sequence
    /// number. Fails with [`JournalError::BatchFull`] when the batch buffer has no room: call
    /// [`submit`](Self::submit) or [`commit`](Self::commit) and retry. The record is durable once
    /// [`durable_seq`](Self::durable_seq) is >= its sequence number.
    pub fn append(&mut self, ts: u64, payload: &[u8]) -> Result<u64> {
        if self.poisoned {
            return Err(JournalError::Poisoned);
        }
        let rec = RECORD_HEADER_LEN + payload.len();
        if rec > self.max_record {
            return Err(JournalError::RecordTooLarge { len: rec, max: self.max_record });
        }
        let seq = self.next_seq;
        let cap = self.bufs[self.fill].capacity();
        let roll = self.chunks.is_empty() || self.seg_pos + rec as u64 > self.opts.segment_size;
        if roll {
            let start = round_up(self.fill_len);
            if start + SEGMENT_HEADER_LEN + rec > cap || self.chunks.len() >= MAX_OPS_PER_BATCH {
                return Err(JournalError::BatchFull { needed: rec, capacity: cap });
            }
            let buf = self.bufs[self.fill].as_mut_slice();
            buf[self.fill_len..start].fill(0);
            buf[start..start + SEGMENT_HEADER_LEN].copy_from_slice(&encode_segment_header(seq));
            self.chunks.push(Chunk {
                target: Target::New(seq),
                file_off: 0,
                buf_start: start,
                new_from: start,
                buf_end: start + SEGMENT_HEADER_LEN,
            });
            self.fill_len = start + SEGMENT_HEADER_LEN;
            self.seg_pos = SEGMENT_HEADER_LEN as u64;
        } else if self.fill_len + rec > cap {
            return Err(JournalError::BatchFull { needed: rec, capacity: cap });
        }
        let at = self.fill_len;
        encode_record_into(
            &mut self.bufs[self.fill].as_mut_slice()[at..at + rec],
            seq,
            ts,
            self.batch_records,
            payload,
        );
        self.chunks.last_mut().expect("chunk").buf_end += rec;
        self.fill_len += rec;
        self.seg_pos += rec as u64;
        self.batch_records += 1;
        self.next_seq += 1;
        Ok(seq)
    }

    /// Start writing the current batch (waiting first for the previous batch, if one is still in
    /// flight, so at most one batch is in flight). Returns the last sequence number of the
    /// submitted batch, or `None` if the batch was empty. Appends can continue right away into
    /// the other buffer; [`wait`](Self::wait) makes the submitted batch durable.
    pub fn submit(&mut self) -> Result<Option<u64>> {
        if self.poisoned {
            return Err(JournalError::Poisoned);
        }
        if self.batch_records == 0 {
            return Ok(None);
        }
        self.wait()?;
        let r = self.submit_inner();
        if r.is_err() {
            self.poisoned = true;
        }
        r.map(Some)
    }

    fn submit_inner(&mut self) -> Result<u64> {
        let dir = self.opts.dir.clone();
        for c in &mut self.chunks {
            if let Target::New(first) = c.target {
                let path = dir.join(segment_file_name(first));
                let (file, direct) = open_segment_rw(&path, true, self.direct)?;
                self.direct = direct;
                if self.opts.preallocate {
                    preallocate(&file, &path, self.opts.segment_size)?;
                }
                fsync_dir(&dir)?;
                tracing::debug!(file = %path.display(), direct_io = direct, "new journal segment");
                c.target = Target::Existing(Arc::new(file), Arc::new(path));
            }
        }
        let fill = self.fill;
        let next = 1 - fill;
        let mut ops = Vec::with_capacity(self.chunks.len());
        {
            let (a, b) = self.bufs.split_at_mut(1);
            let (cur, other) = if fill == 0 { (&mut a[0], &mut b[0]) } else { (&mut b[0], &mut a[0]) };
            let base = cur.as_ptr();
            let buf = cur.as_mut_slice();
            for c in &self.chunks {
                if c.buf_end == c.new_from {
                    continue;
                }
                let len = round_up(c.buf_end - c.buf_start);
                buf[c.buf_end..c.buf_start + len].fill(0);
                let Target::Existing(file, path) = &c.target else { unreachable!("materialised above") };
                ops.push(WriteOp {
                    file: file.clone(),
                    path: path.clone(),
                    offset: c.file_off,
                    // SAFETY: in bounds of the buffer.
                    ptr: unsafe { base.add(c.buf_start) },
                    len,
                    buf_index: fill as u16,
                });
            }
            // Carry the last partial block into the other buffer (free: nothing in flight).
            let last = self.chunks.last().expect("non-empty batch");
            let end_in_file = last.file_off + (last.buf_end - last.buf_start) as u64;
            let carry = (end_in_file % BLOCK as u64) as usize;
            other.as_mut_slice()[..carry].copy_from_slice(&buf[last.buf_end - carry..last.buf_end]);
        }
        let last = self.chunks.pop().expect("non-empty batch");
        let end_in_file = last.file_off + (last.buf_end - last.buf_start) as u64;
        let carry = (end_in_file % BLOCK as u64) as usize;
        // SAFETY: the ops point into bufs[fill], which is not written again until the batch
        // completes: appends go to bufs[next], and submit() waits before switching back.
        unsafe { self.writer.submit(ops)? };
        let last_seq = self.next_seq - 1;
        self.in_flight_last = Some(last_seq);
        self.chunks.clear();
        self.chunks.push(Chunk {
            target: last.target,
            file_off: end_in_file - carry as u64,
            buf_start: 0,
            new_from: carry,
            buf_end: carry,
        });
        self.fill = next;
        self.fill_len = carry;
        self.batch_records = 0;
        Ok(last_seq)
    }

    /// Wait until the batch in flight (if any) is durable; returns [`durable_seq`](Self::durable_seq).
    pub fn wait(&mut self) -> Result<u64> {
        if self.poisoned {
            return Err(JournalError::Poisoned);
        }
        if let Some(last) = self.in_flight_last {
            self.in_flight_last = None;
            if let Err(e) = self.writer.wait() {
                self.poisoned = true;
                return Err(e);
            }
            self.durable = last;
        }
        Ok(self.durable)
    }

    /// Non-blocking [`wait`](Self::wait): advances [`durable_seq`](Self::durable_seq) if the
    /// batch in flight has completed.
    pub fn poll(&mut self) -> Result<u64> {
        if self.poisoned {
            return Err(JournalError::Poisoned);
        }
        if let Some(last) = self.in_flight_last {
            match self.writer.try_wait() {
                Ok(true) => {
                    self.in_flight_last = None;
                    self.durable = last;
                }
                Ok(false) => {}
                Err(e) => {
                    self.in_flight_last = None;
                    self.poisoned = true;
                    return Err(e);
                }
            }
        }
        Ok(self.durable)
    }

    /// Submit the current batch and wait until everything appended so far is durable.
    pub fn commit(&mut self) -> Result<u64> {
        self.submit()?;
        self.wait()
    }

    /// Highest sequence number known durable (`next_seq() - 1` after a `commit`).
    pub fn durable_seq(&self) -> u64 {
        self.durable
    }

    /// Sequence number the next [`append`](Self::append) will return.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// Whether a submitted batch has not been waited for yet.
    pub fn in_flight(&self) -> bool {
        self.in_flight_last.is_some()
    }

    /// Records appended to the current (unsubmitted) batch.
    pub fn pending_records(&self) -> usize {
        self.batch_records as usize
    }

    /// Largest payload [`append`](Self::append) accepts.
    pub fn max_payload(&self) -> usize {
        self.max_record - RECORD_HEADER_LEN
    }

    pub fn writer_kind(&self) -> WriterKind {
        self.writer.kind()
    }

    /// Whether segments are written with O_DIRECT (false once the filesystem refused it).
    pub fn direct_io(&self) -> bool {
        self.direct
    }

    pub fn dir(&self) -> &Path {
        &self.opts.dir
    }

    /// Delete segments whose records are all below `seq` (never the segment being written).
    pub fn delete_segments_before(&self, seq: u64) -> Result<Vec<PathBuf>> {
        crate::snapshot::delete_segments_before(&self.opts.dir, seq)
    }

    /// Commit what is pending and close.
    pub fn close(mut self) -> Result<u64> {
        self.commit()
    }
}

impl Drop for Journal {
    fn drop(&mut self) {
        // Never free a buffer the kernel may still read.
        if self.in_flight_last.take().is_some() {
            let _ = self.writer.wait();
        }
        if self.writer.wedged() {
            let keep = [AlignedBuf::new(BLOCK), AlignedBuf::new(BLOCK)];
            for b in std::mem::replace(&mut self.bufs, keep) {
                b.leak();
            }
        }
    }
}
