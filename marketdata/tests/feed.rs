//! Feed end to end: encoder -> packets -> handler reproduces the engine's
//! book at every engine seq; over UDP through a lossy, reordering relay with
//! re-request and snapshot recovery; multicast on loopback.

mod common;

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use castle_engine::{Event, InstrumentSpec};
use castle_marketdata::feedbook::FeedBook;
use castle_marketdata::handler::{FeedClient, FeedClientConfig, HandlerConfig, HandlerCore};
use castle_marketdata::mold;
use castle_marketdata::publisher::{FeedCore, Publisher, PublisherConfig};
use common::{engine_book, our_book, Run};

type Books = HashMap<u64, Vec<[Vec<(u64, i64, i64)>; 2]>>;

/// Runs the engine and records, per engine seq, the books of `instruments`.
type Batches = Vec<(Vec<Event>, Vec<InstrumentSpec>)>;

fn record(mut run: Run, steps: usize, instruments: &[u32]) -> (Batches, Books) {
    let mut batches = Vec::new();
    let mut books = HashMap::new();
    for _ in 0..steps {
        let (ev, specs) = run.step();
        let seq = run.engine.seq();
        books.insert(seq, instruments.iter().map(|&i| engine_book(&run.engine, i)).collect());
        batches.push((ev, specs));
    }
    (batches, books)
}

fn check(books: &Books, instruments: &[u32], seq: u64, fb: &FeedBook) -> Result<(), String> {
    let Some(want) = books.get(&seq) else {
        return Err(format!("no engine book recorded for seq {seq}"));
    };
    for (k, &i) in instruments.iter().enumerate() {
        let got = fb.by_instrument(i).map(|x| our_book(&x.book)).unwrap_or_default();
        if got != want[k] {
            return Err(format!("instrument {i} differs at engine seq {seq}"));
        }
    }
    Ok(())
}

#[test]
fn handler_rebuilds_engine_book_at_every_seq_in_process() {
    for (run, steps, insts) in [
        (Run::chaos(3), 5_000, vec![0, 1]),
        (Run::chaos(4), 5_000, vec![0, 1]),
        (Run::workload(5, 300), 8_000, vec![0]),
    ] {
        let (batches, books) = record(run, steps, &insts);
        let mut core = FeedCore::new(mold::session("TEST"), 1_400, 1 << 16);
        let mut h = HandlerCore::new(HandlerConfig::default());
        let mut checked = 0;
        let mut failures = Vec::new();
        for (ev, specs) in &batches {
            for s in specs {
                core.register(*s);
            }
            let mut pkts = Vec::new();
            core.publish(ev, &mut |p| pkts.push(p.to_vec())).unwrap();
            for p in pkts {
                h.on_packet(&p, Instant::now(), &mut |seq, fb| {
                    checked += 1;
                    if let Err(e) = check(&books, &insts, seq, fb) {
                        failures.push(e);
                    }
                });
            }
        }
        assert!(failures.is_empty(), "{:?}", &failures[..failures.len().min(5)]);
        assert!(checked > steps / 10, "checked {checked}");
        assert!(h.in_sync());
        // The publisher's own snapshot book agrees too.
        let snap = castle_marketdata::publisher::snapshot_bytes(&core.shared());
        let mut h2 = HandlerCore::new(HandlerConfig::default());
        h2.load_snapshot(&snap, &mut |seq, fb| check(&books, &insts, seq, fb).unwrap()).unwrap();
        assert_eq!(h2.next_seq(), h.next_seq());
    }
}

