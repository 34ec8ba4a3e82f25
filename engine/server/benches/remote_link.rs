//! `cargo bench -p castle-engine-server --bench remote_link`: what running a gateway in its own process costs, and the engine's TCP
//! front ends compared, each against its baseline in the same run (alternating rounds):
//!
//! 1. **Round trip**: one command submitted, the gateway waits for that command's batch in the
//!    engine stream (how the FIX and REST gateways learn an order's fate), then the next:
//!    `RemoteLink` to a `castle engine`-style server over loopback TCP vs `DurableLink` in
//!    process. Both journal with fsync before releasing the batch.
//!    The remote side runs on both TCP front ends (io_uring, std threads).
//! 2. **Commands/s over TCP**: `--connections` gateway connections each keep `--window`
//!    commands in flight until `--commands` are acknowledged, against the io_uring front end and
//!    the std-thread front end.
//! 3. **Subscriber fan-out**: `FANOUT_SUBSCRIBERS` version-2 subscribers follow the stream while
//!    one gateway connection sends `FANOUT_COMMANDS` commands flat out; per delivered event the
//!    latency from the engine's timestamp (taken when the command is sequenced, so it includes
//!    the group commit) to its arrival at the subscriber, and events delivered per second to all
//!    subscribers together, on both front ends.

use std::io::{BufWriter, Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

type Result<T> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;

macro_rules! bail {
    ($($t:tt)*) => { return Err(format!($($t)*).into()) };
}
use castle_engine::codec::encode_command;
use castle_engine::{Command, InstrumentSpec};
use castle_engine_server::net_uring::NetChoice;
use castle_engine_server::proto::{self, FrameDecoder, Role, ServerFrame};
use castle_engine_server::{Config, DurableLink, RemoteConfig, RemoteLink, Server};
use castle_link::{EngineBatch, EngineLink, EngineRequest, LinkError, Origin};
use hdrhistogram::Histogram;

/// Settings, from the environment (`REMOTE_BENCH_*`), defaults in brackets.
struct RemoteArgs {
    /// Scratch directory for the journals [a temporary directory].
    dir: std::path::PathBuf,
    /// Round trips per round [2000].
    round_trips: usize,
    /// Commands per throughput round [500000].
    commands: u64,
    /// Gateway connections [4].
    connections: u64,
    /// Commands in flight per connection [4096].
    window: u64,
    /// Alternating rounds of each comparison [2].
    rounds: usize,
    /// Subscribers of the fan-out case [16].
    fanout_subscribers: usize,
    /// Commands of a fan-out round [200000].
    fanout_commands: u64,
}

fn env<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(format!("REMOTE_BENCH_{name}")).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn main() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let a = RemoteArgs {
        dir: std::env::var_os("REMOTE_BENCH_DIR").map(Into::into).unwrap_or_else(|| tmp.path().to_path_buf()),
        round_trips: env("ROUND_TRIPS", 2_000),
        commands: env("COMMANDS", 500_000),
        connections: env("CONNECTIONS", 4),
        window: env("WINDOW", 4_096),
        rounds: env("ROUNDS", 2),
        fanout_subscribers: env("FANOUT_SUBSCRIBERS", 16),
        fanout_commands: env("FANOUT_COMMANDS", 200_000),
    };
    run(a)
}

const GW: u32 = 5;

fn setup_cmds() -> Vec<Command> {
    vec![
        Command::AddInstrument(InstrumentSpec::demo(0, "BTC-USDT", 1, 2, 6_000_000)),
        Command::Deposit { account: 1, asset: 2, amount: 1 << 50 },
    ]
}

fn deposit(i: u64) -> Command {
    Command::Deposit { account: 1 + (i % 64) as u32, asset: 2, amount: 1 }
}

fn config(dir: &std::path::Path, listen: &str) -> Config {
    let mut cfg = Config::new(dir, listen);
    cfg.snapshot_every = 0;
    cfg.inbox_capacity = 65_536;
    cfg
}

/// Sequential round trips through `link`: submit, wait for our own batch, repeat.
fn round_trips(link: &dyn EngineLink, first_request: u64, n: usize) -> Result<Histogram<u64>> {
    let mut rx = link.subscribe(1_024).map_err(|e| format!("subscribe: {e}"))?;
    let mut h = Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3)?;
    for i in 0..n as u64 {
        let request = first_request + i;
        let t = Instant::now();
        let req = EngineRequest { origin: Origin { gateway: GW, request }, command: deposit(i) };
        loop {
            match link.submit(req) {
                Ok(()) => break,
                Err(LinkError::Busy) => std::thread::yield_now(),
                Err(e) => bail!("submit: {e}"),
            }
        }
        loop {
            let b: Arc<EngineBatch> = rx.blocking_recv().ok_or("stream ended")?;
            if b.origin == Some(Origin { gateway: GW, request }) {
                break;
            }
        }
        h.record(t.elapsed().as_nanos() as u64)?;
    }
    Ok(h)
}

