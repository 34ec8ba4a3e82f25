//! A FIX 4.4 session client for end-to-end tests (logon, orders, reading
//! until given fields arrive), built on [`crate::fix`]'s message framing.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

pub use crate::fix::utc_now;

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
        stream.set_read_timeout(Some(Duration::from_secs(60))).expect("timeout");
        let mut c = FixClient { sender: sender.to_string(), account, stream, buf: Vec::new(), seq: 0 };
        c.send("A", &format!("98=0|108=30|553={username}|554={password}|"));
        c.read_until(&["35=A|"]);
        c
    }

    /// Sends `msg_type` with `body` ('|' for SOH); header and trailer are added.
    pub fn send(&mut self, msg_type: &str, body: &str) {
        self.seq += 1;
        let m = crate::fix::fix_from(&self.sender, self.seq, msg_type, body);
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
            let n = self.stream.read(&mut chunk).expect("read from gateway (60 s timeout)");
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
