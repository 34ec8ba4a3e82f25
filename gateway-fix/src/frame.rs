//! Framing and zero-copy parsing of FIX tag=value messages.
//!
//! Why hand-written rather than a parser-combinator crate (nom) or a generic
//! FIX library: the wire format is trivially regular, and the hot path is
//! "find SOH, find '=', fold digits". A direct byte loop over the buffer with
//! memchr for the SOH scan keeps every field a `(tag, &[u8])` view into the
//! receive buffer, allocates nothing per message (the span vector is reused),
//! lets us bound work and memory exactly (max message size, max fields) and
//! lets us classify every failure precisely as *garbled* (Volume 2: ignore,
//! do not increment MsgSeqNum) or *invalid* (reject), which a generic parser
//! would blur.
//!
//! Two steps:
//! 1. [`next_frame`] finds one complete message at the start of a stream
//!    buffer and verifies the envelope: `8=` first, `9=` second with a
//!    BodyLength that lands exactly on `10=`, `35=` third, a 3-digit CheckSum
//!    that matches. Anything else is garbled and the caller skips the bytes
//!    it is told to skip (resynchronising on the next `SOH 8=FIX`).
//! 2. [`Parser::parse`] splits a verified frame into field spans. Length-
//!    prefixed data fields (RawData, SecureData, ...) are read by length, so
//!    they may contain SOH.

use crate::field::{parse_u64, Field, SOH};
use thiserror::Error;

/// Default bound on one message (envelope included). Larger frames are
/// garbled: we never buffer unbounded input for a peer.
pub const DEFAULT_MAX_MESSAGE_SIZE: usize = 64 * 1024;
/// Default bound on the number of fields in one message.
pub const DEFAULT_MAX_FIELDS: usize = 2048;
/// Longest BeginString we accept ("FIXT.1.1" is 8).
const MAX_BEGIN_STRING: usize = 16;

/// Why a frame is garbled. Per Volume 2 a garbled message is ignored: not
/// answered, MsgSeqNum not incremented; the peer will fill the gap later.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Error)]
pub enum Garbled {
    #[error("BeginString (8) is not the first field")]
    BeginStringNotFirst,
    #[error("BodyLength (9) is not the second field or not a number")]
    BadBodyLength,
    #[error("message larger than the configured maximum")]
    TooLarge,
    #[error("MsgType (35) is not the third field")]
    MsgTypeNotThird,
    #[error("BodyLength does not end where CheckSum (10) starts")]
    BodyLengthMismatch,
    #[error("CheckSum (10) is not 3 digits or is not the last field")]
    BadCheckSumField,
    #[error("CheckSum mismatch")]
    CheckSumMismatch,
}

/// Result of looking for a frame at the start of a stream buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FrameStatus {
    /// A complete, envelope-verified message occupies `buf[..len]`.
    Complete { len: usize },
    /// Not enough bytes yet; read more (the buffer is never larger than the
    /// max message size plus one read for a well-behaved peer).
    Incomplete,
    /// The bytes at the start are garbled: drop `skip` bytes (always >= 1)
    /// and look again.
    Garbled { skip: usize, reason: Garbled },
}

/// Sum of bytes mod 256, the FIX CheckSum.
#[inline]
pub fn checksum(bytes: &[u8]) -> u8 {
    // Summing into u32 lanes lets the compiler vectorise; u32 cannot
    // overflow for any frame below 16 MiB, far above the max message size.
    let mut s: u32 = 0;
    for &b in bytes {
        s += b as u32;
    }
    (s & 0xff) as u8
}

/// Where to resume after garbage at the start of `buf`: the next occurrence
/// of `SOH 8=FIX` (the start of the next message follows the previous
/// message's trailing SOH). If there is none, keep a short tail that might be
/// the beginning of one.
fn resync(buf: &[u8]) -> usize {
    const PAT: &[u8] = b"\x018=FIX";
    if buf.len() > 1 {
        if let Some(i) = memchr::memmem::find(&buf[1..], PAT) {
            return i + 2; // skip up to and including the SOH
        }
    }
    buf.len().saturating_sub(PAT.len() - 1).max(1)
}

