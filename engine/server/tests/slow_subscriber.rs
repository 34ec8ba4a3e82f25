//! A subscriber that stops reading never slows matching: it is cut off once it falls out of the
//! event ring, told (TCP: Goodbye SlowConsumer) or able to tell (in process: its last seq) where
//! to resume, and after resuming it has exactly the events an uninterrupted subscriber got.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use castle_engine::{Command, EventKind};
use castle_engine_server::client::{Connection, Delivery};
use castle_engine_server::net_uring::NetChoice;
use castle_engine_server::proto::{GoodbyeReason, Role};
use castle_engine_server::{Config, DurableLink};
use castle_link::{EngineBatch, EngineLink, EngineRequest, LinkError, Origin};

type Stream = Vec<(u64, Vec<EventKind>)>;

fn kinds(b: &EngineBatch) -> (u64, Vec<EventKind>) {
    (b.seq, b.events.iter().map(|e| e.kind).collect())
}

/// Submits, retrying while the inbox is full (Busy is the link's backpressure, not an error).
fn submit(link: &DurableLink, request: u64, command: Command) {
    let req = EngineRequest { origin: Origin { gateway: 5, request }, command };
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match link.submit(req) {
            Ok(()) => return,
            Err(LinkError::Busy) if Instant::now() < deadline => std::thread::yield_now(),
            Err(e) => panic!("submit {request}: {e}"),
        }
    }
}

/// Reads a TCP subscriber's events until `until`, or until the server says goodbye.
fn read_tcp(c: &mut Connection, expect_from: u64, until: u64, out: &mut Stream) -> Option<(u8, u64)> {
    let mut expect = expect_from;
    while expect <= until {
        match c.recv().expect("read events") {
            Some(Delivery::Events { seq, events, .. }) => {
                assert_eq!(seq, expect, "gap or repeat in the event stream");
                out.push((seq, events));
                expect += 1;
            }
            Some(Delivery::Goodbye { reason, resume_from, .. }) => return Some((reason, resume_from)),
            other => panic!("subscriber got {other:?}"),
        }
    }
    None
}

#[test]
fn slow_subscribers_are_cut_off_and_resume_io_uring_front_end() {
    slow_subscribers_are_cut_off_and_resume_without_loss_or_repeat(NetChoice::IoUring);
}

#[test]
fn slow_subscribers_are_cut_off_and_resume_std_front_end() {
    slow_subscribers_are_cut_off_and_resume_without_loss_or_repeat(NetChoice::Std);
}

fn slow_subscribers_are_cut_off_and_resume_without_loss_or_repeat(net: NetChoice) {
    // Enough events to fill the kernel's socket buffers many times over (about 60 bytes a
    // command), so the TCP subscriber that does not read really falls behind the small ring.
    const N: u64 = 150_000;
    let tmp = tempfile::tempdir().expect("tmp");
    let mut cfg = Config::new(tmp.path().join("journal"), "127.0.0.1:0");
    cfg.net = net;
    // The ring must hold more than one release (a group commit of up to `max_batch` commands),
    // or even a subscriber that keeps up falls out of it.
    cfg.max_batch = 1_024;
    cfg.ring_capacity = 4_096;
    // The TCP subscriber below reads nothing from the start of the load until the in-process
    // checks are done: on a loaded 2-core machine (debug build) that is longer than the default
    // stall cut-off (10 s), which would then close it without the Goodbye this test is about.
    // The stall cut-off has its own test (stalled_subscriber.rs); here only falling out of the
    // ring may end the stream.
    cfg.stall_timeout = Duration::from_secs(3_600);
    cfg.snapshot_every = 40_000; // resumes far back are served by replay from a snapshot
    let link = DurableLink::start(cfg).expect("start");
    let addr = link.local_addr().expect("tcp").to_string();

    // The reference: an in-process subscriber that keeps up (the load below waits for it, so
    // it stays within the ring however slow a debug build on a busy machine is).
    let seen = Arc::new(AtomicU64::new(0));
    let reference = {
        let mut rx = link.subscribe(1 << 16).expect("subscribe");
        let seen = seen.clone();
        std::thread::spawn(move || {
            let mut v = Stream::new();
            while v.len() < N as usize {
                let b = rx.blocking_recv().expect("reference stream ended early");
                seen.store(b.seq, Ordering::Release);
                v.push(kinds(&b));
            }
            v
        })
    };
    // Two subscribers that stop reading: in process (a small channel) and over TCP.
    let mut slow_local = link.subscribe(16).expect("subscribe");
    let mut slow_tcp = Connection::connect(&addr, Role::Subscriber, 0, 0).expect("connect");
    slow_tcp.set_read_timeout(Some(Duration::from_secs(120))).expect("timeout");
    // Both are live (following the ring, not catching up by replay) once they have the first
    // batch: only a live subscriber can slow matching, so only a live one is cut off.
    let deposit = |i: u64| Command::Deposit { account: 1 + (i % 50) as u32, asset: 1, amount: 1 };
    submit(&link, 1, deposit(0));
    let mut local = vec![kinds(&slow_local.blocking_recv().expect("first batch"))];
    let mut tcp = Stream::new();
    assert_eq!(read_tcp(&mut slow_tcp, 1, 1, &mut tcp), None);

    for i in 1..N {
        submit(&link, i + 1, deposit(i));
        if i % 1_000 == 0 {
            let deadline = Instant::now() + Duration::from_secs(60);
            while seen.load(Ordering::Acquire) + 2_000 < i {
                assert!(
                    Instant::now() < deadline,
                    "the reference subscriber stopped at {}",
                    seen.load(Ordering::Acquire)
                );
                std::thread::yield_now();
            }
        }
    }
    // Matching went on: everything is durable and the reference has it all.
    assert_eq!(link.status().expect("status").seq, N);
    let reference = reference.join().expect("reference subscriber");
    assert_eq!(reference.first().map(|r| r.0), Some(1));

    // In process: what was buffered, then the channel is closed; resume after the last seq.
    while let Some(b) = slow_local.blocking_recv() {
        local.push(kinds(&b));
    }
    let resume = local.last().map_or(0, |r| r.0);
    assert!(resume < N / 2, "the in-process subscriber was cut off early, not served to the end ({resume})");
    let mut rx = link.subscribe_after(resume, 1 << 10).expect("resume");
    while local.len() < N as usize {
        local.push(kinds(&rx.blocking_recv().expect("resumed stream ended early")));
    }
    assert!(local == reference, "in-process resume differs from the uninterrupted stream");

    // TCP: what the socket buffers held, then Goodbye SlowConsumer with the seq to resume from.
    let (reason, resume) = read_tcp(&mut slow_tcp, 2, N, &mut tcp)
        .unwrap_or_else(|| panic!("TCP subscriber was never cut off: got all {N} (raise N)"));
    assert_eq!(reason, GoodbyeReason::SlowConsumer as u8);
    assert_eq!(resume, tcp.len() as u64, "resume from the last seq received");
    let mut c = Connection::connect(&addr, Role::Subscriber, 0, resume).expect("reconnect");
    c.set_read_timeout(Some(Duration::from_secs(120))).expect("timeout");
    assert_eq!(read_tcp(&mut c, resume + 1, N, &mut tcp), None);
    assert!(tcp == reference, "TCP resume differs from the uninterrupted stream");
}
