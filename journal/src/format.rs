//! On-disk format of journal segments and records (sans-IO: pure functions over byte slices).
//!
//! # Segment file
//!
//! A journal directory holds segment files named `{first_seq:020}.wal` (zero-padded decimal, so
//! lexical order is sequence order). Each segment is pre-allocated to the configured segment size
//! (so a file's length says nothing about how much data it holds: the data ends where the first
//! all-zero record header is) and starts with a 32-byte header:
//!
//! | offset | size | field | notes |
//! | --- | --- | --- | --- |
//! | 0 | 8 | magic | `b"CSTLJRN\0"` |
//! | 8 | 4 | version | `1` (u32 LE) |
//! | 12 | 4 | header size | `32` (u32 LE) |
//! | 16 | 8 | first sequence number | u64 LE, equal to the number in the file name |
//! | 24 | 4 | reserved | `0` |
//! | 28 | 4 | CRC32C | over bytes 0..28 |
//!
//! # Record
//!
//! Records follow the header back to back (no alignment, no padding between records), all
//! integers little-endian:
//!
//! | offset | size | field | notes |
//! | --- | --- | --- | --- |
//! | 0 | 4 | length | payload length in bytes (u32) |
//! | 4 | 4 | batch index | position of the record in its commit batch: `seq - batch index` is the first sequence number of the batch |
//! | 8 | 8 | sequence number | u64, >= 1, exactly previous + 1 |
//! | 16 | 8 | timestamp | u64 nanoseconds, chosen by the caller, not interpreted |
//! | 24 | 4 | CRC32C | Castagnoli CRC over header bytes 0..24 followed by the payload |
//! | 28 | length | payload | opaque bytes |
//!
//! A record header of 28 zero bytes marks the end of the data (a valid record always has
//! `seq >= 1`, so it can never be all zero). The rest of the segment after the end must be zero.
//!
//! # Blocks and O_DIRECT
//!
//! The writer works in 4 KiB blocks ([`BLOCK`]): every write starts at a 4 KiB-aligned file offset
//! from a 4 KiB-aligned buffer and has a length that is a multiple of 4 KiB, zero-padded past the
//! last record. A commit that ends inside a block leaves that partial block in memory; the next
//! commit starts by rewriting the block with the same leading bytes plus the new records. The bytes
//! that were already durable are rewritten with identical values, so a torn rewrite cannot change
//! them (sector writes are atomic; old and new content of those sectors is the same). The file
//! content therefore does not depend on where commit boundaries fell (apart from the batch index
//! field) nor on which writer wrote it, and no space is lost to padding.
//!
//! # Why the batch index
//!
//! At most one commit batch is in flight at a time, and a batch that spans two segments is written
//! and synced segment by segment (linked). After a crash only the *last* batch can be partially on
//! disk, and its blocks may have reached the disk in any order, so a torn tail can be "bad record,
//! then valid records". Those valid records belong to the same batch as the first bad record
//! (`seq - batch_index <= expected_seq <= seq`): that batch was never acknowledged, so it is a torn
//! tail and is truncated. A valid record of a *later* batch after a bad record means the bad record
//! was acknowledged: that is corruption in the middle and is reported as an error. (A bit flip in
//! the very last acknowledged batch is indistinguishable from a torn write; that is inherent to
//! any write-ahead log.)

use std::fmt;

/// Alignment and granularity of every write.
pub const BLOCK: usize = 4096;
/// Size of the segment header.
pub const SEGMENT_HEADER_LEN: usize = 32;
/// Size of a record header.
pub const RECORD_HEADER_LEN: usize = 28;
/// Segment header magic.
pub const SEGMENT_MAGIC: [u8; 8] = *b"CSTLJRN\0";
/// Current format version.
pub const FORMAT_VERSION: u32 = 1;
/// Hard upper bound on a payload (the configured batch size usually limits it further).
pub const MAX_PAYLOAD: usize = 1 << 30;

/// A record decoded in place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordRef<'a> {
    pub seq: u64,
    pub ts: u64,
    pub batch_index: u32,
    pub payload: &'a [u8],
}

impl RecordRef<'_> {
    /// Encoded size of this record (header + payload).
    pub fn encoded_len(&self) -> usize {
        RECORD_HEADER_LEN + self.payload.len()
    }

    /// First sequence number of the commit batch this record was written in.
    pub fn batch_start(&self) -> u64 {
        self.seq - u64::from(self.batch_index)
    }
}

