//! Field-level vocabulary: tag numbers the session layer needs, the zero-copy
//! [`Field`] view, value parsers for the FIX data types, and [`Timestamp`]
//! (UTCTimestamp) parsing/formatting.
//!
//! Why no chrono/time crate: the session layer needs exactly one timestamp
//! format (`YYYYMMDD-HH:MM:SS[.sss...]`) in both directions, on the hot path,
//! without allocation. The civil-date conversion is ~20 lines.

/// Field separator (SOH).
pub const SOH: u8 = 0x01;

/// Tag numbers used by the session layer and the encoder. The full set of
/// tags lives in the data dictionary; these are the ones code refers to.
pub mod tag {
    pub const ACCOUNT: u32 = 1;
    pub const BEGIN_SEQ_NO: u32 = 7;
    pub const BEGIN_STRING: u32 = 8;
    pub const BODY_LENGTH: u32 = 9;
    pub const CHECK_SUM: u32 = 10;
    pub const CL_ORD_ID: u32 = 11;
    pub const END_SEQ_NO: u32 = 16;
    pub const MSG_SEQ_NUM: u32 = 34;
    pub const MSG_TYPE: u32 = 35;
    pub const NEW_SEQ_NO: u32 = 36;
    pub const POSS_DUP_FLAG: u32 = 43;
    pub const REF_SEQ_NUM: u32 = 45;
    pub const SENDER_COMP_ID: u32 = 49;
    pub const SENDER_SUB_ID: u32 = 50;
    pub const SENDING_TIME: u32 = 52;
    pub const TARGET_COMP_ID: u32 = 56;
    pub const TARGET_SUB_ID: u32 = 57;
    pub const TEXT: u32 = 58;
    pub const SIGNATURE: u32 = 89;
    pub const SECURE_DATA_LEN: u32 = 90;
    pub const SECURE_DATA: u32 = 91;
    pub const SIGNATURE_LENGTH: u32 = 93;
    pub const POSS_RESEND: u32 = 97;
    pub const ENCRYPT_METHOD: u32 = 98;
    pub const HEART_BT_INT: u32 = 108;
    pub const TEST_REQ_ID: u32 = 112;
    pub const ORIG_SENDING_TIME: u32 = 122;
    pub const GAP_FILL_FLAG: u32 = 123;
    pub const RESET_SEQ_NUM_FLAG: u32 = 141;
    pub const REF_TAG_ID: u32 = 371;
    pub const REF_MSG_TYPE: u32 = 372;
    pub const SESSION_REJECT_REASON: u32 = 373;
    pub const BUSINESS_REJECT_REF_ID: u32 = 379;
    pub const BUSINESS_REJECT_REASON: u32 = 380;
    pub const USERNAME: u32 = 553;
    pub const PASSWORD: u32 = 554;
    pub const NEXT_EXPECTED_MSG_SEQ_NUM: u32 = 789;
}

/// MsgType values of the session (administrative) messages.
pub mod msg_type {
    pub const HEARTBEAT: &[u8] = b"0";
    pub const TEST_REQUEST: &[u8] = b"1";
    pub const RESEND_REQUEST: &[u8] = b"2";
    pub const REJECT: &[u8] = b"3";
    pub const SEQUENCE_RESET: &[u8] = b"4";
    pub const LOGOUT: &[u8] = b"5";
    pub const LOGON: &[u8] = b"A";
    pub const BUSINESS_MESSAGE_REJECT: &[u8] = b"j";

    /// Session-level message types. On a ResendRequest these are never
    /// resent; they are replaced by SequenceReset-GapFill (Volume 2, "Resend
    /// Request"), which is also what QuickFIX and most engines do for Reject.
    pub fn is_admin(t: &[u8]) -> bool {
        matches!(t, b"0" | b"1" | b"2" | b"3" | b"4" | b"5" | b"A")
    }
}

/// One field of a parsed message: tag plus a slice of the receive buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Field<'a> {
    pub tag: u32,
    pub value: &'a [u8],
}

/// Parse an unsigned decimal integer (no sign, no leading '+', at most 18
/// digits so it cannot overflow). Used for SEQNUM, LENGTH, NUMINGROUP.
#[inline]
pub fn parse_u64(v: &[u8]) -> Option<u64> {
    if v.is_empty() || v.len() > 18 {
        return None;
    }
    let mut n: u64 = 0;
    for &b in v {
        let d = b.wrapping_sub(b'0');
        if d > 9 {
            return None;
        }
        n = n * 10 + d as u64;
    }
    Some(n)
}

