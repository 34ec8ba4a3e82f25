//! Encoder writing FIX messages into one reusable buffer.
//!
//! Why hand-written: BodyLength precedes the body it measures, so a naive
//! encoder writes the body into a temporary and copies it. Here the body is
//! written after a fixed gap at the start of the buffer; `finish` writes
//! `8=..|9=NNN|` right-aligned into the gap, appends `10=ddd|` and returns the
//! contiguous slice. No temporary, no allocation once the buffer has grown to
//! the largest message sent.

use crate::field::{write_i64, write_u64, Timestamp, SOH};

/// Space kept for `8=<BeginString>|9=<up to 7 digits>|`.
const GAP: usize = 32;

#[derive(Debug, Clone)]
pub struct Encoder {
    buf: Vec<u8>,
    begin_string: Box<[u8]>,
    start: usize,
}

impl Encoder {
    /// `begin_string` such as "FIX.4.4" (at most 16 bytes).
    pub fn new(begin_string: &str) -> Self {
        assert!(!begin_string.is_empty() && begin_string.len() <= 16, "BeginString must be 1..=16 bytes");
        Encoder { buf: Vec::with_capacity(512), begin_string: begin_string.as_bytes().into(), start: 0 }
    }

    pub fn begin_string(&self) -> &[u8] {
        &self.begin_string
    }

    /// Start a new message of `msg_type`; discards the previous one.
    pub fn start(&mut self, msg_type: &[u8]) -> &mut Self {
        self.buf.clear();
        self.buf.resize(GAP, 0);
        self.start = 0;
        self.str(crate::field::tag::MSG_TYPE, msg_type)
    }

    #[inline]
    fn tag(&mut self, tag: u32) {
        write_u64(&mut self.buf, tag as u64);
        self.buf.push(b'=');
    }

    /// A field with a raw value. The value must not contain SOH unless the
    /// field is a length-prefixed data field (the caller writes the length
    /// field first); values taken from parsed fields never do.
    #[inline]
    pub fn str(&mut self, tag: u32, value: &[u8]) -> &mut Self {
        debug_assert!(value.is_empty() || tag != 0);
        self.tag(tag);
        self.buf.extend_from_slice(value);
        self.buf.push(SOH);
        self
    }

    /// Append pre-encoded `tag=value<SOH>` fields (bodies built by the
    /// order layer off the session task).
    #[inline]
    pub fn raw(&mut self, fields: &[u8]) -> &mut Self {
        self.buf.extend_from_slice(fields);
        self
    }

    #[inline]
    pub fn u64(&mut self, tag: u32, v: u64) -> &mut Self {
        self.tag(tag);
        write_u64(&mut self.buf, v);
        self.buf.push(SOH);
        self
    }

    #[inline]
    pub fn i64(&mut self, tag: u32, v: i64) -> &mut Self {
        self.tag(tag);
        write_i64(&mut self.buf, v);
        self.buf.push(SOH);
        self
    }

    #[inline]
    pub fn char(&mut self, tag: u32, c: u8) -> &mut Self {
        self.str(tag, &[c])
    }

    #[inline]
    pub fn bool(&mut self, tag: u32, b: bool) -> &mut Self {
        self.char(tag, if b { b'Y' } else { b'N' })
    }

    /// UTCTimestamp with millisecond precision.
    #[inline]
    pub fn timestamp(&mut self, tag: u32, t: Timestamp) -> &mut Self {
        self.tag(tag);
        t.write_millis(&mut self.buf);
        self.buf.push(SOH);
        self
    }

    /// A decimal given as mantissa and number of decimal places
    /// (`decimal(44, 12345, 2)` writes `44=123.45`). Prices in Castle are i64
    /// mantissas with a per-instrument exponent, so this avoids floats.
    pub fn decimal(&mut self, tag: u32, mantissa: i64, scale: u8) -> &mut Self {
        self.tag(tag);
        if mantissa < 0 {
            self.buf.push(b'-');
        }
        let m = mantissa.unsigned_abs();
        if scale == 0 {
            write_u64(&mut self.buf, m);
        } else {
            let p = 10u64.pow(scale.min(19) as u32);
            write_u64(&mut self.buf, m / p);
            self.buf.push(b'.');
            let frac = m % p;
            let mut tmp = [b'0'; 19];
            let mut f = frac;
            for i in (0..scale as usize).rev() {
                tmp[i] = b'0' + (f % 10) as u8;
                f /= 10;
            }
            self.buf.extend_from_slice(&tmp[..scale as usize]);
        }
        self.buf.push(SOH);
        self
    }

    /// Finish the message: write BeginString/BodyLength in front, CheckSum
    /// at the end, and return the complete frame.
    pub fn finish(&mut self) -> &[u8] {
        let body_len = self.buf.len() - GAP;
        let mut prefix = [0u8; GAP];
        let mut n = 0;
        prefix[..2].copy_from_slice(b"8=");
        n += 2;
        prefix[n..n + self.begin_string.len()].copy_from_slice(&self.begin_string);
        n += self.begin_string.len();
        prefix[n..n + 3].copy_from_slice(b"\x019=");
        n += 3;
        let mut digits = [0u8; 10];
        let mut d = digits.len();
        let mut v = body_len;
        loop {
            d -= 1;
            digits[d] = b'0' + (v % 10) as u8;
            v /= 10;
            if v == 0 {
                break;
            }
        }
        let dl = digits.len() - d;
        prefix[n..n + dl].copy_from_slice(&digits[d..]);
        n += dl;
        prefix[n] = SOH;
        n += 1;
        self.start = GAP - n;
        self.buf[self.start..GAP].copy_from_slice(&prefix[..n]);
        let cs = crate::frame::checksum(&self.buf[self.start..]);
        self.buf.extend_from_slice(&[b'1', b'0', b'=', b'0' + cs / 100, b'0' + cs / 10 % 10, b'0' + cs % 10, SOH]);
        &self.buf[self.start..]
    }

    /// The last finished message.
    pub fn message(&self) -> &[u8] {
        &self.buf[self.start..]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::{next_frame, FrameStatus};

    #[test]
    fn encodes_valid_frame() {
        let mut e = Encoder::new("FIX.4.4");
        e.start(b"D").str(49, b"A").u64(34, 12).decimal(44, -12345, 2).decimal(38, 5, 3);
        let m = e.finish().to_vec();
        let s = String::from_utf8(m.clone()).unwrap().replace('\x01', "|");
        assert!(s.starts_with("8=FIX.4.4|9=36|35=D|49=A|34=12|44=-123.45|38=0.005|10="));
        assert_eq!(next_frame(&m, 1024), FrameStatus::Complete { len: m.len() });
    }
}