/// Why bytes could not be decoded as a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Invalid {
    /// Length field larger than [`MAX_PAYLOAD`].
    Length(u32),
    /// Stored and computed CRC differ.
    Crc { stored: u32, computed: u32 },
    /// Sequence number 0, or batch index larger than the sequence number allows.
    Header,
}

impl fmt::Display for Invalid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Invalid::Length(l) => write!(f, "implausible length {l}"),
            Invalid::Crc { stored, computed } => {
                write!(f, "CRC mismatch (stored {stored:#010x}, computed {computed:#010x})")
            }
            Invalid::Header => write!(f, "invalid header fields"),
        }
    }
}

/// Result of decoding at one position.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decoded<'a> {
    /// A record with a valid CRC (sequence continuity is the caller's check).
    Record(RecordRef<'a>),
    /// An all-zero header (or fewer than a header's bytes, all zero): end of data.
    End,
    /// Not enough bytes for the header or the payload the header announces.
    Incomplete,
    /// Bytes that are not a record.
    Invalid(Invalid),
}

fn crc_record(header_prefix: &[u8], payload: &[u8]) -> u32 {
    let c = crc32c_short(0, header_prefix);
    crc32c_short(c, payload)
}

/// CRC32C of `data` continuing from `crc` (same result as `crc32c::crc32c_append`), for the
/// short inputs of a record (a 24-byte header, payloads of tens of bytes). The crate's routine
/// is built for long buffers: its set-up cost was most of the ~350 instructions a record's two
/// CRC calls took on the sequencer path (callgrind). This is a plain SSE 4.2 loop, 8 bytes an
/// instruction; long inputs and CPUs without SSE 4.2 go to the crate.
#[inline]
fn crc32c_short(crc: u32, data: &[u8]) -> u32 {
    #[cfg(target_arch = "x86_64")]
    {
        if data.len() <= 256 && std::arch::is_x86_feature_detected!("sse4.2") {
            // SAFETY: the CPU supports SSE 4.2 (checked just above).
            return unsafe { crc32c_sse42(crc, data) };
        }
    }
    crc32c::crc32c_append(crc, data)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "sse4.2")]
unsafe fn crc32c_sse42(crc: u32, data: &[u8]) -> u32 {
    use std::arch::x86_64::{_mm_crc32_u64, _mm_crc32_u8};
    let mut c = u64::from(!crc);
    let mut words = data.chunks_exact(8);
    for w in &mut words {
        c = _mm_crc32_u64(c, u64::from_le_bytes(w.try_into().expect("8 bytes")));
    }
    let mut c = c as u32;
    for &b in words.remainder() {
        c = _mm_crc32_u8(c, b);
    }
    !c
}

#[inline]
fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}

#[inline]
fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

/// Encode one record into `out` (which must be exactly `RECORD_HEADER_LEN + payload.len()` long).
pub fn encode_record_into(out: &mut [u8], seq: u64, ts: u64, batch_index: u32, payload: &[u8]) {
    debug_assert_eq!(out.len(), RECORD_HEADER_LEN + payload.len());
    out[0..4].copy_from_slice(&(payload.len() as u32).to_le_bytes());
    out[4..8].copy_from_slice(&batch_index.to_le_bytes());
    out[8..16].copy_from_slice(&seq.to_le_bytes());
    out[16..24].copy_from_slice(&ts.to_le_bytes());
    let crc = crc_record(&out[0..24], payload);
    out[24..28].copy_from_slice(&crc.to_le_bytes());
    out[RECORD_HEADER_LEN..].copy_from_slice(payload);
}

/// Encode one record, appending to a vector.
pub fn encode_record(out: &mut Vec<u8>, seq: u64, ts: u64, batch_index: u32, payload: &[u8]) {
    let start = out.len();
    out.resize(start + RECORD_HEADER_LEN + payload.len(), 0);
    encode_record_into(&mut out[start..], seq, ts, batch_index, payload);
}

