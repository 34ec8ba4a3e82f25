//! `castle serve` is durable: an order acknowledged over FIX survives kill -9 of the whole
//! process, and the state it recovers is the state `castle replay` rebuilds from its journal.

use std::io::Write;
use std::net::TcpStream;
use std::path::Path;
use std::time::Duration;

use castle_tests::durable::{journal_requests, replay};
use castle_tests::fix::{fix_from, read_until, utc_now};
use castle_tests::Proc;

/// A running `castle serve` on `data`: (process, FIX address, recovered seq, recovered hash).
fn start(data: &Path) -> (Proc, String, u64, String, String) {
    let data = data.to_str().expect("utf-8 path");
    let mut p =
        Proc::castle(&["serve", "--fix-listen", "127.0.0.1:0", "--rest-listen", "127.0.0.1:0", "--data-dir", data]);
    let rec = p.wait_for_line("engine recovered: ");
    let mut it = rec.split_whitespace();
    let seq = it.nth(3).and_then(|s| s.parse().ok()).unwrap_or_else(|| panic!("seq in {rec:?}"));
    let hash = it.nth(2).unwrap_or_else(|| panic!("hash in {rec:?}")).to_string();
    let up = p.wait_for_line("castle is up");
    let addr = up.split("FIX 4.4 on ").nth(1).and_then(|r| r.split(' ').next()).expect("FIX address").to_string();
    (p, addr, seq, hash, up)
}

/// Logs `sender` on (resetting its sequence numbers) and returns the connection.
fn logon(addr: &str, sender: &str, user: &str) -> (TcpStream, Vec<u8>) {
    let mut s = TcpStream::connect(addr).expect("connect to the FIX gateway");
    s.set_read_timeout(Some(Duration::from_secs(60))).expect("timeout");
    let mut buf = Vec::new();
    s.write_all(&fix_from(sender, 1, "A", &format!("98=0|108=30|141=Y|553={user}|554=demo|"))).expect("logon");
    read_until(&mut s, &mut buf, &["35=A|"]);
    (s, buf)
}

