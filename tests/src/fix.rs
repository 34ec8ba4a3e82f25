//! A minimal FIX 4.4 client for the `castle serve` tests: builds messages with
//! BodyLength and CheckSum, and reads until a message with given fields arrives.

use std::io::Read;
use std::net::TcpStream;

/// Now as a FIX UTCTimestamp (the gateway checks SendingTime accuracy).
pub fn utc_now() -> String {
    let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock after 1970");
    let (secs, ms) = (t.as_secs() as i64, t.subsec_millis());
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}{m:02}{d:02}-{:02}:{:02}:{:02}.{ms:03}", rem / 3600, rem / 60 % 60, rem % 60)
}

/// A FIX 4.4 message from `sender` to CASTLE with BodyLength and CheckSum filled in; `body`
/// uses '|' for SOH.
pub fn fix_from(sender: &str, seq: u32, msg_type: &str, body: &str) -> Vec<u8> {
    let now = utc_now();
    let body = format!("35={msg_type}|49={sender}|56=CASTLE|34={seq}|52={now}|{body}").replace('|', "\x01");
    let mut m = format!("8=FIX.4.4\x019={}\x01{body}", body.len()).into_bytes();
    let sum: u32 = m.iter().map(|&b| b as u32).sum::<u32>() % 256;
    m.extend_from_slice(format!("10={sum:03}\x01").as_bytes());
    m
}

/// Reads from the socket until a message containing all of `needles` arrives.
pub fn read_until(s: &mut TcpStream, buf: &mut Vec<u8>, needles: &[&str]) -> String {
    let mut chunk = [0u8; 4096];
    loop {
        let text = String::from_utf8_lossy(buf).replace('\x01', "|");
        for msg in text.split("8=FIX.4.4|").filter(|m| m.contains("|10=")) {
            if needles.iter().all(|n| msg.contains(n)) {
                return msg.to_string();
            }
        }
        let n = s.read(&mut chunk).expect("read from gateway (the caller's read timeout)");
        assert!(n > 0, "gateway closed the connection; received so far: {text}");
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// A FIX 4.4 message from DEMO1 (see [`fix_from`]).
pub fn fix(seq: u32, msg_type: &str, body: &str) -> Vec<u8> {
    fix_from("DEMO1", seq, msg_type, body)
}