/// Decode the record at the start of `buf`.
pub fn decode_record(buf: &[u8]) -> Decoded<'_> {
    if buf.len() < RECORD_HEADER_LEN {
        return if buf.iter().all(|&b| b == 0) { Decoded::End } else { Decoded::Incomplete };
    }
    let h = &buf[..RECORD_HEADER_LEN];
    // A record's seq is never 0, so only a zero seq field needs the full all-zero test (a
    // byte loop over every header was a tenth of a replay's reading cost).
    if u64_at(h, 8) == 0 && h == [0u8; RECORD_HEADER_LEN] {
        return Decoded::End;
    }
    let len = u32_at(h, 0);
    if len as usize > MAX_PAYLOAD {
        return Decoded::Invalid(Invalid::Length(len));
    }
    let batch_index = u32_at(h, 4);
    let seq = u64_at(h, 8);
    let ts = u64_at(h, 16);
    let stored = u32_at(h, 24);
    if seq == 0 || u64::from(batch_index) >= seq {
        return Decoded::Invalid(Invalid::Header);
    }
    let total = RECORD_HEADER_LEN + len as usize;
    if buf.len() < total {
        return Decoded::Incomplete;
    }
    let payload = &buf[RECORD_HEADER_LEN..total];
    let computed = crc_record(&h[0..24], payload);
    if computed != stored {
        return Decoded::Invalid(Invalid::Crc { stored, computed });
    }
    Decoded::Record(RecordRef { seq, ts, batch_index, payload })
}

/// Encode a segment header.
pub fn encode_segment_header(first_seq: u64) -> [u8; SEGMENT_HEADER_LEN] {
    let mut h = [0u8; SEGMENT_HEADER_LEN];
    h[0..8].copy_from_slice(&SEGMENT_MAGIC);
    h[8..12].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    h[12..16].copy_from_slice(&(SEGMENT_HEADER_LEN as u32).to_le_bytes());
    h[16..24].copy_from_slice(&first_seq.to_le_bytes());
    let crc = crc32c::crc32c(&h[0..28]);
    h[28..32].copy_from_slice(&crc.to_le_bytes());
    h
}

/// What a segment header says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SegmentHeader {
    Valid {
        first_seq: u64,
    },
    /// All zero (never written).
    Zero,
    Invalid,
}

/// Decode a segment header from the first bytes of a segment.
pub fn decode_segment_header(buf: &[u8]) -> SegmentHeader {
    if buf.len() < SEGMENT_HEADER_LEN {
        return if buf.iter().all(|&b| b == 0) { SegmentHeader::Zero } else { SegmentHeader::Invalid };
    }
    let h = &buf[..SEGMENT_HEADER_LEN];
    if h.iter().all(|&b| b == 0) {
        return SegmentHeader::Zero;
    }
    if h[0..8] != SEGMENT_MAGIC
        || u32_at(h, 8) != FORMAT_VERSION
        || u32_at(h, 12) as usize != SEGMENT_HEADER_LEN
        || crc32c::crc32c(&h[0..28]) != u32_at(h, 28)
    {
        return SegmentHeader::Invalid;
    }
    SegmentHeader::Valid { first_seq: u64_at(h, 16) }
}

/// How the bytes after the last good record of a segment look.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TailClass {
    /// All zero: a clean end.
    Zeros,
    /// Garbage that can only be the unacknowledged last batch (no valid record after it, or only
    /// records of the batch the first missing record belongs to). `garbage_end` is the offset
    /// (relative to the slice) just past the last non-zero byte; `valid_records` counts the valid
    /// records found inside the garbage (they are discarded with it).
    Torn { garbage_end: usize, valid_records: usize },
    /// A valid record that cannot belong to the torn batch follows: middle corruption.
    /// `at` is its offset relative to the slice.
    Corrupt { at: usize, seq: u64 },
}

/// Classify `rest`, the bytes of a segment from the first position that did not decode as the
/// expected record, given the sequence number that was expected there.
/// Position of the last non-zero byte. A segment's tail after its last record is usually tens
/// of megabytes of preallocated zeros: compared 64 bytes at a time (a vectorised memcmp) this
/// is an order of magnitude cheaper than a byte loop, which was most of a restart's
/// non-replay time (callgrind).
pub fn last_nonzero(b: &[u8]) -> Option<usize> {
    const ZERO: [u8; 64] = [0; 64];
    let body = b.len() - b.len() % 64;
    if let Some(i) = b[body..].iter().rposition(|&x| x != 0) {
        return Some(body + i);
    }
    let k = b[..body].chunks_exact(64).rposition(|c| c != ZERO)?;
    b[k * 64..k * 64 + 64].iter().rposition(|&x| x != 0).map(|i| k * 64 + i)
}

