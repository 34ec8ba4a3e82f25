//! Cost of one command through `InProcessEngine`: submit, apply, deliver to
//! one subscriber, receive, one at a time (the latency path of a gateway
//! with one client). Run it under `valgrind --tool=callgrind` for
//! instruction counts, under `perf trace -s` for system calls.
//!
//! cargo run --release -p castle-link --example link_cost -- [commands] [thread|idle]

use castle_engine::{Command, InstrumentSpec, Limits};
use castle_link::{EngineLink, EngineRequest, InProcessEngine, InProcessOptions, Origin, Placement};
use std::time::Instant;

fn main() {
    let n: u64 = std::env::args().nth(1).and_then(|s| s.parse().ok()).unwrap_or(100_000);
    let placement = match std::env::args().nth(2).as_deref() {
        Some("thread") => Placement::Thread,
        Some("idle") | None => Placement::InlineWhenIdle,
        Some(other) => panic!("unknown placement {other:?} (thread, idle)"),
    };
    let setup = [
        Command::AddInstrument(InstrumentSpec::demo(0, "BTC-USDT", 1, 2, 6_000_000)),
        Command::Deposit { account: 7, asset: 2, amount: 1 << 61 },
    ];
    let engine = InProcessEngine::start_with(
        Limits::default(),
        &setup,
        InProcessOptions { placement, ..InProcessOptions::new(1024) },
    );
    let mut rx = engine.subscribe(1024).unwrap();
    let t0 = Instant::now();
    for request in 1..=n {
        let command = Command::Deposit { account: 7, asset: 2, amount: 1 };
        engine.submit(EngineRequest { origin: Origin { gateway: 1, request }, command }).unwrap();
        let b = rx.blocking_recv().expect("engine stopped");
        assert_eq!(b.origin.map(|o| o.request), Some(request));
    }
    let dt = t0.elapsed();
    println!(
        "{placement:?}: {n} commands, {:.2} us per command (submit -> received)",
        dt.as_secs_f64() * 1e6 / n as f64
    );
}
