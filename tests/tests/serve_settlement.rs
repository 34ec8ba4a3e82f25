//! `castle serve` runs settlement in process into `<data-dir>/settlement.sqlite`: the demo
//! deposits are in the ledger and reconcile with the demo funding, a restart resumes the
//! same ledger, and shutdown is clean. The consumer's metrics are on `castle serve`'s
//! `/metrics`.

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use castle_settlement::{SqliteStore, Store};
use castle_tests::Proc;

fn ledger_state(path: &std::path::Path) -> (u64, Vec<castle_settlement::BalanceRow>) {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let s = SqliteStore::open(path).expect("open ledger");
        (s.applied_seq().await.unwrap(), s.balances().await.unwrap())
    })
}

fn metrics_text(up: &str) -> String {
    let at = up.split("metrics on http://").nth(1).expect("metrics address in the up line");
    let addr = at.split_whitespace().next().expect("address").trim_end_matches("/metrics");
    let mut s = std::net::TcpStream::connect(addr).expect("connect to the metrics endpoint");
    s.set_read_timeout(Some(Duration::from_secs(60))).expect("timeout");
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: castle\r\nConnection: close\r\n\r\n").expect("send");
    let mut out = String::new();
    s.read_to_string(&mut out).expect("read response");
    out
}

#[test]
fn serve_settles_the_demo_deposits_and_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().display().to_string();
    let ledger = dir.path().join("settlement.sqlite");
    for run in 0..2 {
        let mut p = Proc::castle(&[
            "serve",
            "--fix-listen",
            "127.0.0.1:0",
            "--rest-listen",
            "127.0.0.1:0",
            "--data-dir",
            &data,
        ]);
        let up = p.wait_for_line("castle is up");
        // 2 instruments + 6 deposits = 8 set-up commands.
        let deadline = Instant::now() + Duration::from_secs(30);
        while ledger_state(&ledger).0 < 8 {
            assert!(Instant::now() < deadline, "run {run}: the ledger did not reach seq 8");
            std::thread::sleep(Duration::from_millis(20));
        }
        let (seq, balances) = ledger_state(&ledger);
        assert_eq!(seq, 8, "run {run}");
        let btc = balances.iter().find(|b| (b.account, b.asset) == (1, 1)).expect("account 1 BTC");
        assert_eq!((btc.available, btc.locked, btc.external), (10 * 100_000_000, 0, -10 * 100_000_000));
        assert_eq!(balances.len(), 6, "accounts 1 and 2, three assets each");
        // The in-process consumer's metrics, flush stages included, on the venue's endpoint.
        // (The ledger commits before the consumer counts the flush: poll for it.)
        let mut text = metrics_text(&up);
        while !text.lines().any(|l| l == "castle_settlement_applied_seq 8") {
            assert!(Instant::now() < deadline, "run {run}: the metrics never showed seq 8:\n{text}");
            std::thread::sleep(Duration::from_millis(20));
            text = metrics_text(&up);
        }
        let flushes = text
            .lines()
            .find_map(|l| l.strip_prefix("castle_settlement_flush_stage_seconds_count{stage=\"commit\"} "))
            .unwrap_or_else(|| panic!("no commit stage count in:\n{text}"));
        // Run 0 settles the set-up; run 1 resumes at seq 8 with nothing new to flush.
        let want = if run == 0 { 1 } else { 0 };
        assert!(flushes.parse::<u64>().expect("a count") >= want, "run {run}: {text}");
        assert!(text.contains("castle_settlement_flush_stage_seconds{stage=\"append\",quantile=\"0.99\"} "), "{text}");
        p.signal("TERM");
        p.wait_for_line("castle stopped");
        assert!(p.child.wait().unwrap().success());
    }
    let stale = std::fs::read_dir(dir.path())
        .unwrap()
        .filter(|e| e.as_ref().unwrap().file_name().to_string_lossy().contains("stale"))
        .count();
    assert_eq!(stale, 0, "a ledger at the engine's set-up seq is resumed, not set aside");

    // A ledger ahead of the (not yet journaled) in-process engine cannot be resumed: it is
    // renamed, never deleted, and a new ledger starts from the engine's seq 0.
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let s = SqliteStore::open(&ledger).unwrap();
        let f = castle_settlement::Flush { prev_seq: 8, seq: 100, ..Default::default() };
        s.apply(std::sync::Arc::new(f)).await.unwrap();
    });
    let mut p =
        Proc::castle(&["serve", "--fix-listen", "127.0.0.1:0", "--rest-listen", "127.0.0.1:0", "--data-dir", &data]);
    p.wait_for_line("castle is up");
    let deadline = Instant::now() + Duration::from_secs(30);
    while ledger_state(&ledger).0 != 8 {
        assert!(Instant::now() < deadline, "the new ledger did not reach seq 8");
        std::thread::sleep(Duration::from_millis(20));
    }
    p.signal("TERM");
    p.wait_for_line("castle stopped");
    let stale: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("settlement.sqlite.stale-"))
        .collect();
    assert!(!stale.is_empty(), "the old ledger was kept aside");
}
