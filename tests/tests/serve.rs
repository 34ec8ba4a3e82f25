//! `castle serve` as a user runs it: starts on embedded defaults, reports
//! where it listens, trades over FIX, and shuts down cleanly on SIGTERM.

use std::io::Write;
use std::net::TcpStream;
use std::time::Duration;

use castle_tests::fix::{fix, read_until, utc_now};
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
    s.set_read_timeout(Some(Duration::from_secs(60))).expect("timeout");
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
