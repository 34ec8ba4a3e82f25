//! Market data benchmarks (run in release):
//!   cargo run --release -p castle-marketdata --example md_bench -- [commands]
//! 1. engine events -> encoded MoldUDP64 packets (sans-IO, per command batch, p50/p99)
//! 2. the same, including `send_to` on a loopback UDP socket
//! 3. feed handler messages/s (decode + sequence + book)
//! 4. Redis fan-out events/s, pipelined vs one command per event (needs redis-server)
//! 5. the `castle serve` path: in-process engine -> consumer -> feed publisher -> UDP on loopback,
//!    engine apply time to packet received, paced, against a raw UDP send -> receive baseline in the same run

use std::net::{Ipv4Addr, TcpListener, UdpSocket};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use castle_engine::workload::{Workload, WorkloadConfig};
use castle_engine::{Event, FastEngine};
use castle_marketdata::handler::{HandlerConfig, HandlerCore};
use castle_marketdata::mold;
use castle_marketdata::publisher::FeedCore;
use castle_marketdata::redis_fanout::{FanoutConfig, RedisFanout};
use hdrhistogram::Histogram;

fn main() {
    let n: usize = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(300_000);
    let cfg = WorkloadConfig { book_depth: 10_000, ..WorkloadConfig::default() };
    let mut w = Workload::new(cfg);
    let mut engine = FastEngine::new(Workload::limits(&cfg));
    let mut batches: Vec<Vec<Event>> = Vec::with_capacity(n);
    let mut spec = None;
    let mut ts = 1_700_000_000_000_000_000u64;
    let setup: Vec<_> = w.setup().into_iter().chain(w.fill_book()).collect();
    let total = setup.len() + n;
    let mut cmds = setup.into_iter();
    for _ in 0..total {
        let c = cmds.next().unwrap_or_else(|| w.next_command());
        ts += 1_000;
        let mut out = Vec::new();
        engine.apply(ts, &c, &mut out);
        if spec.is_none() {
            spec = engine.instrument(Workload::INSTRUMENT).copied();
        }
        batches.push(out);
    }
    let book_events: usize = batches
        .iter()
        .map(|b| {
            b.iter()
                .filter(|e| {
                    matches!(
                        e.kind,
                        castle_engine::EventKind::BookAdd { .. }
                            | castle_engine::EventKind::BookReduce { .. }
                            | castle_engine::EventKind::BookRemove { .. }
                            | castle_engine::EventKind::Trade { .. }
                    )
                })
                .count()
        })
        .sum();
    println!(
        "{} commands, {} book events, {} resting orders at end",
        batches.len(),
        book_events,
        engine.resting_orders(0)
    );

    // 1 + 2: encode (and send).
    let sink = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    let sink_addr = sink.local_addr().unwrap();
    let tx = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    let mut packets: Vec<Vec<u8>> = Vec::new();
    for with_send in [false, true] {
        let mut core = FeedCore::new(mold::session("BENCH"), 1_400, 1 << 20);
        core.register(spec.unwrap());
        let mut h = Histogram::<u64>::new(3).unwrap();
        let mut bytes = 0usize;
        let mut npk = 0usize;
        let t0 = Instant::now();
        for b in &batches {
            let t = Instant::now();
            core.publish(b, &mut |p| {
                bytes += p.len();
                npk += 1;
                if with_send {
                    let _ = tx.send_to(p, sink_addr);
                } else if packets.len() < 2_000_000 {
                    packets.push(p.to_vec());
                }
            })
            .unwrap();
            if !b.is_empty() {
                h.record(t.elapsed().as_nanos() as u64).unwrap();
            }
        }
        let el = t0.elapsed();
        println!(
            "events->packets{}: {:.0} events/s, {} packets, {} bytes, per command batch p50 {} ns p99 {} ns p99.9 {} ns",
            if with_send { " + send_to(loopback)" } else { " (sans-IO)" },
            book_events as f64 / el.as_secs_f64(),
            npk,
            bytes,
            h.value_at_quantile(0.5),
            h.value_at_quantile(0.99),
            h.value_at_quantile(0.999)
        );
    }

    // 3: feed handler.
    let msgs: usize = packets.iter().map(|p| mold::Packet::parse(p).unwrap().header.count as usize).sum();
    let mut runs = Vec::new();
    for _ in 0..3 {
        let mut hc = HandlerCore::new(HandlerConfig::default());
        let t0 = Instant::now();
        let now = Instant::now();
        for p in &packets {
            hc.on_packet(p, now, &mut |_, _| {});
        }
        let el = t0.elapsed();
        assert!(hc.in_sync());
        runs.push(msgs as f64 / el.as_secs_f64());
    }
    runs.sort_by(|a, b| a.total_cmp(b));
    println!("feed handler: {msgs} messages, median of 3 runs {:.0} messages/s", runs[1]);

    // 5: the service path, paced.
    let rate: u64 = std::env::args().nth(2).and_then(|a| a.parse().ok()).unwrap_or(5_000);
    service_path(cfg, n.min(rate as usize * 6), rate);

    // 4: Redis.
    if Command::new("redis-server").arg("--version").output().is_err() {
        println!("redis: not measured (install the Debian package redis-server)");
        return;
    }
    let port = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap().local_addr().unwrap().port();
    let mut child = Command::new("redis-server")
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let url = format!("redis://127.0.0.1:{port}/");
    let limit = batches.len().min(200_000);
    for unpipelined in [false, true] {
        let mut c = FanoutConfig::new(&url);
        c.unpipelined = unpipelined;
        c.prefix = if unpipelined { "u".into() } else { "p".into() };
        let mut f = RedisFanout::new(c).unwrap();
        // The one-by-one baseline is slow: a slice of the run is enough to measure it.
        let take = if unpipelined { limit / 10 } else { limit };
        let events: usize = batches[..take].iter().map(|b| b.len()).sum();
        let t0 = Instant::now();
        for b in &batches[..take] {
            f.on_events(b).unwrap();
        }
        f.flush();
        let el = t0.elapsed();
        println!(
            "redis {}: {} engine events -> {} stream entries in {:.2}s = {:.0} events/s, {:.0} XADD/s (dropped {}, errors {})",
            if unpipelined { "one command per event" } else { "pipelined (1000/pipeline)" },
            events,
            f.stats.entries,
            el.as_secs_f64(),
            events as f64 / el.as_secs_f64(),
            f.stats.entries as f64 / el.as_secs_f64(),
            f.stats.dropped,
            f.stats.errors
        );
    }
    // End to end: engine event (stamped with wall-clock time) -> fan-out ->
    // Redis -> a reader blocked in XREAD; lag of the newest entry per read.
    let mut c = FanoutConfig::new(&url);
    c.prefix = "e2e".into();
    let mut f = RedisFanout::new(c).unwrap();
    let wall = || std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stop2 = stop.clone();
    let url2 = url.clone();
    let reader = std::thread::spawn(move || {
        let mut r = castle_marketdata::redis_fanout::RedisReader::new(&url2, "e2e", 0).unwrap();
        let mut h = Histogram::<u64>::new(3).unwrap();
        while !stop2.load(std::sync::atomic::Ordering::Relaxed) {
            if let Ok(n) = r.poll(5) {
                if n > 0 && r.last_ts > 0 {
                    h.record(wall().saturating_sub(r.last_ts)).unwrap();
                }
            }
        }
        h
    });
    let e2e = batches.len().min(40_000);
    for (i, b) in batches[..e2e].iter().enumerate() {
        let now = wall();
        let stamped: Vec<Event> = b.iter().map(|e| Event { ts: now, ..*e }).collect();
        f.on_events(&stamped).unwrap();
        // About 20k commands/s in chunks of 20: a realistic flow, not a flood.
        if i % 20 == 19 {
            f.flush();
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    f.flush();
    std::thread::sleep(Duration::from_millis(100));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let h = reader.join().unwrap();
    println!(
        "engine -> redis -> subscriber lag ({} reads, flush every 20 commands): p50 {} us p99 {} us max {} us",
        h.len(),
        h.value_at_quantile(0.5) / 1_000,
        h.value_at_quantile(0.99) / 1_000,
        h.max() / 1_000
    );
    let _ = child.kill();
    let _ = child.wait();
}

fn wall_ns() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64)
}

