//! Fencing with `castle referee` as its own process. Needs the castle binary
//! (`cargo build -p castle`).
//!
//! 1. kill -9 of the primary, promotion of the standby (the referee grants the next epoch once
//!    the old lease has run out), orders continue on it; the old primary restarts, learns from
//!    the referee that it is deposed, answers orders with `NotPrimary`, and rejoins as a
//!    standby of the new primary (same state hash at the same seq).
//! 2. A primary that cannot reach the referee stops accepting orders when its lease runs out,
//!    and accepts again once the referee (restarted from its state file) renews it.
//! 3. Without a referee a single node accepts orders as before, and says so in its log.
//! 4. Two fresh nodes started the same way, without `--follow` (as the Terraform engine group
//!    starts its instances): the first to reach the referee holds the lease, the other is
//!    deposed with an empty journal, follows it and refuses orders.

use std::path::Path;
use std::time::{Duration, Instant};

use castle_engine::Command;
use castle_engine_server::client::{self, Connection, Delivery};
use castle_engine_server::proto::{AckStatus, Role};
use castle_tests::durable::{commands, pump, EngineProc};
use castle_tests::Proc;

const GATEWAY: u32 = 9;
/// Long enough that a loaded CI machine renews in time (every quarter of it). At 2 s, on the
/// 2-core machine at load 12-16, primaries lost their lease several times a test (renewals
/// timing out for over 1.5 s), and an order pumped meanwhile was refused (`NotPrimary`).
const LEASE_MS: &str = "6000";

fn referee(state: &Path, listen: &str) -> (Proc, String) {
    let st = state.to_str().expect("utf-8 path");
    let mut p = Proc::castle(&["referee", "--listen", listen, "--state", st, "--lease-ms", LEASE_MS]);
    let line = p.wait_for_line("castle referee listening on ");
    let addr = line.rsplit(' ').next().expect("address").to_string();
    (p, addr)
}