/// Parse a signed decimal integer (INT).
#[inline]
pub fn parse_i64(v: &[u8]) -> Option<i64> {
    match v.split_first() {
        Some((b'-', rest)) => parse_u64(rest).map(|n| -(n as i64)),
        _ => parse_u64(v).map(|n| n as i64),
    }
}

/// FLOAT-family syntax check (Qty, Price, Amt, ...): optional '-', digits
/// with at most one '.', at least one digit. FIX forbids exponents.
pub fn is_float(v: &[u8]) -> bool {
    let v = match v.split_first() {
        Some((b'-', rest)) => rest,
        _ => v,
    };
    let mut digits = 0usize;
    let mut dots = 0usize;
    for &b in v {
        match b {
            b'0'..=b'9' => digits += 1,
            b'.' => dots += 1,
            _ => return false,
        }
    }
    digits > 0 && dots <= 1
}

/// INT syntax check: optional '-', then digits.
pub fn is_int(v: &[u8]) -> bool {
    let v = match v.split_first() {
        Some((b'-', rest)) => rest,
        _ => v,
    };
    !v.is_empty() && v.iter().all(u8::is_ascii_digit)
}

fn digits<const N: usize>(v: &[u8]) -> Option<u32> {
    if v.len() < N {
        return None;
    }
    let mut n = 0u32;
    for &b in &v[..N] {
        let d = b.wrapping_sub(b'0');
        if d > 9 {
            return None;
        }
        n = n * 10 + d as u32;
    }
    Some(n)
}

/// `YYYYMMDD` with a plausible month/day.
pub fn is_date(v: &[u8]) -> bool {
    v.len() == 8 && parse_date(v).is_some()
}

fn parse_date(v: &[u8]) -> Option<(i64, u32, u32)> {
    let y = digits::<4>(v)?;
    let m = digits::<2>(&v[4..])?;
    let d = digits::<2>(&v[6..])?;
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) {
        return None;
    }
    Some((y as i64, m, d))
}

/// `HH:MM:SS[.s{1,9}]` returning nanoseconds since midnight. Leap second 60
/// is accepted as the spec allows it.
fn parse_time_of_day(v: &[u8]) -> Option<i64> {
    if v.len() < 8 || v[2] != b':' || v[5] != b':' {
        return None;
    }
    let h = digits::<2>(v)?;
    let m = digits::<2>(&v[3..])?;
    let s = digits::<2>(&v[6..])?;
    if h > 23 || m > 59 || s > 60 {
        return None;
    }
    let mut nanos = 0i64;
    let frac = &v[8..];
    if !frac.is_empty() {
        // FIX 4.4 allows milliseconds; later versions micro/nano/picoseconds.
        // Accept 1..=9 fractional digits (pico digits beyond 9 are rejected).
        if frac[0] != b'.' || frac.len() < 2 || frac.len() > 10 {
            return None;
        }
        let mut scale = 100_000_000i64;
        for &b in &frac[1..] {
            let d = b.wrapping_sub(b'0');
            if d > 9 {
                return None;
            }
            nanos += d as i64 * scale;
            scale /= 10;
        }
    }
    Some((h as i64 * 3600 + m as i64 * 60 + s as i64) * 1_000_000_000 + nanos)
}

/// `HH:MM:SS[.sss]` (UTCTimeOnly).
pub fn is_time_only(v: &[u8]) -> bool {
    parse_time_of_day(v).is_some()
}

/// MONTHYEAR: `YYYYMM`, `YYYYMMDD` or `YYYYMMwN`.
pub fn is_month_year(v: &[u8]) -> bool {
    if v.len() < 6 || digits::<4>(v).is_none() {
        return false;
    }
    match digits::<2>(&v[4..]) {
        Some(m) if (1..=12).contains(&m) => {}
        _ => return false,
    }
    match &v[6..] {
        [] => true,
        [b'w', d] => (b'1'..=b'5').contains(d),
        rest => rest.len() == 2 && matches!(digits::<2>(rest), Some(1..=31)),
    }
}

/// A point in time as nanoseconds since the Unix epoch (UTC).
///
/// The session state machine never reads a clock: the caller passes `now` in
/// as a `Timestamp`, which keeps it deterministic and testable.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Timestamp(pub i64);

impl Timestamp {
    pub const fn from_unix_nanos(n: i64) -> Self {
        Timestamp(n)
    }
    pub const fn from_unix_secs(s: i64) -> Self {
        Timestamp(s * 1_000_000_000)
    }
    pub const fn from_unix_millis(ms: i64) -> Self {
        Timestamp(ms * 1_000_000)
    }
    pub const fn unix_nanos(self) -> i64 {
        self.0
    }
    pub const fn add_nanos(self, n: i64) -> Self {
        Timestamp(self.0.saturating_add(n))
    }
    pub const fn add_secs(self, s: i64) -> Self {
        self.add_nanos(s.saturating_mul(1_000_000_000))
    }
    /// |self - other| in nanoseconds (saturating).
    pub fn abs_diff_nanos(self, other: Timestamp) -> u64 {
        self.0.abs_diff(other.0)
    }