/// Find and verify one frame at the start of `buf`.
pub fn next_frame(buf: &[u8], max_message_size: usize) -> FrameStatus {
    let garbled = |reason| FrameStatus::Garbled { skip: resync(buf), reason };
    // "8=" BeginString
    if buf.len() < 2 {
        return if buf.is_empty() || buf[0] == b'8' {
            FrameStatus::Incomplete
        } else {
            garbled(Garbled::BeginStringNotFirst)
        };
    }
    if &buf[..2] != b"8=" {
        return garbled(Garbled::BeginStringNotFirst);
    }
    let search_end = buf.len().min(2 + MAX_BEGIN_STRING + 1);
    let Some(bs_len) = memchr::memchr(SOH, &buf[2..search_end]) else {
        return if buf.len() < 2 + MAX_BEGIN_STRING + 1 {
            FrameStatus::Incomplete
        } else {
            garbled(Garbled::BeginStringNotFirst)
        };
    };
    if bs_len == 0 {
        return garbled(Garbled::BeginStringNotFirst);
    }
    // "9=" BodyLength SOH
    let p = 2 + bs_len + 1;
    let need = p + 2;
    if buf.len() < need {
        return FrameStatus::Incomplete;
    }
    if &buf[p..p + 2] != b"9=" {
        return garbled(Garbled::BadBodyLength);
    }
    let digits_start = p + 2;
    let mut q = digits_start;
    let mut body_len: usize = 0;
    loop {
        if q >= buf.len() {
            return FrameStatus::Incomplete;
        }
        let b = buf[q];
        if b == SOH {
            break;
        }
        if !b.is_ascii_digit() || q - digits_start >= 7 {
            return garbled(Garbled::BadBodyLength);
        }
        body_len = body_len * 10 + (b - b'0') as usize;
        q += 1;
    }
    if q == digits_start {
        return garbled(Garbled::BadBodyLength);
    }
    let body_start = q + 1;
    let trailer = body_start + body_len;
    let total = trailer + 7; // "10=ddd" SOH
    if total > max_message_size {
        return garbled(Garbled::TooLarge);
    }
    // MsgType must be third; check as soon as the bytes are there so a
    // garbled stream is dropped without waiting for BodyLength bytes.
    let avail = buf.len().min(body_start + 3);
    if buf[body_start..avail] != b"35="[..avail - body_start] {
        return garbled(Garbled::MsgTypeNotThird);
    }
    if buf.len() < total {
        return FrameStatus::Incomplete;
    }
    if body_len < 5 {
        return garbled(Garbled::MsgTypeNotThird);
    }
    if buf[trailer - 1] != SOH || &buf[trailer..trailer + 3] != b"10=" {
        return garbled(Garbled::BodyLengthMismatch);
    }
    let cs = &buf[trailer + 3..trailer + 6];
    if !cs.iter().all(u8::is_ascii_digit) || buf[trailer + 6] != SOH {
        return garbled(Garbled::BadCheckSumField);
    }
    let want = (cs[0] - b'0') as u32 * 100 + (cs[1] - b'0') as u32 * 10 + (cs[2] - b'0') as u32;
    if want != checksum(&buf[..trailer]) as u32 {
        return garbled(Garbled::CheckSumMismatch);
    }
    FrameStatus::Complete { len: total }
}

/// Location of one field inside the frame; offsets are u32 because frames
/// are bounded far below 4 GiB.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FieldSpan {
    /// Tag number; 0 when the tag text was not a valid positive number (the
    /// raw text is kept in [`Message::bad_tag`] for the Reject).
    pub tag: u32,
    pub start: u32,
    pub end: u32,
}

