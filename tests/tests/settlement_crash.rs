//! `castle settlement` killed with SIGKILL at random points while `castle engine` is under
//! load, then restarted; at the end the ledger must reconcile with the engine's journal
//! (`castle reconcile`): zero lost, zero duplicated fills, every balance equal.
//! Run against SQLite and against PostgreSQL (DATABASE_URL or a throwaway cluster).

use std::process::Command;
use std::time::{Duration, Instant};

use castle_engine::workload::Rng;
use castle_settlement::testkit::{pg, shared_server};
use castle_settlement::{AnyStore, LedgerUrl, PgConfig, Store};
use castle_tests::durable::{commands, pump, EngineProc};
use castle_tests::{castle_bin, Proc};

fn applied(rt: &tokio::runtime::Runtime, url: &str) -> u64 {
    rt.block_on(async {
        let s = AnyStore::open(&LedgerUrl::parse(url), PgConfig::new).await.expect("open ledger");
        s.applied_seq().await.expect("applied seq")
    })
}

fn poll(what: &str, secs: u64, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn crash_and_reconcile(url: &str, seed: u64) {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let journal = dir.path().join("journal");
    let engine = EngineProc::start(&journal, &[]).unwrap_or_else(|e| panic!("engine did not start: {e:?}"));
    let cmds = commands(seed, 40_000);
    let addr = engine.addr.clone();
    let load = std::thread::spawn(move || {
        pump(&addr, 1, &cmds, 1, 256, Instant::now() + Duration::from_secs(120)).applied.len()
    });
    let start = |url: &str| {
        let mut p = Proc::castle(&["settlement", "--engine", &engine.addr, "--database-url", url]);
        p.wait_for_line("castle settlement running");
        p
    };
    let mut rng = Rng::new(seed);
    for round in 0..4 {
        let mut p = start(url);
        let from = applied(&rt, url);
        let step = 300 + rng.below(3_000);
        poll("settlement progress", 60, || applied(&rt, url) >= from + step || load.is_finished());
        p.child.kill().expect("kill -9 castle settlement");
        p.child.wait().unwrap();
        eprintln!("round {round}: killed at ledger seq {}", applied(&rt, url));
    }
    let applied_cmds = load.join().expect("load thread");
    assert_eq!(applied_cmds, 40_000, "every command was acknowledged");
    let engine_seq = engine.status().2;
    let p = start(url);
    poll("settlement to catch up", 120, || applied(&rt, url) == engine_seq);
    p.signal("TERM");
    // Against the running engine's stream first, then against its journal.
    let out = Command::new(castle_bin())
        .args(["reconcile", "--database-url", url, "--engine", &engine.addr])
        .output()
        .expect("run castle reconcile --engine");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && stdout.contains("clean"), "reconcile --engine:\n{stdout}");
    // Stop the engine cleanly so its journal can be replayed.
    let ok = Command::new("kill").arg("-TERM").arg(engine.child.id().to_string()).status().unwrap();
    assert!(ok.success());
    let mut engine = engine;
    engine.child.wait().unwrap();
    let out = Command::new(castle_bin())
        .args(["reconcile", "--database-url", url, "--journal"])
        .arg(&journal)
        .output()
        .expect("run castle reconcile");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "reconcile found differences:\n{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains(&format!("ledger seq {engine_seq}")) && stdout.contains("clean"), "{stdout}");
    let fills: u64 =
        stdout.trim().split(", ").find_map(|p| p.strip_suffix(" fills: clean")).and_then(|n| n.parse().ok()).unwrap();
    assert!(fills > 1_000, "the load traded ({fills} fills)");
}

#[test]
fn settlement_killed_at_random_points_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let url = dir.path().join("ledger.sqlite").display().to_string();
    crash_and_reconcile(&url, 5);
}

#[test]
fn settlement_killed_at_random_points_postgres() {
    let admin = shared_server().unwrap_or_else(|e| panic!("PostgreSQL unavailable: {e}"));
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let url = rt
        .block_on(pg::create_database(&admin, &format!("castle_crash_{}", std::process::id())))
        .unwrap_or_else(|e| panic!("PostgreSQL unavailable: {e}"));
    crash_and_reconcile(&url, 6);
}
