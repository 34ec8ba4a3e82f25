//! Market data benchmarks (run in release):
//!   cargo run --release -p castle-marketdata --example md_bench -- [commands]
//! 1. engine events -> encoded MoldUDP64 packets (sans-IO, per command batch, p50/p99)
//! 2. the same, including `send_to` on a loopback UDP socket
//! 3. feed handler messages/s (decode + sequence + book)
//! 4. Redis fan-out events/s, pipelined vs one command per event (needs redis-server)

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

    // 4: Redis.
    if Command::new("redis-server").arg("--version").output().is_err() {
        println!("redis: skipped (install the Debian package redis-server)");
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