pub fn classify_tail(rest: &[u8], expected_seq: u64) -> TailClass {
    let Some(last_nz) = last_nonzero(rest) else {
        return TailClass::Zeros;
    };
    let garbage_end = last_nz + 1;
    let mut valid = 0usize;
    let mut q = 0usize;
    while q < garbage_end && q + RECORD_HEADER_LEN <= rest.len() {
        // Cheap prefilter on the sequence field before paying for a CRC.
        let seq = u64_at(rest, q + 8);
        let bidx = u64::from(u32_at(rest, q + 4));
        let len = u32_at(rest, q) as usize;
        if seq != 0 && bidx < seq && len <= MAX_PAYLOAD && q + RECORD_HEADER_LEN + len <= rest.len() {
            if let Decoded::Record(r) = decode_record(&rest[q..]) {
                let same_batch = r.seq >= expected_seq && r.batch_start() <= expected_seq;
                if !same_batch {
                    return TailClass::Corrupt { at: q, seq: r.seq };
                }
                valid += 1;
                q += r.encoded_len();
                continue;
            }
        }
        q += 1;
    }
    TailClass::Torn { garbage_end, valid_records: valid }
}

/// Outcome of stepping a [`SegmentCursor`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step<'a> {
    Record(RecordRef<'a>),
    /// No more records; how the segment ends.
    End(SegmentEnd),
}

/// How a segment's record sequence ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SegmentEnd {
    /// Zeros (or end of file) right after the last record at `offset`.
    Clean { offset: usize },
    /// Torn tail starting at `offset`, non-zero bytes up to `garbage_end`.
    Torn { offset: usize, garbage_end: usize, valid_records: usize, reason: BadRecord },
    /// Bad bytes at `offset` followed by valid data at `valid_at` (seq `valid_seq`).
    Corrupt { offset: usize, reason: BadRecord, valid_at: usize, valid_seq: u64 },
}

/// What was wrong at the first bad position.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BadRecord {
    Invalid(Invalid),
    /// Record cut short by the end of the file.
    Truncated,
    /// Valid record, wrong sequence number.
    Sequence {
        expected: u64,
        found: u64,
    },
    /// Zero header followed by non-zero bytes.
    Gap,
    /// The segment header is not valid.
    SegmentHeader,
}

impl fmt::Display for BadRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BadRecord::Invalid(i) => write!(f, "{i}"),
            BadRecord::Truncated => write!(f, "record cut short by end of file"),
            BadRecord::Sequence { expected, found } => {
                write!(f, "sequence {found} where {expected} was expected")
            }
            BadRecord::Gap => write!(f, "zero header followed by non-zero data"),
            BadRecord::SegmentHeader => write!(f, "invalid segment header"),
        }
    }
}

/// Walks the records of one segment held in memory, checking CRCs and sequence continuity.
///
/// Sans-IO: the caller provides the whole segment's bytes.
pub struct SegmentCursor<'a> {
    data: &'a [u8],
    pos: usize,
    expected: u64,
    done: Option<SegmentEnd>,
}

impl<'a> SegmentCursor<'a> {
    /// Start at the first record of a segment whose header has been validated, expecting
    /// `first_seq` as the first record.
    pub fn new(data: &'a [u8], first_seq: u64) -> Self {
        SegmentCursor { data, pos: SEGMENT_HEADER_LEN.min(data.len()), expected: first_seq, done: None }
    }

    /// Continue a walk at `pos` (a record boundary returned by [`position`](Self::position))
    /// expecting `expected`.
    pub fn resume(data: &'a [u8], pos: usize, expected: u64) -> Self {
        SegmentCursor { data, pos: pos.min(data.len()), expected, done: None }
    }

    /// A cursor for a segment whose header is bad: it ends immediately, classified from offset 0.
    pub fn bad_header(data: &'a [u8], first_seq: u64) -> Self {
        let mut c = SegmentCursor { data, pos: 0, expected: first_seq, done: None };
        c.done = Some(c.classify(BadRecord::SegmentHeader));
        c
    }

    /// Offset of the next record to decode.
    pub fn position(&self) -> usize {
        self.pos
    }

    /// Sequence number expected next.
    pub fn expected_seq(&self) -> u64 {
        self.expected
    }

    fn classify(&self, reason: BadRecord) -> SegmentEnd {
        let rest = &self.data[self.pos..];
        match classify_tail(rest, self.expected) {
            TailClass::Zeros => SegmentEnd::Clean { offset: self.pos },
            TailClass::Torn { garbage_end, valid_records } => {
                SegmentEnd::Torn { offset: self.pos, garbage_end: self.pos + garbage_end, valid_records, reason }
            }
            TailClass::Corrupt { at, seq } => {
                SegmentEnd::Corrupt { offset: self.pos, reason, valid_at: self.pos + at, valid_seq: seq }
            }
        }
    }