/// Length-prefixed data fields: for a given length tag, the data tag whose
/// value is read by length (and may contain SOH). Supplied by the dictionary;
/// [`DataFields::NONE`] treats every field as plain.
pub trait DataFields {
    fn data_tag_for(&self, length_tag: u32) -> Option<u32>;
}

/// No data fields.
pub struct NoDataFields;
impl DataFields for NoDataFields {
    fn data_tag_for(&self, _: u32) -> Option<u32> {
        None
    }
}
impl NoDataFields {
    pub const NONE: NoDataFields = NoDataFields;
}

/// A frame that passed the envelope check but whose fields cannot be
/// split. Treated as garbled by the session (the checksum matched, so this
/// is a broken sender, not line noise; either way there is nothing to
/// answer reliably).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Error)]
pub enum ParseError {
    #[error("field without '=' at byte {0}")]
    MissingEquals(usize),
    #[error("data field length runs past the message at byte {0}")]
    DataLength(usize),
    #[error("more than {0} fields")]
    TooManyFields(usize),
}

/// Reusable field splitter. Holds the span vector so parsing allocates
/// nothing after warm-up.
#[derive(Debug)]
pub struct Parser {
    spans: Vec<FieldSpan>,
    max_fields: usize,
}

impl Default for Parser {
    /// Does not allocate (so `std::mem::take` on a parser is free).
    fn default() -> Self {
        Parser { spans: Vec::new(), max_fields: DEFAULT_MAX_FIELDS }
    }
}

impl Parser {
    pub fn new(max_fields: usize) -> Self {
        Parser { spans: Vec::with_capacity(64), max_fields }
    }

    /// Split a verified frame (as returned by [`next_frame`]) into fields.
    pub fn parse<'a>(&'a mut self, frame: &'a [u8], data: &dyn DataFields) -> Result<Message<'a>, ParseError> {
        self.spans.clear();
        let mut bad_tag = None;
        let mut pos = 0usize;
        let mut pending_data: Option<(u32, usize)> = None;
        while pos < frame.len() {
            if self.spans.len() >= self.max_fields {
                return Err(ParseError::TooManyFields(self.max_fields));
            }
            // Tag: digits up to '='. Fold digits while scanning; anything
            // else makes the tag invalid (kept for RefTagID) unless there is
            // no '=' at all (garbled).
            let tag_start = pos;
            // Digits are folded with wrapping arithmetic (a tag of more than
            // 9 digits is invalid anyway); anything else marks it invalid.
            let mut tag: u32 = 0;
            let mut non_digit = false;
            loop {
                let Some(&b) = frame.get(pos) else {
                    return Err(ParseError::MissingEquals(tag_start));
                };
                let d = b.wrapping_sub(b'0');
                if d <= 9 {
                    tag = tag.wrapping_mul(10).wrapping_add(d as u32);
                } else if b == b'=' {
                    break;
                } else if b == SOH {
                    return Err(ParseError::MissingEquals(tag_start));
                } else {
                    non_digit = true;
                }
                pos += 1;
            }
            let digits = pos - tag_start;
            let valid = !non_digit && (1..=9).contains(&digits) && frame[tag_start] != b'0';
            let tag = if valid { tag } else { 0 };
            if tag == 0 && bad_tag.is_none() {
                bad_tag = Some((tag_start as u32, pos as u32));
            }
            let vstart = pos + 1;
            let vend = match pending_data.take() {
                Some((dtag, len)) if dtag == tag && tag != 0 => {
                    let end = vstart + len;
                    if end >= frame.len() || frame[end] != SOH {
                        return Err(ParseError::DataLength(vstart));
                    }
                    end
                }
                _ => match find_soh(&frame[vstart.min(frame.len())..]) {
                    Some(i) => vstart + i,
                    None => return Err(ParseError::MissingEquals(tag_start)),
                },
            };
            if tag != 0 {
                if let Some(dtag) = data.data_tag_for(tag) {
                    if let Some(len) = parse_u64(&frame[vstart..vend]) {
                        if len as usize <= frame.len() {
                            pending_data = Some((dtag, len as usize));
                        }
                    }
                }
            }
            self.spans.push(FieldSpan { tag, start: vstart as u32, end: vend as u32 });
            pos = vend + 1;
        }
        Ok(Message { buf: frame, fields: &self.spans, bad_tag })
    }
}