/// Polls `what` until it holds, failing with `msg` after `secs`.
fn wait_until(secs: u64, msg: &str, mut what: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !what() {
        assert!(Instant::now() < deadline, "{msg}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// GET /metrics at `addr` (empty when not reachable yet).
fn scrape(addr: &str) -> String {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect(addr) else { return String::new() };
    let _ = s.set_read_timeout(Some(Duration::from_secs(60)));
    let _ = s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    let mut body = String::new();
    let _ = s.read_to_string(&mut body);
    body
}

/// One order as request `request` of GATEWAY: its acknowledgement status.
fn submit_one(addr: &str, request: u64, cmd: &Command) -> AckStatus {
    let mut c = Connection::connect(addr, Role::Gateway, GATEWAY, 0).expect("gateway hello");
    c.set_read_timeout(Some(Duration::from_secs(30))).expect("timeout");
    c.submit(request, cmd).expect("submit");
    c.flush().expect("flush");
    match c.recv().expect("ack") {
        Some(Delivery::Ack { request: r, status, .. }) if r == request => status,
        other => panic!("expected the ack of {request}, got {other:?}"),
    }
}

#[test]
fn deposed_primary_restarts_refuses_orders_and_rejoins_as_standby() {
    let tmp = tempfile::tempdir().expect("tmp");
    let (_r, raddr) = referee(&tmp.path().join("referee.state"), "127.0.0.1:0");
    let a = EngineProc::start(&tmp.path().join("a"), &["--referee", &raddr, "--node-id", "1"]).expect("primary");
    wait_until(30, "the primary never took the lease", || a.stderr().contains("holding the referee's lease"));
    let b = EngineProc::start(&tmp.path().join("b"), &["--follow", &a.addr, "--referee", &raddr, "--node-id", "2"])
        .expect("standby");
    let cmds = commands(21, 3_000);
    let acks = pump(&a.addr, GATEWAY, &cmds[..2_000], 1, 256, Instant::now() + Duration::from_secs(120));
    assert_eq!(acks.applied.len(), 2_000, "every order applied by the lease holder");
    let (_, epoch, pseq, phash) = a.status();
    wait_until(60, "the standby did not catch up", || b.status().2 == pseq);
    assert_eq!(b.status().3, phash, "same seq, same state");

    a.kill9();
    // The referee grants the next epoch only once node 1's lease has run out.
    let mut promoted = None;
    wait_until(30, "the standby was never promoted", || {
        let st = client::promote(&b.addr).expect("promote");
        if st.0 {
            promoted = Some(st);
        }
        st.0
    });
    let (_, new_epoch, marker, _) = promoted.expect("promoted");
    assert_eq!((new_epoch, marker), (epoch + 1, pseq + 1), "next epoch, marker at the next seq");
    let acks = pump(&b.addr, GATEWAY, &cmds, 2_001, 256, Instant::now() + Duration::from_secs(120));
    let seqs: Vec<u64> = acks.applied.iter().map(|&(_, s)| s).collect();
    assert_eq!(seqs, (marker + 1..=marker + 1_000).collect::<Vec<_>>(), "orders continue without a gap");

    // The old primary restarts on its own journal, as a primary: the referee deposes it.
    let old = EngineProc::start(&tmp.path().join("a"), &["--referee", &raddr, "--node-id", "1"]).expect("restart");
    wait_until(30, "the restarted primary was not told it is deposed", || old.stderr().contains("deposed"));
    let refused = submit_one(&old.addr, 3_001, &cmds[0]);
    assert_eq!(refused, AckStatus::NotPrimary, "a deposed primary refuses orders");
    // ... and follows the new primary: same state at the same seq.
    let (_, _, bseq, bhash) = b.status();
    wait_until(60, "the deposed primary did not rejoin as a standby", || old.status().2 == bseq);
    let (op, oepoch, _, ohash) = old.status();
    assert!(!op, "the deposed node is a standby");
    assert_eq!((oepoch, ohash), (new_epoch, bhash), "rejoined: the new epoch's state");
    assert_eq!(b.status().2, bseq, "the refused order was applied nowhere");
}

#[test]
fn a_primary_without_the_referee_stops_accepting_when_its_lease_runs_out() {
    let tmp = tempfile::tempdir().expect("tmp");
    let state = tmp.path().join("referee.state");
    let (r, raddr) = referee(&state, "127.0.0.1:0");
    let a = EngineProc::start(&tmp.path().join("a"), &["--referee", &raddr, "--node-id", "1"]).expect("primary");
    wait_until(30, "the primary never took the lease", || a.stderr().contains("holding the referee's lease"));
    // Orders go one by one until the lease runs out (up to 4.5 s after the referee goes): far
    // more than that may be applied meanwhile on an idle machine.
    let cmds = commands(22, 50_000);
    let acks = pump(&a.addr, GATEWAY, &cmds[..100], 1, 64, Instant::now() + Duration::from_secs(60));
    assert_eq!(acks.applied.len(), 100);

    drop(r); // SIGKILL: the lease can no longer be renewed
    let mut request = 101;
    wait_until(30, "orders still accepted long after the lease ran out", || {
        let st = submit_one(&a.addr, request, &cmds[request as usize - 1]);
        if st == AckStatus::Applied {
            request += 1;
        }
        st == AckStatus::NotPrimary
    });
    wait_until(10, "the lapse is not logged", || a.stderr().contains("lease ran out"));

    // The referee comes back (same address, same state file): the lease is renewed.
    let (_r2, raddr2) = referee(&state, &raddr);
    assert_eq!(raddr2, raddr);
    wait_until(30, "orders not accepted again after the referee came back", || {
        submit_one(&a.addr, request, &cmds[request as usize - 1]) == AckStatus::Applied
    });
    assert_eq!(a.status().1, 1, "same epoch throughout");
}

#[test]
fn without_a_referee_a_single_node_accepts_orders_and_says_so() {
    let tmp = tempfile::tempdir().expect("tmp");
    let a = EngineProc::start(&tmp.path().join("a"), &[]).expect("engine");
    let cmds = commands(23, 50);
    let acks = pump(&a.addr, GATEWAY, &cmds, 1, 16, Instant::now() + Duration::from_secs(60));
    assert_eq!(acks.applied.len(), 50);
    wait_until(10, "no log line about running without a referee", || a.stderr().contains("no referee configured"));
}

#[test]
fn two_fresh_nodes_started_alike_elect_one_primary_and_the_other_follows() {
    let tmp = tempfile::tempdir().expect("tmp");
    let (_r, raddr) = referee(&tmp.path().join("referee.state"), "127.0.0.1:0");
    let a = EngineProc::start(
        &tmp.path().join("a"),
        &["--referee", &raddr, "--node-id", "1", "--metrics-listen", "127.0.0.1:0"],
    )
    .expect("node 1");
    wait_until(30, "node 1 never took the lease", || a.stderr().contains("holding the referee's lease"));
    let mut metrics = String::new();
    wait_until(30, "node 1 never printed its metrics address", || {
        let out = a.stdout();
        if let Some(m) = out.lines().find_map(|l| l.strip_prefix("castle engine metrics on http://")) {
            metrics = m.trim_end_matches("/metrics").to_string();
        }
        !metrics.is_empty()
    });
    wait_until(30, "node 1's metrics never showed its lease", || {
        scrape(&metrics).lines().any(|l| {
            l.strip_prefix("castle_engine_lease_remaining_ms ")
                .and_then(|v| v.parse::<u64>().ok())
                .is_some_and(|ms| ms > 0)
        })
    });
    let b = EngineProc::start(&tmp.path().join("b"), &["--referee", &raddr, "--node-id", "2"]).expect("node 2");
    wait_until(30, "node 2 did not follow the lease holder", || b.stderr().contains("rejoining as a standby"));
    let cmds = commands(24, 500);
    assert_eq!(submit_one(&b.addr, 1, &cmds[0]), AckStatus::NotPrimary, "the deposed node refuses orders");
    let acks = pump(&a.addr, GATEWAY, &cmds, 1, 64, Instant::now() + Duration::from_secs(60));
    assert_eq!(acks.applied.len(), 500, "every order applied by the lease holder");
    let (primary, _, seq, hash) = a.status();
    assert!(primary);
    wait_until(60, "node 2 did not catch up with node 1", || b.status().2 == seq);
    let (b_primary, _, _, b_hash) = b.status();
    assert!(!b_primary, "node 2 stays a standby");
    assert_eq!(b_hash, hash, "same seq, same state");
}
