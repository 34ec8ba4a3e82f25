//! The venue as separate processes: `castle engine --demo` and `castle gateway-fix --engine ADDR`
//! (RemoteLink over TCP). An order through the gateway is acknowledged and is in the engine's
//! stream; after kill -9 of the gateway process and a restart, the same order resent (same
//! ClOrdID) is refused, not placed twice, and the restarted gateway's requests continue after the
//! engine's last one (no origin journaled twice).

use std::io::Write;
use std::net::TcpStream;
use std::time::Duration;

use castle_engine::EventKind;
use castle_tests::durable::{journal_requests, subscribe, EngineProc};
use castle_tests::fix::{fix_from, read_until, utc_now};
use castle_tests::Proc;

/// `castle gateway-fix` against `engine` with its session stores under `data`; returns the
/// process and the FIX address.
fn gateway(engine: &str, data: &str) -> (Proc, String) {
    let mut p = Proc::castle(&["gateway-fix", "--engine", engine, "--fix-listen", "127.0.0.1:0", "--data-dir", data]);
    let up = p.wait_for_line("castle gateway-fix is up");
    let addr = up.split("FIX 4.4 on ").nth(1).and_then(|r| r.split(' ').next()).expect("FIX address").to_string();
    (p, addr)
}

/// Logs DEMO1 on (resetting sequence numbers: the test client keeps no store).
fn logon(addr: &str) -> (TcpStream, Vec<u8>) {
    let mut s = TcpStream::connect(addr).expect("connect to the FIX gateway");
    s.set_read_timeout(Some(Duration::from_secs(60))).expect("timeout");
    let mut buf = Vec::new();
    s.write_all(&fix_from("DEMO1", 1, "A", "98=0|108=30|141=Y|553=demo1|554=demo|")).expect("logon");
    read_until(&mut s, &mut buf, &["35=A|"]);
    (s, buf)
}

fn order(cl_ord_id: &str, price: &str) -> String {
    format!("11={cl_ord_id}|1=1|55=BTC-USDT|54=1|60={}|38=0.5|40=2|44={price}|59=1|", utc_now())
}

/// Orders the engine accepted for account 1, read from its event stream up to its current seq.
fn accepted_orders(engine: &EngineProc) -> usize {
    let (_, _, seq, _) = engine.status();
    subscribe(&engine.addr, 0, seq)
        .iter()
        .flat_map(|(_, events)| events.iter())
        .filter(|e| matches!(e, EventKind::OrderAccepted { account: 1, .. }))
        .count()
}

#[test]
fn a_gateway_process_killed_and_restarted_places_no_order_twice() {
    let dir = tempfile::tempdir().expect("temp dir");
    let journal = dir.path().join("journal");
    let data = dir.path().join("fix-gateway");
    let data = data.to_str().expect("utf-8 path");
    let engine = EngineProc::start(&journal, &["--demo"]).unwrap_or_else(|e| panic!("castle engine: {e:?}"));
    assert_eq!(engine.status().2, 8, "the demo set-up is journaled");

    let (mut gw, addr) = gateway(&engine.addr, data);
    let (mut s, mut buf) = logon(&addr);
    s.write_all(&fix_from("DEMO1", 2, "D", &order("ord-1", "59000.00"))).expect("send order");
    let ack = read_until(&mut s, &mut buf, &["35=8|", "11=ord-1|"]);
    assert!(ack.contains("150=0|") && ack.contains("39=0|"), "expected a New execution report: {ack}");
    assert_eq!(accepted_orders(&engine), 1, "the acknowledged order is in the engine's stream");

    // kill -9 of the gateway process: the engine keeps running.
    gw.signal("KILL");
    assert!(!gw.child.wait().expect("wait").success());
    drop(s);

    let (_gw, addr) = gateway(&engine.addr, data);
    let (mut s, mut buf) = logon(&addr);
    // A client unsure whether its order got through resends it: same ClOrdID.
    s.write_all(&fix_from("DEMO1", 2, "D", &order("ord-1", "59000.00"))).expect("resend order");
    let again = read_until(&mut s, &mut buf, &["35=8|", "11=ord-1|"]);
    assert!(again.contains("150=8|") && again.contains("39=8|"), "the resent order must be refused: {again}");
    // A new order through the restarted gateway works.
    s.write_all(&fix_from("DEMO1", 3, "D", &order("ord-2", "58000.00"))).expect("send order 2");
    let ack2 = read_until(&mut s, &mut buf, &["35=8|", "11=ord-2|"]);
    assert!(ack2.contains("150=0|"), "expected a New execution report: {ack2}");
    assert_eq!(accepted_orders(&engine), 2, "ord-1 once, ord-2 once");

    // Request ids continue across the gateway's restart: no origin journaled twice.
    let mut seen = std::collections::BTreeSet::new();
    for (seq, gateway, request) in journal_requests(&journal) {
        if gateway != 0 {
            assert!(seen.insert((gateway, request)), "gateway {gateway} request {request} journaled twice (seq {seq})");
        }
    }
    assert!(seen.len() >= 2, "both orders came through the gateway: {seen:?}");
}

