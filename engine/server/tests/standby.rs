//! A hot standby on both front ends: it starts after the primary's event ring has moved on (so
//! its first records come from the journal, through the catch-up path), follows the live stream,
//! reports the primary's state hash at the same seq, and is promoted without a gap.

use std::time::{Duration, Instant};

use castle_engine::Command;
use castle_engine_server::client;
use castle_engine_server::net_uring::NetChoice;
use castle_engine_server::proto::AckStatus;
use castle_engine_server::{Config, LocalGateway, Server};

fn config(dir: &std::path::Path, net: NetChoice) -> Config {
    let mut cfg = Config::new(dir, "127.0.0.1:0");
    cfg.net = net;
    cfg.max_batch = 256;
    cfg.ring_capacity = 1_024;
    cfg.snapshot_every = 0;
    cfg
}

/// Submits requests `from..from + n` and waits until all are acknowledged as applied.
fn load(gw: &LocalGateway, from: u64, n: u64) {
    for r in from..from + n {
        let cmd = Command::Deposit { account: 1 + (r % 7) as u32, asset: 1, amount: r as i64 };
        gw.submit(r, cmd).expect("submit");
    }
    let mut acks = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while acks.len() < n as usize {
        assert!(Instant::now() < deadline, "only {} of {n} acknowledged", acks.len());
        gw.recv_acks(Duration::from_millis(200), &mut acks);
    }
    assert!(acks.iter().all(|a| a.2 == AckStatus::Applied), "{acks:?}");
}

fn standby_catches_up_follows_and_takes_over(net: NetChoice) {
    let tmp = tempfile::tempdir().expect("tmp");
    let primary = Server::start(config(&tmp.path().join("p"), net)).expect("primary");
    let paddr = primary.local_addr().expect("tcp").to_string();
    let gw = primary.local_gateway(1, 1 << 16);
    load(&gw, 1, 4_000); // far more than the ring holds: the standby's start is a journal catch-up

    let mut scfg = config(&tmp.path().join("s"), net);
    scfg.follow = Some(paddr);
    let standby = Server::start(scfg).expect("standby");
    load(&gw, 4_001, 4_000); // and then the live stream

    let want = primary.status().expect("primary status");
    assert_eq!(want.seq, 8_000);
    let deadline = Instant::now() + Duration::from_secs(60);
    let got = loop {
        let st = standby.status().expect("standby status");
        if st.seq >= want.seq {
            break st;
        }
        assert!(Instant::now() < deadline, "standby stuck at {} of {}", st.seq, want.seq);
        std::thread::sleep(Duration::from_millis(20)); // polling a condition with a deadline
    };
    assert!(!got.primary);
    assert_eq!((got.seq, got.hash, got.epoch), (want.seq, want.hash, want.epoch), "same state at the same seq");

    // Promotion: the epoch marker takes the next seq, then orders continue on the standby.
    primary.shutdown().expect("primary stops");
    let saddr = standby.local_addr().expect("tcp").to_string();
    let (p, epoch, seq, _) = client::promote(&saddr).expect("promote");
    assert!(p);
    assert_eq!((epoch, seq), (want.epoch + 1, want.seq + 1));
    let sgw = standby.local_gateway(1, 1 << 10);
    load(&sgw, 8_001, 10);
    assert_eq!(standby.status().expect("status").seq, want.seq + 11);
    standby.shutdown().expect("standby stops");
}

#[test]
fn standby_io_uring_front_end() {
    standby_catches_up_follows_and_takes_over(NetChoice::IoUring);
}

#[test]
fn standby_std_front_end() {
    standby_catches_up_follows_and_takes_over(NetChoice::Std);
}