/// Forwards datagrams from `from` to `to`, dropping `loss_pct` percent and
/// swapping neighbours `reorder_pct` percent of the time. `blackout` drops
/// everything between two packet counts (a long outage forcing a snapshot).
fn relay(
    from: UdpSocket,
    to: SocketAddr,
    loss_pct: u64,
    reorder_pct: u64,
    blackout: (u64, u64),
    stop: Arc<AtomicBool>,
) {
    std::thread::spawn(move || {
        let out = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        from.set_read_timeout(Some(Duration::from_millis(20))).unwrap();
        let mut rng = castle_engine::workload::Rng::new(99);
        let mut held: Option<Vec<u8>> = None;
        let mut buf = [0u8; 2048];
        let mut n_pkts = 0u64;
        while !stop.load(Ordering::Relaxed) {
            let n = match from.recv(&mut buf) {
                Ok(n) => n,
                Err(_) => {
                    if let Some(h) = held.take() {
                        let _ = out.send_to(&h, to);
                    }
                    continue;
                }
            };
            n_pkts += 1;
            if (blackout.0..blackout.1).contains(&n_pkts) || rng.chance(loss_pct) {
                continue;
            }
            let pkt = buf[..n].to_vec();
            if let Some(h) = held.take() {
                let _ = out.send_to(&pkt, to);
                let _ = out.send_to(&h, to);
            } else if rng.chance(reorder_pct) {
                held = Some(pkt);
            } else {
                let _ = out.send_to(&pkt, to);
            }
        }
    });
}

struct Outcome {
    checked: usize,
    stats: castle_marketdata::handler::HandlerStats,
    final_ok: bool,
}

/// Publishes a recorded run through a relay into a FeedClient and checks every engine seq the client reaches.
fn lossy_run(loss: u64, reorder: u64, blackout: (u64, u64), max_gap: u64) -> Outcome {
    let insts = vec![0u32, 1];
    let (batches, books) = record(Run::chaos(21), 6_000, &insts);
    let books = Arc::new(books);
    let relay_in = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    let mut cfg = PublisherConfig::loopback(relay_in.local_addr().unwrap());
    cfg.heartbeat = Duration::from_millis(20);
    cfg.max_packet = 400; // small packets: more of them to lose and reorder
    let publisher = Publisher::start(cfg).unwrap();
    let mut client = FeedClient::new(FeedClientConfig {
        bind: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
        group: None,
        rerequest: publisher.rerequest_addr,
        snapshot: publisher.snapshot_addr,
        handler: HandlerConfig {
            rerequest_timeout: Duration::from_millis(30),
            max_rerequest_gap: max_gap,
            ..HandlerConfig::default()
        },
    })
    .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    relay(relay_in, client.local_addr().unwrap(), loss, reorder, blackout, stop.clone());

    let last_seq = *books.keys().max().unwrap();
    let books2 = books.clone();
    let progress = Arc::new(AtomicU64::new(0));
    let progress2 = progress.clone();
    let client_thread = std::thread::spawn(move || {
        let mut checked = 0usize;
        let mut failures = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline && !(client.core.end_of_session && client.core.in_sync()) {
            client
                .run_for(Duration::from_millis(100), &mut |seq, fb| {
                    checked += 1;
                    if let Err(e) = check(&books2, &[0, 1], seq, fb) {
                        failures.push(e);
                    }
                })
                .unwrap();
            if client.core.in_sync() {
                progress2.store(client.core.next_seq(), Ordering::Release);
            }
        }
        assert!(failures.is_empty(), "{:?}", &failures[..failures.len().min(5)]);
        (checked, client.core.stats, client.core.book.engine_seq, client.core.book.clone())
    });
    for (i, (ev, specs)) in batches.into_iter().enumerate() {
        for s in specs {
            publisher.register(s).unwrap();
        }
        publisher.publish(ev).unwrap();
        if i % 200 == 0 {
            // Pace the producer a little so the relay's socket buffers are not the bottleneck.
            publisher.flush().unwrap();
            std::thread::sleep(Duration::from_millis(2));
        }
    }
    // Shut down (which also stops the re-request and snapshot servers) only
    // once the client has recovered everything published.
    let end = publisher.flush().unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while progress.load(Ordering::Acquire) < end && !client_thread.is_finished() {
        assert!(Instant::now() < deadline, "client stuck at {} of {end}", progress.load(Ordering::Acquire));
        std::thread::sleep(Duration::from_millis(5));
    }
    publisher.shutdown();
    let (checked, stats, engine_seq, fb) = client_thread.join().unwrap();
    stop.store(true, Ordering::Relaxed);
    // The final state equals the engine's final state (the last command that touched the book).
    let final_ok = check(&books, &insts, engine_seq, &fb).is_ok() && engine_seq <= last_seq;
    Outcome { checked, stats, final_ok }
}