/// Position of the first SOH in `v`. Field values are short (a few to a few
/// dozen bytes), where a call into memchr's vector code costs more than
/// the search: look at 8 bytes at a time in a word (the classic "has a zero
/// byte" test on `word ^ 0x0101..`), and hand long values to memchr.
#[inline]
fn find_soh(v: &[u8]) -> Option<usize> {
    const LO: u64 = 0x0101_0101_0101_0101;
    const HI: u64 = 0x8080_8080_8080_8080;
    let mut i = 0;
    while i + 8 <= v.len() && i < 64 {
        let w = u64::from_le_bytes(v[i..i + 8].try_into().expect("8 bytes")) ^ (LO * SOH as u64);
        let zero = w.wrapping_sub(LO) & !w & HI;
        if zero != 0 {
            // The lowest flagged byte is the first SOH (borrows only run
            // upwards from a real zero byte).
            return Some(i + (zero.trailing_zeros() / 8) as usize);
        }
        i += 8;
    }
    if i < 64 {
        return v[i..].iter().position(|&b| b == SOH).map(|p| i + p);
    }
    memchr::memchr(SOH, &v[i..]).map(|p| i + p)
}

/// A parsed message: a view over the frame bytes and the field spans.
#[derive(Clone, Copy, Debug)]
pub struct Message<'a> {
    buf: &'a [u8],
    fields: &'a [FieldSpan],
    bad_tag: Option<(u32, u32)>,
}