/// GET over plain HTTP/1.1 (loopback, `Connection: close`); returns the body.
fn http_get(addr: &str, path: &str) -> String {
    use std::io::Read;
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(60))).expect("timeout");
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes()).expect("send");
    let mut out = String::new();
    s.read_to_string(&mut out).expect("read");
    out.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default()
}

/// Polls `f` until it is true (panics with `what` after 60 s): no sleeps as synchronisation.
fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !f() {
        assert!(std::time::Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn the_venue_as_four_processes_sees_one_order_everywhere() {
    let dir = tempfile::tempdir().expect("temp dir");
    let engine = EngineProc::start(&dir.path().join("journal"), &["--demo"]).unwrap_or_else(|e| panic!("{e:?}"));
    let e = engine.addr.as_str();
    let fix_data = dir.path().join("fix");
    let rest_data = dir.path().join("rest");
    let (_fix, fix_addr) = gateway(e, fix_data.to_str().expect("utf-8"));
    let mut rest = Proc::castle(&[
        "gateway-rest",
        "--engine",
        e,
        "--rest-listen",
        "127.0.0.1:0",
        "--rest-plain",
        "--rest-history",
        "memory",
        "--data-dir",
        rest_data.to_str().expect("utf-8"),
    ]);
    let up = rest.wait_for_line("castle gateway-rest is up");
    let rest_addr = up.split("REST on http://").nth(1).and_then(|r| r.split([',', ' ']).next()).expect("REST address");
    let rest_addr = rest_addr.to_string();
    // Unicast feed to a port nobody listens on: this test reads market data's statistics.
    let mut md = Proc::castle(&["marketdata", "--engine", e, "--feed-dest", "127.0.0.1:9"]);
    let up = md.wait_for_line("castle marketdata is up");
    let metrics = up.split("metrics on http://").nth(1).and_then(|r| r.split('/').next()).expect("metrics").to_string();

    // The REST gateway lists the engine's instruments (fetched over the engine link).
    let info = http_get(&rest_addr, "/api/v1/exchangeInfo");
    assert!(info.contains("\"BTC-USDT\"") && info.contains("\"ETH-USDT\""), "{info}");

    // An order through the FIX gateway process ...
    let (mut s, mut buf) = logon(&fix_addr);
    s.write_all(&fix_from("DEMO1", 2, "D", &order("ord-md", "59000.00"))).expect("send order");
    let ack = read_until(&mut s, &mut buf, &["35=8|", "11=ord-md|"]);
    assert!(ack.contains("150=0|"), "{ack}");
    // ... rests in the REST gateway's book and is counted by market data, both other processes.
    eventually("the bid in the REST depth", || http_get(&rest_addr, "/api/v1/depth?symbol=BTC-USDT").contains("59000"));
    eventually("the order in market data's statistics", || {
        http_get(&metrics, "/metrics")
            .lines()
            .any(|l| l.starts_with("castle_venue_orders_accepted_total") && !l.ends_with(" 0"))
    });
}
