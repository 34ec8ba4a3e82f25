//! A subscriber that stops reading altogether, on both front ends: once it has taken no bytes
//! for `Config::stall_timeout` it is cut off (no Goodbye: it would not read one), matching
//! goes on, and what it had received is a gap-free prefix of the stream it can resume after.

use std::time::{Duration, Instant};

use castle_engine::Command;
use castle_engine_server::client::{Connection, Delivery};
use castle_engine_server::net_uring::NetChoice;
use castle_engine_server::proto::Role;
use castle_engine_server::{Config, Server};

fn stalled_subscriber_is_cut_off(net: NetChoice) {
    // Far more than the socket buffers and the 1 MiB send queue hold (~60 bytes an event).
    const N: u64 = 120_000;
    let tmp = tempfile::tempdir().expect("tmp");
    let mut cfg = Config::new(tmp.path().join("journal"), "127.0.0.1:0");
    cfg.net = net;
    cfg.stall_timeout = Duration::from_millis(300);
    // The whole run fits in the event ring: the cut-off is the stall, not falling behind.
    cfg.ring_capacity = 1 << 18;
    cfg.snapshot_every = 0;
    let server = Server::start(cfg).expect("start");
    let addr = server.local_addr().expect("tcp").to_string();
    let mut sub = Connection::connect(&addr, Role::Subscriber, 0, 0).expect("subscribe");
    sub.socket().set_read_timeout(Some(Duration::from_secs(30))).expect("timeout");
    assert_eq!(server.connections(), 1);

    let gw = server.local_gateway(1, 1 << 17);
    let sub_gw = gw.submitter();
    let cmds: Vec<(u64, Command)> =
        (1..=N).map(|r| (r, Command::Deposit { account: 1 + (r % 9) as u32, asset: 1, amount: 1 })).collect();
    for chunk in cmds.chunks(256) {
        sub_gw.submit_batch(chunk.to_vec()).expect("submit");
    }
    // Matching never waited for the subscriber.
    let deadline = Instant::now() + Duration::from_secs(120);
    while server.status().expect("status").seq < N {
        assert!(Instant::now() < deadline, "the load did not complete");
    }
    // The subscriber that never reads is cut off.
    while server.connections() > 0 {
        assert!(Instant::now() < deadline, "the stalled subscriber is still connected");
        std::thread::sleep(Duration::from_millis(20)); // polling a condition with a deadline
    }
    // What reached it is 1, 2, 3, ... with no Goodbye, then the end of the connection.
    let mut next = 1;
    loop {
        match sub.recv() {
            Ok(Some(Delivery::Events { seq, .. })) => {
                assert_eq!(seq, next, "gap-free prefix");
                next += 1;
            }
            Ok(Some(other)) => panic!("unexpected {other:?} after {}", next - 1),
            Ok(None) | Err(_) => break,
        }
    }
    assert!(next - 1 < N, "the stalled subscriber was not cut off before the end ({})", next - 1);
    // It resumes after the last seq it received and gets the rest.
    let mut again = Connection::connect(&addr, Role::Subscriber, 0, next - 1).expect("resume");
    again.socket().set_read_timeout(Some(Duration::from_secs(30))).expect("timeout");
    while next <= N {
        match again.recv().expect("read") {
            Some(Delivery::Events { seq, .. }) => {
                assert_eq!(seq, next);
                next += 1;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    drop(gw);
    server.shutdown().expect("shutdown");
}

#[test]
fn stalled_subscriber_io_uring_front_end() {
    stalled_subscriber_is_cut_off(NetChoice::IoUring);
}

#[test]
fn stalled_subscriber_std_front_end() {
    stalled_subscriber_is_cut_off(NetChoice::Std);
}