fn line(what: &str, h: &Histogram<u64>) {
    let us = |q: f64| h.value_at_quantile(q) as f64 / 1_000.0;
    println!(
        "  {what:<28} n={} p50 {:>8.1} us  p99 {:>8.1} us  p99.9 {:>8.1} us  max {:>8.1} us  ({:.0} round trips/s)",
        h.len(),
        us(0.5),
        us(0.99),
        us(0.999),
        h.max() as f64 / 1_000.0,
        1e9 / h.mean().max(1.0)
    );
}

fn in_process(dir: &std::path::Path, n: usize) -> Result<Histogram<u64>> {
    let link = DurableLink::start(config(dir, "")).map_err(|e| format!("DurableLink: {e}"))?;
    for c in setup_cmds() {
        let _ = link.submit(EngineRequest { origin: Origin { gateway: 0, request: 0 }, command: c });
    }
    link.status()?;
    let first = link.first_request(GW);
    let h = round_trips(link.as_ref(), first, n)?;
    link.shutdown()?;
    Ok(h)
}

fn remote(dir: &std::path::Path, net: NetChoice, n: usize) -> Result<Histogram<u64>> {
    let mut cfg = config(dir, "127.0.0.1:0");
    cfg.net = net;
    let server = Server::start(cfg).map_err(|e| format!("server: {e}"))?;
    let addr = server.local_addr().ok_or("no address")?.to_string();
    let gw = server.local_gateway(0, 16);
    for c in setup_cmds() {
        gw.submit(0, c)?;
    }
    server.status()?;
    let link = RemoteLink::connect(RemoteConfig::new(addr, GW))?;
    let first = link.first_request(GW);
    let h = round_trips(link.as_ref(), first, n)?;
    drop(link);
    server.shutdown()?;
    Ok(h)
}

/// One gateway connection keeping `window` commands in flight; returns when `n` are acknowledged.
fn pump(addr: &str, gateway: u32, n: u64, window: u64, done: &std::sync::Barrier) -> Result<()> {
    let s = TcpStream::connect(addr)?;
    s.set_nodelay(true)?;
    let mut w = BufWriter::with_capacity(1 << 16, s.try_clone()?);
    proto::write_frame(&mut w, proto::HELLO, &proto::hello(Role::Gateway, gateway, 0))?;
    w.flush()?;
    let acked = Arc::new(AtomicU64::new(0));
    let reader = {
        let (mut r, acked) = (s.try_clone()?, acked.clone());
        std::thread::spawn(move || -> Result<()> {
            let mut d = FrameDecoder::new(proto::MAX_SERVER_FRAME);
            let mut buf = vec![0u8; 1 << 16];
            let mut seen = 0;
            while seen < n {
                let k = r.read(&mut buf)?;
                if k == 0 {
                    bail!("server closed after {seen} acks");
                }
                d.extend(&buf[..k]);
                while let Some((ty, body)) = d.next_frame()? {
                    match proto::parse_server_frame(ty, body)? {
                        ServerFrame::Welcome { .. } => {}
                        ServerFrame::Ack { .. } => seen += 1,
                        other => bail!("unexpected {other:?}"),
                    }
                }
                acked.store(seen, Ordering::Release);
            }
            Ok(())
        })
    };
    let mut sent = 0u64;
    let mut body = Vec::with_capacity(64);
    while sent < n {
        let room = window.saturating_sub(sent - acked.load(Ordering::Acquire)).min(n - sent);
        if room == 0 {
            std::thread::yield_now();
            continue;
        }
        for _ in 0..room.min(512) {
            sent += 1;
            body.clear();
            body.extend_from_slice(&sent.to_le_bytes());
            encode_command(&deposit(sent), &mut body);
            proto::write_frame(&mut w, proto::SUBMIT, &body)?;
        }
        w.flush()?;
    }
    let r = reader.join().map_err(|_| "reader panicked");
    // All acknowledged: hold the connection open while the front end's CPU time is read.
    done.wait();
    done.wait();
    r??;
    Ok(())
}

