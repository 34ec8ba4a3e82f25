//! `castle serve` as a user runs it: starts on embedded defaults, reports
//! where it listens, trades over FIX, and shuts down cleanly on SIGTERM.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use castle_tests::Proc;

/// `castle serve` on a free port with a throwaway data dir; returns the process and the FIX address.
fn start(extra: &[&str]) -> (Proc, String, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().to_str().expect("utf-8 path").to_string();
    let mut args = vec!["serve", "--fix-listen", "127.0.0.1:0", "--rest-listen", "127.0.0.1:0", "--data-dir", &data];
    args.extend_from_slice(extra);
    let mut p = Proc::castle(&args);
    let up = p.wait_for_line("castle is up");
    assert!(up.contains("2 instruments, 8 set-up commands"), "{up}");
    let addr = up.split("FIX 4.4 on ").nth(1).and_then(|r| r.split(' ').next()).expect("FIX address").to_string();
    (p, addr, dir)
}

/// Now as a FIX UTCTimestamp (the gateway checks SendingTime accuracy).
fn utc_now() -> String {
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

/// A FIX 4.4 message with BodyLength and CheckSum filled in; `body` uses '|' for SOH.
fn fix(seq: u32, msg_type: &str, body: &str) -> Vec<u8> {
    let now = utc_now();
    let body = format!("35={msg_type}|49=DEMO1|56=CASTLE|34={seq}|52={now}|{body}").replace('|', "\x01");
    let mut m = format!("8=FIX.4.4\x019={}\x01{body}", body.len()).into_bytes();
    let sum: u32 = m.iter().map(|&b| b as u32).sum::<u32>() % 256;
    m.extend_from_slice(format!("10={sum:03}\x01").as_bytes());
    m
}

/// Reads from the socket until a message containing all of `needles` arrives.
fn read_until(s: &mut TcpStream, buf: &mut Vec<u8>, needles: &[&str]) -> String {
    let mut chunk = [0u8; 4096];
    loop {
        let text = String::from_utf8_lossy(buf).replace('\x01', "|");
        for msg in text.split("8=FIX.4.4|").filter(|m| m.contains("|10=")) {
            if needles.iter().all(|n| msg.contains(n)) {
                return msg.to_string();
            }
        }
        let n = s.read(&mut chunk).expect("read from gateway (10 s timeout)");
        assert!(n > 0, "gateway closed the connection; received so far: {text}");
        buf.extend_from_slice(&chunk[..n]);
    }
}

#[test]
fn serve_check_starts_and_exits() {
    let (mut p, addr, _dir) = start(&["--check"]);
    assert!(addr.starts_with("127.0.0.1:"), "{addr}");
    let status = p.child.wait().expect("wait");
    assert!(status.success(), "serve --check exit status {status}");
}

#[test]
fn serve_takes_a_fix_order_and_stops_on_sigterm() {
    let (mut p, addr, _dir) = start(&[]);
    let mut s = TcpStream::connect(&addr).expect("connect to the FIX gateway");
    s.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
    let mut buf = Vec::new();
    s.write_all(&fix(1, "A", "98=0|108=30|553=demo1|554=demo|")).expect("send logon");
    read_until(&mut s, &mut buf, &["35=A|"]);
    let now = utc_now();
    let order = &format!("11=ord-1|1=1|55=BTC-USDT|54=1|60={now}|38=0.5|40=2|44=59000.00|59=1|");
    s.write_all(&fix(2, "D", order)).expect("send order");
    let report = read_until(&mut s, &mut buf, &["35=8|", "11=ord-1|"]);
    assert!(report.contains("150=0|") && report.contains("39=0|"), "expected a New execution report: {report}");
    assert!(report.contains("151=0.5"), "leaves quantity 0.5: {report}");
    // An off-grid price is refused, not rounded.
    let bad = &format!("11=ord-2|1=1|55=BTC-USDT|54=1|60={now}|38=0.5|40=2|44=59000.001|59=1|");
    s.write_all(&fix(3, "D", bad)).expect("send order");
    let reject = read_until(&mut s, &mut buf, &["11=ord-2|"]);
    assert!(reject.contains("150=8|") || reject.contains("35=j|"), "expected a reject: {reject}");
    p.signal("TERM");
    p.wait_for_line("castle stopped");
    assert!(p.child.wait().expect("wait").success());
}
