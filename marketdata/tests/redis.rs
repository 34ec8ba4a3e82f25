//! Against a real redis-server started here on a free loopback port:
//! streams, snapshot keys, pub/sub, and a kill + restart mid-load with the
//! reader resyncing to the same depth as the derived book.

mod common;

use std::net::{Ipv4Addr, TcpListener};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use castle_marketdata::redis_fanout::{depth_key, parse_depth, ticker_channel, FanoutConfig, RedisFanout, RedisReader};
use common::Run;

fn ensure_redis() {
    if Command::new("redis-server").arg("--version").output().is_ok() {
        return;
    }
    let ok = Command::new("apt-get")
        .args(["install", "-y", "redis-server"])
        .env("DEBIAN_FRONTEND", "noninteractive")
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "redis-server is missing and `apt-get install -y redis-server` failed: install the Debian package `redis-server`");
}

fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap().local_addr().unwrap().port()
}

struct Redis(Child);

impl Redis {
    /// A redis-server on a free port. The port was found by binding port 0 and closing it, so
    /// another process may take it first: then ours exits and another port is tried.
    fn start_on_free_port() -> (Redis, u16) {
        for _ in 0..10 {
            let port = free_port();
            if let Some(r) = Redis::try_start(port) {
                return (r, port);
            }
        }
        panic!("redis-server could not bind a free loopback port in 10 attempts");
    }

    /// Restart on a port it had: `None` only if another process took it meanwhile.
    fn start(port: u16) -> Redis {
        Redis::try_start(port)
            .unwrap_or_else(|| panic!("port {port} was taken by another process while redis was down"))
    }

    /// Starts redis-server on `port` and waits until it answers as itself (its process id, so a
    /// server of another test on that port is never mistaken for ours); `None` if it exits
    /// (the port is in use).
    fn try_start(port: u16) -> Option<Redis> {
        // Reaped in Drop (kill + wait), or below if it never comes up.
        #[allow(clippy::zombie_processes)]
        let mut child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start redis-server");
        let url = format!("redis://127.0.0.1:{port}/");
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if child.try_wait().expect("redis-server status").is_some() {
                return None;
            }
            let info = redis::Client::open(url.as_str())
                .and_then(|c| c.get_connection_with_timeout(Duration::from_secs(1)))
                .and_then(|mut c| redis::cmd("INFO").arg("server").query::<String>(&mut c));
            if let Ok(info) = info {
                let pid = info.lines().find_map(|l| l.strip_prefix("process_id:")).map(|p| p.trim().to_string());
                assert_eq!(pid, Some(child.id().to_string()), "another redis-server answers on port {port}");
                return Some(Redis(child));
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("redis-server did not come up on {port} within 60 s");
            }
            std::thread::sleep(Duration::from_millis(20)); // polling a condition with a deadline
        }
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

type Levels = (Vec<(i64, i64)>, Vec<(i64, i64)>);

fn depth_of(f: &RedisFanout, i: u32) -> Levels {
    let d = f.market_data().instrument(i).unwrap().book.depth(usize::MAX);
    let mut b: Vec<_> = d.bids.iter().map(|l| (l.price, l.qty)).collect();
    b.sort();
    (b, d.asks.iter().map(|l| (l.price, l.qty)).collect())
}

fn reader_depth(r: &RedisReader) -> Levels {
    (r.bids.iter().map(|(p, q)| (*p, *q)).collect(), r.asks.iter().map(|(p, q)| (*p, *q)).collect())
}

#[test]
fn redis_streams_snapshots_pubsub_and_restart() {
    ensure_redis();
    let (mut server, port) = Redis::start_on_free_port();
    let url = format!("redis://127.0.0.1:{port}/");

    let mut cfg = FanoutConfig::new(&url);
    cfg.prefix = "t".into();
    cfg.snapshot_interval = Duration::from_millis(20);
    cfg.backoff_min = Duration::from_millis(20);
    cfg.backoff_max = Duration::from_millis(200);
    let mut fan = RedisFanout::new(cfg).unwrap();
    let mut reader = RedisReader::new(&url, "t", 0).unwrap();

    // Pub/sub: a subscriber hears tickers.
    let sub_client = redis::Client::open(url.as_str()).unwrap();
    let mut sub_conn = sub_client.get_connection().unwrap();
    let mut pubsub = sub_conn.as_pubsub();
    pubsub.subscribe(ticker_channel("t", 0)).unwrap();
    pubsub.set_read_timeout(Some(Duration::from_secs(60))).unwrap();

    let mut run = Run::workload(3, 300);
    let phase = |fan: &mut RedisFanout, run: &mut Run, steps: usize, reader: &mut RedisReader| {
        for k in 0..steps {
            let (ev, _) = run.step();
            fan.on_events(&ev).unwrap();
            if k % 500 == 0 {
                fan.flush();
                if reader.poll(0).is_err() {
                    reader.reset();
                }
            }
        }
        fan.flush();
    };
    phase(&mut fan, &mut run, 5_000, &mut reader);
    std::thread::sleep(Duration::from_millis(30));
    fan.flush();
    let msg = pubsub.get_message().expect("ticker published");
    let payload: String = msg.get_payload().unwrap();
    assert!(payload.contains("\"instrument\":0"), "{payload}");

    // Stream and snapshot key contents.
    let mut c = redis::Client::open(url.as_str()).unwrap().get_connection().unwrap();
    let len: u64 = redis::cmd("XLEN").arg("t:{md:0}:stream").query(&mut c).unwrap();
    assert!(len > 1_000, "stream length {len}");
    let snap: String = redis::cmd("GET").arg(depth_key("t", 0)).query(&mut c).unwrap();
    let (n, seq, bids, _) = parse_depth(&snap).unwrap();
    assert!(n > 0 && seq > 0 && !bids.is_empty());

    // Reader catches up and agrees.
    while reader.poll(10).unwrap() > 0 {}
    assert_eq!(reader_depth(&reader), depth_of(&fan, 0));

    // Kill Redis mid-load; the publisher keeps going.
    drop(server);
    phase(&mut fan, &mut run, 3_000, &mut reader);
    assert!(!fan.connected() || fan.stats.errors > 0, "{:?}", fan.stats);
    let dropped = fan.stats.dropped;
    assert!(dropped > 0, "{:?}", fan.stats);
    // Restart on the same port: reconnect with backoff, republish snapshots.
    server = Redis::start(port);
    let deadline = Instant::now() + Duration::from_secs(60);
    while !fan.connected() {
        assert!(Instant::now() < deadline, "no reconnect");
        std::thread::sleep(Duration::from_millis(20));
        fan.flush();
    }
    phase(&mut fan, &mut run, 3_000, &mut reader);
    std::thread::sleep(Duration::from_millis(30));
    fan.flush();
    assert!(fan.stats.reconnects >= 2, "{:?}", fan.stats);

    // The reader notices (connection error or counter jump), resyncs and agrees again.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match reader.poll(10) {
            Ok(0) if reader.n == fan.stream_counter(0) => break,
            Ok(_) => {}
            Err(_) => reader.reset(),
        }
        assert!(Instant::now() < deadline, "reader did not resync");
    }
    assert!(reader.resyncs >= 2, "resyncs {}", reader.resyncs);
    assert_eq!(reader_depth(&reader), depth_of(&fan, 0));
    drop(server);
}