    /// Decode the next record, or say how the segment ends (repeatable).
    pub fn step(&mut self) -> Step<'a> {
        if let Some(end) = self.done {
            return Step::End(end);
        }
        let data: &'a [u8] = self.data;
        let end = match decode_record(&data[self.pos..]) {
            Decoded::Record(r) if r.seq == self.expected => {
                self.pos += r.encoded_len();
                self.expected += 1;
                return Step::Record(r);
            }
            Decoded::Record(r) => self.classify(BadRecord::Sequence { expected: self.expected, found: r.seq }),
            // Clean if everything after is zero, otherwise a gap before more data.
            Decoded::End => self.classify(BadRecord::Gap),
            Decoded::Incomplete => self.classify(BadRecord::Truncated),
            Decoded::Invalid(i) => self.classify(BadRecord::Invalid(i)),
        };
        self.done = Some(end);
        Step::End(end)
    }
}

/// Fuzz/property check for the decoder: must never panic, and everything it accepts must be
/// self-consistent. Shared by the cargo-fuzz target `decode_records` and a proptest.
pub fn check_decode_records(data: &[u8]) {
    // 1. Raw decoding at every offset: bounds and re-encoding.
    for start in 0..data.len().min(64) {
        match decode_record(&data[start..]) {
            Decoded::Record(r) => {
                assert!(r.encoded_len() <= data.len() - start);
                assert!(r.seq >= 1 && u64::from(r.batch_index) < r.seq);
                let mut again = Vec::new();
                encode_record(&mut again, r.seq, r.ts, r.batch_index, r.payload);
                assert_eq!(&again[..], &data[start..start + r.encoded_len()]);
            }
            Decoded::End => {
                let n = data.len().saturating_sub(start).min(RECORD_HEADER_LEN);
                assert!(data[start..start + n].iter().all(|&b| b == 0));
            }
            Decoded::Incomplete | Decoded::Invalid(_) => {}
        }
    }
    // 2. Walking a segment: records are consecutive, offsets in bounds, classification coherent.
    let first = match decode_segment_header(data) {
        SegmentHeader::Valid { first_seq } => first_seq.max(1),
        _ => 1 + u64::from(data.first().copied().unwrap_or(0)),
    };
    let mut cur = SegmentCursor::new(data, first);
    let mut expect = first;
    let mut last_end = SEGMENT_HEADER_LEN.min(data.len());
    let mut guard = 0usize;
    loop {
        guard += 1;
        assert!(guard <= data.len() + 2, "cursor does not advance");
        match cur.step() {
            Step::Record(r) => {
                assert_eq!(r.seq, expect);
                expect += 1;
                last_end += r.encoded_len();
                assert_eq!(cur.position(), last_end);
                assert!(last_end <= data.len());
            }
            Step::End(end) => {
                match end {
                    SegmentEnd::Clean { offset } => {
                        assert_eq!(offset, last_end);
                        assert!(data[offset..].iter().all(|&b| b == 0));
                    }
                    SegmentEnd::Torn { offset, garbage_end, .. } => {
                        assert_eq!(offset, last_end);
                        assert!(garbage_end > offset && garbage_end <= data.len());
                        assert!(data[garbage_end..].iter().all(|&b| b == 0));
                    }
                    SegmentEnd::Corrupt { offset, valid_at, .. } => {
                        assert_eq!(offset, last_end);
                        assert!(valid_at >= offset && valid_at < data.len());
                        assert!(matches!(decode_record(&data[valid_at..]), Decoded::Record(_)));
                    }
                }
                // Repeatable.
                assert_eq!(cur.step(), Step::End(end));
                break;
            }
        }
    }
    // 3. Tail classification from an arbitrary expected sequence must stay in bounds.
    let exp = data.len() as u64 + 1;
    match classify_tail(data, exp) {
        TailClass::Zeros => assert!(data.iter().all(|&b| b == 0)),
        TailClass::Torn { garbage_end, .. } => assert!(garbage_end <= data.len()),
        TailClass::Corrupt { at, .. } => assert!(at < data.len()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn last_nonzero_equals_the_byte_loop() {
        for len in [0usize, 1, 63, 64, 65, 127, 128, 200, 4096, 4100] {
            let mut b = vec![0u8; len];
            assert_eq!(last_nonzero(&b), None);
            for at in (0..len).step_by(7).chain(len.checked_sub(1)) {
                b[at] = 1 + (at % 255) as u8;
                assert_eq!(last_nonzero(&b), b.iter().rposition(|&x| x != 0), "len {len} at {at}");
            }
        }
    }

    #[test]
    fn short_crc_equals_the_crate() {
        let data: Vec<u8> = (0..600u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
        for len in 0..data.len() {
            for start in [0, 1, 3] {
                let d = &data[start.min(len)..len];
                assert_eq!(crc32c_short(0, d), crc32c::crc32c(d), "len {len} start {start}");
                assert_eq!(crc32c_short(0xdead_beef, d), crc32c::crc32c_append(0xdead_beef, d));
            }
        }
    }

    #[test]
    fn record_round_trip_and_crc() {
        let mut v = Vec::new();
        encode_record(&mut v, 7, 99, 2, b"hello");
        assert_eq!(v.len(), RECORD_HEADER_LEN + 5);
        match decode_record(&v) {
            Decoded::Record(r) => {
                assert_eq!((r.seq, r.ts, r.batch_index, r.payload), (7, 99, 2, &b"hello"[..]));
                assert_eq!(r.batch_start(), 5);
            }
            other => panic!("{other:?}"),
        }
        for i in 0..v.len() {
            let mut w = v.clone();
            w[i] ^= 0x40;
            assert!(!matches!(decode_record(&w), Decoded::Record(_)), "flip at {i} accepted");
        }
        assert_eq!(decode_record(&v[..10]), Decoded::Incomplete);
        assert_eq!(decode_record(&[0u8; 40]), Decoded::End);
    }

    #[test]
    fn header_round_trip() {
        let h = encode_segment_header(42);
        assert_eq!(decode_segment_header(&h), SegmentHeader::Valid { first_seq: 42 });
        let mut bad = h;
        bad[17] ^= 1;
        assert_eq!(decode_segment_header(&bad), SegmentHeader::Invalid);
        assert_eq!(decode_segment_header(&[0; 32]), SegmentHeader::Zero);
    }

    fn segment(first: u64, batches: &[usize], size: usize) -> Vec<u8> {
        let mut v = encode_segment_header(first).to_vec();
        let mut seq = first;
        for &n in batches {
            for i in 0..n {
                encode_record(&mut v, seq, seq * 10, i as u32, &[seq as u8; 13]);
                seq += 1;
            }
        }
        v.resize(size, 0);
        v
    }

    fn walk(data: &[u8], first: u64) -> (Vec<u64>, SegmentEnd) {
        let mut c = SegmentCursor::new(data, first);
        let mut seqs = Vec::new();
        loop {
            match c.step() {
                Step::Record(r) => seqs.push(r.seq),
                Step::End(e) => return (seqs, e),
            }
        }
    }

    #[test]
    fn cursor_classifies() {
        let rec = RECORD_HEADER_LEN + 13;
        let clean = segment(5, &[3, 4], 4096);
        let (s, e) = walk(&clean, 5);
        assert_eq!(s, (5..12).collect::<Vec<_>>());
        assert_eq!(e, SegmentEnd::Clean { offset: 32 + 7 * rec });

        // Flip inside the first record of the last batch: later records are of that batch -> torn.
        let mut torn = clean.clone();
        torn[32 + 3 * rec + 30] ^= 1;
        let (s, e) = walk(&torn, 5);
        assert_eq!(s, vec![5, 6, 7]);
        assert!(matches!(e, SegmentEnd::Torn { offset, valid_records: 3, .. } if offset == 32 + 3 * rec));

        // Flip inside the first batch: a later batch follows -> corrupt.
        let mut mid = clean.clone();
        mid[32 + rec + 30] ^= 1;
        let (s, e) = walk(&mid, 5);
        assert_eq!(s, vec![5]);
        assert!(matches!(e, SegmentEnd::Corrupt { valid_seq: 8, .. }), "{e:?}");

        // Zeroed record in the middle of the last batch followed by its later records: torn.
        let mut z = clean.clone();
        z[32 + 4 * rec..32 + 5 * rec].fill(0);
        let (_, e) = walk(&z, 5);
        assert!(matches!(e, SegmentEnd::Torn { reason: BadRecord::Gap, .. }), "{e:?}");
    }

    #[test]
    fn check_fn_on_samples() {
        check_decode_records(&[]);
        check_decode_records(&segment(1, &[2, 2], 300));
        check_decode_records(&[1, 2, 3]);
    }
}