#[test]
fn an_acknowledged_order_survives_kill_9_of_castle_serve() {
    let dir = tempfile::tempdir().expect("temp dir");
    let journal = dir.path().join("journal");

    // First start: empty journal, the demo set-up is journaled.
    let (mut p, addr, seq0, _, up) = start(dir.path());
    assert_eq!(seq0, 0, "fresh data dir");
    assert!(up.contains("2 instruments, 8 set-up commands"), "{up}");
    let (mut s, mut buf) = logon(&addr, "DEMO1", "demo1");
    let order = format!("11=ord-1|1=1|55=BTC-USDT|54=1|60={}|38=0.5|40=2|44=59000.00|59=1|", utc_now());
    s.write_all(&fix_from("DEMO1", 2, "D", &order)).expect("send order");
    let ack = read_until(&mut s, &mut buf, &["35=8|", "11=ord-1|"]);
    assert!(ack.contains("150=0|") && ack.contains("39=0|"), "expected a New execution report: {ack}");
    let order2 = format!("11=ord-2|1=1|55=BTC-USDT|54=1|60={}|38=0.5|40=2|44=58000.00|59=1|", utc_now());
    s.write_all(&fix_from("DEMO1", 3, "D", &order2)).expect("send order 2");
    read_until(&mut s, &mut buf, &["35=8|", "11=ord-2|", "150=0|"]);

    // The acknowledged order is on disk: kill -9, nothing gets to flush.
    p.signal("KILL");
    let status = p.child.wait().expect("wait");
    assert!(!status.success(), "killed: {status}");
    drop(s);
    let (replayed_seq, replayed_hash) = replay(&journal);
    assert!(replayed_seq >= 10, "8 set-up commands and two orders, journal ends at {replayed_seq}");

    // Restart on the same data dir: recovery ends at the journal's end with the replay's hash,
    // and the set-up is not journaled again.
    let (mut p, addr, seq1, hash1, up) = start(dir.path());
    assert_eq!((seq1, hash1.as_str()), (replayed_seq, replayed_hash.as_str()), "recovered state = castle replay");
    assert!(up.contains("2 instruments, 0 set-up commands"), "{up}");

    // The gateway rebuilt its order view from the engine: the status of an order placed before
    // the crash, by ClOrdID.
    let (mut s, mut buf) = logon(&addr, "DEMO1", "demo1");
    s.write_all(&fix_from("DEMO1", 2, "H", "11=ord-1|55=BTC-USDT|54=1|")).expect("status request");
    let st = read_until(&mut s, &mut buf, &["35=8|", "11=ord-1|", "150=I|"]);
    assert!(st.contains("39=0|") && st.contains("151=0.5|"), "ord-1 is open with 0.5 left: {st}");

    // The buy is still resting: a crossing sell from the other account trades against it at its price.
    let (mut s2, mut buf2) = logon(&addr, "DEMO2", "demo2");
    let sell = format!("11=sell-1|1=2|55=BTC-USDT|54=2|60={}|38=0.5|40=2|44=59000.00|59=3|", utc_now());
    s2.write_all(&fix_from("DEMO2", 2, "D", &sell)).expect("send sell");
    let fill = read_until(&mut s2, &mut buf2, &["35=8|", "11=sell-1|", "150=F|"]);
    assert!(fill.contains("31=59000") && fill.contains("32=0.5"), "expected a fill of 0.5 at 59000: {fill}");
    assert!(fill.contains("39=2|"), "the IOC sell is completely filled by the recovered buy: {fill}");
    // The owner of the recovered buy hears of its fill, and cancels the other one by ClOrdID.
    let fill1 = read_until(&mut s, &mut buf, &["35=8|", "11=ord-1|", "150=F|"]);
    assert!(fill1.contains("39=2|") && fill1.contains("14=0.5|"), "ord-1 filled: {fill1}");
    s.write_all(&fix_from("DEMO1", 3, "F", &format!("41=ord-2|11=cxl-2|55=BTC-USDT|54=1|60={}|", utc_now())))
        .expect("cancel");
    let cx = read_until(&mut s, &mut buf, &["35=8|", "11=cxl-2|"]);
    assert!(cx.contains("150=4|") && cx.contains("41=ord-2|"), "ord-2 canceled by ClOrdID: {cx}");

    // A clean stop reports the final state; a from-scratch replay of the journal agrees.
    p.signal("TERM");
    let stopped = p.wait_for_line("engine stopped: ");
    p.wait_for_line("castle stopped");
    assert!(p.child.wait().expect("wait").success());
    let (seq2, hash2) = replay(&journal);
    assert!(seq2 > seq1, "the trade was journaled after the restart");
    assert_eq!(stopped, format!("engine stopped: seq {seq2} state hash {hash2}"));

    // The FIX gateway's request ids continue across the restart (it numbers from the link's
    // `first_request`): no (gateway, request) origin is journaled twice, so a replayed batch of
    // the first run can never be taken for a request of the second.
    let mut seen = std::collections::BTreeSet::new();
    let mut before_restart = 0;
    for (seq, gateway, request) in journal_requests(&journal) {
        if gateway == 0 {
            continue;
        }
        assert!(seen.insert((gateway, request)), "gateway {gateway} request {request} journaled twice (seq {seq})");
        if seq <= seq1 {
            before_restart += 1;
        }
    }
    assert!(before_restart >= 1 && seen.len() > before_restart, "orders from both runs: {seen:?}");
}

#[test]
fn a_set_up_interrupted_by_a_crash_is_completed_at_the_next_start() {
    use castle_engine::{Command, InstrumentSpec};
    use castle_engine_server::{Config, DurableLink};
    use castle_link::{EngineLink, EngineRequest, Origin};
    let dir = tempfile::tempdir().expect("temp dir");
    // The first three of `castle serve`'s eight demo set-up commands, as a first start killed
    // half-way would have left them.
    let first = [
        Command::AddInstrument(InstrumentSpec::demo(0, "BTC-USDT", 1, 2, 6_000_000)),
        Command::AddInstrument(InstrumentSpec::demo(1, "ETH-USDT", 3, 2, 300_000)),
        Command::Deposit { account: 1, asset: 1, amount: 10 * 100_000_000 },
    ];
    let link = DurableLink::start(Config::new(dir.path().join("journal"), "")).expect("engine");
    for c in first {
        link.submit(EngineRequest { origin: Origin { gateway: 0, request: 0 }, command: c }).expect("submit");
    }
    assert_eq!(link.status().expect("status").seq, 3);
    drop(link);

    let data = dir.path().to_str().expect("utf-8 path");
    let mut p = Proc::castle(&[
        "serve",
        "--check",
        "--fix-listen",
        "127.0.0.1:0",
        "--rest-listen",
        "127.0.0.1:0",
        "--data-dir",
        data,
    ]);
    assert!(p.wait_for_line("engine recovered: ").starts_with("engine recovered: seq 3 "));
    let up = p.wait_for_line("castle is up");
    assert!(up.contains("2 instruments, 5 set-up commands"), "{up}");
    let stopped = p.wait_for_line("engine stopped: ");
    assert!(stopped.starts_with("engine stopped: seq 8 "), "{stopped}");
    assert!(p.child.wait().expect("wait").success());
    let (seq, hash) = replay(&dir.path().join("journal"));
    assert_eq!(stopped, format!("engine stopped: seq {seq} state hash {hash}"));
}