/// Receives datagrams until `stop`; for every Castle 'q' message records
/// receive time minus its engine timestamp (the time the engine applied the command).
/// Only commands after `min_seq` count (the set-up replay carries old engine times).
fn receive_lags(sock: UdpSocket, stop: std::sync::Arc<std::sync::atomic::AtomicBool>, min_seq: u64) -> Histogram<u64> {
    use castle_marketdata::itch::Message;
    sock.set_read_timeout(Some(Duration::from_millis(10))).unwrap();
    let mut h = Histogram::<u64>::new(3).unwrap();
    let mut buf = [0u8; 2048];
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        let Ok(n) = sock.recv(&mut buf) else { continue };
        let now = wall_ns();
        let Ok(p) = mold::Packet::parse(&buf[..n]) else { continue };
        for (_, m) in p.messages() {
            if let Ok(Message::EngineSequence { ts, engine_seq, .. }) = Message::decode(m) {
                if engine_seq <= min_seq {
                    continue;
                }
                h.record(now.saturating_sub(ts).max(1)).unwrap();
            }
        }
    }
    h
}

/// Paces `rate` commands/s through an InProcessEngine with the market data
/// service attached (what `castle serve` runs) and measures engine apply ->
/// feed packet received on loopback. Baseline: the same pacing of a raw
/// 64-byte UDP send -> receive on loopback in the same run.
fn service_path(cfg: WorkloadConfig, n: usize, rate: u64) {
    use castle_link::{EngineLink, EngineRequest, InProcessEngine, Origin};
    use castle_marketdata::publisher::PublisherConfig;
    use castle_marketdata::service::{MarketDataService, ServiceConfig};
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    // Sleep while the next send is far off, spin the last 100 us: the pacer
    // must not take a whole core from the threads it measures on a 2-core VM.
    let pace = |i: usize, start: Instant| {
        let due = start + Duration::from_nanos(i as u64 * 1_000_000_000 / rate);
        let left = due.saturating_duration_since(Instant::now());
        if left > Duration::from_micros(200) {
            std::thread::sleep(left - Duration::from_micros(100));
        }
        while Instant::now() < due {
            std::hint::spin_loop();
        }
    };
    // Baseline: raw UDP on loopback, same rate, same receiver thread pattern.
    let rx = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    let rx_addr = rx.local_addr().unwrap();
    rx.set_read_timeout(Some(Duration::from_millis(10))).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let stop2 = stop.clone();
    let base_rx = std::thread::spawn(move || {
        let mut h = Histogram::<u64>::new(3).unwrap();
        let mut buf = [0u8; 64];
        while !stop2.load(Ordering::Relaxed) {
            if let Ok(8..) = rx.recv(&mut buf) {
                let sent = u64::from_be_bytes(buf[..8].try_into().unwrap());
                h.record(wall_ns().saturating_sub(sent).max(1)).unwrap();
            }
        }
        h
    });
    let tx = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    let start = Instant::now();
    for i in 0..n {
        pace(i, start);
        let mut d = [0u8; 64];
        d[..8].copy_from_slice(&wall_ns().to_be_bytes());
        let _ = tx.send_to(&d, rx_addr);
    }
    std::thread::sleep(Duration::from_millis(100));
    stop.store(true, Ordering::Relaxed);
    let base = base_rx.join().unwrap();

    // The service path.
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    let mut w = Workload::new(cfg);
    let setup: Vec<_> = w.setup().into_iter().chain(w.fill_book()).collect();
    let engine = InProcessEngine::start(Workload::limits(&cfg), &setup, 65_536);
    let sink = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    let mut feed = PublisherConfig::loopback(sink.local_addr().unwrap());
    feed.rerequest = None;
    feed.snapshot = None;
    let svc_cfg = ServiceConfig { feed, redis: None, consumer: Default::default() };
    let link: Arc<dyn EngineLink> = engine.clone();
    let mut probe = engine.subscribe(n + 16).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let stop2 = stop.clone();
    let min_seq = setup.len() as u64;
    let receiver = std::thread::spawn(move || receive_lags(sink, stop2, min_seq));
    let svc = MarketDataService::start(link, svc_cfg, rt.handle()).unwrap();
    // Let the service replay the set-up (the book fill) before the paced part starts.
    while svc.feed_stats().processed.load(Ordering::Relaxed) < setup.len() as u64 {
        std::thread::sleep(Duration::from_millis(10));
    }
    let (mut last_seq, mut seen) = (0, 0);
    let start = Instant::now();
    for i in 0..n {
        pace(i, start);
        let req = EngineRequest { origin: Origin { gateway: 77, request: i as u64 + 1 }, command: w.next_command() };
        while engine.submit(req).is_err() {
            std::hint::spin_loop();
        }
        while let Ok(b) = probe.try_recv() {
            last_seq = last_seq.max(b.seq);
            seen += usize::from(b.origin.is_some());
        }
    }
    let offered = n as f64 / start.elapsed().as_secs_f64();
    while seen < n {
        let b = probe.blocking_recv().unwrap();
        last_seq = last_seq.max(b.seq);
        if b.origin.is_some() {
            seen += 1;
        }
    }
    while svc.feed_stats().processed.load(Ordering::Relaxed) < last_seq {
        std::thread::sleep(Duration::from_millis(5));
    }
    std::thread::sleep(Duration::from_millis(200));
    stop.store(true, Ordering::Relaxed);
    let h = receiver.join().unwrap();
    svc.shutdown();
    let us = |h: &Histogram<u64>, q: f64| h.value_at_quantile(q) as f64 / 1_000.0;
    println!(
        "castle serve path, engine apply -> feed packet received (loopback, {:.0} commands/s offered, {} commands, {} packets): p50 {:.1} us p99 {:.1} us p99.9 {:.1} us max {:.1} us; resubscribes {}",
        offered,
        n,
        h.len(),
        us(&h, 0.5),
        us(&h, 0.99),
        us(&h, 0.999),
        h.max() as f64 / 1_000.0,
        svc.feed_stats().resubscribes.load(Ordering::Relaxed)
    );
    println!(
        "baseline, raw 64-byte UDP send -> receive (loopback, same pacing, {} datagrams): p50 {:.1} us p99 {:.1} us p99.9 {:.1} us max {:.1} us",
        base.len(),
        us(&base, 0.5),
        us(&base, 0.99),
        us(&base, 0.999),
        base.max() as f64 / 1_000.0
    );
}