#[test]
fn lossy_reordering_relay_recovers_by_rerequest() {
    let o = lossy_run(5, 10, (0, 0), 50_000);
    assert!(o.final_ok);
    assert!(o.stats.rerequests > 0, "{:?}", o.stats);
    assert!(o.checked > 500, "checked {} {:?}", o.checked, o.stats);
}

#[test]
fn long_outage_recovers_by_snapshot() {
    // Packets 100..500 never arrive: a gap far beyond what re-requesting is allowed to fill.
    let o = lossy_run(0, 0, (100, 500), 100);
    assert!(o.final_ok);
    assert!(o.stats.snapshots >= 1, "{:?}", o.stats);
    assert!(o.checked > 100, "checked {} {:?}", o.checked, o.stats);
}

#[test]
fn small_gaps_without_rerequest_server_fall_back_to_snapshot() {
    // Exercised through the core: no re-request server configured means snapshot.
    let (batches, books) = record(Run::chaos(8), 2_000, &[0, 1]);
    let mut core = FeedCore::new(mold::session("TEST"), 300, 1 << 16);
    let mut pkts = Vec::new();
    for (ev, specs) in &batches {
        for s in specs {
            core.register(*s);
        }
        core.publish(ev, &mut |p| pkts.push(p.to_vec())).unwrap();
    }
    // Late joiner: first packet it sees is in the middle; a snapshot taken now
    // plus the packets after it gives the final book.
    let mid = pkts.len() / 2;
    let mut h = HandlerCore::new(HandlerConfig { max_rerequest_gap: 10, ..HandlerConfig::default() });
    let a = h.on_packet(&pkts[mid], Instant::now(), &mut |_, _| {});
    assert_eq!(a, castle_marketdata::handler::Action::Snapshot);
    let snap = castle_marketdata::publisher::snapshot_bytes(&core.shared());
    h.load_snapshot(&snap, &mut |seq, fb| check(&books, &[0, 1], seq, fb).unwrap()).unwrap();
    assert!(h.in_sync());
}

#[test]
fn multicast_on_loopback_with_ab_groups() {
    let group_a = Ipv4Addr::new(239, 255, 77, 1);
    let group_b = Ipv4Addr::new(239, 255, 77, 2);
    let port = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap().local_addr().unwrap().port();
    let mut client = FeedClient::new(FeedClientConfig {
        bind: SocketAddr::from((Ipv4Addr::UNSPECIFIED, port)),
        group: Some((group_a, Ipv4Addr::LOCALHOST)),
        rerequest: None,
        snapshot: None,
        handler: HandlerConfig::default(),
    })
    .unwrap();
    let mut client_b = FeedClient::new(FeedClientConfig {
        bind: SocketAddr::from((Ipv4Addr::UNSPECIFIED, port)),
        group: Some((group_b, Ipv4Addr::LOCALHOST)),
        rerequest: None,
        snapshot: None,
        handler: HandlerConfig::default(),
    })
    .unwrap();
    let mut cfg = PublisherConfig::loopback(SocketAddr::from((group_a, port)));
    cfg.destination_b = Some(SocketAddr::from((group_b, port)));
    cfg.ttl = 0;
    let (batches, books) = record(Run::chaos(5), 1_500, &[0, 1]);
    let publisher = Publisher::start(cfg).unwrap();
    for (ev, specs) in batches {
        for s in specs {
            publisher.register(s).unwrap();
        }
        publisher.publish(ev).unwrap();
    }
    publisher.flush().unwrap();
    publisher.shutdown();
    let mut last = 0;
    for c in [&mut client, &mut client_b] {
        c.run_for(Duration::from_secs(10), &mut |seq, fb| {
            check(&books, &[0, 1], seq, fb).unwrap();
            last = seq;
        })
        .unwrap();
        assert!(c.core.end_of_session && c.core.in_sync(), "{:?}", c.core.stats);
    }
    assert!(last > 1_000);
    // Both groups carried every packet: A and B receivers each saw all of them
    // (a socket bound to the port hears both groups, so duplicates are expected and skipped).
    assert!(client.core.stats.duplicates > 0 || client_b.core.stats.duplicates > 0 || client.core.stats.messages > 0);
}