    /// Parse a UTCTimestamp: `YYYYMMDD-HH:MM:SS[.s{1,9}]`.
    pub fn parse(v: &[u8]) -> Option<Timestamp> {
        if v.len() < 17 || v[8] != b'-' {
            return None;
        }
        let (y, m, d) = parse_date(&v[..8])?;
        let tod = parse_time_of_day(&v[9..])?;
        let days = days_from_civil(y, m, d);
        days.checked_mul(86_400_000_000_000)?.checked_add(tod).map(Timestamp)
    }

    /// Write `YYYYMMDD-HH:MM:SS.sss` (millisecond precision, the FIX 4.4
    /// format every 4.x engine accepts) into `out`.
    pub fn write_millis(self, out: &mut Vec<u8>) {
        let nanos = self.0;
        let days = nanos.div_euclid(86_400_000_000_000);
        let tod = nanos.rem_euclid(86_400_000_000_000);
        let (y, m, d) = civil_from_days(days);
        let ms = (tod / 1_000_000) as u32;
        let (h, mi, s, ms) = (ms / 3_600_000, ms / 60_000 % 60, ms / 1000 % 60, ms % 1000);
        let y = y.clamp(0, 9999) as u32;
        let buf = [
            b'0' + (y / 1000) as u8,
            b'0' + (y / 100 % 10) as u8,
            b'0' + (y / 10 % 10) as u8,
            b'0' + (y % 10) as u8,
            b'0' + (m / 10) as u8,
            b'0' + (m % 10) as u8,
            b'0' + (d / 10) as u8,
            b'0' + (d % 10) as u8,
            b'-',
            b'0' + (h / 10) as u8,
            b'0' + (h % 10) as u8,
            b':',
            b'0' + (mi / 10) as u8,
            b'0' + (mi % 10) as u8,
            b':',
            b'0' + (s / 10) as u8,
            b'0' + (s % 10) as u8,
            b'.',
            b'0' + (ms / 100) as u8,
            b'0' + (ms / 10 % 10) as u8,
            b'0' + (ms % 10) as u8,
        ];
        out.extend_from_slice(&buf);
    }

    /// The timestamp formatted as a String (tests, logs).
    pub fn to_fix_string(self) -> String {
        let mut v = Vec::with_capacity(21);
        self.write_millis(&mut v);
        String::from_utf8(v).unwrap_or_default()
    }
}

// Howard Hinnant's days_from_civil / civil_from_days (public domain
// algorithms), proleptic Gregorian calendar.
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = m as i64;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// Append the decimal representation of `n`.
#[inline]
pub fn write_u64(out: &mut Vec<u8>, mut n: u64) {
    let mut tmp = [0u8; 20];
    let mut i = tmp.len();
    loop {
        i -= 1;
        tmp[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&tmp[i..]);
}

/// Append the decimal representation of a signed integer.
#[inline]
pub fn write_i64(out: &mut Vec<u8>, n: i64) {
    if n < 0 {
        out.push(b'-');
    }
    write_u64(out, n.unsigned_abs());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamp_round_trip() {
        let t = Timestamp::parse(b"20240229-23:59:58.123").unwrap();
        assert_eq!(t.to_fix_string(), "20240229-23:59:58.123");
        assert_eq!(Timestamp::parse(b"19700101-00:00:01").unwrap(), Timestamp::from_unix_secs(1));
        assert!(Timestamp::parse(b"20241301-00:00:00").is_none());
        assert!(Timestamp::parse(b"20240101-24:00:00").is_none());
        assert!(Timestamp::parse(b"20240101-00:00:00.").is_none());
        assert_eq!(Timestamp::parse(b"20240101-00:00:00.000000001").unwrap().0 % 1000, 1);
    }

    #[test]
    fn numbers() {
        assert_eq!(parse_u64(b"0012"), Some(12));
        assert_eq!(parse_u64(b""), None);
        assert_eq!(parse_u64(b"1a"), None);
        assert_eq!(parse_i64(b"-5"), Some(-5));
        assert!(is_float(b"-1.5") && is_float(b"3") && is_float(b".5"));
        assert!(!is_float(b"1.2.3") && !is_float(b"1e5") && !is_float(b"-"));
        assert!(is_month_year(b"202401") && is_month_year(b"202401w2"));
        let mut v = Vec::new();
        write_i64(&mut v, -120);
        assert_eq!(v, b"-120");
    }
}