/// CPU seconds (user + system) used so far by the server's front-end threads: `castle-net`
/// (io_uring) or `castle-conn` + `castle-gw-out` + `castle-accept` (threads). The threads must
/// still be alive when read (the pumps hold their connections open meanwhile).
fn front_end_cpu() -> f64 {
    let tick = 100.0; // USER_HZ on Linux
    let mut total = 0u64;
    for t in std::fs::read_dir("/proc/self/task").into_iter().flatten().flatten() {
        let Ok(stat) = std::fs::read_to_string(t.path().join("stat")) else { continue };
        let Some((name, rest)) = stat.split_once(" (").and_then(|(_, r)| r.split_once(") ")) else { continue };
        if !matches!(name, "castle-net" | "castle-conn" | "castle-gw-out" | "castle-accept") {
            continue;
        }
        // Fields after the name: state is field 3, utime 14 and stime 15 (1-based).
        let f: Vec<&str> = rest.split_whitespace().collect();
        total += f.get(11).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
        total += f.get(12).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    }
    total as f64 / tick
}

/// (commands/s, front-end CPU microseconds per command)
fn throughput(dir: &std::path::Path, net: NetChoice, a: &RemoteArgs) -> Result<(f64, f64)> {
    let mut cfg = config(dir, "127.0.0.1:0");
    cfg.net = net;
    let server = Server::start(cfg).map_err(|e| format!("server: {e}"))?;
    let addr = server.local_addr().ok_or("no address")?.to_string();
    let per = a.commands / a.connections.max(1);
    let done = Arc::new(std::sync::Barrier::new(a.connections as usize + 1));
    let cpu0 = front_end_cpu();
    let t = Instant::now();
    let handles: Vec<_> = (0..a.connections)
        .map(|i| {
            let (addr, window, done) = (addr.clone(), a.window, done.clone());
            std::thread::spawn(move || pump(&addr, 100 + i as u32, per, window, &done))
        })
        .collect();
    done.wait();
    let elapsed = t.elapsed().as_secs_f64();
    let cpu = front_end_cpu() - cpu0;
    done.wait();
    for h in handles {
        h.join().map_err(|_| "pump panicked")??;
    }
    let n = (per * a.connections) as f64;
    server.shutdown()?;
    Ok((n / elapsed, cpu * 1e6 / n))
}