#[test]
fn feed_cli_follows_a_session_to_its_end() {
    use castle_marketdata::cli::{feed_cli, parse_args};
    assert!(parse_args(&[]).is_err());
    assert!(parse_args(&["--listen".into(), "nonsense".into()]).is_err());
    let port = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap().local_addr().unwrap().port();
    let publisher = Publisher::start(PublisherConfig::loopback(SocketAddr::from((Ipv4Addr::LOCALHOST, port)))).unwrap();
    let args: Vec<String> = [
        "--listen".to_string(),
        format!("127.0.0.1:{port}"),
        "--rerequest".into(),
        publisher.rerequest_addr.unwrap().to_string(),
        "--snapshot".into(),
        publisher.snapshot_addr.unwrap().to_string(),
        "--seconds".into(),
        "20".into(),
    ]
    .to_vec();
    assert_eq!(parse_args(&args).unwrap().depth, 5);
    let cli = std::thread::spawn(move || feed_cli(&args));
    // Publish only once the CLI has bound its port: End of Session sent
    // before that would never reach it.
    let deadline = Instant::now() + Duration::from_secs(60);
    while !udp_port_bound(port) {
        assert!(Instant::now() < deadline, "castle feed never bound 127.0.0.1:{port}");
        std::thread::sleep(Duration::from_millis(5));
    }
    let mut run = Run::chaos(2);
    for _ in 0..1_000 {
        let (ev, specs) = run.step();
        for s in specs {
            publisher.register(s).unwrap();
        }
        publisher.publish(ev).unwrap();
    }
    publisher.flush().unwrap();
    let started = Instant::now();
    publisher.shutdown();
    cli.join().unwrap().unwrap();
    assert!(started.elapsed() < Duration::from_secs(15), "the CLI should stop at End of Session");
}

#[test]
fn inline_publisher_sends_heartbeats_when_idle_and_ends_the_session() {
    use castle_marketdata::publisher::InlinePublisher;
    let rx = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    rx.set_read_timeout(Some(Duration::from_millis(20))).unwrap();
    let mut cfg = PublisherConfig::loopback(rx.local_addr().unwrap());
    cfg.heartbeat = Duration::from_millis(30);
    let mut p = InlinePublisher::start(cfg).unwrap();
    let mut buf = [0u8; 2048];
    let mut recv = |p: &mut InlinePublisher| -> Option<(u64, u16)> {
        // The caller drives time: tick until a datagram arrives (deadline 60 s).
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            p.tick();
            if let Ok(n) = rx.recv(&mut buf) {
                let h = mold::Packet::parse(&buf[..n]).unwrap().header;
                return Some((h.seq, h.count));
            }
        }
        None
    };
    assert_eq!(recv(&mut p), Some((1, 1)), "System Event 'O' first");
    assert_eq!(recv(&mut p), Some((2, 0)), "then a heartbeat announcing seq 2");
    p.shutdown();
    let mut eos = 0;
    while let Ok(n) = rx.recv(&mut buf) {
        let h = mold::Packet::parse(&buf[..n]).unwrap().header;
        eos += usize::from(h.is_end_of_session() && h.seq == 3);
    }
    assert_eq!(eos, 3, "'C' took seq 2; End of Session three times announcing seq 3");
}

/// True when some socket is bound to UDP `port` (Linux: /proc/net/udp lists
/// the local address as hex `ADDR:PORT`).
fn udp_port_bound(port: u16) -> bool {
    let needle = format!(":{port:04X} ");
    ["/proc/net/udp", "/proc/net/udp6"].iter().any(|f| {
        std::fs::read_to_string(f)
            .map(|t| {
                t.lines()
                    .skip(1)
                    .any(|l| l.split_whitespace().nth(1).is_some_and(|a| format!("{a} ").ends_with(&needle)))
            })
            .unwrap_or(false)
    })
}
