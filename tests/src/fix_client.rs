//! A minimal FIX 4.4 client for end-to-end tests: build messages with
//! BodyLength and CheckSum, read until a message with given fields arrives.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

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

/// One FIX session as an initiator (`sender` -> CASTLE) over plain TCP.
pub struct FixClient {
    pub sender: String,
    /// Account (tag 1) of this session's orders.
    pub account: u32,
    stream: TcpStream,
    buf: Vec<u8>,
    seq: u32,
}

impl FixClient {
    /// Connects and logs on with `username`/`password`; orders go to `account`.
    pub fn logon(addr: &str, sender: &str, username: &str, password: &str, account: u32) -> FixClient {
        let stream = TcpStream::connect(addr).expect("connect to the FIX gateway");
        stream.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
        let mut c = FixClient { sender: sender.to_string(), account, stream, buf: Vec::new(), seq: 0 };
        c.send("A", &format!("98=0|108=30|553={username}|554={password}|"));
        c.read_until(&["35=A|"]);
        c
    }

    /// Sends `msg_type` with `body` ('|' for SOH); header and trailer are added.
    pub fn send(&mut self, msg_type: &str, body: &str) {
        self.seq += 1;
        let now = utc_now();
        let body =
            format!("35={msg_type}|49={}|56=CASTLE|34={}|52={now}|{body}", self.sender, self.seq).replace('|', "\x01");
        let mut m = format!("8=FIX.4.4\x019={}\x01{body}", body.len()).into_bytes();
        let sum: u32 = m.iter().map(|&b| b as u32).sum::<u32>() % 256;
        m.extend_from_slice(format!("10={sum:03}\x01").as_bytes());
        self.stream.write_all(&m).expect("send to the FIX gateway");
    }

    /// Reads until a message containing all of `needles` arrives ('|' for SOH)
    /// and returns it; complete messages before it are consumed.
    pub fn read_until(&mut self, needles: &[&str]) -> String {
        let mut chunk = [0u8; 4096];
        loop {
            // FIX here is ASCII, so the text and the bytes have the same offsets.
            let text = String::from_utf8_lossy(&self.buf).replace('\x01', "|");
            let mut consumed = 0;
            let mut found = None;
            for (start, _) in text.match_indices("8=FIX.4.4|") {
                let rest = &text[start..];
                // The trailer is "|10=NNN|": 8 bytes from its '|'.
                let Some(end) = rest.find("|10=").map(|i| i + 8).filter(|&e| e <= rest.len()) else { break };
                consumed = start + end;
                if needles.iter().all(|n| rest[..end].contains(n)) {
                    found = Some(rest[..end].to_string());
                    break;
                }
            }
            self.buf.drain(..consumed);
            if let Some(m) = found {
                return m;
            }
            let n = self.stream.read(&mut chunk).expect("read from gateway (10 s timeout)");
            assert!(n > 0, "gateway closed the connection; received so far: {text}");
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    /// A limit order; returns the first execution report for it.
    pub fn limit(&mut self, cl_ord_id: &str, side_buy: bool, qty: &str, price: &str) -> String {
        let side = if side_buy { 1 } else { 2 };
        let now = utc_now();
        self.send(
            "D",
            &format!("11={cl_ord_id}|1={}|55=BTC-USDT|54={side}|60={now}|38={qty}|40=2|44={price}|59=1|", self.account),
        );
        self.read_until(&["35=8|", &format!("11={cl_ord_id}|")])
    }
}