/// A directory removed when dropped.
struct Scratch(std::path::PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn run(a: RemoteArgs) -> Result<()> {
    std::fs::create_dir_all(&a.dir)?;
    // One journal directory per measurement, deleted right after it (a 2M-command round
    // writes a few hundred MB).
    let mut k = 0;
    let mut fresh = || {
        k += 1;
        let d = a.dir.join(format!("run-{}-{k}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        Scratch(d)
    };
    println!("round trip: submit -> own batch in the stream (fsync per command), {} per round", a.round_trips);
    for round in 1..=a.rounds {
        println!(" round {round}");
        line("DurableLink (in process)", &in_process(&fresh().0, a.round_trips)?);
        let u = remote(&fresh().0, NetChoice::IoUring, a.round_trips)?;
        line("RemoteLink, io_uring", &u);
        let s = remote(&fresh().0, NetChoice::Std, a.round_trips)?;
        line("RemoteLink, std threads", &s);
        let r = |q: f64| u.value_at_quantile(q) as f64 / s.value_at_quantile(q).max(1) as f64;
        println!("  io_uring / threads: p50 {:.2}  p99 {:.2}  p99.9 {:.2}", r(0.5), r(0.99), r(0.999));
    }
    println!(
        "commands/s over TCP: {} connections x window {}, {} commands per round",
        a.connections, a.window, a.commands
    );
    for round in 1..=a.rounds {
        let (u, ucpu) = throughput(&fresh().0, NetChoice::IoUring, &a)?;
        let (s, scpu) = throughput(&fresh().0, NetChoice::Std, &a)?;
        println!(
            " round {round}: io_uring {u:>9.0}/s ({ucpu:.2} us front-end CPU/command)   std threads {s:>9.0}/s ({scpu:.2} us)   ratio {:.2}",
            u / s
        );
    }
    println!(
        "subscriber fan-out: {} subscribers, {} commands flat out from one gateway (window {}), latency = engine ts -> arrival",
        a.fanout_subscribers, a.fanout_commands, a.window
    );
    for round in 1..=a.rounds {
        println!(" round {round}");
        let (uh, ur) = fanout(&fresh().0, NetChoice::IoUring, &a)?;
        fan_line("io_uring", &uh, ur);
        let (sh, sr) = fanout(&fresh().0, NetChoice::Std, &a)?;
        fan_line("std threads", &sh, sr);
        let r = |q: f64| uh.value_at_quantile(q) as f64 / sh.value_at_quantile(q).max(1) as f64;
        println!(
            "  io_uring / threads: p50 {:.2}  p99 {:.2}  p99.9 {:.2}  events/s {:.2}",
            r(0.5),
            r(0.99),
            r(0.999),
            ur / sr
        );
    }
    Ok(())
}

fn fan_line(what: &str, h: &Histogram<u64>, rate: f64) {
    let us = |q: f64| h.value_at_quantile(q) as f64 / 1_000.0;
    println!(
        "  {what:<12} events={} p50 {:>9.1} us  p99 {:>9.1} us  p99.9 {:>9.1} us  max {:>9.1} us  {:>10.0} events/s delivered",
        h.len(),
        us(0.5),
        us(0.99),
        us(0.999),
        h.max() as f64 / 1_000.0,
        rate
    );
}

fn now_ns() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64)
}

/// One version-2 subscriber from `after` until it has seq `last`: (latencies, arrival of `last`).
fn subscriber(addr: &str, after: u64, last: u64, ready: &std::sync::Barrier) -> Result<(Histogram<u64>, Instant)> {
    let mut s = TcpStream::connect(addr)?;
    s.set_nodelay(true)?;
    proto::write_frame(&mut s, proto::HELLO, &proto::hello_v(Role::Subscriber, 0, after, 2))?;
    let mut h = Histogram::<u64>::new_with_bounds(1, 600_000_000_000, 3)?;
    let mut d = FrameDecoder::new(proto::MAX_SERVER_FRAME);
    let mut buf = vec![0u8; 1 << 16];
    let mut welcomed = false;
    loop {
        while let Some((ty, body)) = d.next_frame()? {
            match proto::parse_server_frame(ty, body)? {
                ServerFrame::Welcome { .. } => {
                    welcomed = true;
                    ready.wait();
                }
                ServerFrame::Events { seq, ts, .. } => {
                    h.record(now_ns().saturating_sub(ts).max(1))?;
                    if seq >= last {
                        return Ok((h, Instant::now()));
                    }
                }
                other => bail!("subscriber: unexpected {other:?}"),
            }
        }
        let k = s.read(&mut buf)?;
        if k == 0 {
            bail!("subscriber: server closed (welcomed: {welcomed})");
        }
        d.extend(&buf[..k]);
    }
}

/// (latency of every delivered event, events delivered per second to all subscribers)
fn fanout(dir: &std::path::Path, net: NetChoice, a: &RemoteArgs) -> Result<(Histogram<u64>, f64)> {
    let mut cfg = config(dir, "127.0.0.1:0");
    cfg.net = net;
    // Room for the whole round: the case measures delivery, not the slow-consumer cut-off.
    cfg.ring_capacity = (a.fanout_commands as usize + 1_024).max(1 << 16);
    let server = Server::start(cfg).map_err(|e| format!("server: {e}"))?;
    let addr = server.local_addr().ok_or("no address")?.to_string();
    let base = server.status()?.seq;
    let n = a.fanout_commands;
    let ready = Arc::new(std::sync::Barrier::new(a.fanout_subscribers + 1));
    let subs: Vec<_> = (0..a.fanout_subscribers)
        .map(|_| {
            let (addr, ready) = (addr.clone(), ready.clone());
            std::thread::spawn(move || subscriber(&addr, base, base + n, &ready))
        })
        .collect();
    ready.wait();
    let t = Instant::now();
    let done = Arc::new(std::sync::Barrier::new(2));
    let pumped = {
        let (addr, window, done) = (addr.clone(), a.window, done.clone());
        std::thread::spawn(move || pump(&addr, 100, n, window, &done))
    };
    done.wait();
    done.wait();
    pumped.join().map_err(|_| "pump panicked")??;
    let mut all = Histogram::<u64>::new_with_bounds(1, 600_000_000_000, 3)?;
    let mut end = t;
    for s in subs {
        let (h, at) = s.join().map_err(|_| "subscriber panicked")??;
        all.add(&h)?;
        end = end.max(at);
    }
    server.shutdown()?;
    Ok((all, (n * a.fanout_subscribers as u64) as f64 / (end - t).as_secs_f64()))
}