impl<'a> Message<'a> {
    /// The field spans (for handing a parsed message on without parsing it again).
    pub(crate) fn spans(&self) -> &'a [FieldSpan] {
        self.fields
    }
    /// A view over `buf` with spans taken from an earlier parse of the same
    /// bytes (see [`crate::session::AppMessage::message`]).
    pub(crate) fn from_spans(buf: &'a [u8], fields: &'a [FieldSpan]) -> Message<'a> {
        debug_assert!(fields.iter().all(|f| f.start <= f.end && (f.end as usize) <= buf.len()));
        Message { buf, fields, bad_tag: None }
    }
    /// The whole frame, envelope included.
    pub fn as_bytes(&self) -> &'a [u8] {
        self.buf
    }
    pub fn len(&self) -> usize {
        self.fields.len()
    }
    pub fn is_empty(&self) -> bool {
        self.fields.is_empty()
    }
    #[inline]
    pub fn field(&self, i: usize) -> Field<'a> {
        let s = self.fields[i];
        Field { tag: s.tag, value: &self.buf[s.start as usize..s.end as usize] }
    }
    pub fn fields(&self) -> impl Iterator<Item = Field<'a>> + '_ {
        (0..self.fields.len()).map(|i| self.field(i))
    }
    /// First occurrence of `tag` (linear; messages are short and header
    /// fields come first).
    pub fn get(&self, tag: u32) -> Option<&'a [u8]> {
        self.fields.iter().find(|s| s.tag == tag).map(|s| &self.buf[s.start as usize..s.end as usize])
    }
    pub fn begin_string(&self) -> &'a [u8] {
        self.field(0).value
    }
    pub fn msg_type(&self) -> &'a [u8] {
        self.field(2).value
    }
    /// Raw text of the first tag that was not a valid positive number.
    pub fn bad_tag(&self) -> Option<&'a [u8]> {
        self.bad_tag.map(|(s, e)| &self.buf[s as usize..e as usize])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn fix(s: &str) -> Vec<u8> {
        let body_and_more = s.replace('|', "\x01");
        let (bs, rest) = body_and_more.split_once('\x01').unwrap();
        let mut v = format!("{bs}\x019={}\x01{rest}", rest.len()).into_bytes();
        let cs = checksum(&v);
        v.extend_from_slice(format!("10={cs:03}\x01").as_bytes());
        v
    }

    #[test]
    fn find_soh_agrees_with_a_byte_scan() {
        // Every length up to past the memchr hand-off, SOH at every place
        // (and none), with neighbours that stress the word trick (0x00,
        // 0x02, 0x81 next to the SOH).
        for len in 0..100usize {
            for fill in [b'A', 0x00, 0x02, 0x81, 0xff] {
                let mut v = vec![fill; len];
                assert_eq!(find_soh(&v), v.iter().position(|&b| b == SOH), "len {len} none");
                for at in 0..len {
                    v.iter_mut().for_each(|b| *b = fill);
                    v[at] = SOH;
                    if at + 1 < len {
                        v[at + 1] = SOH;
                    }
                    assert_eq!(find_soh(&v), Some(at), "len {len} at {at} fill {fill}");
                }
            }
        }
    }

    proptest::proptest! {
        #[test]
        fn find_soh_agrees_on_random_bytes(v in proptest::collection::vec(0u8..4, 0..200)) {
            proptest::prop_assert_eq!(find_soh(&v), v.iter().position(|&b| b == SOH));
        }
    }

    #[test]
    fn frames_and_parses() {
        let m = fix("8=FIX.4.4|35=0|34=2|49=A|56=B|52=20240101-00:00:00|");
        assert_eq!(next_frame(&m, 4096), FrameStatus::Complete { len: m.len() });
        let mut p = Parser::default();
        let msg = p.parse(&m, &NoDataFields).unwrap();
        assert_eq!(msg.msg_type(), b"0");
        assert_eq!(msg.get(49), Some(&b"A"[..]));
        assert_eq!(msg.field(msg.len() - 1).tag, 10);
        for cut in 0..m.len() {
            assert_eq!(next_frame(&m[..cut], 4096), FrameStatus::Incomplete, "{cut}");
        }
    }

    #[test]
    fn garbled_cases() {
        let good = fix("8=FIX.4.4|35=0|34=2|49=A|56=B|52=20240101-00:00:00|");
        let mut bad_cs = good.clone();
        let n = bad_cs.len();
        bad_cs[n - 2] = if bad_cs[n - 2] == b'9' { b'0' } else { b'9' };
        assert!(matches!(next_frame(&bad_cs, 4096), FrameStatus::Garbled { reason: Garbled::CheckSumMismatch, .. }));
        let t = b"35=0\x018=FIX.4.4\x019=5\x0134=2\x0110=000\x01";
        assert!(matches!(next_frame(t, 4096), FrameStatus::Garbled { reason: Garbled::BeginStringNotFirst, skip: 5 }));
        let t = b"8=FIX.4.4\x019=10\x0134=3\x0135=0\x0110=000\x01";
        assert!(matches!(next_frame(t, 4096), FrameStatus::Garbled { reason: Garbled::MsgTypeNotThird, .. }));
        assert!(matches!(next_frame(&good, 10), FrameStatus::Garbled { reason: Garbled::TooLarge, .. }));
    }

    struct Raw;
    impl DataFields for Raw {
        fn data_tag_for(&self, t: u32) -> Option<u32> {
            (t == 95).then_some(96)
        }
    }

    #[test]
    fn data_field_may_contain_soh() {
        let m = fix("8=FIX.4.4|35=0|95=3|96=a|b|58=x|");
        let mut p = Parser::default();
        let msg = p.parse(&m, &Raw).unwrap();
        assert_eq!(msg.get(96), Some(&b"a\x01b"[..]));
        assert_eq!(msg.get(58), Some(&b"x"[..]));
    }

    #[test]
    fn bad_tags_are_kept() {
        let m = fix("8=FIX.4.4|35=0|-1=HI|0=x|");
        let mut p = Parser::default();
        let msg = p.parse(&m, &NoDataFields).unwrap();
        assert_eq!(msg.bad_tag(), Some(&b"-1"[..]));
    }
}
